//! `pods/{name[:port]}/proxy/{rest}` and `services/{name[:port]}/proxy/{rest}`:
//! the request is forwarded over HTTP/1.1 to a container port
//! (`ImageRuntime::connect`). A service is resolved to a ready pod matching
//! its selector and the service port's `targetPort` (number or name).

use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::header::{HOST, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode, body::Incoming};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::{Body, Rejection, SubresourceTarget, find_container, reject, status_response};
use crate::controllers::pods;
use crate::registry;
use crate::state::Shared;

/// Headers that belong to one hop and are not forwarded, plus the
/// sandbox's own credentials.
const DROP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "authorization",
];

/// `name`, `name:port` or `scheme:name:port` -> (name, port).
fn split_name_port(s: &str) -> (String, Option<String>) {
    let parts: Vec<&str> = s.split(':').collect();
    match parts.as_slice() {
        [name] => (name.to_string(), None),
        [name, port] => (
            name.to_string(),
            Some(port.to_string()).filter(|p| !p.is_empty()),
        ),
        [_scheme, name, port, ..] => (
            name.to_string(),
            Some(port.to_string()).filter(|p| !p.is_empty()),
        ),
        [] => (String::new(), None),
    }
}

pub async fn serve(
    shared: Arc<Shared>,
    target: SubresourceTarget,
    req: Request<Incoming>,
) -> Response<Body> {
    let (name, port_spec) = split_name_port(&target.name);
    let resolved = if target.resource == "services" {
        resolve_service(&shared, &target.namespace, &name, port_spec.as_deref())
    } else {
        resolve_pod(&shared, &target.namespace, &name, port_spec.as_deref())
    };
    let (pod_name, container, port) = match resolved {
        Ok(x) => x,
        Err(resp) => return *resp,
    };
    let (c, rt) = match find_container(
        &shared,
        &target.namespace,
        &pod_name,
        Some(&container),
        true,
    ) {
        Ok(x) => x,
        Err(resp) => return *resp,
    };
    let stream = match rt.connect(&c, port).await {
        Ok(s) => s,
        Err(e) => {
            return status_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                &format!(
                    "error trying to reach service: dial tcp {}:{port}: connect: {e}",
                    pods::pod_ip_of(&shared, &target.namespace, &pod_name)
                ),
            );
        }
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    {
        Ok(x) => x,
        Err(e) => {
            return status_response(
                StatusCode::BAD_GATEWAY,
                "InternalError",
                &format!("error trying to reach {pod_name}:{port}: {e}"),
            );
        }
    };
    tokio::spawn(async move {
        let _ = conn.await;
    });

    let (parts, body) = req.into_parts();
    let mut path = format!("/{}", target.rest.trim_start_matches('/'));
    if let Some(q) = parts.uri.query() {
        path.push('?');
        path.push_str(q);
    }
    let mut builder = Request::builder().method(parts.method.clone()).uri(&path);
    for (k, v) in parts.headers.iter() {
        if DROP.contains(&k.as_str()) || k == HOST {
            continue;
        }
        builder = builder.header(k, v);
    }
    builder = builder.header(
        HOST,
        HeaderValue::from_str(&format!("{pod_name}:{port}"))
            .unwrap_or(HeaderValue::from_static("localhost")),
    );
    let out = match builder.body(body) {
        Ok(r) => r,
        Err(e) => {
            return status_response(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string());
        }
    };
    match sender.send_request(out).await {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            for h in DROP {
                parts.headers.remove(HeaderName::from_static(h));
            }
            Response::from_parts(parts, body.map_err(std::io::Error::other).boxed())
        }
        Err(e) => status_response(
            StatusCode::BAD_GATEWAY,
            "InternalError",
            &format!("error trying to reach {pod_name}:{port}: {e}"),
        ),
    }
}

/// A pod's port: a number, a container port name, or (none given) the
/// first declared port.
fn resolve_pod(
    shared: &Shared,
    ns: &str,
    name: &str,
    port: Option<&str>,
) -> Result<(String, String, u16), Rejection> {
    let pod = shared
        .store
        .get(&registry::PODS, Some(ns), name)
        .map_err(|e| Box::new(super::api_error_response(&e)))?;
    let (container, port) = pod_port(&pod, port).ok_or_else(|| {
        reject(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!(
                "pod {name} has no port {}: name a declared container port or a number",
                port.unwrap_or("(none given)")
            ),
        )
    })?;
    Ok((name.to_string(), container, port))
}

