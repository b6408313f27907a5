//! `install_demo`: the 1.0.0 set installed by the real Helm engine into a
//! sandbox with the real-software runtimes, reachable the way operators
//! reach it (service proxy to the backend's health, exec into PostgreSQL).

use std::path::Path;
use std::process::Command;

use kleidia_sandbox::demo::{
    NAMESPACE, RELEASES, charts_dir, install_demo, install_demo_unless_empty, real_runtimes,
};
use kleidia_sandbox::runtimes::openbao::OpenBaoStorage;
use kleidia_sandbox::server::{Sandbox, SandboxOptions};
use serde_json::Value;

fn kubectl(kubeconfig: &Path, args: &[&str]) -> String {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/kubectl");
    assert!(
        bin.is_file(),
        "{} missing: run scripts/setup",
        bin.display()
    );
    let out = Command::new(bin)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn install_demo_brings_up_the_three_releases_with_real_software() {
    let sandbox = Sandbox::start(SandboxOptions {
        runtimes: real_runtimes(OpenBaoStorage::Raft),
        empty: false,
        ..SandboxOptions::default()
    })
    .expect("sandbox starts");
    let kc = sandbox.kubeconfig_path().to_path_buf();
    assert!(install_demo_unless_empty(&sandbox).expect("demo installs"));
    // Installing again is an upgrade to the same charts: harmless.
    sandbox
        .handle()
        .block_on(install_demo(&kc, &charts_dir("1.0.0")))
        .expect("demo re-installs");

    let secrets: Value = serde_json::from_str(&kubectl(
        &kc,
        &[
            "get",
            "secrets",
            "-n",
            NAMESPACE,
            "-l",
            "owner=helm",
            "-o",
            "json",
        ],
    ))
    .unwrap();
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
    let health = kubectl(
        &kc,
        &[
            "get",
            "--raw",
            "/api/v1/namespaces/kleidia/services/kleidia-services-backend:http/proxy/api/health",
        ],
    );
    let health: Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["version"], "1.0.0");
    assert_eq!(health["database"], "connected");

    // The runbook's database check.
    let version = kubectl(
        &kc,
        &[
            "exec",
            "kleidia-data-postgres-cluster-0",
            "-n",
            "kleidia",
            "--",
            "psql",
            "-U",
            "yubiuser",
            "-d",
            "kleidia",
            "-c",
            "SELECT version();",
        ],
    );
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
    kubectl(
        &kc,
        &[
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
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("vault-backup.snap");
    kubectl(
        &kc,
        &[
            "cp",
            "kleidia/kleidia-platform-openbao-0:/tmp/vault-backup.snap",
            local.to_str().unwrap(),
        ],
    );
    let snap = std::fs::read(&local).expect("snapshot copied out");
    let mut files = std::collections::BTreeMap::new();
    for entry in tar::Archive::new(flate2::read::GzDecoder::new(&snap[..]))
        .entries()
        .unwrap()
    {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        files.insert(name, data);
    }
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["SHA256SUMS", "SHA256SUMS.sealed", "meta.json", "state.bin"]
    );
    // The copied snapshot is whole: SHA256SUMS matches its files.
    let sums = String::from_utf8(files["SHA256SUMS"].clone()).unwrap();
    let mut checked = Vec::new();
    for line in sums.lines() {
        let (sum, name) = line.split_once(char::is_whitespace).unwrap();
        let name = name.trim_start().trim_start_matches('*');
        use sha2::Digest;
        assert_eq!(
            hex::encode(sha2::Sha256::digest(&files[name])),
            sum,
            "checksum of {name} in the copied snapshot"
        );
        checked.push(name.to_string());
    }
    checked.sort();
    assert_eq!(checked, ["meta.json", "state.bin"], "{sums}");
}
