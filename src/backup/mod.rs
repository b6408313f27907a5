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
//! - [`command`] is the `backup` command line (clap) and its runners.

pub mod bundle;
pub mod command;
pub mod create;
pub mod crypto;
pub mod dump_check;
pub mod list;
pub mod local_postgres;
pub mod manifest;
pub mod openbao;
pub mod prune;
pub mod restore;
pub mod signals;
pub mod verify;
pub mod writer;
