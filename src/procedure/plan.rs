//! The upgrade plan, decided before anything changes: per component, the
//! release, current -> target chart and app versions, the values keys that
//! change, and what the rendered manifests change (objects added, removed,
//! changed; images; which pods restart, and which OnDelete StatefulSets
//! kleidia will roll itself). Rendering is the operator's `helm template`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::helm::cli::{HelmCli, HelmCliError, HelmTarget};
use crate::helm::release::Release;
use crate::survey::Survey;
use crate::topology::{self, Component, ManifestObject};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(
        "no chart for the {component} release {release} in {dir}: looked for {looked}. Pass the folder holding kleidia-platform, kleidia-data and kleidia-services with --charts"
    )]
    NoChart {
        component: Component,
        release: String,
        dir: String,
        looked: String,
    },
    #[error("{path} is not a readable Chart.yaml: {reason}")]
    BadChart { path: String, reason: String },
    #[error("release {release} cannot be planned: {reason}")]
    Release { release: String, reason: String },
    #[error("rendering {chart} with helm failed: {source}")]
    Render {
        chart: String,
        #[source]
        source: HelmCliError,
    },
    #[error("the rendered manifests of {chart} are not valid YAML: {reason}")]
    Rendered { chart: String, reason: String },
    #[error("values file {path}: {reason}")]
    Values { path: String, reason: String },
}

/// A chart's identity.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ChartVersion {
    pub name: String,
    pub version: String,
    pub app_version: Option<String>,
}

impl std::fmt::Display for ChartVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.name, self.version)?;
        if let Some(a) = &self.app_version {
            write!(f, " (app {a})")?;
        }
        Ok(())
    }
}

/// A container image that changes.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ImageChange {
    pub workload: String,
    pub container: String,
    pub from: Option<String>,
    pub to: String,
}

/// One component's part of the plan.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentPlan {
    pub component: Component,
    pub release: String,
    pub chart_dir: PathBuf,
    pub revision: u32,
    pub status: String,
    pub current: ChartVersion,
    pub target: ChartVersion,
    /// Dotted values keys the overrides change.
    pub values_changed: Vec<String>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    pub images: Vec<ImageChange>,
    /// Workloads whose pods restart (`Deployment x`).
    pub restarts: Vec<String>,
    /// StatefulSets with `updateStrategy: OnDelete` that change: helm
    /// restarts nothing there, kleidia rolls their pods.
    pub rolled_by_kleidia: Vec<String>,
    /// The target chart's rendered objects (for preflight's checks of
    /// what the upgrade would apply).
    #[serde(skip)]
    pub objects: Vec<ManifestObject>,
}

impl ComponentPlan {
    /// Whether the upgrade changes anything at all.
    pub fn is_noop(&self) -> bool {
        self.current.version == self.target.version
            && self.added.is_empty()
            && self.removed.is_empty()
            && self.changed.is_empty()
    }
}

/// The whole plan.
#[derive(Debug, Clone, Serialize)]
pub struct UpgradePlan {
    pub namespace: String,
    pub charts: PathBuf,
    pub components: Vec<ComponentPlan>,
}

/// The values each release is upgraded with: its current values (in a 0600
/// file in a 0700 folder removed on drop: they may hold passwords), then
/// the operator's `-f` files and `--set` overrides.
pub struct Values {
    dir: tempfile::TempDir,
    pub files: Vec<PathBuf>,
    pub set: Vec<String>,
}

impl Values {
    pub fn new(files: &[PathBuf], set: &[String]) -> std::io::Result<Values> {
        let dir = tempfile::Builder::new()
            .prefix("kleidia-values-")
            .tempdir()?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(Values {
            dir,
            files: files.to_vec(),
            set: set.to_vec(),
        })
    }

