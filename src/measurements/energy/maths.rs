//! Energy per 15-minute interval from a meter's cumulative counters (pure; no I/O).
//!
//! Interval energy is always a difference of counter readings, never integrated power: the
//! counters are what the utility bills, and integrating 1-minute power samples misses every
//! load that changes between samples.
//!
//! Each counter (import Wh, export Wh, apparent VAh, reactive import and export varh) is a *channel* of points (time, value).
//! The energy between two consecutive points of a channel is spread over the intervals between
//! them in proportion to time, so an interval boundary between two samples splits exactly. A
//! drop of the counter is either a wrap (the Acuvim counts 0.1 kWh up to 999,999,999 and starts
//! again at 0, so stored Wh wrap modulo [`WRAP_WH`]) or a reset/replacement of the meter: then
//! the new value is a new baseline, the interval is flagged `counter_reset`, and no energy is
//! counted for that step (never negative energy). A step that leaves a whole interval without a
//! sample is a gap: the counters say how much, not when, so its intervals are flagged
//! `estimated`.
//!
//! Hostile or broken values never become energy. A counter value outside `0..=`[`MAX_COUNTER`]
//! is not read; a rise implying more than [`MAX_PLAUSIBLE_W`] of mean power (a counter that
//! jumped, a corrupted value) and a step longer than [`MAX_SPREAD`] (energy that cannot be placed
//! in time) count nothing and restart the baseline like a reset. Each of these is an
//! [`Anomaly`] the rollup records for the device's page, so it is visible, never a silent zero
//! nor a poisoned figure, and the rollup goes on.
//!
//! The rollup job runs this incrementally: [`compute`] takes the [`State`] carried from the
//! previous run and the device's readings from `State::from` on, and returns the intervals from
//! `State::from` on plus the next state. The next state's `from` is the first interval that may
//! still change when more readings arrive; the next run re-reads from there and overwrites those
//! intervals, so nothing is counted twice and a run split anywhere gives the same intervals as
//! one pass (a property test checks it).

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};

/// The interval length. Every UTC offset of every IANA zone is a multiple of 15 minutes, so
/// intervals aligned in UTC are aligned in local time too.
pub const INTERVAL: TimeDelta = TimeDelta::minutes(15);
const INTERVAL_US: i64 = 15 * 60 * 1_000_000;

/// The counters wrap after 999,999,999 counts of 0.1 kWh: 10^9 × 100 Wh.
pub const WRAP_WH: f64 = 1e11;
/// A drop is a wrap only if the counter was in the top tenth of its range and is now in the
/// bottom tenth, and the energy across the wrap implies no more than this mean power. Anything
/// else is a reset or a meter replacement.
pub const MAX_PLAUSIBLE_W: f64 = 100e6;
/// The largest counter value that is read at all: 10,000 times an Acuvim's range. Above it (and
/// below zero) a value is corrupt, whatever the meter.
pub const MAX_COUNTER: f64 = 1e15;
/// The longest step whose energy is spread over the intervals it spans. Longer, and the energy
/// cannot be placed in time (two readings ten years apart would make 350,000 estimated
/// intervals): it is not counted, and the next point starts a new baseline.
pub const MAX_SPREAD: TimeDelta = TimeDelta::days(7);
/// A counter missing from every reading for longer than this, while the meter kept reporting,
/// starts a new baseline when it returns (flagged like a reset) instead of spreading an unknown
/// amount over the whole absence. It also bounds how far back a run re-reads.
pub const HOLD: TimeDelta = TimeDelta::hours(24);

/// The counters, in the order of every `[_; CHANNELS]` array here.
pub const CHANNELS: usize = 5;
pub const IMPORT: usize = 0;
pub const EXPORT: usize = 1;
pub const APPARENT: usize = 2;
/// Reactive energy (varh) imported and exported, for reactive energy charges and power-factor
/// adjustments on bills: computed exactly like active energy, from the meter's counters.
pub const REACTIVE_IMPORT: usize = 3;
pub const REACTIVE_EXPORT: usize = 4;

/// The start of the interval holding `t`.
pub fn interval_start(t: DateTime<Utc>) -> DateTime<Utc> {
    from_us(bucket_of(t.timestamp_micros()) * INTERVAL_US)
}

/// The first interval start at or after `t`.
pub fn interval_ceil(t: DateTime<Utc>) -> DateTime<Utc> {
    let us = t.timestamp_micros();
    from_us((us + INTERVAL_US - 1).div_euclid(INTERVAL_US) * INTERVAL_US)
}

fn bucket_of(us: i64) -> i64 {
    us.div_euclid(INTERVAL_US)
}

