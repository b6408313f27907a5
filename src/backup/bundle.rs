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

/// Size limits of the small files read whole from a bundle (stored bytes,
/// or content once decrypted and decompressed).
pub mod limits {
    /// `manifest.json`.
    pub const MANIFEST: u64 = 4 << 20;
    /// `helm/<release>.values.yaml`.
    pub const VALUES: u64 = 16 << 20;
    /// `helm/<release>.json`, the unseal key Secret.
    pub const RECORD: u64 = 1 << 20;
    /// `SHA256SUMS` and `meta.json` inside a raft snapshot.
    pub const SNAPSHOT_META: u64 = 1 << 20;
}

/// Why a file of a bundle cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum BundleFileError {
    #[error("the file is missing")]
    Missing,
    #[error("the manifest names a path outside the bundle")]
    OutsideBundle,
    #[error(
        "{0} is a symbolic link; a bundle holds only plain files (the backup never writes links)"
    )]
    Symlink(String),
    #[error("{path} is a {kind}, not a plain file; a bundle holds only plain files")]
    NotPlain { path: String, kind: &'static str },
    #[error("{path} has {size} bytes, more than the {limit} bytes such a file may have")]
    TooLarge { path: String, size: u64, limit: u64 },
    #[error("{path} changed while it was opened")]
    Changed { path: String },
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// What a directory entry is, for messages.
pub fn kind_of(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_symlink() {
        "symbolic link"
    } else if t.is_dir() {
        "folder"
    } else if t.is_fifo() {
        "named pipe (FIFO)"
    } else if t.is_socket() {
        "socket"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_char_device() {
        "character device"
    } else {
        "plain file"
    }
}

/// Opens the file `rel` (`/`-separated) of `bundle` for reading, checking
/// with `symlink_metadata` first that every folder on the way is a real
/// folder and the file a plain file (a FIFO is never opened, so it cannot
/// block), at most `limit` bytes when given. The opened file is checked to
/// be the one inspected.
pub fn open_plain(
    bundle: &Path,
    rel: &str,
    limit: Option<u64>,
) -> Result<(std::fs::File, std::fs::Metadata), BundleFileError> {
    use std::os::unix::fs::MetadataExt;
    let rel_path = Path::new(rel);
    if rel.is_empty()
        || !rel_path
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
    {
        return Err(BundleFileError::OutsideBundle);
    }
    let io = |source: std::io::Error| BundleFileError::Io {
        path: rel.to_owned(),
        source,
    };
    let mut path = bundle.to_owned();
    let mut shown = String::new();
    let parts: Vec<_> = rel_path.components().collect();
    for (i, part) in parts.iter().enumerate() {
        path.push(part);
        if !shown.is_empty() {
            shown.push('/');
        }
        shown.push_str(&part.as_os_str().to_string_lossy());
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BundleFileError::Missing);
            }
            Err(e) => return Err(io(e)),
        };
        let t = meta.file_type();
        if t.is_symlink() {
            return Err(BundleFileError::Symlink(shown));
        }
        let last = i + 1 == parts.len();
        if !last && !t.is_dir() {
            return Err(BundleFileError::NotPlain {
                path: shown,
                kind: kind_of(t),
            });
        }
        if last {
            if !t.is_file() {
                return Err(BundleFileError::NotPlain {
                    path: shown,
                    kind: kind_of(t),
                });
            }
            if let Some(limit) = limit
                && meta.len() > limit
            {
                return Err(BundleFileError::TooLarge {
                    path: shown,
                    size: meta.len(),
                    limit,
                });
            }
            let file = std::fs::File::open(&path).map_err(io)?;
            let opened = file.metadata().map_err(io)?;
            if opened.dev() != meta.dev() || opened.ino() != meta.ino() || !opened.is_file() {
                return Err(BundleFileError::Changed { path: shown });
            }
            return Ok((file, opened));
        }
    }
    Err(BundleFileError::OutsideBundle)
}

/// Reads the whole small file `rel` of `bundle` (see [`open_plain`]),
/// failing when it has more than `limit` bytes.
pub fn read_plain(bundle: &Path, rel: &str, limit: u64) -> Result<Vec<u8>, BundleFileError> {
    use std::io::Read;
    let (file, meta) = open_plain(bundle, rel, Some(limit))?;
    let mut data = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1)
        .read_to_end(&mut data)
        .map_err(|source| BundleFileError::Io {
            path: rel.to_owned(),
            source,
        })?;
    if data.len() as u64 > limit {
        return Err(BundleFileError::TooLarge {
            path: rel.to_owned(),
            size: data.len() as u64,
            limit,
        });
    }
    Ok(data)
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
