//! OpenBao runtime.
