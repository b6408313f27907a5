//! The binaries' command line, without a cluster: the command tree, version,
//! completion, commands that are not built yet, and target errors that are
//! decided before any request (unknown context, unreachable API server).

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use assert_cmd::Command;
use predicates::prelude::*;

const BINS: [&str; 2] = ["kubectl-kleidia", "helm-kleidia"];

fn bin(name: &str) -> Command {
    let mut c = Command::cargo_bin(name).unwrap();
    // Keep the operator's own environment out of the tests.
    for v in [
        "KUBECONFIG",
        "HELM_NAMESPACE",
        "HELM_KUBECONTEXT",
        "HELM_BIN",
        "HELM_DRIVER",
        "HELM_DEBUG",
    ] {
        c.env_remove(v);
    }
    c.env("HOME", "/nonexistent-home")
        .env("XDG_CONFIG_HOME", "/nonexistent-home/.config");
    c
}

fn kubeconfig(dir: &Path, server: &str) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: '{server}', insecure-skip-tls-verify: true}}\nusers:\n- name: u\n  user: {{token: not-a-real-token}}\ncontexts:\n- name: lab\n  context: {{cluster: c, user: u, namespace: kleidia}}\ncurrent-context: lab\n"
        ),
    )
    .unwrap();
    path
}

#[test]
fn both_binaries_share_one_command_tree() {
    for b in BINS {
        let out = bin(b).arg("--help").assert().success();
        let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
        for cmd in [
            "preflight",
            "backup",
            "upgrade",
            "rollback",
            "versions",
            "completion",
        ] {
            assert!(text.contains(cmd), "{b} --help lacks {cmd}:\n{text}");
        }
        bin(b)
            .arg("--version")
            .assert()
            .success()
            .stdout(predicate::str::contains(env!("CARGO_PKG_VERSION")));
    }
}

#[test]
fn completion_scripts_name_the_binary() {
    for b in BINS {
        bin(b)
            .args(["completion", "bash"])
            .assert()
            .success()
            .stdout(predicate::str::contains(b).and(predicate::str::contains("versions")));
    }
    bin("kubectl-kleidia")
        .args(["completion", "zsh"])
        .assert()
        .success()
        .stdout(predicate::str::contains("#compdef kubectl-kleidia"));
}

#[test]
fn backup_list_verify_and_prune_need_no_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin("kubectl-kleidia")
        .args(["backup", "list", "--dir"])
        .arg(dir.path())
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .assert()
        .code(0);
    assert!(String::from_utf8_lossy(&out.get_output().stdout).contains("no bundles"));
    bin("helm-kleidia")
        .args(["backup", "prune", "--keep", "2", "--dir"])
        .arg(dir.path())
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .assert()
        .code(0);
    // A missing bundle is reported as such, not as an unreachable cluster.
    bin("kubectl-kleidia")
        .args(["backup", "verify"])
        .arg(dir.path().join("nothing-here"))
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("nothing-here"))
        .stderr(predicate::str::contains("kubeconfig").not());
}

#[test]
fn usage_errors_exit_2() {
    bin("kubectl-kleidia")
        .args(["versions", "-o", "xml"])
        .assert()
        .code(2);
    bin("kubectl-kleidia").arg("frobnicate").assert().code(2);
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig(dir.path(), "https://127.0.0.1:9");
    bin("kubectl-kleidia")
        .args(["versions", "--timeout", "soon", "--kubeconfig"])
        .arg(&kc)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--timeout"));
    bin("kubectl-kleidia")
        .args(["versions", "--request-timeout", "5 parsecs", "--kubeconfig"])
        .arg(&kc)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--request-timeout"));
    let bad = dir.path().join("config.yaml");
    std::fs::write(&bad, "postgress: {user: x}\n").unwrap();
    bin("kubectl-kleidia")
        .args(["versions", "--kubeconfig"])
        .arg(&kc)
        .arg("--config")
        .arg(&bad)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("config.yaml").and(predicate::str::contains("postgress")));
    bin("helm-kleidia")
        .args(["versions", "--kubeconfig"])
        .arg(&kc)
        .env("HELM_DRIVER", "sql")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("HELM_DRIVER=\"sql\""));
}

#[test]
fn unknown_context_names_the_available_ones() {
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig(dir.path(), "https://127.0.0.1:9");
    bin("kubectl-kleidia")
        .args(["versions", "--context", "prod"])
        .env("KUBECONFIG", &kc)
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("\"prod\"")
                .and(predicate::str::contains("lab"))
                .and(predicate::str::contains("--context")),
        );
    // helm-kleidia reads it from HELM_KUBECONTEXT.
    bin("helm-kleidia")
        .args(["versions"])
        .env("KUBECONFIG", &kc)
        .env("HELM_KUBECONTEXT", "staging")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("\"staging\""));
}

#[test]
fn missing_kubeconfig_says_where_it_looked() {
    bin("kubectl-kleidia")
        .args(["versions", "--kubeconfig", "/nonexistent/kc"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("/nonexistent/kc"));
}

#[test]
fn unreachable_api_fails_within_the_timeout_naming_the_server() {
    // A port nothing listens on: bind, note it, close.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let server = format!("https://127.0.0.1:{port}");
    let kc = kubeconfig(dir.path(), &server);
    bin("kubectl-kleidia")
        .args(["versions", "--timeout", "5s", "--kubeconfig"])
        .arg(&kc)
        .timeout(Duration::from_secs(60))
        .assert()
        .code(1)
        .stderr(predicate::str::contains(server.as_str()).and(predicate::str::contains("reach")));

    // A server that accepts but never answers: the overall timeout ends it.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = format!("https://127.0.0.1:{}", silent.local_addr().unwrap().port());
    let kc = kubeconfig(dir.path(), &server);
    bin("kubectl-kleidia")
        .args(["versions", "--timeout", "2s", "--kubeconfig"])
        .arg(&kc)
        .timeout(Duration::from_secs(60))
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains(server.as_str()).and(predicate::str::contains("timed out")),
        );
    drop(silent);
}
