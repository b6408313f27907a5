//! RFC 6902 JSON patch (`application/json-patch+json`), with RFC 6901 JSON
//! pointers.

use serde_json::Value;

use super::{PatchError, json_eq};

/// Applies an RFC 6902 JSON patch (an array of operations) to `target`.
///
/// Operations `add`, `remove`, `replace`, `move`, `copy` and `test` run in
/// order; pointers use RFC 6901 escaping (`~0` for `~`, `~1` for `/`) and
/// `-` addresses the end of an array in `add`. The patch is atomic: on any
/// error `target` is left unchanged.
///
/// Errors: [`PatchError::Malformed`] (400) when the patch is not an array of
/// well-formed operations; [`PatchError::NotApplicable`] (422) when a path
/// does not exist; [`PatchError::TestFailed`] (422) when a `test` fails.
pub fn apply(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let Value::Array(ops) = patch else {
        return Err(PatchError::Malformed(
            "a JSON patch must be a JSON array of operations".into(),
        ));
    };
    let ops = ops
        .iter()
        .enumerate()
        .map(|(i, op)| {
            Operation::parse(op).map_err(|e| PatchError::Malformed(format!("operation {i}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut doc = target.clone();
    for op in &ops {
        op.apply(&mut doc)?;
    }
    *target = doc;
    Ok(())
}

enum Operation {
    Add { path: Pointer, value: Value },
    Remove { path: Pointer },
    Replace { path: Pointer, value: Value },
    Move { from: Pointer, path: Pointer },
    Copy { from: Pointer, path: Pointer },
    Test { path: Pointer, value: Value },
}

impl Operation {
    fn parse(op: &Value) -> Result<Operation, String> {
        let Value::Object(op) = op else {
            return Err("not a JSON object".into());
        };
        let name = op
            .get("op")
            .and_then(Value::as_str)
            .ok_or("missing \"op\" member")?;
        let pointer = |member: &str| -> Result<Pointer, String> {
            let text = op
                .get(member)
                .and_then(Value::as_str)
                .ok_or_else(|| format!("\"{name}\" needs a string \"{member}\" member"))?;
            Pointer::parse(text)
        };
        let value = || -> Result<Value, String> {
            op.get("value")
                .cloned()
                .ok_or_else(|| format!("\"{name}\" needs a \"value\" member"))
        };
        Ok(match name {
            "add" => Operation::Add {
                path: pointer("path")?,
                value: value()?,
            },
            "remove" => Operation::Remove {
                path: pointer("path")?,
            },
            "replace" => Operation::Replace {
                path: pointer("path")?,
                value: value()?,
            },
            "move" => Operation::Move {
                from: pointer("from")?,
                path: pointer("path")?,
            },
            "copy" => Operation::Copy {
                from: pointer("from")?,
                path: pointer("path")?,
            },
            "test" => Operation::Test {
                path: pointer("path")?,
                value: value()?,
            },
            other => {
                return Err(format!(
                    "unknown op {other:?}, expected add, remove, replace, move, copy or test"
                ));
            }
        })
    }

    fn apply(&self, doc: &mut Value) -> Result<(), PatchError> {
        match self {
            Operation::Add { path, value } => add(doc, path, value.clone()),
            Operation::Remove { path } => remove(doc, path).map(drop),
            Operation::Replace { path, value } => {
                let slot = get_mut(doc, path).ok_or_else(|| missing("replace", path))?;
                *slot = value.clone();
                Ok(())
            }
            Operation::Move { from, path } => {
                if path.tokens.len() > from.tokens.len()
                    && path.tokens[..from.tokens.len()] == from.tokens[..]
                {
                    return Err(PatchError::NotApplicable(format!(
                        "move from {} to its own child {}",
                        from.text, path.text
                    )));
                }
                if from.tokens == path.tokens {
                    return get_mut(doc, from)
                        .map(drop)
                        .ok_or_else(|| missing("move", from));
                }
                let value = remove(doc, from).map_err(|_| missing("move", from))?;
                add(doc, path, value)
            }
            Operation::Copy { from, path } => {
                let value = get_mut(doc, from)
                    .ok_or_else(|| missing("copy", from))?
                    .clone();
                add(doc, path, value)
            }
            Operation::Test { path, value } => match get_mut(doc, path) {
                Some(found) if json_eq(found, value) => Ok(()),
                _ => Err(PatchError::TestFailed {
                    path: path.text.clone(),
                }),
            },
        }
    }
}

fn missing(op: &str, path: &Pointer) -> PatchError {
    PatchError::NotApplicable(format!("{op}: no value at path {}", path.text))
}

/// An RFC 6901 JSON pointer, unescaped into its reference tokens.
struct Pointer {
    text: String,
    tokens: Vec<String>,
}

impl Pointer {
    fn parse(text: &str) -> Result<Pointer, String> {
        if text.is_empty() {
            return Ok(Pointer {
                text: String::new(),
                tokens: Vec::new(),
            });
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!(
                "JSON pointer {text:?} must be empty or start with '/'"
            ));
        };
        let tokens = rest
            .split('/')
            .map(|t| {
                unescape(t).ok_or_else(|| {
                    format!("JSON pointer {text:?} has a '~' not followed by 0 or 1")
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Pointer {
            text: text.to_string(),
            tokens,
        })
    }

    fn parent(&self) -> Option<(&[String], &str)> {
        self.tokens
            .split_last()
            .map(|(last, parent)| (parent, last.as_str()))
    }
}

fn unescape(token: &str) -> Option<String> {
    let mut out = String::with_capacity(token.len());
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// An array index token: digits without leading zeros.
fn index(token: &str) -> Option<usize> {
    if token.is_empty()
        || !token.bytes().all(|b| b.is_ascii_digit())
        || (token.len() > 1 && token.starts_with('0'))
    {
        return None;
    }
    token.parse().ok()
}

fn walk_mut<'a>(doc: &'a mut Value, tokens: &[String]) -> Option<&'a mut Value> {
    let mut cur = doc;
    for token in tokens {
        cur = match cur {
            Value::Object(map) => map.get_mut(token)?,
            Value::Array(items) => items.get_mut(index(token)?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn get_mut<'a>(doc: &'a mut Value, path: &Pointer) -> Option<&'a mut Value> {
    walk_mut(doc, &path.tokens)
}

fn add(doc: &mut Value, path: &Pointer, value: Value) -> Result<(), PatchError> {
    let Some((parent, last)) = path.parent() else {
        *doc = value;
        return Ok(());
    };
    let container = walk_mut(doc, parent).ok_or_else(|| missing("add", path))?;
    match container {
        Value::Object(map) => {
            map.insert(last.to_string(), value);
            Ok(())
        }
        Value::Array(items) => {
            let at = if last == "-" {
                items.len()
            } else {
                index(last).ok_or_else(|| {
                    PatchError::NotApplicable(format!(
                        "add: {:?} in {} is not an array index",
                        last, path.text
                    ))
                })?
            };
            if at > items.len() {
                return Err(PatchError::NotApplicable(format!(
                    "add: index {at} in {} is out of range (the array has {} items)",
                    path.text,
                    items.len()
                )));
            }
            items.insert(at, value);
            Ok(())
        }
        _ => Err(missing("add", path)),
    }
}

fn remove(doc: &mut Value, path: &Pointer) -> Result<Value, PatchError> {
    let Some((parent, last)) = path.parent() else {
        return Err(PatchError::NotApplicable(
            "remove: cannot remove the whole document".into(),
        ));
    };
    let container = walk_mut(doc, parent).ok_or_else(|| missing("remove", path))?;
    match container {
        Value::Object(map) => map.remove(last).ok_or_else(|| missing("remove", path)),
        Value::Array(items) => match index(last) {
            Some(i) if i < items.len() => Ok(items.remove(i)),
            _ => Err(missing("remove", path)),
        },
        _ => Err(missing("remove", path)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patched(doc: Value, patch: Value) -> Result<Value, PatchError> {
        let mut d = doc;
        apply(&mut d, &patch)?;
        Ok(d)
    }

    /// RFC 6902 appendix A examples that succeed (A.1–A.7, A.10, A.14, A.16).
    #[test]
    fn rfc6902_successful_examples() {
        let cases = [
            // A.1 adding an object member
            (
                json!({"foo":"bar"}),
                json!([{"op":"add","path":"/baz","value":"qux"}]),
                json!({"baz":"qux","foo":"bar"}),
            ),
            // A.2 adding an array element
            (
                json!({"foo":["bar","baz"]}),
                json!([{"op":"add","path":"/foo/1","value":"qux"}]),
                json!({"foo":["bar","qux","baz"]}),
            ),
            // A.3 removing an object member
            (
                json!({"baz":"qux","foo":"bar"}),
                json!([{"op":"remove","path":"/baz"}]),
                json!({"foo":"bar"}),
            ),
            // A.4 removing an array element
            (
                json!({"foo":["bar","qux","baz"]}),
                json!([{"op":"remove","path":"/foo/1"}]),
                json!({"foo":["bar","baz"]}),
            ),
            // A.5 replacing a value
            (
                json!({"baz":"qux","foo":"bar"}),
                json!([{"op":"replace","path":"/baz","value":"boo"}]),
                json!({"baz":"boo","foo":"bar"}),
            ),
            // A.6 moving a value
            (
                json!({"foo":{"bar":"baz","waldo":"fred"},"qux":{"corge":"grault"}}),
                json!([{"op":"move","from":"/foo/waldo","path":"/qux/thud"}]),
                json!({"foo":{"bar":"baz"},"qux":{"corge":"grault","thud":"fred"}}),
            ),
            // A.7 moving an array element
            (
                json!({"foo":["all","grass","cows","eat"]}),
                json!([{"op":"move","from":"/foo/1","path":"/foo/3"}]),
                json!({"foo":["all","cows","eat","grass"]}),
            ),
            // A.8 testing a value: success
            (
                json!({"baz":"qux","foo":["a",2,"c"]}),
                json!([{"op":"test","path":"/baz","value":"qux"},{"op":"test","path":"/foo/1","value":2}]),
                json!({"baz":"qux","foo":["a",2,"c"]}),
            ),
            // A.10 adding a nested member object
            (
                json!({"foo":"bar"}),
                json!([{"op":"add","path":"/child","value":{"grandchild":{}}}]),
                json!({"foo":"bar","child":{"grandchild":{}}}),
            ),
            // A.11 ignoring unrecognized elements
            (
                json!({"foo":"bar"}),
                json!([{"op":"add","path":"/baz","value":"qux","xyz":123}]),
                json!({"foo":"bar","baz":"qux"}),
            ),
            // A.14 ~ escape ordering
            (
                json!({"/":9,"~1":10}),
                json!([{"op":"test","path":"/~01","value":10}]),
                json!({"/":9,"~1":10}),
            ),
            // A.16 adding an array value
            (
                json!({"foo":["bar"]}),
                json!([{"op":"add","path":"/foo/-","value":["abc","def"]}]),
                json!({"foo":["bar",["abc","def"]]}),
            ),
        ];
        for (doc, patch, expected) in cases {
            assert_eq!(patched(doc, patch.clone()).unwrap(), expected, "{patch}");
        }
    }

    #[test]
    fn rfc6902_a9_failed_test_is_typed_and_keeps_the_document() {
        let mut doc = json!({"baz":"qux","foo":["a",2,"c"]});
        let before = doc.clone();
        let err = apply(
            &mut doc,
            &json!([{"op":"test","path":"/baz","value":"bar"}]),
        )
        .unwrap_err();
        assert_eq!(
            err,
            PatchError::TestFailed {
                path: "/baz".into()
            }
        );
        assert_eq!(err.status_code(), 422);
        assert_eq!(doc, before);
    }

    #[test]
    fn rfc6902_a12_adding_to_a_nonexistent_target_fails() {
        let err = patched(
            json!({"foo":"bar"}),
            json!([{"op":"add","path":"/baz/bat","value":"qux"}]),
        )
        .unwrap_err();
        assert!(matches!(err, PatchError::NotApplicable(_)), "{err:?}");
        assert_eq!(err.status_code(), 422);
    }

    #[test]
    fn rfc6902_a15_comparing_strings_and_numbers_fails() {
        let err = patched(
            json!({"/":9,"~1":10}),
            json!([{"op":"test","path":"/~01","value":"10"}]),
        )
        .unwrap_err();
        assert_eq!(
            err,
            PatchError::TestFailed {
                path: "/~01".into()
            }
        );
    }

    #[test]
    fn rfc6902_a13_invalid_patch_document_is_malformed() {
        // A JSON object (not an array), and an op with a missing member.
        for patch in [
            json!({"op":"add","path":"/baz","value":"qux"}),
            json!([{"op":"add","path":"/baz"}]),
            json!([{"op":"frobnicate","path":"/baz"}]),
            json!([{"op":"remove","path":"baz"}]),
            json!([{"op":"remove","path":"/a~2"}]),
        ] {
            let err = patched(json!({"foo":"bar"}), patch.clone()).unwrap_err();
            assert!(matches!(err, PatchError::Malformed(_)), "{patch}: {err:?}");
            assert_eq!(err.status_code(), 400);
        }
    }

    #[test]
    fn numbers_compare_by_value_in_test() {
        patched(
            json!({"a":1}),
            json!([{"op":"test","path":"/a","value":1.0}]),
        )
        .unwrap();
    }

    #[test]
    fn copy_root_replace_and_atomicity() {
        let doc = json!({"a":{"b":[1,2]},"c":3});
        assert_eq!(
            patched(
                doc.clone(),
                json!([{"op":"copy","from":"/a/b","path":"/d"}])
            )
            .unwrap(),
            json!({"a":{"b":[1,2]},"c":3,"d":[1,2]})
        );
        assert_eq!(
            patched(doc.clone(), json!([{"op":"replace","path":"","value":[]}])).unwrap(),
            json!([])
        );
        // The second op fails, so the first must not be visible.
        let mut d = doc.clone();
        let err = apply(
            &mut d,
            &json!([{"op":"remove","path":"/c"},{"op":"remove","path":"/nope"}]),
        )
        .unwrap_err();
        assert!(matches!(err, PatchError::NotApplicable(_)));
        assert_eq!(d, doc);
        // Index rules: leading zeros and out of range.
        assert!(
            patched(
                doc.clone(),
                json!([{"op":"add","path":"/a/b/01","value":0}])
            )
            .is_err()
        );
        assert!(patched(doc.clone(), json!([{"op":"add","path":"/a/b/3","value":0}])).is_err());
        assert!(
            patched(
                doc.clone(),
                json!([{"op":"move","from":"/a","path":"/a/x"}])
            )
            .is_err()
        );
    }

    #[test]
    fn kubernetes_style_label_removal_with_escaped_key() {
        let doc = json!({"metadata":{"labels":{"app.kubernetes.io/name":"x","keep":"y"}}});
        let patch = json!([{"op":"remove","path":"/metadata/labels/app.kubernetes.io~1name"}]);
        assert_eq!(
            patched(doc, patch).unwrap(),
            json!({"metadata":{"labels":{"keep":"y"}}})
        );
    }
}
