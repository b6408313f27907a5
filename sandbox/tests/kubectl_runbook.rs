//! The runbook's kubectl commands that need no PostgreSQL or OpenBao, run
//! with real kubectl (`.venv/bin/kubectl`, installed by `scripts/setup`)
//! against a fresh sandbox: apply, get, describe, events, jsonpath, logs,
//! rollout status (and watching an image change roll), wait, exec with
//! 50 MB of binary data through stdin/stdout, cp both ways, auth can-i,
//! a broken-image rollout that never completes and is undone, and an exec
//! stream cut by a fault.

mod support;

use std::process::Stdio;

use kleidia_sandbox::server::{Sandbox, SandboxOptions};
use support::{Kubectl, sha256_hex};

const MANIFEST: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: kleidia-services-backend
  namespace: kleidia
  labels: {app.kubernetes.io/name: backend}
spec:
  replicas: 2
  selector:
    matchLabels: {app.kubernetes.io/name: backend}
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
  template:
    metadata:
      labels: {app.kubernetes.io/name: backend}
    spec:
      containers:
      - name: backend
        image: ghcr.io/kleidia/backend:1.4.0
        command: ["sh", "-c", "echo backend starting on port 8080; echo ready; exec sleep 100000"]
        ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata:
  name: kleidia-services-backend
  namespace: kleidia
