//! Measurement behind `bench/backup_sandbox.sh` (ignored in normal runs):
//! the plugin's `backup --components data` vs `kubectl exec -i pod --
//! pg_dumpall` vs local `pg_dumpall`, on the in-process sandbox with real
//! PostgreSQL. Prints a Markdown table; nothing here is asserted on time.

mod support;

use std::time::Instant;

use support::{Cluster, kubectl, workspace};

#[test]
#[ignore = "benchmark: run through bench/backup_sandbox.sh"]
fn bench_backup_through_the_sandbox() {
    let size_mb: u64 = std::env::var("KLEIDIA_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    let plugin =
        std::env::var("KLEIDIA_BENCH_PLUGIN").expect("KLEIDIA_BENCH_PLUGIN: the plugin binary");
    let c = Cluster::start();
    c.helm_install("kleidia", "kleidia-data", "1.0.0");
    let kc = c.kubeconfig().to_owned();
    let pod = "kleidia-data-postgres-cluster-0";
    let rows = size_mb * 1024 * 1024 / 300;
    let fill = kubectl(
        &kc,
        &[
            "exec",
            "-n",
            "kleidia",
            pod,
            "-c",
            "postgres",
            "--",
            "psql",
            "-q",
            "-U",
            "yubiuser",
            "-d",
            "kleidia",
            "-c",
            &format!(
                "CREATE TABLE bench_fill AS SELECT g AS id, repeat(md5(g::text), 8) AS payload FROM generate_series(1, {rows}) g"
            ),
        ],
    );
    assert!(
        fill.status.success(),
        "{}",
        String::from_utf8_lossy(&fill.stderr)
    );
    let tmp = tempfile::tempdir().unwrap();

    let timing = tmp.path().join("time.txt");
    let t = Instant::now();
    let st = std::process::Command::new("/usr/bin/time")
        .arg("-v")
        .arg("-o")
        .arg(&timing)
        .arg(&plugin)
        .args(["-n", "kleidia", "backup", "--components", "data", "--dir"])
        .arg(tmp.path().join("b"))
        .env("KUBECONFIG", &kc)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("/usr/bin/time runs the plugin");
    let ours = t.elapsed().as_secs_f64();
    assert!(st.success());
    let rss_kib: u64 = std::fs::read_to_string(&timing)
        .unwrap()
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);

    let out_file = std::fs::File::create(tmp.path().join("kubectl.sql")).unwrap();
    let t = Instant::now();
    let st = std::process::Command::new(workspace().join(".venv/bin/kubectl"))
        .arg("--kubeconfig")
        .arg(&kc)
        .args([
            "exec",
            "-i",
            "-n",
            "kleidia",
            pod,
            "-c",
            "postgres",
            "--",
            "pg_dumpall",
            "-U",
            "yubiuser",
        ])
        .stdout(out_file)
        .status()
        .unwrap();
    let kube = t.elapsed().as_secs_f64();
    assert!(st.success());
    let dump = std::fs::metadata(tmp.path().join("kubectl.sql"))
        .unwrap()
        .len();

    let env = kubectl(
        &kc,
        &["exec", "-n", "kleidia", pod, "-c", "postgres", "--", "env"],
    );
    let env = String::from_utf8_lossy(&env.stdout).into_owned();
    let get = |k: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap()
            .to_owned()
    };
    let pgbin = std::fs::read_dir("/usr/lib/postgresql")
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin"))
        .max()
        .unwrap();
    let local_file = std::fs::File::create(tmp.path().join("local.sql")).unwrap();
    let t = Instant::now();
    let st = std::process::Command::new(pgbin.join("pg_dumpall"))
        .args(["-h", &get("PGHOST"), "-p", &get("PGPORT"), "-U", "yubiuser"])
        .stdout(local_file)
        .status()
        .unwrap();
    let local = t.elapsed().as_secs_f64();
    assert!(st.success());

    let mib = |s: f64| dump as f64 / 1048576.0 / s;
    println!(
        "Size parameter {size_mb} MB; dump {:.1} MiB.\n",
        dump as f64 / 1048576.0
    );
    println!("| method | seconds | MiB/s of dump | time vs kubectl exec |\n|---|---|---|---|");
    println!(
        "| kubectl-kleidia backup --components data | {ours:.2} | {:.1} | {:.2} |",
        mib(ours),
        ours / kube
    );
    println!(
        "| kubectl exec -i pod -- pg_dumpall > file | {kube:.2} | {:.1} | 1.00 |",
        mib(kube)
    );
    println!(
        "| local pg_dumpall > file (same server) | {local:.2} | {:.1} | {:.2} |",
        mib(local),
        local / kube
    );
    println!(
        "\nPeak RSS of kubectl-kleidia: {} MiB (/usr/bin/time -v).",
        rss_kib / 1024
    );
}
