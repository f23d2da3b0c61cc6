//! The tariff model: municipalities and tariffs with dated versions, as stored (JSONB) and as
//! imported and exported (the same JSON document), and the validation that explains what is
//! wrong with one, naming the field. No I/O here.
//!
//! Money and rates are `rust_decimal::Decimal` (serialised as strings, so a JSON round trip is
//! exact). Times of day are `HH:MM` on a 15-minute grid: energy arrives in 15-minute intervals,
//! so a finer window could not be billed.

use std::fmt;

use chrono::{Datelike, NaiveDate, Weekday};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Quarter hours in a day: the resolution of every time-of-use window.
pub const SLOTS: usize = 96;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Municipality {
    pub name: String,
    pub country: String,
    /// ISO 4217 code, e.g. ZAR.
    pub currency: String,
    pub vat_percent: Decimal,
    /// Public holidays: billed as the tariff's `holidays_as` day type, unless the tariff version
    /// lists the date with a day type of its own.
    #[serde(default)]
    pub holidays: Vec<NaiveDate>,
}

/// The JSON format this portal writes (`"format"` in the document). Format 1 (no `format`
/// field) had one `demand` object per version; it still imports and is read as format 2.
pub const FORMAT: u32 = 2;

/// A tariff as imported, exported and stored: its name and its versions.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "DocIn")]
pub struct TariffDoc {
    pub name: String,
    /// Where the figures come from (the published schedule and its year), for whoever reuses it.
    pub source: String,
    pub versions: Vec<Version>,
}

/// A document as read: any format up to [`FORMAT`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DocIn {
    #[serde(default)]
    format: Option<u32>,
    name: String,
    #[serde(default)]
    source: String,
    versions: Vec<Version>,
}

impl TryFrom<DocIn> for TariffDoc {
    type Error = String;

    fn try_from(d: DocIn) -> Result<TariffDoc, String> {
        match d.format {
            None | Some(1..=FORMAT) => Ok(TariffDoc { name: d.name, source: d.source, versions: d.versions }),
            Some(n) => Err(format!(
                "format {n} is not one this portal reads (1 to {FORMAT}): it was written by a newer portal."
            )),
        }
    }
}

/// A document as written: always the current format.
#[derive(Serialize)]
struct DocOut<'a> {
    format: u32,
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    source: &'a str,
    versions: &'a [Version],
}

impl Serialize for TariffDoc {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        DocOut { format: FORMAT, name: &self.name, source: &self.source, versions: &self.versions }.serialize(s)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "VersionIn")]
pub struct Version {
    pub effective_from: NaiveDate,
    /// Last day the version applies (inclusive); open-ended when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_to: Option<NaiveDate>,
    pub energy: Energy,
    /// Unbundled per-kWh charges (network, legacy, levies, subsidies), each its own bill line.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kwh_charges: Vec<KwhCharge>,
    /// Per day or per month, each its own bill line, in every season or only some.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fixed_charges: Vec<FixedCharge>,
    /// Each billed on its own line: non-coincident, on-peak, per season, in kW or kVA.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub demand_charges: Vec<DemandCharge>,
    /// Charges per kvarh of reactive energy above a share of kWh, each its own bill line.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reactive_charges: Vec<ReactiveCharge>,
    /// Credit per exported kWh (feed-in); none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_credit: Option<Decimal>,
    /// The components VAT is charged on.
    #[serde(default)]
    pub vat_on: Vec<Component>,
    /// The least the version's charges (before VAT, export credits aside) come to per month,
    /// prorated by the billing period's days like a monthly fixed charge: a top-up line when less.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_per_month: Option<Decimal>,
    /// The most they come to per month, prorated the same way: a negative cap line when more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_per_month: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Rounding::is_default")]
    pub rounding: Rounding,
    /// Public holidays with the day type each is billed as on this version (a time-of-use
    /// tariff); they take precedence over the municipality's list and `holidays_as`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holidays: Vec<Holiday>,
    /// How per-month fixed charges (and the monthly minimum and cap) are prorated over a
    /// billing period or a part of one.
    #[serde(default, skip_serializing_if = "Proration::is_default")]
    pub proration: Proration,
}

/// How a per-month amount is charged for `days` of a billing period: `per_period` (the default)
/// once per billing period, whatever its length (a part of a period: its share of the period's
/// days); `days_30` × days / 30; `month_days` × days / the days of their calendar month (each
/// calendar month its own share); `days_365` per day × 12 / 365.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Proration {
    #[default]
    PerPeriod,
    #[serde(rename = "days_30")]
    Days30,
    MonthDays,
    #[serde(rename = "days_365")]
    Days365,
}

impl Proration {
    pub const ALL: [Proration; 4] = [Proration::PerPeriod, Proration::Days30, Proration::MonthDays, Proration::Days365];

    fn is_default(&self) -> bool {
        *self == Proration::PerPeriod
    }

    pub fn key(self) -> &'static str {
        match self {
            Proration::PerPeriod => "per_period",
            Proration::Days30 => "days_30",
            Proration::MonthDays => "month_days",
            Proration::Days365 => "days_365",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Proration::PerPeriod => "Once per billing period (a part of a period: its share of the days)",
            Proration::Days30 => "By days ÷ 30",
            Proration::MonthDays => "By days ÷ days in the calendar month",
            Proration::Days365 => "Per day × 12 ÷ 365",
        }
    }

    pub fn parse(s: &str) -> Option<Proration> {
        Proration::ALL.into_iter().find(|p| p.key() == s)
    }

    /// `per_month` prorated over the local `days` (of a billing period of `period_days`) as the
    /// rule says. Divides once per calendar month at most, so a whole period charged
    /// `per_period`, or a whole calendar month `month_days`, is `per_month` exactly.
    pub fn prorate(self, per_month: Decimal, days: impl IntoIterator<Item = NaiveDate>, period_days: i64) -> Decimal {
        let mut count = 0i64;
        // (first of the month, days in it): `month_days` divides each month by its own length.
        let mut months: Vec<(NaiveDate, i64)> = Vec::new();
        for day in days {
            count += 1;
            let first = day.with_day(1).unwrap_or(day);
            match months.last_mut() {
                Some((m, n)) if *m == first => *n += 1,
                _ => months.push((first, 1)),
            }
        }
        let n = Decimal::from(count);
        match self {
            Proration::PerPeriod => per_month * n / Decimal::from(period_days.max(1)),
            Proration::Days30 => per_month * n / Decimal::from(30),
            Proration::Days365 => per_month * n * Decimal::from(12) / Decimal::from(365),
            Proration::MonthDays => months
                .into_iter()
                .map(|(first, n)| {
                    let length =
                        first.checked_add_months(chrono::Months::new(1)).map_or(30, |next| (next - first).num_days());
                    per_month * Decimal::from(n) / Decimal::from(length)
                })
                .sum(),
        }
    }
}

/// How the tariff rounds: each line's amount to the cent by `amounts`, billed demand to
/// `demand_decimals` decimals of a kW or kVA (half away from zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rounding {
    #[serde(default)]
    pub amounts: AmountRounding,
    #[serde(default = "Rounding::default_demand_decimals")]
    pub demand_decimals: u32,
}

