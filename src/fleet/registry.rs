//! The Admin's customer registry pages: Customers, Register customer (the push token shown
//! once), Customer detail with its Recent ingest tab, Edit (name, Active), Rotate token and
//! Delete with a confirmation that says what goes.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::db::{self, Customer, Event};
use crate::auth::tokens;
use crate::change::Change;
use crate::error::{AppError, AppResult, FieldErrors, FormResult, ResultExt};
use crate::state::AppState;
use crate::web::client::ClientAddr;
use crate::web::page::Page;
use crate::web::render;
use crate::web::secret::SecretPage;
use crate::web::session::RequireAdmin;

/// Push tokens start with this, to tell them from ingest API keys (`tau_`).
pub const TOKEN_PREFIX: &str = "taufleet_";
const RECENT_EVENTS: i64 = 100;

/// "3 min ago"-style text for a past time, or "never".
fn ago(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    let Some(t) = t else { return "never".into() };
    let s = (now - t).num_seconds().max(0);
    match s {
        0..60 => format!("{s} s ago"),
        60..3600 => format!("{} min ago", s / 60),
        3600..172_800 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

fn at(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

pub struct CustomerView {
    pub id: Uuid,
    pub code: String,
    pub name: String,
    pub active: bool,
    pub last_push: String,
    /// How far the newest reading received trails now.
    pub lag: String,
    pub rows_24h: i64,
    pub sites: i64,
    pub devices: i64,
    pub last_error: String,
    pub token_prefix: String,
    pub created: String,
}

impl CustomerView {
    fn new(c: Customer, now: DateTime<Utc>) -> CustomerView {
        let lag = c.last_reading_at.map_or_else(|| "–".into(), |t| ago(Some(t), now).replace(" ago", ""));
        let last_error = match (c.last_error, c.last_error_at) {
            (Some(e), Some(t)) => format!("{e} ({})", ago(Some(t), now)),
            (Some(e), None) => e,
            _ => String::new(),
        };
        CustomerView {
            id: c.id,
            code: c.code,
            name: c.name,
            active: c.active,
            last_push: ago(c.last_push_at, now),
            lag,
            rows_24h: c.rows_24h,
            sites: c.sites,
            devices: c.devices,
            last_error,
            token_prefix: c.token_prefix,
            created: at(c.created_at),
        }
    }
}

#[derive(Template)]
#[template(path = "fleet/customers.html")]
struct ListPage {
    page: Page,
    customers: Vec<CustomerView>,
}

pub async fn list(State(state): State<AppState>, RequireAdmin(_): RequireAdmin, page: Page) -> AppResult<Html<String>> {
    let now = state.clock.now();
    let customers = db::customers(&state.db).await?.into_iter().map(|c| CustomerView::new(c, now)).collect();
    render(&ListPage { page, customers })
}

/// The register and edit form, with its field errors.
#[derive(Template)]
#[template(path = "fleet/customer_form.html")]
struct FormPage {
    page: Page,
    /// `None`: registering.
    editing: Option<Uuid>,
    code: String,
    name: String,
    active: bool,
    errors: FieldErrors,
}

pub async fn new_form(RequireAdmin(_): RequireAdmin, page: Page) -> AppResult<Html<String>> {
    render(&FormPage {
        page,
        editing: None,
        code: String::new(),
        name: String::new(),
        active: true,
        errors: FieldErrors::default(),
    })
}

#[derive(Deserialize)]
pub struct CustomerForm {
    #[serde(default)]
    code: String,
    #[serde(default)]
    name: String,
    /// A checkbox: present when ticked.
    active: Option<String>,
}

/// The code as stored (upper case), or why it cannot be one.
pub fn valid_code(raw: &str) -> Result<String, &'static str> {
    let code = raw.trim().to_ascii_uppercase();
    let b = code.as_bytes();
    let ok = b.len() == 7 && b[..3].iter().all(u8::is_ascii_uppercase) && b[3..].iter().all(u8::is_ascii_digit);
    if ok { Ok(code) } else { Err("Enter three letters and four digits, e.g. ABC0001.") }
}

pub fn valid_name(raw: &str) -> Result<String, &'static str> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > 200 {
        Err("Enter the customer's name (1 to 200 characters).")
    } else {
        Ok(name.to_string())
    }
}

