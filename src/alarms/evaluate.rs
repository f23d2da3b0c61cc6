//! The evaluator: every few seconds, each enabled rule against each device or site it covers,
//! through the pure state machine of `rules`; the cycle's raises and ends in one transaction. The
//! phases (pending, recovering) live in memory and survive a failed cycle: a cycle that cannot
//! reach the database changes nothing and the next one starts from the same phases.
//!
//! Device rules (communication loss, thresholds) judge each device; site rules (demand limit,
//! budget) each site with enabled devices, through the same state machine. Event rules raise one
//! alarm per event, told apart by its start: a data gap (raised and ended at once, as the rollup
//! found it) and a new maximum demand of the billing month (open until the next one or the end
//! of the month).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use rust_decimal::prelude::ToPrimitive;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::ActiveAlarms;
use super::db::{self, EndAlarm, NewAlarm, OpenAlarm, RuleRow};
use super::rules::{self, Direction, Level, Phase, Threshold, Transition, Watched};
use crate::clock::Clock;
use crate::measurements::energy::{self, EstimatedGap};
use crate::measurements::queries::{self, StoredReading};
use crate::periodic;
use crate::sites::db::{SiteRow, WatchedDevice};
use crate::sites::readings::format_quantity;
use crate::tariffs::bills::{self, MonthCost};
use crate::tariffs::engine::{self, BillInput};

/// How often the rules are evaluated: a minute's communication loss is noticed within seconds.
pub const EVERY: Duration = Duration::from_secs(10);
/// How far back data gaps are looked for (older ones were reported, or are history).
pub const GAP_LOOKBACK: TimeDelta = TimeDelta::hours(24);
/// How long after a demand window ends its energy is taken as complete: the rollup trails the
/// meters by its lag and its period (`energy::rollup`).
pub const DEMAND_SETTLE: TimeDelta = TimeDelta::minutes(3);
/// How often the month's bills behind the budget and maximum demand rules are made again.
pub const COST_EVERY: TimeDelta = TimeDelta::minutes(1);
/// Demand windows of a site whose tariff has no demand charge.
pub const DEFAULT_WINDOW_MINUTES: u32 = 15;

/// What a rule watches, from its stored row.
enum Condition {
    CommunicationLoss {
        missed: i32,
    },
    Threshold {
        watched: &'static Watched,
        threshold: Threshold,
    },
    /// The current demand window's forecast (kW, or kVA when `apparent`) above a limit; `None`:
    /// the rule has none of its own, and each site's NMD is the limit (in the NMD's unit).
    DemandLimit {
        apparent: bool,
        threshold: Option<Threshold>,
    },
    /// The month's cost to date (or its projection) above a budget.
    Budget {
        projected: bool,
        threshold: Threshold,
    },
    MaxDemand,
    DataGap,
}

impl Condition {
    /// `None` for a row the evaluator cannot use (a quantity no longer known): it is skipped.
    fn of(rule: &RuleRow) -> Option<Condition> {
        let above = |limit| Threshold::of(Direction::Above, limit, rule.hysteresis, None);
        match rule.kind.as_str() {
            "communication-loss" => Some(Condition::CommunicationLoss { missed: rule.missed_polls? }),
            "threshold" => {
                let watched = rules::watched(rule.quantity.as_deref()?)?;
                let direction = Direction::parse(rule.direction.as_deref()?)?;
                let threshold = Threshold::of(direction, rule.limit?, rule.hysteresis, rule.nominal);
                Some(Condition::Threshold { watched, threshold })
            }
            "demand-limit" => Some(Condition::DemandLimit {
                apparent: rule.unit.as_deref()? == "kVA",
                threshold: rule.limit.map(above),
            }),
            "budget" => Some(Condition::Budget {
                projected: rule.basis.as_deref()? == "projected",
                threshold: above(rule.limit?),
            }),
            "max-demand" => Some(Condition::MaxDemand),
            "data-gap" => Some(Condition::DataGap),
            _ => None,
        }
    }

    fn per_site(&self) -> bool {
        matches!(self, Condition::DemandLimit { .. } | Condition::Budget { .. } | Condition::MaxDemand)
    }
}

