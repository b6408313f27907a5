//! A local Kubernetes API simulation whose pods run real software.

pub mod authz;
pub mod controllers;
pub mod error;
pub mod events;
pub mod faults;
pub mod openapi;
pub mod patch;
pub mod proto;
pub mod registry;
pub mod runtime;
pub mod runtimes;
pub mod selector;
pub mod state;
pub mod store;
pub mod subresources;
