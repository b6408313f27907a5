//! A throwaway local PostgreSQL server: `initdb` in a temporary folder,
//! listening only on a Unix socket inside that (0700) folder, stopped and
//! removed when dropped. Used by `backup verify --restore-test` and by tests.
//!
//! PostgreSQL refuses to run as root; when this program runs as root, the
//! server runs as an unprivileged user: `postgres` if it exists, else a
//! system user `kleidia-restore` created for it, else `nobody`.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde::Serialize;

/// Name of the bootstrap superuser of throwaway servers; unlikely to clash
/// with a role of a restored dump.
pub const SUPERUSER: &str = "kleidia_restore_admin";

/// Errors of the throwaway server.
#[derive(Debug, thiserror::Error)]
pub enum LocalPostgresError {
    #[error(
        "no PostgreSQL server programs (initdb, pg_ctl) found on PATH or in /usr/lib/postgresql/*/bin; install PostgreSQL (Debian: apt-get install postgresql) or put its bin folder on PATH"
    )]
    NotFound,
    #[error(
        "running as root, and no unprivileged user to run PostgreSQL as (tried 'postgres', creating 'kleidia-restore', 'nobody'): {0}"
    )]
    NoUser(String),
    #[error("{what} failed: {detail}")]
    Command { what: String, detail: String },
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> LocalPostgresError {
    let what = what.into();
    move |source| LocalPostgresError::Io { what, source }
}

/// The folder holding PostgreSQL's programs.
#[derive(Debug, Clone)]
pub struct PostgresBinaries {
    pub bin_dir: PathBuf,
}

impl PostgresBinaries {
    /// Finds `initdb` and `pg_ctl` on PATH, else the newest
    /// `/usr/lib/postgresql/<version>/bin`.
    pub fn find() -> Result<Self, LocalPostgresError> {
        if let (Ok(initdb), Ok(_)) = (which::which("initdb"), which::which("pg_ctl"))
            && let Some(dir) = initdb.parent()
            && dir.join("pg_ctl").is_file()
            && dir.join("psql").is_file()
        {
            return Ok(PostgresBinaries {
                bin_dir: dir.to_owned(),
            });
        }
        let mut candidates: Vec<(Vec<u64>, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let version = e
                    .file_name()
                    .to_str()?
                    .split('.')
                    .map(|p| p.parse::<u64>().ok())
                    .collect::<Option<Vec<_>>>()?;
                let bin = e.path().join("bin");
                (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file())
                    .then_some((version, bin))
            })
            .collect();
        candidates.sort();
        candidates
            .pop()
            .map(|(_, bin_dir)| PostgresBinaries { bin_dir })
            .ok_or(LocalPostgresError::NotFound)
    }

    /// The path of one of the programs (`psql`, `pg_dumpall`, ...).
    pub fn tool(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }
}

/// An unprivileged account to run the server as.
#[derive(Debug, Clone)]
struct RunAs {
    uid: u32,
    gid: u32,
}

/// The effective user id of this process (Linux `/proc`).
pub fn effective_uid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

fn lookup_user(name: &str) -> Option<RunAs> {
    let out = Command::new("getent")
        .args(["passwd", name])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let line = String::from_utf8(out.stdout).ok()?;
    let fields: Vec<&str> = line.trim().split(':').collect();
    Some(RunAs {
        uid: fields.get(2)?.parse().ok()?,
        gid: fields.get(3)?.parse().ok()?,
    })
}

fn unprivileged_user() -> Result<RunAs, LocalPostgresError> {
    if let Some(u) = lookup_user("postgres") {
        return Ok(u);
    }
    let created = Command::new("useradd")
        .args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "kleidia-restore",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    if let Some(u) = lookup_user("kleidia-restore") {
        return Ok(u);
    }
    if let Some(u) = lookup_user("nobody") {
        return Ok(u);
    }
    Err(LocalPostgresError::NoUser(match created {
        Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
        Err(e) => e.to_string(),
    }))
}

/// Servers started by this process and not yet stopped, so that an
/// interruption (Ctrl-C) can stop them: `pg_ctl` daemonizes the server, so
/// it would outlive this process.
static RUNNING: std::sync::Mutex<Vec<Running>> = std::sync::Mutex::new(Vec::new());

#[derive(Debug, Clone)]
struct Running {
    pg_ctl: PathBuf,
    root: PathBuf,
    data: PathBuf,
    run_as: Option<RunAs>,
}

