//! `install_demo`: the 1.0.0 set installed by the real Helm engine into a
//! sandbox with the real-software runtimes, reachable the way operators
//! reach it (service proxy to the backend's health, exec into PostgreSQL).

mod support;

use kleidia_sandbox::demo::{
    NAMESPACE, RELEASES, charts_dir, install_demo, install_demo_unless_empty, real_runtimes,
};
use kleidia_sandbox::runtimes::openbao::OpenBaoStorage;
use kleidia_sandbox::server::{Sandbox, SandboxOptions};
use serde_json::Value;
use support::Kubectl;

#[test]
fn install_demo_brings_up_the_three_releases_with_real_software() {
    let sandbox = Sandbox::start(SandboxOptions {
        runtimes: real_runtimes(OpenBaoStorage::Raft),
        empty: false,
        ..SandboxOptions::default()
    })
    .expect("sandbox starts");
    let kc = sandbox.kubeconfig_path().to_path_buf();
    let k = Kubectl::new(&sandbox);
    assert!(install_demo_unless_empty(&sandbox).expect("demo installs"));
    // Installing again is an upgrade to the same charts: harmless.
    sandbox
        .handle()
        .block_on(install_demo(&kc, &charts_dir("1.0.0")))
        .expect("demo re-installs");

    let secrets = k.json(&["get", "secrets", "-n", NAMESPACE, "-l", "owner=helm"]);
    let mut releases: Vec<&str> = secrets["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["metadata"]["labels"]["name"].as_str().unwrap())
        .collect();
    releases.sort();
    assert_eq!(releases.len(), 6, "two revisions of each release");
    releases.dedup();
    let mut expected = RELEASES.to_vec();
    expected.sort();
    assert_eq!(releases, expected);

    // The backend's health through the API server's service proxy (port
    // named `http`), answered by the backend runtime with its image tag.
    let health = k.ok(&[
        "get",
        "--raw",
        "/api/v1/namespaces/kleidia/services/kleidia-services-backend:http/proxy/api/health",
    ]);
    let health: Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["version"], "1.0.0");
    assert_eq!(health["database"], "connected");

    // The runbook's database check.
    let version = k.demo_psql(&["-c", "SELECT version();"]);
    assert!(version.contains("PostgreSQL"), "{version}");

    // The runbook's OpenBao backup: a raft snapshot saved inside the pod,
    // then copied out with kubectl cp.
    let root = sandbox
        .shared()
        .container_dir(NAMESPACE, "kleidia-platform-openbao-0", "openbao")
        .join("root");
    let token = kleidia_sandbox::runtimes::openbao::root_token_at(&root)
        .expect("the runtime kept the root token");
    let with_token = format!("BAO_TOKEN={token}");
    k.ok(&[
        "exec",
        "kleidia-platform-openbao-0",
        "-n",
        "kleidia",
        "--",
        "env",
        &with_token,
        "vault",
        "operator",
        "raft",
        "snapshot",
        "save",
        "/tmp/vault-backup.snap",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("vault-backup.snap");
    k.ok(&[
        "cp",
        "kleidia/kleidia-platform-openbao-0:/tmp/vault-backup.snap",
        local.to_str().unwrap(),
    ]);
    let snap = std::fs::read(&local).expect("snapshot copied out");
    support::raft_snapshot_files(&snap, "the copied snapshot");
}
