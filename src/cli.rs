//! What the operator typed: the one command tree shared by `kubectl-kleidia`
//! and `helm-kleidia`. Global flags are defined here and handed on as typed
//! [`Flags`]; each command's own flags live in its folder under
//! `commands/`. Nothing here reads the environment or a file; that is
//! `target.rs`'s job.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::report::OutputFormat;
use crate::target::Flags;
pub use crate::target::Flavor;

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

    /// Time limit for a single request to the API server, e.g. `10s`, `1m`
    /// (default 30s; `0` means no limit).
    #[arg(long, global = true, value_name = "DURATION", value_parser = crate::duration::arg)]
    pub request_timeout: Option<Duration>,

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

    /// Move secrets (dumps, OpenBao data, tokens) even over a connection
    /// whose kubeconfig sets `insecure-skip-tls-verify: true`.
    #[arg(long, global = true)]
    pub insecure: bool,
}

impl GlobalArgs {
    /// The flags as typed values for target resolution.
    pub fn flags(&self) -> Flags {
        Flags {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
            namespace: self.namespace.clone(),
            request_timeout: self.request_timeout,
            config: self.config.clone(),
            platform_release: self.platform_release.clone(),
            data_release: self.data_release.clone(),
            services_release: self.services_release.clone(),
            output: self.output,
            no_color: self.no_color,
            debug: self.debug,
            insecure: self.insecure,
        }
    }
}

/// The command tree: every Kleidia command, then `completion`.
#[derive(Debug, Subcommand)]
pub enum Command {
    #[command(flatten)]
    Run(crate::commands::Command),
    /// Print a shell completion script.
    Completion(CompletionArgs),
    /// Write the manual pages (one per command) into a folder.
    #[command(hide = true)]
    ManPages(ManPagesArgs),
}

#[derive(Debug, Args, Clone)]
pub struct CompletionArgs {
    /// Shell to generate the completion script for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args, Clone)]
pub struct ManPagesArgs {
    /// Folder that receives the pages (created if missing).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
}

impl Cli {
    /// Parses `args` (including the program name) for the given flavour.
    pub fn try_parse_for(
        flavor: Flavor,
        args: impl IntoIterator<Item = std::ffi::OsString>,
    ) -> Result<Self, clap::Error> {
        Self::try_parse_styled(flavor, args, true)
    }

    /// Like [`Cli::try_parse_for`]; usage errors and help are never
    /// coloured unless `color` (clap still leaves them plain off a terminal).
    pub fn try_parse_styled(
        flavor: Flavor,
        args: impl IntoIterator<Item = std::ffi::OsString>,
        color: bool,
    ) -> Result<Self, clap::Error> {
        use clap::FromArgMatches;
        let mut cmd = Self::command_for(flavor);
        if !color {
            cmd = cmd.color(clap::ColorChoice::Never);
        }
        let matches = cmd.try_get_matches_from(args)?;
        Self::from_arg_matches(&matches)
    }

    /// The clap command with the binary's name, for parsing and completions.
    pub fn command_for(flavor: Flavor) -> clap::Command {
        use clap::CommandFactory;
        Self::command()
            .name(flavor.binary_name())
            .bin_name(flavor.binary_name())
            .display_name(flavor.invocation())
    }
}

/// The completion script for `shell`, naming the flavour's binary.
pub fn completion_script(flavor: Flavor, shell: clap_complete::Shell) -> Vec<u8> {
    let mut cmd = Cli::command_for(flavor);
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, flavor.binary_name(), &mut script);
    script
}

/// Writes one man page per visible command (`kubectl-kleidia.1`,
/// `kubectl-kleidia-backup-verify.1`, ...) into `dir`, generated from the
/// same clap definitions that parse the command line. Returns the files.
pub fn write_man_pages(flavor: Flavor, dir: &std::path::Path) -> std::io::Result<Vec<PathBuf>> {
    use clap::CommandFactory;
    std::fs::create_dir_all(dir)?;
    // No display name: clap_mangen names each page after it, and
    // "kubectl kleidia" would put a space in every file name.
    let cmd = Cli::command()
        .name(flavor.binary_name())
        .bin_name(flavor.binary_name());
    clap_mangen::generate_to(cmd, dir)?;
    let mut pages: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(flavor.binary_name()) && n.ends_with(".1"))
        })
        .collect();
    pages.sort();
    Ok(pages)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::Command as Kleidia;

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
                "--request-timeout",
                "5s",
            ],
        )
        .unwrap();
        assert_eq!(cli.global.namespace.as_deref(), Some("prod"));
        assert_eq!(cli.global.context.as_deref(), Some("c1"));
        assert_eq!(cli.global.output, OutputFormat::Json);
        assert_eq!(cli.global.request_timeout, Some(Duration::from_secs(5)));
        match cli.command {
            Command::Run(Kleidia::Versions(v)) => assert!(v.history),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn helm_style_kube_context_flag_is_an_alias() {
        let cli = parse(Flavor::Helm, &["--kube-context", "edge", "versions"]).unwrap();
        assert_eq!(cli.global.context.as_deref(), Some("edge"));
    }

    #[test]
    fn unknown_output_format_and_bad_durations_are_usage_errors() {
        let err = parse(Flavor::Kubectl, &["versions", "-o", "xml"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let err = parse(
            Flavor::Kubectl,
            &["versions", "--request-timeout", "10000000000000000000"],
        )
        .unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("longer than"), "{err}");
    }

    #[test]
    fn completion_is_part_of_the_tree() {
        let cli = parse(Flavor::Helm, &["completion", "bash"]).unwrap();
        assert!(matches!(cli.command, Command::Completion(_)));
        let script =
            String::from_utf8(completion_script(Flavor::Helm, clap_complete::Shell::Bash)).unwrap();
        assert!(script.contains("helm-kleidia"));
    }

    #[test]
    fn man_pages_cover_every_visible_command() {
        let dir = tempfile::tempdir().unwrap();
        let pages = write_man_pages(Flavor::Kubectl, dir.path()).unwrap();
        let names: Vec<String> = pages
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for page in [
            "kubectl-kleidia.1",
            "kubectl-kleidia-versions.1",
            "kubectl-kleidia-preflight.1",
            "kubectl-kleidia-backup.1",
            "kubectl-kleidia-backup-verify.1",
            "kubectl-kleidia-upgrade.1",
            "kubectl-kleidia-rollback.1",
            "kubectl-kleidia-completion.1",
        ] {
            assert!(names.iter().any(|n| n == page), "{page} missing: {names:?}");
        }
        assert!(!names.iter().any(|n| n.contains("man-pages")), "{names:?}");
        let rollback =
            std::fs::read_to_string(dir.path().join("kubectl-kleidia-rollback.1")).unwrap();
        assert!(rollback.starts_with(".ie"), "roff: {}", &rollback[..40]);
        assert!(rollback.contains("allow\\-data\\-rollback"), "{rollback}");
    }
}
