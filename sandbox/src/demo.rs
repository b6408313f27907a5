//! The demo deployment: the real-software runtimes and the three Kleidia
//! releases installed by the real Helm engine (the sandbox's `helm`).
//!
//! `kleidia-sandbox up` starts a sandbox with [`real_runtimes`] and then
//! calls [`install_demo_unless_empty`], which (unless `--empty`) runs
//! [`install_demo`] with the sandbox's kubeconfig and
//! [`charts_dir`]`("1.0.0")`.

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
/// namespace `kleidia`, one after the other, each waited for until ready.
pub async fn install_demo(kubeconfig: &Path, charts_dir: &Path) -> Result<(), DemoError> {
    let helm = helm_command()?;
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
/// 1.0.0 set unless the sandbox was started empty. Blocks until every
/// release is ready; call it from outside the sandbox's async runtime.
pub fn install_demo_unless_empty(sandbox: &Sandbox) -> Result<bool, DemoError> {
    if sandbox.shared().options.empty {
        return Ok(false);
    }
    let kubeconfig = sandbox.kubeconfig_path().to_path_buf();
    sandbox.handle().block_on(async {
        install_demo(&kubeconfig, &charts_dir("1.0.0")).await?;
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
