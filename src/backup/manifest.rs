//! The bundle manifest: `manifest.json`, written last, whose presence under the
//! final folder name is what makes a bundle complete.
//!
//! Schema (`manifestVersion: 1`, camelCase JSON):
//!
//! | field            | meaning                                                        |
//! |------------------|----------------------------------------------------------------|
//! | `manifestVersion`| always `1` for this schema                                     |
//! | `tool`           | `{name, version}` of the program that wrote the bundle         |
//! | `namespace`      | Kubernetes namespace backed up                                 |
//! | `context`        | kubeconfig context name, when known                            |
//! | `server`         | API server URL, when known                                     |
//! | `startedAt`      | UTC time the backup started (RFC 3339)                         |
//! | `finishedAt`     | UTC time the bundle was completed (RFC 3339)                   |
//! | `components`     | components included: `data`, `platform`, `values`              |
//! | `versions`       | versions the servers report (`postgres`, `openbao`, ...), below |
//! | `releases`       | per Helm release: chart, chart version, app version, revision  |
//! | `openbao`        | storage type (`raft` or `file`) and how it was captured        |
//! | `encryption`     | `null`, or the age recipients / passphrase use                 |
//! | `files`          | every file of the bundle, see [`FileEntry`]                    |
//!
//! `versions` holds what the running servers answer, as `kubectl kleidia
//! versions` shows them: `postgres` (`SELECT version()`, e.g. `15.8`),
//! `openbao` (`sys/seal-status`), `backend` (`/api/health`) and
//! `kubernetes` (`/version`). When a server cannot be asked, the release's
//! chart appVersion is recorded instead, with the suffix
//! ` (chart appVersion)` so it is never mistaken for a server's answer.
//!
//! Checksums: `files[].sha256` and `files[].size` are always of the **stored
//! bytes** (after compression and encryption), so `backup verify` checks
//! integrity without any key. For files that are not encrypted, the size of
//! the original content (`contentSize`) is recorded too, and for files
//! stored as they are, `contentSha256` (equal to `sha256`). Compressed
//! content is covered by zstd's frame checksum instead, which `verify`
//! checks while decompressing: hashing it a second time during the backup
//! would cost as much CPU as compressing it. For encrypted files the content
//! size and hash are deliberately left out, since a plain hash of a small
//! secret (a values file) would allow guessing it offline. Encrypted content
//! is authenticated by age itself.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The schema version written by this program.
pub const MANIFEST_VERSION: u32 = 1;

/// File name of the manifest inside a bundle.
pub const MANIFEST_FILE: &str = "manifest.json";

/// The whole manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub manifest_version: u32,
    pub tool: ToolInfo,
    pub namespace: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub components: Vec<Component>,
    /// Component name (`postgres`, `openbao`, `backend`, `kubernetes`) ->
    /// the version its server reports (`... (chart appVersion)` when it
    /// could not be asked).
    #[serde(default)]
    pub versions: BTreeMap<String, String>,
    #[serde(default)]
    pub releases: Vec<ReleaseRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openbao: Option<OpenBaoRecord>,
    #[serde(default)]
    pub encryption: Option<EncryptionRecord>,
    #[serde(default)]
    pub files: Vec<FileEntry>,
}

impl Manifest {
    /// A manifest with the fields every bundle has; the writer fills `files`
    /// and `finishedAt` when the bundle is finished.
    pub fn new(namespace: &str, started_at: DateTime<Utc>) -> Self {
        Manifest {
            manifest_version: MANIFEST_VERSION,
            tool: ToolInfo::current(),
            namespace: namespace.to_owned(),
            context: None,
            server: None,
            started_at,
            finished_at: started_at,
            components: Vec::new(),
            versions: BTreeMap::new(),
            releases: Vec::new(),
            openbao: None,
            encryption: None,
            files: Vec::new(),
        }
    }

    /// The entry for a file, by its path inside the bundle.
    pub fn file(&self, path: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.path == path)
    }

    /// Total stored size of the bundle's files.
    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// Which program wrote the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolInfo {
    pub name: String,
    pub version: String,
}

