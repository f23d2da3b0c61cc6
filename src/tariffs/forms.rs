//! The Rates forms as the browser sends them (kept as typed, to show again next to their errors)
//! and their parsing into the model. The tariff editor edits one version at a time: a TOU grid
//! of seasons × day types × hours, blocks, fixed, demand, export and VAT fields.

use std::collections::HashMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::model::{
    self, AmountRounding, Band, Block, CapacityBands, Component, DayType, DemandCharge, DemandMethod, DemandUnit,
    Energy, FixedCharge, FixedPer, Holiday, KwhCharge, MonthDay, Municipality, PeriodNames, PeriodRates, PfMeasured,
    PowerFactor, Proration, Ratchet, ReactiveCharge, ReactivePer, Rounding, Season, Tou, TouPeriod, Version,
};
use crate::error::FieldErrors;

pub const SEASON_SLOTS: usize = 4;
pub const BLOCK_SLOTS: usize = 6;
pub const DEMAND_SLOTS: usize = 4;
pub const KWH_SLOTS: usize = 6;
pub const FIXED_SLOTS: usize = 4;
pub const REACTIVE_SLOTS: usize = 2;

/// Posted fields by name (repeated names: the last wins; checkboxes have distinct names).
#[derive(Default, Clone)]
pub struct Fields(pub HashMap<String, String>);

impl Fields {
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Fields {
        Fields(pairs.into_iter().collect())
    }

    pub fn get(&self, key: &str) -> &str {
        self.0.get(key).map_or("", |v| v.as_str())
    }

    fn set(&mut self, key: impl Into<String>, value: impl ToString) {
        self.0.insert(key.into(), value.to_string());
    }

    pub fn checked(&self, key: &str) -> bool {
        !self.get(key).is_empty()
    }

    pub fn grid(&self, season: &usize, day_type: &&str, hour: &usize) -> &str {
        self.get(&format!("grid_{season}_{day_type}_{hour}"))
    }

    pub fn season(&self, season: &usize, field: &str) -> &str {
        self.get(&format!("season_{season}_{field}"))
    }

    pub fn block(&self, block: &usize, field: &str) -> &str {
        self.get(&format!("block_{block}_{field}"))
    }

    pub fn demand(&self, charge: &usize, field: &str) -> &str {
        self.get(&format!("demand_{charge}_{field}"))
    }

    pub fn demand_checked(&self, charge: &usize, field: &str) -> bool {
        !self.demand(charge, field).is_empty()
    }

    pub fn kwh(&self, charge: &usize, field: &str) -> &str {
        self.get(&format!("kwh_{charge}_{field}"))
    }

    pub fn fixed(&self, charge: &usize, field: &str) -> &str {
        self.get(&format!("fixed_{charge}_{field}"))
    }

    pub fn reactive(&self, charge: &usize, field: &str) -> &str {
        self.get(&format!("reactive_{charge}_{field}"))
    }

    pub fn reactive_checked(&self, charge: &usize, field: &str) -> bool {
        !self.reactive(charge, field).is_empty()
    }

    /// Whether charge slot `charge` of the `kind` (demand, kwh, fixed) has season slot `season`
    /// ticked.
    pub fn season_ticked(&self, kind: &str, charge: &usize, season: &usize) -> bool {
        !self.get(&format!("{kind}_{charge}_season_{season}")).is_empty()
    }
}

fn decimal(f: &Fields, e: &mut FieldErrors, key: &str, label: &str) -> Option<Decimal> {
    let raw = f.get(key).trim();
    if raw.is_empty() {
        return None;
    }
    match raw.parse::<Decimal>() {
        Ok(v) if v.is_sign_negative() && !v.is_zero() => {
            e.add(key, format!("{label} must not be negative."));
            None
        }
        Ok(v) => Some(v),
        Err(_) => {
            e.add(key, format!("{label}: “{raw}” is not a number; use a point for decimals, e.g. 2.1500."));
            None
        }
    }
}

fn required_decimal(f: &Fields, e: &mut FieldErrors, key: &str, label: &str) -> Decimal {
    if f.get(key).trim().is_empty() {
        e.add(key, format!("Enter the {label}."));
    }
    decimal(f, e, key, label).unwrap_or_default()
}

fn date(f: &Fields, e: &mut FieldErrors, key: &str, label: &str) -> Option<NaiveDate> {
    let raw = f.get(key).trim();
    if raw.is_empty() {
        return None;
    }
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .map_err(|_| e.add(key, format!("{label}: “{raw}” is not a date; use YYYY-MM-DD.")))
        .ok()
}

// ---------------------------------------------------------------- municipalities

