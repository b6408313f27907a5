//! The errors a command can end with, and their exit codes: 2 for what the
//! operator typed, 1 for everything the cluster answered badly.

use std::time::Duration;

use crate::cluster::ClusterError;
use crate::helm::release::ReleaseError;
use crate::target::TargetError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Release(#[from] ReleaseError),
    #[error(
        "namespace {namespace} (from {source_of_namespace}) has no Kleidia releases: looked for {looked_for} in {storage} labelled owner=helm. Pass the namespace with -n/--namespace, or other release names with --platform-release/--data-release/--services-release (or `releases:` in the config file)"
    )]
    NoReleases {
        namespace: String,
        source_of_namespace: String,
        looked_for: String,
        storage: String,
    },
    #[error(
        "timed out after {after:?} waiting for the Kubernetes API at {server} to {what}. Check that the cluster is reachable, or raise --timeout"
    )]
    Timeout {
        what: String,
        after: Duration,
        server: String,
    },
    #[error(
        "`{invocation} {command}` is not available in this version yet; nothing was done. Follow the runbook for this step; `{invocation} versions` is available"
    )]
    NotImplemented {
        invocation: &'static str,
        command: &'static str,
    },
    #[error(transparent)]
    Backup(#[from] crate::backup::command::BackupCommandError),
    #[error("{what}: {reason}")]
    Usage { what: String, reason: String },
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Target(e) if e.is_usage() => 2,
            Error::Usage { .. } => 2,
            Error::Backup(e) => e.exit_code(),
            _ => 1,
        }
    }
}
