//! Benchmark of the bundle writer, run by `bench/backup_stream.sh` (it is
//! ignored by `cargo test`: it measures, it does not check behaviour).
//!
//! A throwaway PostgreSQL is filled with `generate_series` rows up to
//! `KLEIDIA_BENCH_MB` megabytes, then, in the same run:
//! 1. `pg_dumpall > file` (the runbook's way, the baseline),
//! 2. `pg_dumpall` -> BundleWriter (zstd + SHA-256),
//! 3. `pg_dumpall` -> BundleWriter (zstd + age + SHA-256),
//!
//! and for each prints time, throughput, ratio to the baseline and the
//! process's peak RSS during that phase (VmHWM, reset between phases).

mod backup_support;

use std::time::Instant;

use backup_support::*;
use kleidia::backup::crypto::Encryption;
use kleidia::backup::manifest::{FileKind, Manifest};
use kleidia::backup::verify::DUMP_COMPLETE_MARKER;
use kleidia::backup::writer::{AddOptions, BundleWriter};

fn reset_peak_rss() {
    // "5" resets VmHWM to the current RSS (Linux >= 4.0).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run bench/backup_stream.sh"]
async fn bench_backup_stream() {
    let mb: u64 = std::env::var("KLEIDIA_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let pg = kleidia::backup::local_postgres::ThrowawayPostgres::start().unwrap();
    run_psql(&pg, "postgres", "CREATE DATABASE kleidia");
    // ~136 bytes per row in the dump: an id, a serial, two hashes, a timestamp.
    let rows = mb * 1024 * 1024 / 136;
    let t = Instant::now();
    run_psql(
        &pg,
        "kleidia",
        &format!(
            "CREATE TABLE events AS SELECT g AS id, 'yk-' || (g % 100000) AS serial,
               md5(g::text) || md5((g * 7)::text) AS payload,
               md5((g * 13)::text) AS note,
               timestamptz '2026-01-01' + g * interval '1 second' AS at
             FROM generate_series(1, {rows}) g"
        ),
    );
    eprintln!("generated {rows} rows in {:.1?}", t.elapsed());

    let tmp = tempfile::tempdir().unwrap();

    // 1. Baseline: pg_dumpall > file.
    reset_peak_rss();
    let plain = tmp.path().join("plain.sql");
    let t = Instant::now();
    let status = pg
        .client("pg_dumpall")
        .stdout(std::fs::File::create(&plain).unwrap())
        .status()
        .unwrap();
    assert!(status.success());
    let base = t.elapsed().as_secs_f64();
    let dump_bytes = std::fs::metadata(&plain).unwrap().len();
    std::fs::remove_file(&plain).unwrap();
    let base_rss = peak_rss_kib();

    let key = age::x25519::Identity::generate();
    let enc = Encryption::to_recipients(&[key.to_public().to_string()]).unwrap();
    let mut results = vec![("pg_dumpall > file", base, dump_bytes, base_rss)];
    for (label, encrypt) in [
        ("writer zstd+sha256", None),
        ("writer zstd+age+sha256", Some(enc)),
    ] {
        let dir = tmp.path().join(label.replace(['+', ' '], "-"));
        reset_peak_rss();
        let t = Instant::now();
        let mut w = BundleWriter::create(&dir, "kleidia", chrono::Utc::now()).unwrap();
        let mut child = pg_dumpall(&pg);
        let stdout = child.stdout.take().unwrap();
        let entry = w
            .add_stream(
                "postgres.sql.zst",
                FileKind::PostgresDump,
                stdout,
                AddOptions {
                    compress: true,
                    encrypt,
                    expect_tail: Some(DUMP_COMPLETE_MARKER.to_owned()),
                    progress: None,
                    validate: false,
                },
            )
            .await
            .unwrap();
        assert!(child.wait().await.unwrap().success());
        let path = w
            .finish(Manifest::new("kleidia", chrono::Utc::now()))
            .unwrap();
        let secs = t.elapsed().as_secs_f64();
        results.push((label, secs, entry.size, peak_rss_kib()));
        std::fs::remove_dir_all(path).unwrap();
    }

    println!();
    println!(
        "dump size {:.1} MiB (KLEIDIA_BENCH_MB={mb}, {rows} rows)",
        dump_bytes as f64 / 1048576.0
    );
    println!(
        "{:<24} {:>9} {:>12} {:>14} {:>12} {:>14}",
        "phase", "seconds", "MiB/s(dump)", "ratio to base", "stored MiB", "peak RSS MiB"
    );
    for (label, secs, stored, rss) in &results {
        println!(
            "{:<24} {:>9.2} {:>12.1} {:>14.2} {:>12.1} {:>14.1}",
            label,
            secs,
            dump_bytes as f64 / 1048576.0 / secs,
            secs / base,
            *stored as f64 / 1048576.0,
            *rss as f64 / 1024.0
        );
    }
}
