//! Property tests of the granting side and the broker.
//!
//! - `sequences_match_a_model`: random sequences of grant / end / copy in / copy out / map /
//!   unmap / guest writes, checked op by op against a `HashMap` model of the grants, a count
//!   of live maps per grant, and a byte-array model of the guest's memory: every status, every
//!   byte copied or read through a map, the in-use flags in the shared entry, the broker's pin
//!   counts, and finally the whole memory.
//! - `hostile_granter_cannot_break_the_broker`: a granter thread rewrites random table words
//!   (flags, domid, frame) while the broker runs random copies and maps; the broker must not
//!   panic, must leave the guard pages around the domain's memory untouched, and must drop
//!   every pin it took.
//! - `read_only_grants_are_never_written`: as above, but every entry the hostile granter
//!   writes keeps `GTF_readonly`; every write copy and write map must fail and the memory must
//!   be unchanged.
#![cfg(all(feature = "std", not(loom)))]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use proptest::prelude::*;
use pvio_grant::{
    Access, Broker, CopyDst, CopyOp, CopySrc, DomId, FlagsWord, Frame, GrantError, GrantPtr, GrantRef,
    GrantStatus, GrantTable, GtfFlags, MapHandle, PAGE_SIZE,
};
use pvio_ring::{HeapRegion, SharedMem};

const GUEST: DomId = DomId(1);
const BACK: DomId = DomId(0);
const FRAMES: u32 = 4;
const ENTRIES: usize = 16;
const FIRST: u32 = 8;

