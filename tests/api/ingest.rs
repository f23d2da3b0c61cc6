//! The ingest API and its API keys, through the real router.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;
use tau_acuvim_portal::measurements::{self, Reading};

use crate::helpers::{ADMIN_PASSWORD, Browser, Reply, TestApp, site_with_devices};

/// Two devices on one site, created the way the Sites pages do (then the directory is told).
async fn devices(app: &TestApp) -> (i32, i32) {
    let (_, ids) = site_with_devices(&app.state.db, "Plant", "UTC", &["meter-1", "meter-2"]).await;
    app.state.devices.invalidate();
    (ids[0], ids[1])
}

async fn api_key(app: &TestApp) -> String {
    app.seed_admin().await;
    let mut b = app.browser();
    b.sign_in("admin@example.com", ADMIN_PASSWORD).await;
    let csrf = b.get("/settings/api-keys").await.csrf();
    let res = b.post("/settings/api-keys", &[("csrf", &csrf), ("name", "SCADA bridge")]).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    secret_of(&res)
}

pub(crate) fn secret_of(res: &Reply) -> String {
    let start = res.body.find(r#"<code class="secret">"#).unwrap() + r#"<code class="secret">"#.len();
    res.body[start..start + res.body[start..].find('<').unwrap()].to_string()
}

pub(crate) async fn post(app: &TestApp, key: Option<&str>, body: impl Into<Body>) -> (StatusCode, Value) {
    let mut b = app.browser();
    let mut req = Request::post("/api/ingest").header("content-type", "application/json");
    if let Some(key) = key {
        req = req.header("authorization", format!("Bearer {key}"));
    }
    let res = b.send(req, body.into()).await;
    let json = serde_json::from_str(&res.body).unwrap_or_else(|_| panic!("not JSON: {}", res.body));
    (res.status, json)
}

async fn rows(app: &TestApp) -> i64 {
    sqlx::query_scalar(r#"SELECT count(*) FROM monitoring."PowerMeasurements""#).fetch_one(&app.state.db).await.unwrap()
}

fn batch(n: usize, external_id: &str) -> Value {
    let rows: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "externalId": external_id,
                "time": format!("2026-11-01T00:{:02}:{:02}Z", i / 60 % 60, i % 60),
                "pTotal": 1000.0 + i as f64, "v1": 230.5, "frequency": 50.01, "energyImportWh": 123456.7 + i as f64,
            })
        })
        .collect();
    json!({ "measurements": rows })
}

