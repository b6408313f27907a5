//! NodePort allocation as a real API server does it: a `NodePort` or
//! `LoadBalancer` Service gets a free port from 30000-32767 for every port
//! without one, a port another Service holds is refused (422), updates
//! keep what was allocated, and a port is free again once its Service is
//! gone (the ports in use are read from the stored Services, so nothing
//! can leak).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::error::ApiError;
use crate::registry::{self, ResourceType};

/// The default `--service-node-port-range`.
pub const FIRST: u16 = 30000;
pub const LAST: u16 = 32767;

/// Whether `svc` gets node ports: `NodePort`, or `LoadBalancer` unless
/// `allocateLoadBalancerNodePorts: false`.
fn wants_node_ports(svc: &Value) -> bool {
    match svc.pointer("/spec/type").and_then(Value::as_str) {
        Some("NodePort") => true,
        Some("LoadBalancer") => {
            svc.pointer("/spec/allocateLoadBalancerNodePorts") != Some(&json!(false))
        }
        _ => false,
    }
}

fn node_port(p: &Value) -> u16 {
    p.get("nodePort")
        .and_then(Value::as_u64)
        .and_then(|n| u16::try_from(n).ok())
        .unwrap_or(0)
}

fn port_name(p: &Value) -> &str {
    p.get("name").and_then(Value::as_str).unwrap_or("")
}

/// The node ports `svc` holds.
pub(super) fn held_by(svc: &Value) -> impl Iterator<Item = u16> + '_ {
    svc.pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(node_port)
        .filter(|p| *p != 0)
}