fn from_us(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// One counter value at one time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub time: DateTime<Utc>,
    pub value: f64,
}

/// One stored reading, reduced to what energy needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub time: DateTime<Utc>,
    /// Import Wh, export Wh, apparent VAh, reactive import and export varh as stored
    /// (cumulative), in channel order; `None` when not read.
    pub counters: [Option<f64>; CHANNELS],
    pub p_total: Option<f32>,
    pub s_total: Option<f32>,
}

/// A device's readings within one interval: how many, the highest instantaneous power, and per
/// channel the counter points that matter. While a counter only rises inside the interval, its
/// first and last points say everything (all the energy between them lies in this interval), so
/// the database can hand over a per-interval summary instead of every row; an interval where a
/// counter drops carries every point.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub start: DateTime<Utc>,
    pub samples: u32,
    /// The time of the last reading (with or without counters).
    pub last_time: DateTime<Utc>,
    pub max_w: Option<f32>,
    pub max_va: Option<f32>,
    pub points: [Vec<Point>; CHANNELS],
}

/// Groups ordered samples into observations, keeping only the first and last point of a
/// counter that does not drop within the interval (the same thing the SQL summary delivers).
pub fn observations(samples: &[Sample]) -> Vec<Observation> {
    let mut out: Vec<Observation> = Vec::new();
    for s in samples {
        let start = interval_start(s.time);
        if out.last().is_none_or(|o| o.start != start) {
            out.push(Observation {
                start,
                samples: 0,
                last_time: s.time,
                max_w: None,
                max_va: None,
                points: Default::default(),
            });
        }
        let Some(o) = out.last_mut() else { continue };
        o.samples += 1;
        o.last_time = s.time;
        o.max_w = max_opt(o.max_w, s.p_total.filter(|v| v.is_finite()));
        o.max_va = max_opt(o.max_va, s.s_total.filter(|v| v.is_finite()));
        for (c, value) in s.counters.iter().enumerate() {
            if let Some(value) = value.filter(|v| v.is_finite()) {
                o.points[c].push(Point { time: s.time, value });
            }
        }
    }
    for o in &mut out {
        for points in &mut o.points {
            if points.len() > 2 && points.windows(2).all(|w| w[1].value >= w[0].value) {
                let last = points[points.len() - 1];
                points.truncate(1);
                points.push(last);
            }
        }
    }
    out
}

/// Whether an observation is a summary: each counter's first and last point, the counter not
/// dropping between them (what [`observations`] and the rollup's SQL deliver for an interval
/// without a drop). Only a summary can be [`join`]ed.
pub fn is_summary(o: &Observation) -> bool {
    o.points.iter().all(|points| points.len() <= 2 && points.windows(2).all(|w| w[1].value >= w[0].value))
}

/// The summary of an interval's readings from the summaries of its readings before some time
/// (`before`) and from then on (`after`), both [`is_summary`]: equal to the summary of all of
/// them. `None` when a counter drops across the join (an interval with a drop carries every
/// point, which the summaries no longer hold). The rollup carries an interval in progress from
/// one run to the next this way, so a run reads only the readings that are new.
pub fn join(before: &Observation, after: &Observation) -> Option<Observation> {
    let mut points: [Vec<Point>; CHANNELS] = Default::default();
    for (joined, (a, b)) in points.iter_mut().zip(before.points.iter().zip(&after.points)) {
        *joined = match (a.first(), a.last(), b.first(), b.last()) {
            // Within each part the last point is the highest and the first the lowest.
            (Some(_), Some(high), Some(next), Some(_)) if next.value < high.value => return None,
            (Some(&first), _, _, Some(&last)) => vec![first, last],
            (None, ..) => b.clone(),
            _ => a.clone(),
        };
    }
    Some(Observation {
        start: before.start,
        samples: before.samples.saturating_add(after.samples),
        last_time: before.last_time.max(after.last_time),
        max_w: max_opt(before.max_w, after.max_w),
        max_va: max_opt(before.max_va, after.max_va),
        points,
    })
}

fn max_opt(a: Option<f32>, b: Option<f32>) -> Option<f32> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// What a channel carries from one run to the next.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ChannelState {
    /// The last point before `State::from`: the baseline of the next step.
    pub last: Option<Point>,
    /// The meter kept reporting without this counter for longer than [`HOLD`]: its next point
    /// is a new baseline.
    pub stale: bool,
}

/// Where a run starts: intervals before `from` are final; the channels' baselines.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct State {
    pub from: DateTime<Utc>,
    pub channels: [ChannelState; CHANNELS],
}

impl State {
    /// Nothing processed yet: every interval from `from` on is computed.
    pub fn start(from: DateTime<Utc>) -> State {
        State { from: interval_start(from), channels: Default::default() }
    }
}

