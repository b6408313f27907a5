//! `backup verify`: checks a bundle without trusting anything but its
//! manifest: stored sizes and SHA-256 of every file, then (with the key when
//! encrypted) zstd integrity, the dump's completion marker, the content
//! hash, a raft snapshot's own `SHA256SUMS`, the file-storage archive, and
//! that values and records parse. Optionally restores the dump into a
//! throwaway PostgreSQL.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek};
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::bundle::{BundleFileError, kind_of, limits, open_plain, parse_name, read_plain};
use super::crypto::Decryption;
use super::dump_check::{DumpRefusal, GuardedDump};
use super::local_postgres::PostgresBinaries;
use super::manifest::{
    Compression, FileEntry, FileKind, MANIFEST_FILE, MANIFEST_VERSION, Manifest,
};
use super::openbao::check_raft_snapshot;
use super::restore::{RestoreReport, restore_test};
use super::signals;
use super::writer::contains;

/// The line `pg_dumpall` writes last.
pub const DUMP_COMPLETE_MARKER: &str = "-- PostgreSQL database cluster dump complete";

/// Errors that prevent verifying at all (a failed check is not an error:
/// it is in the [`VerifyReport`]).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{0} is not a folder; pass a bundle folder such as backups/kleidia-<namespace>-<time>")]
    NotAFolder(PathBuf),
    #[error(
        "{0} has no manifest.json: it is not a complete bundle (an interrupted backup leaves no manifest); run 'backup list' to see complete bundles"
    )]
    NoManifest(PathBuf),
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path} is not a valid manifest: {reason}")]
    BadManifest { path: PathBuf, reason: String },
}

/// Options of a verification.
#[derive(Debug, Default)]
pub struct VerifyOptions<'a> {
    /// Keys for encrypted files; without them only checksums are checked.
    pub decryption: Option<&'a Decryption>,
    /// Restore the dump into a throwaway local PostgreSQL.
    pub restore_test: bool,
    /// PostgreSQL programs for the restore test (default: found).
    pub postgres: Option<PostgresBinaries>,
}

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Failed,
    Skipped,
}

/// One check of one file.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: Option<String>) -> Self {
        Check {
            name,
            status: Status::Ok,
            detail,
        }
    }
    fn failed(name: &'static str, detail: String) -> Self {
        Check {
            name,
            status: Status::Failed,
            detail: Some(detail),
        }
    }
    fn skipped(name: &'static str, detail: String) -> Self {
        Check {
            name,
            status: Status::Skipped,
            detail: Some(detail),
        }
    }
}

/// The checks of one file.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub path: String,
    pub kind: FileKind,
    pub checks: Vec<Check>,
}

impl FileReport {
    /// Whether no check of this file failed.
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.status != Status::Failed)
    }
}

/// Everything `verify` found.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    pub bundle: PathBuf,
    pub ok: bool,
    /// Problems of the bundle as a whole (name, stray files, ...).
    pub problems: Vec<String>,
    /// Notes that are not failures (skipped content checks, ...).
    pub notes: Vec<String>,
    pub files: Vec<FileReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore_test: Option<RestoreOutcome>,
}

impl VerifyReport {
    /// The failed checks as `file: check: detail` lines.
    pub fn failures(&self) -> Vec<String> {
        let mut out = self.problems.clone();
        for f in &self.files {
            for c in f.checks.iter().filter(|c| c.status == Status::Failed) {
                out.push(format!(
                    "{}: {}: {}",
                    f.path,
                    c.name,
                    c.detail.as_deref().unwrap_or("failed")
                ));
            }
        }
        if let Some(RestoreOutcome::Failed { error }) = &self.restore_test {
            out.push(format!("restore test: {error}"));
        }
        out
    }
}

/// Result of `--restore-test`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase", tag = "status")]
pub enum RestoreOutcome {
    Ok(RestoreReport),
    Failed { error: String },
}

