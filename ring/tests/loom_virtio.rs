//! Loom models of the virtio split-virtqueue notification protocol (`--cfg loom` only).
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p pvio-ring --test loom_virtio --release --target-dir target/loom
//! ```
//!
//! Under `cfg(loom)` guest memory is a [`SharedMem`] of loom atomics and the queue code uses
//! loom's atomics and fences (see `src/sync.rs`), so these models check the code that ships.
//! Each model runs a [`DriverQueue`] and a [`DeviceQueue`] in their own loom threads and checks
//! in every explored execution:
//!
//! - **Buffers are seen complete.** The driver writes a sequence-derived word into each
//!   readable buffer before making its chain available; the device writes the complement into
//!   each writable buffer before marking it used. A side that reads a buffer before the other
//!   side's writes are visible (a missing Release/Acquire pairing on the available or used
//!   `idx`) sees a stale word and the assertion fails.
//! - **No kick and no interrupt is lost.** An idle side asks to be woken
//!   (`enable_notification` / `enable_interrupts`: event index or flag, SeqCst fence, re-check)
//!   and, if that finds nothing, blocks on an [`InProcessEvent`]; a busy side signals only when
//!   its publish says `is_needed()`. While busy, each side suppresses signals
//!   (`disable_notification` / `disable_interrupts`), so the suppression path is exercised
//!   too. A lost wake-up blocks a thread forever and loom reports the deadlock.
//!
//! Both are checked with `VIRTIO_F_EVENT_IDX` (`avail_event`/`used_event`) and with the flags
//! (`VIRTQ_USED_F_NO_NOTIFY`/`VIRTQ_AVAIL_F_NO_INTERRUPT`). Each model asserts that loom
//! explored more than one execution. As in `tests/loom.rs`, a deadlock aborts the binary;
//! `LOOM_MAX_PREEMPTIONS` overrides the preemption bounds.
#![cfg(loom)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use loom::sync::Arc;
use loom::thread;
use pvio_ring::virtio::{
    AddError, Buffer, DeviceQueue, DriverQueue, GuestMemory, GuestRegion, QueueFeatures, QueueLayout,
    QueueSize, Segment,
};
use pvio_ring::{InProcessEvent, Notifier, SharedMem, Waiter};

/// Entries of the queue: small, so chains reuse descriptors and ring slots.
const SIZE: u16 = 2;
/// Guest address of the first data buffer (after the rings).
const DATA: u64 = 72;

fn layout() -> QueueLayout {
    QueueLayout::contiguous(QueueSize::new(SIZE).unwrap(), 0).unwrap()
}

/// The 4-byte buffer of chain `seq`: chains in flight at the same time never share one (at
/// most `SIZE` are, and the device completes them in order).
fn buf(seq: u32) -> u64 {
    DATA + 4 * u64::from(seq % u32::from(SIZE))
}

/// The word the driver writes for chain `seq`; the device answers with its complement.
fn word(seq: u32) -> u32 {
    0x5649_0000 | seq
}

const FLAGS: QueueFeatures = QueueFeatures { event_idx: false, indirect_desc: false };
const EVENT_IDX: QueueFeatures = QueueFeatures { event_idx: true, indirect_desc: false };

/// What the chains carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    /// One device-readable buffer per chain; the device does not return chains.
    ToDevice,
    /// One device-writable buffer per chain; the device fills and returns each.
    ToDriver,
}

