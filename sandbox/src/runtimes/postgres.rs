//! The `postgres` image: a real PostgreSQL server per container.
//!
//! The server's data lives under the container's `root` (as a persistent
//! volume would), so a StatefulSet pod that is deleted and recreated finds
//! its databases again; `initdb` runs only on the first start. Like the
//! official image, `POSTGRES_USER` becomes the superuser (password
//! `POSTGRES_PASSWORD`), `POSTGRES_DB` is created, socket connections are
//! trusted and TCP connections need the password.
//!
//! A tag naming a major (`16.4`, `16-alpine`) runs that major's server; a
//! data folder of another major is refused with PostgreSQL's own message
//! and the container exits 1, as the real image does.
//!
//! Exec runs the real client binaries (`psql`, `pg_dumpall`, ...) pointed at
//! this server through `PGHOST`/`PGPORT`; anything else goes to the shell
//! runtime.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

use crate::runtime::{BoxedStream, ContainerRef, ExecIo, ExecOutcome, ImageRuntime};

/// What can go wrong starting or reaching a sandbox PostgreSQL server.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    #[error(
        "no PostgreSQL server binaries found (looked for initdb and postgres in \
         /usr/lib/postgresql/*/bin and `pg_config --bindir`); run scripts/setup \
         to install Debian's postgresql package"
    )]
    BinariesNotFound,
    #[error("could not find or create an unprivileged user to run PostgreSQL as: {0}")]
    NoServerUser(String),
    #[error("{step} failed for {pod} ({status}); its output is in {log}")]
    StepFailed {
        step: &'static str,
        pod: String,
        status: String,
        log: PathBuf,
    },
    #[error(
        "PostgreSQL for {pod} did not accept connections within {secs} s; \
         see {log} for the server's messages"
    )]
    NotReady {
        pod: String,
        secs: u64,
        log: PathBuf,
    },
    /// The server refused to start and said why in the container log, as
    /// the real one does (it exits with this code).
    #[error("postgres exited with code {0}; its log says why")]
    Exited(i32),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// How to reach one running sandbox PostgreSQL server.
#[derive(Clone, Debug)]
pub struct PgEndpoint {
    pub namespace: String,
    pub pod: String,
    pub port: u16,
    /// Folder holding the server's unix socket (use as `PGHOST`).
    pub socket_dir: PathBuf,
    pub bindir: PathBuf,
    pub superuser: String,
    pub database: String,
}

impl PgEndpoint {
    /// Environment that points the client binaries at this server.
    pub fn client_env(&self) -> Vec<(String, String)> {
        vec![
            ("PGHOST".into(), self.socket_dir.display().to_string()),
            ("PGPORT".into(), self.port.to_string()),
        ]
    }
}

/// The running servers of one sandbox by (namespace, pod): other runtimes
/// (the backend's migrations) find the data release's database here. Each
/// [`PostgresRuntime`] has its own, so sandboxes in one process never see
/// each other's databases.
#[derive(Clone, Default)]
pub struct PgRegistry(Arc<Mutex<HashMap<(String, String), PgEndpoint>>>);

impl PgRegistry {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), PgEndpoint>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn insert(&self, ep: PgEndpoint) {
        self.map()
            .insert((ep.namespace.clone(), ep.pod.clone()), ep);
    }

    fn remove(&self, namespace: &str, pod: &str) {
        self.map().remove(&(namespace.to_string(), pod.to_string()));
    }

    /// Finds the running server a client in `namespace` reaches as `host`:
    /// a pod name, a Service name whose StatefulSet pod is `<host>-0`, or a
    /// DNS name (`svc.ns.svc.cluster.local`). With one server in the
    /// namespace and no better match, that one.
    pub fn lookup(&self, namespace: &str, host: &str) -> Option<PgEndpoint> {
        let reg = self.map();
        let mut parts = host.split('.');
        let short = parts.next().unwrap_or(host);
        let ns = parts.next().filter(|s| *s != "svc").unwrap_or(namespace);
        for name in [short.to_string(), format!("{short}-0")] {
            if let Some(ep) = reg.get(&(ns.to_string(), name)) {
                return Some(ep.clone());
            }
        }
        let mut in_ns = reg.values().filter(|e| e.namespace == ns);
        match (in_ns.next(), in_ns.next()) {
            (Some(only), None) if host.is_empty() || short.contains("postgres") => {
                Some(only.clone())
            }
            _ => None,
        }
    }

    /// Every running server (for diagnostics and the sandbox's `env`).
    pub fn running(&self) -> Vec<PgEndpoint> {
        let mut v: Vec<_> = self.map().values().cloned().collect();
        v.sort_by(|a, b| (&a.namespace, &a.pod).cmp(&(&b.namespace, &b.pod)));
        v
    }
}

struct Server {
    child: Child,
    endpoint: PgEndpoint,
}

