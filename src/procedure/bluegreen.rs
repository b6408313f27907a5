//! Blue-green for the services release: where its NodePorts are set in the
//! chart's values, which ports the cluster has already allocated, and the
//! ports the green release gets (asked for, or chosen free).
//!
//! NodePorts are cluster-wide: a port is free only when no Service in any
//! namespace holds it, so the allocated ones are listed across namespaces
//! (falling back to the namespace when listing all is not allowed, and
//! saying so).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::ListParams;
use serde::Serialize;
use serde_json::Value;

use crate::cluster::{ApiEndpoint, ClusterError};

/// The default NodePort range of a Kubernetes API server.
pub const NODE_PORT_RANGE: std::ops::RangeInclusive<u16> = 30000..=32767;
/// How far above blue's port a chosen green port starts (`30080` ->
/// `30180`), so the pairing is easy to see.
const GREEN_OFFSET: u16 = 100;

/// A NodePort setting in the chart's values (`backend.nodePort`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortSlot {
    /// Dotted values path, as for `--set`.
    pub path: String,
    /// `backend`, `frontend`, or the path's first key.
    pub role: String,
    /// What blue uses there (its values, else the chart default).
    pub blue: Option<u16>,
}

/// A port chosen for green.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GreenPort {
    pub path: String,
    pub role: String,
    pub blue: Option<u16>,
    pub green: u16,
}

impl GreenPort {
    /// `backend.nodePort=30180`, for helm's `--set`.
    pub fn set_arg(&self) -> String {
        format!("{}={}", self.path, self.green)
    }
}

/// The NodePort settings in `defaults` (the chart's values.yaml) with
/// blue's values on top, in path order.
pub fn port_slots(defaults: &Value, blue_values: &Value) -> Vec<PortSlot> {
    let mut merged = defaults.clone();
    if !blue_values.is_null() {
        merge(&mut merged, blue_values);
    }
    let mut out = Vec::new();
    walk(&merged, &mut Vec::new(), &mut out);
    out
}

fn merge(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

fn walk(v: &Value, path: &mut Vec<String>, out: &mut Vec<PortSlot>) {
    let Value::Object(map) = v else { return };
    for (k, child) in map {
        path.push(k.clone());
        if k.eq_ignore_ascii_case("nodePort") && (child.is_number() || child.is_null()) {
            let role = path
                .iter()
                .find(|p| {
                    let p = p.to_ascii_lowercase();
                    p.contains("backend") || p.contains("frontend")
                })
                .map(|p| {
                    if p.to_ascii_lowercase().contains("backend") {
                        "backend".to_string()
                    } else {
                        "frontend".to_string()
                    }
                })
                .unwrap_or_else(|| path[0].clone());
            out.push(PortSlot {
                path: path.join("."),
                role,
                blue: child.as_u64().and_then(|n| u16::try_from(n).ok()),
            });
        } else {
            walk(child, path, out);
        }
        path.pop();
    }
}

/// NodePorts the cluster has allocated, each with the Service holding it
/// (`namespace/name`).
#[derive(Debug, Clone, Default)]
pub struct Allocated {
    pub ports: BTreeMap<u16, String>,
    /// Only the namespace could be listed: ports held elsewhere are unknown.
    pub namespace_only: bool,
}

impl Allocated {
    pub fn from_services(services: &[Service]) -> Self {
        let mut ports = BTreeMap::new();
        for s in services {
            let name = format!(
                "{}/{}",
                s.metadata.namespace.as_deref().unwrap_or_default(),
                s.metadata.name.as_deref().unwrap_or_default()
            );
            for p in s
                .spec
                .as_ref()
                .and_then(|s| s.ports.as_ref())
                .into_iter()
                .flatten()
            {
                if let Some(n) = p.node_port.and_then(|n| u16::try_from(n).ok()) {
                    ports.insert(n, name.clone());
                }
            }
        }
        Allocated {
            ports,
            namespace_only: false,
        }
    }
}

/// Lists the Services of every namespace (or of `namespace` when that is
/// all the credentials may list) and their NodePorts.
pub async fn allocated(
    client: &kube::Client,
    endpoint: &ApiEndpoint,
    namespace: &str,
) -> Result<Allocated, ClusterError> {
    let all: Api<Service> = Api::all(client.clone());
    match all.list(&ListParams::default()).await {
        Ok(list) => Ok(Allocated::from_services(&list.items)),
        Err(kube::Error::Api(e)) if e.code == 403 => {
            let ns: Api<Service> = Api::namespaced(client.clone(), namespace);
            let list = ns.list(&ListParams::default()).await.map_err(|e| {
                ClusterError::from_kube(
                    e,
                    endpoint,
                    &format!("list services in namespace {namespace}"),
                    "services",
                )
            })?;
            let mut a = Allocated::from_services(&list.items);
            a.namespace_only = true;
            Ok(a)
        }
        Err(e) => Err(ClusterError::from_kube(
            e,
            endpoint,
            "list services (all namespaces)",
            "services",
        )),
    }
}

/// Why green's ports cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error("NodePort {port} ({role}) is already allocated to Service {holder}")]
    Taken {
        port: u16,
        role: String,
        holder: String,
    },
    #[error("NodePort {port} is outside the range {}-{}", NODE_PORT_RANGE.start(), NODE_PORT_RANGE.end())]
    OutOfRange { port: u16 },
    #[error("--green-ports gives {given} port(s), but the chart sets {wanted} ({paths})")]
    Count {
        given: usize,
        wanted: usize,
        paths: String,
    },
    #[error("--green-ports gives the same port {0} twice")]
    Duplicate(u16),
    #[error("no free NodePort left in {}-{}", NODE_PORT_RANGE.start(), NODE_PORT_RANGE.end())]
    Exhausted,
}

