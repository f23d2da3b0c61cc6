//! Sign in, sign out, change own password.

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::cookie::CookieJar;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use secrecy::SecretString;
use serde::Deserialize;

use super::db;
use super::device;
use super::password::{Verification, check_policy};
use super::sessions::Origin;
use super::throttle::Attempt;
use crate::auth::audit::Actor;
use crate::change::Change;
use crate::error::{AppError, AppResult, FieldErrors};
use crate::state::AppState;
use crate::web::client::ClientAddr;
use crate::web::page::Page;
use crate::web::session::{CurrentSession, CurrentUser};
use crate::web::{csrf, render};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/account/password", get(password_page).post(change_password))
}

/// Where to go after sign-in: only a local path, never another site (`//evil`, `/\evil`,
/// `https://evil`), whatever `next` says.
pub fn safe_next(next: &str) -> &str {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && !next.chars().any(|c| c.is_control() || c == '\\');
    if local { next } else { "/" }
}

pub(crate) fn user_agent(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok())
}

#[derive(Template)]
#[template(path = "auth/login.html")]
struct LoginPage {
    page: Page,
    next: String,
    email: String,
    error: Option<String>,
}

#[derive(Deserialize)]
struct NextQuery {
    #[serde(default)]
    next: String,
}

/// The sign-in form. Its CSRF token is bound to a random nonce cookie, because there is no
/// session yet.
async fn login_page(
    State(state): State<AppState>,
    user: Option<CurrentUser>,
    jar: CookieJar,
    mut page: Page,
    Query(q): Query<NextQuery>,
) -> AppResult<Response> {
    if user.is_some() {
        return Ok(Redirect::to(safe_next(&q.next)).into_response());
    }
    let (jar, nonce) = match jar.get(state.cookies.login) {
        Some(c) => (jar.clone(), c.value().to_string()),
        None => {
            let mut bytes = [0u8; 16];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            let nonce = URL_SAFE_NO_PAD.encode(bytes);
            (jar.add(state.cookies.build(state.cookies.login, nonce.clone())), nonce)
        }
    };
    page.csrf = csrf::login_token(&state.keys, &nonce);
    let html = render(&LoginPage { page, next: safe_next(&q.next).to_string(), email: String::new(), error: None })?;
    Ok((jar, html).into_response())
}

#[derive(Deserialize)]
struct LoginForm {
    email: String,
    password: String,
    #[serde(default)]
    next: String,
}

const BAD_CREDENTIALS: &str = "The email or password is not correct.";

async fn login(
    State(state): State<AppState>,
    jar: CookieJar,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    mut page: Page,
    axum::Form(form): axum::Form<LoginForm>,
) -> AppResult<Response> {
    let email = form.email.trim().to_string();
    let address = ip.map_or_else(|| "unknown".to_string(), |ip| ip.to_string());
    let next = safe_next(&form.next).to_string();
    let nonce = jar.get(state.cookies.login).map(|c| c.value().to_string()).unwrap_or_default();
    page.csrf = csrf::login_token(&state.keys, &nonce);
    let refuse = |page: Page, status: StatusCode, error: String| -> AppResult<Response> {
        let html = render(&LoginPage { page, next: next.clone(), email: email.clone(), error: Some(error) })?;
        Ok((status, html).into_response())
    };

    // A browser that signed in to this account before is throttled on its own (auth::device).
    let device_cookie = jar.get(state.cookies.device).map(|c| c.value().to_string());
    let who = match device_cookie.as_deref().and_then(|v| device::trusted_for(&state.keys, v, &email)) {
        Some(device) => Attempt::Trusted { device },
        None => Attempt::Untrusted { address: &address },
    };
    if let Some(wait) = state.throttle.check(&email, who) {
        let secs = wait.as_secs().max(1);
        let msg = format!("Too many failed sign-in attempts. Wait {secs} seconds, then try again.");
        return refuse(page, StatusCode::TOO_MANY_REQUESTS, msg);
    }
    let password = SecretString::from(form.password);
    // No account's email holds a control character (a NUL would not even reach the database):
    // such an email is an unknown account, a failed attempt like any other.
    let plausible = !email.is_empty() && !email.chars().any(char::is_control);
    let account = if plausible { db::user_for_login(&state.db, &email).await? } else { None };
    let stored = account.as_ref().map(|a| a.password_hash.clone());
    let verdict = state.passwords.verify(password.clone(), stored).await.map_err(AppError::internal)?;
    let Some((account, rehash)) = account.and_then(|a| match verdict {
        Verification::Valid { rehash } if !a.is_disabled => Some((a, rehash)),
        _ => None,
    }) else {
        state.throttle.failed(&email, who);
        let detail = serde_json::json!({ "reason": "bad credentials or disabled account" });
        // Control characters shown escaped in the audit log (and NUL, which text cannot hold).
        let shown: String = email
            .chars()
            .map(|c| if c.is_control() { c.escape_unicode().to_string() } else { c.to_string() })
            .collect();
        let change = Change::begin(&state.db, Actor::anonymous(&shown, ip)).await?;
        state.commit(change, "login.failed", Some(&shown), detail).await?;
        return refuse(page, StatusCode::UNAUTHORIZED, BAD_CREDENTIALS.to_string());
    };

    // Hashed before the transaction opens: argon2 takes a while and needs no database.
    let rehashed = if rehash { Some(state.passwords.hash(password).await.map_err(AppError::internal)?) } else { None };
    state.throttle.succeeded(&email, who);
    let mut change = Change::begin(&state.db, Actor::anonymous(&account.email, ip)).await?;
    if let Some(hash) = &rehashed {
        db::replace_hash(change.db(), account.id, hash).await?;
    }
    db::record_login(change.db(), account.id).await?;
    let origin = Origin { ip: Some(&address), user_agent: user_agent(&headers) };
    let token = state.sessions.create(change.db(), account.id, &origin).await?;
    state.commit(change, "login", Some(&account.email), serde_json::json!({})).await?;
    let device =
        state.cookies.persistent(state.cookies.device, device::issue(&state.keys, &account.email), device::MAX_AGE);
    let jar = jar
        .add(state.cookies.build(state.cookies.session, token))
        .add(device)
        .remove(state.cookies.removal(state.cookies.login));
    Ok((jar, Redirect::to(&next)).into_response())
}

