//! Permissions: one SelfSubjectAccessReview for every verb and resource
//! that `backup`, `upgrade` and `rollback` need in the namespace, asked
//! concurrently, listing what is missing. What helm itself needs is read
//! from the releases: every kind their manifests hold.

use std::collections::BTreeSet;

use futures::StreamExt;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::Api;
use kube::api::PostParams;

use super::{Check, Context};
use crate::cluster::ClusterError;

/// One permission: `verb` on `group`/`resource`[/`subresource`], and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Need {
    pub verb: &'static str,
    pub group: String,
    pub resource: String,
    pub subresource: Option<&'static str>,
    /// Cluster-scoped resources are asked without a namespace.
    pub namespaced: bool,
    pub why: &'static str,
}

impl Need {
    fn new(verb: &'static str, group: &str, resource: &str, why: &'static str) -> Self {
        Need {
            verb,
            group: group.into(),
            resource: resource.into(),
            subresource: None,
            namespaced: true,
            why,
        }
    }

    fn sub(mut self, sub: &'static str) -> Self {
        self.subresource = Some(sub);
        self
    }

    /// `delete pods`, `create pods/exec`, `patch deployments.apps`.
    pub fn shown(&self) -> String {
        let group = if self.group.is_empty() {
            String::new()
        } else {
            format!(".{}", self.group)
        };
        let sub = self
            .subresource
            .map(|s| format!("/{s}"))
            .unwrap_or_default();
        format!("{} {}{group}{sub}", self.verb, self.resource)
    }
}

const HELM_VERBS: [&str; 6] = ["get", "list", "create", "update", "patch", "delete"];

/// What the plugin's own steps need (besides helm's objects).
pub fn own_needs(driver_resource: &str) -> Vec<Need> {
    let mut out = Vec::new();
    for verb in HELM_VERBS {
        out.push(Need::new(
            verb,
            "",
            driver_resource,
            "helm's release records",
        ));
    }
    for verb in ["get", "list", "watch"] {
        out.push(Need::new(
            verb,
            "",
            "pods",
            "finding the servers and waiting for rollouts",
        ));
        out.push(Need::new(verb, "apps", "deployments", "rollout gates"));
        out.push(Need::new(verb, "apps", "statefulsets", "rollout gates"));
    }
    out.push(Need::new(
        "delete",
        "",
        "pods",
        "upgrade rolls OnDelete StatefulSets' pods",
    ));
    out.push(Need::new("create", "", "pods", "backup's exec into pods").sub("exec"));
    out.push(Need::new("get", "", "pods", "logs of failing pods").sub("log"));
    out.push(Need::new("get", "", "pods", "OpenBao's seal status").sub("proxy"));
    out.push(Need::new("get", "", "services", "the backend's /api/health").sub("proxy"));
    out.push(Need::new("list", "", "events", "why a rollout is stuck"));
    out.push(Need::new(
        "list",
        "",
        "persistentvolumeclaims",
        "claims Bound",
    ));
    out.push(Need::new("list", "batch", "jobs", "migration hooks"));
    for verb in ["get", "create", "update", "delete"] {
        out.push(Need::new(
            verb,
            "coordination.k8s.io",
            "leases",
            "the upgrade lock",
        ));
    }
    for verb in ["get", "create", "update"] {
        out.push(Need::new(
            verb,
            "",
            "configmaps",
            "the record of upgrade and rollback runs",
        ));
    }
    out
}

/// Kinds that are not namespaced.
const CLUSTER_KINDS: [&str; 8] = [
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "Namespace",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
    "Node",
];

/// `Deployment` in `apps/v1` -> (`apps`, `deployments`).
pub fn resource_of(api_version: &str, kind: &str) -> (String, String) {
    let group = api_version
        .rsplit_once('/')
        .map(|(g, _)| g.to_string())
        .unwrap_or_default();
    let lower = kind.to_ascii_lowercase();
    let plural = if lower.ends_with('y') && !lower.ends_with("ey") {
        format!("{}ies", &lower[..lower.len() - 1])
    } else if lower.ends_with('s') || lower.ends_with("ch") || lower.ends_with("sh") {
        format!("{lower}es")
    } else {
        format!("{lower}s")
    };
    (group, plural)
}

/// What helm needs for the objects of the releases: every verb of an
/// upgrade and a rollback on each kind they hold (hooks included).
pub fn helm_needs(kinds: &BTreeSet<(String, String)>) -> Vec<Need> {
    let mut out = Vec::new();
    for (api_version, kind) in kinds {
        let (group, resource) = resource_of(api_version, kind);
        for verb in HELM_VERBS {
            let mut n = Need::new(verb, &group, &resource, "helm upgrade and rollback");
            n.namespaced = !CLUSTER_KINDS.contains(&kind.as_str());
            out.push(n);
        }
    }
    out
}

