//! The default container runtime: a few real shell utilities, run as child
//! processes whose filesystem root is the container's `root` folder.
//!
//! There is no chroot: absolute path arguments are mapped into the
//! container's root (`/tmp/x` -> `<root>/tmp/x`), the working directory is
//! `<root>`, and `PATH` holds only the allowed utilities (plus the
//! `extra_path` folders other runtimes pass in). `tar` operands are made
//! relative to `<root>` so the archive member names come out exactly as a
//! real container's tar writes them (`tmp/foo/...`), which is what
//! `kubectl cp` expects in both directions.
//!
//! Other runtimes (PostgreSQL, OpenBao) delegate their non-server commands to
//! [`ShellRuntime::run`], adding their own binaries and environment.
//!
//! The host's resolver knows no cluster names, so PostgreSQL clients among
//! those binaries run behind small wrappers ([`client_wrappers`]) that look
//! the host they are given up in the sandbox's cluster DNS first
//! ([`crate::controllers::network`]): `pg_isready -h db.ns.svc.cluster.local`
//! and `psql -h db` reach the server behind Service `db`; a name that is
//! no Service's goes to the real resolver, which fails as in a cluster.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;

use futures::future::BoxFuture;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::runtime::{ContainerRef, ExecIo, ExecOutcome, ImageRuntime};

/// The utilities every sandbox container has (resolved on the host's PATH).
pub const UTILITIES: &[&str] = &[
    "sh",
    "bash",
    "cat",
    "tar",
    "echo",
    "ls",
    "rm",
    "mkdir",
    "test",
    "[",
    "true",
    "false",
    "sleep",
    "env",
    "date",
    "printf",
    "head",
    "tail",
    "wc",
    "cp",
    "mv",
    "touch",
    "chmod",
    "grep",
    "sed",
    "cut",
    "sort",
    "uniq",
    "tr",
    "find",
    "stat",
    "gzip",
    "gunzip",
    "zcat",
    "base64",
    "sha256sum",
    "md5sum",
    "cmp",
    "basename",
    "dirname",
    "mktemp",
    "xargs",
    "du",
    "df",
    "id",
    "hostname",
    "whoami",
    "tee",
    "seq",
    "awk",
    "ln",
    "readlink",
    "realpath",
    "uname",
    "dd",
    "pwd",
    "kill",
    "ps",
];

/// Folders on the host where the utilities are looked up.
const HOST_PATH: &[&str] = &["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"];

/// The default runtime: matches every image.
#[derive(Debug, Default, Clone, Copy)]
pub struct ShellRuntime;

impl ShellRuntime {
    pub fn new() -> Self {
        Self
    }

    /// Runs `command` for container `c`: absolute path arguments are mapped
    /// into `c.root`, the working directory is `c.root`, the environment is
    /// the container's env plus `extra_env`, and `PATH` lists `extra_path`
    /// first, then the allowed utilities. Streams stay streams: stdin is
    /// copied to the child as it arrives, stdout/stderr as the child writes.
    /// The child is killed if the returned future is dropped.
    pub async fn run(
        c: &ContainerRef,
        command: Vec<String>,
        io: ExecIo,
        extra_env: &[(String, String)],
        extra_path: &[PathBuf],
    ) -> ExecOutcome {
        let Some(argv0) = command.first() else {
            return ExecOutcome::Failed(
                "OCI runtime exec failed: exec failed: unable to start container process: \
                 exec: no command given: unknown"
                    .to_string(),
            );
        };
        // PostgreSQL clients first through their cluster-DNS wrappers.
        let wrappers = crate::controllers::network::for_root(&c.root)
            .and_then(|net| client_wrappers(c, net.hosts_path(), extra_path).ok())
            .flatten();
        let extra_path: Vec<PathBuf> = wrappers.into_iter().chain(extra_path.to_vec()).collect();
        let extra_path = extra_path.as_slice();
        let Some(program) = resolve(argv0, extra_path) else {
            return not_found(argv0);
        };
        let prog_name = Path::new(argv0)
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| argv0.clone());
        let root = &c.root;
        if let Err(e) = prepare_root(root) {
            return ExecOutcome::Failed(format!(
                "cannot prepare container root {}: {e}",
                root.display()
            ));
        }
        let args = map_args(&prog_name, &command[1..], root);

