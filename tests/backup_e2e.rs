//! `kubectl-kleidia backup` end to end against the sandbox: the demo
//! releases installed by the real Helm engine, real PostgreSQL and real
//! OpenBao (raft storage, and file storage in its own test) in the pods, the
//! plugin binary as operators run it. Restores use the commands
//! docs/restore.md gives operators.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;
use support::{Cluster, json_of, kubectl, kubectl_with_stdin, plugin};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NS: &str = "kleidia";
const PG_POD: &str = "kleidia-data-postgres-cluster-0";
const BAO_POD: &str = "kleidia-platform-openbao-0";

/// docs/restore.md 4b: the script run in the OpenBao pod, reading the token
/// from stdin so it is on no command line.
const RAFT_RESTORE_SCRIPT: &str = "read -r BAO_TOKEN && export BAO_TOKEN && export BAO_ADDR=\"${BAO_ADDR:-http://127.0.0.1:8200}\" && bao operator raft snapshot restore -force /tmp/openbao.snap; rc=$?; rm -f /tmp/openbao.snap; exit $rc";

fn restore_doc() -> String {
    std::fs::read_to_string(support::workspace().join("docs/restore.md")).unwrap()
}

fn install_demo(c: &Cluster) {
    for r in ["kleidia-platform", "kleidia-data", "kleidia-services"] {
        c.helm_install(NS, r, "1.0.0");
    }
}

fn root_token(c: &Cluster) -> String {
    let root = c
        .sandbox
        .shared()
        .container_dir(NS, BAO_POD, "openbao")
        .join("root");
    kleidia_sandbox::runtimes::openbao::root_token_at(&root).unwrap_or_else(|| {
        panic!(
            "the sandbox kept no OpenBao root token under {}; see the container logs under {}",
            root.display(),
            root.parent().unwrap().join("logs").display()
        )
    })
}

/// One HTTP/1.0 exchange with OpenBao through the API server's port-forward.
fn bao_http(c: &Cluster, method: &str, path: &str, token: &str, body: &[u8]) -> (u16, Vec<u8>) {
    c.block_on(async {
        let mut conn = kleidia::cluster::portforward::PortForwardStream::open(
            &c.client,
            &kleidia::cluster::ApiEndpoint::default(),
            NS,
            BAO_POD,
            8200,
        )
        .await
        .expect("port-forward to OpenBao");
        let head = format!(
            "{method} {path} HTTP/1.0\r\nHost: localhost\r\nX-Vault-Token: {token}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        conn.write_all(body).await.unwrap();
        let mut answer = Vec::new();
        conn.read_to_end(&mut answer).await.unwrap();
        let split = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("an HTTP answer");
        let status_line = String::from_utf8_lossy(&answer[..split]).to_string();
        let code: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        (code, answer[split + 4..].to_vec())
    })
}

/// The demo releases with a kv engine at `secret/` holding the secret
/// `backup-probe` = `backed-up`; returns OpenBao's root token.
fn install_demo_with_secret(c: &Cluster) -> String {
    install_demo(c);
    let token = root_token(c);
    let (code, answer) = bao_http(
        c,
        "POST",
        "/v1/sys/mounts/secret",
        &token,
        br#"{"type":"kv"}"#,
    );
    assert!(
        code < 300,
        "mounting kv: {}",
        String::from_utf8_lossy(&answer)
    );
    write_secret(c, &token, "backed-up");
    token
}

fn write_secret(c: &Cluster, token: &str, value: &str) {
    let body = serde_json::json!({ "value": value }).to_string();
    let (code, answer) = bao_http(c, "PUT", "/v1/secret/backup-probe", token, body.as_bytes());
    assert!(
        code == 200 || code == 204,
        "writing the secret: HTTP {code}: {}",
        String::from_utf8_lossy(&answer)
    );
}

fn read_secret(c: &Cluster, token: &str) -> String {
    let (code, answer) = bao_http(c, "GET", "/v1/secret/backup-probe", token, b"");
    assert_eq!(
        code,
        200,
        "reading the secret: {}",
        String::from_utf8_lossy(&answer)
    );
    let v: Value = serde_json::from_slice(&answer).unwrap();
    v["data"]["value"].as_str().unwrap().to_owned()
}

fn psql(c: &Cluster, sql: &str) -> String {
    let out = kubectl(
        c.kubeconfig(),
        &[
            "exec", "-n", NS, PG_POD, "-c", "postgres", "--", "psql", "-U", "yubiuser", "-d",
            "kleidia", "-Atc", sql,
        ],
    );
    assert!(
        out.status.success(),
        "psql {sql:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn backup(c: &Cluster) -> assert_cmd::Command {
    let mut cmd = plugin("kubectl-kleidia");
    cmd.env("KUBECONFIG", c.kubeconfig()).args(["-n", NS]);
    cmd
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// The paths of the files a manifest lists.
fn manifest_files(manifest: &Value) -> Vec<String> {
    manifest["files"]
        .as_array()
        .unwrap_or_else(|| panic!("the manifest lists no files: {manifest}"))
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_owned())
        .collect()
}

/// Runs `verify -o json`, which must fail with exit code 1 and report
/// `"ok": false`; prints and returns its stderr (`what` says which failure
/// it was).
fn failed_verify(cmd: &mut assert_cmd::Command, what: &str) -> String {
    let a = cmd.assert().failure().code(1);
    assert_eq!(json_of(&a)["ok"], false, "{what}");
    let err = stderr_of(&a);
    eprintln!("{what}: {err}");
    err
}

/// Every bundle folder under `dir` that has a manifest (complete-looking).
fn complete_bundles(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.join("manifest.json").exists())
                .collect()
        })
        .unwrap_or_default()
}

