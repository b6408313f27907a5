//! The record of upgrade and rollback runs: a ConfigMap
//! `kleidia-upgrade-history` in the namespace holding the last 20 runs as
//! JSON (start, end, phases with their durations, revisions before and
//! after, the backup bundle, the outcome). Written only while holding the
//! upgrade lock, so read-modify-write is safe.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::PostParams;
use serde::{Deserialize, Serialize};

use crate::cluster::{ApiEndpoint, ClusterError};

pub const HISTORY_CONFIGMAP: &str = "kleidia-upgrade-history";
const KEY: &str = "runs.json";
/// How many runs are kept.
pub const KEEP: usize = 20;

/// One run of `upgrade` or `rollback`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    /// `upgrade-20261202T101500Z`.
    pub id: String,
    /// `upgrade`, `rollback`, `upgrade --strategy blue-green`, ...
    pub kind: String,
    pub by: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    /// `running`, `succeeded`, `failed`, `rolled-back`, `interrupted`.
    pub outcome: String,
    /// Where the charts came from (upgrade).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub charts: Option<String>,
    /// The bundle taken first, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    pub phases: Vec<PhaseRecord>,
    pub releases: Vec<ReleaseChange>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How long one phase took.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PhaseRecord {
    /// `plan`, `preflight`, `backup`, `lock`, `helm platform`, `gate
    /// platform`, `rollback services`, ...
    pub name: String,
    pub millis: u64,
    pub ok: bool,
    /// Whether the time was spent in helm or waiting on the cluster (not
    /// kleidia's own work).
    #[serde(default)]
    pub waiting: bool,
}

/// A release's revision before and after the run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseChange {
    pub component: String,
    pub release: String,
    pub revision_before: Option<u32>,
    pub revision_after: Option<u32>,
    pub chart_before: Option<String>,
    pub chart_after: Option<String>,
    pub status_after: Option<String>,
}

/// Reads the recorded runs (oldest first).
pub async fn read(
    client: &kube::Client,
    endpoint: &ApiEndpoint,
    namespace: &str,
) -> Result<Vec<RunRecord>, ClusterError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let cm = api.get_opt(HISTORY_CONFIGMAP).await.map_err(|e| {
        ClusterError::from_kube(
            e,
            endpoint,
            &format!("get configmaps in namespace {namespace}"),
            HISTORY_CONFIGMAP,
        )
    })?;
    Ok(cm
        .and_then(|c| c.data)
        .and_then(|d| d.get(KEY).cloned())
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default())
}

/// Adds or replaces `run` (by id), keeping the last [`KEEP`].
pub async fn record(
    client: &kube::Client,
    endpoint: &ApiEndpoint,
    namespace: &str,
    run: &RunRecord,
) -> Result<(), ClusterError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let err = |e: kube::Error, verb: &str| {
        ClusterError::from_kube(
            e,
            endpoint,
            &format!("{verb} configmaps in namespace {namespace}"),
            HISTORY_CONFIGMAP,
        )
    };
    let existing = api
        .get_opt(HISTORY_CONFIGMAP)
        .await
        .map_err(|e| err(e, "get"))?;
    let mut runs: Vec<RunRecord> = existing
        .as_ref()
        .and_then(|c| c.data.as_ref())
        .and_then(|d| d.get(KEY))
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default();
    match runs.iter_mut().find(|r| r.id == run.id) {
        Some(r) => *r = run.clone(),
        None => runs.push(run.clone()),
    }
    let drop = runs.len().saturating_sub(KEEP);
    runs.drain(..drop);
    let text = serde_json::to_string_pretty(&runs).expect("runs serialise");
    let data = BTreeMap::from([(KEY.to_string(), text)]);
    match existing {
        Some(mut cm) => {
            cm.data = Some(data);
            api.replace(HISTORY_CONFIGMAP, &PostParams::default(), &cm)
                .await
                .map_err(|e| err(e, "update"))?;
        }
        None => {
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(HISTORY_CONFIGMAP.into()),
                    labels: Some(BTreeMap::from([(
                        "app.kubernetes.io/managed-by".to_string(),
                        "kleidia".to_string(),
                    )])),
                    ..Default::default()
                },
                data: Some(data),
                ..Default::default()
            };
            api.create(&PostParams::default(), &cm)
                .await
                .map_err(|e| err(e, "create"))?;
        }
    }
    Ok(())
}

impl RunRecord {
    /// The time kleidia itself spent: everything but helm and the waits.
    pub fn own_millis(&self) -> u64 {
        self.phases
            .iter()
            .filter(|p| !p.waiting)
            .map(|p| p.millis)
            .sum()
    }
}
