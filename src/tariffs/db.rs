//! SQL of `portal."Municipalities"`, `portal."Tariffs"` and `portal."SiteTariffs"` (the only
//! module that writes them). A site's energy comes through the energy door (`tariffs::bills`).

use std::collections::HashMap;
use std::sync::Arc;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use sqlx::PgExecutor;
use sqlx::types::Json;

use super::engine::{Assignment, Tariff};
use super::model::{Municipality, TariffDoc};

pub const MUNICIPALITY_NAME_UNIQUE: &str = "UX_Municipalities_Name";
pub const TARIFF_NAME_UNIQUE: &str = "UX_Tariffs_Name";
pub const TARIFF_MUNICIPALITY_FK: &str = "Tariffs_MunicipalityId_fkey";
pub const SITE_TARIFF_FK: &str = "SiteTariffs_TariffId_fkey";

pub struct MunicipalityRow {
    pub id: i32,
    pub m: Municipality,
    pub tariffs: i64,
}

type MunicipalityTuple = (i32, String, String, String, Decimal, Vec<NaiveDate>, i64);

fn municipality_row(
    (id, name, country, currency, vat_percent, mut holidays, tariffs): MunicipalityTuple,
) -> MunicipalityRow {
    // The engine looks holidays up by binary search.
    holidays.sort_unstable();
    MunicipalityRow { id, m: Municipality { name, country, currency, vat_percent, holidays }, tariffs }
}

const MUNICIPALITY_COLUMNS: &str = r#"m."Id", m."Name", m."Country", m."Currency", m."VatPercent", m."Holidays",
    (SELECT count(*) FROM portal."Tariffs" t WHERE t."MunicipalityId" = m."Id")"#;

