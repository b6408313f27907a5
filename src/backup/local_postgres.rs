//! A throwaway local PostgreSQL server for `backup verify --restore-test`
//! (and tests), isolated from the operator who runs it:
//!
//! - When this program runs as root, the server and every client (psql)
//!   run as [`RESTORE_USER`], an unprivileged system user created for it
//!   (never root, never the system's `postgres`, which owns real clusters).
//!   Otherwise they run as the current user.
//! - Every child (initdb, pg_ctl, postgres, psql, ...) starts with a
//!   cleared environment plus [`INHERITED_ENV`] and what is set here
//!   (`HOME`, `LC_ALL`, `LANG`): no token, passphrase or `PG*` variable of
//!   the operator reaches it.
//! - The server listens on a Unix socket in a 0700 folder of that user
//!   (`listen_addresses = ''`: no TCP listener), inside a 0700 temporary
//!   folder removed when the server is dropped.
//! - Its bootstrap superuser has a random name, so no role of a restored
//!   dump already exists.
//! - Children run in their own process group (a terminal's Ctrl-C reaches
//!   only this program, which stops them in order), and a signal handler
//!   can stop every server at once ([`stop_all_throwaway_servers`]).

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde::Serialize;

use super::signals;

/// The unprivileged user the restore test runs as when started by root.
pub const RESTORE_USER: &str = "kleidia-restore";

/// Variables children get from this program's environment; all others are
/// cleared. `LC_ALL`/`LANG` are set to `C` (messages psql prints are
/// parsed), `HOME` to the server's temporary folder.
pub const INHERITED_ENV: &[&str] = &["PATH", "TZ"];

/// PATH for children when this program has none.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// PATH for the system tools used to find or create [`RESTORE_USER`].
const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Prefix of the random name of a throwaway server's bootstrap superuser.
pub const SUPERUSER_PREFIX: &str = "kleidia_restore_";

/// The port number naming the socket file (there is no TCP listener).
const SOCKET_PORT: u16 = 5432;

/// Errors of the throwaway server.
#[derive(Debug, thiserror::Error)]
pub enum LocalPostgresError {
    #[error(
        "no PostgreSQL server programs (initdb, pg_ctl) found on PATH or in /usr/lib/postgresql/*/bin; install PostgreSQL (Debian: apt-get install postgresql) or put its bin folder on PATH"
    )]
    NotFound,
    #[error(
        "running as root, the restore test runs PostgreSQL and psql as the unprivileged user '{user}', which {problem}; create it with 'useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin {user}', or run verify as an unprivileged user"
    )]
    NoUser { user: String, problem: String },
    #[error(
        "the restore test's PostgreSQL runs as '{user}', who cannot reach {path} (mode {mode:o}, owner uid {owner}); set TMPDIR to a folder every user may enter, such as /tmp"
    )]
    Unreachable {
        user: String,
        path: PathBuf,
        mode: u32,
        owner: u32,
    },
    #[error("{what} failed: {detail}")]
    Command { what: String, detail: String },
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("the restore test was stopped by a signal")]
    Stopped,
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

fn parse_version(text: &str) -> Option<(u32, u32)> {
    let v = text
        .split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))?;
    let mut parts = v.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some((major, minor))
}

