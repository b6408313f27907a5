//! [`BundleWriter`]: streams each part of a backup through zstd, age and
//! SHA-256 straight to disk, under a temporary folder name that becomes the
//! final name only when the manifest has been written.
//!
//! Memory stays flat: the source is read in 64 KiB chunks, at most a few
//! chunks are in flight to the (blocking) compression thread, and zstd and age
//! work on bounded windows.

use std::collections::HashSet;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component as PathComponent, Path, PathBuf};

use chrono::{DateTime, Utc};
use indicatif::ProgressBar;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

use super::bundle::{bundle_name, partial_name};
use super::crypto::Encryption;
use super::manifest::{Compression, FileEntry, FileKind, MANIFEST_FILE, Manifest};

/// Size of the chunks read from a source.
const CHUNK: usize = 128 * 1024;
/// Chunks in flight between the reader and the compression thread.
const IN_FLIGHT: usize = 4;
/// Bytes kept from the end of a stream to check its completion marker.
const TAIL: usize = 4096;
/// zstd level. Level 1 compresses SQL dumps about as well as level 3 (within
/// a few percent; sometimes better) at about twice the speed, and the backup
/// shares its CPU with the dump itself.
const ZSTD_LEVEL: i32 = 1;

/// Errors while writing a bundle. Each names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error("cannot create backup folder {path}: {source}{}", hint(source))]
    CreateDir { path: PathBuf, source: io::Error },
    #[error(
        "a bundle named {name} already exists in {dir}; wait a second and run the backup again, or pick another --dir"
    )]
    AlreadyExists { name: String, dir: PathBuf },
    #[error("'{0}' is not a valid file name inside a bundle: use a relative path without '..'")]
    BadName(String),
    #[error("{0} was already added to this bundle")]
    Duplicate(String),
    #[error("writing {path} failed: {source}{}", hint(source))]
    Write { path: PathBuf, source: io::Error },
    #[error(
        "reading the source of {name} failed after {bytes} bytes: {source}; the stream was interrupted (dropped exec or port-forward, or the process in the pod failed), run the backup again"
    )]
    Source {
        name: String,
        bytes: u64,
        source: io::Error,
    },
    #[error(
        "{name} is incomplete: its last bytes do not contain '{marker}' ({bytes} bytes received); the source stopped early, check the pod's logs and run the backup again"
    )]
    Incomplete {
        name: String,
        marker: String,
        bytes: u64,
    },
    #[error(
        "{name} arrived damaged or cut short: {reason}; check the pod and the connection, then run the backup again"
    )]
    Invalid { name: String, reason: String },
    #[error("writing {name} was interrupted before the stream ended")]
    Interrupted { name: String },
    #[error("cannot complete the bundle: renaming {from} to {to} failed: {source}")]
    Rename {
        from: PathBuf,
        to: PathBuf,
        source: io::Error,
    },
}

fn hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::StorageFull => {
            "; the disk is full: free space there or pick another --dir, then run the backup again"
        }
        io::ErrorKind::FileTooLarge => {
            "; the file size limit was reached (ulimit -f or the file system's limit): raise it or pick another --dir"
        }
        io::ErrorKind::PermissionDenied => "; check the folder's owner and permissions",
        io::ErrorKind::ReadOnlyFilesystem => "; the file system is read-only: pick another --dir",
        _ => "",
    }
}

/// Options of one file added to a bundle.
#[derive(Debug, Clone, Default)]
pub struct AddOptions {
    /// Compress with zstd (with frame checksums).
    pub compress: bool,
    /// Encrypt with age after compressing.
    pub encrypt: Option<Encryption>,
    /// A marker the last bytes of the content must contain (e.g. pg_dumpall's
    /// `-- PostgreSQL database cluster dump complete`); without it, the file
    /// is an error and the bundle cannot be completed.
    pub expect_tail: Option<String>,
    /// Advanced by the number of content bytes read.
    pub progress: Option<ProgressBar>,
    /// Check the content while it streams, as `verify` would (a raft
    /// snapshot's `SHA256SUMS`, a tar archive's structure, YAML/JSON
    /// parsing), so a damaged or cut-short stream fails the backup.
    pub validate: bool,
}

/// A bundle being written. Dropping it without [`finish`](Self::finish)
/// removes the temporary folder, so no half-written bundle ever carries a
/// complete-looking name.
#[derive(Debug)]
pub struct BundleWriter {
    dir: PathBuf,
    partial: PathBuf,
    final_path: PathBuf,
    name: String,
    entries: Vec<FileEntry>,
    names: HashSet<String>,
    done: bool,
}

enum Msg {
    Data(Vec<u8>),
    End,
}

