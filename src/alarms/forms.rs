//! The rule form (kept as typed, to show it again next to its errors) and its validation into
//! the values stored; the acknowledge / clear comment.

use serde::Deserialize;

use super::db::{RuleFields, RuleRow};
use super::rules::{Direction, Severity, watched};
use crate::error::FieldErrors;

pub const COMMUNICATION_LOSS: &str = "communication-loss";
pub const THRESHOLD: &str = "threshold";
pub const DEMAND_LIMIT: &str = "demand-limit";
pub const MAX_DEMAND: &str = "max-demand";
pub const BUDGET: &str = "budget";
pub const DATA_GAP: &str = "data-gap";
pub const KINDS: [(&str, &str); 6] = [
    (COMMUNICATION_LOSS, "Communication loss (no reading for a number of poll intervals)"),
    (THRESHOLD, "Threshold (a quantity above or below a limit)"),
    (DEMAND_LIMIT, "Demand limit (a site's current demand window forecast above a limit)"),
    (MAX_DEMAND, "New maximum demand (a site's highest demand of the month so far, with its cost)"),
    (BUDGET, "Budget (a site's cost of the month, to date or projected, above a budget)"),
    (DATA_GAP, "Data gap (readings missing, energy estimated by the rollup)"),
];
/// Kinds that watch sites (every site, or one), not devices.
pub const SITE_KINDS: [&str; 3] = [DEMAND_LIMIT, MAX_DEMAND, BUDGET];
pub const SITE_SCOPE: &str = "This kind of rule watches sites: choose every site or one site.";
pub const DUPLICATE_RULE: &str = "A rule with this name already exists.";
pub const SCOPE_GONE: &str = "This site or device no longer exists; choose another scope.";
pub const COMMENT_MAX: usize = 500;

pub fn kind_label(kind: &str) -> &str {
    KINDS.iter().find(|(k, _)| *k == kind).map_or(kind, |(_, l)| l.split(" (").next().unwrap_or(l))
}

#[derive(Deserialize, Default)]
pub struct RuleForm {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub severity: String,
    /// A checkbox: present when ticked.
    pub enabled: Option<String>,
    /// `all`, `site:<id>` or `device:<id>`.
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    pub missed_polls: String,
    #[serde(default)]
    pub quantity: String,
    #[serde(default)]
    pub direction: String,
    #[serde(default)]
    pub limit: String,
    #[serde(default)]
    pub nominal: String,
    #[serde(default)]
    pub hysteresis: String,
    #[serde(default)]
    pub hold_seconds: String,
    /// Demand limit: `kW` or `kVA`.
    #[serde(default)]
    pub unit: String,
    /// Budget: `to-date` or `projected`.
    #[serde(default)]
    pub basis: String,
}

impl RuleForm {
    /// A new rule's form: communication loss for every device, as the seeded default.
    pub fn new_rule() -> RuleForm {
        RuleForm {
            kind: COMMUNICATION_LOSS.into(),
            severity: Severity::Major.as_str().into(),
            enabled: Some("on".into()),
            scope: "all".into(),
            missed_polls: "3".into(),
            direction: Direction::Above.as_str().into(),
            hysteresis: "0".into(),
            hold_seconds: "0".into(),
            unit: "kVA".into(),
            basis: "projected".into(),
            ..Default::default()
        }
    }
}

