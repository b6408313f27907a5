//! Running a command in a container over the API server's exec subresource
//! (WebSocket, no TTY), with stdout as a stream so large outputs (a
//! `pg_dumpall`) flow through without being held in memory.
//!
//! ```no_run
//! # async fn f(client: kube::Client) -> Result<(), Box<dyn std::error::Error>> {
//! use kleidia::cluster::{ApiEndpoint, exec::ExecStream};
//! use tokio::io::AsyncReadExt;
//! let mut exec = ExecStream::start(
//!     &client, &ApiEndpoint::default(), "kleidia", "pg-0", Some("postgres"),
//!     &["pg_dumpall", "-U", "yubiuser"], false,
//! ).await?;
//! let mut stdout = exec.take_stdout().unwrap();
//! let mut sink = tokio::io::sink();
//! tokio::io::copy(&mut stdout, &mut sink).await?;
//! let outcome = exec.finish().await?;
//! assert!(outcome.success(), "{}", outcome.describe());
//! # Ok(()) }
//! ```

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::{AttachParams, AttachedProcess};
use kube::{Api, Resource};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};

use super::{ApiEndpoint, ClusterError};

/// How much of stderr is kept; the rest is counted, not stored.
pub const STDERR_LIMIT: usize = 64 * 1024;
/// Pipe size between the WebSocket and the reader.
const PIPE_SIZE: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("the exec stream of {command:?} in pod {pod} broke: {cause}")]
    Stream {
        pod: String,
        command: String,
        cause: String,
    },
    #[error("reading the output of {command:?} in pod {pod} failed: {cause}")]
    Read {
        pod: String,
        command: String,
        cause: String,
    },
}

/// How the command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitStatus {
    /// The process exited with this code (0 is success).
    Code(i32),
    /// The command could not run (e.g. executable not found) or the
    /// container runtime reported another failure.
    Failed(String),
}

/// Standard error, bounded to [`STDERR_LIMIT`] bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapturedStderr {
    pub bytes: Vec<u8>,
    /// Bytes that were dropped after the limit.
    pub dropped: u64,
}

