//! The stylesheet, compiled into the binary and served under a content-hashed name with a
//! one-year immutable cache lifetime: a new release changes the name, so browsers never use a
//! stale copy and never ask twice for the current one.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::header;
use axum::response::IntoResponse;
use sha2::{Digest, Sha256};

use crate::error::AppError;

const CSS: &str = include_str!("../../static/app.css");

pub fn css_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let hash = Sha256::digest(CSS.as_bytes());
        let short: String = hash.iter().take(6).map(|b| format!("{b:02x}")).collect();
        format!("/static/app.{short}.css")
    })
}

pub async fn serve(Path(name): Path<String>) -> Result<impl IntoResponse, AppError> {
    if format!("/static/{name}") != css_url() {
        return Err(AppError::NotFound);
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        CSS,
    ))
}
