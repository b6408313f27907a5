//! The Kleidia backend and frontend images.
//!
//! The backend is an HTTP server in this process answering `/api/health`
//! with its version (the image tag) and database state. Like the real Go
//! backend (GORM AutoMigrate) it migrates the schema of the data release's
//! real PostgreSQL when it starts, and `/app/kleidia-backend migrate` (the
//! pre-upgrade hook) does the same on demand. The database is found through
//! the PostgreSQL runtime's registry of running servers, from `DB_HOST`.
//! The frontend serves a small HTML page.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio::task::JoinHandle;

use super::postgres::{
    PgEndpoint, PgRegistry, SimpleCommand, delegate_to_shell, log_line, program_name,
};
use crate::runtime::{BoxedStream, ContainerRef, ExecIo, ExecOutcome, ImageRuntime};

/// What can go wrong with a backend migration.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error(
        "no running PostgreSQL found for DB_HOST {host:?} in namespace {namespace}: \
         is the data release installed and its pod ready?"
    )]
    DatabaseNotFound { namespace: String, host: String },
    #[error("migration failed: {0}")]
    Sql(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum App {
    Backend,
    Frontend,
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
}

/// The runtime for Kleidia backend (`*backend*`) and frontend
/// (`*frontend*`) images.
pub struct KleidiaRuntime {
    servers: tokio::sync::Mutex<HashMap<PathBuf, Server>>,
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

    async fn port(&self, c: &ContainerRef) -> Option<u16> {
        self.servers.lock().await.get(&c.root).map(|s| s.port)
    }

    async fn start_server(&self, c: &ContainerRef) -> anyhow::Result<()> {
        if c.image_tag().contains("broken") {
            anyhow::bail!(
                "image {} cannot be pulled: this build is broken (its tag says so)",
                c.image
            );
        }
        let mut servers = self.servers.lock().await;
        if servers
            .get(&c.root)
            .is_some_and(|s| !s.accept.is_finished())
        {
            return Ok(());
        }
        std::fs::create_dir_all(&c.root)?;
        let app = app_of(&c.image);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            app,
            container: c.clone(),
            databases: self.databases.clone(),
        });
        let accept = tokio::spawn(serve(listener, shared));
        let name = match app {
            App::Backend => "kleidia-backend",
            App::Frontend => "kleidia-frontend",
        };
        log_line(
            &c.log_path,
            &format!(
                "{name} {} listening on :{}",
                c.image_tag(),
                c.ports.first().copied().unwrap_or(8080)
            ),
        );
        let migrator = (app == App::Backend).then(|| {
            let c = c.clone();
            let databases = self.databases.clone();
            tokio::spawn(async move {
                // AutoMigrate at start; the database may come up later.
                loop {
                    match migrate(&databases, &c).await {
                        Ok(_) => return,
                        Err(e) => {
                            log_line(&c.log_path, &format!("migration at start: {e}; retrying"));
                            tokio::time::sleep(Duration::from_secs(2)).await;
                        }
                    }
                }
            })
        });
        servers.insert(
            c.root.clone(),
            Server {
                port,
                accept,
                migrator,
            },
        );
        Ok(())
    }
}