/// Reads and checks a bundle's manifest.
pub fn read_manifest(bundle: &Path) -> Result<Manifest, VerifyError> {
    if !bundle.is_dir() {
        return Err(VerifyError::NotAFolder(bundle.to_owned()));
    }
    let path = bundle.join(MANIFEST_FILE);
    let data = match read_plain(bundle, MANIFEST_FILE, limits::MANIFEST) {
        Ok(d) => d,
        Err(BundleFileError::Missing) => {
            return Err(VerifyError::NoManifest(bundle.to_owned()));
        }
        Err(BundleFileError::Io { source, .. }) => {
            return Err(VerifyError::Read { path, source });
        }
        Err(e) => {
            return Err(VerifyError::BadManifest {
                path,
                reason: e.to_string(),
            });
        }
    };
    let manifest: Manifest =
        serde_json::from_slice(&data).map_err(|e| VerifyError::BadManifest {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    if manifest.manifest_version != MANIFEST_VERSION {
        return Err(VerifyError::BadManifest {
            path,
            reason: format!(
                "manifestVersion {} is not supported (this program reads {MANIFEST_VERSION}); use a newer kleidia",
                manifest.manifest_version
            ),
        });
    }
    Ok(manifest)
}

/// Verifies the bundle at `bundle`.
pub fn verify_bundle(bundle: &Path, opts: &VerifyOptions<'_>) -> Result<VerifyReport, VerifyError> {
    let manifest = read_manifest(bundle)?;
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    match bundle
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(parse_name)
    {
        Some(p) if p.partial => problems.push(
            "the folder has a temporary (.partial) name: the backup did not finish".to_owned(),
        ),
        Some(_) => {}
        None => notes.push(
            "the folder is not named kleidia-<namespace>-<time> (renamed by hand?)".to_owned(),
        ),
    }
    for (stray, kind) in stray_files(bundle, &manifest) {
        problems.push(match kind {
            "plain file" => format!("{stray} is in the folder but not in the manifest"),
            kind => format!(
                "{stray} is in the folder but not in the manifest, and is a {kind} (a bundle holds only plain files)"
            ),
        });
    }
    let mut files = Vec::new();
    for entry in &manifest.files {
        files.push(verify_file(bundle, entry, opts.decryption, &mut notes));
    }
    let unsafe_dump = files
        .iter()
        .filter(|f| f.kind == FileKind::PostgresDump)
        .flat_map(|f| &f.checks)
        .find(|c| c.name == "dump-safe" && c.status == Status::Failed)
        .map(|c| c.detail.clone().unwrap_or_default());
    let restore = opts.restore_test.then(|| match unsafe_dump {
        Some(why) => RestoreOutcome::Failed {
            error: format!("not run: the dump failed its checks ({why})"),
        },
        None => run_restore_test(bundle, &manifest, opts),
    });
    let ok = problems.is_empty()
        && files.iter().all(FileReport::ok)
        && !matches!(restore, Some(RestoreOutcome::Failed { .. }));
    Ok(VerifyReport {
        bundle: bundle.to_owned(),
        ok,
        problems,
        notes,
        files,
        restore_test: restore,
    })
}

/// Entries of the bundle the manifest does not list, with what they are.
fn stray_files(bundle: &Path, manifest: &Manifest) -> Vec<(String, &'static str)> {
    let mut found = Vec::new();
    walk(bundle, "", &mut found);
    found
        .into_iter()
        .filter(|(p, _)| p != MANIFEST_FILE && manifest.file(p).is_none())
        .collect()
}

/// Every entry below `dir` that is not a folder, with its kind; links are
/// listed, never followed.
pub(crate) fn walk(dir: &Path, prefix: &str, out: &mut Vec<(String, &'static str)>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        match e.file_type() {
            Ok(t) if t.is_dir() => walk(&e.path(), &rel, out),
            Ok(t) => out.push((rel, kind_of(t))),
            Err(_) => out.push((rel, "unreadable entry")),
        }
    }
}

/// Largest content a file of this kind may have when read whole.
fn content_limit(kind: FileKind) -> Option<u64> {
    match kind {
        FileKind::HelmValues => Some(limits::VALUES),
        FileKind::HelmRelease | FileKind::OpenbaoUnsealKey => Some(limits::RECORD),
        _ => None,
    }
}

/// Largest stored size of a file of this kind (content plus age's framing).
fn stored_limit(kind: FileKind) -> Option<u64> {
    content_limit(kind).map(|l| l + l / 64 + (1 << 20))
}

fn verify_file(
    bundle: &Path,
    entry: &FileEntry,
    decryption: Option<&Decryption>,
    notes: &mut Vec<String>,
) -> FileReport {
    let mut checks = Vec::new();
    let report = |checks| FileReport {
        path: entry.path.clone(),
        kind: entry.kind,
        checks,
    };
    // Only plain files are opened: a link could point anywhere, a FIFO
    // would block the read forever.
    let mut file = match open_plain(bundle, &entry.path, stored_limit(entry.kind)) {
        Ok((f, _)) => f,
        Err(e) => {
            let name = match e {
                BundleFileError::Missing => "exists",
                BundleFileError::OutsideBundle => "path",
                BundleFileError::TooLarge { .. } => "size",
                _ => "read",
            };
            checks.push(Check::failed(name, e.to_string()));
            return report(checks);
        }
    };
    // Pass 1: the stored bytes, checked without any key.
    match hash_reader(&mut file) {
        Err(e) => {
            checks.push(Check::failed("read", e.to_string()));
            return report(checks);
        }
        Ok((size, sha)) => {
            checks.push(if size == entry.size {
                Check::ok("size", Some(format!("{size} bytes")))
            } else {
                Check::failed(
                    "size",
                    format!("manifest says {} bytes, found {size}", entry.size),
                )
            });
            checks.push(if sha == entry.sha256 {
                Check::ok("sha256", None)
            } else {
                Check::failed(
                    "sha256",
                    format!("manifest says {}, found {sha}", entry.sha256),
                )
            });
        }
    }
    // Pass 2: the content.
    if entry.encrypted && decryption.is_none() {
        checks.push(Check::skipped(
            "content",
            "encrypted; pass --identity FILE or --passphrase-env VAR to check the content".into(),
        ));
        if !notes.iter().any(|n| n.starts_with("content of encrypted")) {
            notes.push(
                "content of encrypted files was not checked (no key given); checksums were"
                    .to_owned(),
            );
        }
        return report(checks);
    }
    if let Err(e) = file.rewind() {
        checks.push(Check::failed("read", e.to_string()));
        return report(checks);
    }
    let mut reader = match open_content(
        BufReader::with_capacity(256 * 1024, file),
        entry,
        decryption,
    ) {
        Ok(r) => r,
        Err(e) => {
            checks.push(Check::failed("decrypt", e));
            return report(checks);
        }
    };
    let mut hashing = HashingReader::new(&mut reader);
    let mut safety = None;
    let result = if entry.kind == FileKind::PostgresDump {
        let checks = check_dump(&mut hashing);
        safety = checks.safe;
        checks.complete
    } else {
        check_content(entry.kind, &mut hashing)
    };
    // Read what the check left, so the hash and the decoding cover everything.
    let drained = io::copy(&mut hashing, &mut io::sink());
    let (content_size, content_sha) = hashing.finish();
    if let Some(Err(e)) = &safety {
        checks.push(Check::failed("dump-safe", e.clone()));
    }
    match (&result, drained) {
        (Err(e), _) => checks.push(Check::failed(content_check_name(entry.kind), e.clone())),
        (Ok(_), Err(e)) => checks.push(Check::failed("decode", layer_message(&e))),
        (Ok(detail), Ok(_)) => {
            if entry.encrypted {
                checks.push(Check::ok("decrypt", None));
            }
            if entry.compression == Compression::Zstd {
                checks.push(Check::ok("zstd", None));
            }
            checks.push(Check::ok(content_check_name(entry.kind), detail.clone()));
            if let Some(Ok(detail)) = &safety {
                checks.push(Check::ok("dump-safe", Some(detail.clone())));
            }
            if let Some(want) = &entry.content_sha256 {
                checks.push(
                    if *want == content_sha && entry.content_size.is_none_or(|s| s == content_size)
                    {
                        Check::ok("content-sha256", Some(format!("{content_size} bytes")))
                    } else {
                        Check::failed(
                            "content-sha256",
                            format!("manifest says {want}, content hashes to {content_sha}"),
                        )
                    },
                );
            } else if let Some(want) = entry.content_size {
                // Compressed files: zstd's frame checksum covers the content;
                // its size is still checked against the manifest.
                checks.push(if want == content_size {
                    Check::ok("content-size", Some(format!("{content_size} bytes")))
                } else {
                    Check::failed(
                        "content-size",
                        format!("manifest says {want} bytes, content has {content_size}"),
                    )
                });
            }
        }
    }
    report(checks)
}

fn content_check_name(kind: FileKind) -> &'static str {
    match kind {
        FileKind::PostgresDump => "dump-complete",
        FileKind::OpenbaoRaftSnapshot => "snapshot-sha256sums",
        FileKind::OpenbaoDataArchive => "tar",
        FileKind::HelmValues => "yaml",
        FileKind::HelmRelease | FileKind::OpenbaoUnsealKey => "json",
        FileKind::Other => "content",
    }
}

