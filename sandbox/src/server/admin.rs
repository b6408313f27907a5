//! The sandbox's own admin endpoints (authenticated like everything else):
//! `POST /sandbox/faults` (a [`FaultRequest`]; `GET` shows the settings) and
//! `PUT /sandbox/authz` (a list of [`Rule`]s; `GET` shows them),
//! `GET /sandbox/requests` (the [`super::requests::RequestCounts`];
//! `DELETE` answers them and starts counting from zero).

use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use serde_json::json;

use super::http::{self, ok};
use super::router::Context;
use crate::authz::Rule;
use crate::error::ApiError;
use crate::faults::FaultRequest;
use crate::subresources::Body;

pub async fn faults(ctx: &Context, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    match *req.method() {
        Method::GET => Ok(ok(&json!(ctx.shared.faults.get()))),
        Method::POST | Method::PUT => {
            let body = http::read_body(req.into_body()).await?;
            let r: FaultRequest = serde_json::from_slice(&body).map_err(|e| {
                ApiError::bad_request(format!("the fault request is not valid: {e}"))
            })?;
            Ok(ok(&json!(ctx.shared.faults.apply(&r))))
        }
        _ => Err(ApiError::method_not_allowed(
            "use GET or POST on /sandbox/faults",
        )),
    }
}

pub async fn authz(ctx: &Context, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    match *req.method() {
        Method::GET => Ok(ok(&json!(ctx.shared.authz.rules()))),
        Method::POST | Method::PUT => {
            let body = http::read_body(req.into_body()).await?;
            let rules: Vec<Rule> = serde_json::from_slice(&body)
                .map_err(|e| ApiError::bad_request(format!("the rule list is not valid: {e}")))?;
            ctx.shared.authz.set_rules(rules);
            Ok(ok(&json!(ctx.shared.authz.rules())))
        }
        _ => Err(ApiError::method_not_allowed(
            "use GET or PUT on /sandbox/authz",
        )),
    }
}

pub fn requests(ctx: &Context, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    match *req.method() {
        Method::GET => Ok(ok(&json!(ctx.requests.snapshot()))),
        Method::DELETE => Ok(ok(&json!(ctx.requests.take()))),
        _ => Err(ApiError::method_not_allowed(
            "use GET (read) or DELETE (read and reset) on /sandbox/requests",
        )),
    }
}
