//! Prometheus metrics on their own listener (`Application__MetricsAddress`, default
//! `0.0.0.0:9090`), so they are reachable inside the stack's network and never through the
//! public host the way the portal's pages are. Names follow Prometheus conventions
//! (`tau_portal_` prefix, `_total` counters, base units); HTTP metrics are labelled by matched
//! route, never by raw URI.

use std::sync::OnceLock;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sqlx::PgPool;

use crate::clock::Clock;
use crate::error::AppResult;

const LATENCY_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The process-wide recorder (one per process: the `metrics` facade is global).
#[expect(clippy::expect_used, reason = "the buckets are a constant, non-empty list")]
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("tau_portal_http_request_duration_seconds".into()),
                    LATENCY_BUCKETS,
                )
                .expect("static, non-empty buckets")
                .build_recorder();
            let handle = recorder.handle();
            // Fails only when another recorder was installed first; metrics then go there.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

/// What a metric is, for its `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric the portal exports. [`METRICS`] is the single list: the recorder's descriptions,
/// the README's metrics table and the names OPERATIONS.md may use come from it (tests keep the
/// documents in step, and a scrape never shows a name that is not here).
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    /// Labels, as shown in the README (`route,method,status`).
    pub labels: &'static str,
    pub help: &'static str,
}

const fn metric(name: &'static str, kind: Kind, labels: &'static str, help: &'static str) -> Metric {
    Metric { name, kind, labels, help }
}

