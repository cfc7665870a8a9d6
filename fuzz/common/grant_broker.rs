//! Harness of the `grant_broker` fuzz target: arbitrary grant tables and op batches against a
//! single-threaded [`Broker`] and [`GrantTable`].
//!
//! Shared by `fuzz/fuzz_targets/grant_broker.rs` (libFuzzer) and by the stable test
//! `grant/tests/fuzz_replay.rs` (replays the corpus and regressions), which pull it in with
//! `#[path = ...] mod`. It uses nothing but `pvio_grant`, `pvio_ring` and `std`, and decodes its
//! input by hand (no `arbitrary`).
//!
//! # Setup
//!
//! One granting domain, `GUEST` (1), with `F` frames (1 to 4) in the middle of a region that
//! has a guard page on either side (filled with `0xa5`, never part of any domain), and a
//! one-page grant table (512 entries as the broker sees it) of which a [`GrantTable`] owns the
//! first 32 (references 8..32 are its free list). Raw entries are written into the rest
//! (references 0..8 and 32..64), as a hostile or careless granter would. The broker knows only
//! `GUEST`; callers are `BACK` (0), `OTHER` (5) or `GUEST` itself.
//!
//! # Input format
//!
//! ```text
//! byte 0        F - 1 (mod 4)
//! byte 1        number of raw entries (mod 24), then per entry:
//!               slot, flags u16 LE, domid selector, frame selector
//! then ops      one opcode byte (mod 9) and its arguments, until the input ends
//! ```
//!
//! A missing byte reads as 0, so every input is valid. Opcodes:
//!
//! | op | action                         | arguments                                         |
//! |----|--------------------------------|---------------------------------------------------|
//! |  0 | `Broker::copy` of a batch      | caller, count (1 + mod 8), per op: kind, src, dst, len |
//! |  1 | `Broker::map`                  | caller, granting domid, gref, write bit            |
//! |  2 | `Broker::unmap`                | live handle index                                  |
//! |  3 | write through a live map       | handle, offset, len, byte                          |
//! |  4 | read through a live map        | handle, offset, len                                |
//! |  5 | `GrantTable::grant_access`     | domid selector, frame selector, read-only bit      |
//! |  6 | `GrantTable::end_access`       | gref                                               |
//! |  7 | hostile rewrite of a raw entry | slot, flags u16, domid selector, frame selector     |
//! |  8 | the guest writes its own frame | frame, offset, len (mod 64), byte                  |
//!
//! A copy op's kind byte: bit 0 source is a grant (else a local buffer), bit 1 destination is a
//! grant, bit 2 the local buffers are one byte short. A grant side is a granting-domid selector,
//! a gref and an offset. Offsets: `a < 0x80` is `32 a`, `a < 0xc0` is `4096 - (a - 0x80)`,
//! otherwise a raw u16. Lengths: `a < 0x80` is `a`, `a < 0xc0` is `64 (a - 0x80) + (a & 1)`,
//! otherwise a raw u16. Grefs: `b < 200` is `b % 72`, otherwise `508 + b - 200` (past the table).
//!
//! Raw entries never carry `GTF_reading`/`GTF_writing` and hostile rewrites keep those two bits
//! as they are: they belong to the broker here (`grant/tests/proptest_grant.rs` has a granter
//! that flips them from another thread).
//!
//! # Invariants checked (a failed `assert!` is a finding)
//!
//! - no panic; no write through a grant whose entry said read-only when the write pin was
//!   taken (a granter setting `GTF_readonly` under a live write pin does not revoke it: the
//!   entry is not read again while pinned for writing, as in Xen);
//! - every status is the one Xen's rules give, computed from a model of the pins
//!   and the entry as it is in shared memory: unregistered domain refused, wrong type or domid
//!   refused, writes through read-only grants refused, offset + length beyond the frame or a
//!   short local buffer refused, frames outside the domain refused;
//! - the bytes: every successful copy and map access moves exactly the model's bytes, a failed
//!   one changes nothing; the guest's memory equals the model after every op that writes; the guard pages
//!   and the bytes of a local buffer past the copy are never touched;
//! - pins: the broker's counts equal the model's after every op, `GTF_reading` is set exactly
//!   while any pin is held and `GTF_writing` exactly while a write pin is; after every handle is
//!   unmapped every count is zero and every entry the broker pinned is free of in-use bits;
//! - `end_access` never succeeds while a map of the grant is live, and always succeeds for a
//!   grant of the table's that is not mapped.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use pvio_grant::{
    Access, Broker, CopyDst, CopyOp, CopySrc, DomId, FlagsWord, Frame, GrantError, GrantPtr, GrantRef,
    GrantStatus, GrantTable, GtfFlags, MapHandle, PAGE_SIZE,
};
use pvio_ring::{HeapRegion, SharedMem};

