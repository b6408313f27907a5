//! The optional configuration file (`--config`, default
//! `<user config dir>/kleidia/config.yaml`): release names and pins for
//! deployments whose names discovery cannot guess.
//!
//! ```yaml
//! namespace: kleidia
//! releases:
//!   platform: kleidia-platform
//!   data: kleidia-data
//!   services: kleidia-services
//! helm:
//!   driver: secret          # or configmap
//! postgres:
//!   pod: kleidia-data-postgres-cluster-0   # or a selector:
//!   selector: app=postgres-cluster
//!   container: postgres
//!   user: yubiuser
//!   database: kleidia
//! openbao:
//!   selector: app.kubernetes.io/name=openbao
//!   container: openbao
//! backend:
//!   service: kleidia-services-backend
//!   port: 8080
//! backup:
//!   requireEncryption: true   # refuse unencrypted bundles (default false)
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "cannot read the configuration file {path}: {source}. Pass an existing file with --config, or remove the flag to use defaults"
    )]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the configuration file {path} is not valid: {message}. See docs/versions.md for the file's fields"
    )]
    Parse { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigFile {
    pub namespace: Option<String>,
    #[serde(default)]
    pub releases: ReleaseNamesConfig,
    #[serde(default)]
    pub helm: HelmConfig,
    #[serde(default)]
    pub postgres: PostgresPins,
    #[serde(default)]
    pub openbao: OpenbaoPins,
    #[serde(default)]
    pub backend: BackendPins,
    #[serde(default)]
    pub backup: BackupConfig,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReleaseNamesConfig {
    pub platform: Option<String>,
    pub data: Option<String>,
    pub services: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HelmConfig {
    pub driver: Option<String>,
    pub bin: Option<PathBuf>,
}

/// Pins for the PostgreSQL pod; any field set here wins over discovery.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PostgresPins {
    pub pod: Option<String>,
    pub selector: Option<String>,
    pub container: Option<String>,
    pub user: Option<String>,
    pub database: Option<String>,
}

/// Pins for the OpenBao pod.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OpenbaoPins {
    pub pod: Option<String>,
    pub selector: Option<String>,
    pub container: Option<String>,
}

/// Pins for the backend Service serving `/api/health`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendPins {
    pub service: Option<String>,
    pub port: Option<u16>,
}

/// Backup policy.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupConfig {
    /// Every bundle must be encrypted (`--encrypt-to` or
    /// `--passphrase-env`): `backup create` and the backups `upgrade` and
    /// `rollback` take refuse to write one in clear.
    #[serde(default)]
    pub require_encryption: bool,
}

impl ConfigFile {
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Loads `explicit` (which must exist) or the default file (which may
    /// be absent).
    pub fn load(explicit: Option<&Path>) -> Result<(Self, Option<PathBuf>), ConfigError> {
        let (path, required) = match explicit {
            Some(p) => (p.to_path_buf(), true),
            None => match default_path() {
                Some(p) => (p, false),
                None => return Ok((Self::default(), None)),
            },
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok((Self::parse(&text, &path)?, Some(path))),
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                Ok((Self::default(), None))
            }
            Err(source) => Err(ConfigError::Read { path, source }),
        }
    }
}

/// `<user config dir>/kleidia/config.yaml`.
pub fn default_path() -> Option<PathBuf> {
    dirs::config_dir().map(|d| d.join("kleidia").join("config.yaml"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_file_parses() {
        let text = r#"
namespace: prod
releases: { platform: p, data: d, services: s }
helm: { driver: configmap }
postgres: { selector: "app=pg", container: db, user: kleidiauser, database: kleidia }
openbao: { pod: bao-0, container: openbao }
backend: { service: api, port: 9000 }
backup: { requireEncryption: true }
"#;
        let c = ConfigFile::parse(text, Path::new("c.yaml")).unwrap();
        assert_eq!(c.namespace.as_deref(), Some("prod"));
        assert_eq!(c.releases.data.as_deref(), Some("d"));
        assert_eq!(c.postgres.user.as_deref(), Some("kleidiauser"));
        assert_eq!(c.openbao.pod.as_deref(), Some("bao-0"));
        assert_eq!(c.backend.port, Some(9000));
        assert_eq!(c.helm.driver.as_deref(), Some("configmap"));
        assert!(c.backup.require_encryption);
        let plain = ConfigFile::parse("namespace: x", Path::new("c.yaml")).unwrap();
        assert!(!plain.backup.require_encryption);
    }

    #[test]
    fn unknown_fields_are_rejected_with_the_path() {
        let err = ConfigFile::parse("postgress: {}", Path::new("/x/c.yaml")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("/x/c.yaml"), "{msg}");
        assert!(msg.contains("postgress"), "{msg}");
    }

    #[test]
    fn missing_explicit_file_is_an_error_but_empty_file_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.yaml");
        assert!(ConfigFile::load(Some(&missing)).is_err());
        let empty = dir.path().join("empty.yaml");
        std::fs::write(&empty, "").unwrap();
        assert_eq!(
            ConfigFile::load(Some(&empty)).unwrap().0,
            ConfigFile::default()
        );
    }
}
