//! The container files, checked by parsing (no Docker engine here): every property the runbook
//! and DESIGN.md rely on, and the binary run the way the container runs it (uid 1000, /data).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;

use serde_yaml_ng::Value;
use tau_acuvim_portal::auth::forward::IDENTITY_HEADERS;
use tau_acuvim_portal::config::KEYS;

use crate::helpers::{Portal, TestDb, production_env};

fn repo_file(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(name)).unwrap()
}

fn compose() -> Value {
    serde_yaml_ng::from_str(&repo_file("docker-compose.prod.yml")).expect("valid YAML")
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence().map(|s| s.iter().filter_map(|x| x.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

fn env_of(service: &Value) -> Vec<(String, String)> {
    service["environment"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (k.as_str().unwrap().to_string(), v.as_str().map(str::to_string).unwrap_or_else(|| format!("{v:?}")))
        })
        .collect()
}

#[test]
fn services_containers_volumes_and_networks_are_the_runbooks() {
    let c = compose();
    let s = &c["services"];
    assert_eq!(s["timescaledb"]["container_name"], "${COMPOSE_PROJECT_NAME}_timescale");
    assert_eq!(s["portal"]["container_name"], "${COMPOSE_PROJECT_NAME}_portal");
    assert_eq!(s["grafana"]["container_name"], "${COMPOSE_PROJECT_NAME}_grafana");
    assert!(s["timescaledb"]["image"].as_str().unwrap().starts_with("timescale/timescaledb:"));
    assert!(format!("{:?}", s["timescaledb"]["healthcheck"]["test"]).contains("pg_isready"));
    assert_eq!(s["portal"]["image"], "tau-acuvim-portal:latest");
    assert_eq!(s["portal"]["build"], ".");
    assert_eq!(s["portal"]["depends_on"]["timescaledb"]["condition"], "service_healthy");
    assert_eq!(s["grafana"]["image"], "grafana/grafana:11.4.0");
    for volume in ["timescale-data", "grafana-data", "portal-branding", "portal-keys"] {
        assert!(c["volumes"].get(volume).is_some(), "volume {volume} (named in the runbook's backup table) is missing");
    }
    let portal_volumes = strings(&s["portal"]["volumes"]);
    assert!(portal_volumes.contains(&"portal-keys:/data/keys".to_string()), "{portal_volumes:?}");
    assert!(portal_volumes.contains(&"portal-branding:/data/branding".to_string()), "{portal_volumes:?}");
    assert!(strings(&s["timescaledb"]["volumes"]).iter().any(|v| v.starts_with("timescale-data:")));
    assert!(strings(&s["grafana"]["volumes"]).iter().any(|v| v.starts_with("grafana-data:")));
    assert_eq!(c["networks"]["traefik-public"]["external"], true);
}

#[test]
fn traefik_labels_route_the_customer_host_and_gate_grafana() {
    let c = compose();
    let portal = strings(&c["services"]["portal"]["labels"]);
    let grafana = strings(&c["services"]["grafana"]["labels"]);
    let has = |labels: &[String], needle: &str| labels.iter().any(|l| l.contains(needle));
    for labels in [&portal, &grafana] {
        assert!(has(labels, "traefik.enable=true"));
        assert!(has(labels, ".rule=Host(`${CUSTOMER_HOST}`)"), "{labels:?}");
        assert!(has(labels, ".entrypoints=websecure"));
        assert!(has(labels, ".tls.certresolver=le"));
    }
    assert!(has(&grafana, "&& PathPrefix(`${Grafana__EmbedPathPrefix:-/grafana}`)"), "{grafana:?}");
    assert!(has(&grafana, ".middlewares=${COMPOSE_PROJECT_NAME}-grafana-auth"));
    assert!(has(&grafana, ".forwardauth.address=http://${COMPOSE_PROJECT_NAME}_portal:8080/api/auth/check"));
    let response_headers = grafana.iter().find(|l| l.contains(".forwardauth.authResponseHeaders=")).unwrap();
    for h in IDENTITY_HEADERS {
        assert!(response_headers.contains(h), "authResponseHeaders misses {h}: a client could spoof it");
    }
}

#[test]
fn grafana_trusts_identity_headers_only_through_auth_proxy_from_the_proxy_network() {
    let env: std::collections::HashMap<String, String> =
        env_of(&compose()["services"]["grafana"]).into_iter().collect();
    let expect = [
        ("GF_AUTH_PROXY_ENABLED", "true"),
        ("GF_AUTH_PROXY_HEADER_NAME", "X-WEBAUTH-USER"),
        ("GF_AUTH_PROXY_AUTO_SIGN_UP", "true"),
        ("GF_AUTH_ANONYMOUS_ENABLED", "false"),
        ("GF_AUTH_BASIC_ENABLED", "false"),
        ("GF_AUTH_DISABLE_LOGIN_FORM", "true"),
        ("GF_SECURITY_ALLOW_EMBEDDING", "true"),
        ("GF_SERVER_SERVE_FROM_SUB_PATH", "true"),
    ];
    for (k, v) in expect {
        assert_eq!(env.get(k).map(String::as_str), Some(v), "{k}");
    }
    assert!(
        env["GF_AUTH_PROXY_WHITELIST"].starts_with("${TRAEFIK_PUBLIC_SUBNET"),
        "{}",
        env["GF_AUTH_PROXY_WHITELIST"]
    );
    assert!(env["GF_SERVER_ROOT_URL"].starts_with("https://${CUSTOMER_HOST}"));
    for h in ["Email:X-WEBAUTH-EMAIL", "Name:X-WEBAUTH-NAME", "Role:X-WEBAUTH-ROLE"] {
        assert!(env["GF_AUTH_PROXY_HEADERS"].contains(h), "{h}");
    }
}

#[test]
fn the_portal_gets_only_known_keys_and_every_variable_comes_from_env_example() {
    let c = compose();
    for (key, _) in env_of(&c["services"]["portal"]) {
        assert!(KEYS.iter().any(|k| k.key == key), "the compose file passes {key}, which the portal does not read");
    }
    let example = repo_file(".env.example");
    let text = repo_file("docker-compose.prod.yml");
    let mut rest = text.as_str();
    while let Some(at) = rest.find("${") {
        let name: String = rest[at + 2..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        assert!(
            example.contains(&format!("{name}=")),
            "${{{name}}} is used by the compose file but not in .env.example"
        );
        rest = &rest[at + 2..];
    }
}

/// A key uncommented in a customer's .env must reach the portal: the compose file passes keys one
/// by one, so a missing one would be silently ignored.
#[test]
fn every_key_an_operator_may_set_reaches_the_portal() {
    let passed: Vec<String> = env_of(&compose()["services"]["portal"]).into_iter().map(|(k, _)| k).collect();
    // Fixed by the container (listen address, data volumes) or replaced by the POSTGRES_* parts.
    let not_for_compose = [
        "Application__ListenAddress",
        "Application__DataDirectory",
        "Database__ConnectionString",
        "DATABASE_URL",
        "POSTGRES_PORT",
    ];
    for k in KEYS.iter().filter(|k| !not_for_compose.contains(&k.key)) {
        assert!(passed.iter().any(|p| p == k.key), "{} set in .env would never reach the portal", k.key);
    }
}

#[test]
fn the_dockerfile_runs_as_uid_1000_with_a_healthcheck() {
    let d = repo_file("Dockerfile");
    for needle in [
        "--uid 1000",
        "USER app",
        "EXPOSE 8080",
        r#"CMD ["tau-portal", "healthcheck"]"#,
        "chown -R app:app /data",
        "mkdir -p /data/keys /data/branding",
    ] {
        assert!(d.contains(needle), "Dockerfile lacks {needle:?}");
    }
}

/// The binary as the container runs it: uid 1000, data folders owned by it.
#[tokio::test]
async fn runs_as_uid_1000_on_a_data_folder_it_owns_and_explains_one_it_cannot_write() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("SKIPPED: uid 1000 test (needs root to switch user)");
        return;
    }
    let db = TestDb::create().await;
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = root.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::os::unix::fs::chown(&data, Some(1000), Some(1000)).unwrap();

    let start = |dir: &Path| {
        let mut cmd = crate::helpers::portal_command(&production_env(&db));
        cmd.uid(1000).gid(1000);
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
