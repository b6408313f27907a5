//! The operator's `helm` binary (`HELM_BIN`, then `helm` on PATH), run only
//! for what Helm owns: rendering, upgrade, rollback. Read-only commands
//! never need it.
//!
//! Helm runs with the plugin's cluster (`KUBECONFIG`, `--kube-context`,
//! `--namespace`), a cleared environment plus an allow-list (no OpenBao
//! token or passphrase reaches it), and in its own process group, so a
//! Ctrl-C at the terminal reaches the plugin, which lets the current helm
//! step finish instead of leaving its release `pending-upgrade`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

/// Variables a helm child may see; everything else is dropped.
const ALLOWED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "XDG_CACHE_HOME",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "HELM_CACHE_HOME",
    "HELM_CONFIG_HOME",
    "HELM_DATA_HOME",
    "HELM_PLUGINS",
    "HELM_REGISTRY_CONFIG",
    "HELM_REPOSITORY_CACHE",
    "HELM_REPOSITORY_CONFIG",
    "HELM_MAX_HISTORY",
    "HELM_BURST_LIMIT",
    "HELM_QPS",
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "NO_PROXY",
    "https_proxy",
    "http_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

#[derive(Debug, thiserror::Error)]
pub enum HelmCliError {
    #[error(
        "no helm binary found: set HELM_BIN or put helm (3.8 or newer) on PATH; upgrade and rollback run the operator's own helm"
    )]
    NotFound,
    #[error("cannot run {bin} {args}: {source}. Set HELM_BIN to a working helm binary")]
    Spawn {
        bin: String,
        args: String,
        source: std::io::Error,
    },
    #[error("{bin} {args} failed ({status}): {stderr}")]
    Failed {
        bin: String,
        args: String,
        status: String,
        stderr: String,
    },
    #[error(
        "helm {version} at {bin} is too old: kleidia needs Helm 3.8 or newer (Helm 4 works too). Install a newer helm or point HELM_BIN at one"
    )]
    TooOld { bin: String, version: String },
    #[error("cannot tell which helm {bin} is: `helm version` printed {printed:?}")]
    UnknownVersion { bin: String, printed: String },
}

/// Helm's major version: flags differ between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum HelmMajor {
    V3,
    V4,
}

/// Where helm is to act: the cluster and namespace of the plugin's target.
#[derive(Debug, Clone, Default)]
pub struct HelmTarget {
    /// Kubeconfig files in merge order (passed as `KUBECONFIG`).
    pub kubeconfig: Vec<PathBuf>,
    pub context: Option<String>,
    pub namespace: String,
    /// `secret` or `configmap` (`HELM_DRIVER`).
    pub driver: &'static str,
}

/// `helm upgrade` as kleidia runs it.
#[derive(Debug, Clone)]
pub struct UpgradeSpec<'a> {
    pub release: &'a str,
    pub chart: &'a Path,
    pub values: &'a [PathBuf],
    pub set: &'a [String],
    pub timeout: Duration,
    /// `--install` (for a release that does not exist yet).
    pub install: bool,
    /// Render and print, change nothing.
    pub dry_run: bool,
}

/// A helm run's end: its exit status and the tail of what it printed.
#[derive(Debug, Clone)]
pub struct HelmRun {
    pub success: bool,
    pub status: String,
    /// The last lines it printed (stdout and stderr), for reports.
    pub tail: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelmCli {
    bin: Option<PathBuf>,
}

impl HelmCli {
    pub fn new(bin: Option<PathBuf>) -> Self {
        Self { bin }
    }

    /// The resolved binary, if any.
    pub fn bin(&self) -> Option<&Path> {
        self.bin.as_deref()
    }

    fn require(&self) -> Result<&Path, HelmCliError> {
        self.bin.as_deref().ok_or(HelmCliError::NotFound)
    }

    /// The client's version (`v3.15.2`), or `None` when no helm binary was
    /// found.
    pub async fn version(&self) -> Result<Option<String>, HelmCliError> {
        let Some(bin) = &self.bin else {
            return Ok(None);
        };
        match self
            .output(bin, &["version", "--template", "{{.Version}}"], None)
            .await
        {
            Ok(v) if !v.trim().is_empty() => Ok(Some(v.trim().to_string())),
            _ => {
                // Older or wrapped helms may not template; `--short` prints
                // `v3.15.2+gabc`.
                let v = self.output(bin, &["version", "--short"], None).await?;
                Ok(Some(v.trim().to_string()))
            }
        }
    }