/// Green's ports: `asked` (in the order backend, frontend, then the other
/// slots) checked against what is allocated, or free ones chosen above
/// blue's.
pub fn choose(
    slots: &[PortSlot],
    allocated: &Allocated,
    asked: Option<&[u16]>,
) -> Result<Vec<GreenPort>, PortError> {
    let mut ordered: Vec<&PortSlot> = slots.iter().collect();
    ordered.sort_by_key(|s| match s.role.as_str() {
        "backend" => 0,
        "frontend" => 1,
        _ => 2,
    });
    let mut out: Vec<GreenPort> = Vec::new();
    if let Some(asked) = asked {
        if asked.len() != ordered.len() {
            return Err(PortError::Count {
                given: asked.len(),
                wanted: ordered.len(),
                paths: ordered
                    .iter()
                    .map(|s| s.path.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        for (slot, &port) in ordered.iter().zip(asked) {
            if !NODE_PORT_RANGE.contains(&port) {
                return Err(PortError::OutOfRange { port });
            }
            if out.iter().any(|g| g.green == port) {
                return Err(PortError::Duplicate(port));
            }
            if let Some(holder) = allocated.ports.get(&port) {
                return Err(PortError::Taken {
                    port,
                    role: slot.role.clone(),
                    holder: holder.clone(),
                });
            }
            out.push(green(slot, port));
        }
        return Ok(out);
    }
    for slot in ordered {
        let start = slot
            .blue
            .map(|b| b.saturating_add(GREEN_OFFSET))
            .filter(|p| NODE_PORT_RANGE.contains(p))
            .unwrap_or(*NODE_PORT_RANGE.start());
        let span = (NODE_PORT_RANGE.end() - NODE_PORT_RANGE.start()) as u32 + 1;
        let first = (start - NODE_PORT_RANGE.start()) as u32;
        let port = (0..span)
            .map(|i| NODE_PORT_RANGE.start() + ((first + i) % span) as u16)
            .find(|p| !allocated.ports.contains_key(p) && !out.iter().any(|g| g.green == *p))
            .ok_or(PortError::Exhausted)?;
        out.push(green(slot, port));
    }
    Ok(out)
}

fn green(slot: &PortSlot, port: u16) -> GreenPort {
    GreenPort {
        path: slot.path.clone(),
        role: slot.role.clone(),
        blue: slot.blue,
        green: port,
    }
}

/// `--green-ports 30180,30181`.
pub fn parse_ports(s: &str) -> Result<Vec<u16>, String> {
    s.split(',')
        .map(|p| {
            p.trim().parse::<u16>().map_err(|_| {
                format!("'{p}' is not a port number (give BACKEND,FRONTEND such as 30180,30181)")
            })
        })
        .collect()
}

/// The chart's own values (`values.yaml`), as JSON.
pub fn chart_values(chart_dir: &std::path::Path) -> Result<Value, super::plan::PlanError> {
    let path = chart_dir.join("values.yaml");
    let bad = |reason: String| super::plan::PlanError::BadChart {
        path: path.display().to_string(),
        reason,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_yaml_ng::from_str::<Value>(&text)
            .map(|v| {
                if v.is_null() {
                    Value::Object(Default::default())
                } else {
                    v
                }
            })
            .map_err(|e| bad(e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Value::Object(Default::default())),
        Err(e) => Err(bad(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn slots() -> Vec<PortSlot> {
        port_slots(
            &json!({"backend": {"port": 8080, "nodePort": 30080},
                    "frontend": {"nodePort": 30081}, "other": {"x": 1}}),
            &json!({"frontend": {"nodePort": 31081}}),
        )
    }

    #[test]
    fn slots_are_found_with_blues_values_on_top() {
        assert_eq!(
            slots(),
            vec![
                PortSlot {
                    path: "backend.nodePort".into(),
                    role: "backend".into(),
                    blue: Some(30080)
                },
                PortSlot {
                    path: "frontend.nodePort".into(),
                    role: "frontend".into(),
                    blue: Some(31081)
                },
            ]
        );
        let nested = port_slots(
            &json!({"web": {"service": {"nodePort": null}}}),
            &Value::Null,
        );
        assert_eq!(
            port_slots(&json!({"backend": {"nodePort": 30080}}), &Value::Null)[0].blue,
            Some(30080),
            "no user values: the chart's defaults"
        );
        assert_eq!(nested[0].path, "web.service.nodePort");
        assert_eq!(nested[0].role, "web");
        assert_eq!(nested[0].blue, None);
    }

    #[test]
    fn free_ports_are_chosen_above_blue_skipping_allocated_ones() {
        let mut a = Allocated::default();
        a.ports.insert(30180, "kleidia/other".into());
        let g = choose(&slots(), &a, None).unwrap();
        assert_eq!(g[0].green, 30181, "30180 is taken");
        assert_eq!(g[1].green, 31181);
        assert_eq!(g[0].set_arg(), "backend.nodePort=30181");
        // Near the top of the range, the search wraps.
        let top = vec![PortSlot {
            path: "backend.nodePort".into(),
            role: "backend".into(),
            blue: Some(32600),
        }];
        let mut a = Allocated::default();
        for p in 32700..=32767 {
            a.ports.insert(p, "x/y".into());
        }
        assert_eq!(choose(&top, &a, None).unwrap()[0].green, 30000);
    }

    #[test]
    fn asked_ports_are_checked() {
        let mut a = Allocated::default();
        a.ports
            .insert(30080, "kleidia/kleidia-services-backend".into());
        let err = choose(&slots(), &a, Some(&[30080, 30091])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "NodePort 30080 (backend) is already allocated to Service kleidia/kleidia-services-backend"
        );
        assert!(matches!(
            choose(&slots(), &a, Some(&[30090])),
            Err(PortError::Count {
                given: 1,
                wanted: 2,
                ..
            })
        ));
        assert_eq!(
            choose(&slots(), &a, Some(&[30090, 30090])),
            Err(PortError::Duplicate(30090))
        );
        assert_eq!(
            choose(&slots(), &a, Some(&[80, 30090])),
            Err(PortError::OutOfRange { port: 80 })
        );
        let ok = choose(&slots(), &a, Some(&[30090, 30091])).unwrap();
        assert_eq!((ok[0].green, ok[1].green), (30090, 30091));
        assert_eq!(parse_ports("30090, 30091").unwrap(), vec![30090, 30091]);
        assert!(parse_ports("30090,x").is_err());
    }
}