pub fn municipality_fields(m: &Municipality) -> Fields {
    let mut f = Fields::default();
    f.set("name", &m.name);
    f.set("country", &m.country);
    f.set("currency", &m.currency);
    f.set("vat_percent", m.vat_percent.normalize());
    f.set("holidays", m.holidays.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"));
    f
}

pub fn parse_municipality(f: &Fields) -> Result<Municipality, FieldErrors> {
    let mut e = FieldErrors::default();
    let vat_percent = required_decimal(f, &mut e, "vat_percent", "VAT %");
    let mut holidays = Vec::new();
    for line in f.get("holidays").lines().map(str::trim).filter(|l| !l.is_empty()) {
        match NaiveDate::parse_from_str(line, "%Y-%m-%d") {
            Ok(d) => holidays.push(d),
            Err(_) => e.add("holidays", format!("“{line}” is not a date; enter one YYYY-MM-DD date per line.")),
        }
    }
    holidays.sort_unstable();
    holidays.dedup();
    let m = Municipality {
        name: f.get("name").trim().to_string(),
        country: f.get("country").trim().to_string(),
        currency: f.get("currency").trim().to_uppercase(),
        vat_percent,
        holidays,
    };
    for p in model::validate_municipality(&m) {
        e.add(&p.field, capitalise(&p.message));
    }
    e.or_ok(m)
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next().map_or_else(String::new, |first| first.to_uppercase().chain(c).collect())
}

// ---------------------------------------------------------------- tariff versions

pub const DAY_TYPE_KEYS: [&str; 4] = ["weekday", "saturday", "sunday", "holiday"];

/// The editor's fields for `v` (a new tariff starts from an empty flat one).
pub fn version_fields(v: Option<&Version>) -> Fields {
    let mut f = Fields::default();
    f.set("energy_kind", "flat");
    f.set("rounding_amounts", "half_up");
    f.set("demand_decimals", 3);
    f.set("proration", Proration::default().key());
    f.set("holidays_as", "sunday");
    for n in 0..FIXED_SLOTS {
        f.set(format!("fixed_{n}_per"), "day");
    }
    for n in 0..DEMAND_SLOTS {
        f.set(format!("demand_{n}_unit"), "kVA");
        f.set(format!("demand_{n}_window"), "30");
        f.set(format!("demand_{n}_method"), "block");
        f.set(format!("demand_{n}_pf_measured"), PfMeasured::default().key());
    }
    for n in 0..REACTIVE_SLOTS {
        f.set(format!("reactive_{n}_per"), ReactivePer::default().key());
        f.set(format!("reactive_{n}_window"), ReactiveCharge::DEFAULT_WINDOW);
    }
    for s in 0..SEASON_SLOTS {
        for dt in DAY_TYPE_KEYS {
            for h in 0..24 {
                f.set(format!("grid_{s}_{dt}_{h}"), "off_peak");
            }
        }
    }
    let Some(v) = v else { return f };
    f.set("effective_from", v.effective_from);
    if let Some(to) = v.effective_to {
        f.set("effective_to", to);
    }
    let holidays: Vec<String> = v
        .holidays
        .iter()
        .map(|h| format!("{} {} {}", h.date, h.billed_as.key(), h.name).trim_end().to_string())
        .collect();
    f.set("version_holidays", holidays.join("\n"));
    if let Some(c) = v.export_credit {
        f.set("export_credit", c);
    }
    if let Some(x) = v.minimum_per_month {
        f.set("minimum_per_month", x);
    }
    if let Some(x) = v.maximum_per_month {
        f.set("maximum_per_month", x);
    }
    f.set("rounding_amounts", v.rounding.amounts.key());
    f.set("demand_decimals", v.rounding.demand_decimals);
    f.set("proration", v.proration.key());
    for c in &v.vat_on {
        f.set(format!("vat_{}", component_key(*c)), "on");
    }
    let season_names: Vec<&str> = match &v.energy {
        Energy::Tou(tou) => tou.seasons.iter().map(|s| s.name.as_str()).collect(),
        _ => Vec::new(),
    };
    let tick_seasons = |f: &mut Fields, kind: &str, n: usize, names: &[String]| {
        for name in names {
            if let Some(s) = season_names.iter().position(|s| s == name) {
                f.set(format!("{kind}_{n}_season_{s}"), "on");
            }
        }
    };
    for (n, k) in v.kwh_charges.iter().enumerate().take(KWH_SLOTS) {
        f.set(format!("kwh_{n}_name"), &k.name);
        f.set(format!("kwh_{n}_code"), &k.code);
        if let Some(r) = k.rate {
            f.set(format!("kwh_{n}_rate"), r);
        }
        for p in TouPeriod::ALL {
            if let Some(r) = k.rates.get(p) {
                f.set(format!("kwh_{n}_{}", p.key()), r);
            }
        }
        tick_seasons(&mut f, "kwh", n, &k.seasons);
    }
    for (n, c) in v.fixed_charges.iter().enumerate().take(FIXED_SLOTS) {
        f.set(format!("fixed_{n}_name"), &c.name);
        f.set(format!("fixed_{n}_code"), &c.code);
        f.set(format!("fixed_{n}_rate"), c.rate);
        f.set(format!("fixed_{n}_per"), c.per.key());
        tick_seasons(&mut f, "fixed", n, &c.seasons);
        if let Some(b) = &c.bands {
            f.set(format!("fixed_{n}_bands_of"), &b.demand);
            let lines: Vec<String> = b.above.iter().map(|band| format!("{} {}", band.above, band.rate)).collect();
            f.set(format!("fixed_{n}_bands"), lines.join("\n"));
        }
    }
    for (n, d) in v.demand_charges.iter().enumerate().take(DEMAND_SLOTS) {
        f.set(format!("demand_{n}_name"), &d.name);
        f.set(format!("demand_{n}_code"), &d.code);
        f.set(format!("demand_{n}_rate"), d.rate);
        f.set(format!("demand_{n}_unit"), d.unit.label());
        f.set(format!("demand_{n}_window"), d.window_minutes);
        f.set(format!("demand_{n}_method"), d.method.key());
        for p in &d.periods {
            f.set(format!("demand_{n}_{}", p.key()), "on");
        }
        tick_seasons(&mut f, "demand", n, &d.seasons);
        if d.at_least_nmd {
            f.set(format!("demand_{n}_at_least_nmd"), "on");
        }
        if let Some(r) = d.ratchet {
            f.set(format!("demand_{n}_ratchet_percent"), r.percent.normalize());
            f.set(format!("demand_{n}_ratchet_periods"), r.periods);
        }
        if let Some(r) = d.excess_nmd_rate {
            f.set(format!("demand_{n}_excess_rate"), r);
        }
        if let Some(pf) = d.power_factor {
            f.set(format!("demand_{n}_pf_threshold"), pf.threshold);
            f.set(format!("demand_{n}_pf_measured"), pf.measured.key());
        }
    }
    for (n, r) in v.reactive_charges.iter().enumerate().take(REACTIVE_SLOTS) {
        f.set(format!("reactive_{n}_name"), &r.name);
        f.set(format!("reactive_{n}_code"), &r.code);
        f.set(format!("reactive_{n}_rate"), r.rate);
        f.set(format!("reactive_{n}_free_percent"), r.free_percent);
        f.set(format!("reactive_{n}_per"), r.per.key());
        f.set(format!("reactive_{n}_window"), r.window_minutes);
        for p in &r.periods {
            f.set(format!("reactive_{n}_{}", p.key()), "on");
        }
        tick_seasons(&mut f, "reactive", n, &r.seasons);
    }
    match &v.energy {
        Energy::Flat { rate } => f.set("flat_rate", rate),
        Energy::Blocks { blocks } => {
            f.set("energy_kind", "blocks");
            for (i, b) in blocks.iter().enumerate().take(BLOCK_SLOTS) {
                f.set(format!("block_{i}_rate"), b.rate);
                if let Some(u) = b.up_to_kwh {
                    f.set(format!("block_{i}_up_to"), u);
                }
            }
        }
        Energy::Tou(tou) => {
            f.set("energy_kind", "tou");
            f.set("holidays_as", tou.holidays_as.key());
            for p in TouPeriod::ALL {
                f.set(format!("period_name_{}", p.key()), tou.period_names.get(p).unwrap_or(""));
            }
            for (s, season) in tou.seasons.iter().enumerate().take(SEASON_SLOTS) {
                f.set(format!("season_{s}_name"), &season.name);
                f.set(format!("season_{s}_code"), &season.code);
                f.set(format!("season_{s}_from"), season.from);
                f.set(format!("season_{s}_to"), season.to);
                for p in TouPeriod::ALL {
                    if let Some(r) = season.rates.get(p) {
                        f.set(format!("season_{s}_{}", p.key()), r);
                    }
                }
                for dt in DayType::EVERY {
                    for (h, cell) in model::grid_from_windows(season, dt).iter().enumerate() {
                        if let Some(p) = cell {
                            f.set(format!("grid_{s}_{}_{h}", dt.key()), p.key());
                        }
                    }
                }
            }
        }
    }
    f
}

fn component_key(c: Component) -> &'static str {
    match c {
        Component::Energy => "energy",
        Component::Fixed => "fixed",
        Component::Demand => "demand",
        Component::Export => "export",
    }
}

