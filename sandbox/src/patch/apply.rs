//! Server-side apply (`application/apply-patch+yaml`) and field ownership
//! (`metadata.managedFields`).
//!
//! Every write with a field manager records which fields that manager owns,
//! in the FieldsV1 format of a real API server: `f:<field>` for object
//! fields, `k:{"name":"x"}` for items of keyed lists (keys from
//! [`super::schema`]), `v:<value>` for items of sets, `i:<index>` as a
//! fallback, `.` for a list item or map itself.
//!
//! - [`server_side_apply`]: merges an applied configuration into the live
//!   object; the manager then owns exactly the fields it applied. Fields it
//!   owned before and no longer applies are removed unless another manager
//!   also owns them. Changing a field another manager owns is a conflict
//!   unless `force`, which moves the ownership.
//! - [`record_update`]: for create/update/patch with a `fieldManager`: the
//!   manager takes ownership of the fields that changed (operation Update).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::json_eq;
use super::schema::{ListType, list_type};

/// Why server-side apply refused the request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// Fields the applied configuration changes are owned by other
    /// managers: answer 409 Conflict with [`ApplyError::causes`]. The
    /// message reads like a real server's, e.g. `Apply failed with 1
    /// conflict: conflict with "kubectl": .spec.replicas`.
    #[error("{}", conflict_message(.0))]
    Conflict(Vec<Conflict>),
    /// The applied configuration is not an object with `apiVersion` and
    /// `kind`: answer 400 BadRequest.
    #[error("the applied configuration is not valid: {0}")]
    Invalid(String),
}

/// The name the router and the brief use for the apply error.
pub type ApplyConflict = ApplyError;

/// One field owned by another manager that the apply would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The other manager as a real server prints it: `"kubectl"` for an
    /// apply manager, `"kubectl-edit" using apps/v1 at <time>` for an
    /// update manager.
    pub manager: String,
    /// The field, e.g. `.spec.template.spec.containers[name="app"].image`.
    pub field: String,
}

impl ApplyError {
    /// HTTP status code: 409 for conflicts, 400 for invalid configurations.
    pub fn status_code(&self) -> u16 {
        match self {
            ApplyError::Conflict(_) => 409,
            ApplyError::Invalid(_) => 400,
        }
    }

    /// `Status.reason`: `Conflict` or `BadRequest`.
    pub fn reason(&self) -> &'static str {
        match self {
            ApplyError::Conflict(_) => "Conflict",
            ApplyError::Invalid(_) => "BadRequest",
        }
    }

    /// `Status.details.causes`, one `FieldManagerConflict` per conflict.
    pub fn causes(&self) -> Vec<Value> {
        match self {
            ApplyError::Conflict(conflicts) => conflicts
                .iter()
                .map(|c| {
                    json!({
                        "type": "FieldManagerConflict",
                        "message": format!("conflict with {}", c.manager),
                        "field": c.field,
                    })
                })
                .collect(),
            ApplyError::Invalid(_) => Vec::new(),
        }
    }
}

fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [only] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            only.manager, only.field
        );
    }
    let mut by_manager: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for c in conflicts {
        by_manager.entry(&c.manager).or_default().push(&c.field);
    }
    let mut lines = Vec::new();
    for (manager, fields) in by_manager {
        lines.push(format!("conflicts with {manager}"));
        lines.extend(fields.into_iter().map(|f| format!("- {f}")));
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// Server-side apply of `applied` (the parsed apply-patch body) onto
/// `live` (`None`: the object does not exist yet and is created) by field
/// manager `manager` at time `now` (RFC 3339).
///
/// Returns the new object with `metadata.managedFields` updated (an entry
/// `{manager, operation: "Apply", apiVersion, time, fieldsType: "FieldsV1",
/// fieldsV1}` for this manager). The caller keeps `uid`,
/// `resourceVersion`, `creationTimestamp` and the like from `live`, and
/// should drop `.status` from `applied` for kinds with a status subresource.
pub fn server_side_apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<Value, ApplyError> {
    let Value::Object(_) = applied else {
        return Err(ApplyError::Invalid(
            "it must be an object with apiVersion, kind and metadata.name".into(),
        ));
    };
    let api_version = applied["apiVersion"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApplyError::Invalid("apiVersion must be set".into()))?;
    let kind = applied["kind"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApplyError::Invalid("kind must be set".into()))?;
    let mut applied = applied.clone();
    strip_managed_fields(&mut applied);

    let mut entries = live.map(entries_of).unwrap_or_default();
    if let Some(live) = live
        && entries.is_empty()
    {
        // Fields set before anyone applied belong to a pseudo-manager, so
        // that the first apply cannot silently take them over.
        let fields = changed_fields(None, live, kind);
        if !fields.is_empty() {
            entries.push(Entry {
                manager: "before-first-apply".into(),
                operation: "Update".into(),
                api_version: live["apiVersion"].as_str().unwrap_or(api_version).into(),
                time: Some(now.to_string()),
                subresource: None,
                fields,
            });
        }
    }
    let applied_fields = applied_fields(&applied, kind);

    let base = match live {
        Some(live) => {
            let mut base = live.clone();
            strip_managed_fields(&mut base);
            base
        }
        None => Value::Object(Map::new()),
    };
    let mut merged = base.clone();
    merge(&mut merged, &applied, &mut Vec::new(), kind);

    let mine =
        |e: &Entry| e.manager == manager && e.operation == "Apply" && e.subresource.is_none();

    let mut conflicts = Vec::new();
    let mut conflicting_paths = Vec::new();
    for leaf in applied_fields.leaves() {
        if leaf.last().is_some_and(|l| l == ".") {
            continue;
        }
        let before = value_at(&base, &leaf);
        let after = value_at(&merged, &leaf);
        let unchanged = match (before, after) {
            (Some(a), Some(b)) => json_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if unchanged {
            continue;
        }
        for entry in entries.iter().filter(|e| !mine(e)) {
            if entry.fields.contains(&leaf) {
                conflicts.push(Conflict {
                    manager: entry.display(),
                    field: path_string(&leaf),
                });
                conflicting_paths.push(leaf.clone());
            }
        }
    }
    if !conflicts.is_empty() {
        if !force {
            return Err(ApplyError::Conflict(conflicts));
        }
        for entry in entries.iter_mut().filter(|e| !mine(e)) {
            for path in &conflicting_paths {
                entry.fields.remove(path);
            }
        }
    }

    let previous = entries
        .iter()
        .find(|e| mine(e))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    for leaf in previous.leaves() {
        // Still applied, possibly now with fields below it (an empty list
        // that gained items).
        if applied_fields.contains_under(&leaf) {
            continue;
        }
        let (target, is_item) = match leaf.split_last() {
            Some((last, parent)) if last == "." => (parent.to_vec(), true),
            _ => (leaf.clone(), false),
        };
        let kept_by_others = entries.iter().filter(|e| !mine(e)).any(|e| {
            if is_item {
                e.fields.contains_under(&target)
            } else {
                e.fields.contains(&leaf)
            }
        }) || (is_item && applied_fields.contains_under(&target));
        if !kept_by_others {
            remove_at(&mut merged, &target);
        }
    }

    let entry = Entry {
        manager: manager.to_string(),
        operation: "Apply".into(),
        api_version: api_version.to_string(),
        time: Some(now.to_string()),
        subresource: None,
        fields: applied_fields,
    };
    match entries.iter_mut().find(|e| mine(e)) {
        Some(existing) => *existing = entry,
        None => entries.push(entry),
    }
    entries.retain(|e| !e.fields.is_empty());
    set_managed_fields(&mut merged, &entries);
    Ok(merged)
}

/// Records ownership for a non-apply write (create, update, patch) by
/// `manager` (the request's `fieldManager`) at `now` (RFC 3339): `old` is
/// the stored object before the write (`None` on create), `new` the object
/// about to be stored. Returns `new` with `metadata.managedFields` updated:
/// the fields that changed move to `manager`'s entry with operation
/// `Update`; fields no longer in the object leave every entry.
pub fn record_update(old: Option<&Value>, new: &Value, manager: &str, now: &str) -> Value {
    let kind = new["kind"]
        .as_str()
        .or_else(|| old.and_then(|o| o["kind"].as_str()))
        .unwrap_or("");
    let api_version = new["apiVersion"]
        .as_str()
        .or_else(|| old.and_then(|o| o["apiVersion"].as_str()))
        .unwrap_or("")
        .to_string();
    // The stored entries, unless the write itself changed managedFields:
    // a client may rewrite them (kubectl does when it moves an object from
    // client-side to server-side apply) or clear them with `[]`.
    let sent = new["metadata"].get("managedFields");
    let mut entries = match (old, sent) {
        (_, Some(Value::Array(list))) if list.is_empty() => Vec::new(),
        (Some(old), Some(sent)) if old["metadata"].get("managedFields") != Some(sent) => {
            entries_of(new)
        }
        (Some(old), _) => entries_of(old),
        (None, _) => entries_of(new),
    };
    let mut result = new.clone();
    strip_managed_fields(&mut result);
    let old_clean = old.map(|o| {
        let mut o = o.clone();
        strip_managed_fields(&mut o);
        o
    });
    let changed = changed_fields(old_clean.as_ref(), &result, kind);

    for entry in entries.iter_mut() {
        for leaf in entry.fields.leaves() {
            let gone = match leaf.split_last() {
                Some((last, parent)) if last == "." => value_at(&result, parent).is_none(),
                _ => value_at(&result, &leaf).is_none(),
            };
            let taken = changed.contains(&leaf) && entry.manager != manager;
            if gone || taken {
                entry.fields.remove(&leaf);
            }
        }
    }
    let mine =
        |e: &Entry| e.manager == manager && e.operation == "Update" && e.subresource.is_none();
    match entries.iter_mut().find(|e| mine(e)) {
        Some(entry) => {
            if !changed.is_empty() {
                entry.fields.union(&changed);
                entry.time = Some(now.to_string());
                entry.api_version = api_version;
            }
        }
        None => {
            if !changed.is_empty() {
                entries.push(Entry {
                    manager: manager.to_string(),
                    operation: "Update".into(),
                    api_version,
                    time: Some(now.to_string()),
                    subresource: None,
                    fields: changed,
                });
            }
        }
    }
    entries.retain(|e| !e.fields.is_empty());
    set_managed_fields(&mut result, &entries);
    result
}

/// A set of field paths as a FieldsV1 tree: each key is a path element
/// (`f:name`, `k:{..}`, `v:..`, `i:n`, `.`); a path is in the set when it
/// ends at a node without children.
#[derive(Debug, Clone, Default, PartialEq)]
struct FieldSet(BTreeMap<String, FieldSet>);

type FieldPath = Vec<String>;

impl FieldSet {
    fn from_json(v: &Value) -> FieldSet {
        FieldSet(
            v.as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), FieldSet::from_json(v)))
                .collect(),
        )
    }

    fn to_json(&self) -> Value {
        Value::Object(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect(),
        )
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn insert(&mut self, path: &[String]) {
        let mut node = self;
        for element in path {
            node = node.0.entry(element.clone()).or_default();
        }
    }

    fn node(&self, path: &[String]) -> Option<&FieldSet> {
        let mut node = self;
        for element in path {
            node = node.0.get(element)?;
        }
        Some(node)
    }

    /// Whether `path` is a member (a leaf) of the set.
    fn contains(&self, path: &[String]) -> bool {
        self.node(path).is_some_and(FieldSet::is_empty)
    }

    /// Whether the set has `path` or anything below it.
    fn contains_under(&self, path: &[String]) -> bool {
        self.node(path).is_some()
    }

    /// Removes the member `path`, pruning parents left without children.
    fn remove(&mut self, path: &[String]) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        if let Some(child) = self.0.get_mut(first) {
            if rest.is_empty() {
                if child.is_empty() {
                    self.0.remove(first);
                }
            } else {
                child.remove(rest);
                if child.is_empty() {
                    self.0.remove(first);
                }
            }
        }
    }

    fn union(&mut self, other: &FieldSet) {
        for (k, v) in &other.0 {
            self.0.entry(k.clone()).or_default().union(v);
        }
    }

    fn leaves(&self) -> Vec<FieldPath> {
        let mut out = Vec::new();
        let mut prefix = Vec::new();
        self.collect_leaves(&mut prefix, &mut out);
        out
    }

    fn collect_leaves(&self, prefix: &mut FieldPath, out: &mut Vec<FieldPath>) {
        for (k, v) in &self.0 {
            prefix.push(k.clone());
            if v.is_empty() {
                out.push(prefix.clone());
            } else {
                v.collect_leaves(prefix, out);
            }
            prefix.pop();
        }
    }
}

