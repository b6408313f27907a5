//! The edge: parse, resolve, dispatch, and turn the outcome into an exit
//! code. Both binaries are this function with a different [`Flavor`].

use std::process::ExitCode;

use crate::cli::{Cli, Command, Flavor};
use crate::config::ConfigFile;
use crate::error::Error;
use crate::report::print_error;
use crate::target::{Environment, Settings, Target};

/// Runs the plugin with the process's arguments and environment.
pub fn main(flavor: Flavor) -> ExitCode {
    let cli = match Cli::try_parse_for(flavor, std::env::args_os()) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(e.exit_code().clamp(0, 255) as u8);
        }
    };
    if let Command::Completion(args) = &cli.command {
        let mut cmd = Cli::command_for(flavor);
        let mut script = Vec::new();
        clap_complete::generate(args.shell, &mut cmd, flavor.binary_name(), &mut script);
        return match write_stdout(&script) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                print_error(&format!("cannot write the completion script: {e}"));
                ExitCode::FAILURE
            }
        };
    }
    if matches!(
        cli.command,
        Command::Preflight | Command::Upgrade(_) | Command::Rollback(_)
    ) {
        // Say so before touching the cluster: nothing would be done anyway.
        let err = Error::NotImplemented {
            invocation: flavor.invocation(),
            command: cli.command.name(),
        };
        print_error(&err.to_string());
        return ExitCode::from(err.exit_code());
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            print_error(&format!("cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let work = async {
        match &cli.command {
            // list, verify and prune read only local files: no cluster.
            Command::Backup(args) if !crate::commands::backup::needs_cluster(args) => {
                crate::commands::backup::run_offline(args, cli.global.output).await
            }
            _ => run(flavor, &cli, Environment::capture()).await,
        }
    };
    match runtime.block_on(work) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            print_error(&e.to_string());
            ExitCode::from(e.exit_code())
        }
    }
}

/// Resolves the target and runs the command.
pub async fn run(flavor: Flavor, cli: &Cli, env: Environment) -> Result<u8, Error> {
    let (config, config_path) =
        ConfigFile::load(cli.global.config.as_deref()).map_err(crate::target::TargetError::from)?;
    let settings = Settings::resolve(flavor, &cli.global, &env, config, config_path)?;
    let target = Target::connect(settings).await?;
    crate::commands::dispatch(flavor, cli, &target).await
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
pub fn write_stdout(bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}
