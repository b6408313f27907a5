//! `backup create`: the orchestration of one backup, independent of how the
//! cluster is reached. The cluster side implements [`BackupSources`]
//! (exec for `pg_dumpall` and the data-folder archive, a port-forward for the
//! raft snapshot, Helm release records for values); this module streams each
//! part into a [`BundleWriter`], records the manifest, and makes sure that an
//! interruption or a failure leaves no complete-looking bundle.

use std::future::Future;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use age::secrecy::SecretString;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use tokio::io::AsyncRead;

use super::crypto::Encryption;
use super::manifest::{
    Component, FileKind, Manifest, OpenBaoRecord, OpenBaoStorage, ReleaseRecord,
};
use super::signals::Signal;
use super::verify::DUMP_COMPLETE_MARKER;
use super::writer::{AddOptions, BundleWriter, WriterError};

/// A failure reported by the cluster side; its message is shown as is, so
/// it must name what failed and what to do (and hold no secret).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(pub String);

impl SourceError {
    pub fn new(message: impl Into<String>) -> Self {
        SourceError(message.into())
    }
}

/// A stream of backup data from the cluster, and how it ended.
pub struct SourceStream {
    /// The bytes (stdout of an exec with no TTY, or an HTTP body).
    pub reader: Pin<Box<dyn AsyncRead + Send>>,
    /// Resolves once the reader has ended: `Err` when the remote process
    /// failed (non-zero exit, with what it printed on stderr).
    pub finished: BoxFuture<'static, Result<(), SourceError>>,
}

impl SourceStream {
    /// A stream with nothing to check at its end (an HTTP body).
    pub fn from_reader(reader: impl AsyncRead + Send + 'static) -> Self {
        SourceStream {
            reader: Box::pin(reader),
            finished: Box::pin(async { Ok(()) }),
        }
    }

    /// A stream whose end is judged by `finished` (an exec's status).
    pub fn new(
        reader: impl AsyncRead + Send + 'static,
        finished: impl Future<Output = Result<(), SourceError>> + Send + 'static,
    ) -> Self {
        SourceStream {
            reader: Box::pin(reader),
            finished: Box::pin(finished),
        }
    }
}

/// What the cluster side knows about the deployment.
#[derive(Debug, Clone, Default)]
pub struct ClusterFacts {
    /// kubeconfig context.
    pub context: Option<String>,
    /// API server URL.
    pub server: Option<String>,
    /// Component versions (`postgres`, `openbao`, `backend`, ...), as the
    /// servers report them.
    pub versions: std::collections::BTreeMap<String, String>,
    /// Things the operator should know (a version that had to come from the
    /// chart because the server did not answer, ...); shown on stderr.
    pub warnings: Vec<String>,
}

/// One Helm release, for the `values` component.
#[derive(Debug, Clone)]
pub struct ReleaseSnapshot {
    pub record: ReleaseRecord,
    /// User-supplied values, as `helm get values` prints them (YAML).
    pub values_yaml: Vec<u8>,
}

/// Where the backup data comes from. The plugin implements this over the
/// cluster (exec, port-forward, Helm release Secrets); tests implement it
/// over local PostgreSQL and OpenBao.
pub trait BackupSources: Send {
    /// Context, server and versions, for the manifest.
    fn facts(&mut self) -> BoxFuture<'_, Result<ClusterFacts, SourceError>>;
    /// `pg_dumpall` of the data component, streamed (no TTY).
    fn postgres_dump(&mut self) -> BoxFuture<'_, Result<SourceStream, SourceError>>;
    /// The storage backend OpenBao uses.
    fn openbao_storage(&mut self) -> BoxFuture<'_, Result<OpenBaoStorage, SourceError>>;
    /// `GET /v1/sys/storage/raft/snapshot` with `token` (see
    /// [`super::openbao::raft_snapshot`] for the HTTP part over a port-forward).
    fn openbao_raft_snapshot<'a>(
        &'a mut self,
        token: &'a SecretString,
    ) -> BoxFuture<'a, Result<SourceStream, SourceError>>;
    /// A tar archive of OpenBao's data folder (file storage), through exec.
    fn openbao_data_archive(&mut self) -> BoxFuture<'_, Result<SourceStream, SourceError>>;
    /// The value of key `key` of Secret `name` (`--openbao-token-secret`).
    fn secret_value<'a>(
        &'a mut self,
        name: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<SecretString, SourceError>>;
    /// The OpenBao unseal key Secret, as JSON (`--include-unseal-key`).
    fn unseal_key_secret(&mut self) -> BoxFuture<'_, Result<Vec<u8>, SourceError>>;
    /// The releases with their values.
    fn releases(&mut self) -> BoxFuture<'_, Result<Vec<ReleaseSnapshot>, SourceError>>;
}

