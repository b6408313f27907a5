//! The `kleidia-sandbox` command: up --detach, env, fault, down.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kleidia-sandbox"))
}

#[test]
fn up_detached_env_fault_and_down() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("sb");
    let ds = d.to_str().unwrap();
    let out = bin()
        .args(["up", "--dir", ds, "--detach", "--empty"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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

    let out = bin().args(["env", "--dir", ds]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), exports);

    let out = bin()
        .args([
            "fault",
            "--dir",
            ds,
            "--error-rate",
            "1",
            "--error-code",
            "429",
            "--path",
            "/secrets",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let settings: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(settings["errorCode"], 429);
    let out = bin()
        .args(["fault", "--dir", ds, "--clear"])
        .output()
        .unwrap();
    assert!(out.status.success());

    // Authorization rules from a file, then back to allow-all.
    let kubectl = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/kubectl");
    assert!(
        kubectl.exists(),
        "real kubectl is missing at {}; run scripts/setup first",
        kubectl.display()
    );
    let can_i = || {
        let out = Command::new(&kubectl)
            .args(["auth", "can-i", "list", "pods"])
            .env("KUBECONFIG", &kubeconfig)
            .env("HOME", dir.path())
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let rules = dir.path().join("rules.json");
    std::fs::write(
        &rules,
        r#"[{"allow": false, "verbs": ["list"], "resources": ["pods"]}, {"allow": true}]"#,
    )
    .unwrap();
    let out = bin()
        .args(["authz", "--dir", ds, "--rules", rules.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(can_i(), "no");
    let out = bin().args(["authz", "--dir", ds]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(can_i(), "yes");

    let out = bin().args(["down", "--dir", ds]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
