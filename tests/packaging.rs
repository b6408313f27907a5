//! The Helm plugin manifest and its scripts, the krew manifest and the RBAC
//! Role: well-formed, and the Helm plugin's hook and launcher really install
//! and run the binary.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_yaml_ng::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(repo().join(path)).unwrap();
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
}

fn executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

/// `<plugin_dir>/<script>` as Helm runs it: `HELM_PLUGIN_DIR` set, and
/// `path` as PATH.
fn plugin_script(plugin_dir: &Path, script: &str, path: &str) -> Command {
    let mut cmd = Command::new(plugin_dir.join(script));
    cmd.env("HELM_PLUGIN_DIR", plugin_dir).env("PATH", path);
    cmd
}

fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A copy of plugins/helm-kleidia outside the checkout, as Helm installs it.
fn installed_copy(dir: &Path) -> PathBuf {
    let dest = dir.join("helm-kleidia");
    std::fs::create_dir_all(&dest).unwrap();
    for f in ["plugin.yaml", "run.sh", "install-binary.sh"] {
        let from = repo().join("plugins/helm-kleidia").join(f);
        std::fs::copy(&from, dest.join(f)).unwrap();
    }
    dest
}

#[test]
fn helm_plugin_manifest_runs_the_launcher_and_hook() {
    let m = yaml("plugins/helm-kleidia/plugin.yaml");
    assert_eq!(m["name"], "kleidia");
    assert_eq!(m["version"].as_str(), Some(env!("CARGO_PKG_VERSION")));
    assert_eq!(m["command"], "$HELM_PLUGIN_DIR/run.sh");
    assert_eq!(m["ignoreFlags"], false);
    assert!(
        m["hooks"]["install"]
            .as_str()
            .unwrap()
            .contains("install-binary.sh")
    );
    assert!(
        m["hooks"]["update"]
            .as_str()
            .unwrap()
            .contains("install-binary.sh")
    );
    for p in m["platformCommand"].as_sequence().unwrap() {
        assert_eq!(p["command"], "$HELM_PLUGIN_DIR/run.sh");
    }
    for f in ["run.sh", "install-binary.sh"] {
        assert!(
            executable(&repo().join("plugins/helm-kleidia").join(f)),
            "{f} is not executable"
        );
    }
}

#[test]
fn install_hook_takes_a_prebuilt_binary_and_the_launcher_runs_it() {
    let dir = tempfile::tempdir().unwrap();
    let plugin_dir = installed_copy(dir.path());
    let built = assert_cmd::cargo::cargo_bin("helm-kleidia");

    let out = plugin_script(&plugin_dir, "install-binary.sh", "/usr/bin:/bin")
        .env("KLEIDIA_BINARY", &built)
        .output()
        .unwrap();
    assert_success(&out);
    assert!(executable(&plugin_dir.join("bin/helm-kleidia")));

    // Helm runs the manifest's command with the plugin's arguments and its
    // environment; the launcher passes both through.
    let out = plugin_script(&plugin_dir, "run.sh", "/usr/bin:/bin")
        .arg("--version")
        .output()
        .unwrap();
    assert_success(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
    let out = plugin_script(&plugin_dir, "run.sh", "/usr/bin:/bin")
        .args(["versions", "--kubeconfig", "/nonexistent/kc"])
        .env("HELM_KUBECONTEXT", "from-helm")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/kc"));
}

#[test]
fn launcher_falls_back_to_path_and_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let plugin_dir = installed_copy(dir.path());
    // helm-kleidia on PATH only.
    let path_dir = dir.path().join("path");
    std::fs::create_dir_all(&path_dir).unwrap();
    std::os::unix::fs::symlink(
        assert_cmd::cargo::cargo_bin("helm-kleidia"),
        path_dir.join("helm-kleidia"),
    )
    .unwrap();
    let out = plugin_script(
        &plugin_dir,
        "run.sh",
        &format!("{}:/usr/bin:/bin", path_dir.display()),
    )
    .arg("--version")
    .output()
    .unwrap();
    assert_success(&out);

    // Nowhere: both scripts fail and say what to do.
    let out = plugin_script(&plugin_dir, "run.sh", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("install-binary.sh"));
    let out = plugin_script(&plugin_dir, "install-binary.sh", "/usr/bin:/bin")
        .env_remove("KLEIDIA_BINARY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("KLEIDIA_BINARY"));
}

#[test]
fn krew_manifest_has_every_platform_with_placeholders() {
    let m = yaml("krew/kleidia.yaml");
    assert_eq!(
        m["apiVersion"],
        "krew.googlecontainertools.github.com/v1alpha2"
    );
    assert_eq!(m["kind"], "Plugin");
    assert_eq!(m["metadata"]["name"], "kleidia");
    let platforms = m["spec"]["platforms"].as_sequence().unwrap();
    let mut seen = Vec::new();
    for p in platforms {
        let os = p["selector"]["matchLabels"]["os"].as_str().unwrap();
        let arch = p["selector"]["matchLabels"]["arch"].as_str().unwrap();
        seen.push(format!("{os}/{arch}"));
        assert_eq!(p["bin"], "kubectl-kleidia");
        let uri = p["uri"].as_str().unwrap();
        assert!(
            uri.starts_with("https://") && uri.contains(os) && uri.contains(arch),
            "{uri}"
        );
        let sha = p["sha256"].as_str().unwrap();
        assert!(sha.starts_with("PLACEHOLDER_SHA256_"), "{sha}");
    }
    assert_eq!(
        seen,
        ["linux/amd64", "linux/arm64", "darwin/amd64", "darwin/arm64"]
    );
}

#[test]
fn rbac_role_grants_what_versions_uses() {
    let m = yaml("docs/rbac.yaml");
    assert_eq!(m["kind"], "Role");
    let rules = m["rules"].as_sequence().unwrap();
    let allows = |resource: &str, verb: &str| {
        rules.iter().any(|r| {
            r["resources"]
                .as_sequence()
                .unwrap()
                .iter()
                .any(|x| x == resource)
                && r["verbs"].as_sequence().unwrap().iter().any(|x| x == verb)
        })
    };
    for (res, verb) in [
        ("secrets", "list"),
        ("secrets", "get"),
        ("configmaps", "list"),
        ("pods", "list"),
        ("services", "get"),
        ("statefulsets", "watch"),
        ("deployments", "watch"),
        ("replicasets", "list"),
        ("jobs", "watch"),
        ("events", "list"),
        ("pods/log", "get"),
        ("pods/exec", "create"),
        ("pods/portforward", "create"),
        ("services/proxy", "get"),
        ("pods/proxy", "get"),
    ] {
        assert!(
            allows(res, verb),
            "docs/rbac.yaml does not allow {verb} {res}"
        );
    }
}
