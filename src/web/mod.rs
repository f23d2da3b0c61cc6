//! What every browser route shares: the request's session and client address, CSRF and origin
//! checks, security headers, cookies, error pages and the page context templates render with.

pub mod client;
pub mod cookies;
pub mod csrf;
pub mod csv;
pub mod errors;
pub mod headers;
pub mod page;
pub mod secret;
pub mod session;
pub mod static_files;

use askama::Template;
use axum::response::Html;

use crate::error::{AppError, AppResult};

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Renders a page template; a template error is an internal error, logged by the error layer.
pub fn render(template: &impl Template) -> AppResult<Html<String>> {
    template.render().map(Html).map_err(AppError::internal)
}
