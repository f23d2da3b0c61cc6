//! The Overview's cost figures: per site with a tariff, the month to date and a projection to
//! month end, each from the site's bill of the current calendar month in its own time zone.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgPool;

use crate::tariffs::bills;
use crate::tariffs::db::sites_with_tariff;
use crate::tariffs::engine;
use crate::tariffs::local::Period;

pub struct SiteOutlook {
    pub site_id: i32,
    pub site: String,
    pub currency: String,
    pub to_date: String,
    pub projected: String,
    pub completeness: String,
}

/// Month to date and the projection to month end for every site that has a tariff (their
/// energy in one read through the energy door).
pub async fn month_outlook(db: &PgPool, now: DateTime<Utc>) -> Result<Vec<SiteOutlook>, sqlx::Error> {
    let mut sites = Vec::new();
    for id in sites_with_tariff(db).await? {
        let Some(site) = crate::sites::db::site(db, id).await? else { continue };
        let Some(period) = Period::containing(now.with_timezone(&site.zone()).date_naive(), 1) else { continue };
        sites.push((site, period));
    }
    let asked: Vec<_> = sites.iter().map(|(site, period)| (site, *period)).collect();
    let loaded = bills::load_all(db, &asked).await?;
    let mut out = Vec::with_capacity(sites.len());
    for ((site, period), loaded) in sites.into_iter().zip(loaded) {
        let bill = engine::bill(&loaded.input());
        let (from, to) = period.utc(loaded.tz);
        let elapsed =
            Decimal::from((now - from).num_seconds().max(0)) / Decimal::from((to - from).num_seconds().max(1));
        let (to_date, projected) = engine::outlook(&bill, elapsed);
        out.push(SiteOutlook {
            site_id: site.id,
            site: site.name,
            currency: bill.currency,
            to_date: format!("{to_date:.2}"),
            projected: format!("{projected:.2}"),
            completeness: format!("{:.1} %", bill.completeness_percent),
        });
    }
    Ok(out)
}
