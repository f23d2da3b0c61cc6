//! The Overview's figures, as pure functions of what the database answered: live power and
//! device health per site, and today's and this month's energy and cost. Each "this month" figure
//! says which it is: measured so far (to date) or extrapolated (projected).

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;

use crate::measurements::energy::SiteInterval;
use crate::sites::db::LiveDevice;
use crate::sites::hierarchy::MAIN;
use crate::sites::readings::{self, Status};
use crate::tariffs::engine::{self, BillInput};
use crate::tariffs::local::{Period, local_midnight};

/// A device that needs attention, for the list of the ones down.
#[derive(Debug, Clone, PartialEq)]
pub struct Down {
    pub id: i32,
    pub name: String,
    pub status: Status,
    /// Its newest reading (offline), or the error (failing).
    pub detail: String,
}

/// What a site draws now and how its meters are.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Live {
    /// Σ of the latest total active power of the devices online (W); `None` with none online.
    pub watts: Option<f64>,
    pub online: u32,
    pub offline: u32,
    pub failing: u32,
    /// Disabled, or never read yet: neither up nor down.
    pub idle: u32,
    pub down: Vec<Down>,
    pub newest: Option<DateTime<Utc>>,
}

impl Live {
    /// "3 online · 1 offline · 1 in error" (zero counts of trouble left out).
    pub fn summary(&self) -> String {
        let mut parts = vec![format!("{} online", self.online)];
        if self.offline > 0 {
            parts.push(format!("{} offline", self.offline));
        }
        if self.failing > 0 {
            parts.push(format!("{} in error", self.failing));
        }
        if self.idle > 0 {
            parts.push(format!("{} disabled or not read yet", self.idle));
        }
        parts.join(" · ")
    }

    pub fn kw_text(&self) -> String {
        self.watts.map_or_else(|| "–".into(), |w| readings::format_quantity(w, "W"))
    }

    fn add(&mut self, other: &Live) {
        self.watts = match (self.watts, other.watts) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
        };
        self.online += other.online;
        self.offline += other.offline;
        self.failing += other.failing;
        self.idle += other.idle;
        self.newest = self.newest.max(other.newest);
    }
}

/// The live figures of the `devices` of one site. A main meter counts towards the site's power
/// only while it is online: an offline meter's last reading is history, not what the site draws.
pub fn live(devices: &[&LiveDevice], now: DateTime<Utc>, tz: Tz) -> Live {
    let mut out = Live::default();
    for d in devices {
        let status = readings::status(
            d.enabled,
            d.last_reading_at,
            d.last_error_at,
            d.consecutive_failures,
            d.poll_interval_seconds,
            now,
        );
        out.newest = out.newest.max(d.last_reading_at);
        match status {
            Status::Online => {
                out.online += 1;
                // What the site draws is what its supply points (main meters) measure: a
                // sub-meter's power is part of it, a check meter's the same again.
                if let Some(w) = d.latest_w.filter(|_| d.role == MAIN) {
                    out.watts = Some(out.watts.unwrap_or(0.0) + w);
                }
            }
            Status::Offline | Status::Failing => {
                let detail = match (&status, d.last_reading_at) {
                    (Status::Failing, _) => d.last_error.clone().unwrap_or_else(|| "the last polls failed".into()),
                    (_, Some(t)) => format!("no reading since {}", readings::local_time(t, tz)),
                    (_, None) => "no reading yet".into(),
                };
                if status == Status::Offline {
                    out.offline += 1;
                } else {
                    out.failing += 1;
                }
                out.down.push(Down { id: d.id, name: d.name.clone(), status, detail });
            }
            Status::Disabled | Status::NoReadings => out.idle += 1,
        }
    }
    out
}

/// The portfolio: every site's live figures added up (power of the sites that have any).
pub fn portfolio(sites: &[&Live]) -> Live {
    let mut total = Live::default();
    for s in sites {
        total.add(s);
    }
    total
}

/// Money of a site's bill, so far and projected (VAT included, as the bill says).
#[derive(Debug, Clone, PartialEq)]
pub struct Cost {
    pub currency: String,
    /// What today added to this month's bill so far.
    pub today: Decimal,
    pub month_to_date: Decimal,
    pub projected: Decimal,
}

