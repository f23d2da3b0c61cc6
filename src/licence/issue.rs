//! Issuing licences on the Admin portal: a customer's Licences page lists what was issued and
//! signs a new licence with `License__SigningKey` (the private key only the Admin holds). Every
//! licence issued is stored (fleet."Licences", this module's table) and audited.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use sqlx::PgExecutor;
use uuid::Uuid;

use super::token::{self, Claims, ISSUER, Limits};
use crate::change::Change;
use crate::error::{AppError, AppResult, FieldErrors};
use crate::fleet::db::{self as fleet_db, Customer};
use crate::state::AppState;
use crate::web::page::Page;
use crate::web::render;
use crate::web::session::{ActingAdmin, RequireAdmin};

/// The features a licence can carry: (name in the licence, what it unlocks).
pub const FEATURES: [(&str, &str); 1] = [(crate::mqtt::LICENCE_FEATURE, "MQTT ingestion (device broker credentials)")];

pub struct Issued {
    id: Uuid,
    issued: String,
    expires: String,
    limits: String,
    features: String,
    issued_by: String,
    token: String,
}

#[derive(sqlx::FromRow)]
struct IssuedRow {
    #[sqlx(rename = "Id")]
    id: Uuid,
    #[sqlx(rename = "IssuedAt")]
    issued_at: DateTime<Utc>,
    #[sqlx(rename = "ExpiresAt")]
    expires_at: DateTime<Utc>,
    #[sqlx(rename = "Claims")]
    claims: sqlx::types::Json<Claims>,
    #[sqlx(rename = "IssuedBy")]
    issued_by: String,
    #[sqlx(rename = "Token")]
    token: String,
}

async fn issued(db: impl PgExecutor<'_>, customer: Uuid) -> Result<Vec<IssuedRow>, sqlx::Error> {
    sqlx::query_as(
        r#"SELECT "Id", "IssuedAt", "ExpiresAt", "Claims", "IssuedBy", "Token" FROM fleet."Licences"
           WHERE "CustomerId" = $1 ORDER BY "IssuedAt" DESC, "Id""#,
    )
    .bind(customer)
    .fetch_all(db)
    .await
}

async fn store(db: impl PgExecutor<'_>, claims: &Claims, token: &str, by: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        r#"INSERT INTO fleet."Licences" ("Id", "CustomerId", "IssuedAt", "ExpiresAt", "Claims", "Token", "IssuedBy")
           VALUES ($1, $2, $3, $4, $5, $6, $7)"#,
    )
    .bind(claims.jti)
    .bind(claims.sub)
    .bind(claims.issued_at())
    .bind(claims.expires_at())
    .bind(sqlx::types::Json(claims))
    .bind(token)
    .bind(by)
    .execute(db)
    .await?;
    Ok(())
}

fn limit_text(l: Option<u32>) -> String {
    l.map_or_else(|| "unlimited".into(), |n| n.to_string())
}

fn date(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

#[derive(Deserialize, Default, Clone)]
pub struct IssueForm {
    #[serde(default)]
    expires: String,
    #[serde(default)]
    devices: String,
    #[serde(default)]
    sites: String,
    #[serde(default)]
    users: String,
    #[serde(default)]
    grace_days: String,
    /// A checkbox: present when ticked.
    mqtt: Option<String>,
}

#[derive(Template)]
#[template(path = "licence/issue.html")]
struct IssuePage {
    page: Page,
    customer: Customer,
    licences: Vec<Issued>,
    form: IssueForm,
    errors: FieldErrors,
    /// The key just issued, shown with how to install it.
    new_key: Option<String>,
    public_key: Option<String>,
    can_issue: bool,
}

async fn page_for(
    state: &AppState,
    page: Page,
    customer: Customer,
    form: IssueForm,
    errors: FieldErrors,
    new_key: Option<String>,
) -> AppResult<Html<String>> {
    let licences = issued(&state.db, customer.id)
        .await?
        .into_iter()
        .map(|r| {
            let l = r.claims.limits;
            Issued {
                id: r.id,
                issued: date(r.issued_at),
                expires: date(r.expires_at),
                limits: format!(
                    "{} sites, {} devices, {} users",
                    limit_text(l.sites),
                    limit_text(l.devices),
                    limit_text(l.users)
                ),
                features: r.claims.features.join(", "),
                issued_by: r.issued_by,
                token: r.token,
            }
        })
        .collect();
    let signing = state.config.license.signing_key.as_ref();
    render(&IssuePage {
        page,
        customer,
        licences,
        form,
        errors,
        new_key,
        public_key: signing.map(|k| k.public_key().text()),
        can_issue: signing.is_some(),
    })
}

async fn found(state: &AppState, id: Uuid) -> AppResult<Customer> {
    fleet_db::customer(&state.db, id).await?.ok_or(AppError::NotFound)
}

pub async fn list(
    State(state): State<AppState>,
    RequireAdmin(_): RequireAdmin,
    page: Page,
    Path(id): Path<Uuid>,
) -> AppResult<Html<String>> {
    let customer = found(&state, id).await?;
    let form = IssueForm { grace_days: "14".into(), mqtt: Some("on".into()), ..IssueForm::default() };
    page_for(&state, page, customer, form, FieldErrors::default(), None).await
}

/// A limit field: empty is unlimited.
fn limit_field(raw: &str, field: &str, errors: &mut FieldErrors) -> Option<u32> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    match raw.parse::<u32>() {
        Ok(n) if (1..=1_000_000).contains(&n) => Some(n),
        _ => {
            errors.add(field, "Enter a whole number from 1 to 1000000, or leave it empty for no limit.");
            None
        }
    }
}

