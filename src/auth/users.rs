//! Settings → Users and Settings → Audit log (admins only).

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use rand::Rng;
use rand::distributions::Alphanumeric;
use secrecy::SecretString;
use serde::Deserialize;
use uuid::Uuid;

use super::audit;
use super::db::{self, UserRow};
use super::password::check_policy;
use super::sessions::SessionUser;
use crate::change::Change;
use crate::config::parse_email;
use crate::error::{AppError, AppResult, FieldErrors, FormResult};
use crate::state::AppState;
use crate::web::page::Page;
use crate::web::render;
use crate::web::secret::SecretPage;
use crate::web::session::{ActingAdmin, RequireAdmin};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/settings/users", get(list).post(create))
        .route("/settings/users/{id}/{action}", post(user_action))
        .route("/settings/audit", get(audit_log))
}

pub struct UserView {
    id: Uuid,
    email: String,
    display_name: String,
    is_admin: bool,
    is_disabled: bool,
    last_login: String,
}

impl From<UserRow> for UserView {
    fn from(u: UserRow) -> Self {
        UserView {
            id: u.id,
            email: u.email,
            display_name: u.display_name,
            is_admin: u.is_admin,
            is_disabled: u.is_disabled,
            last_login: u.last_login_at.map_or_else(|| "never".into(), |t| t.format("%Y-%m-%d %H:%M UTC").to_string()),
        }
    }
}

#[derive(Deserialize, Default)]
struct CreateForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    display_name: String,
    is_admin: Option<String>,
    #[serde(default)]
    password: String,
}

#[derive(Template)]
#[template(path = "auth/users.html")]
struct UsersPage {
    page: Page,
    users: Vec<UserView>,
    form: CreateForm,
    errors: FieldErrors,
    action_error: Option<String>,
}

async fn users_page(
    state: &AppState,
    page: Page,
    form: CreateForm,
    errors: FieldErrors,
    action_error: Option<String>,
) -> AppResult<Html<String>> {
    let users = db::list_users(&state.db).await?.into_iter().map(UserView::from).collect();
    render(&UsersPage { page, users, form, errors, action_error })
}

async fn list(State(state): State<AppState>, RequireAdmin(_): RequireAdmin, page: Page) -> AppResult<Html<String>> {
    users_page(&state, page, CreateForm::default(), FieldErrors::default(), None).await
}

fn shown_once(page: Page, heading: &'static str, email: String, password: String) -> SecretPage {
    SecretPage {
        page,
        heading,
        subject_label: "The password for",
        subject: email,
        secret: password,
        hint: "hand it over securely. The user can change it under their account.",
        back_url: "/settings/users",
        back_label: "Back to users",
    }
}

fn generate_password() -> String {
    rand::thread_rng().sample_iter(&Alphanumeric).take(20).map(char::from).collect()
}

const EMAIL_TAKEN: &str = "An account with this email already exists.";

/// The new account's email and display name, or what is wrong with the form.
async fn validate_new_user(state: &AppState, form: &CreateForm, password: &str) -> AppResult<(String, String)> {
    let mut errors = FieldErrors::default();
    let email = form.email.trim().to_string();
    if let Err(e) = parse_email(&email) {
        errors.add(
            "email",
            if email.is_empty() {
                "Enter an email address.".into()
            } else {
                format!("This is not an email address ({e}).")
            },
        );
    }
    let display_name = form.display_name.trim().to_string();
    if display_name.chars().count() > 100 {
        errors.add("display_name", "Use at most 100 characters.");
    }
    if let Err(e) = check_policy(password, &email) {
        errors.add("password", e);
    }
    if errors.get("email").is_none() && db::user_id_by_email(&state.db, &email).await?.is_some() {
        errors.add("email", EMAIL_TAKEN);
    }
    let display = if display_name.is_empty() { email.clone() } else { display_name };
    Ok(errors.or_ok((email, display))?)
}

async fn create(
    State(state): State<AppState>,
    admin: ActingAdmin,
    page: Page,
    axum::Form(form): axum::Form<CreateForm>,
) -> AppResult<Response> {
    let generated = form.password.is_empty();
    let password = if generated { generate_password() } else { form.password.clone() };
    let created = async {
        let (email, display) = validate_new_user(&state, &form, &password).await?;
        let hash = state.passwords.hash(SecretString::from(password.clone())).await.map_err(AppError::internal)?;
        let is_admin = form.is_admin.is_some();
        let new = db::NewUser { email: &email, display_name: &display, password_hash: &hash, is_admin };
        let mut change = Change::begin(&state.db, admin.actor()).await?;
        crate::licence::limits::admit(&state, &mut change, crate::licence::limits::Resource::Users).await?;
        // None: created by someone else between the check and the insert.
        db::insert_user_if_absent(change.db(), &new).await?.ok_or_else(|| FieldErrors::of("email", EMAIL_TAKEN))?;
        state.commit(change, "user.created", Some(&email), serde_json::json!({ "isAdmin": is_admin })).await?;
        Ok::<_, AppError>(email)
    };
    match created.await.field_errors()? {
        Ok(email) if generated => shown_once(page, "User created", email, password).response(),
        Ok(_) => Ok(Redirect::to("/settings/users?notice=user-updated").into_response()),
        Err(errors) => {
            let html = users_page(&state, page, CreateForm { password: String::new(), ..form }, errors, None).await?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, html).into_response())
        }
    }
}

/// A change to a user's role or status, checked against the rules inside one transaction.
enum UserChange {
    ToggleAdmin,
    ToggleDisabled,
    Delete,
}

impl UserChange {
    fn action(&self) -> &'static str {
        match self {
            UserChange::ToggleAdmin => "user.role-changed",
            UserChange::ToggleDisabled => "user.status-changed",
            UserChange::Delete => "user.deleted",
        }
    }
}

