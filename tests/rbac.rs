//! docs/rbac.yaml both ways, against one sandbox running the demo with
//! real software and the real Helm 4 CLI: the sandbox's access rules are
//! built from each Role; with `kleidia-operator` every command works (and
//! the API refuses nothing it was asked), with a permission taken away the
//! command that needs it fails naming the verb and the resource, and with
//! `kleidia-auditor` versions and preflight work while nothing that
//! changes the deployment does.

mod support;

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use support::{Cluster, Rule, plugin, real_helm, workspace};

const NS: &str = "kleidia";

#[derive(Debug, Deserialize)]
struct Role {
    kind: String,
    metadata: Metadata,
    rules: Vec<PolicyRule>,
}

#[derive(Debug, Deserialize)]
struct Metadata {
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PolicyRule {
    api_groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
}

fn roles() -> Vec<Role> {
    let text = std::fs::read_to_string(workspace().join("docs/rbac.yaml")).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Role::deserialize(doc).expect("docs/rbac.yaml holds Roles"))
        .collect()
}

fn role(name: &str) -> Role {
    roles()
        .into_iter()
        .find(|r| r.metadata.name == name)
        .unwrap_or_else(|| panic!("docs/rbac.yaml has no Role {name}"))
}

/// The Roles as the sandbox's rules: a Role's in the namespace, a
/// ClusterRole's anywhere, beside what every authenticated user may do on
/// a real cluster (system:basic-user: asking what one may do); nothing
/// else (no rule matches: denied, as RBAC does).
fn sandbox_rules(roles: &[&Role]) -> Vec<Rule> {
    let mut rules: Vec<Rule> = roles
        .iter()
        .flat_map(|role| {
            let namespaces = if role.kind == "ClusterRole" {
                vec![]
            } else {
                vec![NS.to_string()]
            };
            role.rules.iter().map(move |r| Rule {
                allow: true,
                verbs: r.verbs.clone(),
                api_groups: r.api_groups.clone(),
                resources: r.resources.clone(),
                namespaces: namespaces.clone(),
            })
        })
        .collect();
    rules.push(Rule {
        allow: true,
        verbs: vec!["create".into()],
        api_groups: vec![
            "authorization.k8s.io".into(),
            "authentication.k8s.io".into(),
        ],
        resources: vec![
            "selfsubjectaccessreviews".into(),
            "selfsubjectrulesreviews".into(),
            "selfsubjectreviews".into(),
        ],
        namespaces: vec![],
    });
    rules
}

/// The Roles with `verb` on `resource` taken away.
fn without(roles: &[&Role], verb: &str, resource: &str) -> Vec<Rule> {
    let mut rules = vec![Rule::deny(&[verb], &[resource])];
    rules.extend(sandbox_rules(roles));
    rules
}

fn allows(role: &Role, group: &str, resource: &str, verb: &str) -> bool {
    role.rules.iter().any(|r| {
        r.api_groups.iter().any(|g| g == group)
            && r.resources.iter().any(|x| x == resource)
            && r.verbs.iter().any(|v| v == verb)
    })
}

#[test]
fn roles_are_namespaced_and_the_auditor_changes_nothing() {
    let all = roles();
    let names: Vec<&str> = all.iter().map(|r| r.metadata.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "kleidia-operator",
            "kleidia-auditor",
            "kleidia-cluster-read"
        ]
    );
    for r in &all[..2] {
        assert_eq!(r.kind, "Role", "{} must be namespaced", r.metadata.name);
    }
    // The cluster-wide part only reads.
    let cluster_read = &all[2];
    assert_eq!(cluster_read.kind, "ClusterRole");
    for rule in &cluster_read.rules {
        assert!(
            rule.verbs.iter().all(|v| v == "get" || v == "list"),
            "{:?}",
            rule.verbs
        );
    }
    let operator = role("kleidia-operator");
    let auditor = role("kleidia-auditor");
    for rule in &auditor.rules {
        for verb in &rule.verbs {
            for res in &rule.resources {
                if matches!(
                    verb.as_str(),
                    "create" | "update" | "patch" | "delete" | "deletecollection"
                ) {
                    assert_eq!(
                        (verb.as_str(), res.as_str()),
                        ("create", "pods/exec"),
                        "the auditor may not {verb} {res}"
                    );
                }
                for group in &rule.api_groups {
                    assert!(
                        allows(&operator, group, res, verb),
                        "the operator lacks {verb} {res} ({group}) that the auditor has"
                    );
                }
            }
        }
    }
}

fn charts(set: &str) -> String {
    workspace()
        .join("sandbox/charts")
        .join(set)
        .display()
        .to_string()
}

/// The plugin against the sandbox with the real Helm 4 as HELM_BIN and
/// OpenBao's root token as BAO_TOKEN.
fn kleidia(c: &Cluster, helm: &Path, home: &Path, token: &str) -> assert_cmd::Command {
    let mut cmd = plugin("kubectl-kleidia");
    cmd.env("KUBECONFIG", c.kubeconfig())
        .env("HELM_BIN", helm)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env("BAO_TOKEN", token)
        .timeout(Duration::from_secs(300));
    cmd
}