/// One `metadata.managedFields` entry.
#[derive(Debug, Clone)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: Option<String>,
    subresource: Option<String>,
    fields: FieldSet,
}

impl Entry {
    fn display(&self) -> String {
        let mut out = format!("{:?}", self.manager);
        if let Some(sub) = &self.subresource {
            out.push_str(&format!(" with subresource {sub:?}"));
        }
        if self.operation == "Update" {
            out.push_str(&format!(" using {}", self.api_version));
            if let Some(time) = &self.time {
                out.push_str(&format!(" at {time}"));
            }
        }
        out
    }

    fn to_json(&self) -> Value {
        let mut o = Map::new();
        o.insert("manager".into(), json!(self.manager));
        o.insert("operation".into(), json!(self.operation));
        o.insert("apiVersion".into(), json!(self.api_version));
        if let Some(time) = &self.time {
            o.insert("time".into(), json!(time));
        }
        o.insert("fieldsType".into(), json!("FieldsV1"));
        o.insert("fieldsV1".into(), self.fields.to_json());
        if let Some(sub) = &self.subresource {
            o.insert("subresource".into(), json!(sub));
        }
        Value::Object(o)
    }
}

fn entries_of(obj: &Value) -> Vec<Entry> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["fieldsType"].as_str().unwrap_or("FieldsV1") == "FieldsV1")
        .map(|e| Entry {
            manager: e["manager"].as_str().unwrap_or_default().to_string(),
            operation: e["operation"].as_str().unwrap_or("Update").to_string(),
            api_version: e["apiVersion"].as_str().unwrap_or_default().to_string(),
            time: e["time"].as_str().map(str::to_string),
            subresource: e["subresource"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            fields: FieldSet::from_json(&e["fieldsV1"]),
        })
        .collect()
}

fn strip_managed_fields(obj: &mut Value) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
}

fn set_managed_fields(obj: &mut Value, entries: &[Entry]) {
    let Value::Object(root) = obj else {
        return;
    };
    let meta = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(meta) = meta {
        if entries.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert(
                "managedFields".into(),
                Value::Array(entries.iter().map(Entry::to_json).collect()),
            );
        }
    }
}

/// Fields the API server manages itself: never owned by a manager.
fn ignored(names: &[String]) -> bool {
    match names {
        [top] => top == "apiVersion" || top == "kind",
        [meta, field] if meta == "metadata" => matches!(
            field.as_str(),
            "name"
                | "namespace"
                | "uid"
                | "resourceVersion"
                | "generation"
                | "creationTimestamp"
                | "deletionTimestamp"
                | "deletionGracePeriodSeconds"
                | "managedFields"
                | "selfLink"
        ),
        _ => false,
    }
}

fn list_type_of(kind: &str, names: &[String]) -> ListType {
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    list_type(kind, &names)
}

/// The value the API server defaults a missing list key to: a port's
/// `protocol` is `TCP`. Without it an applied `{port: 80}` would not match
/// the stored (defaulted) `{port: 80, protocol: TCP}` and the list would
/// grow a duplicate.
fn key_default(key: &str) -> Option<Value> {
    (key == "protocol").then(|| json!("TCP"))
}

