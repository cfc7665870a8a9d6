//! netback's receive path, NIC buffers → guest's posted pages, in one thread pinned to CPU 0:
//! GRO then the copy into granted guest frames, three ways, on the same frames.
//!
//! - **contiguous**: [`GroTable`] copies each segment's payload into its flow buffer; a
//!   super-frame is grant-copied into the posted pages in 4 KiB ops (`Broker::copy`, one
//!   batch). Every payload byte is copied twice.
//! - **by reference, grant copy**: [`GroRefTable`] keeps headers plus payload pieces in the
//!   NIC's buffers; the super-frame is grant-copied with one op per (piece, posted page)
//!   part, one batch. Copied once.
//! - **by reference, map**: the same, but each posted page is `Broker::map`ped once per
//!   super-frame and the parts are written through the mapping. Copied once.
//!
//! The NIC's frames (4 TCP/IPv4 flows, 1460-byte segments, round robin, complete checksums the
//! NIC vouched for) are generated once, before timing, back to back in a 1 MiB area, as netback
//! receives them: the cost of making them is not the back end's. The guest posts 18 pages
//! per super-frame, reused in turn. Runs are interleaved; medians and the median of per-run
//! ratios ("paired") are printed.
//!
//! `cargo bench -p pvio-benches --bench gro_rx` runs the full measurement; without `--bench`
//! (e.g. under `cargo test --benches`) a short smoke run checks the code paths, and every
//! run first checks that the three ways leave identical bytes in the guest's pages.

use std::time::{Duration, Instant};

use pvio_benches::{cpu_model, median, min_max, paired_ratio, pin_to_cpu};
use pvio_grant::{
    Access, Broker, CopyDst, CopyOp, CopySrc, DomId, DomainMemory, Frame, GrantPtr, GrantRef, GrantTable,
    PAGE_SIZE,
};
use pvio_offload::gro::{GroRefTable, GroTable, FLOW_BUF_LEN};
use pvio_offload::{checksum, ChecksumMode, ChecksumState, GsoKind, OffloadMeta, Segmenter};
use pvio_ring::MemfdRegion;

const GUEST: DomId = DomId(1);
const BACK: DomId = DomId(0);
const FLOWS: usize = 4;
const MSS: usize = 1460;
const SEGS: usize = 44;
/// Guest pages posted: 4 super-frames of 16 pages each at a time.
const POSTED: usize = 64;
const MAX_RUNS: usize = 11;
const MIN_RUNS: usize = 5;
const TIME_BUDGET: Duration = Duration::from_secs(30);
const SAMPLE: Duration = Duration::from_millis(150);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Way {
    Contiguous,
    RefCopy,
    RefMap,
}

impl Way {
    fn name(self) -> &'static str {
        match self {
            Way::Contiguous => "contiguous GRO + grant copy (payload copied twice)",
            Way::RefCopy => "GRO by reference + grant copy per part (once)",
            Way::RefMap => "GRO by reference + map per page (once)",
        }
    }
}

/// The frames of one round: 4 flows' super-frames cut into segments, interleaved, back to
/// back in `area` at the offsets in `at`.
struct Nic {
    area: Vec<u8>,
    at: Vec<(usize, usize)>,
    payload: usize,
}

fn nic_frames() -> Nic {
    let mut area = vec![0u8; 1 << 20];
    let mut per_flow: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut payload = 0;
    for f in 0..FLOWS {
        let len = SEGS * MSS;
        let mut frame = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
        frame.extend_from_slice(&[0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 2, 10, 0, 0, 1]);
        let ip_len = (20 + 20 + len) as u16;
        frame[16..18].copy_from_slice(&ip_len.to_be_bytes());
        let c = checksum::checksum(&frame[14..34]);
        frame[24..26].copy_from_slice(&c.to_be_bytes());
        let sport = 5201u16;
        let dport = 40000 + f as u16;
        frame.extend_from_slice(&sport.to_be_bytes());
        frame.extend_from_slice(&dport.to_be_bytes());
        frame.extend_from_slice(&(1000 * f as u32).to_be_bytes());
        frame.extend_from_slice(&1u32.to_be_bytes());
        frame.extend_from_slice(&[0x50, 0x10, 0xff, 0xff, 0, 0, 0, 0]);
        frame.extend((0..len).map(|i| (i * 7 + f) as u8));
        let pseudo = checksum::pseudo_header_v4([10, 0, 0, 2], [10, 0, 0, 1], 6, (20 + len) as u16);
        frame[50..52].copy_from_slice(&pseudo.to_be_bytes());
        let meta = OffloadMeta {
            gso_kind: GsoKind::TcpV4,
            ecn: false,
            gso_size: MSS as u16,
            hdr_len: 54,
            csum: ChecksumState::Partial { start: 34, offset: 16 },
            rsc: None,
        };
        let valid = meta.validate(&frame).expect("super-frame");
        let seg = Segmenter::new(&frame, &valid, ChecksumMode::Full).expect("segments");
        let mut buf = vec![0; seg.frames_len()];
        per_flow.push(seg.write_frames(&mut buf).expect("write").map(<[u8]>::to_vec).collect());
        payload += len;
    }
    let mut at = Vec::new();
    let mut pos = 0;
    for i in 0..SEGS {
        for flow in &per_flow {
            let f = &flow[i];
            area[pos..pos + f.len()].copy_from_slice(f);
            at.push((pos, f.len()));
            pos = (pos + f.len()).next_multiple_of(64);
        }
    }
    Nic { area, at, payload }
}

