//! `GET /api/auth/check`: the forwardAuth gate in front of the embedded Grafana. Traefik (or
//! nginx `auth_request`, Caddy `forward_auth`) asks it for every Grafana request, passing the
//! browser's cookies. A valid portal session answers 200 with the identity headers Grafana's
//! auth.proxy reads; otherwise a top-level page load is redirected to the portal's sign-in page
//! and anything else (XHR, fetch, WebSocket, images) gets 401.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::routes::safe_next;
use super::sessions::{Activity, SessionUser};
use crate::state::AppState;
use crate::web::session::{self, urlencode};

pub const USER_HEADER: &str = "x-webauth-user";
pub const EMAIL_HEADER: &str = "x-webauth-email";
pub const NAME_HEADER: &str = "x-webauth-name";
pub const ROLE_HEADER: &str = "x-webauth-role";
/// Every identity header: the proxy must copy exactly these to Grafana (and so overwrite any a
/// client sent itself).
pub const IDENTITY_HEADERS: [&str; 4] = ["X-WEBAUTH-USER", "X-WEBAUTH-EMAIL", "X-WEBAUTH-NAME", "X-WEBAUTH-ROLE"];

/// The gate's route (its requests are logged at DEBUG, see telemetry.rs).
pub const ROUTE: &str = "/api/auth/check";

pub fn router() -> Router<AppState> {
    Router::new().route(ROUTE, get(check))
}

/// A stable, namespaced Grafana login: the portal user's id, never the email (which can change).
pub fn grafana_login(user: &SessionUser) -> String {
    format!("p_{}", user.user_id.simple())
}

/// A header's value, treating Caddy's unexpanded placeholders (`{http.request.uri}`) as absent.
fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let v = headers.get(name)?.to_str().ok()?.trim();
    (!v.is_empty() && !v.starts_with("{http.")).then_some(v)
}

/// ingress-nginx's `auth_request` treats any answer but 2xx, 401 and 403 as a server error: it
/// gets a 401 and redirects by itself (`auth-signin`). It marks its subrequests with these.
fn from_ingress_nginx(headers: &HeaderMap) -> bool {
    header(headers, "x-sent-from") == Some("nginx-ingress-controller") || header(headers, "x-original-url").is_some()
}

/// A top-level page load (to be redirected), as opposed to a script's request (to get a 401
/// it can handle).
fn is_navigation(headers: &HeaderMap) -> bool {
    if let Some(mode) = header(headers, "sec-fetch-mode") {
        return mode == "navigate";
    }
    if header(headers, "upgrade").is_some() || header(headers, "x-requested-with").is_some() {
        return false;
    }
    header(headers, "accept").is_some_and(|a| a.contains("text/html"))
}

/// Resolves the session itself: the gate runs outside the pages' middleware (it is asked for
/// every Grafana request and needs nothing else of it).
///
/// Only opening a dashboard (a navigation) counts as the user's activity: the panels' queries
/// and their auto-refresh are background work, so a wall of Grafana left open still times out.
async fn check(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let activity = if is_navigation(&headers) { Activity::User } else { Activity::Background };
    let session = match session::of_request(&state, &headers, activity).await {
        Ok(session) => session,
        Err(e) => return e.into_response(),
    };
    if let Some(user) = session.user {
        let mut res = StatusCode::OK.into_response();
        let h = res.headers_mut();
        let name = HeaderValue::from_bytes(user.display_name.as_bytes())
            .or_else(|_| HeaderValue::from_str(&user.email))
            .unwrap_or_else(|_| HeaderValue::from_static(""));
        let values = [
            (USER_HEADER, HeaderValue::from_str(&grafana_login(&user)).ok()),
            (EMAIL_HEADER, HeaderValue::from_str(&user.email).ok()),
            (NAME_HEADER, Some(name)),
            (ROLE_HEADER, Some(HeaderValue::from_static(if user.is_admin { "Admin" } else { "Viewer" }))),
        ];
        for (k, v) in values {
            if let Some(v) = v {
                h.insert(HeaderName::from_static(k), v);
            }
        }
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return res;
    }
    if !is_navigation(&headers) || from_ingress_nginx(&headers) {
        return (StatusCode::UNAUTHORIZED, [(header::CACHE_CONTROL, "no-store")]).into_response();
    }
    // Back to where the user was going after sign-in (only a local path).
    let prefix = format!("{}/", state.config.grafana_embed_path_prefix);
    let next = header(&headers, "x-forwarded-uri").map_or(prefix.as_str(), safe_next);
    let base = match &state.config.public_url {
        Some(url) => url.as_str().trim_end_matches('/').to_string(),
        None => {
            let proto = header(&headers, "x-forwarded-proto").unwrap_or("https");
            let host = header(&headers, "x-forwarded-host").or_else(|| header(&headers, "host")).unwrap_or("localhost");
            format!("{proto}://{host}")
        }
    };
    let location = format!("{base}/login?next={}", urlencode(next));
    (StatusCode::FOUND, [(header::LOCATION, location.as_str()), (header::CACHE_CONTROL, "no-store")]).into_response()
}