fn covers(rule: &RuleRow, device: &WatchedDevice) -> bool {
    rule.device_id.is_none_or(|d| d == device.id) && rule.site_id.is_none_or(|s| s == device.site_id)
}

/// What an alarm is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Subject {
    Device(i32),
    Site(i32),
}

/// A rule's phase for one subject.
type Key = (i32, Subject);

fn key_of(a: &OpenAlarm) -> Option<Key> {
    let subject = a.device_id.map_or(Subject::Site(a.site_id), Subject::Device);
    Some((a.rule_id?, subject))
}

/// A site as the site rules see it: its row and its enabled main meters (what the site draws is
/// what its supply points measure: a sub-meter's power is part of it, a check meter's the same
/// again; see `sites::hierarchy`).
struct Site {
    row: SiteRow,
    devices: Vec<i32>,
}

/// What one cycle did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Cycle {
    pub raised: usize,
    pub ended: usize,
}

pub struct Evaluator {
    pub db: PgPool,
    pub clock: Clock,
    pub board: ActiveAlarms,
    /// How often [`run`](Self::run) evaluates ([`EVERY`]; tests make it shorter).
    pub every: Duration,
    phases: HashMap<Key, (DateTime<Utc>, Phase)>,
    /// The month's bills of the sites with a tariff, and when they were made ([`COST_EVERY`]).
    costs: Option<(DateTime<Utc>, HashMap<i32, MonthCost>)>,
}

/// A cycle's raises and ends, and what its rules watched.
#[derive(Default)]
struct Outcome {
    phases: HashMap<Key, (DateTime<Utc>, Phase)>,
    watched: HashSet<Key>,
    raises: Vec<NewAlarm>,
    ends: Vec<EndAlarm>,
}

impl Evaluator {
    pub fn new(db: PgPool, clock: Clock, board: ActiveAlarms) -> Evaluator {
        Evaluator { db, clock, board, every: EVERY, phases: HashMap::new(), costs: None }
    }

