//! Settings → Branding, the generated theme stylesheet and the logo file.

use askama::Template;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::logo::{self, LogoError};
use super::{Brand, contrast, db};
use crate::change::Change;
use crate::config::Color;
use crate::error::{AppError, AppResult, FieldErrors};
use crate::state::AppState;
use crate::web::page::Page;
use crate::web::render;
use crate::web::session::{ActingAdmin, RequireAdmin};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/settings/branding", get(settings).post(save))
        .route(
            "/settings/branding/logo",
            // Room for the multipart framing around a file at the limit; the file itself is
            // checked against logo::MAX_BYTES with a clear message.
            post(upload_logo).layer(DefaultBodyLimit::max(logo::MAX_BYTES + 64 * 1024)),
        )
        .route("/settings/branding/logo/delete", post(delete_logo))
        .route("/branding/{file}", get(theme_css))
        .route("/branding/logo/{file}", get(logo_file))
}

#[derive(Deserialize, Default)]
struct BrandForm {
    #[serde(default)]
    application_name: String,
    #[serde(default)]
    primary_color: String,
    #[serde(default)]
    secondary_color: String,
    #[serde(default)]
    accent_color: String,
    #[serde(default)]
    footer_text: String,
}

impl BrandForm {
    /// The brand as `current` with this form's texts and colours, or what is wrong with them.
    fn validate(&self, current: &Brand) -> Result<Brand, FieldErrors> {
        let mut errors = FieldErrors::default();
        let name = self.application_name.trim().to_string();
        if name.is_empty() || name.chars().count() > 100 {
            errors.add("application_name", "Enter a name of 1 to 100 characters.");
        }
        let footer = self.footer_text.trim().to_string();
        if footer.chars().count() > 200 {
            errors.add("footer_text", "Use at most 200 characters.");
        }
        let mut parse = |raw: &str, field: &str, role: Option<contrast::Use>| match raw.trim().parse::<Color>() {
            Ok(c) => match role.and_then(|role| contrast::problem(&c, role)) {
                Some(problem) => {
                    errors.add(field, problem);
                    None
                }
                None => Some(c),
            },
            Err(e) => {
                errors.add(field, format!("Colour: {e}."));
                None
            }
        };
        let primary = parse(&self.primary_color, "primary_color", Some(contrast::Use::HeaderBackground));
        let secondary = parse(&self.secondary_color, "secondary_color", Some(contrast::Use::LinksAndButtons));
        let accent = parse(&self.accent_color, "accent_color", None);
        match (primary, secondary, accent) {
            (Some(primary_color), Some(secondary_color), Some(accent_color)) => errors.or_ok(Brand {
                application_name: name,
                primary_color,
                secondary_color,
                accent_color,
                footer_text: footer,
                ..current.clone()
            }),
            _ => Err(errors),
        }
    }
}

impl From<&Brand> for BrandForm {
    fn from(b: &Brand) -> Self {
        BrandForm {
            application_name: b.application_name.clone(),
            primary_color: b.primary_color.as_str().to_string(),
            secondary_color: b.secondary_color.as_str().to_string(),
            accent_color: b.accent_color.as_str().to_string(),
            footer_text: b.footer_text.clone(),
        }
    }
}

#[derive(Template)]
#[template(path = "branding/settings.html")]
struct SettingsPage {
    page: Page,
    form: BrandForm,
    errors: FieldErrors,
    has_logo: bool,
}

fn settings_page(state: &AppState, page: Page, form: BrandForm, errors: FieldErrors) -> AppResult<Html<String>> {
    let has_logo = state.branding.theme().logo_url.is_some();
    render(&SettingsPage { page, form, errors, has_logo })
}

async fn settings(State(state): State<AppState>, RequireAdmin(_): RequireAdmin, page: Page) -> AppResult<Html<String>> {
    let form = BrandForm::from(&state.branding.theme().brand);
    settings_page(&state, page, form, FieldErrors::default())
}

async fn save(
    State(state): State<AppState>,
    admin: ActingAdmin,
    page: Page,
    axum::Form(form): axum::Form<BrandForm>,
) -> AppResult<Response> {
    let brand = match form.validate(&state.branding.theme().brand) {
        Ok(brand) => brand,
        Err(errors) => {
            let html = settings_page(&state, page, form, errors)?;
            return Ok((StatusCode::UNPROCESSABLE_ENTITY, html).into_response());
        }
    };
    let mut change = Change::begin(&state.db, admin.actor()).await?;
    db::update_texts_and_colors(&mut change, &brand).await?;
    let detail = serde_json::json!({
        "applicationName": brand.application_name,
        "colors": [brand.primary_color.as_str(), brand.secondary_color.as_str(), brand.accent_color.as_str()],
    });
    state.commit(change, "branding.updated", None, detail).await?;
    Ok(Redirect::to("/settings/branding?notice=branding-saved").into_response())
}

