//! A Modbus TCP simulator of Acuvim II meters (`tau-portal simulate`, and a library for tests
//! and benchmarks): N meters, one port each or all behind one port by unit id, serving the
//! documented register map with values that are a pure function of (meter, clock time).
//!
//! The import counters grow by exactly the integral of the total active power the meter
//! reports ([`Simulator::energy_import_wh`] against [`Simulator::primary_power_w`]), so energy
//! computed from counters can be checked against the power curve. The simulated loads only
//! import: the export counters stay 0. Faults ([`Fault`]) are injected per meter at runtime.
//!
//! Per request the server evaluates a few dozen cosines and allocates only the response
//! vector; meters share no lock (each has its own atomics and a small mutex for its fault).
//! Connections are counted ([`Simulator::connections`]), so tests can tell a reconnect happened.

pub mod cli;
mod fault;
mod image;
mod model;

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};
use tokio_modbus::server::Service;
use tokio_modbus::server::tcp::Server;
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;

use crate::clock::Clock;
pub use fault::{FAULT_HELP, Fault, FaultSpec};
use image::{Block, Scaling, Settings};
use model::MeterModel;

/// The model's time origin; counters are offsets from their integral since then.
const ORIGIN_UNIX_MICROS: i64 = 1_704_067_200_000_000; // 2024-01-01T00:00:00Z
/// How far before the wrap [`Fault::CounterWrap`] puts the counters, in seconds of energy.
const WRAP_LEAD_S: f64 = 10.0;
/// A listener whose accept fails (e.g. out of file descriptors) retries after this pause.
const ACCEPT_RETRY: Duration = Duration::from_millis(200);

/// Basic parameter mode (register 0x101D): which side of the PT/CT the real-time floats show.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ParameterMode {
    Primary,
    Secondary,
}

impl ParameterMode {
    pub fn code(self) -> u16 {
        match self {
            ParameterMode::Secondary => 0,
            ParameterMode::Primary => 1,
        }
    }
}

/// Voltage wiring (register 0x1003).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Wiring {
    /// 3-phase 4-wire (code 0).
    #[value(name = "3ln")]
    ThreeLn,
    /// 3-phase 3-wire (code 3): L-N voltages and per-phase powers read 0.
    #[value(name = "3ll")]
    ThreeLl,
}

impl Wiring {
    pub fn code(self) -> u16 {
        match self {
            Wiring::ThreeLn => 0,
            Wiring::ThreeLl => 3,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Meter k listens on `port + k` (any free port each when `port` is 0), unit id `first_unit_id`.
    PortPerMeter,
    /// All meters behind one port, like an RS-485 gateway: unit ids `first_unit_id + k`.
    UnitIds,
}

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub meters: usize,
    pub listen: IpAddr,
    /// 0 = any free port.
    pub port: u16,
    pub layout: Layout,
    pub first_unit_id: u8,
    pub mode: ParameterMode,
    /// PT primary (V, line to line: also the nominal primary voltage) and secondary.
    pub pt1: u32,
    pub pt2: u16,
    /// CT primary and secondary (A).
    pub ct1: u16,
    pub ct2: u16,
    pub wiring: Wiring,
    pub frequency_hz: f64,
    /// Nominal daily peak of total active power (primary side) of the largest meter; each
    /// meter peaks at 60–100 % of it.
    pub peak_w: f64,
    pub seed: u64,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            meters: 3,
            listen: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            layout: Layout::PortPerMeter,
            first_unit_id: 1,
            mode: ParameterMode::Primary,
            pt1: 400,
            pt2: 400,
            ct1: 200,
            ct2: 5,
            wiring: Wiring::ThreeLn,
            frequency_hz: 50.0,
            peak_w: 100_000.0,
            seed: 1,
        }
    }
}

/// A setting the simulator cannot run with; `field` is spelt like the command-line flag.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ConfigError {
    pub field: &'static str,
    pub reason: String,
}

