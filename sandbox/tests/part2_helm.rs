//! The sandbox's `helm` command (real Helm v4 engine) on the demo charts,
//! for what needs no API server: `version`, `template`, error handling.

mod support;

use std::process::{Command, Output};

use support::{chart, helm_bin, stdout_of, workspace};

fn helm(args: &[&str]) -> Output {
    Command::new(helm_bin())
        .args(args)
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("HELM_NAMESPACE")
        .output()
        .expect("run sandbox/helm/helm")
}

fn ok(args: &[&str]) -> String {
    stdout_of(&format!("helm {args:?}"), helm(args))
}

/// Rendered documents as YAML values, with the template each came from.
fn documents(rendered: &str) -> Vec<(String, serde_yaml_ng::Value)> {
    rendered
        .split("\n---\n")
        .map(|d| d.trim_start_matches("---\n"))
        .filter(|d| !d.trim().is_empty())
        .map(|d| {
            let source = d
                .lines()
                .find_map(|l| l.strip_prefix("# Source: "))
                .unwrap_or_default()
                .to_string();
            (source, serde_yaml_ng::from_str(d).expect("valid YAML"))
        })
        .collect()
}

fn find<'a>(
    docs: &'a [(String, serde_yaml_ng::Value)],
    kind: &str,
    name: &str,
) -> &'a serde_yaml_ng::Value {
    docs.iter()
        .map(|(_, d)| d)
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

#[test]
fn version_reports_the_helm_v4_engine() {
    let short = ok(&["version", "--short"]);
    assert!(short.starts_with("v4."), "{short}");
    let templated = ok(&["version", "--template", "{{.Version}}"]);
    assert_eq!(templated, short.trim_end());
    let full = ok(&["version"]);
    assert!(
        full.starts_with(&format!("version.BuildInfo{{Version:\"{}\"", short.trim())),
        "{full}"
    );
}

