//! Server-side sessions. The browser holds a random 256-bit token; the database holds only its
//! SHA-256, so a leaked table does not sign anyone in. Sessions end after an idle period (sliding)
//! or an absolute lifetime, and are revoked at once by logout, a password change, or a user being
//! disabled or deleted.
//!
//! Validated sessions are cached in memory for a few seconds because the Grafana gate checks the
//! session for every request of a dashboard load (dozens per page): in the steady state a check
//! touches no database. `last seen` is written back at most once a minute per session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

use crate::auth::audit::Actor;
use crate::change::{Cache, Change};
use crate::clock::Clock;

/// How long a validated session is trusted from memory before the database is asked again
/// (catches changes made outside this process, e.g. a user deleted with psql).
const CACHE_TTL: Duration = Duration::from_secs(30);
/// `LastSeenAt` is written at most this often per session.
const LAST_SEEN_WRITE_INTERVAL: Duration = Duration::from_secs(60);
/// Above this many cached sessions, expired entries are swept on insert.
const CACHE_SWEEP_THRESHOLD: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionUser {
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub email: String,
    pub display_name: String,
    pub is_admin: bool,
}

impl SessionUser {
    /// The user as the author of a change, from `ip`.
    pub fn actor(&self, ip: Option<std::net::IpAddr>) -> Actor {
        Actor::user(self.user_id, &self.email, ip)
    }
}

struct Cached {
    user: SessionUser,
    expires_at: DateTime<Utc>,
    last_seen: DateTime<Utc>,
    last_seen_stored: DateTime<Utc>,
    loaded_at: DateTime<Utc>,
}

#[derive(Clone)]
pub struct Sessions {
    inner: Arc<Inner>,
}

struct Inner {
    db: PgPool,
    clock: Clock,
    idle: chrono::Duration,
    absolute: chrono::Duration,
    cache: Mutex<HashMap<[u8; 32], Cached>>,
}

pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Whether a request is the user's doing (it slides the idle window) or a page's own background
/// work: live figures polling, a Grafana panel refreshing. A screen left open must still time
/// out, so background requests are served while the session lives but never extend it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    User,
    Background,
}

/// Where a session was opened from, for the session row and the audit log.
pub struct Origin<'a> {
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

