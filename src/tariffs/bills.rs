//! What a bill is computed from, loaded: a site's tariff history and, through the energy door
//! (`measurements::energy`), its 15-minute energy over the billing period and the number of
//! devices it sums. The Cost tab bills one site; the Overview many, with one read of their energy.
//!
//! A ratchet looks back at up to 36 earlier billing periods. Their intervals are not read: the
//! Overview and the alarm evaluator bill every site every minute or page, and a year of 15-minute
//! intervals is 35,000 rows a site where its month is 2,900. The database computes each earlier
//! period's highest demand interval instead, through the door ([`energy::demand_peaks`]: one
//! row per period), in the same statement for every site and period asked.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use sqlx::PgPool;

use super::db;
use super::engine::{self, Assignment, Bill, BillInput, EarlierPeak, PeakNeed};
use super::local::Period;
use super::model::{DemandMethod, DemandUnit, Nmd};
use crate::measurements::energy::{self, PeakRange, SiteEnergy, SiteRange};
use crate::sites::db::SiteRow;

/// Everything a bill of one site over one period needs.
pub struct Loaded {
    pub tz: Tz,
    pub period: Period,
    pub schedule: Vec<Assignment>,
    pub energy: SiteEnergy,
    pub nmd: Option<Nmd>,
    /// The earlier billing periods' peaks the ratchets need.
    pub history: Vec<EarlierPeak>,
}

impl Loaded {
    pub fn input(&self) -> BillInput<'_> {
        BillInput {
            tz: self.tz,
            period: self.period,
            devices: self.energy.devices,
            assignments: &self.schedule,
            intervals: &self.energy.intervals,
            nmd: self.nmd,
            history: &self.history,
        }
    }
}

/// The bill data of `site` over `period`.
pub async fn load(db: &PgPool, site: &SiteRow, period: Period) -> Result<Loaded, sqlx::Error> {
    let mut loaded = load_all(db, &[(site, period)]).await?;
    loaded.pop().ok_or_else(|| sqlx::Error::Protocol("the energy door answered no site".into()))
}

/// The bill data of each (site, period), in the order given: the sites' energy in one read.
pub async fn load_all(db: &PgPool, bills: &[(&SiteRow, Period)]) -> Result<Vec<Loaded>, sqlx::Error> {
    let ranges: Vec<SiteRange> = bills
        .iter()
        .map(|(site, period)| {
            let (from, to) = period.utc(site.zone());
            SiteRange { site: site.id, from, to }
        })
        .collect();
    let energy = energy::sites_intervals(db, &ranges).await?;
    let mut schedules = Vec::with_capacity(bills.len());
    for (site, _) in bills {
        schedules.push(db::site_schedule(db, site.id).await?);
    }
    let sites: Vec<(&SiteRow, Period, &[Assignment])> =
        bills.iter().zip(&schedules).map(|((site, period), s)| (*site, *period, s.as_slice())).collect();
    let mut histories = earlier_peaks(db, &sites).await?.into_iter();
    let mut out = Vec::with_capacity(bills.len());
    for (((site, period), energy), schedule) in bills.iter().zip(energy).zip(schedules) {
        let history = histories.next().unwrap_or_default();
        out.push(Loaded { tz: site.zone(), period: *period, schedule, energy, nmd: site.nmd(), history });
    }
    Ok(out)
}

/// The earlier peaks each (site, period, schedule)'s ratchets need ([`engine::ratchet_needs`]),
/// in the order given: computed by the database in one statement for all of them (see the module
/// doc for why).
pub async fn earlier_peaks(
    db: &PgPool,
    bills: &[(&SiteRow, Period, &[Assignment])],
) -> Result<Vec<Vec<EarlierPeak>>, sqlx::Error> {
    let needs: Vec<Vec<PeakNeed>> =
        bills.iter().map(|(_, period, schedule)| engine::ratchet_needs(*period, schedule)).collect();
    let mut asks = Vec::new();
    for ((site, _, _), needs) in bills.iter().zip(&needs) {
        let tz = site.zone();
        for (period, unit, window_minutes, method) in needs {
            let (from, to) = period.utc(tz);
            asks.push(PeakRange {
                range: SiteRange { site: site.id, from, to },
                time_zone: tz.name().to_string(),
                window_minutes: *window_minutes,
                sliding: *method == DemandMethod::Sliding,
                apparent: *unit == DemandUnit::KVA,
            });
        }
    }
    let mut peaks = energy::demand_peaks(db, &asks).await?.into_iter();
    Ok(needs
        .into_iter()
        .map(|needs| {
            needs
                .into_iter()
                .map(|(period, unit, window_minutes, method)| EarlierPeak {
                    period,
                    unit,
                    window_minutes,
                    method,
                    peak: peaks.next().flatten().map(|(e, first)| (engine::wh(e), first)),
                })
                .collect()
        })
        .collect())
}

/// A site's bill of its current billing period (by its meter-read day, in its own time zone) on
/// the data so far, with the period to date and the projection to its end ([`engine::outlook`]).
pub struct MonthCost {
    pub site: SiteRow,
    pub loaded: Loaded,
    pub bill: Bill,
    pub to_date: Decimal,
    pub projected: Decimal,
}

/// The [`MonthCost`] of each of `sites` at `now` (their energy in one read through the door);
/// a site whose month cannot be placed (a date out of range) is left out. The Overview's cost
/// figures and the budget alarms both come from here.
pub async fn month_costs(db: &PgPool, sites: Vec<SiteRow>, now: DateTime<Utc>) -> Result<Vec<MonthCost>, sqlx::Error> {
    let sites: Vec<(SiteRow, Period)> = sites
        .into_iter()
        .filter_map(|site| {
            let period = Period::containing(now.with_timezone(&site.zone()).date_naive(), site.read_day())?;
            Some((site, period))
        })
        .collect();
    let asked: Vec<_> = sites.iter().map(|(site, period)| (site, *period)).collect();
    let loaded = load_all(db, &asked).await?;
    let mut out = Vec::with_capacity(sites.len());
    for ((site, period), loaded) in sites.into_iter().zip(loaded) {
        let bill = engine::bill(&loaded.input());
        let (from, to) = period.utc(loaded.tz);
        let elapsed =
            Decimal::from((now - from).num_seconds().max(0)) / Decimal::from((to - from).num_seconds().max(1));
        let (to_date, projected) = engine::outlook(&bill, elapsed);
        out.push(MonthCost { site, loaded, bill, to_date, projected });
    }
    Ok(out)
}
