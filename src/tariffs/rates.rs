//! Settings → Rates (admins): municipalities, tariffs (structured editor, JSON import and
//! export) and each site's tariff history.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::NaiveDate;
use serde::Deserialize;

use super::db::{self, AssignmentRow, MunicipalityRow, TariffRow};
use super::forms::{
    self, BLOCK_SLOTS, DAY_TYPE_KEYS, DEMAND_SLOTS, FIXED_SLOTS, Fields, KWH_SLOTS, REACTIVE_SLOTS, SEASON_SLOTS,
};
use super::model::{self, Problem, TariffDoc};
use crate::change::Change;
use crate::error::{AppError, AppResult, FieldErrors, FormResult, ResultExt};
use crate::state::AppState;
use crate::web::page::Page;
use crate::web::render;
use crate::web::session::{ActingAdmin, RequireAdmin};

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
    municipality_errors: FieldErrors,
    /// The import form.
    import_json: String,
    import_municipality: String,
    import_problems: Vec<Problem>,
    /// The assignment form.
    assign: Fields,
    assign_errors: FieldErrors,
    /// "Start from a published tariff": the library, and the form's choice and problems.
    library: Vec<super::library::Entry>,
    library_entry: String,
    library_municipality: String,
    library_problems: Vec<Problem>,
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
            municipality_errors: FieldErrors::default(),
            import_json: String::new(),
            import_municipality: String::new(),
            import_problems: Vec::new(),
            assign: Fields::default(),
            assign_errors: FieldErrors::default(),
            library: super::library::entries(),
            library_entry: String::new(),
            library_municipality: String::new(),
            library_problems: Vec::new(),
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

fn duplicate_municipality() -> FieldErrors {
    FieldErrors::of("name", "A municipality with this name already exists.")
}

pub async fn create_municipality(
    State(state): State<AppState>,
    admin: ActingAdmin,
    page: Page,
    axum::Form(pairs): PostedPairs,
) -> AppResult<Response> {
    let fields = Fields::from_pairs(pairs);
    let created = async {
        let m = forms::parse_municipality(&fields)?;
        let mut change = Change::begin(&state.db, admin.actor()).await?;
        db::save_municipality(change.db(), None, &m)
            .await
            .on_constraint(db::MUNICIPALITY_NAME_UNIQUE, duplicate_municipality)?;
        state.commit(change, "municipality.created", Some(&m.name), serde_json::json!({})).await?;
        Ok::<_, AppError>(())
    };
    match created.await.field_errors()? {
        Ok(()) => Ok(Redirect::to("/settings/rates?notice=municipality-saved").into_response()),
        Err(errors) => {
            let mut p = RatesPage::load(&state, page).await?;
            p.municipality = fields;
            p.municipality_errors = errors;
            Ok(unprocessable(render(&p)?))
        }
    }
}

#[derive(Template)]
#[template(path = "tariffs/municipality.html")]
struct MunicipalityPage {
    page: Page,
    id: i32,
    stored_name: String,
    tariffs: i64,
    form: Fields,
    errors: FieldErrors,
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
        errors: FieldErrors::default(),
    })
}

pub async fn update_municipality(
    State(state): State<AppState>,
    admin: ActingAdmin,
    page: Page,
    Path(id): Path<i32>,
    axum::Form(pairs): PostedPairs,
) -> AppResult<Response> {
    let row = db::municipality(&state.db, id).await?.ok_or(AppError::NotFound)?;
    let form = Fields::from_pairs(pairs);
    let updated = async {
        let m = forms::parse_municipality(&form)?;
        let mut change = Change::begin(&state.db, admin.actor()).await?;
        db::save_municipality(change.db(), Some(id), &m)
            .await
            .on_constraint(db::MUNICIPALITY_NAME_UNIQUE, duplicate_municipality)?
            .ok_or(AppError::NotFound)?;
        state.commit(change, "municipality.updated", Some(&m.name), serde_json::json!({})).await?;
        Ok::<_, AppError>(())
    };
    match updated.await.field_errors()? {
        Ok(()) => Ok(Redirect::to("/settings/rates?notice=municipality-saved").into_response()),
        Err(errors) => {
            let p = MunicipalityPage { page, id, stored_name: row.m.name, tariffs: row.tariffs, form, errors };
            Ok(unprocessable(render(&p)?))
        }
    }
}

