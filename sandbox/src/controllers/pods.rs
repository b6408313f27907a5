//! The kubelet of the sandbox node: drives each pod from Pending to Ready
//! (scheduled to [`NODE_NAME`] once the node's allocatable CPU and memory
//! have room for its requests, images "pulled", containers created and
//! started through their [`ImageRuntime`], Ready once
//! `options.pod_ready_delay` has passed and the runtime says ready),
//! reports restarts, image pull errors and completion, and stops the
//! containers when the pod goes away.
//!
//! Images whose tag contains `broken` never start (`ErrImagePull`, then
//! `ImagePullBackOff`); tags containing `crashloop` start and exit with 1
//! at once, again and again (`CrashLoopBackOff`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared as SharedFuture};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{NODE_NAME, name, namespace, uid};
use crate::events::{self, EventType};
use crate::registry;
use crate::runtime::{ContainerRef, ExecIo, ExecOutcome, ImageRuntime};
use crate::state::Shared;
use crate::store::now;

/// How often readiness is checked and status written.
const STATUS_EVERY: Duration = Duration::from_millis(200);
/// Longest wait between restarts of a crashing container (short, so tests
/// see restarts quickly).
const MAX_BACKOFF: Duration = Duration::from_secs(8);

type Done = SharedFuture<BoxFuture<'static, ()>>;

struct PodTask {
    /// The pod as first seen (for events once it is gone).
    pod: Value,
    ns: String,
    name: String,
    cancel: CancellationToken,
    done: Done,
}

/// Runs one task per pod.
pub struct Kubelet {
    shared: Arc<Shared>,
    tasks: HashMap<String, PodTask>,
    next_ip: u32,
}

impl Kubelet {
    pub fn new(shared: Arc<Shared>) -> Self {
        Kubelet {
            shared,
            tasks: HashMap::new(),
            next_ip: 0,
        }
    }

    /// Starts tasks for new pods, stops those of deleted pods.
    pub fn reconcile(&mut self) {
        let pods = self.shared.store.snapshot(&registry::PODS, None);
        // Pods that are gone or being deleted lose their containers first,
        // so a replacement of the same name finds them stopped.
        let live: std::collections::HashSet<String> = pods
            .iter()
            .filter(|p| !super::terminating(p))
            .map(|p| uid(p).to_string())
            .collect();
        // Deleted pods: stop their containers; forget tasks once stopped.
        let mut forget = Vec::new();
        for (id, t) in &self.tasks {
            if !live.contains(id) {
                if !t.cancel.is_cancelled() {
                    for c in t.pod["spec"]["containers"].as_array().into_iter().flatten() {
                        let cname = c["name"].as_str().unwrap_or("");
                        events::record(
                            &self.shared,
                            &t.pod,
                            EventType::Normal,
                            "Killing",
                            &format!("Stopping container {cname}"),
                            "kubelet",
                            &format!("spec.containers{{{cname}}}"),
                        );
                    }
                }
                t.cancel.cancel();
                if t.done.peek().is_some() {
                    forget.push(id.clone());
                }
            }
        }
        for id in forget {
            self.tasks.remove(&id);
        }
        for p in &pods {
            let id = uid(p).to_string();
            if self.tasks.contains_key(&id) || super::terminating(p) {
                continue;
            }
            let node = p["spec"]["nodeName"].as_str().unwrap_or(NODE_NAME);
            if node != NODE_NAME {
                continue;
            }
            // A pod that finished before we saw it (none in practice) stays.
            if matches!(
                p["status"]["phase"].as_str(),
                Some("Succeeded") | Some("Failed")
            ) {
                continue;
            }
            // A previous pod of the same name must have stopped first (its
            // data folder is the same).
            let before: Vec<Done> = self
                .tasks
                .values()
                .filter(|t| t.ns == namespace(p) && t.name == name(p) && t.cancel.is_cancelled())
                .map(|t| t.done.clone())
                .collect();
            self.next_ip += 1;
            let ip = format!("127.0.0.{}", 2 + (self.next_ip - 1) % 250);
            let cancel = CancellationToken::new();
            let shared = self.shared.clone();
            let pod = (**p).clone();
            let c2 = cancel.clone();
            let handle = tokio::spawn(async move {
                for b in before {
                    b.await;
                }
                run_pod(shared, pod, ip, c2).await;
            });
            let done: Done = handle.map(|_| ()).boxed().shared();
            self.tasks.insert(
                id,
                PodTask {
                    pod: (**p).clone(),
                    ns: namespace(p).to_string(),
                    name: name(p).to_string(),
                    cancel,
                    done,
                },
            );
        }
    }

    /// Stops every pod's containers (sandbox shutdown).
    pub async fn stop_all(&mut self) {
        for t in self.tasks.values() {
            t.cancel.cancel();
        }
        for (_, t) in self.tasks.drain() {
            t.done.await;
        }
    }
}

