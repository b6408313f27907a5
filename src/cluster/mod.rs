//! Talking to the cluster: API errors in the operator's words, exec and
//! port-forward streams that other commands (backup, upgrade) reuse.

pub mod client;
pub mod exec;
pub mod lease;
pub mod pods;
pub mod portforward;
pub mod stall;

/// Which API server a request went to, for messages.
#[derive(Debug, Clone, Default)]
pub struct ApiEndpoint {
    pub server: String,
    pub context: String,
}

/// An API request that failed, said in terms of what was being done.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "cannot reach the Kubernetes API at {server} (context {context:?}) to {action}: {cause}. Check that the cluster is up and that --context/--kubeconfig point at it"
    )]
    Unreachable {
        server: String,
        context: String,
        action: String,
        cause: String,
    },
    #[error(
        "the Kubernetes API at {server} rejected the credentials of context {context:?} (401 Unauthorized) when trying to {action}. Refresh the credentials in the kubeconfig (or log in again) and retry"
    )]
    Unauthorized {
        server: String,
        context: String,
        action: String,
    },
    #[error(
        "permission denied: context {context:?} may not {action} (403 Forbidden: {message}). Grant the Role in docs/rbac.yaml to this user, or use a context that has it"
    )]
    Forbidden {
        context: String,
        action: String,
        message: String,
    },
    #[error("{object} was not found when trying to {action}")]
    NotFound { object: String, action: String },
    #[error("the Kubernetes API at {server} refused to {action}: {code} {reason}: {message}")]
    Api {
        server: String,
        action: String,
        code: u16,
        reason: String,
        message: String,
    },
    #[error("could not {action} at {server}: {cause}")]
    Other {
        server: String,
        action: String,
        cause: String,
    },
}

impl ClusterError {
    /// Classifies a kube error. `action` is the permission in RBAC terms,
    /// e.g. `list secrets in namespace kleidia`; `object` names what was
    /// addressed, for 404s.
    pub fn from_kube(err: kube::Error, api: &ApiEndpoint, action: &str, object: &str) -> Self {
        match err {
            kube::Error::Api(status) => match status.code {
                401 => ClusterError::Unauthorized {
                    server: api.server.clone(),
                    context: api.context.clone(),
                    action: action.to_string(),
                },
                403 => ClusterError::Forbidden {
                    context: api.context.clone(),
                    action: action.to_string(),
                    message: status.message.clone(),
                },
                404 => ClusterError::NotFound {
                    object: object.to_string(),
                    action: action.to_string(),
                },
                code => ClusterError::Api {
                    server: api.server.clone(),
                    action: action.to_string(),
                    code,
                    reason: status.reason.clone(),
                    message: status.message.clone(),
                },
            },
            kube::Error::HyperError(_) | kube::Error::Service(_) => ClusterError::Unreachable {
                server: api.server.clone(),
                context: api.context.clone(),
                action: action.to_string(),
                cause: error_chain(&err),
            },
            other => ClusterError::Other {
                server: api.server.clone(),
                action: action.to_string(),
                cause: error_chain(&other),
            },
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, ClusterError::NotFound { .. })
    }
}

/// An error and its causes on one line, without repeating identical parts.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![err.to_string()];
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = e.source();
    }
    parts.join(": ")
}