/// `k:{"name":"x"}` for an item of a keyed list: the key fields of the
/// item (defaulted where the server defaults them), sorted by name.
fn key_element(item: &Value, keys: &[&str]) -> Option<String> {
    if !keys.iter().any(|k| item.get(*k).is_some()) {
        return None;
    }
    let mut present: Vec<(&str, Value)> = keys
        .iter()
        .filter_map(|k| {
            item.get(*k)
                .cloned()
                .or_else(|| key_default(k))
                .map(|v| (*k, v))
        })
        .collect();
    present.sort_by_key(|(k, _)| *k);
    let body: Vec<String> = present
        .iter()
        .map(|(k, v)| format!("{}:{}", json!(k), v))
        .collect();
    Some(format!("k:{{{}}}", body.join(",")))
}

fn item_element(item: &Value, index: usize, list_type: ListType) -> String {
    match list_type {
        ListType::Map { keys, .. } => {
            key_element(item, keys).unwrap_or_else(|| format!("i:{index}"))
        }
        ListType::Set => format!("v:{item}"),
        ListType::Atomic => format!("i:{index}"),
    }
}

/// The fields an applied configuration sets: leaves, list items of keyed
/// lists (with `.`), set members.
fn applied_fields(applied: &Value, kind: &str) -> FieldSet {
    let mut set = FieldSet::default();
    walk_applied(applied, &mut Vec::new(), &mut Vec::new(), kind, &mut set);
    set
}

fn walk_applied(
    value: &Value,
    prefix: &mut FieldPath,
    names: &mut Vec<String>,
    kind: &str,
    set: &mut FieldSet,
) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                names.push(k.clone());
                if !ignored(names) && !v.is_null() {
                    prefix.push(format!("f:{k}"));
                    walk_applied(v, prefix, names, kind, set);
                    prefix.pop();
                }
                names.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => match list_type_of(kind, names) {
            ListType::Atomic => set.insert(prefix),
            lt @ ListType::Set => {
                for (i, item) in items.iter().enumerate() {
                    prefix.push(item_element(item, i, lt));
                    set.insert(prefix);
                    prefix.pop();
                }
            }
            lt @ ListType::Map { .. } => {
                for (i, item) in items.iter().enumerate() {
                    prefix.push(item_element(item, i, lt));
                    prefix.push(".".into());
                    set.insert(prefix);
                    prefix.pop();
                    walk_applied(item, prefix, names, kind, set);
                    prefix.pop();
                }
            }
        },
        _ => {
            if !prefix.is_empty() {
                set.insert(prefix);
            }
        }
    }
}

/// The fields that differ between `old` and `new` (everything in `new`
/// when `old` is `None`); new maps and list items also get `.`.
fn changed_fields(old: Option<&Value>, new: &Value, kind: &str) -> FieldSet {
    let mut set = FieldSet::default();
    walk_changed(old, new, &mut Vec::new(), &mut Vec::new(), kind, &mut set);
    set
}

fn walk_changed(
    old: Option<&Value>,
    new: &Value,
    prefix: &mut FieldPath,
    names: &mut Vec<String>,
    kind: &str,
    set: &mut FieldSet,
) {
    match new {
        Value::Object(map) => {
            let old_map = old.and_then(Value::as_object);
            if old_map.is_none() && map.is_empty() {
                if !prefix.is_empty() {
                    set.insert(prefix);
                }
                return;
            }
            let mut children = FieldSet::default();
            for (k, v) in map {
                names.push(k.clone());
                if !ignored(names) && !v.is_null() {
                    prefix.push(format!("f:{k}"));
                    let old_value = old_map.and_then(|m| m.get(k));
                    walk_changed(old_value, v, prefix, names, kind, &mut children);
                    prefix.pop();
                }
                names.pop();
            }
            // A new map is itself a member, unless only server-managed
            // fields (metadata.name...) are in it.
            if old_map.is_none() && !prefix.is_empty() && !children.is_empty() {
                prefix.push(".".into());
                children.insert(prefix);
                prefix.pop();
            }
            set.union(&children);
        }
        Value::Array(items) => {
            let old_items = old.and_then(Value::as_array);
            let lt = list_type_of(kind, names);
            match lt {
                ListType::Atomic => {
                    if !old.is_some_and(|o| json_eq(o, new)) {
                        set.insert(prefix);
                    }
                }
                ListType::Set | ListType::Map { .. } if items.is_empty() => {
                    if old_items.is_none() {
                        set.insert(prefix);
                    }
                }
                ListType::Set => {
                    for (i, item) in items.iter().enumerate() {
                        if !old_items.is_some_and(|o| o.iter().any(|x| json_eq(x, item))) {
                            prefix.push(item_element(item, i, lt));
                            set.insert(prefix);
                            prefix.pop();
                        }
                    }
                }
                ListType::Map { .. } => {
                    for (i, item) in items.iter().enumerate() {
                        let element = item_element(item, i, lt);
                        let old_item = old_items.and_then(|o| {
                            o.iter()
                                .enumerate()
                                .find(|(j, x)| item_element(x, *j, lt) == element)
                                .map(|(_, x)| x)
                        });
                        prefix.push(element);
                        if old_item.is_none() && !item.is_object() {
                            prefix.push(".".into());
                            set.insert(prefix);
                            prefix.pop();
                        }
                        walk_changed(old_item, item, prefix, names, kind, set);
                        prefix.pop();
                    }
                }
            }
        }
        _ => {
            if !old.is_some_and(|o| json_eq(o, new)) && !prefix.is_empty() {
                set.insert(prefix);
            }
        }
    }
}

