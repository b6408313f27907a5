//! RFC 7386 JSON merge patch (`application/merge-patch+json`).

use serde_json::{Map, Value};

/// Applies an RFC 7386 merge patch to `target` in place.
///
/// An object patch merges key by key: `null` removes the key, objects merge
/// recursively, anything else replaces. A non-object patch replaces the
/// whole target. Lists are always replaced as a whole. Never fails.
pub fn apply(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target) = target else {
        unreachable!("target was just made an object")
    };
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            apply(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn merged(target: Value, patch: Value) -> Value {
        let mut t = target;
        apply(&mut t, &patch);
        t
    }

    /// Every example of RFC 7386 appendix A.
    #[test]
    fn rfc7386_appendix_a_examples() {
        let cases = [
            (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
            (json!({"a":"b"}), json!({"a":null}), json!({})),
            (
                json!({"a":"b","b":"c"}),
                json!({"a":null}),
                json!({"b":"c"}),
            ),
            (json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"c"}), json!({"a":["b"]}), json!({"a":["b"]})),
            (
                json!({"a":{"b":"c"}}),
                json!({"a":{"b":"d","c":null}}),
                json!({"a":{"b":"d"}}),
            ),
            (json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]})),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a":"b"}), json!(["c"]), json!(["c"])),
            (json!({"a":"foo"}), json!(null), json!(null)),
            (json!({"a":"foo"}), json!("bar"), json!("bar")),
            (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
            (json!([1, 2]), json!({"a":"b","c":null}), json!({"a":"b"})),
            (
                json!({}),
                json!({"a":{"bb":{"ccc":null}}}),
                json!({"a":{"bb":{}}}),
            ),
        ];
        for (target, patch, expected) in cases {
            assert_eq!(
                merged(target.clone(), patch.clone()),
                expected,
                "{target} + {patch}"
            );
        }
    }

    #[test]
    fn merges_kubernetes_labels() {
        let live = json!({"metadata":{"name":"x","labels":{"a":"1","b":"2"}},"data":{"k":"v"}});
        let patch = json!({"metadata":{"labels":{"b":null,"c":"3"}},"data":{"k":"w"}});
        assert_eq!(
            merged(live, patch),
            json!({"metadata":{"name":"x","labels":{"a":"1","c":"3"}},"data":{"k":"w"}})
        );
    }
}

/// Properties of merge patches over many seeded random documents.
#[cfg(test)]
mod properties {
    use super::apply;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use serde_json::{Map, Value, json};

    const KEYS: &[&str] = &["a", "b", "c", "d"];

    /// A random JSON document without nulls (merge patch cannot express
    /// a null member).
    fn document(rng: &mut StdRng, depth: u32) -> Value {
        match rng.random_range(0..if depth == 0 { 4 } else { 6 }) {
            0 => json!(rng.random_range(-3..3)),
            1 => json!(["x", "y", "z"][rng.random_range(0..3)]),
            2 => json!(rng.random::<bool>()),
            3 => json!([rng.random_range(0..3)]),
            _ => {
                let mut m = Map::new();
                for key in KEYS {
                    if rng.random::<bool>() {
                        m.insert(key.to_string(), document(rng, depth - 1));
                    }
                }
                Value::Object(m)
            }
        }
    }

    /// The merge patch that turns `from` into `to` (RFC 7386 section 3's
    /// idea, the inverse of `apply`).
    fn diff(from: &Value, to: &Value) -> Value {
        match (from, to) {
            (Value::Object(f), Value::Object(t)) => {
                let mut patch = Map::new();
                for (k, v) in t {
                    match f.get(k) {
                        Some(old) if old == v => {}
                        Some(old) => {
                            patch.insert(k.clone(), diff(old, v));
                        }
                        None => {
                            patch.insert(k.clone(), v.clone());
                        }
                    }
                }
                for k in f.keys().filter(|k| !t.contains_key(*k)) {
                    patch.insert(k.clone(), Value::Null);
                }
                Value::Object(patch)
            }
            (_, to) => to.clone(),
        }
    }

    #[test]
    fn diff_then_apply_reaches_the_target_and_is_idempotent() {
        let mut rng = StdRng::seed_from_u64(7386);
        for _ in 0..2000 {
            let from = document(&mut rng, 3);
            let to = document(&mut rng, 3);
            let patch = diff(&from, &to);
            let mut once = from.clone();
            apply(&mut once, &patch);
            assert_eq!(once, to, "from {from} with {patch}");
            let mut twice = once.clone();
            apply(&mut twice, &patch);
            assert_eq!(twice, once, "applying {patch} again changes {once}");
        }
    }

    #[test]
    fn an_empty_object_patch_changes_no_object() {
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..500 {
            let doc = document(&mut rng, 3);
            let mut patched = doc.clone();
            apply(&mut patched, &json!({}));
            if doc.is_object() {
                assert_eq!(patched, doc);
            } else {
                assert_eq!(patched, json!({}), "a non-object target becomes an object");
            }
        }
    }

    /// A strategic merge patch without lists or directives is a merge
    /// patch.
    #[test]
    fn strategic_merge_without_lists_matches_merge_patch() {
        let mut rng = StdRng::seed_from_u64(42);
        let mut checked = 0;
        while checked < 500 {
            let from = document(&mut rng, 3);
            let to = document(&mut rng, 3);
            let text = format!("{from}{to}");
            if !from.is_object() || !to.is_object() || text.contains('[') {
                continue;
            }
            checked += 1;
            let patch = diff(&from, &to);
            let mut merged = from.clone();
            apply(&mut merged, &patch);
            let mut strategic = from.clone();
            crate::patch::strategic::apply(&mut strategic, &patch, "ConfigMap").unwrap();
            assert_eq!(strategic, merged, "from {from} with {patch}");
        }
    }
}
