//! A write that hits a file-size limit (RLIMIT_FSIZE, set with the shell's
//! `ulimit -f` on a child copy of this test) fails with a clear error and
//! leaves no complete-looking bundle.

mod backup_support;

use std::process::Command;

use kleidia::backup::manifest::FileKind;
use kleidia::backup::writer::{AddOptions, BundleWriter};

const ROLE: &str = "KLEIDIA_FSIZE_CHILD_DIR";

#[test]
fn a_file_size_limit_fails_clearly_and_leaves_no_bundle() {
    if let Ok(dir) = std::env::var(ROLE) {
        child(&dir);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // `trap '' XFSZ` makes the write fail with EFBIG instead of killing the
    // process; ignored signals stay ignored across exec.
    let script =
        "trap '' XFSZ; ulimit -f 256; exec \"$0\" --exact \"$1\" --nocapture --test-threads 1";
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(std::env::current_exe().unwrap())
        .arg("a_file_size_limit_fails_clearly_and_leaves_no_bundle")
        .env(ROLE, dir.path())
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("ERROR: ").map(|(_, e)| e))
        .unwrap_or_else(|| panic!("the child printed no error: {stdout}"));
    assert!(line.contains("postgres.sql.zst"), "{line}");
    assert!(line.contains("file size limit"), "{line}");
    backup_support::assert_no_bundle_folders(dir.path());
}

/// Runs under the limit: writes 4 MiB of incompressible bytes, prints the error.
fn child(dir: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut writer =
            BundleWriter::create(std::path::Path::new(dir), "kleidia", chrono::Utc::now()).unwrap();
        let mut data = vec![0u8; 4 * 1024 * 1024];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for b in data.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let err = writer
            .add_bytes(
                "postgres.sql.zst",
                FileKind::PostgresDump,
                &data,
                AddOptions {
                    compress: true,
                    ..Default::default()
                },
            )
            .await
            .expect_err("the limit must stop the write");
        println!("ERROR: {err}");
    });
}
