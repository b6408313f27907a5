//! Strategic merge patch (`application/strategic-merge-patch+json`), as the
//! Kubernetes API server applies it to built-in kinds.
//!
//! Like a JSON merge patch, except lists merge by their `patchMergeKey`
//! (see [`super::schema`]) and these directives are honoured:
//!
//! - `"$patch": "replace"` in a map: the map replaces the original; as a
//!   list item: the list (without that item) replaces the original.
//! - `"$patch": "delete"` in a map: the map is removed; as a list item with
//!   the merge key: the matching original item is removed.
//! - `"$patch": "merge"` in a map: the default, accepted for explicitness.
//! - `"$retainKeys": [..]`: original keys not listed are cleared first.
//! - `"$deleteFromPrimitiveList/<field>": [..]`: values removed from a list
//!   of primitives.
//! - `"$setElementOrder/<field>": [..]`: the order of the merged list.
//! - `null` removes a key.
//!
//! New items go first and patched items keep the patch's order, interleaved
//! with the items only the server had, as the real server orders them.

use serde_json::{Map, Value};

use super::schema::{ListType, list_type};
use super::{PatchError, json_eq};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";

/// Applies a strategic merge patch to `target` (an object of `kind`, e.g.
/// `Deployment`), in place. Atomic: on error `target` is unchanged.
///
/// Errors: [`PatchError::Malformed`] (400) when the patch is not an object
/// or a directive is invalid; [`PatchError::NotApplicable`] (422) when a
/// keyed list item lacks its merge key.
pub fn apply(target: &mut Value, patch: &Value, kind: &str) -> Result<(), PatchError> {
    let Value::Object(patch) = patch else {
        return Err(PatchError::Malformed(
            "a strategic merge patch must be a JSON object".into(),
        ));
    };
    let mut doc = match target {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    let mut merger = Merger {
        kind,
        path: Vec::new(),
    };
    match merger.merge_map(&mut doc, patch)? {
        Outcome::Keep => *target = Value::Object(doc),
        Outcome::Delete => *target = Value::Object(Map::new()),
    }
    Ok(())
}

enum Outcome {
    Keep,
    Delete,
}

struct Merger<'a> {
    kind: &'a str,
    /// Field names from the root, list items skipped.
    path: Vec<String>,
}

