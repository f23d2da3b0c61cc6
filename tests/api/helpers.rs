//! Shared test plumbing: throwaway databases on the private test cluster, the real binary as a
//! child process with its JSON log captured, a TCP proxy that can cut and restore the database
//! link, and polling with a deadline (never sleeps as synchronisation).

use std::io::{BufRead, BufReader};
use std::net::TcpListener as StdListener;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};
use tau_acuvim_portal::clock::Clock;
use tau_acuvim_portal::config::{Config, Env};
use tau_acuvim_portal::db::timescale::Outcome;
use tau_acuvim_portal::state::AppState;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

pub const ADMIN_PASSWORD: &str = "correct horse battery staple";

/// The superuser URL of the private cluster started by `scripts/test.sh`.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .expect("DATABASE_URL is not set: run the tests through scripts/test.sh, which starts a private PostgreSQL")
}

pub fn admin_options() -> PgConnectOptions {
    database_url().parse().expect("DATABASE_URL is a valid postgres:// URL")
}

/// A fresh, empty database for one process-level test (the cluster is thrown away afterwards).
pub struct TestDb {
    pub name: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let name = format!("tau_proc_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect_with(&admin_options()).await.expect("connect to the test cluster");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create database");
        conn.close().await.ok();
        TestDb { name }
    }

    pub fn options(&self) -> PgConnectOptions {
        admin_options().database(&self.name)
    }

    pub async fn pool(&self) -> PgPool {
        PgPool::connect_with(self.options()).await.expect("connect to the test database")
    }

    /// The database in the Npgsql form the runbook's `.env` files use.
    pub fn npgsql(&self) -> String {
        let o = admin_options();
        format!(
            "Host={};Port={};Database={};Username={};Password=unused",
            o.get_host(),
            o.get_port(),
            self.name,
            o.get_username()
        )
    }
}

