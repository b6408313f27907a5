//! `versions` end to end: both binaries against a sandbox cluster, every
//! field checked against what the sandbox really holds (release records
//! read back from the API, the server's /version, and the runbook's own
//! kubectl commands run with real kubectl).

mod support;

use predicates::prelude::*;
use serde_json::{Value, json};
use support::{Cluster, ReleaseFixture, json_of, kubectl, plugin};

const PLATFORM: &str = include_str!("fixtures/platform.yaml");
const DATA: &str = include_str!("fixtures/data.yaml");
const SERVICES: &str = include_str!("fixtures/services.yaml");
const DATA_RENAMED: &str = include_str!("fixtures/data-renamed.yaml");

/// The three releases as the demo charts' first install leaves them.
fn demo_releases() -> Vec<ReleaseFixture> {
    vec![
        ReleaseFixture::new("kleidia-platform", 1, "1.0.0", "2.4.1", PLATFORM),
        ReleaseFixture::new("kleidia-data", 1, "1.0.0", "15.4", DATA).values(
            json!({"postgres": {"user": "yubiuser", "database": "kleidia", "password": ""}}),
            json!({}),
        ),
        ReleaseFixture::new("kleidia-services", 1, "1.0.0", "1.0.0", SERVICES),
    ]
}

fn install_demo(c: &Cluster, ns: &str) -> Vec<ReleaseFixture> {
    for m in [PLATFORM, DATA, SERVICES] {
        c.apply_manifest(ns, m);
    }
    let releases = demo_releases();
    for r in &releases {
        c.store_release_secret(ns, r);
    }
    c.wait_for_ready_pods(ns, 4);
    releases
}

/// `kubectl-kleidia versions <args> --kubeconfig <the sandbox's>`.
fn versions(c: &Cluster, args: &[&str]) -> assert_cmd::Command {
    let mut cmd = plugin("kubectl-kleidia");
    cmd.arg("versions")
        .args(args)
        .arg("--kubeconfig")
        .arg(c.kubeconfig());
    cmd
}

