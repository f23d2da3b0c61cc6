//! Signed offline licence keys (README "Licence"). The Admin portal signs them (issue.rs, with the
//! private key only it holds); every Client portal verifies its `License__Key` at startup with the
//! public key (keys.rs, token.rs) and judges it against the clock on every use:
//!
//! - valid; within [`WARNING_DAYS`] of expiry a banner for admins and a daily log line;
//! - expired: a grace period (the licence's `graceDays`) with a banner, everything working;
//! - after the grace period, or with a key that is refused (tampered, foreign, malformed):
//!   settings are read-only (guard.rs). Data collection (the poller, the ingest API, MQTT, the
//!   fleet push) never stops and nothing is lost.
//!
//! Limits (devices, sites, users) refuse creates beyond them, naming the limit (limits.rs).
//! Without a licence key the portal runs unlicensed: no limits, a notice for admins, and the
//! state in /metrics for the operator who bills on it.

pub mod guard;
pub mod issue;
pub mod keys;
pub mod limits;
pub mod page;
pub mod token;

use axum::Router;
use axum::routing::get;
use chrono::{DateTime, Duration, Utc};
use secrecy::ExposeSecret;

use crate::config::LicenseSettings;
pub use token::{Claims, Limits};

/// Settings → Licence of a customer's portal.
pub fn client_router() -> Router<crate::state::AppState> {
    Router::new().route("/settings/licence", get(page::show))
}

/// The Admin's licence pages of a customer.
pub fn admin_router() -> Router<crate::state::AppState> {
    Router::new().route("/fleet/customers/{id}/licences", get(issue::list).post(issue::issue))
}

/// How many days before expiry admins are warned.
pub const WARNING_DAYS: i64 = 30;

/// The licence key given to this portal, as verified at startup.
#[derive(Debug, Clone)]
pub enum Licence {
    /// No `License__Key`.
    Unlicensed,
    Signed(Claims),
    /// A key was given and refused; the reason.
    Refused(String),
}

/// Where a licence stands at a moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    Unlicensed,
    Valid {
        expires: DateTime<Utc>,
    },
    /// Within [`WARNING_DAYS`] of expiry.
    ExpiresSoon {
        expires: DateTime<Utc>,
        days: i64,
    },
    /// Expired; settings stay writable until `read_only_from`.
    Grace {
        expired: DateTime<Utc>,
        read_only_from: DateTime<Utc>,
    },
    /// Expired and past its grace period.
    ReadOnly {
        expired: DateTime<Utc>,
    },
    Refused(String),
}

impl Licence {
    /// Verifies `License__Key`; a refused key is logged here with its reason (at ERROR: the
    /// portal keeps collecting data but its settings are read-only until the key is fixed).
    pub fn load(settings: &LicenseSettings) -> Licence {
        let Some(key) = &settings.key else { return Licence::Unlicensed };
        let Some(public) = &settings.public_key else {
            let why = "License__Key is set but this portal has no key to verify it with: set License__PublicKey \
                       (the Admin portal's licence page shows it)";
            tracing::error!("Licence key refused: {why}");
            return Licence::Refused(why.into());
        };
        match token::verify(key.expose_secret(), public) {
            Ok(claims) => Licence::Signed(claims),
            Err(e) => {
                tracing::error!(
                    "Licence key refused: {e}. Settings are read-only until a valid key is installed; data collection continues"
                );
                Licence::Refused(e.to_string())
            }
        }
    }

    pub fn claims(&self) -> Option<&Claims> {
        match self {
            Licence::Signed(c) => Some(c),
            _ => None,
        }
    }

    pub fn standing(&self, now: DateTime<Utc>) -> Standing {
        match self {
            Licence::Unlicensed => Standing::Unlicensed,
            Licence::Refused(why) => Standing::Refused(why.clone()),
            Licence::Signed(c) => standing(c.expires_at(), c.grace_days, now),
        }
    }

    /// The limits in force (none when unlicensed or refused: a refused key makes settings
    /// read-only instead).
    pub fn limits(&self) -> Limits {
        self.claims().map(|c| c.limits).unwrap_or_default()
    }
}

