use super::npgsql::split_pairs;
use super::*;
use sqlx::postgres::PgSslMode;

const ADMIN_PW: &str = "correct horse battery staple";
const PUBLIC_URL: &str = "https://abc0001.portal.example.com";

/// A valid Production environment; tests add or override keys.
fn env(extra: &[(&str, &str)]) -> Env {
    let mut pairs: BTreeMap<String, String> = [
        (
            "Database__ConnectionString",
            "Host=db;Port=5432;Database=power_monitoring;Username=power_user;Password=s3cret",
        ),
        ("Authentication__DefaultAdminPassword", ADMIN_PW),
        ("Application__PublicUrl", PUBLIC_URL),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        pairs.insert(k.to_string(), v.to_string());
    }
    Env::from_pairs(pairs)
}

fn ok(extra: &[(&str, &str)]) -> (Config, Vec<String>) {
    Config::from_env(&env(extra)).unwrap_or_else(|e| panic!("expected a valid config, got: {e}"))
}

/// The single error message for `key`, asserting it is the only error.
fn only_error(extra: &[(&str, &str)]) -> String {
    let errors = Config::from_env(&env(extra)).expect_err("expected a configuration error").0;
    assert_eq!(errors.len(), 1, "expected one error, got {errors:?}");
    errors[0].to_string()
}