/// The driver: makes `n` chains available, publishing each on its own (and kicking when the
/// publish says so). With `wake_me`, also reclaims and checks every chain, sleeping when it can
/// neither add nor reclaim.
fn driver(
    mem: GuestRegion<'static>,
    features: QueueFeatures,
    n: u32,
    dir: Dir,
    batched: bool,
    wake_dev: &InProcessEvent,
    wake_me: Option<&InProcessEvent>,
) {
    let mut drv = DriverQueue::<_, u32>::new(&mem, layout(), features).unwrap();
    drv.disable_interrupts();
    let (mut sent, mut got) = (0, 0);
    loop {
        while sent < n {
            let b = Buffer::new(buf(sent), 4);
            let added = match dir {
                Dir::ToDevice => {
                    mem.translate(b.addr, 4).unwrap().write(0, &word(sent)).unwrap();
                    drv.add(&[b], &[], sent)
                }
                Dir::ToDriver => drv.add(&[], &[b], sent),
            };
            match added {
                Ok(_) => sent += 1,
                Err(e) if matches!(e.error, AddError::NoSpace { .. }) => break,
                Err(e) => panic!("{e}"),
            }
            if !batched && drv.publish().is_needed() {
                wake_dev.notify().unwrap();
            }
        }
        if batched && drv.publish().is_needed() {
            wake_dev.notify().unwrap();
        }
        let Some(wake_me) = wake_me else {
            assert_eq!(sent, n, "without reclaiming, every chain must fit");
            return;
        };
        if got == n {
            return;
        }
        match drv.pop_used().expect("honest device") {
            Some(used) => {
                assert_eq!((used.token, used.len), (got, 4), "chains come back in order, filled");
                let back: u32 = mem.translate(buf(got), 4).unwrap().read(0).unwrap();
                assert_eq!(back, !word(got), "the device's write is visible once the chain is used");
                got += 1;
            }
            None => {
                if !drv.enable_interrupts().expect("honest device") {
                    wake_me.wait(None).unwrap();
                }
                drv.disable_interrupts();
            }
        }
    }
}

/// The device: takes `n` chains, checking each; returns each at once when `wake_driver` is
/// given (one `push_used` per chain, interrupting when it says so). Suppresses kicks while
/// busy and sleeps when idle (`enable_notification`, then wait).
fn device(
    mem: GuestRegion<'static>,
    features: QueueFeatures,
    n: u32,
    batched: bool,
    wake_me: &InProcessEvent,
    wake_driver: Option<&InProcessEvent>,
) {
    let mut dev = DeviceQueue::new(&mem, layout(), features).unwrap();
    dev.disable_notification();
    let mut segs = [Segment::default(); 2];
    let mut seq = 0;
    // Publishes the used chains added so far (one store for the batch), interrupting if asked.
    let push = |dev: &mut DeviceQueue<'_, _>| {
        if dev.push_used().is_needed() {
            wake_driver.expect("chains are returned").notify().unwrap();
        }
    };
    while seq < n {
        let Some(chain) = dev.pop(&mut segs).expect("honest driver") else {
            if batched {
                push(&mut dev);
            }
            if !dev.enable_notification().expect("honest driver") {
                wake_me.wait(None).unwrap();
            }
            dev.disable_notification();
            continue;
        };
        match wake_driver {
            None => {
                let mut w = [0u8; 4];
                assert_eq!(chain.read_at(0, &mut w), Ok(4));
                assert_eq!(u32::from_ne_bytes(w), word(seq), "the driver's write is visible once published");
            }
            Some(_) => {
                assert_eq!(chain.write_at(0, &(!word(seq)).to_ne_bytes()), Ok(4));
                dev.add_used(chain.head(), 4).unwrap();
                if !batched {
                    push(&mut dev);
                }
            }
        }
        seq += 1;
    }
    push(&mut dev);
}

/// Runs `model` under loom, then checks and reports how many executions were explored.
fn check(name: &str, preemption_bound: usize, executions: &'static AtomicUsize, model: fn()) {
    let start = Instant::now();
    let mut builder = loom::model::Builder::new();
    let bound = *builder.preemption_bound.get_or_insert(preemption_bound);
    builder.check(move || {
        executions.fetch_add(1, Ordering::Relaxed);
        model();
    });
    let explored = executions.load(Ordering::Relaxed);
    println!("{name}: {explored} executions in {:.1?} (preemption bound {bound})", start.elapsed());
    assert!(explored > 1, "{name}: loom explored only {explored} execution(s)");
}

