//! What the operator typed: the one command tree shared by `kubectl-kleidia`
//! and `helm-kleidia`. Nothing here reads the environment or a file; that is
//! `target.rs`'s job.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Which plugin binary is running. The command tree is the same; only the
/// source of defaults differs (kubectl conventions vs Helm's plugin
/// environment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    Kubectl,
    Helm,
}

impl Flavor {
    pub fn binary_name(self) -> &'static str {
        match self {
            Flavor::Kubectl => "kubectl-kleidia",
            Flavor::Helm => "helm-kleidia",
        }
    }

    /// How the operator invokes the plugin, for messages.
    pub fn invocation(self) -> &'static str {
        match self {
            Flavor::Kubectl => "kubectl kleidia",
            Flavor::Helm => "helm kleidia",
        }
    }
}

/// Safe upgrades, backups and rollbacks for a Kleidia deployment.
#[derive(Debug, Parser)]
#[command(version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Flags every subcommand accepts.
#[derive(Debug, Args, Clone, Default)]
pub struct GlobalArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// Kubeconfig context to use (helm-kleidia: also $HELM_KUBECONTEXT).
    #[arg(
        long,
        visible_alias = "kube-context",
        global = true,
        value_name = "NAME"
    )]
    pub context: Option<String>,

    /// Namespace of the Kleidia releases (default: the context's namespace,
    /// then `kleidia`; helm-kleidia: $HELM_NAMESPACE first).
    #[arg(short = 'n', long, global = true, value_name = "NAME")]
    pub namespace: Option<String>,

    /// Timeout for a single request to the API server, e.g. `10s`, `1m`
    /// (`0` means no limit).
    #[arg(long, global = true, value_name = "DURATION")]
    pub request_timeout: Option<String>,

    /// Configuration file (default: <user config dir>/kleidia/config.yaml).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Release holding OpenBao (default: kleidia-platform).
    #[arg(long, global = true, value_name = "NAME")]
    pub platform_release: Option<String>,

    /// Release holding PostgreSQL (default: kleidia-data).
    #[arg(long, global = true, value_name = "NAME")]
    pub data_release: Option<String>,

    /// Release holding the backend and frontend (default: kleidia-services).
    #[arg(long, global = true, value_name = "NAME")]
    pub services_release: Option<String>,

    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,

    /// Never colour the output (NO_COLOR is honoured too).
    #[arg(long, global = true)]
    pub no_color: bool,

    /// Print what the tool discovers and does to stderr (helm-kleidia: also
    /// $HELM_DEBUG).
    #[arg(long, global = true)]
    pub debug: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Default)]
pub enum OutputFormat {
    #[default]
    Table,
    Json,
    Yaml,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check that the deployment is healthy and ready to be upgraded.
    Preflight,
    /// Back up PostgreSQL, OpenBao and the releases' values into one bundle.
    Backup(Box<crate::commands::backup::BackupArgs>),
    /// Upgrade platform, then data, then services, gated on health, with a
    /// backup first and automatic rollback.
    Upgrade(PassThroughArgs),
    /// Roll releases back to an earlier revision.
    Rollback(PassThroughArgs),
    /// Show chart, application and server versions and the compatibility
    /// matrix.
    Versions(VersionsArgs),
    /// Print a shell completion script.
    Completion(CompletionArgs),
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Command::Preflight => "preflight",
            Command::Backup(_) => "backup",
            Command::Upgrade(_) => "upgrade",
            Command::Rollback(_) => "rollback",
            Command::Versions(_) => "versions",
            Command::Completion(_) => "completion",
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

#[derive(Debug, Args, Clone)]
pub struct VersionsArgs {
    /// Overall time limit for all probes together, e.g. `30s`.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub timeout: String,

    /// Also list every revision of each release.
    #[arg(long)]
    pub history: bool,
}

#[derive(Debug, Args, Clone)]
pub struct CompletionArgs {
    /// Shell to generate the completion script for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

impl Cli {
    /// Parses `args` (including the program name) for the given flavour.
    pub fn try_parse_for(
        flavor: Flavor,
        args: impl IntoIterator<Item = std::ffi::OsString>,
    ) -> Result<Self, clap::Error> {
        use clap::FromArgMatches;
        let matches = Self::command_for(flavor).try_get_matches_from(args)?;
        Self::from_arg_matches(&matches)
    }

    /// The clap command with the binary's name, for parsing and completions.
    pub fn command_for(flavor: Flavor) -> clap::Command {
        use clap::CommandFactory;
        let cmd = Self::command()
            .name(flavor.binary_name())
            .bin_name(flavor.binary_name());
        match flavor {
            Flavor::Kubectl => cmd.display_name("kubectl kleidia"),
            Flavor::Helm => cmd.display_name("helm kleidia"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(flavor: Flavor, args: &[&str]) -> Result<Cli, clap::Error> {
        let mut all = vec![flavor.binary_name()];
        all.extend_from_slice(args);
        Cli::try_parse_for(flavor, all.into_iter().map(Into::into))
    }

    #[test]
    fn command_tree_is_consistent() {
        Cli::command_for(Flavor::Kubectl).debug_assert();
        Cli::command_for(Flavor::Helm).debug_assert();
    }

    #[test]
    fn global_flags_are_accepted_after_the_subcommand() {
        let cli = parse(
            Flavor::Kubectl,
            &[
                "versions",
                "-n",
                "prod",
                "--context",
                "c1",
                "-o",
                "json",
                "--history",
            ],
        )
        .unwrap();
        assert_eq!(cli.global.namespace.as_deref(), Some("prod"));
        assert_eq!(cli.global.context.as_deref(), Some("c1"));
        assert_eq!(cli.global.output, OutputFormat::Json);
        match cli.command {
            Command::Versions(v) => assert!(v.history),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn helm_style_kube_context_flag_is_an_alias() {
        let cli = parse(Flavor::Helm, &["--kube-context", "edge", "versions"]).unwrap();
        assert_eq!(cli.global.context.as_deref(), Some("edge"));
    }

    #[test]
    fn backup_defaults_to_create_and_takes_its_subcommands() {
        use crate::commands::backup::BackupCommand;
        let cli = parse(
            Flavor::Kubectl,
            &[
                "backup",
                "--components",
                "data",
                "--dir",
                "/b",
                "-o",
                "json",
            ],
        )
        .unwrap();
        assert_eq!(cli.global.output, OutputFormat::Json);
        let Command::Backup(args) = cli.command else {
            panic!("not backup")
        };
        match args.action() {
            BackupCommand::Create(c) => {
                assert_eq!(c.dir, PathBuf::from("/b"));
                assert_eq!(c.components.len(), 1);
            }
            other => panic!("parsed as {other:?}"),
        }
        let cli = parse(
            Flavor::Helm,
            &["backup", "verify", "/b/x", "--restore-test"],
        )
        .unwrap();
        let Command::Backup(args) = cli.command else {
            panic!("not backup")
        };
        assert!(!crate::commands::backup::needs_cluster(&args));
        assert!(matches!(args.action(), BackupCommand::Verify(v) if v.restore_test));
    }

    #[test]
    fn unknown_output_format_is_a_usage_error() {
        let err = parse(Flavor::Kubectl, &["versions", "-o", "xml"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }
}
