//! A blue-green upgrade left waiting: the services' green release
//! (`<services>-green`) exists. Its status and its backend's health are
//! shown, and the operator is told to promote or abort it first.

use super::{Check, Context};
use crate::probes;

pub async fn checks(cx: &Context<'_>) -> Vec<Check> {
    let Some(green) = &cx.survey.green else {
        return Vec::new();
    };
    let ns = &cx.survey.namespace;
    let release = match &green.latest {
        Ok(r) => format!(
            "{} revision {} ({}) is {}",
            green.name,
            r.version,
            r.chart_metadata()
                .map(|m| format!("{} {}", m.name, m.version))
                .unwrap_or_else(|| "unknown chart".into()),
            r.info.status
        ),
        Err(e) => format!("{}: {e}", green.name),
    };
    let health = match &cx.survey.green_backend {
        Some(Ok(be)) => {
            match probes::backend::health(&cx.target.client, &cx.target.api(), ns, be).await {
                Ok(h) => format!(
                    "its backend /api/health answers {}{}",
                    h.http_status,
                    h.version
                        .as_deref()
                        .map(|v| format!(" with version {v}"))
                        .unwrap_or_default()
                ),
                Err(e) => format!("its backend did not answer /api/health: {e}"),
            }
        }
        Some(Err(e)) => format!("its backend was not found: {e}"),
        None => "its backend was not looked for".into(),
    };
    vec![Check::warn(
        "release.green",
        format!("a blue-green upgrade is waiting: {release}; {health}"),
        format!(
            "finish it first: `{}` switches traffic to green, `{}` removes it",
            cx.command("upgrade --promote"),
            cx.command("upgrade --abort")
        ),
    )]
}
