//! The fleet aggregator end to end: two real portal processes (an Admin and a customer's Client)
//! on two databases, the customer registered in the Admin's pages, its token taken from the
//! page, readings ingested on the Client through its ingest API, and the Admin's rows compared
//! with the Client's after every outage, restart, kill -9, token rotation and deactivation.

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::json;
use sqlx::PgPool;
use tau_acuvim_portal::auth::tokens;
use tau_acuvim_portal::db::migrate;
use tau_acuvim_portal::measurements::{COUNTER_QUANTITIES, REAL_QUANTITIES};

use crate::helpers::{
    ADMIN_PASSWORD, Portal, TestDb, WebClient, free_port, portal_command, site_with_devices, wait_for,
};

const START: Duration = Duration::from_secs(60);
/// Time for the Admin to have everything (pushes every 5 s; backoff at most 30 s).
const CONVERGE: Duration = Duration::from_secs(120);
const DEVICES: [&str; 3] = ["meter-a", "meter-b", "meter-c"];

fn common_env(db: &TestDb) -> Vec<(&'static str, String)> {
    vec![
        ("Database__ConnectionString", db.npgsql()),
        ("Application__Environment", "Development".into()),
        ("Authentication__DefaultAdminPassword", ADMIN_PASSWORD.into()),
        ("Authentication__PasswordHashMemoryKib", "256".into()),
        ("Authentication__PasswordHashIterations", "1".into()),
    ]
}

struct Fleet {
    admin_db: TestDb,
    admin_pool: PgPool,
    admin_port: u16,
    admin_data: tempfile::TempDir,
    admin: Option<Portal>,
    client_db: TestDb,
    client_pool: PgPool,
    client_data: tempfile::TempDir,
    client: Option<Portal>,
    api_key: String,
    /// Readings ingested so far, per device (their times follow on).
    next_minute: i64,
}

impl Fleet {
    async fn new() -> Fleet {
        let (admin_db, client_db) = (TestDb::create().await, TestDb::create().await);
        let mut fleet = Fleet {
            admin_pool: admin_db.pool().await,
            client_pool: client_db.pool().await,
            admin_db,
            client_db,
            admin_port: free_port(),
            admin_data: tempfile::tempdir().unwrap(),
            admin: None,
            client_data: tempfile::tempdir().unwrap(),
            client: None,
            api_key: String::new(),
            next_minute: 0,
        };
        fleet.start_admin().await;
        fleet
    }

    fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    async fn start_admin(&mut self) {
        let mut env = common_env(&self.admin_db);
        env.push(("Application__RunMode", "Admin".into()));
        env.push(("Authentication__DefaultAdminEmail", "ops@yourco.example".into()));
        let admin = Portal::spawn_on(self.admin_port, portal_command(&env), &[], self.admin_data.path());
        admin.wait_listening().await;
        self.admin = Some(admin);
    }

    async fn start_client(&mut self, token: &str) {
        let mut env = common_env(&self.client_db);
        env.extend([
            ("FleetIngest__Enabled", "true".to_string()),
            ("FleetIngest__Url", self.admin_url("")),
            ("FleetIngest__Token", token.to_string()),
            ("FleetIngest__IntervalSeconds", "5".into()),
            ("FleetIngest__BatchSize", "500".into()),
        ]);
        let client = Portal::start(&[], &env, self.client_data.path());
        client.wait_listening().await;
        self.client = Some(client);
    }

    fn client(&self) -> &Portal {
        self.client.as_ref().expect("the client runs")
    }

    async fn stop(portal: &mut Option<Portal>, signal: Signal) {
        let mut p = portal.take().expect("running");
        p.signal(signal);
        p.wait_exit(Duration::from_secs(30)).await;
    }

    /// `minutes` readings per device through the Client's ingest API, in batches of 1,000.
    async fn ingest(&mut self, minutes: i64) -> u64 {
        let base = chrono::DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z").unwrap();
        let mut rows = Vec::new();
        for m in self.next_minute..self.next_minute + minutes {
            for (k, device) in DEVICES.iter().enumerate() {
                let t = base + chrono::Duration::minutes(m);
                rows.push(json!({
                    "externalId": device,
                    "time": t.to_rfc3339(),
                    "pTotal": 1000.5 + (m % 97) as f64 * 3.3 + k as f64,
                    "v1": 230.1 + (m % 7) as f64 / 10.0,
                    "frequency": 50.02,
                    "energyImportWh": 1_000_000.25 + m as f64 * 16.7 + k as f64,
                }));
            }
        }
        self.next_minute += minutes;
        let http = reqwest::Client::new();
        let mut accepted = 0;
        for chunk in rows.chunks(1000) {
            let res = http
                .post(self.client().url("/api/ingest"))
                .bearer_auth(&self.api_key)
                .json(&json!({ "measurements": chunk }))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            accepted += res.json::<serde_json::Value>().await.unwrap()["accepted"].as_u64().unwrap();
        }
        accepted
    }

