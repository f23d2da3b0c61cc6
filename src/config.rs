//! The environment contract (DESIGN.md section 3): every key the portal reads, typed and
//! validated once at startup. Nothing else in the crate reads the process environment.
//!
//! Keys follow the .NET double-underscore convention of the original deployment files
//! (`Section__Key`) and, like .NET configuration, are matched case-insensitively. Every secret
//! also accepts a `<KEY>_FILE` variant naming a file that holds the value (Docker/Kubernetes
//! secrets). An empty value counts as unset, because `KEY=` lines in a compose `.env` file
//! arrive as empty strings.

mod keys;
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

pub use keys::{KEYS, KeySpec};
pub use npgsql::parse_npgsql;

/// Sections whose unknown keys earn a warning (a typo in a key otherwise goes unnoticed).
const SECTIONS: &[&str] = &[
    "Application",
    "Database",
    "Authentication",
    "Grafana",
    "WhiteLabel",
    "FleetIngest",
    "Measurements",
    "Modbus",
    "Mqtt",
    "License",
    "Notifications",
];

/// The minimum length of the portal's own MQTT password (a generated secret, not a person's).
pub const MIN_MQTT_PASSWORD_LEN: usize = 16;

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

/// The MQTT subscriber's settings (`src/mqtt/`).
#[derive(Debug, Clone)]
pub struct MqttSettings {
    pub enabled: bool,
    pub host: String,
    pub port: u16,
    pub username: String,
    /// Required when enabled.
    pub password: Option<SecretString>,
    /// `None`: no role for the broker is managed (no `Mqtt__BrokerDatabasePassword`).
    pub broker_role: Option<ManagedRole>,
    /// Where devices connect (shown on device pages).
    pub device_url: String,
}

/// Licence keys (`src/licence/`).
#[derive(Debug, Clone)]
pub struct LicenseSettings {
    /// Client mode: the licence key as given (verified at startup, never refused here: a bad key
    /// makes settings read-only, it does not stop data collection).
    pub key: Option<SecretString>,
    /// The key licences must be signed with: configured, or compiled in; `None`: neither.
    pub public_key: Option<crate::licence::keys::PublicKey>,
    /// Admin mode: the key licences are signed with.
    pub signing_key: Option<crate::licence::keys::SigningKey>,
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    StartTls,
    Tls,
    None,
}

/// The SMTP server alarm e-mails go through.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    pub from: String,
}

/// `Notifications__*`: alarm e-mails and webhooks.
#[derive(Debug, Clone)]
pub struct Notifications {
    /// `None`: no e-mail (no `Notifications__SmtpHost`).
    pub smtp: Option<SmtpSettings>,
    pub timeout: Duration,
    pub digest_threshold: usize,
}

#[derive(Debug, Clone)]
pub struct FleetIngest {
    pub enabled: bool,
    pub url: Option<Url>,
    pub token: Option<SecretString>,
    pub interval: Duration,
    pub batch_size: u32,
}

/// A login role the portal creates and keeps to its few grants (`src/db/reader.rs`): Grafana's
/// read-only role, the MQTT broker's.
#[derive(Debug, Clone)]
pub struct ManagedRole {
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
    pub grafana_reader: Option<ManagedRole>,
    pub white_label: WhiteLabel,
    pub fleet_ingest: FleetIngest,
    /// Readings before this are refused (`measurements::check_time`).
    pub earliest_reading: chrono::DateTime<chrono::Utc>,
    pub modbus: ModbusSettings,
    pub mqtt: MqttSettings,
    pub license: LicenseSettings,
    pub notifications: Notifications,
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
        self.get(keys::RUST_LOG.key).unwrap_or(keys::RUST_LOG.default).to_string()
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
    /// Whether the key is set (to something other than blanks).
    fn is_set(&self, key: KeySpec) -> bool {
        self.env.get(key.key).is_some()
    }

    /// The key's value, or its documented default.
    fn text(&self, key: KeySpec) -> String {
        self.env.get(key.key).unwrap_or(key.default).to_string()
    }

    fn parse<T>(&mut self, key: KeySpec, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        self.parse_as(key.key, &self.text(key), parse)
    }

    /// `raw`, the value of `key` (a key or an alias of one), parsed; an error is noted for `key`.
    fn parse_as<T>(&mut self, key: &str, raw: &str, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        match parse(raw) {
            Ok(v) => Some(v),
            Err(message) => {
                self.errors.push(err(key, message));
                None
            }
        }
    }

