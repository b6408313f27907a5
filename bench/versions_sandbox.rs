//! A sandbox whose pods run real PostgreSQL, OpenBao and the Kleidia
//! backend, for bench/versions.sh: starts in the folder given as the only
//! argument, writes `<dir>/kubeconfig`, prints `ready` and serves until
//! SIGTERM or SIGINT.

use std::sync::Arc;

use kleidia_sandbox::runtimes::backend::KleidiaRuntime;
use kleidia_sandbox::runtimes::openbao::{OpenBaoRuntime, OpenBaoStorage};
use kleidia_sandbox::runtimes::postgres::PostgresRuntime;
use kleidia_sandbox::server::{Sandbox, SandboxOptions};

fn main() -> anyhow::Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: versions-bench-sandbox <data folder>"))?;
    let postgres = PostgresRuntime::new();
    let databases = postgres.registry();
    let sb = Sandbox::start(SandboxOptions {
        dir: Some(dir.into()),
        runtimes: vec![
            Arc::new(postgres),
            Arc::new(OpenBaoRuntime::new(OpenBaoStorage::default())),
            Arc::new(KleidiaRuntime::new(databases)),
        ],
        ..SandboxOptions::default()
    })?;
    println!("ready {}", sb.url());
    sb.handle().block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        Ok::<_, std::io::Error>(())
    })?;
    sb.shutdown();
    Ok(())
}
