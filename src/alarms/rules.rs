//! The rule evaluator, pure: what a rule watches ([`Condition`]), where a value stands against
//! it ([`Level`]), and the state machine ([`step`]) that turns a series of levels into raises and
//! clears: raised after the condition held for the rule's hold time, cleared after the value was
//! back beyond the hysteresis band for as long, never on a value inside the band (no flapping).

use chrono::{DateTime, TimeDelta, Utc};

/// How urgent an alarm is (ThingsBoard's levels), most urgent first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Critical,
    Major,
    Minor,
    Warning,
}

impl Severity {
    pub const ALL: [Severity; 4] = [Severity::Critical, Severity::Major, Severity::Minor, Severity::Warning];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Major => "major",
            Severity::Minor => "minor",
            Severity::Warning => "warning",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|v| v.as_str() == s)
    }

    pub fn label(self) -> &'static str {
        match self {
            Severity::Critical => "Critical",
            Severity::Major => "Major",
            Severity::Minor => "Minor",
            Severity::Warning => "Warning",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Above,
    Below,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Above => "above",
            Direction::Below => "below",
        }
    }

    pub fn parse(s: &str) -> Option<Direction> {
        [Direction::Above, Direction::Below].into_iter().find(|d| d.as_str() == s)
    }
}

/// A quantity a threshold rule can watch: a stored column, or a group of phases of which the
/// worst counts (the highest for "above", the lowest for "below").
pub struct Watched {
    pub key: &'static str,
    pub label: &'static str,
    pub unit: &'static str,
    pub columns: &'static [&'static str],
    /// Compare the magnitude (power factor: its sign says the direction of flow, not quality).
    pub magnitude: bool,
}

const fn group(
    key: &'static str,
    label: &'static str,
    unit: &'static str,
    columns: &'static [&'static str],
) -> Watched {
    Watched { key, label, unit, columns, magnitude: false }
}

/// Every quantity a threshold rule can watch: the phase groups first, then each stored
/// instantaneous quantity of the measurement table by its JSON name.
pub const WATCHED: &[Watched] = &[
    group("voltageLN", "Voltage, line to neutral (any phase)", "V", &["V1", "V2", "V3"]),
    group("voltageLL", "Voltage, line to line (any pair)", "V", &["V12", "V23", "V31"]),
    group("current", "Current (any phase)", "A", &["I1", "I2", "I3"]),
    Watched {
        key: "pfAbs",
        label: "Power factor, total (magnitude)",
        unit: "",
        columns: &["PFTotal"],
        magnitude: true,
    },
    group("frequency", "Frequency", "Hz", &["Frequency"]),
    group("pTotal", "Active power, total", "W", &["PTotal"]),
    group("qTotal", "Reactive power, total", "var", &["QTotal"]),
    group("sTotal", "Apparent power, total", "VA", &["STotal"]),
    group("demandW", "Demand, active (meter)", "W", &["DemandW"]),
    group("demandVA", "Demand, apparent (meter)", "VA", &["DemandVA"]),
    group("iN", "Current, neutral", "A", &["IN"]),
    group("v1", "Voltage L1-N", "V", &["V1"]),
    group("v2", "Voltage L2-N", "V", &["V2"]),
    group("v3", "Voltage L3-N", "V", &["V3"]),
    group("i1", "Current L1", "A", &["I1"]),
    group("i2", "Current L2", "A", &["I2"]),
    group("i3", "Current L3", "A", &["I3"]),
    group("pf1", "Power factor L1", "", &["PF1"]),
    group("pf2", "Power factor L2", "", &["PF2"]),
    group("pf3", "Power factor L3", "", &["PF3"]),
];

pub fn watched(key: &str) -> Option<&'static Watched> {
    WATCHED.iter().find(|w| w.key == key)
}

/// A threshold in the quantity's own unit: breached beyond `limit`, recovered once back past
/// `limit ∓ hysteresis`; between the two (the band) nothing changes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    pub direction: Direction,
    pub limit: f64,
    pub hysteresis: f64,
}

impl Threshold {
    /// The threshold of a rule whose limit and hysteresis are percent of `nominal` when it has
    /// one (over-voltage 10 % of 230 V: 253 V), in the quantity's unit otherwise.
    pub fn of(direction: Direction, limit: f64, hysteresis: f64, nominal: Option<f64>) -> Threshold {
        match nominal {
            Some(n) => {
                let offset = n * limit / 100.0;
                let limit = match direction {
                    Direction::Above => n + offset,
                    Direction::Below => n - offset,
                };
                Threshold { direction, limit, hysteresis: n * hysteresis / 100.0 }
            }
            None => Threshold { direction, limit, hysteresis },
        }
    }