    /// The major version, refusing helm older than 3.8.
    pub async fn major(&self) -> Result<(HelmMajor, String), HelmCliError> {
        let bin = self.require()?;
        let printed = self.version().await?.unwrap_or_default();
        let v =
            crate::probes::parse_version(&printed).ok_or_else(|| HelmCliError::UnknownVersion {
                bin: bin.display().to_string(),
                printed: printed.clone(),
            })?;
        match (v.major, v.minor) {
            (3, m) if m >= 8 => Ok((HelmMajor::V3, printed)),
            (4.., _) => Ok((HelmMajor::V4, printed)),
            _ => Err(HelmCliError::TooOld {
                bin: bin.display().to_string(),
                version: printed,
            }),
        }
    }

    /// `helm template` of `chart` as release `release` with `values` files
    /// and `--set` overrides; the rendered manifests.
    pub async fn template(
        &self,
        target: &HelmTarget,
        release: &str,
        chart: &Path,
        values: &[PathBuf],
        set: &[String],
    ) -> Result<String, HelmCliError> {
        self.render(target, release, chart, values, set, true).await
    }

    /// Like [`HelmCli::template`] without the hooks: what a release's
    /// stored manifest holds, for comparing against it.
    pub async fn template_without_hooks(
        &self,
        target: &HelmTarget,
        release: &str,
        chart: &Path,
        values: &[PathBuf],
        set: &[String],
    ) -> Result<String, HelmCliError> {
        self.render(target, release, chart, values, set, false)
            .await
    }

    async fn render(
        &self,
        target: &HelmTarget,
        release: &str,
        chart: &Path,
        values: &[PathBuf],
        set: &[String],
        hooks: bool,
    ) -> Result<String, HelmCliError> {
        let bin = self.require()?;
        let mut args: Vec<String> = vec![
            "template".into(),
            release.into(),
            chart.display().to_string(),
            "--namespace".into(),
            target.namespace.clone(),
        ];
        if !hooks {
            args.push("--no-hooks".into());
        }
        push_values(&mut args, values, set);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.output(bin, &refs, Some(target)).await
    }

