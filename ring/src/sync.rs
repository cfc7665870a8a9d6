//! Atomics and fences, switched to loom's model-checked versions under `cfg(loom)`.
//!
//! Every atomic operation on shared rings goes through this module so that the loom models in
//! `tests/loom.rs` check the code that ships, not a copy of it.

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicU8};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32};

pub(crate) use core::sync::atomic::Ordering;

#[cfg(loom)]
pub(crate) use loom::sync::{Condvar, Mutex};
#[cfg(all(feature = "std", not(loom)))]
pub(crate) use std::sync::{Condvar, Mutex};
