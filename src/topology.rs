//! Which pods, containers, users and services make up a deployment, found
//! from the releases' manifests and the namespace's pods. Pure functions:
//! the caller fetches releases and pods, this module decides.
//!
//! It works with zero configuration for the demo charts (StatefulSet
//! `kleidia-data-postgres-cluster`, user `yubiuser`), for charts that name
//! things differently (StatefulSet `postgres`, user `kleidiauser`) and for
//! CloudNativePG `Cluster`s (primary pod labelled
//! `cnpg.io/instanceRole=primary`). Pins from the configuration file win.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use serde::Serialize;
use serde_json::Value;

use crate::config::{BackendPins, OpenbaoPins, PostgresPins};

/// The three parts of a Kleidia deployment, in upgrade order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Component {
    Platform,
    Data,
    Services,
}

impl Component {
    pub const ALL: [Component; 3] = [Component::Platform, Component::Data, Component::Services];

    pub fn as_str(self) -> &'static str {
        match self {
            Component::Platform => "platform",
            Component::Data => "data",
            Component::Services => "services",
        }
    }
}

impl std::fmt::Display for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    #[error("the manifest of release {release} is not valid YAML: {message}")]
    Manifest { release: String, message: String },
    #[error(
        "release {release} has no {what} workload (looked for {looked_for}); it has: {found}. Pin it in the config file ({pin_hint})"
    )]
    NoWorkload {
        release: String,
        what: &'static str,
        looked_for: &'static str,
        found: String,
        pin_hint: &'static str,
    },
    #[error(
        "no pod in namespace {namespace} matches {workload} (selector {selector}); is it scaled to zero or still starting? Check with `kubectl get pods -n {namespace} -l {selector}`"
    )]
    NoPods {
        namespace: String,
        workload: String,
        selector: String,
    },
    #[error(
        "the pinned {what} pod {pod} does not exist in namespace {namespace}; pods there: {found}. Fix {pin} in the config file"
    )]
    PinnedPodMissing {
        what: &'static str,
        pod: String,
        namespace: String,
        found: String,
        pin: &'static str,
    },
    #[error(
        "the pinned selector {selector:?} is not of the form key=value[,key=value]. Fix {pin} in the config file"
    )]
    BadSelector { selector: String, pin: &'static str },
    #[error(
        "cannot tell which PostgreSQL user to connect as in {workload}: no POSTGRES_USER/PGUSER literal in container {container} and no user in the release values. Set postgres.user in the config file"
    )]
    NoDatabaseUser { workload: String, container: String },
    #[error(
        "release {release} has no Service for the backend (looked for a Service selecting {workload}, or named *backend*); Services: {found}. Set backend.service in the config file"
    )]
    NoBackendService {
        release: String,
        workload: String,
        found: String,
    },
    #[error("Service {service} has no port{detail}. Set backend.port in the config file")]
    NoServicePort { service: String, detail: String },
}

/// One object of a rendered manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestObject {
    pub kind: String,
    pub api_version: String,
    pub name: String,
    pub body: Value,
}

/// Splits Helm's multi-document manifest. Empty documents (and comments
/// such as `# Source:`) are skipped.
pub fn parse_manifest(release: &str, text: &str) -> Result<Vec<ManifestObject>, TopologyError> {
    use serde::Deserialize;
    let mut out = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let value = Value::deserialize(doc).map_err(|e| TopologyError::Manifest {
            release: release.to_string(),
            message: e.to_string(),
        })?;
        if !value.is_object() {
            continue;
        }
        let kind = str_at(&value, &["kind"]).unwrap_or_default().to_string();
        if kind.is_empty() {
            continue;
        }
        out.push(ManifestObject {
            api_version: str_at(&value, &["apiVersion"])
                .unwrap_or_default()
                .to_string(),
            name: str_at(&value, &["metadata", "name"])
                .unwrap_or_default()
                .to_string(),
            kind,
            body: value,
        });
    }
    Ok(out)
}

fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, key| cur.get(*key))
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(v, path).and_then(Value::as_str)
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| match v {
                    Value::String(s) => Some((k.clone(), s.clone())),
                    Value::Number(n) => Some((k.clone(), n.to_string())),
                    Value::Bool(b) => Some((k.clone(), b.to_string())),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A Kubernetes label selector (matchLabels and matchExpressions).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Selector {
    pub match_labels: BTreeMap<String, String>,
    pub expressions: Vec<SelectorExpression>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SelectorExpression {
    pub key: String,
    pub operator: String,
    pub values: Vec<String>,
}

impl Selector {
    pub fn from_labels(labels: BTreeMap<String, String>) -> Self {
        Self {
            match_labels: labels,
            expressions: Vec::new(),
        }
    }

    fn from_value(v: Option<&Value>) -> Self {
        let Some(v) = v else {
            return Self::default();
        };
        let expressions = v
            .get("matchExpressions")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|e| SelectorExpression {
                        key: str_at(e, &["key"]).unwrap_or_default().to_string(),
                        operator: str_at(e, &["operator"]).unwrap_or_default().to_string(),
                        values: e
                            .get("values")
                            .and_then(Value::as_array)
                            .map(|vs| {
                                vs.iter()
                                    .filter_map(|x| x.as_str().map(str::to_string))
                                    .collect()
                            })
                            .unwrap_or_default(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            match_labels: string_map(v.get("matchLabels")),
            expressions,
        }
    }

    /// Parses `k=v,k2=v2` (the form pins use).
    pub fn parse(text: &str) -> Option<Self> {
        let mut labels = BTreeMap::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=')?;
            let k = k.trim();
            if k.is_empty() {
                return None;
            }
            labels.insert(k.to_string(), v.trim_start_matches('=').trim().to_string());
        }
        (!labels.is_empty()).then(|| Self::from_labels(labels))
    }

    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.expressions.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        if self.is_empty() {
            return false;
        }
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.expressions.iter().all(|e| {
                let val = labels.get(&e.key);
                match e.operator.as_str() {
                    "In" => val.is_some_and(|v| e.values.contains(v)),
                    "NotIn" => val.is_none_or(|v| !e.values.contains(v)),
                    "Exists" => val.is_some(),
                    "DoesNotExist" => val.is_none(),
                    _ => false,
                }
            })
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts: Vec<String> = self
            .match_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        for e in &self.expressions {
            parts.push(match e.operator.as_str() {
                "Exists" => e.key.clone(),
                "DoesNotExist" => format!("!{}", e.key),
                op => format!("{} {} ({})", e.key, op.to_lowercase(), e.values.join(",")),
            });
        }
        f.write_str(&parts.join(","))
    }
}

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

/// What discovery needs from a pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PodInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub ready: bool,
    pub phase: String,
    pub containers: Vec<String>,
}

