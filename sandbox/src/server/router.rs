//! Request routing: authentication, faults, authorization, then one
//! generic handler per verb for every registered type.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use super::http::{self, Query, error_response, ok};
use super::requests::RequestKey;
use super::table::{self, IncludeObject};
use super::{patching, reviews, watch};
use crate::authz::Attributes;
use crate::error::ApiError;
use crate::registry::{self, ResourceType};
use crate::state::Shared;
use crate::store::{DeleteOptions, ListOptions, Propagation, WriteOptions};
use crate::subresources::{self, Body, SubresourceTarget};

/// What a resource request is about, parsed from its path.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    pub rt: &'static ResourceType,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// The path after the subresource (proxy).
    pub rest: String,
    /// `/watch/` legacy path prefix.
    pub legacy_watch: bool,
}

/// The request-serving context shared by all connections.
pub struct Context {
    pub shared: Arc<Shared>,
    pub token: String,
    /// What was served, for tests (see [`super::requests`]).
    pub requests: Arc<super::requests::Requests>,
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authenticated(ctx: &Context, req: &Request<Incoming>) -> bool {
    req.headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| constant_time_eq(t.trim().as_bytes(), ctx.token.as_bytes()))
}

/// Serves one request and counts it (the sandbox's own `/sandbox/`
/// endpoints are not counted).
pub async fn handle(ctx: Arc<Context>, req: Request<Incoming>) -> Response<Body> {
    let key = (!req.uri().path().starts_with("/sandbox/")).then(|| request_key(&req));
    let resp = serve_one(&ctx, req).await;
    if let Some(key) = key {
        ctx.requests.record(key, resp.status().as_u16());
    }
    resp
}

/// How a request is counted: its resource and verb, or its path.
fn request_key(req: &Request<Incoming>) -> RequestKey {
    let path = req.uri().path();
    let segs = segments(path);
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    match parse_resource_path(&s) {
        Some(info) => {
            let q = Query::parse(req.uri().query());
            RequestKey {
                verb: verb_of(req.method(), &info, &q).to_string(),
                group: info.rt.group.to_string(),
                resource: info.rt.plural.to_string(),
                subresource: info.subresource.unwrap_or_default(),
                namespace: info.namespace.unwrap_or_default(),
                dry_run: q.dry_run(),
                path: String::new(),
            }
        }
        None => RequestKey {
            verb: req.method().as_str().to_ascii_lowercase(),
            path: path.to_string(),
            ..Default::default()
        },
    }
}

async fn serve_one(ctx: &Context, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    match path.as_str() {
        "/healthz" | "/readyz" | "/livez" => {
            let mut r = Response::new(subresources::full("ok"));
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            return r;
        }
        "/version" | "/version/" => return ok(&crate::discovery::version()),
        _ => {}
    }
    if !authenticated(ctx, &req) {
        return error_response(&ApiError::unauthorized());
    }
    if !path.starts_with("/sandbox/") {
        if let Some(d) = ctx.shared.faults.latency(&path) {
            tokio::time::sleep(d).await;
        }
        if let Some(e) = ctx.shared.faults.injected_error(&path) {
            return error_response(&e);
        }
    }
    match route(ctx, req, &path).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    }
}

fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// `/api` (`core`) or `/apis`: aggregated discovery when the request
/// accepts it, else `plain()`.
fn discovery_root(req: &Request<Incoming>, core: bool, plain: fn() -> Value) -> Response<Body> {
    if http::wants_aggregated(req.headers()) {
        http::json_response_typed(
            StatusCode::OK,
            &crate::discovery::aggregated(core),
            crate::discovery::AGGREGATED_CONTENT_TYPE,
        )
    } else {
        ok(&plain())
    }
}

