//! API keys for the ingest API: `tau_` + 256 random bits, shown once, stored as SHA-256.
//! Settings → API keys lists (name, prefix, created, last used), creates and revokes them.

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use sqlx::PgExecutor;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::change::Change;
use crate::error::{AppError, AppResult, FieldErrors};
use crate::state::AppState;
use crate::web::page::Page;
use crate::web::render;
use crate::web::secret::SecretPage;
use crate::web::session::{ActingAdmin, RequireAdmin};

pub const KEY_PREFIX: &str = "tau_";
/// Characters of a key shown in lists to recognise it (the `tau_` prefix and 8 more).
const SHOWN_CHARS: usize = 12;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/settings/api-keys", get(list).post(create))
        .route("/settings/api-keys/{id}/revoke", post(revoke))
}

fn hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The key id when `key` is a live (not revoked) API key; records its use.
pub async fn authenticate(db: impl PgExecutor<'_> + Copy, key: &str) -> Result<Option<Uuid>, sqlx::Error> {
    let wanted = hash(key);
    let row: Option<(Uuid, Vec<u8>)> = sqlx::query_as(
        r#"SELECT "Id", "KeyHash" FROM identity."ApiKeys" WHERE "KeyHash" = $1 AND "RevokedAt" IS NULL"#,
    )
    .bind(wanted.as_slice())
    .fetch_optional(db)
    .await?;
    // The lookup is by hash, which reveals nothing about the key; the final comparison is in
    // constant time all the same.
    let Some((id, stored)) = row else { return Ok(None) };
    if !bool::from(stored.ct_eq(&wanted)) {
        return Ok(None);
    }
    sqlx::query(r#"UPDATE identity."ApiKeys" SET "LastUsedAt" = now() WHERE "Id" = $1"#).bind(id).execute(db).await?;
    Ok(Some(id))
}

pub struct KeyView {
    id: Uuid,
    name: String,
    prefix: String,
    created: String,
    created_by: String,
    last_used: String,
    revoked: bool,
}

#[derive(Template)]
#[template(path = "ingest/api_keys.html")]
struct KeysPage {
    page: Page,
    keys: Vec<KeyView>,
    name: String,
    errors: FieldErrors,
}

fn when(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "never".into(), |t| t.format("%Y-%m-%d %H:%M UTC").to_string())
}

async fn keys_page(state: &AppState, page: Page, name: String, errors: FieldErrors) -> AppResult<Html<String>> {
    type Row = (Uuid, String, String, DateTime<Utc>, String, Option<DateTime<Utc>>, Option<DateTime<Utc>>);
    let rows: Vec<Row> = sqlx::query_as(
        r#"SELECT "Id", "Name", "Prefix", "CreatedAt", "CreatedBy", "LastUsedAt", "RevokedAt"
           FROM identity."ApiKeys" ORDER BY "RevokedAt" IS NOT NULL, "CreatedAt" DESC"#,
    )
    .fetch_all(&state.db)
    .await?;
    let keys = rows
        .into_iter()
        .map(|(id, name, prefix, created, created_by, last_used, revoked)| KeyView {
            id,
            name,
            prefix,
            created: when(Some(created)),
            created_by,
            last_used: when(last_used),
            revoked: revoked.is_some(),
        })
        .collect();
    render(&KeysPage { page, keys, name, errors })
}

async fn list(State(state): State<AppState>, RequireAdmin(_): RequireAdmin, page: Page) -> AppResult<Html<String>> {
    keys_page(&state, page, String::new(), FieldErrors::default()).await
}

#[derive(Deserialize)]
struct CreateForm {
    #[serde(default)]
    name: String,
}

async fn create(
    State(state): State<AppState>,
    admin: ActingAdmin,
    page: Page,
    axum::Form(form): axum::Form<CreateForm>,
) -> AppResult<Response> {
    let name = form.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 100 {
        let errors =
            FieldErrors::of("name", "Give the key a name of 1 to 100 characters, e.g. the system that will use it.");
        return Ok(
            (StatusCode::UNPROCESSABLE_ENTITY, keys_page(&state, page, form.name, errors).await?).into_response()
        );
    }
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let key = format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let prefix: String = key.chars().take(SHOWN_CHARS).collect();
    let mut change = Change::begin(&state.db, admin.actor()).await?;
    sqlx::query(r#"INSERT INTO identity."ApiKeys" ("Name", "Prefix", "KeyHash", "CreatedBy") VALUES ($1, $2, $3, $4)"#)
        .bind(&name)
        .bind(&prefix)
        .bind(hash(&key).as_slice())
        .bind(&admin.user.email)
        .execute(change.db())
        .await?;
    state.commit(change, "api-key.created", Some(&name), serde_json::json!({ "prefix": prefix })).await?;
    let shown = SecretPage {
        page,
        heading: "API key created",
        subject_label: "The API key",
        subject: name,
        secret: key,
        hint: "send it as `Authorization: Bearer <key>` to POST /api/ingest. It cannot be shown again; revoke it and create another if it is lost.",
        back_url: "/settings/api-keys",
        back_label: "Back to API keys",
    };
    shown.response()
}

async fn revoke(State(state): State<AppState>, admin: ActingAdmin, Path(id): Path<Uuid>) -> AppResult<Response> {
    let mut change = Change::begin(&state.db, admin.actor()).await?;
    let name: Option<String> = sqlx::query_scalar(
        r#"UPDATE identity."ApiKeys" SET "RevokedAt" = now() WHERE "Id" = $1 AND "RevokedAt" IS NULL RETURNING "Name""#,
    )
    .bind(id)
    .fetch_optional(change.db())
    .await?;
    let name = name.ok_or(AppError::NotFound)?;
    state.commit(change, "api-key.revoked", Some(&name), serde_json::json!({})).await?;
    Ok(Redirect::to("/settings/api-keys?notice=api-key-revoked").into_response())
}
