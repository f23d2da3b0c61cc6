//! One error type for every handler. A handler returns `AppError`; the response it turns into
//! carries only a status and an [`ErrorInfo`] marker, and the `render_errors` middleware (which
//! sees the request) turns that into a branded HTML page for browser routes or a JSON body for
//! `/api` routes, both quoting the request id. Database and other internal errors are logged in
//! full and shown as a generic message.
//!
//! A refused form is [`AppError::Invalid`] with its [`FieldErrors`]; a handler that can show
//! its form again takes them back with [`FormResult::field_errors`] and renders them next to
//! the fields. A write refused by a unique or foreign-key constraint becomes field errors with
//! [`ResultExt::on_constraint`] (the pattern of launchbadge/realworld-axum-sqlx).

use std::collections::BTreeMap;
use std::fmt;
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
    /// A submitted form with fields that cannot be stored as they are (422).
    #[error("{0}")]
    Invalid(FieldErrors),
    /// A missing or invalid API key.
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("too many attempts; retry in {0:?}")]
    TooManyRequests(Duration),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// Anything else that went wrong, kept as the error it was (logged with its causes).
    #[error("{0}")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// What `render_errors` needs to render the page.
#[derive(Debug, Clone)]
pub struct ErrorInfo {
    pub title: &'static str,
    pub message: String,
}

/// How long a client is told to wait (`Retry-After`) while the database is unavailable: about
/// the pool's acquire timeout, after which a returning database is reconnected.
pub const RETRY_AFTER_SECONDS: u64 = 5;

/// Whether `e` says the database cannot be reached right now (down, restarting, refusing
/// connections, the pool unable to connect in time), as opposed to a failed statement: the
/// request may succeed if retried once the database is back.
pub fn database_unavailable(e: &sqlx::Error) -> bool {
    match e {
        // (Not PoolClosed: the pool closes only after the server has drained, so a request that
        // meets it is a bug, not an outage.)
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => true,
        sqlx::Error::WorkerCrashed => true,
        // Class 08 (connection exception), 57P01-57P03 (shutting down, crashed, starting up),
        // 53300 (too many connections).
        sqlx::Error::Database(db) => {
            db.code().is_some_and(|c| c.starts_with("08") || c.starts_with("57P") || c == "53300")
        }
        _ => false,
    }
}

impl AppError {
    pub fn internal(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> AppError {
        AppError::Internal(e.into())
    }

    fn unavailable(&self) -> bool {
        matches!(self, AppError::Database(e) if database_unavailable(e))
    }

    fn status(&self) -> StatusCode {
        match self {
            AppError::NotFound => StatusCode::NOT_FOUND,
            AppError::Forbidden(_) | AppError::Csrf(_) => StatusCode::FORBIDDEN,
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            _ if self.unavailable() => StatusCode::SERVICE_UNAVAILABLE,
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
            AppError::Invalid(errors) => ErrorInfo { title: "Check the form", message: errors.to_string() },
            AppError::Unauthorized(m) => ErrorInfo { title: "Not signed in", message: m.clone() },
            AppError::PayloadTooLarge(m) => ErrorInfo { title: "Too large", message: m.clone() },
            AppError::TooManyRequests(wait) => ErrorInfo {
                title: "Too many attempts",
                message: format!("Try again in {} seconds.", wait.as_secs().max(1)),
            },
            _ if self.unavailable() => {
                tracing::warn!(error = %Chain(&self), "request failed: the database is unavailable");
                ErrorInfo {
                    title: "Database unavailable",
                    message: format!(
                        "The portal cannot reach its database right now, so this request was not completed (nothing \
                         was changed). Try again in {RETRY_AFTER_SECONDS} seconds or so."
                    ),
                }
            }
            AppError::Database(_) | AppError::Internal(_) => {
                tracing::error!(error = %Chain(&self), "request failed");
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
        if status == StatusCode::SERVICE_UNAVAILABLE {
            res.headers_mut().insert(axum::http::header::RETRY_AFTER, RETRY_AFTER_SECONDS.into());
        }
        res.extensions_mut().insert(info);
        res
    }
}

pub type AppResult<T> = Result<T, AppError>;

/// An error and its causes, for a log line: its message, then each cause's (`source()`) that the
/// text so far does not already quote (messages of the form "…: {cause}" quote theirs).
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = self.0.to_string();
        let mut cause = self.0.source();
        while let Some(e) = cause {
            let message = e.to_string();
            if !text.contains(&message) {
                text.push_str(": ");
                text.push_str(&message);
            }
            cause = e.source();
        }
        f.write_str(&text)
    }
}

/// What is wrong with a submitted form, by field (the id of the field in the form): the one
/// validation error of every form. The first message for a field is kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldErrors(BTreeMap<String, String>);

impl FieldErrors {
    /// One field's error.
    pub fn of(field: &str, message: impl Into<String>) -> FieldErrors {
        let mut errors = FieldErrors::default();
        errors.add(field, message);
        errors
    }

