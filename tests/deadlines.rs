//! Nothing waits forever: with `--request-timeout` unset, a sandbox that
//! stops answering (latency far above the 30 s default request limit)
//! makes `versions` and `backup` end within their own deadline, saying what
//! did not answer.

mod support;

use std::time::{Duration, Instant};

use kleidia_sandbox::faults::FaultSettings;
use support::{Cluster, ReleaseFixture, plugin};

fn cluster_with_releases() -> Cluster {
    let c = Cluster::start_with(Default::default());
    for (name, app) in [
        ("kleidia-platform", "2.4.1"),
        ("kleidia-data", "15.4"),
        ("kleidia-services", "1.0.0"),
    ] {
        c.store_release_secret("kleidia", &ReleaseFixture::new(name, 1, "1.0.0", app, ""));
    }
    c
}

/// Runs the plugin and returns (exit code, stderr, wall time).
fn run(c: &Cluster, args: &[&str]) -> (Option<i32>, String, Duration) {
    let started = Instant::now();
    let out = plugin("kubectl-kleidia")
        .args(args)
        .arg("--kubeconfig")
        .arg(c.kubeconfig())
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        started.elapsed(),
    )
}

#[test]
fn a_silent_api_server_ends_versions_and_backup_within_their_deadline() {
    let c = cluster_with_releases();
    // Every request waits ten minutes: far beyond any default.
    c.sandbox.faults().set(FaultSettings {
        latency_ms: 600_000,
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["versions", "--timeout", "4s"],
        vec![
            "backup",
            "--timeout",
            "4s",
            "--dir",
            dir.path().to_str().unwrap(),
        ],
    ] {
        let (code, stderr, took) = run(&c, &args);
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        // Bounded by the command's deadline, not by the server (the bound
        // here is generous; the point is that it ends at all).
        assert!(took < Duration::from_secs(60), "{args:?} took {took:?}");
        assert!(
            stderr.contains("timed out after 4s")
                && stderr.contains("list secrets in namespace kleidia")
                && stderr.contains(
                    &c.sandbox
                        .url()
                        .to_string()
                        .trim_end_matches('/')
                        .to_string()
                ),
            "{args:?} does not say what did not answer: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // No bundle was left behind.
    assert_eq!(
        std::fs::read_dir(dir.path())
            .map(|d| d.count())
            .unwrap_or(0),
        0
    );
}

#[test]
fn a_slow_pod_list_marks_only_what_needs_pods() {
    let c = cluster_with_releases();
    // Only the pod list is stuck; release records still answer.
    c.sandbox.faults().set(FaultSettings {
        latency_ms: 600_000,
        path_contains: Some("/api/v1/namespaces/kleidia/pods".into()),
        ..Default::default()
    });
    let started = Instant::now();
    let out = plugin("kubectl-kleidia")
        .args(["versions", "-o", "json", "--timeout", "3s", "--kubeconfig"])
        .arg(c.kubeconfig())
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["components"][0]["chartVersion"], "1.0.0");
    let pg = report["servers"]["postgresql"]["error"].as_str().unwrap();
    assert!(
        pg.contains("listing pods in namespace kleidia") && pg.contains("no answer within 3s"),
        "{pg}"
    );
}
