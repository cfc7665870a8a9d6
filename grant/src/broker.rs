//! The trusted broker: the hypervisor's part of grant tables, run inside the back-end process
//! that holds each domain's memory and grant table.
//!
//! A grantee asks the broker to [`copy`](Broker::copy) bytes between granted frames and local
//! buffers, or to [`map`](Broker::map) a granted frame (a bounded view for the CPU, or the
//! frame's I/O-virtual address for a device). The broker enforces what the granter's entry
//! says, following Xen's `common/grant_table.c`:
//!
//! - **Each entry is read once.** Its flags/domid word is read into a local copy, checked
//!   (type `GTF_permit_access`, `domid` = the caller, not `GTF_readonly` for a write) and then
//!   updated with a compare-and-swap *from that copy* that adds `GTF_reading` (and
//!   `GTF_writing` for a write). If the granter changed the word in between, the swap fails and
//!   the checks run again on the new value (at most [`PIN_RETRIES`] times, then
//!   `GNTST_general_error`, as Xen gives up on an "unstable" entry). Only after the swap
//!   succeeds is `frame` read — once — and checked against the granting domain's memory.
//! - **Pins live in the broker.** Per-entry pin counts, the frame and the read-only bit found
//!   at first pin are kept in a private *active* table (Xen's `active_grant_entry`), never in
//!   guest memory. The in-use bits are set when the first pin (the first write pin, for
//!   `GTF_writing`) is taken and cleared when the last one goes, so one grant mapped several
//!   times stays in use until the last unmap (XSA-224 was a miscount of exactly this).
//! - **While pinned, the granter cannot end access**: its `end_access` compare-and-swap fails
//!   as long as `GTF_reading`/`GTF_writing` is set, and once it succeeds the word is zero, so
//!   every later pin is refused.
//!
//! Status codes are Xen's ([`GrantStatus`]); where Xen reports `GNTST_general_error` for a bad
//! entry, this broker is more specific: `GNTST_bad_gntref` for a wrong type or domid,
//! `GNTST_permission_denied` for a write through a read-only grant.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

use pvio_ring::SharedMem;
use zerocopy::little_endian::U32;

use crate::domain::{frame_of, DomId, Frame, PAGE_SIZE};
use crate::entry::{FlagsWord, GrantEntryV1, GrantRef, GtfFlags, ENTRY_SIZE};
use crate::error::GrantStatus;

/// How often a pin re-checks an entry whose word changed under its compare-and-swap.
pub const PIN_RETRIES: u32 = 4;

/// Source of fresh broker ids, so a [`MapHandle`] is only accepted by the broker that made it.
static NEXT_BROKER_ID: AtomicU32 = AtomicU32::new(1);

/// How a grant is used: only read, or also written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Read only (`GTF_reading`).
    Read,
    /// Read and write (`GTF_reading | GTF_writing`); refused by a read-only grant.
    Write,
}

/// A place in a granted frame: `offset` bytes into the frame of `domid`'s grant `gref`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantPtr {
    /// The granting domain (whose table holds `gref`).
    pub domid: DomId,
    /// The grant reference.
    pub gref: GrantRef,
    /// Byte offset into the granted frame.
    pub offset: u16,
}

/// The source of a [`CopyOp`].
#[derive(Debug)]
pub enum CopySrc<'b> {
    /// Bytes in a granted frame.
    Grant(GrantPtr),
    /// The first `len` bytes of a buffer of the caller's.
    Local(&'b [u8]),
}

/// The destination of a [`CopyOp`].
#[derive(Debug)]
pub enum CopyDst<'b> {
    /// Bytes in a granted frame (the grant must be writable).
    Grant(GrantPtr),
    /// The first `len` bytes of a buffer of the caller's.
    Local(&'b mut [u8]),
}

/// One operation of a batched [`Broker::copy`] (`gnttab_copy_t`), with its status.
#[derive(Debug)]
pub struct CopyOp<'b> {
    /// Where the bytes come from.
    pub src: CopySrc<'b>,
    /// Where they go.
    pub dst: CopyDst<'b>,
    /// How many bytes; `offset + len` must stay within the frame on each grant side.
    pub len: u16,
    /// Set by [`Broker::copy`]: `Ok` or why this op was refused (`GNTST_*`).
    pub status: Result<(), GrantStatus>,
}