/// The runtime for `postgres*` images.
#[derive(Default)]
pub struct PostgresRuntime {
    servers: tokio::sync::Mutex<HashMap<PathBuf, Server>>,
    registry: PgRegistry,
}

impl PostgresRuntime {
    pub fn new() -> Self {
        Self::default()
    }

    /// This runtime's running servers, for the backend runtime.
    pub fn registry(&self) -> PgRegistry {
        self.registry.clone()
    }

    async fn endpoint(&self, c: &ContainerRef) -> Option<PgEndpoint> {
        self.servers
            .lock()
            .await
            .get(&c.root)
            .map(|s| s.endpoint.clone())
    }

    async fn start_server(&self, c: &ContainerRef) -> Result<(), PostgresError> {
        let mut servers = self.servers.lock().await;
        if let Some(s) = servers.get_mut(&c.root) {
            if s.child.try_wait()?.is_none() {
                return Ok(());
            }
            servers.remove(&c.root);
        }
        let bindir = match server_for_image(c)? {
            ServerChoice::Run(bindir) => bindir,
            ServerChoice::Exit => return Err(PostgresError::Exited(1)),
        };
        let user = server_user()?;
        let superuser = c
            .env
            .get("POSTGRES_USER")
            .filter(|u| !u.is_empty())
            .cloned()
            .unwrap_or_else(|| "postgres".into());
        let database = c
            .env
            .get("POSTGRES_DB")
            .filter(|d| !d.is_empty())
            .cloned()
            .unwrap_or_else(|| superuser.clone());
        let data = data_dir(c);
        let socket_dir = socket_dir(&c.root);
        std::fs::create_dir_all(&data)?;
        std::fs::create_dir_all(&socket_dir)?;
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700))?;
        std::fs::set_permissions(&socket_dir, std::fs::Permissions::from_mode(0o700))?;
        if let Some((uid, gid)) = user {
            chown_tree(&data, uid, gid)?;
            std::os::unix::fs::chown(&socket_dir, Some(uid), Some(gid))?;
            allow_traverse(&data, uid, gid)?;
            allow_traverse(&socket_dir, uid, gid)?;
        }
        stop_stale_postmaster(&data).await;

        let fresh = !data.join("PG_VERSION").exists();
        if fresh {
            log_line(
                &c.log_path,
                "initdb: creating a new database cluster (first start)",
            );
            initdb(c, &bindir, &data, &superuser, user).await?;
        }

        let mut last_err = None;
        for _ in 0..3 {
            let port = free_port()?;
            let mut cmd = Command::new(bindir.join("postgres"));
            cmd.arg("-D")
                .arg(&data)
                .arg("-p")
                .arg(port.to_string())
                .arg("-k")
                .arg(&socket_dir)
                .args(["-c", "listen_addresses=127.0.0.1"])
                .env_clear()
                .env("PATH", "/usr/bin:/bin")
                .env("LC_ALL", "C.UTF-8");
            output_to_log(&mut cmd, &c.log_path)?;
            as_user(&mut cmd, user, libc::SIGINT);
            let child = cmd.spawn()?;
            let endpoint = PgEndpoint {
                namespace: c.namespace.clone(),
                pod: c.pod.clone(),
                port,
                socket_dir: socket_dir.clone(),
                bindir: bindir.clone(),
                superuser: superuser.clone(),
                database: database.clone(),
            };
            let mut server = Server { child, endpoint };
            match wait_ready(c, &mut server).await {
                Ok(()) => {
                    let ep = server.endpoint.clone();
                    servers.insert(c.root.clone(), server);
                    drop(servers);
                    if let Err(e) = ensure_database(c, &ep).await {
                        self.stop_server(c).await;
                        return Err(e);
                    }
                    self.registry.insert(ep);
                    return Ok(());
                }
                Err(e) => {
                    kill_child(&mut server.child).await;
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or(PostgresError::NotReady {
            pod: c.pod.clone(),
            secs: 0,
            log: c.log_path.clone(),
        }))
    }

    async fn stop_server(&self, c: &ContainerRef) {
        let server = self.servers.lock().await.remove(&c.root);
        self.registry.remove(&c.namespace, &c.pod);
        if let Some(mut s) = server {
            // SIGINT is PostgreSQL's "fast" shutdown: roll back open
            // transactions, checkpoint, exit.
            stop_child(&mut s.child, libc::SIGINT).await;
            log_line(&c.log_path, "postgres: server stopped");
        }
    }
}

impl ImageRuntime for PostgresRuntime {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn matches(&self, image: &str) -> bool {
        crate::runtime::image_name(image).starts_with("postgres")
    }

