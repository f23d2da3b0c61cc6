//! Npgsql connection strings (`Host=db;Port=5432;Database=x;Username=u;Password=p`), the form
//! the original .NET deployment files use in `Database__ConnectionString`.
//!
//! Grammar as in .NET's `DbConnectionStringBuilder`: `key=value` pairs separated by `;`, keys
//! case-insensitive with surrounding spaces ignored, a value may be quoted with `"` or `'` (a
//! doubled quote inside stands for one quote, `;` inside a quoted value is literal), a later
//! duplicate key wins, empty segments are skipped.

use sqlx::postgres::{PgConnectOptions, PgSslMode};

#[derive(Debug)]
pub struct NpgsqlParsed {
    pub options: PgConnectOptions,
    pub max_pool_size: Option<u32>,
    /// Recognised Npgsql keywords this implementation does not use (warned about, not errors).
    pub ignored: Vec<String>,
}

/// Splits the string into lowercase keys and unquoted values. Errors never include values
/// (one of them is the password).
pub(super) fn split_pairs(input: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut rest = input;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ';');
        if rest.is_empty() {
            return Ok(pairs);
        }
        let eq = rest.find('=').ok_or_else(|| {
            let key = rest.split(';').next().unwrap_or_default().trim();
            format!("expected key=value pairs separated by ';', found {key:?} without '='")
        })?;
        let key = rest[..eq].trim().to_ascii_lowercase();
        if key.is_empty() || key.contains(';') {
            return Err("expected key=value pairs separated by ';', found an empty key".into());
        }
        rest = rest[eq + 1..].trim_start();
        let value = match rest.chars().next() {
            Some(quote @ ('"' | '\'')) => {
                let (value, after) = read_quoted(&rest[1..], quote)
                    .ok_or_else(|| format!("the value of {key:?} has an opening {quote} but no closing one"))?;
                let after = after.trim_start();
                if !(after.is_empty() || after.starts_with(';')) {
                    return Err(format!("unexpected text after the quoted value of {key:?}"));
                }
                rest = after;
                value
            }
            _ => {
                let end = rest.find(';').unwrap_or(rest.len());
                let value = rest[..end].trim().to_string();
                rest = &rest[end..];
                value
            }
        };
        pairs.push((key, value));
    }
}

/// Reads up to the closing `quote`; a doubled quote is a literal one. Returns the value and the
/// text after the closing quote.
fn read_quoted(s: &str, quote: char) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == quote {
            if matches!(chars.peek(), Some((_, next)) if *next == quote) {
                value.push(quote);
                chars.next();
            } else {
                return Some((value, &s[i + c.len_utf8()..]));
            }
        } else {
            value.push(c);
        }
    }
    None
}

/// Npgsql keywords that are valid but have no counterpart here.
const IGNORED: &[&str] = &[
    "timeout",
    "command timeout",
    "commandtimeout",
    "pooling",
    "minimum pool size",
    "min pool size",
    "minpoolsize",
    "include error detail",
    "includeerrordetail",
    "trust server certificate",
    "trustservercertificate",
    "keepalive",
    "tcp keepalive",
    "connection idle lifetime",
    "connection lifetime",
    "connection pruning interval",
    "enlist",
    "no reset on close",
    "server compatibility mode",
    "multiplexing",
];

pub fn parse_npgsql(input: &str) -> Result<NpgsqlParsed, String> {
    let mut host = None;
    let mut port = 5432u16;
    let mut database = None;
    let mut username = None;
    let mut password = None;
    let mut ssl_mode = PgSslMode::Prefer;
    let mut application_name = None;
    let mut search_path = None;
    let mut max_pool_size = None;
    let mut ignored = Vec::new();

    for (key, value) in split_pairs(input)? {
        match key.as_str() {
            "host" | "server" | "data source" | "address" => {
                if value.contains(',') {
                    return Err("Host: several hosts (failover) are not supported; give one host".into());
                }
                host = Some(value);
            }
            "port" => {
                port = value
                    .parse()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("Port: expected a number from 1 to 65535, got {value:?}"))?;
            }
            "database" | "db" | "initial catalog" => database = Some(value),
            "username" | "user name" | "user id" | "userid" | "user" | "uid" => username = Some(value),
            "password" | "pwd" | "psw" => password = Some(value),
            "ssl mode" | "sslmode" => {
                let normalized = value.to_ascii_lowercase().replace(['-', '_', ' '], "");
                ssl_mode = match normalized.as_str() {
                    "disable" => PgSslMode::Disable,
                    "allow" => PgSslMode::Allow,
                    "prefer" => PgSslMode::Prefer,
                    "require" => PgSslMode::Require,
                    "verifyca" => PgSslMode::VerifyCa,
                    "verifyfull" => PgSslMode::VerifyFull,
                    _ => {
                        return Err(format!(
                            "SSL Mode: expected Disable, Allow, Prefer, Require, VerifyCA or VerifyFull, got {value:?}"
                        ));
                    }
                };
            }
            "application name" | "applicationname" => application_name = Some(value),
            "search path" | "searchpath" => search_path = Some(value),
            "maximum pool size" | "max pool size" | "maxpoolsize" => {
                max_pool_size = Some(
                    value
                        .parse::<u32>()
                        .ok()
                        .filter(|n| (1..=500).contains(n))
                        .ok_or_else(|| format!("Maximum Pool Size: expected 1 to 500, got {value:?}"))?,
                );
            }
            k if IGNORED.contains(&k) => ignored.push(k.to_string()),
            other => return Err(format!("unknown keyword {other:?}")),
        }
    }

    let host = host.ok_or("Host is required")?;
    let username = username.ok_or("Username is required")?;
    // Npgsql's default database is the user name.
    let database = database.unwrap_or_else(|| username.clone());
    let mut options =
        PgConnectOptions::new_without_pgpass().port(port).username(&username).database(&database).ssl_mode(ssl_mode);
    options = if host.starts_with('/') { options.socket(&host) } else { options.host(&host) };
    if let Some(p) = password {
        options = options.password(&p);
    }
    if let Some(name) = application_name {
        options = options.application_name(&name);
    }
    if let Some(path) = search_path {
        options = options.options([("search_path", path.as_str())]);
    }
    Ok(NpgsqlParsed { options, max_pool_size, ignored })
}