    /// Evaluates until `shutdown`; a cycle that fails (the database away) is logged once and
    /// retried at the next tick.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut ticker = periodic::Ticker::new(
            self.every,
            "Cannot evaluate the alarm rules, will retry",
            "Alarm evaluation resumed",
        );
        while ticker.tick(&shutdown).await {
            let Some(outcome) = shutdown.run_until_cancelled(self.cycle()).await else { return };
            ticker.outcome(&outcome);
        }
    }

    /// One evaluation of every enabled rule; raises and ends alarms in one transaction.
    pub async fn cycle(&mut self) -> Result<Cycle, sqlx::Error> {
        let now = self.clock.now();
        let rules = db::enabled_rules(&self.db).await?;
        let devices = crate::sites::db::watched_devices(&self.db).await?;
        let all_open = db::open_alarms(&self.db).await?;
        let open: HashMap<Key, &OpenAlarm> = all_open.iter().filter_map(|a| Some((key_of(a)?, a))).collect();
        let conditions: Vec<(&RuleRow, Condition)> =
            rules.iter().filter_map(|r| Condition::of(r).map(|c| (r, c))).collect();
        let any = |f: fn(&Condition) -> bool| conditions.iter().any(|(_, c)| f(c));
        let readings: HashMap<i32, StoredReading> = if any(|c| matches!(c, Condition::Threshold { .. })) {
            let ids: Vec<i32> = devices.iter().filter(|d| d.enabled).map(|d| d.id).collect();
            queries::latest_readings(&self.db, &ids).await?.into_iter().collect()
        } else {
            HashMap::new()
        };
        let sites = if any(Condition::per_site) { self.sites(&devices).await? } else { Vec::new() };
        if any(|c| matches!(c, Condition::Budget { .. } | Condition::MaxDemand)) {
            self.refresh_costs(&sites, now).await?;
        } else {
            self.costs = None;
        }
        let no_costs = HashMap::new();
        let costs = self.costs.as_ref().map_or(&no_costs, |(_, c)| c);
        let event_rules: Vec<i32> = conditions
            .iter()
            .filter(|(_, c)| matches!(c, Condition::MaxDemand | Condition::DataGap))
            .map(|(r, _)| r.id)
            .collect();
        // An event rule's alarms of the last month and a bit: which events were told already.
        let told: HashSet<(i32, i32, Option<i32>, DateTime<Utc>)> = if event_rules.is_empty() {
            HashSet::new()
        } else {
            db::starts_since(&self.db, &event_rules, now - TimeDelta::days(35)).await?.into_iter().collect()
        };

        let mut out = Outcome::default();
        for (rule, condition) in &conditions {
            let covered = || devices.iter().filter(|d| d.enabled && covers(rule, d));
            let sites_covered = || sites.iter().filter(|s| rule.site_id.is_none_or(|id| id == s.row.id));
            match condition {
                Condition::CommunicationLoss { .. } | Condition::Threshold { .. } => {
                    for device in covered() {
                        let observed = observe(condition, device, readings.get(&device.id), now);
                        let target = Target::device(device);
                        self.step(&mut out, rule, condition, &target, observed, &open);
                    }
                }
                Condition::DemandLimit { apparent, threshold } => {
                    for site in sites_covered() {
                        let Some((apparent, threshold, nmd)) = demand_limit(rule, site, *apparent, *threshold) else {
                            continue; // no limit of its own and no NMD: the site is not watched
                        };
                        let observed = self.demand_forecast(site, apparent, &threshold, nmd, now).await?;
                        self.step(&mut out, rule, condition, &Target::site(&site.row), observed, &open);
                    }
                }
                Condition::Budget { projected, threshold } => {
                    for site in sites_covered() {
                        let observed = budget(costs.get(&site.row.id), *projected, threshold, now);
                        self.step(&mut out, rule, condition, &Target::site(&site.row), observed, &open);
                    }
                }
                Condition::MaxDemand => {
                    for site in sites_covered() {
                        out.watched.insert((rule.id, Subject::Site(site.row.id)));
                        if let Some(cost) = costs.get(&site.row.id) {
                            max_demand(&mut out, rule, &site.row, cost, now, &open, &told);
                        }
                    }
                }
                Condition::DataGap => {
                    let ids: Vec<i32> = covered().map(|d| d.id).collect();
                    if ids.is_empty() {
                        continue;
                    }
                    let gaps = energy::estimated_gaps(&self.db, &ids, now - GAP_LOOKBACK).await?;
                    let by_id: HashMap<i32, &WatchedDevice> = devices.iter().map(|d| (d.id, d)).collect();
                    for gap in gaps {
                        let Some(device) = by_id.get(&gap.device) else { continue };
                        if !told.contains(&(rule.id, device.site_id, Some(device.id), gap.start)) {
                            out.raises.push(data_gap(rule, device, &gap));
                        }
                    }
                }
            }
        }
        // Open alarms no rule watches any more (rule disabled, device disabled or moved out of
        // the rule's scope) end: nobody would ever clear them.
        for a in &all_open {
            if !key_of(a).is_some_and(|k| out.watched.contains(&k)) {
                out.ends.push(EndAlarm { id: a.id, at: now, value: None, by: "rule" });
            }
        }

        let cycle = Cycle { raised: out.raises.len(), ended: out.ends.len() };
        if !out.raises.is_empty() || !out.ends.is_empty() {
            let mut tx = self.db.begin().await?;
            db::apply(&mut tx, &out.raises, &out.ends).await?;
            tx.commit().await?;
            for a in &out.raises {
                tracing::info!(rule = %a.rule_name, subject = %a.subject, severity = %a.severity, "Alarm raised: {}", a.message);
            }
            if !out.ends.is_empty() {
                tracing::info!(alarms = out.ends.len(), "Alarms ended");
            }
        }
        self.phases = out.phases;
        self.board.refresh(&self.db).await?;
        Ok(cycle)
    }

    /// Bills the month of every site with a tariff again when the last bills are older than
    /// [`COST_EVERY`]: a month of intervals per site is read through the energy door, and the
    /// rollup adds to it once a minute anyway.
    async fn refresh_costs(&mut self, sites: &[Site], now: DateTime<Utc>) -> Result<(), sqlx::Error> {
        if self.costs.as_ref().is_some_and(|(at, _)| *at <= now && now - *at < COST_EVERY) {
            return Ok(());
        }
        let with_tariff: HashSet<i32> = crate::tariffs::db::sites_with_tariff(&self.db).await?.into_iter().collect();
        let rows = sites.iter().filter(|s| with_tariff.contains(&s.row.id)).map(|s| s.row.clone()).collect();
        let costs = bills::month_costs(&self.db, rows, now).await?.into_iter().map(|c| (c.site.id, c)).collect();
        self.costs = Some((now, costs));
        Ok(())
    }

    /// The sites with enabled devices, for the site rules.
    async fn sites(&self, devices: &[WatchedDevice]) -> Result<Vec<Site>, sqlx::Error> {
        let mut by_site: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for d in devices.iter().filter(|d| d.enabled) {
            let mains = by_site.entry(d.site_id).or_default();
            if d.role == crate::sites::hierarchy::MAIN {
                mains.push(d.id);
            }
        }
        let ids: Vec<i32> = by_site.keys().copied().collect();
        let rows = crate::sites::db::sites_of(&self.db, &ids).await?;
        Ok(rows.into_iter().filter_map(|row| Some(Site { devices: by_site.remove(&row.id)?, row })).collect())
    }

    /// The forecast of the site's current demand window (the tariff's window, or 15 minutes);
    /// `nmd`: the limit is the site's NMD.
    async fn demand_forecast(
        &self,
        site: &Site,
        apparent: bool,
        threshold: &Threshold,
        nmd: bool,
        now: DateTime<Utc>,
    ) -> Result<Observed, sqlx::Error> {
        let tz = site.row.zone();
        let schedule = crate::tariffs::db::site_schedule(&self.db, site.row.id).await?;
        let minutes = engine::demand_on(&schedule, now.with_timezone(&tz).date_naive())
            .map_or(DEFAULT_WINDOW_MINUTES, |d| d.window_minutes);
        let (start, end) = rules::demand_window(now, tz, minutes);
        let mut samples: BTreeMap<i32, Vec<(DateTime<Utc>, f64)>> = BTreeMap::new();
        for (device, at, p, s) in queries::power_samples(&self.db, &site.devices, start, now).await? {
            if let Some(v) = if apparent { s } else { p } {
                samples.entry(device).or_default().push((at, v));
            }
        }
        let series: Vec<&rules::Samples> = samples.values().map(Vec::as_slice).collect();
        let value = rules::forecast_demand(&series, start, end, now).map(|w| w / 1000.0);
        // Judged at the newest reading's time, as thresholds are: a hold counts measured time.
        let at = series.iter().filter_map(|s| s.last().map(|(t, _)| *t)).max().unwrap_or(now);
        let unit = if apparent { "kVA" } else { "kW" };
        let level = value.map_or(Level::Unknown, |v| threshold.level(v));
        let left = (end - at).num_seconds() as f64;
        let local = |t: DateTime<Utc>| t.with_timezone(&tz).format("%H:%M").to_string();
        let message = format!(
            "The demand of {}–{} is forecast at {unit_value}, above the limit of {limit}{source}: {} left to shed load.",
            local(start),
            local(end),
            duration_text(left),
            unit_value = format_number(value.unwrap_or_default(), unit),
            limit = format_number(threshold.limit, unit),
            source = if nmd { " (the site's notified maximum demand)" } else { "" },
        );
        let details = serde_json::json!({
            "windowStart": start, "windowEnd": end, "windowMinutes": minutes, "forecast": value,
            "unit": unit, "limit": threshold.limit, "hysteresis": threshold.hysteresis, "secondsLeft": left,
            "limitSource": if nmd { "nmd" } else { "rule" },
        });
        Ok(Observed { level, value, at, message, details })
    }

    /// Steps a state-machine rule for one subject and notes the raise or the end it makes.
    fn step(
        &self,
        out: &mut Outcome,
        rule: &RuleRow,
        condition: &Condition,
        target: &Target,
        observed: Observed,
        open: &HashMap<Key, &OpenAlarm>,
    ) {
        let key = (rule.id, target.subject);
        let hold = TimeDelta::seconds(i64::from(rule.hold_seconds));
        let previous = match self.phases.get(&key) {
            Some((version, phase)) if *version == rule.updated_at => *phase,
            _ if open.contains_key(&key) => Phase::Active { recovering: None },
            _ => Phase::Normal,
        };
        let (phase, transition) = rules::step(previous, observed.level, observed.at, hold);
        out.phases.insert(key, (rule.updated_at, phase));
        out.watched.insert(key);
        match (transition, open.get(&key)) {
            (Some(Transition::Raise), None) => out.raises.push(new_alarm(rule, condition, target, observed)),
            (Some(Transition::Clear), Some(a)) => {
                out.ends.push(EndAlarm { id: a.id, at: observed.at, value: observed.value, by: "condition" })
            }
            _ => {}
        }
    }
}