pub const METRICS: &[Metric] = &[
    metric(
        "tau_portal_http_requests_total",
        Kind::Counter,
        "route,method,status",
        "HTTP requests answered, by matched route (never the raw URI), method and status.",
    ),
    metric(
        "tau_portal_http_request_duration_seconds",
        Kind::Histogram,
        "route,method",
        "Time to answer HTTP requests, by matched route and method.",
    ),
    metric(
        "tau_portal_readings_ingested_total",
        Kind::Counter,
        "source",
        "Readings stored, by source (api, modbus, mqtt, fleet).",
    ),
    metric(
        "tau_portal_readings_dropped_total",
        Kind::Counter,
        "source",
        "Polled readings dropped because the write buffer was full while the database was unavailable, by source.",
    ),
    metric(
        "tau_portal_readings_buffered",
        Kind::Gauge,
        "source",
        "Polled readings waiting in the write buffer, by source: rises while the database is unavailable or slower than the meters, and falls back as they are stored.",
    ),
    metric(
        "tau_portal_polls_total",
        Kind::Counter,
        "device,result",
        "Modbus polls, one per device and slot, by device (externalId) and result (ok; failed: the slot ended without a reading, retries included).",
    ),
    metric(
        "tau_portal_poll_missed_cycles_total",
        Kind::Counter,
        "",
        "Poll slots that passed without a poll of a healthy device (the poller falling behind).",
    ),
    metric(
        "tau_portal_runtime_late_wakeups_total",
        Kind::Counter,
        "",
        "Times a 100 ms timer woke at least 250 ms late: the async runtime was busy or starved of CPU, so polls and requests started late too.",
    ),
    metric(
        "tau_portal_poll_disconnects_total",
        Kind::Counter,
        "",
        "Modbus connections lost or dropped (closed or reset by the other end, or no reply in time); the poller reconnects.",
    ),
    metric(
        "tau_portal_ingest_rows_rejected_total",
        Kind::Counter,
        "",
        "Ingest rows refused (unknown device, bad time).",
    ),
    metric(
        "tau_portal_mqtt_messages_total",
        Kind::Counter,
        "result",
        "MQTT messages received on sensor/#, by result (accepted; invalid: unknown device, topic or payload, logged with the topic).",
    ),
    metric("tau_portal_mqtt_connected", Kind::Gauge, "", "1 while the MQTT subscriber is connected to the broker."),
    metric(
        "tau_portal_mqtt_connection_failures_total",
        Kind::Counter,
        "",
        "Failed or lost connections of the MQTT subscriber to the broker (it reconnects with backoff).",
    ),
    metric("tau_portal_mqtt_credentials", Kind::Gauge, "", "Devices with MQTT broker credentials."),
    metric(
        "tau_portal_sites",
        Kind::Gauge,
        "state",
        "Sites, by the state of their enabled devices (online: all online; degraded: some; offline: none; empty: no enabled devices).",
    ),
    metric(
        "tau_portal_devices",
        Kind::Gauge,
        "state,source",
        "Devices, by state (online, offline, failing, no_readings, disabled: the status their pages show) and source (modbus-tcp, push, mqtt).",
    ),
    READINGS_STORED_PER_DAY,
    metric(
        "tau_portal_database_size_bytes",
        Kind::Gauge,
        "",
        "Size of the portal's database on disk (pg_database_size: tables, indexes, TOAST).",
    ),
    metric(
        "tau_portal_users",
        Kind::Gauge,
        "role,state",
        "User accounts, by role (admin, viewer) and state (active, disabled).",
    ),
    metric("tau_portal_api_keys", Kind::Gauge, "state", "API keys, by state (active, revoked)."),
    metric("tau_portal_rollup_runs_total", Kind::Counter, "outcome", "Energy rollup runs, by outcome (ok, error)."),
    metric("tau_portal_rollup_readings_total", Kind::Counter, "", "Readings read by the energy rollup."),
    metric(
        "tau_portal_rollup_intervals_written_total",
        Kind::Counter,
        "",
        "15-minute energy intervals written (inserted or replaced) by the rollup.",
    ),
    metric(
        "tau_portal_rollup_backfills_total",
        Kind::Counter,
        "",
        "Device recomputations because readings arrived older than the device's rollup watermark.",
    ),
    metric("tau_portal_rollup_last_run_duration_seconds", Kind::Gauge, "", "Duration of the last energy rollup run."),
    metric(
        "tau_portal_hourly_rollup_last_run_duration_seconds",
        Kind::Gauge,
        "",
        "Duration of the last run of the hourly chart rollup.",
    ),
    metric(
        "tau_portal_rollup_lag_seconds",
        Kind::Gauge,
        "",
        "How far the oldest device's final energy intervals trail the rollup's cutoff.",
    ),
    metric(
        "tau_portal_fleet_push_lag_seconds",
        Kind::Gauge,
        "",
        "Fleet push (Client): age of the oldest reading in the batch being delivered; 0 when caught up.",
    ),
    metric(
        "tau_portal_fleet_push_last_success_timestamp_seconds",
        Kind::Gauge,
        "",
        "Fleet push (Client): Unix time of the last batch the Admin accepted.",
    ),
    metric(
        "tau_portal_fleet_push_rows_total",
        Kind::Counter,
        "type",
        "Fleet push (Client): rows the Admin stored, by batch type (sites, devices, measurements).",
    ),
    metric(
        "tau_portal_fleet_push_failures_total",
        Kind::Counter,
        "status",
        "Fleet push (Client): failed deliveries, by status (401, 413, 500, ..., connect, timeout, database).",
    ),
    metric(
        "tau_portal_fleet_push_quarantined_total",
        Kind::Counter,
        "",
        "Fleet push (Client): batches quarantined after repeated refusals as malformed.",
    ),
    metric(
        "tau_portal_fleet_batches_received_total",
        Kind::Counter,
        "status",
        "Fleet ingest (Admin): batches received, by answer status.",
    ),
    metric(
        "tau_portal_licence_state",
        Kind::Gauge,
        "state",
        "Client: 1 for where the licence stands (unlicensed, valid, expires_soon, grace, read_only, refused), 0 for the rest; updated every minute.",
    ),
    metric(
        "tau_portal_licence_expiry_timestamp_seconds",
        Kind::Gauge,
        "",
        "Client: Unix time the licence expires (absent without a verified licence key).",
    ),
    metric(
        "tau_portal_licence_read_only_timestamp_seconds",
        Kind::Gauge,
        "",
        "Client: Unix time settings become read-only, the expiry plus the licence's grace period.",
    ),
    metric(
        "tau_portal_licence_limit",
        Kind::Gauge,
        "resource",
        "Client: the licence's limits, by resource (sites, devices, users: active users); absent: unlimited.",
    ),
    metric(
        "tau_portal_licence_info",
        Kind::Gauge,
        "customer",
        "Client: always 1 with a verified licence key; the label carries the customer code it was issued to.",
    ),
    metric("tau_portal_build_info", Kind::Gauge, "version", "Always 1; the label carries the version."),
];

/// How many UTC days `tau_portal_readings_stored_per_day` reports, today included: a billing
/// scraper that missed a few days still finds each day's final figure.
pub const STORED_DAYS: i32 = 7;