#[test]
fn defaults_match_the_contract() {
    let (c, warnings) = ok(&[]);
    assert_eq!(c.run_mode, RunMode::Client);
    assert_eq!(c.environment, Environment::Production);
    assert_eq!(c.listen_address.to_string(), "0.0.0.0:8080");
    assert_eq!(c.data_directory, PathBuf::from("/data"));
    assert_eq!(c.grafana_embed_path_prefix, "/grafana");
    assert_eq!(c.default_admin.email, "admin@example.com");
    assert_eq!(c.white_label.application_name, "Tau Acuvim Portal");
    assert_eq!(c.white_label.primary_color.as_str(), "#0c4a6e");
    assert!(!c.fleet_ingest.enabled);
    assert_eq!(c.fleet_ingest.interval, Duration::from_secs(60));
    assert_eq!(c.fleet_ingest.batch_size, 5000);
    assert_eq!(c.database.max_connections, 10);
    assert_eq!(c.database.startup_timeout, Duration::from_secs(60));
    assert_eq!(c.shutdown_timeout, Duration::from_secs(8));
    assert_eq!(c.public_url.unwrap().as_str(), "https://abc0001.portal.example.com/");
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn every_key_has_a_default_in_the_table_or_is_optional() {
    for k in KEYS {
        assert!(!k.help.is_empty(), "{} has no help text", k.key);
        if k.secret {
            assert!(k.default.is_empty(), "secret {} must not have a default", k.key);
        }
    }
}

#[test]
fn every_key_is_spelled_once_in_a_known_section_or_the_compose_parts() {
    let mut seen = std::collections::BTreeSet::new();
    for k in KEYS {
        assert!(seen.insert(k.key.to_ascii_lowercase()), "{} is in the table twice", k.key);
        let known = match k.key.split_once("__") {
            Some((section, name)) => SECTIONS.contains(&section) && !name.is_empty() && !name.contains("__"),
            None => k.key.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
        };
        assert!(known, "{} is neither Section__Key of a known section nor an UPPER_CASE variable", k.key);
    }
}

#[test]
fn a_key_without_a_value_reads_its_documented_default() {
    // Each default goes through the key's own parser: a key read under another spelling than
    // its table entry would get no default and fail here.
    let (c, _) = ok(&[]);
    assert_eq!(c.listen_address.to_string(), keys::LISTEN_ADDRESS.default);
    assert_eq!(c.modbus.buffer_readings.to_string(), keys::MODBUS_BUFFER_READINGS.default);
    assert_eq!(c.white_label.application_name, keys::APPLICATION_NAME.default);
    assert_eq!(c.data_directory.to_string_lossy(), keys::DATA_DIRECTORY.default);
}

#[test]
fn run_mode_and_environment_are_case_insensitive() {
    let (c, _) = ok(&[("Application__RunMode", "admin"), ("Application__Environment", "development")]);
    assert_eq!(c.run_mode, RunMode::Admin);
    assert_eq!(c.environment, Environment::Development);
}

#[test]
fn keys_are_matched_case_insensitively() {
    let (c, warnings) = ok(&[("APPLICATION__RUNMODE", "Admin")]);
    assert_eq!(c.run_mode, RunMode::Admin);
    assert!(warnings.iter().all(|w| !w.contains("APPLICATION__RUNMODE")), "{warnings:?}");
}

#[test]
fn aspnetcore_environment_is_read_when_application_environment_is_unset() {
    let (c, _) = ok(&[("ASPNETCORE_ENVIRONMENT", "Development")]);
    assert_eq!(c.environment, Environment::Development);
    let (c, _) = ok(&[("ASPNETCORE_ENVIRONMENT", "Development"), ("Application__Environment", "Production")]);
    assert_eq!(c.environment, Environment::Production);
    assert_eq!(
        only_error(&[("ASPNETCORE_ENVIRONMENT", "Staging")]),
        "ASPNETCORE_ENVIRONMENT: expected Production or Development, got \"Staging\""
    );
}

/// Without it, the forwardAuth login redirect was built from X-Forwarded-Host/Host, which a client
/// controls where no proxy overwrites them.
#[test]
fn production_requires_the_public_url_for_serve_only() {
    let msg = only_error(&[("Application__PublicUrl", "")]);
    assert!(msg.starts_with("Application__PublicUrl: required in Production"), "{msg}");
    let no_url = Env::from_pairs([("DATABASE_URL", "postgres://u:p@db/x")]);
    assert!(Config::read(&no_url, Purpose::Maintenance).is_ok(), "migrate serves nothing");
}

#[test]
fn the_default_trusted_proxies_are_loopback_only() {
    let (c, _) = ok(&[]);
    let nets: Vec<String> = c.auth.trusted_proxies.iter().map(ToString::to_string).collect();
    assert_eq!(nets, ["127.0.0.0/8", "::1/128"]);
}

#[test]
fn development_derives_a_local_public_url() {
    let (c, _) = ok(&[
        ("Application__Environment", "Development"),
        ("Application__ListenAddress", "127.0.0.1:9090"),
        ("Application__PublicUrl", ""),
    ]);
    assert_eq!(c.public_url.unwrap().as_str(), "http://localhost:9090/");
}

#[test]
fn invalid_values_name_the_key_and_what_is_expected() {
    let cases: &[(&str, &str, &str)] = &[
        ("Application__RunMode", "Fleet", "Application__RunMode: expected Client or Admin, got \"Fleet\""),
        (
            "Application__Environment",
            "Prod",
            "Application__Environment: expected Production or Development, got \"Prod\"",
        ),
        (
            "Application__PublicUrl",
            "portal.example.com",
            "Application__PublicUrl: expected an absolute http:// or https:// URL, got \"portal.example.com\"",
        ),
        (
            "Application__PublicUrl",
            "ftp://x.example.com",
            "Application__PublicUrl: expected an absolute http:// or https:// URL, got \"ftp://x.example.com\"",
        ),
        (
            "Application__ListenAddress",
            "8080",
            "Application__ListenAddress: expected an address such as 0.0.0.0:8080, got \"8080\"",
        ),
        (
            "Application__ShutdownTimeoutSeconds",
            "0",
            "Application__ShutdownTimeoutSeconds: expected a whole number from 1 to 300, got \"0\"",
        ),
        (
            "Database__StartupTimeoutSeconds",
            "soon",
            "Database__StartupTimeoutSeconds: expected a whole number from 1 to 3600, got \"soon\"",
        ),
        ("Database__MaxConnections", "0", "Database__MaxConnections: expected a whole number from 1 to 500, got \"0\""),
        (
            "Authentication__DefaultAdminEmail",
            "admin",
            "Authentication__DefaultAdminEmail: expected an email address, got \"admin\"",
        ),
        (
            "Authentication__DefaultAdminEmail",
            "a b@example.com",
            "Authentication__DefaultAdminEmail: expected an email address, got \"a b@example.com\"",
        ),
        (
            "Grafana__EmbedPathPrefix",
            "grafana",
            "Grafana__EmbedPathPrefix: expected a path such as /grafana (leading slash, no trailing slash), got \"grafana\"",
        ),
        (
            "Grafana__EmbedPathPrefix",
            "/grafana/",
            "Grafana__EmbedPathPrefix: expected a path such as /grafana (leading slash, no trailing slash), got \"/grafana/\"",
        ),
        ("WhiteLabel__PrimaryColor", "blue", "WhiteLabel__PrimaryColor: expected #rrggbb, got \"blue\""),
        ("WhiteLabel__SecondaryColor", "#12345", "WhiteLabel__SecondaryColor: expected #rrggbb, got \"#12345\""),
        ("WhiteLabel__AccentColor", "#12345g", "WhiteLabel__AccentColor: expected #rrggbb, got \"#12345g\""),
        ("FleetIngest__Enabled", "maybe", "FleetIngest__Enabled: expected true or false, got \"maybe\""),
        (
            "FleetIngest__Url",
            "admin.example.com",
            "FleetIngest__Url: expected an absolute http:// or https:// URL, got \"admin.example.com\"",
        ),
        (
            "FleetIngest__IntervalSeconds",
            "1",
            "FleetIngest__IntervalSeconds: expected a whole number from 5 to 86400, got \"1\"",
        ),
        (
            "FleetIngest__BatchSize",
            "100000",
            "FleetIngest__BatchSize: expected a whole number from 1 to 50000, got \"100000\"",
        ),
    ];
    for (key, value, expected) in cases {
        assert_eq!(only_error(&[(key, value)]), *expected, "for {key}={value}");
    }
    let long_name = "x".repeat(101);
    assert_eq!(
        only_error(&[("WhiteLabel__ApplicationName", &long_name)]),
        "WhiteLabel__ApplicationName: expected at most 100 characters"
    );
}

#[test]
fn colours_are_normalised_to_lowercase() {
    let (c, _) = ok(&[("WhiteLabel__AccentColor", "#ABCDEF")]);
    assert_eq!(c.white_label.accent_color.as_str(), "#abcdef");
}

#[test]
fn all_errors_are_reported_at_once() {
    let errors = Config::from_env(&env(&[
        ("WhiteLabel__PrimaryColor", "blue"),
        ("Application__RunMode", "x"),
        ("FleetIngest__BatchSize", "-1"),
    ]))
    .unwrap_err();
    let keys: Vec<&str> = errors.0.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["Application__RunMode", "WhiteLabel__PrimaryColor", "FleetIngest__BatchSize"]);
    assert!(errors.to_string().contains("; "), "{errors}");
}

