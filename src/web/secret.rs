//! The page that shows a generated secret (a password, an API key) exactly once.

use askama::Template;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::error::AppResult;
use crate::web::page::Page;

#[derive(Template)]
#[template(path = "secret.html")]
pub struct SecretPage {
    pub page: Page,
    pub heading: &'static str,
    /// E.g. "The password for"; followed by `subject` in bold.
    pub subject_label: &'static str,
    pub subject: String,
    pub secret: String,
    /// What to do with it, ending the sentence "Copy it now; …".
    pub hint: &'static str,
    pub back_url: &'static str,
    pub back_label: &'static str,
}

impl SecretPage {
    /// The page, never stored by the browser or a proxy (the back button or a shared cache must
    /// not show the secret again).
    pub fn response(&self) -> AppResult<Response> {
        let html = crate::web::render(self)?;
        Ok(([(header::CACHE_CONTROL, "no-store"), (header::PRAGMA, "no-cache")], html).into_response())
    }
}
