//! What the poller learnt about a meter (`"MeterSettings"`, `"MeterIdentity"` and the blocks it
//! refuses, JSON the Modbus status writer stores), as the device page shows it. The view reads
//! only the fields it shows, in types of its own: sites does not depend on the poller's.

use chrono_tz::Tz;
use serde::Deserialize;

use super::db::DeviceRow;
use super::readings;

/// The meter's settings as stored (`modbus::registers::MeterSettings`, camelCase).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Settings {
    /// The wiring's name (`3LN`, `3LL`, …); absent when the meter reported a code the map does
    /// not know.
    wiring: Option<String>,
    pt1: u32,
    pt2: u16,
    ct1: u16,
    ct2: u16,
    primary_values: bool,
}

/// The meter's identity as stored (`modbus::registers::MeterIdentity`).
#[derive(Deserialize)]
struct Identity {
    manufacturer: Option<String>,
    model: Option<String>,
    serial: Option<String>,
    firmware: Option<String>,
}

/// What the poller learnt about the meter, as (label, text) rows.
pub fn facts(device: &DeviceRow, tz: Tz) -> Vec<(&'static str, String)> {
    let mut rows = Vec::new();
    if device.consecutive_failures > 0 {
        rows.push(("Failed polls", format!("{} in a row", device.consecutive_failures)));
    }
    let identity = device.meter_identity.clone().and_then(|j| serde_json::from_value::<Identity>(j).ok());
    if let Some(id) = identity {
        let name = [id.manufacturer, id.model].into_iter().flatten().collect::<Vec<_>>().join(" ");
        let mut text = if name.is_empty() { "unnamed".to_string() } else { name };
        if let Some(serial) = id.serial {
            text.push_str(&format!(", serial {serial}"));
        }
        if let Some(firmware) = id.firmware {
            text.push_str(&format!(", firmware {firmware}"));
        }
        rows.push(("Meter", text));
    }
    let settings = device.meter_settings.clone().and_then(|j| serde_json::from_value::<Settings>(j).ok());
    if let Some(s) = settings {
        let mode = if s.primary_values { "primary values" } else { "secondary values, scaled by PT and CT" };
        let mut text = format!(
            "PT {}/{} V, CT {}/{} A, wiring {}, {mode}",
            s.pt1,
            s.pt2,
            s.ct1,
            s.ct2,
            s.wiring.as_deref().unwrap_or("unknown")
        );
        if let Some(at) = device.meter_settings_at {
            text.push_str(&format!(" (read {})", readings::local_time(at, tz)));
        }
        rows.push(("Meter settings", text));
    }
    if !device.unsupported_blocks.is_empty() {
        rows.push(("Blocks not supported", device.unsupported_blocks.join(", ")));
    }
    rows
}
