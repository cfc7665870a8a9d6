//! # pvio-paging: page tables with superpages and global mappings
//!
//! The paper's third technique: back guest memory with superpages and map shared kernel pages
//! global so the TLB stops being the bottleneck. This crate holds x86-64 4- and 5-level page
//! tables with 4 KiB / 2 MiB / 1 GiB pages and a [`Mapper`] that picks the largest page
//! alignment allows, walks, unmaps (splitting superpages), changes protections and promotes
//! 512 pages back into one — `no_std`, without a heap.
//!
//! - [`addr`](PhysAddr), [`size`](PageSize): addresses, sealed page sizes, pages and frames.
//! - [`PageTableEntry`], [`PageFlags`], [`PageTable`]: the x86-64 entry format (PAT is bit 7
//!   in 4 KiB entries and bit 12 in large ones).
//! - [`PhysMem`] (how tables are reached: [`SliceMem`], [`OffsetMem`]) and [`FrameAllocator`].
//! - (`std`, Linux) [`hugepage`]: hugetlb memfds (2 MiB, 1 GiB) another process can map, with a
//!   transparent-huge-page fallback and the page size really obtained.
//! - [`Mapper`], its [`Flush`] tokens and errors; generic over the entry format: [`X86`]
//!   paging or Intel [`Ept`].
//!
//! ```
//! use pvio_paging::*;
//!
//! let mut ram = vec![0u8; 1 << 20]; // physical [0, 1 MiB): tables live here
//! let mut frames = RangeFrameAllocator::new(PhysAddr::new(0x1000).unwrap(), PhysAddr::new(1 << 20).unwrap());
//! let root = PhysFrame::from_start_address(PhysAddr::new(0).unwrap()).unwrap();
//! let mut m = Mapper::new(SliceMem::new(&mut ram, PhysAddr::new(0).unwrap()), root, Levels::Four);
//!
//! // 4 MiB + 8 KiB at 2 MiB-aligned addresses: two 2 MiB pages and two 4 KiB pages.
//! let va = VirtAddr::new(0xffff_8000_0020_0000).unwrap();
//! m.map_range(va, PhysAddr::new(0x4000_0000 + 0x20_0000).unwrap(), (4 << 20) + 0x2000,
//!             PageFlags::WRITABLE | PageFlags::GLOBAL, &mut frames)?.ignore();
//! let t = m.translate(VirtAddr::new(0xffff_8000_0030_0123).unwrap())?;
//! assert_eq!((t.size, t.phys_addr().as_u64()), (PageSizeKind::Size2MiB, 0x4030_0123));
//!
//! // Unmapping 4 KiB out of a 2 MiB page splits it; the flush says CR3 reload is not enough.
//! let flush = m.unmap_range(VirtAddr::new(0xffff_8000_0020_1000).unwrap(), 0x1000, &mut frames)?;
//! assert!(flush.needs_global_flush() && flush.structure_changed());
//! assert!(m.translate(VirtAddr::new(0xffff_8000_0020_1000).unwrap()).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(missing_docs, unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

#[cfg(feature = "alloc")]
extern crate alloc;

mod addr;
mod entry;
mod ept;
mod error;
mod flush;
mod format;
mod frame;
#[cfg(all(feature = "std", target_os = "linux"))]
pub mod hugepage;
mod mapper;
mod mem;
mod size;

pub use addr::{NonCanonical, PhysAddr, VirtAddr};
pub use entry::{bits, EntryKind, PageFlags, PageTable, PageTableEntry, ReservedBits};
pub use ept::{Ept, EptFlags, EptMemoryType};
pub use error::{MapError, TranslateError};
pub use flush::Flush;
pub use format::{EntryFormat, X86};
pub use frame::FrameAllocator;
#[cfg(feature = "alloc")]
pub use frame::RangeFrameAllocator;
pub use mapper::{Leaf, Mapper, Translation};
pub use mem::{CountingMem, MemError, OffsetMem, PhysMem, SliceMem};
pub use size::{Levels, Misaligned, Page, PageSize, PageSizeKind, PhysFrame, Size1GiB, Size2MiB, Size4KiB};