    /// A set key's value parsed; `None` without an error when it is not set.
    fn optional<T>(&mut self, key: KeySpec, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        if self.is_set(key) { self.parse(key, parse) } else { None }
    }

    fn number(&mut self, key: KeySpec, min: u64, max: u64) -> Option<u64> {
        self.parse(key, |raw| match raw.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(format!("expected a whole number from {min} to {max}, got {raw:?}")),
        })
    }

    fn seconds(&mut self, key: KeySpec, min: u64, max: u64) -> Option<Duration> {
        self.number(key, min, max).map(Duration::from_secs)
    }

    /// Notes that `key` is wrong as it is.
    fn refuse(&mut self, key: KeySpec, message: impl Into<String>) {
        self.errors.push(err(key.key, message));
    }

    /// Whether `key` (or its `_FILE` variant) already has an error, so a follow-up check such as
    /// "required" does not pile a second, misleading message on the first.
    fn has_error(&self, key: KeySpec) -> bool {
        self.errors.iter().any(|e| e.key == key.key || e.key == format!("{}_FILE", key.key))
    }

    /// A secret, refused when it looks like a template's placeholder rather than a secret: a
    /// `.env` copied from a template and left unfilled must stop the portal, not run it with a
    /// publicly known password.
    fn secret(&mut self, key: KeySpec) -> Option<SecretString> {
        let value = self.env.secret(key.key).unwrap_or_else(|e| {
            self.errors.push(e);
            None
        })?;
        if let Some(why) = placeholder(value.expose_secret()) {
            self.refuse(key, format!("{why}; set a real secret (`tau-portal provision` generates them)"));
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
    r.parse(keys::LISTEN_ADDRESS, parse_listen_address).ok_or_else(|| r.errors.remove(0))
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

    /// Reads and validates the contract for `purpose`, section by section; every problem of
    /// every section is reported at once.
    pub fn read(env: &Env, purpose: Purpose) -> Result<(Config, Vec<String>), ConfigErrors> {
        let mut r = Reader { env, errors: Vec::new() };
        let mut warnings: Vec<String> = env
            .unknown_keys()
            .into_iter()
            .map(|k| format!("Unknown configuration key {k} is ignored (see `tau-portal --help` for the known keys)"))
            .collect();
        let app = application(&mut r, purpose);
        let environment = app.as_ref().map(|a| a.environment);
        let database = resolve_database(&mut r, &mut warnings);
        let default_admin = default_admin(&mut r, purpose, environment);
        let auth = auth_settings(&mut r, environment, &mut warnings);
        let grafana = grafana(&mut r, database.as_ref());
        let white_label = white_label(&mut r);
        let fleet_ingest = fleet_ingest(&mut r, app.as_ref().map(|a| a.run_mode), &mut warnings);
        let earliest_reading = r.parse(keys::MEASUREMENTS_EARLIEST_TIME, parse_time);
        let modbus = modbus(&mut r);
        let mqtt = mqtt(&mut r, app.as_ref(), database.as_ref(), &mut warnings);
        let license = license(&mut r, app.as_ref().map(|a| a.run_mode), &mut warnings);
        let notifications = notifications(&mut r);
        if !r.errors.is_empty() {
            return Err(ConfigErrors(r.errors));
        }
        // A section is `None` only after noting an error, so none is once `errors` is empty.
        let missing = || ConfigErrors(vec![err("(internal)", "value missing without an error")]);
        let app = app.ok_or_else(missing)?;
        let (grafana_embed_path_prefix, grafana_reader) = grafana.ok_or_else(missing)?;
        let config = Config {
            run_mode: app.run_mode,
            environment: app.environment,
            public_url: app.public_url,
            listen_address: app.listen_address,
            metrics_address: app.metrics_address,
            data_directory: app.data_directory,
            default_time_zone: app.default_time_zone,
            shutdown_timeout: app.shutdown_timeout,
            database: database.ok_or_else(missing)?,
            default_admin: default_admin.ok_or_else(missing)?,
            auth: auth.ok_or_else(missing)?,
            grafana_embed_path_prefix,
            grafana_reader,
            white_label: white_label.ok_or_else(missing)?,
            fleet_ingest: fleet_ingest.ok_or_else(missing)?,
            earliest_reading: earliest_reading.ok_or_else(missing)?,
            modbus: modbus.ok_or_else(missing)?,
            mqtt: mqtt.ok_or_else(missing)?,
            license: license.ok_or_else(missing)?,
            notifications: notifications.ok_or_else(missing)?,
        };
        Ok((config, warnings))
    }
}

/// The `Application__*` section.
struct Application {
    run_mode: RunMode,
    environment: Environment,
    public_url: Option<Url>,
    listen_address: SocketAddr,
    metrics_address: Option<SocketAddr>,
    data_directory: PathBuf,
    default_time_zone: chrono_tz::Tz,
    shutdown_timeout: Duration,
}

fn application(r: &mut Reader<'_>, purpose: Purpose) -> Option<Application> {
    let run_mode = r.parse(keys::RUN_MODE, |raw| match raw.to_ascii_lowercase().as_str() {
        "client" => Ok(RunMode::Client),
        "admin" => Ok(RunMode::Admin),
        _ => Err(format!("expected Client or Admin, got {raw:?}")),
    });
    let parse_environment = |raw: &str| match raw.to_ascii_lowercase().as_str() {
        "production" => Ok(Environment::Production),
        "development" => Ok(Environment::Development),
        _ => Err(format!("expected Production or Development, got {raw:?}")),
    };
    let environment = match r.env.get(keys::ASPNETCORE_ENVIRONMENT) {
        Some(raw) if !r.is_set(keys::ENVIRONMENT) => r.parse_as(keys::ASPNETCORE_ENVIRONMENT, raw, parse_environment),
        _ => r.parse(keys::ENVIRONMENT, parse_environment),
    };
    let public_url = r.optional(keys::PUBLIC_URL, parse_http_url);
    if purpose == Purpose::Serve && environment == Some(Environment::Production) && !r.is_set(keys::PUBLIC_URL) {
        r.refuse(
            keys::PUBLIC_URL,
            "required in Production: the absolute URL users reach the portal at, e.g. \
             https://abc0001.portal.example.com (redirects would otherwise be built from request headers a client \
             controls)",
        );
    }
    let listen_address = r.parse(keys::LISTEN_ADDRESS, parse_listen_address);
    let metrics_address = r.parse(keys::METRICS_ADDRESS, |raw| {
        if raw.eq_ignore_ascii_case("off") { Ok(None) } else { parse_listen_address(raw).map(Some) }
    });
    let data_directory = PathBuf::from(r.text(keys::DATA_DIRECTORY));
    let default_time_zone = r.parse(keys::DEFAULT_TIME_ZONE, |raw| {
        raw.parse::<chrono_tz::Tz>()
            .map_err(|_| format!("expected an IANA time zone such as Europe/London, got {raw:?}"))
    });
    let shutdown_timeout = r.seconds(keys::SHUTDOWN_TIMEOUT_SECONDS, 1, 300);
    let (environment, listen_address) = (environment?, listen_address?);
    let public_url = match (public_url, environment) {
        (Some(url), _) => Some(url),
        (None, Environment::Development) => Url::parse(&format!("http://localhost:{}", listen_address.port())).ok(),
        // Required in Production (refused above when the purpose needs it).
        (None, Environment::Production) => None,
    };
    Some(Application {
        run_mode: run_mode?,
        environment,
        public_url,
        listen_address,
        metrics_address: metrics_address?,
        data_directory,
        default_time_zone: default_time_zone?,
        shutdown_timeout: shutdown_timeout?,
    })
}

/// The admin seeded on first start (`Authentication__DefaultAdmin*`).
fn default_admin(r: &mut Reader<'_>, purpose: Purpose, environment: Option<Environment>) -> Option<DefaultAdmin> {
    let email = r.parse(keys::DEFAULT_ADMIN_EMAIL, parse_email);
    let password = r.secret(keys::DEFAULT_ADMIN_PASSWORD);
    let key = keys::DEFAULT_ADMIN_PASSWORD;
    if purpose == Purpose::Serve && environment == Some(Environment::Production) && !r.has_error(key) {
        match &password {
            None => r.refuse(
                key,
                format!(
                    "required in Production (the password of the admin account seeded on first start; also \
                     accepted as {}_FILE)",
                    key.key
                ),
            ),
            Some(p) if p.expose_secret().chars().count() < MIN_PASSWORD_LEN => r.refuse(
                key,
                format!("expected at least {MIN_PASSWORD_LEN} characters, got {}", p.expose_secret().chars().count()),
            ),
            Some(_) => {}
        }
    }
    Some(DefaultAdmin { email: email?, password })
}

/// Sessions, proxies and password hashing (the rest of `Authentication__*`).
fn auth_settings(
    r: &mut Reader<'_>,
    environment: Option<Environment>,
    warnings: &mut Vec<String>,
) -> Option<AuthSettings> {
    let session_idle = r.number(keys::SESSION_IDLE_MINUTES, 1, 1440).map(|m| Duration::from_secs(m * 60));
    let session_absolute = r.number(keys::SESSION_ABSOLUTE_HOURS, 1, 720).map(|h| Duration::from_secs(h * 3600));
    let trusted_proxies = r.parse(keys::TRUSTED_PROXIES, parse_networks);
    let memory_kib = r.number(keys::PASSWORD_HASH_MEMORY_KIB, 8, 4_194_304);
    let iterations = r.number(keys::PASSWORD_HASH_ITERATIONS, 1, 64);
    let parallelism = r.number(keys::PASSWORD_HASH_PARALLELISM, 1, 64);
    let password_hash = PasswordHashParams {
        memory_kib: memory_kib? as u32,
        iterations: iterations? as u32,
        parallelism: parallelism? as u32,
    };
    if environment == Some(Environment::Production)
        && (password_hash.memory_kib < PasswordHashParams::PRODUCTION.memory_kib
            || password_hash.iterations < PasswordHashParams::PRODUCTION.iterations)
    {
        warnings.push(
            "Authentication__PasswordHash*: cost parameters below OWASP's argon2id recommendation (m=19456, t=2) \
             in Production"
                .into(),
        );
    }
    Some(AuthSettings {
        session_idle: session_idle?,
        session_absolute: session_absolute?,
        trusted_proxies: trusted_proxies?,
        password_hash,
    })
}

/// `Grafana__*`: the embed path, and the read-only role when its password is set.
fn grafana(r: &mut Reader<'_>, database: Option<&DatabaseConfig>) -> Option<(String, Option<ManagedRole>)> {
    let embed_path_prefix = r.parse(keys::GRAFANA_EMBED_PATH_PREFIX, parse_path_prefix);
    let user = r.parse(keys::GRAFANA_DATABASE_USER, |raw| parse_role_name(raw, "grafana_reader"));
    let password = r.secret(keys::GRAFANA_DATABASE_PASSWORD);
    if let (Some(user), Some(db)) = (&user, database)
        && db.connect.get_username() == user
    {
        r.refuse(
            keys::GRAFANA_DATABASE_USER,
            format!(
                "is the portal's own database user ({user:?}); Grafana needs a role of its own, e.g. grafana_reader"
            ),
        );
        return None;
    }
    let reader = match password {
        Some(password) => Some(ManagedRole { user: user?, password }),
        None => None,
    };
    Some((embed_path_prefix?, reader))
}

/// `WhiteLabel__*`: the first boot's branding.
fn white_label(r: &mut Reader<'_>) -> Option<WhiteLabel> {
    let application_name = r.parse(keys::APPLICATION_NAME, |raw| {
        if raw.chars().count() <= 100 { Ok(raw.to_string()) } else { Err("expected at most 100 characters".into()) }
    });
    let primary_color = r.parse(keys::PRIMARY_COLOR, Color::from_str);
    let secondary_color = r.parse(keys::SECONDARY_COLOR, Color::from_str);
    let accent_color = r.parse(keys::ACCENT_COLOR, Color::from_str);
    let footer_text = r.text(keys::FOOTER_TEXT);
    Some(WhiteLabel {
        application_name: application_name?,
        primary_color: primary_color?,
        secondary_color: secondary_color?,
        accent_color: accent_color?,
        footer_text,
    })
}

/// `FleetIngest__*`: the push to an Admin portal.
fn fleet_ingest(r: &mut Reader<'_>, run_mode: Option<RunMode>, warnings: &mut Vec<String>) -> Option<FleetIngest> {
    let enabled = r.parse(keys::FLEET_ENABLED, parse_bool);
    let url = r.optional(keys::FLEET_URL, parse_http_url);
    let token = r.secret(keys::FLEET_TOKEN);
    let interval = r.seconds(keys::FLEET_INTERVAL_SECONDS, 5, 86_400);
    let batch_size = r.number(keys::FLEET_BATCH_SIZE, 1, 50_000);
    if enabled == Some(true) {
        let required = format!("required when {} is true", keys::FLEET_ENABLED.key);
        if !r.is_set(keys::FLEET_URL) {
            r.refuse(keys::FLEET_URL, required.clone());
        }
        if token.is_none() && !r.has_error(keys::FLEET_TOKEN) {
            r.refuse(keys::FLEET_TOKEN, required);
        }
        if run_mode == Some(RunMode::Admin) {
            warnings.push(format!(
                "{} is ignored in Admin run mode (the Admin portal receives pushes)",
                keys::FLEET_ENABLED.key
            ));
        }
    }
    Some(FleetIngest { enabled: enabled?, url, token, interval: interval?, batch_size: batch_size? as u32 })
}

/// `Modbus__*`: the poller.
fn modbus(r: &mut Reader<'_>) -> Option<ModbusSettings> {
    let enabled = r.parse(keys::MODBUS_ENABLED, parse_bool);
    let request_timeout = r.number(keys::MODBUS_REQUEST_TIMEOUT_MILLISECONDS, 100, 60_000).map(Duration::from_millis);
    let max_backoff = r.seconds(keys::MODBUS_MAX_BACKOFF_SECONDS, 1, 3600);
    let buffer_readings = r.number(keys::MODBUS_BUFFER_READINGS, 1000, 10_000_000);
    Some(ModbusSettings {
        enabled: enabled?,
        request_timeout: request_timeout?,
        max_backoff: max_backoff?,
        buffer_readings: buffer_readings? as usize,
    })
}

/// `Mqtt__*`: the subscriber, the portal's broker account and the broker's database role.
fn mqtt(
    r: &mut Reader<'_>,
    app: Option<&Application>,
    database: Option<&DatabaseConfig>,
    warnings: &mut Vec<String>,
) -> Option<MqttSettings> {
    let enabled = r.parse(keys::MQTT_ENABLED, parse_bool);
    let host = r.parse(keys::MQTT_HOST, |raw| {
        let valid = raw.len() <= 253 && raw.chars().all(|c| c.is_ascii_alphanumeric() || ".-_:".contains(c));
        if valid { Ok(raw.to_string()) } else { Err(format!("expected a host name or IP address, got {raw:?}")) }
    });
    let port = r.number(keys::MQTT_PORT, 1, 65_535);
    let username = r.parse(keys::MQTT_USERNAME, |raw| {
        if raw.len() > 255 || raw.contains(['+', '#', '/']) || raw.chars().any(char::is_whitespace) {
            Err(format!("expected up to 255 characters without spaces, '+', '#' or '/', got {raw:?}"))
        } else {
            Ok(raw.to_string())
        }
    });
    let password = r.secret(keys::MQTT_PASSWORD);
    if let Some(p) = &password
        && p.expose_secret().chars().count() < MIN_MQTT_PASSWORD_LEN
    {
        r.refuse(
            keys::MQTT_PASSWORD,
            format!("expected at least {MIN_MQTT_PASSWORD_LEN} characters (a generated secret)"),
        );
    }
    if enabled == Some(true) && password.is_none() && !r.has_error(keys::MQTT_PASSWORD) {
        r.refuse(keys::MQTT_PASSWORD, format!("required when {} is true", keys::MQTT_ENABLED.key));
    }
    if enabled == Some(true) && app.map(|a| a.run_mode) == Some(RunMode::Admin) {
        warnings.push(format!(
            "{} is ignored in Admin run mode (devices publish to customer portals)",
            keys::MQTT_ENABLED.key
        ));
    }
    let broker_user = r.parse(keys::MQTT_BROKER_DATABASE_USER, |raw| parse_role_name(raw, "mqtt_auth"));
    let broker_password = r.secret(keys::MQTT_BROKER_DATABASE_PASSWORD);
    if let (Some(user), Some(db)) = (&broker_user, database)
        && db.connect.get_username() == user
    {
        r.refuse(
            keys::MQTT_BROKER_DATABASE_USER,
            format!("is the portal's own database user ({user:?}); the broker needs a role of its own, e.g. mqtt_auth"),
        );
        return None;
    }
    let device_url = match r.text(keys::MQTT_DEVICE_URL) {
        // The host users reach the portal at is the host devices reach the broker at.
        url if url.is_empty() => {
            let host = app.and_then(|a| a.public_url.as_ref()).and_then(|u| u.host_str().map(str::to_string));
            format!("mqtt://{}:1883", host.unwrap_or_else(|| "localhost".into()))
        }
        url => url,
    };
    let broker_role = match broker_password {
        Some(password) => Some(ManagedRole { user: broker_user?, password }),
        None => None,
    };
    Some(MqttSettings {
        enabled: enabled?,
        host: host?,
        port: port? as u16,
        username: username?,
        password,
        broker_role,
        device_url,
    })
}

/// `License__*`: the licence key and the keys that sign and verify it.
fn license(r: &mut Reader<'_>, run_mode: Option<RunMode>, warnings: &mut Vec<String>) -> Option<LicenseSettings> {
    use crate::licence::keys::{PublicKey, SigningKey};
    let key = r.secret(keys::LICENSE_KEY);
    let public_key = if r.is_set(keys::LICENSE_PUBLIC_KEY) {
        r.parse(keys::LICENSE_PUBLIC_KEY, |raw| PublicKey::parse(raw).map(Some))
    } else {
        r.parse(keys::LICENSE_PUBLIC_KEY, |_| PublicKey::compiled_in())
    };
    let signing_key = match r.secret(keys::LICENSE_SIGNING_KEY) {
        Some(pem) => match SigningKey::parse(pem.expose_secret()) {
            Ok(k) => Some(k),
            Err(e) => {
                r.refuse(keys::LICENSE_SIGNING_KEY, e);
                None
            }
        },
        None => None,
    };
    if signing_key.is_some() && run_mode == Some(RunMode::Client) {
        warnings.push(format!(
            "{} is set in Client mode: only the Admin portal signs licences; remove it from customer stacks",
            keys::LICENSE_SIGNING_KEY.key
        ));
    }
    Some(LicenseSettings { key, public_key: public_key?, signing_key })
}

/// A PostgreSQL role of the portal's making: a plain lowercase identifier, not a reserved role
/// (`example` names a good one in the message).
fn parse_role_name(raw: &str, example: &str) -> Result<String, String> {
    let valid = raw.len() <= 63
        && raw.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && raw.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        return Err(format!("expected a role name of lowercase letters, digits and _, got {raw:?}"));
    }
    if ["postgres", "public"].contains(&raw) || raw.starts_with("pg_") {
        return Err(format!("{raw:?} is a reserved role; use a role of its own, e.g. {example}"));
    }
    Ok(raw.to_string())
}

