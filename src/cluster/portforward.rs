//! A byte stream to a port inside a pod, through the API server's
//! port-forward subresource; no local listening socket is opened.

use std::pin::Pin;
use std::task::{Context, Poll};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::Portforwarder;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};

use super::{ApiEndpoint, ClusterError};

/// An open connection to `pod:port`. Reads and writes go to the process
/// listening there; dropping it closes the forward.
pub struct PortForwardStream {
    stream: DuplexStream,
    // Owns the WebSocket task; dropping it aborts the forward.
    _forwarder: Portforwarder,
}

impl PortForwardStream {
    pub async fn open(
        client: &kube::Client,
        api: &ApiEndpoint,
        namespace: &str,
        pod: &str,
        port: u16,
    ) -> Result<Self, ClusterError> {
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let mut forwarder = pods.portforward(pod, &[port]).await.map_err(|e| {
            ClusterError::from_kube(
                e,
                api,
                &format!("create pods/portforward in namespace {namespace}"),
                &format!("pod {namespace}/{pod}"),
            )
        })?;
        let stream = forwarder
            .take_stream(port)
            .expect("the forwarder was asked for exactly this port");
        Ok(Self {
            stream,
            _forwarder: forwarder,
        })
    }
}

impl AsyncRead for PortForwardStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for PortForwardStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
