//! The default shell runtime runs real utilities rooted in the container's
//! folder: paths map into the root, tar member names come out as a real
//! container's, unknown commands fail like a real runtime, and background
//! processes end with the command.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use kleidia_sandbox::runtime::{ContainerRef, ExecOutcome};
use kleidia_sandbox::runtimes::ShellRuntime;

fn container(root: &Path) -> ContainerRef {
    ContainerRef {
        namespace: "kleidia".into(),
        pod: "web-0".into(),
        container: "app".into(),
        image: "busybox:1.36".into(),
        env: BTreeMap::from([("GREETING".to_string(), "hi".to_string())]),
        ports: vec![],
        command: vec![],
        root: root.join("root"),
        log_path: root.join("app.log"),
    }
}

/// Runs `cmd` with `input` on stdin; returns (outcome, stdout, stderr).
async fn run(
    c: &ContainerRef,
    cmd: &[&str],
    input: Option<Vec<u8>>,
) -> (ExecOutcome, Vec<u8>, Vec<u8>) {
    let out = support::exec(&ShellRuntime::new(), c, cmd, input).await;
    (out.outcome, out.stdout, out.stderr.into_bytes())
}

#[tokio::test]
async fn paths_env_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let c = container(dir.path());
    let (o, _, _) = run(
        &c,
        &["sh", "-c", "mkdir -p /data && echo $GREETING > /data/x"],
        None,
    )
    .await;
    assert_eq!(o, ExecOutcome::Exit(0));
    assert_eq!(
        std::fs::read_to_string(c.root.join("data/x")).unwrap(),
        "hi\n"
    );
    let (o, out, _) = run(&c, &["cat", "/data/x"], None).await;
    assert_eq!((o, out), (ExecOutcome::Exit(0), b"hi\n".to_vec()));
    let (o, out, _) = run(&c, &["ls", "/"], None).await;
    assert_eq!(
        (o, String::from_utf8(out).unwrap()),
        (
            ExecOutcome::Exit(0),
            "data\netc\nhome\nmnt\nopt\nroot\nrun\nsrv\ntmp\nusr\nvar\n".to_string()
        )
    );
    // Home and temporary files stay inside the container.
    let (o, out, _) = run(&c, &["sh", "-c", "cd && echo home > h && mktemp"], None).await;
    assert_eq!(o, ExecOutcome::Exit(0));
    assert_eq!(
        std::fs::read_to_string(c.root.join("root/h")).unwrap(),
        "home\n"
    );
    let tmp = String::from_utf8(out).unwrap();
    assert!(
        Path::new(tmp.trim()).starts_with(c.root.join("tmp")),
        "{tmp}"
    );
    let (o, _, _) = run(&c, &["sh", "-c", "exit 7"], None).await;
    assert_eq!(o, ExecOutcome::Exit(7));
    let (o, _, _) = run(&c, &["test", "-d", "/data"], None).await;
    assert_eq!(o, ExecOutcome::Exit(0));
    let (o, _, _) = run(&c, &["pg_dump", "--version"], None).await;
    match o {
        ExecOutcome::Failed(m) => assert!(
            m.contains("exec: \"pg_dump\": executable file not found in $PATH"),
            "{m}"
        ),
        other => panic!("expected a not-found failure, got {other:?}"),
    }
    // stdin streams through.
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let (o, out, _) = run(&c, &["cat"], Some(data.clone())).await;
    assert_eq!(o, ExecOutcome::Exit(0));
    assert!(
        out == data,
        "cat returned {} bytes, sent {}",
        out.len(),
        data.len()
    );
}

#[tokio::test]
async fn tar_member_names_match_a_real_container() {
    let dir = tempfile::tempdir().unwrap();
    let c = container(dir.path());
    run(
        &c,
        &[
            "sh",
            "-c",
            "mkdir -p /tmp/foo/sub && echo a > /tmp/foo/sub/a.txt",
        ],
        None,
    )
    .await;
    // What kubectl cp from a pod runs.
    let (o, archive, _) = run(&c, &["tar", "cf", "-", "/tmp/foo"], None).await;
    assert_eq!(o, ExecOutcome::Exit(0));
    let mut names: Vec<String> = tar::Archive::new(archive.as_slice())
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["tmp/foo/", "tmp/foo/sub/", "tmp/foo/sub/a.txt"]);
    // What kubectl cp to a pod runs: extract below a folder.
    let (o, _, err) = run(&c, &["tar", "-xmf", "-", "-C", "/restore"], Some(archive)).await;
    assert_eq!(o, ExecOutcome::Exit(2));
    // Diagnostics show the container's paths, not the host's.
    assert_eq!(
        String::from_utf8_lossy(&err).lines().next(),
        Some("tar: /restore: Cannot open: No such file or directory")
    );
    run(&c, &["mkdir", "-p", "/restore"], None).await;
    let (o, archive, _) = run(&c, &["tar", "cf", "-", "/tmp/foo"], None).await;
    assert_eq!(o, ExecOutcome::Exit(0));
    let (o, _, _) = run(&c, &["tar", "-xmf", "-", "-C", "/restore"], Some(archive)).await;
    assert_eq!(o, ExecOutcome::Exit(0));
    assert_eq!(
        std::fs::read_to_string(c.root.join("restore/tmp/foo/sub/a.txt")).unwrap(),
        "a\n"
    );
}

#[tokio::test]
async fn background_processes_end_with_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let c = container(dir.path());
    let (o, out, _) = run(
        &c,
        &["sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!"],
        None,
    )
    .await;
    assert_eq!(o, ExecOutcome::Exit(0));
    let pid: i32 = String::from_utf8(out).unwrap().trim().parse().unwrap();
    // The sleep was in the command's process group, which is killed at the
    // end; wait for it to be gone (reaped by init).
    let mut gone = false;
    for _ in 0..100 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.is_empty() || stat.split_whitespace().nth(2) == Some("Z") {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        gone,
        "background sleep {pid} still runs after the command ended"
    );
}
