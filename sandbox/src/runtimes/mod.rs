//! Container runtimes that ship with the sandbox. The [`shell`] runtime is
//! the default: it matches every image, so it goes in first and everything
//! registered later takes precedence.

pub mod backend;
pub mod openbao;
pub mod postgres;
pub mod shell;

use std::sync::Arc;

use crate::runtime::Runtimes;

pub use shell::ShellRuntime;

/// The runtimes every sandbox has: just the shell runtime. Part 2 registers
/// its PostgreSQL/OpenBao/backend runtimes on top with
/// [`Runtimes::register`].
pub fn default_runtimes() -> Runtimes {
    let mut r = Runtimes::new();
    r.register(Arc::new(ShellRuntime::new()));
    r
}

/// Owned command arguments, for the runtimes' unit tests.
#[cfg(test)]
fn test_args(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}