impl<'b> CopyOp<'b> {
    /// An op not yet performed (its status is `GNTST_general_error` until it is).
    pub fn new(src: CopySrc<'b>, dst: CopyDst<'b>, len: u16) -> Self {
        CopyOp { src, dst, len, status: Err(GrantStatus::GeneralError) }
    }
}

/// The broker's private record of one grant entry in use (Xen's `active_grant_entry`).
#[derive(Debug, Clone, Copy, Default)]
struct Active {
    /// Pins for reading only.
    readers: u32,
    /// Pins for writing (each also counts as a use: `GTF_reading` stays set while any exist).
    writers: u32,
    /// The grantee that holds the pins.
    grantee: DomId,
    /// The frame found in the entry at the first pin, already checked against the memory.
    frame: Frame,
    /// `GTF_readonly` as found at the first pin.
    readonly: bool,
}

impl Active {
    fn pins(&self) -> u64 {
        u64::from(self.readers) + u64::from(self.writers)
    }
}

/// A domain registered with the broker.
#[derive(Debug)]
struct Domain<'a> {
    domid: DomId,
    memory: SharedMem<'a>,
    table: SharedMem<'a>,
    /// Entries in `table` (`table.len() / 8`).
    entries: u32,
    /// I/O-virtual address of frame 0 for devices.
    iova_base: u64,
    /// One record per entry, indexed by grant reference.
    active: Vec<Active>,
}

/// The trusted broker: registered domains, their memory and grant tables, and the pins held
/// on their grants. See the [module documentation](self).
#[derive(Debug)]
pub struct Broker<'a> {
    id: u32,
    domains: Vec<Domain<'a>>,
    /// Bounce buffer for grant-to-grant copies (one page, allocated once).
    bounce: Vec<u8>,
}

