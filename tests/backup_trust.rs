//! What `backup` trusts before it moves a secret, against the sandbox with
//! the plugin binary and real kubectl: the OpenBao token goes only to a pod
//! its release's workload controls (a pod with copied labels gets nothing),
//! and over TLS when the release configures its listener for TLS (the
//! sandbox's OpenBao serves plain HTTP only, so the TLS exchange itself is
//! proven against a local TLS listener); a kubeconfig that skips TLS
//! verification is refused without
//! `--insecure`, a config file can require encryption, and a values-only
//! backup touches no pod.

mod support;

use std::path::{Path, PathBuf};

use kleidia_sandbox::server::requests::RequestCounts;
use support::{Cluster, ReleaseFixture, kubectl, kubectl_with_stdin, plugin};

const NS: &str = "kleidia";
const PLATFORM: &str = include_str!("fixtures/platform.yaml");
const DATA: &str = include_str!("fixtures/data.yaml");
const SERVICES: &str = include_str!("fixtures/services.yaml");

/// A token that must never reach a pod or the terminal.
const TOKEN: &str = "s.kleidia-test-token-never-sent";

/// OpenBao's configuration as the platform chart renders it: raft storage,
/// a plain-HTTP listener.
const BAO_CONFIG: &str = r#"---
apiVersion: v1
kind: ConfigMap
metadata:
  name: kleidia-platform-openbao-config
data:
  config.hcl: |
    listener "tcp" {
      address = "[::]:8200"
      tls_disable = true
    }
    storage "raft" {
      path = "/openbao/data"
    }
"#;

/// OpenBao run by a Deployment (its pods are owned through a ReplicaSet).
const BAO_DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: kleidia-platform-openbao
spec:
  replicas: 1
  selector:
    matchLabels: {app.kubernetes.io/name: openbao, app.kubernetes.io/instance: kleidia-platform}
  template:
    metadata:
      labels: {app.kubernetes.io/name: openbao, app.kubernetes.io/instance: kleidia-platform}
    spec:
      containers:
      - name: openbao
        image: quay.io/openbao/openbao:2.4.1
        ports:
        - {name: http, containerPort: 8200}
"#;

/// A pod that copies OpenBao's labels and image but no workload created.
const ROGUE_POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: kleidia-platform-openbao-copy
  labels: {app.kubernetes.io/name: openbao, app.kubernetes.io/instance: kleidia-platform}
spec:
  containers:
  - name: openbao
    image: quay.io/openbao/openbao:2.4.1
    ports:
    - {name: http, containerPort: 8200}
"#;

fn platform_release(manifest: &str) -> ReleaseFixture {
    ReleaseFixture::new("kleidia-platform", 1, "1.0.0", "2.4.1", manifest)
}

/// Requests that reach into a pod: exec, attach, port-forward, proxy.
fn into_pods(counts: &RequestCounts) -> u64 {
    counts.count_where(|r| {
        matches!(
            r.key.subresource.as_str(),
            "exec" | "attach" | "portforward" | "proxy"
        )
    })
}

fn port_forwards(counts: &RequestCounts) -> u64 {
    counts.count_where(|r| r.key.subresource == "portforward")
}

