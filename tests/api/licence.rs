//! Licences end to end through the real routers: the Admin portal signs one on a customer's
//! Licences page with its private key, a Client portal given that key (and the Admin's public
//! key) honours its limits, warns before expiry, keeps working through the grace period, then
//! makes settings read-only while readings are still stored; a tampered or foreign key is refused.

use axum::http::StatusCode;
use chrono::Duration;
use serde_json::json;
use sqlx::PgPool;
use tau_acuvim_portal::auth::tokens;
use tau_acuvim_portal::config::{Env, RunMode};
use tau_acuvim_portal::fleet::{db as fleet_db, registry};
use tau_acuvim_portal::licence::keys::SigningKey;
use tau_acuvim_portal::licence::token;

use crate::helpers::{ADMIN_PASSWORD, Browser, Portal, TestApp, TestDb, admin_options, production_env, test_config};
use crate::ingest::{post as ingest, secret_of};
use crate::sites::{create_device, create_site, post_device, post_site};

async fn admin_app(pool: PgPool, key: &SigningKey) -> TestApp {
    let mut config = test_config(&admin_options());
    config.run_mode = RunMode::Admin;
    config.license.signing_key = Some(key.clone());
    TestApp::with_config(pool, config).await
}

async fn client_app(pool: PgPool, licence: &str, key: &SigningKey) -> TestApp {
    let mut config = test_config(&admin_options());
    config.license.key = Some(licence.to_string().into());
    config.license.public_key = Some(key.public_key());
    TestApp::with_config(pool, config).await
}

async fn signed_in(app: &TestApp) -> Browser {
    app.seed_admin().await;
    let mut b = app.browser();
    assert_eq!(b.sign_in("admin@example.com", ADMIN_PASSWORD).await.status, StatusCode::SEE_OTHER);
    b
}

/// The licence key the Admin's page shows after issuing one.
fn issued_key(body: &str) -> String {
    let marker = r#"<code class="secret licence-key">"#;
    let start = body.find(marker).unwrap_or_else(|| panic!("no licence key on the page: {body}")) + marker.len();
    body[start..start + body[start..].find('<').unwrap()].to_string()
}

/// Issues a licence for a new customer on the Admin portal (sharing the test database).
async fn issue(pool: PgPool, key: &SigningKey, fields: &[(&str, &str)]) -> (String, TestApp) {
    let admin = admin_app(pool, key).await;
    let token = tokens::generate(registry::TOKEN_PREFIX);
    let customer = fleet_db::register(&admin.state.db, "ABC0001", "Acme Corp", &token, "test").await.unwrap();
    let mut b = signed_in(&admin).await;
    let url = format!("/fleet/customers/{customer}/licences");
    let page = b.get(&url).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains(&key.public_key().text()), "the page shows the public key customers verify with");
    let mut all = vec![("csrf", page.csrf())];
    all.extend(fields.iter().map(|(k, v)| (*k, v.to_string())));
    let fields: Vec<(&str, &str)> = all.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let res = b.post(&url, &fields).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    (issued_key(&res.body), admin)
}

fn days(n: u64) -> std::time::Duration {
    std::time::Duration::from_secs(n * 86_400)
}

fn day_from_now(app: &TestApp, days: i64) -> String {
    (app.clock.now() + Duration::days(days)).format("%Y-%m-%d").to_string()
}

