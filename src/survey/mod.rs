//! One live picture of a Kleidia deployment, gathered once and
//! concurrently under one deadline: the three releases (from one list of
//! Helm's records), the namespace's pods (one list), each release's rendered
//! objects and workloads with their pods, and where PostgreSQL, OpenBao and
//! the backend run. Commands decide on this picture; `servers` asks the
//! running servers what they are.
//!
//! A failure marks only what it touches: a missing release or a pod list
//! that timed out shows in its component, the rest of the picture stays.
//! Only a release storage that cannot be read at all (unreachable API,
//! refused credentials) or a namespace with none of the releases ends the
//! survey with an error.

mod live;
mod servers;

pub use live::Live;
pub use servers::{Failure, ServerAnswers, Which};

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use tokio::time::Instant;

use crate::cluster::ClusterError;
use crate::helm::release::{Release, ReleaseError, ReleaseStore, RevisionLabel};
use crate::target::Target;
use crate::topology::{
    self, BackendTarget, Component, ManifestObject, OpenbaoTarget, PodInfo, PostgresTarget,
    TopologyError, WorkloadPods,
};

/// Why part of the survey is missing.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SurveyError {
    #[error("{what}: no answer within {}", crate::duration::show(*after))]
    TimedOut { what: String, after: Duration },
    #[error("release {release} not found in namespace {namespace}")]
    NoRelease { release: String, namespace: String },
    #[error(transparent)]
    Release(Arc<ReleaseError>),
    #[error(transparent)]
    Cluster(Arc<ClusterError>),
    #[error(transparent)]
    Topology(#[from] TopologyError),
}

/// Errors that end a survey: nothing useful can be shown.
#[derive(Debug, thiserror::Error)]
pub enum SurveyFailure {
    #[error(transparent)]
    Release(#[from] ReleaseError),
    #[error(
        "timed out after {} waiting for the Kubernetes API at {server} to {what}. Check that the cluster is reachable, or raise --timeout",
        crate::duration::show(*after)
    )]
    TimedOut {
        what: String,
        after: Duration,
        server: String,
    },
    #[error(
        "namespace {namespace} (from {source_of_namespace}) has no Kleidia releases: looked for {looked_for} in {storage} labelled owner=helm. Pass the namespace with -n/--namespace, or other release names with --platform-release/--data-release/--services-release (or `releases:` in the config file)"
    )]
    NoReleases {
        namespace: String,
        source_of_namespace: String,
        looked_for: String,
        storage: String,
    },
}

/// The default name of the green release next to services release `blue`.
pub fn green_release(blue: &str) -> String {
    format!("{blue}-green")
}

/// What to gather.
#[derive(Debug, Clone, Copy)]
pub struct SurveyOptions {
    /// Every revision of each release, not only the latest.
    pub history: bool,
    /// The live workload objects and claims too (for checks and gates).
    pub live: bool,
    /// When everything must have answered.
    pub deadline: Instant,
    /// The time limit the deadline was set from, for messages.
    pub limit: Duration,
}

impl SurveyOptions {
    pub fn within(limit: Duration) -> Self {
        SurveyOptions {
            history: false,
            live: false,
            deadline: Instant::now() + limit,
            limit,
        }
    }
}

/// One release of the deployment as found.
#[derive(Debug, Clone)]
pub struct ReleaseSurvey {
    pub component: Component,
    /// The release name looked for.
    pub name: String,
    /// The latest revision.
    pub latest: Result<Release, SurveyError>,
    /// Every revision, oldest first (only when asked for).
    pub history: Option<Vec<Release>>,
    /// The revisions' labels (number and status), oldest first.
    pub revisions: Vec<RevisionLabel>,
    /// The objects the latest revision rendered.
    pub objects: Result<Vec<ManifestObject>, SurveyError>,
    /// The workloads of the latest revision with their current pods.
    pub workloads: Vec<WorkloadPods>,
}

impl ReleaseSurvey {
    /// Whether the release exists at all.
    pub fn exists(&self) -> bool {
        !matches!(self.latest, Err(SurveyError::NoRelease { .. }))
    }
}

/// The picture of one deployment.
#[derive(Debug, Clone)]
pub struct Survey {
    pub namespace: String,
    pub platform: ReleaseSurvey,
    pub data: ReleaseSurvey,
    pub services: ReleaseSurvey,
    pub pods: Result<Arc<Vec<PodInfo>>, SurveyError>,
    pub postgres: Result<PostgresTarget, SurveyError>,
    pub openbao: Result<OpenbaoTarget, SurveyError>,
    pub backend: Result<BackendTarget, SurveyError>,
    /// The green services release of a blue-green upgrade, when one exists
    /// (`<services>-green`), and its backend.
    pub green: Option<ReleaseSurvey>,
    pub green_backend: Option<Result<BackendTarget, SurveyError>>,
    /// Deployments, StatefulSets and claims as the API server has them now
    /// (only when asked for).
    pub live: Option<Result<Live, SurveyError>>,
    /// How long the survey took (for `--debug` and phase timings).
    pub took: Duration,
}

