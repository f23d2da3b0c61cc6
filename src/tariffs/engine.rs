//! The cost engine: a site's 15-minute intervals, its tariff history and a billing period in, an
//! itemised bill out. Pure (no I/O, no clock); every figure in `Decimal`.
//!
//! How a bill is made:
//! 1. The period's local days are split into segments where the site's tariff or the tariff's
//!    version changes; a day without a tariff becomes an unpriced segment.
//! 2. Each interval goes to the segment of its local date; its local date and time of day give
//!    the season, the day type (a holiday the version lists counts as the day type it names; else
//!    a public holiday of the tariff's municipality counts as the tariff's `holidays_as`) and the
//!    TOU period.
//! 3. Lines per segment: energy (kWh × rate per season/period, per block, or flat), per per-kWh
//!    charge its kWh in its seasons × its flat rate or per period, fixed charges (days in their
//!    seasons × rate per day; per-month charges prorated as the version's proration rule says:
//!    by default by the share of the period's days in the segment and their seasons, so a period
//!    without a change is charged once; a charge with capacity bands takes the rate of the band
//!    its demand charge's billed demand falls in), per demand charge its maximum demand
//!    (block or sliding intervals of the intervals in its periods and seasons) × rate (prorated by
//!    the segment's days in its seasons), export credit. Block thresholds are prorated the same way.
//!    A demand charge with a ratchet or on at least the NMD bills the highest of that maximum, the
//!    ratchet's share of the highest demand of earlier periods ([`BillInput::history`], which
//!    [`ratchet_needs`] lists) and the site's NMD; one with an excess-NMD rate adds a line on the
//!    maximum above the NMD.
//!    A demand charge in kvar bills the highest reactive demand; one with a power-factor
//!    adjustment scales its billed demand by threshold / PF when the PF is below the threshold.
//!    Per reactive charge: the kvarh imported above its free share of the kWh, in its periods and
//!    seasons, per integrating interval (added up) or over the segment, × its rate per kvarh.
//! 4. Each line's amount is rounded to the cent as the version says (half away from zero unless
//!    it says otherwise); then the version's minimum or cap (per month, prorated by the same rule
//!    as a monthly fixed charge) adds a top-up or a reduction line; VAT is the rounded sum of the VAT-able lines
//!    times the municipality's VAT %; total = subtotal + VAT.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Months, NaiveDate, NaiveDateTime, Offset, Timelike, Utc};
use chrono_tz::Tz;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};

use super::local::{INTERVAL_MINUTES, Period};
use super::model::{
    self, Component, DayType, DemandCharge, DemandMethod, DemandUnit, Energy, FixedCharge, FixedPer, Municipality, Nmd,
    PfMeasured, ReactiveCharge, ReactivePer, SLOTS, TariffDoc, TouPeriod, Version,
};
use crate::measurements::energy::SiteInterval;

/// A tariff with the municipality it belongs to.
#[derive(Debug, Clone)]
pub struct Tariff {
    pub id: i32,
    pub doc: TariffDoc,
    pub municipality: Municipality,
}

/// A site's tariff from `from` until the next assignment.
#[derive(Debug, Clone)]
pub struct Assignment {
    pub from: NaiveDate,
    pub tariff: Arc<Tariff>,
}

pub struct BillInput<'a> {
    pub tz: Tz,
    pub period: Period,
    /// Devices at the site: the completeness denominator.
    pub devices: u32,
    /// Sorted by `from`.
    pub assignments: &'a [Assignment],
    /// Sorted by `start`; intervals outside the period are ignored.
    pub intervals: &'a [SiteInterval],
    /// The site's notified maximum demand, if entered: capacity charges bill at least it, and
    /// excess-NMD penalties charge the demand above it.
    pub nmd: Option<Nmd>,
    /// The highest demand of the earlier billing periods the ratchets look back at (those of
    /// [`ratchet_needs`]; a missing one counts as no demand).
    pub history: &'a [EarlierPeak],
}

/// The highest demand interval of an earlier billing period, measured one way (at any time of
/// day): what a ratchet looks back at.
#[derive(Debug, Clone, PartialEq)]
pub struct EarlierPeak {
    pub period: Period,
    pub unit: DemandUnit,
    pub window_minutes: u32,
    pub method: DemandMethod,
    /// The interval's energy (Wh for kW, VAh for kVA) and first instant; `None`: no data.
    pub peak: Option<(Decimal, DateTime<Utc>)>,
}

/// How an [`EarlierPeak`] is measured, and over which period.
pub type PeakNeed = (Period, DemandUnit, u32, DemandMethod);

/// The `n` billing periods before `period`, latest first: each as long in months, on the same
/// day of the month.
pub fn earlier_periods(period: Period, n: u32) -> Vec<Period> {
    (1..=n)
        .map_while(|k| {
            Some(Period {
                start: period.start.checked_sub_months(Months::new(k))?,
                end: period.start.checked_sub_months(Months::new(k - 1))?,
            })
        })
        .collect()
}

/// Whether a version in effect in `period` bills on the site's NMD (a capacity charge or an
/// excess-NMD penalty): the Cost tab then states the NMD, or that none is entered.
pub fn uses_nmd(period: Period, assignments: &[Assignment]) -> bool {
    day_segments(period, assignments).into_iter().filter_map(|(_, _, key)| key).any(|(a, v)| {
        let charges = &assignments[a].tariff.doc.versions[v].demand_charges;
        charges.iter().any(|d| d.at_least_nmd || d.excess_nmd_rate.is_some())
    })
}

/// The earlier peaks a bill of `period` needs: per ratchet of the versions in effect in it, its
/// earlier periods measured like its charge; each once.
pub fn ratchet_needs(period: Period, assignments: &[Assignment]) -> Vec<PeakNeed> {
    let mut needs: Vec<PeakNeed> = Vec::new();
    for (_, _, key) in day_segments(period, assignments) {
        let Some((a, v)) = key else { continue };
        for d in &assignments[a].tariff.doc.versions[v].demand_charges {
            let Some(r) = d.ratchet else { continue };
            for p in earlier_periods(period, r.periods) {
                let need = (p, d.unit, d.window_minutes, d.method);
                if !needs.contains(&need) {
                    needs.push(need);
                }
            }
        }
    }
    needs
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    Energy,
    /// An unbundled per-kWh charge (network, levy, subsidy).
    Charge,
    Fixed,
    Demand,
    Export,
    /// A minimum charge's top-up or a cap's reduction.
    Adjustment,
    /// A reactive energy charge (per kvarh above a share of kWh).
    Reactive,
}