/// The `ContainerRef` of container `container` of `pod`, or `None` when the
/// pod has no such container.
pub fn container_ref(shared: &Shared, pod: &Value, container: &str) -> Option<ContainerRef> {
    let spec = ["containers", "initContainers"]
        .iter()
        .filter_map(|k| pod["spec"][*k].as_array())
        .flatten()
        .find(|c| c["name"].as_str() == Some(container))?;
    let ns = namespace(pod);
    let pod_name = name(pod);
    let dir = shared.container_dir(ns, pod_name, container);
    let ports = spec["ports"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p["containerPort"].as_u64().map(|n| n as u16))
                .collect()
        })
        .unwrap_or_default();
    Some(ContainerRef {
        namespace: ns.to_string(),
        pod: pod_name.to_string(),
        container: container.to_string(),
        image: spec["image"].as_str().unwrap_or("").to_string(),
        env: resolve_env(shared, pod, spec),
        ports,
        command: ["command", "args"]
            .iter()
            .filter_map(|k| spec[*k].as_array())
            .flatten()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        root: dir.join("root"),
        log_path: dir.join("logs").join(format!("{}.log", uid(pod))),
    })
}

/// The container's environment: literal values, `valueFrom` secret/config
/// map keys and pod fields, and `envFrom` (what can be resolved now).
fn resolve_env(
    shared: &Shared,
    pod: &Value,
    spec: &Value,
) -> std::collections::BTreeMap<String, String> {
    let ns = namespace(pod);
    let mut env = std::collections::BTreeMap::new();
    let b64 = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
    };
    if let Some(from) = spec["envFrom"].as_array() {
        for f in from {
            let prefix = f["prefix"].as_str().unwrap_or("");
            if let Some(cm) = f["configMapRef"]["name"].as_str()
                && let Some(o) = shared.store.try_get(&registry::CONFIGMAPS, Some(ns), cm)
                && let Some(data) = o["data"].as_object()
            {
                for (k, v) in data {
                    env.insert(format!("{prefix}{k}"), v.as_str().unwrap_or("").to_string());
                }
            }
            if let Some(s) = f["secretRef"]["name"].as_str()
                && let Some(o) = shared.store.try_get(&registry::SECRETS, Some(ns), s)
                && let Some(data) = o["data"].as_object()
            {
                for (k, v) in data {
                    if let Some(v) = v.as_str().and_then(b64) {
                        env.insert(format!("{prefix}{k}"), v);
                    }
                }
            }
        }
    }
    if let Some(list) = spec["env"].as_array() {
        for e in list {
            let Some(k) = e["name"].as_str() else {
                continue;
            };
            if let Some(v) = e["value"].as_str() {
                env.insert(k.to_string(), v.to_string());
                continue;
            }
            let vf = &e["valueFrom"];
            let val = if let Some(r) = vf.get("secretKeyRef") {
                shared
                    .store
                    .try_get(
                        &registry::SECRETS,
                        Some(ns),
                        r["name"].as_str().unwrap_or(""),
                    )
                    .and_then(|o| {
                        o["data"][r["key"].as_str().unwrap_or("")]
                            .as_str()
                            .and_then(b64)
                    })
            } else if let Some(r) = vf.get("configMapKeyRef") {
                shared
                    .store
                    .try_get(
                        &registry::CONFIGMAPS,
                        Some(ns),
                        r["name"].as_str().unwrap_or(""),
                    )
                    .and_then(|o| {
                        o["data"][r["key"].as_str().unwrap_or("")]
                            .as_str()
                            .map(str::to_string)
                    })
            } else if let Some(r) = vf.get("fieldRef") {
                match r["fieldPath"].as_str().unwrap_or("") {
                    "metadata.name" => Some(name(pod).to_string()),
                    "metadata.namespace" => Some(ns.to_string()),
                    "metadata.uid" => Some(uid(pod).to_string()),
                    "spec.nodeName" => Some(NODE_NAME.to_string()),
                    "status.podIP" => pod["status"]["podIP"].as_str().map(str::to_string),
                    "status.hostIP" => Some("127.0.0.1".to_string()),
                    _ => None,
                }
            } else {
                None
            };
            if let Some(v) = val {
                env.insert(k.to_string(), v);
            }
        }
    }
    env
}

fn container_status<'a>(pod: &'a Value, container: &str) -> Option<&'a Value> {
    pod["status"]["containerStatuses"]
        .as_array()?
        .iter()
        .find(|s| s["name"].as_str() == Some(container))
}

/// Whether the container is running now.
pub fn container_running(pod: &Value, container: &str) -> bool {
    container_status(pod, container).is_some_and(|s| s["state"].get("running").is_some())
}

/// Whether the container ever started (so it has logs).
pub fn container_started_once(pod: &Value, container: &str) -> bool {
    container_status(pod, container).is_some_and(|s| {
        s["state"].get("running").is_some()
            || s["state"].get("terminated").is_some()
            || s["restartCount"].as_u64().unwrap_or(0) > 0
    })
}

/// The reason the container is waiting (`ContainerCreating`,
/// `ImagePullBackOff`, ...), if it is.
pub fn waiting_reason(pod: &Value, container: &str) -> Option<String> {
    container_status(pod, container)
        .and_then(|s| s["state"]["waiting"]["reason"].as_str())
        .map(str::to_string)
}

