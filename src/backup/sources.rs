//! [`BackupSources`] over a live cluster, from one survey of the
//! deployment and the servers' answers: the Helm release records for facts
//! and values, exec for `pg_dumpall` and the OpenBao data-folder archive, a
//! port-forward to OpenBao's API for the raft snapshot.

use std::collections::BTreeMap;
use std::time::Duration;

use age::secrecy::SecretString;
use base64::Engine;
use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;

use crate::backup::create::{
    BackupSources, ClusterFacts, ReleaseSnapshot, SourceError, SourceStream,
};
use crate::backup::manifest::{OpenBaoStorage, ReleaseRecord};
use crate::backup::openbao::{OpenBaoError, raft_snapshot, raft_snapshot_tls};
use crate::backup::pod_trust::{self, Controller, Expected, PodFacts};
use crate::cluster::exec;
use crate::cluster::portforward::PortForwardStream;
use crate::cluster::stall::{DEFAULT_STALL_LIMIT, StallGuard};
use crate::cluster::{ApiEndpoint, ClusterError};
use crate::helm::release::Release;
use crate::survey::{Failure, ServerAnswers, Survey};
use crate::target::{ReleaseNames, Target};
use crate::topology::{OpenbaoTarget, PostgresTarget};

/// The Secret holding OpenBao's static unseal key.
pub const UNSEAL_KEY_SECRET: &str = "openbao-unseal-key";
/// Where the Kleidia chart keeps OpenBao's data (file storage).
const DEFAULT_OPENBAO_DATA: &str = "/openbao/data";

/// Backup sources reading from the cluster `target` points at.
pub struct ClusterSources<'t> {
    target: &'t Target,
    api: ApiEndpoint,
    survey: &'t Survey,
    answers: &'t ServerAnswers,
}

impl<'t> ClusterSources<'t> {
    pub fn new(target: &'t Target, survey: &'t Survey, answers: &'t ServerAnswers) -> Self {
        ClusterSources {
            target,
            api: target.api(),
            survey,
            answers,
        }
    }

    fn ns(&self) -> &str {
        &self.target.namespace
    }

    /// The latest revision of each Kleidia release that exists.
    fn releases_map(&self) -> BTreeMap<String, Release> {
        self.survey
            .releases()
            .iter()
            .filter_map(|r| {
                r.latest
                    .as_ref()
                    .ok()
                    .map(|rel| (r.name.clone(), rel.clone()))
            })
            .collect()
    }

    fn release(&self, name: &str) -> Result<Release, SourceError> {
        self.releases_map().remove(name).ok_or_else(|| {
            SourceError::new(missing_release(
                name,
                self.ns(),
                &self.target.settings.releases,
            ))
        })
    }

    fn postgres(&self) -> Result<PostgresTarget, SourceError> {
        self.survey
            .postgres
            .clone()
            .map_err(|e| SourceError::new(e.to_string()))
    }

    fn openbao(&self) -> Result<OpenbaoTarget, SourceError> {
        self.survey
            .openbao
            .clone()
            .map_err(|e| SourceError::new(e.to_string()))
    }

    /// `storage "raft"` / `storage "file"` in the platform release's
    /// rendered configuration, with the data path.
    fn storage_from_manifest(&self) -> Result<Option<(OpenBaoStorage, String)>, SourceError> {
        let name = self.target.settings.releases.platform.clone();
        let release = self.release(&name)?;
        Ok(storage_in_config(&release.manifest))
    }
}

/// A release that is not there, naming the one flag (and config key)
/// that names it.
fn missing_release(name: &str, ns: &str, releases: &ReleaseNames) -> String {
    let (flag, key) = if name == releases.platform {
        ("--platform-release", "platform")
    } else if name == releases.data {
        ("--data-release", "data")
    } else {
        ("--services-release", "services")
    };
    format!(
        "release {name} not found in namespace {ns}; name the right one with {flag} (or releases.{key} in the config file), or the namespace with -n"
    )
}

