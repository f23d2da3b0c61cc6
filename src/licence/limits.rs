//! The licence's limits on what a portal holds: a create that would go beyond one is refused
//! with a message naming it. The count runs inside the create's own transaction, after a
//! transaction-scoped advisory lock per resource, so two admins creating at the same moment
//! cannot both take the last place.

use crate::change::Change;
use crate::error::{AppError, AppResult};
use crate::state::AppState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Devices,
    Sites,
    /// Active (not disabled) user accounts.
    Users,
}

impl Resource {
    fn name(self) -> &'static str {
        match self {
            Resource::Devices => "devices",
            Resource::Sites => "sites",
            Resource::Users => "active users",
        }
    }

    fn count_sql(self) -> &'static str {
        match self {
            Resource::Devices => r#"SELECT count(*) FROM monitoring."Devices""#,
            Resource::Sites => r#"SELECT count(*) FROM monitoring."Sites""#,
            Resource::Users => r#"SELECT count(*) FROM identity."Users" WHERE NOT "IsDisabled""#,
        }
    }

    fn lock_key(self) -> i64 {
        // Arbitrary constants, distinct from the other advisory locks of the portal.
        0x7461_754c_6963_0000 + self as i64
    }
}

/// The limit of `resource` in the licence, if it has one.
pub fn limit(state: &AppState, resource: Resource) -> Option<u32> {
    let limits = state.licence.limits();
    match resource {
        Resource::Devices => limits.devices,
        Resource::Sites => limits.sites,
        Resource::Users => limits.users,
    }
}

/// Refuses one more of `resource` when the licence's limit is reached. Call inside the change
/// that creates it, before the insert.
pub async fn admit(state: &AppState, change: &mut Change, resource: Resource) -> AppResult<()> {
    let Some(limit) = limit(state, resource) else { return Ok(()) };
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(resource.lock_key()).execute(change.db()).await?;
    let count: i64 = sqlx::query_scalar(resource.count_sql()).fetch_one(change.db()).await?;
    if count >= i64::from(limit) {
        return Err(AppError::Forbidden(refusal(resource, limit, count)));
    }
    Ok(())
}

fn refusal(resource: Resource, limit: u32, count: i64) -> String {
    format!(
        "The licence of this portal allows {limit} {name}, and it has {count}: nothing was added. Remove one, or ask \
         your provider for a licence with more {name} (Settings → Licence shows the limits).",
        name = resource.name()
    )
}

/// How many of `resource` the portal holds now.
pub async fn count(state: &AppState, resource: Resource) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(resource.count_sql()).fetch_one(&state.db).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_names_the_limit() {
        let text = refusal(Resource::Sites, 2, 2);
        assert!(text.starts_with("The licence of this portal allows 2 sites, and it has 2"), "{text}");
        assert!(refusal(Resource::Users, 5, 5).contains("allows 5 active users"));
    }
}
