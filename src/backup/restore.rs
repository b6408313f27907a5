//! `verify --restore-test`: load a `pg_dumpall` dump into a throwaway local
//! PostgreSQL and report what came back: databases, tables, exact row counts.
//!
//! The dump goes through [`GuardedDump`] on its way to psql (refused lines
//! never reach it), psql runs in restricted mode when it has `\restrict`,
//! and stops at the first error (`ON_ERROR_STOP=1`): a restore into a fresh
//! server has no expected errors, since the server's superuser has a name no
//! dump holds (see docs/security.md).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::process::{Child, Stdio};

use serde::Serialize;

use super::dump_check::{DumpRefusal, GuardedDump};
use super::local_postgres::{
    LocalPostgresError, PostgresBinaries, TableCount, ThrowawayPostgres, random_hex,
};
use super::signals;

/// How many of psql's error lines a failed restore reports.
const ERROR_SAMPLES: usize = 5;

/// Errors that fail a restore test.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Postgres(#[from] LocalPostgresError),
    #[error(
        "the dump was refused before psql ran it: {0}; do not restore this dump with psql: it was altered or does not come from pg_dumpall"
    )]
    Refused(DumpRefusal),
    #[error("feeding the dump to psql failed: {0}")]
    Feed(io::Error),
    #[error("psql could not run: {0}")]
    Psql(String),
    #[error(
        "psql stopped at the first error of the dump ({}); a restore into a fresh server has none, so the dump does not restore as it is",
        .errors.join("; ")
    )]
    Statements {
        /// psql's first error lines, quoted values masked.
        errors: Vec<String>,
    },
    #[error("the restore test was stopped by a signal")]
    Stopped,
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
    /// SQL errors while restoring: always 0 in a report (the first error
    /// fails the restore test instead).
    pub errors: u64,
    /// Errors tolerated as expected: always 0, since the throwaway server's
    /// superuser has a name no dump holds (no `role ... already exists`).
    pub expected_errors: u64,
    /// Kept for the output's shape; errors are in the failure instead.
    pub error_samples: Vec<String>,
    /// Whether psql ran in restricted mode (`\restrict`, psql 13.22+).
    pub restricted: bool,
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
    let stopped = pg.stop();
    let report = report?;
    stopped?;
    Ok(report)
}

/// Restores `dump` (plain SQL from `pg_dumpall`) into `pg` and reports.
pub fn restore_into(
    pg: &ThrowawayPostgres,
    dump: &mut dyn Read,
) -> Result<RestoreReport, RestoreError> {
    let restrict_key = if pg.psql_has_restrict() {
        Some(random_hex(32).map_err(RestoreError::Feed)?)
    } else {
        None
    };
    let mut psql = pg.client("psql");
    psql.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=terse"])
        .args(["-d", "postgres"]);
    if let Some(key) = &restrict_key {
        // Not a credential: it only has to be unknown to the dump, which
        // was written before the key was drawn.
        psql.arg("-c").arg(format!("\\restrict {key}"));
    }
    psql.args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = psql
        .spawn()
        .map_err(|e| RestoreError::Psql(format!("cannot start psql: {e}")))?;
    let stderr = child.stderr.take().expect("stderr is piped");
    let errors = std::thread::spawn(move || error_lines(stderr));
    let mut guarded = GuardedDump::new(dump, restrict_key.clone());
    let fed = feed(&mut guarded, &mut child);
    let status = child.wait();
    let errors = errors.join().unwrap_or_default();
    if signals::stop_requested() {
        return Err(RestoreError::Stopped);
    }
    if let Err(e) = fed {
        return Err(match DumpRefusal::from_io(&e) {
            Some(r) => RestoreError::Refused(r.clone()),
            None => RestoreError::Feed(e),
        });
    }
    let status = status.map_err(|e| RestoreError::Psql(e.to_string()))?;
    if !status.success() {
        return Err(RestoreError::Statements {
            errors: if errors.is_empty() {
                vec![format!("psql exited with {status} and printed no error")]
            } else {
                errors
            },
        });
    }
    let mut databases = Vec::new();
    for name in pg.databases()? {
        let tables = pg.table_counts(&name)?;
        databases.push(DatabaseReport { name, tables });
    }
    Ok(RestoreReport {
        postgres_version: pg.version()?,
        databases,
        errors: 0,
        expected_errors: 0,
        error_samples: Vec::new(),
        restricted: restrict_key.is_some(),
    })
}

/// Copies the checked dump into psql's stdin. On a refusal or a stop, psql
/// is killed before it reads the rest of its input; when psql exits early
/// (an error), its exit status says why.
fn feed(dump: &mut dyn Read, child: &mut Child) -> io::Result<()> {
    // The checked dump comes a line at a time: write it in large chunks.
    let mut stdin =
        io::BufWriter::with_capacity(256 * 1024, child.stdin.take().expect("stdin is piped"));
    let mut buf = vec![0u8; 256 * 1024];
    let result = loop {
        if let Err(e) = signals::check_stop() {
            break Err(e);
        }
        let n = match dump.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(e),
        };
        match stdin.write_all(&buf[..n]) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    let result = result.and_then(|()| match stdin.flush() {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e),
        _ => Ok(()),
    });
    if result.is_err() {
        // Not a clean end of input: psql must not run what it has buffered.
        let _ = child.kill();
        // Nothing more reaches psql, not even what is buffered here.
        let (_, _) = stdin.into_parts();
    } else {
        drop(stdin);
    }
    result
}

/// psql's error lines (`psql:<stdin>:LINE: ERROR: ...`), the first few,
/// with quoted values masked.
fn error_lines(stderr: impl Read) -> Vec<String> {
    let mut samples = Vec::new();
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        let Some(pos) = ["ERROR:", "FATAL:", "error:"]
            .iter()
            .filter_map(|m| line.find(m))
            .min()
        else {
            continue;
        };
        if samples.len() < ERROR_SAMPLES {
            samples.push(match dump_line_of(&line) {
                Some(n) => format!("line {n}: {}", mask_quoted(&line[pos..])),
                None => mask_quoted(&line[pos..]),
            });
        }
    }
    samples
}

/// The dump line psql names in `psql:<stdin>:LINE: ...`.
fn dump_line_of(line: &str) -> Option<u64> {
    line.strip_prefix("psql:<stdin>:")?
        .split(':')
        .next()?
        .parse()
        .ok()
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
    fn error_lines_name_the_dump_line_and_mask_values() {
        let text = "psql:<stdin>:9: ERROR:  invalid input syntax for type integer: \"secret\"\n\
                    NOTICE: fine\n\
                    psql:<stdin>:12: error: backslash commands are restricted; only \\unrestrict is allowed\n";
        let samples = error_lines(text.as_bytes());
        assert_eq!(
            samples,
            vec![
                "line 9: ERROR:  invalid input syntax for type integer: \"…\"".to_owned(),
                "line 12: error: backslash commands are restricted; only \\unrestrict is allowed"
                    .to_owned(),
            ]
        );
    }
}