/// Whether the pod's Ready condition is True.
pub fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// The pod's IP, or the node's when it has none yet.
pub fn pod_ip_of(shared: &Shared, ns: &str, pod: &str) -> String {
    shared
        .store
        .try_get(&registry::PODS, Some(ns), pod)
        .and_then(|p| p["status"]["podIP"].as_str().map(str::to_string))
        .unwrap_or_else(|| "127.0.0.1".to_string())
}

/// What one container is doing, kept by its pod task.
#[derive(Clone)]
struct CState {
    /// `containerStatuses[i]` as it will be written.
    status: Value,
    running_since: Option<Instant>,
    ready: bool,
    /// Exit code once finished for good (run-to-completion pods).
    finished: Option<i32>,
}

fn hex_of(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn image_id(image: &str) -> String {
    let repo = image.split('@').next().unwrap_or(image);
    let repo = match repo.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => r,
        _ => repo,
    };
    let repo = if repo.contains('/') {
        if repo
            .split('/')
            .next()
            .is_some_and(|h| h.contains('.') || h.contains(':'))
        {
            repo.to_string()
        } else {
            format!("docker.io/{repo}")
        }
    } else {
        format!("docker.io/library/{repo}")
    };
    format!("{repo}@sha256:{}", hex_of(image))
}

async fn run_pod(shared: Arc<Shared>, pod: Value, ip: String, cancel: CancellationToken) {
    let ns = namespace(&pod).to_string();
    let pname = name(&pod).to_string();
    let restart_policy = pod["spec"]["restartPolicy"]
        .as_str()
        .unwrap_or("Always")
        .to_string();
    // Scheduling: wait (Pending, PodScheduled False) while the node has no
    // room for the pod's requests.
    if !wait_for_room(&shared, &pod, &cancel).await {
        return;
    }
    let started_at = now();
    let qos = qos_class(&pod["spec"]);
    let scheduled = shared.store.mutate(&registry::PODS, Some(&ns), &pname, |p| {
        p["spec"]["nodeName"] = json!(NODE_NAME);
        let st = &mut p["status"];
        st["phase"] = json!("Pending");
        st["hostIP"] = json!("127.0.0.1");
        st["hostIPs"] = json!([{"ip": "127.0.0.1"}]);
        st["podIP"] = json!(ip);
        st["podIPs"] = json!([{"ip": ip}]);
        st["startTime"] = json!(started_at);
        st["qosClass"] = json!(qos);
        st["conditions"] = json!([
            {"type": "PodReadyToStartContainers", "status": "False", "lastProbeTime": null, "lastTransitionTime": started_at},
            {"type": "Initialized", "status": "True", "lastProbeTime": null, "lastTransitionTime": started_at},
            {"type": "Ready", "status": "False", "lastProbeTime": null, "lastTransitionTime": started_at, "reason": "ContainersNotReady", "message": "containers with unready status: []"},
            {"type": "ContainersReady", "status": "False", "lastProbeTime": null, "lastTransitionTime": started_at, "reason": "ContainersNotReady", "message": "containers with unready status: []"},
            {"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": started_at},
        ]);
    });
    let Ok(pod) = scheduled else {
        return;
    };
    events::record(
        &shared,
        &pod,
        EventType::Normal,
        "Scheduled",
        &format!("Successfully assigned {ns}/{pname} to {NODE_NAME}"),
        "default-scheduler",
        "",
    );

    let specs: Vec<Value> = pod["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !run_init_containers(&shared, &pod, &restart_policy, &cancel).await {
        return;
    }
    let mut containers = Vec::new();
    let mut states = Vec::new();
    for spec in &specs {
        let cname = spec["name"].as_str().unwrap_or("").to_string();
        let Some(c) = container_ref(&shared, &pod, &cname) else {
            continue;
        };
        let Some(rt) = shared.runtimes.for_image(&c.image) else {
            continue;
        };
        states.push(CState {
            status: json!({
                "name": cname,
                "image": c.image,
                "imageID": "",
                "ready": false,
                "started": false,
                "restartCount": 0,
                "state": {"waiting": {"reason": "ContainerCreating"}},
                "lastState": {},
            }),
            running_since: None,
            ready: false,
            finished: None,
        });
        containers.push((c, rt, spec.clone()));
    }
    let states = Arc::new(Mutex::new(states));
    let changed = Arc::new(Notify::new());
    write_status(&shared, &ns, &pname, &states, &restart_policy);

    let mut drivers = Vec::new();
    for (i, (c, rt, spec)) in containers.iter().cloned().enumerate() {
        let d = ContainerDriver {
            shared: shared.clone(),
            pod: pod.clone(),
            c,
            rt,
            spec,
            index: i,
            states: states.clone(),
            changed: changed.clone(),
            restart_policy: restart_policy.clone(),
        };
        let cancel = cancel.clone();
        drivers.push(tokio::spawn(async move {
            tokio::select! {
                _ = d.run() => {}
                _ = cancel.cancelled() => {}
            }
        }));
    }

    // Readiness and status, until deleted or finished.
    let ready_delay = shared.options.pod_ready_delay;
    loop {
        // Readiness probes.
        let probes: Vec<(usize, bool)> = {
            let st = states.lock().unwrap_or_else(|e| e.into_inner());
            st.iter()
                .enumerate()
                .map(|(i, s)| {
                    (
                        i,
                        s.running_since.is_some_and(|t| t.elapsed() >= ready_delay),
                    )
                })
                .collect()
        };
        for (i, eligible) in probes {
            let ready = if eligible {
                let (c, rt, _) = &containers[i];
                tokio::select! {
                    r = rt.ready(c) => r,
                    _ = cancel.cancelled() => false,
                }
            } else {
                false
            };
            let mut st = states.lock().unwrap_or_else(|e| e.into_inner());
            let s = &mut st[i];
            s.ready = ready && s.running_since.is_some();
            s.status["ready"] = json!(s.ready);
        }
        if cancel.is_cancelled() {
            break;
        }
        let finished = write_status(&shared, &ns, &pname, &states, &restart_policy);
        if finished {
            break;
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(STATUS_EVERY) => {}
            _ = changed.notified() => {}
        }
    }
    for d in drivers {
        let _ = d.await;
    }
    // Stop the containers (pod deleted, or finished).
    for (c, rt, _) in &containers {
        rt.stop(c).await;
    }
    // emptyDir volumes go with the pod.
    let _ = std::fs::remove_dir_all(
        shared
            .options
            .data_dir
            .join("emptydir")
            .join(&ns)
            .join(&pname)
            .join(uid(&pod)),
    );
}

