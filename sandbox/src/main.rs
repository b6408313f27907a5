//! `kleidia-sandbox`: run a local Kubernetes API for tests and demos.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use kleidia_sandbox::demo;
use kleidia_sandbox::faults::FaultRequest;
use kleidia_sandbox::server::client::Client;
use kleidia_sandbox::server::{Sandbox, SandboxOptions, private_dir, shell_exports};
use kleidia_sandbox::state::OpenBaoStorage;

#[derive(Parser)]
#[command(
    name = "kleidia-sandbox",
    version,
    about = "A local Kubernetes API whose pods run real software"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a sandbox; prints `export` lines for your shell.
    Up {
        /// Folder for the kubeconfig, logs and container data.
        #[arg(long)]
        dir: PathBuf,
        /// Run in the background and return once it is ready.
        #[arg(long)]
        detach: bool,
        /// Start without the demo releases.
        #[arg(long)]
        empty: bool,
        /// How the demo OpenBao stores its data: raft (integrated storage,
        /// snapshots work) or file.
        #[arg(long, default_value = "raft")]
        openbao_storage: OpenBaoStorage,
        /// Milliseconds from a pod's start until it is Ready.
        #[arg(long, default_value_t = 500)]
        pod_ready_delay: u64,
        /// Port on 127.0.0.1 (0: any free port).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Install the demo with this helm (a real Helm 3 or 4 CLI) instead
        /// of the sandbox's; `env` then exports HELM_BIN=PATH.
        #[arg(long, value_name = "PATH")]
        helm: Option<PathBuf>,
        /// The demo chart set to install: 1.0.0, 1.1.0, 1.1.0-broken (under
        /// sandbox/charts) or a folder with the three charts.
        #[arg(long, value_name = "SET", default_value = "1.0.0")]
        charts: String,
    },
    /// Stop a sandbox started with `up --detach`.
    Down {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Print the `export` lines for a running sandbox.
    Env {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Inject faults into a running sandbox.
    Fault {
        #[arg(long)]
        dir: PathBuf,
        /// Reset all faults first.
        #[arg(long)]
        clear: bool,
        /// Fraction of requests (0..1) that fail.
        #[arg(long)]
        error_rate: Option<f64>,
        /// Status of failed requests: 500 or 429.
        #[arg(long)]
        error_code: Option<u16>,
        /// Only requests whose path contains this.
        #[arg(long)]
        path: Option<String>,
        /// Delay added to each request.
        #[arg(long)]
        latency_ms: Option<u64>,
        /// Cut a pod's exec streams after N bytes: POD=N (0 removes).
        #[arg(long, value_name = "POD=BYTES")]
        exec_kill: Vec<String>,
        /// End all open watch streams now.
        #[arg(long)]
        drop_watches: bool,
    },
    /// Print the requests the API served (JSON: by verb, resource,
    /// subresource, namespace, with status codes).
    Requests {
        #[arg(long)]
        dir: PathBuf,
        /// Start counting from zero after printing.
        #[arg(long)]
        reset: bool,
    },
    /// Replace the authorization rules (JSON list of rules, `-` for stdin).
    Authz {
        #[arg(long)]
        dir: PathBuf,
        /// File with a JSON array of rules; omit to allow everything.
        #[arg(long)]
        rules: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kleidia-sandbox: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn venv_bin() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    exe.ancestors()
        .map(|a| a.join(".venv/bin"))
        .find(|p| p.is_dir())
}

fn state_file(dir: &Path) -> PathBuf {
    dir.join("sandbox.json")
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StateFile {
    pid: u32,
    url: String,
    /// False while the demo releases are still being installed.
    #[serde(default = "yes")]
    ready: bool,
    /// The helm the demo was installed with (`up --helm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    helm: Option<PathBuf>,
}

fn yes() -> bool {
    true
}

fn write_state(dir: &Path, state: &StateFile) -> Result<()> {
    let p = state_file(dir);
    std::fs::write(&p, serde_json::to_vec(state)?)
        .with_context(|| format!("writing {}", p.display()))
}

fn read_state(dir: &Path) -> Result<StateFile> {
    let p = state_file(dir);
    let text = std::fs::read_to_string(&p).with_context(|| {
        format!(
            "no sandbox is running in {} ({} is missing); start one with `kleidia-sandbox up --dir {} --detach`",
            dir.display(),
            p.display(),
            dir.display()
        )
    })?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a sandbox state file", p.display()))
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Up {
            dir,
            detach,
            empty,
            openbao_storage,
            pod_ready_delay,
            port,
            helm,
            charts,
        } => {
            // Both checked before anything starts, so a typo fails at once.
            let helm = helm
                .map(|h| demo::check_helm(&h))
                .transpose()
                .context("--helm")?;
            let charts_folder = demo::resolve_charts(&charts).context("--charts")?;
            private_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let dir = dir.canonicalize()?;
            if let Ok(s) = read_state(&dir)
                && alive(s.pid)
            {
                bail!(
                    "a sandbox (pid {}) already runs in {}; stop it with `kleidia-sandbox down --dir {}`",
                    s.pid,
                    dir.display(),
                    dir.display()
                );
            }
            if detach {
                return up_detached(&dir, empty);
            }
            clear_previous_run(&dir)?;
            let sb = Sandbox::start(SandboxOptions {
                dir: Some(dir.clone()),
                port,
                pod_ready_delay: Duration::from_millis(pod_ready_delay),
                empty,
                openbao_storage,
                runtimes: demo::real_runtimes(openbao_storage.into()),
                helm: helm.clone(),
                charts: charts.clone(),
                ..SandboxOptions::default()
            })?;
            let mut state = StateFile {
                pid: std::process::id(),
                url: sb.url().to_string(),
                ready: empty,
                helm: helm.clone(),
            };
            write_state(&dir, &state)?;
            // Ctrl-C or SIGTERM stop the sandbox (and its servers) cleanly,
            // also while the demo is still installing.
            let mut stop = {
                let _rt = sb.handle().enter();
                StopSignals::new()?
            };
            if !empty {
                let demo_helm = sb.demo_helm()?;
                eprintln!(
                    "kleidia-sandbox: API serving at {}; installing the demo releases {} ({charts}) with {}",
                    sb.url(),
                    demo::RELEASES.join(", "),
                    demo_helm.display()
                );
                let started = Instant::now();
                let kubeconfig = sb.kubeconfig_path().to_path_buf();
                let installed = sb.handle().block_on(async {
                    tokio::select! {
                        r = async {
                            demo::install_demo_with(&demo_helm, &kubeconfig, &charts_folder).await?;
                            demo::wait_for_statefulsets(&sb, Duration::from_secs(300)).await
                        } => Some(r),
                        _ = stop.recv() => None,
                    }
                });
                match installed {
                    None => {
                        sb.shutdown();
                        let _ = std::fs::remove_file(state_file(&dir));
                        eprintln!(
                            "kleidia-sandbox: stopped before the demo releases were installed"
                        );
                        return Ok(());
                    }
                    Some(Err(e)) => {
                        sb.shutdown();
                        let _ = std::fs::remove_file(state_file(&dir));
                        return Err(anyhow::Error::new(e).context(format!(
                            "the sandbox in {} stopped: the demo did not install; run `kleidia-sandbox up --dir {} --empty` to start without it",
                            dir.display(),
                            dir.display()
                        )));
                    }
                    Some(Ok(())) => {}
                }
                eprintln!(
                    "kleidia-sandbox: demo installed and ready in {:.1} s",
                    started.elapsed().as_secs_f64()
                );
                state.ready = true;
                write_state(&dir, &state)?;
            }
            print!(
                "{}",
                shell_exports(&dir, venv_bin().as_deref(), helm.as_deref())
            );
            eprintln!(
                "kleidia-sandbox: serving {} (stop with Ctrl-C or `kleidia-sandbox down --dir {}`)",
                sb.url(),
                dir.display()
            );
            sb.handle().block_on(stop.recv());
            sb.shutdown();
            let _ = std::fs::remove_file(state_file(&dir));
            Ok(())
        }
        Command::Down { dir } => down(&dir),
        Command::Env { dir } => {
            let state = read_state(&dir)?;
            print!(
                "{}",
                shell_exports(
                    &dir.canonicalize()?,
                    venv_bin().as_deref(),
                    state.helm.as_deref()
                )
            );
            Ok(())
        }
        Command::Fault {
            dir,
            clear,
            error_rate,
            error_code,
            path,
            latency_ms,
            exec_kill,
            drop_watches,
        } => {
            let mut req = FaultRequest {
                clear,
                error_rate,
                error_code,
                path_contains: path,
                latency_ms,
                drop_watches,
                ..Default::default()
            };
            for e in exec_kill {
                let (pod, n) = e
                    .split_once('=')
                    .with_context(|| format!("--exec-kill {e:?} is not POD=BYTES"))?;
                let n: u64 = n
                    .parse()
                    .with_context(|| format!("--exec-kill {e:?}: {n:?} is not a byte count"))?;
                req.exec_kill.insert(pod.to_string(), n);
            }
            let reply = admin_request(&dir, "/sandbox/faults", serde_json::to_vec(&req)?)?;
            println!("{}", serde_json::to_string_pretty(&reply)?);
            Ok(())
        }
        Command::Requests { dir, reset } => {
            let method = if reset {
                hyper::Method::DELETE
            } else {
                hyper::Method::GET
            };
            let reply = admin_request_method(&dir, method, "/sandbox/requests", Vec::new())?;
            println!("{}", serde_json::to_string_pretty(&reply)?);
            Ok(())
        }
        Command::Authz { dir, rules } => {
            let body = match rules {
                None => serde_json::to_vec(&vec![kleidia_sandbox::authz::Rule::allow_all()])?,
                Some(p) if p.as_os_str() == "-" => {
                    let mut s = Vec::new();
                    std::io::Read::read_to_end(&mut std::io::stdin(), &mut s)?;
                    s
                }
                Some(p) => std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?,
            };
            let reply = admin_request_method(&dir, hyper::Method::PUT, "/sandbox/authz", body)?;
            println!("{}", serde_json::to_string_pretty(&reply)?);
            Ok(())
        }
    }
}

/// Token and CA from the sandbox's kubeconfig.
fn client_for(dir: &Path) -> Result<Client> {
    let state = read_state(dir)?;
    let kc_path = dir.join("kubeconfig");
    let kc: serde_json::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(&kc_path)
            .with_context(|| format!("reading {}", kc_path.display()))?,
    )?;
    let token = kc
        .pointer("/users/0/user/token")
        .and_then(|v| v.as_str())
        .context("the kubeconfig has no token")?;
    let ca_b64 = kc
        .pointer("/clusters/0/cluster/certificate-authority-data")
        .and_then(|v| v.as_str())
        .context("the kubeconfig has no certificate-authority-data")?;
    use base64::Engine;
    let ca = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(ca_b64)?)?;
    Ok(Client::new(&state.url, &ca, Some(token))?)
}

