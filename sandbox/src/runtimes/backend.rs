//! The Kleidia backend and frontend images.
//!
//! The backend is an HTTP server in this process answering `/api/health`
//! with its version (the image tag), database and migration state. Like
//! the real Go backend it applies its numbered schema migrations to the
//! data release's real PostgreSQL when it starts, recording each in
//! `schema_migrations(version, name, applied_at)`, and
//! `/app/kleidia-backend migrate` (the pre-upgrade hook Job's command, or
//! run by exec) does the same on demand. Every step is one log line, as a
//! Go service prints it:
//!
//! ```text
//! 2026-12-02T10:00:00.000Z INFO migrate: applying 0005_add_yubikeys_attestation
//! 2026-12-02T10:00:00.040Z INFO migrate: applied 0005_add_yubikeys_attestation (38ms)
//! 2026-12-02T10:00:00.041Z INFO migrate: migrations finished (schema version 5)
//! ```
//!
//! A build knows the migrations of its version ([`known_migrations`]):
//! 1.0.x knows 0001-0004, 1.1.0 adds 0005. A build meeting a schema newer
//! than it knows (services rolled back past a migration) says so and starts
//! anyway. Builds whose tag says `migration-fails` ship a 0005 whose second
//! statement fails on the real database.
//!
//! `DB_HOST` is resolved as cluster DNS does ([`crate::controllers::network`]:
//! Service -> ready pod -> its PostgreSQL); without a sandbox network (a
//! runtime used on its own) the PostgreSQL runtime's registry is asked.
//! The frontend serves a small HTML page.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio::task::JoinHandle;

use super::postgres::{
    PgEndpoint, PgRegistry, SimpleCommand, delegate_to_shell, log_file, program_name,
};
use crate::controllers::network;
use crate::runtime::{BoxedStream, BoxedWriter, ContainerRef, ExecIo, ExecOutcome, ImageRuntime};

/// What can go wrong reaching the database or migrating it. Connection
/// errors are worded as the Go backend's PostgreSQL driver words them.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error(
        "no running PostgreSQL found for DB_HOST {host:?} in namespace {namespace}: \
         is the data release installed and its pod ready?"
    )]
    DatabaseNotFound { namespace: String, host: String },
    #[error(
        "failed to connect to `host={host} user={user} database={database}`: hostname \
         resolving error (lookup {host} on {dns}:53: no such host)",
        dns = network::DNS_SERVER
    )]
    NoSuchHost {
        host: String,
        user: String,
        database: String,
    },
    #[error(
        "failed to connect to `host={host} user={user} database={database}`: dial error \
         (dial tcp {address}:{port}: connect: connection refused)"
    )]
    Refused {
        host: String,
        user: String,
        database: String,
        address: String,
        port: u16,
    },
    #[error("{0}")]
    Sql(String),
    #[error(
        "migration {name} failed at statement {index} ({statement}): {error}; \
         rolled back, the schema stays at version {version}"
    )]
    Failed {
        name: String,
        index: usize,
        statement: String,
        error: String,
        version: i64,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl MigrationError {
    /// Whether the database could not be reached at all (worth retrying).
    fn unreachable(&self) -> bool {
        matches!(
            self,
            MigrationError::DatabaseNotFound { .. }
                | MigrationError::NoSuchHost { .. }
                | MigrationError::Refused { .. }
        )
    }
}

/// One numbered schema migration: its statements run in one transaction.
#[derive(Debug, PartialEq, Eq)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    /// The first backend release that ships it.
    pub since: (u64, u64, u64),
    pub statements: &'static [&'static str],
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_create_users",
        since: (1, 0, 0),
        statements: &[
            "CREATE TABLE IF NOT EXISTS users (id bigserial PRIMARY KEY, email text UNIQUE NOT NULL, created_at timestamptz NOT NULL DEFAULT now())",
        ],
    },
    Migration {
        version: 2,
        name: "0002_create_yubikeys",
        since: (1, 0, 0),
        statements: &[
            "CREATE TABLE IF NOT EXISTS yubikeys (id bigserial PRIMARY KEY, serial text UNIQUE NOT NULL, user_id bigint REFERENCES users(id), firmware_version text, created_at timestamptz NOT NULL DEFAULT now())",
        ],
    },
    Migration {
        version: 3,
        name: "0003_create_sessions",
        since: (1, 0, 0),
        statements: &[
            "CREATE TABLE IF NOT EXISTS sessions (id text PRIMARY KEY, user_id bigint REFERENCES users(id), expires_at timestamptz NOT NULL)",
        ],
    },
    Migration {
        version: 4,
        name: "0004_add_users_display_name",
        since: (1, 0, 0),
        statements: &["ALTER TABLE users ADD COLUMN IF NOT EXISTS display_name text"],
    },
    Migration {
        version: 5,
        name: "0005_add_yubikeys_attestation",
        since: (1, 1, 0),
        statements: &[
            "ALTER TABLE yubikeys ADD COLUMN IF NOT EXISTS attestation_verified_at timestamptz",
            "CREATE INDEX IF NOT EXISTS yubikeys_attestation_verified_at_idx ON yubikeys (attestation_verified_at)",
        ],
    },
];

