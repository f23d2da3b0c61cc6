//! The environment contract (DESIGN.md section 3): every key the portal reads, typed and
//! validated once at startup. Nothing else in the crate reads the process environment.
//!
//! Keys follow the .NET double-underscore convention of the original deployment files
//! (`Section__Key`) and, like .NET configuration, are matched case-insensitively. Every secret
//! also accepts a `<KEY>_FILE` variant naming a file that holds the value (Docker/Kubernetes
//! secrets). An empty value counts as unset, because `KEY=` lines in a compose `.env` file
//! arrive as empty strings.

mod npgsql;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::PgConnectOptions;
use url::Url;

pub use npgsql::parse_npgsql;

/// One documented environment key. The table [`KEYS`] is the single source for `--help`, the
/// README's configuration table and `.env.example` (tests keep the last two in step).
#[derive(Debug, Clone, Copy)]
pub struct KeySpec {
    pub key: &'static str,
    pub default: &'static str,
    pub secret: bool,
    pub help: &'static str,
}

const fn key(key: &'static str, default: &'static str, help: &'static str) -> KeySpec {
    KeySpec { key, default, secret: false, help }
}

const fn secret(key: &'static str, help: &'static str) -> KeySpec {
    KeySpec { key, default: "", secret: true, help }
}

pub const KEYS: &[KeySpec] = &[
    key("Application__RunMode", "Client", "`Client` (a customer's portal) or `Admin` (the fleet aggregator)."),
    key(
        "Application__Environment",
        "Production",
        "`Production` or `Development`; `ASPNETCORE_ENVIRONMENT` is read when this is unset.",
    ),
    key(
        "Application__PublicUrl",
        "",
        "Absolute URL users reach the portal at (e.g. `https://abc0001.portal.example.com`); used for absolute redirects such as the forwardAuth login redirect and for the same-origin check of forms. Required in Production; in Development `http://localhost:<port>`.",
    ),
    key("Application__ListenAddress", "0.0.0.0:8080", "Address and port the HTTP server binds."),
    key("Application__DataDirectory", "/data", "Folder for the key ring (`keys/`) and uploaded logos (`branding/`)."),
    key(
        "Application__MetricsAddress",
        "0.0.0.0:9090",
        "Separate listener for Prometheus `GET /metrics` (keep it off the public host); `off` disables it.",
    ),
    key(
        "Application__DefaultTimeZone",
        "UTC",
        "IANA time zone proposed for new sites (e.g. `Africa/Johannesburg`); each site has its own.",
    ),
    key(
        "Application__ShutdownTimeoutSeconds",
        "8",
        "On SIGTERM/SIGINT, how long in-flight requests and background tasks may take to finish (1-300).",
    ),
    secret(
        "Database__ConnectionString",
        "Database, as Npgsql `Host=…;Port=…;Database=…;Username=…;Password=…` or a `postgres://` URL. Takes precedence over `DATABASE_URL` and the `POSTGRES_*` parts.",
    ),
    secret("DATABASE_URL", "Database as a `postgres://` URL, used when `Database__ConnectionString` is unset."),
    key(
        "POSTGRES_HOST",
        "timescaledb",
        "Database host, used when neither of the above is set (the compose file's parts).",
    ),
    key("POSTGRES_PORT", "5432", "Database port for the `POSTGRES_*` parts."),
    key("POSTGRES_DB", "", "Database name for the `POSTGRES_*` parts (required in that form)."),
    key("POSTGRES_USER", "", "Database user for the `POSTGRES_*` parts (required in that form)."),
    secret("POSTGRES_PASSWORD", "Database password for the `POSTGRES_*` parts."),
    key(
        "Database__StartupTimeoutSeconds",
        "60",
        "How long startup keeps retrying an unreachable database before it gives up (1-3600).",
    ),
    key(
        "Database__MaxConnections",
        "10",
        "Size of the connection pool (1-500); an Npgsql `Maximum Pool Size` in the connection string overrides it.",
    ),
    key(
        "Authentication__DefaultAdminEmail",
        "admin@example.com",
        "Email of the admin account seeded on first start (only when no account with that email exists).",
    ),
    secret(
        "Authentication__DefaultAdminPassword",
        "Password of the seeded admin, at least 12 characters. Required in Production; in Development a missing one is generated and written to `<data dir>/default-admin-password`.",
    ),
    key("Authentication__SessionIdleMinutes", "30", "A session unused this long ends (sliding; 1-1440)."),
    key("Authentication__SessionAbsoluteHours", "12", "A session ends this long after sign-in, used or not (1-720)."),
    key(
        "Authentication__TrustedProxies",
        "127.0.0.0/8,::1/128",
        "Comma-separated addresses/CIDRs of the reverse proxies in front of the portal whose `X-Forwarded-For` is believed (for login throttling per client address and the audit log); `none` trusts no proxy. Name exactly your proxy (the compose file passes Traefik's `TRAEFIK_ADDRESS`): a client on a trusted network could otherwise claim any address.",
    ),
    key(
        "Authentication__PasswordHashMemoryKib",
        "19456",
        "argon2id memory cost in KiB (OWASP: 19456; lower only for tests).",
    ),
    key("Authentication__PasswordHashIterations", "2", "argon2id time cost (OWASP: 2)."),
    key("Authentication__PasswordHashParallelism", "1", "argon2id lanes (OWASP: 1)."),
    key("Grafana__EmbedPathPrefix", "/grafana", "Path under which Traefik serves the embedded Grafana."),
    key(
        "Grafana__DatabaseUser",
        "grafana_reader",
        "The read-only database role Grafana's data source logs in as (created and kept read-only by the portal when `Grafana__DatabasePassword` is set); never the portal's own user.",
    ),
    secret(
        "Grafana__DatabasePassword",
        "Password of `Grafana__DatabaseUser`, set at every start (rotate by changing it); when unset the portal manages no role for Grafana. Grafana's free edition lets every user run any SQL on its data source: give it this role, never the portal's own login.",
    ),
    key(
        "WhiteLabel__ApplicationName",
        "Tau Acuvim Portal",
        "Application name shown in every page (first boot only; later via Settings → Branding).",
    ),
    key("WhiteLabel__PrimaryColor", "#0c4a6e", "Primary brand colour, `#rrggbb` (first boot only)."),
    key("WhiteLabel__SecondaryColor", "#0e7490", "Secondary brand colour, `#rrggbb` (first boot only)."),
    key("WhiteLabel__AccentColor", "#06b6d4", "Accent brand colour, `#rrggbb` (first boot only)."),
    key("WhiteLabel__FooterText", "", "Footer text (first boot only)."),
    key("FleetIngest__Enabled", "false", "Client mode: push this portal's data to an Admin (fleet) portal."),
    key("FleetIngest__Url", "", "Base URL of the Admin portal (required when enabled)."),
    secret("FleetIngest__Token", "Push token shown once by the Admin portal's Customers page (required when enabled)."),
    key("FleetIngest__IntervalSeconds", "60", "Seconds between pushes (5-86400)."),
    key("FleetIngest__BatchSize", "5000", "Measurement rows per push request (1-50000)."),
    key(
        "Measurements__EarliestTime",
        "2000-01-01T00:00:00Z",
        "Readings timed before this (RFC 3339, or a date) are refused by every ingestion path, naming the row: a clock reset to year 0 or a hostile timestamp must not be stored (nor make energy spread over millennia).",
    ),
    key("Modbus__Enabled", "true", "Client mode: poll the Modbus TCP devices configured under Sites."),
    key(
        "Modbus__RequestTimeoutMilliseconds",
        "2000",
        "A Modbus request without a reply this long counts as a failure and drops the connection (100-60000).",
    ),
    key(
        "Modbus__MaxBackoffSeconds",
        "60",
        "Longest wait between reconnect attempts to an unreachable meter or gateway (1-3600).",
    ),
    key(
        "Modbus__BufferReadings",
        "100000",
        "Polled readings held in memory while the database is unavailable (1000-10000000); beyond it the oldest are dropped and counted.",
    ),
    key("RUST_LOG", "info", "Log filter, e.g. `info` or `info,tau_acuvim_portal=debug,sqlx=warn`."),
];

