//! The servers behind an upgrade, through the demo charts, the sandbox's
//! helm and real kubectl: OpenBao's version follows the image once its
//! `OnDelete` pod is deleted, raft data written by one version starts and
//! unseals under the other (upgrade and rollback), file storage still runs;
//! PostgreSQL refuses a data directory of another major with its own
//! message and crash-loops, and a major this machine cannot run says so.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kleidia_sandbox::demo::real_runtimes;
use kleidia_sandbox::runtimes::openbao::OpenBaoStorage;
use kleidia_sandbox::server::{Sandbox, SandboxOptions};
use serde_json::Value;
use support::{Kubectl, chart, helm_bin, stdout_of};

const NS: &str = "kleidia";
const BAO_POD: &str = "kleidia-platform-openbao-0";
const PG_POD: &str = "kleidia-data-postgres-cluster-0";

struct Env {
    sandbox: Sandbox,
    k: Kubectl,
}

impl Env {
    fn start(storage: OpenBaoStorage) -> Env {
        helm_bin();
        support::kubectl_bin();
        let sandbox = Sandbox::start(SandboxOptions {
            runtimes: real_runtimes(storage),
            pod_ready_delay: Duration::from_millis(100),
            ..SandboxOptions::default()
        })
        .expect("sandbox starts");
        let k = Kubectl::new(&sandbox);
        Env { sandbox, k }
    }

    /// The sandbox's helm against this sandbox; fails the test unless it
    /// succeeds.
    fn helm(&self, args: &[&str]) -> String {
        let out = Command::new(helm_bin())
            .args(args)
            .env("KUBECONFIG", self.sandbox.kubeconfig_path())
            .env("HOME", self.sandbox.data_dir())
            .env_remove("HELM_NAMESPACE")
            .env_remove("HELM_DRIVER")
            .stdin(Stdio::null())
            .output()
            .expect("run sandbox/helm/helm");
        stdout_of(&format!("helm {args:?}"), out)
    }

    fn pod(&self, name: &str) -> Value {
        self.k.json(&["get", "pod", name, "-n", NS])
    }

