//! The server side of the Kubernetes WebSocket channel protocols
//! (`v5.channel.k8s.io`, `v4.channel.k8s.io`, `portforward.k8s.io`) on a
//! hyper upgrade: protocol negotiation, the `101 Switching Protocols`
//! answer, and the WebSocket stream once the connection is handed over.

use hyper::header::{
    CONNECTION, HeaderMap, HeaderValue, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_PROTOCOL, UPGRADE,
};
use hyper::{Request, Response, StatusCode, body::Incoming, upgrade::OnUpgrade};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::{Body, Rejection, full};

pub type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Channel numbers of the remote-command protocols.
pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
pub const RESIZE: u8 = 4;
/// v5 only: "close this channel", the payload is the channel number.
pub const CLOSE: u8 = 255;

pub const V5: &str = "v5.channel.k8s.io";
pub const V4: &str = "v4.channel.k8s.io";
pub const PORT_FORWARD: &str = "portforward.k8s.io";

/// Whether the request asks for a WebSocket upgrade.
pub fn is_websocket(headers: &HeaderMap) -> bool {
    let upgrade = headers
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("websocket"))
        })
        .unwrap_or(false);
    upgrade && headers.contains_key(SEC_WEBSOCKET_KEY)
}

/// The protocols the client offers, in its order (one header with a comma
/// separated list, or several headers).
pub fn offered_protocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// The first of `ours` (in our preference order) that the client offers.
pub fn choose(headers: &HeaderMap, ours: &[&'static str]) -> Option<&'static str> {
    let offered = offered_protocols(headers);
    ours.iter()
        .copied()
        .find(|p| offered.iter().any(|o| o == p))
}

/// Answers the upgrade with `101` and `protocol`; returns the response and
/// the pending upgrade to await in a task.
pub fn accept(
    req: &mut Request<Incoming>,
    protocol: &'static str,
) -> Result<(Response<Body>, OnUpgrade), Rejection> {
    let Some(key) = req.headers().get(SEC_WEBSOCKET_KEY).cloned() else {
        return Err(super::reject(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "missing Sec-WebSocket-Key header",
        ));
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(req);
    let mut resp = Response::new(full(Vec::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(
        SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
    );
    h.insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(protocol));
    Ok((resp, on_upgrade))
}

/// Waits for the upgraded connection and wraps it as a server WebSocket.
pub async fn upgraded(on: OnUpgrade) -> Result<Ws, hyper::Error> {
    let io = on.await?;
    let mut config = WebSocketConfig::default();
    config.max_message_size = Some(64 << 20);
    config.max_frame_size = Some(16 << 20);
    Ok(WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, Some(config)).await)
}

/// A close frame with status 1000 (normal closure): clients built on
/// gorilla/websocket (kubectl) treat a close without a status as an error.
pub fn normal_close() -> tokio_tungstenite::tungstenite::Message {
    use tokio_tungstenite::tungstenite::protocol::{CloseFrame, frame::coding::CloseCode};
    tokio_tungstenite::tungstenite::Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
}
