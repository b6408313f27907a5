//! Helm's release records, read natively from the `secret` and `configmap`
//! storage drivers.
//!
//! Helm stores each revision as an object named
//! `sh.helm.release.v1.<release>.v<revision>` labelled `name=<release>`,
//! `owner=helm`, `status=<status>`, `version=<revision>`. Its `release` data
//! key holds base64(gzip(JSON of the release)); a Secret's data is base64
//! once more on the wire (the client undoes that layer), a ConfigMap holds
//! the base64 text directly. Secrets have type `helm.sh/release.v1`.

use std::collections::BTreeMap;
use std::io::Read;

use base64::Engine;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::ListParams;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::cluster::{ApiEndpoint, ClusterError};

/// Decompressed releases larger than this are refused (Helm's own records
/// are limited to 1 MiB compressed by the Secret size limit).
pub const MAX_RELEASE_JSON: u64 = 64 * 1024 * 1024;

const GZIP_MAGIC: [u8; 3] = [0x1f, 0x8b, 0x08];

/// Where Helm keeps release records (`HELM_DRIVER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageDriver {
    Secret,
    ConfigMap,
}

impl StorageDriver {
    /// Helm's names for the drivers kleidia can read.
    pub fn from_helm_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "secret" | "secrets" => Some(Self::Secret),
            "configmap" | "configmaps" => Some(Self::ConfigMap),
            _ => None,
        }
    }

    /// The resource in RBAC terms (`secrets`, `configmaps`).
    pub fn resource(self) -> &'static str {
        match self {
            Self::Secret => "secrets",
            Self::ConfigMap => "configmaps",
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Self::Secret => "secret",
            Self::ConfigMap => "configmap",
        }
    }
}

/// A release record that cannot be read, naming the object.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(
        "{object} is not a readable Helm release record: {reason}. If it is not Helm's, remove the owner=helm label from it; otherwise inspect it with `kubectl get {object} -o yaml`"
    )]
    Corrupt { object: String, reason: String },
}

/// Why a payload could not be decoded (without the object's name).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("the `release` key is missing")]
    Missing,
    #[error("the payload is not base64: {0}")]
    Base64(String),
    #[error("the gzip stream is broken: {0}")]
    Gzip(String),
    #[error("the release JSON is larger than {MAX_RELEASE_JSON} bytes")]
    TooLarge,
    #[error("the JSON is not a Helm release: {0}")]
    Json(String),
}

/// One revision of a release, as Helm's `release.Release` serialises it.
/// Unknown fields are ignored; only what kleidia uses is modelled. Its
/// `Debug` leaves values out: they may hold passwords.
#[derive(Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct Release {
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    /// The revision number.
    pub version: u32,
    #[serde(default)]
    pub info: ReleaseInfo,
    #[serde(default)]
    pub chart: Option<Chart>,
    /// The values the user supplied (`helm get values`). May hold secrets:
    /// never print.
    #[serde(default)]
    pub config: Option<serde_json::Value>,
    #[serde(default)]
    pub manifest: String,
    /// The chart's hooks (migration Jobs ...) and how their last run went.
    #[serde(default)]
    pub hooks: Vec<Hook>,
}

/// A hook of a release, as Helm records it.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct Hook {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub events: Vec<String>,
    #[serde(default)]
    pub last_run: Option<HookRun>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct HookRun {
    /// `Succeeded`, `Failed`, `Running`, `Unknown` (empty when never run).
    #[serde(default)]
    pub phase: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct ReleaseInfo {
    #[serde(default)]
    pub first_deployed: Option<String>,
    #[serde(default)]
    pub last_deployed: Option<String>,
    #[serde(default)]
    pub deleted: Option<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub status: String,
}

#[derive(Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct Chart {
    #[serde(default)]
    pub metadata: Option<ChartMetadata>,
    /// The chart's default values (may be absent in hand-made records).
    #[serde(default)]
    pub values: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct ChartMetadata {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub version: String,
    #[serde(default, rename = "appVersion")]
    pub app_version: String,
}

impl std::fmt::Debug for Release {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Release")
            .field("name", &self.name)
            .field("namespace", &self.namespace)
            .field("version", &self.version)
            .field("info", &self.info)
            .field("chart", &self.chart)
            .field(
                "config",
                &self.config.as_ref().map(|_| "<values not shown>"),
            )
            .field("manifest_bytes", &self.manifest.len())
            .finish()
    }
}

