//! Image runtimes: what runs inside a sandbox container, chosen by image.

pub mod backend;
pub mod openbao;
pub mod postgres;