impl Default for Broker<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> Broker<'a> {
    /// A broker with no domains.
    pub fn new() -> Self {
        Broker {
            id: NEXT_BROKER_ID.fetch_add(1, Ordering::Relaxed),
            domains: Vec::new(),
            bounce: alloc::vec![0; PAGE_SIZE],
        }
    }

    /// Registers `domid` with its memory (a whole number of 4 KiB frames; frame `f` is bytes
    /// `f * 4096 ..`), its grant table (`table.len() / 8` v1 entries) and the I/O-virtual
    /// address at which devices see its frame 0.
    ///
    /// Refused with `GNTST_bad_domain` for a domain already registered or `DOMID_SELF`,
    /// `GNTST_bad_page` if the memory is not whole frames, `GNTST_bad_dev_addr` if the IOVA
    /// range is unaligned or overflows.
    pub fn register(
        &mut self,
        domid: DomId,
        memory: SharedMem<'a>,
        table: SharedMem<'a>,
        iova_base: u64,
    ) -> Result<(), GrantStatus> {
        if domid == DomId::SELF || self.domains.iter().any(|d| d.domid == domid) {
            return Err(GrantStatus::BadDomain);
        }
        if memory.len() % PAGE_SIZE != 0 || memory.len() / PAGE_SIZE > u32::MAX as usize {
            return Err(GrantStatus::BadPage);
        }
        if iova_base % PAGE_SIZE as u64 != 0 || iova_base.checked_add(memory.len() as u64).is_none() {
            return Err(GrantStatus::BadDevAddr);
        }
        let entries = (table.len() / ENTRY_SIZE).min(u32::MAX as usize) as u32;
        let active = alloc::vec![Active::default(); entries as usize];
        self.domains.push(Domain { domid, memory, table, entries, iova_base, active });
        Ok(())
    }

    /// Pins `(readers, writers)` currently held on `domid`'s grant `gref` (0 if none).
    pub fn pins(&self, domid: DomId, gref: GrantRef) -> Option<(u32, u32)> {
        let d = self.domains.iter().find(|d| d.domid == domid)?;
        let a = d.active.get(gref.0 as usize)?;
        Some((a.readers, a.writers))
    }

    /// Performs each op in `ops` on behalf of the grantee `caller`, setting each op's
    /// `status`. Ops are independent: one failing does not stop the others. Every grant an op
    /// touches is pinned (`GTF_reading`, plus `GTF_writing` for a destination) for exactly the
    /// duration of that op's copy.
    pub fn copy(&mut self, caller: DomId, ops: &mut [CopyOp<'_>]) {
        for op in ops.iter_mut() {
            op.status = self.copy_one(caller, op);
        }
    }

    fn copy_one(&mut self, caller: DomId, op: &mut CopyOp<'_>) -> Result<(), GrantStatus> {
        let len = usize::from(op.len);
        // Arguments first: nothing is pinned for an op that cannot be done.
        let src_ptr = match &op.src {
            CopySrc::Grant(p) => Some(check_span(p, len)?),
            CopySrc::Local(b) if b.len() < len => return Err(GrantStatus::BadCopyArg),
            CopySrc::Local(_) => None,
        };
        let dst_ptr = match &op.dst {
            CopyDst::Grant(p) => Some(check_span(p, len)?),
            CopyDst::Local(b) if b.len() < len => return Err(GrantStatus::BadCopyArg),
            CopyDst::Local(_) => None,
        };
        let src = match src_ptr {
            Some(p) => Some((p, self.pin(caller, p.domid, p.gref, Access::Read)?)),
            None => None,
        };
        let dst = match dst_ptr {
            Some(p) => match self.pin(caller, p.domid, p.gref, Access::Write) {
                Ok(mem) => Some((p, mem)),
                Err(e) => {
                    if let Some((p, _)) = src {
                        self.unpin(p.domid, p.gref, Access::Read);
                    }
                    return Err(e);
                }
            },
            None => None,
        };

        let result = match (&src, &dst, &op.src, &mut op.dst) {
            (Some((sp, smem)), Some((dp, dmem)), _, _) => {
                // Through a private buffer: the source is read once, so the destination gets
                // one consistent snapshot even if the source's owner writes concurrently.
                let buf = &mut self.bounce[..len];
                smem.read_bytes(usize::from(sp.offset), buf)
                    .and_then(|()| dmem.write_bytes(usize::from(dp.offset), buf))
            }
            (Some((sp, smem)), None, _, CopyDst::Local(b)) => {
                smem.read_bytes(usize::from(sp.offset), &mut b[..len])
            }
            (None, Some((dp, dmem)), CopySrc::Local(b), _) => {
                dmem.write_bytes(usize::from(dp.offset), &b[..len])
            }
            (None, None, CopySrc::Local(s), CopyDst::Local(d)) => {
                d[..len].copy_from_slice(&s[..len]);
                Ok(())
            }
            _ => unreachable!("src/dst pins follow the op's kinds"),
        };

        if let Some((p, _)) = dst {
            self.unpin(p.domid, p.gref, Access::Write);
        }
        if let Some((p, _)) = src {
            self.unpin(p.domid, p.gref, Access::Read);
        }
        // Bounds were checked against the frame above; a view of a frame is exactly a page.
        result.map_err(|_| GrantStatus::BadCopyArg)
    }

    /// Maps `domid`'s grant `gref` for `caller`: the returned handle holds a pin (and with it
    /// `GTF_reading`, plus `GTF_writing` for [`Access::Write`]) until it is given to
    /// [`unmap`](Self::unmap).
    #[must_use = "a mapping holds the grant in use until it is unmapped"]
    pub fn map(
        &mut self,
        caller: DomId,
        domid: DomId,
        gref: GrantRef,
        access: Access,
    ) -> Result<MapHandle<'a>, GrantStatus> {
        let frame_mem = self.pin(caller, domid, gref, access)?;
        let d = self.domain(domid)?;
        let frame = d.active[gref.0 as usize].frame;
        Ok(MapHandle {
            broker: self.id,
            domid,
            gref,
            access,
            frame,
            iova: d.iova_base + frame.offset(),
            mem: frame_mem,
        })
    }

    /// Ends a mapping: drops its pin, clearing `GTF_writing`/`GTF_reading` when it was the last
    /// one of its kind. `GNTST_bad_handle` for a handle made by another broker.
    pub fn unmap(&mut self, handle: MapHandle<'a>) -> Result<(), GrantStatus> {
        if handle.broker != self.id {
            return Err(GrantStatus::BadHandle);
        }
        self.unpin(handle.domid, handle.gref, handle.access);
        Ok(())
    }

    fn domain(&self, domid: DomId) -> Result<&Domain<'a>, GrantStatus> {
        self.domains.iter().find(|d| d.domid == domid).ok_or(GrantStatus::BadDomain)
    }

    /// Takes one pin on `domid`'s grant `gref` for `caller` and returns the view of its frame.
    fn pin(
        &mut self,
        caller: DomId,
        domid: DomId,
        gref: GrantRef,
        access: Access,
    ) -> Result<SharedMem<'a>, GrantStatus> {
        let d = self.domains.iter_mut().find(|d| d.domid == domid).ok_or(GrantStatus::BadDomain)?;
        if gref.0 >= d.entries {
            return Err(GrantStatus::BadGntref);
        }
        let i = gref.0 as usize;
        let write = access == Access::Write;
        let act = d.active[i];
        if act.pins() > 0 && act.grantee != caller {
            return Err(GrantStatus::BadGntref);
        }
        if act.pins() > 0 && write && act.readonly {
            return Err(GrantStatus::PermissionDenied);
        }
        if act.readers.max(act.writers) == u32::MAX {
            return Err(GrantStatus::NoSpace);
        }

        let mut act = act;
        let mut first_view = None;
        // The shared entry is consulted (and its in-use bits set) on the first pin, and on the
        // first write pin of an entry pinned only for reading.
        if act.pins() == 0 || (write && act.writers == 0) {
            let at = i * ENTRY_SIZE;
            let word = d.table.u32_at(at + GrantEntryV1::FLAGS_OFFSET).map_err(|_| GrantStatus::BadGntref)?;
            let mut add = GtfFlags::READING;
            if write {
                add |= GtfFlags::WRITING;
            }
            let mut seen = word.load(Ordering::Relaxed);
            let mut tries = 0;
            let found = loop {
                // One local copy of the word per attempt; everything below looks at the copy.
                let cur = FlagsWord::from_raw(seen);
                if cur.flags.entry_type() != GtfFlags::PERMIT_ACCESS || cur.domid != caller {
                    return Err(GrantStatus::BadGntref);
                }
                if write && cur.flags.contains(GtfFlags::READONLY) {
                    return Err(GrantStatus::PermissionDenied);
                }
                if tries == PIN_RETRIES {
                    return Err(GrantStatus::GeneralError);
                }
                tries += 1;
                let new = FlagsWord { flags: cur.flags | add, domid: cur.domid };
                // Acquire: pairs with the granter's Release publish in `GrantTable::grant_access`
                // (the frame read below is the one written before it) and with the Release of
                // whatever else last wrote the word.
                match word.compare_exchange(seen, new.to_raw(), Ordering::Acquire, Ordering::Relaxed) {
                    Ok(_) => break cur,
                    Err(now) => seen = now,
                }
            };
            if act.pins() == 0 {
                // First pin: read the frame once, after the swap, and check it.
                let frame = d
                    .table
                    .read::<U32>(at + GrantEntryV1::FRAME_OFFSET)
                    .map(|f| Frame(f.get()))
                    .map_err(|_| GrantStatus::BadGntref)?;
                let Ok(mem) = frame_of(&d.memory, frame) else {
                    // Give back exactly the bits this pin added.
                    word.fetch_and(FlagsWord::clear_mask(add), Ordering::Release);
                    return Err(GrantStatus::BadPage);
                };
                first_view = Some(mem);
                act.frame = frame;
                act.grantee = caller;
                act.readonly = found.flags.contains(GtfFlags::READONLY);
            }
        }
        let mem = match first_view {
            Some(mem) => mem,
            None => frame_of(&d.memory, act.frame).map_err(|_| GrantStatus::BadPage)?,
        };
        if write {
            act.writers += 1;
        } else {
            act.readers += 1;
        }
        d.active[i] = act;
        Ok(mem)
    }

    /// Drops one pin taken by [`pin`](Self::pin) with the same arguments.
    fn unpin(&mut self, domid: DomId, gref: GrantRef, access: Access) {
        let Some(d) = self.domains.iter_mut().find(|d| d.domid == domid) else {
            debug_assert!(false, "unpin of an unregistered domain");
            return;
        };
        let i = gref.0 as usize;
        let Some(act) = d.active.get_mut(i) else {
            debug_assert!(false, "unpin of a reference beyond the table");
            return;
        };
        let mut clear = GtfFlags::empty();
        match access {
            Access::Write => {
                debug_assert!(act.writers > 0);
                act.writers = act.writers.saturating_sub(1);
                if act.writers == 0 {
                    clear |= GtfFlags::WRITING;
                }
            }
            Access::Read => {
                debug_assert!(act.readers > 0);
                act.readers = act.readers.saturating_sub(1);
            }
        }
        if act.pins() == 0 {
            clear |= GtfFlags::READING;
        }
        if !clear.is_empty() {
            if let Ok(word) = d.table.u32_at(i * ENTRY_SIZE + GrantEntryV1::FLAGS_OFFSET) {
                // Release: pairs with the Acquire of the granter's `end_access`
                // compare-and-swap: every access made to the frame under the pin happens
                // before the granter's next use of it.
                word.fetch_and(FlagsWord::clear_mask(clear), Ordering::Release);
            }
        }
    }
}