/// The claims the form asks for, or what is wrong with it.
fn claims(form: &IssueForm, customer: &Customer, now: DateTime<Utc>) -> Result<Claims, FieldErrors> {
    let mut errors = FieldErrors::default();
    let expires = match NaiveDate::parse_from_str(form.expires.trim(), "%Y-%m-%d") {
        Ok(day) => day.and_hms_opt(0, 0, 0).map(|t| t.and_utc()),
        Err(_) => None,
    };
    match expires {
        None => errors.add("expires", "Enter the expiry date as YYYY-MM-DD."),
        Some(t) if t <= now => errors.add("expires", "The expiry date must be in the future."),
        Some(_) => {}
    }
    let limits = Limits {
        devices: limit_field(&form.devices, "devices", &mut errors),
        sites: limit_field(&form.sites, "sites", &mut errors),
        users: limit_field(&form.users, "users", &mut errors),
    };
    let grace_days = match form.grace_days.trim().parse::<u32>() {
        Ok(n) if n <= 365 => n,
        _ => {
            errors.add("grace_days", "Enter the days of grace after expiry, from 0 to 365.");
            0
        }
    };
    let features = FEATURES
        .iter()
        .filter(|(f, _)| *f == crate::mqtt::LICENCE_FEATURE && form.mqtt.is_some())
        .map(|(f, _)| f.to_string());
    errors.or_ok(())?;
    let expires = expires.unwrap_or(now);
    Ok(Claims {
        iss: ISSUER.into(),
        jti: Uuid::new_v4(),
        sub: customer.id,
        customer_code: customer.code.clone(),
        company: customer.name.clone(),
        limits,
        features: features.collect(),
        iat: now.timestamp(),
        exp: expires.timestamp(),
        grace_days,
    })
}

pub async fn issue(
    State(state): State<AppState>,
    admin: ActingAdmin,
    page: Page,
    Path(id): Path<Uuid>,
    axum::Form(form): axum::Form<IssueForm>,
) -> AppResult<Response> {
    let customer = found(&state, id).await?;
    let Some(key) = state.config.license.signing_key.clone() else {
        return Err(AppError::Forbidden(
            "This Admin portal has no signing key: set License__SigningKey_FILE to the Ed25519 private key \
             (tau-portal licence keygen writes one) and restart it."
                .into(),
        ));
    };
    let claims = match claims(&form, &customer, state.clock.now()) {
        Ok(claims) => claims,
        Err(errors) => {
            let html = page_for(&state, page, customer, form, errors, None).await?;
            return Ok((StatusCode::UNPROCESSABLE_ENTITY, html).into_response());
        }
    };
    let token = token::sign(&claims, &key);
    let mut change = Change::begin(&state.db, admin.actor()).await?;
    store(change.db(), &claims, &token, &admin.user.email).await?;
    let detail = serde_json::json!({
        "licence": claims.jti, "expires": claims.expires_at(), "limits": claims.limits, "features": claims.features,
        "graceDays": claims.grace_days,
    });
    state.commit(change, "fleet.licence-issued", Some(&customer.code), detail).await?;
    tracing::info!(customer = %customer.code, licence = %claims.jti, "Issued a licence for {} until {}", customer.code, date(claims.expires_at()));
    let fresh = IssueForm { grace_days: form.grace_days.clone(), mqtt: form.mqtt.clone(), ..IssueForm::default() };
    Ok(page_for(&state, page, customer, fresh, FieldErrors::default(), Some(token)).await?.into_response())
}
