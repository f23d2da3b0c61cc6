//! The device pages: the latest reading and the chart (see `dashboards::charts`), and create, edit and delete
//! (admins). Every change to a device empties the externalId directory once it is committed
//! (the device writes of `db` note it in their change).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};

use super::Editing;
use super::db::{self, DeviceRow, SiteRow};
use super::forms::{DUPLICATE_EXTERNAL_ID, DeviceForm, MODELS, SOURCES, ValidDevice};
use super::hierarchy::{self, MAIN, Placement, ROLES, SUB};
use super::readings::{self, ReadingView};
use super::routes::{DeviceListView, device_list_view};
use crate::change::Change;
use crate::dashboards::charts::{self, ChartQuery, ChartView};
use crate::error::{AppError, AppResult, FieldErrors, FormResult, ResultExt};
use crate::measurements::queries;
use crate::state::AppState;
use crate::web::page::Page;
use crate::web::render;
use crate::web::session::{ActingAdmin, CurrentUser, RequireAdmin};

async fn device_and_site(state: &AppState, id: i32) -> AppResult<(DeviceRow, SiteRow)> {
    let device = db::device(&state.db, id).await?.ok_or(AppError::NotFound)?;
    let site = db::site(&state.db, device.site_id).await?.ok_or(AppError::NotFound)?;
    Ok((device, site))
}

#[derive(Template)]
#[template(path = "sites/device.html")]
struct DevicePage {
    page: Page,
    site: SiteRow,
    device: DeviceRow,
    status: DeviceListView,
    last_error_at: Option<String>,
    meter: Vec<(&'static str, String)>,
    reading: Option<ReadingView>,
    chart: ChartView,
    role: &'static str,
    /// A sub-meter's parent `(id, name)`.
    parent: Option<(i32, String)>,
    /// What the energy rollup did not count (newest first) and how many in all.
    anomalies: Vec<(String, String)>,
    anomalies_total: i64,
    mqtt: Option<crate::mqtt::credentials::MqttView>,
}

/// How many of a device's energy anomalies its page lists.
const ANOMALIES_SHOWN: i64 = 10;

pub async fn show(
    State(state): State<AppState>,
    CurrentUser(_): CurrentUser,
    page: Page,
    Path(id): Path<i32>,
    Query(query): Query<ChartQuery>,
) -> AppResult<Html<String>> {
    let (device, site) = device_and_site(&state, id).await?;
    let (tz, now) = (site.zone(), state.clock.now());
    let reading = queries::latest_reading(&state.db, id).await?.map(|r| readings::reading_view(&r, tz));
    let chart = charts::device_chart(&state, id, tz, &query).await?;
    let status = device_list_view(&device, tz, now);
    let last_error_at = device.last_error_at.map(|t| readings::local_time(t, tz));
    let meter = super::meter::facts(&device, tz);
    let role = hierarchy::role_label(&device.role);
    let parent = match device.parent_id {
        Some(p) => db::device(&state.db, p).await?.map(|p| (p.id, p.name)),
        None => None,
    };
    let (anomalies, anomalies_total) =
        crate::measurements::energy::anomalies::of_device(&state.db, id, ANOMALIES_SHOWN).await?;
    let anomalies = anomalies.into_iter().map(|a| (readings::local_time(a.time, tz), a.description)).collect();
    let mqtt = crate::mqtt::credentials::view(&state, &device).await?;
    render(&DevicePage {
        page,
        site,
        device,
        status,
        last_error_at,
        meter,
        reading,
        chart,
        role,
        parent,
        anomalies,
        anomalies_total,
        mqtt,
    })
}

/// An `<option>` of a select.
pub struct Choice {
    value: String,
    label: String,
    selected: bool,
}

fn choices<'a>(options: impl IntoIterator<Item = (String, &'a str)>, current: &str) -> Vec<Choice> {
    options
        .into_iter()
        .map(|(value, label)| Choice { selected: value == current.trim(), value, label: label.to_string() })
        .collect()
}

#[derive(Template)]
#[template(path = "sites/device_form.html")]
struct DeviceFormPage {
    page: Page,
    /// The site the form was opened from (for the breadcrumb).
    site: SiteRow,
    /// The device being edited (`None`: a new device) and its stored name.
    editing: Option<Editing>,
    form: DeviceForm,
    errors: FieldErrors,
    sites: Vec<Choice>,
    models: Vec<Choice>,
    sources: Vec<Choice>,
    roles: Vec<Choice>,
    /// The meters of the site a sub-meter can be under (main and sub-meters but itself).
    parents: Vec<Choice>,
}