/// `Notifications__*`: the SMTP server (optional) and how deliveries behave.
fn notifications(r: &mut Reader<'_>) -> Option<Notifications> {
    let security = r.parse(keys::SMTP_SECURITY, |raw| match raw.to_ascii_lowercase().as_str() {
        "starttls" => Ok(SmtpSecurity::StartTls),
        "tls" => Ok(SmtpSecurity::Tls),
        "none" => Ok(SmtpSecurity::None),
        _ => Err(format!("expected starttls, tls or none, got {raw:?}")),
    });
    let port = r.optional(keys::SMTP_PORT, |raw| match raw.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("expected a port from 1 to 65535, got {raw:?}")),
    });
    let username = r.is_set(keys::SMTP_USERNAME).then(|| r.text(keys::SMTP_USERNAME));
    let password = r.secret(keys::SMTP_PASSWORD);
    let from = r.optional(keys::SMTP_FROM, parse_email);
    let timeout = r.seconds(keys::SMTP_TIMEOUT_SECONDS, 1, 300);
    let digest_threshold = r.number(keys::DIGEST_THRESHOLD, 1, 1000);
    if password.is_some() && username.is_none() {
        r.refuse(keys::SMTP_USERNAME, format!("required when {} is set", keys::SMTP_PASSWORD.key));
    }
    let smtp = if r.is_set(keys::SMTP_HOST) {
        if from.is_none() && !r.has_error(keys::SMTP_FROM) {
            r.refuse(keys::SMTP_FROM, format!("required when {} is set", keys::SMTP_HOST.key));
        }
        let security = security?;
        let default_port = match security {
            SmtpSecurity::StartTls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::None => 25,
        };
        Some(SmtpSettings {
            host: r.text(keys::SMTP_HOST),
            port: port.unwrap_or(default_port),
            security,
            username,
            password,
            from: from?,
        })
    } else {
        None
    };
    Some(Notifications { smtp, timeout: timeout?, digest_threshold: digest_threshold? as usize })
}

