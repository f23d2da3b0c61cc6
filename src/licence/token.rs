//! Licence keys as JWTs (RFC 7519) in the JWS compact form, signed with Ed25519 (JWS `alg`
//! `EdDSA`, RFC 8037). The signature is ring's (already linked for TLS); this module only frames
//! it: `base64url(header).base64url(claims).base64url(signature)`. Verification refuses any
//! other algorithm before it looks at the signature (no `none`, no HMAC-with-the-public-key
//! confusion), then checks the signature over the first two parts exactly as received, and only
//! then reads the claims.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeZone, Utc};
use ring::signature::{ED25519, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::keys::{PublicKey, SigningKey};

/// Who signs licences (the `iss` claim).
pub const ISSUER: &str = "tau-portal-admin";

/// What a licence grants. `None` limits are unlimited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Claims {
    pub iss: String,
    /// The licence's own id.
    pub jti: Uuid,
    /// The customer's id in the Admin's registry.
    pub sub: Uuid,
    pub customer_code: String,
    pub company: String,
    pub limits: Limits,
    pub features: Vec<String>,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Expires at, Unix seconds.
    pub exp: i64,
    /// Days after `exp` before settings become read-only.
    pub grace_days: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub devices: Option<u32>,
    pub sites: Option<u32>,
    pub users: Option<u32>,
}

impl Claims {
    pub fn issued_at(&self) -> DateTime<Utc> {
        Utc.timestamp_opt(self.iat, 0).single().unwrap_or_default()
    }

    pub fn expires_at(&self) -> DateTime<Utc> {
        Utc.timestamp_opt(self.exp, 0).single().unwrap_or_default()
    }
}

/// Why a licence key is refused; the text is what admins and the log see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the licence key is not a JWT (three base64url parts separated by dots): {0}")]
    Malformed(&'static str),
    #[error(
        "the licence key is signed with {0:?}; only EdDSA (Ed25519) licences issued by the Admin portal are accepted"
    )]
    Algorithm(String),
    #[error(
        "the licence key's signature does not verify: it was altered, or signed with another key than this portal \
         trusts (License__PublicKey)"
    )]
    Signature,
    #[error("the licence key is signed but its contents cannot be read ({0}); ask for a new one")]
    Claims(String),
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
    /// A critical extension this verifier does not know must be refused (RFC 7515 4.1.11).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    crit: Option<serde_json::Value>,
}

const ALGORITHM: &str = "EdDSA";