/// Where the OpenBao token comes from.
#[derive(Debug, Clone)]
pub enum TokenSource {
    /// Environment variables, first set one wins.
    Env(Vec<String>),
    /// Key of a Secret in the namespace.
    Secret { name: String, key: String },
}

impl Default for TokenSource {
    fn default() -> Self {
        TokenSource::Env(vec!["BAO_TOKEN".to_owned(), "VAULT_TOKEN".to_owned()])
    }
}

impl TokenSource {
    /// `NAME:KEY` of `--openbao-token-secret`, as a clap value parser.
    pub fn secret_arg(s: &str) -> Result<(String, String), String> {
        match s.split_once(':') {
            Some((n, k)) if !n.is_empty() && !k.is_empty() => Ok((n.to_owned(), k.to_owned())),
            _ => Err(format!(
                "'{s}' is not NAME:KEY (for example openbao-root:token)"
            )),
        }
    }

    /// The source the token flags name (`--openbao-token-secret` wins).
    pub fn from_flags(secret: Option<&(String, String)>, env: Option<&String>) -> Self {
        match (secret, env) {
            (Some((name, key)), _) => TokenSource::Secret {
                name: name.clone(),
                key: key.clone(),
            },
            (None, Some(var)) => TokenSource::Env(vec![var.clone()]),
            (None, None) => TokenSource::default(),
        }
    }
}

/// Everything a backup needs besides its sources.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    pub dir: PathBuf,
    pub namespace: String,
    pub components: Vec<Component>,
    pub encryption: Option<Encryption>,
    pub token: TokenSource,
    pub include_unseal_key: bool,
    /// The config file requires encryption (`backup.requireEncryption`):
    /// a bundle without it is refused before anything is read.
    pub require_encryption: bool,
    /// Show progress bars (only sensible on a terminal).
    pub progress: bool,
    pub now: DateTime<Utc>,
}

impl CreateOptions {
    /// Options for all components, unencrypted, progress on a terminal.
    pub fn new(dir: &Path, namespace: &str) -> Self {
        CreateOptions {
            dir: dir.to_owned(),
            namespace: namespace.to_owned(),
            components: Component::ALL.to_vec(),
            encryption: None,
            token: TokenSource::default(),
            include_unseal_key: false,
            require_encryption: false,
            progress: std::io::stderr().is_terminal(),
            now: Utc::now(),
        }
    }
}

/// Errors of `backup create`. None leaves a complete-looking bundle.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error(
        "--include-unseal-key needs an encrypted bundle: add --encrypt-to age1... or --passphrase-env VAR (the unseal key must never be stored in clear)"
    )]
    UnsealKeyNeedsEncryption,
    #[error(
        "refusing to write an unencrypted bundle: the config file requires encryption (backup.requireEncryption: true). Add --encrypt-to age1... (an age recipient) or --passphrase-env VAR"
    )]
    EncryptionRequired,
    #[error("no component to back up: --components takes data, platform and/or values")]
    NoComponents,
    #[error(
        "no OpenBao token: none of {vars} is set; export a token allowed to read sys/storage/raft/snapshot, or pass --openbao-token-env VAR or --openbao-token-secret NAME:KEY"
    )]
    NoToken { vars: String },
    #[error("{component} backup failed: {source}; no bundle was created")]
    Source {
        component: Component,
        source: SourceError,
    },
    #[error("{component} backup failed: {source}; no bundle was created")]
    Write {
        component: Component,
        source: WriterError,
    },
    #[error("the bundle could not be completed: {0}")]
    Finish(WriterError),
    #[error(
        "the backup was interrupted ({reason}) while working on {during}; {}",
        match leftover {
            None => "its temporary folder was removed and no bundle was created".to_owned(),
            Some(p) => format!(
                "no bundle was created, but its temporary folder {} could not be removed (it is marked INCOMPLETE): remove it by hand",
                p.display()
            ),
        }
    )]
    Interrupted {
        reason: String,
        during: String,
        /// The signal that interrupted it, if one did.
        signal: Option<Signal>,
        /// The temporary folder, when it could not be removed.
        leftover: Option<PathBuf>,
    },
}

