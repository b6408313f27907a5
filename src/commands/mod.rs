//! One folder per subcommand: its flags, its logic and its rendering. A
//! command shares work only through the layers below (`survey`, `topology`,
//! `probes`, `cluster`, `helm`, `backup`, `compat`, `report`) and never
//! imports a sibling command.
//!
//! To add a command: a folder with `Args` and `run`, one variant here, one
//! arm in [`run`].

pub mod backup;
pub mod migrate;
pub mod preflight;
pub mod rollback;
pub mod upgrade;
pub mod versions;

use clap::{Args, Subcommand};

use crate::error::Error;
use crate::target::Session;

/// The Kleidia commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check that the deployment is healthy and ready to be upgraded.
    Preflight(preflight::Args),
    /// Back up PostgreSQL, OpenBao and the releases' values into one bundle.
    Backup(Box<backup::BackupArgs>),
    /// Upgrade platform, then data, then services, gated on health, with a
    /// backup first and automatic rollback.
    Upgrade(Box<upgrade::Args>),
    /// Roll releases back to an earlier revision.
    Rollback(Box<rollback::Args>),
    /// Show chart, application and server versions and the compatibility
    /// matrix.
    Versions(versions::Args),
    /// Show the database migrations (--status) or run them in a backend pod.
    Migrate(migrate::Args),
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Command::Preflight(_) => "preflight",
            Command::Backup(_) => "backup",
            Command::Upgrade(_) => "upgrade",
            Command::Rollback(_) => "rollback",
            Command::Versions(_) => "versions",
            Command::Migrate(_) => "migrate",
        }
    }
}

/// Arguments of commands whose options are not settled yet; accepted so the
/// command can say it is not available rather than fail to parse.
#[derive(Debug, Args, Clone, Default)]
pub struct PassThroughArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub rest: Vec<String>,
}

/// Runs a command. Commands that need the cluster connect through the
/// session; the others never read the kubeconfig. Returns the exit code.
pub async fn run(command: &Command, session: &Session) -> Result<u8, Error> {
    match command {
        Command::Versions(args) => versions::run(session, args).await,
        Command::Backup(args) => backup::run(session, args).await,
        Command::Preflight(args) => preflight::run(session, args).await,
        Command::Upgrade(args) => upgrade::run(session, args).await,
        Command::Rollback(args) => rollback::run(session, args).await,
        Command::Migrate(args) => migrate::run(session, args).await,
    }
}
