//! `versions`: releases, charts and server versions in one report, with the
//! compatibility matrix. One survey and the servers' answers, all under one
//! deadline; a probe that fails marks its own row and hides nothing else.

mod schema;
mod table;

pub use schema::*;
pub use table::render_table;

use std::time::Duration;

use clap::Args as ClapArgs;

use crate::compat;
use crate::error::Error;
use crate::helm::release::Release;
use crate::probes::backend::BackendHealth;
use crate::report::{Painter, emit};
use crate::survey::{Failure, ReleaseSurvey, ServerAnswers, Survey, SurveyOptions, Which};
use crate::target::{Session, Target};

/// `versions` flags.
#[derive(Debug, ClapArgs, Clone)]
pub struct Args {
    /// Overall time limit for all probes together, e.g. `30s`.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = crate::duration::positive_arg)]
    pub timeout: Duration,

    /// Also list every revision of each release.
    #[arg(long)]
    pub history: bool,
}

pub async fn run(session: &Session, args: &Args) -> Result<u8, Error> {
    let target = session.connect().await?;
    let report = gather(&target, args.timeout, args.history).await?;
    let painter = Painter {
        color: target.settings.color,
    };
    emit(target.settings.output, &report, |out| {
        render_table(&report, painter, out)
    })?;
    Ok(if report.ok { 0 } else { 1 })
}

/// Collects the whole report. Fails only when nothing useful can be shown:
/// the API is unreachable or refuses us, or no release exists.
pub async fn gather(
    target: &Target,
    timeout: Duration,
    history: bool,
) -> Result<VersionsReport, Error> {
    let mut opts = SurveyOptions::within(timeout);
    opts.history = history;
    let survey = Survey::gather(target, opts).await?;
    let (answers, green_health) = tokio::join!(
        survey.ask_servers(target, Which::ALL, &opts),
        green_health(target, &survey, timeout)
    );
    let mut report = build(target, &survey, &answers);
    if let Some(g) = &survey.green {
        let mut backend = BackendServer::default();
        match &survey.green_backend {
            Some(Ok(t)) => {
                backend.service = Some(t.service.clone());
                backend.port = Some(t.port);
            }
            Some(Err(e)) => backend.error = Some(e.to_string()),
            None => {}
        }
        match green_health {
            Some(Ok(h)) => backend_health(&mut backend, &h),
            Some(Err(e)) => backend.error = Some(e),
            None => {}
        }
        let release = component_row(g);
        report.ok &= release.error.is_none()
            && release.status.as_deref() == Some("deployed")
            && backend.error.is_none();
        report.green = Some(GreenRow { release, backend });
    }
    Ok(report)
}

/// `/api/health` of green's backend, when there is one.
async fn green_health(
    target: &Target,
    survey: &Survey,
    timeout: Duration,
) -> Option<Result<BackendHealth, String>> {
    let Some(Ok(t)) = &survey.green_backend else {
        return None;
    };
    let api = target.api();
    let probe = crate::probes::backend::health(&target.client, &api, &target.namespace, t);
    Some(match tokio::time::timeout(timeout, probe).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!(
            "no answer within {}",
            crate::duration::show(timeout)
        )),
    })
}

fn backend_health(s: &mut BackendServer, h: &BackendHealth) {
    if !h.healthy() {
        s.error = Some(format!(
            "/api/health answered {} with status {}",
            h.http_status,
            h.status.as_deref().unwrap_or("(none)")
        ));
    }
    s.version = h.version.clone();
    s.status = h.status.clone();
    s.http_status = Some(h.http_status);
}

/// The report from a survey and the servers' answers.
pub fn build(target: &Target, survey: &Survey, answers: &ServerAnswers) -> VersionsReport {
    let components = survey.releases().map(component_row).to_vec();
    let servers = servers(target, survey, answers);
    let compatibility = compatibility(&servers);
    let ok = components
        .iter()
        .all(|c| c.error.is_none() && c.status.as_deref() == Some("deployed"))
        && servers.kubernetes.error.is_none()
        && servers.helm.error.is_none()
        && servers.postgresql.error.is_none()
        && servers.openbao.error.is_none()
        && servers.openbao.initialized == Some(true)
        && servers.openbao.sealed == Some(false)
        && servers.backend.error.is_none()
        && compatibility.iter().all(|c| c.ok != Some(false))
        && compatibility
            .iter()
            .filter(|c| c.item != compat::HELM.item)
            .all(|c| c.ok == Some(true));
    VersionsReport {
        namespace: survey.namespace.clone(),
        context: target.context.clone(),
        server: target.server.clone(),
        components,
        servers,
        compatibility,
        green: None,
        ok,
    }
}

