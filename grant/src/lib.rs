//! # pvio-grant: Xen-style grant tables
//!
//! Grants are how a guest says which of its pages a back end may touch. This crate will hold
//! the v1 grant-table layout of Xen's `grant_table.h`, the granting side (grant, end access
//! with in-use checks), and the trusted broker that performs batched grant copy and grant
//! map/unmap for a back end — `no_std`, on top of `pvio-ring`'s shared-memory module.
//!
//! Today it provides the v1 entry layout and its flags; the tables and the broker arrive with
//! the grant issue.
//!
//! ```
//! use pvio_grant::{gtf, GrantEntryV1};
//!
//! let e = GrantEntryV1 { flags: gtf::PERMIT_ACCESS | gtf::READONLY, domid: 1, frame: 0x1234 };
//! assert_eq!(size_of::<GrantEntryV1>(), 8);
//! assert!(e.flags & gtf::READONLY != 0);
//! ```
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(missing_docs, unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

/// `grant_entry_v1_t`: one entry of a version-1 grant table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct GrantEntryV1 {
    /// `GTF_*` flags.
    pub flags: u16,
    /// The domain being granted access.
    pub domid: u16,
    /// The frame (page number) being granted.
    pub frame: u32,
}

/// `GTF_*`: grant entry flags (type in bits 0-1, then sub-flags).
pub mod gtf {
    /// Type: the entry is not in use.
    pub const INVALID: u16 = 0;
    /// Type: the domain in `domid` may map or copy `frame`.
    pub const PERMIT_ACCESS: u16 = 1;
    /// Type: a page transfer is accepted into this entry.
    pub const ACCEPT_TRANSFER: u16 = 2;
    /// Mask of the type bits.
    pub const TYPE_MASK: u16 = 3;
    /// The grantee may only read the frame.
    pub const READONLY: u16 = 1 << 2;
    /// Set by the hypervisor (broker) while the grantee reads the frame.
    pub const READING: u16 = 1 << 3;
    /// Set by the hypervisor (broker) while the grantee writes the frame.
    pub const WRITING: u16 = 1 << 4;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_entry_layout() {
        assert_eq!(size_of::<GrantEntryV1>(), 8);
        assert_eq!(core::mem::offset_of!(GrantEntryV1, domid), 2);
        assert_eq!(core::mem::offset_of!(GrantEntryV1, frame), 4);
    }
}
