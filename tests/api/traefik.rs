//! The Grafana gate end to end through a real Traefik (installed by scripts/test.sh), configured
//! with the forwardAuth middleware exactly as `docker-compose.prod.yml` declares it. A small HTTP
//! server stands in for Grafana and echoes the headers it receives.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::Json;
use axum::http::HeaderMap;
use reqwest::StatusCode;
use tau_acuvim_portal::auth::forward::IDENTITY_HEADERS;

use crate::helpers::{ADMIN_PASSWORD, Portal, TestDb, WebClient, free_port, production_env, wait_for};

const MIDDLEWARE_PREFIX: &str = "traefik.http.middlewares.";

/// The compose file's forwardAuth settings, as `key → value` (e.g. `authResponseHeaders`).
fn compose_forward_auth() -> BTreeMap<String, String> {
    let compose =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docker-compose.prod.yml")).unwrap();
    compose
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- "))
        .filter(|l| l.starts_with(MIDDLEWARE_PREFIX) && l.contains(".forwardauth."))
        .filter_map(|l| {
            let (key, value) = l.split_once('=')?;
            Some((key.split(".forwardauth.").nth(1)?.to_string(), value.to_string()))
        })
        .collect()
}

#[test]
fn the_compose_middleware_copies_every_identity_header() {
    let settings = compose_forward_auth();
    let headers: Vec<&str> = settings["authResponseHeaders"].split(',').collect();
    assert_eq!(headers, IDENTITY_HEADERS, "authResponseHeaders must list every identity header");
    assert!(settings["address"].ends_with(":8080/api/auth/check"), "{settings:?}");
}

/// Renders the compose middleware as a Traefik file-provider configuration pointing at `portal`.
fn dynamic_config(traefik_backend: &str, portal: &str) -> String {
    let settings = compose_forward_auth();
    let mut middleware = format!("        address: \"{portal}/api/auth/check\"\n");
    for (key, value) in &settings {
        match key.as_str() {
            "address" => {}
            "authResponseHeaders" | "authRequestHeaders" => {
                let list = value.split(',').map(|h| format!("\"{h}\"")).collect::<Vec<_>>().join(", ");
                middleware.push_str(&format!("        {key}: [{list}]\n"));
            }
            _ => middleware.push_str(&format!("        {key}: {value}\n")),
        }
    }
    format!(
        "http:\n  routers:\n    grafana:\n      rule: \"PathPrefix(`/grafana`)\"\n      entryPoints: [web]\n      \
         middlewares: [grafana-auth]\n      service: grafana\n  middlewares:\n    grafana-auth:\n      forwardAuth:\n\
         {middleware}  services:\n    grafana:\n      loadBalancer:\n        servers:\n          - url: \"{traefik_backend}\"\n"
    )
}

struct Traefik(Child);

