//! Watches: the filtered, resumable change stream of one resource type.

use std::collections::VecDeque;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::{Event, EventType, Inner, Store, type_key};
use crate::error::ApiError;
use crate::registry::ResourceType;
use crate::selector::{FieldSelector, LabelSelector};

/// Where a watch starts and what it shows.
#[derive(Debug, Clone, Default)]
pub struct WatchOptions {
    /// Start after this resourceVersion (changes are replayed from the
    /// history). `None` or `"0"`: start with synthetic `ADDED` events for
    /// every current object, then changes.
    pub resource_version: Option<String>,
    pub label_selector: LabelSelector,
    pub field_selector: FieldSelector,
    /// Streaming list: the current objects as `ADDED`, then a `BOOKMARK`
    /// annotated `k8s.io/initial-events-end: "true"`, then changes.
    pub send_initial_events: bool,
}

/// One item of a watch stream.
#[derive(Debug, Clone)]
pub enum WatchEvent {
    Added(Arc<Value>),
    Modified(Arc<Value>),
    Deleted(Arc<Value>),
    /// A progress marker at this resourceVersion.
    Bookmark(u64),
    /// The marker that ends the initial events of a streaming list.
    InitialEventsEnd(u64),
    /// The watch cannot go on (410 Expired when it fell behind).
    Error(ApiError),
}

impl WatchEvent {
    /// The `{"type": ..., "object": ...}` line sent to clients.
    pub fn to_json(&self, rt: &ResourceType) -> Value {
        let bookmark = |rv: u64, end: bool| {
            let mut meta = json!({"resourceVersion": rv.to_string()});
            if end {
                meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
            }
            json!({"type": "BOOKMARK", "object": {
                "kind": rt.kind, "apiVersion": rt.api_version(), "metadata": meta,
            }})
        };
        match self {
            WatchEvent::Added(o) => json!({"type": "ADDED", "object": &**o}),
            WatchEvent::Modified(o) => json!({"type": "MODIFIED", "object": &**o}),
            WatchEvent::Deleted(o) => json!({"type": "DELETED", "object": &**o}),
            WatchEvent::Bookmark(rv) => bookmark(*rv, false),
            WatchEvent::InitialEventsEnd(rv) => bookmark(*rv, true),
            WatchEvent::Error(e) => json!({"type": "ERROR", "object": e.to_status()}),
        }
    }
}

/// A running watch; call [`WatchStream::next`] until it returns `None`.
pub struct WatchStream {
    rt: &'static ResourceType,
    ns: Option<String>,
    label: LabelSelector,
    field: FieldSelector,
    pending: VecDeque<WatchEvent>,
    rx: broadcast::Receiver<Event>,
    last_rv: u64,
    done: bool,
}

impl WatchStream {
    fn matches(&self, obj: &Value) -> bool {
        self.label.matches(obj) && self.field.matches(obj)
    }

    fn in_scope(&self, ev: &Event) -> bool {
        ev.resource.same(self.rt) && self.ns.as_deref().is_none_or(|n| ev.namespace() == n)
    }

    /// What a store change means to this watch (selectors can turn a
    /// modification into an add or a delete).
    fn translate(&self, ev: &Event) -> Option<WatchEvent> {
        if !self.in_scope(ev) {
            return None;
        }
        match ev.event_type {
            EventType::Added => self
                .matches(&ev.object)
                .then(|| WatchEvent::Added(ev.object.clone())),
            EventType::Deleted => self
                .matches(&ev.object)
                .then(|| WatchEvent::Deleted(ev.object.clone())),
            EventType::Modified => {
                let was = ev.old.as_ref().is_some_and(|o| self.matches(o));
                match (was, self.matches(&ev.object)) {
                    (true, true) => Some(WatchEvent::Modified(ev.object.clone())),
                    (false, true) => Some(WatchEvent::Added(ev.object.clone())),
                    (true, false) => Some(WatchEvent::Deleted(ev.object.clone())),
                    (false, false) => None,
                }
            }
        }
    }

    /// The resourceVersion up to which this watch has seen every change; a
    /// client resuming from it misses nothing (what bookmarks carry).
    pub fn last_rv(&self) -> u64 {
        self.last_rv
    }

    /// A bookmark at [`WatchStream::last_rv`], or `None` while replayed or
    /// initial events are still queued (a bookmark then would let a
    /// resuming client skip them).
    pub fn bookmark(&self) -> Option<WatchEvent> {
        self.pending
            .is_empty()
            .then_some(WatchEvent::Bookmark(self.last_rv))
    }

    pub fn resource(&self) -> &'static ResourceType {
        self.rt
    }

    /// The next event; `None` once the stream ended (after an `Error`, or
    /// when the store is gone).
    pub async fn next(&mut self) -> Option<WatchEvent> {
        if let Some(e) = self.pending.pop_front() {
            return Some(e);
        }
        loop {
            if self.done {
                return None;
            }
            match self.rx.recv().await {
                Ok(ev) => {
                    if ev.resource_version <= self.last_rv {
                        continue;
                    }
                    self.last_rv = ev.resource_version;
                    if let Some(w) = self.translate(&ev) {
                        return Some(w);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    self.done = true;
                    return Some(WatchEvent::Error(ApiError::expired(
                        "too old resource version: the watch fell behind",
                    )));
                }
                Err(broadcast::error::RecvError::Closed) => {
                    self.done = true;
                    return None;
                }
            }
        }
    }
}

fn parse_rv(s: &str) -> Result<u64, ApiError> {
    s.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "resourceVersion {s:?} is not a valid resource version"
        ))
    })
}

pub(super) fn open(
    store: &Store,
    inner: &Inner,
    rt: &'static ResourceType,
    ns: Option<String>,
    opts: &WatchOptions,
) -> Result<WatchStream, ApiError> {
    let from = match opts.resource_version.as_deref() {
        None | Some("") | Some("0") => None,
        Some(s) => Some(parse_rv(s)?),
    };
    let mut w = WatchStream {
        rt,
        ns,
        label: opts.label_selector.clone(),
        field: opts.field_selector.clone(),
        pending: VecDeque::new(),
        // Subscribed under the store lock: no change can slip between the
        // replay below and the live stream.
        rx: store.tx.subscribe(),
        last_rv: inner.rv,
        done: false,
    };
    match from {
        Some(rv) if !opts.send_initial_events => {
            if rv < inner.compacted {
                return Err(ApiError::expired(format!(
                    "too old resource version: {rv} ({})",
                    inner.compacted
                )));
            }
            for ev in inner.history.iter().filter(|e| e.resource_version > rv) {
                if let Some(x) = w.translate(ev) {
                    w.pending.push_back(x);
                }
            }
        }
        _ => {
            if let Some(t) = inner.types.get(&type_key(rt)) {
                for ((ns, _), v) in &t.objects {
                    if w.ns.as_deref().is_none_or(|n| n == ns) && w.matches(v) {
                        w.pending.push_back(WatchEvent::Added(v.clone()));
                    }
                }
            }
            if opts.send_initial_events {
                w.pending.push_back(WatchEvent::InitialEventsEnd(inner.rv));
            }
        }
    }
    Ok(w)
}
