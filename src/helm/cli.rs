//! The `helm` binary (`HELM_BIN`, then `helm` on PATH), run only for what
//! Helm owns. Read-only commands never need it.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum HelmCliError {
    #[error("cannot run {bin} {args}: {source}. Set HELM_BIN to a working helm binary")]
    Spawn {
        bin: String,
        args: String,
        source: std::io::Error,
    },
    #[error("{bin} {args} failed ({status}): {stderr}")]
    Failed {
        bin: String,
        args: String,
        status: String,
        stderr: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelmCli {
    bin: Option<PathBuf>,
}

impl HelmCli {
    pub fn new(bin: Option<PathBuf>) -> Self {
        Self { bin }
    }

    /// The resolved binary, if any.
    pub fn bin(&self) -> Option<&Path> {
        self.bin.as_deref()
    }

    /// The client's version (`v3.15.2`), or `None` when no helm binary was
    /// found.
    pub async fn version(&self) -> Result<Option<String>, HelmCliError> {
        let Some(bin) = &self.bin else {
            return Ok(None);
        };
        match self
            .output(bin, &["version", "--template", "{{.Version}}"])
            .await
        {
            Ok(v) if !v.trim().is_empty() => Ok(Some(v.trim().to_string())),
            _ => {
                // Older or wrapped helms may not template; `--short` prints
                // `v3.15.2+gabc`.
                let v = self.output(bin, &["version", "--short"]).await?;
                Ok(Some(v.trim().to_string()))
            }
        }
    }

    async fn output(&self, bin: &Path, args: &[&str]) -> Result<String, HelmCliError> {
        let out = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|source| HelmCliError::Spawn {
                bin: bin.display().to_string(),
                args: args.join(" "),
                source,
            })?;
        if !out.status.success() {
            return Err(HelmCliError::Failed {
                bin: bin.display().to_string(),
                args: args.join(" "),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, body: &str) -> PathBuf {
        let p = dir.join("helm");
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[tokio::test]
    async fn absent_helm_is_none_not_an_error() {
        assert_eq!(HelmCli::new(None).version().await.unwrap(), None);
    }

    #[tokio::test]
    async fn template_then_short() {
        let dir = tempfile::tempdir().unwrap();
        let templ = script(
            dir.path(),
            r#"[ "$2" = "--template" ] && printf 'v3.16.1' && exit 0; exit 1"#,
        );
        assert_eq!(
            HelmCli::new(Some(templ))
                .version()
                .await
                .unwrap()
                .as_deref(),
            Some("v3.16.1")
        );
        let dir2 = tempfile::tempdir().unwrap();
        let short = script(
            dir2.path(),
            r#"[ "$2" = "--short" ] && echo 'v3.9.0+g1234' && exit 0; exit 1"#,
        );
        assert_eq!(
            HelmCli::new(Some(short))
                .version()
                .await
                .unwrap()
                .as_deref(),
            Some("v3.9.0+g1234")
        );
    }
}