/// Sections whose unknown keys earn a warning (a typo in a key otherwise goes unnoticed).
const SECTIONS: &[&str] =
    &["Application", "Database", "Authentication", "Grafana", "WhiteLabel", "FleetIngest", "Measurements", "Modbus"];

/// The minimum length of any account password, the seeded admin's included.
pub const MIN_PASSWORD_LEN: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    Client,
    Admin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Production,
    Development,
}

/// A colour in canonical lowercase `#rrggbb` form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Color(String);

impl Color {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Color {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let ok = s.len() == 7 && s.starts_with('#') && s[1..].chars().all(|c| c.is_ascii_hexdigit());
        if ok { Ok(Color(s.to_ascii_lowercase())) } else { Err(format!("expected #rrggbb, got {s:?}")) }
    }
}

#[derive(Clone)]
pub struct DatabaseConfig {
    pub connect: PgConnectOptions,
    pub max_connections: u32,
    /// Which key(s) the settings came from, for `Database connection resolved via …`.
    pub source: String,
    pub startup_timeout: Duration,
}

impl DatabaseConfig {
    /// `user@host:port/database`, safe to log (no password).
    pub fn describe(&self) -> String {
        let c = &self.connect;
        let host = match c.get_socket() {
            Some(dir) => dir.display().to_string(),
            None => c.get_host().to_string(),
        };
        format!("{}@{}:{}/{}", c.get_username(), host, c.get_port(), c.get_database().unwrap_or("(default)"))
    }
}