    fn start<'a>(&'a self, c: &'a ContainerRef) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            match self.start_server(c).await {
                Err(PostgresError::Exited(code)) => {
                    Err(anyhow::Error::new(crate::runtime::ContainerExited { code }))
                }
                other => start_logged(c, async { other }).await,
            }
        })
    }

    fn stop<'a>(&'a self, c: &'a ContainerRef) -> BoxFuture<'a, ()> {
        Box::pin(self.stop_server(c))
    }

    fn ready<'a>(&'a self, c: &'a ContainerRef) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            match self.endpoint(c).await {
                Some(ep) => pg_isready(&ep).await,
                None => false,
            }
        })
    }

    fn exec<'a>(
        &'a self,
        c: &'a ContainerRef,
        command: Vec<String>,
        io: ExecIo,
    ) -> BoxFuture<'a, ExecOutcome> {
        Box::pin(async move {
            let ep = self.endpoint(c).await;
            let bindir = ep.as_ref().map(|e| e.bindir.clone()).or_else(find_bindir);
            // Without a running server the clients still look in this
            // container's socket folder, never at a server of the host.
            let mut extra_env: Vec<(String, String)> =
                ep.as_ref().map(|e| e.client_env()).unwrap_or_else(|| {
                    vec![
                        ("PGHOST".into(), socket_dir(&c.root).display().to_string()),
                        ("PGPORT".into(), "5432".into()),
                    ]
                });
            extra_env.push(("HOME".into(), c.root.display().to_string()));
            let extra_path: Vec<PathBuf> = bindir.iter().cloned().collect();
            let Some(simple) = SimpleCommand::parse(&command) else {
                return delegate_to_shell(c, command, io, &extra_env, &extra_path).await;
            };
            let prog = program_name(&simple.argv[0]);
            let binary = bindir
                .as_ref()
                .map(|b| b.join(prog))
                .filter(|p| is_client_binary(prog, &simple.argv) && p.is_file());
            // A host given by name goes through the shell's cluster DNS.
            let Some(binary) =
                binary.filter(|_| !super::shell::names_a_host(&simple.argv, &simple.env))
            else {
                return delegate_to_shell(c, command, io, &extra_env, &extra_path).await;
            };
            let mut cmd = Command::new(binary);
            cmd.args(simple.argv[1..].iter().map(|a| map_path_arg(&c.root, a)))
                .current_dir(&c.root)
                .env_clear()
                .envs(&c.env)
                .env("PATH", search_path(&extra_path))
                .envs(extra_env)
                .envs(simple.env);
            run_streaming(cmd, io).await
        })
    }

    fn connect<'a>(
        &'a self,
        c: &'a ContainerRef,
        port: u16,
    ) -> BoxFuture<'a, std::io::Result<BoxedStream>> {
        Box::pin(async move {
            let ep = self.endpoint(c).await;
            match ep {
                Some(ep) if port == 5432 || c.ports.contains(&port) => {
                    let s = tokio::net::TcpStream::connect(("127.0.0.1", ep.port)).await?;
                    Ok(Box::pin(s) as BoxedStream)
                }
                _ => Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionRefused,
                    format!("nothing listens on port {port} in pod {}", c.pod),
                )),
            }
        })
    }
}

/// Client programs exec may run; the server programs refuse root and would
/// fight over the data folder.
fn is_client_binary(prog: &str, argv: &[String]) -> bool {
    const CLIENTS: &[&str] = &[
        "psql",
        "pg_dump",
        "pg_dumpall",
        "pg_restore",
        "pg_isready",
        "createdb",
        "dropdb",
        "createuser",
        "dropuser",
        "vacuumdb",
        "reindexdb",
        "clusterdb",
        "pg_basebackup",
        "pg_config",
    ];
    CLIENTS.contains(&prog)
        || (prog == "postgres" && argv.len() == 2 && matches!(argv[1].as_str(), "--version" | "-V"))
}

async fn initdb(
    c: &ContainerRef,
    bindir: &Path,
    data: &Path,
    superuser: &str,
    user: Option<(u32, u32)>,
) -> Result<(), PostgresError> {
    let password = c.env.get("POSTGRES_PASSWORD").filter(|p| !p.is_empty());
    let pwfile = c.root.join(".initdb-pwfile");
    let mut cmd = Command::new(bindir.join("initdb"));
    cmd.arg("-D")
        .arg(data)
        .arg("-U")
        .arg(superuser)
        .args(["-E", "UTF8", "--no-locale", "--auth-local=trust"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("LC_ALL", "C.UTF-8");
    output_to_log(&mut cmd, &c.log_path)?;
    if let Some(pw) = password {
        write_private(&pwfile, pw.as_bytes())?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid))?;
            allow_traverse(&pwfile, uid, gid)?;
        }
        cmd.arg(format!("--pwfile={}", pwfile.display()))
            .arg("--auth-host=scram-sha-256");
    } else {
        cmd.arg("--auth-host=trust");
    }
    as_user(&mut cmd, user, libc::SIGKILL);
    let status = cmd.status().await;
    let _ = std::fs::remove_file(&pwfile);
    let status = status?;
    if !status.success() {
        // A half-made cluster would be taken as initialised next time.
        let _ = std::fs::remove_file(data.join("PG_VERSION"));
        return Err(PostgresError::StepFailed {
            step: "initdb",
            pod: c.pod.clone(),
            status: status.to_string(),
            log: c.log_path.clone(),
        });
    }
    Ok(())
}

