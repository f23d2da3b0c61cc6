//! The page that shows a generated secret (a password, an API key) exactly once.

use askama::Template;

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
