//! `upgrade --strategy blue-green`, `--promote`, `--abort`: the runbook's
//! blue-green procedure for the services. The new services chart is
//! installed as a second (green) release on other NodePorts and gated like
//! an upgrade while the running (blue) release keeps serving, unchanged;
//! the operator checks green and switches the load balancer, then
//! `--promote` (green checked once more, blue uninstalled) or `--abort`
//! (green uninstalled, blue untouched). Each takes the upgrade lock and is
//! recorded in the history.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::ListParams;
use serde::Serialize;
use tokio::sync::watch;

use super::{
    Args, ValuesFrom, prepare, refuse_pending, usage_or_failure, values_from_bundle, watch_signals,
};
use crate::checks;
use crate::cluster::lease;
use crate::error::Error;
use crate::procedure::bluegreen::{self, GreenPort};
use crate::procedure::history::{self, PhaseRecord, ReleaseChange, RunRecord};
use crate::procedure::plan::{self, ChartVersion, Values};
use crate::procedure::run::{self, StepFailure};
use crate::report::{Mark, Messages, Painter, emit};
use crate::survey::{Survey, SurveyOptions, green_release};
use crate::target::{Session, Target};
use crate::topology::Component;

/// What `upgrade --strategy blue-green|--promote|--abort -o json` prints.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreenReport {
    pub run: Option<String>,
    /// `start`, `promote` or `abort`.
    pub action: &'static str,
    pub dry_run: bool,
    pub namespace: String,
    pub blue: String,
    pub green: String,
    /// Blue's chart, and green's (the target).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blue_chart: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub green_chart: Option<String>,
    pub ports: Vec<GreenPort>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preflight: Option<checks::Report>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    /// Green passed its gate.
    pub healthy: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<StepFailure>,
    pub releases: Vec<ReleaseChange>,
    /// What to run next.
    pub next: Vec<String>,
    pub ok: bool,
}

fn usage(what: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Usage {
        what: what.into(),
        reason: reason.into(),
    }
}

/// The target with `green` as its services release, so that the survey and
/// the gate look at green.
fn green_target(target: &Target, green: &str) -> Target {
    let mut t = target.clone();
    t.settings.releases.services = green.to_string();
    t
}

fn green_name(target: &Target, args: &Args) -> Result<String, Error> {
    let blue = &target.settings.releases.services;
    let name = args
        .green_release
        .clone()
        .unwrap_or_else(|| green_release(blue));
    if &name == blue {
        return Err(usage(
            format!("--green-release {name}"),
            "is the services release itself; green needs a name of its own",
        ));
    }
    Ok(name)
}

