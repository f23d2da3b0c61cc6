//! The site page's energy figures, as pure functions of what the energy door read: energy per
//! local day of a month and per month of a year (the buckets' bounds from here, their sums by
//! the database), and today's power against yesterday's from the site's 15-minute intervals.
//! Buckets are the site's local days, so the day of the spring DST change holds 23 hours of
//! intervals (92) and the autumn one 25 (100).

use chrono::{DateTime, Datelike, Months, NaiveDate, NaiveTime, TimeDelta, Utc};
use chrono_tz::Tz;

use crate::measurements::energy::{BucketEnergy, SiteInterval};
use crate::tariffs::local::{INTERVAL_MINUTES, local_midnight};

/// One bar: a local day or month, its first instant, and its imported energy (`None`: not
/// begun yet, so no bar rather than a zero one).
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub date: NaiveDate,
    pub start: DateTime<Utc>,
    pub kwh: Option<f64>,
    /// Intervals with data in it (a DST day has 92 or 100 of a full 96).
    pub intervals: u32,
}

/// The local buckets of a bar chart: each starts on one of `dates` (at the site's local
/// midnight) and runs to the next date, the last to `end`.
#[derive(Debug, Clone, PartialEq)]
pub struct Buckets {
    pub dates: Vec<NaiveDate>,
    /// `dates.len() + 1` instants: each bucket's start, then the last one's end. The database
    /// sums a site's energy between them (`energy::site_buckets`).
    pub bounds: Vec<DateTime<Utc>>,
}

impl Buckets {
    fn new(tz: Tz, dates: Vec<NaiveDate>, end: NaiveDate) -> Buckets {
        let bounds = dates.iter().chain([&end]).map(|d| local_midnight(tz, *d)).collect();
        Buckets { dates, bounds }
    }

    /// The local days of the month starting on `first` (a first of the month).
    pub fn days(tz: Tz, first: NaiveDate) -> Buckets {
        let end = first.checked_add_months(Months::new(1)).unwrap_or(first);
        Buckets::new(tz, first.iter_days().take_while(|d| *d < end).collect(), end)
    }

    /// The calendar months of `year`.
    pub fn months(tz: Tz, year: i32) -> Buckets {
        let dates = (1..=12).filter_map(|m| NaiveDate::from_ymd_opt(year, m, 1)).collect();
        Buckets::new(tz, dates, NaiveDate::from_ymd_opt(year + 1, 1, 1).unwrap_or(NaiveDate::MAX))
    }

    /// The bars from each bucket's summed energy (`sums[k]` is bucket `k`'s; missing ones are
    /// empty). Buckets starting after `now` have no value.
    pub fn bars(&self, now: DateTime<Utc>, sums: &[BucketEnergy]) -> Vec<Bar> {
        self.dates
            .iter()
            .zip(&self.bounds)
            .enumerate()
            .map(|(k, (date, start))| {
                let sum = sums.get(k).copied().unwrap_or_default();
                let begun = *start <= now || sum.intervals > 0;
                Bar { date: *date, start: *start, kwh: begun.then_some(sum.import_wh / 1e3), intervals: sum.intervals }
            })
            .collect()
    }
}

/// Today's average power per 15 minutes against yesterday's at the same local time of day.
#[derive(Debug, Clone, PartialEq)]
pub struct TodayYesterday {
    /// Today's interval starts (92, 96 or 100 of them).
    pub slots: Vec<DateTime<Utc>>,
    /// kW per slot: today's (up to now), yesterday's at the same wall-clock time.
    pub today_kw: Vec<Option<f64>>,
    pub yesterday_kw: Vec<Option<f64>>,
    pub today_kwh: f64,
    /// Yesterday up to the time of day it is now: what today's figure compares with.
    pub yesterday_same_time_kwh: f64,
    pub yesterday_kwh: f64,
}

