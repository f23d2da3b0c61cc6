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
//! connection (a late reply would otherwise answer the next request), and the poll is tried
//! again within its slot on a new connection: at once, then after the backoff, up to
//! `MAX_ATTEMPTS` in all and only while an attempt still fits before the slot ends. So a gateway
//! that closes idle connections, or a single reset, costs no reading; a poll fails only when its
//! slot ends without one. Reconnecting backs off exponentially with jitter up to `max_backoff`
//! (the first reconnect is immediate). A Modbus exception saying a block does not exist marks that
//! block unsupported and the rest is still polled; the block is read again every
//! `REPROBE_POLLS` polls (at most `REPROBE_MAX` apart) and after every reconnect, and is back
//! as soon as it answers. Other exceptions (gateway: device not answering, busy) fail that
//! device's poll only. What was learnt about a meter (settings, identity) is read again once it
//! has been silent for `MAY_HAVE_CHANGED` (or missed a poll, when polled less often): a meter
//! that was away that long may have been replaced or reconfigured. A shorter silence (a timeout
//! under load, a dropped connection) says nothing about the meter, and re-reading after it would
//! add requests to a peer that is already late.
//!
//! Logs: a lost connection that the immediate reconnect repairs is routine (debug); an outage
//! (a connect that fails, or a new connection failing too) is logged once as a warning, and its
//! end once, with how long it lasted and how many connection attempts it took.

use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
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

/// Re-read the meter's settings (PT/CT, modes) this often, besides after a silence of
/// [`MAY_HAVE_CHANGED`].
const SETTINGS_EVERY: Duration = Duration::from_secs(3600);
/// A poll this long after the meter last answered reads its settings and identity again (see
/// `Device::poll_at`): no meter is swapped or rewired quicker.
const MAY_HAVE_CHANGED: Duration = Duration::from_secs(60);
/// The first reconnect delay after the immediate retry; doubles up to the configured maximum.
const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Endpoints start their polls within the first quarter of a slot, at most this late.
const MAX_PHASE_MS: i64 = 250;
/// Attempts at one slot's poll, the first included: enough for an idle-closed or reset
/// connection and a brief outage, few enough that one silent meter behind a gateway does not
/// keep tearing down the connection its neighbours share.
const MAX_ATTEMPTS: u32 = 3;
/// A block the meter refused is read again after this many polls…
const REPROBE_POLLS: u32 = 10;
/// …or this long, whichever is sooner.
const REPROBE_MAX: Duration = Duration::from_secs(600);

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
    /// Blocks the meter answered with an exception, skipped until `reprobe_at`.
    unsupported: Vec<&'static str>,
    reprobe_at: Option<Instant>,
    /// The unsupported blocks the database was last told of (`None`: not yet in this run, so
    /// a list left from an earlier run is corrected by the first poll).
    reported_unsupported: Option<Vec<&'static str>>,
    last_slot: Option<i64>,
    /// The current slot's poll failed on the connection and is tried again at `Retry::at_ms`.
    retry: Option<Retry>,
    failures: u32,
    /// When the meter last gave a reading.
    answered_at: Option<Instant>,
    /// The database knows this device is healthy (the first success after start says so).
    reported_healthy: bool,
    /// When the database was last told of this device's failing (`None`: not since it answered).
    failure_reported_at: Option<Instant>,
    polls_ok: metrics::Counter,
    polls_failed: metrics::Counter,
}