impl Default for Rounding {
    fn default() -> Rounding {
        Rounding { amounts: AmountRounding::HalfUp, demand_decimals: Rounding::default_demand_decimals() }
    }
}

impl Rounding {
    fn default_demand_decimals() -> u32 {
        3
    }

    fn is_default(&self) -> bool {
        *self == Rounding::default()
    }

    /// `x` to the cent as the tariff rounds.
    pub fn cents(&self, x: Decimal) -> Decimal {
        x.round_dp_with_strategy(2, self.amounts.strategy())
    }

    /// Billed demand (kW or kVA) as the tariff rounds it.
    pub fn demand(&self, x: Decimal) -> Decimal {
        x.round_dp_with_strategy(self.demand_decimals, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
    }
}

/// To the cent: `half_up` (half away from zero, the default), `half_even` (banker's), `down`
/// (towards zero: truncated), `up` (away from zero).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AmountRounding {
    #[default]
    HalfUp,
    HalfEven,
    Down,
    Up,
}

impl AmountRounding {
    pub const ALL: [AmountRounding; 4] =
        [AmountRounding::HalfUp, AmountRounding::HalfEven, AmountRounding::Down, AmountRounding::Up];

    pub fn key(self) -> &'static str {
        match self {
            AmountRounding::HalfUp => "half_up",
            AmountRounding::HalfEven => "half_even",
            AmountRounding::Down => "down",
            AmountRounding::Up => "up",
        }
    }

    fn strategy(self) -> rust_decimal::RoundingStrategy {
        use rust_decimal::RoundingStrategy as S;
        match self {
            AmountRounding::HalfUp => S::MidpointAwayFromZero,
            AmountRounding::HalfEven => S::MidpointNearestEven,
            AmountRounding::Down => S::ToZero,
            AmountRounding::Up => S::AwayFromZero,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Holiday {
    pub date: NaiveDate,
    /// `saturday`, `sunday`, `holiday` (the seasons' own Holiday grid) or `weekday`.
    pub billed_as: DayType,
    /// E.g. Freedom Day.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// An unbundled per-kWh charge: a flat `rate` on every kWh, or `rates` per TOU period (a period
/// without a rate is not charged), on the days of its `seasons` (every day when empty). A
/// negative rate is a credit (a subsidy).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KwhCharge {
    /// What the bill calls the line, e.g. Network demand charge.
    pub name: String,
    /// The line's stable internal code (exports and integrations key on it; the name may change);
    /// `kwh1, kwh2, … by position` when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Decimal>,
    #[serde(default, skip_serializing_if = "PeriodRates::is_empty")]
    pub rates: PeriodRates,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seasons: Vec<String>,
}

/// A fixed charge: `rate` per day (× the days billed in its seasons) or per month (× the share of
/// the billing period's days in its seasons).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixedCharge {
    /// What the bill calls the line; "Fixed charge per day" or "… per month" when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The line's stable internal code (exports and integrations key on it; the name may change);
    /// `fixed1, fixed2, … by position` when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub code: String,
    /// The rate per day or month; with `bands`, the rate of the lowest band.
    pub rate: Decimal,
    pub per: FixedPer,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seasons: Vec<String>,
    /// Capacity bands: the rate chosen by the billed demand of one of the version's demand
    /// charges (Eskom's service and administration charges by utilised capacity, SDG&E's basic
    /// service fee by maximum demand). None: one rate for every site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bands: Option<CapacityBands>,
}

/// `rate` while the billed demand of the demand charge coded `demand` is at most the first
/// band's `above`; each band's rate above its `above` (ascending).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacityBands {
    /// The code of the demand charge whose billed demand (after its NMD and ratchet) chooses the
    /// band; `demand1`, `demand2`, … by position when that charge has no code of its own.
    pub demand: String,
    pub above: Vec<Band>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Band {
    /// In the demand charge's unit (kW, kVA or kvar).
    pub above: Decimal,
    pub rate: Decimal,
}

impl FixedCharge {
    /// The rate for a billed demand of `demand`: the highest band it is above, else `rate`.
    pub fn rate_for(&self, demand: Decimal) -> Decimal {
        self.bands
            .as_ref()
            .and_then(|b| b.above.iter().rev().find(|band| demand > band.above))
            .map_or(self.rate, |band| band.rate)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FixedPer {
    Day,
    Month,
}

impl FixedPer {
    pub fn key(self) -> &'static str {
        match self {
            FixedPer::Day => "day",
            FixedPer::Month => "month",
        }
    }
}

/// A version as read: format 1's single `demand` becomes the one demand charge, and
/// `fixed_per_day` / `fixed_per_month` (still accepted in any format) the first fixed charges.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionIn {
    effective_from: NaiveDate,
    #[serde(default)]
    effective_to: Option<NaiveDate>,
    energy: Energy,
    #[serde(default)]
    kwh_charges: Vec<KwhCharge>,
    #[serde(default)]
    fixed_per_day: Decimal,
    #[serde(default)]
    fixed_per_month: Decimal,
    #[serde(default)]
    fixed_charges: Vec<FixedCharge>,
    /// Format 1.
    #[serde(default)]
    demand: Option<LegacyDemand>,
    #[serde(default)]
    demand_charges: Vec<DemandCharge>,
    #[serde(default)]
    reactive_charges: Vec<ReactiveCharge>,
    #[serde(default)]
    export_credit: Option<Decimal>,
    #[serde(default)]
    vat_on: Vec<Component>,
    #[serde(default)]
    minimum_per_month: Option<Decimal>,
    #[serde(default)]
    maximum_per_month: Option<Decimal>,
    #[serde(default)]
    rounding: Rounding,
    #[serde(default)]
    holidays: Vec<Holiday>,
    #[serde(default)]
    proration: Proration,
}

impl TryFrom<VersionIn> for Version {
    type Error = &'static str;

    fn try_from(v: VersionIn) -> Result<Version, &'static str> {
        let mut demand_charges = v.demand_charges;
        if let Some(d) = v.demand {
            if !demand_charges.is_empty() {
                return Err("a version has either `demand` (format 1) or `demand_charges`, not both.");
            }
            demand_charges.push(DemandCharge {
                name: String::new(),
                code: String::new(),
                unit: d.unit,
                window_minutes: d.window_minutes,
                method: DemandMethod::Block,
                rate: d.rate,
                periods: d.periods,
                seasons: Vec::new(),
                at_least_nmd: false,
                ratchet: None,
                excess_nmd_rate: None,
                power_factor: None,
            });
        }
        let shorthand = [(v.fixed_per_day, FixedPer::Day), (v.fixed_per_month, FixedPer::Month)];
        let fixed_charges = shorthand
            .into_iter()
            .filter(|(rate, _)| !rate.is_zero())
            .map(|(rate, per)| FixedCharge {
                name: String::new(),
                code: String::new(),
                rate,
                per,
                seasons: Vec::new(),
                bands: None,
            })
            .chain(v.fixed_charges)
            .collect();
        Ok(Version {
            effective_from: v.effective_from,
            effective_to: v.effective_to,
            energy: v.energy,
            kwh_charges: v.kwh_charges,
            fixed_charges,
            demand_charges,
            reactive_charges: v.reactive_charges,
            export_credit: v.export_credit,
            vat_on: v.vat_on,
            minimum_per_month: v.minimum_per_month,
            maximum_per_month: v.maximum_per_month,
            rounding: v.rounding,
            holidays: v.holidays,
            proration: v.proration,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Component {
    Energy,
    Fixed,
    Demand,
    Export,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Energy {
    Flat {
        rate: Decimal,
    },
    /// Inclining blocks on the billing period's consumption; the last block has no `up_to_kwh`.
    Blocks {
        blocks: Vec<Block>,
    },
    Tou(Tou),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Block {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub up_to_kwh: Option<Decimal>,
    pub rate: Decimal,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tou {
    /// The day type a public holiday of the municipality is billed as (unless the version lists
    /// it in `holidays`).
    pub holidays_as: DayType,
    /// What the utility calls each period on its bills (e.g. On-peak, Mid-peak); the portal's
    /// Peak, Standard and Off-peak when absent. The period's key stays its internal code.
    #[serde(default, skip_serializing_if = "PeriodNames::is_empty")]
    pub period_names: PeriodNames,
    pub seasons: Vec<Season>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodNames {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standard: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub off_peak: Option<String>,
}

impl PeriodNames {
    pub fn is_empty(&self) -> bool {
        TouPeriod::ALL.iter().all(|p| self.get(*p).is_none())
    }

    pub fn get(&self, p: TouPeriod) -> Option<&str> {
        match p {
            TouPeriod::Peak => self.peak.as_deref(),
            TouPeriod::Standard => self.standard.as_deref(),
            TouPeriod::OffPeak => self.off_peak.as_deref(),
        }
    }

    pub fn set(&mut self, p: TouPeriod, name: Option<String>) {
        match p {
            TouPeriod::Peak => self.peak = name,
            TouPeriod::Standard => self.standard = name,
            TouPeriod::OffPeak => self.off_peak = name,
        }
    }

    /// What the bill calls `p`.
    pub fn label(&self, p: TouPeriod) -> &str {
        self.get(p).unwrap_or(p.label())
    }
}

/// A line's code: `explicit`, or `{prefix}{position + 1}` when empty.
pub fn code_or(explicit: &str, prefix: &str, position: usize) -> String {
    if explicit.is_empty() { format!("{prefix}{}", position + 1) } else { explicit.to_string() }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Season {
    pub name: String,
    /// The season's stable internal code in its energy lines' codes; `s1`, `s2`, … when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub code: String,
    /// First day, `MM-DD`.
    pub from: MonthDay,
    /// Last day (inclusive), `MM-DD`; earlier than `from` for a season that spans New Year.
    pub to: MonthDay,
    pub rates: PeriodRates,
    pub windows: Vec<Window>,
}

/// Rate per kWh of each period; a period the season's windows use must have one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodRates {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standard: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub off_peak: Option<Decimal>,
}

impl PeriodRates {
    pub fn is_empty(&self) -> bool {
        TouPeriod::ALL.iter().all(|p| self.get(*p).is_none())
    }

    pub fn get(&self, p: TouPeriod) -> Option<Decimal> {
        match p {
            TouPeriod::Peak => self.peak,
            TouPeriod::Standard => self.standard,
            TouPeriod::OffPeak => self.off_peak,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    pub day_type: DayType,
    pub from: TimeOfDay,
    /// End (exclusive); `24:00` is the end of the day.
    pub to: TimeOfDay,
    pub period: TouPeriod,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DayType {
    Weekday,
    Saturday,
    Sunday,
    /// A public holiday billed on the seasons' own Holiday grid.
    Holiday,
}

impl DayType {
    /// The days of the week's types: every TOU season has their windows.
    pub const ALL: [DayType; 3] = [DayType::Weekday, DayType::Saturday, DayType::Sunday];
    /// With the Holiday type, whose windows a season has when holidays are billed as it.
    pub const EVERY: [DayType; 4] = [DayType::Weekday, DayType::Saturday, DayType::Sunday, DayType::Holiday];

    pub fn of(date: NaiveDate) -> DayType {
        match date.weekday() {
            Weekday::Sat => DayType::Saturday,
            Weekday::Sun => DayType::Sunday,
            _ => DayType::Weekday,
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            DayType::Weekday => "weekday",
            DayType::Saturday => "saturday",
            DayType::Sunday => "sunday",
            DayType::Holiday => "holiday",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            DayType::Weekday => "Weekday",
            DayType::Saturday => "Saturday",
            DayType::Sunday => "Sunday",
            DayType::Holiday => "Holiday",
        }
    }

    pub fn parse(s: &str) -> Option<DayType> {
        DayType::EVERY.into_iter().find(|d| d.key() == s)
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TouPeriod {
    Peak,
    Standard,
    OffPeak,
}

impl TouPeriod {
    pub const ALL: [TouPeriod; 3] = [TouPeriod::Peak, TouPeriod::Standard, TouPeriod::OffPeak];

    pub fn key(self) -> &'static str {
        match self {
            TouPeriod::Peak => "peak",
            TouPeriod::Standard => "standard",
            TouPeriod::OffPeak => "off_peak",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            TouPeriod::Peak => "Peak",
            TouPeriod::Standard => "Standard",
            TouPeriod::OffPeak => "Off-peak",
        }
    }

    pub fn parse(s: &str) -> Option<TouPeriod> {
        TouPeriod::ALL.into_iter().find(|p| p.key() == s)
    }
}

/// Format 1's demand charge: one per version, block intervals, no seasons.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacyDemand {
    unit: DemandUnit,
    window_minutes: u32,
    rate: Decimal,
    #[serde(default)]
    periods: Vec<TouPeriod>,
}

/// One demand charge: the billing period's highest average demand over `window_minutes`,
/// counting only the intervals in its window (TOU periods and seasons), × the rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemandCharge {
    /// What the bill calls the line; a description from the fields when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The line's stable internal code (exports and integrations key on it; the name may change);
    /// `demand1, demand2, … by position` when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub code: String,
    pub unit: DemandUnit,
    /// The demand interval: 15, 30 or 60 minutes.
    pub window_minutes: u32,
    #[serde(default, skip_serializing_if = "DemandMethod::is_block")]
    pub method: DemandMethod,
    /// Per kVA or kW of the billing period's maximum demand.
    pub rate: Decimal,
    /// Only demand in these TOU periods counts (a TOU tariff); all times when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub periods: Vec<TouPeriod>,
    /// Only on days of these TOU seasons (by name); every day when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seasons: Vec<String>,
    /// A capacity charge: the billed demand is at least the site's notified maximum demand (NMD)
    /// when the site has one in the charge's unit.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub at_least_nmd: bool,
    /// A ratchet: the billed demand is at least a share of the highest demand of earlier
    /// billing periods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratchet: Option<Ratchet>,
    /// A penalty per kVA or kW of the period's maximum demand above the site's NMD (e.g. Eskom's
    /// excess network capacity, a multiple of the capacity rate): a line of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excess_nmd_rate: Option<Decimal>,
    /// A power-factor adjustment: when the power factor is below its threshold, the billed
    /// demand is scaled up by threshold / power factor. None when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_factor: Option<PowerFactor>,
}

/// The billed demand is at least `percent` % of the highest demand of the `periods` billing
/// periods before this one, measured like the charge (unit, interval, method) at any time of day:
/// US ratchets (80 % of the 11 months before), Eskom's annual utilised capacity (100 % of the 11
/// months before, so the highest of the 12 months including this one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ratchet {
    pub percent: Decimal,
    pub periods: u32,
}

/// The most earlier billing periods a ratchet looks back at (three years).
pub const RATCHET_MAX_PERIODS: u32 = 36;

/// A site's notified (contracted) maximum demand, NMD: what its supply agreement allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nmd {
    pub value: Decimal,
    pub unit: DemandUnit,
}

impl fmt::Display for Nmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.value.normalize(), self.unit.label())
    }
}

/// A power-factor adjustment of a demand charge (common in US tariffs): billed demand ×
/// `threshold` / PF when PF < `threshold`, PF = kWh / √(kWh² + kvarh²) (lagging: the reactive
/// energy imported), rounded to 4 decimals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerFactor {
    /// E.g. 0.90.
    pub threshold: Decimal,
    /// Where the PF is measured: over the billing period (`period`, the default: the "average
    /// power factor for the month" most US tariffs name) or in the maximum-demand interval
    /// (`peak`, "at the time of maximum demand").
    #[serde(default, skip_serializing_if = "PfMeasured::is_period")]
    pub measured: PfMeasured,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PfMeasured {
    #[default]
    Period,
    Peak,
}

impl PfMeasured {
    fn is_period(&self) -> bool {
        *self == PfMeasured::Period
    }

    pub fn key(self) -> &'static str {
        match self {
            PfMeasured::Period => "period",
            PfMeasured::Peak => "peak",
        }
    }
}

/// A reactive energy charge: `rate` per kvarh of reactive energy imported (lagging) above
/// `free_percent` % of the kWh imported, counting only the intervals in its TOU `periods` and
/// `seasons` (all when empty). The excess is computed per integrating interval of
/// `window_minutes` (block intervals from local midnight) and added up (`per: interval`, the
/// default: Eskom's rule, 30 minutes), or once over the whole billing period (`per: period`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReactiveCharge {
    /// What the bill calls the line, e.g. Reactive energy charge.
    pub name: String,
    /// The line's stable internal code; `reactive1, reactive2, … by position` when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub code: String,
    /// Per kvarh of the excess.
    pub rate: Decimal,
    /// The share of kWh that is free of charge, in percent (e.g. 30).
    pub free_percent: Decimal,
    #[serde(default, skip_serializing_if = "ReactivePer::is_interval")]
    pub per: ReactivePer,
    /// The integrating interval of `per: interval`: 15, 30 (the default) or 60 minutes.
    #[serde(default = "ReactiveCharge::default_window", skip_serializing_if = "ReactiveCharge::is_default_window")]
    pub window_minutes: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub periods: Vec<TouPeriod>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seasons: Vec<String>,
}

impl ReactiveCharge {
    pub const DEFAULT_WINDOW: u32 = 30;

    fn default_window() -> u32 {
        Self::DEFAULT_WINDOW
    }

    fn is_default_window(w: &u32) -> bool {
        *w == Self::DEFAULT_WINDOW
    }
}

/// Where a reactive charge's excess is computed: per integrating interval, or over the period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReactivePer {
    #[default]
    Interval,
    Period,
}

impl ReactivePer {
    fn is_interval(&self) -> bool {
        *self == ReactivePer::Interval
    }

    pub fn key(self) -> &'static str {
        match self {
            ReactivePer::Interval => "interval",
            ReactivePer::Period => "period",
        }
    }
}

/// How demand intervals are laid: `block` intervals start on the clock (every 15, 30 or 60
/// minutes from local midnight); a `sliding` interval may start at any quarter hour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DemandMethod {
    #[default]
    Block,
    Sliding,
}

