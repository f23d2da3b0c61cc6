//! What a device chart shows: which stored quantity, over which range, in which buckets. Pure
//! functions; the site's time zone decides what "a day" is, so a day bucket of the spring DST
//! change holds 23 hours of readings and one of the autumn change 25.

use chrono::{DateTime, Datelike, Days, NaiveDate, TimeDelta, Utc};
use chrono_tz::Tz;

/// A chartable quantity: its query key, label, unit and stored columns (one per line drawn).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    pub key: &'static str,
    pub label: &'static str,
    /// The SI unit of the stored values (`format_quantity` scales W to kW etc.).
    pub unit: &'static str,
    pub columns: &'static [&'static str],
}

pub const QUANTITIES: [Quantity; 7] = [
    Quantity { key: "p", label: "Active power", unit: "W", columns: &["PTotal"] },
    Quantity { key: "q", label: "Reactive power", unit: "var", columns: &["QTotal"] },
    Quantity { key: "s", label: "Apparent power", unit: "VA", columns: &["STotal"] },
    Quantity { key: "v", label: "Voltage, line to neutral", unit: "V", columns: &["V1", "V2", "V3"] },
    Quantity { key: "i", label: "Current", unit: "A", columns: &["I1", "I2", "I3"] },
    Quantity { key: "pf", label: "Power factor", unit: "", columns: &["PFTotal"] },
    Quantity { key: "hz", label: "Frequency", unit: "Hz", columns: &["Frequency"] },
];

/// Every column any chart reads (what the hourly rollup keeps), in a fixed order.
pub const CHART_COLUMNS: [&str; 11] =
    ["PTotal", "QTotal", "STotal", "V1", "V2", "V3", "I1", "I2", "I3", "PFTotal", "Frequency"];

pub fn quantity(key: Option<&str>) -> Quantity {
    QUANTITIES.iter().copied().find(|q| Some(q.key) == key).unwrap_or(QUANTITIES[0])
}

/// The preset ranges, ending now; `Custom` is a span of whole local days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    Day,
    Week,
    Month,
    Year,
    Custom,
}

pub const PRESETS: [(Preset, &str, &str); 4] = [
    (Preset::Day, "24h", "24 hours"),
    (Preset::Week, "7d", "7 days"),
    (Preset::Month, "30d", "30 days"),
    (Preset::Year, "1y", "1 year"),
];

/// How readings are grouped: fixed widths aligned to UTC (a UTC hour is a local hour in every
/// whole-hour zone, across DST changes too), or the site's local calendar days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Fixed(TimeDelta),
    LocalDay,
}

impl Bucket {
    /// The width in seconds for fixed buckets (what the JSON tells the chart about gaps).
    pub fn nominal_seconds(self) -> i64 {
        match self {
            Bucket::Fixed(w) => w.num_seconds(),
            Bucket::LocalDay => 86_400,
        }
    }

    pub fn label(self) -> String {
        match self {
            Bucket::LocalDay => "day".into(),
            Bucket::Fixed(w) if w.num_seconds() % 3600 == 0 => match w.num_hours() {
                1 => "hour".into(),
                h => format!("{h} hours"),
            },
            Bucket::Fixed(w) => format!("{} minutes", w.num_minutes()),
        }
    }
}

/// The bucket for a span: at most ~720 points, never finer than 1 minute (the meters' usual
/// interval). Spans over 45 days are drawn per local day.
pub fn bucket_for(span: TimeDelta) -> Bucket {
    let widths = [1, 5, 15, 30, 60].map(TimeDelta::minutes);
    let limit = 720;
    for w in widths {
        if span.num_seconds() / w.num_seconds() <= limit {
            return Bucket::Fixed(w);
        }
    }
    if span <= TimeDelta::days(45) { Bucket::Fixed(TimeDelta::hours(1)) } else { Bucket::LocalDay }
}

/// The UTC instant a local calendar day starts in `tz` (the tariffs' definition: the first
/// local time of that date that exists).
pub fn local_day_start(date: NaiveDate, tz: Tz) -> DateTime<Utc> {
    crate::tariffs::local::local_midnight(tz, date)
}

/// A chart's time range, resolved to UTC instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub preset: Preset,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub bucket: Bucket,
}

/// Why a custom range was refused (shown beside the date picker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeError(pub &'static str);

/// Longest custom range (five years of day buckets is 1 827 points).
const MAX_CUSTOM_DAYS: u64 = 5 * 366;