async fn device_form(
    state: &AppState,
    page: Page,
    site: SiteRow,
    editing: Option<Editing>,
    form: DeviceForm,
    errors: FieldErrors,
) -> AppResult<Html<String>> {
    let sites = db::site_names(&state.db).await?;
    let sites = choices(sites.iter().map(|(id, name)| (id.to_string(), name.as_str())), &form.site_id);
    let models = choices(MODELS.iter().map(|(v, l)| (v.to_string(), *l)), &form.model);
    let sources = choices(SOURCES.iter().map(|(v, l)| (v.to_string(), *l)), &form.source);
    let roles = choices(ROLES.iter().map(|(v, l)| (v.to_string(), *l)), &form.role);
    let nodes = db::hierarchy(&state.db, site.id).await?;
    let editing_id = editing.as_ref().map(|e| e.id);
    let candidates = nodes.iter().filter(|n| (n.role == MAIN || n.role == SUB) && Some(n.id) != editing_id);
    let parents = choices(
        std::iter::once((String::new(), "None (not a sub-meter)"))
            .chain(candidates.map(|n| (n.id.to_string(), n.name.as_str()))),
        &form.parent_id,
    );
    render(&DeviceFormPage { page, site, editing, form, errors, sites, models, sources, roles, parents })
}

async fn invalid(
    state: &AppState,
    page: Page,
    site: SiteRow,
    editing: Option<Editing>,
    form: DeviceForm,
    errors: FieldErrors,
) -> AppResult<Response> {
    let html = device_form(state, page, site, editing, form, errors).await?;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, html).into_response())
}

/// A device write with the constraints a concurrent change can hit turned into field errors.
fn refused<T>(written: Result<T, sqlx::Error>) -> AppResult<T> {
    written
        .on_constraint(db::DEVICE_EXTERNAL_ID_UNIQUE, || FieldErrors::of("external_id", DUPLICATE_EXTERNAL_ID))
        .on_constraint(db::DEVICE_SITE_FK, || FieldErrors::of("site_id", "This site no longer exists; choose another."))
        .on_constraint(db::DEVICE_PARENT_FK, || {
            FieldErrors::of("parent_id", "That meter is no longer on this site: choose another parent.")
        })
}

/// Checks where `d` goes in its site's hierarchy (see [`hierarchy::check`]) inside the change
/// that writes it, with the hierarchies involved locked until it commits.
async fn check_hierarchy(
    change: &mut Change,
    device: Option<i32>,
    from_site: Option<i32>,
    d: &ValidDevice,
) -> AppResult<()> {
    let mut sites = vec![d.site_id];
    sites.extend(from_site.filter(|s| *s != d.site_id));
    sites.sort_unstable();
    db::lock_hierarchies(change, &sites).await?;
    let target = db::hierarchy(change.db(), d.site_id).await?;
    let current = match from_site {
        Some(s) if s != d.site_id => db::hierarchy(change.db(), s).await?,
        _ => target.clone(),
    };
    let parent_site = match d.parent_id {
        Some(p) => Some(db::site_of_device(change.db(), p).await?),
        None => None,
    };
    let placement = Placement { device, from_site, site: d.site_id, role: d.role, parent: d.parent_id };
    hierarchy::check(&placement, &target, &current, parent_site)?;
    Ok(())
}

fn device_detail(d: &ValidDevice) -> serde_json::Value {
    serde_json::json!({
        "siteId": d.site_id,
        "name": d.name,
        "model": d.model,
        "source": d.source,
        "modbusHost": d.modbus_host,
        "modbusPort": d.modbus_port,
        "modbusUnitId": d.modbus_unit_id,
        "pollIntervalSeconds": d.poll_interval_seconds,
        "enabled": d.enabled,
        "role": d.role,
        "parentId": d.parent_id,
    })
}

pub async fn new_device(
    State(state): State<AppState>,
    RequireAdmin(_): RequireAdmin,
    page: Page,
    Path(site_id): Path<i32>,
) -> AppResult<Html<String>> {
    let site = db::site(&state.db, site_id).await?.ok_or(AppError::NotFound)?;
    device_form(&state, page, site, None, DeviceForm::new_on(site_id), FieldErrors::default()).await
}

