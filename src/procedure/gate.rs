//! The health gate after each helm step: the component is rolled out,
//! healthy and on the new version, or the step failed. StatefulSets with
//! `updateStrategy: OnDelete` (the real OpenBao chart's default: helm
//! upgrade restarts nothing) are rolled here, one pod at a time: standbys
//! first, the active OpenBao node last, each deleted gracefully and waited
//! for until it is back, ready, unsealed and on the new revision, so a
//! newer node never fails over to an older one.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use tokio::time::Instant;

use crate::cluster::pods;
use crate::probes;
use crate::survey::{Live, ReleaseSurvey, Survey, SurveyOptions};
use crate::target::Target;
use crate::topology::{Component, OpenbaoTarget, PodInfo, WorkloadKind, WorkloadPods};

/// What the gate waits for.
#[derive(Debug, Clone)]
pub struct GateSpec {
    pub component: Component,
    /// The revision the helm step left (the gate refuses another).
    pub revision: Option<u32>,
    /// The chart's appVersion the services must report (`/api/health`).
    pub app_version: Option<String>,
    /// Roll StatefulSets with `updateStrategy: OnDelete`.
    pub roll_on_delete: bool,
    pub deadline: Instant,
}

/// Why a gate failed, with what an operator needs to see.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GateFailure {
    pub what: String,
    /// The failing pod and its reason (`CrashLoopBackOff in container x`).
    pub pod: Option<String>,
    pub reason: Option<String>,
    /// Its recent events and log tail (or a hook Job's log tail).
    pub events: Vec<String>,
    pub log_tail: Vec<String>,
}

impl std::fmt::Display for GateFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.what)?;
        if let (Some(pod), Some(reason)) = (&self.pod, &self.reason) {
            write!(f, " (pod {pod}: {reason})")?;
        }
        Ok(())
    }
}

/// A progress line for the operator (`rolling pod x (standby)`).
pub type Progress<'a> = &'a mut (dyn FnMut(&str) + Send);

/// Where one pass over the component stands.
enum Verdict {
    Ready(Vec<String>),
    Waiting(String),
    Broken(GateFailure),
}

/// Waits until the component passes its gate, rolling OnDelete pods on the
/// way; `interrupted` ends the wait early (as a failure).
pub async fn wait(
    target: &Target,
    spec: &GateSpec,
    progress: Progress<'_>,
    interrupted: &tokio::sync::watch::Receiver<bool>,
) -> Result<Vec<String>, GateFailure> {
    let mut rolling: Option<String> = None;
    let mut last_wait = String::new();
    let mut last_pod: Option<PodInfo> = None;
    loop {
        if *interrupted.borrow() {
            return Err(GateFailure {
                what: format!("interrupted while waiting for {}", spec.component),
                ..Default::default()
            });
        }
        let round = Instant::now() + Duration::from_secs(20);
        let mut opts = SurveyOptions::within(Duration::from_secs(20));
        opts.deadline = round.min(spec.deadline.max(Instant::now() + Duration::from_secs(5)));
        opts.live = true;
        let verdict = match Survey::gather(target, opts).await {
            Ok(survey) => {
                let v = check(target, spec, &survey, &mut rolling, progress).await;
                last_pod = worst_pod(survey.release(spec.component));
                v
            }
            Err(e) => Verdict::Waiting(format!("the cluster did not answer: {e}")),
        };
        match verdict {
            Verdict::Ready(notes) => return Ok(notes),
            Verdict::Broken(f) => return Err(with_details(target, f).await),
            Verdict::Waiting(why) => {
                if why != last_wait {
                    progress(&format!("  waiting: {why}"));
                    last_wait = why;
                }
            }
        }
        if Instant::now() >= spec.deadline {
            let mut f = GateFailure {
                what: format!(
                    "{} did not become healthy in time: {last_wait}",
                    spec.component
                ),
                ..Default::default()
            };
            if let Some(p) = last_pod {
                f.pod = Some(p.name.clone());
                f.reason = pod_problem(&p).or_else(|| Some("not ready".into()));
            }
            return Err(with_details(target, f).await);
        }
        let mut stop = interrupted.clone();
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => {}
        }
    }
}

