//! API errors, answered as Kubernetes `Status` objects.

use serde_json::{Value, json};

use crate::registry::ResourceType;

/// The `reason` field of a failure `Status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    NotFound,
    AlreadyExists,
    Conflict,
    Invalid,
    Unauthorized,
    Forbidden,
    BadRequest,
    MethodNotAllowed,
    Expired,
    TooManyRequests,
    InternalError,
    UnsupportedMediaType,
    NotAcceptable,
    Timeout,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NotFound => "NotFound",
            Reason::AlreadyExists => "AlreadyExists",
            Reason::Conflict => "Conflict",
            Reason::Invalid => "Invalid",
            Reason::Unauthorized => "Unauthorized",
            Reason::Forbidden => "Forbidden",
            Reason::BadRequest => "BadRequest",
            Reason::MethodNotAllowed => "MethodNotAllowed",
            Reason::Expired => "Expired",
            Reason::TooManyRequests => "TooManyRequests",
            Reason::InternalError => "InternalError",
            Reason::UnsupportedMediaType => "UnsupportedMediaType",
            Reason::NotAcceptable => "NotAcceptable",
            Reason::Timeout => "Timeout",
        }
    }

    /// The HTTP status code a real API server uses for this reason.
    pub fn code(self) -> u16 {
        match self {
            Reason::NotFound => 404,
            Reason::AlreadyExists | Reason::Conflict => 409,
            Reason::Invalid => 422,
            Reason::Unauthorized => 401,
            Reason::Forbidden => 403,
            Reason::BadRequest => 400,
            Reason::MethodNotAllowed => 405,
            Reason::Expired => 410,
            Reason::TooManyRequests => 429,
            Reason::InternalError => 500,
            Reason::UnsupportedMediaType => 415,
            Reason::NotAcceptable => 406,
            Reason::Timeout => 504,
        }
    }
}

/// A failed API call: becomes a `Status` body with the matching HTTP code.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub reason: Reason,
    pub message: String,
    /// `Status.details` (name, group, kind, causes, retryAfterSeconds).
    pub details: Option<Value>,
    /// Seconds for a `Retry-After` header (429).
    pub retry_after: Option<u64>,
}

fn details(rt: &ResourceType, name: &str) -> Value {
    let mut d = json!({"name": name, "kind": rt.plural});
    if !rt.group.is_empty() {
        d["group"] = json!(rt.group);
    }
    d
}

impl ApiError {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        ApiError {
            reason,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    pub fn code(&self) -> u16 {
        self.reason.code()
    }

    /// `pods "x" not found`
    pub fn not_found(rt: &ResourceType, name: &str) -> Self {
        ApiError {
            details: Some(details(rt, name)),
            ..Self::new(
                Reason::NotFound,
                format!("{} \"{}\" not found", rt.qualified_plural(), name),
            )
        }
    }

    /// `pods "x" already exists`
    pub fn already_exists(rt: &ResourceType, name: &str) -> Self {
        ApiError {
            details: Some(details(rt, name)),
            ..Self::new(
                Reason::AlreadyExists,
                format!("{} \"{}\" already exists", rt.qualified_plural(), name),
            )
        }
    }

    /// The optimistic-concurrency failure of an update with a stale
    /// `resourceVersion`, worded like a real server.
    pub fn conflict(rt: &ResourceType, name: &str) -> Self {
        ApiError {
            details: Some(details(rt, name)),
            ..Self::new(
                Reason::Conflict,
                format!(
                    "Operation cannot be fulfilled on {} \"{}\": the object has been modified; please apply your changes to the latest version and try again",
                    rt.qualified_plural(),
                    name
                ),
            )
        }
    }

    /// A conflict with a custom message (server-side apply conflicts).
    pub fn conflict_message(rt: &ResourceType, name: &str, message: impl Into<String>) -> Self {
        ApiError {
            details: Some(details(rt, name)),
            ..Self::new(Reason::Conflict, message)
        }
    }

    /// `Deployment.apps "x" is invalid: <field>: <why>`
    pub fn invalid(rt: &ResourceType, name: &str, field: &str, why: &str) -> Self {
        let mut d = details(rt, name);
        d["kind"] = json!(rt.kind);
        d["causes"] = json!([{"reason": "FieldValueInvalid", "message": why, "field": field}]);
        let kind = if rt.group.is_empty() {
            rt.kind.to_string()
        } else {
            format!("{}.{}", rt.kind, rt.group)
        };
        ApiError {
            details: Some(d),
            ..Self::new(
                Reason::Invalid,
                format!("{kind} \"{name}\" is invalid: {field}: {why}"),
            )
        }
    }

    pub fn unauthorized() -> Self {
        Self::new(Reason::Unauthorized, "Unauthorized")
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(Reason::Forbidden, message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(Reason::BadRequest, message)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(Reason::MethodNotAllowed, message)
    }

    /// 410 Gone for a watch or continue token older than the history kept.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(Reason::Expired, message)
    }

    pub fn too_many_requests(retry_after: u64) -> Self {
        ApiError {
            details: Some(json!({"retryAfterSeconds": retry_after})),
            retry_after: Some(retry_after),
            ..Self::new(
                Reason::TooManyRequests,
                "the server has received too many requests and has asked us to try again later",
            )
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Reason::InternalError, message)
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            Reason::UnsupportedMediaType,
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {content_type:?})"
            ),
        )
    }

    /// The `Status` object for this error.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason.as_str(),
            "code": self.code(),
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry;

    #[test]
    fn status_json_has_reason_and_code() {
        let s = ApiError::not_found(&registry::DEPLOYMENTS, "web").to_status();
        assert_eq!(s["code"], 404);
        assert_eq!(s["reason"], "NotFound");
        assert_eq!(s["message"], "deployments.apps \"web\" not found");
        assert_eq!(s["details"]["group"], "apps");
        let s = ApiError::too_many_requests(2).to_status();
        assert_eq!(s["code"], 429);
        assert_eq!(s["details"]["retryAfterSeconds"], 2);
    }
}