pub async fn create_device(
    State(state): State<AppState>,
    admin: ActingAdmin,
    page: Page,
    Path(site_id): Path<i32>,
    axum::Form(mut form): axum::Form<DeviceForm>,
) -> AppResult<Response> {
    let site = db::site(&state.db, site_id).await?.ok_or(AppError::NotFound)?;
    if form.site_id.trim().is_empty() {
        form.site_id = site_id.to_string();
    }
    let created = async {
        let device = form.validate()?;
        let mut change = Change::begin(&state.db, admin.actor()).await?;
        crate::licence::limits::admit(&state, &mut change, crate::licence::limits::Resource::Devices).await?;
        check_hierarchy(&mut change, None, None, &device).await?;
        let id = refused(db::insert_device(&mut change, &device.fields()).await)?;
        let target = Some(device.external_id.as_str());
        state.commit(change, "device.created", target, device_detail(&device)).await?;
        Ok::<_, AppError>(id)
    };
    match created.await.field_errors()? {
        Ok(id) => Ok(Redirect::to(&format!("/devices/{id}?notice=device-created")).into_response()),
        Err(errors) => invalid(&state, page, site, None, form, errors).await,
    }
}

pub async fn edit_device(
    State(state): State<AppState>,
    RequireAdmin(_): RequireAdmin,
    page: Page,
    Path(id): Path<i32>,
) -> AppResult<Html<String>> {
    let (device, site) = device_and_site(&state, id).await?;
    let form = DeviceForm::from(&device);
    device_form(&state, page, site, Some(Editing { id, name: device.name }), form, FieldErrors::default()).await
}

pub async fn update_device(
    State(state): State<AppState>,
    admin: ActingAdmin,
    page: Page,
    Path(id): Path<i32>,
    axum::Form(mut form): axum::Form<DeviceForm>,
) -> AppResult<Response> {
    let (current, site) = device_and_site(&state, id).await?;
    if form.site_id.trim().is_empty() {
        form.site_id = current.site_id.to_string();
    }
    let updated = async {
        let device = form.validate()?;
        let mut change = Change::begin(&state.db, admin.actor()).await?;
        check_hierarchy(&mut change, Some(id), Some(current.site_id), &device).await?;
        if !refused(db::update_device(&mut change, id, &device.fields()).await)? {
            return Err(AppError::NotFound);
        }
        let mut detail = device_detail(&device);
        detail["previousExternalId"] = current.external_id.clone().into();
        let target = Some(device.external_id.as_str());
        state.commit(change, "device.updated", target, detail).await?;
        Ok(())
    };
    match updated.await.field_errors()? {
        Ok(()) => Ok(Redirect::to(&format!("/devices/{id}?notice=device-updated")).into_response()),
        Err(errors) => invalid(&state, page, site, Some(Editing { id, name: current.name }), form, errors).await,
    }
}

#[derive(Template)]
#[template(path = "sites/delete_device.html")]
struct DeleteDevicePage {
    page: Page,
    site: SiteRow,
    device: DeviceRow,
    readings: String,
    /// Its sub-meters: while it has any, it cannot be deleted.
    children: String,
}

/// The names of a device's sub-meters, "A, B" (empty without any).
async fn sub_meters(db: impl sqlx::PgExecutor<'_>, device: &DeviceRow) -> AppResult<String> {
    let nodes = db::hierarchy(db, device.site_id).await?;
    let names: Vec<&str> = nodes.iter().filter(|n| n.parent == Some(device.id)).map(|n| n.name.as_str()).collect();
    Ok(names.join(", "))
}

fn has_sub_meters(names: &str) -> AppError {
    AppError::BadRequest(format!(
        "{names}: sub-meters of this device. Give them another parent (edit each one) or delete them first."
    ))
}

pub async fn confirm_delete(
    State(state): State<AppState>,
    RequireAdmin(_): RequireAdmin,
    page: Page,
    Path(id): Path<i32>,
) -> AppResult<Html<String>> {
    let (device, site) = device_and_site(&state, id).await?;
    let readings = super::count(db::reading_count(&state.db, id).await?, "reading", "readings");
    let children = sub_meters(&state.db, &device).await?;
    render(&DeleteDevicePage { page, site, device, readings, children })
}

pub async fn delete_device(
    State(state): State<AppState>,
    admin: ActingAdmin,
    Path(id): Path<i32>,
) -> AppResult<Response> {
    let device = db::device(&state.db, id).await?.ok_or(AppError::NotFound)?;
    let mut change = Change::begin(&state.db, admin.actor()).await?;
    db::lock_hierarchies(&mut change, &[device.site_id]).await?;
    let children = sub_meters(change.db(), &device).await?;
    if !children.is_empty() {
        return Err(has_sub_meters(&children));
    }
    let (external_id, site_id) = db::delete_device(&mut change, id)
        .await
        .on_constraint(db::DEVICE_PARENT_FK, || has_sub_meters("Its sub-meters"))?
        .ok_or(AppError::NotFound)?;
    state.commit(change, "device.deleted", Some(&external_id), serde_json::json!({})).await?;
    Ok(Redirect::to(&format!("/sites/{site_id}?notice=device-deleted")).into_response())
}
