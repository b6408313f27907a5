//! The pre-upgrade checks (`preflight`, and the first step of `upgrade`):
//! each check has a verdict, a one-line detail with the values it compared
//! and, unless it passed, a hint naming the command to run next. Checks run
//! concurrently over one survey of the deployment.
//!
//! Each check lives in a file of this folder and returns [`Check`]s; this
//! module runs them all and sums them up. The JSON shape is documented in
//! docs/preflight.md.

mod backup;
mod charts;
mod green;
mod headroom;
mod openbao;
mod permissions;
mod postgres;
mod releases;
mod servers;
mod workloads;

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::report::{Mark, Painter};
use crate::survey::{ServerAnswers, Survey, SurveyFailure, SurveyOptions, Which};
use crate::target::Target;

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

impl Status {
    fn mark(self) -> Mark {
        match self {
            Status::Pass => Mark::Ok,
            Status::Warn => Mark::Warn,
            Status::Fail => Mark::Bad,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Check {
    /// Stable, dotted: `release.data`, `workloads.platform`, `helm`.
    pub name: String,
    pub status: Status,
    /// What was compared, in one line.
    pub detail: String,
    /// What to run next (none when the check passed).
    pub hint: Option<String>,
    /// Longer text worth reading before going on (a chart's release notes
    /// on a major version bump); left out of JSON when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Check {
    pub fn pass(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Check {
            name: name.into(),
            status: Status::Pass,
            detail: detail.into(),
            hint: None,
            notes: Vec::new(),
        }
    }

    pub fn warn(
        name: impl Into<String>,
        detail: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Check {
            name: name.into(),
            status: Status::Warn,
            detail: detail.into(),
            hint: Some(hint.into()),
            notes: Vec::new(),
        }
    }

    pub fn fail(
        name: impl Into<String>,
        detail: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Check {
            name: name.into(),
            status: Status::Fail,
            detail: detail.into(),
            hint: Some(hint.into()),
            notes: Vec::new(),
        }
    }
}

impl Check {
    /// The same check with `notes` to print under it.
    pub fn with_notes(mut self, notes: Vec<String>) -> Self {
        self.notes = notes;
        self
    }
}

/// The whole result: `{"result": "pass|warn|fail", "checks": [...]}`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub result: Status,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn new(checks: Vec<Check>) -> Self {
        let result = checks
            .iter()
            .map(|c| c.status)
            .max()
            .unwrap_or(Status::Pass);
        Report { result, checks }
    }

    pub fn count(&self, status: Status) -> usize {
        self.checks.iter().filter(|c| c.status == status).count()
    }

    /// Exit code: 1 when a check failed, or warned with `strict`.
    pub fn exit_code(&self, strict: bool) -> u8 {
        match self.result {
            Status::Fail => 1,
            Status::Warn if strict => 1,
            _ => 0,
        }
    }

    /// The failing checks' names, for messages.
    pub fn failed(&self) -> Vec<&str> {
        self.checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .map(|c| c.name.as_str())
            .collect()
    }
}

/// What the checks compare against.
#[derive(Debug, Clone)]
pub struct Options {
    /// The folder holding the three charts to upgrade to, as in the
    /// runbook (`<dir>/kleidia-platform`, ...).
    pub charts: Option<PathBuf>,
    /// Values files on top of each release's current values.
    pub values: Vec<PathBuf>,
    /// `--set` overrides on top of those.
    pub set: Vec<String>,
    /// The newest bundle must be younger than this.
    pub max_backup_age: Duration,
    pub backup_dir: PathBuf,
    /// For finding the deployment and asking its servers.
    pub timeout: Duration,
    /// How the operator calls the plugin, for hints.
    pub invocation: &'static str,
    /// A backup is taken right after the checks (by `upgrade`): the
    /// recent-backup check then only says so.
    pub backup_follows: bool,
    /// The components the upgrade changes (`upgrade --only`, or the
    /// services alone for a blue-green upgrade); empty: all three. The
    /// `--charts` checks look at these only.
    pub components: Vec<crate::topology::Component>,
    /// The upgrade's own plan of the same charts and values, when the
    /// checks run inside `upgrade`: the `--charts` checks use it instead of
    /// rendering the charts again.
    pub plan: Option<crate::procedure::plan::UpgradePlan>,
}

/// Everything the checks look at, gathered once.
pub struct Context<'a> {
    pub target: &'a Target,
    pub survey: &'a Survey,
    pub answers: &'a ServerAnswers,
    pub options: &'a Options,
}

