//! OpenBao initialised and unsealed, its storage type, and with raft every
//! peer (each pod of its StatefulSet) answering, unsealed, with one active
//! node. Only unauthenticated endpoints are asked (`sys/seal-status`,
//! `sys/leader`): no token is needed.

use super::{Check, Context};
use crate::probes::{self, openbao::LeaderStatus, openbao::OpenbaoStatus};
use crate::topology::OpenbaoTarget;

pub async fn checks(cx: &Context<'_>) -> Vec<Check> {
    vec![check(cx).await]
}

/// One peer as asked.
#[derive(Debug, Clone)]
pub struct Peer {
    pub pod: String,
    pub status: Result<OpenbaoStatus, String>,
    pub leader: Option<LeaderStatus>,
}

async fn check(cx: &Context<'_>) -> Check {
    let ns = &cx.survey.namespace;
    let bao = match &cx.survey.openbao {
        Ok(b) => b,
        Err(e) => {
            return Check::fail(
                "openbao",
                format!("OpenBao not found: {e}"),
                format!(
                    "see `kubectl get pods -n {ns}`; name its pod with `openbao.pod` in the config file if discovery picks the wrong one"
                ),
            );
        }
    };
    let status = match &cx.answers.openbao {
        Some(Ok(s)) => s.clone(),
        Some(Err(f)) => {
            return Check::fail(
                "openbao",
                format!("OpenBao in pod {} did not answer: {f}", bao.pod),
                format!("see why with `kubectl logs {} -n {ns}`", bao.pod),
            );
        }
        None => return Check::fail("openbao", "not asked", "run preflight again"),
    };
    let base = format!("OpenBao {} in pod {}", status.version, bao.pod);
    if !status.initialized {
        return Check::fail(
            "openbao",
            format!("{base} is not initialised"),
            format!(
                "initialise it with `kubectl exec -it {} -n {ns} -- bao operator init` and keep the keys safe",
                bao.pod
            ),
        );
    }
    if status.sealed {
        return Check::fail(
            "openbao",
            format!(
                "{base} is sealed: nothing can read secrets, and an upgrade would wait forever for it"
            ),
            format!(
                "unseal it with `kubectl exec -it {} -n {ns} -- bao operator unseal` (once per key share), then check again",
                bao.pod
            ),
        );
    }
    let storage = status
        .storage_type
        .clone()
        .unwrap_or_else(|| "unknown".into());
    if storage != "raft" {
        return Check::pass(
            "openbao",
            format!("{base}: initialised, unsealed; storage {storage} (single node)"),
        );
    }
    let peers = ask_peers(cx, bao, &status).await;
    verdict(&base, bao, &peers, ns)
}

/// The pods of OpenBao's StatefulSet, each asked for its seal status and
/// whether it is the active node.
async fn ask_peers(cx: &Context<'_>, bao: &OpenbaoTarget, first: &OpenbaoStatus) -> Vec<Peer> {
    let mut pods: Vec<String> = cx
        .survey
        .platform
        .workloads
        .iter()
        .filter(|w| w.workload.display() == bao.workload)
        .flat_map(|w| w.pods.iter().map(|p| p.name.clone()))
        .collect();
    if !pods.contains(&bao.pod) {
        pods.push(bao.pod.clone());
    }
    pods.sort();
    let (client, api, ns) = (&cx.target.client, cx.target.api(), &cx.survey.namespace);
    let asks = pods.into_iter().map(|pod| {
        let t = OpenbaoTarget {
            pod: pod.clone(),
            ..bao.clone()
        };
        let api = api.clone();
        let known = (pod == bao.pod).then(|| first.clone());
        async move {
            let status = match known {
                Some(s) => Ok(s),
                None => probes::openbao::status(client, &api, ns, &t)
                    .await
                    .map_err(|e| e.to_string()),
            };
            let leader = probes::openbao::leader(client, &api, ns, &t).await.ok();
            Peer {
                pod,
                status,
                leader,
            }
        }
    });
    futures::future::join_all(asks).await
}

