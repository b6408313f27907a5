//! The controllers and the kubelet against an in-memory store: Deployments
//! roll, StatefulSets create ordered pods with bound PVCs, Jobs run their
//! command to completion, broken and crash-looping images show the states a
//! real cluster shows.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kleidia_sandbox::registry::{self, ResourceType};
use kleidia_sandbox::state::{OpenBaoStorage, Options, Shared};
use kleidia_sandbox::store::Store;
use serde_json::{Value, json};

struct Cluster {
    shared: Arc<Shared>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn start() -> Cluster {
        Self::start_with(kleidia_sandbox::runtimes::default_runtimes())
    }

    fn start_with(runtimes: kleidia_sandbox::runtime::Runtimes) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let shared = Arc::new(Shared {
            store: Store::new(kleidia_sandbox::store::DEFAULT_HISTORY),
            runtimes,
            faults: Default::default(),
            authz: Default::default(),
            options: Options {
                data_dir: dir.path().to_path_buf(),
                pod_ready_delay: Duration::from_millis(100),
                empty: true,
                openbao_storage: OpenBaoStorage::File,
                bookmark_interval: Duration::from_secs(60),
            },
            shutdown: Default::default(),
        });
        shared
            .store
            .create(
                &registry::NAMESPACES,
                None,
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kleidia"}}),
            )
            .expect("namespace");
        kleidia_sandbox::controllers::start(shared.clone());
        Cluster { shared, _dir: dir }
    }

    fn create(&self, rt: &'static ResourceType, obj: Value) -> Value {
        self.shared
            .store
            .create(rt, Some("kleidia"), obj)
            .expect("create")
    }

    fn get(&self, rt: &'static ResourceType, name: &str) -> Option<Value> {
        self.shared
            .store
            .try_get(rt, Some("kleidia"), name)
            .map(|v| (*v).clone())
    }

    fn list(&self, rt: &'static ResourceType) -> Vec<Value> {
        self.shared
            .store
            .snapshot(rt, Some("kleidia"))
            .into_iter()
            .map(|v| (*v).clone())
            .collect()
    }

    /// Waits until `f` returns Some (fails the test after a generous
    /// deadline, describing what was awaited).
    async fn until<T>(&self, what: &str, mut f: impl FnMut(&Cluster) -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(v) = f(self) {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
    }
}

fn deployment(name: &str, image: &str, replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "kleidia"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    })
}

/// StatefulSet `name` (its service and container named alike) of
/// `replicas` pods running `image`.
fn statefulset(name: &str, image: &str, replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": "kleidia"},
        "spec": {
            "replicas": replicas, "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": image}]},
            },
        },
    })
}

fn condition<'a>(obj: &'a Value, t: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == t)
}

