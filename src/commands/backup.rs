//! `backup` (create, list, verify, prune). The command lives in
//! [`crate::backup::command`], beside the bundle code it drives; the CLI
//! embeds [`BackupArgs`] and calls:
//!
//! - [`run_local`] for `list`, `verify` and `prune` (no cluster needed;
//!   `run_local_blocking` outside a runtime);
//! - [`run_create`] for `create`, with the cluster's [`BackupSources`]
//!   (exec for `pg_dumpall` and the OpenBao data archive, a port-forward for
//!   the raft snapshot — see [`crate::backup::openbao::raft_snapshot`] —
//!   and the Helm release records).
//!
//! `BackupArgs::action()` says which one applies (`create` when no
//! subcommand is named).

pub use crate::backup::command::{
    BackupArgs, BackupCommand, BackupCommandError, CreateArgs, ListArgs, Outcome, OutputFormat,
    PruneArgs, VerifyArgs, create_options, run_create, run_local, run_local_blocking,
};
pub use crate::backup::create::{
    BackupSources, ClusterFacts, ReleaseSnapshot, SourceError, SourceStream,
};

use crate::cli::OutputFormat as GlobalFormat;
use crate::commands::backup_sources::ClusterSources;
use crate::error::Error;
use crate::target::Target;

/// Backup's output format for the global `-o`.
pub fn output_format(global: GlobalFormat) -> OutputFormat {
    match global {
        GlobalFormat::Table => OutputFormat::Human,
        GlobalFormat::Json => OutputFormat::Json,
        GlobalFormat::Yaml => OutputFormat::Yaml,
    }
}

/// Whether `args` needs the cluster (only `create` does).
pub fn needs_cluster(args: &BackupArgs) -> bool {
    matches!(args.action(), BackupCommand::Create(_))
}

/// `list`, `verify` and `prune`: no cluster, no kubeconfig needed.
pub async fn run_offline(args: &BackupArgs, global: GlobalFormat) -> Result<u8, Error> {
    let mut out = Vec::new();
    let outcome = run_local(&args.action(), output_format(global), &mut out).await;
    crate::app::write_stdout(&out)?;
    Ok(finish(&outcome?))
}

/// Prints an outcome's warnings and failure on stderr (the result itself is
/// on stdout, in the format asked for) and gives the exit code.
fn finish(outcome: &Outcome) -> u8 {
    for w in &outcome.warnings {
        eprintln!("warning: {w}");
    }
    if let Some(f) = &outcome.failure {
        crate::report::print_error(f);
    }
    if outcome.ok { 0 } else { 1 }
}

/// `create` against the cluster `target` points at.
pub async fn run(target: &Target, args: &BackupArgs) -> Result<u8, Error> {
    let BackupCommand::Create(create) = args.action() else {
        return run_offline(args, target.settings.output).await;
    };
    let mut sources = ClusterSources::new(target);
    let mut out = Vec::new();
    let outcome = run_create(
        &create,
        &target.namespace,
        &mut sources,
        output_format(target.settings.output),
        target.settings.flavor.invocation(),
        &mut out,
    )
    .await?;
    crate::app::write_stdout(&out)?;
    Ok(finish(&outcome))
}