/// `upgrade --strategy blue-green --charts DIR`.
pub async fn start(session: &Session, target: &Target, args: &Args) -> Result<u8, Error> {
    let messages = session.settings.messages;
    let painter = Painter {
        color: session.settings.color,
    };
    let inv = session.settings.flavor.invocation();
    let ns = target.namespace.clone();
    if args.only.iter().any(|c| *c != Component::Services) {
        return Err(usage(
            "--strategy blue-green",
            "upgrades the services only; upgrade the platform and data first (`upgrade --only platform,data`), then the services blue-green",
        ));
    }
    let charts = args.charts.clone().expect("clap requires --charts");
    let started = Instant::now();
    let mut record = RunRecord {
        id: format!("blue-green-{}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ")),
        kind: "upgrade --strategy blue-green".into(),
        by: lease::identity(&format!("{inv} upgrade --strategy blue-green")),
        started_at: chrono::Utc::now().to_rfc3339(),
        outcome: "running".into(),
        charts: Some(charts.display().to_string()),
        ..Default::default()
    };
    let mut opts = SurveyOptions::within(Duration::from_secs(60));
    opts.live = true;
    let survey = Survey::gather(target, opts).await?;
    refuse_pending(target, &survey, &[Component::Services], session).await?;
    let blue = survey.services.name.clone();
    let green = green_name(target, args)?;
    if !run::revisions(target, &green)
        .await
        .map_err(|e| usage(format!("cannot read release {green}"), e.to_string()))?
        .is_empty()
    {
        return Err(usage(
            format!(
                "release {green} already exists in namespace {ns}: a blue-green upgrade is waiting"
            ),
            format!(
                "finish it first: `{inv} upgrade --promote -n {ns}` (green takes over) or `{inv} upgrade --abort -n {ns}` (green removed){}",
                flag_for(target, args)
            ),
        ));
    }
    let helm = &target.settings.helm;
    let (major, helm_version) = helm.major().await.map_err(usage_or_failure)?;
    messages.debug(&format!("helm {helm_version} ({major:?})"));
    let values = Values::new(&args.values, &args.set)?;
    let helm_target = run::helm_target(target);
    let (plan, helm_time) = plan::build(
        &survey,
        &[Component::Services],
        &charts,
        &values,
        helm,
        &helm_target,
    )
    .await
    .map_err(|e| usage("cannot plan the blue-green upgrade", e.to_string()))?;
    let mut comp = plan.components[0].clone();
    comp.release = green.clone();
    let blue_values = survey
        .services
        .latest
        .as_ref()
        .ok()
        .and_then(|r| r.config.clone())
        .unwrap_or(serde_json::Value::Null);
    let defaults = bluegreen::chart_values(&comp.chart_dir)
        .map_err(|e| usage("cannot read the services chart's values", e.to_string()))?;
    let slots = bluegreen::port_slots(&defaults, &blue_values);
    let allocated = bluegreen::allocated(&target.client, &target.api(), &ns)
        .await
        .map_err(|e| usage("cannot list the NodePorts in use", e.to_string()))?;
    if allocated.namespace_only {
        messages.warning(&format!(
            "only Services in namespace {ns} could be listed: a NodePort held in another namespace is found when helm installs green"
        ));
    }
    let ports = bluegreen::choose(&slots, &allocated, args.green_ports.as_deref()).map_err(|e| {
        usage(
            format!("cannot give green the NodePorts it needs: {e}"),
            "choose free ports with --green-ports BACKEND,FRONTEND, or leave it out to have free ones chosen",
        )
    })?;
    record.phases.push(PhaseRecord {
        name: "plan".into(),
        millis: started.elapsed().saturating_sub(helm_time).as_millis() as u64,
        ok: true,
        waiting: false,
    });
    let mut report = BlueGreenReport {
        run: None,
        action: "start",
        dry_run: args.dry_run,
        namespace: ns.clone(),
        blue: blue.clone(),
        green: green.clone(),
        blue_chart: Some(comp.current.to_string()),
        green_chart: Some(comp.target.to_string()),
        ports: ports.clone(),
        preflight: None,
        backup: None,
        healthy: false,
        failure: None,
        releases: Vec::new(),
        next: Vec::new(),
        ok: true,
    };
    if session.settings.output == crate::report::OutputFormat::Table {
        let mut out = Vec::new();
        render_plan(&report, comp.revision, painter, &mut out)?;
        crate::report::write_stdout(&out)?;
    }
    if args.dry_run {
        if session.settings.output != crate::report::OutputFormat::Table {
            emit(session.settings.output, &report, |_| Ok(()))?;
        }
        return Ok(0);
    }
    confirm(
        args,
        &format!("Install {green} beside {blue} in namespace {ns}? [y/N] "),
    )?;

    let lock = take_lock(target, &record.by, args).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let signals = tokio::spawn(watch_signals(stop_tx, messages));
    let _ = history::record(&target.client, &target.api(), &ns, &record).await;
    let result: Result<(), Error> = async {
        let prepared = prepare(target, args, &plan, &mut record, &stop_rx, messages).await?;
        report.preflight = prepared.preflight;
        report.backup = prepared.backup;
        let start_from = match (args.values_from, &report.backup) {
            (ValuesFrom::Backup, Some(bundle)) => values_from_bundle(bundle, &blue, args)?,
            (ValuesFrom::Backup, None) => {
                return Err(usage(
                    "--values-from backup",
                    "needs the backup this run takes; drop --no-backup",
                ));
            }
            (ValuesFrom::Current, _) => blue_values.clone(),
        };
        let files = values.for_release(&green, &start_from)?;
        let mut set = values.set.clone();
        set.extend(ports.iter().map(GreenPort::set_arg));
        let gt = green_target(target, &green);
        let helm = target.settings.helm.clone();
        let mut runner = run::Runner {
            target: &gt,
            helm: &helm,
            major,
            helm_target: helm_target.clone(),
            timeout: args.timeout,
            messages,
            interrupted: stop_rx.clone(),
            record: &mut record,
        };
        match runner.install(&comp, &files, &set).await {
            Ok(()) => {
                report.healthy = true;
                record.outcome = "green-ready".into();
                let node = node_address(target).await;
                for p in &ports {
                    report.next.push(curl(&node, p));
                }
                report.next.push(format!(
                    "{inv} upgrade --promote -n {ns}{}",
                    flag_for(target, args)
                ));
                report.next.push(format!(
                    "{inv} upgrade --abort -n {ns}{}",
                    flag_for(target, args)
                ));
            }
            Err(f) => {
                report.ok = false;
                record.outcome = "green-unhealthy".into();
                record.error = Some(f.message.clone());
                report.failure = Some(f);
                report.next.push(format!(
                    "{inv} upgrade --abort -n {ns}{}",
                    flag_for(target, args)
                ));
            }
        }
        Ok(())
    }
    .await;
    signals.abort();
    if let Err(e) = &result
        && record.outcome == "running"
    {
        record.outcome = "refused".into();
        record.error = Some(e.to_string());
    }
    report.releases = changes(target, &[(&blue, Some(comp.revision)), (&green, None)]).await;
    record.releases = report.releases.clone();
    finish_record(target, &mut record, lock, messages).await;
    result?;
    report.run = Some(record.id.clone());
    emit(session.settings.output, &report, |out| {
        render_result(&report, painter, out)
    })?;
    Ok(if report.ok { 0 } else { 1 })
}