impl CreateError {
    /// The signal that ended the backup, if one did.
    pub fn signal(&self) -> Option<Signal> {
        match self {
            CreateError::Interrupted { signal, .. } => *signal,
            _ => None,
        }
    }
}

/// What interrupted a backup: a signal (see [`super::signals::interrupted`])
/// or anything else with a reason to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interruption {
    pub reason: String,
    pub signal: Option<Signal>,
}

impl From<Signal> for Interruption {
    fn from(signal: Signal) -> Self {
        Interruption {
            reason: signal.name().to_owned(),
            signal: Some(signal),
        }
    }
}

impl From<String> for Interruption {
    fn from(reason: String) -> Self {
        Interruption {
            reason,
            signal: None,
        }
    }
}

impl From<&str> for Interruption {
    fn from(reason: &str) -> Self {
        reason.to_owned().into()
    }
}

/// A finished bundle.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedBundle {
    pub path: PathBuf,
    pub manifest: Manifest,
    /// Warnings for the operator (also printed on stderr).
    pub warnings: Vec<String>,
}

/// Refuses, before any work, a backup that `required` encryption but is
/// given neither recipients nor a passphrase variable (for the commands
/// that take a backup as one of their steps).
pub fn encryption_given(
    required: bool,
    encrypt_to: &[String],
    passphrase_env: Option<&str>,
) -> Result<(), CreateError> {
    if required && encrypt_to.is_empty() && passphrase_env.is_none() {
        return Err(CreateError::EncryptionRequired);
    }
    Ok(())
}

/// Refuses options no backup can be taken with (before the cluster is
/// asked anything): encryption the config requires or the unseal key
/// needs, at least one component.
pub fn check_options(opts: &CreateOptions) -> Result<(), CreateError> {
    if opts.require_encryption && opts.encryption.is_none() {
        return Err(CreateError::EncryptionRequired);
    }
    if opts.include_unseal_key && opts.encryption.is_none() {
        return Err(CreateError::UnsealKeyNeedsEncryption);
    }
    if opts.components.is_empty() {
        return Err(CreateError::NoComponents);
    }
    Ok(())
}

/// Runs a backup until done or until `interrupt` resolves (a signal: pass
/// [`super::signals::interrupted`]`()`), whichever comes first. On
/// interruption or failure the temporary folder is removed (or, when that
/// fails, marked `INCOMPLETE` and named in the error).
pub async fn create_bundle<F>(
    opts: &CreateOptions,
    sources: &mut dyn BackupSources,
    interrupt: F,
) -> Result<CreatedBundle, CreateError>
where
    F: Future,
    F::Output: Into<Interruption>,
{
    check_options(opts)?;
    let during = std::sync::Mutex::new("starting".to_owned());
    let partial = std::sync::Mutex::new(None);
    let mut work = Box::pin(run(opts, sources, &during, &partial));
    let interruption: Interruption = tokio::select! {
        result = &mut work => return result,
        i = interrupt => i.into(),
    };
    // Dropping the work drops the writer, which removes its folder.
    drop(work);
    let leftover = partial
        .lock()
        .ok()
        .and_then(|p| p.clone())
        .filter(|p: &PathBuf| p.exists());
    Err(CreateError::Interrupted {
        reason: interruption.reason,
        during: during.lock().map(|d| d.clone()).unwrap_or_default(),
        signal: interruption.signal,
        leftover,
    })
}

/// The warning for a bundle written without encryption: what it holds in
/// clear, and how to encrypt.
pub fn unencrypted_warning(components: &[Component]) -> String {
    let held: Vec<&str> = components
        .iter()
        .map(|c| match c {
            Component::Data => {
                "the PostgreSQL database dump (every row, with the roles' password hashes)"
            }
            Component::Platform => {
                "the OpenBao snapshot or data folder (readable by anyone holding its unseal key)"
            }
            Component::Values => {
                "the Helm values of every release (with the passwords and keys set in them)"
            }
        })
        .collect();
    format!(
        "the bundle is not encrypted: {} are stored in clear, protected only by the folder's permissions; encrypt backups with --encrypt-to age1... (an age recipient) or --passphrase-env VAR",
        held.join(", ")
    )
}

struct Bars {
    multi: MultiProgress,
    enabled: bool,
}

