//! `upgrade`: the runbook's upgrade, in one command. Plan, confirm, lock,
//! preflight, back up, then platform -> data -> services through the
//! operator's helm, each gated on real health; on a failure, roll back by
//! one policy; record the run. `--history` shows the recorded runs.

mod bluegreen;
mod render;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args as ClapArgs, ValueEnum};
use serde::Serialize;
use tokio::sync::watch;

use crate::backup::create::{CreateOptions, TokenSource, create_bundle};
use crate::backup::crypto::{Decryption, Encryption};
use crate::backup::sources::ClusterSources;
use crate::checks;
use crate::cluster::lease;
use crate::error::Error;
use crate::helm::cli::HelmMajor;
use crate::procedure::history::{self, ReleaseChange, RunRecord};
use crate::procedure::plan::{self, UpgradePlan, Values};
use crate::procedure::run::{self, FailurePolicy, Outcome, Runner};
use crate::report::{Messages, Painter, emit};
use crate::survey::{Survey, SurveyOptions, Which};
use crate::target::{Session, Target};
use crate::topology::Component;

/// Where the values an upgrade starts from come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ValuesFrom {
    /// Each release's values as deployed now.
    #[default]
    Current,
    /// The values saved in the backup bundle this run takes first.
    Backup,
}

/// How the services are upgraded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Strategy {
    /// Each release upgraded in place (helm upgrade), in order.
    #[default]
    Rolling,
    /// The services' new chart installed as a second (green) release beside
    /// the running (blue) one; `--promote` or `--abort` ends it.
    BlueGreen,
}

/// `upgrade` flags.
#[derive(Debug, ClapArgs, Clone)]
pub struct Args {
    /// Folder with the charts to upgrade to (`DIR/kleidia-platform`,
    /// `DIR/kleidia-data`, `DIR/kleidia-services`).
    #[arg(long, value_name = "DIR", required_unless_present_any = ["history", "promote", "abort"])]
    pub charts: Option<PathBuf>,
    /// `rolling`, or `blue-green` (services only: a second release on other
    /// NodePorts, then --promote or --abort).
    #[arg(long, value_enum, default_value_t = Strategy::Rolling)]
    pub strategy: Strategy,
    /// The green release's name [default: <services release>-green].
    #[arg(long, value_name = "NAME")]
    pub green_release: Option<String>,
    /// NodePorts for green's backend and frontend [default: free ones, 100
    /// above blue's where free].
    #[arg(long, value_name = "BACKEND,FRONTEND", value_parser = crate::procedure::bluegreen::parse_ports)]
    pub green_ports: Option<std::vec::Vec<u16>>,
    /// Finish a blue-green upgrade: check green once more, then uninstall
    /// blue.
    #[arg(long, conflicts_with_all = ["abort", "history", "charts"])]
    pub promote: bool,
    /// Cancel a blue-green upgrade: uninstall green; blue is untouched.
    #[arg(long, conflicts_with_all = ["history", "charts"])]
    pub abort: bool,
    /// Upgrade only these components (in upgrade order anyway).
    #[arg(long, value_delimiter = ',', value_name = "LIST", value_parser = parse_component)]
    pub only: Vec<Component>,
    /// Values file on top of each release's values (repeatable).
    #[arg(short = 'f', long = "values", value_name = "FILE")]
    pub values: Vec<PathBuf>,
    /// Value override on top of those, as for helm (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Start from the releases' current values or the backup's.
    #[arg(long, value_enum, default_value_t = ValuesFrom::Current)]
    pub values_from: ValuesFrom,
    /// Do not take a backup bundle first.
    #[arg(long)]
    pub no_backup: bool,
    /// Folder for the backup bundle.
    #[arg(long, value_name = "DIR", default_value = crate::backup::DEFAULT_DIR)]
    pub backup_dir: PathBuf,
    /// Encrypt the backup to this age recipient (repeatable).
    #[arg(long = "encrypt-to", value_name = "RECIPIENT")]
    pub encrypt_to: Vec<String>,
    /// Encrypt the backup with the passphrase in this environment variable.
    #[arg(long, value_name = "VAR", conflicts_with = "encrypt_to")]
    pub passphrase_env: Option<String>,
    /// Environment variable with the OpenBao token for the raft snapshot
    /// [default: BAO_TOKEN, then VAULT_TOKEN].
    #[arg(long, value_name = "VAR")]
    pub openbao_token_env: Option<String>,
    /// Read the OpenBao token from key KEY of Secret NAME.
    #[arg(long, value_name = "NAME:KEY", conflicts_with = "openbao_token_env", value_parser = parse_secret_ref)]
    pub openbao_token_secret: Option<(String, String)>,
    /// Upgrade even when preflight finds a failure.
    #[arg(long)]
    pub skip_preflight: bool,
    /// Time limit of each helm step, and then of its health gate.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = crate::duration::positive_arg)]
    pub timeout: Duration,
    /// Show the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation.
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// Show the recorded upgrade and rollback runs.
    #[arg(long)]
    pub history: bool,
    /// Take over a lock whose holder stopped renewing it.
    #[arg(long)]
    pub force_unlock: bool,
    /// After a failure, leave every release as the failure left it.
    #[arg(long)]
    pub no_rollback: bool,
    /// After a failure, roll the data layer back too.
    #[arg(long)]
    pub allow_data_rollback: bool,
}