/// `upgrade --promote` and `upgrade --abort`.
pub async fn finish(session: &Session, target: &Target, args: &Args) -> Result<u8, Error> {
    let messages = session.settings.messages;
    let painter = Painter {
        color: session.settings.color,
    };
    let inv = session.settings.flavor.invocation();
    let ns = target.namespace.clone();
    let action = if args.promote { "promote" } else { "abort" };
    let blue = target.settings.releases.services.clone();
    let green = green_name(target, args)?;
    let gt = green_target(target, &green);
    let mut opts = SurveyOptions::within(Duration::from_secs(60));
    opts.live = true;
    let survey = Survey::gather(&gt, opts).await?;
    let green_release = match &survey.services.latest {
        Ok(r) => r.clone(),
        Err(_) => {
            return Err(usage(
                format!("there is no green release {green} in namespace {ns} to {action}"),
                format!(
                    "a blue-green upgrade starts with `{inv} upgrade --strategy blue-green --charts DIR -n {ns}`{}",
                    if args.green_release.is_none() {
                        "; if green has another name, give it with --green-release NAME"
                    } else {
                        ""
                    }
                ),
            ));
        }
    };
    let blue_revisions = run::revisions(target, &blue).await.unwrap_or_default();
    let blue_revision = blue_revisions.last().map(|r| r.revision);
    if args.promote && blue_revision.is_none() {
        return Err(usage(
            format!("there is no blue release {blue} in namespace {ns}: nothing to promote"),
            format!(
                "{green} already serves alone; point kleidia at it with --services-release {green}"
            ),
        ));
    }
    let helm = &target.settings.helm;
    let (major, _) = helm.major().await.map_err(usage_or_failure)?;
    let question = if args.promote {
        format!(
            "Promote {green} and uninstall {blue} in namespace {ns}? The load balancer must already point at green's NodePorts. [y/N] "
        )
    } else {
        format!("Uninstall {green} in namespace {ns} ({blue} stays as it is)? [y/N] ")
    };
    if args.dry_run {
        let what = if args.promote {
            format!("would check {green} once more, then uninstall {blue}")
        } else {
            format!("would uninstall {green}; {blue} stays as it is")
        };
        messages.note(&format!("dry run: {what}; nothing changed"));
        return Ok(0);
    }
    confirm(args, &question)?;
    let mut record = RunRecord {
        id: format!(
            "blue-green-{action}-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
        ),
        kind: format!("upgrade --{action}"),
        by: lease::identity(&format!("{inv} upgrade --{action}")),
        started_at: chrono::Utc::now().to_rfc3339(),
        outcome: "running".into(),
        ..Default::default()
    };
    let lock = take_lock(target, &record.by, args).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let signals = tokio::spawn(watch_signals(stop_tx, messages));
    let mut report = BlueGreenReport {
        run: Some(record.id.clone()),
        action,
        dry_run: false,
        namespace: ns.clone(),
        blue: blue.clone(),
        green: green.clone(),
        blue_chart: None,
        green_chart: green_release
            .chart_metadata()
            .map(|m| format!("{} {} (app {})", m.name, m.version, m.app_version)),
        ports: Vec::new(),
        preflight: None,
        backup: None,
        healthy: false,
        failure: None,
        releases: Vec::new(),
        next: Vec::new(),
        ok: false,
    };
    let helm = target.settings.helm.clone();
    if args.promote {
        let app_version = green_release
            .chart_metadata()
            .map(|m| m.app_version.clone())
            .filter(|a| !a.is_empty());
        let mut runner = run::Runner {
            target: &gt,
            helm: &helm,
            major,
            helm_target: run::helm_target(target),
            timeout: args.timeout.min(Duration::from_secs(120)),
            messages,
            interrupted: stop_rx.clone(),
            record: &mut record,
        };
        messages.note(&format!("checking {green} before it takes over ..."));
        match runner.check(Component::Services, &green, app_version).await {
            Err(f) => {
                record.outcome = "refused".into();
                record.error = Some(f.message.clone());
                report.failure = Some(f);
                report.next.push(format!(
                    "fix green and promote again, or `{inv} upgrade --abort -n {ns}{}`; {blue} was not touched",
                    flag_for(target, args)
                ));
            }
            Ok(_) => {
                report.healthy = true;
                runner.timeout = args.timeout;
                match runner.uninstall(Component::Services, &blue).await {
                    Ok(()) => {
                        report.ok = true;
                        record.outcome = "promoted".into();
                        report.next.push(format!(
                            "{green} now serves; point kleidia at it with `--services-release {green}` (or `releases: {{services: {green}}}` in the configuration file), e.g. `{inv} versions -n {ns} --services-release {green}`"
                        ));
                    }
                    Err(f) => {
                        record.outcome = "failed".into();
                        record.error = Some(f.message.clone());
                        report.failure = Some(f);
                        report.next.push(format!(
                            "green serves; remove blue by hand: `helm uninstall {blue} -n {ns}`"
                        ));
                    }
                }
            }
        }
    } else {
        let mut runner = run::Runner {
            target: &gt,
            helm: &helm,
            major,
            helm_target: run::helm_target(target),
            timeout: args.timeout,
            messages,
            interrupted: stop_rx.clone(),
            record: &mut record,
        };
        match runner.uninstall(Component::Services, &green).await {
            Ok(()) => {
                report.ok = true;
                record.outcome = "aborted".into();
                report.next.push(format!(
                    "{blue} serves as before; migrations green's backend applied stay in the database (`{inv} migrate --status -n {ns}{}` lists them)",
                    services_flag(target)
                ));
            }
            Err(f) => {
                record.outcome = "failed".into();
                record.error = Some(f.message.clone());
                report.failure = Some(f);
                report.next.push(format!(
                    "remove green by hand: `helm uninstall {green} -n {ns}`"
                ));
            }
        }
    }
    signals.abort();
    report.releases = changes(
        target,
        &[
            (&blue, blue_revision),
            (&green, Some(green_release.version)),
        ],
    )
    .await;
    record.releases = report.releases.clone();
    finish_record(target, &mut record, lock, messages).await;
    emit(session.settings.output, &report, |out| {
        render_result(&report, painter, out)
    })?;
    Ok(if report.ok { 0 } else { 1 })
}