/// Stops every throwaway server this process started and removes their
/// folders. For interruption handlers; returns how many were stopped.
pub fn stop_all_throwaway_servers() -> usize {
    let running: Vec<Running> = RUNNING
        .lock()
        .map(|mut r| std::mem::take(&mut *r))
        .unwrap_or_default();
    for r in &running {
        let mut cmd = Command::new(&r.pg_ctl);
        cmd.current_dir(&r.root)
            .arg("-D")
            .arg(&r.data)
            .args(["-m", "immediate", "-w", "-t", "30", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(u) = &r.run_as {
            cmd.uid(u.uid).gid(u.gid);
        }
        let _ = cmd.status();
        let _ = fs::remove_dir_all(&r.root);
    }
    running.len()
}

fn forget(root: &Path) {
    if let Ok(mut r) = RUNNING.lock() {
        r.retain(|x| x.root != root);
    }
}

/// Exact row count of one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableCount {
    pub schema: String,
    pub table: String,
    pub rows: u64,
}

/// A running throwaway server. Dropping it stops the server and removes
/// its folder.
#[derive(Debug)]
pub struct ThrowawayPostgres {
    bins: PostgresBinaries,
    dir: Option<PrivateDir>,
    data: PathBuf,
    socket_dir: PathBuf,
    port: u16,
    run_as: Option<RunAs>,
    running: bool,
}

impl ThrowawayPostgres {
    /// Creates and starts a server with the binaries found by
    /// [`PostgresBinaries::find`].
    pub fn start() -> Result<Self, LocalPostgresError> {
        Self::start_with(PostgresBinaries::find()?)
    }

    /// Creates and starts a server with the given binaries.
    pub fn start_with(bins: PostgresBinaries) -> Result<Self, LocalPostgresError> {
        let run_as = if effective_uid() == Some(0) {
            Some(unprivileged_user()?)
        } else {
            None
        };
        let dir = PrivateDir::new("kleidia-pg-")
            .map_err(io_err("cannot create a temporary folder for PostgreSQL"))?;
        let root = dir.path().to_owned();
        let data = root.join("data");
        let socket_dir = root.join("socket");
        fs::create_dir(&socket_dir)
            .map_err(io_err(format!("cannot create {}", socket_dir.display())))?;
        if let Some(u) = &run_as {
            for p in [&root, &socket_dir] {
                std::os::unix::fs::chown(p, Some(u.uid), Some(u.gid)).map_err(io_err(format!(
                    "cannot hand {} to the PostgreSQL user (uid {})",
                    p.display(),
                    u.uid
                )))?;
            }
        }
        let port = free_port().map_err(io_err("cannot pick a free port"))?;
        let mut pg = ThrowawayPostgres {
            bins,
            dir: Some(dir),
            data,
            socket_dir,
            port,
            run_as,
            running: false,
        };
        pg.init_and_start()?;
        Ok(pg)
    }

    fn server_command(&self, tool: &str) -> Command {
        let mut cmd = Command::new(self.bins.tool(tool));
        let root = self
            .dir
            .as_ref()
            .map(|d| d.path().to_owned())
            .unwrap_or_default();
        cmd.current_dir(&root)
            .env("HOME", &root)
            .env_remove("PGDATA")
            .env("LC_ALL", "C")
            .stdin(Stdio::null());
        if let Some(u) = &self.run_as {
            cmd.uid(u.uid).gid(u.gid);
        }
        cmd
    }

    fn init_and_start(&mut self) -> Result<(), LocalPostgresError> {
        let mut initdb = self.server_command("initdb");
        initdb
            .arg("-D")
            .arg(&self.data)
            .args(["-U", SUPERUSER, "--auth=trust", "--no-sync", "-E", "UTF8"])
            .args(["--locale=C", "--no-instructions"]);
        run(initdb, "initdb of the throwaway PostgreSQL")?;
        let conf = format!(
            "\n# throwaway server: Unix socket only, no durability needed\n\
             listen_addresses = ''\nunix_socket_directories = '{}'\nport = {}\n\
             fsync = off\nfull_page_writes = off\nsynchronous_commit = off\n",
            self.socket_dir.display(),
            self.port
        );
        let conf_path = self.data.join("postgresql.conf");
        OpenOptions::new()
            .append(true)
            .open(&conf_path)
            .and_then(|mut f| f.write_all(conf.as_bytes()))
            .map_err(io_err(format!("cannot write {}", conf_path.display())))?;
        let log = self.log_path();
        let mut start = self.server_command("pg_ctl");
        start
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "120", "start"]);
        run(start, "starting the throwaway PostgreSQL").map_err(|e| match e {
            LocalPostgresError::Command { what, detail } => LocalPostgresError::Command {
                what,
                detail: format!("{detail}; server log: {}", tail_of(&log)),
            },
            other => other,
        })?;
        self.running = true;
        if let (Ok(mut r), Some(dir)) = (RUNNING.lock(), &self.dir) {
            r.push(Running {
                pg_ctl: self.bins.tool("pg_ctl"),
                root: dir.path().to_owned(),
                data: self.data.clone(),
                run_as: self.run_as.clone(),
            });
        }
        Ok(())
    }

    fn log_path(&self) -> PathBuf {
        self.dir
            .as_ref()
            .map(|d| d.path().join("server.log"))
            .unwrap_or_default()
    }

    /// The folder holding the server's Unix socket (its `host`).
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The server's port (names the socket file).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The PostgreSQL programs used.
    pub fn binaries(&self) -> &PostgresBinaries {
        &self.bins
    }

    /// A client command (`psql`, `pg_dumpall`, ...) connected to this
    /// server as its superuser.
    pub fn client(&self, tool: &str) -> Command {
        let mut cmd = Command::new(self.bins.tool(tool));
        for var in [
            "PGHOST",
            "PGPORT",
            "PGUSER",
            "PGDATABASE",
            "PGSERVICE",
            "PGOPTIONS",
        ] {
            cmd.env_remove(var);
        }
        cmd.arg("-h")
            .arg(&self.socket_dir)
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-U")
            .arg(SUPERUSER);
        cmd
    }

    /// `psql` on `database`, not reading `~/.psqlrc`, stopping on errors.
    pub fn psql(&self, database: &str) -> Command {
        let mut cmd = self.client("psql");
        cmd.args(["-X", "-v", "ON_ERROR_STOP=1", "-d", database]);
        cmd
    }

    /// Runs SQL on `database`; returns unaligned, tab-separated output.
    pub fn query(&self, database: &str, sql: &str) -> Result<String, LocalPostgresError> {
        let mut cmd = self.psql(database);
        cmd.args(["-At", "-F", "\t", "-c", sql]);
        let out = run(cmd, &format!("psql on database {database}"))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The server's version (`SHOW server_version`).
    pub fn version(&self) -> Result<String, LocalPostgresError> {
        Ok(self
            .query("postgres", "SHOW server_version")?
            .trim()
            .to_owned())
    }

    /// Databases other than templates, by name.
    pub fn databases(&self) -> Result<Vec<String>, LocalPostgresError> {
        Ok(self
            .query(
                "postgres",
                "SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY 1",
            )?
            .lines()
            .map(str::to_owned)
            .collect())
    }

    /// Every table of `database` with its exact row count (`count(*)`).
    pub fn table_counts(&self, database: &str) -> Result<Vec<TableCount>, LocalPostgresError> {
        table_counts(|sql| self.query(database, sql))
    }

    /// Stops the server and removes its folder.
    pub fn stop(mut self) -> Result<(), LocalPostgresError> {
        self.stop_server("fast")?;
        if let Some(dir) = self.dir.take() {
            dir.remove()
                .map_err(io_err("cannot remove the throwaway PostgreSQL folder"))?;
        }
        Ok(())
    }

    fn stop_server(&mut self, mode: &str) -> Result<(), LocalPostgresError> {
        if !self.running {
            return Ok(());
        }
        self.running = false;
        if let Some(dir) = &self.dir {
            forget(dir.path());
        }
        let mut stop = self.server_command("pg_ctl");
        stop.arg("-D")
            .arg(&self.data)
            .args(["-m", mode, "-w", "-t", "60", "stop"]);
        run(stop, "stopping the throwaway PostgreSQL").map(|_| ())
    }
}

