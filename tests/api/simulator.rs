//! The Acuvim simulator over real TCP, read with tokio-modbus's client: both layouts, every
//! fault, secondary-mode scaling, energy counters against the integral of the power, and the
//! `tau-portal simulate` process.

use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use nix::sys::signal::Signal;
use tau_acuvim_portal::clock::Clock;
use tau_acuvim_portal::modbus::simulator::cli::SimulateArgs;
use tau_acuvim_portal::modbus::simulator::{FAULT_HELP, Fault, Layout, ParameterMode, SimConfig, Simulator, Wiring};
use tokio_modbus::client::{Context, Reader};
use tokio_modbus::slave::SlaveContext;
use tokio_modbus::{ExceptionCode, Slave};

use crate::helpers::{Portal, wait_for};
use crate::modbus_peer::closed_after_idle;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
const REAL_TIME: u16 = 0x4000;
const ENERGY: u16 = 0x4048;

/// What a poller sees for one read: registers, a Modbus exception, or a dead transport.
#[derive(Debug)]
enum Read {
    Registers(Vec<u16>),
    Exception(ExceptionCode),
    Transport(#[expect(dead_code, reason = "shown by Debug in assertion messages")] String),
    TimedOut,
}

impl Read {
    fn registers(self) -> Vec<u16> {
        match self {
            Read::Registers(r) => r,
            other => panic!("expected registers, got {other:?}"),
        }
    }
}

async fn connect(addr: SocketAddr, unit: u8) -> Context {
    tokio_modbus::client::tcp::connect_slave(addr, Slave(unit)).await.expect("connect to the simulator")
}

async fn read_within(ctx: &mut Context, address: u16, quantity: u16, timeout: Duration) -> Read {
    match tokio::time::timeout(timeout, ctx.read_holding_registers(address, quantity)).await {
        Err(_) => Read::TimedOut,
        Ok(Err(e)) => Read::Transport(e.to_string()),
        Ok(Ok(Err(code))) => Read::Exception(code),
        Ok(Ok(Ok(registers))) => Read::Registers(registers),
    }
}

async fn read(ctx: &mut Context, address: u16, quantity: u16) -> Read {
    read_within(ctx, address, quantity, REQUEST_TIMEOUT).await
}

/// One read on a fresh connection.
async fn read_once(addr: SocketAddr, unit: u8, address: u16, quantity: u16) -> Read {
    read(&mut connect(addr, unit).await, address, quantity).await
}

fn float(regs: &[u16], offset: usize) -> f64 {
    f64::from(f32::from_bits(u32::from(regs[offset]) << 16 | u32::from(regs[offset + 1])))
}

fn dword(regs: &[u16], offset: usize) -> u32 {
    u32::from(regs[offset]) << 16 | u32::from(regs[offset + 1])
}

fn ascii(regs: &[u16]) -> String {
    regs.iter().flat_map(|r| r.to_be_bytes()).filter(|b| *b != 0).map(char::from).collect()
}

async fn start(config: SimConfig) -> (Simulator, Clock) {
    let clock = Clock::default();
    (Simulator::start(config, clock.clone()).await.expect("start the simulator"), clock)
}

/// Registers read, with clock times just before and just after the request.
struct Timed {
    regs: Vec<u16>,
    before: DateTime<Utc>,
    after: DateTime<Utc>,
}

impl Timed {
    fn mid(&self) -> DateTime<Utc> {
        self.before + (self.after - self.before) / 2
    }

