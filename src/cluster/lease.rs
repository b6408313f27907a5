//! The upgrade lock: a `coordination.k8s.io/v1` Lease in the namespace
//! (`kleidia-upgrade`), held by one upgrade or rollback at a time and
//! renewed while it runs. A holder that stopped renewing for longer than the
//! lease's duration is stale: it can be taken over, but only when the
//! operator says so (`--force-unlock`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::{PostParams, PropagationPolicy};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{ApiEndpoint, ClusterError};

/// The Lease's name.
pub const LEASE_NAME: &str = "kleidia-upgrade";
/// How long a holder may go without renewing before it counts as gone.
pub const LEASE_DURATION: Duration = Duration::from_secs(60);
/// How often a holder renews.
pub const RENEW_EVERY: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another upgrade or rollback holds the lock (Lease {namespace}/{LEASE_NAME}): {holder}, since {since}, last renewed {renewed}. Wait for it to finish; `kubectl get lease {LEASE_NAME} -n {namespace} -o yaml` shows it"
    )]
    Held {
        namespace: String,
        holder: String,
        since: String,
        renewed: String,
    },
    #[error(
        "the lock (Lease {namespace}/{LEASE_NAME}) is held by {holder}, which stopped renewing it {ago} ago (its duration is {}s): that run probably died. If nothing is running for this namespace, pass --force-unlock to take it over",
        LEASE_DURATION.as_secs()
    )]
    Stale {
        namespace: String,
        holder: String,
        ago: String,
    },
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(
        "the lock (Lease {namespace}/{LEASE_NAME}) was taken by {holder} while this run held it; stop and check what the other run did"
    )]
    Lost { namespace: String, holder: String },
}

/// What a lease says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub identity: String,
    pub acquired: Option<DateTime<Utc>>,
    pub renewed: Option<DateTime<Utc>>,
    pub duration: Duration,
}

impl Holder {
    fn of(lease: &Lease) -> Option<Holder> {
        let spec = lease.spec.as_ref()?;
        let identity = spec.holder_identity.clone().filter(|h| !h.is_empty())?;
        Some(Holder {
            identity,
            acquired: spec.acquire_time.as_ref().map(|t| to_chrono(&t.0)),
            renewed: spec.renew_time.as_ref().map(|t| to_chrono(&t.0)),
            duration: Duration::from_secs(
                spec.lease_duration_seconds
                    .map(|s| s.max(1) as u64)
                    .unwrap_or(LEASE_DURATION.as_secs()),
            ),
        })
    }

    /// A holder that has not renewed within its duration.
    pub fn is_stale(&self, now: DateTime<Utc>) -> bool {
        let last = self.renewed.or(self.acquired);
        match last {
            None => true,
            Some(t) => now.signed_duration_since(t).to_std().unwrap_or_default() > self.duration,
        }
    }
}

fn to_chrono(t: &impl std::fmt::Display) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&t.to_string())
        .map(|d| d.with_timezone(&Utc))
        .unwrap_or_else(|_| Utc::now())
}

fn micro(t: DateTime<Utc>) -> MicroTime {
    MicroTime(
        t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            .parse()
            .expect("an RFC 3339 time parses"),
    )
}

fn shown(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "never".into())
}

/// Who is running: `user@host pid N (kubectl kleidia upgrade)`.
pub fn identity(what: &str) -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into());
    format!("{user}@{host} pid {} ({what})", std::process::id())
}

/// A held lock: renewed in the background until released.
pub struct HeldLock {
    api: Api<Lease>,
    namespace: String,
    identity: String,
    stop: watch::Sender<bool>,
    renewer: Option<JoinHandle<Result<(), LockError>>>,
}

/// Takes the lock for `identity`, or says who holds it.
pub async fn acquire(
    client: &kube::Client,
    endpoint: &ApiEndpoint,
    namespace: &str,
    identity: &str,
    force: bool,
) -> Result<HeldLock, LockError> {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let action = format!("get leases in namespace {namespace}");
    let err = |e: kube::Error, action: &str| {
        LockError::Cluster(ClusterError::from_kube(
            e,
            endpoint,
            action,
            &format!("Lease {namespace}/{LEASE_NAME}"),
        ))
    };
    let now = Utc::now();
    let spec = LeaseSpec {
        holder_identity: Some(identity.to_string()),
        acquire_time: Some(micro(now)),
        renew_time: Some(micro(now)),
        lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
        ..Default::default()
    };
    match api.get_opt(LEASE_NAME).await.map_err(|e| err(e, &action))? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(LEASE_NAME.into()),
                    labels: Some(
                        [(
                            "app.kubernetes.io/managed-by".to_string(),
                            "kleidia".to_string(),
                        )]
                        .into(),
                    ),
                    ..Default::default()
                },
                spec: Some(spec),
            };
            api.create(&PostParams::default(), &lease)
                .await
                .map_err(|e| match e {
                    // Someone created it between our get and create.
                    kube::Error::Api(s) if s.code == 409 => LockError::Held {
                        namespace: namespace.into(),
                        holder: "another run that started at the same moment".into(),
                        since: shown(Some(now)),
                        renewed: shown(Some(now)),
                    },
                    e => err(e, &format!("create leases in namespace {namespace}")),
                })?;
        }
        Some(mut lease) => {
            if let Some(h) = Holder::of(&lease) {
                if !h.is_stale(now) {
                    return Err(LockError::Held {
                        namespace: namespace.into(),
                        holder: h.identity,
                        since: shown(h.acquired),
                        renewed: shown(h.renewed),
                    });
                }
                if !force {
                    let ago = now
                        .signed_duration_since(h.renewed.or(h.acquired).unwrap_or(now))
                        .to_std()
                        .unwrap_or_default();
                    return Err(LockError::Stale {
                        namespace: namespace.into(),
                        holder: h.identity,
                        ago: crate::duration::show(Duration::from_secs(ago.as_secs())),
                    });
                }
            }
            lease.spec = Some(spec);
            // resourceVersion from our read: a concurrent taker gets a 409.
            api.replace(LEASE_NAME, &PostParams::default(), &lease)
                .await
                .map_err(|e| match e {
                    kube::Error::Api(s) if s.code == 409 => LockError::Held {
                        namespace: namespace.into(),
                        holder: "another run that took it at the same moment".into(),
                        since: shown(Some(now)),
                        renewed: shown(Some(now)),
                    },
                    e => err(e, &format!("update leases in namespace {namespace}")),
                })?;
        }
    }
    let (stop, stopped) = watch::channel(false);
    let renewer = tokio::spawn(renew(
        api.clone(),
        endpoint.clone(),
        namespace.to_string(),
        identity.to_string(),
        stopped,
    ));
    Ok(HeldLock {
        api,
        namespace: namespace.to_string(),
        identity: identity.to_string(),
        stop,
        renewer: Some(renewer),
    })
}