/// The signed licence key.
pub fn sign(claims: &Claims, key: &SigningKey) -> String {
    let header = Header { alg: ALGORITHM.into(), typ: Some("JWT".into()), crit: None };
    // Serialising these plain structs cannot fail.
    let header = serde_json::to_vec(&header).unwrap_or_default();
    let payload = serde_json::to_vec(claims).unwrap_or_default();
    let signing_input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(payload));
    let signature = key.sign(signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// The claims of a licence key signed by `key`; expiry is not judged here (see `Standing`).
pub fn verify(token: &str, key: &PublicKey) -> Result<Claims, TokenError> {
    let token = token.trim();
    let parts: Vec<&str> = token.split('.').collect();
    let [header, payload, signature] = parts[..] else {
        return Err(TokenError::Malformed("expected exactly three parts"));
    };
    let decode = |part: &str, what| URL_SAFE_NO_PAD.decode(part).map_err(|_| TokenError::Malformed(what));
    let header: Header = serde_json::from_slice(&decode(header, "the header is not base64url")?)
        .map_err(|_| TokenError::Malformed("the header is not a JSON object with alg"))?;
    if header.alg != ALGORITHM {
        return Err(TokenError::Algorithm(header.alg));
    }
    if header.crit.is_some() {
        return Err(TokenError::Malformed("the header names critical extensions this portal does not know"));
    }
    let signature = decode(signature, "the signature is not base64url")?;
    let signing_input = &token[..token.len() - parts[2].len() - 1];
    UnparsedPublicKey::new(&ED25519, key.0)
        .verify(signing_input.as_bytes(), &signature)
        .map_err(|_| TokenError::Signature)?;
    let claims: Claims = serde_json::from_slice(&decode(payload, "the claims are not base64url")?)
        .map_err(|e| TokenError::Claims(e.to_string()))?;
    if claims.iss != ISSUER {
        return Err(TokenError::Claims(format!("issuer {:?}, expected {ISSUER:?}", claims.iss)));
    }
    if claims.exp <= claims.iat {
        return Err(TokenError::Claims("it expires before it was issued".into()));
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    pub fn claims() -> Claims {
        Claims {
            iss: ISSUER.into(),
            jti: Uuid::new_v4(),
            sub: Uuid::new_v4(),
            customer_code: "ABC0001".into(),
            company: "Acme Corp".into(),
            limits: Limits { devices: Some(10), sites: Some(2), users: None },
            features: vec!["mqtt".into()],
            iat: 1_780_000_000,
            exp: 1_811_536_000,
            grace_days: 14,
        }
    }

    #[test]
    fn a_signed_licence_verifies_with_its_key_only() {
        let (key, _) = SigningKey::generate().unwrap();
        let (other, _) = SigningKey::generate().unwrap();
        let token = sign(&claims(), &key);
        assert!(token.starts_with("eyJhbGc"), "a JWT as the chart's values show it: {token}");
        assert_eq!(verify(&token, &key.public_key()).unwrap().customer_code, "ABC0001");
        assert_eq!(
            verify(&format!(" {token}\n"), &key.public_key()).unwrap(),
            verify(&token, &key.public_key()).unwrap()
        );
        assert_eq!(verify(&token, &other.public_key()), Err(TokenError::Signature), "a foreign key");
        // Forged by the other key, with the same claims: refused.
        assert_eq!(verify(&sign(&claims(), &other), &key.public_key()), Err(TokenError::Signature));
    }

    #[test]
    fn other_algorithms_and_unsigned_tokens_are_refused() {
        let (key, _) = SigningKey::generate().unwrap();
        let token = sign(&claims(), &key);
        let payload = token.split('.').nth(1).unwrap();
        for alg in ["none", "HS256", "RS256", "ES256"] {
            let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#));
            let forged = format!("{header}.{payload}.");
            assert_eq!(verify(&forged, &key.public_key()), Err(TokenError::Algorithm(alg.into())));
        }
        let crit = URL_SAFE_NO_PAD.encode(r#"{"alg":"EdDSA","crit":["exp"]}"#);
        assert!(matches!(verify(&format!("{crit}.{payload}.AA"), &key.public_key()), Err(TokenError::Malformed(_))));
        for bad in ["", "eyJhbGc...", "a.b", "a.b.c.d", "eyJhbGc.eyJ.%%%"] {
            assert!(matches!(verify(bad, &key.public_key()), Err(TokenError::Malformed(_))), "{bad}");
        }
    }

    #[test]
    fn claims_of_a_valid_signature_are_still_checked() {
        let (key, _) = SigningKey::generate().unwrap();
        let backwards = Claims { exp: 1, ..claims() };
        assert!(matches!(verify(&sign(&backwards, &key), &key.public_key()), Err(TokenError::Claims(_))));
        let stranger = Claims { iss: "someone-else".into(), ..claims() };
        assert!(matches!(verify(&sign(&stranger, &key), &key.public_key()), Err(TokenError::Claims(_))));
    }

    proptest! {
        /// Any change to any byte of a licence key makes it invalid (or, for the rare base64
        /// change that decodes to the same bytes, leaves the very same claims).
        #[test]
        fn tampering_with_any_character_is_detected(at in 0usize..400, c in proptest::char::range('-', 'z')) {
            let (key, _) = SigningKey::generate().unwrap();
            let original = claims();
            let token = sign(&original, &key);
            let at = at % token.len();
            let mut tampered: Vec<char> = token.chars().collect();
            prop_assume!(tampered[at] != c);
            tampered[at] = c;
            let tampered: String = tampered.into_iter().collect();
            if let Ok(claims) = verify(&tampered, &key.public_key()) {
                prop_assert_eq!(claims, original);
            }
        }

        /// Raising a limit in the claims, re-encoded by hand, never verifies.
        #[test]
        fn raised_limits_do_not_verify(devices in 11u32..100_000) {
            let (key, _) = SigningKey::generate().unwrap();
            let token = sign(&claims(), &key);
            let parts: Vec<&str> = token.split('.').collect();
            let raised = Claims { limits: Limits { devices: Some(devices), ..claims().limits }, ..claims() };
            let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&raised).unwrap());
            let forged = format!("{}.{payload}.{}", parts[0], parts[2]);
            prop_assert_eq!(verify(&forged, &key.public_key()), Err(TokenError::Signature));
        }
    }
}
