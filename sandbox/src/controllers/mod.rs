//! The controllers of the sandbox cluster: what turns Deployments,
//! StatefulSets, ReplicaSets, DaemonSets, Jobs and PVCs into Pods, and Pods
//! into running containers (the "kubelet" part, [`pods`]), Services into
//! Endpoints, and Services into addresses pods reach by DNS name
//! ([`network`]).
//!
//! One task reconciles everything whenever the store changes (debounced)
//! and on a short resync tick. Each reconcile is level-based: it compares
//! what is stored with what should be and writes the difference with
//! [`crate::store::Store::mutate`] / `create` / `delete`, so it converges no
//! matter which events were missed. Pods get one task each that drives
//! their lifecycle (scheduled, containers created and started, ready).
//!
//! Start them with [`start`] once the store holds the node and namespaces.

pub mod deployments;
pub mod endpoints;
pub mod jobs;
pub mod network;
pub mod pods;
pub mod replicasets;
pub mod statefulsets;
pub mod volumes;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::state::Shared;

/// The one node every pod is scheduled to.
pub const NODE_NAME: &str = "sandbox-node";

/// How often everything is reconciled even without changes.
const RESYNC: Duration = Duration::from_millis(500);
/// How long to gather changes before reconciling.
const DEBOUNCE: Duration = Duration::from_millis(15);

/// Starts the controllers; they stop when `shared.shutdown` is cancelled
/// (pods' containers are stopped then too).
pub fn start(shared: Arc<Shared>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(shared))
}

async fn run(shared: Arc<Shared>) {
    let mut events = shared.store.subscribe_all();
    let mut kubelet = pods::Kubelet::new(shared.clone());
    let net = network::ClusterNet::new(&shared);
    let mut tick = tokio::time::interval(RESYNC);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            r = events.recv() => {
                if let Err(tokio::sync::broadcast::error::RecvError::Closed) = r {
                    break;
                }
                // Gather a burst of changes into one pass.
                tokio::time::sleep(DEBOUNCE).await;
                while events.try_recv().is_ok() {}
            }
            _ = tick.tick() => {}
        }
        reconcile_all(&shared, &mut kubelet);
        net.reconcile();
    }
    kubelet.stop_all().await;
    drop(net);
}

fn reconcile_all(shared: &Arc<Shared>, kubelet: &mut pods::Kubelet) {
    deployments::reconcile(shared);
    replicasets::reconcile(shared);
    statefulsets::reconcile(shared);
    jobs::reconcile(shared);
    jobs::reconcile_daemonsets(shared);
    jobs::reconcile_cronjobs(shared);
    volumes::reconcile(shared);
    endpoints::reconcile(shared);
    kubelet.reconcile();
}

/// Deletes `pod` (in `owner`'s namespace) for `owner`'s controller
/// (`component`) and, when it is gone, records `SuccessfulDelete` with
/// `message` on `owner`, as the real controllers do.
pub fn delete_pod(shared: &Shared, owner: &Value, pod: &Value, message: &str, component: &str) {
    let deleted = shared.store.delete(
        &crate::registry::PODS,
        Some(namespace(owner)),
        name(pod),
        &crate::store::DeleteOptions::default(),
    );
    if deleted.is_ok() {
        crate::events::record(
            shared,
            owner,
            crate::events::EventType::Normal,
            "SuccessfulDelete",
            message,
            component,
            "",
        );
    }
}

/// Whether `obj` has an owner reference to `uid`.
pub fn owned_by(obj: &Value, uid: &str) -> bool {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .is_some_and(|refs| refs.iter().any(|r| r["uid"].as_str() == Some(uid)))
}

/// The controller owner reference pointing at `owner`.
pub fn owner_ref(owner: &Value) -> Value {
    json!({
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// Characters Kubernetes uses for generated names (no vowels, no
/// look-alikes).
const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// A stable hash of a pod template, spelled like Kubernetes'
/// `pod-template-hash` values (10 characters).
pub fn template_hash(template: &Value) -> String {
    let digest = Sha256::digest(template.to_string().as_bytes());
    digest
        .iter()
        .take(10)
        .map(|b| ALPHANUMS[*b as usize % ALPHANUMS.len()] as char)
        .collect()
}

/// A random generated-name suffix of `n` characters.
pub fn random_suffix(n: usize) -> String {
    (0..n)
        .map(|_| ALPHANUMS[rand::random_range(0..ALPHANUMS.len())] as char)
        .collect()
}

/// `metadata.name` / `metadata.namespace` / `metadata.uid` of an object.
pub fn name(v: &Value) -> &str {
    v["metadata"]["name"].as_str().unwrap_or("")
}
pub fn namespace(v: &Value) -> &str {
    v["metadata"]["namespace"].as_str().unwrap_or("")
}
pub fn uid(v: &Value) -> &str {
    v["metadata"]["uid"].as_str().unwrap_or("")
}

/// Whether the object is being deleted.
pub fn terminating(v: &Value) -> bool {
    !v["metadata"]["deletionTimestamp"].is_null()
}

/// An int-or-percent field (`maxSurge: 25%`) against `total`, rounding up
/// or down.
pub fn int_or_percent(v: &Value, total: i64, default: &str, round_up: bool) -> i64 {
    let v = if v.is_null() {
        json!(default)
    } else {
        v.clone()
    };
    if let Some(n) = v.as_i64() {
        return n;
    }
    let s = v.as_str().unwrap_or(default);
    if let Some(p) = s.strip_suffix('%') {
        let p: f64 = p.trim().parse().unwrap_or(0.0);
        let x = p * total as f64 / 100.0;
        return if round_up {
            x.ceil() as i64
        } else {
            x.floor() as i64
        };
    }
    s.parse().unwrap_or(0)
}

/// Creates a pod from `template` owned by `owner`.
pub fn pod_from_template(
    owner: &Value,
    template: &Value,
    name: Option<&str>,
    generate_name: &str,
    extra_labels: &[(&str, String)],
) -> Value {
    let mut meta = template["metadata"].clone();
    if !meta.is_object() {
        meta = json!({});
    }
    if let Some(n) = name {
        meta["name"] = json!(n);
    } else {
        meta["generateName"] = json!(generate_name);
    }
    meta["namespace"] = owner["metadata"]["namespace"].clone();
    if !meta["labels"].is_object() {
        meta["labels"] = json!({});
    }
    for (k, v) in extra_labels {
        meta["labels"][*k] = json!(v);
    }
    meta["ownerReferences"] = json!([owner_ref(owner)]);
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": template["spec"],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_like_kubernetes() {
        assert_eq!(int_or_percent(&json!("25%"), 3, "25%", true), 1);
        assert_eq!(int_or_percent(&json!("25%"), 3, "25%", false), 0);
        assert_eq!(int_or_percent(&Value::Null, 4, "25%", false), 1);
        assert_eq!(int_or_percent(&json!(2), 4, "25%", false), 2);
    }

    #[test]
    fn hashes_are_stable_and_name_safe() {
        let a = template_hash(&json!({"spec": {"containers": [{"image": "a"}]}}));
        assert_eq!(a.len(), 10);
        assert_eq!(
            a,
            template_hash(&json!({"spec": {"containers": [{"image": "a"}]}}))
        );
        assert!(a.bytes().all(|b| ALPHANUMS.contains(&b)));
    }
}
