//! Bearer secrets (ingest API keys, fleet push tokens): 256 random bits behind a readable prefix,
//! shown once, stored only as their SHA-256, and compared in constant time.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Characters of a token shown in lists to recognise it (its prefix and 8 more).
const SHOWN_CHARS: usize = 8;

/// A freshly generated token: the secret itself (shown once), its hash and its shown prefix.
pub struct NewToken {
    pub secret: String,
    pub hash: [u8; 32],
    pub prefix: String,
}

/// `prefix` + 256 random bits in URL-safe base64.
pub fn generate(prefix: &str) -> NewToken {
    let secret = random(prefix);
    let shown = secret.chars().take(prefix.len() + SHOWN_CHARS).collect();
    NewToken { hash: hash(&secret), prefix: shown, secret }
}

/// `prefix` + 256 random bits in URL-safe base64 (43 characters), for a secret stored some other
/// way than by its SHA-256 (e.g. the bcrypt hash a broker checks).
pub fn random(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Whether a stored hash is the hash of the presented token. Rows are looked up by hash, which
/// reveals nothing about the token; the final comparison is in constant time all the same.
pub fn matches(stored: &[u8], wanted: &[u8; 32]) -> bool {
    bool::from(stored.ct_eq(wanted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_recognisable() {
        let a = generate("tau_");
        let b = generate("tau_");
        assert_ne!(a.secret, b.secret);
        assert!(a.secret.starts_with("tau_") && a.secret.len() == 4 + 43, "{}", a.secret);
        assert_eq!(a.prefix, a.secret[..12]);
        assert!(matches(&a.hash, &hash(&a.secret)));
        assert!(!matches(&a.hash, &hash(&b.secret)));
        assert!(!matches(&a.hash[..31], &hash(&a.secret)), "a truncated hash never matches");
    }
}