    fn half_width_s(&self) -> f64 {
        (self.after - self.before).num_microseconds().unwrap_or(i64::MAX) as f64 / 2e6
    }
}

async fn timed_read(ctx: &mut Context, clock: &Clock, address: u16, quantity: u16) -> Timed {
    let before = clock.now();
    let regs = read(ctx, address, quantity).await.registers();
    Timed { regs, before, after: clock.now() }
}

/// The import counter (0.1 kWh counts), read with its clock times.
async fn import_counts(ctx: &mut Context, clock: &Clock) -> (u32, Timed) {
    let timed = timed_read(ctx, clock, ENERGY, 18).await;
    (dword(&timed.regs, 0), timed)
}

/// `shown × scale` (register value back to primary W) lies between the simulator's power at the
/// start and the end of the request, give or take f32 rounding and curvature (0.2 %).
fn assert_primary_power(sim: &Simulator, meter: usize, shown: f64, scale: f64, timed: &Timed) {
    let (a, b) = (sim.primary_power_w(meter, timed.before), sim.primary_power_w(meter, timed.after));
    let (lo, hi) = (a.min(b) * 0.998, a.max(b) * 1.002);
    let primary = shown * scale;
    assert!((lo..=hi).contains(&primary), "meter {meter}: P {shown} × {scale} = {primary} W, expected {lo}..{hi}");
}

#[tokio::test]
async fn each_meter_has_its_own_port_and_serial() {
    let (sim, clock) = start(SimConfig { meters: 3, ..SimConfig::default() }).await;
    let endpoints = sim.endpoints();
    assert_eq!(endpoints.len(), 3);
    let mut serials = Vec::new();
    for (k, (addr, unit)) in endpoints.iter().copied().enumerate() {
        assert_eq!(unit, 1);
        let mut ctx = connect(addr, unit).await;
        let timed = timed_read(&mut ctx, &clock, REAL_TIME, 72).await;
        let regs = &timed.regs;
        assert_eq!(regs.len(), 72);
        let (frequency, v1, v12) = (float(regs, 0), float(regs, 2), float(regs, 0x0A));
        assert!((49.9..50.1).contains(&frequency), "frequency {frequency}");
        assert!((220.0..240.0).contains(&v1), "V1 {v1}");
        assert!((380.0..415.0).contains(&v12), "V12 {v12}");
        assert_primary_power(&sim, k, float(regs, 0x22), 1.0, &timed);

        let serial = ascii(&read(&mut ctx, 0xF040, 6).await.registers());
        assert_eq!(Some(serial.as_str()), sim.serial(k));
        serials.push(serial);
        let settings = read(&mut ctx, 0x1000, 0x1E).await.registers();
        assert_eq!(settings[0x1D], 1, "0x101D: primary mode");
        assert_eq!(dword(&settings, 5), 400, "PT1");
        assert_eq!(&settings[7..10], &[400, 200, 5], "PT2, CT1, CT2");
        assert_eq!(read(&mut ctx, 0x1005, 5).await.registers(), settings[5..10], "a sub-range of the block");
    }
    serials.dedup();
    assert_eq!(serials.len(), 3, "serials are unique per meter: {serials:?}");

    let (addr, _) = endpoints[0];
    assert!(matches!(read_once(addr, 2, REAL_TIME, 72).await, Read::Exception(ExceptionCode::GatewayTargetDevice)));
    assert!(matches!(read_once(addr, 1, 0xC350, 2).await, Read::Exception(ExceptionCode::IllegalDataAddress)));
    assert!(matches!(read_once(addr, 1, 0x4000, 90).await, Read::Exception(ExceptionCode::IllegalDataAddress)));
    let mut ctx = connect(addr, 1).await;
    let input = tokio::time::timeout(REQUEST_TIMEOUT, ctx.read_input_registers(REAL_TIME, 2)).await;
    assert!(matches!(input, Ok(Ok(Err(ExceptionCode::IllegalFunction)))), "function 04: {input:?}");
    assert!(sim.requests() >= 3 * 4 + 4, "requests answered: {}", sim.requests());
    sim.shutdown().await;
}

#[tokio::test]
async fn unit_ids_share_one_port_like_a_gateway() {
    let config = SimConfig { meters: 3, layout: Layout::UnitIds, first_unit_id: 5, ..SimConfig::default() };
    let (sim, clock) = start(config).await;
    let endpoints = sim.endpoints();
    assert!(endpoints.iter().all(|(addr, _)| *addr == endpoints[0].0), "{endpoints:?}");
    assert_eq!(endpoints.iter().map(|(_, unit)| *unit).collect::<Vec<_>>(), [5, 6, 7]);

    let mut ctx = connect(endpoints[0].0, 5).await;
    let mut powers = Vec::new();
    for (k, (_, unit)) in endpoints.iter().enumerate() {
        ctx.set_slave(Slave(*unit));
        let timed = timed_read(&mut ctx, &clock, REAL_TIME, 72).await;
        let p = float(&timed.regs, 0x22);
        assert_primary_power(&sim, k, p, 1.0, &timed);
        assert_eq!(read(&mut ctx, 0x1001, 1).await.registers(), [u16::from(*unit)], "0x1001 holds the unit id");
        powers.push(p);
    }
    assert!(powers[0] != powers[1] && powers[1] != powers[2], "meters differ: {powers:?}");
    ctx.set_slave(Slave(8));
    assert!(matches!(read(&mut ctx, REAL_TIME, 72).await, Read::Exception(ExceptionCode::GatewayTargetDevice)));

    // A silent meter behind the gateway does not silence the others on the same connection.
    sim.set_fault(1, Some(Fault::NoReply));
    ctx.set_slave(Slave(6));
    assert!(matches!(read_within(&mut ctx, REAL_TIME, 72, Duration::from_millis(300)).await, Read::TimedOut));
    let mut other = connect(endpoints[0].0, 7).await;
    assert_eq!(read(&mut other, ENERGY, 18).await.registers().len(), 18);
    sim.shutdown().await;
}

#[tokio::test]
async fn no_reply_times_the_client_out_until_cleared() {
    let (sim, _) = start(SimConfig { meters: 2, ..SimConfig::default() }).await;
    let [(a0, u0), (a1, u1)] = sim.endpoints()[..] else { unreachable!() };
    sim.set_fault(1, Some(Fault::NoReply));
    let answered = sim.requests();
    let mut ctx = connect(a1, u1).await;
    assert!(matches!(read_within(&mut ctx, REAL_TIME, 72, Duration::from_millis(500)).await, Read::TimedOut));
    assert_eq!(sim.requests(), answered, "an unanswered request is not counted");
    assert!(matches!(read_once(a0, u0, REAL_TIME, 72).await, Read::Registers(_)), "the other meter answers");
    sim.set_fault(1, None);
    assert!(matches!(read_once(a1, u1, REAL_TIME, 72).await, Read::Registers(_)));
    sim.shutdown().await;
}

#[tokio::test]
async fn delay_answers_late_but_correctly() {
    let (sim, _) = start(SimConfig::default()).await;
    let (addr, unit) = sim.endpoints()[0];
    let delay = Duration::from_millis(1000);
    sim.set_fault(0, Some(Fault::Delay(delay)));
    let mut ctx = connect(addr, unit).await;
    assert!(matches!(read_within(&mut ctx, ENERGY, 18, Duration::from_millis(100)).await, Read::TimedOut));
    let started = std::time::Instant::now();
    let regs = read_once(addr, unit, 0x1000, 0x1E).await.registers();
    assert!(started.elapsed() >= delay, "answered after {:?}", started.elapsed());
    assert_eq!(regs[0x1D], 1);
    sim.set_fault(0, None);
    let started = std::time::Instant::now();
    assert!(matches!(read_once(addr, unit, 0x1000, 0x1E).await, Read::Registers(_)));
    assert!(started.elapsed() < delay, "answered after {:?} without the fault", started.elapsed());
    sim.shutdown().await;
}

#[tokio::test]
async fn an_exception_fault_hits_its_block_only() {
    let (sim, _) = start(SimConfig::default()).await;
    let (addr, unit) = sim.endpoints()[0];
    sim.set_fault(0, Some(Fault::Exception { block_start: ENERGY, code: ExceptionCode::ServerDeviceFailure }));
    let mut ctx = connect(addr, unit).await;
    assert!(matches!(read(&mut ctx, ENERGY, 18).await, Read::Exception(ExceptionCode::ServerDeviceFailure)));
    assert!(matches!(read(&mut ctx, 0x4050, 2).await, Read::Exception(ExceptionCode::ServerDeviceFailure)));
    assert!(matches!(read(&mut ctx, REAL_TIME, 72).await, Read::Registers(_)), "the connection lives on");
    assert!(matches!(read(&mut ctx, 0x1000, 10).await, Read::Registers(_)));
    sim.set_fault(0, None);
    assert!(matches!(read(&mut ctx, ENERGY, 18).await, Read::Registers(_)));
    sim.shutdown().await;
}

#[tokio::test]
async fn reset_connection_closes_every_new_connection_until_cleared() {
    let (sim, _) = start(SimConfig::default()).await;
    let (addr, unit) = sim.endpoints()[0];
    let mut ctx = connect(addr, unit).await;
    assert!(matches!(read(&mut ctx, REAL_TIME, 72).await, Read::Registers(_)));
    sim.set_fault(0, Some(Fault::ResetConnection));
    for _ in 0..2 {
        let result = read(&mut ctx, REAL_TIME, 72).await;
        assert!(matches!(result, Read::Transport(_)), "closed connection: {result:?}");
        ctx = connect(addr, unit).await;
    }
    sim.set_fault(0, None);
    assert!(matches!(read(&mut ctx, REAL_TIME, 72).await, Read::Registers(_)));
    sim.shutdown().await;
}

#[tokio::test]
async fn idle_close_ends_a_connection_left_idle_and_spares_a_busy_one() {
    let (sim, _) = start(SimConfig { meters: 2, ..SimConfig::default() }).await;
    let [(a0, u0), (a1, u1)] = sim.endpoints()[..] else { unreachable!() };
    let idle = Duration::from_millis(600);
    sim.set_fault(0, Some(Fault::IdleClose(idle)));
    let mut busy = connect(a0, u0).await;
    let started = std::time::Instant::now();
    while started.elapsed() < idle * 2 {
        assert!(matches!(read(&mut busy, REAL_TIME, 72).await, Read::Registers(_)), "a busy connection stays open");
        tokio::time::sleep(idle / 4).await;
    }
    let idled = closed_after_idle(a0, u0).await;
    assert!(idled >= idle * 9 / 10, "closed after {idled:?} idle, not {idle:?}");
    assert!(
        matches!(read_once(a1, u1, REAL_TIME, 72).await, Read::Registers(_)),
        "the other meter's port is unaffected"
    );
    assert_eq!(sim.connections(), 3, "every connection is counted");
    sim.shutdown().await;

    // Behind one port, a meter's idle-close closes the gateway's connections.
    let (gateway, _) = start(SimConfig { meters: 2, layout: Layout::UnitIds, ..SimConfig::default() }).await;
    let (addr, unit) = gateway.endpoints()[0];
    gateway.set_fault(1, Some(Fault::IdleClose(idle)));
    assert!(closed_after_idle(addr, unit).await >= idle * 9 / 10);
    gateway.shutdown().await;
}

#[tokio::test]
async fn counter_wrap_rolls_over_to_a_small_count() {
    let (sim, clock) = start(SimConfig::default()).await;
    let (addr, unit) = sim.endpoints()[0];
    let mut ctx = connect(addr, unit).await;
    let (before, _) = import_counts(&mut ctx, &clock).await;
    sim.set_fault(0, Some(Fault::CounterWrap));
    let (near, _) = import_counts(&mut ctx, &clock).await;
    assert!((999_999_980..=999_999_999).contains(&near), "before the wrap: {near} (was {before})");
    clock.advance(Duration::from_secs(120));
    let (after, timed) = import_counts(&mut ctx, &clock).await;
    assert!(after < 100, "after the wrap: {after}");
    assert!(sim.energy_import_wh(0, timed.before) > 1e11, "the unwrapped counter counts on");
    assert!(matches!(read(&mut ctx, REAL_TIME, 72).await, Read::Registers(_)), "a one-shot change, not a fault");
    sim.shutdown().await;
}

#[tokio::test]
async fn meter_reset_restarts_the_counters_from_zero() {
    let (sim, clock) = start(SimConfig::default()).await;
    let (addr, unit) = sim.endpoints()[0];
    let mut ctx = connect(addr, unit).await;
    let (before, _) = import_counts(&mut ctx, &clock).await;
    assert!(before > 1_000_000, "counters start high: {before}");
    sim.set_fault(0, Some(Fault::MeterReset));
    let regs = read(&mut ctx, ENERGY, 18).await.registers();
    assert!(dword(&regs, 0) < 5 && dword(&regs, 4) < 5 && dword(&regs, 16) < 5, "reset: {regs:?}");
    clock.advance(Duration::from_secs(3600));
    let (after, timed) = import_counts(&mut ctx, &clock).await;
    let [lo, hi] = [timed.before, timed.after].map(|t| (sim.energy_import_wh(0, t) / 100.0).floor());
    assert!(after > 0 && (lo..=hi).contains(&f64::from(after)), "{after} counts, expected {lo}..{hi}");
    sim.shutdown().await;
}

#[tokio::test]
async fn secondary_mode_shows_values_divided_by_the_pt_and_ct_ratios() {
    let config = SimConfig {
        mode: ParameterMode::Secondary,
        wiring: Wiring::ThreeLl,
        pt1: 11_000,
        pt2: 110,
        ct1: 200,
        ct2: 5,
        peak_w: 2_000_000.0,
        ..SimConfig::default()
    };
    let (sim, clock) = start(config).await;
    let (addr, unit) = sim.endpoints()[0];
    let mut ctx = connect(addr, unit).await;
    let timed = timed_read(&mut ctx, &clock, REAL_TIME, 72).await;
    let regs = &timed.regs;
    let (v_ratio, i_ratio) = (100.0, 40.0);
    assert_primary_power(&sim, 0, float(regs, 0x22), v_ratio * i_ratio, &timed);
    let v12 = float(regs, 0x0A);
    assert!((105.0..116.0).contains(&v12), "secondary V12 {v12} (primary {} V)", v12 * v_ratio);
    let i1 = float(regs, 0x12);
    assert!(i1 > 0.0 && i1 < 5.0, "secondary I1 {i1} A (primary {} A)", i1 * i_ratio);
    for (name, offset) in [("V1", 0x02), ("V avg L-N", 0x08), ("P1", 0x1C), ("Q2", 0x26), ("PF3", 0x38)] {
        assert_eq!(float(regs, offset), 0.0, "{name} reads 0 in 3LL wiring");
    }
    let pf = float(regs, 0x3A);
    assert!((0.85..=0.99).contains(&pf), "PF {pf}");

    let settings = read(&mut ctx, 0x1000, 0x1E).await.registers();
    assert_eq!((settings[0x03], settings[0x1D], settings[0x19]), (3, 0, 0), "3LL, secondary, energy in primary");
    assert_eq!(dword(&settings, 5), 11_000);
    // Energy is primary whatever the parameter mode (0x1019 = 0).
    let (counts, timed) = import_counts(&mut ctx, &clock).await;
    let [lo, hi] = [timed.before, timed.after].map(|t| (sim.energy_import_wh(0, t) / 100.0).floor());
    assert!((lo..=hi).contains(&f64::from(counts)), "{counts} counts, expected {lo}..{hi}");
    sim.shutdown().await;
}

/// Composite Simpson's rule over `n` (even) intervals.
fn simpson(f: impl Fn(f64) -> f64, a: f64, b: f64, n: usize) -> f64 {
    let h = (b - a) / n as f64;
    let inner: f64 = (1..n).map(|k| if k % 2 == 1 { 4.0 } else { 2.0 } * f(a + h * k as f64)).sum();
    h / 3.0 * (f(a) + inner + f(b))
}

#[tokio::test]
async fn the_import_counter_grows_by_the_integral_of_the_power() {
    let (sim, clock) = start(SimConfig { meters: 2, seed: 42, ..SimConfig::default() }).await;
    for (k, (addr, unit)) in sim.endpoints().into_iter().enumerate() {
        let mut ctx = connect(addr, unit).await;
        let (c1, r1) = import_counts(&mut ctx, &clock).await;
        clock.advance(Duration::from_secs(3 * 3600 + 17));
        let (c2, r2) = import_counts(&mut ctx, &clock).await;
        let (t1, t2) = (r1.mid(), r2.mid());
        let seconds = (t2 - t1).num_microseconds().unwrap() as f64 / 1e6;
        let power = |s: f64| sim.primary_power_w(k, t1 + chrono::Duration::microseconds((s * 1e6) as i64));
        let integral_wh = simpson(power, 0.0, seconds, 2 * seconds as usize) / 3600.0;
        let counted_wh = f64::from(c2 - c1) * 100.0;
        // Quantising each reading to whole counts loses less than one count; not knowing exactly
        // when within each request the server read its clock adds at most P × half the request.
        let peak = 1.01 * sim.primary_power_w(k, t1).max(sim.primary_power_w(k, t2));
        let tolerance = 100.0 + peak * (r1.half_width_s() + r2.half_width_s()) / 3600.0;
        assert!(
            (counted_wh - integral_wh).abs() < tolerance,
            "meter {k}: counted {counted_wh} Wh, integral {integral_wh} Wh"
        );
        assert!(integral_wh > 10_000.0, "a few hours of load: {integral_wh} Wh");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_open_connections_and_listeners() {
    let (sim, _) = start(SimConfig { meters: 2, ..SimConfig::default() }).await;
    let (addr, unit) = sim.endpoints()[0];
    let mut ctx = connect(addr, unit).await;
    assert!(matches!(read(&mut ctx, REAL_TIME, 72).await, Read::Registers(_)));
    tokio::time::timeout(Duration::from_secs(5), sim.shutdown()).await.expect("shutdown within 5 s");
    assert!(matches!(read(&mut ctx, REAL_TIME, 72).await, Read::Transport(_)), "the open connection is closed");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "the listener is gone");
}

#[tokio::test]
async fn bad_configuration_is_refused_naming_the_setting() {
    let err = Simulator::start(SimConfig { meters: 0, ..SimConfig::default() }, Clock::default()).await.err();
    assert!(err.is_some_and(|e| e.to_string().contains("meters")));
}

/// `tau-portal simulate` as a real process: meter lines on stdout, a fault flag, SIGTERM → 0.
#[tokio::test]
async fn the_simulate_command_serves_until_sigterm() {
    let data = tempfile::tempdir().unwrap();
    let args = ["simulate", "--meters", "2", "--port", "0", "--mode", "primary", "--fault", "2=exception:0x4000"];
    let mut process = Portal::start(&args, &[], data.path());
    let lines = wait_for("two meter lines", Duration::from_secs(30), || {
        let lines: Vec<String> = process.raw_lines().into_iter().filter(|l| l.starts_with("meter ")).collect();
        async move { (lines.len() == 2).then_some(lines) }
    })
    .await;
    let endpoint = |line: &str| -> (SocketAddr, u8, String) {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!((words[3], words[5]), ("unit", "serial"), "{line}");
        (words[2].parse().unwrap(), words[4].parse().unwrap(), words[6].to_string())
    };
    let (addr1, unit1, serial1) = endpoint(&lines[0]);
    let (addr2, unit2, _) = endpoint(&lines[1]);
    let mut ctx = connect(addr1, unit1).await;
    assert_eq!(ascii(&read(&mut ctx, 0xF040, 6).await.registers()), serial1);
    let p = float(&read(&mut ctx, REAL_TIME, 72).await.registers(), 0x22);
    assert!(p > 0.0 && p < 100_000.0, "P total {p} W");
    assert!(matches!(read_once(addr2, unit2, REAL_TIME, 72).await, Read::Exception(ExceptionCode::IllegalDataAddress)));
    assert!(matches!(read_once(addr2, unit2, ENERGY, 18).await, Read::Registers(_)));

    process.signal(Signal::SIGTERM);
    let status = process.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "exit status {status:?}; output:\n{}", process.raw_lines().join("\n"));
}

#[test]
fn the_simulate_command_names_a_bad_flag_and_exits_2() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tau-portal"))
        .args(["simulate", "--wiring", "2ll"])
        .output()
        .expect("run tau-portal");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--wiring"), "{stderr}");
}

/// The README's simulator section names every flag and every fault the command accepts.
#[test]
fn the_readme_documents_every_simulate_flag_and_fault() {
    use clap::Args;
    let readme = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = &readme[readme.find("## Acuvim simulator").expect("README has an Acuvim simulator section")..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |end| end + 3)];
    let command = SimulateArgs::augment_args(clap::Command::new("simulate"));
    for long in command.get_arguments().filter_map(|a| a.get_long()) {
        assert!(section.contains(&format!("--{long}")), "README does not document --{long}");
    }
    for fault in FAULT_HELP.split(", ") {
        let name = fault.split([':', '<']).next().unwrap();
        assert!(section.contains(&format!("`{name}")), "README does not document the fault {name}");
    }
}
