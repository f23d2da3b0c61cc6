//! Every environment key the portal reads, each spelled once: a constant of its own, so a
//! misspelt key in the code does not compile (it used to be a second string that silently found
//! no default), and [`KEYS`], the table `--help`, the README's configuration table and
//! `.env.example` come from (tests keep the last two in step), lists every constant by
//! construction.

/// One documented environment key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// Declares each key's constant and [`KEYS`], in this order, from one list.
macro_rules! keys {
    ($($name:ident = $spec:expr;)*) => {
        $(pub const $name: KeySpec = $spec;)*
        /// Every key, in the order of the documentation.
        pub const KEYS: &[KeySpec] = &[$($name),*];
    };
}

keys! {
    RUN_MODE = key(
        "Application__RunMode",
        "Client",
        "`Client` (a customer's portal) or `Admin` (the fleet aggregator).",
    );
    ENVIRONMENT = key(
        "Application__Environment",
        "Production",
        "`Production` or `Development`; `ASPNETCORE_ENVIRONMENT` is read when this is unset.",
    );
    PUBLIC_URL = key(
        "Application__PublicUrl",
        "",
        "Absolute URL users reach the portal at (e.g. `https://abc0001.portal.example.com`); used for absolute redirects such as the forwardAuth login redirect and for the same-origin check of forms. Required in Production; in Development `http://localhost:<port>`.",
    );
    LISTEN_ADDRESS = key("Application__ListenAddress", "0.0.0.0:8080", "Address and port the HTTP server binds.");
    DATA_DIRECTORY = key(
        "Application__DataDirectory",
        "/data",
        "Folder for the key ring (`keys/`) and uploaded logos (`branding/`).",
    );
    METRICS_ADDRESS = key(
        "Application__MetricsAddress",
        "0.0.0.0:9090",
        "Separate listener for Prometheus `GET /metrics` (keep it off the public host); `off` disables it.",
    );
    DEFAULT_TIME_ZONE = key(
        "Application__DefaultTimeZone",
        "UTC",
        "IANA time zone proposed for new sites (e.g. `Africa/Johannesburg`); each site has its own.",
    );
    SHUTDOWN_TIMEOUT_SECONDS = key(
        "Application__ShutdownTimeoutSeconds",
        "8",
        "On SIGTERM/SIGINT, how long in-flight requests and background tasks may take to finish (1-300).",
    );
    CONNECTION_STRING = secret(
        "Database__ConnectionString",
        "Database, as Npgsql `Host=…;Port=…;Database=…;Username=…;Password=…` or a `postgres://` URL. Takes precedence over `DATABASE_URL` and the `POSTGRES_*` parts.",
    );
    DATABASE_URL = secret(
        "DATABASE_URL",
        "Database as a `postgres://` URL, used when `Database__ConnectionString` is unset.",
    );
    POSTGRES_HOST = key(
        "POSTGRES_HOST",
        "timescaledb",
        "Database host, used when neither of the above is set (the compose file's parts).",
    );
    POSTGRES_PORT = key("POSTGRES_PORT", "5432", "Database port for the `POSTGRES_*` parts.");
    POSTGRES_DB = key("POSTGRES_DB", "", "Database name for the `POSTGRES_*` parts (required in that form).");
    POSTGRES_USER = key("POSTGRES_USER", "", "Database user for the `POSTGRES_*` parts (required in that form).");
    POSTGRES_PASSWORD = secret("POSTGRES_PASSWORD", "Database password for the `POSTGRES_*` parts.");
    DATABASE_STARTUP_TIMEOUT_SECONDS = key(
        "Database__StartupTimeoutSeconds",
        "60",
        "How long startup keeps retrying an unreachable database before it gives up (1-3600).",
    );
    DATABASE_MAX_CONNECTIONS = key(
        "Database__MaxConnections",
        "10",
        "Size of the connection pool (1-500); an Npgsql `Maximum Pool Size` in the connection string overrides it.",
    );
    DEFAULT_ADMIN_EMAIL = key(
        "Authentication__DefaultAdminEmail",
        "admin@example.com",
        "Email of the admin account seeded on first start (only when no account with that email exists).",
    );
    DEFAULT_ADMIN_PASSWORD = secret(
        "Authentication__DefaultAdminPassword",
        "Password of the seeded admin, at least 12 characters. Required in Production; in Development a missing one is generated and written to `<data dir>/default-admin-password`.",
    );
    SESSION_IDLE_MINUTES = key(
        "Authentication__SessionIdleMinutes",
        "30",
        "A session unused this long ends (sliding; 1-1440).",
    );
    SESSION_ABSOLUTE_HOURS = key(
        "Authentication__SessionAbsoluteHours",
        "12",
        "A session ends this long after sign-in, used or not (1-720).",
    );
    TRUSTED_PROXIES = key(
        "Authentication__TrustedProxies",
        "127.0.0.0/8,::1/128",
        "Comma-separated addresses/CIDRs of the reverse proxies in front of the portal whose `X-Forwarded-For` is believed (for login throttling per client address and the audit log); `none` trusts no proxy. Name exactly your proxy (the compose file passes Traefik's `TRAEFIK_ADDRESS`): a client on a trusted network could otherwise claim any address.",
    );
    PASSWORD_HASH_MEMORY_KIB = key(
        "Authentication__PasswordHashMemoryKib",
        "19456",
        "argon2id memory cost in KiB (OWASP: 19456; lower only for tests).",
    );
    PASSWORD_HASH_ITERATIONS = key("Authentication__PasswordHashIterations", "2", "argon2id time cost (OWASP: 2).");
    PASSWORD_HASH_PARALLELISM = key("Authentication__PasswordHashParallelism", "1", "argon2id lanes (OWASP: 1).");
    GRAFANA_EMBED_PATH_PREFIX = key(
        "Grafana__EmbedPathPrefix",
        "/grafana",
        "Path under which Traefik serves the embedded Grafana.",
    );
    GRAFANA_DATABASE_USER = key(
        "Grafana__DatabaseUser",
        "grafana_reader",
        "The read-only database role Grafana's data source logs in as (created and kept read-only by the portal when `Grafana__DatabasePassword` is set); never the portal's own user.",
    );
    GRAFANA_DATABASE_PASSWORD = secret(
        "Grafana__DatabasePassword",
        "Password of `Grafana__DatabaseUser`, set at every start (rotate by changing it); when unset the portal manages no role for Grafana. Grafana's free edition lets every user run any SQL on its data source: give it this role, never the portal's own login.",
    );
    APPLICATION_NAME = key(
        "WhiteLabel__ApplicationName",
        "Tau Acuvim Portal",
        "Application name shown in every page (first boot only; later via Settings → Branding).",
    );
    PRIMARY_COLOR = key("WhiteLabel__PrimaryColor", "#0c4a6e", "Primary brand colour, `#rrggbb` (first boot only).");
    SECONDARY_COLOR = key(
        "WhiteLabel__SecondaryColor",
        "#0e7490",
        "Secondary brand colour, `#rrggbb` (first boot only).",
    );
    ACCENT_COLOR = key("WhiteLabel__AccentColor", "#06b6d4", "Accent brand colour, `#rrggbb` (first boot only).");
    FOOTER_TEXT = key("WhiteLabel__FooterText", "", "Footer text (first boot only).");
    FLEET_ENABLED = key(
        "FleetIngest__Enabled",
        "false",
        "Client mode: push this portal's data to an Admin (fleet) portal.",
    );
    FLEET_URL = key("FleetIngest__Url", "", "Base URL of the Admin portal (required when enabled).");
    FLEET_TOKEN = secret(
        "FleetIngest__Token",
        "Push token shown once by the Admin portal's Customers page (required when enabled).",
    );
    FLEET_INTERVAL_SECONDS = key("FleetIngest__IntervalSeconds", "60", "Seconds between pushes (5-86400).");
    FLEET_BATCH_SIZE = key("FleetIngest__BatchSize", "5000", "Measurement rows per push request (1-50000).");
    MEASUREMENTS_EARLIEST_TIME = key(
        "Measurements__EarliestTime",
        "2000-01-01T00:00:00Z",
        "Readings timed before this (RFC 3339, or a date) are refused by every ingestion path, naming the row: a clock reset to year 0 or a hostile timestamp must not be stored (nor make energy spread over millennia).",
    );
    MODBUS_ENABLED = key("Modbus__Enabled", "true", "Client mode: poll the Modbus TCP devices configured under Sites.");
    MODBUS_REQUEST_TIMEOUT_MILLISECONDS = key(
        "Modbus__RequestTimeoutMilliseconds",
        "2000",
        "A Modbus request without a reply this long counts as a failure and drops the connection (100-60000).",
    );
    MODBUS_MAX_BACKOFF_SECONDS = key(
        "Modbus__MaxBackoffSeconds",
        "60",
        "Longest wait between reconnect attempts to an unreachable meter or gateway (1-3600).",
    );
    MODBUS_BUFFER_READINGS = key(
        "Modbus__BufferReadings",
        "100000",
        "Polled readings held in memory while the database is unavailable (1000-10000000); beyond it the oldest are dropped and counted.",
    );
    MQTT_ENABLED = key(
        "Mqtt__Enabled",
        "false",
        "Client mode: subscribe to the device topics (`sensor/<externalId>` and `sensor/<externalId>/<quantity>`) on the MQTT broker and store their readings.",
    );
    MQTT_HOST = key("Mqtt__Host", "mosquitto", "Host name or address of the MQTT broker (the stack's Mosquitto).");
    MQTT_PORT = key(
        "Mqtt__Port",
        "1883",
        "Port of the broker's MQTT listener (plain MQTT on the stack's internal network).",
    );
    MQTT_USERNAME = key(
        "Mqtt__Username",
        "tau-portal",
        "The portal's own broker account: written into `mqtt_users` as a superuser at every start (never a device's username).",
    );
    MQTT_PASSWORD = secret(
        "Mqtt__Password",
        "Password of `Mqtt__Username`, at least 16 characters (required when `Mqtt__Enabled`); stored bcrypt-hashed in `mqtt_users` at every start, so changing it and restarting rotates it.",
    );
    MQTT_BROKER_DATABASE_USER = key(
        "Mqtt__BrokerDatabaseUser",
        "mqtt_auth",
        "The database role the broker's auth plugin (mosquitto-go-auth) logs in as: created by the portal when `Mqtt__BrokerDatabasePassword` is set, with SELECT on `mqtt_users` and `mqtt_acls` and nothing else.",
    );
    MQTT_BROKER_DATABASE_PASSWORD = secret(
        "Mqtt__BrokerDatabasePassword",
        "Password of `Mqtt__BrokerDatabaseUser`, set at every start; when unset the portal manages no role for the broker.",
    );
    MQTT_DEVICE_URL = key(
        "Mqtt__DeviceUrl",
        "",
        "Where devices connect, shown on device pages, e.g. `mqtt://abc0001.portal.example.com:1883`; empty: the host of `Application__PublicUrl` on port 1883.",
    );
    LICENSE_KEY = secret(
        "License__Key",
        "Client mode: the licence key (a JWT signed by the Admin portal, Helm `license.key`). Unset: the portal runs unlicensed, without limits, and says so to admins and in /metrics.",
    );
    LICENSE_PUBLIC_KEY = key(
        "License__PublicKey",
        "",
        "The Ed25519 public key licence keys must be signed with (`tau-portal licence keygen` prints it; base64url or a PEM `PUBLIC KEY`); empty: the key compiled into this build (TAU_LICENSE_PUBLIC_KEY at build time).",
    );
    LICENSE_SIGNING_KEY = secret(
        "License__SigningKey",
        "Admin mode: the Ed25519 private key licences are signed with (PKCS#8 PEM, `tau-portal licence keygen` or `openssl genpkey -algorithm ed25519`); give it as `License__SigningKey_FILE`, a secret file that only the Admin portal mounts.",
    );
    SMTP_HOST = key(
        "Notifications__SmtpHost",
        "",
        "SMTP server for alarm e-mails (unset: no e-mail; webhooks still work). Mail is sent by a background task: a slow or failing server never holds up polling or pages.",
    );
    SMTP_PORT = key(
        "Notifications__SmtpPort",
        "",
        "SMTP port (1-65535); unset: 587 for `starttls`, 465 for `tls`, 25 for `none`.",
    );
    SMTP_SECURITY = key(
        "Notifications__SmtpSecurity",
        "starttls",
        "`starttls` (the server must offer STARTTLS), `tls` (TLS from the first byte, port 465) or `none` (plain text: only for a relay on the same host or a private network).",
    );
    SMTP_USERNAME = key("Notifications__SmtpUsername", "", "SMTP login (unset: no authentication).");
    SMTP_PASSWORD = secret("Notifications__SmtpPassword", "SMTP password (with `Notifications__SmtpUsername`).");
    SMTP_FROM = key(
        "Notifications__SmtpFrom",
        "",
        "Sender address of alarm e-mails, e.g. `alarms@portal.example.com` (required with `Notifications__SmtpHost`); the display name is the branding's application name.",
    );
    SMTP_TIMEOUT_SECONDS = key(
        "Notifications__SmtpTimeoutSeconds",
        "10",
        "How long one SMTP or webhook delivery may take before it counts as failed and is retried (1-300).",
    );
    DIGEST_THRESHOLD = key(
        "Notifications__DigestThreshold",
        "5",
        "When more alarm events than this are due for one recipient list at once (many alarms firing together, or the end of quiet hours), they go out as one digest instead of one message each (1-1000).",
    );
    RUST_LOG = key("RUST_LOG", "info", "Log filter, e.g. `info` or `info,tau_acuvim_portal=debug,sqlx=warn`.");
}

/// Read when `Application__Environment` is unset (the .NET deployments' name for it); documented
/// under that key rather than as a key of its own.
pub const ASPNETCORE_ENVIRONMENT: &str = "ASPNETCORE_ENVIRONMENT";