/// Who an alarm is raised for.
struct Target {
    subject: Subject,
    site_id: i32,
    device_id: Option<i32>,
    name: String,
}

impl Target {
    fn device(d: &WatchedDevice) -> Target {
        Target {
            subject: Subject::Device(d.id),
            site_id: d.site_id,
            device_id: Some(d.id),
            name: format!("{} › {}", d.site_name, d.name),
        }
    }

    fn site(s: &SiteRow) -> Target {
        Target { subject: Subject::Site(s.id), site_id: s.id, device_id: None, name: s.name.clone() }
    }
}

/// What a rule saw of a subject at one cycle, and how an alarm raised on it would read.
struct Observed {
    level: Level,
    value: Option<f64>,
    at: DateTime<Utc>,
    message: String,
    details: serde_json::Value,
}

impl Observed {
    fn unknown(at: DateTime<Utc>) -> Observed {
        Observed { level: Level::Unknown, value: None, at, message: String::new(), details: serde_json::Value::Null }
    }
}

fn observe(
    condition: &Condition,
    device: &WatchedDevice,
    reading: Option<&StoredReading>,
    now: DateTime<Utc>,
) -> Observed {
    match condition {
        Condition::CommunicationLoss { missed } => {
            let interval = TimeDelta::seconds(i64::from(device.poll_interval_seconds));
            let (level, silent) =
                rules::communication_level(now, device.last_reading_at, device.created_at, interval, *missed);
            let message = match device.last_reading_at {
                Some(_) => format!(
                    "No reading for {} (more than {missed} poll intervals of {} s).",
                    duration_text(silent),
                    device.poll_interval_seconds
                ),
                None => format!(
                    "No reading since the device was added {} ago (more than {missed} poll intervals of {} s).",
                    duration_text(silent),
                    device.poll_interval_seconds
                ),
            };
            let details = serde_json::json!({
                "lastReadingAt": device.last_reading_at,
                "pollIntervalSeconds": device.poll_interval_seconds,
                "missedPolls": missed,
                "silentSeconds": silent,
            });
            Observed { level, value: Some(silent), at: now, message, details }
        }
        Condition::Threshold { watched, threshold } => {
            let Some(reading) = reading else { return Observed::unknown(now) };
            let values = watched.columns.iter().filter_map(|c| reading.get(c));
            let value = threshold.worst(values.map(|v| if watched.magnitude { v.abs() } else { v }));
            let level = value.map_or(Level::Unknown, |v| threshold.level(v));
            let shown = value.unwrap_or_default();
            let side = threshold.direction.as_str();
            let message = format!(
                "{} {} is {side} the limit of {}",
                watched.label,
                format_quantity(shown, watched.unit),
                format_quantity(threshold.limit, watched.unit)
            );
            let details = serde_json::json!({
                "quantity": watched.key,
                "unit": watched.unit,
                "value": shown,
                "limit": threshold.limit,
                "hysteresis": threshold.hysteresis,
                "readingAt": reading.time,
            });
            // Judged at the reading's time, so a hold counts measured time, not cycles.
            Observed { level, value, at: reading.time, message, details }
        }
        // Site and event rules are observed by their own functions.
        _ => Observed::unknown(now),
    }
}