// PgConnectOptions' derived Debug prints the password: show only the safe description.
impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("target", &self.describe())
            .field("max_connections", &self.max_connections)
            .field("source", &self.source)
            .field("startup_timeout", &self.startup_timeout)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct DefaultAdmin {
    pub email: String,
    pub password: Option<SecretString>,
}

/// argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordHashParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl PasswordHashParams {
    /// OWASP's argon2id recommendation, DESIGN.md's security baseline.
    pub const PRODUCTION: PasswordHashParams = PasswordHashParams { memory_kib: 19_456, iterations: 2, parallelism: 1 };
}

#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub session_idle: Duration,
    pub session_absolute: Duration,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub password_hash: PasswordHashParams,
}

#[derive(Debug, Clone)]
pub struct WhiteLabel {
    pub application_name: String,
    pub primary_color: Color,
    pub secondary_color: Color,
    pub accent_color: Color,
    pub footer_text: String,
}

/// The Modbus poller's settings.
#[derive(Debug, Clone)]
pub struct ModbusSettings {
    pub enabled: bool,
    pub request_timeout: Duration,
    pub max_backoff: Duration,
    pub buffer_readings: usize,
}

#[derive(Debug, Clone)]
pub struct FleetIngest {
    pub enabled: bool,
    pub url: Option<Url>,
    pub token: Option<SecretString>,
    pub interval: Duration,
    pub batch_size: u32,
}

/// The read-only database role for Grafana (`src/db/reader.rs`).
#[derive(Debug, Clone)]
pub struct GrafanaReader {
    pub user: String,
    pub password: SecretString,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub run_mode: RunMode,
    pub environment: Environment,
    pub public_url: Option<Url>,
    pub listen_address: SocketAddr,
    /// `None`: no metrics listener.
    pub metrics_address: Option<SocketAddr>,
    pub data_directory: PathBuf,
    pub default_time_zone: chrono_tz::Tz,
    pub shutdown_timeout: Duration,
    pub database: DatabaseConfig,
    pub default_admin: DefaultAdmin,
    pub auth: AuthSettings,
    pub grafana_embed_path_prefix: String,
    /// `None`: no role for Grafana is managed (no `Grafana__DatabasePassword`).
    pub grafana_reader: Option<GrafanaReader>,
    pub white_label: WhiteLabel,
    pub fleet_ingest: FleetIngest,
    /// Readings before this are refused (`measurements::check_time`).
    pub earliest_reading: chrono::DateTime<chrono::Utc>,
    pub modbus: ModbusSettings,
}

/// One invalid key: `<key>: <what was expected and what was found>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

fn err(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError { key: key.to_string(), message: message.into() }
}

/// Every problem found, so an operator fixes the `.env` file in one go.
#[derive(Debug, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("; "))
    }
}