impl BundleWriter {
    /// Starts a bundle for `namespace` at `now` in `dir` (created, 0700, if
    /// missing): an empty temporary folder `.kleidia-<ns>-<ts>.partial`.
    pub fn create(dir: &Path, namespace: &str, now: DateTime<Utc>) -> Result<Self, WriterError> {
        if !dir.exists() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| WriterError::CreateDir {
                    path: dir.to_owned(),
                    source,
                })?;
        }
        let name = bundle_name(namespace, now);
        let final_path = dir.join(&name);
        if final_path.exists() {
            return Err(WriterError::AlreadyExists {
                name,
                dir: dir.to_owned(),
            });
        }
        let partial = dir.join(partial_name(namespace, now));
        DirBuilder::new()
            .mode(0o700)
            .create(&partial)
            .map_err(|source| {
                if source.kind() == io::ErrorKind::AlreadyExists {
                    WriterError::AlreadyExists {
                        name: partial_name(namespace, now),
                        dir: dir.to_owned(),
                    }
                } else {
                    WriterError::CreateDir {
                        path: partial.clone(),
                        source,
                    }
                }
            })?;
        Ok(BundleWriter {
            dir: dir.to_owned(),
            partial,
            final_path,
            name,
            entries: Vec::new(),
            names: HashSet::new(),
            done: false,
        })
    }

    /// The temporary folder being written.
    pub fn partial_path(&self) -> &Path {
        &self.partial
    }

    /// Where the bundle will be once finished.
    pub fn final_path(&self) -> &Path {
        &self.final_path
    }

    /// The bundle's final folder name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Files added so far.
    pub fn entries(&self) -> &[FileEntry] {
        &self.entries
    }

    /// Streams `reader` into the bundle file `name` (0600): content -> zstd
    /// -> age -> SHA-256 -> disk. Returns the file's manifest entry.
    pub async fn add_stream<R: AsyncRead + Unpin>(
        &mut self,
        name: &str,
        kind: FileKind,
        mut reader: R,
        opts: AddOptions,
    ) -> Result<FileEntry, WriterError> {
        let path = self.prepare(name)?;
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|source| WriterError::Write {
                path: path.clone(),
                source,
            })?;
        self.names.insert(name.to_owned());

        let (tx, rx) = mpsc::channel::<Msg>(IN_FLIGHT);
        // Chunks come back from the compression thread to be filled again,
        // so the stream costs no allocation (or page faults) per chunk.
        let (recycle_tx, recycle) = std::sync::mpsc::channel::<Vec<u8>>();
        let job = Job {
            name: name.to_owned(),
            path: path.clone(),
            compress: opts.compress,
            encrypt: opts.encrypt.clone(),
            expect_tail: opts.expect_tail.clone(),
            validate: opts.validate.then_some(kind),
        };
        let worker = tokio::task::spawn_blocking(move || job.run(file, rx, recycle_tx));

        let mut bytes = 0u64;
        let mut read_error = None;
        let mut eof = false;
        while !eof && read_error.is_none() {
            let mut buf = recycle
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(CHUNK));
            buf.clear();
            // Fill the whole chunk before handing it over: the compression
            // thread wakes once per chunk, not once per network read.
            while buf.len() < CHUNK {
                // `read_buf` fills the spare capacity without zeroing it.
                match reader.read_buf(&mut buf).await {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => {
                        bytes += n as u64;
                        if let Some(p) = &opts.progress {
                            p.inc(n as u64);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        read_error = Some(e);
                        break;
                    }
                }
            }
            if read_error.is_none() && !buf.is_empty() && tx.send(Msg::Data(buf)).await.is_err() {
                // The writing side failed; its error is reported below.
                break;
            }
        }
        if read_error.is_none() {
            let _ = tx.send(Msg::End).await;
        }
        drop(tx);
        let written = worker.await.map_err(|e| WriterError::Write {
            path: path.clone(),
            source: io::Error::other(format!("compression thread failed: {e}")),
        });
        if let Some(source) = read_error {
            return Err(WriterError::Source {
                name: name.to_owned(),
                bytes,
                source,
            });
        }
        let written = written??;
        let encrypted = opts.encrypt.is_some();
        let entry = FileEntry {
            path: name.to_owned(),
            kind,
            size: written.size,
            sha256: written.sha256.clone(),
            compression: if opts.compress {
                Compression::Zstd
            } else {
                Compression::None
            },
            encrypted,
            content_size: (!encrypted).then_some(written.content_size),
            // Stored bytes that are the content itself need no second hash;
            // a compressed file's content is covered by zstd's frame
            // checksum, which `verify` checks, so the content is not hashed
            // again while the backup streams (that costs as much CPU as the
            // compression).
            content_sha256: (!encrypted && !opts.compress).then(|| written.sha256.clone()),
        };
        self.entries.push(entry.clone());
        Ok(entry)
    }

    /// Adds a small file from memory (values, release records).
    pub async fn add_bytes(
        &mut self,
        name: &str,
        kind: FileKind,
        bytes: &[u8],
        opts: AddOptions,
    ) -> Result<FileEntry, WriterError> {
        self.add_stream(name, kind, bytes, opts).await
    }

    /// Completes the bundle: records the files in `manifest`, writes
    /// `manifest.json` (0600), syncs everything to disk and renames the
    /// folder to its final name. Returns the final path.
    pub fn finish(mut self, mut manifest: Manifest) -> Result<PathBuf, WriterError> {
        let mut files = self.entries.clone();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        manifest.files = files;
        manifest.finished_at = Utc::now();
        let path = self.partial.join(MANIFEST_FILE);
        let werr = |path: &Path| {
            let path = path.to_owned();
            move |source| WriterError::Write { path, source }
        };
        let json = serde_json::to_vec_pretty(&manifest).map_err(|e| WriterError::Write {
            path: path.clone(),
            source: io::Error::other(e),
        })?;
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(werr(&path))?;
        f.write_all(&json).map_err(werr(&path))?;
        f.write_all(b"\n").map_err(werr(&path))?;
        f.sync_all().map_err(werr(&path))?;
        sync_tree(&self.partial).map_err(werr(&self.partial))?;
        if self.final_path.exists() {
            return Err(WriterError::AlreadyExists {
                name: self.name.clone(),
                dir: self.dir.clone(),
            });
        }
        fs::rename(&self.partial, &self.final_path).map_err(|source| WriterError::Rename {
            from: self.partial.clone(),
            to: self.final_path.clone(),
            source,
        })?;
        self.done = true;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(werr(&self.dir))?;
        Ok(self.final_path.clone())
    }

    /// Gives up on the bundle and removes its temporary folder.
    pub fn abort(mut self) -> io::Result<()> {
        self.done = true;
        remove_partial(&self.partial)
    }

    fn prepare(&mut self, name: &str) -> Result<PathBuf, WriterError> {
        let rel = Path::new(name);
        let valid = !name.is_empty()
            && name != MANIFEST_FILE
            && rel
                .components()
                .all(|c| matches!(c, PathComponent::Normal(_)));
        if !valid {
            return Err(WriterError::BadName(name.to_owned()));
        }
        if self.names.contains(name) {
            return Err(WriterError::Duplicate(name.to_owned()));
        }
        let path = self.partial.join(rel);
        if let Some(parent) = path.parent()
            && !parent.exists()
        {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|source| WriterError::CreateDir {
                    path: parent.to_owned(),
                    source,
                })?;
        }
        Ok(path)
    }
}

