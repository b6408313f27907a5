//! `pods/{name}/log`: the container's log file as `text/plain`, with
//! `container`, `follow`, `tailLines`, `limitBytes`, `timestamps` and
//! `previous` (there are never previous instances' logs: empty).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::{Request, Response, StatusCode, body::Incoming};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::{Body, SubresourceTarget, find_container, query_pairs, status_response};
use crate::controllers::pods;
use crate::registry;
use crate::runtime::{ExecIo, ExecOutcome};
use crate::state::Shared;

const POLL: Duration = Duration::from_millis(200);

#[derive(Debug, Default)]
struct LogOptions {
    container: Option<String>,
    follow: bool,
    tail_lines: Option<usize>,
    limit_bytes: Option<u64>,
    timestamps: bool,
    previous: bool,
}

fn parse(query: Option<&str>) -> Result<LogOptions, String> {
    let mut o = LogOptions::default();
    for (k, v) in query_pairs(query) {
        match k.as_str() {
            "container" => o.container = Some(v).filter(|s| !s.is_empty()),
            "follow" => o.follow = v == "true" || v == "1",
            "timestamps" => o.timestamps = v == "true" || v == "1",
            "previous" => o.previous = v == "true" || v == "1",
            "tailLines" => {
                let n: i64 = v
                    .parse()
                    .map_err(|_| format!("tailLines: invalid value {v:?}: expected a number"))?;
                o.tail_lines = if n < 0 { None } else { Some(n as usize) };
            }
            "limitBytes" => {
                let n: u64 = v
                    .parse()
                    .map_err(|_| format!("limitBytes: invalid value {v:?}: expected a number"))?;
                o.limit_bytes = Some(n);
            }
            _ => {}
        }
    }
    Ok(o)
}

pub async fn serve(
    shared: Arc<Shared>,
    target: SubresourceTarget,
    req: Request<Incoming>,
) -> Response<Body> {
    let opts = match parse(req.uri().query()) {
        Ok(o) => o,
        Err(e) => return status_response(StatusCode::BAD_REQUEST, "BadRequest", &e),
    };
    let (c, _rt) = match find_container(
        &shared,
        &target.namespace,
        &target.name,
        opts.container.as_deref(),
        false,
    ) {
        Ok(x) => x,
        Err(resp) => return *resp,
    };
    let pod = shared
        .store
        .try_get(&registry::PODS, Some(&target.namespace), &target.name);
    if opts.previous {
        // Earlier instances' output is not kept apart: a restarted
        // container has an (empty) previous log, others have none.
        let restarted = pod.as_deref().is_some_and(|p| {
            p["status"]["containerStatuses"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| s["name"] == c.container.as_str() && s["restartCount"].as_u64() > Some(0))
        });
        if restarted {
            let mut resp = Response::new(super::full(Vec::new()));
            resp.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain"),
            );
            return resp;
        }
        return status_response(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!(
                "previous terminated container \"{}\" in pod \"{}\" not found",
                c.container, c.pod
            ),
        );
    }
    let started = pod
        .as_deref()
        .map(|p| pods::container_started_once(p, &c.container))
        .unwrap_or(false);
    if !started && !c.log_path.exists() {
        let reason = pod
            .as_deref()
            .and_then(|p| pods::waiting_reason(p, &c.container))
            .unwrap_or_else(|| "ContainerCreating".to_string());
        return status_response(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!(
                "container \"{}\" in pod \"{}\" is waiting to start: {reason}",
                c.container, c.pod
            ),
        );
    }

    // Where to start reading: the beginning, or the start of the last
    // `tailLines` lines.
    let start = match opts.tail_lines {
        Some(n) => tail_offset(&c.log_path, n).await.unwrap_or(0),
        None => 0,
    };
    let uid = pod
        .as_deref()
        .and_then(|p| p["metadata"]["uid"].as_str().map(str::to_string));
    let follow_while = if opts.follow {
        let shared = shared.clone();
        let ns = target.namespace.clone();
        let name = target.name.clone();
        Some(Box::new(move || {
            // Follow as long as the same pod exists.
            shared
                .store
                .try_get(&registry::PODS, Some(&ns), &name)
                .map(|p| p["metadata"]["uid"].as_str().map(str::to_string) == uid)
                .unwrap_or(false)
        }) as Box<dyn Fn() -> bool + Send + Sync>)
    } else {
        None
    };
    let stream = file_stream(
        c.log_path.clone(),
        start,
        opts.limit_bytes,
        opts.timestamps,
        follow_while,
    );
    let body = BodyExt::boxed(StreamBody::new(stream.map(|r| r.map(Frame::data))));
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    resp
}

