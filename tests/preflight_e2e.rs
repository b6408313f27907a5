//! `preflight` end to end against a sandbox running real OpenBao and
//! PostgreSQL, the demo installed by the real Helm 4 CLI that also renders
//! the target charts: a healthy deployment passes; then the cluster is
//! arranged for each verdict (a stale or missing backup, a downgrade, a
//! PostgreSQL major jump, a removed API version, a missing permission, no
//! room on the node, OpenBao's OnDelete pod left on the old revision, a
//! broken pod, a sealed OpenBao, a release stuck in pending-upgrade, a
//! waiting blue-green release) and each check says so, with the exit code.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use predicates::prelude::*;
use serde_json::Value;
use support::{
    Cluster, ReleaseFixture, bao_root_token as root_token, demo_charts as charts,
    kleidia_on as kleidia, kubectl, plugin, real_helm,
};

const NS: &str = "kleidia";
const BAO_POD: &str = "kleidia-platform-openbao-0";

/// `preflight -o json` with `args`: the exit code and the report.
fn preflight(c: &Cluster, helm: &Path, home: &Path, args: &[&str]) -> (i32, Value) {
    let out = kleidia(c, helm, home)
        .args(["preflight", "-o", "json", "--timeout", "30s"])
        .args(args)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), v)
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {report:#}"))
}

fn status(report: &Value, name: &str) -> String {
    check(report, name)["status"].as_str().unwrap().to_string()
}

fn detail(report: &Value, name: &str) -> String {
    check(report, name)["detail"].as_str().unwrap().to_string()
}

