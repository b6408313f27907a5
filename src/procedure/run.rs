//! Carrying out upgrade and rollback steps with the operator's helm, each
//! followed by its gate, and the one place that decides what happens after
//! a failure: the failed component goes back to the revision it had, then
//! the components already upgraded in reverse order, except the data layer
//! (only with `--allow-data-rollback`: rolling a database back can lose
//! data).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

use super::gate::{self, GateFailure, GateSpec};
use super::history::{PhaseRecord, RunRecord};
use super::plan::ComponentPlan;
use crate::helm::cli::{HelmCli, HelmCliError, HelmMajor, HelmTarget, UpgradeSpec};
use crate::helm::release::{ReleaseStore, RevisionLabel};
use crate::report::Messages;
use crate::target::Target;
use crate::topology::Component;

/// How steps run.
pub struct Runner<'a> {
    pub target: &'a Target,
    pub helm: &'a HelmCli,
    pub major: HelmMajor,
    pub helm_target: HelmTarget,
    /// For each helm step, and then for its gate.
    pub timeout: Duration,
    pub messages: Messages,
    pub interrupted: watch::Receiver<bool>,
    pub record: &'a mut RunRecord,
}

/// Why a step failed.
#[derive(Debug, Clone, Serialize)]
pub struct StepFailure {
    pub component: Component,
    pub release: String,
    /// `helm upgrade`, `gate`, `helm rollback`.
    pub step: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub log_tail: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub helm_tail: Vec<String>,
}

impl StepFailure {
    fn from_gate(component: Component, release: &str, step: &str, g: GateFailure) -> Self {
        StepFailure {
            component,
            release: release.to_string(),
            step: step.to_string(),
            message: g.what,
            pod: g.pod,
            reason: g.reason,
            events: g.events,
            log_tail: g.log_tail,
            helm_tail: Vec::new(),
        }
    }
}

/// A rollback done (or skipped) after a failure, or asked for.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RollbackDone {
    pub component: Component,
    pub release: String,
    pub to_revision: Option<u32>,
    pub ok: bool,
    pub note: String,
}

/// How an upgrade ended.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub upgraded: Vec<Component>,
    pub failure: Option<StepFailure>,
    pub rollbacks: Vec<RollbackDone>,
    pub interrupted: bool,
}

/// What to do after a failure.
#[derive(Debug, Clone, Copy)]
pub struct FailurePolicy {
    pub rollback: bool,
    pub allow_data_rollback: bool,
}

