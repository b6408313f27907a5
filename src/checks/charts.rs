//! With `--charts DIR`: what the upgrade would apply, rendered once through
//! the operator's `helm template` with each release's current values plus
//! the overrides (the upgrade's own plan). Chart versions against the
//! deployed ones, PostgreSQL's image major against the running server's,
//! OnDelete StatefulSets the upgrade rolls itself, API versions the server
//! no longer serves (or deprecates), and pull secrets for the images.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use serde_json::Value;

use super::{Check, Context};
use crate::probes;
use crate::procedure::plan::{self, ComponentPlan, UpgradePlan, Values};
use crate::topology::{Component, ManifestObject, image_name};

/// The upgrade's plan for every release found, or why there is none;
/// `None` without `--charts`.
pub async fn plan(cx: &Context<'_>) -> Option<Result<UpgradePlan, String>> {
    let charts = cx.options.charts.as_ref()?;
    if let Some(plan) = &cx.options.plan {
        return Some(Ok(plan.clone()));
    }
    let components: Vec<Component> = Component::ALL
        .into_iter()
        .filter(|c| cx.options.components.is_empty() || cx.options.components.contains(c))
        .filter(|c| cx.survey.release(*c).latest.is_ok())
        .collect();
    let values = match Values::new(&cx.options.values, &cx.options.set) {
        Ok(v) => v,
        Err(e) => return Some(Err(format!("cannot write the values files: {e}"))),
    };
    let helm_target = crate::procedure::run::helm_target(cx.target);
    Some(
        plan::build(
            cx.survey,
            &components,
            charts,
            &values,
            &cx.target.settings.helm,
            &helm_target,
        )
        .await
        .map(|(p, _)| p)
        .map_err(|e| e.to_string()),
    )
}

pub async fn checks(cx: &Context<'_>, plan: Option<&Result<UpgradePlan, String>>) -> Vec<Check> {
    let Some(plan) = plan else {
        return Vec::new();
    };
    let plan = match plan {
        Ok(p) => p,
        Err(e) => {
            return vec![Check::fail(
                "charts",
                format!("the charts to upgrade to cannot be rendered: {e}"),
                format!(
                    "check the folder and the values (`helm template` of each chart there), then run `{}` again",
                    cx.command("preflight --charts DIR")
                ),
            )];
        }
    };
    let (api_versions, pull_secrets) = tokio::join!(api_versions(cx, plan), pull_secrets(cx, plan));
    vec![
        versions(cx, plan),
        postgres_major(cx, plan),
        on_delete(plan),
        api_versions,
        pull_secrets,
    ]
}

/// How a chart version moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    Downgrade,
    Same,
    Minor,
    Major,
    /// One of them is not a version.
    Unknown,
}

pub fn compare(current: &str, target: &str) -> Move {
    let parse = |s: &str| {
        semver::Version::parse(s.trim_start_matches('v'))
            .ok()
            .or_else(|| probes::parse_version(s))
    };
    match (parse(current), parse(target)) {
        (Some(c), Some(t)) => {
            if t < c {
                Move::Downgrade
            } else if t == c {
                Move::Same
            } else if t.major > c.major {
                Move::Major
            } else {
                Move::Minor
            }
        }
        _ => Move::Unknown,
    }
}

