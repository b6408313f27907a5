//! kleidia: safe upgrades, backups and rollbacks for Kleidia deployments,
//! as the `kubectl kleidia` and `helm kleidia` plugins.
//!
//! The flow of one command: `cli` (what was typed) -> `target` (what it
//! means) -> `topology` (what is deployed where) -> `commands::<cmd>` (what
//! to do) -> `cluster` / `helm` / `probes` (doing it) -> `report` (showing
//! it).

pub mod app;
pub mod backup;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod error;
pub mod helm;
pub mod probes;
pub mod report;
pub mod target;
pub mod topology;
