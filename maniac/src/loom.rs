//! The one place the crate takes its synchronisation primitives from.
//!
//! Normal builds get `std`'s; `RUSTFLAGS="--cfg loom"` builds get loom's, so that the protocols
//! written against this module (the idle protocol, the parker) are model-checked exactly as they
//! are compiled. Code that is not model-checked may use `std` directly.

#[cfg(not(loom))]
pub(crate) use std::sync::{Condvar, Mutex, atomic};

#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Condvar, Mutex, atomic};