fn backup(c: &Cluster, dir: &Path, args: &[&str]) -> std::process::Output {
    plugin("kubectl-kleidia")
        .args(["backup", "-n", NS, "--timeout", "20s", "--dir"])
        .arg(dir)
        .args(args)
        .arg("--kubeconfig")
        .arg(c.kubeconfig())
        .env("BAO_TOKEN", TOKEN)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Bundle folders with a manifest (complete-looking) under `dir`.
fn bundles(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.join("manifest.json").exists())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_pod_with_copied_labels_but_no_owner_receives_no_token() {
    let c = Cluster::start_with(Default::default());
    // The release declares OpenBao's StatefulSet; the only pod its selector
    // finds was created by hand with the same labels and image.
    c.store_release_secret(NS, &platform_release(&format!("{PLATFORM}{BAO_CONFIG}")));
    let out = kubectl_with_stdin(
        c.kubeconfig(),
        &["apply", "-n", NS, "-f", "-"],
        ROGUE_POD.as_bytes(),
    );
    assert!(out.status.success(), "kubectl apply: {}", text(&out.stderr));

    let tmp = tempfile::tempdir().unwrap();
    c.sandbox.reset_requests();
    let out = backup(&c, tmp.path(), &["--components", "platform"]);
    let counts = c.sandbox.requests();
    let err = text(&out.stderr);
    eprintln!("{err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("not sending the OpenBao token to pod kleidia/kleidia-platform-openbao-copy")
            && err.contains("no controlling owner reference"),
        "the refusal names the pod and why: {err}"
    );
    assert_eq!(
        port_forwards(&counts),
        0,
        "no connection was opened to the pod: {counts:?}"
    );
    assert!(!err.contains(TOKEN) && !text(&out.stdout).contains(TOKEN));
    assert!(bundles(tmp.path()).is_empty(), "no bundle was written");
}

#[test]
fn a_pod_owned_through_its_replicaset_is_trusted() {
    let c = Cluster::start_with(Default::default());
    let manifest = format!("{BAO_DEPLOYMENT}{BAO_CONFIG}");
    c.apply_manifest(NS, &manifest);
    c.store_release_secret(NS, &platform_release(&manifest));
    c.wait_for_ready_pods(NS, 1);

    let tmp = tempfile::tempdir().unwrap();
    c.sandbox.reset_requests();
    let out = backup(&c, tmp.path(), &["--components", "platform"]);
    let counts = c.sandbox.requests();
    let err = text(&out.stderr);
    eprintln!("{err}");
    assert!(
        !err.contains("not sending the OpenBao token"),
        "the Deployment's pod passed the check: {err}"
    );
    // The check read the pod, its ReplicaSet and the Deployment, then the
    // snapshot was asked for through a port-forward (nothing serves
    // OpenBao in this pod, so the backup itself fails after that).
    assert!(counts.count("get", "replicasets") >= 1, "{counts:?}");
    assert!(counts.count("get", "deployments") >= 1, "{counts:?}");
    assert!(port_forwards(&counts) >= 1, "{counts:?}");
    assert!(!err.contains(TOKEN));
    // The release's listener has `tls_disable = true`: plain HTTP.
    assert!(err.contains("HTTP exchange with OpenBao failed"), "{err}");

    // The same release, but the pod now runs another image than the
    // release declares: refused, naming both images.
    let out = kubectl(
        c.kubeconfig(),
        &[
            "set",
            "image",
            "-n",
            NS,
            "deployment/kleidia-platform-openbao",
            "openbao=registry.example/other/openbao:9.9.9",
        ],
    );
    assert!(
        out.status.success(),
        "kubectl set image: {}",
        text(&out.stderr)
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let out = kubectl(
            c.kubeconfig(),
            &[
                "get",
                "pods",
                "-n",
                NS,
                "-o",
                "jsonpath={.items[*].spec.containers[0].image}",
            ],
        );
        let images = text(&out.stdout);
        if !images.contains("quay.io/openbao/openbao:2.4.1") && images.contains("9.9.9") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the Deployment did not roll to the new image: {images}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    c.wait_for_ready_pods(NS, 1);
    c.sandbox.reset_requests();
    let out = backup(&c, tmp.path(), &["--components", "platform"]);
    let counts = c.sandbox.requests();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("runs image registry.example/other/openbao:9.9.9")
            && err.contains("declares quay.io/openbao/openbao:2.4.1"),
        "{err}"
    );
    assert_eq!(port_forwards(&counts), 0, "{counts:?}");
}

#[test]
fn a_listener_the_release_configures_for_tls_is_spoken_to_with_tls() {
    let c = Cluster::start_with(Default::default());
    let tls_config = BAO_CONFIG.replace(
        "tls_disable = true",
        "tls_cert_file = \"/openbao/tls/tls.crt\"\n      tls_key_file = \"/openbao/tls/tls.key\"",
    );
    let manifest = format!("{BAO_DEPLOYMENT}{tls_config}");
    c.apply_manifest(NS, &manifest);
    c.store_release_secret(NS, &platform_release(&manifest));
    c.wait_for_ready_pods(NS, 1);

    let tmp = tempfile::tempdir().unwrap();
    let out = backup(&c, tmp.path(), &["--components", "platform"]);
    let err = text(&out.stderr);
    eprintln!("{err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
    // Nothing in this pod serves OpenBao: what fails is the TLS handshake
    // the plugin opened over the port-forward, before any request.
    assert!(
        err.contains("TLS handshake with OpenBao's listener failed"),
        "{err}"
    );
    assert!(!err.contains(TOKEN));
}

/// Waits until `count` pods run (ready or not: the fixtures' servers are
/// not real, only reachable).
fn wait_for_running_pods(c: &Cluster, count: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let out = kubectl(
            c.kubeconfig(),
            &[
                "get",
                "pods",
                "-n",
                NS,
                "-o",
                "jsonpath={.items[*].status.phase}",
            ],
        );
        let running = text(&out.stdout).matches("Running").count();
        if running >= count {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {running} of {count} pods run"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// The three fixture releases with their workloads and pods.
fn install_fixtures(c: &Cluster) {
    for m in [PLATFORM, DATA, SERVICES] {
        c.apply_manifest(NS, m);
    }
    c.store_release_secret(NS, &platform_release(PLATFORM));
    c.store_release_secret(
        NS,
        &ReleaseFixture::new("kleidia-data", 1, "1.0.0", "15.4", DATA).values(
            serde_json::json!({"postgres": {"user": "yubiuser", "database": "kleidia"}}),
            serde_json::json!({"postgres": {"password": "in-the-values"}}),
        ),
    );
    c.store_release_secret(
        NS,
        &ReleaseFixture::new("kleidia-services", 1, "1.0.0", "1.0.0", SERVICES),
    );
}

#[test]
fn a_values_backup_touches_no_pod() {
    let c = Cluster::start_with(Default::default());
    install_fixtures(&c);
    wait_for_running_pods(&c, 4);

    // The counter sees what reaches into a pod: `versions` asks every
    // server, through exec and the API server's proxy.
    c.sandbox.reset_requests();
    let out = plugin("kubectl-kleidia")
        .args(["versions", "-n", NS, "--timeout", "20s", "--kubeconfig"])
        .arg(c.kubeconfig())
        .output()
        .unwrap();
    let counts = c.sandbox.requests();
    assert!(into_pods(&counts) > 0, "{counts:?}\n{}", text(&out.stderr));

    let tmp = tempfile::tempdir().unwrap();
    c.sandbox.reset_requests();
    let out = backup(&c, tmp.path(), &["--components", "values", "-o", "json"]);
    let counts = c.sandbox.requests();
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(
        into_pods(&counts),
        0,
        "a values backup reached into a pod: {counts:?}"
    );
    assert!(
        !err.contains("could not ask"),
        "servers left alone on purpose are not warned about: {err}"
    );
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        created["manifest"]["versions"]["postgres"], "15.4 (chart appVersion)",
        "{created}"
    );
    assert_eq!(bundles(tmp.path()).len(), 1);
}

/// A copy of the sandbox's kubeconfig whose cluster skips TLS verification.
fn insecure_kubeconfig(c: &Cluster, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(c.kubeconfig()).unwrap();
    let mut doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    for cluster in doc["clusters"].as_sequence_mut().unwrap() {
        let m = cluster["cluster"].as_mapping_mut().unwrap();
        m.remove("certificate-authority-data");
        m.remove("certificate-authority");
        m.insert("insecure-skip-tls-verify".into(), true.into());
    }
    let path = dir.join("insecure-kubeconfig");
    std::fs::write(&path, serde_yaml_ng::to_string(&doc).unwrap()).unwrap();
    path
}

#[test]
fn a_kubeconfig_skipping_tls_verification_moves_no_secret_without_insecure() {
    let c = Cluster::start_with(Default::default());
    install_fixtures(&c);
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = insecure_kubeconfig(&c, tmp.path());
    let dir = tmp.path().join("backups");
    let run = |args: &[&str]| {
        plugin("kubectl-kleidia")
            .args(args)
            .args(["-n", NS, "--kubeconfig"])
            .arg(&kubeconfig)
            .output()
            .unwrap()
    };

    // Reading versions moves no secret: allowed (exit 1 only says the
    // fixture's servers do not answer as real ones would).
    let out = run(&["versions", "--timeout", "20s", "-o", "json"]);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "versions: {}",
        text(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("versions printed no JSON ({e}): {}", text(&out.stderr)));
    assert!(report.to_string().contains("kleidia-platform"), "{report}");

    let dir_s = dir.to_str().unwrap();
    let charts = support::workspace().join("sandbox/charts/1.1.0");
    let refused: [(&str, Vec<&str>); 3] = [
        (
            "backup",
            vec!["backup", "--components", "values", "--dir", dir_s],
        ),
        (
            "upgrade",
            vec![
                "upgrade",
                "--charts",
                charts.to_str().unwrap(),
                "--backup-dir",
                dir_s,
            ],
        ),
        (
            "rollback data",
            vec![
                "rollback",
                "data",
                "--allow-data-rollback",
                "--backup-dir",
                dir_s,
                // Its backup takes the token from a Secret as `backup` can.
                "--openbao-token-secret",
                "openbao-root:token",
            ],
        ),
    ];
    for (what, args) in refused {
        c.sandbox.reset_requests();
        let out = run(&args);
        let counts = c.sandbox.requests();
        let err = text(&out.stderr);
        eprintln!("{what}: {err}");
        assert_eq!(out.status.code(), Some(2), "{what}: {err}");
        assert!(
            err.contains("insecure-skip-tls-verify") && err.contains("--insecure"),
            "{what}: the refusal names the setting and the flag: {err}"
        );
        assert!(
            counts.mutating().is_empty(),
            "{what} changed nothing: {counts:?}"
        );
        assert!(
            counts.count("get", "secrets") + counts.count("list", "secrets") == 0,
            "{what} read no Secret: {counts:?}"
        );
    }
    assert!(bundles(&dir).is_empty());

    // With --insecure the backup runs, and says what it accepted.
    let out = run(&[
        "backup",
        "--components",
        "values",
        "--dir",
        dir_s,
        "--insecure",
    ]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("--insecure") && err.contains("skips TLS verification"),
        "{err}"
    );
    assert_eq!(bundles(&dir).len(), 1);
}

#[test]
fn a_config_file_requiring_encryption_refuses_a_bundle_in_clear() {
    let c = Cluster::start_with(Default::default());
    install_fixtures(&c);
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config.yaml");
    std::fs::write(&config, "backup:\n  requireEncryption: true\n").unwrap();
    let dir = tmp.path().join("backups");
    let config_s = config.to_str().unwrap();

    c.sandbox.reset_requests();
    let out = backup(&c, &dir, &["--components", "values", "--config", config_s]);
    let counts = c.sandbox.requests();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        counts.count_where(|r| !r.key.resource.is_empty()),
        0,
        "refused before the cluster was asked anything: {counts:?}"
    );
    assert!(
        err.contains("requireEncryption")
            && err.contains("--encrypt-to")
            && err.contains("--passphrase-env"),
        "{err}"
    );
    assert!(bundles(&dir).is_empty(), "nothing was written");

    // upgrade and a data rollback take a backup first: refused before
    // they read or change anything.
    let charts = support::workspace().join("sandbox/charts/1.1.0");
    let dir_s = dir.to_str().unwrap();
    for args in [
        vec![
            "upgrade",
            "--charts",
            charts.to_str().unwrap(),
            "--backup-dir",
            dir_s,
        ],
        vec![
            "rollback",
            "data",
            "--allow-data-rollback",
            "--backup-dir",
            dir_s,
        ],
    ] {
        c.sandbox.reset_requests();
        let out = plugin("kubectl-kleidia")
            .args(&args)
            .args(["-n", NS, "--config", config_s, "--kubeconfig"])
            .arg(c.kubeconfig())
            .output()
            .unwrap();
        let counts = c.sandbox.requests();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("--encrypt-to") && err.contains("--passphrase-env"),
            "{args:?}: {err}"
        );
        assert_eq!(
            counts.count_where(|r| !r.key.resource.is_empty()),
            0,
            "{args:?} asked the cluster nothing: {counts:?}"
        );
    }
    assert!(bundles(&dir).is_empty(), "nothing was written");

    let out = plugin("kubectl-kleidia")
        .args(["backup", "-n", NS, "--components", "values", "--dir"])
        .arg(&dir)
        .args([
            "--config",
            config_s,
            "--passphrase-env",
            "BUNDLE_PASS",
            "-o",
            "json",
        ])
        .arg("--kubeconfig")
        .arg(c.kubeconfig())
        .env("BUNDLE_PASS", "a passphrase long enough for the test")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        created["manifest"]["encryption"]["passphrase"], true,
        "{created}"
    );

    // Without the setting, the same unencrypted backup is written (with its
    // warning).
    let out = backup(&c, &dir, &["--components", "values"]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("not encrypted"), "{err}");
}

