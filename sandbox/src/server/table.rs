//! `Table` output (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`),
//! the columns `kubectl get` prints, per kind.

use serde_json::{Value, json};

use crate::registry::{self, ResourceType};

/// What each row carries besides its cells (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

/// Kubernetes' short human durations: `45s`, `3m20s`, `5h`, `3d`.
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    if s < 60 * 2 {
        return format!("{s}s");
    }
    let m = s / 60;
    if m < 10 {
        let rem = s % 60;
        return if rem == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{rem}s")
        };
    }
    if m < 60 * 3 {
        return format!("{m}m");
    }
    let h = m / 60;
    if h < 8 {
        let rem = m % 60;
        return if rem == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{rem}m")
        };
    }
    if h < 48 {
        return format!("{h}h");
    }
    if h < 24 * 8 {
        let d = h / 24;
        let rem = h % 24;
        return if rem == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{rem}h")
        };
    }
    let d = h / 24;
    if d < 365 * 2 {
        return format!("{d}d");
    }
    format!("{}y", d / 365)
}

fn age_of(ts: Option<&str>) -> String {
    match ts.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()) {
        Some(t) => {
            human_duration((chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds())
        }
        None => "<unknown>".into(),
    }
}

fn age(o: &Value) -> String {
    age_of(
        o.pointer("/metadata/creationTimestamp")
            .and_then(Value::as_str),
    )
}

fn s<'a>(o: &'a Value, p: &str) -> &'a str {
    o.pointer(p).and_then(Value::as_str).unwrap_or("")
}

fn n(o: &Value, p: &str) -> i64 {
    o.pointer(p).and_then(Value::as_i64).unwrap_or(0)
}

fn col(name: &str, ty: &str, priority: i64) -> Value {
    let format = if name == "Name" { "name" } else { "" };
    json!({"name": name, "type": ty, "format": format, "description": "", "priority": priority})
}

fn pod_status(p: &Value) -> String {
    if p.pointer("/metadata/deletionTimestamp").is_some() {
        return "Terminating".into();
    }
    let mut reason = s(p, "/status/reason").to_string();
    if reason.is_empty() {
        reason = s(p, "/status/phase").to_string();
    }
    let statuses = p
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array);
    for c in statuses.into_iter().flatten() {
        if let Some(r) = c.pointer("/state/waiting/reason").and_then(Value::as_str) {
            reason = r.to_string();
        } else if let Some(t) = c.pointer("/state/terminated") {
            let r = t["reason"].as_str().unwrap_or("");
            reason = if r.is_empty() {
                format!("ExitCode:{}", t["exitCode"].as_i64().unwrap_or(0))
            } else {
                r.to_string()
            };
        }
    }
    reason
}

fn pod_cells(p: &Value) -> Vec<Value> {
    let total = p
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let statuses = p
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array);
    let ready = statuses
        .into_iter()
        .flatten()
        .filter(|c| c["ready"] == json!(true))
        .count();
    let restarts: i64 = statuses
        .into_iter()
        .flatten()
        .map(|c| c["restartCount"].as_i64().unwrap_or(0))
        .sum();
    let ip = s(p, "/status/podIP");
    let node = s(p, "/spec/nodeName");
    vec![
        json!(s(p, "/metadata/name")),
        json!(format!("{ready}/{total}")),
        json!(pod_status(p)),
        json!(restarts),
        json!(age(p)),
        json!(if ip.is_empty() { "<none>" } else { ip }),
        json!(if node.is_empty() { "<none>" } else { node }),
        json!("<none>"),
        json!("<none>"),
    ]
}

fn service_ports(o: &Value) -> String {
    let ports: Vec<String> = o
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| {
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            match p["nodePort"].as_i64() {
                Some(np) => format!("{}:{}/{}", p["port"], np, proto),
                None => format!("{}/{}", p["port"], proto),
            }
        })
        .collect();
    if ports.is_empty() {
        "<none>".into()
    } else {
        ports.join(",")
    }
}

