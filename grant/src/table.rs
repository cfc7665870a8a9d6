//! The granting side (the guest's role): hand out grant references over a shared table,
//! publish entries, and end access only when the grantee is not using the frame.
//!
//! The protocol is the one `grant_table.h` prescribes and Linux's `drivers/xen/grant-table.c`
//! follows for v1 tables:
//!
//! - **Introducing an entry**: write `frame`, then publish `flags` (with `domid`, the other
//!   half of the same word) with a `Release` store. The broker reads the word with `Acquire`
//!   (its compare-and-swap) before it reads `frame`, so a broker that sees `GTF_permit_access`
//!   also sees this grant's frame, never a stale one.
//! - **Ending access**: read the flags; if `GTF_reading` or `GTF_writing` is set the grantee
//!   has the frame in use and the call fails, handing the grant back intact; otherwise
//!   compare-and-swap the word from exactly what was read to zero. If the broker set an in-use
//!   bit in between, the swap fails and the check is repeated, so the entry is only cleared
//!   at a moment when no copy or map holds it — and from then on the broker refuses it.

use core::sync::atomic::Ordering;

use pvio_ring::{SharedMem, SharedU32};
use zerocopy::little_endian::U32;

use crate::domain::{DomId, Frame};
use crate::entry::{FlagsWord, Grant, GrantEntryV1, GrantRef, GtfFlags, ENTRY_SIZE, NR_RESERVED_ENTRIES};
use crate::error::GrantError;

/// End of the free list.
const NIL: u32 = u32::MAX;

/// How many times [`GrantTable::end_access`] retries a compare-and-swap that lost a race
/// before reporting the grant as still in use. A well-behaved broker changes the word at most
/// twice per copy or map, so this only triggers under a flood of pins and unpins.
const END_RETRIES: u32 = 16;

/// The granting side of a v1 grant table of `N` entries over a shared region.
///
/// References `NR_RESERVED_ENTRIES..N` are handed out from a private, index-linked free list
/// (no allocation; `no_std`). What each live reference grants is also remembered privately,
/// so [`end_access`](Self::end_access) can hand it back and nothing here trusts the shared
/// entry beyond its in-use bits.
///
/// An owning handle: `Send`, and `&mut self` for every change, like Linux's table under its
/// lock.
pub struct GrantTable<'a, const N: usize> {
    mem: SharedMem<'a>,
    /// `next[i]`: the free reference after `i` (or [`NIL`]); meaningless while `i` is granted.
    next: [u32; N],
    /// Head of the free list, [`NIL`] when empty.
    free_head: u32,
    /// Number of free references (length of the free list).
    free: u32,
    /// What each granted reference grants; `None` when free or reserved.
    granted: [Option<Grant>; N],
}

impl<const N: usize> core::fmt::Debug for GrantTable<'_, N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("GrantTable").field("entries", &N).field("free", &self.free).finish()
    }
}

impl<'a, const N: usize> GrantTable<'a, N> {
    /// A table of `N` entries at the start of `mem`, all cleared to `GTF_invalid`.
    ///
    /// `N` must exceed [`NR_RESERVED_ENTRIES`] and fit in a `u32`; the region must hold
    /// `N * 8` bytes.
    pub fn new(mem: SharedMem<'a>) -> Result<Self, GrantError> {
        const { assert!(N > NR_RESERVED_ENTRIES as usize && N < u32::MAX as usize) };
        let needed = N * ENTRY_SIZE;
        if mem.len() < needed {
            return Err(GrantError::RegionTooSmall { entries: N, needed, len: mem.len() });
        }
        let mem = mem.slice(0, needed).map_err(|_| GrantError::RegionTooSmall {
            entries: N,
            needed,
            len: mem.len(),
        })?;
        mem.fill(0, needed, 0).map_err(|_| GrantError::RegionTooSmall { entries: N, needed, len: needed })?;
        let mut next = [NIL; N];
        for (i, n) in next.iter_mut().enumerate().skip(NR_RESERVED_ENTRIES as usize) {
            *n = if i + 1 < N { (i + 1) as u32 } else { NIL };
        }
        Ok(GrantTable {
            mem,
            next,
            free_head: NR_RESERVED_ENTRIES,
            free: N as u32 - NR_RESERVED_ENTRIES,
            granted: [None; N],
        })
    }

    /// Number of entries, reserved ones included.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// Number of references that [`grant_access`](Self::grant_access) can still hand out.
    pub fn free_count(&self) -> usize {
        self.free as usize
    }

