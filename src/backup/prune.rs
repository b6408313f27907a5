//! `backup prune`: removes old complete bundles, keeping the newest N
//! (`--keep`) and/or those younger than a maximum age (`--max-age`).
//!
//! Rules, chosen to never lose the last good backup:
//! - only complete bundles (final name and a readable manifest) are removed;
//!   other folders, incomplete bundles and partial folders are never touched
//!   (stale partial leftovers are listed so they can be removed by hand);
//! - with both rules, a bundle goes only when it is outside the newest N
//!   **and** older than the maximum age;
//! - `--max-age` alone never removes the newest complete bundle.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use super::list::{BundleState, BundleSummary, ListError, list_bundles};
use super::manifest::MANIFEST_FILE;

/// Errors of pruning.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    #[error(transparent)]
    List(#[from] ListError),
    #[error(
        "give --keep N (N >= 1) and/or --max-age DURATION (such as 30d or 12h) to say which bundles to keep"
    )]
    NoRule,
    #[error("removing {path} failed: {source}; check its permissions and run prune again")]
    Remove { path: PathBuf, source: io::Error },
}

/// Which bundles to keep.
#[derive(Debug, Clone, Copy, Default)]
pub struct PruneRule {
    pub keep: Option<usize>,
    pub max_age: Option<TimeDelta>,
}

/// What prune did (or would do, in a dry run).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PruneReport {
    pub dry_run: bool,
    pub removed: Vec<BundleSummary>,
    pub kept: Vec<BundleSummary>,
    /// Partial folders untouched for over an hour; remove them by hand.
    pub stale_partials: Vec<BundleSummary>,
    /// Bundles with a final name but no readable manifest; left alone.
    pub incomplete: Vec<BundleSummary>,
    pub freed_bytes: u64,
}

/// Decides which complete bundles go; returns (remove, keep).
pub fn plan(
    bundles: &[BundleSummary],
    rule: PruneRule,
    now: DateTime<Utc>,
) -> Result<(Vec<BundleSummary>, Vec<BundleSummary>), PruneError> {
    if rule.keep.is_none_or(|k| k == 0) && rule.max_age.is_none() {
        return Err(PruneError::NoRule);
    }
    let mut complete: Vec<&BundleSummary> = bundles
        .iter()
        .filter(|b| b.state == BundleState::Complete)
        .collect();
    complete.sort_by(|a, b| b.time.cmp(&a.time).then(b.name.cmp(&a.name)));
    let (mut remove, mut keep) = (Vec::new(), Vec::new());
    for (i, b) in complete.into_iter().enumerate() {
        let beyond_count = match rule.keep {
            Some(k) if k > 0 => i >= k,
            _ => i >= 1,
        };
        let too_old = rule.max_age.is_none_or(|age| now - b.time > age);
        let by_count_only = rule.keep.is_some() && rule.max_age.is_none();
        if beyond_count && (too_old || by_count_only) {
            remove.push(b.clone());
        } else {
            keep.push(b.clone());
        }
    }
    Ok((remove, keep))
}