#[test]
fn production_requires_a_long_enough_default_admin_password() {
    let missing = Env::from_pairs([("DATABASE_URL", "postgres://u:p@db/x"), ("Application__PublicUrl", PUBLIC_URL)]);
    let errors = Config::from_env(&missing).unwrap_err().0;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].key, "Authentication__DefaultAdminPassword");
    assert!(errors[0].message.starts_with("required in Production"), "{}", errors[0].message);

    assert_eq!(
        only_error(&[("Authentication__DefaultAdminPassword", "short")]),
        "Authentication__DefaultAdminPassword: expected at least 12 characters, got 5"
    );
}

#[test]
fn migrate_and_rollup_do_not_need_the_default_admin_password() {
    let missing = Env::from_pairs([("DATABASE_URL", "postgres://u:p@db/x")]);
    let (c, _) = Config::read(&missing, Purpose::Maintenance).expect("maintenance seeds no admin");
    assert!(c.default_admin.password.is_none());
    // Still refused for serve, which seeds the admin.
    assert!(Config::read(&missing, Purpose::Serve).is_err());
}

/// `.env.example` copied and left unfilled once gave `POSTGRES_PASSWORD='# [secret] openssl rand
/// -base64 32'`: 32 publicly known characters. Placeholders are refused, naming the key and never
/// quoting the value.
#[test]
fn placeholder_secrets_are_refused_naming_the_key() {
    let placeholders = [
        "# [secret] openssl rand -base64 32",
        "#a-comment-taken-as-a-value",
        "<generated>",
        "[secret]",
        "${POSTGRES_PASSWORD}",
        "changeme-changeme",
        "CHANGE_ME please, later",
        "please replace-me now",
        "your-password-here",
        "xxxxxxxxxxxxxxxx",
        "password",
        "Secret",
    ];
    for key in ["Authentication__DefaultAdminPassword", "POSTGRES_PASSWORD", "FleetIngest__Token"] {
        for value in placeholders {
            let mut extra = vec![(key, value)];
            if key == "FleetIngest__Token" {
                extra.extend([("FleetIngest__Enabled", "true"), ("FleetIngest__Url", "https://admin.example.com")]);
            }
            if key == "POSTGRES_PASSWORD" {
                extra.extend([("Database__ConnectionString", ""), ("POSTGRES_DB", "d"), ("POSTGRES_USER", "u")]);
            }
            let msg = only_error(&extra);
            assert!(msg.starts_with(&format!("{key}: ")), "{msg}");
            assert!(msg.contains("set a real secret"), "{msg}");
            assert!(!msg.contains(value), "the message must not quote the value: {msg}");
        }
    }
    // Real secrets pass, also ones that contain a '#' or the word "password" somewhere.
    for value in ["Zk3r-9vQx_2mW7pLs0aB", "s3cret#with#hashes", "my password is long enough", "a.example.value"] {
        ok(&[("Authentication__DefaultAdminPassword", value)]);
    }
}