/// How often an unschedulable pod is tried again.
const SCHEDULE_RETRY: Duration = Duration::from_millis(500);

/// Holds a pod back until the node's `status.allocatable` CPU and memory,
/// less the requests of the pods already on it, cover its requests (as the
/// scheduler's NodeResourcesFit does), reporting `FailedScheduling` like
/// the real one meanwhile. False when the pod was deleted first.
async fn wait_for_room(shared: &Shared, pod: &Value, cancel: &CancellationToken) -> bool {
    let (ns, pname) = (namespace(pod), name(pod));
    let mut reported = String::new();
    loop {
        let Some(short) = lacking_resources(shared, pod) else {
            return true;
        };
        let message = format!(
            "0/1 nodes are available: 1 Insufficient {short}. preemption: 0/1 nodes are \
             available: 1 No preemption victims found for incoming pod."
        );
        if message != reported {
            let ts = now();
            let _ = shared.store.mutate(&registry::PODS, Some(ns), pname, |p| {
                let qos = qos_class(&p["spec"]);
                let st = &mut p["status"];
                st["phase"] = json!("Pending");
                st["qosClass"] = json!(qos);
                st["conditions"] = json!([{
                    "type": "PodScheduled", "status": "False", "lastProbeTime": null,
                    "lastTransitionTime": ts, "reason": "Unschedulable", "message": message,
                }]);
            });
            events::record(
                shared,
                pod,
                EventType::Warning,
                "FailedScheduling",
                &message,
                "default-scheduler",
                "",
            );
            reported = message;
        }
        tokio::select! {
            _ = cancel.cancelled() => return false,
            _ = tokio::time::sleep(SCHEDULE_RETRY) => {}
        }
    }
}

/// What the node lacks for `pod` (`cpu`, `memory`, `cpu, 1 Insufficient
/// memory`), or None when it fits.
fn lacking_resources(shared: &Shared, pod: &Value) -> Option<String> {
    let node = shared.store.try_get(&registry::NODES, None, NODE_NAME)?;
    let want = pod_requests(&pod["spec"]);
    let mut used = [0i128; 2];
    for p in shared.store.snapshot(&registry::PODS, None) {
        if uid(&p) == uid(pod)
            || super::terminating(&p)
            || p["spec"]["nodeName"].as_str() != Some(NODE_NAME)
            || matches!(
                p["status"]["phase"].as_str(),
                Some("Succeeded") | Some("Failed")
            )
        {
            continue;
        }
        let r = pod_requests(&p["spec"]);
        used[0] += r[0];
        used[1] += r[1];
    }
    let mut short = Vec::new();
    for (i, res) in ["cpu", "memory"].iter().enumerate() {
        let Some(alloc) = node["status"]["allocatable"][*res]
            .as_str()
            .and_then(|q| quantity(q, i == 0))
        else {
            continue;
        };
        if want[i] > 0 && want[i] > alloc - used[i] {
            short.push(*res);
        }
    }
    (!short.is_empty()).then(|| short.join(", 1 Insufficient "))
}