impl SimConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |field, reason: &str| Err(ConfigError { field, reason: reason.to_string() });
        if self.meters == 0 {
            return fail("meters", "must be at least 1");
        }
        if !(1..=247).contains(&self.first_unit_id) {
            return fail("first-unit-id", "must be a Modbus address 1..247");
        }
        if self.layout == Layout::UnitIds && usize::from(self.first_unit_id) + self.meters - 1 > 247 {
            return fail("meters", "too many meters behind one port: unit ids end at 247");
        }
        if self.layout == Layout::PortPerMeter && self.port != 0 && usize::from(self.port) + self.meters - 1 > 65535 {
            return fail("port", "port + meters - 1 is beyond 65535");
        }
        let ratios = [("pt1", self.pt1), ("pt2", self.pt2.into()), ("ct1", self.ct1.into()), ("ct2", self.ct2.into())];
        if let Some((field, _)) = ratios.into_iter().find(|(_, value)| *value == 0) {
            return fail(field, "must be at least 1");
        }
        if !(40.0..=70.0).contains(&self.frequency_hz) {
            return fail("frequency", "must be a mains frequency (50 or 60 Hz)");
        }
        if !(self.peak_w.is_finite() && self.peak_w > 0.0) {
            return fail("peak-kw", "must be a positive number");
        }
        Ok(())
    }
}

/// A running simulator. Dropping it without [`Simulator::shutdown`] also stops the listeners,
/// at their next wake-up.
pub struct Simulator {
    shared: Arc<Shared>,
    endpoints: Vec<(SocketAddr, u8)>,
    tasks: TaskTracker,
    stop: CancellationToken,
}

struct Shared {
    meters: Vec<Meter>,
    clock: Clock,
    layout: Layout,
    first_unit_id: u8,
    wiring: Wiring,
    scaling: Scaling,
    /// Answers to unit ids no meter has.
    stray_requests: AtomicU64,
    /// Connections accepted, over all listeners.
    connections: AtomicU64,
}

impl Shared {
    /// How long a connection to `meter`'s own port (`None`: to the shared port) may stay idle.
    fn idle_close(&self, meter: Option<usize>) -> Option<Duration> {
        let idle = |m: &Meter| match m.fault() {
            Some(Fault::IdleClose(after)) => Some(after),
            _ => None,
        };
        match meter {
            Some(k) => self.meters.get(k).and_then(idle),
            None => self.meters.iter().filter_map(idle).min(),
        }
    }
}

struct Meter {
    model: MeterModel,
    settings: Settings,
    serial: String,
    serial_registers: [u16; 6],
    fault: Mutex<Option<Fault>>,
    /// Added to the model's antiderivatives of P, Q, S to give the counters (f64 bits).
    counter_offsets: [AtomicU64; 3],
    requests: AtomicU64,
}

