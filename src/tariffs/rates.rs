//! Settings → Rates (admins): municipalities, tariffs (structured editor, JSON import and
//! export) and each site's tariff history.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::NaiveDate;
use serde::Deserialize;

use super::db::{self, AssignmentRow, MunicipalityRow, TariffRow};
use super::forms::{self, BLOCK_SLOTS, DAY_TYPE_KEYS, Errors, Fields, SEASON_SLOTS};
use super::model::{self, Problem, TariffDoc};
use crate::change::Change;
use crate::error::{AppError, AppResult, violated_constraint};
use crate::state::AppState;
use crate::web::client::ClientAddr;
use crate::web::page::Page;
use crate::web::render;
use crate::web::session::RequireAdmin;

type PostedPairs = axum::Form<Vec<(String, String)>>;

fn unprocessable(html: Html<String>) -> Response {
    (StatusCode::UNPROCESSABLE_ENTITY, html).into_response()
}

// ---------------------------------------------------------------- the overview page

pub struct TariffView {
    id: i32,
    name: String,
    municipality: String,
    versions: String,
    sites: i64,
}

fn tariff_view(t: &TariffRow) -> TariffView {
    let versions = t
        .doc
        .versions
        .iter()
        .map(|v| {
            let kind = match v.energy {
                model::Energy::Flat { .. } => "flat",
                model::Energy::Blocks { .. } => "blocks",
                model::Energy::Tou(_) => "time of use",
            };
            match v.effective_to {
                Some(to) => format!("{} to {to} ({kind})", v.effective_from),
                None => format!("from {} ({kind})", v.effective_from),
            }
        })
        .collect::<Vec<_>>()
        .join("; ");
    TariffView { id: t.id, name: t.doc.name.clone(), municipality: t.municipality.clone(), versions, sites: t.sites }
}

#[derive(Template)]
#[template(path = "tariffs/rates.html")]
struct RatesPage {
    page: Page,
    municipalities: Vec<MunicipalityRow>,
    tariffs: Vec<TariffView>,
    sites: Vec<(i32, String)>,
    assignments: Vec<AssignmentRow>,
    /// The add-a-municipality form.
    municipality: Fields,
    municipality_errors: Errors,
    /// The import form.
    import_json: String,
    import_municipality: String,
    import_problems: Vec<Problem>,
    /// The assignment form.
    assign: Fields,
    assign_errors: Errors,
}

impl RatesPage {
    async fn load(state: &AppState, page: Page) -> AppResult<RatesPage> {
        Ok(RatesPage {
            page,
            municipalities: db::municipalities(&state.db).await?,
            tariffs: db::tariffs(&state.db).await?.iter().map(tariff_view).collect(),
            sites: crate::sites::db::site_names(&state.db).await?,
            assignments: db::assignments(&state.db, None).await?,
            municipality: Fields::default(),
            municipality_errors: Errors::default(),
            import_json: String::new(),
            import_municipality: String::new(),
            import_problems: Vec::new(),
            assign: Fields::default(),
            assign_errors: Errors::default(),
        })
    }
}

pub async fn overview(
    State(state): State<AppState>,
    RequireAdmin(_): RequireAdmin,
    page: Page,
) -> AppResult<Html<String>> {
    render(&RatesPage::load(&state, page).await?)
}

// ---------------------------------------------------------------- municipalities

const DUPLICATE_MUNICIPALITY: &str = "A municipality with this name already exists.";

pub async fn create_municipality(
    State(state): State<AppState>,
    RequireAdmin(admin): RequireAdmin,
    ClientAddr(ip): ClientAddr,
    page: Page,
    axum::Form(pairs): PostedPairs,
) -> AppResult<Response> {
    let fields = Fields::from_pairs(pairs);
    let invalid = |page, errors| async {
        let mut p = RatesPage::load(&state, page).await?;
        p.municipality = fields.clone();
        p.municipality_errors = errors;
        Ok::<_, AppError>(unprocessable(render(&p)?))
    };
    let m = match forms::parse_municipality(&fields) {
        Ok(m) => m,
        Err(errors) => return invalid(page, errors).await,
    };
    let mut change = Change::begin(&state.db, admin.actor(ip)).await?;
    match db::save_municipality(change.db(), None, &m).await {
        Ok(_) => {}
        Err(e) if violated_constraint(&e) == Some(db::MUNICIPALITY_NAME_UNIQUE) => {
            let mut errors = Errors::default();
            errors.0.insert("name".into(), DUPLICATE_MUNICIPALITY.into());
            return invalid(page, errors).await;
        }
        Err(e) => return Err(e.into()),
    }
    state.commit(change, "municipality.created", Some(&m.name), serde_json::json!({})).await?;
    Ok(Redirect::to("/settings/rates?notice=municipality-saved").into_response())
}