/// Prunes `dir` by `rule`; with `dry_run` only reports.
pub fn prune(
    dir: &Path,
    rule: PruneRule,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<PruneReport, PruneError> {
    let bundles = list_bundles(dir, now)?;
    let (remove, kept) = plan(&bundles, rule, now)?;
    let mut report = PruneReport {
        dry_run,
        removed: Vec::new(),
        kept,
        stale_partials: bundles
            .iter()
            .filter(|b| b.state == BundleState::Partial && b.stale)
            .cloned()
            .collect(),
        incomplete: bundles
            .iter()
            .filter(|b| b.state == BundleState::Incomplete)
            .cloned()
            .collect(),
        freed_bytes: 0,
    };
    for b in remove {
        if !dry_run {
            // Re-check right before removing: a real folder, still a bundle.
            let meta = fs::symlink_metadata(&b.path).map_err(|source| PruneError::Remove {
                path: b.path.clone(),
                source,
            })?;
            if !meta.is_dir() || !b.path.join(MANIFEST_FILE).is_file() {
                continue;
            }
            fs::remove_dir_all(&b.path).map_err(|source| PruneError::Remove {
                path: b.path.clone(),
                source,
            })?;
        }
        report.freed_bytes += b.size;
        report.removed.push(b);
    }
    Ok(report)
}

/// Parses a duration such as `30d`, `12h`, `90m`, `2w` or `1d12h`.
pub fn parse_duration(text: &str) -> Result<TimeDelta, String> {
    let bad = || {
        format!(
            "'{text}' is not a duration: use a number with a unit s, m, h, d or w, such as 30d, 12h or 1d12h"
        )
    };
    let mut total = TimeDelta::zero();
    let mut number = String::new();
    let mut any = false;
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: i64 = number.parse().map_err(|_| bad())?;
        number.clear();
        let part = match c {
            's' => TimeDelta::try_seconds(n),
            'm' => TimeDelta::try_minutes(n),
            'h' => TimeDelta::try_hours(n),
            'd' => TimeDelta::try_days(n),
            'w' => TimeDelta::try_weeks(n),
            _ => None,
        }
        .ok_or_else(bad)?;
        total = total.checked_add(&part).ok_or_else(bad)?;
        any = true;
    }
    if !number.is_empty() || !any {
        return Err(bad());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn bundle(name: &str, hours_ago: i64, now: DateTime<Utc>) -> BundleSummary {
        BundleSummary {
            name: name.to_owned(),
            path: PathBuf::from(name),
            namespace: "kleidia".into(),
            time: now - TimeDelta::hours(hours_ago),
            state: BundleState::Complete,
            stale: false,
            size: 10,
            encrypted: false,
            components: vec![],
            versions: BTreeMap::new(),
            charts: BTreeMap::new(),
            problem: None,
        }
    }

    fn names(v: &[BundleSummary]) -> Vec<&str> {
        v.iter().map(|b| b.name.as_str()).collect()
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30d").unwrap(), TimeDelta::days(30));
        assert_eq!(parse_duration("1d12h").unwrap(), TimeDelta::hours(36));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn keep_n_keeps_the_newest() {
        let now = Utc::now();
        let all = vec![
            bundle("a", 30, now),
            bundle("b", 20, now),
            bundle("c", 10, now),
        ];
        let rule = PruneRule {
            keep: Some(2),
            max_age: None,
        };
        let (remove, keep) = plan(&all, rule, now).unwrap();
        assert_eq!(names(&remove), vec!["a"]);
        assert_eq!(names(&keep), vec!["c", "b"]);
    }

    #[test]
    fn max_age_alone_keeps_the_newest_even_if_old() {
        let now = Utc::now();
        let all = vec![bundle("a", 300, now), bundle("b", 200, now)];
        let rule = PruneRule {
            keep: None,
            max_age: Some(TimeDelta::hours(24)),
        };
        let (remove, keep) = plan(&all, rule, now).unwrap();
        assert_eq!(names(&remove), vec!["a"]);
        assert_eq!(names(&keep), vec!["b"]);
    }

    #[test]
    fn both_rules_must_agree_to_remove() {
        let now = Utc::now();
        let all = vec![
            bundle("a", 300, now),
            bundle("b", 5, now),
            bundle("c", 1, now),
        ];
        let rule = PruneRule {
            keep: Some(1),
            max_age: Some(TimeDelta::hours(24)),
        };
        let (remove, _) = plan(&all, rule, now).unwrap();
        assert_eq!(names(&remove), vec!["a"]);
    }

    #[test]
    fn incomplete_bundles_are_never_planned_for_removal() {
        let now = Utc::now();
        let mut old = bundle("old", 300, now);
        old.state = BundleState::Incomplete;
        let all = vec![old, bundle("new", 1, now)];
        let rule = PruneRule {
            keep: Some(1),
            max_age: None,
        };
        let (remove, _) = plan(&all, rule, now).unwrap();
        assert!(remove.is_empty());
    }
}
