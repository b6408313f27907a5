//! StatefulSet controller: pods `<name>-0..n-1` created in order, each only
//! once the previous ones are Running and Ready (OrderedReady; Parallel
//! creates them at once), PVCs `<template>-<name>-<i>` from
//! `volumeClaimTemplates` that outlive the pods, ControllerRevisions per
//! template, and the two update strategies as Kubernetes 1.36 runs them:
//!
//! - `RollingUpdate`: replaces pods from the highest ordinal down to the
//!   `partition`; a missing pod below the partition comes back on the
//!   current revision.
//! - `OnDelete`: pods keep their revision until someone deletes them; a
//!   deleted or missing pod comes back on the update revision.
//!
//! Status as the real controller writes it: `currentRevision` moves to
//! `updateRevision` once every pod is on it and ready (for both strategies
//! since 1.36), counts left out when zero.

use serde_json::{Value, json};

use super::{delete_pod, name, namespace, owned_by, owner_ref, template_hash, terminating, uid};
use crate::events::{self, EventType};
use crate::registry;
use crate::state::Shared;
use crate::store::DeleteOptions;

const REV_LABEL: &str = "controller-revision-hash";

pub fn reconcile(shared: &Shared) {
    for s in shared.store.snapshot(&registry::STATEFULSETS, None) {
        if !terminating(&s) {
            reconcile_one(shared, &s);
        }
    }
}

/// The ControllerRevision for the current template (created if new).
fn ensure_revision(shared: &Shared, s: &Value) -> String {
    let ns = namespace(s);
    let hash = template_hash(&s["spec"]["template"]);
    let rev_name = format!("{}-{hash}", name(s));
    let max = shared
        .store
        .snapshot(&registry::CONTROLLERREVISIONS, Some(ns))
        .iter()
        .filter(|r| owned_by(r, uid(s)))
        .filter_map(|r| r["revision"].as_i64())
        .max()
        .unwrap_or(0);
    if let Some(existing) =
        shared
            .store
            .try_get(&registry::CONTROLLERREVISIONS, Some(ns), &rev_name)
    {
        // Back to an earlier template (undo): it becomes the newest revision.
        if existing["revision"].as_i64().unwrap_or(0) < max {
            let _ = shared
                .store
                .mutate(&registry::CONTROLLERREVISIONS, Some(ns), &rev_name, |r| {
                    r["revision"] = json!(max + 1);
                });
        }
    } else {
        let mut labels = s["spec"]["template"]["metadata"]["labels"].clone();
        if !labels.is_object() {
            labels = json!({});
        }
        labels[REV_LABEL] = json!(hash);
        let rev = json!({
            "apiVersion": "apps/v1",
            "kind": "ControllerRevision",
            "metadata": {
                "name": rev_name,
                "namespace": ns,
                "labels": labels,
                "ownerReferences": [owner_ref(s)],
            },
            // As Kubernetes stores it: a strategic merge patch that puts
            // the template back (`kubectl rollout undo` applies it).
            "data": {"spec": {"template": undo_patch(&s["spec"]["template"])}},
            "revision": max + 1,
        });
        let _ = shared
            .store
            .create(&registry::CONTROLLERREVISIONS, Some(ns), rev);
    }
    rev_name
}

fn undo_patch(t: &Value) -> Value {
    let mut t = t.clone();
    if let Some(o) = t.as_object_mut() {
        o.insert("$patch".into(), json!("replace"));
    }
    t
}

