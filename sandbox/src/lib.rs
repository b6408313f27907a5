//! A local Kubernetes API simulation whose pods run real software.
pub mod runtime;
pub mod runtimes;
