//! `parse` against etherparse on random valid frames built by etherparse's `PacketBuilder`,
//! and `parse` on random bytes (never panics, and whatever it returns is in bounds).

use etherparse::{
    IpHeaders, IpNumber, Ipv4Header, Ipv6FragmentHeader, Ipv6Header, Ipv6RawExtHeader, Ipv6RoutingExtensions,
    PacketBuilder, SlicedPacket, TransportSlice, VlanId,
};
use proptest::prelude::*;
use pvio_offload::{parse, L3, L4};

#[derive(Debug, Clone)]
struct Spec {
    vlans: Vec<u16>,
    v6: bool,
    ipv4_options: Vec<u8>,
    hbh: Option<Vec<u8>>,
    dest: Option<Vec<u8>>,
    routing: Option<Vec<u8>>,
    atomic_frag: bool,
    tcp: bool,
    tcp_options: Vec<u8>,
    payload: Vec<u8>,
}

fn ext_payload() -> impl Strategy<Value = Vec<u8>> {
    // Raw extension header payloads are 6 + 8k bytes.
    (0usize..3).prop_flat_map(|k| proptest::collection::vec(any::<u8>(), 6 + 8 * k))
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        proptest::collection::vec(0u16..4096, 0..=2),
        any::<bool>(),
        (0usize..=10).prop_map(|w| vec![1u8; w * 4]), // NOP options
        proptest::option::of(ext_payload()),
        proptest::option::of(ext_payload()),
        proptest::option::of(ext_payload()),
        any::<bool>(),
        any::<bool>(),
        (0usize..=10).prop_map(|w| vec![1u8; w * 4]),
        proptest::collection::vec(any::<u8>(), 0..1500),
    )
        .prop_map(
            |(vlans, v6, ipv4_options, hbh, dest, routing, atomic_frag, tcp, tcp_options, payload)| Spec {
                vlans,
                v6,
                ipv4_options,
                hbh,
                dest,
                routing,
                atomic_frag,
                tcp,
                tcp_options,
                payload,
            },
        )
}

fn build(s: &Spec) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let ip = if s.v6 {
        let mut exts = etherparse::Ipv6Extensions::default();
        let raw = |p: &Vec<u8>| Ipv6RawExtHeader::new_raw(IpNumber(0), p).unwrap();
        exts.hop_by_hop_options = s.hbh.as_ref().map(raw);
        exts.destination_options = s.dest.as_ref().map(raw);
        exts.routing = s
            .routing
            .as_ref()
            .map(|p| Ipv6RoutingExtensions { routing: raw(p), final_destination_options: None });
        if s.atomic_frag {
            exts.fragment =
                Some(Ipv6FragmentHeader::new(IpNumber(0), 0.try_into().unwrap(), false, 0x1234_5678));
        }
        let hdr = Ipv6Header {
            traffic_class: 0,
            flow_label: Default::default(),
            payload_length: 0,
            next_header: IpNumber(0),
            hop_limit: 64,
            source: [0xfd; 16],
            destination: [0xfe; 16],
        };
        IpHeaders::Ipv6(hdr, exts)
    } else {
        let mut hdr = Ipv4Header::new(0, 64, IpNumber(0), [10, 0, 0, 1], [10, 0, 0, 2]).unwrap();
        hdr.options = s.ipv4_options[..].try_into().unwrap();
        IpHeaders::Ipv4(hdr, Default::default())
    };
    let step = match s.vlans[..] {
        [] => eth.ip(ip),
        [a] => eth.single_vlan(VlanId::try_new(a).unwrap()).ip(ip),
        [a, b, ..] => eth.double_vlan(VlanId::try_new(a).unwrap(), VlanId::try_new(b).unwrap()).ip(ip),
    };
    let mut out = Vec::new();
    if s.tcp {
        let mut tcp = step.tcp(4000, 80, 0x1000_0000, 65000);
        // The builder takes options as elements; NOPs keep it simple and cover data offsets 5..15.
        let nops: Vec<_> = s.tcp_options.iter().map(|_| etherparse::TcpOptionElement::Noop).collect();
        tcp = tcp.options(&nops).unwrap();
        tcp.write(&mut out, &s.payload).unwrap();
    } else {
        step.udp(5000, 53).write(&mut out, &s.payload).unwrap();
    }
    out
}