fn reconcile_one(shared: &Shared, s: &Value) {
    let ns = namespace(s).to_string();
    let sname = name(s).to_string();
    let want = s["spec"]["replicas"].as_i64().unwrap_or(1).max(0);
    let update_rev = ensure_revision(shared, s);
    let parallel = s["spec"]["podManagementPolicy"].as_str() == Some("Parallel");
    let strategy = s["spec"]["updateStrategy"]["type"]
        .as_str()
        .unwrap_or("RollingUpdate");
    let partition = s["spec"]["updateStrategy"]["rollingUpdate"]["partition"]
        .as_i64()
        .unwrap_or(0);

    // The revision pods below the partition keep: the one in the status,
    // while its ControllerRevision is there.
    let current_rev = s["status"]["currentRevision"]
        .as_str()
        .filter(|r| {
            shared
                .store
                .try_get(&registry::CONTROLLERREVISIONS, Some(&ns), r)
                .is_some()
        })
        .unwrap_or(&update_rev)
        .to_string();

    let pod_of = |i: i64| -> Option<Value> {
        shared
            .store
            .try_get(&registry::PODS, Some(&ns), &format!("{sname}-{i}"))
            .map(|p| (*p).clone())
            .filter(|p| owned_by(p, uid(s)))
    };
    let mut pods: Vec<Option<Value>> = (0..want).map(pod_of).collect();

    // Create missing pods, in order.
    for i in 0..want {
        if pods[i as usize].is_some() {
            continue;
        }
        if !parallel
            && (0..i).any(|j| {
                !pods[j as usize]
                    .as_ref()
                    .is_some_and(|p| super::pods::is_ready(p) && !terminating(p))
            })
        {
            break;
        }
        // A pod of the same name still going away: wait for it.
        if shared
            .store
            .try_get(&registry::PODS, Some(&ns), &format!("{sname}-{i}"))
            .is_some()
        {
            break;
        }
        // As Kubernetes' newVersionedStatefulSetPod: below a RollingUpdate
        // partition a pod is recreated on the current revision.
        let below_partition = strategy == "RollingUpdate" && i < partition;
        let created = if below_partition && current_rev != update_rev {
            revision_template(shared, &ns, &current_rev)
                .and_then(|t| create_pod(shared, s, &t, i, &current_rev))
        } else {
            create_pod(shared, s, &s["spec"]["template"], i, &update_rev)
        };
        pods[i as usize] = created;
        if !parallel {
            break;
        }
    }

    // Scale down from the highest ordinal, one at a time when ordered.
    let mut extra: Vec<(i64, Value)> = shared
        .store
        .snapshot(&registry::PODS, Some(&ns))
        .into_iter()
        .filter(|p| owned_by(p, uid(s)))
        .filter_map(|p| {
            let ord: i64 = name(&p).strip_prefix(&format!("{sname}-"))?.parse().ok()?;
            (ord >= want).then(|| (ord, (*p).clone()))
        })
        .collect();
    extra.sort_by_key(|(o, _)| -o);
    for (_, p) in extra.iter().take(if parallel { extra.len() } else { 1 }) {
        delete_pod(
            shared,
            s,
            p,
            &format!("delete Pod {} in StatefulSet {sname} successful", name(p)),
            "statefulset-controller",
        );
    }

    // Rolling update: once everything is ready, replace the highest pod
    // still on an old revision (down to the partition).
    let all_ready = pods
        .iter()
        .all(|p| p.as_ref().is_some_and(super::pods::is_ready));
    if strategy == "RollingUpdate" && all_ready {
        for i in (partition.max(0)..want).rev() {
            if let Some(p) = &pods[i as usize]
                && p["metadata"]["labels"][REV_LABEL].as_str() != Some(update_rev.as_str())
            {
                let _ = shared.store.delete(
                    &registry::PODS,
                    Some(&ns),
                    name(p),
                    &DeleteOptions::default(),
                );
                break;
            }
        }
    }

    // Status, counted over every pod the set owns (those being scaled away
    // too), as the real controller does.
    let owned: Vec<Value> = shared
        .store
        .snapshot(&registry::PODS, Some(&ns))
        .into_iter()
        .filter(|p| owned_by(p, uid(s)))
        .filter(|p| {
            name(p)
                .strip_prefix(&format!("{sname}-"))
                .is_some_and(|o| o.parse::<i64>().is_ok())
        })
        .map(|p| (*p).clone())
        .collect();
    let replicas = owned.len() as i64;
    let ready = owned
        .iter()
        .filter(|p| super::pods::is_ready(p) && p["status"]["phase"] == "Running")
        .count() as i64;
    let on = |rev: &str| {
        owned
            .iter()
            .filter(|p| !terminating(p))
            .filter(|p| p["metadata"]["labels"][REV_LABEL].as_str() == Some(rev))
            .count() as i64
    };
    let updated = on(&update_rev);
    // completeRollingUpdate: every pod updated and ready.
    let (current_rev, current) = if updated == replicas && ready == replicas {
        (update_rev.clone(), updated)
    } else {
        let n = on(&current_rev);
        (current_rev, n)
    };
    let generation = s["metadata"]["generation"].clone();
    let _ = shared
        .store
        .mutate(&registry::STATEFULSETS, Some(&ns), &sname, |s| {
            let st = &mut s["status"];
            st["observedGeneration"] = generation;
            st["replicas"] = json!(replicas);
            st["availableReplicas"] = json!(ready);
            st["collisionCount"] = json!(0);
            st["currentRevision"] = json!(current_rev);
            st["updateRevision"] = json!(update_rev);
            // `omitempty` counts: a real API server leaves out zeros.
            for (k, v) in [
                ("readyReplicas", ready),
                ("currentReplicas", current),
                ("updatedReplicas", updated),
            ] {
                if v == 0 {
                    if let Some(o) = st.as_object_mut() {
                        o.remove(k);
                    }
                } else {
                    st[k] = json!(v);
                }
            }
        });
}

