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
    /// The listener on that port speaks TLS (see [`listener_tls`]).
    pub tls: bool,
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
                tls: listener_tls(objects, None, &Default::default(), 8200),
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
    let api_port = container
        .ports
        .iter()
        .find(|(n, _)| matches!(n.as_deref(), Some("http") | Some("api") | Some("https")))
        .or_else(|| container.ports.iter().find(|(_, p)| *p == 8200));
    let port = api_port.map(|(_, p)| *p).unwrap_or(8200);
    let port_name = api_port.and_then(|(n, _)| n.as_deref());
    Ok(OpenbaoTarget {
        workload: workload.display(),
        pod,
        container: pins
            .container
            .clone()
            .unwrap_or_else(|| container.name.clone()),
        port,
        tls: listener_tls(objects, port_name, &container.env, port),
    })
}

/// Whether OpenBao's API listener on `port` speaks TLS. OpenBao's own
/// configuration decides where the release renders one (a `listener "tcp"`
/// block for that port: TLS unless `tls_disable` is true, as OpenBao
/// defaults); else a port named `https` or a `BAO_ADDR` / `VAULT_ADDR`
/// of `https://...` in the container says so.
pub fn listener_tls(
    objects: &[ManifestObject],
    port_name: Option<&str>,
    env: &std::collections::BTreeMap<String, String>,
    port: u16,
) -> bool {
    let mut texts = Vec::new();
    for o in objects {
        collect_config_texts(&o.body, &mut texts);
    }
    if let Some(tls) = texts.iter().find_map(|t| tcp_listener_tls(t, port)) {
        return tls;
    }
    port_name == Some("https")
        || ["BAO_ADDR", "VAULT_ADDR"]
            .iter()
            .any(|k| env.get(*k).is_some_and(|v| v.starts_with("https://")))
}

/// Every string in a rendered object that holds a `listener` block
/// (ConfigMap data, `BAO_LOCAL_CONFIG`-style env values).
fn collect_config_texts<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
    match v {
        serde_json::Value::String(s) if s.contains("listener") => out.push(s),
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_config_texts(x, out)),
        serde_json::Value::Object(m) => m.values().for_each(|x| collect_config_texts(x, out)),
        _ => {}
    }
}

/// In HCL `text`, the `listener "tcp"` block serving `port` (its
/// `address`, 8200 when none): whether it speaks TLS.
fn tcp_listener_tls(text: &str, port: u16) -> Option<bool> {
    let mut rest = text;
    while let Some(at) = rest.find("listener") {
        let after = &rest[at + "listener".len()..];
        let Some(open) = after.find('{') else { break };
        let head = after[..open].trim();
        let body = block_body(&after[open + 1..]);
        rest = &after[open + 1 + body.len()..];
        if head.trim_matches('"') != "tcp" {
            continue;
        }
        let field = |key: &str| {
            body.lines().find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == key).then(|| v.trim().trim_matches('"').to_ascii_lowercase())
            })
        };
        let serves = match field("address") {
            Some(addr) => addr
                .rsplit(':')
                .next()
                .and_then(|p| p.parse::<u16>().ok())
                .is_some_and(|p| p == port),
            None => port == 8200,
        };
        if !serves {
            continue;
        }
        let disabled = field("tls_disable").is_some_and(|v| matches!(v.as_str(), "true" | "1"));
        return Some(!disabled);
    }
    None
}

/// The text of a `{ ... }` block whose opening brace was just consumed,
/// up to its matching closing brace.
fn block_body(text: &str) -> &str {
    let mut depth = 1usize;
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return &text[..i];
                }
            }
            _ => {}
        }
    }
    text
}
