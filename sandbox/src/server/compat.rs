//! The router's bridge to the patch algorithms, protobuf decoding and
//! OpenAPI documents (`crate::patch`, `crate::proto`, `crate::openapi`).

use hyper::{HeaderMap, Response};
use serde_json::Value;

use crate::error::{ApiError, Reason};
use crate::registry::ResourceType;
use crate::subresources::Body;

fn patch_error(e: crate::patch::PatchError) -> ApiError {
    let reason = match e.status_code() {
        422 => Reason::Invalid,
        409 => Reason::Conflict,
        _ => Reason::BadRequest,
    };
    ApiError::new(reason, e.to_string())
}

/// Decodes an `application/vnd.kubernetes.protobuf` body.
pub fn decode_protobuf(body: &[u8]) -> Result<Value, ApiError> {
    if let Some(r) = super::reviews_proto::decode(body) {
        return r;
    }
    crate::proto::decode(body).map_err(|e| {
        let reason = if e.status_code() == 415 {
            Reason::UnsupportedMediaType
        } else {
            Reason::BadRequest
        };
        ApiError::new(reason, e.to_string())
    })
}

pub fn merge_patch(target: &mut Value, patch: &Value) -> Result<(), ApiError> {
    crate::patch::merge::apply(target, patch);
    Ok(())
}

pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), ApiError> {
    crate::patch::json::apply(target, patch).map_err(patch_error)
}

pub fn strategic_patch(target: &mut Value, patch: &Value, kind: &str) -> Result<(), ApiError> {
    crate::patch::strategic::apply(target, patch, kind).map_err(patch_error)
}

/// Server-side apply; conflicts are 409 with one cause per field.
pub fn server_side_apply(
    rt: &ResourceType,
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
) -> Result<Value, ApiError> {
    let mut applied = applied.clone();
    if rt.has_status()
        && let Some(o) = applied.as_object_mut()
    {
        o.remove("status");
    }
    crate::patch::apply::server_side_apply(live, &applied, manager, force, &crate::store::now())
        .map_err(|e| {
            let name = crate::store::name_of(&applied).to_string();
            let mut err = match e.status_code() {
                409 => ApiError::conflict_message(rt, &name, e.to_string()),
                _ => ApiError::bad_request(e.to_string()),
            };
            if let Some(d) = err.details.as_mut() {
                d["causes"] = serde_json::json!(e.causes());
            }
            err
        })
}

/// managedFields for a non-apply write by `manager`.
pub fn record_update(old: Option<&Value>, new: Value, manager: &str) -> Value {
    crate::patch::apply::record_update(old, &new, manager, &crate::store::now())
}

/// `/openapi/v2` (protobuf when accepted, else JSON), `/openapi/v3` and
/// `/openapi/v3/api/v1`, `/openapi/v3/apis/<g>/<v>`.
pub fn openapi(
    rest: &[&str],
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let _ = query;
    let not_found = || super::http::not_found_path("/openapi");
    match rest {
        ["v2"] => {
            let accept = headers
                .get(hyper::header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if accept.contains("protobuf") {
                let (ct, bytes) = crate::openapi::v2_protobuf();
                let mut r = Response::new(crate::subresources::full(bytes));
                if let Ok(v) = hyper::header::HeaderValue::from_str(ct) {
                    r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
                }
                Ok(r)
            } else {
                Ok(super::http::ok(&crate::openapi::v2_json()))
            }
        }
        ["v3"] => Ok(super::http::ok(&crate::openapi::v3_root(
            &crate::openapi::registered_group_versions(),
        ))),
        ["v3", "api", v] => crate::openapi::v3_group_version("", v)
            .map(|d| super::http::ok(&d))
            .ok_or_else(not_found),
        ["v3", "apis", g, v] => crate::openapi::v3_group_version(g, v)
            .map(|d| super::http::ok(&d))
            .ok_or_else(not_found),
        _ => Err(not_found()),
    }
}
