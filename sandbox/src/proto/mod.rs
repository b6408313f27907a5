//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`).
//!
//! The wire format is the 4 magic bytes `k8s\0` followed by a
//! `runtime.Unknown` message whose `typeMeta` names the kind and whose `raw`
//! bytes hold the object message. Client-go based clients (Helm's release
//! storage among them) send Secrets, ConfigMaps and DeleteOptions this way.
//! [`decode`] turns such a body into the JSON object a JSON client would
//! have sent, so the rest of the API server only ever sees JSON.
//!
//! Secret, ConfigMap and DeleteOptions are decoded by hand-written message
//! structs; every other registered kind (kubectl's `create deployment`,
//! `create job`, `create service`... send protobuf too) by a generic decoder
//! walking a message table generated from the same `generated.proto` files
//! (k8s.io/api, k8s.io/apimachinery meta/v1, runtime, resource, intstr):
//! regenerate `schema.rs` with `generate_schema.py <registered kinds'
//! messages> -- <generated.proto files> -- <package>=<types.go>...` (the Go
//! types tell which zero values JSON clients omit), then `rustfmt` it.

mod generic;
mod schema;

pub(crate) use generic::{Message as SchemaMessage, Ty as SchemaType};

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use prost::Message;
use serde_json::{Map, Value, json};

/// The magic prefix of every Kubernetes protobuf body.
pub const MAGIC: &[u8; 4] = b"k8s\0";

/// The content type of Kubernetes protobuf bodies.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// Why a protobuf body could not be turned into JSON (or back).
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    #[error(
        "the request body is not Kubernetes protobuf: it does not start with the magic bytes \"k8s\\0\"; send it with the Content-Type that matches its encoding"
    )]
    NoMagic,
    #[error("the protobuf request body is not a valid runtime.Unknown envelope: {0}")]
    Envelope(#[source] prost::DecodeError),
    #[error(
        "protobuf request bodies are understood for the sandbox's registered kinds only, found apiVersion {api_version:?} kind {kind:?}; send this object as JSON instead"
    )]
    UnsupportedKind { api_version: String, kind: String },
    #[error(
        "the protobuf request body uses content encoding {0:?}; only unencoded bodies are understood"
    )]
    ContentEncoding(String),
    #[error("the {kind} in the protobuf request body is not valid: {source}")]
    Object {
        kind: String,
        #[source]
        source: prost::DecodeError,
    },
    #[error("the {kind} in the protobuf request body is not valid: {problem}")]
    Wire { kind: String, problem: String },
    #[error("cannot encode the object as protobuf: {0}")]
    Encode(String),
}

impl ProtoError {
    /// HTTP status code for the error: 415 UnsupportedMediaType for kinds
    /// not understood, 400 BadRequest otherwise.
    pub fn status_code(&self) -> u16 {
        match self {
            ProtoError::UnsupportedKind { .. } | ProtoError::ContentEncoding(_) => 415,
            _ => 400,
        }
    }
}

/// `runtime.Unknown`.
#[derive(Clone, PartialEq, Message)]
pub struct Unknown {
    #[prost(message, optional, tag = "1")]
    pub type_meta: Option<TypeMeta>,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub raw: Option<Vec<u8>>,
    #[prost(string, optional, tag = "3")]
    pub content_encoding: Option<String>,
    #[prost(string, optional, tag = "4")]
    pub content_type: Option<String>,
}

/// `runtime.TypeMeta`.
#[derive(Clone, PartialEq, Message)]
pub struct TypeMeta {
    #[prost(string, optional, tag = "1")]
    pub api_version: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub kind: Option<String>,
}

/// `meta.v1.Time`.
#[derive(Clone, PartialEq, Message)]
pub struct Time {
    #[prost(int64, optional, tag = "1")]
    pub seconds: Option<i64>,
    #[prost(int32, optional, tag = "2")]
    pub nanos: Option<i32>,
}

