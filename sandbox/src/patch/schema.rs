//! How lists of the built-in kinds merge: the `patchStrategy` /
//! `patchMergeKey` tags (strategic merge patch) and `listType` /
//! `listMapKey` markers (server-side apply) of the Kubernetes types
//! (`k8s.io/api` core/v1, apps/v1, batch/v1 and apimachinery meta/v1).
//!
//! Lists are looked up by the field path from the object root with list
//! items skipped, e.g. `["spec", "template", "spec", "containers", "ports"]`,
//! because the same field name means different things in different places
//! (a container's `ports` merge by `containerPort`, a Service's `spec.ports`
//! by `port`, a NetworkPolicy rule's `ports` are atomic).

/// How a list field merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListType {
    /// Replaced as a whole (`tolerations`, `args`, `command`, unknown lists).
    Atomic,
    /// A set of primitives (`metadata.finalizers`): merged as a union.
    Set,
    /// A list of objects identified by key fields.
    Map {
        /// The strategic merge patch `patchMergeKey`.
        merge_key: &'static str,
        /// The server-side apply `listMapKey`s (a superset of `merge_key`).
        keys: &'static [&'static str],
    },
}

const fn by(merge_key: &'static str, keys: &'static [&'static str]) -> ListType {
    ListType::Map { merge_key, keys }
}

const CONTAINER_FIELDS: &[&str] = &["containers", "initContainers", "ephemeralContainers"];

/// The list type of the field at `path` in an object of `kind`.
pub fn list_type(kind: &str, path: &[&str]) -> ListType {
    let Some((&field, parents)) = path.split_last() else {
        return ListType::Atomic;
    };
    let parent = parents.last().copied().unwrap_or("");
    if CONTAINER_FIELDS.contains(&parent) {
        // Fields of a container.
        return match field {
            "env" => by("name", &["name"]),
            "ports" => by("containerPort", &["containerPort", "protocol"]),
            "volumeMounts" => by("mountPath", &["mountPath"]),
            "volumeDevices" => by("devicePath", &["devicePath"]),
            _ => ListType::Atomic,
        };
    }
    match field {
        "finalizers" if parent == "metadata" => ListType::Set,
        "ownerReferences" if parent == "metadata" => by("uid", &["uid"]),
        "containers" | "initContainers" | "ephemeralContainers" => by("name", &["name"]),
        "volumes" | "imagePullSecrets" | "schedulingGates" | "resourceClaims" => {
            by("name", &["name"])
        }
        "conditions" => by("type", &["type"]),
        "topologySpreadConstraints" => by("topologyKey", &["topologyKey", "whenUnsatisfiable"]),
        "hostAliases" | "podIPs" | "hostIPs" => by("ip", &["ip"]),
        "podCIDRs" => ListType::Set,
        "ports" if kind == "Service" && path == ["spec", "ports"] => {
            by("port", &["port", "protocol"])
        }
        "addresses" if kind == "Node" && path == ["status", "addresses"] => by("type", &["type"]),
        "secrets" if kind == "ServiceAccount" && path == ["secrets"] => by("name", &["name"]),
        _ => ListType::Atomic,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_depend_on_where_they_are() {
        let container_ports = ["spec", "template", "spec", "containers", "ports"];
        assert_eq!(
            list_type("Deployment", &container_ports),
            by("containerPort", &["containerPort", "protocol"])
        );
        assert_eq!(
            list_type("Service", &["spec", "ports"]),
            by("port", &["port", "protocol"])
        );
        assert_eq!(
            list_type("NetworkPolicy", &["spec", "ingress", "ports"]),
            ListType::Atomic
        );
    }

    #[test]
    fn common_fields() {
        let pod = |f: &str| list_type("Pod", &["spec", f]);
        assert_eq!(pod("containers"), by("name", &["name"]));
        assert_eq!(pod("volumes"), by("name", &["name"]));
        assert_eq!(pod("tolerations"), ListType::Atomic);
        assert_eq!(
            list_type("Pod", &["spec", "containers", "args"]),
            ListType::Atomic
        );
        assert_eq!(
            list_type("Pod", &["spec", "containers", "env"]),
            by("name", &["name"])
        );
        assert_eq!(list_type("Pod", &["metadata", "finalizers"]), ListType::Set);
        assert_eq!(
            list_type("Deployment", &["status", "conditions"]),
            by("type", &["type"])
        );
    }
}
