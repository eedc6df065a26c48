//! Encryption of retailer account secrets with the master key (XChaCha20-Poly1305).
//!
//! A sealed value is `nonce (24 bytes) || ciphertext || tag`; the nonce is random, which
//! the 192-bit nonce of XChaCha makes safe for any number of messages under one key.
//! The retailer account id is the associated data, so a ciphertext copied into another
//! row does not decrypt.

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::config::SecretText;

pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
/// The key file's name inside the data directory.
pub const KEY_FILE: &str = "master.key";

/// What the engine needs to sign in to a retailer. Never logged: `Debug` redacts it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secrets {
    pub password: String,
    /// RFC 4648 base32, upper case, without spaces or padding.
    pub totp_secret: Option<String>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("password", &"****")
            .field("totp_secret", &self.totp_secret.as_ref().map(|_| "****"))
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(
        "the secrets of retailer account {0} cannot be decrypted: the master key is not the one \
         they were encrypted with (every process sharing a database needs the same \
         ERRAND_MASTER_KEY), or the stored value was altered"
    )]
    Undecryptable(String),
    #[error("the secrets of retailer account {0} could not be encrypted")]
    Encryption(String),
}

/// The master key, ready to seal and open secrets. Cloning shares the key.
#[derive(Clone)]
pub struct Vault {
    cipher: Arc<XChaCha20Poly1305>,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Vault(****)")
    }
}

/// The vault's settings (flattened into the configuration's keys).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct VaultSettings {
    /// The key that encrypts retailer account secrets: base64 of 32 random bytes
    /// (`ERRAND_MASTER_KEY`). Unset means `<data_dir>/master.key`, created on first use;
    /// processes sharing one PostgreSQL database must all be given the same key.
    pub master_key: Option<SecretText>,
}

impl VaultSettings {
    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(key) = &self.master_key {
            key_from_setting(key.expose())?;
        }
        Ok(())
    }
}

impl Vault {
    pub fn from_key(key: [u8; KEY_LEN]) -> Vault {
        Vault {
            cipher: Arc::new(XChaCha20Poly1305::new(&key.into())),
        }
    }

    /// The key from the `master_key` setting (`ERRAND_MASTER_KEY`) or else from
    /// `<data_dir>/master.key`, which is created on first use. `shared_database`: other
    /// processes use the same database (PostgreSQL), so a local key file is a mistake
    /// waiting to happen.
    pub fn load(
        settings: &VaultSettings,
        data_dir: &Path,
        shared_database: bool,
    ) -> anyhow::Result<Vault> {
        let key = match &settings.master_key {
            Some(text) => key_from_setting(text.expose())?,
            None => {
                let path = data_dir.join(KEY_FILE);
                if shared_database {
                    // Another process with its own key file could not read what this
                    // one stores, nor the reverse.
                    tracing::warn!(
                        path = %path.display(),
                        "the master key comes from a local file while the database is PostgreSQL; \
                         give every Errand process sharing the database the same ERRAND_MASTER_KEY"
                    );
                }
                load_or_create_key_file(&path)?
            }
        };
        Ok(Vault::from_key(key))
    }

    /// Encrypts `secrets` (retailer account secrets, a webhook secret) for the row `id`.
    pub fn seal<T: Serialize>(&self, id: &str, secrets: &T) -> Result<Vec<u8>, VaultError> {
        let plaintext =
            serde_json::to_vec(secrets).map_err(|_| VaultError::Encryption(id.to_string()))?;
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &plaintext,
                    aad: id.as_bytes(),
                },
            )
            .map_err(|_| VaultError::Encryption(id.to_string()))?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        Ok(sealed)
    }

    /// Decrypts what [`Vault::seal`] made for the same `id`.
    pub fn open<T: serde::de::DeserializeOwned>(
        &self,
        id: &str,
        sealed: &[u8],
    ) -> Result<T, VaultError> {
        let undecryptable = || VaultError::Undecryptable(id.to_string());
        let (nonce, ciphertext) = sealed
            .split_first_chunk::<NONCE_LEN>()
            .ok_or_else(undecryptable)?;
        let plaintext = self
            .cipher
            .decrypt(
                &XNonce::from(*nonce),
                Payload {
                    msg: ciphertext,
                    aad: id.as_bytes(),
                },
            )
            .map_err(|_| undecryptable())?;
        serde_json::from_slice(&plaintext).map_err(|_| undecryptable())
    }
}

/// The key of the `master_key` setting; the error names the setting.
pub fn key_from_setting(text: &str) -> anyhow::Result<[u8; KEY_LEN]> {
    parse_key(text).map_err(|reason| {
        anyhow::anyhow!("invalid configuration: master_key (ERRAND_MASTER_KEY) {reason}")
    })
}

/// A key written as base64 (the setting and the key file use the same form, so a key file
/// can be copied into `ERRAND_MASTER_KEY`). The error completes "master_key …".
fn parse_key(text: &str) -> Result<[u8; KEY_LEN], String> {
    let bytes = BASE64
        .decode(text.trim())
        .map_err(|_| "is not valid base64".to_string())?;
    <[u8; KEY_LEN]>::try_from(bytes.as_slice()).map_err(|_| {
        format!(
            "must be {KEY_LEN} bytes in base64 (e.g. from `openssl rand -base64 32`), not {} bytes",
            bytes.len()
        )
    })
}

