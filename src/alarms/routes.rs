//! The alarm pages: the list (open first, history, filters), one alarm with acknowledge and
//! clear (any signed-in user; audited), and the Overview's list of open alarms.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::db::{self, AlarmFilter, AlarmRow};
use super::evaluate::duration_text;
use super::forms::{COMMENT_MAX, CommentForm};
use super::rules::{Severity, watched};
use crate::change::Change;
use crate::error::{AppError, AppResult, FieldErrors, FormResult};
use crate::sites::readings::{format_quantity, local_time};
use crate::state::AppState;
use crate::web::client::ClientAddr;
use crate::web::page::Page;
use crate::web::render;
use crate::web::session::CurrentUser;

/// How many alarms a list shows (newest first after the open ones).
const LIST_LIMIT: i64 = 500;
/// How many open alarms the Overview lists.
const OVERVIEW_LIMIT: i64 = 10;

/// An alarm as a row of a list or the head of its page.
pub struct AlarmView {
    pub id: i64,
    pub severity: &'static str,
    pub severity_label: &'static str,
    pub subject: String,
    pub rule_name: String,
    pub message: String,
    pub started: String,
    pub ended: Option<String>,
    pub duration: String,
    pub trigger: String,
    pub clear: String,
    pub cleared_by: String,
    pub acknowledged: Option<String>,
    pub ack_comment: Option<String>,
}

impl AlarmView {
    fn of(a: &AlarmRow, now: DateTime<Utc>) -> AlarmView {
        let tz = a.time_zone.parse().unwrap_or(chrono_tz::UTC);
        let severity = Severity::parse(&a.severity).unwrap_or(Severity::Warning);
        let unit = a.details.get("quantity").and_then(|q| q.as_str()).and_then(watched).map(|w| w.unit);
        let value = |v: Option<f64>| match (v, unit) {
            (Some(v), Some(unit)) => format_quantity(v, unit),
            (Some(v), None) if a.kind == "communication-loss" => format!("silent {}", duration_text(v)),
            (Some(v), None) => format_quantity(v, ""),
            (None, _) => "–".into(),
        };
        AlarmView {
            id: a.id,
            severity: severity.as_str(),
            severity_label: severity.label(),
            subject: a.subject.clone(),
            rule_name: a.rule_name.clone(),
            message: a.message.clone(),
            started: local_time(a.started_at, tz),
            ended: a.ended_at.map(|t| local_time(t, tz)),
            duration: duration_text((a.ended_at.unwrap_or(now) - a.started_at).num_seconds() as f64),
            trigger: value(a.trigger_value),
            clear: value(a.clear_value),
            cleared_by: match a.cleared_by.as_deref() {
                Some("condition") => "the condition recovered".into(),
                Some("rule") => "its rule changed or no longer watches this device".into(),
                Some(user) => format!("cleared by {user}"),
                None => String::new(),
            },
            acknowledged: a
                .acknowledged_at
                .map(|t| format!("{} at {}", a.acknowledged_by.as_deref().unwrap_or("someone"), local_time(t, tz))),
            ack_comment: a.ack_comment.clone(),
        }
    }
}

/// The open alarms the Overview lists (most severe, newest first), and how many there are.
pub struct ActiveAlarmView {
    pub alarms: Vec<AlarmView>,
    pub total: i64,
}

pub async fn active_alarms(state: &AppState) -> AppResult<ActiveAlarmView> {
    let filter = AlarmFilter { open: Some(true), limit: OVERVIEW_LIMIT, ..Default::default() };
    let now = state.clock.now();
    let alarms = db::alarms(&state.db, &filter).await?.iter().map(|a| AlarmView::of(a, now)).collect();
    Ok(ActiveAlarmView { alarms, total: state.alarms.count() })
}

#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    state: String,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    site: String,
}

#[derive(Template)]
#[template(path = "alarms/list.html")]
struct ListPage {
    page: Page,
    alarms: Vec<AlarmView>,
    state: String,
    severity: String,
    site: String,
    sites: Vec<(i32, String)>,
    severities: [Severity; 4],
    limit: i64,
}

