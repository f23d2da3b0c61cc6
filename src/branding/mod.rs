//! White-label branding: the application name, colours, footer and logo every page (the sign-in
//! page included) is drawn with. Seeded from `WhiteLabel__*` on first boot only, then edited in
//! Settings → Branding. Held in memory (every page needs it) and replaced on save.

pub mod contrast;
mod db;
pub mod logo;
mod routes;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::config::{Color, WhiteLabel};

pub use routes::router;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Brand {
    pub application_name: String,
    pub primary_color: Color,
    pub secondary_color: Color,
    pub accent_color: Color,
    pub footer_text: String,
    pub logo_file: Option<String>,
}

impl From<&WhiteLabel> for Brand {
    fn from(w: &WhiteLabel) -> Brand {
        Brand {
            application_name: w.application_name.clone(),
            primary_color: w.primary_color.clone(),
            secondary_color: w.secondary_color.clone(),
            accent_color: w.accent_color.clone(),
            footer_text: w.footer_text.clone(),
            logo_file: None,
        }
    }
}

/// What pages render with: the brand, the URL of its stylesheet, and whether the logo can be
/// shown (its file exists; otherwise the header falls back to the name alone).
#[derive(Debug)]
pub struct Theme {
    pub brand: Brand,
    pub css: String,
    pub css_url: String,
    pub logo_url: Option<String>,
}

impl Theme {
    fn new(brand: Brand, folder: &std::path::Path) -> Theme {
        let css = format!(
            ":root {{ --primary: {}; --secondary: {}; --accent: {}; }}\n",
            brand.primary_color.as_str(),
            brand.secondary_color.as_str(),
            brand.accent_color.as_str()
        );
        let hash = Sha256::digest(css.as_bytes());
        let css_url =
            format!("/branding/theme.{}.css", hash.iter().take(6).map(|b| format!("{b:02x}")).collect::<String>());
        let logo_url =
            brand.logo_file.as_ref().filter(|f| folder.join(f).is_file()).map(|f| format!("/branding/logo/{f}"));
        Theme { brand, css, css_url, logo_url }
    }
}

#[derive(Clone)]
pub struct Branding {
    db: PgPool,
    folder: PathBuf,
    current: Arc<RwLock<Arc<Theme>>>,
}

impl Branding {
    /// Seeds the row from `WhiteLabel__*` when there is none (first boot), then loads it.
    pub async fn load(db: PgPool, white_label: &WhiteLabel, folder: PathBuf) -> Result<Branding, sqlx::Error> {
        if db::insert_if_absent(&db, &Brand::from(white_label)).await? {
            tracing::info!(application_name = %white_label.application_name, "Branding seeded from the WhiteLabel__* settings");
        } else {
            tracing::info!(
                "Branding already set: the WhiteLabel__* settings are ignored (change branding in Settings → Branding)"
            );
        }
        let brand = db::load(&db).await?.unwrap_or_else(|| Brand::from(white_label));
        let theme = Arc::new(Theme::new(brand, &folder));
        Ok(Branding { db, folder, current: Arc::new(RwLock::new(theme)) })
    }

    pub fn theme(&self) -> Arc<Theme> {
        self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    pub fn folder(&self) -> &std::path::Path {
        &self.folder
    }

    pub(crate) async fn reload(&self) -> Result<(), sqlx::Error> {
        if let Some(brand) = db::load(&self.db).await? {
            let theme = Arc::new(Theme::new(brand, &self.folder));
            *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = theme;
        }
        Ok(())
    }
}
