//! The deployment's live objects, as the API server has them now:
//! Deployments, StatefulSets (with their rollout status) and
//! PersistentVolumeClaims of the namespace, one list each.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::Api;
use kube::api::ListParams;
use tokio::time::Instant;

use super::SurveyError;
use crate::cluster::ClusterError;
use crate::target::Target;

#[derive(Debug, Clone, Default)]
pub struct Live {
    pub deployments: Vec<Deployment>,
    pub statefulsets: Vec<StatefulSet>,
    pub claims: Vec<PersistentVolumeClaim>,
}

impl Live {
    pub async fn gather(
        target: &Target,
        deadline: Instant,
        limit: Duration,
    ) -> Result<Live, SurveyError> {
        let ns = target.namespace.as_str();
        let lp = ListParams::default();
        let fail = |resource: &str, e: kube::Error| {
            SurveyError::Cluster(Arc::new(ClusterError::from_kube(
                e,
                &target.api(),
                &format!("list {resource} in namespace {ns}"),
                resource,
            )))
        };
        let deployments: Api<Deployment> = Api::namespaced(target.client.clone(), ns);
        let statefulsets: Api<StatefulSet> = Api::namespaced(target.client.clone(), ns);
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(target.client.clone(), ns);
        let all = async {
            let (d, s, c) = tokio::join!(
                deployments.list(&lp),
                statefulsets.list(&lp),
                claims.list(&lp)
            );
            Ok(Live {
                deployments: d.map_err(|e| fail("deployments", e))?.items,
                statefulsets: s.map_err(|e| fail("statefulsets", e))?.items,
                claims: c.map_err(|e| fail("persistentvolumeclaims", e))?.items,
            })
        };
        tokio::time::timeout_at(deadline, all)
            .await
            .unwrap_or_else(|_| {
                Err(SurveyError::TimedOut {
                    what: format!("listing workloads in namespace {ns}"),
                    after: limit,
                })
            })
    }

    pub fn deployment(&self, name: &str) -> Option<&Deployment> {
        self.deployments
            .iter()
            .find(|d| d.metadata.name.as_deref() == Some(name))
    }

    pub fn statefulset(&self, name: &str) -> Option<&StatefulSet> {
        self.statefulsets
            .iter()
            .find(|d| d.metadata.name.as_deref() == Some(name))
    }
}