impl CapturedStderr {
    pub fn text(&self) -> String {
        let mut s = String::from_utf8_lossy(&self.bytes).trim().to_string();
        if self.dropped > 0 {
            s.push_str(&format!(" [... {} more bytes]", self.dropped));
        }
        s
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutcome {
    pub status: ExitStatus,
    pub stderr: CapturedStderr,
}

impl ExecOutcome {
    pub fn success(&self) -> bool {
        self.status == ExitStatus::Code(0)
    }

    pub fn code(&self) -> Option<i32> {
        match self.status {
            ExitStatus::Code(c) => Some(c),
            ExitStatus::Failed(_) => None,
        }
    }

    /// Whether the executable does not exist in the container.
    pub fn not_found(&self) -> bool {
        let text = match &self.status {
            ExitStatus::Failed(m) => m.to_ascii_lowercase(),
            // Shells report a missing command as 127.
            ExitStatus::Code(127) => return true,
            ExitStatus::Code(_) => return false,
        };
        text.contains("not found") || text.contains("no such file")
    }

    /// One line for messages: exit code or failure, and stderr.
    pub fn describe(&self) -> String {
        let head = match &self.status {
            ExitStatus::Code(c) => format!("exit code {c}"),
            ExitStatus::Failed(m) => format!("failed: {m}"),
        };
        let err = self.stderr.text();
        if err.is_empty() {
            head
        } else {
            format!("{head}; stderr: {err}")
        }
    }
}

/// A command's standard output.
pub type BoxedStdout = Pin<Box<dyn AsyncRead + Send>>;

/// A running command: read stdout with [`ExecStream::take_stdout`] (an
/// `AsyncRead`), optionally write stdin, then [`ExecStream::finish`] for the
/// exit status and the captured stderr.
pub struct ExecStream {
    pod: String,
    command: String,
    stdout: Option<BoxedStdout>,
    stdin: Option<Pin<Box<dyn AsyncWrite + Send>>>,
    stderr: Option<JoinHandle<CapturedStderr>>,
    status: Option<BoxFuture<'static, Option<Status>>>,
    process: AttachedProcess,
}

impl ExecStream {
    /// Starts `command` in `pod` (and `container`, if the pod has several).
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        client: &kube::Client,
        api: &ApiEndpoint,
        namespace: &str,
        pod: &str,
        container: Option<&str>,
        command: &[&str],
        with_stdin: bool,
    ) -> Result<Self, ClusterError> {
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let params = attach_params(container, with_stdin)
            .max_stdout_buf_size(PIPE_SIZE)
            .max_stderr_buf_size(PIPE_SIZE)
            .max_stdin_buf_size(PIPE_SIZE);
        let mut process = pods
            .exec(pod, command.iter().copied(), &params)
            .await
            .map_err(|e| {
                ClusterError::from_kube(
                    e,
                    api,
                    &format!("create pods/exec in namespace {namespace}"),
                    &format!("pod {namespace}/{pod}"),
                )
            })?;
        let stdout = process.stdout().map(|r| Box::pin(r) as BoxedStdout);
        let stdin = process
            .stdin()
            .map(|w| Box::pin(w) as Pin<Box<dyn AsyncWrite + Send>>);
        let stderr = process.stderr().map(|r| tokio::spawn(capture_bounded(r)));
        let status = process.take_status().map(|f| f.boxed());
        Ok(Self {
            pod: format!("{namespace}/{pod}"),
            command: command.join(" "),
            stdout,
            stdin,
            stderr,
            status,
            process,
        })
    }

    /// The command's standard output. Read it to the end before
    /// [`ExecStream::finish`].
    pub fn take_stdout(&mut self) -> Option<BoxedStdout> {
        self.stdout.take()
    }

    /// The command's standard input (only if started `with_stdin`); shut it
    /// down to signal end-of-file.
    pub fn take_stdin(&mut self) -> Option<Pin<Box<dyn AsyncWrite + Send>>> {
        self.stdin.take()
    }

    /// Waits for the command to end. Output not taken is discarded.
    pub async fn finish(mut self) -> Result<ExecOutcome, ExecError> {
        drop(self.stdin.take());
        if let Some(mut out) = self.stdout.take() {
            tokio::io::copy(&mut out, &mut tokio::io::sink())
                .await
                .map_err(|e| self.read_error(e))?;
        }
        let status = match self.status.take() {
            Some(f) => f.await,
            None => None,
        };
        let stderr = match self.stderr.take() {
            Some(h) => h.await.unwrap_or_default(),
            None => CapturedStderr::default(),
        };
        let pod = self.pod.clone();
        let command = self.command.clone();
        let joined = self.process.join().await;
        let status = match status {
            Some(s) => exit_status(&s),
            None => match joined {
                Ok(()) => ExitStatus::Code(0),
                Err(e) => {
                    return Err(ExecError::Stream {
                        pod,
                        command,
                        cause: super::error_chain(&e),
                    });
                }
            },
        };
        Ok(ExecOutcome { status, stderr })
    }

    fn read_error(&self, e: std::io::Error) -> ExecError {
        ExecError::Read {
            pod: self.pod.clone(),
            command: self.command.clone(),
            cause: e.to_string(),
        }
    }
}

/// Output of a short command, held in memory.
#[derive(Debug, Clone)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub outcome: ExecOutcome,
}

impl ExecOutput {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).trim().to_string()
    }
}

/// Runs a short command and collects its output (stdout up to `limit`
/// bytes; more is an error, since callers expect small answers).
pub async fn run(
    client: &kube::Client,
    api: &ApiEndpoint,
    namespace: &str,
    pod: &str,
    container: Option<&str>,
    command: &[&str],
    limit: usize,
) -> Result<ExecOutput, ExecError> {
    let mut exec =
        ExecStream::start(client, api, namespace, pod, container, command, false).await?;
    let mut stdout = Vec::new();
    if let Some(out) = exec.take_stdout() {
        let mut limited = out.take(limit as u64 + 1);
        limited
            .read_to_end(&mut stdout)
            .await
            .map_err(|e| exec.read_error(e))?;
        if stdout.len() > limit {
            return Err(ExecError::Read {
                pod: exec.pod.clone(),
                command: exec.command.clone(),
                cause: format!("more than {limit} bytes of output"),
            });
        }
    }
    let outcome = exec.finish().await?;
    Ok(ExecOutput { stdout, outcome })
}

