//! Each release exists and is `deployed`. A release left `pending-*` by a
//! helm that was stopped blocks every later operation ("another operation
//! is in progress"): it fails with the recovery, naming the last good
//! revision.

use super::{Check, Context};
use crate::survey::{ReleaseSurvey, SurveyError};

pub async fn checks(cx: &Context<'_>) -> Vec<Check> {
    cx.survey
        .releases()
        .iter()
        .map(|r| release(cx, r))
        .collect()
}

pub use crate::helm::release::last_good;

fn release(cx: &Context<'_>, r: &ReleaseSurvey) -> Check {
    let name = format!("release.{}", r.component);
    let ns = &cx.survey.namespace;
    let rel = match &r.latest {
        Ok(rel) => rel,
        Err(SurveyError::NoRelease { .. }) => {
            return Check::fail(
                name,
                format!("release {} not found in namespace {ns}", r.name),
                format!(
                    "install it first, or name the right release with --{}-release (`helm list -n {ns}` lists them)",
                    r.component
                ),
            );
        }
        Err(e) => {
            return Check::fail(
                name,
                format!("release {} cannot be read: {e}", r.name),
                format!("inspect it with `helm history {} -n {ns}`", r.name),
            );
        }
    };
    let status = rel.info.status.as_str();
    let chart = rel
        .chart_metadata()
        .map(|m| format!("{} {}", m.name, m.version))
        .unwrap_or_else(|| "unknown chart".into());
    let detail = format!("{} revision {} ({chart}) is {status}", r.name, rel.version);
    match status {
        "deployed" => Check::pass(name, detail),
        s if s.starts_with("pending-") => {
            let hint = match last_good(&r.revisions, rel.version) {
                Some(good) => format!(
                    "no helm is working on it now? recover it with `{}` (rolls back to revision {good}, the last good one; same as `helm rollback {} {good} -n {ns}`)",
                    cx.command(&format!("rollback {} --recover", r.component)),
                    r.name
                ),
                None => format!(
                    "there is no earlier good revision to go back to; if no helm is working on it, remove the stuck release with `helm uninstall {} -n {ns}` and install it again",
                    r.name
                ),
            };
            Check::fail(
                name,
                format!(
                    "{detail}: a helm was stopped half-way; every upgrade will fail with \"another operation is in progress\""
                ),
                hint,
            )
        }
        "failed" => Check::warn(
            name,
            format!(
                "{detail}: {}",
                crate::report::one_line(&rel.info.description, 120)
            ),
            format!(
                "see why with `helm history {} -n {ns}`; an upgrade will replace the failed revision, or roll back with `{}`",
                r.name,
                cx.command(&format!("rollback {}", r.component))
            ),
        ),
        other => Check::fail(
            name,
            format!("{detail} (expected deployed)"),
            format!("inspect it with `helm status {} -n {ns}` ({other})", r.name),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::helm::release::RevisionLabel;

    fn rev(revision: u32, status: &str) -> RevisionLabel {
        RevisionLabel {
            object: format!("sh.helm.release.v1.r.v{revision}"),
            revision,
            status: status.into(),
        }
    }

    #[test]
    fn the_last_good_revision_skips_failed_ones() {
        let revs = [
            rev(1, "superseded"),
            rev(2, "deployed"),
            rev(3, "failed"),
            rev(4, "pending-upgrade"),
        ];
        assert_eq!(last_good(&revs, 4), Some(2));
        assert_eq!(last_good(&revs, 2), Some(1));
        assert_eq!(last_good(&revs, 1), None);
        assert_eq!(
            last_good(&[rev(1, "failed"), rev(2, "pending-install")], 2),
            None
        );
    }
}
