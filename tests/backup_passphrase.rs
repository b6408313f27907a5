//! Passphrase encryption read from environment variables, as
//! `--passphrase-env VAR` does. Its own test binary with one test, so that
//! setting the variables cannot race with another test's threads.

use kleidia::backup::crypto::{CryptoError, Decryption, Encryption};
use kleidia::backup::manifest::{FileKind, Manifest};
use kleidia::backup::verify::{
    DUMP_COMPLETE_MARKER, Status, VerifyOptions, VerifyReport, verify_bundle,
};
use kleidia::backup::writer::{AddOptions, BundleWriter};

/// The library's verify of `bundle`, decrypting with the passphrase in
/// the environment variable `var`.
fn verify_with_passphrase_in(bundle: &std::path::Path, var: &str) -> VerifyReport {
    let decryption = Decryption::from_options(None, Some(var))
        .unwrap_or_else(|e| panic!("passphrase from {var}: {e}"))
        .unwrap_or_else(|| panic!("{var} gave no decryption"));
    verify_bundle(
        bundle,
        &VerifyOptions {
            decryption: Some(&decryption),
            ..Default::default()
        },
    )
    .unwrap()
}

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

    let report = verify_with_passphrase_in(&bundle, "KLEIDIA_TEST_PASS_RIGHT");
    assert!(report.ok, "{:?}", report.failures());
    assert!(
        report.files[0]
            .checks
            .iter()
            .any(|c| c.name == "dump-complete" && c.status == Status::Ok)
    );

    let report = verify_with_passphrase_in(&bundle, "KLEIDIA_TEST_PASS_WRONG");
    assert!(!report.ok);
    assert!(
        report.failures()[0].starts_with("postgres.sql.zst.age: decrypt"),
        "{:?}",
        report.failures()
    );

    // The command line: the JSON result on stdout, why it failed and what to
    // do on stderr, exit code 1.
    let verify = |args: &[&str]| {
        let out = assert_cmd::Command::cargo_bin("kubectl-kleidia")
            .unwrap()
            .args(["backup", "verify", "-o", "json"])
            .args(args)
            .arg(&bundle)
            .env("HOME", "/nonexistent-home")
            .env_remove("KUBECONFIG")
            .output()
            .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {out:?}"));
        (
            out.status.code(),
            report,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, report, err) = verify(&["--passphrase-env", "KLEIDIA_TEST_PASS_WRONG"]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(report["ok"], false);
    assert!(err.contains("postgres.sql.zst.age: decrypt"), "{err}");
    assert!(
        err.contains("the passphrase in KLEIDIA_TEST_PASS_WRONG does not open the bundle"),
        "{err}"
    );
    assert!(
        !err.contains("Tr0ub4dor"),
        "the passphrase was printed: {err}"
    );

    let id = age::x25519::Identity::generate();
    let key = dir.path().join("key.txt");
    {
        use age::secrecy::ExposeSecret;
        std::fs::write(&key, id.to_string().expose_secret()).unwrap();
    }
    let (code, _, err) = verify(&["--identity", key.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("the bundle is encrypted with a passphrase, not to a recipient"),
        "{err}"
    );

    let (code, report, err) = verify(&["--passphrase-env", "KLEIDIA_TEST_PASS_RIGHT"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(report["ok"], true);
    assert!(err.is_empty(), "{err}");

    // A changed byte: the checksum fails, with the advice not to restore.
    let file = bundle.join("postgres.sql.zst.age");
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&file, bytes).unwrap();
    let (code, report, err) = verify(&[]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(report["ok"], false);
    assert!(err.contains("postgres.sql.zst.age: sha256"), "{err}");
    assert!(err.contains("do not restore from it"), "{err}");
}