/// The energy of one device in one interval.
#[derive(Debug, Clone, PartialEq)]
pub struct Interval {
    pub start: DateTime<Utc>,
    pub import_wh: f64,
    pub export_wh: f64,
    /// `None` when no apparent-energy counter contributed (the meter has none).
    pub apparent_vah: Option<f64>,
    /// Reactive energy imported and exported; `None` when the meter reported no such counter in
    /// or around the interval (unknown, not zero).
    pub reactive_import_varh: Option<f64>,
    pub reactive_export_varh: Option<f64>,
    pub max_w: Option<f32>,
    pub max_va: Option<f32>,
    pub samples: u32,
    pub estimated: bool,
    pub counter_reset: bool,
}

/// The intervals from `State::from` on, in order, and the state for the next run.
#[derive(Debug, Clone, PartialEq)]
pub struct Computed {
    pub intervals: Vec<Interval>,
    pub next: State,
    /// What was not counted, and why (in the order met).
    pub anomalies: Vec<Anomaly>,
}

/// Why a counter point did not count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AnomalyKind {
    /// The value itself is impossible (negative, above [`MAX_COUNTER`]).
    ImplausibleValue,
    /// A rise implying a mean power above [`MAX_PLAUSIBLE_W`] since the previous point.
    ImplausibleRise,
    /// More than [`MAX_SPREAD`] since the previous point.
    GapTooLong,
}

impl AnomalyKind {
    pub fn code(self) -> &'static str {
        match self {
            AnomalyKind::ImplausibleValue => "implausible-value",
            AnomalyKind::ImplausibleRise => "implausible-rise",
            AnomalyKind::GapTooLong => "gap-too-long",
        }
    }
}

/// A counter point that did not count: at `point`, on `channel`, after `previous`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Anomaly {
    pub channel: usize,
    pub kind: AnomalyKind,
    pub point: Point,
    pub previous: Option<Point>,
}

impl Anomaly {
    /// What the device page says about it.
    pub fn describe(&self) -> String {
        let (counter, unit) = [
            ("import energy", "Wh"),
            ("export energy", "Wh"),
            ("apparent energy", "VAh"),
            ("reactive import energy", "varh"),
            ("reactive export energy", "varh"),
        ]
        .get(self.channel)
        .copied()
        .unwrap_or(("a", ""));
        match (self.kind, self.previous) {
            (AnomalyKind::ImplausibleValue, _) => format!(
                "The {counter} counter read {:.3e} {unit}, which no meter counts: the value was ignored.",
                self.point.value
            ),
            (AnomalyKind::ImplausibleRise, Some(prev)) => {
                let seconds = (self.point.time - prev.time).as_seconds_f64().max(1e-3);
                let rise = self.point.value - prev.value;
                format!(
                    "The {counter} counter rose by {} {unit} in {} s (a mean {} MW, above the plausible {} MW): not \
                     counted; the counter starts a new baseline there.",
                    grouped(rise),
                    grouped(seconds),
                    grouped(rise / seconds * 3600.0 / 1e6),
                    grouped(MAX_PLAUSIBLE_W / 1e6)
                )
            }
            (AnomalyKind::GapTooLong, Some(prev)) => format!(
                "No {counter} reading for {:.1} days (longer than the {} days energy is spread over): the {} {unit} \
                 counted meanwhile is not placed in time, and the counter starts a new baseline there.",
                (self.point.time - prev.time).as_seconds_f64() / 86_400.0,
                MAX_SPREAD.num_days(),
                grouped(self.point.value - prev.value)
            ),
            (_, None) => format!("The {counter} counter's point was not counted."),
        }
    }
}

/// `x` rounded to a whole number, with thousands separators (12,345,678).
fn grouped(x: f64) -> String {
    let digits = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if x < 0.0 { format!("-{out}") } else { out }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InputError {
    #[error("observation {index}: interval {start} is before the run's start {from}")]
    BeforeStart { index: usize, start: DateTime<Utc>, from: DateTime<Utc> },
    #[error("observation {index}: interval {start} does not come after the previous one")]
    NotIncreasing { index: usize, start: DateTime<Utc> },
    #[error("observation {index}: a counter point at {time} is outside its interval or out of order")]
    BadPoint { index: usize, time: DateTime<Utc> },
}

#[derive(Default)]
struct Acc {
    energy: [f64; CHANNELS],
    touched: [bool; CHANNELS],
    samples: u32,
    max_w: Option<f32>,
    max_va: Option<f32>,
    estimated: bool,
    counter_reset: bool,
}

/// What the step from `a` to `b` of a counter means.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    /// This much energy passed.
    Energy(f64),
    /// A meter reset or replacement: a new baseline, nothing counted.
    Reset,
    /// Not energy (see [`AnomalyKind`]): a new baseline, nothing counted, recorded.
    Refused(AnomalyKind),
}