fn versions(cx: &Context<'_>, plan: &UpgradePlan) -> Check {
    let mut moves = Vec::new();
    let mut downgrades = Vec::new();
    let mut majors = Vec::new();
    for c in &plan.components {
        let shown = format!(
            "{} {} -> {}",
            c.release, c.current.version, c.target.version
        );
        match compare(&c.current.version, &c.target.version) {
            Move::Downgrade => downgrades.push((c, shown.clone())),
            Move::Major => majors.push((c, shown.clone())),
            Move::Same => {}
            Move::Minor | Move::Unknown => {}
        }
        moves.push(match compare(&c.current.version, &c.target.version) {
            Move::Same => format!("{} stays {}", c.release, c.current.version),
            Move::Major => format!("{shown} (major)"),
            Move::Downgrade => format!("{shown} (downgrade)"),
            _ => shown,
        });
    }
    let detail = moves.join(", ");
    if let Some((c, _)) = downgrades.first() {
        return Check::fail(
            "charts.versions",
            format!("{detail}: a chart older than the deployed one is a downgrade"),
            format!(
                "to go back, roll back instead (`{}` returns to a revision that ran that chart); or pass the folder of the newer charts",
                cx.command(&format!("rollback {} --list", c.component))
            ),
        );
    }
    if !majors.is_empty() {
        let mut notes = Vec::new();
        let mut sources = Vec::new();
        for (c, shown) in &majors {
            let found = release_notes(&c.chart_dir, &c.target.version);
            if found.is_empty() {
                notes.push(format!("{shown}: the chart ships no release notes"));
            } else {
                sources.push(c.chart_dir.display().to_string());
            }
            for (source, text) in found {
                notes.push(format!("{shown}, from {source}:\n{text}"));
            }
        }
        return Check::warn(
            "charts.versions",
            format!("{detail}: a major version may break things"),
            if sources.is_empty() {
                "read the charts' documentation for breaking changes before upgrading".to_string()
            } else {
                format!(
                    "read the release notes below (in {}) before upgrading",
                    sources.join(", ")
                )
            },
        )
        .with_notes(notes);
    }
    Check::pass("charts.versions", detail)
}

/// The release notes a chart ships: its `kleidia.io/breaking-changes` (or
/// any `*changes*` / `*breaking*`) annotation, the section of
/// `CHANGELOG.md` for `version`, and `templates/NOTES.txt`.
pub fn release_notes(chart_dir: &Path, version: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let chart_yaml = chart_dir.join("Chart.yaml");
    if let Ok(text) = std::fs::read_to_string(&chart_yaml)
        && let Ok(v) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&text)
        && let Some(map) = v.get("annotations").and_then(|a| a.as_mapping())
    {
        for (k, v) in map {
            let (Some(k), Some(v)) = (k.as_str(), v.as_str()) else {
                continue;
            };
            let key = k.to_ascii_lowercase();
            if key.contains("breaking") || key.contains("changes") {
                out.push((
                    format!("{} annotation {k}", chart_yaml.display()),
                    v.trim().to_string(),
                ));
            }
        }
    }
    let changelog = chart_dir.join("CHANGELOG.md");
    if let Ok(text) = std::fs::read_to_string(&changelog) {
        let section = changelog_section(&text, version);
        out.push((changelog.display().to_string(), section));
    }
    // NOTES.txt is what helm prints after installing: the notes only
    // when the chart ships nothing else.
    let notes = chart_dir.join("templates/NOTES.txt");
    if out.is_empty()
        && let Ok(text) = std::fs::read_to_string(&notes)
    {
        let head: Vec<&str> = text.lines().take(20).collect();
        out.push((notes.display().to_string(), head.join("\n")));
    }
    out
}