async fn route(
    ctx: &Context,
    req: Request<Incoming>,
    path: &str,
) -> Result<Response<Body>, ApiError> {
    let segs = segments(path);
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let is_get = req.method() == Method::GET;
    match s.as_slice() {
        ["sandbox", "faults"] => return super::admin::faults(ctx, req).await,
        ["sandbox", "authz"] => return super::admin::authz(ctx, req).await,
        ["sandbox", "requests"] => return super::admin::requests(ctx, req),
        // Discovery roots: the aggregated document when the client asks
        // for it, else the plain list.
        ["api"] if is_get => {
            return Ok(discovery_root(&req, true, crate::discovery::core_versions));
        }
        ["apis"] if is_get => {
            return Ok(discovery_root(&req, false, crate::discovery::group_list));
        }
        ["api", "v1"] if is_get => {
            return crate::discovery::resource_list("", "v1")
                .map(|v| ok(&v))
                .ok_or_else(|| http::not_found_path(path));
        }
        ["apis", g] if is_get => {
            return crate::discovery::group(g)
                .map(|v| ok(&v))
                .ok_or_else(|| http::not_found_path(path));
        }
        ["apis", g, v] if is_get => {
            return crate::discovery::resource_list(g, v)
                .map(|v| ok(&v))
                .ok_or_else(|| http::not_found_path(path));
        }
        ["openapi", ..] if is_get => {
            return super::compat::openapi(&s[1..], req.headers(), req.uri().query());
        }
        _ => {}
    }
    let info = parse_resource_path(&s).ok_or_else(|| http::not_found_path(path))?;
    let query = Query::parse(req.uri().query());
    let verb = verb_of(req.method(), &info, &query);
    let attrs = Attributes {
        verb: verb.to_string(),
        group: info.rt.group.to_string(),
        resource: info.rt.plural.to_string(),
        subresource: info.subresource.clone(),
        namespace: info.namespace.clone(),
        name: info.name.clone(),
    };
    if !ctx.shared.authz.allowed(&attrs) {
        return Err(ApiError::forbidden(attrs.forbidden_message()));
    }
    if let Some(sub) = info.subresource.as_deref()
        && !matches!(sub, "status" | "scale")
    {
        if !info.rt.has_subresource(sub) {
            return Err(http::not_found_path(path));
        }
        let target = SubresourceTarget {
            resource: info.rt.plural.to_string(),
            namespace: info.namespace.clone().unwrap_or_default(),
            name: info.name.clone().unwrap_or_default(),
            subresource: sub.to_string(),
            rest: info.rest.clone(),
        };
        return Ok(subresources::serve(ctx.shared.clone(), target, req).await);
    }
    if let Some(sub) = info.subresource.as_deref()
        && !info.rt.has_subresource(sub)
    {
        return Err(http::not_found_path(path));
    }
    let sub_verb = info.subresource.is_some() && matches!(verb, "get" | "update" | "patch");
    if !info.rt.allows(verb) && !sub_verb {
        return Err(ApiError::method_not_allowed(format!(
            "{} is not supported on {}",
            verb.to_uppercase(),
            info.rt.qualified_plural()
        )));
    }
    let shared = &ctx.shared;
    match verb {
        "get" => get(shared, &info, &query, req.headers()),
        "list" => list(shared, &info, &query, req.headers()),
        "watch" => watch::serve(shared.clone(), &info, &query, req.headers()),
        "create" => {
            let media = http::media_type(req.headers());
            let body = http::read_body(req.into_body()).await?;
            create(shared, &info, &query, &media, &body)
        }
        "update" => {
            let media = http::media_type(req.headers());
            let body = http::read_body(req.into_body()).await?;
            update(shared, &info, &query, &media, &body)
        }
        "patch" => {
            let media = http::media_type(req.headers());
            let body = http::read_body(req.into_body()).await?;
            patching::patch(shared, &info, &query, &media, &body)
        }
        "delete" | "deletecollection" => {
            let media = http::media_type(req.headers());
            let body = http::read_body(req.into_body()).await?;
            delete(
                shared,
                &info,
                &query,
                &media,
                &body,
                verb == "deletecollection",
            )
        }
        _ => Err(ApiError::method_not_allowed("method not allowed")),
    }
}

