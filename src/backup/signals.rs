//! Ending `backup create` and `backup verify` cleanly on SIGINT, SIGTERM and
//! SIGHUP: [`interrupted`] resolves on the first of them, the command then
//! calls [`stop_local_work`] and exits with [`Signal::exit_code`] (128 + the
//! signal's number, as a shell reports a process killed by it).
//!
//! Work running on other threads (a restore test, hashing a large file)
//! polls [`stop_requested`] and gives up at its next step; the throwaway
//! PostgreSQL servers are stopped at once.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

/// The signals that end a backup command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Signal {
    /// SIGINT (Ctrl-C).
    #[serde(rename = "SIGINT")]
    Interrupt,
    /// SIGTERM (`kill`, a service manager, a CI job's timeout).
    #[serde(rename = "SIGTERM")]
    Terminate,
    /// SIGHUP (the terminal went away).
    #[serde(rename = "SIGHUP")]
    Hangup,
}

impl Signal {
    /// The usual name (`SIGTERM`).
    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
            Signal::Hangup => "SIGHUP",
        }
    }

    /// The signal's number on Linux.
    pub fn number(self) -> u8 {
        match self {
            Signal::Interrupt => 2,
            Signal::Terminate => 15,
            Signal::Hangup => 1,
        }
    }

    /// The exit status a command ended by this signal returns: 130, 143, 129.
    pub fn exit_code(self) -> u8 {
        128 + self.number()
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A future resolving on the first SIGINT, SIGTERM or SIGHUP, with which
/// one. The handlers are installed when this is called (inside a Tokio
/// runtime), so a signal arriving before the first poll is not lost; when
/// they cannot be installed the future never resolves.
pub fn interrupted() -> impl Future<Output = Signal> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    );
    async move {
        let (Ok(mut int), Ok(mut term), Ok(mut hup)) = handlers else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = int.recv() => Signal::Interrupt,
            _ = term.recv() => Signal::Terminate,
            _ = hup.recv() => Signal::Hangup,
        }
    }
}

static STOP: AtomicBool = AtomicBool::new(false);

/// Asks every running piece of local work (verify, restore test) to stop at
/// its next step. There is no way back: the process is ending.
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

/// Whether [`request_stop`] was called.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// The error work returns when it stops because of [`request_stop`].
pub(crate) fn stopped_error() -> io::Error {
    io::Error::other("stopped by a signal")
}

/// `Err` once a stop was requested; for loops that read large files.
pub(crate) fn check_stop() -> io::Result<()> {
    if stop_requested() {
        Err(stopped_error())
    } else {
        Ok(())
    }
}

/// What the signal handler of `verify` does: asks running work to stop and
/// stops (and removes) every throwaway PostgreSQL of the restore test.
/// Returns how many servers were stopped.
pub fn stop_local_work() -> usize {
    request_stop();
    super::local_postgres::stop_all_throwaway_servers()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_128_plus_the_signal_number() {
        assert_eq!(Signal::Interrupt.exit_code(), 130);
        assert_eq!(Signal::Terminate.exit_code(), 143);
        assert_eq!(Signal::Hangup.exit_code(), 129);
        assert_eq!(
            serde_json::to_value(Signal::Terminate).unwrap(),
            serde_json::json!("SIGTERM")
        );
    }
}
