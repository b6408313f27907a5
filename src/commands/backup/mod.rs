//! `backup`: its flags, the runners of its four subcommands, and their
//! tables. The bundle work itself is the `backup` library below the
//! commands; [`sources`] connects it to the live cluster.
//!
//! ```text
//! backup [create] [--dir DIR] [--components data,platform,values]
//!        [--encrypt-to RECIPIENT ...] [--passphrase-env VAR]
//!        [--openbao-token-env VAR | --openbao-token-secret NAME:KEY]
//!        [--include-unseal-key]
//! backup list   [--dir DIR]
//! backup verify BUNDLE [--restore-test] [--identity FILE] [--passphrase-env VAR]
//! backup prune  [--dir DIR] (--keep N | --max-age DUR) [--dry-run]
//! ```
//!
//! `list`, `verify` and `prune` are local ([`run_local`]) and never read
//! the kubeconfig; `create` needs the cluster's [`BackupSources`]
//! ([`run_create`]).

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;
use clap::{Args, Subcommand};
use comfy_table::Cell;
use serde::Serialize;

pub use crate::backup::BackupError;
use crate::backup::create::{
    BackupSources, CreateOptions, CreatedBundle, TokenSource, check_options, create_bundle,
};
use crate::backup::crypto::{Decryption, Encryption};
use crate::backup::list::{BundleState, BundleSummary, list_bundles};
use crate::backup::manifest::Component;
use crate::backup::prune::{PruneReport, PruneRule, prune};
use crate::backup::signals;
use crate::backup::sources::ClusterSources;
use crate::backup::verify::{
    RestoreOutcome, Status, VerifyOptions, VerifyReport, read_manifest, verify_bundle,
};
use crate::error::Error;
pub use crate::report::OutputFormat;
use crate::report::{Mark, Messages, Painter, human_size};
use crate::survey::{Survey, SurveyOptions, Which};
use crate::target::Session;

pub use crate::backup::DEFAULT_DIR;

/// `backup`: with no subcommand, `create`.
#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BackupArgs {
    #[command(subcommand)]
    pub command: Option<BackupCommand>,
    #[command(flatten)]
    pub create: CreateArgs,
}

impl BackupArgs {
    /// The subcommand to run (`create` when none was named).
    pub fn action(&self) -> BackupCommand {
        self.command
            .clone()
            .unwrap_or_else(|| BackupCommand::Create(self.create.clone()))
    }
}

/// The `backup` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum BackupCommand {
    /// Write a backup bundle (the default).
    Create(CreateArgs),
    /// List bundles with time, size, versions, encryption and completeness.
    List(ListArgs),
    /// Check a bundle's checksums and contents; optionally restore-test it.
    Verify(VerifyArgs),
    /// Remove old bundles.
    Prune(PruneArgs),
}

/// `backup create`.
#[derive(Debug, Clone, Args)]
pub struct CreateArgs {
    /// Folder that receives the bundle (created 0700 if missing).
    #[arg(long, default_value = DEFAULT_DIR, value_name = "DIR")]
    pub dir: PathBuf,
    /// Components to back up.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "data,platform,values",
        value_name = "LIST"
    )]
    pub components: Vec<Component>,
    /// Encrypt every file with age to this X25519 recipient (age1...); repeatable.
    #[arg(long = "encrypt-to", value_name = "RECIPIENT")]
    pub encrypt_to: Vec<String>,
    /// Encrypt with the passphrase held in this environment variable.
    #[arg(long, value_name = "VAR", conflicts_with = "encrypt_to")]
    pub passphrase_env: Option<String>,
    /// Environment variable holding the OpenBao token [default: BAO_TOKEN, then VAULT_TOKEN].
    #[arg(long, value_name = "VAR")]
    pub openbao_token_env: Option<String>,
    /// Read the OpenBao token from key KEY of Secret NAME in the namespace.
    #[arg(long, value_name = "NAME:KEY", conflicts_with = "openbao_token_env", value_parser = TokenSource::secret_arg)]
    pub openbao_token_secret: Option<(String, String)>,
    /// Include OpenBao's unseal key Secret (only in an encrypted bundle).
    #[arg(long)]
    pub include_unseal_key: bool,
    /// Time limit for finding the deployment and asking its servers for
    /// their versions (the transfers themselves stop only when a stream
    /// stalls), e.g. `60s`.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = crate::duration::positive_arg)]
    pub timeout: Duration,
    /// From the config file (`backup.requireEncryption`), not a flag: an
    /// unencrypted bundle is refused.
    #[arg(skip)]
    pub require_encryption: bool,
}

