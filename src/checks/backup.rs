//! A recent backup: the newest complete bundle of this namespace in the
//! backup folder is younger than `--max-backup-age`, and its files match
//! the sizes and SHA-256 sums its manifest records. When `upgrade` runs the
//! checks, it takes a backup right after them: the check says so.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Check, Context};
use crate::backup::list::{BundleState, BundleSummary, list_bundles};
use crate::backup::verify::{VerifyOptions, verify_bundle};

pub async fn checks(cx: &Context<'_>) -> Vec<Check> {
    let o = cx.options;
    if o.backup_follows {
        return vec![Check::pass(
            "backup",
            format!(
                "a backup bundle is taken into {} right after these checks",
                o.backup_dir.display()
            ),
        )];
    }
    let dir = o.backup_dir.clone();
    let ns = cx.survey.namespace.clone();
    let max = o.max_backup_age;
    let create = cx.command(&format!("backup create --dir {}", dir.display()));
    let found = tokio::task::spawn_blocking(move || newest(&dir, &ns, Utc::now()))
        .await
        .unwrap_or_else(|e| Err(format!("the check stopped: {e}")));
    vec![verdict(&o.backup_dir, found, max, &create, Utc::now())]
}

/// The newest bundle and whether its checksums verify; `None`: none.
pub type Found = Result<Option<(BundleSummary, Result<(), String>)>, String>;

/// The newest complete bundle of `namespace` in `dir` and whether its
/// checksums verify.
fn newest(dir: &Path, namespace: &str, now: DateTime<Utc>) -> Found {
    let bundles = match list_bundles(dir, now) {
        Ok(b) => b,
        Err(crate::backup::list::ListError::NoDir(_)) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let Some(b) = bundles
        .into_iter()
        .filter(|b| b.state == BundleState::Complete && b.namespace == namespace)
        .max_by_key(|b| b.time)
    else {
        return Ok(None);
    };
    let verified = match verify_bundle(&b.path, &VerifyOptions::default()) {
        Ok(r) if r.ok => Ok(()),
        Ok(r) => Err(r.failures().join("; ")),
        Err(e) => Err(e.to_string()),
    };
    Ok(Some((b, verified)))
}

/// The verdict from what was found: a bundle that does not verify fails
/// (it looks like a backup and is none); none at all, or an old one, warns
/// (`upgrade` takes its own unless told `--no-backup`).
pub fn verdict(dir: &Path, found: Found, max: Duration, create: &str, now: DateTime<Utc>) -> Check {
    let shown_max = crate::duration::show(max);
    let (b, verified) = match found {
        Err(e) => {
            return Check::fail(
                "backup",
                format!("the backup folder {} cannot be read: {e}", dir.display()),
                format!("point --backup-dir at the bundles, or take one with `{create}`"),
            );
        }
        Ok(None) => {
            return Check::warn(
                "backup",
                format!(
                    "no complete backup bundle of this namespace in {}",
                    dir.display()
                ),
                format!("take one with `{create}` (or point --backup-dir at the bundles)"),
            );
        }
        Ok(Some(found)) => found,
    };
    let age = (now - b.time).to_std().unwrap_or(Duration::ZERO);
    let shown_age = crate::duration::show(Duration::from_secs(age.as_secs()));
    if let Err(why) = verified {
        return Check::fail(
            "backup",
            format!(
                "the newest bundle {} ({shown_age} old) does not verify: {}",
                b.name,
                crate::report::one_line(&why, 200)
            ),
            format!("take a new one with `{create}`"),
        );
    }
    let what = format!(
        "its checksums verify ({}{})",
        b.components
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        if b.encrypted { "; encrypted" } else { "" }
    );
    if age > max {
        return Check::warn(
            "backup",
            format!(
                "newest bundle {} is {shown_age} old, older than the limit of {shown_max}; {what}",
                b.name
            ),
            format!("take a fresh one with `{create}` (or allow older ones with --max-backup-age)"),
        );
    }
    Check::pass(
        "backup",
        format!(
            "newest bundle {} is {shown_age} old (limit {shown_max}); {what}",
            b.name
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Status;

    fn bundle(time: DateTime<Utc>) -> BundleSummary {
        BundleSummary {
            name: "kleidia-kleidia-20261202T090000Z".into(),
            path: "/b".into(),
            namespace: "kleidia".into(),
            context: None,
            server: None,
            time,
            state: BundleState::Complete,
            stale: false,
            size: 10,
            encrypted: false,
            components: Vec::new(),
            versions: Default::default(),
            charts: Default::default(),
            problem: None,
        }
    }

    #[test]
    fn none_or_old_warns_damaged_fails() {
        let now = Utc::now();
        let dir = Path::new("/b");
        let max = Duration::from_secs(24 * 3600);
        let c = verdict(dir, Ok(None), max, "k backup create", now);
        assert_eq!(c.status, Status::Warn);
        assert!(c.hint.unwrap().contains("k backup create"));
        let fresh = bundle(now - chrono::TimeDelta::hours(2));
        assert_eq!(
            verdict(dir, Ok(Some((fresh.clone(), Ok(())))), max, "x", now).status,
            Status::Pass
        );
        let old = bundle(now - chrono::TimeDelta::hours(30));
        let c = verdict(dir, Ok(Some((old, Ok(())))), max, "x", now);
        assert_eq!(c.status, Status::Warn);
        assert!(c.detail.contains("older than the limit"), "{}", c.detail);
        let c = verdict(
            dir,
            Ok(Some((fresh, Err("dump: sha256 mismatch".into())))),
            max,
            "x",
            now,
        );
        assert_eq!(c.status, Status::Fail);
        assert!(c.detail.contains("does not verify: dump: sha256 mismatch"));
    }
}
