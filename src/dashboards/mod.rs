//! The portal's own pages about the customer's energy; for now the overview a user lands on.

use askama::Template;
use axum::Router;
use axum::response::Html;
use axum::routing::get;

use crate::app::AppState;
use crate::auth::sessions::SessionUser;
use crate::error::AppResult;
use crate::web::page::Page;
use crate::web::render;
use crate::web::session::CurrentUser;

pub fn router() -> Router<AppState> {
    Router::new().route("/", get(overview))
}

#[derive(Template)]
#[template(path = "overview.html")]
struct Overview {
    page: Page,
    user: SessionUser,
}

async fn overview(CurrentUser(user): CurrentUser, page: Page) -> AppResult<Html<String>> {
    render(&Overview { page, user })
}