impl Drop for ThrowawayPostgres {
    fn drop(&mut self) {
        let _ = self.stop_server("immediate");
    }
}

/// The SQL listing every ordinary or partitioned table (not partitions)
/// with its exact row count; `query_to_xml` runs one `count(*)` per table.
pub const TABLE_COUNTS_SQL: &str = "\
SELECT n.nspname, c.relname, \
 (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', n.nspname, c.relname), false, true, '')))[1]::text::bigint \
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition \
 AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' \
ORDER BY 1, 2";

/// Runs [`TABLE_COUNTS_SQL`] through `query` and parses its output.
pub fn table_counts<E>(
    query: impl FnOnce(&str) -> Result<String, E>,
) -> Result<Vec<TableCount>, E> {
    let out = query(TABLE_COUNTS_SQL)?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some(TableCount {
                schema: f.next()?.to_owned(),
                table: f.next()?.to_owned(),
                rows: f.next()?.trim().parse().ok()?,
            })
        })
        .collect())
}

fn free_port() -> io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

fn tail_of(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

fn run(mut cmd: Command, what: &str) -> Result<Output, LocalPostgresError> {
    let out = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(io_err(format!(
            "{what}: cannot run {:?}",
            cmd.get_program()
        )))?;
    if out.status.success() {
        Ok(out)
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(LocalPostgresError::Command {
            what: what.to_owned(),
            detail: format!("{} ({})", stderr.trim(), out.status),
        })
    }
}

/// A 0700 folder under the system's temporary folder, removed on drop.
#[derive(Debug)]
struct PrivateDir {
    path: PathBuf,
    removed: bool,
}

impl PrivateDir {
    fn new(prefix: &str) -> io::Result<Self> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let base = std::env::temp_dir();
        loop {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = base.join(format!("{prefix}{}-{n}-{nanos:x}", std::process::id()));
            match fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {
                    return Ok(PrivateDir {
                        path,
                        removed: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn remove(mut self) -> io::Result<()> {
        self.removed = true;
        fs::remove_dir_all(&self.path)
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        if !self.removed {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}