    /// The values files for `release`: its current values first.
    pub fn for_release(&self, release: &str, current: &Value) -> std::io::Result<Vec<PathBuf>> {
        let path = self.dir.path().join(format!("{release}.current.yaml"));
        let text = match current {
            Value::Null => "{}\n".to_string(),
            v => serde_yaml_ng::to_string(v).map_err(std::io::Error::other)?,
        };
        write_private(&path, text.as_bytes())?;
        let mut out = vec![path];
        out.extend(self.files.iter().cloned());
        Ok(out)
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(bytes)
}

/// Reads `<dir>/Chart.yaml`.
pub fn read_chart(dir: &Path) -> Result<ChartVersion, PlanError> {
    #[derive(serde::Deserialize)]
    struct ChartYaml {
        name: String,
        version: String,
        #[serde(default, rename = "appVersion")]
        app_version: Option<serde_yaml_ng::Value>,
    }
    let path = dir.join("Chart.yaml");
    let text = std::fs::read_to_string(&path).map_err(|e| PlanError::BadChart {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let c: ChartYaml = serde_yaml_ng::from_str(&text).map_err(|e| PlanError::BadChart {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let app_version = c.app_version.and_then(|v| match v {
        serde_yaml_ng::Value::String(s) => Some(s),
        serde_yaml_ng::Value::Number(n) => Some(n.to_string()),
        _ => None,
    });
    Ok(ChartVersion {
        name: c.name,
        version: c.version,
        app_version,
    })
}

/// The chart folder for a release: `<charts>/<deployed chart's name>`,
/// else `<charts>/<release name>`.
pub fn chart_dir(
    charts: &Path,
    component: Component,
    release: &Release,
) -> Result<PathBuf, PlanError> {
    let mut looked = Vec::new();
    let names = [
        release.chart_metadata().map(|m| m.name.clone()),
        Some(release.name.clone()),
    ];
    for name in names.into_iter().flatten().filter(|n| !n.is_empty()) {
        let dir = charts.join(&name);
        if looked.contains(&dir.display().to_string()) {
            continue;
        }
        if dir.join("Chart.yaml").is_file() {
            return Ok(dir);
        }
        looked.push(dir.display().to_string());
    }
    Err(PlanError::NoChart {
        component,
        release: release.name.clone(),
        dir: charts.display().to_string(),
        looked: looked.join(", "),
    })
}

fn current_chart(release: &Release) -> ChartVersion {
    let m = release.chart_metadata().cloned().unwrap_or_default();
    ChartVersion {
        name: m.name,
        version: m.version,
        app_version: Some(m.app_version).filter(|a| !a.is_empty()),
    }
}

/// Builds the plan for `components` (in upgrade order) from the survey and
/// the charts in `charts`, rendering the charts concurrently with the
/// operator's helm. Also returns the time spent waiting for helm.
pub async fn build(
    survey: &Survey,
    components: &[Component],
    charts: &Path,
    values: &Values,
    helm: &HelmCli,
    helm_target: &HelmTarget,
) -> Result<(UpgradePlan, std::time::Duration), PlanError> {
    struct Input<'s> {
        component: Component,
        release: &'s Release,
        objects: Vec<ManifestObject>,
        dir: PathBuf,
        target: ChartVersion,
        current_values: Value,
        files: Vec<PathBuf>,
    }
    let mut inputs = Vec::new();
    for &component in components {
        let r = survey.release(component);
        let release = r.latest.as_ref().map_err(|e| PlanError::Release {
            release: r.name.clone(),
            reason: e.to_string(),
        })?;
        let dir = chart_dir(charts, component, release)?;
        let target = read_chart(&dir)?;
        let current_values = release.config.clone().unwrap_or(Value::Null);
        let files = values
            .for_release(&release.name, &current_values)
            .map_err(|e| PlanError::Values {
                path: "(current values)".into(),
                reason: e.to_string(),
            })?;
        inputs.push(Input {
            component,
            release,
            objects: r.objects.clone().unwrap_or_default(),
            dir,
            target,
            current_values,
            files,
        });
    }
    let started = std::time::Instant::now();
    let rendered = futures::future::join_all(inputs.iter().map(|i| {
        helm.template_without_hooks(helm_target, &i.release.name, &i.dir, &i.files, &values.set)
    }))
    .await;
    let helm_time = started.elapsed();
    let mut out = Vec::new();
    for (i, rendered) in inputs.into_iter().zip(rendered) {
        let rendered = rendered.map_err(|source| PlanError::Render {
            chart: i.dir.display().to_string(),
            source,
        })?;
        let new_objects = topology::parse_manifest(&i.release.name, &rendered).map_err(|e| {
            PlanError::Rendered {
                chart: i.dir.display().to_string(),
                reason: e.to_string(),
            }
        })?;
        let diff = diff_objects(&i.objects, &new_objects);
        out.push(ComponentPlan {
            component: i.component,
            release: i.release.name.clone(),
            chart_dir: i.dir,
            revision: i.release.version,
            status: i.release.info.status.clone(),
            current: current_chart(i.release),
            target: i.target,
            values_changed: changed_keys(&i.current_values, &values.files, &values.set)?,
            added: diff.added,
            removed: diff.removed,
            changed: diff.changed,
            images: diff.images,
            restarts: diff.restarts,
            rolled_by_kleidia: diff.on_delete,
            objects: new_objects,
        });
    }
    Ok((
        UpgradePlan {
            namespace: survey.namespace.clone(),
            charts: charts.to_path_buf(),
            components: out,
        },
        helm_time,
    ))
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct ObjectDiff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    pub images: Vec<ImageChange>,
    pub restarts: Vec<String>,
    pub on_delete: Vec<String>,
}

fn key(o: &ManifestObject) -> String {
    format!("{} {}", o.kind, o.name)
}

const WORKLOADS: [&str; 3] = ["Deployment", "StatefulSet", "DaemonSet"];

/// What changes between two renderings of a release.
pub fn diff_objects(old: &[ManifestObject], new: &[ManifestObject]) -> ObjectDiff {
    let old_map: BTreeMap<String, &ManifestObject> = old.iter().map(|o| (key(o), o)).collect();
    let new_map: BTreeMap<String, &ManifestObject> = new.iter().map(|o| (key(o), o)).collect();
    let mut d = ObjectDiff::default();
    for (k, n) in &new_map {
        match old_map.get(k) {
            None => {
                d.added.push(k.clone());
                if WORKLOADS.contains(&n.kind.as_str()) {
                    d.restarts.push(format!("{k} (new)"));
                }
            }
            Some(o) if o.body != n.body => {
                d.changed.push(k.clone());
                if WORKLOADS.contains(&n.kind.as_str()) {
                    let template = |b: &Value| b.pointer("/spec/template").cloned();
                    if template(&o.body) != template(&n.body) {
                        let on_delete = n.kind == "StatefulSet"
                            && n.body.pointer("/spec/updateStrategy/type")
                                == Some(&Value::String("OnDelete".into()));
                        if on_delete {
                            d.on_delete.push(k.clone());
                        } else {
                            d.restarts.push(k.clone());
                        }
                    }
                    d.images.extend(image_changes(k, &o.body, &n.body));
                }
            }
            Some(_) => {}
        }
    }
    d.removed = old_map
        .keys()
        .filter(|k| !new_map.contains_key(*k))
        .cloned()
        .collect();
    d
}

fn images(body: &Value) -> BTreeMap<String, String> {
    ["containers", "initContainers"]
        .iter()
        .filter_map(|f| {
            body.pointer(&format!("/spec/template/spec/{f}"))?
                .as_array()
        })
        .flatten()
        .filter_map(|c| {
            Some((
                c.get("name")?.as_str()?.to_string(),
                c.get("image")?.as_str()?.to_string(),
            ))
        })
        .collect()
}

fn image_changes(workload: &str, old: &Value, new: &Value) -> Vec<ImageChange> {
    let before = images(old);
    images(new)
        .into_iter()
        .filter(|(c, img)| before.get(c) != Some(img))
        .map(|(container, to)| ImageChange {
            workload: workload.to_string(),
            from: before.get(&container).cloned(),
            container,
            to,
        })
        .collect()
}

/// Dotted leaves of a values tree.
fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&p, child, out);
            }
        }
        other => {
            if !prefix.is_empty() {
                out.insert(prefix.to_string(), other.clone());
            }
        }
    }
}

