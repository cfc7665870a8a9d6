//! Grant tables (`pvio_grant`): the broker's batched copy against plain `memcpy` of the same
//! bytes, and map + unmap of a grant against the per-packet remapping the paper removed
//! (`mmap` + `munmap` of one page of the guest's memfd). One thread, pinned to CPU 0.
//!
//! - **copy**: batches of 64 ops, each between one granted guest frame (64 distinct frames of
//!   a memfd) and one local buffer of the back end: guest → local (netback's tx header copy and
//!   the shape of any copy out) and local → guest (the rx copy into posted buffers), at 1500 B
//!   and 4 KiB per op. The peer copies the same number of bytes between a private buffer of
//!   the same footprint and the same local buffers with `copy_from_slice` (`memcpy`). 64-byte
//!   ops give the per-op overhead (ns/op) of the broker over `memcpy`.
//! - **map**: `Broker::map` + `Broker::unmap` of one grant (read-only map, as netback maps a tx
//!   payload) against `mmap(MAP_SHARED)` + `munmap` of one page of the guest memfd. The peer
//!   does not touch the page (a touch would add a page fault to it); the map is a view through
//!   which nothing is read either.
//!
//! Runs are interleaved (every run measures every row, in an order rotated per run); the
//! tables give medians and the median of per-run ratios ("paired").
//!
//! `cargo bench -p pvio-benches --bench grant` runs the full measurement; without `--bench`
//! (e.g. under `cargo test --benches`) a short smoke run checks the code paths.

use std::hint::black_box;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use pvio_benches::{cpu_model, median, min_max, paired_ratio, pin_to_cpu};
use pvio_grant::{
    Access, Broker, CopyDst, CopyOp, CopySrc, DomId, DomainMemory, Frame, GrantPtr, GrantRef, GrantTable,
    PAGE_SIZE,
};
use pvio_ring::MemfdRegion;

const GUEST: DomId = DomId(1);
const BACK: DomId = DomId(0);
/// Ops per batch, and guest frames granted (one per op).
const BATCH: usize = 64;
/// Guest frames: the 64 granted ones and one more for the map rows.
const FRAMES: u32 = BATCH as u32 + 1;

const MAX_RUNS: usize = 11;
const MIN_RUNS: usize = 5;
const TIME_BUDGET: Duration = Duration::from_secs(40);
/// Wall time per sample.
const SAMPLE: Duration = Duration::from_millis(150);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Dir {
    /// Guest frame → local buffer.
    Out,
    /// Local buffer → guest frame.
    In,
}

struct Setup {
    memory: DomainMemory,
    table_page: MemfdRegion,
}

struct Ctx<'a> {
    broker: Broker<'a>,
    grefs: Vec<GrantRef>,
    map_gref: GrantRef,
    memory: &'a DomainMemory,
    /// The back end's local buffers, one page per op.
    local: Vec<Vec<u8>>,
    /// The peer's stand-in for guest memory: private, same footprint and, like the guest's
    /// frames, page-aligned pages (so source and destination have the same relative
    /// alignment, and the same 4 KiB aliasing, as in the grant rows).
    private: Vec<u8>,
    /// Offset of the first page-aligned byte of `private`.
    private_at: usize,
}

/// One row's measurement: bytes (or items) per second.
fn time_loop(mut f: impl FnMut() -> u64, budget: Duration) -> f64 {
    // Warm-up, then repeat until the budget is spent.
    f();
    let start = Instant::now();
    let mut items = 0u64;
    let mut iters = 0u64;
    while iters < 4 || start.elapsed() < budget {
        items += f();
        iters += 1;
    }
    items as f64 / start.elapsed().as_secs_f64()
}

