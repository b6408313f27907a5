//! The namespace's pods as discovery sees them, which pods a workload
//! selects, and which one pod to talk to.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use serde::Serialize;

use super::TopologyError;
use super::manifest::ManifestObject;
use super::selector::Selector;
use super::workloads::{ContainerSpec, Workload, WorkloadKind, workloads};

/// What discovery, checks and gates need from a pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PodInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub ready: bool,
    pub phase: String,
    pub containers: Vec<String>,
    /// The node it runs on.
    pub node: Option<String>,
    /// Its controller (`ReplicaSet x`, `StatefulSet y`).
    pub owner: Option<Owner>,
    /// Each container's state, as the kubelet reports it.
    pub statuses: Vec<ContainerState>,
    /// CPU (millicores) and memory (bytes) its containers request.
    pub requests: Resources,
    /// The images its containers run, by container.
    pub images: BTreeMap<String, String>,
}

/// A pod's controlling owner reference.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Owner {
    pub kind: String,
    pub name: String,
}

/// One container's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerState {
    pub name: String,
    pub ready: bool,
    pub restart_count: i32,
    /// `CrashLoopBackOff`, `ImagePullBackOff`, `ErrImagePull`, ...
    pub waiting_reason: Option<String>,
    pub waiting_message: Option<String>,
    /// When the previous run ended (RFC 3339), if it did.
    pub last_finished_at: Option<String>,
    pub last_reason: Option<String>,
    pub last_exit_code: Option<i32>,
}

/// CPU in millicores and memory in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Resources {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
}

impl std::ops::Add for Resources {
    type Output = Resources;
    fn add(self, o: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_add(o.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_add(o.memory_bytes),
        }
    }
}

impl PodInfo {
    /// The label StatefulSets and DaemonSets put on their pods.
    pub fn revision(&self) -> Option<&str> {
        self.labels
            .get("controller-revision-hash")
            .map(String::as_str)
    }

