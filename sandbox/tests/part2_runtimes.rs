//! The real-software runtimes, driven directly (no API server): a real
//! PostgreSQL, a real OpenBao and the Kleidia backend stand-in.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use kleidia_sandbox::runtime::{ContainerRef, ExecIo, ExecOutcome, ImageRuntime};
use kleidia_sandbox::runtimes::postgres::PostgresRuntime;
use support::exec;
use tokio::io::AsyncReadExt;

fn container(dir: &Path, ns: &str, pod: &str, image: &str, env: &[(&str, &str)]) -> ContainerRef {
    let root = dir.join(ns).join(pod).join("main");
    std::fs::create_dir_all(&root).unwrap();
    ContainerRef {
        namespace: ns.into(),
        pod: pod.into(),
        container: "main".into(),
        image: image.into(),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        ports: vec![],
        command: vec![],
        root: root.clone(),
        log_path: dir.join(ns).join(pod).join("main.log"),
    }
}

fn require_postgres() {
    assert!(
        kleidia_sandbox::runtimes::postgres::find_bindir().is_some(),
        "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: run scripts/setup"
    );
}

fn pg_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("POSTGRES_USER", "yubiuser"),
        ("POSTGRES_DB", "kleidia"),
        ("POSTGRES_PASSWORD", "not-a-real-secret"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_serves_dumps_restores_and_keeps_data_across_restarts() {
    require_postgres();
    let dir = tempfile::tempdir().unwrap();
    let rt = PostgresRuntime::new();
    let db = container(
        dir.path(),
        "kleidia",
        "kleidia-data-postgres-cluster-0",
        "docker.io/library/postgres:15",
        &pg_env(),
    );
    rt.start(&db).await.expect("postgres starts");
    assert!(rt.ready(&db).await, "pg_isready after start");

    let psql = |sql: &'static str| {
        [
            "psql",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            "yubiuser",
            "-d",
            "kleidia",
            "-tAc",
            sql,
        ]
    };
    exec(
        &rt,
        &db,
        &psql("CREATE TABLE devices (id serial primary key, serial text)"),
        None,
    )
    .await
    .ok("create table");
    exec(
        &rt,
        &db,
        &psql("INSERT INTO devices (serial) SELECT 'yk-' || g FROM generate_series(1, 250) g"),
        None,
    )
    .await
    .ok("insert");
    let version = exec(&rt, &db, &psql("SELECT version()"), None)
        .await
        .ok("version");
    assert!(
        version.starts_with("PostgreSQL "),
        "SELECT version(): {version}"
    );

    // The runbook's form: pg_dumpall -U yubiuser, streamed out of the pod.
    let dump = exec(&rt, &db, &["pg_dumpall", "-U", "yubiuser"], None)
        .await
        .ok("pg_dumpall");
    assert!(dump.contains("PostgreSQL database cluster dump complete"));
    assert!(dump.contains("CREATE TABLE public.devices"));

    // Shell syntax goes to the shell runtime, with the client binaries on
    // PATH and PGHOST/PGPORT pointing at this server.
    let lines = exec(
        &rt,
        &db,
        &[
            "sh",
            "-c",
            "pg_dumpall -U yubiuser | grep -c 'INSERT INTO\\|COPY public.devices'",
        ],
        None,
    )
    .await
    .ok("pg_dumpall through sh");
    assert_eq!(lines.trim(), "1", "one COPY block for devices");

    // Restore into an empty throwaway server, fed through exec's stdin.
    let scratch = container(
        dir.path(),
        "scratch",
        "restore-0",
        "postgres:15-alpine",
        &[],
    );
    rt.start(&scratch).await.expect("throwaway postgres starts");
    let restore = exec(
        &rt,
        &scratch,
        &["psql", "-q", "-U", "postgres", "-d", "postgres", "-f", "-"],
        Some(dump.into_bytes()),
    )
    .await;
    assert_eq!(
        restore.outcome,
        ExecOutcome::Exit(0),
        "restore: {}",
        restore.stderr
    );
    let restored = exec(
        &rt,
        &scratch,
        &[
            "psql",
            "-U",
            "yubiuser",
            "-d",
            "kleidia",
            "-tAc",
            "SELECT count(*), max(serial) FROM devices",
        ],
        None,
    )
    .await
    .ok("count in restored copy");
    let original = exec(
        &rt,
        &db,
        &psql("SELECT count(*), max(serial) FROM devices"),
        None,
    )
    .await
    .ok("count in source");
    assert_eq!(restored, original);
    assert_eq!(original.trim(), "250|yk-99");
    rt.stop(&scratch).await;

    // A pod restart: stop, start again, the rows are still there.
    rt.stop(&db).await;
    assert!(!rt.ready(&db).await, "not ready once stopped");
    rt.start(&db).await.expect("postgres restarts");
    let after = exec(&rt, &db, &psql("SELECT count(*) FROM devices"), None)
        .await
        .ok("count after restart");
    assert_eq!(after.trim(), "250");
    let log = std::fs::read_to_string(&db.log_path).unwrap();
    assert_eq!(
        log.matches("initdb: creating").count(),
        1,
        "initdb ran once: {log}"
    );
    assert!(
        !log.contains("not-a-real-secret"),
        "password leaked into the log"
    );

    // Port-forward target: a TCP connection to 5432 reaches the server.
    let mut conn = rt.connect(&db, 5432).await.expect("connect 5432");
    // An SSLRequest: PostgreSQL answers with one byte, 'N' (no TLS).
    use tokio::io::AsyncWriteExt;
    conn.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
        .await
        .unwrap();
    let mut b = [0u8; 1];
    conn.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"N");
    rt.stop(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_exec_of_unknown_program_fails_like_a_container_runtime() {
    require_postgres();
    let dir = tempfile::tempdir().unwrap();
    let rt = PostgresRuntime::new();
    let c = container(dir.path(), "kleidia", "pg-0", "postgres", &[]);
    // Not started: clients fail to connect rather than reach another server.
    let out = exec(&rt, &c, &["psql", "-U", "postgres", "-c", "SELECT 1"], None).await;
    assert_eq!(out.outcome, ExecOutcome::Exit(2), "{}", out.stderr);
    assert!(
        out.stderr.contains(&c.root.display().to_string()) || out.stderr.contains("kleidia-pg-"),
        "{}",
        out.stderr
    );
    let out = exec(&rt, &c, &["no-such-tool", "--x"], None).await;
    match out.outcome {
        ExecOutcome::Failed(msg) => assert!(msg.contains("executable file not found"), "{msg}"),
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn openbao_container(dir: &Path, pod: &str) -> ContainerRef {
    let mut c = container(dir, "kleidia", pod, "quay.io/openbao/openbao:2.4.1", &[]);
    c.ports = vec![8200, 8201];
    c
}

/// `env BAO_TOKEN=<token> bao <args>` in OpenBao container `c`; fails the
/// test, naming `what`, unless it exits 0. Returns stdout.
async fn bao(
    rt: &dyn ImageRuntime,
    c: &ContainerRef,
    token: &str,
    args: &[&str],
    what: &str,
) -> String {
    let with_token = format!("BAO_TOKEN={token}");
    let mut cmd = vec!["env", with_token.as_str(), "bao"];
    cmd.extend_from_slice(args);
    exec(rt, c, &cmd, None).await.ok(what)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openbao_raft_unsealed_snapshot_via_exec_and_restart() {
    use kleidia_sandbox::runtimes::openbao::{OpenBaoRuntime, OpenBaoStorage, root_token};
    let dir = tempfile::tempdir().unwrap();
    let rt = OpenBaoRuntime::new(OpenBaoStorage::Raft);
    let c = openbao_container(dir.path(), "kleidia-platform-openbao-0");
    rt.start(&c).await.expect("openbao starts");
    assert!(rt.ready(&c).await);

    // The runbook's `vault status`, no token needed.
    let status = exec(&rt, &c, &["vault", "status", "-format=json"], None)
        .await
        .ok("vault status");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["sealed"], false);
    assert_eq!(status["initialized"], true);
    assert_eq!(status["storage_type"], "raft");

    let sealed = exec(
        &rt,
        &c,
        &["sh", "-c", "vault status -format=json | grep '\"sealed\"'"],
        None,
    )
    .await
    .ok("vault status through sh");
    assert!(sealed.contains("false"), "{sealed}");

    let token = root_token(&c).expect("root token kept by the runtime");
    let token_file = kleidia_sandbox::runtimes::openbao::root_token_path(&c);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    bao(
        &rt,
        &c,
        &token,
        &["secrets", "enable", "-path=secret", "kv-v2"],
        "enable kv",
    )
    .await;
    bao(
        &rt,
        &c,
        &token,
        &["kv", "put", "secret/kleidia", "answer=42"],
        "kv put",
    )
    .await;

    // A snapshot saved inside the pod, the way the runbook does it.
    let script =
        format!("BAO_TOKEN={token} bao operator raft snapshot save /tmp/vault-backup.snap");
    exec(&rt, &c, &["sh", "-c", &script], None)
        .await
        .ok("snapshot save");
    let snap = std::fs::read(c.root.join("tmp/vault-backup.snap"))
        .expect("snapshot inside the container root");
    let files = support::raft_snapshot_files(&snap, "the snapshot saved inside the pod");
    let meta: serde_json::Value = serde_json::from_slice(&files["meta.json"]).unwrap();
    assert!(meta["Index"].as_u64().unwrap() > 0, "{meta}");

    // Restart: unseals by itself and the secret is still there.
    rt.stop(&c).await;
    rt.start(&c).await.expect("openbao restarts");
    let got = bao(
        &rt,
        &c,
        &token,
        &["kv", "get", "-field=answer", "secret/kleidia"],
        "kv get after restart",
    )
    .await;
    assert_eq!(got.trim(), "42");

    // Port 8200 reaches the HTTP API.
    let mut conn = rt.connect(&c, 8200).await.expect("connect 8200");
    use tokio::io::AsyncWriteExt;
    conn.write_all(b"GET /v1/sys/health HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut resp = String::new();
    conn.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.0 200"), "{resp}");

    let log = std::fs::read_to_string(&c.log_path).unwrap();
    assert!(
        !log.contains(&token),
        "root token leaked into the container log"
    );
    rt.stop(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openbao_file_storage_keeps_secrets_across_restarts() {
    use kleidia_sandbox::runtimes::openbao::{OpenBaoRuntime, OpenBaoStorage, root_token};
    let dir = tempfile::tempdir().unwrap();
    let rt = OpenBaoRuntime::new("file".parse::<OpenBaoStorage>().unwrap());
    let c = openbao_container(dir.path(), "vault-0");
    rt.start(&c).await.expect("openbao starts");
    let status = exec(&rt, &c, &["bao", "status", "-format=json"], None)
        .await
        .ok("status");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["storage_type"], "file");
    assert_eq!(status["sealed"], false);
    let token = root_token(&c).unwrap();
    bao(
        &rt,
        &c,
        &token,
        &["secrets", "enable", "-path=secret", "kv"],
        "enable kv",
    )
    .await;
    bao(
        &rt,
        &c,
        &token,
        &["kv", "put", "secret/a", "v=file-ok"],
        "put",
    )
    .await;
    rt.stop(&c).await;
    assert!(!rt.ready(&c).await);
    rt.start(&c).await.expect("restart");
    let v = bao(
        &rt,
        &c,
        &token,
        &["kv", "get", "-field=v", "secret/a"],
        "get",
    )
    .await;
    assert_eq!(v.trim(), "file-ok");
    // A raft runtime refuses the file-storage data with a clear message.
    let raft = OpenBaoRuntime::new(OpenBaoStorage::Raft);
    rt.stop(&c).await;
    let err = raft.start(&c).await.unwrap_err().to_string();
    assert!(err.contains("--openbao-storage file"), "{err}");
}

async fn http_get(rt: &dyn ImageRuntime, c: &ContainerRef, port: u16, path: &str) -> (u16, String) {
    use tokio::io::AsyncWriteExt;
    let mut conn = rt.connect(c, port).await.expect("connect");
    conn.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut resp = String::new();
    conn.read_to_string(&mut resp).await.unwrap();
    let status = resp.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_reports_health_and_migrates_the_real_database() {
    use kleidia_sandbox::runtimes::backend::KleidiaRuntime;
    require_postgres();
    let dir = tempfile::tempdir().unwrap();
    let ns = "backend-test";
    let pg = PostgresRuntime::new();
    let db = container(
        dir.path(),
        ns,
        "kleidia-data-postgres-cluster-0",
        "postgres:15.4",
        &pg_env(),
    );
    pg.start(&db).await.expect("postgres starts");

    let rt = KleidiaRuntime::new(pg.registry());
    assert!(rt.matches("ghcr.io/kleidia/kleidia-backend:1.1.0"));
    assert!(rt.matches("ghcr.io/kleidia/kleidia-frontend:1.1.0"));
    assert!(!rt.matches("postgres:15"));
    let mut backend = container(
        dir.path(),
        ns,
        "kleidia-services-backend-7d9f-abcde",
        "ghcr.io/kleidia/kleidia-backend:1.1.0",
        &[
            ("DB_HOST", "kleidia-data-postgres-cluster"),
            ("DB_USER", "yubiuser"),
            ("DB_NAME", "kleidia"),
        ],
    );
    backend.ports = vec![8080];
    rt.start(&backend).await.expect("backend starts");
    let mut ready = false;
    for _ in 0..100 {
        if rt.ready(&backend).await {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ready, "backend ready once its database answers");
    let (status, body) = http_get(&rt, &backend, 8080, "/api/health").await;
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["version"], "1.1.0");
    assert!(rt.connect(&backend, 9999).await.is_err(), "undeclared port");

    // The pre-upgrade hook's command, twice: idempotent.
    for _ in 0..2 {
        let out = exec(&rt, &backend, &["/app/kleidia-backend", "migrate"], None)
            .await
            .ok("migrate");
        assert!(
            out.contains("INFO migrate: no migrations to apply")
                && out.contains("INFO migrate: migrations finished (schema version 5)"),
            "{out}"
        );
    }
    let tables = exec(
        &pg,
        &db,
        &[
            "psql",
            "-U",
            "yubiuser",
            "-d",
            "kleidia",
            "-tAc",
            "SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_migrations",
        ],
        None,
    )
    .await
    .ok("schema_migrations");
    assert_eq!(tables.trim(), "1,2,3,4,5");
    let columns = exec(
        &pg,
        &db,
        &["psql", "-U", "yubiuser", "-d", "kleidia", "-tAc",
          "SELECT count(*) FROM information_schema.columns WHERE table_name = 'yubikeys' AND column_name = 'firmware_version'"],
        None,
    )
    .await
    .ok("columns");
    assert_eq!(columns.trim(), "1");
    let log = std::fs::read_to_string(&backend.log_path).unwrap();
    assert!(log.contains("migrat"), "{log}");

    // Without its database the backend is not healthy.
    pg.stop(&db).await;
    let (status, _) = http_get(&rt, &backend, 8080, "/api/health").await;
    assert_eq!(status, 503);
    assert!(!rt.ready(&backend).await);
    let out = exec(&rt, &backend, &["kleidia-backend", "migrate"], None).await;
    assert_eq!(out.outcome, ExecOutcome::Exit(1));
    assert!(
        out.stderr.contains("no running PostgreSQL"),
        "{}",
        out.stderr
    );
    rt.stop(&backend).await;

    let mut frontend = container(
        dir.path(),
        ns,
        "kleidia-services-frontend-1",
        "ghcr.io/kleidia/kleidia-frontend:1.1.0",
        &[],
    );
    frontend.ports = vec![8080];
    rt.start(&frontend).await.expect("frontend starts");
    assert!(rt.ready(&frontend).await);
    let (status, body) = http_get(&rt, &frontend, 8080, "/").await;
    assert_eq!(status, 200);
    assert!(body.contains("<html>") && body.contains("1.1.0"), "{body}");
    rt.stop(&frontend).await;

    let broken = container(
        dir.path(),
        ns,
        "b-1",
        "ghcr.io/kleidia/kleidia-backend:1.1.0-broken",
        &[],
    );
    assert!(rt.start(&broken).await.is_err());
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_dumpall_of_a_large_database_streams_with_flat_memory() {
    require_postgres();
    let dir = tempfile::tempdir().unwrap();
    let rt = PostgresRuntime::new();
    let db = container(dir.path(), "stream-test", "pg-0", "postgres:15", &pg_env());
    rt.start(&db).await.expect("postgres starts");
    // ~120 MB of rows.
    exec(
        &rt,
        &db,
        &[
            "psql", "-v", "ON_ERROR_STOP=1", "-U", "yubiuser", "-d", "kleidia", "-c",
            "CREATE TABLE blobs AS SELECT g AS id, repeat(md5(g::text), 16) AS body FROM generate_series(1, 220000) g",
        ],
        None,
    )
    .await
    .ok("fill");

    let (out_w, mut out_r) = tokio::io::duplex(64 * 1024);
    let (err_w, mut err_r) = tokio::io::duplex(64 * 1024);
    let io = ExecIo {
        stdin: None,
        stdout: Box::pin(out_w),
        stderr: Box::pin(err_w),
        tty: false,
    };
    let before = rss_kib();
    let command = vec!["pg_dumpall".to_string(), "-U".into(), "yubiuser".into()];
    let count = async {
        use sha2::Digest;
        let mut total = 0u64;
        let mut peak = 0u64;
        let mut tail = Vec::new();
        let mut hasher = sha2::Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = out_r.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            total += n as u64;
            tail.extend_from_slice(&buf[..n]);
            if tail.len() > 4096 {
                tail.drain(..tail.len() - 4096);
            }
            if total % (8 << 20) < n as u64 {
                peak = peak.max(rss_kib());
            }
        }
        let _ = hasher.finalize();
        (
            total,
            peak.max(rss_kib()),
            String::from_utf8_lossy(&tail).into_owned(),
        )
    };
    let drain_err = async {
        let mut v = Vec::new();
        err_r.read_to_end(&mut v).await.unwrap();
        v
    };
    let (outcome, (total, peak, tail), err) =
        tokio::join!(rt.exec(&db, command, io), count, drain_err);
    assert_eq!(
        outcome,
        ExecOutcome::Exit(0),
        "{}",
        String::from_utf8_lossy(&err)
    );
    assert!(total > 100 << 20, "dump of {total} bytes");
    assert!(tail.contains("PostgreSQL database cluster dump complete"));
    let growth_mib = peak.saturating_sub(before) / 1024;
    assert!(
        growth_mib < 64,
        "memory grew by {growth_mib} MiB while streaming {} MiB",
        total >> 20
    );
    rt.stop(&db).await;
}
