//! The Modbus poller against the project's simulator over real TCP, writing into the real
//! database: values and scaling, every fault the simulator can inject, live device edits, and a
//! database outage; and against the independent peer, a hand-written Acuvim register image served
//! by pymodbus (tests/modbus), which guards against a decoder and a simulator that agree with each
//! other but not with the meter.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tau_acuvim_portal::clock::Clock;
use tau_acuvim_portal::config::ModbusSettings;
use tau_acuvim_portal::modbus::poller::Poller;
use tau_acuvim_portal::modbus::simulator::{Fault, Layout, ParameterMode, SimConfig, Simulator, Wiring};
use tokio::task::JoinHandle;
use tokio_modbus::ExceptionCode;
use tokio_util::sync::CancellationToken;

use crate::helpers::{Browser, Portal, Proxy, TestApp, TestDb, production_env, site_with_devices, wait_for};
use crate::modbus_peer::{ModbusPeer, PEER_UNIT_ID};
use crate::sites::{admin, create_device, create_site, post_device};

const PATIENCE: Duration = Duration::from_secs(20);

pub(crate) fn sim_config(meters: usize, layout: Layout) -> SimConfig {
    SimConfig {
        meters,
        listen: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port: 0,
        layout,
        first_unit_id: 1,
        mode: ParameterMode::Primary,
        pt1: 400,
        pt2: 400,
        ct1: 5,
        ct2: 5,
        wiring: Wiring::ThreeLn,
        frequency_hz: 50.0,
        peak_w: 50_000.0,
        seed: 7,
    }
}

/// The poller on its own task, as `serve` runs it, with short timeouts so faults show quickly.
pub(crate) struct Running {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    pub(crate) fn start(app: &TestApp, db: PgPool) -> Running {
        let poller = Poller {
            db,
            devices: app.state.devices.clone(),
            clock: app.clock.clone(),
            settings: ModbusSettings {
                enabled: true,
                request_timeout: Duration::from_millis(400),
                max_backoff: Duration::from_secs(1),
                buffer_readings: 10_000,
            },
        };
        let stop = CancellationToken::new();
        let task = tokio::spawn(poller.run(stop.clone()));
        Running { stop, task }
    }

    /// Stops polling and waits for the final flush.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(PATIENCE, self.task).await.expect("poller stops").unwrap();
    }
}

/// A site with one Modbus device per (address, unit id), polled every second.
pub(crate) async fn devices_for(b: &mut Browser, endpoints: &[(SocketAddr, u8)]) -> Vec<i32> {
    let site = create_site(b, "Plant").await;
    let mut ids = Vec::new();
    for (i, (addr, unit)) in endpoints.iter().enumerate() {
        let (port, unit) = (addr.port().to_string(), unit.to_string());
        let external_id = format!("meter-{i}");
        let fields = [
            ("modbus_host", "127.0.0.1"),
            ("modbus_port", port.as_str()),
            ("modbus_unit_id", unit.as_str()),
            ("poll_interval_seconds", "1"),
        ];
        ids.push(create_device(b, site, &external_id, &fields).await);
    }
    ids
}