async fn logout(
    State(state): State<AppState>,
    jar: CookieJar,
    ClientAddr(ip): ClientAddr,
    axum::Extension(session): axum::Extension<CurrentSession>,
) -> AppResult<Response> {
    match (&session.token, &session.user) {
        (Some(token), Some(user)) => {
            let mut change = Change::begin(&state.db, user.actor(ip)).await?;
            state.sessions.end(&mut change, token).await?;
            state.commit(change, "logout", Some(&user.email), serde_json::json!({})).await?;
        }
        (Some(token), None) => state.sessions.revoke(token).await?,
        (None, _) => {}
    }
    let jar = jar.remove(state.cookies.removal(state.cookies.session));
    Ok((jar, Redirect::to("/login?notice=signed-out")).into_response())
}

#[derive(Template)]
#[template(path = "auth/password.html")]
struct PasswordPage {
    page: Page,
    errors: FieldErrors,
}

async fn password_page(CurrentUser(_): CurrentUser, page: Page) -> AppResult<Html<String>> {
    render(&PasswordPage { page, errors: FieldErrors::default() })
}

#[derive(Deserialize)]
struct PasswordForm {
    current: String,
    new: String,
    confirm: String,
}

/// Changing one's password ends every session of the account (a thief's included) and opens a
/// fresh one for this browser.
async fn change_password(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    jar: CookieJar,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    page: Page,
    axum::Form(form): axum::Form<PasswordForm>,
) -> AppResult<Response> {
    let mut errors = FieldErrors::default();
    let stored = db::password_hash(&state.db, user.user_id).await?;
    let verdict = state.passwords.verify(SecretString::from(form.current), stored).await.map_err(AppError::internal)?;
    if verdict == Verification::Invalid {
        errors.add("current", "This is not your current password.");
    }
    if let Err(e) = check_policy(&form.new, &user.email) {
        errors.add("new", e);
    } else if form.new != form.confirm {
        errors.add("confirm", "The two new passwords differ.");
    }
    if !errors.is_empty() {
        let html = render(&PasswordPage { page, errors })?;
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, html).into_response());
    }

    let hash = state.passwords.hash(SecretString::from(form.new)).await.map_err(AppError::internal)?;
    let mut change = Change::begin(&state.db, user.actor(ip)).await?;
    db::set_password(change.db(), user.user_id, &hash).await?;
    state.sessions.end_all(&mut change, user.user_id).await?;
    let address = ip.map(|ip| ip.to_string());
    let origin = Origin { ip: address.as_deref(), user_agent: user_agent(&headers) };
    let token = state.sessions.create(change.db(), user.user_id, &origin).await?;
    state.commit(change, "password.changed", Some(&user.email), serde_json::json!({})).await?;
    let jar = jar.add(state.cookies.build(state.cookies.session, token));
    Ok((jar, Redirect::to("/?notice=password-changed")).into_response())
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn next_only_accepts_local_paths() {
        for ok in ["/", "/grafana/d/abc?orgId=1", "/settings/users"] {
            assert_eq!(safe_next(ok), ok);
        }
        for bad in
            ["", "https://evil.example", "//evil.example", "/\\evil.example", "evil", "/ok\r\nSet-Cookie: x", "/a\\b"]
        {
            assert_eq!(safe_next(bad), "/", "{bad:?}");
        }
    }
}
