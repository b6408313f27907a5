//! Colour only on a terminal, and never with `NO_COLOR` or `--no-color`:
//! tables, errors and usage errors alike. The binaries run inside a real
//! pseudo-terminal (`script` from util-linux), so stdout and stderr are
//! terminals as an operator's would be.

mod support;

use std::path::Path;
use std::process::Command;

use support::{Cluster, ReleaseFixture};

const ESC: char = '\x1b';

/// Runs `args` on a pseudo-terminal; returns everything it printed.
fn on_a_terminal(bin: &Path, args: &[&str], envs: &[(&str, &str)]) -> String {
    let mut line = shell_quote(bin.to_str().unwrap());
    for a in args {
        line.push(' ');
        line.push_str(&shell_quote(a));
    }
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &line, "/dev/null"])
        .env_remove("NO_COLOR")
        .env("TERM", "xterm-256color")
        .env("HOME", "/nonexistent-home")
        .env("XDG_CONFIG_HOME", "/nonexistent-home/.config");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("script (util-linux) runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[test]
fn no_color_and_the_flag_remove_every_escape_code() {
    let c = Cluster::start_with(Default::default());
    for (name, app) in [
        ("kleidia-platform", "2.4.1"),
        ("kleidia-data", "15.4"),
        ("kleidia-services", "1.0.0"),
    ] {
        c.store_release_secret("kleidia", &ReleaseFixture::new(name, 1, "1.0.0", app, ""));
    }
    let bin = assert_cmd::cargo::cargo_bin("kubectl-kleidia");
    let kc = c.kubeconfig().to_str().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<Vec<String>> = vec![
        // A table with failing probes (coloured marks) and a non-zero exit.
        vec![
            "versions".into(),
            "--timeout".into(),
            "5s".into(),
            "--kubeconfig".into(),
            kc.clone(),
        ],
        // An error from the cluster side: no releases in that namespace.
        vec![
            "versions".into(),
            "-n".into(),
            "empty".into(),
            "--kubeconfig".into(),
            kc.clone(),
        ],
        // An error from a local command.
        vec![
            "backup".into(),
            "verify".into(),
            dir.path().join("missing").to_str().unwrap().into(),
        ],
        // A usage error, printed by the argument parser.
        vec!["versions".into(), "--timeout".into(), "soon".into()],
    ];
    for case in &cases {
        let args: Vec<&str> = case.iter().map(String::as_str).collect();
        let plain = on_a_terminal(&bin, &args, &[]);
        assert!(
            plain.contains(ESC),
            "{args:?} on a terminal should be coloured (else this test proves nothing): {plain:?}"
        );
        let mut flagged = args.clone();
        flagged.push("--no-color");
        let out = on_a_terminal(&bin, &flagged, &[]);
        assert!(
            !out.contains(ESC),
            "{flagged:?} printed escape codes: {out:?}"
        );
        let out = on_a_terminal(&bin, &args, &[("NO_COLOR", "1")]);
        assert!(
            !out.contains(ESC),
            "NO_COLOR=1 {args:?} printed escape codes: {out:?}"
        );
    }
}