struct Ctx<'a> {
    broker: Broker<'a>,
    posted: Vec<GrantRef>,
    next: usize,
    gro_buf: Vec<u8>,
}

type RefTable = GroRefTable<usize, 8, 64>;

impl Ctx<'_> {
    /// The next posted pages for a frame of `len` bytes.
    fn take(&mut self, len: usize) -> Vec<GrantRef> {
        let n = len.div_ceil(PAGE_SIZE);
        let v = (0..n).map(|i| self.posted[(self.next + i) % POSTED]).collect();
        self.next = (self.next + n) % POSTED;
        v
    }
}

/// Copies the frame made of `parts` into the next posted pages, the way `way` does.
fn deliver(ctx: &mut Ctx<'_>, way: Way, parts: &[&[u8]]) {
    let len = parts.iter().map(|p| p.len()).sum();
    let pages = ctx.take(len);
    if way == Way::RefMap {
        let handles: Vec<_> =
            pages.iter().map(|&g| ctx.broker.map(BACK, GUEST, g, Access::Write).expect("map")).collect();
        let (mut page, mut used) = (0, 0);
        for part in parts {
            let mut rest: &[u8] = part;
            while !rest.is_empty() {
                if used == PAGE_SIZE {
                    page += 1;
                    used = 0;
                }
                let n = rest.len().min(PAGE_SIZE - used);
                handles[page].write_bytes(used, &rest[..n]).expect("write");
                rest = &rest[n..];
                used += n;
            }
        }
        for h in handles {
            ctx.broker.unmap(h).expect("unmap");
        }
        return;
    }
    let mut ops = Vec::with_capacity(parts.len() + pages.len());
    let (mut page, mut used) = (0, 0);
    for part in parts {
        let mut rest: &[u8] = part;
        while !rest.is_empty() {
            if used == PAGE_SIZE {
                page += 1;
                used = 0;
            }
            let n = rest.len().min(PAGE_SIZE - used);
            let dst = CopyDst::Grant(GrantPtr { domid: GUEST, gref: pages[page], offset: used as u16 });
            ops.push(CopyOp::new(CopySrc::Local(&rest[..n]), dst, n as u16));
            rest = &rest[n..];
            used += n;
        }
    }
    ctx.broker.copy(BACK, &mut ops);
    assert!(ops.iter().all(|o| o.status.is_ok()), "grant copy failed");
}

/// One round: every frame of `nic` through GRO into the guest. Returns payload bytes.
fn round(ctx: &mut Ctx<'_>, by_ref: &mut RefTable, nic: &Nic, way: Way) -> u64 {
    let csum = ChecksumState::Validated;
    match way {
        Way::Contiguous => {
            let mut buf = std::mem::take(&mut ctx.gro_buf);
            {
                let mut gro = GroTable::<8>::new(&mut buf).expect("gro");
                for &(at, len) in &nic.at {
                    gro.receive(&nic.area[at..at + len], csum, |d| deliver(ctx, way, &[d.frame]));
                }
                gro.flush_all(|d| deliver(ctx, way, &[d.frame]));
            }
            ctx.gro_buf = buf;
        }
        Way::RefCopy | Way::RefMap => {
            let gro = by_ref;
            let area = &nic.area;
            let mut out = |d: pvio_offload::RefDelivery<'_, usize>| {
                let mut parts: Vec<&[u8]> = Vec::with_capacity(1 + d.pieces.len());
                parts.push(d.header);
                parts.extend(d.pieces.iter().map(|p| &area[p.frame + p.offset..p.frame + p.offset + p.len]));
                deliver(ctx, way, &parts);
            };
            for &(at, len) in &nic.at {
                gro.receive(&nic.area[at..at + len], at, csum, &mut out);
            }
            gro.flush_all(&mut out);
        }
    }
    nic.payload as u64
}