impl Survey {
    /// The releases in upgrade order (platform, data, services).
    pub fn releases(&self) -> [&ReleaseSurvey; 3] {
        [&self.platform, &self.data, &self.services]
    }

    pub fn release(&self, component: Component) -> &ReleaseSurvey {
        match component {
            Component::Platform => &self.platform,
            Component::Data => &self.data,
            Component::Services => &self.services,
        }
    }

    /// Gathers the survey of the deployment `target` points at.
    pub async fn gather(target: &Target, opts: SurveyOptions) -> Result<Survey, SurveyFailure> {
        let started = Instant::now();
        let limit = opts.limit;
        let ns = target.namespace.as_str();
        let names = &target.settings.releases;
        let messages = target.settings.messages;
        messages.debug(&format!(
            "target: server {} context {} namespace {} (from {}), releases {}/{}/{}, driver {:?}",
            target.server,
            target.context,
            ns,
            target.namespace_source,
            names.platform,
            names.data,
            names.services,
            target.settings.driver
        ));
        let store = ReleaseStore::new(
            target.client.clone(),
            target.api(),
            ns,
            target.settings.driver,
        );
        let wanted = [
            names.platform.as_str(),
            names.data.as_str(),
            names.services.as_str(),
        ];
        // A blue-green upgrade's second services release, looked for in the
        // same list.
        let green_name = green_release(&names.services);
        let mut listed: Vec<&str> = wanted.to_vec();
        listed.push(&green_name);
        let pods_api: Api<Pod> = Api::namespaced(target.client.clone(), ns);
        let pods = async {
            match tokio::time::timeout_at(opts.deadline, pods_api.list(&ListParams::default()))
                .await
            {
                Ok(Ok(list)) => Ok(Arc::new(
                    list.items.iter().map(PodInfo::from_pod).collect::<Vec<_>>(),
                )),
                Ok(Err(e)) => Err(SurveyError::Cluster(Arc::new(ClusterError::from_kube(
                    e,
                    &target.api(),
                    &format!("list pods in namespace {ns}"),
                    "pods",
                )))),
                Err(_) => Err(SurveyError::TimedOut {
                    what: format!("listing pods in namespace {ns}"),
                    after: limit,
                }),
            }
        };
        let records = tokio::time::timeout_at(
            opts.deadline,
            read_releases(&store, &listed, opts.history, opts.deadline, limit),
        );
        let live = async {
            if opts.live {
                Some(Live::gather(target, opts.deadline, limit).await)
            } else {
                None
            }
        };
        let (records, pods, live) = tokio::join!(records, pods, live);
        let records = match records {
            Ok(r) => r?,
            Err(_) => {
                return Err(SurveyFailure::TimedOut {
                    what: format!(
                        "list {} in namespace {ns}",
                        target.settings.driver.resource()
                    ),
                    after: limit,
                    server: target.server.clone(),
                });
            }
        };
        let mut records = records;
        let green = records.pop().filter(|g| g.latest.is_ok());
        if records
            .iter()
            .all(|r| matches!(r.latest, Err(SurveyError::NoRelease { .. })))
        {
            return Err(SurveyFailure::NoReleases {
                namespace: ns.to_string(),
                source_of_namespace: target.namespace_source.to_string(),
                looked_for: wanted.join(", "),
                storage: target.settings.driver.resource().to_string(),
            });
        }
        let mut records = records.into_iter();
        let (Some(platform), Some(data), Some(services)) =
            (records.next(), records.next(), records.next())
        else {
            unreachable!("three releases were looked for")
        };
        let mut survey = Survey {
            namespace: ns.to_string(),
            platform: platform.into_survey(Component::Platform, &pods),
            data: data.into_survey(Component::Data, &pods),
            services: services.into_survey(Component::Services, &pods),
            postgres: Err(SurveyError::TimedOut {
                what: "discovery".into(),
                after: Duration::ZERO,
            }),
            openbao: Err(SurveyError::TimedOut {
                what: "discovery".into(),
                after: Duration::ZERO,
            }),
            backend: Err(SurveyError::TimedOut {
                what: "discovery".into(),
                after: Duration::ZERO,
            }),
            green: green.map(|g| g.into_survey(Component::Services, &pods)),
            green_backend: None,
            pods,
            live,
            took: Duration::ZERO,
        };
        let pins = &target.settings.pins;
        survey.postgres = survey.discover(Component::Data, |r, objs, pods| {
            topology::discover_postgres(&r.name, objs, &r.merged_values(), pods, ns, &pins.postgres)
        });
        survey.openbao = survey.discover(Component::Platform, |r, objs, pods| {
            topology::discover_openbao(&r.name, objs, pods, ns, &pins.openbao)
        });
        survey.backend = {
            let s = &survey.services;
            match (&s.latest, &s.objects) {
                (Ok(r), Ok(objs)) => topology::discover_backend(&r.name, objs, &pins.backend)
                    .map_err(SurveyError::from),
                (Err(e), _) | (_, Err(e)) => Err(e.clone()),
            }
        };
        survey.green_backend = survey
            .green
            .as_ref()
            .map(|g| match (&g.latest, &g.objects) {
                (Ok(r), Ok(objs)) => topology::discover_backend(&r.name, objs, &Default::default())
                    .map_err(SurveyError::from),
                (Err(e), _) | (_, Err(e)) => Err(e.clone()),
            });
        survey.took = started.elapsed();
        messages.debug(&format!(
            "survey took {:?}: postgres {:?}; openbao {:?}; backend {:?}",
            survey.took, survey.postgres, survey.openbao, survey.backend
        ));
        Ok(survey)
    }

