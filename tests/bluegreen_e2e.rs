//! Blue-green upgrades of the services end to end with the real Helm 4 CLI
//! against a sandbox running the demo (real PostgreSQL and OpenBao): green
//! installed beside blue on free NodePorts and gated, blue unchanged,
//! `--promote` leaving only green; a taken port refused naming its
//! Service; `versions` showing green and its health.

mod support;

use serde_json::Value;
use support::{
    Cluster, backend_pods, demo_charts as charts, kleidia_on as kleidia, kubectl, outputs as out,
    real_helm, release_revisions as revisions,
};

const NS: &str = "kleidia";

fn json(c: &Cluster, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-n", NS, "-o", "json"]);
    let o = kubectl(c.kubeconfig(), &all);
    assert!(o.status.success(), "kubectl {args:?}: {:?}", o);
    serde_json::from_slice(&o.stdout).unwrap()
}

fn node_port(c: &Cluster, service: &str) -> u64 {
    json(c, &["get", "svc", service])["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .unwrap()
}

#[test]
fn blue_green_with_helm_v4_installs_green_beside_blue_then_promotes() {
    let helm = real_helm("helm-v4");
    let c = Cluster::start_demo(&helm, "1.0.0");
    let home = tempfile::tempdir().unwrap();
    let blue_pods = backend_pods(&c, "kleidia-services");
    assert_eq!(blue_pods.len(), 1, "{blue_pods:?}");

    // Nothing to promote or abort yet.
    for action in ["--promote", "--abort"] {
        let a = kleidia(&c, &helm, home.path())
            .args(["upgrade", action, "-y"])
            .assert()
            .code(2);
        let (_, err) = out(&a);
        assert!(
            err.contains("there is no green release kleidia-services-green in namespace kleidia"),
            "{err}"
        );
    }

    // Asking for blue's own port is refused before anything is installed,
    // naming the Service that holds it.
    let a = kleidia(&c, &helm, home.path())
        .args([
            "upgrade",
            "--strategy",
            "blue-green",
            "--charts",
            &charts("1.1.0"),
            "--green-ports",
            "30080,30191",
            "-y",
            "--no-backup",
        ])
        .assert()
        .code(2);
    let (_, err) = out(&a);
    assert!(
        err.contains(
            "NodePort 30080 (backend) is already allocated to Service kleidia/kleidia-services-backend"
        ),
        "{err}"
    );
    assert!(revisions(&c, "kleidia-services-green").is_empty());

    // A dry run shows the ports it would use and installs nothing.
    let a = kleidia(&c, &helm, home.path())
        .args([
            "upgrade",
            "--strategy",
            "blue-green",
            "--charts",
            &charts("1.1.0"),
            "--dry-run",
        ])
        .assert()
        .success();
    let (plan, _) = out(&a);
    assert!(
        plan.contains("backend 30080, frontend 30081")
            && plan.contains("backend 30180, frontend 30181"),
        "{plan}"
    );
    assert!(revisions(&c, "kleidia-services-green").is_empty());

    // The blue-green upgrade: green healthy on the free ports next to blue.
    let a = kleidia(&c, &helm, home.path())
        .args([
            "upgrade",
            "--strategy",
            "blue-green",
            "--charts",
            &charts("1.1.0"),
            "-y",
            "--no-backup",
        ])
        .assert()
        .success();
    let (stdout, stderr) = out(&a);
    assert!(
        stdout.contains("green kleidia-services-green is healthy beside blue kleidia-services"),
        "{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains(":30180/api/health") && stdout.contains(":30181/"),
        "{stdout}"
    );
    assert!(
        stdout.contains("kubectl kleidia upgrade --promote -n kleidia")
            && stdout.contains("kubectl kleidia upgrade --abort -n kleidia"),
        "{stdout}"
    );
    assert!(
        stderr.contains("ok: /api/health 200 with version 1.1.0"),
        "green was gated on its own backend: {stderr}"
    );
    assert_eq!(revisions(&c, "kleidia-services"), [(1, "deployed".into())]);
    assert_eq!(
        revisions(&c, "kleidia-services-green"),
        [(1, "deployed".into())]
    );
    assert_eq!(
        backend_pods(&c, "kleidia-services"),
        blue_pods,
        "blue's pods untouched"
    );
    assert_eq!(node_port(&c, "kleidia-services-backend"), 30080);
    assert_eq!(node_port(&c, "kleidia-services-frontend"), 30081);
    assert_eq!(node_port(&c, "kleidia-services-green-backend"), 30180);
    assert_eq!(node_port(&c, "kleidia-services-green-frontend"), 30181);
    let green_pods = backend_pods(&c, "kleidia-services-green");
    let image = json(&c, &["get", "pod", &green_pods[0]])["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(image.ends_with(":1.1.0"), "{image}");

    // versions shows green and its backend's health.
    let a = kleidia(&c, &helm, home.path())
        .args(["versions", "-o", "json"])
        .assert()
        .success();
    let v: Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    assert_eq!(v["green"]["release"], "kleidia-services-green");
    assert_eq!(v["green"]["chartVersion"], "1.1.0");
    assert_eq!(v["green"]["status"], "deployed");
    assert_eq!(v["green"]["backend"]["version"], "1.1.0");
    assert_eq!(v["green"]["backend"]["httpStatus"], 200);
    let a = kleidia(&c, &helm, home.path())
        .args(["versions"])
        .assert()
        .success();
    let (table, _) = out(&a);
    assert!(
        table.contains("kleidia-services-green (green)") && table.contains("Backend (green)"),
        "{table}"
    );

    // A second start is refused while green waits.
    let a = kleidia(&c, &helm, home.path())
        .args([
            "upgrade",
            "--strategy",
            "blue-green",
            "--charts",
            &charts("1.1.0"),
            "-y",
            "--no-backup",
        ])
        .assert()
        .code(2);
    let (_, err) = out(&a);
    assert!(
        err.contains("release kleidia-services-green already exists") && err.contains("--promote"),
        "{err}"
    );

    // Promote: green checked again, blue uninstalled, the run recorded.
    let a = kleidia(&c, &helm, home.path())
        .args(["upgrade", "--promote", "-y"])
        .assert()
        .success();
    let (stdout, _) = out(&a);
    assert!(
        stdout.contains("promoted: kleidia-services-green serves, kleidia-services uninstalled"),
        "{stdout}"
    );
    assert!(
        stdout.contains("--services-release kleidia-services-green"),
        "{stdout}"
    );
    assert!(revisions(&c, "kleidia-services").is_empty(), "blue is gone");
    assert!(backend_pods(&c, "kleidia-services").is_empty());
    assert_eq!(
        revisions(&c, "kleidia-services-green"),
        [(1, "deployed".into())]
    );
    assert!(
        !kubectl(
            c.kubeconfig(),
            &["get", "svc", "kleidia-services-backend", "-n", NS]
        )
        .status
        .success()
    );
    let a = kleidia(&c, &helm, home.path())
        .args(["upgrade", "--history", "-o", "json"])
        .assert()
        .success();
    let runs: Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    let outcomes: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        ["green-ready", "promoted"],
        "oldest first: {runs}"
    );

    // Promoting again is refused: blue is gone.
    let a = kleidia(&c, &helm, home.path())
        .args(["upgrade", "--promote", "-y"])
        .assert()
        .code(2);
    let (_, err) = out(&a);
    assert!(err.contains("nothing to promote"), "{err}");

    // The promoted release is the services release from now on.
    let a = kleidia(&c, &helm, home.path())
        .args([
            "versions",
            "--services-release",
            "kleidia-services-green",
            "-o",
            "json",
        ])
        .assert()
        .success();
    let v: Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    assert_eq!(v["servers"]["backend"]["version"], "1.1.0");
    assert!(v.get("green").is_none(), "{v}");
}
