//! The `versions` report in the shape `-o json` / `-o yaml` print
//! (documented in docs/versions.md).

use serde::Serialize;

pub use crate::compat::CompatibilityRow;
use crate::topology::Component;

/// The report, in the shape `-o json`/`-o yaml` print
/// (documented in docs/versions.md).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionsReport {
    pub namespace: String,
    pub context: String,
    pub server: String,
    pub components: Vec<ComponentRow>,
    pub servers: Servers,
    pub compatibility: Vec<CompatibilityRow>,
    /// The services' green release of a blue-green upgrade, when one
    /// exists, and its backend's health.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub green: Option<GreenRow>,
    /// True when every probe answered, every release is deployed and
    /// everything is compatible (exit code 0).
    pub ok: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentRow {
    pub component: Component,
    pub release: String,
    pub chart: Option<String>,
    pub chart_version: Option<String>,
    pub app_version: Option<String>,
    pub revision: Option<u32>,
    pub status: Option<String>,
    pub first_deployed: Option<String>,
    pub last_deployed: Option<String>,
    pub description: Option<String>,
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<RevisionRow>>,
}

/// A green services release and its backend.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GreenRow {
    #[serde(flatten)]
    pub release: ComponentRow,
    pub backend: BackendServer,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionRow {
    pub revision: u32,
    pub status: String,
    pub chart: Option<String>,
    pub chart_version: Option<String>,
    pub app_version: Option<String>,
    pub last_deployed: Option<String>,
    pub description: String,
}

#[derive(Debug, Clone, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Servers {
    pub kubernetes: KubernetesServer,
    pub helm: HelmClient,
    pub postgresql: PostgresServer,
    pub openbao: OpenbaoServer,
    pub backend: BackendServer,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct KubernetesServer {
    pub version: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct HelmClient {
    /// `None` when no helm binary was found (not an error).
    pub version: Option<String>,
    pub path: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct PostgresServer {
    pub version: Option<String>,
    pub full_version: Option<String>,
    pub pod: Option<String>,
    pub container: Option<String>,
    pub user: Option<String>,
    pub database: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct OpenbaoServer {
    pub version: Option<String>,
    pub initialized: Option<bool>,
    pub sealed: Option<bool>,
    pub pod: Option<String>,
    pub container: Option<String>,
    pub via: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct BackendServer {
    pub version: Option<String>,
    pub status: Option<String>,
    pub http_status: Option<u16>,
    pub service: Option<String>,
    pub port: Option<u16>,
    pub error: Option<String>,
}