/// The raw environment: a snapshot of the process environment, or pairs given by a test.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl Env {
    #[expect(clippy::disallowed_methods, reason = "the one read of the process environment")]
    pub fn from_process() -> Self {
        Self::from_pairs(std::env::vars())
    }

    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Env { vars: pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect() }
    }

    /// The value of `key` (exact name first, then case-insensitively); empty counts as unset.
    fn get(&self, key: &str) -> Option<&str> {
        let value = self
            .vars
            .get(key)
            .or_else(|| self.vars.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))?;
        let value = value.trim();
        (!value.is_empty()).then_some(value)
    }

    /// A secret from `key` or from the file named by `<key>_FILE` (one trailing newline
    /// stripped, as `echo` and most secret stores add one).
    fn secret(&self, key: &str) -> Result<Option<SecretString>, ConfigError> {
        let file_key = format!("{key}_FILE");
        match (self.get(key), self.get(&file_key)) {
            (Some(_), Some(_)) => Err(err(key, format!("set either {key} or {file_key}, not both"))),
            (Some(v), None) => Ok(Some(SecretString::from(v.to_string()))),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| err(&file_key, format!("cannot read secret file {path:?}: {e}")))?;
                let text = text.strip_suffix('\n').unwrap_or(&text);
                let text = text.strip_suffix('\r').unwrap_or(text);
                if text.is_empty() {
                    return Err(err(&file_key, format!("secret file {path:?} is empty")));
                }
                Ok(Some(SecretString::from(text.to_string())))
            }
            (None, None) => Ok(None),
        }
    }

    /// The log filter, read before the rest so that configuration errors can be logged.
    pub fn log_filter(&self) -> String {
        self.get("RUST_LOG").unwrap_or("info").to_string()
    }

    /// Keys of a known section that this build does not know (typos, or keys of a newer version).
    pub fn unknown_keys(&self) -> Vec<String> {
        self.vars
            .keys()
            .filter(|k| {
                let Some((section, _)) = k.split_once("__") else {
                    return false;
                };
                SECTIONS.iter().any(|s| s.eq_ignore_ascii_case(section))
                    && !KEYS.iter().any(|spec| {
                        k.eq_ignore_ascii_case(spec.key)
                            || (spec.secret && k.eq_ignore_ascii_case(&format!("{}_FILE", spec.key)))
                    })
            })
            .cloned()
            .collect()
    }
}

/// Collects values and errors while a [`Config`] is assembled.
struct Reader<'a> {
    env: &'a Env,
    errors: Vec<ConfigError>,
}

impl Reader<'_> {
    fn default_of(key: &str) -> &'static str {
        KEYS.iter().find(|k| k.key == key).map(|k| k.default).unwrap_or("")
    }

    /// The key's value, or its documented default.
    fn text(&self, key: &str) -> String {
        self.env.get(key).unwrap_or(Self::default_of(key)).to_string()
    }

    fn parse<T>(&mut self, key: &str, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        let raw = self.text(key);
        match parse(&raw) {
            Ok(v) => Some(v),
            Err(message) => {
                self.errors.push(err(key, message));
                None
            }
        }
    }

    fn number(&mut self, key: &str, min: u64, max: u64) -> Option<u64> {
        self.parse(key, |raw| match raw.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(format!("expected a whole number from {min} to {max}, got {raw:?}")),
        })
    }

    fn seconds(&mut self, key: &str, min: u64, max: u64) -> Option<Duration> {
        self.number(key, min, max).map(Duration::from_secs)
    }

    /// Whether `key` (or its `_FILE` variant) already has an error, so a follow-up check such as
    /// "required" does not pile a second, misleading message on the first.
    fn has_error(&self, key: &str) -> bool {
        self.errors.iter().any(|e| e.key == key || e.key == format!("{key}_FILE"))
    }

    /// A secret, refused when it looks like a template's placeholder rather than a secret: a
    /// `.env` copied from a template and left unfilled must stop the portal, not run it with a
    /// publicly known password.
    fn secret(&mut self, key: &str) -> Option<SecretString> {
        let value = self.env.secret(key).unwrap_or_else(|e| {
            self.errors.push(e);
            None
        })?;
        if let Some(why) = placeholder(value.expose_secret()) {
            self.errors.push(err(key, format!("{why}; set a real secret (`tau-portal provision` generates them)")));
            return None;
        }
        Some(value)
    }
}

/// Why `value` looks like a placeholder left in a template, if it does. The message never
/// quotes the value (it may be a real, if poor, secret).
pub fn placeholder(value: &str) -> Option<&'static str> {
    let v = value.trim().to_ascii_lowercase();
    if v.starts_with('#') {
        return Some("starts with '#': a comment taken as the value (in .env, comments go on lines of their own)");
    }
    let wrapped = [("<", ">"), ("[", "]"), ("{", "}"), ("${", "}")];
    if wrapped.iter().any(|(open, close)| v.starts_with(open) && v.ends_with(close)) {
        return Some("is a placeholder in brackets, not a secret");
    }
    const WORDS: [&str; 12] = [
        "changeme",
        "change-me",
        "change_me",
        "change this",
        "replaceme",
        "replace-me",
        "placeholder",
        "openssl rand",
        "your-password",
        "yourpassword",
        "your_password",
        "xxxxxx",
    ];
    if WORDS.iter().any(|w| v.contains(w)) {
        return Some("looks like a template's placeholder (e.g. changeme), not a secret");
    }
    const COMMON: [&str; 8] = ["password", "secret", "admin", "postgres", "power_user", "...", "todo", "example"];
    if COMMON.contains(&v.as_str()) {
        return Some("is a well-known default, not a secret");
    }
    None
}

fn parse_bool(raw: &str) -> Result<bool, String> {
    match raw.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!("expected true or false, got {raw:?}")),
    }
}

