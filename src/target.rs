//! What the typed flags mean, decided once: flags, then the plugin's
//! environment, then the configuration file, then defaults. Nothing
//! downstream reads raw arguments or environment variables.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::config::{BackendPins, ConfigError, ConfigFile, OpenbaoPins, PostgresPins};
use crate::helm::cli::HelmCli;
use crate::helm::release::StorageDriver;
use crate::report::{Messages, OutputFormat, color_allowed};

/// How long one request to the API server may take when
/// `--request-timeout` is not given: nothing waits forever.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

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

/// The global flags as typed values (the CLI parses them; nothing here
/// reads raw arguments).
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    pub namespace: Option<String>,
    /// `Some(ZERO)`: the operator asked for no limit.
    pub request_timeout: Option<Duration>,
    pub config: Option<PathBuf>,
    pub platform_release: Option<String>,
    pub data_release: Option<String>,
    pub services_release: Option<String>,
    pub output: OutputFormat,
    pub no_color: bool,
    pub debug: bool,
    /// `--insecure`: accept a kubeconfig that skips TLS verification even
    /// for commands that move secrets.
    pub insecure: bool,
}

/// The namespace used when neither a flag, the environment, the config file
/// nor the kubeconfig context names one.
pub const DEFAULT_NAMESPACE: &str = "kleidia";

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "HELM_DRIVER={0:?} is not supported: kleidia reads releases from the `secret` (default) or `configmap` storage driver. Unset HELM_DRIVER or set it to secret or configmap"
    )]
    UnsupportedDriver(String),
    #[error(
        "no kubeconfig found (looked at {looked_at}). Pass --kubeconfig, set KUBECONFIG, or create ~/.kube/config"
    )]
    NoKubeconfig { looked_at: String },
    #[error(
        "cannot load kubeconfig {path}: {message}. Check the file or pass another with --kubeconfig"
    )]
    Kubeconfig { path: String, message: String },
    #[error(
        "context {context:?} is not in the kubeconfig ({path}); it has: {available}. Pick one with --context (kubectl config get-contexts lists them)"
    )]
    UnknownContext {
        context: String,
        path: String,
        available: String,
    },
    #[error(
        "the kubeconfig ({path}) has no current context and none was given. Pass --context (available: {available})"
    )]
    NoContext { path: String, available: String },
    #[error("cannot build a Kubernetes client for context {context:?}: {message}")]
    Client { context: String, message: String },
    #[error(
        "helm kleidia cannot use helm's {flags}: it connects through a kubeconfig context only, and would otherwise reach another cluster or act as another user than you asked. Nothing was done. Put the server, credentials and CA in a kubeconfig context and pass --kube-context NAME (and --kubeconfig PATH)"
    )]
    UnsupportedHelmFlags { flags: String },
    #[error(
        "refusing to {what} over an unverified connection: the kubeconfig's cluster for context {context:?} ({server}) sets `insecure-skip-tls-verify: true`, so the API server's certificate is not checked and anyone on the network path could read {secrets}. Set the cluster's certificate-authority-data (or certificate-authority) in the kubeconfig, or pass --insecure to accept the risk"
    )]
    UnverifiedTls {
        what: String,
        secrets: String,
        context: String,
        server: String,
    },
}

impl TargetError {
    /// Whether the operator typed something wrong (exit code 2) rather than
    /// the cluster failing.
    pub fn is_usage(&self) -> bool {
        !matches!(self, TargetError::Client { .. })
    }
}

/// A snapshot of the environment variables the plugins consult, so the
/// resolution is a pure function that tests can drive.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    vars: BTreeMap<String, String>,
    pub stdout_is_tty: bool,
    pub stderr_is_tty: bool,
}

/// Helm's connection flags (and the variables Helm hands them over in)
/// that bypass the kubeconfig context: helm-kleidia refuses them rather
/// than connect somewhere else than asked.
const UNSUPPORTED_HELM_FLAGS: [(&str, &str); 7] = [
    ("HELM_KUBEAPISERVER", "--kube-apiserver"),
    ("HELM_KUBETOKEN", "--kube-token"),
    ("HELM_KUBECAFILE", "--kube-ca-file"),
    ("HELM_KUBEASUSER", "--kube-as-user"),
    ("HELM_KUBEASGROUPS", "--kube-as-group"),
    ("HELM_KUBETLS_SERVER_NAME", "--kube-tls-server-name"),
    (
        "HELM_KUBEINSECURE_SKIP_TLS_VERIFY",
        "--kube-insecure-skip-tls-verify",
    ),
];

