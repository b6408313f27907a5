//! Resource headroom: for each workload the upgrade will roll, the extra
//! pods its strategy creates (a Deployment's `maxSurge`; a StatefulSet
//! replaces pods in place and needs only what its requests grow by) fit in
//! some node's allocatable CPU and memory minus what the pods already on it
//! request, as the scheduler counts. Components roll one after another, so
//! each component's extra pods are placed together, on the free room as it
//! is now.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::ListParams;
use serde_json::Value;

use super::{Check, Context};
use crate::procedure::plan::UpgradePlan;
use crate::topology::quantity::{bytes, cpu_millis, show_bytes, show_cpu};
use crate::topology::{Component, ManifestObject, Resources};

/// One schedulable node: what it offers and what is requested on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRoom {
    pub name: String,
    pub allocatable: Resources,
    pub requested: Resources,
}

impl NodeRoom {
    pub fn free(&self) -> Resources {
        Resources {
            cpu_millis: self
                .allocatable
                .cpu_millis
                .saturating_sub(self.requested.cpu_millis),
            memory_bytes: self
                .allocatable
                .memory_bytes
                .saturating_sub(self.requested.memory_bytes),
        }
    }
}

/// The extra pods one workload's roll creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roll {
    pub component: Component,
    pub workload: String,
    pub extra_pods: u32,
    pub per_pod: Resources,
}

/// The schedulable nodes with what is requested on each: one list of
/// nodes, one of the pods of every namespace.
pub async fn nodes(cx: &Context<'_>) -> Result<Vec<NodeRoom>, String> {
    let client = cx.target.client.clone();
    let api = cx.target.api();
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client);
    let all = ListParams::default();
    let running = ListParams::default().fields("status.phase!=Succeeded,status.phase!=Failed");
    let (n, p) = tokio::join!(nodes.list(&all), pods.list(&running));
    let err = |e: kube::Error, what: &str, res: &str| {
        crate::cluster::ClusterError::from_kube(e, &api, what, res).to_string()
    };
    let n = n.map_err(|e| err(e, "list nodes", "nodes"))?;
    let p = p.map_err(|e| err(e, "list pods in all namespaces", "pods"))?;
    let mut requested: BTreeMap<String, Resources> = BTreeMap::new();
    for pod in &p.items {
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded") | Some("Failed")) {
            continue;
        }
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            continue;
        };
        let spec = serde_json::to_value(pod.spec.as_ref()).unwrap_or_default();
        let r = pod_requests(&spec);
        let e = requested.entry(node).or_default();
        *e = *e + r;
    }
    Ok(n.items
        .iter()
        .filter(|node| {
            let spec = node.spec.as_ref();
            let ready = node
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_none_or(|cs| {
                    cs.iter()
                        .find(|c| c.type_ == "Ready")
                        .is_none_or(|c| c.status == "True")
                });
            ready && !spec.and_then(|s| s.unschedulable).unwrap_or(false)
        })
        .map(|node| {
            let name = node.metadata.name.clone().unwrap_or_default();
            let alloc = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
            let q = |k: &str| alloc.and_then(|a| a.get(k)).map(|q| q.0.clone());
            NodeRoom {
                allocatable: Resources {
                    cpu_millis: q("cpu").and_then(|v| cpu_millis(&v)).unwrap_or(0),
                    memory_bytes: q("memory").and_then(|v| bytes(&v)).unwrap_or(0),
                },
                requested: requested.get(&name).copied().unwrap_or_default(),
                name,
            }
        })
        .collect())
}