/// A free loopback port (bound then released; good enough for tests on a private machine).
/// A site in `time_zone` with push devices named by their externalIds, inserted directly (for
/// tests that need no Sites page); (site, the devices' ids in the order given).
pub async fn site_with_devices(db: &PgPool, name: &str, time_zone: &str, external_ids: &[&str]) -> (i32, Vec<i32>) {
    let site: i32 =
        sqlx::query_scalar(r#"INSERT INTO monitoring."Sites" ("Name", "TimeZone") VALUES ($1, $2) RETURNING "Id""#)
            .bind(name)
            .bind(time_zone)
            .fetch_one(db)
            .await
            .expect("insert a site");
    let mut devices = Vec::new();
    for external_id in external_ids {
        let id: i32 = sqlx::query_scalar(
            r#"INSERT INTO monitoring."Devices" ("SiteId", "ExternalId", "Name", "Model", "Source")
               VALUES ($1, $2, $2, 'generic', 'push') RETURNING "Id""#,
        )
        .bind(site)
        .bind(external_id)
        .fetch_one(db)
        .await
        .expect("insert a device");
        devices.push(id);
    }
    (site, devices)
}

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Polls `check` until it returns `Some`, failing the test with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A valid Development configuration for in-process tests against `db`, with cheap password
/// hashing (the production parameters are asserted by a unit test).
pub fn test_config(db: &PgConnectOptions) -> Config {
    let url = format!(
        "postgres://{}@{}:{}/{}?sslmode=disable",
        db.get_username(),
        db.get_host(),
        db.get_port(),
        db.get_database().unwrap_or("postgres")
    );
    let env = Env::from_pairs([
        ("DATABASE_URL", url.as_str()),
        ("Application__Environment", "Development"),
        ("Authentication__DefaultAdminPassword", ADMIN_PASSWORD),
        ("Authentication__PasswordHashMemoryKib", "256"),
        ("Authentication__PasswordHashIterations", "1"),
    ]);
    Config::from_env(&env).expect("test config is valid").0
}

/// The real router on a test database, with its own data directory and a clock tests can move.
pub struct TestApp {
    pub router: Router,
    pub state: AppState,
    pub clock: Clock,
    _data: tempfile::TempDir,
}

impl TestApp {
    pub async fn new(pool: PgPool) -> TestApp {
        Self::with_config(pool, test_config(&admin_options())).await
    }

    pub async fn with_config(pool: PgPool, mut config: Config) -> TestApp {
        let data = tempfile::tempdir().unwrap();
        config.data_directory = data.path().to_path_buf();
        let clock = Clock::default();
        let storage = Outcome::PlainTable { reason: "tests run on plain PostgreSQL".into() };
        let state = AppState::new(pool, config, clock.clone(), &storage).await.expect("app state");
        TestApp { router: tau_acuvim_portal::app::router(state.clone()), state, clock, _data: data }
    }

    /// Seeds the default admin (`admin@example.com` / [`ADMIN_PASSWORD`]).
    pub async fn seed_admin(&self) {
        tau_acuvim_portal::auth::seed::seed_default_admin(&self.state.db, &self.state.config, &self.state.passwords)
            .await
            .unwrap();
    }

    pub fn browser(&self) -> Browser {
        Browser { app: self.router.clone(), cookies: Default::default(), headers: Vec::new() }
    }
}

pub async fn test_app(pool: PgPool, config: Config) -> Router {
    TestApp::with_config(pool, config).await.router
}

/// Sends a GET through the real router; returns status and body text.
pub async fn get(app: &Router, path: &str) -> (StatusCode, String) {
    let res = app.clone().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn location(&self) -> &str {
        self.headers.get("location").map_or("", |v| v.to_str().unwrap())
    }

    /// The `csrf` hidden field of the page's first form.
    pub fn csrf(&self) -> String {
        let at = self.body.find(r#"name="csrf" value=""#).unwrap_or_else(|| panic!("no csrf field in {}", self.body));
        let rest = &self.body[at + r#"name="csrf" value=""#.len()..];
        rest[..rest.find('"').unwrap()].to_string()
    }
}

/// A minimal cookie-keeping client over the real router (no network, no redirects followed).
pub struct Browser {
    app: Router,
    pub cookies: std::collections::BTreeMap<String, String>,
    /// Extra headers sent with every request.
    pub headers: Vec<(String, String)>,
}

impl Browser {
    pub async fn send(&mut self, req: axum::http::request::Builder, body: Body) -> Reply {
        let mut req = req;
        if !self.cookies.is_empty() {
            let cookie = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
            req = req.header("cookie", cookie);
        }
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        let res = self.app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
        for set in res.headers().get_all("set-cookie") {
            let set = set.to_str().unwrap();
            let (pair, attrs) = set.split_once(';').unwrap_or((set, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || attrs.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_string(), value.to_string());
            }
        }
        let status = res.status();
        let headers = res.headers().clone();
        let body = String::from_utf8_lossy(&res.into_body().collect().await.unwrap().to_bytes()).into_owned();
        Reply { status, headers, body }
    }

    pub async fn get(&mut self, path: &str) -> Reply {
        self.send(Request::get(path), Body::empty()).await
    }

    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Reply {
        let body = serde_urlencoded::to_string(fields).unwrap();
        let req = Request::post(path).header("content-type", "application/x-www-form-urlencoded");
        self.send(req, Body::from(body)).await
    }

    /// Uploads one file as `multipart/form-data` field `field`.
    pub async fn upload(&mut self, path: &str, field: &str, file_name: &str, bytes: &[u8]) -> Reply {
        let boundary = "----tau-test-boundary-7MA4YWxkTrZu0gW";
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{file_name}\"\r\n\
             Content-Type: image/png\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let req = Request::post(path).header("content-type", format!("multipart/form-data; boundary={boundary}"));
        self.send(req, Body::from(body)).await
    }

    /// Opens the sign-in page and submits it; returns the reply to the POST.
    pub async fn sign_in(&mut self, email: &str, password: &str) -> Reply {
        let form = self.get("/login").await;
        let csrf = form.csrf();
        self.post("/login", &[("csrf", &csrf), ("email", email), ("password", password), ("next", "/")]).await
    }

    pub fn session_cookie(&self) -> Option<&String> {
        self.cookies.get("tau_session")
    }
}

// ---------------------------------------------------------------- the real binary

/// A client with a manual cookie jar that never follows redirects (to see them).
pub struct WebClient {
    pub http: reqwest::Client,
    pub cookies: std::collections::BTreeMap<String, String>,
}

impl WebClient {
    pub fn new() -> WebClient {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        WebClient { http, cookies: Default::default() }
    }

    pub fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    pub async fn send(&mut self, req: reqwest::RequestBuilder) -> reqwest::Response {
        let req = if self.cookies.is_empty() { req } else { req.header("cookie", self.cookie_header()) };
        let res = req.send().await.unwrap();
        for set in res.headers().get_all("set-cookie") {
            let set = set.to_str().unwrap();
            let pair = set.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_string(), value.to_string());
            }
        }
        res
    }

    pub async fn csrf(&mut self, url: &str) -> String {
        let body = self.send(self.http.get(url)).await.text().await.unwrap();
        let at = body.find(r#"name="csrf" value=""#).expect("a form") + r#"name="csrf" value=""#.len();
        body[at..at + body[at..].find('"').unwrap()].to_string()
    }

    /// Signs in at a real portal `base` (http://host:port).
    pub async fn sign_in(&mut self, base: &str, email: &str, password: &str) {
        let csrf = self.csrf(&format!("{base}/login")).await;
        let form = [("csrf", csrf.as_str()), ("email", email), ("password", password), ("next", "/")];
        let res = self.send(self.http.post(format!("{base}/login")).form(&form)).await;
        assert_eq!(res.status(), 303, "sign-in at {base}");
    }

    /// Submits a form at `url` with the CSRF token of the page at `form_page`; the response.
    pub async fn submit(&mut self, form_page: &str, url: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let csrf = self.csrf(form_page).await;
        let mut form = vec![("csrf", csrf.as_str())];
        form.extend_from_slice(fields);
        self.send(self.http.post(url).form(&form)).await
    }
}

/// The portal binary running as a child process; killed on drop.
pub struct Portal {
    child: Child,
    /// The separate Prometheus listener.
    pub metrics_port: u16,
    lines: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
    pub port: u16,
}

pub fn portal_command(env: &[(&str, String)]) -> Command {
    portal_command_of(std::path::Path::new(env!("CARGO_BIN_EXE_tau-portal")), env)
}

/// [`portal_command`] of the binary at `program` (a copy another user can reach).
pub fn portal_command_of(program: &std::path::Path, env: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(program);
    // Only what the test gives: the developer's own environment must not leak into the config.
    cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).env("RUST_LOG", "info");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

impl Portal {
    /// Starts `tau-portal <args>` on a free port with `env` (plus listen address and data dir).
    pub fn start(args: &[&str], env: &[(&str, String)], data_dir: &std::path::Path) -> Portal {
        Portal::spawn(portal_command(env), args, data_dir)
    }

    /// Starts a prepared command (e.g. one set to run as another user).
    pub fn spawn(cmd: Command, args: &[&str], data_dir: &std::path::Path) -> Portal {
        Portal::spawn_on(free_port(), cmd, args, data_dir)
    }

    /// Starts on a given port (a restarted server that its peers must find again).
    pub fn spawn_on(port: u16, mut cmd: Command, args: &[&str], data_dir: &std::path::Path) -> Portal {
        let metrics_port = free_port();
        // Production requires the public URL: the portal's own address unless the test sets one
        // (an empty value unsets it).
        if !cmd.get_envs().any(|(k, _)| k == "Application__PublicUrl") {
            cmd.env("Application__PublicUrl", format!("http://127.0.0.1:{port}"));
        }
        cmd.args(args)
            .env("Application__ListenAddress", format!("127.0.0.1:{port}"))
            .env("Application__MetricsAddress", format!("127.0.0.1:{metrics_port}"))
            .env("Application__DataDirectory", data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn tau-portal");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let readers = [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ]
        .into_iter()
        .map(|stream| {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            })
        })
        .collect();
        Portal { child, metrics_port, lines, readers, port }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn raw_lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Every stdout line parsed as JSON (a non-JSON line fails the test: the contract is JSON logs).
    pub fn logs(&self) -> Vec<Value> {
        self.raw_lines()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l}")))
            .collect()
    }

    pub fn messages(&self) -> Vec<String> {
        self.logs().iter().map(|v| v["message"].as_str().unwrap_or_default().to_string()).collect()
    }

    pub async fn wait_for_message(&self, needle: &str, timeout: Duration) -> Value {
        let what = format!("log message containing {needle:?}; logs so far:\n{}", self.raw_lines().join("\n"));
        wait_for(&what, timeout, || async {
            self.logs().into_iter().find(|v| v["message"].as_str().is_some_and(|m| m.contains(needle)))
        })
        .await
    }

    /// Waits until the HTTP server answers.
    pub async fn wait_listening(&self) {
        self.wait_for_message("Portal listening on", Duration::from_secs(60)).await;
    }

    /// Waits for the process to exit and for its output to be read to the end.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let what = format!("the portal to exit; logs:\n{}", self.raw_lines().join("\n"));
        let child = &mut self.child;
        let status = wait_for(&what, timeout, || {
            let status = child.try_wait().unwrap();
            async move { status }
        })
        .await;
        for reader in self.readers.drain(..) {
            reader.join().expect("log reader thread");
        }
        status
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signal the portal");
    }
}