impl LineKind {
    pub fn label(self) -> &'static str {
        match self {
            LineKind::Energy => "Energy",
            LineKind::Charge => "Per-kWh charge",
            LineKind::Fixed => "Fixed",
            LineKind::Demand => "Demand",
            LineKind::Export => "Export credit",
            LineKind::Adjustment => "Adjustment",
            LineKind::Reactive => "Reactive energy",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub kind: LineKind,
    /// Stable internal code: `energy.{season}.{period}`, `{charge}` or `{charge}.{period}` (the
    /// charge's own code or `kwh1`, `fixed2`, `demand1` by position), `export`, `unpriced`.
    pub code: String,
    pub segment: usize,
    pub description: String,
    pub quantity: Decimal,
    pub unit: &'static str,
    pub rate: Decimal,
    /// Quantity × rate before rounding (negative for a credit).
    pub exact: Decimal,
    /// `exact` rounded to the cent: what the bill shows and adds up.
    pub amount: Decimal,
    /// 0 when VAT is not charged on the line.
    pub vat_percent: Decimal,
    /// E.g. when the maximum demand occurred.
    pub note: String,
    /// The TOU period of a time-of-use energy line.
    pub tou: Option<TouPeriod>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub start: NaiveDate,
    pub end: NaiveDate,
    /// `None`: no tariff in effect on these days.
    pub tariff: Option<String>,
    pub version_from: Option<NaiveDate>,
    /// The public holidays in the segment, as the bill states them: "2026-04-27 Freedom Day:
    /// billed as Saturday".
    pub holidays: Vec<String>,
}

impl Segment {
    pub fn last_day(&self) -> NaiveDate {
        self.end.pred_opt().unwrap_or(self.end)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Bill {
    pub period: Period,
    pub currency: String,
    pub segments: Vec<Segment>,
    pub lines: Vec<Line>,
    pub subtotal: Decimal,
    pub vat: Decimal,
    pub total: Decimal,
    /// Unrounded totals, for checking that splits add up.
    pub exact_total: Decimal,
    pub import_kwh: Decimal,
    pub export_kwh: Decimal,
    /// 15-minute intervals in the period (92, 96 or 100 a day).
    pub intervals: i64,
    /// Device rows present / (devices × intervals).
    pub rows: i64,
    pub completeness_percent: Decimal,
    pub estimated_intervals: u32,
}

pub fn round_cents(x: Decimal) -> Decimal {
    x.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

/// Wh as stored (float8) to a decimal, to the milliwatt-hour: exact and deterministic.
pub fn wh(x: f64) -> Decimal {
    // Interval energies are bounded by the rollup (maths.rs: implausible values and rises are not
    // counted), so this always converts; should it not, the figure is the largest there is, never
    // a silent zero.
    match Decimal::from_f64_retain(x) {
        Some(d) => d.round_dp(3),
        None if x.is_nan() => Decimal::ZERO,
        None => {
            tracing::error!(wh = x, "an energy figure outside the decimal range reached a bill");
            if x > 0.0 { Decimal::MAX } else { Decimal::MIN }
        }
    }
}

const KILO: Decimal = Decimal::from_parts(1000, 0, 0, false, 0);

/// A tariff version prepared for lookups.
struct Compiled<'a> {
    version: &'a Version,
    municipality: &'a Municipality,
    /// Per TOU season: the period of each quarter hour per day type.
    tables: Vec<[[TouPeriod; SLOTS]; 4]>,
    /// The version's holidays by date, sorted: the day type each is billed as and its name.
    holidays: Vec<(NaiveDate, DayType, &'a str)>,
}

impl<'a> Compiled<'a> {
    fn new(version: &'a Version, municipality: &'a Municipality) -> Self {
        let tables = match &version.energy {
            Energy::Tou(t) => t.seasons.iter().map(model::period_table).collect(),
            _ => Vec::new(),
        };
        let mut holidays: Vec<(NaiveDate, DayType, &str)> =
            version.holidays.iter().map(|h| (h.date, h.billed_as, h.name.as_str())).collect();
        holidays.sort_unstable_by_key(|h| h.0);
        Compiled { version, municipality, tables, holidays }
    }

    /// `(season index, period)` of an interval starting at local `at`; `None` for a non-TOU tariff.
    fn classify(&self, at: NaiveDateTime) -> Option<(usize, TouPeriod)> {
        let Energy::Tou(tou) = &self.version.energy else { return None };
        let date = at.date();
        let md = model::MonthDay::of(date);
        let season = tou.seasons.iter().position(|s| md.within(s.from, s.to))?;
        let day_type = self.holiday(date).map_or_else(|| DayType::of(date), |h| h.0);
        let slot = (at.hour() * 60 + at.minute()) as usize / INTERVAL_MINUTES as usize;
        Some((season, self.tables[season][day_type.index()][slot.min(SLOTS - 1)]))
    }

    /// The day type a public holiday on `date` is billed as, and its name (empty when the
    /// municipality's list gives it); `None` on other days and for a non-TOU tariff.
    fn holiday(&self, date: NaiveDate) -> Option<(DayType, &'a str)> {
        let Energy::Tou(tou) = &self.version.energy else { return None };
        match self.holidays.binary_search_by_key(&date, |h| h.0) {
            Ok(i) => Some((self.holidays[i].1, self.holidays[i].2)),
            Err(_) if self.municipality.holidays.binary_search(&date).is_ok() => Some((tou.holidays_as, "")),
            Err(_) => None,
        }
    }

    /// Whether a charge limited to the seasons `names` counts on `date` (every day when empty).
    fn in_seasons(&self, names: &[String], date: NaiveDate) -> bool {
        if names.is_empty() {
            return true;
        }
        let Energy::Tou(tou) = &self.version.energy else { return false };
        let md = model::MonthDay::of(date);
        tou.seasons.iter().any(|s| md.within(s.from, s.to) && names.contains(&s.name))
    }

    /// What the tariff's bills call TOU period `p`.
    fn period_label(&self, p: TouPeriod) -> &'a str {
        match &self.version.energy {
            Energy::Tou(tou) => tou.period_names.label(p),
            _ => p.label(),
        }
    }

    fn vat(&self, c: Component) -> Decimal {
        if self.version.vat_on.contains(&c) { self.municipality.vat_percent } else { Decimal::ZERO }
    }
}

/// Which (assignment, version) applies on `day`.
fn tariff_on(assignments: &[Assignment], day: NaiveDate) -> Option<(usize, usize)> {
    let a = assignments.iter().rposition(|a| a.from <= day)?;
    let v = assignments[a]
        .tariff
        .doc
        .versions
        .iter()
        .position(|v| v.effective_from <= day && v.effective_to.is_none_or(|to| day <= to))?;
    Some((a, v))
}

/// The first demand charge in effect on local `day` (its unit and window), if the site's tariff
/// has one: the version's principal charge (alarms forecast its window).
pub fn demand_on(assignments: &[Assignment], day: NaiveDate) -> Option<&DemandCharge> {
    let (a, v) = tariff_on(assignments, day)?;
    assignments[a].tariff.doc.versions[v].demand_charges.first()
}

/// A bill's maximum demand (the highest of its kW or kVA demand lines, in the line's unit: kvar
/// lines bill reactive demand, not the demand watched) and its demand charge with VAT (every
/// demand line); `None` without a kW or kVA demand line.
pub fn demand_charge(bill: &Bill) -> Option<(Decimal, Decimal)> {
    let lines: Vec<&Line> = bill.lines.iter().filter(|l| l.kind == LineKind::Demand).collect();
    let max = lines.iter().filter(|l| l.unit != DemandUnit::KVar.label()).map(|l| l.quantity).max()?;
    let charge: Decimal = lines.iter().map(|l| l.amount * (Decimal::ONE + l.vat_percent / Decimal::ONE_HUNDRED)).sum();
    Some((max.normalize(), round_cents(charge)))
}

#[derive(Default)]
struct Totals {
    import_wh: Decimal,
    export_wh: Decimal,
    /// Wh per (season, period) of a TOU tariff.
    tou: BTreeMap<(usize, TouPeriod), Decimal>,
    /// Per per-kWh charge of the version: Wh per TOU period (`None`: a flat charge).
    kwh: Vec<BTreeMap<Option<TouPeriod>, Decimal>>,
    /// Per fixed charge: the segment's days in its seasons.
    fixed_days: Vec<i64>,
    /// Per demand charge of the version: the intervals in its window.
    demand: Vec<Vec<Counted>>,
    /// Per demand charge: the segment's days in its seasons.
    demand_days: Vec<i64>,
    /// Per reactive charge of the version: the intervals in its periods and seasons.
    reactive: Vec<Vec<Counted>>,
    /// The segment's energy for a power factor over the period: the intervals with reactive
    /// data (their Wh and varh), and how many had none.
    pf: Sum,
}

/// Energy added up over some intervals; `unknown`: how many of them had no reactive data.
#[derive(Debug, Clone, Copy, Default)]
struct Sum {
    wh: Decimal,
    vah: Decimal,
    varh: Decimal,
    /// Wh of the intervals with reactive data (what a power factor compares `varh` with).
    wh_known: Decimal,
    unknown: u32,
}

impl Sum {
    fn add(&mut self, c: &Counted) {
        self.wh += c.wh;
        self.vah += c.vah;
        match c.varh {
            Some(varh) => {
                self.varh += varh;
                self.wh_known += c.wh;
            }
            None => self.unknown += 1,
        }
    }

    fn sub(&mut self, c: &Counted) {
        self.wh -= c.wh;
        self.vah -= c.vah;
        match c.varh {
            Some(varh) => {
                self.varh -= varh;
                self.wh_known -= c.wh;
            }
            None => self.unknown -= 1,
        }
    }

    /// The energy a demand charge in `unit` bills (unknown reactive energy counts as none).
    fn of(&self, unit: DemandUnit) -> Decimal {
        match unit {
            DemandUnit::KW => self.wh,
            DemandUnit::KVA => self.vah,
            DemandUnit::KVar => self.varh,
        }
    }

    /// kWh / √(kWh² + kvarh²) over the intervals with reactive data, to 4 decimals; `None`
    /// without any (or without energy).
    fn power_factor(&self) -> Option<Decimal> {
        use rust_decimal::prelude::ToPrimitive;
        let (p, q) = (self.wh_known.to_f64()?, self.varh.to_f64()?);
        if p.hypot(q) == 0.0 {
            return None;
        }
        Decimal::from_f64_retain(p / p.hypot(q)).map(|pf| pf.round_dp(4))
    }
}

/// One interval that counts towards a demand charge.
#[derive(Debug, Clone, Copy)]
struct Counted {
    start: DateTime<Utc>,
    /// Local start.
    at: NaiveDateTime,
    /// UTC offset in seconds: tells a repeated local hour apart.
    offset: i32,
    wh: Decimal,
    vah: Decimal,
    /// Reactive energy imported; `None`: unknown.
    varh: Option<Decimal>,
}

impl Counted {
    /// The (local start, UTC offset) of the block interval of `minutes` from local midnight that
    /// holds it: demand intervals and reactive integrating intervals alike.
    fn block(&self, minutes: i64) -> (NaiveDateTime, i32) {
        let into = (i64::from(self.at.hour()) * 60 + i64::from(self.at.minute())) % minutes;
        (self.at - Duration::minutes(into), self.offset)
    }
}

/// Days `start..end` on one (assignment, version); `None`: no tariff.
type DaysKey = (NaiveDate, NaiveDate, Option<(usize, usize)>);

pub fn bill(input: &BillInput<'_>) -> Bill {
    let BillInput { tz, period, devices, assignments, .. } = *input;
    let keys = day_segments(period, assignments);
    let compiled: Vec<Option<Compiled<'_>>> = keys
        .iter()
        .map(|(_, _, k)| {
            k.map(|(a, v)| {
                let t = &assignments[a].tariff;
                Compiled::new(&t.doc.versions[v], &t.municipality)
            })
        })
        .collect();
    let sums = sum_intervals(input, &keys, &compiled);

    let period_days = Decimal::from(period.days().max(1));
    let mut lines = Vec::new();
    let mut segments = Vec::new();
    let mut currency = String::new();
    for (s, ((start, end, key), t)) in keys.iter().zip(&sums.totals).enumerate() {
        let days = Decimal::from((*end - *start).num_days());
        let Some(c) = &compiled[s] else {
            segments.push(Segment { start: *start, end: *end, tariff: None, version_from: None, holidays: vec![] });
            let unpriced = "No tariff in effect: not priced".into();
            let l = line(s, LineKind::Energy, unpriced, t.import_wh / KILO, "kWh", Decimal::ZERO, Decimal::ZERO);
            lines.push(l.coded("unpriced".into()));
            continue;
        };
        let Some((a, _)) = key else { continue };
        if currency.is_empty() {
            currency = c.municipality.currency.clone();
        }
        segments.push(Segment {
            start: *start,
            end: *end,
            tariff: Some(assignments[*a].tariff.doc.name.clone()),
            version_from: Some(c.version.effective_from),
            holidays: start
                .iter_days()
                .take_while(|d| d < end)
                .filter_map(|d| {
                    let (day_type, name) = c.holiday(d)?;
                    let name = if name.is_empty() { String::new() } else { format!(" {name}") };
                    Some(format!("{d}{name}: billed as {}", day_type.label()))
                })
                .collect(),
        });
        let part = Part { segment: s, tariff: c, totals: t, start: *start, end: *end, days, period_days, input };
        let mut own = part.energy_lines();
        own.extend(part.kwh_charge_lines());
        own.extend(part.fixed_lines());
        own.extend(part.demand_lines());
        own.extend(part.reactive_lines());
        own.extend(part.export_line());
        // Amounts as the tariff rounds them; then its minimum or cap on what they add up to.
        for l in &mut own {
            l.amount = c.version.rounding.cents(l.exact);
        }
        own.extend(part.limit_line(&own));
        lines.extend(own);
    }

    let subtotal: Decimal = lines.iter().map(|l| l.amount).sum();
    let vat = vat_of(lines.iter().map(|l| (l.amount, l.vat_percent)));
    let exact_total: Decimal =
        lines.iter().map(|l| l.exact * (Decimal::ONE + l.vat_percent / Decimal::ONE_HUNDRED)).sum();
    let intervals_in_period = period.intervals(tz);
    let expected = intervals_in_period * i64::from(devices);
    let completeness_percent = if expected == 0 {
        Decimal::ZERO
    } else {
        (Decimal::from(sums.rows.min(expected)) * Decimal::ONE_HUNDRED / Decimal::from(expected)).round_dp(1)
    };
    Bill {
        period,
        currency,
        segments,
        subtotal,
        vat,
        total: subtotal + vat,
        exact_total,
        import_kwh: sums.totals.iter().map(|t| t.import_wh).sum::<Decimal>() / KILO,
        export_kwh: sums.totals.iter().map(|t| t.export_wh).sum::<Decimal>() / KILO,
        lines,
        intervals: intervals_in_period,
        rows: sums.rows,
        completeness_percent,
        estimated_intervals: sums.estimated,
    }
}

/// Step 1 of a bill: the period's days in runs with one (assignment, version) each.
fn day_segments(period: Period, assignments: &[Assignment]) -> Vec<DaysKey> {
    let mut keys: Vec<DaysKey> = Vec::new();
    let mut day = period.start;
    while day < period.end {
        let key = tariff_on(assignments, day);
        let next = day.succ_opt().unwrap_or(period.end);
        match keys.last_mut() {
            Some(last) if last.2 == key => last.1 = next,
            _ => keys.push((day, next, key)),
        }
        day = next;
    }
    keys
}

/// The intervals summed per segment, and the device rows and estimated intervals among them.
struct Sums {
    totals: Vec<Totals>,
    rows: i64,
    estimated: u32,
}

/// Step 2: each interval of the period into the segment of its local date: energy, TOU classes and
/// demand windows.
fn sum_intervals(input: &BillInput<'_>, keys: &[DaysKey], compiled: &[Option<Compiled<'_>>]) -> Sums {
    let totals = keys
        .iter()
        .zip(compiled)
        .map(|((start, end, _), c)| {
            let Some(c) = c else { return Totals::default() };
            let v = c.version;
            let days = |seasons: &[String]| {
                start.iter_days().take_while(|day| day < end).filter(|day| c.in_seasons(seasons, *day)).count() as i64
            };
            Totals {
                kwh: vec![BTreeMap::new(); v.kwh_charges.len()],
                fixed_days: v.fixed_charges.iter().map(|f| days(&f.seasons)).collect(),
                demand: vec![Vec::new(); v.demand_charges.len()],
                demand_days: v.demand_charges.iter().map(|d| days(&d.seasons)).collect(),
                reactive: vec![Vec::new(); v.reactive_charges.len()],
                ..Totals::default()
            }
        })
        .collect();
    let mut sums = Sums { totals, rows: 0, estimated: 0 };
    let (from, to) = input.period.utc(input.tz);
    for i in input.intervals.iter().filter(|i| from <= i.start && i.start < to) {
        let local = i.start.with_timezone(&input.tz);
        let at = local.naive_local();
        let Some(s) = keys.iter().position(|(a, b, _)| *a <= at.date() && at.date() < *b) else { continue };
        sums.rows += i64::from(i.rows);
        sums.estimated += u32::from(i.estimated);
        let (imp, exp, vah) = (wh(i.import_wh), wh(i.export_wh), wh(i.vah));
        let offset = local.offset().fix().local_minus_utc();
        let counted = Counted { start: i.start, at, offset, wh: imp, vah, varh: i.reactive_import_varh.map(wh) };
        let t = &mut sums.totals[s];
        t.import_wh += imp;
        t.export_wh += exp;
        t.pf.add(&counted);
        let Some(c) = &compiled[s] else { continue };
        let class = c.classify(at);
        let in_periods = |periods: &[TouPeriod]| periods.is_empty() || class.is_some_and(|(_, p)| periods.contains(&p));
        if let Some(key) = class {
            *t.tou.entry(key).or_default() += imp;
        }
        for (n, k) in c.version.kwh_charges.iter().enumerate() {
            if !c.in_seasons(&k.seasons, at.date()) {
                continue;
            }
            let key = match (k.rate, class) {
                (Some(_), _) => None,
                (None, Some((_, p))) if k.rates.get(p).is_some() => Some(p),
                _ => continue,
            };
            *t.kwh[n].entry(key).or_default() += imp;
        }
        for (n, d) in c.version.demand_charges.iter().enumerate() {
            if in_periods(&d.periods) && c.in_seasons(&d.seasons, at.date()) {
                t.demand[n].push(counted);
            }
        }
        for (n, r) in c.version.reactive_charges.iter().enumerate() {
            if in_periods(&r.periods) && c.in_seasons(&r.seasons, at.date()) {
                t.reactive[n].push(counted);
            }
        }
    }
    sums
}

/// The highest demand interval of one charge: its energy, local start and first instant, or none.
fn peak_interval(d: &DemandCharge, counted: &[Counted]) -> Option<(Sum, NaiveDateTime, DateTime<Utc>)> {
    let minutes = i64::from(d.window_minutes);
    // (energy, local start, UTC offset, first instant) of each candidate interval.
    let mut candidates: Vec<(Sum, NaiveDateTime, i32, DateTime<Utc>)> = Vec::new();
    match d.method {
        DemandMethod::Block => {
            // Key: (local interval start, UTC offset).
            let mut blocks: BTreeMap<(NaiveDateTime, i32), (Sum, DateTime<Utc>)> = BTreeMap::new();
            for c in counted {
                blocks.entry(c.block(minutes)).or_insert((Sum::default(), c.start)).0.add(c);
            }
            candidates.extend(blocks.into_iter().map(|((at, offset), (e, first))| (e, at, offset, first)));
        }
        DemandMethod::Sliding => {
            // Every quarter hour with counted energy starts an interval; `counted` is in time order.
            let mut end = 0;
            let mut sum = Sum::default();
            for (i, c) in counted.iter().enumerate() {
                let until = c.start + Duration::minutes(minutes);
                while end < counted.len() && counted[end].start < until {
                    sum.add(&counted[end]);
                    end += 1;
                }
                candidates.push((sum, c.at, c.offset, c.start));
                sum.sub(&counted[i]);
            }
        }
    }
    // The highest; of equals, the earliest instant (not local time: in a repeated hour the
    // later occurrence reads earlier), as the database's earlier peaks are chosen
    // (`energy::demand_peaks`).
    candidates
        .into_iter()
        .max_by(|x, y| x.0.of(d.unit).cmp(&y.0.of(d.unit)).then(y.3.cmp(&x.3)))
        .map(|(e, at, _, first)| (e, at, first))
}

/// A demand charge's demand in one part: `measured` this period (after the power factor), `qty`
/// billed (after the ratchet and the NMD), and the note saying why.
struct Billed {
    measured: Decimal,
    qty: Decimal,
    note: String,
}

/// Step 3: one priced segment of the period, and its lines.
struct Part<'a> {
    segment: usize,
    tariff: &'a Compiled<'a>,
    totals: &'a Totals,
    /// The part's local days `start..end`.
    start: NaiveDate,
    end: NaiveDate,
    days: Decimal,
    period_days: Decimal,
    /// The site's NMD, its earlier peaks, its zone and the period.
    input: &'a BillInput<'a>,
}

impl Part<'_> {
    /// kWh × rate: flat, per block (thresholds prorated to the segment), or per season × period.
    fn energy_lines(&self) -> Vec<Line> {
        let (s, t, v) = (self.segment, self.totals, self.tariff.version);
        let vat = self.tariff.vat(Component::Energy);
        let import_kwh = t.import_wh / KILO;
        let mut lines = Vec::new();
        match &v.energy {
            Energy::Flat { rate } => {
                lines.push(
                    line(s, LineKind::Energy, "Energy".into(), import_kwh, "kWh", *rate, vat).coded("energy".into()),
                );
            }
            Energy::Blocks { blocks } => {
                let (mut remaining, mut lower) = (import_kwh, Decimal::ZERO);
                for (b, block) in blocks.iter().enumerate() {
                    let upper = block.up_to_kwh.map(|u| u * self.days / self.period_days);
                    let qty = upper.map_or(remaining, |u| remaining.min(u - lower));
                    let label = match block.up_to_kwh {
                        Some(u) => format!(
                            "Block {} (up to {} kWh)",
                            b + 1,
                            (u * self.days / self.period_days).round_dp(2).normalize()
                        ),
                        None => format!("Block {} (the rest)", b + 1),
                    };
                    if qty > Decimal::ZERO || b == 0 {
                        let code = format!("energy.block{}", b + 1);
                        lines.push(line(s, LineKind::Energy, label, qty, "kWh", block.rate, vat).coded(code));
                    }
                    remaining -= qty;
                    lower = upper.unwrap_or(lower);
                    if remaining <= Decimal::ZERO {
                        break;
                    }
                }
            }
            Energy::Tou(tou) => {
                for ((season, p), wh) in &t.tou {
                    let s_def = &tou.seasons[*season];
                    let rate = s_def.rates.get(*p).unwrap_or_default();
                    let label = format!("{} · {}", s_def.name, tou.period_names.label(*p));
                    let code = format!("energy.{}.{}", model::code_or(&s_def.code, "s", *season), p.key());
                    let mut l = line(s, LineKind::Energy, label, wh / KILO, "kWh", rate, vat).coded(code);
                    l.tou = Some(*p);
                    lines.push(l);
                }
            }
        }
        lines
    }

