//! Each component's workloads fully rolled out: Deployments with every
//! replica updated and available, StatefulSets with every pod ready on the
//! update revision (an earlier `OnDelete` upgrade that never rolled leaves
//! pods on the old one), every pod Ready, none stuck pulling or crashing,
//! restarts of the last hour reported, claims Bound.

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use serde_json::Value;

use super::{Check, Context};
use crate::survey::{Live, ReleaseSurvey};
use crate::topology::{ContainerState, PodInfo, WorkloadKind, WorkloadPods};

/// Restarts younger than this are reported.
const RECENT: chrono::TimeDelta = chrono::TimeDelta::hours(1);

pub fn checks(cx: &Context<'_>, now: DateTime<Utc>) -> Vec<Check> {
    cx.survey
        .releases()
        .iter()
        .map(|r| component(cx, r, now))
        .collect()
}

/// What was found wrong with one component, the worst first.
#[derive(Default)]
struct Findings {
    fails: Vec<(String, String)>,
    warns: Vec<(String, String)>,
    rolled: Vec<String>,
}

fn component(cx: &Context<'_>, r: &ReleaseSurvey, now: DateTime<Utc>) -> Check {
    let name = format!("workloads.{}", r.component);
    let ns = &cx.survey.namespace;
    if let Err(e) = &r.latest {
        return Check::fail(
            name,
            format!("nothing to check: {e}"),
            format!("see release.{} above", r.component),
        );
    }
    let live = match &cx.survey.live {
        Some(Ok(l)) => l,
        Some(Err(e)) => {
            return Check::fail(
                name,
                format!("workloads could not be listed: {e}"),
                format!("check access with `kubectl get deployments,statefulsets,pvc -n {ns}`"),
            );
        }
        None => {
            return Check::fail(name, "workloads were not listed", "run preflight again");
        }
    };
    let mut f = Findings::default();
    let hints = Hints {
        upgrade: cx.command("upgrade --charts DIR"),
        missing: format!(
            "`{}` puts it back (`helm get manifest {} -n {ns}` shows what the release holds)",
            cx.command(&format!("rollback {}", r.component)),
            r.name
        ),
    };
    for w in &r.workloads {
        workload(ns, live, w, now, &hints, &mut f);
    }
    let claims = claims(ns, r, live, &mut f);
    let summary = format!(
        "{}{}",
        if f.rolled.is_empty() {
            "no workloads".to_string()
        } else {
            f.rolled.join(", ")
        },
        if claims > 0 {
            format!("; {claims} claim(s) Bound")
        } else {
            String::new()
        }
    );
    if let Some((_, hint)) = f.fails.first() {
        let what: Vec<&str> = f.fails.iter().map(|(d, _)| d.as_str()).collect();
        return Check::fail(name, what.join("; "), hint.clone());
    }
    if let Some((_, hint)) = f.warns.first() {
        let what: Vec<&str> = f.warns.iter().map(|(d, _)| d.as_str()).collect();
        return Check::warn(
            name,
            format!("{summary}; {}", what.join("; ")),
            hint.clone(),
        );
    }
    Check::pass(
        name,
        format!("{summary}; every pod Ready, no restarts in the last hour"),
    )
}

/// Commands named in hints.
struct Hints {
    upgrade: String,
    missing: String,
}