fn stderr_of(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

#[test]
fn backup_of_the_demo_releases_verifies_restores_and_encrypts() {
    let c = Cluster::start();
    let token = install_demo_with_secret(&c);
    psql(
        &c,
        "CREATE TABLE backup_probe AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 2345) g",
    );

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("backups");
    let out = backup(&c)
        .args(["backup", "-o", "json", "--dir"])
        .arg(&dir)
        .env("BAO_TOKEN", &token)
        .assert()
        .success();
    let created = json_of(&out);
    let bundle = PathBuf::from(created["path"].as_str().unwrap());
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&bundle), 0o700);
    let files = manifest_files(&created["manifest"]);
    for want in [
        "postgres.sql.zst",
        "openbao.snap",
        "helm/kleidia-platform.values.yaml",
        "helm/kleidia-data.json",
        "helm/kleidia-services.json",
    ] {
        assert!(
            files.iter().any(|f| f == want),
            "{want} missing in {files:?}"
        );
    }
    for f in &files {
        assert_eq!(mode(&bundle.join(f)), 0o600, "{f}");
    }
    assert_eq!(mode(&bundle.join("manifest.json")), 0o600);
    assert_eq!(created["manifest"]["openbao"]["storage"], "raft");
    assert!(
        !stderr_of(&out).contains(&token),
        "the OpenBao token reached stderr"
    );
    // Unencrypted: one warning on stderr says what is in clear and how to encrypt.
    let stderr = stderr_of(&out);
    assert_eq!(
        stderr
            .matches("warning: the bundle is not encrypted")
            .count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("--encrypt-to"), "{stderr}");
    let releases = created["manifest"]["releases"].as_array().unwrap();
    let listed: Value = serde_json::from_str(&c.helm(&["list", "-n", NS, "-o", "json"])).unwrap();
    for l in listed.as_array().unwrap() {
        let r = releases
            .iter()
            .find(|r| r["name"] == l["name"])
            .unwrap_or_else(|| panic!("release {} not recorded", l["name"]));
        let text = |v: &Value| v.to_string().trim_matches('"').to_owned();
        assert_eq!(text(&r["revision"]), text(&l["revision"]));
    }

    // The restore test counts the same rows as the live database.
    let out = plugin("kubectl-kleidia")
        .args(["backup", "verify", "--restore-test", "-o", "json"])
        .arg(&bundle)
        .assert()
        .success();
    let report = json_of(&out);
    assert_eq!(report["ok"], true, "{report}");
    let restored = &report["restoreTest"];
    assert_eq!(restored["status"], "ok", "{restored}");
    let db = restored["databases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "kleidia")
        .expect("database kleidia restored");
    let tables = db["tables"].as_array().unwrap();
    assert!(
        tables.iter().any(|t| t["table"] == "backup_probe"),
        "{tables:?}"
    );
    for t in tables {
        let name = format!(
            "{}.{}",
            t["schema"].as_str().unwrap(),
            t["table"].as_str().unwrap()
        );
        let live = psql(&c, &format!("SELECT count(*) FROM {name}"));
        assert_eq!(t["rows"].to_string(), live, "rows of {name}");
    }

    // The manifest's versions are what the servers report, as `versions`
    // shows them.
    let report = json_of(&backup(&c).args(["versions", "-o", "json"]).assert());
    let versions = &created["manifest"]["versions"];
    for (key, server) in [
        ("postgres", "postgresql"),
        ("openbao", "openbao"),
        ("backend", "backend"),
        ("kubernetes", "kubernetes"),
    ] {
        let want = &report["servers"][server]["version"];
        assert!(
            want.is_string(),
            "versions reports no {server} version: {report}"
        );
        assert_eq!(&versions[key], want, "manifest versions {versions}");
    }
    assert!(
        !stderr_of(&out).contains("chart appVersion"),
        "{}",
        stderr_of(&out)
    );

    // The raft snapshot restores the backed-up secret, with the commands of
    // docs/restore.md: kubectl cp into the pod, then `bao operator raft
    // snapshot restore -force` in the pod with the token on stdin.
    let doc = restore_doc();
    assert!(
        doc.contains(RAFT_RESTORE_SCRIPT),
        "docs/restore.md no longer shows the restore script this test runs"
    );
    write_secret(&c, &token, "changed-after-backup");
    assert_eq!(read_secret(&c, &token), "changed-after-backup");
    let snap = bundle.join("openbao.snap");
    let dest = format!("{NS}/{BAO_POD}:/tmp/openbao.snap");
    let cp = kubectl(c.kubeconfig(), &["cp", snap.to_str().unwrap(), &dest]);
    assert!(
        cp.status.success(),
        "kubectl cp of the snapshot: {}",
        String::from_utf8_lossy(&cp.stderr)
    );
    assert!(
        doc.contains(
            "kubectl cp openbao.snap kleidia/kleidia-platform-openbao-0:/tmp/openbao.snap"
        )
    );
    let restore = kubectl_with_stdin(
        c.kubeconfig(),
        &[
            "exec",
            "-i",
            "-n",
            NS,
            BAO_POD,
            "--",
            "sh",
            "-c",
            RAFT_RESTORE_SCRIPT,
        ],
        format!("{token}\n").as_bytes(),
    );
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&restore.stdout),
        String::from_utf8_lossy(&restore.stderr)
    );
    assert!(!said.contains(&token), "the restore printed the token");
    assert!(
        restore.status.success(),
        "bao operator raft snapshot restore: {said}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (code, answer) = bao_http(&c, "GET", "/v1/secret/backup-probe", &token, b"");
        if code == 200 {
            let v: Value = serde_json::from_slice(&answer).unwrap();
            if v["data"]["value"] == "backed-up" {
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "OpenBao did not serve the backed-up secret after the restore: HTTP {code}: {}",
            String::from_utf8_lossy(&answer)
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    // The snapshot copy was removed from the pod.
    let left = kubectl(
        c.kubeconfig(),
        &["exec", "-n", NS, BAO_POD, "--", "ls", "/tmp/openbao.snap"],
    );
    assert!(
        !left.status.success(),
        "/tmp/openbao.snap was left in the pod"
    );

    // Encrypted to an age X25519 recipient: verifies only with its identity.
    let id = age::x25519::Identity::generate();
    let other = age::x25519::Identity::generate();
    use age::secrecy::ExposeSecret;
    let id_file = tmp.path().join("id.txt");
    let other_file = tmp.path().join("other.txt");
    std::fs::write(&id_file, id.to_string().expose_secret()).unwrap();
    std::fs::write(&other_file, other.to_string().expose_secret()).unwrap();
    let enc_dir = tmp.path().join("enc");
    let out = backup(&c)
        .args(["backup", "--components", "data,values", "-o", "json"])
        .arg("--encrypt-to")
        .arg(id.to_public().to_string())
        .arg("--dir")
        .arg(&enc_dir)
        .assert()
        .success();
    let enc = PathBuf::from(json_of(&out)["path"].as_str().unwrap());
    assert!(enc.join("postgres.sql.zst.age").exists());
    plugin("kubectl-kleidia")
        .args(["backup", "verify", "--identity"])
        .arg(&id_file)
        .arg(&enc)
        .assert()
        .success();
    // A wrong identity: the JSON result on stdout, the reason and what to
    // do on stderr, exit 1.
    let err = failed_verify(
        plugin("kubectl-kleidia")
            .args(["backup", "verify", "-o", "json", "--identity"])
            .arg(&other_file)
            .arg(&enc),
        "wrong identity",
    );
    assert!(err.contains("decrypt"), "{err}");
    assert!(
        err.contains(&format!(
            "pass the identity file that matches recipient {}",
            id.to_public()
        )),
        "{err}"
    );
    assert!(err.contains(&other.to_public().to_string()), "{err}");
    let wrong = plugin("kubectl-kleidia")
        .args(["backup", "verify", "--identity"])
        .arg(&other_file)
        .arg(&enc)
        .assert()
        .failure()
        .code(1);
    let text = String::from_utf8_lossy(&wrong.get_output().stdout).into_owned();
    assert!(text.trim_end().ends_with("verify: FAILED"), "{text}");
    assert!(
        stderr_of(&wrong).contains("what to do:"),
        "{}",
        stderr_of(&wrong)
    );

    // With a passphrase, and the unseal key (only allowed encrypted).
    let pass_dir = tmp.path().join("pass");
    let out = backup(&c)
        .args(["backup", "--components", "platform", "--include-unseal-key"])
        .args(["--passphrase-env", "BACKUP_PASS", "-o", "json", "--dir"])
        .arg(&pass_dir)
        .env("BACKUP_PASS", "correct horse battery staple")
        .env("BAO_TOKEN", &token)
        .assert()
        .success();
    let pass = PathBuf::from(json_of(&out)["path"].as_str().unwrap());
    assert!(pass.join("openbao-unseal-key.json.age").exists());
    plugin("kubectl-kleidia")
        .args(["backup", "verify", "--passphrase-env", "BACKUP_PASS"])
        .arg(&pass)
        .env("BACKUP_PASS", "correct horse battery staple")
        .assert()
        .success();
    let err = failed_verify(
        plugin("kubectl-kleidia")
            .args([
                "backup",
                "verify",
                "-o",
                "json",
                "--passphrase-env",
                "BACKUP_PASS",
            ])
            .arg(&pass)
            .env("BACKUP_PASS", "wrong passphrase"),
        "wrong passphrase",
    );
    assert!(
        err.contains("the passphrase in BACKUP_PASS does not open the bundle"),
        "{err}"
    );
    assert!(
        !err.contains("wrong passphrase"),
        "the passphrase was printed"
    );
    // Unencrypted with the unseal key is refused before anything is read.
    let refused = backup(&c)
        .args(["backup", "--include-unseal-key", "--dir"])
        .arg(tmp.path().join("clear"))
        .assert()
        .failure();
    assert!(stderr_of(&refused).contains("--include-unseal-key"));
    assert!(complete_bundles(&tmp.path().join("clear")).is_empty());

    // list needs no cluster.
    let out = plugin("kubectl-kleidia")
        .args(["backup", "list", "-o", "json", "--dir"])
        .arg(&dir)
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .assert()
        .success();
    assert_eq!(json_of(&out).as_array().unwrap().len(), 1);
}

/// Runs `cmd --dir DIR`, which must fail with exit code 1 and leave no
/// complete bundle in `dir`; prints and returns its stderr (`what` says
/// which failure it was).
fn failed_backup(cmd: &mut assert_cmd::Command, dir: &Path, what: &str) -> String {
    let a = cmd.arg("--dir").arg(dir).assert().failure().code(1);
    let err = stderr_of(&a);
    eprintln!("{what}: {err}");
    let left = complete_bundles(dir);
    assert!(left.is_empty(), "{what}: a bundle was left: {left:?}");
    err
}

#[test]
fn backup_failures_say_what_went_wrong_and_leave_no_bundle() {
    let c = Cluster::start();
    install_demo(&c);
    let token = root_token(&c);
    psql(
        &c,
        "CREATE TABLE filler AS SELECT g AS id, repeat(md5(g::text), 8) AS v FROM generate_series(1, 20000) g",
    );
    let tmp = tempfile::tempdir().unwrap();

    // The exec stream is cut in the middle of pg_dumpall.
    c.sandbox.faults().set_exec_kill(PG_POD, Some(64 * 1024));
    let dir = tmp.path().join("killed");
    let err = failed_backup(
        backup(&c).args(["backup", "--request-timeout", "10s", "--components", "data"]),
        &dir,
        "exec killed",
    );
    assert!(err.contains("data backup failed"), "{err}");
    assert!(err.contains("no bundle was created"), "{err}");
    c.sandbox.faults().set_exec_kill(PG_POD, None);

    // The API fails every port-forward request.
    c.sandbox
        .faults()
        .apply(&kleidia_sandbox::faults::FaultRequest {
            error_rate: Some(1.0),
            error_code: Some(500),
            path_contains: Some("portforward".into()),
            ..Default::default()
        });
    let dir = tmp.path().join("api");
    let err = failed_backup(
        backup(&c)
            .args(["backup", "--components", "platform"])
            .env("BAO_TOKEN", &token),
        &dir,
        "API errors",
    );
    assert!(err.contains("platform backup failed"), "{err}");
    assert!(err.contains("portforward"), "{err}");
    c.sandbox.faults().clear();

    // A token OpenBao refuses.
    let dir = tmp.path().join("token");
    let err = failed_backup(
        backup(&c)
            .args(["backup", "--components", "platform"])
            .env("BAO_TOKEN", "s.not-a-valid-token"),
        &dir,
        "wrong token",
    );
    assert!(err.contains("OpenBao refused the token"), "{err}");
    assert!(
        !err.contains("s.not-a-valid-token"),
        "the token was printed"
    );

    // No token at all.
    let a = backup(&c)
        .args(["backup", "--components", "platform", "--dir"])
        .arg(tmp.path().join("none"))
        .assert()
        .failure();
    assert!(stderr_of(&a).contains("BAO_TOKEN"), "{}", stderr_of(&a));

    // The PostgreSQL pod named in the config file does not exist.
    let config = tmp.path().join("config.yaml");
    std::fs::write(
        &config,
        "postgres:\n  pod: kleidia-data-postgres-cluster-9\n",
    )
    .unwrap();
    let dir = tmp.path().join("missing");
    let err = failed_backup(
        backup(&c)
            .args(["backup", "--components", "data", "--config"])
            .arg(&config),
        &dir,
        "missing pod",
    );
    assert!(err.contains("kleidia-data-postgres-cluster-9"), "{err}");
    assert!(err.contains("does not exist"), "{err}");

    // The backend does not answer: its chart appVersion is recorded,
    // labelled, and stderr says why; the other versions are the servers'.
    let scaled = kubectl(
        c.kubeconfig(),
        &[
            "scale",
            "-n",
            NS,
            "deployment/kleidia-services-backend",
            "--replicas=0",
        ],
    );
    assert!(
        scaled.status.success(),
        "{}",
        String::from_utf8_lossy(&scaled.stderr)
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while kubectl(
        c.kubeconfig(),
        &[
            "get",
            "pods",
            "-n",
            NS,
            "-l",
            "app.kubernetes.io/name=backend",
            "-o",
            "name",
        ],
    )
    .stdout
    .iter()
    .any(|b| !b.is_ascii_whitespace())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the backend pods did not go away"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let dir = tmp.path().join("no-backend");
    // A data backup asks the backend (its migrations are in the dump); a
    // values-only one would leave it alone.
    let a = backup(&c)
        .args(["backup", "--components", "data", "-o", "json", "--dir"])
        .arg(&dir)
        .assert()
        .success();
    let versions = &json_of(&a)["manifest"]["versions"];
    let err = stderr_of(&a);
    eprintln!("backend down: {err}");
    let chart: Value = serde_json::from_str(&c.helm(&["list", "-n", NS, "-o", "json"])).unwrap();
    let app = chart
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "kleidia-services")
        .unwrap()["app_version"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        versions["backend"],
        format!("{app} (chart appVersion)"),
        "{versions}"
    );
    assert!(
        err.contains("could not ask backend for its version"),
        "{err}"
    );
    // The proxy's answer is passed on with what to check next.
    assert!(
        err.contains("no endpoints available for service \"kleidia-services-backend\""),
        "{err}"
    );
    assert!(
        err.contains(&format!("kubectl get pods,endpoints -n {NS}")),
        "{err}"
    );
    let report = json_of(
        &backup(&c)
            .args(["versions", "-o", "json", "--timeout", "5s"])
            .assert(),
    );
    assert_eq!(
        versions["postgres"], report["servers"]["postgresql"]["version"],
        "{versions}"
    );
    let backend_error = report["servers"]["backend"]["error"].as_str().unwrap_or("");
    assert!(
        backend_error.contains("no endpoints available"),
        "versions should pass on the proxy's answer, not wait it out: {report}"
    );
}

/// A local OpenBao server, stopped when dropped.
struct LocalBao(std::process::Child);

impl Drop for LocalBao {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.0 exchange with a local server; `None` while it does not
/// accept connections.
fn local_http(port: u16, path: &str, token: &str) -> Option<(u16, Vec<u8>)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .ok()?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: localhost\r\nX-Vault-Token: {token}\r\n\r\n"
    )
    .ok()?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).ok()?;
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let code = String::from_utf8_lossy(&answer[..split])
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((code, answer[split + 4..].to_vec()))
}