/// One model: driver and device in their own threads over one guest memory. `batched`: the
/// driver publishes everything that fits with one store, the device returns everything it
/// popped with one store before going idle.
fn run(features: QueueFeatures, n: u32, dir: Dir, batched: bool) {
    let region = GuestRegion::new(0, SharedMem::loom_new(DATA as usize + 4 * SIZE as usize)).unwrap();
    let wake_dev = Arc::new(InProcessEvent::new());
    let wake_drv = (dir == Dir::ToDriver).then(|| Arc::new(InProcessEvent::new()));
    let (mem, wd, wv) = (region.clone(), wake_dev.clone(), wake_drv.clone());
    let d = thread::spawn(move || driver(mem, features, n, dir, batched, &wd, wv.as_deref()));
    let (mem, wd, wv) = (region, wake_dev, wake_drv);
    let v = thread::spawn(move || device(mem, features, n, batched, &wd, wv.as_deref()));
    d.join().unwrap();
    v.join().unwrap();
}

const PREEMPTIONS_KICK: usize = 3;
const PREEMPTIONS_INTERRUPT: usize = 2;
const PREEMPTIONS_BATCHES: usize = 2;

/// Chains to the device, one publish each; the device sleeps when idle. Checks Release/Acquire
/// on the available `idx` and the `avail_event` handshake (`publish` against
/// `enable_notification`).
#[test]
fn no_lost_kick_with_event_idx() {
    static EXECUTIONS: AtomicUsize = AtomicUsize::new(0);
    check("kick, EVENT_IDX", PREEMPTIONS_KICK, &EXECUTIONS, || run(EVENT_IDX, 2, Dir::ToDevice, false));
}

/// As above with `VIRTQ_USED_F_NO_NOTIFY` instead of `avail_event`.
#[test]
fn no_lost_kick_with_flags() {
    static EXECUTIONS: AtomicUsize = AtomicUsize::new(0);
    check("kick, flags", PREEMPTIONS_KICK, &EXECUTIONS, || run(FLAGS, 2, Dir::ToDevice, false));
}

/// Three chains through a two-entry queue: the driver runs out of descriptors and sleeps on
/// used chains; the device fills and returns each with its own `push_used`. Checks
/// Release/Acquire on the used `idx` and the `used_event` handshake (`push_used` against
/// `enable_interrupts`), with both sides sleeping and waking each other.
#[test]
fn no_lost_interrupt_with_event_idx() {
    static EXECUTIONS: AtomicUsize = AtomicUsize::new(0);
    check("interrupt, EVENT_IDX", PREEMPTIONS_INTERRUPT, &EXECUTIONS, || {
        run(EVENT_IDX, 3, Dir::ToDriver, false)
    });
}

/// As above with `VIRTQ_AVAIL_F_NO_INTERRUPT` instead of `used_event`.
#[test]
fn no_lost_interrupt_with_flags() {
    static EXECUTIONS: AtomicUsize = AtomicUsize::new(0);
    check("interrupt, flags", PREEMPTIONS_INTERRUPT, &EXECUTIONS, || run(FLAGS, 3, Dir::ToDriver, false));
}

/// Batches both ways with `VIRTIO_F_EVENT_IDX`: the driver publishes all chains that fit with
/// one store; the device returns all it popped with one `push_used` before going idle, so
/// `vring_need_event` sees ranges of more than one index.
#[test]
fn batches_lose_no_kick_or_interrupt_with_event_idx() {
    static EXECUTIONS: AtomicUsize = AtomicUsize::new(0);
    check("batches, EVENT_IDX", PREEMPTIONS_BATCHES, &EXECUTIONS, || run(EVENT_IDX, 4, Dir::ToDriver, true));
}