/// The version the editor describes; field errors when a field cannot be read at all (the
/// model's own validation of the whole tariff follows).
pub fn parse_version(f: &Fields) -> Result<Version, FieldErrors> {
    let mut e = FieldErrors::default();
    let effective_from = date(f, &mut e, "effective_from", "Effective from");
    if f.get("effective_from").trim().is_empty() {
        e.add("effective_from", "Enter the date these rates take effect.");
    }
    let effective_to = date(f, &mut e, "effective_to", "Effective to");
    let holidays = holidays(f, &mut e);
    let energy = match f.get("energy_kind") {
        "flat" => Energy::Flat { rate: required_decimal(f, &mut e, "flat_rate", "rate per kWh") },
        "blocks" => {
            let mut blocks = Vec::new();
            for i in 0..BLOCK_SLOTS {
                let rate_key = format!("block_{i}_rate");
                let up_key = format!("block_{i}_up_to");
                if f.get(&rate_key).trim().is_empty() && f.get(&up_key).trim().is_empty() {
                    continue;
                }
                let rate = required_decimal(f, &mut e, &rate_key, "block's rate per kWh");
                blocks.push(Block { up_to_kwh: decimal(f, &mut e, &up_key, "Up to (kWh)"), rate });
            }
            Energy::Blocks { blocks }
        }
        "tou" => {
            let holidays_as = DayType::parse(f.get("holidays_as")).unwrap_or(DayType::Sunday);
            // The Holiday rows of the grid count only when some day is billed on them.
            let holiday_grid =
                holidays_as == DayType::Holiday || holidays.iter().any(|h| h.billed_as == DayType::Holiday);
            let day_types = DayType::ALL.into_iter().chain(holiday_grid.then_some(DayType::Holiday));
            let mut seasons = Vec::new();
            for s in 0..SEASON_SLOTS {
                let name = f.season(&s, "name").trim().to_string();
                if name.is_empty() {
                    continue;
                }
                let mut day = |key: &str| {
                    let k = format!("season_{s}_{key}");
                    MonthDay::parse(f.get(&k)).unwrap_or_else(|| {
                        e.add(&k, format!("“{}” is not a day of the year; use MM-DD, e.g. 06-01.", f.get(&k)));
                        MonthDay { month: 1, day: 1 }
                    })
                };
                let (from, to) = (day("from"), day("to"));
                let mut rate = |p: TouPeriod| decimal(f, &mut e, &format!("season_{s}_{}", p.key()), p.label());
                let rates = PeriodRates {
                    peak: rate(TouPeriod::Peak),
                    standard: rate(TouPeriod::Standard),
                    off_peak: rate(TouPeriod::OffPeak),
                };
                let mut windows = Vec::new();
                for dt in day_types.clone() {
                    let mut hours = [TouPeriod::OffPeak; 24];
                    for (h, cell) in hours.iter_mut().enumerate() {
                        let key = format!("grid_{s}_{}_{h}", dt.key());
                        match TouPeriod::parse(f.get(&key)) {
                            Some(p) => *cell = p,
                            None => e.add(
                                &key,
                                format!("{name}, {} {h:02}:00: choose peak, standard or off-peak.", dt.label()),
                            ),
                        }
                    }
                    windows.extend(model::windows_from_grid(dt, &hours));
                }
                let code = f.season(&s, "code").trim().to_string();
                seasons.push(Season { name, code, from, to, rates, windows });
            }
            let mut period_names = PeriodNames::default();
            for p in TouPeriod::ALL {
                let name = f.get(&format!("period_name_{}", p.key())).trim();
                period_names.set(p, (!name.is_empty()).then(|| name.to_string()));
            }
            Energy::Tou(Tou { holidays_as, period_names, seasons })
        }
        other => {
            e.add(
                "energy_kind",
                format!("“{other}” is not an energy charge kind: choose flat, blocks or time of use."),
            );
            Energy::Flat { rate: Decimal::ZERO }
        }
    };
    let kwh_charges = kwh_charges(f, &mut e);
    let fixed_charges = fixed_charges(f, &mut e);
    let demand_charges = demand_charges(f, &mut e);
    let reactive_charges = reactive_charges(f, &mut e);
    let vat_on = [Component::Energy, Component::Fixed, Component::Demand, Component::Export]
        .into_iter()
        .filter(|c| f.checked(&format!("vat_{}", component_key(*c))))
        .collect();
    let v = Version {
        effective_from: effective_from.unwrap_or_default(),
        effective_to,
        energy,
        kwh_charges,
        fixed_charges,
        demand_charges,
        reactive_charges,
        export_credit: decimal(f, &mut e, "export_credit", "Export credit"),
        vat_on,
        minimum_per_month: decimal(f, &mut e, "minimum_per_month", "Minimum per month"),
        maximum_per_month: decimal(f, &mut e, "maximum_per_month", "Maximum per month"),
        rounding: rounding(f, &mut e),
        holidays,
        proration: proration(f, &mut e),
    };
    e.or_ok(v)
}

