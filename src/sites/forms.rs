//! The site and device forms: what the browser sends (kept as typed, to show it again next to
//! its errors) and its validation into the values stored.

use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::Deserialize;

use super::db::{DeviceFields, DeviceRow, SiteFields, SiteRow};
use super::hierarchy::{MAIN, ROLES, SUB};
use crate::error::FieldErrors;
use crate::tariffs::model::{DemandUnit, Nmd};

pub const DUPLICATE_SITE: &str = "A site with this name already exists.";
pub const DUPLICATE_EXTERNAL_ID: &str = "A device with this external ID already exists.";

/// `(value, label)` of the meter models and data sources the database accepts.
pub const MODELS: [(&str, &str); 3] =
    [("acuvim-ii", "Acuvim II"), ("acuvim-l", "Acuvim L"), ("generic", "Generic (pushed data)")];
pub const SOURCES: [(&str, &str); 3] = [
    ("modbus-tcp", "Modbus TCP (the portal polls the meter)"),
    ("push", "Push (readings arrive via the ingest API)"),
    ("mqtt", "MQTT (the device publishes to the portal's broker with its own credentials)"),
];
pub const MODBUS_TCP: &str = "modbus-tcp";
pub const MQTT: &str = "mqtt";

pub fn model_label(model: &str) -> &str {
    MODELS.iter().find(|(v, _)| *v == model).map_or(model, |(_, l)| l)
}

fn length_error(value: &str, max: usize) -> Option<String> {
    (value.chars().count() > max).then(|| format!("Use at most {max} characters."))
}

fn name_error(name: &str) -> Option<String> {
    (name.is_empty() || name.chars().count() > 100).then(|| "Enter a name of 1 to 100 characters.".to_string())
}

// ---------------------------------------------------------------- sites

#[derive(Deserialize, Default)]
pub struct SiteForm {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub time_zone: String,
    #[serde(default)]
    pub notes: String,
    /// The notified maximum demand (empty: none) and its unit.
    #[serde(default)]
    pub nmd: String,
    #[serde(default)]
    pub nmd_unit: String,
    /// Empty: 1 (the calendar month).
    #[serde(default)]
    pub meter_read_day: String,
}

pub struct ValidSite {
    pub name: String,
    pub address: String,
    pub time_zone: Tz,
    pub notes: String,
    pub nmd: Option<Nmd>,
    pub meter_read_day: i16,
}

impl ValidSite {
    pub fn fields(&self) -> SiteFields<'_> {
        SiteFields {
            name: &self.name,
            address: &self.address,
            time_zone: self.time_zone.name(),
            notes: &self.notes,
            nmd: self.nmd,
            meter_read_day: self.meter_read_day,
        }
    }
}

/// The largest NMD the column holds (`numeric(12, 3)`).
const NMD_MAX: Decimal = Decimal::from_parts(999_999_999, 0, 0, false, 0);

/// The NMD field and its unit: empty is none; else a number above 0 with at most 3 decimals.
fn parse_nmd(raw: &str, unit: &str) -> Result<Option<Nmd>, (&'static str, String)> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    let Some(unit) = DemandUnit::parse_nmd(unit.trim()) else {
        return Err(("nmd_unit", format!("“{unit}” is not a unit of demand: choose kVA or kW.")));
    };
    let bad = |why: &str| -> Result<Option<Nmd>, (&'static str, String)> {
        Err(("nmd", format!("Notified maximum demand: “{raw}” {why}")))
    };
    match raw.parse::<Decimal>() {
        Err(_) => bad("is not a number; use a point for decimals, e.g. 180 or 180.5."),
        Ok(v) if v <= Decimal::ZERO => bad("must be more than 0 (leave it empty for none)."),
        Ok(v) if v > NMD_MAX => bad("is more than 999,999,999."),
        Ok(v) if v.normalize().scale() > 3 => bad("has more than 3 decimals."),
        Ok(v) => Ok(Some(Nmd { value: v.normalize(), unit })),
    }
}

