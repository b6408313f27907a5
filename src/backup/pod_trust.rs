//! Whether a pod may receive a secret (the OpenBao token): it must be
//! controlled, directly or through its ReplicaSet, by the workload of the
//! expected release that discovery chose (the live object, matched by
//! uid), run the discovered container, and run the image the release's
//! manifest declares for it. Labels alone prove nothing: anyone allowed to
//! create a pod can copy them.
//!
//! The rules here are pure; `sources` fetches the objects they judge.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use crate::topology::{Workload, image_name};

/// One controlling owner reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Controller {
    pub kind: String,
    pub name: String,
    pub uid: String,
}

impl Controller {
    pub fn display(&self) -> String {
        format!("{} {}", self.kind, self.name)
    }
}

/// The controlling owner reference among `refs` (`controller: true`).
pub fn controller_of(refs: Option<&Vec<OwnerReference>>) -> Option<Controller> {
    refs?
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| Controller {
            kind: o.kind.clone(),
            name: o.name.clone(),
            uid: o.uid.clone(),
        })
}

/// What the pod says about itself, as the API server has it now.
#[derive(Debug, Clone, Default)]
pub struct PodFacts {
    pub name: String,
    /// The image of each container in the pod's spec.
    pub images: BTreeMap<String, String>,
    /// Containers whose status is `running`.
    pub running: Vec<String>,
}

/// What the release and discovery expect.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    pub release: &'a str,
    /// The release's workloads (from its manifest).
    pub workloads: &'a [Workload],
    /// The workload discovery chose (`StatefulSet x`), or `None` when the
    /// pod was pinned in the config file (any workload of the release).
    pub workload: Option<&'a str>,
    pub container: &'a str,
}

/// Judges the pod whose final controller (through its ReplicaSet, if any)
/// is `owner`, a live object whose uid is `live_uid` (`None`: not found).
/// `Err` says why it must not receive the secret.
pub fn judge(
    pod: &PodFacts,
    owner: &Controller,
    live_uid: Option<&str>,
    expected: Expected<'_>,
) -> Result<(), String> {
    let shown = owner.display();
    let Some(workload) = expected
        .workloads
        .iter()
        .find(|w| w.kind.as_str() == owner.kind && w.name == owner.name)
    else {
        let names: Vec<String> = expected.workloads.iter().map(Workload::display).collect();
        return Err(format!(
            "it is controlled by {shown}, which is not a workload of release {} (its workloads: {})",
            expected.release,
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        ));
    };
    if let Some(wanted) = expected.workload
        && wanted != shown
    {
        return Err(format!(
            "it is controlled by {shown}, but OpenBao was discovered in {wanted}"
        ));
    }
    match live_uid {
        None => {
            return Err(format!(
                "its owner reference names {shown}, which does not exist in the namespace"
            ));
        }
        Some(uid) if uid != owner.uid => {
            return Err(format!(
                "its owner reference names {shown} with uid {}, but that object's uid is {uid}",
                owner.uid
            ));
        }
        Some(_) => {}
    }
    let container = expected.container;
    let Some(image) = pod.images.get(container) else {
        let found: Vec<&str> = pod.images.keys().map(String::as_str).collect();
        return Err(format!(
            "it has no container {container} (its containers: {})",
            found.join(", ")
        ));
    };
    if !pod.running.iter().any(|c| c == container) {
        return Err(format!("its container {container} is not running"));
    }
    let declared = workload
        .containers
        .iter()
        .find(|c| c.name == container)
        .map(|c| c.image.as_str());
    match declared {
        None => Err(format!(
            "release {} declares no container {container} in {shown}",
            expected.release
        )),
        Some(want) if same_image(want, image) => Ok(()),
        Some(want) => Err(format!(
            "its container {container} runs image {image}, but release {} declares {want} (a pod not yet replaced after an upgrade: finish the rollout first)",
            expected.release
        )),
    }
}