fn rounding(f: &Fields, e: &mut FieldErrors) -> Rounding {
    let amounts = match AmountRounding::ALL.into_iter().find(|a| a.key() == f.get("rounding_amounts")) {
        Some(a) => a,
        None if f.get("rounding_amounts").is_empty() => AmountRounding::HalfUp,
        None => {
            e.add("rounding_amounts", "Choose how amounts are rounded to the cent.");
            AmountRounding::HalfUp
        }
    };
    let demand_decimals = match f.get("demand_decimals").trim() {
        "" => Rounding::default().demand_decimals,
        raw => raw.parse().unwrap_or_else(|_| {
            e.add("demand_decimals", format!("Demand decimals: “{raw}” is not a number from 0 to 3."));
            3
        }),
    };
    Rounding { amounts, demand_decimals }
}

/// The per-month proration rule (an old form without the field: the default).
fn proration(f: &Fields, e: &mut FieldErrors) -> Proration {
    match f.get("proration") {
        "" => Proration::default(),
        raw => Proration::parse(raw).unwrap_or_else(|| {
            e.add("proration", format!("“{raw}” is not a proration rule: choose one from the list."));
            Proration::default()
        }),
    }
}

/// The version's holidays, one a line: `YYYY-MM-DD day-type name`, e.g.
/// `2026-04-27 saturday Freedom Day`.
fn holidays(f: &Fields, e: &mut FieldErrors) -> Vec<Holiday> {
    let mut out = Vec::new();
    for (n, line) in f.get("version_holidays").lines().map(str::trim).enumerate().filter(|(_, l)| !l.is_empty()) {
        let mut words = line.split_whitespace();
        let (date, day_type) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let name = words.collect::<Vec<_>>().join(" ");
        let Ok(date) = NaiveDate::parse_from_str(date, "%Y-%m-%d") else {
            e.add(
                "version_holidays",
                format!("Line {}: “{date}” is not a date; start the line with YYYY-MM-DD.", n + 1),
            );
            continue;
        };
        let Some(billed_as) = DayType::parse(day_type) else {
            e.add(
                "version_holidays",
                format!(
                    "Line {} ({date}): “{day_type}” is not a day type; write saturday, sunday, holiday or weekday after the date.",
                    n + 1
                ),
            );
            continue;
        };
        out.push(Holiday { date, billed_as, name });
    }
    out
}

/// The names of the seasons ticked for charge slot `n` of `kind`; a ticked slot without a season
/// is named.
fn ticked_seasons(f: &Fields, e: &mut FieldErrors, kind: &str, n: usize) -> Vec<String> {
    let mut seasons = Vec::new();
    for s in 0..SEASON_SLOTS {
        if !f.season_ticked(kind, &n, &s) {
            continue;
        }
        match f.season(&s, "name").trim() {
            "" => e.add(
                &format!("{kind}_{n}_season_{s}"),
                format!("Season {} is not in use: name it in the time-of-use energy charge or untick it.", s + 1),
            ),
            name => seasons.push(name.to_string()),
        }
    }
    seasons
}

