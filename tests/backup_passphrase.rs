//! Passphrase encryption read from environment variables, as
//! `--passphrase-env VAR` does. Its own test binary with one test, so that
//! setting the variables cannot race with another test's threads.

use kleidia::backup::crypto::{CryptoError, Decryption, Encryption};
use kleidia::backup::manifest::{FileKind, Manifest};
use kleidia::backup::verify::{DUMP_COMPLETE_MARKER, Status, VerifyOptions, verify_bundle};
use kleidia::backup::writer::{AddOptions, BundleWriter};

#[test]
fn a_passphrase_bundle_opens_only_with_the_right_passphrase() {
    // Before any other thread exists.
    unsafe {
        std::env::set_var("KLEIDIA_TEST_PASS_RIGHT", "correct horse battery staple");
        std::env::set_var("KLEIDIA_TEST_PASS_WRONG", "Tr0ub4dor&3");
        std::env::set_var("KLEIDIA_TEST_PASS_EMPTY", "");
    }
    let err = Encryption::from_options(&[], Some("KLEIDIA_TEST_PASS_EMPTY")).unwrap_err();
    assert!(matches!(err, CryptoError::PassphraseVar { .. }), "{err}");
    assert!(
        err.to_string().contains("KLEIDIA_TEST_PASS_EMPTY is empty"),
        "{err}"
    );
    let err = Encryption::from_options(&[], Some("KLEIDIA_TEST_PASS_UNSET")).unwrap_err();
    assert!(err.to_string().contains("not set"), "{err}");

    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let enc = Encryption::from_options(&[], Some("KLEIDIA_TEST_PASS_RIGHT"))
        .unwrap()
        .unwrap();
    let bundle = rt.block_on(async {
        let mut writer = BundleWriter::create(dir.path(), "kleidia", chrono::Utc::now()).unwrap();
        let content = format!("SELECT 1;\n--\n{DUMP_COMPLETE_MARKER}\n--\n");
        writer
            .add_bytes(
                "postgres.sql.zst.age",
                FileKind::PostgresDump,
                content.as_bytes(),
                AddOptions {
                    compress: true,
                    encrypt: Some(enc.clone()),
                    expect_tail: Some(DUMP_COMPLETE_MARKER.to_owned()),
                    progress: None,
                    validate: false,
                },
            )
            .await
            .unwrap();
        let mut manifest = Manifest::new("kleidia", chrono::Utc::now());
        manifest.encryption = Some(enc.record());
        writer.finish(manifest).unwrap()
    });
    let stored = std::fs::read(bundle.join("postgres.sql.zst.age")).unwrap();
    assert!(stored.starts_with(b"age-encryption.org/v1\n-> scrypt"));

    let right = Decryption::from_options(None, Some("KLEIDIA_TEST_PASS_RIGHT"))
        .unwrap()
        .unwrap();
    let report = verify_bundle(
        &bundle,
        &VerifyOptions {
            decryption: Some(&right),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(report.ok, "{:?}", report.failures());
    assert!(
        report.files[0]
            .checks
            .iter()
            .any(|c| c.name == "dump-complete" && c.status == Status::Ok)
    );

    let wrong = Decryption::from_options(None, Some("KLEIDIA_TEST_PASS_WRONG"))
        .unwrap()
        .unwrap();
    let report = verify_bundle(
        &bundle,
        &VerifyOptions {
            decryption: Some(&wrong),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(!report.ok);
    assert!(
        report.failures()[0].starts_with("postgres.sql.zst.age: decrypt"),
        "{:?}",
        report.failures()
    );
}