fn number_text(v: Option<f64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

impl From<&RuleRow> for RuleForm {
    fn from(r: &RuleRow) -> Self {
        let scope = match (r.site_id, r.device_id) {
            (_, Some(d)) => format!("device:{d}"),
            (Some(s), None) => format!("site:{s}"),
            (None, None) => "all".into(),
        };
        RuleForm {
            name: r.name.clone(),
            kind: r.kind.clone(),
            severity: r.severity.clone(),
            enabled: r.enabled.then(|| "on".into()),
            scope,
            missed_polls: r.missed_polls.map(|m| m.to_string()).unwrap_or_default(),
            quantity: r.quantity.clone().unwrap_or_default(),
            direction: r.direction.clone().unwrap_or_default(),
            limit: number_text(r.limit),
            nominal: number_text(r.nominal),
            hysteresis: r.hysteresis.to_string(),
            hold_seconds: r.hold_seconds.to_string(),
            unit: r.unit.clone().unwrap_or_default(),
            basis: r.basis.clone().unwrap_or_default(),
        }
    }
}

/// A validated rule.
pub struct ValidRule {
    pub name: String,
    pub kind: &'static str,
    pub severity: Severity,
    pub enabled: bool,
    pub site_id: Option<i32>,
    pub device_id: Option<i32>,
    pub missed_polls: Option<i32>,
    pub quantity: Option<&'static str>,
    pub direction: Option<Direction>,
    pub limit: Option<f64>,
    pub nominal: Option<f64>,
    pub hysteresis: f64,
    pub hold_seconds: i32,
    pub unit: Option<&'static str>,
    pub basis: Option<&'static str>,
}

impl ValidRule {
    pub fn fields(&self) -> RuleFields<'_> {
        RuleFields {
            name: &self.name,
            kind: self.kind,
            severity: self.severity.as_str(),
            enabled: self.enabled,
            site_id: self.site_id,
            device_id: self.device_id,
            missed_polls: self.missed_polls,
            quantity: self.quantity,
            direction: self.direction.map(Direction::as_str),
            limit: self.limit,
            nominal: self.nominal,
            hysteresis: self.hysteresis,
            hold_seconds: self.hold_seconds,
            unit: self.unit,
            basis: self.basis,
        }
    }

    /// The audit log's record of the rule.
    pub fn detail(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name, "kind": self.kind, "severity": self.severity.as_str(), "enabled": self.enabled,
            "siteId": self.site_id, "deviceId": self.device_id, "missedPolls": self.missed_polls,
            "quantity": self.quantity, "direction": self.direction.map(Direction::as_str), "limit": self.limit,
            "nominal": self.nominal, "hysteresis": self.hysteresis, "holdSeconds": self.hold_seconds,
            "unit": self.unit, "basis": self.basis,
        })
    }
}

/// A decimal number, or why not.
fn number(raw: &str) -> Result<Option<f64>, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    match raw.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Some(v)),
        _ => Err(format!("{raw} is not a number; use digits with a decimal point, e.g. 0.85.")),
    }
}

/// A whole number in `min..=max`, or why not.
fn whole(raw: &str, min: i32, max: i32, what: &str) -> Result<i32, String> {
    let raw = raw.trim();
    match raw.parse::<i32>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ if raw.is_empty() => Err(format!("Enter {what}, a whole number from {min} to {max}.")),
        _ => Err(format!("{raw} is not {what}: use a whole number from {min} to {max}.")),
    }
}

fn scope(raw: &str) -> Result<(Option<i32>, Option<i32>), String> {
    let invalid = || "Choose every device, a site or a device from the list.".to_string();
    match raw.trim() {
        "" | "all" => Ok((None, None)),
        other => {
            let (what, id) = other.split_once(':').ok_or_else(invalid)?;
            let id: i32 = id.parse().map_err(|_| invalid())?;
            match what {
                "site" => Ok((Some(id), None)),
                "device" => Ok((None, Some(id))),
                _ => Err(invalid()),
            }
        }
    }
}

