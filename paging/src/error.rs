//! Errors of the mapper's operations. Each variant names the rule that was broken.

use crate::entry::ReservedBits;
use crate::mem::MemError;
use crate::size::PageSizeKind;

/// Why [`crate::Mapper::translate`] found no translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    /// The address is outside what the paging depth translates (non-canonical for x86).
    #[error("{addr:#x} is not a valid {bits}-bit input address")]
    BadAddress {
        /// The address.
        addr: u64,
        /// Input-address width of the hierarchy.
        bits: u32,
    },
    /// The walk met a not-present entry (the CPU raises #PF with P=0 / an EPT violation).
    #[error("{addr:#x} is not mapped: the level-{level} entry is not present")]
    NotMapped {
        /// The address.
        addr: u64,
        /// Level of the not-present entry.
        level: u8,
    },
    /// The walk met an entry with reserved bits set (#PF with RSVD=1 / EPT misconfiguration).
    #[error(transparent)]
    Reserved(#[from] ReservedBits),
    /// A table lies outside the memory the accessor reaches.
    #[error(transparent)]
    Memory(#[from] MemError),
}

/// Why a map, unmap, protect or promote was refused. Nothing was changed unless the variant
/// says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// A range start or end is outside what the paging depth translates, or crosses the
    /// non-canonical hole.
    #[error("range {start:#x}+{len:#x} is not valid {bits}-bit input address space")]
    BadRange {
        /// Start of the range.
        start: u64,
        /// Its length.
        len: u64,
        /// Input-address width of the hierarchy.
        bits: u32,
    },
    /// An address or length is not a multiple of the page size it must be.
    #[error("{value:#x} is not a multiple of {align:#x}")]
    Misaligned {
        /// The offending address or length.
        value: u64,
        /// The required alignment.
        align: u64,
    },
    /// A physical range runs past the 52-bit physical address space.
    #[error("physical range {start:#x}+{len:#x} exceeds 52 bits")]
    PhysOutOfRange {
        /// Start of the range.
        start: u64,
        /// Its length.
        len: u64,
    },
    /// The page size is larger than the mapper was configured for (e.g. 1 GiB without
    /// CPUID PDPE1GB).
    #[error("{size:?} pages are not allowed by this mapper (max {max:?})")]
    SizeNotAllowed {
        /// The requested size.
        size: PageSizeKind,
        /// The mapper's largest.
        max: PageSizeKind,
    },
    /// The leaf flags are not a valid entry of this format.
    #[error("invalid leaf flags: {reason}")]
    BadFlags {
        /// The rule they break.
        reason: &'static str,
    },
    /// Something is already mapped there (a leaf, or a table of smaller mappings).
    #[error("{addr:#x} is already mapped (level-{level} entry present)")]
    AlreadyMapped {
        /// First address of the existing entry's coverage.
        addr: u64,
        /// Its level.
        level: u8,
    },
    /// The frame allocator is exhausted. For `map_range`, what this call mapped was undone.
    #[error("out of frames for page tables")]
    OutOfFrames,
    /// The address is not mapped (single-page operations and promotion).
    #[error("{addr:#x} is not mapped (level-{level} entry not present)")]
    NotMapped {
        /// The address.
        addr: u64,
        /// Level of the not-present entry.
        level: u8,
    },
    /// The region cannot become one superpage; `reason` names the rule.
    #[error("cannot promote {addr:#x}: {reason}")]
    NotPromotable {
        /// Start of the region.
        addr: u64,
        /// The rule that failed.
        reason: &'static str,
    },
    /// An existing entry has reserved bits set; it was left alone.
    #[error(transparent)]
    Reserved(#[from] ReservedBits),
    /// A table lies outside the memory the accessor reaches.
    #[error(transparent)]
    Memory(#[from] MemError),
}
