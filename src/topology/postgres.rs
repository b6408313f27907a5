//! Where PostgreSQL runs in the data release, and how to connect to it.

use serde::Serialize;
use serde_json::Value;

use super::TopologyError;
use super::manifest::{ManifestObject, str_at};
use super::pods::{PodInfo, best_container, describe_workloads, pick_pod, pod_from_pins};
use super::workloads::{ContainerSpec, WorkloadKind, workloads};
use crate::config::PostgresPins;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
/// Where PostgreSQL runs and how to connect to it from inside its pod.
pub struct PostgresTarget {
    pub workload: String,
    pub pod: String,
    pub container: String,
    pub user: String,
    pub database: String,
}

/// How strongly a container looks like PostgreSQL (0: not at all).
fn postgres_score(c: &ContainerSpec) -> u8 {
    let image = c.image_name().to_ascii_lowercase();
    let name = c.name.to_ascii_lowercase();
    if image.contains("exporter") || name.contains("exporter") || image.contains("pgbouncer") {
        return 0;
    }
    if matches!(
        image.as_str(),
        "postgres" | "postgresql" | "postgis" | "timescaledb"
    ) {
        90
    } else if name == "postgres" || name == "postgresql" {
        80
    } else if image.contains("postgres") || name.contains("postgres") {
        50
    } else {
        0
    }
}

const USER_ENV: [&str; 5] = [
    "POSTGRES_USER",
    "PGUSER",
    "POSTGRESQL_USERNAME",
    "POSTGRES_USERNAME",
    "POSTGRESQL_USER",
];
const DATABASE_ENV: [&str; 5] = [
    "POSTGRES_DB",
    "PGDATABASE",
    "POSTGRESQL_DATABASE",
    "POSTGRES_DATABASE",
    "POSTGRESQL_DB",
];

/// Finds PostgreSQL in the data release.
pub fn discover_postgres(
    release: &str,
    objects: &[ManifestObject],
    values: &Value,
    pods: &[PodInfo],
    namespace: &str,
    pins: &PostgresPins,
) -> Result<PostgresTarget, TopologyError> {
    let ws = workloads(objects);
    let best = best_container(&ws, |w, c| {
        if w.kind == WorkloadKind::CnpgCluster {
            100
        } else {
            postgres_score(c)
        }
    });

    let pinned_pod = pod_from_pins(
        pins.pod.as_deref(),
        pins.selector.as_deref(),
        pods,
        namespace,
        "PostgreSQL",
        "postgres",
    )?;

    let Some((workload, container)) = best else {
        // Without a workload, pins must say everything.
        if let (Some(pod), Some(user)) = (pinned_pod.clone(), pins.user.clone()) {
            return Ok(PostgresTarget {
                workload: "pinned".into(),
                pod,
                container: pins.container.clone().unwrap_or_else(|| "postgres".into()),
                database: pins.database.clone().unwrap_or_else(|| "postgres".into()),
                user,
            });
        }
        return Err(TopologyError::NoWorkload {
            release: release.to_string(),
            what: "PostgreSQL",
            looked_for: "a container with a postgres image or name, or a CloudNativePG Cluster",
            found: describe_workloads(&ws),
            pin_hint: "postgres.pod or postgres.selector, plus postgres.user",
        });
    };

    let pod = pinned_pod.map_or_else(|| pick_pod(workload, pods, namespace), Ok)?;

    let (env_user, env_db) = if workload.kind == WorkloadKind::CnpgCluster {
        // CloudNativePG pods allow the `postgres` superuser over the local
        // socket (peer auth); the application database is initdb's.
        let db = str_at(&workload.body, &["spec", "bootstrap", "initdb", "database"])
            .unwrap_or("app")
            .to_string();
        (Some("postgres".to_string()), Some(db))
    } else {
        (
            USER_ENV.iter().find_map(|k| container.env.get(*k).cloned()),
            DATABASE_ENV
                .iter()
                .find_map(|k| container.env.get(*k).cloned()),
        )
    };

    let user = pins
        .user
        .clone()
        .or(env_user)
        .or_else(|| value_search(values, USER_KEYS))
        .ok_or_else(|| TopologyError::NoDatabaseUser {
            workload: workload.display(),
            container: container.name.clone(),
        })?;
    let database = pins
        .database
        .clone()
        .or(env_db)
        .or_else(|| value_search(values, DATABASE_KEYS))
        .unwrap_or_else(|| "postgres".into());

    Ok(PostgresTarget {
        workload: workload.display(),
        pod,
        container: pins
            .container
            .clone()
            .unwrap_or_else(|| container.name.clone()),
        user,
        database,
    })
}

const USER_KEYS: &[&str] = &[
    "username",
    "user",
    "postgresUser",
    "postgresqlUsername",
    "dbUser",
    "databaseUser",
];
const DATABASE_KEYS: &[&str] = &[
    "database",
    "db",
    "dbName",
    "databaseName",
    "postgresDatabase",
    "postgresqlDatabase",
    "postgresDB",
];
const DATABASE_CONTEXT: &[&str] = &["postgres", "postgresql", "database", "db", "auth", "pg"];

/// Finds a string under one of `keys` whose path mentions PostgreSQL or a
/// database (e.g. `postgres.user`, `postgresql.auth.username`). Shallow
/// matches win; ties go to the key order given.
fn value_search(values: &Value, keys: &[&str]) -> Option<String> {
    fn walk<'a>(
        v: &'a Value,
        path: &mut Vec<String>,
        keys: &[&str],
        hits: &mut Vec<(usize, usize, &'a str)>,
    ) {
        let Value::Object(map) = v else { return };
        for (k, child) in map {
            if let (Some(rank), Value::String(s)) = (keys.iter().position(|key| key == k), child)
                && !s.is_empty()
                && path.iter().any(|p| {
                    let p = p.to_ascii_lowercase();
                    DATABASE_CONTEXT.iter().any(|c| p.contains(c))
                })
            {
                hits.push((path.len(), rank, s.as_str()));
            }
            if path.len() < 6 {
                path.push(k.clone());
                walk(child, path, keys, hits);
                path.pop();
            }
        }
    }
    let mut hits = Vec::new();
    walk(values, &mut Vec::new(), keys, &mut hits);
    hits.sort_by_key(|(depth, rank, _)| (*depth, *rank));
    hits.first().map(|(_, _, s)| s.to_string())
}
