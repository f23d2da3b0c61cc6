//! Device status from the poller to `monitoring."Devices"`, off the polling path: endpoint tasks
//! report without waiting; one task coalesces the reports per device (only the newest state
//! matters) and writes them about once a second. While the database is away the reports wait
//! and are written when it returns.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::registers::{MeterIdentity, MeterSettings};
use crate::sites::db::{self, MeterFacts, PollHealth};

const WRITE_EVERY: Duration = Duration::from_secs(1);

#[derive(Clone, Default)]
pub struct StatusReporter {
    pending: Arc<Mutex<HashMap<i32, Pending>>>,
}

#[derive(Default)]
struct Pending {
    failures: Option<u32>,
    last_error: Option<(String, DateTime<Utc>)>,
    facts: MeterFacts,
}

impl StatusReporter {
    pub fn succeeded(&self, device_id: i32) {
        self.update(device_id, |p| p.failures = Some(0));
    }

    pub fn failed(&self, device_id: i32, consecutive: u32, error: String, at: DateTime<Utc>) {
        self.update(device_id, |p| {
            p.failures = Some(consecutive);
            p.last_error = Some((error, at));
        });
    }

    pub fn settings(&self, device_id: i32, settings: &MeterSettings, at: DateTime<Utc>) {
        let json = serde_json::to_value(settings).unwrap_or_default();
        self.update(device_id, |p| p.facts.settings = Some((json, at)));
    }

    pub fn identity(&self, device_id: i32, identity: &MeterIdentity) {
        let json = serde_json::to_value(identity).unwrap_or_default();
        self.update(device_id, |p| p.facts.identity = Some(json));
    }

    pub fn unsupported_blocks(&self, device_id: i32, blocks: Vec<String>) {
        self.update(device_id, |p| p.facts.unsupported_blocks = Some(blocks));
    }

    fn update(&self, device_id: i32, change: impl FnOnce(&mut Pending)) {
        change(self.pending.lock().unwrap_or_else(PoisonError::into_inner).entry(device_id).or_default());
    }

    /// Writes pending reports every second until `shutdown`, then once more.
    pub async fn run(self, db: PgPool, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(WRITE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            let stop = tokio::select! {
                _ = tick.tick() => false,
                () = shutdown.cancelled() => true,
            };
            match self.write(&db).await {
                Ok(()) => failing = false,
                Err(e) if !failing => {
                    tracing::warn!("Cannot record device status, will retry: {e}");
                    failing = true;
                }
                Err(_) => {}
            }
            if stop {
                return;
            }
        }
    }

    async fn write(&self, db: &PgPool) -> Result<(), sqlx::Error> {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        if pending.is_empty() {
            return Ok(());
        }
        let result = write_pending(db, &pending).await;
        if result.is_err() {
            // Put them back under anything newer that arrived meanwhile.
            let mut current = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            for (id, old) in pending {
                let newer = current.remove(&id).unwrap_or_default();
                current.insert(id, old.overlaid_by(newer));
            }
        }
        result
    }
}

impl Pending {
    fn overlaid_by(self, newer: Pending) -> Pending {
        Pending {
            failures: newer.failures.or(self.failures),
            last_error: newer.last_error.or(self.last_error),
            facts: MeterFacts {
                settings: newer.facts.settings.or(self.facts.settings),
                identity: newer.facts.identity.or(self.facts.identity),
                unsupported_blocks: newer.facts.unsupported_blocks.or(self.facts.unsupported_blocks),
            },
        }
    }
}

async fn write_pending(db: &PgPool, pending: &HashMap<i32, Pending>) -> Result<(), sqlx::Error> {
    let health: Vec<PollHealth> = pending
        .iter()
        .filter_map(|(&device_id, p)| {
            Some(PollHealth {
                device_id,
                consecutive_failures: i32::try_from(p.failures?).unwrap_or(i32::MAX),
                last_error: p.last_error.clone(),
            })
        })
        .collect();
    if !health.is_empty() {
        db::record_poll_health(db, &health).await?;
    }
    let facts: Vec<(i32, &MeterFacts)> = pending
        .iter()
        .map(|(&device_id, p)| (device_id, &p.facts))
        .filter(|(_, f)| f.settings.is_some() || f.identity.is_some() || f.unsupported_blocks.is_some())
        .collect();
    db::record_meter_facts(db, &facts).await
}