fn servers(target: &Target, survey: &Survey, a: &ServerAnswers) -> Servers {
    let text = |f: &Failure| f.to_string();
    let mut s = Servers::default();
    match &a.kubernetes {
        Some(Ok(v)) => s.kubernetes.version = Some(v.clone()),
        Some(Err(f)) => s.kubernetes.error = Some(text(f)),
        None => {}
    }
    s.helm.path = target.settings.helm.bin().map(|p| p.display().to_string());
    match &a.helm {
        Some(Ok(v)) => s.helm.version = v.clone(),
        Some(Err(f)) => s.helm.error = Some(text(f)),
        None => {}
    }
    if let Ok(t) = &survey.postgres {
        s.postgresql.pod = Some(t.pod.clone());
        s.postgresql.container = Some(t.container.clone());
        s.postgresql.user = Some(t.user.clone());
        s.postgresql.database = Some(t.database.clone());
    }
    match &a.postgres {
        Some(Ok(v)) => {
            s.postgresql.version = Some(v.version.clone());
            s.postgresql.full_version = Some(v.full.clone());
        }
        Some(Err(f)) => s.postgresql.error = Some(text(f)),
        None => {}
    }
    if let Ok(t) = &survey.openbao {
        s.openbao.pod = Some(t.pod.clone());
        s.openbao.container = Some(t.container.clone());
    }
    match &a.openbao {
        Some(Ok(st)) => {
            s.openbao.version = Some(st.version.clone()).filter(|v| !v.is_empty());
            s.openbao.initialized = Some(st.initialized);
            s.openbao.sealed = Some(st.sealed);
            s.openbao.via = Some(st.via.clone());
        }
        Some(Err(f)) => s.openbao.error = Some(text(f)),
        None => {}
    }
    if let Ok(t) = &survey.backend {
        s.backend.service = Some(t.service.clone());
        s.backend.port = Some(t.port);
    }
    match &a.backend {
        Some(Ok(h)) => backend_health(&mut s.backend, h),
        Some(Err(f)) => s.backend.error = Some(text(f)),
        None => {}
    }
    s
}

/// The runbook's compatibility matrix against what was found.
pub fn compatibility(s: &Servers) -> Vec<CompatibilityRow> {
    compat::MATRIX
        .iter()
        .map(|req| {
            let found = match req.item {
                "Kubernetes" => s.kubernetes.version.as_deref(),
                "Helm" => s.helm.version.as_deref(),
                "PostgreSQL" => s.postgresql.version.as_deref(),
                "OpenBao" => s.openbao.version.as_deref(),
                _ => None,
            };
            req.check(found)
        })
        .collect()
}

/// Name, chart, app version of a revision.
pub fn chart_fields(r: &Release) -> (Option<String>, Option<String>, Option<String>) {
    let m = r.chart_metadata();
    let nonempty = |s: &str| Some(s.to_string()).filter(|s| !s.is_empty());
    (
        m.and_then(|m| nonempty(&m.name)),
        m.and_then(|m| nonempty(&m.version)),
        m.and_then(|m| nonempty(&m.app_version)),
    )
}

fn component_row(r: &ReleaseSurvey) -> ComponentRow {
    let mut row = ComponentRow {
        component: r.component,
        release: r.name.clone(),
        chart: None,
        chart_version: None,
        app_version: None,
        revision: None,
        status: None,
        first_deployed: None,
        last_deployed: None,
        description: None,
        error: None,
        history: None,
    };
    match &r.latest {
        Err(e) => row.error = Some(e.to_string()),
        Ok(rel) => {
            (row.chart, row.chart_version, row.app_version) = chart_fields(rel);
            row.revision = Some(rel.version);
            row.status = Some(rel.info.status.clone()).filter(|s| !s.is_empty());
            row.first_deployed = rel.info.first_deployed.clone();
            row.last_deployed = rel.info.last_deployed.clone();
            row.description = Some(rel.info.description.clone()).filter(|s| !s.is_empty());
            row.history = r.history.as_ref().map(|all| {
                all.iter()
                    .map(|r| {
                        let (chart, chart_version, app_version) = chart_fields(r);
                        RevisionRow {
                            revision: r.version,
                            status: r.info.status.clone(),
                            chart,
                            chart_version,
                            app_version,
                            last_deployed: r.info.last_deployed.clone(),
                            description: r.info.description.clone(),
                        }
                    })
                    .collect()
            });
        }
    }
    row
}

#[cfg(test)]
mod tests;
