//! `GET /metrics` on its own listener, in Prometheus text format, checked by promtool.

use std::io::Write;
use std::process::{Command, Stdio};

use chrono::{Duration, Utc};
use tau_acuvim_portal::licence::keys::SigningKey;
use tau_acuvim_portal::licence::token;
use tau_acuvim_portal::measurements::{self, Quantity, Reading};
use tau_acuvim_portal::metrics::{METRICS, STORED_DAYS};

use crate::helpers::{Portal, TestDb, production_env, site_with_devices, wait_for};

#[tokio::test]
async fn metrics_are_served_on_their_own_listener_and_pass_promtool() {
    let db = TestDb::create().await;
    let data = tempfile::tempdir().unwrap();
    let portal = Portal::start(&[], &production_env(&db), data.path());
    portal.wait_listening().await;
    let client = reqwest::Client::new();
    for path in ["/health", "/health", "/login", "/no/such/page?secret=1"] {
        client.get(portal.url(path)).send().await.unwrap();
    }
    // A method of the client's choosing is no new label value (no series without end).
    for method in ["BREW", "WHEN"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        client.request(method, portal.url("/health")).send().await.unwrap();
    }
    assert_eq!(client.get(portal.url("/metrics")).send().await.unwrap().status(), 404, "not on the public listener");

    let res = client.get(format!("http://127.0.0.1:{}/metrics", portal.metrics_port)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = res.text().await.unwrap();
    for expected in [
        r#"tau_portal_http_requests_total{route="/health",method="GET",status="200"} 2"#,
        r#"tau_portal_http_requests_total{route="/health",method="other",status="405"} 2"#,
        // The unknown page and the /metrics probe on the public listener.
        r#"tau_portal_http_requests_total{route="unmatched",method="GET",status="404"} 2"#,
        r#"tau_portal_build_info{version=""#,
        r#"tau_portal_users{role="admin",state="active"} 1"#,
        r#"tau_portal_sites{state="empty"} 0"#,
        r#"tau_portal_api_keys{state="active"} 0"#,
        "# TYPE tau_portal_http_request_duration_seconds histogram",
        r#"tau_portal_http_request_duration_seconds_bucket{route="/login",method="GET",le="0.005"}"#,
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(!text.contains("secret"), "raw URIs never become labels");
    // Every exported name is one the documented list (src/metrics.rs METRICS) declares.
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split_whitespace().nth(2).unwrap();
        assert!(METRICS.iter().any(|m| m.name == name), "{name} is exported but not declared in METRICS");
    }

    promtool_check(&text);
}

/// The figures an operator bills a customer's portal on, from the real binary's metrics
/// listener: devices and sites by state, readings stored per day (counted with the rows, so a
/// retried batch counts once), the database's size, users, and the licence (from a secret file)
/// with its expiry, read-only date and limits. promtool passes them.
#[tokio::test]
async fn usage_figures_for_billing_pass_promtool() {
    let db = TestDb::create().await;
    let data = tempfile::tempdir().unwrap();
    let (key, _) = SigningKey::generate().unwrap();
    let now = Utc::now();
    let claims = token::Claims {
        iss: token::ISSUER.into(),
        jti: uuid::Uuid::new_v4(),
        sub: uuid::Uuid::new_v4(),
        customer_code: "ABC0001".into(),
        company: "Acme Corp".into(),
        limits: token::Limits { devices: Some(50), sites: Some(5), users: None },
        features: vec!["mqtt".into()],
        iat: now.timestamp(),
        exp: (now + Duration::days(90)).timestamp(),
        grace_days: 14,
    };
    let key_file = data.path().join("licence.key");
    std::fs::write(&key_file, token::sign(&claims, &key)).unwrap();
    let mut env = production_env(&db);
    env.push(("License__Key_FILE", key_file.display().to_string()));
    env.push(("License__PublicKey", key.public_key().text()));
    let portal = Portal::start(&[], &env, data.path());
    portal.wait_listening().await;

    // Site A: one device online, one without readings (degraded); site B: only a disabled
    // device (empty); site C: its one device online.
    let pool = db.pool().await;
    let (_, a) = site_with_devices(&pool, "A", "UTC", &["a-1", "a-2"]).await;
    let (_, b) = site_with_devices(&pool, "B", "UTC", &["b-1"]).await;
    let (_, c) = site_with_devices(&pool, "C", "UTC", &["c-1"]).await;
    sqlx::query(r#"UPDATE monitoring."Devices" SET "Enabled" = false WHERE "Id" = $1"#)
        .bind(b[0])
        .execute(&pool)
        .await
        .unwrap();
    let reading = |device: i32, seconds_ago: i64| {
        let mut r = Reading::empty(device, now - Duration::seconds(seconds_ago));
        r.set(Quantity::named("pTotal").unwrap(), Some(1000.0));
        r
    };
    let batch = [reading(a[0], 30), reading(a[0], 20), reading(c[0], 10)];
    assert_eq!(measurements::write(&pool, &batch).await.unwrap(), 3);
    // The same batch again (a retry) plus one new row: only the new row is stored and counted.
    let retried = [batch.as_slice(), &[reading(c[0], 5)]].concat();
    assert_eq!(measurements::write(&pool, &retried).await.unwrap(), 1);
    let today: String =
        sqlx::query_scalar("SELECT ((now() AT TIME ZONE 'UTC')::date)::text").fetch_one(&pool).await.unwrap();

    let url = format!("http://127.0.0.1:{}/metrics", portal.metrics_port);
    let client = reqwest::Client::new();
    // The licence gauges are set by the licence's watcher, which starts with the portal.
    let text = wait_for("the licence gauges", std::time::Duration::from_secs(30), || async {
        let text = client.get(&url).send().await.ok()?.text().await.ok()?;
        text.contains("tau_portal_licence_state").then_some(text)
    })
    .await;
    let exp = claims.exp;
    let read_only = exp + 14 * 86_400;
    for expected in [
        r#"tau_portal_sites{state="online"} 1"#.to_string(),
        r#"tau_portal_sites{state="degraded"} 1"#.into(),
        r#"tau_portal_sites{state="offline"} 0"#.into(),
        r#"tau_portal_sites{state="empty"} 1"#.into(),
        r#"tau_portal_devices{state="online",source="push"} 2"#.into(),
        r#"tau_portal_devices{state="no_readings",source="push"} 1"#.into(),
        r#"tau_portal_devices{state="disabled",source="push"} 1"#.into(),
        r#"tau_portal_devices{state="offline",source="mqtt"} 0"#.into(),
        format!(r#"tau_portal_readings_stored_per_day{{day="{today}"}} 4"#),
        r#"tau_portal_users{role="admin",state="active"} 1"#.into(),
        r#"tau_portal_licence_state{state="valid"} 1"#.into(),
        r#"tau_portal_licence_state{state="read_only"} 0"#.into(),
        r#"tau_portal_licence_info{customer="ABC0001"} 1"#.into(),
        format!("tau_portal_licence_expiry_timestamp_seconds {exp}"),
        format!("tau_portal_licence_read_only_timestamp_seconds {read_only}"),
        r#"tau_portal_licence_limit{resource="devices"} 50"#.into(),
        r#"tau_portal_licence_limit{resource="sites"} 5"#.into(),
    ] {
        assert!(text.lines().any(|l| l == expected), "missing {expected:?} in:\n{text}");
    }
    assert!(!text.contains(r#"resource="users""#), "an unlimited resource has no limit series");
    let days: Vec<&str> = text.lines().filter(|l| l.starts_with("tau_portal_readings_stored_per_day{")).collect();
    assert_eq!(days.len(), STORED_DAYS as usize, "one series per day, zeros included: {days:?}");
    assert!(days.last().unwrap().contains(&today), "today last: {days:?}");
    let size: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("tau_portal_database_size_bytes "))
        .expect("the database size")
        .parse()
        .unwrap();
    let actual: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())").fetch_one(&pool).await.unwrap();
    assert!(size > 1e6 && (size - actual as f64).abs() < 0.5 * actual as f64, "{size} vs {actual}");
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split_whitespace().nth(2).unwrap();
        assert!(METRICS.iter().any(|m| m.name == name), "{name} is exported but not declared in METRICS");
    }
    promtool_check(&text);
}

/// Passes a scrape through `promtool check metrics` (skipped without promtool).
pub fn promtool_check(text: &str) {
    let Ok(promtool) = std::env::var("TAU_TEST_PROMTOOL") else {
        eprintln!("SKIPPED: promtool check (TAU_TEST_PROMTOOL not set; scripts/test.sh sets it)");
        return;
    };
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
