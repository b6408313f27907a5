//! What every part of a running sandbox shares: the object store, the
//! container runtimes, fault settings and options.

use crate::runtime::Runtimes;

/// Shared by the API server, the controllers and the subresource handlers.
/// The API-server side fills in the store, faults and options fields.
pub struct Shared {
    pub runtimes: Runtimes,
}