    pub fn from_pod(p: &Pod) -> Self {
        let status = p.status.as_ref();
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let spec = p.spec.as_ref();
        let statuses = status
            .and_then(|s| s.container_statuses.as_ref())
            .map(|cs| {
                cs.iter()
                    .map(|c| {
                        let waiting = c.state.as_ref().and_then(|s| s.waiting.as_ref());
                        let last = c.last_state.as_ref().and_then(|s| s.terminated.as_ref());
                        ContainerState {
                            name: c.name.clone(),
                            ready: c.ready,
                            restart_count: c.restart_count,
                            waiting_reason: waiting.and_then(|w| w.reason.clone()),
                            waiting_message: waiting.and_then(|w| w.message.clone()),
                            last_finished_at: last
                                .and_then(|t| t.finished_at.as_ref())
                                .map(|t| t.0.to_string()),
                            last_reason: last.and_then(|t| t.reason.clone()),
                            last_exit_code: last.map(|t| t.exit_code),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let requests = spec
            .map(|s| {
                s.containers
                    .iter()
                    .filter_map(|c| c.resources.as_ref()?.requests.as_ref())
                    .map(|r| Resources {
                        cpu_millis: r
                            .get("cpu")
                            .and_then(|q| super::quantity::cpu_millis(&q.0))
                            .unwrap_or(0),
                        memory_bytes: r
                            .get("memory")
                            .and_then(|q| super::quantity::bytes(&q.0))
                            .unwrap_or(0),
                    })
                    .fold(Resources::default(), |a, b| a + b)
            })
            .unwrap_or_default();
        Self {
            name: p.metadata.name.clone().unwrap_or_default(),
            labels: p.metadata.labels.clone().unwrap_or_default(),
            ready,
            phase: p
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_default(),
            containers: spec
                .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
                .unwrap_or_default(),
            node: spec.and_then(|s| s.node_name.clone()),
            owner: p
                .metadata
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.controller == Some(true))
                .map(|o| Owner {
                    kind: o.kind.clone(),
                    name: o.name.clone(),
                }),
            statuses,
            requests,
            images: spec
                .map(|s| {
                    s.containers
                        .iter()
                        .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// A workload of a release and the pods it selects now (for readiness
/// gates in preflight and upgrade).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkloadPods {
    pub workload: Workload,
    pub pods: Vec<PodInfo>,
}

impl WorkloadPods {
    pub fn ready(&self) -> usize {
        self.pods.iter().filter(|p| p.ready).count()
    }
}

/// Every workload in a release's manifest with its current pods.
pub fn release_workloads(objects: &[ManifestObject], pods: &[PodInfo]) -> Vec<WorkloadPods> {
    workloads(objects)
        .into_iter()
        .map(|w| {
            let pods = select_pods(&w.selector, pods)
                .into_iter()
                .cloned()
                .collect();
            WorkloadPods { workload: w, pods }
        })
        .collect()
}

/// The pods a selector picks, ready ones first, then by name.
pub fn select_pods<'a>(selector: &Selector, pods: &'a [PodInfo]) -> Vec<&'a PodInfo> {
    let mut out: Vec<_> = pods
        .iter()
        .filter(|p| selector.matches(&p.labels))
        .collect();
    out.sort_by(|a, b| b.ready.cmp(&a.ready).then_with(|| a.name.cmp(&b.name)));
    out
}

/// The container scoring highest (above 0) in `ws`, with its workload;
/// between equal scores the workload whose name sorts first wins.
pub(super) fn best_container(
    ws: &[Workload],
    score: impl Fn(&Workload, &ContainerSpec) -> u8,
) -> Option<(&Workload, &ContainerSpec)> {
    let score = &score;
    ws.iter()
        .flat_map(|w| w.containers.iter().map(move |c| (score(w, c), w, c)))
        .filter(|(s, _, _)| *s > 0)
        .max_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.name.cmp(&a.1.name)))
        .map(|(_, w, c)| (w, c))
}

/// The one pod of `workload` to talk to: a StatefulSet's ordinal 0, a
/// CloudNativePG cluster's primary, else the first ready pod.
pub(super) fn pick_pod(
    workload: &Workload,
    pods: &[PodInfo],
    namespace: &str,
) -> Result<String, TopologyError> {
    let matching = select_pods(&workload.selector, pods);
    let chosen = match workload.kind {
        WorkloadKind::StatefulSet => {
            let zero = format!("{}-0", workload.name);
            matching
                .iter()
                .find(|p| p.name == zero)
                .or_else(|| matching.first())
        }
        WorkloadKind::CnpgCluster => matching
            .iter()
            .find(|p| {
                p.labels.get("cnpg.io/instanceRole").map(String::as_str) == Some("primary")
                    || p.labels.get("role").map(String::as_str) == Some("primary")
            })
            .or_else(|| matching.first()),
        _ => matching.first(),
    };
    chosen
        .map(|p| p.name.clone())
        .ok_or_else(|| TopologyError::NoPods {
            namespace: namespace.to_string(),
            workload: workload.display(),
            selector: workload.selector.to_string(),
        })
}

pub(super) fn pod_from_pins(
    pod: Option<&str>,
    selector: Option<&str>,
    pods: &[PodInfo],
    namespace: &str,
    what: &'static str,
    pin_prefix: &'static str,
) -> Result<Option<String>, TopologyError> {
    if let Some(pod) = pod {
        if !pods.iter().any(|p| p.name == pod) {
            return Err(TopologyError::PinnedPodMissing {
                what,
                pod: pod.to_string(),
                namespace: namespace.to_string(),
                found: names(pods.iter().map(|p| p.name.clone())),
                pin: if pin_prefix == "postgres" {
                    "postgres.pod"
                } else {
                    "openbao.pod"
                },
            });
        }
        return Ok(Some(pod.to_string()));
    }
    if let Some(text) = selector {
        let pin = if pin_prefix == "postgres" {
            "postgres.selector"
        } else {
            "openbao.selector"
        };
        let sel = Selector::parse(text).ok_or_else(|| TopologyError::BadSelector {
            selector: text.to_string(),
            pin,
        })?;
        let matching = select_pods(&sel, pods);
        let chosen = matching
            .iter()
            .find(|p| p.labels.get("cnpg.io/instanceRole").map(String::as_str) == Some("primary"))
            .or_else(|| matching.first())
            .ok_or_else(|| TopologyError::NoPods {
                namespace: namespace.to_string(),
                workload: format!("the pinned {pin}"),
                selector: sel.to_string(),
            })?;
        return Ok(Some(chosen.name.clone()));
    }
    Ok(None)
}

pub(super) fn names(it: impl Iterator<Item = String>) -> String {
    let v: Vec<String> = it.collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

pub(super) fn describe_workloads(ws: &[Workload]) -> String {
    names(ws.iter().map(|w| {
        let images: Vec<_> = w.containers.iter().map(|c| c.image.as_str()).collect();
        format!("{} (images: {})", w.display(), images.join(", "))
    }))
}
