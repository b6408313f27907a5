//! Pod and service subresources that are not plain objects: `exec`,
//! `attach`, `portforward`, `log` and `proxy`.
//!
//! - `exec`/`attach`: WebSocket `v5.channel.k8s.io` / `v4.channel.k8s.io`
//!   ([`exec`]).
//! - `portforward`: WebSocket, kube-rs's protocol ([`portforward`]).
//! - `log`: plain text, optionally followed ([`log`]).
//! - `proxy`: HTTP/1.1 to a container port, for pods and services
//!   ([`proxy`]).

pub mod exec;
pub mod log;
pub mod portforward;
pub mod proxy;
pub mod ws;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::{Request, Response, StatusCode, body::Incoming};
use serde_json::{Value, json};

use crate::controllers::pods;
use crate::registry;
use crate::runtime::{ContainerRef, ImageRuntime};
use crate::state::Shared;

/// The body type every sandbox handler answers with (streaming capable).
pub type Body = BoxBody<Bytes, std::io::Error>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// Which object and subresource a request is for, e.g. `pods`, `kleidia`,
/// `backend-0`, `exec`; `rest` is the path after the subresource (proxy).
#[derive(Debug, Clone)]
pub struct SubresourceTarget {
    pub resource: String,
    pub namespace: String,
    pub name: String,
    pub subresource: String,
    pub rest: String,
}

/// Entry point the API router calls for every subresource it does not
/// handle itself (`status` and `scale` are the router's).
pub async fn serve(
    shared: Arc<Shared>,
    target: SubresourceTarget,
    req: Request<Incoming>,
) -> Response<Body> {
    match (target.resource.as_str(), target.subresource.as_str()) {
        ("pods", "exec") | ("pods", "attach") => serve_exec(shared, target, req).await,
        ("pods", "log") => log::serve(shared, target, req).await,
        ("pods", "portforward") => portforward::serve(shared, target, req).await,
        ("pods", "proxy") | ("services", "proxy") => proxy::serve(shared, target, req).await,
        (resource, sub) => status_response(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("the server could not find the requested resource ({resource}/{sub})"),
        ),
    }
}

async fn serve_exec(
    shared: Arc<Shared>,
    target: SubresourceTarget,
    req: Request<Incoming>,
) -> Response<Body> {
    let opts = exec::StreamOptions::from_query(req.uri().query());
    let attach = target.subresource == "attach";
    if !attach && opts.command.is_empty() {
        return status_response(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "you must specify at least 1 command",
        );
    }
    let (c, rt) = match find_container(
        &shared,
        &target.namespace,
        &target.name,
        opts.container.as_deref(),
        true,
    ) {
        Ok(x) => x,
        Err(resp) => return *resp,
    };
    let kill_after = shared.faults.exec_kill_after(&target.name);
    let runner: exec::Runner = if attach {
        let log_path = c.log_path.clone();
        Box::new(move |io| Box::pin(log::attach(log_path, io)))
    } else {
        let command = opts.command.clone();
        Box::new(move |io| Box::pin(async move { rt.exec(&c, command, io).await }))
    };
    exec::serve(req, opts, kill_after, runner)
}

/// A refused request, boxed (responses are large).
pub type Rejection = Box<Response<Body>>;

/// [`status_response`], boxed.
pub fn reject(code: StatusCode, reason: &str, message: &str) -> Rejection {
    Box::new(status_response(code, reason, message))
}

/// A `Status` failure response like the API server's.
pub fn status_response(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    let mut resp = Response::new(full(body.to_string()));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn api_error_response(e: &crate::error::ApiError) -> Response<Body> {
    let code = StatusCode::from_u16(e.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = Response::new(full(e.to_status().to_string()));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// Finds the pod and one of its containers (the named one, else the
/// `kubectl.kubernetes.io/default-container`, else the first), and the
/// runtime backing it. `running`: the container must be running.
pub fn find_container(
    shared: &Shared,
    namespace: &str,
    pod_name: &str,
    container: Option<&str>,
    running: bool,
) -> Result<(ContainerRef, Arc<dyn ImageRuntime>), Rejection> {
    let pod = shared
        .store
        .get(&registry::PODS, Some(namespace), pod_name)
        .map_err(|e| Box::new(api_error_response(&e)))?;
    let name = match container {
        Some(n) => n.to_string(),
        None => default_container(&pod).ok_or_else(|| {
            reject(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!("pod {pod_name} has no containers"),
            )
        })?,
    };
    let Some(c) = pods::container_ref(shared, &pod, &name) else {
        let names: Vec<&str> = containers(&pod)
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        return Err(reject(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!(
                "container {name} is not valid for pod {pod_name}: choose one of: [{}]",
                names.join(" ")
            ),
        ));
    };
    if running && !pods::container_running(&pod, &name) {
        let phase = pod["status"]["phase"].as_str().unwrap_or("Pending");
        let msg = if phase == "Succeeded" || phase == "Failed" {
            format!("cannot exec into a container in a completed pod; current phase is {phase}")
        } else {
            format!(
                "container {name} is not running in pod {pod_name} (phase {phase}): wait for it with kubectl wait --for=condition=ready pod/{pod_name}"
            )
        };
        return Err(reject(StatusCode::BAD_REQUEST, "BadRequest", &msg));
    }
    let Some(rt) = shared.runtimes.for_image(&c.image) else {
        return Err(reject(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            &format!("no container runtime matches image {}", c.image),
        ));
    };
    Ok((c, rt))
}

fn containers(pod: &Value) -> &[Value] {
    pod["spec"]["containers"]
        .as_array()
        .map(|v| v.as_slice())
        .unwrap_or(&[])
}

fn default_container(pod: &Value) -> Option<String> {
    if let Some(n) =
        pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"].as_str()
    {
        return Some(n.to_string());
    }
    containers(pod)
        .first()
        .and_then(|c| c["name"].as_str())
        .map(str::to_string)
}

/// Decoded `key=value` pairs of a query string (`+` is a space).
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    let Some(q) = query else {
        return Vec::new();
    };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(v) = hex {
                    out.push(v);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_decode_like_go() {
        let q = query_pairs(Some(
            "command=sh&command=-c&command=echo+hi+%3E+%2Ftmp%2Fx&container=db&stdin=true&x=%zz&y=%4",
        ));
        assert_eq!(q[0], ("command".into(), "sh".into()));
        assert_eq!(q[2], ("command".into(), "echo hi > /tmp/x".into()));
        assert_eq!(q[3], ("container".into(), "db".into()));
        assert_eq!(q[5], ("x".into(), "%zz".into()));
        assert_eq!(q[6], ("y".into(), "%4".into()));
    }
}