impl Drop for BundleWriter {
    fn drop(&mut self) {
        if !self.done {
            let _ = remove_partial(&self.partial);
        }
    }
}

/// Removes a temporary bundle folder; when that fails, leaves a note in it
/// saying it is incomplete (its name already says so).
fn remove_partial(partial: &Path) -> io::Result<()> {
    match fs::remove_dir_all(partial) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => {
            let _ = fs::write(
                partial.join("INCOMPLETE"),
                "This backup did not finish; it is not a usable bundle. Remove this folder.\n",
            );
            Err(e)
        }
    }
}

/// fsyncs every file and folder below (and including) `dir`.
fn sync_tree(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            sync_tree(&entry.path())?;
        } else {
            File::open(entry.path())?.sync_all()?;
        }
    }
    File::open(dir)?.sync_all()
}

struct Written {
    size: u64,
    sha256: String,
    content_size: u64,
}

struct Job {
    name: String,
    path: PathBuf,
    compress: bool,
    encrypt: Option<Encryption>,
    expect_tail: Option<String>,
    validate: Option<FileKind>,
}

/// Content checker running beside the writer on a copy of the stream.
struct Validator {
    tx: std::sync::mpsc::SyncSender<Vec<u8>>,
    handle: std::thread::JoinHandle<Result<Option<String>, String>>,
}

impl Validator {
    fn start(kind: FileKind) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(IN_FLIGHT);
        let handle = std::thread::spawn(move || {
            let mut reader = ChannelReader {
                rx,
                buf: Vec::new(),
                pos: 0,
            };
            let result = super::verify::check_content(kind, &mut reader);
            // Keep receiving so the writer never blocks on a finished check.
            let _ = io::copy(&mut reader, &mut io::sink());
            result
        });
        Validator { tx, handle }
    }

    fn feed(&self, buf: &[u8]) {
        // A checker that stopped early reports its result at the end.
        let _ = self.tx.send(buf.to_vec());
    }

    fn finish(self) -> Result<(), String> {
        drop(self.tx);
        match self.handle.join() {
            Ok(r) => r.map(|_| ()),
            Err(_) => Err("the content check failed unexpectedly".to_owned()),
        }
    }
}