impl Environment {
    const NAMES: [&'static str; 8] = [
        "KUBECONFIG",
        "HELM_NAMESPACE",
        "HELM_KUBECONTEXT",
        "HELM_BIN",
        "HELM_DRIVER",
        "HELM_DEBUG",
        "NO_COLOR",
        "HOME",
    ];

    pub fn capture() -> Self {
        let mut vars: BTreeMap<String, String> = Self::NAMES
            .iter()
            .filter_map(|n| std::env::var(n).ok().map(|v| (n.to_string(), v)))
            .collect();
        // Only whether Helm set them: HELM_KUBETOKEN's value is a secret and
        // is never kept.
        for (name, _) in UNSUPPORTED_HELM_FLAGS {
            let set = std::env::var(name).is_ok_and(|v| {
                !v.is_empty() && (name != "HELM_KUBEINSECURE_SKIP_TLS_VERIFY" || is_truthy(&v))
            });
            if set {
                vars.insert(name.to_string(), "set".to_string());
            }
        }
        Self {
            vars,
            stdout_is_tty: std::io::stdout().is_terminal(),
            stderr_is_tty: std::io::stderr().is_terminal(),
        }
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            stdout_is_tty: false,
            stderr_is_tty: false,
        }
    }

    /// A variable's value; empty counts as unset, as Helm treats it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// Where a namespace choice came from; shown with `--debug` and in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamespaceSource {
    Flag,
    HelmEnvironment,
    ConfigFile,
    KubeconfigContext,
    Default,
}

impl std::fmt::Display for NamespaceSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NamespaceSource::Flag => "--namespace",
            NamespaceSource::HelmEnvironment => "HELM_NAMESPACE",
            NamespaceSource::ConfigFile => "the config file",
            NamespaceSource::KubeconfigContext => "the kubeconfig context",
            NamespaceSource::Default => "the default",
        })
    }
}

/// The three releases of a Kleidia deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseNames {
    pub platform: String,
    pub data: String,
    pub services: String,
}

impl Default for ReleaseNames {
    fn default() -> Self {
        Self {
            platform: "kleidia-platform".into(),
            data: "kleidia-data".into(),
            services: "kleidia-services".into(),
        }
    }
}

/// Pins from the configuration file that win over discovery.
#[derive(Debug, Clone, Default)]
pub struct Pins {
    pub postgres: PostgresPins,
    pub openbao: OpenbaoPins,
    pub backend: BackendPins,
}

/// Everything decided without talking to the cluster.
#[derive(Debug, Clone)]
pub struct Settings {
    pub flavor: Flavor,
    /// Kubeconfig files in merge order (empty: in-cluster or none).
    pub kubeconfig_paths: Vec<PathBuf>,
    pub context: Option<String>,
    /// `None` when the namespace is to come from the kubeconfig context.
    pub namespace: Option<(String, NamespaceSource)>,
    /// `--request-timeout` as given (none when unset or `0`).
    pub request_timeout: Option<Duration>,
    /// What one request may take: the given timeout, the default when none
    /// was given, no limit for `--request-timeout 0`.
    pub request_limit: Option<Duration>,
    pub releases: ReleaseNames,
    pub pins: Pins,
    pub driver: StorageDriver,
    pub helm: HelmCli,
    pub output: OutputFormat,
    /// Colour on stdout (tables only).
    pub color: bool,
    pub debug: bool,
    /// Errors, warnings and debug lines on stderr.
    pub messages: Messages,
    pub config_path: Option<PathBuf>,
    /// `--insecure` was given (see [`Target::require_verified_tls`]).
    pub insecure: bool,
    /// `backup.requireEncryption` in the config file: every backup bundle
    /// must be encrypted.
    pub require_encryption: bool,
}