/// Today against yesterday from the intervals of both days (others are ignored). Yesterday's
/// intervals are matched by local wall-clock time: across a DST change the hour that one of the
/// days lacks stays empty, and a repeated hour shows its first pass.
pub fn today_yesterday(tz: Tz, now: DateTime<Utc>, intervals: &[SiteInterval]) -> TodayYesterday {
    let today = now.with_timezone(&tz).date_naive();
    let yesterday = today.pred_opt().unwrap_or(today);
    let tomorrow = today.succ_opt().unwrap_or(today);
    let (y0, t0, t1) = (local_midnight(tz, yesterday), local_midnight(tz, today), local_midnight(tz, tomorrow));
    let step = TimeDelta::minutes(INTERVAL_MINUTES);
    let slots: Vec<DateTime<Utc>> =
        std::iter::successors(Some(t0), |t| Some(*t + step)).take_while(|t| *t < t1).collect();
    let kw = |i: &SiteInterval| i.import_wh * 4.0 / 1e3;
    let wall = |t: DateTime<Utc>| t.with_timezone(&tz).time();
    let mut today_kw = vec![None; slots.len()];
    let mut yesterday_kw = vec![None; slots.len()];
    let (mut today_kwh, mut yesterday_same_time_kwh, mut yesterday_kwh) = (0.0, 0.0, 0.0);
    let time_now = wall(now);
    for i in intervals {
        if t0 <= i.start && i.start < t1 && i.start < now {
            // The interval in progress counts towards today's energy but is not drawn: its
            // average over a part of 15 minutes would show as a drop in power.
            if let Ok(k) = slots.binary_search(&i.start)
                && i.start + step <= now
            {
                today_kw[k] = Some(kw(i));
            }
            today_kwh += i.import_wh / 1e3;
        } else if y0 <= i.start && i.start < t0 {
            yesterday_kwh += i.import_wh / 1e3;
            let at: NaiveTime = wall(i.start);
            if at < time_now {
                yesterday_same_time_kwh += i.import_wh / 1e3;
            }
            if let Some(k) = slots.iter().position(|s| wall(*s) == at)
                && yesterday_kw[k].is_none()
            {
                yesterday_kw[k] = Some(kw(i));
            }
        }
    }
    TodayYesterday { slots, today_kw, yesterday_kw, today_kwh, yesterday_same_time_kwh, yesterday_kwh }
}