#[test]
fn template_renders_the_demo_charts_with_the_names_the_runbook_uses() {
    let platform = ok(&[
        "template",
        "kleidia-platform",
        &chart("1.0.0", "kleidia-platform"),
        "-n",
        "kleidia",
    ]);
    let docs = documents(&platform);
    let sts = find(&docs, "StatefulSet", "kleidia-platform-openbao");
    assert_eq!(
        sts["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"].as_str(),
        Some("openbao")
    );
    assert!(
        sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
            .as_str()
            .is_some()
    );
    find(&docs, "Secret", "openbao-unseal-key");
    find(&docs, "Service", "kleidia-platform-openbao");
    find(&docs, "ServiceAccount", "kleidia-platform-openbao");
    find(&docs, "Role", "kleidia-platform-openbao");
    find(&docs, "RoleBinding", "kleidia-platform-openbao");

    let data = ok(&[
        "template",
        "kleidia-data",
        &chart("1.0.0", "kleidia-data"),
        "--namespace=kleidia",
    ]);
    let docs = documents(&data);
    let sts = find(&docs, "StatefulSet", "kleidia-data-postgres-cluster");
    assert_eq!(
        sts["spec"]["selector"]["matchLabels"]["app"].as_str(),
        Some("postgres-cluster")
    );
    let env = &sts["spec"]["template"]["spec"]["containers"][0]["env"];
    let env_value = |name: &str| {
        env.as_sequence()
            .unwrap()
            .iter()
            .find(|e| e["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("env {name}"))
            .clone()
    };
    assert_eq!(
        env_value("POSTGRES_USER")["value"].as_str(),
        Some("yubiuser")
    );
    assert_eq!(env_value("POSTGRES_DB")["value"].as_str(), Some("kleidia"));
    assert!(env_value("POSTGRES_PASSWORD")["valueFrom"]["secretKeyRef"]["name"].is_string());
    find(&docs, "Service", "kleidia-data-postgres-cluster");
    find(&docs, "NetworkPolicy", "kleidia-data-postgres-cluster");

    let services = ok(&[
        "template",
        "kleidia-services",
        &chart("1.0.0", "kleidia-services"),
        "-n",
        "kleidia",
    ]);
    let docs = documents(&services);
    find(&docs, "Deployment", "kleidia-services-backend");
    find(&docs, "Deployment", "kleidia-services-frontend");
    find(&docs, "CronJob", "kleidia-services-session-cleanup");
    find(&docs, "ConfigMap", "kleidia-services-config");
    let svc = find(&docs, "Service", "kleidia-services-backend");
    assert_eq!(svc["spec"]["type"].as_str(), Some("NodePort"));
    assert_eq!(svc["spec"]["ports"][0]["name"].as_str(), Some("http"));
    let job = find(&docs, "Job", "kleidia-services-migrate");
    assert_eq!(
        job["metadata"]["annotations"]["helm.sh/hook"].as_str(),
        Some("pre-upgrade")
    );
    let cmd: Vec<&str> = job["spec"]["template"]["spec"]["containers"][0]["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(cmd, ["/app/kleidia-backend", "migrate"]);
    // Hooks come last, as in helm template.
    assert_eq!(docs.last().unwrap().1["kind"].as_str(), Some("Job"));
    // --no-hooks leaves the hook out.
    let no_hooks = ok(&[
        "template",
        "kleidia-services",
        &chart("1.0.0", "kleidia-services"),
        "--no-hooks",
    ]);
    assert!(!no_hooks.contains("helm.sh/hook"));
}

#[test]
fn chart_sets_move_versions_and_the_broken_set_ships_a_broken_backend() {
    let image = |version: &str, set: &[&str]| -> String {
        let mut args = vec![
            "template".to_string(),
            "kleidia-services".to_string(),
            chart(version, "kleidia-services"),
        ];
        for s in set {
            args.push("--set".into());
            args.push(s.to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let docs = documents(&ok(&args));
        find(&docs, "Deployment", "kleidia-services-backend")["spec"]["template"]["spec"]
            ["containers"][0]["image"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let v100 = image("1.0.0", &[]);
    let v110 = image("1.1.0", &[]);
    let broken = image("1.1.0-broken", &[]);
    assert_ne!(v100, v110);
    assert!(!v110.contains("broken"));
    assert!(
        broken.rsplit(':').next().unwrap().contains("broken"),
        "{broken}"
    );
    // --set wins over the chart's values.
    assert!(image("1.0.0", &["backend.image.tag=9.9.9"]).ends_with(":9.9.9"));

    for name in ["kleidia-platform", "kleidia-data", "kleidia-services"] {
        let read = |v: &str| -> serde_yaml_ng::Value {
            let text = std::fs::read_to_string(
                workspace()
                    .join("sandbox/charts")
                    .join(v)
                    .join(name)
                    .join("Chart.yaml"),
            )
            .unwrap();
            serde_yaml_ng::from_str(&text).unwrap()
        };
        let (old, new) = (read("1.0.0"), read("1.1.0"));
        assert_ne!(old["version"], new["version"], "{name} chart version moves");
        assert_ne!(
            old["appVersion"], new["appVersion"],
            "{name} app version moves"
        );
    }
}

#[test]
fn values_files_and_set_flags_merge_like_helm() {
    let dir = tempfile::tempdir().unwrap();
    let values = dir.path().join("v.yaml");
    std::fs::write(
        &values,
        "backend:\n  image:\n    tag: from-file\n  replicas: 3\n",
    )
    .unwrap();
    let out = ok(&[
        "template",
        "kleidia-services",
        &chart("1.0.0", "kleidia-services"),
        "-f",
        values.to_str().unwrap(),
        "--set",
        "backend.image.tag=from-set",
    ]);
    let docs = documents(&out);
    let dep = find(&docs, "Deployment", "kleidia-services-backend");
    assert_eq!(dep["spec"]["replicas"].as_u64(), Some(3));
    assert!(
        dep["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap()
            .ends_with(":from-set")
    );
}

#[test]
fn errors_look_like_helm_errors() {
    let out = helm(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("Error: unknown command \"frobnicate\" for \"helm\""),
        "{err}"
    );

    let out = helm(&["template", "x", "/nonexistent/chart"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("Error: "));

    let out = helm(&[
        "upgrade",
        "x",
        &chart("1.0.0", "kleidia-data"),
        "--timeout",
        "abc",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid duration"), "{err}");
}