/// A pod's CPU (millicores) and memory (bytes) requests: its containers'
/// sum, or its largest init container's when that is more.
pub fn pod_requests(spec: &Value) -> [i128; 2] {
    let of = |c: &Value, i: usize| -> i128 {
        let key = ["cpu", "memory"][i];
        // A limit without a request requests the limit.
        let q = c["resources"]["requests"][key]
            .as_str()
            .or_else(|| c["resources"]["limits"][key].as_str());
        q.and_then(|q| quantity(q, i == 0)).unwrap_or(0)
    };
    [0, 1].map(|i| {
        let sum: i128 = spec["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| of(c, i))
            .sum();
        let init = spec["initContainers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| of(c, i))
            .max()
            .unwrap_or(0);
        sum.max(init)
    })
}

/// A Kubernetes quantity (`100m`, `2`, `0.5`, `128Mi`, `1G`) in
/// millicores (`milli`) or base units, rounded up.
pub fn quantity(q: &str, milli: bool) -> Option<i128> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let num: f64 = num.parse().ok()?;
    let factor: f64 = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0f64.powi(2),
        "Gi" => 1024.0f64.powi(3),
        "Ti" => 1024.0f64.powi(4),
        "Pi" => 1024.0f64.powi(5),
        "Ei" => 1024.0f64.powi(6),
        s => {
            // Decimal exponent: 1e3, 5E6.
            let e: i32 = s.strip_prefix(['e', 'E'])?.parse().ok()?;
            10f64.powi(e)
        }
    };
    let v = num * factor * if milli { 1000.0 } else { 1.0 };
    Some(v.ceil() as i128)
}