async fn reading_count(db: &PgPool, device: i32) -> i64 {
    sqlx::query_scalar(r#"SELECT count(*) FROM monitoring."PowerMeasurements" WHERE "DeviceId" = $1"#)
        .bind(device)
        .fetch_one(db)
        .await
        .unwrap()
}

/// Waits until `device` has `n` more readings than it has now.
async fn more_readings(db: &PgPool, device: i32, n: i64) {
    let start = reading_count(db, device).await;
    wait_for(&format!("{n} more readings of device {device}"), PATIENCE, || async {
        (reading_count(db, device).await >= start + n).then_some(())
    })
    .await;
}

#[derive(sqlx::FromRow)]
#[sqlx(rename_all = "PascalCase")]
struct Stored {
    time: DateTime<Utc>,
    p_total: Option<f32>,
    v1: Option<f32>,
    v12: Option<f32>,
    i1: Option<f32>,
    #[sqlx(rename = "EnergyImportWh")]
    import_wh: Option<f64>,
}

async fn readings(db: &PgPool, device: i32) -> Vec<Stored> {
    sqlx::query_as(
        r#"SELECT "Time", "PTotal", "V1", "V12", "I1", "EnergyImportWh" FROM monitoring."PowerMeasurements"
           WHERE "DeviceId" = $1 ORDER BY "Time""#,
    )
    .bind(device)
    .fetch_all(db)
    .await
    .unwrap()
}

#[derive(sqlx::FromRow, Debug)]
struct Status {
    #[sqlx(rename = "ConsecutiveFailures")]
    failures: i32,
    #[sqlx(rename = "LastError")]
    last_error: Option<String>,
    #[sqlx(rename = "UnsupportedBlocks")]
    unsupported: Vec<String>,
    #[sqlx(rename = "MeterIdentity")]
    identity: Option<serde_json::Value>,
    #[sqlx(rename = "MeterSettings")]
    settings: Option<serde_json::Value>,
}

async fn status(db: &PgPool, device: i32) -> Status {
    sqlx::query_as(
        r#"SELECT "ConsecutiveFailures", "LastError", "UnsupportedBlocks", "MeterIdentity", "MeterSettings"
           FROM monitoring."Devices" WHERE "Id" = $1"#,
    )
    .bind(device)
    .fetch_one(db)
    .await
    .unwrap()
}

async fn wait_status(db: &PgPool, device: i32, what: &str, check: impl Fn(&Status) -> bool) -> Status {
    wait_for(what, PATIENCE, || async {
        let s = status(db, device).await;
        check(&s).then_some(s)
    })
    .await
}

/// Every reading of a 1-second device sits on a whole second, once.
fn assert_aligned_and_unique(rows: &[Stored]) {
    for pair in rows.windows(2) {
        assert!(pair[0].time < pair[1].time, "duplicate or unordered reading at {}", pair[1].time);
    }
    for r in rows {
        assert_eq!(r.time.timestamp_subsec_millis(), 0, "reading at {} is not aligned to its 1 s slot", r.time);
    }
}

fn close(actual: f64, expected: f64, tolerance: f64) -> bool {
    (actual - expected).abs() <= tolerance * expected.abs().max(1.0)
}

#[sqlx::test]
async fn meters_on_their_own_ports_and_behind_one_gateway_are_polled_into_the_store(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let own_ports = Simulator::start(sim_config(2, Layout::PortPerMeter), app.clock.clone()).await.unwrap();
    let gateway = Simulator::start(sim_config(3, Layout::UnitIds), app.clock.clone()).await.unwrap();
    let mut endpoints = own_ports.endpoints();
    endpoints.extend(gateway.endpoints());
    assert_eq!(endpoints[2].0, endpoints[4].0, "the gateway's meters share one address");
    let mut b = admin(&app).await;
    let devices = devices_for(&mut b, &endpoints).await;
    let poller = Running::start(&app, pool.clone());

    for &device in &devices {
        more_readings(&pool, device, 3).await;
    }
    poller.stop().await;

    let sims = [(&own_ports, 0), (&own_ports, 1), (&gateway, 0), (&gateway, 1), (&gateway, 2)];
    for (&device, (sim, meter)) in devices.iter().zip(sims) {
        let rows = readings(&pool, device).await;
        assert_aligned_and_unique(&rows);
        for r in &rows {
            // Stamped at the slot start, read up to ~¼ s later: the load shape barely moves.
            let expected = sim.primary_power_w(meter, r.time);
            let p = f64::from(r.p_total.expect("active power stored"));
            assert!(close(p, expected, 0.01), "device {device}: {p} W stored, simulator says {expected} W");
            let counted = r.import_wh.expect("import counter stored");
            let exact = sim.energy_import_wh(meter, r.time);
            assert!((counted - exact).abs() <= 100.0 + 0.01 * exact.max(1.0), "counter {counted} Wh vs {exact} Wh");
            assert!(r.v1.is_some_and(|v| (200.0..260.0).contains(&v)), "L-N voltage stored in 3LN wiring");
        }
        let s = status(&pool, device).await;
        assert_eq!(s.failures, 0);
        assert!(s.settings.is_some(), "the meter's settings snapshot is stored");
        let serial = s.identity.as_ref().and_then(|i| i["serial"].as_str().map(String::from)).unwrap_or_default();
        assert!(!serial.is_empty(), "identity probe stored a serial: {:?}", s.identity);
        // The device page shows what the poller learnt.
        let page = b.get(&format!("/devices/{device}")).await;
        for needle in ["Online", "Meter settings", "PT 400/400 V, CT 5/5 A, wiring 3LN", serial.as_str()] {
            assert!(page.body.contains(needle), "device page lacks {needle:?}");
        }
    }
    own_ports.shutdown().await;
    gateway.shutdown().await;
}

#[sqlx::test]
async fn secondary_values_are_scaled_to_primary_and_three_wire_phases_are_null(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let config = SimConfig {
        mode: ParameterMode::Secondary,
        pt1: 11_000,
        pt2: 110,
        ct1: 200,
        ct2: 5,
        wiring: Wiring::ThreeLl,
        ..sim_config(1, Layout::PortPerMeter)
    };
    let sim = Simulator::start(config, app.clock.clone()).await.unwrap();
    let mut b = admin(&app).await;
    let devices = devices_for(&mut b, &sim.endpoints()).await;
    let poller = Running::start(&app, pool.clone());
    more_readings(&pool, devices[0], 2).await;
    poller.stop().await;

    for r in readings(&pool, devices[0]).await {
        let p = f64::from(r.p_total.unwrap());
        let expected = sim.primary_power_w(0, r.time);
        assert!(close(p, expected, 0.01), "{p} W stored, the primary side carries {expected} W");
        let v12 = r.v12.unwrap();
        assert!((10_000.0..12_000.0).contains(&v12), "line voltage {v12} V scaled by PT 11000/110");
        assert_eq!(r.v1, None, "no L-N voltage without a neutral");
        assert!(r.i1.is_some());
    }
    let settings = status(&pool, devices[0]).await.settings.unwrap();
    assert_eq!((settings["pt1"].as_u64(), settings["ct1"].as_u64()), (Some(11_000), Some(200)));
    assert_eq!(settings["primaryValues"], false);
    sim.shutdown().await;
}

#[sqlx::test]
async fn a_meter_that_stops_answering_fails_then_recovers_without_duplicates(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let sim = Simulator::start(sim_config(2, Layout::UnitIds), app.clock.clone()).await.unwrap();
    let mut b = admin(&app).await;
    let devices = devices_for(&mut b, &sim.endpoints()).await;
    let poller = Running::start(&app, pool.clone());
    more_readings(&pool, devices[0], 1).await;

    for fault in [Fault::NoReply, Fault::ResetConnection, Fault::Delay(Duration::from_secs(2))] {
        let what = format!("{fault:?}");
        sim.set_fault(0, Some(fault));
        let failing =
            wait_status(&pool, devices[0], &format!("{what}: device marked failing"), |s| s.failures > 0).await;
        assert!(failing.last_error.is_some(), "{what}: the error is recorded");
        sim.set_fault(0, None);
        wait_status(&pool, devices[0], &format!("{what}: device recovers"), |s| s.failures == 0).await;
        more_readings(&pool, devices[0], 2).await;
    }
    // A short delay is within the timeout: no failure at all.
    sim.set_fault(0, Some(Fault::Delay(Duration::from_millis(50))));
    more_readings(&pool, devices[0], 2).await;
    assert_eq!(status(&pool, devices[0]).await.failures, 0);
    // The other meter behind the same connection kept (or resumed) its readings.
    more_readings(&pool, devices[1], 2).await;
    poller.stop().await;
    for &device in &devices {
        assert_aligned_and_unique(&readings(&pool, device).await);
    }
    sim.shutdown().await;
}

/// Waits for `n` more readings of `device`, none of them after a failed poll: no error was ever
/// recorded for the device.
async fn more_readings_without_a_failure(db: &PgPool, device: i32, n: i64, what: &str) {
    more_readings(db, device, n).await;
    let s = status(db, device).await;
    assert_eq!((s.failures, s.last_error.as_deref()), (0, None), "{what}: device {device} recorded a failed poll");
}

/// A gateway closing connections idle for half the poll interval: the poll finds its connection
/// closed every time, reconnects and reads within the same slot, so no slot is lost and the
/// device never shows an error (it used to lose every other slot, flapping Error ⇄ Online).
#[sqlx::test]
async fn behind_a_gateway_that_closes_idle_connections_no_slot_is_lost(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let gateway = Simulator::start(sim_config(2, Layout::UnitIds), app.clock.clone()).await.unwrap();
    gateway.set_fault(1, Some(Fault::IdleClose(Duration::from_millis(500))));
    let mut b = admin(&app).await;
    let devices = devices_for(&mut b, &gateway.endpoints()).await;
    let poller = Running::start(&app, pool.clone());
    more_readings(&pool, devices[0], 1).await;
    let connections = gateway.connections();
    for &device in &devices {
        more_readings_without_a_failure(&pool, device, 4, "idle-closing simulator").await;
    }
    assert!(gateway.connections() >= connections + 3, "the gateway closed the idle connection before each slot");
    poller.stop().await;
    for &device in &devices {
        assert_aligned_and_unique(&readings(&pool, device).await);
    }
    gateway.shutdown().await;
}

/// The same against the independent pymodbus peer closing idle connections on its own terms.
#[sqlx::test]
async fn the_independent_peer_closing_idle_connections_loses_no_slot(pool: PgPool) {
    let Some(peer) = ModbusPeer::idle_closing("primary-3ln", Duration::from_millis(500)).await else { return };
    let app = TestApp::new(pool.clone()).await;
    let mut b = admin(&app).await;
    let devices = devices_for(&mut b, &[(peer.addr, PEER_UNIT_ID)]).await;
    let poller = Running::start(&app, pool.clone());
    more_readings(&pool, devices[0], 1).await;
    more_readings_without_a_failure(&pool, devices[0], 4, "idle-closing pymodbus peer").await;
    poller.stop().await;
    assert_aligned_and_unique(&readings(&pool, devices[0]).await);
    peer.stop().await;
}

#[sqlx::test]
async fn an_exception_on_one_block_marks_it_unsupported_and_the_rest_is_still_read(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let sim = Simulator::start(sim_config(1, Layout::PortPerMeter), app.clock.clone()).await.unwrap();
    sim.set_fault(0, Some(Fault::Exception { block_start: 0x4048, code: ExceptionCode::IllegalDataAddress }));
    let mut b = admin(&app).await;
    let devices = devices_for(&mut b, &sim.endpoints()).await;
    let poller = Running::start(&app, pool.clone());
    let s = wait_status(&pool, devices[0], "energy block marked unsupported", |s| !s.unsupported.is_empty()).await;
    assert_eq!(s.unsupported, ["energy"]);
    more_readings(&pool, devices[0], 2).await;
    poller.stop().await;
    let rows = readings(&pool, devices[0]).await;
    assert!(rows.iter().all(|r| r.p_total.is_some() && r.import_wh.is_none()), "power without counters");
    assert_eq!(status(&pool, devices[0]).await.failures, 0, "an unsupported block is not a failure");
    sim.shutdown().await;
}

/// A block that answered an exception is asked for again every ten polls on the same connection:
/// once the meter serves it again, its values come back and the device page stops listing it.
#[sqlx::test]
async fn a_refused_block_is_read_again_once_the_meter_serves_it(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let sim = Simulator::start(sim_config(1, Layout::PortPerMeter), app.clock.clone()).await.unwrap();
    sim.set_fault(0, Some(Fault::Exception { block_start: 0x4048, code: ExceptionCode::IllegalDataAddress }));
    let mut b = admin(&app).await;
    let devices = devices_for(&mut b, &sim.endpoints()).await;
    let page = format!("/devices/{}", devices[0]);
    let poller = Running::start(&app, pool.clone());
    wait_status(&pool, devices[0], "energy block marked unsupported", |s| s.unsupported == ["energy"]).await;
    more_readings(&pool, devices[0], 1).await;
    assert!(b.get(&page).await.body.contains("Blocks not supported"), "the page says what the meter refuses");

    let connections = sim.connections();
    sim.set_fault(0, None);
    let cleared = std::time::Instant::now();
    let cleared_at = Utc::now();
    wait_for("energy readings again", PATIENCE, || async {
        let rows = readings(&pool, devices[0]).await;
        rows.iter().any(|r| r.time > cleared_at && r.import_wh.is_some()).then_some(())
    })
    .await;
    // Ten polls of a 1 s device, plus a poll's worth of scheduling slack.
    let reprobe = Duration::from_secs(10);
    assert!(cleared.elapsed() <= reprobe + Duration::from_secs(2), "took {:?}", cleared.elapsed());
    wait_status(&pool, devices[0], "the block no longer listed", |s| s.unsupported.is_empty()).await;
    let body = b.get(&page).await.body;
    assert!(!body.contains("Blocks not supported"), "the page still lists a block the meter serves again");
    assert_eq!(sim.connections(), connections, "found again on the same connection, not by a reconnect");
    poller.stop().await;
    sim.shutdown().await;
}

/// What went wrong with a connection reads as words on the device page, not as an errno.
#[sqlx::test]
async fn a_failed_connection_is_described_in_words_on_the_device_page(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let sim = Simulator::start(sim_config(1, Layout::PortPerMeter), app.clock.clone()).await.unwrap();
    let (addr, _) = sim.endpoints()[0];
    let mut b = admin(&app).await;
    let devices = devices_for(&mut b, &sim.endpoints()).await;
    let page = format!("/devices/{}", devices[0]);
    let poller = Running::start(&app, pool.clone());
    more_readings(&pool, devices[0], 1).await;

    sim.set_fault(0, Some(Fault::ResetConnection));
    let s = wait_status(&pool, devices[0], "a failed poll", |s| s.failures > 0).await;
    let error = s.last_error.unwrap();
    assert!(error.starts_with("the meter or gateway reset the connection"), "{error}");
    let body = b.get(&page).await.body;
    assert!(body.contains("the meter or gateway reset the connection"), "the page shows the reason");
    assert!(!body.contains("os error"), "no errno on the page");

    sim.shutdown().await;
    let refused = format!("cannot connect to {addr}: connection refused (nothing listens on that port)");
    let s = wait_status(&pool, devices[0], "connection refused", |s| s.last_error.as_deref() == Some(&refused)).await;
    assert!(s.failures > 0);
    assert!(b.get(&page).await.body.contains(&refused), "the page says nothing listens there");
    poller.stop().await;
}

#[sqlx::test]
async fn counter_wrap_and_meter_reset_are_stored_as_the_meter_reports_them(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let sim = Simulator::start(sim_config(1, Layout::PortPerMeter), app.clock.clone()).await.unwrap();
    let mut b = admin(&app).await;
    let devices = devices_for(&mut b, &sim.endpoints()).await;
    let poller = Running::start(&app, pool.clone());
    more_readings(&pool, devices[0], 1).await;
    sim.set_fault(0, Some(Fault::MeterReset));
    wait_for("a counter near zero after the reset", PATIENCE, || async {
        let rows = readings(&pool, devices[0]).await;
        rows.last().and_then(|r| r.import_wh).is_some_and(|wh| wh < 1_000.0).then_some(())
    })
    .await;
    sim.set_fault(0, Some(Fault::CounterWrap));
    wait_for("a counter just below the wrap", PATIENCE, || async {
        let rows = readings(&pool, devices[0]).await;
        rows.last().and_then(|r| r.import_wh).is_some_and(|wh| wh > 99_999_000_000.0).then_some(())
    })
    .await;
    poller.stop().await;
    sim.shutdown().await;
}

#[sqlx::test]
async fn device_edits_take_effect_without_a_restart(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let sim = Simulator::start(sim_config(2, Layout::PortPerMeter), app.clock.clone()).await.unwrap();
    let endpoints = sim.endpoints();
    let mut b = admin(&app).await;
    let devices = devices_for(&mut b, &[endpoints[0], endpoints[0]]).await;
    let (device, witness) = (devices[0], devices[1]);
    let poller = Running::start(&app, pool.clone());
    more_readings(&pool, device, 1).await;

    // Move the device to the second meter: its readings now follow that meter's power.
    let url = format!("/devices/{device}/edit");
    let port = endpoints[1].0.port().to_string();
    let moved = [("modbus_host", "127.0.0.1"), ("modbus_port", port.as_str()), ("poll_interval_seconds", "1")];
    let res = post_device(&mut b, &url, "meter-0", &moved).await;
    assert_eq!(res.status, axum::http::StatusCode::SEE_OTHER, "{}", res.body);
    let edited_at = Utc::now();
    wait_for("readings from the second meter", PATIENCE, || async {
        let rows = readings(&pool, device).await;
        let last = rows.last()?;
        let from_second = last.time > edited_at
            && close(f64::from(last.p_total?), sim.primary_power_w(1, last.time), 0.01)
            && !close(f64::from(last.p_total?), sim.primary_power_w(0, last.time), 0.01);
        from_second.then_some(())
    })
    .await;

    // Disabled: polling stops, while the witness on the other meter goes on.
    let disabled = [("modbus_port", port.as_str()), ("poll_interval_seconds", "1"), ("enabled", "<absent>")];
    let res = post_device(&mut b, &url, "meter-0", &disabled).await;
    assert_eq!(res.status, axum::http::StatusCode::SEE_OTHER, "{}", res.body);
    let enabled: bool = sqlx::query_scalar(r#"SELECT "Enabled" FROM monitoring."Devices" WHERE "Id" = $1"#)
        .bind(device)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(!enabled, "the edit disabled the device");
    // A poll already in flight may still land; after that, three witness polls and nothing new.
    more_readings(&pool, witness, 2).await;
    let settled = reading_count(&pool, device).await;
    more_readings(&pool, witness, 3).await;
    assert_eq!(reading_count(&pool, device).await, settled, "a disabled device is not polled");
    poller.stop().await;
    sim.shutdown().await;
}

#[sqlx::test]
async fn readings_are_held_while_the_database_is_away_and_written_when_it_returns(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    // This test's process records the metrics (nextest runs each test in a process of its own).
    let metrics = tau_acuvim_portal::metrics::handle();
    let buffered = || {
        let page = metrics.render();
        let line = page.lines().find(|l| l.starts_with(r#"tau_portal_readings_buffered{source="modbus"}"#));
        line.and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    let sim = Simulator::start(sim_config(1, Layout::PortPerMeter), app.clock.clone()).await.unwrap();
    let mut b = admin(&app).await;
    let devices = devices_for(&mut b, &sim.endpoints()).await;
    // The poller reaches this test's database through a link the test can cut.
    let mut proxy = Proxy::new();
    proxy.restore().await;
    let database = pool.connect_options().get_database().unwrap().to_string();
    let poller_db = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(1))
        .connect_lazy_with(proxy.options().database(&database));
    let poller = Running::start(&app, poller_db);
    more_readings(&pool, devices[0], 2).await;

    proxy.cut();
    let cut_at = Utc::now();
    // Let the meter be polled four times (two requests each) with nowhere to write.
    let requests = sim.requests();
    wait_for("four polls during the outage", PATIENCE, || async { (sim.requests() >= requests + 8).then_some(()) })
        .await;
    assert!(buffered().is_some_and(|n| n >= 3.0), "the held readings are shown: {:?}", buffered());
    let restored_at = Utc::now();
    proxy.restore().await;
    wait_for("readings from the outage", PATIENCE, || async {
        let rows = readings(&pool, devices[0]).await;
        let during = rows.iter().filter(|r| r.time > cut_at && r.time < restored_at).count();
        (during >= 3).then_some(())
    })
    .await;
    wait_for("the buffer emptied", PATIENCE, || async { (buffered() == Some(0.0)).then_some(()) }).await;
    poller.stop().await;
    assert_aligned_and_unique(&readings(&pool, devices[0]).await);
    sim.shutdown().await;
}

/// A stored value of the device's newest reading, widened to f64.
async fn latest(db: &PgPool, device: i32, column: &str) -> Option<f64> {
    let sql = format!(
        r#"SELECT "{column}"::float8 FROM monitoring."PowerMeasurements" WHERE "DeviceId" = $1
           ORDER BY "Time" DESC LIMIT 1"#
    );
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(device).fetch_one(db).await.unwrap()
}

/// Polls the independent peer's image once and checks the stored values against the table in
/// tests/modbus/README.md (written by hand from the register words, not by our decoder).
async fn poll_peer(pool: PgPool, image: &str, expected: &[(&str, Option<f64>)], serial: &str) {
    let Some(peer) = ModbusPeer::start(image).await else { return };
    let app = TestApp::new(pool.clone()).await;
    let mut b = admin(&app).await;
    let devices = devices_for(&mut b, &[(peer.addr, PEER_UNIT_ID)]).await;
    let poller = Running::start(&app, pool.clone());
    more_readings(&pool, devices[0], 1).await;
    wait_status(&pool, devices[0], "identity stored", |s| s.identity.is_some()).await;
    poller.stop().await;
    for &(column, want) in expected {
        let got = latest(&pool, devices[0], column).await;
        let ok = match (got, want) {
            (Some(g), Some(w)) => (g - w).abs() <= 1e-6 * w.abs().max(1.0),
            (g, w) => g == w,
        };
        assert!(ok, "{image}: {column} stored as {got:?}, the image says {want:?}");
    }
    let s = status(&pool, devices[0]).await;
    assert_eq!(s.identity.unwrap()["serial"], serial, "{image}: V3 serial (the peer has no SunSpec block)");
    assert!(s.unsupported.is_empty(), "{image}: every block answered");
    peer.stop().await;
}

#[sqlx::test]
async fn the_independent_peer_primary_image_decodes_to_its_hand_written_values(pool: PgPool) {
    let expected = [
        ("Frequency", Some(50.0)),
        ("V1", Some(230.5)),
        ("V2", Some(229.75)),
        ("V3", Some(231.25)),
        ("V12", Some(399.5)),
        ("V31", Some(400.0)),
        ("I2", Some(9.75)),
        ("IN", Some(0.4375)),
        ("P1", Some(2189.75)),
        ("PTotal", Some(6570.0)),
        ("QTotal", Some(2159.0)),
        ("S2", Some(2240.0625)),
        ("STotal", Some(6915.375)),
        ("PF1", Some(f64::from(0.95f32))),
        ("PFTotal", Some(f64::from(0.950057f32))),
        ("DemandW", Some(6400.0)),
        ("DemandVar", Some(2100.0)),
        ("DemandVA", Some(6740.0)),
        ("EnergyImportWh", Some(12_345_678_900.0)),
        ("EnergyExportWh", Some(123_400.0)),
        ("ReactiveImportVarh", Some(4_567_890_100.0)),
        ("ReactiveExportVarh", Some(10_000.0)),
        ("ApparentVAh", Some(13_000_000_000.0)),
    ];
    poll_peer(pool, "primary-3ln", &expected, "PEER-3LN-001").await;
}

#[sqlx::test]
async fn the_independent_peer_secondary_image_is_scaled_by_its_pt_and_ct(pool: PgPool) {
    let expected = [
        ("Frequency", Some(f64::from(50.02f32))),
        ("V1", None),
        ("V12", Some(11_000.0)),
        ("V23", Some(10_975.0)),
        ("V31", Some(11_025.0)),
        ("I1", Some(160.0)),
        ("I2", Some(165.0)),
        ("I3", Some(155.0)),
        ("P1", None),
        ("PTotal", Some(2_744_000.0)),
        ("QTotal", Some(1_329_000.0)),
        ("STotal", Some(3_049_000.0)),
        ("PF1", None),
        ("PFTotal", Some(f64::from(0.899967f32))),
        ("DemandW", Some(2_600_000.0)),
        ("DemandVA", Some(2_900_000.0)),
        ("EnergyImportWh", Some(10_000_000.0)),
        ("EnergyExportWh", Some(35_000_000.0)),
        ("ReactiveImportVarh", Some(98_765_432_100.0)),
        ("ApparentVAh", Some(99_999_999_900.0)),
    ];
    poll_peer(pool, "secondary-3ll", &expected, "PEER-3LL-002").await;
}

/// The real binary's JSON log and metrics while the meter's connection misbehaves: an outage
/// is logged once when it starts and once when it ends (not at every reconnect), with how long it
/// lasted and how many connection attempts it took, in words rather than errnos; a gateway
/// closing idle connections afterwards costs no failed poll and no warning, only counted
/// disconnects.
#[tokio::test]
async fn the_portal_logs_an_outage_once_and_its_end_once() {
    let db = TestDb::create().await;
    let data = tempfile::tempdir().unwrap();
    let mut env = production_env(&db);
    env.extend([("Modbus__RequestTimeoutMilliseconds", "300".to_string()), ("Modbus__MaxBackoffSeconds", "1".into())]);
    let mut migrate = Portal::start(&["migrate"], &env, data.path());
    assert!(migrate.wait_exit(Duration::from_secs(60)).await.success());
    let sim = Simulator::start(sim_config(1, Layout::PortPerMeter), Clock::default()).await.unwrap();
    let (addr, _) = sim.endpoints()[0];
    let pool = db.pool().await;
    let (site, _) = site_with_devices(&pool, "Plant", "UTC", &[]).await;
    let device: i32 = sqlx::query_scalar(
        r#"INSERT INTO monitoring."Devices"
             ("SiteId", "ExternalId", "Name", "Model", "Source", "ModbusHost", "ModbusPort", "PollIntervalSeconds")
           VALUES ($1, 'meter-1', 'Meter 1', 'acuvim-ii', 'modbus-tcp', '127.0.0.1', $2, 1) RETURNING "Id""#,
    )
    .bind(site)
    .bind(i32::from(addr.port()))
    .fetch_one(&pool)
    .await
    .unwrap();
    let portal = Portal::start(&[], &env, data.path());
    portal.wait_listening().await;
    more_readings(&pool, device, 2).await;

    // An outage: every connection is reset, through several reconnects, then the meter is back.
    sim.set_fault(0, Some(Fault::ResetConnection));
    let connections = sim.connections();
    portal.wait_for_message("Poll of meter meter-1 failed", PATIENCE).await;
    wait_for("three more connection attempts", PATIENCE, || async {
        (sim.connections() >= connections + 3).then_some(())
    })
    .await;
    sim.set_fault(0, None);
    let back = portal.wait_for_message(&format!("Connected to {addr} again"), PATIENCE).await;
    more_readings(&pool, device, 2).await;
    let messages = portal.messages();
    let count = |needle: &str| messages.iter().filter(|m| m.contains(needle)).count();
    assert_eq!(count(&format!("Connected to {addr} again")), 1, "the end of the outage, once: {messages:#?}");
    assert_eq!(count(&format!("The connection to {addr} keeps failing")), 1, "its start, once: {messages:#?}");
    assert!(back["attempts"].as_u64().is_some_and(|n| n >= 2), "attempts: {back}");
    assert!(back["outage_seconds"].as_f64().is_some_and(|s| s > 0.5), "outage length: {back}");
    let failed = messages.iter().find(|m| m.starts_with("Poll of meter meter-1 failed: ")).unwrap();
    assert!(failed.contains("the meter or gateway reset the connection"), "{failed}");
    assert_eq!(count("Meter meter-1 answering again after"), 1, "{messages:#?}");
    assert!(portal.raw_lines().iter().all(|l| !l.contains("os error")), "no errno in the log");

    // Idle closes: reconnected within the slot, counted as disconnects, never as failed polls.
    let metric = |series: &'static str| {
        let url = format!("http://127.0.0.1:{}/metrics", portal.metrics_port);
        async move {
            let text = reqwest::get(url).await.unwrap().text().await.unwrap();
            text.lines().find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok()).unwrap_or(0.0)
        }
    };
    let (disconnects, failed_polls) =
        ("tau_portal_poll_disconnects_total", r#"tau_portal_polls_total{device="meter-1",result="failed"}"#);
    let (disconnected_before, failed_before) = (metric(disconnects).await, metric(failed_polls).await);
    let logged_before = portal.logs().len();
    sim.set_fault(0, Some(Fault::IdleClose(Duration::from_millis(400))));
    more_readings(&pool, device, 5).await;
    assert!(metric(disconnects).await >= disconnected_before + 2.0, "idle closes are counted as disconnects");
    assert_eq!(metric(failed_polls).await, failed_before, "a reconnect that reads within the slot is no failed poll");
    let modbus_warnings: Vec<_> = portal.logs()[logged_before..]
        .iter()
        .filter(|l| l["level"] == "WARN" && l["target"].as_str().is_some_and(|t| t.contains("modbus")))
        .cloned()
        .collect();
    assert!(modbus_warnings.is_empty(), "a routine reconnect is not worth a warning: {modbus_warnings:?}");
    assert_eq!(status(&pool, device).await.failures, 0);
    sim.shutdown().await;
}
