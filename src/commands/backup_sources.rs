//! [`BackupSources`] over a live cluster: the Helm release records for facts
//! and values, exec for `pg_dumpall` and the OpenBao data-folder archive, a
//! port-forward to OpenBao's API for the raft snapshot and the storage type.
//!
//! Discovery (which pod, container and user) is done once, lazily, per
//! component, so `--components values` needs no pod at all.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use age::secrecy::SecretString;
use base64::Engine;
use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::api::ListParams;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};

use crate::backup::create::{
    BackupSources, ClusterFacts, ReleaseSnapshot, SourceError, SourceStream,
};
use crate::backup::manifest::{OpenBaoStorage, ReleaseRecord};
use crate::backup::openbao::{OpenBaoError, raft_snapshot};
use crate::cluster::exec;
use crate::cluster::portforward::PortForwardStream;
use crate::cluster::{ApiEndpoint, ClusterError};
use crate::helm::release::{Release, ReleaseStore};
use crate::probes;
use crate::target::Target;
use crate::topology::{self, BackendTarget, OpenbaoTarget, PodInfo, PostgresTarget};

/// The Secret holding OpenBao's static unseal key.
pub const UNSEAL_KEY_SECRET: &str = "openbao-unseal-key";
/// Where the Kleidia chart keeps OpenBao's data (file storage).
const DEFAULT_OPENBAO_DATA: &str = "/openbao/data";

/// Backup sources reading from the cluster `target` points at.
pub struct ClusterSources<'t> {
    target: &'t Target,
    api: ApiEndpoint,
    store: ReleaseStore,
    releases: Option<BTreeMap<String, Release>>,
    pods: Option<Vec<PodInfo>>,
    postgres: Option<PostgresTarget>,
    openbao: Option<OpenbaoTarget>,
}

impl<'t> ClusterSources<'t> {
    pub fn new(target: &'t Target) -> Self {
        let api = target.api();
        let store = ReleaseStore::new(
            target.client.clone(),
            api.clone(),
            target.namespace.clone(),
            target.settings.driver,
        );
        ClusterSources {
            target,
            api,
            store,
            releases: None,
            pods: None,
            postgres: None,
            openbao: None,
        }
    }

    fn ns(&self) -> &str {
        &self.target.namespace
    }

    fn names(&self) -> [&str; 3] {
        let r = &self.target.settings.releases;
        [&r.platform, &r.data, &r.services]
    }

    /// The latest revision of each Kleidia release that exists.
    async fn releases_map(&mut self) -> Result<&BTreeMap<String, Release>, SourceError> {
        if self.releases.is_none() {
            let mut map = BTreeMap::new();
            let names: Vec<String> = self.names().iter().map(|s| s.to_string()).collect();
            for name in names {
                let latest = self
                    .store
                    .latest(&name)
                    .await
                    .map_err(|e| SourceError::new(e.to_string()))?;
                if let Some(r) = latest {
                    map.insert(name, r);
                }
            }
            if map.is_empty() {
                return Err(SourceError::new(format!(
                    "namespace {} has no Kleidia releases (looked for {}); pass the namespace with -n/--namespace or other release names with --platform-release/--data-release/--services-release",
                    self.ns(),
                    self.names().join(", ")
                )));
            }
            self.releases = Some(map);
        }
        Ok(self.releases.as_ref().expect("just filled"))
    }

    async fn release(&mut self, name: &str) -> Result<Release, SourceError> {
        let ns = self.ns().to_owned();
        self.releases_map().await?.get(name).cloned().ok_or_else(|| {
            SourceError::new(format!(
                "release {name} not found in namespace {ns}; name the right one with --platform-release/--data-release"
            ))
        })
    }

