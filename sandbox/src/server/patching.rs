//! PATCH: merge, JSON, strategic merge and server-side apply, on objects
//! and on their `status` and `scale` subresources.

use serde_json::{Value, json};

use super::http::{self, Query, ok};
use super::router::{RequestInfo, check_kind};
use crate::error::ApiError;
use crate::registry::ResourceType;
use crate::state::Shared;
use crate::store::WriteOptions;
use crate::subresources::Body;

/// The patch flavours, by Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Merge,
    Json,
    Strategic,
    Apply,
}

impl PatchKind {
    pub fn from_media(media: &str) -> Result<Self, ApiError> {
        match media {
            "application/merge-patch+json" => Ok(PatchKind::Merge),
            "application/json-patch+json" => Ok(PatchKind::Json),
            "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchKind::Apply),
            other => Err(ApiError::unsupported_media_type(other)),
        }
    }
}

/// The `autoscaling/v1` Scale of a Deployment/StatefulSet/ReplicaSet.
pub fn scale_of(rt: &ResourceType, obj: &Value) -> Value {
    let selector = obj
        .pointer("/spec/selector")
        .map(crate::selector::object_to_string)
        .unwrap_or_default();
    let _ = rt;
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": obj["metadata"]["name"],
            "namespace": obj["metadata"]["namespace"],
            "uid": obj["metadata"]["uid"],
            "resourceVersion": obj["metadata"]["resourceVersion"],
            "creationTimestamp": obj["metadata"]["creationTimestamp"],
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(0))},
        "status": {
            "replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector,
        },
    })
}

fn parse_patch(kind: PatchKind, body: &[u8]) -> Result<Value, ApiError> {
    match kind {
        PatchKind::Apply => serde_yaml_ng::from_slice::<Value>(body).map_err(|e| {
            ApiError::bad_request(format!("the apply configuration is not valid YAML: {e}"))
        }),
        _ => serde_json::from_slice::<Value>(body)
            .map_err(|e| ApiError::bad_request(format!("the patch is not valid JSON: {e}"))),
    }
}

/// Serves a PATCH. Optimistic concurrency is retried internally unless the
/// patch itself carries a resourceVersion.
pub fn patch(
    shared: &Shared,
    info: &RequestInfo,
    q: &Query,
    media: &str,
    body: &[u8],
) -> Result<hyper::Response<Body>, ApiError> {
    let kind = PatchKind::from_media(media)?;
    let p = parse_patch(kind, body)?;
    let rt = info.rt;
    let ns = info.namespace.as_deref();
    let name = info.name.as_deref().unwrap_or("");
    let opts = WriteOptions {
        dry_run: q.dry_run(),
    };
    let manager = q.get("fieldManager").filter(|m| !m.is_empty());
    let sub = info.subresource.as_deref();

    if sub == Some("scale") {
        let live = shared.store.get(rt, ns, name)?;
        let mut scale = scale_of(rt, &live);
        apply_patch(kind, &mut scale, &p, "Scale")?;
        let replicas = scale.pointer("/spec/replicas").cloned().unwrap_or(json!(0));
        let new = shared
            .store
            .mutate(rt, ns, name, |o| o["spec"]["replicas"] = replicas)?;
        return Ok(ok(&scale_of(rt, &new)));
    }

    for _ in 0..10 {
        let live = shared.store.try_get(rt, ns, name);
        let new = match (kind, live.as_deref()) {
            (PatchKind::Apply, live) => {
                let Some(m) = manager else {
                    return Err(ApiError::bad_request(
                        "PATCH with apply requires the fieldManager query parameter",
                    ));
                };
                check_kind(rt, &p)?;
                if crate::store::name_of(&p) != name && !crate::store::name_of(&p).is_empty() {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({}) does not match the name on the URL ({name})",
                        crate::store::name_of(&p)
                    )));
                }
                let mut applied = p.clone();
                applied["metadata"]["name"] = json!(name);
                super::compat::server_side_apply(rt, live, &applied, m, q.flag("force"))?
            }
            (_, None) => return Err(ApiError::not_found(rt, name)),
            (_, Some(live)) => {
                let mut new = live.clone();
                apply_patch(kind, &mut new, &p, rt.kind)?;
                match manager {
                    Some(m) => super::compat::record_update(Some(live), new, m),
                    None => new,
                }
            }
        };
        let pinned = p.pointer("/metadata/resourceVersion").is_some();
        let created = live.is_none();
        let result = match live {
            None => {
                let mut new = new;
                if let Some(m) = new["metadata"].as_object_mut() {
                    m.remove("resourceVersion");
                }
                shared.store.create_with(rt, ns, new, opts)
            }
            Some(live) => {
                let mut new = new;
                if !pinned {
                    new["metadata"]["resourceVersion"] =
                        live["metadata"]["resourceVersion"].clone();
                }
                if sub == Some("status") {
                    shared.store.update_status_with(rt, ns, new, opts)
                } else {
                    shared.store.update_with(rt, ns, new, opts)
                }
            }
        };
        match result {
            Ok(v) => {
                let status = if created {
                    hyper::StatusCode::CREATED
                } else {
                    hyper::StatusCode::OK
                };
                return Ok(http::json_response(status, &v));
            }
            Err(e) if e.code() == 409 && !pinned => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::conflict(rt, name))
}

fn apply_patch(
    kind: PatchKind,
    target: &mut Value,
    p: &Value,
    kind_name: &str,
) -> Result<(), ApiError> {
    match kind {
        PatchKind::Merge => super::compat::merge_patch(target, p),
        PatchKind::Json => super::compat::json_patch(target, p),
        PatchKind::Strategic => super::compat::strategic_patch(target, p, kind_name),
        PatchKind::Apply => Err(ApiError::bad_request("apply patches need a field manager")),
    }
}