/// The range a request asks for: a preset (default 24 h) ending `now`, or `from`..=`to` as local
/// dates (`YYYY-MM-DD`, both days included), or `start`/`end` as instants in milliseconds (a
/// zoomed chart asks for finer data of what it shows).
pub fn resolve(
    range: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
    millis: Option<(i64, i64)>,
    now: DateTime<Utc>,
    tz: Tz,
) -> Result<Span, RangeError> {
    if let Some((start, end)) = millis {
        let (Some(from), Some(to)) = (DateTime::from_timestamp_millis(start), DateTime::from_timestamp_millis(end))
        else {
            return Err(RangeError("The zoomed range is not a valid time."));
        };
        if to <= from {
            return Err(RangeError("The zoomed range ends before it starts."));
        }
        let to = to.min(now.max(from + TimeDelta::minutes(1)));
        return Ok(Span { preset: Preset::Custom, from, to, bucket: bucket_for(to - from) });
    }
    let from_date = from.map(str::trim).filter(|s| !s.is_empty());
    let to_date = to.map(str::trim).filter(|s| !s.is_empty());
    if from_date.is_some() || to_date.is_some() {
        let parse = |s: Option<&str>, what: &'static str| {
            s.and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()).ok_or(RangeError(what))
        };
        let today = now.with_timezone(&tz).date_naive();
        let first = parse(from_date, "Enter the first day as a date (YYYY-MM-DD).")?;
        let last = match to_date {
            Some(_) => parse(to_date, "Enter the last day as a date (YYYY-MM-DD).")?,
            None => today,
        };
        if last < first {
            return Err(RangeError("The last day is before the first day."));
        }
        if first > today {
            return Err(RangeError("The first day is in the future: there are no readings yet."));
        }
        if (last - first).num_days() as u64 >= MAX_CUSTOM_DAYS {
            return Err(RangeError("Choose at most five years."));
        }
        let from = local_day_start(first, tz);
        let to = local_day_start(last.checked_add_days(Days::new(1)).unwrap_or(last), tz);
        let bucket = if (last - first).num_days() >= 45 { Bucket::LocalDay } else { bucket_for(to - from) };
        return Ok(Span { preset: Preset::Custom, from, to, bucket });
    }
    let (preset, span) = match range {
        Some("7d") => (Preset::Week, TimeDelta::days(7)),
        Some("30d") => (Preset::Month, TimeDelta::days(30)),
        Some("1y") => (Preset::Year, TimeDelta::days(365)),
        _ => (Preset::Day, TimeDelta::hours(24)),
    };
    let bucket = match preset {
        Preset::Day => Bucket::Fixed(TimeDelta::minutes(5)),
        Preset::Week => Bucket::Fixed(TimeDelta::minutes(30)),
        Preset::Month => Bucket::Fixed(TimeDelta::hours(1)),
        Preset::Year | Preset::Custom => Bucket::LocalDay,
    };
    let from = match bucket {
        // A year of days starts at a local midnight, so its first bucket is a whole day.
        Bucket::LocalDay => local_day_start((now - span).with_timezone(&tz).date_naive(), tz),
        // Hour buckets start on the hour, so the first one is whole (and read from the rollup).
        Bucket::Fixed(w) if w.num_seconds() % 3600 == 0 => {
            let start = (now - span).timestamp();
            DateTime::from_timestamp(start - start.rem_euclid(3600), 0).unwrap_or(now - span)
        }
        Bucket::Fixed(_) => now - span,
    };
    Ok(Span { preset, from, to: now, bucket })
}

/// The local date a UTC instant falls on, and the UTC start of that day.
pub fn day_of(t: DateTime<Utc>, tz: Tz) -> (NaiveDate, DateTime<Utc>) {
    let date = t.with_timezone(&tz).date_naive();
    (date, local_day_start(date, tz))
}

