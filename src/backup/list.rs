//! `backup list`: the bundles in a backup folder, complete or not.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::bundle::{BundleDir, scan};
use super::manifest::Component;
use super::verify::read_manifest;

/// A partial folder untouched for this long is a leftover, not a running backup.
pub const STALE_PARTIAL_AFTER: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// Errors listing bundles.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error(
        "backup folder {0} does not exist; bundles are written there by 'backup create --dir {0}'"
    )]
    NoDir(PathBuf),
    #[error("cannot read backup folder {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
}

/// Whether a bundle can be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BundleState {
    /// Final name and a readable manifest.
    Complete,
    /// Final name, but no readable manifest (copied by hand? damaged?).
    Incomplete,
    /// Temporary name: a backup running now, or one that was killed.
    Partial,
}

/// One bundle as `list` shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleSummary {
    pub name: String,
    pub path: PathBuf,
    /// The manifest's namespace (the name's, without a manifest).
    pub namespace: String,
    /// The kubeconfig context the manifest records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// The API server URL the manifest records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Start time (manifest's `startedAt`, else the name's timestamp).
    pub time: DateTime<Utc>,
    pub state: BundleState,
    /// For partial folders: untouched for over an hour (a leftover).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stale: bool,
    /// Bytes on disk.
    pub size: u64,
    pub encrypted: bool,
    pub components: Vec<Component>,
    pub versions: BTreeMap<String, String>,
    /// Release name -> chart version.
    pub charts: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Lists the bundles in `dir`, oldest first; other folders are ignored.
pub fn list_bundles(dir: &Path, now: DateTime<Utc>) -> Result<Vec<BundleSummary>, ListError> {
    if !dir.is_dir() {
        return Err(ListError::NoDir(dir.to_owned()));
    }
    let found = scan(dir).map_err(|source| ListError::Read {
        path: dir.to_owned(),
        source,
    })?;
    let mut out: Vec<BundleSummary> = found.into_iter().map(|b| summarize(b, now)).collect();
    out.sort_by(|a, b| a.time.cmp(&b.time).then(a.name.cmp(&b.name)));
    Ok(out)
}

fn summarize(b: BundleDir, now: DateTime<Utc>) -> BundleSummary {
    let (size, newest) = disk_usage(&b.path);
    let mut s = BundleSummary {
        name: b.name,
        path: b.path.clone(),
        namespace: b.parsed.namespace,
        context: None,
        server: None,
        time: b.parsed.timestamp,
        state: BundleState::Partial,
        stale: false,
        size,
        encrypted: false,
        components: Vec::new(),
        versions: BTreeMap::new(),
        charts: BTreeMap::new(),
        problem: None,
    };
    if b.parsed.partial {
        let newest: DateTime<Utc> = newest.map(Into::into).unwrap_or(s.time);
        s.stale = now - newest > STALE_PARTIAL_AFTER;
        s.problem = Some(if s.stale {
            "left over by a backup that did not finish; remove it when no backup is running".into()
        } else {
            "being written (or stopped less than an hour ago)".into()
        });
        return s;
    }
    match read_manifest(&b.path) {
        Ok(m) => {
            s.state = BundleState::Complete;
            s.time = m.started_at;
            s.namespace = m.namespace;
            s.context = m.context;
            s.server = m.server;
            s.encrypted = m.encryption.is_some() || m.files.iter().any(|f| f.encrypted);
            s.components = m.components;
            s.versions = m.versions;
            s.charts = m
                .releases
                .into_iter()
                .map(|r| (r.name, r.chart_version))
                .collect();
        }
        Err(e) => {
            s.state = BundleState::Incomplete;
            s.problem = Some(e.to_string());
        }
    }
    s
}

/// Total size of the files below `dir`, and the newest modification time.
fn disk_usage(dir: &Path) -> (u64, Option<SystemTime>) {
    let mut size = 0;
    let mut newest = fs::symlink_metadata(dir).and_then(|m| m.modified()).ok();
    let Ok(entries) = fs::read_dir(dir) else {
        return (0, newest);
    };
    for e in entries.flatten() {
        let Ok(meta) = e.metadata() else { continue };
        let (s, n) = if meta.is_dir() {
            disk_usage(&e.path())
        } else {
            (meta.len(), meta.modified().ok())
        };
        size += s;
        newest = newest.max(n);
    }
    (size, newest)
}
