//! Which pods, containers, users and services make up a deployment, found
//! from the releases' manifests and the namespace's pods. Pure functions:
//! the caller fetches releases and pods, this module decides.
//!
//! It works with zero configuration for the demo charts (StatefulSet
//! `kleidia-data-postgres-cluster`, user `yubiuser`), for charts that name
//! things differently (StatefulSet `postgres`, user `kleidiauser`) and for
//! CloudNativePG `Cluster`s (primary pod labelled
//! `cnpg.io/instanceRole=primary`). Pins from the configuration file win.

//!
//! One file per seam: `manifest` (Helm's rendered objects), `selector`,
//! `workloads` (and Services), `pods` (which pods a workload selects, which
//! one to talk to), then one file per component rule: `postgres`,
//! `openbao`, `backend`.

mod backend;
mod manifest;
mod openbao;
mod pods;
mod postgres;
pub mod quantity;
mod selector;
mod workloads;

#[cfg(test)]
mod tests;

pub use backend::{BackendTarget, discover_backend, is_backend};
pub use manifest::{ManifestObject, parse_manifest};
pub use openbao::{OpenbaoTarget, discover_openbao};
pub use pods::{
    ContainerState, Owner, PodInfo, Resources, WorkloadPods, release_workloads, select_pods,
};
pub use postgres::{PostgresTarget, discover_postgres};
pub use selector::{Selector, SelectorExpression};
pub use workloads::{
    ContainerSpec, ServicePort, ServiceSpec, Workload, WorkloadKind, image_name, services,
    workloads,
};

use serde::Serialize;

/// The three parts of a Kleidia deployment, in upgrade order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Component {
    Platform,
    Data,
    Services,
}

impl Component {
    pub const ALL: [Component; 3] = [Component::Platform, Component::Data, Component::Services];

    pub fn as_str(self) -> &'static str {
        match self {
            Component::Platform => "platform",
            Component::Data => "data",
            Component::Services => "services",
        }
    }
}

impl std::fmt::Display for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    #[error("the manifest of release {release} is not valid YAML: {message}")]
    Manifest { release: String, message: String },
    #[error(
        "release {release} has no {what} workload (looked for {looked_for}); it has: {found}. Pin it in the config file ({pin_hint})"
    )]
    NoWorkload {
        release: String,
        what: &'static str,
        looked_for: &'static str,
        found: String,
        pin_hint: &'static str,
    },
    #[error(
        "no pod in namespace {namespace} matches {workload} (selector {selector}); is it scaled to zero or still starting? Check with `kubectl get pods -n {namespace} -l {selector}`"
    )]
    NoPods {
        namespace: String,
        workload: String,
        selector: String,
    },
    #[error(
        "the pinned {what} pod {pod} does not exist in namespace {namespace}; pods there: {found}. Fix {pin} in the config file"
    )]
    PinnedPodMissing {
        what: &'static str,
        pod: String,
        namespace: String,
        found: String,
        pin: &'static str,
    },
    #[error(
        "the pinned selector {selector:?} is not of the form key=value[,key=value]. Fix {pin} in the config file"
    )]
    BadSelector { selector: String, pin: &'static str },
    #[error(
        "cannot tell which PostgreSQL user to connect as in {workload}: no POSTGRES_USER/PGUSER literal in container {container} and no user in the release values. Set postgres.user in the config file"
    )]
    NoDatabaseUser { workload: String, container: String },
    #[error(
        "release {release} has no Service for the backend (looked for a Service selecting {workload}, or named *backend*); Services: {found}. Set backend.service in the config file"
    )]
    NoBackendService {
        release: String,
        workload: String,
        found: String,
    },
    #[error("Service {service} has no port{detail}. Set backend.port in the config file")]
    NoServicePort { service: String, detail: String },
}
