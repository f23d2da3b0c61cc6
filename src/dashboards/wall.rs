//! Wall displays: a read-only live page of one site for a control-room screen that nobody signs
//! in on. An admin creates a link per screen (`/wall/<token>`, 256 random bits, shown once,
//! stored hashed), sees when each was last used and revokes it; every creation and revocation
//! is audited. The page shows what the site draws now, today's energy and the meters down, and
//! updates itself; it offers nothing to click and no way into the portal.

use askama::Template;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use sqlx::PgExecutor;
use uuid::Uuid;

use super::overview::{self, LIVE_SECONDS};
use crate::auth::tokens;
use crate::change::Change;
use crate::error::{AppError, AppResult};
use crate::sites::db::{self as sites_db, SiteRow};
use crate::sites::readings::local_time;
use crate::state::AppState;
use crate::web::client::ClientAddr;
use crate::web::page::Page;
use crate::web::render;
use crate::web::session::RequireAdmin;

pub const TOKEN_PREFIX: &str = "wall_";

/// The live site of a link that is not revoked; records its use (at most once a minute, so a
/// screen polling every few seconds costs no write per poll).
async fn site_of(db: impl PgExecutor<'_> + Copy, token: &str) -> Result<Option<SiteRow>, sqlx::Error> {
    let wanted = tokens::hash(token);
    let row: Option<(Uuid, i32, Vec<u8>)> = sqlx::query_as(
        r#"SELECT "Id", "SiteId", "TokenHash" FROM portal."WallDisplays" WHERE "TokenHash" = $1 AND "RevokedAt" IS NULL"#,
    )
    .bind(wanted.as_slice())
    .fetch_optional(db)
    .await?;
    let Some((id, site, _)) = row.filter(|(_, _, stored)| tokens::matches(stored, &wanted)) else {
        return Ok(None);
    };
    sqlx::query(
        r#"UPDATE portal."WallDisplays" SET "LastUsedAt" = now()
           WHERE "Id" = $1 AND ("LastUsedAt" IS NULL OR "LastUsedAt" < now() - interval '1 minute')"#,
    )
    .bind(id)
    .execute(db)
    .await?;
    sites_db::site(db, site).await
}

const GONE: &str = "This wall display link was revoked or never existed. Ask an administrator for a new one.";

#[derive(Template)]
#[template(path = "dashboards/wall.html")]
struct WallPage {
    page: Page,
    token: String,
    card: overview::SiteCard,
    live_seconds: u32,
}

/// `GET /wall/{token}`: the read-only page.
pub async fn show(State(state): State<AppState>, page: Page, Path(token): Path<String>) -> AppResult<Response> {
    let Some(site) = site_of(&state.db, &token).await? else { return Err(AppError::NotFound) };
    let now = state.clock.now();
    let devices = sites_db::live_devices(&state.db).await?;
    let energies = overview::energies(&state, std::slice::from_ref(&site), now).await?;
    let card = overview::card(site, energies.into_iter().next().flatten().as_ref(), &devices, now);
    let html = render(&WallPage { page, token, card, live_seconds: LIVE_SECONDS })?;
    // The link is the credential: never cached by a proxy, never sent on as a referrer.
    Ok(([(header::CACHE_CONTROL, "no-store"), (header::REFERRER_POLICY, "no-referrer")], html).into_response())
}

/// `GET /wall/{token}/live`: power and meter health (see the Overview's live answer).
pub async fn live(State(state): State<AppState>, Path(token): Path<String>) -> AppResult<Json<Value>> {
    let Some(site) = site_of(&state.db, &token).await? else { return Err(AppError::Unauthorized(GONE.into())) };
    let now = state.clock.now();
    let devices = sites_db::live_devices(&state.db).await?;
    Ok(overview::answer(overview::live_fields(std::slice::from_ref(&site), &devices, now), now))
}

/// `GET /wall/{token}/energy`: today's energy and cost.
pub async fn energy(State(state): State<AppState>, Path(token): Path<String>) -> AppResult<Json<Value>> {
    let Some(site) = site_of(&state.db, &token).await? else { return Err(AppError::Unauthorized(GONE.into())) };
    let now = state.clock.now();
    let sites = [site];
    let energies = overview::energies(&state, &sites, now).await?;
    Ok(overview::answer(overview::energy_fields(&sites, &energies), now))
}

// ---------------------------------------------------------------- managing the links (admins)

pub struct LinkView {
    id: Uuid,
    name: String,
    prefix: String,
    created: String,
    last_used: String,
    revoked: Option<String>,
}

