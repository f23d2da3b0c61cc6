//! What the push is doing, shared by the worker, `/metrics` and Settings → Fleet push.

use std::sync::{Arc, Mutex};

use askama::Template;
use axum::extract::State;
use axum::response::Html;
use chrono::{DateTime, Utc};

use super::outbox;
use crate::error::AppResult;
use crate::state::AppState;
use crate::web::page::Page;
use crate::web::render;
use crate::web::session::RequireAdmin;

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub started: bool,
    pub last_success: Option<DateTime<Utc>>,
    pub last_attempt: Option<DateTime<Utc>>,
    /// The last failure: (status or kind, reason, when); cleared by a success.
    pub failing: Option<(String, String, DateTime<Utc>)>,
    pub rows_pushed: u64,
    pub caught_up: bool,
    /// Age of the oldest reading in the batch being delivered; 0 once caught up.
    pub lag_seconds: f64,
    pub next_attempt: Option<DateTime<Utc>>,
}

/// Cheap to clone; one per process.
#[derive(Clone, Default)]
pub struct PushStatus(Arc<Mutex<Snapshot>>);

impl PushStatus {
    pub fn get(&self) -> Snapshot {
        self.0.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn update(&self, f: impl FnOnce(&mut Snapshot)) {
        if let Ok(mut s) = self.0.lock() {
            f(&mut s);
        }
    }
}

#[derive(Template)]
#[template(path = "fleet/push.html")]
struct PushPage {
    page: Page,
    enabled: bool,
    url: String,
    interval: u64,
    batch_size: u32,
    state: String,
    last_success: String,
    failing: Option<(String, String, String)>,
    rows_pushed: u64,
    lag: String,
    next_attempt: String,
    waiting: i64,
    waiting_rows: i64,
    quarantined: Vec<outbox::Quarantined>,
}

fn when(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "never".into(), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
}

/// Settings → Fleet push (Client mode).
pub async fn page(State(state): State<AppState>, RequireAdmin(_): RequireAdmin, page: Page) -> AppResult<Html<String>> {
    let settings = &state.config.fleet_ingest;
    let s = state.fleet_push.get();
    let (waiting, waiting_rows, _) = outbox::counts(&state.db).await?;
    let quarantined = outbox::quarantined(&state.db).await?;
    let status = if !settings.enabled {
        "Off (FleetIngest__Enabled is not true)"
    } else if s.failing.is_some() {
        "Failing: retrying with backoff"
    } else if s.caught_up {
        "Caught up"
    } else if s.started {
        "Pushing"
    } else {
        "Starting"
    };
    render(&PushPage {
        page,
        enabled: settings.enabled,
        url: settings.url.as_ref().map(|u| u.to_string()).unwrap_or_default(),
        interval: settings.interval.as_secs(),
        batch_size: settings.batch_size,
        state: status.into(),
        last_success: when(s.last_success),
        failing: s.failing.map(|(status, reason, at)| (status, reason, when(Some(at)))),
        rows_pushed: s.rows_pushed,
        lag: format!("{:.0} s", s.lag_seconds),
        next_attempt: when(s.next_attempt),
        waiting,
        waiting_rows,
        quarantined,
    })
}
