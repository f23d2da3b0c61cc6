//! Charts as inline SVG, for pages without JavaScript (and the first paint before the chart
//! library takes over): lines in a fixed view box, a gap in the data breaks a line. Pure.

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;

use crate::sites::readings::format_quantity;

pub const WIDTH: f64 = 720.0;
pub const HEIGHT: f64 = 200.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = WIDTH - 10.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = HEIGHT - 24.0;

/// A line chart in the `0 0 WIDTH HEIGHT` view box.
pub struct Chart {
    /// Per series (e.g. V1, V2, V3), the `points` attributes of its polylines.
    pub lines: Vec<Vec<String>>,
    pub top_label: String,
    pub bottom_label: String,
    /// The y of the zero line, when zero is not the bottom edge (export shows below it).
    pub zero_y: Option<String>,
    pub start_label: String,
    pub end_label: String,
    pub left: f64,
    pub right: f64,
    pub top: f64,
    pub bottom: f64,
    pub width: f64,
    pub height: f64,
}

/// Lays out `series` (bucket start, value in `unit`) between `from` and `to`; `None` without
/// data. A bucket further than two `bucket`s from the previous one starts a new line.
pub fn line_chart(
    series: &[Vec<(DateTime<Utc>, f64)>],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    bucket: TimeDelta,
    tz: Tz,
    unit: &str,
) -> Option<Chart> {
    let values = series.iter().flatten().map(|(_, v)| *v).filter(|v| v.is_finite());
    let (lo, hi) = values.fold(None, |acc: Option<(f64, f64)>, v| match acc {
        // Power and current charts include zero; voltage and frequency zoom to their band.
        None if unit == "V" || unit == "Hz" => Some((v, v)),
        None => Some((v.min(0.0), v.max(0.0))),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })?;
    let hi = if hi > lo { hi } else { lo + 1.0 };
    let span_ms = (to - from).num_milliseconds().max(1) as f64;
    let x = |t: DateTime<Utc>| LEFT + (RIGHT - LEFT) * ((t - from).num_milliseconds() as f64 / span_ms).clamp(0.0, 1.0);
    let y = |v: f64| BOTTOM - (BOTTOM - TOP) * (v - lo) / (hi - lo);
    let flush = |run: &mut Vec<(f64, f64)>, lines: &mut Vec<String>| {
        // A lone point would draw nothing: give it a short horizontal tick.
        if let [(px, py)] = run[..] {
            *run = vec![(px - 1.5, py), (px + 1.5, py)];
        }
        if !run.is_empty() {
            lines.push(run.iter().map(|(px, py)| format!("{px:.1},{py:.1}")).collect::<Vec<_>>().join(" "));
        }
        run.clear();
    };
    let lines = series
        .iter()
        .map(|points| {
            let mut lines = Vec::new();
            let mut run: Vec<(f64, f64)> = Vec::new();
            let mut previous: Option<DateTime<Utc>> = None;
            for (t, v) in points.iter().filter(|(_, v)| v.is_finite()) {
                if previous.is_some_and(|p| *t - p > bucket * 2) {
                    flush(&mut run, &mut lines);
                }
                run.push((x(*t), y(*v)));
                previous = Some(*t);
            }
            flush(&mut run, &mut lines);
            lines
        })
        .collect();
    let format = if to - from > TimeDelta::days(2) { "%d %b %Y" } else { "%a %H:%M" };
    let time = |t: DateTime<Utc>| t.with_timezone(&tz).format(format).to_string();
    Some(Chart {
        lines,
        top_label: format_quantity(hi, unit),
        bottom_label: format_quantity(lo, unit),
        zero_y: (lo < 0.0 && hi > 0.0).then(|| format!("{:.1}", y(0.0))),
        start_label: time(from),
        end_label: time(to),
        left: LEFT,
        right: RIGHT,
        top: TOP,
        bottom: BOTTOM,
        width: WIDTH,
        height: HEIGHT,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_scales_into_the_view_box_and_breaks_at_gaps() {
        let from = DateTime::parse_from_rfc3339("2026-11-23T00:00:00Z").unwrap().to_utc();
        let to = from + TimeDelta::hours(24);
        let bucket = TimeDelta::minutes(5);
        let at = |m: i64| from + TimeDelta::minutes(m);
        let series = vec![vec![(at(0), 1000.0), (at(5), 2000.0), (at(10), 1500.0), (at(60), -500.0)]];
        let chart = line_chart(&series, from, to, bucket, chrono_tz::UTC, "W").unwrap();
        let lines = &chart.lines[0];
        assert_eq!(lines.len(), 2, "the hour without data splits the line: {lines:?}");
        assert_eq!(lines[0].split(' ').count(), 3);
        let first: Vec<f64> = lines[0].split([' ', ',']).map(|n| n.parse().unwrap()).collect();
        assert_eq!((first[0], first[3]), (LEFT, TOP), "the first point is at the left, the maximum at the top");
        assert_eq!(lines[1].split(' ').count(), 2, "a lone point becomes a short tick");
        assert!(lines[1].ends_with(&format!(",{BOTTOM:.1}")), "the minimum at the bottom: {}", lines[1]);
        assert_eq!((chart.top_label.as_str(), chart.bottom_label.as_str()), ("2.00 kW", "-500 W"));
        assert!(chart.zero_y.is_some());
        assert_eq!((chart.start_label.as_str(), chart.end_label.as_str()), ("Mon 00:00", "Tue 00:00"));
        assert!(line_chart(&[vec![]], from, to, bucket, chrono_tz::UTC, "W").is_none());
        let flat = line_chart(&[vec![(at(0), 0.0), (at(5), 0.0)]], from, to, bucket, chrono_tz::UTC, "W").unwrap();
        assert!(flat.lines[0][0].ends_with(&format!(",{BOTTOM:.1}")) && flat.zero_y.is_none());
    }

    #[test]
    fn voltage_zooms_to_its_band_and_phases_are_separate_lines() {
        let from = DateTime::parse_from_rfc3339("2026-11-23T00:00:00Z").unwrap().to_utc();
        let to = from + TimeDelta::days(30);
        let series: Vec<Vec<_>> =
            [229.0, 230.0, 231.0].iter().map(|v| vec![(from, *v), (from + TimeDelta::hours(1), *v)]).collect();
        let chart = line_chart(&series, from, to, TimeDelta::hours(1), chrono_tz::UTC, "V").unwrap();
        assert_eq!(chart.lines.len(), 3);
        assert_eq!((chart.bottom_label.as_str(), chart.top_label.as_str()), ("229.0 V", "231.0 V"));
        assert_eq!(chart.start_label, "23 Nov 2026", "dates on ranges over two days");
    }
}