/// ` --services-release X` when the services release is not the default.
fn services_flag(target: &Target) -> String {
    let blue = &target.settings.releases.services;
    if blue != &crate::target::ReleaseNames::default().services {
        format!(" --services-release {blue}")
    } else {
        String::new()
    }
}

/// The release flags the operator gave (` --services-release X
/// --green-release Y`), for hints.
fn flag_for(target: &Target, args: &Args) -> String {
    let mut s = services_flag(target);
    if let Some(g) = &args.green_release {
        s.push_str(&format!(" --green-release {g}"));
    }
    s
}

async fn take_lock(target: &Target, by: &str, args: &Args) -> Result<lease::HeldLock, Error> {
    lease::acquire(
        &target.client,
        &target.api(),
        &target.namespace,
        by,
        args.force_unlock,
    )
    .await
    .map_err(|e| usage("cannot change the services now", e.to_string()))
}

async fn finish_record(
    target: &Target,
    record: &mut RunRecord,
    lock: lease::HeldLock,
    messages: Messages,
) {
    record.ended_at = Some(chrono::Utc::now().to_rfc3339());
    if let Err(e) = history::record(&target.client, &target.api(), &target.namespace, record).await
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
}

/// Each release's revision before and now (a release gone has no
/// revision after).
async fn changes(target: &Target, releases: &[(&String, Option<u32>)]) -> Vec<ReleaseChange> {
    let store = crate::helm::release::ReleaseStore::new(
        target.client.clone(),
        target.api(),
        target.namespace.clone(),
        target.settings.driver,
    );
    let mut out = Vec::new();
    for (i, (name, before)) in releases.iter().enumerate() {
        let latest = store.latest(name).await.ok().flatten();
        out.push(ReleaseChange {
            // Blue first, then green.
            component: if i == 0 {
                "services".to_string()
            } else {
                "services (green)".to_string()
            },
            release: (*name).clone(),
            revision_before: *before,
            revision_after: latest.as_ref().map(|r| r.version),
            chart_before: None,
            chart_after: latest.as_ref().and_then(|r| {
                r.chart_metadata()
                    .map(|m| ChartVersion {
                        name: m.name.clone(),
                        version: m.version.clone(),
                        app_version: Some(m.app_version.clone()).filter(|a| !a.is_empty()),
                    })
                    .map(|c| c.to_string())
            }),
            status_after: Some(
                latest
                    .map(|r| r.info.status)
                    .unwrap_or_else(|| "uninstalled".into()),
            ),
        });
    }
    out
}

