//! The `kleidia-sandbox` command: up --detach, env, fault, down.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

use support::Kubectl;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kleidia-sandbox"))
}

/// Runs `kleidia-sandbox args`; fails the test unless it succeeds, showing
/// its stderr.
fn cli_ok(args: &[&str]) -> Output {
    let out = bin().args(args).output().expect("kleidia-sandbox runs");
    assert!(
        out.status.success(),
        "kleidia-sandbox {} failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn up_detached_env_fault_and_down() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("sb");
    let ds = d.to_str().unwrap();
    let out = cli_ok(&["up", "--dir", ds, "--detach", "--empty"]);
    let exports = String::from_utf8(out.stdout).unwrap();
    let kubeconfig = d.canonicalize().unwrap().join("kubeconfig");
    assert!(
        exports.contains(&format!("export KUBECONFIG={}", kubeconfig.display())),
        "{exports}"
    );

    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&kubeconfig), 0o600);
    assert_eq!(mode(&d), 0o700);
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("sandbox.json")).unwrap()).unwrap();
    let pid = state["pid"].as_i64().unwrap();
    let kc = std::fs::read_to_string(&kubeconfig).unwrap();
    assert!(
        !std::fs::read_to_string(d.join("sandbox.json"))
            .unwrap()
            .contains("token")
    );
    let token_line = kc
        .lines()
        .find(|l| l.trim_start().starts_with("token:"))
        .unwrap();
    let token = token_line.split(':').nth(1).unwrap().trim();
    assert!(!exports.contains(token), "the token never reaches stdout");

    let out = cli_ok(&["env", "--dir", ds]);
    assert_eq!(String::from_utf8(out.stdout).unwrap(), exports);

    let out = cli_ok(&[
        "fault",
        "--dir",
        ds,
        "--error-rate",
        "1",
        "--error-code",
        "429",
        "--path",
        "/secrets",
    ]);
    let settings: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(settings["errorCode"], 429);
    cli_ok(&["fault", "--dir", ds, "--clear"]);

    // Authorization rules from a file, then back to allow-all.
    let kubectl = Kubectl::with_kubeconfig(&kubeconfig);
    let can_i = || {
        let out = kubectl.run(&["auth", "can-i", "list", "pods"]);
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let rules = dir.path().join("rules.json");
    std::fs::write(
        &rules,
        r#"[{"allow": false, "verbs": ["list"], "resources": ["pods"]}, {"allow": true}]"#,
    )
    .unwrap();
    cli_ok(&["authz", "--dir", ds, "--rules", rules.to_str().unwrap()]);
    assert_eq!(can_i(), "no");
    cli_ok(&["authz", "--dir", ds]);
    assert_eq!(can_i(), "yes");

    cli_ok(&["down", "--dir", ds]);
    assert!(!d.join("sandbox.json").exists());
    // SAFETY: signal 0 only checks whether the process still exists.
    assert_ne!(
        unsafe { libc::kill(pid as i32, 0) },
        0,
        "the sandbox process is gone"
    );

    let out = bin().args(["env", "--dir", ds]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no sandbox is running"));
}

/// Stops a detached sandbox even when the test fails half-way.
struct Down(String);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = bin().args(["down", "--dir", &self.0]).output();
    }
}

/// Processes whose command line names `needle` (the sandbox folder: the
/// sandbox itself, its PostgreSQL and OpenBao servers, the backend).
fn processes_naming(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push(format!("{pid}: {cmdline}"));
        }
    }
    found
}

/// `up --detach` installs the demo; the shell that evaluates `env` runs the
/// runbook's tools (real kubectl, the sandbox's helm through $HELM_BIN,
/// OpenBao with $BAO_TOKEN) against it: vault status, pg_dumpall restored
/// into an empty PostgreSQL, helm list, rows kept across a pod restart;
/// `down` leaves
/// no process behind; the OpenBao root token never reaches the output or
/// the log.
#[test]
fn up_installs_the_demo_and_env_drives_the_real_tools() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("sb");
    let ds = d.to_str().unwrap().to_string();
    let guard = Down(ds.clone());
    let up = bin()
        .args(["up", "--dir", &ds, "--detach"])
        .output()
        .unwrap();
    let up_err = String::from_utf8_lossy(&up.stderr).to_string();
    assert!(up.status.success(), "up --detach failed: {up_err}");
    let exports = String::from_utf8(up.stdout).unwrap();
    let d = d.canonicalize().unwrap();
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .canonicalize()
        .unwrap();
    let helm = workspace.join("sandbox/helm/helm");
    assert!(
        exports.contains(&format!("export HELM_BIN={}\n", helm.display())),
        "{exports}"
    );
    let token_file = kleidia_sandbox::server::openbao_root_token_file(&d);
    assert!(
        exports.contains(&format!(
            "export BAO_TOKEN=\"$(cat '{}')\"\n",
            token_file.display()
        )),
        "{exports}"
    );
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{} is private", token_file.display());
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_string();
    assert!(!token.is_empty());

    let env = cli_ok(&["env", "--dir", &ds]);
    assert_eq!(String::from_utf8(env.stdout.clone()).unwrap(), exports);

    // One shell: evaluate the exports, then the runbook's commands. Each
    // result goes to its own file so stdout stays free of data.
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let script = r#"
set -euo pipefail
eval "$(cat "$OUT/env")"
test "$(command -v kubectl)" = "$VENV_BIN/kubectl"
test "$(command -v helm)" = "$HELM_BIN"
test -n "$BAO_TOKEN"
kubectl exec -n kleidia kleidia-platform-openbao-0 -- vault status > "$OUT/status"
kubectl exec -n kleidia kleidia-platform-openbao-0 -- env BAO_TOKEN="$BAO_TOKEN" bao token lookup -format=json > "$OUT/lookup"
db=kleidia-data-postgres-cluster-0
kubectl exec -n kleidia "$db" -- psql -U yubiuser -d kleidia -v ON_ERROR_STOP=1 \
  -c "CREATE TABLE restart_check (v text)" -c "INSERT INTO restart_check VALUES ('written-before')" > /dev/null
