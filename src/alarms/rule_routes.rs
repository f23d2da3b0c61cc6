//! Settings → Alarm rules (admins): the list, create, edit (enable, disable) and delete; every
//! change audited in its own transaction (`Change` + `state.commit`).

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};

use super::db::{self, RuleRow};
use super::evaluate::duration_text;
use super::forms::{self, DUPLICATE_RULE, KINDS, RuleForm, SCOPE_GONE};
use super::rules::{Severity, WATCHED, Watched, watched};
use crate::change::Change;
use crate::error::{AppError, AppResult, FieldErrors, FormResult, ResultExt};
use crate::state::AppState;
use crate::web::page::Page;
use crate::web::render;
use crate::web::session::{ActingAdmin, RequireAdmin};

/// A rule as a row of the list.
pub struct RuleView {
    id: i32,
    name: String,
    kind: String,
    severity: &'static str,
    severity_label: &'static str,
    enabled: bool,
    scope: String,
    condition: String,
}

fn rule_view(r: &RuleRow) -> RuleView {
    let severity = Severity::parse(&r.severity).unwrap_or(Severity::Warning);
    let per_site = forms::SITE_KINDS.contains(&r.kind.as_str());
    let scope = match (&r.site_name, &r.device_name) {
        (_, Some(device)) => format!("Device {device}"),
        (Some(site), None) if per_site => format!("Site {site}"),
        (Some(site), None) => format!("Devices of {site}"),
        (None, None) if per_site => "Every site".into(),
        (None, None) => "Every device".into(),
    };
    let band = if r.hysteresis > 0.0 { format!(" (hysteresis {})", r.hysteresis) } else { String::new() };
    let hold =
        if r.hold_seconds > 0 { format!(" for {}", duration_text(f64::from(r.hold_seconds))) } else { String::new() };
    let condition = match (r.kind.as_str(), r.quantity.as_deref().and_then(watched)) {
        ("communication-loss", _) => format!("No reading for {} poll intervals", r.missed_polls.unwrap_or_default()),
        ("demand-limit", _) => match r.limit {
            Some(limit) => {
                format!("Demand window forecast above {limit} {}{hold}{band}", r.unit.as_deref().unwrap_or(""))
            }
            None => format!("Demand window forecast above the site's notified maximum demand (NMD){hold}{band}"),
        },
        ("budget", _) => format!(
            "{} above {} (tariff's currency, with VAT){hold}{band}",
            if r.basis.as_deref() == Some("projected") {
                "Projection to the billing period's end"
            } else {
                "Billing period to date"
            },
            r.limit.unwrap_or_default()
        ),
        ("max-demand", _) => "A new highest demand of the billing month (sites with a demand charge)".into(),
        ("data-gap", _) => "Readings missing for whole intervals (energy estimated)".into(),
        (_, Some(w)) => {
            let side = r.direction.as_deref().unwrap_or("");
            let (limit, band) = match r.nominal {
                Some(n) => (
                    format!("{}% {side} the nominal {n} {}", r.limit.unwrap_or_default(), w.unit),
                    format!("{}%", r.hysteresis),
                ),
                None => (
                    format!("{side} {} {}", r.limit.unwrap_or_default(), w.unit),
                    format!("{} {}", r.hysteresis, w.unit),
                ),
            };
            format!("{} {limit}{hold} (hysteresis {band})", w.label)
        }
        _ => String::new(),
    };
    RuleView {
        id: r.id,
        name: r.name.clone(),
        kind: forms::kind_label(&r.kind).to_string(),
        severity: severity.as_str(),
        severity_label: severity.label(),
        enabled: r.enabled,
        scope,
        condition,
    }
}

#[derive(Template)]
#[template(path = "alarms/rules.html")]
struct RulesPage {
    page: Page,
    rules: Vec<RuleView>,
}

pub async fn list(State(state): State<AppState>, RequireAdmin(_): RequireAdmin, page: Page) -> AppResult<Html<String>> {
    let rules = db::rules(&state.db).await?.iter().map(rule_view).collect();
    render(&RulesPage { page, rules })
}

/// A choice of the scope select: value and label.
pub struct ScopeOption {
    value: String,
    label: String,
}

#[derive(Template)]
#[template(path = "alarms/rule_form.html")]
struct RuleFormPage {
    page: Page,
    /// The rule being edited (id, stored name); `None`: a new rule.
    editing: Option<(i32, String)>,
    form: RuleForm,
    errors: FieldErrors,
    kinds: &'static [(&'static str, &'static str)],
    severities: [Severity; 4],
    quantities: &'static [Watched],
    scopes: Vec<ScopeOption>,
}

async fn scopes(state: &AppState) -> AppResult<Vec<ScopeOption>> {
    let mut out = vec![ScopeOption { value: "all".into(), label: "Every device (site rules: every site)".into() }];
    let devices = crate::sites::db::watched_devices(&state.db).await?;
    for (id, name) in crate::sites::db::site_names(&state.db).await? {
        out.push(ScopeOption { value: format!("site:{id}"), label: format!("Site {name} (its devices)") });
        for d in devices.iter().filter(|d| d.site_id == id) {
            out.push(ScopeOption { value: format!("device:{}", d.id), label: format!("{name} › {}", d.name) });
        }
    }
    Ok(out)
}