impl DemandMethod {
    fn is_block(&self) -> bool {
        *self == DemandMethod::Block
    }

    pub fn key(self) -> &'static str {
        match self {
            DemandMethod::Block => "block",
            DemandMethod::Sliding => "sliding",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DemandUnit {
    #[serde(rename = "kVA")]
    KVA,
    #[serde(rename = "kW")]
    KW,
    /// Reactive demand (lagging), from the reactive energy imported.
    #[serde(rename = "kvar")]
    KVar,
}

impl DemandUnit {
    /// The units a notified maximum demand is agreed in (not kvar: the NMD is a supply limit).
    pub const NMD_UNITS: [DemandUnit; 2] = [DemandUnit::KVA, DemandUnit::KW];

    pub fn label(self) -> &'static str {
        match self {
            DemandUnit::KVA => "kVA",
            DemandUnit::KW => "kW",
            DemandUnit::KVar => "kvar",
        }
    }

    /// An NMD unit by its label.
    pub fn parse_nmd(s: &str) -> Option<DemandUnit> {
        DemandUnit::NMD_UNITS.into_iter().find(|u| u.label() == s)
    }
}

/// A calendar day without a year (`MM-DD`), for season boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MonthDay {
    pub month: u32,
    pub day: u32,
}

impl MonthDay {
    pub fn of(date: NaiveDate) -> MonthDay {
        MonthDay { month: date.month(), day: date.day() }
    }