#[test]
fn backup_of_openbao_file_storage_archives_its_data_folder() {
    use kleidia_sandbox::runtimes::openbao::{OpenBaoStorage, find_file_storage_bao};
    let c = Cluster::start_with_openbao_storage(OpenBaoStorage::File);
    // The chart's config.hcl says raft; the server runs file storage.
    let token = install_demo_with_secret(&c);

    // No token needed: the data folder is archived through exec.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("backups");
    let out = backup(&c)
        .args(["backup", "--components", "platform", "-o", "json", "--dir"])
        .arg(&dir)
        .assert()
        .success();
    let created = json_of(&out);
    let manifest = &created["manifest"];
    assert_eq!(
        manifest["openbao"]["storage"], "file",
        "the storage type must come from the server, not the chart's raft block: {manifest}"
    );
    assert_eq!(manifest["openbao"]["file"], "openbao-data.tar.zst");
    let files = manifest_files(manifest);
    assert_eq!(files, ["openbao-data.tar.zst"]);
    let err = stderr_of(&out);
    assert!(
        err.contains("warning:") && err.contains("inconsistent"),
        "no consistency warning on stderr: {err}"
    );
    let bundle = PathBuf::from(created["path"].as_str().unwrap());
    assert!(!bundle.join("openbao.snap").exists());

    let out = plugin("kubectl-kleidia")
        .args(["backup", "verify", "-o", "json"])
        .arg(&bundle)
        .assert()
        .success();
    assert_eq!(json_of(&out)["ok"], true);

    // The live secret changes after the backup.
    write_secret(&c, &token, "changed-after-backup");

    // Restore the archive into a stopped OpenBao of the same version, with
    // the same static seal key (docs/restore.md 4c puts it back into the
    // pod's volume; here a local server plays that pod), and read the
    // backed-up secret.
    let restored = tmp.path().join("restored");
    std::fs::create_dir(&restored).unwrap();
    std::fs::set_permissions(&restored, std::fs::Permissions::from_mode(0o700)).unwrap();
    let archive = std::fs::File::open(bundle.join("openbao-data.tar.zst")).unwrap();
    let mut entries = Vec::new();
    let mut tar = tar::Archive::new(zstd::stream::read::Decoder::new(archive).unwrap());
    for e in tar.entries().unwrap() {
        let mut e = e.unwrap();
        entries.push(e.path().unwrap().display().to_string());
        assert!(
            e.unpack_in(&restored).unwrap(),
            "unsafe member in the archive"
        );
    }
    assert!(
        entries.iter().any(|p| p.contains("core/")),
        "the archive holds no OpenBao core data: {entries:?}"
    );
    let container = c.sandbox.shared().container_dir(NS, BAO_POD, "openbao");
    let key = container.join("root/.sandbox-openbao/static-seal.key");
    assert!(key.is_file(), "no seal key at {}", key.display());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = tmp.path().join("config.hcl");
    std::fs::write(
        &config,
        format!(
            "storage \"file\" {{\n  path = {:?}\n}}\nlistener \"tcp\" {{\n  address = \"127.0.0.1:{port}\"\n  tls_disable = true\n}}\nseal \"static\" {{\n  current_key_id = \"openbao-unseal-key\"\n  current_key = \"file://{}\"\n}}\napi_addr = \"http://127.0.0.1:{port}\"\nui = false\n",
            restored.display().to_string(),
            key.display()
        ),
    )
    .unwrap();
    let log = tmp.path().join("bao.log");
    let bao = find_file_storage_bao().expect("OpenBao 2.6 (scripts/setup installs it)");
    let _server = LocalBao(
        std::process::Command::new(bao)
            .arg("server")
            .arg(format!("-config={}", config.display()))
            .env_clear()
            .env("HOME", tmp.path())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start bao server"),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        match local_http(port, "/v1/secret/backup-probe", &token) {
            Some((200, body)) => {
                let v: Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(v["data"]["value"], "backed-up");
                break;
            }
            other => assert!(
                std::time::Instant::now() < deadline,
                "the restored OpenBao did not serve the secret: {:?}; its log:\n{}",
                other.map(|(c, b)| (c, String::from_utf8_lossy(&b).into_owned())),
                std::fs::read_to_string(&log).unwrap_or_default()
            ),
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    // The live server still has the change: the restore used the bundle.
    assert_eq!(read_secret(&c, &token), "changed-after-backup");
}