/// `meta.v1.OwnerReference`.
#[derive(Clone, PartialEq, Message)]
pub struct OwnerReference {
    #[prost(string, optional, tag = "1")]
    pub kind: Option<String>,
    #[prost(string, optional, tag = "3")]
    pub name: Option<String>,
    #[prost(string, optional, tag = "4")]
    pub uid: Option<String>,
    #[prost(string, optional, tag = "5")]
    pub api_version: Option<String>,
    #[prost(bool, optional, tag = "6")]
    pub controller: Option<bool>,
    #[prost(bool, optional, tag = "7")]
    pub block_owner_deletion: Option<bool>,
}

/// `meta.v1.FieldsV1`.
#[derive(Clone, PartialEq, Message)]
pub struct FieldsV1 {
    #[prost(bytes = "vec", optional, tag = "1")]
    pub raw: Option<Vec<u8>>,
}

/// `meta.v1.ManagedFieldsEntry`.
#[derive(Clone, PartialEq, Message)]
pub struct ManagedFieldsEntry {
    #[prost(string, optional, tag = "1")]
    pub manager: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub operation: Option<String>,
    #[prost(string, optional, tag = "3")]
    pub api_version: Option<String>,
    #[prost(message, optional, tag = "4")]
    pub time: Option<Time>,
    #[prost(string, optional, tag = "6")]
    pub fields_type: Option<String>,
    #[prost(message, optional, tag = "7")]
    pub fields_v1: Option<FieldsV1>,
    #[prost(string, optional, tag = "8")]
    pub subresource: Option<String>,
}

/// `meta.v1.ObjectMeta`.
#[derive(Clone, PartialEq, Message)]
pub struct ObjectMeta {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub generate_name: Option<String>,
    #[prost(string, optional, tag = "3")]
    pub namespace: Option<String>,
    #[prost(string, optional, tag = "4")]
    pub self_link: Option<String>,
    #[prost(string, optional, tag = "5")]
    pub uid: Option<String>,
    #[prost(string, optional, tag = "6")]
    pub resource_version: Option<String>,
    #[prost(int64, optional, tag = "7")]
    pub generation: Option<i64>,
    #[prost(message, optional, tag = "8")]
    pub creation_timestamp: Option<Time>,
    #[prost(message, optional, tag = "9")]
    pub deletion_timestamp: Option<Time>,
    #[prost(int64, optional, tag = "10")]
    pub deletion_grace_period_seconds: Option<i64>,
    #[prost(btree_map = "string, string", tag = "11")]
    pub labels: BTreeMap<String, String>,
    #[prost(btree_map = "string, string", tag = "12")]
    pub annotations: BTreeMap<String, String>,
    #[prost(message, repeated, tag = "13")]
    pub owner_references: Vec<OwnerReference>,
    #[prost(string, repeated, tag = "14")]
    pub finalizers: Vec<String>,
    #[prost(message, repeated, tag = "17")]
    pub managed_fields: Vec<ManagedFieldsEntry>,
}

/// `core.v1.Secret`.
#[derive(Clone, PartialEq, Message)]
pub struct Secret {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<ObjectMeta>,
    #[prost(btree_map = "string, bytes", tag = "2")]
    pub data: BTreeMap<String, Vec<u8>>,
    #[prost(string, optional, tag = "3")]
    pub r#type: Option<String>,
    #[prost(btree_map = "string, string", tag = "4")]
    pub string_data: BTreeMap<String, String>,
    #[prost(bool, optional, tag = "5")]
    pub immutable: Option<bool>,
}

/// `core.v1.ConfigMap`.
#[derive(Clone, PartialEq, Message)]
pub struct ConfigMap {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<ObjectMeta>,
    #[prost(btree_map = "string, string", tag = "2")]
    pub data: BTreeMap<String, String>,
    #[prost(btree_map = "string, bytes", tag = "3")]
    pub binary_data: BTreeMap<String, Vec<u8>>,
    #[prost(bool, optional, tag = "4")]
    pub immutable: Option<bool>,
}