    pub fn parse(s: &str) -> Option<MonthDay> {
        let (m, d) = s.trim().split_once('-')?;
        let (month, day) = (m.parse().ok()?, d.parse().ok()?);
        // 2024 is a leap year: 02-29 is a valid boundary.
        NaiveDate::from_ymd_opt(2024, month, day).map(|_| MonthDay { month, day })
    }

    /// Whether `self` lies in the inclusive range `from..=to`, which may wrap over New Year.
    pub fn within(self, from: MonthDay, to: MonthDay) -> bool {
        if from <= to { from <= self && self <= to } else { self >= from || self <= to }
    }
}

impl fmt::Display for MonthDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}-{:02}", self.month, self.day)
    }
}

/// A time of day on the 15-minute grid, `00:00` to `24:00`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimeOfDay {
    pub minutes: u32,
}

impl TimeOfDay {
    pub fn slot(self) -> usize {
        (self.minutes / 15) as usize
    }

    pub fn from_slot(slot: usize) -> TimeOfDay {
        TimeOfDay { minutes: slot as u32 * 15 }
    }

    pub fn parse(s: &str) -> Result<TimeOfDay, String> {
        let bad = || format!("“{s}” is not a time of day: use HH:MM, e.g. 06:00 or 24:00 for the end of the day.");
        let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
        let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if m >= 60 || h > 24 || (h == 24 && m != 0) {
            return Err(bad());
        }
        if m % 15 != 0 {
            return Err(format!("{s} is not on a quarter hour: energy is billed in 15-minute intervals."));
        }
        Ok(TimeOfDay { minutes: h * 60 + m })
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.minutes / 60, self.minutes % 60)
    }
}

macro_rules! string_serde {
    ($t:ty, $parse:expr) => {
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}
string_serde!(TimeOfDay, TimeOfDay::parse);
string_serde!(MonthDay, |s: &str| MonthDay::parse(s)
    .ok_or_else(|| format!("“{s}” is not a day of the year: use MM-DD, e.g. 06-01.")));

// ---------------------------------------------------------------- validation

/// One problem with a tariff: `field` is its path in the JSON document (`versions[0].energy...`),
/// `message` says what is wrong in words an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem { field: field.into(), message: message.into() });
    }
}

