//! Schema migrations as the sandbox's Kleidia backend runs them, seen with
//! real kubectl, real psql and real Helm (the sandbox's helm, and the Helm
//! v4 and v3 CLIs): the steps a backend logs, the `schema_migrations`
//! table it keeps in the real PostgreSQL, `/app/kleidia-backend migrate`
//! run by exec (twice: the second run changes nothing), the pre-upgrade
//! hook applying 1.1.0's migration, a 1.0.0 backend starting on the newer
//! schema after a rollback, and a failing migration hook failing
//! `helm upgrade`.

mod support;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use kleidia_sandbox::demo::real_runtimes;
use kleidia_sandbox::runtimes::openbao::OpenBaoStorage;
use kleidia_sandbox::server::{Sandbox, SandboxOptions};
use serde_json::Value;
use support::{Kubectl, chart, helm_bin, stdout_of, workspace};

const NS: &str = "kleidia";
const JOB: &str = "kleidia-services-migrate";

/// A helm command: the sandbox's (`sandbox/helm/helm`) or a real CLI.
#[derive(Clone, Copy, Debug)]
enum Helm {
    Sandbox,
    V4,
    V3,
}

impl Helm {
    fn bin(self) -> PathBuf {
        let path = match self {
            Helm::Sandbox => return helm_bin(),
            Helm::V4 => workspace().join(".venv/helm-v4/helm"),
            Helm::V3 => workspace().join(".venv/helm-v3/helm"),
        };
        assert!(
            path.is_file(),
            "real Helm CLI not found at {}: run scripts/setup in the workspace root first",
            path.display()
        );
        path
    }
}

struct Env {
    sandbox: Sandbox,
    kubectl: Kubectl,
    home: tempfile::TempDir,
}

impl Env {
    /// A sandbox whose pods run real software, with the data release
    /// (PostgreSQL) installed by the sandbox's helm.
    fn with_data_release() -> Env {
        helm_bin();
        support::kubectl_bin();
        let sandbox = Sandbox::start(SandboxOptions {
            runtimes: real_runtimes(OpenBaoStorage::File),
            pod_ready_delay: Duration::from_millis(100),
            ..SandboxOptions::default()
        })
        .expect("sandbox starts");
        let kubectl = Kubectl::new(&sandbox);
        let env = Env {
            sandbox,
            kubectl,
            home: tempfile::tempdir().expect("helm home"),
        };
        env.helm_ok(
            Helm::Sandbox,
            &["install", "kleidia-data", &chart("1.0.0", "kleidia-data")],
        );
        env
    }

    fn helm_cmd(&self, helm: Helm, args: &[&str]) -> Command {
        let mut c = Command::new(helm.bin());
        c.args(args)
            .args(["-n", NS])
            .env("KUBECONFIG", self.sandbox.kubeconfig_path())
            .env("HOME", self.home.path())
            .env_remove("HELM_NAMESPACE")
            .env_remove("HELM_DRIVER");
        if matches!(args.first(), Some(&"install" | &"upgrade" | &"rollback")) {
            c.args(["--wait", "--timeout", "3m"]);
        }
        c
    }

    fn helm(&self, helm: Helm, args: &[&str]) -> Output {
        self.helm_cmd(helm, args).output().expect("helm runs")
    }

