//! Loom models of the grant protocol (`--cfg loom` only).
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p pvio-grant --test loom --release --target-dir target/loom
//! ```
//!
//! Under `cfg(loom)` `pvio-ring`'s shared memory is an array of loom atomics, so the granter's
//! [`GrantTable`] and the [`Broker`] run their shipping code paths here. Each model runs the
//! granter and the broker in their own loom threads and checks, in every explored execution:
//!
//! - **After `end_access` succeeds, no copy or map touches the frame.** The granter, once its
//!   `end_access` returns `Ok`, reads the frame and then scribbles over it. What it read must
//!   be a complete state (the original bytes, or the broker's complete write — never a torn
//!   mix), the broker's copy or map must have seen the original bytes entirely or been
//!   refused, and after both threads finish the frame must hold the scribble (a broker write
//!   landing after `end_access` would show).
//! - **A failed `end_access` leaves the grant intact**: the entry still grants the same frame
//!   to the same domain, and the granter's record still has it.
//! - **Pins are counted** (XSA-224): with one grant mapped twice, the first unmap leaves it
//!   in use, so `end_access` cannot succeed while the second mapping still writes.
//! - **A broker that sees a grant sees its frame**: a grant published concurrently with a copy
//!   is either refused or read from the granted frame, never from a stale frame number.
//!
//! Each model asserts that loom explored more than one execution.
#![cfg(loom)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use loom::thread;
use pvio_grant::entry::NR_RESERVED_ENTRIES;
use pvio_grant::{
    Access, Broker, CopyDst, CopyOp, CopySrc, DomId, Frame, GrantEntryV1, GrantError, GrantPtr, GrantRef,
    GrantStatus, GrantTable, GtfFlags, PAGE_SIZE,
};
use pvio_ring::SharedMem;

const GUEST: DomId = DomId(1);
const BACK: DomId = DomId(0);
/// Entries: the reserved ones plus one to grant.
const N: usize = NR_RESERVED_ENTRIES as usize + 1;
/// Bytes each model copies (two loom words, so a torn copy is observable).
const LEN: usize = 8;
const ORIGINAL: u8 = 0x11;
const SCRIBBLE: u8 = 0x22;
const BROKER_WRITE: u8 = 0x33;

fn run(name: &str, f: impl Fn() + Sync + Send + 'static) {
    let executions = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = executions.clone();
    let start = Instant::now();
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        f();
    });
    let n = executions.load(Ordering::Relaxed);
    println!("{name}: {n} executions in {:.2?}", start.elapsed());
    assert!(n > 1, "{name}: loom explored only {n} execution(s)");
}

/// A guest with `frames` frames whose frame `k` holds `fill(k)` in its first [`LEN`] bytes,
/// and a table with the guest's one free reference.
fn guest(frames: usize, fill: impl Fn(usize) -> u8) -> (SharedMem<'static>, SharedMem<'static>) {
    let mem = SharedMem::loom_new(frames * PAGE_SIZE);
    for k in 0..frames {
        mem.fill(k * PAGE_SIZE, LEN, fill(k)).unwrap();
    }
    (mem, SharedMem::loom_new(N * 8))
}

fn first_bytes(mem: &SharedMem<'_>) -> [u8; LEN] {
    let mut b = [0u8; LEN];
    mem.read_bytes(0, &mut b).unwrap();
    b
}

/// What the broker does while the granter ends the grant.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Use {
    CopyOut,
    CopyIn,
    MapRead,
    MapWrite,
}

