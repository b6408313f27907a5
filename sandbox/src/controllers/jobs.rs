//! Job controller (pods run their command to completion; `Complete` /
//! `Failed` conditions, `succeeded`/`failed`/`active` counts,
//! `completionTime`, `backoffLimit`, `ttlSecondsAfterFinished`) and the
//! DaemonSet controller (one pod on the one node).

use serde_json::{Value, json};

use super::{name, namespace, owned_by, pod_from_template, template_hash, terminating, uid};
use crate::events::{self, EventType};
use crate::registry;
use crate::state::Shared;
use crate::store::{DeleteOptions, Propagation, now};

fn finished(job: &Value) -> Option<&'static str> {
    let conds = job["status"]["conditions"].as_array()?;
    for c in conds {
        if c["status"] == "True" {
            if c["type"] == "Complete" {
                return Some("Complete");
            }
            if c["type"] == "Failed" {
                return Some("Failed");
            }
        }
    }
    None
}

pub fn reconcile(shared: &Shared) {
    for job in shared.store.snapshot(&registry::JOBS, None) {
        if terminating(&job) {
            continue;
        }
        let ns = namespace(&job).to_string();
        let jname = name(&job).to_string();
        if finished(&job).is_some() {
            // ttlSecondsAfterFinished: delete the job (and its pods).
            if let (Some(ttl), Some(done)) = (
                job["spec"]["ttlSecondsAfterFinished"].as_i64(),
                job["status"]["completionTime"]
                    .as_str()
                    .or(job["status"]["conditions"][0]["lastTransitionTime"].as_str()),
            ) && let Ok(t) = chrono::DateTime::parse_from_rfc3339(done)
                && (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds() >= ttl
            {
                let _ = shared.store.delete(
                    &registry::JOBS,
                    Some(&ns),
                    &jname,
                    &DeleteOptions {
                        propagation: Propagation::Background,
                        ..Default::default()
                    },
                );
            }
            continue;
        }
        let pods: Vec<Value> = shared
            .store
            .snapshot(&registry::PODS, Some(&ns))
            .into_iter()
            .filter(|p| owned_by(p, uid(&job)))
            .map(|p| (*p).clone())
            .collect();
        let phase = |p: &Value| p["status"]["phase"].as_str().unwrap_or("").to_string();
        let succeeded = pods.iter().filter(|p| phase(p) == "Succeeded").count() as i64;
        let failed = pods.iter().filter(|p| phase(p) == "Failed").count() as i64;
        let active = pods.len() as i64 - succeeded - failed;
        let completions = job["spec"]["completions"].as_i64().unwrap_or(1);
        let parallelism = job["spec"]["parallelism"].as_i64().unwrap_or(1);
        let backoff_limit = job["spec"]["backoffLimit"].as_i64().unwrap_or(6);
        let ts = now();
        let mut outcome: Option<(&str, &str, String)> = None;
        if succeeded >= completions {
            outcome = Some((
                "Complete",
                "CompletionsReached",
                "Reached expected number of succeeded pods".into(),
            ));
        } else if failed > backoff_limit {
            outcome = Some((
                "Failed",
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit".into(),
            ));
        } else {
            let need = (completions - succeeded).min(parallelism) - active;
            for _ in 0..need.max(0) {
                let mut extra = vec![
                    ("job-name", jname.clone()),
                    ("batch.kubernetes.io/job-name", jname.clone()),
                    ("controller-uid", uid(&job).to_string()),
                    ("batch.kubernetes.io/controller-uid", uid(&job).to_string()),
                ];
                extra.retain(|_| true);
                let mut pod = pod_from_template(
                    &job,
                    &job["spec"]["template"],
                    None,
                    &format!("{jname}-"),
                    &extra,
                );
                if pod["spec"]["restartPolicy"].is_null() {
                    pod["spec"]["restartPolicy"] = json!("Never");
                }
                if let Ok(created) = shared.store.create(&registry::PODS, Some(&ns), pod) {
                    events::record(
                        shared,
                        &job,
                        EventType::Normal,
                        "SuccessfulCreate",
                        &format!("Created pod: {}", name(&created)),
                        "job-controller",
                        "",
                    );
                }
            }
        }
        let active_now = if outcome.is_some() { 0 } else { active.max(0) };
        let _ = shared
            .store
            .mutate(&registry::JOBS, Some(&ns), &jname, |j| {
                let s = &mut j["status"];
                if s["startTime"].is_null() {
                    s["startTime"] = json!(ts);
                }
                s["active"] = json!(active_now);
                s["succeeded"] = json!(succeeded);
                s["failed"] = json!(failed);
                s["ready"] = json!(0);
                s["terminating"] = json!(0);
                if let Some((t, reason, msg)) = &outcome {
                    let mut conds = vec![];
                    if *t == "Complete" {
                        conds.push(
                            json!({"type": "SuccessCriteriaMet", "status": "True", "reason": reason,
                        "message": msg, "lastProbeTime": ts, "lastTransitionTime": ts}),
                        );
                        s["completionTime"] = json!(ts);
                    } else {
                        conds.push(
                            json!({"type": "FailureTarget", "status": "True", "reason": reason,
                        "message": msg, "lastProbeTime": ts, "lastTransitionTime": ts}),
                        );
                    }
                    conds.push(json!({"type": t, "status": "True", "reason": reason,
                    "message": msg, "lastProbeTime": ts, "lastTransitionTime": ts}));
                    s["conditions"] = json!(conds);
                }
            });
        if let Some((t, reason, msg)) = outcome {
            let (et, r) = if t == "Complete" {
                (EventType::Normal, "Completed")
            } else {
                (EventType::Warning, reason)
            };
            let message = if t == "Complete" {
                "Job completed".to_string()
            } else {
                msg
            };
            events::record(shared, &job, et, r, &message, "job-controller", "");
        }
    }
}

/// DaemonSets: one pod on the node; a template change replaces it.
pub fn reconcile_daemonsets(shared: &Shared) {
    for ds in shared.store.snapshot(&registry::DAEMONSETS, None) {
        if terminating(&ds) {
            continue;
        }
        let ns = namespace(&ds).to_string();
        let hash = template_hash(&ds["spec"]["template"]);
        let pods: Vec<Value> = shared
            .store
            .snapshot(&registry::PODS, Some(&ns))
            .into_iter()
            .filter(|p| owned_by(p, uid(&ds)) && !terminating(p))
            .map(|p| (*p).clone())
            .collect();
        let current: Vec<&Value> = pods
            .iter()
            .filter(|p| {
                p["metadata"]["labels"]["controller-revision-hash"].as_str() == Some(hash.as_str())
            })
            .collect();
        for p in pods.iter().filter(|p| {
            p["metadata"]["labels"]["controller-revision-hash"].as_str() != Some(hash.as_str())
        }) {
            let _ = shared.store.delete(
                &registry::PODS,
                Some(&ns),
                name(p),
                &DeleteOptions::default(),
            );
        }
        if current.is_empty() {
            let pod = pod_from_template(
                &ds,
                &ds["spec"]["template"],
                None,
                &format!("{}-", name(&ds)),
                &[
                    ("controller-revision-hash", hash.clone()),
                    (
                        "pod-template-generation",
                        ds["metadata"]["generation"]
                            .as_i64()
                            .unwrap_or(1)
                            .to_string(),
                    ),
                ],
            );
            if let Ok(created) = shared.store.create(&registry::PODS, Some(&ns), pod) {
                events::record(
                    shared,
                    &ds,
                    EventType::Normal,
                    "SuccessfulCreate",
                    &format!("Created pod: {}", name(&created)),
                    "daemonset-controller",
                    "",
                );
            }
        }
        let ready = current.iter().filter(|p| super::pods::is_ready(p)).count();
        let n = current.len().min(1);
        let generation = ds["metadata"]["generation"].clone();
        let _ = shared
            .store
            .mutate(&registry::DAEMONSETS, Some(&ns), name(&ds), |d| {
                let s = &mut d["status"];
                s["desiredNumberScheduled"] = json!(1);
                s["currentNumberScheduled"] = json!(n);
                s["updatedNumberScheduled"] = json!(n);
                s["numberReady"] = json!(ready);
                s["numberAvailable"] = json!(ready);
                s["numberMisscheduled"] = json!(0);
                s["observedGeneration"] = generation;
                if ready < 1 {
                    s["numberUnavailable"] = json!(1);
                } else if let Some(o) = s.as_object_mut() {
                    o.remove("numberUnavailable");
                }
            });
    }
}
