//! Alarm notifications against real peers (tests/notify/peers.py): aiosmtpd receives the mails
//! over SMTP, a Python HTTP server the webhooks, checking each signature with Python's own hmac.
//! A meter of the simulator stops answering → one alarm, one mail, one signed webhook; it
//! returns → cleared, one mail. Digests, quiet hours, retries, a server that never answers, and
//! the deliveries page. Skipped when `TAU_TEST_NOTIFY_PYTHON` is not set (scripts/test.sh sets it).

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::Value;
use sqlx::PgPool;
use tau_acuvim_portal::alarms::evaluate::Evaluator;
use tau_acuvim_portal::alarms::notify::{Cycle, Notifier};
use tau_acuvim_portal::config::{Notifications, SmtpSecurity, SmtpSettings};
use tau_acuvim_portal::modbus::simulator::{Fault, Layout, Simulator};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use crate::helpers::{Browser, TestApp, free_port, site_with_devices, wait_for};
use crate::sites::admin;

const PATIENCE: Duration = Duration::from_secs(30);

/// The SMTP server and webhook receiver, and every line they printed.
struct Peers {
    _child: Child,
    smtp_port: u16,
    http_port: u16,
    seen: Arc<Mutex<Vec<Value>>>,
}

impl Peers {
    async fn start(secret: &str, options: &[&str]) -> Option<Peers> {
        let Some(python) = std::env::var_os("TAU_TEST_NOTIFY_PYTHON").filter(|p| !p.is_empty()) else {
            eprintln!(
                "SKIPPED: notification peers (TAU_TEST_NOTIFY_PYTHON is not set; scripts/test.sh installs aiosmtpd)"
            );
            return None;
        };
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/notify/peers.py");
        let (smtp_port, http_port) = (free_port(), free_port());
        let mut child = Command::new(python)
            .arg(script)
            .args([smtp_port.to_string(), http_port.to_string(), secret.to_string()])
            .args(options)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start tests/notify/peers.py");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(PATIENCE, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if line == "\"READY\"" {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(ready.ok(), Some(true), "peers.py did not start");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap().push(serde_json::from_str(&line).unwrap());
            }
        });
        Some(Peers { _child: child, smtp_port, http_port, seen })
    }

    fn of(&self, kind: &str) -> Vec<Value> {
        self.seen.lock().unwrap().iter().filter(|v| v["kind"] == kind).cloned().collect()
    }

    async fn wait(&self, kind: &str, n: usize) -> Vec<Value> {
        wait_for(&format!("{n} {kind}"), PATIENCE, || async {
            let got = self.of(kind);
            (got.len() >= n).then_some(got)
        })
        .await
    }

    fn webhook_url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks/tau", self.http_port)
    }
}

fn settings(smtp_port: u16, timeout: Duration) -> Notifications {
    Notifications {
        smtp: Some(SmtpSettings {
            host: "127.0.0.1".into(),
            port: smtp_port,
            security: SmtpSecurity::None,
            username: None,
            password: None,
            from: "alarms@portal.example.com".into(),
        }),
        timeout,
        digest_threshold: 3,
    }
}

fn notifier(app: &TestApp, settings: Notifications) -> Notifier {
    let url = "https://abc0001.portal.example.com".parse().ok();
    Notifier::new(app.state.db.clone(), app.clock.clone(), app.state.branding.clone(), settings, url).unwrap()
}

async fn post_form(b: &mut Browser, url: &str, fields: &[(&str, &str)]) -> crate::helpers::Reply {
    let csrf = b.get(url).await.csrf();
    let mut all = vec![("csrf", csrf.as_str())];
    all.extend_from_slice(fields);
    b.post(url, &all).await
}

