//! Identity through the real router: sign-in, sessions and their timeouts, CSRF, throttling, the
//! users rules, the audit log, and the forwardAuth gate.

use std::time::Duration;

use axum::http::StatusCode;
use sqlx::PgPool;

use crate::helpers::{ADMIN_PASSWORD, Browser, TestApp};

const ADMIN: &str = "admin@example.com";

async fn signed_in_admin(app: &TestApp) -> Browser {
    app.seed_admin().await;
    let mut b = app.browser();
    let res = b.sign_in(ADMIN, ADMIN_PASSWORD).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    b
}

async fn check(b: &mut Browser, extra: &[(&str, &str)]) -> crate::helpers::Reply {
    let mut req = axum::http::Request::get("/api/auth/check");
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    b.send(req, axum::body::Body::empty()).await
}

#[sqlx::test]
async fn sign_in_opens_a_session_and_shows_the_overview(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut b = signed_in_admin(&app).await;
    let home = b.get("/").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.body.contains(ADMIN), "{}", home.body);
    let cookie = b.session_cookie().expect("session cookie").clone();
    assert_eq!(cookie.len(), 43, "256-bit token, base64url");
    // Only the SHA-256 of the token is stored.
    let stored: Vec<u8> =
        sqlx::query_scalar(r#"SELECT "TokenHash" FROM identity."Sessions""#).fetch_one(&app.state.db).await.unwrap();
    assert_eq!(stored, tau_acuvim_portal::auth::sessions::token_hash(&cookie).to_vec());
}

#[sqlx::test]
async fn session_cookie_attributes(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.seed_admin().await;
    let mut b = app.browser();
    let form = b.get("/login").await;
    let csrf = form.csrf();
    let res = b.post("/login", &[("csrf", &csrf), ("email", ADMIN), ("password", ADMIN_PASSWORD)]).await;
    let set = res.headers.get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_string()).collect::<Vec<_>>();
    let session = set.iter().find(|c| c.starts_with("tau_session=")).expect("session cookie set");
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Lax") && session.contains("Path=/"),
        "{session}"
    );
    assert!(!session.contains("Secure"), "no Secure flag in Development over plain HTTP: {session}");
}