/// Runs the content check of `kind`; `Ok` carries a short detail.
pub(crate) fn check_content(
    kind: FileKind,
    reader: &mut dyn Read,
) -> Result<Option<String>, String> {
    match kind {
        FileKind::PostgresDump => {
            let mut tail = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = reader.read(&mut buf).map_err(|e| layer_message(&e))?;
                if n == 0 {
                    break;
                }
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > 8192 {
                    tail.drain(..tail.len() - 4096);
                }
            }
            if contains(&tail, DUMP_COMPLETE_MARKER.as_bytes()) {
                Ok(Some("completion marker found".to_owned()))
            } else {
                Err(format!(
                    "the dump does not end with '{DUMP_COMPLETE_MARKER}': it was cut short"
                ))
            }
        }
        FileKind::OpenbaoRaftSnapshot => check_raft_snapshot(reader).map(|c| {
            Some(format!(
                "{} verified{}",
                c.verified.join(", "),
                c.index
                    .map(|i| format!(", raft index {i}"))
                    .unwrap_or_default()
            ))
        }),
        FileKind::OpenbaoDataArchive => {
            let mut archive = tar::Archive::new(reader);
            let mut count = 0u64;
            for entry in archive
                .entries()
                .map_err(|e| format!("not a tar archive: {e}"))?
            {
                let mut entry =
                    entry.map_err(|e| format!("damaged archive: {}", layer_message(&e)))?;
                io::copy(&mut entry, &mut io::sink())
                    .map_err(|e| format!("damaged archive: {}", layer_message(&e)))?;
                count += 1;
            }
            Ok(Some(format!("{count} entries")))
        }
        FileKind::HelmValues => {
            let text = read_small(reader, limits::VALUES)?;
            serde_yaml_ng::from_slice::<serde_yaml_ng::Value>(&text)
                .map(|_| None)
                .map_err(|e| format!("not valid YAML: {e}"))
        }
        FileKind::HelmRelease | FileKind::OpenbaoUnsealKey => {
            let text = read_small(reader, limits::RECORD)?;
            serde_json::from_slice::<serde_json::Value>(&text)
                .map(|_| None)
                .map_err(|e| format!("not valid JSON: {e}"))
        }
        FileKind::Other => io::copy(reader, &mut io::sink())
            .map(|_| None)
            .map_err(|e| layer_message(&e)),
    }
}

