//! Service DNS names inside sandbox pods, with real kubectl and the real
//! PostgreSQL clients: `pg_isready -h` and `psql -h` given a Service's
//! short name, `<svc>.<ns>`, `<svc>.<ns>.svc`, its full name or its
//! cluster IP reach the real server behind the Service (selector -> ready
//! pod -> its PostgreSQL); names of no Service fail as a resolver fails
//! them; a Service without ready pods resets connections.

mod support;

use std::time::{Duration, Instant};

use kleidia_sandbox::demo::real_runtimes;
use kleidia_sandbox::runtimes::openbao::OpenBaoStorage;
use kleidia_sandbox::server::{Sandbox, SandboxOptions};
use support::{Kubectl, chart, helm_bin, stdout_of};

const NS: &str = "kleidia";
const DB_POD: &str = "kleidia-data-postgres-cluster-0";
const SVC: &str = "kleidia-data-postgres-cluster";

fn start() -> (Sandbox, Kubectl) {
    helm_bin();
    support::kubectl_bin();
    let sandbox = Sandbox::start(SandboxOptions {
        runtimes: real_runtimes(OpenBaoStorage::File),
        pod_ready_delay: Duration::from_millis(100),
        ..SandboxOptions::default()
    })
    .expect("sandbox starts");
    let home = sandbox.data_dir().join("helm-home");
    let out = std::process::Command::new(helm_bin())
        .args(["install", "kleidia-data", &chart("1.0.0", "kleidia-data")])
        .args(["-n", NS, "--wait", "--timeout", "3m"])
        .env("KUBECONFIG", sandbox.kubeconfig_path())
        .env("HOME", home)
        .env_remove("HELM_NAMESPACE")
        .env_remove("HELM_DRIVER")
        .output()
        .unwrap();
    stdout_of("helm install kleidia-data", out);
    let kubectl = Kubectl::new(&sandbox);
    (sandbox, kubectl)
}

/// `script` by `sh -c` in the PostgreSQL pod.
fn sh(k: &Kubectl, script: &str) -> std::process::Output {
    k.run(&["exec", DB_POD, "-n", NS, "--", "sh", "-c", script])
}

/// Waits until pod `name` in `ns` has finished; returns its phase.
fn finished_phase(k: &Kubectl, ns: &str, name: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let phase = k.ok(&[
            "get",
            "pod",
            name,
            "-n",
            ns,
            "-o",
            "jsonpath={.status.phase}",
        ]);
        if phase == "Succeeded" || phase == "Failed" {
            return phase;
        }
        assert!(
            Instant::now() < deadline,
            "pod {ns}/{name} still {phase} after 60 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn service_names_reach_the_server_behind_the_service() {
    let (_sandbox, k) = start();
    k.demo_psql(&[
        "-c",
        "CREATE TABLE dns_probe (v text); INSERT INTO dns_probe VALUES ('behind the service')",
    ]);
    let cluster_ip = k.ok(&[
        "get",
        "service",
        SVC,
        "-n",
        NS,
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    let names = [
        SVC.to_string(),
        format!("{SVC}.{NS}"),
        format!("{SVC}.{NS}.svc"),
        format!("{SVC}.{NS}.svc.cluster.local"),
        cluster_ip,
    ];
    for name in &names {
        // pg_isready run directly by exec, as readiness checks run it.
        let ready = k.ok(&[
            "exec",
            DB_POD,
            "-n",
            NS,
            "--",
            "pg_isready",
            "-h",
            name,
            "-p",
            "5432",
        ]);
        assert_eq!(ready, format!("{name}:5432 - accepting connections\n"));
        // psql over TCP with the password from the pod's environment: the
        // real server's password authentication, and its data.
        let out = sh(
            &k,
            &format!(
                "PGPASSWORD=\"$POSTGRES_PASSWORD\" psql -h {name} -U yubiuser -d kleidia -tAc 'SELECT v FROM dns_probe'"
            ),
        );
        assert_eq!(
            stdout_of(&format!("psql -h {name}"), out),
            "behind the service\n"
        );
    }

    // Over TCP, the server wants the password, as the Service's clients see.
    let out = k.run(&[
        "exec", DB_POD, "-n", NS, "--", "psql", "-h", SVC, "-U", "yubiuser", "-d", "kleidia", "-c",
        "SELECT 1",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("connection to server at \"{SVC}\" (127."))
            && err.contains("fe_sendauth: no password supplied"),
        "{err}"
    );

    // Names of no Service fail in the resolver.
    let out = k.run(&[
        "exec",
        DB_POD,
        "-n",
        NS,
        "--",
        "pg_isready",
        "-h",
        "nosuch",
        "-p",
        "5432",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "nosuch:5432 - no response\n"
    );
    let unknown = "nosuch.kleidia.svc.cluster.local";
    let out = k.run(&[
        "exec", DB_POD, "-n", NS, "--", "psql", "-h", unknown, "-U", "yubiuser", "-c", "SELECT 1",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "psql: error: could not translate host name \"{unknown}\" to address"
        )),
        "{err}"
    );

    // A Service whose selector matches no pod resolves, but nothing
    // answers behind it.
    k.ok(&[
        "create",
        "service",
        "clusterip",
        "nobody",
        "-n",
        NS,
        "--tcp=5432:5432",
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let err = loop {
        let out = sh(
            &k,
            "PGPASSWORD=x psql -h nobody -U yubiuser -d kleidia -c 'SELECT 1'",
        );
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        if !err.contains("could not translate") || Instant::now() > deadline {
            break err;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        err.contains("connection to server at \"nobody\" (127.")
            && !err.contains("could not translate"),
        "{err}"
    );
}

#[test]
fn pods_resolve_names_with_their_namespace_search_path() {
    let (_sandbox, k) = start();
    // A pod in namespace default that waits for PostgreSQL like the
    // migration hook does, then checks that the short name (which means
    // a Service in its own namespace) does not resolve.
    let manifest = k.file(
        "client.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: dns-client
  namespace: default
spec:
  restartPolicy: Never
  initContainers:
    - name: client
      image: docker.io/library/postgres:15-alpine
      command:
        - sh
        - -c
        - |
          until pg_isready -h {SVC}.{NS} -p 5432 -t 2; do sleep 1; done
          pg_isready -h {SVC}.{NS}.svc.cluster.local -p 5432
          pg_isready -h {SVC} -p 5432 -t 2
          echo "short name: exit $?"
  containers:
    - name: done
      image: busybox:1.36
      command: ["true"]
"#
        ),
    );
    k.ok(&["apply", "-f", &manifest]);
    assert_eq!(finished_phase(&k, "default", "dns-client"), "Succeeded");
    let log = k.ok(&["logs", "dns-client", "-n", "default", "-c", "client"]);
    assert!(
        log.contains(&format!("{SVC}.{NS}:5432 - accepting connections\n"))
            && log.contains(&format!(
                "{SVC}.{NS}.svc.cluster.local:5432 - accepting connections\n"
            ))
            && log.contains(&format!("{SVC}:5432 - no response\nshort name: exit 2\n")),
        "{log}"
    );
}