/// `meta.v1.Preconditions`.
#[derive(Clone, PartialEq, Message)]
pub struct Preconditions {
    #[prost(string, optional, tag = "1")]
    pub uid: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub resource_version: Option<String>,
}

/// `meta.v1.DeleteOptions`.
#[derive(Clone, PartialEq, Message)]
pub struct DeleteOptions {
    #[prost(int64, optional, tag = "1")]
    pub grace_period_seconds: Option<i64>,
    #[prost(message, optional, tag = "2")]
    pub preconditions: Option<Preconditions>,
    #[prost(bool, optional, tag = "3")]
    pub orphan_dependents: Option<bool>,
    #[prost(string, optional, tag = "4")]
    pub propagation_policy: Option<String>,
    #[prost(string, repeated, tag = "5")]
    pub dry_run: Vec<String>,
}

/// Decodes a Kubernetes protobuf request body (magic + `runtime.Unknown`)
/// into the JSON object a JSON client would have sent: `apiVersion` and
/// `kind` from the envelope, full `metadata`, and for Secrets `data` as
/// base64 strings, `stringData`, `type`, `immutable`; for ConfigMaps
/// `data`, `binaryData` (base64), `immutable`. DeleteOptions are decoded
/// too (client-go sends them as the body of a delete).
///
/// Other kinds give [`ProtoError::UnsupportedKind`] (answer 415).
pub fn decode(body: &[u8]) -> Result<Value, ProtoError> {
    let rest = body
        .strip_prefix(MAGIC.as_slice())
        .ok_or(ProtoError::NoMagic)?;
    let unknown = Unknown::decode(rest).map_err(ProtoError::Envelope)?;
    if let Some(encoding) = unknown.content_encoding.filter(|e| !e.is_empty()) {
        return Err(ProtoError::ContentEncoding(encoding));
    }
    let type_meta = unknown.type_meta.unwrap_or_default();
    let api_version = type_meta.api_version.unwrap_or_default();
    let kind = type_meta.kind.unwrap_or_default();
    let raw = unknown.raw.unwrap_or_default();
    let invalid = |source| ProtoError::Object {
        kind: kind.clone(),
        source,
    };
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!(api_version));
    out.insert("kind".into(), json!(kind));
    match (api_version.as_str(), kind.as_str()) {
        ("v1", "Secret") => {
            let secret = Secret::decode(raw.as_slice()).map_err(invalid)?;
            out.insert(
                "metadata".into(),
                metadata_json(secret.metadata.unwrap_or_default()),
            );
            if !secret.data.is_empty() {
                out.insert("data".into(), bytes_map(&secret.data));
            }
            if !secret.string_data.is_empty() {
                out.insert("stringData".into(), json!(secret.string_data));
            }
            if let Some(t) = secret.r#type.filter(|t| !t.is_empty()) {
                out.insert("type".into(), json!(t));
            }
            if let Some(immutable) = secret.immutable {
                out.insert("immutable".into(), json!(immutable));
            }
        }
        ("v1", "ConfigMap") => {
            let cm = ConfigMap::decode(raw.as_slice()).map_err(invalid)?;
            out.insert(
                "metadata".into(),
                metadata_json(cm.metadata.unwrap_or_default()),
            );
            if !cm.data.is_empty() {
                out.insert("data".into(), json!(cm.data));
            }
            if !cm.binary_data.is_empty() {
                out.insert("binaryData".into(), bytes_map(&cm.binary_data));
            }
            if let Some(immutable) = cm.immutable {
                out.insert("immutable".into(), json!(immutable));
            }
        }
        (_, "DeleteOptions") => {
            let opts = DeleteOptions::decode(raw.as_slice()).map_err(invalid)?;
            if let Some(s) = opts.grace_period_seconds {
                out.insert("gracePeriodSeconds".into(), json!(s));
            }
            if let Some(p) = opts.preconditions {
                let mut pre = Map::new();
                put_str(&mut pre, "uid", p.uid);
                put_str(&mut pre, "resourceVersion", p.resource_version);
                out.insert("preconditions".into(), Value::Object(pre));
            }
            if let Some(o) = opts.orphan_dependents {
                out.insert("orphanDependents".into(), json!(o));
            }
            put_str(&mut out, "propagationPolicy", opts.propagation_policy);
            if !opts.dry_run.is_empty() {
                out.insert("dryRun".into(), json!(opts.dry_run));
            }
        }
        _ => {
            let (group, version) = match api_version.split_once('/') {
                Some((group, version)) => (group, version),
                None => ("", api_version.as_str()),
            };
            let name = message_name(group, version, &kind);
            if generic::lookup(&name).is_none() {
                return Err(ProtoError::UnsupportedKind { api_version, kind });
            }
            let decoded = generic::decode(&name, &raw).map_err(|e| ProtoError::Wire {
                kind: kind.clone(),
                problem: e.0,
            })?;
            if let Some(Value::Object(fields)) = decoded {
                out.extend(fields);
            }
        }
    }
    Ok(Value::Object(out))
}