/// `kubectl get --raw <path>` with real kubectl, parsed as JSON.
fn raw_json(c: &Cluster, path: &str) -> Value {
    let out = kubectl(c.kubeconfig(), &["get", "--raw", path]);
    assert!(
        out.status.success(),
        "kubectl get --raw {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("kubectl get --raw {path} did not print JSON: {e}"))
}

/// What the pod's real PostgreSQL server answers to the runbook's check,
/// asked directly over its socket with the host's psql.
fn server_psql_version(c: &Cluster, ns: &str, pod: &str, user: &str, db: &str) -> String {
    let ep = c
        .databases
        .as_ref()
        .expect("a sandbox running real PostgreSQL")
        .lookup(ns, pod)
        .unwrap_or_else(|| panic!("no PostgreSQL server runs for pod {ns}/{pod}"));
    let out = std::process::Command::new(ep.bindir.join("psql"))
        .args(["-U", user, "-d", db, "-tAc", "SELECT version()"])
        .envs(ep.client_env())
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Every Helm release record in `ns`, decoded here (independently of the
/// plugin) from the Secrets the API server returns.
fn stored_releases(c: &Cluster, ns: &str) -> Vec<Value> {
    use base64::Engine;
    use k8s_openapi::api::core::v1::Secret;
    use std::io::Read;
    let api: kube::Api<Secret> = kube::Api::namespaced(c.client.clone(), ns);
    let list = c
        .block_on(api.list(&kube::api::ListParams::default().labels("owner=helm")))
        .unwrap();
    list.items
        .iter()
        .map(|s| {
            let text = &s.data.as_ref().unwrap()["release"].0;
            let gz = base64::engine::general_purpose::STANDARD
                .decode(text)
                .unwrap();
            let mut json = Vec::new();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_end(&mut json)
                .unwrap();
            serde_json::from_slice(&json).unwrap()
        })
        .collect()
}

/// The demo charts installed by the real Helm engine, in namespace `kleidia`.
fn install_demo_charts(c: &Cluster) {
    for r in ["kleidia-platform", "kleidia-data", "kleidia-services"] {
        c.helm_install("kleidia", r, "1.0.0");
    }
}

/// Helm's own view of a release (`helm list -o json`).
fn helm_list(c: &Cluster, ns: &str) -> Vec<Value> {
    serde_json::from_str(&c.helm(&["list", "-n", ns, "-o", "json"])).unwrap()
}

#[test]
fn versions_json_matches_the_cluster() {
    let c = Cluster::start();
    install_demo(&c, "kleidia");

    let out = versions(&c, &["-o", "json"])
        .env("HELM_BIN", support::helm_bin())
        .assert();
    let report = json_of(&out);
    eprintln!("{}", serde_json::to_string_pretty(&report).unwrap());

    assert_eq!(report["namespace"], "kleidia");
    assert_eq!(report["context"], "kleidia-sandbox");
    assert_eq!(report["server"], c.sandbox.url());

    // Components: what the release records stored in the cluster say.
    let stored = stored_releases(&c, "kleidia");
    let comps = report["components"].as_array().unwrap();
    assert_eq!(comps.len(), 3);
    for (row, component) in comps.iter().zip(["platform", "data", "services"]) {
        assert_eq!(row["component"], component);
        let name = row["release"].as_str().unwrap();
        let rec = stored
            .iter()
            .filter(|r| r["name"] == name)
            .max_by_key(|r| r["version"].as_u64())
            .unwrap_or_else(|| panic!("no stored record for {name}"));
        assert_eq!(row["chart"], rec["chart"]["metadata"]["name"]);
        assert_eq!(row["chartVersion"], rec["chart"]["metadata"]["version"]);
        assert_eq!(row["appVersion"], rec["chart"]["metadata"]["appVersion"]);
        assert_eq!(row["revision"], rec["version"]);
        assert_eq!(row["status"], rec["info"]["status"]);
        assert_eq!(row["lastDeployed"], rec["info"]["last_deployed"]);
        assert_eq!(row["firstDeployed"], rec["info"]["first_deployed"]);
        assert_eq!(row["description"], rec["info"]["description"]);
        assert_eq!(row["error"], Value::Null);
    }

    // Kubernetes: the server's own /version.
    assert_eq!(
        report["servers"]["kubernetes"]["version"],
        c.server_version()
    );

    // Helm: the client's own answer.
    let helm_version = c.helm(&["version", "--template", "{{.Version}}"]);
    assert_eq!(report["servers"]["helm"]["version"], helm_version.trim());

    // PostgreSQL: discovered from the data release, and the same banner the
    // runbook's kubectl exec prints.
    let pg = &report["servers"]["postgresql"];
    assert_eq!(pg["pod"], "kleidia-data-postgres-cluster-0");
    assert_eq!(pg["container"], "postgres");
    assert_eq!(pg["user"], "yubiuser");
    assert_eq!(pg["database"], "kleidia");
    let banner = server_psql_version(
        &c,
        "kleidia",
        "kleidia-data-postgres-cluster-0",
        "yubiuser",
        "kleidia",
    );
    assert_eq!(pg["fullVersion"], banner.as_str());
    assert_eq!(pg["error"], Value::Null);

    // OpenBao: its own seal status, read with real kubectl through the pod
    // proxy.
    let bao = raw_json(
        &c,
        "/api/v1/namespaces/kleidia/pods/kleidia-platform-openbao-0:8200/proxy/v1/sys/seal-status",
    );
    let ob = &report["servers"]["openbao"];
    assert_eq!(ob["pod"], "kleidia-platform-openbao-0");
    assert_eq!(ob["via"], "pod proxy");
    assert_eq!(ob["version"], bao["version"]);
    assert_eq!(ob["sealed"], bao["sealed"]);
    assert_eq!(ob["initialized"], bao["initialized"]);
    assert_eq!(ob["error"], Value::Null);

    // Backend: the health document through the API server's service proxy.
    let health = raw_json(
        &c,
        "/api/v1/namespaces/kleidia/services/kleidia-services-backend:8080/proxy/api/health",
    );
    let be = &report["servers"]["backend"];
    assert_eq!(be["service"], "kleidia-services-backend");
    assert_eq!(be["version"], health["version"]);
    assert_eq!(be["status"], health["status"]);

    // Compatibility: every row judged, all fine on the demo deployment.
    let compat = report["compatibility"].as_array().unwrap();
    let items: Vec<_> = compat.iter().map(|r| r["item"].as_str().unwrap()).collect();
    assert_eq!(items, ["Kubernetes", "Helm", "PostgreSQL", "OpenBao"]);
    for row in compat {
        assert_eq!(row["ok"], true, "{row}");
    }
    assert_eq!(report["ok"], true);
    out.code(0);

    // A backend that does not answer in time marks only its own row, and
    // the whole command still ends within the timeout.
    c.sandbox
        .faults()
        .set(kleidia_sandbox::faults::FaultSettings {
            latency_ms: 120_000,
            path_contains: Some("/proxy/api/health".into()),
            ..Default::default()
        });
    let slow = json_of(
        &versions(&c, &["-o", "json", "--timeout", "3s"])
            .timeout(std::time::Duration::from_secs(60))
            .assert()
            .code(1),
    );
    assert_eq!(slow["servers"]["backend"]["error"], "no answer within 3s");
    assert_eq!(slow["servers"]["backend"]["version"], Value::Null);
    assert_eq!(
        slow["servers"]["postgresql"]["fullVersion"],
        report["servers"]["postgresql"]["fullVersion"]
    );
    assert_eq!(
        slow["servers"]["openbao"]["version"],
        report["servers"]["openbao"]["version"]
    );
    assert_eq!(slow["components"], report["components"]);
    assert_eq!(slow["ok"], false);

    // An API error on the proxy is shown with the server's answer.
    c.sandbox
        .faults()
        .set(kleidia_sandbox::faults::FaultSettings {
            error_rate: 1.0,
            error_code: 500,
            path_contains: Some("/proxy/api/health".into()),
            ..Default::default()
        });
    let failing = json_of(&versions(&c, &["-o", "json"]).assert().code(1));
    let err = failing["servers"]["backend"]["error"].as_str().unwrap();
    assert!(err.contains("500"), "{err}");
    assert_eq!(failing["servers"]["postgresql"]["error"], Value::Null);
    c.sandbox.faults().clear();
}

/// Stores only release records (no workloads): enough for targeting tests.
fn store_records(c: &Cluster, ns: &str, chart_version: &str) {
    for (name, app) in [
        ("kleidia-platform", "2.4.1"),
        ("kleidia-data", "15.4"),
        ("kleidia-services", "1.0.0"),
    ] {
        c.store_release_secret(ns, &ReleaseFixture::new(name, 1, chart_version, app, ""));
    }
}

/// The sandbox's kubeconfig plus a context `other` (same cluster and user,
/// namespace `default`), written 0600 into `dir`.
fn two_context_kubeconfig(c: &Cluster, dir: &std::path::Path) -> std::path::PathBuf {
    let mut kc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(c.kubeconfig()).unwrap()).unwrap();
    let mut other = kc["contexts"][0].clone();
    other["name"] = "other".into();
    other["context"]["namespace"] = "default".into();
    kc["contexts"].as_sequence_mut().unwrap().push(other);
    let path = dir.join("kubeconfig");
    kleidia_sandbox::kubeconfig::write_private(
        &path,
        serde_yaml_ng::to_string(&kc).unwrap().as_bytes(),
    )
    .unwrap();
    path
}

#[test]
fn helm_environment_targets_and_flags_override() {
    let c = Cluster::start_with(Default::default());
    c.create_namespace("team-a");
    store_records(&c, "team-a", "7.0.0");
    store_records(&c, "kleidia", "1.0.0");
    let dir = tempfile::tempdir().unwrap();
    let kc = two_context_kubeconfig(&c, dir.path());

    let report = |cmd: &mut assert_cmd::Command| json_of(&cmd.assert());

    // Only Helm's environment: namespace and context come from it.
    let r = report(
        plugin("helm-kleidia")
            .args(["versions", "-o", "json", "--timeout", "20s"])
            .env("KUBECONFIG", &kc)
            .env("HELM_NAMESPACE", "team-a")
            .env("HELM_KUBECONTEXT", "other"),
    );
    assert_eq!(r["namespace"], "team-a");
    assert_eq!(r["context"], "other");
    assert_eq!(r["components"][0]["chartVersion"], "7.0.0");

    // Flags win over the environment.
    let r = report(
        plugin("helm-kleidia")
            .args([
                "versions",
                "-o",
                "json",
                "--timeout",
                "20s",
                "-n",
                "kleidia",
                "--kube-context",
                "kleidia-sandbox",
            ])
            .env("KUBECONFIG", &kc)
            .env("HELM_NAMESPACE", "team-a")
            .env("HELM_KUBECONTEXT", "other"),
    );
    assert_eq!(r["namespace"], "kleidia");
    assert_eq!(r["context"], "kleidia-sandbox");
    assert_eq!(r["components"][0]["chartVersion"], "1.0.0");

    // kubectl-kleidia ignores Helm's variables: the context's namespace.
    plugin("kubectl-kleidia")
        .args(["versions", "--timeout", "20s", "--context", "other"])
        .env("KUBECONFIG", &kc)
        .env("HELM_NAMESPACE", "team-a")
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "namespace default (from the kubeconfig context)",
        ));
}