    async fn pods(&mut self) -> Result<Vec<PodInfo>, SourceError> {
        if self.pods.is_none() {
            let api: Api<Pod> = Api::namespaced(self.target.client.clone(), self.ns());
            let list = api.list(&ListParams::default()).await.map_err(|e| {
                cluster_error(ClusterError::from_kube(
                    e,
                    &self.api,
                    &format!("list pods in namespace {}", self.ns()),
                    "pods",
                ))
            })?;
            self.pods = Some(list.items.iter().map(PodInfo::from_pod).collect());
        }
        Ok(self.pods.clone().unwrap_or_default())
    }

    /// A release, the objects its manifest renders and the namespace's
    /// pods: what topology discovery works from.
    async fn release_layout(
        &mut self,
        name: &str,
    ) -> Result<(Release, Vec<topology::ManifestObject>, Vec<PodInfo>), SourceError> {
        let release = self.release(name).await?;
        let pods = self.pods().await?;
        let objects = topology::parse_manifest(&release.name, &release.manifest)
            .map_err(|e| SourceError::new(e.to_string()))?;
        Ok((release, objects, pods))
    }

    async fn postgres(&mut self) -> Result<PostgresTarget, SourceError> {
        if let Some(t) = &self.postgres {
            return Ok(t.clone());
        }
        let name = self.target.settings.releases.data.clone();
        let (release, objects, pods) = self.release_layout(&name).await?;
        let t = topology::discover_postgres(
            &release.name,
            &objects,
            &release.merged_values(),
            &pods,
            self.ns(),
            &self.target.settings.pins.postgres,
        )
        .map_err(|e| SourceError::new(e.to_string()))?;
        self.postgres = Some(t.clone());
        Ok(t)
    }

    async fn openbao(&mut self) -> Result<OpenbaoTarget, SourceError> {
        if let Some(t) = &self.openbao {
            return Ok(t.clone());
        }
        let name = self.target.settings.releases.platform.clone();
        let (release, objects, pods) = self.release_layout(&name).await?;
        let t = topology::discover_openbao(
            &release.name,
            &objects,
            &pods,
            self.ns(),
            &self.target.settings.pins.openbao,
        )
        .map_err(|e| SourceError::new(e.to_string()))?;
        self.openbao = Some(t.clone());
        Ok(t)
    }

    /// The backend's Service, from the services release (for its version).
    async fn backend_target(&mut self) -> Result<BackendTarget, String> {
        let name = self.target.settings.releases.services.clone();
        let release = self.release(&name).await.map_err(|e| e.to_string())?;
        topology::parse_manifest(&release.name, &release.manifest)
            .and_then(|objs| {
                topology::discover_backend(&release.name, &objs, &self.target.settings.pins.backend)
            })
            .map_err(|e| e.to_string())
    }

    /// `GET /v1/sys/seal-status` over a port-forward (no token needed); its
    /// `storage_type` names the backend.
    async fn storage_from_api(&mut self) -> Result<Option<OpenBaoStorage>, SourceError> {
        let bao = self.openbao().await?;
        let mut conn = PortForwardStream::open(
            &self.target.client,
            &self.api,
            self.ns(),
            &bao.pod,
            bao.port,
        )
        .await
        .map_err(cluster_error)?;
        let request = "GET /v1/sys/seal-status HTTP/1.0\r\nHost: localhost\r\n\r\n";
        let io = |e: std::io::Error| {
            SourceError::new(format!(
                "asking OpenBao in pod {}/{} for its seal status failed: {e}",
                self.target.namespace, bao.pod
            ))
        };
        conn.write_all(request.as_bytes()).await.map_err(io)?;
        let mut answer = Vec::new();
        (&mut conn)
            .take(64 * 1024)
            .read_to_end(&mut answer)
            .await
            .map_err(io)?;
        let text = String::from_utf8_lossy(&answer);
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        let status: serde_json::Value = match serde_json::from_str(body) {
            Ok(v) => v,
            Err(_) => return Ok(None),
        };
        Ok(storage_of(status["storage_type"].as_str().unwrap_or("")))
    }