#[test]
fn development_accepts_a_missing_default_admin_password() {
    let dev = Env::from_pairs([("DATABASE_URL", "postgres://u:p@db/x"), ("Application__Environment", "Development")]);
    let (c, _) = Config::from_env(&dev).unwrap();
    assert!(c.default_admin.password.is_none());
}

#[test]
fn secrets_are_read_from_file_variants() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("admin-password");
    std::fs::write(&path, "from a file, long enough\n").unwrap();
    let path = path.to_str().unwrap();
    let e = Env::from_pairs([
        ("DATABASE_URL", "postgres://u:p@db/x"),
        ("Authentication__DefaultAdminPassword_FILE", path),
        ("Application__PublicUrl", PUBLIC_URL),
    ]);
    let (c, warnings) = Config::from_env(&e).unwrap();
    assert_eq!(c.default_admin.password.unwrap().expose_secret(), "from a file, long enough");
    assert!(warnings.iter().all(|w| !w.contains("_FILE")), "{warnings:?}");
}

#[test]
fn secret_file_problems_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let msg = only_error(&[
        ("Authentication__DefaultAdminPassword", ""),
        ("Authentication__DefaultAdminPassword_FILE", missing.to_str().unwrap()),
    ]);
    assert!(msg.starts_with("Authentication__DefaultAdminPassword_FILE: cannot read secret file"), "{msg}");

    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let msg = only_error(&[
        ("Authentication__DefaultAdminPassword", ""),
        ("Authentication__DefaultAdminPassword_FILE", empty.to_str().unwrap()),
    ]);
    assert!(msg.ends_with("is empty"), "{msg}");

    let file = dir.path().join("pw");
    std::fs::write(&file, ADMIN_PW).unwrap();
    let msg = only_error(&[("Authentication__DefaultAdminPassword_FILE", file.to_str().unwrap())]);
    assert_eq!(
        msg,
        "Authentication__DefaultAdminPassword: set either Authentication__DefaultAdminPassword or \
         Authentication__DefaultAdminPassword_FILE, not both"
    );
}