    pub fn level(&self, value: f64) -> Level {
        let (breach, recovered) = match self.direction {
            Direction::Above => (value > self.limit, value <= self.limit - self.hysteresis),
            Direction::Below => (value < self.limit, value >= self.limit + self.hysteresis),
        };
        if !value.is_finite() {
            Level::Unknown
        } else if breach {
            Level::Breach
        } else if recovered {
            Level::Recovered
        } else {
            Level::Band
        }
    }

    /// The worst of a reading's values for this threshold (`None`: none measured).
    pub fn worst(&self, values: impl IntoIterator<Item = f64>) -> Option<f64> {
        let values = values.into_iter().filter(|v| v.is_finite());
        match self.direction {
            Direction::Above => values.reduce(f64::max),
            Direction::Below => values.reduce(f64::min),
        }
    }
}

/// Communication loss: breached when the newest reading is older than `missed` poll intervals
/// (for a device that never sent one: since it was added), recovered as soon as readings return.
pub fn communication_level(
    now: DateTime<Utc>,
    last_reading: Option<DateTime<Utc>>,
    added: DateTime<Utc>,
    poll_interval: TimeDelta,
    missed: i32,
) -> (Level, f64) {
    let since = last_reading.unwrap_or(added);
    let silent = now - since;
    let level = if silent > poll_interval * missed { Level::Breach } else { Level::Recovered };
    (level, silent.num_milliseconds() as f64 / 1000.0)
}

/// The demand window (`minutes` long, aligned to the local hour as a meter and a bill count it)
/// that `at` falls in: `[start, end)`.
pub fn demand_window(at: DateTime<Utc>, tz: chrono_tz::Tz, minutes: u32) -> (DateTime<Utc>, DateTime<Utc>) {
    use chrono::Timelike;
    let local = at.with_timezone(&tz);
    let minutes = i64::from(minutes.max(1));
    let into = (i64::from(local.hour()) * 60 + i64::from(local.minute())) % minutes;
    let start = at
        - TimeDelta::minutes(into)
        - TimeDelta::seconds(i64::from(local.second()))
        - TimeDelta::nanoseconds(i64::from(local.nanosecond() % 1_000_000_000));
    (start, start + TimeDelta::minutes(minutes))
}

/// One device's power samples (W or VA) as measured.
pub type Samples = [(DateTime<Utc>, f64)];

/// The forecast average power of a demand window `[start, end)` at `now`, summed over devices:
/// each device's energy so far (every sample held until the next, the first from the window's
/// start) plus its newest power held to the window's end, over the window's length. A device
/// without a sample in the window adds nothing; `None` when none has one. Exact for constant
/// power; a step up shows in the forecast at the next sample, while there is time to shed load.
pub fn forecast_demand(
    devices: &[&Samples],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<f64> {
    let length = (end - start).num_milliseconds() as f64;
    if length <= 0.0 {
        return None;
    }
    let mut energy = 0.0;
    let mut any = false;
    for samples in devices {
        let mut inside = samples.iter().filter(|(t, v)| *t >= start && *t <= now && *t < end && v.is_finite());
        let Some(&(_, first)) = inside.clone().next() else { continue };
        any = true;
        let (mut at, mut value) = (start, first);
        for &(t, v) in inside.by_ref() {
            energy += value * (t - at).num_milliseconds() as f64;
            (at, value) = (t, v);
        }
        energy += value * (end - at).num_milliseconds() as f64;
    }
    any.then(|| energy / length)
}

/// Where a value stands against a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Beyond the limit.
    Breach,
    /// Inside the hysteresis band: neither raises nor clears.
    Band,
    /// Back on the safe side of the band.
    Recovered,
    /// No value (not measured, no new reading): nothing changes.
    Unknown,
}

/// Where a rule stands for one subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Normal,
    /// Breached since then, not yet for the hold time.
    Pending {
        since: DateTime<Utc>,
    },
    /// Raised; `recovering`: recovered since then, not yet for the hold time.
    Active {
        recovering: Option<DateTime<Utc>>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Raise,
    Clear,
}

