//! The cluster and the helm client: reachable, and within the
//! compatibility matrix.

use super::{Check, Context};
use crate::compat;
use crate::survey::Failure;

pub async fn checks(cx: &Context<'_>) -> Vec<Check> {
    vec![kubernetes(cx), helm(cx)]
}

fn kubernetes(cx: &Context<'_>) -> Check {
    let server = &cx.target.server;
    match &cx.answers.kubernetes {
        Some(Ok(v)) => match compat::KUBERNETES.accepts(v) {
            Some(true) => Check::pass(
                "cluster",
                format!(
                    "{server} answers; Kubernetes {v} {}",
                    compat::KUBERNETES.required()
                ),
            ),
            _ => Check::fail(
                "cluster",
                format!(
                    "Kubernetes {v} at {server} is outside the compatibility matrix ({})",
                    compat::KUBERNETES.required()
                ),
                "upgrade the cluster first; Kleidia's charts need Kubernetes 1.24 or newer",
            ),
        },
        Some(Err(f)) => Check::fail(
            "cluster",
            format!("the Kubernetes API at {server} did not say its version: {f}"),
            "check that the cluster is reachable (`kubectl version`) and that --context points at it",
        ),
        None => Check::fail("cluster", "not asked", "run preflight again"),
    }
}

fn helm(cx: &Context<'_>) -> Check {
    let path = cx
        .target
        .settings
        .helm
        .bin()
        .map(|p| p.display().to_string());
    match (&cx.answers.helm, path) {
        (Some(Ok(Some(v))), Some(path)) => match compat::HELM.accepts(v) {
            Some(true) => Check::pass("helm", format!("{path} is {v} {}", compat::HELM.required())),
            _ => Check::fail(
                "helm",
                format!(
                    "{path} is {v}; upgrade needs Helm {}",
                    compat::HELM.required()
                ),
                "install Helm 3.8 or newer (or Helm 4) and point HELM_BIN at it",
            ),
        },
        (Some(Ok(_)), _) | (None, _) => Check::fail(
            "helm",
            "no helm binary found (HELM_BIN, then PATH)",
            "install Helm 3.8 or newer (or Helm 4) and set HELM_BIN or put it on PATH",
        ),
        (Some(Err(f)), path) => Check::fail(
            "helm",
            format!(
                "{} did not say its version: {}",
                path.unwrap_or_else(|| "helm".into()),
                match f {
                    Failure::TimedOut(_) => f.to_string(),
                    other => other.to_string(),
                }
            ),
            "check that HELM_BIN points at a working helm (`helm version`)",
        ),
    }
}