    /// `storage "raft"` / `storage "file"` in the platform release's
    /// rendered configuration, with the data path.
    async fn storage_from_manifest(
        &mut self,
    ) -> Result<Option<(OpenBaoStorage, String)>, SourceError> {
        let name = self.target.settings.releases.platform.clone();
        let release = self.release(&name).await?;
        Ok(storage_in_config(&release.manifest))
    }
}

/// How long one version probe may take while a backup starts.
const PROBE_LIMIT: Duration = Duration::from_secs(30);

/// A probe's answer, or why there is none within `limit`.
async fn within(
    limit: Duration,
    probe: impl Future<Output = Result<Option<String>, String>>,
) -> Result<Option<String>, String> {
    tokio::time::timeout(limit, probe)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {limit:?}")))
}

/// Suffix of a manifest version that comes from a chart, not a server.
pub const CHART_VERSION_LABEL: &str = " (chart appVersion)";

/// The version to record for `component`: the server's answer, else the
/// chart's appVersion labelled as such (with a warning saying why).
fn server_or_chart_version(
    component: &str,
    answer: Result<Option<String>, String>,
    chart: Option<String>,
) -> (Option<String>, Option<String>) {
    let why = match answer {
        Ok(Some(v)) => return (Some(v), None),
        Ok(None) => "the server answered without a version".to_owned(),
        Err(e) => e,
    };
    match chart {
        Some(c) => (
            Some(format!("{c}{CHART_VERSION_LABEL}")),
            Some(format!(
                "could not ask {component} for its version ({why}); the manifest records the chart's appVersion {c}, labelled \"{}\"",
                CHART_VERSION_LABEL.trim()
            )),
        ),
        None => (
            None,
            Some(format!(
                "could not ask {component} for its version ({why}) and its chart names no appVersion; the manifest has no {component} version"
            )),
        ),
    }
}

fn storage_of(kind: &str) -> Option<OpenBaoStorage> {
    match kind {
        "raft" => Some(OpenBaoStorage::Raft),
        "file" => Some(OpenBaoStorage::File),
        _ => None,
    }
}

/// Finds `storage "<kind>" { path = "..." }` in rendered HCL.
fn storage_in_config(manifest: &str) -> Option<(OpenBaoStorage, String)> {
    let start = manifest.find("storage \"")?;
    let rest = &manifest[start + "storage \"".len()..];
    let kind = storage_of(&rest[..rest.find('"')?])?;
    let block = &rest[..rest.find('}').unwrap_or(rest.len())];
    let path = block
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == "path").then(|| v.trim().trim_matches('"').to_owned())
        })
        .unwrap_or_else(|| DEFAULT_OPENBAO_DATA.to_owned());
    Some((kind, path))
}

fn cluster_error(e: ClusterError) -> SourceError {
    SourceError::new(e.to_string())
}

fn bao_error(e: OpenBaoError) -> SourceError {
    SourceError::new(e.to_string())
}

/// How long a stream may deliver nothing before the backup gives up, unless
/// `--request-timeout` says otherwise: a cut connection that the network
/// never reports must not hang the backup.
pub const DEFAULT_STALL_LIMIT: Duration = Duration::from_secs(120);