impl Bars {
    fn new(enabled: bool) -> Self {
        let multi = MultiProgress::with_draw_target(if enabled {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        Bars { multi, enabled }
    }

    fn bar(&self, label: &str) -> Option<ProgressBar> {
        if !self.enabled {
            return None;
        }
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {prefix:<24} {bytes:>10} {binary_bytes_per_sec:>12} {elapsed:>4}",
            )
            .expect("valid template"),
        );
        bar.set_prefix(label.to_owned());
        bar.enable_steady_tick(Duration::from_millis(120));
        Some(bar)
    }
}

async fn run(
    opts: &CreateOptions,
    sources: &mut dyn BackupSources,
    during: &std::sync::Mutex<String>,
    partial: &std::sync::Mutex<Option<PathBuf>>,
) -> Result<CreatedBundle, CreateError> {
    let set_during = |what: &str| {
        if let Ok(mut d) = during.lock() {
            *d = what.to_owned();
        }
    };
    let first = opts.components.first().copied().unwrap_or(Component::Data);
    set_during("reading cluster facts");
    let facts = sources
        .facts()
        .await
        .map_err(|source| CreateError::Source {
            component: first,
            source,
        })?;
    // Bundles are named by the second: one taken in the same second as an
    // earlier one (an upgrade right after a backup) waits for the next.
    let mut now = opts.now;
    let mut writer = loop {
        match BundleWriter::create(&opts.dir, &opts.namespace, now) {
            Err(crate::backup::writer::WriterError::AlreadyExists { .. })
                if now < opts.now + chrono::Duration::seconds(3) =>
            {
                let next = now + chrono::Duration::seconds(1);
                let wait = (next - Utc::now()).to_std().unwrap_or_default();
                tokio::time::sleep(wait).await;
                now = next.max(Utc::now());
            }
            other => break other.map_err(CreateError::Finish)?,
        }
    };
    if let Ok(mut p) = partial.lock() {
        *p = Some(writer.partial_path().to_owned());
    }
    let mut manifest = Manifest::new(&opts.namespace, now);
    manifest.context = facts.context;
    manifest.server = facts.server;
    manifest.versions = facts.versions;
    let mut warnings = facts.warnings;
    manifest.encryption = opts.encryption.as_ref().map(Encryption::record);
    let mut components = opts.components.clone();
    components.sort();
    components.dedup();
    manifest.components = components.clone();
    if opts.encryption.is_none() {
        warnings.push(unencrypted_warning(&components));
    }
    let bars = Bars::new(opts.progress);
    let enc = opts.encryption.clone();
    let suffix = if enc.is_some() { ".age" } else { "" };
    // Every part is checked while it streams (the dump by its marker),
    // so a damaged stream fails the backup instead of landing in a bundle.
    let add = |compress: bool, tail: Option<&str>, bar: Option<ProgressBar>| AddOptions {
        compress,
        encrypt: enc.clone(),
        expect_tail: tail.map(str::to_owned),
        progress: bar,
        validate: tail.is_none(),
    };

    for component in components {
        let src = |source| CreateError::Source { component, source };
        let wr = |source| CreateError::Write { component, source };
        match component {
            Component::Data => {
                let name = format!("postgres.sql.zst{suffix}");
                set_during(&name);
                let stream = sources.postgres_dump().await.map_err(src)?;
                let bar = bars.bar("postgres (pg_dumpall)");
                writer
                    .add_stream(
                        &name,
                        FileKind::PostgresDump,
                        stream.reader,
                        add(true, Some(DUMP_COMPLETE_MARKER), bar.clone()),
                    )
                    .await
                    .map_err(wr)?;
                stream.finished.await.map_err(src)?;
                finish_bar(bar);
            }
            Component::Platform => {
                set_during("openbao storage type");
                let storage = sources.openbao_storage().await.map_err(src)?;
                let (name, warning) = match storage {
                    OpenBaoStorage::Raft => {
                        let name = format!("openbao.snap{suffix}");
                        set_during("openbao token");
                        let token = resolve_token(&opts.token, sources).await?;
                        set_during(&name);
                        let stream = sources.openbao_raft_snapshot(&token).await.map_err(src)?;
                        drop(token);
                        let bar = bars.bar("openbao (raft snapshot)");
                        writer
                            .add_stream(
                                &name,
                                FileKind::OpenbaoRaftSnapshot,
                                stream.reader,
                                add(false, None, bar.clone()),
                            )
                            .await
                            .map_err(wr)?;
                        stream.finished.await.map_err(src)?;
                        finish_bar(bar);
                        (name, None)
                    }
                    OpenBaoStorage::File => {
                        let name = format!("openbao-data.tar.zst{suffix}");
                        set_during(&name);
                        let stream = sources.openbao_data_archive().await.map_err(src)?;
                        let bar = bars.bar("openbao (data folder)");
                        writer
                            .add_stream(
                                &name,
                                FileKind::OpenbaoDataArchive,
                                stream.reader,
                                add(true, None, bar.clone()),
                            )
                            .await
                            .map_err(wr)?;
                        stream.finished.await.map_err(src)?;
                        finish_bar(bar);
                        (
                            name,
                            Some(
                                "file storage: the data folder was archived while OpenBao was running; it may be inconsistent if OpenBao was writing. Prefer raft storage for consistent snapshots."
                                    .to_owned(),
                            ),
                        )
                    }
                };
                warnings.extend(warning.clone());
                let mut record = OpenBaoRecord {
                    storage,
                    file: name,
                    warning,
                    unseal_key_included: false,
                };
                if opts.include_unseal_key {
                    let name = "openbao-unseal-key.json.age";
                    set_during(name);
                    let secret = sources.unseal_key_secret().await.map_err(src)?;
                    writer
                        .add_bytes(
                            name,
                            FileKind::OpenbaoUnsealKey,
                            &secret,
                            add(false, None, None),
                        )
                        .await
                        .map_err(wr)?;
                    record.unseal_key_included = true;
                }
                manifest.openbao = Some(record);
            }
            Component::Values => {
                set_during("helm releases");
                let releases = sources.releases().await.map_err(src)?;
                for r in releases {
                    let base = format!("helm/{}", r.record.name);
                    let values = format!("{base}.values.yaml{suffix}");
                    set_during(&values);
                    writer
                        .add_bytes(
                            &values,
                            FileKind::HelmValues,
                            &r.values_yaml,
                            add(false, None, None),
                        )
                        .await
                        .map_err(wr)?;
                    let json = serde_json::to_vec_pretty(&r.record)
                        .map_err(|e| src(SourceError::new(e.to_string())))?;
                    let record = format!("{base}.json{suffix}");
                    writer
                        .add_bytes(
                            &record,
                            FileKind::HelmRelease,
                            &json,
                            add(false, None, None),
                        )
                        .await
                        .map_err(wr)?;
                    manifest.releases.push(r.record);
                }
            }
        }
    }
    set_during("manifest.json");
    let path = writer
        .finish(manifest.clone())
        .map_err(CreateError::Finish)?;
    // Re-read what was written, so the caller sees the recorded files.
    let manifest = super::verify::read_manifest(&path).unwrap_or(manifest);
    Ok(CreatedBundle {
        path,
        manifest,
        warnings,
    })
}