impl Drop for Portal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn production_env(db: &TestDb) -> Vec<(&'static str, String)> {
    vec![
        ("Database__ConnectionString", db.npgsql()),
        ("Authentication__DefaultAdminEmail", "admin@abc0001.example.com".into()),
        ("Authentication__DefaultAdminPassword", ADMIN_PASSWORD.into()),
    ]
}

// ---------------------------------------------------------------- a cuttable link to PostgreSQL

/// Forwards a loopback port to the test cluster. `cut()` closes the listener AND every open
/// connection, as a database host that goes away would; `restore()` listens again.
pub struct Proxy {
    pub port: u16,
    target: String,
    running: Option<CancellationToken>,
}

impl Proxy {
    pub fn new() -> Proxy {
        let o = admin_options();
        Proxy { port: free_port(), target: format!("{}:{}", o.get_host(), o.get_port()), running: None }
    }

    pub async fn restore(&mut self) {
        assert!(self.running.is_none(), "proxy already running");
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.expect("bind proxy port");
        let stop = CancellationToken::new();
        let (target, token) = (self.target.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let (mut inbound, _) = tokio::select! {
                    accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
                    () = token.cancelled() => return,
                };
                let (target, token) = (target.clone(), token.clone());
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        () = token.cancelled() => {}
                    }
                });
            }
        });
        self.running = Some(stop);
    }

    pub fn cut(&mut self) {
        if let Some(token) = self.running.take() {
            token.cancel();
        }
    }

    pub fn options(&self) -> PgConnectOptions {
        admin_options().host("127.0.0.1").port(self.port)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}