struct Retry {
    slot: i64,
    /// Attempts made so far in this slot.
    attempts: u32,
    at_ms: i64,
    /// Recorded if the slot ends without a reading.
    error: String,
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
            reprobe_at: None,
            reported_unsupported: None,
            last_slot: None,
            retry: None,
            failures: 0,
            answered_at: None,
            reported_healthy: false,
            failure_reported_at: None,
        }
    }

    fn interval_ms(&self) -> i64 {
        i64::from(self.target.interval_s) * 1000
    }

    /// The slot `now` falls in (shifted by the endpoint's phase).
    fn slot_at(&self, now_ms: i64, phase_ms: i64) -> i64 {
        (now_ms - phase_ms).div_euclid(self.interval_ms())
    }

    /// When `slot` ends: its last chance for a reading.
    fn slot_end_ms(&self, slot: i64, phase_ms: i64) -> i64 {
        (slot + 1) * self.interval_ms() + phase_ms
    }

    /// When this device is next due, in ms since the epoch (≤ now when due).
    fn due_ms(&self, now_ms: i64, phase_ms: i64) -> i64 {
        if let Some(retry) = &self.retry {
            return retry.at_ms;
        }
        match self.last_slot {
            Some(last) if last >= self.slot_at(now_ms, phase_ms) => self.slot_end_ms(last, phase_ms),
            _ => now_ms,
        }
    }

    /// The slot a poll now is for: the one being retried, else the current one.
    fn poll_slot(&self, now_ms: i64, phase_ms: i64) -> i64 {
        self.retry.as_ref().map_or_else(|| self.slot_at(now_ms, phase_ms), |r| r.slot)
    }

    fn attempts_in_slot(&self) -> u32 {
        self.retry.as_ref().map_or(0, |r| r.attempts)
    }

    fn reprobe_every(&self) -> Duration {
        (Duration::from_secs(u64::from(self.target.interval_s)) * REPROBE_POLLS).min(REPROBE_MAX)
    }

    /// Refused blocks are worth asking for again once the other end may have changed.
    fn reprobe_now(&mut self) {
        if !self.unsupported.is_empty() {
            self.reprobe_at = Some(Instant::now());
        }
    }

    /// Before a poll at `now`: whatever the meter said before may no longer hold once it has
    /// been silent for [`MAY_HAVE_CHANGED`], and for a meter polled less often, once it missed a
    /// poll (half an interval late). Judged here, not when a poll fails: during an outage attempts
    /// come up to the backoff apart, and the last failed one may be well inside the minute while
    /// the first that succeeds is well past it.
    fn poll_at(&mut self, now: Instant) {
        let silence = MAY_HAVE_CHANGED.max(Duration::from_secs(self.target.interval_s.into()) * 3 / 2);
        if self.answered_at.is_some_and(|at| now.saturating_duration_since(at) >= silence) {
            self.settings = None;
            self.identity_probed = false;
            self.reprobe_now();
        }
    }
}

/// Why a poll failed, and whether the connection survives it.
enum PollError {
    /// Timeout or transport error: the connection is dropped.
    Connection(String),
    /// The meter answered, but not with a usable reading.
    Device(String),
}

/// The connection's health across reconnects: drives the backoff and the outage log lines.
#[derive(Default)]
struct Link {
    /// Connection failures (failed connects, dropped connections) since a request was last
    /// answered.
    failures: u32,
    /// No reconnect before this.
    retry_at: Option<Instant>,
    outage: Option<Outage>,
}

struct Outage {
    since: Instant,
    /// Connection attempts since it began, failed or not.
    connects: u32,
    /// A warning said so; its end is logged too.
    logged: bool,
}

impl Link {
    fn outage(&mut self) -> &mut Outage {
        self.outage.get_or_insert_with(|| Outage { since: Instant::now(), connects: 0, logged: false })
    }

    /// One more failure: the delay before the next connect.
    fn failed(&mut self, max_backoff: Duration) -> Duration {
        self.failures += 1;
        let delay = backoff(self.failures, max_backoff);
        self.retry_at = Some(Instant::now() + delay);
        delay
    }

    fn connect_failed(&mut self, endpoint: &Endpoint, reason: &str, max_backoff: Duration) -> Duration {
        let outage = self.outage();
        outage.connects += 1;
        if !std::mem::replace(&mut outage.logged, true) {
            tracing::warn!(endpoint = %endpoint, "Cannot connect to {endpoint}: {reason}; retrying");
        }
        self.failed(max_backoff)
    }

    fn connected(&mut self) {
        if let Some(outage) = &mut self.outage {
            outage.connects += 1;
        }
    }