fn pod_port(pod: &Value, port: Option<&str>) -> Option<(String, u16)> {
    let containers = pod["spec"]["containers"].as_array()?;
    let first_name = containers.first()?["name"].as_str()?.to_string();
    let declared = containers.iter().flat_map(|c| {
        let cname = c["name"].as_str().unwrap_or("").to_string();
        c["ports"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(move |p| (cname.clone(), p))
    });
    let declared: Vec<(String, Value)> = declared.collect();
    match port {
        None => declared
            .first()
            .and_then(|(c, p)| Some((c.clone(), p["containerPort"].as_u64()? as u16)))
            .or(Some((first_name, 80))),
        Some(p) => {
            if let Ok(n) = p.parse::<u16>() {
                let c = declared
                    .iter()
                    .find(|(_, d)| d["containerPort"].as_u64() == Some(n as u64))
                    .map(|(c, _)| c.clone())
                    .unwrap_or(first_name);
                Some((c, n))
            } else {
                declared
                    .iter()
                    .find(|(_, d)| d["name"].as_str() == Some(p))
                    .and_then(|(c, d)| Some((c.clone(), d["containerPort"].as_u64()? as u16)))
            }
        }
    }
}

/// A service's port (by name or number; the first when none given), a
/// ready pod matching its selector, and the port's `targetPort` on it.
fn resolve_service(
    shared: &Shared,
    ns: &str,
    name: &str,
    port: Option<&str>,
) -> Result<(String, String, u16), Rejection> {
    let svc = shared
        .store
        .get(&registry::SERVICES, Some(ns), name)
        .map_err(|e| Box::new(super::api_error_response(&e)))?;
    let ports = svc["spec"]["ports"].as_array().cloned().unwrap_or_default();
    let sp = match port {
        None => ports.first().cloned(),
        Some(p) => ports
            .iter()
            .find(|sp| {
                sp["name"].as_str() == Some(p)
                    || sp["port"].as_u64().map(|n| n.to_string()).as_deref() == Some(p)
            })
            .cloned(),
    };
    let Some(sp) = sp else {
        return Err(reject(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            &format!(
                "no endpoints available for service \"{name}\" (it has no port {})",
                port.unwrap_or("at all")
            ),
        ));
    };
    let selector = svc["spec"]["selector"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let no_endpoints = || {
        super::reject(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            &format!("no endpoints available for service \"{name}\""),
        )
    };
    if selector.is_empty() {
        return Err(no_endpoints());
    }
    let mut candidates: Vec<Arc<Value>> = shared
        .store
        .snapshot(&registry::PODS, Some(ns))
        .into_iter()
        .filter(|p| {
            selector
                .iter()
                .all(|(k, v)| p["metadata"]["labels"][k.as_str()] == *v)
                && pods::is_ready(p)
                && p["metadata"]["deletionTimestamp"].is_null()
        })
        .collect();
    candidates.sort_by(|a, b| {
        a["metadata"]["name"]
            .as_str()
            .cmp(&b["metadata"]["name"].as_str())
    });
    let Some(pod) = candidates.first() else {
        return Err(no_endpoints());
    };
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
    let target = &sp["targetPort"];
    let resolved = if let Some(n) = target.as_u64() {
        pod_port(pod, Some(&n.to_string()))
    } else if let Some(s) = target.as_str() {
        pod_port(pod, Some(s))
    } else {
        let n = sp["port"].as_u64().unwrap_or(80);
        pod_port(pod, Some(&n.to_string()))
    };
    let (container, port) = resolved.ok_or_else(no_endpoints)?;
    Ok((pod_name, container, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_ports() {
        assert_eq!(split_name_port("svc"), ("svc".into(), None));
        assert_eq!(
            split_name_port("svc:http"),
            ("svc".into(), Some("http".into()))
        );
        assert_eq!(
            split_name_port("https:svc:8443"),
            ("svc".into(), Some("8443".into()))
        );
    }

    #[test]
    fn pod_ports_by_name_number_and_default() {
        let pod = serde_json::json!({"spec": {"containers": [
            {"name": "a", "ports": [{"name": "http", "containerPort": 8080}]},
            {"name": "b", "ports": [{"name": "metrics", "containerPort": 9090}]},
        ]}});
        assert_eq!(pod_port(&pod, None), Some(("a".into(), 8080)));
        assert_eq!(pod_port(&pod, Some("metrics")), Some(("b".into(), 9090)));
        assert_eq!(pod_port(&pod, Some("9090")), Some(("b".into(), 9090)));
        assert_eq!(pod_port(&pod, Some("nope")), None);
    }
}