        let mut path_dirs: Vec<PathBuf> = extra_path.to_vec();
        match utility_bin_dir() {
            Ok(d) => path_dirs.push(d.clone()),
            Err(e) => {
                return ExecOutcome::Failed(format!("cannot prepare the utility folder: {e}"));
            }
        }
        let path = std::env::join_paths(&path_dirs)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();

        let mut cmd = Command::new(&program);
        cmd.args(&args)
            .current_dir(root)
            .env_clear()
            // Programs that write below $HOME or $TMPDIR stay inside the
            // container (/root and /tmp there).
            .env("HOME", root.join("root"))
            .env("TMPDIR", root.join("tmp"))
            .env("HOSTNAME", &c.pod)
            .env("LANG", "C.UTF-8")
            .envs(c.env.iter())
            .env("PATH", &path)
            .envs(extra_env.iter().map(|(k, v)| (k, v)))
            .stdin(if io.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Its own process group, so everything it starts is stopped
            // with it (a container's processes end with the container).
            .process_group(0);
        if io.tty {
            cmd.env("TERM", "xterm");
        }
        let mut child = match cmd.spawn() {
            Ok(ch) => ch,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return not_found(argv0),
            Err(e) => {
                return ExecOutcome::Failed(format!(
                    "OCI runtime exec failed: exec failed: unable to start container process: {e}: unknown"
                ));
            }
        };

        let _group = ProcessGroup(child.id());
        let ExecIo {
            stdin,
            mut stdout,
            mut stderr,
            ..
        } = io;
        let child_in = child.stdin.take();
        let mut child_out = child.stdout.take().expect("stdout is piped");
        let mut child_err = child.stderr.take().expect("stderr is piped");

        let feed = async move {
            if let (Some(mut from), Some(mut to)) = (stdin, child_in) {
                // A child that exits without reading all of stdin is normal
                // (`head`), so a broken pipe here is not an error.
                let _ = tokio::io::copy(&mut from, &mut to).await;
                let _ = to.shutdown().await;
            }
        };
        let out = async move {
            let _ = tokio::io::copy(&mut child_out, &mut stdout).await;
            let _ = stdout.shutdown().await;
        };
        // Messages name paths as the container sees them.
        let unmap = Unmap {
            root: root.to_string_lossy().into_owned(),
            program: program.to_string_lossy().into_owned(),
            prog_name: prog_name.clone(),
        };
        let err = async move {
            let mut reader = tokio::io::BufReader::new(&mut child_err);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let fixed = unmap.apply(&line);
                        if stderr.write_all(&fixed).await.is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = stderr.shutdown().await;
        };
        // stdin feeding may block forever when the client never closes it;
        // the command's end (stdout/stderr closed and exit) decides.
        let feed = tokio::spawn(feed);
        let (_, _, status) = tokio::join!(out, err, child.wait());
        feed.abort();
        match status {
            Ok(st) => ExecOutcome::Exit(exit_code(st)),
            Err(e) => ExecOutcome::Failed(format!("waiting for {prog_name}: {e}")),
        }
    }
}

impl ImageRuntime for ShellRuntime {
    fn name(&self) -> &'static str {
        "shell"
    }

    fn matches(&self, _image: &str) -> bool {
        true
    }

    fn exec<'a>(
        &'a self,
        c: &'a ContainerRef,
        command: Vec<String>,
        io: ExecIo,
    ) -> BoxFuture<'a, ExecOutcome> {
        Box::pin(Self::run(c, command, io, &[], &[]))
    }
}