/// Applies `what` in `change`, or says why the rules refuse it.
async fn apply(
    state: &AppState,
    change: &mut Change,
    admin: &SessionUser,
    id: Uuid,
    what: &UserChange,
) -> AppResult<Result<UserRow, String>> {
    let admins = db::active_admins_for_update(change.db()).await?;
    let Some(user) = db::user_for_update(change.db(), id).await? else { return Err(AppError::NotFound) };
    let (is_admin, is_disabled) = match what {
        UserChange::ToggleAdmin => (!user.is_admin, user.is_disabled),
        UserChange::ToggleDisabled => (user.is_admin, !user.is_disabled),
        UserChange::Delete => (false, true),
    };
    let self_action = user.id == admin.user_id;
    if self_action && matches!(what, UserChange::Delete) {
        return Ok(Err("You cannot delete your own account; ask another administrator.".into()));
    }
    if self_action && matches!(what, UserChange::ToggleDisabled) && !user.is_disabled {
        return Ok(Err("You cannot disable your own account; ask another administrator.".into()));
    }
    let still_active_admin = is_admin && !is_disabled;
    let loses_admin = admins.contains(&user.id) && !still_active_admin;
    if loses_admin && admins.len() == 1 {
        return Ok(Err(format!(
            "{} is the last active administrator. Make another user an administrator first.",
            user.email
        )));
    }
    if matches!(what, UserChange::ToggleDisabled) && user.is_disabled {
        // Enabling an account takes a place of the licence's active users.
        crate::licence::limits::admit(state, change, crate::licence::limits::Resource::Users).await?;
    }
    match what {
        UserChange::Delete => db::delete_user(change, id).await?,
        _ => {
            db::set_flags(change, id, is_admin, is_disabled).await?;
            if is_disabled {
                // A disabled user is signed out everywhere at once.
                state.sessions.end_all(change, id).await?;
            }
        }
    }
    Ok(Ok(UserRow { is_admin, is_disabled, ..user }))
}

async fn change_user(
    state: AppState,
    admin: ActingAdmin,
    page: Page,
    id: Uuid,
    what: UserChange,
) -> AppResult<Response> {
    let mut change = Change::begin(&state.db, admin.actor()).await?;
    let user = match apply(&state, &mut change, &admin.user, id, &what).await? {
        Ok(user) => user,
        Err(refusal) => {
            drop(change);
            let html = users_page(&state, page, CreateForm::default(), FieldErrors::default(), Some(refusal)).await?;
            return Ok((StatusCode::CONFLICT, html).into_response());
        }
    };
    let deleted = matches!(what, UserChange::Delete);
    let detail = serde_json::json!({ "isAdmin": user.is_admin, "isDisabled": user.is_disabled, "deleted": deleted });
    state.commit(change, what.action(), Some(&user.email), detail).await?;
    let notice = if deleted { "user-deleted" } else { "user-updated" };
    Ok(Redirect::to(&format!("/settings/users?notice={notice}")).into_response())
}

/// `POST /settings/users/{id}/{action}`: one of the row buttons of the users table.
async fn user_action(
    State(state): State<AppState>,
    admin: ActingAdmin,
    page: Page,
    Path((id, action)): Path<(Uuid, String)>,
) -> AppResult<Response> {
    let what = match action.as_str() {
        "admin" => UserChange::ToggleAdmin,
        "disabled" => UserChange::ToggleDisabled,
        "delete" => UserChange::Delete,
        "reset-password" => return reset_password(state, admin, page, id).await,
        _ => return Err(AppError::NotFound),
    };
    change_user(state, admin, page, id, what).await
}

/// Sets a generated password, shown once, and signs the user out everywhere.
async fn reset_password(state: AppState, admin: ActingAdmin, page: Page, id: Uuid) -> AppResult<Response> {
    let user = db::user_by_id(&state.db, id).await?.ok_or(AppError::NotFound)?;
    let password = generate_password();
    let hash = state.passwords.hash(SecretString::from(password.clone())).await.map_err(AppError::internal)?;
    let mut change = Change::begin(&state.db, admin.actor()).await?;
    if !db::set_password(change.db(), id, &hash).await? {
        return Err(AppError::NotFound);
    }
    state.sessions.end_all(&mut change, id).await?;
    state.commit(change, "user.password-reset", Some(&user.email), serde_json::json!({})).await?;
    shown_once(page, "Password reset", user.email, password).response()
}

pub struct AuditView {
    at: String,
    actor: String,
    action: String,
    target: String,
    ip: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "auth/audit.html")]
struct AuditPage {
    page: Page,
    entries: Vec<AuditView>,
    older: Option<i64>,
}

#[derive(Deserialize)]
struct AuditQuery {
    before: Option<i64>,
}

const AUDIT_PAGE_SIZE: i64 = 100;

async fn audit_log(
    State(state): State<AppState>,
    RequireAdmin(_): RequireAdmin,
    page: Page,
    Query(q): Query<AuditQuery>,
) -> AppResult<Html<String>> {
    let rows = audit::page(&state.db, q.before, AUDIT_PAGE_SIZE).await?;
    let older = (rows.len() as i64 == AUDIT_PAGE_SIZE).then(|| rows.last().map(|r| r.id)).flatten();
    let entries = rows
        .into_iter()
        .map(|r| AuditView {
            at: r.at.format("%Y-%m-%d %H:%M:%S").to_string(),
            actor: r.actor_email,
            action: r.action,
            target: r.target.unwrap_or_default(),
            ip: r.ip_address.unwrap_or_default(),
            detail: if r.detail == serde_json::json!({}) { String::new() } else { r.detail.to_string() },
        })
        .collect();
    render(&AuditPage { page, entries, older })
}