fn hint(report: &Value, name: &str) -> String {
    check(report, name)["hint"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn helm_run(c: &Cluster, helm: &Path, home: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(helm)
        .args(args)
        .env("KUBECONFIG", c.kubeconfig())
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env_remove("HELM_NAMESPACE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "helm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ok(out: std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Polls `preflight` until `done` holds for its report (the sandbox's
/// kubelet takes a moment to report a broken pod).
fn preflight_until(
    c: &Cluster,
    helm: &Path,
    home: &Path,
    args: &[&str],
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> (i32, Value) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, v) = preflight(c, helm, home, args);
        if done(&v) {
            return (code, v);
        }
        assert!(Instant::now() < deadline, "never {what}: {v:#}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn every_check_passes_then_names_what_is_arranged_against_it() {
    let helm = real_helm("helm-v4");
    let c = Cluster::start_demo(&helm, "1.0.0");
    let home = tempfile::tempdir().unwrap();
    let backups = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let dir = backups.path().to_str().unwrap().to_string();
    let (h, home) = (helm.as_path(), home.path());

    // A fresh, verified bundle: everything passes, exit 0 (--strict too).
    kleidia(&c, h, home)
        .args(["backup", "create", "--dir", &dir])
        .env("BAO_TOKEN", root_token(&c))
        .assert()
        .success();
    let (code, r) = preflight(&c, h, home, &["--backup-dir", &dir, "--strict"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["result"], "pass", "{r:#}");
    let names: Vec<&str> = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for name in [
        "cluster",
        "helm",
        "release.platform",
        "release.data",
        "release.services",
        "workloads.platform",
        "workloads.data",
        "workloads.services",
        "openbao",
        "postgres",
        "headroom",
        "permissions",
        "backup",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    for c in r["checks"].as_array().unwrap() {
        assert_eq!(c["status"], "pass", "{c:#}");
        let mut keys: Vec<&String> = c.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, ["detail", "hint", "name", "status"], "{c:#}");
        assert!(c["hint"].is_null());
    }
    assert!(
        detail(&r, "openbao")
            .contains("storage raft, 1 peer(s): kleidia-platform-openbao-0 (active"),
        "{}",
        detail(&r, "openbao")
    );
    assert!(detail(&r, "postgres").contains("(major 15)"));
    assert!(
        detail(&r, "headroom").contains("Deployment kleidia-services-backend +1 (100m CPU, 128Mi)"),
        "{}",
        detail(&r, "headroom")
    );
    // The table: one line per check and the summary.
    kleidia(&c, h, home)
        .args(["preflight", "--backup-dir", &dir])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("PASS    workloads.services").and(
            predicate::str::contains(
                "preflight: ready to upgrade (0 failed, 0 warnings, 13 passed)",
            ),
        ));

    // The charts of the next minor: what the upgrade would apply passes,
    // OpenBao's OnDelete StatefulSet rolled by upgrade itself.
    let (code, r) = preflight(
        &c,
        h,
        home,
        &["--backup-dir", &dir, "--charts", &charts("1.1.0")],
    );
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(status(&r, "charts.versions"), "pass");
    assert!(detail(&r, "charts.versions").contains("kleidia-data 1.0.0 -> 1.1.0"));
    assert!(
        detail(&r, "charts.ondelete")
            .contains("StatefulSet kleidia-platform-openbao (updateStrategy OnDelete)")
            && detail(&r, "charts.ondelete").contains("upgrade will roll these pods itself"),
        "{}",
        detail(&r, "charts.ondelete")
    );
    assert_eq!(status(&r, "charts.api-versions"), "pass");
    assert_eq!(status(&r, "charts.postgres-major"), "pass");
    assert_eq!(status(&r, "charts.pull-secrets"), "pass");
    // The same charts with the backend from a private registry: no pull
    // secret for it, a warning.
    let private = "backend.image.repository=registry.example.com/kleidia/kleidia-backend";
    let (code, r) = preflight(
        &c,
        h,
        home,
        &[
            "--backup-dir",
            &dir,
            "--charts",
            &charts("1.1.0"),
            "--set",
            private,
        ],
    );
    assert_eq!(
        (code, status(&r, "charts.pull-secrets")),
        (0, "warn".into()),
        "{r:#}"
    );
    assert!(
        detail(&r, "charts.pull-secrets")
            .contains("pulls registry.example.com/kleidia/kleidia-backend:1.1.0 from registry.example.com with no imagePullSecret"),
        "{}",
        detail(&r, "charts.pull-secrets")
    );

    // A PostgreSQL major jump hidden in a chart major: fails, and the
    // release notes are printed with the warning.
    let (code, r) = preflight(
        &c,
        h,
        home,
        &["--backup-dir", &dir, "--charts", &charts("2.0.0-pg16")],
    );
    assert_eq!(code, 1);
    assert_eq!(r["result"], "fail");
    assert_eq!(status(&r, "charts.postgres-major"), "fail");
    let d = detail(&r, "charts.postgres-major");
    assert!(
        d.contains("postgres:16.4 (major 16)") && d.contains("(major 15)"),
        "{d}"
    );
    assert!(
        hint(&r, "charts.postgres-major").contains("--set postgres.image.tag=15.4"),
        "{}",
        hint(&r, "charts.postgres-major")
    );
    assert_eq!(status(&r, "charts.versions"), "warn");
    let notes = check(&r, "charts.versions")["notes"].to_string();
    assert!(notes.contains("refuses a data directory"), "{notes}");
    kleidia(&c, h, home)
        .args([
            "preflight",
            "--backup-dir",
            &dir,
            "--charts",
            &charts("2.0.0-pg16"),
        ])
        .assert()
        .code(1)
        .stdout(
            predicate::str::contains("FAIL charts.postgres-major:")
                .and(predicate::str::contains("## 2.0.0"))
                .and(predicate::str::contains("NOT ready to upgrade")),
        );

    // An API version the server no longer serves.
    let (code, r) = preflight(
        &c,
        h,
        home,
        &[
            "--backup-dir",
            &dir,
            "--charts",
            &charts("1.1.0-removed-api"),
        ],
    );
    assert_eq!(code, 1);
    assert_eq!(status(&r, "charts.api-versions"), "fail");
    let d = detail(&r, "charts.api-versions");
    assert!(
        d.contains("PodDisruptionBudget kleidia-services-backend uses policy/v1beta1")
            && d.contains("use policy/v1"),
        "{d}"
    );
    assert!(
        hint(&r, "charts.api-versions").contains("grep -rn 'policy/v1beta1' "),
        "{}",
        hint(&r, "charts.api-versions")
    );

    // No backup at all, or an old one, warns: exit 0, 1 with --strict.
    let none = ["--backup-dir", empty.path().to_str().unwrap()];
    let (code, r) = preflight(&c, h, home, &none);
    assert_eq!((code, status(&r, "backup")), (0, "warn".into()), "{r:#}");
    assert!(detail(&r, "backup").contains("no complete backup bundle"));
    assert!(hint(&r, "backup").contains("kubectl kleidia backup create"));
    let (code, _) = preflight(&c, h, home, &[&none[..], &["--strict"]].concat());
    assert_eq!(code, 1);
    std::thread::sleep(Duration::from_millis(1100));
    let (code, r) = preflight(
        &c,
        h,
        home,
        &["--backup-dir", &dir, "--max-backup-age", "1s"],
    );
    assert_eq!((code, r["result"].as_str()), (0, Some("warn")), "{r:#}");
    assert!(detail(&r, "backup").contains("older than the limit of 1s"));
    let (code, _) = preflight(
        &c,
        h,
        home,
        &["--backup-dir", &dir, "--max-backup-age", "1s", "--strict"],
    );
    assert_eq!(code, 1);

    // A bundle whose files no longer match its manifest fails: it looks
    // like a backup and is none.
    let damaged = tempfile::tempdir().unwrap();
    let bundle = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let copy = damaged.path().join(bundle.file_name().unwrap());
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(&bundle)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(copied.success());
    let dump = copy.join("postgres.sql.zst");
    let mut bytes = std::fs::read(&dump).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&dump, bytes).unwrap();
    let (code, r) = preflight(
        &c,
        h,
        home,
        &["--backup-dir", damaged.path().to_str().unwrap()],
    );
    assert_eq!((code, status(&r, "backup")), (1, "fail".into()), "{r:#}");
    assert!(
        detail(&r, "backup").contains("does not verify"),
        "{}",
        detail(&r, "backup")
    );

    // A permission the upgrade needs is missing.
    // Without exec, PostgreSQL cannot be asked either.
    c.sandbox.shared().authz.set_rules(vec![
        support::Rule::deny(&["delete"], &["pods"]),
        support::Rule::deny(&["create"], &["pods/exec"]),
        support::Rule::allow_all(),
    ]);
    let (code, r) = preflight(&c, h, home, &["--backup-dir", &dir]);
    c.sandbox
        .shared()
        .authz
        .set_rules(vec![support::Rule::allow_all()]);
    assert_eq!((code, status(&r, "permissions")), (1, "fail".into()));
    let d = detail(&r, "permissions");
    assert!(
        d.contains("2 of") && d.contains("delete pods") && d.contains("create pods/exec"),
        "{d}"
    );
    assert_eq!(status(&r, "postgres"), "fail");
    assert!(
        detail(&r, "postgres").contains("did not answer SELECT version() as user yubiuser"),
        "{}",
        detail(&r, "postgres")
    );
    assert!(hint(&r, "permissions").contains("kubectl auth can-i create pods/exec -n kleidia"));

    // Nodes the user may not list: the room is not known, said as a
    // warning.
    c.sandbox.shared().authz.set_rules(vec![
        support::Rule::deny(&["list"], &["nodes"]),
        support::Rule::allow_all(),
    ]);
    let (code, r) = preflight(&c, h, home, &["--backup-dir", &dir]);
    c.sandbox
        .shared()
        .authz
        .set_rules(vec![support::Rule::allow_all()]);
    assert_eq!((code, status(&r, "headroom")), (0, "warn".into()), "{r:#}");
    assert!(
        detail(&r, "headroom").contains("could not be read"),
        "{}",
        detail(&r, "headroom")
    );

    // No helm at all (HELM_BIN unset, none on PATH).
    let out = plugin("kubectl-kleidia")
        .env("KUBECONFIG", c.kubeconfig())
        .args(["preflight", "-o", "json", "--backup-dir", &dir])
        .output()
        .unwrap();
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(status(&r, "helm"), "fail");
    assert!(
        detail(&r, "helm").contains("no helm binary found"),
        "{}",
        detail(&r, "helm")
    );

    // No room on the node for the backend's surge pod (the pods there
    // request 500m CPU).
    let patch = |cpu: &str| {
        ok(kubectl(
            c.kubeconfig(),
            &[
                "patch",
                "node",
                "sandbox-node",
                "--subresource=status",
                "--type=merge",
                "-p",
                &format!("{{\"status\":{{\"allocatable\":{{\"cpu\":\"{cpu}\"}}}}}}"),
            ],
        ))
    };
    patch("550m");
    let (code, r) = preflight(&c, h, home, &["--backup-dir", &dir]);
    patch("2");
    assert_eq!((code, status(&r, "headroom")), (1, "fail".into()), "{r:#}");
    let d = detail(&r, "headroom");
    assert!(
        d.contains("no node has room for the extra pod of Deployment kleidia-services-backend (needs 100m CPU, 128Mi)")
            && d.contains("sandbox-node has") && d.contains("free of 550m CPU") && d.contains("(too little CPU)"),
        "{d}"
    );

    // Now break things, each in its own way, and look once.
    // The platform chart upgraded by hand: OpenBao's OnDelete pod stays on
    // the old revision; the old charts are then a downgrade.
    helm_run(
        &c,
        h,
        home,
        &[
            "upgrade",
            "kleidia-platform",
            &format!("{}/kleidia-platform", charts("1.1.0")),
            "-n",
            NS,
            "--reuse-values",
        ],
    );
    // A backend image that cannot be pulled.
    ok(kubectl(
        c.kubeconfig(),
        &[
            "set",
            "image",
            "-n",
            NS,
            "deployment/kleidia-services-backend",
            "backend=kleidia-backend:1.0.0-broken",
        ],
    ));
    // OpenBao sealed.
    ok(kubectl(
        c.kubeconfig(),
        &[
            "exec",
            "-n",
            NS,
            BAO_POD,
            "--",
            "env",
            &format!("BAO_TOKEN={}", root_token(&c)),
            "bao",
            "operator",
            "seal",
        ],
    ));
    // A helm stopped half-way through the data release's upgrade.
    let manifest = helm_run(&c, h, home, &["get", "manifest", "kleidia-data", "-n", NS]);
    let values = |all: bool| -> Value {
        let mut args = vec!["get", "values", "kleidia-data", "-n", NS, "-o", "json"];
        if all {
            args.push("--all");
        }
        serde_json::from_str(&helm_run(&c, h, home, &args)).unwrap()
    };
    c.store_release_secret(
        NS,
        &ReleaseFixture::new("kleidia-data", 2, "1.1.0", "15.6", &manifest)
            .values(values(true), values(false))
            .status("pending-upgrade"),
    );
    // The services' last upgrade failed (helm left it `failed`).
    let manifest = helm_run(
        &c,
        h,
        home,
        &["get", "manifest", "kleidia-services", "-n", NS],
    );
    let values = |all: bool| -> Value {
        let mut args = vec!["get", "values", "kleidia-services", "-n", NS, "-o", "json"];
        if all {
            args.push("--all");
        }
        serde_json::from_str(&helm_run(&c, h, home, &args)).unwrap()
    };
    c.store_release_secret(
        NS,
        &ReleaseFixture::new("kleidia-services", 2, "1.0.0", "1.0.0", &manifest)
            .values(values(true), values(false))
            .status("failed"),
    );
    // A blue-green upgrade's green services release, left waiting.
    helm_run(
        &c,
        h,
        home,
        &[
            "install",
            "kleidia-services-green",
            &format!("{}/kleidia-services", charts("1.0.0")),
            "-n",
            NS,
            "--set",
            "backend.nodePort=30090,frontend.nodePort=30091",
        ],
    );

    let args = ["--backup-dir", dir.as_str(), "--charts", &charts("1.0.0")];
    let (code, r) = preflight_until(&c, h, home, &args, "a broken backend pod", |r| {
        detail(r, "workloads.services").contains("ImagePullBackOff")
            || detail(r, "workloads.services").contains("ErrImagePull")
    });
    assert_eq!(code, 1);
    assert_eq!(r["result"], "fail");
    let d = detail(&r, "workloads.services");
    assert!(d.contains("in container backend"), "{d}");
    assert!(
        hint(&r, "workloads.services").contains("kubectl describe pod kleidia-services-backend-")
    );

    assert_eq!(status(&r, "workloads.platform"), "fail");
    let d = detail(&r, "workloads.platform");
    assert!(
        d.contains("StatefulSet kleidia-platform-openbao has pod(s) on an old revision (kleidia-platform-openbao-0)")
            && d.contains("updateStrategy OnDelete"),
        "{d}"
    );
    assert!(
        hint(&r, "workloads.platform")
            .contains("kubectl delete pod kleidia-platform-openbao-0 -n kleidia")
    );

    assert_eq!(status(&r, "openbao"), "fail");
    assert!(
        detail(&r, "openbao").contains("is sealed"),
        "{}",
        detail(&r, "openbao")
    );
    assert!(hint(&r, "openbao").contains("bao operator unseal"));

    assert_eq!(status(&r, "release.data"), "fail");
    assert!(detail(&r, "release.data").contains("pending-upgrade"));
    let h_data = hint(&r, "release.data");
    assert!(
        h_data.contains("kubectl kleidia rollback data --recover -n kleidia")
            && h_data.contains("revision 1"),
        "{h_data}"
    );

    assert_eq!(status(&r, "charts.versions"), "fail");
    assert!(
        detail(&r, "charts.versions").contains("kleidia-platform 1.1.0 -> 1.0.0 (downgrade)"),
        "{}",
        detail(&r, "charts.versions")
    );
    assert!(hint(&r, "charts.versions").contains("rollback platform --list"));

    assert_eq!(status(&r, "release.green"), "warn");
    assert!(
        detail(&r, "release.green")
            .contains("a blue-green upgrade is waiting: kleidia-services-green revision 1")
    );
    let h_green = hint(&r, "release.green");
    assert!(
        h_green.contains("upgrade --promote") && h_green.contains("upgrade --abort"),
        "{h_green}"
    );

    assert_eq!(status(&r, "release.services"), "warn");
    assert!(
        detail(&r, "release.services").contains("revision 2 (kleidia-services 1.0.0) is failed")
    );
    assert!(hint(&r, "release.services").contains("helm history kleidia-services -n kleidia"));

    // What still holds is still said to hold.
    assert_eq!(status(&r, "postgres"), "pass");
    assert_eq!(status(&r, "workloads.data"), "pass");
}

#[test]
fn bad_input_is_a_usage_error_before_the_cluster_is_asked() {
    let missing = tempfile::tempdir().unwrap().path().join("nope");
    for args in [
        vec!["preflight", "--max-backup-age", "soon"],
        vec!["preflight", "--charts", missing.to_str().unwrap()],
        vec!["preflight", "-f", missing.to_str().unwrap()],
        vec!["preflight", "-o", "xml"],
    ] {
        plugin("kubectl-kleidia")
            .args(&args)
            .env("KUBECONFIG", "/nonexistent/kubeconfig")
            .assert()
            .code(2);
    }
    plugin("kubectl-kleidia")
        .args(["preflight", "--charts", missing.to_str().unwrap()])
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("is not a folder"));
}
