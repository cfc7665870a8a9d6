#!/usr/bin/env python3
"""Writes the hand-made seeds of the offload_* fuzz targets into corpus/offload_*/.

The input formats are documented at the top of common/offload_{parse,meta,gso,gro}.rs.
Seeds are named `seed-*`; inputs kept from fuzzing runs (after a `-merge=1`) have hash
names.
"""
import os
import struct

ACK, PSH, FIN, CWR, ECE, SYN, RST = 0x10, 0x08, 0x01, 0x80, 0x40, 0x02, 0x04
HOP_BY_HOP, ROUTING, FRAGMENT, DEST_OPTS = 0, 43, 44, 60
TS = bytes([1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 8])

SRC4, DST4 = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
SRC6 = bytes([0xfd] + [0] * 14 + [1])
DST6 = bytes([0xfd] + [0] * 14 + [2])


def csum_sum(data):
    """RFC 1071 folded sum (not complemented)."""
    if len(data) % 2:
        data = data + b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def pseudo(v6, proto, l4_len):
    if v6:
        return csum_sum(SRC6 + DST6 + struct.pack("!IxxxB", l4_len, proto))
    return csum_sum(SRC4 + DST4 + struct.pack("!xBH", proto, l4_len))


def frame(v6=False, udp=False, vlans=(), ip_options=b"", ext=(), tcp_options=b"", flags=ACK,
          seq=0x1000_0000, ack=0x2000_0000, ident=0x1234, df=True, payload=b"", csum="full",
          frag=None, padding=0, sport=1000, window=0xffff, proto=None):
    """An Ethernet frame. csum: "full" (verifying), "partial" (pseudo-header sum), "zero"."""
    f = bytearray(b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01")
    for tpid, tci in vlans:
        f += struct.pack("!HH", tpid, tci)
    if proto is None:
        proto = 17 if udp else 6
    if proto == 6:
        l4 = struct.pack("!HHIIBBHHH", sport, 80, seq, ack, ((20 + len(tcp_options)) // 4) << 4, flags,
                         window, 0, 0) + tcp_options
    elif proto == 17:
        l4 = struct.pack("!HHHH", sport, 9, 8 + len(payload), 0)
    else:
        l4 = b""
    l4 = bytearray(l4 + payload)
    if v6:
        hdrs = bytearray()
        for i, kind in enumerate(ext):
            nxt = ext[i + 1] if i + 1 < len(ext) else proto
            if kind == ROUTING:
                hdrs += bytes([nxt, 0, 253, 0, 0, 0, 0, 0])
            elif kind == FRAGMENT:
                off = frag or 0
                hdrs += bytes([nxt, 0]) + struct.pack("!HI", off, 0xcafef00d)
            else:
                hdrs += bytes([nxt, 0, 1, 4, 0, 0, 0, 0])
        first = ext[0] if ext else proto
        f += b"\x86\xdd" + struct.pack("!IHBB", 0x6001_2345, len(hdrs) + len(l4), first, 64) + SRC6 + DST6
        f += hdrs
    else:
        ihl = 20 + len(ip_options)
        flg = (0x4000 if df else 0) | (frag or 0)
        ip = bytearray(struct.pack("!BBHHHBBH", 0x40 | ihl // 4, 0, ihl + len(l4), ident, flg, 64, proto, 0)
                       + SRC4 + DST4 + ip_options)
        ip[10:12] = struct.pack("!H", 0xFFFF ^ csum_sum(bytes(ip)))
        f += b"\x08\x00" + ip
    l4_off = len(f)
    if proto in (6, 17):
        field = 16 if proto == 6 else 6
        p = pseudo(v6, proto, len(l4))
        if csum == "partial":
            l4[field:field + 2] = struct.pack("!H", p)
        elif csum == "full":
            s = csum_sum(struct.pack("!H", p) + bytes(l4))
            c = 0xFFFF ^ s
            l4[field:field + 2] = struct.pack("!H", c or 0xFFFF)
    f += l4 + b"\0" * padding
    return bytes(f), l4_off


def data(n, seed=1):
    x = seed * 2654435761 & 0xFFFFFFFF | 1
    out = bytearray()
    for _ in range(n):
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        out.append((x >> 8) & 0xFF)
    return bytes(out)


NEEDS_CSUM, DATA_VALID, RSC_INFO = 1, 2, 4
G_NONE, G_TCPV4, G_UDP, G_TCPV6, G_UDP_L4, G_ECN = 0, 1, 3, 4, 5, 0x80


def vhdr(flags=0, gso_type=0, hdr_len=0, gso_size=0, start=0, offset=0, num_buffers=0):
    return struct.pack("<BBHHHHH", flags, gso_type, hdr_len, gso_size, start, offset, num_buffers)


def super_frame(gso_size, **kw):
    """(virtio header, frame) of a GSO super-frame with a partial checksum."""
    udp = kw.get("udp", False)
    v6 = kw.get("v6", False)
    f, l4 = frame(csum="partial", **kw)
    kind = G_UDP_L4 if udp else (G_TCPV6 if v6 else G_TCPV4)
    hl = l4 + (8 if udp else 20 + len(kw.get("tcp_options", b"")))
    return vhdr(NEEDS_CSUM, kind, hl, gso_size, l4, 6 if udp else 16), f


QINQ = ((0x88a8, 100), (0x8100, 10))
VLAN = ((0x8100, 0x123),)


def parse_seeds():
    return {
        "seed-tcp4": frame(payload=b"hello")[0],
        "seed-tcp4-qinq-options-padding": frame(vlans=QINQ, ip_options=bytes([0x94, 4, 0, 0]), tcp_options=TS,
                                                payload=b"hello", padding=3)[0],
        "seed-tcp6-ext": frame(v6=True, ext=(HOP_BY_HOP, ROUTING, FRAGMENT, DEST_OPTS), tcp_options=TS,
                               payload=data(40))[0],
        "seed-udp4": frame(udp=True, payload=data(20))[0],
        "seed-udp6-vlan": frame(v6=True, udp=True, vlans=VLAN, payload=data(33), padding=5)[0],
        "seed-ipv4-fragment": frame(udp=True, df=False, frag=0x2000 | 3, payload=data(24))[0],
        "seed-ipv6-fragment": frame(v6=True, ext=(FRAGMENT,), frag=(5 << 3) | 1, payload=data(16))[0],
        "seed-icmp4": frame(proto=1, payload=data(12))[0],
        "seed-arp": bytes(b"\xff" * 6 + b"\x02\0\0\0\0\x01" + b"\x08\x06" + data(28)),
        "seed-tcp4-truncated": frame(tcp_options=TS, payload=b"x")[0][:60],
    }


def meta_seeds():
    h4, f4 = super_frame(1000, payload=data(3000))
    h6, f6 = super_frame(1200, v6=True, ext=(HOP_BY_HOP, DEST_OPTS), tcp_options=TS, payload=data(2500),
                         flags=ACK | CWR)
    hu, fu = super_frame(500, udp=True, vlans=VLAN, payload=data(1400))
    small, l4 = frame(payload=b"hello", csum="partial")
    h6 = bytearray(h6)
    h6[1] |= G_ECN
    # num_buffers: low byte netif tx flags, high byte bit 0 = GSO extra present, >> 1 = type.
    h4n = bytearray(h4)
    h4n[10:12] = bytes([3, (1 << 1) | 1])
    return {
        "seed-tcp4-gso": h4 + f4,
        "seed-tcp4-gso-netif": bytes(h4n) + f4,
        "seed-tcp6-gso-ecn-ext": bytes(h6) + f6,
        "seed-udp4-gso-vlan": hu + fu,
        "seed-partial-no-gso": vhdr(NEEDS_CSUM, 0, 0, 0, l4, 16, 1) + small,
        "seed-data-valid": vhdr(DATA_VALID, 0, 54, 0, 0, 0, 0x0102) + frame(payload=b"hi")[0],
        "seed-rsc": vhdr(DATA_VALID | RSC_INFO, G_TCPV4, 54, 1448, 5, 2) + f4,
        "seed-ufo": vhdr(NEEDS_CSUM, G_UDP, 42, 500, 34, 6) + fu,
        "seed-csum-beyond": vhdr(NEEDS_CSUM, 0, 0, 0, 60, 0xfff0) + small,
    }


# GSO control bits.
PARTIAL, FIX_LEN, FIX_PSEUDO, DERIVE_CSUM, DERIVE_KIND = 1, 2, 4, 8, 16


def gso_seeds():
    out = {}

    def add(name, control, hf):
        out["seed-" + name] = bytes([control]) + hf[0] + hf[1]

    add("tcp4-full", 0, super_frame(1000, payload=data(3000)))
    add("tcp4-partial-resume", PARTIAL | (1 << 5), super_frame(1000, payload=data(3000)))
    add("tcp4-qinq-options-flags", 2 << 5,
        super_frame(536, vlans=QINQ, ip_options=bytes([1, 1, 1, 0]), tcp_options=TS,
                    flags=ACK | PSH | FIN | CWR, ident=0xfffe, seq=0xffff_fe00, payload=data(1500)))
    add("tcp6-ext-short-last", 0,
        super_frame(700, v6=True, ext=(HOP_BY_HOP, ROUTING, DEST_OPTS), payload=data(1500), flags=ACK | PSH))
    add("tcp6-vlan-partial", PARTIAL, super_frame(1000, v6=True, vlans=VLAN, payload=data(2001)))
    add("udp4", 0, super_frame(400, udp=True, payload=data(1000)))
    add("udp6-vlan-partial", PARTIAL, super_frame(300, udp=True, v6=True, vlans=VLAN, payload=data(1000)))
    add("tcp4-mss1", 0, super_frame(1, payload=data(40)))
    # Sloppy: wrong lengths and checksum field, repaired by the control bits.
    h, f = super_frame(100, payload=data(350))
    f = bytearray(f)
    f[16:18] = b"\0\0"
    f[50:52] = b"\xde\xad"
    add("tcp4-fixups", FIX_LEN | FIX_PSEUDO | DERIVE_CSUM | DERIVE_KIND, (vhdr(0, 0, 0, 100), bytes(f)))
    return out


# GRO ops.
RAW_NONE, RAW_VALID, RAW_PARTIAL, FLUSH, NEXT_NONE, NEXT_VALID, NEXT_PARTIAL, RAW_PARTIAL_AT = range(8)


def raw(op, f, mods=0):
    return bytes([op | mods << 3]) + struct.pack("<H", len(f)) + f


def nxt(op, payload, flags=ACK, mods=0):
    return bytes([op | mods << 3]) + struct.pack("<H", payload) + bytes([flags])


def config(flows_code, share_code):
    return bytes([flows_code | share_code << 2])


def gro_seeds():
    mss = 1000
    segs4 = [frame(seq=1000 + i * mss, ident=7 + i, payload=data(mss, i), tcp_options=TS,
                   flags=ACK | (PSH if i == 3 else 0))[0] for i in range(4)]
    segs6 = [frame(v6=True, sport=2000, seq=5 + i * 1200, payload=data(1200, 9 + i))[0] for i in range(3)]
    other = [frame(sport=3000, seq=77 + i * 500, ident=100, payload=data(500, 40 + i), vlans=VLAN)[0]
             for i in range(3)]
    out = {
        "seed-tcp4-flow-psh": config(0, 3) + b"".join(raw(RAW_NONE, s) for s in segs4),
        "seed-interleaved-flows": config(1, 3)
        + b"".join(raw(RAW_NONE, a) + raw(RAW_VALID, b) for a, b in zip(segs4[:3], segs6))
        + bytes([FLUSH]),
        "seed-evict-small-table": config(0, 0)
        + b"".join(raw(RAW_NONE, s) for s in (segs4[0], segs6[0], other[0], segs4[1], segs6[1]))
        + bytes([FLUSH]),
        "seed-next-segments": config(2, 3) + raw(RAW_NONE, segs4[0])
        + b"".join(nxt(NEXT_NONE, mss) for _ in range(5)) + nxt(NEXT_NONE, 10, ACK | PSH),
        "seed-next-to-64k": config(0, 3) + raw(RAW_NONE, segs4[0])
        + b"".join(nxt(NEXT_VALID, mss) for _ in range(70)),
        "seed-next-partial-v6": config(1, 2)
        + raw(RAW_PARTIAL, frame(v6=True, ext=(HOP_BY_HOP,), payload=data(800), csum="partial")[0])
        + b"".join(nxt(NEXT_PARTIAL, 800) for _ in range(4)) + nxt(NEXT_PARTIAL, 800, ACK | FIN),
        "seed-fixed-id": config(0, 3) + raw(RAW_NONE, other[0])
        + nxt(NEXT_NONE, 500, ACK, mods=1) + nxt(NEXT_NONE, 500, ACK, mods=1) + bytes([FLUSH]),
        "seed-flush-reasons": config(3, 1) + raw(RAW_NONE, segs4[0])
        + nxt(NEXT_NONE, mss) + nxt(NEXT_NONE, mss, ACK, mods=4)      # seq gap
        + nxt(NEXT_NONE, mss) + nxt(NEXT_NONE, mss, ACK, mods=8)      # ACK changed
        + nxt(NEXT_NONE, mss) + nxt(NEXT_NONE, mss, ACK, mods=16)     # window changed
        + nxt(NEXT_NONE, mss) + nxt(NEXT_NONE, mss, ACK | CWR)        # CWR
        + nxt(NEXT_NONE, mss) + nxt(NEXT_NONE, mss + 1)               # larger than MSS
        + nxt(NEXT_NONE, mss) + nxt(NEXT_NONE, mss, ACK, mods=2)      # IP ID jump
        + nxt(NEXT_NONE, mss) + nxt(NEXT_NONE, 0)                     # pure ACK
        + nxt(NEXT_NONE, mss) + nxt(NEXT_NONE, mss, ACK | SYN)        # control flag
        + nxt(NEXT_NONE, mss) + nxt(NEXT_NONE, mss - 1) + bytes([FLUSH]),
        "seed-passthrough": config(1, 0) + raw(RAW_NONE, frame(udp=True, payload=data(100))[0])
        + raw(RAW_NONE, segs4[0]) + raw(RAW_NONE, frame(ip_options=bytes([1, 1, 1, 0]), payload=data(10))[0])
        + raw(RAW_NONE, bytes(bytearray(segs4[1])[:-1]) + b"\x00")  # bad TCP checksum
        + bytes([RAW_PARTIAL_AT]) + struct.pack("<HHH", 34, 6, len(segs4[2])) + segs4[2]
        + raw(RAW_NONE, b"\x01\x02\x03")
        + raw(RAW_NONE, frame(df=False, frag=0x2000, payload=data(64))[0]),
        "seed-fixups": config(0, 3) + raw(RAW_NONE, bytes(bytearray(segs4[0])[:-200]), mods=1 | 2 | 4)
        + nxt(NEXT_NONE, 800) + nxt(NEXT_NONE, 800),
    }
    return out


def main():
    base = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
    for target, seeds in [("offload_parse", parse_seeds()), ("offload_meta", meta_seeds()),
                          ("offload_gso", gso_seeds()), ("offload_gro", gro_seeds())]:
        out = os.path.join(base, target)
        os.makedirs(out, exist_ok=True)
        for name, blob in seeds.items():
            with open(os.path.join(out, name), "wb") as f:
                f.write(blob)


if __name__ == "__main__":
    main()