impl Meter {
    fn fault(&self) -> Option<Fault> {
        *self.fault.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn offsets(&self) -> [f64; 3] {
        self.counter_offsets.each_ref().map(|o| f64::from_bits(o.load(Ordering::Relaxed)))
    }

    fn set_offsets(&self, offsets: [f64; 3]) {
        for (slot, value) in self.counter_offsets.iter().zip(offsets) {
            slot.store(value.to_bits(), Ordering::Relaxed);
        }
    }

    /// The unwrapped counters `[Wh, varh, VAh]` at `t`; the registers show them in 0.1 k counts
    /// modulo 10^9.
    fn counters(&self, t: f64) -> [f64; 3] {
        let (energy, offsets) = (self.model.energy(t), self.offsets());
        [0, 1, 2].map(|k| energy[k] + offsets[k])
    }

    /// Every counter to `WRAP_LEAD_S` of its current rate before the next multiple of the wrap.
    fn wrap_counters(&self, t: f64) {
        let (energy, rates, counters) = (self.model.energy(t), self.model.totals(t), self.counters(t));
        let wrap_wh = image::COUNTER_MODULUS * image::WH_PER_COUNT;
        self.set_offsets([0, 1, 2].map(|k| {
            let target = ((counters[k] / wrap_wh).floor() + 1.0) * wrap_wh - rates[k] * WRAP_LEAD_S / 3600.0;
            target - energy[k]
        }));
    }

    fn reset_counters(&self, t: f64) {
        self.set_offsets(self.model.energy(t).map(|e| -e));
    }

    /// The registers of one served block at `now`.
    fn block(&self, shared: &Shared, block: Block, now: DateTime<Utc>) -> Vec<u16> {
        let t = seconds(now);
        match block {
            Block::RealTime => image::real_time(&self.model.reading(t), shared.wiring, shared.scaling).to_vec(),
            Block::Energy => image::energy(self.counters(t)).to_vec(),
            Block::Settings => image::settings(&self.settings, t / 3600.0, now).to_vec(),
            Block::Model => image::ascii::<2>(image::MODEL_ASCII).to_vec(),
            Block::Serial => self.serial_registers.to_vec(),
        }
    }
}

/// Seconds since the model's origin.
fn seconds(at: DateTime<Utc>) -> f64 {
    (at.timestamp_micros() - ORIGIN_UNIX_MICROS) as f64 / 1e6
}

impl Simulator {
    /// Binds every listener (an error leaves nothing running), then serves until `shutdown`.
    pub async fn start(config: SimConfig, clock: Clock) -> io::Result<Simulator> {
        config.validate().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let scaling = Scaling::new(config.mode, config.pt1, config.pt2, config.ct1, config.ct2);
        let meters = (0..config.meters).map(|k| new_meter(&config, k)).collect();
        let shared = Arc::new(Shared {
            meters,
            clock,
            layout: config.layout,
            first_unit_id: config.first_unit_id,
            wiring: config.wiring,
            scaling,
            stray_requests: AtomicU64::new(0),
            connections: AtomicU64::new(0),
        });

        let mut listeners = Vec::new();
        let mut endpoints = Vec::with_capacity(config.meters);
        match config.layout {
            Layout::PortPerMeter => {
                for k in 0..config.meters {
                    let port = if config.port == 0 { 0 } else { config.port + k as u16 };
                    let listener = bind(SocketAddr::new(config.listen, port)).await?;
                    endpoints.push((listener.local_addr()?, config.first_unit_id));
                    listeners.push((listener, Some(k)));
                }
            }
            Layout::UnitIds => {
                let listener = bind(SocketAddr::new(config.listen, config.port)).await?;
                let addr = listener.local_addr()?;
                endpoints.extend((0..config.meters).map(|k| (addr, config.first_unit_id + k as u8)));
                listeners.push((listener, None));
            }
        }

        let (tasks, stop) = (TaskTracker::new(), CancellationToken::new());
        for (listener, meter) in listeners {
            tasks.spawn(serve(listener, shared.clone(), meter, tasks.clone(), stop.clone()));
        }
        Ok(Simulator { shared, endpoints, tasks, stop })
    }

    /// One `(address, unit id)` per meter, in meter order.
    pub fn endpoints(&self) -> Vec<(SocketAddr, u8)> {
        self.endpoints.clone()
    }

    /// The serial number meter `meter` reports at 0xF040.
    pub fn serial(&self, meter: usize) -> Option<&str> {
        self.shared.meters.get(meter).map(|m| m.serial.as_str())
    }

    /// Sets or clears (`None`) the fault of meter `meter` (0-based); it applies from the next
    /// request (an open connection starts counting its idle time for [`Fault::IdleClose`] after
    /// that request). [`Fault::CounterWrap`] and [`Fault::MeterReset`] change the counters now and
    /// leave the lasting fault as it was. An unknown meter is ignored with a warning.
    pub fn set_fault(&self, meter: usize, fault: Option<Fault>) {
        let Some(m) = self.shared.meters.get(meter) else {
            tracing::warn!(meter, meters = self.shared.meters.len(), "set_fault for a meter the simulator lacks");
            return;
        };
        let t = seconds(self.shared.clock.now());
        match fault {
            Some(Fault::CounterWrap) => m.wrap_counters(t),
            Some(Fault::MeterReset) => m.reset_counters(t),
            other => *m.fault.lock().unwrap_or_else(PoisonError::into_inner) = other,
        }
    }