struct ChannelReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl io::Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            match self.rx.recv() {
                Ok(b) => {
                    self.buf = b;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Job {
    fn run(
        self,
        file: File,
        mut rx: mpsc::Receiver<Msg>,
        recycle: std::sync::mpsc::Sender<Vec<u8>>,
    ) -> Result<Written, WriterError> {
        let werr = |source| WriterError::Write {
            path: self.path.clone(),
            source,
        };
        let base = HashingWriter {
            inner: BufWriter::with_capacity(256 * 1024, file),
            hasher: Sha256::new(),
            size: 0,
        };
        let mut pipe = Pipeline::new(base, self.compress, self.encrypt.as_ref()).map_err(werr)?;
        let mut content_size = 0u64;
        let mut tail: Vec<u8> = Vec::with_capacity(2 * TAIL);
        let validator = self.validate.map(Validator::start);
        loop {
            match rx.blocking_recv() {
                Some(Msg::Data(buf)) => {
                    if let Some(v) = &validator {
                        v.feed(&buf);
                    }
                    content_size += buf.len() as u64;
                    if self.expect_tail.is_some() {
                        keep_tail(&mut tail, &buf);
                    }
                    pipe.write_all(&buf).map_err(werr)?;
                    // The reader may have finished; then the chunk is dropped.
                    let _ = recycle.send(buf);
                }
                Some(Msg::End) => break,
                None => return Err(WriterError::Interrupted { name: self.name }),
            }
        }
        if let Some(marker) = &self.expect_tail
            && !contains(&tail, marker.as_bytes())
        {
            return Err(WriterError::Incomplete {
                name: self.name.clone(),
                marker: marker.clone(),
                bytes: content_size,
            });
        }
        if let Some(v) = validator
            && let Err(reason) = v.finish()
        {
            return Err(WriterError::Invalid {
                name: self.name.clone(),
                reason,
            });
        }
        let base = pipe.finish().map_err(werr)?;
        let HashingWriter {
            inner,
            hasher,
            size,
        } = base;
        let file = inner.into_inner().map_err(|e| werr(e.into_error()))?;
        file.sync_all().map_err(werr)?;
        Ok(Written {
            size,
            sha256: hex::encode(hasher.finalize()),
            content_size,
        })
    }
}

fn keep_tail(tail: &mut Vec<u8>, buf: &[u8]) {
    if buf.len() >= TAIL {
        tail.clear();
        tail.extend_from_slice(&buf[buf.len() - TAIL..]);
    } else {
        tail.extend_from_slice(buf);
        if tail.len() > TAIL {
            tail.drain(..tail.len() - TAIL);
        }
    }
}

pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Counts and hashes what is written to the file.
struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

type Sink = HashingWriter<BufWriter<File>>;

fn zstd<W: Write>(w: W) -> io::Result<zstd::Encoder<'static, W>> {
    let mut e = zstd::Encoder::new(w, ZSTD_LEVEL)?;
    e.include_checksum(true)?;
    Ok(e)
}

/// The layers between the content and the file.
enum Pipeline {
    Plain(Sink),
    Zstd(zstd::Encoder<'static, Sink>),
    Age(age::stream::StreamWriter<Sink>),
    ZstdAge(zstd::Encoder<'static, age::stream::StreamWriter<Sink>>),
}

impl Pipeline {
    fn new(sink: Sink, compress: bool, encrypt: Option<&Encryption>) -> io::Result<Self> {
        Ok(match (compress, encrypt) {
            (false, None) => Pipeline::Plain(sink),
            (true, None) => Pipeline::Zstd(zstd(sink)?),
            (false, Some(enc)) => Pipeline::Age(enc.wrap(sink)?),
            (true, Some(enc)) => Pipeline::ZstdAge(zstd(enc.wrap(sink)?)?),
        })
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Pipeline::Plain(w) => w.write_all(buf),
            Pipeline::Zstd(w) => w.write_all(buf),
            Pipeline::Age(w) => w.write_all(buf),
            Pipeline::ZstdAge(w) => w.write_all(buf),
        }
    }

    fn finish(self) -> io::Result<Sink> {
        let mut sink = match self {
            Pipeline::Plain(w) => w,
            Pipeline::Zstd(w) => w.finish()?,
            Pipeline::Age(w) => w.finish()?,
            Pipeline::ZstdAge(w) => w.finish()?.finish()?,
        };
        sink.flush()?;
        Ok(sink)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_bytes_across_chunks() {
        let mut tail = Vec::new();
        keep_tail(&mut tail, &vec![b'a'; TAIL + 10]);
        keep_tail(&mut tail, b"-- end");
        assert_eq!(tail.len(), TAIL);
        assert!(contains(&tail, b"-- end"));
    }
}
