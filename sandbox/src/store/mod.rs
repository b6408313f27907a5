//! The in-memory object store: every object of every registered type as a
//! `serde_json::Value`, one global monotonically increasing
//! `resourceVersion`, and a bounded history of changes so watches can resume.
//!
//! All writes go through one lock, so each change gets the next
//! resourceVersion and is broadcast in order. Controllers either use
//! [`Store::subscribe_all`] (every change, any type) or [`Store::watch`]
//! (one type, filtered, resumable), and write with [`Store::mutate`]
//! (read-modify-write without conflicts).
//!
//! Semantics follow the Kubernetes API server where clients can tell:
//! `generateName`, `uid`, `creationTimestamp`, `generation` bumps on spec
//! changes, optimistic concurrency on `resourceVersion`, status-only
//! updates for types with a `status` subresource, finalizers
//! (`deletionTimestamp` set, object removed once the last finalizer goes),
//! and owner-reference cascades on delete (Background/Foreground delete the
//! dependents, Orphan strips the owner reference), cluster IPs and node
//! ports allocated to Services. No-op writes keep the resourceVersion and
//! send no event.

mod defaults;
mod nodeports;
mod validate;
mod watch;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::error::ApiError;
use crate::registry::{self, ResourceType};
use crate::selector::{FieldSelector, LabelSelector};

pub use watch::{WatchEvent, WatchOptions, WatchStream};

/// Changes kept for watch resumption unless told otherwise.
pub const DEFAULT_HISTORY: usize = 5000;

/// `(namespace or "", name)`.
type Key = (String, String);

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change in the store, as broadcast to [`Store::subscribe_all`].
#[derive(Debug, Clone)]
pub struct Event {
    pub event_type: EventType,
    pub resource: &'static ResourceType,
    /// The object after the change (for `Deleted`: its last state, with the
    /// deletion's resourceVersion).
    pub object: Arc<Value>,
    /// The object before the change (`Modified` only).
    pub old: Option<Arc<Value>>,
    pub resource_version: u64,
}

impl Event {
    pub fn namespace(&self) -> &str {
        namespace_of(&self.object)
    }
    pub fn name(&self) -> &str {
        name_of(&self.object)
    }
}

/// `metadata.name` of an object (`""` when missing).
pub fn name_of(v: &Value) -> &str {
    v.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// `metadata.namespace` of an object (`""` when missing).
pub fn namespace_of(v: &Value) -> &str {
    v.pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Now, as Kubernetes writes timestamps (`2026-01-02T03:04:05Z`).
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Now with microseconds (`MicroTime`, used by events and leases).
pub fn now_micro() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Options of a list call. Build with `Default` and set what you need.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub label_selector: LabelSelector,
    pub field_selector: FieldSelector,
    /// At most this many items; a `continue` token is returned if more remain.
    pub limit: Option<usize>,
    /// The `continue` token of the previous page.
    pub continue_token: Option<String>,
}

impl ListOptions {
    /// From the query-string values; bad selectors are a 400.
    pub fn parse(
        label_selector: Option<&str>,
        field_selector: Option<&str>,
        limit: Option<usize>,
        continue_token: Option<&str>,
    ) -> Result<Self, ApiError> {
        Ok(ListOptions {
            label_selector: LabelSelector::parse(label_selector.unwrap_or(""))?,
            field_selector: FieldSelector::parse(field_selector.unwrap_or(""))?,
            limit: limit.filter(|l| *l > 0),
            continue_token: continue_token.filter(|c| !c.is_empty()).map(String::from),
        })
    }

    /// Labels only.
    pub fn labels(selector: LabelSelector) -> Self {
        ListOptions {
            label_selector: selector,
            ..Default::default()
        }
    }

    fn matches(&self, obj: &Value) -> bool {
        self.label_selector.matches(obj) && self.field_selector.matches(obj)
    }
}

/// One page of a list.
#[derive(Debug, Clone)]
pub struct ObjectList {
    pub items: Vec<Value>,
    /// The store's resourceVersion when the list was taken.
    pub resource_version: u64,
    pub continue_token: Option<String>,
    pub remaining_item_count: Option<u64>,
}

impl ObjectList {
    /// The `<Kind>List` JSON a list call answers with.
    pub fn to_json(&self, rt: &ResourceType) -> Value {
        let mut meta = json!({"resourceVersion": self.resource_version.to_string()});
        if let Some(c) = &self.continue_token {
            meta["continue"] = json!(c);
        }
        if let Some(r) = self.remaining_item_count {
            meta["remainingItemCount"] = json!(r);
        }
        json!({
            "kind": rt.list_kind(),
            "apiVersion": rt.api_version(),
            "metadata": meta,
            "items": self.items,
        })
    }
}

/// How dependents are treated when their owner is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Propagation {
    #[default]
    Background,
    Foreground,
    Orphan,
}

