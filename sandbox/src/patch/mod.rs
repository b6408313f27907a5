//! Patch algorithms the API server applies to stored objects.
//!
//! All functions are pure: they work on `serde_json::Value` objects and know
//! nothing about the store or HTTP. The router picks one by the request's
//! Content-Type:
//!
//! | Content-Type                              | function                         |
//! |-------------------------------------------|----------------------------------|
//! | `application/merge-patch+json`            | [`merge::apply`]                 |
//! | `application/json-patch+json`             | [`json::apply`]                  |
//! | `application/strategic-merge-patch+json`  | [`strategic::apply`]             |
//! | `application/apply-patch+yaml`            | [`apply::server_side_apply`]     |
//!
//! Writes that carry a `fieldManager` but are not server-side apply record
//! ownership with [`apply::record_update`].

pub mod apply;
pub mod json;
pub mod merge;
pub mod schema;
pub mod strategic;

/// Why a JSON patch or strategic merge patch could not be applied.
///
/// Map to a Kubernetes `Status` with [`PatchError::status_code`] and
/// [`PatchError::reason`], as a real API server does: a malformed patch
/// document is 400 BadRequest; a well-formed patch that does not fit the
/// object (missing path, failed `test`) is 422 Invalid.
///
/// Messages name paths, never values: values may be Secret data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch document itself is not well-formed: wrong JSON shape,
    /// unknown operation, missing member, bad JSON pointer, bad directive.
    #[error("the patch is malformed: {0}")]
    Malformed(String),
    /// The patch is well-formed but does not fit the object: a path that does
    /// not exist, an index out of range, a list item without its merge key.
    #[error("the patch cannot be applied: {0}")]
    NotApplicable(String),
    /// A JSON patch `test` operation found a different value at `path`.
    #[error("the patch's test operation failed: the value at {path} is not the expected one")]
    TestFailed { path: String },
}

impl PatchError {
    /// HTTP status code a real API server answers with.
    pub fn status_code(&self) -> u16 {
        match self {
            PatchError::Malformed(_) => 400,
            PatchError::NotApplicable(_) | PatchError::TestFailed { .. } => 422,
        }
    }

    /// `Status.reason` a real API server answers with.
    pub fn reason(&self) -> &'static str {
        match self {
            PatchError::Malformed(_) => "BadRequest",
            PatchError::NotApplicable(_) | PatchError::TestFailed { .. } => "Invalid",
        }
    }
}

/// JSON equality where numbers compare by value (`1 == 1.0`), as JSON patch
/// `test` and the merge algorithms need; `serde_json`'s `==` tells integer
/// and float representations apart.
pub fn json_eq(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                x == y
            } else if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                x == y
            } else {
                x.as_f64() == y.as_f64()
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}
