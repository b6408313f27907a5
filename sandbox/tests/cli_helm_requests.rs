//! `kleidia-sandbox up --helm PATH --charts SET`: the demo installed by a
//! real Helm CLI (so the same helm can upgrade it), `env` exporting that
//! helm, and `kleidia-sandbox requests` counting what kubectl did.

mod support;

use std::process::{Command, Output};

use serde_json::Value;
use support::{Kubectl, workspace};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kleidia-sandbox"))
}

fn cli_ok(args: &[&str]) -> Output {
    let out = bin().args(args).output().expect("kleidia-sandbox runs");
    assert!(
        out.status.success(),
        "kleidia-sandbox {} failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Stops a detached sandbox even when the test fails half-way.
struct Down(String);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = bin().args(["down", "--dir", &self.0]).output();
    }
}

#[test]
fn up_with_a_real_helm_and_another_chart_set_then_count_requests() {
    let helm = workspace().join(".venv/helm-v4/helm");
    assert!(
        helm.is_file(),
        "the real Helm v4 CLI is missing at {}: run scripts/setup",
        helm.display()
    );
    let helm = helm.canonicalize().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("sb");
    let ds = d.to_str().unwrap().to_string();

    // Typos fail before anything starts, naming what was wrong.
    let out = bin()
        .args(["up", "--dir", &ds, "--helm", "/no/such/helm"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--helm") && err.contains("/no/such/helm does not exist"),
        "{err}"
    );
    let out = bin()
        .args(["up", "--dir", &ds, "--charts", "9.9.9"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("demo chart set \"9.9.9\" was not found"),
        "{err}"
    );
    assert!(!d.join("sandbox.json").exists(), "nothing was started");

    let _down = Down(ds.clone());
    let helm_s = helm.to_str().unwrap();
    let up = cli_ok(&[
        "up", "--dir", &ds, "--detach", "--helm", helm_s, "--charts", "1.1.0",
    ]);
    let exports = String::from_utf8(up.stdout).unwrap();
    assert!(
        exports.contains(&format!("export HELM_BIN={}\n", helm.display())),
        "{exports}"
    );
    assert!(
        exports.contains(&format!(
            "export PATH={}:",
            helm.parent().unwrap().display()
        )),
        "the chosen helm comes first on PATH: {exports}"
    );
    let env = cli_ok(&["env", "--dir", &ds]);
    assert_eq!(String::from_utf8(env.stdout).unwrap(), exports);

    // The releases were installed by that helm: Helm 4 applies server-side
    // as manager `helm`, and lists the 1.1.0 set.
    let kubeconfig = d.canonicalize().unwrap().join("kubeconfig");
    let list = Command::new(&helm)
        .args(["list", "-n", "kleidia", "-o", "json"])
        .env("KUBECONFIG", &kubeconfig)
        .env("HOME", dir.path())
        .env_remove("HELM_DRIVER")
        .output()
        .unwrap();
    let list: Value = serde_json::from_slice(&list.stdout).unwrap();
    let mut charts: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["chart"].as_str().unwrap())
        .collect();
    charts.sort();
    assert_eq!(
        charts,
        [
            "kleidia-data-1.1.0",
            "kleidia-platform-1.1.0",
            "kleidia-services-1.1.0"
        ]
    );
    let k = Kubectl::with_kubeconfig(&kubeconfig);
    let deploy = k.json(&[
        "get",
        "deploy",
        "kleidia-services-backend",
        "-n",
        "kleidia",
        "--show-managed-fields",
    ]);
    let managers = support::managers(&deploy);
    assert!(
        managers.contains(&("helm".to_string(), "Apply".to_string())),
        "{managers:?}"
    );

    // Requests: reset, one kubectl list, read back.
    cli_ok(&["requests", "--dir", &ds, "--reset"]);
    k.ok(&["get", "pods", "-n", "kleidia"]);
    let out = cli_ok(&["requests", "--dir", &ds]);
    let counts: Value = serde_json::from_slice(&out.stdout).unwrap();
    let lists: Vec<&Value> = counts["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["verb"] == "list" && r["resource"] == "pods")
        .collect();
    assert_eq!(lists.len(), 1, "{counts}");
    assert_eq!(lists[0]["namespace"], "kleidia");
    assert_eq!(lists[0]["count"], 1);
    assert_eq!(lists[0]["codes"]["200"], 1);
    let cleared = cli_ok(&["requests", "--dir", &ds, "--reset"]);
    let cleared: Value = serde_json::from_slice(&cleared.stdout).unwrap();
    assert_eq!(cleared["total"], counts["total"]);
    let after = cli_ok(&["requests", "--dir", &ds]);
    let after: Value = serde_json::from_slice(&after.stdout).unwrap();
    assert_eq!(after["total"], 0);

    cli_ok(&["down", "--dir", &ds]);
}