fn parse_http_url(raw: &str) -> Result<Url, String> {
    match Url::parse(raw) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(url),
        _ => Err(format!("expected an absolute http:// or https:// URL, got {raw:?}")),
    }
}

pub fn parse_email(raw: &str) -> Result<String, String> {
    let valid = match raw.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@') && !raw.chars().any(char::is_whitespace)
        }
        None => false,
    };
    if valid { Ok(raw.to_string()) } else { Err(format!("expected an email address, got {raw:?}")) }
}

/// An RFC 3339 time, or a date (midnight UTC).
fn parse_time(raw: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(raw)
        .map(|t| t.to_utc())
        .or_else(|_| {
            chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d").map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc())
        })
        .map_err(|_| {
            format!("expected an RFC 3339 time such as 2000-01-01T00:00:00Z or a date such as 2000-01-01, got {raw:?}")
        })
}

fn parse_listen_address(raw: &str) -> Result<SocketAddr, String> {
    raw.parse::<SocketAddr>().map_err(|_| format!("expected an address such as 0.0.0.0:8080, got {raw:?}"))
}

/// Only the listen address, for `tau-portal healthcheck`, which must not need the rest.
pub fn listen_address(env: &Env) -> Result<SocketAddr, ConfigError> {
    let mut r = Reader { env, errors: Vec::new() };
    r.parse("Application__ListenAddress", parse_listen_address).ok_or_else(|| r.errors.remove(0))
}

/// `10.0.0.0/8,::1` → networks (a bare address is a /32 or /128); `none` → no proxy trusted.
fn parse_networks(raw: &str) -> Result<Vec<ipnet::IpNet>, String> {
    if raw.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    raw.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            item.parse::<ipnet::IpNet>()
                .or_else(|_| item.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| format!("expected comma-separated IP addresses or CIDRs (or none), got {item:?}"))
        })
        .collect()
}

fn parse_path_prefix(raw: &str) -> Result<String, String> {
    let valid = raw.starts_with('/')
        && raw.len() > 1
        && !raw.ends_with('/')
        && raw.chars().all(|c| c.is_ascii_alphanumeric() || "/-_.~".contains(c));
    if valid {
        Ok(raw.to_string())
    } else {
        Err(format!("expected a path such as /grafana (leading slash, no trailing slash), got {raw:?}"))
    }
}

/// What the configuration is read for: `serve` seeds the default admin, so it needs the
/// admin's password in Production; `migrate` and `rollup` seed nothing and do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Serve,
    Maintenance,
}

impl Config {
    /// Reads and validates the whole contract for `serve`. Warnings (unknown keys, ignored
    /// values) come back beside the config because logging is set up by the caller.
    pub fn from_env(env: &Env) -> Result<(Config, Vec<String>), ConfigErrors> {
        Config::read(env, Purpose::Serve)
    }