fn off(frame: &[u8], part: &[u8]) -> usize {
    part.as_ptr() as usize - frame.as_ptr() as usize
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn parse_agrees_with_etherparse(s in spec()) {
        let frame = build(&s);
        let ours = parse(&frame).unwrap();
        let theirs = SlicedPacket::from_ethernet(&frame).unwrap();

        let tags: Vec<u16> = ours.vlans.as_slice().iter().map(|t| t.vid()).collect();
        let their_tags: Vec<u16> = theirs
            .link_exts
            .iter()
            .filter_map(|e| match e {
                etherparse::LinkExtSlice::Vlan(v) => Some(v.vlan_identifier().value()),
                _ => None,
            })
            .collect();
        prop_assert_eq!(&tags, &their_tags);
        prop_assert_eq!(&tags, &s.vlans);

        let net = theirs.net.as_ref().unwrap();
        let ip_payload = match net {
            etherparse::NetSlice::Ipv4(v4) => {
                prop_assert_eq!(ours.l3, L3::Ipv4);
                prop_assert_eq!(off(&frame, v4.header().slice()), ours.l3_offset);
                prop_assert_eq!(v4.header().slice().len(), ours.l3_header_len());
                v4.payload()
            }
            etherparse::NetSlice::Ipv6(v6) => {
                prop_assert_eq!(ours.l3, L3::Ipv6);
                prop_assert_eq!(off(&frame, v6.header().slice()), ours.l3_offset);
                prop_assert_eq!(40 + v6.extensions().slice().len(), ours.l3_header_len());
                v6.payload()
            }
            _ => unreachable!("the builder made IP"),
        };
        prop_assert_eq!(ours.ip_protocol, ip_payload.ip_number.0);
        prop_assert_eq!(off(&frame, ip_payload.payload), ours.l4_offset);
        prop_assert_eq!(ours.fragment, None);
        match theirs.transport.as_ref().unwrap() {
            TransportSlice::Tcp(t) => {
                prop_assert_eq!(ours.l4, L4::Tcp);
                prop_assert_eq!(off(&frame, t.slice()), ours.l4_offset);
                prop_assert_eq!(off(&frame, t.payload()), ours.payload_offset);
                prop_assert_eq!(off(&frame, t.payload()) + t.payload().len(), ours.end);
            }
            TransportSlice::Udp(u) => {
                prop_assert_eq!(ours.l4, L4::Udp);
                prop_assert_eq!(off(&frame, u.slice()), ours.l4_offset);
                prop_assert_eq!(off(&frame, u.payload()), ours.payload_offset);
                prop_assert_eq!(off(&frame, u.payload()) + u.payload().len(), ours.end);
            }
            other => prop_assert!(false, "unexpected transport {:?}", other),
        }
        prop_assert_eq!(&frame[ours.payload_offset..ours.end], &s.payload[..]);
        // etherparse's builder fills in the transport checksum: ours must verify it.
        prop_assert_eq!(ours.verify_l4_checksum(&frame), Some(true));
    }

    /// Random bytes, and random truncations of valid frames: never a panic, and any layout
    /// returned is ordered and in bounds.
    #[test]
    fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), s in spec(), cut in any::<prop::sample::Index>(), flip in any::<prop::sample::Index>()) {
        let mut frame = build(&s);
        let cut = cut.index(frame.len() + 1);
        frame.truncate(cut);
        if !frame.is_empty() {
            let i = flip.index(frame.len());
            frame[i] ^= 0x5a;
        }
        for f in [&bytes[..], &frame[..]] {
            if let Ok(l) = parse(f) {
                prop_assert!(l.l3_offset <= l.l4_offset);
                prop_assert!(l.l4_offset <= l.payload_offset);
                prop_assert!(l.payload_offset <= l.end);
                prop_assert!(l.end <= f.len());
                let _ = l.verify_l4_checksum(f);
            }
        }
    }
}
