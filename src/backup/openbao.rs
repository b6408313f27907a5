//! OpenBao parts of a backup: fetching a raft snapshot over an established
//! connection (the port-forward's stream, or a TCP socket), and checking a
//! snapshot's own `SHA256SUMS`.
//!
//! A raft snapshot (`GET /v1/sys/storage/raft/snapshot`) is a gzipped tar of
//! `meta.json`, `state.bin`, `SHA256SUMS` (sha256sum format over the other
//! two) and `SHA256SUMS.sealed` (the same, sealed by the barrier; only the
//! server can check it).

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::pin::Pin;

use age::secrecy::{ExposeSecret, SecretString};
use futures::TryStreamExt;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::io::StreamReader;

/// The API path of raft snapshots.
pub const SNAPSHOT_PATH: &str = "/v1/sys/storage/raft/snapshot";

/// Errors fetching a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum OpenBaoError {
    #[error("HTTP exchange with OpenBao failed: {0}")]
    Http(String),
    #[error(
        "OpenBao refused the token (HTTP {status}: {message}); give a token allowed to read sys/storage/raft/snapshot with --openbao-token-env or --openbao-token-secret"
    )]
    Forbidden { status: u16, message: String },
    #[error(
        "OpenBao does not use raft storage ({message}); the platform component is then backed up as an archive of the data folder"
    )]
    NotRaft { message: String },
    #[error("OpenBao answered HTTP {status} for {path}: {message}")]
    Status {
        status: u16,
        path: String,
        message: String,
    },
}

/// The snapshot's bytes, as they arrive.
pub type SnapshotStream = Pin<Box<dyn AsyncRead + Send>>;

/// Requests a raft snapshot over `io`, an open connection to OpenBao's
/// HTTP listener (plain HTTP: a port-forward or a local socket; see
/// [`raft_snapshot_tls`] for a TLS listener). `host` is the value of the
/// Host header. The token is sent only as a header.
pub async fn raft_snapshot<IO>(
    io: IO,
    host: &str,
    token: &SecretString,
) -> Result<SnapshotStream, OpenBaoError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| OpenBaoError::Http(e.to_string()))?;
    tokio::spawn(async move {
        // Errors surface through the response body.
        let _ = conn.await;
    });
    let mut token_value = http::HeaderValue::from_str(token.expose_secret()).map_err(|_| {
        OpenBaoError::Http("the token holds characters not allowed in a header".into())
    })?;
    token_value.set_sensitive(true);
    let request = http::Request::get(SNAPSHOT_PATH)
        .header(http::header::HOST, host)
        .header("X-Vault-Token", token_value)
        .body(Empty::<Bytes>::new())
        .map_err(|e| OpenBaoError::Http(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| OpenBaoError::Http(e.to_string()))?;
    let status = response.status();
    if !status.is_success() {
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let message = error_message(&body);
        return Err(match status.as_u16() {
            401 | 403 => OpenBaoError::Forbidden {
                status: status.as_u16(),
                message,
            },
            _ if message.contains("raft") && message.contains("not") => {
                OpenBaoError::NotRaft { message }
            }
            code => OpenBaoError::Status {
                status: code,
                path: SNAPSHOT_PATH.to_owned(),
                message,
            },
        });
    }
    let stream = response
        .into_body()
        .into_data_stream()
        .map_err(io::Error::other);
    Ok(Box::pin(StreamReader::new(stream)))
}

/// [`raft_snapshot`] over TLS, for a listener that speaks it: the
/// handshake runs over `io` (the port-forward's stream) before the token
/// is sent.
///
/// The certificate's chain is not checked against a CA: `io` is already a
/// tunnel the API server authenticated to the pod the plugin checked
/// (owner, container, image), so no one else can answer on it, and pod
/// certificates are usually signed by a cluster-internal CA the operator's
/// machine does not hold. The handshake's signatures are still verified.
pub async fn raft_snapshot_tls<IO>(
    io: IO,
    host: &str,
    token: &SecretString,
) -> Result<SnapshotStream, OpenBaoError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| OpenBaoError::Http(format!("TLS setup: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(TunnelledPod(provider)))
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| OpenBaoError::Http(format!("TLS server name {host:?}: {e}")))?;
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, io)
        .await
        .map_err(|e| {
            OpenBaoError::Http(format!("TLS handshake with OpenBao's listener failed: {e}"))
        })?;
    raft_snapshot(tls, host, token).await
}

/// Accepts the certificate of the pod at the end of an authenticated
/// tunnel (see [`raft_snapshot_tls`]), verifying the handshake's
/// signatures with the provider's algorithms.
#[derive(Debug)]
struct TunnelledPod(std::sync::Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for TunnelledPod {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// OpenBao's `{"errors":[...]}`, joined; else the start of the body.
fn error_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<String>,
    }
    match serde_json::from_slice::<Errors>(body) {
        Ok(e) if !e.errors.is_empty() => e.errors.join("; "),
        _ => String::from_utf8_lossy(&body[..body.len().min(200)])
            .trim()
            .to_owned(),
    }
}

