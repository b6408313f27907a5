//! The real Helm v4 engine (through the sandbox's `helm` command) against a
//! sandbox whose pods run real PostgreSQL, OpenBao and the backend: install
//! the 1.0.0 set, upgrade to 1.1.0, history, rollback, and the broken set
//! failing like helm (and rolled back with --atomic). Release records are
//! read back from their Secrets and decoded field by field.

mod support;

use std::io::Read;
use std::process::{Command, Output};
use std::time::Duration;

use base64::Engine;
use kleidia_sandbox::demo::real_runtimes;
use kleidia_sandbox::runtimes::openbao::OpenBaoStorage;
use kleidia_sandbox::server::{Sandbox, SandboxOptions};
use serde_json::Value;
use support::{Kubectl, chart, helm_bin, stdout_of};

struct Env {
    sandbox: Sandbox,
    kubectl: Kubectl,
}

impl Env {
    fn start() -> Env {
        // Both tools first: without them the test fails before starting
        // anything, saying to run scripts/setup.
        helm_bin();
        support::kubectl_bin();
        let sandbox = Sandbox::start(SandboxOptions {
            runtimes: real_runtimes(OpenBaoStorage::Raft),
            pod_ready_delay: Duration::from_millis(100),
            ..SandboxOptions::default()
        })
        .expect("sandbox starts");
        let kubectl = Kubectl::new(&sandbox);
        Env { sandbox, kubectl }
    }

    /// The sandbox's helm for this sandbox, with Helm's own settings
    /// (namespace, storage driver) at their defaults.
    fn helm_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(helm_bin());
        c.args(args)
            .env("KUBECONFIG", self.sandbox.kubeconfig_path())
            .env("HOME", self.sandbox.data_dir())
            .env_remove("HELM_NAMESPACE")
            .env_remove("HELM_DRIVER");
        c
    }

    fn helm(&self, args: &[&str]) -> Output {
        self.helm_cmd(args).output().expect("run sandbox/helm/helm")
    }

    fn helm_ok(&self, args: &[&str]) -> String {
        stdout_of(&format!("helm {args:?}"), self.helm(args))
    }

    fn kubectl_json(&self, args: &[&str]) -> Value {
        self.kubectl.json(args)
    }

    fn kubectl(&self, args: &[&str]) -> String {
        self.kubectl.ok(args)
    }

    /// Upgrades the services release to the broken set with `mode`
    /// (`--wait` or `--atomic`) and a 20 s timeout; fails the test unless
    /// helm fails the upgrade as helm does. Returns helm's stderr.
    fn upgrade_to_broken_services(&self, mode: &str) -> String {
        let out = self.helm(&[
            "upgrade",
            "kleidia-services",
            &chart("1.1.0-broken", "kleidia-services"),
            "-n",
            "kleidia",
            mode,
            "--timeout",
            "20s",
        ]);
        assert_eq!(out.status.code(), Some(1), "upgrade {mode} to 1.1.0-broken");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(err.starts_with("Error: UPGRADE FAILED: "), "{err}");
        err
    }

    /// `sql` run by psql in the data release's PostgreSQL pod, as the
    /// application's user; returns the unaligned tuples.
    fn psql(&self, sql: &str) -> String {
        self.kubectl.demo_psql(&["-tAc", sql])
    }

    /// `<program> status -format=json` (`vault` or `bao`) in the OpenBao pod.
    fn openbao_status(&self, program: &str) -> Value {
        let status = self.kubectl(&[
            "exec",
            "kleidia-platform-openbao-0",
            "-n",
            "kleidia",
            "--",
            program,
            "status",
            "-format=json",
        ]);
        serde_json::from_str(&status).unwrap()
    }

    /// Every stored revision of `release`, decoded: base64 (of the Secret
    /// data), base64, gzip, JSON — Helm's storage format.
    fn release_records(&self, release: &str) -> Vec<(Value, Value)> {
        let list = self.kubectl_json(&[
            "get",
            "secrets",
            "-n",
            "kleidia",
            "-l",
            &format!("owner=helm,name={release}"),
        ]);
        let mut out: Vec<(Value, Value)> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let b64 = base64::engine::general_purpose::STANDARD;
                let once = b64.decode(s["data"]["release"].as_str().unwrap()).unwrap();
                let twice = b64.decode(once).unwrap();
                let mut json = String::new();
                flate2::read::GzDecoder::new(&twice[..])
                    .read_to_string(&mut json)
                    .unwrap();
                (s.clone(), serde_json::from_str(&json).unwrap())
            })
            .collect();
        out.sort_by_key(|(_, r)| r["version"].as_u64());
        out
    }
}

