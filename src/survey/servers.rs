//! What the running servers say about themselves, asked concurrently
//! under one deadline through the probes: the Kubernetes API's version,
//! the helm client's, PostgreSQL's `SELECT version()`, OpenBao's seal
//! status (version, initialised, sealed, storage type) and the backend's
//! `/api/health`. Each answer, or why there is none, stays with its server.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{Survey, SurveyError, SurveyOptions};
use crate::cluster::ClusterError;
use crate::helm::cli::HelmCliError;
use crate::probes::backend::BackendHealth;
use crate::probes::openbao::OpenbaoStatus;
use crate::probes::postgres::PostgresVersion;
use crate::probes::{self, ProbeError};
use crate::target::Target;

/// Why a server gave no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Failure {
    #[error("no answer within {}", crate::duration::show(*.0))]
    TimedOut(Duration),
    /// There is nothing to ask: the server was not found.
    #[error(transparent)]
    NotFound(SurveyError),
    #[error(transparent)]
    Probe(Arc<ProbeError>),
    #[error(transparent)]
    Cluster(Arc<ClusterError>),
    #[error(transparent)]
    Helm(Arc<HelmCliError>),
}

/// Which servers to ask.
#[derive(Debug, Clone, Copy)]
pub struct Which {
    pub kubernetes: bool,
    pub helm: bool,
    pub postgres: bool,
    pub openbao: bool,
    pub backend: bool,
}

impl Which {
    pub const ALL: Which = Which {
        kubernetes: true,
        helm: true,
        postgres: true,
        openbao: true,
        backend: true,
    };
    pub const NONE: Which = Which {
        kubernetes: false,
        helm: false,
        postgres: false,
        openbao: false,
        backend: false,
    };
}

/// The servers' answers; `None` where the server was not asked.
#[derive(Debug, Clone, Default)]
pub struct ServerAnswers {
    pub kubernetes: Option<Result<String, Failure>>,
    /// `Ok(None)`: no helm binary was found (not an error).
    pub helm: Option<Result<Option<String>, Failure>>,
    pub postgres: Option<Result<PostgresVersion, Failure>>,
    pub openbao: Option<Result<OpenbaoStatus, Failure>>,
    pub backend: Option<Result<BackendHealth, Failure>>,
}

async fn ask<T, E>(
    wanted: bool,
    deadline: Instant,
    limit: Duration,
    probe: impl std::future::Future<Output = Result<T, E>>,
    failure: impl FnOnce(E) -> Failure,
) -> Option<Result<T, Failure>> {
    if !wanted {
        return None;
    }
    Some(match tokio::time::timeout_at(deadline, probe).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(failure(e)),
        Err(_) => Err(Failure::TimedOut(limit)),
    })
}

impl Survey {
    /// Asks the servers `which` names, all at once, until the deadline of
    /// `opts` (the survey's own).
    pub async fn ask_servers(
        &self,
        target: &Target,
        which: Which,
        opts: &SurveyOptions,
    ) -> ServerAnswers {
        let started = Instant::now();
        let (deadline, limit) = (opts.deadline, opts.limit);
        let client = &target.client;
        let api = target.api();
        let ns = target.namespace.as_str();
        let probe = |e: ProbeError| Failure::Probe(Arc::new(e));
        let (kubernetes, helm, postgres, openbao, backend) = tokio::join!(
            ask(
                which.kubernetes,
                deadline,
                limit,
                probes::kubernetes::server_version(client, &api),
                |e| Failure::Cluster(Arc::new(e)),
            ),
            ask(
                which.helm,
                deadline,
                limit,
                target.settings.helm.version(),
                |e| Failure::Helm(Arc::new(e)),
            ),
            ask(
                which.postgres,
                deadline,
                limit,
                async {
                    match found(&self.postgres) {
                        Ok(t) => probes::postgres::version(client, &api, ns, t)
                            .await
                            .map_err(probe),
                        Err(f) => Err(f),
                    }
                },
                |f| f,
            ),
            ask(
                which.openbao,
                deadline,
                limit,
                async {
                    match found(&self.openbao) {
                        Ok(t) => probes::openbao::status(client, &api, ns, t)
                            .await
                            .map_err(probe),
                        Err(f) => Err(f),
                    }
                },
                |f| f,
            ),
            ask(
                which.backend,
                deadline,
                limit,
                async {
                    match found(&self.backend) {
                        Ok(t) => probes::backend::health(client, &api, ns, t)
                            .await
                            .map_err(probe),
                        Err(f) => Err(f),
                    }
                },
                |f| f,
            ),
        );
        target
            .settings
            .messages
            .debug(&format!("servers answered in {:?}", started.elapsed()));
        ServerAnswers {
            kubernetes,
            helm,
            postgres,
            openbao,
            backend,
        }
    }
}

fn found<T>(t: &Result<T, SurveyError>) -> Result<&T, Failure> {
    t.as_ref().map_err(|e| Failure::NotFound(e.clone()))
}
