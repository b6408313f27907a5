//! Real kubectl (`.venv/bin/kubectl`, installed by `scripts/setup`)
//! against the sandbox: discovery, get, apply, auth can-i, delete.

mod support;

use kleidia_sandbox::authz::Rule;
use kleidia_sandbox::server::{Sandbox, SandboxOptions};
use support::Kubectl;

#[test]
fn kubectl_gets_applies_and_checks_permissions() {
    let sb = Sandbox::start(SandboxOptions::default()).unwrap();
    let k = Kubectl::new(&sb);
    let ns = k.ok(&["get", "ns"]);
    let lines: Vec<&str> = ns.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("STATUS"),
        "{ns}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("kleidia ") && l.contains("Active")),
        "{ns}"
    );

    let manifest = sb.data_dir().join("cm.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: demo\n  labels: {app: demo}\ndata:\n  a: \"1\"\n",
    )
    .unwrap();
    let m = manifest.to_str().unwrap();
    assert_eq!(k.ok(&["apply", "-f", m]).trim(), "configmap/demo created");
    assert_eq!(k.ok(&["apply", "-f", m]).trim(), "configmap/demo unchanged");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: demo\n  labels: {app: demo}\ndata:\n  a: \"2\"\n",
    )
    .unwrap();
    assert_eq!(
        k.ok(&["apply", "-f", m]).trim(),
        "configmap/demo configured"
    );
    assert_eq!(
        k.ok(&["get", "configmap", "demo", "-o", "jsonpath={.data.a}"]),
        "2"
    );
    let stored = sb
        .shared()
        .store
        .get(
            &kleidia_sandbox::registry::CONFIGMAPS,
            Some("kleidia"),
            "demo",
        )
        .unwrap();
    assert_eq!(stored["data"]["a"], "2");
    assert_eq!(
        k.ok(&["apply", "--server-side", "-f", m]).trim(),
        "configmap/demo serverside-applied"
    );
    let table = k.ok(&["get", "cm", "-l", "app=demo"]);
    assert!(
        table
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .eq(["NAME", "DATA", "AGE"]),
        "{table}"
    );

    assert_eq!(k.ok(&["auth", "can-i", "list", "pods"]).trim(), "yes");
    let whoami = k.ok(&["auth", "whoami"]);
    assert!(whoami.contains("sandbox-user"), "{whoami}");
    sb.shared()
        .authz
        .set_rules(vec![Rule::deny(&["list"], &["pods"]), Rule::allow_all()]);
    let out = k.run(&["auth", "can-i", "list", "pods"]);
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no");
    let out = k.run(&["get", "pods"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("User \"sandbox-user\" cannot list resource \"pods\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    assert_eq!(
        k.ok(&["delete", "-f", m]).trim(),
        "configmap \"demo\" deleted from kleidia namespace"
    );
    let out = k.run(&["get", "cm", "demo"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("configmaps \"demo\" not found"));
}

#[test]
fn kubectl_with_a_wrong_token_is_refused() {
    let sb = Sandbox::start(SandboxOptions::default()).unwrap();
    let text = std::fs::read_to_string(sb.kubeconfig_path()).unwrap();
    let wrong = text.replace(sb.token(), "not-the-token");
    let path = sb.data_dir().join("wrong-token");
    std::fs::write(&path, wrong).unwrap();
    let out = Kubectl::with_kubeconfig(&path).run(&["get", "ns"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("You must be logged in to the server"), "{err}");
}
