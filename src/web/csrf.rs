//! CSRF protection for every state-changing browser request, in one middleware so that no form
//! handler can forget it:
//! 1. the request must come from our own origin (`Sec-Fetch-Site`, else `Origin`, when the
//!    browser sends them);
//! 2. it must carry the synchronizer token: the `csrf` form field (or `csrf` query parameter for
//!    multipart uploads), an HMAC of the session id under the key ring; before sign-in, an HMAC
//!    of a random nonce held in a cookie (so the sign-in form is protected too).
//!
//! `/api/` routes are exempt: they authenticate with bearer tokens, never cookies.

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::CookieJar;
use url::Url;

use crate::auth::keyring::KeyRing;
use crate::auth::sessions::SessionUser;
use crate::error::AppError;
use crate::state::AppState;
use crate::web::session::CurrentSession;

/// Form bodies larger than this are refused before parsing (uploads are multipart and exempt).
const MAX_FORM_BYTES: usize = 256 * 1024;

const SESSION_PURPOSE: &str = "csrf";
const LOGIN_PURPOSE: &str = "login-csrf";

/// The token a page's forms must carry for this session.
pub fn session_token(keys: &KeyRing, user: &SessionUser) -> String {
    keys.sign(SESSION_PURPOSE, user.session_id.as_bytes())
}

/// The sign-in form's token, bound to the anonymous nonce cookie.
pub fn login_token(keys: &KeyRing, nonce: &str) -> String {
    keys.sign(LOGIN_PURPOSE, nonce.as_bytes())
}

pub async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) || req.uri().path().starts_with("/api/") {
        return next.run(req).await;
    }
    match check(&state, req).await {
        Ok(req) => next.run(req).await,
        Err(e) => {
            tracing::warn!(reason = %e, "CSRF check failed");
            e.into_response()
        }
    }
}

async fn check(state: &AppState, req: Request) -> Result<Request, AppError> {
    // In Development the public URL is derived (http://localhost:<port>); the listen address's
    // own origin (http://127.0.0.1:<port>, the address the quick start prints) is as good.
    let development = state.config.environment == crate::config::Environment::Development;
    check_origin(req.headers(), state.config.public_url.as_ref(), development)?;
    let session = req.extensions().get::<CurrentSession>().cloned().unwrap_or_default();
    let (purpose, data) = match &session.user {
        Some(user) => (SESSION_PURPOSE, user.session_id.as_bytes().to_vec()),
        None => match CookieJar::from_headers(req.headers()).get(state.cookies.login) {
            Some(nonce) => (LOGIN_PURPOSE, nonce.value().as_bytes().to_vec()),
            None => return Err(AppError::Csrf("Your session has ended.")),
        },
    };

    let is_multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("multipart/form-data"));
    let (req, token) = if is_multipart {
        let token = req.uri().query().and_then(|q| field(q.as_bytes(), "csrf"));
        (req, token)
    } else {
        let (parts, body) = req.into_parts();
        let bytes = to_bytes(body, MAX_FORM_BYTES)
            .await
            .map_err(|_| AppError::BadRequest(format!("The form is larger than {} KiB.", MAX_FORM_BYTES / 1024)))?;
        // The sign-in form takes hostile text itself: a refused sign-in must still count as a
        // failed attempt (see auth::routes::login).
        if parts.uri.path() != "/login" {
            refuse_nul(&bytes)?;
        }
        let token = field(&bytes, "csrf");
        (Request::from_parts(parts, Body::from(bytes)), token)
    };
    match token {
        Some(t) if state.keys.verify(purpose, &data, &t) => Ok(req),
        Some(_) => Err(AppError::Csrf("The form's security token does not match your session.")),
        None => Err(AppError::Csrf("The form has no security token.")),
    }
}

/// No text the portal stores may hold a NUL character (PostgreSQL refuses it in text, and a
/// failed statement would be a 500): such a form is refused before any handler runs, naming the
/// field.
fn refuse_nul(urlencoded: &[u8]) -> Result<(), AppError> {
    match url::form_urlencoded::parse(urlencoded).find(|(k, v)| k.contains('\0') || v.contains('\0')) {
        Some((name, _)) => Err(AppError::BadRequest(format!(
            "The field “{}” contains a NUL character (\\0), which no field accepts. Remove it and send the form again.",
            name.replace('\0', "\\0")
        ))),
        None => Ok(()),
    }
}

fn field(urlencoded: &[u8], name: &str) -> Option<String> {
    url::form_urlencoded::parse(urlencoded).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// Browsers say where a request comes from; refuse cross-site ones. Requests without these
/// headers (old browsers, curl) still need the token. `or_host`: an origin naming the request's
/// own host is same-site too.
fn check_origin(headers: &HeaderMap, public_url: Option<&Url>, or_host: bool) -> Result<(), AppError> {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return match site {
            "same-origin" | "none" => Ok(()),
            _ => Err(AppError::Csrf("The form was sent from another site.")),
        };
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return Ok(()) };
    let names_host = || {
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
        Url::parse(origin).ok().and_then(|o| {
            let port = o.port().map(|p| format!(":{p}")).unwrap_or_default();
            o.host_str().map(|h| format!("{h}{port}") == host)
        }) == Some(true)
    };
    let same = match public_url {
        Some(url) => url.origin().ascii_serialization() == origin || (or_host && names_host()),
        None => names_host(),
    };
    if same { Ok(()) } else { Err(AppError::Csrf("The form was sent from another site.")) }
}
