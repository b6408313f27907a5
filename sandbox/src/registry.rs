//! Every resource type the sandbox serves, described once.
//!
//! The API server, discovery, the store and the controllers all read this
//! table; nothing has per-kind handlers. Look types up with [`lookup`],
//! [`by_kind`] or the constants (`registry::PODS`, ...).

/// One registered resource type (one group/version/plural).
#[derive(Debug, PartialEq, Eq)]
pub struct ResourceType {
    /// API group, `""` for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub short_names: &'static [&'static str],
    pub namespaced: bool,
    pub verbs: &'static [&'static str],
    /// Subresource names served for this type (`status`, `scale`, `exec`...).
    pub subresources: &'static [&'static str],
    pub categories: &'static [&'static str],
}

impl ResourceType {
    /// `v1` for the core group, `apps/v1` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The kind of a list of these objects, e.g. `PodList`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// Whether the type has a `status` subresource (then PUT on the object
    /// ignores `.status` and PUT on `/status` only changes `.status`).
    pub fn has_status(&self) -> bool {
        self.subresources.contains(&"status")
    }

    pub fn has_subresource(&self, name: &str) -> bool {
        self.subresources.contains(&name)
    }

    pub fn allows(&self, verb: &str) -> bool {
        self.verbs.contains(&verb)
    }

    /// The name used in messages, `pods` or `deployments.apps`.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Whether two types are the same (the table holds each once).
    pub fn same(&self, other: &ResourceType) -> bool {
        std::ptr::eq(self, other)
    }
}

const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const CREATE_ONLY: &[&str] = &["create"];
const NONE: &[&str] = &[];
const STATUS: &[&str] = &["status"];
const STATUS_SCALE: &[&str] = &["scale", "status"];
const ALL_CATEGORY: &[&str] = &["all"];

macro_rules! rt {
    ($name:ident, $group:expr, $version:expr, $kind:expr, $plural:expr, $singular:expr,
     short: $short:expr, namespaced: $ns:expr, verbs: $verbs:expr, sub: $sub:expr, cat: $cat:expr) => {
        pub static $name: ResourceType = ResourceType {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            singular: $singular,
            short_names: $short,
            namespaced: $ns,
            verbs: $verbs,
            subresources: $sub,
            categories: $cat,
        };
    };
}

rt!(NAMESPACES, "", "v1", "Namespace", "namespaces", "namespace",
    short: &["ns"], namespaced: false, verbs: &["create", "delete", "get", "list", "patch", "update", "watch"], sub: STATUS, cat: NONE);
rt!(PODS, "", "v1", "Pod", "pods", "pod",
    short: &["po"], namespaced: true, verbs: ALL_VERBS,
    sub: &["attach", "binding", "eviction", "exec", "log", "portforward", "proxy", "status"], cat: ALL_CATEGORY);
rt!(SERVICES, "", "v1", "Service", "services", "service",
    short: &["svc"], namespaced: true, verbs: &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
    sub: &["proxy", "status"], cat: ALL_CATEGORY);
rt!(ENDPOINTS, "", "v1", "Endpoints", "endpoints", "endpoints",
    short: &["ep"], namespaced: true, verbs: ALL_VERBS, sub: NONE, cat: NONE);
rt!(SECRETS, "", "v1", "Secret", "secrets", "secret",
    short: NONE, namespaced: true, verbs: ALL_VERBS, sub: NONE, cat: NONE);
rt!(CONFIGMAPS, "", "v1", "ConfigMap", "configmaps", "configmap",
    short: &["cm"], namespaced: true, verbs: ALL_VERBS, sub: NONE, cat: NONE);
rt!(SERVICEACCOUNTS, "", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount",
    short: &["sa"], namespaced: true, verbs: ALL_VERBS, sub: NONE, cat: NONE);
rt!(EVENTS, "", "v1", "Event", "events", "event",
    short: &["ev"], namespaced: true, verbs: ALL_VERBS, sub: NONE, cat: NONE);