impl RuleForm {
    pub fn validate(&self) -> Result<ValidRule, FieldErrors> {
        let mut e = FieldErrors::default();
        let name = self.name.trim().to_string();
        if name.is_empty() || name.chars().count() > 100 {
            e.add("name", "Enter a name of 1 to 100 characters.");
        }
        let kind = KINDS.iter().map(|(k, _)| *k).find(|k| *k == self.kind);
        if kind.is_none() {
            e.add("kind", "Choose the kind of rule.");
        }
        let severity = Severity::parse(&self.severity);
        if severity.is_none() {
            e.add("severity", "Choose a severity: critical, major, minor or warning.");
        }
        let (site_id, device_id) = scope(&self.scope).unwrap_or_else(|m| {
            e.add("scope", m);
            (None, None)
        });
        let hold_seconds = whole(&self.hold_seconds, 0, 86_400, "a hold time in seconds").unwrap_or_else(|m| {
            e.add("hold_seconds", m);
            0
        });
        let (mut missed_polls, mut quantity, mut direction, mut limit, mut nominal, mut hysteresis) =
            (None, None, None, None, None, 0.0);
        let (mut unit, mut basis) = (None, None);
        if kind.is_some_and(|k| SITE_KINDS.contains(&k)) && device_id.is_some() {
            e.add("scope", SITE_SCOPE);
        }
        // A positive limit (or none, when `optional`: a demand limit then is each site's NMD) and
        // a hysteresis of 0 or more, in the unit the rule names.
        let mut positive_limit = |e: &mut FieldErrors, what: &str, optional: bool| {
            match number(&self.limit) {
                Ok(Some(l)) if l > 0.0 => limit = Some(l),
                Ok(None) if optional => {}
                Ok(_) if optional => e.add(
                    "limit",
                    format!("Enter the {what}, a number greater than 0, or leave it empty for each site's NMD."),
                ),
                Ok(_) => e.add("limit", format!("Enter the {what}, a number greater than 0.")),
                Err(m) => e.add("limit", m),
            }
            match number(&self.hysteresis) {
                Ok(Some(h)) if h < 0.0 => e.add("hysteresis", "The hysteresis is 0 or more."),
                Ok(h) => hysteresis = h.unwrap_or(0.0),
                Err(m) => e.add("hysteresis", m),
            }
        };
        match kind {
            Some(COMMUNICATION_LOSS) => match whole(&self.missed_polls, 1, 1000, "a number of poll intervals") {
                Ok(n) => missed_polls = Some(n),
                Err(m) => e.add("missed_polls", m),
            },
            Some(DEMAND_LIMIT) => {
                unit = ["kW", "kVA"].into_iter().find(|u| *u == self.unit);
                if unit.is_none() {
                    e.add("unit", "Choose kW or kVA.");
                }
                positive_limit(&mut e, "demand limit", true);
            }
            Some(BUDGET) => {
                basis = ["to-date", "projected"].into_iter().find(|b| *b == self.basis);
                if basis.is_none() {
                    e.add("basis", "Choose the billing period to date or the projection to its end.");
                }
                positive_limit(&mut e, "budget", false);
            }
            Some(MAX_DEMAND | DATA_GAP) => {}
            Some(_) => {
                quantity = watched(&self.quantity).map(|w| w.key);
                if quantity.is_none() {
                    e.add("quantity", "Choose the quantity to watch.");
                }
                direction = Direction::parse(&self.direction);
                if direction.is_none() {
                    e.add("direction", "Choose above or below.");
                }
                match number(&self.nominal) {
                    Ok(Some(n)) if n <= 0.0 => {
                        e.add("nominal", "A nominal value is greater than 0 (or leave it empty).")
                    }
                    Ok(n) => nominal = n,
                    Err(m) => e.add("nominal", m),
                }
                match number(&self.limit) {
                    Ok(None) => e.add("limit", "Enter the limit."),
                    Ok(Some(l)) if nominal.is_some() && !(0.0 < l && l < 100.0) => e.add(
                        "limit",
                        "With a nominal value the limit is percent of it: enter more than 0 and less than 100.",
                    ),
                    Ok(l) => limit = l,
                    Err(m) => e.add("limit", m),
                }
                match number(&self.hysteresis) {
                    Ok(Some(h)) if h < 0.0 => e.add("hysteresis", "The hysteresis is 0 or more."),
                    Ok(h) => hysteresis = h.unwrap_or(0.0),
                    Err(m) => e.add("hysteresis", m),
                }
            }
            None => {}
        }
        match (kind, severity) {
            (Some(kind), Some(severity)) => e.or_ok(ValidRule {
                name,
                kind,
                severity,
                enabled: self.enabled.is_some(),
                site_id,
                device_id,
                missed_polls,
                quantity,
                direction,
                limit,
                nominal,
                hysteresis,
                hold_seconds,
                unit,
                basis,
            }),
            _ => Err(e),
        }
    }
}

/// The comment of an acknowledgement or a clear.
#[derive(Deserialize, Default)]
pub struct CommentForm {
    #[serde(default)]
    pub comment: String,
}