/// PostgreSQL client programs that take a server host (`-h`).
const PG_CLIENTS: &[&str] = &[
    "psql",
    "pg_isready",
    "pg_dump",
    "pg_dumpall",
    "pg_restore",
    "createdb",
    "dropdb",
    "createuser",
    "dropuser",
    "vacuumdb",
    "reindexdb",
    "clusterdb",
    "pg_basebackup",
];

/// Whether a PostgreSQL client command names its server host (`-h`,
/// `--host`, or `PGHOST` set for it): only the client wrappers of
/// [`ShellRuntime::run`] resolve such a name as cluster DNS does.
pub fn names_a_host(argv: &[String], env: &std::collections::BTreeMap<String, String>) -> bool {
    env.contains_key("PGHOST")
        || argv
            .iter()
            .skip(1)
            .any(|a| a == "-h" || a == "--host" || a.starts_with("--host=") || a.starts_with("-h"))
}

/// A folder of wrappers for the PostgreSQL clients found in `extra_path`
/// (none found: `None`). Each wrapper resolves the host it is given in the
/// sandbox's cluster DNS (`hosts`, with the pod's search path) and runs the
/// real client with `PGHOSTADDR` set to the Service's address, keeping the
/// name for messages; anything else goes to the real client untouched.
/// The folder is named by a hash of its contents, so wrappers are written
/// once and concurrent execs share them.
pub fn client_wrappers(
    c: &ContainerRef,
    hosts: &Path,
    extra_path: &[PathBuf],
) -> std::io::Result<Option<PathBuf>> {
    let found: Vec<(&str, PathBuf)> = PG_CLIENTS
        .iter()
        .filter_map(|p| {
            extra_path
                .iter()
                .map(|d| d.join(p))
                .find(|f| is_executable(f))
                .map(|f| (*p, f))
        })
        .collect();
    let Some(bash) = host_utility("bash") else {
        return Ok(None);
    };
    if found.is_empty() {
        return Ok(None);
    }
    // The port a client in a real pod uses when none is given: the pod's
    // own PGPORT, else PostgreSQL's.
    let default_port = c
        .env
        .get("PGPORT")
        .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        .map(String::as_str)
        .unwrap_or("5432");
    let scripts: Vec<(&str, String)> = found
        .iter()
        .map(|(prog, real)| {
            (
                *prog,
                wrapper_script(&bash, prog, real, hosts, &c.namespace, default_port),
            )
        })
        .collect();
    use sha2::Digest;
    let mut digest = sha2::Sha256::new();
    for (prog, text) in &scripts {
        digest.update(prog.as_bytes());
        digest.update(text.as_bytes());
    }
    let base = hosts
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("clients");
    let dir = base.join(&hex::encode(digest.finalize())[..16]);
    if dir.is_dir() {
        return Ok(Some(dir));
    }
    std::fs::create_dir_all(&base)?;
    let tmp = tempfile::Builder::new().prefix(".new-").tempdir_in(&base)?;
    use std::os::unix::fs::PermissionsExt;
    for (prog, text) in &scripts {
        let f = tmp.path().join(prog);
        std::fs::write(&f, text)?;
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755))?;
    }
    let tmp = tmp.keep();
    if std::fs::rename(&tmp, &dir).is_err() {
        // Another exec wrote the same folder first.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    Ok(Some(dir))
}