/// The editor's per-kWh charge slots; a slot without a name and rates is unused. A negative rate
/// (a subsidy credit) is allowed here, unlike elsewhere.
fn kwh_charges(f: &Fields, e: &mut FieldErrors) -> Vec<KwhCharge> {
    let mut out = Vec::new();
    for n in 0..KWH_SLOTS {
        let keys = ["name", "rate", "peak", "standard", "off_peak"];
        if keys.iter().all(|k| f.kwh(&n, k).trim().is_empty()) {
            continue;
        }
        let mut rate = |key: &str, label: String| {
            let k = format!("kwh_{n}_{key}");
            let raw = f.get(&k).trim();
            if raw.is_empty() {
                return None;
            }
            raw.parse::<Decimal>()
                .map_err(|_| {
                    e.add(&k, format!("{label}: “{raw}” is not a number; use a point for decimals, e.g. 0.1250."))
                })
                .ok()
        };
        let flat = rate("rate", format!("Per-kWh charge {} rate", n + 1));
        let mut rates = PeriodRates::default();
        for p in TouPeriod::ALL {
            let r = rate(p.key(), format!("Per-kWh charge {} {} rate", n + 1, p.label()));
            match p {
                TouPeriod::Peak => rates.peak = r,
                TouPeriod::Standard => rates.standard = r,
                TouPeriod::OffPeak => rates.off_peak = r,
            }
        }
        let seasons = ticked_seasons(f, e, "kwh", n);
        out.push(KwhCharge {
            name: f.kwh(&n, "name").trim().to_string(),
            code: f.kwh(&n, "code").trim().to_string(),
            rate: flat,
            rates,
            seasons,
        });
    }
    out
}

/// The editor's fixed charge slots; a slot without a name and a rate is unused.
fn fixed_charges(f: &Fields, e: &mut FieldErrors) -> Vec<FixedCharge> {
    let mut out = Vec::new();
    for n in 0..FIXED_SLOTS {
        let name = f.fixed(&n, "name").trim().to_string();
        let rate_key = format!("fixed_{n}_rate");
        if name.is_empty() && f.get(&rate_key).trim().is_empty() {
            continue;
        }
        let rate = required_decimal(f, e, &rate_key, &format!("Fixed charge {} rate", n + 1));
        let per = match f.fixed(&n, "per") {
            "month" => FixedPer::Month,
            "day" | "" => FixedPer::Day,
            other => {
                e.add(
                    &format!("fixed_{n}_per"),
                    format!("“{other}” is not a charging basis: choose per day or per month."),
                );
                FixedPer::Day
            }
        };
        let seasons = ticked_seasons(f, e, "fixed", n);
        let bands = capacity_bands(f, e, n);
        out.push(FixedCharge { name, code: f.fixed(&n, "code").trim().to_string(), rate, per, seasons, bands });
    }
    out
}

/// Fixed charge slot `n`'s capacity bands: the demand charge's code, and one band a line,
/// `above rate` (e.g. `500 184.55`); none when both are empty. Whether the code names a demand
/// charge and the bands rise is the model's validation.
fn capacity_bands(f: &Fields, e: &mut FieldErrors, n: usize) -> Option<CapacityBands> {
    let (of_key, bands_key) = (format!("fixed_{n}_bands_of"), format!("fixed_{n}_bands"));
    let demand = f.get(&of_key).trim().to_string();
    let lines: Vec<(usize, &str)> =
        f.get(&bands_key).lines().map(str::trim).enumerate().filter(|(_, l)| !l.is_empty()).collect();
    let what = format!("Fixed charge {} bands", n + 1);
    match (demand.is_empty(), lines.is_empty()) {
        (true, true) => return None,
        (true, false) => {
            e.add(
                &of_key,
                format!("{what}: enter the code of the demand charge whose demand chooses the band, e.g. demand1."),
            );
            return None;
        }
        (false, true) => {
            e.add(
                &bands_key,
                format!(
                    "{what}: enter one band a line: the demand above which it applies and its rate, e.g. 500 184.55."
                ),
            );
            return None;
        }
        (false, false) => {}
    }
    let mut above = Vec::new();
    for (i, line) in lines {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[..] {
            [a, r] => match (a.parse::<Decimal>(), r.parse::<Decimal>()) {
                (Ok(above_), Ok(rate)) => above.push(Band { above: above_, rate }),
                _ => {
                    e.add(&bands_key, format!("{what}, line {}: “{line}”: write two numbers, e.g. 500 184.55.", i + 1))
                }
            },
            _ => e.add(
                &bands_key,
                format!(
                    "{what}, line {}: “{line}”: write the demand it is above and the rate, e.g. 500 184.55.",
                    i + 1
                ),
            ),
        }
    }
    Some(CapacityBands { demand, above })
}

