//! The poller's supervisor: one task per TCP endpoint (host:port), so meters behind the same
//! gateway share one connection and are polled by unit id in turn. It reloads the device list
//! whenever a device is added, edited, disabled or deleted (and every minute, as a backstop),
//! and hands each endpoint task its current devices; an endpoint left without devices stops.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::endpoint::{self, Endpoint, Target};
use super::registers::Model;
use super::status::StatusReporter;
use crate::clock::Clock;
use crate::config::ModbusSettings;
use crate::measurements::buffer::WriteBuffer;
use crate::sites::db::{self, ModbusDeviceRow};
use crate::sites::directory::DeviceDirectory;

/// Reload the device list this often even without a change signal.
const REFRESH: Duration = Duration::from_secs(60);
/// Retry a failed device-list load after this long.
const LOAD_RETRY: Duration = Duration::from_secs(5);
/// Longest wait for in-flight readings to be written at shutdown.
const FINAL_FLUSH: Duration = Duration::from_secs(5);

/// Everything the poller needs, owned by its tasks.
pub struct Poller {
    pub db: PgPool,
    pub devices: DeviceDirectory,
    pub clock: Clock,
    pub settings: ModbusSettings,
}

impl Poller {
    /// Polls until `shutdown`, then stops the endpoint tasks and flushes their readings.
    pub async fn run(self, shutdown: CancellationToken) {
        let buffer = WriteBuffer::new("modbus", self.settings.buffer_readings);
        let status = StatusReporter::default();
        // Polling stops first; the writers stop after it, so the last readings are flushed.
        let stop_polling = CancellationToken::new();
        let stop_writers = CancellationToken::new();
        let tasks = TaskTracker::new();
        let writers = TaskTracker::new();
        writers.spawn(buffer.clone().run(self.db.clone(), stop_writers.clone(), FINAL_FLUSH));
        writers.spawn(status.clone().run(self.db.clone(), stop_writers.clone()));

        let context = endpoint::Shared {
            clock: self.clock.clone(),
            buffer,
            status,
            request_timeout: self.settings.request_timeout,
            max_backoff: self.settings.max_backoff,
        };
        let mut changes = self.devices.subscribe();
        let mut running: HashMap<Endpoint, watch::Sender<Vec<Target>>> = HashMap::new();
        let mut last_summary = None;
        loop {
            changes.mark_unchanged();
            let wait = match db::modbus_devices(&self.db).await {
                Ok(rows) => {
                    let plan = plan(rows);
                    let summary = (plan.len(), plan.values().map(Vec::len).sum::<usize>());
                    if last_summary != Some(summary) {
                        tracing::info!(
                            endpoints = summary.0,
                            devices = summary.1,
                            "Modbus poller: {} devices on {} endpoints",
                            summary.1,
                            summary.0
                        );
                        last_summary = Some(summary);
                    }
                    reconcile(&mut running, plan, &context, &tasks, &stop_polling);
                    REFRESH
                }
                Err(e) => {
                    tracing::warn!("Modbus poller cannot load the device list, will retry: {e}");
                    LOAD_RETRY
                }
            };
            tokio::select! {
                _ = changes.changed() => {}
                () = tokio::time::sleep(wait) => {}
                () = shutdown.cancelled() => break,
            }
        }
        stop_polling.cancel();
        running.clear();
        tasks.close();
        tasks.wait().await;
        stop_writers.cancel();
        writers.close();
        writers.wait().await;
    }
}

/// The devices of each endpoint, in id order.
fn plan(rows: Vec<ModbusDeviceRow>) -> HashMap<Endpoint, Vec<Target>> {
    let mut plan: HashMap<Endpoint, Vec<Target>> = HashMap::new();
    for row in rows {
        let endpoint = Endpoint { host: row.host.trim().to_string(), port: row.port as u16 };
        plan.entry(endpoint).or_default().push(Target {
            id: row.id,
            external_id: row.external_id,
            model: Model::from_db(&row.model),
            unit_id: row.unit_id as u8,
            interval_s: row.poll_interval_seconds.max(1) as u32,
        });
    }
    plan
}

/// Starts tasks for new endpoints, updates the others, and stops those without devices (a
/// closed channel ends its task).
fn reconcile(
    running: &mut HashMap<Endpoint, watch::Sender<Vec<Target>>>,
    mut plan: HashMap<Endpoint, Vec<Target>>,
    context: &endpoint::Shared,
    tasks: &TaskTracker,
    stop: &CancellationToken,
) {
    running.retain(|endpoint, _| plan.contains_key(endpoint));
    for (endpoint, targets) in plan.drain() {
        match running.get(&endpoint) {
            Some(sender) => {
                sender.send_if_modified(|current| {
                    let changed = *current != targets;
                    *current = targets;
                    changed
                });
            }
            None => {
                let (sender, receiver) = watch::channel(targets);
                tasks.spawn(endpoint::run(endpoint.clone(), receiver, context.clone(), stop.clone()));
                running.insert(endpoint, sender);
            }
        }
    }
}