rt!(PERSISTENTVOLUMECLAIMS, "", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", "persistentvolumeclaim",
    short: &["pvc"], namespaced: true, verbs: ALL_VERBS, sub: STATUS, cat: NONE);
rt!(PERSISTENTVOLUMES, "", "v1", "PersistentVolume", "persistentvolumes", "persistentvolume",
    short: &["pv"], namespaced: false, verbs: ALL_VERBS, sub: STATUS, cat: NONE);
rt!(NODES, "", "v1", "Node", "nodes", "node",
    short: &["no"], namespaced: false, verbs: ALL_VERBS, sub: &["proxy", "status"], cat: NONE);
rt!(EVENTS_V1, "events.k8s.io", "v1", "Event", "events", "event",
    short: &["ev"], namespaced: true, verbs: ALL_VERBS, sub: NONE, cat: NONE);
rt!(DEPLOYMENTS, "apps", "v1", "Deployment", "deployments", "deployment",
    short: &["deploy"], namespaced: true, verbs: ALL_VERBS, sub: STATUS_SCALE, cat: ALL_CATEGORY);
rt!(STATEFULSETS, "apps", "v1", "StatefulSet", "statefulsets", "statefulset",
    short: &["sts"], namespaced: true, verbs: ALL_VERBS, sub: STATUS_SCALE, cat: ALL_CATEGORY);
rt!(REPLICASETS, "apps", "v1", "ReplicaSet", "replicasets", "replicaset",
    short: &["rs"], namespaced: true, verbs: ALL_VERBS, sub: STATUS_SCALE, cat: ALL_CATEGORY);
rt!(DAEMONSETS, "apps", "v1", "DaemonSet", "daemonsets", "daemonset",
    short: &["ds"], namespaced: true, verbs: ALL_VERBS, sub: STATUS, cat: ALL_CATEGORY);
rt!(CONTROLLERREVISIONS, "apps", "v1", "ControllerRevision", "controllerrevisions", "controllerrevision",
    short: NONE, namespaced: true, verbs: ALL_VERBS, sub: NONE, cat: NONE);
rt!(JOBS, "batch", "v1", "Job", "jobs", "job",
    short: NONE, namespaced: true, verbs: ALL_VERBS, sub: STATUS, cat: ALL_CATEGORY);
rt!(CRONJOBS, "batch", "v1", "CronJob", "cronjobs", "cronjob",
    short: &["cj"], namespaced: true, verbs: ALL_VERBS, sub: STATUS, cat: ALL_CATEGORY);
rt!(ROLES, "rbac.authorization.k8s.io", "v1", "Role", "roles", "role",
    short: NONE, namespaced: true, verbs: ALL_VERBS, sub: NONE, cat: NONE);
rt!(ROLEBINDINGS, "rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", "rolebinding",
    short: NONE, namespaced: true, verbs: ALL_VERBS, sub: NONE, cat: NONE);
rt!(CLUSTERROLES, "rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", "clusterrole",
    short: NONE, namespaced: false, verbs: ALL_VERBS, sub: NONE, cat: NONE);
rt!(CLUSTERROLEBINDINGS, "rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", "clusterrolebinding",
    short: NONE, namespaced: false, verbs: ALL_VERBS, sub: NONE, cat: NONE);
rt!(NETWORKPOLICIES, "networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", "networkpolicy",
    short: &["netpol"], namespaced: true, verbs: ALL_VERBS, sub: NONE, cat: NONE);
rt!(INGRESSES, "networking.k8s.io", "v1", "Ingress", "ingresses", "ingress",
    short: &["ing"], namespaced: true, verbs: ALL_VERBS, sub: STATUS, cat: NONE);
rt!(PODDISRUPTIONBUDGETS, "policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", "poddisruptionbudget",
    short: &["pdb"], namespaced: true, verbs: ALL_VERBS, sub: STATUS, cat: NONE);
rt!(LEASES, "coordination.k8s.io", "v1", "Lease", "leases", "lease",
    short: NONE, namespaced: true, verbs: ALL_VERBS, sub: NONE, cat: NONE);
