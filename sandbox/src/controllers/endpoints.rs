//! Endpoints controller: every Service with a selector has an `Endpoints`
//! object of the same name listing its pods (ready ones under `addresses`,
//! others under `notReadyAddresses`) and the resolved target ports.

use serde_json::{Value, json};

use super::{name, namespace, terminating, uid};
use crate::registry;
use crate::selector::LabelSelector;
use crate::state::Shared;

/// A service port's target on a pod: a number, or a container port name.
fn target_port(sp: &Value, pods: &[&Value]) -> Option<u64> {
    let t = &sp["targetPort"];
    if let Some(n) = t.as_u64() {
        return Some(n);
    }
    if let Some(s) = t.as_str() {
        if let Ok(n) = s.parse() {
            return Some(n);
        }
        return pods.iter().find_map(|p| {
            p["spec"]["containers"]
                .as_array()?
                .iter()
                .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
                .find(|cp| cp["name"].as_str() == Some(s))
                .and_then(|cp| cp["containerPort"].as_u64())
        });
    }
    sp["port"].as_u64()
}

fn address(p: &Value) -> Value {
    json!({
        "ip": p["status"]["podIP"],
        "nodeName": super::NODE_NAME,
        "targetRef": {"kind": "Pod", "namespace": namespace(p), "name": name(p), "uid": uid(p)},
    })
}

pub fn reconcile(shared: &Shared) {
    for svc in shared.store.snapshot(&registry::SERVICES, None) {
        let Some(sel) = svc["spec"]["selector"]
            .as_object()
            .filter(|m| !m.is_empty())
        else {
            continue;
        };
        if terminating(&svc) {
            continue;
        }
        let ns = namespace(&svc).to_string();
        let selector = LabelSelector::from_map(sel);
        let pods: Vec<_> = shared
            .store
            .snapshot(&registry::PODS, Some(&ns))
            .into_iter()
            .filter(|p| selector.matches(p) && !terminating(p) && p["status"]["podIP"].is_string())
            .collect();
        let pod_refs: Vec<&Value> = pods.iter().map(|p| &**p).collect();
        let mut ready: Vec<Value> = Vec::new();
        let mut not_ready: Vec<Value> = Vec::new();
        for p in &pod_refs {
            if super::pods::is_ready(p) {
                ready.push(address(p));
            } else if !matches!(
                p["status"]["phase"].as_str(),
                Some("Succeeded") | Some("Failed")
            ) {
                not_ready.push(address(p));
            }
        }
        let ports: Vec<Value> = svc["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|sp| {
                let mut port = json!({
                    "port": target_port(sp, &pod_refs)?,
                    "protocol": sp["protocol"].as_str().unwrap_or("TCP"),
                });
                if let Some(n) = sp["name"].as_str() {
                    port["name"] = json!(n);
                }
                Some(port)
            })
            .collect();
        let subsets = if ready.is_empty() && not_ready.is_empty() {
            json!([])
        } else {
            let mut s = json!({"ports": ports});
            if !ready.is_empty() {
                s["addresses"] = json!(ready);
            }
            if !not_ready.is_empty() {
                s["notReadyAddresses"] = json!(not_ready);
            }
            json!([s])
        };
        let sname = name(&svc).to_string();
        match shared
            .store
            .try_get(&registry::ENDPOINTS, Some(&ns), &sname)
        {
            Some(ep) => {
                if ep["subsets"] != subsets {
                    let _ = shared
                        .store
                        .mutate(&registry::ENDPOINTS, Some(&ns), &sname, |e| {
                            e["subsets"] = subsets.clone();
                        });
                }
            }
            None => {
                let mut labels = svc["metadata"]["labels"].clone();
                if !labels.is_object() {
                    labels = json!({});
                }
                let ep = json!({
                    "apiVersion": "v1",
                    "kind": "Endpoints",
                    "metadata": {"name": sname, "namespace": ns, "labels": labels},
                    "subsets": subsets,
                });
                let _ = shared.store.create(&registry::ENDPOINTS, Some(&ns), ep);
            }
        }
    }
}
