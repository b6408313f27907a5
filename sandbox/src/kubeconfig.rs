//! The kubeconfig a sandbox writes for kubectl, Helm and kube-rs.

use std::io::Write;
use std::path::Path;

use base64::Engine;

/// The cluster, user and context name in the kubeconfig.
pub const NAME: &str = "kleidia-sandbox";
/// The context's default namespace.
pub const NAMESPACE: &str = "kleidia";

/// The kubeconfig text (it holds the bearer token: write it 0600).
pub fn render(url: &str, ca_pem: &str, token: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {NAME}
  cluster:
    server: {url}
    certificate-authority-data: {ca}
users:
- name: {NAME}
  user:
    token: {token}
contexts:
- name: {NAME}
  context:
    cluster: {NAME}
    user: {NAME}
    namespace: {NAMESPACE}
current-context: {NAME}
preferences: {{}}
"
    )
}

/// Writes the kubeconfig with mode 0600 (created that way, never readable
/// by others even briefly).
pub fn write(path: &Path, url: &str, ca_pem: &str, token: &str) -> std::io::Result<()> {
    write_private(path, render(url, ca_pem, token).as_bytes())
}

/// Writes a file only its owner can read.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}