impl Context<'_> {
    /// `kubectl kleidia versions -n kleidia`-style command text.
    pub fn command(&self, rest: &str) -> String {
        format!(
            "{} {rest} -n {}",
            self.options.invocation, self.survey.namespace
        )
    }
}

/// Runs every check over one survey.
pub async fn run(target: &Target, options: &Options) -> Result<Report, SurveyFailure> {
    let mut opts = SurveyOptions::within(options.timeout);
    opts.live = true;
    let survey = Survey::gather(target, opts).await?;
    let answers = survey.ask_servers(target, Which::ALL, &opts).await;
    let cx = Context {
        target,
        survey: &survey,
        answers: &answers,
        options,
    };
    Ok(Report::new(run_checks(&cx).await))
}

/// The checks, concurrently, in a stable order. The charts to upgrade to
/// are rendered once (with `--charts`) while the rest runs; the checks of
/// what the upgrade would apply, and the headroom it needs, use that.
pub async fn run_checks(cx: &Context<'_>) -> Vec<Check> {
    // The checks' own questions (reviews, peers, renders, discovery) get
    // the same time limit as the survey, from here.
    let limit = cx.options.timeout;
    let deadline = tokio::time::Instant::now() + limit;
    let (
        servers,
        releases,
        green,
        workloads,
        openbao,
        postgres,
        permissions,
        backup,
        (plan, nodes),
    ) = tokio::join!(
        servers::checks(cx),
        releases::checks(cx),
        within(deadline, limit, "release.green", green::checks(cx)),
        async { workloads::checks(cx, chrono::Utc::now()) },
        within(deadline, limit, "openbao", openbao::checks(cx)),
        postgres::checks(cx),
        within(deadline, limit, "permissions", permissions::checks(cx)),
        within(deadline, limit, "backup", backup::checks(cx)),
        async {
            let late = || format!("no answer within {}", crate::duration::show(limit));
            tokio::join!(
                async {
                    tokio::time::timeout_at(deadline, charts::plan(cx))
                        .await
                        .unwrap_or_else(|_| Some(Err(late())))
                },
                async {
                    tokio::time::timeout_at(deadline, headroom::nodes(cx))
                        .await
                        .unwrap_or_else(|_| Err(late()))
                },
            )
        },
    );
    let (headroom, charts) = tokio::join!(
        async { headroom::checks(cx, &nodes, plan.as_ref().and_then(|p| p.as_ref().ok())) },
        within(deadline, limit, "charts", charts::checks(cx, plan.as_ref())),
    );
    let mut all = Vec::new();
    for part in [
        servers,
        releases,
        green,
        workloads,
        openbao,
        postgres,
        headroom,
        permissions,
        backup,
        charts,
    ] {
        all.extend(part);
    }
    all
}

/// The checks of `f`, or one failed check `name` when they do not finish
/// by `deadline`.
async fn within(
    deadline: tokio::time::Instant,
    limit: Duration,
    name: &str,
    f: impl std::future::Future<Output = Vec<Check>>,
) -> Vec<Check> {
    tokio::time::timeout_at(deadline, f)
        .await
        .unwrap_or_else(|_| {
            vec![Check::fail(
                name,
                format!("no answer within {}", crate::duration::show(limit)),
                "check that the cluster answers (`kubectl get pods`), or raise --timeout",
            )]
        })
}