fn admin_request(dir: &Path, path: &str, body: Vec<u8>) -> Result<serde_json::Value> {
    admin_request_method(dir, hyper::Method::POST, path, body)
}

fn admin_request_method(
    dir: &Path,
    method: hyper::Method,
    path: &str,
    body: Vec<u8>,
) -> Result<serde_json::Value> {
    let client = client_for(dir)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let reply =
        rt.block_on(client.send(method, path, &[("content-type", "application/json")], body))?;
    if !reply.status.is_success() {
        bail!(
            "the sandbox refused the request ({}): {}",
            reply.status,
            reply.json()["message"].as_str().unwrap_or("")
        );
    }
    Ok(reply.json())
}

/// SIGTERM and SIGINT, registered once so none is missed between phases.
struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Call inside the sandbox's runtime context.
    fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(StopSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

fn alive(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks that the process exists.
    unsafe { libc::kill(pid as i32, 0) == 0 }
}

/// How long `up --detach` waits for the API to answer.
const API_READY_LIMIT: Duration = Duration::from_secs(15);
/// How long `up --detach` waits for the demo releases (helm waits up to
/// 5 minutes for each).
const DEMO_READY_LIMIT: Duration = Duration::from_secs(16 * 60);

/// Removes the pod data a stopped sandbox left in `dir`. The API objects
/// live only as long as the sandbox process, so volumes and container files
/// of a previous run belong to objects that no longer exist; reused, they
/// would meet new Secrets (an OpenBao whose unseal key was replaced stays
/// sealed). Other files in `dir` (backups, notes) are kept.
fn clear_previous_run(dir: &Path) -> Result<()> {
    let stale: Vec<PathBuf> = ["containers", "claims"]
        .iter()
        .map(|d| dir.join(d))
        .filter(|p| p.exists())
        .collect();
    if stale.is_empty() {
        return Ok(());
    }
    eprintln!(
        "kleidia-sandbox: removing the pod data of the previous run in {} (its API objects ended with it)",
        dir.display()
    );
    for p in stale {
        std::fs::remove_dir_all(&p).with_context(|| {
            format!(
                "removing {} left by a previous run; remove it by hand or pick another --dir",
                p.display()
            )
        })?;
    }
    Ok(())
}

fn up_detached(dir: &Path, empty: bool) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe()?;
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--detach")
        .collect();
    let log = dir.join("sandbox.log");
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)?;
    let _ = std::fs::remove_file(state_file(dir));
    let mut cmd = std::process::Command::new(exe);
    cmd.args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    // SAFETY: setsid is async-signal-safe; it detaches the child from our
    // terminal and session so it survives this process.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("starting the background sandbox")?;
    let pid = child.id();
    let start = Instant::now();
    let mut api_ready = false;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "the background sandbox exited ({status}) before it was ready{}; see {} for why",
                if api_ready && !empty {
                    " (while installing the demo releases)"
                } else {
                    ""
                },
                log.display()
            );
        }
        if let Ok(s) = read_state(dir)
            && s.pid == pid
        {
            if !api_ready {
                let port = s.url.rsplit(':').next().unwrap_or("0");
                api_ready = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_ok();
            }
            if api_ready && s.ready {
                break;
            }
        }
        let (limit, what) = if api_ready {
            (DEMO_READY_LIMIT, "its demo releases were not installed")
        } else {
            (API_READY_LIMIT, "its API did not answer")
        };
        if start.elapsed() > limit {
            // SAFETY: plain signal to the child we started.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            bail!(
                "the background sandbox was stopped: {what} within {} s; see {}",
                limit.as_secs(),
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(if api_ready { 200 } else { 25 }));
    }
    let helm = read_state(dir).ok().and_then(|s| s.helm);
    print!(
        "{}",
        shell_exports(dir, venv_bin().as_deref(), helm.as_deref())
    );
    Ok(())
}

fn down(dir: &Path) -> Result<()> {
    let state = read_state(dir)?;
    let pid = state.pid as i32;
    if alive(state.pid) {
        // SAFETY: signals to the sandbox process we started (pid from its
        // own state file).
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let start = Instant::now();
        while alive(state.pid) && start.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(50));
        }
        if alive(state.pid) {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        // Whatever its containers left behind in its process group.
        // SAFETY: the detached sandbox leads its own process group.
        unsafe { libc::kill(-pid, libc::SIGTERM) };
    }
    let _ = std::fs::remove_file(state_file(dir));
    eprintln!("kleidia-sandbox: stopped the sandbox in {}", dir.display());
    Ok(())
}