/// A site's energy today and this month (its billing period in the site's zone: the calendar
/// month unless its meter-read day is not 1).
#[derive(Debug, Clone, PartialEq)]
pub struct Energy {
    pub period: Period,
    pub today_kwh: f64,
    pub month_kwh: f64,
    /// Exported (e.g. solar) this month, when any.
    pub month_export_kwh: f64,
    /// `None` without a tariff.
    pub cost: Option<Cost>,
    /// Device intervals present / expected so far this month, in percent (`None` before the
    /// month's first interval ends or without devices).
    pub completeness: Option<f64>,
}

fn elapsed(from: DateTime<Utc>, to: DateTime<Utc>, at: DateTime<Utc>) -> Decimal {
    Decimal::from((at - from).num_seconds().max(0)) / Decimal::from((to - from).num_seconds().max(1))
}

/// Today's and this month's figures from what a bill of the site needs (`site`: its intervals
/// so far, in any order, others ignored; its tariff history, device count, NMD and ratchets'
/// earlier peaks; its period is replaced). "This month" is the site's current billing period by
/// its meter-read day (`read_day`; 1: the calendar month), so the cost is the bill's and its kWh
/// are the same days'. Today's cost is what today added to the month's bill: the month to date
/// now minus the month to date at the local midnight, so today and the days before add up to the
/// month exactly.
pub fn energy(now: DateTime<Utc>, read_day: u32, site: &BillInput<'_>) -> Option<Energy> {
    let BillInput { tz, devices, assignments: schedule, intervals, .. } = *site;
    let today = now.with_timezone(&tz).date_naive();
    let period = Period::containing(today, read_day)?;
    let (from, to) = period.utc(tz);
    let midnight = local_midnight(tz, today);
    let month: Vec<SiteInterval> =
        intervals.iter().filter(|i| from <= i.start && i.start < now.min(to)).cloned().collect();
    let kwh = |f: &dyn Fn(&SiteInterval) -> bool| month.iter().filter(|i| f(i)).map(|i| i.import_wh).sum::<f64>() / 1e3;
    let today_kwh = kwh(&|i| i.start >= midnight);
    let month_kwh = kwh(&|_| true);
    let month_export_kwh = month.iter().map(|i| i.export_wh).sum::<f64>() / 1e3;
    let cost = (!schedule.is_empty()).then(|| {
        let input = |intervals: &[SiteInterval]| engine::bill(&BillInput { period, intervals, ..*site });
        let before: Vec<SiteInterval> = month.iter().filter(|i| i.start < midnight).cloned().collect();
        let now_bill = input(&month);
        let (month_to_date, projected) = engine::outlook(&now_bill, elapsed(from, to, now));
        let (at_midnight, _) = engine::outlook(&input(&before), elapsed(from, to, midnight));
        Cost { currency: now_bill.currency.clone(), today: month_to_date - at_midnight, month_to_date, projected }
    });
    let interval = TimeDelta::minutes(15);
    let elapsed_intervals = ((now.min(to) - from).num_seconds() / interval.num_seconds()).max(0);
    let expected = i64::from(devices) * elapsed_intervals;
    let present: i64 = month.iter().filter(|i| i.start + interval <= now).map(|i| i64::from(i.rows)).sum();
    let completeness = (expected > 0).then(|| (present as f64 * 100.0 / expected as f64).min(100.0));
    Some(Energy { period, today_kwh, month_kwh, month_export_kwh, cost, completeness })
}

pub fn kwh_text(kwh: f64) -> String {
    format!("{} kWh", readings::grouped(kwh, 1))
}

