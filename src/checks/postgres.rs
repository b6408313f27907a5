//! PostgreSQL accepts connections and answers a query (`SELECT version()`
//! through `psql` in its pod, as the discovered user and database), and
//! its major version is within the compatibility matrix.

use super::{Check, Context};
use crate::compat;
use crate::probes;

pub async fn checks(cx: &Context<'_>) -> Vec<Check> {
    vec![check(cx)]
}

fn check(cx: &Context<'_>) -> Check {
    let ns = &cx.survey.namespace;
    let pg = match &cx.survey.postgres {
        Ok(p) => p,
        Err(e) => {
            return Check::fail(
                "postgres",
                format!("PostgreSQL not found: {e}"),
                format!(
                    "see `kubectl get pods -n {ns}`; name its pod with `postgres.pod` in the config file if discovery picks the wrong one"
                ),
            );
        }
    };
    let v = match &cx.answers.postgres {
        Some(Ok(v)) => v,
        Some(Err(f)) => {
            return Check::fail(
                "postgres",
                format!(
                    "PostgreSQL in pod {} did not answer SELECT version() as user {} on database {}: {f}",
                    pg.pod, pg.user, pg.database
                ),
                format!(
                    "see why with `kubectl logs {} -c {} -n {ns}`",
                    pg.pod, pg.container
                ),
            );
        }
        None => return Check::fail("postgres", "not asked", "run preflight again"),
    };
    let major = probes::parse_version(&v.version)
        .map(|v| v.major.to_string())
        .unwrap_or_else(|| "unknown".into());
    let detail = format!(
        "PostgreSQL {} (major {major}) in pod {} accepts connections and answers as user {} on database {}",
        v.version, pg.pod, pg.user, pg.database
    );
    match compat::POSTGRESQL.accepts(&v.version) {
        Some(true) => Check::pass(
            "postgres",
            format!("{detail}; {}", compat::POSTGRESQL.required()),
        ),
        _ => Check::fail(
            "postgres",
            format!(
                "{detail}, outside the compatibility matrix ({}, up to {})",
                compat::POSTGRESQL.required(),
                compat::POSTGRESQL.max_major.unwrap_or_default()
            ),
            "move to a supported PostgreSQL major (dump and restore) before upgrading Kleidia",
        ),
    }
}
