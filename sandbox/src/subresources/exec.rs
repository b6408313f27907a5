//! `exec` and `attach` over the WebSocket remote-command protocols
//! (`v5.channel.k8s.io`, `v4.channel.k8s.io`), as kubectl 1.37 and kube-rs
//! speak them.
//!
//! Every message is binary; its first byte is the channel: 0 stdin,
//! 1 stdout, 2 stderr, 3 error (one `Status` JSON at the end), 4 resize.
//! v5 adds 255 "close channel" (payload: the channel number), which is how
//! a client signals end of stdin. Data is streamed through small bounded
//! pipes, so a slow reader slows the command down instead of growing memory.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use hyper::{Request, Response, StatusCode, body::Incoming};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::ws::{self, CLOSE, ERROR, RESIZE, STDERR, STDIN, STDOUT};
use super::{Body, status_response};
use crate::runtime::{ExecIo, ExecOutcome};

/// Size of each pipe between the WebSocket and the command.
const PIPE: usize = 64 * 1024;
/// Largest data frame sent to the client.
const CHUNK: usize = 32 * 1024;

/// What the client asked for in the query string.
#[derive(Debug, Clone, Default)]
pub struct StreamOptions {
    pub command: Vec<String>,
    pub container: Option<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl StreamOptions {
    pub fn from_query(query: Option<&str>) -> Self {
        let mut o = StreamOptions::default();
        for (k, v) in super::query_pairs(query) {
            match k.as_str() {
                "command" => o.command.push(v),
                "container" => o.container = Some(v).filter(|s| !s.is_empty()),
                "stdin" => o.stdin = truthy(&v),
                "stdout" => o.stdout = truthy(&v),
                "stderr" => o.stderr = truthy(&v),
                "tty" => o.tty = truthy(&v),
                _ => {}
            }
        }
        o
    }
}

fn truthy(v: &str) -> bool {
    matches!(v, "1" | "true" | "True" | "TRUE" | "yes" | "")
}

/// A command to run once the WebSocket is up: gets the streams, returns how
/// the command ended.
pub type Runner = Box<dyn FnOnce(ExecIo) -> BoxFuture<'static, ExecOutcome> + Send>;

/// Upgrades `req` and runs `runner` with the streams. `kill_after`: a fault
/// that drops the connection abruptly once that many output bytes were sent.
pub fn serve(
    mut req: Request<Incoming>,
    opts: StreamOptions,
    kill_after: Option<u64>,
    runner: Runner,
) -> Response<Body> {
    if !ws::is_websocket(req.headers()) {
        return status_response(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "this server streams exec and attach only over WebSocket \
             (v5.channel.k8s.io or v4.channel.k8s.io); SPDY is not supported: \
             use kubectl 1.31 or newer",
        );
    }
    let Some(protocol) = ws::choose(req.headers(), &[ws::V5, ws::V4]) else {
        return status_response(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!(
                "none of the offered WebSocket protocols ({}) is supported: \
                 use v5.channel.k8s.io or v4.channel.k8s.io",
                ws::offered_protocols(req.headers()).join(", ")
            ),
        );
    };
    let (resp, on_upgrade) = match ws::accept(&mut req, protocol) {
        Ok(x) => x,
        Err(resp) => return *resp,
    };
    tokio::spawn(async move {
        let Ok(socket) = ws::upgraded(on_upgrade).await else {
            return;
        };
        run_session(socket, protocol == ws::V5, opts, kill_after, runner).await;
    });
    resp
}

async fn run_session(
    socket: ws::Ws,
    v5: bool,
    opts: StreamOptions,
    kill_after: Option<u64>,
    runner: Runner,
) {
    let (mut sink, mut stream) = socket.split();
    let cancel = CancellationToken::new();
    // Frames to send, in order; bounded so output waits for the network.
    let (frame_tx, mut frame_rx) = mpsc::channel::<Message>(4);

    // Writer: the only owner of the sink.
    let writer_cancel = cancel.clone();
    let writer = tokio::spawn(async move {
        while let Some(m) = frame_rx.recv().await {
            if sink.send(m).await.is_err() {
                writer_cancel.cancel();
                return None;
            }
        }
        // A session cancelled first (exec-kill fault, vanished client) ends
        // without a close frame: a normal close would tell the client the
        // command ended well. Cancelling happens before the last frame
        // sender is dropped, so this check sees it.
        if writer_cancel.is_cancelled() {
            return None;
        }
        let _ = sink.send(ws::normal_close()).await;
        let _ = sink.flush().await;
        Some(sink)
    });

    // Let the client know the streams are established (an empty frame on
    // the lowest output channel, as the kubelet does).
    let first = if opts.stdout {
        STDOUT
    } else if opts.stderr {
        STDERR
    } else {
        ERROR
    };
    let _ = frame_tx.send(Message::binary(vec![first])).await;

    // stdin: WebSocket -> pipe -> command.
    let (stdin_io, stdin_feed) = if opts.stdin {
        let (a, b) = tokio::io::duplex(PIPE);
        (Some(Box::pin(b) as crate::runtime::BoxedReader), Some(a))
    } else {
        (None, None)
    };
    let reader_cancel = cancel.clone();
    let reader = tokio::spawn(async move {
        let mut feed = stdin_feed;
        loop {
            let msg = tokio::select! {
                m = stream.next() => m,
                _ = reader_cancel.cancelled() => break,
            };
            match msg {
                Some(Ok(Message::Binary(b))) => {
                    let Some((&ch, payload)) = b.split_first() else {
                        continue;
                    };
                    match ch {
                        STDIN => {
                            if let Some(w) = feed.as_mut()
                                && !payload.is_empty()
                                && w.write_all(payload).await.is_err()
                            {
                                // The command stopped reading stdin.
                                feed = None;
                            }
                        }
                        CLOSE if v5 && payload.first() == Some(&STDIN) => {
                            if let Some(mut w) = feed.take() {
                                let _ = w.shutdown().await;
                            }
                        }
                        RESIZE => {}
                        _ => {}
                    }
                }
                Some(Ok(Message::Close(_))) => {
                    // v4 clients close the socket to end stdin.
                    if let Some(mut w) = feed.take() {
                        let _ = w.shutdown().await;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    // The client is gone: stop the command.
                    reader_cancel.cancel();
                    break;
                }
            }
        }
        stream
    });

    // stdout/stderr: command -> pipe -> frames.
    let (out_w, out_r) = tokio::io::duplex(PIPE);
    let (err_w, err_r) = tokio::io::duplex(PIPE);
    let budget = kill_after.map(|n| Arc::new(std::sync::atomic::AtomicU64::new(n)));
    let out_pump = tokio::spawn(pump(
        out_r,
        STDOUT,
        opts.stdout,
        frame_tx.clone(),
        budget.clone(),
        cancel.clone(),
    ));
    let err_pump = tokio::spawn(pump(
        err_r,
        if opts.tty { STDOUT } else { STDERR },
        opts.stderr || opts.tty,
        frame_tx.clone(),
        budget.clone(),
        cancel.clone(),
    ));
    let io = ExecIo {
        stdin: stdin_io,
        stdout: Box::pin(out_w),
        stderr: Box::pin(err_w),
        tty: opts.tty,
    };
    let command_desc = opts.command.join(" ");
    let run = runner(io);
    let outcome = tokio::select! {
        o = run => Some(o),
        _ = cancel.cancelled() => None,
    };
    // The command is done (its writers are dropped), so the pumps see EOF
    // after sending everything it wrote.
    let (killed_a, killed_b) = tokio::join!(out_pump, err_pump);
    let killed = killed_a.unwrap_or(false) || killed_b.unwrap_or(false);

    if killed || outcome.is_none() {
        // Fault injection or a vanished client: drop the connection without
        // a status, as a dying node or a cut network would.
        cancel.cancel();
        writer.abort();
        drop(frame_tx);
        reader.abort();
        return;
    }
    let status = status_json(outcome.as_ref().expect("checked"), &command_desc);
    let mut frame = vec![ERROR];
    frame.extend_from_slice(status.to_string().as_bytes());
    let _ = frame_tx.send(Message::binary(frame)).await;
    drop(frame_tx);
    let sink = writer.await.ok().flatten();
    // Wait (briefly) for the client's close reply so unread client data does
    // not turn our close into a reset that loses output at the client.
    let stream = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let mut stream = reader.await.ok()?;
        while let Some(Ok(m)) = stream.next().await {
            if m.is_close() {
                break;
            }
        }
        Some(stream)
    })
    .await;
    cancel.cancel();
    if let (Some(sink), Ok(Some(stream))) = (sink, stream)
        && let Ok(mut ws) = sink.reunite(stream)
    {
        let _ = ws.close(None).await; // already sent: completes the handshake
    }
}

