//! The Ed25519 keys of licences: the Admin's signing key (a PKCS#8 private key, as
//! `tau-portal licence keygen` or `openssl genpkey -algorithm ed25519` writes it) and the public
//! key every Client portal verifies with (configured, or compiled into the build).

use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): the 32 key bytes follow.
const SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

/// An Ed25519 public key (32 bytes).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(pub [u8; 32]);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.text())
    }
}

impl PublicKey {
    /// base64url (43 characters) or standard base64 of the 32 bytes, or a PEM `PUBLIC KEY`.
    pub fn parse(raw: &str) -> Result<PublicKey, String> {
        let raw = raw.trim();
        let bytes = if raw.starts_with("-----BEGIN PUBLIC KEY-----") {
            let der = pem_body(raw, "PUBLIC KEY")?;
            der.strip_prefix(&SPKI_PREFIX[..])
                .map(<[u8]>::to_vec)
                .ok_or("the PEM key is not an Ed25519 public key (expected `openssl pkey -pubout` of an ed25519 key)")?
        } else {
            URL_SAFE_NO_PAD.decode(raw.trim_end_matches('=')).or_else(|_| STANDARD.decode(raw)).map_err(
                |_| "expected the base64url public key `tau-portal licence keygen` prints, or a PEM PUBLIC KEY",
            )?
        };
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| format!("an Ed25519 public key has 32 bytes, this one {}", b.len()))?;
        Ok(PublicKey(key))
    }

    /// The key compiled into this build (`TAU_LICENSE_PUBLIC_KEY` at build time), if any.
    pub fn compiled_in() -> Result<Option<PublicKey>, String> {
        match option_env!("TAU_LICENSE_PUBLIC_KEY") {
            Some(raw) if !raw.trim().is_empty() => PublicKey::parse(raw)
                .map(Some)
                .map_err(|e| format!("the key compiled into this build (TAU_LICENSE_PUBLIC_KEY) is not valid: {e}")),
            _ => Ok(None),
        }
    }

    /// base64url without padding: what `License__PublicKey` takes.
    pub fn text(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }
}

/// The Admin's signing key. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct SigningKey(Arc<Ed25519KeyPair>);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey(public {})", self.public_key().text())
    }
}

impl SigningKey {
    /// A PKCS#8 `PRIVATE KEY` in PEM (v1 as OpenSSL writes it, or v2 with the public key).
    pub fn parse(pem: &str) -> Result<SigningKey, String> {
        let der = pem_body(pem.trim(), "PRIVATE KEY")?;
        Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
            .map(|pair| SigningKey(Arc::new(pair)))
            .map_err(|e| format!("not an Ed25519 PKCS#8 private key ({e})"))
    }

    /// A new key pair, as PEM (PKCS#8 v2).
    pub fn generate() -> Result<(SigningKey, String), String> {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| "no randomness".to_string())?;
        let pem = pem_encode("PRIVATE KEY", doc.as_ref());
        Ok((SigningKey::parse(&pem)?, pem))
    }

    pub fn public_key(&self) -> PublicKey {
        let mut key = [0u8; 32];
        key.copy_from_slice(self.0.public_key().as_ref());
        PublicKey(key)
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.0.sign(message).as_ref().to_vec()
    }
}

/// The DER inside one PEM block of `label`.
fn pem_body(pem: &str, label: &str) -> Result<Vec<u8>, String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin).ok_or_else(|| format!("expected a PEM block starting with {begin}"))? + begin.len();
    let stop = pem[start..].find(&end).ok_or_else(|| format!("the PEM block has no {end} line"))? + start;
    let body: String = pem[start..stop].chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD.decode(body).map_err(|e| format!("the PEM block is not base64: {e}"))
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

/// The PEM `PUBLIC KEY` of a key (SubjectPublicKeyInfo), as `openssl pkey -pubout` writes it.
pub fn public_key_pem(key: &PublicKey) -> String {
    let mut der = SPKI_PREFIX.to_vec();
    der.extend_from_slice(&key.0);
    pem_encode("PUBLIC KEY", &der)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_round_trip_through_pem_and_text() {
        let (key, pem) = SigningKey::generate().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert_eq!(SigningKey::parse(&pem).unwrap().public_key(), key.public_key());
        let public = key.public_key();
        assert_eq!(public.text().len(), 43);
        assert_eq!(PublicKey::parse(&public.text()).unwrap(), public);
        assert_eq!(PublicKey::parse(&public_key_pem(&public)).unwrap(), public);
        assert_eq!(PublicKey::parse(&STANDARD.encode(public.0)).unwrap(), public);
        assert!(!format!("{key:?}").contains(&pem[40..60]), "Debug never shows the private key");
    }

    #[test]
    fn an_openssl_key_is_read() {
        // `openssl genpkey -algorithm ed25519` (PKCS#8 v1, no public key inside) and its
        // `openssl pkey -pubout`: RFC 8410's example key.
        let pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n";
        let public = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n";
        assert_eq!(SigningKey::parse(pem).unwrap().public_key(), PublicKey::parse(public).unwrap());
    }

    #[test]
    fn bad_keys_say_why() {
        assert!(PublicKey::parse("abc").unwrap_err().contains("32 bytes"));
        assert!(PublicKey::parse("not base64 at all!").unwrap_err().contains("base64url"));
        assert!(SigningKey::parse("hello").unwrap_err().contains("BEGIN PRIVATE KEY"));
        let rsa = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VxBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----";
        assert!(SigningKey::parse(rsa).unwrap_err().contains("not an Ed25519"));
    }
}
