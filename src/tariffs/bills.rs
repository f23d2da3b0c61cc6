//! What a bill is computed from, loaded: a site's tariff history and, through the energy door
//! (`measurements::energy`), its 15-minute energy over the billing period and the number of
//! devices it sums. The Cost tab bills one site; the Overview many, with one read of their energy.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use sqlx::PgPool;

use super::db;
use super::engine::{self, Assignment, Bill, BillInput};
use super::local::Period;
use crate::measurements::energy::{self, SiteEnergy, SiteRange};
use crate::sites::db::SiteRow;

/// Everything a bill of one site over one period needs.
pub struct Loaded {
    pub tz: Tz,
    pub period: Period,
    pub schedule: Vec<Assignment>,
    pub energy: SiteEnergy,
}

impl Loaded {
    pub fn input(&self) -> BillInput<'_> {
        BillInput {
            tz: self.tz,
            period: self.period,
            devices: self.energy.devices,
            assignments: &self.schedule,
            intervals: &self.energy.intervals,
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
    let mut out = Vec::with_capacity(bills.len());
    for ((site, period), energy) in bills.iter().zip(energy) {
        let schedule = db::site_schedule(db, site.id).await?;
        out.push(Loaded { tz: site.zone(), period: *period, schedule, energy });
    }
    Ok(out)
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