fn root_token(c: &Cluster) -> String {
    let root = c
        .sandbox
        .shared()
        .container_dir(NS, "kleidia-platform-openbao-0", "openbao")
        .join("root");
    kleidia_sandbox::runtimes::openbao::root_token_at(&root)
        .expect("the sandbox kept the root token")
}

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run(mut cmd: assert_cmd::Command, args: &[&str]) -> Outcome {
    let out = cmd.args(args).output().unwrap();
    Outcome {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn assert_ok(what: &str, o: &Outcome) {
    assert_eq!(
        o.code,
        Some(0),
        "{what} failed:\nstdout:\n{}\nstderr:\n{}",
        o.stdout,
        o.stderr
    );
}

#[test]
fn operator_and_auditor_roles_work_and_each_missing_permission_is_named() {
    let helm = real_helm("helm-v4");
    let c = Cluster::start_demo(&helm, "1.0.0");
    let home = tempfile::tempdir().unwrap();
    let backups = tempfile::tempdir().unwrap();
    let token = root_token(&c);
    let cmd = || kleidia(&c, &helm, home.path(), &token);
    let dir = |name: &str| backups.path().join(name).display().to_string();
    let authz = &c.sandbox.shared().authz;

    // The operator's Role: every command works, and the API refused none of
    // the requests they (and helm) made.
    let operator = role("kleidia-operator");
    let cluster_read = role("kleidia-cluster-read");
    let operator_roles = [&operator, &cluster_read];
    authz.set_rules(sandbox_rules(&operator_roles));
    c.sandbox.reset_requests();
    assert_ok("versions", &run(cmd(), &["versions"]));
    assert_ok("preflight", &run(cmd(), &["preflight"]));
    assert_ok("backup", &run(cmd(), &["backup", "--dir", &dir("b1")]));
    assert_ok("migrate --status", &run(cmd(), &["migrate", "--status"]));
    assert_ok("migrate", &run(cmd(), &["migrate"]));
    assert_ok(
        "upgrade",
        &run(
            cmd(),
            &[
                "upgrade",
                "--charts",
                &charts("1.1.0"),
                "--yes",
                "--backup-dir",
                &dir("b2"),
            ],
        ),
    );
    assert_ok(
        "rollback",
        &run(
            cmd(),
            &["rollback", "services", "--yes", "--backup-dir", &dir("b3")],
        ),
    );
    // Blue-green: a second services release installed beside the first,
    // then uninstalled.
    assert_ok(
        "blue-green upgrade",
        &run(
            cmd(),
            &[
                "upgrade",
                "--strategy",
                "blue-green",
                "--charts",
                &charts("1.1.0"),
                "--yes",
                "--no-backup",
            ],
        ),
    );
    assert_ok(
        "blue-green abort",
        &run(cmd(), &["upgrade", "--abort", "--yes"]),
    );
    let refused = c.sandbox.requests();
    let refused = refused.filter(|r| r.codes.contains_key("403"));
    assert!(
        refused.is_empty(),
        "requests the operator Role does not allow: {refused:?}"
    );

    // Each permission taken away in turn, with the cheapest command that
    // needs it: it fails and names the verb and the resource.
    let versions: &[&str] = &["versions", "--timeout", "30s"];
    let platform_backup: &[&str] = &["backup", "--components", "platform", "--dir", &dir("b4")];
    let upgrade: &[&str] = &[
        "upgrade",
        "--charts",
        &charts("1.1.0"),
        "--yes",
        "--no-backup",
    ];
    for (verb, resource, args) in [
        ("list", "secrets", versions),
        ("get", "secrets", versions),
        ("list", "pods", versions),
        ("create", "pods/exec", versions),
        ("get", "services/proxy", versions),
        ("create", "pods/portforward", platform_backup),
        ("get", "leases", upgrade),
        ("create", "leases", upgrade),
        ("get", "configmaps", &["upgrade", "--history"]),
    ] {
        authz.set_rules(without(&operator_roles, verb, resource));
        let o = run(cmd(), args);
        // upgrade ends with 2 when it is refused before changing anything
        // (docs/upgrade.md), a lock it may not take included.
        let want = if resource == "leases" { 2 } else { 1 };
        assert_eq!(
            o.code,
            Some(want),
            "{args:?} without {verb} {resource}:\n{}",
            o.stderr
        );
        // On stderr, or beside the component it kept from being read.
        let said = format!("{}{}", o.stdout, o.stderr);
        let named = format!("may not {verb} {resource}");
        assert!(
            said.contains(&named) && said.contains("docs/rbac.yaml"),
            "{args:?} without {verb} {resource} does not say so:\n{said}"
        );
    }
    // OpenBao's pod proxy is optional: `bao status` over exec stands in.
    authz.set_rules(without(&operator_roles, "get", "pods/proxy"));
    assert_ok("versions without the pod proxy", &run(cmd(), versions));

    // The auditor's Role: versions and preflight work; backing up,
    // upgrading and rolling back are refused, naming what is missing.
    let auditor = role("kleidia-auditor");
    authz.set_rules(sandbox_rules(&[&auditor, &cluster_read]));
    assert_ok("versions as auditor", &run(cmd(), versions));
    // preflight runs every check; only `permissions` fails: this user
    // could not upgrade, which is what the Role is for.
    let o = run(cmd(), &["preflight", "-o", "json"]);
    let report: serde_json::Value = serde_json::from_str(&o.stdout)
        .unwrap_or_else(|e| panic!("preflight as auditor printed no JSON ({e}):\n{}", o.stderr));
    let failed: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["permissions"], "{report:#}");
    assert_eq!(o.code, Some(1));
    for (args, named) in [
        (platform_backup, "may not create pods/portforward"),
        (upgrade, "may not get leases"),
        (
            &["rollback", "services", "--yes", "--backup-dir", &dir("b5")][..],
            "may not get leases",
        ),
    ] {
        let o = run(cmd(), args);
        let said = format!("{}{}", o.stdout, o.stderr);
        assert!(
            matches!(o.code, Some(1 | 2)),
            "{args:?} as auditor: {:?}\n{said}",
            o.code
        );
        assert!(
            said.contains(named),
            "{args:?} as auditor does not say {named:?}:\n{said}"
        );
    }
}