    /// Per per-kWh charge: its kWh (in its seasons) × its flat rate, or one line per TOU period
    /// with a rate. They carry the energy charge's VAT.
    fn kwh_charge_lines(&self) -> Vec<Line> {
        let vat = self.tariff.vat(Component::Energy);
        let mut lines = Vec::new();
        for (n, (k, wh)) in self.tariff.version.kwh_charges.iter().zip(&self.totals.kwh).enumerate() {
            let code = model::code_or(&k.code, "kwh", n);
            for (period, wh) in wh {
                let (label, rate, code) = match period {
                    None => (k.name.clone(), k.rate.unwrap_or_default(), code.clone()),
                    Some(p) => (
                        format!("{} · {}", k.name, self.tariff.period_label(*p)),
                        k.rates.get(*p).unwrap_or_default(),
                        format!("{code}.{}", p.key()),
                    ),
                };
                lines.push(line(self.segment, LineKind::Charge, label, wh / KILO, "kWh", rate, vat).coded(code));
            }
        }
        lines
    }

    /// Per fixed charge: its days in the segment and its seasons × the rate per day, or the
    /// per-month rate prorated over those days as the version's proration rule says.
    fn fixed_lines(&self) -> Vec<Line> {
        let v = self.tariff.version;
        let vat = self.tariff.vat(Component::Fixed);
        let period_days = self.period_days.to_i64().unwrap_or(1);
        let mut lines = Vec::new();
        for (n, (f, days)) in v.fixed_charges.iter().zip(&self.totals.fixed_days).enumerate() {
            if *days == 0 {
                continue;
            }
            let label = match (f.name.trim().is_empty(), f.per) {
                (false, _) => f.name.clone(),
                (true, FixedPer::Day) => "Fixed charge per day".into(),
                (true, FixedPer::Month) => "Fixed charge per month".into(),
            };
            let (rate, band) = self.fixed_rate(f);
            let mut l = match f.per {
                FixedPer::Day => line(self.segment, LineKind::Fixed, label, Decimal::from(*days), "days", rate, vat),
                FixedPer::Month => {
                    let in_seasons = || self.days_iter().filter(|d| self.tariff.in_seasons(&f.seasons, *d));
                    let months = v.proration.prorate(Decimal::ONE, in_seasons(), period_days);
                    let mut l = line(self.segment, LineKind::Fixed, label, months.round_dp(4), "months", rate, vat);
                    l.exact = v.proration.prorate(rate, in_seasons(), period_days);
                    l.amount = round_cents(l.exact);
                    if v.proration != model::Proration::PerPeriod {
                        l.note = format!("{days} days, {}", v.proration.label().to_lowercase());
                    }
                    l
                }
            };
            if !band.is_empty() {
                l.note = if l.note.is_empty() { band } else { format!("{}; {band}", l.note) };
            }
            lines.push(l.coded(model::code_or(&f.code, "fixed", n)));
        }
        lines
    }