/// What a pod spec requests, as the scheduler counts it: the sum of its
/// containers, or its largest init container if that is more.
pub fn pod_requests(spec: &Value) -> Resources {
    let of = |c: &Value| Resources {
        cpu_millis: c
            .pointer("/resources/requests/cpu")
            .and_then(quantity_text)
            .and_then(|q| cpu_millis(&q))
            .unwrap_or(0),
        memory_bytes: c
            .pointer("/resources/requests/memory")
            .and_then(quantity_text)
            .and_then(|q| bytes(&q))
            .unwrap_or(0),
    };
    let list = |k: &str| {
        spec.get(k)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let sum = list("containers")
        .iter()
        .map(of)
        .fold(Resources::default(), |a, b| a + b);
    let init = list("initContainers").iter().map(of).fold(
        Resources::default(),
        |a: Resources, b: Resources| Resources {
            cpu_millis: a.cpu_millis.max(b.cpu_millis),
            memory_bytes: a.memory_bytes.max(b.memory_bytes),
        },
    );
    Resources {
        cpu_millis: sum.cpu_millis.max(init.cpu_millis),
        memory_bytes: sum.memory_bytes.max(init.memory_bytes),
    }
}

fn quantity_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// How many pods a rolling Deployment may add (`maxSurge`: a number, or a
/// percentage of the replicas rounded up; 25% by default); `Recreate`
/// adds none.
pub fn surge(body: &Value) -> u32 {
    let replicas = body
        .pointer("/spec/replicas")
        .and_then(Value::as_u64)
        .unwrap_or(1) as u32;
    if body.pointer("/spec/strategy/type").and_then(Value::as_str) == Some("Recreate") {
        return 0;
    }
    match body.pointer("/spec/strategy/rollingUpdate/maxSurge") {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0) as u32,
        Some(Value::String(s)) => percent_of(s, replicas),
        _ => percent_of("25%", replicas),
    }
}

fn percent_of(s: &str, replicas: u32) -> u32 {
    match s
        .strip_suffix('%')
        .and_then(|p| p.trim().parse::<u32>().ok())
    {
        Some(p) => (p * replicas).div_ceil(100),
        None => s.trim().parse().unwrap_or(0),
    }
}

fn template_requests(body: &Value) -> Resources {
    body.pointer("/spec/template/spec")
        .map(pod_requests)
        .unwrap_or_default()
}

/// The rolls of one release: `current` objects as deployed, `target` the
/// rendered ones when the charts are known (then only what changes rolls).
pub fn rolls(
    component: Component,
    current: &[ManifestObject],
    target: Option<&[ManifestObject]>,
) -> Vec<Roll> {
    let find = |objs: &[ManifestObject], kind: &str, name: &str| {
        objs.iter()
            .find(|o| o.kind == kind && o.name == name)
            .map(|o| o.body.clone())
    };
    let mut out = Vec::new();
    let objects = target.unwrap_or(current);
    for o in objects {
        let before = find(current, &o.kind, &o.name);
        let changes = match (&before, target) {
            (_, None) => true,
            (None, Some(_)) => true,
            (Some(b), Some(_)) => b.pointer("/spec/template") != o.body.pointer("/spec/template"),
        };
        if !changes {
            continue;
        }
        let per_pod = template_requests(&o.body);
        let roll = match (o.kind.as_str(), &before) {
            ("Deployment", Some(_)) => Roll {
                component,
                workload: format!("Deployment {}", o.name),
                extra_pods: surge(&o.body),
                per_pod,
            },
            ("Deployment" | "StatefulSet", None) => Roll {
                component,
                workload: format!("{} {} (new)", o.kind, o.name),
                extra_pods: o
                    .body
                    .pointer("/spec/replicas")
                    .and_then(Value::as_u64)
                    .unwrap_or(1) as u32,
                per_pod,
            },
            ("StatefulSet", Some(b)) => {
                let old = template_requests(b);
                let growth = Resources {
                    cpu_millis: per_pod.cpu_millis.saturating_sub(old.cpu_millis),
                    memory_bytes: per_pod.memory_bytes.saturating_sub(old.memory_bytes),
                };
                Roll {
                    component,
                    workload: format!("StatefulSet {} (replaced in place)", o.name),
                    extra_pods: u32::from(growth != Resources::default()),
                    per_pod: growth,
                }
            }
            _ => continue,
        };
        out.push(roll);
    }
    out
}

