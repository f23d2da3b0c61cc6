//! The recipient list form and its validation.

use chrono::NaiveTime;
use chrono_tz::Tz;
use serde::Deserialize;

use super::db::{ListFields, ListRow};
use crate::alarms::rules::Severity;
use crate::error::FieldErrors;
use crate::sites::parse_time_zone;

pub const DUPLICATE_LIST: &str = "A recipient list with this name already exists.";
/// More addresses than a list needs are a mistake (or a mailing list's job).
const MAX_EMAILS: usize = 50;

#[derive(Deserialize, Default)]
pub struct ListForm {
    #[serde(default)]
    pub name: String,
    /// One address per line, or separated by commas.
    #[serde(default)]
    pub emails: String,
    #[serde(default)]
    pub webhook_url: String,
    #[serde(default)]
    pub min_severity: String,
    #[serde(default)]
    pub quiet_from: String,
    #[serde(default)]
    pub quiet_until: String,
    #[serde(default)]
    pub time_zone: String,
    pub enabled: Option<String>,
}

impl From<&ListRow> for ListForm {
    fn from(l: &ListRow) -> Self {
        let hm = |t: Option<NaiveTime>| t.map(|t| t.format("%H:%M").to_string()).unwrap_or_default();
        ListForm {
            name: l.name.clone(),
            emails: l.emails.join("\n"),
            webhook_url: l.webhook_url.clone().unwrap_or_default(),
            min_severity: l.min_severity.clone(),
            quiet_from: hm(l.quiet_from),
            quiet_until: hm(l.quiet_until),
            time_zone: l.time_zone.clone(),
            enabled: l.enabled.then(|| "on".into()),
        }
    }
}

pub struct ValidList {
    pub name: String,
    pub emails: Vec<String>,
    pub webhook_url: Option<String>,
    pub min_severity: Severity,
    pub quiet: Option<(NaiveTime, NaiveTime)>,
    pub time_zone: Tz,
    pub enabled: bool,
}

impl ValidList {
    pub fn fields(&self) -> ListFields<'_> {
        ListFields {
            name: &self.name,
            emails: &self.emails,
            webhook_url: self.webhook_url.as_deref(),
            min_severity: self.min_severity.as_str(),
            quiet_from: self.quiet.map(|q| q.0),
            quiet_until: self.quiet.map(|q| q.1),
            time_zone: self.time_zone.name(),
            enabled: self.enabled,
        }
    }

    /// The audit log's record of the list (not its webhook secret).
    pub fn detail(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name, "emails": self.emails, "webhookUrl": self.webhook_url,
            "minSeverity": self.min_severity.as_str(), "quietHours": self.quiet.map(|(f, u)| format!("{f}-{u}")),
            "timeZone": self.time_zone.name(), "enabled": self.enabled,
        })
    }
}

fn time_of_day(raw: &str) -> Result<Option<NaiveTime>, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    NaiveTime::parse_from_str(raw, "%H:%M")
        .map(Some)
        .map_err(|_| format!("{raw} is not a time of day: use HH:MM, e.g. 22:00."))
}

impl ListForm {
    pub fn new_list(time_zone: &str) -> ListForm {
        ListForm {
            min_severity: Severity::Warning.as_str().into(),
            time_zone: time_zone.into(),
            enabled: Some("on".into()),
            ..Default::default()
        }
    }

