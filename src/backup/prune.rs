//! `backup prune`: removes old complete bundles, keeping the newest N
//! (`--keep`) and/or those younger than a maximum age (`--max-age`) of each
//! group: bundles of one namespace from one cluster (the namespace, context
//! and API server their manifests record). Backups of `kleidia-staging`
//! never push out those of `kleidia`, nor one cluster's another's.
//!
//! Rules, chosen to never lose the last good backup:
//! - only folders this program wrote are removed: a `kleidia-<ns>-<time>`
//!   name, a real folder (not a link), a readable manifest written by
//!   kleidia for that namespace, and nothing in it the manifest does not
//!   list (no foreign file, link or FIFO); anything else is left alone and
//!   said so, and counts for no group;
//! - incomplete bundles and partial folders are never touched (stale
//!   partial leftovers are listed so they can be removed by hand);
//! - with both rules, a bundle goes only when it is outside the newest N
//!   **and** older than the maximum age;
//! - `--max-age` alone never removes the newest complete bundle of a group.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use super::bundle::parse_name;
use super::list::{BundleState, BundleSummary, ListError, list_bundles};
use super::manifest::{MANIFEST_FILE, ToolInfo};
use super::verify::{read_manifest, walk};

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
    /// Every group's bundles removed (all groups together).
    pub removed: Vec<BundleSummary>,
    /// Every group's bundles kept (all groups together).
    pub kept: Vec<BundleSummary>,
    /// The plan per namespace and cluster.
    pub groups: Vec<PruneGroup>,
    /// Partial folders untouched for over an hour; remove them by hand.
    pub stale_partials: Vec<BundleSummary>,
    /// Bundles with a final name but no readable manifest; left alone.
    pub incomplete: Vec<BundleSummary>,
    /// Complete-looking folders this program did not write as they are;
    /// left alone.
    pub left_alone: Vec<LeftAlone>,
    pub freed_bytes: u64,
}

/// The bundles of one namespace from one cluster, and what prune did with
/// them.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PruneGroup {
    pub namespace: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    pub removed: Vec<BundleSummary>,
    pub kept: Vec<BundleSummary>,
}

impl PruneGroup {
    /// `namespace kleidia, context prod (https://...)`, for people.
    pub fn label(&self) -> String {
        let mut label = format!("namespace {}", self.namespace);
        match (&self.context, &self.server) {
            (Some(c), Some(s)) => label.push_str(&format!(", context {c} ({s})")),
            (Some(c), None) => label.push_str(&format!(", context {c}")),
            (None, Some(s)) => label.push_str(&format!(", server {s}")),
            (None, None) => label.push_str(", no context recorded"),
        }
        label
    }
}

/// A folder prune did not remove although its name and manifest look
/// complete, and why.
#[derive(Debug, Clone, Serialize)]
pub struct LeftAlone {
    pub name: String,
    pub path: PathBuf,
    pub reason: String,
}

impl PruneReport {
    /// The plan (or what was done) per group, then what was left alone,
    /// for people.
    pub fn write_human(&self, out: &mut dyn std::io::Write) -> io::Result<()> {
        let verb = if self.dry_run {
            "would remove"
        } else {
            "removed"
        };
        for g in &self.groups {
            writeln!(
                out,
                "{}: keeping {}, {verb} {}",
                g.label(),
                g.kept.len(),
                g.removed.len()
            )?;
            for b in &g.removed {
                writeln!(out, "  {verb} {} ({})", b.name, size_text(b.size))?;
            }
            for b in &g.kept {
                writeln!(out, "  kept {}", b.name)?;
            }
        }
        for b in &self.incomplete {
            writeln!(
                out,
                "left alone {} (incomplete: no readable manifest)",
                b.name
            )?;
        }
        for l in &self.left_alone {
            writeln!(out, "left alone {}: {}", l.name, l.reason)?;
        }
        for b in &self.stale_partials {
            writeln!(
                out,
                "stale partial {}: left by a backup that did not finish; remove it by hand if no backup is running",
                b.path.display()
            )?;
        }
        writeln!(
            out,
            "{verb} {} bundles, {}",
            self.removed.len(),
            size_text(self.freed_bytes)
        )
    }
}

fn size_text(n: u64) -> String {
    crate::report::human_size(n)
}