#[derive(Template)]
#[template(path = "tariffs/municipality.html")]
struct MunicipalityPage {
    page: Page,
    id: i32,
    stored_name: String,
    tariffs: i64,
    form: Fields,
    errors: Errors,
}

pub async fn edit_municipality(
    State(state): State<AppState>,
    RequireAdmin(_): RequireAdmin,
    page: Page,
    Path(id): Path<i32>,
) -> AppResult<Html<String>> {
    let row = db::municipality(&state.db, id).await?.ok_or(AppError::NotFound)?;
    let form = forms::municipality_fields(&row.m);
    render(&MunicipalityPage {
        page,
        id,
        stored_name: row.m.name,
        tariffs: row.tariffs,
        form,
        errors: Errors::default(),
    })
}

pub async fn update_municipality(
    State(state): State<AppState>,
    RequireAdmin(admin): RequireAdmin,
    ClientAddr(ip): ClientAddr,
    page: Page,
    Path(id): Path<i32>,
    axum::Form(pairs): PostedPairs,
) -> AppResult<Response> {
    let row = db::municipality(&state.db, id).await?.ok_or(AppError::NotFound)?;
    let form = Fields::from_pairs(pairs);
    let invalid = |page, form, errors| {
        let p = MunicipalityPage { page, id, stored_name: row.m.name.clone(), tariffs: row.tariffs, form, errors };
        Ok(unprocessable(render(&p)?))
    };
    let m = match forms::parse_municipality(&form) {
        Ok(m) => m,
        Err(errors) => return invalid(page, form, errors),
    };
    let mut change = Change::begin(&state.db, admin.actor(ip)).await?;
    match db::save_municipality(change.db(), Some(id), &m).await {
        Ok(Some(_)) => {}
        Ok(None) => return Err(AppError::NotFound),
        Err(e) if violated_constraint(&e) == Some(db::MUNICIPALITY_NAME_UNIQUE) => {
            let mut errors = Errors::default();
            errors.0.insert("name".into(), DUPLICATE_MUNICIPALITY.into());
            return invalid(page, form, errors);
        }
        Err(e) => return Err(e.into()),
    }
    state.commit(change, "municipality.updated", Some(&m.name), serde_json::json!({})).await?;
    Ok(Redirect::to("/settings/rates?notice=municipality-saved").into_response())
}

pub async fn delete_municipality(
    State(state): State<AppState>,
    RequireAdmin(admin): RequireAdmin,
    ClientAddr(ip): ClientAddr,
    Path(id): Path<i32>,
) -> AppResult<Response> {
    let mut change = Change::begin(&state.db, admin.actor(ip)).await?;
    let name = match db::delete_municipality(change.db(), id).await {
        Ok(name) => name.ok_or(AppError::NotFound)?,
        Err(e) if violated_constraint(&e) == Some(db::TARIFF_MUNICIPALITY_FK) => {
            return Err(AppError::BadRequest("This municipality still has tariffs: delete or move them first.".into()));
        }
        Err(e) => return Err(e.into()),
    };
    state.commit(change, "municipality.deleted", Some(&name), serde_json::json!({})).await?;
    Ok(Redirect::to("/settings/rates?notice=municipality-deleted").into_response())
}

// ---------------------------------------------------------------- the tariff editor

#[derive(Template)]
#[template(path = "tariffs/tariff.html")]
struct TariffPage {
    page: Page,
    /// `None`: a new tariff.
    id: Option<i32>,
    stored_name: String,
    /// The tariff's versions, for the version links.
    versions: Vec<String>,
    /// Which version the form edits (`versions.len()`: a new one).
    editing: usize,
    municipalities: Vec<MunicipalityRow>,
    form: Fields,
    errors: Errors,
    problems: Vec<Problem>,
    season_slots: Vec<usize>,
    block_slots: Vec<usize>,
    day_types: [&'static str; 3],
    hours: Vec<usize>,
}

impl TariffPage {
    fn day_label(&self, key: &&str) -> &'static str {
        model::DayType::parse(key).map_or("", |d| d.label())
    }
}