const GUEST: DomId = DomId(1);
const BACK: DomId = DomId(0);
const OTHER: DomId = DomId(5);
/// The table's own entries (references 8..TABLE are its free list).
const TABLE: usize = 32;
/// Entries in the one-page table as the broker sees them.
const ENTRIES: u32 = (PAGE_SIZE / 8) as u32;
const GUARD: u8 = 0xa5;
/// Upper bound on operations per input, to keep every run short.
const MAX_OPS: usize = 256;
/// Largest local buffer; longer copies get a buffer this long (and are refused).
const MAX_LOCAL: usize = 8192;
const BUSY: u32 = (GtfFlags::READING.bits() | GtfFlags::WRITING.bits()) as u32;

use super::bytes::Bytes as Input;

/// This harness's draws from the input.
trait Draw {
    fn offset(&mut self) -> u16;
    fn len(&mut self) -> u16;
    fn gref(&mut self) -> GrantRef;
    fn domid(&mut self) -> DomId;
    fn caller(&mut self) -> DomId;
    fn granter(&mut self) -> DomId;
    fn frame(&mut self, frames: u32) -> Frame;
    fn slot(&mut self) -> usize;
}

impl Draw for Input<'_> {
    fn offset(&mut self) -> u16 {
        match self.u8() {
            a @ 0..=0x7f => u16::from(a) * 32,
            a @ 0x80..=0xbf => 4096 - u16::from(a - 0x80),
            _ => self.u16(),
        }
    }

    fn len(&mut self) -> u16 {
        match self.u8() {
            a @ 0..=0x7f => u16::from(a),
            a @ 0x80..=0xbf => 64 * u16::from(a - 0x80) + u16::from(a & 1),
            _ => self.u16(),
        }
    }

    fn gref(&mut self) -> GrantRef {
        match self.u8() {
            b @ 0..=199 => GrantRef(u32::from(b) % 72),
            b => GrantRef(508 + u32::from(b - 200)),
        }
    }

    /// A grantee in an entry.
    fn domid(&mut self) -> DomId {
        match self.u8() % 8 {
            0..=3 => BACK,
            4 => OTHER,
            5 => GUEST,
            6 => DomId::SELF,
            _ => DomId(0x1234),
        }
    }

    /// The caller of a broker operation.
    fn caller(&mut self) -> DomId {
        match self.u8() % 4 {
            0 | 1 => BACK,
            2 => OTHER,
            _ => GUEST,
        }
    }

    /// The granting domain named in an operation: mostly the registered one.
    fn granter(&mut self) -> DomId {
        match self.u8() % 8 {
            7 => DomId(9),
            6 => BACK,
            _ => GUEST,
        }
    }

    fn frame(&mut self, frames: u32) -> Frame {
        match self.u8() {
            b @ 0..=0xef => Frame(u32::from(b) % (frames + 2)),
            b => Frame(u32::MAX - u32::from(b & 0xf) * 0x0100_0000),
        }
    }

    /// A raw-entry slot: references 0..8 and 32..64.
    fn slot(&mut self) -> usize {
        let s = usize::from(self.u8()) % 40;
        if s < 8 {
            s
        } else {
            TABLE + s - 8
        }
    }
}

/// The model's record of one entry's pins (what the broker's private active table must hold).
#[derive(Debug, Clone, Copy, Default)]
struct Act {
    readers: u32,
    writers: u32,
    grantee: DomId,
    frame: u32,
    readonly: bool,
}

