//! Pod subresources beyond exec: the pod and service proxy (real kubectl),
//! port-forward over WebSocket as kube-rs speaks it, exec with the v4
//! protocol kube-rs falls back to, `logs -f` and `attach` following a
//! container's output.

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use kleidia_sandbox::runtime::{BoxedStream, ContainerRef, ExecIo, ExecOutcome, ImageRuntime};
use kleidia_sandbox::runtimes::ShellRuntime;
use kleidia_sandbox::server::{Sandbox, SandboxOptions};
use support::Kubectl;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest};

/// Image `demo/echo-http`: serves HTTP on container port 8080 (answers
/// with the method, path and pod name) and echoes bytes on port 9000.
#[derive(Default)]
struct EchoRuntime {
    listeners: Mutex<HashMap<(String, u16), u16>>,
}

async fn serve_http(listener: tokio::net::TcpListener, pod: String) {
    while let Ok((mut s, _)) = listener.accept().await {
        let pod = pod.clone();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let head = String::from_utf8_lossy(&buf).to_string();
            let first = head.lines().next().unwrap_or("").to_string();
            let mut parts = first.split_whitespace();
            let method = parts.next().unwrap_or("");
            let path = parts.next().unwrap_or("");
            let auth = head.to_ascii_lowercase().contains("\nauthorization:");
            let body = format!(
                "{{\"method\":\"{method}\",\"path\":\"{path}\",\"pod\":\"{pod}\",\"sawAuthorization\":{auth}}}"
            );
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes()).await;
            let _ = s.shutdown().await;
        });
    }
}

async fn serve_echo(listener: tokio::net::TcpListener) {
    while let Ok((s, _)) = listener.accept().await {
        tokio::spawn(async move {
            let (mut r, mut w) = s.into_split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
        });
    }
}

impl ImageRuntime for EchoRuntime {
    fn name(&self) -> &'static str {
        "echo"
    }

    fn matches(&self, image: &str) -> bool {
        kleidia_sandbox::runtime::image_name(image) == "echo-http"
    }

    fn start<'a>(&'a self, c: &'a ContainerRef) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let http = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let mut l = self.listeners.lock().unwrap();
            l.insert((c.pod.clone(), 8080), http.local_addr()?.port());
            l.insert((c.pod.clone(), 9000), echo.local_addr()?.port());
            tokio::spawn(serve_http(http, c.pod.clone()));
            tokio::spawn(serve_echo(echo));
            Ok(())
        })
    }

    fn exec<'a>(
        &'a self,
        c: &'a ContainerRef,
        command: Vec<String>,
        io: ExecIo,
    ) -> BoxFuture<'a, ExecOutcome> {
        Box::pin(ShellRuntime::run(c, command, io, &[], &[]))
    }

    fn connect<'a>(
        &'a self,
        c: &'a ContainerRef,
        port: u16,
    ) -> BoxFuture<'a, std::io::Result<BoxedStream>> {
        Box::pin(async move {
            let real = self
                .listeners
                .lock()
                .unwrap()
                .get(&(c.pod.clone(), port))
                .copied();
            match real {
                Some(p) => {
                    let s = tokio::net::TcpStream::connect(("127.0.0.1", p)).await?;
                    Ok(Box::pin(s) as BoxedStream)
                }
                None => Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionRefused,
                    "connection refused",
                )),
            }
        })
    }
}

const APPS: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: kleidia}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: registry.example/demo/echo-http:1.0
        ports: [{name: http, containerPort: 8080}, {name: echo, containerPort: 9000}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: kleidia}
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http}
---
apiVersion: v1
kind: Pod
metadata: {name: ticker, namespace: kleidia}
spec:
  containers:
  - name: app
    image: busybox:1.36
    command: ["sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"]
"#;

/// A sandbox running [`APPS`], every pod ready; kubectl for it and the
/// name of the `web` pod.
fn start() -> (Sandbox, Kubectl, String) {
    let sb = Sandbox::start(SandboxOptions {
        runtimes: vec![Arc::new(EchoRuntime::default())],
        ..Default::default()
    })
    .expect("sandbox starts");
    let k = Kubectl::new(&sb);
    let apps = k.file("apps.yaml", APPS);
    k.ok(&["apply", "-f", &apps]);
    k.ok(&[
        "wait",
        "--for=condition=ready",
        "pod",
        "--all",
        "--timeout=60s",
    ]);
    let pod = k.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ]);
    (sb, k, pod)
}