/// 0005 as `migration-fails` builds ship it: the backfill reads a column
/// that no release ever created.
const FAILING_0005: Migration = Migration {
    version: 5,
    name: "0005_add_yubikeys_attestation",
    since: (1, 1, 0),
    statements: &[
        "ALTER TABLE yubikeys ADD COLUMN IF NOT EXISTS attestation_verified_at timestamptz",
        "UPDATE yubikeys SET attestation_verified_at = attested_at WHERE attested_at IS NOT NULL",
    ],
};

/// The advisory lock every migration transaction takes, so replicas and
/// the hook Job never migrate at the same time.
const MIGRATION_LOCK: i64 = 7411;

fn semver_prefix(tag: &str) -> Option<(u64, u64, u64)> {
    let t = tag.strip_prefix('v').unwrap_or(tag);
    let core = t.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    Some((
        parts.next()??,
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
    ))
}

/// The migrations the build with image tag `tag` knows, in order. A tag
/// that is no version (`latest`, `dev`) knows them all.
pub fn known_migrations(tag: &str) -> Vec<&'static Migration> {
    let version = semver_prefix(tag);
    let fails = tag.contains("migration-fails");
    MIGRATIONS
        .iter()
        .filter(|m| version.is_none_or(|v| v >= m.since))
        .map(|m| {
            if fails && m.version == FAILING_0005.version {
                &FAILING_0005
            } else {
                m
            }
        })
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum App {
    Backend,
    Frontend,
}

/// Where the backend is with its start-up migrations.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Migrations {
    Running,
    Finished(i64),
    Failed(String),
}

struct Server {
    port: u16,
    accept: JoinHandle<()>,
    migrator: Option<JoinHandle<()>>,
}

struct Shared {
    app: App,
    container: ContainerRef,
    databases: PgRegistry,
    migrations: Arc<Mutex<Migrations>>,
}

/// The runtime for Kleidia backend (`*backend*`) and frontend
/// (`*frontend*`) images.
pub struct KleidiaRuntime {
    servers: tokio::sync::Mutex<HashMap<PathBuf, (Server, Arc<Shared>)>>,
    databases: PgRegistry,
}

impl KleidiaRuntime {
    /// `databases`: the PostgreSQL runtime's servers
    /// ([`super::postgres::PostgresRuntime::registry`]) of the same sandbox.
    pub fn new(databases: PgRegistry) -> Self {
        Self {
            servers: tokio::sync::Mutex::new(HashMap::new()),
            databases,
        }
    }