impl Settings {
    /// Resolves flags + environment + configuration file. `config` is the
    /// already-loaded file (see [`ConfigFile::load`]).
    pub fn resolve(
        flavor: Flavor,
        args: &Flags,
        env: &Environment,
        config: ConfigFile,
        config_path: Option<PathBuf>,
    ) -> Result<Self, TargetError> {
        let helm_env = flavor == Flavor::Helm;
        if helm_env {
            let given: Vec<String> = UNSUPPORTED_HELM_FLAGS
                .iter()
                .filter(|(var, _)| env.get(var).is_some())
                .map(|(var, flag)| format!("{flag} ({var})"))
                .collect();
            if !given.is_empty() {
                return Err(TargetError::UnsupportedHelmFlags {
                    flags: given.join(", "),
                });
            }
        }

        let kubeconfig_paths = match (&args.kubeconfig, env.get("KUBECONFIG")) {
            (Some(p), _) => vec![p.clone()],
            (None, Some(list)) => std::env::split_paths(list)
                .filter(|p| !p.as_os_str().is_empty())
                .collect(),
            (None, None) => env
                .get("HOME")
                .map(|h| PathBuf::from(h).join(".kube").join("config"))
                .or_else(|| dirs::home_dir().map(|h| h.join(".kube").join("config")))
                .into_iter()
                .collect(),
        };

        let context = args.context.clone().or_else(|| {
            helm_env
                .then(|| env.get("HELM_KUBECONTEXT").map(str::to_string))
                .flatten()
        });

        let namespace = if let Some(ns) = &args.namespace {
            Some((ns.clone(), NamespaceSource::Flag))
        } else if let Some(ns) = helm_env.then(|| env.get("HELM_NAMESPACE")).flatten() {
            Some((ns.to_string(), NamespaceSource::HelmEnvironment))
        } else {
            config
                .namespace
                .clone()
                .map(|ns| (ns, NamespaceSource::ConfigFile))
        };

        let request_timeout = args.request_timeout.filter(|d| !d.is_zero());
        let request_limit = match args.request_timeout {
            None => Some(DEFAULT_REQUEST_TIMEOUT),
            Some(d) if d.is_zero() => None,
            Some(d) => Some(d),
        };

        let defaults = ReleaseNames::default();
        let releases = ReleaseNames {
            platform: args
                .platform_release
                .clone()
                .or(config.releases.platform)
                .unwrap_or(defaults.platform),
            data: args
                .data_release
                .clone()
                .or(config.releases.data)
                .unwrap_or(defaults.data),
            services: args
                .services_release
                .clone()
                .or(config.releases.services)
                .unwrap_or(defaults.services),
        };

        let driver_name = helm_env
            .then(|| env.get("HELM_DRIVER").map(str::to_string))
            .flatten()
            .or(config.helm.driver);
        let driver = match driver_name.as_deref() {
            None => StorageDriver::Secret,
            Some(name) => StorageDriver::from_helm_name(name)
                .ok_or_else(|| TargetError::UnsupportedDriver(name.to_string()))?,
        };

        let debug = args.debug || (helm_env && env.get("HELM_DEBUG").is_some_and(is_truthy));

        let helm_bin = env
            .get("HELM_BIN")
            .map(PathBuf::from)
            .or(config.helm.bin)
            .or_else(|| which::which("helm").ok());

        let no_color_env = env.get("NO_COLOR").is_some();
        let color = args.output == OutputFormat::Table
            && color_allowed(env.stdout_is_tty, args.no_color, no_color_env);
        let messages = Messages {
            color: color_allowed(env.stderr_is_tty, args.no_color, no_color_env),
            debug,
        };

        Ok(Self {
            flavor,
            kubeconfig_paths,
            context,
            namespace,
            request_timeout,
            request_limit,
            releases,
            pins: Pins {
                postgres: config.postgres,
                openbao: config.openbao,
                backend: config.backend,
            },
            driver,
            helm: HelmCli::new(helm_bin),
            output: args.output,
            color,
            debug,
            messages,
            config_path,
            insecure: args.insecure,
            require_encryption: config.backup.require_encryption,
        })
    }
}

fn is_truthy(v: &str) -> bool {
    !matches!(
        v.to_ascii_lowercase().as_str(),
        "0" | "false" | "no" | "off"
    )
}

/// What a command starts from: the resolved settings. Commands that need
/// the cluster connect through it; the others never read the kubeconfig.
#[derive(Debug, Clone)]
pub struct Session {
    pub settings: Settings,
}

impl Session {
    /// Loads the kubeconfig and builds the client (no request yet).
    pub async fn connect(&self) -> Result<Target, TargetError> {
        Target::connect(self.settings.clone()).await
    }
}