impl Runner<'_> {
    fn phase(&mut self, name: String, started: Instant, ok: bool, waiting: bool) {
        self.record.phases.push(PhaseRecord {
            name,
            millis: started.elapsed().as_millis() as u64,
            ok,
            waiting,
        });
    }

    fn stopped(&self) -> bool {
        *self.interrupted.borrow()
    }

    /// Upgrades the planned components in order, gates each, and on a
    /// failure rolls back by `policy`.
    pub async fn upgrade(
        &mut self,
        plan: &[ComponentPlan],
        values: &[(Component, Vec<PathBuf>)],
        set: &[String],
        policy: FailurePolicy,
    ) -> Outcome {
        let mut out = Outcome::default();
        let mut done: Vec<&ComponentPlan> = Vec::new();
        for comp in plan {
            if self.stopped() {
                out.interrupted = true;
                out.failure = Some(StepFailure {
                    component: comp.component,
                    release: comp.release.clone(),
                    step: "interrupted".into(),
                    message: format!(
                        "interrupted before {} was upgraded; it was not touched",
                        comp.component
                    ),
                    pod: None,
                    reason: None,
                    events: vec![],
                    log_tail: vec![],
                    helm_tail: vec![],
                });
                break;
            }
            let files = values
                .iter()
                .find(|(c, _)| *c == comp.component)
                .map(|(_, f)| f.clone())
                .unwrap_or_default();
            match self.step(comp, &files, set, false).await {
                Ok(()) => done.push(comp),
                Err(f) => {
                    out.interrupted = self.stopped();
                    out.failure = Some(f);
                    if policy.rollback {
                        out.rollbacks.push(self.undo(comp, policy, true).await);
                        for prev in done.iter().rev() {
                            out.rollbacks.push(self.undo(prev, policy, false).await);
                        }
                    }
                    out.upgraded = done.iter().map(|c| c.component).collect();
                    return out;
                }
            }
        }
        out.upgraded = done.iter().map(|c| c.component).collect();
        out
    }

    /// Installs `comp.release` (which does not exist yet: the green release
    /// of a blue-green upgrade) from `comp.chart_dir`, then gates it like an
    /// upgrade. The runner's target must name it as the component's
    /// release.
    pub async fn install(
        &mut self,
        comp: &ComponentPlan,
        values: &[PathBuf],
        set: &[String],
    ) -> Result<(), StepFailure> {
        self.step(comp, values, set, true).await
    }

    async fn step(
        &mut self,
        comp: &ComponentPlan,
        values: &[PathBuf],
        set: &[String],
        install: bool,
    ) -> Result<(), StepFailure> {
        let spec = UpgradeSpec {
            release: &comp.release,
            chart: &comp.chart_dir,
            values,
            set,
            timeout: self.timeout,
            install,
            dry_run: false,
        };
        let args = HelmCli::upgrade_args(self.major, &self.helm_target, &spec);
        if install {
            self.messages.note(&format!(
                "installing {} ({}): {}",
                comp.release, comp.component, comp.target
            ));
        } else {
            self.messages.note(&format!(
                "upgrading {} ({}): {} -> {}",
                comp.component, comp.release, comp.current, comp.target
            ));
        }
        let started = Instant::now();
        let run = self.helm_run(&args).await;
        let ok = run.as_ref().is_ok_and(|r| r.success);
        self.phase(
            format!(
                "helm {} {}",
                if install { "install" } else { "upgrade" },
                comp.component
            ),
            started,
            ok,
            true,
        );
        match run {
            Ok(r) if r.success => {}
            Ok(r) => {
                let diag = gate::diagnose(self.target, comp.component).await;
                let mut f = match diag {
                    Some(g) => {
                        StepFailure::from_gate(comp.component, &comp.release, "helm upgrade", g)
                    }
                    None => StepFailure {
                        component: comp.component,
                        release: comp.release.clone(),
                        step: "helm upgrade".into(),
                        message: String::new(),
                        pod: None,
                        reason: None,
                        events: vec![],
                        log_tail: vec![],
                        helm_tail: vec![],
                    },
                };
                f.message = format!(
                    "helm upgrade {} failed ({}){}",
                    comp.release,
                    r.status,
                    if f.message.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", f.message)
                    }
                );
                f.helm_tail = r.tail.iter().rev().take(8).rev().cloned().collect();
                return Err(f);
            }
            Err(e) => {
                return Err(self.helm_error(comp.component, &comp.release, "helm upgrade", e));
            }
        }
        let revision = self.latest_revision(&comp.release).await;
        let started = Instant::now();
        let spec = GateSpec {
            component: comp.component,
            revision,
            app_version: comp.target.app_version.clone(),
            roll_on_delete: true,
            deadline: tokio::time::Instant::now() + self.timeout,
        };
        self.messages
            .note(&format!("checking {} ...", comp.component));
        let messages = self.messages;
        let mut progress = move |l: &str| messages.note(l);
        let result = gate::wait(self.target, &spec, &mut progress, &self.interrupted).await;
        self.phase(
            format!("gate {}", comp.component),
            started,
            result.is_ok(),
            true,
        );
        match result {
            Ok(notes) => {
                for n in notes {
                    self.messages.note(&format!("  ok: {n}"));
                }
                Ok(())
            }
            Err(g) => Err(StepFailure::from_gate(
                comp.component,
                &comp.release,
                "gate",
                g,
            )),
        }
    }

    /// Puts `comp` back on the revision it had before this run.
    async fn undo(
        &mut self,
        comp: &ComponentPlan,
        policy: FailurePolicy,
        failed: bool,
    ) -> RollbackDone {
        let done = |ok: bool, to: Option<u32>, note: String| RollbackDone {
            component: comp.component,
            release: comp.release.clone(),
            to_revision: to,
            ok,
            note,
        };
        if comp.component == Component::Data && !policy.allow_data_rollback {
            let now = self.latest_revision(&comp.release).await;
            return done(
                true,
                None,
                format!(
                    "left at revision {} (the data layer is rolled back only with --allow-data-rollback)",
                    now.map(|r| r.to_string()).unwrap_or_else(|| "?".into())
                ),
            );
        }
        if let Some(note) = openbao_downgrade(comp) {
            return done(true, None, note);
        }
        let now = self.latest_revision(&comp.release).await;
        if failed && now == Some(comp.revision) {
            return done(
                true,
                Some(comp.revision),
                format!("still at revision {} (helm changed nothing)", comp.revision),
            );
        }
        let app_version = comp.current.app_version.clone();
        match self
            .rollback(comp.component, &comp.release, comp.revision, app_version)
            .await
        {
            Ok(()) => done(
                true,
                Some(comp.revision),
                format!("rolled back to revision {}", comp.revision),
            ),
            Err(f) => done(false, Some(comp.revision), f.message),
        }
    }

    /// `helm rollback` to `revision`, then the same gate as an upgrade
    /// (OnDelete pods are rolled back too).
    pub async fn rollback(
        &mut self,
        component: Component,
        release: &str,
        revision: u32,
        app_version: Option<String>,
    ) -> Result<(), StepFailure> {
        self.messages.note(&format!(
            "rolling {component} ({release}) back to revision {revision}"
        ));
        if component == Component::Platform {
            self.messages.warning(
                "OpenBao has no downgrade guarantee: if it does not come back unsealed on the older version, restore the raft snapshot from the backup bundle taken before the upgrade (docs/restore.md)",
            );
        }
        let args = HelmCli::rollback_args(
            self.major,
            &self.helm_target,
            release,
            revision,
            self.timeout,
        );
        let started = Instant::now();
        let run = self.helm_run(&args).await;
        let ok = run.as_ref().is_ok_and(|r| r.success);
        self.phase(format!("helm rollback {component}"), started, ok, true);
        match run {
            Ok(r) if r.success => {}
            Ok(r) => {
                return Err(StepFailure {
                    component,
                    release: release.to_string(),
                    step: "helm rollback".into(),
                    message: format!("helm rollback {release} {revision} failed ({})", r.status),
                    pod: None,
                    reason: None,
                    events: vec![],
                    log_tail: vec![],
                    helm_tail: r.tail.iter().rev().take(8).rev().cloned().collect(),
                });
            }
            Err(e) => return Err(self.helm_error(component, release, "helm rollback", e)),
        }
        let new_revision = self.latest_revision(release).await;
        let spec = GateSpec {
            component,
            revision: new_revision,
            app_version,
            roll_on_delete: true,
            deadline: tokio::time::Instant::now() + self.timeout,
        };
        let started = Instant::now();
        let messages = self.messages;
        let mut progress = move |l: &str| messages.note(l);
        // A rollback is finished even when interrupted: a fresh receiver
        // that never fires.
        let (_keep, never) = watch::channel(false);
        let result = gate::wait(self.target, &spec, &mut progress, &never).await;
        self.phase(
            format!("gate {component} (rollback)"),
            started,
            result.is_ok(),
            true,
        );
        result
            .map(|notes| {
                for n in notes {
                    self.messages.note(&format!("  ok: {n}"));
                }
            })
            .map_err(|g| StepFailure::from_gate(component, release, "gate after rollback", g))
    }

    /// `helm uninstall RELEASE --wait` (blue after a promotion, green after
    /// an abort).
    pub async fn uninstall(
        &mut self,
        component: Component,
        release: &str,
    ) -> Result<(), StepFailure> {
        self.messages.note(&format!("uninstalling {release}"));
        let args = HelmCli::uninstall_args(&self.helm_target, release, self.timeout);
        let started = Instant::now();
        let run = self.helm_run(&args).await;
        let ok = run.as_ref().is_ok_and(|r| r.success);
        self.phase(format!("helm uninstall {release}"), started, ok, true);
        match run {
            Ok(r) if r.success => Ok(()),
            Ok(r) => Err(StepFailure {
                component,
                release: release.to_string(),
                step: "helm uninstall".into(),
                message: format!("helm uninstall {release} failed ({})", r.status),
                pod: None,
                reason: None,
                events: vec![],
                log_tail: vec![],
                helm_tail: r.tail.iter().rev().take(8).rev().cloned().collect(),
            }),
            Err(e) => Err(self.helm_error(component, release, "helm uninstall", e)),
        }
    }

    /// The health gate alone, for a release already installed (the final
    /// check of green before it is promoted).
    pub async fn check(
        &mut self,
        component: Component,
        release: &str,
        app_version: Option<String>,
    ) -> Result<Vec<String>, StepFailure> {
        let spec = GateSpec {
            component,
            revision: self.latest_revision(release).await,
            app_version,
            roll_on_delete: false,
            deadline: tokio::time::Instant::now() + self.timeout,
        };
        let started = Instant::now();
        let messages = self.messages;
        let mut progress = move |l: &str| messages.note(l);
        let result = gate::wait(self.target, &spec, &mut progress, &self.interrupted).await;
        self.phase(format!("gate {release}"), started, result.is_ok(), true);
        result.map_err(|g| StepFailure::from_gate(component, release, "gate", g))
    }

    async fn helm_run(
        &mut self,
        args: &[String],
    ) -> Result<crate::helm::cli::HelmRun, HelmCliError> {
        let messages = self.messages;
        self.helm
            .run_streamed(&self.helm_target, args, |l| {
                messages.note(&format!("  | {l}"))
            })
            .await
    }

    fn helm_error(
        &self,
        component: Component,
        release: &str,
        step: &str,
        e: HelmCliError,
    ) -> StepFailure {
        StepFailure {
            component,
            release: release.to_string(),
            step: step.to_string(),
            message: e.to_string(),
            pod: None,
            reason: None,
            events: vec![],
            log_tail: vec![],
            helm_tail: vec![],
        }
    }

    async fn latest_revision(&self, release: &str) -> Option<u32> {
        revisions(self.target, release)
            .await
            .ok()?
            .last()
            .map(|r| r.revision)
    }
}

