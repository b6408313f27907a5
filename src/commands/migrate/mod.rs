//! `migrate`: the runbook's "Database Migrations" section. `--status` reads
//! the migration lines every backend pod logged (blue's and, during a
//! blue-green upgrade, green's) and the versions the schema records in
//! PostgreSQL; without it, `/app/kleidia-backend migrate` runs in one ready
//! backend pod (no TTY), its output streamed, under the upgrade lock.

use std::time::Duration;

use clap::Args as ClapArgs;
use serde::Serialize;
use tokio::io::AsyncReadExt;

use crate::cluster::exec::{self, ExecStream};
use crate::cluster::{lease, pods};
use crate::error::Error;
use crate::procedure::gate::migration_lines;
use crate::report::{Mark, Painter, emit};
use crate::survey::{ReleaseSurvey, Survey, SurveyOptions};
use crate::target::{Session, Target};
use crate::topology::{PodInfo, is_backend};

/// The backend's own binary, as the Kleidia image ships it.
pub const DEFAULT_PATH: &str = "/app/kleidia-backend";

/// `migrate` flags.
#[derive(Debug, ClapArgs, Clone)]
pub struct Args {
    /// Show the migration lines of every backend pod and the applied
    /// versions; change nothing.
    #[arg(long)]
    pub status: bool,
    /// Say which pod and command would run; change nothing.
    #[arg(long, conflicts_with = "status")]
    pub dry_run: bool,
    /// The backend binary in its container.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_PATH)]
    pub path: String,
    /// Run in this backend pod instead of the first ready one.
    #[arg(long, value_name = "NAME", conflicts_with = "status")]
    pub pod: Option<String>,
    /// Take over a lock whose holder stopped renewing it.
    #[arg(long, conflicts_with = "status")]
    pub force_unlock: bool,
    /// Time limit for finding the deployment (the migration itself is not
    /// cut short: stopping it half-way is worse than waiting).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = crate::duration::positive_arg)]
    pub timeout: Duration,
}

/// One backend pod and the container the backend runs in.
#[derive(Debug, Clone, Serialize)]
pub struct BackendPod {
    pub release: String,
    pub pod: String,
    pub container: String,
    pub ready: bool,
    pub image: String,
}

/// A migration line a pod logged.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LogLine {
    pub pod: String,
    /// The line's own timestamp, when it starts with one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    pub line: String,
}

/// One row of the schema's migrations table, as PostgreSQL has it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Applied {
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<String>,
    /// golang-migrate's flag for a migration that failed half-way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dirty: Option<bool>,
}

/// What `migrate --status -o json` prints.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub namespace: String,
    pub pods: Vec<BackendPod>,
    pub lines: Vec<LogLine>,
    /// The error lines that were not followed by a success in their pod.
    pub errors: Vec<LogLine>,
    /// `None` when the schema keeps no migrations table.
    pub applied: Option<Vec<Applied>>,
    /// Why the applied versions could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_error: Option<String>,
    pub ok: bool,
}

pub async fn run(session: &Session, args: &Args) -> Result<u8, Error> {
    let target = session.connect().await?;
    let survey = Survey::gather(&target, SurveyOptions::within(args.timeout)).await?;
    let backends = backend_pods(&survey);
    if backends.is_empty() {
        return Err(Error::Usage {
            what: format!(
                "no backend pods in release {} (namespace {})",
                survey.services.name, target.namespace
            ),
            reason: format!(
                "check the services release with `{} versions -n {}`; name it with --services-release if it is not {}",
                session.settings.flavor.invocation(),
                target.namespace,
                survey.services.name
            ),
        });
    }
    if args.status {
        status(session, &target, &survey, backends).await
    } else {
        migrate(session, &target, args, backends).await
    }
}

/// The backend pods of the services release and of green, if any.
fn backend_pods(survey: &Survey) -> Vec<BackendPod> {
    let mut out = Vec::new();
    let releases: Vec<&ReleaseSurvey> = std::iter::once(&survey.services)
        .chain(survey.green.as_ref())
        .collect();
    for r in releases {
        for w in r.workloads.iter().filter(|w| is_backend(&w.workload)) {
            let container = w
                .workload
                .containers
                .iter()
                .find(|c| {
                    c.name.to_ascii_lowercase().contains("backend")
                        || c.image_name().to_ascii_lowercase().contains("backend")
                })
                .or_else(|| w.workload.containers.first());
            let Some(container) = container else { continue };
            for p in &w.pods {
                out.push(BackendPod {
                    release: r.name.clone(),
                    pod: p.name.clone(),
                    container: container.name.clone(),
                    ready: p.ready,
                    image: pod_image(p, &container.name).unwrap_or_else(|| container.image.clone()),
                });
            }
        }
    }
    out
}

