//! Volumes: PersistentVolumeClaim binding (every pending claim gets a
//! PersistentVolume `pvc-<uid>` of the requested size and is Bound to it),
//! and what a container sees of its `volumeMounts` ([`project`]).

use std::path::Path;

use serde_json::json;

use super::{name, namespace, uid};
use crate::registry;
use crate::state::Shared;

pub fn reconcile(shared: &Shared) {
    for pvc in shared
        .store
        .snapshot(&registry::PERSISTENTVOLUMECLAIMS, None)
    {
        if pvc["status"]["phase"].as_str() == Some("Bound") || super::terminating(&pvc) {
            continue;
        }
        let ns = namespace(&pvc).to_string();
        let pv_name = format!("pvc-{}", uid(&pvc));
        let size = pvc["spec"]["resources"]["requests"]["storage"]
            .as_str()
            .unwrap_or("1Gi")
            .to_string();
        let modes = if pvc["spec"]["accessModes"].is_array() {
            pvc["spec"]["accessModes"].clone()
        } else {
            json!(["ReadWriteOnce"])
        };
        let class = pvc["spec"]["storageClassName"]
            .as_str()
            .unwrap_or("standard")
            .to_string();
        if shared
            .store
            .try_get(&registry::PERSISTENTVOLUMES, None, &pv_name)
            .is_none()
        {
            let pv = json!({
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {
                    "name": pv_name,
                    "annotations": {"pv.kubernetes.io/provisioned-by": "sandbox.kleidia.io/local"},
                },
                "spec": {
                    "capacity": {"storage": size},
                    "accessModes": modes,
                    "persistentVolumeReclaimPolicy": "Delete",
                    "storageClassName": class,
                    "volumeMode": "Filesystem",
                    "hostPath": {"path": shared.options.data_dir.join("volumes").join(&pv_name).to_string_lossy()},
                    "claimRef": {
                        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                        "namespace": ns, "name": name(&pvc), "uid": uid(&pvc),
                    },
                },
            });
            let _ = shared.store.create(&registry::PERSISTENTVOLUMES, None, pv);
            let _ = shared
                .store
                .mutate(&registry::PERSISTENTVOLUMES, None, &pv_name, |v| {
                    v["status"] = json!({"phase": "Bound"});
                });
        }
        let _ = shared.store.mutate(
            &registry::PERSISTENTVOLUMECLAIMS,
            Some(&ns),
            name(&pvc),
            |c| {
                c["spec"]["volumeName"] = json!(pv_name);
                c["spec"]["storageClassName"] = json!(class);
                c["spec"]["volumeMode"] = json!("Filesystem");
                c["status"] = json!({
                    "phase": "Bound",
                    "accessModes": modes,
                    "capacity": {"storage": size},
                });
                c["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"] = json!("yes");
            },
        );
    }
}

/// Makes a container's `volumeMounts` visible in its root, as a kubelet
/// mounts them: ConfigMap and Secret keys become files (Secret files 0600),
/// `emptyDir` volumes are a folder shared by the pod's containers, and
/// PersistentVolumeClaims a folder per claim that outlives the pods. Other
/// volume types are left out.
pub fn project(
    shared: &Shared,
    pod: &serde_json::Value,
    container: &serde_json::Value,
    root: &Path,
) {
    let ns = namespace(pod);
    let volumes = pod["spec"]["volumes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for m in container["volumeMounts"].as_array().into_iter().flatten() {
        let (Some(vname), Some(mount)) = (m["name"].as_str(), m["mountPath"].as_str()) else {
            continue;
        };
        let Some(vol) = volumes.iter().find(|v| v["name"].as_str() == Some(vname)) else {
            continue;
        };
        let target = root.join(mount.trim_start_matches('/'));
        let sub_path = m["subPath"].as_str().filter(|s| !s.is_empty());
        if let Some(cm) = vol.get("configMap") {
            let data = shared
                .store
                .try_get(
                    &registry::CONFIGMAPS,
                    Some(ns),
                    cm["name"].as_str().unwrap_or(""),
                )
                .map(|o| {
                    o["data"]
                        .as_object()
                        .map(|d| {
                            d.iter()
                                .map(|(k, v)| {
                                    (k.clone(), v.as_str().unwrap_or("").as_bytes().to_vec())
                                })
                                .collect::<Vec<_>>()
                        })
                        .unwrap_or_default()
                })
                .unwrap_or_default();
            write_keys(&target, sub_path, &cm["items"], data, 0o644);
        } else if let Some(sec) = vol.get("secret") {
            use base64::Engine;
            let data = shared
                .store
                .try_get(
                    &registry::SECRETS,
                    Some(ns),
                    sec["secretName"].as_str().unwrap_or(""),
                )
                .map(|o| {
                    o["data"]
                        .as_object()
                        .map(|d| {
                            d.iter()
                                .filter_map(|(k, v)| {
                                    let b = base64::engine::general_purpose::STANDARD
                                        .decode(v.as_str()?)
                                        .ok()?;
                                    Some((k.clone(), b))
                                })
                                .collect::<Vec<_>>()
                        })
                        .unwrap_or_default()
                })
                .unwrap_or_default();
            write_keys(&target, sub_path, &sec["items"], data, 0o600);
        } else {
            let dir = if vol.get("emptyDir").is_some() {
                shared
                    .options
                    .data_dir
                    .join("emptydir")
                    .join(ns)
                    .join(name(pod))
                    .join(uid(pod))
                    .join(vname)
            } else if let Some(claim) = vol["persistentVolumeClaim"]["claimName"].as_str() {
                shared.options.data_dir.join("claims").join(ns).join(claim)
            } else {
                continue;
            };
            let dir = match sub_path {
                Some(sp) => dir.join(sp),
                None => dir,
            };
            link_dir(&dir, &target);
        }
    }
}

/// `target` becomes a symlink to `dir` (created), unless it already is.
fn link_dir(dir: &Path, target: &Path) {
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    if let Ok(existing) = std::fs::read_link(target) {
        if existing == dir {
            return;
        }
        let _ = std::fs::remove_file(target);
    } else if target.is_dir() {
        // An empty folder (image skeleton) can be replaced; one with data
        // is left alone.
        if std::fs::remove_dir(target).is_err() {
            return;
        }
    }
    if let Some(parent) = target.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let _ = std::os::unix::fs::symlink(dir, target);
}

fn write_keys(
    target: &Path,
    sub_path: Option<&str>,
    items: &serde_json::Value,
    data: Vec<(String, Vec<u8>)>,
    mode: u32,
) {
    use std::os::unix::fs::PermissionsExt;
    // items: [{key, path}] selects and renames keys.
    let files: Vec<(String, Vec<u8>)> = match items.as_array() {
        Some(list) if !list.is_empty() => list
            .iter()
            .filter_map(|i| {
                let key = i["key"].as_str()?;
                let path = i["path"].as_str().unwrap_or(key);
                data.iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| (path.to_string(), v.clone()))
            })
            .collect(),
        _ => data,
    };
    let write = |path: &Path, content: &[u8]| {
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        if std::fs::write(path, content).is_ok() {
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
        }
    };
    match sub_path {
        Some(sp) => {
            if let Some((_, v)) = files.iter().find(|(k, _)| k == sp) {
                write(target, v);
            }
        }
        None => {
            for (k, v) in &files {
                write(&target.join(k), v);
            }
        }
    }
}
