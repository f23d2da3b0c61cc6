//! API keys for the ingest API: `tau_` + 256 random bits, shown once, stored as SHA-256.
//! Settings → API keys lists (name, prefix, created, last used), creates and revokes them.

use askama::Template;
use axum::Router;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use sqlx::PgExecutor;
use uuid::Uuid;

use super::db;
use crate::auth::tokens;
use crate::change::Change;
use crate::error::{AppError, AppResult, FieldErrors};
use crate::state::AppState;
use crate::web::page::Page;
use crate::web::render;
use crate::web::secret::SecretPage;
use crate::web::session::{ActingAdmin, RequireAdmin};

pub const KEY_PREFIX: &str = "tau_";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/settings/api-keys", get(list).post(create))
        .route("/settings/api-keys/{id}/revoke", post(revoke))
}

/// The key id when `key` is a live (not revoked) API key; records its use.
pub async fn authenticate(db: impl PgExecutor<'_> + Copy, key: &str) -> Result<Option<Uuid>, sqlx::Error> {
    let wanted = tokens::hash(key);
    let Some((id, stored)) = db::live_key(db, &wanted).await? else { return Ok(None) };
    if !tokens::matches(&stored, &wanted) {
        return Ok(None);
    }
    db::record_use(db, id).await?;
    Ok(Some(id))
}

/// A request carrying a live API key (`Authorization: Bearer <key>`), by the key's id; anything
/// else is refused with 401 before the body is read.
pub struct ApiKey(pub Uuid);

impl FromRequestParts<AppState> for ApiKey {
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let key = crate::web::bearer(&parts.headers).ok_or_else(|| {
            AppError::Unauthorized("Send an API key as `Authorization: Bearer <key>` (Settings → API keys).".into())
        })?;
        match authenticate(&state.db, key).await? {
            Some(id) => Ok(ApiKey(id)),
            None => Err(AppError::Unauthorized("The API key is not valid or has been revoked.".into())),
        }
    }
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
    let keys = db::keys(&state.db)
        .await?
        .into_iter()
        .map(|k| KeyView {
            id: k.id,
            name: k.name,
            prefix: k.prefix,
            created: when(Some(k.created_at)),
            created_by: k.created_by,
            last_used: when(k.last_used_at),
            revoked: k.revoked_at.is_some(),
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
    let tokens::NewToken { secret: key, hash, prefix } = tokens::generate(KEY_PREFIX);
    let mut change = Change::begin(&state.db, admin.actor()).await?;
    let new = db::NewKey { name: &name, prefix: &prefix, hash: &hash, created_by: &admin.user.email };
    db::insert_key(change.db(), &new).await?;
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
    let name = db::revoke_key(change.db(), id).await?.ok_or(AppError::NotFound)?;
    state.commit(change, "api-key.revoked", Some(&name), serde_json::json!({})).await?;
    Ok(Redirect::to("/settings/api-keys?notice=api-key-revoked").into_response())
}
