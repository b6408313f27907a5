//! The real Helm CLIs (v3.15.1 and v4.1.4, installed by `scripts/setup`)
//! against sandboxes whose pods run real PostgreSQL, OpenBao and the
//! backend: install, upgrade with waiting and the pre-upgrade migration
//! hook, history/status/list/get, rollback, uninstall, a failing upgrade
//! rolled back by `--atomic` / `--rollback-on-failure` with the configmap
//! storage driver, a helm killed mid-upgrade, and a second services release
//! meeting NodePort allocation. Every scenario runs for both majors, each in
//! its own sandbox, installed by the helm that then upgrades it.

mod support;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use kleidia_sandbox::demo::{install_demo_unless_empty, real_runtimes};
use kleidia_sandbox::registry;
use kleidia_sandbox::runtimes::openbao::OpenBaoStorage;
use kleidia_sandbox::server::{Sandbox, SandboxOptions};
use kleidia_sandbox::store::EventType;
use serde_json::Value;
use support::{Kubectl, chart, stdout_of, workspace};

/// One real Helm CLI and the flags that differ between its majors.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Major {
    V3,
    V4,
}

impl Major {
    fn bin(self) -> PathBuf {
        let (dir, version) = match self {
            Major::V3 => ("helm-v3", "v3.15.1"),
            Major::V4 => ("helm-v4", "v4.1.4"),
        };
        let p = workspace().join(".venv").join(dir).join("helm");
        assert!(
            p.is_file(),
            "the real Helm {version} CLI is missing at {}: run scripts/setup in the workspace root",
            p.display()
        );
        p
    }

    /// Waiting for every resource: Helm 3's legacy readiness checks, Helm
    /// 4's watcher (kstatus).
    fn wait(self) -> &'static str {
        match self {
            Major::V3 => "--wait",
            Major::V4 => "--wait=watcher",
        }
    }

    /// Roll back a failed upgrade (Helm 4 renamed `--atomic`).
    fn atomic(self) -> &'static str {
        match self {
            Major::V3 => "--atomic",
            Major::V4 => "--rollback-on-failure",
        }
    }

    fn rolled_back_because(self) -> &'static str {
        match self {
            Major::V3 => "has been rolled back due to atomic being set",
            Major::V4 => "has been rolled back due to rollback-on-failure being set",
        }
    }
}

struct Env {
    sb: Sandbox,
    kubectl: Kubectl,
    major: Major,
    /// `HELM_DRIVER` for every helm run (`None`: Helm's default, Secrets).
    driver: Option<&'static str>,
}

impl Env {
    /// A sandbox running the real software; with `demo`, the three 1.0.0
    /// releases are installed by `major`'s helm (through
    /// `SandboxOptions::helm`) before it is returned.
    fn start(major: Major, demo: bool) -> Env {
        support::kubectl_bin();
        let sb = Sandbox::start(SandboxOptions {
            runtimes: real_runtimes(OpenBaoStorage::File),
            // Slow enough that a helm which did not wait would return before
            // the new pods are Ready.
            pod_ready_delay: Duration::from_millis(1000),
            empty: !demo,
            helm: Some(major.bin()),
            ..SandboxOptions::default()
        })
        .expect("sandbox starts");
        assert_eq!(install_demo_unless_empty(&sb).expect("demo installs"), demo);
        let kubectl = Kubectl::new(&sb);
        Env {
            sb,
            kubectl,
            major,
            driver: None,
        }
    }

    /// A sandbox with no demo and no real software (pods run the default
    /// runtime): for what needs only the API.
    fn start_api_only(major: Major) -> Env {
        support::kubectl_bin();
        let sb = Sandbox::start(SandboxOptions::default()).expect("sandbox starts");
        let kubectl = Kubectl::new(&sb);
        Env {
            sb,
            kubectl,
            major,
            driver: None,
        }
    }