/// Places each component's extra pods on the nodes' free room (largest
/// first, on the node with the most free CPU that fits). Returns, for the
/// pods that fit nowhere, `(workload, needs)`.
pub fn place(nodes: &[NodeRoom], rolls: &[Roll]) -> Vec<(String, Resources)> {
    let mut short = Vec::new();
    for component in Component::ALL {
        let mut free: Vec<Resources> = nodes.iter().map(NodeRoom::free).collect();
        let mut pods: Vec<&Roll> = rolls
            .iter()
            .filter(|r| r.component == component && r.extra_pods > 0)
            .flat_map(|r| std::iter::repeat_n(r, r.extra_pods as usize))
            .collect();
        pods.sort_by_key(|r| std::cmp::Reverse((r.per_pod.cpu_millis, r.per_pod.memory_bytes)));
        for r in pods {
            let need = r.per_pod;
            let fits = free
                .iter_mut()
                .filter(|f| f.cpu_millis >= need.cpu_millis && f.memory_bytes >= need.memory_bytes)
                .max_by_key(|f| f.cpu_millis);
            match fits {
                Some(f) => {
                    f.cpu_millis -= need.cpu_millis;
                    f.memory_bytes -= need.memory_bytes;
                }
                None => short.push((r.workload.clone(), need)),
            }
        }
    }
    short
}

fn show(r: Resources) -> String {
    const GI: u64 = 1 << 30;
    let memory = if r.memory_bytes >= GI && !r.memory_bytes.is_multiple_of(GI) {
        format!("{:.1}Gi", r.memory_bytes as f64 / GI as f64)
    } else {
        show_bytes(r.memory_bytes)
    };
    format!("{} CPU, {memory}", show_cpu(r.cpu_millis))
}

pub fn checks(
    cx: &Context<'_>,
    nodes: &Result<Vec<NodeRoom>, String>,
    plan: Option<&UpgradePlan>,
) -> Vec<Check> {
    let ns = &cx.survey.namespace;
    let nodes = match nodes {
        Ok(n) => n,
        Err(e) => {
            return vec![Check::warn(
                "headroom",
                format!("the nodes' room could not be read: {e}"),
                "check by hand with `kubectl describe nodes` (Allocated resources), or grant list on nodes and pods",
            )];
        }
    };
    let mut all = Vec::new();
    for r in cx.survey.releases() {
        let Ok(current) = &r.objects else { continue };
        let target = plan.and_then(|p| {
            p.components
                .iter()
                .find(|c| c.component == r.component)
                .map(|c| c.objects.as_slice())
        });
        all.extend(rolls(r.component, current, target));
    }
    vec![verdict(ns, nodes, &all)]
}

