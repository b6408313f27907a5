//! StatefulSet controller: pods `<name>-0..n-1` created in order, each only
//! once the previous ones are Running and Ready (OrderedReady; Parallel
//! creates them at once), PVCs `<template>-<name>-<i>` from
//! `volumeClaimTemplates` that outlive the pods, ControllerRevisions per
//! template, rolling updates from the highest ordinal (honouring
//! `partition`), and the status `kubectl rollout status` reads.

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
            "data": {"spec": {"template": revision_template(&s["spec"]["template"])}},
            "revision": max + 1,
        });
        let _ = shared
            .store
            .create(&registry::CONTROLLERREVISIONS, Some(ns), rev);
    }
    rev_name
}

fn revision_template(t: &Value) -> Value {
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
        let created = create_pod(shared, s, i, &update_rev);
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

    // Status.
    let pods: Vec<Value> = (0..want).filter_map(pod_of).collect();
    let ready = pods.iter().filter(|p| super::pods::is_ready(p)).count() as i64;
    let updated = pods
        .iter()
        .filter(|p| p["metadata"]["labels"][REV_LABEL].as_str() == Some(update_rev.as_str()))
        .count() as i64;
    let current_rev_before = s["status"]["currentRevision"]
        .as_str()
        .unwrap_or(&update_rev)
        .to_string();
    let current_rev = if updated == want && ready == want {
        update_rev.clone()
    } else {
        current_rev_before
    };
    let current = pods
        .iter()
        .filter(|p| p["metadata"]["labels"][REV_LABEL].as_str() == Some(current_rev.as_str()))
        .count() as i64;
    let generation = s["metadata"]["generation"].clone();
    let _ = shared
        .store
        .mutate(&registry::STATEFULSETS, Some(&ns), &sname, |s| {
            let st = &mut s["status"];
            st["observedGeneration"] = generation;
            st["replicas"] = json!(pods.len());
            st["readyReplicas"] = json!(ready);
            st["availableReplicas"] = json!(ready);
            st["currentReplicas"] = json!(current);
            st["updatedReplicas"] = json!(updated);
            st["currentRevision"] = json!(current_rev);
            st["updateRevision"] = json!(update_rev);
            st["collisionCount"] = json!(0);
        });
}

fn create_pod(shared: &Shared, s: &Value, i: i64, rev: &str) -> Option<Value> {
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
        &s["spec"]["template"],
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
