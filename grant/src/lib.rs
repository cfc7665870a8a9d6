//! # pvio-grant: Xen-style grant tables
//!
//! Grants are how a guest says which of its pages a back end may touch. This crate has the
//! three parts of Xen's v1 grant tables, byte-compatible with Xen's `public/grant_table.h`
//! and following the rules of Xen's `common/grant_table.c` and Linux's
//! `drivers/xen/grant-table.c`:
//!
//! - [`entry`]: the [`GrantEntryV1`] layout, the [`GtfFlags`], [`GrantRef`]; what v2 and
//!   sub-page grants would take.
//! - [`table`]: the granting side (the guest): [`GrantTable`] hands out references from a
//!   free list, publishes entries, and ends access only when the grantee is not using them.
//! - [`broker`] (`alloc`): the trusted [`Broker`], the hypervisor's role inside the back-end
//!   process — batched [`copy`](Broker::copy) with a status per op, and
//!   [`map`](Broker::map)/[`unmap`](Broker::unmap) with pin counts kept privately.
//! - [`domain`]: [`DomId`], [`Frame`], and (`std`) [`DomainMemory`], a domain's 4 KiB frames
//!   in a memfd so guest and back end can be separate processes.
//! - [`error`]: [`GrantStatus`] (Xen's `GNTST_*` codes) and [`GrantError`].
//!
//! All shared memory is reached through `pvio-ring`'s [`SharedMem`](pvio_ring::SharedMem):
//! every entry is read once into a local copy and checked, and the flags word is only ever
//! changed with atomic stores and compare-and-swaps. `no_std` without the default `std`
//! feature (the broker needs `alloc`).
//!
//! ## Example: grant a page, copy from it, map it, end the grant
//!
//! ```
//! use pvio_grant::{Access, Broker, CopyDst, CopyOp, CopySrc, DomId, DomainMemory, Frame};
//! use pvio_grant::{GrantError, GrantPtr, GrantStatus, GrantTable};
//! use pvio_ring::MemfdRegion;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! const GUEST: DomId = DomId(1);
//! const BACKEND: DomId = DomId(0);
//! // The guest: 16 frames of memory and a one-page grant table, both shareable memfds.
//! let memory = DomainMemory::new("guest-mem", 16)?;
//! let table_page = MemfdRegion::new("guest-gnttab", 4096)?;
//! let mut table = GrantTable::<512>::new(table_page.mem())?;
//!
//! // The back end's broker knows the guest's memory and table (and its IOVA base).
//! let mut broker = Broker::new();
//! broker.register(GUEST, memory.mem(), table_page.mem(), 0x1_0000_0000)?;
//!
//! // The guest writes a packet into frame 3 and grants it read-only to the back end.
//! memory.frame(Frame(3)).unwrap().write_bytes(100, b"header")?;
//! let gref = table.grant_access(BACKEND, Frame(3), true)?;
//!
//! // The back end copies the header out (a batch of one op) ...
//! let mut header = [0u8; 6];
//! let src = CopySrc::Grant(GrantPtr { domid: GUEST, gref, offset: 100 });
//! let mut ops = [CopyOp::new(src, CopyDst::Local(&mut header), 6)];
//! broker.copy(BACKEND, &mut ops);
//! assert_eq!(ops[0].status, Ok(()));
//! assert_eq!(&header, b"header");
//!
//! // ... may not write through a read-only grant ...
//! assert_eq!(broker.map(BACKEND, GUEST, gref, Access::Write).unwrap_err(), GrantStatus::PermissionDenied);
//!
//! // ... and maps it for a device: while mapped, the guest cannot end the grant.
//! let map = broker.map(BACKEND, GUEST, gref, Access::Read)?;
//! assert_eq!(map.iova(), 0x1_0000_0000 + 3 * 4096);
//! assert!(matches!(table.end_access(gref), Err(GrantError::InUse { .. })));
//! broker.unmap(map)?;
//! table.end_access(gref)?; // the frame is the guest's again; the broker now refuses gref
//! assert_eq!(broker.map(BACKEND, GUEST, gref, Access::Read).unwrap_err(), GrantStatus::BadGntref);
//! # Ok(())
//! # }
//! ```
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(missing_docs, unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![forbid(unsafe_code)]

#[cfg(feature = "alloc")]
extern crate alloc;

#[cfg(feature = "alloc")]
pub mod broker;
pub mod domain;
pub mod entry;
pub mod error;
pub mod table;

#[cfg(feature = "alloc")]
pub use broker::{Access, Broker, CopyDst, CopyOp, CopySrc, GrantPtr, MapHandle};
#[cfg(all(feature = "std", not(loom)))]
pub use domain::DomainMemory;
pub use domain::{DomId, Frame, PAGE_SIZE};
pub use entry::{FlagsWord, Grant, GrantEntryV1, GrantRef, GtfFlags};
pub use error::{GrantError, GrantStatus, GNTST_OKAY};
pub use table::GrantTable;