/// The verdict over a raft cluster's peers.
pub fn verdict(base: &str, bao: &OpenbaoTarget, peers: &[Peer], ns: &str) -> Check {
    let mut shown = Vec::new();
    let mut bad = Vec::new();
    let mut active = 0;
    let mut ha = false;
    for p in peers {
        let role = match &p.leader {
            Some(l) => {
                ha |= l.ha_enabled;
                if l.is_self {
                    active += 1;
                    "active"
                } else {
                    "standby"
                }
            }
            None => "role unknown",
        };
        match &p.status {
            Ok(s) if s.initialized && !s.sealed => {
                shown.push(format!("{} ({role}, {})", p.pod, s.version));
            }
            Ok(s) => {
                let what = if s.initialized {
                    "sealed"
                } else {
                    "not initialised"
                };
                shown.push(format!("{} ({what})", p.pod));
                bad.push((p.pod.clone(), what.to_string()));
            }
            Err(e) => {
                shown.push(format!("{} (no answer)", p.pod));
                bad.push((p.pod.clone(), format!("no answer: {e}")));
            }
        }
    }
    let detail = format!(
        "{base}: initialised, unsealed; storage raft, {} peer(s): {}",
        peers.len(),
        shown.join(", ")
    );
    if let Some((pod, why)) = bad.first() {
        return Check::fail(
            "openbao",
            format!("{detail}; peer {pod} is {why}"),
            format!(
                "bring every peer back before upgrading (an upgrade rolls them one at a time): `kubectl logs {pod} -n {ns}`, and unseal it with `kubectl exec -it {pod} -n {ns} -- bao operator unseal`"
            ),
        );
    }
    if ha && active == 0 {
        return Check::fail(
            "openbao",
            format!("{detail}; no peer is the active node"),
            format!(
                "see `kubectl logs {} -n {ns}`: a node on older software than the data (a downgrade) stays standby",
                bao.pod
            ),
        );
    }
    Check::pass("openbao", detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Status;

    fn status(sealed: bool) -> OpenbaoStatus {
        OpenbaoStatus {
            version: "2.7.2".into(),
            initialized: true,
            sealed,
            storage_type: Some("raft".into()),
            via: "pod proxy".into(),
        }
    }

    fn peer(pod: &str, sealed: bool, active: bool) -> Peer {
        Peer {
            pod: pod.into(),
            status: Ok(status(sealed)),
            leader: Some(LeaderStatus {
                ha_enabled: true,
                is_self: active,
                leader_address: String::new(),
            }),
        }
    }

    #[test]
    fn raft_peers_must_all_be_unsealed_with_one_active() {
        let bao = OpenbaoTarget {
            workload: "StatefulSet bao".into(),
            pod: "bao-0".into(),
            container: "openbao".into(),
            port: 8200,
            tls: false,
        };
        let ok = verdict(
            "b",
            &bao,
            &[peer("bao-0", false, true), peer("bao-1", false, false)],
            "ns",
        );
        assert_eq!(ok.status, Status::Pass);
        assert!(
            ok.detail
                .contains("2 peer(s): bao-0 (active, 2.7.2), bao-1 (standby, 2.7.2)"),
            "{}",
            ok.detail
        );
        let sealed = verdict(
            "b",
            &bao,
            &[peer("bao-0", false, true), peer("bao-1", true, false)],
            "ns",
        );
        assert_eq!(sealed.status, Status::Fail);
        assert!(
            sealed.detail.contains("peer bao-1 is sealed"),
            "{}",
            sealed.detail
        );
        let headless = verdict("b", &bao, &[peer("bao-0", false, false)], "ns");
        assert_eq!(headless.status, Status::Fail);
        assert!(headless.detail.contains("no peer is the active node"));
    }
}