    /// Polls `f` every 200 ms for up to three minutes.
    fn until<T>(&self, what: &str, mut f: impl FnMut(&Env) -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if let Some(v) = f(self) {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Deletes `pod` as an operator does (the way an `OnDelete` set
    /// moves) and waits until its replacement is Ready.
    fn replace_pod(&self, pod: &str) {
        let old = self.pod(pod)["metadata"]["uid"].clone();
        self.k.ok(&["delete", "pod", pod, "-n", NS]);
        self.until(&format!("a new {pod}"), |e| {
            let out = e.k.run(&["get", "pod", pod, "-n", NS, "-o", "json"]);
            let p: Value = serde_json::from_slice(&out.stdout).ok()?;
            (p["metadata"]["uid"] != old).then_some(())
        });
        self.wait_ready(pod);
    }

    /// `kubectl wait` for `pod` to be Ready. Helm's `--wait` does not wait
    /// for an `OnDelete` StatefulSet's pods (as on a real cluster).
    fn wait_ready(&self, pod: &str) {
        self.until(&format!("{pod} to exist"), |e| {
            e.k.run(&["get", "pod", pod, "-n", NS])
                .status
                .success()
                .then_some(())
        });
        self.k.ok(&[
            "wait",
            &format!("pod/{pod}"),
            "-n",
            NS,
            "--for=condition=Ready",
            "--timeout=180s",
        ]);
    }

    /// OpenBao's own `sys/seal-status`, through the API server's pod proxy.
    fn seal_status(&self) -> Value {
        let raw = self.k.ok(&[
            "get",
            "--raw",
            &format!("/api/v1/namespaces/{NS}/pods/{BAO_POD}:8200/proxy/v1/sys/seal-status"),
        ]);
        serde_json::from_str(&raw).unwrap()
    }

    /// `bao <args>` in the OpenBao pod (its HOME keeps the login token).
    fn bao(&self, args: &[&str]) -> String {
        let mut all = vec!["exec", BAO_POD, "-n", NS, "--", "bao"];
        all.extend_from_slice(args);
        self.k.ok(&all)
    }

    /// `bao login` in the OpenBao pod with the root token on standard
    /// input (never a process argument), as an operator would type it.
    fn bao_login(&self) {
        let root = self
            .sandbox
            .shared()
            .container_dir(NS, BAO_POD, "openbao")
            .join("root");
        let token = kleidia_sandbox::runtimes::openbao::root_token_at(&root)
            .expect("the runtime kept the root token");
        let mut child = self
            .k
            .cmd(&[
                "exec",
                "-i",
                BAO_POD,
                "-n",
                NS,
                "--",
                "bao",
                "login",
                "-no-print",
                "-",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{token}\n").as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "bao login failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The OpenBao pod's log.
    fn bao_log(&self) -> String {
        self.k.ok(&["logs", BAO_POD, "-n", NS])
    }

    fn sts_status(&self, name: &str) -> Value {
        self.k.json(&["get", "sts", name, "-n", NS])["status"].clone()
    }
}

/// The first line of `bao version`: `OpenBao v2.7.2 (...)`.
fn version_line(out: &str) -> String {
    out.lines().next().unwrap_or_default().to_string()
}

#[test]
fn openbao_raft_moves_between_versions_with_the_image() {
    let env = Env::start(OpenBaoStorage::Raft);
    let platform = "kleidia-platform";
    env.helm(&[
        "install",
        platform,
        &chart("1.0.0", platform),
        "-n",
        NS,
        "--wait",
        "--timeout",
        "3m",
    ]);
    env.wait_ready(BAO_POD);
    let status = env.seal_status();
    assert_eq!(status["version"], "2.6.2", "1.0.0 ships OpenBao 2.6.2");
    assert_eq!(status["sealed"], false);
    assert_eq!(status["storage_type"], "raft");
    assert!(version_line(&env.bao(&["version"])).starts_with("OpenBao v2.6.2 "));
    assert!(
        env.bao_log().contains("image tag 2.6.2: OpenBao 2.6.2"),
        "{}",
        env.bao_log()
    );

    env.bao_login();
    env.bao(&["secrets", "enable", "-path=secret", "kv-v2"]);
    env.bao(&["kv", "put", "secret/kleidia", "answer=42"]);
    let uid = env.pod(BAO_POD)["metadata"]["uid"].clone();

    // helm upgrade alone restarts nothing: the set is OnDelete.
    env.helm(&[
        "upgrade",
        platform,
        &chart("1.1.0", platform),
        "-n",
        NS,
        "--wait",
        "--timeout",
        "3m",
    ]);
    let sts = env.sts_status("kleidia-platform-openbao");
    assert_ne!(sts["currentRevision"], sts["updateRevision"], "{sts}");
    assert!(sts.get("updatedReplicas").is_none(), "{sts}");
    assert_eq!(env.pod(BAO_POD)["metadata"]["uid"], uid);
    assert_eq!(env.seal_status()["version"], "2.6.2");

    // The operator deletes the pod: it comes back on 2.7.2 with the data
    // 2.6.2 wrote, unsealed by the kept static key.
    env.replace_pod(BAO_POD);
    let status = env.seal_status();
    assert_eq!(status["version"], "2.7.2");
    assert_eq!(status["sealed"], false);
    assert_eq!(status["initialized"], true);
    assert!(version_line(&env.bao(&["version"])).starts_with("OpenBao v2.7.2 "));
    assert_eq!(
        env.bao(&["kv", "get", "-field=answer", "secret/kleidia"])
            .trim(),
        "42"
    );
    env.bao(&["kv", "put", "secret/kleidia", "answer=43"]);
    let sts = env.sts_status("kleidia-platform-openbao");
    assert_eq!(sts["currentRevision"], sts["updateRevision"], "{sts}");

    // Rollback: again nothing moves until the pod is deleted. Then 2.6.2
    // starts on the raft data 2.7.2 wrote and unseals, but, as the real one
    // does, never becomes active (OpenBao makes no downgrade guarantee): its
    // pod is Ready for the charts' `standbyok` probe, and every request that
    // needs the active node fails.
    env.helm(&[
        "rollback",
        platform,
        "1",
        "-n",
        NS,
        "--wait",
        "--timeout",
        "3m",
    ]);
    assert_eq!(env.seal_status()["version"], "2.7.2");
    env.replace_pod(BAO_POD);
    let status = env.seal_status();
    assert_eq!(status["version"], "2.6.2");
    assert_eq!(status["sealed"], false);
    assert_eq!(status["initialized"], true);
    let health = env.k.run(&[
        "get",
        "--raw",
        &format!("/api/v1/namespaces/{NS}/pods/{BAO_POD}:8200/proxy/v1/sys/health"),
    ]);
    assert!(!health.status.success(), "a standby answers 429");
    let out = env.k.run(&[
        "exec",
        BAO_POD,
        "-n",
        NS,
        "--",
        "bao",
        "kv",
        "get",
        "-field=answer",
        "secret/kleidia",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("local node not active but active cluster node not found"),
        "{err}"
    );
    let log = env.bao_log();
    assert!(
        log.contains("post-unseal setup failed"),
        "OpenBao's own reason is in the pod log: {log}"
    );

    // Rolling forward again: 2.7.2 is active on the same data, nothing lost.
    env.helm(&[
        "upgrade",
        platform,
        &chart("1.1.0", platform),
        "-n",
        NS,
        "--wait",
        "--timeout",
        "3m",
    ]);
    env.replace_pod(BAO_POD);
    let status = env.seal_status();
    assert_eq!(status["version"], "2.7.2");
    assert_eq!(status["sealed"], false);
    assert_eq!(
        env.bao(&["kv", "get", "-field=answer", "secret/kleidia"])
            .trim(),
        "43"
    );
}

#[test]
fn openbao_file_storage_runs_the_last_version_that_has_it() {
    let env = Env::start(OpenBaoStorage::File);
    let platform = "kleidia-platform";
    env.helm(&[
        "install",
        platform,
        &chart("1.1.0", platform),
        "-n",
        NS,
        "--wait",
        "--timeout",
        "3m",
    ]);
    env.wait_ready(BAO_POD);
    let status = env.seal_status();
    assert_eq!(status["storage_type"], "file");
    assert_eq!(status["version"], "2.6.2");
    assert_eq!(status["sealed"], false);
    let log = env.bao_log();
    assert!(
        log.contains(
            "image tag 2.7.2: OpenBao 2.6.2, the last version with the `file` storage backend"
        ),
        "{log}"
    );
    env.bao_login();
    env.bao(&["secrets", "enable", "-path=secret", "kv-v2"]);
    env.bao(&["kv", "put", "secret/kleidia", "answer=42"]);
    env.replace_pod(BAO_POD);
    assert_eq!(env.seal_status()["sealed"], false);
    assert_eq!(
        env.bao(&["kv", "get", "-field=answer", "secret/kleidia"])
            .trim(),
        "42"
    );
}

/// The postgres container's status in `pod`.
fn pg_status(env: &Env, pod: &str) -> Value {
    env.pod(pod)["status"]["containerStatuses"][0].clone()
}

/// Waits until `pod`'s container is in CrashLoopBackOff after exiting with
/// code 1 at least `restarts` times; returns its status.
fn crash_looping(env: &Env, pod: &str, restarts: u64) -> Value {
    env.until(&format!("{pod} to crash-loop"), |e| {
        let s = pg_status(e, pod);
        (s["state"]["waiting"]["reason"] == "CrashLoopBackOff"
            && s["restartCount"].as_u64()? >= restarts
            && s["lastState"]["terminated"]["exitCode"] == 1)
            .then_some(s)
    })
}

#[test]
fn postgresql_refuses_a_data_directory_of_another_major() {
    let env = Env::start(OpenBaoStorage::Raft);
    let data = "kleidia-data";
    env.helm(&[
        "install",
        data,
        &chart("1.1.0", data),
        "-n",
        NS,
        "--wait",
        "--timeout",
        "3m",
    ]);
    env.k.demo_psql(&[
        "-c",
        "CREATE TABLE keep (v int); INSERT INTO keep VALUES (7);",
    ]);

    // 2.0.0 moves the image to postgres:16.4: the new server meets the data
    // directory 15 wrote and exits, again and again.
    env.helm(&["upgrade", data, &chart("2.0.0-pg16", data), "-n", NS]);
    let s = crash_looping(&env, PG_POD, 2);
    assert_eq!(s["image"], "docker.io/library/postgres:16.4");
    assert_eq!(s["ready"], false);
    let logs = env.k.ok(&["logs", PG_POD, "-n", NS]);
    assert!(
        logs.contains(" FATAL:  database files are incompatible with server\n"),
        "{logs}"
    );
    assert!(
        logs.contains(
            " DETAIL:  The data directory was initialized by PostgreSQL version 15, which is not compatible with this version 16.4.\n"
        ),
        "{logs}"
    );
    let table = env.k.ok(&["get", "pod", PG_POD, "-n", NS]);
    assert!(table.contains("CrashLoopBackOff"), "{table}");
    // It keeps restarting.
    let seen = s["restartCount"].as_u64().unwrap();
    crash_looping(&env, PG_POD, seen + 1);
    // The 15 data directory is untouched.
    let pg_version = env
        .sandbox
        .shared()
        .container_dir(NS, PG_POD, "postgres")
        .join("root/var/lib/postgresql/data/pgdata/PG_VERSION");
    assert_eq!(std::fs::read_to_string(pg_version).unwrap().trim(), "15");

    // Rolling the chart back does not replace a pod that never got ready
    // (as on a real cluster): the operator deletes it, and 15.6 finds its
    // rows again.
    env.helm(&["rollback", data, "1", "-n", NS]);
    env.replace_pod(PG_POD);
    assert_eq!(
        pg_status(&env, PG_POD)["image"],
        "docker.io/library/postgres:15.6"
    );
    assert_eq!(env.k.demo_psql(&["-tAc", "SELECT v FROM keep"]).trim(), "7");
}

#[test]
fn postgresql_images_by_tag_on_fresh_data() {
    let env = Env::start(OpenBaoStorage::Raft);
    // A major this machine has no server for: a clear message, and the
    // container exits like any failing one.
    env.k
        .ok(&["run", "pg16", "-n", NS, "--image=postgres:16-alpine"]);
    crash_looping(&env, "pg16", 1);
    let logs = env.k.ok(&["logs", "pg16", "-n", NS]);
    assert!(
        logs.contains(
            "sandbox: image postgres:16-alpine needs a PostgreSQL 16 server and this machine has none (installed majors: "
        ),
        "{logs}"
    );
    assert!(
        logs.contains("install Debian's postgresql-16 package"),
        "{logs}"
    );

    // No number in the tag, or the installed major: a working server.
    let installed = kleidia_sandbox::runtimes::postgres::installed_servers();
    let major = installed
        .last()
        .expect("scripts/setup installed PostgreSQL")
        .0
        .clone();
    for (name, image) in [
        ("pglatest", "postgres".to_string()),
        ("pgmajor", format!("postgres:{major}-alpine")),
    ] {
        env.k
            .ok(&["run", name, "-n", NS, &format!("--image={image}")]);
        env.k.ok(&[
            "wait",
            &format!("pod/{name}"),
            "-n",
            NS,
            "--for=condition=Ready",
            "--timeout=180s",
        ]);
        let v = env.k.ok(&[
            "exec",
            name,
            "-n",
            NS,
            "--",
            "psql",
            "-U",
            "postgres",
            "-tAc",
            "SHOW server_version",
        ]);
        assert!(v.trim().starts_with(&format!("{major}.")), "{image}: {v}");
    }
}
