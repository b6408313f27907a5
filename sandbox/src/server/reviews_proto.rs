//! Protobuf bodies of SelfSubjectAccessReview / SelfSubjectRulesReview
//! (kubectl `auth can-i` sends them that way). Field numbers from
//! k8s.io/api authorization/v1 `generated.proto`.

use prost::Message;
use serde_json::{Map, Value, json};

use crate::error::ApiError;

#[derive(Clone, PartialEq, Message)]
struct ResourceAttributes {
    #[prost(string, optional, tag = "1")]
    namespace: Option<String>,
    #[prost(string, optional, tag = "2")]
    verb: Option<String>,
    #[prost(string, optional, tag = "3")]
    group: Option<String>,
    #[prost(string, optional, tag = "4")]
    version: Option<String>,
    #[prost(string, optional, tag = "5")]
    resource: Option<String>,
    #[prost(string, optional, tag = "6")]
    subresource: Option<String>,
    #[prost(string, optional, tag = "7")]
    name: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct NonResourceAttributes {
    #[prost(string, optional, tag = "1")]
    path: Option<String>,
    #[prost(string, optional, tag = "2")]
    verb: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct AccessReviewSpec {
    #[prost(message, optional, tag = "1")]
    resource_attributes: Option<ResourceAttributes>,
    #[prost(message, optional, tag = "2")]
    non_resource_attributes: Option<NonResourceAttributes>,
}

#[derive(Clone, PartialEq, Message)]
struct AccessReview {
    #[prost(message, optional, tag = "2")]
    spec: Option<AccessReviewSpec>,
}

#[derive(Clone, PartialEq, Message)]
struct RulesReviewSpec {
    #[prost(string, optional, tag = "1")]
    namespace: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct RulesReview {
    #[prost(message, optional, tag = "2")]
    spec: Option<RulesReviewSpec>,
}

fn put(m: &mut Map<String, Value>, k: &str, v: Option<String>) {
    if let Some(v) = v.filter(|v| !v.is_empty()) {
        m.insert(k.into(), json!(v));
    }
}

/// The JSON form of a review sent as protobuf, or `None` if the body is
/// not one.
pub fn decode(body: &[u8]) -> Option<Result<Value, ApiError>> {
    let rest = body.strip_prefix(crate::proto::MAGIC.as_slice())?;
    let unknown = crate::proto::Unknown::decode(rest).ok()?;
    let tm = unknown.type_meta.clone().unwrap_or_default();
    let api_version = tm.api_version.unwrap_or_default();
    let kind = tm.kind.unwrap_or_default();
    if api_version == "authentication.k8s.io/v1" && kind == "SelfSubjectReview" {
        return Some(Ok(
            json!({"apiVersion": api_version, "kind": kind, "metadata": {}}),
        ));
    }
    if api_version != "authorization.k8s.io/v1" {
        return None;
    }
    let raw = unknown.raw.unwrap_or_default();
    let bad = |e: prost::DecodeError| {
        ApiError::bad_request(format!("the {kind} protobuf body is not valid: {e}"))
    };
    match kind.as_str() {
        "SelfSubjectAccessReview" => Some(AccessReview::decode(raw.as_slice()).map_err(bad).map(|r| {
            let spec = r.spec.unwrap_or_default();
            let mut s = Map::new();
            if let Some(a) = spec.resource_attributes {
                let mut m = Map::new();
                put(&mut m, "namespace", a.namespace);
                put(&mut m, "verb", a.verb);
                put(&mut m, "group", a.group);
                put(&mut m, "version", a.version);
                put(&mut m, "resource", a.resource);
                put(&mut m, "subresource", a.subresource);
                put(&mut m, "name", a.name);
                s.insert("resourceAttributes".into(), Value::Object(m));
            }
            if let Some(a) = spec.non_resource_attributes {
                let mut m = Map::new();
                put(&mut m, "path", a.path);
                put(&mut m, "verb", a.verb);
                s.insert("nonResourceAttributes".into(), Value::Object(m));
            }
            json!({"apiVersion": api_version, "kind": kind, "metadata": {}, "spec": s})
        })),
        "SelfSubjectRulesReview" => Some(RulesReview::decode(raw.as_slice()).map_err(bad).map(|r| {
            let ns = r.spec.and_then(|s| s.namespace).unwrap_or_default();
            json!({"apiVersion": api_version, "kind": kind, "metadata": {}, "spec": {"namespace": ns}})
        })),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_review_round_trip() {
        let review = AccessReview {
            spec: Some(AccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    namespace: Some("kleidia".into()),
                    verb: Some("list".into()),
                    resource: Some("pods".into()),
                    ..Default::default()
                }),
                non_resource_attributes: None,
            }),
        };
        let body = crate::proto::envelope(
            "authorization.k8s.io/v1",
            "SelfSubjectAccessReview",
            review.encode_to_vec(),
        );
        let v = decode(&body).unwrap().unwrap();
        assert_eq!(v["spec"]["resourceAttributes"]["verb"], "list");
        assert_eq!(v["spec"]["resourceAttributes"]["namespace"], "kleidia");
    }
}
