//! Helm's rendered manifest as objects, and the JSON helpers the rules use.

use std::collections::BTreeMap;

use serde_json::Value;

use super::TopologyError;

/// One object of a rendered manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestObject {
    pub kind: String,
    pub api_version: String,
    pub name: String,
    pub body: Value,
}

/// Splits Helm's multi-document manifest. Empty documents (and comments
/// such as `# Source:`) are skipped.
pub fn parse_manifest(release: &str, text: &str) -> Result<Vec<ManifestObject>, TopologyError> {
    use serde::Deserialize;
    let mut out = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let value = Value::deserialize(doc).map_err(|e| TopologyError::Manifest {
            release: release.to_string(),
            message: e.to_string(),
        })?;
        if !value.is_object() {
            continue;
        }
        let kind = str_at(&value, &["kind"]).unwrap_or_default().to_string();
        if kind.is_empty() {
            continue;
        }
        out.push(ManifestObject {
            api_version: str_at(&value, &["apiVersion"])
                .unwrap_or_default()
                .to_string(),
            name: str_at(&value, &["metadata", "name"])
                .unwrap_or_default()
                .to_string(),
            kind,
            body: value,
        });
    }
    Ok(out)
}

pub(super) fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, key| cur.get(*key))
}

pub(super) fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(v, path).and_then(Value::as_str)
}

pub(super) fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| match v {
                    Value::String(s) => Some((k.clone(), s.clone())),
                    Value::Number(n) => Some((k.clone(), n.to_string())),
                    Value::Bool(b) => Some((k.clone(), b.to_string())),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}