/// Picks the database source in contract order: `Database__ConnectionString`, `DATABASE_URL`,
/// then the `POSTGRES_*` parts.
fn resolve_database(r: &mut Reader<'_>, warnings: &mut Vec<String>) -> Option<DatabaseConfig> {
    let startup_timeout = r.seconds(keys::DATABASE_STARTUP_TIMEOUT_SECONDS, 1, 3600);
    let max_connections = r.number(keys::DATABASE_MAX_CONNECTIONS, 1, 500).map(|n| n as u32);
    let (connect, pool_override, source) = if let Some(cs) = r.secret(keys::CONNECTION_STRING) {
        parse_connection_string(r, keys::CONNECTION_STRING, cs.expose_secret(), warnings)?
    } else if let Some(url) = r.secret(keys::DATABASE_URL) {
        parse_connection_string(r, keys::DATABASE_URL, url.expose_secret(), warnings)?
    } else {
        let parts =
            [keys::POSTGRES_HOST, keys::POSTGRES_PORT, keys::POSTGRES_DB, keys::POSTGRES_USER, keys::POSTGRES_PASSWORD];
        let names: Vec<&str> = parts.iter().map(|k| k.key).collect();
        if !r.is_set(keys::POSTGRES_DB) && !r.is_set(keys::POSTGRES_USER) && !r.is_set(keys::POSTGRES_HOST) {
            r.refuse(
                keys::CONNECTION_STRING,
                format!(
                    "no database configured: set {}, {}, or {}/{}/{}/{}",
                    keys::CONNECTION_STRING.key,
                    keys::DATABASE_URL.key,
                    keys::POSTGRES_HOST.key,
                    keys::POSTGRES_DB.key,
                    keys::POSTGRES_USER.key,
                    keys::POSTGRES_PASSWORD.key
                ),
            );
            return None;
        }
        let host = r.text(keys::POSTGRES_HOST);
        let port = r.number(keys::POSTGRES_PORT, 1, 65_535);
        let required = |r: &mut Reader<'_>, key: KeySpec| {
            let value = r.env.get(key.key).map(str::to_string);
            if value.is_none() {
                r.refuse(key, "required when the database is configured by POSTGRES_* parts");
            }
            value
        };
        let database = required(r, keys::POSTGRES_DB);
        let user = required(r, keys::POSTGRES_USER);
        let password = r.secret(keys::POSTGRES_PASSWORD);
        let mut options =
            PgConnectOptions::new_without_pgpass().host(&host).port(port? as u16).database(&database?).username(&user?);
        if let Some(p) = password {
            options = options.password(p.expose_secret());
        }
        (options, None, names.join("/"))
    };
    Some(DatabaseConfig {
        // JIT off for the portal's own sessions: its statements are short, index-probing reads
        // whose cost estimates (a range bound the planner cannot see) crossed `jit_above_cost`
        // and spent 100-200 ms compiling for a few ms of work (issue 21). A startup option, so
        // plain PostgreSQL and TimescaleDB alike; appended to any `options` of the connection
        // string.
        connect: connect.application_name("tau-portal").options([("jit", "off")]),
        max_connections: pool_override.or(max_connections)?,
        source,
        startup_timeout: startup_timeout?,
    })
}

/// A `postgres://` URL or an Npgsql key=value string → options, an optional pool size, and the
/// description of the source for the startup log line.
fn parse_connection_string(
    r: &mut Reader<'_>,
    key: KeySpec,
    value: &str,
    warnings: &mut Vec<String>,
) -> Option<(PgConnectOptions, Option<u32>, String)> {
    let is_url = value.starts_with("postgres://") || value.starts_with("postgresql://");
    let parsed = if is_url {
        PgConnectOptions::from_str(value)
            .map(|o| (o, None, format!("{} (URL)", key.key)))
            .map_err(|e| format!("expected a postgres:// URL: {e}"))
    } else if key == keys::DATABASE_URL {
        Err("expected a postgres:// or postgresql:// URL".to_string())
    } else {
        parse_npgsql(value).map(|parsed| {
            warnings.extend(parsed.ignored.iter().map(|k| {
                format!("{}: the Npgsql keyword {k:?} has no meaning for this implementation and is ignored", key.key)
            }));
            (parsed.options, parsed.max_pool_size, format!("{} (Npgsql key=value form)", key.key))
        })
    };
    // The message never repeats the value: it holds the password.
    parsed.map_err(|message| r.refuse(key, message)).ok()
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