impl From<&SiteRow> for SiteForm {
    fn from(s: &SiteRow) -> Self {
        SiteForm {
            name: s.name.clone(),
            address: s.address.clone(),
            time_zone: s.time_zone.clone(),
            notes: s.notes.clone(),
            nmd: s.notified_max_demand.map(|d| d.normalize().to_string()).unwrap_or_default(),
            nmd_unit: s.notified_max_demand_unit.clone().unwrap_or_else(|| DemandUnit::KVA.label().into()),
            meter_read_day: s.meter_read_day.to_string(),
        }
    }
}

/// The meter-read day: a day of the month from 1 to 28 (every month has it); empty is 1.
pub fn parse_read_day(raw: &str) -> Result<i16, String> {
    match raw.trim() {
        "" => Ok(1),
        raw => raw.parse::<i16>().ok().filter(|d| (1..=28).contains(d)).ok_or_else(|| {
            format!("Meter-read day: “{raw}” is not a day from 1 to 28 (1: bills follow the calendar month).")
        }),
    }
}

/// An IANA zone name, case-insensitively (`africa/johannesburg` is stored as `Africa/Johannesburg`).
pub fn parse_time_zone(raw: &str) -> Result<Tz, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err("Enter a time zone, e.g. Africa/Johannesburg.".into());
    }
    raw.parse::<Tz>()
        .ok()
        .or_else(|| chrono_tz::TZ_VARIANTS.iter().copied().find(|tz| tz.name().eq_ignore_ascii_case(raw)))
        .ok_or_else(|| {
            format!(
                "{raw} is not an IANA time zone. Use a name from the list, e.g. Africa/Johannesburg or Europe/London."
            )
        })
}

impl SiteForm {
    pub fn validate(&self) -> Result<ValidSite, FieldErrors> {
        let name = self.name.trim().to_string();
        let address = self.address.trim().to_string();
        let notes = self.notes.trim().to_string();
        let mut e = FieldErrors::default();
        e.check("name", name_error(&name));
        e.check("address", length_error(&address, 200));
        e.check("notes", length_error(&notes, 2000));
        let nmd = parse_nmd(&self.nmd, &self.nmd_unit).unwrap_or_else(|(field, message)| {
            e.add(field, message);
            None
        });
        let meter_read_day = parse_read_day(&self.meter_read_day);
        e.check("meter_read_day", meter_read_day.as_ref().err().cloned());
        match (parse_time_zone(&self.time_zone), meter_read_day) {
            (Ok(time_zone), Ok(meter_read_day)) => {
                e.or_ok(ValidSite { name, address, time_zone, notes, nmd, meter_read_day })
            }
            (Err(message), _) => {
                e.add("time_zone", message);
                Err(e)
            }
            (Ok(_), Err(_)) => Err(e),
        }
    }
}

// ---------------------------------------------------------------- devices

#[derive(Deserialize)]
pub struct DeviceForm {
    #[serde(default)]
    pub site_id: String,
    #[serde(default)]
    pub external_id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub modbus_host: String,
    #[serde(default)]
    pub modbus_port: String,
    #[serde(default)]
    pub modbus_unit_id: String,
    #[serde(default)]
    pub poll_interval_seconds: String,
    /// A checkbox: present when ticked.
    pub enabled: Option<String>,
    #[serde(default)]
    pub role: String,
    /// The parent device's id (a sub-meter's only).
    #[serde(default)]
    pub parent_id: String,
}

impl DeviceForm {
    /// A new device's form: the defaults of the table, on `site_id`.
    pub fn new_on(site_id: i32) -> DeviceForm {
        DeviceForm {
            site_id: site_id.to_string(),
            external_id: String::new(),
            name: String::new(),
            model: "acuvim-ii".into(),
            source: MODBUS_TCP.into(),
            modbus_host: String::new(),
            modbus_port: "502".into(),
            modbus_unit_id: "1".into(),
            poll_interval_seconds: "60".into(),
            enabled: Some("on".into()),
            role: MAIN.into(),
            parent_id: String::new(),
        }
    }
}