fn pod_image(p: &PodInfo, container: &str) -> Option<String> {
    p.images.get(container).cloned()
}

async fn status(
    session: &Session,
    target: &Target,
    survey: &Survey,
    backends: Vec<BackendPod>,
) -> Result<u8, Error> {
    let api = target.api();
    let ns = &target.namespace;
    let logs = futures::future::join_all(
        backends
            .iter()
            .map(|b| pods::log_since_start(&target.client, &api, ns, &b.pod, Some(&b.container))),
    )
    .await;
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    for (b, log) in backends.iter().zip(logs) {
        let log = match log {
            Ok(l) => l,
            Err(e) => {
                session
                    .settings
                    .messages
                    .warning(&format!("cannot read the log of pod {}: {e}", b.pod));
                continue;
            }
        };
        let found = migration_lines(&log);
        for l in &found.lines {
            lines.push(log_line(&b.pod, l));
        }
        // The error lines after the pod's last success.
        if found.error.is_some() {
            let last_ok = found.lines.iter().rposition(|l| ended_well(l));
            for l in found.lines.iter().skip(last_ok.map_or(0, |i| i + 1)) {
                let line = log_line(&b.pod, l);
                // A retried migration logs the same error again: keep one.
                if is_error(l)
                    && !errors
                        .iter()
                        .any(|e: &LogLine| e.pod == line.pod && e.line == line.line)
                {
                    errors.push(line);
                }
            }
        }
    }
    let (applied, applied_error) = match applied(target, survey).await {
        Ok(a) => (a, None),
        Err(e) => (None, Some(e)),
    };
    let dirty = applied
        .as_ref()
        .is_some_and(|a| a.iter().any(|m| m.dirty == Some(true)));
    let report = Status {
        namespace: ns.clone(),
        pods: backends,
        lines,
        errors,
        applied,
        applied_error,
        ok: false,
    };
    let ok = report.errors.is_empty() && !dirty;
    let report = Status { ok, ..report };
    let painter = Painter {
        color: session.settings.color,
    };
    emit(session.settings.output, &report, |out| {
        render_status(&report, session.settings.flavor.invocation(), painter, out)
    })?;
    Ok(if ok { 0 } else { 1 })
}

fn is_error(l: &str) -> bool {
    let l = l.to_ascii_lowercase();
    (l.contains("error") || l.contains("failed") || l.contains("fatal")) && !l.contains("retrying")
}

fn ended_well(l: &str) -> bool {
    migration_lines(l).finished
}

/// Splits a leading RFC 3339 timestamp off a log line.
fn log_line(pod: &str, line: &str) -> LogLine {
    let (first, rest) = line.split_once(' ').unwrap_or((line, ""));
    let time = chrono::DateTime::parse_from_rfc3339(first).ok();
    LogLine {
        pod: pod.to_string(),
        time: time.map(|_| first.to_string()),
        line: if time.is_some() { rest } else { line }.to_string(),
    }
}

/// The rows of `schema_migrations`, read with psql in the PostgreSQL pod.
async fn applied(target: &Target, survey: &Survey) -> Result<Option<Vec<Applied>>, String> {
    let pg = survey.postgres.as_ref().map_err(|e| e.to_string())?;
    let sql =
        "SELECT CASE WHEN to_regclass('schema_migrations') IS NULL THEN 'none' ELSE 'table' END";
    let psql = |sql: &str| {
        let sql = sql.to_string();
        let pg = pg.clone();
        async move {
            let out = exec::run(
                &target.client,
                &target.api(),
                &target.namespace,
                &pg.pod,
                Some(&pg.container),
                &["psql", "-U", &pg.user, "-d", &pg.database, "-tAc", &sql],
                4 * 1024 * 1024,
            )
            .await
            .map_err(|e| e.to_string())?;
            if !out.outcome.success() {
                return Err(format!(
                    "psql in pod {}: {}",
                    pg.pod,
                    out.outcome.describe()
                ));
            }
            Ok(out.stdout_text())
        }
    };
    if psql(sql).await? != "table" {
        return Ok(None);
    }
    let rows = psql("SELECT row_to_json(m) FROM schema_migrations m ORDER BY version").await?;
    let mut out = Vec::new();
    for line in rows.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("psql printed {line:?}: {e}"))?;
        let text = |k: &str| {
            v.get(k).and_then(|x| match x {
                serde_json::Value::Null => None,
                serde_json::Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            })
        };
        out.push(Applied {
            version: text("version").unwrap_or_default(),
            name: text("name"),
            applied_at: text("applied_at"),
            dirty: v.get("dirty").and_then(|d| d.as_bool()),
        });
    }
    Ok(Some(out))
}

