//! kleidia: safe upgrades, backups and rollbacks for Kleidia deployments.

pub mod backup;