impl Sessions {
    pub fn new(db: PgPool, clock: Clock, idle: Duration, absolute: Duration) -> Sessions {
        Sessions {
            inner: Arc::new(Inner {
                db,
                clock,
                idle: chrono(idle),
                absolute: chrono(absolute),
                cache: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Cached>> {
        // A panic while holding the lock cannot leave the map half-updated in a harmful way.
        self.inner.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Opens a new session (a new token on every login: no fixation) in the transaction of the
    /// sign-in or password change, and returns its token.
    pub async fn create(
        &self,
        tx: &mut PgConnection,
        user_id: Uuid,
        origin: &Origin<'_>,
    ) -> Result<String, sqlx::Error> {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let token = URL_SAFE_NO_PAD.encode(bytes);
        let now = self.inner.clock.now();
        sqlx::query(
            r#"INSERT INTO identity."Sessions" ("TokenHash", "UserId", "CreatedAt", "LastSeenAt", "ExpiresAt", "IpAddress", "UserAgent")
               VALUES ($1, $2, $3, $3, $4, $5, $6)"#,
        )
        .bind(token_hash(&token).as_slice())
        .bind(user_id)
        .bind(now)
        .bind(now + self.inner.absolute)
        .bind(origin.ip)
        .bind(origin.user_agent.map(|ua| ua.chars().take(300).collect::<String>()))
        .execute(tx)
        .await?;
        Ok(token)
    }

    /// The session's user when the token is valid, unexpired and the user is enabled; user
    /// activity slides the idle window, background requests do not.
    pub async fn validate(&self, token: &str, activity: Activity) -> Result<Option<SessionUser>, sqlx::Error> {
        let hash = token_hash(token);
        let now = self.inner.clock.now();
        let mut carried_last_seen = None;
        let fast = {
            let mut cache = self.cache();
            match cache.get_mut(&hash) {
                Some(c) if now - c.loaded_at < chrono(CACHE_TTL) => Some(self.touch(c, now, activity)),
                Some(c) => {
                    carried_last_seen = Some(c.last_seen);
                    cache.remove(&hash);
                    None
                }
                None => None,
            }
        };
        match fast {
            Some(Touch::Alive { user, store_last_seen }) => {
                if store_last_seen {
                    self.store_last_seen(&hash, now).await?;
                }
                return Ok(Some(user));
            }
            Some(Touch::Expired) => {
                self.cache().remove(&hash);
                delete_by_hash(&self.inner.db, &hash).await?;
                return Ok(None);
            }
            None => {}
        }

        let row: Option<SessionRow> = sqlx::query_as(
            r#"SELECT s."Id", s."UserId", s."LastSeenAt", s."ExpiresAt", u."Email", u."DisplayName", u."IsAdmin"
               FROM identity."Sessions" s JOIN identity."Users" u ON u."Id" = s."UserId"
               WHERE s."TokenHash" = $1 AND NOT u."IsDisabled""#,
        )
        .bind(hash.as_slice())
        .fetch_optional(&self.inner.db)
        .await?;
        let Some((session_id, user_id, stored_last_seen, expires_at, email, display_name, is_admin)) = row else {
            return Ok(None);
        };
        let last_seen = carried_last_seen.map_or(stored_last_seen, |c| c.max(stored_last_seen));
        let mut entry = Cached {
            user: SessionUser { session_id, user_id, email, display_name, is_admin },
            expires_at,
            last_seen,
            last_seen_stored: stored_last_seen,
            loaded_at: now,
        };
        match self.touch(&mut entry, now, activity) {
            Touch::Expired => {
                delete_by_hash(&self.inner.db, &hash).await?;
                Ok(None)
            }
            Touch::Alive { user, store_last_seen } => {
                {
                    let mut cache = self.cache();
                    if cache.len() >= CACHE_SWEEP_THRESHOLD {
                        let idle = self.inner.idle;
                        cache.retain(|_, c| now < c.expires_at && now - c.last_seen < idle);
                    }
                    cache.insert(hash, entry);
                }
                if store_last_seen {
                    self.store_last_seen(&hash, now).await?;
                }
                Ok(Some(user))
            }
        }
    }

    /// Applies the timeouts to a cached entry and, for user activity, slides its idle window.
    fn touch(&self, c: &mut Cached, now: DateTime<Utc>, activity: Activity) -> Touch {
        if now >= c.expires_at || now - c.last_seen >= self.inner.idle {
            return Touch::Expired;
        }
        if activity == Activity::Background {
            return Touch::Alive { user: c.user.clone(), store_last_seen: false };
        }
        c.last_seen = now;
        let store_last_seen = now - c.last_seen_stored >= chrono(LAST_SEEN_WRITE_INTERVAL);
        if store_last_seen {
            c.last_seen_stored = now;
        }
        Touch::Alive { user: c.user.clone(), store_last_seen }
    }

    async fn store_last_seen(&self, hash: &[u8; 32], now: DateTime<Utc>) -> Result<(), sqlx::Error> {
        sqlx::query(r#"UPDATE identity."Sessions" SET "LastSeenAt" = $2 WHERE "TokenHash" = $1"#)
            .bind(hash.as_slice())
            .bind(now)
            .execute(&self.inner.db)
            .await?;
        Ok(())
    }

    /// Ends one session (logout of a session that no longer has a user: nothing to audit).
    pub async fn revoke(&self, token: &str) -> Result<(), sqlx::Error> {
        let hash = token_hash(token);
        self.cache().remove(&hash);
        delete_by_hash(&self.inner.db, &hash).await
    }

    /// Ends one session (logout) as part of `change`.
    pub async fn end(&self, change: &mut Change, token: &str) -> Result<(), sqlx::Error> {
        let hash = token_hash(token);
        delete_by_hash(change.db(), &hash).await?;
        change.stale(Cache::Session(hash));
        Ok(())
    }

    /// Ends every session of a user (password change, disable, reset) as part of `change`; once
    /// it commits the Grafana gate refuses them from the next request on.
    pub async fn end_all(&self, change: &mut Change, user_id: Uuid) -> Result<u64, sqlx::Error> {
        let deleted = sqlx::query(r#"DELETE FROM identity."Sessions" WHERE "UserId" = $1"#)
            .bind(user_id)
            .execute(change.db())
            .await?
            .rows_affected();
        change.stale(Cache::SessionsOf(user_id));
        Ok(deleted)
    }

    /// Drops one cached session (after the change that ended it committed).
    pub fn forget(&self, hash: &[u8; 32]) {
        self.cache().remove(hash);
    }

    /// Drops a user's cached sessions so the next check reloads them (e.g. after a role change).
    pub fn forget_user(&self, user_id: Uuid) {
        self.cache().retain(|_, c| c.user.user_id != user_id);
    }

    /// Deletes expired sessions; returns how many. The stored `LastSeenAt` lags real use by up
    /// to a write interval, hence the margin on the idle cut-off.
    pub async fn purge_expired(&self) -> Result<u64, sqlx::Error> {
        let now = self.inner.clock.now();
        let idle_cutoff = now - self.inner.idle - chrono(LAST_SEEN_WRITE_INTERVAL * 2);
        Ok(sqlx::query(r#"DELETE FROM identity."Sessions" WHERE "ExpiresAt" <= $1 OR "LastSeenAt" <= $2"#)
            .bind(now)
            .bind(idle_cutoff)
            .execute(&self.inner.db)
            .await?
            .rows_affected())
    }
}

/// Id, user id, last seen, expires, email, display name, is admin.
type SessionRow = (Uuid, Uuid, DateTime<Utc>, DateTime<Utc>, String, String, bool);

enum Touch {
    Alive { user: SessionUser, store_last_seen: bool },
    Expired,
}

async fn delete_by_hash(db: impl PgExecutor<'_>, hash: &[u8; 32]) -> Result<(), sqlx::Error> {
    sqlx::query(r#"DELETE FROM identity."Sessions" WHERE "TokenHash" = $1"#).bind(hash.as_slice()).execute(db).await?;
    Ok(())
}
