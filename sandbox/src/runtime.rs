//! What runs inside a sandbox container.
//!
//! Every container of every pod is backed by an [`ImageRuntime`], chosen by
//! the container's image. The default runtime runs a few shell utilities in a
//! per-container scratch folder; part 2 plugs in real PostgreSQL, OpenBao and
//! the Kleidia backend. Exec, attach, port-forward, the service/pod proxy and
//! the log subresource all go through this one trait.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};

/// A byte stream both ways: what port-forward and the proxy talk to.
pub trait DuplexStream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> DuplexStream for T {}

pub type BoxedStream = Pin<Box<dyn DuplexStream>>;
pub type BoxedReader = Pin<Box<dyn AsyncRead + Send>>;
pub type BoxedWriter = Pin<Box<dyn AsyncWrite + Send>>;

/// One container of one pod, as a runtime sees it.
#[derive(Clone, Debug)]
pub struct ContainerRef {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub image: String,
    /// The container's literal `env` (values from `valueFrom` are resolved
    /// from Secrets/ConfigMaps when possible, otherwise left out).
    pub env: BTreeMap<String, String>,
    /// Ports the container declares (`containerPort`).
    pub ports: Vec<u16>,
    /// The container's `command` followed by its `args` (empty: the
    /// image's own entrypoint), so a runtime knows what the process is.
    pub command: Vec<String>,
    /// A folder owned by this container. Keyed by namespace/pod/container, so
    /// a StatefulSet pod that is recreated under the same name finds its data
    /// again, as a PersistentVolume would.
    pub root: PathBuf,
    /// Append-only log file; the `log` subresource reads it.
    pub log_path: PathBuf,
}

impl ContainerRef {
    /// The image's repository name without registry prefix or tag:
    /// `ghcr.io/x/postgres:16` -> `postgres`.
    pub fn image_name(&self) -> &str {
        image_name(&self.image)
    }

    /// The image's tag (`latest` when none).
    pub fn image_tag(&self) -> &str {
        image_tag(&self.image)
    }
}

pub fn image_name(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last.split(':').next().unwrap_or(last)
}

pub fn image_tag(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last.split_once(':').map(|(_, t)| t).unwrap_or("latest")
}

/// The streams of one exec or attach. `stdin` is `None` when the client did
/// not ask for it; the runtime must treat end-of-stream on stdin as EOF.
pub struct ExecIo {
    pub stdin: Option<BoxedReader>,
    pub stdout: BoxedWriter,
    pub stderr: BoxedWriter,
    pub tty: bool,
}

/// How an exec ended. `Exit(0)` is success; `Exit(n)` is reported on the
/// error channel as `NonZeroExitCode`; `Failed` as a plain failure (for
/// example "executable file not found").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecOutcome {
    Exit(i32),
    Failed(String),
}

/// What [`ImageRuntime::start`] returns when the container's main process
/// ran and exited at once with `code`, having written its own reason to the
/// container log (PostgreSQL refusing a data directory of another major):
/// the kubelet reports a container that started and terminated, not one
/// that failed to start.
#[derive(Debug, thiserror::Error)]
#[error("the container's main process exited with code {code}")]
pub struct ContainerExited {
    pub code: i32,
}

/// The behaviour of containers whose image matches.
pub trait ImageRuntime: Send + Sync + 'static {
    /// A short name for logs and errors.
    fn name(&self) -> &'static str;

    /// Whether this runtime backs `image`.
    fn matches(&self, image: &str) -> bool;

    /// Called when the pod starts, before it is reported Ready. An error
    /// keeps the container from becoming ready (and is logged to its log).
    fn start<'a>(&'a self, c: &'a ContainerRef) -> BoxFuture<'a, anyhow::Result<()>> {
        let _ = c;
        Box::pin(async { Ok(()) })
    }

    /// Called when the pod is deleted. Data under `c.root` is kept.
    fn stop<'a>(&'a self, c: &'a ContainerRef) -> BoxFuture<'a, ()> {
        let _ = c;
        Box::pin(async {})
    }

    /// Whether the container is ready now (readiness probe).
    fn ready<'a>(&'a self, c: &'a ContainerRef) -> BoxFuture<'a, bool> {
        let _ = c;
        Box::pin(async { true })
    }

    /// Runs `command` in the container.
    fn exec<'a>(
        &'a self,
        c: &'a ContainerRef,
        command: Vec<String>,
        io: ExecIo,
    ) -> BoxFuture<'a, ExecOutcome>;

    /// Opens a connection to `port` inside the pod (port-forward, proxy).
    fn connect<'a>(
        &'a self,
        c: &'a ContainerRef,
        port: u16,
    ) -> BoxFuture<'a, std::io::Result<BoxedStream>> {
        let _ = c;
        Box::pin(async move {
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                format!("nothing listens on port {port}"),
            ))
        })
    }
}

/// Runtimes in priority order; the first whose `matches` says yes wins, and
/// the last one is expected to match everything.
#[derive(Clone, Default)]
pub struct Runtimes {
    list: Vec<Arc<dyn ImageRuntime>>,
}

impl Runtimes {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a runtime that takes precedence over those added before it.
    pub fn register(&mut self, rt: Arc<dyn ImageRuntime>) {
        self.list.insert(0, rt);
    }

    pub fn for_image(&self, image: &str) -> Option<Arc<dyn ImageRuntime>> {
        self.list.iter().find(|r| r.matches(image)).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_and_tags() {
        assert_eq!(image_name("postgres"), "postgres");
        assert_eq!(image_name("docker.io/library/postgres:15.4"), "postgres");
        assert_eq!(image_tag("docker.io/library/postgres:15.4"), "15.4");
        assert_eq!(
            image_name("localhost:5000/openbao/openbao:2.4.1"),
            "openbao"
        );
        assert_eq!(image_tag("localhost:5000/openbao/openbao:2.4.1"), "2.4.1");
        assert_eq!(image_tag("openbao/openbao"), "latest");
        assert_eq!(image_name("x/y@sha256:abc"), "y");
    }
}