/// The registration form's code and name, or what is wrong with them.
fn registration(form: &CustomerForm) -> Result<(String, String), FieldErrors> {
    let (code, name) = (valid_code(&form.code), valid_name(&form.name));
    let mut errors = FieldErrors::default();
    errors.check("code", code.as_ref().err().map(|e| e.to_string()));
    errors.check("name", name.as_ref().err().map(|e| e.to_string()));
    match (code, name) {
        (Ok(code), Ok(name)) => Ok((code, name)),
        _ => Err(errors),
    }
}

fn invalid(page: FormPage) -> AppResult<Response> {
    Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)?).into_response())
}

pub async fn register(
    State(state): State<AppState>,
    RequireAdmin(admin): RequireAdmin,
    ClientAddr(ip): ClientAddr,
    page: Page,
    axum::Form(form): axum::Form<CustomerForm>,
) -> AppResult<Response> {
    let form_page = |page, errors| FormPage {
        page,
        editing: None,
        code: form.code.clone(),
        name: form.name.clone(),
        active: true,
        errors,
    };
    let (code, name) = match registration(&form) {
        Ok(valid) => valid,
        Err(errors) => return invalid(form_page(page, errors)),
    };
    let token = tokens::generate(TOKEN_PREFIX);
    let mut change = Change::begin(&state.db, admin.actor(ip)).await?;
    let registered = db::register(change.db(), &code, &name, &token, &admin.email)
        .await
        .on_constraint(db::CODE_UNIQUE, || {
            FieldErrors::of("code", format!("A customer with code {code} is already registered."))
        })
        .field_errors()?;
    let id = match registered {
        Ok(id) => id,
        Err(errors) => return invalid(form_page(page, errors)),
    };
    let detail = serde_json::json!({ "id": id, "name": name, "tokenPrefix": token.prefix });
    state.commit(change, "fleet.customer-registered", Some(&code), detail).await?;
    tracing::info!(customer = %code, "Registered fleet customer {code}");
    Ok(render(&token_page(page, format!("{code} ({name})"), token.secret))?.into_response())
}

fn token_page(page: Page, subject: String, secret: String) -> SecretPage {
    SecretPage {
        page,
        heading: "Push token",
        subject_label: "The push token of",
        subject,
        secret,
        hint: "put it in the customer's .env as FleetIngest__Token (with FleetIngest__Enabled=true and FleetIngest__Url \
               set to this portal's address) and restart their portal. If it is lost, rotate it.",
        back_url: "/fleet/customers",
        back_label: "Back to Customers",
    }
}

#[derive(Deserialize)]
pub struct DetailQuery {
    tab: Option<String>,
}

pub struct EventView {
    batch_id: String,
    batch_type: String,
    accepted: i32,
    duplicates: i32,
    rejected: i32,
    status: i32,
    ok: bool,
    error: String,
    received: String,
}

impl From<Event> for EventView {
    fn from(e: Event) -> EventView {
        EventView {
            batch_id: e.batch_id.map(|b| b.to_string()).unwrap_or_default(),
            batch_type: e.batch_type,
            accepted: e.accepted,
            duplicates: e.duplicates,
            rejected: e.rejected,
            status: e.status,
            ok: e.status == 200,
            error: e.error.unwrap_or_default(),
            received: at(e.received_at),
        }
    }
}

#[derive(Template)]
#[template(path = "fleet/customer.html")]
struct DetailPage {
    page: Page,
    customer: CustomerView,
    ingest_tab: bool,
    events: Vec<EventView>,
    rows_total: i64,
}

async fn found(state: &AppState, id: Uuid) -> AppResult<Customer> {
    db::customer(&state.db, id).await?.ok_or(AppError::NotFound)
}

pub async fn detail(
    State(state): State<AppState>,
    RequireAdmin(_): RequireAdmin,
    page: Page,
    Path(id): Path<Uuid>,
    Query(q): Query<DetailQuery>,
) -> AppResult<Html<String>> {
    let customer = CustomerView::new(found(&state, id).await?, state.clock.now());
    let ingest_tab = q.tab.as_deref() == Some("ingest");
    let events = if ingest_tab {
        db::recent_events(&state.db, id, RECENT_EVENTS).await?.into_iter().map(EventView::from).collect()
    } else {
        Vec::new()
    };
    let rows_total = if ingest_tab { 0 } else { db::measurement_rows(&state.db, id).await? };
    render(&DetailPage { page, customer, ingest_tab, events, rows_total })
}