/// The first of the month `YYYY-MM` names, or of `today`'s month when it names none.
pub fn month_of(query: Option<&str>, today: NaiveDate) -> Result<NaiveDate, &'static str> {
    let this = today.with_day(1).unwrap_or(today);
    match query.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(this),
        Some(s) => match NaiveDate::parse_from_str(&format!("{s}-01"), "%Y-%m-%d") {
            Ok(d) if d > this => Err("That month has not begun yet: showing this month."),
            Ok(d) if d.year() < 2000 => Err("Choose a month from 2000 on: showing this month."),
            Ok(d) => Ok(d),
            Err(_) => Err("Enter the month as YYYY-MM: showing this month."),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn every_quarter(from: &str, to: &str, wh: f64) -> Vec<SiteInterval> {
        let (mut t, end) = (utc(from), utc(to));
        let mut out = Vec::new();
        while t < end {
            out.push(SiteInterval {
                start: t,
                import_wh: wh,
                export_wh: 0.0,
                vah: wh,
                rows: 1,
                estimated: false,
                reactive_import_varh: None,
                reactive_export_varh: None,
            });
            t += TimeDelta::minutes(15);
        }
        out
    }

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    /// What `energy::site_buckets` sums: each interval in the bucket `[bounds[k], bounds[k+1])`.
    fn sums(b: &Buckets, intervals: &[SiteInterval]) -> Vec<BucketEnergy> {
        b.bounds
            .windows(2)
            .map(|w| {
                let inside: Vec<&SiteInterval> =
                    intervals.iter().filter(|i| w[0] <= i.start && i.start < w[1]).collect();
                BucketEnergy { import_wh: inside.iter().map(|i| i.import_wh).sum(), intervals: inside.len() as u32 }
            })
            .collect()
    }

    fn daily(tz: Tz, first: NaiveDate, now: DateTime<Utc>, intervals: &[SiteInterval]) -> Vec<Bar> {
        let b = Buckets::days(tz, first);
        b.bars(now, &sums(&b, intervals))
    }

    fn monthly(tz: Tz, year: i32, now: DateTime<Utc>, intervals: &[SiteInterval]) -> Vec<Bar> {
        let b = Buckets::months(tz, year);
        b.bars(now, &sums(&b, intervals))
    }

    #[test]
    fn london_dst_days_hold_23_and_25_hours() {
        let london: Tz = "Europe/London".parse().unwrap();
        let now = utc("2026-11-20T12:00:00Z");
        let data = every_quarter("2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z", 1000.0);
        let march = daily(london, d(2026, 3, 1), now, &data);
        assert_eq!(march.len(), 31);
        let by_day: Vec<(u32, Option<f64>)> =
            march.iter().filter(|b| (28..=30).contains(&b.date.day())).map(|b| (b.intervals, b.kwh)).collect();
        assert_eq!(by_day, [(96, Some(96.0)), (92, Some(92.0)), (96, Some(96.0))]);
        assert_eq!(march[29].start, utc("2026-03-29T23:00:00Z"), "BST: the 30th starts at 23:00 UTC");
        // The last hour of March UTC is 1 April local: not March's.
        assert_eq!(march.iter().filter_map(|b| b.kwh).sum::<f64>(), 31.0 * 96.0 - 4.0);
        let data = every_quarter("2026-10-24T23:00:00Z", "2026-10-26T00:00:00Z", 500.0);
        let october = daily(london, d(2026, 10, 1), now, &data);
        assert_eq!((october[24].intervals, october[24].kwh), (100, Some(50.0)));
        assert_eq!(october[0].kwh, Some(0.0), "a day gone without data is a zero bar");
    }

    #[test]
    fn months_of_a_year_and_the_future_has_no_bars() {
        let tz = chrono_tz::UTC;
        let now = utc("2026-03-10T12:00:00Z");
        let data = every_quarter("2026-01-31T00:00:00Z", "2026-02-02T00:00:00Z", 250.0);
        let year = monthly(tz, 2026, now, &data);
        let kwh: Vec<Option<f64>> = year.iter().map(|b| b.kwh).collect();
        assert_eq!(kwh[..4], [Some(24.0), Some(24.0), Some(0.0), None]);
        assert!(kwh[4..].iter().all(Option::is_none));
        let march = daily(tz, d(2026, 3, 1), now, &[]);
        assert_eq!((march[9].kwh, march[10].kwh), (Some(0.0), None), "today has begun, tomorrow has not");
    }

    #[test]
    fn today_is_compared_with_yesterday_at_the_same_time_of_day() {
        let tz: Tz = "Africa/Johannesburg".parse().unwrap(); // UTC+2
        let now = utc("2026-12-02T08:10:00Z"); // 10:10 local
        let mut data = every_quarter("2026-11-30T22:00:00Z", "2026-12-01T22:00:00Z", 1000.0); // yesterday: 4 kW
        data.extend(every_quarter("2026-12-01T22:00:00Z", "2026-12-02T08:15:00Z", 500.0)); // today: 2 kW
        let c = today_yesterday(tz, now, &data);
        assert_eq!(c.slots.len(), 96);
        assert_eq!(c.today_kwh, 41.0 * 0.5, "40 whole intervals and the one in progress");
        assert_eq!(c.yesterday_same_time_kwh, 41.0, "yesterday until 10:10: the intervals starting before it");
        assert_eq!(c.yesterday_kwh, 96.0);
        assert_eq!((c.today_kw[0], c.yesterday_kw[0]), (Some(2.0), Some(4.0)));
        assert_eq!(
            (c.today_kw[39], c.today_kw[40], c.yesterday_kw[95]),
            (Some(2.0), None, Some(4.0)),
            "10:00 is in progress"
        );
    }

    #[test]
    fn the_day_after_the_autumn_change_lines_up_by_wall_clock() {
        let london: Tz = "Europe/London".parse().unwrap();
        let now = utc("2026-10-26T12:00:00Z");
        let data = every_quarter("2026-10-24T23:00:00Z", "2026-10-26T00:00:00Z", 1000.0);
        let c = today_yesterday(london, now, &data);
        assert_eq!(c.slots.len(), 96);
        assert_eq!(c.yesterday_kwh, 100.0, "yesterday had 25 hours");
        assert!(c.yesterday_kw.iter().all(|v| *v == Some(4.0)), "the repeated hour shows once");
    }

    #[test]
    fn months_are_parsed_or_refused_with_a_reason() {
        let today = d(2026, 12, 2);
        assert_eq!(month_of(None, today), Ok(d(2026, 12, 1)));
        assert_eq!(month_of(Some("2026-10"), today), Ok(d(2026, 10, 1)));
        assert!(month_of(Some("2027-01"), today).unwrap_err().contains("not begun"));
        assert!(month_of(Some("2026-13"), today).unwrap_err().contains("YYYY-MM"));
        assert!(month_of(Some("1999-12"), today).unwrap_err().contains("2000"));
    }

    proptest! {
        /// Every interval of a month lands in exactly one day of it: the bars add up to the data.
        #[test]
        fn daily_bars_add_up_to_the_months_intervals(zone in 0usize..chrono_tz::TZ_VARIANTS.len(), month in 1u32..=12) {
            let tz = chrono_tz::TZ_VARIANTS[zone];
            let first = d(2026, month, 1);
            let (from, to) = (local_midnight(tz, first), local_midnight(tz, first.checked_add_months(Months::new(1)).unwrap()));
            let data = every_quarter(&from.to_rfc3339(), &to.to_rfc3339(), 1000.0);
            let bars = daily(tz, first, utc("2030-01-01T00:00:00Z"), &data);
            let total: u32 = bars.iter().map(|b| b.intervals).sum();
            prop_assert_eq!(total as usize, data.len());
        }
    }
}