/// Checks that `len` bytes at `p.offset` lie in one frame.
fn check_span(p: &GrantPtr, len: usize) -> Result<GrantPtr, GrantStatus> {
    if usize::from(p.offset) + len > PAGE_SIZE {
        return Err(GrantStatus::BadCopyArg);
    }
    Ok(*p)
}

/// A live mapping of a granted frame, made by [`Broker::map`].
///
/// It gives bounded access to exactly that frame for the CPU ([`read_bytes`](Self::read_bytes),
/// [`write_bytes`](Self::write_bytes), refused for [`Access::Read`] maps) and its I/O-virtual
/// address for a device ([`iova`](Self::iova)). No view escapes the handle, so nothing touches
/// the frame through it after [`Broker::unmap`]; a device given the IOVA must have stopped
/// before unmap is called. Dropping a handle without unmapping keeps the grant in use forever
/// (the safe direction: the granter can never reuse the frame under a stale mapping).
#[must_use = "unmap the handle with Broker::unmap, or the grant stays in use"]
#[derive(Debug)]
pub struct MapHandle<'a> {
    broker: u32,
    domid: DomId,
    gref: GrantRef,
    access: Access,
    frame: Frame,
    iova: u64,
    mem: SharedMem<'a>,
}

impl MapHandle<'_> {
    /// The granting domain.
    pub fn domid(&self) -> DomId {
        self.domid
    }

    /// The grant reference.
    pub fn gref(&self) -> GrantRef {
        self.gref
    }

    /// How the grant is mapped.
    pub fn access(&self) -> Access {
        self.access
    }

    /// The mapped frame, in the granting domain's memory.
    pub fn frame(&self) -> Frame {
        self.frame
    }

    /// The frame's I/O-virtual address (the domain's IOVA base + `frame * 4096`), for DMA.
    pub fn iova(&self) -> u64 {
        self.iova
    }

    /// Copies bytes out of the frame at `offset`.
    pub fn read_bytes(&self, offset: usize, dst: &mut [u8]) -> Result<(), GrantStatus> {
        self.mem.read_bytes(offset, dst).map_err(|_| GrantStatus::BadCopyArg)
    }

    /// Copies bytes into the frame at `offset`; `GNTST_permission_denied` for a read map.
    pub fn write_bytes(&self, offset: usize, src: &[u8]) -> Result<(), GrantStatus> {
        if self.access != Access::Write {
            return Err(GrantStatus::PermissionDenied);
        }
        self.mem.write_bytes(offset, src).map_err(|_| GrantStatus::BadCopyArg)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::{GrantError, GrantTable};
    use pvio_ring::HeapRegion;

    const GUEST: DomId = DomId(1);
    const BACK: DomId = DomId(0);
    const FRAMES: usize = 4;

    struct Setup {
        mem: HeapRegion,
        tab: HeapRegion,
    }

    fn setup() -> Setup {
        Setup { mem: HeapRegion::new(FRAMES * PAGE_SIZE), tab: HeapRegion::new(PAGE_SIZE) }
    }

    fn parts(s: &Setup) -> (GrantTable<'_, 64>, Broker<'_>) {
        let t = GrantTable::<64>::new(s.tab.mem()).unwrap();
        let mut b = Broker::new();
        b.register(GUEST, s.mem.mem(), s.tab.mem(), 0x8000_0000).unwrap();
        (t, b)
    }

    fn word(s: &Setup, g: GrantRef) -> FlagsWord {
        FlagsWord::from_raw(s.tab.mem().u32_at(g.0 as usize * 8).unwrap().load(Ordering::Relaxed))
    }

    fn gp(gref: GrantRef, offset: u16) -> GrantPtr {
        GrantPtr { domid: GUEST, gref, offset }
    }

    #[test]
    fn copy_in_and_out_with_per_op_status() {
        let s = setup();
        let (mut t, mut b) = parts(&s);
        let rw = t.grant_access(BACK, Frame(1), false).unwrap();
        let ro = t.grant_access(BACK, Frame(2), true).unwrap();
        s.mem.mem().write_bytes(2 * PAGE_SIZE + 10, b"abcd").unwrap();
        let mut out = [0u8; 4];
        let mut short = [0u8; 2];
        let st: Vec<_> = {
            let mut ops = [
                CopyOp::new(CopySrc::Local(b"wxyz"), CopyDst::Grant(gp(rw, 4092)), 4),
                CopyOp::new(CopySrc::Grant(gp(ro, 10)), CopyDst::Local(&mut out), 4),
                CopyOp::new(CopySrc::Local(b"nope"), CopyDst::Grant(gp(ro, 0)), 4),
                CopyOp::new(CopySrc::Local(b"wxyz"), CopyDst::Grant(gp(rw, 4093)), 4),
                CopyOp::new(CopySrc::Grant(gp(ro, 10)), CopyDst::Local(&mut short), 4),
                CopyOp::new(CopySrc::Grant(gp(GrantRef(64), 0)), CopyDst::Grant(gp(rw, 0)), 1),
                CopyOp::new(CopySrc::Grant(gp(GrantRef(20), 0)), CopyDst::Grant(gp(rw, 0)), 1),
                CopyOp::new(CopySrc::Grant(gp(ro, 10)), CopyDst::Grant(gp(rw, 0)), 4),
                CopyOp::new(
                    CopySrc::Grant(GrantPtr { domid: DomId(9), gref: ro, offset: 0 }),
                    CopyDst::Grant(gp(rw, 0)),
                    1,
                ),
            ];
            b.copy(BACK, &mut ops);
            ops.iter().map(|o| o.status).collect()
        };
        assert_eq!(
            st,
            [
                Ok(()),
                Ok(()),
                Err(GrantStatus::PermissionDenied),
                Err(GrantStatus::BadCopyArg),
                Err(GrantStatus::BadCopyArg),
                Err(GrantStatus::BadGntref),
                Err(GrantStatus::BadGntref),
                Ok(()),
                Err(GrantStatus::BadDomain),
            ]
        );
        assert_eq!(&out, b"abcd");
        let mut got = [0u8; 4];
        s.mem.mem().read_bytes(2 * PAGE_SIZE - 4, &mut got).unwrap();
        assert_eq!(&got, b"wxyz");
        s.mem.mem().read_bytes(PAGE_SIZE, &mut got).unwrap();
        assert_eq!(&got, b"abcd");
        // Every pin was dropped: both grants can be ended.
        assert_eq!(word(&s, rw).flags, GtfFlags::PERMIT_ACCESS);
        assert!(t.end_access(rw).is_ok() && t.end_access(ro).is_ok());
    }

    #[test]
    fn only_the_named_grantee_may_use_a_grant() {
        let s = setup();
        let (mut t, mut b) = parts(&s);
        let g = t.grant_access(DomId(5), Frame(0), false).unwrap();
        assert_eq!(b.map(BACK, GUEST, g, Access::Read).unwrap_err(), GrantStatus::BadGntref);
        let h = b.map(DomId(5), GUEST, g, Access::Read).unwrap();
        assert_eq!(
            b.map(BACK, GUEST, g, Access::Read).unwrap_err(),
            GrantStatus::BadGntref,
            "pinned by another"
        );
        b.unmap(h).unwrap();
    }

    #[test]
    fn frames_outside_the_domain_are_refused_and_leave_no_pin() {
        let s = setup();
        let (mut t, mut b) = parts(&s);
        let g = t.grant_access(BACK, Frame(FRAMES as u32), false).unwrap();
        assert_eq!(b.map(BACK, GUEST, g, Access::Write).unwrap_err(), GrantStatus::BadPage);
        assert_eq!(word(&s, g).flags, GtfFlags::PERMIT_ACCESS, "in-use bits given back");
        assert_eq!(b.pins(GUEST, g), Some((0, 0)));
        assert!(t.end_access(g).is_ok());
    }

    #[test]
    fn repeated_maps_keep_the_grant_in_use_until_the_last_unmap() {
        // XSA-224: the in-use bits must follow the pin counts exactly.
        let s = setup();
        let (mut t, mut b) = parts(&s);
        let g = t.grant_access(BACK, Frame(3), false).unwrap();
        let r1 = b.map(BACK, GUEST, g, Access::Read).unwrap();
        let w1 = b.map(BACK, GUEST, g, Access::Write).unwrap();
        let w2 = b.map(BACK, GUEST, g, Access::Write).unwrap();
        let r2 = b.map(BACK, GUEST, g, Access::Read).unwrap();
        assert_eq!(b.pins(GUEST, g), Some((2, 2)));
        assert_eq!(word(&s, g).flags, GtfFlags::PERMIT_ACCESS | GtfFlags::READING | GtfFlags::WRITING);
        assert_eq!(w1.iova(), 0x8000_0000 + 3 * 4096);
        w1.write_bytes(0, b"hi").unwrap();
        assert_eq!(r1.write_bytes(0, b"no"), Err(GrantStatus::PermissionDenied));
        assert_eq!(w1.write_bytes(4095, b"no"), Err(GrantStatus::BadCopyArg));
        let mut hi = [0u8; 2];
        r2.read_bytes(0, &mut hi).unwrap();
        assert_eq!(&hi, b"hi");

        b.unmap(w1).unwrap();
        assert_eq!(word(&s, g).flags, GtfFlags::PERMIT_ACCESS | GtfFlags::READING | GtfFlags::WRITING);
        b.unmap(w2).unwrap();
        assert_eq!(word(&s, g).flags, GtfFlags::PERMIT_ACCESS | GtfFlags::READING, "no writers left");
        b.unmap(r1).unwrap();
        assert!(matches!(t.end_access(g), Err(GrantError::InUse { .. })));
        b.unmap(r2).unwrap();
        assert_eq!(word(&s, g).flags, GtfFlags::PERMIT_ACCESS);
        assert_eq!(b.pins(GUEST, g), Some((0, 0)));
        assert!(t.end_access(g).is_ok());
    }

    #[test]
    fn a_read_pin_is_upgraded_only_through_the_entry() {
        let s = setup();
        let (mut t, mut b) = parts(&s);
        let g = t.grant_access(BACK, Frame(0), true).unwrap();
        let r = b.map(BACK, GUEST, g, Access::Read).unwrap();
        assert_eq!(b.map(BACK, GUEST, g, Access::Write).unwrap_err(), GrantStatus::PermissionDenied);
        let mut ops = [CopyOp::new(CopySrc::Local(&[1]), CopyDst::Grant(gp(g, 0)), 1)];
        b.copy(BACK, &mut ops);
        assert_eq!(ops[0].status, Err(GrantStatus::PermissionDenied));
        assert_eq!(b.pins(GUEST, g), Some((1, 0)));
        b.unmap(r).unwrap();
    }

    #[test]
    fn handles_belong_to_their_broker_and_registration_is_checked() {
        let s = setup();
        let (mut t, mut b) = parts(&s);
        let g = t.grant_access(BACK, Frame(0), false).unwrap();
        let h = b.map(BACK, GUEST, g, Access::Read).unwrap();
        let mut other = Broker::new();
        assert_eq!(other.unmap(h), Err(GrantStatus::BadHandle));
        assert_eq!(b.register(GUEST, s.mem.mem(), s.tab.mem(), 0), Err(GrantStatus::BadDomain));
        assert_eq!(b.register(DomId::SELF, s.mem.mem(), s.tab.mem(), 0), Err(GrantStatus::BadDomain));
        let odd = s.mem.mem().slice(0, 100).unwrap();
        assert_eq!(b.register(DomId(2), odd, s.tab.mem(), 0), Err(GrantStatus::BadPage));
        assert_eq!(b.register(DomId(2), s.mem.mem(), s.tab.mem(), 1), Err(GrantStatus::BadDevAddr));
        assert_eq!(
            b.register(DomId(2), s.mem.mem(), s.tab.mem(), u64::MAX - 4095),
            Err(GrantStatus::BadDevAddr)
        );
    }

    /// The granter retries `end_access` while the broker copies and maps in another thread;
    /// once it succeeds the broker is refused. Under miri this also checks for data races.
    #[cfg(feature = "std")]
    #[test]
    fn end_access_waits_out_a_concurrent_broker() {
        let rounds = if cfg!(miri) { 3 } else { 200 };
        let s = setup();
        for _ in 0..rounds {
            let (mut t, mut b) = parts(&s);
            let g = t.grant_access(BACK, Frame(1), false).unwrap();
            std::thread::scope(|sc| {
                sc.spawn(|| {
                    let mut refused = false;
                    for k in 0..4u8 {
                        let src = [k; 64];
                        let mut ops = [CopyOp::new(CopySrc::Local(&src), CopyDst::Grant(gp(g, 0)), 64)];
                        b.copy(BACK, &mut ops);
                        if refused {
                            assert_eq!(ops[0].status, Err(GrantStatus::BadGntref), "copy after end_access");
                        }
                        match b.map(BACK, GUEST, g, Access::Read) {
                            Ok(h) => b.unmap(h).unwrap(),
                            Err(e) => {
                                assert_eq!(e, GrantStatus::BadGntref);
                                refused = true;
                            }
                        }
                    }
                });
                loop {
                    match t.end_access(g) {
                        Ok(_) => break,
                        Err(GrantError::InUse { .. }) => std::thread::yield_now(),
                        Err(e) => panic!("{e:?}"),
                    }
                }
                s.mem.mem().fill(PAGE_SIZE, 64, 0xff).unwrap();
            });
            let mut tail = [0u8; 64];
            s.mem.mem().read_bytes(PAGE_SIZE, &mut tail).unwrap();
            assert_eq!(tail, [0xff; 64], "the broker wrote after end_access");
        }
    }

    #[test]
    fn a_hostile_entry_is_refused_without_a_trace() {
        let s = setup();
        let (_t, mut b) = parts(&s);
        let tab = s.tab.mem();
        // Hand-written entries: wrong type, transitive, accept-transfer, huge frame.
        let cases = [
            (GtfFlags::ACCEPT_TRANSFER, BACK, 0, GrantStatus::BadGntref),
            (GtfFlags::TRANSITIVE, BACK, 0, GrantStatus::BadGntref),
            (GtfFlags::PERMIT_ACCESS | GtfFlags::READONLY, BACK, 0, GrantStatus::PermissionDenied),
            (GtfFlags::PERMIT_ACCESS, BACK, u32::MAX, GrantStatus::BadPage),
            (GtfFlags::PERMIT_ACCESS, DomId(0xffff), 0, GrantStatus::BadGntref),
        ];
        for (k, (flags, domid, frame, want)) in cases.into_iter().enumerate() {
            let at = (8 + k) * 8;
            tab.write(
                at,
                &GrantEntryV1 { flags: flags.bits().into(), domid: domid.0.into(), frame: frame.into() },
            )
            .unwrap();
            let got = b.map(BACK, GUEST, GrantRef(8 + k as u32), Access::Write).unwrap_err();
            assert_eq!(got, want, "case {k}");
            assert_eq!(tab.read::<GrantEntryV1>(at).unwrap().gtf(), flags, "case {k}: flags untouched");
        }
    }
}
