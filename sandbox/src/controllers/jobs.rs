//! Job controller (pods run their command to completion; `Complete` /
//! `Failed` conditions, `succeeded`/`failed`/`active` counts,
//! `completionTime`, `backoffLimit`, `ttlSecondsAfterFinished`) and the
//! DaemonSet controller (one pod on the one node), and CronJobs (a Job
//! per scheduled minute).

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

/// Whether one cron field (`*`, `*/n`, `a-b`, `a-b/n`, `a,b,c`) matches.
fn cron_field_matches(field: &str, value: u32, min: u32, max: u32) -> bool {
    field.split(',').any(|part| {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, s.parse::<u32>().unwrap_or(0)),
            None => (part, 1),
        };
        if step == 0 {
            return false;
        }
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            match (a.parse(), b.parse()) {
                (Ok(a), Ok(b)) => (a, b),
                _ => return false,
            }
        } else {
            match range.parse::<u32>() {
                // `5/15` means from 5 to the end, every 15.
                Ok(a) if part.contains('/') => (a, max),
                Ok(a) => (a, a),
                Err(_) => return false,
            }
        };
        value >= lo && value <= hi && (value - lo).is_multiple_of(step)
    })
}

/// Whether a standard five-field schedule (or `@hourly`-style macro)
/// fires at `t` (minute resolution).
pub fn cron_matches(schedule: &str, t: chrono::DateTime<chrono::Utc>) -> bool {
    use chrono::{Datelike, Timelike};
    let schedule = match schedule.trim() {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        s => s,
    };
    let f: Vec<&str> = schedule.split_whitespace().collect();
    if f.len() != 5 {
        return false;
    }
    let dow = t.weekday().num_days_from_sunday();
    cron_field_matches(f[0], t.minute(), 0, 59)
        && cron_field_matches(f[1], t.hour(), 0, 23)
        && cron_field_matches(f[2], t.day(), 1, 31)
        && cron_field_matches(f[3], t.month(), 1, 12)
        && (cron_field_matches(f[4], dow, 0, 7) || (dow == 0 && cron_field_matches(f[4], 7, 0, 7)))
}

/// CronJobs: a Job per scheduled minute (named `<cronjob>-<minutes since
/// the epoch>`, as Kubernetes names them), `lastScheduleTime`,
/// `lastSuccessfulTime`, `active`, and the history limits.
pub fn reconcile_cronjobs(shared: &Shared) {
    use chrono::{SubsecRound, Timelike};
    let now_t = chrono::Utc::now()
        .trunc_subsecs(0)
        .with_second(0)
        .unwrap_or_else(chrono::Utc::now);
    let minute = now_t.timestamp() / 60;
    for cj in shared.store.snapshot(&registry::CRONJOBS, None) {
        if terminating(&cj) {
            continue;
        }
        let ns = namespace(&cj).to_string();
        let cname = name(&cj).to_string();
        let jobs: Vec<Value> = shared
            .store
            .snapshot(&registry::JOBS, Some(&ns))
            .into_iter()
            .filter(|j| owned_by(j, uid(&cj)))
            .map(|j| (*j).clone())
            .collect();
        let schedule = cj["spec"]["schedule"].as_str().unwrap_or("");
        let suspended = cj["spec"]["suspend"].as_bool() == Some(true);
        let job_name = format!("{cname}-{minute}");
        let last = cj["status"]["lastScheduleTime"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp() / 60);
        let created_at = cj["metadata"]["creationTimestamp"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp())
            .unwrap_or(0);
        let active: Vec<&Value> = jobs.iter().filter(|j| finished(j).is_none()).collect();
        let forbid = cj["spec"]["concurrencyPolicy"].as_str() == Some("Forbid");
        let mut scheduled = None;
        if !suspended
            && cron_matches(schedule, now_t)
            && last != Some(minute)
            // The first run is the first scheduled minute after creation.
            && minute * 60 >= created_at
            && (!forbid || active.is_empty())
            && !jobs.iter().any(|j| name(j) == job_name)
        {
            let tpl = &cj["spec"]["jobTemplate"];
            let mut meta = tpl["metadata"].clone();
            if !meta.is_object() {
                meta = json!({});
            }
            meta["name"] = json!(job_name);
            meta["namespace"] = json!(ns);
            meta["ownerReferences"] = json!([super::owner_ref(&cj)]);
            meta["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"] =
                json!(now_t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": tpl["spec"]});
            if shared.store.create(&registry::JOBS, Some(&ns), job).is_ok() {
                events::record(
                    shared,
                    &cj,
                    EventType::Normal,
                    "SuccessfulCreate",
                    &format!("Created job {job_name}"),
                    "cronjob-controller",
                    "",
                );
                scheduled = Some(now_t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            }
        }
        // History limits: oldest finished jobs beyond the limits go.
        for (state, limit) in [
            (
                "Complete",
                cj["spec"]["successfulJobsHistoryLimit"]
                    .as_i64()
                    .unwrap_or(3),
            ),
            (
                "Failed",
                cj["spec"]["failedJobsHistoryLimit"].as_i64().unwrap_or(1),
            ),
        ] {
            let mut done: Vec<&Value> =
                jobs.iter().filter(|j| finished(j) == Some(state)).collect();
            done.sort_by(|a, b| {
                a["metadata"]["creationTimestamp"]
                    .as_str()
                    .cmp(&b["metadata"]["creationTimestamp"].as_str())
            });
            let excess = done.len().saturating_sub(limit.max(0) as usize);
            for j in done.iter().take(excess) {
                let _ = shared.store.delete(
                    &registry::JOBS,
                    Some(&ns),
                    name(j),
                    &DeleteOptions {
                        propagation: Propagation::Background,
                        ..Default::default()
                    },
                );
            }
        }
        let last_success = jobs
            .iter()
            .filter(|j| finished(j) == Some("Complete"))
            .filter_map(|j| j["status"]["completionTime"].as_str())
            .max()
            .map(str::to_string);
        let active_refs: Vec<Value> = active
            .iter()
            .map(|j| {
                json!({"apiVersion": "batch/v1", "kind": "Job", "name": name(j),
                    "namespace": ns, "uid": uid(j), "resourceVersion": j["metadata"]["resourceVersion"]})
            })
            .collect();
        let _ = shared
            .store
            .mutate(&registry::CRONJOBS, Some(&ns), &cname, |c| {
                let s = &mut c["status"];
                if !s.is_object() {
                    *s = json!({});
                }
                if let Some(t) = &scheduled {
                    s["lastScheduleTime"] = json!(t);
                }
                if let Some(t) = &last_success {
                    s["lastSuccessfulTime"] = json!(t);
                }
                if active_refs.is_empty() {
                    if let Some(o) = s.as_object_mut() {
                        o.remove("active");
                    }
                } else {
                    s["active"] = json!(active_refs);
                }
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn cron_schedules() {
        let t = chrono::Utc
            .with_ymd_and_hms(2026, 11, 24, 14, 30, 0)
            .unwrap(); // a Tuesday
        assert!(cron_matches("* * * * *", t));
        assert!(cron_matches("*/15 * * * *", t));
        assert!(cron_matches("30 14 * * 2", t));
        assert!(cron_matches("0-40/10 9-17 24 11 1-5", t));
        assert!(!cron_matches("0 2 * * *", t));
        assert!(!cron_matches("@hourly", t));
        assert!(cron_matches("30 14 * * 0,2", t));
        assert!(!cron_matches("30 14 * * 0", t));
        assert!(!cron_matches("not a schedule", t));
    }
}
