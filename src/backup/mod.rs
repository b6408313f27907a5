//! Backup bundles: one folder per backup with the PostgreSQL dump, OpenBao's
//! data, the Helm values and a manifest of checksums.
//!
//! - [`writer::BundleWriter`] streams each part to disk (zstd, age, SHA-256)
//!   under a temporary name, renamed only when complete.
//! - [`manifest`] is the bundle's `manifest.json` schema (`manifestVersion: 1`).
//! - [`crypto`] holds age encryption (X25519 recipients or a passphrase) and
//!   decryption (identity file or passphrase).
//! - [`create`] orchestrates `backup create` over [`create::BackupSources`],
//!   which the cluster side implements.
//! - [`openbao`] fetches a raft snapshot over any connection (a
//!   port-forward) and checks a snapshot's own `SHA256SUMS`.
//! - [`verify`] checks a bundle; [`restore`] restores its dump into a
//!   [`local_postgres::ThrowawayPostgres`] (an unprivileged user, a cleared
//!   environment, a private Unix socket) and counts rows, after
//!   [`dump_check`] refused any line psql would run as more than SQL.
//! - [`signals`] ends `create` and `verify` cleanly on SIGINT, SIGTERM and
//!   SIGHUP.
//! - [`list`], [`prune`] and [`bundle`] find, describe and remove bundles.
//!
//! - [`sources`] is the cluster side of [`create::BackupSources`]: exec and
//!   port-forward over one survey of the deployment (used by `backup` and
//!   by `upgrade`'s backup step); [`pod_trust`] decides whether a pod may
//!   receive the OpenBao token.
//!
//! The `backup` command (flags, runners, tables) is `commands::backup`.

/// Default folder of bundles.
pub const DEFAULT_DIR: &str = "./backups";

/// What a backup carries over the API server's connection, for the
/// refusal of one whose certificate is not checked.
pub const SECRETS_MOVED: &str =
    "the database dump, OpenBao's data, the OpenBao token and the Helm values";

pub mod bundle;
pub mod create;
pub mod crypto;
pub mod dump_check;
pub mod list;
pub mod local_postgres;
pub mod manifest;
pub mod openbao;
pub mod pod_trust;
pub mod prune;
pub mod restore;
pub mod signals;
pub mod sources;
pub mod verify;
pub mod writer;

use create::CreateError;
use crypto::CryptoError;
use list::ListError;
use prune::PruneError;
use verify::VerifyError;

/// Errors of the backup work, for the operator.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Create(#[from] CreateError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    List(#[from] ListError),
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error(transparent)]
    Prune(#[from] PruneError),
    #[error("'backup create' needs a cluster; it is run through the plugin's cluster connection")]
    NeedsCluster,
    #[error(
        "interrupted by {signal}; {stopped} throwaway PostgreSQL server(s) of the restore test were stopped and removed"
    )]
    Interrupted {
        signal: signals::Signal,
        stopped: usize,
    },
    #[error("cannot print the result: {0}")]
    Output(String),
}

impl BackupError {
    /// 128 + the signal's number when a signal ended the command, else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            BackupError::Interrupted { signal, .. } => signal.exit_code(),
            BackupError::Create(e) => e.signal().map_or(1, signals::Signal::exit_code),
            _ => 1,
        }
    }
}