fn event_object(e: &Value) -> String {
    let kind = s(e, "/involvedObject/kind");
    let kind = if kind.is_empty() {
        s(e, "/regarding/kind")
    } else {
        kind
    };
    let name = s(e, "/involvedObject/name");
    let name = if name.is_empty() {
        s(e, "/regarding/name")
    } else {
        name
    };
    format!("{}/{}", kind.to_ascii_lowercase(), name)
}

fn event_last_seen(e: &Value) -> String {
    for p in [
        "/lastTimestamp",
        "/series/lastObservedTime",
        "/eventTime",
        "/deprecatedLastTimestamp",
        "/metadata/creationTimestamp",
    ] {
        if let Some(t) = e.pointer(p).and_then(Value::as_str) {
            return age_of(Some(t));
        }
    }
    "<unknown>".into()
}

fn access_modes(o: &Value) -> String {
    let modes: Vec<&str> = o
        .pointer("/spec/accessModes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|m| match m {
            "ReadWriteOnce" => "RWO",
            "ReadOnlyMany" => "ROX",
            "ReadWriteMany" => "RWX",
            "ReadWriteOncePod" => "RWOP",
            other => other,
        })
        .collect();
    modes.join(",")
}

fn conditions_true(o: &Value, ty: &str) -> bool {
    o.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == ty && c["status"] == "True")
}

/// Column definitions and a row function for a type.
/// Computes a row's cells.
type RowFn = fn(&Value) -> Vec<Value>;