impl std::fmt::Debug for Chart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chart")
            .field("metadata", &self.metadata)
            .field(
                "values",
                &self.values.as_ref().map(|_| "<values not shown>"),
            )
            .finish()
    }
}

impl Release {
    pub fn chart_metadata(&self) -> Option<&ChartMetadata> {
        self.chart.as_ref().and_then(|c| c.metadata.as_ref())
    }

    /// User-supplied values layered over the chart's defaults, as Helm
    /// renders them. For discovery only.
    pub fn merged_values(&self) -> serde_json::Value {
        let mut base = self
            .chart
            .as_ref()
            .and_then(|c| c.values.clone())
            .unwrap_or(serde_json::Value::Null);
        if let Some(user) = &self.config {
            merge_values(&mut base, user);
        }
        base
    }
}

fn merge_values(base: &mut serde_json::Value, over: &serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(existing) => merge_values(existing, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// Decodes Helm's payload text: base64, then gzip (if the gzip magic is
/// there, as Helm itself checks), then JSON.
pub fn decode_payload(text: &[u8]) -> Result<Release, DecodeError> {
    let trimmed: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if trimmed.is_empty() {
        return Err(DecodeError::Missing);
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&trimmed)
        .map_err(|e| DecodeError::Base64(e.to_string()))?;
    let json = if raw.starts_with(&GZIP_MAGIC) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .take(MAX_RELEASE_JSON + 1)
            .read_to_end(&mut out)
            .map_err(|e| DecodeError::Gzip(e.to_string()))?;
        if out.len() as u64 > MAX_RELEASE_JSON {
            return Err(DecodeError::TooLarge);
        }
        out
    } else {
        raw
    };
    // A release is a JSON object; serde would also accept a sequence of
    // field values, which Helm never writes.
    let value: serde_json::Value =
        serde_json::from_slice(&json).map_err(|e| DecodeError::Json(e.to_string()))?;
    if !value.is_object() {
        return Err(DecodeError::Json(format!(
            "expected a JSON object, found {}",
            match value {
                serde_json::Value::Array(_) => "an array",
                serde_json::Value::String(_) => "a string",
                serde_json::Value::Number(_) => "a number",
                serde_json::Value::Bool(_) => "a boolean",
                _ => "null",
            }
        )));
    }
    serde_json::from_value(value).map_err(|e| DecodeError::Json(e.to_string()))
}

/// Encodes a release the way Helm does (JSON, gzip, base64). Used by tests
/// and fixtures to create genuine-looking records.
pub fn encode_payload(release_json: &serde_json::Value) -> String {
    use std::io::Write;
    let json = serde_json::to_vec(release_json).expect("a JSON value serialises");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&json).expect("writing to memory");
    let bytes = gz.finish().expect("finishing in memory");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The Helm object name of a revision.
pub fn object_name(release: &str, revision: u32) -> String {
    format!("sh.helm.release.v1.{release}.v{revision}")
}

/// A revision known from labels alone (no payload fetched).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionLabel {
    pub object: String,
    pub revision: u32,
    pub status: String,
}

/// Picks the revision from an object's `version` label, else its name.
fn revision_of(name: &str, labels: &BTreeMap<String, String>) -> Option<u32> {
    labels
        .get("version")
        .and_then(|v| v.parse().ok())
        .or_else(|| name.rsplit_once(".v").and_then(|(_, n)| n.parse().ok()))
}

/// Reads release records in one namespace.
#[derive(Clone)]
pub struct ReleaseStore {
    client: kube::Client,
    api: ApiEndpoint,
    namespace: String,
    driver: StorageDriver,
}

