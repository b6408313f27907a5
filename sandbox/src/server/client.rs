//! A minimal HTTPS client for the sandbox's own API: used by the CLI
//! (`fault`, `authz`) and by tests that check the HTTP surface exactly.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// Why a request to the sandbox failed (before any HTTP status).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the sandbox URL {0:?} is not https://127.0.0.1:<port>")]
    Url(String),
    #[error("the sandbox CA certificate is not valid PEM: {0}")]
    Ca(String),
    #[error("connecting to the sandbox at {url} failed: {source}")]
    Connect { url: String, source: std::io::Error },
    #[error("the HTTP exchange with the sandbox failed: {0}")]
    Http(#[from] hyper::Error),
    #[error("building the request failed: {0}")]
    Request(#[from] hyper::http::Error),
}

/// Where and how to reach a sandbox.
#[derive(Clone)]
pub struct Client {
    host_port: String,
    url: String,
    token: Option<String>,
    tls: Arc<rustls::ClientConfig>,
}

/// A response: status, headers, whole body.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

impl Client {
    /// A client trusting `ca_pem`, sending `token` (if any) as bearer token.
    pub fn new(url: &str, ca_pem: &str, token: Option<&str>) -> Result<Self, ClientError> {
        let host_port = url
            .strip_prefix("https://")
            .map(|s| s.trim_end_matches('/').to_string())
            .ok_or_else(|| ClientError::Url(url.to_string()))?;
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            let c = c.map_err(|e| ClientError::Ca(e.to_string()))?;
            roots.add(c).map_err(|e| ClientError::Ca(e.to_string()))?;
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Ca(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Client {
            host_port,
            url: url.to_string(),
            token: token.map(String::from),
            tls: Arc::new(tls),
        })
    }

    /// The same client without a token.
    pub fn anonymous(&self) -> Self {
        Client {
            token: None,
            ..self.clone()
        }
    }

    /// Sends a request on a fresh HTTP/1.1 connection and reads the whole
    /// response. `headers` are extra (`Content-Type`, `Accept`, ...).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Reply, ClientError> {
        let mut resp = self.open(method, path, headers, body).await?;
        let body = resp.body_mut().collect().await.map(|c| c.to_bytes())?;
        Ok(Reply {
            status: resp.status(),
            headers: resp.headers().clone(),
            body,
        })
    }

    /// Sends a request and returns the streaming response (watches).
    pub async fn open(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, ClientError> {
        let tcp = tokio::net::TcpStream::connect(&self.host_port)
            .await
            .map_err(|source| ClientError::Connect {
                url: self.url.clone(),
                source,
            })?;
        let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
        let name = ServerName::try_from("127.0.0.1").expect("valid IP server name");
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(|source| ClientError::Connect {
                url: self.url.clone(),
                source,
            })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.host_port);
        if let Some(t) = &self.token {
            b = b.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(Full::new(body.into()))?;
        Ok(sender.send_request(req).await?)
    }
}
