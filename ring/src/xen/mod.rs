//! Xen's shared request/response ring (`xen/include/public/io/ring.h`), byte-compatible with
//! the C macros, and the network interface types that travel on it (`io/netif.h`).
//!
//! A ring is one or more pages shared by a *front end* (the guest, which produces requests)
//! and a *back end* (the driver domain, which consumes them and produces responses). Both
//! producer indices and both event thresholds live in a 64-byte header; entries follow, each
//! slot holding a request and later the response to it. Consumer indices are private.
//!
//! - [`FrontRing`] / [`BackRing`]: the two owning ends, with private indices, batch
//!   operations that publish an index once per batch, and `#[must_use]`
//!   [`Notify`](crate::Notify) decisions.
//! - [`netif`]: the netfront/netback entry types and flags.
//! - [`sring`]: the header layout and the ring-size rule.

mod back;
mod error;
mod front;
pub mod netif;
pub mod sring;

pub use back::BackRing;
pub use error::{Full, RingError};
pub use front::FrontRing;
pub use sring::{entry_size, ring_size};

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// A type that can live in a ring slot: plain old data with no padding, copied in and out
/// by value. Implemented for every type that fits.
pub trait Entry: FromBytes + IntoBytes + KnownLayout + Immutable + Copy {}
impl<T: FromBytes + IntoBytes + KnownLayout + Immutable + Copy> Entry for T {}
