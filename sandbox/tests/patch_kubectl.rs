//! The patch algorithms, server-side apply and the OpenAPI documents as
//! real kubectl (`.venv/bin/kubectl`, installed by `scripts/setup`) drives
//! them against a fresh sandbox: client-side apply (strategic merge patches
//! kubectl computes, with its directives), `kubectl patch` of every type,
//! server-side apply by two field managers with conflicts and
//! `--force-conflicts`, and the OpenAPI endpoints kubectl reads.

mod support;

use kleidia_sandbox::server::{Sandbox, SandboxOptions};
use serde_json::Value;
use support::{Kubectl, entry, managers};

/// A sandbox without controllers (nothing but kubectl changes objects),
/// and kubectl for it.
fn start() -> (Sandbox, Kubectl) {
    let sb = Sandbox::start(SandboxOptions {
        controllers: false,
        ..SandboxOptions::default()
    })
    .expect("sandbox starts");
    let k = Kubectl::new(&sb);
    (sb, k)
}

const WEB_V1: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: kleidia
  labels: {app: web}
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 1}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: app
        image: example/app:1
        env:
        - {name: MODE, value: blue}
        - {name: DEBUG, value: "1"}
        ports:
        - {containerPort: 8080, name: http}
      - name: sidecar
        image: example/sidecar:1
"#;

const WEB_V2: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: kleidia
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  strategy:
    type: Recreate
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: app
        image: example/app:2
        env:
        - {name: MODE, value: green}
        ports:
        - {containerPort: 8080, name: http}
"#;

/// Client-side `kubectl apply` computes a three-way strategic merge patch
/// (with `$setElementOrder`, `$retainKeys` and deletions) from the
/// last-applied annotation; the server must turn it into the new manifest.
#[test]
fn client_side_apply_updates_keyed_lists_and_retained_keys() {
    let (_sb, k) = start();
    let v1 = k.file("web-v1.yaml", WEB_V1);
    k.quiet(&["apply", "-f", &v1]);
    let v2 = k.file("web-v2.yaml", WEB_V2);
    k.quiet(&["apply", "-f", &v2]);
    let web = k.json(&["-n", "kleidia", "get", "deployment", "web"]);
    let spec = &web["spec"];
    assert_eq!(spec["replicas"], 2);
    assert_eq!(spec["strategy"], serde_json::json!({"type": "Recreate"}));
    let containers = spec["template"]["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1, "sidecar removed: {containers:?}");
    assert_eq!(containers[0]["image"], "example/app:2");
    assert_eq!(
        containers[0]["env"],
        serde_json::json!([{"name": "MODE", "value": "green"}])
    );
    let ports = containers[0]["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0]["containerPort"], 8080);
    assert_eq!(ports[0]["name"], "http");
}

#[test]
fn kubectl_patch_strategic_merge_and_json() {
    let (_sb, k) = start();
    let v1 = k.file("web-v1.yaml", WEB_V1);
    k.ok(&["apply", "-f", &v1]);
    let ns = ["-n", "kleidia"];
    let patch = |kind: &str, p: &str| {
        let mut args = ns.to_vec();
        args.extend(["patch", "deployment", "web", "--type", kind, "-p", p]);
        k.ok(&args);
    };
    patch(
        "strategic",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"example/sidecar:2"}]}}}}"#,
    );
    patch("merge", r#"{"metadata":{"labels":{"tier":"front"}}}"#);
    patch(
        "json",
        r#"[{"op":"replace","path":"/spec/replicas","value":3}]"#,
    );
    let web = k.json(&["-n", "kleidia", "get", "deployment", "web"]);
    let containers = web["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(
        containers.len(),
        2,
        "strategic merge kept the app container"
    );
    assert_eq!(containers[0]["image"], "example/app:1");
    assert_eq!(containers[1]["image"], "example/sidecar:2");
    assert_eq!(web["metadata"]["labels"]["tier"], "front");
    assert_eq!(web["spec"]["replicas"], 3);

    // A failed JSON patch test is 422 and changes nothing.
    let err = k.fails(&[
        "-n", "kleidia", "patch", "deployment", "web", "--type", "json", "-p",
        r#"[{"op":"test","path":"/spec/replicas","value":9},{"op":"replace","path":"/spec/replicas","value":9}]"#,
    ]);
    assert!(
        err.contains("/spec/replicas"),
        "stderr names the path: {err}"
    );
    let web = k.json(&["-n", "kleidia", "get", "deployment", "web"]);
    assert_eq!(web["spec"]["replicas"], 3);
}

const CM_ALPHA: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: shared, namespace: kleidia}
data: {mode: blue, alpha-only: "1"}
"#;

const CM_BETA: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: shared, namespace: kleidia}
data: {mode: green}
"#;