impl Act {
    fn pins(&self) -> u32 {
        self.readers + self.writers
    }
}

struct Live<'a> {
    handle: MapHandle<'a>,
    frame: u32,
}

struct Harness<'a> {
    frames: u32,
    /// The whole region: guard page, the domain's frames, guard page.
    region: SharedMem<'a>,
    tab: SharedMem<'a>,
    table: GrantTable<'a, TABLE>,
    broker: Broker<'a>,
    /// Model of the domain's memory.
    model: Vec<u8>,
    act: Vec<Act>,
    /// Entries the broker has pinned at least once.
    touched: BTreeSet<u32>,
    maps: Vec<Live<'a>>,
}

fn entry_word(tab: &SharedMem<'_>, gref: u32) -> u32 {
    tab.u32_at(gref as usize * 8).expect("entry in the table").load(Ordering::Relaxed)
}

impl<'a> Harness<'a> {
    fn word(&self, gref: u32) -> FlagsWord {
        FlagsWord::from_raw(entry_word(&self.tab, gref))
    }

    fn entry_frame(&self, gref: u32) -> u32 {
        u32::from_le(self.tab.read::<u32>(gref as usize * 8 + 4).expect("entry in the table"))
    }

    /// The model's pin: the status Xen's rules give, and the pin taken on success.
    fn pin(&mut self, caller: DomId, domid: DomId, gref: GrantRef, write: bool) -> Result<u32, GrantStatus> {
        if domid != GUEST {
            return Err(GrantStatus::BadDomain);
        }
        if gref.0 >= ENTRIES {
            return Err(GrantStatus::BadGntref);
        }
        let g = gref.0;
        let mut a = self.act[g as usize];
        if a.pins() > 0 && a.grantee != caller {
            return Err(GrantStatus::BadGntref);
        }
        if a.pins() > 0 && write && a.readonly {
            return Err(GrantStatus::PermissionDenied);
        }
        if a.pins() == 0 || (write && a.writers == 0) {
            let w = self.word(g);
            if w.flags.entry_type() != GtfFlags::PERMIT_ACCESS || w.domid != caller {
                return Err(GrantStatus::BadGntref);
            }
            if write && w.flags.contains(GtfFlags::READONLY) {
                return Err(GrantStatus::PermissionDenied);
            }
            if a.pins() == 0 {
                let frame = self.entry_frame(g);
                if frame >= self.frames {
                    return Err(GrantStatus::BadPage);
                }
                a.frame = frame;
                a.grantee = caller;
                a.readonly = w.flags.contains(GtfFlags::READONLY);
            }
        }
        if write {
            a.writers += 1;
        } else {
            a.readers += 1;
        }
        self.act[g as usize] = a;
        self.touched.insert(g);
        Ok(a.frame)
    }

    fn unpin(&mut self, gref: GrantRef, write: bool) {
        let a = &mut self.act[gref.0 as usize];
        if write {
            a.writers -= 1;
        } else {
            a.readers -= 1;
        }
    }

    /// The status of one copy op by the rules, and (on success) the model's byte ranges.
    fn expect_copy(
        &mut self,
        caller: DomId,
        src: Option<GrantPtr>,
        dst: Option<GrantPtr>,
        len: usize,
        src_local: usize,
        dst_local: usize,
    ) -> Result<(Option<usize>, Option<usize>), GrantStatus> {
        let span = |p: &GrantPtr| usize::from(p.offset) + len <= PAGE_SIZE;
        match src {
            Some(p) if !span(&p) => return Err(GrantStatus::BadCopyArg),
            None if src_local < len => return Err(GrantStatus::BadCopyArg),
            _ => {}
        }
        match dst {
            Some(p) if !span(&p) => return Err(GrantStatus::BadCopyArg),
            None if dst_local < len => return Err(GrantStatus::BadCopyArg),
            _ => {}
        }
        let s = match src {
            Some(p) => Some((p, self.pin(caller, p.domid, p.gref, false)?)),
            None => None,
        };
        let d = match dst {
            Some(p) => match self.pin(caller, p.domid, p.gref, true) {
                Ok(f) => Some((p, f)),
                Err(e) => {
                    if let Some((p, _)) = s {
                        self.unpin(p.gref, false);
                    }
                    return Err(e);
                }
            },
            None => None,
        };
        if let Some((p, _)) = d {
            self.unpin(p.gref, true);
        }
        if let Some((p, _)) = s {
            self.unpin(p.gref, false);
        }
        let at = |(p, f): (GrantPtr, u32)| f as usize * PAGE_SIZE + usize::from(p.offset);
        Ok((s.map(at), d.map(at)))
    }