/// A listener that speaks only TLS (the sandbox's own certificate), serving
/// one snapshot request: what it received, and the body it answered.
async fn tls_listener() -> (u16, tokio::task::JoinHandle<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let material = kleidia_sandbox::tls::generate().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(material.server_config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = tokio::spawn(async move {
        let mut seen = String::new();
        // The first connection may be a plain-HTTP attempt, refused by the
        // handshake; the next one is served.
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                seen.push_str("[plain HTTP refused]\n");
                continue;
            };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if tls.read(&mut byte).await.unwrap() == 0 {
                    break;
                }
                head.push(byte[0]);
            }
            seen.push_str(&String::from_utf8_lossy(&head));
            let body = b"snapshot over tls";
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            tls.write_all(answer.as_bytes()).await.unwrap();
            tls.write_all(body).await.unwrap();
            tls.shutdown().await.ok();
            return seen;
        }
    });
    (port, served)
}

#[tokio::test]
async fn a_tls_listener_gets_the_snapshot_request_over_tls() {
    use age::secrecy::SecretString;
    use kleidia::backup::openbao::{raft_snapshot, raft_snapshot_tls};
    use tokio::io::AsyncReadExt;
    let (port, served) = tls_listener().await;
    let token = SecretString::from(TOKEN.to_owned());

    // Plain HTTP to a TLS listener gets no answer it can use.
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    assert!(raft_snapshot(tcp, "localhost", &token).await.is_err());

    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut body = raft_snapshot_tls(tcp, "localhost", &token)
        .await
        .expect("the snapshot request over TLS");
    let mut got = Vec::new();
    body.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"snapshot over tls");
    let seen = served.await.unwrap();
    assert!(seen.starts_with("[plain HTTP refused]"), "{seen}");
    assert!(
        seen.contains("GET /v1/sys/storage/raft/snapshot") && seen.contains(TOKEN),
        "the request and its token arrived inside TLS: {seen}"
    );
}