/// Asks on a terminal; refuses without one unless `--yes`.
fn confirm(args: &Args, question: &str) -> Result<(), Error> {
    match crate::report::confirm(args.yes, question)? {
        crate::report::Confirmation::Yes => Ok(()),
        crate::report::Confirmation::NoTerminal => Err(usage(
            "refusing to change releases without confirmation",
            "there is no terminal to ask on: review with --dry-run and pass --yes",
        )),
        crate::report::Confirmation::No => Err(usage("cancelled", "nothing was changed")),
    }
}

/// The first node's InternalIP (then ExternalIP), for the curl lines.
async fn node_address(target: &Target) -> String {
    let nodes: Api<Node> = Api::all(target.client.clone());
    let Ok(list) = nodes.list(&ListParams::default().limit(1)).await else {
        return "NODE-ADDRESS".into();
    };
    list.items
        .iter()
        .filter_map(|n| n.status.as_ref()?.addresses.as_ref())
        .flatten()
        .find(|a| a.type_ == "InternalIP" || a.type_ == "ExternalIP")
        .map(|a| a.address.clone())
        .unwrap_or_else(|| "NODE-ADDRESS".into())
}

fn curl(node: &str, p: &GreenPort) -> String {
    let path = if p.role == "backend" {
        "/api/health"
    } else {
        "/"
    };
    format!("curl -fsS http://{node}:{}{path}", p.green)
}