/// The part of a changelog under the heading naming `version` (up to the
/// next heading of the same level); the first 20 lines when none does.
pub fn changelog_section(text: &str, version: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let heading = |l: &str| l.starts_with('#');
    let level = |l: &str| l.chars().take_while(|c| *c == '#').count();
    let start = lines.iter().position(|l| {
        heading(l)
            && l.trim_start_matches('#')
                .split(|c: char| c.is_whitespace() || c == '[' || c == ']')
                .any(|w| w.trim_start_matches('v') == version)
    });
    match start {
        Some(s) => {
            let lvl = level(lines[s]);
            let end = lines[s + 1..]
                .iter()
                .position(|l| heading(l) && level(l) <= lvl)
                .map(|e| s + 1 + e)
                .unwrap_or(lines.len());
            lines[s..end].join("\n").trim_end().to_string()
        }
        None => lines
            .iter()
            .take(20)
            .copied()
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

/// The PostgreSQL container's image in a set of objects: the first
/// container whose image is named `postgres*` (exporters left out).
fn postgres_image(objects: &[ManifestObject]) -> Option<(String, String)> {
    crate::topology::workloads(objects)
        .into_iter()
        .flat_map(|w| w.containers.into_iter().map(move |c| (w.name.clone(), c)))
        .find(|(_, c)| {
            let n = c.image_name().to_ascii_lowercase();
            n.starts_with("postgres") && !n.contains("exporter")
        })
        .map(|(w, c)| (w, c.image))
}

/// `docker.io/library/postgres:16.4` -> 16; `postgres:15-alpine` -> 15.
pub fn image_major(image: &str) -> Option<u64> {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    let tag = last.split_once(':')?.1;
    if !tag.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    probes::parse_version(tag).map(|v| v.major)
}

/// A dotted values key whose value is `text` (to name the override that
/// keeps an image), e.g. `postgres.image.tag`.
fn key_holding(values: &Value, text: &str, prefix: &str) -> Option<String> {
    match values {
        Value::Object(m) => m.iter().find_map(|(k, v)| {
            let p = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            key_holding(v, text, &p)
        }),
        Value::String(s) if s == text => Some(prefix.to_string()),
        _ => None,
    }
}

fn postgres_major(cx: &Context<'_>, plan: &UpgradePlan) -> Check {
    let name = "charts.postgres-major";
    let Some(data) = plan
        .components
        .iter()
        .find(|c| c.component == Component::Data)
    else {
        return Check::pass(name, "the data release is not upgraded");
    };
    let Some((workload, image)) = postgres_image(&data.objects) else {
        return Check::pass(
            name,
            format!("{} renders no PostgreSQL image", data.release),
        );
    };
    let current_objects = cx.survey.data.objects.as_deref().unwrap_or_default();
    let current_image = postgres_image(current_objects).map(|(_, i)| i);
    let running = match &cx.answers.postgres {
        Some(Ok(v)) => probes::parse_version(&v.version).map(|m| (m.major, v.version.clone())),
        _ => None,
    };
    let (now_major, now_shown) = match (&running, &current_image) {
        (Some((m, v)), _) => (*m, format!("the running server is {v}")),
        (None, Some(i)) => match image_major(i) {
            Some(m) => (m, format!("the deployed image is {i}")),
            None => {
                return Check::warn(
                    name,
                    format!(
                        "the major of the deployed image {i} cannot be told, and the server did not answer"
                    ),
                    "check the running server's version with `psql -c 'SELECT version()'` before upgrading",
                );
            }
        },
        (None, None) => {
            return Check::warn(
                name,
                "the running PostgreSQL's version is unknown",
                "see the postgres check above",
            );
        }
    };
    let Some(target_major) = image_major(&image) else {
        return Check::warn(
            name,
            format!("{workload} moves to image {image}, whose tag names no version ({now_shown})"),
            "pin the image to a version tag of the running major",
        );
    };
    if target_major == now_major {
        return Check::pass(
            name,
            format!("PostgreSQL stays on major {now_major}: {workload} image {image}; {now_shown}"),
        );
    }
    let keep = current_image.as_deref().and_then(|i| {
        let tag = i.rsplit_once(':')?.1.to_string();
        let rel = cx.survey.data.latest.as_ref().ok()?;
        let key = key_holding(&rel.merged_values(), &tag, "")?;
        Some(format!("`--set {key}={tag}`"))
    });
    Check::fail(
        name,
        format!(
            "{workload} moves to image {image} (major {target_major}) while {now_shown} (major {now_major}): PostgreSQL {target_major} refuses a data directory written by {now_major} and the pod would crash-loop"
        ),
        format!(
            "a major version change needs the data moved, not an image bump: take a backup (`{}`), dump the {now_major} server and restore into the {target_major} one (or pg_upgrade), as the chart's release notes say; to upgrade the rest now, keep PostgreSQL on {now_major}{}",
            cx.command("backup create"),
            keep.map(|k| format!(" with {k}")).unwrap_or_default()
        ),
    )
}

fn on_delete(plan: &UpgradePlan) -> Check {
    let rolled: Vec<&String> = plan
        .components
        .iter()
        .flat_map(|c: &ComponentPlan| &c.rolled_by_kleidia)
        .collect();
    if rolled.is_empty() {
        return Check::pass(
            "charts.ondelete",
            "no StatefulSet with updateStrategy OnDelete changes",
        );
    }
    Check::pass(
        "charts.ondelete",
        format!(
            "{} (updateStrategy OnDelete): helm restarts none of its pods; upgrade will roll these pods itself, one at a time, standbys before the active node",
            rolled
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
}

/// A known API version change: deprecated in, removed in, replacement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiChange {
    pub deprecated_in: (u64, u64),
    pub removed_in: (u64, u64),
    pub replacement: &'static str,
}

/// Kubernetes' deprecated API versions (kubernetes.io/docs/reference/
/// using-api/deprecation-guide), by group version and kind (`*`: every
/// kind of that group version).
type ApiRow = (
    &'static str,
    &'static str,
    (u64, u64),
    (u64, u64),
    &'static str,
);
const API_CHANGES: &[ApiRow] = &[
    (
        "extensions/v1beta1",
        "Ingress",
        (1, 14),
        (1, 22),
        "networking.k8s.io/v1",
    ),
    (
        "extensions/v1beta1",
        "NetworkPolicy",
        (1, 9),
        (1, 16),
        "networking.k8s.io/v1",
    ),
    (
        "extensions/v1beta1",
        "PodSecurityPolicy",
        (1, 11),
        (1, 16),
        "policy/v1beta1, then Pod Security Admission",
    ),
    ("extensions/v1beta1", "*", (1, 9), (1, 16), "apps/v1"),
    ("apps/v1beta1", "*", (1, 9), (1, 16), "apps/v1"),
    ("apps/v1beta2", "*", (1, 9), (1, 16), "apps/v1"),
    (
        "networking.k8s.io/v1beta1",
        "*",
        (1, 19),
        (1, 22),
        "networking.k8s.io/v1",
    ),
    (
        "rbac.authorization.k8s.io/v1beta1",
        "*",
        (1, 17),
        (1, 22),
        "rbac.authorization.k8s.io/v1",
    ),
    (
        "rbac.authorization.k8s.io/v1alpha1",
        "*",
        (1, 17),
        (1, 22),
        "rbac.authorization.k8s.io/v1",
    ),
    (
        "apiextensions.k8s.io/v1beta1",
        "*",
        (1, 16),
        (1, 22),
        "apiextensions.k8s.io/v1",
    ),
    (
        "admissionregistration.k8s.io/v1beta1",
        "*",
        (1, 16),
        (1, 22),
        "admissionregistration.k8s.io/v1",
    ),
    (
        "scheduling.k8s.io/v1beta1",
        "*",
        (1, 14),
        (1, 22),
        "scheduling.k8s.io/v1",
    ),
    (
        "coordination.k8s.io/v1beta1",
        "*",
        (1, 14),
        (1, 22),
        "coordination.k8s.io/v1",
    ),
    (
        "certificates.k8s.io/v1beta1",
        "*",
        (1, 19),
        (1, 22),
        "certificates.k8s.io/v1",
    ),
    (
        "storage.k8s.io/v1beta1",
        "CSIStorageCapacity",
        (1, 24),
        (1, 27),
        "storage.k8s.io/v1",
    ),
    (
        "storage.k8s.io/v1beta1",
        "*",
        (1, 19),
        (1, 22),
        "storage.k8s.io/v1",
    ),
    ("batch/v1beta1", "CronJob", (1, 21), (1, 25), "batch/v1"),
    (
        "policy/v1beta1",
        "PodDisruptionBudget",
        (1, 21),
        (1, 25),
        "policy/v1",
    ),
    (
        "policy/v1beta1",
        "PodSecurityPolicy",
        (1, 21),
        (1, 25),
        "Pod Security Admission",
    ),
    (
        "autoscaling/v2beta1",
        "*",
        (1, 22),
        (1, 25),
        "autoscaling/v2",
    ),
    (
        "autoscaling/v2beta2",
        "*",
        (1, 23),
        (1, 26),
        "autoscaling/v2",
    ),
    (
        "discovery.k8s.io/v1beta1",
        "*",
        (1, 21),
        (1, 25),
        "discovery.k8s.io/v1",
    ),
    (
        "events.k8s.io/v1beta1",
        "*",
        (1, 22),
        (1, 25),
        "events.k8s.io/v1",
    ),
    (
        "node.k8s.io/v1beta1",
        "*",
        (1, 22),
        (1, 25),
        "node.k8s.io/v1",
    ),
    (
        "flowcontrol.apiserver.k8s.io/v1beta1",
        "*",
        (1, 23),
        (1, 26),
        "flowcontrol.apiserver.k8s.io/v1",
    ),
    (
        "flowcontrol.apiserver.k8s.io/v1beta2",
        "*",
        (1, 26),
        (1, 29),
        "flowcontrol.apiserver.k8s.io/v1",
    ),
    (
        "flowcontrol.apiserver.k8s.io/v1beta3",
        "*",
        (1, 29),
        (1, 32),
        "flowcontrol.apiserver.k8s.io/v1",
    ),
];

/// The known change for `kind` in `api_version`, if it is deprecated.
pub fn api_change(api_version: &str, kind: &str) -> Option<ApiChange> {
    API_CHANGES
        .iter()
        .find(|(gv, k, ..)| *gv == api_version && (*k == kind || *k == "*"))
        .map(|(_, _, d, r, rep)| ApiChange {
            deprecated_in: *d,
            removed_in: *r,
            replacement: rep,
        })
}

/// What the server says about one kind in one API version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Served {
    Yes,
    No,
    Unknown(String),
}

/// The verdict over the rendered kinds: `served` answers for each.
pub fn api_verdict(
    uses: &BTreeMap<(String, String), Vec<String>>,
    served: &BTreeMap<(String, String), Served>,
    server: Option<(u64, u64)>,
    charts_dir: &str,
) -> Check {
    let name = "charts.api-versions";
    let mut first: Option<&str> = None;
    let mut fails = Vec::new();
    let mut warns = Vec::new();
    let mut unknown = Vec::new();
    for ((api_version, kind), objects) in uses {
        let what = format!("{kind} {} uses {api_version}", objects.join(", "));
        let change = api_change(api_version, kind);
        let replacement = change
            .map(|c| format!(": use {}", c.replacement))
            .unwrap_or_default();
        match served.get(&(api_version.clone(), kind.clone())) {
            Some(Served::No) => fails.push({
                first.get_or_insert(api_version.as_str());
                format!(
                    "{what}, which this server does not serve{}{replacement}",
                    change
                        .map(|c| format!(
                            " (removed in Kubernetes {}.{})",
                            c.removed_in.0, c.removed_in.1
                        ))
                        .unwrap_or_default()
                )
            }),
            Some(Served::Unknown(e)) => unknown.push(format!("{what} (not known: {e})")),
            _ => {
                if let Some(c) = change
                    && server.is_none_or(|s| s >= c.deprecated_in)
                {
                    warns.push(format!(
                        "{what}, deprecated since Kubernetes {}.{} and removed in {}.{}{replacement}",
                        c.deprecated_in.0, c.deprecated_in.1, c.removed_in.0, c.removed_in.1
                    ));
                }
            }
        }
    }
    if !fails.is_empty() {
        return Check::fail(
            name,
            fails.join("; "),
            format!(
                "the upgrade would fail with \"no matches for kind\": find the templates with `grep -rn '{}' {charts_dir}`, move them to the replacement (or ask the chart's maintainers), then check again",
                first.unwrap_or_default()
            ),
        );
    }
    if !warns.is_empty() || !unknown.is_empty() {
        return Check::warn(
            name,
            [warns, unknown].concat().join("; "),
            format!(
                "move the charts to the replacement API versions before the cluster is upgraded past their removal (`grep -rn apiVersion: {charts_dir}` lists them)"
            ),
        );
    }
    let versions: BTreeSet<&str> = uses.keys().map(|(v, _)| v.as_str()).collect();
    Check::pass(
        name,
        format!(
            "{} kinds in {} API versions, all served: {}",
            uses.len(),
            versions.len(),
            versions.into_iter().collect::<Vec<_>>().join(", ")
        ),
    )
}

async fn api_versions(cx: &Context<'_>, plan: &UpgradePlan) -> Check {
    let mut uses: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for c in &plan.components {
        for o in &c.objects {
            uses.entry((o.api_version.clone(), o.kind.clone()))
                .or_default()
                .push(o.name.clone());
        }
    }
    let group_versions: BTreeSet<String> = uses.keys().map(|(v, _)| v.clone()).collect();
    let client = &cx.target.client;
    let lists = futures::future::join_all(group_versions.iter().map(|gv| async move {
        let answer = if gv.contains('/') {
            client.list_api_group_resources(gv).await
        } else {
            client.list_core_api_resources(gv).await
        };
        (gv.clone(), answer)
    }))
    .await;
    let mut kinds: BTreeMap<String, Result<BTreeSet<String>, String>> = BTreeMap::new();
    for (gv, answer) in lists {
        kinds.insert(
            gv,
            match answer {
                Ok(list) => Ok(list.resources.into_iter().map(|r| r.kind).collect()),
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(BTreeSet::new()),
                Err(e) => Err(e.to_string()),
            },
        );
    }
    let served = uses
        .keys()
        .map(|(gv, kind)| {
            let s = match kinds.get(gv) {
                Some(Ok(k)) if k.contains(kind) => Served::Yes,
                Some(Ok(_)) => Served::No,
                Some(Err(e)) => Served::Unknown(e.clone()),
                None => Served::Unknown("not asked".into()),
            };
            ((gv.clone(), kind.clone()), s)
        })
        .collect();
    let server = match &cx.answers.kubernetes {
        Some(Ok(v)) => probes::parse_version(v).map(|v| (v.major, v.minor)),
        _ => None,
    };
    let dir = cx
        .options
        .charts
        .as_ref()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    api_verdict(&uses, &served, server, &dir)
}

/// Registries that serve public images without credentials.
const PUBLIC_REGISTRIES: [&str; 11] = [
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "registry.k8s.io",
    "k8s.gcr.io",
    "gcr.io",
    "quay.io",
    "ghcr.io",
    "mcr.microsoft.com",
    "public.ecr.aws",
    "cgr.dev",
];

/// `registry.example.com:5000/team/app:1` -> `registry.example.com:5000`;
/// `postgres:16` -> `docker.io`.
pub fn registry_of(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first.to_string()
        }
        _ => "docker.io".to_string(),
    }
}

