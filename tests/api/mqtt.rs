//! MQTT end to end: Debian's real Mosquitto, started by the stack's own `deploy/mosquitto/start.sh`
//! with the stack's own `mosquitto.conf` (its plugin path, listeners and data folder pointed at the
//! test's), authenticates through `tests/mqtt/tau_auth_plugin.c`, which runs the conf's three
//! queries (seed 002's, verbatim) against the portal's `mqtt_users`/`mqtt_acls` as the read-only
//! role the portal creates. The portal binary subscribes as its own superuser; devices publish
//! with `mosquitto_pub` and the credentials their device page showed once. PyPI's bcrypt checks
//! the stored hashes. `scripts/test.sh` installs and builds all of it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;

use crate::helpers::{ADMIN_PASSWORD, Portal, TestDb, WebClient, admin_options, free_port, production_env, wait_for};

/// The seed's three queries, verbatim (seed 002, "Authentication Configuration").
pub const SEED_QUERIES: [(&str, &str); 3] = [
    ("auth_opt_pg_userquery", "SELECT password_hash FROM mqtt_users WHERE username = $1 AND is_active = true"),
    ("auth_opt_pg_aclquery", "SELECT topic FROM mqtt_acls WHERE username = $1 AND (access & $2) != 0"),
    ("auth_opt_pg_superquery", "SELECT COUNT(*) FROM mqtt_users WHERE username = $1 AND is_superuser = true"),
];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

struct Tools {
    mosquitto: PathBuf,
    clients: PathBuf,
    plugin: PathBuf,
    python: PathBuf,
}

fn tools() -> Option<Tools> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let found = (|| {
        Some(Tools {
            mosquitto: var("TAU_TEST_MOSQUITTO")?,
            clients: var("TAU_TEST_MOSQUITTO_CLIENTS")?,
            plugin: var("TAU_TEST_MOSQUITTO_PLUGIN")?,
            python: var("TAU_TEST_BCRYPT_PYTHON")?,
        })
    })();
    if found.is_none() {
        eprintln!(
            "SKIPPED: MQTT tests (TAU_TEST_MOSQUITTO*, TAU_TEST_BCRYPT_PYTHON not set; scripts/test.sh sets them)"
        );
    }
    found
}

/// The stack's mosquitto.conf with what must differ in a test replaced (each exactly once, so a
/// changed conf fails here rather than silently testing something else).
fn test_conf(tools: &Tools, port: u16, ws_port: u16, data: &Path) -> String {
    let mut conf = std::fs::read_to_string(repo().join("deploy/mosquitto/mosquitto.conf")).unwrap();
    for (from, to) in [
        ("auth_plugin /mosquitto/go-auth.so".to_string(), format!("auth_plugin {}", tools.plugin.display())),
        ("listener 1883".into(), format!("listener {port} 127.0.0.1")),
        ("listener 9001".into(), format!("listener {ws_port} 127.0.0.1")),
        ("persistence_location /mosquitto/data/".into(), format!("persistence_location {}/", data.display())),
        // stdout is block-buffered into a pipe: the test reads the log as it is written.
        ("log_dest stdout".into(), "log_dest stderr".into()),
    ] {
        assert_eq!(conf.matches(&from).count(), 1, "deploy/mosquitto/mosquitto.conf has `{from}` once");
        conf = conf.replace(&from, &to);
    }
    conf
}

