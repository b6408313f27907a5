//! Where OpenBao runs in the platform release.

use serde::Serialize;

use super::TopologyError;
use super::manifest::ManifestObject;
use super::pods::{PodInfo, best_container, describe_workloads, pick_pod, pod_from_pins};
use super::workloads::{ContainerSpec, Workload, WorkloadKind, workloads};
use crate::config::OpenbaoPins;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
/// Where OpenBao runs.
pub struct OpenbaoTarget {
    pub workload: String,
    pub pod: String,
    pub container: String,
    /// The API port (8200 unless the container declares another).
    pub port: u16,
}

fn openbao_score(w: &Workload, c: &ContainerSpec) -> u8 {
    let image = c.image_name().to_ascii_lowercase();
    let label = w
        .template_labels
        .get("app.kubernetes.io/name")
        .map(|s| s.to_ascii_lowercase());
    let by_image = matches!(image.as_str(), "openbao" | "vault" | "bao");
    let by_label = matches!(label.as_deref(), Some("openbao") | Some("vault"));
    let base = match (by_image, by_label) {
        (true, true) => 90,
        (true, false) => 80,
        (false, true) if c.name.contains("bao") || c.name.contains("vault") => 70,
        (false, true) => 40,
        _ => 0,
    };
    // The server is a StatefulSet; the agent injector is a Deployment.
    if base > 0 && w.kind == WorkloadKind::StatefulSet {
        base + 5
    } else {
        base
    }
}

/// Finds OpenBao in the platform release.
pub fn discover_openbao(
    release: &str,
    objects: &[ManifestObject],
    pods: &[PodInfo],
    namespace: &str,
    pins: &OpenbaoPins,
) -> Result<OpenbaoTarget, TopologyError> {
    let ws = workloads(objects);
    let best = best_container(&ws, openbao_score);
    let pinned_pod = pod_from_pins(
        pins.pod.as_deref(),
        pins.selector.as_deref(),
        pods,
        namespace,
        "OpenBao",
        "openbao",
    )?;
    let Some((workload, container)) = best else {
        if let Some(pod) = pinned_pod {
            return Ok(OpenbaoTarget {
                workload: "pinned".into(),
                pod,
                container: pins.container.clone().unwrap_or_else(|| "openbao".into()),
                port: 8200,
            });
        }
        return Err(TopologyError::NoWorkload {
            release: release.to_string(),
            what: "OpenBao",
            looked_for: "an openbao or vault image, or label app.kubernetes.io/name=openbao",
            found: describe_workloads(&ws),
            pin_hint: "openbao.pod or openbao.selector",
        });
    };
    let pod = pinned_pod.map_or_else(|| pick_pod(workload, pods, namespace), Ok)?;
    let port = container
        .ports
        .iter()
        .find(|(n, _)| matches!(n.as_deref(), Some("http") | Some("api") | Some("https")))
        .or_else(|| container.ports.iter().find(|(_, p)| *p == 8200))
        .map(|(_, p)| *p)
        .unwrap_or(8200);
    Ok(OpenbaoTarget {
        workload: workload.display(),
        pod,
        container: pins
            .container
            .clone()
            .unwrap_or_else(|| container.name.clone()),
        port,
    })
}
