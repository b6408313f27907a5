//! The streaming helpers other commands build on (backup streams
//! `pg_dumpall` through `exec::stream_stdout`; short commands and stdin go
//! through `ExecStream`): against a sandbox pod, output flows as a stream,
//! the exit status and bounded stderr come afterwards, stdin reaches the
//! process, and a missing executable is told apart.

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

/// Reads `r` to its end: byte count and SHA-256.
async fn drain(mut r: impl tokio::io::AsyncRead + Unpin) -> (usize, Vec<u8>) {
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0usize;
    loop {
        let n = r.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        total += n;
        hasher.update(&buf[..n]);
    }
    (total, hasher.finalize().to_vec())
}

#[test]
fn large_output_streams_and_the_exit_status_comes_after() {
    let (c, api) = tools();
    // About 6.9 MB on stdout, a line on stderr, then exit code 3.
    let script = "seq 1 1000000; echo done-on-stderr >&2; exit 3";
    let command = ["sh", "-c", script];
    let expected: String = (1..=1_000_000).map(|i| format!("{i}\n")).collect();
    let expected_digest = sha2::Sha256::digest(expected.as_bytes()).to_vec();
    c.block_on(async {
        let mut exec = ExecStream::start(
            &c.client,
            &api,
            "kleidia",
            "tools-0",
            Some("main"),
            &command,
            false,
        )
        .await
        .unwrap();
        let (bytes, digest) = drain(exec.take_stdout().unwrap()).await;
        let piped = exec.finish().await.unwrap();

        let (stdout, outcome) = exec::stream_stdout(
            &c.client,
            &api,
            "kleidia",
            "tools-0",
            Some("main"),
            &command,
        )
        .await
        .unwrap();
        let (direct_bytes, direct_digest) = drain(stdout).await;
        let direct = outcome.await.unwrap();

        for (path, bytes, digest, outcome) in [
            ("ExecStream", bytes, digest, piped),
            ("stream_stdout", direct_bytes, direct_digest, direct),
        ] {
            assert_eq!(bytes, expected.len(), "{path}");
            assert_eq!(digest, expected_digest, "{path}");
            assert_eq!(outcome.status, ExitStatus::Code(3), "{path}");
            assert_eq!(outcome.stderr.text(), "done-on-stderr", "{path}");
            assert!(outcome.describe().contains("exit code 3"), "{path}");
        }
    });
}

#[test]
fn split_parts_stdin_bounded_stderr_and_missing_executables() {
    let (c, api) = tools();
    c.block_on(async {
        // stream_stdout: the reader and the outcome go separate ways.
        let (mut reader, finished) = exec::stream_stdout(
            &c.client,
            &api,
            "kleidia",
            "tools-0",
            None,
            &["sh", "-c", "echo hello"],
        )
        .await
        .unwrap();
        let mut text = String::new();
        reader.read_to_string(&mut text).await.unwrap();
        assert_eq!(text, "hello\n");
        assert!(finished.await.unwrap().success());

        // Its stderr is bounded too, and a missing executable is told apart.
        let (reader, finished) = exec::stream_stdout(
            &c.client,
            &api,
            "kleidia",
            "tools-0",
            None,
            &["sh", "-c", "seq 1 100000 >&2; echo out"],
        )
        .await
        .unwrap();
        assert_eq!(drain(reader).await.0, 4);
        let outcome = finished.await.unwrap();
        assert!(outcome.success(), "{outcome:?}");
        assert_eq!(outcome.stderr.bytes.len(), STDERR_LIMIT);
        let (reader, finished) = exec::stream_stdout(
            &c.client,
            &api,
            "kleidia",
            "tools-0",
            None,
            &["no-such-tool"],
        )
        .await
        .unwrap();
        drain(reader).await;
        let outcome = finished.await.unwrap();
        assert!(outcome.not_found(), "{outcome:?}");

        // An outcome asked for before the output was read says so.
        let (reader, finished) = exec::stream_stdout(
            &c.client,
            &api,
            "kleidia",
            "tools-0",
            None,
            &["seq", "1", "9"],
        )
        .await
        .unwrap();
        drop(reader);
        let err = finished.await.unwrap_err();
        assert!(err.to_string().contains("not read to its end"), "{err}");

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
