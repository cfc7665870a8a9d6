//! The version-1 grant entry of Xen's `public/grant_table.h`, its flags and its references.
//!
//! A v1 grant table is a packed array of 8-byte [`GrantEntryV1`]s in memory the granting
//! domain shares with the hypervisor (here: with the [broker](crate::broker)). The first
//! 32-bit word holds `flags` (low half, little-endian) and `domid` (high half); both sides
//! update it with atomic read-modify-writes, so this crate treats it as one word
//! ([`FlagsWord`]), exactly as Xen's own `_set_status_v1` does with its `flags`/`domid` combo.
//!
//! ## Version 2 and sub-page grants (not implemented)
//!
//! Grant table v2 (`grant_entry_v2`, 16 bytes: an 8-byte `grant_entry_header` of
//! `flags`/`domid`, then a union of `full_page { pad, frame: u64 }`, `sub_page { page_off,
//! length, frame }` and `transitive { trans_domid, pad, gref }`) moves the `GTF_reading` /
//! `GTF_writing` status out of the entry into a separate, Xen-written status array
//! (`grant_status_t`, one `u16` per entry), so that the guest writes entries and Xen writes
//! status, never the same word. Supporting it would take: a second layout file; a
//! [`GrantTable`](crate::GrantTable) variant that owns the status frames and ends access by
//! clearing the type then checking status (`gnttab_end_foreign_access_ref_v2`: write flags 0,
//! full barrier, read status); a broker that sets status bits with plain atomics instead of a
//! compare-and-swap on the entry, re-checking the entry after setting them; and, for
//! `GTF_sub_page`, per-grant `(page_off, length)` bounds that the broker intersects with
//! every copy and map (maps of sub-page grants are refused by Xen; only copies may use them).
//! `GTF_transitive` additionally needs the broker to follow one level of indirection into a
//! third domain's table, pinning both entries.

use bitflags::bitflags;
use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::domain::{DomId, Frame};

/// Size in bytes of one v1 entry.
pub const ENTRY_SIZE: usize = 8;

/// `GNTTAB_NR_RESERVED_ENTRIES`: references below this are kept for the toolstack (console,
/// xenstore) and never handed out by [`GrantTable`](crate::GrantTable).
pub const NR_RESERVED_ENTRIES: u32 = 8;

/// `grant_ref_t`: an index into a domain's grant table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct GrantRef(pub u32);

/// `grant_entry_v1_t`: one entry of a version-1 grant table (8 bytes, little-endian).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct GrantEntryV1 {
    /// `GTF_*` flags ([`GtfFlags`]); written by the granter and by the hypervisor.
    pub flags: U16,
    /// The domain being granted access; written by the granter.
    pub domid: U16,
    /// The frame (guest page number) being granted; written by the granter.
    pub frame: U32,
}

impl GrantEntryV1 {
    /// Byte offset of `flags` (and of the [`FlagsWord`]) in an entry.
    pub const FLAGS_OFFSET: usize = 0;
    /// Byte offset of `domid` in an entry.
    pub const DOMID_OFFSET: usize = 2;
    /// Byte offset of `frame` in an entry.
    pub const FRAME_OFFSET: usize = 4;

    /// The flags, keeping bits this crate does not name.
    pub fn gtf(&self) -> GtfFlags {
        GtfFlags::from_bits_retain(self.flags.get())
    }
}

bitflags! {
    /// `GTF_*`: grant entry flags. Bits 0-1 are the entry type (see [`GtfFlags::TYPE_MASK`]).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct GtfFlags: u16 {
        /// `GTF_permit_access` (type 1): `domid` may map or copy `frame`.
        const PERMIT_ACCESS = 1;
        /// `GTF_accept_transfer` (type 2): `domid` may transfer a page into this slot.
        const ACCEPT_TRANSFER = 2;
        /// `GTF_transitive` (type 3, v2 only): `domid` may use another domain's grant.
        const TRANSITIVE = 3;
        /// `GTF_type_mask`: the two type bits.
        const TYPE_MASK = 3;
        /// `GTF_readonly`: the grantee may only read the frame (set by the granter).
        const READONLY = 1 << 2;
        /// `GTF_reading`: set by the hypervisor (broker) while the frame is in use at all.
        const READING = 1 << 3;
        /// `GTF_writing`: set by the hypervisor (broker) while the frame is in use for writing.
        const WRITING = 1 << 4;
        /// `GTF_PWT` (x86): map with write-through caching.
        const PWT = 1 << 5;
        /// `GTF_PCD` (x86): map with caching disabled.
        const PCD = 1 << 6;
        /// `GTF_PAT` (x86): select the PAT entry for the mapping.
        const PAT = 1 << 7;
        /// `GTF_sub_page` (v2 only): only a byte range of the page is granted.
        const SUB_PAGE = 1 << 8;
        /// `GTF_transfer_committed` (accept-transfer entries; same bit as `READONLY`).
        const TRANSFER_COMMITTED = 1 << 2;
        /// `GTF_transfer_completed` (accept-transfer entries; same bit as `READING`).
        const TRANSFER_COMPLETED = 1 << 3;
    }
}

impl GtfFlags {
    /// `GTF_invalid` (type 0): the entry grants nothing.
    pub const INVALID: GtfFlags = GtfFlags::empty();