/// The keys whose values the `-f` files and `--set` overrides change
/// against the release's current values (values themselves are never
/// shown: they may hold passwords).
pub fn changed_keys(
    current: &Value,
    files: &[PathBuf],
    set: &[String],
) -> Result<Vec<String>, PlanError> {
    let mut now = BTreeMap::new();
    flatten("", current, &mut now);
    let mut changed = BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|e| PlanError::Values {
            path: f.display().to_string(),
            reason: e.to_string(),
        })?;
        let v: Value = serde_yaml_ng::from_str(&text).map_err(|e| PlanError::Values {
            path: f.display().to_string(),
            reason: e.to_string(),
        })?;
        let mut leaves = BTreeMap::new();
        flatten("", &v, &mut leaves);
        for (k, val) in leaves {
            if now.get(&k) != Some(&val) {
                changed.insert(k);
            }
        }
    }
    for s in set {
        for part in split_set(s) {
            if let Some((k, v)) = part.split_once('=') {
                let same = now.get(k).is_some_and(|cur| match cur {
                    Value::String(c) => c == v,
                    other => serde_json::to_string(other).is_ok_and(|t| t == v),
                });
                if !same {
                    changed.insert(k.to_string());
                }
            }
        }
    }
    Ok(changed.into_iter().collect())
}

