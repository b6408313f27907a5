//! The backend's `/api/health`, fetched through the API server's service
//! proxy (no local port is opened).

use http_body_util::BodyExt;
use serde::Serialize;
use serde_json::Value;

use super::ProbeError;
use crate::cluster::{ApiEndpoint, ClusterError};
use crate::topology::BackendTarget;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BackendHealth {
    pub version: Option<String>,
    /// The health document's `status` field, if any.
    pub status: Option<String>,
    pub http_status: u16,
}

impl BackendHealth {
    pub fn healthy(&self) -> bool {
        (200..300).contains(&self.http_status)
            && self.status.as_deref().is_none_or(|s| {
                matches!(
                    s.to_ascii_lowercase().as_str(),
                    "ok" | "healthy" | "up" | "pass" | "green"
                )
            })
    }
}

pub fn health_path(namespace: &str, target: &BackendTarget) -> String {
    format!(
        "/api/v1/namespaces/{namespace}/services/{}:{}/proxy/api/health",
        target.service, target.port
    )
}

pub async fn health(
    client: &kube::Client,
    api: &ApiEndpoint,
    namespace: &str,
    target: &BackendTarget,
) -> Result<BackendHealth, ProbeError> {
    let path = health_path(namespace, target);
    let req = http::Request::get(&path)
        .body(kube::client::Body::empty())
        .map_err(|e| ProbeError::Answer(e.to_string()))?;
    let action = format!("get services/proxy in namespace {namespace}");
    let shown = format!("service {namespace}/{}", target.service);
    let resp = client
        .send(req)
        .await
        .map_err(|e| ClusterError::from_kube(e, api, &action, &shown))?;
    let code = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| ProbeError::Answer(format!("reading {path}: {e}")))?
        .to_bytes();
    match code {
        401 | 403 | 404
            if serde_json::from_slice::<Value>(&body).is_ok_and(|v| v["kind"] == "Status") =>
        {
            let status: kube::core::Status = serde_json::from_slice(&body)
                .unwrap_or_else(|_| kube::core::Status::failure("", ""));
            let status = kube::core::Status { code, ..status };
            return Err(ClusterError::from_kube(
                kube::Error::Api(status.boxed()),
                api,
                &action,
                &shown,
            )
            .into());
        }
        _ => {}
    }
    parse_health(code, &body).map_err(|reason| {
        let next = if reason.contains("no endpoints available") {
            format!(
                "; no ready pod is behind service {namespace}/{}: check the backend pods with `kubectl get pods,endpoints -n {namespace}` and the Deployment's rollout before retrying",
                target.service
            )
        } else {
            String::new()
        };
        ProbeError::Answer(format!("GET {path} answered {code}: {reason}{next}"))
    })
}

/// Reads the version (`version`, `Version`, `build.version`, `app.version`)
/// and status out of a health document.
pub fn parse_health(code: u16, body: &[u8]) -> Result<BackendHealth, String> {
    let v: Value = serde_json::from_slice(body).map_err(|_| {
        format!(
            "not JSON: {:?}",
            super::postgres::truncate(&String::from_utf8_lossy(body), 120)
        )
    })?;
    let text = |v: &Value| match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let version = ["version", "Version", "appVersion", "app_version"]
        .iter()
        .find_map(|k| v.get(*k).and_then(text))
        .or_else(|| {
            ["build", "app", "info"]
                .iter()
                .find_map(|k| v.get(*k).and_then(|o| o.get("version")).and_then(text))
        });
    let status = ["status", "Status"]
        .iter()
        .find_map(|k| v.get(*k).and_then(text));
    if !(200..300).contains(&code) && version.is_none() {
        // The API server's own Status (the proxy failed, not the backend).
        if v["kind"] == "Status" {
            return Err(format!(
                "the API server's proxy failed: {}",
                v["message"].as_str().unwrap_or("no message")
            ));
        }
        return Err(format!(
            "an error ({})",
            status.unwrap_or_else(|| "no status field".into())
        ));
    }
    Ok(BackendHealth {
        version,
        status,
        http_status: code,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_documents() {
        let h = parse_health(200, br#"{"status":"ok","version":"1.4.0"}"#).unwrap();
        assert_eq!(h.version.as_deref(), Some("1.4.0"));
        assert!(h.healthy());
        let h = parse_health(200, br#"{"status":"healthy","build":{"version":"2.0.1"}}"#).unwrap();
        assert_eq!(h.version.as_deref(), Some("2.0.1"));
        let h = parse_health(503, br#"{"status":"degraded","version":"1.4.0"}"#).unwrap();
        assert!(!h.healthy());
        assert!(parse_health(502, b"bad gateway").is_err());
        assert!(parse_health(500, br#"{"error":"x"}"#).is_err());
        let e = parse_health(
            503,
            br#"{"kind":"Status","status":"Failure","message":"no endpoints available for service","code":503}"#,
        )
        .unwrap_err();
        assert!(e.contains("no endpoints available"), "{e}");
    }
}
