//! The default admin: created on start when no account with `Authentication__DefaultAdminEmail`
//! exists, never touched otherwise (a restart with another password changes nothing; deleting
//! the account makes the next start seed it again, as the runbook describes).

use std::path::{Path, PathBuf};

use rand::Rng;
use rand::distributions::Alphanumeric;
use secrecy::SecretString;
use sqlx::PgPool;

use super::audit::{self, Actor};
use super::db::{self, NewUser};
use super::password::{PasswordError, Passwords};
use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("could not seed the default admin: {0}")]
    Database(#[from] sqlx::Error),
    #[error("could not seed the default admin: {0}")]
    Hash(#[from] PasswordError),
    #[error("could not write the generated default admin password to {path}: {source}")]
    WritePassword { path: PathBuf, source: std::io::Error },
}

#[derive(Debug, PartialEq, Eq)]
pub enum Seeded {
    Created,
    AlreadyPresent,
}

pub const GENERATED_PASSWORD_FILE: &str = "default-admin-password";

pub async fn seed_default_admin(pool: &PgPool, config: &Config, passwords: &Passwords) -> Result<Seeded, SeedError> {
    let email = config.default_admin.email.as_str();
    if db::user_id_by_email(pool, email).await?.is_some() {
        return Ok(Seeded::AlreadyPresent);
    }
    // Config validation guarantees a password in Production; Development gets a generated one.
    let (secret, generated_at) = match &config.default_admin.password {
        Some(p) => (p.clone(), None),
        None => {
            let path = config.data_directory.join(GENERATED_PASSWORD_FILE);
            (write_generated_password(&path)?, Some(path))
        }
    };
    let hash = passwords.hash(secret).await?;
    let mut tx = pool.begin().await?;
    let user = NewUser { email, display_name: "Administrator", password_hash: &hash, is_admin: true };
    // Another instance may have seeded it between the check above and now: then nothing happens.
    let Some(id) = db::insert_user_if_absent(&mut *tx, &user).await? else {
        return Ok(Seeded::AlreadyPresent);
    };
    audit::write(&mut tx, &Actor::system(), "user.seeded", Some(email), serde_json::json!({ "isAdmin": true })).await?;
    tx.commit().await?;
    match generated_at {
        Some(path) => tracing::info!(
            user_id = %id,
            password_file = %path.display(),
            "Seeded default admin {email} (Development: generated password written to the password file)"
        ),
        None => tracing::info!(user_id = %id, "Seeded default admin {email}"),
    }
    Ok(Seeded::Created)
}

/// Writes a fresh random password readable by the owner only.
fn write_generated_password(path: &Path) -> Result<SecretString, SeedError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    let password: String = rand::thread_rng().sample_iter(&Alphanumeric).take(24).map(char::from).collect();
    let write = || -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
        file.write_all(password.as_bytes())?;
        file.write_all(b"\n")
    };
    write().map_err(|source| SeedError::WritePassword { path: path.to_path_buf(), source })?;
    Ok(SecretString::from(password))
}