/// A reader that fails once no byte arrived for `limit`.
struct StallGuard<R> {
    inner: R,
    limit: Duration,
    what: String,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl<R> StallGuard<R> {
    fn new(inner: R, limit: Duration, what: String) -> Self {
        StallGuard {
            inner,
            limit,
            what,
            timer: Box::pin(tokio::time::sleep(limit)),
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for StallGuard<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                let deadline = tokio::time::Instant::now() + this.limit;
                this.timer.as_mut().reset(deadline);
                Poll::Ready(r)
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "{} delivered nothing for {:?}; the connection through the API server is probably cut (raise --request-timeout if the source is just slow)",
                        this.what, this.limit
                    ),
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl ClusterSources<'_> {
    fn stall_limit(&self) -> Duration {
        match self.target.settings.request_timeout {
            Some(t) if !t.is_zero() => t,
            _ => DEFAULT_STALL_LIMIT,
        }
    }
}

/// A streamed exec whose end is judged by its exit status.
async fn exec_stream(
    sources: &ClusterSources<'_>,
    pod: &str,
    container: &str,
    command: &[&str],
    what: &str,
) -> Result<SourceStream, SourceError> {
    let (stdout, outcome) = exec::stream_stdout(
        &sources.target.client,
        &sources.api,
        sources.ns(),
        pod,
        Some(container),
        command,
    )
    .await
    .map_err(cluster_error)?;
    let stdout = StallGuard::new(
        stdout,
        sources.stall_limit(),
        format!("`{}` in pod {}/{pod}", command.join(" "), sources.ns()),
    );
    let ns = sources.ns().to_owned();
    let pod = pod.to_owned();
    let what = what.to_owned();
    let shown = command.join(" ");
    let finished = async move {
        match outcome.await {
            Ok(o) if o.success() => Ok(()),
            Ok(o) if o.not_found() => Err(SourceError::new(format!(
                "{what}: `{shown}` is not available in pod {ns}/{pod} ({}); check that the container image provides it",
                o.describe()
            ))),
            Ok(o) => Err(SourceError::new(format!(
                "{what}: `{shown}` in pod {ns}/{pod} failed ({}); check the pod with `kubectl logs -n {ns} {pod}` and retry",
                o.describe()
            ))),
            Err(e) => Err(SourceError::new(format!(
                "{what}: {e}; the stream was cut before the command ended, retry the backup"
            ))),
        }
    };
    Ok(SourceStream::new(stdout, finished))
}

impl BackupSources for ClusterSources<'_> {
    fn facts(&mut self) -> BoxFuture<'_, Result<ClusterFacts, SourceError>> {
        async move {
            let r = self.target.settings.releases.clone();
            let map = self.releases_map().await?.clone();
            let chart_app = |name: &str| {
                map.get(name)
                    .and_then(|rel| rel.chart_metadata())
                    .map(|m| m.app_version.clone())
                    .filter(|v| !v.is_empty())
            };
            // The servers' own answers, through the probes `versions` uses;
            // targets are found first (cached for the backup itself).
            let pg = self.postgres().await;
            let bao = self.openbao().await;
            let backend = self.backend_target().await;
            let client = &self.target.client;
            let api = &self.api;
            let ns = self.target.namespace.as_str();
            let probe_limit = self.stall_limit().min(PROBE_LIMIT);
            let (pg_v, bao_v, be_v, k8s_v) = tokio::join!(
                within(probe_limit, async {
                    let t = pg.map_err(|e| e.to_string())?;
                    probes::postgres::version(client, api, ns, &t)
                        .await
                        .map(|v| Some(v.version))
                        .map_err(|e| e.to_string())
                }),
                within(probe_limit, async {
                    let t = bao.map_err(|e| e.to_string())?;
                    probes::openbao::status(client, api, ns, &t)
                        .await
                        .map(|s| Some(s.version).filter(|v| !v.is_empty()))
                        .map_err(|e| e.to_string())
                }),
                within(probe_limit, async {
                    probes::backend::health(client, api, ns, &backend?)
                        .await
                        .map(|h| h.version)
                        .map_err(|e| e.to_string())
                }),
                within(probe_limit, async {
                    probes::kubernetes::server_version(client, api)
                        .await
                        .map(Some)
                        .map_err(|e| e.to_string())
                }),
            );
            let mut versions = BTreeMap::new();
            let mut warnings = Vec::new();
            for (key, release, answer) in [
                ("postgres", &r.data, pg_v),
                ("openbao", &r.platform, bao_v),
                ("backend", &r.services, be_v),
            ] {
                let (version, warning) = server_or_chart_version(key, answer, chart_app(release));
                if let Some(v) = version {
                    versions.insert(key.to_owned(), v);
                }
                warnings.extend(warning);
            }
            match k8s_v {
                Ok(Some(v)) => {
                    versions.insert("kubernetes".to_owned(), v);
                }
                Ok(None) => {}
                Err(e) => warnings.push(format!(
                    "the Kubernetes version is not recorded in the manifest: {e}"
                )),
            }
            Ok(ClusterFacts {
                context: Some(self.target.context.clone()).filter(|c| !c.is_empty()),
                server: Some(self.target.server.clone()),
                versions,
                warnings,
            })
        }
        .boxed()
    }

