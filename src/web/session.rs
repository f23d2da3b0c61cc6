//! Resolves the session cookie once per request (through the session cache) and offers the
//! result to handlers as extractors.

use axum::extract::{FromRequestParts, OptionalFromRequestParts, Request, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::CookieJar;

use crate::auth::audit::Actor;
use crate::auth::sessions::{Activity, SessionUser};
use crate::error::AppError;
use crate::state::AppState;
use crate::web::client::ClientAddr;

/// The request's session, as resolved by [`resolve`].
#[derive(Debug, Clone, Default)]
pub struct CurrentSession {
    pub user: Option<SessionUser>,
    pub token: Option<String>,
}

/// The header the page scripts send with their background requests (live figures): such a
/// request is served while the session lives but does not extend its idle timeout.
pub const BACKGROUND_HEADER: &str = "x-tau-background";

/// Whether the request is a page's background work rather than the user's.
pub fn activity_of(headers: &HeaderMap) -> Activity {
    if headers.get(BACKGROUND_HEADER).is_some_and(|v| v == "1") { Activity::Background } else { Activity::User }
}

/// The session the request's cookie names, if any (through the session cache).
pub async fn of_request(state: &AppState, headers: &HeaderMap, activity: Activity) -> Result<CurrentSession, AppError> {
    let jar = CookieJar::from_headers(headers);
    let token = jar.get(state.cookies.session).map(|c| c.value().to_string());
    let user = match &token {
        Some(t) => state.sessions.validate(t, activity).await?,
        None => None,
    };
    Ok(CurrentSession { user, token })
}

pub async fn resolve(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let activity = activity_of(req.headers());
    let current = match of_request(&state, req.headers(), activity).await {
        Ok(current) => current,
        Err(e) => return e.into_response(),
    };
    req.extensions_mut().insert(current.clone());
    let mut res = next.run(req).await;
    // For the error-page renderer, which runs outside this layer.
    res.extensions_mut().insert(current);
    res
}

pub fn current(parts: &Parts) -> CurrentSession {
    parts.extensions.get::<CurrentSession>().cloned().unwrap_or_default()
}

/// A signed-in user; anonymous browsers are sent to the sign-in page and back afterwards.
pub struct CurrentUser(pub SessionUser);

impl<S: Send + Sync> FromRequestParts<S> for CurrentUser {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        match current(parts).user {
            Some(user) => Ok(CurrentUser(user)),
            None => {
                let next = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
                let target = format!("/login?next={}", urlencode(next));
                Err(Redirect::to(&target).into_response())
            }
        }
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for CurrentUser {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(current(parts).user.map(CurrentUser))
    }
}

/// A signed-in admin (Settings pages).
pub struct RequireAdmin(pub SessionUser);

impl<S: Send + Sync> FromRequestParts<S> for RequireAdmin {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        let CurrentUser(user) = <CurrentUser as FromRequestParts<S>>::from_request_parts(parts, state).await?;
        if user.is_admin {
            Ok(RequireAdmin(user))
        } else {
            Err(AppError::Forbidden("This page is for administrators.".into()).into_response())
        }
    }
}

/// A signed-in admin making a change, with the client address the audit log records: what
/// every admin write handler takes.
pub struct ActingAdmin {
    pub user: SessionUser,
    pub ip: Option<std::net::IpAddr>,
}

impl ActingAdmin {
    /// The admin as the author of a [`Change`](crate::change::Change).
    pub fn actor(&self) -> Actor {
        self.user.actor(self.ip)
    }
}

impl FromRequestParts<AppState> for ActingAdmin {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let RequireAdmin(user) = RequireAdmin::from_request_parts(parts, state).await?;
        let Ok(ClientAddr(ip)) = ClientAddr::from_request_parts(parts, state).await;
        Ok(ActingAdmin { user, ip })
    }
}

pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