    /// The part's local days.
    fn days_iter(&self) -> impl Iterator<Item = NaiveDate> + '_ {
        self.start.iter_days().take_while(|d| *d < self.end)
    }

    /// Per demand charge: its billed demand (the highest interval average in its window, or the
    /// ratchet's or the NMD's when higher) × the rate × the share of the period's days in its
    /// seasons, with when it occurred and why it is billed; and the excess over the NMD × its
    /// penalty rate, prorated the same way.
    fn demand_lines(&self) -> Vec<Line> {
        let v = self.tariff.version;
        let mut lines = Vec::new();
        for (n, d) in v.demand_charges.iter().enumerate() {
            let days = Decimal::from(self.totals.demand_days[n]);
            if days.is_zero() {
                continue;
            }
            let Billed { measured, qty, note } = self.billed(n);
            let vat = self.tariff.vat(Component::Demand);
            let label = demand_label(d, self.tariff);
            let code = model::code_or(&d.code, "demand", n);
            let prorated = |mut l: Line, note: String| {
                l.exact = l.quantity * l.rate * days / self.period_days;
                l.amount = round_cents(l.exact);
                l.note = if days == self.period_days {
                    note
                } else {
                    format!("{note}; prorated for {days} of {} days", self.period_days)
                };
                l
            };
            let l = line(self.segment, LineKind::Demand, label.clone(), qty, d.unit.label(), d.rate, vat);
            lines.push(prorated(l.coded(code.clone()), note));
            if let (Some(rate), Some(nmd)) = (d.excess_nmd_rate, self.nmd_in(d.unit)) {
                let excess = measured - nmd.value;
                if excess > Decimal::ZERO {
                    let shown = |x| self.demand_text(x, d.unit);
                    let note = format!("this month's {} − NMD {nmd} = {}", shown(measured), shown(excess));
                    let label = format!("{label}: excess over NMD");
                    let l = line(self.segment, LineKind::Demand, label, excess, d.unit.label(), rate, vat);
                    lines.push(prorated(l.coded(format!("{code}.excess")), note));
                }
            }
        }
        lines
    }

    /// Demand charge `n`'s demand: this period's maximum in its window, adjusted for the power
    /// factor, and what it bills after the ratchet and the NMD.
    fn billed(&self, n: usize) -> Billed {
        let d = &self.tariff.version.demand_charges[n];
        let peak = peak_interval(d, &self.totals.demand[n]);
        let (measured, note) = match peak {
            Some((energy, start_local, first)) => {
                let end_local = start_local + Duration::minutes(i64::from(d.window_minutes));
                let note = format!(
                    "maximum on {} {}–{} ({} UTC)",
                    start_local.format("%Y-%m-%d"),
                    start_local.format("%H:%M"),
                    end_local.format("%H:%M"),
                    first.format("%Y-%m-%d %H:%M")
                );
                (self.demand_of(d, energy.of(d.unit)), note)
            }
            None => (Decimal::ZERO, "no demand recorded".into()),
        };
        // The power factor adjusts this period's demand; the ratchet then compares it with
        // the earlier peaks and the NMD.
        let (measured, note) = self.power_factor_adjusted(d, peak.map(|p| p.0), measured, note);
        let (qty, note) = self.billed_demand(d, measured, note);
        Billed { measured, qty, note }
    }

    /// A fixed charge's rate, and the note saying which capacity band chose it (empty without
    /// bands).
    fn fixed_rate(&self, f: &FixedCharge) -> (Decimal, String) {
        let v = self.tariff.version;
        let Some(bands) = &f.bands else { return (f.rate, String::new()) };
        let found =
            v.demand_charges.iter().enumerate().find(|(i, d)| model::code_or(&d.code, "demand", *i) == bands.demand);
        // Validation makes the code one of the version's demand charges.
        let Some((n, d)) = found else { return (f.rate, String::new()) };
        let demand = self.billed(n).qty;
        let rate = f.rate_for(demand);
        let shown = |x| self.demand_text(x, d.unit);
        let band = match bands.above.iter().rposition(|b| demand > b.above) {
            Some(i) => match bands.above.get(i + 1) {
                Some(next) => format!("above {}, up to {}", shown(bands.above[i].above), shown(next.above)),
                None => format!("above {}", shown(bands.above[i].above)),
            },
            None => format!("up to {}", shown(bands.above[0].above)),
        };
        (rate, format!("{} {}: band {band}", demand_label(d, self.tariff), shown(demand)))
    }

    /// A demand as the notes show it: to the tariff's decimals, with its unit.
    fn demand_text(&self, x: Decimal, unit: DemandUnit) -> String {
        format!("{:.*} {}", self.tariff.version.rounding.demand_decimals as usize, x, unit.label())
    }

    /// The site's NMD when it is in `unit` (a kW NMD says nothing of kVA demand).
    fn nmd_in(&self, unit: DemandUnit) -> Option<Nmd> {
        self.input.nmd.filter(|n| n.unit == unit)
    }

    /// What charge `d` bills: this period's maximum `measured` (when it occurred: `note`), or
    /// the ratchet's share of the earlier peak, or the NMD, whichever is highest (of equals, this
    /// period's, then the ratchet's); the note says which and why.
    fn billed_demand(&self, d: &DemandCharge, measured: Decimal, note: String) -> (Decimal, String) {
        if d.ratchet.is_none() && !d.at_least_nmd {
            return (measured, note);
        }
        let rounding = self.tariff.version.rounding;
        let unit = d.unit.label();
        let shown = |x| self.demand_text(x, d.unit);
        // (demand, what it is), this period's first.
        let mut candidates = vec![(measured, format!("this month's {}", shown(measured)))];
        let mut caveats = Vec::new();
        if let Some(r) = d.ratchet {
            match self.earlier_peak(d, r.periods) {
                Some((peak, at)) => candidates.push((
                    rounding.demand(peak * r.percent / Decimal::ONE_HUNDRED),
                    format!(
                        "ratchet: {} % of {} on {}",
                        r.percent.normalize(),
                        shown(peak),
                        at.format("%Y-%m-%d %H:%M")
                    ),
                )),
                None => caveats.push(format!("ratchet: no demand recorded in the {} periods before", r.periods)),
            }
        }
        if d.at_least_nmd {
            match (self.input.nmd, self.nmd_in(d.unit)) {
                (_, Some(nmd)) => candidates.push((nmd.value, format!("NMD {nmd}"))),
                (Some(other), None) => caveats.push(format!("NMD {other} not used: the charge is in {unit}")),
                (None, None) => caveats.push("no NMD entered for the site".to_string()),
            }
        }
        let mut best = 0;
        for (i, c) in candidates.iter().enumerate() {
            if c.0 > candidates[best].0 {
                best = i;
            }
        }
        let (qty, why) = candidates[best].clone();
        let others: Vec<&str> =
            candidates.iter().enumerate().filter(|(i, _)| *i != best).map(|(_, c)| c.1.as_str()).collect();
        let mut text = why;
        if !others.is_empty() {
            let strictly = candidates.iter().enumerate().all(|(i, c)| i == best || c.0 < qty);
            text = format!("{text} {} {}", if strictly { ">" } else { "≥" }, others.join(", "));
        }
        text = format!("{text}; {note}");
        for c in caveats {
            text = format!("{text}; {c}");
        }
        (qty, text)
    }

    /// The highest demand (in the charge's unit, rounded as the tariff rounds) of the `n` billing
    /// periods before this one, measured like charge `d`, and when it began (local); of equals,
    /// the earliest.
    fn earlier_peak(&self, d: &DemandCharge, n: u32) -> Option<(Decimal, NaiveDateTime)> {
        let periods = earlier_periods(self.input.period, n);
        let (energy, first) = self
            .input
            .history
            .iter()
            .filter(|h| {
                h.unit == d.unit
                    && h.window_minutes == d.window_minutes
                    && h.method == d.method
                    && periods.contains(&h.period)
            })
            .filter_map(|h| h.peak)
            .max_by(|x, y| x.0.cmp(&y.0).then(y.1.cmp(&x.1)))?;
        Some((self.demand_of(d, energy), first.with_timezone(&self.input.tz).naive_local()))
    }

    /// The demand (kW or kVA, rounded as the tariff rounds) of `energy` (Wh or VAh) in one of
    /// charge `d`'s intervals: the energy over the interval's length, as utilities bill it.
    fn demand_of(&self, d: &DemandCharge, energy: Decimal) -> Decimal {
        let hours = Decimal::from(d.window_minutes) / Decimal::from(60);
        self.tariff.version.rounding.demand(energy / KILO / hours)
    }

    /// Billed demand `qty` after the charge's power-factor adjustment (× threshold / PF when the
    /// PF, over the segment or in the peak interval, is below the threshold), and its note.
    fn power_factor_adjusted(
        &self,
        d: &DemandCharge,
        peak: Option<Sum>,
        qty: Decimal,
        note: String,
    ) -> (Decimal, String) {
        let Some(rule) = d.power_factor else { return (qty, note) };
        let (measured, place) = match rule.measured {
            PfMeasured::Period => (Some(self.totals.pf), "over the period"),
            PfMeasured::Peak => (peak, "at the maximum demand"),
        };
        let where_ = match measured.map_or(0, |m| m.unknown) {
            0 => place.to_string(),
            n => format!("{place} ({n} intervals without reactive data left out)"),
        };
        let unit = d.unit.label();
        match measured.and_then(|m| m.power_factor()) {
            Some(pf) if pf < rule.threshold => {
                let adjusted = self.tariff.version.rounding.demand(qty * rule.threshold / pf);
                let note = format!(
                    "{note}; power factor {} {where_} below {}: {} {unit} × {} / {} = {} {unit}",
                    pf.normalize(),
                    rule.threshold.normalize(),
                    qty.normalize(),
                    rule.threshold.normalize(),
                    pf.normalize(),
                    adjusted.normalize()
                );
                (adjusted, note)
            }
            Some(pf) => (qty, format!("{note}; power factor {} {where_}: not adjusted", pf.normalize())),
            None => (qty, format!("{note}; power factor unknown (no reactive energy recorded): not adjusted")),
        }
    }

    /// Per reactive charge: the kvarh above its free share of the kWh (per integrating interval,
    /// added up, or over the segment) × its rate per kvarh. They carry the energy charge's VAT.
    fn reactive_lines(&self) -> Vec<Line> {
        let vat = self.tariff.vat(Component::Energy);
        let mut lines = Vec::new();
        for (n, (r, counted)) in self.tariff.version.reactive_charges.iter().zip(&self.totals.reactive).enumerate() {
            let (excess, all, note) = reactive_excess(r, counted);
            let mut l = line(self.segment, LineKind::Reactive, r.name.clone(), excess / KILO, "kvarh", r.rate, vat)
                .coded(model::code_or(&r.code, "reactive", n));
            l.note = format!(
                "{} kvarh above {} % of {} kWh{note}",
                grouped(excess / KILO),
                r.free_percent.normalize(),
                grouped(all.wh / KILO)
            );
            if all.unknown > 0 {
                l.note.push_str(&format!("; {} intervals without reactive data (counted as none)", all.unknown));
            }
            lines.push(l);
        }
        lines
    }

    /// The minimum charge's top-up, or the cap's reduction, of the part's `lines` (export credits
    /// aside): compared with their rounded amounts, so a bill at the limit totals it exactly. The
    /// monthly limit is prorated by the part's share of the period's days; the line carries the
    /// fixed charges' VAT.
    fn limit_line(&self, lines: &[Line]) -> Option<Line> {
        let v = self.tariff.version;
        let charged: Decimal = lines.iter().filter(|l| l.kind != LineKind::Export).map(|l| l.amount).sum();
        let period_days = self.period_days.to_i64().unwrap_or(1);
        let share =
            |per_month: Decimal| v.rounding.cents(v.proration.prorate(per_month, self.days_iter(), period_days));
        let (code, label, limit, adjustment) = match (v.minimum_per_month.map(share), v.maximum_per_month.map(share)) {
            (Some(min), _) if charged < min => ("minimum", "Minimum charge top-up", min, min - charged),
            (_, Some(max)) if charged > max => ("maximum", "Maximum charge reduction", max, max - charged),
            _ => return None,
        };
        let vat = self.tariff.vat(Component::Fixed);
        let mut l = line(self.segment, LineKind::Adjustment, label.into(), Decimal::ONE, "", adjustment, vat)
            .coded(code.into());
        l.note = format!("charges {charged:.2}, {code} {limit:.2}");
        Some(l)
    }

    /// Exported kWh × the credit, negative.
    fn export_line(&self) -> Option<Line> {
        let rate = self.tariff.version.export_credit?;
        if self.totals.export_wh.is_zero() {
            return None;
        }
        let vat = self.tariff.vat(Component::Export);
        let label = "Export credit".into();
        let mut l = line(self.segment, LineKind::Export, label, self.totals.export_wh / KILO, "kWh", rate, vat)
            .coded("export".into());
        l.exact = -l.exact;
        l.amount = -l.amount;
        Some(l)
    }
}