    fn grant_ptr(&self, input: &mut Input<'_>) -> GrantPtr {
        let domid = input.granter();
        let gref = input.gref();
        let offset = input.offset();
        GrantPtr { domid, gref, offset }
    }

    fn copy_batch(&mut self, input: &mut Input<'_>) {
        let caller = input.caller();
        let n = 1 + usize::from(input.u8() % 8);
        struct Spec {
            src: Option<GrantPtr>,
            dst: Option<GrantPtr>,
            len: u16,
            src_buf: Vec<u8>,
            dst_buf: Vec<u8>,
        }
        let mut specs = Vec::with_capacity(n);
        for k in 0..n {
            let kind = input.u8();
            let src = (kind & 1 != 0).then(|| self.grant_ptr(input));
            let dst = (kind & 2 != 0).then(|| self.grant_ptr(input));
            let len = input.len();
            let local = (usize::from(len) - usize::from(kind & 4 != 0 && len > 0)).min(MAX_LOCAL);
            let fill = input.u8();
            let src_buf = if src.is_none() {
                (0..local).map(|i| (i as u8).wrapping_mul(7) ^ fill ^ k as u8).collect()
            } else {
                Vec::new()
            };
            // Destination buffers are filled with a marker, and a tail past the copy.
            let dst_buf = if dst.is_none() { vec![0x3c; local + 16] } else { Vec::new() };
            specs.push(Spec { src, dst, len, src_buf, dst_buf });
        }

        // Expected statuses, and the expected bytes, op by op in batch order.
        let mut expected = Vec::with_capacity(n);
        let mut want_local: Vec<Option<Vec<u8>>> = Vec::with_capacity(n);
        for s in &specs {
            let len = usize::from(s.len);
            let dst_local = s.dst_buf.len().saturating_sub(16);
            let forbidden = s.dst.is_some_and(|p| self.write_forbidden(p.gref));
            let r = self.expect_copy(caller, s.src, s.dst, len, s.src_buf.len(), dst_local);
            let mut out = None;
            if let Ok((src_at, dst_at)) = r {
                let bytes: Vec<u8> = match src_at {
                    Some(at) => self.model[at..at + len].to_vec(),
                    None => s.src_buf[..len].to_vec(),
                };
                match dst_at {
                    Some(at) => {
                        assert!(!forbidden, "a copy into a read-only grant was allowed");
                        self.model[at..at + len].copy_from_slice(&bytes);
                    }
                    None => out = Some(bytes),
                }
            }
            expected.push(r.map(|_| ()));
            want_local.push(out);
        }

        let statuses: Vec<Result<(), GrantStatus>>;
        {
            let mut ops: Vec<CopyOp<'_>> = specs
                .iter_mut()
                .map(|s| {
                    let src = match s.src {
                        Some(p) => CopySrc::Grant(p),
                        None => CopySrc::Local(&s.src_buf),
                    };
                    let dst = match s.dst {
                        Some(p) => CopyDst::Grant(p),
                        None => {
                            // The tail of 16 marker bytes is not part of the op's buffer.
                            let n = s.dst_buf.len() - 16;
                            CopyDst::Local(&mut s.dst_buf[..n])
                        }
                    };
                    CopyOp::new(src, dst, s.len)
                })
                .collect();
            self.broker.copy(caller, &mut ops);
            statuses = ops.iter().map(|o| o.status).collect();
        }
        for (k, s) in specs.iter().enumerate() {
            assert_eq!(
                statuses[k], expected[k],
                "copy op {k} of {n} by {caller:?}: {:?} -> {:?} len {}",
                s.src, s.dst, s.len
            );
            if s.dst.is_none() {
                let len = usize::from(s.len);
                match &want_local[k] {
                    Some(bytes) => {
                        assert_eq!(&s.dst_buf[..len], &bytes[..], "copy op {k}: wrong bytes copied out");
                        assert!(s.dst_buf[len..].iter().all(|&b| b == 0x3c), "copy op {k}: wrote past len");
                    }
                    None => assert!(s.dst_buf.iter().all(|&b| b == 0x3c), "copy op {k} failed yet wrote"),
                }
            }
        }
    }