/// The protobuf message of a kind: `k8s.io.api.<package>.<version>.<Kind>`
/// (package `core` for the core group, else the group's first label).
pub(crate) fn message_name(group: &str, version: &str, kind: &str) -> String {
    let package = match group {
        "" => "core",
        group => group.split('.').next().unwrap_or(group),
    };
    format!("k8s.io.api.{package}.{version}.{kind}")
}

/// The protobuf message table entry of a full message name (also the
/// source of the OpenAPI schemas).
pub(crate) fn schema_message(name: &str) -> Option<&'static SchemaMessage> {
    generic::lookup(name)
}

/// Encodes a v1 Secret given as JSON into a Kubernetes protobuf body
/// (magic + `runtime.Unknown`), as client-go would send it.
pub fn encode_secret(secret: &Value) -> Result<Vec<u8>, ProtoError> {
    let msg = Secret {
        metadata: Some(metadata_proto(&secret["metadata"])?),
        data: base64_map(&secret["data"], "data")?,
        r#type: secret["type"].as_str().map(str::to_string),
        string_data: string_map(&secret["stringData"]),
        immutable: secret["immutable"].as_bool(),
    };
    Ok(envelope("v1", "Secret", msg.encode_to_vec()))
}

/// Encodes a v1 ConfigMap given as JSON into a Kubernetes protobuf body.
pub fn encode_configmap(configmap: &Value) -> Result<Vec<u8>, ProtoError> {
    let msg = ConfigMap {
        metadata: Some(metadata_proto(&configmap["metadata"])?),
        data: string_map(&configmap["data"]),
        binary_data: base64_map(&configmap["binaryData"], "binaryData")?,
        immutable: configmap["immutable"].as_bool(),
    };
    Ok(envelope("v1", "ConfigMap", msg.encode_to_vec()))
}

/// Wraps an encoded object message in the magic and `runtime.Unknown`.
pub fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.to_string()),
            kind: Some(kind.to_string()),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut out = MAGIC.to_vec();
    out.extend(unknown.encode_to_vec());
    out
}

/// Go's zero `time.Time` (year 1). Client-go writes an unset timestamp as
/// an empty `Time` message (or, in older versions, as this instant); JSON
/// clients send nothing (or null) instead.
const GO_ZERO_TIME_SECONDS: i64 = -62_135_596_800;

fn time_json(t: Option<Time>) -> Option<Value> {
    time_json_precise(t, false)
}

