//! The customer side of the fleet (Client mode, `FleetIngest__Enabled=true`): a background task
//! that pushes this portal's sites, devices and measurements to the Admin portal, at least once,
//! never skipping a reading, never making the Admin store one twice (docs/FLEET-DESIGN.md).
//!
//! Every cycle: deliver what the outbox holds; send sites then devices when they changed; then
//! form and deliver measurement batches, at once one after another while there is a backlog (a
//! catch-up; the next batch is formed while the one before it is in flight), then wait
//! `FleetIngest__IntervalSeconds`. A batch is stored before
//! its first send and re-sent byte for byte until the Admin answers: 200 (done), 413 (split in
//! two), 400/422 (malformed: quarantined after [`MAX_REFUSALS`]), 401/403 (nothing moves; back
//! off until the token or the customer is fixed), 429/503 (wait as `Retry-After` says), any
//! other failure (back off with jitter).

pub mod outbox;
pub mod status;

use std::time::Duration;

use chrono::Utc;
use rand::Rng;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::wire::{self, Batch, BatchType, Receipt, Refusal};
use crate::config::FleetIngest;
use crate::sites;
pub use status::PushStatus;

/// Malformed-batch answers before a batch is quarantined.
pub const MAX_REFUSALS: i32 = 3;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

pub struct Pusher {
    pub db: PgPool,
    pub settings: FleetIngest,
    pub status: PushStatus,
}

/// What one delivery attempt came to.
enum Outcome {
    Delivered(Receipt),
    /// Stop delivering and wait this long (the same batch is sent next).
    Wait(Duration),
    /// The outbox changed (split, quarantined): look at it again at once.
    Again,
}

/// What delivering the outbox's oldest batch came to.
enum Step {
    /// The outbox was empty.
    Empty,
    /// Delivered, split or quarantined: the outbox moved on.
    Done,
    /// It must wait this long.
    Wait(Duration),
}

/// The shared state of one run: the HTTP client and what the Admin has been sent.
struct Run {
    http: reqwest::Client,
    endpoint: reqwest::Url,
    token: String,
    /// The sites and devices last queued, and the devices among them.
    inventory: Option<(Vec<wire::Site>, Vec<wire::Device>)>,
    /// Consecutive failed attempts, for the backoff.
    failures: u32,
    /// Lowered after a 413, so later batches are formed smaller.
    byte_target: usize,
    max_backoff: Duration,
}