fn version_labels(doc: &TariffDoc) -> Vec<String> {
    doc.versions
        .iter()
        .map(|v| match v.effective_to {
            Some(to) => format!("{} to {to}", v.effective_from),
            None => format!("from {}", v.effective_from),
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
async fn tariff_page(
    state: &AppState,
    page: Page,
    id: Option<i32>,
    stored: Option<&TariffDoc>,
    editing: usize,
    form: Fields,
    errors: Errors,
    problems: Vec<Problem>,
) -> AppResult<Html<String>> {
    render(&TariffPage {
        page,
        id,
        stored_name: stored.map(|d| d.name.clone()).unwrap_or_default(),
        versions: stored.map(version_labels).unwrap_or_default(),
        editing,
        municipalities: db::municipalities(&state.db).await?,
        form,
        errors,
        problems,
        season_slots: (0..SEASON_SLOTS).collect(),
        block_slots: (0..BLOCK_SLOTS).collect(),
        day_types: DAY_TYPE_KEYS,
        hours: (0..24).collect(),
    })
}

#[derive(Deserialize)]
pub struct VersionQuery {
    version: Option<usize>,
}

pub async fn new_tariff(
    State(state): State<AppState>,
    RequireAdmin(_): RequireAdmin,
    page: Page,
) -> AppResult<Html<String>> {
    tariff_page(&state, page, None, None, 0, forms::version_fields(None), Errors::default(), Vec::new()).await
}

pub async fn edit_tariff(
    State(state): State<AppState>,
    RequireAdmin(_): RequireAdmin,
    page: Page,
    Path(id): Path<i32>,
    Query(q): Query<VersionQuery>,
) -> AppResult<Html<String>> {
    let row = db::tariff(&state.db, id).await?.ok_or(AppError::NotFound)?;
    // Editing a version shows it; a new version starts as a copy of the latest.
    let editing = q.version.unwrap_or(0).min(row.doc.versions.len());
    let shown = row.doc.versions.get(editing).or(row.doc.versions.last());
    let mut form = forms::version_fields(shown);
    if editing == row.doc.versions.len() {
        form.0.remove("effective_from");
        form.0.remove("effective_to");
    }
    form.0.insert("name".into(), row.doc.name.clone());
    form.0.insert("municipality_id".into(), row.municipality_id.to_string());
    tariff_page(&state, page, Some(id), Some(&row.doc), editing, form, Errors::default(), Vec::new()).await
}

pub async fn create_tariff(
    state: State<AppState>,
    admin: RequireAdmin,
    ip: ClientAddr,
    page: Page,
    form: PostedPairs,
) -> AppResult<Response> {
    save_tariff(state, admin, ip, page, None, form).await
}

pub async fn update_tariff(
    state: State<AppState>,
    admin: RequireAdmin,
    ip: ClientAddr,
    page: Page,
    Path(id): Path<i32>,
    form: PostedPairs,
) -> AppResult<Response> {
    save_tariff(state, admin, ip, page, Some(id), form).await
}

async fn save_tariff(
    State(state): State<AppState>,
    RequireAdmin(admin): RequireAdmin,
    ClientAddr(ip): ClientAddr,
    page: Page,
    id: Option<i32>,
    axum::Form(pairs): PostedPairs,
) -> AppResult<Response> {
    let stored = match id {
        Some(id) => Some(db::tariff(&state.db, id).await?.ok_or(AppError::NotFound)?.doc),
        None => None,
    };
    let form = Fields::from_pairs(pairs);
    let count = stored.as_ref().map_or(0, |d| d.versions.len());
    let editing = form.get("version").parse::<usize>().unwrap_or(count).min(count);
    let mut errors = Errors::default();
    let municipality_id = form.get("municipality_id").parse::<i32>().ok();
    if municipality_id.is_none() {
        errors.0.insert("municipality_id".into(), "Choose the municipality the tariff belongs to.".into());
    }
    let version = match forms::parse_version(&form) {
        Ok(v) => Some(v),
        Err(e) => {
            errors.0.extend(e.0);
            None
        }
    };
    let (Some(version), Some(municipality_id), true) = (version, municipality_id, errors.is_empty()) else {
        let html = tariff_page(&state, page, id, stored.as_ref(), editing, form, errors, Vec::new()).await?;
        return Ok(unprocessable(html));
    };
    let mut doc = stored.clone().unwrap_or(TariffDoc { name: String::new(), source: String::new(), versions: vec![] });
    doc.name = form.get("name").trim().to_string();
    if editing < doc.versions.len() {
        doc.versions[editing] = version;
    } else {
        doc.versions.push(version);
    }
    let problems = model::validate(&doc);
    if !problems.is_empty() {
        let html = tariff_page(&state, page, id, stored.as_ref(), editing, form, errors, problems).await?;
        return Ok(unprocessable(html));
    }
    let mut change = Change::begin(&state.db, admin.actor(ip)).await?;
    let saved = match db::save_tariff(change.db(), id, municipality_id, &doc).await {
        Ok(saved) => saved.ok_or(AppError::NotFound)?,
        Err(e) if violated_constraint(&e) == Some(db::TARIFF_NAME_UNIQUE) => {
            let mut errors = Errors::default();
            errors.0.insert("name".into(), "This municipality already has a tariff with this name.".into());
            let html = tariff_page(&state, page, id, stored.as_ref(), editing, form, errors, Vec::new()).await?;
            return Ok(unprocessable(html));
        }
        Err(e) if violated_constraint(&e) == Some(db::TARIFF_MUNICIPALITY_FK) => {
            let mut errors = Errors::default();
            errors.0.insert("municipality_id".into(), "That municipality no longer exists.".into());
            let html = tariff_page(&state, page, id, stored.as_ref(), editing, form, errors, Vec::new()).await?;
            return Ok(unprocessable(html));
        }
        Err(e) => return Err(e.into()),
    };
    let action = if id.is_some() { "tariff.updated" } else { "tariff.created" };
    state.commit(change, action, Some(&doc.name), serde_json::json!({ "id": saved })).await?;
    Ok(Redirect::to(&format!("/settings/rates/tariffs/{saved}?notice=tariff-saved")).into_response())
}

/// Removes one version (a tariff keeps at least one).
pub async fn delete_version(
    State(state): State<AppState>,
    RequireAdmin(admin): RequireAdmin,
    ClientAddr(ip): ClientAddr,
    Path((id, index)): Path<(i32, usize)>,
) -> AppResult<Response> {
    let mut row = db::tariff(&state.db, id).await?.ok_or(AppError::NotFound)?;
    if index >= row.doc.versions.len() {
        return Err(AppError::NotFound);
    }
    if row.doc.versions.len() == 1 {
        return Err(AppError::BadRequest("A tariff keeps at least one version; delete the tariff instead.".into()));
    }
    row.doc.versions.remove(index);
    let mut change = Change::begin(&state.db, admin.actor(ip)).await?;
    db::save_tariff(change.db(), Some(id), row.municipality_id, &row.doc).await?.ok_or(AppError::NotFound)?;
    state.commit(change, "tariff.updated", Some(&row.doc.name), serde_json::json!({ "id": id })).await?;
    Ok(Redirect::to(&format!("/settings/rates/tariffs/{id}?notice=tariff-saved")).into_response())
}

pub async fn delete_tariff(
    State(state): State<AppState>,
    RequireAdmin(admin): RequireAdmin,
    ClientAddr(ip): ClientAddr,
    Path(id): Path<i32>,
) -> AppResult<Response> {
    let mut change = Change::begin(&state.db, admin.actor(ip)).await?;
    let name = match db::delete_tariff(change.db(), id).await {
        Ok(name) => name.ok_or(AppError::NotFound)?,
        Err(e) if violated_constraint(&e) == Some(db::SITE_TARIFF_FK) => {
            return Err(AppError::BadRequest(
                "Sites have (had) this tariff; their bills need it. Remove it from their tariff history first.".into(),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    state.commit(change, "tariff.deleted", Some(&name), serde_json::json!({ "id": id })).await?;
    Ok(Redirect::to("/settings/rates?notice=tariff-deleted").into_response())
}

// ---------------------------------------------------------------- JSON import and export

pub async fn export(
    State(state): State<AppState>,
    RequireAdmin(_): RequireAdmin,
    Path(id): Path<i32>,
) -> AppResult<Response> {
    let row = db::tariff(&state.db, id).await?.ok_or(AppError::NotFound)?;
    let json = serde_json::to_string_pretty(&row.doc).map_err(AppError::internal)?;
    let file: String =
        row.doc.name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"tariff-{file}.json\"")),
        ],
        json + "\n",
    )
        .into_response())
}

/// The problems of an imported document: JSON syntax or shape (with line and column), or the
/// model's validation.
pub fn parse_import(json: &str) -> Result<TariffDoc, Vec<Problem>> {
    let doc: TariffDoc = serde_json::from_str(json).map_err(|e| {
        vec![Problem { field: format!("line {}, column {}", e.line(), e.column()), message: e.to_string() }]
    })?;
    let problems = model::validate(&doc);
    if problems.is_empty() { Ok(doc) } else { Err(problems) }
}

#[derive(Deserialize)]
pub struct ImportForm {
    #[serde(default)]
    municipality_id: String,
    #[serde(default)]
    json: String,
}

pub async fn import(
    State(state): State<AppState>,
    RequireAdmin(admin): RequireAdmin,
    ClientAddr(ip): ClientAddr,
    page: Page,
    axum::Form(form): axum::Form<ImportForm>,
) -> AppResult<Response> {
    let municipality = match form.municipality_id.parse::<i32>() {
        Ok(id) => db::municipality(&state.db, id).await?,
        Err(_) => None,
    };
    let result = match municipality {
        None => Err(vec![Problem {
            field: "municipality".into(),
            message: "choose the municipality to import into.".into(),
        }]),
        Some(_) => parse_import(&form.json),
    };
    let doc = match result {
        Ok(doc) => doc,
        Err(problems) => {
            let mut p = RatesPage::load(&state, page).await?;
            p.import_json = form.json;
            p.import_municipality = form.municipality_id;
            p.import_problems = problems;
            return Ok(unprocessable(render(&p)?));
        }
    };
    let Some(m) = municipality else { return Err(AppError::NotFound) };
    let mut change = Change::begin(&state.db, admin.actor(ip)).await?;
    let id = match db::save_tariff(change.db(), None, m.id, &doc).await {
        Ok(id) => id.ok_or(AppError::NotFound)?,
        Err(e) if violated_constraint(&e) == Some(db::TARIFF_NAME_UNIQUE) => {
            let mut p = RatesPage::load(&state, page).await?;
            p.import_json = form.json;
            p.import_municipality = form.municipality_id;
            p.import_problems = vec![Problem {
                field: "name".into(),
                message: format!("{} already has a tariff named “{}”; rename it in the JSON.", m.m.name, doc.name),
            }];
            return Ok(unprocessable(render(&p)?));
        }
        Err(e) => return Err(e.into()),
    };
    state.commit(change, "tariff.imported", Some(&doc.name), serde_json::json!({ "id": id })).await?;
    Ok(Redirect::to(&format!("/settings/rates/tariffs/{id}?notice=tariff-imported")).into_response())
}

// ---------------------------------------------------------------- site assignments

pub async fn assign(
    State(state): State<AppState>,
    RequireAdmin(admin): RequireAdmin,
    ClientAddr(ip): ClientAddr,
    page: Page,
    axum::Form(pairs): PostedPairs,
) -> AppResult<Response> {
    let form = Fields::from_pairs(pairs);
    let mut errors = Errors::default();
    let site = form.get("site_id").parse::<i32>().ok();
    let tariff = form.get("tariff_id").parse::<i32>().ok();
    let from = NaiveDate::parse_from_str(form.get("effective_from").trim(), "%Y-%m-%d").ok();
    let site_row = match site {
        Some(id) => crate::sites::db::site(&state.db, id).await?,
        None => None,
    };
    let tariff_row = match tariff {
        Some(id) => db::tariff(&state.db, id).await?,
        None => None,
    };
    if site_row.is_none() {
        errors.0.insert("site_id".into(), "Choose a site.".into());
    }
    if tariff_row.is_none() {
        errors.0.insert("tariff_id".into(), "Choose a tariff.".into());
    }
    if from.is_none() {
        errors.0.insert(
            "effective_from".into(),
            "Enter the first day (YYYY-MM-DD, the site's local date) it applies.".into(),
        );
    }
    let (Some(site), Some(tariff), Some(from)) = (site_row, tariff_row, from) else {
        let mut p = RatesPage::load(&state, page).await?;
        p.assign = form;
        p.assign_errors = errors;
        return Ok(unprocessable(render(&p)?));
    };
    let mut change = Change::begin(&state.db, admin.actor(ip)).await?;
    db::assign(change.db(), site.id, from, tariff.id).await?;
    let detail = serde_json::json!({ "tariff": tariff.doc.name, "from": from });
    state.commit(change, "site.tariff-assigned", Some(&site.name), detail).await?;
    Ok(Redirect::to("/settings/rates?notice=tariff-assigned").into_response())
}

#[derive(Deserialize)]
pub struct UnassignForm {
    site_id: i32,
    effective_from: NaiveDate,
}

pub async fn unassign(
    State(state): State<AppState>,
    RequireAdmin(admin): RequireAdmin,
    ClientAddr(ip): ClientAddr,
    axum::Form(form): axum::Form<UnassignForm>,
) -> AppResult<Response> {
    let mut change = Change::begin(&state.db, admin.actor(ip)).await?;
    if !db::unassign(change.db(), form.site_id, form.effective_from).await? {
        return Err(AppError::NotFound);
    }
    let detail = serde_json::json!({ "siteId": form.site_id, "from": form.effective_from });
    state.commit(change, "site.tariff-removed", None, detail).await?;
    Ok(Redirect::to("/settings/rates?notice=tariff-unassigned").into_response())
}
