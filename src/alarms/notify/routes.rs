//! Settings → Notifications (admins): recipient lists (create, edit, delete; audited) and every
//! delivery with its outcome.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};

use super::db::{self, DeliveryRow, ListRow};
use super::forms::{DUPLICATE_LIST, ListForm};
use crate::alarms::rules::Severity;
use crate::change::Change;
use crate::error::{AppError, AppResult, FieldErrors, FormResult, ResultExt};
use crate::sites::readings::local_time;
use crate::state::AppState;
use crate::web::page::Page;
use crate::web::render;
use crate::web::session::{ActingAdmin, RequireAdmin};

/// Deliveries the page shows, newest first.
const RECENT: i64 = 100;

pub struct DeliveryView {
    created: String,
    list: String,
    channel: String,
    target: String,
    subject: String,
    status: String,
    status_class: &'static str,
    last_error: Option<String>,
}

fn delivery_view(d: &DeliveryRow, tz: chrono_tz::Tz) -> DeliveryView {
    let (status, status_class) = match (d.status.as_str(), d.attempts) {
        ("sent", 1) => (format!("Sent {}", d.sent_at.map(|t| local_time(t, tz)).unwrap_or_default()), "on"),
        ("sent", n) => (format!("Sent after {n} attempts"), "on"),
        ("failed", n) => (format!("Failed, gave up after {n} attempts"), "off"),
        (_, 0) => ("Waiting to be sent".into(), ""),
        (_, n) => (format!("Failed {n} times, will retry"), "off"),
    };
    DeliveryView {
        created: local_time(d.created_at, tz),
        list: d.list_name.clone(),
        channel: if d.channel == "email" { "E-mail".into() } else { "Webhook".into() },
        target: d.target.clone(),
        subject: d.subject.clone(),
        status,
        status_class,
        last_error: d.last_error.clone(),
    }
}

pub struct ListView {
    id: i32,
    name: String,
    emails: String,
    webhook_url: String,
    webhook_secret: String,
    min_severity: &'static str,
    quiet: String,
    enabled: bool,
}

fn list_view(l: &ListRow) -> ListView {
    ListView {
        id: l.id,
        name: l.name.clone(),
        emails: l.emails.join(", "),
        webhook_url: l.webhook_url.clone().unwrap_or_default(),
        webhook_secret: l.webhook_secret.clone(),
        min_severity: Severity::parse(&l.min_severity).unwrap_or(Severity::Warning).label(),
        quiet: match (l.quiet_from, l.quiet_until) {
            (Some(f), Some(u)) => format!("{}–{} {}", f.format("%H:%M"), u.format("%H:%M"), l.time_zone),
            _ => "none".into(),
        },
        enabled: l.enabled,
    }
}

#[derive(Template)]
#[template(path = "alarms/notifications.html")]
struct ListsPage {
    page: Page,
    lists: Vec<ListView>,
    deliveries: Vec<DeliveryView>,
    email_configured: bool,
}

pub async fn list_page(
    State(state): State<AppState>,
    RequireAdmin(_): RequireAdmin,
    page: Page,
) -> AppResult<Html<String>> {
    let lists = db::lists(&state.db).await?.iter().map(list_view).collect();
    let tz = state.config.default_time_zone;
    let deliveries = db::recent(&state.db, RECENT).await?.iter().map(|d| delivery_view(d, tz)).collect();
    render(&ListsPage { page, lists, deliveries, email_configured: state.config.notifications.smtp.is_some() })
}

#[derive(Template)]
#[template(path = "alarms/list_form.html")]
struct ListFormPage {
    page: Page,
    editing: Option<(i32, String)>,
    form: ListForm,
    errors: FieldErrors,
    severities: [Severity; 4],
}

fn list_form(page: Page, editing: Option<(i32, String)>, form: ListForm, errors: FieldErrors) -> AppResult<Response> {
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    let html = render(&ListFormPage { page, editing, form, errors, severities: Severity::ALL })?;
    Ok((status, html).into_response())
}

fn duplicate() -> FieldErrors {
    FieldErrors::of("name", DUPLICATE_LIST)
}

pub async fn new_list(State(state): State<AppState>, RequireAdmin(_): RequireAdmin, page: Page) -> AppResult<Response> {
    list_form(page, None, ListForm::new_list(state.config.default_time_zone.name()), FieldErrors::default())
}

pub async fn create_list(
    State(state): State<AppState>,
    admin: ActingAdmin,
    page: Page,
    axum::Form(form): axum::Form<ListForm>,
) -> AppResult<Response> {
    let created = async {
        let list = form.validate()?;
        let secret = crate::auth::tokens::generate("whsec_").secret;
        let mut change = Change::begin(&state.db, admin.actor()).await?;
        db::insert_list(&mut change, &list.fields(), &secret).await.on_constraint(db::LIST_NAME_UNIQUE, duplicate)?;
        state.commit(change, "recipient-list.created", Some(&list.name), list.detail()).await?;
        Ok::<_, AppError>(())
    };
    match created.await.field_errors()? {
        Ok(()) => Ok(Redirect::to("/settings/notifications?notice=recipient-list-saved").into_response()),
        Err(errors) => list_form(page, None, form, errors),
    }
}

pub async fn edit_list(
    State(state): State<AppState>,
    RequireAdmin(_): RequireAdmin,
    page: Page,
    Path(id): Path<i32>,
) -> AppResult<Response> {
    let list = db::list(&state.db, id).await?.ok_or(AppError::NotFound)?;
    list_form(page, Some((id, list.name.clone())), ListForm::from(&list), FieldErrors::default())
}

pub async fn update_list(
    State(state): State<AppState>,
    admin: ActingAdmin,
    page: Page,
    Path(id): Path<i32>,
    axum::Form(form): axum::Form<ListForm>,
) -> AppResult<Response> {
    let current = db::list(&state.db, id).await?.ok_or(AppError::NotFound)?;
    let updated = async {
        let list = form.validate()?;
        let mut change = Change::begin(&state.db, admin.actor()).await?;
        let found =
            db::update_list(&mut change, id, &list.fields()).await.on_constraint(db::LIST_NAME_UNIQUE, duplicate)?;
        if !found {
            return Err(AppError::NotFound);
        }
        state.commit(change, "recipient-list.updated", Some(&list.name), list.detail()).await?;
        Ok(())
    };
    match updated.await.field_errors()? {
        Ok(()) => Ok(Redirect::to("/settings/notifications?notice=recipient-list-saved").into_response()),
        Err(errors) => list_form(page, Some((id, current.name)), form, errors),
    }
}

#[derive(Template)]
#[template(path = "alarms/delete_list.html")]
struct DeletePage {
    page: Page,
    id: i32,
    name: String,
}

pub async fn confirm_delete(
    State(state): State<AppState>,
    RequireAdmin(_): RequireAdmin,
    page: Page,
    Path(id): Path<i32>,
) -> AppResult<Html<String>> {
    let list = db::list(&state.db, id).await?.ok_or(AppError::NotFound)?;
    render(&DeletePage { page, id, name: list.name })
}

pub async fn delete_list(
    State(state): State<AppState>,
    admin: ActingAdmin,
    Path(id): Path<i32>,
) -> AppResult<Response> {
    let mut change = Change::begin(&state.db, admin.actor()).await?;
    let name = db::delete_list(&mut change, id).await?.ok_or(AppError::NotFound)?;
    state.commit(change, "recipient-list.deleted", Some(&name), serde_json::json!({ "id": id })).await?;
    Ok(Redirect::to("/settings/notifications?notice=recipient-list-deleted").into_response())
}
