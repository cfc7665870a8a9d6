//! Harness of the `offload_parse` fuzz target: [`parse`] on arbitrary bytes.
//!
//! Shared by `fuzz/fuzz_targets/offload_parse.rs` (libFuzzer) and the stable replay test
//! `offload/tests/fuzz_replay.rs` (`#[path = ...] mod`); uses nothing but `pvio_offload` and
//! `std`.
//!
//! # Input format
//!
//! The whole input is one Ethernet frame.
//!
//! # Invariants checked (a failed `assert!` is a finding)
//!
//! - `parse` never panics and is deterministic; an error formats;
//! - `l3_offset <= l4_offset <= payload_offset <= end <= frame.len()`, and `l3_offset` is the
//!   Ethernet header plus 4 bytes per VLAN tag (at most two, each a VLAN TPID);
//! - every header view's `new_checked` succeeds at the layout's offsets and agrees with it:
//!   Ethernet, each VLAN tag (TCI, TPID chain), IPv4 (header length, protocol, total length,
//!   fragment), IPv6 (payload length), TCP (header length), UDP (length = `end - l4_offset`);
//!   accessors and the TCP option iterator do not panic;
//! - a non-IP frame has no L4 and `end == frame.len()`; a fragment has no transport header;
//! - link-layer padding does not matter: the frame cut where its IP header says the packet
//!   ends parses to the same layout;
//! - `pseudo_header_sum` is `Some` exactly for TCP/UDP, and `verify_l4_checksum` does not
//!   panic (and, after the checksum is filled in, verifies).

use pvio_offload::ether::{self, ethertype};
use pvio_offload::parse::Fragment;
use pvio_offload::{checksum, ipv4, ipv6, parse, tcp, udp, Layout, L3, L4};

