//! kleidia: safe upgrades, backups and rollbacks for Kleidia deployments,
//! as the `kubectl kleidia` and `helm kleidia` plugins.
//!
//! The flow of one command (see ARCHITECTURE.md): `cli` (what was typed)
//! -> `target` (what it means, resolved once) -> `commands::<name>`
//! (decide) -> below it, shared: `survey` (one picture of the deployment),
//! `topology` (discovery rules), `probes` (what each server says),
//! `compat` (the compatibility matrix), `cluster` (requests, exec,
//! port-forward), `helm` (release records, the helm binary), `backup` (the
//! bundle library) -> `report` (show it).

pub mod app;
pub mod backup;
pub mod checks;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod compat;
pub mod completion;
pub mod config;
pub mod duration;
pub mod error;
pub mod helm;
pub mod probes;
pub mod procedure;
pub mod report;
pub mod survey;
pub mod target;
pub mod topology;
