//! The static assets (stylesheets, scripts, the vendored chart library), compiled into the binary
//! and served under content-hashed names with a one-year immutable cache lifetime: a new release
//! changes the names, so browsers never use a stale copy and never ask twice for the current one.
//! Scripts are files, never inline: the CSP is `default-src 'self'`.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::header;
use axum::response::IntoResponse;
use sha2::{Digest, Sha256};

use crate::error::AppError;

/// An asset by its stem: `app.css` is served as `/static/app.<hash>.css`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asset {
    AppCss,
    /// The portal's own page scripts (live updates, charts, the TOU grid).
    AppJs,
    /// uPlot, vendored unmodified from its npm package (static/vendor/uplot, MIT).
    UplotJs,
    UplotCss,
}

const ASSETS: [(Asset, &str, &str, &str); 4] = [
    (Asset::AppCss, "app", "css", include_str!("../../static/app.css")),
    (Asset::AppJs, "app", "js", include_str!("../../static/app.js")),
    (Asset::UplotJs, "uplot", "js", include_str!("../../static/vendor/uplot/uPlot.iife.min.js")),
    (Asset::UplotCss, "uplot", "css", include_str!("../../static/vendor/uplot/uPlot.min.css")),
];

fn urls() -> &'static [(Asset, String, &'static str, &'static str)] {
    static URLS: OnceLock<Vec<(Asset, String, &'static str, &'static str)>> = OnceLock::new();
    URLS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|(asset, stem, ext, body)| {
                let hash = Sha256::digest(body.as_bytes());
                let short: String = hash.iter().take(6).map(|b| format!("{b:02x}")).collect();
                let content_type =
                    if *ext == "css" { "text/css; charset=utf-8" } else { "text/javascript; charset=utf-8" };
                (*asset, format!("/static/{stem}.{short}.{ext}"), content_type, *body)
            })
            .collect()
    })
}

pub fn url(asset: Asset) -> &'static str {
    urls().iter().find(|(a, ..)| *a == asset).map_or("", |(_, url, ..)| url.as_str())
}

pub fn css_url() -> &'static str {
    url(Asset::AppCss)
}

pub async fn serve(Path(name): Path<String>) -> Result<impl IntoResponse, AppError> {
    let path = format!("/static/{name}");
    let (_, _, content_type, body) = urls().iter().find(|(_, url, ..)| *url == path).ok_or(AppError::NotFound)?;
    Ok(([(header::CONTENT_TYPE, *content_type), (header::CACHE_CONTROL, "public, max-age=31536000, immutable")], *body))
}
