//! `rollback`: one component (or all of them, services -> data ->
//! platform) back to its last good revision or a named one, through the
//! operator's helm with waiting, then the same gate as an upgrade, under
//! the same lock. The data layer is guarded; a release stuck pending is
//! recovered only with `--recover`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args as ClapArgs;
use comfy_table::Cell;
use serde::Serialize;
use tokio::sync::watch;

use crate::backup::create::{CreateOptions, TokenSource, create_bundle};
use crate::backup::crypto::Encryption;
use crate::backup::sources::ClusterSources;
use crate::cluster::lease;
use crate::error::Error;
use crate::helm::release::{Release, ReleaseStore, last_good};
use crate::procedure::history::{self, PhaseRecord, ReleaseChange, RunRecord};
use crate::procedure::run::{self, Runner};
use crate::report::{Mark, Messages, Painter, emit, one_line, short_time};
use crate::survey::{Survey, SurveyOptions, Which};
use crate::target::{Session, Target};
use crate::topology::Component;

/// The runbook's warning for the data layer.
pub const DATA_WARNING: &str = "Rolling back the data layer may cause data inconsistencies. Only roll back if absolutely necessary.";

/// `rollback` flags.
#[derive(Debug, ClapArgs, Clone)]
pub struct Args {
    /// `platform`, `data`, `services`, or a release name.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub component: Option<String>,
    /// The revision to go back to [default: the last deployed or
    /// superseded revision before the current one].
    pub revision: Option<u32>,
    /// Roll back services, then data, then platform.
    #[arg(long)]
    pub all: bool,
    /// List the component's revisions with chart and app versions.
    #[arg(long, conflicts_with_all = ["all", "revision"])]
    pub list: bool,
    /// Show what would be rolled back and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation.
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// Allow rolling the data layer (PostgreSQL) back; a backup is taken
    /// first.
    #[arg(long)]
    pub allow_data_rollback: bool,
    /// Recover a release stuck pending-install/upgrade/rollback (a helm
    /// stopped half-way) by rolling it back to its last good revision.
    #[arg(long, conflicts_with = "all")]
    pub recover: bool,
    /// Time limit of each helm step, and then of its health gate.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = crate::duration::positive_arg)]
    pub timeout: Duration,
    /// Take over a lock whose holder stopped renewing it.
    #[arg(long)]
    pub force_unlock: bool,
    /// Folder for the backup taken before a data rollback.
    #[arg(long, value_name = "DIR", default_value = crate::backup::DEFAULT_DIR)]
    pub backup_dir: PathBuf,
    /// Encrypt that backup to this age recipient (repeatable).
    #[arg(long = "encrypt-to", value_name = "RECIPIENT")]
    pub encrypt_to: Vec<String>,
    /// Encrypt that backup with the passphrase in this environment variable.
    #[arg(long, value_name = "VAR", conflicts_with = "encrypt_to")]
    pub passphrase_env: Option<String>,
    /// Environment variable with the OpenBao token for that backup's raft
    /// snapshot [default: BAO_TOKEN, then VAULT_TOKEN].
    #[arg(long, value_name = "VAR")]
    pub openbao_token_env: Option<String>,
    /// Read that token from key KEY of Secret NAME in the namespace.
    #[arg(long, value_name = "NAME:KEY", conflicts_with = "openbao_token_env", value_parser = TokenSource::secret_arg)]
    pub openbao_token_secret: Option<(String, String)>,
}