fn grant_copy(ctx: &mut Ctx<'_>, dir: Dir, len: usize) -> u64 {
    let Ctx { broker, grefs, local, .. } = ctx;
    let mut ops: Vec<CopyOp<'_>> = Vec::with_capacity(BATCH);
    match dir {
        Dir::Out => {
            for (g, buf) in grefs.iter().zip(local.iter_mut()) {
                let src = CopySrc::Grant(GrantPtr { domid: GUEST, gref: *g, offset: 0 });
                ops.push(CopyOp::new(src, CopyDst::Local(&mut buf[..len]), len as u16));
            }
        }
        Dir::In => {
            for (g, buf) in grefs.iter().zip(local.iter()) {
                let dst = CopyDst::Grant(GrantPtr { domid: GUEST, gref: *g, offset: 0 });
                ops.push(CopyOp::new(CopySrc::Local(&buf[..len]), dst, len as u16));
            }
        }
    }
    broker.copy(BACK, black_box(&mut ops));
    for op in &ops {
        if op.status.is_err() {
            panic!("grant copy failed: {:?}", op.status);
        }
    }
    (BATCH * len) as u64
}

fn memcpy(ctx: &mut Ctx<'_>, dir: Dir, len: usize) -> u64 {
    let Ctx { private, private_at, local, .. } = ctx;
    let pages = private[*private_at..].chunks_exact_mut(PAGE_SIZE);
    for (p, l) in pages.zip(local.iter_mut()) {
        match dir {
            Dir::Out => l[..len].copy_from_slice(black_box(&p[..len])),
            Dir::In => p[..len].copy_from_slice(black_box(&l[..len])),
        }
    }
    black_box(&mut *private);
    black_box(&mut *local);
    (BATCH * len) as u64
}

/// Map + unmap of one grant, 64 times.
fn grant_map(ctx: &mut Ctx<'_>) -> u64 {
    for _ in 0..BATCH {
        let h = match ctx.broker.map(BACK, GUEST, ctx.map_gref, Access::Read) {
            Ok(h) => h,
            Err(e) => panic!("map failed: {e}"),
        };
        black_box(h.iova());
        if let Err(e) = ctx.broker.unmap(black_box(h)) {
            panic!("unmap failed: {e}");
        }
    }
    BATCH as u64
}

/// mmap + munmap of one page of the guest memfd, 64 times.
fn remap(ctx: &mut Ctx<'_>) -> u64 {
    let fd = ctx.memory.memfd().as_raw_fd();
    let off = (FRAMES as i64 - 1) * PAGE_SIZE as i64;
    for _ in 0..BATCH {
        // SAFETY: a fresh shared mapping of one page of a memfd we hold open; nothing is read
        // or written through it, and it is unmapped right away.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGE_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                off as libc::off_t,
            )
        };
        assert!(p != libc::MAP_FAILED, "mmap of the guest memfd failed");
        black_box(p);
        // SAFETY: `p` is the page mapped just above, not used after this.
        let r = unsafe { libc::munmap(p, PAGE_SIZE) };
        assert_eq!(r, 0, "munmap failed");
    }
    BATCH as u64
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Row {
    Copy { dir: Dir, len: usize, grant: bool },
    Map { grant: bool },
}

impl Row {
    fn run(self, ctx: &mut Ctx<'_>, budget: Duration) -> f64 {
        match self {
            Row::Copy { dir, len, grant: true } => time_loop(|| grant_copy(ctx, dir, len), budget),
            Row::Copy { dir, len, grant: false } => time_loop(|| memcpy(ctx, dir, len), budget),
            Row::Map { grant: true } => time_loop(|| grant_map(ctx), budget),
            Row::Map { grant: false } => time_loop(|| remap(ctx), budget),
        }
    }
}