fn workload(
    ns: &str,
    live: &Live,
    w: &WorkloadPods,
    now: DateTime<Utc>,
    hints: &Hints,
    f: &mut Findings,
) {
    let shown = w.workload.display();
    let name = &w.workload.name;
    match w.workload.kind {
        WorkloadKind::Deployment => match live.deployment(name) {
            Some(d) => match deployment_rollout(d) {
                Ok(s) => f.rolled.push(format!("{shown} {s}")),
                Err(s) => f.fails.push((
                    format!("{shown} not rolled out: {s}"),
                    format!("watch it with `kubectl rollout status deployment/{name} -n {ns}`"),
                )),
            },
            None => f.fails.push((
                format!("{shown} is in the release but not in the cluster"),
                hints.missing.clone(),
            )),
        },
        WorkloadKind::StatefulSet => match live.statefulset(name) {
            Some(s) => statefulset(ns, s, w, &hints.upgrade, f),
            None => f.fails.push((
                format!("{shown} is in the release but not in the cluster"),
                hints.missing.clone(),
            )),
        },
        _ => {
            f.rolled
                .push(format!("{shown} {}/{} ready", w.ready(), w.pods.len()));
        }
    }
    for p in &w.pods {
        if let Some((container, reason)) = pod_trouble(p) {
            f.fails.insert(
                0,
                (
                    format!("pod {} {reason}", p.name),
                    format!(
                        "see why with `kubectl describe pod {} -n {ns}` and `kubectl logs {} -c {container} --previous -n {ns}`; fix the image or its configuration (a recent upgrade? `helm history` of its release)",
                        p.name, p.name
                    ),
                ),
            );
        } else if !p.ready {
            f.fails.push((
                format!(
                    "pod {} is not Ready (phase {})",
                    p.name,
                    if p.phase.is_empty() {
                        "unknown"
                    } else {
                        &p.phase
                    }
                ),
                format!("see why with `kubectl describe pod {} -n {ns}`", p.name),
            ));
        }
        for c in &p.statuses {
            if recent_restart(c, now) {
                f.warns.push((
                    format!(
                        "pod {} container {} restarted {} time(s), last in the last hour ({})",
                        p.name,
                        c.name,
                        c.restart_count,
                        c.last_reason.as_deref().unwrap_or("no reason given")
                    ),
                    format!(
                        "see why with `kubectl logs {} -c {} --previous -n {ns}`",
                        p.name, c.name
                    ),
                ));
            }
        }
    }
}

fn statefulset(ns: &str, s: &StatefulSet, w: &WorkloadPods, upgrade: &str, f: &mut Findings) {
    let name = &w.workload.name;
    let want = s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1) as usize;
    let st = s.status.clone().unwrap_or_default();
    let update = st.update_revision.clone().unwrap_or_default();
    let on_delete = s
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        == Some("OnDelete");
    let old = old_revision_pods(&w.pods, &update);
    if !old.is_empty() {
        f.fails.insert(
            0,
            (
                format!(
                    "StatefulSet {name} has pod(s) on an old revision ({}), not the update revision {update}{}",
                    old.join(", "),
                    if on_delete {
                        " (updateStrategy OnDelete: an earlier upgrade changed the template and no pod was rolled)"
                    } else {
                        ""
                    }
                ),
                format!(
                    "roll them one at a time with `kubectl delete pod {} -n {ns}`, each back Ready (and OpenBao unsealed) before the next, standbys before the active node (`{upgrade}` rolls OnDelete pods itself for what it upgrades)",
                    old[0]
                ),
            ),
        );
        return;
    }
    let ready = w.pods.iter().filter(|p| p.ready).count();
    if ready < want {
        f.fails.push((
            format!("StatefulSet {name}: {ready}/{want} pods ready"),
            format!(
                "see `kubectl get pods -n {ns}` and `kubectl describe statefulset {name} -n {ns}`"
            ),
        ));
        return;
    }
    f.rolled.push(format!(
        "StatefulSet {name} {ready}/{want}{}",
        if on_delete { " (OnDelete)" } else { "" }
    ));
}

/// The pods not on `update` (a StatefulSet's update revision).
pub fn old_revision_pods(pods: &[PodInfo], update: &str) -> Vec<String> {
    if update.is_empty() {
        return Vec::new();
    }
    pods.iter()
        .filter(|p| p.revision().is_some_and(|r| r != update))
        .map(|p| p.name.clone())
        .collect()
}

/// `2/2 updated and available`, or why not.
pub fn deployment_rollout(d: &Deployment) -> Result<String, String> {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let st = d.status.clone().unwrap_or_default();
    let generation = d.metadata.generation.unwrap_or(0);
    if st.observed_generation.unwrap_or(0) < generation {
        return Err(format!(
            "the controller has not seen generation {generation} yet"
        ));
    }
    let updated = st.updated_replicas.unwrap_or(0);
    let available = st.available_replicas.unwrap_or(0);
    let total = st.replicas.unwrap_or(0);
    if updated < want || available < want || total > want {
        return Err(format!(
            "{updated}/{want} updated, {available} available, {total} pods in all"
        ));
    }
    Ok(format!("{available}/{want}"))
}

/// A container that cannot start: `(container, "ImagePullBackOff in
/// container x: ...")`.
pub fn pod_trouble(p: &PodInfo) -> Option<(String, String)> {
    p.statuses.iter().find_map(|c| {
        let reason = c.waiting_reason.as_deref()?;
        matches!(
            reason,
            "CrashLoopBackOff"
                | "ImagePullBackOff"
                | "ErrImagePull"
                | "InvalidImageName"
                | "CreateContainerConfigError"
                | "CreateContainerError"
        )
        .then(|| {
            (
                c.name.clone(),
                format!(
                    "{reason} in container {}{}",
                    c.name,
                    c.waiting_message
                        .as_deref()
                        .map(|m| format!(": {}", crate::report::one_line(m, 120)))
                        .unwrap_or_default()
                ),
            )
        })
    })
}