impl ReleaseStore {
    pub fn new(
        client: kube::Client,
        api: ApiEndpoint,
        namespace: impl Into<String>,
        driver: StorageDriver,
    ) -> Self {
        Self {
            client,
            api,
            namespace: namespace.into(),
            driver,
        }
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn selector(releases: &[&str]) -> ListParams {
        match releases {
            [one] => ListParams::default().labels(&format!("owner=helm,name={one}")),
            many => {
                ListParams::default().labels(&format!("owner=helm,name in ({})", many.join(",")))
            }
        }
    }

    fn list_action(&self) -> String {
        format!(
            "list {} in namespace {}",
            self.driver.resource(),
            self.namespace
        )
    }

    fn shown(&self, name: &str) -> String {
        format!("{}/{name} -n {}", self.driver.kind(), self.namespace)
    }

    /// Every revision of `release`, from labels only (newest last).
    pub async fn revisions(&self, release: &str) -> Result<Vec<RevisionLabel>, ReleaseError> {
        Ok(self
            .revisions_of(&[release])
            .await?
            .remove(release)
            .unwrap_or_default())
    }

    /// The revisions of each of `releases` (newest last), from one
    /// metadata-only list; a release without records has no entry.
    pub async fn revisions_of(
        &self,
        releases: &[&str],
    ) -> Result<BTreeMap<String, Vec<RevisionLabel>>, ReleaseError> {
        let lp = Self::selector(releases);
        let metas = match self.list_metadata(&lp, false).await {
            // Servers that cannot serve metadata-only lists: read full objects.
            Err(kube::Error::Api(status)) if matches!(status.code, 406 | 415) => {
                self.list_metadata(&lp, true).await
            }
            other => other,
        }
        .map_err(|e| self.cluster_error(e, &self.list_action(), &releases.join(", ")))?;
        let mut out: BTreeMap<String, Vec<RevisionLabel>> = BTreeMap::new();
        for meta in metas {
            let name = meta.name.unwrap_or_default();
            let labels = meta.labels.unwrap_or_default();
            let revision = revision_of(&name, &labels).ok_or_else(|| ReleaseError::Corrupt {
                object: self.shown(&name),
                reason: "it has neither a numeric `version` label nor a `.v<N>` name suffix".into(),
            })?;
            let release = labels.get("name").cloned().unwrap_or_default();
            out.entry(release).or_default().push(RevisionLabel {
                object: name,
                revision,
                status: labels.get("status").cloned().unwrap_or_default(),
            });
        }
        for revs in out.values_mut() {
            revs.sort_by_key(|r| r.revision);
        }
        Ok(out)
    }

    /// The metadata of the records `lp` selects: from a metadata-only list,
    /// or from the full objects when `full`.
    async fn list_metadata(
        &self,
        lp: &ListParams,
        full: bool,
    ) -> Result<Vec<ObjectMeta>, kube::Error> {
        match self.driver {
            StorageDriver::Secret => self.metadata_of::<Secret>(lp, full).await,
            StorageDriver::ConfigMap => self.metadata_of::<ConfigMap>(lp, full).await,
        }
    }

    async fn metadata_of<K: Record>(
        &self,
        lp: &ListParams,
        full: bool,
    ) -> Result<Vec<ObjectMeta>, kube::Error> {
        let api = self.api::<K>();
        Ok(if full {
            api.list(lp)
                .await?
                .items
                .into_iter()
                .map(|o| o.meta().clone())
                .collect()
        } else {
            api.list_metadata(lp)
                .await?
                .items
                .into_iter()
                .map(|m| m.metadata)
                .collect()
        })
    }

    fn api<K: Record>(&self) -> Api<K> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The newest revision of `release`, fetching only that one record.
    pub async fn latest(&self, release: &str) -> Result<Option<Release>, ReleaseError> {
        let Some(newest) = self.revisions(release).await?.pop() else {
            return Ok(None);
        };
        self.get(&newest.object).await.map(Some)
    }

    /// Every revision of `release`, decoded (oldest first).
    pub async fn history(&self, release: &str) -> Result<Vec<Release>, ReleaseError> {
        self.histories(&[release])
            .await?
            .remove(release)
            .unwrap_or(Ok(Vec::new()))
    }

    /// Every revision of each of `releases`, decoded (oldest first), from
    /// one list. A release whose records cannot all be read has that error
    /// as its entry; a release without records has no entry.
    pub async fn histories(
        &self,
        releases: &[&str],
    ) -> Result<BTreeMap<String, Result<Vec<Release>, ReleaseError>>, ReleaseError> {
        let lp = Self::selector(releases);
        let records = match self.driver {
            StorageDriver::Secret => self.list_records::<Secret>(&lp, releases).await?,
            StorageDriver::ConfigMap => self.list_records::<ConfigMap>(&lp, releases).await?,
        };
        let mut out: BTreeMap<String, Result<Vec<Release>, ReleaseError>> = BTreeMap::new();
        for (name, record) in records {
            let entry = out.entry(name).or_insert_with(|| Ok(Vec::new()));
            match (entry, record) {
                (Ok(list), Ok(r)) => list.push(r),
                (entry @ Ok(_), Err(e)) => *entry = Err(e),
                (Err(_), _) => {}
            }
        }
        for list in out.values_mut().flat_map(|r| r.as_mut().ok()) {
            list.sort_by_key(|r| r.version);
        }
        Ok(out)
    }

    /// The records `lp` selects, each decoded or its error, by the release
    /// its `name` label names.
    async fn list_records<K: Record>(
        &self,
        lp: &ListParams,
        releases: &[&str],
    ) -> Result<Vec<(String, Result<Release, ReleaseError>)>, ReleaseError> {
        let list = self
            .api::<K>()
            .list(lp)
            .await
            .map_err(|e| self.cluster_error(e, &self.list_action(), &releases.join(", ")))?;
        Ok(list
            .items
            .iter()
            .map(|o| {
                let name = o
                    .meta()
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("name").cloned())
                    .unwrap_or_default();
                (name, self.decode(o))
            })
            .collect())
    }

