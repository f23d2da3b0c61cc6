//! `GET /metrics` on its own listener, in Prometheus text format, checked by promtool.

use std::io::Write;
use std::process::{Command, Stdio};

use tau_acuvim_portal::metrics::METRICS;

use crate::helpers::{Portal, TestDb, production_env};

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
        "tau_portal_sites 0",
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
