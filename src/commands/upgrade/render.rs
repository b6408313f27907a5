//! The upgrade's tables: the plan, the result (every release's revision
//! and status, the failing pod and its reason, the next command) and the
//! recorded runs.

use std::io::Write;

use comfy_table::Cell;

use super::UpgradeReport;
use crate::procedure::history::RunRecord;
use crate::procedure::plan::UpgradePlan;
use crate::procedure::run::StepFailure;
use crate::report::{Mark, Painter, short_time};

pub fn plan(
    p: &UpgradePlan,
    dry_run: bool,
    painter: Painter,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    writeln!(
        out,
        "{}",
        painter.title(&format!(
            "Upgrade plan for namespace {} (charts from {}){}",
            p.namespace,
            p.charts.display(),
            if dry_run {
                ": dry run, nothing will change"
            } else {
                ""
            }
        ))
    )?;
    let mut t = painter.table(&["COMPONENT", "RELEASE", "REVISION", "CHART", "APP VERSION"]);
    for c in &p.components {
        let chart = if c.current.version == c.target.version {
            format!("{} (unchanged)", c.target.version)
        } else {
            format!("{} -> {}", c.current.version, c.target.version)
        };
        let app = match (&c.current.app_version, &c.target.app_version) {
            (a, b) if a == b => a.clone().unwrap_or_else(|| "-".into()),
            (a, b) => format!(
                "{} -> {}",
                a.as_deref().unwrap_or("-"),
                b.as_deref().unwrap_or("-")
            ),
        };
        t.add_row(vec![
            Cell::new(c.component.as_str()),
            Cell::new(&c.release),
            Cell::new(format!("{} ({})", c.revision, c.status)),
            Cell::new(chart),
            Cell::new(app),
        ]);
    }
    writeln!(out, "{t}")?;
    for c in &p.components {
        writeln!(
            out,
            "\n{}:",
            painter.title(&format!("{} ({})", c.component, c.release))
        )?;
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        writeln!(out, "  values changed:   {}", list(&c.values_changed))?;
        writeln!(out, "  objects added:    {}", list(&c.added))?;
        writeln!(out, "  objects removed:  {}", list(&c.removed))?;
        writeln!(out, "  objects changed:  {}", list(&c.changed))?;
        for i in &c.images {
            writeln!(
                out,
                "  image:            {} {}: {} -> {}",
                i.workload,
                i.container,
                i.from.as_deref().unwrap_or("(new)"),
                i.to
            )?;
        }
        writeln!(out, "  pods restart:     {}", list(&c.restarts))?;
        if !c.rolled_by_kleidia.is_empty() {
            writeln!(
                out,
                "  rolled by kleidia: {} (updateStrategy OnDelete: helm restarts nothing there; each pod is replaced one at a time, standbys first)",
                c.rolled_by_kleidia.join(", ")
            )?;
        }
    }
    writeln!(out)
}

