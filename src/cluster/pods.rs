//! What a gate does to and asks about single pods: delete one (gracefully),
//! read its recent events and the tail of its log.

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::Api;
use kube::api::{DeleteParams, ListParams, LogParams};

use super::{ApiEndpoint, ClusterError};

/// Deletes `pod` with its own grace period, as `kubectl delete pod` does.
pub async fn delete(
    client: &kube::Client,
    endpoint: &ApiEndpoint,
    namespace: &str,
    pod: &str,
) -> Result<(), ClusterError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    match api.delete(pod, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(ClusterError::from_kube(
            e,
            endpoint,
            &format!("delete pods in namespace {namespace}"),
            &format!("pod {namespace}/{pod}"),
        )),
    }
}

/// The newest events about `object` (`reason: message`), newest last.
pub async fn events(
    client: &kube::Client,
    endpoint: &ApiEndpoint,
    namespace: &str,
    object: &str,
    max: usize,
) -> Result<Vec<String>, ClusterError> {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    let list = api
        .list(&ListParams::default().fields(&format!("involvedObject.name={object}")))
        .await
        .map_err(|e| {
            ClusterError::from_kube(
                e,
                endpoint,
                &format!("list events in namespace {namespace}"),
                "events",
            )
        })?;
    let mut items: Vec<(String, String)> = list
        .items
        .into_iter()
        .map(|e| {
            let when = e
                .last_timestamp
                .as_ref()
                .map(|t| t.0.to_string())
                .or_else(|| e.event_time.as_ref().map(|t| t.0.to_string()))
                .unwrap_or_default();
            let text = format!(
                "{}: {}",
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default().trim()
            );
            (when, text)
        })
        .collect();
    items.sort();
    let skip = items.len().saturating_sub(max);
    Ok(items.into_iter().skip(skip).map(|(_, t)| t).collect())
}

/// The last `lines` lines of a container's log (the previous run's when
/// `previous`), at most 64 KiB.
pub async fn log_tail(
    client: &kube::Client,
    endpoint: &ApiEndpoint,
    namespace: &str,
    pod: &str,
    container: Option<&str>,
    lines: i64,
    previous: bool,
) -> Result<Vec<String>, ClusterError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let lp = LogParams {
        container: container.map(str::to_string),
        tail_lines: Some(lines),
        limit_bytes: Some(64 * 1024),
        previous,
        timestamps: false,
        ..Default::default()
    };
    let text = api.logs(pod, &lp).await.map_err(|e| {
        ClusterError::from_kube(
            e,
            endpoint,
            &format!("get pods/log in namespace {namespace}"),
            &format!("pod {namespace}/{pod}"),
        )
    })?;
    Ok(text.lines().map(str::to_string).collect())
}

/// The whole log of a container since it started (bounded to 256 KiB), for
/// looking for migration lines.
pub async fn log_since_start(
    client: &kube::Client,
    endpoint: &ApiEndpoint,
    namespace: &str,
    pod: &str,
    container: Option<&str>,
) -> Result<String, ClusterError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let lp = LogParams {
        container: container.map(str::to_string),
        limit_bytes: Some(256 * 1024),
        ..Default::default()
    };
    api.logs(pod, &lp).await.map_err(|e| {
        ClusterError::from_kube(
            e,
            endpoint,
            &format!("get pods/log in namespace {namespace}"),
            &format!("pod {namespace}/{pod}"),
        )
    })
}

/// The pods of Job `job` (label `job-name`).
pub async fn of_job(
    client: &kube::Client,
    endpoint: &ApiEndpoint,
    namespace: &str,
    job: &str,
) -> Result<Vec<Pod>, ClusterError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    api.list(&ListParams::default().labels(&format!("job-name={job}")))
        .await
        .map(|l| l.items)
        .map_err(|e| {
            ClusterError::from_kube(
                e,
                endpoint,
                &format!("list pods in namespace {namespace}"),
                "pods",
            )
        })
}