/// Whether the container's previous run ended within the last hour.
pub fn recent_restart(c: &ContainerState, now: DateTime<Utc>) -> bool {
    c.restart_count > 0
        && c.last_finished_at
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .is_some_and(|t| now.signed_duration_since(t) < RECENT)
}

/// Claims of the release: those its manifest declares and those its
/// StatefulSets' claim templates make (`<template>-<set>-<ordinal>`).
/// Unbound ones fail; returns how many are Bound.
fn claims(ns: &str, r: &ReleaseSurvey, live: &Live, f: &mut Findings) -> usize {
    let objects = r.objects.as_deref().unwrap_or_default();
    let declared: Vec<&str> = objects
        .iter()
        .filter(|o| o.kind == "PersistentVolumeClaim")
        .map(|o| o.name.as_str())
        .collect();
    let templates: Vec<String> = objects
        .iter()
        .filter(|o| o.kind == "StatefulSet")
        .flat_map(|o| {
            o.body
                .pointer("/spec/volumeClaimTemplates")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|t| t.pointer("/metadata/name").and_then(Value::as_str))
                .map(|t| format!("{t}-{}-", o.name))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut bound = 0;
    for c in &live.claims {
        let name = c.metadata.name.as_deref().unwrap_or_default();
        let ours = declared.contains(&name)
            || templates.iter().any(|t| {
                name.strip_prefix(t.as_str())
                    .is_some_and(|n| n.parse::<u32>().is_ok())
            });
        if !ours {
            continue;
        }
        let phase = c
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("Pending");
        if phase == "Bound" {
            bound += 1;
        } else {
            f.fails.push((
                format!("PersistentVolumeClaim {name} is {phase}, not Bound"),
                format!("see why with `kubectl describe pvc {name} -n {ns}`"),
            ));
        }
    }
    bound
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn pod(name: &str, rev: &str) -> PodInfo {
        PodInfo {
            name: name.into(),
            labels: BTreeMap::from([("controller-revision-hash".into(), rev.into())]),
            ready: true,
            ..Default::default()
        }
    }

    #[test]
    fn pods_on_an_old_revision_are_named() {
        let pods = [pod("bao-0", "bao-aaa"), pod("bao-1", "bao-bbb")];
        assert_eq!(old_revision_pods(&pods, "bao-bbb"), vec!["bao-0"]);
        assert!(old_revision_pods(&pods, "").is_empty());
    }

    #[test]
    fn a_deployment_is_rolled_out_when_every_replica_is_updated_and_available() {
        let d: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "api", "generation": 3},
            "spec": {"replicas": 2, "selector": {}, "template": {}},
            "status": {"observedGeneration": 3, "replicas": 3, "updatedReplicas": 1, "availableReplicas": 2}
        }))
        .unwrap();
        assert_eq!(
            deployment_rollout(&d).unwrap_err(),
            "1/2 updated, 2 available, 3 pods in all"
        );
        let d: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "api", "generation": 3},
            "spec": {"replicas": 2, "selector": {}, "template": {}},
            "status": {"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}
        }))
        .unwrap();
        assert_eq!(deployment_rollout(&d).unwrap(), "2/2");
    }

    #[test]
    fn stuck_containers_and_recent_restarts() {
        let mut p = pod("api-1", "x");
        p.statuses = vec![ContainerState {
            name: "backend".into(),
            waiting_reason: Some("ErrImagePull".into()),
            ..Default::default()
        }];
        let (c, r) = pod_trouble(&p).unwrap();
        assert_eq!(
            (c.as_str(), r.as_str()),
            ("backend", "ErrImagePull in container backend")
        );
        p.statuses[0].waiting_reason = Some("ContainerCreating".into());
        assert!(pod_trouble(&p).is_none());

        let now = DateTime::parse_from_rfc3339("2026-12-02T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut c = ContainerState {
            restart_count: 2,
            last_finished_at: Some("2026-12-02T09:30:00Z".into()),
            ..Default::default()
        };
        assert!(recent_restart(&c, now));
        c.last_finished_at = Some("2026-12-02T08:30:00Z".into());
        assert!(!recent_restart(&c, now));
        c.restart_count = 0;
        c.last_finished_at = None;
        assert!(!recent_restart(&c, now));
    }
}
