//! The bundle writer and `verify` against real programs: a throwaway
//! PostgreSQL dumped with the real `pg_dumpall`, restored by the restore test;
//! a real OpenBao's raft snapshot.

mod backup_support;

use std::io::Write;
use std::path::Path;

use backup_support::*;
use kleidia::backup::crypto::{Decryption, Encryption};
use kleidia::backup::manifest::{Component, FileKind, Manifest};
use kleidia::backup::verify::{
    DUMP_COMPLETE_MARKER, RestoreOutcome, Status, VerifyOptions, verify_bundle,
};
use kleidia::backup::writer::{AddOptions, WriterError};

fn dump_options(encrypt: Option<Encryption>) -> AddOptions {
    AddOptions {
        compress: true,
        encrypt,
        expect_tail: Some(DUMP_COMPLETE_MARKER.to_owned()),
        progress: None,
        validate: false,
    }
}

/// Writes a bundle with the real pg_dumpall of `pg`; returns its path.
async fn dump_bundle(
    pg: &kleidia::backup::local_postgres::ThrowawayPostgres,
    dir: &Path,
    encrypt: Option<Encryption>,
) -> std::path::PathBuf {
    let mut writer = new_writer(dir, "kleidia");
    let mut child = pg_dumpall(pg);
    let stdout = child.stdout.take().unwrap();
    let name = if encrypt.is_some() {
        "postgres.sql.zst.age"
    } else {
        "postgres.sql.zst"
    };
    let entry = writer
        .add_stream(
            name,
            FileKind::PostgresDump,
            stdout,
            dump_options(encrypt.clone()),
        )
        .await
        .expect("stream pg_dumpall into the bundle");
    let status = child.wait().await.unwrap();
    assert!(status.success(), "pg_dumpall failed");
    assert!(entry.size > 0);
    let values = b"postgres:\n  password: not-in-clear-anywhere\n";
    writer
        .add_bytes(
            "helm/kleidia-data.values.yaml",
            FileKind::HelmValues,
            values,
            AddOptions {
                compress: false,
                encrypt: encrypt.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut manifest = Manifest::new("kleidia", chrono::Utc::now());
    manifest.components = vec![Component::Data, Component::Values];
    manifest.encryption = encrypt.as_ref().map(Encryption::record);
    writer.finish(manifest).expect("finish the bundle")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_pg_dumpall_bundle_verifies_and_restores_with_the_source_row_counts() {
    let source = postgres_with_data(5000);
    let dir = tempfile::tempdir().unwrap();
    let bundle = dump_bundle(&source, dir.path(), None).await;

    // Complete name, private permissions, nothing else left behind.
    let name = bundle.file_name().unwrap().to_str().unwrap().to_owned();
    assert!(name.starts_with("kleidia-kleidia-"), "{name}");
    assert_eq!(folder_names(dir.path()), vec![name]);
    assert_eq!(mode_of(&bundle), 0o700);
    assert_eq!(mode_of(&bundle.join("postgres.sql.zst")), 0o600);
    assert_eq!(mode_of(&bundle.join("manifest.json")), 0o600);
    assert_eq!(mode_of(&bundle.join("helm")), 0o700);

    let report = verify_bundle(
        &bundle,
        &VerifyOptions {
            restore_test: true,
            ..Default::default()
        },
    )
    .expect("verify runs");
    assert!(report.ok, "verify failed: {:?}", report.failures());
    let dump = report
        .files
        .iter()
        .find(|f| f.kind == FileKind::PostgresDump)
        .unwrap();
    let names: Vec<_> = dump.checks.iter().map(|c| (c.name, c.status)).collect();
    for check in ["sha256", "size", "zstd", "dump-complete", "content-size"] {
        assert!(
            names.contains(&(check, Status::Ok)),
            "{check} not ok in {names:?}"
        );
    }
    let Some(RestoreOutcome::Ok(restored)) = &report.restore_test else {
        panic!("restore test did not run: {:?}", report.restore_test);
    };
    let expected = source_counts(&source, "kleidia");
    assert!(
        expected
            .iter()
            .any(|t| t.table == "devices" && t.rows == 5000)
    );
    let got = &restored
        .database("kleidia")
        .expect("kleidia restored")
        .tables;
    assert_eq!(got, &expected);
    assert_eq!(restored.errors, 0, "{:?}", restored.error_samples);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_byte_fails_verify_naming_the_file() {
    let source = postgres_with_data(2000);
    let dir = tempfile::tempdir().unwrap();
    let bundle = dump_bundle(&source, dir.path(), None).await;
    let path = bundle.join("postgres.sql.zst");
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();

    let report = verify_bundle(&bundle, &VerifyOptions::default()).unwrap();
    assert!(!report.ok);
    let failures = report.failures();
    assert!(
        failures
            .iter()
            .any(|f| f.starts_with("postgres.sql.zst: sha256")),
        "{failures:?}"
    );
    // The damage is also seen when decoding, not only by the checksum.
    assert!(
        failures
            .iter()
            .any(|f| f.starts_with("postgres.sql.zst: dump-complete")
                || f.starts_with("postgres.sql.zst: decode")),
        "{failures:?}"
    );
    // The untouched file still verifies.
    assert!(
        !failures.iter().any(|f| f.starts_with("helm/")),
        "{failures:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_bundle_opens_only_with_the_right_identity() {
    let source = postgres_with_data(500);
    let dir = tempfile::tempdir().unwrap();
    let key = age::x25519::Identity::generate();
    let other = age::x25519::Identity::generate();
    let write_identity = |name: &str, id: &age::x25519::Identity| {
        use age::secrecy::ExposeSecret;
        let p = dir.path().join(name);
        let mut f = std::fs::File::create(&p).unwrap();
        writeln!(f, "{}", id.to_string().expose_secret()).unwrap();
        p
    };
    let right = write_identity("right.key", &key);
    let wrong = write_identity("wrong.key", &other);
    let out = dir.path().join("backups");
    let enc = Encryption::to_recipients(&[key.to_public().to_string()]).unwrap();
    let bundle = dump_bundle(&source, &out, Some(enc)).await;

    // The stored files are age files; the secret in the values is not in clear.
    let stored = std::fs::read(bundle.join("helm/kleidia-data.values.yaml")).unwrap();
    assert!(stored.starts_with(b"age-encryption.org/v1"));
    assert!(!String::from_utf8_lossy(&stored).contains("not-in-clear-anywhere"));
    let manifest_text = std::fs::read_to_string(bundle.join("manifest.json")).unwrap();
    assert!(manifest_text.contains(&key.to_public().to_string()));
    assert!(!manifest_text.contains("contentSha256"));

    // No key: checksums verified, content skipped, not a failure.
    let report = verify_bundle(&bundle, &VerifyOptions::default()).unwrap();
    assert!(report.ok, "{:?}", report.failures());
    assert!(report.files.iter().all(|f| {
        f.checks
            .iter()
            .any(|c| c.name == "content" && c.status == Status::Skipped)
    }));

    // Right key: content checked and the restore works.
    let dec = Decryption::from_identity_file(&right).unwrap();
    let report = verify_bundle(
        &bundle,
        &VerifyOptions {
            decryption: Some(&dec),
            restore_test: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(report.ok, "{:?}", report.failures());
    let Some(RestoreOutcome::Ok(restored)) = &report.restore_test else {
        panic!("{:?}", report.restore_test)
    };
    assert_eq!(
        restored.database("kleidia").unwrap().tables,
        source_counts(&source, "kleidia")
    );

    // Wrong key: every file fails to decrypt, named.
    let dec = Decryption::from_identity_file(&wrong).unwrap();
    let report = verify_bundle(
        &bundle,
        &VerifyOptions {
            decryption: Some(&dec),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(!report.ok);
    let failures = report.failures();
    assert!(
        failures
            .iter()
            .any(|f| f.starts_with("postgres.sql.zst.age: decrypt")),
        "{failures:?}"
    );
}

/// Yields real dump bytes, then fails like a dropped exec stream.
struct FailingReader {
    data: Vec<u8>,
    pos: usize,
    fail_at: usize,
}

impl tokio::io::AsyncRead for FailingReader {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.pos >= self.fail_at {
            return std::task::Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "exec stream closed by the API server",
            )));
        }
        let end = (self.pos + buf.remaining().min(10_000)).min(self.fail_at);
        buf.put_slice(&self.data[self.pos..end]);
        self.pos = end;
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_breaks_mid_way_leaves_no_complete_bundle() {
    let source = postgres_with_data(3000);
    let out = source.client("pg_dumpall").output().unwrap();
    assert!(out.status.success());
    let dump = out.stdout;
    let dir = tempfile::tempdir().unwrap();
    let mut writer = new_writer(dir.path(), "kleidia");
    let partial = writer.partial_path().to_owned();
    assert!(partial.is_dir());
    let fail_at = dump.len() / 2;
    let err = writer
        .add_stream(
            "postgres.sql.zst",
            FileKind::PostgresDump,
            FailingReader {
                data: dump,
                pos: 0,
                fail_at,
            },
            dump_options(None),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, WriterError::Source { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("postgres.sql.zst") && msg.contains("exec stream closed"),
        "{msg}"
    );
    drop(writer);
    assert!(!partial.exists());
    assert_no_bundle_folders(dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dump_cut_short_is_refused_by_its_missing_marker() {
    let source = postgres_with_data(1000);
    let out = source.client("pg_dumpall").output().unwrap();
    let mut dump = out.stdout;
    dump.truncate(dump.len() - 200);
    let dir = tempfile::tempdir().unwrap();
    let mut writer = new_writer(dir.path(), "kleidia");
    let err = writer
        .add_bytes(
            "postgres.sql.zst",
            FileKind::PostgresDump,
            &dump,
            dump_options(None),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, WriterError::Incomplete { .. }), "{err}");
    assert!(err.to_string().contains(DUMP_COMPLETE_MARKER));
    writer.abort().unwrap();
    assert_no_bundle_folders(dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_openbao_raft_snapshot_verifies_and_a_damaged_one_does_not() {
    let bao = ThrowawayOpenBao::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut writer = new_writer(dir.path(), "kleidia");
    let snap = bao.snapshot().await;
    let entry = writer
        .add_stream(
            "openbao.snap",
            FileKind::OpenbaoRaftSnapshot,
            snap,
            AddOptions::default(),
        )
        .await
        .unwrap();
    assert!(entry.size > 0);
    let bundle = writer
        .finish(Manifest::new("kleidia", chrono::Utc::now()))
        .unwrap();
    let report = verify_bundle(&bundle, &VerifyOptions::default()).unwrap();
    assert!(report.ok, "{:?}", report.failures());
    let check = report.files[0]
        .checks
        .iter()
        .find(|c| c.name == "snapshot-sha256sums")
        .unwrap();
    assert_eq!(check.status, Status::Ok);
    assert!(
        check.detail.as_deref().unwrap().contains("state.bin"),
        "{check:?}"
    );

    // Rebuild the snapshot with one byte of state.bin changed but the
    // original SHA256SUMS: the outer checksum matches (new bundle), the
    // snapshot's own does not.
    let original = std::fs::read(bundle.join("openbao.snap")).unwrap();
    let tampered = tamper_state_bin(&original);
    let dir2 = tempfile::tempdir().unwrap();
    let mut writer = new_writer(dir2.path(), "kleidia");
    writer
        .add_bytes(
            "openbao.snap",
            FileKind::OpenbaoRaftSnapshot,
            &tampered,
            AddOptions::default(),
        )
        .await
        .unwrap();
    let bundle2 = writer
        .finish(Manifest::new("kleidia", chrono::Utc::now()))
        .unwrap();
    let report = verify_bundle(&bundle2, &VerifyOptions::default()).unwrap();
    assert!(!report.ok);
    let failures = report.failures();
    assert!(
        failures
            .iter()
            .any(|f| f.starts_with("openbao.snap: snapshot-sha256sums")
                && f.contains("state.bin does not match SHA256SUMS")),
        "{failures:?}"
    );

    // A snapshot cut short in transit fails the backup while it streams.
    let dir3 = tempfile::tempdir().unwrap();
    let mut writer = new_writer(dir3.path(), "kleidia");
    let err = writer
        .add_bytes(
            "openbao.snap",
            FileKind::OpenbaoRaftSnapshot,
            &original[..original.len() / 2],
            AddOptions {
                validate: true,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, WriterError::Invalid { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("openbao.snap arrived damaged or cut short"),
        "{err}"
    );
    drop(writer);
    assert_no_bundle_folders(dir3.path());

    // A token OpenBao refuses is named as such.
    let stream = tokio::net::TcpStream::connect(bao.addr).await.unwrap();
    let err = kleidia::backup::openbao::raft_snapshot(
        stream,
        &bao.addr.to_string(),
        &age::secrecy::SecretString::from("s.not-a-token".to_owned()),
    )
    .await
    .err()
    .expect("a bad token is refused");
    assert!(err.to_string().contains("refused the token"), "{err}");
}

fn tamper_state_bin(snapshot: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(snapshot));
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut header = entry.header().clone();
        let path = entry.path().unwrap().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        if path.to_str() == Some("state.bin") {
            let i = data.len() / 2;
            data[i] ^= 0xff;
        }
        header.set_cksum();
        builder.append(&header, &data[..]).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}