pub async fn edit_form(
    State(state): State<AppState>,
    RequireAdmin(_): RequireAdmin,
    page: Page,
    Path(id): Path<Uuid>,
) -> AppResult<Html<String>> {
    let c = found(&state, id).await?;
    render(&FormPage {
        page,
        editing: Some(id),
        code: c.code,
        name: c.name,
        active: c.active,
        errors: FieldErrors::default(),
    })
}

pub async fn edit(
    State(state): State<AppState>,
    RequireAdmin(admin): RequireAdmin,
    ClientAddr(ip): ClientAddr,
    page: Page,
    Path(id): Path<Uuid>,
    axum::Form(form): axum::Form<CustomerForm>,
) -> AppResult<Response> {
    let c = found(&state, id).await?;
    let active = form.active.is_some();
    let name = match valid_name(&form.name) {
        Ok(name) => name,
        Err(e) => {
            return invalid(FormPage {
                page,
                editing: Some(id),
                code: c.code,
                name: form.name,
                active,
                errors: FieldErrors::of("name", e),
            });
        }
    };
    let mut change = Change::begin(&state.db, admin.actor(ip)).await?;
    let code = db::update(change.db(), id, &name, active).await?.ok_or(AppError::NotFound)?;
    let detail = serde_json::json!({ "name": name, "active": active });
    state.commit(change, "fleet.customer-updated", Some(&code), detail).await?;
    Ok(Redirect::to(&format!("/fleet/customers/{id}?notice=customer-updated")).into_response())
}

pub async fn rotate(
    State(state): State<AppState>,
    RequireAdmin(admin): RequireAdmin,
    ClientAddr(ip): ClientAddr,
    page: Page,
    Path(id): Path<Uuid>,
) -> AppResult<Response> {
    let token = tokens::generate(TOKEN_PREFIX);
    let mut change = Change::begin(&state.db, admin.actor(ip)).await?;
    let code = db::rotate(change.db(), id, &token).await?.ok_or(AppError::NotFound)?;
    let detail = serde_json::json!({ "tokenPrefix": token.prefix });
    state.commit(change, "fleet.token-rotated", Some(&code), detail).await?;
    tracing::info!(customer = %code, "Rotated the push token of fleet customer {code}; the old token is refused");
    Ok(render(&token_page(page, code, token.secret))?.into_response())
}

#[derive(Template)]
#[template(path = "fleet/delete_customer.html")]
struct DeletePage {
    page: Page,
    customer: CustomerView,
    rows: i64,
    events: i64,
}

pub async fn delete_form(
    State(state): State<AppState>,
    RequireAdmin(_): RequireAdmin,
    page: Page,
    Path(id): Path<Uuid>,
) -> AppResult<Html<String>> {
    let customer = CustomerView::new(found(&state, id).await?, state.clock.now());
    let rows = db::measurement_rows(&state.db, id).await?;
    let events = db::event_count(&state.db, id).await?;
    render(&DeletePage { page, customer, rows, events })
}

pub async fn delete(
    State(state): State<AppState>,
    RequireAdmin(admin): RequireAdmin,
    ClientAddr(ip): ClientAddr,
    Path(id): Path<Uuid>,
) -> AppResult<Response> {
    let mut change = Change::begin(&state.db, admin.actor(ip)).await?;
    let code = db::delete(change.db(), id).await?.ok_or(AppError::NotFound)?;
    state.commit(change, "fleet.customer-deleted", Some(&code), serde_json::json!({})).await?;
    tracing::info!(customer = %code, "Deleted fleet customer {code} with its sites, devices, measurements and events");
    Ok(Redirect::to("/fleet/customers?notice=customer-deleted").into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_three_letters_and_four_digits() {
        assert_eq!(valid_code(" abc0001 "), Ok("ABC0001".into()));
        for bad in ["", "AB0001", "ABCD001", "ABC00011", "ABC-001", "ÄBC0001", "abc000x"] {
            assert!(valid_code(bad).is_err(), "{bad}");
        }
        assert!(valid_name("  ").is_err());
        assert!(valid_name(&"x".repeat(201)).is_err());
        assert_eq!(valid_name(" Acme Corp "), Ok("Acme Corp".into()));
    }
}
