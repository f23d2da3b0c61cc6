//! The portal's own pages about the customer's energy; for now the overview a user lands on,
//! with each site's cost this month (`outlook.rs`).

mod outlook;

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::response::Html;
use axum::routing::get;

use crate::auth::sessions::SessionUser;
use crate::error::AppResult;
use crate::state::AppState;
use crate::web::page::Page;
use crate::web::render;
use crate::web::session::CurrentUser;
use outlook::SiteOutlook;

pub fn router() -> Router<AppState> {
    Router::new().route("/", get(overview))
}

#[derive(Template)]
#[template(path = "dashboards/overview.html")]
struct Overview {
    page: Page,
    user: SessionUser,
    /// Month to date and projection per site with a tariff.
    costs: Vec<SiteOutlook>,
    /// Open alarms (`alarms/active.html`).
    active: crate::alarms::ActiveAlarmView,
}

async fn overview(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    page: Page,
) -> AppResult<Html<String>> {
    let costs = outlook::month_outlook(&state.db, state.clock.now()).await?;
    let active = crate::alarms::active_alarms(&state).await?;
    render(&Overview { page, user, costs, active })
}
