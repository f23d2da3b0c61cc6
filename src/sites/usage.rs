//! The inventory an operator bills on, for /metrics: devices by state (the status their pages
//! show) and source, and sites by the state of their devices. Every combination is reported,
//! zeros included, so a series never vanishes from one scrape to the next.

use chrono::{DateTime, Utc};

use super::db::{self, DeviceStateRow};
use super::forms::SOURCES;
use super::readings::{Status, status};

/// A site's state, from its enabled devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiteState {
    /// Every enabled device is online.
    Online,
    /// Some enabled devices are online, some are not.
    Degraded,
    /// No enabled device is online (offline, failing or without readings yet).
    Offline,
    /// No enabled devices.
    Empty,
}

impl SiteState {
    pub const ALL: [SiteState; 4] = [SiteState::Online, SiteState::Degraded, SiteState::Offline, SiteState::Empty];

    /// The `state` label of `tau_portal_sites`.
    pub fn key(self) -> &'static str {
        match self {
            SiteState::Online => "online",
            SiteState::Degraded => "degraded",
            SiteState::Offline => "offline",
            SiteState::Empty => "empty",
        }
    }
}

/// The state of a site whose devices have these statuses.
pub fn site_state<'a>(statuses: impl IntoIterator<Item = &'a Status>) -> SiteState {
    let (mut enabled, mut online) = (0usize, 0usize);
    for s in statuses {
        if *s != Status::Disabled {
            enabled += 1;
            online += usize::from(*s == Status::Online);
        }
    }
    match (enabled, online) {
        (0, _) => SiteState::Empty,
        (e, o) if o == e => SiteState::Online,
        (_, 0) => SiteState::Offline,
        _ => SiteState::Degraded,
    }
}

pub struct Inventory {
    /// (state, source, devices) for every device state and source.
    pub devices: Vec<(&'static str, &'static str, i64)>,
    /// (state, sites) for every site state.
    pub sites: Vec<(&'static str, i64)>,
}

/// Counts `devices` by state and source, and `sites` by the state of their devices, at `now`.
pub fn tally(sites: &[i32], devices: &[DeviceStateRow], now: DateTime<Utc>) -> Inventory {
    let statuses: Vec<(i32, &str, Status)> = devices
        .iter()
        .map(|d| {
            let s = status(
                d.enabled,
                d.last_reading_at,
                d.last_error_at,
                d.consecutive_failures,
                d.poll_interval_seconds,
                now,
            );
            (d.site_id, d.source.as_str(), s)
        })
        .collect();
    let mut by_device = Vec::new();
    for state in Status::KEYS {
        for (source, _) in SOURCES {
            let n = statuses.iter().filter(|(_, src, s)| *src == source && s.key() == state).count();
            by_device.push((state, source, n as i64));
        }
    }
    let site_states: Vec<SiteState> = sites
        .iter()
        .map(|site| site_state(statuses.iter().filter(|(id, _, _)| id == site).map(|(_, _, s)| s)))
        .collect();
    let by_site =
        SiteState::ALL.iter().map(|st| (st.key(), site_states.iter().filter(|s| *s == st).count() as i64)).collect();
    Inventory { devices: by_device, sites: by_site }
}

/// The inventory as it stands at `now`.
pub async fn read(pool: &sqlx::PgPool, now: DateTime<Utc>) -> Result<Inventory, sqlx::Error> {
    let (sites, devices) = db::inventory(pool).await?;
    Ok(tally(&sites, &devices, now))
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    fn device(
        site_id: i32,
        source: &str,
        enabled: bool,
        last_reading_s_ago: Option<i64>,
        now: DateTime<Utc>,
    ) -> DeviceStateRow {
        DeviceStateRow {
            site_id,
            source: source.into(),
            enabled,
            last_error_at: None,
            consecutive_failures: 0,
            poll_interval_seconds: 60,
            last_reading_at: last_reading_s_ago.map(|s| now - TimeDelta::seconds(s)),
        }
    }

    #[test]
    fn a_site_is_as_online_as_its_enabled_devices() {
        use Status::*;
        assert_eq!(site_state(&[]), SiteState::Empty);
        assert_eq!(site_state(&[Disabled]), SiteState::Empty, "only disabled devices");
        assert_eq!(site_state(&[Online, Disabled]), SiteState::Online);
        assert_eq!(site_state(&[Online, Offline]), SiteState::Degraded);
        assert_eq!(site_state(&[Failing, NoReadings]), SiteState::Offline);
    }

    #[test]
    fn every_state_and_source_is_counted_zeros_included() {
        let now = DateTime::parse_from_rfc3339("2026-12-02T12:00:00Z").unwrap().to_utc();
        let devices = [
            device(1, "push", true, Some(10), now),
            device(1, "modbus-tcp", true, Some(3600), now),
            device(2, "mqtt", true, None, now),
            device(2, "mqtt", false, Some(10), now),
        ];
        let inv = tally(&[1, 2, 3], &devices, now);
        let n = |state: &str, source: &str| inv.devices.iter().find(|d| d.0 == state && d.1 == source).unwrap().2;
        assert_eq!(
            (n("online", "push"), n("offline", "modbus-tcp"), n("no_readings", "mqtt"), n("disabled", "mqtt")),
            (1, 1, 1, 1)
        );
        assert_eq!(inv.devices.len(), Status::KEYS.len() * SOURCES.len());
        assert_eq!(inv.devices.iter().map(|d| d.2).sum::<i64>(), 4);
        assert_eq!(inv.sites, vec![("online", 0), ("degraded", 1), ("offline", 1), ("empty", 1)]);
    }
}