kubectl exec -i -n kleidia "$db" -- pg_dumpall -U yubiuser > "$OUT/dump.sql" < /dev/null
"$HELM_BIN" list -n kleidia -o json > "$OUT/releases.json"
# The dump restores into an empty PostgreSQL.
kubectl run restore-pg -n kleidia --image=postgres:15 --restart=Never \
  --env=POSTGRES_PASSWORD=restore-only > /dev/null
kubectl wait -n kleidia --for=condition=Ready pod/restore-pg --timeout=120s > /dev/null
kubectl exec -i -n kleidia restore-pg -- psql -q -U postgres -d postgres -f - < "$OUT/dump.sql" > /dev/null 2> "$OUT/restore.err"
kubectl exec -n kleidia restore-pg -- psql -U postgres -d kleidia -tAc "SELECT v FROM restart_check" > "$OUT/restored"
# Rows written before a pod restart are there after it.
kubectl delete pod -n kleidia "$db" > /dev/null
until kubectl get pod -n kleidia "$db" > /dev/null 2>&1; do sleep 0.2; done
kubectl wait -n kleidia --for=condition=Ready "pod/$db" --timeout=120s > /dev/null
kubectl exec -n kleidia "$db" -- psql -U yubiuser -d kleidia -tAc "SELECT v FROM restart_check" > "$OUT/after-restart"
"#;
    std::fs::write(out_dir.join("env"), &env.stdout).unwrap();
    let run = Command::new("bash")
        .args(["-c", script])
        .env("OUT", &out_dir)
        .env("VENV_BIN", workspace.join(".venv/bin"))
        .env("HOME", dir.path())
        .env_remove("KUBECONFIG")
        .env_remove("BAO_TOKEN")
        .env_remove("HELM_BIN")
        .output()
        .unwrap();
    let run_out = String::from_utf8_lossy(&run.stdout).to_string();
    let run_err = String::from_utf8_lossy(&run.stderr).to_string();
    assert!(run.status.success(), "the runbook shell failed: {run_err}");

    let read = |name: &str| std::fs::read_to_string(out_dir.join(name)).unwrap();
    let status = read("status");
    assert!(
        status.contains("Initialized") && status.contains("true"),
        "{status}"
    );
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Sealed") && l.trim_end().ends_with("false")),
        "{status}"
    );
    let lookup: serde_json::Value = serde_json::from_str(&read("lookup")).unwrap();
    assert!(
        lookup["data"]["policies"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p == "root")),
        "$BAO_TOKEN is the root token"
    );
    let dump = read("dump.sql");
    assert!(dump.contains("PostgreSQL database cluster dump"), "{dump}");
    assert!(dump.contains("CREATE DATABASE kleidia"), "{dump}");
    assert_eq!(
        read("restored").trim(),
        "written-before",
        "the dump restored into an empty PostgreSQL; psql said: {}",
        read("restore.err")
    );
    assert_eq!(
        read("after-restart").trim(),
        "written-before",
        "the row survives the PostgreSQL pod's restart"
    );
    let releases: serde_json::Value = serde_json::from_str(&read("releases.json")).unwrap();
    let mut names: Vec<(String, String)> = releases
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ("kleidia-data".to_string(), "deployed".to_string()),
            ("kleidia-platform".to_string(), "deployed".to_string()),
            ("kleidia-services".to_string(), "deployed".to_string()),
        ]
    );

    let down = cli_ok(&["down", "--dir", &ds]);
    drop(guard);
    // `down` waits for the sandbox; its servers get a moment to exit.
    let needle = d.display().to_string();
    let mut left = processes_naming(&needle);
    for _ in 0..100 {
        if left.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        left = processes_naming(&needle);
    }
    assert!(left.is_empty(), "processes outlived `down`: {left:#?}");

    let log = std::fs::read_to_string(d.join("sandbox.log")).unwrap();
    for (what, text) in [
        ("up stdout", exports.as_str()),
        ("up stderr", up_err.as_str()),
        ("env stderr", &String::from_utf8_lossy(&env.stderr)),
        ("shell stdout", run_out.as_str()),
        ("shell stderr", run_err.as_str()),
        ("down stderr", &String::from_utf8_lossy(&down.stderr)),
        ("sandbox.log", log.as_str()),
    ] {
        assert!(
            !text.contains(&token),
            "the OpenBao root token leaked into {what}"
        );
    }

    // A second `up` in the same folder starts clean: the pods' data of the
    // first run would meet new Secrets (OpenBao sealed with the old key).
    let guard = Down(ds.clone());
    let again = bin()
        .args(["up", "--dir", &ds, "--detach"])
        .output()
        .unwrap();
    let again_log = std::fs::read_to_string(d.join("sandbox.log")).unwrap_or_default();
    assert!(
        again.status.success(),
        "a second up in the same folder failed: {}\nsandbox.log:\n{again_log}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(
        again_log.contains("removing the pod data of the previous run"),
        "{again_log}"
    );
    let token_again = std::fs::read_to_string(&token_file).unwrap();
    assert_ne!(
        token_again.trim(),
        token,
        "the second run's OpenBao was initialised anew"
    );
    cli_ok(&["down", "--dir", &ds]);
    drop(guard);
}
