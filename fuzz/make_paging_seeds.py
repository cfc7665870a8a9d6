#!/usr/bin/env python3
"""Writes the hand-made seeds of the paging_mapper fuzz target into corpus/paging_mapper/.

The input format is documented at the top of common/paging_mapper.rs. Seeds are named
`seed-*`; inputs kept from fuzzing runs (after a `-merge=1` run) have hash names.
"""
import os
import struct

MAP, UNMAP, PROTECT, PROMOTE, TRANSLATE, SCRIBBLE, MAP_PAGE = range(7)
W, U, PWT, PCD, PAT, G, NX, D = (1 << i for i in range(8))


def cfg(five=False, max_size=2, upper=False):
    return [int(five) | (max_size << 1) | (int(upper) << 3)]


def pos(page):
    return list(struct.pack("<I", page))


def pages(n):
    if 1 <= n <= 64:
        return [n - 1]
    if n % 512 == 0 and 1 <= n // 512 <= 64:
        return [0x3F + n // 512]
    if n % 32768 == 0 and 1 <= n // 32768 <= 64:
        return [0x7F + n // 32768]
    return [0xFF] + list(struct.pack("<I", n))


def map_range(start, n, delta=0, flags=W):
    return [MAP] + pos(start) + pages(n) + [delta, flags]


def unmap(start, n):
    return [UNMAP] + pos(start) + pages(n)


def protect(start, n, flags):
    return [PROTECT] + pos(start) + pages(n) + [flags]


def promote(start, one_gib=False):
    return [PROMOTE, int(one_gib)] + pos(start)


def translate(page):
    return [TRANSLATE] + pos(page)


def scribble(frame, index, value):
    return [SCRIBBLE] + list(struct.pack("<HHQ", frame, index, value))


def map_page(start, size, delta=0, flags=W):
    return [MAP_PAGE] + pos(start) + [size, delta, flags]


GIB = 262144
SEEDS = {
    # 1 GiB + 2 MiB + 4 KiB, then a hole punched into each size, then promoted back.
    "mixed-sizes": cfg() + map_range(GIB - 2, 2 + GIB + 512 + 1) + unmap(GIB + 100, 1) + unmap(2 * GIB + 3, 1)
    + map_range(GIB + 100, 1, 0, W) + promote(GIB) + translate(GIB + 100),
    # 511 + 1 pages (4 KiB leaves) promoted to 2 MiB; 511 + 1 x 2 MiB promoted to 1 GiB.
    "promote-chain": cfg() + map_range(GIB, 511, 0, W | G) + map_range(GIB + 511, 1, 0, W | G | D) + promote(GIB)
    + map_range(GIB + 512, GIB - 1024, 0, W | G) + map_range(2 * GIB - 512, 512, 0, W | G) + promote(GIB, True)
    + translate(GIB + 77) + promote(GIB) + protect(GIB + 5, 1, 0) + promote(GIB) + promote(GIB, True),
    # protect partial superpages: splits at both ends, NX and read-only, then unmap all.
    "protect-splits": cfg() + map_range(0, GIB) + protect(1000, 3000, NX) + protect(GIB - 7, 7, 0)
    + translate(999) + translate(1000) + unmap(0, GIB),
    # 4 KiB pages only: runs out of table frames and must undo.
    "out-of-frames": cfg(max_size=0) + map_range(0, 4 * GIB - 1, 0, W) + translate(5),
    # already mapped, exactly at a superpage edge.
    "overlap": cfg(max_size=1) + map_range(512, 512) + map_range(1000, 100) + map_range(1024, 1),
    # 5-level, upper half.
    "five-level-upper": cfg(five=True, upper=True) + map_range(3, GIB) + unmap(GIB // 2, 600) + promote(0, True),
    # a 4-level upper-half window ending at the top of the address space.
    "top-of-va": cfg(upper=True) + map_range((1 << 20) - 600, 600, 0, G | NX) + unmap((1 << 20) - 1, 1),
    # scribbles: a misaligned 1 GiB leaf in the root's child, a self-pointer, garbage.
    "scribbles": cfg() + map_range(0, 1024) + scribble(1, 5, (1 << 30) | (1 << 21) | 0x83)
    + scribble(2, 0, 0x0000 | 0x7) + scribble(0, 1, 0xFFFF_FFFF_FFFF_FFFF) + translate(5 * GIB // 4)
    + unmap(0, 1 << 20),
    # map_page with every size and misaligned frames.
    "map-page": cfg() + map_page(GIB, 2) + map_page(2 * GIB, 1, 3) + map_page(3 * GIB, 0, 5) + map_page(GIB + 5, 0),
}

here = os.path.dirname(os.path.abspath(__file__))
out = os.path.join(here, "corpus", "paging_mapper")
os.makedirs(out, exist_ok=True)
for name, data in SEEDS.items():
    with open(os.path.join(out, "seed-" + name), "wb") as f:
        f.write(bytes(data))
print(f"wrote {len(SEEDS)} seeds to {out}")
