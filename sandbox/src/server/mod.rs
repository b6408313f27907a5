//! The sandbox's Kubernetes API server over HTTPS (HTTP/1.1 and HTTP/2,
//! with upgrades for exec/attach/port-forward), and [`Sandbox`], the
//! in-process handle tests use.
//!
//! ```no_run
//! use kleidia_sandbox::server::{Sandbox, SandboxOptions};
//! let sb = Sandbox::start(SandboxOptions::default()).unwrap();
//! println!("KUBECONFIG={}", sb.kubeconfig_path().display());
//! ```

mod admin;
pub mod client;
mod compat;
pub mod http;
mod patching;
pub mod requests;
mod reviews;
mod reviews_proto;
pub mod router;
pub mod table;
mod watch;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::authz::{Authz, Rule};
use crate::faults::Faults;
use crate::registry;
use crate::runtime::ImageRuntime;
use crate::state::{OpenBaoStorage, Options, Shared};
use crate::store::Store;

/// How long shutdown waits for the controllers to stop their containers.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);

/// Why a sandbox could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("creating the sandbox data folder {path} failed: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("binding a local port for the API server failed: {0}")]
    Bind(std::io::Error),
    #[error("starting the sandbox's async runtime failed: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("writing {path} failed: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("seeding the cluster objects failed: {0}")]
    Seed(#[from] crate::error::ApiError),
}

/// How to start a sandbox. `Default` is what tests want: a temporary data
/// folder, fast pod readiness, allow-all authorization.
pub struct SandboxOptions {
    /// Data folder (kubeconfig, container roots, logs). `None`: a temporary
    /// folder removed when the sandbox is dropped.
    pub dir: Option<PathBuf>,
    /// Port to listen on (127.0.0.1); 0 picks a free one.
    pub port: u16,
    pub pod_ready_delay: Duration,
    /// Runtimes tried before the default shell runtime, highest priority
    /// first.
    pub runtimes: Vec<Arc<dyn ImageRuntime>>,
    /// Authorization rules (first match decides; `None`: allow all).
    pub authz_rules: Option<Vec<Rule>>,
    pub empty: bool,
    pub openbao_storage: OpenBaoStorage,
    /// Changes kept for watch resumption.
    pub watch_history: usize,
    pub bookmark_interval: Duration,
    /// Run the controllers (pods become ready, deployments roll out).
    pub controllers: bool,
    /// Bearer token; `None` generates one.
    pub token: Option<String>,
    /// The helm that installs the demo (`install_demo_unless_empty`): a real
    /// Helm 3 or 4 CLI; `None`: the sandbox's own (`sandbox/helm/helm`).
    pub helm: Option<PathBuf>,
    /// The demo chart set to install: a set under `sandbox/charts`
    /// (`1.0.0`, `1.1.0`, `1.1.0-broken`) or a folder with the three charts.
    pub charts: String,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            dir: None,
            port: 0,
            pod_ready_delay: Duration::from_millis(100),
            runtimes: Vec::new(),
            authz_rules: None,
            empty: true,
            openbao_storage: OpenBaoStorage::File,
            watch_history: crate::store::DEFAULT_HISTORY,
            bookmark_interval: Duration::from_secs(5),
            controllers: true,
            token: None,
            helm: None,
            charts: "1.0.0".to_string(),
        }
    }
}

/// A running sandbox API server. Dropping it stops it.
pub struct Sandbox {
    shared: Arc<Shared>,
    url: String,
    addr: SocketAddr,
    token: String,
    ca_pem: String,
    kubeconfig: PathBuf,
    runtime: Option<tokio::runtime::Runtime>,
    controllers: Option<tokio::task::JoinHandle<()>>,
    requests: Arc<requests::Requests>,
    helm: Option<PathBuf>,
    charts: String,
    _tempdir: Option<tempfile::TempDir>,
}

fn random_token() -> String {
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// Creates a folder only its owner can enter.
pub fn private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
}