    /// Whether a write to `g` must be refused: no write pin is held and the entry (or, while
    /// pinned, the record of the first pin) says read-only. While a write pin is held the entry
    /// is not read again (Xen's rule too), so a granter setting `GTF_readonly` under a live
    /// write map does not revoke it.
    fn write_forbidden(&self, g: GrantRef) -> bool {
        let Some(a) = self.act.get(g.0 as usize) else { return true };
        if a.writers > 0 {
            return false;
        }
        (a.pins() > 0 && a.readonly) || self.word(g.0).flags.contains(GtfFlags::READONLY)
    }

    fn map(&mut self, input: &mut Input<'_>) {
        let caller = input.caller();
        let domid = input.granter();
        let gref = input.gref();
        let write = input.u8() & 1 == 1;
        let forbidden = write && self.write_forbidden(gref);
        let want = self.pin(caller, domid, gref, write);
        let access = if write { Access::Write } else { Access::Read };
        match (self.broker.map(caller, domid, gref, access), want) {
            (Ok(h), Ok(frame)) => {
                assert!(!forbidden, "a write map of a read-only grant");
                assert_eq!(h.frame(), Frame(frame));
                assert_eq!(h.iova(), 0x4000_0000 + u64::from(frame) * PAGE_SIZE as u64);
                assert_eq!((h.domid(), h.gref(), h.access()), (domid, gref, access));
                self.maps.push(Live { handle: h, frame });
            }
            (Err(e), Err(w)) => assert_eq!(e, w, "map {gref:?} of {domid:?} by {caller:?}, write {write}"),
            (got, want) => panic!(
                "map {gref:?} of {domid:?} by {caller:?}, write {write}: got {:?}, want {want:?}",
                got.map(|h| h.frame())
            ),
        }
    }

    fn unmap(&mut self, k: usize) {
        let live = self.maps.swap_remove(k);
        let (gref, write) = (live.handle.gref(), live.handle.access() == Access::Write);
        assert_eq!(self.broker.unmap(live.handle), Ok(()));
        self.unpin(gref, write);
    }

    fn map_write(&mut self, input: &mut Input<'_>) {
        let pick = input.u8();
        let offset = usize::from(input.offset());
        let len = usize::from(input.len()).min(MAX_LOCAL);
        let byte = input.u8();
        if self.maps.is_empty() {
            return;
        }
        let live = &self.maps[usize::from(pick) % self.maps.len()];
        let bytes = vec![byte; len];
        let got = live.handle.write_bytes(offset, &bytes);
        let want = if live.handle.access() != Access::Write {
            Err(GrantStatus::PermissionDenied)
        } else if offset + len > PAGE_SIZE {
            Err(GrantStatus::BadCopyArg)
        } else {
            Ok(())
        };
        assert_eq!(got, want, "write of {len} at {offset} through a map");
        if got.is_ok() {
            let at = live.frame as usize * PAGE_SIZE + offset;
            self.model[at..at + len].copy_from_slice(&bytes);
        }
    }