#[derive(Debug, Clone)]
enum Op {
    Grant { frame: u32, readonly: bool },
    End { pick: u32 },
    CopyIn { pick: u32, offset: u16, len: u16, byte: u8 },
    CopyOut { pick: u32, offset: u16, len: u16 },
    Map { pick: u32, write: bool },
    Unmap { pick: usize },
    GuestWrite { frame: u32, offset: u16, byte: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    let offset = prop_oneof![0..64u16, 4000..4200u16, any::<u16>()];
    let len = prop_oneof![0..64u16, 0..4097u16];
    prop_oneof![
        (0..FRAMES + 2, any::<bool>()).prop_map(|(frame, readonly)| Op::Grant { frame, readonly }),
        (0..20u32).prop_map(|pick| Op::End { pick }),
        (0..20u32, offset.clone(), len.clone(), any::<u8>())
            .prop_map(|(pick, offset, len, byte)| Op::CopyIn { pick, offset, len, byte }),
        (0..20u32, offset, len).prop_map(|(pick, offset, len)| Op::CopyOut { pick, offset, len }),
        (0..20u32, any::<bool>()).prop_map(|(pick, write)| Op::Map { pick, write }),
        (0..8usize).prop_map(|pick| Op::Unmap { pick }),
        (0..FRAMES, 0..4096u16, any::<u8>()).prop_map(|(frame, offset, byte)| Op::GuestWrite {
            frame,
            offset,
            byte
        }),
    ]
}

/// What a grant should look like to the broker: the status it must give for `write`.
fn expected_pin(
    grants: &HashMap<GrantRef, (u32, bool)>,
    gref: GrantRef,
    write: bool,
) -> Result<(u32, bool), GrantStatus> {
    let &(frame, readonly) = grants.get(&gref).ok_or(GrantStatus::BadGntref)?;
    if write && readonly {
        return Err(GrantStatus::PermissionDenied);
    }
    if frame >= FRAMES {
        return Err(GrantStatus::BadPage);
    }
    Ok((frame, readonly))
}

fn flags_of(tab: &SharedMem<'_>, gref: GrantRef) -> GtfFlags {
    FlagsWord::from_raw(tab.u32_at(gref.0 as usize * 8).unwrap().load(Ordering::Relaxed)).flags
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn sequences_match_a_model(ops in prop::collection::vec(op(), 1..80)) {
        let mem_r = HeapRegion::new(FRAMES as usize * PAGE_SIZE);
        let tab_r = HeapRegion::new(ENTRIES * 8);
        let (mem, tab) = (mem_r.mem(), tab_r.mem());
        let mut table = GrantTable::<ENTRIES>::new(tab.clone()).unwrap();
        let mut broker = Broker::new();
        broker.register(GUEST, mem.clone(), tab.clone(), 0x4000_0000).unwrap();

        let mut model_mem = vec![0u8; FRAMES as usize * PAGE_SIZE];
        let mut grants: HashMap<GrantRef, (u32, bool)> = HashMap::new();
        let mut maps: Vec<(MapHandle<'_>, GrantRef, bool)> = Vec::new();

        for op in ops {
            match op {
                Op::Grant { frame, readonly } => {
                    let r = table.grant_access(BACK, Frame(frame), readonly);
                    if grants.len() == ENTRIES - FIRST as usize {
                        prop_assert_eq!(r, Err(GrantError::NoFreeRefs));
                    } else {
                        let g = r.unwrap();
                        prop_assert!(g.0 >= FIRST && (g.0 as usize) < ENTRIES);
                        prop_assert!(grants.insert(g, (frame, readonly)).is_none(), "ref handed out twice");
                    }
                }
                Op::End { pick } => {
                    let g = GrantRef(pick);
                    let r = table.end_access(g);
                    let live = maps.iter().filter(|m| m.1 == g).count();
                    match grants.get(&g) {
                        None => prop_assert_eq!(r, Err(GrantError::NotGranted(g))),
                        Some(_) if live > 0 => {
                            let in_use = matches!(r, Err(GrantError::InUse { gref, .. }) if gref == g);
                            prop_assert!(in_use, "end_access of a mapped grant: {:?}", r);
                        }
                        Some(&(frame, readonly)) => {
                            let got = r.unwrap();
                            prop_assert_eq!((got.frame, got.readonly), (Frame(frame), readonly));
                            grants.remove(&g);
                            prop_assert_eq!(flags_of(&tab, g), GtfFlags::INVALID);
                        }
                    }
                }
                Op::CopyIn { pick, offset, len, byte } => {
                    let g = GrantRef(pick);
                    let src = vec![byte; len as usize];
                    let mut ops = [CopyOp::new(CopySrc::Local(&src), CopyDst::Grant(GrantPtr { domid: GUEST, gref: g, offset }), len)];
                    broker.copy(BACK, &mut ops);
                    let want = if offset as usize + len as usize > PAGE_SIZE {
                        Err(GrantStatus::BadCopyArg)
                    } else {
                        expected_pin(&grants, g, true).map(|_| ())
                    };
                    prop_assert_eq!(ops[0].status, want);
                    if want.is_ok() {
                        let at = grants[&g].0 as usize * PAGE_SIZE + offset as usize;
                        model_mem[at..at + len as usize].fill(byte);
                    }
                }
                Op::CopyOut { pick, offset, len } => {
                    let g = GrantRef(pick);
                    let mut dst = vec![0xeeu8; len as usize];
                    let mut ops = [CopyOp::new(CopySrc::Grant(GrantPtr { domid: GUEST, gref: g, offset }), CopyDst::Local(&mut dst), len)];
                    broker.copy(BACK, &mut ops);
                    let status = ops[0].status;
                    let want = if offset as usize + len as usize > PAGE_SIZE {
                        Err(GrantStatus::BadCopyArg)
                    } else {
                        expected_pin(&grants, g, false).map(|_| ())
                    };
                    prop_assert_eq!(status, want);
                    if want.is_ok() {
                        let at = grants[&g].0 as usize * PAGE_SIZE + offset as usize;
                        prop_assert_eq!(&dst[..], &model_mem[at..at + len as usize]);
                    } else {
                        prop_assert!(dst.iter().all(|&b| b == 0xee), "a refused copy wrote the buffer");
                    }
                }
                Op::Map { pick, write } => {
                    let g = GrantRef(pick);
                    let access = if write { Access::Write } else { Access::Read };
                    let r = broker.map(BACK, GUEST, g, access);
                    // A grant already mapped for writing was checked writable then.
                    match expected_pin(&grants, g, write) {
                        Err(e) => prop_assert_eq!(r.err(), Some(e)),
                        Ok((frame, _)) => {
                            let h = r.unwrap();
                            prop_assert_eq!(h.iova(), 0x4000_0000 + u64::from(frame) * 4096);
                            prop_assert_eq!(h.frame(), Frame(frame));
                            let mut b = [0u8; 16];
                            h.read_bytes(4080, &mut b).unwrap();
                            let at = frame as usize * PAGE_SIZE + 4080;
                            prop_assert_eq!(&b[..], &model_mem[at..at + 16]);
                            if write {
                                h.write_bytes(4090, &[pick as u8; 6]).unwrap();
                                model_mem[at + 10..at + 16].fill(pick as u8);
                            } else {
                                prop_assert_eq!(h.write_bytes(0, &[1]), Err(GrantStatus::PermissionDenied));
                            }
                            maps.push((h, g, write));
                        }
                    }
                }
                Op::Unmap { pick } => {
                    if !maps.is_empty() {
                        let (h, _, _) = maps.swap_remove(pick % maps.len());
                        prop_assert_eq!(broker.unmap(h), Ok(()));
                    }
                }
                Op::GuestWrite { frame, offset, byte } => {
                    let at = frame as usize * PAGE_SIZE + offset as usize;
                    mem.write_bytes(at, &[byte]).unwrap();
                    model_mem[at] = byte;
                }
            }
            // Flags and pins follow the live maps exactly (copies hold nothing afterwards).
            for &g in grants.keys() {
                let readers = maps.iter().filter(|m| m.1 == g && !m.2).count() as u32;
                let writers = maps.iter().filter(|m| m.1 == g && m.2).count() as u32;
                prop_assert_eq!(broker.pins(GUEST, g), Some((readers, writers)));
                let f = flags_of(&tab, g);
                prop_assert_eq!(f.contains(GtfFlags::READING), readers + writers > 0, "{:?}", f);
                prop_assert_eq!(f.contains(GtfFlags::WRITING), writers > 0, "{:?}", f);
                prop_assert_eq!(table.is_in_use(g), Ok(readers + writers > 0));
            }
        }
        for (h, _, _) in maps.drain(..) {
            prop_assert_eq!(broker.unmap(h), Ok(()));
        }
        for g in grants.keys() {
            prop_assert!(table.end_access(*g).is_ok());
        }
        prop_assert_eq!(table.free_count(), ENTRIES - FIRST as usize);
        let mut all = vec![0u8; model_mem.len()];
        mem.read_bytes(0, &mut all).unwrap();
        prop_assert!(all == model_mem, "memory differs from the model");
    }
}

/// A tiny deterministic generator for the hostile thread.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[derive(Debug, Clone)]
enum BrokerOp {
    Copy { gref: u32, offset: u16, len: u16, write: bool },
    Map { gref: u32, write: bool },
    Unmap { pick: usize },
}

fn broker_op() -> impl Strategy<Value = BrokerOp> {
    prop_oneof![
        (0..20u32, any::<u16>(), 0..4097u16, any::<bool>()).prop_map(|(gref, offset, len, write)| {
            BrokerOp::Copy { gref, offset: offset % 4200, len, write }
        }),
        (0..20u32, any::<bool>()).prop_map(|(gref, write)| BrokerOp::Map { gref, write }),
        (0..8usize).prop_map(|pick| BrokerOp::Unmap { pick }),
    ]
}

/// Runs `ops` on a broker whose guest's table is rewritten concurrently by a hostile thread
/// (`keep_readonly`: every word it writes has `GTF_readonly`). Returns the broker's write
/// statuses that succeeded, and checks guard pages and pins.
fn run_hostile(seed: u64, ops: &[BrokerOp], keep_readonly: bool) -> Result<usize, TestCaseError> {
    const GUARD: u8 = 0xab;
    const FILL: u8 = 0x5a;
    // One guard frame on each side of the domain's frames.
    let all = HeapRegion::new((FRAMES as usize + 2) * PAGE_SIZE);
    all.mem().fill(0, all.mem().len(), GUARD).unwrap();
    let mem = all.mem().slice(PAGE_SIZE, FRAMES as usize * PAGE_SIZE).unwrap();
    mem.fill(0, mem.len(), FILL).unwrap();
    let tab_r = HeapRegion::new(ENTRIES * 8);
    let tab = tab_r.mem();
    if keep_readonly {
        // Every entry is read-only from the start (an all-zero entry plus a flipped type bit
        // would be a writable grant to domain 0).
        for e in 0..ENTRIES {
            let ro = FlagsWord { flags: GtfFlags::READONLY, domid: BACK };
            tab.u32_at(e * 8).unwrap().store(ro.to_raw(), Ordering::Relaxed);
        }
    }
    let mut broker = Broker::new();
    broker.register(GUEST, mem.clone(), tab.clone(), 0).unwrap();
    let stop = AtomicBool::new(false);
    // Hostile writes so far; the broker waits for progress between ops so the two really
    // interleave (a thread start takes longer than a whole batch of ops).
    let progress = AtomicU64::new(0);
    let mut writes_done = 0;

    std::thread::scope(|s| -> Result<(), TestCaseError> {
        let hostile_tab = tab.clone();
        let (stop, progress) = (&stop, &progress);
        s.spawn(move || {
            let mut rng = XorShift(seed | 1);
            while !stop.load(Ordering::Relaxed) {
                progress.fetch_add(1, Ordering::Relaxed);
                let r = rng.next();
                let e = (r % ENTRIES as u64) as usize;
                // Mostly plausible entries (our domid, small frames), sometimes anything.
                let mut flags = (r >> 8) as u16 & 0x1ff;
                if r & 0x3 != 0 {
                    flags = (flags & !3) | 1;
                }
                if keep_readonly {
                    flags |= GtfFlags::READONLY.bits();
                }
                let domid = if r & 0x30 != 0 { BACK.0 } else { (r >> 24) as u16 };
                let frame = if r & 0xc0 != 0 { ((r >> 40) % 8) as u32 } else { (r >> 32) as u32 };
                let w = hostile_tab.u32_at(e * 8).unwrap();
                match (r >> 60) & 3 {
                    0 => w.store(
                        FlagsWord { flags: GtfFlags::from_bits_retain(flags), domid: DomId(domid) }.to_raw(),
                        Ordering::Release,
                    ),
                    1 => hostile_tab.u32_at(e * 8 + 4).unwrap().store(frame.to_le(), Ordering::Relaxed),
                    2 => {
                        // Flip flags bits in place (keeping GTF_readonly if asked).
                        let mut mask = u32::from((r >> 16) as u16 & 0x1ff);
                        if keep_readonly {
                            mask &= !u32::from(GtfFlags::READONLY.bits());
                        }
                        w.fetch_xor_compat(mask.to_le());
                    }
                    _ => std::thread::yield_now(),
                }
            }
        });

        let mut maps: Vec<MapHandle<'_>> = Vec::new();
        let result = (|| -> Result<(), TestCaseError> {
            for op in ops {
                let seen = progress.load(Ordering::Relaxed);
                while progress.load(Ordering::Relaxed) < seen + 4 {
                    std::hint::spin_loop();
                }
                match *op {
                    BrokerOp::Copy { gref, offset, len, write } => {
                        let ptr = GrantPtr { domid: GUEST, gref: GrantRef(gref), offset };
                        let mut buf = vec![0x77u8; len as usize];
                        let status = if write {
                            let mut o = [CopyOp::new(CopySrc::Local(&buf), CopyDst::Grant(ptr), len)];
                            broker.copy(BACK, &mut o);
                            o[0].status
                        } else {
                            let mut o = [CopyOp::new(CopySrc::Grant(ptr), CopyDst::Local(&mut buf), len)];
                            broker.copy(BACK, &mut o);
                            o[0].status
                        };
                        if write && status.is_ok() {
                            writes_done += 1;
                        }
                        if offset as usize + len as usize > PAGE_SIZE {
                            prop_assert_eq!(status, Err(GrantStatus::BadCopyArg));
                        }
                    }
                    BrokerOp::Map { gref, write } => {
                        let access = if write { Access::Write } else { Access::Read };
                        if let Ok(h) = broker.map(BACK, GUEST, GrantRef(gref), access) {
                            let mut b = [0u8; 8];
                            h.read_bytes(4088, &mut b).unwrap();
                            if write {
                                h.write_bytes(4088, &[0x77; 8]).unwrap();
                                writes_done += 1;
                            }
                            prop_assert!(h.write_bytes(4089, &[0; 8]).is_err(), "bounded view");
                            maps.push(h);
                        }
                    }
                    BrokerOp::Unmap { pick } => {
                        if !maps.is_empty() {
                            let h = maps.swap_remove(pick % maps.len());
                            prop_assert_eq!(broker.unmap(h), Ok(()));
                        }
                    }
                }
            }
            for h in maps.drain(..) {
                prop_assert_eq!(broker.unmap(h), Ok(()));
            }
            Ok(())
        })();
        stop.store(true, Ordering::Relaxed);
        result
    })?;

    for g in 0..ENTRIES as u32 {
        prop_assert_eq!(broker.pins(GUEST, GrantRef(g)), Some((0, 0)), "pins left on {}", g);
    }
    let bytes = {
        let mut v = vec![0u8; all.mem().len()];
        all.mem().read_bytes(0, &mut v).unwrap();
        v
    };
    let end = PAGE_SIZE * (FRAMES as usize + 1);
    prop_assert!(bytes[..PAGE_SIZE].iter().all(|&b| b == GUARD), "guard below the domain touched");
    prop_assert!(bytes[end..].iter().all(|&b| b == GUARD), "guard above the domain touched");
    if keep_readonly {
        prop_assert!(bytes[PAGE_SIZE..end].iter().all(|&b| b == FILL), "written through a read-only grant");
    }
    Ok(writes_done)
}

/// `fetch_xor` for the hostile thread, through the public compare-and-swap.
trait FetchXor {
    fn fetch_xor_compat(&self, mask: u32);
}

impl FetchXor for pvio_ring::SharedU32<'_> {
    fn fetch_xor_compat(&self, mask: u32) {
        let cur = self.load(Ordering::Relaxed);
        let _ = self.compare_exchange(cur, cur ^ mask, Ordering::AcqRel, Ordering::Relaxed);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn hostile_granter_cannot_break_the_broker(seed in any::<u64>(), ops in prop::collection::vec(broker_op(), 1..200)) {
        run_hostile(seed, &ops, false)?;
    }

    #[test]
    fn read_only_grants_are_never_written(seed in any::<u64>(), ops in prop::collection::vec(broker_op(), 1..200)) {
        let writes = run_hostile(seed, &ops, true)?;
        prop_assert_eq!(writes, 0);
    }
}
