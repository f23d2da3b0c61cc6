//! An audited change: what an admin changes (or a user changes about their own account, or a
//! sign-in records), written in ONE transaction together with its audit row, and the in-memory
//! caches it makes stale, forgotten once it has committed.
//!
//! [`Change::begin`] opens it; the write functions take it (those whose rows are cached in
//! memory note the cache they make stale with [`Change::stale`], so no handler has to remember
//! to); [`AppState::commit`](crate::state::AppState::commit) writes the audit row, commits and
//! then forgets the caches. A change dropped before that (an error, a refusal) rolls back, its
//! writes and its audit row together: no change without its audit row, no audit row of a change
//! that did not happen.

use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::auth::audit::{self, Actor};

/// An in-memory cache a change makes stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cache {
    /// The `externalId` → device directory (sites::directory).
    Devices,
    /// The branding every page is drawn with.
    Branding,
    /// The validated sessions of a user (auth::sessions), e.g. after a role change.
    SessionsOf(Uuid),
    /// One validated session, by its token hash (sign-out).
    Session([u8; 32]),
    /// The count of open alarms in every page's header (alarms).
    ActiveAlarms,
}

pub struct Change {
    tx: Transaction<'static, Postgres>,
    actor: Actor,
    stale: Vec<Cache>,
}

impl Change {
    pub async fn begin(db: &PgPool, actor: Actor) -> Result<Change, sqlx::Error> {
        Ok(Change { tx: db.begin().await?, actor, stale: Vec::new() })
    }

    /// The transaction, for the change's reads and writes.
    pub fn db(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    /// Notes a cache this change makes stale; it is forgotten after the commit.
    pub fn stale(&mut self, cache: Cache) {
        if !self.stale.contains(&cache) {
            self.stale.push(cache);
        }
    }

    /// Writes the audit row and commits; returns the caches to forget. Only
    /// [`AppState::commit`](crate::state::AppState::commit) calls it, and forgets them.
    pub(crate) async fn commit_audited(
        mut self,
        action: &str,
        target: Option<&str>,
        detail: serde_json::Value,
    ) -> Result<Vec<Cache>, sqlx::Error> {
        audit::write(&mut self.tx, &self.actor, action, target, detail).await?;
        self.tx.commit().await?;
        Ok(self.stale)
    }
}