/// The step from `a` to `b` (both plausible values, `a` before `b`).
pub fn step(a: Point, b: Point) -> Step {
    if b.time - a.time > MAX_SPREAD {
        return Step::Refused(AnomalyKind::GapTooLong);
    }
    match increase(a, b) {
        None => Step::Reset,
        Some(delta) => {
            let hours = (b.time - a.time).as_seconds_f64() / 3600.0;
            // A rise within one microsecond cannot be judged by power; the counters' range can.
            let plausible = if hours > 0.0 { delta / hours <= MAX_PLAUSIBLE_W } else { delta <= MAX_PLAUSIBLE_W };
            if plausible { Step::Energy(delta) } else { Step::Refused(AnomalyKind::ImplausibleRise) }
        }
    }
}

/// Whether a counter value can be read at all.
pub fn plausible_value(value: f64) -> bool {
    value.is_finite() && (0.0..=MAX_COUNTER).contains(&value)
}

/// The counter increase from `a` to `b`, or `None` when the drop is a reset.
pub fn increase(a: Point, b: Point) -> Option<f64> {
    if b.value >= a.value {
        return Some(b.value - a.value);
    }
    let across = b.value + WRAP_WH - a.value;
    let hours = (b.time - a.time).as_seconds_f64() / 3600.0;
    let near_top = a.value >= 0.9 * WRAP_WH && a.value < WRAP_WH;
    let near_zero = b.value >= 0.0 && b.value < 0.1 * WRAP_WH;
    (near_top && near_zero && hours > 0.0 && across / hours <= MAX_PLAUSIBLE_W).then_some(across)
}

/// Computes the intervals from `state.from` on out of the observations that follow it.
pub fn compute(state: &State, observations: &[Observation]) -> Result<Computed, InputError> {
    validate(state, observations)?;
    let mut acc: BTreeMap<i64, Acc> = BTreeMap::new();
    let mut channels = state.channels;
    // The channel state at the start of each observed interval: the next run's baseline is one
    // of them.
    let mut snapshots: Vec<(DateTime<Utc>, [ChannelState; CHANNELS])> = Vec::with_capacity(observations.len());
    let mut anomalies = Vec::new();
    for o in observations {
        snapshots.push((o.start, channels));
        let bucket = bucket_of(o.start.timestamp_micros());
        let a = acc.entry(bucket).or_default();
        a.samples += o.samples;
        a.max_w = max_opt(a.max_w, o.max_w);
        a.max_va = max_opt(a.max_va, o.max_va);
        for (c, points) in o.points.iter().enumerate() {
            let ch = &mut channels[c];
            if points.is_empty() {
                if ch.last.is_some_and(|last| o.last_time > last.time + HOLD) {
                    ch.stale = true;
                }
                continue;
            }
            for &p in points {
                if !plausible_value(p.value) {
                    anomalies.push(Anomaly {
                        channel: c,
                        kind: AnomalyKind::ImplausibleValue,
                        point: p,
                        previous: ch.last,
                    });
                    continue;
                }
                // A counter read in the interval makes its energy known there, even before any
                // has passed (the interval a meter's latest reading opens: zero so far, not unknown).
                acc.entry(bucket).or_default().touched[c] = true;
                match ch.last {
                    None => {}
                    Some(_) if ch.stale => acc.entry(bucket).or_default().counter_reset = true,
                    Some(prev) => match step(prev, p) {
                        Step::Energy(delta) => spread(&mut acc, c, prev.time, p.time, delta),
                        Step::Reset => acc.entry(bucket).or_default().counter_reset = true,
                        Step::Refused(kind) => {
                            acc.entry(bucket).or_default().counter_reset = true;
                            anomalies.push(Anomaly { channel: c, kind, point: p, previous: Some(prev) });
                        }
                    },
                }
                *ch = ChannelState { last: Some(p), stale: false };
            }
        }
    }

    let next = match observations.last() {
        None => *state,
        Some(last) => {
            // The first interval that more readings can still change: the last one observed,
            // or an earlier one holding a counter's last point (the energy after that point is
            // not known until the counter's next point arrives).
            // A counter found stale in the last interval may turn out not to be once the rest
            // of that interval arrives: its baseline still counts until then.
            let before_last = snapshots.last().map_or(state.channels, |s| s.1);
            let mut from = last.start;
            for (ch, before) in channels.iter().zip(before_last) {
                let baseline = if !ch.stale { ch.last } else { before.last.filter(|_| !before.stale) };
                if let Some(p) = baseline {
                    from = from.min(interval_start(p.time));
                }
            }
            let from = from.max(state.from);
            let channels = snapshots.iter().find(|(start, _)| *start == from).map_or(state.channels, |s| s.1);
            State { from, channels }
        }
    };

    let from = bucket_of(state.from.timestamp_micros());
    let intervals = acc
        .range(from..)
        .map(|(&bucket, a)| Interval {
            start: from_us(bucket * INTERVAL_US),
            import_wh: a.energy[IMPORT],
            export_wh: a.energy[EXPORT],
            apparent_vah: a.touched[APPARENT].then_some(a.energy[APPARENT]),
            reactive_import_varh: a.touched[REACTIVE_IMPORT].then_some(a.energy[REACTIVE_IMPORT]),
            reactive_export_varh: a.touched[REACTIVE_EXPORT].then_some(a.energy[REACTIVE_EXPORT]),
            max_w: a.max_w,
            max_va: a.max_va,
            samples: a.samples,
            estimated: a.estimated,
            counter_reset: a.counter_reset,
        })
        .collect();
    Ok(Computed { intervals, next, anomalies })
}