/// One aligned line per check, the hint under anything not passing, then a
/// summary line.
pub fn render(report: &Report, p: Painter, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let mut t = p.table(&["STATUS", "CHECK", "DETAIL"]);
    for c in &report.checks {
        t.add_row(vec![
            p.marked(c.status.as_str().to_uppercase(), c.status.mark()),
            comfy_table::Cell::new(&c.name),
            comfy_table::Cell::new(&c.detail),
        ]);
    }
    writeln!(out, "{t}")?;
    let noteworthy: Vec<&Check> = report
        .checks
        .iter()
        .filter(|c| c.status != Status::Pass && c.hint.is_some())
        .collect();
    if !noteworthy.is_empty() {
        writeln!(out)?;
        for c in noteworthy {
            writeln!(
                out,
                "{} {}: {}",
                p.paint(c.status.as_str().to_uppercase().as_str(), c.status.mark()),
                c.name,
                c.hint.as_deref().unwrap_or_default()
            )?;
            for note in &c.notes {
                for line in note.lines() {
                    writeln!(out, "    {line}")?;
                }
            }
        }
    }
    let summary = format!(
        "preflight: {} ({} failed, {} warnings, {} passed)",
        match report.result {
            Status::Pass => "ready to upgrade",
            Status::Warn => "ready to upgrade, with warnings",
            Status::Fail => "NOT ready to upgrade",
        },
        report.count(Status::Fail),
        report.count(Status::Warn),
        report.count(Status::Pass)
    );
    writeln!(out, "\n{}", p.paint(&summary, report.result.mark()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_verdict_wins_and_strict_fails_on_warnings() {
        let r = Report::new(vec![Check::pass("a", "x"), Check::warn("b", "y", "do z")]);
        assert_eq!(r.result, Status::Warn);
        assert_eq!(r.exit_code(false), 0);
        assert_eq!(r.exit_code(true), 1);
        let r = Report::new(vec![Check::fail("c", "d", "e"), Check::warn("b", "y", "z")]);
        assert_eq!(r.result, Status::Fail);
        assert_eq!(r.exit_code(false), 1);
        assert_eq!(r.failed(), vec!["c"]);
        assert_eq!(Report::new(vec![]).result, Status::Pass);
    }

    #[test]
    fn json_shape_and_plain_table() {
        let r = Report::new(vec![
            Check::pass("helm", "v3.15.1 >= 3.8"),
            Check::fail("release.data", "pending-upgrade at revision 3", "run x"),
        ]);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["result"], "fail");
        assert_eq!(v["checks"][1]["status"], "fail");
        assert_eq!(v["checks"][1]["hint"], "run x");
        assert_eq!(v["checks"][0]["hint"], serde_json::Value::Null);
        for key in ["name", "status", "detail", "hint"] {
            assert!(v["checks"][0].get(key).is_some(), "{key}");
        }
        let mut out = Vec::new();
        render(&r, Painter { color: false }, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains('\x1b'));
        assert!(
            text.contains("FAIL") && text.contains("release.data: run x"),
            "{text}"
        );
        assert!(
            text.contains("NOT ready to upgrade (1 failed, 0 warnings, 1 passed)"),
            "{text}"
        );
    }

    #[test]
    fn notes_print_under_their_hint_and_stay_out_of_json_when_empty() {
        let r = Report::new(vec![
            Check::warn(
                "charts.versions",
                "a 1.0.0 -> 2.0.0 (major)",
                "read the notes",
            )
            .with_notes(vec!["## 2.0.0\n- Breaking: PostgreSQL 16".into()]),
            Check::pass("helm", "v4.1.4"),
        ]);
        let mut out = Vec::new();
        render(&r, Painter { color: false }, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("WARN charts.versions: read the notes\n    ## 2.0.0\n    - Breaking: PostgreSQL 16\n"),
            "{text}"
        );
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v["checks"][0]["notes"][0],
            "## 2.0.0\n- Breaking: PostgreSQL 16"
        );
        assert!(v["checks"][1].get("notes").is_none());
    }
}