    /// Per device: (externalId, rows, digest of every stored value in time order).
    async fn digest(pool: &PgPool, table: &str, devices: &str) -> Vec<(String, i64, String)> {
        let values: Vec<String> =
            REAL_QUANTITIES.iter().chain(&COUNTER_QUANTITIES).map(|q| format!("m.\"{}\"", q.1)).collect();
        let sql = format!(
            r#"SELECT d."ExternalId", count(*), md5(string_agg(concat_ws(',', m."Time", {}), ';' ORDER BY m."Time"))
               FROM {table} m JOIN {devices} d ON d."Id" = m."DeviceId" GROUP BY 1 ORDER BY 1"#,
            values.join(", ")
        );
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await.unwrap()
    }

    /// Waits until the Admin holds exactly the Client's rows (and the Client's outbox is empty).
    async fn assert_converged(&self, what: &str) {
        let started = std::time::Instant::now();
        let client =
            Fleet::digest(&self.client_pool, r#"monitoring."PowerMeasurements""#, r#"monitoring."Devices""#).await;
        let expected_rows: i64 = client.iter().map(|d| d.1).sum();
        let mut last = Vec::new();
        let converged = tokio::time::timeout(CONVERGE, async {
            loop {
                last = Fleet::digest(&self.admin_pool, r#"fleet."PowerMeasurements""#, r#"fleet."Devices""#).await;
                if last == client {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
        assert!(
            converged.is_ok(),
            "{what}: the Admin's rows never matched the Client's ({expected_rows} rows)\nclient: {client:?}\nadmin: {last:?}\nclient log:\n{}",
            self.client.as_ref().map(|c| c.raw_lines().join("\n")).unwrap_or_default()
        );
        eprintln!("{what}: converged in {:.1} s", started.elapsed().as_secs_f64());
        // Never a duplicate: the key is (customer, device, time), and the counts matched.
        let admin_rows: i64 = sqlx::query_scalar(r#"SELECT count(*) FROM fleet."PowerMeasurements""#)
            .fetch_one(&self.admin_pool)
            .await
            .unwrap();
        assert_eq!(admin_rows, expected_rows, "{what}");
    }

    async fn admin_rows(&self) -> i64 {
        sqlx::query_scalar(r#"SELECT count(*) FROM fleet."PowerMeasurements""#)
            .fetch_one(&self.admin_pool)
            .await
            .unwrap()
    }

    /// Waits until some but not all of `total` rows reached the Admin: a push in progress.
    async fn wait_mid_push(&self, total: i64) {
        wait_for("a push in progress", CONVERGE, || async {
            let n = self.admin_rows().await;
            (n > total - 6000 && n < total).then_some(())
        })
        .await;
    }
}

fn secret_of(body: &str) -> String {
    let start = body.find(r#"<code class="secret">"#).expect("a secret on the page") + r#"<code class="secret">"#.len();
    body[start..start + body[start..].find('<').unwrap()].to_string()
}

async fn page(web: &mut WebClient, url: &str) -> String {
    let res = web.send(web.http.get(url)).await;
    assert_eq!(res.status(), 200, "{url}");
    res.text().await.unwrap()
}

#[tokio::test]
async fn a_customer_pushes_everything_exactly_once_through_outages_restarts_kills_and_rotations() {
    let mut fleet = Fleet::new().await;
    let admin_log = fleet.admin.as_ref().unwrap().messages();
    assert!(
        admin_log.iter().any(|m| m.starts_with("FleetTimescaleBootstrapper:") && m.contains("stay plain")),
        "{admin_log:#?}"
    );

    // Admin UI: sign in, register ABC0001, take the token shown once.
    let mut web = WebClient::new();
    web.sign_in(&fleet.admin_url(""), "ops@yourco.example", ADMIN_PASSWORD).await;
    let form = fleet.admin_url("/fleet/customers/new");
    let res =
        web.submit(&form, &fleet.admin_url("/fleet/customers"), &[("code", "ABC0001"), ("name", "Acme Corp")]).await;
    assert_eq!(res.status(), 200);
    let token = secret_of(&res.text().await.unwrap());
    assert!(token.starts_with("taufleet_") && token.len() > 40, "{token}");
    // The code is unique, and validated.
    let res = web.submit(&form, &fleet.admin_url("/fleet/customers"), &[("code", "abc0001"), ("name", "Again")]).await;
    assert_eq!(res.status(), 422);
    assert!(res.text().await.unwrap().contains("already registered"));
    let res = web.submit(&form, &fleet.admin_url("/fleet/customers"), &[("code", "AB01"), ("name", "X")]).await;
    assert_eq!(res.status(), 422);
    let customer: uuid::Uuid = sqlx::query_scalar(r#"SELECT "Id" FROM fleet."Customers" WHERE "Code" = 'ABC0001'"#)
        .fetch_one(&fleet.admin_pool)
        .await
        .unwrap();
    let stored_hash: Vec<u8> =
        sqlx::query_scalar(r#"SELECT "TokenHash" FROM fleet."Customers""#).fetch_one(&fleet.admin_pool).await.unwrap();
    assert_eq!(stored_hash, tokens::hash(&token), "only the hash is stored");

    // The customer's stack: devices, an ingest API key, then the portal with the push on.
    migrate::run(&fleet.client_pool, &migrate::MIGRATOR).await.unwrap();
    site_with_devices(&fleet.client_pool, "Plant", "Africa/Johannesburg", &DEVICES).await;
    let key = tokens::generate("tau_");
    sqlx::query(
        r#"INSERT INTO identity."ApiKeys" ("Name", "Prefix", "KeyHash", "CreatedBy") VALUES ('test', $1, $2, 'test')"#,
    )
    .bind(&key.prefix)
    .bind(key.hash.as_slice())
    .execute(&fleet.client_pool)
    .await
    .unwrap();
    fleet.api_key = key.secret;
    fleet.start_client(&token).await;
    fleet.client().wait_for_message("Fleet push started", START).await;
    assert_eq!(fleet.ingest(200).await, 600);
    fleet.assert_converged("first push").await;
    fleet.client().wait_for_message("Fleet push caught up", START).await;
    let sent = fleet.client().wait_for_message("Fleet batch sent", START).await;
    assert!(sent["accepted"].is_u64() && sent["rows"].is_u64(), "{sent}");

    // Customers page: Last push advanced, rows in the last 24 h, sites and devices; Recent ingest.
    let list = page(&mut web, &fleet.admin_url("/fleet/customers")).await;
    assert!(list.contains("ABC0001") && list.contains("Acme Corp"), "{list}");
    assert!(!list.contains(r#"<td class="last-push">never</td>"#), "{list}");
    assert!(list.contains(r#"<td class="rows-24h">600</td>"#), "{list}");
    let recent = page(&mut web, &fleet.admin_url(&format!("/fleet/customers/{customer}?tab=ingest"))).await;
    for kind in ["<td>sites</td>", "<td>devices</td>", "<td>measurements</td>"] {
        assert!(recent.contains(kind), "{kind} in {recent}");
    }
    let settings = {
        let mut cw = WebClient::new();
        cw.sign_in(&fleet.client().url(""), "admin@example.com", ADMIN_PASSWORD).await;
        page(&mut cw, &fleet.client().url("/settings/fleet-push")).await
    };
    assert!(settings.contains("Caught up") && settings.contains("rows-pushed"), "{settings}");

    // The Admin stops for a while, then comes back on the same address.
    Fleet::stop(&mut fleet.admin, Signal::SIGTERM).await;
    fleet.ingest(100).await;
    fleet.client().wait_for_message("Fleet push failing: connect", START).await;
    fleet.start_admin().await;
    fleet.assert_converged("after the Admin's outage").await;

    // The Client restarts in the middle of a catch-up (6,000 rows in batches of 500).
    fleet.ingest(2000).await;
    let total = fleet.client_rows().await;
    fleet.wait_mid_push(total).await;
    Fleet::stop(&mut fleet.client, Signal::SIGTERM).await;
    fleet.start_client(&token).await;
    fleet.assert_converged("after a Client restart mid-push").await;

    // kill -9 of the Client during a batch, then of the Admin.
    fleet.ingest(2000).await;
    let total = fleet.client_rows().await;
    fleet.wait_mid_push(total).await;
    Fleet::stop(&mut fleet.client, Signal::SIGKILL).await;
    fleet.start_client(&token).await;
    fleet.assert_converged("after kill -9 of the Client").await;
    fleet.ingest(2000).await;
    let total = fleet.client_rows().await;
    fleet.wait_mid_push(total).await;
    Fleet::stop(&mut fleet.admin, Signal::SIGKILL).await;
    fleet.start_admin().await;
    fleet.assert_converged("after kill -9 of the Admin").await;

    // Rotate the token: the old one is refused at once (401, listed on Recent ingest), nothing
    // moves; the Client recovers once restarted with the new token.
    let mut web = WebClient::new();
    web.sign_in(&fleet.admin_url(""), "ops@yourco.example", ADMIN_PASSWORD).await;
    let rotate = fleet.admin_url(&format!("/fleet/customers/{customer}/rotate"));
    let res = web.submit(&fleet.admin_url("/fleet/customers"), &rotate, &[]).await;
    assert_eq!(res.status(), 200);
    let new_token = secret_of(&res.text().await.unwrap());
    assert_ne!(new_token, token);
    let before = fleet.admin_rows().await;
    fleet.ingest(50).await;
    fleet.client().wait_for_message("Fleet push failing: 401", CONVERGE).await;
    assert_eq!(fleet.admin_rows().await, before, "a refused token moves nothing");
    let recent = page(&mut web, &fleet.admin_url(&format!("/fleet/customers/{customer}?tab=ingest"))).await;
    assert!(recent.contains("401") && recent.contains("rotated"), "{recent}");
    let metrics = reqwest::get(format!("http://127.0.0.1:{}/metrics", fleet.client().metrics_port))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains(r#"tau_portal_fleet_push_failures_total{status="401"}"#), "{metrics}");
    assert!(metrics.contains("tau_portal_fleet_push_last_success_timestamp_seconds"), "{metrics}");
    crate::metrics::promtool_check(&metrics);
    let admin_metrics =
        reqwest::get(format!("http://127.0.0.1:{}/metrics", fleet.admin.as_ref().unwrap().metrics_port))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
    assert!(admin_metrics.contains(r#"tau_portal_fleet_batches_received_total{status="401"}"#), "{admin_metrics}");
    assert!(admin_metrics.contains(r#"tau_portal_readings_ingested_total{source="fleet"}"#), "{admin_metrics}");
    crate::metrics::promtool_check(&admin_metrics);
    Fleet::stop(&mut fleet.client, Signal::SIGTERM).await;
    fleet.start_client(&new_token).await;
    fleet.assert_converged("after the token rotation").await;

    // Active off: 401 at once, stored data untouched; on again: the push resumes by itself.
    let edit = fleet.admin_url(&format!("/fleet/customers/{customer}/edit"));
    let res = web.submit(&edit, &edit, &[("name", "Acme Corp")]).await;
    assert_eq!(res.status(), 303);
    let before = fleet.admin_rows().await;
    fleet.ingest(50).await;
    wait_for("a 401 for the inactive customer", CONVERGE, || async {
        let n: i64 = sqlx::query_scalar(
            r#"SELECT count(*) FROM fleet."IngestEvents" WHERE "Status" = 401 AND "Error" LIKE '%inactive%'"#,
        )
        .fetch_one(&fleet.admin_pool)
        .await
        .unwrap();
        (n > 0).then_some(())
    })
    .await;
    assert_eq!(fleet.admin_rows().await, before);
    let res = web.submit(&edit, &edit, &[("name", "Acme Corp"), ("active", "on")]).await;
    assert_eq!(res.status(), 303);
    fleet.assert_converged("after Active off and on").await;

    // Delete the customer (the runbook's decommission): everything of it goes.
    let delete = fleet.admin_url(&format!("/fleet/customers/{customer}/delete"));
    let confirm = page(&mut web, &delete).await;
    assert!(confirm.contains("measurement rows") && confirm.contains("3 devices"), "{confirm}");
    let res = web.submit(&delete, &delete, &[]).await;
    assert_eq!(res.status(), 303);
    for table in [r#"fleet."Sites""#, r#"fleet."Devices""#, r#"fleet."PowerMeasurements""#, r#"fleet."IngestEvents""#] {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
            .fetch_one(&fleet.admin_pool)
            .await
            .unwrap();
        assert_eq!(n, 0, "{table} after the delete");
    }
}

impl Fleet {
    async fn client_rows(&self) -> i64 {
        sqlx::query_scalar(r#"SELECT count(*) FROM monitoring."PowerMeasurements""#)
            .fetch_one(&self.client_pool)
            .await
            .unwrap()
    }
}

// ---------------------------------------------------------------- the Admin's ingest in-process

mod ingest {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use sqlx::PgPool;
    use tau_acuvim_portal::auth::tokens;
    use tau_acuvim_portal::config::RunMode;
    use tau_acuvim_portal::fleet::wire::{self, Batch, BatchType, Device, Measurements, Receipt, Row, Site};
    use tau_acuvim_portal::fleet::{db, registry};

    use crate::helpers::{TestApp, admin_options, test_config};

    async fn admin_app(pool: PgPool) -> TestApp {
        let mut config = test_config(&admin_options());
        config.run_mode = RunMode::Admin;
        TestApp::with_config(pool, config).await
    }

    async fn customer(app: &TestApp, code: &str) -> (uuid::Uuid, String) {
        let token = tokens::generate(registry::TOKEN_PREFIX);
        let id = db::register(&app.state.db, code, code, &token, "test").await.unwrap();
        (id, token.secret)
    }

    async fn post(app: &TestApp, token: Option<&str>, body: Vec<u8>) -> (StatusCode, serde_json::Value) {
        let mut req = Request::post(wire::PATH).header("content-encoding", "gzip");
        if let Some(token) = token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let res = app.browser().send(req, Body::from(body)).await;
        (res.status, serde_json::from_str(&res.body).unwrap_or(serde_json::Value::Null))
    }

    fn inventory(devices: &[i32]) -> [Batch; 2] {
        let site = Site { id: 1, name: "Plant".into(), address: String::new(), time_zone: "UTC".into() };
        let devices = devices
            .iter()
            .map(|&id| Device {
                id,
                site_id: 1,
                external_id: format!("m{id}"),
                name: format!("Meter {id}"),
                model: "generic".into(),
                enabled: true,
            })
            .collect();
        [
            Batch { sites: vec![site], ..Batch::new(BatchType::Sites) },
            Batch { devices, ..Batch::new(BatchType::Devices) },
        ]
    }

    fn readings(device: i32, n: i64) -> Batch {
        let t0 = chrono::DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z").unwrap().timestamp_micros();
        let rows = (0..n)
            .map(|k| {
                let mut values = vec![None; wire::columns().len()];
                values[14] = Some(1000.0 + k as f64);
                Row { device, time_us: t0 + k * 60_000_000, values }
            })
            .collect();
        Batch {
            measurements: Some(Measurements { columns: wire::columns(), rows }),
            ..Batch::new(BatchType::Measurements)
        }
    }

    async fn rows_of(app: &TestApp, customer: uuid::Uuid) -> i64 {
        sqlx::query_scalar(r#"SELECT count(*) FROM fleet."PowerMeasurements" WHERE "CustomerId" = $1"#)
            .bind(customer)
            .fetch_one(&app.state.db)
            .await
            .unwrap()
    }

    #[sqlx::test]
    async fn a_token_writes_only_its_own_customer(pool: PgPool) {
        let app = admin_app(pool).await;
        let (a, token_a) = customer(&app, "AAA0001").await;
        let (b, token_b) = customer(&app, "BBB0001").await;
        // Both customers have a device 1 of their own; only B has a device 2.
        for batch in inventory(&[1]) {
            assert_eq!(post(&app, Some(&token_a), batch.encode().unwrap()).await.0, StatusCode::OK);
        }
        for batch in inventory(&[1, 2]) {
            assert_eq!(post(&app, Some(&token_b), batch.encode().unwrap()).await.0, StatusCode::OK);
        }
        let (status, receipt) = post(&app, Some(&token_a), readings(1, 10).encode().unwrap()).await;
        assert_eq!((status, receipt["accepted"].as_u64()), (StatusCode::OK, Some(10)));
        // A's token naming B's device 2 writes nothing anywhere: there is no device 2 of A.
        let (status, receipt) = post(&app, Some(&token_a), readings(2, 5).encode().unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!((receipt["accepted"].as_u64(), receipt["rejected"].as_u64()), (Some(0), Some(5)), "{receipt}");
        assert_eq!((rows_of(&app, a).await, rows_of(&app, b).await), (10, 0));
        // Device 1 of B is B's own, whatever A sent for its device 1.
        let (_, receipt) = post(&app, Some(&token_b), readings(1, 3).encode().unwrap()).await;
        assert_eq!(receipt["accepted"].as_u64(), Some(3));
        assert_eq!((rows_of(&app, a).await, rows_of(&app, b).await), (10, 3));
        let mixed: i64 = sqlx::query_scalar(
            r#"SELECT count(*) FROM fleet."PowerMeasurements" m JOIN fleet."Devices" d ON d."Id" = m."DeviceId"
               WHERE d."CustomerId" <> m."CustomerId""#,
        )
        .fetch_one(&app.state.db)
        .await
        .unwrap();
        assert_eq!(mixed, 0);
        // A token reads nothing: the registry's pages want a signed-in administrator.
        let req = Request::get("/fleet/customers").header("authorization", format!("Bearer {token_a}"));
        let res = app.browser().send(req, Body::empty()).await;
        assert_ne!(res.status, StatusCode::OK);
        assert!(!res.body.contains("BBB0001"));
    }

    /// A new batch holding rows the Admin has (a re-sent late range) cannot take the direct COPY:
    /// it goes through the staging table, storing only the new rows and counting the others.
    #[sqlx::test]
    async fn a_batch_overlapping_stored_rows_stores_only_the_new_ones(pool: PgPool) {
        let app = admin_app(pool).await;
        let (a, token) = customer(&app, "AAA0001").await;
        for batch in inventory(&[1]) {
            post(&app, Some(&token), batch.encode().unwrap()).await;
        }
        let (_, first) = post(&app, Some(&token), readings(1, 10).encode().unwrap()).await;
        assert_eq!((first["accepted"].as_u64(), first["duplicates"].as_u64()), (Some(10), Some(0)), "{first}");
        let (status, overlap) = post(&app, Some(&token), readings(1, 25).encode().unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!((overlap["accepted"].as_u64(), overlap["duplicates"].as_u64()), (Some(15), Some(10)), "{overlap}");
        assert_eq!(rows_of(&app, a).await, 25);
        let values: Vec<f32> = sqlx::query_scalar(
            r#"SELECT "PTotal" FROM fleet."PowerMeasurements" WHERE "CustomerId" = $1 ORDER BY "Time""#,
        )
        .bind(a)
        .fetch_all(&app.state.db)
        .await
        .unwrap();
        assert_eq!(values, (0..25).map(|k| 1000.0 + k as f32).collect::<Vec<_>>(), "every row once, as sent");
    }

    #[sqlx::test]
    async fn replays_versions_malformed_and_oversized_batches(pool: PgPool) {
        let app = admin_app(pool).await;
        let (a, token) = customer(&app, "AAA0001").await;
        for batch in inventory(&[1]) {
            post(&app, Some(&token), batch.encode().unwrap()).await;
        }
        let body = readings(1, 20).encode().unwrap();
        let (_, first) = post(&app, Some(&token), body.clone()).await;
        let (status, again) = post(&app, Some(&token), body).await;
        assert_eq!(status, StatusCode::OK);
        let (first, again): (Receipt, Receipt) =
            (serde_json::from_value(first).unwrap(), serde_json::from_value(again).unwrap());
        assert_eq!((first.accepted, first.replay), (20, false));
        assert_eq!(again, Receipt { replay: true, ..first }, "a replay gets the stored receipt");
        assert_eq!(rows_of(&app, a).await, 20);

        let mut future = readings(1, 1);
        future.version = 99;
        let (status, refusal) = post(&app, Some(&token), future.encode().unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(refusal["code"], wire::UNSUPPORTED_VERSION);
        assert!(refusal["error"].as_str().unwrap().contains("version 99"), "{refusal}");

        let mut bad = readings(1, 2);
        bad.measurements.as_mut().unwrap().columns[0] = "warpFactor".into();
        let (status, refusal) = post(&app, Some(&token), bad.encode().unwrap()).await;
        assert_eq!((status, refusal["code"].as_str()), (StatusCode::BAD_REQUEST, Some("malformed")));
        assert!(refusal["error"].as_str().unwrap().contains("warpFactor"), "{refusal}");
        let (status, _) = post(&app, Some(&token), b"\x1f\x8b not gzip".to_vec()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);

        let huge = vec![0u8; wire::MAX_BODY_BYTES + 1];
        let (status, refusal) = post(&app, Some(&token), huge).await;
        assert_eq!((status, refusal["code"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("too-large")));
        let (status, _) = post(&app, None, readings(1, 1).encode().unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = post(&app, Some("taufleet_forged"), readings(1, 1).encode().unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        // Every refusal of a known customer is on its Recent ingest tab; nothing more was stored.
        let refusals: Vec<i32> = sqlx::query_scalar(
            r#"SELECT "Status" FROM fleet."IngestEvents" WHERE "CustomerId" = $1 AND "Status" <> 200 ORDER BY "Id""#,
        )
        .bind(a)
        .fetch_all(&app.state.db)
        .await
        .unwrap();
        assert_eq!(refusals, [400, 400, 400, 413]);
        assert_eq!(rows_of(&app, a).await, 20);
    }
}

// ---------------------------------------------------------------- the runbook on TimescaleDB

/// The fleet section's SQL, as OPERATIONS.md gives it (`<id>` is the customer's id).
pub const RUNBOOK_RECENT: &str =
    r#"SELECT "BatchType","RowsAccepted","ReceivedAt" FROM fleet."IngestEvents" ORDER BY "ReceivedAt" DESC LIMIT 10;"#;
pub const RUNBOOK_CUSTOMER_EVENTS: &str =
    r#"SELECT * FROM fleet."IngestEvents" WHERE "CustomerId" = '<id>' ORDER BY "ReceivedAt" DESC;"#;
pub const RUNBOOK_COMPRESSION: &str = r#"SELECT * FROM hypertable_compression_stats('fleet."PowerMeasurements"');"#;
pub const RUNBOOK_REFRESH: &str = "CALL refresh_continuous_aggregate('fleet.hourly_per_device', NULL, NULL);";
pub const RUNBOOK_DELETE: &str = r#"DELETE FROM fleet."Customers" WHERE "Code" = 'ABC0001';"#;

#[test]
fn operations_md_gives_the_fleet_sql_that_the_timescaledb_leg_runs() {
    let ops = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/OPERATIONS.md")).unwrap();
    for sql in [RUNBOOK_RECENT, RUNBOOK_CUSTOMER_EVENTS, RUNBOOK_COMPRESSION, RUNBOOK_REFRESH, RUNBOOK_DELETE] {
        assert!(ops.contains(sql), "OPERATIONS.md does not give {sql}");
    }
}

/// Called by the TimescaleDB leg (its server has one session, so one test drives it): the
/// Admin's bootstrapper on real TimescaleDB, then every SQL line of the runbook's fleet section.
/// Rows are written with INSERT: the test double cannot run COPY FROM STDIN.
pub async fn runbook_sql_on_timescaledb(url: &str) {
    use tau_acuvim_portal::db::timescale::Outcome;
    use tau_acuvim_portal::fleet::bootstrap::{self, FleetStorage};

    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(url).await.unwrap();
    let outcome = Outcome::Hypertable { extension_version: "2".into() };
    for _ in 0..2 {
        assert_eq!(bootstrap::bootstrap(&pool, &outcome).await.unwrap(), FleetStorage::Timescale);
    }
    let scalar = async |sql: &str| -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_one(&pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    };
    assert_eq!(
        scalar(
            "SELECT count(*) FROM timescaledb_information.hypertables
             WHERE hypertable_schema = 'fleet' AND hypertable_name = 'PowerMeasurements' AND compression_enabled"
        )
        .await,
        1
    );
    assert_eq!(
        scalar("SELECT count(*) FROM timescaledb_information.jobs WHERE hypertable_schema = 'fleet'").await,
        2,
        "one compression and one refresh policy, however often the bootstrapper ran"
    );
    let customer: uuid::Uuid = sqlx::query_scalar(
        r#"INSERT INTO fleet."Customers" ("Code", "Name", "TokenHash", "TokenPrefix", "CreatedBy")
           VALUES ('ABC0001', 'Acme Corp', $1, 'taufleet_x', 'test') RETURNING "Id""#,
    )
    .bind(tokens::hash("taufleet_test").as_slice())
    .fetch_one(&pool)
    .await
    .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        r#"INSERT INTO fleet."Sites" ("CustomerId", "SourceId", "Name", "TimeZone") VALUES ('{customer}', 1, 'Plant', 'UTC');
           INSERT INTO fleet."Devices" ("CustomerId", "SourceId", "SiteId", "ExternalId", "Name", "Model", "Enabled")
               SELECT '{customer}', 1, "Id", 'meter-1', 'Main', 'generic', true FROM fleet."Sites";
           INSERT INTO fleet."PowerMeasurements" ("CustomerId", "DeviceId", "Time", "PTotal", "EnergyImportWh")
               SELECT '{customer}', d."Id", t, 1000, 1000 * extract(epoch FROM t - '2026-01-01') / 3600
               FROM fleet."Devices" d, generate_series(timestamptz '2026-01-01', '2026-03-01', interval '1 hour') AS t;
           INSERT INTO fleet."IngestEvents" ("CustomerId", "BatchId", "BatchType", "RowsAccepted", "Status")
               VALUES ('{customer}', gen_random_uuid(), 'measurements', 1417, 200);"#
    )))
    .execute(&pool)
    .await
    .unwrap();

    let recent = sqlx::query(RUNBOOK_RECENT).fetch_all(&pool).await.unwrap();
    assert_eq!(recent.len(), 1);
    let events = RUNBOOK_CUSTOMER_EVENTS.replace("<id>", &customer.to_string());
    assert_eq!(sqlx::query(sqlx::AssertSqlSafe(events)).fetch_all(&pool).await.unwrap().len(), 1);
    sqlx::raw_sql(RUNBOOK_REFRESH).execute(&pool).await.unwrap();
    assert_eq!(
        scalar(r#"SELECT sum("Samples")::int8 FROM fleet.hourly_per_device"#).await,
        1417,
        "the continuous aggregate holds every hour"
    );
    // The compression policy compresses the chunks older than 30 days; the runbook's query shows it.
    let job: i32 = sqlx::query_scalar(
        "SELECT job_id FROM timescaledb_information.jobs WHERE hypertable_schema = 'fleet' AND proc_name = 'policy_compression'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    sqlx::query("CALL run_job($1)").bind(job).execute(&pool).await.unwrap();
    let stats: Vec<(Option<i64>, Option<i64>)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT total_chunks, number_compressed_chunks FROM ({}) s",
        RUNBOOK_COMPRESSION.trim_end_matches(';')
    )))
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(stats[0].1.unwrap_or(0) > 0, "compressed chunks: {stats:?}");
    sqlx::raw_sql(RUNBOOK_COMPRESSION).execute(&pool).await.unwrap();
    // Restored-like: bootstrapping again over compressed chunks changes nothing.
    assert_eq!(bootstrap::bootstrap(&pool, &outcome).await.unwrap(), FleetStorage::Timescale);

    // Decommission: the runbook's DELETE cascades to everything of the customer.
    sqlx::raw_sql(RUNBOOK_DELETE).execute(&pool).await.unwrap();
    for table in [r#"fleet."Sites""#, r#"fleet."Devices""#, r#"fleet."PowerMeasurements""#, r#"fleet."IngestEvents""#] {
        assert_eq!(scalar(&format!("SELECT count(*) FROM {table}")).await, 0, "{table}");
    }
    sqlx::raw_sql(RUNBOOK_REFRESH).execute(&pool).await.unwrap();
    assert_eq!(scalar("SELECT count(*) FROM fleet.hourly_per_device").await, 0);
    pool.close().await;

    // The Admin binary on it logs the bootstrapper by name.
    let data = tempfile::tempdir().unwrap();
    let env = [
        ("DATABASE_URL", url.to_string()),
        ("Database__MaxConnections", "1".to_string()),
        ("Application__RunMode", "Admin".to_string()),
        ("Authentication__DefaultAdminPassword", ADMIN_PASSWORD.to_string()),
    ];
    let admin = Portal::start(&[], &env, data.path());
    admin.wait_listening().await;
    let line = admin.wait_for_message("FleetTimescaleBootstrapper:", Duration::from_secs(5)).await;
    assert_eq!(line["level"], "INFO", "{line}");
}

// ---------------------------------------------------------------- the push against a faulty Admin

/// The real push worker against an HTTP server that answers what the test scripts: 413 (split),
/// 429 with Retry-After (wait), 400 malformed (quarantine after three), then 200. Every retry of
/// a batch must be byte-identical; nothing may be lost except the quarantined batch's rows,
/// which stay listed in the outbox.
mod faults {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Response};
    use chrono::{TimeDelta, Utc};
    use secrecy::SecretString;
    use tau_acuvim_portal::config::FleetIngest;
    use tau_acuvim_portal::db::migrate;
    use tau_acuvim_portal::fleet::push::{PushStatus, Pusher};
    use tau_acuvim_portal::fleet::wire::{self, BatchType, Receipt};
    use tau_acuvim_portal::measurements::{self, Reading};
    use tokio_util::sync::CancellationToken;

    use crate::helpers::{TestDb, site_with_devices, wait_for};

    #[derive(Default)]
    struct Peer {
        /// Answers for measurement batches, in order; then 200.
        script: VecDeque<(u16, &'static str)>,
        /// Every measurement request: (batch id, rows, body, when).
        seen: Vec<(uuid::Uuid, usize, Bytes, Instant)>,
    }

    async fn answer(State(peer): State<Arc<Mutex<Peer>>>, body: Bytes) -> Response {
        let batch = wire::decode(&body, true).expect("the push sends valid batches");
        let rows = batch.rows() as u64;
        let mut peer = peer.lock().unwrap();
        if batch.kind == BatchType::Measurements {
            peer.seen.push((batch.batch_id, rows as usize, body.clone(), Instant::now()));
            if let Some((status, code)) = peer.script.pop_front() {
                let status = StatusCode::from_u16(status).unwrap();
                let refusal = wire::Refusal { error: format!("scripted {status}"), code: code.into() };
                let mut res = (status, axum::Json(refusal)).into_response();
                if status == StatusCode::TOO_MANY_REQUESTS {
                    res.headers_mut().insert("retry-after", "2".parse().unwrap());
                }
                return res;
            }
        }
        let receipt = Receipt {
            batch_id: batch.batch_id,
            accepted: rows,
            duplicates: 0,
            rejected: 0,
            errors: vec![],
            replay: false,
        };
        axum::Json(receipt).into_response()
    }

    #[tokio::test]
    async fn splits_on_413_waits_on_429_and_quarantines_a_malformed_batch() {
        let db = TestDb::create().await;
        let pool = db.pool().await;
        migrate::run(&pool, &migrate::MIGRATOR).await.unwrap();
        let (_, devices) = site_with_devices(&pool, "Plant", "UTC", &["m1"]).await;
        // Whole microseconds, as the database stores them.
        let t0 = chrono::DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap() - TimeDelta::hours(1);
        let readings: Vec<Reading> = (0..40).map(|k| Reading::empty(devices[0], t0 + TimeDelta::minutes(k))).collect();
        measurements::write(&pool, &readings).await.unwrap();

        let peer = Arc::new(Mutex::new(Peer {
            script: [(413, "too-large"), (429, ""), (400, "malformed"), (400, "malformed"), (400, "malformed")].into(),
            ..Peer::default()
        }));
        let app = axum::Router::new().route(wire::PATH, axum::routing::post(answer)).with_state(peer.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let settings = FleetIngest {
            enabled: true,
            url: Some(url.parse().unwrap()),
            token: Some(SecretString::from("taufleet_test")),
            interval: Duration::from_secs(5),
            batch_size: 1000,
        };
        let status = PushStatus::default();
        let shutdown = CancellationToken::new();
        let pusher = Pusher { db: pool.clone(), settings, status: status.clone() };
        let task = tokio::spawn(pusher.run(shutdown.clone()));

        let quarantined: (uuid::Uuid, i32) = wait_for("a quarantined batch", Duration::from_secs(60), || async {
            sqlx::query_as(
                r#"SELECT "BatchId", "Rows" FROM monitoring."FleetOutbox" WHERE "QuarantinedAt" IS NOT NULL"#,
            )
            .fetch_optional(&pool)
            .await
            .unwrap()
        })
        .await;
        wait_for("the rest delivered", Duration::from_secs(60), || async {
            let waiting: i64 =
                sqlx::query_scalar(r#"SELECT count(*) FROM monitoring."FleetOutbox" WHERE "QuarantinedAt" IS NULL"#)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            (waiting == 0 && status.get().caught_up).then_some(())
        })
        .await;
        shutdown.cancel();
        task.await.unwrap();

        let seen = std::mem::take(&mut peer.lock().unwrap().seen);
        // 413: the 40-row batch came back as two halves with new ids.
        assert_eq!(seen[0].1, 40);
        let (first_half, second_half) =
            (seen[1].0, *seen.iter().map(|s| &s.0).find(|id| **id != seen[0].0 && **id != seen[1].0).unwrap());
        assert_ne!(first_half, seen[0].0);
        assert_eq!(seen.iter().filter(|s| s.0 == first_half).map(|s| s.1).next(), Some(20));
        // The 429 and the three 400s all got the same batch, byte for byte, the 429's retry only
        // after Retry-After.
        let retries: Vec<_> = seen.iter().filter(|s| s.0 == first_half).collect();
        assert_eq!(retries.len(), 4, "429, then 400 three times");
        assert!(retries.iter().all(|r| r.2 == retries[0].2), "retries are byte-identical");
        assert!(retries[1].3 - retries[0].3 >= Duration::from_secs(2), "Retry-After honoured");
        assert_eq!(quarantined, (first_half, 20));
        // The other half went through, and nothing else is pending or lost.
        assert!(seen.iter().any(|s| s.0 == second_half && s.1 == 20));
        assert_eq!(status.get().rows_pushed, 20);
        let position: chrono::DateTime<Utc> =
            sqlx::query_scalar(r#"SELECT "SentUntil" FROM monitoring."FleetPositions""#)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(position, readings[39].time + TimeDelta::microseconds(1));
    }
}
