//! A deliberately hostile front end against netback: garbage in rings, wild indices, bad
//! grant references, bad extra info, metadata, offsets and lengths, rings that never drain.
//! netback must never panic or hang; it disconnects the offending vif with an error naming the
//! rule, and a well-behaved guest served by the same netback keeps working throughout (the NIC
//! model validates every frame it gets from it; the guest validates every frame it receives).

use std::sync::atomic::Ordering;

use pvio_examples::net::layout::{self, REGION_LEN};
use pvio_examples::net::traffic::{RxCsum, HDR_LEN, MSS, SUPER_PAYLOAD};
use pvio_examples::net::{
    BackError, BackOptions, FlowId, GuestMemory, ModelNic, NetBack, NetFront, NicCaps, NicStats, RxDelivery,
    StreamChecker, TcpSender, TxChecksum, TxPayload, VifConfig, VifState,
};
use pvio_grant::{DomId, GrantStatus};
use pvio_offload::{ChecksumState, GsoKind, MetaError, OffloadMeta};
use pvio_ring::xen::netif::{extra_type, nettxf, NetifExtraInfo, NetifRxRequest, NetifTxRequest};
use pvio_ring::{InProcessEvent, RingError, SharedMem};

/// Rounds of the good guest's traffic after the abuse (fewer in unoptimized builds).
const STEPS: usize = if cfg!(debug_assertions) { 20 } else { 100 };
/// Rounds of random garbage.
const GARBAGE_ROUNDS: usize = if cfg!(debug_assertions) { 12 } else { 40 };

const BACKEND: DomId = DomId(0);
const GOOD: DomId = DomId(1);
const BAD: DomId = DomId(2);

fn mac(d: DomId) -> [u8; 6] {
    [2, 0, 0, 0, 0, d.0 as u8]
}

fn tx_flow(d: DomId, port: u16) -> FlowId {
    FlowId {
        src_mac: mac(d),
        dst_mac: [2, 0, 0, 0, 0, 0xfe],
        src_ip: [10, 0, d.0 as u8, 1],
        dst_ip: [10, 0, 0, 254],
        src_port: port,
        dst_port: 5201,
    }
}

fn rx_flow(d: DomId) -> FlowId {
    FlowId {
        src_mac: [2, 0, 0, 0, 0, 0xfe],
        dst_mac: mac(d),
        src_ip: [10, 0, 0, 254],
        dst_ip: [10, 0, d.0 as u8, 1],
        src_port: 5201,
        dst_port: 40000,
    }
}

type Back<'a> = NetBack<'a, ModelNic, &'a InProcessEvent>;

/// The well-behaved guest: sends super-frames and plain frames, receives and checks.
struct Good<'a> {
    front: NetFront<'a>,
    tx: TcpSender,
    checker: StreamChecker,
    buf: Vec<u8>,
}

impl Good<'_> {
    fn step(&mut self, back: &mut Back<'_>) {
        self.front.reclaim().unwrap();
        for i in 0..4 {
            let len = if i % 2 == 0 { SUPER_PAYLOAD } else { MSS };
            let mut hdr = [0u8; HDR_LEN];
            if !self.front.can_send(HDR_LEN + len) {
                break;
            }
            let (p, meta) = self.tx.next_frame(len, TxChecksum::Partial, &mut hdr);
            assert!(self.front.send(&[&hdr, p], &meta).unwrap());
        }
        self.front.post_rx().unwrap();
        let _ = self.front.flush();
        back.poll().unwrap();
        while let Some(p) = self.front.receive(&mut self.buf).unwrap() {
            let gso = (p.meta.gso_size > 0).then_some(p.meta.gso_size);
            let csum = if p.meta.csum == ChecksumState::None { RxCsum::Unknown } else { RxCsum::Verified };
            if let Err(e) = self.checker.check(&self.buf[..p.len], csum, gso) {
                panic!("good guest received an invalid frame: {e}");
            }
        }
    }
}

/// Two guests on one netback; the second one's memory is for the test to abuse.
struct World {
    good_mem: GuestMemory,
    good_view: GuestMemory,
    bad_mem: GuestMemory,
    bad_view: GuestMemory,
    ev: InProcessEvent,
}

