//! Deployment controller: one ReplicaSet per pod template (label
//! `pod-template-hash`, annotation `deployment.kubernetes.io/revision`),
//! rolling updates within `maxSurge`/`maxUnavailable` (or Recreate), and
//! the status fields and conditions `kubectl rollout status` reads.

use serde_json::{Value, json};

use super::{
    int_or_percent, name, namespace, owned_by, owner_ref, template_hash, terminating, uid,
};
use crate::events::{self, EventType};
use crate::registry;
use crate::state::Shared;
use crate::store::{DeleteOptions, now};

const REVISION: &str = "deployment.kubernetes.io/revision";

fn replicas(v: &Value) -> i64 {
    v["spec"]["replicas"].as_i64().unwrap_or(1)
}
fn status_i(v: &Value, f: &str) -> i64 {
    v["status"][f].as_i64().unwrap_or(0)
}
fn revision(rs: &Value) -> i64 {
    rs["metadata"]["annotations"][REVISION]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The template without the hash label: what decides "same template".
fn template_key(t: &Value) -> Value {
    let mut t = t.clone();
    if let Some(l) = t["metadata"]["labels"].as_object_mut() {
        l.remove("pod-template-hash");
    }
    t
}

pub fn reconcile(shared: &Shared) {
    for d in shared.store.snapshot(&registry::DEPLOYMENTS, None) {
        if terminating(&d) {
            continue;
        }
        reconcile_one(shared, &d);
    }
}

fn scale(shared: &Shared, d: &Value, rs: &Value, to: i64) {
    let from = replicas(rs);
    if from == to {
        return;
    }
    let ns = namespace(rs);
    let dreps = replicas(d);
    let surge = int_or_percent(
        &d["spec"]["strategy"]["rollingUpdate"]["maxSurge"],
        dreps,
        "25%",
        true,
    );
    if shared
        .store
        .mutate(&registry::REPLICASETS, Some(ns), name(rs), |r| {
            r["spec"]["replicas"] = json!(to);
            r["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] =
                json!(dreps.to_string());
            r["metadata"]["annotations"]["deployment.kubernetes.io/max-replicas"] =
                json!((dreps + surge).to_string());
        })
        .is_ok()
    {
        let dir = if to > from { "up" } else { "down" };
        events::record(
            shared,
            d,
            EventType::Normal,
            "ScalingReplicaSet",
            &format!("Scaled {dir} replica set {} from {from} to {to}", name(rs)),
            "deployment-controller",
            "",
        );
    }
}

fn reconcile_one(shared: &Shared, d: &Value) {
    let ns = namespace(d).to_string();
    let d_uid = uid(d).to_string();
    let want = replicas(d).max(0);
    let template = &d["spec"]["template"];
    let key = template_key(template);
    let hash = template_hash(&key);
    let mut owned: Vec<Value> = shared
        .store
        .snapshot(&registry::REPLICASETS, Some(&ns))
        .into_iter()
        .filter(|r| owned_by(r, &d_uid) && !terminating(r))
        .map(|r| (*r).clone())
        .collect();
    let max_rev = owned.iter().map(revision).max().unwrap_or(0);
    let new_idx = owned
        .iter()
        .position(|r| template_key(&r["spec"]["template"]) == key);
    let strategy = d["spec"]["strategy"]["type"]
        .as_str()
        .unwrap_or("RollingUpdate");
    let surge = int_or_percent(
        &d["spec"]["strategy"]["rollingUpdate"]["maxSurge"],
        want,
        "25%",
        true,
    );
    let mut unavailable = int_or_percent(
        &d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
        want,
        "25%",
        false,
    );
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }

    let new_rs = match new_idx {
        Some(i) => {
            let rs = owned.remove(i);
            // Rolled back to an older template: it becomes the newest revision.
            if revision(&rs) < max_rev
                && let Ok(v) =
                    shared
                        .store
                        .mutate(&registry::REPLICASETS, Some(&ns), name(&rs), |r| {
                            r["metadata"]["annotations"][REVISION] =
                                json!((max_rev + 1).to_string());
                        })
            {
                v
            } else {
                rs
            }
        }
        None => {
            let old_total: i64 = owned.iter().map(replicas).sum();
            let initial = if strategy == "Recreate" {
                0
            } else if owned.is_empty() {
                want
            } else {
                (want + surge - old_total).clamp(0, want)
            };
            let mut tpl = template.clone();
            tpl["metadata"]["labels"]["pod-template-hash"] = json!(hash);
            let mut labels = template["metadata"]["labels"].clone();
            if !labels.is_object() {
                labels = json!({});
            }
            labels["pod-template-hash"] = json!(hash);
            let mut selector = d["spec"]["selector"].clone();
            if !selector.is_object() {
                selector = json!({});
            }
            selector["matchLabels"]["pod-template-hash"] = json!(hash);
            let rs = json!({
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {
                    "name": format!("{}-{hash}", name(d)),
                    "namespace": ns,
                    "labels": labels,
                    "annotations": {
                        REVISION: (max_rev + 1).to_string(),
                        "deployment.kubernetes.io/desired-replicas": want.to_string(),
                        "deployment.kubernetes.io/max-replicas": (want + surge).to_string(),
                    },
                    "ownerReferences": [owner_ref(d)],
                },
                "spec": {
                    "replicas": initial,
                    "minReadySeconds": d["spec"]["minReadySeconds"].as_i64().unwrap_or(0),
                    "selector": selector,
                    "template": tpl,
                },
            });
            match shared.store.create(&registry::REPLICASETS, Some(&ns), rs) {
                Ok(rs) => {
                    if initial > 0 {
                        events::record(
                            shared,
                            d,
                            EventType::Normal,
                            "ScalingReplicaSet",
                            &format!("Scaled up replica set {} from 0 to {initial}", name(&rs)),
                            "deployment-controller",
                            "",
                        );
                    }
                    rs
                }
                Err(_) => return,
            }
        }
    };
    // Oldest first.
    owned.sort_by_key(revision);

    if d["spec"]["paused"].as_bool() != Some(true) {
        if strategy == "Recreate" {
            let old_pods: i64 = owned
                .iter()
                .map(|r| replicas(r) + status_i(r, "replicas"))
                .sum();
            for r in &owned {
                scale(shared, d, r, 0);
            }
            if old_pods == 0 {
                scale(shared, d, &new_rs, want);
            }
        } else {
            roll(shared, d, &new_rs, &owned, want, surge, unavailable);
        }
    }

    // Clean up old, empty ReplicaSets beyond revisionHistoryLimit.
    let limit = d["spec"]["revisionHistoryLimit"]
        .as_i64()
        .unwrap_or(10)
        .max(0) as usize;
    let empty_old: Vec<&Value> = owned
        .iter()
        .filter(|r| replicas(r) == 0 && status_i(r, "replicas") == 0)
        .collect();
    if empty_old.len() > limit {
        for r in empty_old.iter().take(empty_old.len() - limit) {
            let _ = shared.store.delete(
                &registry::REPLICASETS,
                Some(&ns),
                name(r),
                &DeleteOptions::default(),
            );
        }
    }

    update_status(shared, d, &new_rs, &owned, want, unavailable);
}

fn roll(
    shared: &Shared,
    d: &Value,
    new_rs: &Value,
    old: &[Value],
    want: i64,
    surge: i64,
    max_unavailable: i64,
) {
    let new_reps = replicas(new_rs);
    let old_reps: i64 = old.iter().map(replicas).sum();
    let total = new_reps + old_reps;
    // Scale the new ReplicaSet up within the surge.
    if new_reps < want {
        let room = want + surge - total;
        if room > 0 {
            scale(shared, d, new_rs, (new_reps + room).min(want));
        }
    } else if new_reps > want {
        scale(shared, d, new_rs, want);
    }
    if old_reps == 0 {
        return;
    }
    // Scale old ones down as far as availability allows.
    let min_available = want - max_unavailable;
    let new_available = status_i(new_rs, "availableReplicas");
    let old_available: i64 = old.iter().map(|r| status_i(r, "availableReplicas")).sum();
    // Old pods that are not available can go at once.
    let mut budget = (old_available + new_available - min_available).max(0);
    for r in old {
        let reps = replicas(r);
        if reps == 0 {
            continue;
        }
        let unavailable_here = (reps - status_i(r, "availableReplicas")).max(0);
        let mut to = reps - unavailable_here;
        let cut = budget.min(to);
        to -= cut;
        budget -= cut;
        if to != reps {
            scale(shared, d, r, to.max(0));
        }
    }
}

fn update_status(
    shared: &Shared,
    d: &Value,
    new_rs: &Value,
    old: &[Value],
    want: i64,
    max_unavailable: i64,
) {
    let ns = namespace(d);
    let new_rs = shared
        .store
        .try_get(&registry::REPLICASETS, Some(ns), name(new_rs))
        .map(|v| (*v).clone())
        .unwrap_or_else(|| new_rs.clone());
    let all: Vec<Value> = std::iter::once(new_rs.clone())
        .chain(old.iter().filter_map(|r| {
            shared
                .store
                .try_get(&registry::REPLICASETS, Some(ns), name(r))
                .map(|v| (*v).clone())
        }))
        .collect();
    let total: i64 = all.iter().map(|r| status_i(r, "replicas")).sum();
    let ready: i64 = all.iter().map(|r| status_i(r, "readyReplicas")).sum();
    let available: i64 = all.iter().map(|r| status_i(r, "availableReplicas")).sum();
    let updated = status_i(&new_rs, "replicas");
    let unavailable = (want - available).max(0);
    let complete = updated == want && total == want && available >= want;
    let ts = now();
    let new_name = name(&new_rs).to_string();
    let generation = d["metadata"]["generation"].clone();
    let deadline = d["spec"]["progressDeadlineSeconds"].as_i64().unwrap_or(600);
    let _ = shared
        .store
        .mutate(&registry::DEPLOYMENTS, Some(ns), name(d), |d| {
            let s = &mut d["status"];
            // Progress: counts moved, or a different new ReplicaSet.
            let progress_cond = s["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Progressing"))
                .cloned();
            let progressed = s["updatedReplicas"] != json!(updated)
                || s["availableReplicas"] != json!(available)
                || s["replicas"] != json!(total)
                || s["observedGeneration"] != generation
                || progress_cond.as_ref().is_none_or(|c| {
                    !c["message"]
                        .as_str()
                        .unwrap_or("")
                        .contains(&format!("\"{new_name}\""))
                });
            let stalled = !progressed
                && progress_cond.as_ref().is_some_and(|c| {
                    c["reason"] == "ProgressDeadlineExceeded"
                        || c["lastUpdateTime"]
                            .as_str()
                            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                            .is_some_and(|t| {
                                (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds()
                                    > deadline
                            })
                });
            s["observedGeneration"] = generation;
            s["replicas"] = json!(total);
            s["updatedReplicas"] = json!(updated);
            s["readyReplicas"] = json!(ready);
            s["availableReplicas"] = json!(available);
            if unavailable > 0 {
                s["unavailableReplicas"] = json!(unavailable);
            } else if let Some(o) = s.as_object_mut() {
                o.remove("unavailableReplicas");
            }
            let mut conds = s["conditions"].as_array().cloned().unwrap_or_default();
            let mut set =
                |t: &str, st: &str, reason: &str, msg: String, bump_update: bool| match conds
                    .iter_mut()
                    .find(|c| c["type"] == t)
                {
                    Some(c) => {
                        let changed = c["status"] != st || c["reason"] != reason;
                        if c["status"] != st {
                            c["lastTransitionTime"] = json!(ts);
                        }
                        if changed || bump_update {
                            c["lastUpdateTime"] = json!(ts);
                        }
                        c["status"] = json!(st);
                        c["reason"] = json!(reason);
                        c["message"] = json!(msg);
                    }
                    None => conds.push(json!({
                        "type": t, "status": st, "lastUpdateTime": ts,
                        "lastTransitionTime": ts, "reason": reason, "message": msg,
                    })),
                };
            if available >= want - max_unavailable {
                set(
                    "Available",
                    "True",
                    "MinimumReplicasAvailable",
                    "Deployment has minimum availability.".into(),
                    false,
                );
            } else {
                set(
                    "Available",
                    "False",
                    "MinimumReplicasUnavailable",
                    "Deployment does not have minimum availability.".into(),
                    false,
                );
            }
            if complete {
                set(
                    "Progressing",
                    "True",
                    "NewReplicaSetAvailable",
                    format!("ReplicaSet \"{new_name}\" has successfully progressed."),
                    false,
                );
            } else if stalled {
                set(
                    "Progressing",
                    "False",
                    "ProgressDeadlineExceeded",
                    format!("ReplicaSet \"{new_name}\" has timed out progressing."),
                    false,
                );
            } else {
                set(
                    "Progressing",
                    "True",
                    "ReplicaSetUpdated",
                    format!("ReplicaSet \"{new_name}\" is progressing."),
                    progressed,
                );
            }
            // Kubernetes lists Available first, then Progressing.
            conds.sort_by_key(|c| if c["type"] == "Available" { 0 } else { 1 });
            s["conditions"] = json!(conds);
        });
}