impl Merger<'_> {
    fn where_(&self) -> String {
        if self.path.is_empty() {
            "the object root".into()
        } else {
            format!(".{}", self.path.join("."))
        }
    }

    fn list_type(&self) -> ListType {
        let path: Vec<&str> = self.path.iter().map(String::as_str).collect();
        list_type(self.kind, &path)
    }

    fn merge_map(
        &mut self,
        orig: &mut Map<String, Value>,
        patch: &Map<String, Value>,
    ) -> Result<Outcome, PatchError> {
        if let Some(directive) = patch.get(DIRECTIVE) {
            match directive.as_str() {
                Some("replace") => {
                    let mut fresh = Map::new();
                    let mut without: Map<String, Value> = patch.clone();
                    without.remove(DIRECTIVE);
                    if let Outcome::Delete = self.merge_map(&mut fresh, &without)? {
                        return Ok(Outcome::Delete);
                    }
                    *orig = fresh;
                    return Ok(Outcome::Keep);
                }
                Some("delete") => return Ok(Outcome::Delete),
                Some("merge") => {}
                _ => {
                    return Err(PatchError::Malformed(format!(
                        "unknown $patch directive {directive} at {}, expected replace, delete or merge",
                        self.where_()
                    )));
                }
            }
        }
        if let Some(retain) = patch.get(RETAIN_KEYS) {
            let keys = string_list(retain).ok_or_else(|| {
                PatchError::Malformed(format!(
                    "$retainKeys at {} must be a list of strings",
                    self.where_()
                ))
            })?;
            // Nulls clear fields, so they need not be retained.
            let set_fields = patch
                .iter()
                .filter(|(k, v)| !k.starts_with('$') && !v.is_null())
                .map(|(k, _)| k);
            for key in set_fields {
                if !keys.contains(&key.as_str()) {
                    return Err(PatchError::NotApplicable(format!(
                        "field {key} at {} is in the patch but not in its $retainKeys",
                        self.where_()
                    )));
                }
            }
            orig.retain(|k, _| keys.contains(&k.as_str()));
        }
        for (key, values) in patch {
            if let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
                let Value::Array(values) = values else {
                    return Err(PatchError::Malformed(format!(
                        "{key} at {} must be a list",
                        self.where_()
                    )));
                };
                if let Some(Value::Array(items)) = orig.get_mut(field) {
                    items.retain(|item| !values.iter().any(|v| json_eq(v, item)));
                }
            }
        }
        for (key, value) in patch {
            if key.starts_with('$') {
                continue;
            }
            if value.is_null() {
                orig.remove(key);
                continue;
            }
            let order = patch.get(&format!("{SET_ELEMENT_ORDER}{key}"));
            self.path.push(key.clone());
            let result = self.merge_field(orig, key, value, order);
            self.path.pop();
            result?;
        }
        // `$setElementOrder` for lists the patch does not otherwise touch.
        for (key, order) in patch {
            let Some(field) = key.strip_prefix(SET_ELEMENT_ORDER) else {
                continue;
            };
            if patch.contains_key(field) {
                continue;
            }
            self.path.push(field.to_string());
            let list_type = self.list_type();
            self.path.pop();
            if let (Some(Value::Array(items)), Value::Array(order)) = (orig.get_mut(field), order) {
                let server_order = items.clone();
                let all = std::mem::take(items);
                *items = normalize_order(all, order, &server_order, list_type);
            }
        }
        Ok(Outcome::Keep)
    }

    fn merge_field(
        &mut self,
        orig: &mut Map<String, Value>,
        key: &str,
        value: &Value,
        order: Option<&Value>,
    ) -> Result<(), PatchError> {
        match (orig.get_mut(key), value) {
            (Some(Value::Object(o)), Value::Object(p)) => {
                if let Outcome::Delete = self.merge_map(o, p)? {
                    orig.remove(key);
                }
            }
            (Some(Value::Array(o)), Value::Array(p)) => {
                let list_type = self.list_type();
                self.merge_list(o, p, list_type, order)?;
            }
            _ => match self.fresh(value, order)? {
                Some(v) => {
                    orig.insert(key.to_string(), v);
                }
                None => {
                    orig.remove(key);
                }
            },
        }
        Ok(())
    }

    /// A patch value for a key the original lacks (or has with another
    /// type): the patch applied to an empty value, so directives and nulls
    /// inside it do not leak into the object. `None` when it deletes itself.
    fn fresh(&mut self, value: &Value, order: Option<&Value>) -> Result<Option<Value>, PatchError> {
        Ok(match value {
            Value::Object(p) => {
                let mut m = Map::new();
                match self.merge_map(&mut m, p)? {
                    Outcome::Keep => Some(Value::Object(m)),
                    Outcome::Delete => None,
                }
            }
            Value::Array(p) => {
                let mut items = Vec::new();
                let list_type = self.list_type();
                self.merge_list(&mut items, p, list_type, order)?;
                Some(Value::Array(items))
            }
            other => Some(other.clone()),
        })
    }

    fn merge_list(
        &mut self,
        orig: &mut Vec<Value>,
        patch: &[Value],
        list_type: ListType,
        order: Option<&Value>,
    ) -> Result<(), PatchError> {
        let replace = patch
            .iter()
            .any(|item| item.get(DIRECTIVE).and_then(Value::as_str) == Some("replace"));
        let plain: Vec<&Value> = patch
            .iter()
            .filter(|item| item.get(DIRECTIVE).is_none())
            .collect();
        if replace || list_type == ListType::Atomic {
            let mut items = Vec::with_capacity(plain.len());
            for item in plain {
                if let Some(v) = self.fresh(item, None)? {
                    items.push(v);
                }
            }
            *orig = items;
            return Ok(());
        }
        let server_order = orig.clone();
        match list_type {
            ListType::Atomic => unreachable!("handled above"),
            ListType::Set => {
                for item in plain {
                    if !orig.iter().any(|o| json_eq(o, item)) {
                        orig.push(item.clone());
                    }
                }
            }
            ListType::Map { merge_key, .. } => {
                for item in patch {
                    let Some(directive) = item.get(DIRECTIVE) else {
                        continue;
                    };
                    match directive.as_str() {
                        Some("delete") => {
                            let key = item
                                .get(merge_key)
                                .ok_or_else(|| self.no_merge_key(merge_key))?;
                            orig.retain(|o| !o.get(merge_key).is_some_and(|k| json_eq(k, key)));
                        }
                        Some("replace") => {}
                        Some("merge") => {
                            return Err(PatchError::Malformed(format!(
                                "$patch: merge is not allowed as a list item at {}",
                                self.where_()
                            )));
                        }
                        _ => {
                            return Err(PatchError::Malformed(format!(
                                "unknown $patch directive {directive} in the list at {}",
                                self.where_()
                            )));
                        }
                    }
                }
                for item in plain {
                    let Value::Object(fields) = item else {
                        return Err(PatchError::NotApplicable(format!(
                            "the list at {} merges by {merge_key:?}, but an item is not an object",
                            self.where_()
                        )));
                    };
                    let key = fields
                        .get(merge_key)
                        .ok_or_else(|| self.no_merge_key(merge_key))?;
                    let found = orig
                        .iter()
                        .position(|o| o.get(merge_key).is_some_and(|k| json_eq(k, key)));
                    match found {
                        Some(i) => {
                            if let Value::Object(existing) = &mut orig[i] {
                                if let Outcome::Delete = self.merge_map(existing, fields)? {
                                    orig.remove(i);
                                }
                            } else if let Some(v) = self.fresh(item, None)? {
                                orig[i] = v;
                            }
                        }
                        None => {
                            if let Some(v) = self.fresh(item, None)? {
                                orig.push(v);
                            }
                        }
                    }
                }
            }
        }
        let patch_order: Vec<Value> = match order {
            Some(Value::Array(order)) => order.clone(),
            Some(_) => {
                return Err(PatchError::Malformed(format!(
                    "$setElementOrder for {} must be a list",
                    self.where_()
                )));
            }
            None => plain_values(patch),
        };
        let merged = std::mem::take(orig);
        *orig = normalize_order(merged, &patch_order, &server_order, list_type);
        Ok(())
    }

    fn no_merge_key(&self, merge_key: &str) -> PatchError {
        PatchError::NotApplicable(format!(
            "an item of the list at {} lacks its merge key {merge_key:?}",
            self.where_()
        ))
    }
}