fn finish_bar(bar: Option<ProgressBar>) {
    if let Some(b) = bar {
        b.finish();
    }
}

async fn resolve_token(
    source: &TokenSource,
    sources: &mut dyn BackupSources,
) -> Result<SecretString, CreateError> {
    match source {
        TokenSource::Env(vars) => vars
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|t| !t.is_empty()))
            .map(SecretString::from)
            .ok_or_else(|| CreateError::NoToken {
                vars: vars.join(", "),
            }),
        TokenSource::Secret { name, key } => {
            sources
                .secret_value(name, key)
                .await
                .map_err(|source| CreateError::Source {
                    component: Component::Platform,
                    source,
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_flags_name_a_secret_or_a_variable() {
        assert_eq!(
            TokenSource::secret_arg("bao-root:token"),
            Ok(("bao-root".to_owned(), "token".to_owned()))
        );
        for bad in ["bao-root", ":token", "bao-root:"] {
            assert!(
                TokenSource::secret_arg(bad)
                    .unwrap_err()
                    .contains("NAME:KEY")
            );
        }
        let secret = ("s".to_owned(), "k".to_owned());
        let var = "MY_TOKEN".to_owned();
        assert!(matches!(
            TokenSource::from_flags(Some(&secret), Some(&var)),
            TokenSource::Secret { name, key } if name == "s" && key == "k"
        ));
        assert!(matches!(
            TokenSource::from_flags(None, Some(&var)),
            TokenSource::Env(v) if v == ["MY_TOKEN"]
        ));
        assert!(matches!(
            TokenSource::from_flags(None, None),
            TokenSource::Env(v) if v == ["BAO_TOKEN", "VAULT_TOKEN"]
        ));
    }
}