/// The pod most worth naming when a component is not healthy: a broken one
/// first, then any not ready.
fn worst_pod(r: &ReleaseSurvey) -> Option<PodInfo> {
    let pods: Vec<&PodInfo> = r.workloads.iter().flat_map(|w| &w.pods).collect();
    pods.iter()
        .find(|p| pod_problem(p).is_some())
        .or_else(|| pods.iter().find(|p| !p.ready))
        .map(|p| (*p).clone())
}

/// A reason that will not fix itself: an image that cannot be pulled, a
/// container crash-looping.
pub fn pod_problem(p: &PodInfo) -> Option<String> {
    p.statuses.iter().find_map(|c| {
        let reason = c.waiting_reason.as_deref()?;
        let stuck = matches!(
            reason,
            "ImagePullBackOff"
                | "ErrImagePull"
                | "InvalidImageName"
                | "CreateContainerConfigError"
                | "CreateContainerError"
        ) || (reason == "CrashLoopBackOff" && c.restart_count >= 2);
        stuck.then(|| {
            format!(
                "{reason} in container {}{}",
                c.name,
                c.waiting_message
                    .as_deref()
                    .map(|m| format!(": {}", crate::report::one_line(m, 160)))
                    .unwrap_or_default()
            )
        })
    })
}

/// Adds the failing pod's events and log tail.
async fn with_details(target: &Target, mut f: GateFailure) -> GateFailure {
    let ns = &target.namespace;
    let api = target.api();
    if let Some(pod) = f.pod.clone() {
        if f.events.is_empty() {
            f.events = pods::events(&target.client, &api, ns, &pod, 5)
                .await
                .unwrap_or_default();
        }
        if f.log_tail.is_empty() {
            let previous = f
                .reason
                .as_deref()
                .is_some_and(|r| r.starts_with("CrashLoopBackOff"));
            f.log_tail = pods::log_tail(&target.client, &api, ns, &pod, None, 10, previous)
                .await
                .unwrap_or_default();
        }
        // A pod merely "not ready" whose log says a migration failed: that
        // is the reason worth naming.
        if f.reason.as_deref().is_none_or(|r| r == "not ready")
            && let Some(error) = migration_lines(&f.log_tail.join("\n")).error
        {
            f.reason = Some(format!("not ready; its log says: {error}"));
        }
    }
    f
}

async fn check(
    target: &Target,
    spec: &GateSpec,
    survey: &Survey,
    rolling: &mut Option<String>,
    progress: Progress<'_>,
) -> Verdict {
    let r = survey.release(spec.component);
    let rel = match &r.latest {
        Ok(rel) => rel,
        Err(e) => return Verdict::Waiting(format!("release {}: {e}", r.name)),
    };
    if let Some(want) = spec.revision
        && rel.version != want
    {
        return Verdict::Waiting(format!(
            "release {} is at revision {}, expected {want}",
            r.name, rel.version
        ));
    }
    match rel.info.status.as_str() {
        "deployed" => {}
        "failed" => {
            return Verdict::Broken(GateFailure {
                what: format!(
                    "release {} revision {} failed: {}",
                    r.name,
                    rel.version,
                    crate::report::one_line(&rel.info.description, 200)
                ),
                ..Default::default()
            });
        }
        s => {
            return Verdict::Waiting(format!(
                "release {} revision {} is {s}",
                r.name, rel.version
            ));
        }
    }
    // Hook Jobs (migrations) of this revision.
    if let Some(hook) = rel
        .hooks
        .iter()
        .find(|h| h.kind == "Job" && h.last_run.as_ref().is_some_and(|l| l.phase == "Failed"))
    {
        return Verdict::Broken(hook_failure(target, &hook.name).await);
    }
    let live = match &survey.live {
        Some(Ok(l)) => l,
        Some(Err(e)) => return Verdict::Waiting(format!("workloads: {e}")),
        None => return Verdict::Waiting("workloads were not read".into()),
    };
    let mut notes = Vec::new();
    for w in &r.workloads {
        match rollout(target, spec, survey, live, w, rolling, progress).await {
            Ok(Some(note)) => notes.push(note),
            Ok(None) => {}
            Err(v) => return v,
        }
    }
    // The component's own health, now that its pods are in place.
    match spec.component {
        Component::Platform => match openbao_ready(target, survey, r).await {
            Ok(n) => notes.extend(n),
            Err(v) => return v,
        },
        Component::Data => match &survey.postgres {
            Ok(pg) => match probes::postgres::version(
                &target.client,
                &target.api(),
                &survey.namespace,
                pg,
            )
            .await
            {
                Ok(v) => notes.push(format!(
                    "PostgreSQL {} answers in pod {}",
                    v.version, pg.pod
                )),
                Err(e) => return Verdict::Waiting(format!("PostgreSQL in pod {}: {e}", pg.pod)),
            },
            Err(e) => return Verdict::Waiting(format!("PostgreSQL: {e}")),
        },
        Component::Services => match services_ready(target, spec, survey, r).await {
            Ok(n) => notes.extend(n),
            Err(v) => return v,
        },
    }
    Verdict::Ready(notes)
}