impl World {
    fn new() -> Self {
        let good_mem = GuestMemory::new_4k("good", REGION_LEN).unwrap();
        let bad_mem = GuestMemory::new_4k("bad", REGION_LEN).unwrap();
        World {
            good_view: good_mem.second_view().unwrap(),
            bad_view: bad_mem.second_view().unwrap(),
            good_mem,
            bad_mem,
            ev: InProcessEvent::new(),
        }
    }
}

/// Sets up both guests (the bad one's rings and grant table initialized by a real front end,
/// which the test then bypasses), runs `abuse` and checks the outcome.
/// What must become of the hostile vif.
enum Expect<F> {
    /// Disconnected, for a reason this accepts.
    Disconnected(F),
    /// Still connected (it broke no rule, only hurt itself).
    Connected,
    /// Either; if disconnected, the reason is passed to the function (random garbage may
    /// happen to be harmless).
    Either(F),
}

/// The back end's configuration in a scenario.
#[derive(Clone, Copy)]
struct Setup {
    caps: NicCaps,
    opts: BackOptions,
    rx_gso: bool,
}

const DEFAULT_SETUP: Setup = Setup {
    caps: NicCaps::TSO.union(NicCaps::TX_CSUM).union(NicCaps::RX_CSUM),
    opts: BackOptions {
        gro: true,
        tx_payload: TxPayload::Reference,
        rx: RxDelivery::Copy,
        budget: 64,
        rx_budget: 256,
    },
    rx_gso: true,
};

fn scenario<F: Fn(&BackError) -> bool>(
    name: &str,
    abuse: impl FnOnce(&SharedMem<'_>, &mut NetFront<'_>),
    expect: Expect<F>,
) {
    scenario_with(DEFAULT_SETUP, name, abuse, expect)
}

fn scenario_with<F: Fn(&BackError) -> bool>(
    setup: Setup,
    name: &str,
    abuse: impl FnOnce(&SharedMem<'_>, &mut NetFront<'_>),
    expect: Expect<F>,
) {
    let w = World::new();
    let nic = ModelNic::new(setup.caps).with_rx_flows(&[rx_flow(GOOD), rx_flow(BAD)]);
    let stats = nic.stats();
    let mut back: Back<'_> = NetBack::new(BACKEND, nic, setup.opts);
    let good_front = NetFront::new(w.good_mem.mem(), BACKEND).unwrap();
    let mut bad_front = NetFront::new(w.bad_mem.mem(), BACKEND).unwrap();
    for (domid, view) in [(GOOD, &w.good_view), (BAD, &w.bad_view)] {
        back.connect(VifConfig {
            domid,
            mac: mac(domid),
            mem: view.mem(),
            memfd: view.fd(),
            notify: &w.ev,
            flipper: None,
            iova_base: 0,
            rx_gso: setup.rx_gso,
        })
        .unwrap();
    }
    let mut good = Good {
        front: good_front,
        tx: TcpSender::new(tx_flow(GOOD, 40000), 5),
        checker: StreamChecker::tolerating_gaps(),
        buf: Vec::new(),
    };
    for _ in 0..STEPS / 5 {
        good.step(&mut back);
    }
    let before = good_progress(&stats, &good);
    abuse(&w.bad_mem.mem(), &mut bad_front);
    for _ in 0..STEPS {
        good.step(&mut back);
    }
    let after = good_progress(&stats, &good);
    println!(
        "{name}: bad vif {:?}; good guest tx {} -> {}, rx {} -> {}",
        back.vif_state(1),
        before.0,
        after.0,
        before.1,
        after.1
    );
    match (back.vif_state(1).unwrap(), expect) {
        (VifState::Disconnected(e), Expect::Disconnected(ok)) => {
            assert!(ok(&e), "{name}: disconnected for the wrong reason: {e:?}")
        }
        (VifState::Disconnected(e), Expect::Connected) => panic!("{name}: disconnected: {e:?}"),
        (VifState::Connected, Expect::Disconnected(_)) => panic!("{name}: hostile vif was not disconnected"),
        (VifState::Disconnected(e), Expect::Either(seen)) => {
            seen(&e);
        }
        (VifState::Connected, Expect::Connected | Expect::Either(_)) => {}
    }
    assert_eq!(back.vif_state(0), Some(VifState::Connected), "{name}: the good guest was disconnected");
    assert!(after.0 > before.0 && after.1 > before.1, "{name}: the good guest stopped moving data");
    assert_eq!(
        stats.tx_invalid.load(Ordering::Relaxed),
        0,
        "{name}: {:?}",
        stats.first_invalid.lock().unwrap()
    );
    assert_eq!(good.checker.invalid, 0);
}

