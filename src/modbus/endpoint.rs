//! One TCP endpoint (a meter, or a gateway with several meters behind it): one connection, its
//! devices polled by unit id in turn, each on its own interval.
//!
//! Timing: a device with interval T is polled once per slot `[kT, (k+1)T)` (UTC), shortly after
//! the slot starts (a stable per-endpoint phase spreads many endpoints over the first quarter of
//! a slot), and its reading is stamped with the slot's start: aligned timestamps, at most one
//! reading per slot, so a retry or a reconnect can never store a duplicate or shifted reading.
//! Slots that pass without a poll while the device was healthy count as missed cycles.
//!
//! Failures: every request runs under a timeout. A timeout or transport error drops the
//! connection (a late reply would otherwise answer the next request); reconnecting is immediate
//! the first time, then backs off exponentially with jitter up to `max_backoff`. A Modbus
//! exception saying a block does not exist marks that block unsupported for the device until the
//! next connection and keeps polling the rest; other exceptions (gateway: device not answering,
//! busy) fail that device's poll only.

use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_modbus::client::{Context, Reader};
use tokio_modbus::slave::SlaveContext;
use tokio_modbus::{ExceptionCode, Slave};
use tokio_util::sync::CancellationToken;

use super::registers::{self, Block, MeterIdentity, MeterSettings, Model};
use super::status::StatusReporter;
use crate::clock::Clock;
use crate::measurements::Reading;
use crate::measurements::buffer::WriteBuffer;

/// Re-read the meter's settings (PT/CT, modes) this often, besides at every connect.
const SETTINGS_EVERY: Duration = Duration::from_secs(3600);
/// The first reconnect delay after the immediate retry; doubles up to the configured maximum.
const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Endpoints start their polls within the first quarter of a slot, at most this late.
const MAX_PHASE_MS: i64 = 250;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// A device as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub id: i32,
    pub external_id: String,
    pub model: Model,
    pub unit_id: u8,
    pub interval_s: u32,
}

/// What every endpoint task shares.
#[derive(Clone)]
pub struct Shared {
    pub clock: Clock,
    pub buffer: WriteBuffer,
    pub status: StatusReporter,
    pub request_timeout: Duration,
    pub max_backoff: Duration,
}

/// A device's polling state; reset when its configuration changes.
struct Device {
    target: Target,
    settings: Option<(MeterSettings, Instant)>,
    identity_probed: bool,
    unsupported: Vec<&'static str>,
    last_slot: Option<i64>,
    failures: u32,
    /// The database knows this device is healthy (the first success after start says so).
    reported_healthy: bool,
    polls_ok: metrics::Counter,
    polls_failed: metrics::Counter,
}

impl Device {
    fn new(target: Target) -> Device {
        let label = target.external_id.clone();
        Device {
            polls_ok: metrics::counter!("tau_portal_polls_total", "device" => label.clone(), "result" => "ok"),
            polls_failed: metrics::counter!("tau_portal_polls_total", "device" => label, "result" => "failed"),
            target,
            settings: None,
            identity_probed: false,
            unsupported: Vec::new(),
            last_slot: None,
            failures: 0,
            reported_healthy: false,
        }
    }

    fn interval_ms(&self) -> i64 {
        i64::from(self.target.interval_s) * 1000
    }

    /// The slot `now` falls in (shifted by the endpoint's phase).
    fn slot_at(&self, now_ms: i64, phase_ms: i64) -> i64 {
        (now_ms - phase_ms).div_euclid(self.interval_ms())
    }

    /// When this device is next due, in ms since the epoch (≤ now when due).
    fn due_ms(&self, now_ms: i64, phase_ms: i64) -> i64 {
        match self.last_slot {
            Some(last) if last >= self.slot_at(now_ms, phase_ms) => (last + 1) * self.interval_ms() + phase_ms,
            _ => now_ms,
        }
    }

    /// Forgets what was learnt on the old connection.
    fn on_connect(&mut self) {
        self.settings = None;
        self.identity_probed = false;
        self.unsupported.clear();
    }
}