fn max_age_arg(s: &str) -> Result<chrono::TimeDelta, String> {
    let d = crate::duration::positive_arg(s)?;
    chrono::TimeDelta::from_std(d).map_err(|e| e.to_string())
}

/// `backup list`.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Folder holding the bundles.
    #[arg(long, default_value = DEFAULT_DIR, value_name = "DIR")]
    pub dir: PathBuf,
}

/// `backup verify`.
#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// The bundle folder.
    pub bundle: PathBuf,
    /// Restore the dump into a throwaway local PostgreSQL and count rows.
    #[arg(long)]
    pub restore_test: bool,
    /// age identity file for bundles encrypted to a recipient.
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Environment variable holding the passphrase of a passphrase bundle.
    #[arg(long, value_name = "VAR")]
    pub passphrase_env: Option<String>,
}

/// `backup prune`.
#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("rule").required(true).multiple(true).args(["keep", "max_age"])))]
pub struct PruneArgs {
    /// Folder holding the bundles.
    #[arg(long, default_value = DEFAULT_DIR, value_name = "DIR")]
    pub dir: PathBuf,
    /// Keep the N newest complete bundles.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep: Option<u32>,
    /// Remove complete bundles older than this (30d, 12h, 2w, 1d12h).
    #[arg(long, value_name = "DUR", value_parser = max_age_arg)]
    pub max_age: Option<chrono::TimeDelta>,
    /// Only show what would be removed.
    #[arg(long)]
    pub dry_run: bool,
}

/// What a command reports: exit code 0 when `ok`, 1 otherwise (a failed
/// verification); errors are returned as `Err`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    pub ok: bool,
    /// For stderr, whatever the output format: why a verification failed
    /// and what to do (when not `ok`).
    pub failure: Option<String>,
    /// For stderr: warnings about the result (file storage consistency,
    /// versions that could not be asked from the servers, ...).
    pub warnings: Vec<String>,
}

impl Outcome {
    fn success() -> Self {
        Outcome {
            ok: true,
            ..Outcome::default()
        }
    }

    fn of_verify(report: &VerifyReport, args: &VerifyArgs) -> Self {
        Outcome {
            ok: report.ok,
            failure: (!report.ok).then(|| verify_failure(report, args)),
            warnings: Vec::new(),
        }
    }
}

