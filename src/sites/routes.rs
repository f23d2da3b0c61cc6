//! The sites pages: the list, a site with its devices, and create, edit and delete (admins).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono_tz::Tz;

use super::Editing;
use super::db::{self, DeviceRow, SiteRow};
use super::forms::{self, DUPLICATE_SITE, SiteForm, ValidSite};
use super::readings::{self, local_time};
use crate::change::Change;
use crate::dashboards::site_page::{self, SiteDashboard, SiteQuery};
use crate::error::{AppError, AppResult, FieldErrors, FormResult, ResultExt};
use crate::state::AppState;
use crate::web::page::Page;
use crate::web::render;
use crate::web::session::{ActingAdmin, CurrentUser, RequireAdmin};

pub struct SiteListView {
    id: i32,
    name: String,
    address: String,
    time_zone: String,
    devices: String,
}

#[derive(Template)]
#[template(path = "sites/list.html")]
struct ListPage {
    page: Page,
    sites: Vec<SiteListView>,
}

pub async fn list(State(state): State<AppState>, CurrentUser(_): CurrentUser, page: Page) -> AppResult<Html<String>> {
    let sites = db::list_sites(&state.db)
        .await?
        .into_iter()
        .map(|s| SiteListView {
            id: s.id,
            name: s.name,
            address: s.address,
            time_zone: s.time_zone,
            devices: super::count(s.device_count, "device", "devices"),
        })
        .collect();
    render(&ListPage { page, sites })
}

/// A device as a row of its site's table.
pub struct DeviceListView {
    pub id: i32,
    pub name: String,
    pub external_id: String,
    pub model: String,
    pub source: String,
    pub status: &'static str,
    pub status_class: &'static str,
    pub last_reading: String,
    pub last_error: Option<String>,
}

pub fn device_list_view(d: &DeviceRow, tz: Tz, now: chrono::DateTime<chrono::Utc>) -> DeviceListView {
    let status = readings::status(
        d.enabled,
        d.last_reading_at,
        d.last_error_at,
        d.consecutive_failures,
        d.poll_interval_seconds,
        now,
    );
    let source = match &d.modbus_host {
        Some(host) if d.source == forms::MODBUS_TCP => {
            format!("Modbus TCP {host}:{}, unit {}", d.modbus_port, d.modbus_unit_id)
        }
        _ if d.source == forms::MQTT => "MQTT".into(),
        _ => "Push".into(),
    };
    DeviceListView {
        id: d.id,
        name: d.name.clone(),
        external_id: d.external_id.clone(),
        model: forms::model_label(&d.model).to_string(),
        source,
        status: status.label(),
        status_class: status.class(),
        last_reading: d.last_reading_at.map_or_else(|| "never".into(), |t| local_time(t, tz)),
        last_error: d.last_error.clone().filter(|_| status == readings::Status::Failing),
    }
}

#[derive(Template)]
#[template(path = "sites/site.html")]
struct SitePage {
    page: Page,
    site: SiteRow,
    devices: Vec<DeviceListView>,
    dashboard: SiteDashboard,
}

pub async fn show(
    State(state): State<AppState>,
    CurrentUser(_): CurrentUser,
    page: Page,
    Path(id): Path<i32>,
    Query(query): Query<SiteQuery>,
) -> AppResult<Html<String>> {
    let site = db::site(&state.db, id).await?.ok_or(AppError::NotFound)?;
    let (tz, now) = (site.zone(), state.clock.now());
    let rows = db::devices_of_site(&state.db, id).await?;
    let dashboard = site_page::dashboard(&state, &site, &rows, &query).await?;
    let devices = rows.iter().map(|d| device_list_view(d, tz, now)).collect();
    render(&SitePage { page, site, devices, dashboard })
}

#[derive(Template)]
#[template(path = "sites/site_form.html")]
struct SiteFormPage {
    page: Page,
    /// The site being edited (`None`: a new site) and its stored name, for the breadcrumb.
    editing: Option<Editing>,
    form: SiteForm,
    errors: FieldErrors,
    time_zones: &'static [Tz],
}

fn site_form(page: Page, editing: Option<Editing>, form: SiteForm, errors: FieldErrors) -> AppResult<Html<String>> {
    render(&SiteFormPage { page, editing, form, errors, time_zones: &chrono_tz::TZ_VARIANTS })
}

fn invalid(page: Page, editing: Option<Editing>, form: SiteForm, errors: FieldErrors) -> AppResult<Response> {
    Ok((StatusCode::UNPROCESSABLE_ENTITY, site_form(page, editing, form, errors)?).into_response())
}