/// Copies one output pipe to frames on `channel`. Returns true when the
/// byte budget of an exec-kill fault ran out.
async fn pump(
    mut from: tokio::io::DuplexStream,
    channel: u8,
    enabled: bool,
    frames: mpsc::Sender<Message>,
    budget: Option<Arc<std::sync::atomic::AtomicU64>>,
    cancel: CancellationToken,
) -> bool {
    use std::sync::atomic::Ordering;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => return false,
                Ok(n) => n,
            },
            _ = cancel.cancelled() => return false,
        };
        if !enabled {
            continue;
        }
        let mut n = n;
        if let Some(b) = &budget {
            let left = b.load(Ordering::SeqCst);
            if (n as u64) >= left {
                n = left as usize;
                b.store(0, Ordering::SeqCst);
                if n > 0 {
                    let mut frame = Vec::with_capacity(n + 1);
                    frame.push(channel);
                    frame.extend_from_slice(&buf[..n]);
                    let _ = frames.send(Message::Binary(Bytes::from(frame))).await;
                }
                cancel.cancel();
                return true;
            }
            b.fetch_sub(n as u64, Ordering::SeqCst);
        }
        let mut frame = Vec::with_capacity(n + 1);
        frame.push(channel);
        frame.extend_from_slice(&buf[..n]);
        if frames
            .send(Message::Binary(Bytes::from(frame)))
            .await
            .is_err()
        {
            return false;
        }
    }
}

/// The `Status` sent on the error channel when the command ends.
pub fn status_json(outcome: &ExecOutcome, command: &str) -> serde_json::Value {
    match outcome {
        ExecOutcome::Exit(0) => json!({"metadata": {}, "status": "Success"}),
        ExecOutcome::Exit(code) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!(
                "command terminated with non-zero exit code: error executing command [{command}], exit code {code}"
            ),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        ExecOutcome::Failed(msg) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("Internal error occurred: error executing command in container: {msg}"),
            "reason": "InternalError",
            "details": {"causes": [{"message": format!("error executing command in container: {msg}")}]},
            "code": 500,
        }),
    }
}
