//! # pvio-paging: page tables with superpages and global mappings
//!
//! The paper's third technique: back guest memory with superpages and map shared kernel pages
//! global so the TLB stops being the bottleneck. This crate will hold x86-64 4- and 5-level
//! page tables with 4 KiB / 2 MiB / 1 GiB pages, a mapper that picks the largest page that
//! alignment allows, split and promote, Intel EPT entries and (with `std`) hugepage-backed
//! memory pools — `no_std`.
//!
//! Today it provides the address types the rest builds on; the page-table machinery arrives
//! with the paging issue.
//!
//! ```
//! use pvio_paging::VirtAddr;
//!
//! assert!(VirtAddr::new(0xffff_8000_0000_0000).is_ok()); // canonical, 48-bit
//! assert!(VirtAddr::new(0x0000_8000_0000_0000).is_err()); // a hole address
//! ```
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(missing_docs, unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod addr;

pub use addr::{NonCanonical, PhysAddr, VirtAddr};
