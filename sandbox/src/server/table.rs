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

/// `3m20s`, or `3m` when the smaller unit's count is 0.
fn two_units(n: i64, unit: &str, rest: i64, rest_unit: &str) -> String {
    if rest == 0 {
        format!("{n}{unit}")
    } else {
        format!("{n}{unit}{rest}{rest_unit}")
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
        return two_units(m, "m", s % 60, "s");
    }
    if m < 60 * 3 {
        return format!("{m}m");
    }
    let h = m / 60;
    if h < 8 {
        return two_units(h, "h", m % 60, "m");
    }
    if h < 48 {
        return format!("{h}h");
    }
    if h < 24 * 8 {
        let d = h / 24;
        return two_units(d, "d", h % 24, "h");
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

fn pod_ready(p: &Value) -> Value {
    let total = p
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let ready = p
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| c["ready"] == json!(true))
        .count();
    json!(format!("{ready}/{total}"))
}

fn pod_restarts(p: &Value) -> Value {
    let restarts: i64 = p
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| c["restartCount"].as_i64().unwrap_or(0))
        .sum();
    json!(restarts)
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

/// How a column's cell is computed from an object.
#[derive(Clone, Copy)]
enum Cell {
    /// The string at a JSON pointer, "" when absent.
    Str(&'static str),
    /// The string at a JSON pointer, `<none>` when absent or empty.
    StrOrNone(&'static str),
    /// The integer at a JSON pointer, 0 when absent.
    Int(&'static str),
    /// `a/b` of the integers at two JSON pointers (ready of desired).
    Ratio(&'static str, &'static str),
    /// The same text in every row.
    Fixed(&'static str),
    /// Computed from the whole object.
    With(fn(&Value) -> Value),
}

impl Cell {
    fn of(self, o: &Value) -> Value {
        match self {
            Cell::Str(p) => json!(s(o, p)),
            Cell::StrOrNone(p) => {
                let v = s(o, p);
                json!(if v.is_empty() { "<none>" } else { v })
            }
            Cell::Int(p) => json!(n(o, p)),
            Cell::Ratio(a, b) => json!(format!("{}/{}", n(o, a), n(o, b))),
            Cell::Fixed(text) => json!(text),
            Cell::With(f) => f(o),
        }
    }
}

/// A column `kubectl get` prints: its header, type, priority (1: only
/// with `-o wide`) and how its cell is computed.
struct Column {
    name: &'static str,
    ty: &'static str,
    priority: i64,
    cell: Cell,
}

const fn c(name: &'static str, ty: &'static str, cell: Cell) -> Column {
    Column {
        name,
        ty,
        priority: 0,
        cell,
    }
}

/// A string column shown only with `-o wide`.
const fn wide(name: &'static str, cell: Cell) -> Column {
    Column {
        name,
        ty: "string",
        priority: 1,
        cell,
    }
}

const NAME: Column = c("Name", "string", Cell::Str("/metadata/name"));
const AGE: Column = c("Age", "string", Cell::With(|o| json!(age(o))));

const POD: &[Column] = &[
    NAME,
    c("Ready", "string", Cell::With(pod_ready)),
    c("Status", "string", Cell::With(|p| json!(pod_status(p)))),
    c("Restarts", "string", Cell::With(pod_restarts)),
    AGE,
    wide("IP", Cell::StrOrNone("/status/podIP")),
    wide("Node", Cell::StrOrNone("/spec/nodeName")),
    wide("Nominated Node", Cell::Fixed("<none>")),
    wide("Readiness Gates", Cell::Fixed("<none>")),
];

const EVENT: &[Column] = &[
    c(
        "Last Seen",
        "string",
        Cell::With(|e| json!(event_last_seen(e))),
    ),
    c("Type", "string", Cell::Str("/type")),
    c("Reason", "string", Cell::Str("/reason")),
    c("Object", "string", Cell::With(|e| json!(event_object(e)))),
    c(
        "Message",
        "string",
        Cell::With(|e| {
            if e.get("message").is_some() {
                json!(s(e, "/message"))
            } else {
                json!(s(e, "/note"))
            }
        }),
    ),
];

const DEPLOYMENT: &[Column] = &[
    NAME,
    c(
        "Ready",
        "string",
        Cell::Ratio("/status/readyReplicas", "/spec/replicas"),
    ),
    c("Up-to-date", "string", Cell::Int("/status/updatedReplicas")),
    c(
        "Available",
        "string",
        Cell::Int("/status/availableReplicas"),
    ),
    AGE,
];

const STATEFULSET: &[Column] = &[
    NAME,
    c(
        "Ready",
        "string",
        Cell::Ratio("/status/readyReplicas", "/spec/replicas"),
    ),
    AGE,
];

const REPLICASET: &[Column] = &[
    NAME,
    c("Desired", "integer", Cell::Int("/spec/replicas")),
    c("Current", "integer", Cell::Int("/status/replicas")),
    c("Ready", "integer", Cell::Int("/status/readyReplicas")),
    AGE,
];

const SERVICE: &[Column] = &[
    NAME,
    c("Type", "string", Cell::Str("/spec/type")),
    c("Cluster-IP", "string", Cell::StrOrNone("/spec/clusterIP")),
    c("External-IP", "string", Cell::Fixed("<none>")),
    c("Port(s)", "string", Cell::With(|o| json!(service_ports(o)))),
    AGE,
];

/// How many keys the object `o[field]` has (0 when absent).
fn keys(o: &Value, field: &str) -> usize {
    o.get(field)
        .and_then(Value::as_object)
        .map_or(0, |m| m.len())
}

const SECRET: &[Column] = &[
    NAME,
    c("Type", "string", Cell::Str("/type")),
    c("Data", "integer", Cell::With(|o| json!(keys(o, "data")))),
    AGE,
];

const CONFIGMAP: &[Column] = &[
    NAME,
    c(
        "Data",
        "integer",
        Cell::With(|o| json!(keys(o, "data") + keys(o, "binaryData"))),
    ),
    AGE,
];

fn job_status(o: &Value) -> Value {
    json!(if conditions_true(o, "Complete") {
        "Complete"
    } else if conditions_true(o, "Failed") {
        "Failed"
    } else {
        "Running"
    })
}

fn job_completions(o: &Value) -> Value {
    json!(format!(
        "{}/{}",
        n(o, "/status/succeeded"),
        o.pointer("/spec/completions")
            .and_then(Value::as_i64)
            .unwrap_or(1)
    ))
}

fn job_duration(o: &Value) -> Value {
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
    json!(duration)
}

const JOB: &[Column] = &[
    NAME,
    c("Status", "string", Cell::With(job_status)),
    c("Completions", "string", Cell::With(job_completions)),
    c("Duration", "string", Cell::With(job_duration)),
    AGE,
];

const NAMESPACE: &[Column] = &[NAME, c("Status", "string", Cell::Str("/status/phase")), AGE];

const NODE: &[Column] = &[
    NAME,
    c(
        "Status",
        "string",
        Cell::With(|o| {
            json!(if conditions_true(o, "Ready") {
                "Ready"
            } else {
                "NotReady"
            })
        }),
    ),
    c("Roles", "string", Cell::Fixed("control-plane")),
    AGE,
    c(
        "Version",
        "string",
        Cell::Str("/status/nodeInfo/kubeletVersion"),
    ),
];

const PERSISTENTVOLUMECLAIM: &[Column] = &[
    NAME,
    c("Status", "string", Cell::Str("/status/phase")),
    c("Volume", "string", Cell::Str("/spec/volumeName")),
    c("Capacity", "string", Cell::Str("/status/capacity/storage")),
    c(
        "Access Modes",
        "string",
        Cell::With(|o| json!(access_modes(o))),
    ),
    c(
        "StorageClass",
        "string",
        Cell::Str("/spec/storageClassName"),
    ),
    AGE,
];

fn node_selector(o: &Value) -> Value {
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
    json!(sel)
}

const DAEMONSET: &[Column] = &[
    NAME,
    c(
        "Desired",
        "integer",
        Cell::Int("/status/desiredNumberScheduled"),
    ),
    c(
        "Current",
        "integer",
        Cell::Int("/status/currentNumberScheduled"),
    ),
    c("Ready", "integer", Cell::Int("/status/numberReady")),
    c(
        "Up-to-date",
        "integer",
        Cell::Int("/status/updatedNumberScheduled"),
    ),
    c("Available", "integer", Cell::Int("/status/numberAvailable")),
    c("Node Selector", "string", Cell::With(node_selector)),
    AGE,
];

const SERVICEACCOUNT: &[Column] = &[
    NAME,
    c(
        "Secrets",
        "integer",
        Cell::With(|o| {
            json!(
                o.get("secrets")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len)
            )
        }),
    ),
    AGE,
];

fn endpoints(o: &Value) -> Value {
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
    json!(text)
}

const ENDPOINTS: &[Column] = &[NAME, c("Endpoints", "string", Cell::With(endpoints)), AGE];

fn volume_claim(o: &Value) -> Value {
    let claim = match (
        s(o, "/spec/claimRef/namespace"),
        s(o, "/spec/claimRef/name"),
    ) {
        (_, "") => String::new(),
        (ns, n) => format!("{ns}/{n}"),
    };
    json!(claim)
}

const PERSISTENTVOLUME: &[Column] = &[
    NAME,
    c("Capacity", "string", Cell::Str("/spec/capacity/storage")),
    c(
        "Access Modes",
        "string",
        Cell::With(|o| json!(access_modes(o))),
    ),
    c(
        "Reclaim Policy",
        "string",
        Cell::Str("/spec/persistentVolumeReclaimPolicy"),
    ),
    c("Status", "string", Cell::Str("/status/phase")),
    c("Claim", "string", Cell::With(volume_claim)),
    c(
        "StorageClass",
        "string",
        Cell::Str("/spec/storageClassName"),
    ),
    AGE,
];

fn storage_class_name(o: &Value) -> Value {
    let default = o.pointer("/metadata/annotations/storageclass.kubernetes.io~1is-default-class")
        == Some(&json!("true"));
    let name = s(o, "/metadata/name");
    json!(if default {
        format!("{name} (default)")
    } else {
        name.to_string()
    })
}

const STORAGECLASS: &[Column] = &[
    c("Name", "string", Cell::With(storage_class_name)),
    c("Provisioner", "string", Cell::Str("/provisioner")),
    c("ReclaimPolicy", "string", Cell::Str("/reclaimPolicy")),
    c(
        "VolumeBindingMode",
        "string",
        Cell::Str("/volumeBindingMode"),
    ),
    c(
        "AllowVolumeExpansion",
        "string",
        Cell::With(|o| {
            json!(
                o.get("allowVolumeExpansion")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
            )
        }),
    ),
    AGE,
];

const CRONJOB: &[Column] = &[
    NAME,
    c("Schedule", "string", Cell::Str("/spec/schedule")),
    c("Timezone", "string", Cell::StrOrNone("/spec/timeZone")),
    c(
        "Suspend",
        "boolean",
        Cell::With(|o| {
            json!(
                o.pointer("/spec/suspend")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
            )
        }),
    ),
    c(
        "Active",
        "integer",
        Cell::With(|o| {
            json!(
                o.pointer("/status/active")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len)
            )
        }),
    ),
    c(
        "Last Schedule",
        "string",
        Cell::With(|o| {
            let last = o
                .pointer("/status/lastScheduleTime")
                .and_then(Value::as_str);
            json!(last.map_or("<none>".to_string(), |t| age_of(Some(t))))
        }),
    ),
    AGE,
];

fn revision_controller(o: &Value) -> Value {
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
    json!(owner)
}

const CONTROLLERREVISION: &[Column] = &[
    NAME,
    c("Controller", "string", Cell::With(revision_controller)),
    c("Revision", "integer", Cell::Int("/revision")),
    AGE,
];

/// Any other type: its name and age.
const OTHER: &[Column] = &[NAME, AGE];

/// The columns of each type with columns of its own.
static KINDS: &[(&ResourceType, &[Column])] = &[
    (&registry::PODS, POD),
    (&registry::DEPLOYMENTS, DEPLOYMENT),
    (&registry::STATEFULSETS, STATEFULSET),
    (&registry::REPLICASETS, REPLICASET),
    (&registry::SERVICES, SERVICE),
    (&registry::SECRETS, SECRET),
    (&registry::CONFIGMAPS, CONFIGMAP),
    (&registry::JOBS, JOB),
    (&registry::NAMESPACES, NAMESPACE),
    (&registry::NODES, NODE),
    (&registry::PERSISTENTVOLUMECLAIMS, PERSISTENTVOLUMECLAIM),
    (&registry::DAEMONSETS, DAEMONSET),
    (&registry::SERVICEACCOUNTS, SERVICEACCOUNT),
    (&registry::ENDPOINTS, ENDPOINTS),
    (&registry::PERSISTENTVOLUMES, PERSISTENTVOLUME),
    (&registry::STORAGECLASSES, STORAGECLASS),
    (&registry::CRONJOBS, CRONJOB),
    (&registry::CONTROLLERREVISIONS, CONTROLLERREVISION),
];

fn columns(rt: &ResourceType) -> &'static [Column] {
    // Both Event types (core and events.k8s.io) print alike.
    if rt.kind == "Event" {
        return EVENT;
    }
    KINDS
        .iter()
        .find(|(kind, _)| rt.same(kind))
        .map_or(OTHER, |(_, cols)| cols)
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
    let cols = columns(rt);
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let cells: Vec<Value> = cols.iter().map(|c| c.cell.of(o)).collect();
            let mut row = json!({"cells": cells});
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
        "columnDefinitions": if with_columns {
            json!(cols.iter().map(|c| col(c.name, c.ty, c.priority)).collect::<Vec<_>>())
        } else {
            json!([])
        },
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