    /// Total active power of meter `meter` at `at`, primary side, in W (NaN for an unknown meter).
    pub fn primary_power_w(&self, meter: usize, at: DateTime<Utc>) -> f64 {
        self.shared.meters.get(meter).map_or(f64::NAN, |m| m.model.power_w(seconds(at)))
    }

    /// The import energy counter of meter `meter` at `at` in Wh, unquantised and unwrapped:
    /// register 0x4048 shows `floor(value / 100) mod 10^9`. Between two times it grows by exactly
    /// the integral of [`Simulator::primary_power_w`] (unless a counter fault intervenes).
    pub fn energy_import_wh(&self, meter: usize, at: DateTime<Utc>) -> f64 {
        self.shared.meters.get(meter).map_or(f64::NAN, |m| m.counters(seconds(at))[0])
    }

    /// Requests answered so far (with registers or an exception), over all meters.
    pub fn requests(&self) -> u64 {
        self.shared.meters.iter().map(|m| m.requests.load(Ordering::Relaxed)).sum::<u64>()
            + self.shared.stray_requests.load(Ordering::Relaxed)
    }

    /// Connections accepted so far, over all listeners.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Stops the listeners and closes every open connection, then returns.
    pub async fn shutdown(self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn new_meter(config: &SimConfig, k: usize) -> Meter {
    let model = MeterModel::new(config.seed, k, config.peak_w, f64::from(config.pt1), config.frequency_hz);
    // Counters start somewhere in the first few million kWh, P, Q and S in plausible proportion.
    let mut rng = StdRng::seed_from_u64(config.seed.rotate_left(17) ^ k as u64);
    let base_wh = rng.gen_range(1e8..5e9);
    let (starts, energy) = ([base_wh, 0.35 * base_wh, 1.06 * base_wh], model.energy(0.0));
    let offsets = [0, 1, 2].map(|k| starts[k] - energy[k]);
    let unit_id = match config.layout {
        Layout::PortPerMeter => config.first_unit_id,
        Layout::UnitIds => config.first_unit_id + k as u8,
    };
    let serial = format!("AS{:04}{:06}", config.seed % 10_000, k + 1);
    Meter {
        model,
        settings: Settings {
            unit_id,
            wiring: config.wiring,
            pt1: config.pt1,
            pt2: config.pt2,
            ct1: config.ct1,
            ct2: config.ct2,
            mode: config.mode,
        },
        serial_registers: image::ascii::<6>(serial.as_bytes()),
        serial,
        fault: Mutex::new(None),
        counter_offsets: offsets.map(|o| AtomicU64::new(o.to_bits())),
        requests: AtomicU64::new(0),
    }
}

async fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

/// Accepts connections on one listener until `stop`. `meter` is the meter of a port of its own.
async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    meter: Option<usize>,
    tasks: TaskTracker,
    stop: CancellationToken,
) {
    let server = Server::new(listener);
    let on_connected = |stream: TcpStream, _peer: SocketAddr| {
        let (shared, tracked) = (shared.clone(), tasks.token());
        async move {
            // Replies are single small frames: send them at once. Not fatal: an error returned
            // here would stop the whole listener (and drop its other connections).
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!("Simulator connection without TCP_NODELAY: {e}");
            }
            shared.connections.fetch_add(1, Ordering::Relaxed);
            let reset = Arc::new(AtomicBool::new(false));
            let connection = Connection {
                stream,
                reset: reset.clone(),
                shared: shared.clone(),
                meter,
                last_active: Instant::now(),
                idle_timer: None,
                _tracked: tracked,
            };
            Ok(Some((MeterService { shared, meter, reset }, connection)))
        }
    };
    let on_error = |e: io::Error| tracing::debug!("Simulator connection ended: {e}");
    loop {
        tokio::select! {
            // Dropping `serve` (on stop) cancels its connection tasks; each holds a tracker token
            // in its transport, so `Simulator::shutdown` waits until they are closed.
            served = server.serve(&on_connected, on_error) => {
                // Only accept errors (e.g. out of file descriptors) end `serve`; tokio-modbus then
                // also drops that listener's open connections, and clients reconnect.
                if let Err(e) = served {
                    tracing::warn!("Simulator listener cannot accept connections ({e}); retrying");
                    tokio::select! {
                        () = tokio::time::sleep(ACCEPT_RETRY) => {}
                        () = stop.cancelled() => return,
                    }
                }
            }
            () = stop.cancelled() => return,
        }
    }
}

/// The Modbus service of one connection.
struct MeterService {
    shared: Arc<Shared>,
    meter: Option<usize>,
    /// Set by a `ResetConnection` fault; the transport then ends the connection.
    reset: Arc<AtomicBool>,
}

impl MeterService {
    fn meter_index(&self, unit_id: u8) -> Option<usize> {
        match (self.shared.layout, self.meter) {
            (Layout::PortPerMeter, Some(k)) => (unit_id == self.shared.first_unit_id).then_some(k),
            _ => unit_id
                .checked_sub(self.shared.first_unit_id)
                .map(usize::from)
                .filter(|k| *k < self.shared.meters.len()),
        }
    }
}

type Answer = Result<Option<Response>, ExceptionCode>;

impl Service for MeterService {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Reply;

