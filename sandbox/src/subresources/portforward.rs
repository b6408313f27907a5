//! `pods/{name}/portforward` over WebSocket, as kube-rs's
//! `Api::<Pod>::portforward` speaks it: `ports=` lists the ports; port `i`
//! uses channel `2*i` for data and `2*i+1` for errors, and the first frame
//! the server sends on each channel carries the port number as two bytes,
//! little-endian. Data frames are `[channel, bytes...]` both ways.

use std::sync::Arc;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use hyper::{Request, Response, StatusCode, body::Incoming};
use tokio::io::{AsyncReadExt, AsyncWriteExt, WriteHalf};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::{Body, SubresourceTarget, find_container, query_pairs, status_response, ws};
use crate::runtime::BoxedStream;
use crate::state::Shared;

pub async fn serve(
    shared: Arc<Shared>,
    target: SubresourceTarget,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let mut ports: Vec<u16> = Vec::new();
    for (k, v) in query_pairs(req.uri().query()) {
        if k == "ports" {
            for p in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                match p.parse::<u16>() {
                    Ok(n) if n > 0 => ports.push(n),
                    _ => {
                        return status_response(
                            StatusCode::BAD_REQUEST,
                            "BadRequest",
                            &format!("invalid port {p:?}: ports must be numbers from 1 to 65535"),
                        );
                    }
                }
            }
        }
    }
    if ports.is_empty() {
        return status_response(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "at least one port must be given with ports=",
        );
    }
    if !ws::is_websocket(req.headers()) {
        return status_response(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "this server forwards ports only over WebSocket (v4.channel.k8s.io); SPDY is not supported",
        );
    }
    let Some(protocol) = ws::choose(req.headers(), &[ws::V4, ws::PORT_FORWARD, ws::V5]) else {
        return status_response(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!(
                "none of the offered WebSocket protocols ({}) is supported: use v4.channel.k8s.io",
                ws::offered_protocols(req.headers()).join(", ")
            ),
        );
    };
    // Each port goes to the container that declares it, else the first.
    let mut targets = Vec::with_capacity(ports.len());
    let pod = match shared.store.get(
        &crate::registry::PODS,
        Some(&target.namespace),
        &target.name,
    ) {
        Ok(p) => p,
        Err(e) => return super::api_error_response(&e),
    };
    for &port in &ports {
        let container = pod["spec"]["containers"]
            .as_array()
            .and_then(|cs| {
                cs.iter().find(|c| {
                    c["ports"].as_array().is_some_and(|ps| {
                        ps.iter()
                            .any(|p| p["containerPort"].as_u64() == Some(port as u64))
                    })
                })
            })
            .and_then(|c| c["name"].as_str())
            .map(str::to_string);
        match find_container(
            &shared,
            &target.namespace,
            &target.name,
            container.as_deref(),
            true,
        ) {
            Ok(x) => targets.push(x),
            Err(resp) => return *resp,
        }
    }
    let (resp, on_upgrade) = match ws::accept(&mut req, protocol) {
        Ok(x) => x,
        Err(resp) => return *resp,
    };
    let pod_desc = format!(
        "{}_{}, uid {}",
        target.name,
        target.namespace,
        pod["metadata"]["uid"].as_str().unwrap_or("")
    );
    tokio::spawn(async move {
        let Ok(socket) = ws::upgraded(on_upgrade).await else {
            return;
        };
        session(socket, ports, targets, pod_desc).await;
    });
    resp
}

async fn session(
    socket: ws::Ws,
    ports: Vec<u16>,
    targets: Vec<(
        crate::runtime::ContainerRef,
        Arc<dyn crate::runtime::ImageRuntime>,
    )>,
    pod_desc: String,
) {
    let (mut sink, mut stream) = socket.split();
    let (frame_tx, mut frame_rx) = mpsc::channel::<Message>(8);
    let writer = tokio::spawn(async move {
        while let Some(m) = frame_rx.recv().await {
            if sink.send(m).await.is_err() {
                return;
            }
        }
        let _ = sink.send(ws::normal_close()).await;
    });

    // The port announcement on both channels of every port.
    for (i, port) in ports.iter().enumerate() {
        let le = port.to_le_bytes();
        for ch in [2 * i as u8, 2 * i as u8 + 1] {
            let _ = frame_tx.send(Message::binary(vec![ch, le[0], le[1]])).await;
        }
    }

    let mut writers: Vec<Option<WriteHalf<BoxedStream>>> = Vec::with_capacity(ports.len());
    let mut readers = Vec::new();
    for (i, ((c, rt), port)) in targets.into_iter().zip(ports.iter().copied()).enumerate() {
        let data_ch = 2 * i as u8;
        match rt.connect(&c, port).await {
            Ok(conn) => {
                let (mut r, w) = tokio::io::split(conn);
                writers.push(Some(w));
                let tx = frame_tx.clone();
                readers.push(tokio::spawn(async move {
                    let mut buf = vec![0u8; 32 * 1024];
                    loop {
                        match r.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                let mut f = Vec::with_capacity(n + 1);
                                f.push(data_ch);
                                f.extend_from_slice(&buf[..n]);
                                if tx.send(Message::Binary(Bytes::from(f))).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                }));
            }
            Err(e) => {
                writers.push(None);
                let msg = format!(
                    "error forwarding port {port} to pod {pod_desc}: failed to connect to localhost:{port} inside namespace: {e}"
                );
                let mut f = vec![data_ch + 1];
                f.extend_from_slice(msg.as_bytes());
                let _ = frame_tx.send(Message::binary(f)).await;
            }
        }
    }

    // Client -> pod, until the client closes, or every pod connection has
    // ended (then the socket is closed, which ends the client's streams).
    let aborts: Vec<_> = readers.iter().map(|h| h.abort_handle()).collect();
    let all_done = {
        let handles = std::mem::take(&mut readers);
        async move {
            for h in handles {
                let _ = h.await;
            }
        }
    };
    tokio::pin!(all_done);
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    let Some((&ch, payload)) = b.split_first() else { continue };
                    let idx = (ch / 2) as usize;
                    if ch % 2 == 0
                        && let Some(Some(w)) = writers.get_mut(idx)
                        && w.write_all(payload).await.is_err()
                    {
                        writers[idx] = None;
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            _ = &mut all_done => break,
        }
    }
    for w in writers.iter_mut().flatten() {
        let _ = w.shutdown().await;
    }
    for a in aborts {
        a.abort();
    }
    drop(frame_tx);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), writer).await;
}