/// Runs `list`, `verify` or `prune`, printing to `out`. SIGINT, SIGTERM or
/// SIGHUP during verify stops its work and the throwaway PostgreSQL before
/// returning.
pub async fn run_local(
    command: &BackupCommand,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<Outcome, BackupError> {
    run_local_with(command, format, Painter::default(), out).await
}

/// [`run_local`] with tables drawn by `painter`.
pub async fn run_local_with(
    command: &BackupCommand,
    format: OutputFormat,
    painter: Painter,
    out: &mut dyn Write,
) -> Result<Outcome, BackupError> {
    match command {
        BackupCommand::Verify(a) => {
            let args = a.clone();
            let work = tokio::task::spawn_blocking(move || verify_local(&args));
            let report = tokio::select! {
                r = work => r.map_err(|e| BackupError::Output(e.to_string()))??,
                signal = signals::interrupted() => {
                    let stopped = signals::stop_local_work();
                    return Err(BackupError::Interrupted { signal, stopped });
                }
            };
            emit(out, format, &report, |out| {
                render_verify(out, &report, painter)
            })?;
            Ok(Outcome::of_verify(&report, a))
        }
        other => run_local_blocking_with(other, format, painter, out),
    }
}

fn verify_local(a: &VerifyArgs) -> Result<VerifyReport, BackupError> {
    let decryption = Decryption::from_options(a.identity.as_deref(), a.passphrase_env.as_deref())?;
    Ok(verify_bundle(
        &a.bundle,
        &VerifyOptions {
            decryption: decryption.as_ref(),
            restore_test: a.restore_test,
            postgres: None,
        },
    )?)
}

/// [`run_local`] without a runtime (no Ctrl-C handling).
pub fn run_local_blocking(
    command: &BackupCommand,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<Outcome, BackupError> {
    run_local_blocking_with(command, format, Painter::default(), out)
}

fn run_local_blocking_with(
    command: &BackupCommand,
    format: OutputFormat,
    painter: Painter,
    out: &mut dyn Write,
) -> Result<Outcome, BackupError> {
    match command {
        BackupCommand::Create(_) => Err(BackupError::NeedsCluster),
        BackupCommand::List(a) => {
            let bundles = list_bundles(&a.dir, Utc::now())?;
            emit(out, format, &bundles, |out| {
                render_list(out, &bundles, painter)
            })?;
            Ok(Outcome::success())
        }
        BackupCommand::Verify(a) => {
            let report = verify_local(a)?;
            emit(out, format, &report, |out| {
                render_verify(out, &report, painter)
            })?;
            Ok(Outcome::of_verify(&report, a))
        }
        BackupCommand::Prune(a) => {
            let rule = PruneRule {
                keep: a.keep.map(|k| k as usize),
                max_age: a.max_age,
            };
            let report = prune(&a.dir, rule, Utc::now(), a.dry_run)?;
            emit(out, format, &report, |out| {
                render_prune(out, &report, painter)
            })?;
            Ok(Outcome::success())
        }
    }
}

/// Turns `create` arguments into options for `namespace`.
pub fn create_options(args: &CreateArgs, namespace: &str) -> Result<CreateOptions, BackupError> {
    let mut opts = CreateOptions::new(&args.dir, namespace);
    opts.components = args.components.clone();
    opts.encryption = Encryption::from_options(&args.encrypt_to, args.passphrase_env.as_deref())?;
    opts.include_unseal_key = args.include_unseal_key;
    opts.require_encryption = args.require_encryption;
    opts.token = TokenSource::from_flags(
        args.openbao_token_secret.as_ref(),
        args.openbao_token_env.as_ref(),
    );
    Ok(opts)
}

/// Runs `backup create` with the cluster's `sources`; SIGINT, SIGTERM or
/// SIGHUP interrupts it cleanly (no bundle left). `invocation` is how the
/// operator calls the plugin (`kubectl kleidia`), for the suggested next
/// command.
pub async fn run_create(
    args: &CreateArgs,
    namespace: &str,
    sources: &mut dyn BackupSources,
    format: OutputFormat,
    invocation: &str,
    out: &mut dyn Write,
) -> Result<Outcome, BackupError> {
    let opts = create_options(args, namespace)?;
    let created = create_bundle(&opts, sources, signals::interrupted()).await?;
    emit(out, format, &created, |out| {
        render_created(out, &created, invocation)
    })?;
    Ok(Outcome {
        warnings: created.warnings.clone(),
        ..Outcome::success()
    })
}

/// Why a verification failed and what to do, for stderr: every failed
/// check, then advice per kind of failure.
fn verify_failure(report: &VerifyReport, args: &VerifyArgs) -> String {
    // The same failure of several files (a wrong key) is one line.
    let mut groups: Vec<(String, Vec<&str>)> = Vec::new();
    for f in &report.files {
        for c in f.checks.iter().filter(|c| c.status == Status::Failed) {
            let what = format!("{}: {}", c.name, c.detail.as_deref().unwrap_or("failed"));
            match groups.iter_mut().find(|(w, _)| *w == what) {
                Some((_, paths)) => paths.push(&f.path),
                None => groups.push((what, vec![&f.path])),
            }
        }
    }
    let mut lines: Vec<String> = report.problems.clone();
    for (what, paths) in &groups {
        lines.push(match paths.as_slice() {
            [one] => format!("{one}: {what}"),
            many => format!("{} files: {what} ({})", many.len(), many.join(", ")),
        });
    }
    if let Some(RestoreOutcome::Failed { error }) = &report.restore_test {
        lines.push(format!("restore test: {error}"));
    }
    let mut text = format!("backup verify failed for {}:", report.bundle.display());
    for l in &lines {
        text.push_str("\n  ");
        text.push_str(l);
    }
    let failed = |names: &[&str]| {
        report
            .files
            .iter()
            .flat_map(|f| &f.checks)
            .any(|c| c.status == Status::Failed && names.contains(&c.name))
    };
    let mut advice = Vec::new();
    if failed(&["decrypt"]) {
        advice.push(decrypt_advice(report, args));
    }
    if failed(&["size", "sha256", "exists", "read", "path"]) || !report.problems.is_empty() {
        advice.push(
            "the bundle's files do not match its manifest (missing, truncated or changed after the backup): do not restore from it; pick another bundle with 'backup list' and verify that one"
                .to_owned(),
        );
    }
    if failed(&[
        "zstd",
        "decode",
        "dump-complete",
        "snapshot-sha256sums",
        "tar",
        "yaml",
        "json",
        "content-sha256",
        "content",
    ]) {
        advice.push(
            "a file's content is damaged although it may match its checksum (the backup itself was cut or corrupted): do not restore from it; take a new backup, or use an older bundle that verifies"
                .to_owned(),
        );
    }
    if let Some(RestoreOutcome::Failed { .. }) = &report.restore_test {
        advice.push(
            "the restore test failed: fix what its error above names (a missing key, missing PostgreSQL programs such as initdb, pg_ctl and psql, or a dump PostgreSQL rejects) and run verify --restore-test again".to_owned(),
        );
    }
    for a in advice {
        text.push_str("\nwhat to do: ");
        text.push_str(&a);
    }
    text
}

/// Advice for files that could not be decrypted: which key the bundle
/// needs, and which one was given.
fn decrypt_advice(report: &VerifyReport, args: &VerifyArgs) -> String {
    let encryption = read_manifest(&report.bundle)
        .ok()
        .and_then(|m| m.encryption);
    let given = Decryption::from_options(args.identity.as_deref(), args.passphrase_env.as_deref())
        .ok()
        .flatten();
    let given_recipients = given
        .as_ref()
        .map(|d| d.recipients().to_vec())
        .unwrap_or_default();
    let identity = args
        .identity
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let var = args.passphrase_env.as_deref().unwrap_or("VAR");
    match encryption {
        Some(e) if !e.recipients.is_empty() => {
            let wanted = e.recipients.join(", ");
            if args.identity.is_none() {
                format!(
                    "the bundle is encrypted to recipient {wanted}, not with a passphrase: pass the identity file that matches recipient {wanted} with --identity FILE"
                )
            } else if given_recipients.is_empty() {
                format!(
                    "the identity file {identity} does not match: pass the identity file that matches recipient {wanted} with --identity FILE ('age-keygen -y FILE' prints a key file's recipient)"
                )
            } else {
                format!(
                    "the identity file {identity} is for recipient {}, but the bundle is encrypted to {wanted}: pass the identity file that matches recipient {wanted} with --identity FILE ('age-keygen -y FILE' prints a key file's recipient)",
                    given_recipients.join(", ")
                )
            }
        }
        Some(e) if e.passphrase => {
            if args.passphrase_env.is_none() {
                "the bundle is encrypted with a passphrase, not to a recipient: export the passphrase the backup was made with and pass --passphrase-env VAR".to_owned()
            } else {
                format!(
                    "the passphrase in {var} does not open the bundle: export the passphrase the backup was made with in {var} and run verify again"
                )
            }
        }
        _ => "the files could not be decrypted with the key given: pass the identity file (--identity FILE) or passphrase (--passphrase-env VAR) the backup was encrypted with".to_owned(),
    }
}

fn emit<T: Serialize>(
    out: &mut dyn Write,
    format: OutputFormat,
    value: &T,
    table: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<(), BackupError> {
    let result = match format {
        OutputFormat::Table => table(out),
        machine => crate::report::write_machine(machine, value, out),
    };
    result.map_err(|e| BackupError::Output(e.to_string()))
}

fn render_list(out: &mut dyn Write, bundles: &[BundleSummary], p: Painter) -> io::Result<()> {
    if bundles.is_empty() {
        return writeln!(out, "no bundles");
    }
    let mut table = p.table(&[
        "BUNDLE",
        "TIME (UTC)",
        "SIZE",
        "VERSIONS",
        "ENCRYPTED",
        "STATE",
    ]);
    for b in bundles {
        let versions = versions_cell(&b.versions, &b.charts);
        let state = match (b.state, b.stale) {
            (BundleState::Complete, _) => p.marked("complete", Mark::Ok),
            (BundleState::Incomplete, _) => p.marked("INCOMPLETE", Mark::Bad),
            (BundleState::Partial, true) => p.marked("partial (stale leftover)", Mark::Warn),
            (BundleState::Partial, false) => p.marked("partial (in progress?)", Mark::Warn),
        };
        table.add_row(vec![
            Cell::new(&b.name),
            Cell::new(b.time.format("%Y-%m-%d %H:%M:%S").to_string()),
            Cell::new(human_size(b.size)),
            Cell::new(versions),
            Cell::new(if b.encrypted { "yes" } else { "no" }),
            state,
        ]);
    }
    writeln!(out, "{table}")
}

/// The VERSIONS cell of `backup list`: the chart versions (one when all
/// releases share it) and the servers' versions, two short lines. The
/// Kubernetes version and the full maps are in `-o json`.
fn versions_cell(servers: &BTreeMap<String, String>, charts: &BTreeMap<String, String>) -> String {
    let mut lines = Vec::new();
    let distinct: std::collections::BTreeSet<&String> = charts.values().collect();
    match distinct.len() {
        0 => {}
        1 => lines.push(format!("charts {}", charts.values().next().unwrap())),
        _ => lines.push(
            charts
                .iter()
                .map(|(release, v)| format!("{} {v}", release.trim_start_matches("kleidia-")))
                .collect::<Vec<_>>()
                .join(", "),
        ),
    }
    let servers: Vec<String> = ["postgres", "openbao", "backend"]
        .iter()
        .filter_map(|k| servers.get(*k).map(|v| format!("{k} {v}")))
        .collect();
    if !servers.is_empty() {
        lines.push(servers.join(", "));
    }
    lines.join("\n")
}

fn render_verify(out: &mut dyn Write, r: &VerifyReport, p: Painter) -> io::Result<()> {
    writeln!(
        out,
        "{}",
        p.title(&format!("bundle {}", r.bundle.display()))
    )?;
    let mut files = p.table(&["", "FILE", "CHECKS"]);
    for f in &r.files {
        let mark = if f.ok() { Mark::Ok } else { Mark::Bad };
        let checks = f
            .checks
            .iter()
            .map(|c| {
                let s = match c.status {
                    Status::Ok => "ok",
                    Status::Failed => "FAILED",
                    Status::Skipped => "skipped",
                };
                match (&c.detail, c.status) {
                    (Some(d), Status::Failed | Status::Skipped) => format!("{} {s} ({d})", c.name),
                    _ => format!("{} {s}", c.name),
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        files.add_row(vec![p.mark(mark), Cell::new(&f.path), Cell::new(checks)]);
    }
    for pr in &r.problems {
        files.add_row(vec![p.mark(Mark::Bad), Cell::new(pr), Cell::new("")]);
    }
    writeln!(out, "{files}")?;
    for n in &r.notes {
        writeln!(out, "note: {n}")?;
    }
    match &r.restore_test {
        None => {}
        Some(RestoreOutcome::Failed { error }) => writeln!(
            out,
            "{} {error}",
            p.paint("restore test FAILED:", Mark::Bad)
        )?,
        Some(RestoreOutcome::Ok(rep)) => {
            writeln!(
                out,
                "\n{}",
                p.title(&format!(
                    "restore test into local PostgreSQL {}: {} unexpected errors ({} expected)",
                    rep.postgres_version, rep.errors, rep.expected_errors
                ))
            )?;
            for e in &rep.error_samples {
                writeln!(out, "  {e}")?;
            }
            let mut table = p.table(&["DATABASE", "TABLE", "ROWS"]);
            for db in &rep.databases {
                if db.tables.is_empty() {
                    table.add_row(vec![
                        Cell::new(&db.name),
                        Cell::new("(no tables)"),
                        Cell::new(""),
                    ]);
                }
                for t in &db.tables {
                    table.add_row(vec![
                        Cell::new(&db.name),
                        Cell::new(format!("{}.{}", t.schema, t.table)),
                        Cell::new(t.rows),
                    ]);
                }
            }
            writeln!(out, "{table}")?;
        }
    }
    writeln!(
        out,
        "{}",
        if r.ok {
            p.paint("verify: OK", Mark::Ok)
        } else {
            p.paint("verify: FAILED", Mark::Bad)
        }
    )
}

fn render_prune(out: &mut dyn Write, r: &PruneReport, _p: Painter) -> io::Result<()> {
    r.write_human(out)
}

fn render_created(out: &mut dyn Write, c: &CreatedBundle, invocation: &str) -> io::Result<()> {
    writeln!(out, "backup written to {}", c.path.display())?;
    for f in &c.manifest.files {
        writeln!(
            out,
            "  {:<40} {:>10}  sha256 {}",
            f.path,
            human_size(f.size),
            f.sha256
        )?;
    }
    let key = match &c.manifest.encryption {
        Some(e) if !e.recipients.is_empty() => " --identity KEYFILE",
        Some(e) if e.passphrase => " --passphrase-env VAR",
        _ => "",
    };
    writeln!(
        out,
        "check it with: {invocation} backup verify {} --restore-test{key}",
        c.path.display()
    )
}

/// `backup` as the plugin runs it: `create` against the cluster, the
/// others on local files only.
pub async fn run(session: &Session, args: &BackupArgs) -> Result<u8, Error> {
    let settings = &session.settings;
    let painter = Painter {
        color: settings.color,
    };
    let mut out = Vec::new();
    let outcome = match args.action() {
        BackupCommand::Create(mut create) => {
            create.require_encryption = settings.require_encryption;
            // Options no backup can be taken with are refused before the
            // cluster is asked anything.
            check_options(&create_options(&create, "")?).map_err(BackupError::from)?;
            let target = session.connect().await?;
            target.require_verified_tls("take a backup", crate::backup::SECRETS_MOVED)?;
            let opts = SurveyOptions::within(create.timeout);
            let survey = Survey::gather(&target, opts).await?;
            // The manifest records what the servers of the components
            // backed up say they run; the others are not touched (a
            // values-only backup reads Helm's records and nothing in a pod).
            let which = servers_to_ask(&create.components);
            let answers = survey.ask_servers(&target, which, &opts).await;
            let mut sources = ClusterSources::new(&target, &survey, &answers);
            run_create(
                &create,
                &target.namespace,
                &mut sources,
                settings.output,
                settings.flavor.invocation(),
                &mut out,
            )
            .await?
        }
        other => run_local_with(&other, settings.output, painter, &mut out).await?,
    };
    crate::report::write_stdout(&out)?;
    Ok(finish(&outcome, &settings.messages))
}

/// The servers a backup of `components` asks for their versions: only
/// those whose pods it reads anyway (PostgreSQL and the backend, whose
/// migrations the dump holds, for data; OpenBao for platform).
pub fn servers_to_ask(components: &[Component]) -> Which {
    let data = components.contains(&Component::Data);
    Which {
        kubernetes: true,
        postgres: data,
        backend: data,
        openbao: components.contains(&Component::Platform),
        ..Which::NONE
    }
}

/// Prints an outcome's warnings and failure on stderr (the result itself is
/// on stdout, in the format asked for) and gives the exit code.
fn finish(outcome: &Outcome, messages: &Messages) -> u8 {
    for w in &outcome.warnings {
        messages.warning(w);
    }
    if let Some(f) = &outcome.failure {
        messages.error(f);
    }
    if outcome.ok { 0 } else { 1 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn list_versions_are_two_short_lines() {
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let servers = map(&[
            ("backend", "1.0.0"),
            ("kubernetes", "v1.33.4"),
            ("openbao", "2.7.2"),
            ("postgres", "15.18"),
        ]);
        let same = map(&[("kleidia-data", "1.0.0"), ("kleidia-platform", "1.0.0")]);
        assert_eq!(
            versions_cell(&servers, &same),
            "charts 1.0.0\npostgres 15.18, openbao 2.7.2, backend 1.0.0"
        );
        let mixed = map(&[("kleidia-data", "1.1.0"), ("kleidia-platform", "1.0.0")]);
        assert_eq!(
            versions_cell(&BTreeMap::new(), &mixed),
            "data 1.1.0, platform 1.0.0"
        );
    }

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        backup: BackupArgs,
    }

    #[test]
    fn a_values_backup_asks_no_server_in_a_pod() {
        let w = servers_to_ask(&[Component::Values]);
        assert!(w.kubernetes && !w.helm);
        assert!(!w.postgres && !w.openbao && !w.backend);
        let w = servers_to_ask(&[Component::Platform, Component::Values]);
        assert!(w.openbao && !w.postgres && !w.backend);
        let w = servers_to_ask(&Component::ALL);
        assert!(w.openbao && w.postgres && w.backend && !w.helm);
    }

    #[test]
    fn bare_backup_means_create_with_defaults() {
        let cli = Cli::try_parse_from(["backup"]).unwrap();
        let BackupCommand::Create(c) = cli.backup.action() else {
            panic!("not create")
        };
        assert_eq!(c.dir, PathBuf::from(DEFAULT_DIR));
        assert_eq!(c.components, Component::ALL.to_vec());
    }

    #[test]
    fn subcommands_parse() {
        let cli = Cli::try_parse_from(["backup", "prune", "--keep", "3", "--dry-run"]).unwrap();
        let BackupCommand::Prune(p) = cli.backup.action() else {
            panic!()
        };
        assert_eq!(p.keep, Some(3));
        assert!(Cli::try_parse_from(["backup", "prune"]).is_err());
        assert!(Cli::try_parse_from(["backup", "prune", "--keep", "0"]).is_err());
        let cli = Cli::try_parse_from([
            "backup",
            "create",
            "--components",
            "data,values",
            "--openbao-token-secret",
            "bao-root:token",
        ])
        .unwrap();
        let BackupCommand::Create(c) = cli.backup.action() else {
            panic!()
        };
        assert_eq!(c.components, vec![Component::Data, Component::Values]);
        assert_eq!(
            c.openbao_token_secret,
            Some(("bao-root".into(), "token".into()))
        );
        assert!(Cli::try_parse_from(["backup", "--components", "db"]).is_err());
    }
}