fn duplicate_site() -> FieldErrors {
    FieldErrors::of("name", DUPLICATE_SITE)
}

pub async fn new_site(
    State(state): State<AppState>,
    RequireAdmin(_): RequireAdmin,
    page: Page,
) -> AppResult<Html<String>> {
    let form = SiteForm {
        time_zone: state.config.default_time_zone.name().to_string(),
        meter_read_day: "1".into(),
        ..Default::default()
    };
    site_form(page, None, form, FieldErrors::default())
}

fn site_detail(site: &ValidSite) -> serde_json::Value {
    serde_json::json!({
        "name": site.name,
        "timeZone": site.time_zone.name(),
        "address": site.address,
        "nmd": site.nmd.map(|n| n.to_string()),
        "meterReadDay": site.meter_read_day,
    })
}

pub async fn create_site(
    State(state): State<AppState>,
    admin: ActingAdmin,
    page: Page,
    axum::Form(form): axum::Form<SiteForm>,
) -> AppResult<Response> {
    let created = async {
        let site = form.validate()?;
        let mut change = Change::begin(&state.db, admin.actor()).await?;
        crate::licence::limits::admit(&state, &mut change, crate::licence::limits::Resource::Sites).await?;
        let id =
            db::insert_site(change.db(), &site.fields()).await.on_constraint(db::SITE_NAME_UNIQUE, duplicate_site)?;
        state.commit(change, "site.created", Some(&site.name), site_detail(&site)).await?;
        Ok::<_, AppError>(id)
    };
    match created.await.field_errors()? {
        Ok(id) => Ok(Redirect::to(&format!("/sites/{id}?notice=site-created")).into_response()),
        Err(errors) => invalid(page, None, form, errors),
    }
}

pub async fn edit_site(
    State(state): State<AppState>,
    RequireAdmin(_): RequireAdmin,
    page: Page,
    Path(id): Path<i32>,
) -> AppResult<Html<String>> {
    let site = db::site(&state.db, id).await?.ok_or(AppError::NotFound)?;
    site_form(page, Some(Editing { id, name: site.name.clone() }), SiteForm::from(&site), FieldErrors::default())
}

pub async fn update_site(
    State(state): State<AppState>,
    admin: ActingAdmin,
    page: Page,
    Path(id): Path<i32>,
    axum::Form(form): axum::Form<SiteForm>,
) -> AppResult<Response> {
    let current = db::site(&state.db, id).await?.ok_or(AppError::NotFound)?;
    let updated = async {
        let site = form.validate()?;
        let mut change = Change::begin(&state.db, admin.actor()).await?;
        let found = db::update_site(change.db(), id, &site.fields())
            .await
            .on_constraint(db::SITE_NAME_UNIQUE, duplicate_site)?;
        if !found {
            return Err(AppError::NotFound);
        }
        state.commit(change, "site.updated", Some(&site.name), site_detail(&site)).await?;
        Ok(())
    };
    match updated.await.field_errors()? {
        Ok(()) => Ok(Redirect::to(&format!("/sites/{id}?notice=site-updated")).into_response()),
        Err(errors) => invalid(page, Some(Editing { id, name: current.name }), form, errors),
    }
}

#[derive(Template)]
#[template(path = "sites/delete_site.html")]
struct DeleteSitePage {
    page: Page,
    site: SiteRow,
    devices: String,
    readings: String,
}

pub async fn confirm_delete(
    State(state): State<AppState>,
    RequireAdmin(_): RequireAdmin,
    page: Page,
    Path(id): Path<i32>,
) -> AppResult<Html<String>> {
    let site = db::site(&state.db, id).await?.ok_or(AppError::NotFound)?;
    let (devices, readings) = db::site_contents(&state.db, id).await?;
    let (devices, readings) =
        (super::count(devices, "device", "devices"), super::count(readings, "reading", "readings"));
    render(&DeleteSitePage { page, site, devices, readings })
}

pub async fn delete_site(
    State(state): State<AppState>,
    admin: ActingAdmin,
    Path(id): Path<i32>,
) -> AppResult<Response> {
    let mut change = Change::begin(&state.db, admin.actor()).await?;
    let (name, devices) = db::delete_site(&mut change, id).await?.ok_or(AppError::NotFound)?;
    let detail = serde_json::json!({ "devices": devices });
    state.commit(change, "site.deleted", Some(&name), detail).await?;
    Ok(Redirect::to("/sites?notice=site-deleted").into_response())
}