fn load_or_create_key_file(path: &Path) -> anyhow::Result<[u8; KEY_LEN]> {
    if !path.exists() {
        create_key_file(path)?;
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the master key file {}", path.display()))?;
    let key = parse_key(&text).map_err(|reason| {
        anyhow::anyhow!(
            "the master key file {} is malformed: it {reason}. Errand will not replace it, since \
             the retailer account secrets are encrypted with it: restore it from a backup, or \
             move it away to start with a new key (every stored retailer password is then lost)",
            path.display()
        )
    })?;
    warn_if_readable_by_others(path);
    Ok(key)
}

/// Writes a new random key, complete or not at all: the file appears under its name only
/// once written, and a concurrent first start that wins the race keeps its key.
fn create_key_file(path: &Path) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    crate::storage::files::private_dir(dir)?;
    let mut key = [0u8; KEY_LEN];
    rand::rng().fill_bytes(&mut key);
    let mut builder = tempfile::Builder::new();
    builder.prefix(".master.key.");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o600));
    }
    let mut file = builder
        .tempfile_in(dir)
        .with_context(|| format!("cannot write the master key file in {}", dir.display()))?;
    writeln!(file, "{}", BASE64.encode(key))
        .and_then(|()| file.as_file().sync_all())
        .with_context(|| format!("cannot write the master key file in {}", dir.display()))?;
    match file.persist_noclobber(path) {
        Ok(_) => {
            tracing::info!(path = %path.display(), "created a new master key for retailer account secrets");
            Ok(())
        }
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e.error)
            .with_context(|| format!("cannot create the master key file {}", path.display())),
    }
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %path.display(),
                "the master key file is readable by other users; `chmod 600` it"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> Secrets {
        Secrets {
            password: "hunter2-correct-horse".into(),
            totp_secret: Some("JBSWY3DPEHPK3PXP".into()),
        }
    }

    fn load(dir: &Path, master_key: Option<&str>) -> anyhow::Result<Vault> {
        let settings = VaultSettings {
            master_key: master_key.map(SecretText::from),
        };
        Vault::load(&settings, dir, false)
    }

    #[test]
    fn round_trip() {
        let vault = Vault::from_key([7; KEY_LEN]);
        let sealed = vault.seal("acct_abc12345", &secrets()).unwrap();
        assert!(!sealed.windows(b"hunter2".len()).any(|w| w == b"hunter2"));
        assert_eq!(
            vault.open::<Secrets>("acct_abc12345", &sealed).unwrap(),
            secrets()
        );
        // A fresh nonce each time.
        assert_ne!(sealed, vault.seal("acct_abc12345", &secrets()).unwrap());
    }

    #[test]
    fn another_key_cannot_open() {
        let sealed = Vault::from_key([7; KEY_LEN])
            .seal("acct_abc12345", &secrets())
            .unwrap();
        let error = Vault::from_key([8; KEY_LEN])
            .open::<Secrets>("acct_abc12345", &sealed)
            .unwrap_err();
        assert!(matches!(error, VaultError::Undecryptable(id) if id == "acct_abc12345"));
    }

    #[test]
    fn a_ciphertext_moved_to_another_row_cannot_be_opened() {
        let vault = Vault::from_key([7; KEY_LEN]);
        let sealed = vault.seal("acct_abc12345", &secrets()).unwrap();
        assert!(vault.open::<Secrets>("acct_zzz99999", &sealed).is_err());
        assert!(
            vault
                .open::<Secrets>("acct_abc12345", &sealed[..10])
                .is_err()
        );
    }

    #[test]
    fn debug_redacts_secrets() {
        let text = format!("{:?}", secrets());
        assert!(
            !text.contains("hunter2") && !text.contains("JBSW"),
            "{text}"
        );
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("nested/data");
        let sealed = load(&data_dir, None)
            .unwrap()
            .seal("acct_abc12345", &secrets())
            .unwrap();
        let path = data_dir.join(KEY_FILE);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = load(&data_dir, None).unwrap();
        assert_eq!(
            again.open::<Secrets>("acct_abc12345", &sealed).unwrap(),
            secrets()
        );
        // The file holds the setting's form: it can be handed to other processes.
        let text = std::fs::read_to_string(&path).unwrap();
        let from_setting = load(dir.path(), Some(text.trim())).unwrap();
        assert_eq!(
            from_setting
                .open::<Secrets>("acct_abc12345", &sealed)
                .unwrap(),
            secrets()
        );
    }

    #[test]
    fn a_malformed_key_file_stops_startup_and_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        std::fs::write(&path, "not a key\n").unwrap();
        let error = load(dir.path(), None).unwrap_err().to_string();
        assert!(
            error.contains("master key file") && error.contains("malformed"),
            "{error}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a key\n");
    }

    #[test]
    fn a_bad_setting_is_named() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["%%%", "c2hvcnQ="] {
            let error = load(dir.path(), Some(bad)).unwrap_err().to_string();
            assert!(error.contains("master_key"), "{error}");
        }
        assert!(!dir.path().join(KEY_FILE).exists());
    }
}
