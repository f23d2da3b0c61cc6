//! Alarms through the real router, the real evaluator and the real database: communication loss
//! raised and cleared, thresholds with hold and hysteresis, rule management with field errors,
//! acknowledge and clear audited, the header count and the Overview, a database outage, and a
//! simulated meter whose plug is pulled while the real poller polls it.

use std::time::Duration;

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tau_acuvim_portal::alarms::evaluate::{Cycle, Evaluator};
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