fn good_progress(stats: &NicStats, good: &Good<'_>) -> (u64, u64) {
    (stats.tx_frames.load(Ordering::Relaxed), good.checker.frames)
}

const TX_ENTRY: usize = 12;
const RX_ENTRY: usize = 8;
const ENTRIES: usize = 64;

/// Writes tx slots starting at the ring's current producer index and publishes them.
fn raw_tx(mem: &SharedMem<'_>, reqs: &[NetifTxRequest]) {
    let ring = layout::tx_ring(mem).unwrap();
    let prod: u32 = ring.read(0).unwrap();
    for (i, r) in reqs.iter().enumerate() {
        let idx = (prod as usize + i) % 256;
        ring.write(ENTRIES + idx * TX_ENTRY, r).unwrap();
    }
    ring.write(0, &(prod + reqs.len() as u32)).unwrap();
}

fn raw_rx(mem: &SharedMem<'_>, reqs: &[NetifRxRequest]) {
    let ring = layout::rx_ring(mem).unwrap();
    let prod: u32 = ring.read(0).unwrap();
    for (i, r) in reqs.iter().enumerate() {
        let idx = (prod as usize + i) % 256;
        ring.write(ENTRIES + idx * RX_ENTRY, r).unwrap();
    }
    ring.write(0, &(prod + reqs.len() as u32)).unwrap();
}

fn req(gref: u32, offset: u16, flags: u16, size: u16) -> NetifTxRequest {
    NetifTxRequest {
        gref: gref.into(),
        offset: offset.into(),
        flags: flags.into(),
        id: 0.into(),
        size: size.into(),
    }
}

/// A grant reference the hostile front end really granted (the first transmit buffer of a
/// frame it queued but did not publish).
fn granted_ref(mem: &SharedMem<'_>, front: &mut NetFront<'_>) -> u32 {
    let mut hdr = [0u8; HDR_LEN];
    let (p, meta) = TcpSender::new(tx_flow(BAD, 1), 0).next_frame(100, TxChecksum::Full, &mut hdr);
    assert!(front.send(&[&hdr, p], &meta).unwrap());
    let ring = layout::tx_ring(mem).unwrap();
    let prod: u32 = ring.read(0).unwrap();
    let slot: NetifTxRequest = ring.read(ENTRIES + (prod as usize % 256) * TX_ENTRY).unwrap();
    slot.gref.get()
}

#[test]
fn good_guest_alone_moves_valid_traffic_both_ways() {
    scenario("well-behaved neighbour", |_, _| {}, Expect::<fn(&BackError) -> bool>::Connected);
}

#[test]
fn good_guest_under_every_back_end_policy() {
    // No offload at all: super-frames segmented with full checksums, partial checksums
    // completed in software; checksum offload only: segments with partial checksums; payload
    // by per-packet remapping; no GRO; a guest that takes no receive GSO (and GRO on).

    let setups = [
        Setup { caps: NicCaps::empty(), ..DEFAULT_SETUP },
        Setup { caps: NicCaps::TX_CSUM, ..DEFAULT_SETUP },
        Setup { opts: BackOptions { tx_payload: TxPayload::Remap, ..DEFAULT_SETUP.opts }, ..DEFAULT_SETUP },
        Setup { opts: BackOptions { gro: false, ..DEFAULT_SETUP.opts }, ..DEFAULT_SETUP },
        Setup { rx_gso: false, ..DEFAULT_SETUP },
    ];
    for (i, setup) in setups.into_iter().enumerate() {
        scenario_with(setup, &format!("policy {i}"), |_, _| {}, Expect::<fn(&BackError) -> bool>::Connected);
    }
}

