//! The real Helm v4 engine (`helm-python-sdk` in `.venv`, installed by
//! `scripts/setup`) installs, upgrades, rolls back and uninstalls a small chart in a
//! fresh sandbox. Helm stores each release revision as a Secret sent as
//! Kubernetes protobuf and applies the chart's objects with server-side
//! apply, so this checks protobuf decoding, server-side apply (keyed lists,
//! removal of what a revision no longer renders, defaulted port keys) and
//! the OpenAPI documents with the client they exist for.

mod support;

use std::path::PathBuf;
use std::process::Command;

use base64::Engine as _;
use kleidia_sandbox::registry;
use kleidia_sandbox::server::{Sandbox, SandboxOptions};
use serde_json::Value;
use support::{stdout_of, venv_python};

const HELM_ACTION: &str = r#"
import json, sys
import helm_python as helm
kubeconfig, chart, action, arg = sys.argv[1:5]
cfg = helm.Config(kubeconfig_path=kubeconfig, namespace="kleidia")
if action == "install":
    cfg.install(chart, "demo", json.loads(arg), namespace="kleidia", timeout=60)
elif action == "upgrade":
    cfg.upgrade(chart, "demo", json.loads(arg), namespace="kleidia", timeout=60)
elif action == "rollback":
    cfg.rollback("demo", version=int(arg), timeout=60)
elif action == "uninstall":
    cfg.uninstall("demo", timeout=60)
"#;

const CHART_YAML: &str = "apiVersion: v2\nname: demo\nversion: 0.1.0\n";
const VALUES_YAML: &str = "image: example/app:1\nextra: true\n";
const TEMPLATES: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-cfg
data:
  mode: blue
  {{- if .Values.extra }}
  extra: "yes"
  {{- end }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: app
        image: {{ .Values.image }}
        ports:
        - containerPort: 8080
      {{- if .Values.extra }}
      - name: sidecar
        image: example/sidecar:1
      {{- end }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ .Release.Name }}-svc
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 8080
"#;

struct Helm {
    python: PathBuf,
    kubeconfig: PathBuf,
    chart: tempfile::TempDir,
}

impl Helm {
    fn new(sb: &Sandbox) -> Helm {
        let chart = tempfile::tempdir().expect("chart dir");
        std::fs::create_dir(chart.path().join("templates")).expect("templates dir");
        std::fs::write(chart.path().join("Chart.yaml"), CHART_YAML).expect("Chart.yaml");
        std::fs::write(chart.path().join("values.yaml"), VALUES_YAML).expect("values.yaml");
        std::fs::write(chart.path().join("templates/all.yaml"), TEMPLATES).expect("template");
        Helm {
            python: venv_python(),
            kubeconfig: sb.kubeconfig_path().to_path_buf(),
            chart,
        }
    }

    fn run(&self, action: &str, arg: &str) {
        let out = Command::new(&self.python)
            .arg("-c")
            .arg(HELM_ACTION)
            .arg(&self.kubeconfig)
            .arg(self.chart.path())
            .arg(action)
            .arg(arg)
            .env_remove("KUBECONFIG")
            .output()
            .expect("python runs");
        stdout_of(&format!("helm {action}"), out);
    }
}

fn get(sb: &Sandbox, rt: &'static registry::ResourceType, name: &str) -> Value {
    sb.shared()
        .store
        .get(rt, Some("kleidia"), name)
        .unwrap_or_else(|e| panic!("{} {name}: {e:?}", rt.plural))
}

fn container_images(deploy: &Value) -> Vec<String> {
    deploy["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .map(|c| c["image"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn release_secret(sb: &Sandbox, revision: u32) -> Value {
    get(
        sb,
        &registry::SECRETS,
        &format!("sh.helm.release.v1.demo.v{revision}"),
    )
}

fn assert_release(secret: &Value, revision: u32, status: &str) {
    assert_eq!(secret["type"], "helm.sh/release.v1");
    let labels = &secret["metadata"]["labels"];
    assert_eq!(labels["name"], "demo");
    assert_eq!(labels["owner"], "helm");
    assert_eq!(labels["status"], status);
    assert_eq!(labels["version"], revision.to_string());
    let record = secret["data"]["release"].as_str().expect("data.release");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(record)
        .expect("data.release is base64");
    assert!(!bytes.is_empty(), "the release record is not empty");
}

/// The objects are as the first revision's values render them: the app at
/// image 1 with its sidecar, and the extra config key.
fn assert_first_values_rendered(sb: &Sandbox, after: &str) {
    let web = get(sb, &registry::DEPLOYMENTS, "demo-web");
    assert_eq!(
        container_images(&web),
        ["example/app:1", "example/sidecar:1"],
        "demo-web's images after {after}"
    );
    let cfg = get(sb, &registry::CONFIGMAPS, "demo-cfg");
    assert_eq!(
        cfg["data"]["extra"], "yes",
        "demo-cfg's extra key after {after}"
    );
}

#[test]
fn helm_installs_upgrades_rolls_back_and_uninstalls_a_chart() {
    let sb = Sandbox::start(SandboxOptions {
        controllers: false,
        ..SandboxOptions::default()
    })
    .expect("sandbox starts");
    let helm = Helm::new(&sb);

    helm.run("install", r#"{"image": "example/app:1"}"#);
    assert_release(&release_secret(&sb, 1), 1, "deployed");
    assert_first_values_rendered(&sb, "install");

    // The next revision drops the sidecar and the extra key: server-side
    // apply removes what only Helm owned and no longer applies.
    helm.run("upgrade", r#"{"image": "example/app:2", "extra": false}"#);
    assert_release(&release_secret(&sb, 1), 1, "superseded");
    assert_release(&release_secret(&sb, 2), 2, "deployed");
    let web = get(&sb, &registry::DEPLOYMENTS, "demo-web");
    assert_eq!(container_images(&web), ["example/app:2"]);
    let ports = web["spec"]["template"]["spec"]["containers"][0]["ports"]
        .as_array()
        .expect("ports")
        .len();
    assert_eq!(ports, 1, "the defaulted port is merged, not duplicated");
    let cfg = get(&sb, &registry::CONFIGMAPS, "demo-cfg");
    assert_eq!(cfg["data"], serde_json::json!({"mode": "blue"}));
    let svc = get(&sb, &registry::SERVICES, "demo-svc");
    assert_eq!(svc["spec"]["ports"].as_array().expect("ports").len(), 1);

    helm.run("rollback", "1");
    assert_release(&release_secret(&sb, 3), 3, "deployed");
    assert_first_values_rendered(&sb, "rollback to revision 1");

    // Uninstall deletes the objects and the release records (client-go
    // sends DeleteOptions as protobuf).
    helm.run("uninstall", "");
    let store = &sb.shared().store;
    for (rt, name) in [
        (&registry::DEPLOYMENTS, "demo-web"),
        (&registry::CONFIGMAPS, "demo-cfg"),
        (&registry::SERVICES, "demo-svc"),
        (&registry::SECRETS, "sh.helm.release.v1.demo.v3"),
    ] {
        assert!(
            store.try_get(rt, Some("kleidia"), name).is_none(),
            "{} {name} is gone after uninstall",
            rt.plural
        );
    }
}
