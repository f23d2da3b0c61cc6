//! One error type for every handler. A handler returns `AppError`; the response it turns into
//! carries only a status and an [`ErrorInfo`] marker, and the `render_errors` middleware (which
//! sees the request) turns that into a branded HTML page for browser routes or a JSON body for
//! `/api` routes, both quoting the request id. Database and other internal errors are logged in
//! full and shown as a generic message.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Forbidden(String),
    /// A failed CSRF or origin check.
    #[error("{0}")]
    Csrf(&'static str),
    #[error("{0}")]
    BadRequest(String),
    /// A missing or invalid API key.
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("too many attempts; retry in {0:?}")]
    TooManyRequests(Duration),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Internal(String),
}

/// What `render_errors` needs to render the page.
#[derive(Debug, Clone)]
pub struct ErrorInfo {
    pub title: &'static str,
    pub message: String,
}

impl AppError {
    pub fn internal(e: impl std::fmt::Display) -> AppError {
        AppError::Internal(e.to_string())
    }

    fn status(&self) -> StatusCode {
        match self {
            AppError::NotFound => StatusCode::NOT_FOUND,
            AppError::Forbidden(_) | AppError::Csrf(_) => StatusCode::FORBIDDEN,
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            AppError::Database(_) | AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let info = match &self {
            AppError::NotFound => {
                ErrorInfo { title: "Page not found", message: "There is nothing at this address.".into() }
            }
            AppError::Forbidden(m) => ErrorInfo { title: "Not allowed", message: m.clone() },
            AppError::Csrf(why) => ErrorInfo {
                title: "This form has expired",
                message: format!(
                    "{why} Reload the page and submit the form again. If this keeps happening, sign out and sign in again."
                ),
            },
            AppError::BadRequest(m) => ErrorInfo { title: "Bad request", message: m.clone() },
            AppError::Unauthorized(m) => ErrorInfo { title: "Not signed in", message: m.clone() },
            AppError::PayloadTooLarge(m) => ErrorInfo { title: "Too large", message: m.clone() },
            AppError::TooManyRequests(wait) => ErrorInfo {
                title: "Too many attempts",
                message: format!("Try again in {} seconds.", wait.as_secs().max(1)),
            },
            AppError::Database(_) | AppError::Internal(_) => {
                tracing::error!(error = %self, "request failed");
                ErrorInfo {
                    title: "Something went wrong",
                    message:
                        "The portal could not complete this request. Quote the request id below when you report it."
                            .into(),
                }
            }
        };
        let mut res = status.into_response();
        if status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(axum::http::header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
        }
        res.extensions_mut().insert(info);
        res
    }
}

pub type AppResult<T> = Result<T, AppError>;