async fn capture_bounded(mut r: impl AsyncRead + Unpin) -> CapturedStderr {
    let mut captured = CapturedStderr::default();
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = STDERR_LIMIT.saturating_sub(captured.bytes.len());
                let keep = room.min(n);
                captured.bytes.extend_from_slice(&buf[..keep]);
                captured.dropped += (n - keep) as u64;
            }
        }
    }
    captured
}

/// How a [`stream_stdout`] command ended, known once its stdout was read to
/// the end.
pub type OutcomeFuture = BoxFuture<'static, Result<ExecOutcome, ExecError>>;

/// Exec parameters: stdout and stderr, no TTY, stdin if asked for.
fn attach_params(container: Option<&str>, stdin: bool) -> AttachParams {
    let params = AttachParams::default()
        .stdin(stdin)
        .stdout(true)
        .stderr(true)
        .tty(false);
    match container {
        Some(c) => params.container(c),
        None => params,
    }
}

/// Starts `command` in `pod` and reads its stdout straight off the
/// WebSocket frames: no pipe, no background task and one copy per frame
/// (into the caller's buffer), for bulk output such as a `pg_dumpall`.
/// Stderr is captured (bounded) and the exit status taken from the status
/// channel as the stream is read; the returned future yields them once
/// stdout has ended. The command gets no stdin and no TTY.
pub async fn stream_stdout(
    client: &kube::Client,
    api: &ApiEndpoint,
    namespace: &str,
    pod: &str,
    container: Option<&str>,
    command: &[&str],
) -> Result<(BoxedStdout, OutcomeFuture), ClusterError> {
    let params = attach_params(container, false);
    let action = format!("create pods/exec in namespace {namespace}");
    let object = format!("pod {namespace}/{pod}");
    let request = kube::core::Request::new(Pod::url_path(&(), Some(namespace)))
        .exec(pod, command.iter().copied(), &params)
        .map_err(|e| {
            ClusterError::from_kube(kube::Error::BuildRequest(e), api, &action, &object)
        })?;
    let connection = client
        .connect(request)
        .await
        .map_err(|e| ClusterError::from_kube(e, api, &action, &object))?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let reader = FrameReader {
        frames: connection.into_stream(),
        pending: bytes::Bytes::new(),
        stderr: CapturedStderr::default(),
        status: None,
        report: Some(tx),
        failed: None,
        keepalive: keepalive(),
        ping_due: false,
    };
    let pod = format!("{namespace}/{pod}");
    let shown = command.join(" ");
    let outcome = async move {
        match rx.await {
            Ok(Ok((status, stderr))) => Ok(ExecOutcome { status, stderr }),
            Ok(Err(cause)) => Err(ExecError::Stream {
                pod,
                command: shown,
                cause,
            }),
            Err(_) => Err(ExecError::Read {
                pod,
                command: shown,
                cause: "the output was not read to its end".into(),
            }),
        }
    };
    Ok((Box::pin(reader), outcome.boxed()))
}

/// What a finished [`FrameReader`] reports: the exit status and stderr, or
/// why the stream broke.
type FrameReport = Result<(ExitStatus, CapturedStderr), String>;

/// Stdout of an exec, read from the WebSocket frames of the
/// `channel.k8s.io` protocols (v4/v5): a frame's first byte names the
/// channel (1 stdout, 2 stderr, 3 status).
struct FrameReader<S> {
    frames: S,
    /// The rest of the last stdout frame not yet handed out.
    pending: bytes::Bytes,
    stderr: CapturedStderr,
    status: Option<Status>,
    /// Taken when the stream ends.
    report: Option<tokio::sync::oneshot::Sender<FrameReport>>,
    /// A stream error not yet returned (data read before it came first).
    failed: Option<String>,
    /// Pings while the command is quiet, so load balancers in front of the
    /// API server (often 60 s idle limits) keep the connection.
    keepalive: tokio::time::Interval,
    /// A ping waiting to be sent.
    ping_due: bool,
}