/// The pod specs of a set of objects, by workload.
fn pod_specs(objects: &[ManifestObject]) -> Vec<(String, &Value)> {
    objects
        .iter()
        .filter_map(|o| {
            let spec = match o.kind.as_str() {
                "Deployment" | "StatefulSet" | "DaemonSet" | "Job" | "ReplicaSet" => {
                    o.body.pointer("/spec/template/spec")
                }
                "CronJob" => o.body.pointer("/spec/jobTemplate/spec/template/spec"),
                "Pod" => o.body.get("spec"),
                _ => None,
            }?;
            Some((format!("{} {}", o.kind, o.name), spec))
        })
        .collect()
}

/// Hosts a docker config secret has credentials for.
fn secret_hosts(s: &Secret) -> Result<BTreeSet<String>, String> {
    let ty = s.type_.as_deref().unwrap_or("Opaque");
    let key = match ty {
        "kubernetes.io/dockerconfigjson" => ".dockerconfigjson",
        "kubernetes.io/dockercfg" => ".dockercfg",
        other => {
            return Err(format!(
                "is of type {other}, not kubernetes.io/dockerconfigjson"
            ));
        }
    };
    let data = s
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .ok_or_else(|| format!("has no {key}"))?;
    let v: Value = serde_json::from_slice(&data.0).map_err(|_| format!("{key} is not JSON"))?;
    let auths = if key == ".dockerconfigjson" {
        v.get("auths").cloned().unwrap_or_default()
    } else {
        v
    };
    Ok(auths
        .as_object()
        .map(|m| m.keys().map(|k| normalize_host(k)).collect())
        .unwrap_or_default())
}

