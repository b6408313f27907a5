//! PostgreSQL's `SELECT version()`, run with `psql` inside its pod.

use serde::Serialize;

use super::ProbeError;
use crate::cluster::ApiEndpoint;
use crate::cluster::exec;
use crate::topology::PostgresTarget;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PostgresVersion {
    /// `15.8`, as `SHOW server_version` would put it.
    pub version: String,
    /// The whole `SELECT version()` banner.
    pub full: String,
}

pub async fn version(
    client: &kube::Client,
    api: &ApiEndpoint,
    namespace: &str,
    target: &PostgresTarget,
) -> Result<PostgresVersion, ProbeError> {
    let out = exec::run(
        client,
        api,
        namespace,
        &target.pod,
        Some(&target.container),
        &[
            "psql",
            "-U",
            &target.user,
            "-d",
            &target.database,
            "-tAc",
            "SELECT version()",
        ],
        64 * 1024,
    )
    .await?;
    if !out.outcome.success() {
        return Err(ProbeError::Answer(format!(
            "psql -U {} -d {} in pod {} ({}): {}",
            target.user,
            target.database,
            target.pod,
            target.container,
            out.outcome.describe()
        )));
    }
    let full = out.stdout_text();
    parse_banner(&full).ok_or_else(|| {
        ProbeError::Answer(format!(
            "psql in pod {} answered {:?}, not a PostgreSQL version banner",
            target.pod,
            truncate(&full, 120)
        ))
    })
}

/// `PostgreSQL 15.8 (Debian ...) on ...` -> version `15.8`.
pub fn parse_banner(full: &str) -> Option<PostgresVersion> {
    let line = full.lines().find(|l| l.contains("PostgreSQL"))?.trim();
    let after = line.split_once("PostgreSQL")?.1.trim_start();
    let version: String = after
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != ',')
        .collect();
    if version.is_empty() || !version.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    Some(PostgresVersion {
        version,
        full: line.to_string(),
    })
}

pub(crate) fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(n).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banners() {
        let b = parse_banner("PostgreSQL 15.8 (Debian 15.8-1.pgdg120+1) on x86_64-pc-linux-gnu, compiled by gcc, 64-bit\n").unwrap();
        assert_eq!(b.version, "15.8");
        assert!(b.full.starts_with("PostgreSQL 15.8"));
        assert_eq!(
            parse_banner("PostgreSQL 17beta1 on aarch64")
                .unwrap()
                .version,
            "17beta1"
        );
        assert!(parse_banner("psql: error").is_none());
        assert!(parse_banner("").is_none());
    }
}