impl Drop for Traefik {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Stands in for Grafana: answers every request with the headers it received, as JSON.
async fn start_echo() -> u16 {
    let app = axum::Router::new().fallback(|headers: HeaderMap| async move {
        let map: BTreeMap<String, String> =
            headers.iter().map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())).collect();
        Json(map)
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

#[tokio::test]
async fn traefik_forward_auth_gates_grafana_with_the_portal_session() {
    let Ok(traefik_bin) = std::env::var("TAU_TEST_TRAEFIK") else {
        eprintln!("SKIPPED: Traefik end-to-end test (TAU_TEST_TRAEFIK is not set; scripts/test.sh installs Traefik)");
        return;
    };
    let echo = start_echo().await;
    let traefik_port = free_port();
    let public = format!("http://127.0.0.1:{traefik_port}");

    let db = TestDb::create().await;
    let data = tempfile::tempdir().unwrap();
    let mut env = production_env(&db);
    env.push(("Application__PublicUrl", public.clone()));
    let portal = Portal::start(&[], &env, data.path());
    portal.wait_listening().await;

    let dir = tempfile::tempdir().unwrap();
    let dynamic = dir.path().join("dynamic.yml");
    std::fs::write(&dynamic, dynamic_config(&format!("http://127.0.0.1:{echo}"), &portal.url(""))).unwrap();
    let child = Command::new(&traefik_bin)
        .arg(format!("--entryPoints.web.address=127.0.0.1:{traefik_port}"))
        .arg(format!("--providers.file.filename={}", dynamic.display()))
        .args(["--log.level=ERROR", "--global.checkNewVersion=false", "--global.sendAnonymousUsage=false"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start traefik");
    let _traefik = Traefik(child);

    let mut browser = WebClient::new();
    let grafana = format!("{public}/grafana/d/power?orgId=1");
    // Traefik is up once its router answers (before, connections are refused or 404).
    wait_for("Traefik to route /grafana", Duration::from_secs(30), || async {
        let res = reqwest::Client::new().get(&grafana).header("accept", "application/json").send().await.ok()?;
        (res.status() == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;

    // (a) Without a session: a page load is sent to the absolute sign-in URL, a script gets 401.
    let nav = browser
        .send(browser.http.get(&grafana).header("accept", "text/html").header("sec-fetch-mode", "navigate"))
        .await;
    assert_eq!(nav.status(), StatusCode::FOUND);
    assert_eq!(nav.headers()["location"], format!("{public}/login?next=%2Fgrafana%2Fd%2Fpower%3ForgId%3D1").as_str());
    let xhr = browser
        .send(
            browser
                .http
                .get(&grafana)
                .header("accept", "application/json")
                .header("x-requested-with", "XMLHttpRequest"),
        )
        .await;
    assert_eq!(xhr.status(), StatusCode::UNAUTHORIZED);

    // (c) A forged identity header without a session does not get through.
    let forged = browser.send(browser.http.get(&grafana).header("x-webauth-user", "admin")).await;
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);

    // Sign in on the portal (directly, as the browser would on the portal's own router).
    let csrf = browser.csrf(&portal.url("/login")).await;
    let form =
        [("csrf", csrf.as_str()), ("email", "admin@abc0001.example.com"), ("password", ADMIN_PASSWORD), ("next", "/")];
    let login = browser.send(browser.http.post(portal.url("/login")).form(&form)).await;
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    assert!(browser.cookies.contains_key("__Host-tau_session"), "Production cookie name: {:?}", browser.cookies.keys());

    // (b) With the session, Grafana receives the portal's identity.
    let user_id: uuid::Uuid =
        sqlx::query_scalar(r#"SELECT "Id" FROM identity."Users""#).fetch_one(&db.pool().await).await.unwrap();
    let seen: BTreeMap<String, String> = browser.send(browser.http.get(&grafana)).await.json().await.unwrap();
    assert_eq!(seen.get("x-webauth-user"), Some(&format!("p_{}", user_id.simple())));
    assert_eq!(seen.get("x-webauth-email").map(String::as_str), Some("admin@abc0001.example.com"));
    assert_eq!(seen.get("x-webauth-role").map(String::as_str), Some("Admin"));

    // (c) A client's own identity headers are replaced, not appended.
    let spoof = browser.http.get(&grafana).header("x-webauth-user", "admin").header("x-webauth-role", "Editor");
    let seen: BTreeMap<String, String> = browser.send(spoof).await.json().await.unwrap();
    assert_eq!(seen.get("x-webauth-user"), Some(&format!("p_{}", user_id.simple())));
    assert_eq!(seen.get("x-webauth-role").map(String::as_str), Some("Admin"));

    // (d) After sign-out the same cookie is refused.
    let token = browser.cookies["__Host-tau_session"].clone();
    let csrf = browser.csrf(&portal.url("/account/password")).await;
    let out = browser.send(browser.http.post(portal.url("/logout")).form(&[("csrf", csrf.as_str())])).await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    browser.cookies.insert("__Host-tau_session".into(), token);
    let after = browser.send(browser.http.get(&grafana).header("accept", "application/json")).await;
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
}