/// `https://index.docker.io/v1/` -> `index.docker.io`.
fn normalize_host(h: &str) -> String {
    let h = h
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    h.split('/').next().unwrap_or(h).to_string()
}

fn same_registry(a: &str, b: &str) -> bool {
    let docker = |h: &str| matches!(h, "docker.io" | "index.docker.io" | "registry-1.docker.io");
    a == b || (docker(a) && docker(b))
}

async fn pull_secrets(cx: &Context<'_>, plan: &UpgradePlan) -> Check {
    let ns = &cx.survey.namespace;
    // (workload, image, registry, secrets named)
    let mut uses = Vec::new();
    for c in &plan.components {
        for (workload, spec) in pod_specs(&c.objects) {
            let secrets: Vec<String> = spec
                .get("imagePullSecrets")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|s| s.get("name").and_then(Value::as_str).map(str::to_string))
                .collect();
            for list in ["initContainers", "containers"] {
                for ctr in spec
                    .get(list)
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(image) = ctr.get("image").and_then(Value::as_str) {
                        uses.push((
                            workload.clone(),
                            image.to_string(),
                            registry_of(image),
                            secrets.clone(),
                        ));
                    }
                }
            }
        }
    }
    let wanted: BTreeSet<String> = uses.iter().flat_map(|u| u.3.iter().cloned()).collect();
    let api: Api<Secret> = Api::namespaced(cx.target.client.clone(), ns);
    let got = futures::future::join_all(wanted.iter().map(|s| {
        let api = api.clone();
        async move {
            let answer = match api.get_opt(s).await {
                Ok(Some(secret)) => Ok(Some(secret_hosts(&secret))),
                Ok(None) => Ok(None),
                Err(e) => Err(e.to_string()),
            };
            (s.clone(), answer)
        }
    }))
    .await;
    let secrets: BTreeMap<String, SecretAnswer> = got.into_iter().collect();
    pull_verdict(ns, &uses, &secrets)
}