    fn call(&self, req: SlaveRequest<'static>) -> Reply {
        if self.reset.load(Ordering::Relaxed) {
            return Reply::Now(Some(Ok(None)));
        }
        let Some(meter) = self.meter_index(req.slave).and_then(|k| self.shared.meters.get(k)) else {
            // What a gateway answers for an address with no device behind it.
            self.shared.stray_requests.fetch_add(1, Ordering::Relaxed);
            return Reply::Now(Some(Err(ExceptionCode::GatewayTargetDevice)));
        };
        let fault = meter.fault();
        match fault {
            Some(Fault::NoReply) => return Reply::Now(Some(Ok(None))),
            Some(Fault::ResetConnection) => {
                self.reset.store(true, Ordering::Relaxed);
                return Reply::Now(Some(Ok(None)));
            }
            _ => {}
        }
        let answer = answer(&self.shared, meter, &req.request, fault);
        meter.requests.fetch_add(1, Ordering::Relaxed);
        match fault {
            Some(Fault::Delay(delay)) => Reply::Later(Box::pin(tokio::time::sleep(delay)), Some(answer)),
            _ => Reply::Now(Some(answer)),
        }
    }
}

fn answer(shared: &Shared, meter: &Meter, request: &Request<'_>, fault: Option<Fault>) -> Answer {
    let Request::ReadHoldingRegisters(address, quantity) = *request else {
        return Err(ExceptionCode::IllegalFunction);
    };
    if let Some(Fault::Exception { block_start, code }) = fault
        && (address == block_start || image::block_start(address) == Some(block_start))
    {
        return Err(code);
    }
    let (block, offset) = image::locate(address, quantity)?;
    let mut registers = meter.block(shared, block, shared.clock.now());
    registers.drain(..offset);
    registers.truncate(usize::from(quantity));
    Ok(Some(Response::ReadHoldingRegisters(registers)))
}

/// The answer to one request, now or after a delay (boxing the timer only for a delayed one).
enum Reply {
    Now(Option<Answer>),
    Later(Pin<Box<Sleep>>, Option<Answer>),
}

impl Future for Reply {
    type Output = Answer;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer> {
        let answer = match self.get_mut() {
            Reply::Now(answer) => answer,
            Reply::Later(sleep, answer) => {
                ready!(sleep.as_mut().poll(cx));
                answer
            }
        };
        Poll::Ready(answer.take().unwrap_or(Ok(None)))
    }
}

/// A connection's socket. Reading reports end of stream, so that the server ends the
/// connection, after a `ResetConnection` fault (zero linger makes the close a TCP reset) and
/// when an `IdleClose` fault's time passes without a request (an orderly close, FIN).
struct Connection {
    stream: TcpStream,
    reset: Arc<AtomicBool>,
    shared: Arc<Shared>,
    meter: Option<usize>,
    /// When the connection last carried bytes either way.
    last_active: Instant,
    /// Armed while an idle-close fault applies and the server waits for a request.
    idle_timer: Option<Pin<Box<Sleep>>>,
    _tracked: TaskTrackerToken,
}

impl Connection {
    /// Whether an idle-close fault's time has passed since the last traffic (registering `cx`
    /// to be woken when it will).
    fn idle_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(after) = self.shared.idle_close(self.meter) else {
            self.idle_timer = None;
            return false;
        };
        let deadline = self.last_active + after;
        let timer = self.idle_timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        timer.as_mut().poll(cx).is_ready()
    }
}