    async fn server(&self, c: &ContainerRef) -> Option<(u16, Arc<Shared>)> {
        self.servers
            .lock()
            .await
            .get(&c.root)
            .map(|(s, sh)| (s.port, sh.clone()))
    }

    async fn start_server(&self, c: &ContainerRef) -> anyhow::Result<()> {
        if c.image_tag().contains("broken") {
            anyhow::bail!(
                "image {} cannot be pulled: this build is broken (its tag says so)",
                c.image
            );
        }
        std::fs::create_dir_all(&c.root)?;
        if !runs_server(c) {
            // A one-off command (the migration Job, the cleanup CronJob):
            // the kubelet runs it through `exec`.
            return Ok(());
        }
        let mut servers = self.servers.lock().await;
        if servers
            .get(&c.root)
            .is_some_and(|(s, _)| !s.accept.is_finished())
        {
            return Ok(());
        }
        let app = app_of(&c.image);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            app,
            container: c.clone(),
            databases: self.databases.clone(),
            migrations: Arc::new(Mutex::new(Migrations::Running)),
        });
        let accept = tokio::spawn(serve(listener, shared.clone()));
        let name = match app {
            App::Backend => "kleidia-backend",
            App::Frontend => "kleidia-frontend",
        };
        append_line(
            &c.log_path,
            "INFO",
            "server",
            &format!(
                "{name} {} listening on :{}",
                c.image_tag(),
                c.ports.first().copied().unwrap_or(8080)
            ),
        );
        let migrator = (app == App::Backend).then(|| {
            let c = c.clone();
            let databases = self.databases.clone();
            let state = shared.migrations.clone();
            tokio::spawn(migrate_at_start(databases, c, state))
        });
        servers.insert(
            c.root.clone(),
            (
                Server {
                    port,
                    accept,
                    migrator,
                },
                shared,
            ),
        );
        Ok(())
    }
}