/// Why rolling `comp` back must not happen automatically: OpenBao has no
/// downgrade guarantee (an older server on data a newer one wrote unseals
/// but never becomes active), so the platform stays on the new version.
pub fn openbao_downgrade(comp: &ComponentPlan) -> Option<String> {
    if comp.component != Component::Platform {
        return None;
    }
    let change = comp.images.iter().find(|i| {
        let name = crate::topology::image_name(&i.to).to_ascii_lowercase();
        matches!(name.as_str(), "openbao" | "vault" | "bao")
    })?;
    let tag = |img: &str| img.rsplit_once(':').map(|(_, t)| t.to_string());
    let new = crate::probes::parse_version(&tag(&change.to)?)?;
    let old = crate::probes::parse_version(&tag(change.from.as_deref()?)?)?;
    (new > old).then(|| {
        format!(
            "left at the new version: rolling OpenBao back from {new} to {old} is a downgrade, which OpenBao does not support (the older server would not become active on data the newer one wrote). It keeps serving on {new}; to go back anyway, restore the raft snapshot of the bundle taken before the upgrade (docs/restore.md)"
        )
    })
}

/// A release's revisions from labels (oldest first).
pub async fn revisions(
    target: &Target,
    release: &str,
) -> Result<Vec<RevisionLabel>, crate::helm::release::ReleaseError> {
    ReleaseStore::new(
        target.client.clone(),
        target.api(),
        target.namespace.clone(),
        target.settings.driver,
    )
    .revisions(release)
    .await
}

/// The helm target for `target`.
pub fn helm_target(target: &Target) -> HelmTarget {
    HelmTarget {
        kubeconfig: target.settings.kubeconfig_paths.clone(),
        context: Some(target.context.clone()).filter(|c| !c.is_empty()),
        namespace: target.namespace.clone(),
        driver: match target.settings.driver {
            crate::helm::release::StorageDriver::Secret => "secret",
            crate::helm::release::StorageDriver::ConfigMap => "configmap",
        },
    }
}