/// Creates `POSTGRES_DB` once, as the official image's entrypoint does.
async fn ensure_database(c: &ContainerRef, ep: &PgEndpoint) -> Result<(), PostgresError> {
    let marker = c.root.join(".sandbox-db-initialised");
    if marker.exists() || ep.database == "postgres" {
        return Ok(());
    }
    let literal = ep.database.replace('\'', "''");
    let exists = psql_query(
        ep,
        &format!("SELECT 1 FROM pg_database WHERE datname = '{literal}'"),
    )
    .await;
    let created = match exists {
        Ok(out) if out.trim() == "1" => Ok(()),
        Ok(_) => psql_query(
            ep,
            &format!("CREATE DATABASE \"{}\"", ep.database.replace('"', "\"\"")),
        )
        .await
        .map(|_| ()),
        Err(e) => Err(e),
    };
    if let Err(detail) = created {
        log_line(&c.log_path, &format!("postgres: {detail}"));
        return Err(PostgresError::StepFailed {
            step: "creating POSTGRES_DB",
            pod: c.pod.clone(),
            status: detail.lines().next().unwrap_or("").to_string(),
            log: c.log_path.clone(),
        });
    }
    log_line(
        &c.log_path,
        &format!("postgres: database \"{}\" is ready", ep.database),
    );
    std::fs::write(marker, b"")?;
    Ok(())
}

