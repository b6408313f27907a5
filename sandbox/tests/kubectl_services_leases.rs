//! Real kubectl against the sandbox: NodePort allocation like a real API
//! server, Leases with optimistic concurrency, and the request accounting
//! tests use to say what a command did.

mod support;

use hyper::Method;
use kleidia_sandbox::server::client::Client;
use kleidia_sandbox::server::{Sandbox, SandboxOptions};
use serde_json::{Value, json};
use support::Kubectl;

fn start() -> (Sandbox, Kubectl) {
    support::kubectl_bin();
    let sb = Sandbox::start(SandboxOptions::default()).expect("sandbox starts");
    let k = Kubectl::new(&sb);
    (sb, k)
}

fn node_port(k: &Kubectl, svc: &str) -> u64 {
    let s = k.json(&["get", "svc", svc, "-n", "kleidia"]);
    s["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .unwrap_or_else(|| panic!("{svc} has no nodePort: {s}"))
}

/// `POST body` to a namespaced collection over raw HTTPS; (status, body).
fn post(sb: &Sandbox, path: &str, body: &Value) -> (u16, Value) {
    let client = Client::new(sb.url(), sb.ca_pem(), Some(sb.token())).unwrap();
    let reply = sb
        .handle()
        .block_on(client.send(
            Method::POST,
            path,
            &[("content-type", "application/json")],
            body.to_string(),
        ))
        .unwrap();
    (reply.status.as_u16(), reply.json())
}

#[test]
fn node_ports_are_allocated_refused_kept_and_freed() {
    let (sb, k) = start();
    k.ok(&[
        "create",
        "service",
        "nodeport",
        "web",
        "-n",
        "kleidia",
        "--tcp=80:8080",
    ]);
    let web = node_port(&k, "web");
    assert!((30000..=32767).contains(&web), "{web}");

    // Asking for a port another Service holds: the API server's own error.
    let err = k.fails(&[
        "create",
        "service",
        "nodeport",
        "clash",
        "-n",
        "kleidia",
        "--tcp=80:8080",
        &format!("--node-port={web}"),
    ]);
    assert!(
        err.contains(&format!(
            "Service \"clash\" is invalid: spec.ports[0].nodePort: Invalid value: {web}: provided port is already allocated"
        )),
        "{err}"
    );
    let (code, status) = post(
        &sb,
        "/api/v1/namespaces/kleidia/services",
        &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "clash"},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 443, "nodePort": web}]}}),
    );
    assert_eq!(code, 422);
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(
        status["details"]["causes"][0]["field"],
        "spec.ports[0].nodePort"
    );
    let (code, status) = post(
        &sb,
        "/api/v1/namespaces/kleidia/services",
        &json!({"metadata": {"name": "low"}, "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 8080}]}}),
    );
    assert_eq!(code, 422);
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .ends_with("Invalid value: 8080: provided port is not in the valid range. The range of valid ports is 30000-32767"),
        "{status}"
    );

    // Updates without a nodePort keep the allocated one: client-side
    // apply, replace, server-side apply.
    let manifest = |target: u16| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: kleidia\nspec:\n  type: NodePort\n  selector:\n    app: web\n  ports:\n  - name: 80-8080\n    port: 80\n    targetPort: {target}\n"
        )
    };
    let file = k.file("web.yaml", &manifest(8081));
    k.ok(&["apply", "-f", &file]);
    assert_eq!(node_port(&k, "web"), web);
    let file = k.file("web.yaml", &manifest(8082));
    k.ok(&["replace", "-f", &file]);
    assert_eq!(node_port(&k, "web"), web);
    let file = k.file("web.yaml", &manifest(8083));
    k.ok(&["apply", "--server-side", "--force-conflicts", "-f", &file]);
    let svc = k.json(&["get", "svc", "web", "-n", "kleidia"]);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8083);
    assert_eq!(svc["spec"]["ports"][0]["nodePort"], web);

    // A LoadBalancer gets node ports too, a different one.
    k.ok(&[
        "create",
        "service",
        "loadbalancer",
        "lb",
        "-n",
        "kleidia",
        "--tcp=443:8443",
    ]);
    assert_ne!(node_port(&k, "lb"), web);

    // Back to ClusterIP releases the port, and so does deleting.
    k.ok(&[
        "patch",
        "svc",
        "web",
        "-n",
        "kleidia",
        "--type=merge",
        "-p",
        r#"{"spec":{"type":"ClusterIP"}}"#,
    ]);
    let svc = k.json(&["get", "svc", "web", "-n", "kleidia"]);
    assert!(svc["spec"]["ports"][0].get("nodePort").is_none(), "{svc}");
    let take = |name: &str, port: u64| {
        k.ok(&[
            "create",
            "service",
            "nodeport",
            name,
            "-n",
            "kleidia",
            "--tcp=80:8080",
            &format!("--node-port={port}"),
        ])
    };
    take("clash", web);
    let lb = node_port(&k, "lb");
    k.ok(&["delete", "svc", "lb", "-n", "kleidia"]);
    take("again", lb);
}

