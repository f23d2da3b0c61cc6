//! Logging: one JSON object per line on stdout (`timestamp`, `level`, `target`, `message`,
//! fields, and the current span's fields such as `request_id` and `route`), filtered by
//! `RUST_LOG`. Each HTTP request runs in a span keyed by its matched route, never the raw URI,
//! so that log queries and metrics group requests by endpoint.

use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use axum::http::Response;
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::request_id::RequestId;
use tower_http::trace::{MakeSpan, OnResponse, TraceLayer};
use tracing::Span;
use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber. An unparsable filter falls back to `info` with a warning
/// instead of silencing the logs an operator needs to see why startup failed.
pub fn init(filter: &str) {
    let (env_filter, bad_filter) = match EnvFilter::try_new(filter) {
        Ok(f) => (f, None),
        Err(e) => (EnvFilter::new("info"), Some(e)),
    };
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(true)
        .with_env_filter(env_filter)
        .with_writer(std::io::stdout)
        .init();
    if let Some(e) = bad_filter {
        tracing::warn!("RUST_LOG {filter:?} is not a valid filter ({e}); logging at info");
    }
}

/// Routes asked all the time by machines: the orchestrators' health probes every few seconds,
/// and the Grafana gate for every request of every dashboard (dozens per page load). Their spans
/// are DEBUG so they do not drown the request log (at `info` a JSON line per gate check cost 58 %
/// more CPU per request); `tau_portal_http_requests_total` counts them, and their failures are
/// logged where they happen.
fn is_probe(route: &str) -> bool {
    route.starts_with("/health") || route == crate::auth::forward::ROUTE
}

#[derive(Clone, Copy)]
pub struct RequestSpan;

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, req: &Request<B>) -> Span {
        let route = req.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str);
        let request_id =
            req.extensions().get::<RequestId>().and_then(|id| id.header_value().to_str().ok()).unwrap_or("");
        if is_probe(route) {
            tracing::debug_span!("request", method = %req.method(), route, request_id)
        } else {
            tracing::info_span!("request", method = %req.method(), route, request_id)
        }
    }
}

#[derive(Clone, Copy)]
pub struct LogResponse;

impl<B> OnResponse<B> for LogResponse {
    fn on_response(self, res: &Response<B>, latency: Duration, span: &Span) {
        // A disabled span is a probe below the active level: stay quiet for it too.
        if span.is_disabled() {
            return;
        }
        let status = res.status().as_u16();
        let latency_ms = latency.as_secs_f64() * 1000.0;
        if res.status().is_server_error() {
            tracing::error!(status, latency_ms, "request failed");
        } else {
            tracing::info!(status, latency_ms, "request completed");
        }
    }
}

/// Request ids as UUID-shaped strings from a random per-process prefix and a counter: unique
/// across restarts, and without the random-number syscall a UUIDv4 per request would cost.
#[derive(Clone)]
pub struct SequentialRequestId {
    prefix: u64,
    next: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Default for SequentialRequestId {
    fn default() -> Self {
        SequentialRequestId { prefix: rand::random(), next: Default::default() }
    }
}

impl tower_http::request_id::MakeRequestId for SequentialRequestId {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = uuid::Uuid::from_u64_pair(self.prefix, n).hyphenated().to_string();
        axum::http::HeaderValue::from_str(&id).ok().map(RequestId::new)
    }
}

pub type HttpTraceLayer =
    TraceLayer<SharedClassifier<ServerErrorsAsFailures>, RequestSpan, (), LogResponse, (), (), ()>;

pub fn http_trace_layer() -> HttpTraceLayer {
    TraceLayer::new_for_http()
        .make_span_with(RequestSpan)
        .on_request(())
        .on_response(LogResponse)
        .on_body_chunk(())
        .on_eos(())
        .on_failure(())
}
