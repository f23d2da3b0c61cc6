//! Every change commits with its audit row or not at all: with the audit log refusing inserts (a
//! trigger raising an exception, in this test's own database), each kind of change fails, and
//! the data, the caches and the sessions stay as they were.

use axum::http::StatusCode;
use sqlx::PgPool;

use crate::helpers::{ADMIN_PASSWORD, Browser, TestApp};
use crate::sites::{admin, create_device, create_site, post_device, post_site};

/// From now on every insert into the audit log fails.
async fn refuse_audit_rows(db: &PgPool) {
    sqlx::raw_sql(
        r#"CREATE FUNCTION identity."RefuseAudit"() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN RAISE EXCEPTION 'the audit log refuses rows (test)'; END $$;
           CREATE TRIGGER "TR_RefuseAudit" BEFORE INSERT ON identity."AuditLog"
               FOR EACH ROW EXECUTE FUNCTION identity."RefuseAudit"();"#,
    )
    .execute(db)
    .await
    .unwrap();
}

async fn count(db: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(db).await.unwrap()
}

async fn password_hashes(db: &PgPool) -> Vec<String> {
    sqlx::query_scalar(r#"SELECT "PasswordHash" FROM identity."Users" ORDER BY "Email""#).fetch_all(db).await.unwrap()
}

async fn post(b: &mut Browser, page: &str, url: &str, fields: &[(&str, &str)]) -> StatusCode {
    let csrf = b.get(page).await.csrf();
    let mut all = vec![("csrf", csrf.as_str())];
    all.extend_from_slice(fields);
    b.post(url, &all).await.status
}

#[sqlx::test]
async fn a_change_whose_audit_row_cannot_be_written_is_rolled_back(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let mut b = admin(&app).await;
    let site = create_site(&mut b, "Plant A").await;
    let device = create_device(&mut b, site, "MTR-1", &[]).await;
    assert!(app.state.devices.snapshot().await.unwrap().contains_key("MTR-1"));
    let viewer = [("email", "viewer@example.com"), ("password", "viewer password 123")];
    assert_eq!(post(&mut b, "/settings/users", "/settings/users", &viewer).await, StatusCode::SEE_OTHER);
    let viewer_id: uuid::Uuid =
        sqlx::query_scalar(r#"SELECT "Id" FROM identity."Users" WHERE "Email" = 'viewer@example.com'"#)
            .fetch_one(&pool)
            .await
            .unwrap();
    let mut v = app.browser();
    assert_eq!(v.sign_in("viewer@example.com", "viewer password 123").await.status, StatusCode::SEE_OTHER);
    let sessions = count(&pool, r#"SELECT count(*) FROM identity."Sessions""#).await;
    let hashes = password_hashes(&pool).await;
    let audit_rows = count(&pool, r#"SELECT count(*) FROM identity."AuditLog""#).await;
    refuse_audit_rows(&pool).await;
    let failed = StatusCode::INTERNAL_SERVER_ERROR;

    // Sites and devices: nothing created, changed or deleted; the directory still resolves MTR-1.
    let res = post_site(&mut b, "/sites/new", &[("name", "Plant B"), ("time_zone", "UTC")]).await;
    assert_eq!(res.status, failed);
    let edit = format!("/sites/{site}/edit");
    let res = post_site(&mut b, &edit, &[("name", "Plant A2"), ("time_zone", "UTC")]).await;
    assert_eq!(res.status, failed);
    assert_eq!(count(&pool, r#"SELECT count(*) FROM monitoring."Sites" WHERE "Name" = 'Plant A'"#).await, 1);
    assert_eq!(count(&pool, r#"SELECT count(*) FROM monitoring."Sites""#).await, 1);
    let res = post_device(&mut b, &format!("/devices/{device}/edit"), "MTR-2", &[]).await;
    assert_eq!(res.status, failed);
    let res = post_device(&mut b, &format!("/sites/{site}/devices/new"), "MTR-3", &[]).await;
    assert_eq!(res.status, failed);
    let delete_device = format!("/devices/{device}/delete");
    assert_eq!(post(&mut b, &delete_device, &delete_device, &[]).await, failed);
    let delete_site = format!("/sites/{site}/delete");
    assert_eq!(post(&mut b, &delete_site, &delete_site, &[]).await, failed);
    let ids: Vec<String> =
        sqlx::query_scalar(r#"SELECT "ExternalId" FROM monitoring."Devices""#).fetch_all(&pool).await.unwrap();
    assert_eq!(ids, ["MTR-1"]);
    let directory = app.state.devices.snapshot().await.unwrap();
    assert_eq!(directory.keys().collect::<Vec<_>>(), ["MTR-1"]);

    // Users: none created; the viewer neither promoted nor disabled, and still signed in.
    let new_user = [("email", "other@example.com"), ("password", "other password 123")];
    assert_eq!(post(&mut b, "/settings/users", "/settings/users", &new_user).await, failed);
    assert_eq!(count(&pool, r#"SELECT count(*) FROM identity."Users""#).await, 2);
    for action in ["admin", "disabled", "delete", "reset-password"] {
        let url = format!("/settings/users/{viewer_id}/{action}");
        assert_eq!(post(&mut b, "/settings/users", &url, &[]).await, failed, "{action}");
    }
    let flags: (bool, bool) = sqlx::query_as(r#"SELECT "IsAdmin", "IsDisabled" FROM identity."Users" WHERE "Id" = $1"#)
        .bind(viewer_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(flags, (false, false));
    assert_eq!(v.get("/sites").await.status, StatusCode::OK, "the viewer's session survived");

    // Branding, rates, API keys.
    let brand = [
        ("application_name", "Renamed"),
        ("primary_color", "#0c4a6e"),
        ("secondary_color", "#0e7490"),
        ("accent_color", "#06b6d4"),
        ("footer_text", ""),
    ];
    assert_eq!(post(&mut b, "/settings/branding", "/settings/branding", &brand).await, failed);
    assert_eq!(count(&pool, r#"SELECT count(*) FROM portal."Branding" WHERE "ApplicationName" = 'Renamed'"#).await, 0);
    assert!(!b.get("/").await.body.contains("Renamed"), "the branding in memory is unchanged too");
    let municipality = [("name", "Eskom Direct"), ("currency", "ZAR"), ("vat_percent", "15")];
    assert_eq!(post(&mut b, "/settings/rates", "/settings/rates/municipalities", &municipality).await, failed);
    assert_eq!(count(&pool, r#"SELECT count(*) FROM portal."Municipalities""#).await, 0);
    assert_eq!(post(&mut b, "/settings/api-keys", "/settings/api-keys", &[("name", "SCADA")]).await, failed);
    assert_eq!(count(&pool, r#"SELECT count(*) FROM identity."ApiKeys""#).await, 0);

    // The own password and a sign-in: no new password, no session opened or ended.
    let change = [("current", ADMIN_PASSWORD), ("new", "another long password"), ("confirm", "another long password")];
    assert_eq!(post(&mut b, "/account/password", "/account/password", &change).await, failed);
    assert_eq!(b.get("/settings/users").await.status, StatusCode::OK, "the admin's session survived");
    assert_eq!(app.browser().sign_in("admin@example.com", ADMIN_PASSWORD).await.status, failed);
    assert_eq!(count(&pool, r#"SELECT count(*) FROM identity."Sessions""#).await, sessions);
    assert_eq!(password_hashes(&pool).await, hashes, "no password was changed or reset");

    sqlx::query(r#"DROP TRIGGER "TR_RefuseAudit" ON identity."AuditLog""#).execute(&pool).await.unwrap();
    assert_eq!(count(&pool, r#"SELECT count(*) FROM identity."AuditLog""#).await, audit_rows);
    assert_eq!(app.browser().sign_in("admin@example.com", ADMIN_PASSWORD).await.status, StatusCode::SEE_OTHER);
}
