//! The real binary as a process: the runbook's log lines, exit codes and signals.

use std::time::Duration;

use nix::sys::signal::Signal;
use tau_acuvim_portal::config::KEYS;

use crate::helpers::{ADMIN_PASSWORD, Portal, Proxy, TestDb, portal_command, production_env};

const START: Duration = Duration::from_secs(60);
const EXIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn first_start_logs_the_runbook_lines_serves_health_and_stops_on_sigterm() {
    let db = TestDb::create().await;
    let data = tempfile::tempdir().unwrap();
    let mut portal = Portal::start(&[], &production_env(&db), data.path());
    portal.wait_listening().await;

    let messages = portal.messages();
    let position = |needle: &str| {
        messages.iter().position(|m| m.contains(needle)).unwrap_or_else(|| panic!("no {needle:?} in {messages:#?}"))
    };
    // In the order of the startup sequence.
    let order = [
        position("Database connection resolved via Database__ConnectionString (Npgsql key=value form)"),
        position("Applied migration 'InitialCreate'"),
        position("stays a plain PostgreSQL table"),
        position("Seeded default admin admin@abc0001.example.com"),
        position("Portal listening on"),
    ];
    assert!(order.is_sorted(), "startup lines out of order: {order:?} in {messages:#?}");
    let applied = messages.iter().filter(|m| m.starts_with("Applied migration '")).count();
    assert_eq!(applied, tau_acuvim_portal::db::migrate::MIGRATOR.iter().count());

    // JSON with the fields a log pipeline keys on.
    let resolved = &portal.logs()[order[0]];
    assert_eq!(resolved["level"], "INFO");
    assert!(resolved["timestamp"].is_string() && resolved["target"].is_string(), "{resolved}");
    let timescale = &portal.logs()[order[2]];
    assert_eq!(timescale["level"], "WARN", "{timescale}");

    let client = reqwest::Client::new();
    let res = client.get(portal.url("/health")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "Healthy");
    let res = client.get(portal.url("/health/ready")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "Healthy");

    // A request is logged with its matched route and request id (unknown paths: "unmatched").
    let res = client.get(portal.url("/no/such/page?token=abc")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    let request_id = res.headers()["x-request-id"].to_str().unwrap().to_string();
    let line = portal.wait_for_message("request completed", START).await;
    assert_eq!(line["span"]["route"], "unmatched", "{line}");
    assert_eq!(line["span"]["request_id"], request_id.as_str(), "{line}");
    assert_eq!(line["status"], 404, "{line}");

    portal.signal(Signal::SIGTERM);
    let status = portal.wait_exit(EXIT).await;
    assert!(status.success(), "graceful shutdown exits 0, got {status:?}");
    portal.wait_for_message("Shutdown signal received", START).await;
    portal.wait_for_message("Shutdown complete", START).await;

    let everything = portal.raw_lines().join("\n");
    assert!(!everything.contains(ADMIN_PASSWORD), "the admin password leaked into the logs");
}

#[tokio::test]
async fn a_second_start_neither_migrates_nor_reseeds() {
    let db = TestDb::create().await;
    let data = tempfile::tempdir().unwrap();
    let env = production_env(&db);
    let mut first = Portal::start(&[], &env, data.path());
    first.wait_listening().await;
    first.signal(Signal::SIGTERM);
    assert!(first.wait_exit(EXIT).await.success());
    let pool = db.pool().await;
    let hash_before: String =
        sqlx::query_scalar(r#"SELECT "PasswordHash" FROM identity."Users""#).fetch_one(&pool).await.unwrap();

    let mut env = env;
    env.retain(|(k, _)| *k != "Authentication__DefaultAdminPassword");
    env.push(("Authentication__DefaultAdminPassword", "another password of some length".into()));
    let second = Portal::start(&[], &env, data.path());
    second.wait_listening().await;
    let messages = second.messages();
    assert!(messages.iter().all(|m| !m.starts_with("Applied migration")), "{messages:#?}");
    assert!(messages.iter().all(|m| !m.starts_with("Seeded default admin")), "{messages:#?}");
    assert!(messages.iter().any(|m| m == "Database schema is up to date"), "{messages:#?}");
    let hash_after: String =
        sqlx::query_scalar(r#"SELECT "PasswordHash" FROM identity."Users""#).fetch_one(&pool).await.unwrap();
    assert_eq!(hash_before, hash_after);
}

/// Without it the forwardAuth login redirect was built from X-Forwarded-Host/Host.
#[tokio::test]
async fn production_without_a_public_url_exits_naming_the_key() {
    let data = tempfile::tempdir().unwrap();
    let env = [
        ("DATABASE_URL", "postgres://u@127.0.0.1:1/x".to_string()),
        ("Authentication__DefaultAdminPassword", ADMIN_PASSWORD.to_string()),
        ("Application__PublicUrl", String::new()),
    ];
    let mut portal = Portal::start(&[], &env, data.path());
    assert_eq!(portal.wait_exit(EXIT).await.code(), Some(2), "{:?}", portal.raw_lines());
    let line = portal.wait_for_message("Invalid configuration", START).await;
    assert_eq!(line["key"], "Application__PublicUrl");
    assert!(line["message"].as_str().unwrap().contains("required in Production"), "{line}");
}

#[tokio::test]
async fn production_without_an_admin_password_exits_naming_the_key() {
    let data = tempfile::tempdir().unwrap();
    let env = [("DATABASE_URL", "postgres://u@127.0.0.1:1/x".to_string())];
    let mut portal = Portal::start(&[], &env, data.path());
    let status = portal.wait_exit(EXIT).await;
    assert_eq!(status.code(), Some(2), "{:?}", portal.raw_lines());
    let line = portal.wait_for_message("Invalid configuration", START).await;
    assert_eq!(line["level"], "ERROR");
    assert_eq!(line["key"], "Authentication__DefaultAdminPassword");
    assert!(
        line["message"].as_str().unwrap().contains("Authentication__DefaultAdminPassword: required in Production"),
        "{line}"
    );
}

#[tokio::test]
async fn an_invalid_value_exits_naming_the_key_and_the_expectation() {
    let data = tempfile::tempdir().unwrap();
    let env = [
        ("DATABASE_URL", "postgres://u@127.0.0.1:1/x".to_string()),
        ("Authentication__DefaultAdminPassword", ADMIN_PASSWORD.to_string()),
        ("WhiteLabel__PrimaryColor", "blue".to_string()),
    ];
    let mut portal = Portal::start(&[], &env, data.path());
    assert_eq!(portal.wait_exit(EXIT).await.code(), Some(2));
    portal.wait_for_message(r#"WhiteLabel__PrimaryColor: expected #rrggbb, got "blue""#, START).await;
}

#[tokio::test]
async fn an_unreachable_database_is_retried_then_reported_clearly() {
    let data = tempfile::tempdir().unwrap();
    let port = crate::helpers::free_port();
    let env = [
        ("Database__ConnectionString", format!("Host=127.0.0.1;Port={port};Database=x;Username=u;Password=pw")),
        ("Authentication__DefaultAdminPassword", ADMIN_PASSWORD.to_string()),
        ("Database__StartupTimeoutSeconds", "3".to_string()),
    ];
    let mut portal = Portal::start(&[], &env, data.path());
    let status = portal.wait_exit(EXIT).await;
    assert_eq!(status.code(), Some(1));
    let line = portal.wait_for_message("Startup failed", START).await;
    let retries = portal.messages().iter().filter(|m| m.starts_with("Database not reachable yet")).count();
    assert!(retries >= 2, "expected retries before giving up: {:#?}", portal.messages());
    let message = line["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("could not connect to the database at u@127.0.0.1:{port}/x within")),
        "{message}"
    );
    assert!(message.contains("Database__StartupTimeoutSeconds"), "{message}");
    assert!(!portal.raw_lines().join("\n").contains("pw;"), "no connection string in the logs");
}

#[tokio::test]
async fn a_database_that_comes_up_late_is_waited_for() {
    let db = TestDb::create().await;
    let data = tempfile::tempdir().unwrap();
    let mut proxy = Proxy::new();
    let o = proxy.options();
    let mut env = production_env(&db);
    env[0].1 = format!("Host=127.0.0.1;Port={};Database={};Username={}", o.get_port(), db.name, o.get_username());
    let portal = Portal::start(&[], &env, data.path());
    portal.wait_for_message("Database not reachable yet", START).await;
    proxy.restore().await;
    portal.wait_listening().await;
    portal.wait_for_message("Seeded default admin", START).await;
}

#[tokio::test]
async fn sigterm_while_waiting_for_the_database_exits_promptly() {
    let data = tempfile::tempdir().unwrap();
    let port = crate::helpers::free_port();
    let env = [
        ("DATABASE_URL", format!("postgres://u@127.0.0.1:{port}/x")),
        ("Authentication__DefaultAdminPassword", ADMIN_PASSWORD.to_string()),
    ];
    let mut portal = Portal::start(&[], &env, data.path());
    portal.wait_for_message("Database not reachable yet", START).await;
    portal.signal(Signal::SIGTERM);
    assert!(portal.wait_exit(EXIT).await.success());
    portal.wait_for_message("Startup interrupted by a shutdown signal", START).await;
}

#[tokio::test]
async fn a_failing_migration_exits_with_its_name_and_the_database_error() {
    let db = TestDb::create().await;
    // A leftover object the first migration collides with, as after a botched manual restore.
    let pool = db.pool().await;
    sqlx::raw_sql(r#"CREATE SCHEMA identity; CREATE TABLE identity."Users" (x int);"#).execute(&pool).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut portal = Portal::start(&[], &production_env(&db), data.path());
    assert_eq!(portal.wait_exit(EXIT).await.code(), Some(1));
    let line = portal.wait_for_message("Startup failed", START).await;
    let message = line["message"].as_str().unwrap();
    assert!(message.contains("Migration 'InitialCreate' (version 20261123000000) failed"), "{message}");
    assert!(message.contains(r#"relation "Users" already exists"#), "{message}");
}

#[tokio::test]
async fn the_migrate_command_applies_the_schema_and_exits() {
    let db = TestDb::create().await;
    let data = tempfile::tempdir().unwrap();
    let mut portal = Portal::start(&["migrate"], &production_env(&db), data.path());
    assert!(portal.wait_exit(EXIT).await.success(), "{:#?}", portal.raw_lines());
    let messages = portal.messages();
    assert!(messages.iter().any(|m| m == "Applied migration 'InitialCreate'"), "{messages:#?}");
    assert!(messages.iter().all(|m| !m.contains("Seeded") && !m.contains("listening")), "{messages:#?}");
}

#[test]
fn help_documents_every_environment_key() {
    let out = portal_command(&[]).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for k in KEYS {
        assert!(help.contains(k.key), "--help does not document {}", k.key);
    }
    for command in ["serve", "migrate"] {
        assert!(help.contains(command), "--help does not list `{command}`");
    }
}

#[tokio::test]
async fn healthcheck_command_reports_the_running_portal() {
    let db = TestDb::create().await;
    let data = tempfile::tempdir().unwrap();
    let portal = Portal::start(&[], &production_env(&db), data.path());
    portal.wait_listening().await;
    let ok = portal_command(&[("Application__ListenAddress", format!("0.0.0.0:{}", portal.port))])
        .arg("healthcheck")
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));

    let nobody = crate::helpers::free_port();
    let down = portal_command(&[("Application__ListenAddress", format!("127.0.0.1:{nobody}"))])
        .arg("healthcheck")
        .output()
        .unwrap();
    assert_eq!(down.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&down.stderr);
    assert!(stderr.starts_with(&format!("unhealthy: cannot connect to 127.0.0.1:{nobody}")), "{stderr}");
}

/// Parses a generated .env the way compose reads it (comments, inline `  # …` comments).
fn read_env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#') && l.contains('='))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            let v = v.find(" #").map_or(v, |i| &v[..i]);
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect()
}

#[test]
fn provision_writes_a_valid_private_env_file_once() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    let run = |args: &[&str]| portal_command(&[]).arg("provision").args(args).output().unwrap();
    let out = run(&["ABC0001", "--host", "abc0001.portal.example.com", "--output", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&path).unwrap();
    let pairs = read_env_file(&text);
    let get = |k: &str| pairs.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()).unwrap_or_default();
    assert_eq!(get("COMPOSE_PROJECT_NAME"), "abc0001");
    assert_eq!(get("CUSTOMER_HOST"), "abc0001.portal.example.com");
    assert_eq!(get("Authentication__DefaultAdminEmail"), "admin@abc0001.portal.example.com");
    let secrets = ["POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "Authentication__DefaultAdminPassword"].map(get);
    for s in &secrets {
        assert!(s.len() >= 43 && !s.contains(['+', '/', '=', ' ']), "256-bit URL-safe secret: {s:?}");
    }
    assert!(secrets[0] != secrets[1] && secrets[1] != secrets[2], "each secret is fresh");

    // The file is a valid Production configuration for the portal as compose would start it.
    let mut env = pairs.clone();
    env.push(("POSTGRES_HOST".into(), "timescaledb".into()));
    env.push(("Application__PublicUrl".into(), format!("https://{}", get("CUSTOMER_HOST"))));
    let (config, _) = tau_acuvim_portal::config::Config::from_env(&tau_acuvim_portal::config::Env::from_pairs(env))
        .unwrap_or_else(|e| panic!("generated .env is not a valid config: {e}"));
    assert_eq!(config.database.describe(), "power_user@timescaledb:5432/power_monitoring");

    let again = run(&["ABC0001", "--host", "abc0001.portal.example.com", "--output", path.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already; pass --force"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "the existing file is untouched");
    let forced =
        run(&["ABC0001", "--host", "abc0001.portal.example.com", "--output", path.to_str().unwrap(), "--force"]);
    assert!(forced.status.success());
    assert_ne!(std::fs::read_to_string(&path).unwrap(), text, "new secrets");

    let bad = run(&["abc-0001!", "--host", "x.example.com"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("expected 2 to 32 letters and digits"));
}
