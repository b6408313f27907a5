//! ReplicaSet controller: keeps `spec.replicas` pods of the template,
//! reports replicas/ready/available counts.

use serde_json::{Value, json};

use super::{delete_pod, name, namespace, owned_by, pod_from_template, terminating, uid};
use crate::events::{self, EventType};
use crate::registry;
use crate::state::Shared;

pub fn reconcile(shared: &Shared) {
    let all_pods = shared.store.snapshot(&registry::PODS, None);
    for rs in shared.store.snapshot(&registry::REPLICASETS, None) {
        if terminating(&rs) {
            continue;
        }
        let ns = namespace(&rs).to_string();
        let rs_uid = uid(&rs).to_string();
        let want = rs["spec"]["replicas"].as_i64().unwrap_or(1).max(0) as usize;
        let mut pods: Vec<&Value> = all_pods
            .iter()
            .map(|p| &**p)
            .filter(|p| namespace(p) == ns && owned_by(p, &rs_uid) && !terminating(p))
            .collect();
        if pods.len() < want {
            let hash = rs["metadata"]["labels"]["pod-template-hash"]
                .as_str()
                .map(str::to_string);
            for _ in pods.len()..want {
                let extra: Vec<(&str, String)> = hash
                    .iter()
                    .map(|h| ("pod-template-hash", h.clone()))
                    .collect();
                let pod = pod_from_template(
                    &rs,
                    &rs["spec"]["template"],
                    None,
                    &format!("{}-", name(&rs)),
                    &extra,
                );
                if let Ok(created) = shared.store.create(&registry::PODS, Some(&ns), pod) {
                    events::record(
                        shared,
                        &rs,
                        EventType::Normal,
                        "SuccessfulCreate",
                        &format!("Created pod: {}", name(&created)),
                        "replicaset-controller",
                        "",
                    );
                }
            }
        } else if pods.len() > want {
            // Not-ready pods go first, then the newest.
            pods.sort_by(|a, b| {
                super::pods::is_ready(a)
                    .cmp(&super::pods::is_ready(b))
                    .then(
                        b["metadata"]["creationTimestamp"]
                            .as_str()
                            .cmp(&a["metadata"]["creationTimestamp"].as_str()),
                    )
            });
            for p in pods.iter().take(pods.len() - want) {
                delete_pod(
                    shared,
                    &rs,
                    p,
                    &format!("Deleted pod: {}", name(p)),
                    "replicaset-controller",
                );
            }
        }
        // Status from what exists now.
        let pods: Vec<Value> = shared
            .store
            .snapshot(&registry::PODS, Some(&ns))
            .into_iter()
            .filter(|p| owned_by(p, &rs_uid) && !terminating(p))
            .map(|p| (*p).clone())
            .collect();
        let ready = pods.iter().filter(|p| super::pods::is_ready(p)).count();
        let generation = rs["metadata"]["generation"].clone();
        let _ = shared
            .store
            .mutate(&registry::REPLICASETS, Some(&ns), name(&rs), |r| {
                r["status"]["replicas"] = json!(pods.len());
                r["status"]["fullyLabeledReplicas"] = json!(pods.len());
                r["status"]["readyReplicas"] = json!(ready);
                r["status"]["availableReplicas"] = json!(ready);
                r["status"]["observedGeneration"] = generation;
            });
    }
}
