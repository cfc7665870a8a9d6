#!/usr/bin/env python3
"""Writes the hand-made seeds of the grant_broker fuzz target into corpus/grant_broker/.

The input format is documented at the top of common/grant_broker.rs. Seeds are named
`seed-*`; inputs kept from fuzzing runs (after a `-merge=1` run) have hash names.
"""
import os
import struct

COPY, MAP, UNMAP, MWRITE, MREAD, GRANT, END, HOSTILE, GWRITE = range(9)
# Callers, grantee selectors, granting-domain selectors.
C_BACK, C_OTHER, C_GUEST = 0, 2, 3
D_BACK, D_OTHER, D_GUEST, D_SELF, D_WILD = 0, 4, 5, 6, 7
G_GUEST, G_BACK, G_UNKNOWN = 0, 6, 7
PERMIT, ACCEPT, TRANSITIVE, READONLY = 1, 2, 3, 4
BIG_FRAME = 0xF0

def u16(v):
    return list(struct.pack("<H", v))

def gref(g):
    if g < 72:
        return [g]
    assert 508 <= g <= 563
    return [200 + g - 508]

def offset(o):
    if o % 32 == 0 and o < 4096:
        return [o // 32]
    if 4033 <= o <= 4096:
        return [0x80 + 4096 - o]
    return [0xFF] + u16(o)

def length(n):
    return [n] if n < 128 else [0xFF] + u16(n)

def ptr(g, off, granter=G_GUEST):
    return [granter] + gref(g) + offset(off)

def op(src=None, dst=None, n=0, short=False, fill=0x11):
    kind = (1 if src else 0) | (2 if dst else 0) | (4 if short else 0)
    return [kind] + (src or []) + (dst or []) + length(n) + [fill]

def copy(caller, *ops):
    assert 1 <= len(ops) <= 8
    return [COPY, caller, len(ops) - 1] + [b for o in ops for b in o]

def map_(g, write, caller=C_BACK, granter=G_GUEST):
    return [MAP, caller, granter] + gref(g) + [1 if write else 0]

def unmap(k=0):
    return [UNMAP, k]

def mwrite(k, off, n, byte):
    return [MWRITE, k] + offset(off) + length(n) + [byte]

def mread(k, off, n):
    return [MREAD, k] + offset(off) + length(n)

def grant(domid, frame, ro):
    return [GRANT, domid, frame, 1 if ro else 0]

def end(g):
    return [END] + gref(g)

def raw(slot, flags, domid, frame):
    s = slot if slot < 8 else slot - 32 + 8
    return [s] + u16(flags) + [domid, frame]

def hostile(slot, flags, domid, frame):
    return [HOSTILE] + raw(slot, flags, domid, frame)

def gwrite(frame, off, n, byte):
    return [GWRITE, frame] + offset(off) + [n, byte]

def setup(frames, *entries):
    return [frames - 1, len(entries)] + [b for e in entries for b in e]

# Table grants come out as refs 8, 9, 10, ... in order.
SEEDS = {
    "seed-honest-netback": setup(4)
    + grant(D_BACK, 1, False) + grant(D_BACK, 2, True) + gwrite(2, 0, 60, 0x42)
    + copy(C_BACK,
           op(src=ptr(9, 0), n=54),                      # tx header copy out
           op(dst=ptr(8, 64), n=127),                    # rx copy in
           op(dst=ptr(9, 0), n=4),                       # into a read-only grant
           op(src=ptr(9, 32), dst=ptr(8, 1024), n=100),  # grant to grant
           op(src=ptr(8, 0), dst=ptr(8, 32), n=96))      # overlapping, same grant
    + map_(8, True) + map_(9, False) + end(8) + end(9)
    + mwrite(0, 4000, 96, 0x77) + mwrite(1, 0, 4, 0x66) + mread(0, 4064, 32) + mread(1, 4090, 7)
    + unmap(0) + end(8) + unmap(0) + end(8) + end(9),
    "seed-full-pages": setup(2)
    + grant(D_BACK, 0, False) + grant(D_BACK, 1, True)
    + copy(C_BACK, op(src=ptr(9, 0), n=4096), op(dst=ptr(8, 0), n=4096),
           op(src=ptr(9, 0), dst=ptr(8, 0), n=4096), op(dst=ptr(8, 0), n=4096, short=True),
           op(n=3000), op(n=4097), op(src=ptr(9, 1), n=4096)),
    "seed-edges": setup(1)
    + grant(D_BACK, 0, False)
    + copy(C_BACK, op(src=ptr(8, 4095), n=1), op(src=ptr(8, 4095), n=2), op(dst=ptr(8, 4096), n=0),
           op(dst=ptr(8, 4096), n=1), op(src=ptr(8, 0xFFFF), n=0xFFFF), op(dst=ptr(8, 4000), n=96),
           op(dst=ptr(8, 4001), n=96), op(src=ptr(8, 0), n=0)),
    "seed-wrong-parties": setup(3)
    + grant(D_OTHER, 0, False) + grant(D_BACK, 1, False)
    + copy(C_BACK, op(src=ptr(8, 0), n=8), op(src=ptr(9, 0, G_UNKNOWN), n=8),
           op(src=ptr(9, 0, G_BACK), n=8), op(src=ptr(600 - 92, 0), n=8), op(src=ptr(40, 0), n=8))
    + copy(C_OTHER, op(src=ptr(8, 0), n=8), op(dst=ptr(9, 0), n=8))
    + map_(8, False, C_OTHER) + map_(8, False, C_BACK) + map_(8, True, C_OTHER)
    + copy(C_BACK, op(src=ptr(8, 0), n=8)) + unmap(0) + unmap(0) + end(8),
    "seed-xsa224-repeated-maps": setup(4)
    + grant(D_BACK, 3, False)
    + map_(8, False) + map_(8, True) + map_(8, True) + map_(8, False) + end(8)
    + unmap(1) + end(8) + unmap(1) + end(8) + unmap(0) + end(8) + unmap(0) + end(8)
    + map_(8, False),
    "seed-upgrade-through-entry": setup(2, raw(0, PERMIT, D_BACK, 1), raw(1, PERMIT | READONLY, D_BACK, 0))
    + map_(0, False) + hostile(0, PERMIT, D_OTHER, 0) + map_(0, True) + map_(0, False)
    + hostile(0, PERMIT | READONLY, D_BACK, 0) + map_(0, True) + hostile(0, PERMIT, D_BACK, 0)
    + map_(0, True) + mwrite(2, 0, 64, 0x99) + map_(1, False) + map_(1, True)
    + copy(C_BACK, op(dst=ptr(1, 0), n=8), op(src=ptr(0, 0), dst=ptr(1, 0), n=8))
    + unmap(0) + unmap(0) + unmap(0) + unmap(0),
    "seed-table-full": setup(1)
    + [b for i in range(25) for b in grant(D_BACK, i % 3, i % 2 == 1)]
    + end(8) + end(31) + grant(D_BACK, 0, False) + grant(D_BACK, 0, False) + end(3) + end(70),
    "seed-guest-writes-under-map": setup(2)
    + grant(D_BACK, 1, True) + map_(8, False) + gwrite(1, 100, 50, 0xEE) + mread(0, 96, 64)
    + copy(C_BACK, op(src=ptr(8, 96), n=64)) + unmap(0) + end(8)
    + copy(C_BACK, op(src=ptr(8, 96), n=64)),
}

def raw_entries_seed():
    entries = [raw(0, PERMIT, D_BACK, 0), raw(1, PERMIT | READONLY, D_BACK, 1),
               raw(2, TRANSITIVE, D_BACK, 0), raw(3, ACCEPT, D_BACK, 0), raw(4, PERMIT, D_BACK, 3),
               raw(5, PERMIT, D_BACK, BIG_FRAME), raw(32, PERMIT | 0xE0, D_WILD, 0),
               raw(33, PERMIT | 0x100, D_SELF, 1), raw(63, PERMIT | 0x18, D_BACK, 1)]
    data = setup(2, *entries)
    for g in [0, 1, 2, 3, 4, 5, 32, 33, 63]:
        data += map_(g, False) + map_(g, True)
    data += copy(C_BACK, *[op(src=ptr(g, 0), dst=ptr(0, 8), n=8) for g in [1, 2, 3, 4, 5, 32, 33, 63]])
    return data + [UNMAP, 0] * 12

SEEDS["seed-raw-entries"] = raw_entries_seed()

def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "grant_broker")
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(bytes(data))

if __name__ == "__main__":
    main()