impl Propagation {
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        match s {
            "Background" => Ok(Propagation::Background),
            "Foreground" => Ok(Propagation::Foreground),
            "Orphan" => Ok(Propagation::Orphan),
            other => Err(ApiError::bad_request(format!(
                "propagationPolicy {other:?} is not one of Background, Foreground, Orphan"
            ))),
        }
    }
}

/// Options of a delete call (the `DeleteOptions` body).
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub propagation: Propagation,
    pub dry_run: bool,
    /// `preconditions.uid`
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`
    pub resource_version: Option<String>,
}

/// Options of create and update calls.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteOptions {
    /// Validate and compute the result, store nothing (`dryRun=All`).
    pub dry_run: bool,
}

struct TypeObjects {
    rt: &'static ResourceType,
    objects: BTreeMap<Key, Arc<Value>>,
}

struct Inner {
    rv: u64,
    /// Keyed by (group, plural).
    types: BTreeMap<(&'static str, &'static str), TypeObjects>,
    history: VecDeque<Event>,
    /// The highest resourceVersion no longer in `history`.
    compacted: u64,
    ip_counter: u32,
}

/// The object store. Cheap to share behind an `Arc` (in [`crate::state::Shared`]).
pub struct Store {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Event>,
    history_limit: usize,
}

impl Default for Store {
    fn default() -> Self {
        Self::new(DEFAULT_HISTORY)
    }
}

fn type_key(rt: &ResourceType) -> (&'static str, &'static str) {
    // Static strings from the registry table.
    let r = registry::ALL
        .iter()
        .find(|r| r.group == rt.group && r.plural == rt.plural && r.version == rt.version)
        .expect("resource type comes from the registry");
    (r.group, r.plural)
}

/// The namespace a list or watch of `rt` is limited to: the one the
/// request named, or none (all) for cluster-scoped types.
fn list_scope<'a>(rt: &ResourceType, ns: Option<&'a str>) -> Option<&'a str> {
    if rt.namespaced { ns } else { None }
}

fn scope_ns(rt: &ResourceType, ns: Option<&str>) -> String {
    if rt.namespaced {
        ns.unwrap_or("").to_string()
    } else {
        String::new()
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn random_suffix() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut r = rand::rng();
    (0..5)
        .map(|_| ALPHABET[r.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Everything outside `metadata` and `status`, to decide generation bumps.
fn spec_part(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("metadata");
        o.remove("status");
    }
    v
}

fn owner_uids(v: &Value) -> impl Iterator<Item = &str> {
    v.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r["uid"].as_str())
}

fn has_finalizers(v: &Value) -> bool {
    v.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty())
}

fn encode_continue(key: &Key) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{}\0{}", key.0, key.1))
}

fn decode_continue(token: &str) -> Result<Key, ApiError> {
    let bad = || ApiError::bad_request(format!("continue key {token:?} is not valid"));
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let s = String::from_utf8(bytes).map_err(|_| bad())?;
    let (ns, name) = s.split_once('\0').ok_or_else(bad)?;
    Ok((ns.to_string(), name.to_string()))
}

impl Store {
    /// A store keeping `history_limit` changes for watch resumption.
    pub fn new(history_limit: usize) -> Self {
        let (tx, _) = broadcast::channel(4096);
        Store {
            inner: Mutex::new(Inner {
                rv: 1,
                types: BTreeMap::new(),
                history: VecDeque::new(),
                compacted: 1,
                ip_counter: 0,
            }),
            tx,
            history_limit: history_limit.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The newest resourceVersion.
    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    /// Every change from now on, any type. A receiver that falls more than
    /// 4096 events behind gets `RecvError::Lagged` and should resync.
    pub fn subscribe_all(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// Creates an object (see the module docs for what is filled in).
    pub fn create(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        obj: Value,
    ) -> Result<Value, ApiError> {
        self.create_with(rt, ns, obj, WriteOptions::default())
    }

    /// [`Store::create`] with options (dry run).
    pub fn create_with(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        mut obj: Value,
        opts: WriteOptions,
    ) -> Result<Value, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the request body is not a JSON object",
            ));
        }
        let url_ns = scope_ns(rt, ns);
        let body_ns = namespace_of(&obj).to_string();
        let ns = if rt.namespaced {
            match (url_ns.is_empty(), body_ns.is_empty()) {
                (false, false) if url_ns != body_ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                (true, true) => "default".to_string(),
                (true, false) => body_ns,
                _ => url_ns,
            }
        } else {
            String::new()
        };
        let mut inner = self.lock();
        if rt.namespaced && !inner.exists(&registry::NAMESPACES, "", &ns) {
            return Err(ApiError::not_found(&registry::NAMESPACES, &ns));
        }
        if rt.namespaced && inner.terminating(&ns) {
            return Err(ApiError::forbidden(format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            )));
        }
        let meta = obj
            .as_object_mut()
            .expect("checked above")
            .entry("metadata")
            .or_insert_with(|| json!({}));
        if !meta.is_object() {
            return Err(ApiError::bad_request("metadata must be an object"));
        }
        let mut name = meta["name"].as_str().unwrap_or("").to_string();
        if name.is_empty() {
            let prefix = meta["generateName"].as_str().unwrap_or("").to_string();
            if prefix.is_empty() {
                return Err(ApiError::invalid(
                    rt,
                    "",
                    "metadata.name",
                    "Required value: name or generateName is required",
                ));
            }
            loop {
                name = format!("{prefix}{}", random_suffix());
                if !inner.exists(rt, &ns, &name) {
                    break;
                }
            }
        }
        if !valid_name(&name) {
            return Err(ApiError::invalid(
                rt,
                &name,
                "metadata.name",
                &format!(
                    "Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
                ),
            ));
        }
        if inner.exists(rt, &ns, &name) {
            return Err(ApiError::already_exists(rt, &name));
        }
        let m = meta.as_object_mut().expect("checked above");
        m.insert("name".into(), json!(name));
        if rt.namespaced {
            m.insert("namespace".into(), json!(ns));
        } else {
            m.remove("namespace");
        }
        m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        m.insert("creationTimestamp".into(), json!(now()));
        m.insert("generation".into(), json!(1));
        m.remove("deletionTimestamp");
        m.remove("deletionGracePeriodSeconds");
        obj["apiVersion"] = json!(rt.api_version());
        obj["kind"] = json!(rt.kind);
        defaults::on_create(rt, &mut obj, &mut inner.ip_counter)?;
        defaults::apply(rt, &mut obj);
        if rt.same(&registry::SERVICES) {
            let used = inner.node_ports_in_use(&ns, &name);
            nodeports::assign(rt, &name, &mut obj, None, &used)?;
        }
        if opts.dry_run {
            obj["metadata"]["resourceVersion"] = json!(inner.rv.to_string());
            return Ok(obj);
        }
        let created = inner.put(self, rt, (ns.clone(), name.clone()), obj, None);
        if rt.same(&registry::NAMESPACES) {
            // Every namespace gets its default service account, as the
            // service-account controller would create it.
            let sa = json!({"metadata": {"name": "default", "namespace": name}});
            let mut sa = sa;
            sa["apiVersion"] = json!("v1");
            sa["kind"] = json!("ServiceAccount");
            let m = sa["metadata"].as_object_mut().expect("literal");
            m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            m.insert("creationTimestamp".into(), json!(now()));
            inner.put(
                self,
                &registry::SERVICEACCOUNTS,
                (name.clone(), "default".into()),
                sa,
                None,
            );
        }
        Ok(created)
    }

    /// One object, or 404 NotFound.
    pub fn get(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        let inner = self.lock();
        inner
            .get(rt, &scope_ns(rt, ns), name)
            .map(|v| (*v).clone())
            .ok_or_else(|| ApiError::not_found(rt, name))
    }

    /// Like [`Store::get`] but `None` when absent, without a clone of the
    /// error message.
    pub fn try_get(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        name: &str,
    ) -> Option<Arc<Value>> {
        self.lock().get(rt, &scope_ns(rt, ns), name)
    }

    /// Objects of one type in one namespace (`None`: all namespaces), in
    /// namespace/name order, filtered and paged.
    pub fn list(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> Result<ObjectList, ApiError> {
        let start = opts
            .continue_token
            .as_deref()
            .map(decode_continue)
            .transpose()?;
        let inner = self.lock();
        let ns = list_scope(rt, ns);
        let mut items = Vec::new();
        let mut continue_token = None;
        let mut remaining = 0u64;
        if let Some(t) = inner.types.get(&type_key(rt)) {
            let iter = t.objects.iter().filter(|(k, _)| {
                ns.is_none_or(|n| k.0 == n) && start.as_ref().is_none_or(|s| *k > s)
            });
            let mut last_key = None;
            for (k, v) in iter {
                if !opts.matches(v) {
                    continue;
                }
                if opts.limit.is_some_and(|l| items.len() >= l) {
                    remaining += 1;
                    continue;
                }
                items.push((**v).clone());
                last_key = Some(k.clone());
            }
            if remaining > 0 {
                continue_token = last_key.as_ref().map(encode_continue);
            }
        }
        Ok(ObjectList {
            items,
            resource_version: inner.rv,
            continue_token,
            remaining_item_count: (remaining > 0).then_some(remaining),
        })
    }

    /// Cheap read of all objects of a type (shared, no clones), for
    /// controllers.
    pub fn snapshot(&self, rt: &'static ResourceType, ns: Option<&str>) -> Vec<Arc<Value>> {
        let inner = self.lock();
        let ns = list_scope(rt, ns);
        inner
            .types
            .get(&type_key(rt))
            .map(|t| {
                t.objects
                    .iter()
                    .filter(|(k, _)| ns.is_none_or(|n| k.0 == n))
                    .map(|(_, v)| v.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Replaces an object (PUT). A `metadata.resourceVersion` that is not
    /// the current one is a 409 Conflict; an absent one updates
    /// unconditionally. For types with a status subresource `.status` is
    /// kept from the stored object. `generation` goes up when anything
    /// outside metadata and status changes.
    pub fn update(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        obj: Value,
    ) -> Result<Value, ApiError> {
        self.update_with(rt, ns, obj, WriteOptions::default())
    }

    /// [`Store::update`] with options (dry run).
    pub fn update_with(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        obj: Value,
        opts: WriteOptions,
    ) -> Result<Value, ApiError> {
        self.replace(rt, ns, obj, opts, UpdateKind::Main)
    }

    /// Replaces only `.status` (PUT on `/status`); the rest of `obj` is
    /// ignored. Conflict rules as for [`Store::update`].
    pub fn update_status(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        obj: Value,
    ) -> Result<Value, ApiError> {
        self.update_status_with(rt, ns, obj, WriteOptions::default())
    }

    /// [`Store::update_status`] with options (dry run).
    pub fn update_status_with(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        obj: Value,
        opts: WriteOptions,
    ) -> Result<Value, ApiError> {
        self.replace(rt, ns, obj, opts, UpdateKind::Status)
    }

    fn replace(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        mut obj: Value,
        opts: WriteOptions,
        kind: UpdateKind,
    ) -> Result<Value, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the request body is not a JSON object",
            ));
        }
        let ns = scope_ns(rt, ns);
        let name = name_of(&obj).to_string();
        if name.is_empty() {
            return Err(ApiError::invalid(
                rt,
                "",
                "metadata.name",
                "Required value: name is required",
            ));
        }
        let body_ns = namespace_of(&obj);
        if rt.namespaced && !body_ns.is_empty() && body_ns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let mut inner = self.lock();
        let old = inner
            .get(rt, &ns, &name)
            .ok_or_else(|| ApiError::not_found(rt, &name))?;
        if let Some(rv) = obj
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            && !rv.is_empty()
            && Some(rv)
                != old
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
        {
            return Err(ApiError::conflict(rt, &name));
        }
        if let Some(uid) = obj.pointer("/metadata/uid").and_then(Value::as_str)
            && !uid.is_empty()
            && Some(uid) != old.pointer("/metadata/uid").and_then(Value::as_str)
        {
            return Err(ApiError::conflict_message(
                rt,
                &name,
                format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    old.pointer("/metadata/uid")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                ),
            ));
        }
        let new = match kind {
            UpdateKind::Main => {
                // Compare like with like: the stored object has its defaults.
                defaults::apply(rt, &mut obj);
                validate::update(rt, &old, &mut obj)?;
                if rt.same(&registry::SERVICES) {
                    let used = inner.node_ports_in_use(&ns, &name);
                    nodeports::assign(rt, &name, &mut obj, Some(&old), &used)?;
                }
                if rt.has_status() {
                    match old.get("status") {
                        Some(s) => obj["status"] = s.clone(),
                        None => {
                            obj.as_object_mut().expect("object").remove("status");
                        }
                    }
                }
                obj
            }
            UpdateKind::Status => {
                let mut new = (*old).clone();
                match obj.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        new.as_object_mut().expect("object").remove("status");
                    }
                }
                new
            }
        };
        inner.commit_update(self, rt, &ns, &name, &old, new, opts.dry_run)
    }

    /// Read-modify-write for controllers: `f` changes the stored object in
    /// place (spec, status, metadata alike) with no conflict check. A no-op
    /// change writes nothing. 404 if the object does not exist.
    pub fn mutate(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        name: &str,
        f: impl FnOnce(&mut Value),
    ) -> Result<Value, ApiError> {
        let ns = scope_ns(rt, ns);
        let mut inner = self.lock();
        let old = inner
            .get(rt, &ns, name)
            .ok_or_else(|| ApiError::not_found(rt, name))?;
        let mut new = (*old).clone();
        f(&mut new);
        inner.commit_update(self, rt, &ns, name, &old, new, false)
    }

    /// Deletes an object. With finalizers it only gets a
    /// `deletionTimestamp` (and is returned); otherwise it is removed
    /// (the returned value is its last state) and its dependents follow
    /// `opts.propagation`.
    pub fn delete(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Value, ApiError> {
        let ns = scope_ns(rt, ns);
        let mut inner = self.lock();
        let old = inner
            .get(rt, &ns, name)
            .ok_or_else(|| ApiError::not_found(rt, name))?;
        if let Some(uid) = &opts.uid
            && Some(uid.as_str()) != old.pointer("/metadata/uid").and_then(Value::as_str)
        {
            return Err(ApiError::conflict_message(
                rt,
                name,
                format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    old.pointer("/metadata/uid")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                ),
            ));
        }
        if let Some(rv) = &opts.resource_version
            && Some(rv.as_str())
                != old
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
        {
            return Err(ApiError::conflict(rt, name));
        }
        if opts.dry_run {
            return Ok((*old).clone());
        }
        Ok(inner.delete(self, rt, &ns, name, opts.propagation))
    }

    /// Deletes every object of a type in a namespace matching `list`;
    /// returns what was deleted.
    pub fn delete_collection(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        list: &ListOptions,
        opts: &DeleteOptions,
    ) -> Result<Vec<Value>, ApiError> {
        let all = ListOptions {
            limit: None,
            continue_token: None,
            ..list.clone()
        };
        let items = self.list(rt, ns, &all)?.items;
        let mut out = Vec::new();
        for item in items {
            match self.delete(rt, Some(namespace_of(&item)), name_of(&item), opts) {
                Ok(v) => out.push(v),
                Err(e) if e.code() == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// A watch on one type (and namespace, selectors). See [`WatchOptions`]
    /// for where it starts. A `resourceVersion` older than the history kept
    /// is a 410 Expired error.
    pub fn watch(
        &self,
        rt: &'static ResourceType,
        ns: Option<&str>,
        opts: &WatchOptions,
    ) -> Result<WatchStream, ApiError> {
        let inner = self.lock();
        watch::open(self, &inner, rt, list_scope(rt, ns).map(String::from), opts)
    }
}

enum UpdateKind {
    Main,
    Status,
}

impl Inner {
    fn get(&self, rt: &ResourceType, ns: &str, name: &str) -> Option<Arc<Value>> {
        self.types
            .get(&type_key(rt))
            .and_then(|t| t.objects.get(&(ns.to_string(), name.to_string())))
            .cloned()
    }

    fn exists(&self, rt: &ResourceType, ns: &str, name: &str) -> bool {
        self.get(rt, ns, name).is_some()
    }

    /// The node ports every Service but `ns/name` holds.
    fn node_ports_in_use(&self, ns: &str, name: &str) -> std::collections::BTreeSet<u16> {
        self.types
            .get(&type_key(&registry::SERVICES))
            .into_iter()
            .flat_map(|t| t.objects.iter())
            .filter(|(k, _)| k.0 != ns || k.1 != name)
            .flat_map(|(_, v)| nodeports::held_by(v))
            .collect()
    }

    fn terminating(&self, ns: &str) -> bool {
        self.get(&registry::NAMESPACES, "", ns)
            .is_some_and(|n| n.pointer("/metadata/deletionTimestamp").is_some())
    }

    fn record(&mut self, store: &Store, ev: Event) {
        self.history.push_back(ev.clone());
        while self.history.len() > store.history_limit {
            if let Some(e) = self.history.pop_front() {
                self.compacted = e.resource_version;
            }
        }
        let _ = store.tx.send(ev);
    }

    /// Stores `obj` under the next resourceVersion and broadcasts it.
    fn put(
        &mut self,
        store: &Store,
        rt: &'static ResourceType,
        key: Key,
        mut obj: Value,
        old: Option<Arc<Value>>,
    ) -> Value {
        self.rv += 1;
        let rv = self.rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        let arc = Arc::new(obj.clone());
        self.types
            .entry(type_key(rt))
            .or_insert_with(|| TypeObjects {
                rt,
                objects: BTreeMap::new(),
            })
            .objects
            .insert(key, arc.clone());
        let event_type = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.record(
            store,
            Event {
                event_type,
                resource: rt,
                object: arc,
                old,
                resource_version: rv,
            },
        );
        obj
    }

    #[allow(clippy::too_many_arguments)]
    fn commit_update(
        &mut self,
        store: &Store,
        rt: &'static ResourceType,
        ns: &str,
        name: &str,
        old: &Arc<Value>,
        mut new: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        // Identity and bookkeeping fields are the server's.
        for f in ["uid", "creationTimestamp", "generation", "resourceVersion"] {
            match old["metadata"].get(f) {
                Some(v) => new["metadata"][f] = v.clone(),
                None => {
                    if let Some(m) = new["metadata"].as_object_mut() {
                        m.remove(f);
                    }
                }
            }
        }
        new["metadata"]["name"] = json!(name);
        if rt.namespaced {
            new["metadata"]["namespace"] = json!(ns);
        }
        if let Some(ts) = old.pointer("/metadata/deletionTimestamp") {
            new["metadata"]["deletionTimestamp"] = ts.clone();
        }
        new["apiVersion"] = json!(rt.api_version());
        new["kind"] = json!(rt.kind);
        defaults::apply(rt, &mut new);
        if spec_part(&new) != spec_part(old) {
            let g = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            new["metadata"]["generation"] = json!(g + 1);
        }
        if new == **old {
            return Ok(new);
        }
        if dry_run {
            return Ok(new);
        }
        if new.pointer("/metadata/deletionTimestamp").is_some() && !has_finalizers(&new) {
            // The last finalizer went: the deletion completes now.
            self.put(
                store,
                rt,
                (ns.to_string(), name.to_string()),
                new,
                Some(old.clone()),
            );
            return Ok(self.delete(store, rt, ns, name, Propagation::Background));
        }
        Ok(self.put(
            store,
            rt,
            (ns.to_string(), name.to_string()),
            new,
            Some(old.clone()),
        ))
    }

    /// Removes an object (or marks it for deletion if it has finalizers)
    /// and cascades to its dependents.
    fn delete(
        &mut self,
        store: &Store,
        rt: &'static ResourceType,
        ns: &str,
        name: &str,
        propagation: Propagation,
    ) -> Value {
        let key = (ns.to_string(), name.to_string());
        let Some(old) = self.get(rt, ns, name) else {
            return Value::Null;
        };
        if has_finalizers(&old) {
            if old.pointer("/metadata/deletionTimestamp").is_some() {
                return (*old).clone();
            }
            let mut new = (*old).clone();
            new["metadata"]["deletionTimestamp"] = json!(now());
            new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            return self.put(store, rt, key, new, Some(old));
        }
        let uid = old
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if rt.same(&registry::NAMESPACES) {
            self.delete_namespace_content(store, name);
        }
        if propagation != Propagation::Orphan {
            // Foreground would keep the owner until its dependents are gone;
            // deleting the dependents first gives clients the same end state.
            for (drt, dns, dname) in self.dependents(&uid) {
                self.delete(store, drt, &dns, &dname, Propagation::Background);
            }
        }
        self.rv += 1;
        let rv = self.rv;
        let mut last = (*old).clone();
        last["metadata"]["resourceVersion"] = json!(rv.to_string());
        if let Some(t) = self.types.get_mut(&type_key(rt)) {
            t.objects.remove(&key);
        }
        self.record(
            store,
            Event {
                event_type: EventType::Deleted,
                resource: rt,
                object: Arc::new(last.clone()),
                old: None,
                resource_version: rv,
            },
        );
        if propagation == Propagation::Orphan {
            for (drt, dns, dname) in self.dependents(&uid) {
                if let Some(d) = self.get(drt, &dns, &dname) {
                    let mut nd = (*d).clone();
                    if let Some(refs) = nd["metadata"]["ownerReferences"].as_array_mut() {
                        refs.retain(|r| r["uid"].as_str() != Some(uid.as_str()));
                        if refs.is_empty() {
                            nd["metadata"]
                                .as_object_mut()
                                .expect("object")
                                .remove("ownerReferences");
                        }
                    }
                    self.put(store, drt, (dns, dname), nd, Some(d));
                }
            }
        }
        last
    }

    fn dependents(&self, uid: &str) -> Vec<(&'static ResourceType, String, String)> {
        if uid.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for t in self.types.values() {
            for ((ns, name), v) in &t.objects {
                if owner_uids(v).any(|u| u == uid) {
                    out.push((t.rt, ns.clone(), name.clone()));
                }
            }
        }
        out
    }

    fn delete_namespace_content(&mut self, store: &Store, ns: &str) {
        let mut victims = Vec::new();
        for t in self.types.values() {
            if !t.rt.namespaced {
                continue;
            }
            for (k, _) in t.objects.iter().filter(|(k, _)| k.0 == ns) {
                victims.push((t.rt, k.1.clone()));
            }
        }
        for (rt, name) in victims {
            // Finalizers cannot hold up a namespace's content here: strip them.
            if let Some(o) = self.get(rt, ns, &name)
                && has_finalizers(&o)
            {
                let mut n = (*o).clone();
                n["metadata"]
                    .as_object_mut()
                    .expect("object")
                    .remove("finalizers");
                self.put(store, rt, (ns.to_string(), name.clone()), n, Some(o));
            }
            self.delete(store, rt, ns, &name, Propagation::Background);
        }
    }
}

#[cfg(test)]
mod tests;
