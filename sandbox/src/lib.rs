//! A local Kubernetes API simulation whose pods run real software.

pub mod authz;
pub mod controllers;
pub mod demo;
pub mod discovery;
pub mod error;
pub mod events;
pub mod faults;
pub mod kubeconfig;
pub mod openapi;
pub mod patch;
pub mod proto;
pub mod registry;
pub mod runtime;
pub mod runtimes;
pub mod selector;
pub mod server;
pub mod state;
pub mod store;
pub mod subresources;
pub mod tls;
