//! age encryption of bundle files: to X25519 recipients (`age1...`) or with a
//! passphrase (scrypt) taken from an environment variable; and the matching
//! decryption for `verify` (an identity file or the passphrase variable).
//!
//! Files are standard age files, so `age -d` or `rage -d` can open them by
//! hand (see `docs/restore.md`).

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::secrecy::SecretString;

use super::manifest::EncryptionRecord;

/// Errors of encryption setup and decryption.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error(
        "'{value}' is not an age X25519 recipient ({reason}); pass a public key starting with 'age1', as printed by 'age-keygen -y KEYFILE'"
    )]
    BadRecipient { value: String, reason: String },
    #[error(
        "environment variable {var} is {found}; export the passphrase in {var} (it is read from the environment so it never appears on a command line)"
    )]
    PassphraseVar { var: String, found: &'static str },
    #[error(
        "age cannot encrypt a file both to recipients and with a passphrase; use either --encrypt-to or --passphrase-env"
    )]
    MixedRecipientAndPassphrase,
    #[error(
        "cannot read identity file {path}: {source}; pass an age identity file (AGE-SECRET-KEY-...) with --identity"
    )]
    IdentityFile { path: PathBuf, source: io::Error },
    #[error(
        "identity file {path} holds no usable age identity ({reason}); pass the file written by 'age-keygen'"
    )]
    BadIdentityFile { path: PathBuf, reason: String },
    #[error("cannot set up encryption: {0}")]
    Encrypt(String),
    #[error(
        "cannot decrypt: {0}; check that --identity names the key the bundle was encrypted to, or that the passphrase in --passphrase-env is right"
    )]
    Decrypt(String),
}

/// How bundle files are encrypted.
#[derive(Clone)]
pub struct Encryption {
    recipients: Vec<age::x25519::Recipient>,
    passphrase: Option<SecretString>,
}

impl std::fmt::Debug for Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encryption")
            .field("recipients", &self.recipients.len())
            .field("passphrase", &self.passphrase.is_some())
            .finish()
    }
}

impl Encryption {
    /// Encryption to X25519 recipients (`age1...`).
    pub fn to_recipients<S: AsRef<str>>(recipients: &[S]) -> Result<Self, CryptoError> {
        let recipients = recipients
            .iter()
            .map(|r| {
                let r = r.as_ref().trim();
                age::x25519::Recipient::from_str(r).map_err(|reason| CryptoError::BadRecipient {
                    value: r.to_owned(),
                    reason: reason.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Encryption {
            recipients,
            passphrase: None,
        })
    }

    /// Encryption with a passphrase.
    pub fn with_passphrase(passphrase: SecretString) -> Self {
        Encryption {
            recipients: Vec::new(),
            passphrase: Some(passphrase),
        }
    }

    /// Encryption from the command line's choices: `--encrypt-to` recipients
    /// and/or `--passphrase-env VAR`. `None` when neither was given.
    pub fn from_options(
        recipients: &[String],
        passphrase_env: Option<&str>,
    ) -> Result<Option<Self>, CryptoError> {
        match (recipients.is_empty(), passphrase_env) {
            (true, None) => Ok(None),
            (false, Some(_)) => Err(CryptoError::MixedRecipientAndPassphrase),
            (false, None) => Self::to_recipients(recipients).map(Some),
            (true, Some(var)) => Ok(Some(Self::with_passphrase(passphrase_from_env(var)?))),
        }
    }

    /// What the manifest records about this encryption (public parts only).
    pub fn record(&self) -> EncryptionRecord {
        EncryptionRecord {
            scheme: "age".to_owned(),
            recipients: self.recipients.iter().map(|r| r.to_string()).collect(),
            passphrase: self.passphrase.is_some(),
        }
    }

    /// Wraps `output` in an age stream writer; call `finish()` on it.
    pub(crate) fn wrap<W: Write>(
        &self,
        output: W,
    ) -> Result<age::stream::StreamWriter<W>, io::Error> {
        let encryptor = if let Some(pass) = &self.passphrase {
            age::Encryptor::with_user_passphrase(pass.clone())
        } else {
            age::Encryptor::with_recipients(
                self.recipients.iter().map(|r| r as &dyn age::Recipient),
            )
            .map_err(|e| io::Error::other(CryptoError::Encrypt(e.to_string())))?
        };
        encryptor.wrap_output(output)
    }
}

/// Reads a passphrase from an environment variable; empty or missing is an error.
pub fn passphrase_from_env(var: &str) -> Result<SecretString, CryptoError> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Ok(SecretString::from(v)),
        Ok(_) => Err(CryptoError::PassphraseVar {
            var: var.to_owned(),
            found: "empty",
        }),
        Err(std::env::VarError::NotPresent) => Err(CryptoError::PassphraseVar {
            var: var.to_owned(),
            found: "not set",
        }),
        Err(std::env::VarError::NotUnicode(_)) => Err(CryptoError::PassphraseVar {
            var: var.to_owned(),
            found: "not valid UTF-8",
        }),
    }
}

/// Keys that open encrypted bundle files.
pub struct Decryption {
    identities: Vec<Box<dyn age::Identity>>,
    passphrase: bool,
    /// Recipients (public keys) of the X25519 identities, to tell the user
    /// which key they passed when it does not match the bundle.
    recipients: Vec<String>,
}

impl std::fmt::Debug for Decryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decryption")
            .field("identities", &self.identities.len())
            .field("passphrase", &self.passphrase)
            .field("recipients", &self.recipients)
            .finish()
    }
}