fn has_restrict((major, minor): (u32, u32)) -> bool {
    match major {
        18.. => true,
        17 => minor >= 6,
        16 => minor >= 10,
        15 => minor >= 14,
        14 => minor >= 19,
        13 => minor >= 22,
        _ => false,
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

/// A command for a child: cleared environment plus the allow-list, its own
/// process group, stdin closed, and the unprivileged user when given.
fn child_command(program: &Path, home: &Path, run_as: Option<&RunAs>) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear();
    for var in INHERITED_ENV {
        if let Some(v) = std::env::var_os(var) {
            cmd.env(var, v);
        }
    }
    if std::env::var_os("PATH").is_none() {
        cmd.env("PATH", DEFAULT_PATH);
    }
    cmd.env("HOME", home)
        .env("LC_ALL", "C")
        .env("LANG", "C")
        .current_dir(home)
        .stdin(Stdio::null())
        .process_group(0);
    if let Some(u) = run_as {
        cmd.uid(u.uid).gid(u.gid);
    }
    cmd
}

/// A system tool (getent, useradd) with a cleared environment.
fn system_command(name: &str) -> Command {
    let mut cmd = Command::new(name);
    cmd.env_clear()
        .env("PATH", SYSTEM_PATH)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn lookup_user(name: &str) -> Option<RunAs> {
    let out = system_command("getent")
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

/// [`RESTORE_USER`], created as a system user without home or shell when
/// missing; never an account with uid or gid 0.
fn restore_user() -> Result<RunAs, LocalPostgresError> {
    let no_user = |problem: String| LocalPostgresError::NoUser {
        user: RESTORE_USER.to_owned(),
        problem,
    };
    // One creation at a time in this process; another process creating it
    // at the same moment holds the passwd lock, so retry a few times.
    static CREATING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = CREATING.lock().unwrap_or_else(|e| e.into_inner());
    let mut problem = String::new();
    let mut found = lookup_user(RESTORE_USER);
    for _ in 0..10 {
        if found.is_some() {
            break;
        }
        let created = system_command("useradd")
            .args([
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                RESTORE_USER,
            ])
            .output();
        problem = match created {
            Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
            Err(e) => format!("useradd: {e}"),
        };
        found = lookup_user(RESTORE_USER);
        if found.is_none() {
            std::thread::sleep(std::time::Duration::from_millis(200));
            found = lookup_user(RESTORE_USER);
        }
    }
    let user = found.ok_or_else(|| {
        no_user(format!(
            "does not exist and could not be created ({problem})"
        ))
    })?;
    if user.uid == 0 || user.gid == 0 {
        return Err(no_user(format!(
            "has uid {} / gid {}, a privileged account",
            user.uid, user.gid
        )));
    }
    Ok(user)
}

/// Fails unless `user` may enter every folder above `dir`.
fn check_reachable(dir: &Path, user: &RunAs) -> Result<(), LocalPostgresError> {
    for ancestor in dir.ancestors().skip(1) {
        let Ok(meta) = fs::metadata(ancestor) else {
            continue;
        };
        let mode = meta.mode() & 0o7777;
        let may_enter = if meta.uid() == user.uid {
            mode & 0o100 != 0
        } else if meta.gid() == user.gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        if !may_enter {
            return Err(LocalPostgresError::Unreachable {
                user: RESTORE_USER.to_owned(),
                path: ancestor.to_owned(),
                mode,
                owner: meta.uid(),
            });
        }
    }
    Ok(())
}

/// `n` random bytes as hex, from the kernel.
pub(crate) fn random_hex(n: usize) -> io::Result<String> {
    let mut bytes = vec![0u8; n];
    fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(hex::encode(bytes))
}

/// Servers started by this process and not yet stopped, so that a signal
/// handler can stop them: `pg_ctl` daemonizes the server, so it would
/// outlive this process.
static RUNNING: std::sync::Mutex<Vec<Running>> = std::sync::Mutex::new(Vec::new());

#[derive(Debug, Clone)]
struct Running {
    pg_ctl: PathBuf,
    root: PathBuf,
    data: PathBuf,
    run_as: Option<RunAs>,
}

impl Running {
    fn stop(&self) {
        let mut cmd = child_command(&self.pg_ctl, &self.root, self.run_as.as_ref());
        cmd.arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "-t", "30", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _ = cmd.status();
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// Stops every throwaway server this process started and removes their
/// folders. For signal handlers; returns how many were stopped.
pub fn stop_all_throwaway_servers() -> usize {
    let running: Vec<Running> = RUNNING
        .lock()
        .map(|mut r| std::mem::take(&mut *r))
        .unwrap_or_default();
    for r in &running {
        r.stop();
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
    root: PathBuf,
    data: PathBuf,
    socket_dir: PathBuf,
    superuser: String,
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
        if signals::stop_requested() {
            return Err(LocalPostgresError::Stopped);
        }
        let run_as = if effective_uid() == Some(0) {
            Some(restore_user()?)
        } else {
            None
        };
        let dir = PrivateDir::new("kleidia-pg-")
            .map_err(io_err("cannot create a temporary folder for PostgreSQL"))?;
        let root = dir.path().to_owned();
        let data = root.join("data");
        let socket_dir = root.join("socket");
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&socket_dir)
            .map_err(io_err(format!("cannot create {}", socket_dir.display())))?;
        if let Some(u) = &run_as {
            check_reachable(&root, u)?;
            for p in [&root, &socket_dir] {
                std::os::unix::fs::chown(p, Some(u.uid), Some(u.gid)).map_err(io_err(format!(
                    "cannot hand {} to the PostgreSQL user (uid {})",
                    p.display(),
                    u.uid
                )))?;
            }
        }
        let superuser = format!(
            "{SUPERUSER_PREFIX}{}",
            random_hex(6).map_err(io_err("cannot read /dev/urandom"))?
        );
        let mut pg = ThrowawayPostgres {
            bins,
            dir: Some(dir),
            root,
            data,
            socket_dir,
            superuser,
            run_as,
            running: false,
        };
        pg.init_and_start()?;
        Ok(pg)
    }

    fn server_command(&self, tool: &str) -> Command {
        child_command(&self.bins.tool(tool), &self.root, self.run_as.as_ref())
    }

    fn init_and_start(&mut self) -> Result<(), LocalPostgresError> {
        let mut initdb = self.server_command("initdb");
        initdb
            .arg("-D")
            .arg(&self.data)
            .arg("-U")
            .arg(&self.superuser)
            .args(["--auth=trust", "--no-sync", "-E", "UTF8"])
            .args(["--locale=C", "--no-instructions"]);
        run(initdb, "initdb of the throwaway PostgreSQL")?;
        if signals::stop_requested() {
            return Err(LocalPostgresError::Stopped);
        }
        let conf = format!(
            "\n# throwaway server: Unix socket only, in a folder only its user can enter\n\
             listen_addresses = ''\nunix_socket_directories = '{}'\n\
             unix_socket_permissions = 0700\nport = {SOCKET_PORT}\n\
             fsync = off\nfull_page_writes = off\nsynchronous_commit = off\n",
            self.socket_dir.display(),
        );
        let conf_path = self.data.join("postgresql.conf");
        OpenOptions::new()
            .append(true)
            .open(&conf_path)
            .and_then(|mut f| f.write_all(conf.as_bytes()))
            .map_err(io_err(format!("cannot write {}", conf_path.display())))?;
        let log = self.root.join("server.log");
        let mut start = self.server_command("pg_ctl");
        start
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "120", "start"]);
        self.running = true;
        run(start, "starting the throwaway PostgreSQL").map_err(|e| match e {
            LocalPostgresError::Command { what, detail } => LocalPostgresError::Command {
                what,
                detail: format!("{detail}; server log: {}", tail_of(&log)),
            },
            other => other,
        })?;
        // Registered under the lock that a signal handler takes, after
        // checking for a stop: a server is either stopped by the handler or
        // by this thread, never missed.
        let mut registry = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
        if signals::stop_requested() {
            drop(registry);
            let _ = self.stop_server("immediate");
            return Err(LocalPostgresError::Stopped);
        }
        registry.push(Running {
            pg_ctl: self.bins.tool("pg_ctl"),
            root: self.root.clone(),
            data: self.data.clone(),
            run_as: self.run_as.clone(),
        });
        Ok(())
    }

    /// The folder holding the server's Unix socket (its `host`).
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The port number naming the socket file (`.s.PGSQL.<port>`).
    pub fn port(&self) -> u16 {
        SOCKET_PORT
    }

    /// The bootstrap superuser (`kleidia_restore_<random>`).
    pub fn superuser(&self) -> &str {
        &self.superuser
    }

    /// The server's data folder (holds `postmaster.pid`).
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The PostgreSQL programs used.
    pub fn binaries(&self) -> &PostgresBinaries {
        &self.bins
    }

    /// psql's version (major, minor), from `psql --version` run as the
    /// server's user.
    pub fn psql_version(&self) -> Option<(u32, u32)> {
        let out = self.server_command("psql").arg("--version").output().ok()?;
        parse_version(&String::from_utf8_lossy(&out.stdout))
    }

    /// Whether this psql has `\restrict` (PostgreSQL 18, 17.6, 16.10,
    /// 15.14, 14.19, 13.22 and later).
    pub fn psql_has_restrict(&self) -> bool {
        self.psql_version().is_some_and(has_restrict)
    }

    /// A client command (`psql`, `pg_dumpall`, ...) connected to this
    /// server as its superuser, as the server's user, with a cleared
    /// environment.
    pub fn client(&self, tool: &str) -> Command {
        let mut cmd = self.server_command(tool);
        cmd.env("PGHOST", &self.socket_dir)
            .env("PGPORT", SOCKET_PORT.to_string())
            .env("PGUSER", &self.superuser)
            .arg("-h")
            .arg(&self.socket_dir)
            .arg("-p")
            .arg(SOCKET_PORT.to_string())
            .arg("-U")
            .arg(&self.superuser);
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
        if signals::stop_requested() {
            return Err(LocalPostgresError::Stopped);
        }
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
        forget(&self.root);
        if !self.data.join("postmaster.pid").exists() {
            // Already stopped (by a signal handler) or never started.
            return Ok(());
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
        let base = std::env::temp_dir();
        loop {
            let path = base.join(format!("{prefix}{}-{}", std::process::id(), random_hex(6)?));
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
        match fs::remove_dir_all(&self.path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        if !self.removed {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restrict_support_follows_the_august_2025_releases() {
        assert_eq!(
            parse_version("psql (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"),
            Some((15, 18))
        );
        assert_eq!(parse_version("psql (PostgreSQL) 18beta1"), Some((18, 0)));
        assert!(has_restrict((15, 14)) && has_restrict((18, 0)) && has_restrict((17, 6)));
        assert!(!has_restrict((15, 13)) && !has_restrict((12, 22)) && !has_restrict((17, 5)));
    }
}