#[test]
fn leases_with_kubectl_conflict_on_a_stale_resource_version() {
    let (_sb, k) = start();
    let lease = |holder: &str, rv: Option<&str>| {
        let rv = rv
            .map(|r| format!("  resourceVersion: \"{r}\"\n"))
            .unwrap_or_default();
        format!(
            "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: kleidia-upgrade\n  namespace: kleidia\n{rv}spec:\n  holderIdentity: {holder}\n  leaseDurationSeconds: 60\n  acquireTime: \"2026-01-02T03:04:05.000000Z\"\n  renewTime: \"2026-01-02T03:04:05.000000Z\"\n"
        )
    };
    let file = k.file("lease.yaml", &lease("alice", None));
    k.ok(&["create", "-f", &file]);
    let first = k.json(&["get", "lease", "kleidia-upgrade", "-n", "kleidia"]);
    assert_eq!(first["spec"]["holderIdentity"], "alice");
    assert_eq!(first["spec"]["renewTime"], "2026-01-02T03:04:05.000000Z");
    let rv = first["metadata"]["resourceVersion"].as_str().unwrap();

    // An update at the current resourceVersion wins...
    let file = k.file("lease.yaml", &lease("bob", Some(rv)));
    k.ok(&["replace", "-f", &file]);
    let second = k.json(&["get", "lease", "kleidia-upgrade", "-n", "kleidia"]);
    assert_eq!(second["spec"]["holderIdentity"], "bob");
    assert_ne!(second["metadata"]["resourceVersion"].as_str(), Some(rv));

    // ...and one at the old resourceVersion is a 409 Conflict.
    let file = k.file("lease.yaml", &lease("carol", Some(rv)));
    let err = k.fails(&["replace", "-f", &file]);
    assert!(
        err.contains(
            "Operation cannot be fulfilled on leases.coordination.k8s.io \"kleidia-upgrade\": the object has been modified; please apply your changes to the latest version and try again"
        ),
        "{err}"
    );
    let now = k.json(&["get", "lease", "kleidia-upgrade", "-n", "kleidia"]);
    assert_eq!(now["spec"]["holderIdentity"], "bob");

    k.ok(&["delete", "lease", "kleidia-upgrade", "-n", "kleidia"]);
    let err = k.fails(&["get", "lease", "kleidia-upgrade", "-n", "kleidia"]);
    assert!(
        err.contains("leases.coordination.k8s.io \"kleidia-upgrade\" not found"),
        "{err}"
    );
}

#[test]
fn requests_are_counted_by_verb_resource_and_namespace() {
    let (sb, k) = start();
    k.ok(&["get", "pods", "-n", "kleidia"]);
    sb.reset_requests();

    k.ok(&["get", "pods", "-n", "kleidia"]);
    let counts = sb.requests();
    assert_eq!(
        counts.count_where(|c| c.key.verb == "list"
            && c.key.resource == "pods"
            && c.key.namespace == "kleidia"),
        1,
        "{counts:?}"
    );
    assert_eq!(counts.count("list", "pods"), 1);
    assert!(counts.mutating().is_empty(), "{counts:?}");

    // A server-side dry run is counted as such and changes nothing.
    sb.reset_requests();
    let file = k.file(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: kleidia\ndata:\n  k: v\n",
    );
    k.ok(&["apply", "--dry-run=server", "-f", &file]);
    let counts = sb.requests();
    assert!(counts.mutating().is_empty(), "{counts:?}");
    assert!(
        counts.count_where(|c| c.key.dry_run && c.key.resource == "configmaps") >= 1,
        "{counts:?}"
    );
    k.fails(&["get", "configmap", "c", "-n", "kleidia"]);

    // A real write is mutating; a 404 is counted with its code.
    sb.reset_requests();
    k.ok(&["create", "-f", &file]);
    k.fails(&["get", "secret", "nope", "-n", "kleidia"]);
    let counts = sb.requests();
    let mutating = counts.mutating();
    assert_eq!(mutating.len(), 1, "{mutating:?}");
    assert_eq!(mutating[0].key.verb, "create");
    assert_eq!(mutating[0].key.resource, "configmaps");
    assert_eq!(mutating[0].codes.get("201"), Some(&1));
    let missing = counts.filter(|c| c.key.verb == "get" && c.key.resource == "secrets");
    assert_eq!(missing[0].codes.get("404"), Some(&1), "{missing:?}");

    // The admin endpoint: the same counts as JSON, DELETE resets, and
    // reading them is not counted.
    let client = Client::new(sb.url(), sb.ca_pem(), Some(sb.token())).unwrap();
    let get = |m: Method| {
        sb.handle()
            .block_on(client.send(m, "/sandbox/requests", &[], Vec::new()))
            .unwrap()
            .json()
    };
    let listed = get(Method::GET);
    assert_eq!(listed, serde_json::to_value(&counts).unwrap());
    let cleared = get(Method::DELETE);
    assert_eq!(cleared["total"], counts.total);
    assert_eq!(get(Method::GET), json!({"total": 0, "requests": []}));
}