#[test]
fn pod_and_service_proxy() {
    let (_sb, k, pod) = start();
    let out = k.ok(&[
        "get",
        "--raw",
        "/api/v1/namespaces/kleidia/services/web:http/proxy/api/health?x=1",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["method"], "GET");
    assert_eq!(v["path"], "/api/health?x=1");
    assert_eq!(v["pod"], pod.as_str());
    assert_eq!(
        v["sawAuthorization"], false,
        "the sandbox token must not reach pods"
    );
    // By service port number, and without a port (the first).
    for name in ["web:80", "web"] {
        let out = k.ok(&[
            "get",
            "--raw",
            &format!("/api/v1/namespaces/kleidia/services/{name}/proxy/"),
        ]);
        assert!(out.contains("\"path\":\"/\""), "{out}");
    }
    let out = k.ok(&[
        "get",
        "--raw",
        &format!("/api/v1/namespaces/kleidia/pods/{pod}:8080/proxy/metrics"),
    ]);
    assert!(out.contains("\"path\":\"/metrics\""), "{out}");
    let missing = k
        .cmd(&[
            "get",
            "--raw",
            "/api/v1/namespaces/kleidia/services/nope/proxy/",
        ])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found"));
}

/// A Service whose pods are all gone is answered at once, as the API
/// server does: 503 with a `Status` naming the service, no waiting.
#[test]
fn service_proxy_without_ready_pods_answers_503() {
    let (_sb, k, _pod) = start();
    k.ok(&["scale", "deployment/web", "--replicas=0"]);
    k.ok(&[
        "wait",
        "--for=delete",
        "pod",
        "-l",
        "app=web",
        "--timeout=60s",
    ]);
    // The bound only keeps a hang from blocking the suite; the
    // assertions are on what the server answered.
    let err = k.fails(&[
        "get",
        "--request-timeout=60s",
        "--raw",
        "/api/v1/namespaces/kleidia/services/web:http/proxy/api/health",
    ]);
    assert!(
        err.contains("no endpoints available for service \"web\""),
        "expected the API server's 503 for a service without endpoints: {err}"
    );
    assert!(err.contains("ServiceUnavailable"), "{err}");
}

/// A WebSocket to the sandbox, as kube-rs opens one.
async fn websocket(
    sb: &Sandbox,
    path: &str,
    protocols: &str,
) -> (
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
    String,
) {
    use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(sb.ca_pem().as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(sb.addr()).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    let mut req = format!("wss://127.0.0.1:{}{path}", sb.addr().port())
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "Authorization",
        format!("Bearer {}", sb.token()).parse().unwrap(),
    );
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", protocols.parse().unwrap());
    let (ws, resp) = tokio_tungstenite::client_async(req, tls).await.unwrap();
    let proto = resp
        .headers()
        .get("Sec-WebSocket-Protocol")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    (ws, proto)
}

async fn next_binary<S>(ws: &mut S) -> Vec<u8>
where
    S: futures::Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    loop {
        match ws.next().await.expect("stream open").expect("no error") {
            Message::Binary(b) => return b.to_vec(),
            Message::Close(_) => panic!("closed early"),
            _ => {}
        }
    }
}

#[test]
fn port_forward_as_kube_rs_speaks_it() {
    let (sb, _k, pod) = start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (mut ws, proto) = websocket(
            &sb,
            &format!("/api/v1/namespaces/kleidia/pods/{pod}/portforward?&ports=9000%2C8080%2C7777"),
            "v5.channel.k8s.io, v4.channel.k8s.io",
        )
        .await;
        assert_eq!(proto, "v4.channel.k8s.io");
        // The first frame on every channel names its port (little-endian).
        let mut announced = Vec::new();
        for _ in 0..6 {
            announced.push(next_binary(&mut ws).await);
        }
        for (i, port) in [9000u16, 8080, 7777].iter().enumerate() {
            let le = port.to_le_bytes();
            for ch in [2 * i as u8, 2 * i as u8 + 1] {
                assert!(announced.contains(&vec![ch, le[0], le[1]]), "{announced:?}");
            }
        }
        // Port 7777: nothing listens, the error channel says so.
        let err = next_binary(&mut ws).await;
        assert_eq!(err[0], 5);
        let msg = String::from_utf8_lossy(&err[1..]).to_string();
        assert!(msg.contains("error forwarding port 7777"), "{msg}");

        // Echo on 9000; HTTP on 8080.
        let mut payload = vec![0u8];
        payload.extend_from_slice(b"hello through the tunnel");
        ws.send(Message::binary(payload)).await.unwrap();
        let mut req = vec![2u8];
        req.extend_from_slice(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n");
        ws.send(Message::binary(req)).await.unwrap();
        let mut echo = Vec::new();
        let mut http = Vec::new();
        while echo.len() < 24 || !String::from_utf8_lossy(&http).contains("\"pod\"") {
            let f = next_binary(&mut ws).await;
            match f[0] {
                0 => echo.extend_from_slice(&f[1..]),
                2 => http.extend_from_slice(&f[1..]),
                other => panic!("unexpected channel {other}"),
            }
        }
        assert_eq!(echo, b"hello through the tunnel");
        let http = String::from_utf8_lossy(&http);
        assert!(http.starts_with("HTTP/1.1 200 OK"), "{http}");
        assert!(http.contains("\"path\":\"/api/health\""), "{http}");
        ws.close(None).await.unwrap();
    });
}