/// Creates a recipient list through Settings → Notifications; its webhook secret.
async fn recipient_list(b: &mut Browser, pool: &PgPool, fields: &[(&str, &str)]) -> String {
    let res = post_form(b, "/settings/notifications/new", fields).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    let name = fields.iter().find(|(k, _)| *k == "name").unwrap().1;
    sqlx::query_scalar(r#"SELECT "WebhookSecret" FROM alarms."RecipientLists" WHERE "Name" = $1"#)
        .bind(name)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[derive(Debug, sqlx::FromRow)]
#[sqlx(rename_all = "PascalCase")]
struct Delivery {
    channel: String,
    status: String,
    attempts: i32,
    last_error: Option<String>,
}

async fn deliveries(db: &PgPool) -> Vec<Delivery> {
    sqlx::query_as(r#"SELECT "Channel", "Status", "Attempts", "LastError" FROM alarms."Deliveries" ORDER BY "Id""#)
        .fetch_all(db)
        .await
        .unwrap()
}

/// The secret a list gets is random; the peers must know it before the list exists, so the list
/// is created first with a placeholder webhook and then pointed at the peers.
async fn list_with_peers(b: &mut Browser, pool: &PgPool, options: &[&str], extra: &[(&str, &str)]) -> Option<Peers> {
    let mut fields = vec![
        ("name", "Facilities"),
        ("emails", "ops@example.com\nboss@example.com"),
        ("webhook_url", "http://127.0.0.1:9/unused"),
        ("min_severity", "warning"),
        ("time_zone", "UTC"),
        ("enabled", "on"),
    ];
    fields.extend_from_slice(extra);
    let secret = recipient_list(b, pool, &fields).await;
    let peers = Peers::start(&secret, options).await?;
    sqlx::query(r#"UPDATE alarms."RecipientLists" SET "WebhookUrl" = $1"#)
        .bind(peers.webhook_url())
        .execute(pool)
        .await
        .unwrap();
    Some(peers)
}

#[sqlx::test]
async fn a_meter_that_stops_answering_sends_one_mail_and_one_signed_webhook_and_its_return_one_more(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let mut b = admin(&app).await;
    let Some(peers) = list_with_peers(&mut b, &pool, &[], &[]).await else { return };
    let sim = Simulator::start(crate::poller::sim_config(1, Layout::PortPerMeter), app.clock.clone()).await.unwrap();
    let devices = crate::poller::devices_for(&mut b, &sim.endpoints()).await;
    let poller = crate::poller::Running::start(&app, pool.clone());
    let stop = CancellationToken::new();
    let mut ev = Evaluator::new(pool.clone(), app.clock.clone(), app.state.alarms.clone());
    ev.every = Duration::from_millis(200);
    let evaluating = tokio::spawn(ev.run(stop.clone()));
    let mut n = notifier(&app, settings(peers.smtp_port, Duration::from_secs(5)));
    n.every = Duration::from_millis(200);
    let notifying = tokio::spawn(n.run(stop.clone()));
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
    let mails = peers.wait("mail", 1).await;
    let hooks = peers.wait("webhook", 1).await;
    let mail = &mails[0];
    assert_eq!(mail["to"], serde_json::json!(["ops@example.com", "boss@example.com"]));
    assert_eq!(mail["from"], "Tau Acuvim Portal <alarms@portal.example.com>", "branded sender");
    let subject = mail["subject"].as_str().unwrap();
    assert!(subject.starts_with("[Tau Acuvim Portal] Major: Communication loss at"), "{subject}");
    let text = mail["text"].as_str().unwrap();
    assert!(text.contains("No reading for") && text.contains("https://abc0001.portal.example.com/alarms/"), "{text}");
    assert!(mail["html"].as_str().unwrap().contains("#0c4a6e"), "the HTML part carries the brand colour");
    let hook = &hooks[0];
    assert_eq!(hook["valid"], true, "the receiver verified the HMAC-SHA256 signature: {hook}");
    assert_eq!(hook["content_type"], "application/json");
    assert_eq!(hook["body"]["event"], "alarm.raised");
    assert_eq!(hook["body"]["events"][0]["alarm"]["rule"], "Communication loss");

    sim.set_fault(0, None);
    let mails = peers.wait("mail", 2).await;
    assert!(mails[1]["subject"].as_str().unwrap().contains("Cleared: Communication loss"), "{}", mails[1]);
    assert!(mails[1]["text"].as_str().unwrap().contains("the condition recovered"));
    let hooks = peers.wait("webhook", 2).await;
    assert_eq!((hooks[1]["body"]["event"].as_str(), hooks[1]["valid"].as_bool()), (Some("alarm.cleared"), Some(true)));
    stop.cancel();
    evaluating.await.unwrap();
    notifying.await.unwrap();
    poller.stop().await;
    sim.shutdown().await;
    assert_eq!((peers.of("mail").len(), peers.of("webhook").len()), (2, 2), "one message per start and clear");
    let page = b.get("/settings/notifications").await;
    assert!(page.body.contains("Sent ") && page.body.contains("Cleared: Communication loss"), "{}", page.body);
}

#[sqlx::test]
async fn many_alarms_at_once_make_one_digest_and_quiet_hours_hold_all_but_critical(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let mut b = admin(&app).await;
    // Quiet from an hour ago until an hour from now (over midnight when it is near).
    let now = chrono::Utc::now();
    let from = (now - chrono::TimeDelta::hours(1)).format("%H:%M").to_string();
    let until = (now + chrono::TimeDelta::hours(1)).format("%H:%M").to_string();
    let Some(peers) = list_with_peers(&mut b, &pool, &[], &[("quiet_from", &from), ("quiet_until", &until)]).await
    else {
        return;
    };
    site_with_devices(&pool, "Plant", "UTC", &["m1", "m2", "m3", "m4"]).await;
    app.clock.advance(Duration::from_secs(600));
    let mut ev = Evaluator::new(pool.clone(), app.clock.clone(), app.state.alarms.clone());
    let n = notifier(&app, settings(peers.smtp_port, Duration::from_secs(5)));
    assert_eq!(ev.cycle().await.unwrap().raised, 4);
    assert_eq!(n.cycle().await.unwrap(), Cycle::default(), "quiet hours: major alarms wait");
    // A critical rule is not held.
    sqlx::query(r#"INSERT INTO alarms."Rules" ("Name", "Kind", "Severity", "MissedPolls", "DeviceId") SELECT 'Critical silence', 'communication-loss', 'critical', 3, "Id" FROM monitoring."Devices" WHERE "ExternalId" = 'm1'"#)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(ev.cycle().await.unwrap().raised, 1);
    assert_eq!(n.cycle().await.unwrap(), Cycle { planned: 2, sent: 2, failed: 0 }, "one mail, one webhook");
    let mails = peers.wait("mail", 1).await;
    assert!(mails[0]["subject"].as_str().unwrap().contains("Critical: Critical silence"), "{}", mails[0]);
    // The quiet hours end: the four waiting events go out as one digest (threshold 3).
    sqlx::query(r#"UPDATE alarms."RecipientLists" SET "QuietFrom" = NULL, "QuietUntil" = NULL"#)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(n.cycle().await.unwrap(), Cycle { planned: 2, sent: 2, failed: 0 });
    let mails = peers.wait("mail", 2).await;
    let digest = mails.last().unwrap();
    assert_eq!(digest["subject"], "[Tau Acuvim Portal] 4 alarm updates", "{digest}");
    for device in ["m1", "m2", "m3", "m4"] {
        assert!(digest["text"].as_str().unwrap().contains(&format!("Plant › {device}")), "{digest}");
    }
    let hooks = peers.wait("webhook", 2).await;
    let hook = hooks.last().unwrap();
    assert_eq!(
        (hook["body"]["event"].as_str(), hook["body"]["events"].as_array().map(Vec::len)),
        (Some("alarm.digest"), Some(4))
    );
    assert_eq!(hook["valid"], true);
    assert_eq!(n.cycle().await.unwrap(), Cycle::default(), "each event told once");
}

#[sqlx::test]
async fn failed_deliveries_are_recorded_with_their_reason_and_retried_with_backoff(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let mut b = admin(&app).await;
    let Some(peers) = list_with_peers(&mut b, &pool, &["--smtp-fail", "1", "--http-fail", "1"], &[]).await else {
        return;
    };
    site_with_devices(&pool, "Plant", "UTC", &["m1"]).await;
    app.clock.advance(Duration::from_secs(600));
    let mut ev = Evaluator::new(pool.clone(), app.clock.clone(), app.state.alarms.clone());
    let n = notifier(&app, settings(peers.smtp_port, Duration::from_secs(5)));
    ev.cycle().await.unwrap();
    assert_eq!(n.cycle().await.unwrap(), Cycle { planned: 2, sent: 0, failed: 2 });
    let failed = deliveries(&pool).await;
    assert!(failed.iter().all(|d| d.status == "pending" && d.attempts == 1), "{failed:?}");
    let mail_error = failed.iter().find(|d| d.channel == "email").unwrap().last_error.clone().unwrap();
    assert!(mail_error.contains("451") && mail_error.contains("Try again later"), "{mail_error}");
    let hook_error = failed.iter().find(|d| d.channel == "webhook").unwrap().last_error.clone().unwrap();
    assert!(hook_error.contains("HTTP 500") && hook_error.contains("receiver refused"), "{hook_error}");
    assert!(b.get("/settings/notifications").await.body.contains("Failed 1 times, will retry"));
    assert_eq!(n.cycle().await.unwrap(), Cycle::default(), "not due again before the backoff");
    app.clock.advance(Duration::from_secs(31));
    assert_eq!(n.cycle().await.unwrap(), Cycle { planned: 0, sent: 2, failed: 0 });
    let sent = deliveries(&pool).await;
    assert!(sent.iter().all(|d| d.status == "sent" && d.attempts == 2), "{sent:?}");
    assert_eq!(peers.wait("webhook", 2).await[1]["valid"], true);
    let page = b.get("/settings/notifications").await;
    assert!(page.body.contains("Sent after 2 attempts") && page.body.contains("Earlier failure"), "{}", page.body);
}

#[sqlx::test]
async fn an_smtp_server_that_never_answers_holds_up_no_page_and_is_recorded_as_failed(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let mut b = admin(&app).await;
    // Accepts connections and never says a word.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let res = post_form(
        &mut b,
        "/settings/notifications/new",
        &[
            ("name", "Ops"),
            ("emails", "ops@example.com"),
            ("min_severity", "warning"),
            ("time_zone", "UTC"),
            ("enabled", "on"),
        ],
    )
    .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    site_with_devices(&pool, "Plant", "UTC", &["m1"]).await;
    app.clock.advance(Duration::from_secs(600));
    let mut ev = Evaluator::new(pool.clone(), app.clock.clone(), app.state.alarms.clone());
    ev.cycle().await.unwrap();
    let mut n = notifier(&app, settings(port, Duration::from_secs(2)));
    n.every = Duration::from_millis(100);
    let stop = CancellationToken::new();
    let notifying = tokio::spawn(n.run(stop.clone()));
    wait_for("the delivery planned", PATIENCE, || async { (!deliveries(&pool).await.is_empty()).then_some(()) }).await;
    // While the notifier waits on the silent server, pages and the evaluator answer.
    let started = std::time::Instant::now();
    assert_eq!(b.get("/alarms").await.status, StatusCode::OK);
    assert_eq!(ev.cycle().await.unwrap().raised, 0);
    assert!(started.elapsed() < Duration::from_secs(2), "answered in {:?}", started.elapsed());
    let failed = wait_for("the attempt recorded", PATIENCE, || async {
        deliveries(&pool).await.into_iter().find(|d| d.attempts == 1)
    })
    .await;
    assert!(failed.last_error.unwrap().contains(&format!("127.0.0.1:{port}")), "the reason names the server");
    stop.cancel();
    notifying.await.unwrap();
    held.abort();
}

#[sqlx::test]
async fn recipient_lists_are_admin_only_with_errors_per_field_and_audited(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let mut b = admin(&app).await;
    let bad = post_form(
        &mut b,
        "/settings/notifications/new",
        &[
            ("name", "Ops"),
            ("emails", "ops@example.com, nobody"),
            ("webhook_url", "ftp://x"),
            ("min_severity", "major"),
            ("quiet_from", "22:00"),
            ("time_zone", "UTC"),
        ],
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    for message in [
        "nobody is not an e-mail address.",
        "ftp://x is not an http:// or https:// URL.",
        "Enter when the quiet hours end",
    ] {
        assert!(bad.body.contains(message), "{message}: {}", bad.body);
    }
    let count: i64 =
        sqlx::query_scalar(r#"SELECT count(*) FROM alarms."RecipientLists""#).fetch_one(&pool).await.unwrap();
    assert_eq!(count, 0);
    recipient_list(
        &mut b,
        &pool,
        &[("name", "Ops"), ("emails", "ops@example.com"), ("min_severity", "major"), ("time_zone", "UTC")],
    )
    .await;
    let taken = post_form(
        &mut b,
        "/settings/notifications/new",
        &[("name", "OPS"), ("emails", "x@example.com"), ("min_severity", "major"), ("time_zone", "UTC")],
    )
    .await;
    assert!(taken.body.contains("A recipient list with this name already exists."), "{}", taken.body);
    let id: i32 = sqlx::query_scalar(r#"SELECT "Id" FROM alarms."RecipientLists""#).fetch_one(&pool).await.unwrap();
    let delete = format!("/settings/notifications/{id}/delete");
    assert_eq!(post_form(&mut b, &delete, &[]).await.status, StatusCode::SEE_OTHER);
    let actions: Vec<String> = sqlx::query_scalar(
        r#"SELECT "Action" FROM identity."AuditLog" WHERE "Action" LIKE 'recipient-list.%' ORDER BY "Id""#,
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(actions, ["recipient-list.created", "recipient-list.deleted"]);
    let mut v = crate::sites::viewer(&app, &mut b).await;
    assert_eq!(v.get("/settings/notifications").await.status, StatusCode::FORBIDDEN);
}
