//! `preflight`: the runbook's pre-upgrade checklist, automated. The checks
//! themselves are `crate::checks` (upgrade runs them too); this folder is
//! the command's flags, its run and its exit code.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args as ClapArgs;

use crate::checks::{self, Options};
use crate::error::Error;
use crate::report::{Painter, emit};
use crate::target::Session;

/// `preflight` flags.
#[derive(Debug, ClapArgs, Clone)]
pub struct Args {
    /// Folder with the charts to upgrade to (`DIR/kleidia-platform`,
    /// `DIR/kleidia-data`, `DIR/kleidia-services`); enables the checks of
    /// what the upgrade would change.
    #[arg(long, value_name = "DIR")]
    pub charts: Option<PathBuf>,
    /// Values file applied on top of each release's current values
    /// (repeatable).
    #[arg(short = 'f', long = "values", value_name = "FILE")]
    pub values: Vec<PathBuf>,
    /// Value override on top of those, as for helm (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// The newest backup bundle must be younger than this.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = crate::duration::positive_arg)]
    pub max_backup_age: Duration,
    /// Folder holding the backup bundles.
    #[arg(long, value_name = "DIR", default_value = crate::backup::DEFAULT_DIR)]
    pub backup_dir: PathBuf,
    /// Fail on warnings too (exit 1).
    #[arg(long)]
    pub strict: bool,
    /// Time limit for finding the deployment and asking its servers.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = crate::duration::positive_arg)]
    pub timeout: Duration,
}

impl Args {
    pub fn options(&self, invocation: &'static str) -> Options {
        Options {
            charts: self.charts.clone(),
            values: self.values.clone(),
            set: self.set.clone(),
            max_backup_age: self.max_backup_age,
            backup_dir: self.backup_dir.clone(),
            timeout: self.timeout,
            invocation,
            backup_follows: false,
            components: Vec::new(),
            plan: None,
        }
    }
}

/// Folders and files named on the command line exist, before anything is
/// asked of the cluster.
fn check_paths(args: &Args) -> Result<(), Error> {
    if let Some(dir) = &args.charts
        && !dir.is_dir()
    {
        return Err(Error::Usage {
            what: format!("--charts {}", dir.display()),
            reason: "is not a folder; pass the folder holding kleidia-platform, kleidia-data and kleidia-services".into(),
        });
    }
    if let Some(f) = args.values.iter().find(|f| !f.is_file()) {
        return Err(Error::Usage {
            what: format!("-f {}", f.display()),
            reason: "is not a readable file".into(),
        });
    }
    Ok(())
}

pub async fn run(session: &Session, args: &Args) -> Result<u8, Error> {
    check_paths(args)?;
    let target = session.connect().await?;
    let report = checks::run(&target, &args.options(session.settings.flavor.invocation())).await?;
    let painter = Painter {
        color: session.settings.color,
    };
    emit(session.settings.output, &report, |out| {
        checks::render(&report, painter, out)
    })?;
    Ok(report.exit_code(args.strict))
}