#[test]
fn namespace_without_releases_says_what_was_looked_for() {
    let c = Cluster::start_with(Default::default());
    versions(&c, &["-n", "default"])
        .assert()
        .code(1)
        .stdout(predicate::str::is_empty())
        .stderr(
            predicate::str::contains("namespace default (from --namespace)")
                .and(predicate::str::contains(
                    "kleidia-platform, kleidia-data, kleidia-services",
                ))
                .and(predicate::str::contains("-n/--namespace"))
                .and(predicate::str::contains("--data-release")),
        );
    // Release names from flags are the ones looked for.
    versions(&c, &["--data-release", "db"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "kleidia-platform, db, kleidia-services",
        ));
}

#[test]
fn forbidden_secrets_name_the_missing_permission() {
    use kleidia_sandbox::server::SandboxOptions;
    let c = Cluster::start_with(SandboxOptions {
        authz_rules: Some(vec![
            support::Rule::deny(&["list"], &["secrets"]),
            support::Rule::allow_all(),
        ]),
        ..Default::default()
    });
    versions(&c, &[]).assert().code(1).stderr(
        predicate::str::contains("may not list secrets in namespace kleidia")
            .and(predicate::str::contains("403"))
            .and(predicate::str::contains("docs/rbac.yaml")),
    );
}