    /// An open connection failed and is dropped.
    fn lost(&mut self, endpoint: &Endpoint, error: &str, max_backoff: Duration) -> Duration {
        metrics::counter!("tau_portal_poll_disconnects_total").increment(1);
        let delay = self.failed(max_backoff);
        let repeated = self.failures > 1;
        let outage = self.outage();
        // Losing a connection once is routine (gateways close idle ones); losing the new one too
        // is not.
        if repeated && !std::mem::replace(&mut outage.logged, true) {
            tracing::warn!(endpoint = %endpoint, "The connection to {endpoint} keeps failing: {error}; reconnecting");
        } else {
            tracing::debug!(endpoint = %endpoint, "Connection to {endpoint} lost: {error}; reconnecting");
        }
        delay
    }

    /// A request was answered (registers or an exception): the connection works.
    fn answered(&mut self, endpoint: &Endpoint) {
        self.failures = 0;
        let Some(outage) = self.outage.take() else { return };
        let seconds = outage.since.elapsed().as_secs_f64();
        if outage.logged {
            tracing::info!(
                endpoint = %endpoint,
                outage_seconds = seconds,
                attempts = outage.connects,
                "Connected to {endpoint} again after {seconds:.1} s ({} connection attempts)",
                outage.connects
            );
        } else {
            tracing::debug!(endpoint = %endpoint, "Reconnected to {endpoint}");
        }
    }
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
    let mut link = Link::default();
    loop {
        if devices.is_empty() {
            sync(&mut devices, &targets.borrow_and_update());
        }
        let now_ms = shared.clock.now().timestamp_millis();
        for device in devices.iter_mut() {
            expire_retry(device, now_ms, phase_ms, &shared);
        }
        let wait = match devices.iter().map(|d| d.due_ms(now_ms, phase_ms)).min() {
            Some(due) => {
                let until_due = Duration::from_millis((due - now_ms).max(0) as u64);
                until_due.max(link.retry_at.map_or(Duration::ZERO, |at| at.saturating_duration_since(Instant::now())))
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
        link.retry_at = None;

        let context = match conn.as_mut() {
            Some(context) => context,
            None => match connect(&endpoint, shared.request_timeout).await {
                Ok(context) => {
                    link.connected();
                    devices.iter_mut().for_each(Device::reprobe_now);
                    conn.insert(context)
                }
                Err(reason) => {
                    let delay = link.connect_failed(&endpoint, &reason, shared.max_backoff);
                    let now_ms = shared.clock.now().timestamp_millis();
                    for device in devices.iter_mut().filter(|d| d.due_ms(now_ms, phase_ms) <= now_ms) {
                        let slot = device.poll_slot(now_ms, phase_ms);
                        let error = format!("cannot connect to {endpoint}: {reason}");
                        attempt_failed(device, slot, error, delay, phase_ms, &shared);
                    }
                    continue;
                }
            },
        };

        let now_ms = shared.clock.now().timestamp_millis();
        let mut due: Vec<usize> =
            (0..devices.len()).filter(|&i| devices[i].due_ms(now_ms, phase_ms) <= now_ms).collect();
        // Devices not yet tried in this slot go first: a meter whose polls keep failing must not
        // hold back the others behind the same connection.
        due.sort_by_key(|&i| devices[i].attempts_in_slot());
        for i in due {
            let device = &mut devices[i];
            let slot = device.poll_slot(now_ms, phase_ms);
            let time = DateTime::from_timestamp_millis(slot * device.interval_ms()).unwrap_or_default();
            match poll(context, device, time, &shared).await {
                Ok(reading) => {
                    link.answered(&endpoint);
                    record_success(device, slot, reading, &shared);
                }
                Err(PollError::Device(error)) => {
                    link.answered(&endpoint);
                    record_failure(device, slot, error, &shared);
                }
                Err(PollError::Connection(error)) => {
                    let delay = link.lost(&endpoint, &error, shared.max_backoff);
                    attempt_failed(device, slot, error, delay, phase_ms, &shared);
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

/// An attempt at `slot`'s poll failed on the connection: try again within the slot if another
/// attempt fits, else the poll has failed.
fn attempt_failed(device: &mut Device, slot: i64, error: String, link_delay: Duration, phase_ms: i64, shared: &Shared) {
    let attempts = device.retry.as_ref().filter(|r| r.slot == slot).map_or(0, |r| r.attempts) + 1;
    let now_ms = shared.clock.now().timestamp_millis();
    let delay = link_delay.max(backoff(attempts, shared.max_backoff));
    let slot_end_ms = device.slot_end_ms(slot, phase_ms);
    match next_attempt_ms(attempts, now_ms, delay, shared.request_timeout, slot_end_ms) {
        Some(at_ms) => {
            tracing::debug!(
                device = %device.target.external_id,
                attempts,
                "Poll of meter {} failed ({error}); trying again within its slot",
                device.target.external_id
            );
            device.retry = Some(Retry { slot, attempts, at_ms, error });
        }
        None => record_failure(device, slot, error, shared),
    }
}

/// When to try a poll again after its `attempts`-th attempt failed, if at all: after `delay`,
/// and only if a request with its full timeout still ends within the slot.
fn next_attempt_ms(attempts: u32, now_ms: i64, delay: Duration, timeout: Duration, slot_end_ms: i64) -> Option<i64> {
    let at_ms = now_ms.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
    let done_ms = at_ms.saturating_add(i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX));
    (attempts < MAX_ATTEMPTS && done_ms <= slot_end_ms).then_some(at_ms)
}

/// A retry whose slot ended before it could be made: that slot's poll failed.
fn expire_retry(device: &mut Device, now_ms: i64, phase_ms: i64, shared: &Shared) {
    let Some(slot) = device.retry.as_ref().map(|r| r.slot) else { return };
    if now_ms >= device.slot_end_ms(slot, phase_ms)
        && let Some(retry) = device.retry.take()
    {
        record_failure(device, retry.slot, retry.error, shared);
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
    device.retry = None;
    device.answered_at = Some(Instant::now());
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
    device.failure_reported_at = None;
}

fn record_failure(device: &mut Device, slot: i64, error: String, shared: &Shared) {
    device.last_slot = Some(slot);
    device.retry = None;
    device.failures += 1;
    device.reported_healthy = false;
    device.polls_failed.increment(1);
    if device.failures == 1 {
        tracing::warn!(device = %device.target.external_id, "Poll of meter {} failed: {error}", device.target.external_id);
    }
    // The first failure at once; while the meter stays silent, its count and error at most every
    // FAILURE_REPORT_EVERY: at 1 s polls an outage of 10,000 meters was 10,000 device rows
    // rewritten a second, on the database the meters' readings need.
    if device.failure_reported_at.is_none_or(|at| at.elapsed() >= FAILURE_REPORT_EVERY) {
        shared.status.failed(device.target.id, device.failures, error, shared.clock.now());
        device.failure_reported_at = Some(Instant::now());
    }
}

/// How often a meter that keeps failing has its failure count written (see `record_failure`).
const FAILURE_REPORT_EVERY: Duration = Duration::from_secs(10);

/// Reads one device: settings when due, identity once, then its blocks.
async fn poll(
    conn: &mut Context,
    device: &mut Device,
    time: DateTime<Utc>,
    shared: &Shared,
) -> Result<Reading, PollError> {
    conn.set_slave(Slave(device.target.unit_id));
    device.poll_at(Instant::now());
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

    let reprobe = device.reprobe_at.is_some_and(|at| at <= Instant::now());
    let mut reading = Reading::empty(id, time);
    let mut read_any = false;
    for block in profile.blocks {
        let refused_before = device.unsupported.contains(&block.name);
        if refused_before && !reprobe {
            continue;
        }
        match read(conn, block, timeout).await? {
            Ok(words) => {
                registers::decode_block(block, &words, &settings, &mut reading)
                    .map_err(|e| PollError::Device(e.to_string()))?;
                read_any = true;
                if refused_before {
                    device.unsupported.retain(|b| *b != block.name);
                    tracing::info!(
                        device = %device.target.external_id,
                        block = block.name,
                        "Meter {} answers the {} block again",
                        device.target.external_id,
                        block.name
                    );
                }
            }
            Err(code) if !refused_before => {
                tracing::warn!(
                    device = %device.target.external_id,
                    block = block.name,
                    "Meter {} does not support the {} block at {:#06X} ({code}); polling the rest and asking again in {} s",
                    device.target.external_id,
                    block.name,
                    block.start,
                    device.reprobe_every().as_secs()
                );
                device.unsupported.push(block.name);
            }
            Err(_) => {}
        }
    }
    if reprobe || device.reprobe_at.is_none() {
        device.reprobe_at = (!device.unsupported.is_empty()).then(|| Instant::now() + device.reprobe_every());
    }
    if device.reported_unsupported.as_ref() != Some(&device.unsupported) {
        shared.status.unsupported_blocks(id, device.unsupported.iter().map(|b| b.to_string()).collect());
        device.reported_unsupported = Some(device.unsupported.clone());
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
        Ok(Err(e)) => Err(PollError::Connection(format!("{} (at the {} read)", describe_modbus(&e), block.name))),
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
        .map_err(|_| format!("no answer to the connection request within {} ms", timeout.as_millis()))?
        .map_err(|e| describe_io(&e))?;
    // Requests are small and answered one at a time: don't let Nagle hold them back.
    let _ = stream.set_nodelay(true);
    Ok(tokio_modbus::client::tcp::attach(ClosingStream(stream)))
}

/// A TCP stream whose end (the other side closed it) reads as an `UnexpectedEof` error:
/// tokio-modbus reports a plain end of stream as whatever the last OS error happened to be
/// ("Resource temporarily unavailable"), which tells an operator nothing.
#[derive(Debug)]
struct ClosingStream(TcpStream);

impl AsyncRead for ClosingStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let (filled, room) = (buf.filled().len(), buf.remaining());
        match Pin::new(&mut self.get_mut().0).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if room > 0 && buf.filled().len() == filled => {
                Poll::Ready(Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the peer closed the connection")))
            }
            other => other,
        }
    }
}

impl AsyncWrite for ClosingStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

/// A failed request in words for the device page and the log.
fn describe_modbus(error: &tokio_modbus::Error) -> String {
    match error {
        tokio_modbus::Error::Transport(e) => describe_io(e),
        tokio_modbus::Error::Protocol(e) => format!("the reply does not match the request ({e})"),
    }
}

/// A transport error in words: what happened to the connection rather than an errno.
fn describe_io(error: &io::Error) -> String {
    use io::ErrorKind;
    let text = match error.kind() {
        ErrorKind::UnexpectedEof => "the meter or gateway closed the connection",
        ErrorKind::ConnectionReset => "the meter or gateway reset the connection",
        ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted | ErrorKind::NotConnected => "the connection was closed",
        ErrorKind::ConnectionRefused => "connection refused (nothing listens on that port)",
        ErrorKind::HostUnreachable => "host unreachable",
        ErrorKind::NetworkUnreachable => "network unreachable",
        ErrorKind::TimedOut => "the connection timed out",
        ErrorKind::AddrNotAvailable => "address not available",
        _ => return error.to_string(),
    };
    text.to_string()
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

    fn device(interval_s: u32) -> Device {
        Device::new(Target { id: 1, external_id: "m".into(), model: Model::AcuvimII, unit_id: 1, interval_s })
    }

    #[test]
    fn the_meter_is_read_again_only_after_a_minute_of_silence() {
        let settings = MeterSettings::UNSCALED;
        let mut device = device(1);
        let t0 = Instant::now();
        device.answered_at = Some(t0);
        device.settings = Some((settings, t0));
        device.identity_probed = true;
        device.poll_at(t0 + Duration::from_secs(59));
        assert!(device.settings.is_some() && device.identity_probed, "silent under a minute: kept");
        device.poll_at(t0 + MAY_HAVE_CHANGED);
        assert!(device.settings.is_none() && !device.identity_probed, "silent for a minute: read again");
        // A meter polled every 5 minutes: its next poll keeps them, one after a missed poll not.
        let mut slow = self::device(300);
        slow.answered_at = Some(t0);
        slow.settings = Some((settings, t0));
        slow.poll_at(t0 + Duration::from_secs(301));
        assert!(slow.settings.is_some(), "the next poll");
        slow.poll_at(t0 + Duration::from_secs(600));
        assert!(slow.settings.is_none(), "a poll missed");
    }

    #[test]
    fn a_retry_is_due_at_its_time_and_keeps_its_slot() {
        let mut device = device(60);
        let (phase, slot) = (100, 28_333_333);
        let now = slot * 60_000 + phase + 5;
        device.last_slot = Some(slot - 1);
        device.retry = Some(Retry { slot, attempts: 1, at_ms: now + 700, error: "closed".into() });
        assert_eq!(device.due_ms(now, phase), now + 700, "not before the backoff");
        assert_eq!(device.poll_slot(now + 60_000, phase), slot, "the reading keeps the slot it is retried for");
        assert_eq!(device.slot_end_ms(slot, phase), (slot + 1) * 60_000 + phase);
    }

    #[test]
    fn another_attempt_needs_room_for_a_full_request_before_the_slot_ends() {
        let timeout = Duration::from_millis(400);
        assert_eq!(next_attempt_ms(1, 1_000, Duration::ZERO, timeout, 2_000), Some(1_000), "at once");
        assert_eq!(next_attempt_ms(1, 1_000, Duration::from_millis(600), timeout, 2_000), Some(1_600), "just fits");
        assert_eq!(next_attempt_ms(1, 1_000, Duration::from_millis(601), timeout, 2_000), None, "would overrun");
        assert_eq!(next_attempt_ms(1, 1_700, Duration::ZERO, timeout, 2_000), None, "too late in the slot");
        assert_eq!(next_attempt_ms(MAX_ATTEMPTS, 0, Duration::ZERO, timeout, 60_000), None, "attempts used up");
        assert_eq!(next_attempt_ms(1, i64::MAX - 5, Duration::MAX, timeout, i64::MAX - 1), None, "no overflow");
    }

    #[test]
    fn refused_blocks_are_asked_for_again_every_ten_polls_at_most_ten_minutes_apart() {
        assert_eq!(device(1).reprobe_every(), Duration::from_secs(10));
        assert_eq!(device(30).reprobe_every(), Duration::from_secs(300));
        assert_eq!(device(60).reprobe_every(), REPROBE_MAX);
        assert_eq!(device(3600).reprobe_every(), REPROBE_MAX);
    }

    #[test]
    fn transport_errors_are_described_in_words() {
        use io::ErrorKind;
        let says = |kind: ErrorKind| describe_io(&io::Error::from(kind));
        assert_eq!(says(ErrorKind::UnexpectedEof), "the meter or gateway closed the connection");
        assert_eq!(says(ErrorKind::ConnectionReset), "the meter or gateway reset the connection");
        assert_eq!(says(ErrorKind::ConnectionRefused), "connection refused (nothing listens on that port)");
        let transport = tokio_modbus::Error::Transport(io::Error::from(ErrorKind::BrokenPipe));
        assert_eq!(describe_modbus(&transport), "the connection was closed");
    }

    proptest::proptest! {
        /// Whatever the timing, a retry starts no earlier than its delay and finishes within its
        /// slot, and the attempts stay bounded.
        #[test]
        fn retries_stay_inside_their_slot(
            attempts in 1u32..6,
            now in 0i64..10_000_000,
            delay_ms in 0u64..120_000,
            timeout_ms in 100u64..60_000,
            left in -1_000i64..120_000,
        ) {
            let (delay, timeout) = (Duration::from_millis(delay_ms), Duration::from_millis(timeout_ms));
            if let Some(at) = next_attempt_ms(attempts, now, delay, timeout, now + left) {
                proptest::prop_assert!(attempts < MAX_ATTEMPTS);
                proptest::prop_assert_eq!(at, now + delay_ms as i64);
                proptest::prop_assert!(at + timeout_ms as i64 <= now + left);
            }
        }
    }
}