/// How often a quiet exec stream is pinged.
const KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(30);

fn keepalive() -> tokio::time::Interval {
    let mut i = tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE);
    i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    i
}

impl<S> FrameReader<S>
where
    S: futures::Sink<WsMessage, Error = WsError> + Unpin,
{
    /// Sends a ping when one is due; never blocks the read (a ping that
    /// cannot go out now goes out on a later call).
    fn poll_keepalive(&mut self, cx: &mut Context<'_>) {
        while self.keepalive.poll_tick(cx).is_ready() {
            self.ping_due = true;
        }
        if self.ping_due
            && let Poll::Ready(Ok(())) = Pin::new(&mut self.frames).poll_ready(cx)
        {
            self.ping_due = false;
            let _ = Pin::new(&mut self.frames).start_send(WsMessage::Ping(Default::default()));
        }
        // Errors here surface on the read side.
        let _ = Pin::new(&mut self.frames).poll_flush(cx);
    }
}

const STDOUT_CHANNEL: u8 = 1;
const STDERR_CHANNEL: u8 = 2;
const STATUS_CHANNEL: u8 = 3;

impl<S> FrameReader<S> {
    fn end(&mut self, result: Result<(), String>) {
        if let Some(tx) = self.report.take() {
            let report = result.map(|()| {
                // The API server always ends an exec with a status on
                // channel 3; a stream that closes without one was cut.
                let status = match &self.status {
                    Some(s) => exit_status(s),
                    None => ExitStatus::Failed(
                        "the connection closed before the command's exit status arrived".into(),
                    ),
                };
                (status, std::mem::take(&mut self.stderr))
            });
            let _ = tx.send(report);
        }
    }
}