#[test]
fn wild_producer_index() {
    scenario(
        "req_prod 1000 ahead",
        |mem, _| layout::tx_ring(mem).unwrap().write(0, &1000u32).unwrap(),
        Expect::Disconnected(|e: &BackError| {
            matches!(e, BackError::Ring(RingError::RequestProdOverflow { req_prod: 1000, .. }))
        }),
    );
}

#[test]
fn rx_producer_index_rewound() {
    scenario(
        "rx req_prod far behind",
        |mem, _| layout::rx_ring(mem).unwrap().write(0, &u32::MAX).unwrap(),
        Expect::Disconnected(|e: &BackError| {
            matches!(
                e,
                BackError::Ring(RingError::RequestProdOverflow { .. } | RingError::RequestProdRewound { .. })
            )
        }),
    );
}

#[test]
fn undefined_flags() {
    scenario(
        "flags 0x80",
        |m, _| raw_tx(m, &[req(8, 0, 0x80, 100)]),
        Expect::Disconnected(|e: &BackError| matches!(e, BackError::UnknownTxFlags { flags: 0x80 })),
    );
}

#[test]
fn slot_beyond_its_page() {
    scenario(
        "offset 4000 + 200 bytes",
        |m, f| {
            let g = granted_ref(m, f);
            raw_tx(m, &[req(g, 4000, 0, 200)]);
        },
        Expect::Disconnected(|e: &BackError| {
            matches!(e, BackError::SlotBeyondPage { offset: 4000, len: 200 })
        }),
    );
}

#[test]
fn grant_never_granted_and_beyond_the_table() {
    scenario(
        "gref 700 (free)",
        |m, _| raw_tx(m, &[req(700, 0, 0, 100)]),
        Expect::Disconnected(|e: &BackError| {
            matches!(e, BackError::Grant { gref: 700, status: GrantStatus::BadGntref })
        }),
    );
    scenario(
        "gref 10^6",
        |m, _| raw_tx(m, &[req(1_000_000, 0, 0, 100)]),
        Expect::Disconnected(|e: &BackError| {
            matches!(e, BackError::Grant { gref: 1_000_000, status: GrantStatus::BadGntref })
        }),
    );
}

#[test]
fn packet_promising_slots_it_never_publishes() {
    scenario(
        "more_data, then nothing",
        |m, f| {
            let g = granted_ref(m, f);
            raw_tx(m, &[req(g, 0, nettxf::MORE_DATA, 200)]);
        },
        Expect::Disconnected(|e: &BackError| matches!(e, BackError::IncompletePacket { published: 1 })),
    );
    scenario(
        "extra_info, then nothing",
        |m, f| {
            let g = granted_ref(m, f);
            raw_tx(m, &[req(g, 0, nettxf::EXTRA_INFO, 200)]);
        },
        Expect::Disconnected(|e: &BackError| matches!(e, BackError::IncompletePacket { published: 1 })),
    );
}

#[test]
fn sizes_that_do_not_add_up() {
    scenario(
        "first size below the rest",
        |m, f| {
            let g = granted_ref(m, f);
            raw_tx(m, &[req(g, 0, nettxf::MORE_DATA, 100), req(g, 0, 0, 200)]);
        },
        Expect::Disconnected(|e: &BackError| matches!(e, BackError::SizeMismatch { size: 100, rest: 200 })),
    );
    scenario(
        "13-byte packet",
        |m, f| {
            let g = granted_ref(m, f);
            raw_tx(m, &[req(g, 0, 0, 13)]);
        },
        Expect::Disconnected(|e: &BackError| matches!(e, BackError::PacketSize { len: 13, .. })),
    );
}

#[test]
fn too_many_slots() {
    scenario(
        "20 chained slots",
        |m, f| {
            let g = granted_ref(m, f);
            let mut reqs = vec![req(g, 0, nettxf::MORE_DATA, 2000); 20];
            reqs[0].size = 60000.into();
            raw_tx(m, &reqs);
        },
        Expect::Disconnected(|e: &BackError| matches!(e, BackError::TooManySlots { .. })),
    );
}