/// Performs `u` on the grant; returns the status and, for reads, the bytes read.
fn broker_use(
    b: &mut Broker<'static>,
    gref: GrantRef,
    u: Use,
) -> (Result<(), GrantStatus>, Option<[u8; LEN]>) {
    let ptr = GrantPtr { domid: GUEST, gref, offset: 0 };
    match u {
        Use::CopyOut => {
            let mut buf = [0u8; LEN];
            let mut ops = [CopyOp::new(CopySrc::Grant(ptr), CopyDst::Local(&mut buf), LEN as u16)];
            b.copy(BACK, &mut ops);
            let st = ops[0].status;
            (st, st.ok().map(|()| buf))
        }
        Use::CopyIn => {
            let src = [BROKER_WRITE; LEN];
            let mut ops = [CopyOp::new(CopySrc::Local(&src), CopyDst::Grant(ptr), LEN as u16)];
            b.copy(BACK, &mut ops);
            (ops[0].status, None)
        }
        Use::MapRead | Use::MapWrite => {
            let access = if u == Use::MapRead { Access::Read } else { Access::Write };
            match b.map(BACK, GUEST, gref, access) {
                Err(e) => (Err(e), None),
                Ok(h) => {
                    let mut buf = [0u8; LEN];
                    if u == Use::MapRead {
                        h.read_bytes(0, &mut buf).unwrap();
                    } else {
                        h.write_bytes(0, &[BROKER_WRITE; LEN]).unwrap();
                    }
                    b.unmap(h).unwrap();
                    (Ok(()), (u == Use::MapRead).then_some(buf))
                }
            }
        }
    }
}