/// Whether workload `w` is rolled out; rolls one OnDelete pod when asked.
async fn rollout(
    target: &Target,
    spec: &GateSpec,
    survey: &Survey,
    live: &Live,
    w: &WorkloadPods,
    rolling: &mut Option<String>,
    progress: Progress<'_>,
) -> Result<Option<String>, Verdict> {
    let name = &w.workload.name;
    if let Some(p) = w.pods.iter().find_map(|p| pod_problem(p).map(|r| (p, r))) {
        return Err(Verdict::Broken(GateFailure {
            what: format!("{} cannot start", w.workload.display()),
            pod: Some(p.0.name.clone()),
            reason: Some(p.1),
            ..Default::default()
        }));
    }
    match w.workload.kind {
        WorkloadKind::Deployment => match live.deployment(name) {
            Some(d) => deployment_ready(d).map(|()| None).map_err(Verdict::Waiting),
            None => Err(Verdict::Waiting(format!(
                "Deployment {name} does not exist yet"
            ))),
        },
        WorkloadKind::StatefulSet => {
            let Some(s) = live.statefulset(name) else {
                return Err(Verdict::Waiting(format!(
                    "StatefulSet {name} does not exist yet"
                )));
            };
            statefulset(target, spec, survey, s, w, rolling, progress).await
        }
        _ => Ok(None),
    }
}

fn deployment_ready(d: &Deployment) -> Result<(), String> {
    let name = d.metadata.name.as_deref().unwrap_or_default();
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let st = d.status.clone().unwrap_or_default();
    let generation = d.metadata.generation.unwrap_or(0);
    if st.observed_generation.unwrap_or(0) < generation {
        return Err(format!(
            "Deployment {name}: the controller has not seen generation {generation} yet"
        ));
    }
    let updated = st.updated_replicas.unwrap_or(0);
    let ready = st.ready_replicas.unwrap_or(0);
    let available = st.available_replicas.unwrap_or(0);
    let total = st.replicas.unwrap_or(0);
    if updated < want || ready < want || available < want || total > want {
        return Err(format!(
            "Deployment {name}: {updated}/{want} updated, {ready} ready, {available} available, {total} in all"
        ));
    }
    Ok(())
}

