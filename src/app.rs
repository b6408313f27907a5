//! The edge: parse, resolve, dispatch, and turn the outcome into an exit
//! code. Both binaries are this function with a different [`Flavor`]. It
//! knows no command's internals: commands connect to the cluster
//! themselves, through the [`Session`], when they need it.

use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::config::ConfigFile;
use crate::error::Error;
use crate::report::Messages;
use crate::target::{Environment, Flavor, Session, Settings};

/// Runs the plugin with the process's arguments and environment.
pub fn main(flavor: Flavor) -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let plain = args.iter().any(|a| a == "--no-color")
        || std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let cli = match Cli::try_parse_styled(flavor, args, !plain) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(e.exit_code().clamp(0, 255) as u8);
        }
    };
    let messages = Messages::for_stderr(cli.global.no_color, cli.global.debug);
    let command = match &cli.command {
        Command::Completion(args) => {
            return match crate::report::write_stdout(&crate::cli::completion_script(
                flavor, args.shell,
            )) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    messages.error(&format!("cannot write the completion script: {e}"));
                    ExitCode::FAILURE
                }
            };
        }
        Command::ManPages(args) => {
            return match crate::cli::write_man_pages(flavor, &args.dir) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    messages.error(&format!(
                        "cannot write the man pages into {}: {e}",
                        args.dir.display()
                    ));
                    ExitCode::FAILURE
                }
            };
        }
        Command::Run(command) => command,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            messages.error(&format!("cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let work = async {
        let session = session(flavor, &cli, Environment::capture())?;
        crate::commands::run(command, &session).await
    };
    match runtime.block_on(work) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            messages.error(&e.to_string());
            ExitCode::from(e.exit_code())
        }
    }
}

/// Resolves flags, environment and configuration file into a session.
pub fn session(flavor: Flavor, cli: &Cli, env: Environment) -> Result<Session, Error> {
    let flags = cli.global.flags();
    let (config, config_path) =
        ConfigFile::load(flags.config.as_deref()).map_err(crate::target::TargetError::from)?;
    let settings = Settings::resolve(flavor, &flags, &env, config, config_path)?;
    Ok(Session { settings })
}