    fn postgres_dump(&mut self) -> BoxFuture<'_, Result<SourceStream, SourceError>> {
        async move {
            let pg = self.postgres().await?;
            exec_stream(
                self,
                &pg.pod,
                &pg.container,
                &["pg_dumpall", "-U", &pg.user],
                "pg_dumpall",
            )
            .await
        }
        .boxed()
    }

    fn openbao_storage(&mut self) -> BoxFuture<'_, Result<OpenBaoStorage, SourceError>> {
        async move {
            // What the server runs wins over what the chart's config says.
            let why = match self.storage_from_api().await {
                Ok(Some(s)) => return Ok(s),
                Ok(None) => "its seal status names no storage type".to_owned(),
                Err(e) => format!("asking its seal status failed: {e}"),
            };
            match self.storage_from_manifest().await? {
                Some((s, _)) => Ok(s),
                None => Err(SourceError::new(format!(
                    "cannot tell OpenBao's storage type: {why}, and the {} release's configuration has no storage block; check that OpenBao is running and unsealed (`kubectl kleidia versions`)",
                    self.target.settings.releases.platform
                ))),
            }
        }
        .boxed()
    }

    fn openbao_raft_snapshot<'a>(
        &'a mut self,
        token: &'a SecretString,
    ) -> BoxFuture<'a, Result<SourceStream, SourceError>> {
        async move {
            let bao = self.openbao().await?;
            let conn = PortForwardStream::open(
                &self.target.client,
                &self.api,
                self.ns(),
                &bao.pod,
                bao.port,
            )
            .await
            .map_err(cluster_error)?;
            let body = raft_snapshot(conn, "localhost", token)
                .await
                .map_err(bao_error)?;
            let what = format!("the raft snapshot from pod {}/{}", self.ns(), bao.pod);
            Ok(SourceStream::from_reader(StallGuard::new(
                body,
                self.stall_limit(),
                what,
            )))
        }
        .boxed()
    }

    fn openbao_data_archive(&mut self) -> BoxFuture<'_, Result<SourceStream, SourceError>> {
        async move {
            let bao = self.openbao().await?;
            let path = self
                .storage_from_manifest()
                .await?
                .map(|(_, p)| p)
                .unwrap_or_else(|| DEFAULT_OPENBAO_DATA.to_owned());
            exec_stream(
                self,
                &bao.pod,
                &bao.container,
                &["tar", "-C", &path, "-cf", "-", "."],
                "OpenBao data archive",
            )
            .await
        }
        .boxed()
    }

    fn secret_value<'a>(
        &'a mut self,
        name: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<SecretString, SourceError>> {
        async move {
            let secret = self.get_secret(name).await?;
            let value = secret
                .data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|b| String::from_utf8_lossy(&b.0).trim().to_owned())
                .filter(|v| !v.is_empty());
            let keys: Vec<String> = secret
                .data
                .as_ref()
                .map(|d| d.keys().cloned().collect())
                .unwrap_or_default();
            value.map(SecretString::from).ok_or_else(|| {
                SourceError::new(format!(
                    "Secret {}/{name} has no (non-empty) key {key}; its keys are: {}. Fix --openbao-token-secret NAME:KEY",
                    self.ns(),
                    if keys.is_empty() { "none".to_owned() } else { keys.join(", ") }
                ))
            })
        }
        .boxed()
    }

    fn unseal_key_secret(&mut self) -> BoxFuture<'_, Result<Vec<u8>, SourceError>> {
        async move {
            let secret = self.get_secret(UNSEAL_KEY_SECRET).await?;
            let data: BTreeMap<String, String> = secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, base64::engine::general_purpose::STANDARD.encode(v.0)))
                .collect();
            let doc = serde_json::json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": UNSEAL_KEY_SECRET, "namespace": self.ns()},
                "type": secret.type_,
                "data": data,
            });
            serde_json::to_vec_pretty(&doc).map_err(|e| SourceError::new(e.to_string()))
        }
        .boxed()
    }

    fn releases(&mut self) -> BoxFuture<'_, Result<Vec<ReleaseSnapshot>, SourceError>> {
        async move {
            let map = self.releases_map().await?.clone();
            let mut out = Vec::new();
            for r in map.values() {
                let meta = r.chart_metadata().cloned().unwrap_or_default();
                let values = r.config.clone().unwrap_or(serde_json::Value::Null);
                let values_yaml = match &values {
                    serde_json::Value::Null => b"{}\n".to_vec(),
                    serde_json::Value::Object(m) if m.is_empty() => b"{}\n".to_vec(),
                    v => serde_yaml_ng::to_string(v)
                        .map_err(|e| SourceError::new(e.to_string()))?
                        .into_bytes(),
                };
                out.push(ReleaseSnapshot {
                    record: ReleaseRecord {
                        name: r.name.clone(),
                        chart: meta.name.clone(),
                        chart_version: meta.version.clone(),
                        app_version: Some(meta.app_version.clone()).filter(|v| !v.is_empty()),
                        revision: u64::from(r.version),
                        status: Some(r.info.status.clone()).filter(|s| !s.is_empty()),
                    },
                    values_yaml,
                });
            }
            Ok(out)
        }
        .boxed()
    }
}