/// Rendered by [`scrape`] itself, not held by the recorder: its `day` label moves on daily, and a
/// recorder keeps every series it was given for as long as the process runs.
const READINGS_STORED_PER_DAY: Metric = metric(
    "tau_portal_readings_stored_per_day",
    Kind::Gauge,
    "day",
    "Readings stored on each of the last 7 UTC days (day=YYYY-MM-DD; today's still growing), counted with the rows in the write path: the figure usage is billed on. Kept in the database, so restarts do not reset it.",
);

fn describe() {
    for m in METRICS {
        let unit = m.name.ends_with("_seconds").then_some(metrics::Unit::Seconds);
        match (m.kind, unit) {
            (Kind::Counter, _) => metrics::describe_counter!(m.name, m.help),
            (Kind::Gauge, Some(unit)) => metrics::describe_gauge!(m.name, unit, m.help),
            (Kind::Gauge, None) => metrics::describe_gauge!(m.name, m.help),
            (Kind::Histogram, Some(unit)) => metrics::describe_histogram!(m.name, unit, m.help),
            (Kind::Histogram, None) => metrics::describe_histogram!(m.name, m.help),
        }
    }
}

/// The metrics as a Markdown table for the README (a test keeps the two in step).
pub fn markdown_table() -> String {
    let mut out = String::from("| Metric | Type | Meaning |\n|---|---|---|\n");
    for m in METRICS {
        let labels = if m.labels.is_empty() { String::new() } else { format!("{{{}}}", m.labels) };
        let kind = match m.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        out.push_str(&format!("| `{}{labels}` | {kind} | {} |\n", m.name, m.help));
    }
    out
}

/// How often recorded histogram samples are folded into their buckets. Without it the recorder
/// keeps every raw sample until the next scrape, and memory grows while nobody scrapes.
const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Folds histogram samples every few seconds until `shutdown`.
pub async fn upkeep(shutdown: tokio_util::sync::CancellationToken) {
    let handle = handle();
    let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => handle.run_upkeep(),
            () = shutdown.cancelled() => return,
        }
    }
}

/// How often the runtime probe wakes, and how late a wakeup must be to count as late.
const PROBE_EVERY: std::time::Duration = std::time::Duration::from_millis(100);
const PROBE_LATE: std::time::Duration = std::time::Duration::from_millis(250);

/// Counts the runtime's late wakeups until `shutdown`: a timer that fires late means every task
/// waiting on this runtime (polls among them) was held up as long, which no per-task metric
/// shows. It tells a busy portal from a slow peer when polls miss their slots.
pub async fn runtime_probe(shutdown: tokio_util::sync::CancellationToken) {
    let late = metrics::counter!("tau_portal_runtime_late_wakeups_total");
    loop {
        let due = tokio::time::Instant::now() + PROBE_EVERY;
        tokio::select! {
            () = tokio::time::sleep_until(due) => {}
            () = shutdown.cancelled() => return,
        }
        if due.elapsed() >= PROBE_LATE {
            late.increment(1);
        }
    }
}

/// The label of a request's method: the standard ones by name, anything else as `other` (a
/// client choosing methods must not be able to create metric series without end).
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The request metrics' handles of one (route, method, status), made once: the Grafana gate is
/// asked dozens of times per dashboard load, and building the labelled keys of two metrics for
/// every request (three strings, two registry lookups) was a measurable part of its cost.
type Handles = (metrics::Counter, metrics::Histogram);

