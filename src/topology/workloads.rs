//! Workloads and Services as a release's manifest declares them.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::manifest::{ManifestObject, at, str_at, string_map};
use super::selector::Selector;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
    /// A CloudNativePG `Cluster` (postgresql.cnpg.io).
    CnpgCluster,
}

impl WorkloadKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::DaemonSet => "DaemonSet",
            WorkloadKind::CnpgCluster => "Cluster",
        }
    }
}

/// A container as the pod template declares it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    /// Literal `env` values only (`valueFrom` entries are left out).
    pub env: BTreeMap<String, String>,
    pub ports: Vec<(Option<String>, u16)>,
}

impl ContainerSpec {
    /// The image's repository name without registry or tag.
    pub fn image_name(&self) -> &str {
        image_name(&self.image)
    }
}

/// `ghcr.io/x/postgres:16@sha256:..` -> `postgres`.
pub fn image_name(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    last.split(':').next().unwrap_or(last)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Workload {
    pub kind: WorkloadKind,
    pub name: String,
    pub selector: Selector,
    pub template_labels: BTreeMap<String, String>,
    pub containers: Vec<ContainerSpec>,
    /// The raw object, for fields only some kinds have.
    #[serde(skip)]
    pub body: Value,
}

impl Workload {
    pub fn display(&self) -> String {
        format!("{} {}", self.kind.as_str(), self.name)
    }
}

/// Finds the workloads in a manifest.
pub fn workloads(objects: &[ManifestObject]) -> Vec<Workload> {
    objects
        .iter()
        .filter_map(|o| {
            let kind = match o.kind.as_str() {
                "Deployment" => WorkloadKind::Deployment,
                "StatefulSet" => WorkloadKind::StatefulSet,
                "DaemonSet" => WorkloadKind::DaemonSet,
                "Cluster" if o.api_version.starts_with("postgresql.cnpg.io/") => {
                    WorkloadKind::CnpgCluster
                }
                _ => return None,
            };
            if kind == WorkloadKind::CnpgCluster {
                let image = str_at(&o.body, &["spec", "imageName"])
                    .unwrap_or("ghcr.io/cloudnative-pg/postgresql")
                    .to_string();
                let labels: BTreeMap<_, _> =
                    [("cnpg.io/cluster".to_string(), o.name.clone())].into();
                return Some(Workload {
                    kind,
                    name: o.name.clone(),
                    selector: Selector::from_labels(labels.clone()),
                    template_labels: labels,
                    containers: vec![ContainerSpec {
                        name: "postgres".into(),
                        image,
                        env: BTreeMap::new(),
                        ports: vec![(Some("postgresql".into()), 5432)],
                    }],
                    body: o.body.clone(),
                });
            }
            let template = at(&o.body, &["spec", "template"]);
            let containers = template
                .and_then(|t| at(t, &["spec", "containers"]))
                .and_then(Value::as_array)
                .map(|cs| cs.iter().map(container_spec).collect())
                .unwrap_or_default();
            Some(Workload {
                kind,
                name: o.name.clone(),
                selector: Selector::from_value(at(&o.body, &["spec", "selector"])),
                template_labels: string_map(template.and_then(|t| at(t, &["metadata", "labels"]))),
                containers,
                body: o.body.clone(),
            })
        })
        .collect()
}

fn container_spec(c: &Value) -> ContainerSpec {
    let env = c
        .get("env")
        .and_then(Value::as_array)
        .map(|es| {
            es.iter()
                .filter_map(|e| {
                    let name = str_at(e, &["name"])?;
                    let value = match e.get("value")? {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        _ => return None,
                    };
                    Some((name.to_string(), value))
                })
                .collect()
        })
        .unwrap_or_default();
    let ports = c
        .get("ports")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .filter_map(|p| {
                    let port = p.get("containerPort")?.as_u64()?;
                    Some((
                        str_at(p, &["name"]).map(str::to_string),
                        u16::try_from(port).ok()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    ContainerSpec {
        name: str_at(c, &["name"]).unwrap_or_default().to_string(),
        image: str_at(c, &["image"]).unwrap_or_default().to_string(),
        env,
        ports,
    }
}

/// A Service from a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceSpec {
    pub name: String,
    pub selector: BTreeMap<String, String>,
    pub ports: Vec<ServicePort>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServicePort {
    pub name: Option<String>,
    pub port: u16,
}

pub fn services(objects: &[ManifestObject]) -> Vec<ServiceSpec> {
    objects
        .iter()
        .filter(|o| o.kind == "Service")
        .map(|o| ServiceSpec {
            name: o.name.clone(),
            selector: string_map(at(&o.body, &["spec", "selector"])),
            ports: at(&o.body, &["spec", "ports"])
                .and_then(Value::as_array)
                .map(|ps| {
                    ps.iter()
                        .filter_map(|p| {
                            Some(ServicePort {
                                name: str_at(p, &["name"]).map(str::to_string),
                                port: u16::try_from(p.get("port")?.as_u64()?).ok()?,
                            })
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect()
}
