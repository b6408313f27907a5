//! Measurement behind `bench/backup_sandbox.sh` (ignored in normal runs):
//! the plugin's `backup --components data` vs `kubectl exec -i pod --
//! pg_dumpall > file` vs a local `pg_dumpall > file`, on the in-process
//! sandbox with real PostgreSQL. Every method runs once to warm the caches,
//! then `KLEIDIA_BENCH_ROUNDS` times in turn; the table reports medians.
//! Prints a Markdown table; nothing here is asserted on time.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use support::{Cluster, kubectl, workspace};

const POD: &str = "kleidia-data-postgres-cluster-0";

/// One timed run: wall seconds, CPU seconds (user + system) and peak RSS of
/// the measured process, from `/usr/bin/time -v`.
#[derive(Clone, Copy, Debug)]
struct Run {
    wall: f64,
    cpu: f64,
    rss_kib: u64,
}

fn timed(cmd: Command, stdout: Stdio, scratch: &Path) -> Run {
    let report = scratch.join("time.txt");
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let mut timed = Command::new("/usr/bin/time");
    timed
        .arg("-v")
        .arg("-o")
        .arg(&report)
        .arg(&program)
        .args(&args);
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    let t = Instant::now();
    let st = timed
        .stdout(stdout)
        .status()
        .expect("/usr/bin/time runs the command");
    let wall = t.elapsed().as_secs_f64();
    assert!(st.success(), "{program:?} {args:?} failed: {st}");
    let text = std::fs::read_to_string(&report).unwrap();
    let field = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix(name)
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap_or_else(|| panic!("/usr/bin/time printed no '{name}'"))
    };
    Run {
        wall,
        cpu: field("User time (seconds):") + field("System time (seconds):"),
        rss_kib: field("Maximum resident set size (kbytes):") as u64,
    }
}

fn median(runs: &[Run], f: impl Fn(&Run) -> f64) -> f64 {
    let mut v: Vec<f64> = runs.iter().map(f).collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[test]
#[ignore = "benchmark: run through bench/backup_sandbox.sh"]
fn bench_backup_through_the_sandbox() {
    let env_num = |k: &str, d: u64| -> u64 {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let size_mb = env_num("KLEIDIA_BENCH_MB", 32);
    let rounds = env_num("KLEIDIA_BENCH_ROUNDS", 3).max(1) as usize;
    let plugin =
        std::env::var("KLEIDIA_BENCH_PLUGIN").expect("KLEIDIA_BENCH_PLUGIN: the plugin binary");
    let c = Cluster::start();
    c.helm_install("kleidia", "kleidia-data", "1.0.0");
    let kc = c.kubeconfig().to_owned();
    let rows = size_mb * 1024 * 1024 / 300;
    let fill = kubectl(
        &kc,
        &[
            "exec",
            "-n",
            "kleidia",
            POD,
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
    let scratch = tmp.path();

    let env = kubectl(
        &kc,
        &["exec", "-n", "kleidia", POD, "-c", "postgres", "--", "env"],
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
    let (pghost, pgport) = (get("PGHOST"), get("PGPORT"));

    let ours = |i: usize| {
        let mut cmd = Command::new(&plugin);
        cmd.args(["-n", "kleidia", "backup", "--components", "data", "--dir"])
            .arg(scratch.join(format!("b{i}")))
            .env("KUBECONFIG", &kc);
        let run = timed(cmd, Stdio::null(), scratch);
        std::fs::remove_dir_all(scratch.join(format!("b{i}"))).unwrap();
        run
    };
    let via_kubectl = || {
        let mut cmd = Command::new(workspace().join(".venv/bin/kubectl"));
        cmd.arg("--kubeconfig").arg(&kc).args([
            "exec",
            "-i",
            "-n",
            "kleidia",
            POD,
            "-c",
            "postgres",
            "--",
            "pg_dumpall",
            "-U",
            "yubiuser",
        ]);
        let out = std::fs::File::create(scratch.join("kubectl.sql")).unwrap();
        timed(cmd, out.into(), scratch)
    };
    let local = || {
        let mut cmd = Command::new(pgbin.join("pg_dumpall"));
        cmd.args(["-h", &pghost, "-p", &pgport, "-U", "yubiuser"]);
        let out = std::fs::File::create(scratch.join("local.sql")).unwrap();
        timed(cmd, out.into(), scratch)
    };

    // Warm-up: the first dump reads the table from disk into the page cache.
    local();
    let (mut o, mut k, mut l) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..rounds {
        o.push(ours(i));
        k.push(via_kubectl());
        l.push(local());
    }
    let dump = std::fs::metadata(scratch.join("kubectl.sql"))
        .unwrap()
        .len();
    assert_eq!(
        dump,
        std::fs::metadata(scratch.join("local.sql")).unwrap().len(),
        "kubectl exec and the local pg_dumpall wrote dumps of different sizes"
    );

    let mib = dump as f64 / 1048576.0;
    let (ow, kw, lw) = (
        median(&o, |r| r.wall),
        median(&k, |r| r.wall),
        median(&l, |r| r.wall),
    );
    println!(
        "Size parameter {size_mb} MB; dump {mib:.1} MiB; median of {rounds} rounds after a warm-up dump.\n"
    );
    println!(
        "| method | seconds | MiB/s of dump | our throughput vs this | client CPU s |\n|---|---|---|---|---|"
    );
    println!(
        "| kubectl-kleidia backup --components data | {ow:.2} | {:.1} | 1.00 | {:.2} |",
        mib / ow,
        median(&o, |r| r.cpu)
    );
    println!(
        "| kubectl exec -i pod -- pg_dumpall > file | {kw:.2} | {:.1} | {:.2} | {:.2} |",
        mib / kw,
        kw / ow,
        median(&k, |r| r.cpu)
    );
    println!(
        "| local pg_dumpall > file (same server) | {lw:.2} | {:.1} | {:.2} | {:.2} |",
        mib / lw,
        lw / ow,
        median(&l, |r| r.cpu)
    );
    println!(
        "\nThrough the same API server, plain `kubectl exec` reaches {:.2}x of the local dump's throughput.",
        lw / kw
    );
    let rss = o.iter().map(|r| r.rss_kib).max().unwrap();
    println!(
        "\nPeak RSS of kubectl-kleidia: {} MiB (/usr/bin/time -v, highest of the rounds).",
        rss / 1024
    );
}
