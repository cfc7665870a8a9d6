//! # pvio-ring: untrusted shared memory and paravirtual rings
//!
//! The transport layer of [pvio](https://example.invalid/pvio): the memory a guest and a
//! driver domain share, the rings they pass requests over, and the notifications that wake
//! them. Everything here assumes the peer is hostile: shared memory is only touched through
//! the checked, atomic accessors of [`shm`], every peer-written record is copied out once and
//! returned by value, and impossible indices are errors — never panics, out-of-bounds
//! accesses or hangs.
//!
//! - [`shm`]: [`SharedMem`], the single owner of raw access to peer-writable memory; with
//!   `std`, [`MemfdRegion`] for memory shared between processes.
//! - [`xen`]: Xen's `io/ring.h` request/response ring ([`FrontRing`], [`BackRing`]) and the
//!   `io/netif.h` types, byte-compatible with Xen's C headers.
//! - [`virtio`]: virtio 1.x split virtqueues (spec §2.7), the driver side ([`DriverQueue`],
//!   with `alloc`) and the device side ([`DeviceQueue`], validated descriptor chains without
//!   allocation), over guest memory translated by a [`GuestMemory`]; with the `vm-memory`
//!   feature, over rust-vmm's `GuestMemoryMmap`.
//! - [`notify`]: notification decisions ([`Notify`]) and event channels ([`EventFd`],
//!   [`InProcessEvent`]).
//!
//! `no_std` without the default `std` feature.
//!
//! ## Example: a request and its response through a one-page ring
//!
//! ```
//! use pvio_ring::xen::netif::{NetifTxRequest, NetifTxResponse, netif_rsp};
//! use pvio_ring::{BackRing, FrontRing, MemfdRegion};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let page = MemfdRegion::new("tx-ring", 4096)?;
//! let mut front = FrontRing::<NetifTxRequest, NetifTxResponse>::new(page.mem())?;
//! let mut back = BackRing::<NetifTxRequest, NetifTxResponse>::new(page.mem())?;
//! assert_eq!(front.size(), 256);
//!
//! // The back end goes idle: it asks to be notified of the next request.
//! assert!(!back.final_check_for_requests()?);
//!
//! let req = NetifTxRequest { gref: 7.into(), offset: 0.into(), flags: 0.into(), id: 1.into(), size: 60.into() };
//! front.queue_request(&req)?;
//! assert!(front.push_requests().is_needed()); // the back end is asleep: kick it
//!
//! let got = back.pop_request()?.expect("published");  // copied out once, by value
//! assert_eq!(got, req);
//! back.queue_response(&NetifTxResponse { id: got.id, status: netif_rsp::OKAY.into() })?;
//! let _ = back.push_responses(); // the front end did not ask for an event
//!
//! assert_eq!(front.pop_response()?.map(|r| r.id.get()), Some(1));
//! # Ok(())
//! # }
//! ```
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(missing_docs, unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(all(loom, not(feature = "std")))]
extern crate std;

#[cfg(all(feature = "std", not(loom)))]
mod memfd;
pub mod notify;
pub mod shm;
mod sync;
pub mod virtio;
pub mod xen;

#[cfg(all(feature = "std", not(loom)))]
pub use memfd::MemfdRegion;
#[cfg(all(feature = "std", not(loom)))]
pub use notify::EventFd;
#[cfg(any(feature = "std", loom))]
pub use notify::InProcessEvent;
pub use notify::{Notifier, Notify, Waiter};
#[cfg(all(feature = "alloc", not(loom)))]
pub use shm::HeapRegion;
pub use shm::{SharedMem, SharedU16, SharedU32, ShmError};
#[cfg(feature = "alloc")]
pub use virtio::DriverQueue;
pub use virtio::{DeviceQueue, GuestMemory};
pub use xen::{BackRing, FrontRing, Full, RingError};
