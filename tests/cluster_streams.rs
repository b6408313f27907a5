//! The streaming helpers other commands build on (backup streams
//! `pg_dumpall` through `ExecStream`): against a sandbox pod, output flows
//! as a stream, the exit status and bounded stderr come afterwards, stdin
//! reaches the process, and a missing executable is told apart.

mod support;

use kleidia::cluster::ApiEndpoint;
use kleidia::cluster::exec::{self, ExecStream, ExitStatus, STDERR_LIMIT};
use sha2::Digest;
use support::Cluster;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const POD: &str = "apiVersion: apps/v1
kind: StatefulSet
metadata: {name: tools}
spec:
  serviceName: tools
  replicas: 1
  selector: {matchLabels: {app: tools}}
  template:
    metadata: {labels: {app: tools}}
    spec:
      containers:
      - {name: main, image: busybox:1.36}
";

fn tools() -> (Cluster, ApiEndpoint) {
    let c = Cluster::start_with(Default::default());
    c.apply_manifest("kleidia", POD);
    c.wait_for_ready_pods("kleidia", 1);
    let api = ApiEndpoint {
        server: c.sandbox.url().to_string(),
        context: "kleidia-sandbox".into(),
    };
    (c, api)
}

#[test]
fn large_output_streams_and_the_exit_status_comes_after() {
    let (c, api) = tools();
    // About 6.9 MB on stdout, a line on stderr, then exit code 3.
    let script = "seq 1 1000000; echo done-on-stderr >&2; exit 3";
    let (bytes, digest, outcome) = c.block_on(async {
        let mut exec = ExecStream::start(
            &c.client,
            &api,
            "kleidia",
            "tools-0",
            Some("main"),
            &["sh", "-c", script],
            false,
        )
        .await
        .unwrap();
        let mut stdout = exec.take_stdout().unwrap();
        let mut hasher = sha2::Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0usize;
        loop {
            let n = stdout.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            total += n;
            hasher.update(&buf[..n]);
        }
        (total, hasher.finalize(), exec.finish().await.unwrap())
    });
    let expected: String = (1..=1_000_000).map(|i| format!("{i}\n")).collect();
    assert_eq!(bytes, expected.len());
    assert_eq!(digest, sha2::Sha256::digest(expected.as_bytes()));
    assert_eq!(outcome.status, ExitStatus::Code(3));
    assert_eq!(outcome.stderr.text(), "done-on-stderr");
    assert!(outcome.describe().contains("exit code 3"));
}

#[test]
fn split_parts_stdin_bounded_stderr_and_missing_executables() {
    let (c, api) = tools();
    c.block_on(async {
        // into_parts: the reader and the outcome go separate ways.
        let exec = ExecStream::start(
            &c.client,
            &api,
            "kleidia",
            "tools-0",
            None,
            &["sh", "-c", "echo hello"],
            false,
        )
        .await
        .unwrap();
        let (mut reader, finished) = exec.into_parts();
        let mut text = String::new();
        reader.read_to_string(&mut text).await.unwrap();
        assert_eq!(text, "hello\n");
        assert!(finished.await.unwrap().success());

        // stdin reaches the process; shutting it down is end-of-file.
        let mut exec =
            ExecStream::start(&c.client, &api, "kleidia", "tools-0", None, &["cat"], true)
                .await
                .unwrap();
        let mut stdin = exec.take_stdin().unwrap();
        let mut stdout = exec.take_stdout().unwrap();
        let writer = tokio::spawn(async move {
            stdin.write_all(b"through stdin\n").await.unwrap();
            stdin.shutdown().await.unwrap();
        });
        let mut echoed = String::new();
        stdout.read_to_string(&mut echoed).await.unwrap();
        writer.await.unwrap();
        assert_eq!(echoed, "through stdin\n");
        assert!(exec.finish().await.unwrap().success());

        // stderr is kept up to the limit and the rest is counted.
        let out = exec::run(
            &c.client,
            &api,
            "kleidia",
            "tools-0",
            None,
            &["sh", "-c", "seq 1 100000 >&2"],
            1024,
        )
        .await
        .unwrap();
        assert!(out.outcome.success());
        assert_eq!(out.outcome.stderr.bytes.len(), STDERR_LIMIT);
        let all: usize = (1..=100_000).map(|i: u32| i.to_string().len() + 1).sum();
        assert_eq!(out.outcome.stderr.dropped as usize, all - STDERR_LIMIT);

        // A missing executable is not an exit code of the command.
        let out = exec::run(
            &c.client,
            &api,
            "kleidia",
            "tools-0",
            None,
            &["no-such-tool", "--version"],
            1024,
        )
        .await
        .unwrap();
        assert!(out.outcome.not_found(), "{:?}", out.outcome);

        // A pod that does not exist is named.
        let err = exec::run(&c.client, &api, "kleidia", "ghost-0", None, &["true"], 1024)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("kleidia/ghost-0"), "{err}");
    });
}