#[sqlx::test]
async fn an_issued_licence_is_honoured_expires_gracefully_and_never_stops_data(pool: PgPool) {
    let (key, _) = SigningKey::generate().unwrap();
    let probe = admin_app(pool.clone(), &key).await;
    let expires = day_from_now(&probe, 60);
    let (licence, admin) = issue(
        pool.clone(),
        &key,
        &[
            ("expires", &expires),
            ("sites", "1"),
            ("devices", "2"),
            ("users", "1"),
            ("grace_days", "14"),
            ("mqtt", "on"),
        ],
    )
    .await;
    assert!(licence.starts_with("eyJhbGc"), "a JWT, as the chart's license.key: {licence}");
    let claims = token::verify(&licence, &key.public_key()).unwrap();
    assert_eq!((claims.customer_code.as_str(), claims.company.as_str()), ("ABC0001", "Acme Corp"));
    assert_eq!((claims.limits.sites, claims.limits.devices, claims.limits.users), (Some(1), Some(2), Some(1)));
    assert_eq!((claims.features, claims.grace_days), (vec!["mqtt".to_string()], 14));
    let (stored, audited): (i64, i64) = sqlx::query_as(
        r#"SELECT (SELECT count(*) FROM fleet."Licences"),
                  (SELECT count(*) FROM identity."AuditLog" WHERE "Action" = 'fleet.licence-issued')"#,
    )
    .fetch_one(&admin.state.db)
    .await
    .unwrap();
    assert_eq!((stored, audited), (1, 1), "every licence issued is kept and audited");

    // The customer's portal: limits refuse creates beyond them, naming the limit.
    let app = client_app(pool, &licence, &key).await;
    let mut b = signed_in(&app).await;
    let page = b.get("/settings/licence").await;
    assert!(page.body.contains("Valid until") && page.body.contains("Acme Corp (ABC0001)"), "{}", page.body);
    assert!(b.get("/sites").await.body.find("licence-banner").is_none(), "no banner while all is well");
    let site = create_site(&mut b, "Plant").await;
    let res = post_site(&mut b, "/sites/new", &[("name", "Second plant"), ("time_zone", "UTC")]).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert!(res.body.contains("allows 1 sites, and it has 1: nothing was added"), "{}", res.body);
    create_device(&mut b, site, "meter-1", &[]).await;
    create_device(&mut b, site, "meter-2", &[]).await;
    let res = post_device(&mut b, &format!("/sites/{site}/devices/new"), "meter-3", &[]).await;
    assert!(res.status == StatusCode::FORBIDDEN && res.body.contains("allows 2 devices"), "{}", res.body);
    let csrf = b.get("/settings/users").await.csrf();
    let res = b
        .post("/settings/users", &[("csrf", &csrf), ("email", "v@example.com"), ("password", "a long password 1")])
        .await;
    assert!(res.status == StatusCode::FORBIDDEN && res.body.contains("allows 1 active users"), "{}", res.body);
    let count = |table: &'static str| {
        let db = app.state.db.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(&db)
                .await
                .unwrap()
        }
    };
    assert_eq!((count(r#"monitoring."Sites""#).await, count(r#"monitoring."Devices""#).await), (1, 2));
    assert_eq!(count(r#"identity."Users""#).await, 1, "nothing was added");
    let csrf = b.get("/settings/api-keys").await.csrf();
    let api_key = secret_of(&b.post("/settings/api-keys", &[("csrf", &csrf), ("name", "bridge")]).await);

    // Within 30 days of expiry (at midnight 60 days after today: 29 days and part of one): a banner for
    // admins. Sessions do not last a month: sign in again after each jump.
    app.clock.advance(days(31));
    b.sign_in("admin@example.com", ADMIN_PASSWORD).await;
    let body = b.get("/sites").await.body;
    assert!(body.contains("licence-banner") && body.contains("expires in 29 days"), "{body}");

    // Expired: the grace period, everything still works.
    app.clock.advance(days(30));
    b.sign_in("admin@example.com", ADMIN_PASSWORD).await;
    let body = b.get("/sites").await.body;
    assert!(body.contains("Settings become read-only on"), "{body}");
    let res = post_site(&mut b, &format!("/sites/{site}/edit"), &[("name", "Plant A"), ("time_zone", "UTC")]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "editing in the grace period: {}", res.body);

    // After the grace period: settings are read-only, readings are still stored.
    app.clock.advance(days(14));
    b.sign_in("admin@example.com", ADMIN_PASSWORD).await;
    let res = post_site(&mut b, &format!("/sites/{site}/edit"), &[("name", "Plant B"), ("time_zone", "UTC")]).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert!(res.body.contains("Nothing was changed") && res.body.contains("settings are read-only"), "{}", res.body);
    let name: String =
        sqlx::query_scalar(r#"SELECT "Name" FROM monitoring."Sites""#).fetch_one(&app.state.db).await.unwrap();
    assert_eq!(name, "Plant A");
    let now = app.clock.now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let (status, reply) = ingest(
        &app,
        Some(&api_key),
        serde_json::to_vec(&json!({"measurements": [{"externalId": "meter-1", "time": now, "pTotal": 1200.0}]}))
            .unwrap(),
    )
    .await;
    assert_eq!((status, reply["accepted"].as_i64()), (StatusCode::OK, Some(1)), "data collection never stops");
    // Taking access away stays possible: revoking the API key.
    let page = b.get("/settings/api-keys").await;
    let id: uuid::Uuid =
        sqlx::query_scalar(r#"SELECT "Id" FROM identity."ApiKeys""#).fetch_one(&app.state.db).await.unwrap();
    let res = b.post(&format!("/settings/api-keys/{id}/revoke"), &[("csrf", &page.csrf())]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
}

#[sqlx::test]
async fn tampered_and_foreign_keys_are_refused_with_a_clear_error(pool: PgPool) {
    let (key, _) = SigningKey::generate().unwrap();
    let (foreign, _) = SigningKey::generate().unwrap();
    let probe = admin_app(pool.clone(), &key).await;
    let expires = day_from_now(&probe, 60);
    let (licence, _) = issue(pool.clone(), &key, &[("expires", &expires), ("sites", "1"), ("grace_days", "14")]).await;

    // Raise the site limit in the claims and re-encode them: the signature no longer matches.
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = licence.split('.').collect();
    let mut claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["limits"]["sites"] = json!(1000);
    let tampered = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(claims.to_string()), parts[2]);

    for (given, verifier, why) in [(&tampered, &key, "tampered"), (&licence, &foreign, "signed by another key")] {
        let app = client_app(pool.clone(), given, verifier).await;
        let mut b = signed_in(&app).await;
        let page = b.get("/settings/licence").await.body;
        assert!(page.contains("signature does not verify"), "{why}: {page}");
        let res = post_site(&mut b, "/sites/new", &[("name", "Plant"), ("time_zone", "UTC")]).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{why}");
        assert!(res.body.contains("was refused") && res.body.contains("readings are still collected"), "{}", res.body);
    }

    // The Admin's form says what is wrong, field by field, and signs nothing.
    let admin = admin_app(pool.clone(), &key).await;
    let customer: uuid::Uuid =
        sqlx::query_scalar(r#"SELECT "Id" FROM fleet."Customers""#).fetch_one(&admin.state.db).await.unwrap();
    let mut b = signed_in(&admin).await;
    let url = format!("/fleet/customers/{customer}/licences");
    let csrf = b.get(&url).await.csrf();
    let res =
        b.post(&url, &[("csrf", &csrf), ("expires", "2001-01-01"), ("devices", "many"), ("grace_days", "400")]).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    for message in ["must be in the future", "Enter a whole number from 1 to 1000000", "from 0 to 365"] {
        assert!(res.body.contains(message), "{message}: {}", res.body);
    }
    let stored: i64 = sqlx::query_scalar(r#"SELECT count(*) FROM fleet."Licences""#).fetch_one(&pool).await.unwrap();
    assert_eq!(stored, 1);

    // A public key that is not one is a configuration error naming the key.
    let url = format!("postgres://{}@127.0.0.1/x", admin_options().get_username());
    let env = Env::from_pairs([
        ("DATABASE_URL", url.as_str()),
        ("Application__Environment", "Development"),
        ("License__PublicKey", "abc"),
    ]);
    let errors = tau_acuvim_portal::config::Config::from_env(&env).unwrap_err().to_string();
    assert!(errors.contains("License__PublicKey: an Ed25519 public key has 32 bytes"), "{errors}");
}

/// The real binary with a licence expiring in 10 days logs the warning at startup (and daily),
/// for the operator's log search; the licence key comes from a secret file (`License__Key_FILE`).
#[tokio::test]
async fn the_portal_logs_a_licence_about_to_expire() {
    let (key, _) = SigningKey::generate().unwrap();
    let now = chrono::Utc::now();
    let claims = token::Claims {
        iss: token::ISSUER.into(),
        jti: uuid::Uuid::new_v4(),
        sub: uuid::Uuid::new_v4(),
        customer_code: "ABC0001".into(),
        company: "Acme Corp".into(),
        limits: Default::default(),
        features: vec![],
        iat: now.timestamp(),
        exp: (now + Duration::days(10)).timestamp(),
        grace_days: 14,
    };
    let db = TestDb::create().await;
    let data = tempfile::tempdir().unwrap();
    let key_file = data.path().join("licence.key");
    std::fs::write(&key_file, format!("{}\n", token::sign(&claims, &key))).unwrap();
    let mut env = production_env(&db);
    env.push(("License__Key_FILE", key_file.display().to_string()));
    env.push(("License__PublicKey", key.public_key().text()));
    let portal = Portal::start(&[], &env, data.path());
    let line = portal
        .wait_for_message("The licence of this portal expires in 10 days", std::time::Duration::from_secs(60))
        .await;
    assert_eq!(line["level"], "WARN", "{line}");
    assert_eq!(line["state"], "expires_soon", "{line}");
}

/// `tau-portal licence keygen` writes the Admin's signing key (0600, never over a file without
/// --force) and prints the public key the customer portals verify with.
#[test]
fn keygen_writes_a_private_key_and_prints_its_public_key() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("licence-signing.pem");
    let run = |args: &[&str]| {
        crate::helpers::portal_command(&[]).args(["licence", "keygen", "--out"]).arg(&path).args(args).output().unwrap()
    };
    let out = run(&[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pem = std::fs::read_to_string(&path).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let key = SigningKey::parse(&pem).unwrap();
    let printed = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(tau_acuvim_portal::licence::keys::PublicKey::parse(&printed).unwrap(), key.public_key());
    let again = run(&[]);
    assert!(!again.status.success(), "an existing key is never replaced without --force");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), pem);
    assert!(run(&["--force"]).status.success());
    assert_ne!(std::fs::read_to_string(&path).unwrap(), pem);
}

/// A licence without the `mqtt` feature gives no device broker credentials (and stores none).
#[sqlx::test]
async fn mqtt_credentials_need_the_licences_mqtt_feature(pool: PgPool) {
    let (key, _) = SigningKey::generate().unwrap();
    let probe = admin_app(pool.clone(), &key).await;
    let expires = day_from_now(&probe, 60);
    let (licence, _) = issue(pool.clone(), &key, &[("expires", &expires), ("grace_days", "14")]).await;
    let app = client_app(pool, &licence, &key).await;
    let mut b = signed_in(&app).await;
    let site = create_site(&mut b, "Plant").await;
    let device = create_device(&mut b, site, "meter-1", &[("source", "mqtt"), ("model", "generic")]).await;
    let page = b.get(&format!("/devices/{device}")).await;
    let res = b.post(&format!("/devices/{device}/mqtt"), &[("csrf", &page.csrf())]).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert!(res.body.contains("does not include MQTT ingestion (feature mqtt)"), "{}", res.body);
    let accounts: i64 = sqlx::query_scalar("SELECT count(*) FROM mqtt_users").fetch_one(&app.state.db).await.unwrap();
    assert_eq!(accounts, 0);
}