pub fn money_text(currency: &str, amount: Decimal) -> String {
    let cents = amount.round_dp(2);
    let units = cents.trunc();
    let frac = ((cents - units).abs() * Decimal::ONE_HUNDRED).trunc();
    let sign = if cents.is_sign_negative() && !cents.is_zero() { "-" } else { "" };
    let whole = readings::grouped(units.abs().try_into().unwrap_or(0.0), 0);
    format!("{currency} {sign}{whole}.{frac:0>2}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn device(id: i32, seconds_ago: Option<i64>, w: f64, now: DateTime<Utc>) -> LiveDevice {
        LiveDevice {
            id,
            site_id: 1,
            name: format!("Meter {id}"),
            enabled: true,
            role: MAIN.into(),
            poll_interval_seconds: 60,
            last_error: None,
            last_error_at: None,
            consecutive_failures: 0,
            last_reading_at: seconds_ago.map(|s| now - TimeDelta::seconds(s)),
            latest_w: Some(w),
        }
    }

    #[test]
    fn live_power_adds_the_online_devices_and_names_the_ones_down() {
        let now = utc("2026-12-01T10:00:00Z");
        let mut failing = device(3, Some(30), 7_000.0, now);
        failing.consecutive_failures = 2;
        failing.last_error = Some("Connection refused (10.0.0.5:502)".into());
        let devices = [
            device(1, Some(20), 12_000.0, now),
            device(2, Some(3_600), 50_000.0, now), // offline: its 50 kW is an hour old
            failing,
            device(4, Some(10), 500.0, now),
            device(5, None, 0.0, now),
            LiveDevice { role: "sub".into(), ..device(6, Some(10), 9_000.0, now) }, // part of a main meter's
        ];
        let refs: Vec<&LiveDevice> = devices.iter().collect();
        let live = live(&refs, now, chrono_tz::UTC);
        assert_eq!(live.watts, Some(12_500.0));
        assert_eq!(live.kw_text(), "12.50 kW");
        assert_eq!((live.online, live.offline, live.failing, live.idle), (3, 1, 1, 1));
        assert_eq!(live.summary(), "3 online · 1 offline · 1 in error · 1 disabled or not read yet");
        let down: Vec<(i32, &str)> = live.down.iter().map(|d| (d.id, d.detail.as_str())).collect();
        assert_eq!(down, [(2, "no reading since 2026-12-01 09:00:00 UTC"), (3, "Connection refused (10.0.0.5:502)")]);
        let nothing = super::live(&[&devices[1]], now, chrono_tz::UTC);
        assert_eq!(nothing.kw_text(), "–", "no device online: no live figure, not zero");
        let total = portfolio(&[&live, &nothing]);
        assert_eq!((total.watts, total.online, total.offline), (Some(12_500.0), 3, 2));
    }

    fn interval(start: DateTime<Utc>, wh: f64) -> SiteInterval {
        SiteInterval {
            start,
            import_wh: wh,
            export_wh: 0.0,
            vah: wh,
            rows: 1,
            estimated: false,
            reactive_import_varh: None,
            reactive_export_varh: None,
        }
    }

    #[test]
    fn todays_and_this_months_energy_in_the_sites_days() {
        // Johannesburg (UTC+2): 2 December 10:00 local. A kWh every interval since 1 December
        // 00:00 local (30 Nov 22:00 UTC): 24 h × 4 + 10 h × 4 = 136 intervals, 40 of them today.
        let tz: Tz = "Africa/Johannesburg".parse().unwrap();
        let now = utc("2026-12-02T08:00:00Z");
        let start = utc("2026-11-30T22:00:00Z");
        let mut intervals: Vec<SiteInterval> =
            (0..136).map(|k| interval(start + TimeDelta::minutes(15 * k), 1000.0)).collect();
        intervals.insert(0, interval(start - TimeDelta::minutes(15), 99_000.0)); // November: not this month
        let input = |devices| BillInput {
            tz,
            period: Period::containing(now.date_naive(), 1).unwrap(),
            devices,
            assignments: &[],
            intervals: &intervals,
            nmd: None,
            history: &[],
        };
        let e = energy(now, 1, &input(1)).unwrap();
        assert_eq!((e.today_kwh, e.month_kwh), (40.0, 136.0));
        assert_eq!(e.cost, None, "no tariff, no cost");
        assert_eq!(e.completeness, Some(100.0));
        let e = energy(now, 1, &input(2)).unwrap();
        assert_eq!(e.completeness, Some(50.0), "two devices, one of them reporting");
        assert_eq!(kwh_text(1234.56), "1\u{202f}234.6 kWh");
    }

    #[test]
    fn money_is_grouped_with_two_decimals() {
        assert_eq!(money_text("ZAR", Decimal::new(1_234_567, 2)), "ZAR 12\u{202f}345.67");
        assert_eq!(money_text("ZAR", Decimal::new(-5, 1)), "ZAR -0.50");
        assert_eq!(money_text("EUR", Decimal::ZERO), "EUR 0.00");
    }
}