    /// Runs helm, failing the test unless it succeeds, with what the
    /// namespace looked like then; returns stdout.
    fn helm_ok(&self, helm: Helm, args: &[&str]) -> String {
        let out = self.helm(helm, args);
        if !out.status.success() {
            panic!(
                "{helm:?} helm {args:?} failed ({}): {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr),
                self.diagnostics()
            );
        }
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// The namespace's workloads, events and backend logs, for failures.
    fn diagnostics(&self) -> String {
        let mut text = String::new();
        for args in [
            &["get", "all", "-n", NS, "-o", "wide"][..],
            &[
                "get",
                "events",
                "-n",
                NS,
                "--sort-by=.metadata.creationTimestamp",
            ][..],
            &[
                "logs",
                "-n",
                NS,
                "-l",
                "app.kubernetes.io/name=backend",
                "--prefix",
                "--tail=30",
            ][..],
        ] {
            let out = self.kubectl.run(args);
            text.push_str(&format!(
                "$ kubectl {}\n{}{}\n",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        text
    }

    fn kubectl(&self, args: &[&str]) -> String {
        self.kubectl.ok(args)
    }

    /// `sql` by psql in the PostgreSQL pod; the unaligned tuples.
    fn psql(&self, sql: &str) -> String {
        self.kubectl.demo_psql(&["-tAc", sql]).trim().to_string()
    }

    fn backend_log(&self) -> String {
        self.kubectl(&["logs", "deployment/kleidia-services-backend", "-n", NS])
    }

    /// `/app/kleidia-backend migrate` by exec in a backend pod, without a
    /// TTY or standard input.
    fn exec_migrate(&self) -> Output {
        self.kubectl.run(&[
            "exec",
            "deployment/kleidia-services-backend",
            "-n",
            NS,
            "--",
            "/app/kleidia-backend",
            "migrate",
        ])
    }

    /// The image of the backend Deployment's container.
    fn backend_image(&self) -> String {
        self.kubectl(&[
            "get",
            "deployment/kleidia-services-backend",
            "-n",
            NS,
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ])
    }

    fn column_exists(&self, table: &str, column: &str) -> bool {
        self.psql(&format!(
            "SELECT count(*) FROM information_schema.columns \
             WHERE table_name = '{table}' AND column_name = '{column}'"
        )) == "1"
    }
}

/// The `migrate:` lines of a log as (level, message), each checked to
/// start with an RFC 3339 UTC timestamp and a level, as the Go backend
/// prints them.
fn migrate_lines(log: &str) -> Vec<(String, String)> {
    log.lines()
        .filter(|l| l.contains(" migrate: "))
        .map(|l| {
            let mut parts = l.splitn(3, ' ');
            let (ts, level, rest) = (
                parts.next().unwrap(),
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
            );
            assert!(
                ts.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(ts).is_ok(),
                "no RFC 3339 UTC timestamp on {l:?}"
            );
            assert!(
                ["INFO", "WARN", "ERROR"].contains(&level),
                "no level on {l:?}"
            );
            let msg = rest
                .strip_prefix("migrate: ")
                .unwrap_or_else(|| panic!("{l:?}"));
            (level.to_string(), msg.to_string())
        })
        .collect()
}

fn messages(lines: &[(String, String)]) -> Vec<&str> {
    lines.iter().map(|(_, m)| m.as_str()).collect()
}

fn applying(lines: &[(String, String)]) -> Vec<&str> {
    lines
        .iter()
        .filter_map(|(_, m)| m.strip_prefix("applying "))
        .collect()
}

#[test]
fn migrations_are_logged_recorded_and_idempotent_across_upgrade_and_rollback() {
    let env = Env::with_data_release();
    env.helm_ok(
        Helm::Sandbox,
        &[
            "install",
            "kleidia-services",
            &chart("1.0.0", "kleidia-services"),
        ],
    );

    // The 1.0.0 backend migrated the empty database at start, one line a
    // step, and recorded each migration.
    let lines = migrate_lines(&env.backend_log());
    assert_eq!(
        applying(&lines),
        [
            "0001_create_users",
            "0002_create_yubikeys",
            "0003_create_sessions",
            "0004_add_users_display_name"
        ],
        "{lines:?}"
    );
    assert_eq!(
        messages(&lines).last(),
        Some(&"migrations finished (schema version 4)"),
        "{lines:?}"
    );
    assert!(lines.iter().all(|(level, _)| level == "INFO"), "{lines:?}");
    let table = env.psql(
        "SELECT string_agg(version || ':' || name, ',' ORDER BY version) FROM schema_migrations \
         WHERE applied_at IS NOT NULL",
    );
    assert_eq!(
        table,
        "1:0001_create_users,2:0002_create_yubikeys,3:0003_create_sessions,\
         4:0004_add_users_display_name"
    );

    // A migration missing from the database: exec'd migrate applies it,
    // streaming its lines to stdout (not to the container log), and a
    // second run has nothing to do and says so.
    env.psql("DELETE FROM schema_migrations WHERE version = 4");
    env.psql("ALTER TABLE users DROP COLUMN display_name");
    let first = env.exec_migrate();
    let first_out = stdout_of("exec migrate (first)", first);
    let lines = migrate_lines(&first_out);
    assert_eq!(
        applying(&lines),
        ["0004_add_users_display_name"],
        "{first_out}"
    );
    assert!(
        messages(&lines).contains(&"migrations finished (schema version 4)"),
        "{first_out}"
    );
    assert!(env.column_exists("users", "display_name"));
    let second_out = stdout_of("exec migrate (second)", env.exec_migrate());
    let lines = migrate_lines(&second_out);
    assert!(applying(&lines).is_empty(), "{second_out}");
    assert!(
        messages(&lines).contains(&"no migrations to apply, schema is up to date (version 4)"),
        "{second_out}"
    );
    assert_eq!(env.psql("SELECT count(*) FROM schema_migrations"), "4");
    let log = env.backend_log();
    assert_eq!(
        log.matches("applying 0004_add_users_display_name").count(),
        1,
        "exec'd output stays out of the container log: {log}"
    );

    // Upgrade to 1.1.0: the pre-upgrade hook applies 0005 before the pods
    // roll, so the 1.1.0 backend finds nothing left to do; the succeeded
    // hook Job is deleted, as its policy says.
    env.helm_ok(
        Helm::Sandbox,
        &[
            "upgrade",
            "kleidia-services",
            &chart("1.1.0", "kleidia-services"),
        ],
    );
    assert!(env.backend_image().ends_with(":1.1.0"));
    let lines = migrate_lines(&env.backend_log());
    assert!(applying(&lines).is_empty(), "{lines:?}");
    assert!(
        messages(&lines).contains(&"no migrations to apply, schema is up to date (version 5)"),
        "{lines:?}"
    );
    assert_eq!(
        env.psql("SELECT name FROM schema_migrations WHERE version = 5"),
        "0005_add_yubikeys_attestation"
    );
    assert!(env.column_exists("yubikeys", "attestation_verified_at"));
    let gone = env.kubectl.fails(&["get", "job", JOB, "-n", NS]);
    assert!(gone.contains("NotFound"), "{gone}");

    // Roll the services back to 1.0.0: the database stays migrated
    // forward; the 1.0.0 backend says so, starts anyway and is healthy.
    env.helm_ok(Helm::Sandbox, &["rollback", "kleidia-services", "1"]);
    assert!(env.backend_image().ends_with(":1.0.0"));
    let lines = migrate_lines(&env.backend_log());
    let warning = lines
        .iter()
        .find(|(level, _)| level == "WARN")
        .unwrap_or_else(|| panic!("no warning about the newer schema: {lines:?}"));
    assert!(
        warning.1.starts_with(
            "database schema version 5 is newer than this build knows (4): \
             0005_add_yubikeys_attestation"
        ),
        "{warning:?}"
    );
    assert_eq!(
        messages(&lines).last(),
        Some(&"migrations finished (schema version 5)")
    );
    let health: Value = serde_json::from_str(&env.kubectl(&[
        "get",
        "--raw",
        "/api/v1/namespaces/kleidia/services/kleidia-services-backend:http/proxy/api/health",
    ]))
    .unwrap();
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["version"], "1.0.0");
    assert_eq!(health["schema_version"], 5);
    let out = stdout_of("exec migrate on 1.0.0", env.exec_migrate());
    let lines = migrate_lines(&out);
    assert!(applying(&lines).is_empty(), "{out}");
    assert!(lines.iter().any(|(level, _)| level == "WARN"), "{out}");
    assert_eq!(env.psql("SELECT max(version) FROM schema_migrations"), "5");
}

/// Upgrades the services release to `1.1.0-migration-fails` with `helm`
/// and checks how it fails: helm's usual error for a failed hook, the
/// Job failed as the Job controller fails it, its pods and logs kept
/// (the hook's delete policy leaves failed hooks), the database and the
/// running backend untouched.
fn failing_hook(env: &Env, helm: Helm) {
    env.helm_ok(
        helm,
        &[
            "install",
            "kleidia-services",
            &chart("1.0.0", "kleidia-services"),
        ],
    );
    let out = env.helm(
        helm,
        &[
            "upgrade",
            "kleidia-services",
            &chart("1.1.0-migration-fails", "kleidia-services"),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{helm:?} upgrade fails");
    let err = String::from_utf8_lossy(&out.stderr);
    let expected = match helm {
        Helm::V3 => format!(
            "Error: UPGRADE FAILED: pre-upgrade hooks failed: 1 error occurred:\n\
             \t* job {JOB} failed: BackoffLimitExceeded"
        ),
        Helm::V4 | Helm::Sandbox => format!(
            "Error: UPGRADE FAILED: pre-upgrade hooks failed: resource Job/{NS}/{JOB} not \
             ready. status: Failed, message: Job Failed. failed: 2/1"
        ),
    };
    assert!(err.contains(&expected), "{helm:?} said: {err}");

    let job = env.kubectl.json(&["get", "job", JOB, "-n", NS]);
    assert_eq!(job["spec"]["backoffLimit"], 1);
    let status = &job["status"];
    assert_eq!(status["failed"], 2, "{status}");
    assert_eq!(status["active"], 0, "{status}");
    assert!(status["completionTime"].is_null(), "{status}");
    let failed = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Failed")
        .unwrap_or_else(|| panic!("no Failed condition: {status}"));
    assert_eq!(failed["status"], "True");
    assert_eq!(failed["reason"], "BackoffLimitExceeded");
    assert_eq!(
        failed["message"],
        "Job has reached the specified backoff limit"
    );

    // This Job's pods (an earlier Job of the same name may still be
    // going away): both attempts failed in the migrate container, after
    // the wait for PostgreSQL succeeded.
    let uid = job["metadata"]["uid"].as_str().unwrap();
    let pods = env.kubectl.json(&[
        "get",
        "pods",
        "-n",
        NS,
        "-l",
        &format!("batch.kubernetes.io/controller-uid={uid}"),
    ]);
    let pods = pods["items"].as_array().unwrap();
    assert_eq!(pods.len(), 2, "{pods:?}");
    for p in pods {
        assert_eq!(p["status"]["phase"], "Failed");
        let migrate = &p["status"]["containerStatuses"][0]["state"]["terminated"];
        assert_eq!(migrate["exitCode"], 1, "{p}");
        assert_eq!(migrate["reason"], "Error");
        let wait = &p["status"]["initContainerStatuses"][0]["state"]["terminated"];
        assert_eq!(wait["exitCode"], 0, "{p}");
    }

    let waited = env.kubectl(&[
        "logs",
        &format!("job/{JOB}"),
        "-n",
        NS,
        "-c",
        "wait-for-postgres",
    ]);
    assert!(
        waited.contains(
            "kleidia-data-postgres-cluster.kleidia.svc.cluster.local:5432 - accepting connections"
        ),
        "{waited}"
    );
    let log = env.kubectl(&["logs", &format!("job/{JOB}"), "-n", NS, "-c", "migrate"]);
    let lines = migrate_lines(&log);
    assert_eq!(applying(&lines), ["0005_add_yubikeys_attestation"], "{log}");
    let (level, error) = lines.last().unwrap();
    assert_eq!(level, "ERROR", "{log}");
    assert!(
        error.starts_with(
            "migration 0005_add_yubikeys_attestation failed at statement 2 \
             (UPDATE yubikeys SET attestation_verified_at = attested_at WHERE attested_at IS NOT NULL): \
             ERROR: column \"attested_at\" does not exist (SQLSTATE 42703)"
        ),
        "{error}"
    );
    assert!(
        log.contains("\nError: migration 0005_add_yubikeys_attestation failed"),
        "{log}"
    );

    // Nothing moved: the migration was rolled back, the pods were never
    // touched, the release is the failed upgrade.
    assert_eq!(env.psql("SELECT max(version) FROM schema_migrations"), "4");
    assert!(!env.column_exists("yubikeys", "attestation_verified_at"));
    assert!(env.backend_image().ends_with(":1.0.0"));
    let status: Value =
        serde_json::from_str(&env.helm_ok(helm, &["status", "kleidia-services", "-o", "json"]))
            .unwrap();
    assert_eq!(status["info"]["status"], "failed", "{helm:?}");
    env.helm_ok(helm, &["uninstall", "kleidia-services"]);
}

#[test]
fn a_failing_migration_hook_fails_helm_upgrade_with_each_helm() {
    let env = Env::with_data_release();
    for helm in [Helm::Sandbox, Helm::V4, Helm::V3] {
        failing_hook(&env, helm);
    }
}