/// The pod template a ControllerRevision stored (without the `$patch`
/// directive that makes it an undo patch).
fn revision_template(shared: &Shared, ns: &str, rev: &str) -> Option<Value> {
    let r = shared
        .store
        .try_get(&registry::CONTROLLERREVISIONS, Some(ns), rev)?;
    let mut t = r["data"]["spec"]["template"].clone();
    t.as_object_mut()?.remove("$patch");
    Some(t)
}

fn create_pod(shared: &Shared, s: &Value, template: &Value, i: i64, rev: &str) -> Option<Value> {
    let ns = namespace(s);
    let sname = name(s);
    let pod_name = format!("{sname}-{i}");
    // PVCs from the claim templates, kept across pod restarts.
    let mut claim_volumes = Vec::new();
    if let Some(tpls) = s["spec"]["volumeClaimTemplates"].as_array() {
        for t in tpls {
            let tname = t["metadata"]["name"].as_str().unwrap_or("data");
            let claim = format!("{tname}-{sname}-{i}");
            if shared
                .store
                .try_get(&registry::PERSISTENTVOLUMECLAIMS, Some(ns), &claim)
                .is_none()
            {
                let mut labels = s["spec"]["selector"]["matchLabels"].clone();
                if !labels.is_object() {
                    labels = json!({});
                }
                let pvc = json!({
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": {"name": claim, "namespace": ns, "labels": labels},
                    "spec": t["spec"],
                });
                if shared
                    .store
                    .create(&registry::PERSISTENTVOLUMECLAIMS, Some(ns), pvc)
                    .is_ok()
                {
                    events::record(
                        shared,
                        s,
                        EventType::Normal,
                        "SuccessfulCreate",
                        &format!(
                            "create Claim {claim} Pod {pod_name} in StatefulSet {sname} success"
                        ),
                        "statefulset-controller",
                        "",
                    );
                }
            }
            claim_volumes
                .push(json!({"name": tname, "persistentVolumeClaim": {"claimName": claim}}));
        }
    }
    let mut pod = super::pod_from_template(
        s,
        template,
        Some(&pod_name),
        "",
        &[
            (REV_LABEL, rev.to_string()),
            ("statefulset.kubernetes.io/pod-name", pod_name.clone()),
            ("apps.kubernetes.io/pod-index", i.to_string()),
        ],
    );
    pod["spec"]["hostname"] = json!(pod_name);
    if let Some(svc) = s["spec"]["serviceName"].as_str() {
        pod["spec"]["subdomain"] = json!(svc);
    }
    if !claim_volumes.is_empty() {
        let mut vols = pod["spec"]["volumes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for cv in claim_volumes {
            if !vols.iter().any(|v| v["name"] == cv["name"]) {
                vols.push(cv);
            }
        }
        pod["spec"]["volumes"] = json!(vols);
    }
    let created = shared.store.create(&registry::PODS, Some(ns), pod).ok()?;
    events::record(
        shared,
        s,
        EventType::Normal,
        "SuccessfulCreate",
        &format!("create Pod {pod_name} in StatefulSet {sname} successful"),
        "statefulset-controller",
        "",
    );
    Some(created)
}