/// The editor's demand charge slots; a slot without a name and a rate is unused. Seasons are
/// ticked by slot and stored by the season's name.
fn demand_charges(f: &Fields, e: &mut FieldErrors) -> Vec<DemandCharge> {
    let mut out = Vec::new();
    for n in 0..DEMAND_SLOTS {
        let name = f.demand(&n, "name").trim().to_string();
        let rate_key = format!("demand_{n}_rate");
        if name.is_empty() && f.get(&rate_key).trim().is_empty() {
            continue;
        }
        let label = format!("Demand charge {} rate", n + 1);
        let rate = required_decimal(f, e, &rate_key, &label);
        let unit = match f.demand(&n, "unit") {
            "kW" => DemandUnit::KW,
            "kVA" => DemandUnit::KVA,
            "kvar" => DemandUnit::KVar,
            other => {
                e.add(&format!("demand_{n}_unit"), format!("“{other}” is not a demand unit: choose kVA, kW or kvar."));
                DemandUnit::KVA
            }
        };
        let window_minutes = window(f, e, &format!("demand_{n}_window"), "a demand interval");
        let method = match f.demand(&n, "method") {
            "sliding" => DemandMethod::Sliding,
            "block" | "" => DemandMethod::Block,
            other => {
                e.add(&format!("demand_{n}_method"), format!("“{other}” is not a method: choose block or sliding."));
                DemandMethod::Block
            }
        };
        let periods = TouPeriod::ALL.into_iter().filter(|p| f.demand_checked(&n, p.key())).collect();
        let seasons = ticked_seasons(f, e, "demand", n);
        let code = f.demand(&n, "code").trim().to_string();
        let threshold = decimal(
            f,
            e,
            &format!("demand_{n}_pf_threshold"),
            &format!("Demand charge {} power factor threshold", n + 1),
        );
        let measured = match f.demand(&n, "pf_measured") {
            "peak" => PfMeasured::Peak,
            "period" | "" => PfMeasured::Period,
            other => {
                e.add(
                    &format!("demand_{n}_pf_measured"),
                    format!("“{other}” is not where a power factor is measured: choose period or peak."),
                );
                PfMeasured::Period
            }
        };
        let power_factor = threshold.map(|threshold| PowerFactor { threshold, measured });
        let at_least_nmd = f.demand_checked(&n, "at_least_nmd");
        let ratchet = ratchet(f, e, n);
        let excess_nmd_rate =
            decimal(f, e, &format!("demand_{n}_excess_rate"), &format!("Demand charge {} excess-NMD rate", n + 1));
        out.push(DemandCharge {
            name,
            code,
            unit,
            window_minutes,
            method,
            rate,
            periods,
            seasons,
            at_least_nmd,
            ratchet,
            excess_nmd_rate,
            power_factor,
        });
    }
    out
}

/// A 15, 30 or 60 minute interval from field `key` (`what` names it in the error).
fn window(f: &Fields, e: &mut FieldErrors, key: &str, what: &str) -> u32 {
    match f.get(key).parse::<u32>() {
        Ok(m) if [15, 30, 60].contains(&m) => m,
        _ => {
            e.add(key, format!("Choose {what} of 15, 30 or 60 minutes."));
            30
        }
    }
}

/// The editor's reactive charge slots; a slot without a name and a rate is unused.
fn reactive_charges(f: &Fields, e: &mut FieldErrors) -> Vec<ReactiveCharge> {
    let mut out = Vec::new();
    for n in 0..REACTIVE_SLOTS {
        let name = f.reactive(&n, "name").trim().to_string();
        let rate_key = format!("reactive_{n}_rate");
        if name.is_empty() && f.get(&rate_key).trim().is_empty() {
            continue;
        }
        let rate = required_decimal(f, e, &rate_key, &format!("Reactive charge {} rate per kvarh", n + 1));
        let free_percent = required_decimal(
            f,
            e,
            &format!("reactive_{n}_free_percent"),
            &format!("Reactive charge {} free share of kWh (%)", n + 1),
        );
        let per = match f.reactive(&n, "per") {
            "period" => ReactivePer::Period,
            "interval" | "" => ReactivePer::Interval,
            other => {
                e.add(
                    &format!("reactive_{n}_per"),
                    format!("“{other}” is not how the excess is computed: choose per interval or over the period."),
                );
                ReactivePer::Interval
            }
        };
        let window_minutes = window(f, e, &format!("reactive_{n}_window"), "an integrating interval");
        out.push(ReactiveCharge {
            name,
            code: f.reactive(&n, "code").trim().to_string(),
            rate,
            free_percent,
            per,
            window_minutes,
            periods: TouPeriod::ALL.into_iter().filter(|p| f.reactive_checked(&n, p.key())).collect(),
            seasons: ticked_seasons(f, e, "reactive", n),
        });
    }
    out
}