/// Why a complete-looking bundle is not one this program wrote as it is,
/// or `None` when prune may remove it.
pub fn not_ours(b: &BundleSummary) -> Option<String> {
    let meta = match fs::symlink_metadata(&b.path) {
        Ok(m) => m,
        Err(e) => return Some(format!("cannot inspect it: {e}")),
    };
    if !meta.is_dir() {
        return Some("not a real folder (a link?)".to_owned());
    }
    let Some(parsed) = parse_name(&b.name).filter(|p| !p.partial) else {
        return Some("not named kleidia-<namespace>-<time>".to_owned());
    };
    let manifest = match read_manifest(&b.path) {
        Ok(m) => m,
        Err(e) => return Some(format!("its manifest cannot be read: {e}")),
    };
    if manifest.tool.name != ToolInfo::current().name {
        return Some(format!(
            "its manifest was written by {}, not by kleidia",
            manifest.tool.name
        ));
    }
    if manifest.namespace != parsed.namespace {
        return Some(format!(
            "its name says namespace {}, its manifest {}",
            parsed.namespace, manifest.namespace
        ));
    }
    let mut entries = Vec::new();
    walk(&b.path, "", &mut entries);
    let foreign: Vec<String> = entries
        .into_iter()
        .filter(|(p, kind)| {
            *kind != "plain file" || (p != MANIFEST_FILE && manifest.file(p).is_none())
        })
        .map(|(p, kind)| match kind {
            "plain file" => p,
            kind => format!("{p} ({kind})"),
        })
        .collect();
    if !foreign.is_empty() {
        return Some(format!(
            "it holds files the backup did not write: {}; remove them or the folder by hand",
            foreign.join(", ")
        ));
    }
    None
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

/// Plans each group (namespace, context, server) on its own; groups come
/// sorted by namespace, then context and server.
pub fn plan_groups(
    bundles: &[BundleSummary],
    rule: PruneRule,
    now: DateTime<Utc>,
) -> Result<Vec<PruneGroup>, PruneError> {
    let mut keys: Vec<(String, Option<String>, Option<String>)> = bundles
        .iter()
        .filter(|b| b.state == BundleState::Complete)
        .map(|b| (b.namespace.clone(), b.context.clone(), b.server.clone()))
        .collect();
    keys.sort();
    keys.dedup();
    let mut groups = Vec::new();
    for (namespace, context, server) in keys {
        let members: Vec<BundleSummary> = bundles
            .iter()
            .filter(|b| {
                b.state == BundleState::Complete
                    && b.namespace == namespace
                    && b.context == context
                    && b.server == server
            })
            .cloned()
            .collect();
        let (removed, kept) = plan(&members, rule, now)?;
        groups.push(PruneGroup {
            namespace,
            context,
            server,
            removed,
            kept,
        });
    }
    if groups.is_empty() {
        // Still say when no rule was given.
        plan(&[], rule, now)?;
    }
    Ok(groups)
}

/// Prunes `dir` by `rule`, group by group; with `dry_run` only reports.
pub fn prune(
    dir: &Path,
    rule: PruneRule,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<PruneReport, PruneError> {
    let mut bundles = list_bundles(dir, now)?;
    let mut left_alone = Vec::new();
    bundles.retain(|b| {
        if b.state != BundleState::Complete {
            return true;
        }
        match not_ours(b) {
            None => true,
            Some(reason) => {
                left_alone.push(LeftAlone {
                    name: b.name.clone(),
                    path: b.path.clone(),
                    reason,
                });
                false
            }
        }
    });
    let mut groups = plan_groups(&bundles, rule, now)?;
    let mut report = PruneReport {
        dry_run,
        removed: Vec::new(),
        kept: groups.iter().flat_map(|g| g.kept.clone()).collect(),
        groups: Vec::new(),
        left_alone,
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
    for group in &mut groups {
        let planned = std::mem::take(&mut group.removed);
        for b in planned {
            if !dry_run {
                // Re-check right before removing: still a bundle of ours.
                if let Some(reason) = not_ours(&b) {
                    group.kept.push(b.clone());
                    report.kept.push(b.clone());
                    report.left_alone.push(LeftAlone {
                        name: b.name.clone(),
                        path: b.path.clone(),
                        reason,
                    });
                    continue;
                }
                fs::remove_dir_all(&b.path).map_err(|source| PruneError::Remove {
                    path: b.path.clone(),
                    source,
                })?;
            }
            report.freed_bytes += b.size;
            report.removed.push(b.clone());
            group.removed.push(b);
        }
    }
    report.groups = groups;
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
            context: None,
            server: None,
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