pub async fn delete_municipality(
    State(state): State<AppState>,
    admin: ActingAdmin,
    Path(id): Path<i32>,
) -> AppResult<Response> {
    let mut change = Change::begin(&state.db, admin.actor()).await?;
    let name = db::delete_municipality(change.db(), id)
        .await
        .on_constraint(db::TARIFF_MUNICIPALITY_FK, || {
            AppError::BadRequest("This municipality still has tariffs: delete or move them first.".into())
        })?
        .ok_or(AppError::NotFound)?;
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
    errors: FieldErrors,
    problems: Vec<Problem>,
    season_slots: Vec<usize>,
    block_slots: Vec<usize>,
    demand_slots: Vec<usize>,
    kwh_slots: Vec<usize>,
    fixed_slots: Vec<usize>,
    reactive_slots: Vec<usize>,
    day_types: [&'static str; 4],
    hours: Vec<usize>,
    prorations: [model::Proration; 4],
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
    errors: FieldErrors,
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
        demand_slots: (0..DEMAND_SLOTS).collect(),
        kwh_slots: (0..KWH_SLOTS).collect(),
        fixed_slots: (0..FIXED_SLOTS).collect(),
        reactive_slots: (0..REACTIVE_SLOTS).collect(),
        day_types: DAY_TYPE_KEYS,
        hours: (0..24).collect(),
        prorations: model::Proration::ALL,
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
    tariff_page(&state, page, None, None, 0, forms::version_fields(None), FieldErrors::default(), Vec::new()).await
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
    tariff_page(&state, page, Some(id), Some(&row.doc), editing, form, FieldErrors::default(), Vec::new()).await
}

pub async fn create_tariff(
    state: State<AppState>,
    admin: ActingAdmin,
    page: Page,
    form: PostedPairs,
) -> AppResult<Response> {
    save_tariff(state, admin, page, None, form).await
}

pub async fn update_tariff(
    state: State<AppState>,
    admin: ActingAdmin,
    page: Page,
    Path(id): Path<i32>,
    form: PostedPairs,
) -> AppResult<Response> {
    save_tariff(state, admin, page, Some(id), form).await
}

async fn save_tariff(
    State(state): State<AppState>,
    admin: ActingAdmin,
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
    let saved = async {
        let mut errors = FieldErrors::default();
        let municipality_id = form.get("municipality_id").parse::<i32>().ok();
        if municipality_id.is_none() {
            errors.add("municipality_id", "Choose the municipality the tariff belongs to.");
        }
        let version = forms::parse_version(&form).map_err(|e| errors.merge(e)).ok();
        let (Some(version), Some(municipality_id)) = (version, municipality_id) else { return Err(errors.into()) };
        let mut doc =
            stored.clone().unwrap_or(TariffDoc { name: String::new(), source: String::new(), versions: vec![] });
        doc.name = form.get("name").trim().to_string();
        if editing < doc.versions.len() {
            doc.versions[editing] = version;
        } else {
            doc.versions.push(version);
        }
        let problems = model::validate(&doc);
        if !problems.is_empty() {
            return Ok(Err(problems));
        }
        let mut change = Change::begin(&state.db, admin.actor()).await?;
        let saved = db::save_tariff(change.db(), id, municipality_id, &doc)
            .await
            .on_constraint(db::TARIFF_NAME_UNIQUE, || {
                FieldErrors::of("name", "This municipality already has a tariff with this name.")
            })
            .on_constraint(db::TARIFF_MUNICIPALITY_FK, || {
                FieldErrors::of("municipality_id", "That municipality no longer exists.")
            })?
            .ok_or(AppError::NotFound)?;
        let action = if id.is_some() { "tariff.updated" } else { "tariff.created" };
        state.commit(change, action, Some(&doc.name), serde_json::json!({ "id": saved })).await?;
        Ok(Ok(saved))
    };
    let (errors, problems) = match saved.await.field_errors()? {
        Ok(Ok(saved)) => {
            return Ok(Redirect::to(&format!("/settings/rates/tariffs/{saved}?notice=tariff-saved")).into_response());
        }
        Ok(Err(problems)) => (FieldErrors::default(), problems),
        Err(errors) => (errors, Vec::new()),
    };
    let html = tariff_page(&state, page, id, stored.as_ref(), editing, form, errors, problems).await?;
    Ok(unprocessable(html))
}

/// Removes one version (a tariff keeps at least one).
pub async fn delete_version(
    State(state): State<AppState>,
    admin: ActingAdmin,
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
    let mut change = Change::begin(&state.db, admin.actor()).await?;
    db::save_tariff(change.db(), Some(id), row.municipality_id, &row.doc).await?.ok_or(AppError::NotFound)?;
    state.commit(change, "tariff.updated", Some(&row.doc.name), serde_json::json!({ "id": id })).await?;
    Ok(Redirect::to(&format!("/settings/rates/tariffs/{id}?notice=tariff-saved")).into_response())
}

pub async fn delete_tariff(
    State(state): State<AppState>,
    admin: ActingAdmin,
    Path(id): Path<i32>,
) -> AppResult<Response> {
    let mut change = Change::begin(&state.db, admin.actor()).await?;
    let name = db::delete_tariff(change.db(), id)
        .await
        .on_constraint(db::SITE_TARIFF_FK, || {
            AppError::BadRequest(
                "Sites have (had) this tariff; their bills need it. Remove it from their tariff history first.".into(),
            )
        })?
        .ok_or(AppError::NotFound)?;
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
    admin: ActingAdmin,
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
    let refuse = |problems: Vec<Problem>| async {
        let mut p = RatesPage::load(&state, page).await?;
        p.import_json = form.json.clone();
        p.import_municipality = form.municipality_id.clone();
        p.import_problems = problems;
        Ok::<_, AppError>(unprocessable(render(&p)?))
    };
    let (doc, m) = match (result, municipality) {
        (Ok(doc), Some(m)) => (doc, m),
        (Err(problems), _) => return refuse(problems).await,
        (Ok(_), None) => return Err(AppError::NotFound),
    };
    let mut change = Change::begin(&state.db, admin.actor()).await?;
    let taken = || {
        let message = format!("{} already has a tariff named “{}”; rename it in the JSON.", m.m.name, doc.name);
        FieldErrors::of("name", message)
    };
    let saved = db::save_tariff(change.db(), None, m.id, &doc).await.on_constraint(db::TARIFF_NAME_UNIQUE, taken);
    let id = match saved.field_errors()? {
        Ok(id) => id.ok_or(AppError::NotFound)?,
        Err(errors) => {
            drop(change);
            return refuse(field_problems(&errors)).await;
        }
    };
    state.commit(change, "tariff.imported", Some(&doc.name), serde_json::json!({ "id": id })).await?;
    Ok(Redirect::to(&format!("/settings/rates/tariffs/{id}?notice=tariff-imported")).into_response())
}

// ---------------------------------------------------------------- the library

#[derive(Deserialize)]
pub struct LibraryForm {
    #[serde(default)]
    entry: String,
    /// A municipality's id, or `new`: the one the library entry describes.
    #[serde(default)]
    municipality_id: String,
}

/// "Start from a published tariff": the library entry imported as a new tariff (validated like
/// an import) into the chosen municipality or a new one made from the entry's, then the editor.
pub async fn start_from_library(
    State(state): State<AppState>,
    admin: ActingAdmin,
    page: Page,
    axum::Form(form): axum::Form<LibraryForm>,
) -> AppResult<Response> {
    let refuse = |problems: Vec<Problem>| async {
        let mut p = RatesPage::load(&state, page).await?;
        p.library_entry = form.entry.clone();
        p.library_municipality = form.municipality_id.clone();
        p.library_problems = problems;
        Ok::<_, AppError>(unprocessable(render(&p)?))
    };
    let problem = |field: &str, message: String| vec![Problem { field: field.into(), message }];
    let Some(entry) = super::library::entry(&form.entry) else {
        return refuse(problem("entry", "choose a published tariff from the list.".into())).await;
    };
    // The tariff as an import reads it: the same checks, whatever the library file holds.
    let doc = match serde_json::to_string(&entry.tariff).map(|json| parse_import(&json)) {
        Ok(Ok(doc)) => doc,
        Ok(Err(problems)) => return refuse(problems).await,
        Err(e) => return Err(AppError::internal(e)),
    };
    let existing = match form.municipality_id.as_str() {
        "new" => None,
        raw => match raw.parse::<i32>() {
            Ok(id) => Some(db::municipality(&state.db, id).await?),
            Err(_) => Some(None),
        },
    };
    let mut change = Change::begin(&state.db, admin.actor()).await?;
    let municipality = match existing {
        Some(None) => {
            drop(change);
            return refuse(problem("municipality", "choose a municipality, or a new one.".into())).await;
        }
        Some(Some(m)) if m.m.currency != entry.municipality.currency => {
            drop(change);
            let message = format!(
                "{} bills in {}, the tariff in {}: choose a municipality in {} or a new one.",
                m.m.name, m.m.currency, entry.municipality.currency, entry.municipality.currency
            );
            return refuse(problem("municipality", message)).await;
        }
        Some(Some(m)) => m.id,
        None => {
            let taken = || {
                let message = format!(
                    "a municipality named “{}” already exists: choose it from the list.",
                    entry.municipality.name
                );
                FieldErrors::of("municipality", message)
            };
            let saved = db::save_municipality(change.db(), None, &entry.municipality)
                .await
                .on_constraint(db::MUNICIPALITY_NAME_UNIQUE, taken);
            match saved.field_errors()? {
                Ok(id) => id.ok_or(AppError::NotFound)?,
                Err(errors) => {
                    drop(change);
                    return refuse(field_problems(&errors)).await;
                }
            }
        }
    };
    let taken = || {
        FieldErrors::of(
            "name",
            format!("that municipality already has a tariff named “{}”; rename that one first.", doc.name),
        )
    };
    let saved =
        db::save_tariff(change.db(), None, municipality, &doc).await.on_constraint(db::TARIFF_NAME_UNIQUE, taken);
    let id = match saved.field_errors()? {
        Ok(id) => id.ok_or(AppError::NotFound)?,
        Err(errors) => {
            drop(change);
            return refuse(field_problems(&errors)).await;
        }
    };
    let detail = serde_json::json!({ "id": id, "library": entry.key });
    state.commit(change, "tariff.imported", Some(&doc.name), detail).await?;
    Ok(Redirect::to(&format!("/settings/rates/tariffs/{id}?notice=tariff-imported")).into_response())
}

fn field_problems(errors: &FieldErrors) -> Vec<Problem> {
    errors.iter().map(|(field, message)| Problem { field: field.into(), message: message.into() }).collect()
}

// ---------------------------------------------------------------- site assignments

pub async fn assign(
    State(state): State<AppState>,
    admin: ActingAdmin,
    page: Page,
    axum::Form(pairs): PostedPairs,
) -> AppResult<Response> {
    let form = Fields::from_pairs(pairs);
    let mut errors = FieldErrors::default();
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
        errors.add("site_id", "Choose a site.");
    }
    if tariff_row.is_none() {
        errors.add("tariff_id", "Choose a tariff.");
    }
    if from.is_none() {
        errors.add("effective_from", "Enter the first day (YYYY-MM-DD, the site's local date) it applies.");
    }
    let (Some(site), Some(tariff), Some(from)) = (site_row, tariff_row, from) else {
        let mut p = RatesPage::load(&state, page).await?;
        p.assign = form;
        p.assign_errors = errors;
        return Ok(unprocessable(render(&p)?));
    };
    let mut change = Change::begin(&state.db, admin.actor()).await?;
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
    admin: ActingAdmin,
    axum::Form(form): axum::Form<UnassignForm>,
) -> AppResult<Response> {
    let mut change = Change::begin(&state.db, admin.actor()).await?;
    if !db::unassign(change.db(), form.site_id, form.effective_from).await? {
        return Err(AppError::NotFound);
    }
    let detail = serde_json::json!({ "siteId": form.site_id, "from": form.effective_from });
    state.commit(change, "site.tariff-removed", None, detail).await?;
    Ok(Redirect::to("/settings/rates?notice=tariff-unassigned").into_response())
}