fn handles(route: &str, method: &'static str, status: u16) -> Handles {
    use std::collections::HashMap;
    use std::sync::RwLock;
    type ByRoute = HashMap<String, HashMap<(&'static str, u16), Handles>>;
    static CACHE: OnceLock<RwLock<ByRoute>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let found = cache
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(route)
        .and_then(|by_label| by_label.get(&(method, status)).cloned());
    if let Some(h) = found {
        return h;
    }
    let made = (
        metrics::counter!("tau_portal_http_requests_total", "route" => route.to_string(), "method" => method, "status" => status.to_string()),
        metrics::histogram!("tau_portal_http_request_duration_seconds", "route" => route.to_string(), "method" => method),
    );
    let mut cache = cache.write().unwrap_or_else(std::sync::PoisonError::into_inner);
    cache.entry(route.to_string()).or_default().entry((method, status)).or_insert(made).clone()
}

/// Counts and times every request under its matched route (`unmatched` for the rest: the
/// labels' values are bounded, whatever clients send).
pub async fn track(req: Request, next: Next) -> Response {
    // A clone of the matched path is a reference count, not a copy of the string.
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = method_label(req.method());
    let started = Instant::now();
    let res = next.run(req).await;
    let (requests, duration) =
        handles(route.as_ref().map_or("unmatched", MatchedPath::as_str), method, res.status().as_u16());
    requests.increment(1);
    duration.record(started.elapsed().as_secs_f64());
    res
}

/// The metrics listener's router: it needs only the database (for the inventory and usage
/// gauges) and the clock (device states).
pub fn router(db: PgPool, clock: Clock) -> Router {
    Router::new().route("/metrics", get(scrape)).with_state((db, clock))
}

/// Inventory and usage gauges are read from the database at scrape time (counts and index
/// probes), so they are right whichever process or admin changed the data.
async fn scrape(State((db, clock)): State<(PgPool, Clock)>) -> AppResult<Response> {
    let inventory = crate::sites::usage::read(&db, clock.now()).await?;
    let users = crate::auth::db::user_counts(&db).await?;
    let (keys_active, keys_revoked) = crate::ingest::db::key_counts(&db).await?;
    let mqtt_credentials = crate::mqtt::db::credential_count(&db).await?;
    let stored = crate::measurements::stored_per_day(&db, STORED_DAYS).await?;
    let database_size = crate::db::size_bytes(&db).await?;

    metrics::gauge!("tau_portal_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    for (state, n) in inventory.sites {
        metrics::gauge!("tau_portal_sites", "state" => state).set(n as f64);
    }
    for (state, source, n) in inventory.devices {
        metrics::gauge!("tau_portal_devices", "state" => state, "source" => source).set(n as f64);
    }
    metrics::gauge!("tau_portal_database_size_bytes").set(database_size as f64);
    for admin in [true, false] {
        for off in [false, true] {
            let n = users.iter().find(|u| u.0 == admin && u.1 == off).map_or(0, |u| u.2);
            let role = if admin { "admin" } else { "viewer" };
            let state = if off { "disabled" } else { "active" };
            metrics::gauge!("tau_portal_users", "role" => role, "state" => state).set(n as f64);
        }
    }
    metrics::gauge!("tau_portal_api_keys", "state" => "active").set(keys_active as f64);
    metrics::gauge!("tau_portal_api_keys", "state" => "revoked").set(keys_revoked as f64);
    metrics::gauge!("tau_portal_mqtt_credentials").set(mqtt_credentials as f64);

    let mut body = handle().render();
    let per_day: Vec<(String, f64)> = stored.iter().map(|(day, n)| (format!("day=\"{day}\""), *n as f64)).collect();
    write_gauge(&mut body, &READINGS_STORED_PER_DAY, &per_day);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response())
}

/// Appends a gauge family in the text format, as the recorder writes its own: HELP, TYPE, one
/// line per series (`labels` already formatted, `name="value"` pairs), a blank line.
fn write_gauge(out: &mut String, m: &Metric, series: &[(String, f64)]) {
    use std::fmt::Write;
    let help = m.help.replace('\\', "\\\\").replace('\n', "\\n");
    let _ = writeln!(out, "# HELP {} {help}\n# TYPE {} gauge", m.name, m.name);
    for (labels, value) in series {
        let _ = writeln!(out, "{}{{{labels}}} {value}", m.name);
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use tokio_util::sync::CancellationToken;

    use super::*;

    fn late_wakeups() -> u64 {
        handle()
            .render()
            .lines()
            .find_map(|l| l.strip_prefix("tau_portal_runtime_late_wakeups_total "))
            .map_or(0, |v| v.trim().parse().unwrap_or(0))
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_held_up_runtime_counts_a_late_wakeup() {
        let before = late_wakeups();
        let stop = CancellationToken::new();
        let probe = tokio::spawn(runtime_probe(stop.clone()));
        tokio::task::yield_now().await; // the probe arms its 100 ms timer
        // Hold the only runtime thread, as a long synchronous step would.
        std::thread::sleep(Duration::from_millis(400));
        let deadline = Instant::now() + Duration::from_secs(5);
        while late_wakeups() <= before {
            assert!(Instant::now() < deadline, "no late wakeup counted after the runtime was held for 400 ms");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.cancel();
        probe.await.unwrap();
    }
}