/// A `Time` (whole seconds) or `MicroTime` (microseconds) as JSON; `None`
/// for Go's zero time.
fn time_json_precise(t: Option<Time>, micro: bool) -> Option<Value> {
    let t = t?;
    let seconds = t.seconds?;
    if seconds == GO_ZERO_TIME_SECONDS {
        return None;
    }
    if micro {
        let nanos = u32::try_from(t.nanos.unwrap_or(0)).unwrap_or(0);
        let dt = chrono::DateTime::from_timestamp(seconds, nanos)?;
        return Some(json!(dt.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()));
    }
    let dt = chrono::DateTime::from_timestamp(seconds, 0)?;
    Some(json!(dt.format("%Y-%m-%dT%H:%M:%SZ").to_string()))
}

fn time_proto(v: &Value, field: &str) -> Result<Option<Time>, ProtoError> {
    let Some(text) = v.as_str() else {
        return Ok(None);
    };
    let dt = chrono::DateTime::parse_from_rfc3339(text).map_err(|e| {
        ProtoError::Encode(format!("{field} {text:?} is not an RFC 3339 time: {e}"))
    })?;
    Ok(Some(Time {
        seconds: Some(dt.timestamp()),
        nanos: Some(0),
    }))
}

fn put_str(out: &mut Map<String, Value>, key: &str, value: Option<String>) {
    if let Some(v) = value.filter(|v| !v.is_empty()) {
        out.insert(key.into(), json!(v));
    }
}

fn bytes_map(map: &BTreeMap<String, Vec<u8>>) -> Value {
    Value::Object(
        map.iter()
            .map(|(k, v)| (k.clone(), json!(BASE64.encode(v))))
            .collect(),
    )
}

fn metadata_json(meta: ObjectMeta) -> Value {
    let mut out = Map::new();
    put_str(&mut out, "name", meta.name);
    put_str(&mut out, "generateName", meta.generate_name);
    put_str(&mut out, "namespace", meta.namespace);
    put_str(&mut out, "selfLink", meta.self_link);
    put_str(&mut out, "uid", meta.uid);
    put_str(&mut out, "resourceVersion", meta.resource_version);
    if let Some(g) = meta.generation.filter(|g| *g != 0) {
        out.insert("generation".into(), json!(g));
    }
    if let Some(t) = time_json(meta.creation_timestamp) {
        out.insert("creationTimestamp".into(), t);
    }
    if let Some(t) = time_json(meta.deletion_timestamp) {
        out.insert("deletionTimestamp".into(), t);
    }
    if let Some(s) = meta.deletion_grace_period_seconds {
        out.insert("deletionGracePeriodSeconds".into(), json!(s));
    }
    if !meta.labels.is_empty() {
        out.insert("labels".into(), json!(meta.labels));
    }
    if !meta.annotations.is_empty() {
        out.insert("annotations".into(), json!(meta.annotations));
    }
    if !meta.owner_references.is_empty() {
        let refs = meta
            .owner_references
            .into_iter()
            .map(|r| {
                let mut o = Map::new();
                put_str(&mut o, "apiVersion", r.api_version);
                put_str(&mut o, "kind", r.kind);
                put_str(&mut o, "name", r.name);
                put_str(&mut o, "uid", r.uid);
                if let Some(c) = r.controller {
                    o.insert("controller".into(), json!(c));
                }
                if let Some(b) = r.block_owner_deletion {
                    o.insert("blockOwnerDeletion".into(), json!(b));
                }
                Value::Object(o)
            })
            .collect();
        out.insert("ownerReferences".into(), Value::Array(refs));
    }
    if !meta.finalizers.is_empty() {
        out.insert("finalizers".into(), json!(meta.finalizers));
    }
    if !meta.managed_fields.is_empty() {
        let entries = meta
            .managed_fields
            .into_iter()
            .map(|e| {
                let mut o = Map::new();
                put_str(&mut o, "manager", e.manager);
                put_str(&mut o, "operation", e.operation);
                put_str(&mut o, "apiVersion", e.api_version);
                if let Some(t) = time_json(e.time) {
                    o.insert("time".into(), t);
                }
                put_str(&mut o, "fieldsType", e.fields_type);
                if let Some(raw) = e.fields_v1.and_then(|f| f.raw) {
                    // FieldsV1 raw bytes are JSON; keep them as JSON.
                    if let Ok(v) = serde_json::from_slice::<Value>(&raw) {
                        o.insert("fieldsV1".into(), v);
                    }
                }
                put_str(&mut o, "subresource", e.subresource);
                Value::Object(o)
            })
            .collect();
        out.insert("managedFields".into(), Value::Array(entries));
    }
    Value::Object(out)
}