impl Decryption {
    /// The recipients (`age1...`) matching the X25519 identities given.
    pub fn recipients(&self) -> &[String] {
        &self.recipients
    }

    /// Whether a passphrase was given.
    pub fn has_passphrase(&self) -> bool {
        self.passphrase
    }

    /// Identities from an age identity file (`AGE-SECRET-KEY-1...` lines).
    pub fn from_identity_file(path: &Path) -> Result<Self, CryptoError> {
        let data = fs::read(path).map_err(|source| CryptoError::IdentityFile {
            path: path.to_owned(),
            source,
        })?;
        let file = age::IdentityFile::from_buffer(&data[..]).map_err(|e| {
            CryptoError::BadIdentityFile {
                path: path.to_owned(),
                reason: e.to_string(),
            }
        })?;
        let identities = file
            .into_identities()
            .map_err(|e| CryptoError::BadIdentityFile {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
        if identities.is_empty() {
            return Err(CryptoError::BadIdentityFile {
                path: path.to_owned(),
                reason: "no identities in the file".to_owned(),
            });
        }
        let recipients = String::from_utf8_lossy(&data)
            .lines()
            .filter_map(|l| age::x25519::Identity::from_str(l.trim()).ok())
            .map(|i| i.to_public().to_string())
            .collect();
        Ok(Decryption {
            identities,
            passphrase: false,
            recipients,
        })
    }

    /// A passphrase identity.
    pub fn with_passphrase(passphrase: SecretString) -> Self {
        Decryption {
            identities: vec![Box::new(age::scrypt::Identity::new(passphrase))],
            passphrase: true,
            recipients: Vec::new(),
        }
    }

    /// From `--identity FILE` and/or `--passphrase-env VAR`; `None` when neither.
    pub fn from_options(
        identity: Option<&Path>,
        passphrase_env: Option<&str>,
    ) -> Result<Option<Self>, CryptoError> {
        let mut out: Option<Decryption> = None;
        if let Some(path) = identity {
            out = Some(Self::from_identity_file(path)?);
        }
        if let Some(var) = passphrase_env {
            let pass = Self::with_passphrase(passphrase_from_env(var)?);
            match &mut out {
                Some(d) => {
                    d.identities.extend(pass.identities);
                    d.passphrase = true;
                }
                None => out = Some(pass),
            }
        }
        Ok(out)
    }

    /// A reader of the plaintext of an age file.
    pub fn open<'a, R: Read + 'a>(&'a self, input: R) -> Result<Box<dyn Read + 'a>, CryptoError> {
        let decryptor =
            age::Decryptor::new(input).map_err(|e| CryptoError::Decrypt(e.to_string()))?;
        let reader = decryptor
            .decrypt(
                self.identities
                    .iter()
                    .map(|i| i.as_ref() as &dyn age::Identity),
            )
            .map_err(|e| CryptoError::Decrypt(e.to_string()))?;
        Ok(Box::new(reader))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixing_recipients_and_passphrase_is_refused() {
        let id = age::x25519::Identity::generate();
        let err = Encryption::from_options(&[id.to_public().to_string()], Some("X")).unwrap_err();
        assert!(matches!(err, CryptoError::MixedRecipientAndPassphrase));
    }

    #[test]
    fn bad_recipient_names_the_value() {
        let err = Encryption::to_recipients(&["age1nope"]).unwrap_err();
        assert!(err.to_string().contains("age1nope"), "{err}");
    }

    #[test]
    fn recipient_round_trip() {
        let id = age::x25519::Identity::generate();
        let enc = Encryption::to_recipients(&[id.to_public().to_string()]).unwrap();
        let mut w = enc.wrap(Vec::new()).unwrap();
        w.write_all(b"hello").unwrap();
        let stored = w.finish().unwrap();
        let dec = Decryption {
            identities: vec![Box::new(id)],
            passphrase: false,
            recipients: Vec::new(),
        };
        let mut out = String::new();
        dec.open(&stored[..])
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "hello");
        assert_eq!(enc.record().recipients.len(), 1);
    }

    #[test]
    fn identity_file_names_its_recipient() {
        use age::secrecy::ExposeSecret;
        let id = age::x25519::Identity::generate();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.txt");
        fs::write(
            &path,
            format!(
                "# created: now\n# public key: {}\n{}\n",
                id.to_public(),
                id.to_string().expose_secret()
            ),
        )
        .unwrap();
        let dec = Decryption::from_identity_file(&path).unwrap();
        assert_eq!(dec.recipients(), [id.to_public().to_string()]);
        assert!(!dec.has_passphrase());
    }
}
