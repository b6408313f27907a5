//! The API server's version (`GET /version`, readable by every
//! authenticated user).

use crate::cluster::{ApiEndpoint, ClusterError};

pub async fn server_version(
    client: &kube::Client,
    api: &ApiEndpoint,
) -> Result<String, ClusterError> {
    let info = client
        .apiserver_version()
        .await
        .map_err(|e| ClusterError::from_kube(e, api, "get /version", "/version"))?;
    Ok(info.git_version)
}