fn read_small(reader: &mut dyn Read, limit: u64) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    reader
        .take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| layer_message(&e))?;
    if buf.len() as u64 > limit {
        return Err(format!(
            "the content has more than {limit} bytes, the limit for such a file"
        ));
    }
    Ok(buf)
}

/// The two content checks of a dump.
struct DumpChecks {
    /// Its completion marker (`dump-complete`).
    complete: Result<Option<String>, String>,
    /// What psql would make of it (`dump-safe`, see [`super::dump_check`]);
    /// `None` when the stream itself failed, which `complete` reports.
    safe: Option<Result<String, String>>,
}

/// Runs [`DumpChecks`] over the whole dump.
fn check_dump(reader: &mut dyn Read) -> DumpChecks {
    let mut tail = TailKeeper {
        inner: reader,
        tail: Vec::new(),
    };
    let mut guard = GuardedDump::new(&mut tail, None);
    let safe = io::copy(&mut guard, &mut io::sink());
    let lines = guard.lines();
    drop(guard);
    let safe = match safe {
        Ok(_) => Some(Ok(format!(
            "{lines} lines, no psql meta-command or COPY PROGRAM/file"
        ))),
        Err(e) => DumpRefusal::from_io(&e).map(|r| {
            Err(format!(
                "{r}; do not restore this dump with psql: it was altered or does not come from pg_dumpall"
            ))
        }),
    };
    // The rest of the stream (after a refusal), for the marker.
    let rest = io::copy(&mut tail, &mut io::sink());
    let complete = match rest {
        Err(e) => Err(layer_message(&e)),
        Ok(_) if contains(&tail.tail, DUMP_COMPLETE_MARKER.as_bytes()) => {
            Ok(Some("completion marker found".to_owned()))
        }
        Ok(_) => Err(format!(
            "the dump does not end with '{DUMP_COMPLETE_MARKER}': it was cut short"
        )),
    };
    DumpChecks { complete, safe }
}