fn validate(state: &State, observations: &[Observation]) -> Result<(), InputError> {
    let mut previous: Option<DateTime<Utc>> = None;
    for (index, o) in observations.iter().enumerate() {
        if o.start < state.from {
            return Err(InputError::BeforeStart { index, start: o.start, from: state.from });
        }
        if previous.is_some_and(|p| o.start <= p) || interval_start(o.start) != o.start {
            return Err(InputError::NotIncreasing { index, start: o.start });
        }
        previous = Some(o.start);
        for (c, points) in o.points.iter().enumerate() {
            let mut last = state.channels[c].last.map(|p| p.time).filter(|_| index == 0);
            for p in points {
                if interval_start(p.time) != o.start || last.is_some_and(|t| p.time <= t) {
                    return Err(InputError::BadPoint { index, time: p.time });
                }
                last = Some(p.time);
            }
        }
    }
    Ok(())
}

/// Spreads `delta` over `[from, to)` in proportion to time. A step that leaves a whole interval
/// without a reading is a gap: every interval it touches is flagged estimated.
fn spread(acc: &mut BTreeMap<i64, Acc>, channel: usize, from: DateTime<Utc>, to: DateTime<Utc>, delta: f64) {
    let (a, b) = (from.timestamp_micros(), to.timestamp_micros());
    if b <= a {
        let e = acc.entry(bucket_of(b)).or_default();
        e.energy[channel] += delta;
        e.touched[channel] = true;
        return;
    }
    let gap = bucket_of(a) * INTERVAL_US + 2 * INTERVAL_US <= b;
    let (first, last) = (bucket_of(a), bucket_of(b - 1));
    let span = (b - a) as f64;
    let mut given = 0.0;
    for k in first..=last {
        let share = if k == last {
            // The remainder, so the shares add up to the step exactly.
            (delta - given).max(0.0)
        } else {
            let overlap = ((k + 1) * INTERVAL_US).min(b) - (k * INTERVAL_US).max(a);
            delta * overlap as f64 / span
        };
        given += share;
        let e = acc.entry(k).or_default();
        e.energy[channel] += share;
        e.touched[channel] = true;
        e.estimated |= gap;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(minutes: f64) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(1_780_000_200_000_000 + (minutes * 60e6) as i64).unwrap()
    }

    fn t0() -> DateTime<Utc> {
        interval_start(at(0.0))
    }

    /// A sample `minutes` after an interval start with import `wh` (and no other counter).
    fn s(minutes: f64, wh: f64) -> Sample {
        Sample {
            time: t0() + TimeDelta::microseconds((minutes * 60e6) as i64),
            counters: [Some(wh), None, None, None, None],
            p_total: Some(wh as f32),
            s_total: None,
        }
    }

    fn run(samples: &[Sample]) -> Computed {
        compute(&State::start(samples[0].time), &observations(samples)).unwrap()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0)
    }

    #[test]
    fn a_step_across_a_boundary_splits_in_proportion_to_time() {
        // 10:05 → 10:20 with 300 Wh: 10 minutes in the first interval, 5 in the second.
        let c = run(&[s(5.0, 1000.0), s(20.0, 1300.0)]);
        let energy: Vec<f64> = c.intervals.iter().map(|i| i.import_wh).collect();
        assert_eq!(energy, vec![200.0, 100.0]);
        assert!(c.intervals.iter().all(|i| !i.estimated && !i.counter_reset));
        assert_eq!(c.intervals.iter().map(|i| i.samples).collect::<Vec<_>>(), vec![1, 1]);
        assert_eq!(c.intervals[0].apparent_vah, None);
        assert_eq!(c.intervals[1].max_w, Some(1300.0));
    }

    #[test]
    fn a_wrap_is_bridged() {
        let c = run(&[s(1.0, WRAP_WH - 100.0), s(2.0, 400.0)]);
        assert_eq!(c.intervals.len(), 1);
        assert_eq!(c.intervals[0].import_wh, 500.0);
        assert!(!c.intervals[0].counter_reset);
    }

    #[test]
    fn a_drop_that_is_not_a_wrap_is_a_reset_with_a_new_baseline() {
        // Meter replaced: 5,000,000 Wh → 10 Wh, then it counts on from 10.
        let c = run(&[s(1.0, 5_000_000.0), s(2.0, 10.0), s(16.0, 60.0)]);
        assert_eq!(c.intervals[0].import_wh, 50.0 * 13.0 / 14.0);
        assert!(c.intervals[0].counter_reset);
        assert!(close(c.intervals.iter().map(|i| i.import_wh).sum::<f64>(), 50.0));
        // Near the top but an implausible jump: also a reset, not a wrap.
        let c = run(&[s(1.0, WRAP_WH - 100.0), s(2.0, 0.05 * WRAP_WH)]);
        assert!(c.intervals[0].counter_reset);
        assert_eq!(c.intervals[0].import_wh, 0.0);
    }

    #[test]
    fn a_gap_is_spread_and_flagged_estimated() {
        // 10:14 → 11:01: one hour of data missing, 470 Wh spread over 47 minutes.
        let c = run(&[s(14.0, 0.0), s(61.0, 470.0), s(62.0, 480.0)]);
        let energy: Vec<f64> = c.intervals.iter().map(|i| i.import_wh).collect();
        assert_eq!(c.intervals.len(), 5);
        assert!(close(energy[0], 10.0) && close(energy[1], 150.0) && close(energy[3], 150.0));
        assert!(close(energy[4], 20.0));
        assert!(c.intervals.iter().all(|i| i.estimated));
        assert_eq!(c.intervals.iter().map(|i| i.samples).collect::<Vec<_>>(), vec![1, 0, 0, 0, 2]);
        // A step inside adjacent intervals is measured, not estimated.
        assert!(run(&[s(14.0, 0.0), s(16.0, 2.0)]).intervals.iter().all(|i| !i.estimated));
    }

    #[test]
    fn a_counter_absent_for_longer_than_the_hold_starts_a_new_baseline() {
        let mut samples = vec![s(0.0, 100.0)];
        for h in 1..=30 {
            let mut x = s(h as f64 * 60.0, 0.0);
            x.counters = [None; CHANNELS];
            samples.push(x);
        }
        samples.push(s(31.0 * 60.0, 900.0));
        samples.push(s(31.0 * 60.0 + 1.0, 910.0));
        let c = run(&samples);
        let total: f64 = c.intervals.iter().map(|i| i.import_wh).sum();
        assert_eq!(total, 10.0);
        assert!(c.intervals.iter().any(|i| i.counter_reset));
    }

    #[test]
    fn the_next_run_starts_at_the_interval_holding_the_last_reading() {
        let c = run(&[s(1.0, 0.0), s(16.0, 10.0), s(31.0, 20.0)]);
        assert_eq!(c.next.from, t0() + INTERVAL * 2);
        assert_eq!(c.next.channels[IMPORT].last.unwrap().value, 10.0);
        // Observations before the start are refused.
        let err = compute(&c.next, &observations(&[s(1.0, 0.0)])).unwrap_err();
        assert!(matches!(err, InputError::BeforeStart { .. }), "{err}");
    }

    /// Random readings of one device: increasing times (sometimes with gaps), counters that
    /// mostly rise, sometimes wrap or reset, sometimes missing.
    fn readings(resets: bool) -> impl Strategy<Value = Vec<Sample>> {
        let step = (1i64..=240, 0u8..20, 0.0f64..5000.0, 0u8..10, any::<bool>());
        prop::collection::vec(step, 2..120).prop_map(move |steps| {
            let mut t = at(0.0);
            let mut values = [5e5, 1e4, WRAP_WH - 3e4, 2e5, 3e3];
            let mut out = Vec::new();
            for (i, (secs, gap, inc, missing, flip)) in steps.into_iter().enumerate() {
                // Usually a minute apart; sometimes hours (a gap).
                let seconds = if gap == 0 { secs * 600 } else { secs.min(90) };
                t += TimeDelta::seconds(seconds);
                let mut counters = [None; CHANNELS];
                for (c, v) in values.iter_mut().enumerate() {
                    *v += inc * (c + 1) as f64;
                    if *v >= WRAP_WH {
                        *v -= WRAP_WH;
                    }
                    if resets && flip && missing == 1 && c == i % CHANNELS {
                        *v = inc;
                    }
                    if missing != c as u8 + 2 {
                        counters[c] = Some(*v);
                    }
                }
                out.push(Sample { time: t, counters, p_total: Some(inc as f32), s_total: Some(inc as f32 * 2.0) });
            }
            out
        })
    }

    fn by_start(intervals: Vec<Interval>, into: &mut BTreeMap<DateTime<Utc>, Interval>) {
        for i in intervals {
            into.insert(i.start, i);
        }
    }

    /// An interval's energy per channel, in channel order (0 for an unknown one).
    fn channels_of(i: &Interval) -> [f64; CHANNELS] {
        let known = |x: Option<f64>| x.unwrap_or(0.0);
        [i.import_wh, i.export_wh, known(i.apparent_vah), known(i.reactive_import_varh), known(i.reactive_export_varh)]
    }

    fn same(a: &Interval, b: &Interval) -> bool {
        let optional = [
            (a.apparent_vah, b.apparent_vah),
            (a.reactive_import_varh, b.reactive_import_varh),
            (a.reactive_export_varh, b.reactive_export_varh),
        ];
        channels_of(a).iter().zip(channels_of(b)).all(|(x, y)| close(*x, y))
            && optional.iter().all(|(x, y)| x.is_some() == y.is_some())
            && (a.start, a.max_w, a.max_va, a.samples, a.estimated, a.counter_reset)
                == (b.start, b.max_w, b.max_va, b.samples, b.estimated, b.counter_reset)
    }

    #[test]
    fn an_implausible_rise_counts_nothing_and_is_recorded() {
        // The simulator's counter-wrap fault on a meter with history: 5 MWh, then a jump to just
        // below the wrap a minute later (98 GWh: ~5.9 TW), then on through the wrap.
        let c = run(&[s(1.0, 5e6), s(2.0, WRAP_WH - 1000.0), s(3.0, 500.0), s(4.0, 900.0)]);
        let total: f64 = c.intervals.iter().map(|i| i.import_wh).sum();
        assert!(close(total, 1000.0 + 500.0 + 400.0), "only the wrap and the steps after it: {total}");
        assert!(c.intervals[0].counter_reset);
        assert_eq!(c.anomalies.len(), 1);
        let a = c.anomalies[0];
        assert_eq!((a.kind, a.channel, a.point.value), (AnomalyKind::ImplausibleRise, IMPORT, WRAP_WH - 1000.0));
        assert!(a.describe().contains("above the plausible 100 MW"), "{}", a.describe());
    }

    #[test]
    fn a_gap_longer_than_a_week_is_not_spread() {
        // Two counter readings ten years apart made 350,593 estimated intervals.
        let later = t0() + TimeDelta::days(3653);
        let mut late = s(0.0, 9e9);
        late.time = later;
        let c = run(&[s(1.0, 1000.0), late]);
        assert!(c.intervals.len() <= 2, "{} intervals", c.intervals.len());
        assert!(c.intervals.iter().all(|i| i.import_wh == 0.0));
        assert_eq!(c.anomalies.iter().map(|a| a.kind).collect::<Vec<_>>(), [AnomalyKind::GapTooLong]);
        // Up to a week is a gap spread over its intervals, as before.
        let mut week = s(0.0, 1000.0 + 7.0 * 24.0 * 1000.0);
        week.time = t0() + TimeDelta::days(7);
        let c = run(&[s(0.0, 1000.0), week]);
        assert!(c.anomalies.is_empty() && close(c.intervals.iter().map(|i| i.import_wh).sum(), 168_000.0));
    }

    #[test]
    fn impossible_values_are_ignored_and_the_baseline_kept() {
        for bad in [1e300, 1e35, -5.0, MAX_COUNTER * 1.5] {
            let c = run(&[s(1.0, 1000.0), s(2.0, bad), s(3.0, 1100.0)]);
            let total: f64 = c.intervals.iter().map(|i| i.import_wh).sum();
            assert_eq!(total, 100.0, "{bad}: the step around it counts");
            assert_eq!(c.anomalies.len(), 1, "{bad}");
            assert_eq!(c.anomalies[0].kind, AnomalyKind::ImplausibleValue);
        }
    }

    /// Any values at all, hostile ones included, at any times over twenty years.
    fn hostile() -> impl Strategy<Value = Vec<Sample>> {
        let value = prop_oneof![
            4 => 0.0f64..1e9,
            1 => prop::num::f64::ANY,
            1 => Just(1e300),
            1 => Just(WRAP_WH - 1.0),
            1 => -1e12f64..0.0,
        ];
        let step = (prop_oneof![8 => 1i64..3600, 1 => 3600i64..(20 * 365 * 86_400)], value);
        prop::collection::vec(step, 2..60).prop_map(|steps| {
            let mut t = at(0.0);
            steps
                .into_iter()
                .map(|(secs, v)| {
                    t += TimeDelta::seconds(secs);
                    Sample { time: t, counters: [Some(v), None, None, None, None], p_total: None, s_total: None }
                })
                .collect()
        })
    }

    proptest! {
        /// Hostile input never poisons a figure: every interval's energy is finite, not negative,
        /// within what a plausible power delivers in 15 minutes, and the intervals are few.
        #[test]
        fn hostile_counters_give_bounded_energy(samples in hostile()) {
            let c = run(&samples);
            let most = MAX_PLAUSIBLE_W * 0.25 * (1.0 + 1e-9);
            for i in &c.intervals {
                prop_assert!(i.import_wh.is_finite() && i.import_wh >= 0.0 && i.import_wh <= most, "{i:?}");
            }
            let per_step = (MAX_SPREAD.num_minutes() / 15 + 2) as usize;
            prop_assert!(c.intervals.len() <= samples.len() * per_step, "{} intervals", c.intervals.len());
        }

        #[test]
        fn energy_adds_up_to_the_counters_last_minus_first(samples in readings(false)) {
            let c = run(&samples);
            for ch in 0..CHANNELS {
                let points: Vec<f64> = samples.iter().filter_map(|s| s.counters[ch]).collect();
                let Some((first, last)) = points.first().zip(points.last()) else { continue };
                // Undo the wraps: each one is one full range.
                let wraps = points.windows(2).filter(|w| w[1] < w[0]).count() as f64;
                let metered = last - first + wraps * WRAP_WH;
                let total: f64 = c.intervals.iter().map(|i| channels_of(i)[ch]).sum();
                // A counter absent for longer than HOLD restarts its baseline: skip those cases.
                if c.intervals.iter().all(|i| !i.counter_reset) {
                    prop_assert!(close(total, metered), "channel {ch}: {total} != {metered}");
                }
            }
            prop_assert_eq!(c.intervals.iter().map(|i| i.samples as usize).sum::<usize>(), samples.len());
        }

        #[test]
        fn energy_is_never_negative(samples in readings(true)) {
            for i in run(&samples).intervals {
                prop_assert!(channels_of(&i).iter().all(|e| *e >= 0.0));
            }
        }

        #[test]
        fn a_run_split_anywhere_gives_the_same_intervals_as_one_pass(samples in readings(true), cut in 1usize..200) {
            let cut = cut.min(samples.len());
            let start = State::start(samples[0].time);
            let whole = compute(&start, &observations(&samples)).unwrap();
            let first = compute(&start, &observations(&samples[..cut])).unwrap();
            let rest: Vec<Sample> = samples.iter().filter(|s| s.time >= first.next.from).cloned().collect();
            let second = compute(&first.next, &observations(&rest)).unwrap();
            let mut split = BTreeMap::new();
            by_start(first.intervals, &mut split);
            by_start(second.intervals, &mut split);
            let mut one = BTreeMap::new();
            by_start(whole.intervals, &mut one);
            prop_assert_eq!(split.len(), one.len());
            for (a, b) in split.values().zip(one.values()) {
                prop_assert!(same(a, b), "{a:?} != {b:?}");
            }
            prop_assert_eq!(second.next, whole.next);
        }

        /// The rollup's carry: an interval's summaries before and after any reading inside it
        /// join into the summary of the whole interval, and refuse exactly when a counter drops
        /// inside it (then the run reads every point of the interval instead).
        #[test]
        fn summaries_split_at_any_reading_join_into_the_whole(samples in readings(true), cut in 1usize..200) {
            let cut = cut.min(samples.len() - 1);
            let (before, after) = (observations(&samples[..cut]), observations(&samples[cut..]));
            let (Some(a), Some(b)) = (before.last(), after.first()) else {
                return Err(TestCaseError::fail("both parts have readings"));
            };
            if a.start != b.start || !is_summary(a) || !is_summary(b) {
                return Ok(()); // a split between intervals, or a part the SQL would hand over point by point
            }
            let whole = observations(&samples);
            let interval = whole.iter().find(|o| o.start == a.start).unwrap();
            match join(a, b) {
                Some(joined) => prop_assert_eq!(&joined, interval),
                None => prop_assert!(!is_summary(interval), "refused a join without a drop: {a:?} {b:?}"),
            }
        }
    }
}