/// `/api/v1/...` or `/apis/<g>/<v>/...` into a [`RequestInfo`].
pub fn parse_resource_path(s: &[&str]) -> Option<RequestInfo> {
    let (group, version, rest) = match s {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    let (legacy_watch, rest) = match rest {
        ["watch", r @ ..] => (true, r),
        r => (false, r),
    };
    let lookup = |plural: &str| registry::lookup(group, version, plural);
    let (namespace, rest): (Option<String>, &[&str]) = match rest {
        // /namespaces/{name}[/status|finalize] is the namespace itself.
        ["namespaces", ns, plural, r @ ..] if !matches!(*plural, "status" | "finalize") => {
            (Some(ns.to_string()), {
                let idx = rest.len() - r.len() - 1;
                &rest[idx..]
            })
        }
        r => (None, r),
    };
    let (rt, name, sub, tail) = match rest {
        [plural] => (lookup(plural)?, None, None, &[][..]),
        [plural, name] => (lookup(plural)?, Some(name.to_string()), None, &[][..]),
        [plural, name, sub, tail @ ..] => (
            lookup(plural)?,
            Some(name.to_string()),
            Some(sub.to_string()),
            tail,
        ),
        _ => return None,
    };
    if rt.namespaced != namespace.is_some()
        && !(rt.namespaced && namespace.is_none() && name.is_none())
    {
        return None;
    }
    let rest = if tail.is_empty() {
        String::new()
    } else {
        format!("/{}", tail.join("/"))
    };
    Some(RequestInfo {
        rt,
        namespace,
        name,
        subresource: sub,
        rest,
        legacy_watch,
    })
}

fn verb_of(method: &Method, info: &RequestInfo, q: &Query) -> &'static str {
    // Streams are authorized as `create` whatever the method (kubectl's
    // WebSocket exec is a GET), as a real server does since 1.31.
    if matches!(
        info.subresource.as_deref(),
        Some("exec" | "attach" | "portforward")
    ) {
        return "create";
    }
    match *method {
        Method::GET | Method::HEAD => {
            if info.legacy_watch || q.flag("watch") {
                "watch"
            } else if info.name.is_some() {
                "get"
            } else {
                "list"
            }
        }
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => {
            if info.name.is_some() {
                "delete"
            } else {
                "deletecollection"
            }
        }
        _ => "unknown",
    }
}

fn ns(info: &RequestInfo) -> Option<&str> {
    info.namespace.as_deref()
}

fn name(info: &RequestInfo) -> &str {
    info.name.as_deref().unwrap_or("")
}

/// Renders one object as the client asked (Table, metadata, or itself).
fn render_one(
    rt: &ResourceType,
    obj: Value,
    q: &Query,
    headers: &hyper::HeaderMap,
) -> Response<Body> {
    if http::wants_table(headers) {
        let rv = obj
            .pointer("/metadata/resourceVersion")
            .cloned()
            .unwrap_or(json!(""));
        return ok(&table::table(
            rt,
            &[obj],
            IncludeObject::parse(q.get("includeObject")),
            json!({"resourceVersion": rv}),
            true,
        ));
    }
    if http::wants_partial_metadata(headers) {
        return ok(&table::partial_metadata(&obj));
    }
    ok(&obj)
}

fn get(
    shared: &Shared,
    info: &RequestInfo,
    q: &Query,
    headers: &hyper::HeaderMap,
) -> Result<Response<Body>, ApiError> {
    let obj = shared.store.get(info.rt, ns(info), name(info))?;
    if info.subresource.as_deref() == Some("scale") {
        return Ok(ok(&patching::scale_of(info.rt, &obj)));
    }
    Ok(render_one(info.rt, obj, q, headers))
}