/// A reactive charge's excess varh over `counted` (its intervals), their energy added up, and
/// what the note adds about how: per integrating interval, the excess of each
/// `window_minutes` block interval (from local midnight) is max(0, varh − share × Wh) and they
/// are added up; over the period, it is that of the sums.
fn reactive_excess(r: &ReactiveCharge, counted: &[Counted]) -> (Decimal, Sum, String) {
    let share = r.free_percent / Decimal::ONE_HUNDRED;
    let excess = |s: &Sum| (s.varh - s.wh * share).max(Decimal::ZERO);
    let mut all = Sum::default();
    counted.iter().for_each(|c| all.add(c));
    match r.per {
        ReactivePer::Period => {
            (excess(&all), all, format!(" over the period ({} kvarh in all)", grouped(all.varh / KILO)))
        }
        ReactivePer::Interval => {
            let mut blocks: BTreeMap<(NaiveDateTime, i32), Sum> = BTreeMap::new();
            for c in counted {
                blocks.entry(c.block(i64::from(r.window_minutes))).or_default().add(c);
            }
            let over = blocks.values().filter(|b| !excess(b).is_zero()).count();
            let total = blocks.values().map(excess).sum();
            let note = format!(
                ", per {}-minute interval ({over} of {} intervals over; {} kvarh in all)",
                r.window_minutes,
                blocks.len(),
                grouped(all.varh / KILO)
            );
            (total, all, note)
        }
    }
}

