//! What upgrades meet in StatefulSets and on the node, seen with real
//! kubectl: `updateStrategy: OnDelete` keeps every pod on its revision until
//! it is deleted, RollingUpdate with a `partition` recreates a pod below it
//! on the current revision, the status fields are the ones a real API server
//! shows, and a node whose allocatable CPU is shrunk leaves a pod Pending
//! with the scheduler's `Insufficient cpu`.

mod support;

use std::time::{Duration, Instant};

use kleidia_sandbox::server::{Sandbox, SandboxOptions};
use serde_json::{Value, json};
use support::Kubectl;

fn start() -> (Sandbox, Kubectl) {
    support::kubectl_bin();
    let sb = Sandbox::start(SandboxOptions {
        pod_ready_delay: Duration::from_millis(100),
        ..SandboxOptions::default()
    })
    .expect("sandbox starts");
    let k = Kubectl::new(&sb);
    (sb, k)
}

/// Polls `f` (given kubectl) every 100 ms for up to two minutes.
fn until<T>(k: &Kubectl, what: &str, mut f: impl FnMut(&Kubectl) -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(v) = f(k) {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A StatefulSet `name` of `replicas` pods running `image` (the shell
/// runtime), with `strategy` as its `updateStrategy`.
fn statefulset(name: &str, image: &str, replicas: i64, strategy: Value) -> String {
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "serviceName": name,
            "replicas": replicas,
            "updateStrategy": strategy,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    })
    .to_string()
}

fn sts(k: &Kubectl, name: &str) -> Value {
    k.json(&["get", "sts", name, "-n", "kleidia"])
}

fn pod(k: &Kubectl, name: &str) -> Value {
    k.json(&["get", "pod", name, "-n", "kleidia"])
}

/// The pod's revision label and image.
fn revision_and_image(k: &Kubectl, name: &str) -> (String, String) {
    let p = pod(k, name);
    (
        p["metadata"]["labels"]["controller-revision-hash"]
            .as_str()
            .unwrap()
            .to_string(),
        p["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap()
            .to_string(),
    )
}

/// Waits until the set's status has seen its generation and has `ready`
/// ready pods; returns it.
fn settled(k: &Kubectl, name: &str, ready: i64) -> Value {
    until(k, &format!("{name} to have {ready} ready pods"), |k| {
        let s = sts(k, name);
        (s["status"]["observedGeneration"] == s["metadata"]["generation"]
            && s["status"]["readyReplicas"] == ready)
            .then_some(s)
    })
}

/// Deletes pod `name` as an operator does and waits for its replacement to
/// be ready; returns the replacement.
fn delete_and_wait(k: &Kubectl, name: &str) -> Value {
    let old = pod(k, name)["metadata"]["uid"].clone();
    k.ok(&["delete", "pod", name, "-n", "kleidia", "--wait=true"]);
    until(k, &format!("{name} to come back ready"), |k| {
        let out = k.run(&["get", "pod", name, "-n", "kleidia", "-o", "json"]);
        let p: Value = serde_json::from_slice(&out.stdout).ok()?;
        let ready = p["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        (p["metadata"]["uid"] != old && ready).then_some(p)
    })
}

#[test]
fn on_delete_moves_each_pod_only_when_it_is_deleted() {
    let (_sb, k) = start();
    let manifest = k.file(
        "sts.json",
        &statefulset("vault", "openbao:2.6.2", 2, json!({"type": "OnDelete"})),
    );
    k.ok(&["apply", "-n", "kleidia", "-f", &manifest]);
    let s = settled(&k, "vault", 2);
    let first = s["status"]["currentRevision"].as_str().unwrap().to_string();
    assert_eq!(s["status"]["updateRevision"], first.as_str());
    assert_eq!(s["status"]["currentReplicas"], 2);
    assert_eq!(s["status"]["updatedReplicas"], 2);
    let hash = first.strip_prefix("vault-").unwrap().to_string();
    for p in ["vault-0", "vault-1"] {
        assert_eq!(
            pod(&k, p)["metadata"]["labels"]["controller-revision-hash"],
            first.as_str()
        );
        // Scheduled pods carry the node they run on.
        assert_eq!(pod(&k, p)["spec"]["nodeName"], "sandbox-node");
    }
    assert!(!hash.is_empty());

    // Real kubectl refuses to follow an OnDelete set.
    let out = k.run(&[
        "rollout",
        "status",
        "sts/vault",
        "-n",
        "kleidia",
        "--timeout=10s",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rollout status is only available for RollingUpdate strategy type"),
        "{err}"
    );

    // A template change (what helm upgrade does) restarts nothing.
    let uids: Vec<Value> = ["vault-0", "vault-1"]
        .iter()
        .map(|p| pod(&k, p)["metadata"]["uid"].clone())
        .collect();
    k.ok(&[
        "set",
        "image",
        "sts/vault",
        "app=openbao:2.7.2",
        "-n",
        "kleidia",
    ]);
    let s = until(&k, "the new revision to be observed", |k| {
        let s = sts(k, "vault");
        (s["status"]["observedGeneration"] == s["metadata"]["generation"]
            && s["status"]["updateRevision"] != first.as_str())
        .then_some(s)
    });
    let second = s["status"]["updateRevision"].as_str().unwrap().to_string();
    // Give the controller time to act, as it would if it rolled.
    std::thread::sleep(Duration::from_secs(2));
    let s = sts(&k, "vault");
    assert_eq!(s["status"]["currentRevision"], first.as_str());
    assert_eq!(s["status"]["updateRevision"], second.as_str());
    assert_eq!(s["status"]["replicas"], 2);
    assert_eq!(s["status"]["readyReplicas"], 2);
    assert_eq!(s["status"]["currentReplicas"], 2);
    // Zero is left out, as a real API server does (`omitempty`).
    assert!(s["status"].get("updatedReplicas").is_none(), "{s}");
    for (p, uid) in ["vault-0", "vault-1"].iter().zip(&uids) {
        assert_eq!(&pod(&k, p)["metadata"]["uid"], uid, "{p} kept running");
        assert_eq!(
            revision_and_image(&k, p),
            (first.clone(), "openbao:2.6.2".to_string())
        );
    }

    // Deleting one pod moves that one only.
    delete_and_wait(&k, "vault-1");
    assert_eq!(
        revision_and_image(&k, "vault-1"),
        (second.clone(), "openbao:2.7.2".to_string())
    );
    assert_eq!(revision_and_image(&k, "vault-0").0, first);
    let s = settled(&k, "vault", 2);
    assert_eq!(s["status"]["currentRevision"], first.as_str());
    assert_eq!(s["status"]["currentReplicas"], 1);
    assert_eq!(s["status"]["updatedReplicas"], 1);

    // The last one: the update revision becomes the current one.
    delete_and_wait(&k, "vault-0");
    assert_eq!(
        revision_and_image(&k, "vault-0"),
        (second.clone(), "openbao:2.7.2".to_string())
    );
    let s = until(&k, "currentRevision to move", |k| {
        let s = sts(k, "vault");
        (s["status"]["currentRevision"] == second.as_str()).then_some(s)
    });
    assert_eq!(s["status"]["updateRevision"], second.as_str());
    assert_eq!(s["status"]["currentReplicas"], 2);
    assert_eq!(s["status"]["updatedReplicas"], 2);
    assert_eq!(s["status"]["readyReplicas"], 2);

    // The YAML kubectl shows has the same fields.
    let yaml = k.ok(&["get", "sts", "vault", "-n", "kleidia", "-o", "yaml"]);
    assert!(yaml.contains("type: OnDelete"), "{yaml}");
    assert!(
        yaml.contains(&format!("currentRevision: {second}")),
        "{yaml}"
    );
    assert!(
        yaml.contains(&format!("updateRevision: {second}")),
        "{yaml}"
    );

    // A pod that goes missing comes back on the update revision too.
    k.ok(&[
        "set",
        "image",
        "sts/vault",
        "app=openbao:2.6.2",
        "-n",
        "kleidia",
    ]);
    let third = until(&k, "the rollback revision", |k| {
        let s = sts(k, "vault");
        let u = s["status"]["updateRevision"].as_str()?.to_string();
        (u != second).then_some(u)
    });
    assert_eq!(
        third, first,
        "back to the first template: its revision again"
    );
    delete_and_wait(&k, "vault-0");
    assert_eq!(
        revision_and_image(&k, "vault-0"),
        (first.clone(), "openbao:2.6.2".to_string())
    );
    assert_eq!(revision_and_image(&k, "vault-1").0, second);
}

#[test]
fn rolling_update_partition_keeps_lower_pods_on_the_current_revision() {
    let (_sb, k) = start();
    let manifest = k.file(
        "sts.json",
        &statefulset(
            "db",
            "postgres-like:1",
            3,
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}),
        ),
    );
    k.ok(&["apply", "-n", "kleidia", "-f", &manifest]);
    let first = settled(&k, "db", 3)["status"]["currentRevision"]
        .as_str()
        .unwrap()
        .to_string();

    k.ok(&[
        "set",
        "image",
        "sts/db",
        "app=postgres-like:2",
        "-n",
        "kleidia",
    ]);
    let out = k.ok(&[
        "rollout",
        "status",
        "sts/db",
        "-n",
        "kleidia",
        "--timeout=120s",
    ]);
    assert!(
        out.contains("partitioned roll out complete: 1 new pods have been updated"),
        "{out}"
    );
    let s = settled(&k, "db", 3);
    let second = s["status"]["updateRevision"].as_str().unwrap().to_string();
    assert_ne!(second, first);
    assert_eq!(s["status"]["currentRevision"], first.as_str());
    assert_eq!(s["status"]["currentReplicas"], 2);
    assert_eq!(s["status"]["updatedReplicas"], 1);
    assert_eq!(revision_and_image(&k, "db-2").1, "postgres-like:2");

    // Below the partition a deleted pod comes back on the old template.
    delete_and_wait(&k, "db-0");
    assert_eq!(
        revision_and_image(&k, "db-0"),
        (first.clone(), "postgres-like:1".to_string())
    );

    // Partition 0: the rest roll, and the revision becomes current.
    k.ok(&[
        "patch",
        "sts",
        "db",
        "-n",
        "kleidia",
        "--type=merge",
        "-p",
        r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}"#,
    ]);
    let s = until(&k, "the rolling update to complete", |k| {
        let s = sts(k, "db");
        (s["status"]["currentRevision"] == second.as_str() && s["status"]["readyReplicas"] == 3)
            .then_some(s)
    });
    assert_eq!(s["status"]["updatedReplicas"], 3);
    assert_eq!(s["status"]["currentReplicas"], 3);
    for p in ["db-0", "db-1", "db-2"] {
        assert_eq!(
            revision_and_image(&k, p),
            (second.clone(), "postgres-like:2".to_string())
        );
    }
}

#[test]
fn a_node_without_room_leaves_the_extra_pod_pending() {
    let (_sb, k) = start();
    let node = k.json(&["get", "node", "sandbox-node"]);
    let cpu = node["status"]["allocatable"]["cpu"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(node["status"]["allocatable"]["memory"], "23Gi");

    // Room for one 200m pod, not two.
    k.ok(&[
        "patch",
        "node",
        "sandbox-node",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"allocatable":{"cpu":"300m"}}}"#,
    ]);
    let node = k.json(&["get", "node", "sandbox-node"]);
    assert_eq!(node["status"]["allocatable"]["cpu"], "300m");
    k.ok(&[
        "create",
        "deployment",
        "web",
        "-n",
        "kleidia",
        "--image=web:1",
        "--replicas=2",
    ]);
    k.ok(&[
        "set",
        "resources",
        "deployment/web",
        "-n",
        "kleidia",
        "--requests=cpu=200m,memory=64Mi",
    ]);
    let pods = until(&k, "one web pod running and one pending", |k| {
        let l = k.json(&["get", "pods", "-n", "kleidia", "-l", "app=web"]);
        let items = l["items"].as_array()?.clone();
        let with_requests: Vec<Value> = items
            .into_iter()
            .filter(|p| p["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "200m")
            .collect();
        let running = with_requests
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .count();
        let unschedulable = with_requests.iter().any(|p| {
            p["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter().any(|c| {
                    c["type"] == "PodScheduled"
                        && c["status"] == "False"
                        && c["reason"] == "Unschedulable"
                })
            })
        });
        (running == 1 && unschedulable).then_some(with_requests)
    });
    let pending = pods
        .iter()
        .find(|p| p["status"]["phase"] == "Pending")
        .expect("a pending pod");
    let running = pods
        .iter()
        .find(|p| p["status"]["phase"] == "Running")
        .unwrap();
    assert_eq!(running["spec"]["nodeName"], "sandbox-node");
    assert_eq!(running["status"]["qosClass"], "Burstable");
    assert!(pending["spec"].get("nodeName").is_none(), "{pending}");
    let cond = pending["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "PodScheduled")
        .unwrap();
    assert_eq!(
        cond["message"],
        "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
    );
    let pending_name = pending["metadata"]["name"].as_str().unwrap().to_string();
    let events = k.ok(&[
        "get",
        "events",
        "-n",
        "kleidia",
        "--field-selector",
        &format!("involvedObject.name={pending_name},reason=FailedScheduling"),
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert!(events.contains("Insufficient cpu"), "{events}");

    // Room again: the pending pod is scheduled and runs.
    k.ok(&[
        "patch",
        "node",
        "sandbox-node",
        "--subresource=status",
        "--type=merge",
        "-p",
        &json!({"status": {"allocatable": {"cpu": cpu}}}).to_string(),
    ]);
    until(&k, "the pending pod to run", |k| {
        let p = pod(k, &pending_name);
        (p["status"]["phase"] == "Running" && p["spec"]["nodeName"] == "sandbox-node").then_some(())
    });
}