/// `2026-03-29` as the site writes it, for the date picker's values.
pub fn iso_date(t: DateTime<Utc>, tz: Tz) -> String {
    let d = t.with_timezone(&tz).date_naive();
    format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn presets_pick_their_buckets_and_end_now() {
        let now = utc("2026-11-23T12:34:00Z");
        let tz: Tz = "Europe/London".parse().unwrap();
        let day = resolve(None, None, None, None, now, tz).unwrap();
        assert_eq!((day.preset, day.from, day.to), (Preset::Day, now - TimeDelta::hours(24), now));
        assert_eq!(day.bucket, Bucket::Fixed(TimeDelta::minutes(5)));
        assert_eq!(
            resolve(Some("7d"), None, None, None, now, tz).unwrap().bucket,
            Bucket::Fixed(TimeDelta::minutes(30))
        );
        assert_eq!(resolve(Some("30d"), None, None, None, now, tz).unwrap().bucket, Bucket::Fixed(TimeDelta::hours(1)));
        let year = resolve(Some("1y"), None, None, None, now, tz).unwrap();
        assert_eq!(year.bucket, Bucket::LocalDay);
        assert_eq!(year.from, utc("2025-11-23T00:00:00Z"), "a year of days starts at a local midnight");
    }

    #[test]
    fn custom_ranges_are_whole_local_days_and_dst_days_have_23_and_25_hours() {
        let now = utc("2026-11-23T12:00:00Z");
        let tz: Tz = "Europe/London".parse().unwrap();
        let spring = resolve(None, Some("2026-03-29"), Some("2026-03-29"), None, now, tz).unwrap();
        assert_eq!((spring.from, spring.to), (utc("2026-03-29T00:00:00Z"), utc("2026-03-29T23:00:00Z")));
        assert_eq!(spring.to - spring.from, TimeDelta::hours(23));
        let autumn = resolve(None, Some("2026-10-25"), Some("2026-10-25"), None, now, tz).unwrap();
        assert_eq!((autumn.from, autumn.to), (utc("2026-10-24T23:00:00Z"), utc("2026-10-26T00:00:00Z")));
        assert_eq!(autumn.to - autumn.from, TimeDelta::hours(25));
        let long = resolve(None, Some("2026-01-01"), Some("2026-06-30"), None, now, tz).unwrap();
        assert_eq!(long.bucket, Bucket::LocalDay);
        let havana: Tz = "America/Havana".parse().unwrap();
        // Havana springs forward at midnight: 2026-03-08 starts at 01:00 local (05:00 UTC).
        assert_eq!(local_day_start(NaiveDate::from_ymd_opt(2026, 3, 8).unwrap(), havana), utc("2026-03-08T05:00:00Z"));
    }

    #[test]
    fn bad_custom_ranges_say_what_is_wrong() {
        let now = utc("2026-11-23T12:00:00Z");
        let tz = chrono_tz::UTC;
        let err = |f: &str, t: &str| resolve(None, Some(f), Some(t), None, now, tz).unwrap_err().0;
        assert!(err("2026-13-01", "2026-11-01").contains("first day"));
        assert!(err("2026-11-02", "2026-11-01").contains("before the first"));
        assert!(err("2027-01-01", "2027-01-02").contains("future"));
        assert!(err("2020-01-01", "2026-11-01").contains("five years"));
        let open = resolve(None, Some("2026-11-20"), None, None, now, tz).unwrap();
        assert_eq!(open.to, utc("2026-11-24T00:00:00Z"), "no last day: up to today");
        assert!(resolve(None, None, None, Some((10, 5)), now, tz).is_err());
    }

    #[test]
    fn zooming_asks_for_finer_buckets() {
        let now = utc("2026-11-23T12:00:00Z");
        let from = utc("2026-11-23T10:00:00Z").timestamp_millis();
        let zoom = resolve(None, None, None, Some((from, now.timestamp_millis())), now, chrono_tz::UTC).unwrap();
        assert_eq!(zoom.bucket, Bucket::Fixed(TimeDelta::minutes(1)));
        assert_eq!(bucket_for(TimeDelta::days(3)), Bucket::Fixed(TimeDelta::minutes(15)));
        assert_eq!(bucket_for(TimeDelta::days(60)), Bucket::LocalDay);
    }

    proptest! {
        /// Every local day is 23, 24 or 25 hours long and consecutive days tile time.
        #[test]
        fn local_days_tile_time(days in 0u64..3650, zone in 0usize..chrono_tz::TZ_VARIANTS.len()) {
            let tz = chrono_tz::TZ_VARIANTS[zone];
            let date = NaiveDate::from_ymd_opt(2020, 1, 1).unwrap() + Days::new(days);
            let start = local_day_start(date, tz);
            let end = local_day_start(date + Days::new(1), tz);
            let hours = (end - start).num_minutes();
            prop_assert!((21 * 60..=27 * 60).contains(&hours), "{tz} {date}: {hours} minutes");
            prop_assert_eq!(day_of(start, tz).0, date);
            prop_assert_eq!(day_of(end - TimeDelta::seconds(1), tz).0, date);
        }
    }
}