/// The start-up migrations of a serving backend: retried while the
/// database cannot be reached; a failed migration keeps the backend
/// unhealthy (and is retried, as a restarted container would).
async fn migrate_at_start(databases: PgRegistry, c: ContainerRef, state: Arc<Mutex<Migrations>>) {
    let set = |m: Migrations| *state.lock().unwrap_or_else(|e| e.into_inner()) = m;
    loop {
        let mut sink = Sink::Log(&c.log_path);
        match run_migrations(&databases, &c, &mut sink).await {
            Ok(version) => {
                set(Migrations::Finished(version));
                return;
            }
            Err(e) if e.unreachable() => {
                sink.line("WARN", &format!("{e}; retrying in 2s")).await;
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => {
                if !matches!(e, MigrationError::Failed { .. }) {
                    sink.line("ERROR", &e.to_string()).await;
                }
                set(Migrations::Failed(e.to_string()));
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
        }
    }
}

fn app_of(image: &str) -> App {
    if crate::runtime::image_name(image).contains("frontend") {
        App::Frontend
    } else {
        App::Backend
    }
}

/// Whether the container's process is the server: the image's own
/// entrypoint, or `kleidia-backend [serve]`. Anything else (`migrate`,
/// `cleanup-sessions`, a shell script) is a one-off command.
fn runs_server(c: &ContainerRef) -> bool {
    if app_of(&c.image) == App::Frontend || c.command.is_empty() {
        return true;
    }
    SimpleCommand::parse(&c.command).is_some_and(|s| {
        program_name(&s.argv[0]) == "kleidia-backend"
            && matches!(s.argv.get(1).map(String::as_str), None | Some("serve"))
    })
}

impl ImageRuntime for KleidiaRuntime {
    fn name(&self) -> &'static str {
        "kleidia"
    }

    fn matches(&self, image: &str) -> bool {
        let name = crate::runtime::image_name(image);
        name.contains("kleidia-backend")
            || name.contains("kleidia-frontend")
            || name == "backend"
            || name == "frontend"
    }

    fn start<'a>(&'a self, c: &'a ContainerRef) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.start_server(c))
    }

    fn stop<'a>(&'a self, c: &'a ContainerRef) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Some((s, _)) = self.servers.lock().await.remove(&c.root) {
                s.accept.abort();
                if let Some(m) = s.migrator {
                    m.abort();
                }
                append_line(&c.log_path, "INFO", "server", "shutting down");
            }
        })
    }

    fn ready<'a>(&'a self, c: &'a ContainerRef) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            if !runs_server(c) {
                // A one-off command has no readiness probe: ready while it runs.
                return true;
            }
            match self.server(c).await {
                None => false,
                Some((_, shared)) => match shared.app {
                    App::Frontend => true,
                    App::Backend => health(&shared).await.0 == StatusCode::OK,
                },
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
            let simple = SimpleCommand::parse(&command).filter(|s| {
                app_of(&c.image) == App::Backend && program_name(&s.argv[0]) == "kleidia-backend"
            });
            let Some(simple) = simple else {
                return delegate_to_shell(c, command, io, &[], &[]).await;
            };
            let ExecIo {
                mut stdout,
                mut stderr,
                ..
            } = io;
            let sub = simple.argv.get(1).map(String::as_str).unwrap_or("serve");
            let (code, err) = match sub {
                "migrate" => {
                    let mut sink = Sink::Out(&mut stdout);
                    match run_migrations(&self.databases, c, &mut sink).await {
                        Ok(_) => (0, String::new()),
                        Err(e) => {
                            if !matches!(e, MigrationError::Failed { .. }) {
                                sink.line("ERROR", &e.to_string()).await;
                            }
                            (1, format!("Error: {e}\n"))
                        }
                    }
                }
                "version" | "--version" => {
                    let _ = stdout
                        .write_all(format!("kleidia-backend {}\n", c.image_tag()).as_bytes())
                        .await;
                    (0, String::new())
                }
                "cleanup-sessions" => match cleanup_sessions(&self.databases, c).await {
                    Ok(n) => {
                        let line =
                            stamped("INFO", "cleanup", &format!("{n} expired sessions removed"));
                        let _ = stdout.write_all(line.as_bytes()).await;
                        (0, String::new())
                    }
                    Err(e) => (1, format!("Error: {e}\n")),
                },
                "serve" => (
                    1,
                    format!(
                        "Error: listen tcp :{}: bind: address already in use\n",
                        c.ports.first().copied().unwrap_or(8080)
                    ),
                ),
                other => (
                    2,
                    format!(
                        "Error: unknown command {other:?} for \"kleidia-backend\"\n\
                         Commands: serve, migrate, version, cleanup-sessions\n"
                    ),
                ),
            };
            let _ = stderr.write_all(err.as_bytes()).await;
            let _ = stdout.shutdown().await;
            let _ = stderr.shutdown().await;
            ExecOutcome::Exit(code)
        })
    }

    fn connect<'a>(
        &'a self,
        c: &'a ContainerRef,
        port: u16,
    ) -> BoxFuture<'a, std::io::Result<BoxedStream>> {
        Box::pin(async move {
            let declared = c.ports.is_empty() || c.ports.contains(&port);
            match self.server(c).await {
                Some((p, _)) if declared => {
                    let s = tokio::net::TcpStream::connect(("127.0.0.1", p)).await?;
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

async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(&shared, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(shared: &Shared, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let c = &shared.container;
    let path = req.uri().path();
    let (status, content_type, body) = match (shared.app, path) {
        (App::Backend, "/api/health" | "/health" | "/healthz") => {
            let (status, body) = health(shared).await;
            (status, "application/json", body.to_string())
        }
        (App::Backend, "/api/version") => (
            StatusCode::OK,
            "application/json",
            serde_json::json!({"version": c.image_tag()}).to_string(),
        ),
        (App::Frontend, "/" | "/index.html") => (
            StatusCode::OK,
            "text/html; charset=utf-8",
            format!(
                "<!doctype html>\n<html><head><title>Kleidia</title></head>\
                 <body><h1>Kleidia</h1><p>YubiKey and FIDO2 management, version {}</p>\
                 <script>window.API_URL = {:?};</script></body></html>\n",
                c.image_tag(),
                c.env.get("API_URL").cloned().unwrap_or_default()
            ),
        ),
        (App::Frontend, "/healthz") => (StatusCode::OK, "text/plain", "ok\n".into()),
        _ => (
            StatusCode::NOT_FOUND,
            "application/json",
            serde_json::json!({"error": "not found"}).to_string(),
        ),
    };
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts")
}

/// The backend's health: its version, whether its database answers and
/// where its start-up migrations are. Healthy once both are fine.
async fn health(shared: &Shared) -> (StatusCode, serde_json::Value) {
    let c = &shared.container;
    let connected = match database(&shared.databases, c).await {
        Ok(db) => db.query("SELECT 1").await.is_ok(),
        Err(_) => false,
    };
    let migrations = shared
        .migrations
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let ok = connected && matches!(migrations, Migrations::Finished(_));
    let mut body = serde_json::json!({
        "status": if ok { "ok" } else if connected { "starting" } else { "degraded" },
        "version": c.image_tag(),
        "service": "kleidia-backend",
        "database": if connected { "connected" } else { "unreachable" },
    });
    match migrations {
        Migrations::Running => body["migrations"] = "running".into(),
        Migrations::Finished(v) => {
            body["migrations"] = "finished".into();
            body["schema_version"] = v.into();
        }
        Migrations::Failed(e) => {
            body["status"] = "degraded".into();
            body["migrations"] = format!("failed: {e}").into();
        }
    }
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body)
}

fn env_first<'a>(c: &'a ContainerRef, names: &[&str]) -> Option<&'a str> {
    names
        .iter()
        .find_map(|n| c.env.get(*n))
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

/// The backend's database: the server it reaches and who it is there.
struct Database {
    endpoint: PgEndpoint,
    user: String,
    name: String,
}

/// The data release's running PostgreSQL, as `DB_HOST`/`DB_PORT` name it.
async fn database(databases: &PgRegistry, c: &ContainerRef) -> Result<Database, MigrationError> {
    let host = env_first(c, &["DB_HOST", "DATABASE_HOST", "POSTGRES_HOST", "PGHOST"]).unwrap_or("");
    let port = env_first(c, &["DB_PORT", "DATABASE_PORT", "POSTGRES_PORT", "PGPORT"])
        .and_then(|p| p.parse().ok())
        .unwrap_or(5432u16);
    let user = env_first(c, &["DB_USER", "DATABASE_USER", "POSTGRES_USER", "PGUSER"]);
    let name = env_first(
        c,
        &["DB_NAME", "DATABASE_NAME", "POSTGRES_DB", "PGDATABASE"],
    );
    let shown = |s: Option<&str>| s.unwrap_or("postgres").to_string();
    let endpoint = match network::for_root(&c.root) {
        Some(net) => {
            let svc =
                net.resolve(&c.namespace, host)
                    .ok_or_else(|| MigrationError::NoSuchHost {
                        host: host.to_string(),
                        user: shown(user),
                        database: shown(name),
                    })?;
            let refused = || MigrationError::Refused {
                host: host.to_string(),
                user: shown(user),
                database: shown(name),
                address: svc.cluster_ip.clone().unwrap_or_else(|| svc.ip.to_string()),
                port,
            };
            let (pod, _) = net.ready_endpoint(&svc, port).ok_or_else(refused)?;
            databases.lookup(&svc.namespace, &pod).ok_or_else(refused)?
        }
        None => databases.lookup(&c.namespace, host).ok_or_else(|| {
            MigrationError::DatabaseNotFound {
                namespace: c.namespace.clone(),
                host: host.to_string(),
            }
        })?,
    };
    Ok(Database {
        user: user.unwrap_or(&endpoint.superuser).to_string(),
        name: name.unwrap_or(&endpoint.database).to_string(),
        endpoint,
    })
}

/// How a psql run failed.
struct PsqlFailure {
    stdout: String,
    stderr: String,
}

impl Database {
    /// Runs `script` (psql input) and returns its unaligned output.
    async fn run(&self, script: &str) -> Result<String, PsqlFailure> {
        let spawned = Command::new(self.endpoint.bindir.join("psql"))
            .args(["-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-U"])
            .arg(&self.user)
            .arg("-d")
            .arg(&self.name)
            .args(["-f", "-"])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .envs(self.endpoint.client_env())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn();
        let mut child = spawned.map_err(|e| PsqlFailure {
            stdout: String::new(),
            stderr: format!("running psql: {e}"),
        })?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(script.as_bytes()).await;
        }
        let out = child.wait_with_output().await.map_err(|e| PsqlFailure {
            stdout: String::new(),
            stderr: format!("waiting for psql: {e}"),
        })?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(stdout)
        } else {
            Err(PsqlFailure {
                stdout,
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            })
        }
    }

    async fn query(&self, sql: &str) -> Result<String, MigrationError> {
        self.run(&format!("{sql};\n"))
            .await
            .map_err(|f| MigrationError::Sql(server_error(&f.stderr)))
    }
}

/// PostgreSQL's error from psql's messages, as the Go driver prints it:
/// `ERROR: <message> (SQLSTATE <code>)`.
fn server_error(stderr: &str) -> String {
    let Some(line) = stderr.lines().find(|l| l.contains("ERROR:")) else {
        let first = stderr.lines().next().unwrap_or("psql failed").trim();
        return first.trim_start_matches("psql: error: ").to_string();
    };
    let msg = line
        .split_once("ERROR:")
        .map(|(_, m)| m.trim())
        .unwrap_or(line);
    match msg.split_once(": ") {
        Some((code, rest))
            if code.len() == 5 && code.bytes().all(|b| b.is_ascii_alphanumeric()) =>
        {
            format!("ERROR: {rest} (SQLSTATE {code})")
        }
        _ => format!("ERROR: {msg}"),
    }
}

/// Where migration lines go: the container log (the server, whose output
/// the log is) or an exec's stdout.
enum Sink<'a> {
    Log(&'a Path),
    Out(&'a mut BoxedWriter),
}

impl Sink<'_> {
    async fn line(&mut self, level: &str, msg: &str) {
        let text = stamped(level, "migrate", msg);
        match self {
            Sink::Log(path) => append(path, &text),
            Sink::Out(w) => {
                let _ = w.write_all(text.as_bytes()).await;
                let _ = w.flush().await;
            }
        }
    }
}

/// One log line as the Go backend prints it: RFC 3339 time (UTC,
/// milliseconds), level, component.
fn stamped(level: &str, component: &str, msg: &str) -> String {
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ");
    format!("{now} {level} {component}: {msg}\n")
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    if let Ok(mut f) = log_file(path) {
        let _ = f.write_all(text.as_bytes());
    }
}

fn append_line(path: &Path, level: &str, component: &str, msg: &str) {
    append(path, &stamped(level, component, msg));
}

fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Applies the migrations this build knows and the database lacks, one
/// transaction each, logging every step to `sink`; returns the schema
/// version. A failed migration is logged here (with its statement);
/// other errors are left to the caller.
async fn run_migrations(
    databases: &PgRegistry,
    c: &ContainerRef,
    sink: &mut Sink<'_>,
) -> Result<i64, MigrationError> {
    let db = database(databases, c).await?;
    let known = known_migrations(c.image_tag());
    let applied = applied_migrations(&db).await?;
    let version = |applied: &[(i64, String)]| applied.iter().map(|(v, _)| *v).max().unwrap_or(0);
    let known_max = known.iter().map(|m| m.version).max().unwrap_or(0);
    let host = env_first(c, &["DB_HOST", "DATABASE_HOST", "POSTGRES_HOST", "PGHOST"])
        .unwrap_or(&db.endpoint.pod);
    sink.line(
        "INFO",
        &format!(
            "database {} on {host}: schema version {}, this build knows {} migrations (up to version {known_max})",
            db.name,
            version(&applied),
            known.len()
        ),
    )
    .await;
    let newer: Vec<&str> = applied
        .iter()
        .filter(|(v, _)| *v > known_max)
        .map(|(_, n)| n.as_str())
        .collect();
    if !newer.is_empty() {
        sink.line(
            "WARN",
            &format!(
                "database schema version {} is newer than this build knows ({known_max}): {} applied by a newer release; leaving the schema as it is",
                version(&applied),
                newer.join(", ")
            ),
        )
        .await;
    }
    let pending: Vec<&Migration> = known
        .into_iter()
        .filter(|m| !applied.iter().any(|(v, _)| *v == m.version))
        .collect();
    if pending.is_empty() && newer.is_empty() {
        sink.line(
            "INFO",
            &format!(
                "no migrations to apply, schema is up to date (version {})",
                version(&applied)
            ),
        )
        .await;
    }
    let mut current = version(&applied);
    for m in pending {
        sink.line("INFO", &format!("applying {}", m.name)).await;
        let started = Instant::now();
        match apply(&db, m).await {
            Ok(true) => {
                current = current.max(m.version);
                sink.line(
                    "INFO",
                    &format!("applied {} ({}ms)", m.name, started.elapsed().as_millis()),
                )
                .await;
            }
            Ok(false) => {
                current = current.max(m.version);
                sink.line(
                    "INFO",
                    &format!("{} was applied meanwhile by another instance", m.name),
                )
                .await;
            }
            Err(failure) => {
                let e = failed(m, &failure, current);
                sink.line("ERROR", &e.to_string()).await;
                return Err(e);
            }
        }
    }
    sink.line(
        "INFO",
        &format!("migrations finished (schema version {current})"),
    )
    .await;
    Ok(current)
}

/// The migrations recorded in the database (creating the table first).
async fn applied_migrations(db: &Database) -> Result<Vec<(i64, String)>, MigrationError> {
    let script = format!(
        "BEGIN;
SELECT pg_advisory_xact_lock({MIGRATION_LOCK});
CREATE TABLE IF NOT EXISTS schema_migrations (
  version bigint PRIMARY KEY,
  name text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now());
COMMIT;
SELECT 'applied ' || version || ' ' || name FROM schema_migrations ORDER BY version;
"
    );
    let out = db
        .run(&script)
        .await
        .map_err(|f| MigrationError::Sql(server_error(&f.stderr)))?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let (v, n) = l.strip_prefix("applied ")?.split_once(' ')?;
            Some((v.parse().ok()?, n.to_string()))
        })
        .collect())
}