fn app_of(image: &str) -> App {
    if crate::runtime::image_name(image).contains("frontend") {
        App::Frontend
    } else {
        App::Backend
    }
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
            if let Some(s) = self.servers.lock().await.remove(&c.root) {
                s.accept.abort();
                if let Some(m) = s.migrator {
                    m.abort();
                }
                log_line(&c.log_path, "shutting down");
            }
        })
    }

    fn ready<'a>(&'a self, c: &'a ContainerRef) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            if self.port(c).await.is_none() {
                return false;
            }
            match app_of(&c.image) {
                App::Frontend => true,
                App::Backend => health(&self.databases, c).await.0 == StatusCode::OK,
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
            let sub = simple.argv.get(1).map(String::as_str).unwrap_or("");
            let (code, out, err) = match sub {
                "migrate" => match migrate(&self.databases, c).await {
                    Ok(msg) => (0, msg, String::new()),
                    Err(e) => {
                        log_line(&c.log_path, &format!("migration failed: {e}"));
                        (1, String::new(), format!("{e}\n"))
                    }
                },
                "version" | "--version" => (
                    0,
                    format!("kleidia-backend {}\n", c.image_tag()),
                    String::new(),
                ),
                "cleanup-sessions" => {
                    log_line(&c.log_path, "session cleanup: 0 expired sessions removed");
                    (0, "0 expired sessions removed\n".to_string(), String::new())
                }
                other => (
                    2,
                    String::new(),
                    format!(
                        "kleidia-backend: unknown command {other:?}; commands: serve, migrate, version, cleanup-sessions\n"
                    ),
                ),
            };
            let _ = stdout.write_all(out.as_bytes()).await;
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
            match self.port(c).await {
                Some(p) if declared => {
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
            let (status, body) = health(&shared.databases, c).await;
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

/// The backend's health: its version and whether its database answers.
async fn health(databases: &PgRegistry, c: &ContainerRef) -> (StatusCode, serde_json::Value) {
    let db = database(databases, c);
    let db_state = match &db {
        Ok(ep) => {
            if psql(c, ep, "SELECT 1").await.is_ok() {
                "connected"
            } else {
                "unreachable"
            }
        }
        Err(_) => "unreachable",
    };
    let ok = db_state == "connected";
    let body = serde_json::json!({
        "status": if ok { "ok" } else { "degraded" },
        "version": c.image_tag(),
        "service": "kleidia-backend",
        "database": db_state,
    });
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

/// The data release's running PostgreSQL, as `DB_HOST` names it.
fn database(databases: &PgRegistry, c: &ContainerRef) -> Result<PgEndpoint, MigrationError> {
    let host = env_first(c, &["DB_HOST", "DATABASE_HOST", "POSTGRES_HOST", "PGHOST"]).unwrap_or("");
    databases
        .lookup(&c.namespace, host)
        .ok_or_else(|| MigrationError::DatabaseNotFound {
            namespace: c.namespace.clone(),
            host: host.to_string(),
        })
}

async fn psql(c: &ContainerRef, ep: &PgEndpoint, sql: &str) -> Result<String, MigrationError> {
    let user = env_first(c, &["DB_USER", "DATABASE_USER", "POSTGRES_USER", "PGUSER"])
        .unwrap_or(&ep.superuser)
        .to_string();
    let db = env_first(
        c,
        &["DB_NAME", "DATABASE_NAME", "POSTGRES_DB", "PGDATABASE"],
    )
    .unwrap_or(&ep.database)
    .to_string();
    let out = Command::new(ep.bindir.join("psql"))
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-tA",
            "-U",
            &user,
            "-d",
            &db,
            "-c",
            sql,
        ])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .envs(ep.client_env())
        .stdin(Stdio::null())
        .output()
        .await?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(MigrationError::Sql(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

/// The schema, written so that running it again changes nothing.
fn migration_sql(version: &str) -> String {
    let version = version.replace('\'', "''");
    format!(
        "BEGIN;
SELECT pg_advisory_xact_lock(7411);
CREATE TABLE IF NOT EXISTS schema_migrations (
  version text PRIMARY KEY,
  applied_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS users (
  id bigserial PRIMARY KEY,
  email text UNIQUE NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS yubikeys (
  id bigserial PRIMARY KEY,
  serial text UNIQUE NOT NULL,
  user_id bigint REFERENCES users(id),
  created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS sessions (
  id text PRIMARY KEY,
  user_id bigint REFERENCES users(id),
  expires_at timestamptz NOT NULL);
ALTER TABLE yubikeys ADD COLUMN IF NOT EXISTS firmware_version text;
ALTER TABLE users ADD COLUMN IF NOT EXISTS display_name text;
INSERT INTO schema_migrations (version) VALUES ('{version}') ON CONFLICT DO NOTHING;
COMMIT;"
    )
}

/// Runs the idempotent migration against the data release's database and
/// says what it did (also in the container log).
pub async fn migrate(databases: &PgRegistry, c: &ContainerRef) -> Result<String, MigrationError> {
    let ep = database(databases, c)?;
    log_line(
        &c.log_path,
        &format!(
            "migrating database schema on {}/{} to {}",
            ep.namespace,
            ep.pod,
            c.image_tag()
        ),
    );
    psql(c, &ep, &migration_sql(c.image_tag())).await?;
    let tables = psql(
        c,
        &ep,
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .await?;
    let msg = format!(
        "migrations complete: schema at {} ({} tables)\n",
        c.image_tag(),
        tables.trim()
    );
    log_line(&c.log_path, msg.trim_end());
    Ok(msg)
}