    pub fn validate(&self) -> Result<ValidList, FieldErrors> {
        let mut e = FieldErrors::default();
        let name = self.name.trim().to_string();
        if name.is_empty() || name.chars().count() > 100 {
            e.add("name", "Enter a name of 1 to 100 characters.");
        }
        let mut emails = Vec::new();
        for raw in self.emails.split([',', '\n', ';']).map(str::trim).filter(|s| !s.is_empty()) {
            match raw.parse::<lettre::Address>() {
                Ok(_) if !emails.iter().any(|a: &String| a.eq_ignore_ascii_case(raw)) => emails.push(raw.to_string()),
                Ok(_) => {}
                Err(_) => e.add("emails", format!("{raw} is not an e-mail address.")),
            }
        }
        if emails.len() > MAX_EMAILS {
            e.add("emails", format!("Use at most {MAX_EMAILS} addresses (or a mailing list's address)."));
        }
        let webhook_url = match self.webhook_url.trim() {
            "" => None,
            raw => match url::Url::parse(raw) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(raw.to_string()),
                _ => {
                    e.add("webhook_url", format!("{raw} is not an http:// or https:// URL."));
                    None
                }
            },
        };
        if emails.is_empty() && webhook_url.is_none() && e.get("emails").is_none() && e.get("webhook_url").is_none() {
            e.add("emails", "Enter at least one e-mail address or a webhook URL.");
        }
        let min_severity = Severity::parse(&self.min_severity);
        if min_severity.is_none() {
            e.add("min_severity", "Choose the least severity this list hears about.");
        }
        let from = time_of_day(&self.quiet_from).unwrap_or_else(|m| {
            e.add("quiet_from", m);
            None
        });
        let until = time_of_day(&self.quiet_until).unwrap_or_else(|m| {
            e.add("quiet_until", m);
            None
        });
        let quiet = match (from, until) {
            (Some(f), Some(u)) if f == u => {
                e.add("quiet_until", "The quiet hours end when they start: enter a different time, or neither.");
                None
            }
            (Some(f), Some(u)) => Some((f, u)),
            (Some(_), None) if e.get("quiet_until").is_none() => {
                e.add("quiet_until", "Enter when the quiet hours end (or clear both times).");
                None
            }
            (None, Some(_)) if e.get("quiet_from").is_none() => {
                e.add("quiet_from", "Enter when the quiet hours start (or clear both times).");
                None
            }
            _ => None,
        };
        let time_zone = parse_time_zone(&self.time_zone).unwrap_or_else(|m| {
            e.add("time_zone", m);
            chrono_tz::UTC
        });
        match min_severity {
            Some(min_severity) => e.or_ok(ValidList {
                name,
                emails,
                webhook_url,
                min_severity,
                quiet,
                time_zone,
                enabled: self.enabled.is_some(),
            }),
            None => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form() -> ListForm {
        ListForm {
            name: "Facilities".into(),
            emails: "ops@example.com\nOPS@example.com, boss@example.com".into(),
            webhook_url: "https://hooks.example.com/tau".into(),
            min_severity: "major".into(),
            quiet_from: "22:00".into(),
            quiet_until: "06:00".into(),
            time_zone: "Africa/Johannesburg".into(),
            enabled: Some("on".into()),
        }
    }

    #[test]
    fn a_valid_list_keeps_each_address_once() {
        let l = form().validate().unwrap();
        assert_eq!(l.emails, ["ops@example.com", "boss@example.com"]);
        assert_eq!(l.quiet.map(|q| q.0.to_string()), Some("22:00:00".into()));
    }

    #[test]
    fn each_field_says_what_is_wrong() {
        let errors = ListForm {
            emails: "ops@example.com, not an address".into(),
            webhook_url: "ftp://x".into(),
            quiet_from: "25:00".into(),
            quiet_until: "".into(),
            time_zone: "Mars/Olympus".into(),
            ..form()
        }
        .validate()
        .err()
        .unwrap();
        assert_eq!(errors.get("emails"), Some("not an address is not an e-mail address."));
        assert!(errors.get("webhook_url").unwrap().contains("http:// or https://"));
        assert!(errors.get("quiet_from").unwrap().contains("HH:MM"));
        assert!(errors.get("time_zone").unwrap().contains("IANA"));
        let nobody = ListForm { emails: String::new(), webhook_url: String::new(), ..form() }.validate().err().unwrap();
        assert!(nobody.get("emails").unwrap().contains("at least one"));
        let half = ListForm { quiet_until: String::new(), ..form() }.validate().err().unwrap();
        assert!(half.get("quiet_until").unwrap().contains("end"));
    }
}
