//! `tau-portal provision <CODE> --host <host>`: a ready `.env` for a new customer stack, with
//! strong random secrets (replacing the runbook's `openssl rand` steps), the lowercase compose
//! project name and the customer's white label, from the annotated `.env.example`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;

use crate::config::Color;

const TEMPLATE: &str = include_str!("../.env.example");

/// Write a ready .env for a new customer stack, with fresh random secrets.
#[derive(clap::Args, Debug, Clone)]
pub struct ProvisionArgs {
    /// Customer code, e.g. ABC0001 (letters and digits; the compose project is its lowercase).
    pub code: String,
    /// The customer's host name, e.g. abc0001.portal.example.com.
    #[arg(long)]
    pub host: String,
    /// Email of the default admin [default: admin@<host>].
    #[arg(long)]
    pub admin_email: Option<String>,
    /// The customer's company, e.g. "Acme Corp": names the portal "<company> Power Monitoring"
    /// and writes the footer "© <company>" (unless given on their own below).
    #[arg(long)]
    pub company: Option<String>,
    /// Application name shown on every page [default: "<company or CODE> Power Monitoring"].
    #[arg(long)]
    pub application_name: Option<String>,
    /// Footer text [default: "© <company>", or none].
    #[arg(long)]
    pub footer_text: Option<String>,
    /// Primary brand colour, #rrggbb [default: the template's].
    #[arg(long, value_parser = parse_color)]
    pub primary_color: Option<Color>,
    /// Secondary brand colour, #rrggbb.
    #[arg(long, value_parser = parse_color)]
    pub secondary_color: Option<Color>,
    /// Accent brand colour, #rrggbb.
    #[arg(long, value_parser = parse_color)]
    pub accent_color: Option<Color>,
    /// Traefik's IP address on the traefik-public network (the only source Grafana believes
    /// identity headers from) [default: left empty, to be filled in before `up`].
    #[arg(long, value_parser = parse_address)]
    pub traefik_address: Option<ipnet::IpNet>,
    /// Write to this file (created with mode 0600) instead of printing.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Overwrite an existing output file.
    #[arg(long)]
    pub force: bool,
}

fn parse_color(raw: &str) -> Result<Color, String> {
    raw.parse()
}

fn parse_address(raw: &str) -> Result<ipnet::IpNet, String> {
    raw.parse::<ipnet::IpNet>()
        .or_else(|_| raw.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("expected Traefik's IP address, e.g. 172.18.0.2, got {raw:?}"))
}

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("customer code {0:?}: expected 2 to 32 letters and digits, e.g. ABC0001")]
    Code(String),
    #[error("host {0:?}: expected a DNS name such as abc0001.portal.example.com")]
    Host(String),
    #[error("admin email {0:?}: expected an email address")]
    Email(String),
    #[error("{field}: {message}")]
    Text { field: &'static str, message: String },
    #[error("{0} exists already; pass --force to overwrite it (its secrets would be lost)")]
    Exists(String),
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: std::io::Error },
}

/// 256 random bits, URL-safe base64 (no `+`, `/` or `=` that would need quoting in a .env file).
fn secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A value as Compose's `.env` parser reads it back unchanged: bare when it can be, else
/// single-quoted (literal: no `$` interpolation, no `#` comment), else double-quoted with escapes.
fn env_value(value: &str) -> String {
    let plain = value.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:/@,+=%©".contains(c) || c == ' ')
        && !value.starts_with(' ')
        && !value.ends_with(' ');
    if plain || value.starts_with('#') && value[1..].chars().all(|c| c.is_ascii_hexdigit()) {
        value.to_string()
    } else if !value.contains('\'') {
        format!("'{value}'")
    } else {
        let escaped = value.replace('\\', "\\\\").replace('"', "\\\"").replace('$', "\\$");
        format!("\"{escaped}\"")
    }
}

/// A free-text value for the white label: one line, at most 100 characters.
fn text(field: &'static str, value: &str) -> Result<String, ProvisionError> {
    let value = value.trim();
    if value.chars().any(char::is_control) {
        return Err(ProvisionError::Text { field, message: "must be one line without control characters".into() });
    }
    if value.chars().count() > 100 {
        return Err(ProvisionError::Text { field, message: "expected at most 100 characters".into() });
    }
    Ok(value.to_string())
}