/// The month's cost to date or its projection against the budget (unknown without a tariff).
fn budget(cost: Option<&MonthCost>, projected: bool, threshold: &Threshold, now: DateTime<Utc>) -> Observed {
    let Some(cost) = cost.filter(|c| !c.bill.currency.is_empty()) else { return Observed::unknown(now) };
    let amount = if projected { cost.projected } else { cost.to_date };
    let value = amount.to_f64();
    let level = value.map_or(Level::Unknown, |v| threshold.level(v));
    let currency = &cost.bill.currency;
    let what = if projected { "projected to reach" } else { "is" };
    let month = cost.loaded.period.start.format("%B %Y");
    let message = format!(
        "The cost of {month} {what} {currency} {amount:.2} (with VAT), above the budget of {currency} {:.2}.",
        threshold.limit
    );
    let details = serde_json::json!({
        "currency": currency, "toDate": cost.to_date.to_string(), "projected": cost.projected.to_string(),
        "basis": if projected { "projected" } else { "to-date" }, "budget": threshold.limit,
        "completenessPercent": cost.bill.completeness_percent.to_string(),
    });
    Observed { level, value, at: now, message, details }
}

/// A new maximum demand of the billing month: the newest complete demand window (complete:
/// [`DEMAND_SETTLE`] after its end) above every earlier one of the month, with what it adds to
/// the demand charge, from two bills of the tariff engine (up to the window's end, and before
/// its start). Ends the previous high's alarm, and an alarm of an earlier month.
fn max_demand(
    out: &mut Outcome,
    rule: &RuleRow,
    site: &SiteRow,
    cost: &MonthCost,
    now: DateTime<Utc>,
    open: &HashMap<Key, &OpenAlarm>,
    told: &HashSet<(i32, i32, Option<i32>, DateTime<Utc>)>,
) {
    let key = (rule.id, Subject::Site(site.id));
    let loaded = &cost.loaded;
    let (period_start, _) = loaded.period.utc(loaded.tz);
    let previous = open.get(&key);
    if let Some(a) = previous.filter(|a| a.started_at < period_start) {
        out.ends.push(EndAlarm { id: a.id, at: period_start, value: None, by: "condition" });
    }
    let Some(demand) = engine::demand_on(&loaded.schedule, now.with_timezone(&loaded.tz).date_naive()) else {
        return;
    };
    let (cut, _) = rules::demand_window(now - DEMAND_SETTLE, loaded.tz, demand.window_minutes);
    let window_start = cut - TimeDelta::minutes(i64::from(demand.window_minutes));
    if window_start < period_start || told.contains(&(rule.id, site.id, None, cut)) {
        return;
    }
    let charge = |until: DateTime<Utc>| {
        let all = &loaded.energy.intervals;
        let intervals = &all[..all.partition_point(|i| i.start < until)];
        engine::demand_charge(&engine::bill(&BillInput { intervals, ..loaded.input() }))
    };
    let (Some((high, with)), Some((before, without))) = (charge(cut), charge(window_start)) else { return };
    if high <= before || before.is_zero() {
        return;
    }
    if let Some(a) = previous.filter(|a| a.started_at >= period_start) {
        out.ends.push(EndAlarm { id: a.id, at: cut, value: high.to_f64(), by: "condition" });
    }
    let unit = demand.unit.label();
    let currency = &cost.bill.currency;
    let local = |t: DateTime<Utc>| t.with_timezone(&loaded.tz).format("%Y-%m-%d %H:%M").to_string();
    let impact = with - without;
    let message = format!(
        "A new maximum demand of the month: {high} {unit} in {}–{} (the highest before was {before} {unit}); \
         it raises the demand charge by {currency} {impact:.2} to {currency} {with:.2} (with VAT).",
        local(window_start),
        cut.with_timezone(&loaded.tz).format("%H:%M"),
    );
    let details = serde_json::json!({
        "windowStart": window_start, "windowEnd": cut, "unit": unit, "maximum": high.to_string(),
        "previousMaximum": before.to_string(), "currency": currency, "costImpact": impact.to_string(),
        "demandCharge": with.to_string(), "rate": demand.rate.to_string(),
    });
    let target = Target::site(site);
    let observed = Observed { level: Level::Breach, value: high.to_f64(), at: cut, message, details };
    out.raises.push(new_alarm(rule, &Condition::MaxDemand, &target, observed));
}