pub fn list_options(q: &Query) -> Result<ListOptions, ApiError> {
    ListOptions::parse(
        q.get("labelSelector"),
        q.get("fieldSelector"),
        q.usize("limit")?,
        q.get("continue"),
    )
}

fn list(
    shared: &Shared,
    info: &RequestInfo,
    q: &Query,
    headers: &hyper::HeaderMap,
) -> Result<Response<Body>, ApiError> {
    let list = shared.store.list(info.rt, ns(info), &list_options(q)?)?;
    if http::wants_table(headers) {
        let mut meta = json!({"resourceVersion": list.resource_version.to_string()});
        if let Some(c) = &list.continue_token {
            meta["continue"] = json!(c);
        }
        return Ok(ok(&table::table(
            info.rt,
            &list.items,
            IncludeObject::parse(q.get("includeObject")),
            meta,
            true,
        )));
    }
    let mut out = list.to_json(info.rt);
    if http::wants_partial_metadata(headers) {
        out["kind"] = json!("PartialObjectMetadataList");
        out["apiVersion"] = json!("meta.k8s.io/v1");
        out["items"] = json!(
            list.items
                .iter()
                .map(table::partial_metadata)
                .collect::<Vec<_>>()
        );
    }
    Ok(ok(&out))
}

/// Records managedFields for a non-apply write with a `fieldManager`.
fn with_manager(q: &Query, old: Option<&Value>, new: Value) -> Value {
    match q.get("fieldManager").filter(|m| !m.is_empty()) {
        Some(m) => super::compat::record_update(old, new, m),
        None => new,
    }
}

fn create(
    shared: &Shared,
    info: &RequestInfo,
    q: &Query,
    media: &str,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    if info.name.is_some() && info.subresource.is_none() {
        return Err(ApiError::method_not_allowed(format!(
            "POST on a named {} is not supported; POST to the collection",
            info.rt.plural
        )));
    }
    let obj = http::decode_object(media, body)?;
    if let Some(r) = reviews::answer(shared, info.rt, &obj) {
        return r.map(|v| http::json_response(StatusCode::CREATED, &v));
    }
    if !info.rt.allows("create") {
        return Err(ApiError::method_not_allowed("create is not supported"));
    }
    check_kind(info.rt, &obj)?;
    let obj = with_manager(q, None, obj);
    let created = shared.store.create_with(
        info.rt,
        ns(info),
        obj,
        WriteOptions {
            dry_run: q.dry_run(),
        },
    )?;
    Ok(http::json_response(StatusCode::CREATED, &created))
}

/// A body's apiVersion/kind, when given, must be the path's.
pub fn check_kind(rt: &ResourceType, obj: &Value) -> Result<(), ApiError> {
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let av = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    if (!kind.is_empty() && kind != rt.kind) || (!av.is_empty() && av != rt.api_version()) {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) and the kind ({kind}) do not match the expected {}, Kind={}",
            rt.api_version(),
            rt.kind
        )));
    }
    Ok(())
}

fn update(
    shared: &Shared,
    info: &RequestInfo,
    q: &Query,
    media: &str,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let mut obj = http::decode_object(media, body)?;
    let name = name(info);
    if info.subresource.as_deref() == Some("scale") {
        let replicas = obj
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let new = shared.store.mutate(info.rt, ns(info), name, |o| {
            o["spec"]["replicas"] = json!(replicas)
        })?;
        return Ok(ok(&patching::scale_of(info.rt, &new)));
    }
    check_kind(info.rt, &obj)?;
    let body_name = crate::store::name_of(&obj);
    if body_name.is_empty() {
        obj["metadata"]["name"] = json!(name);
    } else if body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    let opts = WriteOptions {
        dry_run: q.dry_run(),
    };
    let old = shared.store.try_get(info.rt, ns(info), name);
    let obj = with_manager(q, old.as_deref(), obj);
    let updated = if info.subresource.as_deref() == Some("status") {
        shared
            .store
            .update_status_with(info.rt, ns(info), obj, opts)?
    } else {
        shared.store.update_with(info.rt, ns(info), obj, opts)?
    };
    Ok(ok(&updated))
}