pub fn verdict(ns: &str, nodes: &[NodeRoom], rolls: &[Roll]) -> Check {
    if nodes.is_empty() {
        return Check::fail(
            "headroom",
            "no schedulable node is Ready",
            "see `kubectl get nodes`",
        );
    }
    let roomiest = nodes
        .iter()
        .max_by_key(|n| n.free().cpu_millis)
        .expect("nodes is not empty");
    let room = format!(
        "{} has {} free of {}",
        roomiest.name,
        show(roomiest.free()),
        show(roomiest.allocatable)
    );
    let extra: Vec<String> = rolls
        .iter()
        .filter(|r| r.extra_pods > 0)
        .map(|r| format!("{} +{} ({})", r.workload, r.extra_pods, show(r.per_pod)))
        .collect();
    if extra.is_empty() {
        return Check::pass(
            "headroom",
            format!("the upgrade creates no extra pods; {room}"),
        );
    }
    let short = place(nodes, rolls);
    if let Some((workload, need)) = short.first() {
        let lacking = [
            (need.cpu_millis > roomiest.free().cpu_millis, "CPU"),
            (need.memory_bytes > roomiest.free().memory_bytes, "memory"),
        ]
        .iter()
        .filter(|(short, _)| *short)
        .map(|(_, what)| *what)
        .collect::<Vec<_>>()
        .join(" and ");
        return Check::fail(
            "headroom",
            format!(
                "no node has room for the extra pod of {workload} (needs {}): {room}{}",
                show(*need),
                if lacking.is_empty() {
                    String::new()
                } else {
                    format!(" (too little {lacking})")
                }
            ),
            format!(
                "free room or add a node first (`kubectl describe node {}` lists what is requested), or let the workload replace pods in place (rollingUpdate maxSurge 0, maxUnavailable 1) in its chart's values; the new pod would stay Pending and the upgrade would time out (namespace {ns})",
                roomiest.name
            ),
        );
    }
    Check::pass(
        "headroom",
        format!("room for every extra pod: {}; {room}", extra.join(", ")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Status;
    use serde_json::json;

    fn res(cpu: u64, mib: u64) -> Resources {
        Resources {
            cpu_millis: cpu,
            memory_bytes: mib << 20,
        }
    }

    #[test]
    fn requests_count_containers_or_the_largest_init_container() {
        let spec = json!({
            "initContainers": [{"resources": {"requests": {"cpu": "300m", "memory": "64Mi"}}}],
            "containers": [
                {"resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}},
                {"resources": {"requests": {"cpu": "0.05", "memory": "64Mi"}}},
                {"name": "no-requests"}
            ]
        });
        assert_eq!(pod_requests(&spec), res(300, 192));
    }

    #[test]
    fn surge_follows_the_strategy() {
        let d = |s: Value, replicas: u64| json!({"spec": {"replicas": replicas, "strategy": s}});
        assert_eq!(
            surge(&d(
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}),
                1
            )),
            1
        );
        assert_eq!(
            surge(&d(
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "50%"}}),
                3
            )),
            2
        );
        assert_eq!(surge(&d(json!({}), 4)), 1);
        assert_eq!(surge(&d(json!({}), 5)), 2);
        assert_eq!(surge(&d(json!({"type": "Recreate"}), 3)), 0);
        assert_eq!(surge(&d(json!({"rollingUpdate": {"maxSurge": 0}}), 3)), 0);
    }

    #[test]
    fn extra_pods_must_fit_on_some_node() {
        let node = NodeRoom {
            name: "n1".into(),
            allocatable: res(550, 1024),
            requested: res(500, 512),
        };
        let roll = |cpu| Roll {
            component: Component::Services,
            workload: "Deployment api".into(),
            extra_pods: 1,
            per_pod: res(cpu, 128),
        };
        assert_eq!(node.free(), res(50, 512));
        assert!(place(std::slice::from_ref(&node), &[roll(50)]).is_empty());
        assert_eq!(place(std::slice::from_ref(&node), &[roll(100)]).len(), 1);
        // Two pods of one component share the room; another component's
        // roll comes later and finds it again.
        let mut two = roll(30);
        two.extra_pods = 2;
        assert_eq!(place(std::slice::from_ref(&node), &[two.clone()]).len(), 1);
        let mut other = roll(30);
        other.component = Component::Platform;
        assert!(place(std::slice::from_ref(&node), &[roll(30), other]).is_empty());

        let c = verdict("ns", std::slice::from_ref(&node), &[roll(100)]);
        assert_eq!(c.status, Status::Fail);
        assert!(c.detail.contains("needs 100m CPU, 128Mi"), "{}", c.detail);
        assert!(
            c.detail
                .contains("n1 has 50m CPU, 512Mi free of 550m CPU, 1Gi"),
            "{}",
            c.detail
        );
        assert!(c.detail.contains("too little CPU"), "{}", c.detail);
        let c = verdict("ns", &[node], &[roll(50)]);
        assert_eq!(c.status, Status::Pass);
    }

    #[test]
    fn only_changed_templates_roll_when_the_charts_are_known() {
        let dep = |image: &str| ManifestObject {
            kind: "Deployment".into(),
            api_version: "apps/v1".into(),
            name: "api".into(),
            body: json!({"spec": {"replicas": 1, "strategy": {"rollingUpdate": {"maxSurge": 1}}, "template": {"spec": {"containers": [{"image": image, "resources": {"requests": {"cpu": "100m"}}}]}}}}),
        };
        let now = [dep("a:1")];
        assert_eq!(rolls(Component::Services, &now, None).len(), 1);
        assert!(rolls(Component::Services, &now, Some(&[dep("a:1")])).is_empty());
        let r = rolls(Component::Services, &now, Some(&[dep("a:2")]));
        assert_eq!(r[0].extra_pods, 1);
        assert_eq!(r[0].per_pod.cpu_millis, 100);
    }
}
