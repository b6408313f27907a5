//! SIGTERM and SIGINT end `backup verify --restore-test` and `backup
//! create` cleanly, with the real binary: exit status 128 + the signal, no
//! PostgreSQL process and no temporary folder left by verify, no
//! complete-looking (or partial) bundle left by create.

mod backup_support;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use backup_support::*;

/// Longest wait for something the test waits on; reaching it fails the
/// test rather than hanging it.
const PATIENCE: Duration = Duration::from_secs(240);

fn plugin_binary() -> PathBuf {
    assert_cmd::cargo::cargo_bin("kubectl-kleidia")
}

/// Polls `what` until it returns `Some`, for at most [`PATIENCE`].
fn wait_for<T>(description: &str, mut what: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = what() {
            return v;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "gave up waiting for {description}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_exit(child: &mut Child) -> ExitStatus {
    wait_for("the plugin to exit", || child.try_wait().unwrap())
}

fn send(signal: &str, pid: u32) {
    let out = Command::new("kill")
        .args(["-s", signal, &pid.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "kill: {out:?}");
}

/// Every process's pid and argument list.
fn processes() -> Vec<(u32, Vec<String>)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let raw = std::fs::read(e.path().join("cmdline")).ok()?;
            let args = raw
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            Some((pid, args))
        })
        .collect()
}

/// Whether `pid` is a live process (not gone, not a zombie).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(") ").next().and_then(|s| s.chars().next());
            state != Some('Z') && state != Some('X')
        }
        Err(_) => false,
    }
}

/// The pids of a postmaster and its children.
fn server_processes(postmaster: u32) -> Vec<u32> {
    let mut pids = vec![postmaster];
    for (pid, _) in processes() {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid: Option<u32> = stat
            .rsplit(") ")
            .next()
            .and_then(|s| s.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok());
        if ppid == Some(postmaster) {
            pids.push(pid);
        }
    }
    pids
}

/// A folder the restore test's user may enter (not list).
fn enterable_dir(parent: &Path, name: &str) -> PathBuf {
    let p = parent.join(name);
    std::fs::create_dir(&p).unwrap();
    chmod(&p, 0o711);
    p
}

fn verify_is_ended_cleanly_by(signal: &str, code: i32) {
    let root = tempfile::tempdir().unwrap();
    chmod(root.path(), 0o711);
    let tmp = enterable_dir(root.path(), "tmp");
    // A dump whose restore takes as long as the test wants.
    let dump = dump_text("CREATE TABLE public.t (a int);\nSELECT pg_sleep(3600);\n");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bundle = rt.block_on(bundle_with_dump(&root.path().join("backups"), &dump, None));
    let stderr_path = root.path().join("stderr");
    let mut child = Command::new(plugin_binary())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", "/nonexistent-home")
        .env("TMPDIR", &tmp)
        .args(["backup", "verify", "--restore-test"])
        .arg(&bundle)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();

    // psql is feeding the dump (`-f -`) to the server under TMPDIR.
    let tmp_text = tmp.to_str().unwrap().to_owned();
    let psql = wait_for("psql to restore the dump", || {
        processes().into_iter().find_map(|(pid, args)| {
            let is_restore = args.first().is_some_and(|a| a.ends_with("psql"))
                && args.windows(2).any(|w| w[0] == "-f" && w[1] == "-")
                && args.iter().any(|a| a.starts_with(&tmp_text));
            is_restore.then_some(pid)
        })
    });
    let data = wait_for("the server's data folder", || {
        std::fs::read_dir(&tmp)
            .ok()?
            .flatten()
            .map(|e| e.path().join("data"))
            .find(|d| d.join("postmaster.pid").exists())
    });
    let postmaster = wait_for("the server's pid", || postmaster_pid(&data));
    let server = server_processes(postmaster);
    assert!(alive(postmaster) && alive(psql));

    send(signal, child.id());
    let status = wait_exit(&mut child);
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    assert_eq!(status.code(), Some(code), "{stderr}");
    assert!(
        stderr.contains(&format!("interrupted by SIG{signal}")),
        "{stderr}"
    );
    for pid in server.iter().chain([&psql]) {
        assert!(!alive(*pid), "process {pid} of the restore test still runs");
    }
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "left in TMPDIR: {left:?}");
}

#[test]
fn sigterm_mid_restore_test_stops_postgres_and_removes_its_folder() {
    verify_is_ended_cleanly_by("TERM", 143);
}

#[test]
fn sigint_mid_restore_test_exits_130() {
    verify_is_ended_cleanly_by("INT", 130);
}

#[test]
fn sigterm_mid_create_leaves_no_bundle() {
    const NS: &str = "kleidia";
    let c = support::Cluster::start();
    for r in ["kleidia-platform", "kleidia-data", "kleidia-services"] {
        c.helm_install(NS, r, "1.0.0");
    }
    let bao_root = c
        .sandbox
        .shared()
        .container_dir(NS, "kleidia-platform-openbao-0", "openbao")
        .join("root");
    let token = kleidia_sandbox::runtimes::openbao::root_token_at(&bao_root)
        .expect("the sandbox keeps OpenBao's root token");
    // OpenBao's part goes through a port-forward: hold those requests, so
    // the backup is caught between the written dump and OpenBao's snapshot.
    c.sandbox
        .faults()
        .apply(&kleidia_sandbox::faults::FaultRequest {
            latency_ms: Some(3_600_000),
            path_contains: Some("portforward".into()),
            ..Default::default()
        });

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("backups");
    let stderr_path = tmp.path().join("stderr");
    let mut child = Command::new(plugin_binary())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", "/nonexistent-home")
        .env("KUBECONFIG", c.kubeconfig())
        .env("BAO_TOKEN", &token)
        .args(["-n", NS, "backup", "--components", "data,platform", "--dir"])
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let partial = wait_for("the dump in the partial bundle", || {
        std::fs::read_dir(&dir)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().ends_with(".partial"))
                    && p.join("postgres.sql.zst").exists()
            })
    });

    send("TERM", child.id());
    let status = wait_exit(&mut child);
    c.sandbox.faults().clear();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    assert_eq!(status.code(), Some(143), "{stderr}");
    assert!(stderr.contains("interrupted (SIGTERM)"), "{stderr}");
    assert!(stderr.contains("no bundle was created"), "{stderr}");
    assert!(!stderr.contains(&token), "the token reached stderr");
    assert!(!partial.exists(), "{} was left", partial.display());
    assert_no_bundle_folders(&dir);
}