impl From<&DeviceRow> for DeviceForm {
    fn from(d: &DeviceRow) -> Self {
        DeviceForm {
            site_id: d.site_id.to_string(),
            external_id: d.external_id.clone(),
            name: d.name.clone(),
            model: d.model.clone(),
            source: d.source.clone(),
            modbus_host: d.modbus_host.clone().unwrap_or_default(),
            modbus_port: d.modbus_port.to_string(),
            modbus_unit_id: d.modbus_unit_id.to_string(),
            poll_interval_seconds: d.poll_interval_seconds.to_string(),
            enabled: d.enabled.then(|| "on".into()),
            role: d.role.clone(),
            parent_id: d.parent_id.map(|p| p.to_string()).unwrap_or_default(),
        }
    }
}

pub struct ValidDevice {
    pub site_id: i32,
    pub external_id: String,
    pub name: String,
    pub model: &'static str,
    pub source: &'static str,
    pub modbus_host: Option<String>,
    pub modbus_port: i32,
    pub modbus_unit_id: i16,
    pub poll_interval_seconds: i32,
    pub enabled: bool,
    pub role: &'static str,
    pub parent_id: Option<i32>,
}

impl ValidDevice {
    pub fn fields(&self) -> DeviceFields<'_> {
        DeviceFields {
            site_id: self.site_id,
            external_id: &self.external_id,
            name: &self.name,
            model: self.model,
            source: self.source,
            modbus_host: self.modbus_host.as_deref(),
            modbus_port: self.modbus_port,
            modbus_unit_id: self.modbus_unit_id,
            poll_interval_seconds: self.poll_interval_seconds,
            enabled: self.enabled,
            role: self.role,
            parent_id: self.parent_id,
        }
    }
}

/// A whole number in `min..=max`; an empty field takes `default`.
fn number(raw: &str, (default, min, max): (i32, i32, i32), field: &str, error: &str, e: &mut FieldErrors) -> i32 {
    let raw = raw.trim();
    if raw.is_empty() {
        return default;
    }
    match raw.parse::<i32>() {
        Ok(n) if (min..=max).contains(&n) => n,
        _ => {
            e.add(field, error);
            default
        }
    }
}