fn non_negative(p: &mut Problems, field: &str, v: Decimal) {
    if v.is_sign_negative() && !v.is_zero() {
        p.add(field, format!("must not be negative (got {v})."));
    }
}

/// Every problem with a municipality (empty: valid).
pub fn validate_municipality(m: &Municipality) -> Vec<Problem> {
    let mut p = Problems(Vec::new());
    if m.name.trim().is_empty() || m.name.chars().count() > 100 {
        p.add("name", "enter a name of 1 to 100 characters.");
    }
    if m.country.chars().count() > 100 {
        p.add("country", "use at most 100 characters.");
    }
    if m.currency.len() != 3 || !m.currency.chars().all(|c| c.is_ascii_uppercase()) {
        p.add("currency", "enter the three-letter ISO 4217 code, e.g. ZAR, GBP, EUR.");
    }
    if m.vat_percent.is_sign_negative() || m.vat_percent > Decimal::ONE_HUNDRED {
        p.add("vat_percent", "enter a percentage from 0 to 100.");
    }
    p.0
}

/// Every problem with a tariff (empty: valid).
pub fn validate(t: &TariffDoc) -> Vec<Problem> {
    let mut p = Problems(Vec::new());
    if t.name.trim().is_empty() || t.name.chars().count() > 100 {
        p.add("name", "enter a name of 1 to 100 characters.");
    }
    if t.versions.is_empty() {
        p.add("versions", "a tariff needs at least one version (its rates and the date they take effect).");
    }
    for (i, v) in t.versions.iter().enumerate() {
        validate_version(&mut p, &format!("versions[{i}]"), v);
    }
    // Versions must not overlap: every day has at most one set of rates.
    let mut order: Vec<usize> = (0..t.versions.len()).collect();
    order.sort_by_key(|&i| t.versions[i].effective_from);
    for w in order.windows(2) {
        let (a, b) = (&t.versions[w[0]], &t.versions[w[1]]);
        match a.effective_to {
            Some(to) if to < b.effective_from => {}
            _ => p.add(
                format!("versions[{}].effective_from", w[1]),
                format!(
                    "this version (from {}) overlaps version {} (from {}{}); end that one the day before, \
                     or change the dates.",
                    b.effective_from,
                    w[0] + 1,
                    a.effective_from,
                    a.effective_to.map_or_else(|| ", open-ended".to_string(), |to| format!(" to {to}")),
                ),
            ),
        }
    }
    p.0
}

fn validate_version(p: &mut Problems, at: &str, v: &Version) {
    if let Some(to) = v.effective_to
        && to < v.effective_from
    {
        p.add(format!("{at}.effective_to"), format!("ends ({to}) before it starts ({}).", v.effective_from));
    }
    if let Some(c) = v.export_credit {
        non_negative(p, &format!("{at}.export_credit"), c);
    }
    for (field, limit) in [("minimum_per_month", v.minimum_per_month), ("maximum_per_month", v.maximum_per_month)] {
        if let Some(x) = limit {
            non_negative(p, &format!("{at}.{field}"), x);
        }
    }
    if let (Some(min), Some(max)) = (v.minimum_per_month, v.maximum_per_month)
        && min > max
    {
        p.add(format!("{at}.maximum_per_month"), format!("is below the minimum ({max} < {min})."));
    }
    if v.rounding.demand_decimals > 3 {
        p.add(
            format!("{at}.rounding.demand_decimals"),
            format!("must be 0 to 3 (got {}): demand is known to the watt.", v.rounding.demand_decimals),
        );
    }
    match &v.energy {
        Energy::Flat { rate } => non_negative(p, &format!("{at}.energy.rate"), *rate),
        Energy::Blocks { blocks } => validate_blocks(p, &format!("{at}.energy.blocks"), blocks),
        Energy::Tou(tou) => validate_tou(p, &format!("{at}.energy"), tou, uses_holiday_grid(v)),
    }
    validate_holidays(p, at, v);
    for (i, c) in v.kwh_charges.iter().enumerate() {
        validate_kwh_charge(p, &format!("{at}.kwh_charges[{i}]"), c, &v.energy);
    }
    for (i, c) in v.fixed_charges.iter().enumerate() {
        let at = format!("{at}.fixed_charges[{i}]");
        if c.name.chars().count() > 100 {
            p.add(format!("{at}.name"), "use at most 100 characters.");
        }
        non_negative(p, &format!("{at}.rate"), c.rate);
        validate_season_names(p, &at, &c.seasons, &v.energy);
        if let Some(b) = &c.bands {
            validate_bands(p, &format!("{at}.bands"), b, v);
        }
    }
    for (i, d) in v.demand_charges.iter().enumerate() {
        validate_demand(p, &format!("{at}.demand_charges[{i}]"), d, &v.energy);
    }
    for (i, r) in v.reactive_charges.iter().enumerate() {
        validate_reactive(p, &format!("{at}.reactive_charges[{i}]"), r, &v.energy);
    }
    validate_codes(p, at, v);
}

/// The bands name one of the version's demand charges by its code and rise strictly.
fn validate_bands(p: &mut Problems, at: &str, b: &CapacityBands, v: &Version) {
    let codes: Vec<String> = v.demand_charges.iter().enumerate().map(|(i, d)| code_or(&d.code, "demand", i)).collect();
    if !codes.contains(&b.demand) {
        let known = if codes.is_empty() { "the version has no demand charge".to_string() } else { codes.join(", ") };
        p.add(format!("{at}.demand"), format!("“{}” is not a demand charge of this version ({known}).", b.demand));
    }
    if b.above.is_empty() {
        p.add(format!("{at}.above"), "enter at least one band (the demand above which its rate applies).");
    }
    for (i, band) in b.above.iter().enumerate() {
        if band.above <= Decimal::ZERO {
            p.add(format!("{at}.above[{i}].above"), "must be above 0: the lowest band is the charge's own rate.");
        }
        if i > 0 && band.above <= b.above[i - 1].above {
            p.add(
                format!("{at}.above[{i}].above"),
                format!("must be above the band before ({}).", b.above[i - 1].above),
            );
        }
        non_negative(p, &format!("{at}.above[{i}].rate"), band.rate);
    }
}