/// Fills in and checks the node ports of a Service being created (`old`
/// `None`) or replaced. `used` holds the ports of every other Service.
pub(super) fn assign(
    rt: &ResourceType,
    name: &str,
    new: &mut Value,
    old: Option<&Value>,
    used: &BTreeSet<u16>,
) -> Result<(), ApiError> {
    if !rt.same(&registry::SERVICES) {
        return Ok(());
    }
    let wants = wants_node_ports(new);
    let old_ports: Vec<Value> = old
        .filter(|o| wants_node_ports(o))
        .and_then(|o| o.pointer("/spec/ports"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let svc_type = new
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    let Some(ports) = new.pointer_mut("/spec/ports").and_then(Value::as_array_mut) else {
        return Ok(());
    };
    if !wants {
        // Leaving NodePort: ports the client left as they were go with
        // the type, as the API server drops them.
        for p in ports.iter_mut() {
            let np = node_port(p);
            if np != 0
                && old_ports.iter().any(|o| node_port(o) == np)
                && let Some(m) = p.as_object_mut()
            {
                m.remove("nodePort");
            }
        }
        for (i, p) in ports.iter().enumerate() {
            if node_port(p) != 0 {
                return Err(ApiError::invalid(
                    rt,
                    name,
                    &format!("spec.ports[{i}].nodePort"),
                    &format!("Forbidden: may not be used when `type` is '{svc_type}'"),
                ));
            }
        }
        return Ok(());
    }
    // An update that leaves a node port out keeps the one allocated to the
    // port of the same name, unless another port now claims it.
    if !old_ports.is_empty() {
        let claimed: BTreeSet<u16> = ports.iter().map(node_port).collect();
        let by_name: BTreeMap<&str, u16> = old_ports
            .iter()
            .map(|o| (port_name(o), node_port(o)))
            .collect();
        for p in ports.iter_mut() {
            if node_port(p) == 0
                && let Some(&kept) = by_name.get(port_name(p))
                && kept != 0
                && !claimed.contains(&kept)
            {
                p["nodePort"] = json!(kept);
            }
        }
    }
    let mut mine: BTreeMap<(u16, String), usize> = BTreeMap::new();
    for (i, p) in ports.iter().enumerate() {
        let np = p
            .get("nodePort")
            .and_then(Value::as_i64)
            .unwrap_or_default();
        if np == 0 {
            continue;
        }
        let field = format!("spec.ports[{i}].nodePort");
        if !(i64::from(FIRST)..=i64::from(LAST)).contains(&np) {
            return Err(ApiError::invalid(
                rt,
                name,
                &field,
                &format!(
                    "Invalid value: {np}: provided port is not in the valid range. The range of valid ports is {FIRST}-{LAST}"
                ),
            ));
        }
        let np = np as u16;
        if used.contains(&np) {
            return Err(ApiError::invalid(
                rt,
                name,
                &field,
                &format!("Invalid value: {np}: provided port is already allocated"),
            ));
        }
        let protocol = p
            .get("protocol")
            .and_then(Value::as_str)
            .unwrap_or("TCP")
            .to_string();
        if mine.insert((np, protocol), i).is_some() {
            return Err(ApiError::invalid(
                rt,
                name,
                &field,
                &format!("Duplicate value: {np}"),
            ));
        }
    }
    // The same service port under two protocols shares one node port.
    let mut by_port: BTreeMap<i64, u16> = BTreeMap::new();
    for p in ports.iter() {
        if let Some(port) = p.get("port").and_then(Value::as_i64)
            && node_port(p) != 0
        {
            by_port.entry(port).or_insert(node_port(p));
        }
    }
    let mut taken: BTreeSet<u16> = used.iter().copied().collect();
    taken.extend(mine.keys().map(|(np, _)| *np));
    for (i, p) in ports.iter_mut().enumerate() {
        if node_port(p) != 0 {
            continue;
        }
        let port = p.get("port").and_then(Value::as_i64).unwrap_or_default();
        let np = match by_port.get(&port) {
            Some(np) => *np,
            None => free_port(&taken).ok_or_else(|| {
                ApiError::invalid(
                    rt,
                    name,
                    &format!("spec.ports[{i}].nodePort"),
                    "Internal error: failed to allocate a nodePort: range is full",
                )
            })?,
        };
        p["nodePort"] = json!(np);
        taken.insert(np);
        by_port.insert(port, np);
    }
    Ok(())
}

/// A random free port, from the upper band first: the API server keeps the
/// lowest ports of the range for Services that ask for a fixed one.
fn free_port(taken: &BTreeSet<u16>) -> Option<u16> {
    use rand::seq::IteratorRandom;
    let size = u32::from(LAST - FIRST) + 1;
    let offset = (size / 32).clamp(16, 128) as u16;
    let split = FIRST + offset;
    let mut rng = rand::rng();
    (split..=LAST)
        .filter(|p| !taken.contains(p))
        .choose(&mut rng)
        .or_else(|| {
            (FIRST..split)
                .filter(|p| !taken.contains(p))
                .choose(&mut rng)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(ports: Value) -> Value {
        json!({"metadata": {"name": "web"}, "spec": {"type": "NodePort", "ports": ports}})
    }

    fn assign_new(v: &mut Value, used: &[u16]) -> Result<(), ApiError> {
        assign(
            &registry::SERVICES,
            "web",
            v,
            None,
            &used.iter().copied().collect(),
        )
    }

    #[test]
    fn allocates_refuses_and_keeps() {
        let mut s = svc(json!([{"name": "http", "port": 80, "protocol": "TCP"}]));
        assign_new(&mut s, &[]).unwrap();
        let np = node_port(&s["spec"]["ports"][0]);
        assert!((FIRST + 86..=LAST).contains(&np), "{np}");

        let mut s = svc(json!([{"name": "http", "port": 80, "nodePort": 30080}]));
        let e = assign_new(&mut s, &[30080]).unwrap_err();
        assert_eq!(e.code(), 422);
        assert_eq!(
            e.message,
            "Service \"web\" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
        );
        let mut s = svc(json!([{"name": "http", "port": 80, "nodePort": 1234}]));
        assert!(assign_new(&mut s, &[]).unwrap_err().message.ends_with(
            "provided port is not in the valid range. The range of valid ports is 30000-32767"
        ));

        // An update without nodePort keeps the allocated one.
        let old = svc(json!([{"name": "http", "port": 80, "nodePort": 31000}]));
        let mut new = svc(json!([{"name": "http", "port": 8080}]));
        assign(
            &registry::SERVICES,
            "web",
            &mut new,
            Some(&old),
            &BTreeSet::new(),
        )
        .unwrap();
        assert_eq!(new["spec"]["ports"][0]["nodePort"], 31000);

        // TCP and UDP of one port share a node port.
        let mut s = svc(json!([
            {"name": "dns", "port": 53, "protocol": "UDP"},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
        ]));
        assign_new(&mut s, &[]).unwrap();
        assert_eq!(
            s["spec"]["ports"][0]["nodePort"],
            s["spec"]["ports"][1]["nodePort"]
        );

        // Back to ClusterIP: the allocated ports go with the type.
        let mut back = old.clone();
        back["spec"]["type"] = json!("ClusterIP");
        assign(
            &registry::SERVICES,
            "web",
            &mut back,
            Some(&old),
            &BTreeSet::new(),
        )
        .unwrap();
        assert!(back["spec"]["ports"][0].get("nodePort").is_none());
        let mut bad =
            json!({"spec": {"type": "ClusterIP", "ports": [{"port": 80, "nodePort": 30001}]}});
        assert!(
            assign_new(&mut bad, &[])
                .unwrap_err()
                .message
                .contains("Forbidden: may not be used when `type` is 'ClusterIP'")
        );
    }

    #[test]
    fn a_full_range_is_an_error() {
        let all: Vec<u16> = (FIRST..=LAST).collect();
        let mut s = svc(json!([{"name": "http", "port": 80}]));
        assert!(
            assign_new(&mut s, &all)
                .unwrap_err()
                .message
                .contains("range is full")
        );
        let mut s = svc(json!([{"name": "http", "port": 80}]));
        let low: Vec<u16> = (FIRST + 86..=LAST).collect();
        assign_new(&mut s, &low).unwrap();
        assert!(node_port(&s["spec"]["ports"][0]) < FIRST + 86);
    }
}