/// A StatefulSet is rolled out when every pod is ready on the update
/// revision. With OnDelete, this is where its pods are rolled.
async fn statefulset(
    target: &Target,
    spec: &GateSpec,
    survey: &Survey,
    s: &StatefulSet,
    w: &WorkloadPods,
    rolling: &mut Option<String>,
    progress: Progress<'_>,
) -> Result<Option<String>, Verdict> {
    let name = s.metadata.name.clone().unwrap_or_default();
    let want = s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1) as usize;
    let st = s.status.clone().unwrap_or_default();
    let generation = s.metadata.generation.unwrap_or(0);
    if st.observed_generation.unwrap_or(0) < generation {
        return Err(Verdict::Waiting(format!(
            "StatefulSet {name}: the controller has not seen generation {generation} yet"
        )));
    }
    let update = st.update_revision.clone().unwrap_or_default();
    let on_delete = s
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        == Some("OnDelete");
    let old: Vec<&PodInfo> = w
        .pods
        .iter()
        .filter(|p| !update.is_empty() && p.revision() != Some(update.as_str()))
        .collect();
    // A pod being rolled must be back, ready and on the new revision
    // before the next one goes.
    if let Some(pod) = rolling.clone() {
        match w.pods.iter().find(|p| p.name == pod) {
            Some(p) if p.ready && p.revision() == Some(update.as_str()) => {
                if spec.component == Component::Platform {
                    let t = bao_target(survey, &p.name);
                    match probes::openbao::status(
                        &target.client,
                        &target.api(),
                        &survey.namespace,
                        &t,
                    )
                    .await
                    {
                        Ok(s) if s.initialized && !s.sealed => {}
                        Ok(_) => {
                            return Err(Verdict::Waiting(format!(
                                "OpenBao in pod {pod} is back but sealed"
                            )));
                        }
                        Err(e) => {
                            return Err(Verdict::Waiting(format!("OpenBao in pod {pod}: {e}")));
                        }
                    }
                }
                progress(&format!("  pod {pod} is back on revision {update}"));
                *rolling = None;
            }
            _ => {
                return Err(Verdict::Waiting(format!(
                    "pod {pod} is coming back on revision {update}"
                )));
            }
        }
    }
    if on_delete && !old.is_empty() {
        if !spec.roll_on_delete {
            return Err(Verdict::Broken(GateFailure {
                what: format!(
                    "StatefulSet {name} has updateStrategy OnDelete and pods on the old revision: {}",
                    names(&old)
                ),
                ..Default::default()
            }));
        }
        // Anything not yet ready first waits: never take a second pod down.
        if w.pods.iter().any(|p| !p.ready) {
            return Err(Verdict::Waiting(format!(
                "StatefulSet {name}: waiting for every pod to be ready before rolling the next"
            )));
        }
        let next = next_to_roll(target, spec, survey, &old).await;
        progress(&format!(
            "  rolling pod {} of StatefulSet {name} (updateStrategy OnDelete){}",
            next.0, next.1
        ));
        if let Err(e) =
            pods::delete(&target.client, &target.api(), &survey.namespace, &next.0).await
        {
            return Err(Verdict::Broken(GateFailure {
                what: format!("cannot delete pod {} to roll it: {e}", next.0),
                ..Default::default()
            }));
        }
        *rolling = Some(next.0.clone());
        return Err(Verdict::Waiting(format!(
            "pod {} is being replaced",
            next.0
        )));
    }
    let ready = w.pods.iter().filter(|p| p.ready).count();
    if !old.is_empty() || ready < want || w.pods.len() < want {
        return Err(Verdict::Waiting(format!(
            "StatefulSet {name}: {ready}/{want} ready, {} on the old revision",
            old.len()
        )));
    }
    Ok(on_delete.then(|| format!("StatefulSet {name} (OnDelete) rolled to revision {update}")))
}