pub fn result(
    r: &UpgradeReport,
    record: &RunRecord,
    invocation: &str,
    p: Painter,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let ns = &r.plan.namespace;
    let headline = if r.ok {
        p.paint("upgrade succeeded", Mark::Ok)
    } else {
        p.paint("upgrade FAILED", Mark::Bad)
    };
    writeln!(out, "\n{headline} (run {})", record.id)?;
    if let Some(b) = &r.backup {
        writeln!(out, "backup taken first: {b}")?;
    }
    let mut t = p.table(&["RELEASE", "BEFORE", "AFTER", "STATUS", "CHART NOW"]);
    for c in &r.releases {
        let status = c.status_after.clone().unwrap_or_else(|| "unknown".into());
        let mark = if status == "deployed" {
            Mark::Ok
        } else {
            Mark::Bad
        };
        t.add_row(vec![
            Cell::new(&c.release),
            Cell::new(c.revision_before.map(|v| v.to_string()).unwrap_or_default()),
            Cell::new(c.revision_after.map(|v| v.to_string()).unwrap_or_default()),
            p.marked(status, mark),
            Cell::new(c.chart_after.clone().unwrap_or_default()),
        ]);
    }
    writeln!(out, "{t}")?;
    let Some(o) = &r.outcome else {
        return Ok(());
    };
    if let Some(f) = &o.failure {
        writeln!(
            out,
            "\n{} {} ({}): {}",
            p.paint("failed at", Mark::Bad),
            f.component,
            f.step,
            f.message
        )?;
        failure_details(f, out)?;
    }
    if !o.rollbacks.is_empty() {
        writeln!(out, "\nafter the failure:")?;
        for rb in &o.rollbacks {
            let mark = if rb.ok { Mark::Ok } else { Mark::Bad };
            writeln!(
                out,
                "  {} {} ({}): {}",
                p.paint(if rb.ok { "ok" } else { "FAILED" }, mark),
                rb.component,
                rb.release,
                rb.note
            )?;
        }
    }
    if !r.ok {
        let next = if o.rollbacks.iter().any(|rb| !rb.ok) {
            format!(
                "a rollback did not finish healthy: check `{invocation} versions -n {ns}` and roll the named release back by hand (`{invocation} rollback COMPONENT -n {ns}`)"
            )
        } else if o.rollbacks.is_empty() {
            format!(
                "nothing was rolled back (--no-rollback); roll back with `{invocation} rollback --all -n {ns}` or fix and upgrade again"
            )
        } else {
            format!(
                "fix the cause above, then run the upgrade again; `{invocation} versions -n {ns}` shows where everything stands"
            )
        };
        writeln!(out, "\nnext: {next}")?;
    }
    Ok(())
}

/// The failing pod and its reason, its events, its log tail and what helm
/// said, indented under the failure's headline.
pub fn failure_details(f: &StepFailure, out: &mut dyn Write) -> std::io::Result<()> {
    if let (Some(pod), Some(reason)) = (&f.pod, &f.reason) {
        writeln!(out, "  pod {pod}: {reason}")?;
    }
    for e in &f.events {
        writeln!(out, "  event: {e}")?;
    }
    if !f.log_tail.is_empty() {
        writeln!(out, "  log tail:")?;
        for l in &f.log_tail {
            writeln!(out, "    {l}")?;
        }
    }
    if !f.helm_tail.is_empty() {
        writeln!(out, "  helm said:")?;
        for l in &f.helm_tail {
            writeln!(out, "    {l}")?;
        }
    }
    Ok(())
}

pub fn history(runs: &[RunRecord], p: Painter, out: &mut dyn Write) -> std::io::Result<()> {
    if runs.is_empty() {
        return writeln!(
            out,
            "no upgrade or rollback runs recorded in this namespace"
        );
    }
    let mut t = p.table(&[
        "RUN", "STARTED", "ENDED", "OUTCOME", "RELEASES", "BACKUP", "BY",
    ]);
    for r in runs.iter().rev() {
        let mark = match r.outcome.as_str() {
            "succeeded" => Mark::Ok,
            "running" => Mark::Warn,
            _ => Mark::Bad,
        };
        let releases = r
            .releases
            .iter()
            .map(|c| {
                format!(
                    "{} {}->{}",
                    c.component,
                    c.revision_before
                        .map(|v| v.to_string())
                        .unwrap_or_else(|| "-".into()),
                    c.revision_after
                        .map(|v| v.to_string())
                        .unwrap_or_else(|| "-".into())
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        t.add_row(vec![
            Cell::new(&r.id),
            Cell::new(short_time(Some(&r.started_at))),
            Cell::new(short_time(r.ended_at.as_deref())),
            p.marked(&r.outcome, mark),
            Cell::new(releases),
            Cell::new(r.backup.clone().unwrap_or_else(|| "-".into())),
            Cell::new(&r.by),
        ]);
    }
    writeln!(out, "{t}")
}
