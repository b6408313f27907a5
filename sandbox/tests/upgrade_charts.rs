//! The demo chart sets as an upgrade meets them: every set's OpenBao
//! StatefulSet is `OnDelete` on an image of a real OpenBao version, every
//! container requests CPU and memory, `2.0.0-pg16` is a major bump that
//! says so, and `1.1.0-removed-api` renders an API version the sandbox does
//! not serve, which real Helm and kubectl are refused exactly as by a real
//! API server.

mod support;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use kleidia_sandbox::server::{Sandbox, SandboxOptions};
use serde_json::Value;
use support::{Kubectl, chart, helm_bin, stdout_of, workspace};

const SETS: [&str; 5] = [
    "1.0.0",
    "1.1.0",
    "1.1.0-broken",
    "1.1.0-removed-api",
    "2.0.0-pg16",
];
const CHARTS: [&str; 3] = ["kleidia-platform", "kleidia-data", "kleidia-services"];

/// `helm template` of one chart with the sandbox's helm, as documents.
fn template(set: &str, name: &str) -> Vec<Value> {
    let out = Command::new(helm_bin())
        .args(["template", name, &chart(set, name), "-n", "kleidia"])
        .stdin(Stdio::null())
        .output()
        .expect("run sandbox/helm/helm");
    let text = stdout_of(&format!("helm template {set}/{name}"), out);
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn chart_yaml(set: &str, name: &str) -> Value {
    let text = std::fs::read_to_string(
        workspace()
            .join("sandbox/charts")
            .join(set)
            .join(name)
            .join("Chart.yaml"),
    )
    .unwrap();
    serde_yaml_ng::from_str(&text).unwrap()
}

/// Every pod template's containers (and init containers) in `docs`.
fn containers(docs: &[Value]) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for d in docs {
        let spec = match d["kind"].as_str() {
            Some("Deployment" | "StatefulSet" | "Job" | "DaemonSet") => {
                &d["spec"]["template"]["spec"]
            }
            Some("CronJob") => &d["spec"]["jobTemplate"]["spec"]["template"]["spec"],
            Some("Pod") => &d["spec"],
            _ => continue,
        };
        for key in ["containers", "initContainers"] {
            for c in spec[key].as_array().into_iter().flatten() {
                out.push((
                    format!(
                        "{} {}/{}",
                        d["kind"].as_str().unwrap(),
                        d["metadata"]["name"].as_str().unwrap(),
                        c["name"].as_str().unwrap()
                    ),
                    c.clone(),
                ));
            }
        }
    }
    out
}