    fn map_read(&mut self, input: &mut Input<'_>) {
        let pick = input.u8();
        let offset = usize::from(input.offset());
        let len = usize::from(input.len()).min(MAX_LOCAL);
        if self.maps.is_empty() {
            return;
        }
        let live = &self.maps[usize::from(pick) % self.maps.len()];
        let mut buf = vec![0x3c; len];
        let got = live.handle.read_bytes(offset, &mut buf);
        if offset + len > PAGE_SIZE {
            assert_eq!(got, Err(GrantStatus::BadCopyArg));
            assert!(buf.iter().all(|&b| b == 0x3c), "a refused read wrote the buffer");
        } else {
            assert_eq!(got, Ok(()));
            let at = live.frame as usize * PAGE_SIZE + offset;
            assert_eq!(&buf[..], &self.model[at..at + len], "read through a map");
        }
    }

    fn grant_access(&mut self, input: &mut Input<'_>) {
        let domid = input.domid();
        let frame = input.frame(self.frames);
        let readonly = input.u8() & 1 == 1;
        let free = self.table.free_count();
        match self.table.grant_access(domid, frame, readonly) {
            Ok(g) => {
                assert!(free > 0);
                assert!((8..TABLE as u32).contains(&g.0), "{g:?} outside the table's free list");
                assert_eq!(self.act[g.0 as usize].pins(), 0, "handed out {g:?} while the broker holds it");
                let w = self.word(g.0);
                let mut flags = GtfFlags::PERMIT_ACCESS;
                flags.set(GtfFlags::READONLY, readonly);
                assert_eq!(w, FlagsWord { flags, domid });
                assert_eq!(self.entry_frame(g.0), frame.0);
            }
            Err(e) => assert_eq!((e, free), (GrantError::NoFreeRefs, 0)),
        }
    }

    fn end_access(&mut self, input: &mut Input<'_>) {
        let g = input.gref();
        let granted = self.table.grant(g);
        let pinned = g.0 < ENTRIES && self.act[g.0 as usize].pins() > 0;
        let live_map = self.maps.iter().any(|m| m.handle.gref() == g);
        let got = self.table.end_access(g);
        match (granted, got) {
            (None, r) => assert_eq!(r, Err(GrantError::NotGranted(g))),
            (Some(grant), Ok(ended)) => {
                assert!(!pinned && !live_map, "end_access of {g:?} succeeded while it is mapped");
                assert_eq!(ended, grant);
                assert_eq!(entry_word(&self.tab, g.0), 0, "an ended entry is cleared");
            }
            (Some(grant), Err(e)) => {
                assert!(pinned, "end_access of unmapped {g:?} failed: {e:?}");
                assert_eq!(e, GrantError::InUse { gref: g, grant });
            }
        }
    }

    fn hostile_write(&mut self, input: &mut Input<'_>) {
        let slot = input.slot();
        let flags = u32::from(input.u16());
        let domid = input.domid();
        let frame = input.frame(self.frames);
        self.raw_entry(slot, flags, domid, frame);
    }

    /// Writes entry `slot` as a granter would, keeping the broker's in-use bits as they are.
    fn raw_entry(&mut self, slot: usize, flags: u32, domid: DomId, frame: Frame) {
        let word = self.tab.u32_at(slot * 8).expect("slot in the table");
        self.tab.write(slot * 8 + 4, &frame.0.to_le()).expect("slot in the table");
        let value = (flags & 0xffff & !BUSY) | (u32::from(domid.0) << 16);
        let keep = word.load(Ordering::Relaxed) & BUSY.to_le();
        word.store(value.to_le() | keep, Ordering::Release);
    }

    fn guest_write(&mut self, input: &mut Input<'_>) {
        let frame = usize::from(input.u8()) % self.frames as usize;
        let offset = usize::from(input.offset()) % PAGE_SIZE;
        let len = usize::from(input.u8() % 64).min(PAGE_SIZE - offset);
        let byte = input.u8();
        let at = frame * PAGE_SIZE + offset;
        self.region.fill(PAGE_SIZE + at, len, byte).expect("inside the domain");
        self.model[at..at + len].fill(byte);
    }