const MARK: &str = "kleidia-migrate:";

/// Applies one migration in a transaction under the migration lock.
/// `Ok(false)`: someone else had applied it by the time the lock was ours.
async fn apply(db: &Database, m: &Migration) -> Result<bool, PsqlFailure> {
    let mut script = format!(
        "\\set VERBOSITY verbose
\\set SHOW_CONTEXT never
BEGIN;
SELECT pg_advisory_xact_lock({MIGRATION_LOCK});
SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = {v}) AS already \\gset
\\if :already
\\echo {MARK} already applied
ROLLBACK;
\\else
",
        v = m.version
    );
    for (i, s) in m.statements.iter().enumerate() {
        script.push_str(&format!("\\echo {MARK} statement {}\n{s};\n", i + 1));
    }
    script.push_str(&format!(
        "INSERT INTO schema_migrations (version, name) VALUES ({}, {});
COMMIT;
\\echo {MARK} applied
\\endif
",
        m.version,
        sql_literal(m.name)
    ));
    let out = db.run(&script).await?;
    Ok(!out.contains(&format!("{MARK} already applied")))
}

/// The error of a failed migration: which statement, what PostgreSQL said.
fn failed(m: &Migration, f: &PsqlFailure, version: i64) -> MigrationError {
    let index = f
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{MARK} statement ")))
        .filter_map(|n| n.trim().parse::<usize>().ok())
        .next_back();
    match index {
        Some(i) if i >= 1 && i <= m.statements.len() => MigrationError::Failed {
            name: m.name.to_string(),
            index: i,
            statement: m.statements[i - 1].to_string(),
            error: server_error(&f.stderr),
            version,
        },
        _ => MigrationError::Sql(format!(
            "migration {} failed: {}",
            m.name,
            server_error(&f.stderr)
        )),
    }
}