/// Codes are short, lowercase and unique among a version's charges (and among its seasons).
fn validate_codes(p: &mut Problems, at: &str, v: &Version) {
    let charges =
        v.kwh_charges.iter().enumerate().map(|(i, c)| ("kwh_charges", i, code_or(&c.code, "kwh", i), &c.code));
    let charges = charges
        .chain(
            v.fixed_charges
                .iter()
                .enumerate()
                .map(|(i, c)| ("fixed_charges", i, code_or(&c.code, "fixed", i), &c.code)),
        )
        .chain(
            v.demand_charges
                .iter()
                .enumerate()
                .map(|(i, c)| ("demand_charges", i, code_or(&c.code, "demand", i), &c.code)),
        )
        .chain(
            v.reactive_charges
                .iter()
                .enumerate()
                .map(|(i, c)| ("reactive_charges", i, code_or(&c.code, "reactive", i), &c.code)),
        );
    let seasons: Vec<_> = match &v.energy {
        Energy::Tou(t) => t
            .seasons
            .iter()
            .enumerate()
            .map(|(i, s)| ("energy.seasons", i, code_or(&s.code, "s", i), &s.code))
            .collect(),
        _ => Vec::new(),
    };
    for group in [charges.collect::<Vec<_>>(), seasons] {
        for (n, (list, i, code, explicit)) in group.iter().enumerate() {
            let field = format!("{at}.{list}[{i}].code");
            if !explicit.is_empty()
                && (explicit.len() > 40
                    || !explicit.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'))
            {
                p.add(&field, format!("“{explicit}”: use 1 to 40 of a–z, 0–9, _ and -."));
            }
            if let Some((other_list, j, _, _)) = group[..n].iter().find(|o| o.2 == *code) {
                p.add(field, format!("“{code}” is also the code of {other_list}[{j}]; each needs its own."));
            }
        }
    }
}

fn validate_kwh_charge(p: &mut Problems, at: &str, c: &KwhCharge, energy: &Energy) {
    if c.name.trim().is_empty() || c.name.chars().count() > 100 {
        p.add(format!("{at}.name"), "enter the name the bill gives the charge (1 to 100 characters).");
    }
    match (c.rate.is_some(), c.rates.is_empty()) {
        (true, false) => {
            p.add(format!("{at}.rates"), "a charge is either flat (`rate`) or per TOU period (`rates`), not both.")
        }
        (false, true) => p.add(format!("{at}.rate"), "enter a rate per kWh, or rates per TOU period."),
        (false, false) if !matches!(energy, Energy::Tou(_)) => p.add(
            format!("{at}.rates"),
            "rates per TOU period need a time-of-use energy charge; enter one flat rate instead.",
        ),
        _ => {}
    }
    validate_season_names(p, at, &c.seasons, energy);
}

/// Each name in `names` (at `{at}.seasons[i]`) must be a season of the version's TOU energy charge.
fn validate_season_names(p: &mut Problems, at: &str, names: &[String], energy: &Energy) {
    let seasons = match energy {
        Energy::Tou(t) => &t.seasons[..],
        _ => &[],
    };
    for (s, name) in names.iter().enumerate() {
        if !seasons.iter().any(|season| season.name == *name) {
            p.add(
                format!("{at}.seasons[{s}]"),
                format!("“{name}” is not a season of this version's time-of-use energy charge."),
            );
        }
    }
}

fn validate_demand(p: &mut Problems, at: &str, d: &DemandCharge, energy: &Energy) {
    if d.name.chars().count() > 100 {
        p.add(format!("{at}.name"), "use at most 100 characters.");
    }
    if ![15, 30, 60].contains(&d.window_minutes) {
        p.add(format!("{at}.window_minutes"), format!("must be 15, 30 or 60 (got {}).", d.window_minutes));
    }
    non_negative(p, &format!("{at}.rate"), d.rate);
    if !d.periods.is_empty() && !matches!(energy, Energy::Tou(_)) {
        p.add(format!("{at}.periods"), "limiting demand to TOU periods needs a time-of-use energy tariff.");
    }
    validate_season_names(p, at, &d.seasons, energy);
    // The NMD and the earlier peaks (`energy::demand_peaks`) are active or apparent demand.
    if d.unit == DemandUnit::KVar && (d.at_least_nmd || d.ratchet.is_some() || d.excess_nmd_rate.is_some()) {
        p.add(
            format!("{at}.unit"),
            "a kvar charge bills this period's reactive demand only: the NMD, a ratchet and excess-NMD penalties \
             need kW or kVA.",
        );
    }
    if let Some(r) = d.ratchet {
        if r.percent <= Decimal::ZERO || r.percent > Decimal::ONE_HUNDRED {
            p.add(format!("{at}.ratchet.percent"), format!("must be more than 0 and at most 100 (got {}).", r.percent));
        }
        if !(1..=RATCHET_MAX_PERIODS).contains(&r.periods) {
            p.add(
                format!("{at}.ratchet.periods"),
                format!("must be 1 to {RATCHET_MAX_PERIODS} earlier billing periods (got {}).", r.periods),
            );
        }
        // Earlier periods' peaks are read at any time of day (the database computes them:
        // tariffs::bills), so a ratchet on a charge limited to TOU periods or seasons would
        // compare unlike figures.
        if !d.periods.is_empty() || !d.seasons.is_empty() {
            p.add(
                format!("{at}.ratchet"),
                "a ratchet looks back at the highest demand at any time: put it on a charge without TOU periods \
                 or seasons.",
            );
        }
    }
    if let Some(r) = d.excess_nmd_rate {
        non_negative(p, &format!("{at}.excess_nmd_rate"), r);
    }
    if let Some(pf) = d.power_factor {
        if pf.threshold <= Decimal::ZERO || pf.threshold > Decimal::ONE {
            p.add(
                format!("{at}.power_factor.threshold"),
                format!("must be above 0 and at most 1, e.g. 0.90 (got {}).", pf.threshold),
            );
        }
        if d.unit == DemandUnit::KVar {
            p.add(
                format!("{at}.power_factor"),
                "a power-factor adjustment scales kW or kVA demand; a kvar charge already bills reactive demand.",
            );
        }
    }
}

fn validate_reactive(p: &mut Problems, at: &str, r: &ReactiveCharge, energy: &Energy) {
    if r.name.trim().is_empty() || r.name.chars().count() > 100 {
        p.add(format!("{at}.name"), "enter the name the bill gives the charge (1 to 100 characters).");
    }
    non_negative(p, &format!("{at}.rate"), r.rate);
    if r.free_percent.is_sign_negative() || r.free_percent > Decimal::ONE_HUNDRED {
        p.add(
            format!("{at}.free_percent"),
            format!("enter a percentage of kWh from 0 to 100 (got {}).", r.free_percent),
        );
    }
    if ![15, 30, 60].contains(&r.window_minutes) {
        p.add(format!("{at}.window_minutes"), format!("must be 15, 30 or 60 (got {}).", r.window_minutes));
    }
    if !r.periods.is_empty() && !matches!(energy, Energy::Tou(_)) {
        p.add(format!("{at}.periods"), "limiting a charge to TOU periods needs a time-of-use energy tariff.");
    }
    validate_season_names(p, at, &r.seasons, energy);
}

fn validate_blocks(p: &mut Problems, at: &str, blocks: &[Block]) {
    if blocks.is_empty() {
        p.add(at, "enter at least one block.");
        return;
    }
    let mut previous = Decimal::ZERO;
    for (i, b) in blocks.iter().enumerate() {
        non_negative(p, &format!("{at}[{i}].rate"), b.rate);
        let last = i + 1 == blocks.len();
        match (b.up_to_kwh, last) {
            (None, true) => {}
            (None, false) => p.add(
                format!("{at}[{i}].up_to_kwh"),
                "only the last block may be open-ended; enter the kWh this block ends at.",
            ),
            (Some(_), true) => p.add(
                format!("{at}[{i}].up_to_kwh"),
                "the last block must be open-ended (leave “up to” empty) so every kWh has a rate.",
            ),
            (Some(up_to), false) => {
                if up_to <= previous {
                    p.add(
                        format!("{at}[{i}].up_to_kwh"),
                        format!(
                            "block thresholds must be strictly increasing: {up_to} kWh is not above {previous} kWh."
                        ),
                    );
                }
                previous = up_to;
            }
        }
    }
}

/// Whether any day of `v` is billed on the Holiday grid (the seasons then need one).
pub fn uses_holiday_grid(v: &Version) -> bool {
    let Energy::Tou(tou) = &v.energy else { return false };
    tou.holidays_as == DayType::Holiday
        || v.holidays.iter().any(|h| h.billed_as == DayType::Holiday)
        || tou.seasons.iter().any(|s| s.windows.iter().any(|w| w.day_type == DayType::Holiday))
}

fn validate_holidays(p: &mut Problems, at: &str, v: &Version) {
    if !v.holidays.is_empty() && !matches!(v.energy, Energy::Tou(_)) {
        p.add(format!("{at}.holidays"), "holidays by day type need a time-of-use energy charge.");
    }
    for (i, h) in v.holidays.iter().enumerate() {
        let field = format!("{at}.holidays[{i}]");
        if let Some(first) = v.holidays[..i].iter().position(|o| o.date == h.date) {
            p.add(format!("{field}.date"), format!("{} is listed twice (also holiday {}).", h.date, first + 1));
        }
        if h.date < v.effective_from || v.effective_to.is_some_and(|to| h.date > to) {
            p.add(format!("{field}.date"), format!("{} is outside this version's dates.", h.date));
        }
        if h.name.chars().count() > 100 {
            p.add(format!("{field}.name"), "use at most 100 characters.");
        }
    }
}

fn validate_tou(p: &mut Problems, at: &str, tou: &Tou, holiday_grid: bool) {
    if tou.seasons.is_empty() {
        p.add(format!("{at}.seasons"), "a time-of-use tariff needs at least one season (e.g. 01-01 to 12-31).");
        return;
    }
    // Each day of a leap year in exactly one season.
    let mut first_gap: Option<MonthDay> = None;
    let mut day = NaiveDate::from_ymd_opt(2024, 1, 1);
    while let Some(d) = day.filter(|d| d.year() == 2024) {
        let md = MonthDay::of(d);
        let owners: Vec<usize> =
            tou.seasons.iter().enumerate().filter(|(_, s)| md.within(s.from, s.to)).map(|(i, _)| i).collect();
        if owners.len() > 1 {
            p.add(
                format!("{at}.seasons[{}].from", owners[1]),
                format!(
                    "seasons “{}” and “{}” both contain {md}; each day of the year belongs to one season.",
                    tou.seasons[owners[0]].name, tou.seasons[owners[1]].name
                ),
            );
            return;
        }
        if owners.is_empty() && first_gap.is_none() {
            first_gap = Some(md);
        }
        day = d.succ_opt();
    }
    if let Some(md) = first_gap {
        p.add(format!("{at}.seasons"), format!("no season contains {md}; each day of the year needs one."));
    }
    for (s, season) in tou.seasons.iter().enumerate() {
        let at = format!("{at}.seasons[{s}]");
        if season.name.trim().is_empty() {
            p.add(format!("{at}.name"), "enter the season's name, e.g. High demand.");
        }
        for period in TouPeriod::ALL {
            if let Some(r) = season.rates.get(period) {
                non_negative(p, &format!("{at}.rates.{}", period.key()), r);
            }
        }
        for day_type in DayType::ALL.into_iter().chain(holiday_grid.then_some(DayType::Holiday)) {
            let mut owner: [Option<usize>; SLOTS] = [None; SLOTS];
            for (w, window) in season.windows.iter().enumerate().filter(|(_, w)| w.day_type == day_type) {
                let field = format!("{at}.windows[{w}]");
                if window.to <= window.from {
                    p.add(
                        format!("{field}.to"),
                        format!(
                            "ends ({}) at or before it starts ({}); split a window over midnight in two.",
                            window.to, window.from
                        ),
                    );
                    continue;
                }
                if season.rates.get(window.period).is_none() {
                    p.add(
                        format!("{at}.rates.{}", window.period.key()),
                        format!(
                            "the windows use {} but the season has no {} rate.",
                            window.period.label(),
                            window.period.label()
                        ),
                    );
                }
                let mut reported = false;
                for (slot, cell) in owner.iter_mut().enumerate().take(window.to.slot()).skip(window.from.slot()) {
                    match *cell {
                        None => *cell = Some(w),
                        Some(_) if reported => {}
                        Some(other) => {
                            reported = true;
                            p.add(
                                field.clone(),
                                format!(
                                    "{} {}–{} overlaps window {} ({}–{}) at {}.",
                                    day_type.label(),
                                    window.from,
                                    window.to,
                                    other + 1,
                                    season.windows[other].from,
                                    season.windows[other].to,
                                    TimeOfDay::from_slot(slot)
                                ),
                            );
                        }
                    }
                }
            }
            let uncovered = uncovered_ranges(&owner);
            if !uncovered.is_empty() {
                p.add(
                    format!("{at}.windows"),
                    format!("{} hours not covered by any window: {}.", day_type.label(), uncovered.join(", ")),
                );
            }
        }
    }
}

fn uncovered_ranges(owner: &[Option<usize>; SLOTS]) -> Vec<String> {
    let mut out = Vec::new();
    let mut slot = 0;
    while slot < SLOTS {
        if owner[slot].is_some() {
            slot += 1;
            continue;
        }
        let start = slot;
        while slot < SLOTS && owner[slot].is_none() {
            slot += 1;
        }
        out.push(format!("{}–{}", TimeOfDay::from_slot(start), TimeOfDay::from_slot(slot)));
    }
    out
}

/// A validated TOU season as a lookup table: the period of every quarter hour per day type.
pub fn period_table(season: &Season) -> [[TouPeriod; SLOTS]; 4] {
    let mut table = [[TouPeriod::OffPeak; SLOTS]; 4];
    for w in &season.windows {
        let row = &mut table[w.day_type.index()];
        row[w.from.slot().min(SLOTS)..w.to.slot().min(SLOTS)].fill(w.period);
    }
    table
}

/// Windows from an hourly grid (the editor's): consecutive hours of one period become one window.
pub fn windows_from_grid(day_type: DayType, hours: &[TouPeriod; 24]) -> Vec<Window> {
    let mut out: Vec<Window> = Vec::new();
    for (h, &period) in hours.iter().enumerate() {
        match out.last_mut() {
            Some(w) if w.period == period => w.to = TimeOfDay { minutes: (h as u32 + 1) * 60 },
            _ => out.push(Window {
                day_type,
                from: TimeOfDay { minutes: h as u32 * 60 },
                to: TimeOfDay { minutes: (h as u32 + 1) * 60 },
                period,
            }),
        }
    }
    out
}

/// The period of each hour (its first quarter) for the editor's grid.
pub fn grid_from_windows(season: &Season, day_type: DayType) -> [Option<TouPeriod>; 24] {
    let mut out = [None; 24];
    for w in season.windows.iter().filter(|w| w.day_type == day_type) {
        for (h, cell) in out.iter_mut().enumerate() {
            let m = h as u32 * 60;
            if w.from.minutes <= m && m < w.to.minutes {
                *cell = Some(w.period);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn all_day(day_type: DayType, period: TouPeriod) -> Window {
        Window { day_type, from: TimeOfDay { minutes: 0 }, to: TimeOfDay { minutes: 1440 }, period }
    }

    fn tou(windows: Vec<Window>) -> TariffDoc {
        TariffDoc {
            name: "TOU".into(),
            source: String::new(),
            versions: vec![Version {
                effective_from: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
                effective_to: None,
                energy: Energy::Tou(Tou {
                    holidays_as: DayType::Sunday,
                    period_names: PeriodNames::default(),
                    seasons: vec![Season {
                        name: "All year".into(),
                        code: String::new(),
                        from: MonthDay { month: 1, day: 1 },
                        to: MonthDay { month: 12, day: 31 },
                        rates: PeriodRates { peak: Some(dec("3")), standard: Some(dec("2")), off_peak: Some(dec("1")) },
                        windows,
                    }],
                }),
                kwh_charges: vec![],
                fixed_charges: vec![],
                demand_charges: vec![],
                reactive_charges: vec![],
                export_credit: None,
                vat_on: vec![],
                minimum_per_month: None,
                maximum_per_month: None,
                rounding: Rounding::default(),
                holidays: vec![],
                proration: Proration::default(),
            }],
        }
    }

    fn fields(problems: &[Problem]) -> Vec<&str> {
        problems.iter().map(|p| p.field.as_str()).collect()
    }

    #[test]
    fn a_complete_tou_tariff_is_valid() {
        let doc = tou(DayType::ALL.into_iter().map(|d| all_day(d, TouPeriod::OffPeak)).collect());
        assert_eq!(validate(&doc), vec![]);
    }

    #[test]
    fn overlapping_windows_and_uncovered_hours_are_named() {
        let mut windows = vec![
            Window {
                day_type: DayType::Weekday,
                from: TimeOfDay::parse("00:00").unwrap(),
                to: TimeOfDay::parse("10:00").unwrap(),
                period: TouPeriod::OffPeak,
            },
            Window {
                day_type: DayType::Weekday,
                from: TimeOfDay::parse("09:00").unwrap(),
                to: TimeOfDay::parse("18:00").unwrap(),
                period: TouPeriod::Peak,
            },
        ];
        windows.push(all_day(DayType::Saturday, TouPeriod::OffPeak));
        windows.push(all_day(DayType::Sunday, TouPeriod::OffPeak));
        let problems = validate(&tou(windows));
        assert_eq!(
            fields(&problems),
            ["versions[0].energy.seasons[0].windows[1]", "versions[0].energy.seasons[0].windows"]
        );
        assert!(problems[0].message.contains("overlaps window 1 (00:00–10:00) at 09:00"), "{}", problems[0]);
        assert!(
            problems[1].message.contains("Weekday hours not covered by any window: 18:00–24:00"),
            "{}",
            problems[1]
        );
    }

    #[test]
    fn seasons_must_cover_each_day_once() {
        let mut doc = tou(DayType::ALL.into_iter().map(|d| all_day(d, TouPeriod::OffPeak)).collect());
        let Energy::Tou(t) = &mut doc.versions[0].energy else { unreachable!() };
        t.seasons[0].from = MonthDay { month: 9, day: 1 };
        t.seasons[0].to = MonthDay { month: 5, day: 31 };
        let problems = validate(&doc);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].message.contains("no season contains 06-01"), "{}", problems[0]);
        let Energy::Tou(t) = &mut doc.versions[0].energy else { unreachable!() };
        let mut winter = t.seasons[0].clone();
        winter.name = "High demand".into();
        winter.from = MonthDay { month: 5, day: 1 };
        winter.to = MonthDay { month: 8, day: 31 };
        t.seasons.push(winter);
        let problems = validate(&doc);
        assert!(problems[0].message.contains("both contain 05-01"), "{:?}", problems);
    }

    #[test]
    fn a_used_period_needs_a_rate() {
        let mut doc = tou(DayType::ALL.into_iter().map(|d| all_day(d, TouPeriod::Peak)).collect());
        let Energy::Tou(t) = &mut doc.versions[0].energy else { unreachable!() };
        t.seasons[0].rates.peak = None;
        let problems = validate(&doc);
        assert_eq!(problems[0].field, "versions[0].energy.seasons[0].rates.peak");
    }

    #[test]
    fn blocks_must_increase_and_end_open() {
        let mut doc = tou(vec![]);
        doc.versions[0].energy = Energy::Blocks {
            blocks: vec![
                Block { up_to_kwh: Some(dec("600")), rate: dec("2") },
                Block { up_to_kwh: Some(dec("350")), rate: dec("3") },
                Block { up_to_kwh: None, rate: dec("4") },
            ],
        };
        let problems = validate(&doc);
        assert_eq!(fields(&problems), ["versions[0].energy.blocks[1].up_to_kwh"]);
        assert!(problems[0].message.contains("strictly increasing: 350 kWh is not above 600 kWh"));
        doc.versions[0].energy = Energy::Blocks { blocks: vec![Block { up_to_kwh: Some(dec("600")), rate: dec("2") }] };
        assert_eq!(fields(&validate(&doc)), ["versions[0].energy.blocks[0].up_to_kwh"]);
    }

    #[test]
    fn overlapping_versions_are_named() {
        let mut doc = tou(DayType::ALL.into_iter().map(|d| all_day(d, TouPeriod::OffPeak)).collect());
        let mut second = doc.versions[0].clone();
        second.effective_from = NaiveDate::from_ymd_opt(2026, 7, 1).unwrap();
        doc.versions.push(second);
        let problems = validate(&doc);
        assert_eq!(fields(&problems), ["versions[1].effective_from"]);
        assert!(problems[0].message.contains("overlaps version 1 (from 2026-01-01, open-ended)"));
        doc.versions[0].effective_to = NaiveDate::from_ymd_opt(2026, 6, 30);
        assert_eq!(validate(&doc), vec![]);
    }

    #[test]
    fn times_and_days_parse_strictly() {
        assert_eq!(TimeOfDay::parse("24:00").unwrap().minutes, 1440);
        assert!(TimeOfDay::parse("06:10").unwrap_err().contains("quarter hour"));
        assert!(TimeOfDay::parse("25:00").is_err());
        assert_eq!(MonthDay::parse("02-29"), Some(MonthDay { month: 2, day: 29 }));
        assert_eq!(MonthDay::parse("02-30"), None);
        assert!(MonthDay { month: 1, day: 5 }.within(MonthDay { month: 9, day: 1 }, MonthDay { month: 5, day: 31 }));
    }

    #[test]
    fn the_hourly_grid_round_trips_through_windows() {
        let mut hours = [TouPeriod::OffPeak; 24];
        hours[6..9].fill(TouPeriod::Peak);
        hours[9..17].fill(TouPeriod::Standard);
        let windows = windows_from_grid(DayType::Weekday, &hours);
        assert_eq!(windows.len(), 4);
        assert_eq!((windows[1].from.to_string(), windows[1].to.to_string()), ("06:00".into(), "09:00".into()));
        let season = Season {
            name: "x".into(),
            code: String::new(),
            from: MonthDay { month: 1, day: 1 },
            to: MonthDay { month: 12, day: 31 },
            rates: PeriodRates::default(),
            windows,
        };
        assert_eq!(grid_from_windows(&season, DayType::Weekday), hours.map(Some));
    }
}