#[test]
fn exec_over_v4_reports_status_on_the_error_channel() {
    let (sb, _k, pod) = start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let path = format!(
            "/api/v1/namespaces/kleidia/pods/{pod}/exec?command=sh&command=-c&command=echo+out%3B+echo+err+%3E%262%3B+exit+4&stdout=true&stderr=true"
        );
        let (mut ws, proto) = websocket(&sb, &path, "v4.channel.k8s.io").await;
        assert_eq!(proto, "v4.channel.k8s.io");
        let (mut out, mut err, mut status) = (Vec::new(), Vec::new(), None);
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Binary(b) = m {
                match b.first() {
                    Some(1) => out.extend_from_slice(&b[1..]),
                    Some(2) => err.extend_from_slice(&b[1..]),
                    Some(3) if b.len() > 1 => {
                        status = Some(serde_json::from_slice::<serde_json::Value>(&b[1..]).unwrap())
                    }
                    _ => {}
                }
            }
        }
        assert_eq!(out, b"out\n");
        assert_eq!(err, b"err\n");
        let status = status.expect("a Status on channel 3");
        assert_eq!(status["status"], "Failure");
        assert_eq!(status["reason"], "NonZeroExitCode");
        assert_eq!(status["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(status["details"]["causes"][0]["message"], "4");
    });
}

/// Reads `n` lines from a running kubectl, then stops it.
fn first_lines(mut cmd: Command, n: usize) -> Vec<String> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let lines: Vec<String> = BufReader::new(out)
        .lines()
        .take(n)
        .map(|l| l.unwrap())
        .collect();
    child.kill().unwrap();
    child.wait().unwrap();
    lines
}

#[test]
fn logs_follow_and_attach_stream_the_container_output() {
    let (_sb, k, _) = start();
    let lines = first_lines(k.cmd(&["logs", "-f", "ticker"]), 4);
    assert_eq!(lines, ["tick 0", "tick 1", "tick 2", "tick 3"]);
    let lines = first_lines(
        k.cmd(&["logs", "-f", "ticker", "--tail=1", "--timestamps"]),
        2,
    );
    for l in &lines {
        let (ts, rest) = l.split_once(' ').unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{l}");
        assert!(rest.starts_with("tick "), "{l}");
    }
    let prev = k.cmd(&["logs", "ticker", "--previous"]).output().unwrap();
    assert!(!prev.status.success());
    assert!(
        String::from_utf8_lossy(&prev.stderr)
            .contains("previous terminated container \"app\" in pod \"ticker\" not found"),
        "{prev:?}"
    );
    // attach shows what the container prints from now on.
    let lines = first_lines(k.cmd(&["attach", "ticker", "-c", "app"]), 2);
    let n: Vec<u64> = lines
        .iter()
        .map(|l| l.strip_prefix("tick ").unwrap().parse().unwrap())
        .collect();
    assert_eq!(n[1], n[0] + 1, "{lines:?}");
    assert!(n[0] > 3, "attach starts at the current output: {lines:?}");

    // A follow ends when the pod goes away.
    let mut follow = k
        .cmd(&["logs", "-f", "ticker"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    // Following has begun once output arrives.
    assert!(lines.next().is_some_and(|l| l.is_ok()));
    k.ok(&["delete", "pod", "ticker", "--wait=false"]);
    for l in lines {
        l.unwrap();
    }
    let status = follow.wait().unwrap();
    assert!(
        status.success(),
        "logs -f ends cleanly when the pod is deleted"
    );
}