impl PodInfo {
    pub fn from_pod(p: &Pod) -> Self {
        let ready = p
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        Self {
            name: p.metadata.name.clone().unwrap_or_default(),
            labels: p.metadata.labels.clone().unwrap_or_default(),
            ready,
            phase: p
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_default(),
            containers: p
                .spec
                .as_ref()
                .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
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
fn best_container(
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
fn pick_pod(
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

fn pod_from_pins(
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

fn names(it: impl Iterator<Item = String>) -> String {
    let v: Vec<String> = it.collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

fn describe_workloads(ws: &[Workload]) -> String {
    names(ws.iter().map(|w| {
        let images: Vec<_> = w.containers.iter().map(|c| c.image.as_str()).collect();
        format!("{} (images: {})", w.display(), images.join(", "))
    }))
}

/// Where PostgreSQL runs and how to connect to it from inside its pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PostgresTarget {
    pub workload: String,
    pub pod: String,
    pub container: String,
    pub user: String,
    pub database: String,
}

/// How strongly a container looks like PostgreSQL (0: not at all).
fn postgres_score(c: &ContainerSpec) -> u8 {
    let image = c.image_name().to_ascii_lowercase();
    let name = c.name.to_ascii_lowercase();
    if image.contains("exporter") || name.contains("exporter") || image.contains("pgbouncer") {
        return 0;
    }
    if matches!(
        image.as_str(),
        "postgres" | "postgresql" | "postgis" | "timescaledb"
    ) {
        90
    } else if name == "postgres" || name == "postgresql" {
        80
    } else if image.contains("postgres") || name.contains("postgres") {
        50
    } else {
        0
    }
}

const USER_ENV: [&str; 5] = [
    "POSTGRES_USER",
    "PGUSER",
    "POSTGRESQL_USERNAME",
    "POSTGRES_USERNAME",
    "POSTGRESQL_USER",
];
const DATABASE_ENV: [&str; 5] = [
    "POSTGRES_DB",
    "PGDATABASE",
    "POSTGRESQL_DATABASE",
    "POSTGRES_DATABASE",
    "POSTGRESQL_DB",
];

/// Finds PostgreSQL in the data release.
pub fn discover_postgres(
    release: &str,
    objects: &[ManifestObject],
    values: &Value,
    pods: &[PodInfo],
    namespace: &str,
    pins: &PostgresPins,
) -> Result<PostgresTarget, TopologyError> {
    let ws = workloads(objects);
    let best = best_container(&ws, |w, c| {
        if w.kind == WorkloadKind::CnpgCluster {
            100
        } else {
            postgres_score(c)
        }
    });

    let pinned_pod = pod_from_pins(
        pins.pod.as_deref(),
        pins.selector.as_deref(),
        pods,
        namespace,
        "PostgreSQL",
        "postgres",
    )?;

    let Some((workload, container)) = best else {
        // Without a workload, pins must say everything.
        if let (Some(pod), Some(user)) = (pinned_pod.clone(), pins.user.clone()) {
            return Ok(PostgresTarget {
                workload: "pinned".into(),
                pod,
                container: pins.container.clone().unwrap_or_else(|| "postgres".into()),
                database: pins.database.clone().unwrap_or_else(|| "postgres".into()),
                user,
            });
        }
        return Err(TopologyError::NoWorkload {
            release: release.to_string(),
            what: "PostgreSQL",
            looked_for: "a container with a postgres image or name, or a CloudNativePG Cluster",
            found: describe_workloads(&ws),
            pin_hint: "postgres.pod or postgres.selector, plus postgres.user",
        });
    };

    let pod = pinned_pod.map_or_else(|| pick_pod(workload, pods, namespace), Ok)?;

    let (env_user, env_db) = if workload.kind == WorkloadKind::CnpgCluster {
        // CloudNativePG pods allow the `postgres` superuser over the local
        // socket (peer auth); the application database is initdb's.
        let db = str_at(&workload.body, &["spec", "bootstrap", "initdb", "database"])
            .unwrap_or("app")
            .to_string();
        (Some("postgres".to_string()), Some(db))
    } else {
        (
            USER_ENV.iter().find_map(|k| container.env.get(*k).cloned()),
            DATABASE_ENV
                .iter()
                .find_map(|k| container.env.get(*k).cloned()),
        )
    };

    let user = pins
        .user
        .clone()
        .or(env_user)
        .or_else(|| value_search(values, USER_KEYS))
        .ok_or_else(|| TopologyError::NoDatabaseUser {
            workload: workload.display(),
            container: container.name.clone(),
        })?;
    let database = pins
        .database
        .clone()
        .or(env_db)
        .or_else(|| value_search(values, DATABASE_KEYS))
        .unwrap_or_else(|| "postgres".into());

    Ok(PostgresTarget {
        workload: workload.display(),
        pod,
        container: pins
            .container
            .clone()
            .unwrap_or_else(|| container.name.clone()),
        user,
        database,
    })
}

const USER_KEYS: &[&str] = &[
    "username",
    "user",
    "postgresUser",
    "postgresqlUsername",
    "dbUser",
    "databaseUser",
];
const DATABASE_KEYS: &[&str] = &[
    "database",
    "db",
    "dbName",
    "databaseName",
    "postgresDatabase",
    "postgresqlDatabase",
    "postgresDB",
];
const DATABASE_CONTEXT: &[&str] = &["postgres", "postgresql", "database", "db", "auth", "pg"];

/// Finds a string under one of `keys` whose path mentions PostgreSQL or a
/// database (e.g. `postgres.user`, `postgresql.auth.username`). Shallow
/// matches win; ties go to the key order given.
fn value_search(values: &Value, keys: &[&str]) -> Option<String> {
    fn walk<'a>(
        v: &'a Value,
        path: &mut Vec<String>,
        keys: &[&str],
        hits: &mut Vec<(usize, usize, &'a str)>,
    ) {
        let Value::Object(map) = v else { return };
        for (k, child) in map {
            if let (Some(rank), Value::String(s)) = (keys.iter().position(|key| key == k), child)
                && !s.is_empty()
                && path.iter().any(|p| {
                    let p = p.to_ascii_lowercase();
                    DATABASE_CONTEXT.iter().any(|c| p.contains(c))
                })
            {
                hits.push((path.len(), rank, s.as_str()));
            }
            if path.len() < 6 {
                path.push(k.clone());
                walk(child, path, keys, hits);
                path.pop();
            }
        }
    }
    let mut hits = Vec::new();
    walk(values, &mut Vec::new(), keys, &mut hits);
    hits.sort_by_key(|(depth, rank, _)| (*depth, *rank));
    hits.first().map(|(_, _, s)| s.to_string())
}

/// Where OpenBao runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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

/// The backend's Service, reached through the API server's service proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackendTarget {
    pub service: String,
    pub port: u16,
}

fn is_backend(w: &Workload) -> bool {
    let n = w.name.to_ascii_lowercase();
    n.contains("backend")
        || n.ends_with("-api")
        || w.containers.iter().any(|c| {
            c.name.to_ascii_lowercase().contains("backend")
                || c.image_name().to_ascii_lowercase().contains("backend")
        })
        || w.template_labels
            .get("app.kubernetes.io/component")
            .is_some_and(|v| v == "backend")
}

/// Finds the backend Service in the services release.
pub fn discover_backend(
    release: &str,
    objects: &[ManifestObject],
    pins: &BackendPins,
) -> Result<BackendTarget, TopologyError> {
    let svcs = services(objects);
    let ws = workloads(objects);
    let backend = ws.iter().find(|w| is_backend(w));
    let service = if let Some(name) = &pins.service {
        match svcs.iter().find(|s| &s.name == name) {
            Some(s) => s.clone(),
            None => {
                // Pinned to a Service outside the release: trust the pin.
                return Ok(BackendTarget {
                    service: name.clone(),
                    port: pins.port.unwrap_or(80),
                });
            }
        }
    } else {
        let by_selector = backend.and_then(|w| {
            svcs.iter().find(|s| {
                !s.selector.is_empty()
                    && s.selector
                        .iter()
                        .all(|(k, v)| w.template_labels.get(k) == Some(v))
            })
        });
        let by_name = || {
            svcs.iter()
                .find(|s| s.name.to_ascii_lowercase().contains("backend"))
        };
        by_selector
            .or_else(by_name)
            .cloned()
            .ok_or_else(|| TopologyError::NoBackendService {
                release: release.to_string(),
                workload: backend
                    .map(|w| w.display())
                    .unwrap_or_else(|| "a *backend* workload".into()),
                found: names(svcs.iter().map(|s| s.name.clone())),
            })?
    };
    let port = match pins.port {
        Some(p) => p,
        None => service
            .ports
            .iter()
            .find(|p| p.name.as_deref() == Some("http"))
            .or_else(|| service.ports.first())
            .map(|p| p.port)
            .ok_or_else(|| TopologyError::NoServicePort {
                service: service.name.clone(),
                detail: String::new(),
            })?,
    };
    Ok(BackendTarget {
        service: service.name,
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// PostgreSQL discovered in release `kleidia-data`, namespace
    /// `kleidia`, without chart values.
    fn postgres_in_data(
        objs: &[ManifestObject],
        pods: &[PodInfo],
        pins: &PostgresPins,
    ) -> Result<PostgresTarget, TopologyError> {
        discover_postgres("kleidia-data", objs, &Value::Null, pods, "kleidia", pins)
    }

    fn pod(name: &str, labels: &[(&str, &str)], ready: bool) -> PodInfo {
        PodInfo {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ready,
            phase: "Running".into(),
            containers: vec![],
        }
    }

    const DEMO_DATA: &str = r#"---
# Source: kleidia-data/templates/secret.yaml
apiVersion: v1
kind: Secret
metadata:
  name: kleidia-data-postgres-secret
---
# Source: kleidia-data/templates/service.yaml
apiVersion: v1
kind: Service
metadata:
  name: kleidia-data-postgres-cluster
spec:
  selector:
    app: postgres-cluster
  ports:
  - port: 5432
---
# Source: kleidia-data/templates/statefulset.yaml
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: kleidia-data-postgres-cluster
spec:
  serviceName: kleidia-data-postgres-cluster
  selector:
    matchLabels:
      app: postgres-cluster
  template:
    metadata:
      labels:
        app: postgres-cluster
    spec:
      containers:
      - name: postgres
        image: postgres:15-alpine
        env:
        - name: POSTGRES_USER
          value: yubiuser
        - name: POSTGRES_DB
          value: kleidia
        - name: POSTGRES_PASSWORD
          valueFrom:
            secretKeyRef: {name: kleidia-data-postgres-secret, key: password}
        ports:
        - containerPort: 5432
          name: postgres
      - name: metrics
        image: quay.io/prometheuscommunity/postgres-exporter:v0.15.0
"#;

    #[test]
    fn demo_data_chart() {
        let objs = parse_manifest("kleidia-data", DEMO_DATA).unwrap();
        assert_eq!(objs.len(), 3);
        let pods = vec![
            pod(
                "kleidia-data-postgres-cluster-1",
                &[("app", "postgres-cluster")],
                true,
            ),
            pod(
                "kleidia-data-postgres-cluster-0",
                &[("app", "postgres-cluster")],
                true,
            ),
            pod("other-0", &[("app", "other")], true),
        ];
        let t = postgres_in_data(&objs, &pods, &Default::default()).unwrap();
        assert_eq!(
            t,
            PostgresTarget {
                workload: "StatefulSet kleidia-data-postgres-cluster".into(),
                pod: "kleidia-data-postgres-cluster-0".into(),
                container: "postgres".into(),
                user: "yubiuser".into(),
                database: "kleidia".into(),
            }
        );
    }

    #[test]
    fn differently_named_statefulset_with_user_from_values() {
        let manifest = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: postgres}
spec:
  selector: {matchLabels: {app.kubernetes.io/name: postgres}}
  template:
    metadata: {labels: {app.kubernetes.io/name: postgres}}
    spec:
      containers:
      - name: db
        image: docker.io/library/postgres:16
        env:
        - name: POSTGRES_USER
          valueFrom: {secretKeyRef: {name: pg, key: user}}
"#;
        let objs = parse_manifest("kleidia-data", manifest).unwrap();
        let values = json!({"image": {"tag": "16"}, "postgres": {"auth": {"username": "kleidiauser", "database": "kleidia"}}});
        let pods = vec![pod(
            "postgres-0",
            &[("app.kubernetes.io/name", "postgres")],
            true,
        )];
        let t = discover_postgres(
            "kleidia-data",
            &objs,
            &values,
            &pods,
            "kleidia",
            &Default::default(),
        )
        .unwrap();
        assert_eq!(t.pod, "postgres-0");
        assert_eq!(t.container, "db");
        assert_eq!(t.user, "kleidiauser");
        assert_eq!(t.database, "kleidia");
    }

    #[test]
    fn literal_env_user_kleidiauser() {
        let manifest = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: postgres}
spec:
  selector: {matchLabels: {app: postgres}}
  template:
    metadata: {labels: {app: postgres}}
    spec:
      containers:
      - name: postgres
        image: postgres:16
        env: [{name: PGUSER, value: kleidiauser}, {name: PGDATABASE, value: kleidia}]
"#;
        let objs = parse_manifest("d", manifest).unwrap();
        let pods = vec![pod("postgres-0", &[("app", "postgres")], false)];
        let t =
            discover_postgres("d", &objs, &Value::Null, &pods, "ns", &Default::default()).unwrap();
        assert_eq!(
            (t.user.as_str(), t.database.as_str()),
            ("kleidiauser", "kleidia")
        );
    }

    #[test]
    fn cloudnative_pg_cluster_uses_the_primary() {
        let manifest = r#"
apiVersion: postgresql.cnpg.io/v1
kind: Cluster
metadata: {name: kleidia-db}
spec:
  instances: 3
  imageName: ghcr.io/cloudnative-pg/postgresql:16.4
  bootstrap: {initdb: {database: kleidia, owner: kleidiauser}}
"#;
        let objs = parse_manifest("d", manifest).unwrap();
        let pods = vec![
            pod(
                "kleidia-db-1",
                &[
                    ("cnpg.io/cluster", "kleidia-db"),
                    ("cnpg.io/instanceRole", "replica"),
                ],
                true,
            ),
            pod(
                "kleidia-db-2",
                &[
                    ("cnpg.io/cluster", "kleidia-db"),
                    ("cnpg.io/instanceRole", "primary"),
                ],
                true,
            ),
            pod(
                "kleidia-db-3",
                &[
                    ("cnpg.io/cluster", "kleidia-db"),
                    ("cnpg.io/instanceRole", "replica"),
                ],
                true,
            ),
        ];
        let t =
            discover_postgres("d", &objs, &Value::Null, &pods, "ns", &Default::default()).unwrap();
        assert_eq!(t.pod, "kleidia-db-2");
        assert_eq!(t.container, "postgres");
        assert_eq!(t.user, "postgres");
        assert_eq!(t.database, "kleidia");
        assert_eq!(t.workload, "Cluster kleidia-db");
    }

    #[test]
    fn pins_win_over_discovery() {
        let objs = parse_manifest("kleidia-data", DEMO_DATA).unwrap();
        let pods = vec![
            pod(
                "kleidia-data-postgres-cluster-0",
                &[("app", "postgres-cluster")],
                true,
            ),
            pod("pg-replica", &[("role", "x")], true),
        ];
        let pins = PostgresPins {
            pod: None,
            selector: Some("role=x".into()),
            container: Some("c".into()),
            user: Some("admin".into()),
            database: Some("db2".into()),
        };
        let t = postgres_in_data(&objs, &pods, &pins).unwrap();
        assert_eq!(
            (
                t.pod.as_str(),
                t.container.as_str(),
                t.user.as_str(),
                t.database.as_str()
            ),
            ("pg-replica", "c", "admin", "db2")
        );
        let pins = PostgresPins {
            pod: Some("ghost-0".into()),
            ..Default::default()
        };
        let err = postgres_in_data(&objs, &pods, &pins).unwrap_err();
        assert!(err.to_string().contains("ghost-0"), "{err}");
        assert!(err.to_string().contains("postgres.pod"), "{err}");
    }

    #[test]
    fn missing_postgres_names_what_was_found() {
        let manifest = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec: {containers: [{name: web, image: nginx:1}]}\n";
        let objs = parse_manifest("kleidia-data", manifest).unwrap();
        let err = postgres_in_data(&objs, &[], &Default::default()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("Deployment web") && msg.contains("nginx:1"),
            "{msg}"
        );
        assert!(msg.contains("postgres.pod"), "{msg}");
    }

    #[test]
    fn no_pods_is_reported_with_the_selector() {
        let objs = parse_manifest("kleidia-data", DEMO_DATA).unwrap();
        let err = postgres_in_data(&objs, &[], &Default::default()).unwrap_err();
        assert!(err.to_string().contains("app=postgres-cluster"), "{err}");
    }

    const DEMO_PLATFORM: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: kleidia-platform-openbao-agent-injector}
spec:
  selector: {matchLabels: {app.kubernetes.io/name: openbao-agent-injector}}
  template:
    metadata: {labels: {app.kubernetes.io/name: openbao-agent-injector}}
    spec: {containers: [{name: sidecar-injector, image: "openbao/openbao-k8s:1.4"}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: kleidia-platform-openbao}
spec:
  selector: {matchLabels: {app.kubernetes.io/name: openbao, app.kubernetes.io/instance: kleidia-platform}}
  template:
    metadata: {labels: {app.kubernetes.io/name: openbao, app.kubernetes.io/instance: kleidia-platform}}
    spec:
      containers:
      - name: openbao
        image: quay.io/openbao/openbao:2.4.1
        ports: [{containerPort: 8200, name: http}, {containerPort: 8201, name: https-internal}]
"#;

    #[test]
    fn demo_platform_chart() {
        let objs = parse_manifest("kleidia-platform", DEMO_PLATFORM).unwrap();
        let labels = [
            ("app.kubernetes.io/name", "openbao"),
            ("app.kubernetes.io/instance", "kleidia-platform"),
        ];
        let pods = vec![
            pod("kleidia-platform-openbao-0", &labels, false),
            pod(
                "kleidia-platform-openbao-agent-injector-abc",
                &[("app.kubernetes.io/name", "openbao-agent-injector")],
                true,
            ),
        ];
        let t = discover_openbao(
            "kleidia-platform",
            &objs,
            &pods,
            "kleidia",
            &Default::default(),
        )
        .unwrap();
        assert_eq!(
            t,
            OpenbaoTarget {
                workload: "StatefulSet kleidia-platform-openbao".into(),
                pod: "kleidia-platform-openbao-0".into(),
                container: "openbao".into(),
                port: 8200,
            }
        );
    }

    #[test]
    fn vault_image_by_label_only() {
        let manifest = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: secrets}
spec:
  selector: {matchExpressions: [{key: app.kubernetes.io/name, operator: In, values: [openbao]}]}
  template:
    metadata: {labels: {app.kubernetes.io/name: openbao}}
    spec: {containers: [{name: server, image: "registry.local/custom-bao-build:7"}]}
"#;
        let objs = parse_manifest("p", manifest).unwrap();
        let pods = vec![pod(
            "secrets-0",
            &[("app.kubernetes.io/name", "openbao")],
            true,
        )];
        let t = discover_openbao("p", &objs, &pods, "ns", &Default::default()).unwrap();
        assert_eq!(
            (t.pod.as_str(), t.container.as_str()),
            ("secrets-0", "server")
        );
    }

    const DEMO_SERVICES: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: kleidia-services-frontend}
spec:
  selector: {app: kleidia-frontend}
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: kleidia-services-backend}
spec:
  selector: {app: kleidia-backend}
  ports: [{name: metrics, port: 9090}, {name: http, port: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: kleidia-services-backend}
spec:
  selector: {matchLabels: {app: kleidia-backend}}
  template:
    metadata: {labels: {app: kleidia-backend, tier: api}}
    spec: {containers: [{name: backend, image: "kleidia/backend:1.4.0"}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: kleidia-services-frontend}
spec:
  selector: {matchLabels: {app: kleidia-frontend}}
  template:
    metadata: {labels: {app: kleidia-frontend}}
    spec: {containers: [{name: frontend, image: "kleidia/frontend:1.4.0"}]}
"#;

    #[test]
    fn demo_services_chart() {
        let objs = parse_manifest("kleidia-services", DEMO_SERVICES).unwrap();
        let t = discover_backend("kleidia-services", &objs, &Default::default()).unwrap();
        assert_eq!(
            t,
            BackendTarget {
                service: "kleidia-services-backend".into(),
                port: 8080
            }
        );
        let pinned = discover_backend(
            "kleidia-services",
            &objs,
            &BackendPins {
                service: Some("kleidia-services-backend".into()),
                port: Some(9090),
            },
        )
        .unwrap();
        assert_eq!(pinned.port, 9090);
    }

    #[test]
    fn backend_service_found_by_selector_when_names_differ() {
        let manifest = r#"
apiVersion: v1
kind: Service
metadata: {name: api}
spec: {selector: {app: core}, ports: [{port: 3000}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: kleidia-backend}
spec:
  selector: {matchLabels: {app: core}}
  template:
    metadata: {labels: {app: core}}
    spec: {containers: [{name: app, image: "x/y:1"}]}
"#;
        let objs = parse_manifest("s", manifest).unwrap();
        let t = discover_backend("s", &objs, &Default::default()).unwrap();
        assert_eq!((t.service.as_str(), t.port), ("api", 3000));
        let err = discover_backend(
            "s",
            &parse_manifest("s", "kind: ConfigMap\nmetadata: {name: c}").unwrap(),
            &Default::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("backend.service"), "{err}");
    }

    #[test]
    fn release_workloads_pair_each_workload_with_its_pods() {
        let objs = parse_manifest("kleidia-services", DEMO_SERVICES).unwrap();
        let pods = vec![
            pod(
                "kleidia-services-backend-a",
                &[("app", "kleidia-backend"), ("tier", "api")],
                true,
            ),
            pod(
                "kleidia-services-backend-b",
                &[("app", "kleidia-backend")],
                false,
            ),
            pod(
                "kleidia-services-frontend-a",
                &[("app", "kleidia-frontend")],
                true,
            ),
        ];
        let ws = release_workloads(&objs, &pods);
        assert_eq!(ws.len(), 2);
        let backend = ws
            .iter()
            .find(|w| w.workload.name == "kleidia-services-backend")
            .unwrap();
        assert_eq!(backend.pods.len(), 2);
        assert_eq!(backend.ready(), 1);
        assert_eq!(backend.pods[0].name, "kleidia-services-backend-a");
        let frontend = ws
            .iter()
            .find(|w| w.workload.name == "kleidia-services-frontend")
            .unwrap();
        assert_eq!(frontend.pods.len(), 1);
    }

    #[test]
    fn selectors() {
        let s = Selector::parse("a=b, c=d").unwrap();
        assert!(s.matches(&[("a".into(), "b".into()), ("c".into(), "d".into())].into()));
        assert!(!s.matches(&[("a".into(), "b".into())].into()));
        assert!(Selector::parse("novalue").is_none());
        assert!(!Selector::default().matches(&BTreeMap::new()));
        assert_eq!(image_name("ghcr.io/a/b/postgres:16@sha256:00"), "postgres");
        assert_eq!(image_name("postgres"), "postgres");
    }

    #[test]
    fn invalid_manifest_yaml_is_named() {
        let err = parse_manifest("kleidia-data", "kind: [").unwrap_err();
        assert!(err.to_string().contains("kleidia-data"), "{err}");
    }
}