/// The resolved target: settings plus a connected client and the final
/// namespace.
#[derive(Clone)]
pub struct Target {
    pub settings: Settings,
    pub client: kube::Client,
    pub namespace: String,
    pub namespace_source: NamespaceSource,
    /// The API server's address, for messages.
    pub server: String,
    /// The kubeconfig context in use (empty for in-cluster).
    pub context: String,
    /// The kubeconfig sets `insecure-skip-tls-verify: true` for this
    /// cluster: the API server's certificate is not checked.
    pub skips_tls_verify: bool,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("server", &self.server)
            .field("context", &self.context)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl Target {
    /// Loads the kubeconfig, checks the context and builds a client. Does not
    /// contact the API server yet.
    pub async fn connect(settings: Settings) -> Result<Self, TargetError> {
        let (kubeconfig, shown_path) = load_kubeconfig(&settings.kubeconfig_paths)?;
        let available = || {
            let names: Vec<_> = kubeconfig.contexts.iter().map(|c| c.name.clone()).collect();
            if names.is_empty() {
                "no contexts".to_string()
            } else {
                names.join(", ")
            }
        };
        let context = match &settings.context {
            Some(c) => {
                if !kubeconfig.contexts.iter().any(|nc| &nc.name == c) {
                    return Err(TargetError::UnknownContext {
                        context: c.clone(),
                        path: shown_path,
                        available: available(),
                    });
                }
                c.clone()
            }
            None => match &kubeconfig.current_context {
                Some(c) if !c.is_empty() => c.clone(),
                _ => {
                    return Err(TargetError::NoContext {
                        path: shown_path,
                        available: available(),
                    });
                }
            },
        };
        let context_namespace = kubeconfig
            .contexts
            .iter()
            .find(|nc| nc.name == context)
            .and_then(|nc| nc.context.as_ref())
            .and_then(|c| c.namespace.clone())
            .filter(|ns| !ns.is_empty());

        let options = KubeConfigOptions {
            context: Some(context.clone()),
            ..Default::default()
        };
        let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(|e| TargetError::Kubeconfig {
                path: shown_path.clone(),
                message: e.to_string(),
            })?;
        // kube-rs retries every 429/503/504 up to 15 times with backoff
        // (minutes in all). A 503 is often an answer, not a passing state:
        // the service proxy answers it at once for a Service without ready
        // pods. Like kubectl, take the answer and let the caller say what
        // it means instead of waiting on it.
        config.default_retry = false;
        if let Some(t) = settings.request_limit {
            config.connect_timeout = Some(t);
        }
        let server = config.cluster_url.to_string();
        let server = server.trim_end_matches('/').to_string();
        let skips_tls_verify = config.accept_invalid_certs;
        let client =
            crate::cluster::client::build(config, settings.request_limit).map_err(|e| {
                TargetError::Client {
                    context: context.clone(),
                    message: e.to_string(),
                }
            })?;

        let (namespace, namespace_source) = match &settings.namespace {
            Some((ns, src)) => (ns.clone(), *src),
            None => match context_namespace {
                Some(ns) => (ns, NamespaceSource::KubeconfigContext),
                None => (DEFAULT_NAMESPACE.to_string(), NamespaceSource::Default),
            },
        };

        Ok(Self {
            settings,
            client,
            namespace,
            namespace_source,
            server,
            context,
            skips_tls_verify,
        })
    }

    /// Refuses a command that moves secrets (`what`: "take a backup",
    /// carrying `secrets`) over a connection whose certificate is not
    /// checked, unless `--insecure` was given; then warns once.
    pub fn require_verified_tls(&self, what: &str, secrets: &str) -> Result<(), TargetError> {
        if !self.skips_tls_verify {
            return Ok(());
        }
        if !self.settings.insecure {
            return Err(TargetError::UnverifiedTls {
                what: what.to_owned(),
                secrets: secrets.to_owned(),
                context: self.context.clone(),
                server: self.server.clone(),
            });
        }
        self.settings.messages.warning(&format!(
            "--insecure: the kubeconfig's cluster for context {:?} ({}) skips TLS verification; {secrets} cross a connection whose server is not authenticated",
            self.context, self.server
        ));
        Ok(())
    }

    /// Identifies the API endpoint for error messages.
    pub fn api(&self) -> crate::cluster::ApiEndpoint {
        crate::cluster::ApiEndpoint {
            server: self.server.clone(),
            context: self.context.clone(),
        }
    }
}

fn load_kubeconfig(paths: &[PathBuf]) -> Result<(Kubeconfig, String), TargetError> {
    let shown = paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let existing: Vec<_> = paths.iter().filter(|p| p.exists()).collect();
    if existing.is_empty() {
        return Err(TargetError::NoKubeconfig {
            looked_at: if shown.is_empty() {
                "nothing: HOME is not set".into()
            } else {
                shown
            },
        });
    }
    let mut merged: Option<Kubeconfig> = None;
    for path in existing {
        let next = Kubeconfig::read_from(path).map_err(|e| TargetError::Kubeconfig {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        merged = Some(match merged {
            None => next,
            Some(m) => m.merge(next).map_err(|e| TargetError::Kubeconfig {
                path: path.display().to_string(),
                message: e.to_string(),
            })?,
        });
    }
    Ok((merged.expect("at least one kubeconfig was read"), shown))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> Flags {
        Flags::default()
    }

    fn resolve(flavor: Flavor, a: &Flags, env: &[(&str, &str)]) -> Settings {
        Settings::resolve(
            flavor,
            a,
            &Environment::from_pairs(env.iter().copied()),
            ConfigFile::default(),
            None,
        )
        .unwrap()
    }

    #[test]
    fn helm_environment_applies_only_to_helm_kleidia() {
        let env = [
            ("HELM_NAMESPACE", "from-helm"),
            ("HELM_KUBECONTEXT", "helm-ctx"),
            ("HELM_DRIVER", "configmap"),
            ("HELM_DEBUG", "true"),
        ];
        let h = resolve(Flavor::Helm, &args(), &env);
        assert_eq!(
            h.namespace,
            Some(("from-helm".into(), NamespaceSource::HelmEnvironment))
        );
        assert_eq!(h.context.as_deref(), Some("helm-ctx"));
        assert_eq!(h.driver, StorageDriver::ConfigMap);
        assert!(h.debug);

        let k = resolve(Flavor::Kubectl, &args(), &env);
        assert_eq!(k.namespace, None);
        assert_eq!(k.context, None);
        assert_eq!(k.driver, StorageDriver::Secret);
        assert!(!k.debug);
    }

    #[test]
    fn helm_connection_flags_that_bypass_the_context_are_refused() {
        let env = Environment::from_pairs([
            ("HELM_KUBETOKEN", "set"),
            ("HELM_KUBEAPISERVER", "https://elsewhere:6443"),
            ("HELM_KUBEASGROUPS", ""),
        ]);
        let err = Settings::resolve(Flavor::Helm, &args(), &env, ConfigFile::default(), None)
            .unwrap_err();
        assert!(err.is_usage());
        let msg = err.to_string();
        assert!(
            msg.contains("--kube-apiserver (HELM_KUBEAPISERVER), --kube-token (HELM_KUBETOKEN)"),
            "{msg}"
        );
        assert!(!msg.contains("kube-as-group"), "{msg}");
        // kubectl-kleidia is not run by helm: these are not its settings.
        assert!(
            Settings::resolve(Flavor::Kubectl, &args(), &env, ConfigFile::default(), None).is_ok()
        );
    }

    #[test]
    fn flags_win_over_environment_and_config() {
        let mut a = args();
        a.namespace = Some("flag-ns".into());
        a.context = Some("flag-ctx".into());
        a.data_release = Some("db".into());
        let config = ConfigFile::parse(
            "namespace: cfg-ns\nreleases: { data: cfg-db, services: cfg-svc }",
            std::path::Path::new("c"),
        )
        .unwrap();
        let s = Settings::resolve(
            Flavor::Helm,
            &a,
            &Environment::from_pairs([("HELM_NAMESPACE", "env-ns"), ("HELM_KUBECONTEXT", "env")]),
            config,
            None,
        )
        .unwrap();
        assert_eq!(s.namespace, Some(("flag-ns".into(), NamespaceSource::Flag)));
        assert_eq!(s.context.as_deref(), Some("flag-ctx"));
        assert_eq!(s.releases.data, "db");
        assert_eq!(s.releases.services, "cfg-svc");
        assert_eq!(s.releases.platform, "kleidia-platform");
    }

    #[test]
    fn config_namespace_applies_when_nothing_else_names_one() {
        let config = ConfigFile::parse("namespace: cfg-ns", std::path::Path::new("c")).unwrap();
        let s = Settings::resolve(
            Flavor::Kubectl,
            &args(),
            &Environment::default(),
            config,
            None,
        )
        .unwrap();
        assert_eq!(
            s.namespace,
            Some(("cfg-ns".into(), NamespaceSource::ConfigFile))
        );
    }

    #[test]
    fn kubeconfig_flag_wins_over_the_variable_which_may_list_several_files() {
        let s = resolve(Flavor::Kubectl, &args(), &[("KUBECONFIG", "/a:/b")]);
        assert_eq!(
            s.kubeconfig_paths,
            vec![PathBuf::from("/a"), PathBuf::from("/b")]
        );
        let mut a = args();
        a.kubeconfig = Some("/c".into());
        let s = resolve(Flavor::Kubectl, &a, &[("KUBECONFIG", "/a:/b")]);
        assert_eq!(s.kubeconfig_paths, vec![PathBuf::from("/c")]);
        let s = resolve(Flavor::Kubectl, &args(), &[("HOME", "/home/op")]);
        assert_eq!(
            s.kubeconfig_paths,
            vec![PathBuf::from("/home/op/.kube/config")]
        );
    }

    #[test]
    fn helm_bin_comes_from_the_environment_first() {
        let s = resolve(Flavor::Kubectl, &args(), &[("HELM_BIN", "/opt/helm")]);
        assert_eq!(s.helm.bin(), Some(std::path::Path::new("/opt/helm")));
    }

    #[test]
    fn unsupported_driver_is_a_usage_error_naming_the_value() {
        let err = Settings::resolve(
            Flavor::Helm,
            &args(),
            &Environment::from_pairs([("HELM_DRIVER", "sql")]),
            ConfigFile::default(),
            None,
        )
        .unwrap_err();
        assert!(err.is_usage());
        assert!(err.to_string().contains("\"sql\""), "{err}");
    }

    #[test]
    fn colour_only_for_tables_on_a_terminal_without_no_color() {
        let mut env = Environment::from_pairs([]);
        env.stdout_is_tty = true;
        let s =
            Settings::resolve(Flavor::Kubectl, &args(), &env, ConfigFile::default(), None).unwrap();
        assert!(s.color);
        let mut a = args();
        a.no_color = true;
        let s = Settings::resolve(Flavor::Kubectl, &a, &env, ConfigFile::default(), None).unwrap();
        assert!(!s.color);
        let mut env2 = Environment::from_pairs([("NO_COLOR", "1")]);
        env2.stdout_is_tty = true;
        let s = Settings::resolve(Flavor::Kubectl, &args(), &env2, ConfigFile::default(), None)
            .unwrap();
        assert!(!s.color);
        let mut a = args();
        a.output = OutputFormat::Json;
        let s = Settings::resolve(Flavor::Kubectl, &a, &env, ConfigFile::default(), None).unwrap();
        assert!(!s.color);
    }

    #[test]
    fn request_limit_defaults_and_zero_means_none() {
        let s = resolve(Flavor::Kubectl, &args(), &[]);
        assert_eq!(s.request_limit, Some(DEFAULT_REQUEST_TIMEOUT));
        assert_eq!(s.request_timeout, None);
        let mut a = args();
        a.request_timeout = Some(Duration::ZERO);
        let s = resolve(Flavor::Kubectl, &a, &[]);
        assert_eq!((s.request_limit, s.request_timeout), (None, None));
        a.request_timeout = Some(Duration::from_secs(5));
        let s = resolve(Flavor::Kubectl, &a, &[]);
        assert_eq!(s.request_limit, Some(Duration::from_secs(5)));
        assert_eq!(s.request_timeout, Some(Duration::from_secs(5)));
    }

    #[test]
    fn unknown_context_lists_the_available_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kc");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:1'}\nusers:\n- name: u\n  user: {token: t}\ncontexts:\n- name: real\n  context: {cluster: c, user: u, namespace: team}\ncurrent-context: real\n",
        )
        .unwrap();
        let mut a = args();
        a.kubeconfig = Some(path.clone());
        a.context = Some("ghost".into());
        let s = resolve(Flavor::Kubectl, &a, &[]);
        let rt = tokio::runtime::Runtime::new().unwrap();
        let err = rt.block_on(Target::connect(s)).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("ghost") && msg.contains("real"), "{msg}");
        assert!(err.is_usage());

        a.context = None;
        let s = resolve(Flavor::Kubectl, &a, &[]);
        let t = rt.block_on(Target::connect(s)).unwrap();
        assert_eq!(t.namespace, "team");
        assert_eq!(t.namespace_source, NamespaceSource::KubeconfigContext);
        assert_eq!(t.server, "https://127.0.0.1:1");
    }
}
