//! How the device pages show what a meter measured: quantities with units at a sensible
//! precision, and a device's status. Pure functions (the charts are in `dashboards`).

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;

use crate::measurements::queries::StoredReading as Reading;

/// Groups thousands with a narrow no-break space (the SI style; never a decimal comma).
pub fn grouped(value: f64, decimals: usize) -> String {
    let mut out = group_thousands(&format!("{:.*}", decimals, value.abs()), '\u{202f}');
    // No "-0.0": a value that rounds to zero has no sign.
    if value < 0.0 && out.chars().any(|c| c.is_ascii_digit() && c != '0') {
        out.insert(0, '-');
    }
    out
}

/// An unsigned decimal number's text (`1234567.5`) with `separator` between its integer digits'
/// thousands (`1,234,567.5`).
pub fn group_thousands(text: &str, separator: char) -> String {
    let (int, frac) = text.split_once('.').map_or((text, None), |(i, f)| (i, Some(f)));
    let mut out = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(separator);
        }
        out.push(c);
    }
    if let Some(frac) = frac {
        out.push('.');
        out.push_str(frac);
    }
    out
}

/// A value in SI units with its unit, e.g. `230.4 V`, `12.35 kW`, `1 234.6 kWh`, `0.985` (PF).
pub fn format_quantity(value: f64, unit: &str) -> String {
    if !value.is_finite() {
        return "–".into();
    }
    match unit {
        "V" => format!("{} V", grouped(value, 1)),
        "A" => format!("{} A", grouped(value, 2)),
        "Hz" => format!("{} Hz", grouped(value, 2)),
        "" => grouped(value, 3),
        "W" | "var" | "VA" => {
            let magnitude = value.abs();
            if magnitude < 1e3 {
                format!("{} {unit}", grouped(value, 0))
            } else if magnitude < 1e6 {
                format!("{} k{unit}", grouped(value / 1e3, 2))
            } else {
                format!("{} M{unit}", grouped(value / 1e6, 3))
            }
        }
        // Cumulative counters read as bills do: in kWh (kvarh, kVAh), to the tenth.
        "Wh" | "varh" | "VAh" => format!("{} k{unit}", grouped(value / 1e3, 1)),
        _ => format!("{} {unit}", grouped(value, 2)),
    }
}

fn cell(reading: &Reading, column: &str, unit: &str) -> String {
    reading.get(column).map_or_else(|| "–".into(), |v| format_quantity(v, unit))
}

/// A row of the per-phase table: label and L1, L2, L3, total (or neutral) cells.
pub struct PhaseRow {
    pub label: &'static str,
    pub cells: [String; 4],
}

/// A single quantity: label and formatted value.
pub struct Single {
    pub label: &'static str,
    pub value: String,
}

pub struct ReadingView {
    pub at: String,
    pub phases: Vec<PhaseRow>,
    pub singles: Vec<Single>,
}

const PHASE_ROWS: [(&str, [&str; 4], &str); 7] = [
    ("Voltage, line to neutral", ["V1", "V2", "V3", ""], "V"),
    ("Voltage, line to line (L1-L2, L2-L3, L3-L1)", ["V12", "V23", "V31", ""], "V"),
    ("Current (total column: neutral)", ["I1", "I2", "I3", "IN"], "A"),
    ("Active power", ["P1", "P2", "P3", "PTotal"], "W"),
    ("Reactive power", ["Q1", "Q2", "Q3", "QTotal"], "var"),
    ("Apparent power", ["S1", "S2", "S3", "STotal"], "VA"),
    ("Power factor", ["PF1", "PF2", "PF3", "PFTotal"], ""),
];

const SINGLES: [(&str, &str, &str); 9] = [
    ("Frequency", "Frequency", "Hz"),
    ("Demand, active", "DemandW", "W"),
    ("Demand, reactive", "DemandVar", "var"),
    ("Demand, apparent", "DemandVA", "VA"),
    ("Active energy imported", "EnergyImportWh", "Wh"),
    ("Active energy exported", "EnergyExportWh", "Wh"),
    ("Reactive energy imported", "ReactiveImportVarh", "varh"),
    ("Reactive energy exported", "ReactiveExportVarh", "varh"),
    ("Apparent energy", "ApparentVAh", "VAh"),
];

pub fn reading_view(reading: &Reading, tz: Tz) -> ReadingView {
    let phases = PHASE_ROWS
        .iter()
        .map(|(label, columns, unit)| PhaseRow {
            label,
            cells: columns.map(|c| if c.is_empty() { String::new() } else { cell(reading, c, unit) }),
        })
        .collect();
    let singles =
        SINGLES.iter().map(|(label, column, unit)| Single { label, value: cell(reading, column, unit) }).collect();
    ReadingView { at: local_time(reading.time, tz), phases, singles }
}