impl ToolInfo {
    /// This program.
    pub fn current() -> Self {
        ToolInfo {
            name: env!("CARGO_PKG_NAME").to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }
}

/// The parts of a deployment a backup can include (`--components`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Component {
    /// PostgreSQL (`kleidia-data`): `pg_dumpall`.
    Data,
    /// OpenBao (`kleidia-platform`): raft snapshot or data folder archive.
    Platform,
    /// Helm values and release records of every release.
    Values,
}

impl Component {
    /// All components, in the order they are backed up.
    pub const ALL: [Component; 3] = [Component::Data, Component::Platform, Component::Values];

    /// The name used on the command line and in the manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Data => "data",
            Component::Platform => "platform",
            Component::Values => "values",
        }
    }
}

impl std::fmt::Display for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Component {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "data" => Ok(Component::Data),
            "platform" => Ok(Component::Platform),
            "values" => Ok(Component::Values),
            other => Err(format!(
                "unknown component '{other}': expected data, platform or values"
            )),
        }
    }
}

/// One Helm release as it was when backed up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseRecord {
    pub name: String,
    pub chart: String,
    pub chart_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_version: Option<String>,
    pub revision: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// How OpenBao's data was captured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenBaoRecord {
    pub storage: OpenBaoStorage,
    /// The bundle file holding it (`openbao.snap` or `openbao-data.tar.zst`).
    pub file: String,
    /// Set for file storage: the archive was taken from a running server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// Whether the unseal key Secret is in the bundle (`--include-unseal-key`).
    #[serde(default)]
    pub unseal_key_included: bool,
}

/// OpenBao's storage backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpenBaoStorage {
    /// Integrated storage: a consistent snapshot from the API.
    Raft,
    /// File storage: an archive of the data folder.
    File,
}

/// Encryption of the bundle's files (never of the manifest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EncryptionRecord {
    /// Always `age` (age-encryption.org/v1).
    pub scheme: String,
    /// X25519 recipients (public keys) the files are encrypted to.
    #[serde(default)]
    pub recipients: Vec<String>,
    /// Whether the files are encrypted with a passphrase (scrypt).
    #[serde(default)]
    pub passphrase: bool,
}

/// What a file of the bundle holds; decides which checks `verify` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileKind {
    /// `pg_dumpall` output (SQL), ends with the completion marker.
    PostgresDump,
    /// OpenBao raft snapshot (gzipped tar with `SHA256SUMS`).
    OpenbaoRaftSnapshot,
    /// Tar archive of OpenBao's data folder (file storage).
    OpenbaoDataArchive,
    /// `helm get values` output (YAML).
    HelmValues,
    /// Release record (JSON: chart, versions, revision).
    HelmRelease,
    /// The OpenBao unseal key Secret (JSON).
    OpenbaoUnsealKey,
    /// Anything else.
    Other,
}

/// One file of the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileEntry {
    /// Path inside the bundle, `/`-separated.
    pub path: String,
    pub kind: FileKind,
    /// Stored size in bytes.
    pub size: u64,
    /// SHA-256 (hex) of the stored bytes.
    pub sha256: String,
    /// `zstd` or `none`.
    pub compression: Compression,
    /// Whether the stored bytes are an age file.
    pub encrypted: bool,
    /// Size of the original content (only for unencrypted files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_size: Option<u64>,
    /// SHA-256 of the original content (only for files stored unencrypted
    /// and uncompressed; `verify` checks it wherever a manifest has it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_sha256: Option<String>,
}

/// Compression of a stored file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Zstd,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trips_with_camel_case_fields() {
        let mut m = Manifest::new("kleidia", Utc::now());
        m.components = vec![Component::Data];
        m.files.push(FileEntry {
            path: "postgres.sql.zst".into(),
            kind: FileKind::PostgresDump,
            size: 10,
            sha256: "ab".into(),
            compression: Compression::Zstd,
            encrypted: false,
            content_size: Some(20),
            content_sha256: Some("cd".into()),
        });
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["manifestVersion"], 1);
        assert_eq!(json["files"][0]["kind"], "postgres-dump");
        assert_eq!(json["files"][0]["contentSha256"], "cd");
        let back: Manifest = serde_json::from_value(json).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn components_parse_from_their_names() {
        assert_eq!("data".parse::<Component>().unwrap(), Component::Data);
        assert!(
            "db".parse::<Component>()
                .unwrap_err()
                .contains("data, platform")
        );
    }
}