/// The byte offset where the last `n` lines of the file start.
async fn tail_offset(path: &PathBuf, n: usize) -> std::io::Result<u64> {
    let mut f = tokio::fs::File::open(path).await?;
    let len = f.metadata().await?.len();
    if n == 0 {
        return Ok(len);
    }
    let mut pos = len;
    let mut newlines = 0usize;
    let mut buf = vec![0u8; 8192];
    // A trailing newline ends the last line; it does not start a new one.
    let mut skip_last = true;
    while pos > 0 {
        let step = (buf.len() as u64).min(pos);
        pos -= step;
        f.seek(std::io::SeekFrom::Start(pos)).await?;
        f.read_exact(&mut buf[..step as usize]).await?;
        for i in (0..step as usize).rev() {
            if buf[i] == b'\n' {
                if skip_last && pos + i as u64 == len - 1 {
                    skip_last = false;
                    continue;
                }
                newlines += 1;
                if newlines == n {
                    return Ok(pos + i as u64 + 1);
                }
            }
        }
        skip_last = false;
    }
    Ok(0)
}

type FollowWhile = Option<Box<dyn Fn() -> bool + Send + Sync>>;

/// The file's bytes from `start`, then (when following) whatever is
/// appended, polling until `follow_while` says stop.
fn file_stream(
    path: PathBuf,
    start: u64,
    limit: Option<u64>,
    timestamps: bool,
    follow_while: FollowWhile,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    struct St {
        path: PathBuf,
        file: Option<tokio::fs::File>,
        pos: u64,
        left: Option<u64>,
        timestamps: bool,
        at_line_start: bool,
        follow_while: FollowWhile,
        done: bool,
    }
    let st = St {
        path,
        file: None,
        pos: start,
        left: limit,
        timestamps,
        at_line_start: true,
        follow_while,
        done: false,
    };
    futures::stream::unfold(st, |mut st| async move {
        if st.done {
            return None;
        }
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            if st.left == Some(0) {
                return None;
            }
            if st.file.is_none() {
                match tokio::fs::File::open(&st.path).await {
                    Ok(mut f) => {
                        if f.seek(std::io::SeekFrom::Start(st.pos)).await.is_err() {
                            return None;
                        }
                        st.file = Some(f);
                    }
                    Err(_) if st.follow_while.is_some() => {}
                    Err(_) => return None,
                }
            }
            let n = match st.file.as_mut() {
                Some(f) => match f.read(&mut buf).await {
                    Ok(n) => n,
                    Err(e) => {
                        st.done = true;
                        return Some((Err(e), st));
                    }
                },
                None => 0,
            };
            if n > 0 {
                let mut n = n;
                if let Some(left) = st.left.as_mut() {
                    n = n.min(*left as usize);
                    *left -= n as u64;
                }
                st.pos += n as u64;
                let chunk = if st.timestamps {
                    stamp(&buf[..n], &mut st.at_line_start)
                } else {
                    Bytes::copy_from_slice(&buf[..n])
                };
                return Some((Ok(chunk), st));
            }
            match &st.follow_while {
                None => return None,
                Some(f) => {
                    if !f() {
                        return None;
                    }
                    tokio::time::sleep(POLL).await;
                }
            }
        }
    })
}

/// Prefixes each line with the time it is read (RFC 3339 with
/// nanoseconds, as the kubelet writes it).
fn stamp(data: &[u8], at_line_start: &mut bool) -> Bytes {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let mut out = Vec::with_capacity(data.len() + 40);
    for &b in data {
        if *at_line_start {
            out.extend_from_slice(now.as_bytes());
            out.push(b' ');
            *at_line_start = false;
        }
        out.push(b);
        if b == b'\n' {
            *at_line_start = true;
        }
    }
    Bytes::from(out)
}

/// `attach`: the container's output from now on (its log), until the
/// client goes away. Input is accepted and ignored.
pub async fn attach(log_path: PathBuf, mut io: ExecIo) -> ExecOutcome {
    let start = tokio::fs::metadata(&log_path)
        .await
        .map(|m| m.len())
        .unwrap_or(0);
    if let Some(mut stdin) = io.stdin.take() {
        tokio::spawn(async move {
            let mut sink = tokio::io::sink();
            let _ = tokio::io::copy(&mut stdin, &mut sink).await;
        });
    }
    let mut stream = Box::pin(file_stream(
        log_path,
        start,
        None,
        false,
        Some(Box::new(|| true)),
    ));
    while let Some(Ok(chunk)) = stream.next().await {
        if io.stdout.write_all(&chunk).await.is_err() {
            break;
        }
    }
    ExecOutcome::Exit(0)
}