/// `x` to 3 decimals without trailing zeros, with thousands separators: 1,234.5.
fn grouped(x: Decimal) -> String {
    let x = x.round_dp(3).normalize();
    let out = crate::sites::readings::group_thousands(&x.abs().to_string(), ',');
    if x.is_sign_negative() && !x.is_zero() { format!("-{out}") } else { out }
}

/// The charge's name, or what it is: "Maximum demand (kVA, 30-minute, Peak)".
fn demand_label(d: &DemandCharge, tariff: &Compiled<'_>) -> String {
    if !d.name.trim().is_empty() {
        return d.name.clone();
    }
    let mut only = String::new();
    if d.method == DemandMethod::Sliding {
        only.push_str(" sliding");
    }
    if !d.periods.is_empty() {
        only.push_str(", ");
        only.push_str(&d.periods.iter().map(|p| tariff.period_label(*p)).collect::<Vec<_>>().join("/"));
    }
    if !d.seasons.is_empty() {
        only.push_str(", ");
        only.push_str(&d.seasons.join("/"));
    }
    format!("Maximum demand ({}, {}-minute{only})", d.unit.label(), d.window_minutes)
}

fn line(
    segment: usize,
    kind: LineKind,
    description: String,
    quantity: Decimal,
    unit: &'static str,
    rate: Decimal,
    vat_percent: Decimal,
) -> Line {
    let exact = quantity * rate;
    Line {
        kind,
        code: String::new(),
        segment,
        description,
        quantity,
        unit,
        rate,
        exact,
        amount: round_cents(exact),
        vat_percent,
        note: String::new(),
        tou: None,
    }
}

