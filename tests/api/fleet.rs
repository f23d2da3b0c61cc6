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
    assert!(sent["fields"]["accepted"].is_u64(), "{sent}");

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
