//! Events as a real cluster records them (`kubectl get events`,
//! `kubectl describe`): core/v1 `Event` objects in the involved object's
//! namespace. Repeats of the same reason and message for the same object
//! bump `count` and `lastTimestamp` instead of adding a new object.

use serde_json::{Value, json};

use crate::registry;
use crate::state::Shared;
use crate::store::now;

/// `Normal` or `Warning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// Records an event about `involved` (any stored object). `component` is
/// the reporting controller, e.g. `kubelet`, `deployment-controller`.
/// `field_path` points at a container (`spec.containers{app}`) or is empty.
pub fn record(
    shared: &Shared,
    involved: &Value,
    event_type: EventType,
    reason: &str,
    message: &str,
    component: &str,
    field_path: &str,
) {
    let meta = &involved["metadata"];
    let ns = meta["namespace"].as_str().unwrap_or("default").to_string();
    let name = meta["name"].as_str().unwrap_or("").to_string();
    let uid = meta["uid"].as_str().unwrap_or("").to_string();
    let ts = now();

    // The same thing happening again: count it.
    let existing = shared
        .store
        .snapshot(&registry::EVENTS, Some(&ns))
        .into_iter()
        .find(|e| {
            e["involvedObject"]["uid"].as_str() == Some(uid.as_str())
                && e["reason"].as_str() == Some(reason)
                && e["message"].as_str() == Some(message)
                && e["involvedObject"]["fieldPath"].as_str().unwrap_or("") == field_path
        });
    if let Some(e) = existing {
        let ename = e["metadata"]["name"].as_str().unwrap_or("").to_string();
        let _ = shared
            .store
            .mutate(&registry::EVENTS, Some(&ns), &ename, |e| {
                let n = e["count"].as_u64().unwrap_or(1);
                e["count"] = json!(n + 1);
                e["lastTimestamp"] = json!(ts);
            });
        return;
    }

    let mut involved_ref = json!({
        "kind": involved["kind"],
        "namespace": ns,
        "name": name,
        "uid": uid,
        "apiVersion": involved["apiVersion"],
        "resourceVersion": meta["resourceVersion"],
    });
    if !field_path.is_empty() {
        involved_ref["fieldPath"] = json!(field_path);
    }
    let mut source = json!({"component": component});
    if component == "kubelet" {
        source["host"] = json!(crate::controllers::NODE_NAME);
    }
    let suffix = format!("{:016x}", rand::random::<u64>());
    let ev = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": format!("{name}.{}", &suffix[..16]), "namespace": ns},
        "involvedObject": involved_ref,
        "reason": reason,
        "message": message,
        "source": source,
        "firstTimestamp": ts,
        "lastTimestamp": ts,
        "count": 1,
        "type": event_type.as_str(),
        "eventTime": null,
        "reportingComponent": component,
        "reportingInstance": if component == "kubelet" { crate::controllers::NODE_NAME } else { "" },
    });
    let _ = shared.store.create(&registry::EVENTS, Some(&ns), ev);
}
