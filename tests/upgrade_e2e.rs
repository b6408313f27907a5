//! `upgrade` and `rollback` end to end with the real Helm CLIs (v4.1.4 and
//! v3.15.1) against a sandbox running real OpenBao and PostgreSQL: the
//! demo installed by the same helm that upgrades it, then the runbook's
//! procedures and their failures.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{
    Cluster, bao_root_token as root_token, demo_charts as charts, kleidia_on as kleidia, kubectl,
    real_helm, release_revisions as releases,
};

const NS: &str = "kleidia";
const BAO_POD: &str = "kleidia-platform-openbao-0";

fn stdout(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stdout).into_owned()
}

fn stderr(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

fn latest(c: &Cluster, release: &str) -> (u32, String) {
    releases(c, release).pop().expect("the release exists")
}

fn versions_json(c: &Cluster, helm: &Path, home: &Path) -> Value {
    let a = kleidia(c, helm, home)
        .args(["versions", "-o", "json", "--timeout", "20s"])
        .assert();
    serde_json::from_slice(&a.get_output().stdout).unwrap()
}

fn chart_version(v: &Value, component: &str) -> String {
    v["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["component"] == component)
        .unwrap()["chartVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn lease_exists(c: &Cluster) -> bool {
    kubectl(
        c.kubeconfig(),
        &["get", "lease", "kleidia-upgrade", "-n", NS],
    )
    .status
    .success()
}

#[test]
fn upgrade_with_helm_v4_rolls_ondelete_openbao_and_rolls_back_services() {
    let helm = real_helm("helm-v4");
    let c = Cluster::start_demo(&helm, "1.0.0");
    let home = tempfile::tempdir().unwrap();
    let backups = tempfile::tempdir().unwrap();
    let token = root_token(&c);

    // A dry run shows the plan and writes nothing.
    c.sandbox.reset_requests();
    let a = kleidia(&c, &helm, home.path())
        .args(["upgrade", "--charts", &charts("1.1.0"), "--dry-run"])
        .assert()
        .success();
    let plan = stdout(&a);
    assert!(
        plan.contains("1.0.0 -> 1.1.0") && plan.contains("2.6.2 -> 2.7.2"),
        "{plan}"
    );
    assert!(
        plan.contains("rolled by kleidia: StatefulSet kleidia-platform-openbao"),
        "{plan}"
    );
    let writes = c.sandbox.requests();
    assert!(
        writes.mutating().is_empty(),
        "the dry run wrote: {:?}",
        writes.mutating()
    );

    // Another run holds the lock: this one is refused, naming it.
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let lease = format!(
        "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: kleidia-upgrade\n  namespace: {NS}\nspec:\n  holderIdentity: ops@bastion pid 4242 (kubectl kleidia upgrade)\n  leaseDurationSeconds: 60\n  acquireTime: {now}\n  renewTime: {now}\n"
    );
    let applied =
        support::kubectl_with_stdin(c.kubeconfig(), &["apply", "-f", "-"], lease.as_bytes());
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let a = kleidia(&c, &helm, home.path())
        .args([
            "upgrade",
            "--charts",
            &charts("1.1.0"),
            "--yes",
            "--no-backup",
        ])
        .assert()
        .failure();
    assert!(
        stderr(&a).contains("ops@bastion pid 4242"),
        "{}",
        stderr(&a)
    );
    assert_eq!(
        latest(&c, "kleidia-platform").0,
        1,
        "nothing may change while locked"
    );
    kubectl(
        c.kubeconfig(),
        &["delete", "lease", "kleidia-upgrade", "-n", NS],
    );

    // The upgrade: backup, platform (OpenBao rolled by us), data, services.
    let a = kleidia(&c, &helm, home.path())
        .args([
            "upgrade",
            "--charts",
            &charts("1.1.0"),
            "--yes",
            "--backup-dir",
            backups.path().to_str().unwrap(),
        ])
        .env("BAO_TOKEN", &token)
        .assert();
    let (out, err) = (stdout(&a), stderr(&a));
    assert_eq!(a.get_output().status.code(), Some(0), "{out}\n{err}");
    assert!(err.contains(&format!("rolling pod {BAO_POD}")), "{err}");
    assert!(out.contains("upgrade succeeded"), "{out}");
    for r in ["kleidia-platform", "kleidia-data", "kleidia-services"] {
        assert_eq!(latest(&c, r), (2, "deployed".to_string()), "{r}");
    }
    assert!(!err.contains(&token), "the token was printed");
    let v = versions_json(&c, &helm, home.path());
    assert_eq!(v["servers"]["openbao"]["version"], "2.7.2", "{v}");
    assert_eq!(v["servers"]["openbao"]["sealed"], false);
    assert_eq!(v["servers"]["backend"]["version"], "1.1.0");
    for comp in ["platform", "data", "services"] {
        assert_eq!(chart_version(&v, comp), "1.1.0");
    }
    assert!(!lease_exists(&c), "the lock was not released");
    let bundles: Vec<_> = std::fs::read_dir(backups.path()).unwrap().collect();
    assert_eq!(bundles.len(), 1, "one bundle was taken first");

    // The run is recorded.
    let a = kleidia(&c, &helm, home.path())
        .args(["upgrade", "--history", "-o", "json"])
        .assert()
        .success();
    let runs: Value = serde_json::from_str(&stdout(&a)).unwrap();
    let run = runs.as_array().unwrap().last().unwrap();
    assert_eq!(run["outcome"], "succeeded");
    assert!(
        run["backup"]
            .as_str()
            .unwrap()
            .starts_with(backups.path().to_str().unwrap())
    );
    let phases: Vec<&str> = run["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for p in [
        "plan",
        "lock",
        "preflight",
        "backup",
        "helm upgrade platform",
        "gate services",
    ] {
        assert!(phases.contains(&p), "{phases:?}");
    }

    // The data layer is guarded; a missing revision names the real ones.
    let a = kleidia(&c, &helm, home.path())
        .args(["rollback", "data", "--yes"])
        .assert()
        .code(2);
    assert!(
        stderr(&a).contains("--allow-data-rollback"),
        "{}",
        stderr(&a)
    );
    let a = kleidia(&c, &helm, home.path())
        .args(["rollback", "services", "7", "--yes"])
        .assert()
        .code(2);
    assert!(
        stderr(&a).contains("no revision 7") && stderr(&a).contains("1 (superseded), 2 (deployed)"),
        "{}",
        stderr(&a)
    );

    // Services back to 1.0.0: the database stays migrated forward, said
    // with the bundle taken before the upgrade.
    let a = kleidia(&c, &helm, home.path())
        .args(["rollback", "services", "--yes"])
        .assert();
    let (out, err) = (stdout(&a), stderr(&a));
    assert_eq!(a.get_output().status.code(), Some(0), "{out}\n{err}");
    assert!(
        out.contains("migrated forward") && out.contains(backups.path().to_str().unwrap()),
        "{out}"
    );
    assert_eq!(latest(&c, "kleidia-services"), (3, "deployed".to_string()));
    let v = versions_json(&c, &helm, home.path());
    assert_eq!(v["servers"]["backend"]["version"], "1.0.0", "{v}");
}

#[test]
fn broken_services_with_helm_v3_fail_at_the_gate_and_roll_back() {
    let helm = real_helm("helm-v3");
    let c = Cluster::start_demo(&helm, "1.0.0");
    let home = tempfile::tempdir().unwrap();
    let a = kleidia(&c, &helm, home.path())
        .args([
            "upgrade",
            "--charts",
            &charts("1.1.0-broken"),
            "--yes",
            "--no-backup",
            "--timeout",
            "30s",
        ])
        .assert();
    let (out, err) = (stdout(&a), stderr(&a));
    assert_eq!(a.get_output().status.code(), Some(1), "{out}\n{err}");
    // The failing pod and its reason are named.
    assert!(
        out.contains("upgrade FAILED") && out.contains("failed at services"),
        "{out}"
    );
    assert!(
        out.contains("pod kleidia-services-backend-")
            && (out.contains("ImagePullBackOff") || out.contains("ErrImagePull")),
        "{out}"
    );
    // Services back on their previous revision and healthy, platform rolled
    // back, data untouched (left on its new revision).
    let services = releases(&c, "kleidia-services");
    assert_eq!(
        services.last().unwrap(),
        &(3, "deployed".to_string()),
        "{services:?}"
    );
    assert_eq!(services[1].1, "failed");
    assert_eq!(latest(&c, "kleidia-platform"), (3, "deployed".to_string()));
    assert_eq!(latest(&c, "kleidia-data"), (2, "deployed".to_string()));
    assert!(out.contains("rolled back to revision 1"), "{out}");
    assert!(out.contains("--allow-data-rollback"), "{out}");
    let v = versions_json(&c, &helm, home.path());
    assert_eq!(v["servers"]["backend"]["version"], "1.0.0", "{v}");
    assert_eq!(chart_version(&v, "platform"), "1.0.0");
    assert_eq!(chart_version(&v, "data"), "1.1.0");
    assert_eq!(v["servers"]["openbao"]["sealed"], false);
    assert!(!lease_exists(&c));
}

#[test]
fn failing_migration_interrupt_and_recovery_with_helm_v4() {
    let helm = real_helm("helm-v4");
    let c = Cluster::start_demo(&helm, "1.0.0");
    let home = tempfile::tempdir().unwrap();

    // A migration hook that fails is reported with its log tail.
    let a = kleidia(&c, &helm, home.path())
        .args([
            "upgrade",
            "--charts",
            &charts("1.1.0-migration-fails"),
            "--only",
            "services",
            "--yes",
            "--no-backup",
            "--timeout",
            "60s",
        ])
        .assert();
    let (out, err) = (stdout(&a), stderr(&a));
    assert_eq!(a.get_output().status.code(), Some(1), "{out}\n{err}");
    assert!(out.contains("kleidia-services-migrate"), "{out}");
    assert!(
        out.contains("ERROR migrate:") && out.contains("attested_at"),
        "{out}"
    );
    assert_eq!(latest(&c, "kleidia-services").1, "deployed");

    // A helm killed half-way leaves pending-upgrade: upgrade refuses and
    // names the recovery; rollback --recover recovers.
    let mut child = Command::new(&helm)
        .args([
            "upgrade",
            "kleidia-services",
            &format!("{}/kleidia-services", charts("1.1.0-broken")),
            "-n",
            NS,
            "--wait=watcher",
            "--timeout",
            "5m",
        ])
        .env("KUBECONFIG", c.kubeconfig())
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while latest(&c, "kleidia-services").1 != "pending-upgrade" {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "helm never went pending"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "helm ended before it was killed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(1));
    child.kill().unwrap();
    child.wait().unwrap();
    let stuck = latest(&c, "kleidia-services");
    assert_eq!(stuck.1, "pending-upgrade");
    let a = kleidia(&c, &helm, home.path())
        .args([
            "upgrade",
            "--charts",
            &charts("1.1.0"),
            "--yes",
            "--no-backup",
        ])
        .assert()
        .code(2);
    assert!(
        stderr(&a).contains("pending-upgrade")
            && stderr(&a).contains("rollback services --recover"),
        "{}",
        stderr(&a)
    );
    let a = kleidia(&c, &helm, home.path())
        .args(["rollback", "services", "--yes"])
        .assert()
        .code(2);
    assert!(stderr(&a).contains("--recover"), "{}", stderr(&a));
    let a = kleidia(&c, &helm, home.path())
        .args([
            "rollback",
            "services",
            "--recover",
            "--yes",
            "--timeout",
            "90s",
        ])
        .assert();
    assert_eq!(
        a.get_output().status.code(),
        Some(0),
        "{}\n{}",
        stdout(&a),
        stderr(&a)
    );
    assert_eq!(
        latest(&c, "kleidia-services"),
        (stuck.0 + 1, "deployed".to_string())
    );

    // SIGINT half-way: the current helm step finishes, the state is
    // consistent and reported, the lock is released.
    let bin = assert_cmd::cargo::cargo_bin("kubectl-kleidia");
    let mut child = Command::new(bin)
        .args([
            "upgrade",
            "--charts",
            &charts("1.1.0"),
            "--yes",
            "--no-backup",
        ])
        .env("KUBECONFIG", c.kubeconfig())
        .env("HELM_BIN", &helm)
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .env("HOME", home.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut err_lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in err_lines.by_ref() {
        let line = line.unwrap();
        let go = line.starts_with("upgrading data");
        seen.push(line);
        if go {
            break;
        }
    }
    assert!(
        seen.iter().any(|l| l.starts_with("upgrading data")),
        "the upgrade never reached data: {seen:?}"
    );
    let sent = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let rest: Vec<String> = err_lines.map_while(Result::ok).collect();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let all_err = format!("{}\n{}", seen.join("\n"), rest.join("\n"));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{all_err}");
    assert!(all_err.contains("interrupt received"), "{all_err}");
    assert!(stdout.contains("upgrade FAILED"), "{stdout}");
    for r in ["kleidia-platform", "kleidia-data", "kleidia-services"] {
        let (_, status) = latest(&c, r);
        assert_eq!(status, "deployed", "{r} is left {status}:\n{stdout}");
        assert!(stdout.contains(r), "{r} is not reported:\n{stdout}");
    }
    assert!(!lease_exists(&c), "the lock was not released");
}