fn render_plan(
    r: &BlueGreenReport,
    blue_revision: u32,
    p: Painter,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    writeln!(
        out,
        "{}",
        p.title(&format!(
            "Blue-green upgrade of the services in namespace {}{}",
            r.namespace,
            if r.dry_run {
                ": dry run, nothing will change"
            } else {
                ""
            }
        ))
    )?;
    let mut t = p.table(&["", "RELEASE", "CHART", "NODEPORTS"]);
    let blue_ports: Vec<String> = r
        .ports
        .iter()
        .map(|g| {
            format!(
                "{} {}",
                g.role,
                g.blue.map(|b| b.to_string()).unwrap_or_else(|| "-".into())
            )
        })
        .collect();
    let green_ports: Vec<String> = r
        .ports
        .iter()
        .map(|g| format!("{} {}", g.role, g.green))
        .collect();
    t.add_row(vec![
        comfy_table::Cell::new("blue"),
        comfy_table::Cell::new(format!("{} (revision {blue_revision})", r.blue)),
        comfy_table::Cell::new(r.blue_chart.clone().unwrap_or_default()),
        comfy_table::Cell::new(blue_ports.join(", ")),
    ]);
    t.add_row(vec![
        comfy_table::Cell::new("green"),
        comfy_table::Cell::new(format!("{} (new)", r.green)),
        comfy_table::Cell::new(r.green_chart.clone().unwrap_or_default()),
        comfy_table::Cell::new(green_ports.join(", ")),
    ]);
    writeln!(out, "{t}")?;
    writeln!(
        out,
        "blue keeps serving and is not changed; green gets blue's values, the overrides and the NodePorts above ({})",
        r.ports
            .iter()
            .map(GreenPort::set_arg)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn render_result(
    r: &BlueGreenReport,
    p: Painter,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    let headline = match (r.action, r.ok) {
        ("start", true) => p.paint(
            &format!("green {} is healthy beside blue {}", r.green, r.blue),
            Mark::Ok,
        ),
        ("start", false) => p.paint(
            &format!(
                "green {} is NOT healthy; blue {} is untouched and serving",
                r.green, r.blue
            ),
            Mark::Bad,
        ),
        ("promote", true) => p.paint(
            &format!("promoted: {} serves, {} uninstalled", r.green, r.blue),
            Mark::Ok,
        ),
        ("promote", false) => p.paint("promotion FAILED", Mark::Bad),
        ("abort", true) => p.paint(
            &format!("aborted: {} uninstalled, {} untouched", r.green, r.blue),
            Mark::Ok,
        ),
        _ => p.paint("abort FAILED", Mark::Bad),
    };
    writeln!(
        out,
        "\n{headline}{}",
        r.run
            .as_ref()
            .map(|id| format!(" (run {id})"))
            .unwrap_or_default()
    )?;
    if let Some(b) = &r.backup {
        writeln!(out, "backup taken first: {b}")?;
    }
    let mut t = p.table(&["RELEASE", "BEFORE", "NOW", "STATUS", "CHART NOW"]);
    for c in &r.releases {
        let status = c.status_after.clone().unwrap_or_default();
        let mark = if status == "deployed" || status == "uninstalled" {
            Mark::Ok
        } else {
            Mark::Bad
        };
        t.add_row(vec![
            comfy_table::Cell::new(&c.release),
            comfy_table::Cell::new(
                c.revision_before
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "-".into()),
            ),
            comfy_table::Cell::new(
                c.revision_after
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "-".into()),
            ),
            p.marked(status, mark),
            comfy_table::Cell::new(c.chart_after.clone().unwrap_or_default()),
        ]);
    }
    writeln!(out, "{t}")?;
    if let Some(f) = &r.failure {
        writeln!(out, "\n{} {}", p.paint("failed:", Mark::Bad), f.message)?;
        super::render::failure_details(f, out)?;
    }
    if r.action == "start" && r.ok {
        writeln!(out, "\nswitch-over:")?;
        let (checks, rest): (Vec<&String>, Vec<&String>) =
            r.next.iter().partition(|n| n.starts_with("curl "));
        writeln!(out, "  1. check green on its NodePorts:")?;
        for c in checks {
            writeln!(out, "       {c}")?;
        }
        writeln!(
            out,
            "  2. point the load balancer at green's NodePorts ({})",
            r.ports
                .iter()
                .map(|g| format!("{} {}", g.role, g.green))
                .collect::<Vec<_>>()
                .join(", ")
        )?;
        if let [promote, abort] = rest.as_slice() {
            writeln!(out, "  3. promote (uninstalls blue):  {promote}")?;
            writeln!(out, "     or give up (removes green): {abort}")?;
        }
    } else {
        for n in &r.next {
            writeln!(out, "\nnext: {n}")?;
        }
    }
    Ok(())
}
