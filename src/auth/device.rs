//! Device cookies (OWASP, "Slow down online guessing attacks with device cookies"): a browser
//! that signs in to an account gets a long-lived cookie, signed with the key ring, naming a random
//! nonce and bound to that account. Its next sign-in attempts for that account are throttled on
//! their own (`throttle::Attempt::Trusted`), so an attacker failing on purpose from anywhere
//! else cannot keep the owner out. The cookie proves nothing else: it never signs anyone in.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;

use super::keyring::KeyRing;

const PURPOSE: &str = "device-cookie";
/// A year: a browser used at least once a year stays trusted.
pub const MAX_AGE: time::Duration = time::Duration::days(365);

fn data(email: &str, nonce: &str) -> Vec<u8> {
    format!("{}\0{nonce}", email.to_lowercase()).into_bytes()
}

/// A fresh cookie value for a browser that just signed in to `email`.
pub fn issue(keys: &KeyRing, email: &str) -> String {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let nonce = URL_SAFE_NO_PAD.encode(bytes);
    let signature = keys.sign(PURPOSE, &data(email, &nonce));
    format!("{nonce}.{signature}")
}

/// The device's nonce when `value` is a device cookie this portal issued for `email`.
pub fn trusted_for<'a>(keys: &KeyRing, value: &'a str, email: &str) -> Option<&'a str> {
    let (nonce, signature) = value.split_once('.')?;
    keys.verify(PURPOSE, &data(email, nonce), signature).then_some(nonce)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_is_trusted_for_its_account_only_and_cannot_be_forged() {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyRing::load_or_create(dir.path()).unwrap();
        let cookie = issue(&keys, "Admin@Example.com");
        let nonce = cookie.split_once('.').unwrap().0;
        assert_eq!(trusted_for(&keys, &cookie, "admin@example.com"), Some(nonce), "emails match case-insensitively");
        assert_eq!(trusted_for(&keys, &cookie, "other@example.com"), None);
        assert_eq!(trusted_for(&keys, &format!("x{cookie}"), "admin@example.com"), None, "the nonce is signed");
        assert_eq!(trusted_for(&keys, "no-signature", "admin@example.com"), None);
        let other_ring = KeyRing::load_or_create(tempfile::tempdir().unwrap().path()).unwrap();
        assert_eq!(trusted_for(&other_ring, &cookie, "admin@example.com"), None, "signed with this key ring only");
    }
}