/// A scenario: pvio's row and its peer's.
struct Scenario {
    title: String,
    pvio: Row,
    peer: Row,
    how: [&'static str; 2],
}

fn scenarios() -> Vec<Scenario> {
    let mut v = Vec::new();
    for len in [1500usize, 4096, 64] {
        for dir in [Dir::Out, Dir::In] {
            let what = match dir {
                Dir::Out => "guest -> local",
                Dir::In => "local -> guest",
            };
            v.push(Scenario {
                title: format!("copy {BATCH} x {len} B, {what}"),
                pvio: Row::Copy { dir, len, grant: true },
                peer: Row::Copy { dir, len, grant: false },
                how: ["pvio Broker::copy, one batch of 64 grant ops", "memcpy (copy_from_slice), same bytes"],
            });
        }
    }
    v.push(Scenario {
        title: "map + unmap of one page".to_owned(),
        pvio: Row::Map { grant: true },
        peer: Row::Map { grant: false },
        how: ["pvio Broker::map + Broker::unmap (read)", "mmap(MAP_SHARED) + munmap of the guest memfd"],
    });
    v
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--bench");
    let (max_runs, budget) = if full { (MAX_RUNS, SAMPLE) } else { (1, Duration::from_millis(2)) };
    let pinned = pin_to_cpu(0);

    let setup = Setup {
        memory: DomainMemory::new("pvio-bench-grant-guest", FRAMES).expect("guest memfd"),
        table_page: MemfdRegion::new("pvio-bench-grant-table", PAGE_SIZE).expect("table memfd"),
    };
    let mut table = GrantTable::<512>::new(setup.table_page.mem()).expect("table");
    let grefs: Vec<GrantRef> =
        (0..BATCH as u32).map(|f| table.grant_access(BACK, Frame(f), false).expect("grant")).collect();
    let map_gref = table.grant_access(BACK, Frame(FRAMES - 1), true).expect("grant");
    let mut broker = Broker::new();
    broker.register(GUEST, setup.memory.mem(), setup.table_page.mem(), 0x1_0000_0000).expect("register");
    // Fill the guest's frames so that reads are of real, distinct bytes.
    for f in 0..FRAMES {
        setup.memory.frame(Frame(f)).expect("frame").fill(0, PAGE_SIZE, f as u8 ^ 0x5a).expect("fill");
    }
    let mut ctx = Ctx {
        broker,
        grefs,
        map_gref,
        memory: &setup.memory,
        local: (0..BATCH).map(|i| vec![i as u8; PAGE_SIZE]).collect(),
        private: (0..(BATCH + 1) * PAGE_SIZE).map(|i| (i / PAGE_SIZE) as u8 ^ 0x5a).collect(),
        private_at: 0,
    };
    ctx.private_at = ctx.private.as_ptr().align_offset(PAGE_SIZE);

    // Instruction counting (e.g. under callgrind): `--batches=N --len=L --dir=out|in
    // --row=grant|memcpy` runs exactly N batches of one copy row and nothing else, so that
    // (instructions at N) - (instructions at 0) over 64 N is the cost per op.
    let flag = |name: &str| args.iter().find_map(|a| a.strip_prefix(name));
    if let Some(n) = flag("--batches=") {
        let n: u64 = n.parse().expect("--batches=N");
        let len: usize = flag("--len=").map_or(1500, |l| l.parse().expect("--len=L"));
        let dir = if flag("--dir=") == Some("in") { Dir::In } else { Dir::Out };
        let grant = flag("--row=") != Some("memcpy");
        let mut bytes = 0;
        for _ in 0..n {
            bytes += if grant { grant_copy(&mut ctx, dir, len) } else { memcpy(&mut ctx, dir, len) };
        }
        println!("counted run: {n} batches, {bytes} bytes, grant={grant}, {dir:?}, {len} B");
        return;
    }

    println!("grant: pvio_grant broker vs memcpy and vs mmap/munmap, one thread pinned to CPU 0");
    println!(
        "  machine: {} ({} CPUs online); guest memory: {FRAMES} frames in a memfd; copy batches of {BATCH} ops, \
         one granted frame per op",
        cpu_model(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    if !full {
        println!("  (smoke run: pass --bench, as `cargo bench` does, for the real measurement)");
    }

    let scenarios = scenarios();
    // samples[scenario][0 = pvio, 1 = peer]
    let mut samples: Vec<[Vec<f64>; 2]> = scenarios.iter().map(|_| Default::default()).collect();
    let t0 = Instant::now();
    let mut runs = 0;
    while runs < max_runs {
        let round = Instant::now();
        for (s, sc) in scenarios.iter().enumerate() {
            for k in 0..2 {
                let which = (k + runs) % 2;
                let row = if which == 0 { sc.pvio } else { sc.peer };
                samples[s][which].push(row.run(&mut ctx, budget));
            }
        }
        runs += 1;
        let spent = t0.elapsed();
        if runs >= MIN_RUNS && spent + round.elapsed() > TIME_BUDGET {
            break;
        }
    }
    let total = t0.elapsed();
    println!(
        "  median of {runs} runs per row (~{} ms each); \"paired\" is the median of per-run ratios",
        budget.as_millis()
    );

    let mut copy_goal: Vec<(String, f64)> = Vec::new();
    let mut map_goal = None;
    for (sc, per) in scenarios.iter().zip(&samples) {
        println!();
        println!("{}", sc.title);
        let is_map = matches!(sc.pvio, Row::Map { .. });
        let len = match sc.pvio {
            Row::Copy { len, .. } => len,
            Row::Map { .. } => 0,
        };
        if is_map {
            println!(
                "  {:<52} {:>10} {:^20} {:>9} {:>7}",
                "implementation", "ns/op", "min .. max", "pvio/this", "paired"
            );
        } else {
            println!(
                "  {:<52} {:>8} {:^16} {:>8} {:>9} {:>7}",
                "implementation", "GB/s", "min .. max", "ns/op", "pvio/this", "paired"
            );
        }
        let meds = [median(&mut per[0].clone()), median(&mut per[1].clone())];
        let paired = paired_ratio(&per[0], &per[1]);
        for i in 0..2 {
            let (lo, hi) = min_max(&per[i]);
            let (ratio, pr) = if i == 0 {
                ("-".to_owned(), "-".to_owned())
            } else {
                (format!("{:.2}x", meds[0] / meds[1]), format!("{paired:.2}x"))
            };
            if is_map {
                println!(
                    "  {:<52} {:>10.1} {:>9.1} .. {:<8.1} {:>9} {:>7}",
                    sc.how[i],
                    1e9 / meds[i],
                    1e9 / hi,
                    1e9 / lo,
                    ratio,
                    pr
                );
            } else {
                let ns_op = 1e9 * len as f64 / meds[i];
                println!(
                    "  {:<52} {:>8.2} {:>6.2} .. {:<6.2} {:>8.1} {:>9} {:>7}",
                    sc.how[i],
                    meds[i] / 1e9,
                    lo / 1e9,
                    hi / 1e9,
                    ns_op,
                    ratio,
                    pr
                );
            }
        }
        if is_map {
            map_goal = Some((paired, 1e9 / meds[0], 1e9 / meds[1]));
        } else if len == 64 {
            let over = 1e9 * 64.0 / meds[0] - 1e9 * 64.0 / meds[1];
            println!("  per-op overhead of the broker over memcpy at 64 B: {over:.1} ns/op");
        } else {
            copy_goal.push((sc.title.clone(), paired));
        }
    }

    if full {
        println!();
        for (title, paired) in &copy_goal {
            println!(
                "goal (>= 0.85x memcpy at batch 64) {title}: {paired:.3}x paired: {}",
                if *paired >= 0.85 { "met" } else { "NOT met" }
            );
        }
        if let Some((paired, pv, peer)) = map_goal {
            let cheaper = paired;
            println!(
                "goal (map + unmap >= 20x cheaper than mmap + munmap): {cheaper:.1}x cheaper paired \
                 ({pv:.1} vs {peer:.1} ns): {}",
                if cheaper >= 20.0 { "met" } else { "NOT met" }
            );
        }
    }
    println!();
    if !pinned {
        println!("WARNING: pinning to CPU 0 failed; results are less reliable");
    }
    println!("total measurement time {:.1} s", total.as_secs_f64());
}
