//! Password hashing: argon2id with the OWASP parameters of DESIGN.md (m = 19456 KiB, t = 2,
//! p = 1), always off the async threads because one hash takes tens of milliseconds of CPU.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl HashParams {
    pub const PRODUCTION: HashParams = HashParams {
        memory_kib: 19_456,
        iterations: 2,
        parallelism: 1,
    };

    fn hasher(self) -> Result<Argon2<'static>, PasswordError> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| PasswordError(e.to_string()))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct PasswordError(String);

/// Hashes into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`) on the blocking pool.
pub async fn hash(password: SecretString, params: HashParams) -> Result<String, PasswordError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        params
            .hasher()?
            .hash_password(password.expose_secret().as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| PasswordError(e.to_string()))
    })
    .await
    .map_err(|e| PasswordError(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};

    use super::*;

    #[tokio::test]
    async fn production_parameters_are_the_owasp_argon2id_ones() {
        let phc = hash(
            SecretString::from("a long enough password"),
            HashParams::PRODUCTION,
        )
        .await
        .unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        let parsed = PasswordHash::new(&phc).unwrap();
        let hasher = HashParams::PRODUCTION.hasher().unwrap();
        assert!(
            hasher
                .verify_password(b"a long enough password", &parsed)
                .is_ok()
        );
        assert!(
            hasher
                .verify_password(b"another password", &parsed)
                .is_err()
        );
    }
}