#[test]
fn secrets_never_appear_in_debug_output() {
    let (c, _) = ok(&[
        ("FleetIngest__Token", "tok-very-secret"),
        ("FleetIngest__Enabled", "true"),
        ("FleetIngest__Url", "https://admin.example.com"),
    ]);
    let debug = format!("{c:?}");
    for secret in ["s3cret", ADMIN_PW, "tok-very-secret"] {
        assert!(!debug.contains(secret), "{secret} leaked into {debug}");
    }
    assert!(debug.contains("power_user@db:5432/power_monitoring"), "{debug}");
}

#[test]
fn unknown_keys_of_known_sections_are_warned_about() {
    let (_, warnings) =
        ok(&[("Application__RunMdoe", "Admin"), ("Logging__LogLevel__Default", "Debug"), ("HOME", "/root")]);
    assert_eq!(warnings.iter().filter(|w| w.starts_with("Unknown configuration key")).count(), 1, "{warnings:?}");
    assert!(warnings.iter().any(|w| w.contains("Application__RunMdoe")), "{warnings:?}");
}

#[test]
fn empty_values_count_as_unset() {
    let (c, _) = ok(&[("WhiteLabel__PrimaryColor", ""), ("Application__RunMode", " ")]);
    assert_eq!(c.white_label.primary_color.as_str(), "#0c4a6e");
    assert_eq!(c.run_mode, RunMode::Client);
}

#[test]
fn fleet_ingest_requires_url_and_token_when_enabled() {
    let errors = Config::from_env(&env(&[("FleetIngest__Enabled", "true")])).unwrap_err().0;
    let msgs: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        msgs,
        [
            "FleetIngest__Url: required when FleetIngest__Enabled is true",
            "FleetIngest__Token: required when FleetIngest__Enabled is true"
        ]
    );
    let (c, _) = ok(&[
        ("FleetIngest__Enabled", "TRUE"),
        ("FleetIngest__Url", "https://admin.portal.example.com"),
        ("FleetIngest__Token", "abc"),
        ("FleetIngest__IntervalSeconds", "30"),
        ("FleetIngest__BatchSize", "100"),
    ]);
    assert!(c.fleet_ingest.enabled);
    assert_eq!(c.fleet_ingest.url.unwrap().host_str(), Some("admin.portal.example.com"));
    assert_eq!(c.fleet_ingest.interval, Duration::from_secs(30));
    assert_eq!(c.fleet_ingest.batch_size, 100);
}

// ---- database source resolution ----

fn db_only(pairs: &[(&str, &str)]) -> Result<DatabaseConfig, Vec<ConfigError>> {
    let mut all: Vec<(&str, &str)> =
        vec![("Authentication__DefaultAdminPassword", ADMIN_PW), ("Application__PublicUrl", PUBLIC_URL)];
    all.extend_from_slice(pairs);
    Config::from_env(&Env::from_pairs(all.iter().copied())).map(|(c, _)| c.database).map_err(|e| e.0)
}

#[test]
fn connection_string_wins_over_database_url_and_parts() {
    let db = db_only(&[
        ("Database__ConnectionString", "Host=a;Database=one;Username=u"),
        ("DATABASE_URL", "postgres://u@b/two"),
        ("POSTGRES_HOST", "c"),
        ("POSTGRES_DB", "three"),
        ("POSTGRES_USER", "u"),
    ])
    .unwrap();
    assert_eq!(db.source, "Database__ConnectionString (Npgsql key=value form)");
    assert_eq!(db.describe(), "u@a:5432/one");
}