#[test]
fn every_set_ships_on_delete_openbao_and_resource_requests() {
    for set in SETS {
        for name in CHARTS {
            let docs = template(set, name);
            let all = containers(&docs);
            assert!(!all.is_empty(), "{set}/{name} has containers");
            for (what, c) in &all {
                let req = &c["resources"]["requests"];
                assert!(
                    req["cpu"].is_string() && req["memory"].is_string(),
                    "{set}/{name}: {what} requests no CPU or memory: {c}"
                );
            }
            let meta = chart_yaml(set, name);
            if name == "kleidia-platform" {
                let sts = docs
                    .iter()
                    .find(|d| d["kind"] == "StatefulSet")
                    .expect("OpenBao StatefulSet");
                assert_eq!(sts["spec"]["updateStrategy"]["type"], "OnDelete", "{set}");
                let image = sts["spec"]["template"]["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap();
                let tag = image.rsplit(':').next().unwrap();
                // Versions an installed OpenBao binary has.
                assert!(["2.6.2", "2.7.2"].contains(&tag), "{set}: {image}");
                assert_eq!(meta["appVersion"].as_str(), Some(tag), "{set}");
            }
            if name == "kleidia-data" {
                let sts = docs.iter().find(|d| d["kind"] == "StatefulSet").unwrap();
                let image = sts["spec"]["template"]["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap();
                assert_eq!(
                    meta["appVersion"].as_str(),
                    image.rsplit(':').next(),
                    "{set}"
                );
            }
        }
    }
    assert_eq!(
        chart_yaml("1.0.0", "kleidia-platform")["appVersion"],
        "2.6.2"
    );
    assert_eq!(
        chart_yaml("1.1.0", "kleidia-platform")["appVersion"],
        "2.7.2"
    );
}

#[test]
fn the_major_set_moves_postgres_to_16_and_says_it_breaks() {
    for name in CHARTS {
        let meta = chart_yaml("2.0.0-pg16", name);
        assert_eq!(meta["version"], "2.0.0", "{name}");
        let note = meta["annotations"]["kleidia.io/breaking-changes"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no kleidia.io/breaking-changes"));
        assert!(!note.is_empty());
        let changelog: PathBuf = workspace()
            .join("sandbox/charts/2.0.0-pg16")
            .join(name)
            .join("CHANGELOG.md");
        let text = std::fs::read_to_string(&changelog).unwrap();
        assert!(text.contains("## 2.0.0"), "{name}: {text}");
        if name != "kleidia-platform" {
            assert!(text.contains("**Breaking:**"), "{name}: {text}");
        }
    }
    let note =
        chart_yaml("2.0.0-pg16", "kleidia-data")["annotations"]["kleidia.io/breaking-changes"]
            .as_str()
            .unwrap()
            .to_string();
    assert!(note.contains("PostgreSQL 15 -> 16"), "{note}");
    let docs = template("2.0.0-pg16", "kleidia-data");
    let sts = docs.iter().find(|d| d["kind"] == "StatefulSet").unwrap();
    assert_eq!(
        sts["spec"]["template"]["spec"]["containers"][0]["image"],
        "docker.io/library/postgres:16.4"
    );
    // The set before it is on 15.
    let docs = template("1.1.0", "kleidia-data");
    let sts = docs.iter().find(|d| d["kind"] == "StatefulSet").unwrap();
    assert_eq!(
        sts["spec"]["template"]["spec"]["containers"][0]["image"],
        "docker.io/library/postgres:15.6"
    );
}

/// A real Helm CLI (`helm-v4` or `helm-v3` under `.venv`) against `sb`.
fn real_helm(sb: &Sandbox, which: &str, args: &[&str]) -> Output {
    let bin = workspace().join(".venv").join(which).join("helm");
    assert!(
        bin.is_file(),
        "real Helm CLI missing at {}: run scripts/setup",
        bin.display()
    );
    let home = tempfile::tempdir().unwrap();
    Command::new(bin)
        .args(args)
        .env("KUBECONFIG", sb.kubeconfig_path())
        .env("HOME", home.path())
        .env("XDG_CACHE_HOME", home.path().join("cache"))
        .env("XDG_CONFIG_HOME", home.path().join("config"))
        .env("XDG_DATA_HOME", home.path().join("data"))
        .env_remove("HELM_NAMESPACE")
        .env_remove("HELM_DRIVER")
        .stdin(Stdio::null())
        .output()
        .expect("run the real helm")
}

#[test]
fn a_removed_api_version_is_refused_like_a_real_api_server() {
    support::kubectl_bin();
    let sb = Sandbox::start(SandboxOptions::default()).expect("sandbox starts");
    let k = Kubectl::new(&sb);

    // Discovery lists policy/v1 only.
    let versions = k.ok(&["api-versions"]);
    assert!(versions.lines().any(|l| l == "policy/v1"), "{versions}");
    assert!(!versions.contains("policy/v1beta1"), "{versions}");
    let resources = k.ok(&["api-resources", "--api-group=policy", "-o", "wide"]);
    assert!(resources.contains("policy/v1"), "{resources}");
    assert!(!resources.contains("v1beta1"), "{resources}");

    // Asking for it is a 404, worded as kube-apiserver words it.
    for path in [
        "/apis/policy/v1beta1",
        "/apis/policy/v1beta1/namespaces/kleidia/poddisruptionbudgets",
    ] {
        let err = k.fails(&["get", "--raw", path]);
        assert_eq!(
            err.trim(),
            "Error from server (NotFound): the server could not find the requested resource",
            "{path}"
        );
    }
    let manifest = k.file(
        "pdb.yaml",
        "apiVersion: policy/v1beta1\nkind: PodDisruptionBudget\nmetadata:\n  name: old\nspec:\n  minAvailable: 1\n  selector:\n    matchLabels: {app: x}\n",
    );
    let err = k.fails(&["apply", "-n", "kleidia", "-f", &manifest]);
    assert!(
        err.contains(r#"no matches for kind "PodDisruptionBudget" in version "policy/v1beta1""#),
        "{err}"
    );

    // The chart renders (no cluster involved) ...
    let chart_dir = chart("1.1.0-removed-api", "kleidia-services");
    let docs = template("1.1.0-removed-api", "kleidia-services");
    assert!(
        docs.iter()
            .any(|d| d["apiVersion"] == "policy/v1beta1" && d["kind"] == "PodDisruptionBudget")
    );
    // ... and every real Helm refuses to install it, creating nothing.
    for which in ["helm-v4", "helm-v3"] {
        let out = real_helm(
            &sb,
            which,
            &["install", "kleidia-services", &chart_dir, "-n", "kleidia"],
        );
        assert_eq!(out.status.code(), Some(1), "{which}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("Error: INSTALLATION FAILED: "),
            "{which}: {err}"
        );
        assert!(
            err.contains(
                r#"resource mapping not found for name: "kleidia-services-backend" namespace: "" from "": no matches for kind "PodDisruptionBudget" in version "policy/v1beta1""#
            ),
            "{which}: {err}"
        );
        assert!(
            err.contains("ensure CRDs are installed first"),
            "{which}: {err}"
        );
    }
    let deployments = k.json(&["get", "deployments", "-n", "kleidia"]);
    assert_eq!(deployments["items"].as_array().unwrap().len(), 0);

    // The sandbox's helm (the Helm v4 engine) fails the same way.
    let out = Command::new(helm_bin())
        .args(["install", "kleidia-services", &chart_dir, "-n", "kleidia"])
        .env("KUBECONFIG", sb.kubeconfig_path())
        .env("HOME", sb.data_dir())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"no matches for kind "PodDisruptionBudget" in version "policy/v1beta1""#),
        "{err}"
    );
}