/// The next phase after observing `level` at `at`, and the transition it makes, if any.
/// Observations come in time order; one that goes back in time changes nothing.
pub fn step(phase: Phase, level: Level, at: DateTime<Utc>, hold: TimeDelta) -> (Phase, Option<Transition>) {
    match (phase, level) {
        (_, Level::Unknown) => (phase, None),
        (Phase::Normal, Level::Breach) if hold <= TimeDelta::zero() => {
            (Phase::Active { recovering: None }, Some(Transition::Raise))
        }
        (Phase::Normal, Level::Breach) => (Phase::Pending { since: at }, None),
        (Phase::Normal, _) => (Phase::Normal, None),
        (Phase::Pending { since }, Level::Breach) if at - since >= hold => {
            (Phase::Active { recovering: None }, Some(Transition::Raise))
        }
        (Phase::Pending { .. }, Level::Breach) => (phase, None),
        // The condition must hold without a break: a value back inside the limit starts over.
        (Phase::Pending { .. }, _) => (Phase::Normal, None),
        // Recovery must hold without a break too: a value in the band or beyond starts over.
        (Phase::Active { .. }, Level::Breach | Level::Band) => (Phase::Active { recovering: None }, None),
        (Phase::Active { recovering: None }, Level::Recovered) if hold <= TimeDelta::zero() => {
            (Phase::Normal, Some(Transition::Clear))
        }
        (Phase::Active { recovering: None }, Level::Recovered) => (Phase::Active { recovering: Some(at) }, None),
        (Phase::Active { recovering: Some(since) }, Level::Recovered) if at - since >= hold => {
            (Phase::Normal, Some(Transition::Clear))
        }
        (Phase::Active { .. }, Level::Recovered) => (phase, None),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use proptest::prelude::*;

    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap()
    }

    /// The transitions of a series of (second, value) observations.
    fn run(th: Threshold, hold: i64, series: &[(i64, f64)]) -> Vec<(i64, Transition)> {
        let mut phase = Phase::Normal;
        let mut out = Vec::new();
        for &(s, v) in series {
            let (next, transition) = step(phase, th.level(v), t(s), TimeDelta::seconds(hold));
            phase = next;
            out.extend(transition.map(|tr| (s, tr)));
        }
        out
    }

    const OVER: Threshold = Threshold { direction: Direction::Above, limit: 253.0, hysteresis: 4.6 };

    #[test]
    fn nominal_makes_limits_percent() {
        let over = Threshold::of(Direction::Above, 10.0, 2.0, Some(230.0));
        assert!((over.limit - 253.0).abs() < 1e-9 && (over.hysteresis - 4.6).abs() < 1e-9);
        let under = Threshold::of(Direction::Below, 10.0, 2.0, Some(230.0));
        assert!((under.limit - 207.0).abs() < 1e-9);
        assert_eq!(Threshold::of(Direction::Below, 0.85, 0.03, None).limit, 0.85);
    }

    #[test]
    fn levels_against_the_band() {
        assert_eq!(OVER.level(253.1), Level::Breach);
        assert_eq!(OVER.level(253.0), Level::Band);
        assert_eq!(OVER.level(248.5), Level::Band);
        assert_eq!(OVER.level(248.4), Level::Recovered);
        assert_eq!(OVER.level(f64::NAN), Level::Unknown);
        let low_pf = Threshold { direction: Direction::Below, limit: 0.85, hysteresis: 0.03 };
        assert_eq!(low_pf.level(0.8), Level::Breach);
        assert_eq!(low_pf.level(0.87), Level::Band);
        assert_eq!(low_pf.level(0.9), Level::Recovered);
    }

    #[test]
    fn the_worst_phase_counts() {
        assert_eq!(OVER.worst([230.0, 260.0, f64::NAN]), Some(260.0));
        let under = Threshold { direction: Direction::Below, ..OVER };
        assert_eq!(under.worst([230.0, 200.0]), Some(200.0));
        assert_eq!(under.worst([]), None);
    }

    #[test]
    fn raises_after_the_hold_and_clears_after_the_hold() {
        let series =
            [(0, 255.0), (30, 256.0), (59, 257.0), (60, 258.0), (90, 250.0), (100, 240.0), (159, 240.0), (160, 241.0)];
        assert_eq!(run(OVER, 60, &series), vec![(60, Transition::Raise), (160, Transition::Clear)]);
    }

    #[test]
    fn a_break_in_the_breach_starts_the_hold_over() {
        let series = [(0, 255.0), (50, 250.0), (70, 255.0), (120, 255.0), (130, 255.0)];
        assert_eq!(run(OVER, 60, &series), vec![(130, Transition::Raise)]);
    }

    #[test]
    fn without_a_hold_the_first_breach_raises_and_the_first_recovery_clears() {
        assert_eq!(run(OVER, 0, &[(0, 254.0), (1, 200.0)]), vec![(0, Transition::Raise), (1, Transition::Clear)]);
    }

    #[test]
    fn a_breach_while_recovering_keeps_the_alarm() {
        let series = [(0, 260.0), (15, 260.0), (20, 240.0), (30, 260.0), (40, 240.0), (50, 240.0), (55, 240.0)];
        assert_eq!(run(OVER, 15, &series), vec![(15, Transition::Raise), (55, Transition::Clear)]);
    }

    #[test]
    fn communication_loss_counts_missed_polls() {
        let poll = TimeDelta::seconds(60);
        assert_eq!(communication_level(t(180), Some(t(0)), t(-999), poll, 3).0, Level::Recovered);
        assert_eq!(communication_level(t(181), Some(t(0)), t(-999), poll, 3), (Level::Breach, 181.0));
        assert_eq!(communication_level(t(100), None, t(0), poll, 1).0, Level::Breach);
        assert_eq!(communication_level(t(100), None, t(50), poll, 1).0, Level::Recovered);
    }

    #[test]
    fn demand_windows_follow_the_local_hour() {
        let at = "2026-12-02T10:44:59Z".parse::<DateTime<Utc>>().unwrap();
        let (start, end) = demand_window(at, chrono_tz::Africa::Johannesburg, 30);
        assert_eq!(
            (start.to_rfc3339(), end.to_rfc3339()),
            ("2026-12-02T10:30:00+00:00".into(), "2026-12-02T11:00:00+00:00".into())
        );
        // Kathmandu is 5:45 ahead: its local half hours start at :15 and :45 UTC.
        let (start, _) = demand_window(at, chrono_tz::Asia::Kathmandu, 30);
        assert_eq!(start.to_rfc3339(), "2026-12-02T10:15:00+00:00");
    }

    #[test]
    fn the_forecast_holds_the_newest_power_to_the_window_end() {
        let start = t(0);
        let end = t(1800);
        // 100 kW for 10 minutes, then 400 kW from minute 10: (100·600 + 400·1200) / 1800 = 300.
        let a: Vec<(DateTime<Utc>, f64)> = vec![(t(0), 100.0), (t(300), 100.0), (t(600), 400.0)];
        assert_eq!(forecast_demand(&[&a], start, end, t(700)), Some(300.0));
        // A second device adds its own; one without samples in the window adds nothing.
        let b = vec![(t(-60), 999.0), (t(60), 50.0)];
        let empty: Vec<(DateTime<Utc>, f64)> = vec![];
        assert_eq!(forecast_demand(&[&a, &b, &empty], start, end, t(700)), Some(350.0));
        assert_eq!(forecast_demand(&[&empty], start, end, t(700)), None);
        // Samples after now (clock skew) are not foreseen.
        assert_eq!(forecast_demand(&[&a], start, end, t(400)), Some(100.0));
    }

    proptest! {
        /// Raises and clears alternate, starting with a raise, whatever the values.
        #[test]
        fn transitions_alternate(values in prop::collection::vec(200.0f64..300.0, 0..200), hold in 0i64..30) {
            let series: Vec<(i64, f64)> = values.iter().enumerate().map(|(i, v)| (i as i64 * 5, *v)).collect();
            let transitions = run(OVER, hold, &series);
            for (i, (_, tr)) in transitions.iter().enumerate() {
                prop_assert_eq!(*tr, if i % 2 == 0 { Transition::Raise } else { Transition::Clear });
            }
        }

        /// Values that wander around the limit by less than the hysteresis raise once at most
        /// and never clear: no flapping.
        #[test]
        fn no_flapping_inside_the_band(offsets in prop::collection::vec(-4.5f64..4.5, 1..200)) {
            let series: Vec<(i64, f64)> = offsets.iter().enumerate().map(|(i, o)| (i as i64, 253.0 + o)).collect();
            let transitions = run(OVER, 0, &series);
            prop_assert!(transitions.len() <= 1, "{:?}", transitions);
        }

        /// A raise happens only after values beyond the limit for the whole hold time, a clear
        /// only after values past the band for the whole hold time.
        #[test]
        fn transitions_need_the_condition_for_the_hold(
            values in prop::collection::vec(240.0f64..265.0, 0..200),
            hold in 0i64..40,
        ) {
            let series: Vec<(i64, f64)> = values.iter().enumerate().map(|(i, v)| (i as i64 * 5, *v)).collect();
            for (at, tr) in run(OVER, hold, &series) {
                let window = series.iter().filter(|(s, _)| *s <= at && *s >= at - hold);
                for (_, v) in window {
                    match tr {
                        Transition::Raise => prop_assert!(*v > 253.0),
                        Transition::Clear => prop_assert!(*v <= 253.0 - 4.6),
                    }
                }
            }
        }
    }
}