fn columns(rt: &ResourceType) -> (Vec<Value>, RowFn) {
    let name = || col("Name", "string", 0);
    let age_col = || col("Age", "string", 0);
    if rt.same(&registry::PODS) {
        return (
            vec![
                name(),
                col("Ready", "string", 0),
                col("Status", "string", 0),
                col("Restarts", "string", 0),
                age_col(),
                col("IP", "string", 1),
                col("Node", "string", 1),
                col("Nominated Node", "string", 1),
                col("Readiness Gates", "string", 1),
            ],
            pod_cells,
        );
    }
    if rt.kind == "Event" {
        return (
            vec![
                col("Last Seen", "string", 0),
                col("Type", "string", 0),
                col("Reason", "string", 0),
                col("Object", "string", 0),
                col("Message", "string", 0),
            ],
            |e| {
                let msg = if e.get("message").is_some() {
                    s(e, "/message")
                } else {
                    s(e, "/note")
                };
                vec![
                    json!(event_last_seen(e)),
                    json!(s(e, "/type")),
                    json!(s(e, "/reason")),
                    json!(event_object(e)),
                    json!(msg),
                ]
            },
        );
    }
    if rt.same(&registry::DEPLOYMENTS) {
        return (
            vec![
                name(),
                col("Ready", "string", 0),
                col("Up-to-date", "string", 0),
                col("Available", "string", 0),
                age_col(),
            ],
            |o| {
                vec![
                    json!(s(o, "/metadata/name")),
                    json!(format!(
                        "{}/{}",
                        n(o, "/status/readyReplicas"),
                        n(o, "/spec/replicas")
                    )),
                    json!(n(o, "/status/updatedReplicas")),
                    json!(n(o, "/status/availableReplicas")),
                    json!(age(o)),
                ]
            },
        );
    }
    if rt.same(&registry::STATEFULSETS) {
        return (vec![name(), col("Ready", "string", 0), age_col()], |o| {
            vec![
                json!(s(o, "/metadata/name")),
                json!(format!(
                    "{}/{}",
                    n(o, "/status/readyReplicas"),
                    n(o, "/spec/replicas")
                )),
                json!(age(o)),
            ]
        });
    }
    if rt.same(&registry::REPLICASETS) {
        return (
            vec![
                name(),
                col("Desired", "integer", 0),
                col("Current", "integer", 0),
                col("Ready", "integer", 0),
                age_col(),
            ],
            |o| {
                vec![
                    json!(s(o, "/metadata/name")),
                    json!(n(o, "/spec/replicas")),
                    json!(n(o, "/status/replicas")),
                    json!(n(o, "/status/readyReplicas")),
                    json!(age(o)),
                ]
            },
        );
    }
    if rt.same(&registry::SERVICES) {
        return (
            vec![
                name(),
                col("Type", "string", 0),
                col("Cluster-IP", "string", 0),
                col("External-IP", "string", 0),
                col("Port(s)", "string", 0),
                age_col(),
            ],
            |o| {
                let ip = s(o, "/spec/clusterIP");
                vec![
                    json!(s(o, "/metadata/name")),
                    json!(s(o, "/spec/type")),
                    json!(if ip.is_empty() { "<none>" } else { ip }),
                    json!("<none>"),
                    json!(service_ports(o)),
                    json!(age(o)),
                ]
            },
        );
    }
    if rt.same(&registry::SECRETS) {
        return (
            vec![
                name(),
                col("Type", "string", 0),
                col("Data", "integer", 0),
                age_col(),
            ],
            |o| {
                let data = o
                    .get("data")
                    .and_then(Value::as_object)
                    .map_or(0, |m| m.len());
                vec![
                    json!(s(o, "/metadata/name")),
                    json!(s(o, "/type")),
                    json!(data),
                    json!(age(o)),
                ]
            },
        );
    }
    if rt.same(&registry::CONFIGMAPS) {
        return (vec![name(), col("Data", "integer", 0), age_col()], |o| {
            let data = o
                .get("data")
                .and_then(Value::as_object)
                .map_or(0, |m| m.len())
                + o.get("binaryData")
                    .and_then(Value::as_object)
                    .map_or(0, |m| m.len());
            vec![json!(s(o, "/metadata/name")), json!(data), json!(age(o))]
        });
    }
    if rt.same(&registry::JOBS) {
        return (
            vec![
                name(),
                col("Status", "string", 0),
                col("Completions", "string", 0),
                col("Duration", "string", 0),
                age_col(),
            ],
            |o| {
                let status = if conditions_true(o, "Complete") {
                    "Complete"
                } else if conditions_true(o, "Failed") {
                    "Failed"
                } else {
                    "Running"
                };
                let duration = match (
                    o.pointer("/status/startTime").and_then(Value::as_str),
                    o.pointer("/status/completionTime").and_then(Value::as_str),
                ) {
                    (Some(a), Some(b)) => match (
                        chrono::DateTime::parse_from_rfc3339(a),
                        chrono::DateTime::parse_from_rfc3339(b),
                    ) {
                        (Ok(a), Ok(b)) => human_duration((b - a).num_seconds()),
                        _ => String::new(),
                    },
                    (Some(a), None) => age_of(Some(a)),
                    _ => String::new(),
                };
                vec![
                    json!(s(o, "/metadata/name")),
                    json!(status),
                    json!(format!(
                        "{}/{}",
                        n(o, "/status/succeeded"),
                        o.pointer("/spec/completions")
                            .and_then(Value::as_i64)
                            .unwrap_or(1)
                    )),
                    json!(duration),
                    json!(age(o)),
                ]
            },
        );
    }
    if rt.same(&registry::NAMESPACES) {
        return (vec![name(), col("Status", "string", 0), age_col()], |o| {
            vec![
                json!(s(o, "/metadata/name")),
                json!(s(o, "/status/phase")),
                json!(age(o)),
            ]
        });
    }
    if rt.same(&registry::NODES) {
        return (
            vec![
                name(),
                col("Status", "string", 0),
                col("Roles", "string", 0),
                age_col(),
                col("Version", "string", 0),
            ],
            |o| {
                let ready = if conditions_true(o, "Ready") {
                    "Ready"
                } else {
                    "NotReady"
                };
                vec![
                    json!(s(o, "/metadata/name")),
                    json!(ready),
                    json!("control-plane"),
                    json!(age(o)),
                    json!(s(o, "/status/nodeInfo/kubeletVersion")),
                ]
            },
        );
    }
    if rt.same(&registry::PERSISTENTVOLUMECLAIMS) {
        return (
            vec![
                name(),
                col("Status", "string", 0),
                col("Volume", "string", 0),
                col("Capacity", "string", 0),
                col("Access Modes", "string", 0),
                col("StorageClass", "string", 0),
                age_col(),
            ],
            |o| {
                vec![
                    json!(s(o, "/metadata/name")),
                    json!(s(o, "/status/phase")),
                    json!(s(o, "/spec/volumeName")),
                    json!(s(o, "/status/capacity/storage")),
                    json!(access_modes(o)),
                    json!(s(o, "/spec/storageClassName")),
                    json!(age(o)),
                ]
            },
        );
    }
    if rt.same(&registry::DAEMONSETS) {
        return (
            vec![
                name(),
                col("Desired", "integer", 0),
                col("Current", "integer", 0),
                col("Ready", "integer", 0),
                col("Up-to-date", "integer", 0),
                col("Available", "integer", 0),
                col("Node Selector", "string", 0),
                age_col(),
            ],
            |o| {
                let sel = o
                    .pointer("/spec/template/spec/nodeSelector")
                    .and_then(Value::as_object)
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "<none>".into());
                vec![
                    json!(s(o, "/metadata/name")),
                    json!(n(o, "/status/desiredNumberScheduled")),
                    json!(n(o, "/status/currentNumberScheduled")),
                    json!(n(o, "/status/numberReady")),
                    json!(n(o, "/status/updatedNumberScheduled")),
                    json!(n(o, "/status/numberAvailable")),
                    json!(sel),
                    json!(age(o)),
                ]
            },
        );
    }
    if rt.same(&registry::SERVICEACCOUNTS) {
        return (vec![name(), col("Secrets", "integer", 0), age_col()], |o| {
            let n = o
                .get("secrets")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            vec![json!(s(o, "/metadata/name")), json!(n), json!(age(o))]
        });
    }
    if rt.same(&registry::ENDPOINTS) {
        return (
            vec![name(), col("Endpoints", "string", 0), age_col()],
            |o| {
                let mut eps = Vec::new();
                for sub in o
                    .get("subsets")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    for a in sub["addresses"].as_array().into_iter().flatten() {
                        for p in sub["ports"].as_array().into_iter().flatten() {
                            eps.push(format!("{}:{}", a["ip"].as_str().unwrap_or(""), p["port"]));
                        }
                    }
                }
                let text = if eps.is_empty() {
                    "<none>".to_string()
                } else if eps.len() > 3 {
                    format!("{} + {} more...", eps[..3].join(","), eps.len() - 3)
                } else {
                    eps.join(",")
                };
                vec![json!(s(o, "/metadata/name")), json!(text), json!(age(o))]
            },
        );
    }
    if rt.same(&registry::PERSISTENTVOLUMES) {
        return (
            vec![
                name(),
                col("Capacity", "string", 0),
                col("Access Modes", "string", 0),
                col("Reclaim Policy", "string", 0),
                col("Status", "string", 0),
                col("Claim", "string", 0),
                col("StorageClass", "string", 0),
                age_col(),
            ],
            |o| {
                let claim = match (
                    s(o, "/spec/claimRef/namespace"),
                    s(o, "/spec/claimRef/name"),
                ) {
                    (_, "") => String::new(),
                    (ns, n) => format!("{ns}/{n}"),
                };
                vec![
                    json!(s(o, "/metadata/name")),
                    json!(s(o, "/spec/capacity/storage")),
                    json!(access_modes(o)),
                    json!(s(o, "/spec/persistentVolumeReclaimPolicy")),
                    json!(s(o, "/status/phase")),
                    json!(claim),
                    json!(s(o, "/spec/storageClassName")),
                    json!(age(o)),
                ]
            },
        );
    }
    if rt.same(&registry::STORAGECLASSES) {
        return (
            vec![
                name(),
                col("Provisioner", "string", 0),
                col("ReclaimPolicy", "string", 0),
                col("VolumeBindingMode", "string", 0),
                col("AllowVolumeExpansion", "string", 0),
                age_col(),
            ],
            |o| {
                let default = o
                    .pointer("/metadata/annotations/storageclass.kubernetes.io~1is-default-class")
                    == Some(&json!("true"));
                let name = s(o, "/metadata/name");
                vec![
                    json!(if default {
                        format!("{name} (default)")
                    } else {
                        name.to_string()
                    }),
                    json!(s(o, "/provisioner")),
                    json!(s(o, "/reclaimPolicy")),
                    json!(s(o, "/volumeBindingMode")),
                    json!(
                        o.get("allowVolumeExpansion")
                            .and_then(Value::as_bool)
                            .unwrap_or(false)
                    ),
                    json!(age(o)),
                ]
            },
        );
    }
    if rt.same(&registry::CRONJOBS) {
        return (
            vec![
                name(),
                col("Schedule", "string", 0),
                col("Timezone", "string", 0),
                col("Suspend", "boolean", 0),
                col("Active", "integer", 0),
                col("Last Schedule", "string", 0),
                age_col(),
            ],
            |o| {
                let tz = s(o, "/spec/timeZone");
                let last = o
                    .pointer("/status/lastScheduleTime")
                    .and_then(Value::as_str);
                vec![
                    json!(s(o, "/metadata/name")),
                    json!(s(o, "/spec/schedule")),
                    json!(if tz.is_empty() { "<none>" } else { tz }),
                    json!(
                        o.pointer("/spec/suspend")
                            .and_then(Value::as_bool)
                            .unwrap_or(false)
                    ),
                    json!(
                        o.pointer("/status/active")
                            .and_then(Value::as_array)
                            .map_or(0, Vec::len)
                    ),
                    json!(last.map_or("<none>".to_string(), |t| age_of(Some(t)))),
                    json!(age(o)),
                ]
            },
        );
    }
    if rt.same(&registry::CONTROLLERREVISIONS) {
        return (
            vec![
                name(),
                col("Controller", "string", 0),
                col("Revision", "integer", 0),
                age_col(),
            ],
            |o| {
                let owner = o
                    .pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .and_then(|refs| refs.iter().find(|r| r["controller"] == json!(true)))
                    .map(|r| {
                        let group = r["apiVersion"]
                            .as_str()
                            .unwrap_or("")
                            .split('/')
                            .next()
                            .unwrap_or("");
                        format!(
                            "{}.{}/{}",
                            r["kind"].as_str().unwrap_or("").to_ascii_lowercase(),
                            group,
                            r["name"].as_str().unwrap_or("")
                        )
                    })
                    .unwrap_or_else(|| "<none>".into());
                vec![
                    json!(s(o, "/metadata/name")),
                    json!(owner),
                    json!(n(o, "/revision")),
                    json!(age(o)),
                ]
            },
        );
    }
    (vec![name(), age_col()], |o| {
        vec![json!(s(o, "/metadata/name")), json!(age(o))]
    })
}