/// A shell word quoted for bash.
fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn wrapper_script(
    bash: &Path,
    prog: &str,
    real: &Path,
    hosts: &Path,
    ns: &str,
    default_port: &str,
) -> String {
    format!(
        r#"#!{bash}
# {prog} in namespace {ns}: a Service's DNS name given as the host (-h,
# --host or PGHOST) reaches the Service's address, as cluster DNS resolves
# it with the pod's search path; other hosts go to the real resolver.
real={real}
hosts={hosts}
ns={ns_q}
host= port= want=
for a in "$@"; do
  if [ -n "$want" ]; then
    if [ "$want" = h ]; then host=$a; else port=$a; fi
    want=
    continue
  fi
  case $a in
    -h|--host) want=h ;;
    -p|--port) want=p ;;
    --host=*) host=${{a#--host=}} ;;
    --port=*) port=${{a#--port=}} ;;
    -h?*) host=${{a#-h}} ;;
    -p?*) port=${{a#-p}} ;;
  esac
done
[ -n "$host" ] || host=${{PGHOST:-}}
case $host in
  ''|/*|*,*|localhost) exec "$real" "$@" ;;
  *.) names=${{host%.}} ;;
  *)
    dots=${{host//[^.]/}}
    names="$host.$ns.svc.cluster.local $host.svc.cluster.local $host.cluster.local"
    if [ ${{#dots}} -ge 5 ]; then names="$host $names"; else names="$names $host"; fi
    ;;
esac
addr=
if [ -r "$hosts" ]; then
  for n in $names; do
    while read -r ip name; do
      if [ "$name" = "$n" ]; then addr=$ip; break 2; fi
    done < "$hosts"
  done
fi
if [ -n "$addr" ]; then
  export PGHOSTADDR=$addr
  [ -n "$port" ] || export PGPORT={default_port}
{named}
fi
exec "$real" "$@"
"#,
        named = if prog == "pg_isready" {
            // pg_isready prints the address it was given, a resolver's
            // client the name.
            r#"  out=$("$real" "$@"); rc=$?
  [ -z "$out" ] || printf '%s\n' "${out/#"$addr:"/"$host:"}"
  exit $rc"#
        } else {
            // libpq names a given address alone, a resolved one with its name.
            r#"  exec "$real" "$@" 2> >(exec sed -u "s/connection to server at \"${addr//./\\.}\", port/connection to server at \"$host\" ($addr), port/" >&2)"#
        },
        bash = bash.display(),
        real = quoted(&real.to_string_lossy()),
        hosts = quoted(&hosts.to_string_lossy()),
        ns_q = quoted(ns),
    )
}

/// Folders every container image has.
const SKELETON: &[&str] = &[
    "tmp",
    "etc",
    "root",
    "home",
    "var/lib",
    "var/log",
    "var/tmp",
    "run",
    "opt",
    "srv",
    "mnt",
    "usr/local/bin",
];

/// Creates the container root with the usual top-level folders (`/tmp`,
/// `/etc`, ...), as an image's filesystem has them. Idempotent.
pub fn prepare_root(root: &Path) -> std::io::Result<()> {
    if root.join("tmp").is_dir() {
        return Ok(());
    }
    for d in SKELETON {
        std::fs::create_dir_all(root.join(d))?;
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777))
}

/// Rewrites host paths in diagnostics back to the container's view.
struct Unmap {
    root: String,
    program: String,
    prog_name: String,
}

impl Unmap {
    fn apply(&self, line: &[u8]) -> Vec<u8> {
        let Ok(text) = std::str::from_utf8(line) else {
            return line.to_vec();
        };
        let text = text.replace(
            &format!("{}: ", self.program),
            &format!("{}: ", self.prog_name),
        );
        let text = text.replace(&format!("{}/", self.root), "/");
        text.replace(&self.root, "/").into_bytes()
    }
}

/// Kills the whole process group when dropped (command finished, or the
/// exec was abandoned).
struct ProcessGroup(Option<u32>);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if let Some(pid) = self.0
            && let Ok(pgid) = i32::try_from(pid)
        {
            // SAFETY: kill(2) with a negative pid signals that process group;
            // no memory is involved.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

fn exit_code(st: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0))
}

/// The message a real container runtime gives for a missing executable.
fn not_found(argv0: &str) -> ExecOutcome {
    ExecOutcome::Failed(format!(
        "OCI runtime exec failed: exec failed: unable to start container process: exec: \
         \"{argv0}\": executable file not found in $PATH: unknown"
    ))
}

/// Finds the program for `argv0`: first in `extra_path` (by base name), then
/// among the allowed utilities on the host.
fn resolve(argv0: &str, extra_path: &[PathBuf]) -> Option<PathBuf> {
    let base = Path::new(argv0).file_name()?.to_str()?;
    if base.is_empty() {
        return None;
    }
    for d in extra_path {
        let p = d.join(base);
        if is_executable(&p) {
            return Some(p);
        }
    }
    if !UTILITIES.contains(&base) {
        return None;
    }
    host_utility(base)
}

fn host_utility(name: &str) -> Option<PathBuf> {
    HOST_PATH
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// A folder of symlinks to the allowed utilities: the `PATH` of commands
/// run by `sh -c`, so a script sees the same set of programs as `exec`.
fn utility_bin_dir() -> Result<&'static PathBuf, String> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| {
        // SAFETY: geteuid(2) has no preconditions and cannot fail.
        let uid = unsafe { libc::geteuid() };
        let dir = std::env::temp_dir().join(format!("kleidia-sandbox-utils-{uid}"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for u in UTILITIES {
            let link = dir.join(u);
            if link.symlink_metadata().is_ok() {
                continue;
            }
            if let Some(target) = host_utility(u) {
                match std::os::unix::fs::symlink(&target, &link) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(format!("{}: {e}", link.display())),
                }
            }
        }
        Ok(dir)
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// Host folders that stay as they are inside a container.
fn is_host_passthrough(p: &str) -> bool {
    p == "/dev/null"
        || p.starts_with("/dev/")
        || p.starts_with("/proc/")
        || p == "/proc"
        || p == "/dev"
}

/// Maps one absolute path into `root`; other strings are returned as is.
pub fn map_path(p: &str, root: &Path) -> String {
    if !p.starts_with('/') || is_host_passthrough(p) {
        return p.to_string();
    }
    let rel = p.trim_start_matches('/');
    if rel.is_empty() {
        return root.to_string_lossy().into_owned();
    }
    root.join(rel).to_string_lossy().into_owned()
}

/// Maps the arguments of `prog` (a base name) into the container root.
pub fn map_args(prog: &str, args: &[String], root: &Path) -> Vec<String> {
    match prog {
        "sh" | "bash" => map_shell_args(args, root),
        "tar" => map_tar_args(args, root),
        "env" => map_env_args(args, root),
        _ => args.iter().map(|a| map_arg(a, root)).collect(),
    }
}

fn map_arg(a: &str, root: &Path) -> String {
    if a.starts_with('/') {
        return map_path(a, root);
    }
    // `--opt=/path`
    if a.starts_with("--")
        && let Some((k, v)) = a.split_once('=')
        && v.starts_with('/')
    {
        return format!("{k}={}", map_path(v, root));
    }
    a.to_string()
}

/// `sh -c SCRIPT [name args...]`: the script's absolute paths are mapped;
/// `sh /path/script` runs the mapped script.
fn map_shell_args(args: &[String], root: &Path) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut script_next = false;
    let mut seen_script = false;
    for a in args {
        if script_next {
            out.push(map_script(a, root));
            script_next = false;
            seen_script = true;
            continue;
        }
        if !seen_script && a.starts_with('-') && a.len() > 1 && !a.starts_with("--") {
            if a.contains('c') {
                script_next = true;
            }
            out.push(a.clone());
            continue;
        }
        out.push(map_arg(a, root));
        seen_script = true;
    }
    out
}

/// `env [-i] [NAME=VALUE...] [COMMAND [ARG...]]`: the nested command runs
/// through the shell utility folder anyway; only path arguments are mapped.
fn map_env_args(args: &[String], root: &Path) -> Vec<String> {
    args.iter().map(|a| map_arg(a, root)).collect()
}

/// Rewrites absolute paths that start a word in a shell script.
pub fn map_script(script: &str, root: &Path) -> String {
    let root_s = root.to_string_lossy();
    let bytes = script.as_bytes();
    let mut out = String::with_capacity(script.len() + 64);
    let mut i = 0;
    let mut last = 0;
    while i < bytes.len() {
        if bytes[i] == b'/' {
            let boundary = i == 0
                || matches!(
                    bytes[i - 1],
                    b' ' | b'\t'
                        | b'\n'
                        | b'\''
                        | b'"'
                        | b'='
                        | b'<'
                        | b'>'
                        | b'|'
                        | b';'
                        | b'&'
                        | b'('
                        | b'`'
                );
            if boundary {
                // The word that starts here.
                let end = bytes[i..]
                    .iter()
                    .position(|b| {
                        matches!(
                            b,
                            b' ' | b'\t'
                                | b'\n'
                                | b'\''
                                | b'"'
                                | b'<'
                                | b'>'
                                | b'|'
                                | b';'
                                | b'&'
                                | b')'
                                | b'`'
                        )
                    })
                    .map(|p| i + p)
                    .unwrap_or(bytes.len());
                let word = &script[i..end];
                if !is_host_passthrough(word) {
                    out.push_str(&script[last..i]);
                    out.push_str(&root_s);
                    if word == "/" {
                        // `ls /` -> `ls <root>`
                    } else {
                        out.push_str(word);
                    }
                    last = end;
                }
                i = end;
                continue;
            }
        }
        i += 1;
    }
    out.push_str(&script[last..]);
    out
}

/// Short options of GNU tar that take a value in the next argument.
const TAR_VALUE_LETTERS: &[char] = &['f', 'C', 'T', 'X', 'b', 'H', 'K', 'N', 'V', 'g', 'L'];
/// Of those, the ones whose value is a path.
const TAR_PATH_LETTERS: &[char] = &['f', 'C', 'T', 'X', 'g'];
const TAR_LONG_VALUE: &[&str] = &[
    "--file",
    "--directory",
    "--files-from",
    "--exclude-from",
    "--listed-incremental",
    "--format",
    "--transform",
    "--exclude",
    "--owner",
    "--group",
    "--mode",
];
const TAR_LONG_PATH: &[&str] = &[
    "--file",
    "--directory",
    "--files-from",
    "--exclude-from",
    "--listed-incremental",
];

/// tar's option values that are paths are mapped to absolute paths in the
/// root; file operands become relative to the root (the working directory),
/// so member names are what a real tar writes after dropping the leading
/// `/`.
fn map_tar_args(args: &[String], root: &Path) -> Vec<String> {
    // Each pending value: whether it is a path.
    let mut pending: std::collections::VecDeque<bool> = Default::default();
    let mut out = Vec::with_capacity(args.len());
    let mut only_operands = false;
    for (i, a) in args.iter().enumerate() {
        if let Some(is_path) = pending.pop_front() {
            out.push(if is_path && a != "-" {
                map_path(a, root)
            } else {
                a.clone()
            });
            continue;
        }
        if !only_operands && a == "--" {
            only_operands = true;
            out.push(a.clone());
            continue;
        }
        if !only_operands && i == 0 && !a.starts_with('-') {
            // Old-style bundle: `cf`, `xzf`.
            for ch in a.chars() {
                if TAR_VALUE_LETTERS.contains(&ch) {
                    pending.push_back(TAR_PATH_LETTERS.contains(&ch));
                }
            }
            out.push(a.clone());
            continue;
        }
        if !only_operands && a.starts_with("--") {
            if let Some((k, v)) = a.split_once('=') {
                if TAR_LONG_PATH.contains(&k) && v != "-" {
                    out.push(format!("{k}={}", map_path(v, root)));
                } else {
                    out.push(a.clone());
                }
            } else {
                if TAR_LONG_VALUE.contains(&a.as_str()) {
                    pending.push_back(TAR_LONG_PATH.contains(&a.as_str()));
                }
                out.push(a.clone());
            }
            continue;
        }
        if !only_operands && a.starts_with('-') && a.len() > 1 {
            // Cluster: `-xmf`, `-C/dir`, `-f-`.
            let body = &a[1..];
            let mut mapped = String::from("-");
            for (k, ch) in body.char_indices() {
                mapped.push(ch);
                if TAR_VALUE_LETTERS.contains(&ch) {
                    let rest = &body[k + ch.len_utf8()..];
                    if rest.is_empty() {
                        pending.push_back(TAR_PATH_LETTERS.contains(&ch));
                    } else if TAR_PATH_LETTERS.contains(&ch) && rest != "-" {
                        mapped.push_str(&map_path(rest, root));
                    } else {
                        mapped.push_str(rest);
                    }
                    break;
                }
            }
            out.push(mapped);
            continue;
        }
        // An operand: a member name or a file to archive.
        if a.starts_with('/') && !is_host_passthrough(a) {
            let rel = a.trim_start_matches('/');
            out.push(if rel.is_empty() {
                ".".to_string()
            } else {
                rel.to_string()
            });
        } else {
            out.push(a.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtimes::test_args as s;

    #[test]
    fn tar_create_operands_become_relative() {
        let root = Path::new("/r");
        assert_eq!(
            map_args("tar", &s(&["cf", "-", "/tmp/foo"]), root),
            s(&["cf", "-", "tmp/foo"])
        );
        assert_eq!(
            map_args("tar", &s(&["-xmf", "-", "-C", "/tmp/dest"]), root),
            s(&["-xmf", "-", "-C", "/r/tmp/dest"])
        );
        assert_eq!(
            map_args("tar", &s(&["xf", "/a.tar", "-C/x"]), root),
            s(&["xf", "/r/a.tar", "-C/r/x"])
        );
        assert_eq!(
            map_args(
                "tar",
                &s(&["--file=/a.tar", "--directory", "/d", "/"]),
                root
            ),
            s(&["--file=/r/a.tar", "--directory", "/r/d", "."])
        );
    }

    #[test]
    fn plain_and_script_paths_are_mapped() {
        let root = Path::new("/r");
        assert_eq!(
            map_args("cat", &s(&["/etc/x", "rel", "/dev/null"]), root),
            s(&["/r/etc/x", "rel", "/dev/null"])
        );
        assert_eq!(
            map_script(
                "cat /tmp/a > /tmp/b 2>/dev/null; ls /; echo http://x/y",
                root
            ),
            "cat /r/tmp/a > /r/tmp/b 2>/dev/null; ls /r; echo http://x/y"
        );
        assert_eq!(
            map_args("sh", &s(&["-c", "echo hi >/tmp/f", "/x"]), root),
            s(&["-c", "echo hi >/r/tmp/f", "/r/x"])
        );
    }

    #[test]
    fn host_options_are_recognised() {
        let none = std::collections::BTreeMap::new();
        for argv in [
            &["psql", "-h", "db"][..],
            &["pg_isready", "-hdb"][..],
            &["psql", "--host=db"][..],
            &["pg_dump", "--host", "db"][..],
        ] {
            assert!(names_a_host(&s(argv), &none), "{argv:?}");
        }
        assert!(!names_a_host(
            &s(&["psql", "-U", "u", "-c", "select 1"]),
            &none
        ));
        assert!(!names_a_host(&s(&["psql", "--help"]), &none));
        let pghost = std::collections::BTreeMap::from([("PGHOST".to_string(), "db".to_string())]);
        assert!(names_a_host(&s(&["psql"]), &pghost));
    }

    #[test]
    fn unknown_commands_are_not_found() {
        assert!(resolve("definitely-not-a-tool", &[]).is_none());
        assert!(resolve("/bin/cat", &[]).is_some());
        assert!(resolve("tar", &[]).is_some());
    }
}