    /// Notes what is wrong with `field`, unless something already is.
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0.entry(field.to_string()).or_insert_with(|| message.into());
    }

    /// Notes `message` for `field` when `problem` holds one.
    pub fn check(&mut self, field: &str, problem: Option<String>) {
        if let Some(message) = problem {
            self.add(field, message);
        }
    }

    /// Takes over the other errors (the fields not noted here yet).
    pub fn merge(&mut self, other: FieldErrors) {
        for (field, message) in other.0 {
            self.0.entry(field).or_insert(message);
        }
    }

    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.get(field).map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// (field, message), by field.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(field, message)| (field.as_str(), message.as_str()))
    }

    /// `value` when nothing is wrong, these errors otherwise.
    pub fn or_ok<T>(self, value: T) -> Result<T, FieldErrors> {
        if self.is_empty() { Ok(value) } else { Err(self) }
    }
}

impl fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (field, message) in &self.0 {
            write!(f, "{}{field}: {message}", if first { "" } else { " " })?;
            first = false;
        }
        Ok(())
    }
}

impl From<FieldErrors> for AppError {
    fn from(errors: FieldErrors) -> AppError {
        AppError::Invalid(errors)
    }
}

/// The constraint a failed write violated (unique or foreign key), if that is why it failed.
pub fn violated_constraint(e: &sqlx::Error) -> Option<&str> {
    match e {
        sqlx::Error::Database(db) if db.is_unique_violation() || db.is_foreign_key_violation() => db.constraint(),
        _ => None,
    }
}

pub trait ResultExt<T> {
    /// Turns the failure of a write refused by the constraint `name` into the error `refusal`
    /// makes (usually [`FieldErrors`] naming the field); any other failure passes unchanged.
    fn on_constraint<E: Into<AppError>>(self, name: &str, refusal: impl FnOnce() -> E) -> AppResult<T>;
}

impl<T, E: Into<AppError>> ResultExt<T> for Result<T, E> {
    fn on_constraint<R: Into<AppError>>(self, name: &str, refusal: impl FnOnce() -> R) -> AppResult<T> {
        self.map_err(|e| match e.into() {
            AppError::Database(db) if violated_constraint(&db) == Some(name) => refusal().into(),
            e => e,
        })
    }
}

pub trait FormResult<T> {
    /// Separates a refused form (its field errors, for the handler to show the form again) from
    /// every other error, which `?` passes on.
    fn field_errors(self) -> AppResult<Result<T, FieldErrors>>;
}

impl<T> FormResult<T> for AppResult<T> {
    fn field_errors(self) -> AppResult<Result<T, FieldErrors>> {
        match self {
            Ok(value) => Ok(Ok(value)),
            Err(AppError::Invalid(errors)) => Ok(Err(errors)),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_message_per_field_is_kept_and_all_are_shown() {
        let mut e = FieldErrors::of("name", "Enter a name.");
        e.add("name", "Too long.");
        e.check("email", Some("Not an email address.".into()));
        e.check("notes", None);
        assert_eq!(e.get("name"), Some("Enter a name."));
        assert_eq!(e.get("notes"), None);
        assert_eq!(e.to_string(), "email: Not an email address. name: Enter a name.");
        let mut other = FieldErrors::of("name", "Taken.");
        other.add("site_id", "Choose a site.");
        e.merge(other);
        assert_eq!((e.get("name"), e.get("site_id")), (Some("Enter a name."), Some("Choose a site.")));
        assert_eq!(FieldErrors::default().or_ok(3), Ok(3));
        assert!(e.or_ok(3).is_err());
    }

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("could not load the branding")]
        Hidden(#[source] std::io::Error),
        #[error("bootstrap failed: {0}")]
        Quoted(#[source] std::io::Error),
    }

    #[test]
    fn a_chain_shows_every_cause_once() {
        let io = || std::io::Error::other("connection refused");
        assert_eq!(Chain(&Outer::Hidden(io())).to_string(), "could not load the branding: connection refused");
        assert_eq!(Chain(&Outer::Quoted(io())).to_string(), "bootstrap failed: connection refused");
        let internal = AppError::internal(Outer::Hidden(io()));
        assert_eq!(Chain(&internal).to_string(), "could not load the branding: connection refused");
    }

    #[test]
    fn only_the_named_constraint_becomes_a_refusal() {
        let refused: AppResult<()> =
            Err(AppError::NotFound).on_constraint("UX_Sites_Name", || FieldErrors::of("name", "x"));
        assert!(matches!(refused, Err(AppError::NotFound)));
        let invalid: AppResult<()> = Err(AppError::Invalid(FieldErrors::of("name", "x")));
        assert_eq!(invalid.field_errors().ok().and_then(|r| r.err()), Some(FieldErrors::of("name", "x")));
        let other: AppResult<()> = Err(AppError::NotFound);
        assert!(other.field_errors().is_err());
    }
}