fn choice(raw: &str, choices: &[(&'static str, &str)], field: &str, error: &str, e: &mut FieldErrors) -> &'static str {
    match choices.iter().find(|(v, _)| *v == raw.trim()) {
        Some((v, _)) => v,
        None => {
            e.add(field, error);
            ""
        }
    }
}

impl DeviceForm {
    pub fn validate(&self) -> Result<ValidDevice, FieldErrors> {
        let mut e = FieldErrors::default();
        let site_id = self.site_id.trim().parse::<i32>().unwrap_or_else(|_| {
            e.add("site_id", "Choose the site this device belongs to.");
            0
        });
        let external_id = self.external_id.trim().to_string();
        e.check(
            "external_id",
            if external_id.is_empty() {
                Some("Enter the external ID its readings arrive with (e.g. the meter's serial number).".into())
            } else if external_id.chars().any(char::is_whitespace) {
                Some("An external ID cannot contain spaces.".into())
            } else {
                length_error(&external_id, 100)
            },
        );
        let name = self.name.trim().to_string();
        e.check("name", name_error(&name));
        let model = choice(&self.model, &MODELS, "model", "Choose a meter model.", &mut e);
        let source = choice(&self.source, &SOURCES, "source", "Choose how its readings arrive.", &mut e);
        if source == MQTT {
            // The first message for a field is kept: an empty or spaced ID says so first.
            e.check("external_id", crate::mqtt::topic_safe(&external_id).err());
        }
        let host = self.modbus_host.trim().to_string();
        e.check(
            "modbus_host",
            if host.is_empty() {
                (source == MODBUS_TCP).then(|| {
                    "Enter the meter's (or its gateway's) host name or IP address: Modbus TCP devices are polled there."
                        .to_string()
                })
            } else if host.chars().any(char::is_whitespace) {
                Some("A host name cannot contain spaces.".into())
            } else {
                length_error(&host, 253)
            },
        );
        let modbus_port =
            number(&self.modbus_port, (502, 1, 65535), "modbus_port", "Enter a port from 1 to 65535.", &mut e);
        let unit_id =
            number(&self.modbus_unit_id, (1, 1, 247), "modbus_unit_id", "Enter a unit id from 1 to 247.", &mut e);
        let poll_interval_seconds = number(
            &self.poll_interval_seconds,
            (60, 1, 3600),
            "poll_interval_seconds",
            "Enter an interval from 1 to 3600 seconds.",
            &mut e,
        );
        // An empty role is a form from before roles existed (or a client that leaves it out): main.
        let role = if self.role.trim().is_empty() {
            MAIN
        } else {
            choice(&self.role, &ROLES, "role", "Choose the meter's role at its site.", &mut e)
        };
        let parent_id = match (role, self.parent_id.trim()) {
            (SUB, "") => {
                e.add("parent_id", "Choose the meter this sub-meter is part of.");
                None
            }
            (SUB, raw) => raw.parse::<i32>().map(Some).unwrap_or_else(|_| {
                e.add("parent_id", "Choose the meter this sub-meter is part of from the list.");
                None
            }),
            // Only a sub-meter has a parent: another role ignores a parent left selected.
            _ => None,
        };
        e.or_ok(ValidDevice {
            site_id,
            external_id,
            name,
            model,
            source,
            modbus_host: (!host.is_empty()).then_some(host),
            modbus_port,
            modbus_unit_id: unit_id as i16,
            poll_interval_seconds,
            enabled: self.enabled.is_some(),
            role,
            parent_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> DeviceForm {
        DeviceForm {
            external_id: " MTR-1 ".into(),
            name: "Main".into(),
            modbus_host: "10.0.0.5".into(),
            ..DeviceForm::new_on(3)
        }
    }

    #[test]
    fn a_valid_device_is_trimmed_and_takes_defaults_for_empty_numbers() {
        let form = DeviceForm { modbus_port: "".into(), modbus_unit_id: " ".into(), enabled: None, ..device() };
        let d = form.validate().ok().unwrap();
        assert_eq!((d.site_id, d.external_id.as_str(), d.modbus_port, d.modbus_unit_id), (3, "MTR-1", 502, 1));
        assert_eq!((d.poll_interval_seconds, d.enabled, d.modbus_host.as_deref()), (60, false, Some("10.0.0.5")));
    }

    #[test]
    fn device_limits_are_enforced() {
        for (port, unit, interval, bad) in [
            ("0", "1", "60", "port"),
            ("65536", "1", "60", "port"),
            ("502", "0", "60", "unit"),
            ("502", "248", "60", "unit"),
        ]
        .into_iter()
        .chain([("502", "1", "0", "interval"), ("502", "1", "3601", "interval"), ("x", "1", "60", "port")])
        {
            let form = DeviceForm {
                modbus_port: port.into(),
                modbus_unit_id: unit.into(),
                poll_interval_seconds: interval.into(),
                ..device()
            };
            let e = form.validate().err().unwrap();
            let got = [
                ("port", e.get("modbus_port")),
                ("unit", e.get("modbus_unit_id")),
                ("interval", e.get("poll_interval_seconds")),
            ]
            .into_iter()
            .filter(|(_, e)| e.is_some())
            .map(|(n, _)| n)
            .collect::<Vec<_>>();
            assert_eq!(got, [bad], "{port} {unit} {interval}");
        }
        for (port, unit, interval) in [("1", "1", "1"), ("65535", "247", "3600")] {
            let form = DeviceForm {
                modbus_port: port.into(),
                modbus_unit_id: unit.into(),
                poll_interval_seconds: interval.into(),
                ..device()
            };
            assert!(form.validate().is_ok(), "{port} {unit} {interval} are allowed");
        }
    }

    #[test]
    fn host_is_required_for_modbus_tcp_only() {
        let e = DeviceForm { modbus_host: " ".into(), ..device() }.validate().err().unwrap();
        assert!(e.get("modbus_host").unwrap().starts_with("Enter the meter's"));
        let d = DeviceForm { modbus_host: "".into(), source: "push".into(), ..device() }.validate().ok().unwrap();
        assert_eq!(d.modbus_host, None);
    }

    #[test]
    fn external_id_has_no_whitespace_and_at_most_100_characters() {
        let e = DeviceForm { external_id: "MTR 1".into(), ..device() }.validate().err().unwrap();
        assert_eq!(e.get("external_id"), Some("An external ID cannot contain spaces."));
        assert!(DeviceForm { external_id: "x".repeat(101), ..device() }.validate().is_err());
        assert!(DeviceForm { external_id: "é".repeat(100), ..device() }.validate().is_ok());
        let e = DeviceForm { model: "acuvim-x".into(), source: "".into(), ..device() }.validate().err().unwrap();
        assert!(e.get("model").is_some() && e.get("source").is_some());
    }

    #[test]
    fn a_sub_meter_needs_a_parent_and_other_roles_drop_one() {
        let d = device().validate().ok().unwrap();
        assert_eq!((d.role, d.parent_id), (MAIN, None), "the default role is main");
        let e = DeviceForm { role: SUB.into(), ..device() }.validate().err().unwrap();
        assert_eq!(e.get("parent_id"), Some("Choose the meter this sub-meter is part of."));
        let d = DeviceForm { role: SUB.into(), parent_id: " 12 ".into(), ..device() }.validate().ok().unwrap();
        assert_eq!((d.role, d.parent_id), (SUB, Some(12)));
        let d = DeviceForm { role: "check".into(), parent_id: "12".into(), ..device() }.validate().ok().unwrap();
        assert_eq!((d.role, d.parent_id), ("check", None));
        let e = DeviceForm { role: "incomer".into(), ..device() }.validate().err().unwrap();
        assert_eq!(e.get("role"), Some("Choose the meter's role at its site."));
        let d = DeviceForm { role: "".into(), ..device() }.validate().ok().unwrap();
        assert_eq!(d.role, MAIN);
    }

    #[test]
    fn time_zones_are_iana_names_in_their_canonical_spelling() {
        assert_eq!(parse_time_zone(" africa/johannesburg ").unwrap(), chrono_tz::Africa::Johannesburg);
        assert_eq!(parse_time_zone("UTC").unwrap(), chrono_tz::UTC);
        assert!(parse_time_zone("Mars/Olympus").unwrap_err().starts_with("Mars/Olympus is not an IANA time zone"));
        assert!(parse_time_zone("").is_err() && parse_time_zone("+02:00").is_err());
    }

    #[test]
    fn site_names_are_trimmed_and_limited() {
        let site = |name: &str| SiteForm { name: name.into(), time_zone: "UTC".into(), ..Default::default() };
        assert_eq!(site("  Plant A ").validate().ok().unwrap().name, "Plant A");
        assert!(site("   ").validate().err().unwrap().get("name").is_some());
        assert!(site(&"n".repeat(101)).validate().is_err());
        assert!(site(&"n".repeat(100)).validate().is_ok());
    }

    #[test]
    fn the_nmd_is_optional_positive_and_names_its_field() {
        let site = |nmd: &str, unit: &str| SiteForm {
            name: "Plant".into(),
            time_zone: "UTC".into(),
            nmd: nmd.into(),
            nmd_unit: unit.into(),
            ..Default::default()
        };
        assert_eq!(site(" ", "kVA").validate().ok().unwrap().nmd, None);
        let nmd = site(" 180.50 ", "kW").validate().ok().unwrap().nmd.unwrap();
        assert_eq!(
            (nmd.value, nmd.unit, nmd.to_string()),
            ("180.5".parse().unwrap(), DemandUnit::KW, "180.5 kW".into())
        );
        for (raw, unit, field, says) in [
            ("abc", "kVA", "nmd", "“abc” is not a number"),
            ("0", "kVA", "nmd", "must be more than 0"),
            ("-5", "kVA", "nmd", "must be more than 0"),
            ("1.2345", "kVA", "nmd", "more than 3 decimals"),
            ("1000000000", "kVA", "nmd", "more than 999,999,999"),
            ("180", "MW", "nmd_unit", "“MW” is not a unit of demand"),
        ] {
            let errors = site(raw, unit).validate().err().unwrap();
            let message = errors.get(field).unwrap_or_else(|| panic!("{raw} {unit}: no error on {field}"));
            assert!(message.contains(says), "{raw} {unit}: {message}");
        }
        assert!(
            site("abc", "kVA").validate().err().unwrap().get("nmd").unwrap().starts_with("Notified maximum demand")
        );
    }
}
