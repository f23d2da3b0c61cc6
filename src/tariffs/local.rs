//! Local time: billing periods are local calendar days of the site's IANA zone, turned into UTC
//! instants here and nowhere else. A local day is 23, 24 or 25 hours long (92, 96 or 100
//! intervals), so durations are always computed from the two UTC instants, never assumed.

use chrono::{DateTime, Datelike, Duration, Months, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

pub const INTERVAL_MINUTES: i64 = 15;

/// Local days `start..end` (end exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub start: NaiveDate,
    pub end: NaiveDate,
}

impl Period {
    /// The billing period that begins in `year`-`month` on `read_day` (1: the calendar month;
    /// 15: the 15th to the 14th of the next month). Days past a short month's end clamp to it.
    pub fn month(year: i32, month: u32, read_day: u32) -> Option<Period> {
        let first = NaiveDate::from_ymd_opt(year, month, 1)?;
        let start = clamp_day(first, read_day);
        let next = first.checked_add_months(Months::new(1))?;
        Some(Period { start, end: clamp_day(next, read_day) })
    }

    /// The billing period containing `date`.
    pub fn containing(date: NaiveDate, read_day: u32) -> Option<Period> {
        let this = Period::month(date.year(), date.month(), read_day)?;
        if date >= this.start {
            return Some(this);
        }
        let prev = date.with_day(1)?.checked_sub_months(Months::new(1))?;
        Period::month(prev.year(), prev.month(), read_day)
    }

    /// The last day (inclusive), as a bill shows the period.
    pub fn last_day(&self) -> NaiveDate {
        self.end.pred_opt().unwrap_or(self.end)
    }

    pub fn days(&self) -> i64 {
        (self.end - self.start).num_days()
    }

    pub fn utc(&self, tz: Tz) -> (DateTime<Utc>, DateTime<Utc>) {
        (local_midnight(tz, self.start), local_midnight(tz, self.end))
    }

    /// 15-minute intervals in the period: 2 976 for a 31-day month, 2 972 for a March in London.
    pub fn intervals(&self, tz: Tz) -> i64 {
        let (a, b) = self.utc(tz);
        (b - a).num_minutes() / INTERVAL_MINUTES
    }

    pub fn contains(&self, d: NaiveDate) -> bool {
        self.start <= d && d < self.end
    }
}

fn clamp_day(first_of_month: NaiveDate, day: u32) -> NaiveDate {
    let mut d = day.clamp(1, 31);
    loop {
        if let Some(date) = first_of_month.with_day(d) {
            return date;
        }
        d -= 1;
    }
}

/// The instant a local day starts. Where midnight does not exist (a zone that springs forward
/// at 00:00) the day starts at the first local time that does; where it exists twice, the first.
pub fn local_midnight(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    let mut t = date.and_time(NaiveTime::MIN);
    for _ in 0..(24 * 60 / INTERVAL_MINUTES) {
        if let Some(instant) = tz.from_local_datetime(&t).earliest() {
            return instant.with_timezone(&Utc);
        }
        t += Duration::minutes(INTERVAL_MINUTES);
    }
    // No zone skips a whole day's quarter hours; UTC midnight keeps the arithmetic total.
    Utc.from_utc_datetime(&date.and_time(NaiveTime::MIN))
}

/// Hours in a local day (23, 24 or 25 around DST changes).
pub fn day_hours(tz: Tz, date: NaiveDate) -> f64 {
    let next = date.succ_opt().unwrap_or(date);
    (local_midnight(tz, next) - local_midnight(tz, date)).num_minutes() as f64 / 60.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn london_has_23_and_25_hour_days_johannesburg_does_not() {
        let london: Tz = "Europe/London".parse().unwrap();
        let joburg: Tz = "Africa/Johannesburg".parse().unwrap();
        assert_eq!(day_hours(london, d(2026, 3, 29)), 23.0);
        assert_eq!(day_hours(london, d(2026, 10, 25)), 25.0);
        assert_eq!(day_hours(london, d(2026, 6, 1)), 24.0);
        assert_eq!(day_hours(joburg, d(2026, 3, 29)), 24.0);
        assert_eq!(day_hours(joburg, d(2026, 10, 25)), 24.0);
        assert_eq!(Period::month(2026, 3, 1).unwrap().intervals(london), 31 * 96 - 4);
        assert_eq!(Period::month(2026, 10, 1).unwrap().intervals(london), 31 * 96 + 4);
        assert_eq!(Period::month(2026, 3, 1).unwrap().intervals(joburg), 31 * 96);
        assert_eq!(local_midnight(joburg, d(2026, 6, 1)).to_rfc3339(), "2026-05-31T22:00:00+00:00");
    }

    #[test]
    fn a_zone_without_midnight_starts_the_day_at_its_first_hour() {
        // Santiago springs forward at 00:00 (2026-09-06): the day starts at 01:00 local.
        let santiago: Tz = "America/Santiago".parse().unwrap();
        assert_eq!(local_midnight(santiago, d(2026, 9, 6)).to_rfc3339(), "2026-09-06T04:00:00+00:00");
    }

    #[test]
    fn meter_read_days_make_periods() {
        let p = Period::month(2026, 1, 15).unwrap();
        assert_eq!((p.start, p.end, p.days()), (d(2026, 1, 15), d(2026, 2, 15), 31));
        let p = Period::month(2026, 1, 31).unwrap();
        assert_eq!((p.start, p.end), (d(2026, 1, 31), d(2026, 2, 28)));
        assert_eq!(Period::containing(d(2026, 2, 3), 15).unwrap().start, d(2026, 1, 15));
        assert_eq!(Period::containing(d(2026, 2, 20), 15).unwrap().start, d(2026, 2, 15));
        assert_eq!(Period::containing(d(2026, 2, 20), 1).unwrap(), Period::month(2026, 2, 1).unwrap());
    }
}