spec:
  selector: {app.kubernetes.io/name: backend}
  ports: [{name: http, port: 8080, targetPort: http}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: kleidia-data-postgres-cluster
  namespace: kleidia
spec:
  replicas: 1
  serviceName: kleidia-data-postgres-cluster
  selector:
    matchLabels: {app: postgres}
  template:
    metadata:
      labels: {app: postgres}
    spec:
      containers:
      - name: postgres
        image: docker.io/library/busybox:1.36
        volumeMounts: [{name: data, mountPath: /var/lib/postgresql/data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
"#;

/// `kubectl rollout status` of `what` (`kind/name`), given two minutes.
fn rollout_status(k: &Kubectl, what: &str) -> String {
    k.ok(&["rollout", "status", what, "--timeout=120s"])
}

/// The image of the first container in the pod template of `what`
/// (`kind/name`).
fn first_image(k: &Kubectl, what: &str) -> String {
    k.ok(&[
        "get",
        what,
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ])
}

/// Running backend pods that are not being deleted.
fn backend_pods(k: &Kubectl) -> Vec<String> {
    let list: serde_json::Value = serde_json::from_str(&k.ok(&[
        "get",
        "pods",
        "-l",
        "app.kubernetes.io/name=backend",
        "--field-selector=status.phase=Running",
        "-o",
        "json",
    ]))
    .unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn runbook_commands_with_real_kubectl() {
    let sb = Sandbox::start(SandboxOptions::default()).expect("sandbox starts");
    let k = Kubectl::new(&sb);

    // apply -f
    std::fs::write(k.path("app.yaml"), MANIFEST).unwrap();
    let applied = k.ok(&["apply", "-f", "app.yaml"]);
    assert!(
        applied.contains("deployment.apps/kleidia-services-backend created"),
        "{applied}"
    );
    assert!(applied.contains("statefulset.apps/kleidia-data-postgres-cluster created"));

    // rollout status / wait
    let out = rollout_status(&k, "deployment/kleidia-services-backend");
    assert!(
        out.contains("deployment \"kleidia-services-backend\" successfully rolled out"),
        "{out}"
    );
    let out = rollout_status(&k, "statefulset/kleidia-data-postgres-cluster");
    assert!(out.contains("roll out complete"), "{out}");
    let out = k.ok(&[
        "wait",
        "--for=condition=ready",
        "pod",
        "-l",
        "app.kubernetes.io/name=backend",
        "--timeout=120s",
    ]);
    assert_eq!(out.matches("condition met").count(), 2, "{out}");

    // get pods: the table a real cluster shows.
    let out = k.ok(&["get", "pods"]);
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "{out}"
    );
    let db = out
        .lines()
        .find(|l| l.starts_with("kleidia-data-postgres-cluster-0 "))
        .unwrap_or_else(|| panic!("no postgres pod in:\n{out}"));
    let cols: Vec<&str> = db.split_whitespace().collect();
    assert_eq!(&cols[1..4], ["1/1", "Running", "0"], "{out}");

    // jsonpath
    let phase = k.ok(&[
        "get",
        "pod",
        "kleidia-data-postgres-cluster-0",
        "-o",
        "jsonpath={.status.phase}",
    ]);
    assert_eq!(phase, "Running");
    let images = first_image(&k, "deployment/kleidia-services-backend");
    assert_eq!(images, "ghcr.io/kleidia/backend:1.4.0");
    let pvc = k.ok(&[
        "get",
        "pvc",
        "data-kleidia-data-postgres-cluster-0",
        "-o",
        "jsonpath={.status.phase}",
    ]);
    assert_eq!(pvc, "Bound");

    // events, sorted
    let out = k.ok(&["get", "events", "--sort-by=.metadata.creationTimestamp"]);
    for reason in [
        "Scheduled",
        "Pulled",
        "Created",
        "Started",
        "SuccessfulCreate",
        "ScalingReplicaSet",
    ] {
        assert!(out.contains(reason), "no {reason} event in:\n{out}");
    }

    // describe
    let out = k.ok(&["describe", "pod", "kleidia-data-postgres-cluster-0"]);
    for needle in [
        "Name:",
        "kleidia-data-postgres-cluster-0",
        "Node:",
        "sandbox-node",
        "Status:",
        "Running",
        "Ready",
        "Events:",
        "Successfully assigned kleidia/kleidia-data-postgres-cluster-0 to sandbox-node",
    ] {
        assert!(out.contains(needle), "describe lacks {needle:?}:\n{out}");
    }

    // logs (the container's output)
    let pods = backend_pods(&k);
    assert_eq!(pods.len(), 2, "{pods:?}");
    let logs = k.ok(&["logs", &pods[0]]);
    assert_eq!(logs, "backend starting on port 8080\nready\n");
    let logs = k.ok(&["logs", &pods[0], "-c", "backend", "--tail=1"]);
    assert_eq!(logs, "ready\n");
    let logs = k.ok(&["logs", "deployment/kleidia-services-backend"]);
    assert!(logs.contains("backend starting"), "{logs}");

    // exec: exit codes and a missing executable
    let out = k.ok(&["exec", &pods[0], "--", "sh", "-c", "echo $HOSTNAME"]);
    assert_eq!(out.trim(), pods[0]);
    let failed = k.run(&["exec", &pods[0], "--", "sh", "-c", "exit 3"]);
    assert_eq!(failed.status.code(), Some(3), "{failed:?}");
    let missing = k.run(&["exec", &pods[0], "--", "pg_dump", "--version"]);
    assert!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.contains("executable file not found in $PATH"), "{err}");

    // The runbook's form: exec -it into a deployment (no terminal here, so
    // kubectl goes on without a TTY).
    let out = k.ok(&[
        "exec",
        "-it",
        "deployment/kleidia-services-backend",
        "-n",
        "kleidia",
        "--",
        "sh",
        "-c",
        "echo via deployment",
    ]);
    assert_eq!(out.trim(), "via deployment");
    let out = k.ok(&["describe", "pod", &pods[0]]);
    assert!(
        out.lines().any(|l| l.split_whitespace().collect::<Vec<_>>()
            == ["Image:", "ghcr.io/kleidia/backend:1.4.0"]),
        "{out}"
    );
    assert!(out.contains("Image ID:"), "{out}");

    // exec -i: 50 MB of random bytes through cat, byte-exact.
    let mut data = vec![0u8; 50 << 20];
    rand::fill(&mut data[..]);
    std::fs::write(k.path("in.bin"), &data).unwrap();
    let out = k
        .cmd(&["exec", "-i", &pods[0], "--", "cat"])
        .stdin(std::fs::File::open(k.path("in.bin")).unwrap())
        .stdout(std::fs::File::create(k.path("out.bin")).unwrap())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "exec -i cat failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let back = std::fs::read(k.path("out.bin")).unwrap();
    assert_eq!(back.len(), data.len(), "byte count through exec -i cat");
    assert!(
        sha256_hex(&back) == sha256_hex(&data),
        "exec -i cat changed the data"
    );
    drop(back);

    // cp both ways: a file and a folder.
    let small = &data[..3 << 20];
    std::fs::write(k.path("dump.bin"), small).unwrap();
    let db_pod = "kleidia/kleidia-data-postgres-cluster-0";
    k.ok(&["cp", "dump.bin", &format!("{db_pod}:/tmp/dump.bin")]);
    let inside = k
        .cmd(&[
            "exec",
            "kleidia-data-postgres-cluster-0",
            "--",
            "cat",
            "/tmp/dump.bin",
        ])
        .output()
        .unwrap();
    assert!(inside.status.success());
    assert!(inside.stdout == small, "file copied into the pod differs");
    k.ok(&["cp", &format!("{db_pod}:/tmp/dump.bin"), "dump-back.bin"]);
    assert!(std::fs::read(k.path("dump-back.bin")).unwrap() == small);
    std::fs::create_dir_all(k.path("conf/sub")).unwrap();
    std::fs::write(k.path("conf/sub/a.conf"), "a=1\n").unwrap();
    k.ok(&["cp", "conf", &format!("{db_pod}:/etc/conf")]);
    let listed = k.ok(&[
        "exec",
        "kleidia-data-postgres-cluster-0",
        "--",
        "cat",
        "/etc/conf/sub/a.conf",
    ]);
    assert_eq!(listed, "a=1\n");
    k.ok(&["cp", &format!("{db_pod}:/etc/conf"), "conf-back"]);
    assert_eq!(
        std::fs::read_to_string(k.path("conf-back/sub/a.conf")).unwrap(),
        "a=1\n"
    );

    // auth can-i
    assert_eq!(
        k.ok(&["auth", "can-i", "create", "pods/exec"]).trim(),
        "yes"
    );
    assert_eq!(
        k.ok(&["auth", "can-i", "get", "secrets", "-n", "kleidia"])
            .trim(),
        "yes"
    );

    // An image change: rollout status watches it roll.
    k.ok(&[
        "set",
        "image",
        "deployment/kleidia-services-backend",
        "backend=ghcr.io/kleidia/backend:1.5.0",
    ]);
    let out = rollout_status(&k, "deployment/kleidia-services-backend");
    assert!(
        out.contains("Waiting for deployment \"kleidia-services-backend\" rollout to finish"),
        "{out}"
    );
    assert!(out.contains("successfully rolled out"), "{out}");
    let history = k.ok(&["rollout", "history", "deployment/kleidia-services-backend"]);
    assert!(history.contains('1') && history.contains('2'), "{history}");

    // A broken image never becomes ready: rollout status gives up, the
    // old pods keep serving, and undo brings the deployment back.
    k.ok(&[
        "set",
        "image",
        "deployment/kleidia-services-backend",
        "backend=ghcr.io/kleidia/backend:1.6.0-broken",
    ]);
    let stuck = k.run(&[
        "rollout",
        "status",
        "deployment/kleidia-services-backend",
        "--timeout=5s",
    ]);
    assert!(
        !stuck.status.success(),
        "a broken rollout must not complete"
    );
    let err = String::from_utf8_lossy(&stuck.stderr);
    assert!(err.contains("timed out waiting for the condition"), "{err}");
    let out = k.ok(&["get", "pods", "-l", "app.kubernetes.io/name=backend"]);
    assert!(
        out.contains("ErrImagePull") || out.contains("ImagePullBackOff"),
        "{out}"
    );
    let events = k.ok(&["get", "events", "--field-selector", "type=Warning"]);
    assert!(events.contains("Failed"), "{events}");
    k.ok(&["rollout", "undo", "deployment/kleidia-services-backend"]);
    let out = rollout_status(&k, "deployment/kleidia-services-backend");
    assert!(out.contains("successfully rolled out"), "{out}");
    let image = first_image(&k, "deployment/kleidia-services-backend");
    assert_eq!(image, "ghcr.io/kleidia/backend:1.5.0");

    // StatefulSet: data on the claim survives the pod; a restart rolls
    // the pods again and rollout status follows it.
    let db = "kleidia-data-postgres-cluster-0";
    k.ok(&[
        "exec",
        db,
        "--",
        "sh",
        "-c",
        "echo 42 > /var/lib/postgresql/data/marker",
    ]);
    k.ok(&["delete", "pod", db]);
    rollout_status(&k, "statefulset/kleidia-data-postgres-cluster");
    k.ok(&[
        "wait",
        "--for=condition=ready",
        &format!("pod/{db}"),
        "--timeout=120s",
    ]);
    let marker = k.ok(&["exec", db, "--", "cat", "/var/lib/postgresql/data/marker"]);
    assert_eq!(marker, "42\n");
    let before = k.ok(&["get", "pod", db, "-o", "jsonpath={.metadata.uid}"]);
    k.ok(&[
        "rollout",
        "restart",
        "statefulset/kleidia-data-postgres-cluster",
    ]);
    let out = rollout_status(&k, "statefulset/kleidia-data-postgres-cluster");
    assert!(out.contains("roll out complete"), "{out}");
    let after = k.ok(&["get", "pod", db, "-o", "jsonpath={.metadata.uid}"]);
    assert_ne!(before, after, "rollout restart replaces the pod");

    // StatefulSet image change and undo through ControllerRevisions.
    k.ok(&[
        "set",
        "image",
        "statefulset/kleidia-data-postgres-cluster",
        "postgres=docker.io/library/busybox:1.37",
    ]);
    rollout_status(&k, "statefulset/kleidia-data-postgres-cluster");
    let history = k.ok(&[
        "rollout",
        "history",
        "statefulset/kleidia-data-postgres-cluster",
    ]);
    assert!(history.contains("REVISION"), "{history}");
    k.ok(&[
        "rollout",
        "undo",
        "statefulset/kleidia-data-postgres-cluster",
    ]);
    rollout_status(&k, "statefulset/kleidia-data-postgres-cluster");
    let image = first_image(&k, "statefulset/kleidia-data-postgres-cluster");
    assert_eq!(image, "docker.io/library/busybox:1.36");
    let history = k.ok(&[
        "rollout",
        "history",
        "statefulset/kleidia-data-postgres-cluster",
    ]);
    let revisions: Vec<&str> = history
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    // 1: created, 2: rollout restart, 3: new image; undo brings back 2's
    // template, which becomes revision 4.
    assert_eq!(
        revisions,
        ["1", "3", "4"],
        "undo makes the old template the newest revision:\n{history}"
    );
    let volume_mount = k.ok(&[
        "get",
        "statefulset",
        "kleidia-data-postgres-cluster",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].volumeMounts[0].mountPath}",
    ]);
    assert_eq!(volume_mount, "/var/lib/postgresql/data");

    // A fault cuts an exec stream after 1 MB: kubectl fails, the copy is short.
    let pods = backend_pods(&k);
    sb.faults().set_exec_kill(&pods[0], Some(1 << 20));
    let cut = k
        .cmd(&["exec", "-i", &pods[0], "--", "cat"])
        .stdin(std::fs::File::open(k.path("in.bin")).unwrap())
        .stdout(std::fs::File::create(k.path("cut.bin")).unwrap())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!cut.status.success(), "a killed exec stream must fail");
    let got = std::fs::metadata(k.path("cut.bin")).unwrap().len();
    assert!(got <= 1 << 20, "{got} bytes passed a 1 MiB exec kill");
    sb.faults().set_exec_kill(&pods[0], None);
    let out = k.ok(&["exec", &pods[0], "--", "echo", "back"]);
    assert_eq!(out, "back\n");
}