#[test]
fn rejected_credentials_are_reported_as_401() {
    let c = Cluster::start_with(Default::default());
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(c.kubeconfig()).unwrap();
    let bad = text.replace(c.sandbox.token(), "0000000000000000");
    let path = dir.path().join("kubeconfig");
    kleidia_sandbox::kubeconfig::write_private(&path, bad.as_bytes()).unwrap();
    let out = plugin("kubectl-kleidia")
        .args(["versions", "--kubeconfig"])
        .arg(&path)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("401").and(predicate::str::contains(c.sandbox.url())));
    // The token never reaches the terminal.
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(!stderr.contains(c.sandbox.token()));
}

#[test]
fn failed_and_pending_releases_are_shown_with_history() {
    let c = Cluster::start_with(Default::default());
    let ns = "kleidia";
    for (release, revision, chart, app, status) in [
        ("kleidia-platform", 1, "1.0.0", "2.4.1", "deployed"),
        ("kleidia-data", 1, "1.0.0", "15.4", "superseded"),
        ("kleidia-data", 2, "1.1.0", "15.6", "failed"),
        ("kleidia-services", 1, "1.0.0", "1.0.0", "superseded"),
        ("kleidia-services", 2, "1.0.0", "1.0.0", "superseded"),
        ("kleidia-services", 3, "1.1.0", "1.1.0", "pending-upgrade"),
    ] {
        c.store_release_secret(
            ns,
            &ReleaseFixture::new(release, revision, chart, app, "").status(status),
        );
    }

    let out = versions(&c, &["-o", "yaml", "--history", "--timeout", "20s"])
        .assert()
        .code(1);
    let r: Value = serde_yaml_ng::from_slice(&out.get_output().stdout).unwrap();
    let comp = |i: usize| &r["components"][i];
    assert_eq!(comp(1)["status"], "failed");
    assert_eq!(comp(1)["revision"], 2);
    assert_eq!(comp(1)["chartVersion"], "1.1.0");
    assert_eq!(comp(2)["status"], "pending-upgrade");
    assert_eq!(comp(2)["revision"], 3);
    let history: Vec<(u64, String)> = comp(2)["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["revision"].as_u64().unwrap(),
                h["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        history,
        [
            (1, "superseded".into()),
            (2, "superseded".into()),
            (3, "pending-upgrade".into())
        ]
    );
    assert_eq!(r["ok"], false);

    // The table shows them too.
    versions(&c, &["--timeout", "20s"]).assert().code(1).stdout(
        predicate::str::contains("pending-upgrade")
            .and(predicate::str::contains("failed"))
            .and(predicate::str::contains("\x1b").not()),
    );
}

#[test]
fn configmap_driver_and_corrupt_records() {
    let c = Cluster::start_with(Default::default());
    let ns = "kleidia";
    c.store_release_configmap(
        ns,
        &ReleaseFixture::new("kleidia-platform", 4, "1.2.0", "2.4.1", ""),
    );
    c.store_release_configmap(
        ns,
        &ReleaseFixture::new("kleidia-data", 1, "1.0.0", "15.4", ""),
    );
    c.store_release_configmap(
        ns,
        &ReleaseFixture::new("kleidia-services", 1, "1.0.0", "1.0.0", ""),
    );
    // A Secret that claims to be Helm's but is not.
    c.apply_manifest(
        ns,
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: sh.helm.release.v1.kleidia-data.v1\n  labels: {owner: helm, name: kleidia-data, status: deployed, version: '1'}\ntype: helm.sh/release.v1\ndata:\n  release: bm90IGd6aXA=\n",
    );

    let r = json_of(
        &plugin("helm-kleidia")
            .args(["versions", "-o", "json", "--timeout", "20s"])
            .env("KUBECONFIG", c.kubeconfig())
            .env("HELM_DRIVER", "configmap")
            .assert()
            .code(1),
    );
    assert_eq!(r["components"][0]["revision"], 4);
    assert_eq!(r["components"][0]["chartVersion"], "1.2.0");
    assert_eq!(r["components"][1]["status"], "deployed");

    // The default (secret) driver finds the corrupt record and names it.
    let r = json_of(
        &versions(&c, &["-o", "json", "--timeout", "20s"])
            .assert()
            .code(1),
    );
    let err = r["components"][1]["error"].as_str().unwrap();
    assert!(
        err.contains("secret/sh.helm.release.v1.kleidia-data.v1"),
        "{err}"
    );
    assert!(err.contains("not a readable Helm release record"), "{err}");
}

#[test]
fn renamed_postgres_is_discovered_and_failing_probes_stay_in_their_rows() {
    let c = Cluster::start();
    let ns = "kleidia";
    c.apply_manifest(ns, DATA_RENAMED);
    c.store_release_secret(
        ns,
        &ReleaseFixture::new("kleidia-data", 1, "2.0.0", "15.10", DATA_RENAMED),
    );
    c.wait_for_ready_pods(ns, 1);

    let out = versions(&c, &["-o", "json", "--timeout", "30s"])
        .assert()
        .code(1);
    let r = json_of(&out);
    let pg = &r["servers"]["postgresql"];
    assert_eq!(pg["pod"], "postgres-0");
    assert_eq!(pg["container"], "db");
    assert_eq!(pg["user"], "kleidiauser");
    assert_eq!(pg["database"], "kleidia");
    assert_eq!(
        pg["fullVersion"],
        server_psql_version(&c, ns, "postgres-0", "kleidiauser", "kleidia").as_str()
    );
    assert_eq!(pg["error"], Value::Null);
    // The other releases are missing: their rows say so, nothing else hides.
    assert!(
        r["components"][0]["error"]
            .as_str()
            .unwrap()
            .contains("kleidia-platform not found")
    );
    assert!(
        r["servers"]["openbao"]["error"]
            .as_str()
            .unwrap()
            .contains("kleidia-platform")
    );
    assert!(
        r["servers"]["backend"]["error"]
            .as_str()
            .unwrap()
            .contains("kleidia-services")
    );
    assert_eq!(r["servers"]["kubernetes"]["version"], c.server_version());
    let pg_row = r["compatibility"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["item"] == "PostgreSQL")
        .unwrap();
    assert_eq!(pg_row["ok"], true);
    let bao_row = r["compatibility"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["item"] == "OpenBao")
        .unwrap();
    assert_eq!(bao_row["ok"], Value::Null);
}

#[test]
fn demo_charts_installed_by_real_helm() {
    // Without pods/proxy, OpenBao is asked with `bao status` over exec.
    let c = Cluster::start_real(Some(vec![
        support::Rule::deny(&["get", "create"], &["pods/proxy"]),
        support::Rule::allow_all(),
    ]));
    install_demo_charts(&c);
    // An upgrade makes a second revision, as operators' clusters have.
    c.helm(&[
        "upgrade",
        "kleidia-services",
        &support::workspace()
            .join("sandbox/charts/1.1.0/kleidia-services")
            .display()
            .to_string(),
        "-n",
        "kleidia",
        "--wait",
        "--timeout",
        "180s",
    ]);

    let out = plugin("helm-kleidia")
        .args(["versions", "-o", "json", "--history"])
        .env("KUBECONFIG", c.kubeconfig())
        .env("HELM_NAMESPACE", "kleidia")
        .env("HELM_BIN", support::helm_bin())
        .assert();
    let report = json_of(&out);
    eprintln!("{}", serde_json::to_string_pretty(&report).unwrap());

    // Components: what Helm itself lists.
    let listed = helm_list(&c, "kleidia");
    for row in report["components"].as_array().unwrap() {
        let name = row["release"].as_str().unwrap();
        let helm_row = listed
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("helm list has no {name}: {listed:?}"));
        // helm list's chart column is <name>-<version>.
        assert_eq!(
            format!(
                "{}-{}",
                row["chart"].as_str().unwrap(),
                row["chartVersion"].as_str().unwrap()
            ),
            helm_row["chart"].as_str().unwrap()
        );
        assert_eq!(row["appVersion"], helm_row["app_version"]);
        assert_eq!(
            row["revision"].to_string(),
            helm_row["revision"].as_str().unwrap()
        );
        assert_eq!(row["status"], helm_row["status"]);
        let history: Value =
            serde_json::from_str(&c.helm(&["history", name, "-n", "kleidia", "-o", "json"]))
                .unwrap();
        let ours: Vec<(u64, &str)> = row["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h["revision"].as_u64().unwrap(),
                    h["status"].as_str().unwrap(),
                )
            })
            .collect();
        let helms: Vec<(u64, &str)> = history
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h["revision"].as_u64().unwrap(),
                    h["status"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(ours, helms, "history of {name}");
    }

    // Discovery on the demo charts with zero configuration.
    let s = &report["servers"];
    assert_eq!(s["postgresql"]["pod"], "kleidia-data-postgres-cluster-0");
    assert_eq!(s["postgresql"]["user"], "yubiuser");
    assert_eq!(s["postgresql"]["database"], "kleidia");
    assert_eq!(
        s["postgresql"]["fullVersion"],
        server_psql_version(
            &c,
            "kleidia",
            "kleidia-data-postgres-cluster-0",
            "yubiuser",
            "kleidia"
        )
        .as_str()
    );
    assert_eq!(s["openbao"]["pod"], "kleidia-platform-openbao-0");
    assert_eq!(s["openbao"]["via"], "bao status");
    let bao = kubectl(
        c.kubeconfig(),
        &[
            "exec",
            "-n",
            "kleidia",
            "kleidia-platform-openbao-0",
            "--",
            "bao",
            "status",
            "-format=json",
        ],
    );
    let bao: Value = serde_json::from_slice(&bao.stdout).unwrap_or_else(|e| {
        panic!(
            "kubectl exec bao status printed no JSON ({e}): {}",
            String::from_utf8_lossy(&bao.stderr)
        )
    });
    assert_eq!(s["openbao"]["version"], bao["version"]);
    assert_eq!(s["openbao"]["sealed"], bao["sealed"]);
    assert_eq!(s["openbao"]["initialized"], bao["initialized"]);

    // The port-forward helper reaches OpenBao's API in the pod directly
    // (pods/portforward is allowed; only the proxy is denied here).
    let answer = c.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let api = kleidia::cluster::ApiEndpoint {
            server: c.sandbox.url().to_string(),
            context: "kleidia-sandbox".into(),
        };
        let mut conn = kleidia::cluster::portforward::PortForwardStream::open(
            &c.client,
            &api,
            "kleidia",
            "kleidia-platform-openbao-0",
            8200,
        )
        .await
        .unwrap();
        conn.write_all(b"GET /v1/sys/seal-status HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut text = String::new();
        conn.read_to_string(&mut text).await.unwrap();
        text
    });
    let body = answer.split("\r\n\r\n").nth(1).expect("an HTTP response");
    let seal: Value = serde_json::from_str(body).unwrap();
    assert_eq!(seal["version"], bao["version"]);
    assert_eq!(s["backend"]["service"], "kleidia-services-backend");
    let health = raw_json(
        &c,
        "/api/v1/namespaces/kleidia/services/kleidia-services-backend:8080/proxy/api/health",
    );
    assert_eq!(s["backend"]["version"], health["version"]);
    assert_eq!(report["ok"], true, "{report}");
    out.code(0);

    // Seal OpenBao (through its API, with the root token the sandbox keeps):
    // `bao status` then exits 2, which is an answer, not a failure.
    let bao_root = c
        .sandbox
        .shared()
        .container_dir("kleidia", "kleidia-platform-openbao-0", "openbao")
        .join("root");
    let token = kleidia_sandbox::runtimes::openbao::root_token_at(&bao_root).unwrap_or_else(|| {
        let state: Vec<_> = std::fs::read_dir(bao_root.join(".sandbox-openbao"))
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.file_name())).collect())
            .unwrap_or_default();
        panic!(
            "the sandbox kept no OpenBao root token under {} (state folder holds {state:?}); see the container logs under {}",
            bao_root.display(),
            bao_root.parent().unwrap().join("logs").display()
        )
    });
    let sealed_answer = c.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let api = kleidia::cluster::ApiEndpoint::default();
        let mut conn = kleidia::cluster::portforward::PortForwardStream::open(
            &c.client,
            &api,
            "kleidia",
            "kleidia-platform-openbao-0",
            8200,
        )
        .await
        .unwrap();
        let req = format!(
            "PUT /v1/sys/seal HTTP/1.0\r\nHost: localhost\r\nX-Vault-Token: {token}\r\nContent-Length: 0\r\n\r\n"
        );
        conn.write_all(req.as_bytes()).await.unwrap();
        let mut text = String::new();
        conn.read_to_string(&mut text).await.unwrap();
        text
    });
    assert!(
        sealed_answer.starts_with("HTTP/1.0 204") || sealed_answer.starts_with("HTTP/1.1 204"),
        "sealing failed: {}",
        sealed_answer.lines().next().unwrap_or_default()
    );
    let out = plugin("helm-kleidia")
        .args(["versions", "-o", "json"])
        .env("KUBECONFIG", c.kubeconfig())
        .env("HELM_NAMESPACE", "kleidia")
        .assert()
        .code(1);
    let sealed = json_of(&out);
    let ob = &sealed["servers"]["openbao"];
    assert_eq!(ob["via"], "bao status");
    assert_eq!(ob["sealed"], true);
    assert_eq!(ob["initialized"], true);
    assert_eq!(ob["error"], Value::Null);
    assert_eq!(ob["version"], s["openbao"]["version"]);
    assert_eq!(sealed["ok"], false);
    let out = plugin("helm-kleidia")
        .arg("versions")
        .env("KUBECONFIG", c.kubeconfig())
        .env("HELM_NAMESPACE", "kleidia")
        .assert()
        .code(1);
    let table = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(
        table
            .lines()
            .any(|l| l.contains("OpenBao") && l.split_whitespace().any(|w| w == "sealed")),
        "{table}"
    );
}
