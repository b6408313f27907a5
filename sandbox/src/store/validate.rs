//! Update rules a real API server enforces that clients can run into:
//! immutable fields (StatefulSet spec, selectors, PVC spec, immutable
//! ConfigMaps/Secrets). Controllers writing through `Store::mutate` are
//! not checked.

use serde_json::{Value, json};

use crate::error::ApiError;
use crate::registry::{self, ResourceType};

fn spec_without(v: &Value, keys: &[&str]) -> Value {
    let mut s = v.get("spec").cloned().unwrap_or(json!({}));
    if let Some(o) = s.as_object_mut() {
        for k in keys {
            o.remove(*k);
        }
    }
    s
}

fn immutable(rt: &ResourceType, name: &str, field: &str, v: &Value) -> ApiError {
    ApiError::invalid(
        rt,
        name,
        field,
        &format!("Invalid value: {}: field is immutable", compact(v)),
    )
}

fn compact(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// Checks a replacement of `old` by `new` (both full objects).
pub(super) fn update(rt: &ResourceType, old: &Value, new: &mut Value) -> Result<(), ApiError> {
    let name = new["metadata"]["name"].as_str().unwrap_or("").to_string();
    if rt.same(&registry::STATEFULSETS) {
        const MUTABLE: &[&str] = &[
            "replicas",
            "ordinals",
            "template",
            "updateStrategy",
            "persistentVolumeClaimRetentionPolicy",
            "minReadySeconds",
            "revisionHistoryLimit",
        ];
        if spec_without(old, MUTABLE) != spec_without(new, MUTABLE) {
            return Err(ApiError::invalid(
                rt,
                &name,
                "spec",
                "Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            ));
        }
    }
    if (rt.same(&registry::DEPLOYMENTS)
        || rt.same(&registry::REPLICASETS)
        || rt.same(&registry::DAEMONSETS)
        || rt.same(&registry::JOBS))
        && old.pointer("/spec/selector") != new.pointer("/spec/selector")
        && !(rt.same(&registry::JOBS) && new.pointer("/spec/selector").is_none())
    {
        let v = new
            .pointer("/spec/selector")
            .cloned()
            .unwrap_or(Value::Null);
        return Err(immutable(rt, &name, "spec.selector", &v));
    }
    if rt.same(&registry::JOBS) {
        if new.pointer("/spec/selector").is_none()
            && let Some(sel) = old.pointer("/spec/selector")
        {
            new["spec"]["selector"] = sel.clone();
        }
        if old.pointer("/spec/template") != new.pointer("/spec/template") {
            let v = new
                .pointer("/spec/template")
                .cloned()
                .unwrap_or(Value::Null);
            return Err(immutable(rt, &name, "spec.template", &v));
        }
    }
    if rt.same(&registry::PERSISTENTVOLUMECLAIMS) {
        let keep = &["resources", "volumeName", "volumeAttributesClassName"];
        if spec_without(old, keep) != spec_without(new, keep) {
            return Err(ApiError::invalid(
                rt,
                &name,
                "spec",
                "Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
            ));
        }
    }
    if (rt.same(&registry::CONFIGMAPS) || rt.same(&registry::SECRETS))
        && old.get("immutable") == Some(&json!(true))
    {
        if new.get("immutable") != Some(&json!(true)) {
            return Err(ApiError::invalid(
                rt,
                &name,
                "immutable",
                "Forbidden: field is immutable when `immutable` is set",
            ));
        }
        for f in ["data", "binaryData"] {
            if old.get(f) != new.get(f) {
                return Err(ApiError::invalid(
                    rt,
                    &name,
                    f,
                    "Forbidden: field is immutable when `immutable` is set",
                ));
            }
        }
    }
    if rt.same(&registry::SERVICES) {
        // An update without clusterIP keeps the allocated one.
        for f in ["clusterIP", "clusterIPs"] {
            if new
                .pointer(&format!("/spec/{f}"))
                .is_none_or(|v| v == "" || v.is_null())
                && let Some(ip) = old.pointer(&format!("/spec/{f}"))
            {
                new["spec"][f] = ip.clone();
            }
        }
        if old.pointer("/spec/clusterIP") != new.pointer("/spec/clusterIP") {
            let v = new
                .pointer("/spec/clusterIP")
                .cloned()
                .unwrap_or(Value::Null);
            return Err(ApiError::invalid(
                rt,
                &name,
                "spec.clusterIPs[0]",
                &format!("Invalid value: {}: may not change once set", compact(&v)),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statefulset_spec_is_immutable_but_template_is_not() {
        let old = json!({"metadata": {"name": "db"}, "spec": {"replicas": 1, "serviceName": "db",
            "volumeClaimTemplates": [{"metadata": {"name": "data"}}], "template": {"x": 1}}});
        let mut ok = old.clone();
        ok["spec"]["template"] = json!({"x": 2});
        ok["spec"]["replicas"] = json!(3);
        assert!(update(&registry::STATEFULSETS, &old, &mut ok).is_ok());
        let mut bad = old.clone();
        bad["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] = json!("other");
        let e = update(&registry::STATEFULSETS, &old, &mut bad).unwrap_err();
        assert_eq!(e.code(), 422);
        assert!(
            e.message
                .starts_with("StatefulSet.apps \"db\" is invalid: spec: Forbidden")
        );
    }

    #[test]
    fn selectors_and_immutable_configmaps() {
        let old =
            json!({"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"a": "1"}}}});
        let mut bad = old.clone();
        bad["spec"]["selector"]["matchLabels"]["a"] = json!("2");
        assert_eq!(
            update(&registry::DEPLOYMENTS, &old, &mut bad)
                .unwrap_err()
                .code(),
            422
        );
        let old = json!({"metadata": {"name": "c"}, "immutable": true, "data": {"k": "v"}});
        let mut bad = old.clone();
        bad["data"]["k"] = json!("w");
        assert_eq!(
            update(&registry::CONFIGMAPS, &old, &mut bad)
                .unwrap_err()
                .code(),
            422
        );
    }
}