/// One rollback to do.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RollbackStep {
    pub component: Component,
    pub release: String,
    pub from_revision: u32,
    pub from_status: String,
    pub from_chart: String,
    pub to_revision: u32,
    pub to_chart: String,
    #[serde(skip)]
    pub to_app_version: Option<String>,
    /// Warnings for this step (migrations the database keeps, ...).
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RollbackReport {
    pub run: Option<String>,
    pub dry_run: bool,
    pub steps: Vec<RollbackStep>,
    pub backup: Option<String>,
    pub results: Vec<StepResult>,
    pub ok: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepResult {
    pub component: Component,
    pub release: String,
    pub revision: Option<u32>,
    pub status: Option<String>,
    pub ok: bool,
    pub message: String,
}

fn chart_of(r: &Release) -> String {
    r.chart_metadata()
        .map(|m| {
            if m.app_version.is_empty() {
                format!("{} {}", m.name, m.version)
            } else {
                format!("{} {} (app {})", m.name, m.version, m.app_version)
            }
        })
        .unwrap_or_else(|| "unknown chart".into())
}

/// `platform`/`data`/`services`, or one of their release names.
fn component_of(target: &Target, name: &str) -> Result<Component, Error> {
    let r = &target.settings.releases;
    let found = match name {
        "platform" => Some(Component::Platform),
        "data" => Some(Component::Data),
        "services" => Some(Component::Services),
        n if n == r.platform => Some(Component::Platform),
        n if n == r.data => Some(Component::Data),
        n if n == r.services => Some(Component::Services),
        _ => None,
    };
    found.ok_or_else(|| Error::Usage {
        what: format!("'{name}' is neither a component nor a Kleidia release"),
        reason: format!(
            "use platform, data or services, or one of the releases {}, {}, {}",
            r.platform, r.data, r.services
        ),
    })
}

pub async fn run(session: &Session, args: &Args) -> Result<u8, Error> {
    let target = session.connect().await?;
    let settings = &session.settings;
    let messages = settings.messages;
    let painter = Painter {
        color: settings.color,
    };
    let inv = settings.flavor.invocation();
    let ns = target.namespace.clone();
    let store = ReleaseStore::new(
        target.client.clone(),
        target.api(),
        ns.clone(),
        settings.driver,
    );
    let components: Vec<Component> = if args.all {
        vec![Component::Services, Component::Data, Component::Platform]
    } else {
        vec![component_of(
            &target,
            args.component.as_deref().unwrap_or_default(),
        )?]
    };
    let release_name = |c: Component| match c {
        Component::Platform => settings.releases.platform.clone(),
        Component::Data => settings.releases.data.clone(),
        Component::Services => settings.releases.services.clone(),
    };

    if args.list {
        let c = components[0];
        let name = release_name(c);
        let history = store.history(&name).await?;
        if history.is_empty() {
            return Err(no_release(&name, &ns));
        }
        let current = history.last().map(|r| r.version).unwrap_or(0);
        let labels: Vec<_> = history
            .iter()
            .map(|r| crate::helm::release::RevisionLabel {
                object: String::new(),
                revision: r.version,
                status: r.info.status.clone(),
            })
            .collect();
        let default = last_good(&labels, current);
        let rows: Vec<ListRow> = history
            .iter()
            .map(|r| {
                let m = r.chart_metadata().cloned().unwrap_or_default();
                ListRow {
                    revision: r.version,
                    status: r.info.status.clone(),
                    chart: m.name,
                    chart_version: m.version,
                    app_version: Some(m.app_version).filter(|a| !a.is_empty()),
                    updated: r.info.last_deployed.clone(),
                    description: r.info.description.clone(),
                    current: r.version == current,
                    default_target: Some(r.version) == default,
                }
            })
            .collect();
        emit(settings.output, &rows, |out| {
            render_list(&name, &rows, painter, out)
        })?;
        return Ok(0);
    }

    if components.contains(&Component::Data) && !args.allow_data_rollback {
        return Err(Error::Usage {
            what: format!(
                "refusing to roll back the data layer ({}) without --allow-data-rollback",
                settings.releases.data
            ),
            reason: format!(
                "{DATA_WARNING} If you must: `{inv} rollback data --allow-data-rollback -n {ns}` (a backup is taken first){}",
                if args.all {
                    "; or roll back `services` and `platform` one by one".to_string()
                } else {
                    String::new()
                }
            ),
        });
    }

    if components.contains(&Component::Data) {
        target.require_verified_tls("roll back the data layer", crate::backup::SECRETS_MOVED)?;
        if !args.dry_run {
            crate::backup::create::encryption_given(
                target.settings.require_encryption,
                &args.encrypt_to,
                args.passphrase_env.as_deref(),
            )
            .map_err(crate::backup::BackupError::from)?;
        }
    }

    // Decide every step before changing anything.
    let mut steps = Vec::new();
    for &c in &components {
        let name = release_name(c);
        let history = store.history(&name).await?;
        let Some(current) = history.last() else {
            return Err(no_release(&name, &ns));
        };
        let labels: Vec<_> = history
            .iter()
            .map(|r| crate::helm::release::RevisionLabel {
                object: String::new(),
                revision: r.version,
                status: r.info.status.clone(),
            })
            .collect();
        let pending = current.info.status.starts_with("pending-");
        if pending && !args.recover {
            let holder = lease::holder(&target.client, &target.api(), &ns)
                .await
                .ok()
                .flatten()
                .filter(|h| !h.is_stale(chrono::Utc::now()));
            return Err(Error::Usage {
                what: format!(
                    "release {name} is {} at revision {}",
                    current.info.status, current.version
                ),
                reason: match holder {
                    Some(h) => format!(
                        "{} holds the upgrade lock and is probably working on it; wait for it",
                        h.identity
                    ),
                    None => format!(
                        "no run holds the lock, so a helm was probably stopped half-way. Recover it with `{inv} rollback {c} --recover -n {ns}` (back to revision {})",
                        last_good(&labels, current.version)
                            .map(|r| r.to_string())
                            .unwrap_or_else(|| "?".into())
                    ),
                },
            });
        }
        if args.recover && !pending {
            return Err(Error::Usage {
                what: format!(
                    "--recover is for a release stuck pending; {name} is {} at revision {}",
                    current.info.status, current.version
                ),
                reason: format!("roll it back without --recover: `{inv} rollback {c} -n {ns}`"),
            });
        }
        let to = match args.revision {
            Some(rev) => {
                let Some(r) = history.iter().find(|r| r.version == rev) else {
                    return Err(Error::Usage {
                        what: format!("release {name} has no revision {rev}"),
                        reason: format!(
                            "its revisions are {}; `{inv} rollback {c} --list -n {ns}` shows them with their charts",
                            history
                                .iter()
                                .map(|r| format!("{} ({})", r.version, r.info.status))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    });
                };
                if rev == current.version {
                    return Err(Error::Usage {
                        what: format!("revision {rev} is the current revision of {name}"),
                        reason: "there is nothing to roll back to it; name an earlier one".into(),
                    });
                }
                if !matches!(r.info.status.as_str(), "deployed" | "superseded") {
                    return Err(Error::Usage {
                        what: format!(
                            "revision {rev} of {name} is {}: a failed or pending revision is never a rollback target",
                            r.info.status
                        ),
                        reason: format!(
                            "good revisions: {}",
                            labels
                                .iter()
                                .filter(|l| matches!(l.status.as_str(), "deployed" | "superseded")
                                    && l.revision != current.version)
                                .map(|l| l.revision.to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    });
                }
                rev
            }
            None => last_good(&labels, current.version).ok_or_else(|| Error::Usage {
                what: format!(
                    "release {name} has no deployed or superseded revision before revision {}",
                    current.version
                ),
                reason: format!("`{inv} rollback {c} --list -n {ns}` shows its revisions"),
            })?,
        };
        let target_rel = history
            .iter()
            .find(|r| r.version == to)
            .expect("the target revision exists");
        let mut warnings = Vec::new();
        if c == Component::Data {
            warnings.push(DATA_WARNING.to_string());
        }
        if c == Component::Services {
            warnings.extend(migration_warning(&history, to, current.version, &target, inv).await);
        }
        steps.push(RollbackStep {
            component: c,
            release: name,
            from_revision: current.version,
            from_status: current.info.status.clone(),
            from_chart: chart_of(current),
            to_revision: to,
            to_chart: chart_of(target_rel),
            to_app_version: target_rel
                .chart_metadata()
                .map(|m| m.app_version.clone())
                .filter(|a| !a.is_empty()),
            warnings,
        });
    }

    if settings.output == crate::report::OutputFormat::Table {
        let mut out = Vec::new();
        render_steps(&steps, args.dry_run, painter, &mut out)?;
        crate::report::write_stdout(&out)?;
    } else {
        for s in &steps {
            for w in &s.warnings {
                messages.warning(w);
            }
        }
    }
    if args.dry_run {
        let report = RollbackReport {
            run: None,
            dry_run: true,
            steps,
            backup: None,
            results: Vec::new(),
            ok: true,
        };
        if settings.output != crate::report::OutputFormat::Table {
            emit(settings.output, &report, |_| Ok(()))?;
        }
        return Ok(0);
    }
    confirm(args, &steps)?;

    let mut record = RunRecord {
        id: format!("rollback-{}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ")),
        kind: if args.recover {
            "rollback --recover"
        } else {
            "rollback"
        }
        .into(),
        by: lease::identity(&format!("{inv} rollback")),
        started_at: chrono::Utc::now().to_rfc3339(),
        outcome: "running".into(),
        ..Default::default()
    };
    let t = Instant::now();
    let lock = lease::acquire(
        &target.client,
        &target.api(),
        &ns,
        &record.by,
        args.force_unlock,
    )
    .await
    .map_err(|e| Error::Usage {
        what: "cannot roll back now".into(),
        reason: e.to_string(),
    })?;
    record.phases.push(PhaseRecord {
        name: "lock".into(),
        millis: t.elapsed().as_millis() as u64,
        ok: true,
        waiting: false,
    });
    let _ = history::record(&target.client, &target.api(), &ns, &record).await;
    let result = locked(&target, args, &steps, &mut record, messages).await;
    record.ended_at = Some(chrono::Utc::now().to_rfc3339());
    if let Err(e) = history::record(&target.client, &target.api(), &ns, &record).await {
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
    let (backup, results) = result?;
    let ok = results.iter().all(|r| r.ok);
    let report = RollbackReport {
        run: Some(record.id.clone()),
        dry_run: false,
        steps,
        backup,
        results,
        ok,
    };
    emit(settings.output, &report, |out| {
        render_result(&report, inv, &ns, painter, out)
    })?;
    Ok(if ok { 0 } else { 1 })
}

async fn locked(
    target: &Target,
    args: &Args,
    steps: &[RollbackStep],
    record: &mut RunRecord,
    messages: Messages,
) -> Result<(Option<String>, Vec<StepResult>), Error> {
    let mut backup = None;
    if steps.iter().any(|s| s.component == Component::Data) {
        let t = Instant::now();
        messages.warning(DATA_WARNING);
        messages.note(&format!(
            "backing up to {} first ...",
            args.backup_dir.display()
        ));
        let mut opts = SurveyOptions::within(Duration::from_secs(60));
        opts.live = false;
        let survey = Survey::gather(target, opts).await?;
        let answers = survey
            .ask_servers(
                target,
                Which {
                    helm: false,
                    ..Which::ALL
                },
                &opts,
            )
            .await;
        let mut copts = CreateOptions::new(&args.backup_dir, &target.namespace);
        copts.require_encryption = target.settings.require_encryption;
        copts.encryption =
            Encryption::from_options(&args.encrypt_to, args.passphrase_env.as_deref())
                .map_err(crate::backup::BackupError::from)?;
        copts.token = TokenSource::from_flags(
            args.openbao_token_secret.as_ref(),
            args.openbao_token_env.as_ref(),
        );
        let mut sources = ClusterSources::new(target, &survey, &answers);
        let created = create_bundle(&copts, &mut sources, std::future::pending::<String>()).await;
        record.phases.push(PhaseRecord {
            name: "backup".into(),
            millis: t.elapsed().as_millis() as u64,
            ok: created.is_ok(),
            waiting: true,
        });
        let created = created.map_err(|e| {
            record.outcome = "refused".into();
            Error::Usage {
                what: format!("the backup before the data rollback failed: {e}"),
                reason: "nothing was rolled back; fix the backup first".into(),
            }
        })?;
        messages.note(&format!("backup written to {}", created.path.display()));
        backup = Some(created.path.display().to_string());
        record.backup = backup.clone();
    }
    let helm = target.settings.helm.clone();
    let (major, _) = helm.major().await.map_err(|e| Error::Usage {
        what: "cannot run helm".into(),
        reason: e.to_string(),
    })?;
    // A rollback runs to its end once started; signals are noted.
    let (_stop_tx, stop_rx) = watch::channel(false);
    let mut runner = Runner {
        target,
        helm: &helm,
        major,
        helm_target: run::helm_target(target),
        timeout: args.timeout,
        messages,
        interrupted: stop_rx,
        record,
    };
    let mut results = Vec::new();
    for s in steps {
        let outcome = runner
            .rollback(
                s.component,
                &s.release,
                s.to_revision,
                s.to_app_version.clone(),
            )
            .await;
        let latest = run::revisions(target, &s.release)
            .await
            .ok()
            .and_then(|r| r.last().cloned());
        let ok = outcome.is_ok();
        results.push(StepResult {
            component: s.component,
            release: s.release.clone(),
            revision: latest.as_ref().map(|l| l.revision),
            status: latest.map(|l| l.status),
            ok,
            message: match &outcome {
                Ok(()) => format!(
                    "back on revision {}'s chart ({})",
                    s.to_revision, s.to_chart
                ),
                Err(f) => {
                    let mut m = f.message.clone();
                    if let (Some(p), Some(r)) = (&f.pod, &f.reason) {
                        m.push_str(&format!(" (pod {p}: {r})"));
                    }
                    m
                }
            },
        });
        if !ok {
            break;
        }
    }
    record.outcome = if results.iter().all(|r| r.ok) {
        "succeeded".into()
    } else {
        "failed".into()
    };
    record.releases = results
        .iter()
        .zip(steps)
        .map(|(r, s)| ReleaseChange {
            component: s.component.to_string(),
            release: s.release.clone(),
            revision_before: Some(s.from_revision),
            revision_after: r.revision,
            chart_before: Some(s.from_chart.clone()),
            chart_after: Some(s.to_chart.clone()),
            status_after: r.status.clone(),
        })
        .collect();
    Ok((backup, results))
}

/// Rolling services back past a migration leaves the database migrated
/// forward: say so, and where the data from before that upgrade is.
async fn migration_warning(
    history: &[Release],
    to: u32,
    current: u32,
    target: &Target,
    inv: &str,
) -> Option<String> {
    let migrated: Vec<u32> = history
        .iter()
        .filter(|r| r.version > to && r.version <= current)
        .filter(|r| {
            r.hooks.iter().any(|h| {
                h.kind == "Job"
                    && h.name.to_ascii_lowercase().contains("migrat")
                    && h.last_run.as_ref().is_some_and(|l| l.phase == "Succeeded")
            })
        })
        .map(|r| r.version)
        .collect();
    if migrated.is_empty() {
        return None;
    }
    let runs = history::read(&target.client, &target.api(), &target.namespace)
        .await
        .unwrap_or_default();
    let first = migrated[0];
    let bundle = runs
        .iter()
        .rev()
        .find(|r| {
            r.backup.is_some()
                && r.releases.iter().any(|c| {
                    c.component == "services" && c.revision_after.is_some_and(|a| a >= first)
                })
        })
        .and_then(|r| r.backup.clone());
    Some(format!(
        "revision(s) {} ran the chart's migration hook: the database stays migrated forward, the older backend meets a newer schema. {}",
        migrated
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        match bundle {
            Some(b) => format!(
                "The data from before that upgrade is in bundle {b}; restoring it: docs/restore.md (check it first with `{inv} backup verify {b} --restore-test`)"
            ),
            None => "No bundle taken before that upgrade is recorded; see `backup list` for one older than it and docs/restore.md".to_string(),
        }
    ))
}

fn no_release(name: &str, ns: &str) -> Error {
    Error::Usage {
        what: format!("release {name} not found in namespace {ns}"),
        reason: "pass the namespace with -n, or the release names with --platform-release/--data-release/--services-release".into(),
    }
}

fn confirm(args: &Args, steps: &[RollbackStep]) -> Result<(), Error> {
    let what: Vec<String> = steps
        .iter()
        .map(|s| format!("{} to revision {}", s.release, s.to_revision))
        .collect();
    match crate::report::confirm(args.yes, &format!("Roll back {}? [y/N] ", what.join(", ")))? {
        crate::report::Confirmation::Yes => Ok(()),
        crate::report::Confirmation::NoTerminal => Err(Error::Usage {
            what: "refusing to roll back without confirmation".into(),
            reason: "there is no terminal to ask on: review it with --dry-run and pass --yes"
                .into(),
        }),
        crate::report::Confirmation::No => Err(Error::Usage {
            what: "rollback cancelled".into(),
            reason: "nothing was changed".into(),
        }),
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListRow {
    pub revision: u32,
    pub status: String,
    pub chart: String,
    pub chart_version: String,
    pub app_version: Option<String>,
    pub updated: Option<String>,
    pub description: String,
    pub current: bool,
    /// What `rollback` without a revision goes back to.
    pub default_target: bool,
}

fn render_list(
    release: &str,
    rows: &[ListRow],
    p: Painter,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    writeln!(out, "{}", p.title(&format!("Revisions of {release}")))?;
    let mut t = p.table(&[
        "REVISION",
        "STATUS",
        "CHART",
        "APP VERSION",
        "UPDATED",
        "DESCRIPTION",
        "",
    ]);
    for r in rows {
        let mark = match r.status.as_str() {
            "deployed" | "superseded" => Mark::Ok,
            s if s.starts_with("pending") => Mark::Warn,
            _ => Mark::Bad,
        };
        let note = if r.current {
            "current"
        } else if r.default_target {
            "default rollback target"
        } else {
            ""
        };
        t.add_row(vec![
            Cell::new(r.revision),
            p.marked(&r.status, mark),
            Cell::new(format!("{} {}", r.chart, r.chart_version)),
            Cell::new(r.app_version.clone().unwrap_or_else(|| "-".into())),
            Cell::new(short_time(r.updated.as_deref())),
            Cell::new(one_line(&r.description, 50)),
            Cell::new(note),
        ]);
    }
    writeln!(out, "{t}")
}

fn render_steps(
    steps: &[RollbackStep],
    dry_run: bool,
    p: Painter,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    writeln!(
        out,
        "{}",
        p.title(if dry_run {
            "Rollback plan (dry run: nothing will change)"
        } else {
            "Rollback plan"
        })
    )?;
    let mut t = p.table(&["COMPONENT", "RELEASE", "FROM", "TO"]);
    for s in steps {
        t.add_row(vec![
            Cell::new(s.component.as_str()),
            Cell::new(&s.release),
            Cell::new(format!(
                "{} ({}, {})",
                s.from_revision, s.from_status, s.from_chart
            )),
            Cell::new(format!("{} ({})", s.to_revision, s.to_chart)),
        ]);
    }
    writeln!(out, "{t}")?;
    for s in steps {
        for w in &s.warnings {
            writeln!(
                out,
                "{} {}: {w}",
                p.paint("warning:", Mark::Warn),
                s.release
            )?;
        }
    }
    Ok(())
}

fn render_result(
    r: &RollbackReport,
    inv: &str,
    ns: &str,
    p: Painter,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    writeln!(
        out,
        "\n{}",
        if r.ok {
            p.paint("rollback succeeded", Mark::Ok)
        } else {
            p.paint("rollback FAILED", Mark::Bad)
        }
    )?;
    if let Some(b) = &r.backup {
        writeln!(out, "backup taken first: {b}")?;
    }
    let mut t = p.table(&["RELEASE", "REVISION", "STATUS", ""]);
    for s in &r.results {
        t.add_row(vec![
            Cell::new(&s.release),
            Cell::new(s.revision.map(|v| v.to_string()).unwrap_or_default()),
            p.marked(
                s.status.clone().unwrap_or_default(),
                if s.ok { Mark::Ok } else { Mark::Bad },
            ),
            Cell::new(&s.message),
        ]);
    }
    writeln!(out, "{t}")?;
    if !r.ok {
        writeln!(
            out,
            "next: `{inv} versions -n {ns}` shows where everything stands; `{inv} rollback COMPONENT --list -n {ns}` the revisions to go to"
        )?;
    }
    Ok(())
}
