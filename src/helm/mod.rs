//! Helm: release records read natively, and the `helm` binary for what Helm
//! owns (rendering, upgrade, rollback).

pub mod cli;
pub mod release;