/// Merges an applied configuration into the live object: objects field by
/// field, keyed lists item by item, sets as a union, the rest replaced.
fn merge(live: &mut Value, applied: &Value, names: &mut Vec<String>, kind: &str) {
    match (live, applied) {
        (Value::Object(l), Value::Object(a)) => {
            for (k, av) in a {
                if av.is_null() {
                    continue;
                }
                names.push(k.clone());
                match l.get_mut(k) {
                    Some(lv) => merge(lv, av, names, kind),
                    None => {
                        l.insert(k.clone(), av.clone());
                    }
                }
                names.pop();
            }
        }
        (Value::Array(l), Value::Array(a)) => match list_type_of(kind, names) {
            ListType::Atomic => *l = a.clone(),
            lt => {
                let live = std::mem::take(l);
                *l = merge_list(live, a, lt, names, kind);
            }
        },
        (live, applied) => *live = applied.clone(),
    }
}

/// Merges a keyed list or set the way the API server does: items both
/// sides have come in the applied order, merged; items only the live
/// object has keep their places between them; new items follow the
/// applied order.
fn merge_list(
    live: Vec<Value>,
    applied: &[Value],
    lt: ListType,
    names: &mut Vec<String>,
    kind: &str,
) -> Vec<Value> {
    let live_keys: Vec<String> = live
        .iter()
        .enumerate()
        .map(|(i, x)| item_element(x, i, lt))
        .collect();
    let applied_keys: Vec<String> = applied
        .iter()
        .enumerate()
        .map(|(i, x)| item_element(x, i, lt))
        .collect();
    let shared: Vec<&String> = applied_keys
        .iter()
        .filter(|k| live_keys.contains(k))
        .collect();
    let mut next_shared = shared.into_iter().peekable();
    let mut merged_keys: Vec<&String> = Vec::new();
    let mut out = Vec::with_capacity(live.len().max(applied.len()));
    let take = |key: &String, item: &Value, names: &mut Vec<String>| {
        let mut value = match live_keys.iter().position(|k| k == key) {
            Some(i) => live[i].clone(),
            None => return item.clone(),
        };
        merge(&mut value, item, names, kind);
        value
    };
    let (mut li, mut ri) = (0, 0);
    while li < live.len() || ri < applied.len() {
        if li < live.len() && ri < applied.len() {
            if live_keys[li] == applied_keys[ri] {
                out.push(take(&applied_keys[ri], &applied[ri], names));
                merged_keys.push(&applied_keys[ri]);
                if next_shared.peek() == Some(&&applied_keys[ri]) {
                    next_shared.next();
                }
                li += 1;
                ri += 1;
                continue;
            }
            if applied_keys.contains(&live_keys[li])
                && next_shared.peek().is_some_and(|k| **k != live_keys[li])
            {
                li += 1;
                continue;
            }
        }
        if li < live.len() {
            if !applied_keys.contains(&live_keys[li]) {
                out.push(live[li].clone());
                li += 1;
                continue;
            }
            if merged_keys.contains(&&live_keys[li]) {
                li += 1;
                continue;
            }
        }
        if ri < applied.len() {
            out.push(take(&applied_keys[ri], &applied[ri], names));
            merged_keys.push(&applied_keys[ri]);
            if next_shared.peek() == Some(&&applied_keys[ri]) {
                next_shared.next();
            }
            ri += 1;
        }
    }
    out
}

fn find_item(items: &[Value], element: &str) -> Option<usize> {
    if let Some(index) = element.strip_prefix("i:") {
        let index: usize = index.parse().ok()?;
        return (index < items.len()).then_some(index);
    }
    if let Some(value) = element.strip_prefix("v:") {
        let value: Value = serde_json::from_str(value).ok()?;
        return items.iter().position(|x| json_eq(x, &value));
    }
    let key: Map<String, Value> = serde_json::from_str(element.strip_prefix("k:")?).ok()?;
    items.iter().position(|item| {
        key.iter().all(|(k, v)| {
            item.get(k)
                .cloned()
                .or_else(|| key_default(k))
                .is_some_and(|x| json_eq(&x, v))
        })
    })
}

fn value_at<'a>(root: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = root;
    for element in path {
        if element == "." {
            continue;
        }
        cur = match element.strip_prefix("f:") {
            Some(field) => cur.as_object()?.get(field)?,
            None => {
                let items = cur.as_array()?;
                &items[find_item(items, element)?]
            }
        };
    }
    Some(cur)
}

fn remove_at(root: &mut Value, path: &[String]) {
    let Some((last, parent)) = path.split_last() else {
        return;
    };
    let mut cur = root;
    for element in parent {
        let next = match element.strip_prefix("f:") {
            Some(field) => cur.as_object_mut().and_then(|m| m.get_mut(field)),
            None => match cur.as_array_mut() {
                Some(items) => match find_item(items, element) {
                    Some(i) => items.get_mut(i),
                    None => None,
                },
                None => None,
            },
        };
        match next {
            Some(next) => cur = next,
            None => return,
        }
    }
    match last.strip_prefix("f:") {
        Some(field) => {
            if let Some(map) = cur.as_object_mut() {
                map.remove(field);
            }
        }
        None => {
            if let Some(items) = cur.as_array_mut()
                && let Some(i) = find_item(items, last)
            {
                items.remove(i);
            }
        }
    }
}

