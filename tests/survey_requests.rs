//! One survey per run: `versions` and `backup create` list Helm's release
//! records and the namespace's pods once each, counted at the sandbox.

mod support;

use support::{Cluster, ReleaseFixture, plugin};

#[test]
fn versions_and_backup_list_releases_and_pods_once() {
    let c = Cluster::start_with(Default::default());
    for (name, app) in [
        ("kleidia-platform", "2.4.1"),
        ("kleidia-data", "15.4"),
        ("kleidia-services", "1.0.0"),
    ] {
        c.store_release_secret("kleidia", &ReleaseFixture::new(name, 1, "1.0.0", app, ""));
    }
    let dir = tempfile::tempdir().unwrap();
    let runs: [(&str, Vec<&str>); 3] = [
        ("versions", vec!["versions", "--timeout", "10s"]),
        (
            "versions --history",
            vec!["versions", "--history", "--timeout", "10s"],
        ),
        (
            "backup create",
            vec![
                "backup",
                "--components",
                "values",
                "--timeout",
                "10s",
                "--dir",
                dir.path().to_str().unwrap(),
            ],
        ),
    ];
    for (what, args) in runs {
        c.sandbox.reset_requests();
        let out = plugin("kubectl-kleidia")
            .args(&args)
            .arg("--kubeconfig")
            .arg(c.kubeconfig())
            .output()
            .unwrap();
        let counts = c.sandbox.requests();
        let secret_lists =
            counts.count_where(|r| r.key.verb == "list" && r.key.resource == "secrets");
        let pod_lists = counts.count("list", "pods");
        assert_eq!(
            secret_lists,
            1,
            "{what} listed release records {secret_lists} times: {counts:?}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            pod_lists, 1,
            "{what} listed pods {pod_lists} times: {counts:?}"
        );
        // It did read the deployment (the lists are not just absent).
        assert!(counts.count("get", "secrets") + secret_lists >= 1);
    }
}