/// Who holds the lock now, if anyone (stale or not).
pub async fn holder(
    client: &kube::Client,
    endpoint: &ApiEndpoint,
    namespace: &str,
) -> Result<Option<Holder>, ClusterError> {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let lease = api.get_opt(LEASE_NAME).await.map_err(|e| {
        ClusterError::from_kube(
            e,
            endpoint,
            &format!("get leases in namespace {namespace}"),
            &format!("Lease {namespace}/{LEASE_NAME}"),
        )
    })?;
    Ok(lease.as_ref().and_then(Holder::of))
}

async fn renew(
    api: Api<Lease>,
    endpoint: ApiEndpoint,
    namespace: String,
    identity: String,
    mut stopped: watch::Receiver<bool>,
) -> Result<(), LockError> {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(RENEW_EVERY) => {}
            _ = stopped.changed() => return Ok(()),
        }
        let mut lease = match api.get(LEASE_NAME).await {
            Ok(l) => l,
            // A missed renewal is retried at the next tick; the lease's
            // duration is four ticks.
            Err(_) => continue,
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(identity.as_str()) {
            return Err(LockError::Lost {
                namespace,
                holder: spec.holder_identity.clone().unwrap_or_default(),
            });
        }
        spec.renew_time = Some(micro(Utc::now()));
        if let Err(e) = api
            .replace(LEASE_NAME, &PostParams::default(), &lease)
            .await
            && matches!(&e, kube::Error::Api(s) if s.code == 403)
        {
            return Err(LockError::Cluster(ClusterError::from_kube(
                e,
                &endpoint,
                &format!("update leases in namespace {namespace}"),
                LEASE_NAME,
            )));
        }
    }
}

impl HeldLock {
    /// Whether the renewer stopped because the lock was lost.
    pub fn lost(&self) -> bool {
        self.renewer.as_ref().is_some_and(|r| r.is_finished())
    }

    /// Stops renewing and deletes the Lease if it is still ours.
    pub async fn release(mut self) -> Result<(), LockError> {
        let _ = self.stop.send(true);
        if let Some(r) = self.renewer.take() {
            let _ = r.await;
        }
        match self.api.get_opt(LEASE_NAME).await {
            Ok(Some(lease))
                if lease
                    .spec
                    .as_ref()
                    .and_then(|s| s.holder_identity.as_deref())
                    == Some(self.identity.as_str()) =>
            {
                let dp = kube::api::DeleteParams {
                    propagation_policy: Some(PropagationPolicy::Background),
                    preconditions: lease.metadata.resource_version.clone().map(|rv| {
                        kube::api::Preconditions {
                            resource_version: Some(rv),
                            uid: None,
                        }
                    }),
                    ..Default::default()
                };
                self.api
                    .delete(LEASE_NAME, &dp)
                    .await
                    .map(drop)
                    .map_err(|e| {
                        LockError::Cluster(ClusterError::from_kube(
                            e,
                            &ApiEndpoint::default(),
                            &format!("delete leases in namespace {}", self.namespace),
                            LEASE_NAME,
                        ))
                    })
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_is_stale_after_its_duration() {
        let now = Utc::now();
        let h = Holder {
            identity: "a".into(),
            acquired: Some(now - chrono::TimeDelta::seconds(300)),
            renewed: Some(now - chrono::TimeDelta::seconds(10)),
            duration: Duration::from_secs(60),
        };
        assert!(!h.is_stale(now));
        let old = Holder {
            renewed: Some(now - chrono::TimeDelta::seconds(61)),
            ..h.clone()
        };
        assert!(old.is_stale(now));
        let never = Holder {
            renewed: None,
            acquired: None,
            ..h
        };
        assert!(never.is_stale(now));
        assert!(identity("kubectl kleidia upgrade").contains("(kubectl kleidia upgrade)"));
    }
}