    /// Reads and validates the contract for `purpose`.
    pub fn read(env: &Env, purpose: Purpose) -> Result<(Config, Vec<String>), ConfigErrors> {
        let mut r = Reader { env, errors: Vec::new() };
        let mut warnings: Vec<String> = env
            .unknown_keys()
            .into_iter()
            .map(|k| format!("Unknown configuration key {k} is ignored (see `tau-portal --help` for the known keys)"))
            .collect();

        let run_mode = r.parse("Application__RunMode", |raw| match raw.to_ascii_lowercase().as_str() {
            "client" => Ok(RunMode::Client),
            "admin" => Ok(RunMode::Admin),
            _ => Err(format!("expected Client or Admin, got {raw:?}")),
        });
        let environment_key = match (env.get("Application__Environment"), env.get("ASPNETCORE_ENVIRONMENT")) {
            (None, Some(_)) => "ASPNETCORE_ENVIRONMENT",
            _ => "Application__Environment",
        };
        let environment = r.parse(environment_key, |raw| match raw.to_ascii_lowercase().as_str() {
            "production" => Ok(Environment::Production),
            "development" => Ok(Environment::Development),
            _ => Err(format!("expected Production or Development, got {raw:?}")),
        });
        let public_url = match env.get("Application__PublicUrl") {
            Some(_) => r.parse("Application__PublicUrl", parse_http_url),
            None => None,
        };
        if purpose == Purpose::Serve
            && environment == Some(Environment::Production)
            && env.get("Application__PublicUrl").is_none()
        {
            r.errors.push(err(
                "Application__PublicUrl",
                "required in Production: the absolute URL users reach the portal at, e.g. \
                 https://abc0001.portal.example.com (redirects would otherwise be built from request headers a client \
                 controls)",
            ));
        }
        let listen_address = r.parse("Application__ListenAddress", parse_listen_address);
        let metrics_address = r.parse("Application__MetricsAddress", |raw| {
            if raw.eq_ignore_ascii_case("off") { Ok(None) } else { parse_listen_address(raw).map(Some) }
        });
        let data_directory = PathBuf::from(r.text("Application__DataDirectory"));
        let default_time_zone = r.parse("Application__DefaultTimeZone", |raw| {
            raw.parse::<chrono_tz::Tz>()
                .map_err(|_| format!("expected an IANA time zone such as Europe/London, got {raw:?}"))
        });
        let shutdown_timeout = r.seconds("Application__ShutdownTimeoutSeconds", 1, 300);
        let database = resolve_database(&mut r, &mut warnings);

        let admin_email = r.parse("Authentication__DefaultAdminEmail", parse_email);
        let admin_password = r.secret("Authentication__DefaultAdminPassword");
        let key = "Authentication__DefaultAdminPassword";
        if purpose == Purpose::Serve && environment == Some(Environment::Production) && !r.has_error(key) {
            match &admin_password {
                None => r.errors.push(err(
                    key,
                    "required in Production (the password of the admin account seeded on first start; \
                     also accepted as Authentication__DefaultAdminPassword_FILE)",
                )),
                Some(p) if p.expose_secret().chars().count() < MIN_PASSWORD_LEN => r.errors.push(err(
                    key,
                    format!(
                        "expected at least {MIN_PASSWORD_LEN} characters, got {}",
                        p.expose_secret().chars().count()
                    ),
                )),
                Some(_) => {}
            }
        }

        let session_idle = r.number("Authentication__SessionIdleMinutes", 1, 1440).map(|m| Duration::from_secs(m * 60));
        let session_absolute =
            r.number("Authentication__SessionAbsoluteHours", 1, 720).map(|h| Duration::from_secs(h * 3600));
        let trusted_proxies = r.parse("Authentication__TrustedProxies", parse_networks);
        let memory_kib = r.number("Authentication__PasswordHashMemoryKib", 8, 4_194_304);
        let iterations = r.number("Authentication__PasswordHashIterations", 1, 64);
        let parallelism = r.number("Authentication__PasswordHashParallelism", 1, 64);
        let password_hash = match (memory_kib, iterations, parallelism) {
            (Some(m), Some(t), Some(p)) => {
                let params = PasswordHashParams { memory_kib: m as u32, iterations: t as u32, parallelism: p as u32 };
                if environment == Some(Environment::Production)
                    && (params.memory_kib < PasswordHashParams::PRODUCTION.memory_kib
                        || params.iterations < PasswordHashParams::PRODUCTION.iterations)
                {
                    warnings.push(
                        "Authentication__PasswordHash*: cost parameters below OWASP's argon2id recommendation \
                         (m=19456, t=2) in Production"
                            .into(),
                    );
                }
                Some(params)
            }
            _ => None,
        };

        let grafana_embed_path_prefix = r.parse("Grafana__EmbedPathPrefix", parse_path_prefix);
        let reader_user = r.parse("Grafana__DatabaseUser", |raw| {
            let valid = raw.len() <= 63
                && raw.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                && raw.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !valid {
                return Err(format!("expected a role name of lowercase letters, digits and _, got {raw:?}"));
            }
            if ["postgres", "public"].contains(&raw) || raw.starts_with("pg_") {
                return Err(format!("{raw:?} is a reserved role; use a role of Grafana's own, e.g. grafana_reader"));
            }
            Ok(raw.to_string())
        });
        let reader_password = r.secret("Grafana__DatabasePassword");
        if let (Some(user), Some(db)) = (&reader_user, &database)
            && db.connect.get_username() == user
        {
            r.errors.push(err(
                "Grafana__DatabaseUser",
                format!(
                    "is the portal's own database user ({user:?}); Grafana needs a role of its own, e.g. grafana_reader"
                ),
            ));
        }
        let application_name = r.parse("WhiteLabel__ApplicationName", |raw| {
            if raw.chars().count() <= 100 { Ok(raw.to_string()) } else { Err("expected at most 100 characters".into()) }
        });
        let primary_color = r.parse("WhiteLabel__PrimaryColor", Color::from_str);
        let secondary_color = r.parse("WhiteLabel__SecondaryColor", Color::from_str);
        let accent_color = r.parse("WhiteLabel__AccentColor", Color::from_str);
        let footer_text = r.text("WhiteLabel__FooterText");

        let fleet_enabled = r.parse("FleetIngest__Enabled", parse_bool);
        let fleet_url = match env.get("FleetIngest__Url") {
            Some(_) => r.parse("FleetIngest__Url", parse_http_url),
            None => None,
        };
        let fleet_token = r.secret("FleetIngest__Token");
        let fleet_interval = r.seconds("FleetIngest__IntervalSeconds", 5, 86_400);
        let fleet_batch = r.number("FleetIngest__BatchSize", 1, 50_000);
        if fleet_enabled == Some(true) {
            if env.get("FleetIngest__Url").is_none() {
                r.errors.push(err("FleetIngest__Url", "required when FleetIngest__Enabled is true"));
            }
            if fleet_token.is_none() && !r.has_error("FleetIngest__Token") {
                r.errors.push(err("FleetIngest__Token", "required when FleetIngest__Enabled is true"));
            }
            if run_mode == Some(RunMode::Admin) {
                warnings.push(
                    "FleetIngest__Enabled is ignored in Admin run mode (the Admin portal receives pushes)".into(),
                );
            }
        }

        let earliest_reading = r.parse("Measurements__EarliestTime", parse_time);
        let modbus_enabled = r.parse("Modbus__Enabled", parse_bool);
        let modbus_timeout = r.number("Modbus__RequestTimeoutMilliseconds", 100, 60_000).map(Duration::from_millis);
        let modbus_backoff = r.seconds("Modbus__MaxBackoffSeconds", 1, 3600);
        let modbus_buffer = r.number("Modbus__BufferReadings", 1000, 10_000_000);

        if !r.errors.is_empty() {
            return Err(ConfigErrors(r.errors));
        }
        // Every `None` above pushed an error, so these cannot fail once `errors` is empty.
        let missing = || ConfigErrors(vec![err("(internal)", "value missing without an error")]);
        let environment = environment.ok_or_else(missing)?;
        let listen_address = listen_address.ok_or_else(missing)?;
        let public_url = match (public_url, environment) {
            (Some(url), _) => Some(url),
            (None, Environment::Development) => Url::parse(&format!("http://localhost:{}", listen_address.port())).ok(),
            // Checked before the errors were returned (required in Production).
            (None, Environment::Production) => None,
        };
        let config = Config {
            run_mode: run_mode.ok_or_else(missing)?,
            environment,
            public_url,
            listen_address,
            metrics_address: metrics_address.ok_or_else(missing)?,
            data_directory,
            default_time_zone: default_time_zone.ok_or_else(missing)?,
            shutdown_timeout: shutdown_timeout.ok_or_else(missing)?,
            database: database.ok_or_else(missing)?,
            default_admin: DefaultAdmin { email: admin_email.ok_or_else(missing)?, password: admin_password },
            auth: AuthSettings {
                session_idle: session_idle.ok_or_else(missing)?,
                session_absolute: session_absolute.ok_or_else(missing)?,
                trusted_proxies: trusted_proxies.ok_or_else(missing)?,
                password_hash: password_hash.ok_or_else(missing)?,
            },
            grafana_embed_path_prefix: grafana_embed_path_prefix.ok_or_else(missing)?,
            grafana_reader: match reader_password {
                Some(password) => Some(GrafanaReader { user: reader_user.ok_or_else(missing)?, password }),
                None => None,
            },
            white_label: WhiteLabel {
                application_name: application_name.ok_or_else(missing)?,
                primary_color: primary_color.ok_or_else(missing)?,
                secondary_color: secondary_color.ok_or_else(missing)?,
                accent_color: accent_color.ok_or_else(missing)?,
                footer_text,
            },
            fleet_ingest: FleetIngest {
                enabled: fleet_enabled.ok_or_else(missing)?,
                url: fleet_url,
                token: fleet_token,
                interval: fleet_interval.ok_or_else(missing)?,
                batch_size: fleet_batch.ok_or_else(missing)? as u32,
            },
            earliest_reading: earliest_reading.ok_or_else(missing)?,
            modbus: ModbusSettings {
                enabled: modbus_enabled.ok_or_else(missing)?,
                request_timeout: modbus_timeout.ok_or_else(missing)?,
                max_backoff: modbus_backoff.ok_or_else(missing)?,
                buffer_readings: modbus_buffer.ok_or_else(missing)? as usize,
            },
        };
        Ok((config, warnings))
    }
}

