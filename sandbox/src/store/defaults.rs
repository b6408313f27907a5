//! Defaults the API server fills in, per kind, so clients that read them
//! (`kubectl rollout status` reads the strategy, Helm reads clusterIP) see
//! what a real cluster shows.

use base64::Engine;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::registry::{self, ResourceType};

fn set_default(obj: &mut Value, path: &[&str], v: Value) {
    let mut cur = obj;
    for (i, seg) in path.iter().enumerate() {
        if !cur.is_object() {
            return;
        }
        if i == path.len() - 1 {
            if cur.get(*seg).is_none_or(Value::is_null) {
                cur[*seg] = v;
            }
            return;
        }
        if cur.get(*seg).is_none_or(Value::is_null) {
            cur[*seg] = json!({});
        }
        cur = &mut cur[*seg];
    }
}

/// Defaults applied on create only (allocations).
pub(super) fn on_create(
    rt: &ResourceType,
    obj: &mut Value,
    ip_counter: &mut u32,
) -> Result<(), ApiError> {
    if rt.same(&registry::SERVICES) {
        let headless = obj.pointer("/spec/clusterIP").and_then(Value::as_str) == Some("None");
        let t = obj
            .pointer("/spec/type")
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP");
        if !headless
            && t != "ExternalName"
            && obj
                .pointer("/spec/clusterIP")
                .is_none_or(|v| v.as_str() == Some(""))
        {
            *ip_counter += 1;
            let n = *ip_counter + 1;
            let ip = format!("10.96.{}.{}", n / 250, n % 250 + 1);
            set_default(obj, &["spec"], json!({}));
            obj["spec"]["clusterIP"] = json!(ip);
        }
        if let Some(ip) = obj.pointer("/spec/clusterIP").cloned() {
            set_default(obj, &["spec", "clusterIPs"], json!([ip]));
        }
    }
    if rt.same(&registry::NAMESPACES) {
        let name = obj["metadata"]["name"].clone();
        set_default(
            obj,
            &["metadata", "labels", "kubernetes.io/metadata.name"],
            name,
        );
        obj["status"] = json!({"phase": "Active"});
        set_default(obj, &["spec", "finalizers"], json!(["kubernetes"]));
    }
    if rt.same(&registry::JOBS) {
        job_selector(obj);
    }
    if rt.same(&registry::PODS) && obj.get("status").is_none_or(|s| s.get("phase").is_none()) {
        set_default(obj, &["status", "phase"], json!("Pending"));
        set_default(obj, &["status", "qosClass"], json!("BestEffort"));
    }
    Ok(())
}

/// The selector and pod labels the API server generates from a new Job's
/// uid (unless `manualSelector`), which `kubectl logs job/NAME` relies on.
fn job_selector(obj: &mut Value) {
    if !obj["spec"].is_object()
        || obj.pointer("/spec/manualSelector").and_then(Value::as_bool) == Some(true)
    {
        return;
    }
    let uid = obj["metadata"]["uid"].clone();
    let name = obj["metadata"]["name"].clone();
    set_default(
        obj,
        &["spec", "selector"],
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
    );
    set_default(obj, &["spec", "template", "metadata", "labels"], json!({}));
    if let Some(labels) = obj
        .pointer_mut("/spec/template/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        for (k, v) in [
            ("batch.kubernetes.io/controller-uid", &uid),
            ("batch.kubernetes.io/job-name", &name),
            ("controller-uid", &uid),
            ("job-name", &name),
        ] {
            labels.insert(k.to_string(), v.clone());
        }
    }
}

fn default_containers(list: Option<&mut Value>) {
    if let Some(cs) = list.and_then(Value::as_array_mut) {
        for c in cs {
            set_default(
                c,
                &["terminationMessagePath"],
                json!("/dev/termination-log"),
            );
            set_default(c, &["terminationMessagePolicy"], json!("File"));
            let latest = c["image"]
                .as_str()
                .is_some_and(|i| crate::runtime::image_tag(i) == "latest");
            set_default(
                c,
                &["imagePullPolicy"],
                json!(if latest { "Always" } else { "IfNotPresent" }),
            );
            set_default(c, &["resources"], json!({}));
            if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
                for p in ports {
                    set_default(p, &["protocol"], json!("TCP"));
                }
            }
        }
    }
}