#[sqlx::test]
async fn api_keys_are_shown_once_stored_hashed_and_revocable(pool: PgPool) {
    let app = TestApp::new(pool).await;
    devices(&app).await;
    let key = api_key(&app).await;
    assert!(key.starts_with("tau_") && key.len() == 47, "{key}");
    let stored: Vec<u8> =
        sqlx::query_scalar(r#"SELECT "KeyHash" FROM identity."ApiKeys""#).fetch_one(&app.state.db).await.unwrap();
    assert_ne!(stored, key.as_bytes(), "only the hash is stored");

    let (status, body) = post(&app, Some(&key), batch(1, "meter-1").to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let mut b: Browser = app.browser();
    b.sign_in("admin@example.com", ADMIN_PASSWORD).await;
    let page = b.get("/settings/api-keys").await;
    assert!(page.body.contains("SCADA bridge") && page.body.contains(&key[..12]), "{}", page.body);
    assert!(!page.body.contains(&key), "the full key is never shown again");
    let id: uuid::Uuid =
        sqlx::query_scalar(r#"SELECT "Id" FROM identity."ApiKeys""#).fetch_one(&app.state.db).await.unwrap();
    let res = b.post(&format!("/settings/api-keys/{id}/revoke"), &[("csrf", &page.csrf())]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    let (status, body) = post(&app, Some(&key), batch(1, "meter-1").to_string()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "The API key is not valid or has been revoked.");
}

#[sqlx::test]
async fn requests_without_a_valid_key_are_refused(pool: PgPool) {
    let app = TestApp::new(pool).await;
    devices(&app).await;
    let (status, body) = post(&app, None, batch(1, "meter-1").to_string()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["error"].as_str().unwrap().contains("Authorization: Bearer"), "{body}");
    assert!(body["requestId"].is_string());
    let (status, _) = post(&app, Some("tau_forged"), batch(1, "meter-1").to_string()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A signed-in browser's cookie is no substitute for a key.
    let mut b = app.browser();
    app.seed_admin().await;
    b.sign_in("admin@example.com", ADMIN_PASSWORD).await;
    let res = b
        .send(
            Request::post("/api/ingest").header("content-type", "application/json"),
            Body::from(batch(1, "meter-1").to_string()),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(rows(&app).await, 0);
}

#[sqlx::test]
async fn rows_for_unknown_devices_or_bad_times_are_rejected_by_index_and_the_rest_stored(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let (d1, _) = devices(&app).await;
    let key = api_key(&app).await;
    let body = json!({ "measurements": [
        { "externalId": "meter-1", "time": "2026-11-01T00:00:00Z", "pTotal": 1500.5, "energyImportWh": 1000.0 },
        { "externalId": "ghost", "time": "2026-11-01T00:00:00Z", "pTotal": 1.0 },
        { "externalId": "meter-2", "time": "yesterday", "pTotal": 1.0 },
        { "externalId": "meter-2", "time": "2099-01-01T00:00:00Z", "pTotal": 1.0 },
        { "externalId": "meter-2", "time": "2026-11-01T02:00:00+02:00", "v1": null, "iN": 3.25 },
    ]});
    let (status, res) = post(&app, Some(&key), body.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{res}");
    assert_eq!(res["accepted"], 2);
    assert_eq!(res["rejected"], 3);
    let reasons: Vec<(u64, &str, &str)> = res["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["index"].as_u64().unwrap(), e["externalId"].as_str().unwrap(), e["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(reasons[0], (1, "ghost", "unknown device"));
    assert_eq!((reasons[1].0, reasons[1].1), (2, "meter-2"));
    assert!(reasons[1].2.starts_with("invalid time:"), "{}", reasons[1].2);
    assert_eq!(reasons[2], (3, "meter-2", "time is more than 5 minutes in the future"));

    let (p, e): (Option<f32>, Option<f64>) = sqlx::query_as(
        r#"SELECT "PTotal", "EnergyImportWh" FROM monitoring."PowerMeasurements" WHERE "DeviceId" = $1"#,
    )
    .bind(d1)
    .fetch_one(&app.state.db)
    .await
    .unwrap();
    assert_eq!((p, e), (Some(1500.5), Some(1000.0)), "SI units as sent");
    let utc: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar(r#"SELECT "Time" FROM monitoring."PowerMeasurements" WHERE "IN" = 3.25"#)
            .fetch_one(&app.state.db)
            .await
            .unwrap();
    assert_eq!(utc.to_rfc3339(), "2026-11-01T00:00:00+00:00", "offsets are honoured");
}

#[sqlx::test]
async fn a_retried_batch_is_not_stored_twice(pool: PgPool) {
    let app = TestApp::new(pool).await;
    devices(&app).await;
    let key = api_key(&app).await;
    let body = batch(120, "meter-1").to_string();
    let (_, first) = post(&app, Some(&key), body.clone()).await;
    assert_eq!((first["accepted"].as_u64(), first["duplicates"].as_u64()), (Some(120), Some(0)));
    let (_, second) = post(&app, Some(&key), body).await;
    assert_eq!((second["accepted"].as_u64(), second["duplicates"].as_u64()), (Some(0), Some(120)));
    assert_eq!(rows(&app).await, 120);
}

#[sqlx::test]
async fn malformed_bodies_are_refused_whole_with_the_position(pool: PgPool) {
    let app = TestApp::new(pool).await;
    devices(&app).await;
    let key = api_key(&app).await;
    let cases: Vec<(String, StatusCode, &str)> = vec![
        (
            r#"{"measurements": [ {"externalId": "meter-1", "time": "2026-11-01T00:00:00Z", "pTotal": 1} "#.into(),
            StatusCode::BAD_REQUEST,
            "line 1 column",
        ),
        (
            r#"{"measurements": [{"externalId": "meter-1", "time": "2026-11-01T00:00:00Z", "pTotal": "high"}]}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid type: string \"high\"",
        ),
        (
            r#"{"measurements": [{"externalId": "meter-1", "time": "2026-11-01T00:00:00Z", "ptotal": 1}]}"#.into(),
            StatusCode::BAD_REQUEST,
            "measurements[0]: unknown field `ptotal`",
        ),
        (r#"{"measurements": []}"#.into(), StatusCode::BAD_REQUEST, "`measurements` is empty"),
        (r#"{"rows": []}"#.into(), StatusCode::BAD_REQUEST, "unknown field `rows`"),
        (
            batch(10_001, "meter-1").to_string(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "10001 rows in one batch; the limit is 10000.",
        ),
        (
            format!(r#"{{"measurements": [], "pad": "{}"}}"#, "x".repeat(6 * 1024 * 1024)),
            StatusCode::PAYLOAD_TOO_LARGE,
            "larger than 5 MB",
        ),
    ];
    for (body, status, message) in cases {
        let (got, res) = post(&app, Some(&key), body).await;
        assert_eq!(got, status, "{res}");
        assert!(res["error"].as_str().unwrap().contains(message), "expected {message:?} in {res}");
    }
    assert_eq!(rows(&app).await, 0, "nothing stored from a refused body");
}

#[sqlx::test]
async fn the_error_list_is_capped_and_the_rest_counted(pool: PgPool) {
    let app = TestApp::new(pool).await;
    devices(&app).await;
    let key = api_key(&app).await;
    let (_, res) = post(&app, Some(&key), batch(150, "ghost").to_string()).await;
    assert_eq!(res["rejected"], 150);
    assert_eq!(res["errors"].as_array().unwrap().len(), 100);
    assert_eq!(res["errorsNotListed"], 50);
}

#[sqlx::test]
async fn concurrent_clients_lose_nothing(pool: PgPool) {
    let app = TestApp::new(pool).await;
    devices(&app).await;
    let key = api_key(&app).await;
    let mut tasks = Vec::new();
    for client in 0..4 {
        let router = app.router.clone();
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            use tower::ServiceExt;
            for round in 0..5 {
                let rows: Vec<Value> = (0..200)
                    .map(|i| json!({ "externalId": if client % 2 == 0 { "meter-1" } else { "meter-2" },
                        "time": format!("2026-11-0{}T{:02}:{:02}:{:02}Z", 1 + client / 2, round, i / 60, i % 60), "pTotal": i }))
                    .collect();
                let req = Request::post("/api/ingest")
                    .header("content-type", "application/json")
                    .header("authorization", format!("Bearer {key}"))
                    .body(Body::from(json!({ "measurements": rows }).to_string()))
                    .unwrap();
                let res = router.clone().oneshot(req).await.unwrap();
                assert_eq!(res.status(), StatusCode::OK);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(rows(&app).await, 4 * 5 * 200);
}

/// Random and truncated bodies: never a server error, never a partial write.
#[sqlx::test]
async fn random_and_truncated_bodies_never_break_or_half_store(pool: PgPool) {
    let app = TestApp::new(pool).await;
    devices(&app).await;
    let key = api_key(&app).await;
    let valid = batch(50, "meter-1").to_string().into_bytes();
    let mut seed: u64 = 0x5eed;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut stored = 0;
    for round in 0..150 {
        let body: Vec<u8> = match round % 3 {
            0 => valid[..(next() as usize % valid.len())].to_vec(),
            1 => (0..(next() % 300)).map(|_| (next() % 256) as u8).collect(),
            _ => {
                let mut b = valid.clone();
                let at = next() as usize % b.len();
                b[at] = b"{}[]\",:0a-"[(next() % 10) as usize];
                b
            }
        };
        let mut browser = app.browser();
        let req = Request::post("/api/ingest").header("authorization", format!("Bearer {key}"));
        let res = browser.send(req, Body::from(body)).await;
        assert!(
            res.status.is_client_error() || res.status == StatusCode::OK,
            "round {round}: {} {}",
            res.status,
            res.body
        );
        // A refused body stores nothing; an accepted one stores exactly what it reports.
        let accepted = if res.status == StatusCode::OK {
            serde_json::from_str::<Value>(&res.body).unwrap()["accepted"].as_i64().unwrap()
        } else {
            0
        };
        stored += accepted;
        assert_eq!(rows(&app).await, stored, "round {round}: {} {}", res.status, res.body);
    }
}

#[sqlx::test]
async fn the_store_writes_non_finite_values_as_null(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let (d1, _) = devices(&app).await;
    let mut r = Reading::empty(d1, "2026-11-01T00:00:00Z".parse().unwrap());
    r.real[0] = Some(f32::NAN);
    r.real[14] = Some(f32::INFINITY);
    r.counters[0] = Some(f64::NEG_INFINITY);
    r.real[1] = Some(230.0);
    let dup = r.clone();
    assert_eq!(measurements::write(&app.state.db, &[r, dup]).await.unwrap(), 1, "a repeat inside one batch is skipped");
    let row: (Option<f32>, Option<f32>, Option<f64>, Option<f32>) =
        sqlx::query_as(r#"SELECT "Frequency", "PTotal", "EnergyImportWh", "V1" FROM monitoring."PowerMeasurements""#)
            .fetch_one(&app.state.db)
            .await
            .unwrap();
    assert_eq!(row, (None, None, None, Some(230.0)));
}

/// The OpenAPI document is checked against the real handler: every documented measurement
/// field is accepted, each required one is required, and the response has the documented keys.
#[sqlx::test]
async fn the_openapi_document_describes_the_real_handler(pool: PgPool) {
    let app = TestApp::new(pool).await;
    devices(&app).await;
    let key = api_key(&app).await;
    let doc: Value = serde_json::from_str(&app.browser().get("/api/openapi.json").await.body).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let schema = &doc["components"]["schemas"]["Measurement"];
    let mut row = serde_json::Map::new();
    for (name, prop) in schema["properties"].as_object().unwrap() {
        let value = match name.as_str() {
            "externalId" => json!("meter-1"),
            "time" => json!("2026-11-01T00:00:00Z"),
            _ => {
                assert_eq!(prop["type"], json!(["number", "null"]), "{name}");
                json!(1.5)
            }
        };
        row.insert(name.clone(), value);
    }
    let (status, res) = post(&app, Some(&key), json!({ "measurements": [row.clone()] }).to_string()).await;
    assert_eq!(status, StatusCode::OK, "every documented field is accepted: {res}");
    assert_eq!(res["accepted"], 1);
    let documented: Vec<&str> =
        doc["components"]["schemas"]["Result"]["properties"].as_object().unwrap().keys().map(String::as_str).collect();
    let mut returned: Vec<&str> = res.as_object().unwrap().keys().map(String::as_str).collect();
    returned.sort();
    let mut documented_sorted = documented.clone();
    documented_sorted.sort();
    assert_eq!(returned, documented_sorted);
    for required in schema["required"].as_array().unwrap() {
        let mut missing = row.clone();
        missing.remove(required.as_str().unwrap());
        let (status, res) = post(&app, Some(&key), json!({ "measurements": [missing] }).to_string()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{required} is required: {res}");
        assert!(res["error"].as_str().unwrap().contains(required.as_str().unwrap()), "{res}");
    }
}
