//! Discovery documents: `/version`, `/api`, `/apis`, per group/version
//! resource lists, and aggregated discovery (`apidiscovery.k8s.io/v2`),
//! all generated from the registry.

use serde_json::{Value, json};

use crate::registry::{self, ResourceType};

/// The Kubernetes version the sandbox reports.
pub const MAJOR: &str = "1";
pub const MINOR: &str = "33";
pub const GIT_VERSION: &str = "v1.33.4";

/// Content-Type of aggregated discovery responses.
pub const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

pub fn version() -> Value {
    json!({
        "major": MAJOR,
        "minor": MINOR,
        "emulationMajor": MAJOR,
        "emulationMinor": MINOR,
        "minCompatibilityMajor": MAJOR,
        "minCompatibilityMinor": "32",
        "gitVersion": GIT_VERSION,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24.6",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

fn server_address() -> Value {
    json!([{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}])
}

/// `/api`
pub fn core_versions() -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": server_address()})
}

fn api_group(group: &str) -> Value {
    let versions: Vec<Value> = registry::group_versions()
        .into_iter()
        .filter(|(g, _)| *g == group)
        .map(|(g, v)| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    json!({
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": versions,
        "preferredVersion": versions.first().cloned().unwrap_or(Value::Null),
    })
}

fn groups() -> Vec<&'static str> {
    let mut out: Vec<&str> = Vec::new();
    for (g, _) in registry::group_versions() {
        if !g.is_empty() && !out.contains(&g) {
            out.push(g);
        }
    }
    out
}

/// `/apis`
pub fn group_list() -> Value {
    let groups: Vec<Value> = groups().into_iter().map(api_group).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>`, or `None` for an unknown group.
pub fn group(group: &str) -> Option<Value> {
    groups().contains(&group).then(|| api_group(group))
}

fn subresource_kind(rt: &ResourceType, sub: &str) -> (String, String, String) {
    match sub {
        "scale" => ("autoscaling".into(), "v1".into(), "Scale".into()),
        "status" => (rt.group.into(), rt.version.into(), rt.kind.into()),
        "exec" => ("".into(), "v1".into(), "PodExecOptions".into()),
        "attach" => ("".into(), "v1".into(), "PodAttachOptions".into()),
        "portforward" => ("".into(), "v1".into(), "PodPortForwardOptions".into()),
        "proxy" if rt.kind == "Pod" => ("".into(), "v1".into(), "PodProxyOptions".into()),
        "proxy" if rt.kind == "Service" => ("".into(), "v1".into(), "ServiceProxyOptions".into()),
        "proxy" => ("".into(), "v1".into(), "NodeProxyOptions".into()),
        "eviction" => ("policy".into(), "v1".into(), "Eviction".into()),
        "binding" => ("".into(), "v1".into(), "Binding".into()),
        _ => (rt.group.into(), rt.version.into(), rt.kind.into()),
    }
}

fn subresource_verbs(sub: &str) -> &'static [&'static str] {
    match sub {
        "status" | "scale" => &["get", "patch", "update"],
        "log" => &["get"],
        "exec" | "attach" | "portforward" => &["create", "get"],
        "proxy" => &["create", "delete", "get", "patch", "update"],
        _ => &["create"],
    }
}

/// `/api/v1` or `/apis/<g>/<v>`, or `None` for an unknown group/version.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let types = registry::in_group_version(group, version);
    if types.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for rt in types {
        let mut r = json!({
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": rt.verbs,
        });
        if !rt.short_names.is_empty() {
            r["shortNames"] = json!(rt.short_names);
        }
        if !rt.categories.is_empty() {
            r["categories"] = json!(rt.categories);
        }
        resources.push(r);
        for sub in rt.subresources {
            let (g, v, k) = subresource_kind(rt, sub);
            let mut s = json!({
                "name": format!("{}/{}", rt.plural, sub),
                "singularName": "",
                "namespaced": rt.namespaced,
                "kind": k,
                "verbs": subresource_verbs(sub),
            });
            if g != rt.group || v != rt.version {
                s["group"] = json!(g);
                s["version"] = json!(v);
            }
            resources.push(s);
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": resources,
    }))
}

fn discovery_resource(rt: &ResourceType) -> Value {
    let subs: Vec<Value> = rt
        .subresources
        .iter()
        .map(|sub| {
            let (g, v, k) = subresource_kind(rt, sub);
            json!({
                "subresource": sub,
                "responseKind": {"group": g, "version": v, "kind": k},
                "verbs": subresource_verbs(sub),
            })
        })
        .collect();
    let mut r = json!({
        "resource": rt.plural,
        "responseKind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
        "scope": if rt.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": rt.singular,
        "verbs": rt.verbs,
    });
    if !rt.short_names.is_empty() {
        r["shortNames"] = json!(rt.short_names);
    }
    if !rt.categories.is_empty() {
        r["categories"] = json!(rt.categories);
    }
    if !subs.is_empty() {
        r["subresources"] = json!(subs);
    }
    r
}

fn discovery_group(group: &str) -> Value {
    let versions: Vec<Value> = registry::group_versions()
        .into_iter()
        .filter(|(g, _)| *g == group)
        .map(|(g, v)| {
            let resources: Vec<Value> = registry::in_group_version(g, v)
                .into_iter()
                .map(discovery_resource)
                .collect();
            json!({"version": v, "resources": resources, "freshness": "Current"})
        })
        .collect();
    let mut meta = json!({"creationTimestamp": null});
    if !group.is_empty() {
        meta["name"] = json!(group);
    }
    json!({"metadata": meta, "versions": versions})
}

/// Aggregated discovery for `/api` (`core == true`) or `/apis`.
pub fn aggregated(core: bool) -> Value {
    let items: Vec<Value> = if core {
        vec![discovery_group("")]
    } else {
        groups().into_iter().map(discovery_group).collect()
    };
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_cover_the_registry() {
        let core = resource_list("", "v1").unwrap();
        let names: Vec<&str> = core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"pods") && names.contains(&"pods/exec"));
        assert!(group("apps").is_some());
        assert!(group("nope").is_none());
        let agg = aggregated(false);
        assert!(
            agg["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g["metadata"]["name"] == "apps")
        );
    }
}