/// Reads the `logo` field of the upload.
async fn read_upload(mut multipart: Multipart) -> Result<Vec<u8>, LogoError> {
    let too_large = |_| LogoError::TooLarge(logo::MAX_BYTES / 1024 + 1);
    while let Some(field) = multipart.next_field().await.map_err(too_large)? {
        if field.name() == Some("logo") {
            return Ok(field.bytes().await.map_err(too_large)?.to_vec());
        }
    }
    Err(LogoError::Empty)
}

async fn upload_logo(
    State(state): State<AppState>,
    admin: ActingAdmin,
    page: Page,
    multipart: Multipart,
) -> AppResult<Response> {
    let refuse = |state: &AppState, page: Page, message: String| -> AppResult<Response> {
        let errors = FieldErrors::of("logo", message);
        let form = BrandForm::from(&state.branding.theme().brand);
        Ok((StatusCode::UNPROCESSABLE_ENTITY, settings_page(state, page, form, errors)?).into_response())
    };
    let processed = match read_upload(multipart).await {
        Ok(bytes) => tokio::task::spawn_blocking(move || logo::process(&bytes)).await.map_err(AppError::internal)?,
        Err(e) => Err(e),
    };
    let logo = match processed {
        Ok(logo) => logo,
        Err(e) => return refuse(&state, page, e.to_string()),
    };
    let folder = state.branding.folder().to_path_buf();
    let file = logo.file_name.clone();
    // Write to a temporary name, then rename: a crash never leaves a half-written logo.
    let written = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        std::fs::create_dir_all(&folder)?;
        let tmp = folder.join(format!(".{file}.tmp"));
        std::fs::write(&tmp, &logo.png)?;
        std::fs::rename(&tmp, folder.join(&file))
    })
    .await
    .map_err(AppError::internal)?;
    if let Err(e) = written {
        tracing::error!(folder = %state.branding.folder().display(), "Cannot store the logo: {e}");
        let message = format!(
            "The logo could not be saved: the folder {} is not writable by the portal ({e}). \
             Check that the branding volume is mounted and owned by uid 1000.",
            state.branding.folder().display()
        );
        return refuse(&state, page, message);
    }
    let mut change = Change::begin(&state.db, admin.actor()).await?;
    let previous = db::set_logo(&mut change, Some(&logo.file_name)).await?;
    state.commit(change, "branding.logo-uploaded", Some(&logo.file_name), serde_json::json!({})).await?;
    remove_old(&state, previous.as_deref(), Some(&logo.file_name)).await;
    Ok(Redirect::to("/settings/branding?notice=logo-saved").into_response())
}

async fn delete_logo(State(state): State<AppState>, admin: ActingAdmin) -> AppResult<Response> {
    let mut change = Change::begin(&state.db, admin.actor()).await?;
    let previous = db::set_logo(&mut change, None).await?;
    state.commit(change, "branding.logo-removed", previous.as_deref(), serde_json::json!({})).await?;
    remove_old(&state, previous.as_deref(), None).await;
    Ok(Redirect::to("/settings/branding?notice=logo-removed").into_response())
}

/// Removes the replaced logo file (after the database points at the new one).
async fn remove_old(state: &AppState, previous: Option<&str>, current: Option<&str>) {
    let Some(old) = previous.filter(|old| Some(*old) != current) else { return };
    if let Err(e) = tokio::fs::remove_file(state.branding.folder().join(old)).await {
        tracing::warn!(file = old, "Could not remove the previous logo: {e}");
    }
}

async fn theme_css(State(state): State<AppState>, Path(file): Path<String>) -> AppResult<Response> {
    let theme = state.branding.theme();
    if format!("/branding/{file}") != theme.css_url {
        return Err(AppError::NotFound);
    }
    let headers = [
        (header::CONTENT_TYPE, "text/css; charset=utf-8"),
        (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
    ];
    Ok((headers, theme.css.clone()).into_response())
}

async fn logo_file(State(state): State<AppState>, Path(file): Path<String>) -> AppResult<Response> {
    let valid = file.len() == 36 && file.ends_with(".png") && file[..32].chars().all(|c| c.is_ascii_hexdigit());
    if !valid {
        return Err(AppError::NotFound);
    }
    let bytes = tokio::fs::read(state.branding.folder().join(&file)).await.map_err(|_| AppError::NotFound)?;
    // The name is the content's hash: it never changes, so caches may keep it for good.
    let headers = [(header::CONTENT_TYPE, "image/png"), (header::CACHE_CONTROL, "public, max-age=31536000, immutable")];
    Ok((headers, bytes).into_response())
}
