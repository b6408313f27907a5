//! The runbook's migrations section and a blue-green upgrade that fails,
//! end to end with the real Helm 3 CLI against a sandbox running the demo:
//! `migrate --status` reads every backend pod's migration lines and the
//! applied versions, `migrate` applies what is missing and is a no-op the
//! second time; a green whose migration fails is reported with its pod and
//! left for `--abort`, blue untouched, and `migrate` run in it fails with
//! its output.

mod support;

use serde_json::Value;
use support::{
    Cluster, backend_pods, demo_charts as charts, kleidia_on as kleidia, kubectl, outputs as out,
    real_helm, release_revisions,
};

const NS: &str = "kleidia";
const PG_POD: &str = "kleidia-data-postgres-cluster-0";

fn psql(c: &Cluster, sql: &str) -> String {
    let o = kubectl(
        c.kubeconfig(),
        &[
            "exec", PG_POD, "-n", NS, "--", "psql", "-U", "yubiuser", "-d", "kleidia", "-tAc", sql,
        ],
    );
    assert!(o.status.success(), "psql {sql}: {o:?}");
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn migrations_and_a_failing_green_with_helm_v3() {
    let helm = real_helm("helm-v3");
    let c = Cluster::start_demo(&helm, "1.0.0");
    let home = tempfile::tempdir().unwrap();
    let blue_pods = backend_pods(&c, "kleidia-services");

    // Status: the backend's start-up migration lines and the table.
    let a = kleidia(&c, &helm, home.path())
        .args(["migrate", "--status", "-o", "json"])
        .assert()
        .success();
    let s: Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    assert_eq!(s["ok"], true, "{s}");
    let lines: Vec<&str> = s["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["line"].as_str().unwrap())
        .collect();
    assert!(
        lines.contains(&"INFO migrate: migrations finished (schema version 4)"),
        "{lines:?}"
    );
    assert_eq!(s["lines"][0]["pod"], blue_pods[0].as_str());
    assert!(s["lines"][0]["time"].as_str().unwrap().starts_with("20"));
    let applied: Vec<(&str, &str)> = s["applied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["version"].as_str().unwrap(), m["name"].as_str().unwrap()))
        .collect();
    assert_eq!(
        applied,
        [
            ("1", "0001_create_users"),
            ("2", "0002_create_yubikeys"),
            ("3", "0003_create_sessions"),
            ("4", "0004_add_users_display_name")
        ]
    );

    // A migration missing from the table: migrate applies it, streaming
    // its lines; a second run has nothing to do.
    psql(&c, "DELETE FROM schema_migrations WHERE version = 4");
    let a = kleidia(&c, &helm, home.path())
        .args(["migrate", "--dry-run"])
        .assert()
        .success();
    let (_, err) = out(&a);
    assert!(
        err.contains(&format!(
            "would run /app/kleidia-backend migrate in pod {}",
            blue_pods[0]
        )),
        "{err}"
    );
    assert_eq!(psql(&c, "SELECT count(*) FROM schema_migrations"), "3");
    let a = kleidia(&c, &helm, home.path())
        .arg("migrate")
        .assert()
        .success();
    let (stdout, _) = out(&a);
    assert!(
        stdout.contains("INFO migrate: applied 0004_add_users_display_name"),
        "{stdout}"
    );
    assert_eq!(psql(&c, "SELECT count(*) FROM schema_migrations"), "4");
    let a = kleidia(&c, &helm, home.path())
        .arg("migrate")
        .assert()
        .success();
    let (stdout, _) = out(&a);
    assert!(
        stdout.contains("no migrations to apply") && !stdout.contains("applying"),
        "{stdout}"
    );

    // A green whose backend's migration fails never becomes healthy: it is
    // reported with its pod and the failing line, and left for --abort.
    let a = kleidia(&c, &helm, home.path())
        .args([
            "upgrade",
            "--strategy",
            "blue-green",
            "--charts",
            &charts("1.1.0-migration-fails"),
            "-y",
            "--no-backup",
            "--timeout",
            "20s",
        ])
        .assert()
        .code(1);
    let (stdout, stderr) = out(&a);
    assert!(
        stdout.contains(
            "green kleidia-services-green is NOT healthy; blue kleidia-services is untouched and serving"
        ),
        "{stdout}\n{stderr}"
    );
    let green_pods = backend_pods(&c, "kleidia-services-green");
    assert_eq!(green_pods.len(), 1, "{green_pods:?}");
    assert!(
        stdout.contains(&format!("pod {}: not ready; its log says: ", green_pods[0])),
        "the pod and its reason are named: {stdout}"
    );
    assert!(
        stdout.contains("migration 0005_add_yubikeys_attestation failed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("next: kubectl kleidia upgrade --abort -n kleidia"),
        "{stdout}"
    );
    assert_eq!(
        release_revisions(&c, "kleidia-services"),
        [(1, "deployed".into())]
    );
    assert_eq!(backend_pods(&c, "kleidia-services"), blue_pods);
    assert_eq!(release_revisions(&c, "kleidia-services-green").len(), 1);

    // migrate --status finds the failure in green's pod and quotes it.
    let a = kleidia(&c, &helm, home.path())
        .args(["migrate", "--status"])
        .assert()
        .code(1);
    let (stdout, _) = out(&a);
    let failed = stdout
        .split("migrations FAILED:")
        .nth(1)
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        failed.contains(&format!(
            "{}: ERROR migrate: migration 0005_add_yubikeys_attestation failed",
            green_pods[0]
        )),
        "{stdout}"
    );
    assert!(
        !failed.contains(&blue_pods[0]),
        "blue's pod has no failure: {stdout}"
    );

    // Run in green's pod, the migration fails with its output.
    let a = kleidia(&c, &helm, home.path())
        .args(["migrate", "--pod", &green_pods[0]])
        .assert()
        .code(1);
    let (stdout, stderr) = out(&a);
    assert!(
        stdout.contains("ERROR migrate: migration 0005_add_yubikeys_attestation failed"),
        "{stdout}"
    );
    assert!(stderr.contains("exited with code 1"), "{stderr}");
    assert_eq!(psql(&c, "SELECT max(version) FROM schema_migrations"), "4");

    // Abort: green is removed, blue is as it was.
    let a = kleidia(&c, &helm, home.path())
        .args(["upgrade", "--abort", "-y"])
        .assert()
        .success();
    let (stdout, _) = out(&a);
    assert!(
        stdout.contains("aborted: kleidia-services-green uninstalled, kleidia-services untouched"),
        "{stdout}"
    );
    assert!(release_revisions(&c, "kleidia-services-green").is_empty());
    assert!(backend_pods(&c, "kleidia-services-green").is_empty());
    assert_eq!(
        release_revisions(&c, "kleidia-services"),
        [(1, "deployed".into())]
    );
    assert_eq!(backend_pods(&c, "kleidia-services"), blue_pods);
    let a = kleidia(&c, &helm, home.path())
        .args(["upgrade", "--abort", "-y"])
        .assert()
        .code(2);
    let (_, err) = out(&a);
    assert!(err.contains("there is no green release"), "{err}");
}