impl ClusterSources<'_> {
    async fn get_secret(&self, name: &str) -> Result<Secret, SourceError> {
        let api: Api<Secret> = Api::namespaced(self.target.client.clone(), self.ns());
        api.get(name).await.map_err(|e| {
            cluster_error(ClusterError::from_kube(
                e,
                &self.api,
                &format!("get secrets in namespace {}", self.ns()),
                &format!("Secret {}/{name}", self.ns()),
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_block_is_found_in_rendered_config() {
        let m = "data:\n  config.hcl: |\n    storage \"raft\" {\n      path = \"/openbao/data\"\n    }\n";
        assert_eq!(
            storage_in_config(m),
            Some((OpenBaoStorage::Raft, "/openbao/data".to_owned()))
        );
        let f = "storage \"file\" {\n  path = \"/vault/file\"\n}\n";
        assert_eq!(
            storage_in_config(f),
            Some((OpenBaoStorage::File, "/vault/file".to_owned()))
        );
        assert_eq!(storage_in_config("storage \"consul\" {}"), None);
        assert_eq!(storage_in_config("nothing"), None);
    }

    #[test]
    fn server_versions_win_and_chart_versions_are_labelled() {
        let (v, w) =
            server_or_chart_version("openbao", Ok(Some("2.4.1".into())), Some("2.4".into()));
        assert_eq!(v.as_deref(), Some("2.4.1"));
        assert!(w.is_none());
        let (v, w) = server_or_chart_version(
            "backend",
            Err("no endpoints available".into()),
            Some("1.0.0".into()),
        );
        assert_eq!(v.as_deref(), Some("1.0.0 (chart appVersion)"));
        let w = w.unwrap();
        assert!(
            w.contains("no endpoints available") && w.contains("1.0.0"),
            "{w}"
        );
        let (v, w) = server_or_chart_version("postgres", Ok(None), None);
        assert!(v.is_none());
        assert!(w.unwrap().contains("no postgres version"));
    }
}
