//! Read-only settings once a licence has run out (or a licence key was refused): every change
//! made through the pages is refused, with the reason, except what keeps people able to work and
//! the portal safe. Data collection is not a page: the poller, MQTT and the fleet push never pass
//! here, and the ingest API is let through.

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::AppError;
use crate::state::AppState;

/// Whether a change is still allowed with read-only settings: signing in and out, one's own
/// password, the ingest API, and the changes that take access away (disabling a user, revoking
/// an API key or a device's MQTT credentials), which a customer must always be able to make.
pub fn allowed_when_read_only(path: &str) -> bool {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    matches!(
        segments[..],
        ["login"]
            | ["logout"]
            | ["account", "password"]
            | ["api", "ingest"]
            | ["settings", "users", _, "disabled"]
            | ["settings", "api-keys", _, "revoke"]
            | ["devices", _, "mqtt", "revoke"]
    )
}

pub async fn read_only(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if changes && !allowed_when_read_only(req.uri().path()) {
        let standing = state.licence.standing(state.clock.now());
        if standing.read_only() {
            let why = standing.banner().unwrap_or_default();
            return AppError::Forbidden(format!("Nothing was changed. {why}")).into_response();
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::allowed_when_read_only;

    #[test]
    fn only_sign_in_own_password_ingest_and_revocations_pass() {
        for ok in ["/login", "/logout", "/account/password", "/api/ingest", "/settings/users/3f/disabled"] {
            assert!(allowed_when_read_only(ok), "{ok}");
        }
        for ok in ["/settings/api-keys/7/revoke", "/devices/12/mqtt/revoke"] {
            assert!(allowed_when_read_only(ok), "{ok}");
        }
        for refused in
            ["/sites/new", "/settings/users", "/settings/users/3f/admin", "/devices/12/mqtt", "/settings/branding"]
        {
            assert!(!allowed_when_read_only(refused), "{refused}");
        }
        assert!(!allowed_when_read_only("/settings/users/3f/disabled/x"));
    }
}
