//! Settings → Licence (Client mode, admins): what the licence grants, what the portal uses of
//! it, and where it stands.

use askama::Template;
use axum::extract::State;
use axum::response::Html;

use super::limits::{self, Resource};
use super::{Licence, Standing};
use crate::error::AppResult;
use crate::state::AppState;
use crate::web::page::Page;
use crate::web::render;
use crate::web::session::RequireAdmin;

pub struct Usage {
    what: &'static str,
    used: i64,
    limit: String,
    full: bool,
}

#[derive(Template)]
#[template(path = "licence/settings.html")]
struct LicencePage {
    page: Page,
    state: &'static str,
    summary: String,
    refused: Option<String>,
    customer: String,
    issued: String,
    expires: String,
    grace_days: u32,
    features: String,
    usage: Vec<Usage>,
    public_key: String,
}

fn date(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

pub async fn show(State(state): State<AppState>, RequireAdmin(_): RequireAdmin, page: Page) -> AppResult<Html<String>> {
    let standing = state.licence.standing(state.clock.now());
    let summary = match &standing {
        Standing::Unlicensed => "This portal has no licence key (License__Key): it runs without limits.".to_string(),
        Standing::Valid { expires } => format!("Valid until {}.", date(*expires)),
        other => other.banner().unwrap_or_default(),
    };
    let refused = match &*state.licence {
        Licence::Refused(why) => Some(why.clone()),
        _ => None,
    };
    let mut usage = Vec::new();
    for (resource, what) in
        [(Resource::Sites, "Sites"), (Resource::Devices, "Devices"), (Resource::Users, "Active users")]
    {
        let used = limits::count(&state, resource).await?;
        let limit = limits::limit(&state, resource);
        usage.push(Usage {
            what,
            used,
            limit: limit.map_or_else(|| "unlimited".into(), |l| l.to_string()),
            full: limit.is_some_and(|l| used >= i64::from(l)),
        });
    }
    let claims = state.licence.claims();
    render(&LicencePage {
        page,
        state: standing.label(),
        summary,
        refused,
        customer: claims.map(|c| format!("{} ({})", c.company, c.customer_code)).unwrap_or_default(),
        issued: claims.map(|c| date(c.issued_at())).unwrap_or_default(),
        expires: claims.map(|c| date(c.expires_at())).unwrap_or_default(),
        grace_days: claims.map_or(0, |c| c.grace_days),
        features: claims.map(|c| c.features.join(", ")).unwrap_or_default(),
        usage,
        public_key: state.config.license.public_key.map(|k| k.text()).unwrap_or_default(),
    })
}