pub async fn checks(cx: &Context<'_>) -> Vec<Check> {
    let ns = cx.survey.namespace.clone();
    let mut kinds = BTreeSet::new();
    for r in cx.survey.releases() {
        if let Ok(objs) = &r.objects {
            for o in objs {
                kinds.insert((o.api_version.clone(), o.kind.clone()));
            }
        }
        if let Ok(rel) = &r.latest {
            for h in &rel.hooks {
                let api_version = if h.kind == "Job" { "batch/v1" } else { "v1" };
                kinds.insert((api_version.to_string(), h.kind.clone()));
            }
        }
    }
    let mut needs = own_needs(cx.target.settings.driver.resource());
    needs.extend(helm_needs(&kinds));
    // One review per verb and resource, the first reason kept.
    let mut seen = BTreeSet::new();
    needs.retain(|n| seen.insert((n.verb, n.group.clone(), n.resource.clone(), n.subresource)));
    let api: Api<SelfSubjectAccessReview> = Api::all(cx.target.client.clone());
    let asked = needs.len();
    let answers: Vec<(Need, Result<bool, String>)> = futures::stream::iter(needs)
        .map(|n| {
            let api = api.clone();
            let ns = ns.clone();
            async move {
                let review = SelfSubjectAccessReview {
                    spec: SelfSubjectAccessReviewSpec {
                        resource_attributes: Some(ResourceAttributes {
                            namespace: n.namespaced.then_some(ns),
                            verb: Some(n.verb.to_string()),
                            group: Some(n.group.clone()),
                            resource: Some(n.resource.clone()),
                            subresource: n.subresource.map(str::to_string),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                let answer = api
                    .create(&PostParams::default(), &review)
                    .await
                    .map(|r| r.status.is_some_and(|s| s.allowed))
                    .map_err(|e| {
                        ClusterError::from_kube(
                            e,
                            &cx.target.api(),
                            "create selfsubjectaccessreviews",
                            "selfsubjectaccessreviews",
                        )
                        .to_string()
                    });
                (n, answer)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    vec![verdict(&ns, asked, answers)]
}

pub fn verdict(ns: &str, asked: usize, mut answers: Vec<(Need, Result<bool, String>)>) -> Check {
    answers.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some((_, Err(e))) = answers.iter().find(|(_, a)| a.is_err()) {
        return Check::warn(
            "permissions",
            format!("the access reviews could not be asked: {e}"),
            format!("check by hand with `kubectl auth can-i --list -n {ns}`"),
        );
    }
    let missing: Vec<&Need> = answers
        .iter()
        .filter(|(_, a)| matches!(a, Ok(false)))
        .map(|(n, _)| n)
        .collect();
    if missing.is_empty() {
        return Check::pass(
            "permissions",
            format!(
                "all {asked} verbs and resources that backup, upgrade and rollback use are allowed in namespace {ns}"
            ),
        );
    }
    let shown: Vec<String> = missing
        .iter()
        .map(|n| format!("{} ({})", n.shown(), n.why))
        .collect();
    let first = missing[0];
    Check::fail(
        "permissions",
        format!(
            "{} of {asked} missing in namespace {ns}: {}",
            missing.len(),
            shown.join(", ")
        ),
        format!(
            "ask your cluster admin to grant them (docs/rbac.yaml has the read-only part); check one with `kubectl auth can-i {} {}{} -n {ns}`",
            first.verb,
            first.resource,
            first
                .subresource
                .map(|s| format!("/{s}"))
                .unwrap_or_default()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Status;

    #[test]
    fn kinds_become_resources() {
        assert_eq!(
            resource_of("apps/v1", "Deployment"),
            ("apps".into(), "deployments".into())
        );
        assert_eq!(
            resource_of("networking.k8s.io/v1", "NetworkPolicy"),
            ("networking.k8s.io".into(), "networkpolicies".into())
        );
        assert_eq!(resource_of("v1", "Service"), ("".into(), "services".into()));
        assert_eq!(
            resource_of("v1", "ConfigMap"),
            ("".into(), "configmaps".into())
        );
        assert_eq!(
            resource_of("policy/v1", "PodDisruptionBudget").1,
            "poddisruptionbudgets"
        );
        let kinds = BTreeSet::from([(
            "rbac.authorization.k8s.io/v1".to_string(),
            "ClusterRole".to_string(),
        )]);
        let needs = helm_needs(&kinds);
        assert_eq!(needs.len(), 6);
        assert!(!needs[0].namespaced);
    }

    #[test]
    fn missing_permissions_are_listed() {
        let needs = own_needs("secrets");
        let n = needs.len();
        let answers: Vec<_> = needs
            .into_iter()
            .map(|x| {
                let allowed = !(x.verb == "delete" && x.resource == "pods");
                (x, Ok(allowed))
            })
            .collect();
        let c = verdict("kleidia", n, answers);
        assert_eq!(c.status, Status::Fail);
        assert!(c.detail.contains("1 of"), "{}", c.detail);
        assert!(
            c.detail.contains("delete pods (upgrade rolls"),
            "{}",
            c.detail
        );
        assert!(
            c.hint
                .unwrap()
                .contains("kubectl auth can-i delete pods -n kleidia")
        );
        let c = verdict(
            "kleidia",
            1,
            vec![(Need::new("get", "", "pods", "x"), Ok(true))],
        );
        assert_eq!(c.status, Status::Pass);
    }
}