const RELEASES: [&str; 3] = ["kleidia-platform", "kleidia-data", "kleidia-services"];

#[test]
fn install_upgrade_history_rollback_and_a_failing_upgrade() {
    let env = Env::start();
    for release in RELEASES {
        let out = env.helm_ok(&[
            "upgrade",
            "--install",
            release,
            &chart("1.0.0", release),
            "-n",
            "kleidia",
            "--wait",
            "--timeout",
            "3m",
        ]);
        assert!(
            out.contains(&format!(
                "Release \"{release}\" does not exist. Installing it now."
            )),
            "{out}"
        );
        assert!(out.contains("STATUS: deployed"), "{out}");
        if release == "kleidia-services" {
            assert!(
                out.contains("NOTES:\nKleidia 1.0.0 is deployed in namespace kleidia."),
                "{out}"
            );
        }
    }

    // helm list, as JSON: the fields and shapes of the real CLI.
    let list: Value =
        serde_json::from_str(&env.helm_ok(&["list", "-n", "kleidia", "-o", "json"])).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 3);
    for item in list {
        let name = item["name"].as_str().unwrap();
        assert!(RELEASES.contains(&name));
        assert_eq!(item["namespace"], "kleidia");
        assert_eq!(item["revision"], "1");
        assert_eq!(item["status"], "deployed");
        assert_eq!(item["chart"], format!("{name}-1.0.0"));
        assert!(item["updated"].as_str().unwrap().contains(" +0000 UTC"));
    }
    let table = env.helm_ok(&["ls", "-n", "kleidia"]);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(table.lines().next().unwrap().contains("APP VERSION"));

    // The release Secrets, decoded field by field.
    let records = env.release_records("kleidia-data");
    assert_eq!(records.len(), 1);
    let (secret, rel) = &records[0];
    assert_eq!(secret["type"], "helm.sh/release.v1");
    assert_eq!(
        secret["metadata"]["name"],
        "sh.helm.release.v1.kleidia-data.v1"
    );
    assert_eq!(secret["metadata"]["labels"]["owner"], "helm");
    assert_eq!(secret["metadata"]["labels"]["status"], "deployed");
    assert_eq!(secret["metadata"]["labels"]["version"], "1");
    assert_eq!(rel["name"], "kleidia-data");
    assert_eq!(rel["namespace"], "kleidia");
    assert_eq!(rel["version"], 1);
    assert_eq!(rel["info"]["status"], "deployed");
    assert_eq!(rel["info"]["description"], "Install complete");
    assert_eq!(rel["chart"]["metadata"]["name"], "kleidia-data");
    assert_eq!(rel["chart"]["metadata"]["version"], "1.0.0");
    assert_eq!(rel["chart"]["metadata"]["appVersion"], "15.4");
    assert!(
        rel["manifest"]
            .as_str()
            .unwrap()
            .contains("name: kleidia-data-postgres-cluster")
    );

    // The workloads the releases created are running real software.
    let pods = env.kubectl_json(&["get", "pods", "-n", "kleidia"]);
    let names: Vec<&str> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"kleidia-platform-openbao-0"), "{names:?}");
    assert!(
        names.contains(&"kleidia-data-postgres-cluster-0"),
        "{names:?}"
    );

    // The backend's health through the service proxy, and which backend
    // pods answer it, before the upgrade.
    let health = |env: &Env| -> Value {
        serde_json::from_str(&env.kubectl(&[
            "get",
            "--raw",
            "/api/v1/namespaces/kleidia/services/kleidia-services-backend:http/proxy/api/health",
        ]))
        .unwrap()
    };
    // Backend pods that are not on their way out.
    let backend_pods = |env: &Env| -> Vec<String> {
        let pods = env.kubectl_json(&[
            "get",
            "pods",
            "-n",
            "kleidia",
            "-l",
            "app.kubernetes.io/name=backend",
        ]);
        let mut pods: Vec<String> = pods["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        pods.sort();
        pods
    };
    assert_eq!(health(&env)["version"], "1.0.0");
    let pods_before = backend_pods(&env);
    assert!(
        !pods_before.is_empty(),
        "backend pods run before the upgrade"
    );

    // Upgrade services to 1.1.0 with a user value; the pre-upgrade hook
    // migrates the real database.
    let out = env.helm_ok(&[
        "upgrade",
        "kleidia-services",
        &chart("1.1.0", "kleidia-services"),
        "-n",
        "kleidia",
        "--set",
        "backend.replicas=1",
        "--wait",
        "--timeout",
        "3m",
        "--description",
        "to 1.1.0",
    ]);
    assert!(
        out.contains("Release \"kleidia-services\" has been upgraded. Happy Helming!"),
        "{out}"
    );
    assert!(out.contains("REVISION: 2"), "{out}");
    // The pods rolled: none of the 1.0.0 backends is left, and the health
    // endpoint answers with the new version.
    let pods_after = backend_pods(&env);
    assert!(!pods_after.is_empty(), "backend pods run after the upgrade");
    assert!(
        pods_after.iter().all(|p| !pods_before.contains(p)),
        "the upgrade replaced the backend pods: before {pods_before:?}, after {pods_after:?}"
    );
    assert_eq!(health(&env)["version"], "1.1.0");
    let values: Value = serde_json::from_str(&env.helm_ok(&[
        "get",
        "values",
        "kleidia-services",
        "-n",
        "kleidia",
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(values["backend"]["replicas"], 1);
    let old_values = env.helm_ok(&[
        "get",
        "values",
        "kleidia-services",
        "-n",
        "kleidia",
        "--revision",
        "1",
    ]);
    assert!(
        old_values.starts_with("USER-SUPPLIED VALUES:"),
        "{old_values}"
    );
    let all_values = env.helm_ok(&[
        "get",
        "values",
        "kleidia-services",
        "-n",
        "kleidia",
        "--all",
    ]);
    assert!(all_values.starts_with("COMPUTED VALUES:"), "{all_values}");
    assert!(all_values.contains("kleidia-backend"), "{all_values}");
    let manifest = env.helm_ok(&["get", "manifest", "kleidia-services", "-n", "kleidia"]);
    assert!(manifest.contains("kleidia-backend:1.1.0"), "{manifest}");

    // The backends (1.0.0 at install, the 1.1.0 hook and pods) migrated the
    // real database of the data release.
    let versions =
        env.psql("SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_migrations");
    assert_eq!(versions.trim(), "1,2,3,4,5");
    let status = env.openbao_status("vault");
    assert_eq!(status["sealed"], false);

    let history: Value = serde_json::from_str(&env.helm_ok(&[
        "history",
        "kleidia-services",
        "-n",
        "kleidia",
        "-o",
        "json",
    ]))
    .unwrap();
    let history = history.as_array().unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0]["revision"], 1);
    assert_eq!(history[0]["status"], "superseded");
    assert_eq!(history[0]["chart"], "kleidia-services-1.0.0");
    assert_eq!(history[1]["status"], "deployed");
    assert_eq!(history[1]["app_version"], "1.1.0");
    assert_eq!(history[1]["description"], "to 1.1.0");
    let records = env.release_records("kleidia-services");
    assert_eq!(records.len(), 2);
    assert_eq!(records[1].1["config"]["backend"]["replicas"], 1);
    assert_eq!(records[1].1["chart"]["metadata"]["appVersion"], "1.1.0");
    assert_eq!(records[0].0["metadata"]["labels"]["status"], "superseded");

    // Rollback to revision 1.
    let out = env.helm_ok(&[
        "rollback",
        "kleidia-services",
        "1",
        "-n",
        "kleidia",
        "--wait",
        "--timeout",
        "3m",
    ]);
    assert_eq!(out, "Rollback was a success! Happy Helming!\n");
    let records = env.release_records("kleidia-services");
    assert_eq!(records.len(), 3);
    assert_eq!(records[2].1["info"]["status"], "deployed");
    assert_eq!(records[2].1["info"]["description"], "Rollback to 1");
    assert_eq!(records[2].1["chart"]["metadata"]["version"], "1.0.0");

    // The broken set: --wait gives up after the timeout, like helm.
    env.upgrade_to_broken_services("--wait");
    let records = env.release_records("kleidia-services");
    assert_eq!(records.last().unwrap().1["info"]["status"], "failed");
    assert_eq!(
        env.helm_ok(&["ls", "-n", "kleidia", "--failed", "-q"]),
        "kleidia-services\n"
    );

    // --atomic: the failed upgrade is rolled back.
    let err = env.upgrade_to_broken_services("--atomic");
    assert!(err.contains("rolled back"), "{err}");
    let status: Value = serde_json::from_str(&env.helm_ok(&[
        "status",
        "kleidia-services",
        "-n",
        "kleidia",
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(status["info"]["status"], "deployed");
    // Like the real CLI, status leaves the chart out: get metadata has it.
    assert!(status.get("chart").is_none(), "{status}");
    let metadata: Value = serde_json::from_str(&env.helm_ok(&[
        "get",
        "metadata",
        "kleidia-services",
        "-n",
        "kleidia",
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(metadata["version"], "1.0.0");

    // Platform and data move to 1.1.0: their StatefulSet pods are replaced
    // and come back with their data (PostgreSQL rows, an OpenBao that
    // unseals by itself with the kept static key). OpenBao's StatefulSet is
    // `OnDelete`, as the real chart ships it: helm upgrade restarts no
    // OpenBao pod, so the test deletes it as an operator does.
    for release in ["kleidia-platform", "kleidia-data"] {
        env.helm_ok(&[
            "upgrade",
            release,
            &chart("1.1.0", release),
            "-n",
            "kleidia",
            "--wait",
            "--timeout",
            "3m",
        ]);
    }
    env.kubectl(&[
        "delete",
        "pod",
        "kleidia-platform-openbao-0",
        "-n",
        "kleidia",
    ]);
    env.kubectl(&[
        "wait",
        "pod/kleidia-platform-openbao-0",
        "-n",
        "kleidia",
        "--for=condition=Ready",
        "--timeout=180s",
    ]);
    let images = env.kubectl(&[
        "get",
        "pods",
        "-n",
        "kleidia",
        "-o",
        "jsonpath={range .items[*]}{.spec.containers[0].image}{\"\\n\"}{end}",
    ]);
    assert!(images.contains("postgres:15.6"), "{images}");
    assert!(images.contains("openbao:2.7.2"), "{images}");
    let versions = env.psql("SELECT count(*) FROM schema_migrations");
    assert_eq!(
        versions.trim(),
        "5",
        "rows survive the PostgreSQL pod's replacement"
    );
    let status = env.openbao_status("bao");
    assert_eq!(
        status["sealed"], false,
        "OpenBao unseals itself after its pod is replaced"
    );
    assert_eq!(status["initialized"], true);
    assert_eq!(
        status["version"], "2.7.2",
        "the replaced pod runs the OpenBao of its new image"
    );

    let missing = env.helm(&["history", "no-such-release", "-n", "kleidia"]);
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&missing.stderr),
        "Error: release: not found\n"
    );
}

#[test]
fn helm_driver_configmap_stores_releases_in_configmaps() {
    let env = Env::start();
    let args = [
        "install",
        "kleidia-data",
        &chart("1.0.0", "kleidia-data"),
        "-n",
        "kleidia",
    ];
    let out = env
        .helm_cmd(&args)
        .env("HELM_DRIVER", "configmap")
        .output()
        .unwrap();
    stdout_of(&format!("HELM_DRIVER=configmap helm {args:?}"), out);
    let cms = env.kubectl_json(&["get", "configmaps", "-n", "kleidia", "-l", "owner=helm"]);
    let names: Vec<&str> = cms["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sh.helm.release.v1.kleidia-data.v1"]);
    let secrets = env.kubectl_json(&["get", "secrets", "-n", "kleidia", "-l", "owner=helm"]);
    assert_eq!(secrets["items"].as_array().unwrap().len(), 0);
    // Listing with the same driver finds it; the default (secret) does not.
    let with_driver = env
        .helm_cmd(&["ls", "-n", "kleidia", "-q"])
        .env("HELM_DRIVER", "configmap")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&with_driver.stdout),
        "kleidia-data\n"
    );
    assert_eq!(env.helm_ok(&["ls", "-n", "kleidia", "-q"]), "");
}