#[sqlx::test]
async fn unknown_email_and_wrong_password_get_the_same_answer(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.seed_admin().await;
    let mut b = app.browser();
    let wrong = b.sign_in(ADMIN, "not the password at all").await;
    let unknown = b.sign_in("nobody@example.com", "not the password at all").await;
    for res in [&wrong, &unknown] {
        assert_eq!(res.status, StatusCode::UNAUTHORIZED);
        assert!(res.body.contains("The email or password is not correct."), "{}", res.body);
    }
    assert!(b.session_cookie().is_none());
    assert!(unknown.body.contains(r#"value="nobody@example.com""#), "the form keeps what was typed");
}

#[sqlx::test]
async fn every_login_gets_a_new_token_whatever_the_browser_sent(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.seed_admin().await;
    let mut b = app.browser();
    b.cookies.insert("tau_session".into(), "attacker-chosen-value".into());
    b.sign_in(ADMIN, ADMIN_PASSWORD).await;
    let first = b.session_cookie().unwrap().clone();
    assert_ne!(first, "attacker-chosen-value");
    let mut again = app.browser();
    again.sign_in(ADMIN, ADMIN_PASSWORD).await;
    assert_ne!(again.session_cookie().unwrap(), &first, "each login opens its own session");
    // Signed in, the sign-in page sends the user on instead of showing the form.
    assert_eq!(b.get("/login?next=/settings/users").await.location(), "/settings/users");
}

#[sqlx::test]
async fn idle_timeout_slides_and_then_ends_the_session(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut b = signed_in_admin(&app).await;
    for _ in 0..3 {
        app.clock.advance(Duration::from_secs(20 * 60));
        assert_eq!(b.get("/").await.status, StatusCode::OK, "activity within 30 min keeps it alive");
    }
    app.clock.advance(Duration::from_secs(31 * 60));
    let res = b.get("/").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(res.location(), "/login?next=%2F");
    let left: i64 =
        sqlx::query_scalar(r#"SELECT count(*) FROM identity."Sessions""#).fetch_one(&app.state.db).await.unwrap();
    assert_eq!(left, 0, "the expired session is deleted");
}

#[sqlx::test]
async fn absolute_timeout_ends_even_an_active_session(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut b = signed_in_admin(&app).await;
    for _ in 0..(12 * 3) {
        app.clock.advance(Duration::from_secs(20 * 60));
        if b.get("/").await.status != StatusCode::OK {
            break;
        }
    }
    assert_eq!(b.get("/").await.status, StatusCode::SEE_OTHER, "12 hours after sign-in the session is over");
}

#[sqlx::test]
async fn logout_revokes_the_session_at_once(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut b = signed_in_admin(&app).await;
    let token = b.session_cookie().unwrap().clone();
    assert_eq!(check(&mut b, &[]).await.status, StatusCode::OK);
    let home = b.get("/").await;
    let res = b.post("/logout", &[("csrf", &home.csrf())]).await;
    assert_eq!(res.location(), "/login?notice=signed-out");
    assert!(b.session_cookie().is_none(), "the cookie is removed");
    b.cookies.insert("tau_session".into(), token);
    assert_eq!(check(&mut b, &[]).await.status, StatusCode::UNAUTHORIZED, "the old cookie is refused");
}

#[sqlx::test]
async fn changing_the_password_signs_out_every_other_session(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut a = signed_in_admin(&app).await;
    let mut other = app.browser();
    other.sign_in(ADMIN, ADMIN_PASSWORD).await;
    assert_eq!(check(&mut other, &[]).await.status, StatusCode::OK);

    let form = a.get("/account/password").await;
    let csrf = form.csrf();
    let short = a
        .post(
            "/account/password",
            &[("csrf", &csrf), ("current", ADMIN_PASSWORD), ("new", "short"), ("confirm", "short")],
        )
        .await;
    assert_eq!(short.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(short.body.contains("Use at least 12 characters"), "{}", short.body);
    let wrong = a
        .post(
            "/account/password",
            &[
                ("csrf", &csrf),
                ("current", "nope nope nope"),
                ("new", "a brand new password"),
                ("confirm", "a brand new password"),
            ],
        )
        .await;
    assert!(wrong.body.contains("This is not your current password."), "{}", wrong.body);

    let ok = a
        .post(
            "/account/password",
            &[
                ("csrf", &csrf),
                ("current", ADMIN_PASSWORD),
                ("new", "a brand new password"),
                ("confirm", "a brand new password"),
            ],
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    assert_eq!(check(&mut other, &[]).await.status, StatusCode::UNAUTHORIZED, "other session revoked");
    assert_eq!(check(&mut a, &[]).await.status, StatusCode::OK, "this browser got a fresh session");
    let mut fresh = app.browser();
    assert_eq!(fresh.sign_in(ADMIN, "a brand new password").await.status, StatusCode::SEE_OTHER);
}

#[sqlx::test]
async fn forms_without_a_valid_token_or_from_another_site_are_refused(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut b = signed_in_admin(&app).await;
    let missing = b.post("/logout", &[]).await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN);
    assert!(
        missing.body.contains("This form has expired") && missing.body.contains("Reload the page"),
        "{}",
        missing.body
    );
    let forged = b.post("/logout", &[("csrf", "forged")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);

    let csrf = b.get("/").await.csrf();
    b.headers = vec![("sec-fetch-site".into(), "cross-site".into())];
    assert_eq!(b.post("/logout", &[("csrf", &csrf)]).await.status, StatusCode::FORBIDDEN);
    b.headers = vec![("origin".into(), "https://evil.example".into())];
    assert_eq!(b.post("/logout", &[("csrf", &csrf)]).await.status, StatusCode::FORBIDDEN);
    b.headers = vec![("origin".into(), "http://localhost:8080".into())];
    assert_eq!(b.post("/logout", &[("csrf", &csrf)]).await.status, StatusCode::SEE_OTHER, "same origin passes");

    // The sign-in form is protected too: without the nonce cookie its token is worthless.
    let mut anon = app.browser();
    let form = anon.get("/login").await;
    let token = form.csrf();
    anon.cookies.clear();
    let res = anon.post("/login", &[("csrf", &token), ("email", ADMIN), ("password", ADMIN_PASSWORD)]).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
}

#[sqlx::test]
async fn repeated_failures_slow_an_account_down_without_locking_it_out(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.seed_admin().await;
    let mut b = app.browser();
    for _ in 0..5 {
        assert_eq!(b.sign_in(ADMIN, "wrong password!!").await.status, StatusCode::UNAUTHORIZED);
    }
    let throttled = b.sign_in(ADMIN, ADMIN_PASSWORD).await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS, "even the right password waits");
    assert!(throttled.body.contains("Too many failed sign-in attempts. Wait"), "{}", throttled.body);
    app.clock.advance(Duration::from_secs(2));
    assert_eq!(b.sign_in(ADMIN, ADMIN_PASSWORD).await.status, StatusCode::SEE_OTHER);
}

#[sqlx::test]
async fn next_only_leads_to_local_pages(pool: PgPool) {
    let app = TestApp::new(pool).await;
    app.seed_admin().await;
    for (next, expected) in [
        ("/settings/users", "/settings/users"),
        ("//evil.example/x", "/"),
        ("https://evil.example", "/"),
        ("/\\evil.example", "/"),
    ] {
        let mut b = app.browser();
        let form = b.get(&format!("/login?next={}", tau_acuvim_portal::web::session::urlencode(next))).await;
        let csrf = form.csrf();
        let res =
            b.post("/login", &[("csrf", &csrf), ("email", ADMIN), ("password", ADMIN_PASSWORD), ("next", next)]).await;
        assert_eq!(res.location(), expected, "next={next}");
    }
}

#[sqlx::test]
async fn the_last_active_admin_cannot_be_demoted_disabled_or_deleted(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut b = signed_in_admin(&app).await;
    let id: uuid::Uuid =
        sqlx::query_scalar(r#"SELECT "Id" FROM identity."Users""#).fetch_one(&app.state.db).await.unwrap();
    let csrf = b.get("/settings/users").await.csrf();
    let demote = b.post(&format!("/settings/users/{id}/admin"), &[("csrf", &csrf)]).await;
    assert_eq!(demote.status, StatusCode::CONFLICT);
    assert!(demote.body.contains("is the last active administrator"), "{}", demote.body);
    let delete = b.post(&format!("/settings/users/{id}/delete"), &[("csrf", &csrf)]).await;
    assert!(delete.body.contains("You cannot delete your own account"), "{}", delete.body);
    let disable = b.post(&format!("/settings/users/{id}/disabled"), &[("csrf", &csrf)]).await;
    assert_eq!(disable.status, StatusCode::CONFLICT);
    let still: (bool, bool) = sqlx::query_as(r#"SELECT "IsAdmin", "IsDisabled" FROM identity."Users""#)
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(still, (true, false), "nothing changed");

    // With a second admin, the first may step down.
    let created = b
        .post(
            "/settings/users",
            &[
                ("csrf", &csrf),
                ("email", "ops@example.com"),
                ("display_name", "Ops"),
                ("is_admin", "on"),
                ("password", "ops password 123"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    let demote = b.post(&format!("/settings/users/{id}/admin"), &[("csrf", &csrf)]).await;
    assert_eq!(demote.status, StatusCode::SEE_OTHER);
    assert_eq!(b.get("/settings/users").await.status, StatusCode::FORBIDDEN, "the role change applies at once");
}

#[sqlx::test]
async fn admins_create_users_with_a_generated_password_shown_once(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut b = signed_in_admin(&app).await;
    let csrf = b.get("/settings/users").await.csrf();
    let res = b
        .post(
            "/settings/users",
            &[("csrf", &csrf), ("email", "viewer@example.com"), ("display_name", "Vera Viewer"), ("password", "")],
        )
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(res.body.contains("shown <strong>only once</strong>"), "{}", res.body);
    let start = res.body.find(r#"<code class="secret">"#).unwrap() + r#"<code class="secret">"#.len();
    let password = &res.body[start..start + res.body[start..].find('<').unwrap()];
    assert_eq!(password.len(), 20);

    let mut viewer = app.browser();
    assert_eq!(viewer.sign_in("viewer@example.com", password).await.status, StatusCode::SEE_OTHER);
    assert_eq!(viewer.get("/settings/users").await.status, StatusCode::FORBIDDEN, "viewers have no Settings");

    let dup = b.post("/settings/users", &[("csrf", &csrf), ("email", "VIEWER@example.com"), ("password", "")]).await;
    assert_eq!(dup.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(dup.body.contains("An account with this email already exists."), "{}", dup.body);
    let bad =
        b.post("/settings/users", &[("csrf", &csrf), ("email", "x@example.com"), ("password", "x@example.com")]).await;
    assert!(bad.body.contains("The password must not be the email address."), "{}", bad.body);
    let bad =
        b.post("/settings/users", &[("csrf", &csrf), ("email", "short@example.com"), ("password", "short")]).await;
    assert!(bad.body.contains("Use at least 12 characters (this one has 5)."), "{}", bad.body);
    let bad = b.post("/settings/users", &[("csrf", &csrf), ("email", "no-at-sign"), ("display_name", "Keep me")]).await;
    assert!(
        bad.body.contains("This is not an email address") && bad.body.contains(r#"value="Keep me""#),
        "{}",
        bad.body
    );
}

#[sqlx::test]
async fn disabling_or_deleting_a_user_revokes_their_sessions_at_once(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut admin = signed_in_admin(&app).await;
    let csrf = admin.get("/settings/users").await.csrf();
    for (i, action) in ["disabled", "delete"].iter().enumerate() {
        let email = format!("user{i}@example.com");
        admin.post("/settings/users", &[("csrf", &csrf), ("email", &email), ("password", "a good password 1")]).await;
        let mut user = app.browser();
        user.sign_in(&email, "a good password 1").await;
        assert_eq!(check(&mut user, &[]).await.status, StatusCode::OK);
        let id: uuid::Uuid = sqlx::query_scalar(r#"SELECT "Id" FROM identity."Users" WHERE "Email" = $1"#)
            .bind(&email)
            .fetch_one(&app.state.db)
            .await
            .unwrap();
        let res = admin.post(&format!("/settings/users/{id}/{action}"), &[("csrf", &csrf)]).await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
        assert_eq!(check(&mut user, &[]).await.status, StatusCode::UNAUTHORIZED, "after {action}");
    }
}

#[sqlx::test]
async fn a_reset_password_is_shown_once_and_signs_the_user_out(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut admin = signed_in_admin(&app).await;
    let csrf = admin.get("/settings/users").await.csrf();
    admin
        .post("/settings/users", &[("csrf", &csrf), ("email", "u@example.com"), ("password", "a good password 1")])
        .await;
    let mut user = app.browser();
    user.sign_in("u@example.com", "a good password 1").await;
    let id: uuid::Uuid = sqlx::query_scalar(r#"SELECT "Id" FROM identity."Users" WHERE "Email" = 'u@example.com'"#)
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    let res = admin.post(&format!("/settings/users/{id}/reset-password"), &[("csrf", &csrf)]).await;
    assert!(res.body.contains("Password reset"), "{}", res.body);
    assert_eq!(check(&mut user, &[]).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(user.sign_in("u@example.com", "a good password 1").await.status, StatusCode::UNAUTHORIZED);
}

#[sqlx::test]
async fn the_audit_log_records_who_did_what(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut b = signed_in_admin(&app).await;
    let mut other = app.browser();
    other.sign_in(ADMIN, "wrong wrong wrong").await;
    let csrf = b.get("/settings/users").await.csrf();
    b.post("/settings/users", &[("csrf", &csrf), ("email", "new@example.com"), ("password", "a good password 1")])
        .await;
    let page = b.get("/settings/audit").await;
    assert_eq!(page.status, StatusCode::OK);
    for action in ["user.seeded", "login", "login.failed", "user.created"] {
        assert!(page.body.contains(&format!("<code>{action}</code>")), "{action} missing in {}", page.body);
    }
}

#[sqlx::test]
async fn forward_auth_answers_grafana_with_identity_headers(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut b = signed_in_admin(&app).await;
    let res = check(&mut b, &[]).await;
    assert_eq!(res.status, StatusCode::OK);
    let user_id: uuid::Uuid =
        sqlx::query_scalar(r#"SELECT "Id" FROM identity."Users""#).fetch_one(&app.state.db).await.unwrap();
    let h = |name: &str| res.headers.get(name).map(|v| v.to_str().unwrap().to_string());
    assert_eq!(h("x-webauth-user"), Some(format!("p_{}", user_id.simple())));
    assert_eq!(h("x-webauth-email").as_deref(), Some(ADMIN));
    assert_eq!(h("x-webauth-name").as_deref(), Some("Administrator"));
    assert_eq!(h("x-webauth-role").as_deref(), Some("Admin"));
}

#[sqlx::test]
async fn forward_auth_redirects_page_loads_and_refuses_scripts(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut anon = app.browser();
    let nav = check(
        &mut anon,
        &[
            ("accept", "text/html,application/xhtml+xml"),
            ("sec-fetch-mode", "navigate"),
            ("x-forwarded-uri", "/grafana/d/power?orgId=1"),
        ],
    )
    .await;
    assert_eq!(nav.status, StatusCode::FOUND);
    assert_eq!(nav.location(), "http://localhost:8080/login?next=%2Fgrafana%2Fd%2Fpower%3ForgId%3D1");
    for headers in [
        vec![("accept", "application/json"), ("sec-fetch-mode", "cors")],
        vec![("accept", "text/html"), ("x-requested-with", "XMLHttpRequest")],
        vec![("upgrade", "websocket"), ("accept", "text/html")],
        vec![("accept", "*/*")],
    ] {
        assert_eq!(check(&mut anon, &headers).await.status, StatusCode::UNAUTHORIZED, "{headers:?}");
    }
    // Caddy passes unexpanded placeholders when a value is missing: treat them as absent.
    let caddy = check(&mut anon, &[("accept", "text/html"), ("x-forwarded-uri", "{http.request.uri}")]).await;
    assert_eq!(caddy.location(), "http://localhost:8080/login?next=%2Fgrafana%2F");
    let evil = check(&mut anon, &[("accept", "text/html"), ("x-forwarded-uri", "//evil.example")]).await;
    assert_eq!(evil.location(), "http://localhost:8080/login?next=%2F");
}

/// A dashboard load triggers dozens of checks: they are answered from memory. The cache is
/// proven by removing the session behind the app's back: still accepted within the cache
/// lifetime, refused once it has passed.
#[sqlx::test]
async fn forward_auth_checks_are_served_from_memory(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut b = signed_in_admin(&app).await;
    assert_eq!(check(&mut b, &[]).await.status, StatusCode::OK);
    sqlx::query(r#"DELETE FROM identity."Sessions""#).execute(&app.state.db).await.unwrap();
    for _ in 0..20 {
        assert_eq!(check(&mut b, &[]).await.status, StatusCode::OK);
    }
    app.clock.advance(Duration::from_secs(31));
    assert_eq!(check(&mut b, &[]).await.status, StatusCode::UNAUTHORIZED);
}

#[sqlx::test]
async fn a_hash_with_old_parameters_is_upgraded_on_login(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    app.seed_admin().await;
    let mut config = crate::helpers::test_config(&crate::helpers::admin_options());
    config.auth.password_hash.memory_kib = 512;
    let stronger = TestApp::with_config(pool, config).await;
    let mut b = stronger.browser();
    assert_eq!(b.sign_in(ADMIN, ADMIN_PASSWORD).await.status, StatusCode::SEE_OTHER);
    let hash: String =
        sqlx::query_scalar(r#"SELECT "PasswordHash" FROM identity."Users""#).fetch_one(&app.state.db).await.unwrap();
    assert!(hash.contains("m=512,"), "{hash}");
}

#[sqlx::test]
async fn every_response_carries_the_security_headers(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut b = app.browser();
    for path in ["/login", "/health", "/nope"] {
        let res = b.get(path).await;
        let csp = res.headers.get("content-security-policy").unwrap().to_str().unwrap();
        assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'self'"), "{csp}");
        assert!(csp.contains("object-src 'none'") && csp.contains("base-uri 'none'"), "{csp}");
        assert_eq!(res.headers["x-content-type-options"], "nosniff");
        assert_eq!(res.headers["referrer-policy"], "same-origin");
    }
    let missing = b.get("/nope").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.body.contains("Page not found") && missing.body.contains("request id"), "{}", missing.body);
}

/// A failure the user cannot fix gets the branded error page with a request id to quote, and the
/// details go to the log only.
#[sqlx::test]
async fn an_internal_error_shows_a_page_with_the_request_id(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut b = signed_in_admin(&app).await;
    app.state.db.close().await;
    let res = b.get("/settings/users").await;
    assert_eq!(res.status, StatusCode::INTERNAL_SERVER_ERROR);
    let id = res.headers["x-request-id"].to_str().unwrap().to_string();
    assert!(res.body.contains("Something went wrong") && res.body.contains(&id), "{}", res.body);
    assert!(!res.body.to_lowercase().contains("pool"), "no internals in the page: {}", res.body);
    let api = b.get("/api/auth/check").await;
    assert_eq!(api.status, StatusCode::INTERNAL_SERVER_ERROR);
    let json: serde_json::Value = serde_json::from_str(&api.body).unwrap();
    assert_eq!(json["requestId"], api.headers["x-request-id"].to_str().unwrap());
}

/// ingress-nginx (the Helm chart's ingress) cannot pass a redirect through `auth_request`: it
/// gets a 401 even for page loads and redirects with its own `auth-signin`.
#[sqlx::test]
async fn forward_auth_answers_ingress_nginx_with_401_even_for_page_loads(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut anon = app.browser();
    let nav = [("accept", "text/html"), ("sec-fetch-mode", "navigate")];
    for marker in [("x-sent-from", "nginx-ingress-controller"), ("x-original-url", "https://abc.example.com/grafana/")]
    {
        let res = check(&mut anon, &[nav[0], nav[1], marker]).await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{marker:?}");
    }
    assert_eq!(check(&mut anon, &nav).await.status, StatusCode::FOUND, "Traefik still gets the redirect");
}

/// In Development the public URL is derived as http://localhost:<port>, but the quick start prints
/// http://127.0.0.1:<port>: a form sent from the listen address's own origin is same-site.
#[sqlx::test]
async fn development_accepts_forms_from_the_listen_address_itself(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut b = signed_in_admin(&app).await;
    let csrf = b.get("/").await.csrf();
    b.headers = vec![("origin".into(), "http://127.0.0.1:8080".into()), ("host".into(), "127.0.0.1:8080".into())];
    assert_eq!(b.post("/logout", &[("csrf", &csrf)]).await.status, StatusCode::SEE_OTHER);
    // Another host is still another site.
    let mut b = signed_in_admin(&app).await;
    let csrf = b.get("/").await.csrf();
    b.headers = vec![("origin".into(), "http://127.0.0.1:9999".into()), ("host".into(), "127.0.0.1:8080".into())];
    assert_eq!(b.post("/logout", &[("csrf", &csrf)]).await.status, StatusCode::FORBIDDEN);
}

/// A NUL byte in a form field gave a 500 (PostgreSQL refuses it in text). Every form refuses it
/// with a 400 naming the field, before anything is stored; the sign-in form treats it as a failed
/// sign-in, throttled like any other.
#[sqlx::test]
async fn a_nul_byte_in_a_form_is_refused_naming_the_field_and_sign_in_counts_it(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut b = signed_in_admin(&app).await;
    let csrf = b.get("/settings/users").await.csrf();
    let users_before: i64 =
        sqlx::query_scalar(r#"SELECT count(*) FROM identity."Users""#).fetch_one(&app.state.db).await.unwrap();
    let res = b
        .post(
            "/settings/users",
            &[("csrf", &csrf), ("email", "nul\0@example.com"), ("display_name", "N"), ("password", "")],
        )
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.body);
    assert!(res.body.contains("“email”") && res.body.contains("NUL"), "{}", res.body);
    let users_after: i64 =
        sqlx::query_scalar(r#"SELECT count(*) FROM identity."Users""#).fetch_one(&app.state.db).await.unwrap();
    assert_eq!(users_before, users_after, "nothing stored");

    let mut anon = app.browser();
    for attempt in 1..=5 {
        let res = anon.sign_in("admin\0@example.com", "whatever it is").await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "attempt {attempt}: {}", res.body);
        assert!(res.body.contains("The email or password is not correct."), "{}", res.body);
    }
    let throttled = anon.sign_in("admin\0@example.com", "whatever it is").await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS, "the failures were counted");
    let logged: i64 = sqlx::query_scalar(
        r#"SELECT count(*) FROM identity."AuditLog" WHERE "Action" = 'login.failed' AND "Target" = 'admin\u{0}@example.com'"#,
    )
    .fetch_one(&app.state.db)
    .await
    .unwrap();
    assert_eq!(logged, 5, "each failure is in the audit log, the NUL shown escaped");
}

/// A generated password or a new API key must not come back from the browser's cache.
#[sqlx::test]
async fn pages_that_show_a_secret_are_never_stored(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut b = signed_in_admin(&app).await;
    let csrf = b.get("/settings/users").await.csrf();
    let created = b.post("/settings/users", &[("csrf", &csrf), ("email", "v@example.com"), ("password", "")]).await;
    assert!(created.body.contains(r#"<code class="secret">"#));
    assert_eq!(created.headers["cache-control"], "no-store");
    let csrf = b.get("/settings/api-keys").await.csrf();
    let key = b.post("/settings/api-keys", &[("csrf", &csrf), ("name", "scada")]).await;
    assert!(key.body.contains(r#"<code class="secret">"#), "{}", key.body);
    assert_eq!(key.headers["cache-control"], "no-store");
}

/// The lockout attack of the review: failures on purpose, from any address, held the account at
/// the 15-minute cap and kept the owner out. A browser that signed in to the account before is
/// throttled on its own (its device cookie), so the owner still gets in; everyone else, a fresh
/// browser of the owner's included, waits, and a forged device cookie is worth nothing.
#[sqlx::test]
async fn an_attacker_failing_on_purpose_does_not_keep_the_owner_out(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut owner = signed_in_admin(&app).await;
    let device = owner.cookies.get("tau_device").cloned().expect("a device cookie after signing in");
    let csrf = owner.get("/").await.csrf();
    assert_eq!(owner.post("/logout", &[("csrf", &csrf)]).await.status, StatusCode::SEE_OTHER);
    assert!(owner.session_cookie().is_none() && owner.cookies.contains_key("tau_device"));

    let mut attacker = app.browser();
    let mut throttled = false;
    for _ in 0..30 {
        throttled |= attacker.sign_in(ADMIN, "not the password at all").await.status == StatusCode::TOO_MANY_REQUESTS;
    }
    assert!(throttled, "the attacker is slowed down");
    let mut laptop = app.browser();
    assert_eq!(laptop.sign_in(ADMIN, ADMIN_PASSWORD).await.status, StatusCode::TOO_MANY_REQUESTS);
    let mut forger = app.browser();
    let (nonce, _) = device.split_once('.').unwrap();
    forger.cookies.insert("tau_device".into(), format!("{nonce}.forged-signature"));
    assert_eq!(forger.sign_in(ADMIN, ADMIN_PASSWORD).await.status, StatusCode::TOO_MANY_REQUESTS);

    let res = owner.sign_in(ADMIN, ADMIN_PASSWORD).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "the owner's browser signs in: {}", res.body);
    assert_ne!(owner.cookies["tau_device"], device, "a fresh device cookie at every sign-in");
    // The owner's success gave the attacker nothing back.
    assert_eq!(attacker.sign_in(ADMIN, "not the password either").await.status, StatusCode::TOO_MANY_REQUESTS);
}