fn parse_component(s: &str) -> Result<Component, String> {
    Component::ALL
        .into_iter()
        .find(|c| c.as_str() == s)
        .ok_or_else(|| format!("'{s}' is not a component: use platform, data or services"))
}

fn parse_secret_ref(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((n, k)) if !n.is_empty() && !k.is_empty() => Ok((n.to_owned(), k.to_owned())),
        _ => Err(format!(
            "'{s}' is not NAME:KEY (for example openbao-root:token)"
        )),
    }
}

/// What `upgrade -o json` prints.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeReport {
    pub run: Option<String>,
    pub dry_run: bool,
    pub plan: UpgradePlan,
    pub preflight: Option<checks::Report>,
    pub backup: Option<String>,
    pub outcome: Option<Outcome>,
    pub releases: Vec<ReleaseChange>,
    pub ok: bool,
}

pub async fn run(session: &Session, args: &Args) -> Result<u8, Error> {
    let target = session.connect().await?;
    let messages = session.settings.messages;
    let painter = Painter {
        color: session.settings.color,
    };
    if args.history {
        let runs = history::read(&target.client, &target.api(), &target.namespace).await?;
        emit(session.settings.output, &runs, |out| {
            render::history(&runs, painter, out)
        })?;
        return Ok(0);
    }
    if args.promote || args.abort {
        return bluegreen::finish(session, &target, args).await;
    }
    target.require_verified_tls("upgrade", crate::backup::SECRETS_MOVED)?;
    if !args.no_backup && !args.dry_run {
        crate::backup::create::encryption_given(
            target.settings.require_encryption,
            &args.encrypt_to,
            args.passphrase_env.as_deref(),
        )
        .map_err(crate::backup::BackupError::from)?;
    }
    if args.strategy == Strategy::BlueGreen {
        return bluegreen::start(session, &target, args).await;
    }
    if args.green_release.is_some() || args.green_ports.is_some() {
        return Err(Error::Usage {
            what: "--green-release and --green-ports".into(),
            reason: "belong to a blue-green upgrade: add --strategy blue-green".into(),
        });
    }
    let charts = args.charts.clone().expect("clap requires --charts");
    let components: Vec<Component> = Component::ALL
        .into_iter()
        .filter(|c| args.only.is_empty() || args.only.contains(c))
        .collect();

    // 1. The survey and the plan.
    let started = Instant::now();
    let mut record = RunRecord {
        id: format!("upgrade-{}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ")),
        kind: "upgrade".into(),
        by: lease::identity(&format!("{} upgrade", session.settings.flavor.invocation())),
        started_at: chrono::Utc::now().to_rfc3339(),
        outcome: "running".into(),
        charts: Some(charts.display().to_string()),
        ..Default::default()
    };
    let mut opts = SurveyOptions::within(Duration::from_secs(60));
    opts.live = true;
    let survey = Survey::gather(&target, opts).await?;
    refuse_pending(&target, &survey, &components, session).await?;
    let helm = &target.settings.helm;
    let (major, helm_version) = helm.major().await.map_err(usage_or_failure)?;
    messages.debug(&format!("helm {helm_version} ({major:?})"));
    let values = Values::new(&args.values, &args.set)?;
    let helm_target = run::helm_target(&target);
    let (plan, helm_time) = plan::build(&survey, &components, &charts, &values, helm, &helm_target)
        .await
        .map_err(|e| Error::Usage {
            what: "cannot plan the upgrade".into(),
            reason: e.to_string(),
        })?;
    let planning = started.elapsed();
    record.phases.push(history::PhaseRecord {
        name: "plan".into(),
        millis: planning.saturating_sub(helm_time).as_millis() as u64,
        ok: true,
        waiting: false,
    });
    record.phases.push(history::PhaseRecord {
        name: "helm template".into(),
        millis: helm_time.as_millis() as u64,
        ok: true,
        waiting: true,
    });
    if session.settings.output == crate::report::OutputFormat::Table {
        let mut out = Vec::new();
        render::plan(&plan, args.dry_run, painter, &mut out)?;
        crate::report::write_stdout(&out)?;
    }
    if args.dry_run {
        let report = UpgradeReport {
            run: None,
            dry_run: true,
            plan,
            preflight: None,
            backup: None,
            outcome: None,
            releases: Vec::new(),
            ok: true,
        };
        if session.settings.output != crate::report::OutputFormat::Table {
            emit(session.settings.output, &report, |_| Ok(()))?;
        }
        return Ok(0);
    }
    if plan.components.iter().all(|c| c.is_noop()) {
        messages
            .note("nothing to upgrade: every release already runs these charts with these values");
        return Ok(0);
    }
    confirm(args, &plan)?;

    // 2. The lock, held from here to the end.
    let t = Instant::now();
    let lock = lease::acquire(
        &target.client,
        &target.api(),
        &target.namespace,
        &record.by,
        args.force_unlock,
    )
    .await
    .map_err(|e| Error::Usage {
        what: "cannot upgrade now".into(),
        reason: e.to_string(),
    })?;
    record.phases.push(history::PhaseRecord {
        name: "lock".into(),
        millis: t.elapsed().as_millis() as u64,
        ok: true,
        waiting: false,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let signals = tokio::spawn(watch_signals(stop_tx, messages));
    let result = locked(
        &target,
        args,
        &plan,
        &values,
        major,
        &mut record,
        stop_rx,
        messages,
    )
    .await;
    signals.abort();
    record.ended_at = Some(chrono::Utc::now().to_rfc3339());
    if let Err(e) = history::record(&target.client, &target.api(), &target.namespace, &record).await
    {
        messages.warning(&format!(
            "the run could not be recorded in the history: {e}"
        ));
    }
    if let Err(e) = lock.release().await {
        messages.warning(&format!(
            "the lock could not be released ({e}); it expires by itself after {}s",
            lease::LEASE_DURATION.as_secs()
        ));
    }
    let mut report = result?;
    report.plan = plan;
    report.run = Some(record.id.clone());
    report.releases = record.releases.clone();
    let ok = report.ok;
    emit(session.settings.output, &report, |out| {
        render::result(
            &report,
            &record,
            session.settings.flavor.invocation(),
            painter,
            out,
        )
    })?;
    Ok(if ok { 0 } else { 1 })
}

/// Everything done under the lock: preflight, backup, the steps. Records
/// what happened in `record`.
#[allow(clippy::too_many_arguments)]
async fn locked(
    target: &Target,
    args: &Args,
    plan: &UpgradePlan,
    values: &Values,
    major: HelmMajor,
    record: &mut RunRecord,
    stop: watch::Receiver<bool>,
    messages: Messages,
) -> Result<UpgradeReport, Error> {
    let mut report = UpgradeReport {
        run: Some(record.id.clone()),
        dry_run: false,
        plan: plan.clone(),
        preflight: None,
        backup: None,
        outcome: None,
        releases: Vec::new(),
        ok: false,
    };
    let _ = history::record(&target.client, &target.api(), &target.namespace, record).await;
    let prepared = prepare(target, args, plan, record, &stop, messages).await?;
    report.preflight = prepared.preflight;
    report.backup = prepared.backup;
    let survey = prepared.survey;

    // 5. The steps.
    let mut values_files = Vec::new();
    for c in &plan.components {
        let rel = survey.release(c.component);
        let current = match (args.values_from, &report.backup) {
            (ValuesFrom::Backup, Some(bundle)) => values_from_bundle(bundle, &c.release, args)?,
            (ValuesFrom::Backup, None) => {
                return Err(Error::Usage {
                    what: "--values-from backup".into(),
                    reason: "needs the backup this run takes; drop --no-backup".into(),
                });
            }
            (ValuesFrom::Current, _) => rel
                .latest
                .as_ref()
                .ok()
                .and_then(|r| r.config.clone())
                .unwrap_or(serde_json::Value::Null),
        };
        values_files.push((c.component, values.for_release(&c.release, &current)?));
    }
    let policy = FailurePolicy {
        rollback: !args.no_rollback,
        allow_data_rollback: args.allow_data_rollback,
    };
    let helm = target.settings.helm.clone();
    let mut runner = Runner {
        target,
        helm: &helm,
        major,
        helm_target: run::helm_target(target),
        timeout: args.timeout,
        messages,
        interrupted: stop,
        record,
    };
    let outcome = runner
        .upgrade(&plan.components, &values_files, &values.set, policy)
        .await;
    let ok = outcome.failure.is_none();
    record.outcome = match (&outcome.failure, outcome.interrupted) {
        (None, _) => "succeeded".into(),
        (Some(_), true) => "interrupted".into(),
        (Some(_), false) if outcome.rollbacks.iter().any(|r| r.to_revision.is_some()) => {
            "rolled-back".into()
        }
        (Some(_), false) => "failed".into(),
    };
    record.error = outcome.failure.as_ref().map(|f| f.message.clone());
    record.releases = release_changes(target, plan).await;
    report.outcome = Some(outcome);
    report.ok = ok;
    Ok(report)
}

/// What the first steps under the lock found and wrote.
pub(crate) struct Prepared {
    pub survey: Survey,
    pub preflight: Option<checks::Report>,
    pub backup: Option<String>,
}

/// Preflight over a fresh survey, then the backup bundle: the first steps
/// under the lock of an upgrade (in place or blue-green). Records both in
/// `record`; an error means nothing was changed.
pub(crate) async fn prepare(
    target: &Target,
    args: &Args,
    plan: &UpgradePlan,
    record: &mut RunRecord,
    stop: &watch::Receiver<bool>,
    messages: Messages,
) -> Result<Prepared, Error> {
    // 3. Preflight over a fresh survey.
    let t = Instant::now();
    let mut opts = SurveyOptions::within(Duration::from_secs(60));
    opts.live = true;
    let survey = Survey::gather(target, opts).await?;
    let answers = survey.ask_servers(target, Which::ALL, &opts).await;
    let mut preflight = None;
    let mut backup = None;
    if !args.skip_preflight {
        messages.note("preflight ...");
        let options = checks::Options {
            charts: args.charts.clone(),
            values: args.values.clone(),
            set: args.set.clone(),
            max_backup_age: Duration::from_secs(24 * 3600),
            backup_dir: args.backup_dir.clone(),
            timeout: Duration::from_secs(60),
            invocation: target.settings.flavor.invocation(),
            backup_follows: !args.no_backup,
            components: if args.strategy == Strategy::BlueGreen {
                vec![Component::Services]
            } else {
                args.only.clone()
            },
            plan: Some(plan.clone()),
        };
        let cx = checks::Context {
            target,
            survey: &survey,
            answers: &answers,
            options: &options,
        };
        let pre = checks::Report::new(checks::run_checks(&cx).await);
        let failed = pre.result == checks::Status::Fail;
        record.phases.push(history::PhaseRecord {
            name: "preflight".into(),
            millis: t.elapsed().as_millis() as u64,
            ok: !failed,
            waiting: false,
        });
        if failed {
            let names = pre.failed().join(", ");
            let mut lines = Vec::new();
            let _ = checks::render(&pre, Painter::default(), &mut lines);
            messages.note(&String::from_utf8_lossy(&lines));
            record.outcome = "refused".into();
            record.error = Some(format!("preflight failed: {names}"));
            return Err(Error::Usage {
                what: format!("preflight failed ({names}); nothing was changed"),
                reason: "fix what it names (the hints above say how), or pass --skip-preflight to upgrade anyway".into(),
            });
        }
        preflight = Some(pre);
    }

    // 4. The backup bundle.
    if !args.no_backup {
        let t = Instant::now();
        messages.note(&format!("backing up to {} ...", args.backup_dir.display()));
        let mut opts = CreateOptions::new(&args.backup_dir, &target.namespace);
        opts.require_encryption = target.settings.require_encryption;
        opts.encryption =
            Encryption::from_options(&args.encrypt_to, args.passphrase_env.as_deref())
                .map_err(crate::backup::BackupError::from)?;
        opts.token = match (&args.openbao_token_secret, &args.openbao_token_env) {
            (Some((name, key)), _) => TokenSource::Secret {
                name: name.clone(),
                key: key.clone(),
            },
            (None, Some(var)) => TokenSource::Env(vec![var.clone()]),
            (None, None) => TokenSource::default(),
        };
        let mut sources = ClusterSources::new(target, &survey, &answers);
        let mut stop_backup = stop.clone();
        let interrupt = async move {
            let _ = stop_backup.wait_for(|s| *s).await;
            "an interrupt".to_string()
        };
        let created = create_bundle(&opts, &mut sources, interrupt).await;
        record.phases.push(history::PhaseRecord {
            name: "backup".into(),
            millis: t.elapsed().as_millis() as u64,
            ok: created.is_ok(),
            waiting: true,
        });
        let created = match created {
            Ok(c) => c,
            Err(e) => {
                record.outcome = "refused".into();
                record.error = Some(format!("backup failed: {e}"));
                return Err(Error::Usage {
                    what: format!("the backup before the upgrade failed: {e}"),
                    reason: "nothing was upgraded; fix the backup (or pass --no-backup to upgrade without one)".into(),
                });
            }
        };
        for w in &created.warnings {
            messages.warning(w);
        }
        messages.note(&format!("backup written to {}", created.path.display()));
        record.backup = Some(created.path.display().to_string());
        backup = record.backup.clone();
    }

    Ok(Prepared {
        survey,
        preflight,
        backup,
    })
}

/// Refuses to start when a release is stuck in `pending-*`: nothing can
/// change it until it is recovered (and a live lock holder may be
/// working on it).
async fn refuse_pending(
    target: &Target,
    survey: &Survey,
    components: &[Component],
    session: &Session,
) -> Result<(), Error> {
    for c in components {
        let r = survey.release(*c);
        let Ok(rel) = &r.latest else { continue };
        if !rel.info.status.starts_with("pending-") {
            continue;
        }
        let holder = lease::holder(&target.client, &target.api(), &target.namespace)
            .await
            .ok()
            .flatten()
            .filter(|h| !h.is_stale(chrono::Utc::now()));
        let inv = session.settings.flavor.invocation();
        let reason = match holder {
            Some(h) => format!(
                "{} holds the upgrade lock and is probably working on it; wait for it to finish",
                h.identity
            ),
            None => format!(
                "no upgrade holds the lock, so a helm was probably stopped half-way. Recover it with `{inv} rollback {c} --recover -n {}` (back to the last good revision), then upgrade again",
                target.namespace
            ),
        };
        return Err(Error::Usage {
            what: format!(
                "release {} is {} at revision {}; helm refuses every operation on it (\"another operation is in progress\")",
                r.name, rel.info.status, rel.version
            ),
            reason,
        });
    }
    Ok(())
}

fn usage_or_failure(e: crate::helm::cli::HelmCliError) -> Error {
    Error::Usage {
        what: "cannot run helm".into(),
        reason: e.to_string(),
    }
}

/// Asks on a terminal; refuses without one unless `--yes`.
fn confirm(args: &Args, plan: &UpgradePlan) -> Result<(), Error> {
    let releases: Vec<&str> = plan.components.iter().map(|c| c.release.as_str()).collect();
    let question = format!(
        "Upgrade {} in namespace {}? [y/N] ",
        releases.join(", "),
        plan.namespace
    );
    match crate::report::confirm(args.yes, &question)? {
        crate::report::Confirmation::Yes => Ok(()),
        crate::report::Confirmation::NoTerminal => Err(Error::Usage {
            what: "refusing to upgrade without confirmation".into(),
            reason: "there is no terminal to ask on: review the plan (--dry-run) and pass --yes"
                .into(),
        }),
        crate::report::Confirmation::No => Err(Error::Usage {
            what: "upgrade cancelled".into(),
            reason: "nothing was changed".into(),
        }),
    }
}

/// Turns SIGINT and SIGTERM into a request to stop safely: the current
/// helm step finishes (helm runs in its own process group), then the
/// failure policy rolls back.
async fn watch_signals(stop: watch::Sender<bool>, messages: Messages) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    loop {
        let which = tokio::select! {
            _ = int.recv() => "interrupt",
            _ = term.recv() => "terminate signal",
        };
        if !*stop.borrow() {
            messages.warning(&format!(
                "{which} received: letting the current helm step finish, then rolling back what this run changed and releasing the lock"
            ));
            let _ = stop.send(true);
        } else {
            messages.warning("still finishing safely; the lock is released when this run ends");
        }
    }
}