#[test]
fn database_url_wins_over_parts() {
    let db =
        db_only(&[("DATABASE_URL", "postgres://u:pw@b:6543/two"), ("POSTGRES_DB", "three"), ("POSTGRES_USER", "u")])
            .unwrap();
    assert_eq!(db.source, "DATABASE_URL (URL)");
    assert_eq!(db.describe(), "u@b:6543/two");
}

#[test]
fn connection_string_may_be_a_url() {
    let db = db_only(&[("Database__ConnectionString", "postgresql://u:pw@b/x?sslmode=disable")]).unwrap();
    assert_eq!(db.source, "Database__ConnectionString (URL)");
    assert!(matches!(db.connect.get_ssl_mode(), PgSslMode::Disable));
}

#[test]
fn compose_parts_are_the_last_resort() {
    let db = db_only(&[
        ("POSTGRES_HOST", "timescaledb"),
        ("POSTGRES_DB", "power_monitoring"),
        ("POSTGRES_USER", "power_user"),
        ("POSTGRES_PASSWORD", "pw"),
    ])
    .unwrap();
    assert_eq!(db.source, "POSTGRES_HOST/POSTGRES_PORT/POSTGRES_DB/POSTGRES_USER/POSTGRES_PASSWORD");
    assert_eq!(db.describe(), "power_user@timescaledb:5432/power_monitoring");

    // The host defaults to the compose service name.
    let db = db_only(&[("POSTGRES_DB", "d"), ("POSTGRES_USER", "u")]).unwrap();
    assert_eq!(db.connect.get_host(), "timescaledb");
}

#[test]
fn incomplete_compose_parts_name_the_missing_key() {
    let errors = db_only(&[("POSTGRES_HOST", "db"), ("POSTGRES_PORT", "x")]).unwrap_err();
    let msgs: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        msgs,
        [
            "POSTGRES_PORT: expected a whole number from 1 to 65535, got \"x\"",
            "POSTGRES_DB: required when the database is configured by POSTGRES_* parts",
            "POSTGRES_USER: required when the database is configured by POSTGRES_* parts",
        ]
    );
}

#[test]
fn no_database_at_all_is_a_clear_error() {
    let errors = db_only(&[]).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].to_string().starts_with("Database__ConnectionString: no database configured"), "{}", errors[0]);
}

#[test]
fn database_url_must_be_a_url() {
    let errors = db_only(&[("DATABASE_URL", "Host=a;Username=u")]).unwrap_err();
    assert_eq!(errors[0].to_string(), "DATABASE_URL: expected a postgres:// or postgresql:// URL");
}

#[test]
fn connection_string_errors_never_echo_the_password() {
    let errors =
        db_only(&[("Database__ConnectionString", "Host=a;Username=u;Password=hunter2-secret;Bogus=1")]).unwrap_err();
    let text = errors[0].to_string();
    assert_eq!(text, "Database__ConnectionString: unknown keyword \"bogus\"");
    let errors = db_only(&[("Database__ConnectionString", "Host=a;Username=u;Password=\"hunter2-secret")]).unwrap_err();
    assert!(!errors[0].to_string().contains("hunter2"), "{}", errors[0]);
}

#[test]
fn pool_size_from_the_connection_string_overrides_the_key() {
    let db = db_only(&[
        ("Database__ConnectionString", "Host=a;Username=u;Maximum Pool Size=42"),
        ("Database__MaxConnections", "5"),
    ])
    .unwrap();
    assert_eq!(db.max_connections, 42);
    let db = db_only(&[("DATABASE_URL", "postgres://u@a/x"), ("Database__MaxConnections", "5")]).unwrap();
    assert_eq!(db.max_connections, 5);
}

// ---- the Npgsql parser ----

