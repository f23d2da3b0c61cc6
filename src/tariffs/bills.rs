//! What a bill is computed from, loaded: a site's tariff history and, through the energy door
//! (`measurements::energy`), its 15-minute energy over the billing period and the number of
//! devices it sums. The Cost tab bills one site; the Overview many, with one read of their energy.

use chrono_tz::Tz;
use sqlx::PgPool;

use super::db;
use super::engine::{Assignment, BillInput};
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
