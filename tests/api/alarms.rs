//! Alarms through the real router, the real evaluator and the real database: communication loss
//! raised and cleared, thresholds with hold and hysteresis, rule management with field errors,
//! acknowledge and clear audited, the header count and the Overview, a database outage, a
//! simulated meter whose plug is pulled while the real poller polls it; a demand forecast over
//! its limit with hysteresis, a budget and a new maximum demand priced by the tariff engine, and
//! a data gap the real rollup estimated.

use std::time::Duration;

use axum::http::StatusCode;
use chrono::{DateTime, Datelike, TimeDelta, Utc};
use sqlx::PgPool;
use tau_acuvim_portal::alarms::evaluate::{Cycle, Evaluator};
use tau_acuvim_portal::alarms::rules;
use tau_acuvim_portal::measurements::energy::rollup;
use tau_acuvim_portal::measurements::{self, Quantity, Reading};
use tau_acuvim_portal::modbus::simulator::{Fault, Layout, Simulator};
use tokio_util::sync::CancellationToken;

use crate::helpers::{Browser, Proxy, TestApp, site_with_devices, wait_for};
use crate::sites::{admin, viewer};

const PATIENCE: Duration = Duration::from_secs(20);

fn evaluator(app: &TestApp) -> Evaluator {
    Evaluator::new(app.state.db.clone(), app.clock.clone(), app.state.alarms.clone())
}