fn delete(
    shared: &Shared,
    info: &RequestInfo,
    q: &Query,
    media: &str,
    body: &[u8],
    collection: bool,
) -> Result<Response<Body>, ApiError> {
    let body_opts = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        http::decode_object(media, body)?
    };
    let mut opts = DeleteOptions {
        dry_run: q.dry_run()
            || body_opts["dryRun"]
                .as_array()
                .is_some_and(|a| a.iter().any(|v| v == "All")),
        ..Default::default()
    };
    let policy = body_opts["propagationPolicy"]
        .as_str()
        .map(String::from)
        .or_else(|| q.get("propagationPolicy").map(String::from));
    if let Some(p) = policy {
        opts.propagation = Propagation::parse(&p)?;
    } else if body_opts["orphanDependents"] == json!(true)
        || q.get("orphanDependents") == Some("true")
    {
        opts.propagation = Propagation::Orphan;
    }
    opts.uid = body_opts
        .pointer("/preconditions/uid")
        .and_then(Value::as_str)
        .map(String::from);
    opts.resource_version = body_opts
        .pointer("/preconditions/resourceVersion")
        .and_then(Value::as_str)
        .map(String::from);
    if collection {
        let deleted =
            shared
                .store
                .delete_collection(info.rt, ns(info), &list_options(q)?, &opts)?;
        let mut list = crate::store::ObjectList {
            items: deleted,
            resource_version: shared.store.current_rv(),
            continue_token: None,
            remaining_item_count: None,
        }
        .to_json(info.rt);
        list["metadata"] = json!({"resourceVersion": shared.store.current_rv().to_string()});
        return Ok(ok(&list));
    }
    let deleted = shared.store.delete(info.rt, ns(info), name(info), &opts)?;
    let pending = deleted.pointer("/metadata/deletionTimestamp").is_some();
    if !pending && info.rt.same(&registry::NAMESPACES) {
        return Ok(ok(&deleted));
    }
    Ok(if pending {
        http::json_response(StatusCode::ACCEPTED, &deleted)
    } else {
        ok(&deleted)
    })
}

/// Re-exported for the watch handler.
pub use list_options as watch_list_options;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(p: &str) -> Option<RequestInfo> {
        let segs = segments(p);
        let s: Vec<&str> = segs.iter().map(String::as_str).collect();
        parse_resource_path(&s)
    }

    #[test]
    fn paths() {
        let i = parse("/api/v1/namespaces/kleidia/pods/db-0/exec").unwrap();
        assert_eq!(i.rt.plural, "pods");
        assert_eq!(i.namespace.as_deref(), Some("kleidia"));
        assert_eq!(i.subresource.as_deref(), Some("exec"));
        let i = parse("/api/v1/namespaces/kleidia").unwrap();
        assert_eq!(i.rt.plural, "namespaces");
        assert_eq!(i.name.as_deref(), Some("kleidia"));
        let i = parse("/api/v1/namespaces/kleidia/status").unwrap();
        assert_eq!(i.subresource.as_deref(), Some("status"));
        let i = parse("/api/v1/pods").unwrap();
        assert!(i.namespace.is_none() && i.name.is_none());
        let i = parse("/apis/apps/v1/namespaces/k/deployments/web/scale").unwrap();
        assert_eq!(i.subresource.as_deref(), Some("scale"));
        let i = parse("/api/v1/namespaces/k/services/web:8080/proxy/api/health").unwrap();
        assert_eq!(i.name.as_deref(), Some("web:8080"));
        assert_eq!(i.rest, "/api/health");
        assert!(
            parse("/api/v1/watch/namespaces/k/pods")
                .unwrap()
                .legacy_watch
        );
        assert!(parse("/api/v1/nope").is_none());
        assert!(parse("/api/v1/nodes/sandbox-node").is_some());
    }
}
