//! Backup bundles: one folder per backup with the PostgreSQL dump, OpenBao's
//! data, the Helm values and a manifest of checksums.
//!
//! - [`writer::BundleWriter`] streams each part to disk (zstd, age, SHA-256).
//! - [`manifest`] is the bundle's `manifest.json` schema.
//! - [`crypto`] holds age encryption and decryption.
//! - [`bundle`] names bundle folders and finds them.

pub mod bundle;
pub mod command;
pub mod create;
pub mod crypto;
pub mod list;
pub mod local_postgres;
pub mod manifest;
pub mod openbao;
pub mod prune;
pub mod restore;
pub mod verify;
pub mod writer;
