//! One module per subcommand; each owns its command end to end and shares
//! work only through the layers below (`topology`, `cluster`, `helm`,
//! `probes`, `report`).

pub mod backup;
pub mod backup_sources;
pub mod versions;

use crate::cli::{Cli, Command, Flavor};
use crate::error::Error;
use crate::target::Target;

/// Runs a parsed command whose target is resolved. Returns the exit code.
pub async fn dispatch(flavor: Flavor, cli: &Cli, target: &Target) -> Result<u8, Error> {
    match &cli.command {
        Command::Versions(args) => versions::run(target, args).await,
        Command::Backup(args) => backup::run(target, args).await,
        Command::Preflight | Command::Upgrade(_) | Command::Rollback(_) => {
            Err(Error::NotImplemented {
                invocation: flavor.invocation(),
                command: cli.command.name(),
            })
        }
        Command::Completion(_) => unreachable!("completion needs no target and is handled by app"),
    }
}
