//! What every part of a running sandbox shares: the object store, the
//! container runtimes, fault settings, authorization rules and options.

use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::authz::Authz;
use crate::faults::Faults;
use crate::runtime::Runtimes;
use crate::store::Store;

/// How OpenBao stores its data in the demo charts (acted on by part 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OpenBaoStorage {
    #[default]
    File,
    Raft,
}

impl std::str::FromStr for OpenBaoStorage {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "file" => Ok(OpenBaoStorage::File),
            "raft" => Ok(OpenBaoStorage::Raft),
            other => Err(format!(
                "openbao storage {other:?} is not one of: file, raft"
            )),
        }
    }
}

/// Resolved settings of a running sandbox.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where containers keep their files and logs, and where the
    /// kubeconfig is written.
    pub data_dir: PathBuf,
    /// How long a started pod takes to become Ready.
    pub pod_ready_delay: Duration,
    /// Start without the demo releases.
    pub empty: bool,
    pub openbao_storage: OpenBaoStorage,
    /// Interval of BOOKMARK events on watches that asked for them.
    pub bookmark_interval: Duration,
}

/// Shared by the API server, the controllers and the subresource handlers.
pub struct Shared {
    pub store: Store,
    pub runtimes: Runtimes,
    pub faults: Faults,
    pub authz: Authz,
    pub options: Options,
    /// Cancelled when the sandbox shuts down; background tasks stop on it.
    pub shutdown: CancellationToken,
}

impl Shared {
    /// Folder of one container (its filesystem root and log live below).
    pub fn container_dir(&self, namespace: &str, pod: &str, container: &str) -> PathBuf {
        self.options
            .data_dir
            .join("containers")
            .join(namespace)
            .join(pod)
            .join(container)
    }
}
