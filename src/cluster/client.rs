//! The Kubernetes client every command uses: kube's own stack plus one
//! layer that puts every request under a time limit and retries idempotent
//! reads the server asked us to retry.
//!
//! The limit covers the time until the response headers arrive: a list, a
//! get, or the handshake of an exec, port-forward or watch. Streams that
//! follow (exec output, watch events) are the callers' to guard.

use std::time::Duration;

use futures::future::BoxFuture;
use http::{HeaderMap, Request, Response, StatusCode};
use kube::client::{Body, ClientBuilder};
use tower::{BoxError, Layer, Service, ServiceExt, buffer::Buffer};

/// How often an idempotent read is retried after 429 or 5xx.
pub const READ_RETRIES: u32 = 3;
/// The longest a `Retry-After` is honoured for; longer asks are cut to it.
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(5);

/// A request that got no answer within its limit.
#[derive(Debug, thiserror::Error)]
#[error(
    "no answer within {} (--request-timeout) to {method} {path}",
    crate::duration::show(*limit)
)]
pub struct NoAnswer {
    pub limit: Duration,
    pub method: String,
    pub path: String,
}

/// Builds the client for `config`, each request limited to `limit` (none:
/// no limit, as `--request-timeout 0` asks).
pub fn build(config: kube::Config, limit: Option<Duration>) -> Result<kube::Client, kube::Error> {
    Ok(ClientBuilder::try_from(config)?
        .with_layer(&DeadlineLayer {
            limit,
            retries: READ_RETRIES,
        })
        .build())
}

/// Limits and retries requests; see the module documentation.
#[derive(Debug, Clone, Copy)]
pub struct DeadlineLayer {
    pub limit: Option<Duration>,
    pub retries: u32,
}

impl<S, B> Layer<S> for DeadlineLayer
where
    S: Service<Request<Body>, Response = Response<B>, Error = BoxError> + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Deadline {
            inner: Buffer::new(inner, 1024),
            limit: self.limit,
            retries: self.retries,
        }
    }
}

pub struct Deadline<S>
where
    S: Service<Request<Body>>,
{
    inner: Buffer<Request<Body>, S::Future>,
    limit: Option<Duration>,
    retries: u32,
}

impl<S> Clone for Deadline<S>
where
    S: Service<Request<Body>>,
    S::Future: Send + 'static,
{
    fn clone(&self) -> Self {
        Deadline {
            inner: self.inner.clone(),
            limit: self.limit,
            retries: self.retries,
        }
    }
}

impl<S, B> Service<Request<Body>> for Deadline<S>
where
    S: Service<Request<Body>, Response = Response<B>, Error = BoxError> + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<B>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Response<B>, BoxError>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let inner = self.inner.clone();
        // The ready clone goes into the future; `self` keeps a fresh one.
        let inner = std::mem::replace(&mut self.inner, inner);
        let limit = self.limit;
        let retries = if is_idempotent_read(&req) {
            self.retries
        } else {
            0
        };
        Box::pin(send(inner, req, limit, retries))
    }
}

async fn send<F, B>(
    mut inner: Buffer<Request<Body>, F>,
    req: Request<Body>,
    limit: Option<Duration>,
    retries: u32,
) -> Result<Response<B>, BoxError>
where
    F: std::future::Future<Output = Result<Response<B>, BoxError>> + Send + 'static,
    B: Send + 'static,
    Buffer<Request<Body>, F>: Service<Request<Body>, Response = Response<B>, Error = BoxError>,
{
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let mut next = Some(req);
    let mut attempt = 0;
    loop {
        let req = next.take().expect("a request for each attempt");
        // A copy for the retry, made before the request is consumed.
        if attempt < retries {
            next = copy(&req);
        }
        let call = inner.ready().await?.call(req);
        let resp = match limit {
            Some(l) => tokio::time::timeout(l, call).await.map_err(|_| {
                Box::new(NoAnswer {
                    limit: l,
                    method: method.clone(),
                    path: path.clone(),
                }) as BoxError
            })??,
            None => call.await?,
        };
        if next.is_none() || !retry_status(resp.status()) {
            return Ok(resp);
        }
        let wait = retry_after(resp.headers())
            .unwrap_or_else(|| backoff(attempt))
            .min(MAX_RETRY_WAIT);
        drop(resp);
        tokio::time::sleep(wait).await;
        attempt += 1;
    }
}

fn copy(req: &Request<Body>) -> Option<Request<Body>> {
    let body = req.body().try_clone()?;
    let mut copy = Request::builder()
        .method(req.method().clone())
        .uri(req.uri().clone())
        .version(req.version())
        .body(body)
        .ok()?;
    *copy.headers_mut() = req.headers().clone();
    Some(copy)
}

/// GETs that read an object or a list: not watches, log follows, proxied
/// requests (a proxied 503 is the backend's answer) or stream upgrades.
pub fn is_idempotent_read<T>(req: &Request<T>) -> bool {
    if req.method() != http::Method::GET || req.headers().contains_key(http::header::UPGRADE) {
        return false;
    }
    let path = req.uri().path();
    let query = req.uri().query().unwrap_or("");
    let streaming = query
        .split('&')
        .any(|kv| matches!(kv, "watch=true" | "watch=1" | "follow=true" | "follow=1"));
    let passthrough = path.split('/').any(|seg| {
        matches!(seg, "proxy" | "exec" | "attach" | "portforward") || seg.ends_with(":proxy")
    });
    !streaming && !passthrough
}

/// Answers worth another try: too many requests, and server errors.
pub fn retry_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || matches!(status.as_u16(), 500 | 502 | 503 | 504)
}

/// `Retry-After: <seconds>` (the form API servers send).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// 200 ms, 400 ms, 800 ms, ...
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(200u64.saturating_mul(1 << attempt.min(10)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(uri: &str) -> Request<()> {
        Request::get(uri).body(()).unwrap()
    }

    #[test]
    fn only_plain_reads_are_retried() {
        assert!(is_idempotent_read(&get("/api/v1/namespaces/k/pods")));
        assert!(is_idempotent_read(&get(
            "/api/v1/namespaces/k/secrets?labelSelector=owner%3Dhelm"
        )));
        assert!(!is_idempotent_read(&get(
            "/api/v1/namespaces/k/pods?watch=true"
        )));
        assert!(!is_idempotent_read(&get(
            "/api/v1/namespaces/k/services/b:80/proxy/api/health"
        )));
        assert!(!is_idempotent_read(&get(
            "/api/v1/namespaces/k/pods/p/exec?command=ls"
        )));
        assert!(!is_idempotent_read(&get(
            "/api/v1/namespaces/k/pods/p/log?follow=true"
        )));
        let post = Request::post("/api/v1/namespaces/k/pods").body(()).unwrap();
        assert!(!is_idempotent_read(&post));
    }

    #[test]
    fn retry_after_is_read_and_backoff_grows() {
        let mut h = HeaderMap::new();
        h.insert(http::header::RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        assert_eq!(retry_after(&HeaderMap::new()), None);
        assert!(backoff(2) > backoff(1));
        assert!(retry_status(StatusCode::TOO_MANY_REQUESTS));
        assert!(retry_status(StatusCode::SERVICE_UNAVAILABLE));
        assert!(!retry_status(StatusCode::NOT_FOUND));
        assert!(!retry_status(StatusCode::FORBIDDEN));
    }
}