pub async fn municipalities(db: impl PgExecutor<'_>) -> Result<Vec<MunicipalityRow>, sqlx::Error> {
    let sql = format!(r#"SELECT {MUNICIPALITY_COLUMNS} FROM portal."Municipalities" m ORDER BY lower(m."Name")"#);
    let rows: Vec<MunicipalityTuple> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(db).await?;
    Ok(rows.into_iter().map(municipality_row).collect())
}

pub async fn municipality(db: impl PgExecutor<'_>, id: i32) -> Result<Option<MunicipalityRow>, sqlx::Error> {
    let sql = format!(r#"SELECT {MUNICIPALITY_COLUMNS} FROM portal."Municipalities" m WHERE m."Id" = $1"#);
    let row: Option<MunicipalityTuple> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(db).await?;
    Ok(row.map(municipality_row))
}

/// Inserts (`id` None) or updates; the id, or None when the municipality to update is gone.
pub async fn save_municipality(
    db: impl PgExecutor<'_>,
    id: Option<i32>,
    m: &Municipality,
) -> Result<Option<i32>, sqlx::Error> {
    let sql = match id {
        None => {
            r#"INSERT INTO portal."Municipalities" ("Name", "Country", "Currency", "VatPercent", "Holidays")
               VALUES ($2, $3, $4, $5, $6) RETURNING "Id""#
        }
        Some(_) => {
            r#"UPDATE portal."Municipalities" SET "Name" = $2, "Country" = $3, "Currency" = $4, "VatPercent" = $5,
               "Holidays" = $6 WHERE "Id" = $1 RETURNING "Id""#
        }
    };
    sqlx::query_scalar(sql)
        .bind(id)
        .bind(&m.name)
        .bind(&m.country)
        .bind(&m.currency)
        .bind(m.vat_percent)
        .bind(&m.holidays)
        .fetch_optional(db)
        .await
}

/// The deleted municipality's name; fails on the tariffs' foreign key while it has tariffs.
pub async fn delete_municipality(db: impl PgExecutor<'_>, id: i32) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(r#"DELETE FROM portal."Municipalities" WHERE "Id" = $1 RETURNING "Name""#)
        .bind(id)
        .fetch_optional(db)
        .await
}

pub struct TariffRow {
    pub id: i32,
    pub municipality_id: i32,
    pub municipality: String,
    pub doc: TariffDoc,
    /// Sites that have (had) it.
    pub sites: i64,
}

type TariffTuple = (i32, i32, String, Json<TariffDoc>, i64);

const TARIFF_SELECT: &str = r#"SELECT t."Id", t."MunicipalityId", m."Name", t."Definition",
    (SELECT count(DISTINCT s."SiteId") FROM portal."SiteTariffs" s WHERE s."TariffId" = t."Id")
    FROM portal."Tariffs" t JOIN portal."Municipalities" m ON m."Id" = t."MunicipalityId""#;

fn tariff_row((id, municipality_id, municipality, Json(doc), sites): TariffTuple) -> TariffRow {
    TariffRow { id, municipality_id, municipality, doc, sites }
}

pub async fn tariffs(db: impl PgExecutor<'_>) -> Result<Vec<TariffRow>, sqlx::Error> {
    let sql = format!(r#"{TARIFF_SELECT} ORDER BY lower(m."Name"), lower(t."Name")"#);
    let rows: Vec<TariffTuple> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(db).await?;
    Ok(rows.into_iter().map(tariff_row).collect())
}

pub async fn tariff(db: impl PgExecutor<'_>, id: i32) -> Result<Option<TariffRow>, sqlx::Error> {
    let sql = format!(r#"{TARIFF_SELECT} WHERE t."Id" = $1"#);
    let row: Option<TariffTuple> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(db).await?;
    Ok(row.map(tariff_row))
}

/// Inserts (`id` None) or updates a validated tariff; None when the tariff to update is gone.
pub async fn save_tariff(
    db: impl PgExecutor<'_>,
    id: Option<i32>,
    municipality_id: i32,
    doc: &TariffDoc,
) -> Result<Option<i32>, sqlx::Error> {
    let sql = match id {
        None => {
            r#"INSERT INTO portal."Tariffs" ("MunicipalityId", "Name", "Definition") VALUES ($2, $3, $4) RETURNING "Id""#
        }
        Some(_) => {
            r#"UPDATE portal."Tariffs" SET "MunicipalityId" = $2, "Name" = $3, "Definition" = $4, "UpdatedAt" = now()
               WHERE "Id" = $1 RETURNING "Id""#
        }
    };
    sqlx::query_scalar(sql).bind(id).bind(municipality_id).bind(&doc.name).bind(Json(doc)).fetch_optional(db).await
}

/// Fails on the site assignments' foreign key while a site has (had) the tariff.
pub async fn delete_tariff(db: impl PgExecutor<'_>, id: i32) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(r#"DELETE FROM portal."Tariffs" WHERE "Id" = $1 RETURNING "Name""#)
        .bind(id)
        .fetch_optional(db)
        .await
}

pub struct AssignmentRow {
    pub site_id: i32,
    pub site: String,
    pub from: NaiveDate,
    pub tariff_id: i32,
    pub tariff: String,
}

/// Every site's tariff history (`site_id` None) or one site's, oldest first.
pub async fn assignments(db: impl PgExecutor<'_>, site_id: Option<i32>) -> Result<Vec<AssignmentRow>, sqlx::Error> {
    let rows: Vec<(i32, String, NaiveDate, i32, String)> = sqlx::query_as(
        r#"SELECT s."Id", s."Name", a."EffectiveFrom", t."Id", t."Name"
           FROM portal."SiteTariffs" a JOIN monitoring."Sites" s ON s."Id" = a."SiteId"
           JOIN portal."Tariffs" t ON t."Id" = a."TariffId"
           WHERE $1::int4 IS NULL OR a."SiteId" = $1
           ORDER BY lower(s."Name"), a."EffectiveFrom""#,
    )
    .bind(site_id)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(site_id, site, from, tariff_id, tariff)| AssignmentRow { site_id, site, from, tariff_id, tariff })
        .collect())
}

/// Sets the site's tariff from `from` (replacing an assignment on that very day).
pub async fn assign(db: impl PgExecutor<'_>, site_id: i32, from: NaiveDate, tariff_id: i32) -> Result<(), sqlx::Error> {
    sqlx::query(
        r#"INSERT INTO portal."SiteTariffs" ("SiteId", "EffectiveFrom", "TariffId") VALUES ($1, $2, $3)
           ON CONFLICT ("SiteId", "EffectiveFrom") DO UPDATE SET "TariffId" = EXCLUDED."TariffId""#,
    )
    .bind(site_id)
    .bind(from)
    .bind(tariff_id)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn unassign(db: impl PgExecutor<'_>, site_id: i32, from: NaiveDate) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(r#"DELETE FROM portal."SiteTariffs" WHERE "SiteId" = $1 AND "EffectiveFrom" = $2"#)
        .bind(site_id)
        .bind(from)
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// The sites that have (had) a tariff, by name.
pub async fn sites_with_tariff(db: impl PgExecutor<'_>) -> Result<Vec<i32>, sqlx::Error> {
    sqlx::query_scalar(
        r#"SELECT s."Id" FROM monitoring."Sites" s
           WHERE EXISTS (SELECT 1 FROM portal."SiteTariffs" a WHERE a."SiteId" = s."Id") ORDER BY lower(s."Name")"#,
    )
    .fetch_all(db)
    .await
}

/// A site's tariff history with the tariffs and municipalities, ready for the engine.
pub async fn site_schedule(db: impl PgExecutor<'_>, site_id: i32) -> Result<Vec<Assignment>, sqlx::Error> {
    type Row = (NaiveDate, i32, Json<TariffDoc>, String, String, String, Decimal, Vec<NaiveDate>);
    let rows: Vec<Row> = sqlx::query_as(
        r#"SELECT a."EffectiveFrom", t."Id", t."Definition", m."Name", m."Country", m."Currency", m."VatPercent",
                  m."Holidays"
           FROM portal."SiteTariffs" a JOIN portal."Tariffs" t ON t."Id" = a."TariffId"
           JOIN portal."Municipalities" m ON m."Id" = t."MunicipalityId"
           WHERE a."SiteId" = $1 ORDER BY a."EffectiveFrom""#,
    )
    .bind(site_id)
    .fetch_all(db)
    .await?;
    // One shared copy per tariff however often it was assigned.
    let mut shared: HashMap<i32, Arc<Tariff>> = HashMap::new();
    Ok(rows
        .into_iter()
        .map(|(from, id, Json(doc), name, country, currency, vat_percent, mut holidays)| {
            holidays.sort_unstable();
            let tariff = shared
                .entry(id)
                .or_insert_with(|| {
                    Arc::new(Tariff {
                        id,
                        doc,
                        municipality: Municipality { name, country, currency, vat_percent, holidays },
                    })
                })
                .clone();
            Assignment { from, tariff }
        })
        .collect())
}
