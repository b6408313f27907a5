//! Kubernetes label selectors (matchLabels and matchExpressions).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::manifest::{str_at, string_map};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
/// A Kubernetes label selector (matchLabels and matchExpressions).
pub struct Selector {
    pub match_labels: BTreeMap<String, String>,
    pub expressions: Vec<SelectorExpression>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SelectorExpression {
    pub key: String,
    pub operator: String,
    pub values: Vec<String>,
}

impl Selector {
    pub fn from_labels(labels: BTreeMap<String, String>) -> Self {
        Self {
            match_labels: labels,
            expressions: Vec::new(),
        }
    }

    pub(super) fn from_value(v: Option<&Value>) -> Self {
        let Some(v) = v else {
            return Self::default();
        };
        let expressions = v
            .get("matchExpressions")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|e| SelectorExpression {
                        key: str_at(e, &["key"]).unwrap_or_default().to_string(),
                        operator: str_at(e, &["operator"]).unwrap_or_default().to_string(),
                        values: e
                            .get("values")
                            .and_then(Value::as_array)
                            .map(|vs| {
                                vs.iter()
                                    .filter_map(|x| x.as_str().map(str::to_string))
                                    .collect()
                            })
                            .unwrap_or_default(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            match_labels: string_map(v.get("matchLabels")),
            expressions,
        }
    }

    /// Parses `k=v,k2=v2` (the form pins use).
    pub fn parse(text: &str) -> Option<Self> {
        let mut labels = BTreeMap::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=')?;
            let k = k.trim();
            if k.is_empty() {
                return None;
            }
            labels.insert(k.to_string(), v.trim_start_matches('=').trim().to_string());
        }
        (!labels.is_empty()).then(|| Self::from_labels(labels))
    }

    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.expressions.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        if self.is_empty() {
            return false;
        }
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.expressions.iter().all(|e| {
                let val = labels.get(&e.key);
                match e.operator.as_str() {
                    "In" => val.is_some_and(|v| e.values.contains(v)),
                    "NotIn" => val.is_none_or(|v| !e.values.contains(v)),
                    "Exists" => val.is_some(),
                    "DoesNotExist" => val.is_none(),
                    _ => false,
                }
            })
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts: Vec<String> = self
            .match_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        for e in &self.expressions {
            parts.push(match e.operator.as_str() {
                "Exists" => e.key.clone(),
                "DoesNotExist" => format!("!{}", e.key),
                op => format!("{} {} ({})", e.key, op.to_lowercase(), e.values.join(",")),
            });
        }
        f.write_str(&parts.join(","))
    }
}
