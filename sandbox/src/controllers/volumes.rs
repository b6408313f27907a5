//! PersistentVolumeClaim binding: every pending claim gets a
//! PersistentVolume `pvc-<uid>` of the requested size and is Bound to it.

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