#[test]
fn bad_extra_info() {
    let extra = |ty: u8, flags: u8| {
        let mut x = NetifExtraInfo::gso(1, 1460);
        x.ty = ty;
        x.flags = flags;
        NetifTxRequest::from_extra(&x)
    };
    scenario(
        "extra type 9",
        |m, f| {
            let g = granted_ref(m, f);
            raw_tx(m, &[req(g, 0, nettxf::EXTRA_INFO, 200), extra(9, 0)]);
        },
        Expect::Disconnected(|e: &BackError| matches!(e, BackError::BadExtra(_))),
    );
    scenario(
        "multicast extra on transmit",
        |m, f| {
            let g = granted_ref(m, f);
            raw_tx(m, &[req(g, 0, nettxf::EXTRA_INFO, 200), extra(extra_type::MCAST_ADD, 0)]);
        },
        Expect::Disconnected(|e: &BackError| {
            matches!(e, BackError::UnexpectedExtra { ty: extra_type::MCAST_ADD })
        }),
    );
    scenario(
        "endless extra chain",
        |m, f| {
            let g = granted_ref(m, f);
            raw_tx(
                m,
                &[
                    req(g, 0, nettxf::EXTRA_INFO, 200),
                    extra(1, 1),
                    extra(1, 1),
                    extra(1, 1),
                    extra(1, 1),
                    extra(1, 1),
                ],
            );
        },
        Expect::Disconnected(|e: &BackError| {
            matches!(e, BackError::UnexpectedExtra { .. } | BackError::TooManyExtras { .. })
        }),
    );
}

/// A real TCP super-frame queued through the hostile front end's own code, then its
/// published slots edited before the back end sees them.
fn tampered_super_frame(m: &SharedMem<'_>, f: &mut NetFront<'_>, edit: impl FnOnce(&mut [NetifTxRequest])) {
    let ring = layout::tx_ring(m).unwrap();
    let start: u32 = ring.read(0).unwrap();
    let mut hdr = [0u8; HDR_LEN];
    let (p, meta) =
        TcpSender::new(tx_flow(BAD, 7), 0).next_frame(SUPER_PAYLOAD, TxChecksum::Partial, &mut hdr);
    assert!(f.send(&[&hdr, p], &meta).unwrap());
    let _ = f.flush();
    let end: u32 = ring.read(0).unwrap();
    let mut slots: Vec<NetifTxRequest> =
        (start..end).map(|i| ring.read(ENTRIES + (i as usize % 256) * TX_ENTRY).unwrap()).collect();
    // Unpublish, edit, republish.
    ring.write(0, &start).unwrap();
    edit(&mut slots);
    raw_tx(m, &slots);
}

#[test]
fn metadata_that_does_not_fit_the_packet() {
    scenario(
        "GSO type TCPv6 on an IPv4 packet",
        |m, f| {
            tampered_super_frame(m, f, |s| s[1] = NetifTxRequest::from_extra(&NetifExtraInfo::gso(2, 1460)));
        },
        Expect::Disconnected(|e: &BackError| {
            matches!(e, BackError::Meta(MetaError::GsoKindMismatch { kind: GsoKind::TcpV6, .. }))
        }),
    );
    scenario(
        "GSO size 0",
        |m, f| {
            tampered_super_frame(m, f, |s| s[1] = NetifTxRequest::from_extra(&NetifExtraInfo::gso(1, 0)));
        },
        Expect::Disconnected(|e: &BackError| matches!(e, BackError::Meta(MetaError::GsoSizeZero))),
    );
    scenario(
        "GSO without csum_blank",
        |m, f| {
            tampered_super_frame(m, f, |s| s[0].flags = (nettxf::EXTRA_INFO | nettxf::MORE_DATA).into());
        },
        Expect::Disconnected(|e: &BackError| {
            matches!(e, BackError::Meta(MetaError::GsoWithoutPartialChecksum))
        }),
    );
    scenario(
        "packet size shorter than the IP length",
        |m, f| {
            tampered_super_frame(m, f, |s| {
                let n = s.len();
                s[0].size = (s[0].size.get() - 1000).into();
                s[n - 1].size = (s[n - 1].size.get() - 1000).into();
            });
        },
        Expect::Disconnected(|e: &BackError| matches!(e, BackError::Headers(_) | BackError::Meta(_))),
    );
}

