//! Password hashing and the password policy. argon2id with the configured cost (OWASP's
//! m = 19456 KiB, t = 2, p = 1 by default), always on the blocking pool and behind a small
//! semaphore: one hash takes tens of milliseconds of CPU and ~19 MB, and a burst of logins must
//! queue rather than exhaust memory or starve the async threads.

use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

use crate::config::{MIN_PASSWORD_LEN, PasswordHashParams};

/// Longer inputs are refused before hashing: argon2 would accept them, but there is no reason
/// to let a request make the server hash megabytes.
pub const MAX_PASSWORD_LEN: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed: {0}")]
    Argon2(#[source] argon2::Error),
    #[error("password hashing failed: {0}")]
    Hash(#[source] argon2::password_hash::Error),
    #[error("password hashing failed: the hashing task did not finish")]
    Task(#[source] tokio::task::JoinError),
    #[error("password hashing failed: the hashing permits are closed")]
    Closed(#[source] tokio::sync::AcquireError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    Invalid,
    /// `rehash`: the stored hash uses other parameters than the configured ones; the caller
    /// stores a fresh hash while it has the password at hand.
    Valid {
        rehash: bool,
    },
}

#[derive(Clone)]
pub struct Passwords {
    params: PasswordHashParams,
    permits: Arc<Semaphore>,
    /// Verified for unknown emails, so that "no such user" costs as much time as "wrong
    /// password" and response times do not reveal which accounts exist.
    dummy_hash: Arc<str>,
}

fn hasher(params: PasswordHashParams) -> Result<Argon2<'static>, PasswordError> {
    let p =
        Params::new(params.memory_kib, params.iterations, params.parallelism, None).map_err(PasswordError::Argon2)?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, p))
}

fn hash_blocking(params: PasswordHashParams, password: &[u8]) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut OsRng);
    hasher(params)?.hash_password(password, &salt).map(|h| h.to_string()).map_err(PasswordError::Hash)
}

impl Passwords {
    pub async fn new(params: PasswordHashParams) -> Result<Passwords, PasswordError> {
        let permits = Arc::new(Semaphore::new(std::thread::available_parallelism().map_or(1, |n| n.get())));
        let dummy = tokio::task::spawn_blocking(move || hash_blocking(params, b"dummy password for unknown accounts"))
            .await
            .map_err(PasswordError::Task)??;
        Ok(Passwords { params, permits, dummy_hash: dummy.into() })
    }

    pub fn params(&self) -> PasswordHashParams {
        self.params
    }

    async fn blocking<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, PasswordError> {
        let _permit = self.permits.acquire().await.map_err(PasswordError::Closed)?;
        tokio::task::spawn_blocking(f).await.map_err(PasswordError::Task)
    }

    /// A PHC string such as `$argon2id$v=19$m=19456,t=2,p=1$…`.
    pub async fn hash(&self, password: SecretString) -> Result<String, PasswordError> {
        let params = self.params;
        self.blocking(move || hash_blocking(params, password.expose_secret().as_bytes())).await?
    }

    /// Checks `password` against `stored`, or against the dummy hash when there is no account
    /// (the answer is then always `Invalid`, after the same amount of work).
    pub async fn verify(&self, password: SecretString, stored: Option<String>) -> Result<Verification, PasswordError> {
        let params = self.params;
        let (phc, real) = match stored {
            Some(phc) => (phc, true),
            None => (self.dummy_hash.to_string(), false),
        };
        self.blocking(move || {
            let Ok(parsed) = PasswordHash::new(&phc) else { return Verification::Invalid };
            // Verify with the parameters inside the stored hash (argon2 reads them from the PHC).
            let ok = Argon2::default().verify_password(password.expose_secret().as_bytes(), &parsed).is_ok();
            if !(ok && real) {
                return Verification::Invalid;
            }
            Verification::Valid { rehash: !uses_params(&parsed, params) }
        })
        .await
    }
}

fn uses_params(hash: &PasswordHash<'_>, params: PasswordHashParams) -> bool {
    let get = |name: &str| hash.params.get_decimal(name);
    hash.algorithm.as_str() == "argon2id"
        && get("m") == Some(params.memory_kib)
        && get("t") == Some(params.iterations)
        && get("p") == Some(params.parallelism)
}

/// The password policy; the message says what to change.
pub fn check_policy(password: &str, email: &str) -> Result<(), String> {
    let len = password.chars().count();
    if len < MIN_PASSWORD_LEN {
        return Err(format!("Use at least {MIN_PASSWORD_LEN} characters (this one has {len})."));
    }
    if len > MAX_PASSWORD_LEN {
        return Err(format!("Use at most {MAX_PASSWORD_LEN} characters."));
    }
    if password.trim().eq_ignore_ascii_case(email.trim()) {
        return Err("The password must not be the email address.".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: PasswordHashParams = PasswordHashParams { memory_kib: 64, iterations: 1, parallelism: 1 };

    #[tokio::test]
    async fn production_parameters_are_the_owasp_argon2id_ones() {
        let passwords = Passwords::new(PasswordHashParams::PRODUCTION).await.unwrap();
        let phc = passwords.hash(SecretString::from("a long enough password")).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        let ok = passwords.verify(SecretString::from("a long enough password"), Some(phc.clone())).await.unwrap();
        assert_eq!(ok, Verification::Valid { rehash: false });
        let bad = passwords.verify(SecretString::from("another password"), Some(phc)).await.unwrap();
        assert_eq!(bad, Verification::Invalid);
    }

    #[tokio::test]
    async fn a_hash_with_other_parameters_verifies_and_asks_for_a_rehash() {
        let old = Passwords::new(FAST).await.unwrap();
        let phc = old.hash(SecretString::from("pw pw pw pw pw")).await.unwrap();
        let new = Passwords::new(PasswordHashParams { memory_kib: 128, ..FAST }).await.unwrap();
        let v = new.verify(SecretString::from("pw pw pw pw pw"), Some(phc)).await.unwrap();
        assert_eq!(v, Verification::Valid { rehash: true });
    }

    #[tokio::test]
    async fn unknown_accounts_never_verify_even_with_the_dummy_password() {
        let p = Passwords::new(FAST).await.unwrap();
        let v = p.verify(SecretString::from("dummy password for unknown accounts"), None).await.unwrap();
        assert_eq!(v, Verification::Invalid);
        let garbage = p.verify(SecretString::from("x"), Some("not a phc string".into())).await.unwrap();
        assert_eq!(garbage, Verification::Invalid);
    }

    #[test]
    fn policy_messages() {
        assert_eq!(check_policy("short", "a@b.c").unwrap_err(), "Use at least 12 characters (this one has 5).");
        assert_eq!(
            check_policy("Admin@Example.com", "admin@example.com").unwrap_err(),
            "The password must not be the email address."
        );
        assert!(check_policy(&"x".repeat(1025), "a@b.c").is_err());
        assert!(check_policy("twelve chars", "a@b.c").is_ok());
    }
}