    /// The arguments of `helm upgrade` for `major`: Helm 3 waits with
    /// `--wait`; Helm 4 waits only for hooks unless told `--wait=watcher`.
    pub fn upgrade_args(major: HelmMajor, target: &HelmTarget, spec: &UpgradeSpec) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "upgrade".into(),
            spec.release.into(),
            spec.chart.display().to_string(),
            "--namespace".into(),
            target.namespace.clone(),
        ];
        if spec.install {
            args.push("--install".into());
        }
        args.push(match major {
            HelmMajor::V3 => "--wait".into(),
            HelmMajor::V4 => "--wait=watcher".into(),
        });
        args.push("--wait-for-jobs".into());
        args.push("--timeout".into());
        args.push(helm_duration(spec.timeout));
        if spec.dry_run {
            args.push("--dry-run".into());
        }
        push_values(&mut args, spec.values, spec.set);
        args
    }

    /// `helm rollback RELEASE REVISION`, waiting like an upgrade.
    pub fn rollback_args(
        major: HelmMajor,
        target: &HelmTarget,
        release: &str,
        revision: u32,
        timeout: Duration,
    ) -> Vec<String> {
        vec![
            "rollback".into(),
            release.into(),
            revision.to_string(),
            "--namespace".into(),
            target.namespace.clone(),
            match major {
                HelmMajor::V3 => "--wait".into(),
                HelmMajor::V4 => "--wait=watcher".into(),
            },
            "--wait-for-jobs".into(),
            "--timeout".into(),
            helm_duration(timeout),
        ]
    }

    /// `helm uninstall RELEASE`, waiting for its objects to go.
    pub fn uninstall_args(target: &HelmTarget, release: &str, timeout: Duration) -> Vec<String> {
        vec![
            "uninstall".into(),
            release.into(),
            "--namespace".into(),
            target.namespace.clone(),
            "--wait".into(),
            "--timeout".into(),
            helm_duration(timeout),
        ]
    }

    /// Runs helm with `args`, each line it prints handed to `line` as it
    /// comes. Never killed from here: a helm stopped half-way leaves its
    /// release pending. Returns its status and the last lines.
    pub async fn run_streamed(
        &self,
        target: &HelmTarget,
        args: &[String],
        mut line: impl FnMut(&str),
    ) -> Result<HelmRun, HelmCliError> {
        let bin = self.require()?;
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = self
            .command(bin, &refs, Some(target))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| HelmCliError::Spawn {
                bin: bin.display().to_string(),
                args: args.join(" "),
                source,
            })?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let pump = |r: Option<Box<dyn AsyncRead + Send + Unpin>>,
                    tx: tokio::sync::mpsc::UnboundedSender<String>| async move {
            if let Some(r) = r {
                let mut lines = BufReader::new(r).lines();
                while let Ok(Some(l)) = lines.next_line().await {
                    if tx.send(l).is_err() {
                        break;
                    }
                }
            }
        };
        let out = tokio::spawn(pump(
            child.stdout.take().map(|s| Box::new(s) as _),
            tx.clone(),
        ));
        let err = tokio::spawn(pump(child.stderr.take().map(|s| Box::new(s) as _), tx));
        let mut tail: std::collections::VecDeque<String> = Default::default();
        while let Some(l) = rx.recv().await {
            line(&l);
            if tail.len() == 40 {
                tail.pop_front();
            }
            tail.push_back(l);
        }
        let _ = tokio::join!(out, err);
        let status = child.wait().await.map_err(|source| HelmCliError::Spawn {
            bin: bin.display().to_string(),
            args: args.join(" "),
            source,
        })?;
        Ok(HelmRun {
            success: status.success(),
            status: status.to_string(),
            tail: tail.into_iter().collect(),
        })
    }

    fn command(&self, bin: &Path, args: &[&str], target: Option<&HelmTarget>) -> Command {
        let mut cmd = Command::new(bin);
        cmd.args(args).stdin(Stdio::null()).env_clear();
        for name in ALLOWED_ENV {
            if let Some(v) = std::env::var_os(name) {
                cmd.env(name, v);
            }
        }
        if let Some(t) = target {
            if !t.kubeconfig.is_empty()
                && let Ok(joined) = std::env::join_paths(&t.kubeconfig)
            {
                cmd.env("KUBECONFIG", joined);
            }
            if let Some(c) = &t.context {
                cmd.arg("--kube-context").arg(c);
            }
            if !t.driver.is_empty() {
                cmd.env("HELM_DRIVER", t.driver);
            }
        }
        // Its own process group: a Ctrl-C meant for the plugin must not
        // stop helm half-way.
        #[cfg(unix)]
        cmd.process_group(0);
        cmd
    }

    async fn output(
        &self,
        bin: &Path,
        args: &[&str],
        target: Option<&HelmTarget>,
    ) -> Result<String, HelmCliError> {
        let out = self
            .command(bin, args, target)
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|source| HelmCliError::Spawn {
                bin: bin.display().to_string(),
                args: args.join(" "),
                source,
            })?;
        if !out.status.success() {
            return Err(HelmCliError::Failed {
                bin: bin.display().to_string(),
                args: args.join(" "),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

fn push_values(args: &mut Vec<String>, values: &[PathBuf], set: &[String]) {
    for v in values {
        args.push("--values".into());
        args.push(v.display().to_string());
    }
    for s in set {
        args.push("--set".into());
        args.push(s.clone());
    }
}

/// Helm's duration form: `5m0s`.
pub fn helm_duration(d: Duration) -> String {
    let secs = d.as_secs().max(1);
    format!("{}m{}s", secs / 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, body: &str) -> PathBuf {
        let p = dir.join("helm");
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[tokio::test]
    async fn absent_helm_is_none_not_an_error() {
        assert_eq!(HelmCli::new(None).version().await.unwrap(), None);
        assert!(matches!(
            HelmCli::new(None).major().await,
            Err(HelmCliError::NotFound)
        ));
    }

    #[tokio::test]
    async fn template_then_short() {
        let dir = tempfile::tempdir().unwrap();
        let templ = script(
            dir.path(),
            r#"[ "$2" = "--template" ] && printf 'v3.16.1' && exit 0; exit 1"#,
        );
        assert_eq!(
            HelmCli::new(Some(templ))
                .version()
                .await
                .unwrap()
                .as_deref(),
            Some("v3.16.1")
        );
        let dir2 = tempfile::tempdir().unwrap();
        let short = script(
            dir2.path(),
            r#"[ "$2" = "--short" ] && echo 'v3.9.0+g1234' && exit 0; exit 1"#,
        );
        assert_eq!(
            HelmCli::new(Some(short))
                .version()
                .await
                .unwrap()
                .as_deref(),
            Some("v3.9.0+g1234")
        );
    }

    #[tokio::test]
    async fn majors_and_the_minimum() {
        for (printed, want) in [
            ("v3.15.1", Some(HelmMajor::V3)),
            ("v4.1.4", Some(HelmMajor::V4)),
            ("v3.7.2", None),
            ("v2.17.0", None),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let bin = script(dir.path(), &format!("printf '{printed}'"));
            let got = HelmCli::new(Some(bin)).major().await;
            match want {
                Some(m) => assert_eq!(got.unwrap().0, m, "{printed}"),
                None => assert!(
                    matches!(got, Err(HelmCliError::TooOld { .. })),
                    "{printed}: {got:?}"
                ),
            }
        }
    }

    #[test]
    fn flags_each_major_understands() {
        let t = HelmTarget {
            namespace: "kleidia".into(),
            ..Default::default()
        };
        let spec = UpgradeSpec {
            release: "kleidia-data",
            chart: Path::new("/c/kleidia-data"),
            values: &[PathBuf::from("/v.yaml")],
            set: &["a=b".to_string()],
            timeout: Duration::from_secs(300),
            install: false,
            dry_run: false,
        };
        let v3 = HelmCli::upgrade_args(HelmMajor::V3, &t, &spec);
        assert!(v3.contains(&"--wait".to_string()), "{v3:?}");
        assert!(!v3.iter().any(|a| a.starts_with("--wait=")), "{v3:?}");
        let v4 = HelmCli::upgrade_args(HelmMajor::V4, &t, &spec);
        assert!(v4.contains(&"--wait=watcher".to_string()), "{v4:?}");
        for args in [&v3, &v4] {
            assert!(
                !args
                    .iter()
                    .any(|a| a == "--atomic" || a == "--rollback-on-failure")
            );
            let i = args.iter().position(|a| a == "--values").unwrap();
            assert_eq!(args[i + 1], "/v.yaml");
            assert!(args.windows(2).any(|w| w == ["--timeout", "5m0s"]));
        }
        assert_eq!(helm_duration(Duration::from_secs(90)), "1m30s");
    }

    #[tokio::test]
    async fn helm_gets_only_allowed_variables_and_streams_its_lines() {
        // Cargo sets this for the test process; helm must not inherit it,
        // as it must not inherit BAO_TOKEN or a passphrase variable.
        assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
        let dir = tempfile::tempdir().unwrap();
        let bin = script(
            dir.path(),
            r#"echo "manifest=${CARGO_MANIFEST_DIR:-unset} path=${PATH:+set}"; echo "ns=$5 driver=$HELM_DRIVER" >&2; exit 3"#,
        );
        let t = HelmTarget {
            namespace: "kleidia".into(),
            driver: "configmap",
            ..Default::default()
        };
        let mut seen = Vec::new();
        let run = HelmCli::new(Some(bin))
            .run_streamed(
                &t,
                &[
                    "upgrade".into(),
                    "r".into(),
                    "c".into(),
                    "--namespace".into(),
                    "kleidia".into(),
                ],
                |l| seen.push(l.to_string()),
            )
            .await
            .unwrap();
        assert!(!run.success);
        assert!(
            seen.contains(&"manifest=unset path=set".to_string()),
            "{seen:?}"
        );
        assert!(
            seen.contains(&"ns=kleidia driver=configmap".to_string()),
            "{seen:?}"
        );
        assert_eq!(run.tail.len(), 2);
    }
}