#[test]
fn garbage_headers() {
    scenario(
        "IPv4 ethertype, version 6 header",
        |_, f| {
            let mut frame = [0u8; 100];
            frame[12] = 0x08;
            frame[14] = 0x65;
            assert!(f.send(&[&frame], &OffloadMeta::NONE).unwrap());
            let _ = f.flush();
        },
        Expect::Disconnected(|e: &BackError| matches!(e, BackError::Headers(_))),
    );
}

#[test]
fn hostile_receive_buffers() {
    scenario(
        "rx request with an ungranted ref",
        |m, _| {
            let reqs: Vec<NetifRxRequest> =
                (0..64).map(|i| NetifRxRequest { id: i.into(), pad: 0.into(), gref: 900.into() }).collect();
            raw_rx(m, &reqs);
        },
        Expect::Disconnected(|e: &BackError| {
            matches!(e, BackError::Grant { gref: 900, status: GrantStatus::BadGntref })
        }),
    );
    scenario(
        "rx request with a read-only grant",
        |m, f| {
            let g = granted_ref(m, f);
            let reqs: Vec<NetifRxRequest> =
                (0..64).map(|i| NetifRxRequest { id: i.into(), pad: 0.into(), gref: g.into() }).collect();
            raw_rx(m, &reqs);
        },
        Expect::Disconnected(|e: &BackError| {
            matches!(e, BackError::Grant { status: GrantStatus::PermissionDenied, .. })
        }),
    );
}

#[test]
fn rings_that_never_drain() {
    // The hostile guest posts buffers once and never consumes a response or posts again, and
    // fills its transmit ring without ever reclaiming: netback keeps serving the other guest
    // and drops what the stuck one cannot take.
    scenario(
        "never drains",
        |_, f| {
            f.post_rx().unwrap();
            let mut s = TcpSender::new(tx_flow(BAD, 9), 0);
            let mut hdr = [0u8; HDR_LEN];
            loop {
                let (p, meta) = s.clone().next_frame(MSS, TxChecksum::Partial, &mut hdr);
                if !f.send(&[&hdr, p], &meta).unwrap() {
                    break;
                }
                s.next_frame(MSS, TxChecksum::Partial, &mut hdr);
            }
            let _ = f.flush();
        },
        Expect::<fn(&BackError) -> bool>::Connected,
    );
}

#[test]
fn random_garbage_never_panics() {
    // Deterministic pseudo-random garbage over the ring pages and the grant table. Odd rounds
    // keep the flags defined and the references, offsets and sizes near-plausible, so the
    // garbage gets past the first checks into extra info, grants, headers and metadata.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut reasons = std::collections::BTreeSet::new();
    for round in 0..GARBAGE_ROUNDS {
        let words: Vec<u64> = (0..3 * 4096 / 8).map(|_| next()).collect();
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let plausible = round % 2 == 1;
        let seen = std::cell::RefCell::new(None);
        scenario(
            &format!("garbage round {round}"),
            |m, f| {
                if plausible {
                    let _ = granted_ref(m, f);
                    let slots: Vec<NetifTxRequest> = bytes[..24 * 12]
                        .chunks_exact(12)
                        .map(|c| {
                            let w = |i: usize| u16::from_le_bytes([c[i], c[i + 1]]);
                            NetifTxRequest {
                                gref: u32::from(w(0) % 1100).into(),
                                offset: (w(2) % 4200).into(),
                                flags: (w(4) & nettxf::ALL).into(),
                                id: w(6).into(),
                                size: (w(8) % 5000).into(),
                            }
                        })
                        .take(1 + bytes[300] as usize % 24)
                        .collect();
                    raw_tx(m, &slots);
                    let rx: Vec<NetifRxRequest> = (0..bytes[301] % 40)
                        .map(|i| NetifRxRequest {
                            id: u16::from(i).into(),
                            pad: 0.into(),
                            gref: (u32::from(bytes[400 + usize::from(i)]) * 4 % 1100).into(),
                        })
                        .collect();
                    raw_rx(m, &rx);
                } else {
                    let (tx, rx) = (layout::tx_ring(m).unwrap(), layout::rx_ring(m).unwrap());
                    tx.write_bytes(4, &bytes[4..4096]).unwrap();
                    rx.write_bytes(4, &bytes[4100..8192]).unwrap();
                    // Small producer indices, so the entries themselves get parsed.
                    tx.write(0, &(u32::from(bytes[0]) % 40)).unwrap();
                    rx.write(0, &(u32::from(bytes[1]) % 40)).unwrap();
                    layout::gnttab(m).unwrap().write_bytes(64, &bytes[8192..12288 - 64]).unwrap();
                }
            },
            Expect::Either(|e: &BackError| {
                *seen.borrow_mut() = Some(std::mem::discriminant(e));
                true
            }),
        );
        let _ = seen.take().map(|d| reasons.insert(format!("{d:?}")));
    }
    println!("distinct disconnect reasons seen: {}", reasons.len());
}