pub fn run(frame: &[u8]) {
    let layout = parse(frame);
    assert_eq!(layout, parse(frame), "parse is not deterministic");
    let l = match layout {
        Ok(l) => l,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    check_layout(frame, &l);
}

fn check_layout(frame: &[u8], l: &Layout) {
    let len = frame.len();
    assert!(
        l.l3_offset <= l.l4_offset && l.l4_offset <= l.payload_offset && l.payload_offset <= l.end,
        "offsets out of order: {l:?}"
    );
    assert!(l.end <= len, "end {} beyond the {len}-byte frame", l.end);
    let _ = (l.l2_len(), l.l3_header_len(), l.l4_header_len(), l.header_len(), l.payload_len(), l.l4_len());

    // Ethernet and tags.
    let eth = ether::EthernetFrame::new_checked(frame).expect("parsed frame has an Ethernet header");
    let tags = l.vlans.as_slice();
    assert!(tags.len() <= ether::MAX_VLAN_TAGS);
    assert_eq!(l.l3_offset, ether::HEADER_LEN + tags.len() * ether::VLAN_HEADER_LEN);
    let mut ty = eth.ethertype();
    for (i, tag) in tags.iter().enumerate() {
        assert!(ethertype::is_vlan_tpid(ty) && tag.tpid == ty, "tag {i} TPID");
        let at = ether::HEADER_LEN + i * ether::VLAN_HEADER_LEN;
        let v = ether::VlanHeader::new_checked(&frame[at..]).expect("parsed VLAN tag");
        assert_eq!(v.tci(), tag.tci);
        let _ = (tag.pcp(), tag.dei(), tag.vid());
        ty = v.ethertype();
    }
    assert!(!ethertype::is_vlan_tpid(ty) || tags.len() == ether::MAX_VLAN_TAGS);

    let ip_end = match l.l3 {
        L3::Other(t) => {
            assert_eq!(t, ty);
            assert!(t != ethertype::IPV4 && t != ethertype::IPV6);
            assert_eq!(
                (l.l4, l.l4_offset, l.payload_offset, l.end),
                (L4::None, l.l3_offset, l.l3_offset, len)
            );
            assert_eq!(l.fragment, None);
            assert_eq!(l.pseudo_header_sum(frame), None);
            return;
        }
        L3::Ipv4 => {
            assert_eq!(ty, ethertype::IPV4);
            let ip = ipv4::Packet::new_checked(&frame[l.l3_offset..]).expect("parsed IPv4 header");
            assert_eq!(ip.version(), 4);
            assert_eq!(ip.header_len(), l.l3_header_len());
            assert_eq!(ip.protocol(), l.ip_protocol);
            let _ = (ip.dscp(), ip.ecn(), ip.ttl(), ip.options(), ip.verify_checksum(), ip.payload());
            let frag = ip.is_fragment().then(|| Fragment {
                offset: ip.frag_offset(),
                more: ip.more_frags(),
                ident: u32::from(ip.ident()),
            });
            assert_eq!(l.fragment, frag);
            l.l3_offset + usize::from(ip.total_len())
        }
        L3::Ipv6 => {
            assert_eq!(ty, ethertype::IPV6);
            let ip = ipv6::Packet::new_checked(&frame[l.l3_offset..]).expect("parsed IPv6 header");
            assert_eq!(ip.version(), 6);
            assert!(l.l3_header_len() >= ipv6::HEADER_LEN);
            let _ = (ip.traffic_class(), ip.flow_label(), ip.hop_limit(), ip.payload());
            l.l3_offset + ipv6::HEADER_LEN + usize::from(ip.payload_len())
        }
    };
    assert!(ip_end <= len && l.end <= ip_end, "IP end {ip_end}, layout end {}", l.end);
    assert!(l.l4_offset <= ip_end);

    let l4 = &frame[l.l4_offset..l.end];
    match l.l4 {
        L4::Tcp => {
            assert_eq!((l.fragment, l.ip_protocol, l.end), (None, 6, ip_end));
            let t = tcp::Packet::new_checked(l4).expect("parsed TCP header");
            assert_eq!(t.header_len(), l.l4_header_len());
            let _ = (t.src_port(), t.dst_port(), t.seq_number(), t.ack_number(), t.flags());
            let _ = (t.window_len(), t.checksum(), t.urgent_at(), t.payload());
            assert!(t.option_iter().take(64).count() <= 40, "more TCP options than bytes");
        }
        L4::Udp => {
            assert_eq!((l.fragment, l.ip_protocol), (None, 17));
            let u = udp::Packet::new_checked(l4).expect("parsed UDP header");
            assert_eq!(l.l4_header_len(), udp::HEADER_LEN);
            assert_eq!(usize::from(u.len()), l.l4_len());
            let _ = (u.src_port(), u.dst_port(), u.checksum(), u.payload());
        }
        L4::Other(p) => {
            assert!(p == l.ip_protocol && (l.fragment.is_some() || !matches!(p, 6 | 17)));
            assert_eq!((l.payload_offset, l.end), (l.l4_offset, ip_end));
        }
        L4::None => panic!("IP packet without an L4 verdict: {l:?}"),
    }

    // Padding after the IP packet changes nothing.
    let cut = parse(&frame[..ip_end]);
    assert_eq!(cut.as_ref(), Ok(l), "cutting the padding changed the layout");

    let pseudo = l.pseudo_header_sum(frame);
    assert_eq!(pseudo.is_some(), matches!(l.l4, L4::Tcp | L4::Udp));
    let _ = l.verify_l4_checksum(frame);
    if let Some(pseudo) = pseudo {
        // Fill in the checksum and it verifies.
        let field = l.l4_offset + if l.l4 == L4::Tcp { tcp::CHECKSUM_OFFSET } else { udp::CHECKSUM_OFFSET };
        let mut f = frame[..ip_end].to_vec();
        f[field..field + 2].copy_from_slice(&pseudo.to_be_bytes());
        checksum::complete_partial(&mut f[..l.end], l.l4_offset, field - l.l4_offset)
            .expect("field within frame");
        assert_eq!(parse(&f).as_ref(), Ok(l), "filling the checksum changed the layout");
        assert_eq!(l.verify_l4_checksum(&f), Some(true), "a filled-in checksum does not verify");
    }
}
