//! `migrate` interrupted while the migration runs, against a sandbox whose
//! demo the real Helm 4 CLI installed: the migration is held waiting on
//! the backend's own migration lock (a PostgreSQL advisory lock another
//! session takes first). A first SIGINT is answered with a warning and the
//! run goes on to its end; two stop the waiting, exit non-zero and release
//! the upgrade lock.

mod support;

use std::io::{BufRead, BufReader, Lines};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::time::{Duration, Instant};

use support::{Cluster, kubectl, real_helm};

const NS: &str = "kleidia";
const PG_POD: &str = "kleidia-data-postgres-cluster-0";
/// The backend's migration lock (sandbox/src/runtimes/backend.rs).
const MIGRATION_LOCK: u32 = 7411;

fn psql(c: &Cluster, sql: &str) -> String {
    let o = kubectl(
        c.kubeconfig(),
        &[
            "exec", PG_POD, "-n", NS, "--", "psql", "-U", "yubiuser", "-d", "kleidia", "-tAc", sql,
        ],
    );
    assert!(o.status.success(), "psql {sql}: {o:?}");
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn advisory(c: &Cluster, granted: bool) -> u32 {
    psql(
        c,
        &format!(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = {MIGRATION_LOCK} AND granted = {granted}"
        ),
    )
    .parse()
    .unwrap()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Another session takes the migration lock and keeps it.
fn hold_lock(c: &Cluster) -> Child {
    let holder = Command::new(support::workspace().join(".venv/bin/kubectl"))
        .env("KUBECONFIG", c.kubeconfig())
        .args([
            "exec",
            PG_POD,
            "-n",
            NS,
            "--",
            "psql",
            "-U",
            "yubiuser",
            "-d",
            "kleidia",
            "-c",
            &format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"),
            "-c",
            "SELECT pg_sleep(300)",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the lock holder", || advisory(c, true) == 1);
    holder
}

fn release_lock(c: &Cluster, mut holder: Child) {
    psql(
        c,
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND objid = {MIGRATION_LOCK} AND granted"
        ),
    );
    let _ = holder.kill();
    let _ = holder.wait();
}

/// `migrate` started, its stderr read up to the point where it runs in the
/// pod and waits there on the lock.
fn start_migrate(c: &Cluster, home: &std::path::Path) -> (Child, Lines<BufReader<ChildStderr>>) {
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("kubectl-kleidia"))
        .arg("migrate")
        .env("KUBECONFIG", c.kubeconfig())
        .env("HOME", home)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let running = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.starts_with("running "));
    assert!(running.is_some(), "migrate never ran");
    wait_until("migrate waiting on the lock", || advisory(c, false) >= 1);
    (child, lines)
}

fn interrupt(child: &Child) {
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

fn lease_exists(c: &Cluster) -> bool {
    kubectl(
        c.kubeconfig(),
        &["get", "lease", "kleidia-upgrade", "-n", NS],
    )
    .status
    .success()
}

#[test]
fn an_interrupted_migration_is_waited_for_unless_interrupted_twice() {
    let helm = real_helm("helm-v4");
    let c = Cluster::start_demo(&helm, "1.0.0");
    let home = tempfile::tempdir().unwrap();

    // One interrupt: warned, waited for, finished.
    let holder = hold_lock(&c);
    let (mut child, mut lines) = start_migrate(&c, home.path());
    interrupt(&child);
    let warning = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("keeps running"));
    assert!(
        warning
            .as_deref()
            .is_some_and(|w| w.contains("between versions")),
        "{warning:?}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "migrate ended on the first interrupt"
    );
    release_lock(&c, holder);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{rest:?}");
    assert!(stdout.contains("migrations finished"), "{stdout}");
    assert!(!lease_exists(&c), "the lock was not released");

    // Two interrupts: it stops waiting, says so, exits 1, releases the lock.
    let holder = hold_lock(&c);
    let (child, mut lines) = start_migrate(&c, home.path());
    interrupt(&child);
    assert!(
        lines
            .by_ref()
            .map_while(Result::ok)
            .any(|l| l.contains("keeps running"))
    );
    interrupt(&child);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{rest:?}");
    assert!(
        rest.iter()
            .any(|l| l.contains("stopped waiting for the migration")),
        "{rest:?}"
    );
    assert!(!lease_exists(&c), "the lock was not released");
    release_lock(&c, holder);
}