impl Licence {
    /// Sets the licence gauges of /metrics (README "Metrics"): where it stands at `now` and, for
    /// a verified key, its customer, expiry, read-only date and limits, for the operator who
    /// bills on them. The key is read once at startup, so only the standing ever changes.
    pub fn publish(&self, now: DateTime<Utc>) {
        let current = self.standing(now).label();
        for label in Standing::LABELS {
            metrics::gauge!("tau_portal_licence_state", "state" => label).set(if label == current { 1.0 } else { 0.0 });
        }
        let Some(c) = self.claims() else { return };
        metrics::gauge!("tau_portal_licence_info", "customer" => c.customer_code.clone()).set(1.0);
        metrics::gauge!("tau_portal_licence_expiry_timestamp_seconds").set(c.exp as f64);
        let read_only = read_only_from(c.expires_at(), c.grace_days);
        metrics::gauge!("tau_portal_licence_read_only_timestamp_seconds").set(read_only.timestamp() as f64);
        for (resource, limit) in [("sites", c.limits.sites), ("devices", c.limits.devices), ("users", c.limits.users)] {
            if let Some(limit) = limit {
                metrics::gauge!("tau_portal_licence_limit", "resource" => resource).set(f64::from(limit));
            }
        }
    }
}

/// When settings of a licence expiring at `expires` with `grace_days` become read-only.
fn read_only_from(expires: DateTime<Utc>, grace_days: u32) -> DateTime<Utc> {
    expires + Duration::days(i64::from(grace_days))
}

/// Where a licence expiring at `expires` with `grace_days` stands at `now`.
pub fn standing(expires: DateTime<Utc>, grace_days: u32, now: DateTime<Utc>) -> Standing {
    let read_only_from = read_only_from(expires, grace_days);
    if now >= read_only_from {
        Standing::ReadOnly { expired: expires }
    } else if now >= expires {
        Standing::Grace { expired: expires, read_only_from }
    } else if expires - now <= Duration::days(WARNING_DAYS) {
        // Whole days left, rounded up: "expires in 1 day" until the last second.
        let days = ((expires - now).num_seconds() + 86_399) / 86_400;
        Standing::ExpiresSoon { expires, days }
    } else {
        Standing::Valid { expires }
    }
}