/// What checking a snapshot found.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotCheck {
    /// Members of the snapshot with their sizes.
    pub members: BTreeMap<String, u64>,
    /// Members whose SHA-256 matched `SHA256SUMS`.
    pub verified: Vec<String>,
    /// Raft index of the snapshot (from `meta.json`).
    pub index: Option<u64>,
}

/// Reads a raft snapshot (gzip + tar) and checks every member listed in its
/// `SHA256SUMS`; an error names what does not match.
pub fn check_raft_snapshot(reader: impl Read) -> Result<SnapshotCheck, String> {
    let gz = flate2::read::GzDecoder::new(reader);
    let mut archive = tar::Archive::new(gz);
    let mut hashes: BTreeMap<String, String> = BTreeMap::new();
    let mut members: BTreeMap<String, u64> = BTreeMap::new();
    let mut sums: Option<String> = None;
    let mut meta: Option<serde_json::Value> = None;
    let entries = archive
        .entries()
        .map_err(|e| format!("not a gzipped tar: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("damaged archive: {e}"))?;
        let name = entry
            .path()
            .map_err(|e| format!("bad member name: {e}"))?
            .to_string_lossy()
            .into_owned();
        match name.as_str() {
            "SHA256SUMS" | "meta.json" => {
                // Read whole, so bounded: a real one has a few hundred bytes.
                let limit = super::bundle::limits::SNAPSHOT_META;
                let mut text = String::new();
                (&mut entry)
                    .take(limit + 1)
                    .read_to_string(&mut text)
                    .map_err(|e| format!("cannot read {name}: {e}"))?;
                if text.len() as u64 > limit {
                    return Err(format!(
                        "{name} in the snapshot has more than {limit} bytes; a real one has a few hundred"
                    ));
                }
                hashes.insert(name.clone(), hex::encode(Sha256::digest(text.as_bytes())));
                members.insert(name.clone(), text.len() as u64);
                if name == "SHA256SUMS" {
                    sums = Some(text);
                } else {
                    meta = serde_json::from_str(&text).ok();
                }
            }
            _ => {
                let mut hasher = Sha256::new();
                let n = io::copy(&mut entry, &mut HashSink(&mut hasher))
                    .map_err(|e| format!("cannot read {name}: {e}"))?;
                hashes.insert(name.clone(), hex::encode(hasher.finalize()));
                members.insert(name, n);
            }
        }
    }
    let sums = sums.ok_or_else(|| {
        format!(
            "no SHA256SUMS in the snapshot (members: {})",
            members.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    })?;
    let mut verified = Vec::new();
    for line in sums.lines().filter(|l| !l.trim().is_empty()) {
        let (want, name) = line
            .split_once(char::is_whitespace)
            .map(|(h, n)| (h.trim(), n.trim().trim_start_matches('*')))
            .ok_or_else(|| format!("unreadable SHA256SUMS line '{line}'"))?;
        match hashes.get(name) {
            None => return Err(format!("{name} is listed in SHA256SUMS but missing")),
            Some(got) if !got.eq_ignore_ascii_case(want) => {
                return Err(format!(
                    "{name} does not match SHA256SUMS (expected {want}, found {got})"
                ));
            }
            Some(_) => verified.push(name.to_owned()),
        }
    }
    if !verified.iter().any(|n| n == "state.bin") {
        return Err("SHA256SUMS does not cover state.bin".to_owned());
    }
    if let (Some(size), Some(found)) = (
        meta.as_ref()
            .and_then(|m| m.get("Size"))
            .and_then(|v| v.as_u64()),
        members.get("state.bin"),
    ) && size != *found
    {
        return Err(format!(
            "meta.json says state.bin has {size} bytes, the snapshot has {found}"
        ));
    }
    Ok(SnapshotCheck {
        members,
        verified,
        index: meta
            .as_ref()
            .and_then(|m| m.get("Index"))
            .and_then(|v| v.as_u64()),
    })
}

struct HashSink<'a>(&'a mut Sha256);

impl io::Write for HashSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(members: &[(&str, &[u8])]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        for (name, data) in members {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o600);
            header.set_cksum();
            tar.append_data(&mut header, name, *data).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn sums_are_checked_and_their_size_is_bounded() {
        let state = b"raft state";
        let sums = format!("{}  state.bin\n", hex::encode(Sha256::digest(state)));
        let good = snapshot(&[("state.bin", state), ("SHA256SUMS", sums.as_bytes())]);
        assert_eq!(
            check_raft_snapshot(good.as_slice()).unwrap().verified,
            vec!["state.bin"]
        );
        let huge = format!("{sums}{}", "0".repeat(2 << 20));
        let bad = snapshot(&[("state.bin", state), ("SHA256SUMS", huge.as_bytes())]);
        let err = check_raft_snapshot(bad.as_slice()).unwrap_err();
        assert!(
            err.contains("SHA256SUMS in the snapshot has more than"),
            "{err}"
        );
    }
}