#[test]
fn server_side_apply_two_managers_conflict_and_force() {
    let (_sb, k) = start();
    let alpha = k.file("alpha.yaml", CM_ALPHA);
    let beta = k.file("beta.yaml", CM_BETA);
    k.ok(&[
        "apply",
        "--server-side",
        "--field-manager=alpha",
        "-f",
        &alpha,
    ]);

    let err = k.fails(&[
        "apply",
        "--server-side",
        "--field-manager=beta",
        "-f",
        &beta,
    ]);
    assert!(
        err.contains("Apply failed with 1 conflict: conflict with \"alpha\": .data.mode"),
        "conflict names the field and its owner: {err}"
    );
    let cm = k.json(&["-n", "kleidia", "get", "configmap", "shared"]);
    assert_eq!(
        cm["data"]["mode"], "blue",
        "a conflicting apply changes nothing"
    );

    k.ok(&[
        "apply",
        "--server-side",
        "--field-manager=beta",
        "--force-conflicts",
        "-f",
        &beta,
    ]);
    let cm = k.json(&[
        "-n",
        "kleidia",
        "get",
        "configmap",
        "shared",
        "--show-managed-fields",
    ]);
    assert_eq!(cm["data"]["mode"], "green");
    assert_eq!(cm["data"]["alpha-only"], "1");
    let mut got = managers(&cm);
    got.sort();
    assert_eq!(
        got,
        [
            ("alpha".to_string(), "Apply".to_string()),
            ("beta".to_string(), "Apply".to_string())
        ]
    );
    assert_eq!(
        entry(&cm, "alpha")["fieldsV1"],
        serde_json::json!({"f:data": {"f:alpha-only": {}}})
    );
    assert_eq!(
        entry(&cm, "beta")["fieldsV1"],
        serde_json::json!({"f:data": {"f:mode": {}}})
    );

    // Alpha stops applying its own field: it goes away.
    let alpha2 = k.file(
        "alpha2.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: shared, namespace: kleidia}\ndata: {}\n",
    );
    k.ok(&[
        "apply",
        "--server-side",
        "--field-manager=alpha",
        "-f",
        &alpha2,
    ]);
    let cm = k.json(&["-n", "kleidia", "get", "configmap", "shared"]);
    assert_eq!(cm["data"], serde_json::json!({"mode": "green"}));
}

#[test]
fn openapi_documents_answer_kubectl() {
    let (_sb, k) = start();
    let root: Value = serde_json::from_str(&k.ok(&["get", "--raw", "/openapi/v3"])).unwrap();
    let url = root["paths"]["apis/apps/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap_or_else(|| panic!("apps/v1 listed in {root}"));
    let doc: Value = serde_json::from_str(&k.ok(&["get", "--raw", url])).unwrap();
    assert_eq!(doc["openapi"], "3.0.0");
    assert!(
        doc["components"]["schemas"]
            .get("io.k8s.api.apps.v1.Deployment")
            .is_some()
    );
    let v2: Value = serde_json::from_str(&k.ok(&["get", "--raw", "/openapi/v2"])).unwrap();
    assert_eq!(v2["swagger"], "2.0");
    // kubectl explain walks the v3 schemas down to nested fields.
    let explained = k.quiet(&["explain", "deployment.spec.template.spec.containers.image"]);
    assert!(
        explained.contains("FIELD: image <string>"),
        "explain output: {explained}"
    );
}

/// `kubectl apply --server-side` over an object kubectl applied client-side
/// first moves the client-side ownership to its server-side manager (by
/// patching managedFields), so fields dropped from the file are pruned.
#[test]
fn server_side_apply_takes_over_client_side_apply() {
    let (_sb, k) = start();
    let both = k.file(
        "both.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: moved, namespace: kleidia}\ndata: {a: \"1\", b: \"2\"}\n",
    );
    k.quiet(&["apply", "-f", &both]);
    let cm = k.json(&[
        "-n",
        "kleidia",
        "get",
        "configmap",
        "moved",
        "--show-managed-fields",
    ]);
    assert_eq!(
        managers(&cm),
        [(
            "kubectl-client-side-apply".to_string(),
            "Update".to_string()
        )]
    );
    let only_a = k.file(
        "only-a.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: moved, namespace: kleidia}\ndata: {a: \"1\"}\n",
    );
    k.quiet(&["apply", "--server-side", "-f", &only_a]);
    let cm = k.json(&[
        "-n",
        "kleidia",
        "get",
        "configmap",
        "moved",
        "--show-managed-fields",
    ]);
    assert_eq!(cm["data"], serde_json::json!({"a": "1"}));
    assert_eq!(
        entry(&cm, "kubectl")["fieldsV1"]["f:data"],
        serde_json::json!({"f:a": {}})
    );
}

/// kubectl's `create <kind>` commands send Kubernetes protobuf bodies.
#[test]
fn kubectl_create_sends_protobuf_the_server_decodes() {
    let (_sb, k) = start();
    k.quiet(&[
        "create",
        "deployment",
        "web",
        "-n",
        "kleidia",
        "--image=example/app:1",
        "--replicas=0",
        "--port=8080",
    ]);
    let web = k.json(&["-n", "kleidia", "get", "deployment", "web"]);
    assert_eq!(web["spec"]["replicas"], 0, "a zero replica count survives");
    assert_eq!(web["spec"]["selector"]["matchLabels"]["app"], "web");
    let container = &web["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "example/app:1");
    assert_eq!(container["ports"][0]["containerPort"], 8080);
    assert!(
        web["spec"]["template"]["metadata"]
            .get("creationTimestamp")
            .is_none()
            || web["spec"]["template"]["metadata"]["creationTimestamp"].is_null(),
        "an unset timestamp stays unset: {}",
        web["spec"]["template"]["metadata"]
    );

    k.quiet(&[
        "create",
        "service",
        "clusterip",
        "web",
        "-n",
        "kleidia",
        "--tcp=80:8080",
    ]);
    let svc = k.json(&["-n", "kleidia", "get", "service", "web"]);
    assert_eq!(svc["spec"]["ports"][0]["port"], 80);
    assert_eq!(
        svc["spec"]["ports"][0]["targetPort"], 8080,
        "IntOrString as a number"
    );

    k.quiet(&[
        "create",
        "job",
        "once",
        "-n",
        "kleidia",
        "--image=example/tool:1",
        "--",
        "echo",
        "hi",
    ]);
    let job = k.json(&["-n", "kleidia", "get", "job", "once"]);
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["command"],
        serde_json::json!(["echo", "hi"])
    );
}