async fn reading(db: &PgPool, device: i32, at: DateTime<Utc>, v1: f64) {
    sqlx::query(r#"INSERT INTO monitoring."PowerMeasurements" ("DeviceId", "Time", "V1", "PFTotal") VALUES ($1, $2, $3, -0.95)"#)
        .bind(device)
        .bind(at)
        .bind(v1 as f32)
        .execute(db)
        .await
        .unwrap();
}

#[derive(Debug, sqlx::FromRow)]
#[sqlx(rename_all = "PascalCase")]
struct Alarm {
    id: i64,
    rule_name: String,
    device_id: Option<i32>,
    ended_at: Option<DateTime<Utc>>,
    cleared_by: Option<String>,
    trigger_value: Option<f64>,
    clear_value: Option<f64>,
    acknowledged_by: Option<String>,
    ack_comment: Option<String>,
}

async fn alarms(db: &PgPool) -> Vec<Alarm> {
    sqlx::query_as(
        r#"SELECT "Id", "RuleName", "DeviceId", "EndedAt", "ClearedBy", "TriggerValue", "ClearValue",
                  "AcknowledgedBy", "AckComment" FROM alarms."Alarms" ORDER BY "Id""#,
    )
    .fetch_all(db)
    .await
    .unwrap()
}

async fn audit_actions(db: &PgPool, prefix: &str) -> Vec<(String, String)> {
    sqlx::query_as(
        r#"SELECT "Action", "ActorEmail" FROM identity."AuditLog" WHERE "Action" LIKE $1 || '%' ORDER BY "Id""#,
    )
    .bind(prefix)
    .fetch_all(db)
    .await
    .unwrap()
}

/// Turns the seeded communication-loss rule off (for tests of other rules).
async fn without_communication_loss(db: &PgPool) {
    sqlx::query(r#"UPDATE alarms."Rules" SET "Enabled" = false WHERE "Kind" = 'communication-loss'"#)
        .execute(db)
        .await
        .unwrap();
}

/// Posts a form that needs the CSRF token of `form_page`.
async fn submit(b: &mut Browser, form_page: &str, url: &str, fields: &[(&str, &str)]) -> crate::helpers::Reply {
    let csrf = b.get(form_page).await.csrf();
    let mut all = vec![("csrf", csrf.as_str())];
    all.extend_from_slice(fields);
    b.post(url, &all).await
}

fn header_count(body: &str) -> Option<u32> {
    let at = body.find("alarm-count")?;
    let rest = &body[at..];
    let start = rest.find('>')? + 1;
    rest[start..rest.find("</span>")?].trim().parse().ok()
}

#[sqlx::test]
async fn communication_loss_raises_one_alarm_and_clears_when_readings_return(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let mut b = admin(&app).await;
    let (_, devices) = site_with_devices(&pool, "Plant", "Africa/Johannesburg", &["m1", "m2"]).await;
    for &d in &devices {
        reading(&pool, d, app.clock.now(), 230.0).await;
    }
    let mut ev = evaluator(&app);
    assert_eq!(ev.cycle().await.unwrap(), Cycle::default(), "fresh readings: nothing to raise");

    // Three poll intervals of 60 s without a reading from m1 (m2 keeps reporting).
    app.clock.advance(Duration::from_secs(181));
    reading(&pool, devices[1], app.clock.now(), 230.0).await;
    assert_eq!(ev.cycle().await.unwrap(), Cycle { raised: 1, ended: 0 });
    assert_eq!(ev.cycle().await.unwrap(), Cycle::default(), "still silent: the same alarm, not another");
    let raised = alarms(&pool).await;
    assert_eq!(raised.len(), 1);
    assert_eq!((raised[0].rule_name.as_str(), raised[0].device_id), ("Communication loss", Some(devices[0])));
    assert!(raised[0].trigger_value.unwrap() > 180.0, "the silence that raised it: {:?}", raised[0].trigger_value);

    // Every page's header counts it; the Overview and the Alarms page list it.
    let overview = b.get("/").await;
    assert_eq!(header_count(&overview.body), Some(1), "{}", overview.body);
    assert!(overview.body.contains("Active alarms") && overview.body.contains("Plant › m1"), "{}", overview.body);
    let list = b.get("/alarms?state=active").await;
    assert!(list.body.contains("No reading for 3 min 1 s"), "{}", list.body);

    // Readings return: the alarm ends by itself.
    reading(&pool, devices[0], app.clock.now(), 230.0).await;
    assert_eq!(ev.cycle().await.unwrap(), Cycle { raised: 0, ended: 1 });
    let ended = alarms(&pool).await;
    assert_eq!(ended[0].cleared_by.as_deref(), Some("condition"));
    assert!(ended[0].ended_at.is_some());
    let overview = b.get("/").await;
    assert_eq!(header_count(&overview.body), None, "no open alarm, no count");
    assert!(overview.body.contains("No open alarms"));
    let history = b.get("/alarms?state=history").await;
    assert!(history.body.contains("the condition recovered"), "{}", history.body);
}

/// A whole plant going silent and coming back: one cycle raises (and one ends) every device's
/// alarm, each with its event queued for the recipient list at its own time.
#[sqlx::test]
async fn a_plant_going_silent_raises_every_alarm_in_one_cycle_and_queues_each_event(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let names: Vec<String> = (0..40).map(|i| format!("m{i:02}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let (_, devices) = site_with_devices(&pool, "Plant", "Africa/Johannesburg", &names).await;
    sqlx::query(
        r#"INSERT INTO alarms."RecipientLists" ("Name", "Emails", "WebhookSecret", "MinSeverity", "TimeZone")
           VALUES ('Operators', '{ops@example.com}', 'secret', 'warning', 'UTC')"#,
    )
    .execute(&pool)
    .await
    .unwrap();
    for &d in &devices {
        reading(&pool, d, app.clock.now(), 230.0).await;
    }
    let mut ev = evaluator(&app);
    assert_eq!(ev.cycle().await.unwrap(), Cycle::default());
    let outbox = |event: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, (i64, DateTime<Utc>)>(
                r#"SELECT o."AlarmId", o."At" FROM alarms."Outbox" o WHERE o."Event" = $1 ORDER BY o."AlarmId""#,
            )
            .bind(event)
            .fetch_all(&pool)
            .await
            .unwrap()
        }
    };

    app.clock.advance(Duration::from_secs(181));
    assert_eq!(ev.cycle().await.unwrap(), Cycle { raised: 40, ended: 0 });
    let raised = alarms(&pool).await;
    let mut silent: Vec<i32> = raised.iter().filter_map(|a| a.device_id).collect();
    silent.sort_unstable();
    assert_eq!(silent, devices, "one alarm per device");
    let started: Vec<(i64, DateTime<Utc>)> =
        sqlx::query_as(r#"SELECT "Id", "StartedAt" FROM alarms."Alarms" ORDER BY "Id""#)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(outbox("raised").await, started, "each alarm's event at its own start");
    assert_eq!(ev.cycle().await.unwrap(), Cycle::default(), "still silent: no second alarm");

    for &d in &devices {
        reading(&pool, d, app.clock.now(), 230.0).await;
    }
    assert_eq!(ev.cycle().await.unwrap(), Cycle { raised: 0, ended: 40 });
    assert!(alarms(&pool).await.iter().all(|a| a.ended_at.is_some() && a.cleared_by.as_deref() == Some("condition")));
    let ended: Vec<(i64, DateTime<Utc>)> =
        sqlx::query_as(r#"SELECT "Id", "EndedAt" FROM alarms."Alarms" ORDER BY "Id""#).fetch_all(&pool).await.unwrap();
    assert_eq!(outbox("cleared").await, ended, "each alarm's event at its own end");
}

#[sqlx::test]
async fn a_threshold_raises_after_its_hold_ignores_the_band_and_clears_after_recovery(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    without_communication_loss(&pool).await;
    let mut b = admin(&app).await;
    let (_, devices) = site_with_devices(&pool, "Plant", "UTC", &["m1"]).await;
    let scope = format!("device:{}", devices[0]);
    let res = submit(
        &mut b,
        "/settings/alarm-rules/new",
        "/settings/alarm-rules/new",
        &[
            ("name", "Hot bus"),
            ("kind", "threshold"),
            ("severity", "critical"),
            ("enabled", "on"),
            ("scope", &scope),
            ("quantity", "voltageLN"),
            ("direction", "above"),
            ("nominal", "230"),
            ("limit", "10"),
            ("hysteresis", "2"),
            ("hold_seconds", "60"),
        ],
    )
    .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    let mut ev = evaluator(&app);
    // (seconds later, V1, alarms raised and ended by the cycle): limit 253 V, clear at 248.4 V.
    let steps: [(u64, f64, Cycle); 8] = [
        (0, 260.0, Cycle::default()),               // pending
        (30, 252.0, Cycle::default()),              // break in the breach: starts over
        (10, 261.0, Cycle::default()),              // pending again
        (59, 262.0, Cycle::default()),              // 59 s: not yet
        (1, 263.0, Cycle { raised: 1, ended: 0 }),  // 60 s above 253 V
        (20, 250.0, Cycle::default()),              // in the band: no clear
        (10, 240.0, Cycle::default()),              // recovering
        (60, 241.0, Cycle { raised: 0, ended: 1 }), // recovered for 60 s
    ];
    for (i, (later, v1, want)) in steps.into_iter().enumerate() {
        app.clock.advance(Duration::from_secs(later));
        reading(&pool, devices[0], app.clock.now(), v1).await;
        assert_eq!(ev.cycle().await.unwrap(), want, "step {i}: {v1} V");
        assert_eq!(ev.cycle().await.unwrap(), Cycle::default(), "step {i}: the same reading again changes nothing");
    }
    let all = alarms(&pool).await;
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!((all[0].trigger_value, all[0].clear_value), (Some(263.0), Some(241.0)));
    let page = b.get(&format!("/alarms/{}", all[0].id)).await;
    assert!(page.body.contains("263.0 V") && page.body.contains("above the limit of 253.0 V"), "{}", page.body);
}

#[sqlx::test]
async fn rules_are_managed_by_admins_with_errors_per_field_and_audited(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let mut b = admin(&app).await;
    let rules_before: i64 =
        sqlx::query_scalar(r#"SELECT count(*) FROM alarms."Rules""#).fetch_one(&pool).await.unwrap();
    let list = b.get("/settings/alarm-rules").await;
    assert!(
        list.body.contains("Communication loss") && list.body.contains("No reading for 3 poll intervals"),
        "{}",
        list.body
    );

    let bad = submit(
        &mut b,
        "/settings/alarm-rules/new",
        "/settings/alarm-rules/new",
        &[
            ("name", "Communication LOSS"),
            ("kind", "threshold"),
            ("severity", "major"),
            ("scope", "all"),
            ("quantity", "voltageLN"),
            ("direction", "above"),
            ("nominal", "230"),
            ("limit", "ten"),
            ("hysteresis", "-1"),
            ("hold_seconds", "2.5"),
        ],
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    for message in ["ten is not a number", "The hysteresis is 0 or more.", "2.5 is not a hold time in seconds"] {
        assert!(bad.body.contains(message), "{message}: {}", bad.body);
    }
    assert!(bad.body.contains(r#"value="ten""#), "the form keeps what was typed");
    // The name clashes only once the rest is valid (the database decides).
    let taken = submit(
        &mut b,
        "/settings/alarm-rules/new",
        "/settings/alarm-rules/new",
        &[
            ("name", "communication loss"),
            ("kind", "communication-loss"),
            ("severity", "major"),
            ("scope", "all"),
            ("missed_polls", "5"),
            ("hold_seconds", "0"),
        ],
    )
    .await;
    assert_eq!(taken.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(taken.body.contains("A rule with this name already exists."), "{}", taken.body);
    let gone = submit(
        &mut b,
        "/settings/alarm-rules/new",
        "/settings/alarm-rules/new",
        &[
            ("name", "Ghost"),
            ("kind", "communication-loss"),
            ("severity", "major"),
            ("scope", "device:99999"),
            ("missed_polls", "5"),
            ("hold_seconds", "0"),
        ],
    )
    .await;
    assert!(gone.body.contains("no longer exists"), "{}", gone.body);
    let count: i64 = sqlx::query_scalar(r#"SELECT count(*) FROM alarms."Rules""#).fetch_one(&pool).await.unwrap();
    assert_eq!(count, rules_before, "refused forms store nothing");

    let ok = submit(
        &mut b,
        "/settings/alarm-rules/new",
        "/settings/alarm-rules/new",
        &[
            ("name", "Slow silence"),
            ("kind", "communication-loss"),
            ("severity", "warning"),
            ("enabled", "on"),
            ("scope", "all"),
            ("missed_polls", "10"),
            ("hold_seconds", "0"),
        ],
    )
    .await;
    assert_eq!(ok.location(), "/settings/alarm-rules?notice=alarm-rule-saved");
    let id: i32 = sqlx::query_scalar(r#"SELECT "Id" FROM alarms."Rules" WHERE "Name" = 'Slow silence'"#)
        .fetch_one(&pool)
        .await
        .unwrap();
    let edit = format!("/settings/alarm-rules/{id}/edit");
    let saved = submit(
        &mut b,
        &edit,
        &edit,
        &[
            ("name", "Slow silence"),
            ("kind", "communication-loss"),
            ("severity", "minor"),
            ("scope", "all"),
            ("missed_polls", "12"),
            ("hold_seconds", "0"),
        ],
    )
    .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let (severity, enabled): (String, bool) =
        sqlx::query_as(r#"SELECT "Severity", "Enabled" FROM alarms."Rules" WHERE "Id" = $1"#)
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((severity.as_str(), enabled), ("minor", false), "unticked: disabled");
    let delete = format!("/settings/alarm-rules/{id}/delete");
    assert!(b.get(&delete).await.body.contains("Delete the rule Slow silence?"));
    assert_eq!(submit(&mut b, &delete, &delete, &[]).await.status, StatusCode::SEE_OTHER);
    assert_eq!(
        audit_actions(&pool, "alarm-rule.").await,
        [
            ("alarm-rule.created", "admin@example.com"),
            ("alarm-rule.updated", "admin@example.com"),
            ("alarm-rule.deleted", "admin@example.com")
        ]
        .map(|(a, e)| (a.to_string(), e.to_string()))
    );

    // A viewer may see alarms but not manage rules.
    let mut v = viewer(&app, &mut b).await;
    assert_eq!(v.get("/settings/alarm-rules").await.status, StatusCode::FORBIDDEN);
    assert_eq!(v.get("/alarms").await.status, StatusCode::OK);
}

#[sqlx::test]
async fn acknowledge_and_clear_are_recorded_and_audited(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let mut b = admin(&app).await;
    site_with_devices(&pool, "Plant", "UTC", &["m1"]).await;
    app.clock.advance(Duration::from_secs(600));
    let mut ev = evaluator(&app);
    assert_eq!(ev.cycle().await.unwrap().raised, 1, "never reported since it was added");
    let id = alarms(&pool).await[0].id;
    let page = format!("/alarms/{id}");
    let ack = format!("/alarms/{id}/acknowledge");

    let mut v = viewer(&app, &mut b).await;
    let long = "x".repeat(501);
    let refused = submit(&mut v, &page, &ack, &[("comment", &long)]).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.body.contains("Use at most 500 characters."), "{}", refused.body);
    assert_eq!(alarms(&pool).await[0].acknowledged_by, None, "nothing stored");

    let done = submit(&mut v, &page, &ack, &[("comment", "Electrician on the way")]).await;
    assert_eq!(done.location(), format!("/alarms/{id}?notice=alarm-acknowledged"));
    let again = submit(&mut b, &page, &ack, &[("comment", "me too")]).await;
    assert_eq!(again.location(), format!("/alarms/{id}?notice=alarm-already-acknowledged"));
    let a = &alarms(&pool).await[0];
    assert_eq!(
        (a.acknowledged_by.as_deref(), a.ack_comment.as_deref()),
        (Some("viewer@example.com"), Some("Electrician on the way"))
    );
    assert!(v.get(&page).await.body.contains("viewer@example.com at"), "the page says who");

    let cleared = submit(&mut v, &page, &format!("/alarms/{id}/clear"), &[("comment", "")]).await;
    assert_eq!(cleared.location(), format!("/alarms/{id}?notice=alarm-cleared"));
    assert_eq!(alarms(&pool).await[0].cleared_by.as_deref(), Some("viewer@example.com"));
    // Still silent: a hand-cleared alarm is not raised again until it recovered and breached.
    app.clock.advance(Duration::from_secs(60));
    assert_eq!(ev.cycle().await.unwrap(), Cycle::default());
    assert_eq!(
        audit_actions(&pool, "alarm.").await,
        [("alarm.acknowledged", "viewer@example.com"), ("alarm.cleared", "viewer@example.com")]
            .map(|(a, e)| (a.to_string(), e.to_string()))
    );
}

#[sqlx::test]
async fn disabling_a_rule_or_a_device_ends_its_alarms(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let (_, devices) = site_with_devices(&pool, "Plant", "UTC", &["m1", "m2"]).await;
    app.clock.advance(Duration::from_secs(600));
    let mut ev = evaluator(&app);
    assert_eq!(ev.cycle().await.unwrap().raised, 2);
    sqlx::query(r#"UPDATE monitoring."Devices" SET "Enabled" = false WHERE "Id" = $1"#)
        .bind(devices[1])
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(ev.cycle().await.unwrap(), Cycle { raised: 0, ended: 1 });
    let ended = alarms(&pool).await;
    assert_eq!(ended[1].cleared_by.as_deref(), Some("rule"), "{ended:?}");
    let mut b = admin(&app).await;
    let id: i32 = sqlx::query_scalar(r#"SELECT "Id" FROM alarms."Rules" WHERE "Kind" = 'communication-loss'"#)
        .fetch_one(&pool)
        .await
        .unwrap();
    let edit = format!("/settings/alarm-rules/{id}/edit");
    let res = submit(
        &mut b,
        &edit,
        &edit,
        &[
            ("name", "Communication loss"),
            ("kind", "communication-loss"),
            ("severity", "major"),
            ("scope", "all"),
            ("missed_polls", "3"),
            ("hold_seconds", "0"),
        ],
    )
    .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    assert!(alarms(&pool).await.iter().all(|a| a.ended_at.is_some()), "the change ended the rule's alarms");
    assert_eq!(ev.cycle().await.unwrap(), Cycle::default(), "a disabled rule raises nothing");
    assert_eq!(header_count(&b.get("/alarms").await.body), None);
}

#[sqlx::test]
async fn the_evaluator_survives_the_database_going_away(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    site_with_devices(&pool, "Plant", "UTC", &["m1"]).await;
    let mut proxy = Proxy::new();
    proxy.restore().await;
    let database = pool.connect_options().get_database().unwrap().to_string();
    let db = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(1))
        .connect_lazy_with(proxy.options().database(&database));
    let mut ev = Evaluator::new(db.clone(), app.clock.clone(), app.state.alarms.clone());
    ev.every = Duration::from_millis(100);
    proxy.cut();
    app.clock.advance(Duration::from_secs(600));
    assert!(ev.cycle().await.is_err(), "no database: the cycle fails and writes nothing");
    // As the task: it keeps trying, and raises the alarm once the database is back.
    let stop = CancellationToken::new();
    let task = tokio::spawn(ev.run(stop.clone()));
    proxy.restore().await;
    wait_for("the alarm after the outage", PATIENCE, || async { (!alarms(&pool).await.is_empty()).then_some(()) })
        .await;
    wait_for("the header count", PATIENCE, || async { (app.state.alarms.count() == 1).then_some(()) }).await;
    stop.cancel();
    tokio::time::timeout(PATIENCE, task).await.expect("the evaluator stops when cancelled").unwrap();
}

#[sqlx::test]
async fn pulling_a_simulated_meters_plug_raises_an_alarm_and_plugging_it_in_clears_it(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let sim = Simulator::start(crate::poller::sim_config(1, Layout::PortPerMeter), app.clock.clone()).await.unwrap();
    let mut b = admin(&app).await;
    let devices = crate::poller::devices_for(&mut b, &sim.endpoints()).await;
    let poller = crate::poller::Running::start(&app, pool.clone());
    let mut ev = evaluator(&app);
    ev.every = Duration::from_millis(200);
    let stop = CancellationToken::new();
    let task = tokio::spawn(ev.run(stop.clone()));
    wait_for("a first reading", PATIENCE, || async {
        let n: i64 = sqlx::query_scalar(r#"SELECT count(*) FROM monitoring."PowerMeasurements" WHERE "DeviceId" = $1"#)
            .bind(devices[0])
            .fetch_one(&pool)
            .await
            .unwrap();
        (n > 0).then_some(())
    })
    .await;
    sim.set_fault(0, Some(Fault::NoReply));
    let raised = wait_for("the communication-loss alarm", PATIENCE, || async {
        alarms(&pool).await.into_iter().find(|a| a.ended_at.is_none())
    })
    .await;
    assert_eq!(raised.device_id, Some(devices[0]));
    assert!(b.get("/").await.body.contains("Communication loss"), "on the Overview");
    sim.set_fault(0, None);
    wait_for("the alarm cleared", PATIENCE, || async {
        alarms(&pool).await.into_iter().find(|a| a.cleared_by.as_deref() == Some("condition"))
    })
    .await;
    assert_eq!(alarms(&pool).await.len(), 1, "one alarm for one outage");
    stop.cancel();
    tokio::time::timeout(PATIENCE, task).await.unwrap().unwrap();
    poller.stop().await;
    sim.shutdown().await;
}

/// A reading of total active power only (W).
async fn power(db: &PgPool, device: i32, at: DateTime<Utc>, watts: f64) {
    sqlx::query(r#"INSERT INTO monitoring."PowerMeasurements" ("DeviceId", "Time", "PTotal") VALUES ($1, $2, $3)"#)
        .bind(device)
        .bind(at)
        .bind(watts as f32)
        .execute(db)
        .await
        .unwrap();
}

/// Moves the test clock just past `t` (it runs on with the wall clock from there).
fn advance_to(app: &TestApp, t: DateTime<Utc>) {
    let now = app.clock.now();
    if t >= now {
        app.clock.advance((t - now).to_std().unwrap() + Duration::from_millis(1));
    }
}

#[sqlx::test]
async fn a_demand_forecast_crosses_the_limit_before_the_window_ends_and_hysteresis_keeps_it_from_flapping(
    pool: PgPool,
) {
    let app = TestApp::new(pool.clone()).await;
    without_communication_loss(&pool).await;
    let mut b = admin(&app).await;
    let (site, devices) = site_with_devices(&pool, "Plant", "UTC", &["m1", "m2", "m1-feeder"]).await;
    // A sub-meter of m1 (issue 15's hierarchy): its 250 kW are part of m1's, never added again.
    sqlx::query(r#"UPDATE monitoring."Devices" SET "Role" = 'sub', "ParentId" = $1 WHERE "Id" = $2"#)
        .bind(devices[0])
        .bind(devices[2])
        .execute(&pool)
        .await
        .unwrap();
    let scope = format!("site:{site}");
    let rule = [
        ("name", "Peak demand"),
        ("kind", "demand-limit"),
        ("severity", "critical"),
        ("enabled", "on"),
        ("unit", "kW"),
        ("limit", "300"),
        ("hysteresis", "20"),
        ("hold_seconds", "0"),
    ];
    // A device is not a site: the form says so and stores nothing.
    let device_scope = format!("device:{}", devices[0]);
    let mut fields = rule.to_vec();
    fields.push(("scope", &device_scope));
    let refused = submit(&mut b, "/settings/alarm-rules/new", "/settings/alarm-rules/new", &fields).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.body.contains("This kind of rule watches sites"), "{}", refused.body);
    let mut fields = rule.to_vec();
    fields.push(("scope", &scope));
    let res = submit(&mut b, "/settings/alarm-rules/new", "/settings/alarm-rules/new", &fields).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);

    // Start at the beginning of a 15-minute window (no tariff: the default window).
    let (_, start) = rules::demand_window(app.clock.now(), chrono_tz::UTC, 15);
    advance_to(&app, start);
    let mut ev = evaluator(&app);
    // (seconds into the window, m1 kW, m2 kW, what the cycle does). Limit 300 kW, cleared at
    // 280 kW or less. Forecast = energy so far + the newest power held to the window's end.
    let steps: [(i64, f64, f64, Cycle); 6] = [
        (0, 100.0, 100.0, Cycle::default()),   // 200 kW forecast
        (240, 100.0, 100.0, Cycle::default()), // still 200
        // m1 steps up to 300 kW at minute 5: (100·5 + 300·10) / 15 + 100 = 333 kW, 10 min left.
        (300, 300.0, 100.0, Cycle { raised: 1, ended: 0 }),
        // m1 down to 230 kW at minute 6: (100·5 + 300·1 + 230·9) / 15 + 100 = 291.3, in the band.
        (360, 230.0, 100.0, Cycle::default()),
        (400, 230.0, 100.0, Cycle::default()), // in the band: no clear, no flapping
        (480, 100.0, 100.0, Cycle { raised: 0, ended: 1 }), // (500 + 300 + 230·2 + 100·7)/15 + 100 = 230.7
    ];
    for (i, (at, m1, m2, want)) in steps.into_iter().enumerate() {
        let t = start + TimeDelta::seconds(at);
        advance_to(&app, t);
        power(&pool, devices[0], t, m1 * 1000.0).await;
        power(&pool, devices[1], t, m2 * 1000.0).await;
        power(&pool, devices[2], t, 250_000.0).await;
        assert_eq!(ev.cycle().await.unwrap(), want, "step {i}: {m1} + {m2} kW at {at} s");
        assert_eq!(ev.cycle().await.unwrap(), Cycle::default(), "step {i}: again, nothing");
    }
    #[derive(sqlx::FromRow)]
    #[sqlx(rename_all = "PascalCase")]
    struct Demand {
        device_id: Option<i32>,
        started_at: DateTime<Utc>,
        trigger_value: Option<f64>,
        message: String,
        details: serde_json::Value,
    }
    let all: Vec<Demand> =
        sqlx::query_as(r#"SELECT "DeviceId", "StartedAt", "TriggerValue", "Message", "Details" FROM alarms."Alarms""#)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(all.len(), 1, "one alarm, raised once and ended once");
    let a = &all[0];
    assert_eq!(a.device_id, None, "a site alarm");
    assert_eq!(a.started_at, start + TimeDelta::minutes(5), "raised five minutes into the window");
    assert!(a.started_at < start + TimeDelta::minutes(15), "while there was time to shed load");
    assert!((a.trigger_value.unwrap() - 1000.0 / 3.0).abs() < 0.01, "{:?}", a.trigger_value);
    assert_eq!(a.details["secondsLeft"], 600.0);
    assert!(a.message.contains("forecast at 333.3 kW, above the limit of 300 kW: 10 min left"), "{}", a.message);
}

#[sqlx::test]
async fn a_demand_limit_rule_without_a_limit_watches_each_site_at_its_notified_maximum_demand(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    without_communication_loss(&pool).await;
    let mut b = admin(&app).await;
    let (contracted, a) = site_with_devices(&pool, "Contracted", "UTC", &["a1"]).await;
    let (_, other) = site_with_devices(&pool, "No NMD", "UTC", &["b1"]).await;
    // The NMD entered on the site form: 250 kW.
    let edit = format!("/sites/{contracted}/edit");
    let fields = [("name", "Contracted"), ("time_zone", "UTC"), ("nmd", "250"), ("nmd_unit", "kW")];
    let res = submit(&mut b, &edit, &edit, &fields).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    // A rule of every site without a limit of its own: the form takes it.
    let rule = [
        ("name", "Contracted demand"),
        ("kind", "demand-limit"),
        ("severity", "major"),
        ("enabled", "on"),
        ("unit", "kVA"),
        ("limit", ""),
        ("hysteresis", "10"),
        ("hold_seconds", "0"),
        ("scope", "all"),
    ];
    let res = submit(&mut b, "/settings/alarm-rules/new", "/settings/alarm-rules/new", &rule).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    let rules_page = b.get("/settings/alarm-rules").await;
    assert!(rules_page.body.contains("Demand window forecast above the site"), "{}", rules_page.body);

    let (_, start) = rules::demand_window(app.clock.now(), chrono_tz::UTC, 15);
    advance_to(&app, start);
    let mut ev = evaluator(&app);
    // 200 kW on both: below the 250 kW NMD, and the other site has no limit at all.
    power(&pool, a[0], start, 200_000.0).await;
    power(&pool, other[0], start, 900_000.0).await;
    assert_eq!(ev.cycle().await.unwrap(), Cycle::default(), "200 kW is below the NMD; no NMD, not watched");
    // 270 kW from minute 1: (200·1 + 270·14) / 15 = 265.3 kW forecast, above 250 (in kW: the NMD's
    // unit, not the rule's kVA).
    let t = start + TimeDelta::minutes(1);
    advance_to(&app, t);
    power(&pool, a[0], t, 270_000.0).await;
    power(&pool, other[0], t, 900_000.0).await;
    assert_eq!(ev.cycle().await.unwrap(), Cycle { raised: 1, ended: 0 });
    let (site, message, details): (i32, String, serde_json::Value) =
        sqlx::query_as(r#"SELECT "SiteId", "Message", "Details" FROM alarms."Alarms""#).fetch_one(&pool).await.unwrap();
    assert_eq!(site, contracted);
    assert!(
        message.contains("forecast at 265.3 kW, above the limit of 250 kW (the site's notified maximum demand)"),
        "{message}"
    );
    assert_eq!((details["limitSource"].as_str(), details["unit"].as_str()), (Some("nmd"), Some("kW")));
}

#[sqlx::test]
async fn a_budget_and_a_new_maximum_demand_are_priced_by_the_sites_tariff(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    without_communication_loss(&pool).await;
    let mut b = admin(&app).await;
    let (site, devices) = site_with_devices(&pool, "Plant", "UTC", &["m1"]).await;
    // A flat 2.00 per kWh and 100.00 per kW of the month's highest 30-minute demand, no VAT.
    let tariff = serde_json::json!({
        "name": "Business", "versions": [{
            "effective_from": "2020-01-01", "energy": {"kind": "flat", "rate": "2.00"},
            "demand": {"unit": "kW", "window_minutes": 30, "rate": "100.00"}
        }]
    });
    let tariff_id: i32 = sqlx::query_scalar(
        r#"WITH m AS (INSERT INTO portal."Municipalities" ("Name", "Currency", "VatPercent") VALUES ('Town', 'ZAR', 0) RETURNING "Id")
           INSERT INTO portal."Tariffs" ("MunicipalityId", "Name", "Definition") SELECT "Id", 'Business', $1 FROM m RETURNING "Id""#,
    )
    .bind(&tariff)
    .fetch_one(&pool)
    .await
    .unwrap();
    sqlx::query(
        r#"INSERT INTO portal."SiteTariffs" ("SiteId", "EffectiveFrom", "TariffId") VALUES ($1, '2020-01-01', $2)"#,
    )
    .bind(site)
    .bind(tariff_id)
    .execute(&pool)
    .await
    .unwrap();
    let res = submit(
        &mut b,
        "/settings/alarm-rules/new",
        "/settings/alarm-rules/new",
        &[
            ("name", "Monthly budget"),
            ("kind", "budget"),
            ("severity", "major"),
            ("enabled", "on"),
            ("scope", &format!("site:{site}")),
            ("basis", "to-date"),
            ("limit", "10000"),
            ("hysteresis", "0"),
            ("hold_seconds", "0"),
        ],
    )
    .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);

    // The 2nd of next month, 10:04 UTC: the 09:30–10:00 window is complete (and settled).
    let now = app.clock.now();
    let month = chrono::NaiveDate::from_ymd_opt(now.year(), now.month(), 1).unwrap() + chrono::Months::new(1);
    let month_start = month.and_hms_opt(0, 0, 0).unwrap().and_utc();
    let at = month_start + TimeDelta::days(1) + TimeDelta::hours(10) + TimeDelta::minutes(4);
    advance_to(&app, at);
    // 10 kWh per 15 minutes (40 kW) from the 1st, then 20 kWh twice from 09:30 (80 kW).
    let high = at - TimeDelta::minutes(34);
    let last = at - TimeDelta::minutes(19);
    crate::tariffs::meter_energy(&app, devices[0], &month_start.to_rfc3339(), &last.to_rfc3339(), |t| {
        let wh = if t >= high { 20_000.0 } else { 10_000.0 };
        (wh, 0.0, wh)
    })
    .await;
    let mut ev = evaluator(&app);
    assert_eq!(ev.cycle().await.unwrap(), Cycle { raised: 2, ended: 0 });
    assert_eq!(ev.cycle().await.unwrap(), Cycle::default(), "each told once");
    #[derive(sqlx::FromRow)]
    #[sqlx(rename_all = "PascalCase")]
    struct Priced {
        rule_name: String,
        site_id: i32,
        message: String,
        details: serde_json::Value,
    }
    let all: Vec<Priced> =
        sqlx::query_as(r#"SELECT "RuleName", "SiteId", "Message", "Details" FROM alarms."Alarms" ORDER BY "RuleName""#)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(all.iter().all(|a| a.site_id == site));
    // 134 intervals of 10 kWh and 2 of 20 kWh: 1 380 kWh × 2.00 + 80 kW × 100.00.
    assert_eq!(all[0].rule_name, "Monthly budget");
    assert!(
        all[0].message.contains("is ZAR 10760.00 (with VAT), above the budget of ZAR 10000.00"),
        "{}",
        all[0].message
    );
    assert_eq!(all[1].rule_name, "New maximum demand");
    assert!(
        all[1].message.contains("80 kW") && all[1].message.contains("the highest before was 40 kW"),
        "{}",
        all[1].message
    );
    assert!(all[1].message.contains("raises the demand charge by ZAR 4000.00 to ZAR 8000.00"), "{}", all[1].message);
    assert_eq!(all[1].details["costImpact"], "4000.00");
    // Half an hour on without a higher window: no new maximum.
    app.clock.advance(Duration::from_secs(1800));
    assert_eq!(ev.cycle().await.unwrap(), Cycle::default());
}

#[sqlx::test]
async fn a_data_gap_the_rollup_estimated_is_reported_once_with_its_start_and_end(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    without_communication_loss(&pool).await;
    let (_, devices) = site_with_devices(&pool, "Plant", "UTC", &["m1"]).await;
    let (start, _) = rules::demand_window(app.clock.now() - TimeDelta::hours(6), chrono_tz::UTC, 15);
    // A reading every 5 minutes for an hour, none for the next hour, then again for half an hour.
    let mut readings = Vec::new();
    for minutes in (0..=60).step_by(5).chain((120..=150).step_by(5)) {
        let mut r = Reading::empty(devices[0], start + TimeDelta::minutes(minutes));
        r.set(Quantity::named("energyImportWh").unwrap(), Some(f64::from(minutes as i32) * 100.0));
        readings.push(r);
    }
    measurements::write(&pool, &readings).await.unwrap();
    rollup::run_once(&pool, app.clock.now()).await.unwrap();
    let mut ev = evaluator(&app);
    assert_eq!(ev.cycle().await.unwrap(), Cycle { raised: 1, ended: 0 });
    assert_eq!(ev.cycle().await.unwrap(), Cycle::default(), "reported once");
    let all = alarms(&pool).await;
    assert_eq!(all.len(), 1);
    assert_eq!((all[0].rule_name.as_str(), all[0].device_id), ("Data gap", Some(devices[0])));
    assert_eq!(all[0].ended_at, Some(start + TimeDelta::hours(2)), "ended where the readings resumed");
    assert_eq!(all[0].cleared_by.as_deref(), Some("condition"));
    let started: DateTime<Utc> =
        sqlx::query_scalar(r#"SELECT "StartedAt" FROM alarms."Alarms""#).fetch_one(&pool).await.unwrap();
    assert_eq!(started, start + TimeDelta::hours(1));
}