/// Each planned release's revision and chart before and after.
async fn release_changes(target: &Target, plan: &UpgradePlan) -> Vec<ReleaseChange> {
    let store = crate::helm::release::ReleaseStore::new(
        target.client.clone(),
        target.api(),
        target.namespace.clone(),
        target.settings.driver,
    );
    let mut out = Vec::new();
    for c in &plan.components {
        let latest = store.latest(&c.release).await.ok().flatten();
        out.push(ReleaseChange {
            component: c.component.to_string(),
            release: c.release.clone(),
            revision_before: Some(c.revision),
            revision_after: latest.as_ref().map(|r| r.version),
            chart_before: Some(c.current.to_string()),
            chart_after: latest.as_ref().and_then(|r| {
                r.chart_metadata().map(|m| {
                    let mut s = format!("{} {}", m.name, m.version);
                    if !m.app_version.is_empty() {
                        s.push_str(&format!(" (app {})", m.app_version));
                    }
                    s
                })
            }),
            status_after: latest.map(|r| r.info.status),
        });
    }
    out
}

/// The values saved for `release` in the bundle at `bundle` (decrypted
/// with the run's passphrase when the bundle is encrypted with one).
fn values_from_bundle(
    bundle: &str,
    release: &str,
    args: &Args,
) -> Result<serde_json::Value, Error> {
    let dir = std::path::Path::new(bundle).join("helm");
    let plain = dir.join(format!("{release}.values.yaml"));
    let sealed = dir.join(format!("{release}.values.yaml.age"));
    let text = if plain.is_file() {
        std::fs::read_to_string(&plain)?
    } else if sealed.is_file() {
        let d = Decryption::from_options(None, args.passphrase_env.as_deref())
            .map_err(crate::backup::BackupError::from)?
            .ok_or_else(|| Error::Usage {
                what: "--values-from backup".into(),
                reason: "the bundle is encrypted to a recipient; its values cannot be read back here. Use --values-from current".into(),
            })?;
        let mut r = d
            .open(std::fs::File::open(&sealed)?)
            .map_err(crate::backup::BackupError::from)?;
        let mut s = String::new();
        std::io::Read::read_to_string(&mut r, &mut s)?;
        s
    } else {
        return Err(Error::Usage {
            what: "--values-from backup".into(),
            reason: format!("the bundle {bundle} has no values for release {release}"),
        });
    };
    serde_yaml_ng::from_str(&text).map_err(|e| Error::Usage {
        what: format!("the values of {release} in {bundle}"),
        reason: e.to_string(),
    })
}