#[test]
fn npgsql_basic_form() {
    let p = parse_npgsql("Host=db;Port=5433;Database=power_monitoring;Username=power_user;Password=pw").unwrap();
    assert_eq!(p.options.get_host(), "db");
    assert_eq!(p.options.get_port(), 5433);
    assert_eq!(p.options.get_database(), Some("power_monitoring"));
    assert_eq!(p.options.get_username(), "power_user");
    assert!(p.ignored.is_empty());
}

#[test]
fn npgsql_keys_are_case_insensitive_with_synonyms_and_spaces() {
    let p = parse_npgsql("  SERVER = db ; user id=u; DB=x ; pwd=p ;").unwrap();
    assert_eq!(p.options.get_host(), "db");
    assert_eq!(p.options.get_username(), "u");
    assert_eq!(p.options.get_database(), Some("x"));
}

#[test]
fn npgsql_quoted_values_keep_semicolons_equals_and_doubled_quotes() {
    let pairs = split_pairs(r#"Host=db;Password="a;b=c""d";Username='o''brien';Database=x"#).unwrap();
    assert_eq!(
        pairs,
        [
            ("host".to_string(), "db".to_string()),
            ("password".to_string(), r#"a;b=c"d"#.to_string()),
            ("username".to_string(), "o'brien".to_string()),
            ("database".to_string(), "x".to_string()),
        ]
    );
}

#[test]
fn npgsql_unquoted_values_are_trimmed_and_may_contain_equals() {
    let pairs = split_pairs("Password= a=b ;Host=h").unwrap();
    assert_eq!(pairs[0], ("password".to_string(), "a=b".to_string()));
}

#[test]
fn npgsql_later_duplicates_win_and_empty_segments_are_skipped() {
    let p = parse_npgsql(";;Host=a;;Host=b;Username=u;;").unwrap();
    assert_eq!(p.options.get_host(), "b");
}

#[test]
fn npgsql_database_defaults_to_the_user_name() {
    let p = parse_npgsql("Host=a;Username=power_user").unwrap();
    assert_eq!(p.options.get_database(), Some("power_user"));
}

#[test]
fn npgsql_ssl_mode_values() {
    for (raw, mode) in [
        ("Disable", PgSslMode::Disable),
        ("require", PgSslMode::Require),
        ("VerifyFull", PgSslMode::VerifyFull),
        ("verify-ca", PgSslMode::VerifyCa),
    ] {
        let p = parse_npgsql(&format!("Host=a;Username=u;SSL Mode={raw}")).unwrap();
        assert_eq!(format!("{:?}", p.options.get_ssl_mode()), format!("{mode:?}"), "{raw}");
    }
    let e = parse_npgsql("Host=a;Username=u;SslMode=sometimes").unwrap_err();
    assert!(e.starts_with("SSL Mode: expected"), "{e}");
}

#[test]
fn npgsql_unix_socket_host() {
    let p = parse_npgsql("Host=/var/run/postgresql;Username=u").unwrap();
    assert_eq!(p.options.get_socket().unwrap().to_str(), Some("/var/run/postgresql"));
}

#[test]
fn npgsql_known_but_unused_keywords_are_reported_not_refused() {
    let p = parse_npgsql("Host=a;Username=u;Timeout=15;Include Error Detail=true;Pooling=true").unwrap();
    assert_eq!(p.ignored, ["timeout", "include error detail", "pooling"]);
}

#[test]
fn npgsql_unknown_keywords_are_refused_by_name() {
    assert_eq!(parse_npgsql("Host=a;Username=u;Colour=blue").unwrap_err(), "unknown keyword \"colour\"");
}

#[test]
fn npgsql_malformed_input() {
    assert_eq!(
        parse_npgsql("Host=a;Username").unwrap_err(),
        "expected key=value pairs separated by ';', found \"Username\" without '='"
    );
    assert_eq!(parse_npgsql("=a;Host=b").unwrap_err(), "expected key=value pairs separated by ';', found an empty key");
    assert_eq!(
        parse_npgsql("Host=a;Password=\"open").unwrap_err(),
        "the value of \"password\" has an opening \" but no closing one"
    );
    assert_eq!(
        parse_npgsql("Host=\"a\"b;Username=u").unwrap_err(),
        "unexpected text after the quoted value of \"host\""
    );
    assert_eq!(parse_npgsql("Username=u").unwrap_err(), "Host is required");
    assert_eq!(parse_npgsql("Host=a").unwrap_err(), "Username is required");
    assert_eq!(
        parse_npgsql("Host=a,b;Username=u").unwrap_err(),
        "Host: several hosts (failover) are not supported; give one host"
    );
    assert_eq!(
        parse_npgsql("Host=a;Username=u;Port=0").unwrap_err(),
        "Port: expected a number from 1 to 65535, got \"0\""
    );
    assert_eq!(
        parse_npgsql("Host=a;Username=u;Port=99999").unwrap_err(),
        "Port: expected a number from 1 to 65535, got \"99999\""
    );
    assert_eq!(
        parse_npgsql("Host=a;Username=u;Maximum Pool Size=0").unwrap_err(),
        "Maximum Pool Size: expected 1 to 500, got \"0\""
    );
}

#[test]
fn help_and_markdown_list_every_key() {
    let help = help_text();
    let table = markdown_table();
    for k in KEYS {
        assert!(help.contains(k.key), "--help misses {}", k.key);
        assert!(table.contains(&format!("`{}`", k.key)), "table misses {}", k.key);
    }
}

#[test]
fn smtp_is_off_without_a_host_and_needs_a_sender_with_one() {
    let (c, _) = ok(&[]);
    assert!(c.notifications.smtp.is_none());
    assert_eq!(c.notifications.digest_threshold, 5);
    assert_eq!(c.notifications.timeout, Duration::from_secs(10));
    let message = only_error(&[("Notifications__SmtpHost", "smtp.example.com")]);
    assert!(message.contains("Notifications__SmtpFrom") && message.contains("required"), "{message}");
    let (c, _) =
        ok(&[("Notifications__SmtpHost", "smtp.example.com"), ("Notifications__SmtpFrom", "alarms@example.com")]);
    let smtp = c.notifications.smtp.unwrap();
    assert_eq!((smtp.security, smtp.port), (SmtpSecurity::StartTls, 587), "STARTTLS on the submission port");
    let (c, _) = ok(&[
        ("Notifications__SmtpHost", "smtp.example.com"),
        ("Notifications__SmtpFrom", "alarms@example.com"),
        ("Notifications__SmtpSecurity", "TLS"),
        ("Notifications__SmtpUsername", "portal"),
        ("Notifications__SmtpPassword", "a real smtp secret"),
    ]);
    let smtp = c.notifications.smtp.unwrap();
    assert_eq!((smtp.security, smtp.port, smtp.username.as_deref()), (SmtpSecurity::Tls, 465, Some("portal")));
    let message = only_error(&[("Notifications__SmtpSecurity", "ssl")]);
    assert!(message.contains("Notifications__SmtpSecurity") && message.contains("starttls, tls or none"), "{message}");
    let message = only_error(&[("Notifications__SmtpPort", "0")]);
    assert!(message.contains("Notifications__SmtpPort"), "{message}");
    let message = only_error(&[("Notifications__SmtpPassword", "a real smtp secret")]);
    assert!(message.contains("Notifications__SmtpUsername"), "a password without a login: {message}");
}

#[test]
fn the_portals_sessions_run_without_jit_and_keep_the_urls_own_options() {
    let db = db_only(&[("DATABASE_URL", "postgres://u:p@db/x")]).unwrap();
    assert_eq!(db.connect.get_options(), Some("-c jit=off"));
    let db = db_only(&[("DATABASE_URL", "postgres://u:p@db/x?options=-c%20search_path%3Dmonitoring")]).unwrap();
    assert_eq!(db.connect.get_options(), Some("-c search_path=monitoring -c jit=off"));
}
