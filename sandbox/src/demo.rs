//! The demo deployment: the real-software runtimes and the three Kleidia
//! releases installed by a helm: the sandbox's own (the real Helm v4 engine)
//! or one chosen with `up --helm PATH` / `SandboxOptions::helm` (a real
//! Helm 3 or 4 CLI, so the release is installed by the helm that will
//! upgrade it: server-side apply remembers who applied what).
//!
//! `kleidia-sandbox up` starts a sandbox with [`real_runtimes`] and then
//! calls [`install_demo_unless_empty`], which (unless `--empty`) runs
//! [`install_demo_with`] with the sandbox's kubeconfig, its helm and its
//! chart set ([`charts_dir`]`("1.0.0")` unless told otherwise).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use crate::runtime::ImageRuntime;
use crate::runtimes::backend::KleidiaRuntime;
use crate::runtimes::openbao::{OpenBaoRuntime, OpenBaoStorage};
use crate::runtimes::postgres::PostgresRuntime;
use crate::server::Sandbox;

/// The releases of a Kleidia deployment, in the order they install.
pub const RELEASES: [&str; 3] = ["kleidia-platform", "kleidia-data", "kleidia-services"];

/// The namespace the demo installs into.
pub const NAMESPACE: &str = "kleidia";

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(
        "the sandbox's helm command was not found at {0} (nor in $KLEIDIA_SANDBOX_HELM); \
         it ships in the workspace under sandbox/helm: run from the workspace or set \
         KLEIDIA_SANDBOX_HELM"
    )]
    HelmNotFound(PathBuf),
    #[error("demo chart {chart} is missing: expected a chart folder there")]
    ChartMissing { chart: PathBuf },
    #[error("installing release {release} failed (helm exit {code:?}): {stderr}")]
    Install {
        release: String,
        code: Option<i32>,
        stderr: String,
    },
    #[error(
        "the helm {0} does not exist or is not an executable file; pass the path of a Helm 3 or 4 binary"
    )]
    HelmNotExecutable(PathBuf),
    #[error(
        "demo chart set {0:?} was not found: expected a folder with kleidia-platform, kleidia-data and kleidia-services (sets: 1.0.0, 1.1.0, 1.1.0-broken under sandbox/charts)"
    )]
    ChartSetMissing(String),
    #[error("running {helm}: {source}")]
    Run {
        helm: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "StatefulSet {name} in namespace kleidia has {ready} of {want} pods ready after \
         {secs} s; see `kubectl describe pod` and `kubectl logs` of its pods"
    )]
    NotReady {
        name: String,
        ready: i64,
        want: i64,
        secs: u64,
    },
}