    /// One op; returns whether it may have written memory (then the memory is compared).
    fn step(&mut self, input: &mut Input<'_>) -> bool {
        let op = input.u8() % 9;
        match op {
            0 => self.copy_batch(input),
            1 => self.map(input),
            2 => {
                let k = input.u8();
                if !self.maps.is_empty() {
                    self.unmap(usize::from(k) % self.maps.len());
                }
            }
            3 => self.map_write(input),
            4 => self.map_read(input),
            5 => self.grant_access(input),
            6 => self.end_access(input),
            7 => self.hostile_write(input),
            _ => self.guest_write(input),
        }
        self.check_pins();
        matches!(op, 0 | 3 | 8)
    }

    /// Pin counts and in-use bits of every entry the broker has pinned.
    fn check_pins(&self) {
        for &g in &self.touched {
            let a = self.act[g as usize];
            assert_eq!(self.broker.pins(GUEST, GrantRef(g)), Some((a.readers, a.writers)), "pins of {g}");
            let f = self.word(g).flags;
            assert_eq!(f.contains(GtfFlags::READING), a.pins() > 0, "GTF_reading of {g} with {a:?}");
            assert_eq!(f.contains(GtfFlags::WRITING), a.writers > 0, "GTF_writing of {g} with {a:?}");
        }
    }

    fn check_memory(&self) {
        let mut all = vec![0u8; self.region.len()];
        self.region.read_bytes(0, &mut all).expect("whole region");
        let (lo, rest) = all.split_at(PAGE_SIZE);
        let (mid, hi) = rest.split_at(self.frames as usize * PAGE_SIZE);
        assert!(lo.iter().chain(hi).all(|&b| b == GUARD), "guard memory outside the domain was written");
        assert!(mid == &self.model[..], "the domain's memory differs from the model");
    }
}

/// Runs one input. Panics (through `assert!`) on any broken invariant.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let frames = 1 + u32::from(input.u8() % 4);
    let region_mem = HeapRegion::new((frames as usize + 2) * PAGE_SIZE);
    let tab_mem = HeapRegion::new(PAGE_SIZE);
    let region = region_mem.mem();
    let tab = tab_mem.mem();
    region.fill(0, region.len(), GUARD).expect("whole region");
    let memory = region.slice(PAGE_SIZE, frames as usize * PAGE_SIZE).expect("domain inside the region");
    // The domain's memory starts with a pattern, not with the guard byte.
    let model: Vec<u8> = (0..frames as usize * PAGE_SIZE).map(|i| (i / 7) as u8 ^ (i >> 12) as u8).collect();
    memory.write_bytes(0, &model).expect("domain memory");
    let table = GrantTable::<TABLE>::new(tab.clone()).expect("a page holds 32 entries");
    let mut broker = Broker::new();
    broker.register(GUEST, memory, tab.clone(), 0x4000_0000).expect("register the guest");
    assert_eq!(
        broker.register(GUEST, region.slice(0, PAGE_SIZE).unwrap(), tab.clone(), 0),
        Err(GrantStatus::BadDomain)
    );

    let mut h = Harness {
        frames,
        region,
        tab,
        table,
        broker,
        model,
        act: vec![Act::default(); ENTRIES as usize],
        touched: BTreeSet::new(),
        maps: Vec::new(),
    };
    for _ in 0..input.u8() % 24 {
        let slot = input.slot();
        let flags = u32::from(input.u16());
        let domid = input.domid();
        let frame = input.frame(frames);
        h.raw_entry(slot, flags, domid, frame);
    }
    let mut ops = 0;
    while !input.done() && ops < MAX_OPS {
        if h.step(&mut input) {
            h.check_memory();
        }
        ops += 1;
    }
    // Unmap everything: every pin goes, every in-use bit the broker set is cleared.
    while !h.maps.is_empty() {
        h.unmap(h.maps.len() - 1);
    }
    h.check_pins();
    for g in 0..ENTRIES {
        assert_eq!(h.broker.pins(GUEST, GrantRef(g)), Some((0, 0)), "pins left on {g}");
    }
    // Every grant of the table's can now be ended.
    for g in 8..TABLE as u32 {
        if let Some(grant) = h.table.grant(GrantRef(g)) {
            assert_eq!(h.table.end_access(GrantRef(g)), Ok(grant), "end_access of {g} after unmapping all");
        }
    }
    h.check_memory();
}
