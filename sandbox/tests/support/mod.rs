//! Shared by the sandbox tests that drive real tools (kubectl from `.venv`,
//! the sandbox's `helm`) or the runtimes directly: where the tools are, how
//! they are run against a sandbox, and how their results are checked.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use kleidia_sandbox::runtime::{ContainerRef, ExecIo, ExecOutcome, ImageRuntime};
use kleidia_sandbox::server::Sandbox;
use serde_json::Value;
use tokio::io::AsyncReadExt;

/// The workspace root (the sandbox crate's parent folder).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the sandbox crate lives in the workspace")
        .to_path_buf()
}

/// Real kubectl, installed by `scripts/setup`.
pub fn kubectl_bin() -> PathBuf {
    let k = workspace().join(".venv/bin/kubectl");
    assert!(
        k.is_file(),
        "real kubectl not found at {}: run scripts/setup in the workspace root first",
        k.display()
    );
    k
}

/// The project's Python with the Helm v4 engine, installed by `scripts/setup`.
pub fn venv_python() -> PathBuf {
    let python = workspace().join(".venv/bin/python");
    assert!(
        python.is_file(),
        "the project's Python environment with the Helm v4 engine is missing at {}: run scripts/setup in the workspace root first",
        python.display()
    );
    python
}

/// The sandbox's `helm` command; it runs on [`venv_python`], which must
/// be there.
pub fn helm_bin() -> PathBuf {
    venv_python();
    workspace().join("sandbox/helm/helm")
}

/// A demo chart: `set` is the chart set (`1.0.0`, `1.1.0-broken`, ...).
pub fn chart(set: &str, name: &str) -> String {
    workspace()
        .join("sandbox/charts")
        .join(set)
        .join(name)
        .display()
        .to_string()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Fails the test unless `out` is a success, naming `what` ran and showing
/// its exit status, stdout and stderr; returns stdout.
pub fn stdout_of(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Real kubectl against one kubeconfig, run in a private work folder (also
/// its HOME, so its caches stay there) with no standard input and no
/// in-cluster settings.
pub struct Kubectl {
    bin: PathBuf,
    kubeconfig: PathBuf,
    work: tempfile::TempDir,
}

impl Kubectl {
    /// kubectl for `sb`'s kubeconfig.
    pub fn new(sb: &Sandbox) -> Kubectl {
        Kubectl::with_kubeconfig(sb.kubeconfig_path())
    }

    pub fn with_kubeconfig(kubeconfig: &Path) -> Kubectl {
        Kubectl {
            bin: kubectl_bin(),
            kubeconfig: kubeconfig.to_path_buf(),
            work: tempfile::tempdir().expect("work dir"),
        }
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.work.path())
            .env_remove("KUBERNETES_SERVICE_HOST")
            .current_dir(self.work.path())
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("kubectl runs")
    }

    /// Runs kubectl, fails the test unless it succeeds; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        stdout_of(&format!("kubectl {}", args.join(" ")), self.run(args))
    }

    /// Like [`Kubectl::ok`], and kubectl printed no warning: it understood
    /// the server's OpenAPI documents.
    pub fn quiet(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "kubectl {} ({}) printed on stderr: {stderr}",
            args.join(" "),
            out.status
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// Runs kubectl expecting failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "kubectl {} unexpectedly succeeded:\nstdout: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// psql in the demo's PostgreSQL pod (`kleidia-data-postgres-cluster-0`
    /// in namespace kleidia) as `yubiuser` on database `kleidia`, with
    /// `args` after those (`-c <sql>`, `-tAc <sql>`); returns stdout.
    pub fn demo_psql(&self, args: &[&str]) -> String {
        let mut all = vec![
            "exec",
            "kleidia-data-postgres-cluster-0",
            "-n",
            "kleidia",
            "--",
            "psql",
            "-U",
            "yubiuser",
            "-d",
            "kleidia",
        ];
        all.extend_from_slice(args);
        self.ok(&all)
    }

    /// `args` with `-o json`, parsed.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&all)).expect("kubectl prints JSON")
    }

    /// Writes `text` to `name` in the work folder; returns its path.
    pub fn file(&self, name: &str, text: &str) -> String {
        let path = self.path(name);
        std::fs::write(&path, text).expect("write manifest");
        path.to_string_lossy().into_owned()
    }

    /// `name` in the work folder (kubectl's current folder).
    pub fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }
}