/// A field path as a real server prints it in conflicts:
/// `.spec.containers[name="app"].image`, `[=value]` for set members,
/// `[3]` for indexes.
fn path_string(path: &[String]) -> String {
    let mut out = String::new();
    for element in path {
        if let Some(field) = element.strip_prefix("f:") {
            out.push('.');
            out.push_str(field);
        } else if let Some(value) = element.strip_prefix("v:") {
            out.push_str(&format!("[={value}]"));
        } else if let Some(index) = element.strip_prefix("i:") {
            out.push_str(&format!("[{index}]"));
        } else if let Some(key) = element.strip_prefix("k:") {
            let fields: Map<String, Value> = serde_json::from_str(key).unwrap_or_default();
            let parts: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!("[{}]", parts.join(",")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const T1: &str = "2026-11-24T10:00:00Z";
    const T2: &str = "2026-11-24T11:00:00Z";

    fn entry<'a>(obj: &'a Value, manager: &str) -> Option<&'a Value> {
        obj["metadata"]["managedFields"]
            .as_array()?
            .iter()
            .find(|e| e["manager"] == manager)
    }

    fn cm(data: Value) -> Value {
        json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","namespace":"kleidia"},"data":data})
    }

    fn deploy(replicas: Option<i64>, containers: Value) -> Value {
        let mut d = json!({"apiVersion":"apps/v1","kind":"Deployment",
            "metadata":{"name":"web","namespace":"kleidia","labels":{"app":"web"}},
            "spec":{"selector":{"matchLabels":{"app":"web"}},
                    "template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":containers}}}});
        if let Some(r) = replicas {
            d["spec"]["replicas"] = json!(r);
        }
        d
    }

    /// `web` with one container `app` running `image`.
    fn web(replicas: Option<i64>, image: &str) -> Value {
        deploy(replicas, json!([{"name":"app","image":image}]))
    }

    /// `web` (1 replica, app:1) as kubectl first applies it.
    fn applied_by_kubectl() -> Value {
        server_side_apply(None, &web(Some(1), "app:1"), "kubectl", false, T1).unwrap()
    }

    #[test]
    fn create_records_an_apply_entry_in_fieldsv1_format() {
        let applied = deploy(
            Some(2),
            json!([{"name":"app","image":"app:1","ports":[{"containerPort":80}]}]),
        );
        let out = server_side_apply(None, &applied, "kubectl", false, T1).unwrap();
        assert_eq!(out["spec"], applied["spec"]);
        let e = entry(&out, "kubectl").unwrap();
        assert_eq!(e["operation"], "Apply");
        assert_eq!(e["apiVersion"], "apps/v1");
        assert_eq!(e["time"], T1);
        assert_eq!(e["fieldsType"], "FieldsV1");
        assert_eq!(
            e["fieldsV1"],
            json!({
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:replicas": {},
                    "f:selector": {"f:matchLabels": {"f:app": {}}},
                    "f:template": {
                        "f:metadata": {"f:labels": {"f:app": {}}},
                        "f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {
                            ".": {}, "f:image": {}, "f:name": {},
                            "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}
                        }}}
                    }
                }
            })
        );
    }

    #[test]
    fn two_managers_share_an_object() {
        let a = server_side_apply(None, &cm(json!({"a":"1"})), "alpha", false, T1).unwrap();
        let b = server_side_apply(Some(&a), &cm(json!({"b":"2"})), "beta", false, T2).unwrap();
        assert_eq!(b["data"], json!({"a":"1","b":"2"}));
        assert_eq!(
            entry(&b, "alpha").unwrap()["fieldsV1"],
            json!({"f:data":{"f:a":{}}})
        );
        assert_eq!(
            entry(&b, "beta").unwrap()["fieldsV1"],
            json!({"f:data":{"f:b":{}}})
        );
        // Beta applying alpha's field with the same value shares it.
        let c =
            server_side_apply(Some(&b), &cm(json!({"a":"1","b":"2"})), "beta", false, T2).unwrap();
        assert_eq!(
            entry(&c, "alpha").unwrap()["fieldsV1"],
            json!({"f:data":{"f:a":{}}})
        );
        assert_eq!(
            entry(&c, "beta").unwrap()["fieldsV1"],
            json!({"f:data":{"f:a":{},"f:b":{}}})
        );
        // Alpha dropping the shared field keeps it (beta still owns it).
        let mut nothing = cm(json!(null));
        nothing.as_object_mut().unwrap().remove("data");
        let d = server_side_apply(Some(&c), &nothing, "alpha", false, T2).unwrap();
        assert_eq!(d["data"], json!({"a":"1","b":"2"}));
        assert!(entry(&d, "alpha").is_none(), "alpha owns nothing any more");
    }

    #[test]
    fn conflict_without_force_names_field_and_owner() {
        let live = applied_by_kubectl();
        let err =
            server_side_apply(Some(&live), &web(Some(3), "app:1"), "helm", false, T2).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas"
        );
        assert_eq!(err.status_code(), 409);
        assert_eq!(err.reason(), "Conflict");
        assert_eq!(
            err.causes(),
            vec![
                json!({"type":"FieldManagerConflict","message":"conflict with \"kubectl\"","field":".spec.replicas"})
            ]
        );
    }

    #[test]
    fn several_conflicts_are_grouped_by_manager() {
        let live = applied_by_kubectl();
        let err =
            server_side_apply(Some(&live), &web(Some(3), "app:2"), "helm", false, T2).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Apply failed with 2 conflicts: conflicts with \"kubectl\"\n- .spec.replicas\n- .spec.template.spec.containers[name=\"app\"].image"
        );
    }

    #[test]
    fn force_moves_ownership() {
        let live = applied_by_kubectl();
        let out = server_side_apply(Some(&live), &json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},"spec":{"replicas":3}}), "hpa", true, T2).unwrap();
        assert_eq!(out["spec"]["replicas"], 3);
        assert_eq!(
            entry(&out, "hpa").unwrap()["fieldsV1"],
            json!({"f:spec":{"f:replicas":{}}})
        );
        assert!(
            entry(&out, "kubectl").unwrap()["fieldsV1"]["f:spec"]
                .get("f:replicas")
                .is_none()
        );
        // The old owner no longer conflicts on... its own next apply without replicas,
        // and the replicas field stays (hpa owns it).
        let again =
            server_side_apply(Some(&out), &web(None, "app:1"), "kubectl", false, T2).unwrap();
        assert_eq!(again["spec"]["replicas"], 3);
    }

    #[test]
    fn fields_dropped_from_the_applied_config_are_removed() {
        let live =
            server_side_apply(None, &cm(json!({"a":"1","b":"2"})), "kubectl", false, T1).unwrap();
        let out =
            server_side_apply(Some(&live), &cm(json!({"a":"1"})), "kubectl", false, T2).unwrap();
        assert_eq!(out["data"], json!({"a":"1"}));
        assert_eq!(
            entry(&out, "kubectl").unwrap()["fieldsV1"],
            json!({"f:data":{"f:a":{}}})
        );
        assert_eq!(entry(&out, "kubectl").unwrap()["time"], T2);
    }

    #[test]
    fn keyed_list_items_merge_and_are_removed_by_their_owner() {
        let v1 = deploy(
            Some(1),
            json!([{"name":"app","image":"app:1"},{"name":"sidecar","image":"side:1"}]),
        );
        let live = server_side_apply(None, &v1, "helm", false, T1).unwrap();
        // Another manager adds an env var to the app container.
        let other = json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},
            "spec":{"template":{"spec":{"containers":[{"name":"app","env":[{"name":"DEBUG","value":"1"}]}]}}}});
        let live = server_side_apply(Some(&live), &other, "operator", false, T1).unwrap();
        // Helm's next revision drops the sidecar and bumps the image.
        let v2 = web(Some(1), "app:2");
        let out = server_side_apply(Some(&live), &v2, "helm", false, T2).unwrap();
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name":"app","image":"app:2","env":[{"name":"DEBUG","value":"1"}]}])
        );
    }

    /// The stored object has the server's defaults (a port's protocol);
    /// the next apply without them must merge into the same item.
    #[test]
    fn port_keys_match_the_defaulted_protocol() {
        let svc = |ports: Value| json!({"apiVersion":"v1","kind":"Service","metadata":{"name":"s"},"spec":{"ports":ports}});
        let applied = svc(json!([{"port":80,"targetPort":8080}]));
        let mut live = server_side_apply(None, &applied, "helm", false, T1).unwrap();
        assert_eq!(
            entry(&live, "helm").unwrap()["fieldsV1"]["f:spec"]["f:ports"],
            json!({"k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}, "f:targetPort": {}}})
        );
        live["spec"]["ports"][0]["protocol"] = json!("TCP");
        let out = server_side_apply(
            Some(&live),
            &svc(json!([{"port":80,"targetPort":9090}])),
            "helm",
            false,
            T2,
        )
        .unwrap();
        assert_eq!(
            out["spec"]["ports"],
            json!([{"port":80,"protocol":"TCP","targetPort":9090}])
        );
        let out =
            server_side_apply(Some(&out), &svc(json!([{"port":81}])), "helm", false, T2).unwrap();
        assert_eq!(out["spec"]["ports"], json!([{"port":81}]));
    }

    #[test]
    fn update_managers_take_changed_fields_and_then_conflict() {
        let live = applied_by_kubectl();
        let mut edited = live.clone();
        edited["spec"]["replicas"] = json!(4);
        edited["metadata"]["annotations"] = json!({"note":"scaled"});
        let out = record_update(Some(&live), &edited, "kubectl-edit", T2);
        let e = entry(&out, "kubectl-edit").unwrap();
        assert_eq!(e["operation"], "Update");
        assert_eq!(e["apiVersion"], "apps/v1");
        assert_eq!(
            e["fieldsV1"],
            json!({"f:metadata":{"f:annotations":{".":{},"f:note":{}}},"f:spec":{"f:replicas":{}}})
        );
        assert!(
            entry(&out, "kubectl").unwrap()["fieldsV1"]["f:spec"]
                .get("f:replicas")
                .is_none()
        );
        let err = server_side_apply(Some(&out), &web(Some(1), "app:1"), "kubectl", false, T2)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using apps/v1 at {T2}: .spec.replicas"
            )
        );
    }

    #[test]
    fn record_update_on_create_owns_everything_and_forgets_removed_fields() {
        let created = record_update(None, &cm(json!({"a":"1","b":"2"})), "kubectl-create", T1);
        assert_eq!(
            entry(&created, "kubectl-create").unwrap()["fieldsV1"],
            json!({"f:data":{".":{},"f:a":{},"f:b":{}}})
        );
        let mut next = created.clone();
        next["data"] = json!({"a":"1"});
        let out = record_update(Some(&created), &next, "controller", T2);
        assert_eq!(
            entry(&out, "kubectl-create").unwrap()["fieldsV1"],
            json!({"f:data":{".":{},"f:a":{}}})
        );
        assert!(entry(&out, "controller").is_none(), "nothing changed hands");
    }

    #[test]
    fn record_update_honours_rewritten_or_cleared_managed_fields() {
        let live = server_side_apply(None, &cm(json!({"a":"1"})), "alpha", false, T1).unwrap();
        // A client renames the manager in managedFields (as kubectl does
        // when migrating client-side apply ownership).
        let mut rewritten = live.clone();
        rewritten["metadata"]["managedFields"][0]["manager"] = json!("beta");
        let out = record_update(Some(&live), &rewritten, "kubectl-patch", T2);
        assert_eq!(managers(&out), ["beta"]);
        // `[]` clears them; only this write's changes remain.
        let mut cleared = out.clone();
        cleared["metadata"]["managedFields"] = json!([]);
        cleared["data"]["b"] = json!("2");
        let out = record_update(Some(&out), &cleared, "editor", T2);
        assert_eq!(managers(&out), ["editor"]);
        assert_eq!(
            entry(&out, "editor").unwrap()["fieldsV1"],
            json!({"f:data":{"f:b":{}}})
        );
    }

    fn managers(obj: &Value) -> Vec<String> {
        obj["metadata"]["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| e["manager"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn first_apply_over_unmanaged_fields_conflicts_with_before_first_apply() {
        let live = cm(json!({"a":"1"}));
        let err = server_side_apply(Some(&live), &cm(json!({"a":"2"})), "kubectl", false, T1)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "Apply failed with 1 conflict: conflict with \"before-first-apply\" using v1 at {T1}: .data.a"
            )
        );
        let ok = server_side_apply(
            Some(&live),
            &cm(json!({"a":"1","b":"2"})),
            "kubectl",
            false,
            T1,
        )
        .unwrap();
        assert_eq!(ok["data"], json!({"a":"1","b":"2"}));
    }

    #[test]
    fn merged_lists_follow_the_applied_order_around_live_only_items() {
        let live = deploy(
            Some(1),
            json!([{"name":"a"},{"name":"x"},{"name":"b"},{"name":"c"}]),
        );
        let applied = deploy(
            Some(1),
            json!([{"name":"c"},{"name":"b"},{"name":"a"},{"name":"d"}]),
        );
        let out = server_side_apply(Some(&live), &applied, "kubectl", false, T1);
        // `live` has no managedFields: its fields belong to before-first-apply,
        // which does not conflict because no value changes.
        let out = out.unwrap();
        let names: Vec<&str> = out["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["x", "c", "b", "a", "d"]);
    }

    /// Applying the same configuration again changes nothing but the
    /// entry's time, and whatever was applied last is what the object holds.
    #[test]
    fn reapplying_is_idempotent_over_random_configurations() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};
        let mut rng = StdRng::seed_from_u64(6902);
        let mut live: Option<Value> = None;
        for round in 0..300 {
            let mut data = Map::new();
            for key in ["a", "b", "c", "d", "e"] {
                if rng.random::<bool>() {
                    data.insert(key.into(), json!(rng.random_range(0..3).to_string()));
                }
            }
            let mut containers = Vec::new();
            for name in ["app", "side", "init"] {
                if rng.random::<bool>() {
                    let tag = rng.random_range(0..3);
                    containers.push(json!({"name": name, "image": format!("{name}:{tag}")}));
                }
            }
            let mut applied = deploy(Some(rng.random_range(0..3)), json!(containers));
            applied["metadata"]["annotations"] = Value::Object(data);
            let once = server_side_apply(live.as_ref(), &applied, "helm", false, T1).unwrap();
            let twice = server_side_apply(Some(&once), &applied, "helm", false, T1).unwrap();
            assert_eq!(once, twice, "round {round}: re-applying changed the object");
            assert_eq!(once["spec"], applied["spec"], "round {round}");
            let annotations = once["metadata"]["annotations"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            assert_eq!(
                Value::Object(annotations),
                applied["metadata"]["annotations"],
                "round {round}"
            );
            live = Some(once);
        }
    }

    #[test]
    fn sets_and_invalid_configs() {
        let mut applied = cm(json!({"a":"1"}));
        applied["metadata"]["finalizers"] = json!(["example.com/x"]);
        let out = server_side_apply(None, &applied, "kubectl", false, T1).unwrap();
        assert_eq!(
            entry(&out, "kubectl").unwrap()["fieldsV1"]["f:metadata"],
            json!({"f:finalizers":{"v:\"example.com/x\"":{}}})
        );
        let err = server_side_apply(None, &json!({"kind":"ConfigMap"}), "kubectl", false, T1)
            .unwrap_err();
        assert_eq!(err.status_code(), 400);
        assert!(matches!(err, ApplyError::Invalid(_)));
    }
}
