//! The errors a command can end with, and their exit codes: 2 for what the
//! operator typed, 1 for everything the cluster answered badly. Each error
//! names what was wrong, what was found, and what to run next; `app`
//! prints it once, through `report::Messages`.

use crate::backup::BackupError;
use crate::cluster::ClusterError;
use crate::helm::release::ReleaseError;
use crate::survey::SurveyFailure;
use crate::target::TargetError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Release(#[from] ReleaseError),
    #[error(transparent)]
    Survey(#[from] SurveyFailure),
    #[error(transparent)]
    Backup(#[from] BackupError),
    #[error(
        "`{invocation} {command}` is not available in this version yet; nothing was done. Follow the runbook for this step; `{invocation} versions` is available"
    )]
    NotImplemented {
        invocation: &'static str,
        command: &'static str,
    },
    #[error("{what}: {reason}")]
    Usage { what: String, reason: String },
    /// A step ran and failed (exit 1); the message says what and what next.
    #[error("{0}")]
    Failed(String),
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