/// `kleidia-backend cleanup-sessions`: deletes expired sessions.
async fn cleanup_sessions(databases: &PgRegistry, c: &ContainerRef) -> Result<u64, MigrationError> {
    let db = database(databases, c).await?;
    let out = db
        .query("WITH gone AS (DELETE FROM sessions WHERE expires_at < now() RETURNING 1) SELECT count(*) FROM gone")
        .await?;
    Ok(out.trim().parse().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_know_the_migrations_of_their_version() {
        let names =
            |tag: &str| -> Vec<&str> { known_migrations(tag).iter().map(|m| m.name).collect() };
        assert_eq!(names("1.0.0").len(), 4);
        assert_eq!(names("1.0.3"), names("1.0.0"));
        assert_eq!(names("1.1.0").len(), 5);
        assert_eq!(
            names("1.1.0").last(),
            Some(&"0005_add_yubikeys_attestation")
        );
        assert_eq!(names("v1.2"), names("1.1.0"));
        assert_eq!(names("latest").len(), MIGRATIONS.len());
        let fails = known_migrations("1.1.0-migration-fails");
        assert_eq!(fails.last().copied(), Some(&FAILING_0005));
        assert_eq!(
            known_migrations("1.1.0").last().copied(),
            Some(&MIGRATIONS[4])
        );
        let versions: Vec<i64> = MIGRATIONS.iter().map(|m| m.version).collect();
        assert_eq!(versions, [1, 2, 3, 4, 5]);
        for m in MIGRATIONS {
            assert!(
                m.name.starts_with(&format!("{:04}_", m.version)),
                "{}",
                m.name
            );
        }
    }

    #[test]
    fn server_errors_read_like_the_go_driver() {
        let stderr = "psql:<stdin>:12: ERROR:  42703: column \"attested_at\" does not exist\n\
                      LINE 1: UPDATE yubikeys SET attestation_verified_at = attested_at W...\n";
        assert_eq!(
            server_error(stderr),
            "ERROR: column \"attested_at\" does not exist (SQLSTATE 42703)"
        );
        assert_eq!(
            server_error("psql: error: connection to server failed\n"),
            "connection to server failed"
        );
    }

    #[test]
    fn one_off_commands_are_not_servers() {
        let mut c = ContainerRef {
            namespace: "n".into(),
            pod: "p".into(),
            container: "c".into(),
            image: "ghcr.io/kleidia/kleidia-backend:1.1.0".into(),
            env: Default::default(),
            ports: vec![],
            command: vec![],
            root: "/nowhere".into(),
            log_path: "/nowhere/log".into(),
        };
        assert!(runs_server(&c));
        c.command = vec!["/app/kleidia-backend".into(), "serve".into()];
        assert!(runs_server(&c));
        c.command = vec!["/app/kleidia-backend".into(), "migrate".into()];
        assert!(!runs_server(&c));
        c.command = vec!["sh".into(), "-c".into(), "sleep 1; true".into()];
        assert!(!runs_server(&c));
    }
}