pub async fn list(
    State(state): State<AppState>,
    CurrentUser(_): CurrentUser,
    page: Page,
    Query(q): Query<ListQuery>,
) -> AppResult<Html<String>> {
    let open = match q.state.as_str() {
        "active" => Some(true),
        "history" => Some(false),
        _ => None,
    };
    let severity = Severity::parse(&q.severity);
    let site_id = q.site.parse().ok();
    let filter = AlarmFilter { open, severity: severity.map(Severity::as_str), site_id, limit: LIST_LIMIT };
    let now = state.clock.now();
    let alarms = db::alarms(&state.db, &filter).await?.iter().map(|a| AlarmView::of(a, now)).collect();
    let sites = crate::sites::db::site_names(&state.db).await?;
    render(&ListPage {
        page,
        alarms,
        state: open.map_or("all", |o| if o { "active" } else { "history" }).into(),
        severity: severity.map_or("", Severity::as_str).into(),
        site: site_id.map(|s: i32| s.to_string()).unwrap_or_default(),
        sites,
        severities: Severity::ALL,
        limit: LIST_LIMIT,
    })
}

#[derive(Template)]
#[template(path = "alarms/alarm.html")]
struct AlarmPage {
    page: Page,
    alarm: AlarmView,
    open: bool,
    comment: String,
    errors: FieldErrors,
    comment_max: usize,
}

fn alarm_page(
    page: Page,
    a: &AlarmRow,
    now: DateTime<Utc>,
    comment: String,
    errors: FieldErrors,
) -> AppResult<Html<String>> {
    render(&AlarmPage {
        page,
        alarm: AlarmView::of(a, now),
        open: a.ended_at.is_none(),
        comment,
        errors,
        comment_max: COMMENT_MAX,
    })
}

pub async fn show(
    State(state): State<AppState>,
    CurrentUser(_): CurrentUser,
    page: Page,
    Path(id): Path<i64>,
) -> AppResult<Html<String>> {
    let alarm = db::alarm(&state.db, id).await?.ok_or(AppError::NotFound)?;
    alarm_page(page, &alarm, state.clock.now(), String::new(), FieldErrors::default())
}

/// What a user does to an alarm.
#[derive(Clone, Copy)]
enum Act {
    Acknowledge,
    Clear,
}

async fn act(
    state: AppState,
    user: CurrentUser,
    ip: ClientAddr,
    page: Page,
    id: i64,
    form: CommentForm,
    act: Act,
) -> AppResult<Response> {
    let CurrentUser(user) = user;
    let alarm = db::alarm(&state.db, id).await?.ok_or(AppError::NotFound)?;
    let now = state.clock.now();
    let done = async {
        let comment = form.validate()?;
        let mut change = Change::begin(&state.db, user.actor(ip.0)).await?;
        let (done, action) = match act {
            Act::Acknowledge => (db::acknowledge(&mut change, id, &user, &comment, now).await?, "alarm.acknowledged"),
            Act::Clear => (db::clear(&mut change, id, &user.email, now).await?, "alarm.cleared"),
        };
        if done {
            let detail = serde_json::json!({ "alarmId": id, "rule": alarm.rule_name, "comment": comment });
            state.commit(change, action, Some(&alarm.subject), detail).await?;
        }
        Ok::<_, AppError>(done)
    };
    let notice = match done.await.field_errors()? {
        Ok(true) => match act {
            Act::Acknowledge => "alarm-acknowledged",
            Act::Clear => "alarm-cleared",
        },
        Ok(false) => match act {
            Act::Acknowledge => "alarm-already-acknowledged",
            Act::Clear => "alarm-already-ended",
        },
        Err(errors) => {
            let html = alarm_page(page, &alarm, now, form.comment.clone(), errors)?;
            return Ok((StatusCode::UNPROCESSABLE_ENTITY, html).into_response());
        }
    };
    Ok(Redirect::to(&format!("/alarms/{id}?notice={notice}")).into_response())
}

pub async fn acknowledge(
    State(state): State<AppState>,
    user: CurrentUser,
    ip: ClientAddr,
    page: Page,
    Path(id): Path<i64>,
    axum::Form(form): axum::Form<CommentForm>,
) -> AppResult<Response> {
    act(state, user, ip, page, id, form, Act::Acknowledge).await
}

pub async fn clear(
    State(state): State<AppState>,
    user: CurrentUser,
    ip: ClientAddr,
    page: Page,
    Path(id): Path<i64>,
    axum::Form(form): axum::Form<CommentForm>,
) -> AppResult<Response> {
    act(state, user, ip, page, id, form, Act::Clear).await
}