/// Demand charge slot `n`'s ratchet: a percentage and a number of earlier billing periods, both
/// or neither (the model checks their ranges).
fn ratchet(f: &Fields, e: &mut FieldErrors, n: usize) -> Option<Ratchet> {
    let (percent_key, periods_key) = (format!("demand_{n}_ratchet_percent"), format!("demand_{n}_ratchet_periods"));
    let what = format!("Demand charge {} ratchet", n + 1);
    let percent = decimal(f, e, &percent_key, &format!("{what} %"));
    let raw = f.get(&periods_key).trim();
    let periods = match raw {
        "" => None,
        _ => raw
            .parse::<u32>()
            .map_err(|_| {
                e.add(&periods_key, format!("{what} periods: “{raw}” is not a whole number of billing periods."))
            })
            .ok(),
    };
    match (percent, periods, f.get(&percent_key).trim().is_empty(), raw.is_empty()) {
        (Some(percent), Some(periods), _, _) => Some(Ratchet { percent, periods }),
        (_, _, true, false) => {
            e.add(&percent_key, format!("{what}: enter the percentage of the earlier peak billed, e.g. 80."));
            None
        }
        (_, _, false, true) => {
            e.add(&periods_key, format!("{what}: enter how many earlier billing periods it looks back at, e.g. 11."));
            None
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_version_of_the_fixtures_survives_the_editor() {
        for json in [crate::tariffs::tests::ONTARIO_JSON, crate::tariffs::tests::HOMEFLEX_JSON] {
            let doc: model::TariffDoc = serde_json::from_str(json).unwrap();
            for v in &doc.versions {
                let again = parse_version(&version_fields(Some(v))).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(&again, v);
            }
        }
    }

    /// "The editor can build each of them without JSON": every version of every published
    /// tariff in the library, shown in the editor's fields and sent back, is the same version.
    #[test]
    fn every_library_tariff_survives_the_editor() {
        for e in crate::tariffs::library::entries() {
            for v in &e.tariff.versions {
                let again = parse_version(&version_fields(Some(v)))
                    .unwrap_or_else(|err| panic!("{} from {}: {err}", e.key, v.effective_from));
                assert_eq!(&again, v, "{} from {}", e.key, v.effective_from);
            }
        }
    }

    #[test]
    fn capacity_bands_survive_the_editor_and_bad_lines_are_named() {
        let mut v = crate::tariffs::tests::unbundled();
        v.demand_charges = vec![DemandCharge {
            code: "nac".into(),
            ..crate::tariffs::tests::demand_charge(DemandUnit::KVA, 30, "10", vec![])
        }];
        v.fixed_charges[0].bands = Some(CapacityBands {
            demand: "nac".into(),
            above: vec![Band { above: "100".parse().unwrap(), rate: "8.00".parse().unwrap() }],
        });
        let mut f = version_fields(Some(&v));
        assert_eq!((f.fixed(&0, "bands_of"), f.fixed(&0, "bands")), ("nac", "100 8.00"));
        assert_eq!(parse_version(&f).unwrap(), v);
        f.set("fixed_0_bands", "100 8.00\n500\nabove 600 9");
        let e = parse_version(&f).unwrap_err();
        assert_eq!(
            e.get("fixed_0_bands"),
            Some("Fixed charge 1 bands, line 2: “500”: write the demand it is above and the rate, e.g. 500 184.55.")
        );
        f.set("fixed_0_bands", "");
        let e = parse_version(&f).unwrap_err();
        assert!(e.get("fixed_0_bands").is_some_and(|m| m.contains("enter one band a line")), "{e}");
        f.set("fixed_0_bands_of", "");
        assert_eq!(parse_version(&f).unwrap().fixed_charges[0].bands, None, "both empty: no bands");
    }

    #[test]
    fn per_kwh_and_seasonal_fixed_charges_survive_the_editor_and_bad_ones_are_named() {
        let v = crate::tariffs::tests::unbundled();
        let mut f = version_fields(Some(&v));
        assert_eq!(parse_version(&f).unwrap_or_else(|e| panic!("{e}")), v);
        assert_eq!((f.get("kwh_1_peak"), f.get("kwh_1_off_peak"), f.get("kwh_2_rate")), ("0.30", "", "-0.0125"));
        assert!(f.season_ticked("fixed", &2, &1) && !f.season_ticked("fixed", &2, &0));
        f.set("kwh_4_name", "Electrification levy");
        f.set("kwh_4_rate", "0,05");
        f.set("fixed_3_rate", "12");
        f.set("fixed_3_per", "week");
        f.set("fixed_3_season_3", "on");
        let e = parse_version(&f).err().unwrap();
        assert_eq!(
            e.get("kwh_4_rate"),
            Some("Per-kWh charge 5 rate: “0,05” is not a number; use a point for decimals, e.g. 0.1250.")
        );
        assert_eq!(e.get("fixed_3_per"), Some("“week” is not a charging basis: choose per day or per month."));
        assert_eq!(
            e.get("fixed_3_season_3"),
            Some("Season 4 is not in use: name it in the time-of-use energy charge or untick it.")
        );
    }

    #[test]
    fn holidays_by_type_survive_the_editor_and_bad_lines_are_named() {
        let doc: model::TariffDoc = serde_json::from_str(crate::tariffs::tests::ONTARIO_JSON).unwrap();
        let mut v = doc.versions[0].clone();
        let mut f = version_fields(Some(&v));
        f.set("version_holidays", "2025-10-13 holiday Thanksgiving\n\n2025-12-26  saturday");
        for h in 0..24 {
            f.set(format!("grid_0_holiday_{h}"), if h < 12 { "standard" } else { "off_peak" });
        }
        let parsed = parse_version(&f).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.holidays.len(), 2);
        assert_eq!((parsed.holidays[1].billed_as, parsed.holidays[1].name.as_str()), (DayType::Saturday, ""));
        let Energy::Tou(t) = &parsed.energy else { unreachable!() };
        assert_eq!(t.seasons[0].windows.iter().filter(|w| w.day_type == DayType::Holiday).count(), 2);
        assert_eq!(t.seasons[1].windows.iter().filter(|w| w.day_type == DayType::Holiday).count(), 1);
        v = parsed;
        assert_eq!(parse_version(&version_fields(Some(&v))).unwrap(), v);
        f.set("version_holidays", "2025-10-13 holiday\n2025-13-01 sunday");
        let e = parse_version(&f).err().unwrap();
        assert_eq!(
            e.get("version_holidays"),
            Some("Line 2: “2025-13-01” is not a date; start the line with YYYY-MM-DD.")
        );
        f.set("version_holidays", "2025-10-13 boxing");
        let e = parse_version(&f).err().unwrap();
        assert!(e.get("version_holidays").unwrap().contains("“boxing” is not a day type"));
    }

    #[test]
    fn capacity_ratchet_and_excess_nmd_survive_the_editor_and_bad_ones_are_named() {
        let mut f = version_fields(None);
        f.set("effective_from", "2026-04-01");
        f.set("flat_rate", "1.50");
        f.set("demand_0_name", "Network access charge");
        f.set("demand_0_rate", "25.63");
        f.set("demand_0_at_least_nmd", "on");
        f.set("demand_0_ratchet_percent", "100");
        f.set("demand_0_ratchet_periods", "11");
        f.set("demand_0_excess_rate", "307.56");
        let v = parse_version(&f).unwrap_or_else(|e| panic!("{e}"));
        let d = &v.demand_charges[0];
        assert!(d.at_least_nmd);
        assert_eq!(d.ratchet, Some(Ratchet { percent: Decimal::ONE_HUNDRED, periods: 11 }));
        assert_eq!(d.excess_nmd_rate, Some("307.56".parse().unwrap()));
        assert_eq!(parse_version(&version_fields(Some(&v))).unwrap(), v, "the editor shows what it stored");
        f.set("demand_0_ratchet_periods", "");
        f.set("demand_0_excess_rate", "lots");
        let e = parse_version(&f).err().unwrap();
        assert_eq!(
            e.get("demand_0_ratchet_periods"),
            Some("Demand charge 1 ratchet: enter how many earlier billing periods it looks back at, e.g. 11.")
        );
        assert!(
            e.get("demand_0_excess_rate")
                .unwrap()
                .starts_with("Demand charge 1 excess-NMD rate: “lots” is not a number")
        );
        f.set("demand_0_ratchet_percent", "");
        f.set("demand_0_ratchet_periods", "eleven");
        f.set("demand_0_excess_rate", "");
        let e = parse_version(&f).err().unwrap();
        assert_eq!(
            e.get("demand_0_ratchet_periods"),
            Some("Demand charge 1 ratchet periods: “eleven” is not a whole number of billing periods.")
        );
    }

    #[test]
    fn the_proration_rule_survives_the_editor_and_a_bad_one_is_named() {
        let mut v = crate::tariffs::tests::unbundled();
        for rule in Proration::ALL {
            v.proration = rule;
            let f = version_fields(Some(&v));
            assert_eq!(f.get("proration"), rule.key());
            assert_eq!(parse_version(&f).unwrap_or_else(|e| panic!("{e}")), v);
        }
        let mut f = version_fields(Some(&v));
        f.set("proration", "weekly");
        let e = parse_version(&f).unwrap_err();
        assert_eq!(e.get("proration"), Some("“weekly” is not a proration rule: choose one from the list."));
    }

    #[test]
    fn unreadable_fields_are_named() {
        let mut f = version_fields(None);
        f.set("effective_from", "2026-13-01");
        f.set("flat_rate", "2,15");
        f.set("demand_0_rate", "-1");
        let e = parse_version(&f).err().unwrap();
        assert!(e.get("effective_from").unwrap().contains("is not a date"));
        assert!(e.get("flat_rate").unwrap().contains("“2,15” is not a number"));
        assert_eq!(e.get("demand_0_rate"), Some("Demand charge 1 rate must not be negative."));
    }

    #[test]
    fn reactive_charges_and_power_factors_survive_the_editor() {
        let doc: model::TariffDoc = serde_json::from_str(crate::tariffs::tests::HOMEFLEX_JSON).unwrap();
        let mut v = doc.versions[0].clone();
        let season = match &v.energy {
            Energy::Tou(t) => t.seasons[0].name.clone(),
            _ => unreachable!("Homeflex is time-of-use"),
        };
        v.reactive_charges = vec![ReactiveCharge {
            name: "Reactive energy charge".into(),
            code: "kvarh".into(),
            rate: "0.1234".parse().unwrap(),
            free_percent: "30".parse().unwrap(),
            per: ReactivePer::Period,
            window_minutes: 60,
            periods: vec![TouPeriod::Peak, TouPeriod::Standard],
            seasons: vec![season],
        }];
        let mut kvar = v.demand_charges[0].clone();
        kvar.unit = DemandUnit::KVar;
        kvar.code = "kvar".into();
        v.demand_charges[0].power_factor =
            Some(PowerFactor { threshold: "0.9".parse().unwrap(), measured: PfMeasured::Peak });
        v.demand_charges.push(kvar);
        let again = parse_version(&version_fields(Some(&v))).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again, v);
    }

    #[test]
    fn unreadable_reactive_fields_are_named() {
        let mut f = version_fields(None);
        f.set("reactive_0_name", "Reactive");
        f.set("reactive_0_rate", "0,5");
        f.set("reactive_0_per", "daily");
        f.set("demand_0_rate", "1");
        f.set("demand_0_pf_threshold", "high");
        let e = parse_version(&f).err().unwrap();
        assert!(e.get("reactive_0_rate").unwrap().contains("“0,5” is not a number"));
        assert_eq!(e.get("reactive_0_free_percent"), Some("Enter the Reactive charge 1 free share of kWh (%)."));
        assert!(e.get("reactive_0_per").unwrap().contains("“daily” is not how the excess is computed"));
        assert!(e.get("demand_0_pf_threshold").unwrap().contains("“high” is not a number"));
    }
}