fn names(pods: &[&PodInfo]) -> String {
    pods.iter()
        .map(|p| p.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The next pod to roll: for OpenBao a standby before the active node;
/// otherwise the highest ordinal first, as the StatefulSet controller does.
async fn next_to_roll(
    target: &Target,
    spec: &GateSpec,
    survey: &Survey,
    old: &[&PodInfo],
) -> (String, &'static str) {
    let mut ordered: Vec<&PodInfo> = old.to_vec();
    ordered.sort_by_key(|p| std::cmp::Reverse(ordinal(&p.name)));
    if spec.component == Component::Platform && ordered.len() > 1 {
        let mut active = None;
        for p in &ordered {
            let t = bao_target(survey, &p.name);
            if let Ok(l) =
                probes::openbao::leader(&target.client, &target.api(), &survey.namespace, &t).await
                && l.is_self
            {
                active = Some(p.name.clone());
            }
        }
        if let Some(a) = &active
            && let Some(standby) = ordered.iter().find(|p| &p.name != a)
        {
            return (
                standby.name.clone(),
                " (a standby; the active node goes last)",
            );
        }
        if active.is_some() {
            return (ordered[0].name.clone(), " (the active node, last)");
        }
    }
    let note = if spec.component == Component::Platform {
        " (the active node, last)"
    } else {
        ""
    };
    (
        ordered[0].name.clone(),
        if ordered.len() == 1 { note } else { "" },
    )
}

fn ordinal(pod: &str) -> u32 {
    pod.rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn bao_target(survey: &Survey, pod: &str) -> OpenbaoTarget {
    match &survey.openbao {
        Ok(t) => OpenbaoTarget {
            pod: pod.to_string(),
            ..t.clone()
        },
        Err(_) => OpenbaoTarget {
            workload: String::new(),
            pod: pod.to_string(),
            container: "openbao".into(),
            port: 8200,
            tls: false,
        },
    }
}

/// Every OpenBao pod initialised, unsealed and on the image's version.
async fn openbao_ready(
    target: &Target,
    survey: &Survey,
    r: &ReleaseSurvey,
) -> Result<Vec<String>, Verdict> {
    let Ok(bao) = &survey.openbao else {
        return Err(Verdict::Waiting("OpenBao is not found yet".into()));
    };
    let Some(w) = r
        .workloads
        .iter()
        .find(|w| format!("{} {}", w.workload.kind.as_str(), w.workload.name) == bao.workload)
    else {
        return Err(Verdict::Waiting(format!(
            "{} has no pods yet",
            bao.workload
        )));
    };
    let want_version = w
        .workload
        .containers
        .iter()
        .find(|c| c.name == bao.container)
        .and_then(|c| c.image.rsplit_once(':').map(|(_, tag)| tag.to_string()))
        .and_then(|tag| probes::parse_version(&tag));
    let mut versions = BTreeSet::new();
    for p in &w.pods {
        let t = bao_target(survey, &p.name);
        let s = probes::openbao::status(&target.client, &target.api(), &survey.namespace, &t)
            .await
            .map_err(|e| Verdict::Waiting(format!("OpenBao in pod {}: {e}", p.name)))?;
        if !s.initialized {
            return Err(Verdict::Waiting(format!(
                "OpenBao in pod {} is not initialised",
                p.name
            )));
        }
        if s.sealed {
            return Err(Verdict::Waiting(format!(
                "OpenBao in pod {} is sealed",
                p.name
            )));
        }
        if let (Some(want), Some(got)) = (&want_version, probes::parse_version(&s.version))
            && &got != want
        {
            return Err(Verdict::Waiting(format!(
                "OpenBao in pod {} reports {}, the image is {want}",
                p.name, s.version
            )));
        }
        versions.insert(s.version);
    }
    // Unsealed is not enough: an HA cluster needs an active node. (An
    // older OpenBao on data a newer one wrote unseals and stays standby.)
    let mut ha = false;
    let mut active = None;
    for p in &w.pods {
        let t = bao_target(survey, &p.name);
        if let Ok(l) =
            probes::openbao::leader(&target.client, &target.api(), &survey.namespace, &t).await
        {
            ha |= l.ha_enabled;
            if l.is_self {
                active = Some(p.name.clone());
            }
        }
    }
    if ha && active.is_none() {
        return Err(Verdict::Waiting(
            "no OpenBao node is active (every node answers as a standby)".into(),
        ));
    }
    Ok(vec![format!(
        "OpenBao {} unsealed in {} pod(s)",
        versions.into_iter().collect::<Vec<_>>().join(", "),
        w.pods.len()
    )])
}

/// `/api/health` answers with the chart's appVersion, and the backend's
/// logs show its migrations finished without error.
async fn services_ready(
    target: &Target,
    spec: &GateSpec,
    survey: &Survey,
    r: &ReleaseSurvey,
) -> Result<Vec<String>, Verdict> {
    let Ok(be) = &survey.backend else {
        return Err(Verdict::Waiting(
            "the backend Service is not found yet".into(),
        ));
    };
    let health = probes::backend::health(&target.client, &target.api(), &survey.namespace, be)
        .await
        .map_err(|e| Verdict::Waiting(format!("/api/health: {e}")))?;
    if !health.healthy() {
        return Err(Verdict::Waiting(format!(
            "/api/health answered {} ({})",
            health.http_status,
            health.status.as_deref().unwrap_or("no status")
        )));
    }
    if let (Some(want), Some(got)) = (&spec.app_version, &health.version)
        && want.trim_start_matches('v') != got.trim_start_matches('v')
    {
        return Err(Verdict::Waiting(format!(
            "/api/health reports version {got}, the chart's appVersion is {want}"
        )));
    }
    let mut notes = vec![format!(
        "/api/health 200 with version {}",
        health.version.as_deref().unwrap_or("(none)")
    )];
    let backend_pods: Vec<&PodInfo> = r
        .workloads
        .iter()
        .filter(|w| w.workload.name.to_ascii_lowercase().contains("backend"))
        .flat_map(|w| &w.pods)
        .collect();
    let mut finished = false;
    let mut mentioned = false;
    for p in backend_pods {
        let log = pods::log_since_start(
            &target.client,
            &target.api(),
            &survey.namespace,
            &p.name,
            None,
        )
        .await
        .unwrap_or_default();
        let m = migration_lines(&log);
        mentioned |= !m.lines.is_empty();
        if let Some(err) = m.error {
            return Err(Verdict::Broken(GateFailure {
                what: format!("a migration failed in the backend: {err}"),
                pod: Some(p.name.clone()),
                reason: Some("migration error in its log".into()),
                log_tail: m.lines.iter().rev().take(5).rev().cloned().collect(),
                ..Default::default()
            }));
        }
        finished |= m.finished;
    }
    if mentioned && !finished {
        return Err(Verdict::Waiting(
            "the backend's logs do not show its migrations finished yet".into(),
        ));
    }
    notes.push(if finished {
        "the backend's logs show migrations finished".into()
    } else {
        "no migration lines in the backend's logs".into()
    });
    Ok(notes)
}

/// Migration lines of a log: the lines, whether they end in success, and
/// the first error line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MigrationLines {
    pub lines: Vec<String>,
    pub finished: bool,
    pub error: Option<String>,
}

pub fn migration_lines(log: &str) -> MigrationLines {
    let mut out = MigrationLines::default();
    for line in log.lines() {
        let l = line.to_ascii_lowercase();
        if !l.contains("migrat") {
            continue;
        }
        out.lines.push(line.trim().to_string());
        let retried = l.contains("retrying");
        if (l.contains("error") || l.contains("failed") || l.contains("fatal")) && !retried {
            if out.error.is_none() {
                out.error = Some(line.trim().to_string());
            }
        } else if l.contains("complete")
            || l.contains("finished")
            || l.contains("up to date")
            || l.contains("up-to-date")
            || l.contains("nothing to migrate")
            || l.contains("no change")
            // An older build meeting a newer schema leaves it and starts.
            || l.contains("leaving the schema as it is")
        {
            out.finished = true;
            // A later success replaces an earlier error that was retried.
            out.error = None;
        }
    }
    out
}

/// A failed hook Job, with its pod's reason and log tail.
async fn hook_failure(target: &Target, job: &str) -> GateFailure {
    let ns = &target.namespace;
    let api = target.api();
    let mut f = GateFailure {
        what: format!("the hook Job {job} failed"),
        ..Default::default()
    };
    if let Ok(pods) = pods::of_job(&target.client, &api, ns, job).await
        && let Some(p) = pods.last()
    {
        let name = p.metadata.name.clone().unwrap_or_default();
        f.pod = Some(name.clone());
        let info = PodInfo::from_pod(p);
        f.reason = info
            .statuses
            .iter()
            .find_map(|c| {
                c.last_exit_code
                    .or_else(|| {
                        p.status
                            .as_ref()?
                            .container_statuses
                            .as_ref()?
                            .iter()
                            .find(|s| s.name == c.name)?
                            .state
                            .as_ref()?
                            .terminated
                            .as_ref()
                            .map(|t| t.exit_code)
                    })
                    .map(|code| format!("container {} exited with code {code}", c.name))
            })
            .or(Some(format!("phase {}", info.phase)));
        f.log_tail = pods::log_tail(&target.client, &api, ns, &name, None, 15, false)
            .await
            .unwrap_or_default();
        f.events = pods::events(&target.client, &api, ns, job, 5)
            .await
            .unwrap_or_default();
    }
    f
}

/// Describes a gate failure found from helm's own failure: the release's
/// worst pod or failed hook, for the report.
pub async fn diagnose(target: &Target, component: Component) -> Option<GateFailure> {
    let mut opts = SurveyOptions::within(Duration::from_secs(20));
    opts.live = true;
    let survey = Survey::gather(target, opts).await.ok()?;
    let r = survey.release(component);
    if let Ok(rel) = &r.latest
        && let Some(hook) = rel
            .hooks
            .iter()
            .find(|h| h.kind == "Job" && h.last_run.as_ref().is_some_and(|l| l.phase == "Failed"))
    {
        return Some(hook_failure(target, &hook.name).await);
    }
    let p = worst_pod(r)?;
    let f = GateFailure {
        what: format!("{component} is not healthy"),
        pod: Some(p.name.clone()),
        reason: pod_problem(&p).or_else(|| Some("not ready".into())),
        ..Default::default()
    };
    Some(with_details(target, f).await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::ContainerState;

    #[test]
    fn migration_lines_tell_finished_from_failed() {
        let ok = "2026-12-02T10:00:00Z INFO migrate: applying 0002_add_serial\n2026-12-02T10:00:01Z INFO migrate: migrations finished (schema version 2)\nlistening on :8080\n";
        let m = migration_lines(ok);
        assert!(m.finished && m.error.is_none(), "{m:?}");
        assert_eq!(m.lines.len(), 2);
        let bad = "INFO migrate: applying 0003\nERROR migrate: 0003 failed: column \"x\" does not exist\n";
        let m = migration_lines(bad);
        assert!(!m.finished);
        assert!(m.error.unwrap().contains("column \"x\""));
        let retried = "migration at start: connection refused; retrying\nmigrations complete: schema at 1.1.0 (4 tables)\n";
        let m = migration_lines(retried);
        assert!(m.finished && m.error.is_none(), "{m:?}");
        assert_eq!(
            migration_lines("no such lines\n"),
            MigrationLines::default()
        );
    }

    #[test]
    fn stuck_pods_are_named_transient_ones_are_not() {
        let mut p = PodInfo {
            name: "b-1".into(),
            statuses: vec![ContainerState {
                name: "backend".into(),
                waiting_reason: Some("ImagePullBackOff".into()),
                waiting_message: Some("Back-off pulling image \"x:broken\"".into()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let r = pod_problem(&p).unwrap();
        assert!(
            r.starts_with("ImagePullBackOff in container backend"),
            "{r}"
        );
        p.statuses[0].waiting_reason = Some("CrashLoopBackOff".into());
        p.statuses[0].restart_count = 1;
        assert_eq!(pod_problem(&p), None);
        p.statuses[0].restart_count = 3;
        assert!(pod_problem(&p).is_some());
        p.statuses[0].waiting_reason = Some("ContainerCreating".into());
        assert_eq!(pod_problem(&p), None);
        assert_eq!(ordinal("kleidia-platform-openbao-2"), 2);
    }
}