#[derive(Template)]
#[template(path = "dashboards/wall_links.html")]
struct LinksPage {
    page: Page,
    site: SiteRow,
    links: Vec<LinkView>,
    name: String,
    error: Option<&'static str>,
    /// The link just created (shown this once).
    created: Option<(String, String)>,
}

async fn links_page(
    state: &AppState,
    page: Page,
    site: SiteRow,
    name: String,
    error: Option<&'static str>,
    created: Option<(String, String)>,
) -> AppResult<Response> {
    type Row = (Uuid, String, String, DateTime<Utc>, String, Option<DateTime<Utc>>, Option<DateTime<Utc>>);
    let rows: Vec<Row> = sqlx::query_as(
        r#"SELECT "Id", "Name", "Prefix", "CreatedAt", "CreatedBy", "LastUsedAt", "RevokedAt" FROM portal."WallDisplays"
           WHERE "SiteId" = $1 ORDER BY "RevokedAt" IS NOT NULL, "CreatedAt" DESC"#,
    )
    .bind(site.id)
    .fetch_all(&state.db)
    .await?;
    let tz = site.zone();
    let links = rows
        .into_iter()
        .map(|(id, name, prefix, created, by, used, revoked)| LinkView {
            id,
            name,
            prefix,
            created: format!("{} by {by}", local_time(created, tz)),
            last_used: used.map_or_else(|| "never".into(), |t| local_time(t, tz)),
            revoked: revoked.map(|t| local_time(t, tz)),
        })
        .collect();
    let status = if error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let html = render(&LinksPage { page, site, links, name, error, created })?;
    Ok((status, [(header::CACHE_CONTROL, "no-store")], html).into_response())
}

async fn site(state: &AppState, id: i32) -> AppResult<SiteRow> {
    sites_db::site(&state.db, id).await?.ok_or(AppError::NotFound)
}

pub async fn list(
    State(state): State<AppState>,
    RequireAdmin(_): RequireAdmin,
    page: Page,
    Path(id): Path<i32>,
) -> AppResult<Response> {
    let site = site(&state, id).await?;
    links_page(&state, page, site, String::new(), None, None).await
}

#[derive(Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    name: String,
}

pub async fn create(
    State(state): State<AppState>,
    RequireAdmin(admin): RequireAdmin,
    ClientAddr(ip): ClientAddr,
    page: Page,
    Path(id): Path<i32>,
    axum::Form(form): axum::Form<CreateForm>,
) -> AppResult<Response> {
    let site = site(&state, id).await?;
    let name = form.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 100 {
        let error = Some("Name the screen in 1 to 100 characters, e.g. “Control room, left”.");
        return links_page(&state, page, site, form.name, error, None).await;
    }
    let tokens::NewToken { secret, hash, prefix } = tokens::generate(TOKEN_PREFIX);
    let mut change = Change::begin(&state.db, admin.actor(ip)).await?;
    sqlx::query(
        r#"INSERT INTO portal."WallDisplays" ("SiteId", "Name", "Prefix", "TokenHash", "CreatedBy") VALUES ($1, $2, $3, $4, $5)"#,
    )
    .bind(site.id)
    .bind(&name)
    .bind(&prefix)
    .bind(hash.as_slice())
    .bind(&admin.email)
    .execute(change.db())
    .await?;
    let detail = serde_json::json!({ "siteId": site.id, "site": site.name, "prefix": prefix });
    state.commit(change, "wall-display.created", Some(&name), detail).await?;
    let base = state.config.public_url.as_ref().map_or(String::new(), |u| u.as_str().trim_end_matches('/').to_string());
    let created = Some((name, format!("{base}/wall/{secret}")));
    links_page(&state, page, site, String::new(), None, created).await
}

pub async fn revoke(
    State(state): State<AppState>,
    RequireAdmin(admin): RequireAdmin,
    ClientAddr(ip): ClientAddr,
    Path((site, id)): Path<(i32, Uuid)>,
) -> AppResult<Response> {
    let mut change = Change::begin(&state.db, admin.actor(ip)).await?;
    let name: Option<String> = sqlx::query_scalar(
        r#"UPDATE portal."WallDisplays" SET "RevokedAt" = now()
           WHERE "Id" = $1 AND "SiteId" = $2 AND "RevokedAt" IS NULL RETURNING "Name""#,
    )
    .bind(id)
    .bind(site)
    .fetch_optional(change.db())
    .await?;
    let name = name.ok_or(AppError::NotFound)?;
    state.commit(change, "wall-display.revoked", Some(&name), serde_json::json!({ "siteId": site })).await?;
    Ok(Redirect::to(&format!("/sites/{site}/wall-displays?notice=wall-display-revoked")).into_response())
}