/// The granter ends the grant (once, or retrying until it succeeds) while the broker uses it.
fn end_access_races(u: Use, retry: bool) {
    let (mem, tab) = guest(1, |_| ORIGINAL);
    let mut table = GrantTable::<N>::new(tab.clone()).unwrap();
    let gref = table.grant_access(BACK, Frame(0), false).unwrap();
    let mut broker = Broker::new();
    broker.register(GUEST, mem.clone(), tab.clone(), 0).unwrap();

    let granter_mem = mem.clone();
    let granter = thread::spawn(move || loop {
        match table.end_access(gref) {
            Ok(g) => {
                assert_eq!((g.domid, g.frame, g.readonly), (BACK, Frame(0), false));
                // The frame is ours again. After a broker write, check that the write is
                // complete; after a broker read, scribble at once (an extra read here would
                // only hide the read-after-end race from loom's partial-order reduction).
                if matches!(u, Use::CopyIn | Use::MapWrite) {
                    let seen = first_bytes(&granter_mem);
                    assert!(
                        seen == [ORIGINAL; LEN] || seen == [BROKER_WRITE; LEN],
                        "granter saw a broker write in progress after end_access: {seen:x?}"
                    );
                }
                granter_mem.fill(0, LEN, SCRIBBLE).unwrap();
                return true;
            }
            Err(GrantError::InUse { gref: back, grant }) => {
                // Handed back intact, in the record and in shared memory.
                assert_eq!(back, gref);
                assert_eq!(table.grant(gref), Some(grant));
                let e = table.entry(gref).unwrap();
                assert_eq!(e.gtf().entry_type(), GtfFlags::PERMIT_ACCESS);
                assert!(!e.gtf().contains(GtfFlags::READONLY));
                assert_eq!((e.domid.get(), e.frame.get()), (BACK.0, 0));
                if !retry {
                    return false;
                }
                thread::yield_now();
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    });
    let user = thread::spawn(move || {
        let r = broker_use(&mut broker, gref, u);
        (r, broker)
    });
    let ended = granter.join().unwrap();
    let ((status, read), broker) = user.join().unwrap();

    match status {
        Ok(()) => {
            if let Some(bytes) = read {
                assert_eq!(bytes, [ORIGINAL; LEN], "{u:?} read the frame after end_access (or torn)");
            }
        }
        Err(e) => {
            assert_eq!(e, GrantStatus::BadGntref, "{u:?}: only refused because the grant ended");
            assert!(ended, "{u:?} refused while the grant was live");
        }
    }
    assert_eq!(broker.pins(GUEST, gref), Some((0, 0)));
    let last = first_bytes(&mem);
    if ended {
        assert_eq!(last, [SCRIBBLE; LEN], "{u:?} wrote the frame after end_access succeeded");
    } else {
        assert!(status.is_ok(), "end_access failed without a use in progress");
        let e: GrantEntryV1 = tab.read(gref.0 as usize * 8).unwrap();
        assert_eq!(e.gtf(), GtfFlags::PERMIT_ACCESS, "grant intact, in-use bits released");
    }
}

#[test]
fn end_access_vs_copy_out() {
    run("end_access_vs_copy_out", || end_access_races(Use::CopyOut, false));
}

#[test]
fn end_access_vs_copy_in() {
    run("end_access_vs_copy_in", || end_access_races(Use::CopyIn, false));
}

#[test]
fn end_access_vs_map_read() {
    run("end_access_vs_map_read", || end_access_races(Use::MapRead, false));
}

#[test]
fn end_access_vs_map_write() {
    run("end_access_vs_map_write", || end_access_races(Use::MapWrite, false));
}

#[test]
fn end_access_retried_until_it_succeeds_vs_map_write() {
    run("end_access_retried_vs_map_write", || end_access_races(Use::MapWrite, true));
}

/// The granter publishes a grant of frame 1 while the broker copies from it: the broker is
/// refused or reads frame 1 — never frame 0, which the entry's stale `frame` (0) names.
#[test]
fn grant_publish_vs_copy() {
    run("grant_publish_vs_copy", || {
        let (mem, tab) = guest(2, |k| if k == 0 { 0xa0 } else { 0xb1 });
        let mut table = GrantTable::<N>::new(tab.clone()).unwrap();
        let mut broker = Broker::new();
        broker.register(GUEST, mem, tab, 0).unwrap();
        let granter = thread::spawn(move || {
            let g = table.grant_access(BACK, Frame(1), true).unwrap();
            assert_eq!(g, GrantRef(NR_RESERVED_ENTRIES));
            table
        });
        let (status, read) = broker_use(&mut broker, GrantRef(NR_RESERVED_ENTRIES), Use::CopyOut);
        let _table = granter.join().unwrap();
        match status {
            Ok(()) => assert_eq!(read, Some([0xb1; LEN]), "copied from a stale frame"),
            Err(e) => assert_eq!(e, GrantStatus::BadGntref),
        }
    });
}

/// One grant mapped twice for writing (XSA-224's shape): after the first unmap the grant must
/// stay in use, so the granter cannot end it while the second mapping writes.
#[test]
fn end_access_vs_two_maps() {
    run("end_access_vs_two_maps", || {
        let (mem, tab) = guest(1, |_| ORIGINAL);
        let mut table = GrantTable::<N>::new(tab.clone()).unwrap();
        let gref = table.grant_access(BACK, Frame(0), false).unwrap();
        let mut broker = Broker::new();
        broker.register(GUEST, mem.clone(), tab, 0).unwrap();
        // Both maps exist before the race starts.
        let first = broker.map(BACK, GUEST, gref, Access::Write).unwrap();
        let second = broker.map(BACK, GUEST, gref, Access::Write).unwrap();

        let granter_mem = mem.clone();
        let granter = thread::spawn(move || loop {
            match table.end_access(gref) {
                Ok(_) => {
                    let seen = first_bytes(&granter_mem);
                    assert_eq!(seen, [BROKER_WRITE; LEN], "ended while the second map was live");
                    granter_mem.fill(0, LEN, SCRIBBLE).unwrap();
                    return;
                }
                Err(GrantError::InUse { .. }) => thread::yield_now(),
                Err(e) => panic!("unexpected {e:?}"),
            }
        });
        broker.unmap(first).unwrap();
        second.write_bytes(0, &[BROKER_WRITE; LEN]).unwrap();
        broker.unmap(second).unwrap();
        granter.join().unwrap();
        assert_eq!(first_bytes(&mem), [SCRIBBLE; LEN]);
    });
}