fn render_status(
    r: &Status,
    invocation: &str,
    p: Painter,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    writeln!(
        out,
        "{}",
        p.title(&format!(
            "Migration lines of the backend pods in namespace {}",
            r.namespace
        ))
    )?;
    if r.lines.is_empty() {
        writeln!(out, "(no backend pod logged a migration line)")?;
    } else {
        let mut t = p.table(&["POD", "TIME", "LINE"]);
        for l in &r.lines {
            let mark = if is_error(&l.line) {
                Mark::Bad
            } else {
                Mark::Ok
            };
            t.add_row(vec![
                comfy_table::Cell::new(&l.pod),
                comfy_table::Cell::new(l.time.as_deref().unwrap_or("-")),
                p.marked(&l.line, mark),
            ]);
        }
        writeln!(out, "{t}")?;
    }
    writeln!(out)?;
    match (&r.applied, &r.applied_error) {
        (_, Some(e)) => writeln!(out, "applied versions: cannot be read ({e})")?,
        (None, None) => writeln!(
            out,
            "applied versions: the database keeps no schema_migrations table"
        )?,
        (Some(rows), None) => {
            writeln!(
                out,
                "{}",
                p.title("Applied in PostgreSQL (schema_migrations)")
            )?;
            let mut t = p.table(&["VERSION", "NAME", "APPLIED AT"]);
            for m in rows {
                let name = match m.dirty {
                    Some(true) => format!("{} (dirty)", m.name.as_deref().unwrap_or("")),
                    _ => m.name.clone().unwrap_or_else(|| "-".into()),
                };
                t.add_row(vec![
                    comfy_table::Cell::new(&m.version),
                    comfy_table::Cell::new(name),
                    comfy_table::Cell::new(m.applied_at.as_deref().unwrap_or("-")),
                ]);
            }
            writeln!(out, "{t}")?;
        }
    }
    if r.ok {
        let version = r
            .applied
            .as_ref()
            .and_then(|a| a.last())
            .map(|m| format!(" (schema version {})", m.version))
            .unwrap_or_default();
        writeln!(
            out,
            "\n{}",
            p.paint(&format!("migrations: no failure found{version}"), Mark::Ok)
        )
    } else {
        writeln!(out, "\n{}", p.paint("migrations FAILED:", Mark::Bad))?;
        for e in &r.errors {
            writeln!(out, "  {}: {}", e.pod, e.line)?;
        }
        if r.applied
            .as_ref()
            .is_some_and(|a| a.iter().any(|m| m.dirty == Some(true)))
        {
            writeln!(
                out,
                "  the migrations table marks a migration dirty (failed half-way)"
            )?;
        }
        writeln!(
            out,
            "next: fix the cause the lines name, then `{invocation} migrate -n {}`; the backup bundle taken before the upgrade holds the database as it was",
            r.namespace
        )
    }
}