impl CommentForm {
    pub fn validate(&self) -> Result<String, FieldErrors> {
        let comment = self.comment.trim().to_string();
        if comment.chars().count() > COMMENT_MAX {
            return Err(FieldErrors::of("comment", format!("Use at most {COMMENT_MAX} characters.")));
        }
        Ok(comment)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn threshold(overrides: &[(&str, &str)]) -> RuleForm {
        let mut f = RuleForm {
            name: "Over-voltage".into(),
            kind: THRESHOLD.into(),
            severity: "major".into(),
            enabled: Some("on".into()),
            scope: "all".into(),
            quantity: "voltageLN".into(),
            direction: "above".into(),
            limit: "10".into(),
            nominal: "230".into(),
            hysteresis: "2".into(),
            hold_seconds: "60".into(),
            ..Default::default()
        };
        for (k, v) in overrides {
            let v = v.to_string();
            match *k {
                "limit" => f.limit = v,
                "nominal" => f.nominal = v,
                "hysteresis" => f.hysteresis = v,
                "scope" => f.scope = v,
                "quantity" => f.quantity = v,
                "hold_seconds" => f.hold_seconds = v,
                "name" => f.name = v,
                _ => panic!("no field {k}"),
            }
        }
        f
    }

    fn error(form: RuleForm, field: &str) -> String {
        form.validate().err().and_then(|e| e.get(field).map(str::to_string)).unwrap_or_default()
    }

    #[test]
    fn a_valid_threshold_rule() {
        let rule = threshold(&[("scope", "device:7")]).validate().unwrap();
        assert_eq!((rule.site_id, rule.device_id, rule.limit, rule.nominal), (None, Some(7), Some(10.0), Some(230.0)));
        assert_eq!(rule.quantity, Some("voltageLN"));
    }

    #[test]
    fn each_field_says_what_is_wrong() {
        assert!(error(threshold(&[("limit", "abc")]), "limit").contains("not a number"));
        assert!(error(threshold(&[("limit", "")]), "limit").contains("Enter the limit"));
        assert!(error(threshold(&[("limit", "150")]), "limit").contains("percent"));
        assert!(error(threshold(&[("nominal", "-5")]), "nominal").contains("greater than 0"));
        assert!(error(threshold(&[("hysteresis", "-1")]), "hysteresis").contains("0 or more"));
        assert!(error(threshold(&[("quantity", "colour")]), "quantity").contains("Choose"));
        assert!(error(threshold(&[("hold_seconds", "90000")]), "hold_seconds").contains("0 to 86400"));
        assert!(error(threshold(&[("scope", "room:4")]), "scope").contains("Choose"));
        assert!(error(threshold(&[("name", " ")]), "name").contains("1 to 100"));
        // Without a nominal any finite limit is a limit in the quantity's unit.
        assert!(threshold(&[("nominal", ""), ("limit", "0.85")]).validate().is_ok());
    }

    #[test]
    fn communication_loss_needs_missed_polls() {
        let mut f = RuleForm::new_rule();
        f.name = "Silence".into();
        assert_eq!(f.validate().unwrap().missed_polls, Some(3));
        f.missed_polls = "0".into();
        assert!(error(f, "missed_polls").contains("1 to 1000"));
    }

    #[test]
    fn site_rules_need_a_site_scope_and_their_figures() {
        let mut f = RuleForm::new_rule();
        f.name = "Peak".into();
        f.kind = DEMAND_LIMIT.into();
        f.limit = "500".into();
        f.hysteresis = "20".into();
        let rule = f.validate().unwrap();
        assert_eq!((rule.unit, rule.limit, rule.hysteresis), (Some("kVA"), Some(500.0), 20.0));
        f.limit = " ".into();
        let rule = f.validate().unwrap();
        assert_eq!(rule.limit, None, "no limit of its own: each site's NMD");
        f.limit = "0".into();
        let errors = f.validate().err().unwrap();
        assert!(errors.get("limit").unwrap().contains("or leave it empty for each site's NMD"));
        f.limit = "500".into();
        f.scope = "device:3".into();
        assert_eq!(error(f, "scope"), SITE_SCOPE);
        let mut f = RuleForm::new_rule();
        f.name = "Money".into();
        f.kind = BUDGET.into();
        f.limit = "0".into();
        assert!(error(f, "limit").contains("budget, a number greater than 0"));
        let mut f = RuleForm::new_rule();
        f.name = "Money".into();
        f.kind = BUDGET.into();
        f.limit = "10000".into();
        f.basis = "tomorrow".into();
        assert!(error(f, "basis").contains("Choose"));
    }

    #[test]
    fn comments_are_bounded() {
        assert_eq!(CommentForm { comment: " on it ".into() }.validate().unwrap(), "on it");
        assert!(CommentForm { comment: "x".repeat(501) }.validate().is_err());
    }
}
