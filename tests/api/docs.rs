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
    let compose_only = [
        "COMPOSE_PROJECT_NAME",
        "CUSTOMER_HOST",
        "GRAFANA_ADMIN_PASSWORD",
        "GRAFANA_DB_PASSWORD",
        "TRAEFIK_ADDRESS",
        "TIMESCALEDB_IMAGE",
        "COMPOSE_PROFILES",
        "MQTT_PORT",
        "MOSQUITTO_IMAGE",
        "TAU_LICENSE_PUBLIC_KEY",
    ];
    for k in keys_in_file {
        let known = KEYS.iter().any(|s| s.key == k || (s.secret && format!("{}_FILE", s.key) == k));
        assert!(known || compose_only.contains(&k), ".env.example mentions {k}, which nothing reads");
    }
}

/// Every variable the compose file interpolates is one `.env.example` explains.
#[test]
fn env_example_explains_every_variable_of_the_compose_file() {
    let example = read(".env.example");
    let text = read("docker-compose.prod.yml");
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

#[test]
fn readme_metrics_table_matches_metrics_rs() {
    readme_section_matches("metrics", &tau_acuvim_portal::metrics::markdown_table());
}

/// The words of `text` that start with a `starts` character at a word boundary and go on while
/// `part` holds, each with the text that follows it.
fn tokens(text: &str, starts: impl Fn(char) -> bool, part: impl Fn(char) -> bool) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut i = 0;
    let bytes: Vec<(usize, char)> = text.char_indices().collect();
    while i < bytes.len() {
        let (at, c) = bytes[i];
        let boundary = i == 0 || !part(bytes[i - 1].1);
        if boundary && starts(c) {
            let mut j = i;
            while j < bytes.len() && part(bytes[j].1) {
                j += 1;
            }
            let end = bytes.get(j).map_or(text.len(), |b| b.0);
            out.push((&text[at..end], &text[end..]));
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

/// The facts OPERATIONS.md (and the README) state that can drift from the code: migration
/// names, metric names, environment keys and commands. The documents are the subject here.
#[test]
fn operations_md_states_the_codes_migrations_metrics_keys_and_commands() {
    use tau_acuvim_portal::db::migrate::MIGRATOR;
    use tau_acuvim_portal::metrics::METRICS;
    let ops = read("OPERATIONS.md");
    let readme = read("README.md");

    // The first start's log lines list every migration, in order.
    let block_at = ops.find("Expected on the first start:").expect("OPERATIONS.md shows the first start's log lines");
    let block = &ops[block_at..];
    let block = &block[..block.find("\n```\n\n").unwrap_or(block.len())];
    let listed: Vec<&str> = block
        .lines()
        .filter_map(|l| l.strip_prefix("Applied migration '").and_then(|l| l.strip_suffix('\'')))
        .collect();
    let migrations: Vec<String> = MIGRATOR.iter().map(|m| m.description.to_string()).collect();
    assert_eq!(listed, migrations, "OPERATIONS.md Provisioning step 6 lists the migrations a first start applies");

    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    for (name, doc) in [("OPERATIONS.md", &ops), ("README.md", &readme)] {
        // Metric names.
        // (A bare `tau_portal_` is the prefix in a grep pattern.)
        for (token, _) in tokens(doc, |c| c == 't', is_word)
            .into_iter()
            .filter(|(t, _)| t.starts_with("tau_portal_") && !t.ends_with('_'))
        {
            let base = ["_bucket", "_sum", "_count"].iter().fold(token, |t, s| t.strip_suffix(s).unwrap_or(t));
            assert!(
                METRICS.iter().any(|m| m.name == base || m.name == token),
                "{name} names the metric {token}, which the portal does not export"
            );
        }
        // Environment keys, also as `Section__Prefix*`.
        for (token, rest) in
            tokens(doc, |c| c.is_ascii_uppercase(), is_word).into_iter().filter(|(t, _)| t.contains("__"))
        {
            let token = token.strip_suffix("_FILE").unwrap_or(token);
            if token == "Application__RunMdoe" {
                continue; // the README's example of a mistyped key
            }
            let known = if rest.starts_with('*') {
                KEYS.iter().any(|k| k.key.starts_with(token))
            } else {
                KEYS.iter().any(|k| k.key == token)
            };
            assert!(known, "{name} names the configuration key {token}, which the portal does not read");
        }
        // Commands of the binary.
        let help = std::process::Command::new(env!("CARGO_BIN_EXE_tau-portal")).arg("--help").output().unwrap();
        let help = String::from_utf8_lossy(&help.stdout).to_string();
        let commands: Vec<&str> = help
            .lines()
            .skip_while(|l| !l.starts_with("Commands:"))
            .skip(1)
            .take_while(|l| l.starts_with("  "))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert!(commands.contains(&"serve") && commands.contains(&"provision"), "{help}");
        let mut rest = doc.as_str();
        while let Some(at) = rest.find("tau-portal ") {
            rest = &rest[at + "tau-portal ".len()..];
            let word: String = rest.chars().take_while(|c| c.is_ascii_lowercase()).collect();
            if !word.is_empty()
                && rest.starts_with(&word)
                && !["is", "on", "in", "as", "to", "the", "and", "or"].contains(&word.as_str())
            {
                assert!(
                    commands.contains(&word.as_str()),
                    "{name} runs `tau-portal {word}`, which is not a command ({commands:?})"
                );
            }
        }
    }

    // Compose variables OPERATIONS.md names are the compose file's (or a key the portal reads).
    let example = read(".env.example");
    let compose = read("docker-compose.prod.yml");
    let former = ["TRAEFIK_PUBLIC_SUBNET"]; // named only to say it is gone
    // Read by config.rs as the fallback of Application__Environment (the runbook's Admin stack
    // sets it), not a key of its own.
    let aliases = ["ASPNETCORE_ENVIRONMENT"];
    for (token, _) in
        tokens(&ops, |c| c.is_ascii_uppercase(), |c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    {
        let variable = token.contains('_') && !token.starts_with('_') && !token.ends_with('_') && token.len() > 4;
        if !variable || token.contains("__") || former.contains(&token) || aliases.contains(&token) {
            continue;
        }
        let known =
            KEYS.iter().any(|k| k.key == token) || example.contains(&format!("{token}=")) || compose.contains(token);
        assert!(known, "OPERATIONS.md names {token}, which neither the compose file nor the portal knows");
    }
}

/// The TimescaleDB queries tests/api/timescale.rs runs are OPERATIONS.md's, as the shell passes
/// them to psql (`\"` inside the double-quoted `-c` argument).
#[test]
fn operations_md_timescaledb_queries_are_the_ones_tested() {
    let ops = read("OPERATIONS.md");
    for sql in
        [crate::timescale::CHUNKS_QUERY, crate::timescale::RUNBOOK_CHUNKS_QUERY, crate::timescale::COMPRESSION_QUERY]
    {
        let shell = sql.replace('"', "\\\"");
        assert!(ops.contains(&shell), "OPERATIONS.md does not show this query as tested:\n{shell}");
    }
}
