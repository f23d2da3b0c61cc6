//! The README's configuration table and `.env.example` are generated from / checked against the
//! key table in `config.rs`, so documentation and code cannot drift apart.

use std::path::Path;

use tau_acuvim_portal::config::{KEYS, markdown_table};

fn read(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Checks (or, with `TAU_UPDATE_DOCS=1`, rewrites) the README text between two markers.
fn readme_section_matches(marker: &str, expected: &str) {
    let readme = read("README.md");
    let start = format!("<!-- {marker}:start -->\n");
    let end = format!("<!-- {marker}:end -->");
    let from = readme.find(&start).unwrap_or_else(|| panic!("README has no {start:?} marker")) + start.len();
    let to = readme[from..].find(&end).unwrap_or_else(|| panic!("README has no {end:?} marker")) + from;
    if std::env::var_os("TAU_UPDATE_DOCS").is_some() {
        let updated = format!("{}{expected}{}", &readme[..from], &readme[to..]);
        std::fs::write(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"), updated).unwrap();
        return;
    }
    assert!(
        readme[from..to] == *expected,
        "README's {marker} section is out of date: run `TAU_UPDATE_DOCS=1 scripts/test.sh docs::` or paste:\n{expected}"
    );
}

#[test]
fn readme_configuration_table_matches_config_rs() {
    readme_section_matches("env-keys", &markdown_table());
}

#[test]
fn readme_ingest_fields_match_the_measurement_store() {
    readme_section_matches("ingest-fields", &tau_acuvim_portal::measurements::markdown_table());
}

#[test]
fn env_example_lists_every_key_and_only_known_keys() {
    let example = read(".env.example");
    let keys_in_file: Vec<&str> = example
        .lines()
        .map(|l| l.trim_start_matches('#').trim())
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim()))
        .filter(|k| !k.is_empty() && !k.contains(' '))
        .collect();
    for k in KEYS {
        assert!(keys_in_file.contains(&k.key), ".env.example does not mention {}", k.key);
    }
    // Keys the compose file itself uses (not read by the binary).
    let compose_only = ["COMPOSE_PROJECT_NAME", "CUSTOMER_HOST", "GRAFANA_ADMIN_PASSWORD", "TRAEFIK_PUBLIC_SUBNET"];
    for k in keys_in_file {
        let known = KEYS.iter().any(|s| s.key == k || (s.secret && format!("{}_FILE", s.key) == k));
        assert!(known || compose_only.contains(&k), ".env.example mentions {k}, which nothing reads");
    }
}