/// The `.env` text for the customer described by `args`.
pub fn render(args: &ProvisionArgs) -> Result<String, ProvisionError> {
    let code = args.code.as_str();
    let valid_code = (2..=32).contains(&code.len()) && code.chars().all(|c| c.is_ascii_alphanumeric());
    if !valid_code {
        return Err(ProvisionError::Code(code.to_string()));
    }
    let host = args.host.as_str();
    let valid_host = host.contains('.')
        && host.split('.').all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    if !valid_host {
        return Err(ProvisionError::Host(host.to_string()));
    }
    let admin = args.admin_email.clone().unwrap_or_else(|| format!("admin@{host}"));
    crate::config::parse_email(&admin).map_err(|_| ProvisionError::Email(admin.clone()))?;
    let company = args.company.as_deref().map(|c| text("--company", c)).transpose()?.filter(|c| !c.is_empty());
    let application_name = match &args.application_name {
        Some(name) => text("--application-name", name)?,
        None => format!("{} Power Monitoring", company.as_deref().unwrap_or(code)),
    };
    let footer = match &args.footer_text {
        Some(footer) => text("--footer-text", footer)?,
        None => company.as_ref().map(|c| format!("© {c}")).unwrap_or_default(),
    };

    let mut values = vec![
        ("COMPOSE_PROJECT_NAME", code.to_ascii_lowercase()),
        ("CUSTOMER_HOST", host.to_string()),
        ("GRAFANA_ADMIN_PASSWORD", secret()),
        ("GRAFANA_DB_PASSWORD", secret()),
        ("POSTGRES_PASSWORD", secret()),
        ("Authentication__DefaultAdminEmail", admin),
        ("Authentication__DefaultAdminPassword", secret()),
        ("WhiteLabel__ApplicationName", application_name),
        ("WhiteLabel__FooterText", footer),
    ];
    if let Some(address) = args.traefik_address {
        // A single address is written bare (172.18.0.2), as Grafana's whitelist documents it.
        let shown = if address.prefix_len() == address.max_prefix_len() {
            address.addr().to_string()
        } else {
            address.to_string()
        };
        values.push(("TRAEFIK_ADDRESS", shown));
    }
    for (key, color) in [
        ("WhiteLabel__PrimaryColor", &args.primary_color),
        ("WhiteLabel__SecondaryColor", &args.secondary_color),
        ("WhiteLabel__AccentColor", &args.accent_color),
    ] {
        if let Some(color) = color {
            values.push((key, color.as_str().to_string()));
        }
    }

    let mut out = format!("# Customer {code}: generated by `tau-portal provision`. Keep this file private.\n");
    // The template's own header is about copying it by hand: left out.
    for line in TEMPLATE.lines().skip_while(|l| l.starts_with('#')) {
        let key = line.split_once('=').map(|(k, _)| k.trim());
        match values.iter().find(|(k, _)| Some(*k) == key) {
            Some((k, v)) => out.push_str(&format!("{k}={}\n", env_value(v))),
            None => out.push_str(&format!("{line}\n")),
        }
    }
    Ok(out)
}

/// Writes `text` to `path` (0600), refusing to replace an existing file unless `force`.
pub fn write(path: &Path, text: &str, force: bool) -> Result<(), ProvisionError> {
    let shown = path.display().to_string();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(0o600);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::AlreadyExists => ProvisionError::Exists(shown.clone()),
        _ => ProvisionError::Write { path: shown.clone(), source },
    })?;
    file.write_all(text.as_bytes()).map_err(|source| ProvisionError::Write { path: shown, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_quoted_only_when_compose_would_misread_them() {
        assert_eq!(env_value("Acme Corp Power Monitoring"), "Acme Corp Power Monitoring");
        assert_eq!(env_value("© Acme Corp"), "© Acme Corp");
        assert_eq!(env_value("#0c4a6e"), "#0c4a6e");
        assert_eq!(env_value("Tom & Jerry #1"), "'Tom & Jerry #1'");
        assert_eq!(env_value("Costs $5"), "'Costs $5'");
        assert_eq!(env_value("O'Brien \"Q\" $x \\"), "\"O'Brien \\\"Q\\\" \\$x \\\\\"");
        assert_eq!(env_value(""), "");
    }
}