fn opt_string(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn base64_map(v: &Value, field: &str) -> Result<BTreeMap<String, Vec<u8>>, ProtoError> {
    let mut out = BTreeMap::new();
    for (k, v) in v.as_object().into_iter().flatten() {
        let text = v.as_str().unwrap_or_default();
        let bytes = BASE64
            .decode(text)
            .map_err(|_| ProtoError::Encode(format!("{field}.{k} is not valid base64")))?;
        out.insert(k.clone(), bytes);
    }
    Ok(out)
}

fn metadata_proto(meta: &Value) -> Result<ObjectMeta, ProtoError> {
    let owner_references = meta["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| OwnerReference {
            kind: opt_string(&r["kind"]),
            name: opt_string(&r["name"]),
            uid: opt_string(&r["uid"]),
            api_version: opt_string(&r["apiVersion"]),
            controller: r["controller"].as_bool(),
            block_owner_deletion: r["blockOwnerDeletion"].as_bool(),
        })
        .collect();
    let mut managed_fields = Vec::new();
    for e in meta["managedFields"].as_array().into_iter().flatten() {
        managed_fields.push(ManagedFieldsEntry {
            manager: opt_string(&e["manager"]),
            operation: opt_string(&e["operation"]),
            api_version: opt_string(&e["apiVersion"]),
            time: time_proto(&e["time"], "managedFields.time")?,
            fields_type: opt_string(&e["fieldsType"]),
            fields_v1: e.get("fieldsV1").map(|f| FieldsV1 {
                raw: Some(f.to_string().into_bytes()),
            }),
            subresource: opt_string(&e["subresource"]),
        });
    }
    Ok(ObjectMeta {
        name: opt_string(&meta["name"]),
        generate_name: opt_string(&meta["generateName"]),
        namespace: opt_string(&meta["namespace"]),
        self_link: opt_string(&meta["selfLink"]),
        uid: opt_string(&meta["uid"]),
        resource_version: opt_string(&meta["resourceVersion"]),
        generation: meta["generation"].as_i64(),
        creation_timestamp: time_proto(&meta["creationTimestamp"], "creationTimestamp")?,
        deletion_timestamp: time_proto(&meta["deletionTimestamp"], "deletionTimestamp")?,
        deletion_grace_period_seconds: meta["deletionGracePeriodSeconds"].as_i64(),
        labels: string_map(&meta["labels"]),
        annotations: string_map(&meta["annotations"]),
        owner_references,
        finalizers: meta["finalizers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(opt_string)
            .collect(),
        managed_fields,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A release Secret shaped exactly like the one Helm's Secret storage
    /// driver writes: name `sh.helm.release.v1.<release>.v<revision>`,
    /// labels name/owner/status/version, type `helm.sh/release.v1`, the
    /// release record under `data.release`.
    fn helm_release_secret() -> Value {
        let record = BASE64.encode(b"H4sIAAAAAAAA/wAAAP//release-record");
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "sh.helm.release.v1.kleidia-data.v3",
                "namespace": "kleidia",
                "labels": {"name": "kleidia-data", "owner": "helm", "status": "deployed", "version": "3"}
            },
            "data": {"release": BASE64.encode(record.as_bytes())},
            "type": "helm.sh/release.v1"
        })
    }

    #[test]
    fn helm_release_secret_round_trips() {
        let secret = helm_release_secret();
        let body = encode_secret(&secret).unwrap();
        assert!(body.starts_with(b"k8s\0"));
        assert_eq!(decode(&body).unwrap(), secret);
    }

    /// Client-go writes every non-pointer field, so an unset string comes as
    /// "" and an unset timestamp as Go's zero time: both must vanish.
    #[test]
    fn go_shaped_defaults_become_absent_fields() {
        let meta = ObjectMeta {
            name: Some("sh.helm.release.v1.kleidia-services.v1".into()),
            generate_name: Some(String::new()),
            namespace: Some("kleidia".into()),
            self_link: Some(String::new()),
            uid: Some(String::new()),
            resource_version: Some(String::new()),
            generation: Some(0),
            creation_timestamp: Some(Time {
                seconds: Some(GO_ZERO_TIME_SECONDS),
                nanos: Some(0),
            }),
            labels: BTreeMap::from([
                ("name".to_string(), "kleidia-services".to_string()),
                ("owner".to_string(), "helm".to_string()),
                ("status".to_string(), "pending-install".to_string()),
                ("version".to_string(), "1".to_string()),
            ]),
            ..Default::default()
        };
        let secret = Secret {
            metadata: Some(meta),
            data: BTreeMap::from([("release".to_string(), b"H4sIAAAA".to_vec())]),
            r#type: Some("helm.sh/release.v1".into()),
            ..Default::default()
        };
        let body = envelope("v1", "Secret", secret.encode_to_vec());
        let json = decode(&body).unwrap();
        assert_eq!(
            json,
            json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": "sh.helm.release.v1.kleidia-services.v1",
                    "namespace": "kleidia",
                    "labels": {"name": "kleidia-services", "owner": "helm", "status": "pending-install", "version": "1"}
                },
                "data": {"release": BASE64.encode(b"H4sIAAAA")},
                "type": "helm.sh/release.v1"
            })
        );
    }

    #[test]
    fn full_object_meta_and_configmap_round_trip() {
        let cm = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "settings",
                "generateName": "settings-",
                "namespace": "kleidia",
                "uid": "7c1f7d1e-1111-2222-3333-444455556666",
                "resourceVersion": "42",
                "generation": 2,
                "creationTimestamp": "2026-11-24T14:16:32Z",
                "labels": {"app": "kleidia"},
                "annotations": {"note": "x"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "d", "uid": "u1", "controller": true, "blockOwnerDeletion": true}],
                "finalizers": ["example.com/keep"],
                "managedFields": [{"manager": "kubectl", "operation": "Apply", "apiVersion": "v1", "time": "2026-11-24T14:16:32Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:a": {}}}}]
            },
            "data": {"a": "1"},
            "binaryData": {"b": BASE64.encode([0u8, 1, 2, 255])},
            "immutable": true
        });
        let body = encode_configmap(&cm).unwrap();
        assert_eq!(decode(&body).unwrap(), cm);
    }

    #[test]
    fn secret_string_data_and_immutable() {
        let s = json!({"apiVersion":"v1","kind":"Secret","metadata":{"name":"s"},
            "stringData":{"password":"x"},"immutable":false,"type":"Opaque"});
        assert_eq!(decode(&encode_secret(&s).unwrap()).unwrap(), s);
    }

    #[test]
    fn delete_options_decode() {
        let opts = DeleteOptions {
            propagation_policy: Some("Background".into()),
            grace_period_seconds: Some(0),
            ..Default::default()
        };
        let body = envelope("v1", "DeleteOptions", opts.encode_to_vec());
        assert_eq!(
            decode(&body).unwrap(),
            json!({"apiVersion":"v1","kind":"DeleteOptions","propagationPolicy":"Background","gracePeriodSeconds":0})
        );
    }

    /// A tiny protobuf writer, so the test spells the Go-shaped wire bytes
    /// with the field numbers of `generated.proto` independently of the
    /// decoder's generated table.
    mod wire {
        fn varint(mut v: u64, out: &mut Vec<u8>) {
            loop {
                let b = (v & 0x7f) as u8;
                v >>= 7;
                if v == 0 {
                    out.push(b);
                    return;
                }
                out.push(b | 0x80);
            }
        }
        pub fn int(n: u64, v: i64) -> Vec<u8> {
            let mut out = Vec::new();
            varint(n << 3, &mut out);
            varint(v as u64, &mut out);
            out
        }
        pub fn bytes(n: u64, b: &[u8]) -> Vec<u8> {
            let mut out = Vec::new();
            varint((n << 3) | 2, &mut out);
            varint(b.len() as u64, &mut out);
            out.extend_from_slice(b);
            out
        }
        pub fn msg(n: u64, parts: &[Vec<u8>]) -> Vec<u8> {
            bytes(n, &parts.concat())
        }
        pub fn entry(n: u64, key: &str, value: Vec<u8>) -> Vec<u8> {
            msg(n, &[bytes(1, key.as_bytes()), value])
        }
    }

    /// A Deployment as kubectl's typed client sends it: zero values written
    /// out, unset timestamps as empty Time messages, IntOrString and
    /// Quantity messages, a label map.
    #[test]
    fn deployment_decodes_like_its_json() {
        use wire::*;
        let meta = msg(
            1,
            &[
                bytes(1, b"web"),
                bytes(2, b""),
                bytes(3, b"kleidia"),
                msg(8, &[]),
            ],
        );
        let template = msg(
            3,
            &[
                msg(1, &[msg(8, &[]), entry(11, "app", bytes(2, b"web"))]),
                msg(
                    2,
                    &[msg(
                        2,
                        &[
                            bytes(1, b"app"),
                            bytes(2, b"example/app:1"),
                            msg(6, &[bytes(1, b""), int(3, 8080), bytes(4, b"TCP")]),
                            msg(8, &[entry(1, "cpu", msg(2, &[bytes(1, b"500m")]))]),
                        ],
                    )],
                ),
            ],
        );
        let strategy = msg(
            4,
            &[
                bytes(1, b"RollingUpdate"),
                msg(
                    2,
                    &[
                        msg(1, &[int(1, 0), int(2, 1)]),
                        msg(2, &[int(1, 1), bytes(3, b"25%")]),
                    ],
                ),
            ],
        );
        let spec = msg(
            2,
            &[
                int(1, 0),
                msg(2, &[entry(1, "app", bytes(2, b"web"))]),
                template,
                strategy,
                int(5, 0),
                int(7, 0),
            ],
        );
        let body = envelope("apps/v1", "Deployment", [meta, spec].concat());
        assert_eq!(
            decode(&body).unwrap(),
            json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "kleidia"},
                "spec": {
                    "replicas": 0,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{
                            "name": "app",
                            "image": "example/app:1",
                            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                            "resources": {"limits": {"cpu": "500m"}}
                        }]}
                    },
                    "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": "25%"}}
                }
            })
        );
    }

    #[test]
    fn errors_are_typed() {
        assert!(matches!(
            decode(b"{\"kind\":\"Secret\"}"),
            Err(ProtoError::NoMagic)
        ));
        let err = decode(&envelope("example.com/v1", "Widget", Vec::new())).unwrap_err();
        assert!(matches!(err, ProtoError::UnsupportedKind { .. }));
        assert_eq!(err.status_code(), 415);
        let mut garbage = MAGIC.to_vec();
        garbage.extend([0xff, 0xff, 0xff]);
        assert!(matches!(decode(&garbage), Err(ProtoError::Envelope(_))));
        let err = decode(&envelope("v1", "Secret", vec![0x0a, 0x05, 0x01])).unwrap_err();
        assert!(matches!(err, ProtoError::Object { .. }));
        assert_eq!(err.status_code(), 400);
    }
}
