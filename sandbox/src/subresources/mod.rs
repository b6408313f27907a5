//! Pod and service subresources that are not plain objects: `exec`,
//! `attach`, `portforward`, `log` and `proxy`.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::{Request, Response, StatusCode, body::Incoming};

use crate::state::Shared;

/// The body type every sandbox handler answers with (streaming capable).
pub type Body = BoxBody<Bytes, std::io::Error>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
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
    let _ = (shared, req);
    let mut resp = Response::new(full(format!(
        "subresource {}/{} is not implemented yet",
        target.resource, target.subresource
    )));
    *resp.status_mut() = StatusCode::NOT_IMPLEMENTED;
    resp
}