/// Mosquitto, started the way the stack starts it (start.sh).
struct Broker {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Broker {
    fn start(tools: &Tools, db: &TestDb, role: &str, password: &str, port: u16, dir: &Path) -> Broker {
        let data = dir.join("data");
        std::fs::create_dir_all(&data).unwrap();
        if nix::unistd::Uid::effective().is_root() {
            // Started as root, Mosquitto drops to its own user, which must reach these.
            if let Ok(Some(user)) = nix::unistd::User::from_name("mosquitto") {
                std::os::unix::fs::chown(&data, Some(user.uid.as_raw()), Some(user.gid.as_raw())).unwrap();
            }
            std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        }
        let template = dir.join("mosquitto.conf.in");
        std::fs::write(&template, test_conf(tools, port, free_port(), &data)).unwrap();
        let o = admin_options();
        let mut child = Command::new("sh")
            .arg(repo().join("deploy/mosquitto/start.sh"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("MQTT_DB_HOST", o.get_host())
            .env("MQTT_DB_PORT", o.get_port().to_string())
            .env("MQTT_DB_NAME", &db.name)
            .env("MQTT_DB_USER", role)
            .env("MQTT_DB_PASSWORD", password)
            .env("MQTT_CONF_TEMPLATE", &template)
            .env("MQTT_CONF", dir.join("mosquitto.conf"))
            .env("MQTT_DATA", &data)
            .env("MOSQUITTO_BIN", &tools.mosquitto)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mosquitto");
        let lines = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        Broker { child, lines }
    }

    fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Waits for `needle` in the log (its lines reach the test through a pipe and a thread).
    async fn wait_log(&self, needle: &str) {
        wait_for(&format!("{needle:?} in the mosquitto log"), Duration::from_secs(10), || async {
            self.log().contains(needle).then_some(())
        })
        .await;
    }

    async fn wait_running(&self) {
        wait_for(&format!("mosquitto to run; its log:\n{}", self.log()), Duration::from_secs(20), || async {
            self.log().contains(" running").then_some(())
        })
        .await;
    }

    fn stop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a Mosquitto client command with a deadline: (success, stdout + stderr).
async fn client(tools: &Tools, program: &str, args: &[&str]) -> (bool, String) {
    let mut cmd = tokio::process::Command::new(tools.clients.join(program));
    cmd.args(args).stdin(Stdio::null()).kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(20), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{program} {args:?} did not finish in 20 s"))
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

async fn publish(tools: &Tools, port: u16, user: &str, password: &str, topic: &str, message: &str) -> (bool, String) {
    let port = port.to_string();
    let args = ["-h", "127.0.0.1", "-p", &port, "-u", user, "-P", password, "-q", "1", "-t", topic, "-m", message];
    client(tools, "mosquitto_pub", &args).await
}

/// Subscribes as `user` and waits (5 s at most) for one message: (a message came, the output).
async fn subscribe_once(tools: &Tools, port: u16, user: &str, password: &str, topic: &str) -> (bool, String) {
    let port = port.to_string();
    let args =
        ["-h", "127.0.0.1", "-p", &port, "-u", user, "-P", password, "-t", topic, "-C", "1", "-W", "5", "-q", "1"];
    client(tools, "mosquitto_sub", &args).await
}

/// bcrypt.checkpw by PyPI's bcrypt, an implementation independent of the portal's.
fn python_checkpw(tools: &Tools, password: &str, hash: &str) -> bool {
    let out = Command::new(&tools.python)
        .args(["-c", "import bcrypt, sys; print(bcrypt.checkpw(sys.argv[1].encode(), sys.argv[2].encode()))"])
        .args([password, hash])
        .output()
        .unwrap();
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    answer == "True"
}

/// The secret a "shown once" page shows.
fn shown_secret(body: &str) -> String {
    let at = body.find(r#"<code class="secret">"#).unwrap_or_else(|| panic!("no secret on the page: {body}"));
    let rest = &body[at + r#"<code class="secret">"#.len()..];
    rest[..rest.find("</code>").unwrap()].to_string()
}

struct Stack {
    tools: Tools,
    db: TestDb,
    pool: PgPool,
    portal: Portal,
    web: WebClient,
    base: String,
    broker_port: u16,
    role: String,
    role_password: String,
    portal_user: String,
    portal_password: String,
    _data: tempfile::TempDir,
}

impl Stack {
    /// The portal first, then the broker: the portal creates the broker's role and its own
    /// account, and its subscriber waits for a broker that is not there yet.
    async fn start(tools: Tools, dir: &Path) -> (Stack, Broker) {
        let db = TestDb::create().await;
        let data = tempfile::tempdir().unwrap();
        let broker_port = free_port();
        let unique = uuid::Uuid::new_v4().simple().to_string();
        // Roles are the cluster's, shared by every test database: one per test.
        let role = format!("mqtt_auth_{}", &unique[..12]);
        let role_password = format!("broker-db-{unique}");
        let portal_user = "tau-portal".to_string();
        let portal_password = format!("portal-mqtt-{unique}");
        let mut env = production_env(&db);
        env.extend([
            ("Mqtt__Enabled", "true".to_string()),
            ("Mqtt__Host", "127.0.0.1".to_string()),
            ("Mqtt__Port", broker_port.to_string()),
            ("Mqtt__Password", portal_password.clone()),
            ("Mqtt__BrokerDatabaseUser", role.clone()),
            ("Mqtt__BrokerDatabasePassword", role_password.clone()),
            ("Mqtt__DeviceUrl", format!("mqtt://127.0.0.1:{broker_port}")),
            ("Authentication__PasswordHashMemoryKib", "256".to_string()),
            ("Authentication__PasswordHashIterations", "1".to_string()),
        ]);
        let portal = Portal::start(&[], &env, data.path());
        portal.wait_listening().await;
        let broker = Broker::start(&tools, &db, &role, &role_password, broker_port, dir);
        broker.wait_running().await;
        portal.wait_for_message("Connected to the MQTT broker", Duration::from_secs(60)).await;
        let base = portal.url("");
        let mut web = WebClient::new();
        web.sign_in(&base, "admin@abc0001.example.com", ADMIN_PASSWORD).await;
        let pool = db.pool().await;
        let stack = Stack {
            tools,
            db,
            pool,
            portal,
            web,
            base,
            broker_port,
            role,
            role_password,
            portal_user,
            portal_password,
            _data: data,
        };
        (stack, broker)
    }

    async fn site(&mut self) -> i32 {
        let url = format!("{}/sites/new", self.base);
        let res = self.web.submit(&url, &url, &[("name", "Plant"), ("time_zone", "UTC")]).await;
        assert_eq!(res.status(), 303);
        crate::sites::id_in(res.headers()["location"].to_str().unwrap(), "/sites/")
    }

    async fn device(&mut self, site: i32, external_id: &str) -> i32 {
        let url = format!("{}/sites/{site}/devices/new", self.base);
        let fields = [
            ("site_id", site.to_string()),
            ("external_id", external_id.to_string()),
            ("name", external_id.to_string()),
            ("model", "generic".to_string()),
            ("source", "mqtt".to_string()),
            ("enabled", "on".to_string()),
        ];
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let res = self.web.submit(&url, &url, &fields).await;
        assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
        crate::sites::id_in(res.headers()["location"].to_str().unwrap(), "/devices/")
    }

    /// Creates or rotates the device's credentials; the password shown once.
    async fn credentials(&mut self, device: i32) -> String {
        let page = format!("{}/devices/{device}", self.base);
        let res = self.web.submit(&page, &format!("{page}/mqtt"), &[]).await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["cache-control"], "no-store", "the password page is never cached");
        shown_secret(&res.text().await.unwrap())
    }

    async fn rows(&self, external_id: &str) -> i64 {
        sqlx::query_scalar(
            r#"SELECT count(*) FROM monitoring."PowerMeasurements" m JOIN monitoring."Devices" d ON d."Id" = m."DeviceId"
               WHERE d."ExternalId" = $1"#,
        )
        .bind(external_id)
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }

    async fn wait_reading(&self, external_id: &str, time: &str, column: &str) -> f64 {
        let sql = format!(
            r#"SELECT m."{column}"::float8 FROM monitoring."PowerMeasurements" m JOIN monitoring."Devices" d ON d."Id" = m."DeviceId"
               WHERE d."ExternalId" = $1 AND m."Time" = $2::timestamptz"#
        );
        let what = format!("{column} of {external_id} at {time}; portal log:\n{}", self.portal.raw_lines().join("\n"));
        wait_for(&what, Duration::from_secs(30), || async {
            sqlx::query_scalar::<_, Option<f64>>(sqlx::AssertSqlSafe(sql.clone()))
                .bind(external_id)
                .bind(time)
                .fetch_optional(&self.pool)
                .await
                .unwrap()
                .flatten()
        })
        .await
    }

    async fn metrics(&self) -> String {
        reqwest::get(format!("http://127.0.0.1:{}/metrics", self.portal.metrics_port))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

fn minutes_ago(n: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::minutes(n)).format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[tokio::test]
async fn a_device_publishes_with_its_own_credentials_and_only_its_own_readings_are_stored() {
    let Some(tools) = tools() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (mut s, broker) = Stack::start(tools, dir.path()).await;
    assert!(
        broker.log().contains(
            "tau-auth: user query: SELECT password_hash FROM mqtt_users WHERE username = $1 AND is_active = true"
        ),
        "{}",
        broker.log()
    );
    let site = s.site().await;
    let meter = s.device(site, "meter-7").await;
    let other = s.device(site, "meter-8").await;

    // The device page offers credentials; creating them shows the password once.
    let page = s.web.send(s.web.http.get(format!("{}/devices/{meter}", s.base))).await.text().await.unwrap();
    assert!(page.contains("Create credentials") && page.contains("sensor/meter-7"), "{page}");
    let password = s.credentials(meter).await;
    assert!(password.len() >= 43, "at least 256 bits: {password}");

    // Stored as the seed defines it: bcrypt $2a$, cost 10, checked by an independent bcrypt.
    let (hash, active, superuser): (String, bool, bool) =
        sqlx::query_as("SELECT password_hash, is_active, is_superuser FROM mqtt_users WHERE username = 'meter-7'")
            .fetch_one(&s.pool)
            .await
            .unwrap();
    assert!(hash.starts_with("$2a$10$") && hash.len() == 60, "{hash}");
    assert!(active && !superuser);
    assert!(python_checkpw(&s.tools, &password, &hash), "PyPI bcrypt accepts the password");
    assert!(!python_checkpw(&s.tools, "not the password", &hash));
    let acls: Vec<(String, i32)> =
        sqlx::query_as("SELECT topic, access FROM mqtt_acls WHERE username = 'meter-7' ORDER BY topic")
            .fetch_all(&s.pool)
            .await
            .unwrap();
    assert_eq!(acls, [("command/meter-7/#".to_string(), 5), ("sensor/meter-7/#".to_string(), 3)]);
    let (portal_hash, portal_super): (String, bool) =
        sqlx::query_as("SELECT password_hash, is_superuser FROM mqtt_users WHERE username = $1")
            .bind(&s.portal_user)
            .fetch_one(&s.pool)
            .await
            .unwrap();
    assert!(portal_super && python_checkpw(&s.tools, &s.portal_password, &portal_hash), "the portal's own superuser");

    // A whole reading and the seed's single-quantity form, through the broker, stored.
    let (t1, t2, t3) = (minutes_ago(3), minutes_ago(2), minutes_ago(1));
    let port = s.broker_port;
    let reading = format!(r#"{{"time": "{t1}", "pTotal": 1234.5, "energyImportWh": 1000000}}"#);
    let (ok, out) = publish(&s.tools, port, "meter-7", &password, "sensor/meter-7", &reading).await;
    assert!(ok, "{out}");
    assert_eq!(s.wait_reading("meter-7", &t1, "PTotal").await, 1234.5);
    let (ok, out) = publish(
        &s.tools,
        port,
        "meter-7",
        &password,
        "sensor/meter-7/v1",
        &format!(r#"{{"value": 231.5, "unit": "V", "time": "{t2}"}}"#),
    )
    .await;
    assert!(ok, "{out}");
    assert_eq!(s.wait_reading("meter-7", &t2, "V1").await, 231.5);

    // The same message again (a QoS 1 redelivery) stores nothing twice; an invalid one is
    // counted and logged with its topic, and the subscriber carries on.
    assert!(publish(&s.tools, port, "meter-7", &password, "sensor/meter-7", &reading).await.0);
    assert!(publish(&s.tools, port, "meter-7", &password, "sensor/meter-7", "not json").await.0);
    assert!(
        publish(&s.tools, port, "meter-7", &password, "sensor/meter-7", &format!(r#"{{"time": "{t3}", "pTotal": 7}}"#))
            .await
            .0
    );
    assert_eq!(s.wait_reading("meter-7", &t3, "PTotal").await, 7.0);
    assert_eq!(s.rows("meter-7").await, 3, "one row per device and time");
    let line = s.portal.wait_for_message("Invalid MQTT message on sensor/meter-7", Duration::from_secs(10)).await;
    assert!(line["message"].as_str().unwrap().contains("not JSON"), "{line}");
    let metrics = s.metrics().await;
    assert!(metrics.contains(r#"tau_portal_mqtt_messages_total{result="invalid"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"tau_portal_readings_ingested_total{source="mqtt"} 3"#), "{metrics}");
    assert!(metrics.contains("tau_portal_mqtt_connected 1"), "{metrics}");
    assert!(metrics.contains("tau_portal_mqtt_credentials 1"), "{metrics}");
    crate::metrics::promtool_check(&metrics);

    // Refused, nothing stored: a wrong password, and a topic outside the device's ACL (the
    // broker drops it; a later message of the device arriving proves the first was not queued).
    let (ok, out) = publish(&s.tools, port, "meter-7", "wrong password", "sensor/meter-7", &reading).await;
    assert!(!ok && out.to_lowercase().contains("not authori"), "{out}");
    let (_, out) = publish(&s.tools, port, "meter-7", &password, "sensor/meter-8", r#"{"pTotal": 99}"#).await;
    let t4 = minutes_ago(0);
    assert!(
        publish(&s.tools, port, "meter-7", &password, "sensor/meter-7", &format!(r#"{{"time": "{t4}", "pTotal": 8}}"#))
            .await
            .0
    );
    s.wait_reading("meter-7", &t4, "PTotal").await;
    assert_eq!(s.rows("meter-8").await, 0, "another device's topic is refused ({out})");
    broker.wait_log("meter-7 access 2 to sensor/meter-8 denied").await;

    // Commands: the device may subscribe to its command topic (access 5 = read + subscribe).
    // The seed's example access 1 lets the broker deliver but refuses the subscription itself.
    let retained =
        ["-h", "127.0.0.1", "-p", &port.to_string(), "-u", &s.portal_user, "-P", &s.portal_password, "-r", "-q", "1"];
    for device in ["meter-7", "meter-8"] {
        let topic = format!("command/{device}/relay");
        let mut args = retained.to_vec();
        args.extend(["-t", &topic, "-m", "on"]);
        assert!(client(&s.tools, "mosquitto_pub", &args).await.0, "the superuser publishes anywhere");
    }
    let (ok, out) = subscribe_once(&s.tools, port, "meter-7", &password, "command/meter-7/#").await;
    assert!(ok && out.trim() == "on", "the device receives its command: {out}");
    let (ok, out) = subscribe_once(&s.tools, port, "meter-7", &password, "sensor/#").await;
    // (mosquitto_sub 2.0 exits 0 then; what it says is the answer.)
    assert!(out.contains("All subscription requests were denied"), "no subscription beyond its own topics: {ok} {out}");
    let other_password = s.credentials(other).await;
    sqlx::query("UPDATE mqtt_acls SET access = 1 WHERE username = 'meter-8' AND topic LIKE 'command/%'")
        .execute(&s.pool)
        .await
        .unwrap();
    let (ok, out) = subscribe_once(&s.tools, port, "meter-8", &other_password, "command/meter-8/#").await;
    assert!(
        out.contains("All subscription requests were denied") && !out.lines().any(|l| l.trim() == "on"),
        "with the seed's access = 1 the device cannot subscribe to its commands: {ok} {out}"
    );
    broker.wait_log("meter-8 access 4 to command/meter-8/# denied").await;

    // A device whose source changes away from MQTT loses its broker account with the change
    // (its page no longer shows MQTT, so nothing left behind could be revoked there).
    let edit = format!("{}/devices/{other}/edit", s.base);
    let fields = [
        ("site_id", site.to_string()),
        ("external_id", "meter-8".to_string()),
        ("name", "meter-8".to_string()),
        ("model", "generic".to_string()),
        ("source", "push".to_string()),
        ("enabled", "on".to_string()),
    ];
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let res = s.web.submit(&edit, &edit, &fields).await;
    assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
    let left: i64 = sqlx::query_scalar("SELECT (SELECT count(*) FROM mqtt_users WHERE username = 'meter-8') + (SELECT count(*) FROM mqtt_acls WHERE username = 'meter-8')")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(left, 0, "no broker account for a push device");
    let (ok, out) = publish(&s.tools, port, "meter-8", &other_password, "sensor/meter-8", r#"{"pTotal": 1}"#).await;
    assert!(!ok && out.to_lowercase().contains("not authori"), "source changed: {out}");

    // Rotating replaces the password; revoking removes the account and its ACLs at once.
    let rotated = s.credentials(meter).await;
    assert_ne!(rotated, password);
    assert!(!publish(&s.tools, port, "meter-7", &password, "sensor/meter-7", &reading).await.0, "the old password");
    let page = format!("{}/devices/{meter}", s.base);
    let res = s.web.submit(&page, &format!("{page}/mqtt/revoke"), &[]).await;
    assert_eq!(res.status(), 303);
    let (ok, out) = publish(&s.tools, port, "meter-7", &rotated, "sensor/meter-7", &reading).await;
    assert!(!ok && out.to_lowercase().contains("not authori"), "revoked: {out}");
    let left: i64 = sqlx::query_scalar("SELECT (SELECT count(*) FROM mqtt_users WHERE username = 'meter-7') + (SELECT count(*) FROM mqtt_acls WHERE username = 'meter-7')")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
    let audit: Vec<String> = sqlx::query_scalar(
        r#"SELECT "Action" FROM identity."AuditLog" WHERE "Action" LIKE 'device.mqtt%' ORDER BY "Id""#,
    )
    .fetch_all(&s.pool)
    .await
    .unwrap();
    assert_eq!(
        audit,
        [
            "device.mqtt-credentials-created",
            "device.mqtt-credentials-created",
            "device.mqtt-password-rotated",
            "device.mqtt-credentials-revoked"
        ]
    );
    let _ = (&s.db, &s.role, &s.role_password);
}

/// The broker going away loses nothing: the portal reconnects with backoff, and what the
/// device published meanwhile (queued by the broker for the portal's persistent session)
/// arrives once it is back.
#[tokio::test]
async fn the_subscriber_reconnects_and_loses_nothing_when_the_broker_restarts() {
    let Some(tools) = tools() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (mut s, mut broker) = Stack::start(tools, dir.path()).await;
    let site = s.site().await;
    let meter = s.device(site, "meter-9").await;
    let password = s.credentials(meter).await;
    let port = s.broker_port;

    broker.stop();
    s.portal.wait_for_message("Cannot reach the MQTT broker", Duration::from_secs(30)).await;
    let metrics = s.metrics().await;
    assert!(metrics.contains("tau_portal_mqtt_connected 0"), "{metrics}");
    let broker = Broker::start(&s.tools, &s.db, &s.role, &s.role_password, port, dir.path());
    broker.wait_running().await;
    // Published before the portal is back: the broker holds it for the portal's session.
    let t = minutes_ago(1);
    let (ok, out) =
        publish(&s.tools, port, "meter-9", &password, "sensor/meter-9", &format!(r#"{{"time": "{t}", "pTotal": 42}}"#))
            .await;
    assert!(ok, "{out}");
    assert_eq!(s.wait_reading("meter-9", &t, "PTotal").await, 42.0);
    s.portal.wait_for_message("Connected to the MQTT broker 127.0.0.1", Duration::from_secs(5)).await;
    assert!(s.portal.messages().iter().any(|m| m.contains("again after")), "the reconnection is logged");
}

/// The broker's configuration (which compose and the chart both use) carries the seed's three
/// queries verbatim, anonymous access off, the seed's hasher settings and both listeners.
#[test]
fn the_broker_configuration_runs_the_seeds_queries_verbatim() {
    let conf = std::fs::read_to_string(repo().join("deploy/mosquitto/mosquitto.conf")).unwrap();
    let lines: Vec<&str> = conf.lines().map(str::trim).filter(|l| !l.starts_with('#') && !l.is_empty()).collect();
    for (key, query) in SEED_QUERIES {
        let line = format!("{key} {query}");
        assert_eq!(lines.iter().filter(|l| **l == line).count(), 1, "{line}");
    }
    for line in [
        "allow_anonymous false",
        "auth_opt_backends postgres",
        "auth_opt_hasher bcrypt",
        "auth_opt_hasher_cost 10",
        "listener 1883",
        "listener 9001",
        "protocol websockets",
    ] {
        assert!(lines.contains(&line), "{line}");
    }
    assert!(!conf.contains("auth_opt_pg_password"), "no password in the configuration file");
}