    /// One record by object name.
    pub async fn get(&self, object: &str) -> Result<Release, ReleaseError> {
        match self.driver {
            StorageDriver::Secret => self.get_record::<Secret>(object).await,
            StorageDriver::ConfigMap => self.get_record::<ConfigMap>(object).await,
        }
    }

    async fn get_record<K: Record>(&self, object: &str) -> Result<Release, ReleaseError> {
        let action = format!(
            "get {} in namespace {}",
            self.driver.resource(),
            self.namespace
        );
        let o = self
            .api::<K>()
            .get(object)
            .await
            .map_err(|e| self.cluster_error(e, &action, object))?;
        self.decode(&o)
    }

    fn cluster_error(&self, e: kube::Error, action: &str, what: &str) -> ReleaseError {
        ReleaseError::Cluster(ClusterError::from_kube(
            e,
            &self.api,
            action,
            &self.shown(what),
        ))
    }

    fn decode<K: Record>(&self, o: &K) -> Result<Release, ReleaseError> {
        let name = o.meta().name.clone().unwrap_or_default();
        o.decode().map_err(|reason| ReleaseError::Corrupt {
            object: self.shown(&name),
            reason,
        })
    }
}

/// An object type Helm keeps release records in.
trait Record:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + Clone
    + DeserializeOwned
    + std::fmt::Debug
{
    /// The release this record holds; the error says what is wrong with it.
    fn decode(&self) -> Result<Release, String>;
}

impl Record for Secret {
    fn decode(&self) -> Result<Release, String> {
        decode_secret(self)
    }
}

impl Record for ConfigMap {
    fn decode(&self) -> Result<Release, String> {
        decode_configmap(self)
    }
}

/// Decodes a release Secret; the error says what is wrong with it.
pub fn decode_secret(s: &Secret) -> Result<Release, String> {
    if let Some(t) = s.type_.as_deref()
        && t != "helm.sh/release.v1"
    {
        return Err(format!("its type is {t:?}, not \"helm.sh/release.v1\""));
    }
    let payload = s
        .data
        .as_ref()
        .and_then(|d| d.get("release"))
        .map(|b| b.0.as_slice())
        .ok_or_else(|| DecodeError::Missing.to_string())?;
    decode_payload(payload).map_err(|e| e.to_string())
}