impl Pusher {
    pub async fn run(self, shutdown: CancellationToken) {
        let (Some(url), Some(token)) = (&self.settings.url, &self.settings.token) else { return };
        // A base URL with a path keeps it: <base>/api/fleet/ingest.
        let mut base = url.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let endpoint = match base.join(wire::PATH.trim_start_matches('/')) {
            Ok(endpoint) => endpoint,
            Err(e) => {
                return tracing::error!(
                    "Fleet push disabled: FleetIngest__Url cannot be joined with the ingest path: {e}"
                );
            }
        };
        let http = match reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("tau-portal/", env!("CARGO_PKG_VERSION")))
            .build()
        {
            Ok(http) => http,
            Err(e) => return tracing::error!("Fleet push disabled: could not build the HTTP client: {e}"),
        };
        let interval = self.settings.interval;
        let mut run = Run {
            http,
            endpoint: endpoint.clone(),
            token: token.expose_secret().to_string(),
            inventory: None,
            failures: 0,
            byte_target: wire::TARGET_BATCH_BYTES,
            max_backoff: (interval * 5).clamp(Duration::from_secs(30), Duration::from_secs(300)),
        };
        tracing::info!(
            url = %endpoint,
            interval_s = interval.as_secs(),
            batch_size = self.settings.batch_size,
            "Fleet push started: pushing to {endpoint} every {} s",
            interval.as_secs()
        );
        self.status.update(|s| s.started = true);
        loop {
            // A cycle dropped at shutdown leaves a consistent state: forming a batch is one
            // transaction, and a batch delivered but not yet deleted is sent again (the Admin
            // answers the replay from its receipt).
            let cycle = tokio::select! {
                cycle = self.cycle(&mut run, &shutdown) => cycle,
                () = shutdown.cancelled() => return,
            };
            let wait = match cycle {
                Ok(wait) => wait,
                Err(e) => {
                    run.failures += 1;
                    let wait = backoff(run.failures, run.max_backoff);
                    tracing::warn!(retry_in_s = wait.as_secs(), "Fleet push failing: local database error: {e}");
                    self.failing("database", &e.to_string(), wait);
                    wait
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// One cycle; returns how long to wait before the next.
    async fn cycle(&self, run: &mut Run, shutdown: &CancellationToken) -> Result<Duration, outbox::FormError> {
        if let Some(wait) = self.drain(run, shutdown).await? {
            return Ok(wait);
        }
        self.queue_inventory(run).await?;
        if let Some(wait) = self.drain(run, shutdown).await? {
            return Ok(wait);
        }
        let devices: Vec<i32> =
            run.inventory.as_ref().map(|(_, d)| d.iter().map(|d| d.id).collect()).unwrap_or_default();
        let cap = self.settings.batch_size as usize;
        let (mut more, mut backlog) = (true, false);
        loop {
            if shutdown.is_cancelled() {
                return Ok(Duration::ZERO);
            }
            // The next batch is formed while the one ahead of it is delivered (so the outbox
            // holds two at most): a catch-up is then limited by the slower of the two, not by
            // their sum.
            let byte_target = run.byte_target;
            let form = async {
                if more {
                    outbox::form_measurements(&self.db, &devices, cap, byte_target).await.map(Some)
                } else {
                    Ok(None)
                }
            };
            let (step, formed) = tokio::join!(self.deliver_next(run), form);
            let (step, formed) = (step?, formed?);
            let formed_now = matches!(formed, Some(Some(_)));
            match formed {
                Some(Some(f)) => {
                    let lag = (Utc::now() - f.oldest).num_milliseconds().max(0) as f64 / 1000.0;
                    self.status.update(|s| {
                        s.lag_seconds = lag;
                        s.caught_up = false;
                    });
                    metrics::gauge!("tau_portal_fleet_push_lag_seconds").set(lag);
                    backlog |= f.full;
                    more = f.full;
                }
                Some(None) => more = false,
                None => {}
            }
            match step {
                Step::Wait(wait) => return Ok(wait),
                Step::Empty if !more && !formed_now => break,
                _ => {}
            }
        }
        let was_caught_up = self.status.get().caught_up;
        self.status.update(|s| {
            s.caught_up = true;
            s.lag_seconds = 0.0;
            s.next_attempt = None;
        });
        metrics::gauge!("tau_portal_fleet_push_lag_seconds").set(0.0);
        if backlog || !was_caught_up {
            tracing::info!("Fleet push caught up: the Admin has every reading stored here");
        }
        Ok(self.settings.interval)
    }

    /// Sites then devices, when they differ from what was last queued (always after a start).
    async fn queue_inventory(&self, run: &mut Run) -> Result<(), sqlx::Error> {
        let sites: Vec<wire::Site> = sites::db::all_sites(&self.db)
            .await?
            .into_iter()
            .map(|(id, name, address, time_zone)| wire::Site { id, name, address, time_zone })
            .collect();
        let devices: Vec<wire::Device> = sites::db::all_devices(&self.db)
            .await?
            .into_iter()
            .map(|(id, site_id, external_id, name, model, enabled)| wire::Device {
                id,
                site_id,
                external_id,
                name,
                model,
                enabled,
            })
            .collect();
        if run.inventory.as_ref().is_some_and(|(s, d)| *s == sites && *d == devices) {
            return Ok(());
        }
        let mut tx = self.db.begin().await?;
        for batch in [
            Batch { sites: sites.clone(), ..Batch::new(BatchType::Sites) },
            Batch { devices: devices.clone(), ..Batch::new(BatchType::Devices) },
        ] {
            let body = batch.encode().map_err(sqlx::Error::Protocol)?;
            outbox::enqueue(&mut *tx, &batch, &body).await?;
        }
        tx.commit().await?;
        run.inventory = Some((sites, devices));
        Ok(())
    }

    /// Delivers the outbox in order. `Some(wait)`: stopped at a batch that must wait.
    async fn drain(&self, run: &mut Run, shutdown: &CancellationToken) -> Result<Option<Duration>, sqlx::Error> {
        loop {
            if shutdown.is_cancelled() {
                return Ok(Some(Duration::ZERO));
            }
            match self.deliver_next(run).await? {
                Step::Empty => return Ok(None),
                Step::Wait(wait) => return Ok(Some(wait)),
                Step::Done => {}
            }
        }
    }

    /// Delivers the oldest batch of the outbox, if there is one.
    async fn deliver_next(&self, run: &mut Run) -> Result<Step, sqlx::Error> {
        let Some(pending) = outbox::next(&self.db).await? else { return Ok(Step::Empty) };
        match self.deliver(run, &pending).await? {
            Outcome::Delivered(receipt) => {
                outbox::delivered(&self.db, pending.seq).await?;
                run.failures = 0;
                let now = Utc::now();
                self.status.update(|s| {
                    s.last_success = Some(now);
                    s.last_attempt = Some(now);
                    s.failing = None;
                    if pending.kind == "measurements" {
                        s.rows_pushed += receipt.accepted;
                    }
                });
                metrics::gauge!("tau_portal_fleet_push_last_success_timestamp_seconds")
                    .set(now.timestamp_millis() as f64 / 1000.0);
                metrics::counter!("tau_portal_fleet_push_rows_total", "type" => pending.kind.clone())
                    .increment(receipt.accepted);
                tracing::info!(
                    batch_id = %pending.batch_id,
                    batch_type = %pending.kind,
                    rows = pending.rows,
                    accepted = receipt.accepted,
                    duplicates = receipt.duplicates,
                    rejected = receipt.rejected,
                    replay = receipt.replay,
                    attempts = pending.attempts + 1,
                    "Fleet batch sent: {} {} rows, {} accepted, {} duplicates, {} rejected",
                    pending.rows,
                    pending.kind,
                    receipt.accepted,
                    receipt.duplicates,
                    receipt.rejected
                );
                if receipt.rejected > 0 {
                    tracing::warn!(
                        batch_id = %pending.batch_id,
                        errors = ?receipt.errors,
                        "Fleet batch: the Admin rejected {} rows",
                        receipt.rejected
                    );
                }
                Ok(Step::Done)
            }
            Outcome::Wait(wait) => Ok(Step::Wait(wait)),
            Outcome::Again => Ok(Step::Done),
        }
    }

    fn failing(&self, status: &str, reason: &str, wait: Duration) {
        let now = Utc::now();
        metrics::counter!("tau_portal_fleet_push_failures_total", "status" => status.to_string()).increment(1);
        self.status.update(|s| {
            s.last_attempt = Some(now);
            s.failing = Some((status.to_string(), reason.to_string(), now));
            s.next_attempt = chrono::Duration::from_std(wait).ok().map(|w| now + w);
        });
    }

    async fn deliver(&self, run: &mut Run, pending: &outbox::Pending) -> Result<Outcome, sqlx::Error> {
        let sent = run
            .http
            .post(run.endpoint.clone())
            .bearer_auth(&run.token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::CONTENT_ENCODING, "gzip")
            .body(pending.body.clone())
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                let kind = if e.is_timeout() { "timeout" } else { "connect" };
                let reason = format!("{e}");
                return self.retry_later(run, pending, None, kind, &reason, None).await;
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let text = response.text().await.unwrap_or_default();
        if status.is_success() {
            return match serde_json::from_str::<Receipt>(&text) {
                Ok(receipt) => Ok(Outcome::Delivered(receipt)),
                Err(e) => {
                    let reason = format!("unreadable answer to a delivered batch: {e}");
                    self.retry_later(run, pending, Some(status), "invalid-answer", &reason, None).await
                }
            };
        }
        let refusal: Option<Refusal> = serde_json::from_str(&text).ok();
        let reason = refusal.as_ref().map_or_else(
            || {
                serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(String::from))
                    .unwrap_or(text.clone())
            },
            |r| r.error.clone(),
        );
        let code = status.as_u16().to_string();
        match status {
            StatusCode::PAYLOAD_TOO_LARGE => self.split(run, pending, &reason).await,
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY
                if refusal.as_ref().is_none_or(|r| r.code != wire::UNSUPPORTED_VERSION) =>
            {
                let refusals = outbox::failed(&self.db, pending.seq, Some(status.as_u16()), &reason, true).await?;
                metrics::counter!("tau_portal_fleet_push_failures_total", "status" => code.clone()).increment(1);
                if refusals >= MAX_REFUSALS {
                    outbox::quarantine(&self.db, pending.seq).await?;
                    metrics::counter!("tau_portal_fleet_push_quarantined_total").increment(1);
                    tracing::error!(
                        batch_id = %pending.batch_id,
                        batch_type = %pending.kind,
                        rows = pending.rows,
                        status = status.as_u16(),
                        "Fleet batch quarantined after {refusals} refusals as malformed: {reason}. It stays in \
                         monitoring.\"FleetOutbox\" and is listed under Settings → Fleet push; the push goes on."
                    );
                    if pending.kind != "measurements" {
                        run.inventory = None;
                    }
                    return Ok(Outcome::Again);
                }
                let wait = backoff(refusals as u32, run.max_backoff);
                tracing::warn!(
                    status = status.as_u16(),
                    retry_in_s = wait.as_secs(),
                    "Fleet push failing: {status}: {reason}"
                );
                self.failing(&code, &reason, wait);
                Ok(Outcome::Wait(wait))
            }
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                self.retry_later(run, pending, Some(status), &code, &reason, retry_after).await
            }
            // 401/403, an unsupported version, 5xx, anything else: nothing moves, same batch later.
            _ => self.retry_later(run, pending, Some(status), &code, &reason, None).await,
        }
    }

    async fn retry_later(
        &self,
        run: &mut Run,
        pending: &outbox::Pending,
        status: Option<StatusCode>,
        kind: &str,
        reason: &str,
        retry_after: Option<Duration>,
    ) -> Result<Outcome, sqlx::Error> {
        outbox::failed(&self.db, pending.seq, status.map(|s| s.as_u16()), reason, false).await?;
        run.failures += 1;
        let wait =
            retry_after.map_or_else(|| backoff(run.failures, run.max_backoff), |w| w.min(Duration::from_secs(3600)));
        tracing::warn!(
            status = kind,
            batch_id = %pending.batch_id,
            retry_in_s = wait.as_secs(),
            "Fleet push failing: {kind}: {reason}"
        );
        self.failing(kind, reason, wait);
        Ok(Outcome::Wait(wait))
    }

    /// 413: the Admin stored nothing; replace the batch by its halves and form smaller ones.
    async fn split(&self, run: &mut Run, pending: &outbox::Pending, reason: &str) -> Result<Outcome, sqlx::Error> {
        metrics::counter!("tau_portal_fleet_push_failures_total", "status" => "413").increment(1);
        run.byte_target = (pending.body.len() / 2).max(1024);
        let batch = wire::decode(&pending.body, true).ok();
        let halves = batch.and_then(|b| {
            let m = b.measurements?;
            if m.rows.len() < 2 {
                return None;
            }
            let second = m.rows[m.rows.len() / 2..].to_vec();
            let first = m.rows[..m.rows.len() / 2].to_vec();
            let half = |rows| {
                let batch = Batch {
                    measurements: Some(wire::Measurements { columns: m.columns.clone(), rows }),
                    ..Batch::new(BatchType::Measurements)
                };
                batch.encode().ok().map(|body| (batch, body))
            };
            Some([half(first)?, half(second)?])
        });
        match halves {
            Some(halves) => {
                tracing::warn!(batch_id = %pending.batch_id, rows = pending.rows, "Fleet batch too large for the Admin (413: {reason}); split in two");
                outbox::split(&self.db, pending.seq, halves).await?;
            }
            None => {
                tracing::error!(batch_id = %pending.batch_id, "Fleet batch quarantined: the Admin refuses it as too large (413: {reason}) and it cannot be split");
                outbox::failed(&self.db, pending.seq, Some(413), reason, true).await?;
                outbox::quarantine(&self.db, pending.seq).await?;
            }
        }
        Ok(Outcome::Again)
    }
}

/// Exponential backoff from one second, capped, with ±50 % jitter so that customers cut off
/// together do not come back together.
pub(crate) fn backoff(failures: u32, cap: Duration) -> Duration {
    let exp = FIRST_BACKOFF.saturating_mul(1 << failures.saturating_sub(1).min(16)).min(cap);
    exp.mul_f64(rand::thread_rng().gen_range(0.5..1.5)).min(cap)
}

/// `Retry-After`: seconds, or an HTTP date.
fn parse_retry_after(v: &str) -> Option<Duration> {
    if let Ok(secs) = v.trim().parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v.trim()).ok()?;
    Some((at.with_timezone(&Utc) - Utc::now()).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_jitters_and_stays_under_the_cap() {
        let cap = Duration::from_secs(30);
        for failures in 1..40 {
            let b = backoff(failures, cap);
            assert!(b <= cap, "{b:?}");
            assert!(b >= FIRST_BACKOFF / 2, "{b:?}");
        }
        let late: Vec<Duration> = (0..20).map(|_| backoff(20, cap)).collect();
        assert!(late.iter().all(|b| *b >= cap / 2));
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        let soon = (Utc::now() + chrono::Duration::seconds(90)).to_rfc2822();
        let d = parse_retry_after(&soon).unwrap();
        assert!(d > Duration::from_secs(80) && d <= Duration::from_secs(90), "{d:?}");
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
    }
}
