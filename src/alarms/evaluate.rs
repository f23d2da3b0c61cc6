//! The evaluator: every few seconds, each enabled rule against each device it covers, through the
//! pure state machine of `rules`; the cycle's raises and ends in one transaction. The phases
//! (pending, recovering) live in memory and survive a failed cycle: a cycle that cannot reach the
//! database changes nothing and the next one starts from the same phases.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgPool;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::ActiveAlarms;
use super::db::{self, EndAlarm, NewAlarm, RuleRow};
use super::rules::{self, Direction, Level, Phase, Threshold, Transition, Watched};
use crate::clock::Clock;
use crate::measurements::queries::{self, StoredReading};
use crate::sites::db::WatchedDevice;
use crate::sites::readings::format_quantity;

/// How often the rules are evaluated: a minute's communication loss is noticed within seconds.
pub const EVERY: Duration = Duration::from_secs(10);

/// What a rule watches, from its stored row.
enum Condition {
    CommunicationLoss { missed: i32 },
    Threshold { watched: &'static Watched, threshold: Threshold },
}

impl Condition {
    /// `None` for a row the evaluator cannot use (a quantity no longer known): it is skipped.
    fn of(rule: &RuleRow) -> Option<Condition> {
        match rule.kind.as_str() {
            "communication-loss" => Some(Condition::CommunicationLoss { missed: rule.missed_polls? }),
            "threshold" => {
                let watched = rules::watched(rule.quantity.as_deref()?)?;
                let direction = Direction::parse(rule.direction.as_deref()?)?;
                let threshold = Threshold::of(direction, rule.limit?, rule.hysteresis, rule.nominal);
                Some(Condition::Threshold { watched, threshold })
            }
            _ => None,
        }
    }
}

fn covers(rule: &RuleRow, device: &WatchedDevice) -> bool {
    rule.device_id.is_none_or(|d| d == device.id) && rule.site_id.is_none_or(|s| s == device.site_id)
}

/// A rule's phase for one device, with the rule version it was reached under.
type Key = (i32, i32);

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
}

impl Evaluator {
    pub fn new(db: PgPool, clock: Clock, board: ActiveAlarms) -> Evaluator {
        Evaluator { db, clock, board, every: EVERY, phases: HashMap::new() }
    }

    /// Evaluates until `shutdown`; a cycle that fails (the database away) is logged once and
    /// retried at the next tick.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.cancelled() => return,
            }
            let cycle = tokio::select! {
                cycle = self.cycle() => cycle,
                () = shutdown.cancelled() => return,
            };
            match cycle {
                Ok(_) if failing => {
                    tracing::info!("Alarm evaluation resumed");
                    failing = false;
                }
                Ok(_) => {}
                Err(e) if !failing => {
                    tracing::warn!("Cannot evaluate the alarm rules, will retry: {e}");
                    failing = true;
                }
                Err(_) => {}
            }
        }
    }

    /// One evaluation of every enabled rule; raises and ends alarms in one transaction.
    pub async fn cycle(&mut self) -> Result<Cycle, sqlx::Error> {
        let now = self.clock.now();
        let rules = db::enabled_rules(&self.db).await?;
        let devices = crate::sites::db::watched_devices(&self.db).await?;
        let all_open = db::open_alarms(&self.db).await?;
        let open: HashMap<Key, i64> =
            all_open.iter().filter_map(|a| Some(((a.rule_id?, a.device_id?), a.id))).collect();
        let conditions: Vec<(&RuleRow, Condition)> =
            rules.iter().filter_map(|r| Condition::of(r).map(|c| (r, c))).collect();
        let readings: HashMap<i32, StoredReading> =
            if conditions.iter().any(|(_, c)| matches!(c, Condition::Threshold { .. })) {
                let ids: Vec<i32> = devices.iter().filter(|d| d.enabled).map(|d| d.id).collect();
                queries::latest_readings(&self.db, &ids).await?.into_iter().collect()
            } else {
                HashMap::new()
            };

        let mut phases = HashMap::new();
        let (mut raises, mut ends) = (Vec::new(), Vec::new());
        for (rule, condition) in &conditions {
            let hold = TimeDelta::seconds(i64::from(rule.hold_seconds));
            for device in devices.iter().filter(|d| d.enabled && covers(rule, d)) {
                let key = (rule.id, device.id);
                let previous = match self.phases.get(&key) {
                    Some((version, phase)) if *version == rule.updated_at => *phase,
                    _ if open.contains_key(&key) => Phase::Active { recovering: None },
                    _ => Phase::Normal,
                };
                let observed = observe(condition, device, readings.get(&device.id), now);
                let (phase, transition) = rules::step(previous, observed.level, observed.at, hold);
                phases.insert(key, (rule.updated_at, phase));
                match (transition, open.get(&key)) {
                    (Some(Transition::Raise), None) => raises.push(new_alarm(rule, condition, device, &observed)),
                    (Some(Transition::Clear), Some(&id)) => {
                        ends.push(EndAlarm { id, at: observed.at, value: observed.value, by: "condition" })
                    }
                    _ => {}
                }
            }
        }
        // Open alarms no rule watches any more (rule disabled, device disabled or moved out of
        // the rule's scope) end: nobody would ever clear them.
        for a in &all_open {
            let watched = match (a.rule_id, a.device_id) {
                (Some(rule), Some(device)) => phases.contains_key(&(rule, device)),
                _ => false,
            };
            if !watched {
                ends.push(EndAlarm { id: a.id, at: now, value: None, by: "rule" });
            }
        }

        let cycle = Cycle { raised: raises.len(), ended: ends.len() };
        if !raises.is_empty() || !ends.is_empty() {
            let mut tx = self.db.begin().await?;
            db::apply(&mut tx, &raises, &ends).await?;
            tx.commit().await?;
            for a in &raises {
                tracing::info!(rule = %a.rule_name, subject = %a.subject, severity = %a.severity, "Alarm raised: {}", a.message);
            }
            if !ends.is_empty() {
                tracing::info!(alarms = ends.len(), "Alarms ended");
            }
        }
        self.phases = phases;
        self.board.refresh(&self.db).await?;
        Ok(cycle)
    }
}