/// Keeps the last few KiB of what is read through it.
struct TailKeeper<'a> {
    inner: &'a mut dyn Read,
    tail: Vec<u8>,
}

impl Read for TailKeeper<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.tail.extend_from_slice(&buf[..n]);
        if self.tail.len() > 8192 {
            self.tail.drain(..self.tail.len() - 4096);
        }
        Ok(n)
    }
}

/// Marks which layer (age, zstd) an error came from.
#[derive(Debug)]
struct LayerError {
    layer: &'static str,
    source: io::Error,
}

impl std::fmt::Display for LayerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.layer, self.source)
    }
}

impl std::error::Error for LayerError {}

fn layer_message(e: &io::Error) -> String {
    match e.get_ref().and_then(|i| i.downcast_ref::<LayerError>()) {
        Some(l) => l.to_string(),
        None => e.to_string(),
    }
}

struct Tagged<R> {
    inner: R,
    layer: &'static str,
}

impl<R: Read> Read for Tagged<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|source| {
            if source.get_ref().is_some_and(|i| i.is::<LayerError>()) {
                source
            } else {
                io::Error::other(LayerError {
                    layer: self.layer,
                    source,
                })
            }
        })
    }
}

/// Opens the content of a stored file: age, then zstd, as recorded.
fn open_content<'a, R: Read + 'a>(
    stored: R,
    entry: &FileEntry,
    decryption: Option<&'a Decryption>,
) -> Result<Box<dyn Read + 'a>, String> {
    let plain: Box<dyn Read + 'a> = if entry.encrypted {
        let d = decryption.ok_or("encrypted, and no key given")?;
        Box::new(Tagged {
            inner: d.open(stored).map_err(|e| e.to_string())?,
            layer: "age",
        })
    } else {
        Box::new(stored)
    };
    Ok(match entry.compression {
        Compression::None => plain,
        Compression::Zstd => Box::new(Tagged {
            inner: zstd::stream::read::Decoder::new(plain).map_err(|e| format!("zstd: {e}"))?,
            layer: "zstd",
        }),
    })
}

/// Opens the content of the bundle's PostgreSQL dump (decrypted and
/// decompressed); for restoring by other means than the restore test.
pub fn open_dump<'a>(
    bundle: &Path,
    manifest: &Manifest,
    decryption: Option<&'a Decryption>,
) -> Result<Box<dyn Read + 'a>, String> {
    let entry = manifest
        .files
        .iter()
        .find(|f| f.kind == FileKind::PostgresDump)
        .ok_or("the bundle has no PostgreSQL dump (was it made without the data component?)")?;
    let (file, _) = open_plain(bundle, &entry.path, None)
        .map_err(|e| format!("cannot open {}: {e}", entry.path))?;
    open_content(
        BufReader::with_capacity(256 * 1024, file),
        entry,
        decryption,
    )
}

fn run_restore_test(
    bundle: &Path,
    manifest: &Manifest,
    opts: &VerifyOptions<'_>,
) -> RestoreOutcome {
    let mut dump = match open_dump(bundle, manifest, opts.decryption) {
        Ok(d) => d,
        Err(error) => {
            return RestoreOutcome::Failed {
                error: format!(
                    "{error}; pass --identity FILE or --passphrase-env VAR for encrypted bundles"
                ),
            };
        }
    };
    match restore_test(opts.postgres.clone(), &mut dump) {
        Ok(r) => RestoreOutcome::Ok(r),
        Err(e) => RestoreOutcome::Failed {
            error: e.to_string(),
        },
    }
}

fn hash_reader(f: &mut File) -> io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        signals::check_stop()?;
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hex::encode(hasher.finalize())))
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    size: u64,
}

impl<R: Read> HashingReader<R> {
    fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }
    fn finish(self) -> (u64, String) {
        (self.size, hex::encode(self.hasher.finalize()))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        signals::check_stop()?;
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}