/// The (manager, operation) of each `managedFields` entry of `obj`.
pub fn managers(obj: &Value) -> Vec<(String, String)> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["manager"].as_str().unwrap_or_default().to_string(),
                e["operation"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The `managedFields` entry of `manager` in `obj`; fails the test when
/// there is none.
pub fn entry<'a>(obj: &'a Value, manager: &str) -> &'a Value {
    obj["metadata"]["managedFields"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["manager"] == manager))
        .unwrap_or_else(|| panic!("no managedFields entry for {manager} in {obj}"))
}

/// What a command run in a container through [`exec`] gave.
pub struct ExecOutput {
    pub outcome: ExecOutcome,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl ExecOutput {
    /// Fails the test unless the command exited 0, naming `what` and
    /// showing its stderr; returns stdout.
    pub fn ok(self, what: &str) -> String {
        assert_eq!(
            self.outcome,
            ExecOutcome::Exit(0),
            "{what} failed; stderr: {}",
            self.stderr
        );
        String::from_utf8(self.stdout).expect("utf-8 output")
    }
}

/// Runs `cmd` in container `c` of runtime `rt` with `stdin` (none: no
/// standard input) and collects its output.
pub async fn exec(
    rt: &dyn ImageRuntime,
    c: &ContainerRef,
    cmd: &[&str],
    stdin: Option<Vec<u8>>,
) -> ExecOutput {
    let (out_w, mut out_r) = tokio::io::duplex(64 * 1024);
    let (err_w, mut err_r) = tokio::io::duplex(64 * 1024);
    let io = ExecIo {
        stdin: stdin.map(|b| Box::pin(std::io::Cursor::new(b)) as _),
        stdout: Box::pin(out_w),
        stderr: Box::pin(err_w),
        tty: false,
    };
    let command = cmd.iter().map(|s| s.to_string()).collect();
    let read_out = async {
        let mut v = Vec::new();
        out_r.read_to_end(&mut v).await.unwrap();
        v
    };
    let read_err = async {
        let mut v = Vec::new();
        err_r.read_to_end(&mut v).await.unwrap();
        v
    };
    let (outcome, stdout, stderr) = tokio::join!(rt.exec(c, command, io), read_out, read_err);
    ExecOutput {
        outcome,
        stdout,
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// The files of an OpenBao raft snapshot (a gzipped tar), checked: exactly
/// the four files OpenBao writes, and SHA256SUMS matching meta.json and
/// state.bin. `what` names the snapshot in failure messages.
pub fn raft_snapshot_files(snap: &[u8], what: &str) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(snap));
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        files.insert(name, data);
    }
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["SHA256SUMS", "SHA256SUMS.sealed", "meta.json", "state.bin"],
        "the files of {what}"
    );
    let sums = String::from_utf8(files["SHA256SUMS"].clone()).unwrap();
    let mut checked = Vec::new();
    for line in sums.lines() {
        let (sum, name) = line.split_once(char::is_whitespace).unwrap();
        let name = name.trim().trim_start_matches('*');
        assert_eq!(
            sha256_hex(&files[name]),
            sum,
            "checksum of {name} in {what}"
        );
        checked.push(name.to_string());
    }
    checked.sort();
    assert_eq!(
        checked,
        ["meta.json", "state.bin"],
        "SHA256SUMS of {what} covers meta.json and state.bin: {sums}"
    );
    files
}