/// Why a poll failed, and whether the connection survives it.
enum PollError {
    /// Timeout or transport error: the connection is dropped.
    Connection(String),
    /// The meter answered, but not with a usable reading.
    Device(String),
}

/// Polls `targets` on `endpoint` until `stop` or until the supervisor drops the channel.
pub async fn run(
    endpoint: Endpoint,
    mut targets: watch::Receiver<Vec<Target>>,
    shared: Shared,
    stop: CancellationToken,
) {
    let phase_ms = phase_of(&endpoint);
    let mut devices: Vec<Device> = Vec::new();
    let mut conn: Option<Context> = None;
    let mut connection_failures: u32 = 0;
    let mut retry_at: Option<Instant> = None;
    loop {
        if devices.is_empty() {
            sync(&mut devices, &targets.borrow_and_update());
        }
        let now_ms = shared.clock.now().timestamp_millis();
        let wait = match devices.iter().map(|d| d.due_ms(now_ms, phase_ms)).min() {
            Some(due) => {
                let until_due = Duration::from_millis((due - now_ms).max(0) as u64);
                until_due.max(retry_at.map_or(Duration::ZERO, |at| at.saturating_duration_since(Instant::now())))
            }
            None => Duration::MAX,
        };
        if !wait.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(wait.min(Duration::from_secs(3600))) => {}
                changed = targets.changed() => {
                    if changed.is_err() {
                        break; // no devices left on this endpoint
                    }
                    sync(&mut devices, &targets.borrow_and_update());
                    continue;
                }
                () = stop.cancelled() => break,
            }
        }
        retry_at = None;

        let context = match conn.as_mut() {
            Some(context) => context,
            None => match connect(&endpoint, shared.request_timeout).await {
                Ok(context) => {
                    if connection_failures > 0 {
                        tracing::info!(endpoint = %endpoint, "Connected to {endpoint} again");
                    }
                    devices.iter_mut().for_each(Device::on_connect);
                    conn.insert(context)
                }
                Err(error) => {
                    connection_failures += 1;
                    if connection_failures == 1 {
                        tracing::warn!(endpoint = %endpoint, "Cannot connect to {endpoint}: {error}");
                    }
                    let now_ms = shared.clock.now().timestamp_millis();
                    for device in devices.iter_mut().filter(|d| d.due_ms(now_ms, phase_ms) <= now_ms) {
                        let slot = device.slot_at(now_ms, phase_ms);
                        record_failure(device, slot, format!("cannot connect to {endpoint}: {error}"), &shared);
                    }
                    retry_at = Some(Instant::now() + backoff(connection_failures, shared.max_backoff));
                    continue;
                }
            },
        };

        let now_ms = shared.clock.now().timestamp_millis();
        for device in devices.iter_mut() {
            if device.due_ms(now_ms, phase_ms) > now_ms {
                continue;
            }
            let slot = device.slot_at(now_ms, phase_ms);
            let time = DateTime::from_timestamp_millis(slot * device.interval_ms()).unwrap_or_default();
            match poll(context, device, time, &shared).await {
                Ok(reading) => {
                    connection_failures = 0;
                    record_success(device, slot, reading, &shared);
                }
                Err(PollError::Device(error)) => {
                    connection_failures = 0;
                    record_failure(device, slot, error, &shared);
                }
                Err(PollError::Connection(error)) => {
                    record_failure(device, slot, error, &shared);
                    connection_failures += 1;
                    metrics::counter!("tau_portal_poll_disconnects_total").increment(1);
                    retry_at = Some(Instant::now() + backoff(connection_failures, shared.max_backoff));
                    conn = None;
                    break;
                }
            }
        }
    }
}

/// Applies the configured devices: new ones start fresh, changed ones restart their state,
/// removed ones are dropped.
fn sync(devices: &mut Vec<Device>, targets: &[Target]) {
    devices.retain(|d| targets.iter().any(|t| t.id == d.target.id));
    for target in targets {
        match devices.iter_mut().find(|d| d.target.id == target.id) {
            Some(device) if device.target == *target => {}
            Some(device) => *device = Device::new(target.clone()),
            None => devices.push(Device::new(target.clone())),
        }
    }
}