/// Runs one SQL statement as the superuser in database `postgres`; its
/// unaligned output, or psql's error text.
async fn psql_query(ep: &PgEndpoint, sql: &str) -> Result<String, String> {
    let out = Command::new(ep.bindir.join("psql"))
        .args(["-v", "ON_ERROR_STOP=1", "-X", "-tA", "-d", "postgres", "-U"])
        .arg(&ep.superuser)
        .arg("-c")
        .arg(sql)
        .envs(ep.client_env())
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("running psql: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

async fn wait_ready(c: &ContainerRef, server: &mut Server) -> Result<(), PostgresError> {
    const SECS: u64 = 60;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(SECS);
    while tokio::time::Instant::now() < deadline {
        if let Some(status) = server.child.try_wait()? {
            return Err(PostgresError::StepFailed {
                step: "starting postgres",
                pod: c.pod.clone(),
                status: status.to_string(),
                log: c.log_path.clone(),
            });
        }
        if pg_isready(&server.endpoint).await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(PostgresError::NotReady {
        pod: c.pod.clone(),
        secs: SECS,
        log: c.log_path.clone(),
    })
}

async fn pg_isready(ep: &PgEndpoint) -> bool {
    Command::new(ep.bindir.join("pg_isready"))
        .arg("-q")
        .envs(ep.client_env())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A postmaster left running by an earlier sandbox process that died would
/// hold the data folder's lock: stop it, as a node reboot would have.
async fn stop_stale_postmaster(data: &Path) {
    let Ok(text) = std::fs::read_to_string(data.join("postmaster.pid")) else {
        return;
    };
    let Some(pid) = text
        .lines()
        .next()
        .and_then(|l| l.trim().parse::<i32>().ok())
    else {
        return;
    };
    let is_postgres = std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().starts_with("postgres"))
        .unwrap_or(false);
    if pid <= 1 || !is_postgres {
        return;
    }
    unsafe {
        libc::kill(pid, libc::SIGINT);
    }
    for _ in 0..300 {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn data_dir(c: &ContainerRef) -> PathBuf {
    let pgdata = c
        .env
        .get("PGDATA")
        .map(String::as_str)
        .unwrap_or("/var/lib/postgresql/data");
    c.root.join(pgdata.trim_start_matches('/'))
}

/// The socket folder: `<root>/run` unless that would make the socket path
/// longer than a unix socket address allows.
fn socket_dir(root: &Path) -> PathBuf {
    let local = root.join("run");
    if local.join(".s.PGSQL.65535").as_os_str().len() <= 100 {
        return local;
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(root.as_os_str().as_encoded_bytes());
    std::env::temp_dir().join(format!("kleidia-pg-{}", &hex::encode(digest)[..12]))
}

/// What a postgres container of this image does with its data folder.
enum ServerChoice {
    /// Run the server binaries of this folder.
    Run(PathBuf),
    /// Exit at once: the reason is in the container log.
    Exit,
}

/// Picks the server for `c`'s image tag and data folder, as the real image
/// would behave: a tag naming a major (`16.4`, `16-alpine`) runs that
/// major's binaries; a data folder of another major is refused with
/// PostgreSQL's own message; a major this machine has no binaries for
/// fails with a message saying so. Tags without a number run the newest
/// installed server.
fn server_for_image(c: &ContainerRef) -> Result<ServerChoice, PostgresError> {
    let installed = installed_servers();
    let wanted = image_version(c.image_tag());
    let bindir = match &wanted {
        None => installed.last().map(|(_, b)| b.clone()),
        Some((major, _)) => installed
            .iter()
            .find(|(m, _)| m == major)
            .map(|(_, b)| b.clone()),
    };
    let bindir = match (bindir, &wanted) {
        (Some(b), _) => Some(b),
        (None, None) => find_bindir(),
        (None, Some(_)) => None,
    };
    let data_major = std::fs::read_to_string(data_dir(c).join("PG_VERSION"))
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty());
    // The major and full version the container's server has.
    let server = match (&bindir, &wanted) {
        (Some(b), _) => {
            let full = server_version(b).unwrap_or_default();
            Some((major_of(&full), full))
        }
        (None, Some(w)) => Some(w.clone()),
        (None, None) => None,
    };
    let Some((major, full)) = server else {
        return Err(PostgresError::BinariesNotFound);
    };
    if let Some(found) = data_major
        && found != major
    {
        refuse_data_dir(c, &found, &full);
        return Ok(ServerChoice::Exit);
    }
    match bindir {
        Some(b) => Ok(ServerChoice::Run(b)),
        None => {
            let have: Vec<&str> = installed.iter().map(|(m, _)| m.as_str()).collect();
            let example = have.last().copied().unwrap_or("15");
            log_line(
                &c.log_path,
                &format!(
                    "sandbox: image {} needs a PostgreSQL {major} server and this machine has \
                     none (installed majors: {}); use an image tag of an installed major \
                     (e.g. postgres:{example}) or install Debian's postgresql-{major} package",
                    c.image,
                    if have.is_empty() {
                        "none".to_string()
                    } else {
                        have.join(", ")
                    }
                ),
            );
            Ok(ServerChoice::Exit)
        }
    }
}

/// Writes what the official image and PostgreSQL print when the data
/// folder was made by another major version.
fn refuse_data_dir(c: &ContainerRef, data_major: &str, server_version: &str) {
    let ts = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S%.3f UTC");
    let text = format!(
        "\nPostgreSQL Database directory appears to contain a database; Skipping initialization\n\n\
         {ts} [1] FATAL:  database files are incompatible with server\n\
         {ts} [1] DETAIL:  The data directory was initialized by PostgreSQL version \
         {data_major}, which is not compatible with this version {server_version}.\n"
    );
    if let Ok(mut f) = log_file(&c.log_path) {
        let _ = f.write_all(text.as_bytes());
    }
}

/// The PostgreSQL version an image tag names: (major, full version).
/// `16.4` -> ("16", "16.4"), `16-alpine` -> ("16", "16.<newest minor the
/// sandbox knows>"), `9.6.24` -> ("9.6", "9.6.24"); `latest`, `alpine` ->
/// None.
pub fn image_version(tag: &str) -> Option<(String, String)> {
    let numeric: String = tag
        .chars()
        .take_while(|ch| ch.is_ascii_digit() || *ch == '.')
        .collect();
    let parts: Vec<&str> = numeric
        .split('.')
        .filter(|p| !p.is_empty())
        .take(3)
        .collect();
    let first: u32 = parts.first()?.parse().ok()?;
    // Before 10, the major was the first two numbers (9.6).
    let (major, minor_given) = if first < 10 {
        (format!("{first}.{}", parts.get(1)?), parts.len() >= 3)
    } else {
        (first.to_string(), parts.len() >= 2)
    };
    let full = if minor_given {
        parts.join(".")
    } else {
        newest_minor(&major)
    };
    Some((major, full))
}

/// The newest release of `major` the sandbox knows of (what a major-only
/// tag such as `16-alpine` pulls), for PostgreSQL's messages.
fn newest_minor(major: &str) -> String {
    let known = [
        ("13", "13.23"),
        ("14", "14.23"),
        ("15", "15.18"),
        ("16", "16.14"),
        ("17", "17.10"),
        ("18", "18.6"),
    ];
    known
        .iter()
        .find(|(m, _)| *m == major)
        .map(|(_, v)| v.to_string())
        .unwrap_or_else(|| format!("{major}.0"))
}

/// `15.18` -> `15`, `9.6.24` -> `9.6`.
fn major_of(version: &str) -> String {
    image_version(version)
        .map(|(m, _)| m)
        .unwrap_or_else(|| version.to_string())
}

/// The server's own version (`postgres --version`: `15.18`).
fn server_version(bindir: &Path) -> Option<String> {
    let out = std::process::Command::new(bindir.join("postgres"))
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    // "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
    String::from_utf8(out.stdout)
        .ok()?
        .split_whitespace()
        .nth(2)
        .map(str::to_string)
}

/// The Debian PostgreSQL servers on this machine, (major, `bin` folder),
/// oldest first.
pub fn installed_servers() -> Vec<(String, PathBuf)> {
    let mut found: Vec<(Vec<u64>, String, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let version: Vec<u64> = name
                .split('.')
                .map(|p| p.parse().ok())
                .collect::<Option<_>>()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("postgres").is_file())
                .then_some((version, name, bin))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, m, b)| (m, b)).collect()
}

/// The newest Debian PostgreSQL `bin` folder, else `pg_config --bindir`.
pub fn find_bindir() -> Option<PathBuf> {
    let mut found: Vec<(Vec<u64>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version: Vec<u64> = e
                .file_name()
                .to_str()?
                .split('.')
                .map(|p| p.parse().ok())
                .collect::<Option<_>>()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("postgres").is_file())
                .then_some((version, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return Some(bin);
    }
    let out = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()?;
    let bin = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    (bin.join("initdb").is_file() && bin.join("postgres").is_file()).then_some(bin)
}

/// PostgreSQL refuses to run as root: when we are root, the uid/gid of an
/// unprivileged user to run it as (Debian's `postgres`, else one we create).
fn server_user() -> Result<Option<(u32, u32)>, PostgresError> {
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    const OWN: &str = "kleidia-sandbox";
    for name in ["postgres", OWN] {
        if let Some(ids) = passwd_entry(name) {
            return Ok(Some(ids));
        }
    }
    let out = std::process::Command::new("useradd")
        .args([
            "--system",
            "--user-group",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            OWN,
        ])
        .output()
        .map_err(|e| PostgresError::NoServerUser(format!("running useradd: {e}")))?;
    if !out.status.success() && passwd_entry(OWN).is_none() {
        return Err(PostgresError::NoServerUser(format!(
            "useradd {OWN} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    passwd_entry(OWN)
        .map(Some)
        .ok_or_else(|| PostgresError::NoServerUser(format!("{OWN} not in /etc/passwd")))
}

fn passwd_entry(name: &str) -> Option<(u32, u32)> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 4 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

/// Runs `cmd` as `user` (when given) and has the kernel send `death_signal`
/// to it if this process goes away, so no server outlives the sandbox.
fn as_user(cmd: &mut Command, user: Option<(u32, u32)>, death_signal: i32) {
    unsafe {
        cmd.pre_exec(move || {
            if let Some((uid, gid)) = user
                && (libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            // Set after setuid: changing credentials clears it.
            libc::prctl(libc::PR_SET_PDEATHSIG, death_signal);
            Ok(())
        });
    }
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.uid() != uid || meta.gid() != gid {
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// Lets `uid` reach `path` by adding search (x) permission for others on
/// the ancestors that lack it. Only traversal is granted: nothing becomes
/// listable or readable.
fn allow_traverse(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    for dir in path.ancestors().skip(1) {
        let Ok(meta) = std::fs::metadata(dir) else {
            continue;
        };
        let mode = meta.mode();
        let ok = mode & 0o001 != 0
            || (meta.uid() == uid && mode & 0o100 != 0)
            || (meta.gid() == gid && mode & 0o010 != 0);
        if !ok {
            std::fs::set_permissions(
                dir,
                std::fs::Permissions::from_mode((mode & 0o7777) | 0o001),
            )?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Shared by the sandbox's runtimes: processes, paths, logs.

/// Sends a server `signal` (its clean shutdown), gives it 30 s to exit,
/// then kills it.
pub(crate) async fn stop_child(child: &mut Child, signal: libc::c_int) {
    if let Some(pid) = child.id() {
        unsafe {
            libc::kill(pid as libc::pid_t, signal);
        }
    }
    if tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .is_err()
    {
        kill_child(child).await;
    }
}

/// Kills a server (one that did not come up) and reaps it.
pub(crate) async fn kill_child(child: &mut Child) {
    let _ = child.start_kill();
    let _ = child.wait().await;
}

/// [`ImageRuntime::start`] of a runtime whose `start` fails with a typed
/// error: the error also goes to the container log, as a kubelet records
/// why a container did not start.
pub(crate) fn start_logged<'a, E>(
    c: &'a ContainerRef,
    start: impl std::future::Future<Output = Result<(), E>> + Send + 'a,
) -> BoxFuture<'a, anyhow::Result<()>>
where
    E: std::error::Error + Send + Sync + 'static,
{
    Box::pin(async move {
        start.await.map_err(|e| {
            log_line(&c.log_path, &format!("sandbox: {e}"));
            anyhow::Error::new(e)
        })
    })
}

/// A server process: no standard input, its output appended to the
/// container log.
pub(crate) fn output_to_log(cmd: &mut Command, log: &Path) -> std::io::Result<()> {
    cmd.stdin(Stdio::null())
        .stdout(log_file(log)?)
        .stderr(log_file(log)?);
    Ok(())
}

/// A free TCP port on 127.0.0.1 (free when asked; callers retry on a race).
pub(crate) fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port())
}

pub(crate) fn log_file(path: &Path) -> std::io::Result<std::fs::File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// Appends one timestamped line to a container log (best effort: a log
/// that cannot be written must not fail the container).
pub(crate) fn log_line(path: &Path, msg: &str) {
    if let Ok(mut f) = log_file(path) {
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ");
        let _ = writeln!(f, "{now} {msg}");
    }
}

/// Writes a file only its owner can read (0600), replacing any old one,
/// creating its folder first.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    crate::kubeconfig::write_private(path, bytes)
}

/// Maps an absolute path argument (`/tmp/x`, `--file=/tmp/x`) into the
/// container's root folder, creating its parent so tools can write there.
pub(crate) fn map_path_arg(root: &Path, arg: &str) -> String {
    let map = |p: &str| -> String {
        let mapped = root.join(p.trim_start_matches('/'));
        if let Some(parent) = mapped.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        mapped.display().to_string()
    };
    if arg.starts_with('/') && arg.len() > 1 && !arg.starts_with(&*root.to_string_lossy()) {
        return map(arg);
    }
    if arg.starts_with('-')
        && let Some((flag, value)) = arg.split_once('=')
        && value.starts_with('/')
        && value.len() > 1
    {
        return format!("{flag}={}", map(value));
    }
    arg.to_string()
}

pub(crate) fn program_name(arg0: &str) -> &str {
    arg0.rsplit('/').next().unwrap_or(arg0)
}

pub(crate) fn search_path(extra: &[PathBuf]) -> String {
    let mut parts: Vec<String> = extra.iter().map(|p| p.display().to_string()).collect();
    parts.push("/usr/local/bin:/usr/bin:/bin".into());
    parts.join(":")
}

/// A command that is one program with arguments, possibly behind `env
/// VAR=value` or `sh -c '<one simple command>'`, which a runtime can run
/// itself; anything with shell syntax is left to the shell runtime.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct SimpleCommand {
    pub env: BTreeMap<String, String>,
    pub argv: Vec<String>,
}

impl SimpleCommand {
    pub(crate) fn parse(command: &[String]) -> Option<SimpleCommand> {
        let mut env = BTreeMap::new();
        let mut argv: Vec<String> = command.to_vec();
        loop {
            let first = argv.first()?;
            match program_name(first) {
                "env" => {
                    let mut rest = argv[1..].to_vec();
                    while let Some(a) = rest.first() {
                        match a.split_once('=') {
                            Some((k, v)) if is_env_name(k) => {
                                env.insert(k.to_string(), v.to_string());
                                rest.remove(0);
                            }
                            _ if a.starts_with('-') => return None,
                            _ => break,
                        }
                    }
                    argv = rest;
                }
                "sh" | "bash" if argv.len() == 3 && argv[1] == "-c" => {
                    let words = split_simple_script(&argv[2])?;
                    let mut words = words.into_iter().peekable();
                    while let Some(w) = words.peek() {
                        match w.split_once('=') {
                            Some((k, v)) if is_env_name(k) => {
                                env.insert(k.to_string(), v.to_string());
                                words.next();
                            }
                            _ => break,
                        }
                    }
                    argv = words.collect();
                }
                _ => return Some(SimpleCommand { env, argv }),
            }
        }
    }
}

fn is_env_name(k: &str) -> bool {
    !k.is_empty()
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Splits a shell script into words when it is a single simple command
/// (quotes and backslashes only); `None` when it uses anything else.
pub(crate) fn split_simple_script(script: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = script.chars();
    while let Some(ch) = chars.next() {
        match ch {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => cur.push(c),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => match chars.next()? {
                            c @ ('"' | '\\' | '$' | '`') => cur.push(c),
                            '\n' => {}
                            c => {
                                cur.push('\\');
                                cur.push(c);
                            }
                        },
                        '$' | '`' => return None,
                        c => cur.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next()? {
                    '\n' => {}
                    c => cur.push(c),
                }
            }
            ' ' | '\t' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '|' | '&' | ';' | '<' | '>' | '(' | ')' | '$' | '`' | '*' | '?' | '[' | '#' | '~'
            | '{' | '}' => return None,
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    (!words.is_empty()).then_some(words)
}

/// Runs a prepared command with the exec's streams, streaming both ways
/// (fixed-size buffers: memory stays flat whatever the volume).
pub(crate) async fn run_streaming(mut cmd: Command, io: ExecIo) -> ExecOutcome {
    let ExecIo {
        stdin,
        mut stdout,
        mut stderr,
        tty: _,
    } = io;
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return ExecOutcome::Failed(format!(
                "OCI runtime exec failed: exec failed: unable to start container process: \
                 exec: \"{}\": executable file not found in $PATH: unknown",
                program_name(&program)
            ));
        }
        Err(e) => return ExecOutcome::Failed(format!("exec: \"{program}\": {e}")),
    };
    let stdin_task = match (stdin, child.stdin.take()) {
        (Some(mut from), Some(mut to)) => Some(tokio::spawn(async move {
            let _ = tokio::io::copy(&mut from, &mut to).await;
            let _ = to.shutdown().await;
        })),
        _ => None,
    };
    let mut out = child.stdout.take().expect("stdout is piped");
    let mut err = child.stderr.take().expect("stderr is piped");
    let (o, e) = tokio::join!(
        tokio::io::copy(&mut out, &mut stdout),
        tokio::io::copy(&mut err, &mut stderr)
    );
    if o.is_err() || e.is_err() {
        // The client went away: nobody reads the rest.
        let _ = child.start_kill();
    }
    let _ = stdout.shutdown().await;
    let _ = stderr.shutdown().await;
    let status = child.wait().await;
    if let Some(t) = stdin_task {
        t.abort();
    }
    match status {
        Ok(s) => {
            use std::os::unix::process::ExitStatusExt;
            ExecOutcome::Exit(s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)))
        }
        Err(e) => ExecOutcome::Failed(format!("waiting for \"{program}\": {e}")),
    }
}

/// Runs what this runtime does not handle itself through the sandbox's
/// shell runtime, with this server's environment and binaries on PATH.
pub(crate) async fn delegate_to_shell(
    c: &ContainerRef,
    command: Vec<String>,
    io: ExecIo,
    extra_env: &[(String, String)],
    extra_path: &[PathBuf],
) -> ExecOutcome {
    super::shell::ShellRuntime::run(c, command, io, extra_env, extra_path).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtimes::test_args as s;

    #[test]
    fn simple_commands_behind_env_and_sh() {
        let c = SimpleCommand::parse(&s(&["pg_dumpall", "-U", "yubiuser"])).unwrap();
        assert_eq!(c.argv, s(&["pg_dumpall", "-U", "yubiuser"]));
        let c = SimpleCommand::parse(&s(&[
            "sh",
            "-c",
            "BAO_TOKEN=abc bao operator raft snapshot save '/tmp/a b.snap'",
        ]))
        .unwrap();
        assert_eq!(c.env.get("BAO_TOKEN").map(String::as_str), Some("abc"));
        assert_eq!(
            c.argv,
            s(&[
                "bao",
                "operator",
                "raft",
                "snapshot",
                "save",
                "/tmp/a b.snap"
            ])
        );
        let c = SimpleCommand::parse(&s(&["env", "A=1", "psql", "-c", "select 1"])).unwrap();
        assert_eq!(c.env.get("A").map(String::as_str), Some("1"));
        assert_eq!(c.argv, s(&["psql", "-c", "select 1"]));
        assert!(SimpleCommand::parse(&s(&["sh", "-c", "pg_dumpall | gzip"])).is_none());
        assert!(SimpleCommand::parse(&s(&["sh", "-c", "echo $HOME"])).is_none());
        assert!(SimpleCommand::parse(&s(&["sh", "-c", "a > b"])).is_none());
    }

    #[test]
    fn absolute_paths_map_into_the_container_root() {
        let root = std::env::temp_dir().join("kleidia-map-test");
        assert_eq!(
            map_path_arg(&root, "/tmp/vault-backup.snap"),
            root.join("tmp/vault-backup.snap").display().to_string()
        );
        assert_eq!(
            map_path_arg(&root, "--file=/tmp/x.sql"),
            format!("--file={}", root.join("tmp/x.sql").display())
        );
        assert_eq!(map_path_arg(&root, "secret/foo"), "secret/foo");
        assert_eq!(map_path_arg(&root, "-U"), "-U");
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn lookup_resolves_service_names_to_statefulset_pods() {
        let ep = PgEndpoint {
            namespace: "lookup-test".into(),
            pod: "db-postgres-0".into(),
            port: 1,
            socket_dir: "/nowhere".into(),
            bindir: "/nowhere".into(),
            superuser: "u".into(),
            database: "d".into(),
        };
        let reg = PgRegistry::default();
        reg.insert(ep);
        assert!(reg.lookup("lookup-test", "db-postgres").is_some());
        assert!(
            reg.lookup("other", "db-postgres.lookup-test.svc.cluster.local")
                .is_some()
        );
        assert!(reg.lookup("lookup-test", "db-postgres-0").is_some());
        assert!(reg.lookup("lookup-test", "redis").is_none());
        assert!(
            PgRegistry::default()
                .lookup("lookup-test", "db-postgres")
                .is_none()
        );
    }

    #[test]
    fn image_tags_name_a_major_as_postgresql_counts_them() {
        let v = |t: &str| image_version(t);
        assert_eq!(v("16.4"), Some(("16".into(), "16.4".into())));
        assert_eq!(v("16.4-bookworm"), Some(("16".into(), "16.4".into())));
        assert_eq!(v("16-alpine"), Some(("16".into(), "16.14".into())));
        assert_eq!(v("15"), Some(("15".into(), "15.18".into())));
        assert_eq!(v("9.6.24"), Some(("9.6".into(), "9.6.24".into())));
        assert_eq!(v("21"), Some(("21".into(), "21.0".into())));
        assert_eq!(v("latest"), None);
        assert_eq!(v("alpine"), None);
        assert_eq!(major_of("15.18"), "15");
    }
}
