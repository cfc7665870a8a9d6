#!/usr/bin/env python3
"""Writes the hand-made seeds of the `virtio_device` fuzz target into corpus/virtio_device/.

The input format is documented at the top of common/virtio_device.rs. Each seed is honest
traffic or one hostile driver trick the device must turn into an error value.
"""
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "virtio_device")

A_BASE, B_BASE, TABLES = 0x0, 0x10000, 0x1000
NEXT, WRITE, INDIRECT = 1, 2, 4


def cfg(size_log2, event_idx=False, indirect=False, segs=5, cap=0):
    """Header: queue size, features, SEGS index (5 => 16 segments), chain byte cap byte."""
    return bytes([size_log2 | (8 if event_idx else 0) | (16 if indirect else 0) | segs << 5, cap])


def add(nr, nw, length=40, off=0, ind=False):
    return bytes([0, nr | nw << 2 | (0x10 if ind else 0), length, off])


PUBLISH, POP, PUSH, ENABLE, DISABLE, RECLAIM, PENDING = (bytes([x]) for x in (1, 2, 6, 7, 8, 13, 15))


def pops(n):
    return bytes([3, n])


def used(pick=0, frac=255):
    return bytes([4, pick, frac])


def used_any(head, length):
    return bytes([5]) + struct.pack("<HI", head, length)


def avail_idx_abs(v):
    return bytes([9, 0]) + struct.pack("<H", v)


def avail_idx_rel(kind, delta):
    """kind 1: next_avail + delta; 2: next_avail + size + delta; 3: current idx + delta."""
    return bytes([9, kind, delta & 0xFF])


def addr_a(off):
    return bytes([1]) + struct.pack("<H", off)


def addr_b(off):
    return bytes([2]) + struct.pack("<H", off)


def addr_abs(v):
    return bytes([0]) + struct.pack("<Q", v)


def len_u8(v):
    return bytes([1, v])


def len_u32(v):
    return bytes([0]) + struct.pack("<I", v)


def next_u8(v):
    return bytes([0, v])


def desc(i, addr, length, flags, nxt=next_u8(0)):
    return bytes([11, i]) + addr + length + bytes([flags]) + nxt


def ind_desc(table, entry, addr, length, flags, nxt=next_u8(0)):
    return bytes([14, table, entry]) + addr + length + bytes([flags]) + nxt


def avail_entry(slot, head):
    return bytes([12, slot]) + struct.pack("<H", head)


def scribble(off, data):
    return bytes([10]) + struct.pack("<H", off) + bytes([len(data)]) + data


def hostile_chain(*descs, head=0):
    """Descriptors written raw, head put in avail slot 0, avail idx 1, then a pop."""
    return b"".join(descs) + avail_entry(0, head) + avail_idx_abs(1) + POP