impl Line {
    fn coded(mut self, code: String) -> Line {
        self.code = code;
        self
    }
}

/// Energy and its charge per TOU period over the bill's TOU lines (every season and tariff
/// segment of the period added up), in period order; empty when no day of the period was on a
/// time-of-use tariff. The charges are the lines' rounded amounts without VAT, so they add up
/// to the bill's TOU energy lines exactly.
pub fn tou_totals(bill: &Bill) -> Vec<(TouPeriod, Decimal, Decimal)> {
    let mut totals: BTreeMap<TouPeriod, (Decimal, Decimal)> = BTreeMap::new();
    for l in &bill.lines {
        if let Some(p) = l.tou {
            let t = totals.entry(p).or_default();
            t.0 += l.quantity;
            t.1 += l.amount;
        }
    }
    totals.into_iter().map(|(p, (kwh, amount))| (p, kwh, amount)).collect()
}

/// VAT of `(amount, percent)` lines: per rate, the rounded percentage of the lines' sum.
fn vat_of(lines: impl Iterator<Item = (Decimal, Decimal)>) -> Decimal {
    let mut by_rate: BTreeMap<Decimal, Decimal> = BTreeMap::new();
    for (amount, pct) in lines.filter(|(_, p)| !p.is_zero()) {
        *by_rate.entry(pct).or_default() += amount;
    }
    by_rate.into_iter().map(|(pct, sum)| round_cents(sum * pct / Decimal::ONE_HUNDRED)).sum()
}