async fn migrate(
    session: &Session,
    target: &Target,
    args: &Args,
    backends: Vec<BackendPod>,
) -> Result<u8, Error> {
    let messages = session.settings.messages;
    let inv = session.settings.flavor.invocation();
    let ns = &target.namespace;
    let chosen = match &args.pod {
        Some(name) => backends.iter().find(|b| &b.pod == name).ok_or_else(|| Error::Usage {
            what: format!("pod {name} is not a backend pod of namespace {ns}"),
            reason: format!(
                "backend pods: {}",
                backends.iter().map(|b| b.pod.as_str()).collect::<Vec<_>>().join(", ")
            ),
        })?,
        None => backends
            .iter()
            .filter(|b| b.release == target.settings.releases.services)
            .chain(backends.iter())
            .find(|b| b.ready)
            .ok_or_else(|| Error::Usage {
                what: format!("no backend pod in namespace {ns} is ready"),
                reason: format!(
                    "the migration runs in a ready pod; see why they are not with `{inv} preflight -n {ns}`, or name one with --pod"
                ),
            })?,
    };
    let command = [args.path.as_str(), "migrate"];
    let shown = format!(
        "{} in pod {} (container {}, {})",
        command.join(" "),
        chosen.pod,
        chosen.container,
        chosen.image
    );
    if args.dry_run {
        messages.note(&format!("dry run: would run {shown}; nothing changed"));
        return Ok(0);
    }
    let by = lease::identity(&format!("{inv} migrate"));
    let lock = lease::acquire(&target.client, &target.api(), ns, &by, args.force_unlock)
        .await
        .map_err(|e| Error::Usage {
            what: "cannot migrate now".into(),
            reason: e.to_string(),
        })?;
    messages.note(&format!("running {shown}"));
    let result = until_second_signal(stream(target, chosen, &command), &chosen.pod, messages).await;
    if let Err(e) = lock.release().await {
        messages.warning(&format!(
            "the lock could not be released ({e}); it expires by itself after {}s",
            lease::LEASE_DURATION.as_secs()
        ));
    }
    let outcome = result?;
    let stderr = outcome.stderr.text();
    if !stderr.is_empty() {
        eprint!("{stderr}");
        if !stderr.ends_with('\n') {
            eprintln!();
        }
    }
    if outcome.success() {
        messages.note(&format!("migrate in pod {} finished", chosen.pod));
        Ok(0)
    } else {
        let how = match outcome.code() {
            Some(code) => format!("exited with code {code}"),
            None => outcome.describe(),
        };
        Err(Error::Failed(format!(
            "migrate in pod {} {how} (its output is above); `{inv} migrate --status -n {ns}` shows every backend pod's migration lines and the applied versions",
            chosen.pod
        )))
    }
}

/// Runs `work` to its end through a first SIGINT/SIGTERM (a migration
/// stopped half-way is worse than one waited for: the message says so); a
/// second one stops waiting, releasing the lock, while the migration goes
/// on in the pod.
async fn until_second_signal<T>(
    work: impl std::future::Future<Output = Result<T, Error>>,
    pod: &str,
    messages: crate::report::Messages,
) -> Result<T, Error> {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return work.await;
    };
    tokio::pin!(work);
    let mut warned = false;
    loop {
        tokio::select! {
            r = &mut work => return r,
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        if warned {
            return Err(Error::Failed(format!(
                "stopped waiting for the migration in pod {pod}; it may still be running there: check with `migrate --status` before running it again"
            )));
        }
        messages.warning(&format!(
            "the migration in pod {pod} keeps running: stopping it half-way could leave the schema between versions. Waiting for it; interrupt again to stop waiting (the migration goes on in the pod)"
        ));
        warned = true;
    }
}

/// Runs `command` in the pod, copying its stdout to ours as it comes.
async fn stream(
    target: &Target,
    b: &BackendPod,
    command: &[&str],
) -> Result<exec::ExecOutcome, Error> {
    let mut run = ExecStream::start(
        &target.client,
        &target.api(),
        &target.namespace,
        &b.pod,
        Some(&b.container),
        command,
        false,
    )
    .await
    .map_err(|e| Error::Failed(e.to_string()))?;
    if let Some(mut out) = run.take_stdout() {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = out
                .read(&mut buf)
                .await
                .map_err(|e| Error::Failed(format!("reading the output of migrate: {e}")))?;
            if n == 0 {
                break;
            }
            crate::report::write_stdout(&buf[..n])?;
        }
    }
    run.finish().await.map_err(|e| Error::Failed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_split_off_and_errors_found() {
        let l = log_line(
            "p",
            "2026-12-02T10:00:00.000Z INFO migrate: applied 0005_x (38ms)",
        );
        assert_eq!(l.time.as_deref(), Some("2026-12-02T10:00:00.000Z"));
        assert_eq!(l.line, "INFO migrate: applied 0005_x (38ms)");
        let l = log_line("p", "migrate: applying 0005_x");
        assert_eq!(l.time, None);
        assert_eq!(l.line, "migrate: applying 0005_x");
        assert!(is_error(
            "ERROR migrate: migration 0005 failed at statement 2"
        ));
        assert!(!is_error(
            "WARN migrate: database unreachable; retrying in 2s"
        ));
        assert!(ended_well(
            "INFO migrate: migrations finished (schema version 5)"
        ));
    }
}
