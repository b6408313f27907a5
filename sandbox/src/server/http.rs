//! HTTP plumbing: query strings, bodies, content negotiation, responses.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::Value;

use crate::error::ApiError;
use crate::subresources::{Body, full};

/// Largest request body accepted (Helm release Secrets can be large).
const MAX_BODY: usize = 64 << 20;

/// A parsed query string (repeated keys kept in order).
#[derive(Debug, Clone, Default)]
pub struct Query(pub Vec<(String, String)>);

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(
                    std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"),
                    16,
                ) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Query {
    pub fn parse(q: Option<&str>) -> Self {
        Query(
            q.unwrap_or("")
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once('=') {
                    Some((k, v)) => (percent_decode(k), percent_decode(v)),
                    None => (percent_decode(p), String::new()),
                })
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true") | Some("1") | Some(""))
    }

    pub fn usize(&self, key: &str) -> Result<Option<usize>, ApiError> {
        self.get(key)
            .filter(|v| !v.is_empty())
            .map(|v| {
                v.parse().map_err(|_| {
                    ApiError::bad_request(format!("{key}={v:?} is not a non-negative integer"))
                })
            })
            .transpose()
    }

    pub fn dry_run(&self) -> bool {
        self.0.iter().any(|(k, v)| k == "dryRun" && v == "All")
    }
}

/// The media types of an `Accept` header, each with its parameters.
fn accept_entries(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(hyper::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().replace(' ', "").to_ascii_lowercase())
        .collect()
}

/// Whether an Accept entry has all these `key=value` parameters.
fn has_params(entry: &str, want: &[&str]) -> bool {
    let params: Vec<&str> = entry.split(';').skip(1).collect();
    want.iter().all(|w| params.contains(w))
}

/// Whether the client asked for `meta.k8s.io/v1` Table output.
pub fn wants_table(headers: &HeaderMap) -> bool {
    accept_entries(headers)
        .iter()
        .any(|e| has_params(e, &["as=table", "g=meta.k8s.io", "v=v1"]))
}

/// Whether the client asked for `PartialObjectMetadata(List)` and not a Table.
pub fn wants_partial_metadata(headers: &HeaderMap) -> bool {
    !wants_table(headers)
        && accept_entries(headers)
            .iter()
            .any(|e| e.contains("as=partialobjectmetadata"))
}

/// Whether the client asked for aggregated discovery v2.
pub fn wants_aggregated(headers: &HeaderMap) -> bool {
    accept_entries(headers).iter().any(|e| {
        has_params(
            e,
            &["as=apigroupdiscoverylist", "g=apidiscovery.k8s.io", "v=v2"],
        )
    })
}

pub fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    json_response_typed(status, v, "application/json")
}

pub fn json_response_typed(status: StatusCode, v: &Value, content_type: &str) -> Response<Body> {
    let mut resp = Response::new(full(serde_json::to_vec(v).unwrap_or_default()));
    *resp.status_mut() = status;
    if let Ok(ct) = HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(CONTENT_TYPE, ct);
    }
    resp
}

pub fn ok(v: &Value) -> Response<Body> {
    json_response(StatusCode::OK, v)
}

pub fn error_response(e: &ApiError) -> Response<Body> {
    let status = StatusCode::from_u16(e.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = json_response(status, &e.to_status());
    if let Some(s) = e.retry_after
        && let Ok(v) = HeaderValue::from_str(&s.to_string())
    {
        resp.headers_mut().insert(hyper::header::RETRY_AFTER, v);
    }
    if e.code() == 401 {
        resp.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"kleidia-sandbox\""),
        );
    }
    resp
}

/// The 404 for a path that names no resource (worded like a real server;
/// `details.causes` names the path).
pub fn not_found_path(path: &str) -> ApiError {
    ApiError {
        details: Some(serde_json::json!({
            "causes": [{"reason": "UnexpectedServerResponse", "message": format!("404 page not found: {path}")}]
        })),
        ..ApiError::new(
            crate::error::Reason::NotFound,
            "the server could not find the requested resource",
        )
    }
}

/// Reads the whole request body (bounded).
pub async fn read_body(body: hyper::body::Incoming) -> Result<Bytes, ApiError> {
    let limited = http_body_util::Limited::new(body, MAX_BODY);
    limited
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| ApiError::bad_request(format!("reading the request body failed: {e}")))
}

/// The media type of a Content-Type header, lower-cased, without parameters.
pub fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Decodes an object body: JSON, YAML or Kubernetes protobuf.
pub fn decode_object(media: &str, body: &[u8]) -> Result<Value, ApiError> {
    let v = match media {
        "" | "application/json" | "*/*" => serde_json::from_slice::<Value>(body).map_err(|e| {
            ApiError::bad_request(format!("the request body is not valid JSON: {e}"))
        })?,
        "application/yaml"
        | "application/x-yaml"
        | "text/yaml"
        | "application/apply-patch+yaml" => {
            serde_yaml_ng::from_slice::<Value>(body).map_err(|e| {
                ApiError::bad_request(format!("the request body is not valid YAML: {e}"))
            })?
        }
        "application/vnd.kubernetes.protobuf" => super::compat::decode_protobuf(body)?,
        other => return Err(ApiError::unsupported_media_type(other)),
    };
    if !v.is_object() {
        return Err(ApiError::bad_request("the request body must be an object"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = Query::parse(Some(
            "labelSelector=app%3Dweb%2Ctier+in+(a)&watch=1&command=ls&command=-l",
        ));
        assert_eq!(q.get("labelSelector"), Some("app=web,tier in (a)"));
        assert!(q.flag("watch"));
        assert_eq!(q.0.iter().filter(|(k, _)| k == "command").count(), 2);
    }

    #[test]
    fn negotiation() {
        let mut h = HeaderMap::new();
        h.insert(
            hyper::header::ACCEPT,
            HeaderValue::from_static("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"),
        );
        assert!(wants_table(&h));
        h.insert(
            hyper::header::ACCEPT,
            HeaderValue::from_static("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"),
        );
        assert!(wants_aggregated(&h));
        assert!(!wants_table(&h));
    }
}
