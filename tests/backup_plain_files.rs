//! verify reads only plain files from a bundle, each checked with
//! `symlink_metadata` first: a symbolic link (to a file or a folder), a
//! FIFO or a device fails verify naming the file, and nothing blocks on a
//! FIFO. Small files read whole have size limits.

mod backup_support;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use backup_support::*;
use kleidia::backup::manifest::{Component, FileKind, Manifest};
use kleidia::backup::verify::{VerifyError, VerifyOptions, VerifyReport, verify_bundle};
use kleidia::backup::writer::AddOptions;

const VALUES: &str = "helm/kleidia-data.values.yaml";

async fn bundle(dir: &Path) -> PathBuf {
    let mut writer = new_writer(dir, "kleidia");
    writer
        .add_bytes(
            "postgres.sql.zst",
            FileKind::PostgresDump,
            dump_text("SELECT 1;").as_bytes(),
            AddOptions {
                compress: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    writer
        .add_bytes(
            VALUES,
            FileKind::HelmValues,
            b"db:\n  user: yubiuser\n",
            AddOptions::default(),
        )
        .await
        .unwrap();
    let mut manifest = Manifest::new("kleidia", chrono::Utc::now());
    manifest.components = vec![Component::Data, Component::Values];
    writer.finish(manifest).unwrap()
}

/// verify on another thread; a verify that blocks (on a FIFO) fails the
/// test instead of hanging it.
fn verify_unblocked(bundle: &Path) -> Result<VerifyReport, VerifyError> {
    let (tx, rx) = mpsc::channel();
    let path = bundle.to_owned();
    std::thread::spawn(move || {
        let _ = tx.send(verify_bundle(&path, &VerifyOptions::default()));
    });
    rx.recv_timeout(Duration::from_secs(120))
        .expect("verify blocked on a file of the bundle")
}

fn mkfifo(path: &Path) {
    let out = std::process::Command::new("mkfifo")
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[tokio::test]
async fn a_symlink_in_a_bundle_fails_verify_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let b = bundle(&tmp.path().join("backups")).await;
    assert!(verify_unblocked(&b).unwrap().ok);

    // The same bytes behind a link: the checksum would match if followed.
    let elsewhere = tmp.path().join("dump-copy");
    std::fs::rename(b.join("postgres.sql.zst"), &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, b.join("postgres.sql.zst")).unwrap();
    let report = verify_unblocked(&b).unwrap();
    assert!(!report.ok);
    let failures = report.failures().join("\n");
    assert!(
        failures.contains("postgres.sql.zst: read: postgres.sql.zst is a symbolic link"),
        "{failures}"
    );

    // A linked folder is refused too, naming the folder.
    let b = bundle(&tmp.path().join("more")).await;
    let helm_elsewhere = tmp.path().join("helm-copy");
    std::fs::rename(b.join("helm"), &helm_elsewhere).unwrap();
    std::os::unix::fs::symlink(&helm_elsewhere, b.join("helm")).unwrap();
    let report = verify_unblocked(&b).unwrap();
    assert!(!report.ok);
    let failures = report.failures().join("\n");
    assert!(
        failures.contains(&format!("{VALUES}: read: helm is a symbolic link")),
        "{failures}"
    );
}

#[tokio::test]
async fn a_fifo_fails_verify_without_hanging() {
    let tmp = tempfile::tempdir().unwrap();
    let b = bundle(&tmp.path().join("backups")).await;
    std::fs::remove_file(b.join(VALUES)).unwrap();
    mkfifo(&b.join(VALUES));
    let report = verify_unblocked(&b).unwrap();
    assert!(!report.ok);
    let failures = report.failures().join("\n");
    assert!(
        failures.contains(&format!("{VALUES}: read: {VALUES} is a named pipe (FIFO)")),
        "{failures}"
    );

    // A FIFO the manifest does not list is a problem, and never opened.
    let b = bundle(&tmp.path().join("stray")).await;
    mkfifo(&b.join("helm/extra"));
    let report = verify_unblocked(&b).unwrap();
    assert!(!report.ok);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("helm/extra") && p.contains("named pipe")),
        "{:?}",
        report.problems
    );

    // A FIFO as the manifest.
    let b = bundle(&tmp.path().join("manifest")).await;
    std::fs::remove_file(b.join("manifest.json")).unwrap();
    mkfifo(&b.join("manifest.json"));
    let err = verify_unblocked(&b).unwrap_err();
    assert!(
        err.to_string().contains("manifest.json is a named pipe"),
        "{err}"
    );
}

#[tokio::test]
async fn an_oversized_manifest_is_refused_unread() {
    let tmp = tempfile::tempdir().unwrap();
    let b = bundle(&tmp.path().join("backups")).await;
    let manifest = std::fs::read_to_string(b.join("manifest.json")).unwrap();
    let padded = format!("{}{}", manifest, " ".repeat(5 << 20));
    std::fs::write(b.join("manifest.json"), padded).unwrap();
    let err = verify_unblocked(&b).unwrap_err();
    assert!(err.to_string().contains("more than"), "{err}");
}