fn string_list(value: &Value) -> Option<Vec<&str>> {
    value.as_array()?.iter().map(Value::as_str).collect()
}

fn plain_values(patch: &[Value]) -> Vec<Value> {
    patch
        .iter()
        .filter(|item| item.get(DIRECTIVE).is_none())
        .cloned()
        .collect()
}

/// The identity of a list item: its merge key value, or itself for sets.
fn identity(item: &Value, list_type: ListType) -> Option<&Value> {
    match list_type {
        ListType::Map { merge_key, .. } => item.get(merge_key),
        _ => Some(item),
    }
}

fn position(list: &[Value], item: &Value, list_type: ListType) -> Option<usize> {
    let id = identity(item, list_type)?;
    list.iter()
        .position(|x| identity(x, list_type).is_some_and(|other| json_eq(other, id)))
}

/// Orders a merged list as the API server does: the items named by
/// `patch_order` sorted by it, the server-only items in their original
/// order, and both interleaved by their positions in the original list
/// (items new to the server come before the server-only items after them).
fn normalize_order(
    merged: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    list_type: ListType,
) -> Vec<Value> {
    let (mut patched, mut server_only): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|item| position(patch_order, item, list_type).is_some());
    patched.sort_by_key(|item| position(patch_order, item, list_type));
    server_only.sort_by_key(|item| position(server_order, item, list_type).unwrap_or(usize::MAX));
    let mut out = Vec::with_capacity(patched.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = patched.into_iter().peekable();
    loop {
        match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => out.extend(left.next()),
            (None, Some(_)) => out.extend(right.next()),
            (Some(l), Some(r)) => {
                let li = position(server_order, l, list_type);
                let ri = position(server_order, r, list_type);
                match (li, ri) {
                    (Some(li), Some(ri)) if li < ri => out.extend(left.next()),
                    _ => out.extend(right.next()),
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn smp(kind: &str, target: Value, patch: Value) -> Value {
        let mut t = target;
        apply(&mut t, &patch, kind).unwrap();
        t
    }

    fn deployment(containers: Value) -> Value {
        json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},
               "spec":{"replicas":1,"template":{"spec":{"containers":containers}}}})
    }

    fn containers(d: &Value) -> &Value {
        &d["spec"]["template"]["spec"]["containers"]
    }

    #[test]
    fn containers_merge_by_name_and_fields_merge_inside() {
        let live = deployment(json!([
            {"name":"app","image":"app:1","env":[{"name":"A","value":"1"},{"name":"B","value":"2"}]},
            {"name":"sidecar","image":"side:1"}
        ]));
        let patch = json!({"spec":{"template":{"spec":{"containers":[
            {"name":"app","image":"app:2","env":[{"name":"B","value":"3"}]}
        ]}}}});
        let out = smp("Deployment", live, patch);
        assert_eq!(
            containers(&out),
            &json!([
                {"name":"app","image":"app:2","env":[{"name":"A","value":"1"},{"name":"B","value":"3"}]},
                {"name":"sidecar","image":"side:1"}
            ])
        );
        assert_eq!(out["spec"]["replicas"], 1);
    }

    #[test]
    fn new_list_items_come_first_like_the_real_server() {
        let live = deployment(json!([{"name":"a","image":"a"},{"name":"b","image":"b"}]));
        let patch = json!({"spec":{"template":{"spec":{"containers":[{"name":"c","image":"c"}]}}}});
        let names: Vec<_> = containers(&smp("Deployment", live, patch))
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, ["c", "a", "b"]);
    }

    #[test]
    fn atomic_lists_are_replaced() {
        let live = deployment(json!([{"name":"a","args":["x","y"],"command":["sh"]}]));
        let mut live = live;
        live["spec"]["template"]["spec"]["tolerations"] = json!([{"key":"k1"},{"key":"k2"}]);
        let patch = json!({"spec":{"template":{"spec":{
            "tolerations":[{"key":"k3"}],
            "containers":[{"name":"a","args":["z"]}]}}}});
        let out = smp("Deployment", live, patch);
        assert_eq!(
            out["spec"]["template"]["spec"]["tolerations"],
            json!([{"key":"k3"}])
        );
        assert_eq!(
            containers(&out),
            &json!([{"name":"a","args":["z"],"command":["sh"]}])
        );
    }

    #[test]
    fn ports_merge_by_container_port_and_service_port() {
        let live = deployment(
            json!([{"name":"a","ports":[{"containerPort":80,"name":"http"},{"containerPort":443}]}]),
        );
        let patch = json!({"spec":{"template":{"spec":{"containers":[{"name":"a","ports":[{"containerPort":80,"name":"web"}]}]}}}});
        let out = smp("Deployment", live, patch);
        assert_eq!(
            containers(&out)[0]["ports"],
            json!([{"containerPort":80,"name":"web"},{"containerPort":443}])
        );
        let svc =
            json!({"kind":"Service","spec":{"ports":[{"port":80,"targetPort":8080},{"port":81}]}});
        let out = smp(
            "Service",
            svc,
            json!({"spec":{"ports":[{"port":81,"targetPort":9090}]}}),
        );
        assert_eq!(
            out["spec"]["ports"],
            json!([{"port":80,"targetPort":8080},{"port":81,"targetPort":9090}])
        );
    }

    #[test]
    fn other_keyed_lists() {
        let live = json!({"metadata":{"ownerReferences":[{"uid":"1","name":"a"},{"uid":"2","name":"b"}],"finalizers":["f1"]},
            "spec":{"volumes":[{"name":"v","emptyDir":{}}],"imagePullSecrets":[{"name":"s1"}],
              "hostAliases":[{"ip":"10.0.0.1","hostnames":["a"]}],
              "topologySpreadConstraints":[{"topologyKey":"zone","maxSkew":1}],
              "containers":[{"name":"c","volumeMounts":[{"mountPath":"/a","name":"v"}],"volumeDevices":[{"devicePath":"/dev/x","name":"d"}]}]},
            "status":{"conditions":[{"type":"Ready","status":"False"},{"type":"PodScheduled","status":"True"}]}});
        let patch = json!({"metadata":{"ownerReferences":[{"uid":"2","name":"b2"}],"finalizers":["f2","f1"]},
            "spec":{"volumes":[{"name":"w","emptyDir":{}}],"imagePullSecrets":[{"name":"s2"}],
              "hostAliases":[{"ip":"10.0.0.1","hostnames":["b"]}],
              "topologySpreadConstraints":[{"topologyKey":"zone","maxSkew":2}],
              "containers":[{"name":"c","volumeMounts":[{"mountPath":"/a","readOnly":true}],"volumeDevices":[{"devicePath":"/dev/y","name":"e"}]}]},
            "status":{"conditions":[{"type":"Ready","status":"True"}]}});
        let out = smp("Pod", live, patch);
        assert_eq!(
            out["metadata"]["ownerReferences"],
            json!([{"uid":"1","name":"a"},{"uid":"2","name":"b2"}])
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["f2", "f1"]));
        assert_eq!(
            out["spec"]["volumes"],
            json!([{"name":"w","emptyDir":{}},{"name":"v","emptyDir":{}}])
        );
        assert_eq!(
            out["spec"]["imagePullSecrets"],
            json!([{"name":"s2"},{"name":"s1"}])
        );
        assert_eq!(
            out["spec"]["hostAliases"],
            json!([{"ip":"10.0.0.1","hostnames":["b"]}])
        );
        assert_eq!(
            out["spec"]["topologySpreadConstraints"],
            json!([{"topologyKey":"zone","maxSkew":2}])
        );
        assert_eq!(
            out["spec"]["containers"][0]["volumeMounts"],
            json!([{"mountPath":"/a","name":"v","readOnly":true}])
        );
        assert_eq!(
            out["spec"]["containers"][0]["volumeDevices"],
            json!([{"devicePath":"/dev/y","name":"e"},{"devicePath":"/dev/x","name":"d"}])
        );
        assert_eq!(
            out["status"]["conditions"],
            json!([{"type":"Ready","status":"True"},{"type":"PodScheduled","status":"True"}])
        );
    }

    #[test]
    fn null_deletes_and_new_values_drop_nulls() {
        let live = json!({"metadata":{"labels":{"a":"1","b":"2"}}});
        let out = smp(
            "ConfigMap",
            live,
            json!({"metadata":{"labels":{"a":null},"annotations":{"x":"1","y":null}}}),
        );
        assert_eq!(
            out,
            json!({"metadata":{"labels":{"b":"2"},"annotations":{"x":"1"}}})
        );
    }

    #[test]
    fn patch_replace_directive_on_a_map_and_on_a_list() {
        let live = json!({"spec":{"selector":{"a":"1","b":"2"},"template":{"spec":{"containers":[{"name":"x"},{"name":"y"}]}}}});
        let patch = json!({"spec":{"selector":{"$patch":"replace","c":"3"},
            "template":{"spec":{"containers":[{"name":"z"},{"$patch":"replace"}]}}}});
        let out = smp("Deployment", live, patch);
        assert_eq!(out["spec"]["selector"], json!({"c":"3"}));
        assert_eq!(containers(&out), &json!([{"name":"z"}]));
    }

    #[test]
    fn patch_delete_directive_on_a_map_and_a_list_item() {
        let live = json!({"spec":{"strategy":{"type":"RollingUpdate"},
            "template":{"spec":{"containers":[{"name":"x"},{"name":"y"}]}}}});
        let patch = json!({"spec":{"strategy":{"$patch":"delete"},
            "template":{"spec":{"containers":[{"name":"x","$patch":"delete"}]}}}});
        let out = smp("Deployment", live, patch);
        assert_eq!(out["spec"].get("strategy"), None);
        assert_eq!(containers(&out), &json!([{"name":"y"}]));
    }

    #[test]
    fn patch_merge_directive_is_the_default() {
        let live = json!({"data":{"a":"1"}});
        let out = smp(
            "ConfigMap",
            live,
            json!({"data":{"$patch":"merge","b":"2"}}),
        );
        assert_eq!(out, json!({"data":{"a":"1","b":"2"}}));
    }

    #[test]
    fn retain_keys_clears_other_fields() {
        let live =
            json!({"spec":{"strategy":{"type":"RollingUpdate","rollingUpdate":{"maxSurge":1}}}});
        // As kubectl sends it: the cleared field as null.
        let patch = json!({"spec":{"strategy":{"$retainKeys":["type"],"rollingUpdate":null,"type":"Recreate"}}});
        let out = smp("Deployment", live, patch);
        assert_eq!(out["spec"]["strategy"], json!({"type":"Recreate"}));
    }

    #[test]
    fn delete_from_primitive_list() {
        let live = json!({"metadata":{"finalizers":["a","b","c"]}});
        let out = smp(
            "ConfigMap",
            live,
            json!({"metadata":{"$deleteFromPrimitiveList/finalizers":["b"]}}),
        );
        assert_eq!(out, json!({"metadata":{"finalizers":["a","c"]}}));
    }

    #[test]
    fn set_element_order() {
        let live = deployment(json!([{"name":"a"},{"name":"b"},{"name":"c"}]));
        let patch = json!({"spec":{"template":{"spec":{
            "$setElementOrder/containers":[{"name":"c"},{"name":"b"},{"name":"a"}],
            "containers":[{"name":"b","image":"b2"}]}}}});
        let out = smp("Deployment", live.clone(), patch);
        assert_eq!(
            containers(&out),
            &json!([{"name":"c"},{"name":"b","image":"b2"},{"name":"a"}])
        );
        // Order only, no content change for the list.
        let patch = json!({"spec":{"template":{"spec":{
            "$setElementOrder/containers":[{"name":"b"},{"name":"a"},{"name":"c"}]}}}});
        let out = smp("Deployment", live, patch);
        assert_eq!(
            containers(&out),
            &json!([{"name":"b"},{"name":"a"},{"name":"c"}])
        );
    }

    #[test]
    fn errors_are_typed() {
        let mut t = json!({});
        let e = apply(&mut t, &json!([1]), "ConfigMap").unwrap_err();
        assert_eq!(e.status_code(), 400);
        let e = apply(&mut t, &json!({"data":{"$patch":"explode"}}), "ConfigMap").unwrap_err();
        assert_eq!(e.status_code(), 400);
        let mut d = deployment(json!([{"name":"a"}]));
        let before = d.clone();
        let e = apply(
            &mut d,
            &json!({"spec":{"template":{"spec":{"containers":[{"image":"x"}]}}}}),
            "Deployment",
        )
        .unwrap_err();
        assert!(matches!(e, PatchError::NotApplicable(_)), "{e:?}");
        assert_eq!(d, before);
    }

    #[test]
    fn new_keyed_list_strips_directives() {
        let live = json!({"spec":{}});
        let patch = json!({"spec":{"template":{"spec":{"containers":[{"name":"a","env":[{"name":"X","value":"1"},{"name":"Y","$patch":"delete"}]}]}}}});
        let out = smp("Deployment", live, patch);
        assert_eq!(
            containers(&out),
            &json!([{"name":"a","env":[{"name":"X","value":"1"}]}])
        );
    }
}