/// The demand limit a rule sets for `site`: its own (`threshold`, in its unit), or else the
/// site's NMD (in the NMD's unit, with the rule's hysteresis); `(apparent, threshold, from the
/// NMD)`, `None` when there is neither.
fn demand_limit(
    rule: &RuleRow,
    site: &Site,
    apparent: bool,
    threshold: Option<Threshold>,
) -> Option<(bool, Threshold, bool)> {
    if let Some(t) = threshold {
        return Some((apparent, t, false));
    }
    let nmd = site.row.nmd()?;
    let limit = Threshold::of(Direction::Above, nmd.value.to_f64()?, rule.hysteresis, None);
    Some((nmd.unit == crate::tariffs::model::DemandUnit::KVA, limit, true))
}

/// A data gap the rollup estimated: raised and ended at once, over the gap.
fn data_gap(rule: &RuleRow, device: &WatchedDevice, gap: &EstimatedGap) -> NewAlarm {
    let message = format!(
        "No readings for {} ({} intervals of 15 minutes): the energy of the gap was estimated, spread evenly over it.",
        duration_text((gap.end - gap.start).num_seconds() as f64),
        gap.intervals
    );
    let details = serde_json::json!({ "gapStart": gap.start, "gapEnd": gap.end, "intervals": gap.intervals });
    let observed =
        Observed { level: Level::Breach, value: Some(gap.intervals as f64), at: gap.start, message, details };
    let mut alarm = new_alarm(rule, &Condition::DataGap, &Target::device(device), observed);
    alarm.ended_at = Some(gap.end);
    alarm
}