fn record_success(device: &mut Device, slot: i64, reading: Reading, shared: &Shared) {
    if let Some(last) = device.last_slot
        && device.failures == 0
        && slot > last + 1
    {
        metrics::counter!("tau_portal_poll_missed_cycles_total").increment((slot - last - 1) as u64);
    }
    device.last_slot = Some(slot);
    shared.buffer.push(reading);
    device.polls_ok.increment(1);
    if device.failures > 0 {
        tracing::info!(
            device = %device.target.external_id,
            failures = device.failures,
            "Meter {} answering again after {} failed polls",
            device.target.external_id,
            device.failures
        );
    }
    if device.failures > 0 || !device.reported_healthy {
        shared.status.succeeded(device.target.id);
        device.reported_healthy = true;
    }
    device.failures = 0;
}

fn record_failure(device: &mut Device, slot: i64, error: String, shared: &Shared) {
    device.last_slot = Some(slot);
    device.failures += 1;
    device.reported_healthy = false;
    device.polls_failed.increment(1);
    if device.failures == 1 {
        tracing::warn!(device = %device.target.external_id, "Poll of meter {} failed: {error}", device.target.external_id);
    }
    shared.status.failed(device.target.id, device.failures, error, shared.clock.now());
}

/// Reads one device: settings when due, identity once per connection, then its blocks.
async fn poll(
    conn: &mut Context,
    device: &mut Device,
    time: DateTime<Utc>,
    shared: &Shared,
) -> Result<Reading, PollError> {
    conn.set_slave(Slave(device.target.unit_id));
    let timeout = shared.request_timeout;
    let profile = device.target.model.profile();
    let id = device.target.id;

    if device.settings.as_ref().is_none_or(|(_, at)| at.elapsed() >= SETTINGS_EVERY) {
        let settings = match read(conn, &profile.settings, timeout).await? {
            Ok(words) => MeterSettings::decode(&words).map_err(|e| PollError::Device(e.to_string()))?,
            Err(code) => {
                tracing::warn!(
                    device = %device.target.external_id,
                    "Meter {} refuses its settings registers ({code}); taking its values as primary-side",
                    device.target.external_id
                );
                MeterSettings::UNSCALED
            }
        };
        let previous = device.settings.replace((settings, Instant::now()));
        match previous {
            Some((old, _)) if old != settings => {
                tracing::info!(
                    device = %device.target.external_id,
                    old = ?old,
                    new = ?settings,
                    "Meter {} settings changed",
                    device.target.external_id
                );
                shared.status.settings(id, &settings, shared.clock.now());
            }
            Some(_) => {}
            None => shared.status.settings(id, &settings, shared.clock.now()),
        }
    }
    let settings = device.settings.as_ref().map_or(MeterSettings::UNSCALED, |(s, _)| *s);

    if !device.identity_probed {
        if let Some(identity) = probe_identity(conn, timeout).await? {
            shared.status.identity(id, &identity);
        }
        device.identity_probed = true;
    }

    let mut reading = Reading::empty(id, time);
    let mut read_any = false;
    for block in profile.blocks {
        if device.unsupported.contains(&block.name) {
            continue;
        }
        match read(conn, block, timeout).await? {
            Ok(words) => {
                registers::decode_block(block, &words, &settings, &mut reading)
                    .map_err(|e| PollError::Device(e.to_string()))?;
                read_any = true;
            }
            Err(code) => {
                tracing::warn!(
                    device = %device.target.external_id,
                    block = block.name,
                    "Meter {} does not support the {} block at {:#06X} ({code}); polling the rest",
                    device.target.external_id,
                    block.name,
                    block.start
                );
                device.unsupported.push(block.name);
                shared.status.unsupported_blocks(id, device.unsupported.iter().map(|b| b.to_string()).collect());
            }
        }
    }
    if read_any {
        Ok(reading)
    } else {
        Err(PollError::Device(format!(
            "the meter answers none of the register blocks: {}",
            device.unsupported.join(", ")
        )))
    }
}