/// Equal image references, reading Docker Hub's implicit registry and
/// `library/` the same as the explicit ones.
fn same_image(a: &str, b: &str) -> bool {
    fn canonical(i: &str) -> String {
        let i = i
            .strip_prefix("docker.io/")
            .or_else(|| i.strip_prefix("index.docker.io/"))
            .unwrap_or(i);
        i.strip_prefix("library/").unwrap_or(i).to_owned()
    }
    canonical(a) == canonical(b) && image_name(a) == image_name(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{ContainerSpec, WorkloadKind};

    fn workload(kind: WorkloadKind, name: &str, image: &str) -> Workload {
        Workload {
            kind,
            name: name.into(),
            selector: Default::default(),
            template_labels: Default::default(),
            containers: vec![ContainerSpec {
                name: "openbao".into(),
                image: image.into(),
                ..Default::default()
            }],
            body: serde_json::Value::Null,
        }
    }

    fn pod(image: &str) -> PodFacts {
        PodFacts {
            name: "bao-0".into(),
            images: BTreeMap::from([("openbao".to_string(), image.to_string())]),
            running: vec!["openbao".into()],
        }
    }

    fn owner(kind: &str, name: &str) -> Controller {
        Controller {
            kind: kind.into(),
            name: name.into(),
            uid: "u-1".into(),
        }
    }

    #[test]
    fn only_the_discovered_workload_with_its_image_is_trusted() {
        let ws = vec![
            workload(
                WorkloadKind::StatefulSet,
                "bao",
                "quay.io/openbao/openbao:2.4.1",
            ),
            workload(WorkloadKind::Deployment, "injector", "openbao:2.4.1"),
        ];
        let expected = Expected {
            release: "kleidia-platform",
            workloads: &ws,
            workload: Some("StatefulSet bao"),
            container: "openbao",
        };
        let sts = owner("StatefulSet", "bao");
        let good = pod("quay.io/openbao/openbao:2.4.1");
        assert_eq!(judge(&good, &sts, Some("u-1"), expected), Ok(()));

        let err = judge(&good, &owner("StatefulSet", "evil"), Some("u-1"), expected).unwrap_err();
        assert!(
            err.contains("not a workload of release kleidia-platform")
                && err.contains("StatefulSet bao"),
            "{err}"
        );
        let err = judge(
            &good,
            &owner("Deployment", "injector"),
            Some("u-1"),
            expected,
        )
        .unwrap_err();
        assert!(err.contains("discovered in StatefulSet bao"), "{err}");
        let err = judge(&good, &sts, Some("u-2"), expected).unwrap_err();
        assert!(err.contains("uid"), "{err}");
        let err = judge(&good, &sts, None, expected).unwrap_err();
        assert!(err.contains("does not exist"), "{err}");
        let err = judge(&pod("evil/openbao:2.4.1"), &sts, Some("u-1"), expected).unwrap_err();
        assert!(
            err.contains("runs image evil/openbao:2.4.1")
                && err.contains("declares quay.io/openbao/openbao:2.4.1"),
            "{err}"
        );
        let mut stopped = good.clone();
        stopped.running.clear();
        assert!(
            judge(&stopped, &sts, Some("u-1"), expected)
                .unwrap_err()
                .contains("not running")
        );
        let other = Expected {
            container: "bao",
            ..expected
        };
        assert!(
            judge(&good, &sts, Some("u-1"), other)
                .unwrap_err()
                .contains("no container bao")
        );
    }

    #[test]
    fn docker_hub_spellings_are_one_image() {
        assert!(same_image(
            "openbao/openbao:2.4.1",
            "docker.io/openbao/openbao:2.4.1"
        ));
        assert!(same_image("postgres:15", "docker.io/library/postgres:15"));
        assert!(!same_image("postgres:15", "postgres:16"));
        assert!(!same_image(
            "quay.io/openbao/openbao:2",
            "openbao/openbao:2"
        ));
    }

    #[test]
    fn only_the_controlling_reference_counts() {
        let r = |controller| OwnerReference {
            api_version: "apps/v1".into(),
            kind: "StatefulSet".into(),
            name: "bao".into(),
            uid: "u".into(),
            controller,
            block_owner_deletion: None,
        };
        assert_eq!(controller_of(None), None);
        assert_eq!(controller_of(Some(&vec![r(None), r(Some(false))])), None);
        assert_eq!(
            controller_of(Some(&vec![r(Some(true))])).map(|c| c.display()),
            Some("StatefulSet bao".to_owned())
        );
    }
}