fn date(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

impl Standing {
    /// Settings may not change.
    pub fn read_only(&self) -> bool {
        matches!(self, Standing::ReadOnly { .. } | Standing::Refused(_))
    }

    /// The label of the `tau_portal_licence_state` metric.
    pub fn label(&self) -> &'static str {
        match self {
            Standing::Unlicensed => "unlicensed",
            Standing::Valid { .. } => "valid",
            Standing::ExpiresSoon { .. } => "expires_soon",
            Standing::Grace { .. } => "grace",
            Standing::ReadOnly { .. } => "read_only",
            Standing::Refused(_) => "refused",
        }
    }

    pub const LABELS: [&'static str; 6] = ["unlicensed", "valid", "expires_soon", "grace", "read_only", "refused"];

    /// What admins are told on every page (`None`: nothing to say).
    pub fn banner(&self) -> Option<String> {
        match self {
            Standing::Unlicensed | Standing::Valid { .. } => None,
            Standing::ExpiresSoon { expires, days } => Some(format!(
                "The licence of this portal expires in {days} day{} ({}). Ask your provider for a renewed licence key.",
                if *days == 1 { "" } else { "s" },
                date(*expires)
            )),
            Standing::Grace { expired, read_only_from } => Some(format!(
                "The licence of this portal expired on {}. Settings become read-only on {} unless a renewed licence \
                 key is installed; data collection continues either way.",
                date(*expired),
                date(*read_only_from)
            )),
            Standing::ReadOnly { expired } => Some(format!(
                "The licence of this portal expired on {}: settings are read-only until a renewed licence key is \
                 installed. Readings are still collected and stored.",
                date(*expired)
            )),
            Standing::Refused(why) => Some(format!(
                "The licence key of this portal was refused ({why}). Settings are read-only until a valid key is \
                 installed; readings are still collected and stored."
            )),
        }
    }

    /// The log line for this standing (the daily reminder), with its level: `None` when all is well.
    fn log_line(&self) -> Option<(tracing::Level, String)> {
        let line = self.banner()?;
        let level = if self.read_only() { tracing::Level::ERROR } else { tracing::Level::WARN };
        Some((level, line))
    }
}

/// Logs the licence's standing at startup and then once a day (and at every change of standing),
/// so an operator's log search finds the warning well before the licence runs out; keeps the
/// licence gauges of /metrics current every minute.
pub async fn watch(
    licence: std::sync::Arc<Licence>,
    clock: crate::clock::Clock,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut last: Option<(&'static str, DateTime<Utc>)> = None;
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let now = clock.now();
        licence.publish(now);
        let standing = licence.standing(now);
        let due = match last {
            Some((label, at)) => label != standing.label() || now - at >= Duration::days(1),
            None => true,
        };
        if !due {
            continue;
        }
        last = Some((standing.label(), now));
        match (standing.log_line(), &*licence) {
            (Some((tracing::Level::ERROR, line)), _) => tracing::error!(state = standing.label(), "{line}"),
            (Some((_, line)), _) => tracing::warn!(state = standing.label(), "{line}"),
            (None, Licence::Signed(c)) => tracing::info!(
                customer = %c.customer_code,
                expires = %date(c.expires_at()),
                "Licence for {} ({}) valid until {}",
                c.company,
                c.customer_code,
                date(c.expires_at())
            ),
            (None, _) => tracing::info!("No licence key (License__Key): this portal runs unlicensed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use proptest::prelude::*;

    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_licence_warns_then_has_its_grace_then_is_read_only() {
        let expires = at("2027-01-31T00:00:00Z");
        assert_eq!(standing(expires, 14, at("2026-12-01T00:00:00Z")), Standing::Valid { expires });
        let soon = standing(expires, 14, at("2027-01-01T00:00:00Z"));
        assert_eq!(soon, Standing::ExpiresSoon { expires, days: 30 });
        assert!(soon.banner().unwrap().contains("expires in 30 days (2027-01-31 00:00 UTC)"));
        let last = standing(expires, 14, at("2027-01-30T23:59:59Z"));
        assert_eq!(last, Standing::ExpiresSoon { expires, days: 1 });
        assert!(last.banner().unwrap().contains("expires in 1 day "));
        let grace = standing(expires, 14, expires);
        assert_eq!(grace, Standing::Grace { expired: expires, read_only_from: at("2027-02-14T00:00:00Z") });
        assert!(!grace.read_only() && grace.banner().unwrap().contains("read-only on 2027-02-14"));
        let over = standing(expires, 14, at("2027-02-14T00:00:00Z"));
        assert!(over.read_only() && over.banner().unwrap().contains("Readings are still collected"));
        assert_eq!(standing(expires, 0, expires), Standing::ReadOnly { expired: expires }, "no grace");
    }

    #[test]
    fn unlicensed_and_refused_portals() {
        assert_eq!(Licence::Unlicensed.standing(Utc::now()).banner(), None);
        assert!(!Licence::Unlicensed.standing(Utc::now()).read_only());
        let refused = Licence::Refused("bad signature".into()).standing(Utc::now());
        assert!(refused.read_only() && refused.banner().unwrap().contains("bad signature"));
    }

    proptest! {
        /// Time only ever moves a licence forward: valid → expires soon → grace → read-only.
        #[test]
        fn standing_never_goes_back_in_time(a in 0i64..100_000_000, b in 0i64..100_000_000, grace in 0u32..60) {
            let expires = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
            let (t1, t2) = (Utc.timestamp_opt(1_750_000_000 + a.min(b), 0).unwrap(), Utc.timestamp_opt(1_750_000_000 + a.max(b), 0).unwrap());
            let rank = |s: &Standing| Standing::LABELS.iter().position(|l| *l == s.label()).unwrap();
            prop_assert!(rank(&standing(expires, grace, t1)) <= rank(&standing(expires, grace, t2)));
        }
    }
}