    /// The type bits only (`flags & GTF_type_mask`).
    pub fn entry_type(self) -> GtfFlags {
        self & GtfFlags::TYPE_MASK
    }

    /// `GTF_reading | GTF_writing`: the grantee has the frame in use.
    pub fn in_use(self) -> bool {
        self.intersects(GtfFlags::READING | GtfFlags::WRITING)
    }
}

/// The first word of an entry as one 32-bit value: `flags` in bits 0-15, `domid` in 16-31
/// (the little-endian layout of the first two fields).
///
/// Both the granter and the broker update this word only with atomic stores and
/// compare-and-swaps through [`SharedU32`](pvio_ring::SharedU32); the value here is a
/// local copy, decoded from the raw little-endian word with [`FlagsWord::from_raw`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlagsWord {
    /// The flags half.
    pub flags: GtfFlags,
    /// The domid half.
    pub domid: DomId,
}

impl FlagsWord {
    /// Decodes a word as loaded from shared memory (native-endian load of little-endian bytes).
    pub fn from_raw(raw: u32) -> Self {
        let v = u32::from_le(raw);
        FlagsWord { flags: GtfFlags::from_bits_retain(v as u16), domid: DomId((v >> 16) as u16) }
    }

    /// Encodes the word for a native-endian store into shared memory.
    pub fn to_raw(self) -> u32 {
        (u32::from(self.flags.bits()) | (u32::from(self.domid.0) << 16)).to_le()
    }

    /// The native-endian raw mask that keeps every bit except `flags` (for `fetch_and`).
    pub fn clear_mask(flags: GtfFlags) -> u32 {
        (!u32::from(flags.bits())).to_le()
    }
}

/// An entry as the granter writes it: which domain may access which frame, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// The grantee.
    pub domid: DomId,
    /// The granted frame.
    pub frame: Frame,
    /// Whether the grantee may only read.
    pub readonly: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_entry_layout() {
        assert_eq!(size_of::<GrantEntryV1>(), ENTRY_SIZE);
        assert_eq!(align_of::<GrantEntryV1>(), 1, "zerocopy LE fields are unaligned types");
        assert_eq!(core::mem::offset_of!(GrantEntryV1, flags), GrantEntryV1::FLAGS_OFFSET);
        assert_eq!(core::mem::offset_of!(GrantEntryV1, domid), GrantEntryV1::DOMID_OFFSET);
        assert_eq!(core::mem::offset_of!(GrantEntryV1, frame), GrantEntryV1::FRAME_OFFSET);
    }

    #[test]
    fn entry_bytes_are_little_endian() {
        let e = GrantEntryV1 {
            flags: (GtfFlags::PERMIT_ACCESS | GtfFlags::READONLY).bits().into(),
            domid: 0x0102.into(),
            frame: 0x0a0b_0c0d.into(),
        };
        assert_eq!(e.as_bytes(), &[0x05, 0x00, 0x02, 0x01, 0x0d, 0x0c, 0x0b, 0x0a]);
        let raw = u32::from_ne_bytes(e.as_bytes()[..4].try_into().unwrap());
        let w = FlagsWord::from_raw(raw);
        assert_eq!(w.flags, GtfFlags::PERMIT_ACCESS | GtfFlags::READONLY);
        assert_eq!(w.domid, DomId(0x0102));
        assert_eq!(w.to_raw(), raw);
    }

    #[test]
    fn flag_values_match_grant_table_h() {
        assert_eq!(GtfFlags::INVALID.bits(), 0);
        assert_eq!(GtfFlags::PERMIT_ACCESS.bits(), 1);
        assert_eq!(GtfFlags::ACCEPT_TRANSFER.bits(), 2);
        assert_eq!(GtfFlags::TRANSITIVE.bits(), 3);
        assert_eq!(GtfFlags::TYPE_MASK.bits(), 3);
        assert_eq!(GtfFlags::READONLY.bits(), 4);
        assert_eq!(GtfFlags::READING.bits(), 8);
        assert_eq!(GtfFlags::WRITING.bits(), 16);
        assert_eq!(GtfFlags::PWT.bits(), 32);
        assert_eq!(GtfFlags::PCD.bits(), 64);
        assert_eq!(GtfFlags::PAT.bits(), 128);
        assert_eq!(GtfFlags::SUB_PAGE.bits(), 256);
        assert_eq!(GtfFlags::TRANSFER_COMMITTED.bits(), 4);
        assert_eq!(GtfFlags::TRANSFER_COMPLETED.bits(), 8);
        assert!((GtfFlags::PERMIT_ACCESS | GtfFlags::WRITING).in_use());
        assert!(!(GtfFlags::PERMIT_ACCESS | GtfFlags::READONLY).in_use());
        assert_eq!((GtfFlags::ACCEPT_TRANSFER | GtfFlags::PAT).entry_type(), GtfFlags::ACCEPT_TRANSFER);
    }

    #[test]
    fn clear_mask_clears_only_the_named_flags() {
        let w = FlagsWord { flags: GtfFlags::PERMIT_ACCESS | GtfFlags::READING, domid: DomId(7) };
        let cleared = FlagsWord::from_raw(w.to_raw() & FlagsWord::clear_mask(GtfFlags::READING));
        assert_eq!(cleared, FlagsWord { flags: GtfFlags::PERMIT_ACCESS, domid: DomId(7) });
    }
}