/// Month to date and a projection to the period's end from a bill of the whole period computed
/// on the data so far, `elapsed` being the share of the period gone (0..=1): fixed charges
/// accrue with time; energy and export so far, extrapolated at the same pace; demand already
/// reached stays (it can only grow). Both include VAT.
pub fn outlook(bill: &Bill, elapsed: Decimal) -> (Decimal, Decimal) {
    let elapsed = elapsed.clamp(Decimal::ZERO, Decimal::ONE);
    let scaled = |f: &dyn Fn(&Line) -> Decimal| {
        let amounts: Vec<(Decimal, Decimal)> = bill.lines.iter().map(|l| (round_cents(f(l)), l.vat_percent)).collect();
        amounts.iter().map(|a| a.0).sum::<Decimal>() + vat_of(amounts.into_iter())
    };
    let to_date = scaled(&|l| if l.kind == LineKind::Fixed { l.exact * elapsed } else { l.exact });
    let projected = scaled(&|l| match l.kind {
        LineKind::Energy | LineKind::Charge | LineKind::Reactive | LineKind::Export if !elapsed.is_zero() => {
            l.exact / elapsed
        }
        LineKind::Energy | LineKind::Charge | LineKind::Reactive | LineKind::Export => Decimal::ZERO,
        LineKind::Fixed | LineKind::Demand | LineKind::Adjustment => l.exact,
    });
    (to_date, projected)
}

/// One interval for the CSV export: local start, UTC start, energy, and its TOU class.
pub struct IntervalRow<'a> {
    pub local: NaiveDateTime,
    pub utc_offset: String,
    pub interval: &'a SiteInterval,
    pub season: Option<&'a str>,
    pub period: Option<TouPeriod>,
}

pub fn interval_rows<'a>(input: &BillInput<'a>) -> Vec<IntervalRow<'a>> {
    let (from, to) = input.period.utc(input.tz);
    input
        .intervals
        .iter()
        .filter(|i| from <= i.start && i.start < to)
        .map(|i| {
            let local = i.start.with_timezone(&input.tz);
            let at = local.naive_local();
            let tariff = tariff_on(input.assignments, at.date()).map(|(a, v)| {
                let t = &input.assignments[a].tariff;
                (t, &t.doc.versions[v])
            });
            let class = tariff.and_then(|(t, v)| {
                let (season, period) = Compiled::new(v, &t.municipality).classify(at)?;
                let Energy::Tou(tou) = &v.energy else { return None };
                Some((tou.seasons[season].name.as_str(), period))
            });
            IntervalRow {
                local: at,
                utc_offset: local.offset().fix().to_string(),
                interval: i,
                season: class.map(|c| c.0),
                period: class.map(|c| c.1),
            }
        })
        .collect()
}
