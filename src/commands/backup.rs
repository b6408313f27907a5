//! `backup` (create, list, verify, prune). The command lives in
//! [`crate::backup::command`], beside the bundle code it drives; the CLI
//! embeds [`BackupArgs`] and calls:
//!
//! - [`run_local`] for `list`, `verify` and `prune` (no cluster needed;
//!   `run_local_blocking` outside a runtime);
//! - [`run_create`] for `create`, with the cluster's [`BackupSources`]
//!   (exec for `pg_dumpall` and the OpenBao data archive, a port-forward for
//!   the raft snapshot — see [`crate::backup::openbao::raft_snapshot`] —
//!   and the Helm release records).
//!
//! `BackupArgs::action()` says which one applies (`create` when no
//! subcommand is named).

pub use crate::backup::command::{
    BackupArgs, BackupCommand, BackupCommandError, CreateArgs, ListArgs, OutputFormat, Outcome,
    PruneArgs, VerifyArgs, create_options, run_create, run_local, run_local_blocking,
};
pub use crate::backup::create::{
    BackupSources, ClusterFacts, ReleaseSnapshot, SourceError, SourceStream,
};
