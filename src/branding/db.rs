//! SQL of `portal."Branding"` (one row). Its writes take the [`Change`] and note the branding
//! held in memory as stale, so every page is drawn with the new one once they commit.

use sqlx::PgExecutor;

use super::Brand;
use crate::change::{Cache, Change};
use crate::config::Color;

#[derive(sqlx::FromRow)]
#[sqlx(rename_all = "PascalCase")]
struct Row {
    application_name: String,
    primary_color: String,
    secondary_color: String,
    accent_color: String,
    footer_text: String,
    logo_file: Option<String>,
}

pub async fn load(db: impl PgExecutor<'_>) -> Result<Option<Brand>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(
        r#"SELECT "ApplicationName", "PrimaryColor", "SecondaryColor", "AccentColor", "FooterText", "LogoFile"
           FROM portal."Branding""#,
    )
    .fetch_optional(db)
    .await?;
    let Some(r) = row else { return Ok(None) };
    // The table's CHECK constraints guarantee the #rrggbb form; a violation is a decode error.
    let color = |s: &str| s.parse::<Color>().map_err(|e| sqlx::Error::Decode(e.into()));
    Ok(Some(Brand {
        primary_color: color(&r.primary_color)?,
        secondary_color: color(&r.secondary_color)?,
        accent_color: color(&r.accent_color)?,
        application_name: r.application_name,
        footer_text: r.footer_text,
        logo_file: r.logo_file,
    }))
}

/// Inserts the first-boot branding; false when a row already exists.
pub async fn insert_if_absent(db: impl PgExecutor<'_>, b: &Brand) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        r#"INSERT INTO portal."Branding" ("ApplicationName", "PrimaryColor", "SecondaryColor", "AccentColor", "FooterText")
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT ("Id") DO NOTHING"#,
    )
    .bind(&b.application_name)
    .bind(b.primary_color.as_str())
    .bind(b.secondary_color.as_str())
    .bind(b.accent_color.as_str())
    .bind(&b.footer_text)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn update_texts_and_colors(change: &mut Change, b: &Brand) -> Result<(), sqlx::Error> {
    change.stale(Cache::Branding);
    sqlx::query(
        r#"UPDATE portal."Branding" SET "ApplicationName" = $1, "PrimaryColor" = $2, "SecondaryColor" = $3,
               "AccentColor" = $4, "FooterText" = $5, "UpdatedAt" = now()"#,
    )
    .bind(&b.application_name)
    .bind(b.primary_color.as_str())
    .bind(b.secondary_color.as_str())
    .bind(b.accent_color.as_str())
    .bind(&b.footer_text)
    .execute(change.db())
    .await?;
    Ok(())
}

/// Sets (or clears) the logo; returns the previous file name.
pub async fn set_logo(change: &mut Change, file: Option<&str>) -> Result<Option<String>, sqlx::Error> {
    change.stale(Cache::Branding);
    sqlx::query_scalar(
        r#"UPDATE portal."Branding" b SET "LogoFile" = $1, "UpdatedAt" = now()
           FROM (SELECT "LogoFile" AS old FROM portal."Branding" FOR UPDATE) o
           RETURNING o.old"#,
    )
    .bind(file)
    .fetch_one(change.db())
    .await
}