/// The `PartialObjectMetadata` of an object.
pub fn partial_metadata(o: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": o.get("metadata").cloned().unwrap_or(json!({})),
    })
}

/// A Table of `items`. `with_columns` false leaves the column definitions
/// out (later events of a watch, as a real server does).
pub fn table(
    rt: &ResourceType,
    items: &[Value],
    include: IncludeObject,
    list_meta: Value,
    with_columns: bool,
) -> Value {
    let (cols, cells) = columns(rt);
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let mut row = json!({"cells": cells(o)});
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => row["object"] = partial_metadata(o),
                IncludeObject::Object => row["object"] = o.clone(),
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": if with_columns { json!(cols) } else { json!([]) },
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(150), "2m30s");
        assert_eq!(human_duration(3600), "60m");
        assert_eq!(human_duration(3 * 3600 + 60), "3h1m");
        assert_eq!(human_duration(30 * 3600), "30h");
    }

    #[test]
    fn pod_rows() {
        let p = json!({"metadata": {"name": "db-0", "creationTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Running", "containerStatuses": [{"ready": true, "restartCount": 2}]}});
        let t = table(
            &registry::PODS,
            &[p],
            IncludeObject::Metadata,
            json!({}),
            true,
        );
        let cells = &t["rows"][0]["cells"];
        assert_eq!(cells[1], "1/1");
        assert_eq!(cells[2], "Running");
        assert_eq!(cells[3], 2);
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    }
}
