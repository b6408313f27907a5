//! Backend runtime.