/// SunSpec common model when the AXM-WEB module is fitted, else the V3 firmware's registers.
async fn probe_identity(conn: &mut Context, timeout: Duration) -> Result<Option<MeterIdentity>, PollError> {
    if let Ok(words) = read(conn, &registers::SUNSPEC, timeout).await?
        && let Some(identity) = registers::decode_sunspec(&words)
    {
        return Ok(Some(identity));
    }
    let Ok(model) = read(conn, &registers::V3_MODEL, timeout).await? else { return Ok(None) };
    let serial = read(conn, &registers::V3_SERIAL, timeout).await?.unwrap_or_default();
    Ok(registers::decode_v3(&model, &serial))
}

/// One block read under the timeout. `Ok(Err(code))`: the meter says the block does not exist.
async fn read(
    conn: &mut Context,
    block: &Block,
    timeout: Duration,
) -> Result<Result<Vec<u16>, ExceptionCode>, PollError> {
    let reply = tokio::time::timeout(timeout, conn.read_holding_registers(block.start, block.count)).await;
    match reply {
        Err(_) => {
            Err(PollError::Connection(format!("no reply to the {} read within {} ms", block.name, timeout.as_millis())))
        }
        Ok(Err(e)) => Err(PollError::Connection(format!("the {} read failed: {e}", block.name))),
        Ok(Ok(Ok(words))) => Ok(Ok(words)),
        Ok(Ok(Err(
            code @ (ExceptionCode::IllegalFunction
            | ExceptionCode::IllegalDataAddress
            | ExceptionCode::IllegalDataValue),
        ))) => Ok(Err(code)),
        Ok(Ok(Err(code))) => Err(PollError::Device(format!("the meter answered the {} read with {code}", block.name))),
    }
}

async fn connect(endpoint: &Endpoint, timeout: Duration) -> Result<Context, String> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect((endpoint.host.as_str(), endpoint.port)))
        .await
        .map_err(|_| format!("no answer within {} ms", timeout.as_millis()))?
        .map_err(|e| e.to_string())?;
    // Requests are small and answered one at a time: don't let Nagle hold them back.
    let _ = stream.set_nodelay(true);
    Ok(tokio_modbus::client::tcp::attach(stream))
}

/// No delay for the first failure (a gateway closing an idle connection is routine), then
/// 1 s, 2 s, 4 s … up to `max`, each scaled by a random 50–100 % so that many meters behind a
/// recovering network do not reconnect in lockstep.
fn backoff(failures: u32, max: Duration) -> Duration {
    if failures <= 1 {
        return Duration::ZERO;
    }
    let exponential = BACKOFF_BASE.saturating_mul(1 << (failures - 2).min(16)).min(max);
    exponential.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
}

/// A stable offset into each slot, different per endpoint.
fn phase_of(endpoint: &Endpoint) -> i64 {
    let mut hasher = DefaultHasher::new();
    endpoint.hash(&mut hasher);
    (hasher.finish() % MAX_PHASE_MS as u64) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_starts_immediately_then_doubles_up_to_the_cap() {
        let max = Duration::from_secs(60);
        assert_eq!(backoff(1, max), Duration::ZERO);
        for (failures, full) in [(2, 1), (3, 2), (4, 4), (9, 60), (40, 60)] {
            let d = backoff(failures, max);
            let full = Duration::from_secs(full);
            assert!(d >= full / 2 && d <= full, "{failures} failures: {d:?} not in [{:?}, {full:?}]", full / 2);
        }
    }

    #[test]
    fn a_device_is_due_once_per_slot() {
        let target = Target { id: 1, external_id: "m".into(), model: Model::AcuvimII, unit_id: 1, interval_s: 60 };
        let mut device = Device::new(target);
        let phase = 100;
        let now = 1_700_000_000_000 + 5_000;
        assert_eq!(device.due_ms(now, phase), now, "never polled: due at once");
        device.last_slot = Some(device.slot_at(now, phase));
        let next = device.due_ms(now, phase);
        assert_eq!(next % 60_000, phase, "next poll at the next slot plus the phase");
        assert!(next > now && next - now <= 60_000);
        assert_eq!(device.slot_at(next, phase), device.last_slot.unwrap() + 1);
    }
}