/// What a rule saw of a device at one cycle.
struct Observed {
    level: Level,
    value: Option<f64>,
    at: DateTime<Utc>,
    /// Communication loss: the newest reading's time.
    last_reading: Option<DateTime<Utc>>,
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
            Observed { level, value: Some(silent), at: now, last_reading: device.last_reading_at }
        }
        Condition::Threshold { watched, threshold } => {
            let Some(reading) = reading else {
                return Observed { level: Level::Unknown, value: None, at: now, last_reading: None };
            };
            let values = watched.columns.iter().filter_map(|c| reading.get(c));
            let value = threshold.worst(values.map(|v| if watched.magnitude { v.abs() } else { v }));
            let level = value.map_or(Level::Unknown, |v| threshold.level(v));
            // Judged at the reading's time, so a hold counts measured time, not cycles.
            Observed { level, value, at: reading.time, last_reading: Some(reading.time) }
        }
    }
}

fn new_alarm(rule: &RuleRow, condition: &Condition, device: &WatchedDevice, observed: &Observed) -> NewAlarm {
    let (message, details) = match condition {
        Condition::CommunicationLoss { missed } => {
            let silent = observed.value.unwrap_or_default();
            let message = match observed.last_reading {
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
                "lastReadingAt": observed.last_reading,
                "pollIntervalSeconds": device.poll_interval_seconds,
                "missedPolls": missed,
                "silentSeconds": silent,
            });
            (message, details)
        }
        Condition::Threshold { watched, threshold } => {
            let value = observed.value.unwrap_or_default();
            let side = match threshold.direction {
                Direction::Above => "above",
                Direction::Below => "below",
            };
            let mut message = format!(
                "{} {} is {side} the limit of {}",
                watched.label,
                format_quantity(value, watched.unit),
                format_quantity(threshold.limit, watched.unit)
            );
            if rule.hold_seconds > 0 {
                message.push_str(&format!(" (for {})", duration_text(f64::from(rule.hold_seconds))));
            }
            message.push('.');
            let details = serde_json::json!({
                "quantity": watched.key,
                "unit": watched.unit,
                "value": value,
                "limit": threshold.limit,
                "hysteresis": threshold.hysteresis,
                "nominal": rule.nominal,
                "holdSeconds": rule.hold_seconds,
                "readingAt": observed.at,
            });
            (message, details)
        }
    };
    NewAlarm {
        rule_id: rule.id,
        rule_name: rule.name.clone(),
        kind: rule.kind.clone(),
        severity: rule.severity.clone(),
        site_id: device.site_id,
        device_id: Some(device.id),
        subject: format!("{} › {}", device.site_name, device.name),
        message,
        started_at: observed.at,
        trigger_value: observed.value,
        details,
    }
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
