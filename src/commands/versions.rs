//! `versions`: releases, charts and server versions in one report, with the
//! compatibility matrix. Everything is gathered concurrently under one
//! deadline; a probe that fails marks its own row and hides nothing else.

use std::future::Future;
use std::sync::Arc;

use futures::FutureExt;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use serde::Serialize;
use tokio::time::Instant;

use crate::cli::{OutputFormat, VersionsArgs};
use crate::cluster::ClusterError;
use crate::error::Error;
use crate::helm::release::{Release, ReleaseError, ReleaseStore};
use crate::probes::{self, backend, kubernetes, openbao, postgres};
use crate::report::{Mark, Painter, write_machine};
use crate::target::{Target, parse_duration};
use crate::topology::{self, Component, ManifestObject, PodInfo, TopologyError};

/// Minimum versions from the runbook's compatibility matrix.
pub const REQUIRED_KUBERNETES: (u64, u64) = (1, 24);
pub const REQUIRED_HELM: (u64, u64) = (3, 8);
pub const REQUIRED_POSTGRESQL: (u64, u64) = (13, 0);
pub const REQUIRED_OPENBAO: (u64, u64) = (2, 4);

/// The report, in the shape `-o json`/`-o yaml` print
/// (documented in docs/versions.md).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionsReport {
    pub namespace: String,
    pub context: String,
    pub server: String,
    pub components: Vec<ComponentRow>,
    pub servers: Servers,
    pub compatibility: Vec<CompatibilityRow>,
    /// True when every probe answered, every release is deployed and
    /// everything is compatible (exit code 0).
    pub ok: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentRow {
    pub component: Component,
    pub release: String,
    pub chart: Option<String>,
    pub chart_version: Option<String>,
    pub app_version: Option<String>,
    pub revision: Option<u32>,
    pub status: Option<String>,
    pub first_deployed: Option<String>,
    pub last_deployed: Option<String>,
    pub description: Option<String>,
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<RevisionRow>>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionRow {
    pub revision: u32,
    pub status: String,
    pub chart: Option<String>,
    pub chart_version: Option<String>,
    pub app_version: Option<String>,
    pub last_deployed: Option<String>,
    pub description: String,
}

#[derive(Debug, Clone, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Servers {
    pub kubernetes: KubernetesServer,
    pub helm: HelmClient,
    pub postgresql: PostgresServer,
    pub openbao: OpenbaoServer,
    pub backend: BackendServer,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct KubernetesServer {
    pub version: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct HelmClient {
    /// `None` when no helm binary was found (not an error).
    pub version: Option<String>,
    pub path: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct PostgresServer {
    pub version: Option<String>,
    pub full_version: Option<String>,
    pub pod: Option<String>,
    pub container: Option<String>,
    pub user: Option<String>,
    pub database: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct OpenbaoServer {
    pub version: Option<String>,
    pub initialized: Option<bool>,
    pub sealed: Option<bool>,
    pub pod: Option<String>,
    pub container: Option<String>,
    pub via: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct BackendServer {
    pub version: Option<String>,
    pub status: Option<String>,
    pub http_status: Option<u16>,
    pub service: Option<String>,
    pub port: Option<u16>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CompatibilityRow {
    pub item: String,
    pub required: String,
    pub found: Option<String>,
    /// `null` when the version is unknown (probe failed, helm not found).
    pub ok: Option<bool>,
}

/// A probe that did not answer in time, or answered with an error.
#[derive(Debug)]
enum Failed<E> {
    TimedOut,
    Error(E),
}

async fn within<T, E>(
    deadline: Instant,
    f: impl Future<Output = Result<T, E>>,
) -> Result<T, Failed<E>> {
    match tokio::time::timeout_at(deadline, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Failed::Error(e)),
        Err(_) => Err(Failed::TimedOut),
    }
}

fn failure_text<E: std::fmt::Display>(f: &Failed<E>, timeout: Duration) -> String {
    match f {
        Failed::TimedOut => format!("no answer within {}", humantime(timeout)),
        Failed::Error(e) => e.to_string(),
    }
}

fn humantime(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// A release lookup: latest revision and, with `--history`, all of them.
struct Lookup {
    latest: Option<Release>,
    history: Option<Vec<Release>>,
}

async fn lookup(store: &ReleaseStore, name: &str, history: bool) -> Result<Lookup, ReleaseError> {
    if history {
        let all = store.history(name).await?;
        Ok(Lookup {
            latest: all.last().cloned(),
            history: Some(all),
        })
    } else {
        Ok(Lookup {
            latest: store.latest(name).await?,
            history: None,
        })
    }
}

pub async fn run(target: &Target, args: &VersionsArgs) -> Result<u8, Error> {
    let timeout = parse_duration(&args.timeout).map_err(|reason| Error::Usage {
        what: format!("--timeout has an invalid duration {:?}", args.timeout),
        reason: format!("{reason}; use e.g. 30s or 2m"),
    })?;
    let report = gather(target, timeout, args.history).await?;
    let mut out = Vec::new();
    match target.settings.output {
        OutputFormat::Table => {
            render_table(
                &report,
                Painter {
                    color: target.settings.color,
                },
                &mut out,
            )?;
        }
        format => write_machine(format, &report, &mut out)?,
    }
    crate::app::write_stdout(&out)?;
    Ok(if report.ok { 0 } else { 1 })
}

/// A component's target in its release's manifest, for components whose
/// discovery needs the namespace's pods; the first failure (no release, no
/// pod list, a bad manifest, no match) is the answer.
async fn discover_with_pods<T>(
    release: Result<Release, String>,
    pods: impl Future<Output = Result<Arc<Vec<PodInfo>>, String>>,
    discover: impl FnOnce(&Release, &[ManifestObject], &[PodInfo]) -> Result<T, TopologyError>,
) -> Result<T, String> {
    let release = release?;
    let pods = pods.await?;
    topology::parse_manifest(&release.name, &release.manifest)
        .and_then(|objs| discover(&release, &objs, &pods))
        .map_err(|e| e.to_string())
}

/// Probes a found target under the deadline; `None` when there is no
/// target to probe.
async fn probe_found<'t, T, V, E, F>(
    deadline: Instant,
    found: &'t Result<T, String>,
    probe: impl FnOnce(&'t T) -> F,
) -> Option<Result<V, Failed<E>>>
where
    F: Future<Output = Result<V, E>>,
{
    match found {
        Ok(t) => Some(within(deadline, probe(t)).await),
        Err(_) => None,
    }
}

/// Collects the whole report. Fails only when nothing useful can be shown:
/// the API is unreachable or refuses us, or no release exists.
pub async fn gather(
    target: &Target,
    timeout: Duration,
    history: bool,
) -> Result<VersionsReport, Error> {
    let deadline = Instant::now() + timeout;
    let api = target.api();
    let client = &target.client;
    let ns = target.namespace.as_str();
    let names = &target.settings.releases;
    let store = ReleaseStore::new(client.clone(), api.clone(), ns, target.settings.driver);
    let debug = target.settings.debug;
    crate::report::print_debug(
        debug,
        &format!(
            "target: server {} context {} namespace {} (from {}), releases {}/{}/{}, driver {:?}",
            target.server,
            target.context,
            ns,
            target.namespace_source,
            names.platform,
            names.data,
            names.services,
            target.settings.driver
        ),
    );

    // Each component is a chain (release -> topology -> probe) that starts
    // its probe as soon as its own release is read; the chains, the server
    // version and the helm client run concurrently under one deadline.
    let started = Instant::now();
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pods = async {
        match within(deadline, pods_api.list(&ListParams::default())).await {
            Ok(list) => Ok(Arc::new(
                list.items.iter().map(PodInfo::from_pod).collect::<Vec<_>>(),
            )),
            Err(Failed::TimedOut) => Err(format!(
                "listing pods: no answer within {}",
                humantime(timeout)
            )),
            Err(Failed::Error(e)) => Err(ClusterError::from_kube(
                e,
                &api,
                &format!("list pods in namespace {ns}"),
                "pods",
            )
            .to_string()),
        }
    }
    .shared();
    let pins = &target.settings.pins;
    let latest =
        |l: &Result<Lookup, Failed<ReleaseError>>, name: &str| -> Result<Release, String> {
            match l {
                Ok(Lookup {
                    latest: Some(r), ..
                }) => Ok(r.clone()),
                Ok(Lookup { latest: None, .. }) => {
                    Err(format!("release {name} not found in namespace {ns}"))
                }
                Err(f) => Err(failure_text(f, timeout)),
            }
        };

    let took = |component: &str| {
        crate::report::print_debug(
            debug,
            &format!(
                "{component}: release, topology and probe took {:?}",
                started.elapsed()
            ),
        )
    };

    let platform_chain = async {
        let l = within(deadline, lookup(&store, &names.platform, history)).await;
        let found = discover_with_pods(
            latest(&l, &names.platform),
            pods.clone(),
            |r, objs, pods| topology::discover_openbao(&r.name, objs, pods, ns, &pins.openbao),
        )
        .await;
        let probe = probe_found(deadline, &found, |t| openbao::status(client, &api, ns, t)).await;
        took("openbao");
        (l, found, probe)
    };
    let data_chain = async {
        let l = within(deadline, lookup(&store, &names.data, history)).await;
        let found = discover_with_pods(latest(&l, &names.data), pods.clone(), |r, objs, pods| {
            topology::discover_postgres(&r.name, objs, &r.merged_values(), pods, ns, &pins.postgres)
        })
        .await;
        let probe = probe_found(deadline, &found, |t| postgres::version(client, &api, ns, t)).await;
        took("postgresql");
        (l, found, probe)
    };
    let services_chain = async {
        let l = within(deadline, lookup(&store, &names.services, history)).await;
        let found = latest(&l, &names.services).and_then(|r| {
            topology::parse_manifest(&r.name, &r.manifest)
                .and_then(|objs| topology::discover_backend(&r.name, &objs, &pins.backend))
                .map_err(|e| e.to_string())
        });
        let probe = probe_found(deadline, &found, |t| backend::health(client, &api, ns, t)).await;
        took("backend");
        (l, found, probe)
    };

    let (
        k8s,
        helm,
        (platform, bao_target, bao),
        (data, pg_target, pg),
        (services, backend_target, be),
    ) = tokio::join!(
        within(deadline, kubernetes::server_version(client, &api)),
        within(deadline, target.settings.helm.version()),
        platform_chain,
        data_chain,
        services_chain,
    );
    crate::report::print_debug(
        debug,
        &format!(
            "topology: postgres {pg_target:?}; openbao {bao_target:?}; backend {backend_target:?}"
        ),
    );

    // Nothing to show if the releases cannot be read at all.
    let mut lookups = [platform, data, services];
    if lookups.iter().all(|l| matches!(l, Err(Failed::TimedOut))) {
        return Err(Error::Timeout {
            what: format!(
                "list {} in namespace {ns}",
                target.settings.driver.resource()
            ),
            after: timeout,
            server: target.server.clone(),
        });
    }
    if let Some(pos) = lookups.iter().position(is_fatal)
        && let Err(Failed::Error(e)) = std::mem::replace(&mut lookups[pos], Err(Failed::TimedOut))
    {
        return Err(e.into());
    }
    if lookups
        .iter()
        .all(|l| matches!(l, Ok(Lookup { latest: None, .. })))
    {
        return Err(Error::NoReleases {
            namespace: ns.to_string(),
            source_of_namespace: target.namespace_source.to_string(),
            looked_for: format!("{}, {}, {}", names.platform, names.data, names.services),
            storage: target.settings.driver.resource().to_string(),
        });
    }

    let [platform, data, services] = lookups;
    let mut components = Vec::new();
    for (component, name, l) in [
        (Component::Platform, &names.platform, &platform),
        (Component::Data, &names.data, &data),
        (Component::Services, &names.services, &services),
    ] {
        components.push(component_row(component, name, l, timeout));
    }

    let mut servers = Servers {
        kubernetes: match &k8s {
            Ok(v) => KubernetesServer {
                version: Some(v.clone()),
                error: None,
            },
            Err(f) => KubernetesServer {
                version: None,
                error: Some(failure_text(f, timeout)),
            },
        },
        helm: HelmClient {
            path: target.settings.helm.bin().map(|p| p.display().to_string()),
            ..Default::default()
        },
        ..Default::default()
    };
    match &helm {
        Ok(v) => servers.helm.version = v.clone(),
        Err(f) => servers.helm.error = Some(failure_text(f, timeout)),
    }

    match &pg_target {
        Ok(t) => {
            servers.postgresql.pod = Some(t.pod.clone());
            servers.postgresql.container = Some(t.container.clone());
            servers.postgresql.user = Some(t.user.clone());
            servers.postgresql.database = Some(t.database.clone());
            match pg.expect("probed when the target is known") {
                Ok(v) => {
                    servers.postgresql.version = Some(v.version);
                    servers.postgresql.full_version = Some(v.full);
                }
                Err(f) => servers.postgresql.error = Some(failure_text(&f, timeout)),
            }
        }
        Err(e) => servers.postgresql.error = Some(e.clone()),
    }
    match &bao_target {
        Ok(t) => {
            servers.openbao.pod = Some(t.pod.clone());
            servers.openbao.container = Some(t.container.clone());
            match bao.expect("probed when the target is known") {
                Ok(s) => {
                    servers.openbao.version = Some(s.version).filter(|v| !v.is_empty());
                    servers.openbao.initialized = Some(s.initialized);
                    servers.openbao.sealed = Some(s.sealed);
                    servers.openbao.via = Some(s.via);
                }
                Err(f) => servers.openbao.error = Some(failure_text(&f, timeout)),
            }
        }
        Err(e) => servers.openbao.error = Some(e.clone()),
    }
    match &backend_target {
        Ok(t) => {
            servers.backend.service = Some(t.service.clone());
            servers.backend.port = Some(t.port);
            match be.expect("probed when the target is known") {
                Ok(h) => {
                    if !h.healthy() {
                        servers.backend.error = Some(format!(
                            "/api/health answered {} with status {}",
                            h.http_status,
                            h.status.as_deref().unwrap_or("(none)")
                        ));
                    }
                    servers.backend.version = h.version;
                    servers.backend.status = h.status;
                    servers.backend.http_status = Some(h.http_status);
                }
                Err(f) => servers.backend.error = Some(failure_text(&f, timeout)),
            }
        }
        Err(e) => servers.backend.error = Some(e.clone()),
    }

    let compatibility = compatibility(&servers);
    let ok = components
        .iter()
        .all(|c| c.error.is_none() && c.status.as_deref() == Some("deployed"))
        && servers.kubernetes.error.is_none()
        && servers.helm.error.is_none()
        && servers.postgresql.error.is_none()
        && servers.openbao.error.is_none()
        && servers.openbao.initialized == Some(true)
        && servers.openbao.sealed == Some(false)
        && servers.backend.error.is_none()
        && compatibility.iter().all(|c| c.ok != Some(false))
        && compatibility
            .iter()
            .filter(|c| c.item != "Helm")
            .all(|c| c.ok == Some(true));

    Ok(VersionsReport {
        namespace: ns.to_string(),
        context: target.context.clone(),
        server: target.server.clone(),
        components,
        servers,
        compatibility,
        ok,
    })
}

/// Errors that make the whole report pointless: the API cannot be reached
/// or refuses these credentials.
fn is_fatal(l: &Result<Lookup, Failed<ReleaseError>>) -> bool {
    matches!(
        l,
        Err(Failed::Error(ReleaseError::Cluster(
            ClusterError::Unreachable { .. }
                | ClusterError::Unauthorized { .. }
                | ClusterError::Forbidden { .. }
        )))
    )
}

fn chart_fields(r: &Release) -> (Option<String>, Option<String>, Option<String>) {
    let m = r.chart_metadata();
    let nonempty = |s: &str| Some(s.to_string()).filter(|s| !s.is_empty());
    (
        m.and_then(|m| nonempty(&m.name)),
        m.and_then(|m| nonempty(&m.version)),
        m.and_then(|m| nonempty(&m.app_version)),
    )
}

fn component_row(
    component: Component,
    name: &str,
    l: &Result<Lookup, Failed<ReleaseError>>,
    timeout: Duration,
) -> ComponentRow {
    let mut row = ComponentRow {
        component,
        release: name.to_string(),
        chart: None,
        chart_version: None,
        app_version: None,
        revision: None,
        status: None,
        first_deployed: None,
        last_deployed: None,
        description: None,
        error: None,
        history: None,
    };
    match l {
        Err(f) => row.error = Some(failure_text(f, timeout)),
        Ok(Lookup { latest: None, .. }) => {
            row.error = Some(format!("release {name} not found"));
        }
        Ok(Lookup {
            latest: Some(r),
            history,
        }) => {
            (row.chart, row.chart_version, row.app_version) = chart_fields(r);
            row.revision = Some(r.version);
            row.status = Some(r.info.status.clone()).filter(|s| !s.is_empty());
            row.first_deployed = r.info.first_deployed.clone();
            row.last_deployed = r.info.last_deployed.clone();
            row.description = Some(r.info.description.clone()).filter(|s| !s.is_empty());
            row.history = history.as_ref().map(|all| {
                all.iter()
                    .map(|r| {
                        let (chart, chart_version, app_version) = chart_fields(r);
                        RevisionRow {
                            revision: r.version,
                            status: r.info.status.clone(),
                            chart,
                            chart_version,
                            app_version,
                            last_deployed: r.info.last_deployed.clone(),
                            description: r.info.description.clone(),
                        }
                    })
                    .collect()
            });
        }
    }
    row
}

fn at_least(found: Option<&str>, min: (u64, u64)) -> Option<bool> {
    let v = probes::parse_version(found?)?;
    Some((v.major, v.minor) >= min)
}

/// The runbook's compatibility matrix against what was found.
pub fn compatibility(s: &Servers) -> Vec<CompatibilityRow> {
    let row = |item: &str, min: (u64, u64), found: Option<&String>| CompatibilityRow {
        item: item.to_string(),
        required: if min.1 == 0 {
            format!(">= {}", min.0)
        } else {
            format!(">= {}.{}", min.0, min.1)
        },
        found: found.cloned(),
        ok: at_least(found.map(String::as_str), min),
    };
    vec![
        row(
            "Kubernetes",
            REQUIRED_KUBERNETES,
            s.kubernetes.version.as_ref(),
        ),
        row("Helm", REQUIRED_HELM, s.helm.version.as_ref()),
        row(
            "PostgreSQL",
            REQUIRED_POSTGRESQL,
            s.postgresql.version.as_ref(),
        ),
        row("OpenBao", REQUIRED_OPENBAO, s.openbao.version.as_ref()),
    ]
}

fn status_mark(status: &str) -> Mark {
    match status {
        "deployed" => Mark::Ok,
        s if s.starts_with("pending") => Mark::Warn,
        _ => Mark::Bad,
    }
}

/// `2026-02-01T10:00:00.123456789Z` -> `2026-02-01 10:00:00 UTC`.
fn short_time(t: Option<&str>) -> String {
    match t {
        None | Some("") => "-".into(),
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .map(|d| {
                d.with_timezone(&chrono::Utc)
                    .format("%Y-%m-%d %H:%M:%S UTC")
                    .to_string()
            })
            .unwrap_or_else(|_| t.to_string()),
    }
}

/// Shortens `text` to one line of at most `max` characters for tables.
fn one_line(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        format!(
            "{}...",
            flat.chars().take(max.saturating_sub(3)).collect::<String>()
        )
    }
}

fn or_dash(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".into())
}

pub fn render_table(
    r: &VersionsReport,
    p: Painter,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    writeln!(
        out,
        "{}",
        p.title(&format!(
            "Kleidia in namespace {} (context {}, {})",
            r.namespace, r.context, r.server
        ))
    )?;
    let mut t = p.table(&[
        "COMPONENT",
        "RELEASE",
        "CHART",
        "CHART VERSION",
        "APP VERSION",
        "REVISION",
        "STATUS",
        "LAST DEPLOYED",
    ]);
    let mut notes = Vec::new();
    for c in &r.components {
        let status = match (&c.status, &c.error) {
            (_, Some(e)) => {
                notes.push(format!("{}: {e}", c.release));
                p.marked("error", Mark::Bad)
            }
            (Some(s), None) => {
                if status_mark(s) != Mark::Ok {
                    notes.push(format!(
                        "{} is {s} at revision {}{}; see `helm history {} -n {}`",
                        c.release,
                        c.revision.unwrap_or_default(),
                        c.description
                            .as_deref()
                            .map(|d| format!(" ({})", one_line(d, 100)))
                            .unwrap_or_default(),
                        c.release,
                        r.namespace
                    ));
                }
                p.marked(s, status_mark(s))
            }
            (None, None) => p.marked("unknown", Mark::Unknown),
        };
        t.add_row(vec![
            comfy_table::Cell::new(c.component.as_str()),
            comfy_table::Cell::new(&c.release),
            comfy_table::Cell::new(or_dash(&c.chart)),
            comfy_table::Cell::new(or_dash(&c.chart_version)),
            comfy_table::Cell::new(or_dash(&c.app_version)),
            comfy_table::Cell::new(
                c.revision
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "-".into()),
            ),
            status,
            comfy_table::Cell::new(short_time(c.last_deployed.as_deref())),
        ]);
    }
    writeln!(out, "{t}")?;

    if r.components.iter().any(|c| c.history.is_some()) {
        writeln!(out, "\n{}", p.title("History"))?;
        let mut h = p.table(&[
            "RELEASE",
            "REVISION",
            "STATUS",
            "CHART VERSION",
            "APP VERSION",
            "UPDATED",
            "DESCRIPTION",
        ]);
        for c in &r.components {
            for rev in c.history.iter().flatten() {
                h.add_row(vec![
                    comfy_table::Cell::new(&c.release),
                    comfy_table::Cell::new(rev.revision),
                    p.marked(
                        &rev.status,
                        if rev.status == "superseded" {
                            Mark::Ok
                        } else {
                            status_mark(&rev.status)
                        },
                    ),
                    comfy_table::Cell::new(or_dash(&rev.chart_version)),
                    comfy_table::Cell::new(or_dash(&rev.app_version)),
                    comfy_table::Cell::new(short_time(rev.last_deployed.as_deref())),
                    comfy_table::Cell::new(one_line(&rev.description, 60)),
                ]);
            }
        }
        writeln!(out, "{h}")?;
    }

    writeln!(out)?;
    let s = &r.servers;
    let mut t = p.table(&["SERVER", "VERSION", "STATE", "WHERE"]);
    let mut server_row =
        |name: &str, version: &Option<String>, state: (String, Mark), place: String| {
            t.add_row(vec![
                comfy_table::Cell::new(name),
                comfy_table::Cell::new(or_dash(version)),
                p.marked(state.0, state.1),
                comfy_table::Cell::new(place),
            ]);
        };
    let answered =
        |e: &Option<String>, what: &str, notes: &mut Vec<String>| -> Option<(String, Mark)> {
            e.as_ref().map(|e| {
                notes.push(format!("{what}: {e}"));
                ("error".to_string(), Mark::Bad)
            })
        };
    let k8s_state =
        answered(&s.kubernetes.error, "Kubernetes", &mut notes).unwrap_or(("up".into(), Mark::Ok));
    server_row(
        "Kubernetes",
        &s.kubernetes.version,
        k8s_state,
        r.server.clone(),
    );
    let helm_state = answered(&s.helm.error, "Helm", &mut notes).unwrap_or_else(|| {
        if s.helm.version.is_some() {
            ("found".into(), Mark::Ok)
        } else {
            ("not found".into(), Mark::Unknown)
        }
    });
    server_row(
        "Helm (client)",
        &s.helm.version,
        helm_state,
        or_dash(&s.helm.path),
    );
    let pg_state =
        answered(&s.postgresql.error, "PostgreSQL", &mut notes).unwrap_or(("up".into(), Mark::Ok));
    let pg_place = match (
        &s.postgresql.pod,
        &s.postgresql.user,
        &s.postgresql.database,
    ) {
        (Some(pod), Some(u), Some(d)) => format!("pod {pod}, user {u}, db {d}"),
        _ => "-".into(),
    };
    server_row("PostgreSQL", &s.postgresql.version, pg_state, pg_place);
    let bao_state = answered(&s.openbao.error, "OpenBao", &mut notes).unwrap_or_else(|| {
        match (s.openbao.initialized, s.openbao.sealed) {
            (Some(false), _) => ("not initialised".into(), Mark::Bad),
            (_, Some(true)) => ("sealed".into(), Mark::Bad),
            (_, Some(false)) => ("unsealed".into(), Mark::Ok),
            _ => ("unknown".into(), Mark::Unknown),
        }
    });
    server_row(
        "OpenBao",
        &s.openbao.version,
        bao_state,
        s.openbao
            .pod
            .as_ref()
            .map(|p| format!("pod {p}"))
            .unwrap_or_else(|| "-".into()),
    );
    let be_state = answered(&s.backend.error, "Backend", &mut notes).unwrap_or_else(|| {
        (
            s.backend.status.clone().unwrap_or_else(|| "up".into()),
            Mark::Ok,
        )
    });
    let be_place = match (&s.backend.service, s.backend.port) {
        (Some(svc), Some(port)) => format!("service {svc}:{port}"),
        _ => "-".into(),
    };
    server_row("Backend", &s.backend.version, be_state, be_place);
    writeln!(out, "{t}")?;

    writeln!(out)?;
    let mut t = p.table(&["COMPATIBILITY", "REQUIRED", "FOUND", ""]);
    for c in &r.compatibility {
        t.add_row(vec![
            comfy_table::Cell::new(&c.item),
            comfy_table::Cell::new(&c.required),
            comfy_table::Cell::new(c.found.clone().unwrap_or_else(|| "unknown".into())),
            p.mark(Mark::from_ok(c.ok)),
        ]);
    }
    writeln!(out, "{t}")?;

    if !notes.is_empty() {
        writeln!(out, "\n{}", p.title("Problems"))?;
        for n in notes {
            writeln!(out, "  - {n}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers(k: &str, h: Option<&str>, pg: &str, bao: &str) -> Servers {
        Servers {
            kubernetes: KubernetesServer {
                version: Some(k.into()),
                error: None,
            },
            helm: HelmClient {
                version: h.map(Into::into),
                ..Default::default()
            },
            postgresql: PostgresServer {
                version: Some(pg.into()),
                ..Default::default()
            },
            openbao: OpenbaoServer {
                version: Some(bao.into()),
                ..Default::default()
            },
            backend: BackendServer::default(),
        }
    }

    #[test]
    fn matrix_marks_each_row() {
        let rows = compatibility(&servers("v1.33.1", Some("v3.16.0"), "15.8", "2.4.1"));
        assert!(rows.iter().all(|r| r.ok == Some(true)), "{rows:?}");
        let rows = compatibility(&servers("v1.23.9", None, "12.4", "2.3.0"));
        let by = |i: &str| rows.iter().find(|r| r.item == i).unwrap().ok;
        assert_eq!(by("Kubernetes"), Some(false));
        assert_eq!(by("Helm"), None);
        assert_eq!(by("PostgreSQL"), Some(false));
        assert_eq!(by("OpenBao"), Some(false));
        assert_eq!(rows[0].required, ">= 1.24");
        assert_eq!(rows[2].required, ">= 13");
    }

    #[test]
    fn times_are_shortened_for_tables() {
        assert_eq!(
            short_time(Some("2026-02-01T10:00:00.123456789Z")),
            "2026-02-01 10:00:00 UTC"
        );
        assert_eq!(
            short_time(Some("2026-02-01T12:00:00+02:00")),
            "2026-02-01 10:00:00 UTC"
        );
        assert_eq!(short_time(Some("garbage")), "garbage");
        assert_eq!(short_time(None), "-");
    }

    fn sample_report() -> VersionsReport {
        let mut s = servers("v1.33.1", None, "15.4", "2.4.1");
        s.openbao.sealed = Some(false);
        s.openbao.initialized = Some(true);
        s.backend.version = Some("1.0.0".into());
        s.backend.error = Some("GET /api/health answered 503".into());
        VersionsReport {
            namespace: "kleidia".into(),
            context: "lab".into(),
            server: "https://127.0.0.1:6443".into(),
            components: vec![ComponentRow {
                component: Component::Data,
                release: "kleidia-data".into(),
                chart: Some("kleidia-data".into()),
                chart_version: Some("1.0.0".into()),
                app_version: Some("15.4".into()),
                revision: Some(2),
                status: Some("pending-upgrade".into()),
                first_deployed: None,
                last_deployed: Some("2026-02-01T10:00:00Z".into()),
                description: None,
                error: None,
                history: None,
            }],
            compatibility: compatibility(&s),
            servers: s,
            ok: false,
        }
    }

    #[test]
    fn json_shape_has_the_documented_keys() {
        let v = serde_json::to_value(sample_report()).unwrap();
        let c = &v["components"][0];
        for key in [
            "component",
            "release",
            "chart",
            "chartVersion",
            "appVersion",
            "revision",
            "status",
        ] {
            assert!(c.get(key).is_some(), "components[].{key} missing: {c}");
        }
        assert_eq!(c["component"], "data");
        assert!(c.get("history").is_none(), "history only with --history");
        for path in [
            "/servers/kubernetes/version",
            "/servers/postgresql/version",
            "/servers/openbao/version",
            "/servers/openbao/sealed",
            "/servers/backend/version",
            "/servers/helm/version",
        ] {
            assert!(v.pointer(path).is_some(), "{path} missing");
        }
        for key in ["item", "required", "found", "ok"] {
            assert!(
                v["compatibility"][0].get(key).is_some(),
                "compatibility[].{key} missing"
            );
        }
        assert_eq!(v["servers"]["helm"]["version"], serde_json::Value::Null);
    }

    #[test]
    fn plain_table_shows_problems_without_escape_codes() {
        let mut out = Vec::new();
        render_table(&sample_report(), Painter { color: false }, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains('\x1b'), "{text}");
        assert!(text.contains("pending-upgrade"), "{text}");
        assert!(text.contains("not found"), "{text}");
        assert!(text.contains("answered 503"), "{text}");
        let mut out = Vec::new();
        render_table(&sample_report(), Painter { color: true }, &mut out).unwrap();
        assert!(String::from_utf8(out).unwrap().contains('\x1b'));
    }
}