/// A NIC that delivers what a TAP device can: TCP super-frames of the largest IPv4 length
/// (65535 bytes, 17 pages), with GSO metadata and a partial checksum.
struct LargestFrames {
    seq: u32,
    left: usize,
}

impl pvio_examples::net::Nic for LargestFrames {
    type Error = std::convert::Infallible;
    fn caps(&self) -> NicCaps {
        NicCaps::all()
    }
    fn transmit(&mut self, _: &pvio_examples::net::TxFrame<'_, '_>) -> Result<(), Self::Error> {
        Ok(())
    }
    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<pvio_examples::net::RxInfo>, Self::Error> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        let len = 65535 - 40;
        let mut hdr = [0u8; HDR_LEN];
        let (_, mut meta) =
            TcpSender::new(rx_flow(GOOD), self.seq).next_frame(SUPER_PAYLOAD, TxChecksum::Partial, &mut hdr);
        hdr[16..18].copy_from_slice(&65535u16.to_be_bytes());
        hdr[24..26].fill(0);
        let ipsum = pvio_offload::checksum::checksum(&hdr[14..34]);
        hdr[24..26].copy_from_slice(&ipsum.to_be_bytes());
        buf[..HDR_LEN].copy_from_slice(&hdr);
        buf[HDR_LEN..HDR_LEN + len].copy_from_slice(pvio_examples::net::traffic::payload(self.seq, len));
        self.seq = self.seq.wrapping_add(len as u32);
        meta.gso_size = MSS as u16;
        Ok(Some(pvio_examples::net::RxInfo { len: HDR_LEN + len, meta }))
    }
}

#[test]
fn largest_frames_take_seventeen_pages_plus_the_extra() {
    let mem = GuestMemory::new_4k("big", REGION_LEN).unwrap();
    let view = mem.second_view().unwrap();
    let ev = InProcessEvent::new();
    let mut back = NetBack::new(BACKEND, LargestFrames { seq: 77, left: 40 }, BackOptions::default());
    let mut front = NetFront::new(mem.mem(), BACKEND).unwrap();
    back.connect(VifConfig {
        domid: GOOD,
        mac: mac(GOOD),
        mem: view.mem(),
        memfd: None,
        notify: &ev,
        flipper: None,
        iova_base: 0,
        rx_gso: true,
    })
    .unwrap();
    let mut checker = StreamChecker::new();
    let mut buf = Vec::new();
    for _ in 0..100 {
        front.post_rx().unwrap();
        let _ = front.flush();
        back.poll().unwrap();
        while let Some(p) = front.receive(&mut buf).unwrap() {
            assert_eq!(p.len, 65549);
            checker.check(&buf[..p.len], RxCsum::Verified, Some(p.meta.gso_size)).unwrap();
        }
    }
    assert_eq!(back.vif_state(0), Some(VifState::Connected));
    assert_eq!((checker.frames, checker.invalid), (40, 0));
}