impl<S> AsyncRead for FrameReader<S>
where
    S: futures::Stream<Item = Result<WsMessage, WsError>>
        + futures::Sink<WsMessage, Error = WsError>
        + Unpin,
{
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        // Fills `buf` with as many frames as have already arrived, so a
        // large read costs one wake-up rather than one per frame.
        let start = buf.filled().len();
        loop {
            if !this.pending.is_empty() {
                let n = this.pending.len().min(buf.remaining());
                buf.put_slice(&this.pending.split_to(n));
                if buf.remaining() == 0 {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            if let Some(cause) = this.failed.take() {
                if buf.filled().len() > start {
                    // Hand out what arrived first; the error comes next.
                    this.failed = Some(cause);
                    return Poll::Ready(Ok(()));
                }
                return Poll::Ready(Err(std::io::Error::other(cause)));
            }
            if this.report.is_none() {
                return Poll::Ready(Ok(()));
            }
            let next = match Pin::new(&mut this.frames).poll_next(cx) {
                Poll::Pending if buf.filled().len() > start => return Poll::Ready(Ok(())),
                Poll::Pending => {
                    this.poll_keepalive(cx);
                    return Poll::Pending;
                }
                Poll::Ready(next) => next,
            };
            let frame = match next {
                None => {
                    this.end(Ok(()));
                    return Poll::Ready(Ok(()));
                }
                Some(Err(e)) => {
                    let cause = e.to_string();
                    this.end(Err(cause.clone()));
                    this.failed = Some(cause);
                    continue;
                }
                Some(Ok(WsMessage::Binary(frame))) if frame.len() > 1 => frame,
                // Channel-only frames open the stream; pings are answered by
                // the WebSocket layer; the server only sends binary frames.
                Some(Ok(_)) => continue,
            };
            match frame[0] {
                STDOUT_CHANNEL => this.pending = frame.slice(1..),
                STDERR_CHANNEL => {
                    let data = &frame[1..];
                    let room = STDERR_LIMIT.saturating_sub(this.stderr.bytes.len());
                    let keep = room.min(data.len());
                    this.stderr.bytes.extend_from_slice(&data[..keep]);
                    this.stderr.dropped += (data.len() - keep) as u64;
                }
                STATUS_CHANNEL => {
                    match serde_json::from_slice::<Status>(&frame[1..]) {
                        Ok(status) => this.status = Some(status),
                        Err(e) => {
                            let cause = format!("the exit status could not be read: {e}");
                            this.end(Err(cause.clone()));
                            this.failed = Some(cause);
                            continue;
                        }
                    }
                    // The status is the last thing the server sends.
                    this.end(Ok(()));
                    return Poll::Ready(Ok(()));
                }
                _ => {}
            }
        }
    }
}

/// Maps the exec status channel's `Status` to an exit status, as kubectl
/// does: `NonZeroExitCode` carries the code in `details.causes`.
pub fn exit_status(status: &Status) -> ExitStatus {
    if status.status.as_deref() == Some("Success") {
        return ExitStatus::Code(0);
    }
    if status.reason.as_deref() == Some("NonZeroExitCode")
        && let Some(code) = status
            .details
            .as_ref()
            .and_then(|d| d.causes.as_ref())
            .and_then(|causes| {
                causes
                    .iter()
                    .find(|c| c.reason.as_deref() == Some("ExitCode"))
                    .and_then(|c| c.message.as_deref())
                    .and_then(|m| m.trim().parse::<i32>().ok())
            })
    {
        return ExitStatus::Code(code);
    }
    ExitStatus::Failed(
        status
            .message
            .clone()
            .unwrap_or_else(|| "the container runtime reported a failure".into()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{StatusCause, StatusDetails};

    #[test]
    fn status_channel_maps_to_exit_codes() {
        let ok = Status {
            status: Some("Success".into()),
            ..Default::default()
        };
        assert_eq!(exit_status(&ok), ExitStatus::Code(0));
        let sealed = Status {
            status: Some("Failure".into()),
            reason: Some("NonZeroExitCode".into()),
            message: Some("command terminated with non-zero exit code: 2".into()),
            details: Some(StatusDetails {
                causes: Some(vec![StatusCause {
                    reason: Some("ExitCode".into()),
                    message: Some("2".into()),
                    field: None,
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(exit_status(&sealed), ExitStatus::Code(2));
        let missing = Status {
            status: Some("Failure".into()),
            message: Some("executable file not found in $PATH".into()),
            ..Default::default()
        };
        let out = ExecOutcome {
            status: exit_status(&missing),
            stderr: CapturedStderr::default(),
        };
        assert!(out.not_found());
        assert!(!out.success());
    }

    fn frame(channel: u8, data: &[u8]) -> Result<WsMessage, WsError> {
        let mut v = vec![channel];
        v.extend_from_slice(data);
        Ok(WsMessage::binary(v))
    }

    /// A WebSocket stand-in: hands out `frames`, then ends (or stays quiet
    /// with `quiet`); records what is sent.
    struct Frames {
        frames: std::collections::VecDeque<Result<WsMessage, WsError>>,
        quiet: bool,
        sent: std::sync::Arc<std::sync::Mutex<Vec<WsMessage>>>,
    }

    impl futures::Stream for Frames {
        type Item = Result<WsMessage, WsError>;
        fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            match self.frames.pop_front() {
                Some(f) => Poll::Ready(Some(f)),
                None if self.quiet => Poll::Pending,
                None => Poll::Ready(None),
            }
        }
    }

    impl futures::Sink<WsMessage> for Frames {
        type Error = WsError;
        fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), WsError>> {
            Poll::Ready(Ok(()))
        }
        fn start_send(self: Pin<&mut Self>, item: WsMessage) -> Result<(), WsError> {
            self.sent.lock().unwrap().push(item);
            Ok(())
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), WsError>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), WsError>> {
            Poll::Ready(Ok(()))
        }
    }

    fn reader(
        frames: Vec<Result<WsMessage, WsError>>,
    ) -> (
        FrameReader<Frames>,
        tokio::sync::oneshot::Receiver<FrameReport>,
    ) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let r = FrameReader {
            frames: Frames {
                frames: frames.into(),
                quiet: false,
                sent: Default::default(),
            },
            pending: bytes::Bytes::new(),
            stderr: CapturedStderr::default(),
            status: None,
            report: Some(tx),
            failed: None,
            keepalive: keepalive(),
            ping_due: false,
        };
        (r, rx)
    }

    #[tokio::test]
    async fn a_quiet_command_is_pinged() {
        let (mut r, _rx) = reader(vec![frame(STDOUT_CHANNEL, b"first")]);
        r.frames.quiet = true;
        let period = std::time::Duration::from_millis(20);
        r.keepalive = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        let mut buf = [0u8; 16];
        assert_eq!(r.read(&mut buf).await.unwrap(), 5);
        // Nothing more arrives; the read waits, and pings go out meanwhile.
        let waited = tokio::time::timeout(period * 5, r.read(&mut buf)).await;
        assert!(waited.is_err(), "the read returned without data");
        let sent = r.frames.sent.lock().unwrap();
        assert!(
            !sent.is_empty() && sent.iter().all(|m| matches!(m, WsMessage::Ping(_))),
            "{sent:?}"
        );
    }

    #[tokio::test]
    async fn frames_become_stdout_stderr_and_a_status() {
        let status = br#"{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"4"}]}}"#;
        let (mut r, rx) = reader(vec![
            Ok(WsMessage::binary(vec![STDOUT_CHANNEL])),
            frame(STDOUT_CHANNEL, b"hello "),
            frame(STDERR_CHANNEL, b"warning"),
            Ok(WsMessage::Ping(Default::default())),
            frame(STDOUT_CHANNEL, b"world"),
            frame(STATUS_CHANNEL, status),
        ]);
        // One read takes every frame that has arrived.
        let mut buf = [0u8; 64];
        let n = r.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"hello world");
        assert_eq!(r.read(&mut buf).await.unwrap(), 0);
        let (status, stderr) = rx.await.unwrap().unwrap();
        assert_eq!(status, ExitStatus::Code(4));
        assert_eq!(stderr.text(), "warning");
    }

    #[tokio::test]
    async fn small_reads_keep_the_rest_of_a_frame() {
        let (mut r, _rx) = reader(vec![frame(STDOUT_CHANNEL, b"abcdef")]);
        let mut buf = [0u8; 4];
        let n = r.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"abcd");
        let n = r.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"ef");
    }

    #[tokio::test]
    async fn a_stream_without_status_or_with_an_error_is_not_a_success() {
        let (mut r, rx) = reader(vec![frame(STDOUT_CHANNEL, b"partial")]);
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"partial");
        let (status, _) = rx.await.unwrap().unwrap();
        assert!(matches!(status, ExitStatus::Failed(m) if m.contains("exit status")));

        let (mut r, rx) = reader(vec![
            frame(STDOUT_CHANNEL, b"data"),
            Err(WsError::ConnectionClosed),
        ]);
        let mut buf = [0u8; 64];
        // The data that arrived comes first, then the error.
        assert_eq!(r.read(&mut buf).await.unwrap(), 4);
        assert!(r.read(&mut buf).await.is_err());
        assert!(rx.await.unwrap().is_err());
    }

    #[tokio::test]
    async fn stderr_capture_is_bounded() {
        let data = vec![b'x'; STDERR_LIMIT + 100];
        let c = capture_bounded(&data[..]).await;
        assert_eq!(c.bytes.len(), STDERR_LIMIT);
        assert_eq!(c.dropped, 100);
        assert!(c.text().ends_with("[... 100 more bytes]"));
    }
}

#[cfg(test)]
mod send_tests {
    #[test]
    fn streams_can_move_between_tasks() {
        fn is_send<T: Send + 'static>() {}
        is_send::<super::ExecStream>();
        is_send::<crate::cluster::portforward::PortForwardStream>();
    }
}
