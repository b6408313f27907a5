//! `verify --restore-test`: load a `pg_dumpall` dump into a throwaway local
//! PostgreSQL and report what came back: databases, tables, exact row counts.

use std::io::{self, BufRead, BufReader, Read};
use std::process::Stdio;

use serde::Serialize;

use super::local_postgres::{LocalPostgresError, PostgresBinaries, TableCount, ThrowawayPostgres};

/// Errors that stop a restore test (SQL errors inside the dump do not: they
/// are counted in the report).
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Postgres(#[from] LocalPostgresError),
    #[error("feeding the dump to psql failed: {0}")]
    Feed(io::Error),
    #[error("psql stopped while restoring the dump: {0}")]
    Psql(String),
}

/// One restored database.
#[derive(Debug, Clone, Serialize)]
pub struct DatabaseReport {
    pub name: String,
    pub tables: Vec<TableCount>,
}

/// What a restore test found.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreReport {
    /// Version of the local PostgreSQL the dump was restored into.
    pub postgres_version: String,
    pub databases: Vec<DatabaseReport>,
    /// SQL errors while restoring, other than the expected ones.
    pub errors: u64,
    /// Errors every `pg_dumpall` restore into a fresh cluster shows
    /// (`role "..." already exists`).
    pub expected_errors: u64,
    /// The first few unexpected errors, with quoted values masked.
    pub error_samples: Vec<String>,
}

impl RestoreReport {
    /// The tables of a restored database.
    pub fn database(&self, name: &str) -> Option<&DatabaseReport> {
        self.databases.iter().find(|d| d.name == name)
    }
}

/// Restores `dump` into a new throwaway server, reports, and removes the server.
pub fn restore_test(
    bins: Option<PostgresBinaries>,
    dump: &mut dyn Read,
) -> Result<RestoreReport, RestoreError> {
    let pg = match bins {
        Some(b) => ThrowawayPostgres::start_with(b)?,
        None => ThrowawayPostgres::start()?,
    };
    let report = restore_into(&pg, dump);
    pg.stop()?;
    report
}

/// Restores `dump` (plain SQL from `pg_dumpall`) into `pg` and reports.
pub fn restore_into(
    pg: &ThrowawayPostgres,
    dump: &mut dyn Read,
) -> Result<RestoreReport, RestoreError> {
    let mut psql = pg.client("psql");
    psql.args(["-X", "-q", "-v", "ON_ERROR_STOP=0", "-v", "VERBOSITY=terse"])
        .args(["-d", "postgres", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = psql
        .spawn()
        .map_err(|e| RestoreError::Psql(format!("cannot start psql: {e}")))?;
    let stderr = child.stderr.take().expect("stderr is piped");
    let errors = std::thread::spawn(move || count_errors(stderr));
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let fed = io::copy(dump, &mut stdin);
    drop(stdin);
    let status = child
        .wait()
        .map_err(|e| RestoreError::Psql(e.to_string()))?;
    let (errors, expected_errors, error_samples) = errors
        .join()
        .map_err(|_| RestoreError::Psql("reading psql's messages failed".to_owned()))?;
    match fed {
        Ok(_) => {}
        // psql exited early; its status says why.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
        Err(e) => return Err(RestoreError::Feed(e)),
    }
    if !status.success() {
        return Err(RestoreError::Psql(format!(
            "psql exited with {status} after {errors} errors"
        )));
    }
    let mut databases = Vec::new();
    for name in pg.databases()? {
        let tables = pg.table_counts(&name)?;
        databases.push(DatabaseReport { name, tables });
    }
    Ok(RestoreReport {
        postgres_version: pg.version()?,
        databases,
        errors,
        expected_errors,
        error_samples,
    })
}

fn count_errors(stderr: impl Read) -> (u64, u64, Vec<String>) {
    let (mut errors, mut expected, mut samples) = (0u64, 0u64, Vec::new());
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        let Some(pos) = line.find("ERROR:").or_else(|| line.find("FATAL:")) else {
            continue;
        };
        let message = &line[pos..];
        if message.contains("role \"") && message.ends_with("already exists") {
            expected += 1;
            continue;
        }
        errors += 1;
        if samples.len() < 5 {
            samples.push(mask_quoted(message));
        }
    }
    (errors, expected, samples)
}

/// Masks quoted parts of a message: they can hold data from the dump.
fn mask_quoted(message: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for c in message.chars().take(300) {
        match c {
            '"' => {
                inside = !inside;
                out.push_str(if inside { "\"…" } else { "\"" });
            }
            _ if inside => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_counted_and_masked() {
        let text = "psql:<stdin>:3: ERROR:  role \"yubiuser\" already exists\n\
                    psql:<stdin>:9: ERROR:  invalid input syntax for type integer: \"secret\"\n\
                    NOTICE: fine\n";
        let (errors, expected, samples) = count_errors(text.as_bytes());
        assert_eq!((errors, expected), (1, 1));
        assert_eq!(
            samples[0],
            "ERROR:  invalid input syntax for type integer: \"…\""
        );
    }
}
