//! Alarms: rules that watch the devices, the alarms they raise, and who acknowledged and cleared
//! them. This module, and nothing outside it, reads and writes the `alarms` schema (not
//! readable by Grafana's role).
//!
//! # Tables (migration `Alarms`)
//! - `alarms."Rules"`: what to watch (kind, severity, scope: every device, a site's devices or
//!   one device) and its parameters. Kinds: `communication-loss` (no reading for `MissedPolls`
//!   poll intervals of the device) and `threshold` (a quantity above or below a limit, with
//!   hysteresis and a hold time; with a `Nominal` the limit and hysteresis are percent of it, e.g.
//!   over-voltage = 10 % above 230 V). Seeded: communication loss on for every device;
//!   over/under voltage, low power factor and frequency high/low ready but off (the nominal is
//!   the site's to confirm). Migration `AlarmRuleKinds` adds the rules that need the tariff or
//!   the rollup: `demand-limit` (a site's current demand window forecast above `Limit` kW/kVA,
//!   `Unit`; without a `Limit`, above the site's NMD in its unit: migration `NotifiedMaximumDemand`), `max-demand` (a new highest demand window of the billing month, with its cost),
//!   `budget` (the month's cost to date or projected, `Basis`, above `Limit`) and `data-gap` (an
//!   interval the rollup estimated); data gap and new maximum demand are seeded on.
//! - `alarms."Alarms"`: one row per raised alarm, open (`EndedAt` NULL) or history, with the
//!   rule's name, kind and severity and the subject's name copied at raise time (history reads as
//!   it was), the values that raised and cleared it, who acknowledged it (when, comment) and what
//!   ended it (`condition`, `rule`, or the user who cleared it). A partial unique index allows one
//!   open alarm per rule and subject.
//!
//! # The evaluator
//! [`rules`] is the pure part: a [`rules::Level`] per observation (breach, inside the hysteresis
//! band, recovered, unknown) and [`rules::step`], the state machine normal → pending (breached,
//! not yet for the hold time) → active → recovering → normal. A raise needs the breach for the
//! whole hold time without a break, a clear needs the recovery (past the band) for as long; a
//! value in the band changes nothing, so a value wandering around the limit cannot flap.
//! Threshold rules are judged on each device's newest reading at the reading's time (the hold
//! counts measured time); communication loss at the cycle's time.
//!
//! [`evaluate::Evaluator`] runs every [`evaluate::EVERY`] in Client mode, tracked by the
//! startup's task tracker and stopped by its cancellation token. A cycle reads the enabled
//! rules, the devices, their newest readings (through `measurements::queries`) and the open
//! alarms, steps every (rule, device), and writes the cycle's raises and ends in one
//! transaction. The phases live in memory; an open alarm in the database is "active" for a
//! phase the evaluator does not know (a restart). A failed cycle (database away) writes nothing,
//! keeps the phases and is retried at the next tick; polling and pages never wait for it.
//! Alarms nobody watches any more (rule disabled or changed, device disabled or out of scope)
//! end with `rule`; a rule's change or deletion ends its open alarms in the change's own
//! transaction. An alarm a user clears by hand stays cleared until its condition has recovered
//! and breached again (until the next restart, which judges it afresh).
//!
//! # Pages
//! `/alarms` (every signed-in user): open alarms first (most severe, newest), then history;
//! filters for state, severity and site. `/alarms/{id}`: the alarm with acknowledge (comment)
//! and clear, both audited (`alarm.acknowledged`, `alarm.cleared`). The header shows the open
//! count ([`ActiveAlarms`], refreshed by every cycle and by every change that notes
//! `Cache::ActiveAlarms`); the Overview includes `alarms/active.html`. Admins manage the rules
//! under Settings → Alarm rules (`alarm-rule.created|updated|deleted`).
//!
//! # Notifications
//! [`notify`]: recipient lists (e-mail addresses and/or a signed webhook, least severity, quiet
//! hours), an outbox written in the transaction that raises or ends an alarm, and a task of its
//! own that plans, renders, sends and records every delivery (Settings → Notifications).

pub mod db;
pub mod evaluate;
mod forms;
pub mod notify;
mod routes;
mod rule_routes;
pub mod rules;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use axum::Router;
use axum::routing::{get, post};
use sqlx::PgPool;

use crate::state::AppState;

pub use routes::{ActiveAlarmView, active_alarms};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/alarms", get(routes::list))
        .route("/alarms/{id}", get(routes::show))
        .route("/alarms/{id}/acknowledge", post(routes::acknowledge))
        .route("/alarms/{id}/clear", post(routes::clear))
        .route("/settings/alarm-rules", get(rule_routes::list))
        .route("/settings/alarm-rules/new", get(rule_routes::new_rule).post(rule_routes::create_rule))
        .route("/settings/alarm-rules/{id}/edit", get(rule_routes::edit_rule).post(rule_routes::update_rule))
        .route("/settings/alarm-rules/{id}/delete", get(rule_routes::confirm_delete).post(rule_routes::delete_rule))
        .route("/settings/notifications", get(notify::list_page))
        .route("/settings/notifications/new", get(notify::new_list).post(notify::create_list))
        .route("/settings/notifications/{id}/edit", get(notify::edit_list).post(notify::update_list))
        .route("/settings/notifications/{id}/delete", get(notify::confirm_delete).post(notify::delete_list))
}

/// The number of open alarms, for every page's header: counted by the evaluator after every
/// cycle and after every change that ends or acknowledges alarms, never per page.
#[derive(Clone, Default)]
pub struct ActiveAlarms(Arc<AtomicI64>);

impl ActiveAlarms {
    pub fn count(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }

    pub async fn refresh(&self, db: &PgPool) -> Result<(), sqlx::Error> {
        self.0.store(db::active_count(db).await?, Ordering::Relaxed);
        Ok(())
    }
}
