//! The key ring: one 256-bit secret in `<data dir>/keys/portal.key`, created with 0600
//! permissions on first start. CSRF tokens and signed cookies are HMACs under it, so they stay
//! valid across restarts while the file persists (the runbook's `_portal-keys` volume); losing
//! it invalidates forms in flight, never data. Session tokens are random and stored hashed in the
//! database, so sessions survive restarts even without it.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub const KEY_FILE: &str = "portal.key";

#[derive(Clone)]
pub struct KeyRing {
    key: Arc<[u8; 32]>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    #[error(
        "cannot use the key ring folder {path}: {source} (it must be writable by the portal's user, uid 1000 in the container)"
    )]
    Folder { path: PathBuf, source: std::io::Error },
    #[error("cannot read the key file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error(
        "the key file {path} is damaged (expected 64 hex characters); delete it to generate a new key (open forms must then be reloaded)"
    )]
    Damaged { path: PathBuf },
}

impl KeyRing {
    /// Loads the key from `<dir>/portal.key`, creating folder and key when absent.
    pub fn load_or_create(dir: &Path) -> Result<KeyRing, KeyRingError> {
        let folder_err = |source| KeyRingError::Folder { path: dir.to_path_buf(), source };
        std::fs::create_dir_all(dir).map_err(folder_err)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(folder_err)?;
        let path = dir.join(KEY_FILE);
        let mut fresh = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut fresh);
        // create_new: two processes starting at once must agree on one key, so the loser reads
        // the winner's file instead of overwriting it.
        match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
            Ok(mut file) => {
                file.write_all(hex(&fresh).as_bytes()).and_then(|()| file.sync_all()).map_err(folder_err)?;
                tracing::info!(path = %path.display(), "Created a new key ring");
                return Ok(KeyRing { key: Arc::new(fresh) });
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(source) => return Err(KeyRingError::Folder { path: dir.to_path_buf(), source }),
        }
        let text =
            std::fs::read_to_string(&path).map_err(|source| KeyRingError::Read { path: path.clone(), source })?;
        let key = unhex(text.trim()).ok_or(KeyRingError::Damaged { path: path.clone() })?;
        tracing::info!(path = %path.display(), "Loaded the key ring");
        Ok(KeyRing { key: Arc::new(key) })
    }

    /// HMAC-SHA256 of `data` under a key derived for `purpose`, so that a value signed for one
    /// use can never be replayed as another.
    #[expect(clippy::expect_used, reason = "HMAC takes a key of any length")]
    pub fn sign(&self, purpose: &str, data: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key.as_slice()).expect("HMAC takes any key length");
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(data);
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// Constant-time check of a value produced by [`KeyRing::sign`].
    pub fn verify(&self, purpose: &str, data: &[u8], signature: &str) -> bool {
        let expected = self.sign(purpose, data);
        expected.as_bytes().ct_eq(signature.as_bytes()).into()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_private_and_stable_across_loads() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let a = KeyRing::load_or_create(&keys).unwrap();
        let mode = std::fs::metadata(keys.join(KEY_FILE)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::metadata(&keys).unwrap().permissions().mode() & 0o777, 0o700);
        let b = KeyRing::load_or_create(&keys).unwrap();
        let sig = a.sign("csrf", b"session-1");
        assert!(b.verify("csrf", b"session-1", &sig), "a restart keeps the key");
        assert!(!b.verify("flash", b"session-1", &sig), "purposes are separated");
        assert!(!b.verify("csrf", b"session-2", &sig));
    }

    #[test]
    fn a_damaged_key_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(KEY_FILE), "not hex").unwrap();
        let err = KeyRing::load_or_create(dir.path()).err().unwrap();
        assert!(err.to_string().contains("is damaged (expected 64 hex characters)"), "{err}");
    }
}