/// Picks the database source in contract order: `Database__ConnectionString`, `DATABASE_URL`,
/// then the `POSTGRES_*` parts.
fn resolve_database(r: &mut Reader<'_>, warnings: &mut Vec<String>) -> Option<DatabaseConfig> {
    let startup_timeout = r.seconds("Database__StartupTimeoutSeconds", 1, 3600);
    let max_connections = r.number("Database__MaxConnections", 1, 500).map(|n| n as u32);
    let (connect, pool_override, source) = if let Some(cs) = r.secret("Database__ConnectionString") {
        let key = "Database__ConnectionString";
        parse_connection_string(r, key, cs.expose_secret(), warnings)?
    } else if let Some(url) = r.secret("DATABASE_URL") {
        parse_connection_string(r, "DATABASE_URL", url.expose_secret(), warnings)?
    } else {
        let env = r.env;
        if env.get("POSTGRES_DB").is_none() && env.get("POSTGRES_USER").is_none() && env.get("POSTGRES_HOST").is_none()
        {
            r.errors.push(err(
                "Database__ConnectionString",
                "no database configured: set Database__ConnectionString, DATABASE_URL, or POSTGRES_HOST/POSTGRES_DB/\
                 POSTGRES_USER/POSTGRES_PASSWORD",
            ));
            return None;
        }
        let host = r.text("POSTGRES_HOST");
        let port = r.number("POSTGRES_PORT", 1, 65_535);
        let database = env.get("POSTGRES_DB").map(str::to_string);
        let user = env.get("POSTGRES_USER").map(str::to_string);
        for (k, v) in [("POSTGRES_DB", &database), ("POSTGRES_USER", &user)] {
            if v.is_none() {
                r.errors.push(err(k, "required when the database is configured by POSTGRES_* parts"));
            }
        }
        let password = r.secret("POSTGRES_PASSWORD");
        let mut options =
            PgConnectOptions::new_without_pgpass().host(&host).port(port? as u16).database(&database?).username(&user?);
        if let Some(p) = password {
            options = options.password(p.expose_secret());
        }
        (options, None, "POSTGRES_HOST/POSTGRES_PORT/POSTGRES_DB/POSTGRES_USER/POSTGRES_PASSWORD".to_string())
    };
    Some(DatabaseConfig {
        connect: connect.application_name("tau-portal"),
        max_connections: pool_override.or(max_connections)?,
        source,
        startup_timeout: startup_timeout?,
    })
}