SEEDS = {
    # Honest traffic.
    "seed-honest-small": cfg(2) + add(1, 1) + add(2, 0) + add(0, 2) + PUBLISH + pops(3)
    + used(0) + used(0) + used(0) + PUSH + RECLAIM + ENABLE,
    "seed-honest-event-idx": cfg(4, event_idx=True) + (add(1, 2, 100) + PUBLISH + ENABLE + POP + used() + PUSH
                                                     + RECLAIM) * 20,
    "seed-honest-indirect": cfg(3, indirect=True) + (add(2, 2, 77, 5, ind=True) + add(1, 0, 9)) * 3 + PUBLISH
    + pops(7) + used(1) + used(0) + PUSH + RECLAIM + (used(0)) * 4 + PUSH + RECLAIM,
    "seed-honest-wrap": cfg(0, event_idx=True) + (add(1, 0, 3) + PUBLISH + POP + used() + PUSH + RECLAIM) * 70,
    "seed-honest-full": cfg(7, event_idx=True, indirect=True) + add(3, 3, 255, 1) * 40 + PUBLISH + pops(7) * 6
    + used(3, 100) * 40 + PUSH + RECLAIM + DISABLE + ENABLE + PENDING,
    # Avail idx: overflow by one, far ahead, rewound.
    "seed-avail-overflow-by-one": cfg(3) + avail_idx_rel(2, 1) + PENDING + POP + ENABLE,
    "seed-avail-overflow-by-one-pop": cfg(3) + avail_idx_rel(2, 1) + POP + POP + PENDING + ENABLE,
    "seed-avail-at-limit": cfg(3) + avail_idx_rel(2, 0) + pops(7) + pops(3) + PENDING,
    "seed-avail-far": cfg(4, event_idx=True) + avail_idx_abs(0x8000) + ENABLE + POP,
    "seed-avail-rewound": cfg(3) + add(1, 0) * 3 + PUBLISH + PENDING + POP + avail_idx_rel(3, -2) + PENDING + POP,
    # Chains that break a rule.
    "seed-loop": cfg(3) + hostile_chain(desc(0, addr_b(0), len_u8(8), NEXT, next_u8(1)),
                                        desc(1, addr_b(64), len_u8(8), NEXT, next_u8(0))),
    "seed-self-loop": cfg(7, segs=7) + hostile_chain(desc(5, addr_b(0), len_u8(8), NEXT, next_u8(5)), head=5),
    "seed-huge-len": cfg(3) + hostile_chain(desc(0, addr_b(0), len_u32(0xFFFF_FFF0), NEXT, next_u8(1)),
                                            desc(1, addr_b(0), len_u32(0x20), 0)),
    "seed-over-cap": cfg(3, cap=1) + hostile_chain(desc(0, addr_b(0), len_u32(4097), 0)),
    "seed-readable-after-writable": cfg(3) + hostile_chain(desc(0, addr_b(0), len_u8(8), WRITE | NEXT, next_u8(1)),
                                                           desc(1, addr_b(64), len_u8(8), 0)),
    "seed-next-out-of-range": cfg(2) + hostile_chain(desc(0, addr_b(0), len_u8(8), NEXT, bytes([1, 0x10, 0]))),
    "seed-head-out-of-range": cfg(3) + avail_entry(0, 0xFFFF) + avail_idx_abs(1) + POP + used_any(0xFFFF, 0) + POP,
    "seed-unmapped": cfg(3) + hostile_chain(desc(0, addr_abs(0x8000), len_u8(8), 0)),
    "seed-crosses-region-end": cfg(3) + hostile_chain(desc(0, bytes([3, 4]), len_u8(8), 0)),
    "seed-addr-overflow": cfg(3) + hostile_chain(desc(0, addr_abs(0xFFFF_FFFF_FFFF_FFF8), len_u8(16), 0)),
    "seed-too-many-segments": cfg(3, segs=0) + hostile_chain(desc(0, addr_b(0), len_u8(8), NEXT, next_u8(1)),
                                                             desc(1, addr_b(64), len_u8(8), WRITE)),
    "seed-indirect-not-negotiated": cfg(3) + hostile_chain(desc(0, addr_a(TABLES), len_u8(32), INDIRECT)),
    "seed-indirect-nested": cfg(3, indirect=True) + hostile_chain(
        ind_desc(0, 0, addr_a(TABLES), len_u8(32), INDIRECT),
        desc(0, addr_a(TABLES), len_u8(32), INDIRECT)),
    "seed-indirect-with-next": cfg(3, indirect=True) + hostile_chain(
        ind_desc(0, 0, addr_b(0), len_u8(8), 0),
        desc(0, addr_a(TABLES), len_u8(16), INDIRECT | NEXT, next_u8(1))),
    "seed-indirect-bad-len": cfg(3, indirect=True) + hostile_chain(desc(0, addr_a(TABLES), len_u8(20), INDIRECT))
    + hostile_chain(desc(1, addr_a(TABLES), len_u8(0), INDIRECT), head=1),
    "seed-indirect-loop": cfg(3, indirect=True) + hostile_chain(
        ind_desc(0, 0, addr_b(0), len_u8(8), NEXT, next_u8(1)),
        ind_desc(0, 1, addr_b(0), len_u8(8), NEXT, next_u8(0)),
        desc(0, addr_a(TABLES), len_u8(32), INDIRECT)),
    "seed-indirect-huge-table": cfg(3, indirect=True) + hostile_chain(desc(0, addr_b(0), len_u32(0x100000), INDIRECT)),
    "seed-indirect-after-direct": cfg(3, indirect=True) + hostile_chain(
        ind_desc(0, 0, addr_b(0), len_u8(8), WRITE),
        desc(0, addr_b(0x100), len_u8(8), NEXT, next_u8(1)),
        desc(1, addr_a(TABLES), len_u8(16), INDIRECT | WRITE)) + used(0) + PUSH,
    # Stray writes and returns.
    "seed-scribble-rings": cfg(4, event_idx=True) + add(1, 1) * 4 + PUBLISH + scribble(0x800, bytes(range(16)))
    + pops(5) + scribble(0xA00, b"\xff" * 16) + used(0) + PUSH + RECLAIM,
    "seed-used-wild-head": cfg(3) + add(1, 1) + PUBLISH + POP + used_any(5, 1000) + PUSH + RECLAIM + used_any(9, 0),
    "seed-rewrite-after-publish": cfg(3) + add(2, 1) + PUBLISH + desc(0, addr_b(0), len_u8(8), 0) + POP + used(0)
    + PUSH + RECLAIM,
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for name in os.listdir(OUT):
        if name.startswith("seed-"):
            os.remove(os.path.join(OUT, name))
    for name, data in SEEDS.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    print(f"wrote {len(SEEDS)} seeds to {OUT}")


if __name__ == "__main__":
    main()