/// The pod's QoS class, as the API server computes it.
fn qos_class(spec: &Value) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|k| spec[*k].as_array())
        .flatten()
        .collect();
    let res =
        |c: &Value, kind: &str, key: &str| c["resources"][kind][key].as_str().map(str::to_string);
    let any = containers.iter().any(|c| {
        ["requests", "limits"].iter().any(|k| {
            c["resources"][*k]
                .as_object()
                .is_some_and(|o| o.contains_key("cpu") || o.contains_key("memory"))
        })
    });
    if !any {
        return "BestEffort";
    }
    let guaranteed = containers.iter().all(|c| {
        ["cpu", "memory"].iter().all(|k| {
            let limit = res(c, "limits", k);
            limit.is_some() && res(c, "requests", k).is_none_or(|r| Some(r) == limit)
        })
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

fn set_init_status(
    shared: &Shared,
    pod: &Value,
    statuses: &[Value],
    initialized: bool,
    phase: Option<&str>,
) {
    let pending: Vec<String> = statuses
        .iter()
        .filter(|s| s["state"]["terminated"]["exitCode"] != 0)
        .filter_map(|s| s["name"].as_str().map(str::to_string))
        .collect();
    let ts = now();
    let _ = shared
        .store
        .mutate(&registry::PODS, Some(namespace(pod)), name(pod), |p| {
            let st = &mut p["status"];
            st["initContainerStatuses"] = json!(statuses);
            if let Some(ph) = phase {
                st["phase"] = json!(ph);
            }
            if let Some(conds) = st["conditions"].as_array_mut()
                && let Some(c) = conds.iter_mut().find(|c| c["type"] == "Initialized")
            {
                let want = if initialized { "True" } else { "False" };
                if c["status"] != want {
                    c["status"] = json!(want);
                    c["lastTransitionTime"] = json!(ts);
                }
                if initialized {
                    if let Some(o) = c.as_object_mut() {
                        o.remove("reason");
                        o.remove("message");
                    }
                } else {
                    c["reason"] = json!("ContainersNotInitialized");
                    c["message"] = json!(format!(
                        "containers with incomplete status: [{}]",
                        pending.join(" ")
                    ));
                }
            }
            if !initialized && let Some(cs) = p["spec"]["containers"].as_array().cloned() {
                p["status"]["containerStatuses"] = json!(
                    cs.iter()
                        .map(|c| json!({
                            "name": c["name"], "image": c["image"], "imageID": "",
                            "ready": false, "started": false, "restartCount": 0,
                            "state": {"waiting": {"reason": "PodInitializing"}},
                            "lastState": {},
                        }))
                        .collect::<Vec<_>>()
                );
            }
        });
}

/// Runs the pod's init containers in order, each to completion (retrying
/// failures unless `restartPolicy: Never`). False when the pod was deleted
/// or failed.
async fn run_init_containers(
    shared: &Arc<Shared>,
    pod: &Value,
    restart_policy: &str,
    cancel: &CancellationToken,
) -> bool {
    let Some(inits) = pod["spec"]["initContainers"].as_array().cloned() else {
        return true;
    };
    if inits.is_empty() {
        return true;
    }
    let mut statuses: Vec<Value> = inits
        .iter()
        .map(|c| {
            json!({
                "name": c["name"], "image": c["image"], "imageID": "",
                "ready": false, "started": false, "restartCount": 0,
                "state": {"waiting": {"reason": "PodInitializing"}},
                "lastState": {},
            })
        })
        .collect();
    set_init_status(shared, pod, &statuses, false, None);
    for (i, spec) in inits.iter().enumerate() {
        let cname = spec["name"].as_str().unwrap_or("").to_string();
        let Some(c) = container_ref(shared, pod, &cname) else {
            continue;
        };
        let Some(rt) = shared.runtimes.for_image(&c.image) else {
            continue;
        };
        let _ = crate::runtimes::shell::prepare_root(&c.root);
        super::volumes::project(shared, pod, spec, &c.root);
        if let Some(dir) = c.log_path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let field = format!("spec.initContainers{{{cname}}}");
        let ev = |t: EventType, reason: &str, msg: &str| {
            events::record(shared, pod, t, reason, msg, "kubelet", &field);
        };
        let mut backoff = Duration::from_secs(1);
        loop {
            ev(
                EventType::Normal,
                "Pulled",
                &format!("Container image \"{}\" already present on machine", c.image),
            );
            ev(
                EventType::Normal,
                "Created",
                &format!("Created container: {cname}"),
            );
            ev(
                EventType::Normal,
                "Started",
                &format!("Started container {cname}"),
            );
            let started = now();
            statuses[i]["state"] = json!({"running": {"startedAt": started}});
            statuses[i]["started"] = json!(true);
            statuses[i]["imageID"] = json!(image_id(&c.image));
            set_init_status(shared, pod, &statuses, false, None);
            let mut command: Vec<String> = Vec::new();
            for key in ["command", "args"] {
                if let Some(a) = spec[key].as_array() {
                    command.extend(a.iter().filter_map(|x| x.as_str().map(str::to_string)));
                }
            }
            let exit = if command.is_empty() {
                0
            } else {
                let open = || {
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&c.log_path)
                };
                match (open(), open()) {
                    (Ok(out), Ok(err)) => {
                        let io = ExecIo {
                            stdin: None,
                            stdout: Box::pin(tokio::fs::File::from_std(out)),
                            stderr: Box::pin(tokio::fs::File::from_std(err)),
                            tty: false,
                        };
                        tokio::select! {
                            o = rt.exec(&c, command, io) => match o {
                                ExecOutcome::Exit(n) => n,
                                ExecOutcome::Failed(_) => 128,
                            },
                            _ = cancel.cancelled() => return false,
                        }
                    }
                    _ => 128,
                }
            };
            let terminated = json!({"terminated": {
                "exitCode": exit, "reason": if exit == 0 { "Completed" } else { "Error" },
                "startedAt": started, "finishedAt": now(),
            }});
            statuses[i]["started"] = json!(false);
            if exit == 0 {
                statuses[i]["state"] = terminated;
                statuses[i]["ready"] = json!(true);
                set_init_status(shared, pod, &statuses, false, None);
                break;
            }
            if restart_policy == "Never" {
                statuses[i]["state"] = terminated;
                set_init_status(shared, pod, &statuses, false, Some("Failed"));
                return false;
            }
            let restarts = statuses[i]["restartCount"].as_u64().unwrap_or(0) + 1;
            statuses[i]["restartCount"] = json!(restarts);
            statuses[i]["lastState"] = terminated;
            statuses[i]["state"] = json!({"waiting": {"reason": "CrashLoopBackOff",
                "message": format!("back-off {}s restarting failed container={cname}", backoff.as_secs())}});
            set_init_status(shared, pod, &statuses, false, None);
            ev(
                EventType::Warning,
                "BackOff",
                &format!(
                    "Back-off restarting failed container {cname} in pod {}_{}({})",
                    name(pod),
                    namespace(pod),
                    uid(pod)
                ),
            );
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = cancel.cancelled() => return false,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
    set_init_status(shared, pod, &statuses, true, None);
    true
}

/// Writes the pod status computed from the containers' states; returns
/// true when the pod has finished (run-to-completion pods).
fn write_status(
    shared: &Shared,
    ns: &str,
    pname: &str,
    states: &Mutex<Vec<CState>>,
    restart_policy: &str,
) -> bool {
    let st = states.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let all_ready = !st.is_empty() && st.iter().all(|s| s.ready);
    let any_running = st.iter().any(|s| s.running_since.is_some());
    let all_finished = !st.is_empty() && st.iter().all(|s| s.finished.is_some());
    let phase = if all_finished && restart_policy != "Always" {
        if st.iter().all(|s| s.finished == Some(0)) {
            "Succeeded"
        } else {
            "Failed"
        }
    } else if any_running
        || st
            .iter()
            .any(|s| s.status["restartCount"].as_u64() > Some(0))
    {
        "Running"
    } else {
        "Pending"
    };
    let unready: Vec<String> = st
        .iter()
        .filter(|s| !s.ready)
        .filter_map(|s| s.status["name"].as_str().map(str::to_string))
        .collect();
    let statuses: Vec<Value> = st.iter().map(|s| s.status.clone()).collect();
    let ts = now();
    let finished = phase == "Succeeded" || phase == "Failed";
    let _ = shared.store.mutate(&registry::PODS, Some(ns), pname, |p| {
        let status = &mut p["status"];
        status["phase"] = json!(phase);
        status["containerStatuses"] = json!(statuses);
        let sandbox_ready = !finished;
        let mut conds = status["conditions"].as_array().cloned().unwrap_or_default();
        let mut set = |t: &str, ok: bool, reason: Option<&str>, message: Option<String>| {
            let want = if ok { "True" } else { "False" };
            if let Some(c) = conds.iter_mut().find(|c| c["type"] == t) {
                if c["status"] != want {
                    c["status"] = json!(want);
                    c["lastTransitionTime"] = json!(ts);
                }
                match (ok, reason) {
                    (false, Some(r)) => {
                        c["reason"] = json!(r);
                        c["message"] = json!(message.unwrap_or_default());
                    }
                    _ => {
                        if let Some(o) = c.as_object_mut() {
                            o.remove("reason");
                            o.remove("message");
                        }
                    }
                }
            }
        };
        set(
            "PodReadyToStartContainers",
            sandbox_ready || any_running,
            None,
            None,
        );
        let (reason, msg) = if finished {
            ("PodCompleted", String::new())
        } else {
            (
                "ContainersNotReady",
                format!("containers with unready status: [{}]", unready.join(" ")),
            )
        };
        set(
            "Ready",
            all_ready && !finished,
            Some(reason),
            Some(msg.clone()),
        );
        set(
            "ContainersReady",
            all_ready && !finished,
            Some(reason),
            Some(msg),
        );
        status["conditions"] = json!(conds);
    });
    finished
}

struct ContainerDriver {
    shared: Arc<Shared>,
    pod: Value,
    c: ContainerRef,
    rt: Arc<dyn ImageRuntime>,
    spec: Value,
    index: usize,
    states: Arc<Mutex<Vec<CState>>>,
    changed: Arc<Notify>,
    restart_policy: String,
}

impl ContainerDriver {
    fn update(&self, f: impl FnOnce(&mut CState)) {
        {
            let mut st = self.states.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut st[self.index]);
        }
        self.changed.notify_one();
    }

    fn event(&self, t: EventType, reason: &str, message: &str) {
        events::record(
            &self.shared,
            &self.pod,
            t,
            reason,
            message,
            "kubelet",
            &format!("spec.containers{{{}}}", self.c.container),
        );
    }

    fn log_line(&self, line: &str) {
        use std::io::Write;
        if let Some(dir) = self.c.log_path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.c.log_path)
        {
            let _ = writeln!(f, "{line}");
        }
    }

    async fn run(self) {
        let image = self.c.image.clone();
        let tag = self.c.image_tag().to_string();
        let cname = self.c.container.clone();
        let pod_desc = format!("{}_{}({})", self.c.pod, self.c.namespace, uid(&self.pod));
        if let Some(dir) = self.c.log_path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = crate::runtimes::shell::prepare_root(&self.c.root);
        super::volumes::project(&self.shared, &self.pod, &self.spec, &self.c.root);

        if tag.contains("broken") {
            let mut backoff = Duration::from_secs(1);
            loop {
                self.event(
                    EventType::Normal,
                    "Pulling",
                    &format!("Pulling image \"{image}\""),
                );
                let why = format!(
                    "failed to pull and unpack image \"{image}\": failed to resolve reference \"{image}\": \"{image}\": not found"
                );
                self.event(
                    EventType::Warning,
                    "Failed",
                    &format!(
                        "Failed to pull image \"{image}\": rpc error: code = NotFound desc = {why}"
                    ),
                );
                self.event(EventType::Warning, "Failed", "Error: ErrImagePull");
                self.update(|s| {
                    s.status["state"] = json!({"waiting": {
                        "reason": "ErrImagePull",
                        "message": format!("rpc error: code = NotFound desc = {why}"),
                    }});
                });
                tokio::time::sleep(Duration::from_millis(500)).await;
                self.event(
                    EventType::Normal,
                    "BackOff",
                    &format!("Back-off pulling image \"{image}\""),
                );
                self.event(EventType::Warning, "Failed", "Error: ImagePullBackOff");
                self.update(|s| {
                    s.status["state"] = json!({"waiting": {
                        "reason": "ImagePullBackOff",
                        "message": format!("Back-off pulling image \"{image}\": ErrImagePull: rpc error: code = NotFound desc = {why}"),
                    }});
                });
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }

        let mut restarts: u64 = 0;
        let mut backoff = Duration::from_secs(1);
        loop {
            self.event(
                EventType::Normal,
                "Pulled",
                &format!("Container image \"{image}\" already present on machine"),
            );
            self.event(
                EventType::Normal,
                "Created",
                &format!("Created container: {cname}"),
            );
            let started = now();
            let container_id = format!(
                "containerd://{}",
                hex_of(&format!("{}/{cname}/{restarts}", uid(&self.pod)))
            );
            let start_result = if tag.contains("crashloop") {
                Ok(())
            } else {
                self.rt.start(&self.c).await
            };
            let exit: i32 = match start_result {
                Err(e)
                    if e.downcast_ref::<crate::runtime::ContainerExited>()
                        .is_some() =>
                {
                    // The process started, said why in its log and exited.
                    let code = e
                        .downcast_ref::<crate::runtime::ContainerExited>()
                        .map_or(1, |x| x.code);
                    self.event(
                        EventType::Normal,
                        "Started",
                        &format!("Started container {cname}"),
                    );
                    self.update(|s| {
                        s.status["state"] = json!({"running": {"startedAt": started}});
                        s.status["started"] = json!(true);
                        s.status["imageID"] = json!(image_id(&image));
                        s.status["containerID"] = json!(container_id);
                    });
                    self.rt.stop(&self.c).await;
                    code
                }
                Err(e) => {
                    self.log_line(&format!("container failed to start: {e:#}"));
                    self.event(
                        EventType::Warning,
                        "Failed",
                        &format!("Error: failed to start container \"{cname}\": {e:#}"),
                    );
                    self.rt.stop(&self.c).await;
                    128
                }
                Ok(()) => {
                    self.event(
                        EventType::Normal,
                        "Started",
                        &format!("Started container {cname}"),
                    );
                    self.update(|s| {
                        s.running_since = Some(Instant::now());
                        s.status["state"] = json!({"running": {"startedAt": started}});
                        s.status["started"] = json!(true);
                        s.status["imageID"] = json!(image_id(&image));
                        s.status["containerID"] = json!(container_id);
                    });
                    self.main_process(&tag).await
                }
            };
            // The container ended.
            let finished_at = now();
            let reason = if exit == 0 { "Completed" } else { "Error" };
            let terminated = json!({"terminated": {
                "exitCode": exit, "reason": reason, "startedAt": started,
                "finishedAt": finished_at, "containerID": container_id,
            }});
            let done = match self.restart_policy.as_str() {
                "Never" => true,
                "OnFailure" => exit == 0,
                _ => false,
            };
            if done {
                self.update(|s| {
                    s.running_since = None;
                    s.ready = false;
                    s.status["ready"] = json!(false);
                    s.status["started"] = json!(false);
                    s.status["state"] = terminated.clone();
                    s.finished = Some(exit);
                });
                return;
            }
            if !tag.contains("crashloop") {
                self.rt.stop(&self.c).await;
            }
            restarts += 1;
            self.event(
                EventType::Warning,
                "BackOff",
                &format!("Back-off restarting failed container {cname} in pod {pod_desc}"),
            );
            let wait = backoff;
            self.update(|s| {
                s.running_since = None;
                s.ready = false;
                s.status["ready"] = json!(false);
                s.status["started"] = json!(false);
                s.status["restartCount"] = json!(restarts);
                s.status["lastState"] = terminated.clone();
                s.status["state"] = json!({"waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": format!("back-off {}s restarting failed container={cname} pod={pod_desc}", wait.as_secs()),
                }});
            });
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// The container's main process: runs until it exits (its exit code)
    /// or forever (servers live in the runtime).
    async fn main_process(&self, tag: &str) -> i32 {
        if tag.contains("crashloop") {
            self.log_line("fatal: the process exited right after starting (crashloop image)");
            tokio::time::sleep(Duration::from_millis(300)).await;
            return 1;
        }
        let mut command: Vec<String> = Vec::new();
        for key in ["command", "args"] {
            if let Some(a) = self.spec[key].as_array() {
                command.extend(a.iter().filter_map(|x| x.as_str().map(str::to_string)));
            }
        }
        let run_to_completion = self.restart_policy != "Always";
        if command.is_empty() || !(run_to_completion || self.rt.name() == "shell") {
            // A bare shell image without a command has nothing to run; a
            // server image's entrypoint (PostgreSQL, OpenBao, the backend)
            // serves until stopped, whatever the restart policy.
            if run_to_completion && command.is_empty() && self.rt.name() == "shell" {
                return 0;
            }
            futures::future::pending::<()>().await;
            return 0;
        }
        let open = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.c.log_path)
        };
        let (Ok(out), Ok(err)) = (open(), open()) else {
            return 128;
        };
        let io = ExecIo {
            stdin: None,
            stdout: Box::pin(tokio::fs::File::from_std(out)),
            stderr: Box::pin(tokio::fs::File::from_std(err)),
            tty: false,
        };
        match self.rt.exec(&self.c, command, io).await {
            ExecOutcome::Exit(n) => n,
            ExecOutcome::Failed(msg) => {
                self.log_line(&msg);
                128
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_as_kubernetes_writes_them() {
        assert_eq!(quantity("100m", true), Some(100));
        assert_eq!(quantity("2", true), Some(2000));
        assert_eq!(quantity("0.5", true), Some(500));
        assert_eq!(quantity("128Mi", false), Some(128 << 20));
        assert_eq!(quantity("23Gi", false), Some(23 << 30));
        assert_eq!(quantity("1G", false), Some(1_000_000_000));
        assert_eq!(quantity("1e3", false), Some(1000));
        assert_eq!(quantity("abc", false), None);
    }

    #[test]
    fn requests_sum_containers_and_cover_init_containers() {
        let spec = json!({
            "initContainers": [{"resources": {"requests": {"cpu": "1"}}}],
            "containers": [
                {"resources": {"requests": {"cpu": "250m", "memory": "256Mi"}}},
                {"resources": {"limits": {"cpu": "100m", "memory": "64Mi"}}},
            ],
        });
        assert_eq!(pod_requests(&spec), [1000, 320 << 20]);
        assert_eq!(qos_class(&spec), "Burstable");
        assert_eq!(qos_class(&json!({"containers": [{}]})), "BestEffort");
        let g = json!({"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]});
        assert_eq!(qos_class(&g), "Guaranteed");
    }
}