/// A `postgres://` URL or an Npgsql key=value string → options, an optional pool size, and the
/// description of the source for the startup log line.
fn parse_connection_string(
    r: &mut Reader<'_>,
    key: &str,
    value: &str,
    warnings: &mut Vec<String>,
) -> Option<(PgConnectOptions, Option<u32>, String)> {
    let is_url = value.starts_with("postgres://") || value.starts_with("postgresql://");
    let parsed = if is_url {
        PgConnectOptions::from_str(value)
            .map(|o| (o, None, format!("{key} (URL)")))
            .map_err(|e| format!("expected a postgres:// URL: {e}"))
    } else if key == "DATABASE_URL" {
        Err("expected a postgres:// or postgresql:// URL".to_string())
    } else {
        parse_npgsql(value).map(|parsed| {
            warnings.extend(parsed.ignored.iter().map(|k| {
                format!("{key}: the Npgsql keyword {k:?} has no meaning for this implementation and is ignored")
            }));
            (parsed.options, parsed.max_pool_size, format!("{key} (Npgsql key=value form)"))
        })
    };
    // The message never repeats the value: it holds the password.
    parsed.map_err(|message| r.errors.push(err(key, message))).ok()
}

/// The whole key table as Markdown, for the README (a test checks that they match).
pub fn markdown_table() -> String {
    let mut out = String::from("| Key | Default | Secret | Meaning |\n|---|---|---|---|\n");
    for k in KEYS {
        let default = if k.default.is_empty() { String::new() } else { format!("`{}`", k.default) };
        let secret = if k.secret { "yes (`_FILE` too)" } else { "" };
        out.push_str(&format!("| `{}` | {} | {} | {} |\n", k.key, default, secret, k.help));
    }
    out
}

/// The key table as plain text for `tau-portal --help`.
pub fn help_text() -> String {
    let mut out = String::from(
        "Configuration is read from the environment (keys are case-insensitive; secrets also accept <KEY>_FILE):\n",
    );
    for k in KEYS {
        let default = if k.default.is_empty() { String::new() } else { format!(" [default: {}]", k.default) };
        let secret = if k.secret { " [secret]" } else { "" };
        out.push_str(&format!("\n  {}{}{}\n      {}\n", k.key, default, secret, k.help.replace('`', "")));
    }
    out
}

#[cfg(test)]
mod tests;
