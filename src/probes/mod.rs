//! One question each to a running component: its version and whether it is
//! up. Probes never print; the command decides how to show their answers.

pub mod backend;
pub mod kubernetes;
pub mod openbao;
pub mod postgres;

use crate::cluster::ClusterError;
use crate::cluster::exec::ExecError;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error("{0}")]
    Answer(String),
}

/// Reads the first dotted number in `text` (`PostgreSQL 15.8 (Debian ..)`
/// -> 15.8.0, `v1.33.1+k3s1` -> 1.33.1). Missing parts are zero.
pub fn parse_version(text: &str) -> Option<semver::Version> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit()
            && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'v')
        {
            let rest = &text[i..];
            let end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            let nums: Vec<u64> = rest[..end]
                .split('.')
                .filter(|s| !s.is_empty())
                .map_while(|s| s.parse().ok())
                .collect();
            if !nums.is_empty() {
                return Some(semver::Version::new(
                    nums[0],
                    nums.get(1).copied().unwrap_or(0),
                    nums.get(2).copied().unwrap_or(0),
                ));
            }
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_various_banners() {
        let v = |s| parse_version(s).map(|v| v.to_string());
        assert_eq!(
            v("PostgreSQL 15.8 (Debian 15.8-1.pgdg120+1) on x86_64-pc-linux-gnu").as_deref(),
            Some("15.8.0")
        );
        assert_eq!(v("v1.33.1+k3s1").as_deref(), Some("1.33.1"));
        assert_eq!(v("v3.16.1+g1234").as_deref(), Some("3.16.1"));
        assert_eq!(v("2.4.1").as_deref(), Some("2.4.1"));
        assert_eq!(v("PostgreSQL 17devel").as_deref(), Some("17.0.0"));
        assert_eq!(v("x86 1.2"), Some("1.2.0".into()));
        assert_eq!(v("none"), None);
    }
}