/// A server's version as the survey's probes got it.
fn answered<T>(
    answer: &Option<Result<T, Failure>>,
    version: impl FnOnce(&T) -> Option<String>,
) -> Result<Option<String>, String> {
    match answer {
        None => Err("it was not asked".to_owned()),
        Some(Ok(v)) => Ok(version(v)),
        Some(Err(f)) => Err(f.to_string()),
    }
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
            let map = self.releases_map();
            let chart_app = |name: &str| {
                map.get(name)
                    .and_then(|rel| rel.chart_metadata())
                    .map(|m| m.app_version.clone())
                    .filter(|v| !v.is_empty())
            };
            // The servers' own answers, from the probes `versions` uses.
            let a = self.answers;
            let mut versions = BTreeMap::new();
            let mut warnings = Vec::new();
            for (key, release, asked, answer) in [
                (
                    "postgres",
                    &r.data,
                    a.postgres.is_some(),
                    answered(&a.postgres, |v| Some(v.version.clone())),
                ),
                (
                    "openbao",
                    &r.platform,
                    a.openbao.is_some(),
                    answered(&a.openbao, |s| {
                        Some(s.version.clone()).filter(|v| !v.is_empty())
                    }),
                ),
                (
                    "backend",
                    &r.services,
                    a.backend.is_some(),
                    answered(&a.backend, |h| h.version.clone()),
                ),
            ] {
                // A server left alone on purpose (its component is not in
                // this backup) is recorded from its chart, without a word.
                if !asked {
                    if let Some(c) = chart_app(release) {
                        versions.insert(key.to_owned(), format!("{c}{CHART_VERSION_LABEL}"));
                    }
                    continue;
                }
                let (version, warning) = server_or_chart_version(key, answer, chart_app(release));
                if let Some(v) = version {
                    versions.insert(key.to_owned(), v);
                }
                warnings.extend(warning);
            }
            match answered(&a.kubernetes, |v| Some(v.clone())) {
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
            let pg = self.postgres()?;
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
            let why = match &self.answers.openbao {
                Some(Ok(st)) => match st.storage_type.as_deref().and_then(storage_of) {
                    Some(kind) => return Ok(kind),
                    None => "its seal status names no storage type".to_owned(),
                },
                Some(Err(f)) => format!("asking its seal status failed: {f}"),
                None => "it was not asked".to_owned(),
            };
            match self.storage_from_manifest()? {
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
            let bao = self.openbao()?;
            // The token goes to this pod only once it has shown whose it is.
            self.check_openbao_pod(&bao).await?;
            let conn = PortForwardStream::open(
                &self.target.client,
                &self.api,
                self.ns(),
                &bao.pod,
                bao.port,
            )
            .await
            .map_err(cluster_error)?;
            let body = if bao.tls {
                raft_snapshot_tls(conn, "localhost", token).await
            } else {
                raft_snapshot(conn, "localhost", token).await
            }
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
            let bao = self.openbao()?;
            let path = self
                .storage_from_manifest()?
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
            let map = self.releases_map();
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
    /// Refuses OpenBao's pod unless it is controlled by the release's
    /// OpenBao workload, runs the discovered container and the image the
    /// release declares (see [`pod_trust`]).
    async fn check_openbao_pod(&self, bao: &OpenbaoTarget) -> Result<(), SourceError> {
        let ns = self.ns().to_owned();
        let release = self.target.settings.releases.platform.clone();
        let refuse = |why: String| {
            SourceError::new(format!(
                "not sending the OpenBao token to pod {ns}/{}: {why}. Check it with `kubectl get pod -n {ns} {} -o yaml`; if it is not OpenBao's, delete it and run the backup again",
                bao.pod, bao.pod
            ))
        };
        let pod: Pod = self.get_object(&bao.pod, "pods").await?;
        let mut owner = pod_trust::controller_of(pod.metadata.owner_references.as_ref())
            .ok_or_else(|| {
                refuse(format!(
                    "it has no controlling owner reference, so no workload of release {release} created it"
                ))
            })?;
        if owner.kind == "ReplicaSet" {
            let rs: Option<ReplicaSet> = self.find_object(&owner.name, "replicasets").await?;
            let rs = rs.ok_or_else(|| {
                refuse(format!(
                    "its owner reference names ReplicaSet {}, which does not exist in the namespace",
                    owner.name
                ))
            })?;
            if rs.metadata.uid.as_deref() != Some(owner.uid.as_str()) {
                return Err(refuse(format!(
                    "its owner reference names ReplicaSet {} with another uid than that object's",
                    owner.name
                )));
            }
            owner = pod_trust::controller_of(rs.metadata.owner_references.as_ref()).ok_or_else(
                || {
                    refuse(format!(
                        "its ReplicaSet {} has no controlling owner, so no workload of release {release} created it",
                        owner.name
                    ))
                },
            )?;
        }
        let live_uid = self.live_uid(&owner).await?;
        let spec = pod.spec.as_ref();
        let facts = PodFacts {
            name: bao.pod.clone(),
            images: spec
                .map(|s| {
                    s.containers
                        .iter()
                        .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
                        .collect()
                })
                .unwrap_or_default(),
            running: pod
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .map(|cs| {
                    cs.iter()
                        .filter(|c| c.state.as_ref().is_some_and(|st| st.running.is_some()))
                        .map(|c| c.name.clone())
                        .collect()
                })
                .unwrap_or_default(),
        };
        let workloads: Vec<_> = self
            .survey
            .platform
            .workloads
            .iter()
            .map(|w| w.workload.clone())
            .collect();
        let pins = &self.target.settings.pins.openbao;
        let pinned = pins.pod.is_some() || pins.selector.is_some() || bao.workload == "pinned";
        pod_trust::judge(
            &facts,
            &owner,
            live_uid.as_deref(),
            Expected {
                release: &release,
                workloads: &workloads,
                workload: (!pinned).then_some(bao.workload.as_str()),
                container: &bao.container,
            },
        )
        .map_err(refuse)
    }

    /// The uid of the workload `owner` names, `None` when there is none.
    async fn live_uid(&self, owner: &Controller) -> Result<Option<String>, SourceError> {
        let uid = match owner.kind.as_str() {
            "StatefulSet" => self
                .find_object::<StatefulSet>(&owner.name, "statefulsets")
                .await?
                .and_then(|o| o.metadata.uid),
            "Deployment" => self
                .find_object::<Deployment>(&owner.name, "deployments")
                .await?
                .and_then(|o| o.metadata.uid),
            "DaemonSet" => self
                .find_object::<DaemonSet>(&owner.name, "daemonsets")
                .await?
                .and_then(|o| o.metadata.uid),
            _ => None,
        };
        Ok(uid)
    }

    /// Object `name` of type `K` in the namespace (`plural` for messages).
    async fn get_object<K>(&self, name: &str, plural: &str) -> Result<K, SourceError>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned,
        K::DynamicType: Default,
    {
        self.find_object(name, plural).await?.ok_or_else(|| {
            cluster_error(ClusterError::NotFound {
                object: format!("{plural} {}/{name}", self.ns()),
                action: format!("get {plural} in namespace {}", self.ns()),
            })
        })
    }

    /// Like [`Self::get_object`], `None` when it does not exist.
    async fn find_object<K>(&self, name: &str, plural: &str) -> Result<Option<K>, SourceError>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned,
        K::DynamicType: Default,
    {
        let api: Api<K> = Api::namespaced(self.target.client.clone(), self.ns());
        api.get_opt(name).await.map_err(|e| {
            cluster_error(ClusterError::from_kube(
                e,
                &self.api,
                &format!("get {plural} in namespace {}", self.ns()),
                &format!("{plural} {}/{name}", self.ns()),
            ))
        })
    }

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
    fn a_missing_release_names_its_own_flag() {
        let names = ReleaseNames::default();
        for (name, flag, others) in [
            (
                "kleidia-platform",
                "--platform-release",
                ["--data-release", "--services-release"],
            ),
            (
                "kleidia-data",
                "--data-release",
                ["--platform-release", "--services-release"],
            ),
            (
                "kleidia-services",
                "--services-release",
                ["--platform-release", "--data-release"],
            ),
        ] {
            let m = missing_release(name, "kleidia", &names);
            assert!(m.contains(flag) && m.contains(name), "{m}");
            assert!(others.iter().all(|o| !m.contains(o)), "{m}");
        }
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
