//! The restore test runs a bundle's dump, which may have been altered:
//! psql meta-commands and `COPY ... PROGRAM` are refused before psql sees
//! them, statement errors fail the test, and the throwaway server and psql
//! run as an unprivileged user with a cleared environment, on a private
//! Unix socket only.

mod backup_support;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use backup_support::*;
use kleidia::backup::crypto::Encryption;
use kleidia::backup::local_postgres::{
    PostgresBinaries, RESTORE_USER, SUPERUSER_PREFIX, ThrowawayPostgres,
};
use kleidia::backup::restore::{RestoreError, restore_test};
use kleidia::backup::verify::{RestoreOutcome, VerifyOptions, VerifyReport, verify_bundle};

/// A folder anyone may write to: a command the restore test let through
/// would succeed in it, whichever user it ran as.
fn open_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    chmod(dir.path(), 0o777);
    dir
}

fn verify_with_restore(bundle: &Path) -> VerifyReport {
    verify_bundle(
        bundle,
        &VerifyOptions {
            restore_test: true,
            ..Default::default()
        },
    )
    .expect("verify runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dump_with_a_shell_meta_command_fails_verify_and_runs_nothing() {
    let open = open_folder();
    let planted = open.path().join("planted");
    let dump = dump_text(&format!(
        "SET standard_conforming_strings = on;\nCREATE TABLE public.t (a int);\n\\! touch {}\n",
        planted.display()
    ));
    let dir = tempfile::tempdir().unwrap();
    let bundle = bundle_with_dump(dir.path(), &dump, None).await;

    let report = verify_with_restore(&bundle);
    assert!(!report.ok);
    let failures = report.failures().join("\n");
    assert!(
        failures.contains("postgres.sql.zst: dump-safe: line 7: psql meta-command \\!"),
        "{failures}"
    );
    assert!(
        matches!(&report.restore_test, Some(RestoreOutcome::Failed { error }) if error.contains("line 7")),
        "{:?}",
        report.restore_test
    );
    assert!(!planted.exists(), "the dump's shell command ran");

    // The restore itself refuses the line too, before psql reads it.
    let err = restore_test(None, &mut dump.as_bytes()).unwrap_err();
    assert!(
        matches!(&err, RestoreError::Refused(r) if r.line == 7),
        "{err}"
    );
    assert!(!planted.exists(), "the dump's shell command ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_to_a_program_is_refused() {
    let open = open_folder();
    let planted = open.path().join("planted");
    let dump = dump_text(&format!(
        "CREATE TABLE public.t (a int);\nCOPY public.t TO PROGRAM 'touch {}';\n",
        planted.display()
    ));
    let dir = tempfile::tempdir().unwrap();
    let bundle = bundle_with_dump(dir.path(), &dump, None).await;
    let report = verify_with_restore(&bundle);
    assert!(!report.ok);
    let failures = report.failures().join("\n");
    assert!(
        failures.contains("dump-safe: line 6: COPY ... TO PROGRAM"),
        "{failures}"
    );
    let err = restore_test(None, &mut dump.as_bytes()).unwrap_err();
    assert!(
        matches!(&err, RestoreError::Refused(r) if r.line == 6),
        "{err}"
    );
    assert!(!planted.exists(), "the dump's COPY PROGRAM ran");

    // Reading or writing a server-side file is refused the same way.
    let dump = dump_text("COPY public.t FROM '/etc/passwd';\n");
    let err = restore_test(None, &mut dump.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("'<file>'"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_statement_fails_the_restore_test_naming_it() {
    let dump = dump_text(
        "CREATE TABLE public.t (a int);\nINSERT INTO public.t VALUES (1);\nINSERT INTO public.t VALUES ('secret-value');\nCREATE TABLE public.after (b int);\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let bundle = bundle_with_dump(dir.path(), &dump, None).await;
    let report = verify_with_restore(&bundle);
    assert!(!report.ok, "a dump with a failing statement passed");
    let Some(RestoreOutcome::Failed { error }) = &report.restore_test else {
        panic!("{:?}", report.restore_test)
    };
    assert!(error.contains("line 7: ERROR:"), "{error}");
    assert!(error.contains("invalid input syntax"), "{error}");
    // Values from the dump are masked in the message.
    assert!(!error.contains("secret-value"), "{error}");
    // The checks of the bundle itself passed: only the restore failed.
    assert!(
        report.files.iter().all(|f| f.ok()),
        "{:?}",
        report.failures()
    );
}

#[test]
fn the_throwaway_server_runs_unprivileged_on_a_private_socket_only() {
    let pg = ThrowawayPostgres::start().unwrap();
    let other = ThrowawayPostgres::start().unwrap();
    assert!(pg.superuser().starts_with(SUPERUSER_PREFIX));
    assert_ne!(pg.superuser(), other.superuser());
    assert_eq!(pg.query("postgres", "SHOW listen_addresses").unwrap(), "\n");
    assert_eq!(
        pg.query("postgres", "SHOW unix_socket_permissions")
            .unwrap()
            .trim(),
        "0700"
    );
    let socket = std::fs::metadata(pg.socket_dir()).unwrap();
    assert_eq!(socket.mode() & 0o777, 0o700);
    let postmaster = postmaster_pid(pg.data_dir()).expect("the server's pid");
    let server_uid = uid_of_process(postmaster).expect("the server runs");
    if running_as_root() {
        let user = kleidia_restore_uid();
        assert_ne!(server_uid, 0, "PostgreSQL runs as root");
        assert_eq!(server_uid, user);
        assert_eq!(socket.uid(), user);
    } else {
        assert_eq!(
            server_uid,
            kleidia::backup::local_postgres::effective_uid().unwrap()
        );
    }
}

fn kleidia_restore_uid() -> u32 {
    let out = std::process::Command::new("id")
        .args(["-u", RESTORE_USER])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// A folder of `initdb`, `pg_ctl` and `psql` wrappers that record the
/// environment (and uid) they were started with into `records`, then run
/// the real program.
fn recording_wrappers(root: &Path, records: &Path) -> PathBuf {
    let real = PostgresBinaries::find().expect("PostgreSQL is installed");
    let dir = root.join("bin");
    std::fs::create_dir(&dir).unwrap();
    for tool in ["initdb", "pg_ctl", "psql"] {
        let script = format!(
            "#!/bin/sh\ntr '\\0' '\\n' < /proc/$$/environ > {rec}/{tool}.$$.env\nid -u > {rec}/{tool}.$$.uid\nexec {real} \"$@\"\n",
            rec = records.display(),
            real = real.tool(tool).display(),
        );
        let path = dir.join(tool);
        std::fs::write(&path, script).unwrap();
        chmod(&path, 0o755);
    }
    chmod(&dir, 0o755);
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_of_verify_get_a_cleared_environment() {
    let root = tempfile::tempdir().unwrap();
    // Others may enter (not list) it: the restore test's user works below.
    chmod(root.path(), 0o711);
    let records = root.path().join("records");
    std::fs::create_dir(&records).unwrap();
    chmod(&records, 0o777);
    let wrappers = recording_wrappers(root.path(), &records);
    let tmp = root.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    chmod(&tmp, 0o711);
    let bundles = root.path().join("backups");

    let passphrase = "pass-phrase-never-in-a-child";
    let enc = Encryption::with_passphrase(passphrase.to_owned().into());
    let dump = dump_text(
        "SET standard_conforming_strings = on;\nCREATE TABLE public.t (a int);\nCOPY public.t (a) FROM stdin;\n1\n2\n\\.\n",
    );
    let bundle = bundle_with_dump(&bundles, &dump, Some(enc)).await;

    let secrets: BTreeMap<&str, &str> = [
        ("BAO_TOKEN", "s.bao-token-never-in-a-child"),
        ("VAULT_TOKEN", "s.vault-token-never-in-a-child"),
        ("KLEIDIA_TEST_PASSPHRASE", passphrase),
        ("PGPASSWORD", "pg-password-never-in-a-child"),
        ("PGHOST", "/operator/pg/host"),
        ("PGUSER", "operator_pg_user"),
        ("PGDATABASE", "operator_db"),
        ("PGOPTIONS", "-c default_transaction_read_only=on"),
        ("PGDATA", "/operator/pg/data"),
        ("PGSERVICE", "operator-service"),
    ]
    .into();
    let out = assert_cmd::Command::cargo_bin("kubectl-kleidia")
        .unwrap()
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", wrappers.display()))
        .env("HOME", "/nonexistent-home")
        .env("TMPDIR", &tmp)
        .envs(&secrets)
        .args(["backup", "verify", "--restore-test", "-o", "json"])
        .args(["--passphrase-env", "KLEIDIA_TEST_PASSPHRASE"])
        .arg(&bundle)
        .timeout(std::time::Duration::from_secs(300))
        .assert();
    let output = out.get_output();
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}", String::from_utf8_lossy(&output.stderr)));
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["restoreTest"]["status"], "ok", "{report}");

    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for entry in std::fs::read_dir(&records).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".env") else {
            continue;
        };
        let tool = stem.split('.').next().unwrap().to_owned();
        *seen.entry(tool.clone()).or_default() += 1;
        let text = std::fs::read_to_string(entry.path()).unwrap();
        for line in text.lines().filter(|l| !l.is_empty()) {
            let (key, value) = line.split_once('=').unwrap_or((line, ""));
            assert!(
                matches!(
                    key,
                    "PATH" | "TZ" | "HOME" | "LC_ALL" | "LANG" | "PGHOST" | "PGPORT" | "PGUSER"
                ),
                "{tool} got {key} from the operator's environment"
            );
            for (var, secret) in &secrets {
                assert!(
                    !value.contains(secret),
                    "{tool} got the value of {var} (in {key})"
                );
            }
            if key == "PGHOST" {
                assert!(value.starts_with(tmp.to_str().unwrap()), "{value}");
            }
            if key == "PGUSER" {
                assert!(value.starts_with(SUPERUSER_PREFIX), "{value}");
            }
        }
        let uid: u32 = std::fs::read_to_string(records.join(format!("{stem}.uid")))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        if running_as_root() {
            assert_eq!(uid, kleidia_restore_uid(), "{tool} ran as uid {uid}");
        }
    }
    for tool in ["initdb", "pg_ctl", "psql"] {
        assert!(seen.contains_key(tool), "{tool} never ran: {seen:?}");
    }
    // The throwaway server's folder is gone.
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
}