/// Decodes a release ConfigMap; the error says what is wrong with it.
pub fn decode_configmap(c: &ConfigMap) -> Result<Release, String> {
    let payload = c
        .data
        .as_ref()
        .and_then(|d| d.get("release"))
        .map(|s| s.as_bytes())
        .ok_or_else(|| DecodeError::Missing.to_string())?;
    decode_payload(payload).map_err(|e| e.to_string())
}

/// The newest `deployed` or `superseded` revision before `current`: what a
/// rollback or a recovery goes back to. A failed or pending revision never
/// is (`helm rollback REL 0` would take "the previous one", failed or not).
pub fn last_good(revisions: &[RevisionLabel], current: u32) -> Option<u32> {
    revisions
        .iter()
        .filter(|r| r.revision < current && matches!(r.status.as_str(), "deployed" | "superseded"))
        .map(|r| r.revision)
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use proptest::prelude::*;
    use serde_json::json;

    fn sample() -> serde_json::Value {
        json!({
            "name": "kleidia-data",
            "namespace": "kleidia",
            "version": 3,
            "info": {
                "first_deployed": "2026-01-01T10:00:00Z",
                "last_deployed": "2026-02-01T10:00:00.123456789Z",
                "deleted": "",
                "description": "Upgrade complete",
                "status": "deployed"
            },
            "chart": {
                "metadata": {"name": "kleidia-data", "version": "1.2.3", "appVersion": "15.8", "apiVersion": "v2"},
                "values": {"postgres": {"user": "yubiuser", "image": "postgres:15"}},
                "templates": [{"name": "templates/sts.yaml", "data": "YQ=="}]
            },
            "config": {"postgres": {"password": "s3cret"}},
            "manifest": "---\nkind: StatefulSet\n",
            "hooks": [],
            "labels": {"x": "y"}
        })
    }

    #[test]
    fn decodes_helm_encoding() {
        let text = encode_payload(&sample());
        let r = decode_payload(text.as_bytes()).unwrap();
        assert_eq!(r.name, "kleidia-data");
        assert_eq!(r.version, 3);
        assert_eq!(r.info.status, "deployed");
        assert_eq!(r.info.description, "Upgrade complete");
        assert_eq!(
            r.info.last_deployed.as_deref(),
            Some("2026-02-01T10:00:00.123456789Z")
        );
        let m = r.chart_metadata().unwrap();
        assert_eq!(
            (m.name.as_str(), m.version.as_str(), m.app_version.as_str()),
            ("kleidia-data", "1.2.3", "15.8")
        );
        assert_eq!(r.config.as_ref().unwrap()["postgres"]["password"], "s3cret");
        assert_eq!(r.manifest, "---\nkind: StatefulSet\n");
        let merged = r.merged_values();
        assert_eq!(merged["postgres"]["user"], "yubiuser");
        assert_eq!(merged["postgres"]["password"], "s3cret");
    }

    #[test]
    fn debug_output_leaves_values_out() {
        let r = decode_payload(encode_payload(&sample()).as_bytes()).unwrap();
        let shown = format!("{r:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(!shown.contains("yubiuser"), "{shown}");
        assert!(shown.contains("kleidia-data"), "{shown}");
    }

    #[test]
    fn uncompressed_json_is_accepted_as_helm_does() {
        let text = base64::engine::general_purpose::STANDARD.encode(sample().to_string());
        assert_eq!(decode_payload(text.as_bytes()).unwrap().version, 3);
    }

    #[test]
    fn secret_and_configmap_wrappers() {
        let text = encode_payload(&sample());
        let secret = Secret {
            type_: Some("helm.sh/release.v1".into()),
            data: Some([("release".to_string(), ByteString(text.clone().into_bytes()))].into()),
            ..Default::default()
        };
        assert_eq!(decode_secret(&secret).unwrap().name, "kleidia-data");
        let foreign = Secret {
            type_: Some("Opaque".into()),
            ..secret.clone()
        };
        assert!(decode_secret(&foreign).unwrap_err().contains("Opaque"));
        let empty = Secret {
            data: None,
            ..secret
        };
        assert!(decode_secret(&empty).unwrap_err().contains("missing"));
        let cm = ConfigMap {
            data: Some([("release".to_string(), text)].into()),
            ..Default::default()
        };
        assert_eq!(decode_configmap(&cm).unwrap().version, 3);
    }

    #[test]
    fn revision_comes_from_label_then_name() {
        let mut labels = BTreeMap::new();
        assert_eq!(revision_of("sh.helm.release.v1.a.v12", &labels), Some(12));
        labels.insert("version".into(), "7".into());
        assert_eq!(revision_of("sh.helm.release.v1.a.v12", &labels), Some(7));
        assert_eq!(revision_of("other", &BTreeMap::new()), None);
    }

    #[test]
    fn corrupt_gzip_and_wrong_json_are_named() {
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let bad_gz = b64(&[0x1f, 0x8b, 0x08, 0, 1, 2, 3]);
        assert!(matches!(
            decode_payload(bad_gz.as_bytes()),
            Err(DecodeError::Gzip(_))
        ));
        assert!(matches!(
            decode_payload(b"***"),
            Err(DecodeError::Base64(_))
        ));
        let not_release = b64(br#"{"hello": 1}"#);
        assert!(matches!(
            decode_payload(not_release.as_bytes()),
            Err(DecodeError::Json(_))
        ));
        assert_eq!(decode_payload(b"  "), Err(DecodeError::Missing));
    }

    fn arb_json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u32>().prop_map(serde_json::Value::from),
            ".{0,12}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("name".to_string()),
                        Just("version".to_string()),
                        Just("info".to_string()),
                        Just("chart".to_string()),
                        Just("metadata".to_string()),
                        Just("config".to_string()),
                        Just("manifest".to_string()),
                        Just("status".to_string()),
                        "[a-z]{1,6}",
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_payload(&bytes);
        }

        #[test]
        fn arbitrary_base64_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let text = base64::engine::general_purpose::STANDARD.encode(&bytes);
            let _ = decode_payload(text.as_bytes());
        }

        #[test]
        fn arbitrary_gzip_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512), cut in 0usize..600) {
            // Valid gzip of arbitrary bytes, then possibly truncated.
            use std::io::Write;
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&bytes).unwrap();
            let mut z = gz.finish().unwrap();
            z.truncate(cut.max(3));
            let text = base64::engine::general_purpose::STANDARD.encode(&z);
            let _ = decode_payload(text.as_bytes());
        }

        #[test]
        fn arbitrary_json_shapes_decode_or_fail_cleanly(v in arb_json()) {
            let text = encode_payload(&v);
            match decode_payload(text.as_bytes()) {
                Ok(r) => {
                    // Only objects with a string name and a u32 version decode.
                    prop_assert_eq!(v["name"].as_str(), Some(r.name.as_str()));
                    prop_assert_eq!(v["version"].as_u64(), Some(u64::from(r.version)));
                }
                Err(e) => prop_assert!(matches!(e, DecodeError::Json(_))),
            }
        }

        #[test]
        fn roundtrip_keeps_chart_fields(name in "[a-z][a-z0-9-]{0,20}", version in 1u32..10_000, chart_version in "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}", status in "(deployed|failed|pending-upgrade|superseded)") {
            let v = json!({"name": name, "version": version, "info": {"status": status},
                "chart": {"metadata": {"name": "c", "version": chart_version, "appVersion": "1"}}});
            let r = decode_payload(encode_payload(&v).as_bytes()).unwrap();
            prop_assert_eq!(&r.name, &name);
            prop_assert_eq!(r.version, version);
            prop_assert_eq!(&r.info.status, &status);
            prop_assert_eq!(&r.chart_metadata().unwrap().version, &chart_version);
        }
    }
}