    /// A component's target in its release's objects and the pods.
    fn discover<T>(
        &self,
        component: Component,
        rule: impl FnOnce(&Release, &[ManifestObject], &[PodInfo]) -> Result<T, TopologyError>,
    ) -> Result<T, SurveyError> {
        let r = self.release(component);
        let release = r.latest.as_ref().map_err(Clone::clone)?;
        let objects = r.objects.as_ref().map_err(Clone::clone)?;
        let pods = self.pods.as_ref().map_err(Clone::clone)?;
        Ok(rule(release, objects, pods)?)
    }
}

/// One release's records as read.
struct Records {
    name: String,
    latest: Result<Release, SurveyError>,
    history: Option<Vec<Release>>,
    revisions: Vec<RevisionLabel>,
}

impl Records {
    fn into_survey(
        self,
        component: Component,
        pods: &Result<Arc<Vec<PodInfo>>, SurveyError>,
    ) -> ReleaseSurvey {
        let objects = match &self.latest {
            Ok(r) => topology::parse_manifest(&r.name, &r.manifest).map_err(SurveyError::from),
            Err(e) => Err(e.clone()),
        };
        let workloads = match (&objects, pods) {
            (Ok(objs), Ok(pods)) => topology::release_workloads(objs, pods),
            _ => Vec::new(),
        };
        ReleaseSurvey {
            component,
            name: self.name,
            latest: self.latest,
            history: self.history,
            revisions: self.revisions,
            objects,
            workloads,
        }
    }
}

/// Reads the releases: one list of their records, then the latest record
/// of each (or, for history, one list of every record).
async fn read_releases(
    store: &ReleaseStore,
    names: &[&str],
    history: bool,
    deadline: Instant,
    limit: Duration,
) -> Result<Vec<Records>, ReleaseError> {
    let ns = store.namespace().to_string();
    let missing = |name: &str| SurveyError::NoRelease {
        release: name.to_string(),
        namespace: ns.clone(),
    };
    if history {
        // One full list: the revisions come from the records themselves.
        let mut all = store.histories(names).await?;
        return Ok(names
            .iter()
            .map(|&name| {
                let name_s = name.to_string();
                match all.remove(name) {
                    None => Records {
                        name: name_s,
                        latest: Err(missing(name)),
                        history: None,
                        revisions: Vec::new(),
                    },
                    Some(Err(e)) => Records {
                        name: name_s,
                        latest: Err(SurveyError::Release(Arc::new(e))),
                        history: None,
                        revisions: Vec::new(),
                    },
                    Some(Ok(list)) => Records {
                        name: name_s,
                        revisions: list
                            .iter()
                            .map(|r| RevisionLabel {
                                object: crate::helm::release::object_name(&r.name, r.version),
                                revision: r.version,
                                status: r.info.status.clone(),
                            })
                            .collect(),
                        latest: list.last().cloned().ok_or_else(|| missing(name)),
                        history: Some(list),
                    },
                }
            })
            .collect());
    }
    let mut index = store.revisions_of(names).await?;
    let revisions: Vec<Vec<RevisionLabel>> = names
        .iter()
        .map(|n| index.remove(*n).unwrap_or_default())
        .collect();
    let gets = names.iter().zip(&revisions).map(|(&name, revs)| {
        let newest = revs.last().map(|r| r.object.clone());
        let missing = &missing;
        async move {
            let Some(object) = newest else {
                return Err(missing(name));
            };
            match tokio::time::timeout_at(deadline, store.get(&object)).await {
                Ok(Ok(r)) => Ok(r),
                Ok(Err(e)) => Err(SurveyError::Release(Arc::new(e))),
                Err(_) => Err(SurveyError::TimedOut {
                    what: format!("reading release record {object}"),
                    after: limit,
                }),
            }
        }
    });
    let latest = futures::future::join_all(gets).await;
    Ok(names
        .iter()
        .zip(revisions)
        .zip(latest)
        .map(|((name, revisions), latest)| Records {
            name: name.to_string(),
            latest,
            history: None,
            revisions,
        })
        .collect())
}
