//! Watch responses: newline-delimited JSON events over a chunked body,
//! with bookmarks, timeouts, Table output and fault-injected drops.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper::{HeaderMap, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::http::{self, Query};
use super::router::{RequestInfo, watch_list_options};
use super::table::{self, IncludeObject};
use crate::error::ApiError;
use crate::state::Shared;
use crate::store::{WatchEvent, WatchOptions};
use crate::subresources::Body;

/// Longest a watch stays open without `timeoutSeconds` (clients re-watch).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

fn line(v: &Value) -> Bytes {
    let mut b = serde_json::to_vec(v).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

/// Starts a watch and answers with its stream.
pub fn serve(
    shared: Arc<Shared>,
    info: &RequestInfo,
    q: &Query,
    headers: &HeaderMap,
) -> Result<Response<Body>, ApiError> {
    let list = watch_list_options(q)?;
    let mut field_selector = list.field_selector;
    if let Some(name) = &info.name {
        // GET .../pods/x?watch=1 watches one object.
        field_selector = crate::selector::FieldSelector::parse(&format!("metadata.name={name}"))?;
    }
    let opts = WatchOptions {
        resource_version: q.get("resourceVersion").map(String::from),
        label_selector: list.label_selector,
        field_selector,
        send_initial_events: q.flag("sendInitialEvents"),
    };
    let rt = info.rt;
    let bookmarks = q.flag("allowWatchBookmarks");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .filter(|t| *t > 0)
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TIMEOUT);
    let as_table = http::wants_table(headers);
    let include = IncludeObject::parse(q.get("includeObject"));

    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let opened = shared.store.watch(rt, info.namespace.as_deref(), &opts);
    let mut stream = match opened {
        Ok(s) => Some(s),
        Err(e) => {
            // Like a real server: 200, then one ERROR event (410 Expired).
            let ev = json!({"type": "ERROR", "object": e.to_status()});
            let _ = tx.try_send(line(&ev));
            None
        }
    };
    let interval = shared.options.bookmark_interval;
    let mut drops = shared.faults.watch_drops();
    let shutdown = shared.shutdown.clone();
    tokio::spawn(async move {
        let Some(stream) = stream.as_mut() else {
            return;
        };
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(interval);
        tick.tick().await;
        let mut first_table = true;
        loop {
            let ev = tokio::select! {
                ev = stream.next() => match ev { Some(ev) => ev, None => break },
                _ = tick.tick(), if bookmarks => match stream.bookmark() {
                    Some(b) => b,
                    None => continue,
                },
                _ = &mut deadline => break,
                _ = drops.changed() => break,
                _ = shutdown.cancelled() => break,
                _ = tx.closed() => break,
            };
            let is_error = matches!(ev, WatchEvent::Error(_));
            if matches!(ev, WatchEvent::InitialEventsEnd(_)) && !bookmarks {
                // Only sent to clients that accept bookmarks.
                continue;
            }
            let mut v = ev.to_json(rt);
            if as_table
                && matches!(
                    ev,
                    WatchEvent::Added(_) | WatchEvent::Modified(_) | WatchEvent::Deleted(_)
                )
            {
                let obj = v["object"].take();
                let rv = obj
                    .pointer("/metadata/resourceVersion")
                    .cloned()
                    .unwrap_or(json!(""));
                v["object"] = table::table(
                    rt,
                    &[obj],
                    include,
                    json!({"resourceVersion": rv}),
                    first_table,
                );
                first_table = false;
            }
            if tx.send(line(&v)).await.is_err() || is_error {
                break;
            }
        }
    });
    let mut resp = Response::new(BodyExt::boxed(ChannelBody(rx)));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-cache, private"),
    );
    Ok(resp)
}

/// A response body fed from a channel, one chunk per event.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}