pub fn local_time(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S %Z").to_string()
}

// ---------------------------------------------------------------- status

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Disabled,
    NoReadings,
    Online,
    /// No reading for a while.
    Offline,
    /// The poller's last attempt failed (after the newest reading).
    Failing,
}

impl Status {
    pub fn label(&self) -> &'static str {
        match self {
            Status::Disabled => "Disabled",
            Status::NoReadings => "No readings yet",
            Status::Online => "Online",
            Status::Offline => "Offline",
            Status::Failing => "Error",
        }
    }

    /// The `state` label of `tau_portal_devices` (src/metrics.rs).
    pub fn key(&self) -> &'static str {
        match self {
            Status::Disabled => "disabled",
            Status::NoReadings => "no_readings",
            Status::Online => "online",
            Status::Offline => "offline",
            Status::Failing => "failing",
        }
    }

    pub const KEYS: [&'static str; 5] = ["online", "offline", "failing", "no_readings", "disabled"];

    /// The badge class (see `.badge` in app.css).
    pub fn class(&self) -> &'static str {
        match self {
            Status::Online => "on",
            Status::Offline | Status::Failing => "off",
            Status::Disabled | Status::NoReadings => "",
        }
    }
}

/// A device is online while readings keep arriving: the newest is at most three poll intervals
/// (and at least five minutes, for pushed data that arrives in batches) old. It is failing
/// while the poller's latest polls failed, or when its last error is newer than its last reading.
pub fn status(
    enabled: bool,
    last_reading: Option<DateTime<Utc>>,
    last_error: Option<DateTime<Utc>>,
    consecutive_failures: i32,
    poll_interval_seconds: i32,
    now: DateTime<Utc>,
) -> Status {
    if !enabled {
        return Status::Disabled;
    }
    if consecutive_failures > 0 {
        return Status::Failing;
    }
    if let Some(error) = last_error
        && last_reading.is_none_or(|r| error > r)
    {
        return Status::Failing;
    }
    let Some(last) = last_reading else { return Status::NoReadings };
    let grace = TimeDelta::seconds(i64::from(poll_interval_seconds) * 3).max(TimeDelta::minutes(5));
    if now - last <= grace { Status::Online } else { Status::Offline }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_have_units_and_sensible_precision() {
        let cases = [
            (230.44, "V", "230.4 V"),
            (12.345, "A", "12.35 A"),
            (50.004, "Hz", "50.00 Hz"),
            (0.98456, "", "0.985"),
            (-0.5, "", "-0.500"),
            (850.4, "W", "850 W"),
            (12_345.0, "W", "12.35 kW"),
            (-1_500.0, "var", "-1.50 kvar"),
            (2_345_678.0, "VA", "2.346 MVA"),
            (12_345_678.0, "Wh", "12\u{202f}345.7 kWh"),
            (999.0, "varh", "1.0 kvarh"),
            (-0.0001, "V", "0.0 V"),
            (f64::NAN, "W", "–"),
        ];
        for (value, unit, expected) in cases {
            assert_eq!(format_quantity(value, unit), expected, "{value} {unit}");
        }
    }

    #[test]
    fn status_follows_readings_errors_and_the_poll_interval() {
        let now = DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z").unwrap().to_utc();
        let ago = |s: i64| Some(now - TimeDelta::seconds(s));
        assert_eq!(status(false, ago(1), None, 0, 60, now), Status::Disabled);
        assert_eq!(status(true, None, None, 0, 60, now), Status::NoReadings);
        assert_eq!(status(true, ago(170), None, 0, 60, now), Status::Online);
        assert_eq!(status(true, ago(299), None, 0, 1, now), Status::Online, "at least five minutes of grace");
        assert_eq!(status(true, ago(301), None, 0, 1, now), Status::Offline);
        assert_eq!(status(true, ago(3 * 600 + 1), None, 0, 600, now), Status::Offline);
        assert_eq!(status(true, ago(60), ago(30), 0, 60, now), Status::Failing, "an error after the newest reading");
        assert_eq!(status(true, ago(30), ago(60), 0, 60, now), Status::Online, "a reading after the error");
        assert_eq!(status(true, None, ago(60), 0, 60, now), Status::Failing);
        assert_eq!(status(true, ago(1), ago(60), 2, 60, now), Status::Failing, "the poller's latest polls failed");
    }
}