fn pods_of(c: &Cluster, app: &str) -> Vec<Value> {
    c.list(&registry::PODS)
        .into_iter()
        .filter(|p| p["metadata"]["labels"]["app"] == app)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_rolls_out_and_updates() {
    let c = Cluster::start();
    c.create(&registry::DEPLOYMENTS, deployment("web", "nginx:1.27", 2));
    let d = c
        .until("the deployment to be available", |c| {
            let d = c.get(&registry::DEPLOYMENTS, "web")?;
            let p = condition(&d, "Progressing")?;
            (d["status"]["availableReplicas"] == 2 && p["reason"] == "NewReplicaSetAvailable")
                .then_some(d)
        })
        .await;
    assert_eq!(d["status"]["updatedReplicas"], 2);
    assert_eq!(d["status"]["readyReplicas"], 2);
    assert_eq!(
        d["status"]["observedGeneration"],
        d["metadata"]["generation"]
    );
    assert_eq!(condition(&d, "Available").unwrap()["status"], "True");

    let rs = c.list(&registry::REPLICASETS);
    assert_eq!(rs.len(), 1, "one ReplicaSet per template: {rs:#?}");
    let hash = rs[0]["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .expect("pod-template-hash label")
        .to_string();
    assert_eq!(
        rs[0]["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );
    let pods = pods_of(&c, "web");
    assert_eq!(pods.len(), 2);
    for p in &pods {
        assert_eq!(p["status"]["phase"], "Running");
        assert_eq!(p["spec"]["nodeName"], "sandbox-node");
        assert_eq!(p["metadata"]["labels"]["pod-template-hash"], hash.as_str());
        assert!(
            p["status"]["podIP"]
                .as_str()
                .unwrap()
                .starts_with("127.0.0.")
        );
        let cs = &p["status"]["containerStatuses"][0];
        assert_eq!(cs["ready"], true);
        assert_eq!(cs["started"], true);
        assert!(cs["state"]["running"]["startedAt"].is_string());
        assert!(cs["imageID"].as_str().unwrap().contains("@sha256:"));
        assert!(
            cs["containerID"]
                .as_str()
                .unwrap()
                .starts_with("containerd://")
        );
        for t in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
            assert_eq!(condition(p, t).unwrap()["status"], "True", "{t} of {p:#}");
        }
    }
    let reasons: Vec<String> = c
        .list(&registry::EVENTS)
        .iter()
        .map(|e| e["reason"].as_str().unwrap_or("").to_string())
        .collect();
    for r in [
        "ScalingReplicaSet",
        "SuccessfulCreate",
        "Scheduled",
        "Pulled",
        "Created",
        "Started",
    ] {
        assert!(
            reasons.iter().any(|x| x == r),
            "no {r} event in {reasons:?}"
        );
    }

    // A new image rolls to a second ReplicaSet and retires the first.
    c.shared
        .store
        .mutate(&registry::DEPLOYMENTS, Some("kleidia"), "web", |d| {
            d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.28");
        })
        .unwrap();
    c.until("the new image to roll out", |c| {
        let d = c.get(&registry::DEPLOYMENTS, "web")?;
        let p = condition(&d, "Progressing")?;
        let pods = pods_of(c, "web");
        (d["status"]["observedGeneration"] == d["metadata"]["generation"]
            && d["status"]["updatedReplicas"] == 2
            && d["status"]["replicas"] == 2
            && d["status"]["availableReplicas"] == 2
            && p["reason"] == "NewReplicaSetAvailable"
            && pods.len() == 2
            && pods
                .iter()
                .all(|p| p["spec"]["containers"][0]["image"] == "nginx:1.28"))
        .then_some(())
    })
    .await;
    let mut revs: Vec<(String, i64)> = c
        .list(&registry::REPLICASETS)
        .iter()
        .map(|r| {
            (
                r["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                r["spec"]["replicas"].as_i64().unwrap(),
            )
        })
        .collect();
    revs.sort();
    assert_eq!(revs, vec![("1".to_string(), 0), ("2".to_string(), 2)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_creates_ordered_pods_with_bound_claims() {
    let c = Cluster::start();
    c.create(
        &registry::STATEFULSETS,
        {
            let mut db = statefulset("db", "postgres:16", 2);
            db["spec"]["volumeClaimTemplates"] = json!([{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            }]);
            db
        },
    );
    let s = c
        .until("the statefulset to be ready", |c| {
            let s = c.get(&registry::STATEFULSETS, "db")?;
            (s["status"]["readyReplicas"] == 2).then_some(s)
        })
        .await;
    assert_eq!(
        s["status"]["currentRevision"],
        s["status"]["updateRevision"]
    );
    for i in 0..2 {
        let p = c
            .get(&registry::PODS, &format!("db-{i}"))
            .expect("ordinal pod");
        assert_eq!(
            p["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"],
            format!("db-{i}")
        );
        let pvc = c
            .get(&registry::PERSISTENTVOLUMECLAIMS, &format!("data-db-{i}"))
            .expect("claim from the template");
        assert_eq!(pvc["status"]["phase"], "Bound");
        let pv = pvc["spec"]["volumeName"].as_str().unwrap();
        assert!(
            c.shared
                .store
                .try_get(&registry::PERSISTENTVOLUMES, None, pv)
                .is_some()
        );
    }
    // db-0 was created (and became ready) before db-1.
    let created = |n: &str| {
        c.get(&registry::PODS, n).unwrap()["metadata"]["creationTimestamp"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let ready0 =
        condition(&c.get(&registry::PODS, "db-0").unwrap(), "Ready").unwrap()["lastTransitionTime"]
            .as_str()
            .unwrap()
            .to_string();
    assert!(ready0 <= created("db-1"));
    assert_eq!(c.list(&registry::CONTROLLERREVISIONS).len(), 1);

    // A template change replaces pods from the highest ordinal; claims stay.
    let uid0 = c.get(&registry::PODS, "db-0").unwrap()["metadata"]["uid"].clone();
    c.shared
        .store
        .mutate(&registry::STATEFULSETS, Some("kleidia"), "db", |s| {
            s["spec"]["template"]["spec"]["containers"][0]["image"] = json!("postgres:17");
        })
        .unwrap();
    c.until("the rolling update to complete", |c| {
        let s = c.get(&registry::STATEFULSETS, "db")?;
        (s["status"]["updatedReplicas"] == 2
            && s["status"]["readyReplicas"] == 2
            && s["status"]["currentRevision"] == s["status"]["updateRevision"]
            && s["status"]["observedGeneration"] == s["metadata"]["generation"])
            .then_some(())
    })
    .await;
    assert_ne!(
        c.get(&registry::PODS, "db-0").unwrap()["metadata"]["uid"],
        uid0
    );
    assert_eq!(c.list(&registry::CONTROLLERREVISIONS).len(), 2);
    assert_eq!(c.list(&registry::PERSISTENTVOLUMECLAIMS).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_and_crashlooping_images() {
    let c = Cluster::start();
    let mut bad = deployment("bad", "nginx:broken-1", 1);
    bad["spec"]["progressDeadlineSeconds"] = json!(2);
    c.create(&registry::DEPLOYMENTS, bad);
    c.create(
        &registry::DEPLOYMENTS,
        deployment("crash", "nginx:crashloop", 1),
    );
    c.until("ImagePullBackOff", |c| {
        let p = pods_of(c, "bad").pop()?;
        (p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ImagePullBackOff")
            .then_some(())
    })
    .await;
    c.until("a restarted crash-looping container", |c| {
        let p = pods_of(c, "crash").pop()?;
        let cs = &p["status"]["containerStatuses"][0];
        (cs["restartCount"].as_u64()? >= 2
            && cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
            && cs["lastState"]["terminated"]["exitCode"] == 1)
            .then_some(())
    })
    .await;
    let events = c.list(&registry::EVENTS);
    let has = |reason: &str, msg: &str| {
        events.iter().any(|e| {
            e["type"] == "Warning"
                && e["reason"] == reason
                && e["message"].as_str().unwrap_or("").contains(msg)
        })
    };
    assert!(has("Failed", "ErrImagePull"), "{events:#?}");
    assert!(has("Failed", "ImagePullBackOff"));
    assert!(has("BackOff", "Back-off restarting failed container"));
    let d = c.get(&registry::DEPLOYMENTS, "bad").unwrap();
    assert_eq!(condition(&d, "Available").unwrap()["status"], "False");
    // No progress within progressDeadlineSeconds: the rollout has failed.
    c.until("ProgressDeadlineExceeded", |c| {
        let d = c.get(&registry::DEPLOYMENTS, "bad")?;
        let p = condition(&d, "Progressing")?;
        (p["status"] == "False" && p["reason"] == "ProgressDeadlineExceeded").then_some(())
    })
    .await;

    // Deleting a pod stops its containers and says so.
    let pod = pods_of(&c, "crash").pop().unwrap();
    let pod_name = pod["metadata"]["name"].as_str().unwrap().to_string();
    c.shared
        .store
        .delete(
            &registry::PODS,
            Some("kleidia"),
            &pod_name,
            &Default::default(),
        )
        .unwrap();
    c.until("a Killing event", |c| {
        c.list(&registry::EVENTS)
            .iter()
            .any(|e| {
                e["reason"] == "Killing"
                    && e["involvedObject"]["name"] == pod_name.as_str()
                    && e["message"] == "Stopping container app"
            })
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_runs_its_command_to_completion() {
    let c = Cluster::start();
    c.create(
        &registry::JOBS,
        json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "hello", "namespace": "kleidia"},
            "spec": {"template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "main", "image": "busybox:1.36",
                    "command": ["sh", "-c", "echo hello from $HOSTNAME; mkdir -p /work && echo x > /work/f && cat /work/f"]}],
            }}},
        }),
    );
    let j = c
        .until("the job to complete", |c| {
            let j = c.get(&registry::JOBS, "hello")?;
            condition(&j, "Complete").is_some().then_some(j)
        })
        .await;
    assert_eq!(j["status"]["succeeded"], 1);
    assert!(j["status"]["completionTime"].is_string());
    let pod = c
        .list(&registry::PODS)
        .into_iter()
        .find(|p| p["metadata"]["labels"]["job-name"] == "hello")
        .unwrap();
    assert_eq!(pod["status"]["phase"], "Succeeded");
    let cs = &pod["status"]["containerStatuses"][0];
    assert_eq!(cs["state"]["terminated"]["reason"], "Completed");
    let cref = kleidia_sandbox::controllers::pods::container_ref(&c.shared, &pod, "main").unwrap();
    let log = std::fs::read_to_string(&cref.log_path).unwrap();
    assert_eq!(
        log,
        format!(
            "hello from {}\nx\n",
            pod["metadata"]["name"].as_str().unwrap()
        )
    );
    assert!(
        cref.root.join("work/f").is_file(),
        "file written inside the container root"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_containers_run_to_completion_before_the_app() {
    let c = Cluster::start();
    c.create(
        &registry::PODS,
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "app", "namespace": "kleidia"},
            "spec": {
                "initContainers": [{"name": "migrate", "image": "busybox:1.36",
                    // Fails once, then succeeds: a retried init container.
                    "command": ["sh", "-c", "echo migrating; test -f /tmp/ok || { touch /tmp/ok; exit 1; }"]}],
                "containers": [{"name": "app", "image": "busybox:1.36"}],
            },
        }),
    );
    let p = c
        .until("the pod to be ready after its init container", |c| {
            let p = c.get(&registry::PODS, "app")?;
            condition(&p, "Ready")
                .is_some_and(|r| r["status"] == "True")
                .then_some(p)
        })
        .await;
    assert_eq!(condition(&p, "Initialized").unwrap()["status"], "True");
    let init = &p["status"]["initContainerStatuses"][0];
    assert_eq!(init["restartCount"], 1, "{init:#}");
    assert_eq!(init["state"]["terminated"]["reason"], "Completed");
    assert_eq!(init["lastState"]["terminated"]["exitCode"], 1);
    let cref = kleidia_sandbox::controllers::pods::container_ref(&c.shared, &p, "migrate").unwrap();
    assert_eq!(
        std::fs::read_to_string(&cref.log_path).unwrap(),
        "migrating\nmigrating\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_are_visible_in_the_containers() {
    let c = Cluster::start();
    c.create(
        &registry::CONFIGMAPS,
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "conf", "namespace": "kleidia"},
            "data": {"app.conf": "listen 8080\n", "other": "x"}}),
    );
    c.create(
        &registry::SECRETS,
        json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "creds", "namespace": "kleidia"},
            "stringData": {"password": "s3cret"}}),
    );
    c.create(
        &registry::JOBS,
        json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "vols", "namespace": "kleidia"},
            "spec": {"template": {"spec": {
                "restartPolicy": "Never",
                "volumes": [
                    {"name": "shared", "emptyDir": {}},
                    {"name": "conf", "configMap": {"name": "conf", "items": [{"key": "app.conf", "path": "app.conf"}]}},
                    {"name": "creds", "secret": {"secretName": "creds"}},
                ],
                "initContainers": [{"name": "prepare", "image": "busybox:1.36",
                    "command": ["sh", "-c", "echo prepared > /work/state"],
                    "volumeMounts": [{"name": "shared", "mountPath": "/work"}]}],
                "containers": [{"name": "main", "image": "busybox:1.36",
                    "command": ["sh", "-c", "cat /work/state /etc/app/app.conf /run/secrets/password; ls /etc/app"],
                    "volumeMounts": [
                        {"name": "shared", "mountPath": "/work"},
                        {"name": "conf", "mountPath": "/etc/app"},
                        {"name": "creds", "mountPath": "/run/secrets", "readOnly": true},
                    ]}],
            }}},
        }),
    );
    c.until("the job to complete", |c| {
        let j = c.get(&registry::JOBS, "vols")?;
        condition(&j, "Complete").is_some().then_some(())
    })
    .await;
    let pod = c
        .list(&registry::PODS)
        .into_iter()
        .find(|p| p["metadata"]["labels"]["job-name"] == "vols")
        .unwrap();
    let cref = kleidia_sandbox::controllers::pods::container_ref(&c.shared, &pod, "main").unwrap();
    assert_eq!(
        std::fs::read_to_string(&cref.log_path).unwrap(),
        "prepared\nlisten 8080\ns3cretapp.conf\n"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(cref.root.join("run/secrets/password"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "secret files are private");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cronjob_starts_a_job_on_schedule() {
    let c = Cluster::start();
    c.create(
        &registry::CRONJOBS,
        json!({
            "apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "backup", "namespace": "kleidia"},
            "spec": {
                "schedule": "* * * * *",
                "jobTemplate": {"spec": {"template": {"spec": {
                    "restartPolicy": "OnFailure",
                    "containers": [{"name": "backup", "image": "busybox:1.36",
                        "command": ["sh", "-c", "echo backed up"]}],
                }}}},
            },
        }),
    );
    // Runs at the next minute boundary.
    let job = c
        .until("a job from the schedule", |c| {
            c.list(&registry::JOBS).into_iter().find(|j| {
                j["metadata"]["ownerReferences"][0]["name"] == "backup"
                    && condition(j, "Complete").is_some()
            })
        })
        .await;
    let name = job["metadata"]["name"].as_str().unwrap();
    let minutes: i64 = name.strip_prefix("backup-").unwrap().parse().unwrap();
    let cj = c
        .until("lastSuccessfulTime", |c| {
            let cj = c.get(&registry::CRONJOBS, "backup")?;
            cj["status"]["lastSuccessfulTime"].is_string().then_some(cj)
        })
        .await;
    let scheduled =
        chrono::DateTime::parse_from_rfc3339(cj["status"]["lastScheduleTime"].as_str().unwrap())
            .unwrap();
    assert_eq!(scheduled.timestamp() / 60, minutes);
}

/// A server that holds its data folder exclusively (like PostgreSQL's
/// postmaster.pid) and takes a while to shut down.
#[derive(Default)]
struct ExclusiveRuntime {
    running: std::sync::Mutex<std::collections::HashSet<String>>,
    overlaps: std::sync::atomic::AtomicUsize,
    starts: std::sync::atomic::AtomicUsize,
}

impl kleidia_sandbox::runtime::ImageRuntime for ExclusiveRuntime {
    fn name(&self) -> &'static str {
        "exclusive"
    }
    fn matches(&self, image: &str) -> bool {
        image.starts_with("exclusive")
    }
    fn start<'a>(
        &'a self,
        c: &'a kleidia_sandbox::runtime::ContainerRef,
    ) -> futures::future::BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let key = c.root.to_string_lossy().into_owned();
            if !self.running.lock().unwrap().insert(key) {
                self.overlaps
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            self.starts
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        })
    }
    fn stop<'a>(
        &'a self,
        c: &'a kleidia_sandbox::runtime::ContainerRef,
    ) -> futures::future::BoxFuture<'a, ()> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            self.running
                .lock()
                .unwrap()
                .remove(&c.root.to_string_lossy().into_owned());
        })
    }
    fn exec<'a>(
        &'a self,
        _c: &'a kleidia_sandbox::runtime::ContainerRef,
        _command: Vec<String>,
        _io: kleidia_sandbox::runtime::ExecIo,
    ) -> futures::future::BoxFuture<'a, kleidia_sandbox::runtime::ExecOutcome> {
        Box::pin(async { kleidia_sandbox::runtime::ExecOutcome::Exit(0) })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_pod_starts_only_after_the_old_one_stopped() {
    let rt = Arc::new(ExclusiveRuntime::default());
    let mut runtimes = kleidia_sandbox::runtimes::default_runtimes();
    runtimes.register(rt.clone());
    let c = Cluster::start_with(runtimes);
    c.create(
        &registry::STATEFULSETS,
        statefulset("pg", "exclusive/postgres:16", 1),
    );
    let ready = |c: &Cluster| {
        let p = c.get(&registry::PODS, "pg-0")?;
        condition(&p, "Ready")
            .is_some_and(|r| r["status"] == "True")
            .then(|| p["metadata"]["uid"].clone())
    };
    let first = c.until("pg-0 ready", ready).await;
    c.shared
        .store
        .delete(
            &registry::PODS,
            Some("kleidia"),
            "pg-0",
            &Default::default(),
        )
        .unwrap();
    c.until("a new pg-0 ready", |c| ready(c).filter(|u| *u != first))
        .await;
    assert_eq!(rt.starts.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(
        rt.overlaps.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the new pod started while the old one was still stopping"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemonsets_endpoints_and_finished_job_cleanup() {
    let c = Cluster::start();
    c.create(
        &registry::DAEMONSETS,
        json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": "kleidia"},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": {"metadata": {"labels": {"app": "agent"}},
                    "spec": {"containers": [{"name": "agent", "image": "busybox:1.36",
                        "ports": [{"name": "metrics", "containerPort": 9100}]}]}},
            },
        }),
    );
    c.create(
        &registry::SERVICES,
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "agent", "namespace": "kleidia"},
            "spec": {"selector": {"app": "agent"}, "ports": [{"name": "m", "port": 80, "targetPort": "metrics"}]},
        }),
    );
    let ds = c
        .until("the daemonset pod to be ready", |c| {
            let d = c.get(&registry::DAEMONSETS, "agent")?;
            (d["status"]["numberReady"] == 1).then_some(d)
        })
        .await;
    assert_eq!(ds["status"]["desiredNumberScheduled"], 1);
    let pod = pods_of(&c, "agent").pop().unwrap();
    let ep = c
        .until("ready endpoints", |c| {
            let e = c.get(&registry::ENDPOINTS, "agent")?;
            e["subsets"][0]["addresses"].is_array().then_some(e)
        })
        .await;
    let subset = &ep["subsets"][0];
    assert_eq!(subset["addresses"][0]["ip"], pod["status"]["podIP"]);
    assert_eq!(
        subset["addresses"][0]["targetRef"]["name"],
        pod["metadata"]["name"]
    );
    assert_eq!(subset["ports"][0]["port"], 9100);
    assert_eq!(subset["ports"][0]["name"], "m");

    // A finished job with ttlSecondsAfterFinished: 0 is removed.
    c.create(
        &registry::JOBS,
        json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "once", "namespace": "kleidia"},
            "spec": {"ttlSecondsAfterFinished": 0, "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "main", "image": "busybox:1.36", "command": ["true"]}],
            }}},
        }),
    );
    c.until("the job to complete and be cleaned up", |c| {
        let completed = c
            .list(&registry::EVENTS)
            .iter()
            .any(|e| e["involvedObject"]["name"] == "once" && e["reason"] == "Completed");
        (completed && c.get(&registry::JOBS, "once").is_none()).then_some(())
    })
    .await;
}