/// The runtimes that make pods run real software, for
/// `SandboxOptions::runtimes` (highest priority first).
pub fn real_runtimes(openbao_storage: OpenBaoStorage) -> Vec<Arc<dyn ImageRuntime>> {
    let postgres = PostgresRuntime::new();
    let databases = postgres.registry();
    vec![
        Arc::new(postgres),
        Arc::new(OpenBaoRuntime::new(openbao_storage)),
        Arc::new(KleidiaRuntime::new(databases)),
    ]
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// A demo chart set: `1.0.0`, `1.1.0` or `1.1.0-broken`.
pub fn charts_dir(set: &str) -> PathBuf {
    workspace().join("sandbox/charts").join(set)
}

/// The chart folder `set` names: a set under `sandbox/charts`, or a path to
/// a folder holding the three charts.
pub fn resolve_charts(set: &str) -> Result<PathBuf, DemoError> {
    let named = charts_dir(set);
    let candidates = [PathBuf::from(set), named];
    candidates
        .into_iter()
        .filter(|d| !set.is_empty() && d.is_dir())
        .find(|d| {
            RELEASES
                .iter()
                .all(|r| d.join(r).join("Chart.yaml").is_file())
        })
        .map(|d| d.canonicalize().unwrap_or(d))
        .ok_or_else(|| DemoError::ChartSetMissing(set.to_string()))
}

/// `path` as an absolute path, if it is an executable file.
pub fn check_helm(path: &Path) -> Result<PathBuf, DemoError> {
    use std::os::unix::fs::PermissionsExt;
    let executable =
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if !executable {
        return Err(DemoError::HelmNotExecutable(path.to_path_buf()));
    }
    Ok(path.canonicalize().unwrap_or_else(|_| path.to_path_buf()))
}

/// The sandbox's helm command: `$KLEIDIA_SANDBOX_HELM`, else
/// `sandbox/helm/helm` in the workspace.
pub fn helm_command() -> Result<PathBuf, DemoError> {
    if let Some(p) = std::env::var_os("KLEIDIA_SANDBOX_HELM").map(PathBuf::from)
        && p.is_file()
    {
        return Ok(p);
    }
    let p = workspace().join("sandbox/helm/helm");
    if p.is_file() {
        Ok(p)
    } else {
        Err(DemoError::HelmNotFound(p))
    }
}

/// Installs (or upgrades to) the three releases from `charts_dir` into
/// namespace `kleidia` with the sandbox's helm, one after the other, each
/// waited for until ready.
pub async fn install_demo(kubeconfig: &Path, charts_dir: &Path) -> Result<(), DemoError> {
    install_demo_with(&helm_command()?, kubeconfig, charts_dir).await
}

/// [`install_demo`] with `helm`: the sandbox's, or a real Helm 3 or 4 CLI
/// (`--wait` is each one's own: legacy readiness in 3, the watcher in 4).
pub async fn install_demo_with(
    helm: &Path,
    kubeconfig: &Path,
    charts_dir: &Path,
) -> Result<(), DemoError> {
    let helm = helm.to_path_buf();
    for release in RELEASES {
        let chart = charts_dir.join(release);
        if !chart.join("Chart.yaml").is_file() {
            return Err(DemoError::ChartMissing { chart });
        }
        let out = tokio::process::Command::new(&helm)
            .arg("upgrade")
            .arg("--install")
            .arg(release)
            .arg(&chart)
            .args(["-n", NAMESPACE, "--wait", "--timeout", "5m0s"])
            .arg("--kubeconfig")
            .arg(kubeconfig)
            // A context of the caller's would not exist in this kubeconfig.
            .env_remove("HELM_KUBECONTEXT")
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|source| DemoError::Run {
                helm: helm.clone(),
                source,
            })?;
        if !out.status.success() {
            return Err(DemoError::Install {
                release: release.to_string(),
                code: out.status.code(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
    }
    Ok(())
}

/// What `kleidia-sandbox up` does once the sandbox serves: installs the
/// sandbox's chart set (`SandboxOptions::charts`, 1.0.0 by default) with
/// its helm (`SandboxOptions::helm`, the sandbox's own by default) unless
/// the sandbox was started empty. Blocks until every release is ready;
/// call it from outside the sandbox's async runtime.
pub fn install_demo_unless_empty(sandbox: &Sandbox) -> Result<bool, DemoError> {
    if sandbox.shared().options.empty {
        return Ok(false);
    }
    let kubeconfig = sandbox.kubeconfig_path().to_path_buf();
    let helm = sandbox.demo_helm()?;
    let charts = resolve_charts(sandbox.demo_charts())?;
    sandbox.handle().block_on(async {
        install_demo_with(&helm, &kubeconfig, &charts).await?;
        wait_for_statefulsets(sandbox, std::time::Duration::from_secs(300)).await
    })?;
    Ok(true)
}

/// Helm's `--wait` passes over `OnDelete` StatefulSets (OpenBao's), as on
/// a real cluster: wait until every StatefulSet of the demo has its pods
/// ready, so `up` hands over a ready deployment.
pub async fn wait_for_statefulsets(
    sandbox: &Sandbox,
    timeout: std::time::Duration,
) -> Result<(), DemoError> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let sets = sandbox
            .shared()
            .store
            .snapshot(&crate::registry::STATEFULSETS, Some(NAMESPACE));
        let lagging = sets.iter().find_map(|s| {
            let want = s["spec"]["replicas"].as_i64().unwrap_or(1);
            let ready = s["status"]["readyReplicas"].as_i64().unwrap_or(0);
            (ready < want).then(|| {
                (
                    s["metadata"]["name"].as_str().unwrap_or("").to_string(),
                    ready,
                    want,
                )
            })
        });
        let Some((name, ready, want)) = lagging else {
            return Ok(());
        };
        if std::time::Instant::now() > deadline {
            return Err(DemoError::NotReady {
                name,
                ready,
                want,
                secs: timeout.as_secs(),
            });
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