fn run(ctx: &mut Ctx<'_>, by_ref: &mut RefTable, nic: &Nic, way: Way, budget: Duration) -> f64 {
    let t = Instant::now();
    let mut bytes = 0;
    while t.elapsed() < budget {
        bytes += round(ctx, by_ref, nic, way);
    }
    bytes as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--bench");
    let (max_runs, budget) = if full { (MAX_RUNS, SAMPLE) } else { (1, Duration::from_millis(5)) };
    let _ = pin_to_cpu(0);
    let memory = DomainMemory::new("pvio-bench-gro-guest", POSTED as u32).expect("guest memfd");
    let table_page = MemfdRegion::new("pvio-bench-gro-table", PAGE_SIZE).expect("table memfd");
    let mut table = GrantTable::<512>::new(table_page.mem()).expect("table");
    let posted: Vec<GrantRef> =
        (0..POSTED as u32).map(|f| table.grant_access(BACK, Frame(f), false).expect("grant")).collect();
    let mut broker = Broker::new();
    broker.register(GUEST, memory.mem(), table_page.mem(), 0x1_0000_0000).expect("register");
    let nic = nic_frames();
    let mut by_ref: Box<RefTable> = Box::new(GroRefTable::new(FLOW_BUF_LEN).expect("gro"));
    let mut ctx = Ctx { broker, posted, next: 0, gro_buf: vec![0; 8 * FLOW_BUF_LEN] };
    let ways = [Way::Contiguous, Way::RefCopy, Way::RefMap];

    // The three ways leave the same bytes in the guest's pages.
    let mut images = Vec::new();
    for way in ways {
        ctx.next = 0;
        memory.mem().fill(0, POSTED * PAGE_SIZE, 0).expect("clear");
        round(&mut ctx, &mut by_ref, &nic, way);
        let mut image = vec![0u8; POSTED * PAGE_SIZE];
        memory.mem().read_bytes(0, &mut image).expect("read");
        images.push(image);
    }
    assert!(images[0] == images[1] && images[0] == images[2], "the ways delivered different bytes");
    assert!(images[0].iter().any(|&b| b != 0));

    println!(
        "gro_rx: netback receive, NIC buffers -> GRO -> guest's posted pages, one thread pinned to CPU 0"
    );
    println!(
        "  machine: {} ; {FLOWS} TCP/IPv4 flows of {SEGS} x {MSS}-byte segments per round, round robin",
        cpu_model()
    );
    if !full {
        println!("  (smoke run: pass --bench, as `cargo bench` does, for the real measurement)");
    }
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); ways.len()];
    let t0 = Instant::now();
    let mut runs = 0;
    while runs < max_runs {
        let round_t = Instant::now();
        for k in 0..ways.len() {
            let w = (k + runs) % ways.len();
            samples[w].push(run(&mut ctx, &mut by_ref, &nic, ways[w], budget));
        }
        runs += 1;
        if runs >= MIN_RUNS && t0.elapsed() + round_t.elapsed() > TIME_BUDGET {
            break;
        }
    }
    println!("  median of {runs} runs (~{} ms each); paired: median of per-run ratios", budget.as_millis());
    println!(
        "  {:<54} {:>8} {:^16} {:>9} {:>11} {:>9}",
        "way", "GB/s", "min .. max", "ns/frame", "vs contig.", "paired"
    );
    let frames_per_byte = nic.at.len() as f64 / nic.payload as f64;
    let base = median(&mut samples[0].clone());
    for (i, way) in ways.iter().enumerate() {
        let m = median(&mut samples[i].clone());
        let (lo, hi) = min_max(&samples[i]);
        println!(
            "  {:<54} {:>8.2} {:>6.2} .. {:<6.2} {:>9.1} {:>10.2}x {:>8.2}x",
            way.name(),
            m / 1e9,
            lo / 1e9,
            hi / 1e9,
            1e9 / (m * frames_per_byte),
            m / base,
            paired_ratio(&samples[i], &samples[0])
        );
    }
}