async fn rule_form(
    state: &AppState,
    page: Page,
    editing: Option<(i32, String)>,
    form: RuleForm,
    errors: FieldErrors,
) -> AppResult<Html<String>> {
    let scopes = scopes(state).await?;
    render(&RuleFormPage {
        page,
        editing,
        form,
        errors,
        kinds: &KINDS,
        severities: Severity::ALL,
        quantities: WATCHED,
        scopes,
    })
}

async fn invalid(
    state: &AppState,
    page: Page,
    editing: Option<(i32, String)>,
    form: RuleForm,
    errors: FieldErrors,
) -> AppResult<Response> {
    Ok((StatusCode::UNPROCESSABLE_ENTITY, rule_form(state, page, editing, form, errors).await?).into_response())
}

fn duplicate() -> FieldErrors {
    FieldErrors::of("name", DUPLICATE_RULE)
}

fn scope_gone() -> FieldErrors {
    FieldErrors::of("scope", SCOPE_GONE)
}

pub async fn new_rule(
    State(state): State<AppState>,
    RequireAdmin(_): RequireAdmin,
    page: Page,
) -> AppResult<Html<String>> {
    rule_form(&state, page, None, RuleForm::new_rule(), FieldErrors::default()).await
}

pub async fn create_rule(
    State(state): State<AppState>,
    admin: ActingAdmin,
    page: Page,
    axum::Form(form): axum::Form<RuleForm>,
) -> AppResult<Response> {
    let created = async {
        let rule = form.validate()?;
        let mut change = Change::begin(&state.db, admin.actor()).await?;
        db::insert_rule(&mut change, &rule.fields())
            .await
            .on_constraint(db::RULE_NAME_UNIQUE, duplicate)
            .on_constraint(db::RULE_SITE_FK, scope_gone)
            .on_constraint(db::RULE_DEVICE_FK, scope_gone)?;
        state.commit(change, "alarm-rule.created", Some(&rule.name), rule.detail()).await?;
        Ok::<_, AppError>(())
    };
    match created.await.field_errors()? {
        Ok(()) => Ok(Redirect::to("/settings/alarm-rules?notice=alarm-rule-saved").into_response()),
        Err(errors) => invalid(&state, page, None, form, errors).await,
    }
}

pub async fn edit_rule(
    State(state): State<AppState>,
    RequireAdmin(_): RequireAdmin,
    page: Page,
    Path(id): Path<i32>,
) -> AppResult<Html<String>> {
    let rule = db::rule(&state.db, id).await?.ok_or(AppError::NotFound)?;
    rule_form(&state, page, Some((id, rule.name.clone())), RuleForm::from(&rule), FieldErrors::default()).await
}

pub async fn update_rule(
    State(state): State<AppState>,
    admin: ActingAdmin,
    page: Page,
    Path(id): Path<i32>,
    axum::Form(form): axum::Form<RuleForm>,
) -> AppResult<Response> {
    let current = db::rule(&state.db, id).await?.ok_or(AppError::NotFound)?;
    let updated = async {
        let rule = form.validate()?;
        let mut change = Change::begin(&state.db, admin.actor()).await?;
        let found = db::update_rule(&mut change, id, &rule.fields(), state.clock.now())
            .await
            .on_constraint(db::RULE_NAME_UNIQUE, duplicate)
            .on_constraint(db::RULE_SITE_FK, scope_gone)
            .on_constraint(db::RULE_DEVICE_FK, scope_gone)?;
        if !found {
            return Err(AppError::NotFound);
        }
        state.commit(change, "alarm-rule.updated", Some(&rule.name), rule.detail()).await?;
        Ok(())
    };
    match updated.await.field_errors()? {
        Ok(()) => Ok(Redirect::to("/settings/alarm-rules?notice=alarm-rule-saved").into_response()),
        Err(errors) => invalid(&state, page, Some((id, current.name)), form, errors).await,
    }
}

#[derive(Template)]
#[template(path = "alarms/delete_rule.html")]
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
    let rule = db::rule(&state.db, id).await?.ok_or(AppError::NotFound)?;
    render(&DeletePage { page, id, name: rule.name })
}

pub async fn delete_rule(
    State(state): State<AppState>,
    admin: ActingAdmin,
    Path(id): Path<i32>,
) -> AppResult<Response> {
    let mut change = Change::begin(&state.db, admin.actor()).await?;
    let name = db::delete_rule(&mut change, id, state.clock.now()).await?.ok_or(AppError::NotFound)?;
    state.commit(change, "alarm-rule.deleted", Some(&name), serde_json::json!({ "id": id })).await?;
    Ok(Redirect::to("/settings/alarm-rules?notice=alarm-rule-deleted").into_response())
}