impl AsyncRead for Connection {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.reset.load(Ordering::Relaxed) {
            // Best effort: without zero linger the close is an orderly FIN, still a closed connection.
            let _ = this.stream.set_zero_linger();
            return Poll::Ready(Ok(()));
        }
        let filled = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > filled {
                    this.last_active = Instant::now();
                }
                Poll::Ready(result)
            }
            Poll::Pending if this.idle_expired(cx) => {
                tracing::debug!("Simulator closes a connection idle for {:?}", this.last_active.elapsed());
                Poll::Ready(Ok(()))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = ready!(Pin::new(&mut this.stream).poll_write(cx, buf));
        if written.as_ref().is_ok_and(|n| *n > 0) {
            this.last_active = Instant::now();
        }
        Poll::Ready(written)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_flag() {
        let bad = |f: fn(&mut SimConfig)| {
            let mut c = SimConfig::default();
            f(&mut c);
            c.validate().unwrap_err().field
        };
        assert_eq!(bad(|c| c.meters = 0), "meters");
        assert_eq!(bad(|c| c.first_unit_id = 0), "first-unit-id");
        assert_eq!(
            bad(|c| {
                c.layout = Layout::UnitIds;
                c.meters = 248;
            }),
            "meters"
        );
        assert_eq!(
            bad(|c| {
                c.port = 65535;
                c.meters = 2;
            }),
            "port"
        );
        assert_eq!(bad(|c| c.ct1 = 0), "ct1");
        assert_eq!(bad(|c| c.pt2 = 0), "pt2");
        assert_eq!(bad(|c| c.frequency_hz = 0.0), "frequency");
        assert_eq!(bad(|c| c.peak_w = f64::NAN), "peak-kw");
        assert!(SimConfig::default().validate().is_ok());
    }

    fn meter(config: &SimConfig) -> Meter {
        new_meter(config, 0)
    }

    #[test]
    fn counter_wrap_puts_every_counter_just_before_the_roll_over() {
        let m = meter(&SimConfig::default());
        let t = 70_000_000.0;
        m.wrap_counters(t);
        for (k, value) in m.counters(t).into_iter().enumerate() {
            let lead_s = (1e11 - value) / (m.model.totals(t)[k] / 3600.0);
            assert!((lead_s - WRAP_LEAD_S).abs() < 1e-3, "counter {k}: {lead_s} s before the wrap");
        }
        let later = image::energy(m.counters(t + 60.0));
        assert!(later[0] == 0 && later[1] < 100, "import wrapped to a small count: {later:?}");
    }

    #[test]
    fn meter_reset_restarts_every_counter_from_zero() {
        let m = meter(&SimConfig::default());
        let t = 70_000_000.0;
        m.reset_counters(t);
        assert_eq!(m.counters(t), [0.0; 3]);
        assert!(m.counters(t + 3600.0).iter().all(|c| *c > 0.0));
    }

    #[test]
    fn counters_start_in_plausible_proportion() {
        let m = meter(&SimConfig::default());
        let [p, q, s] = m.counters(0.0);
        assert!(p > 1e8 && q > 0.3 * p && q < 0.4 * p && s > p && s < 1.1 * p, "{p} {q} {s}");
    }
}