/// `a=1,b.c=x` -> [`a=1`, `b.c=x`] (commas inside `{}` or escaped stay).
fn split_set(s: &str) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0i32, 0, Vec::new());
    let bytes = s.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'{' => depth += 1,
            b'}' => depth -= 1,
            b',' if depth == 0 && (i == 0 || bytes[i - 1] != b'\\') => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(kind: &str, name: &str, body: Value) -> ManifestObject {
        ManifestObject {
            kind: kind.into(),
            api_version: "apps/v1".into(),
            name: name.into(),
            body,
        }
    }

    fn sts(image: &str, strategy: &str) -> Value {
        json!({"spec": {"updateStrategy": {"type": strategy}, "template": {"spec": {"containers": [{"name": "openbao", "image": image}]}}}})
    }

    #[test]
    fn the_diff_names_objects_images_and_restarts() {
        let old = vec![
            obj("StatefulSet", "bao", sts("openbao:2.6.2", "OnDelete")),
            obj("Deployment", "api", sts("backend:1.0.0", "RollingUpdate")),
            obj("ConfigMap", "gone", json!({"data": {}})),
            obj("Service", "same", json!({"spec": {}})),
        ];
        let new = vec![
            obj("StatefulSet", "bao", sts("openbao:2.7.2", "OnDelete")),
            obj("Deployment", "api", sts("backend:1.1.0", "RollingUpdate")),
            obj("Service", "same", json!({"spec": {}})),
            obj("Job", "new", json!({})),
        ];
        let d = diff_objects(&old, &new);
        assert_eq!(d.added, vec!["Job new"]);
        assert_eq!(d.removed, vec!["ConfigMap gone"]);
        assert_eq!(d.changed, vec!["Deployment api", "StatefulSet bao"]);
        assert_eq!(d.restarts, vec!["Deployment api"]);
        assert_eq!(d.on_delete, vec!["StatefulSet bao"]);
        assert_eq!(d.images.len(), 2);
        assert_eq!(d.images[1].from.as_deref(), Some("openbao:2.6.2"));
        assert_eq!(d.images[1].to, "openbao:2.7.2");
    }

    #[test]
    fn changed_keys_compare_leaves_and_never_values() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("v.yaml");
        std::fs::write(
            &f,
            "backend:\n  replicas: 2\n  image: {tag: '1.0.0'}\npostgres:\n  password: same\n",
        )
        .unwrap();
        let current = json!({"backend": {"image": {"tag": "1.0.0"}, "replicas": 1}, "postgres": {"password": "same"}});
        let keys = changed_keys(&current, &[f], &["a.b=1,backend.replicas=2".into()]).unwrap();
        assert_eq!(keys, vec!["a.b", "backend.replicas"]);
        assert_eq!(split_set("a={x,y},b=2"), vec!["a={x,y}", "b=2"]);
    }

    #[test]
    fn values_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let v = Values::new(&[], &[]).unwrap();
        let files = v.for_release("r", &json!({"password": "p"})).unwrap();
        let mode = std::fs::metadata(&files[0]).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(files[0].parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
    }
}