fn new_alarm(rule: &RuleRow, condition: &Condition, target: &Target, observed: Observed) -> NewAlarm {
    let mut message = observed.message;
    if rule.hold_seconds > 0 && matches!(condition, Condition::Threshold { .. }) {
        message.push_str(&format!(" (for {})", duration_text(f64::from(rule.hold_seconds))));
    }
    if matches!(condition, Condition::Threshold { .. }) {
        message.push('.');
    }
    let mut details = observed.details;
    if let (Some(map), Condition::Threshold { .. }) = (details.as_object_mut(), condition) {
        map.insert("nominal".into(), serde_json::json!(rule.nominal));
        map.insert("holdSeconds".into(), serde_json::json!(rule.hold_seconds));
    }
    NewAlarm {
        rule_id: rule.id,
        rule_name: rule.name.clone(),
        kind: rule.kind.clone(),
        severity: rule.severity.clone(),
        site_id: target.site_id,
        device_id: target.device_id,
        subject: target.name.clone(),
        message,
        started_at: observed.at,
        trigger_value: observed.value,
        details,
        ended_at: None,
    }
}

/// "312.5 kW".
fn format_number(value: f64, unit: &str) -> String {
    format!("{} {unit}", (value * 10.0).round() / 10.0)
}

/// "45 s", "3 min 20 s", "2 h 5 min", "3 d 4 h".
pub fn duration_text(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as i64;
    let (d, h, m, s) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s} s"),
        (0, 0, _) if s == 0 => format!("{m} min"),
        (0, 0, _) => format!("{m} min {s} s"),
        (0, _, 0) => format!("{h} h"),
        (0, _, _) => format!("{h} h {m} min"),
        (_, 0, _) => format!("{d} d"),
        _ => format!("{d} d {h} h"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_read_as_people_say_them() {
        use super::duration_text;
        assert_eq!(duration_text(45.2), "45 s");
        assert_eq!(duration_text(200.0), "3 min 20 s");
        assert_eq!(duration_text(180.0), "3 min");
        assert_eq!(duration_text(7500.0), "2 h 5 min");
        assert_eq!(duration_text(7200.0), "2 h");
        assert_eq!(duration_text(3.0 * 86_400.0 + 4.0 * 3600.0), "3 d 4 h");
        assert_eq!(duration_text(-5.0), "0 s");
    }
}