type SecretAnswer = Result<Option<Result<BTreeSet<String>, String>>, String>;

pub fn pull_verdict(
    ns: &str,
    uses: &[(String, String, String, Vec<String>)],
    secrets: &BTreeMap<String, SecretAnswer>,
) -> Check {
    let name = "charts.pull-secrets";
    let mut fails = Vec::new();
    let mut warns = Vec::new();
    let mut private = 0;
    for (workload, image, registry, named) in uses {
        for s in named {
            match secrets.get(s) {
                Some(Ok(None)) => fails.push((
                    format!("{workload} names imagePullSecret {s}, which does not exist"),
                    format!(
                        "create it: `kubectl create secret docker-registry {s} --docker-server={registry} --docker-username=USER --docker-password-stdin -n {ns}` (or fix the chart's values)"
                    ),
                )),
                Some(Ok(Some(Err(why)))) => fails.push((
                    format!("imagePullSecret {s} of {workload} {why}"),
                    format!("recreate it with `kubectl create secret docker-registry {s} ... -n {ns}`"),
                )),
                Some(Err(e)) => warns.push(format!("imagePullSecret {s} could not be read: {e}")),
                _ => {}
            }
        }
        let public = PUBLIC_REGISTRIES.iter().any(|p| same_registry(p, registry));
        if public {
            continue;
        }
        private += 1;
        let covered = named.iter().any(|s| {
            matches!(secrets.get(s), Some(Ok(Some(Ok(hosts)))) if hosts.iter().any(|h| same_registry(h, registry)))
        });
        if !covered {
            warns.push(format!(
                "{workload} pulls {image} from {registry} with no imagePullSecret for it{}",
                if named.is_empty() {
                    ""
                } else {
                    " among those it names"
                }
            ));
        }
    }
    let fails: Vec<(String, String)> = fails
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if let Some((_, hint)) = fails.first() {
        return Check::fail(
            name,
            fails
                .iter()
                .map(|(d, _)| d.as_str())
                .collect::<Vec<_>>()
                .join("; "),
            hint.clone(),
        );
    }
    let warns: Vec<String> = warns
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if !warns.is_empty() {
        return Check::warn(
            name,
            warns.join("; "),
            format!(
                "unless the nodes have credentials for that registry, create a pull secret (`kubectl create secret docker-registry NAME --docker-server=REGISTRY ... -n {ns}`) and name it in the chart's imagePullSecrets"
            ),
        );
    }
    let images: BTreeSet<&str> = uses.iter().map(|u| image_name(&u.1)).collect();
    Check::pass(
        name,
        format!(
            "{} images ({}); {}",
            images.len(),
            images.into_iter().collect::<Vec<_>>().join(", "),
            if private == 0 {
                "all from public registries".to_string()
            } else {
                format!("{private} from private registries, each with a pull secret for it")
            }
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Status;

    #[test]
    fn chart_versions_compare_as_semver() {
        assert_eq!(compare("1.1.0", "1.0.0"), Move::Downgrade);
        assert_eq!(compare("1.1.0", "1.1.0"), Move::Same);
        assert_eq!(compare("1.0.0", "1.1.0"), Move::Minor);
        assert_eq!(compare("1.9.0", "1.10.0"), Move::Minor);
        assert_eq!(compare("1.1.0", "2.0.0"), Move::Major);
        assert_eq!(compare("2.0.0-rc.1", "2.0.0"), Move::Minor);
        assert_eq!(compare("v1.0.0", "v1.0.1"), Move::Minor);
        assert_eq!(compare("main", "1.0.0"), Move::Unknown);
    }

    #[test]
    fn image_majors() {
        assert_eq!(image_major("docker.io/library/postgres:16.4"), Some(16));
        assert_eq!(image_major("postgres:15-alpine"), Some(15));
        assert_eq!(
            image_major("registry:5000/pg/postgres:17.1@sha256:ab"),
            Some(17)
        );
        assert_eq!(image_major("postgres:latest"), None);
        assert_eq!(image_major("postgres"), None);
    }

    #[test]
    fn changelog_sections() {
        let text = "# Changelog\n\n## 2.0.0\n\n- **Breaking:** PostgreSQL 16\n- dump first\n\n## 1.1.0\n\n- minor\n";
        assert_eq!(
            changelog_section(text, "2.0.0"),
            "## 2.0.0\n\n- **Breaking:** PostgreSQL 16\n- dump first"
        );
        assert!(changelog_section(text, "3.0.0").starts_with("# Changelog"));
    }

    #[test]
    fn api_versions_removed_or_deprecated() {
        assert_eq!(
            api_change("policy/v1beta1", "PodDisruptionBudget")
                .unwrap()
                .replacement,
            "policy/v1"
        );
        assert_eq!(
            api_change("apps/v1beta2", "Deployment").unwrap().removed_in,
            (1, 16)
        );
        assert!(api_change("apps/v1", "Deployment").is_none());
        let key = |v: &str, k: &str| (v.to_string(), k.to_string());
        let uses = BTreeMap::from([
            (key("apps/v1", "Deployment"), vec!["api".to_string()]),
            (
                key("policy/v1beta1", "PodDisruptionBudget"),
                vec!["api".to_string()],
            ),
        ]);
        let mut served = BTreeMap::from([
            (key("apps/v1", "Deployment"), Served::Yes),
            (key("policy/v1beta1", "PodDisruptionBudget"), Served::No),
        ]);
        let c = api_verdict(&uses, &served, Some((1, 33)), "charts");
        assert_eq!(c.status, Status::Fail);
        assert!(
            c.detail.contains("PodDisruptionBudget api uses policy/v1beta1, which this server does not serve (removed in Kubernetes 1.25): use policy/v1"),
            "{}",
            c.detail
        );
        assert!(
            c.hint.unwrap().contains("grep -rn 'policy/v1beta1' charts"),
            "the hint names where to look"
        );
        served.insert(key("policy/v1beta1", "PodDisruptionBudget"), Served::Yes);
        let c = api_verdict(&uses, &served, Some((1, 22)), "charts");
        assert_eq!(c.status, Status::Warn);
        assert!(
            c.detail.contains("deprecated since Kubernetes 1.21"),
            "{}",
            c.detail
        );
        assert_eq!(
            api_verdict(&uses, &served, Some((1, 20)), "charts").status,
            Status::Pass
        );
    }

    #[test]
    fn pull_secrets_for_private_registries() {
        assert_eq!(registry_of("postgres:16"), "docker.io");
        assert_eq!(registry_of("docker.io/library/postgres:16"), "docker.io");
        assert_eq!(
            registry_of("registry.example.com:5000/app:1"),
            "registry.example.com:5000"
        );
        assert_eq!(registry_of("localhost/app"), "localhost");
        assert_eq!(
            normalize_host("https://index.docker.io/v1/"),
            "index.docker.io"
        );
        let u = |image: &str, secrets: &[&str]| {
            (
                "Deployment api".to_string(),
                image.to_string(),
                registry_of(image),
                secrets.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
        };
        let none = BTreeMap::new();
        assert_eq!(
            pull_verdict("ns", &[u("postgres:16", &[])], &none).status,
            Status::Pass
        );
        let c = pull_verdict("ns", &[u("reg.example.com/app:1", &[])], &none);
        assert_eq!(c.status, Status::Warn);
        assert!(
            c.detail
                .contains("from reg.example.com with no imagePullSecret"),
            "{}",
            c.detail
        );
        let missing = BTreeMap::from([("regcred".to_string(), Ok(None))]);
        let c = pull_verdict("ns", &[u("reg.example.com/app:1", &["regcred"])], &missing);
        assert_eq!(c.status, Status::Fail);
        assert!(
            c.detail
                .contains("names imagePullSecret regcred, which does not exist")
        );
        let good = BTreeMap::from([(
            "regcred".to_string(),
            Ok(Some(Ok(BTreeSet::from(["reg.example.com".to_string()])))),
        )]);
        assert_eq!(
            pull_verdict("ns", &[u("reg.example.com/app:1", &["regcred"])], &good).status,
            Status::Pass
        );
    }
}
