//! Installable the way operators install plugins: the Helm plugin loaded by
//! the real Helm 4 and Helm 3 CLIs and run against the sandbox with Helm's
//! flags and environment; the release archive and the krew manifest that
//! names it; the kubectl plugin found, run and completed by real kubectl.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value as Json;
use serde_yaml_ng::Value;
use sha2::Digest;
use support::{Cluster, ReleaseFixture, real_helm, workspace};

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
}

fn executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

fn plugin_source() -> PathBuf {
    workspace().join("plugins/helm-kleidia")
}

fn built(bin: &str) -> PathBuf {
    assert_cmd::cargo::cargo_bin(bin)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

fn sha256_hex(path: &Path) -> String {
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

/// `<plugin_dir>/<script>` as Helm runs it: `HELM_PLUGIN_DIR` set, and
/// `path` as PATH.
fn plugin_script(plugin_dir: &Path, script: &str, path: &str) -> Command {
    let mut cmd = Command::new(plugin_dir.join(script));
    cmd.env("HELM_PLUGIN_DIR", plugin_dir)
        .env("PATH", path)
        .env_remove("KLEIDIA_BINARY")
        .env_remove("KLEIDIA_RELEASE_URL");
    cmd
}

/// A copy of plugins/helm-kleidia outside the checkout, as Helm installs
/// it from an archive or a repository.
fn plugin_copy(dir: &Path) -> PathBuf {
    let dest = dir.join("helm-kleidia");
    std::fs::create_dir_all(&dest).unwrap();
    for f in [
        "plugin.yaml",
        "run.sh",
        "install-binary.sh",
        "plugin.complete",
    ] {
        std::fs::copy(plugin_source().join(f), dest.join(f)).unwrap();
    }
    dest
}

/// A real Helm CLI with its own plugin, data, config and cache folders, and
/// nothing of the caller's environment that Helm or the plugin reads.
struct Helm {
    bin: PathBuf,
    home: tempfile::TempDir,
}

impl Helm {
    fn new(which: &str) -> Self {
        Helm {
            bin: real_helm(which),
            home: tempfile::tempdir().unwrap(),
        }
    }

    fn cmd(&self) -> Command {
        let h = self.home.path();
        let mut cmd = Command::new(&self.bin);
        for v in [
            "KUBECONFIG",
            "HELM_NAMESPACE",
            "HELM_KUBECONTEXT",
            "HELM_BIN",
            "HELM_DRIVER",
            "HELM_DEBUG",
            "KLEIDIA_BINARY",
            "KLEIDIA_RELEASE_URL",
            "NO_COLOR",
        ] {
            cmd.env_remove(v);
        }
        // Helm 4 installs into $HELM_DATA_HOME/plugins whatever
        // HELM_PLUGINS says; point both at the same folder.
        cmd.env("HOME", h)
            .env("XDG_CONFIG_HOME", h.join("config"))
            .env("HELM_DATA_HOME", h.join("data"))
            .env("HELM_CONFIG_HOME", h.join("config"))
            .env("HELM_CACHE_HOME", h.join("cache"))
            .env("HELM_PLUGINS", h.join("data/plugins"))
            .env("PATH", "/usr/bin:/bin");
        cmd
    }

    fn run(&self, what: &str, cmd: &mut Command) -> Output {
        let out = cmd.output().unwrap();
        assert_success(what, &out);
        out
    }
}

/// The three releases in `ns` at `chart` (secret driver) or, with
/// `configmap`, in ConfigMaps as `HELM_DRIVER=configmap` stores them.
fn store_releases(c: &Cluster, ns: &str, chart: &str, configmap: bool) {
    if ns != "kleidia" {
        c.create_namespace(ns);
    }
    for (release, app) in [
        ("kleidia-platform", "2.4.1"),
        ("kleidia-data", "15.4"),
        ("kleidia-services", "1.0.0"),
    ] {
        let rel = ReleaseFixture::new(release, 1, chart, app, "");
        if configmap {
            c.store_release_configmap(ns, &rel);
        } else {
            c.store_release_secret(ns, &rel);
        }
    }
}

/// The sandbox's kubeconfig with its context renamed `team` (namespace
/// `team-a`) and a current context `broken` that reaches no server: the
/// plugin finds the sandbox only if Helm's context choice reaches it.
fn kubeconfig_with_contexts(c: &Cluster, dir: &Path) -> PathBuf {
    let mut kc: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(c.kubeconfig()).unwrap()).unwrap();
    let cluster = kc["clusters"][0].clone();
    let mut nowhere = cluster.clone();
    nowhere["name"] = "nowhere".into();
    nowhere["cluster"]["server"] = "https://127.0.0.1:1".into();
    kc["clusters"] = Value::Sequence(vec![cluster, nowhere]);
    let ctx = |name: &str, cluster: &str, ns: &str| {
        serde_yaml_ng::from_str::<Value>(&format!(
            "{{name: {name}, context: {{cluster: {cluster}, user: kleidia-sandbox, namespace: {ns}}}}}"
        ))
        .unwrap()
    };
    kc["contexts"] = Value::Sequence(vec![
        ctx("team", "kleidia-sandbox", "team-a"),
        ctx("broken", "nowhere", "kleidia"),
    ]);
    kc["current-context"] = "broken".into();
    let path = dir.join("kubeconfig");
    kleidia_sandbox::kubeconfig::write_private(
        &path,
        serde_yaml_ng::to_string(&kc).unwrap().as_bytes(),
    )
    .unwrap();
    path
}

fn versions_json(out: &Output) -> Json {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "versions did not print JSON ({e}):\nstdout:\n{}\nstderr:\n{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    })
}

/// Where the report says it looked, and the chart version it found there.
fn seen(report: &Json) -> (String, String, String) {
    (
        report["context"].as_str().unwrap_or_default().to_string(),
        report["namespace"].as_str().unwrap_or_default().to_string(),
        report["components"][0]["chartVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

/// `helm plugin install` from the checkout, `helm plugin list`, and
/// `helm kleidia versions` against the sandbox through Helm's flags (before
/// and after the plugin's name) and environment.
fn helm_plugin_from_checkout(which: &str) {
    let c = Cluster::start_with(Default::default());
    store_releases(&c, "team-a", "1.0.0", false);
    store_releases(&c, "team-b", "1.1.0", false);
    store_releases(&c, "team-c", "1.2.0", true);
    let dir = tempfile::tempdir().unwrap();
    let kc = kubeconfig_with_contexts(&c, dir.path());

    let helm = Helm::new(which);
    let out = helm.run(
        "helm plugin install",
        helm.cmd()
            .args(["plugin", "install"])
            .arg(plugin_source())
            .env("KLEIDIA_BINARY", built("helm-kleidia")),
    );
    assert!(
        text(&out.stdout).contains("helm-kleidia installed from"),
        "the install hook did not run: {}",
        text(&out.stdout)
    );
    let out = helm.run("helm plugin list", helm.cmd().args(["plugin", "list"]));
    let list = text(&out.stdout);
    assert!(
        list.lines()
            .any(|l| l.starts_with("kleidia") && l.contains(VERSION)),
        "helm plugin list does not show kleidia {VERSION}:\n{list}"
    );

    let versions = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = helm.cmd();
        cmd.env("KUBECONFIG", &kc).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        // Fixture releases run no servers: exit 1 (unhealthy), still a report.
        assert_eq!(
            out.status.code(),
            Some(1),
            "helm {args:?}: {}",
            text(&out.stderr)
        );
        seen(&versions_json(&out))
    };
    let want = |ctx: &str, ns: &str, chart: &str| (ctx.into(), ns.into(), chart.into());
    let json = ["-o", "json", "--timeout", "20s"];

    // Helm's global flags before the plugin's name...
    let mut args = vec![
        "--kube-context",
        "team",
        "-n",
        "team-b",
        "kleidia",
        "versions",
    ];
    args.extend(json);
    assert_eq!(versions(&args, &[]), want("team", "team-b", "1.1.0"));
    // ...and after it: Helm takes them out and hands them over as HELM_*.
    let mut args = vec!["kleidia", "versions", "--kube-context", "team"];
    args.extend(json);
    assert_eq!(versions(&args, &[]), want("team", "team-a", "1.0.0"));
    // HELM_* variables, and the driver Helm stores releases with.
    let mut args = vec!["kleidia", "versions"];
    args.extend(json);
    assert_eq!(
        versions(
            &args,
            &[
                ("HELM_KUBECONTEXT", "team"),
                ("HELM_NAMESPACE", "team-c"),
                ("HELM_DRIVER", "configmap")
            ]
        ),
        want("team", "team-c", "1.2.0")
    );
    // --kubeconfig after the plugin's name reaches it too.
    let other = tempfile::tempdir().unwrap();
    let mut args = vec!["kleidia", "versions", "--kubeconfig"];
    let kc_str = kc.display().to_string();
    args.push(&kc_str);
    args.extend(["--kube-context", "team"]);
    args.extend(json);
    let out = helm
        .cmd()
        .env("KUBECONFIG", other.path().join("missing"))
        .args(&args)
        .output()
        .unwrap();
    assert_eq!(seen(&versions_json(&out)), want("team", "team-a", "1.0.0"));
    // Without a context choice the current one (no server) is used, and the
    // error names where it went.
    let out = helm
        .cmd()
        .env("KUBECONFIG", &kc)
        .args(["kleidia", "versions"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("127.0.0.1:1"),
        "{}",
        text(&out.stderr)
    );

    // `helm kleidia <TAB>`: Helm's own completion entry point runs the
    // plugin's plugin.complete.
    let complete = |words: &[&str]| {
        let out = helm.run(
            "helm __complete",
            helm.cmd().args(["__complete", "kleidia"]).args(words),
        );
        text(&out.stdout)
            .lines()
            .map(|l| l.split('\t').next().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
    };
    let top = complete(&[""]);
    for s in ["versions", "preflight", "backup", "upgrade", "rollback"] {
        assert!(top.iter().any(|v| v == s), "{s}: {top:?}");
    }
    assert_eq!(top.last().map(String::as_str), Some(":4"));
    assert_eq!(
        complete(&["-n", "team-a", "rollback", "s"]),
        ["services", ":4"]
    );

    // Helm's flags that bypass the kubeconfig context are refused, naming
    // the flag and never the token.
    let out = helm
        .cmd()
        .env("KUBECONFIG", &kc)
        .args([
            "--kube-token",
            "t0ken-never-shown",
            "--kube-context",
            "team",
            "kleidia",
            "versions",
        ])
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--kube-token (HELM_KUBETOKEN)"), "{err}");
    assert!(!err.contains("t0ken-never-shown") && !text(&out.stdout).contains("t0ken"));

    helm.run(
        "helm plugin uninstall",
        helm.cmd().args(["plugin", "uninstall", "kleidia"]),
    );
}

#[test]
fn helm_4_installs_the_plugin_from_the_checkout_and_runs_it() {
    helm_plugin_from_checkout("helm-v4");
}

#[test]
fn helm_3_installs_the_plugin_from_the_checkout_and_runs_it() {
    helm_plugin_from_checkout("helm-v3");
}

#[test]
fn helm_plugin_manifest_is_the_format_both_helms_load() {
    let m = yaml(&plugin_source().join("plugin.yaml"));
    assert_eq!(m["name"], "kleidia");
    assert_eq!(m["version"].as_str(), Some(VERSION));
    // Helm 3 refuses unknown fields such as apiVersion; Helm 4 refuses
    // `command` beside `platformCommand`.
    assert!(m.get("apiVersion").is_none());
    assert!(m.get("platformCommand").is_none());
    assert_eq!(m["command"], "$HELM_PLUGIN_DIR/run.sh");
    assert_eq!(m["ignoreFlags"], false);
    for hook in ["install", "update"] {
        assert!(
            m["hooks"][hook]
                .as_str()
                .unwrap()
                .contains("install-binary.sh")
        );
    }
    for f in ["run.sh", "install-binary.sh"] {
        assert!(
            executable(&plugin_source().join(f)),
            "{f} is not executable"
        );
    }
}

#[test]
fn launcher_falls_back_to_path_and_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let plugin_dir = plugin_copy(dir.path());
    let path_dir = dir.path().join("path");
    std::fs::create_dir_all(&path_dir).unwrap();
    std::os::unix::fs::symlink(built("helm-kleidia"), path_dir.join("helm-kleidia")).unwrap();
    let out = plugin_script(
        &plugin_dir,
        "run.sh",
        &format!("{}:/usr/bin:/bin", path_dir.display()),
    )
    .arg("--version")
    .output()
    .unwrap();
    assert_success("run.sh --version", &out);
    assert!(text(&out.stdout).contains(VERSION));

    // Nowhere: both scripts fail and say what to do.
    let out = plugin_script(&plugin_dir, "run.sh", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("install-binary.sh"));
    let out = plugin_script(&plugin_dir, "install-binary.sh", "/usr/bin:/bin")
        .env(
            "KLEIDIA_RELEASE_URL",
            format!("file://{}", dir.path().join("none").display()),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("KLEIDIA_BINARY") && err.contains("cannot download"),
        "{err}"
    );
    assert!(!plugin_dir.join("bin/helm-kleidia").exists());
}

fn release(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let krew = dir.join("kleidia.yaml");
    let plugin = dir.join("plugin.yaml");
    std::fs::copy(workspace().join("krew/kleidia.yaml"), &krew).unwrap();
    // An older version, to see the script rewrite it.
    let old = std::fs::read_to_string(plugin_source().join("plugin.yaml"))
        .unwrap()
        .replace(&format!("version: \"{VERSION}\""), "version: \"0.0.1\"");
    std::fs::write(&plugin, old).unwrap();
    let dist = dir.join("dist");
    let out = Command::new(workspace().join("scripts/release"))
        .arg("--bin-dir")
        .arg(built("kubectl-kleidia").parent().unwrap())
        .arg("--dist")
        .arg(&dist)
        .arg("--krew-manifest")
        .arg(&krew)
        .arg("--helm-plugin")
        .arg(&plugin)
        .output()
        .unwrap();
    assert_success("scripts/release", &out);
    (dist, krew, plugin)
}

fn host() -> (&'static str, &'static str) {
    let os = match std::env::consts::OS {
        "macos" => "darwin",
        other => other,
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    (os, arch)
}

/// The krew manifest's structure; returns each platform's sha256 by
/// `os/arch`.
fn check_krew_manifest(m: &Value) -> Vec<(String, String)> {
    assert_eq!(
        m["apiVersion"],
        "krew.googlecontainertools.github.com/v1alpha2"
    );
    assert_eq!(m["kind"], "Plugin");
    assert_eq!(m["metadata"]["name"], "kleidia");
    // krew: a `v`-prefixed semantic version.
    let tag = format!("v{VERSION}");
    assert_eq!(m["spec"]["version"].as_str(), Some(tag.as_str()));
    semver::Version::parse(&tag[1..]).expect("the version is semver");
    for field in ["homepage", "shortDescription", "description", "caveats"] {
        assert!(
            m["spec"][field].as_str().is_some_and(|s| !s.is_empty()),
            "{field}"
        );
    }
    let mut out = Vec::new();
    for p in m["spec"]["platforms"].as_sequence().unwrap() {
        let os = p["selector"]["matchLabels"]["os"].as_str().unwrap();
        let arch = p["selector"]["matchLabels"]["arch"].as_str().unwrap();
        let exe = if os == "windows" {
            "kubectl-kleidia.exe"
        } else {
            "kubectl-kleidia"
        };
        assert_eq!(p["bin"].as_str(), Some(exe));
        let uri = p["uri"].as_str().unwrap();
        assert_eq!(
            uri,
            format!(
                "https://github.com/kleidia/kleidia/releases/download/{tag}/kleidia_{tag}_{os}_{arch}.tar.gz"
            )
        );
        let files: Vec<&str> = p["files"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|f| f["from"].as_str().unwrap())
            .collect();
        assert!(
            files.contains(&exe) && files.contains(&"LICENSE"),
            "{files:?}"
        );
        let sha = p["sha256"].as_str().unwrap().to_string();
        let placeholder = format!(
            "PLACEHOLDER_SHA256_{}_{}",
            os.to_uppercase(),
            arch.to_uppercase()
        );
        // krew wants 64 lowercase hex digits.
        let hex = sha.len() == 64 && sha.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        assert!(sha == placeholder || hex, "{os}/{arch}: {sha}");
        out.push((format!("{os}/{arch}"), sha));
    }
    let platforms: Vec<&str> = out.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        platforms,
        [
            "linux/amd64",
            "linux/arm64",
            "darwin/amd64",
            "darwin/arm64",
            "windows/amd64"
        ]
    );
    out
}

#[test]
fn committed_krew_manifest_is_at_the_crate_version() {
    check_krew_manifest(&yaml(&workspace().join("krew/kleidia.yaml")));
}

/// scripts/release writes the host's archive, its checksum into the krew
/// manifest and the version into the Helm plugin; the plugin's hook then
/// installs from that archive (a file:// release folder) with real Helm 4,
/// and refuses one whose checksum does not match.
#[test]
fn release_archive_matches_the_manifests_and_the_hook_installs_it() {
    let dir = tempfile::tempdir().unwrap();
    let (dist, krew, plugin) = release(dir.path());
    let (os, arch) = host();
    let name = format!("kleidia_v{VERSION}_{os}_{arch}.tar.gz");
    let archive = dist.join(&name);
    let sum = sha256_hex(&archive);

    let shas = check_krew_manifest(&yaml(&krew));
    let host_sha = shas
        .iter()
        .find(|(p, _)| *p == format!("{os}/{arch}"))
        .map(|(_, s)| s.clone());
    assert_eq!(host_sha.as_deref(), Some(sum.as_str()));
    assert_eq!(
        std::fs::read_to_string(dist.join(format!("{name}.sha256"))).unwrap(),
        format!("{sum}  {name}\n")
    );
    assert_eq!(yaml(&plugin)["version"].as_str(), Some(VERSION));

    let listing = Command::new("tar")
        .arg("tzf")
        .arg(&archive)
        .output()
        .unwrap();
    let listing = text(&listing.stdout);
    for f in [
        "kubectl-kleidia",
        "kubectl_complete-kleidia",
        "helm-kleidia",
        "LICENSE",
        "man/kubectl-kleidia.1",
        "man/helm-kleidia-upgrade.1",
        "completion/kubectl-kleidia.bash",
        "completion/helm-kleidia.zsh",
        "helm-plugin/plugin.yaml",
        "helm-plugin/install-binary.sh",
        "helm-plugin/run.sh",
        "helm-plugin/plugin.complete",
    ] {
        assert!(listing.lines().any(|l| l == f), "{f} missing:\n{listing}");
    }

    // The archive's Helm plugin, installed by real Helm 4: its hook
    // downloads the archive for this OS/arch and checks it.
    let unpacked = dir.path().join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    let out = Command::new("tar")
        .arg("-xzf")
        .arg(&archive)
        .arg("-C")
        .arg(&unpacked)
        .arg("helm-plugin")
        .output()
        .unwrap();
    assert_success("tar -x helm-plugin", &out);
    let plugin_dir = unpacked.join("helm-plugin");
    assert_eq!(
        yaml(&plugin_dir.join("plugin.yaml"))["version"].as_str(),
        Some(VERSION)
    );
    let helm = Helm::new("helm-v4");
    let url = format!("file://{}", dist.display());
    helm.run(
        "helm plugin install (archive)",
        helm.cmd()
            .args(["plugin", "install"])
            .arg(&plugin_dir)
            .env("KLEIDIA_RELEASE_URL", &url),
    );
    let installed = plugin_dir.join("bin/helm-kleidia");
    assert_eq!(
        sha256_hex(&installed),
        sha256_hex(&built("helm-kleidia")),
        "the hook did not install the archive's helm-kleidia"
    );
    let out = helm.run(
        "helm kleidia --version",
        helm.cmd().args(["kleidia", "--version"]),
    );
    assert!(text(&out.stdout).contains(VERSION));

    // The whole archive unpacked: the hook takes the helm-kleidia beside
    // the plugin folder and downloads nothing.
    let whole = dir.path().join("whole");
    std::fs::create_dir_all(&whole).unwrap();
    let out = Command::new("tar")
        .arg("-xzf")
        .arg(&archive)
        .arg("-C")
        .arg(&whole)
        .output()
        .unwrap();
    assert_success("tar -x", &out);
    let offline = Helm::new("helm-v4");
    let out = offline.run(
        "helm plugin install (unpacked archive)",
        offline
            .cmd()
            .args(["plugin", "install"])
            .arg(whole.join("helm-plugin"))
            .env("KLEIDIA_RELEASE_URL", "file:///nonexistent"),
    );
    assert!(
        text(&out.stdout).contains(&format!(
            "installed from {}",
            whole.join("helm-kleidia").display()
        )),
        "{}",
        text(&out.stdout)
    );
    let out = offline.run(
        "helm kleidia --version (unpacked archive)",
        offline.cmd().args(["kleidia", "--version"]),
    );
    assert!(text(&out.stdout).contains(VERSION));

    // A checksum that does not match: nothing is installed.
    std::fs::remove_file(&installed).unwrap();
    std::fs::write(
        dist.join(format!("{name}.sha256")),
        format!("{}  {name}\n", "0".repeat(64)),
    )
    .unwrap();
    let out = plugin_script(&plugin_dir, "install-binary.sh", "/usr/bin:/bin")
        .env("KLEIDIA_RELEASE_URL", &url)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not installing"),
        "{}",
        text(&out.stderr)
    );
    assert!(!installed.exists());
}

/// A folder holding only the plugin's three binaries, as a PATH entry.
fn plugin_path(dir: &Path) -> String {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for b in [
        "kubectl-kleidia",
        "kubectl_complete-kleidia",
        "helm-kleidia",
    ] {
        std::os::unix::fs::symlink(built(b), bin.join(b)).unwrap();
    }
    format!("{}:/usr/bin:/bin", bin.display())
}

fn real_kubectl(path: &str, kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new(workspace().join(".venv/bin/kubectl"))
        .args(args)
        .env("PATH", path)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", "/nonexistent-home")
        .env_remove("HELM_NAMESPACE")
        .env_remove("HELM_KUBECONTEXT")
        .output()
        .unwrap()
}

/// `kubectl __complete kleidia <words>`: kubectl's own completion entry
/// point, which calls kubectl_complete-kleidia.
fn kubectl_complete(path: &str, kubeconfig: &Path, words: &[&str]) -> (Vec<String>, String) {
    let mut args = vec!["__complete", "kleidia"];
    args.extend(words);
    let out = real_kubectl(path, kubeconfig, &args);
    assert_success("kubectl __complete", &out);
    let stdout = text(&out.stdout);
    let mut lines: Vec<String> = stdout.lines().map(str::to_string).collect();
    let directive = lines.pop().unwrap_or_default();
    let values = lines
        .into_iter()
        .map(|l| l.split('\t').next().unwrap_or_default().to_string())
        .collect();
    (values, directive)
}

#[test]
fn kubectl_lists_runs_and_completes_the_plugin() {
    let c = Cluster::start_with(Default::default());
    store_releases(&c, "kleidia", "1.0.0", false);
    let dir = tempfile::tempdir().unwrap();
    let path = plugin_path(dir.path());

    let out = real_kubectl(&path, c.kubeconfig(), &["plugin", "list"]);
    assert_success("kubectl plugin list", &out);
    assert!(
        text(&out.stdout).contains(&format!("{}/bin/kubectl-kleidia", dir.path().display())),
        "{}",
        text(&out.stdout)
    );

    let out = real_kubectl(
        &path,
        c.kubeconfig(),
        &["kleidia", "versions", "-o", "json", "--timeout", "20s"],
    );
    let report = versions_json(&out);
    assert_eq!(
        seen(&report),
        ("kleidia-sandbox".into(), "kleidia".into(), "1.0.0".into())
    );

    let kc = c.kubeconfig();
    let (subcommands, directive) = kubectl_complete(&path, kc, &[""]);
    for s in [
        "versions",
        "preflight",
        "backup",
        "upgrade",
        "rollback",
        "completion",
    ] {
        assert!(subcommands.iter().any(|v| v == s), "{s}: {subcommands:?}");
    }
    assert_eq!(directive, ":4");
    assert_eq!(kubectl_complete(&path, kc, &["ver"]).0, ["versions"]);
    let (flags, _) = kubectl_complete(&path, kc, &["rollback", "--"]);
    for f in [
        "--allow-data-rollback",
        "--dry-run",
        "--namespace",
        "--kube-context",
    ] {
        assert!(flags.iter().any(|v| v == f), "{f}: {flags:?}");
    }
    let (components, _) = kubectl_complete(&path, kc, &["rollback", "d"]);
    assert_eq!(components, ["data"]);
    let (components, _) = kubectl_complete(&path, kc, &["upgrade", "--only", ""]);
    assert_eq!(components, ["platform", "data", "services"]);

    // Bundle folders in the folder typed so far are offered by name.
    let backups = dir.path().join("backups");
    std::fs::create_dir_all(backups.join("kleidia-kleidia-20261101T090000Z")).unwrap();
    std::fs::create_dir_all(backups.join("not-a-bundle")).unwrap();
    let prefix = format!("{}/", backups.display());
    let (bundles, directive) = kubectl_complete(&path, kc, &["backup", "verify", &prefix]);
    assert_eq!(
        bundles,
        [format!("{prefix}kleidia-kleidia-20261101T090000Z")]
    );
    assert_eq!(directive, ":4");
}