rt!(STORAGECLASSES, "storage.k8s.io", "v1", "StorageClass", "storageclasses", "storageclass",
    short: &["sc"], namespaced: false, verbs: ALL_VERBS, sub: NONE, cat: NONE);
rt!(SELFSUBJECTACCESSREVIEWS, "authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", "selfsubjectaccessreview",
    short: NONE, namespaced: false, verbs: CREATE_ONLY, sub: NONE, cat: NONE);
rt!(SELFSUBJECTREVIEWS, "authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", "selfsubjectreview",
    short: NONE, namespaced: false, verbs: CREATE_ONLY, sub: NONE, cat: NONE);
rt!(SELFSUBJECTRULESREVIEWS, "authorization.k8s.io", "v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews", "selfsubjectrulesreview",
    short: NONE, namespaced: false, verbs: CREATE_ONLY, sub: NONE, cat: NONE);

/// Every registered type, in discovery order.
pub static ALL: &[&ResourceType] = &[
    &NAMESPACES,
    &PODS,
    &SERVICES,
    &ENDPOINTS,
    &SECRETS,
    &CONFIGMAPS,
    &SERVICEACCOUNTS,
    &EVENTS,
    &PERSISTENTVOLUMECLAIMS,
    &PERSISTENTVOLUMES,
    &NODES,
    &EVENTS_V1,
    &DEPLOYMENTS,
    &STATEFULSETS,
    &REPLICASETS,
    &DAEMONSETS,
    &CONTROLLERREVISIONS,
    &JOBS,
    &CRONJOBS,
    &ROLES,
    &ROLEBINDINGS,
    &CLUSTERROLES,
    &CLUSTERROLEBINDINGS,
    &NETWORKPOLICIES,
    &INGRESSES,
    &PODDISRUPTIONBUDGETS,
    &LEASES,
    &STORAGECLASSES,
    &SELFSUBJECTACCESSREVIEWS,
    &SELFSUBJECTRULESREVIEWS,
    &SELFSUBJECTREVIEWS,
];

/// The type served at `/api/v1/<plural>` (`group == ""`) or
/// `/apis/<group>/<version>/<plural>`.
pub fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
    ALL.iter()
        .copied()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The type of `kind` in `group` (any version; each is served at one).
pub fn by_kind(group: &str, kind: &str) -> Option<&'static ResourceType> {
    ALL.iter()
        .copied()
        .find(|r| r.group == group && r.kind == kind)
}

/// The type of an object's `apiVersion` + `kind`.
pub fn by_api_version_kind(api_version: &str, kind: &str) -> Option<&'static ResourceType> {
    let (group, version) = split_api_version(api_version);
    ALL.iter()
        .copied()
        .find(|r| r.group == group && r.version == version && r.kind == kind)
}

/// `apps/v1` -> (`apps`, `v1`); `v1` -> (``, `v1`).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

/// Served group/versions, core first: (`""`, `v1`), (`apps`, `v1`), ...
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in ALL {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

/// Types served under one group/version.
pub fn in_group_version(group: &str, version: &str) -> Vec<&'static ResourceType> {
    ALL.iter()
        .copied()
        .filter(|r| r.group == group && r.version == version)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_find_the_same_entry() {
        let p = lookup("", "v1", "pods").unwrap();
        assert!(p.same(&PODS));
        assert!(by_kind("apps", "Deployment").unwrap().same(&DEPLOYMENTS));
        assert!(
            by_api_version_kind("events.k8s.io/v1", "Event")
                .unwrap()
                .same(&EVENTS_V1)
        );
        assert_eq!(DEPLOYMENTS.api_version(), "apps/v1");
        assert_eq!(PODS.api_version(), "v1");
        assert_eq!(group_versions()[0], ("", "v1"));
    }

    #[test]
    fn plurals_are_unique_per_group_version() {
        for a in ALL {
            let n = ALL
                .iter()
                .filter(|b| a.group == b.group && a.version == b.version && a.plural == b.plural)
                .count();
            assert_eq!(n, 1, "{} registered twice", a.qualified_plural());
        }
    }
}