    /// Grants `domid` access to `frame` (read-only if `readonly`) and returns the reference
    /// to pass to it. The grant lasts until [`end_access`](Self::end_access) succeeds.
    #[must_use = "a grant must be passed to the grantee and ended with end_access"]
    pub fn grant_access(
        &mut self,
        domid: DomId,
        frame: Frame,
        readonly: bool,
    ) -> Result<GrantRef, GrantError> {
        let r = self.free_head;
        if r == NIL {
            return Err(GrantError::NoFreeRefs);
        }
        let i = r as usize;
        debug_assert!(i < N && self.granted[i].is_none());
        let (word, frame_word) = self.words(i);
        // 1. The frame, while the entry is still invalid (the broker ignores it until the flags
        //    say GTF_permit_access).
        frame_word.store(frame.0.to_le(), Ordering::Relaxed);
        // 2. Publish flags and domid together. Release: pairs with the Acquire of the broker's
        //    compare-and-swap in `Broker::pin`, so a broker that sees this word sees step 1
        //    (and every write the granter made to the frame before granting it).
        let mut flags = GtfFlags::PERMIT_ACCESS;
        flags.set(GtfFlags::READONLY, readonly);
        word.store(FlagsWord { flags, domid }.to_raw(), Ordering::Release);

        self.free_head = self.next[i];
        self.free -= 1;
        self.granted[i] = Some(Grant { domid, frame, readonly });
        Ok(GrantRef(r))
    }

    /// Ends the grant `gref` and returns what it granted — unless the grantee has the frame
    /// in use (`GTF_reading`/`GTF_writing`), in which case the entry is left exactly as it was
    /// and [`GrantError::InUse`] hands the grant back. After `Ok`, the broker refuses every
    /// new copy or map of the entry and none is in progress: the frame is the granter's again.
    pub fn end_access(&mut self, gref: GrantRef) -> Result<Grant, GrantError> {
        let i = self.index(gref)?;
        let grant = self.granted[i].ok_or(GrantError::NotGranted(gref))?;
        let (word, _) = self.words(i);
        let mut seen = word.load(Ordering::Relaxed);
        let mut tries = 0;
        loop {
            if FlagsWord::from_raw(seen).flags.in_use() || tries == END_RETRIES {
                return Err(GrantError::InUse { gref, grant });
            }
            tries += 1;
            // Clear the whole word, but only if it still holds what we checked. Acquire: pairs
            // with the Release of the broker's unpin (`Broker::unpin`), so every access the
            // broker made to the frame under its pin happens before whatever the granter does
            // with the frame after this returns.
            match word.compare_exchange(seen, 0, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => seen = now,
            }
        }
        self.granted[i] = None;
        self.next[i] = self.free_head;
        self.free_head = gref.0;
        self.free += 1;
        Ok(grant)
    }

    /// What `gref` grants, from the granter's private record (`None` if not granted).
    pub fn grant(&self, gref: GrantRef) -> Option<Grant> {
        self.index(gref).ok().and_then(|i| self.granted[i])
    }

    /// Whether the grantee currently has `gref`'s frame in use (one read of the flags).
    pub fn is_in_use(&self, gref: GrantRef) -> Result<bool, GrantError> {
        Ok(self.flags(gref)?.in_use())
    }

    /// The entry's current flags (one read; the broker may change the in-use bits at any time).
    pub fn flags(&self, gref: GrantRef) -> Result<GtfFlags, GrantError> {
        let i = self.index(gref)?;
        if self.granted[i].is_none() {
            return Err(GrantError::NotGranted(gref));
        }
        Ok(FlagsWord::from_raw(self.words(i).0.load(Ordering::Relaxed)).flags)
    }

    /// A copy of entry `gref` as it is in shared memory now (any reference below `N`).
    pub fn entry(&self, gref: GrantRef) -> Result<GrantEntryV1, GrantError> {
        let i = self.index(gref)?;
        self.mem.read(i * ENTRY_SIZE).map_err(|_| GrantError::NotGranted(gref))
    }

    /// The shared table region (`N * 8` bytes), to register with the broker.
    pub fn mem(&self) -> &SharedMem<'a> {
        &self.mem
    }

    fn index(&self, gref: GrantRef) -> Result<usize, GrantError> {
        let i = gref.0 as usize;
        if i < NR_RESERVED_ENTRIES as usize || i >= N {
            return Err(GrantError::NotGranted(gref));
        }
        Ok(i)
    }

    /// The flags/domid word and the frame word of entry `i < N`.
    fn words(&self, i: usize) -> (SharedU32<'a>, SharedU32<'a>) {
        let at = i * ENTRY_SIZE;
        // `new` checked that the region holds N entries, entries are 8-byte aligned in an
        // 8-byte aligned region: neither access can fail.
        let word = self.mem.u32_at(at + GrantEntryV1::FLAGS_OFFSET);
        let frame = self.mem.u32_at(at + GrantEntryV1::FRAME_OFFSET);
        match (word, frame) {
            (Ok(w), Ok(f)) => (w, f),
            _ => unreachable!("entry {i} of a checked {N}-entry table"),
        }
    }

    /// The frame field of entry `gref` as shared memory holds it now.
    pub fn entry_frame(&self, gref: GrantRef) -> Result<Frame, GrantError> {
        let i = self.index(gref)?;
        let f: U32 = self
            .mem
            .read(i * ENTRY_SIZE + GrantEntryV1::FRAME_OFFSET)
            .map_err(|_| GrantError::NotGranted(gref))?;
        Ok(Frame(f.get()))
    }
}

