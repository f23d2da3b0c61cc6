//! The Overview's cost figures: per site with a tariff, the month to date and a projection to
//! month end, each from the site's bill of the current calendar month in its own time zone.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::tariffs::bills;
use crate::tariffs::db::sites_with_tariff;

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
        sites.extend(crate::sites::db::site(db, id).await?);
    }
    Ok(bills::month_costs(db, sites, now)
        .await?
        .into_iter()
        .map(|c| SiteOutlook {
            site_id: c.site.id,
            site: c.site.name,
            currency: c.bill.currency,
            to_date: format!("{:.2}", c.to_date),
            projected: format!("{:.2}", c.projected),
            completeness: format!("{:.1} %", c.bill.completeness_percent),
        })
        .collect())
}
