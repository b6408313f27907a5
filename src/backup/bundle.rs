//! Bundle folder names: `kleidia-<namespace>-<UTC timestamp>` when complete,
//! `.kleidia-<namespace>-<UTC timestamp>.partial` while being written.

use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDateTime, Utc};

/// Timestamp format used in bundle names (UTC, sortable, no colons).
pub const TIMESTAMP_FORMAT: &str = "%Y%m%dT%H%M%SZ";

/// Prefix of every bundle name.
pub const PREFIX: &str = "kleidia-";

/// Suffix of a bundle being written.
pub const PARTIAL_SUFFIX: &str = ".partial";

/// The final name of a bundle.
pub fn bundle_name(namespace: &str, at: DateTime<Utc>) -> String {
    format!("{PREFIX}{namespace}-{}", at.format(TIMESTAMP_FORMAT))
}

/// The temporary name of a bundle while it is written.
pub fn partial_name(namespace: &str, at: DateTime<Utc>) -> String {
    format!(".{}{PARTIAL_SUFFIX}", bundle_name(namespace, at))
}

/// What a folder name says about a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedName {
    pub namespace: String,
    pub timestamp: DateTime<Utc>,
    /// Named `.kleidia-...partial`: a run that never finished.
    pub partial: bool,
}

/// Parses a bundle folder name; `None` for anything that is not one.
pub fn parse_name(name: &str) -> Option<ParsedName> {
    let (core, partial) = match name
        .strip_prefix('.')
        .and_then(|n| n.strip_suffix(PARTIAL_SUFFIX))
    {
        Some(core) => (core, true),
        None => (name, false),
    };
    let rest = core.strip_prefix(PREFIX)?;
    let (namespace, ts) = rest.rsplit_once('-')?;
    if namespace.is_empty() {
        return None;
    }
    let naive = NaiveDateTime::parse_from_str(ts, TIMESTAMP_FORMAT).ok()?;
    Some(ParsedName {
        namespace: namespace.to_owned(),
        timestamp: naive.and_utc(),
        partial,
    })
}

/// A folder in the backup directory that is named like a bundle.
#[derive(Debug, Clone)]
pub struct BundleDir {
    pub path: PathBuf,
    pub name: String,
    pub parsed: ParsedName,
}

/// Folders in `dir` named like bundles (complete or partial), oldest first.
/// Anything else in `dir` is ignored. Symlinks are never followed.
pub fn scan(dir: &Path) -> std::io::Result<Vec<BundleDir>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if let Some(parsed) = parse_name(&name) {
            out.push(BundleDir {
                path: entry.path(),
                name,
                parsed,
            });
        }
    }
    out.sort_by(|a, b| {
        a.parsed
            .timestamp
            .cmp(&b.parsed.timestamp)
            .then(a.name.cmp(&b.name))
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn names_round_trip_with_dashed_namespaces() {
        let at = Utc.with_ymd_and_hms(2026, 11, 24, 14, 5, 9).unwrap();
        let name = bundle_name("kleidia-prod", at);
        assert_eq!(name, "kleidia-kleidia-prod-20261124T140509Z");
        let p = parse_name(&name).unwrap();
        assert_eq!(p.namespace, "kleidia-prod");
        assert_eq!(p.timestamp, at);
        assert!(!p.partial);
        let p = parse_name(&partial_name("ns", at)).unwrap();
        assert!(p.partial);
        assert_eq!(p.namespace, "ns");
    }

    #[test]
    fn other_names_are_not_bundles() {
        for n in [
            "kleidia",
            "kleidia-x",
            "notes",
            "kleidia--20261124T140509Z",
            "kleidia-a-2026",
        ] {
            assert!(parse_name(n).is_none(), "{n}");
        }
    }
}