fn default_pod_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    set_default(spec, &["restartPolicy"], json!("Always"));
    set_default(spec, &["terminationGracePeriodSeconds"], json!(30));
    set_default(spec, &["dnsPolicy"], json!("ClusterFirst"));
    set_default(spec, &["schedulerName"], json!("default-scheduler"));
    set_default(spec, &["securityContext"], json!({}));
    default_containers(spec.get_mut("containers"));
    default_containers(spec.get_mut("initContainers"));
}

/// Defaults applied on every write (idempotent).
pub(super) fn apply(rt: &ResourceType, obj: &mut Value) {
    if rt.same(&registry::SECRETS) {
        set_default(obj, &["type"], json!("Opaque"));
        // stringData is write-only: merged into data, as the API server does.
        if let Some(Value::Object(sd)) = obj.as_object_mut().and_then(|o| o.remove("stringData")) {
            for (k, v) in sd {
                let enc = base64::engine::general_purpose::STANDARD
                    .encode(v.as_str().unwrap_or_default().as_bytes());
                set_default(obj, &["data"], json!({}));
                obj["data"][k] = json!(enc);
            }
        }
    } else if rt.same(&registry::SERVICES) {
        set_default(obj, &["spec", "type"], json!("ClusterIP"));
        set_default(obj, &["spec", "sessionAffinity"], json!("None"));
        if let Some(ports) = obj.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
            for p in ports {
                set_default(p, &["protocol"], json!("TCP"));
                let port = p["port"].clone();
                set_default(p, &["targetPort"], port);
            }
        }
    } else if rt.same(&registry::PODS) {
        if let Some(spec) = obj.get_mut("spec") {
            default_pod_spec(spec);
        }
    } else if rt.same(&registry::DEPLOYMENTS) {
        set_default(obj, &["spec", "replicas"], json!(1));
        set_default(obj, &["spec", "revisionHistoryLimit"], json!(10));
        set_default(obj, &["spec", "progressDeadlineSeconds"], json!(600));
        if obj.pointer("/spec/strategy/type").is_none() {
            set_default(obj, &["spec", "strategy", "type"], json!("RollingUpdate"));
        }
        if obj.pointer("/spec/strategy/type").and_then(Value::as_str) == Some("RollingUpdate") {
            set_default(
                obj,
                &["spec", "strategy", "rollingUpdate", "maxUnavailable"],
                json!("25%"),
            );
            set_default(
                obj,
                &["spec", "strategy", "rollingUpdate", "maxSurge"],
                json!("25%"),
            );
        }
        template(obj);
    } else if rt.same(&registry::STATEFULSETS) {
        set_default(obj, &["spec", "replicas"], json!(1));
        set_default(obj, &["spec", "revisionHistoryLimit"], json!(10));
        set_default(obj, &["spec", "podManagementPolicy"], json!("OrderedReady"));
        if obj.pointer("/spec/updateStrategy/type").is_none() {
            set_default(
                obj,
                &["spec", "updateStrategy", "type"],
                json!("RollingUpdate"),
            );
        }
        if obj
            .pointer("/spec/updateStrategy/type")
            .and_then(Value::as_str)
            == Some("RollingUpdate")
        {
            set_default(
                obj,
                &["spec", "updateStrategy", "rollingUpdate", "partition"],
                json!(0),
            );
        }
        template(obj);
    } else if rt.same(&registry::REPLICASETS) || rt.same(&registry::DAEMONSETS) {
        if rt.same(&registry::REPLICASETS) {
            set_default(obj, &["spec", "replicas"], json!(1));
        }
        template(obj);
    } else if rt.same(&registry::JOBS) {
        set_default(obj, &["spec", "parallelism"], json!(1));
        set_default(obj, &["spec", "completions"], json!(1));
        set_default(obj, &["spec", "backoffLimit"], json!(6));
        template(obj);
    }
}

fn template(obj: &mut Value) {
    if let Some(spec) = obj.pointer_mut("/spec/template/spec") {
        default_pod_spec(spec);
    }
}