impl Sandbox {
    /// Starts a sandbox on its own async runtime (so it works from plain
    /// `#[test]`s and from async code alike) and returns once it serves.
    pub fn start(opts: SandboxOptions) -> Result<Sandbox, StartError> {
        let (tempdir, dir) = match &opts.dir {
            Some(d) => (None, d.clone()),
            None => {
                let t = tempfile::Builder::new()
                    .prefix("kleidia-sandbox-")
                    .tempdir()
                    .map_err(|source| StartError::DataDir {
                        path: std::env::temp_dir(),
                        source,
                    })?;
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        private_dir(&dir).map_err(|source| StartError::DataDir {
            path: dir.clone(),
            source,
        })?;
        let tls = crate::tls::generate()?;
        let listener =
            std::net::TcpListener::bind(("127.0.0.1", opts.port)).map_err(StartError::Bind)?;
        listener.set_nonblocking(true).map_err(StartError::Bind)?;
        let addr = listener.local_addr().map_err(StartError::Bind)?;
        let url = format!("https://127.0.0.1:{}", addr.port());
        let token = opts.token.clone().unwrap_or_else(random_token);

        let mut runtimes = crate::runtimes::default_runtimes();
        for r in opts.runtimes.iter().rev() {
            runtimes.register(r.clone());
        }
        let shared = Arc::new(Shared {
            store: Store::new(opts.watch_history),
            runtimes,
            faults: Faults::new(),
            authz: match opts.authz_rules {
                Some(r) => Authz::new(r),
                None => Authz::default(),
            },
            options: Options {
                data_dir: dir.clone(),
                pod_ready_delay: opts.pod_ready_delay,
                empty: opts.empty,
                openbao_storage: opts.openbao_storage,
                bookmark_interval: opts.bookmark_interval,
            },
            shutdown: CancellationToken::new(),
        });
        seed(&shared, addr.port())?;

        let kubeconfig = dir.join("kubeconfig");
        crate::kubeconfig::write(&kubeconfig, &url, &tls.ca_pem, &token).map_err(|source| {
            StartError::Write {
                path: kubeconfig.clone(),
                source,
            }
        })?;

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kleidia-sandbox")
            .enable_all()
            .build()
            .map_err(StartError::Runtime)?;
        let requests = Arc::new(requests::Requests::default());
        let ctx = Arc::new(router::Context {
            shared: shared.clone(),
            token: token.clone(),
            requests: requests.clone(),
        });
        {
            let _guard = runtime.enter();
            let listener = tokio::net::TcpListener::from_std(listener).map_err(StartError::Bind)?;
            runtime.spawn(serve(listener, tls.server_config.clone(), ctx));
        }
        let controllers = opts.controllers.then(|| {
            let _guard = runtime.enter();
            crate::controllers::start(shared.clone())
        });
        Ok(Sandbox {
            shared,
            url,
            addr,
            token,
            ca_pem: tls.ca_pem,
            kubeconfig,
            runtime: Some(runtime),
            controllers,
            requests,
            helm: opts.helm,
            charts: opts.charts,
            _tempdir: tempdir,
        })
    }

    /// `https://127.0.0.1:<port>`
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bearer token (a secret: never print it).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The CA certificate (PEM) the server certificate chains to.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    pub fn data_dir(&self) -> &Path {
        &self.shared.options.data_dir
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// The helm that installs the demo: `SandboxOptions::helm` (checked to
    /// be an executable file), else the sandbox's own.
    pub fn demo_helm(&self) -> Result<PathBuf, crate::demo::DemoError> {
        match &self.helm {
            Some(h) => crate::demo::check_helm(h),
            None => crate::demo::helm_command(),
        }
    }

    /// The demo chart set (`SandboxOptions::charts`).
    pub fn demo_charts(&self) -> &str {
        &self.charts
    }

    /// The requests served so far, by verb, resource, subresource and
    /// namespace (the sandbox's own `/sandbox/` endpoints excluded).
    pub fn requests(&self) -> requests::RequestCounts {
        self.requests.snapshot()
    }

    /// The requests served so far; counting starts again from zero.
    pub fn reset_requests(&self) -> requests::RequestCounts {
        self.requests.take()
    }

    /// The async runtime the sandbox runs on (to spawn helpers next to it).
    pub fn handle(&self) -> tokio::runtime::Handle {
        self.runtime
            .as_ref()
            .expect("runtime lives until drop")
            .handle()
            .clone()
    }

    /// Stops the server and controllers, giving them a moment to stop
    /// their containers.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.shutdown.cancel();
        let Some(rt) = self.runtime.take() else {
            return;
        };
        let controllers = self.controllers.take();
        // The controllers stop every container once cancelled; wait for
        // that (bounded) so no server process outlives the sandbox. A
        // separate thread may block even when we are called from async code.
        let finish = move || {
            if let Some(c) = controllers {
                let _ = rt.block_on(async { tokio::time::timeout(SHUTDOWN_GRACE, c).await });
            }
            rt.shutdown_timeout(Duration::from_secs(1));
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            let _ = std::thread::spawn(finish).join();
        } else {
            finish();
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The cluster objects a fresh sandbox has: namespaces, the node, the
/// `kubernetes` Service and a default StorageClass.
fn seed(shared: &Shared, port: u16) -> Result<(), crate::error::ApiError> {
    let store = &shared.store;
    for ns in [
        "default",
        "kube-system",
        "kube-public",
        "kube-node-lease",
        "kleidia",
    ] {
        store.create(
            &registry::NAMESPACES,
            None,
            json!({"metadata": {"name": ns}}),
        )?;
    }
    let now = crate::store::now();
    store.create(
        &registry::NODES,
        None,
        json!({
            "metadata": {"name": "sandbox-node", "labels": {
                "kubernetes.io/hostname": "sandbox-node",
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node-role.kubernetes.io/control-plane": "",
            }},
            "spec": {"podCIDR": "127.0.0.0/8"},
            "status": {
                "capacity": {"cpu": "2", "memory": "24Gi", "pods": "110", "ephemeral-storage": "100Gi"},
                "allocatable": {"cpu": "2", "memory": "23Gi", "pods": "110", "ephemeral-storage": "90Gi"},
                "conditions": [
                    {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory", "message": "kubelet has sufficient memory available", "lastHeartbeatTime": now, "lastTransitionTime": now},
                    {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure", "message": "kubelet has no disk pressure", "lastHeartbeatTime": now, "lastTransitionTime": now},
                    {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID", "message": "kubelet has sufficient PID available", "lastHeartbeatTime": now, "lastTransitionTime": now},
                    {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status", "lastHeartbeatTime": now, "lastTransitionTime": now},
                ],
                "addresses": [
                    {"type": "InternalIP", "address": "127.0.0.1"},
                    {"type": "Hostname", "address": "sandbox-node"},
                ],
                "nodeInfo": {
                    "kubeletVersion": crate::discovery::GIT_VERSION,
                    "kubeProxyVersion": crate::discovery::GIT_VERSION,
                    "containerRuntimeVersion": "kleidia-sandbox://0.1.0",
                    "operatingSystem": "linux",
                    "architecture": "amd64",
                    "osImage": "kleidia-sandbox",
                    "kernelVersion": "",
                    "machineID": "", "systemUUID": "", "bootID": "",
                },
            },
        }),
    )?;
    store.create(
        &registry::SERVICES,
        Some("default"),
        json!({
            "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]},
        }),
    )?;
    store.create(
        &registry::ENDPOINTS,
        Some("default"),
        json!({
            "metadata": {"name": "kubernetes"},
            "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
        }),
    )?;
    store.create(
        &registry::STORAGECLASSES,
        None,
        json!({
            "metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "kleidia-sandbox/local",
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "Immediate",
        }),
    )?;
    Ok(())
}

/// Accepts connections until shutdown.
async fn serve(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    ctx: Arc<router::Context>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let shutdown = ctx.shared.shutdown.clone();
    loop {
        let (tcp, _) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let svc = hyper::service::service_fn(move |req| {
                let ctx = ctx.clone();
                async move { Ok::<_, std::convert::Infallible>(router::handle(ctx, req).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = builder
                .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                .await;
        });
    }
}

/// `export` lines for a shell: KUBECONFIG, PATH with the project's
/// `.venv/bin` (when `venv_bin` exists), HELM_BIN (`helm`, the one the demo
/// was installed with, else the sandbox's), plus [`extra_env`].
pub fn shell_exports(dir: &Path, venv_bin: Option<&Path>, helm: Option<&Path>) -> String {
    let mut out = format!(
        "export KUBECONFIG={}\n",
        shell_quote(&dir.join("kubeconfig").display().to_string())
    );
    // The workspace tools first: the demo's helm (the sandbox's from
    // `sandbox/helm` unless another was chosen), real kubectl and bao from
    // `.venv/bin`.
    let helm = match helm {
        Some(h) => Some(h.to_path_buf()),
        None => crate::demo::helm_command().ok(),
    };
    let mut path: Vec<String> = Vec::new();
    if let Some(helm_dir) = helm.as_deref().and_then(Path::parent) {
        path.push(shell_quote(&helm_dir.display().to_string()));
    }
    if let Some(bin) = venv_bin.filter(|b| b.is_dir()) {
        path.push(shell_quote(&bin.display().to_string()));
    }
    if !path.is_empty() {
        out.push_str(&format!("export PATH={}:\"$PATH\"\n", path.join(":")));
    }
    if let Some(helm) = &helm {
        out.push_str(&format!(
            "export HELM_BIN={}\n",
            shell_quote(&helm.display().to_string())
        ));
    }
    for (k, v) in extra_env(dir) {
        out.push_str(&format!("export {k}={}\n", shell_quote(&v)));
    }
    // The OpenBao root token stays in its 0600 file: the line reads it when
    // the shell evaluates it, so the secret itself is never printed.
    let token_file = openbao_root_token_file(dir);
    if token_file.is_file() {
        out.push_str(&format!(
            "export BAO_TOKEN=\"$(cat {})\"\n",
            shell_quote_always(&token_file.display().to_string())
        ));
    }
    out
}

/// Where the demo OpenBao (`kleidia-platform-openbao-0` in namespace
/// `kleidia`) of a sandbox in `dir` keeps its root token (a 0600 file).
pub fn openbao_root_token_file(dir: &Path) -> PathBuf {
    crate::runtimes::openbao::root_token_file_at(
        &dir.join("containers")
            .join(crate::demo::NAMESPACE)
            .join("kleidia-platform-openbao-0")
            .join("openbao")
            .join("root"),
    )
}

/// More environment for `up`/`env` output.
pub fn extra_env(dir: &Path) -> Vec<(String, String)> {
    let _ = dir;
    Vec::new()
}

fn shell_quote_always(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn shell_quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:=,@".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}