    /// Real helm for this sandbox, with no Helm settings of the caller's.
    fn helm_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(self.major.bin());
        c.args(args)
            .env("KUBECONFIG", self.sb.kubeconfig_path())
            .env("HOME", self.sb.data_dir())
            .env_remove("HELM_NAMESPACE")
            .env_remove("HELM_KUBECONTEXT")
            .env_remove("HELM_DRIVER")
            .stdin(Stdio::null());
        if let Some(d) = self.driver {
            c.env("HELM_DRIVER", d);
        }
        c
    }

    fn helm(&self, args: &[&str]) -> Output {
        self.helm_cmd(args).output().expect("real helm runs")
    }

    fn helm_ok(&self, args: &[&str]) -> String {
        stdout_of(
            &format!("helm {:?} {}", self.major, args.join(" ")),
            self.helm(args),
        )
    }

    fn helm_json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-n", "kleidia", "-o", "json"]);
        let out = self.helm_ok(&all);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("helm {all:?}: {e}: {out}"))
    }

    /// `helm upgrade --install RELEASE <set>/RELEASE` with waiting.
    fn install(&self, release: &str, set: &str) -> String {
        self.helm_ok(&[
            "upgrade",
            "--install",
            release,
            &chart(set, release),
            "-n",
            "kleidia",
            self.major.wait(),
            "--timeout",
            "3m",
        ])
    }

    /// `helm history RELEASE -o json` as (revision, status, description).
    fn history(&self, release: &str) -> Vec<(u64, String, String)> {
        self.helm_json(&["history", release])
            .as_array()
            .expect("history is a list")
            .iter()
            .map(|h| {
                (
                    h["revision"].as_u64().unwrap(),
                    h["status"].as_str().unwrap().to_string(),
                    h["description"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// The backend Deployment's status right now, and the images of its
    /// Ready pods that are not on their way out.
    fn backend_rollout(&self) -> (Value, Vec<String>) {
        let d = self
            .kubectl
            .json(&["get", "deploy", "kleidia-services-backend", "-n", "kleidia"]);
        let pods = self.kubectl.json(&[
            "get",
            "pods",
            "-n",
            "kleidia",
            "-l",
            "app.kubernetes.io/name=backend",
        ]);
        let ready = pods["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .filter(|p| {
                p["status"]["conditions"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
            })
            .map(|p| {
                p["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        (d, ready)
    }

    /// Fails the test unless the backend runs `image_tag` everywhere, all
    /// of it Ready: what a helm that waited leaves behind.
    fn assert_backend_rolled_out(&self, image_tag: &str, after: &str) {
        let (d, ready) = self.backend_rollout();
        let template = d["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap();
        assert!(
            template.ends_with(image_tag),
            "{after}: template {template}"
        );
        let replicas = d["spec"]["replicas"].as_u64().unwrap();
        assert_eq!(
            d["status"]["observedGeneration"], d["metadata"]["generation"],
            "{after}: the rollout was observed: {}",
            d["status"]
        );
        assert_eq!(
            d["status"]["updatedReplicas"].as_u64(),
            Some(replicas),
            "{after}: {}",
            d["status"]
        );
        assert!(
            ready.iter().filter(|i| i.ends_with(image_tag)).count() as u64 >= replicas,
            "{after}: helm returned before the new backend pods were Ready: ready pods run {ready:?}"
        );
    }

    /// Fails the test unless StatefulSet `name` runs `image_tag` in every
    /// pod, all of them Ready.
    fn assert_statefulset_rolled_out(&self, name: &str, image_tag: &str, after: &str) {
        let s = self.kubectl.json(&["get", "sts", name, "-n", "kleidia"]);
        let st = &s["status"];
        let replicas = s["spec"]["replicas"].as_u64().unwrap();
        assert_eq!(
            st["observedGeneration"], s["metadata"]["generation"],
            "{after}: {st}"
        );
        assert_eq!(
            st["updatedReplicas"].as_u64(),
            Some(replicas),
            "{after}: {st}"
        );
        assert_eq!(
            st["readyReplicas"].as_u64(),
            Some(replicas),
            "{after}: {st}"
        );
        assert_eq!(st["currentRevision"], st["updateRevision"], "{after}: {st}");
        for i in 0..replicas {
            let pod = self
                .kubectl
                .json(&["get", "pod", &format!("{name}-{i}"), "-n", "kleidia"]);
            let image = pod["spec"]["containers"][0]["image"].as_str().unwrap();
            assert!(
                image.ends_with(image_tag),
                "{after}: {name}-{i} runs {image}"
            );
            let ready = pod["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            });
            assert!(ready, "{after}: helm returned before {name}-{i} was Ready");
        }
    }

    /// Waits up to two minutes for StatefulSet `name` to run `image_tag` in
    /// every pod, all Ready, then asserts it.
    fn wait_statefulset_rolled_out(&self, name: &str, image_tag: &str, after: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let s = self.kubectl.json(&["get", "sts", name, "-n", "kleidia"]);
            let st = &s["status"];
            let replicas = s["spec"]["replicas"].as_u64().unwrap();
            let done = st["updatedReplicas"].as_u64() == Some(replicas)
                && st["readyReplicas"].as_u64() == Some(replicas)
                && st["currentRevision"] == st["updateRevision"];
            if done || std::time::Instant::now() > deadline {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
        self.assert_statefulset_rolled_out(name, image_tag, after);
    }

    fn release_objects(&self, kind: &str, release: &str) -> Vec<String> {
        let list = self.kubectl.json(&[
            "get",
            kind,
            "-n",
            "kleidia",
            "-l",
            &format!("owner=helm,name={release}"),
        ]);
        let mut names: Vec<String> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                format!(
                    "{}={}",
                    o["metadata"]["name"].as_str().unwrap(),
                    o["metadata"]["labels"]["status"].as_str().unwrap_or("")
                )
            })
            .collect();
        names.sort();
        names
    }
}

/// What the store saw of the migration hook and the backend during an
/// upgrade, in order.
fn hook_timeline(
    rx: &mut tokio::sync::broadcast::Receiver<kleidia_sandbox::store::Event>,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |s: &str| {
        if !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    };
    while let Ok(ev) = rx.try_recv() {
        let name = ev.name();
        if ev.resource.same(&registry::JOBS) && name == "kleidia-services-migrate" {
            let complete = ev.object["status"]["conditions"]
                .as_array()
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Complete" && c["status"] == "True")
                });
            match ev.event_type {
                EventType::Added => push("migration job created"),
                EventType::Modified if complete => push("migration job complete"),
                EventType::Deleted => push("migration job deleted"),
                EventType::Modified => {}
            }
        }
        if ev.resource.same(&registry::DEPLOYMENTS)
            && name == "kleidia-services-backend"
            && ev.object["spec"]["template"]["spec"]["containers"][0]["image"]
                .as_str()
                .is_some_and(|i| i.ends_with(":1.1.0"))
        {
            push("backend deployment upgraded");
        }
    }
    out
}

/// Install the three releases, upgrade them to 1.1.0 (services' migration
/// hook, waiting), read everything back, roll back, uninstall.
fn lifecycle(major: Major) {
    let env = Env::start(major, true);
    let list = env.helm_json(&["list"]);
    let mut charts: Vec<(String, String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["chart"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    charts.sort();
    assert_eq!(
        charts,
        [
            ("kleidia-data", "kleidia-data-1.0.0", "deployed"),
            ("kleidia-platform", "kleidia-platform-1.0.0", "deployed"),
            ("kleidia-services", "kleidia-services-1.0.0", "deployed"),
        ]
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    );

    // A dry run renders against the cluster and writes nothing.
    env.sb.reset_requests();
    let out = env.helm_ok(&[
        "upgrade",
        "kleidia-services",
        &chart("1.1.0", "kleidia-services"),
        "-n",
        "kleidia",
        "--dry-run=server",
    ]);
    assert!(out.contains("kleidia-backend:1.1.0"), "{out}");
    let requests = env.sb.requests();
    assert!(requests.mutating().is_empty(), "{requests:?}");
    assert!(requests.count("list", "secrets") >= 1, "{requests:?}");

    // The upgrade: the pre-upgrade migration Job is created, waited for and
    // deleted (hook-succeeded) before the backend is touched; then helm
    // waits for the new backend.
    let mut events = env.sb.shared().store.subscribe_all();
    env.sb.reset_requests();
    let out = env.helm_ok(&[
        "upgrade",
        "kleidia-services",
        &chart("1.1.0", "kleidia-services"),
        "-n",
        "kleidia",
        "--set",
        "cleanup.schedule=5 4 * * *",
        major.wait(),
        "--timeout",
        "3m",
    ]);
    assert!(
        out.contains("Release \"kleidia-services\" has been upgraded. Happy Helming!"),
        "{out}"
    );
    env.assert_backend_rolled_out(":1.1.0", "upgrade to 1.1.0");
    assert_eq!(
        hook_timeline(&mut events),
        [
            "migration job created",
            "migration job complete",
            "migration job deleted",
            "backend deployment upgraded"
        ]
    );
    let requests = env.sb.requests();
    // before-hook-creation found no Job (404), hook-succeeded deleted it.
    let deletes = requests.filter(|c| c.key.verb == "delete" && c.key.resource == "jobs");
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    assert_eq!(deletes[0].codes.get("404"), Some(&1), "{deletes:?}");
    assert_eq!(deletes[0].codes.get("200"), Some(&1), "{deletes:?}");
    // Helm 3 creates the hook, Helm 4 applies it (server-side).
    let created = requests.count_where(|c| {
        c.key.resource == "jobs"
            && (c.key.verb == "create" || c.key.verb == "patch")
            && c.codes.contains_key("201")
    });
    assert_eq!(created, 1, "{requests:?}");
    env.kubectl
        .fails(&["get", "job", "kleidia-services-migrate", "-n", "kleidia"]);

    // Platform to 1.1.0: OpenBao's StatefulSet is OnDelete, so helm returns
    // with the pod still on the old version; it moves once deleted.
    let out = env.install("kleidia-platform", "1.1.0");
    assert!(out.contains("REVISION: 2"), "{out}");
    let sts = env
        .kubectl
        .json(&["get", "sts", "kleidia-platform-openbao", "-n", "kleidia"]);
    assert_ne!(
        sts["status"]["currentRevision"], sts["status"]["updateRevision"],
        "OnDelete: the pod waits to be deleted: {}",
        sts["status"]
    );
    let pod = env
        .kubectl
        .json(&["get", "pod", "kleidia-platform-openbao-0", "-n", "kleidia"]);
    let image = pod["spec"]["containers"][0]["image"].as_str().unwrap();
    assert!(
        image.ends_with(":2.6.2"),
        "OnDelete pod moved by itself: {image}"
    );
    env.kubectl.ok(&[
        "delete",
        "pod",
        "kleidia-platform-openbao-0",
        "-n",
        "kleidia",
    ]);
    env.wait_statefulset_rolled_out("kleidia-platform-openbao", ":2.7.2", "platform pod deleted");
    // Data to 1.1.0: PostgreSQL's StatefulSet rolls, waited for by helm.
    let out = env.install("kleidia-data", "1.1.0");
    assert!(out.contains("REVISION: 2"), "{out}");
    env.assert_statefulset_rolled_out(
        "kleidia-data-postgres-cluster",
        ":15.6",
        "upgrade of kleidia-data",
    );
    // The new PostgreSQL has the rows the migration hook wrote.
    let migrated = env.kubectl.demo_psql(&[
        "-tAc",
        "SELECT max(version) FROM schema_migrations WHERE applied_at IS NOT NULL",
    ]);
    assert_eq!(migrated.trim(), "5", "1.1.0 adds migration 0005");

    // Read back, as JSON.
    let status = env.helm_json(&["status", "kleidia-services"]);
    assert_eq!(status["info"]["status"], "deployed");
    assert_eq!(status["version"], 2);
    assert!(
        status.get("chart").is_none(),
        "helm status leaves the chart out"
    );
    let metadata = env.helm_json(&["get", "metadata", "kleidia-services"]);
    assert_eq!(metadata["chart"], "kleidia-services");
    assert_eq!(metadata["version"], "1.1.0");
    assert_eq!(metadata["appVersion"], "1.1.0");
    assert_eq!(metadata["revision"], 2);
    let values = env.helm_json(&["get", "values", "kleidia-services"]);
    assert_eq!(
        values,
        serde_json::json!({"cleanup": {"schedule": "5 4 * * *"}})
    );
    let manifest = env.helm_ok(&["get", "manifest", "kleidia-services", "-n", "kleidia"]);
    assert!(
        manifest.contains("image: \"ghcr.io/kleidia/kleidia-backend:1.1.0\""),
        "{manifest}"
    );
    assert!(
        !manifest.contains("kleidia-services-migrate"),
        "hooks are not in the manifest"
    );
    assert_eq!(
        env.history("kleidia-services"),
        [
            (1, "superseded".into(), "Install complete".into()),
            (2, "deployed".into(), "Upgrade complete".into()),
        ]
    );
    let list = env.helm_json(&["list"]);
    let services = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "kleidia-services")
        .unwrap();
    assert_eq!(services["revision"], "2");
    assert_eq!(services["app_version"], "1.1.0");

    // Rollback to revision 1, waited for.
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
    env.assert_backend_rolled_out(":1.0.0", "rollback to 1");
    let history = env.history("kleidia-services");
    assert_eq!(history.len(), 3);
    assert_eq!(history[1].1, "superseded");
    assert_eq!(history[2], (3, "deployed".into(), "Rollback to 1".into()));
    assert_eq!(
        env.helm_json(&["get", "values", "kleidia-services"]),
        Value::Null,
        "revision 1 had no user values"
    );

    // Uninstall: the release's objects and records are gone.
    let out = env.helm_ok(&["uninstall", "kleidia-services", "-n", "kleidia", "--wait"]);
    assert_eq!(out, "release \"kleidia-services\" uninstalled\n");
    let left = env.kubectl.ok(&[
        "get",
        "deploy,svc,configmap,cronjob,job",
        "-n",
        "kleidia",
        "-l",
        "app.kubernetes.io/instance=kleidia-services",
        "-o",
        "name",
    ]);
    assert_eq!(left, "", "objects left after uninstall");
    assert_eq!(
        env.release_objects("secrets", "kleidia-services"),
        Vec::<String>::new()
    );
    let names: Vec<String> = env
        .helm_json(&["list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["kleidia-data", "kleidia-platform"]);
}

#[test]
fn lifecycle_helm_v3() {
    lifecycle(Major::V3);
}

#[test]
fn lifecycle_helm_v4() {
    lifecycle(Major::V4);
}

/// Data and services 1.0.0, installed with waiting by this helm.
fn data_and_services(env: &Env) {
    for release in ["kleidia-data", "kleidia-services"] {
        let out = env.install(release, "1.0.0");
        assert!(out.contains("STATUS: deployed"), "{out}");
    }
}

/// The broken set fails the upgrade; `--atomic` / `--rollback-on-failure`
/// rolls it back. Releases are kept in ConfigMaps (HELM_DRIVER=configmap).
fn failed_upgrade_rolls_back(major: Major) {
    let mut env = Env::start(major, false);
    env.driver = Some("configmap");
    data_and_services(&env);
    assert_eq!(
        env.release_objects("configmaps", "kleidia-services"),
        ["sh.helm.release.v1.kleidia-services.v1=deployed"]
    );
    assert_eq!(
        env.release_objects("secrets", "kleidia-services"),
        Vec::<String>::new()
    );

    let out = env.helm(&[
        "upgrade",
        "kleidia-services",
        &chart("1.1.0-broken", "kleidia-services"),
        "-n",
        "kleidia",
        major.atomic(),
        // Long enough for the migration hook, which works; the broken
        // backend never gets Ready.
        "--timeout",
        "15s",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("Error: UPGRADE FAILED: release kleidia-services failed, and ")
            && err.contains(major.rolled_back_because()),
        "{err}"
    );
    let history = env.history("kleidia-services");
    assert_eq!(history.len(), 3, "{history:?}");
    assert_eq!(history[1].1, "failed");
    assert_eq!(history[2], (3, "deployed".into(), "Rollback to 1".into()));
    assert_eq!(
        env.release_objects("configmaps", "kleidia-services"),
        [
            "sh.helm.release.v1.kleidia-services.v1=superseded",
            "sh.helm.release.v1.kleidia-services.v2=failed",
            "sh.helm.release.v1.kleidia-services.v3=deployed",
        ]
    );
    // The rollback was waited for: the working backend is back and Ready.
    env.assert_backend_rolled_out(":1.0.0", "the rollback of a failed upgrade");
    let status = env.helm_json(&["status", "kleidia-services"]);
    assert_eq!(status["info"]["status"], "deployed");
    assert_eq!(status["version"], 3);
}

#[test]
fn failed_upgrade_rolls_back_helm_v3() {
    failed_upgrade_rolls_back(Major::V3);
}

#[test]
fn failed_upgrade_rolls_back_helm_v4() {
    failed_upgrade_rolls_back(Major::V4);
}

/// A helm killed mid-upgrade leaves `pending-upgrade`; the next upgrade is
/// refused; a rollback to the last deployed revision recovers.
fn killed_upgrade_recovers_by_rollback(major: Major) {
    let env = Env::start(major, false);
    data_and_services(&env);
    let mut child = env
        .helm_cmd(&[
            "upgrade",
            "kleidia-services",
            &chart("1.1.0-broken", "kleidia-services"),
            "-n",
            "kleidia",
            major.wait(),
            "--timeout",
            "5m",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("real helm starts");
    // Kill it once it has applied the broken backend and is waiting for it.
    let store = &env.sb.shared().store;
    let started = Instant::now();
    loop {
        let pending = store
            .try_get(
                &registry::SECRETS,
                Some("kleidia"),
                "sh.helm.release.v1.kleidia-services.v2",
            )
            .is_some_and(|s| s["metadata"]["labels"]["status"] == "pending-upgrade");
        let applied = store
            .try_get(
                &registry::DEPLOYMENTS,
                Some("kleidia"),
                "kleidia-services-backend",
            )
            .is_some_and(|d| {
                d["spec"]["template"]["spec"]["containers"][0]["image"]
                    .as_str()
                    .is_some_and(|i| i.contains("broken"))
            });
        if pending && applied {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("helm upgrade ended ({status}) before it could be killed mid-upgrade");
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "helm upgrade did not reach its wait within 120 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().expect("SIGKILL helm");
    child.wait().unwrap();

    let history = env.history("kleidia-services");
    assert_eq!(
        history.last().unwrap(),
        &(2, "pending-upgrade".into(), "Preparing upgrade".into())
    );
    let out = env.helm(&[
        "upgrade",
        "kleidia-services",
        &chart("1.1.0", "kleidia-services"),
        "-n",
        "kleidia",
        major.wait(),
        "--timeout",
        "1m",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Error: UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress\n"
    );

    // The last deployed revision is 1: rolling back to it recovers.
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
    env.assert_backend_rolled_out(":1.0.0", "the rollback of a killed upgrade");
    let history = env.history("kleidia-services");
    assert_eq!(history[2], (3, "deployed".into(), "Rollback to 1".into()));
    // Unblocked: the next upgrade goes through.
    let out = env.install("kleidia-services", "1.1.0");
    assert!(out.contains("REVISION: 4"), "{out}");
    env.assert_backend_rolled_out(":1.1.0", "the upgrade after recovery");
}

#[test]
fn killed_upgrade_recovers_by_rollback_helm_v3() {
    killed_upgrade_recovers_by_rollback(Major::V3);
}

#[test]
fn killed_upgrade_recovers_by_rollback_helm_v4() {
    killed_upgrade_recovers_by_rollback(Major::V4);
}

/// A second services release asks for the node ports the first holds: the
/// API refuses it; without fixed ports it gets free ones.
fn second_services_release_and_node_ports(major: Major) {
    let env = Env::start_api_only(major);
    let chart = chart("1.0.0", "kleidia-services");
    env.helm_ok(&["install", "kleidia-services", &chart, "-n", "kleidia"]);
    let out = env.helm(&["install", "second", &chart, "-n", "kleidia"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    // Helm 3 creates the Services of one kind concurrently: either may be
    // the one it reports.
    assert!(
        err.contains(
            "Service \"second-backend\" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
        ) || err.contains(
            "Service \"second-frontend\" is invalid: spec.ports[0].nodePort: Invalid value: 30081: provided port is already allocated"
        ),
        "{err}"
    );
    env.helm_ok(&["uninstall", "second", "-n", "kleidia"]);
    let out = env.helm_ok(&[
        "install",
        "second",
        &chart,
        "-n",
        "kleidia",
        "--set",
        "backend.nodePort=null,frontend.nodePort=null",
    ]);
    assert!(out.contains("STATUS: deployed"), "{out}");
    let node_port = |svc: &str| -> u64 {
        env.kubectl.json(&["get", "svc", svc, "-n", "kleidia"])["spec"]["ports"][0]["nodePort"]
            .as_u64()
            .unwrap_or_else(|| panic!("{svc} has a nodePort"))
    };
    let backend = node_port("second-backend");
    let frontend = node_port("second-frontend");
    for p in [backend, frontend] {
        assert!(
            (30000..=32767).contains(&p) && p != 30080 && p != 30081,
            "{p}"
        );
    }
    assert_ne!(backend, frontend);
    // An upgrade keeps what was allocated (no hooks: this sandbox runs
    // no backend to migrate with).
    env.helm_ok(&[
        "upgrade",
        "second",
        &chart,
        "-n",
        "kleidia",
        "--no-hooks",
        "--reuse-values",
        "--set",
        "cleanup.schedule=1 1 * * *",
    ]);
    assert_eq!(node_port("second-backend"), backend);
    // Uninstalling the first release frees 30080.
    env.helm_ok(&["uninstall", "kleidia-services", "-n", "kleidia"]);
    env.kubectl.ok(&[
        "create",
        "service",
        "nodeport",
        "web",
        "-n",
        "kleidia",
        "--tcp=80:8080",
        "--node-port=30080",
    ]);
}

#[test]
fn second_services_release_and_node_ports_helm_v3() {
    second_services_release_and_node_ports(Major::V3);
}

#[test]
fn second_services_release_and_node_ports_helm_v4() {
    second_services_release_and_node_ports(Major::V4);
}