#[cfg(all(test, feature = "alloc", not(loom)))]
mod tests {
    use super::*;
    use pvio_ring::HeapRegion;

    #[test]
    fn grant_writes_the_entry_and_end_clears_it() {
        let r = HeapRegion::new(4096);
        let mut t = GrantTable::<16>::new(r.mem()).unwrap();
        assert_eq!(t.free_count(), 8);
        let g = t.grant_access(DomId(3), Frame(0x1234), true).unwrap();
        assert_eq!(g, GrantRef(NR_RESERVED_ENTRIES));
        let e = t.entry(g).unwrap();
        assert_eq!(e.gtf(), GtfFlags::PERMIT_ACCESS | GtfFlags::READONLY);
        assert_eq!(e.domid.get(), 3);
        assert_eq!(e.frame.get(), 0x1234);
        assert_eq!(t.is_in_use(g), Ok(false));
        assert_eq!(t.end_access(g), Ok(Grant { domid: DomId(3), frame: Frame(0x1234), readonly: true }));
        assert_eq!(t.entry(g).unwrap().flags.get(), 0);
        assert_eq!(t.end_access(g), Err(GrantError::NotGranted(g)));
        assert_eq!(t.free_count(), 8);
    }

    #[test]
    fn end_access_fails_while_in_use_and_keeps_the_grant() {
        let r = HeapRegion::new(4096);
        let mut t = GrantTable::<16>::new(r.mem()).unwrap();
        let g = t.grant_access(DomId(1), Frame(5), false).unwrap();
        let word = r.mem().u32_at(g.0 as usize * 8).unwrap();
        for busy in [GtfFlags::READING, GtfFlags::WRITING, GtfFlags::READING | GtfFlags::WRITING] {
            word.fetch_or(FlagsWord { flags: busy, domid: DomId(0) }.to_raw(), Ordering::Relaxed);
            let before = t.entry(g).unwrap();
            let err = t.end_access(g).unwrap_err();
            assert_eq!(
                err,
                GrantError::InUse {
                    gref: g,
                    grant: Grant { domid: DomId(1), frame: Frame(5), readonly: false }
                }
            );
            assert_eq!(t.entry(g).unwrap(), before, "a failed end_access leaves the entry intact");
            assert_eq!(t.is_in_use(g), Ok(true));
            word.fetch_and(FlagsWord::clear_mask(busy), Ordering::Relaxed);
        }
        assert!(t.end_access(g).is_ok());
    }

    #[test]
    fn free_list_hands_out_every_ref_once_and_reuses_ended_ones() {
        let r = HeapRegion::new(4096);
        let mut t = GrantTable::<12>::new(r.mem()).unwrap();
        let refs: Vec<_> = (0..4).map(|k| t.grant_access(DomId(1), Frame(k), false).unwrap()).collect();
        assert_eq!(refs, [GrantRef(8), GrantRef(9), GrantRef(10), GrantRef(11)]);
        assert_eq!(t.grant_access(DomId(1), Frame(9), false), Err(GrantError::NoFreeRefs));
        t.end_access(GrantRef(10)).unwrap();
        assert_eq!(t.grant_access(DomId(2), Frame(7), true), Ok(GrantRef(10)));
        assert_eq!(t.grant(GrantRef(10)), Some(Grant { domid: DomId(2), frame: Frame(7), readonly: true }));
        assert_eq!(t.entry_frame(GrantRef(10)), Ok(Frame(7)));
    }

    #[test]
    fn reserved_and_out_of_range_refs_are_refused() {
        let r = HeapRegion::new(4096);
        let mut t = GrantTable::<12>::new(r.mem()).unwrap();
        for g in [GrantRef(0), GrantRef(7), GrantRef(12), GrantRef(u32::MAX)] {
            assert_eq!(t.end_access(g), Err(GrantError::NotGranted(g)));
            assert_eq!(t.is_in_use(g), Err(GrantError::NotGranted(g)));
        }
        assert!(matches!(GrantTable::<600>::new(r.mem()), Err(GrantError::RegionTooSmall { .. })));
    }
}
