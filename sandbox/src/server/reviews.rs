//! SelfSubjectAccessReview and SelfSubjectRulesReview, answered from the
//! sandbox's authorization rules (what `kubectl auth can-i` asks).

use serde_json::{Value, json};

use crate::authz::Attributes;
use crate::error::ApiError;
use crate::registry::{self, ResourceType};
use crate::state::Shared;

/// The answered review, if `rt` is a review type.
pub fn answer(shared: &Shared, rt: &ResourceType, obj: &Value) -> Option<Result<Value, ApiError>> {
    if rt.same(&registry::SELFSUBJECTACCESSREVIEWS) {
        return Some(access_review(shared, obj));
    }
    if rt.same(&registry::SELFSUBJECTRULESREVIEWS) {
        return Some(Ok(rules_review(shared, obj)));
    }
    if rt.same(&registry::SELFSUBJECTREVIEWS) {
        // `kubectl auth whoami`
        return Some(Ok(json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "SelfSubjectReview",
            "metadata": {"creationTimestamp": null},
            "status": {"userInfo": {
                "username": crate::authz::USER,
                "groups": ["system:authenticated"],
            }},
        })));
    }
    None
}

fn access_review(shared: &Shared, obj: &Value) -> Result<Value, ApiError> {
    let mut out = obj.clone();
    out["apiVersion"] = json!("authorization.k8s.io/v1");
    out["kind"] = json!("SelfSubjectAccessReview");
    if out.get("metadata").is_none() {
        out["metadata"] = json!({});
    }
    let allowed = if let Some(ra) = obj.pointer("/spec/resourceAttributes") {
        let s = |k: &str| ra.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let resource = s("resource");
        let sub = s("subresource");
        let ns = s("namespace");
        let name = s("name");
        shared.authz.allowed(&Attributes {
            verb: s("verb"),
            group: s("group"),
            resource,
            subresource: (!sub.is_empty()).then_some(sub),
            namespace: (!ns.is_empty()).then_some(ns),
            name: (!name.is_empty()).then_some(name),
        })
    } else if obj.pointer("/spec/nonResourceAttributes").is_some() {
        true
    } else {
        return Err(ApiError::invalid(
            &registry::SELFSUBJECTACCESSREVIEWS,
            "",
            "spec.resourceAttributes",
            "Required value: exactly one of nonResourceAttributes or resourceAttributes must be specified",
        ));
    };
    out["status"] = if allowed {
        json!({"allowed": true, "reason": "allowed by the sandbox's authorization rules"})
    } else {
        // Like RBAC: no reason, so `kubectl auth can-i` prints a plain "no".
        json!({"allowed": false})
    };
    Ok(out)
}

fn rules_review(shared: &Shared, obj: &Value) -> Value {
    let ns = obj
        .pointer("/spec/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let rules = shared.authz.rules();
    let incomplete = rules.iter().any(|r| !r.allow);
    let star = |v: &Vec<String>| {
        if v.is_empty() {
            vec!["*".to_string()]
        } else {
            v.clone()
        }
    };
    let resource_rules: Vec<Value> = rules
        .iter()
        .take_while(|r| r.allow)
        .filter(|r| r.namespaces.is_empty() || r.namespaces.iter().any(|n| n == ns || n == "*"))
        .map(|r| json!({"verbs": star(&r.verbs), "apiGroups": star(&r.api_groups), "resources": star(&r.resources)}))
        .collect();
    let mut out = obj.clone();
    out["apiVersion"] = json!("authorization.k8s.io/v1");
    out["kind"] = json!("SelfSubjectRulesReview");
    if out.get("metadata").is_none() {
        out["metadata"] = json!({});
    }
    out["status"] = json!({
        "resourceRules": resource_rules,
        "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
        "incomplete": incomplete,
    });
    out
}
