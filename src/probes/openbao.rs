//! OpenBao's version and seal state: `GET /v1/sys/seal-status` through the
//! API server's pod proxy, else `bao status -format=json` in its pod (then
//! `vault`; exit code 2 means sealed, not failure).

use serde::{Deserialize, Serialize};

use super::ProbeError;
use crate::cluster::exec;
use crate::cluster::{ApiEndpoint, ClusterError};
use crate::topology::OpenbaoTarget;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct OpenbaoStatus {
    pub version: String,
    pub initialized: bool,
    pub sealed: bool,
    /// The storage backend the server runs (`raft`, `file`), when it says.
    pub storage_type: Option<String>,
    /// How the answer was obtained (`bao status`, `vault status`,
    /// `pod proxy`).
    pub via: String,
}

#[derive(Deserialize)]
struct SealStatus {
    #[serde(default)]
    version: String,
    initialized: bool,
    sealed: bool,
    #[serde(default)]
    storage_type: Option<String>,
}

impl SealStatus {
    fn answered_via(self, via: String) -> OpenbaoStatus {
        OpenbaoStatus {
            version: self.version,
            initialized: self.initialized,
            sealed: self.sealed,
            storage_type: self.storage_type.filter(|s| !s.is_empty()),
            via,
        }
    }
}

pub async fn status(
    client: &kube::Client,
    api: &ApiEndpoint,
    namespace: &str,
    target: &OpenbaoTarget,
) -> Result<OpenbaoStatus, ProbeError> {
    // One HTTP request through the pod proxy is the cheapest answer; exec of
    // the CLI (which starts a process in the pod) is the fallback, e.g. when
    // pods/proxy is not granted.
    let mut failures: Vec<String> = Vec::new();
    match proxy_status(client, api, namespace, target).await {
        Ok(s) => return Ok(s),
        Err(e) => failures.push(e.to_string()),
    }
    for bin in ["bao", "vault"] {
        match exec_status(client, api, namespace, target, bin).await {
            Ok(s) => return Ok(s),
            // The API refused the exec itself (forbidden, pod not running):
            // another binary name would meet the same answer.
            Err(e @ ProbeError::Exec(exec::ExecError::Cluster(_))) => {
                let e = e.to_string();
                if !failures.contains(&e) {
                    failures.push(e);
                }
                break;
            }
            Err(e) => failures.push(e.to_string()),
        }
    }
    Err(ProbeError::Answer(failures.join("; ")))
}

async fn exec_status(
    client: &kube::Client,
    api: &ApiEndpoint,
    namespace: &str,
    target: &OpenbaoTarget,
    bin: &str,
) -> Result<OpenbaoStatus, ProbeError> {
    let out = exec::run(
        client,
        api,
        namespace,
        &target.pod,
        Some(&target.container),
        &[bin, "status", "-format=json"],
        256 * 1024,
    )
    .await?;
    // `status` exits 2 when sealed: an answer, not a failure.
    if !matches!(out.outcome.code(), Some(0) | Some(2)) {
        return Err(ProbeError::Answer(format!(
            "{bin} status in pod {}: {}",
            target.pod,
            out.outcome.describe()
        )));
    }
    let parsed: SealStatus = serde_json::from_slice(&out.stdout).map_err(|e| {
        ProbeError::Answer(format!(
            "{bin} status in pod {} printed no seal status JSON ({e})",
            target.pod
        ))
    })?;
    Ok(parsed.answered_via(format!("{bin} status")))
}

/// The API server's pod proxy path to `api_path` on OpenBao's listener:
/// `https:<pod>:<port>` when the listener speaks TLS, so the API server
/// speaks TLS to it (a plain request would be refused by the listener).
fn proxy_path(namespace: &str, target: &OpenbaoTarget, api_path: &str) -> String {
    let scheme = if target.tls { "https:" } else { "" };
    format!(
        "/api/v1/namespaces/{namespace}/pods/{scheme}{}:{}/proxy{api_path}",
        target.pod, target.port
    )
}

async fn proxy_status(
    client: &kube::Client,
    api: &ApiEndpoint,
    namespace: &str,
    target: &OpenbaoTarget,
) -> Result<OpenbaoStatus, ProbeError> {
    let path = proxy_path(namespace, target, "/v1/sys/seal-status");
    let req = http::Request::get(&path)
        .body(Vec::new())
        .map_err(|e| ProbeError::Answer(e.to_string()))?;
    let text = client.request_text(req).await.map_err(|e| {
        ClusterError::from_kube(
            e,
            api,
            &format!("get pods/proxy in namespace {namespace}"),
            &format!("pod {namespace}/{}", target.pod),
        )
    })?;
    let parsed: SealStatus = serde_json::from_str(&text).map_err(|e| {
        ProbeError::Answer(format!("GET {path} did not return seal status JSON ({e})"))
    })?;
    Ok(parsed.answered_via("pod proxy".into()))
}

/// What `GET /v1/sys/leader` says (unauthenticated): whether this node is
/// the active one in an HA cluster.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Deserialize)]
pub struct LeaderStatus {
    #[serde(default)]
    pub ha_enabled: bool,
    #[serde(default)]
    pub is_self: bool,
    #[serde(default)]
    pub leader_address: String,
}

/// Asks the pod `target` names whether it is the active node, through the
/// API server's pod proxy.
pub async fn leader(
    client: &kube::Client,
    api: &ApiEndpoint,
    namespace: &str,
    target: &OpenbaoTarget,
) -> Result<LeaderStatus, ProbeError> {
    let path = proxy_path(namespace, target, "/v1/sys/leader");
    let req = http::Request::get(&path)
        .body(Vec::new())
        .map_err(|e| ProbeError::Answer(e.to_string()))?;
    let text = client.request_text(req).await.map_err(|e| {
        ClusterError::from_kube(
            e,
            api,
            &format!("get pods/proxy in namespace {namespace}"),
            &format!("pod {namespace}/{}", target.pod),
        )
    })?;
    serde_json::from_str(&text)
        .map_err(|e| ProbeError::Answer(format!("GET {path} did not return leader JSON ({e})")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tls_listener_is_reached_through_the_https_proxy() {
        let mut t = OpenbaoTarget {
            workload: "StatefulSet bao".into(),
            pod: "bao-0".into(),
            container: "openbao".into(),
            port: 8200,
            tls: false,
        };
        assert_eq!(
            proxy_path("ns", &t, "/v1/sys/seal-status"),
            "/api/v1/namespaces/ns/pods/bao-0:8200/proxy/v1/sys/seal-status"
        );
        t.tls = true;
        assert_eq!(
            proxy_path("ns", &t, "/v1/sys/leader"),
            "/api/v1/namespaces/ns/pods/https:bao-0:8200/proxy/v1/sys/leader"
        );
    }
}
