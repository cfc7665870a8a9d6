#!/usr/bin/env python3
"""Writes the hand-made seeds of the xen_back_ring fuzz target into corpus/xen_back_ring/.

The input format is documented at the top of common/xen_back_ring.rs. Seeds are named
`seed-*`; inputs kept from fuzzing runs (after `cargo fuzz cmin`) have hash names.
"""
import os
import struct

# Geometry bytes (indices into REGION_LENS).
TOO_SMALL, ONE, TWO, FOUR, EIGHT, SIXTEEN, PAGE, TWO_PAGES, FOUR_PAGES = 0, 1, 2, 4, 5, 7, 9, 10, 11

# Opcodes.
F_QUEUE, F_PUSH, F_POP, F_FINAL = 0, 1, 2, 3
W_REQ_PROD, W_WORD, W_BYTES = 4, 5, 6
B_POP, B_POP_BATCH, B_QUEUE_RSP, B_PUSH_RSP, B_FINAL, B_UNCONSUMED, B_POP_MANY = 7, 8, 9, 10, 11, 12, 13
F_QUEUE_PUSH, W_SLOT = 14, 15

# Counts: small n (0..=3), or the ring size plus d (d in -1..=2).
def small(n):
    assert 0 <= n <= 3
    return n

def near_size(d):
    assert -1 <= d <= 2
    return 64 + d + 1

def frac(x):
    """(x & 127) % (size + 3)"""
    return 128 | (x & 127)

def i8(d):
    return d & 0xff

# Wild values.
def absolute(v):
    return [0] + list(struct.pack("<I", v & 0xFFFFFFFF))

def from_cons(d):
    return [1, i8(d)]

def from_limit(d):
    return [2, i8(d)]

def from_front(d):
    return [3, i8(d)]

def from_current(d):
    return [4, i8(d)]

def start_zero():
    return [0]

def start_near_wrap(below_max):
    return [1, below_max]

def start_at(v):
    return [2] + list(struct.pack("<I", v))

def cycle(n):
    """Honest round trip of n (0..=3) requests."""
    return [F_QUEUE_PUSH, small(n), B_POP_BATCH, small(3), B_QUEUE_RSP, small(3), 1,
            B_PUSH_RSP, F_POP, small(3), F_FINAL, B_FINAL]

SEEDS = {
    "seed-honest-page": [PAGE] + start_zero()
    + [F_QUEUE_PUSH, small(3), B_POP, B_POP_BATCH, small(2), B_QUEUE_RSP, small(3), 1, B_PUSH_RSP,
       F_POP, small(3), F_FINAL, B_FINAL, F_QUEUE_PUSH, small(1), B_FINAL, B_POP_MANY, small(3),
       B_QUEUE_RSP, small(1), 0, B_PUSH_RSP, B_UNCONSUMED],
    "seed-honest-one-entry": [ONE] + start_zero() + cycle(1) * 4
    + [F_QUEUE, near_size(2), F_PUSH, B_POP_MANY, near_size(1)],
    "seed-honest-fill-two-pages": [TWO_PAGES] + start_zero()
    + [F_QUEUE, near_size(1), F_PUSH, B_POP_BATCH, near_size(0), B_QUEUE_RSP, near_size(2), 1,
       B_PUSH_RSP, F_POP, near_size(0), F_QUEUE_PUSH, near_size(0), B_POP_BATCH, near_size(0)],
    "seed-honest-wrap": [FOUR] + start_near_wrap(2) + cycle(3) * 3 + cycle(2) * 2,
    "seed-honest-wrap-four-pages": [FOUR_PAGES] + start_at(0xFFFF_FF00)
    + [F_QUEUE_PUSH, near_size(0), B_POP_BATCH, near_size(0), B_QUEUE_RSP, near_size(0), 1,
       B_PUSH_RSP, F_POP, near_size(0), F_QUEUE_PUSH, frac(100), B_POP_MANY, frac(100)],
    "seed-too-small": [TOO_SMALL] + start_zero() + cycle(1),
    "seed-overflow-limit": [EIGHT] + start_zero() + cycle(2)
    + [W_REQ_PROD] + from_limit(1) + [B_POP, B_UNCONSUMED, B_FINAL, B_POP_BATCH, small(3)],
    "seed-overflow-exact-limit-ok": [EIGHT] + start_zero()
    + [W_REQ_PROD] + from_limit(0) + [B_POP_BATCH, near_size(1), B_QUEUE_RSP, small(1), 1,
                                       B_PUSH_RSP, W_REQ_PROD] + from_limit(0) + [B_POP, B_POP],
    "seed-overflow-absolute": [PAGE] + start_zero()
    + [F_QUEUE_PUSH, small(2), W_REQ_PROD] + absolute(0xDEADBEEF) + [B_POP, B_POP, B_UNCONSUMED],
    "seed-overflow-near-wrap": [TWO] + start_near_wrap(0)
    + [F_QUEUE_PUSH, small(2), B_POP, W_REQ_PROD] + from_cons(3) + [B_POP_BATCH, small(3)],
    "seed-rewind-behind-cons": [SIXTEEN] + start_zero()
    + [F_QUEUE_PUSH, small(3), B_POP_BATCH, small(3), W_REQ_PROD] + from_cons(-2)
    + [B_POP, B_FINAL, B_UNCONSUMED],
    "seed-rewind-behind-seen": [SIXTEEN] + start_zero()
    + [F_QUEUE_PUSH, small(3), B_POP, W_REQ_PROD] + from_front(-2) + [B_UNCONSUMED, B_POP, B_POP],
    "seed-latch-then-pop": [PAGE] + start_zero()
    + [F_QUEUE_PUSH, small(3), B_POP, W_REQ_PROD] + absolute(1000)
    + [B_POP_BATCH, frac(8), B_POP, B_POP_BATCH, small(1), B_POP_BATCH, small(0), B_POP, B_POP,
       B_QUEUE_RSP, small(3), 1, B_PUSH_RSP],
    "seed-publish-fewer": [EIGHT] + start_zero()
    + [F_QUEUE, small(3), W_REQ_PROD] + from_front(-2) + [B_POP_BATCH, small(3), F_PUSH,
                                                           B_POP_BATCH, small(3), B_UNCONSUMED],
    "seed-republish-same": [EIGHT] + start_zero()
    + [F_QUEUE_PUSH, small(2), W_REQ_PROD] + from_current(0) + [B_POP, W_REQ_PROD] + from_current(0)
    + [B_FINAL, B_POP_MANY, small(3)],
    "seed-scribble-header": [FOUR] + start_zero()
    + [W_BYTES, 0, 0, 16] + list(range(0xF0, 0x100)) + [B_POP, B_UNCONSUMED],
    "seed-scribble-events": [FOUR] + start_zero() + cycle(1)
    + [W_WORD, 3] + from_cons(0) + [W_WORD, 1] + absolute(0) + [W_WORD, 2] + absolute(7)
    + [F_QUEUE_PUSH, small(1), B_POP, B_QUEUE_RSP, small(1), 0, B_PUSH_RSP, B_FINAL],
    "seed-scribble-entries": [EIGHT] + start_zero()
    + [F_QUEUE_PUSH, small(3), W_SLOT, 1, 0] + [0xAB] * 12 + [W_BYTES, 100, 0, 9] + [0x5A] * 9
    + [B_POP_MANY, small(3)],
    "seed-responses-outrun": [TWO] + start_zero()
    + [B_QUEUE_RSP, small(3), 1, B_QUEUE_RSP, small(3), 0, B_PUSH_RSP, F_QUEUE_PUSH, small(1),
       B_POP, B_QUEUE_RSP, near_size(2), 0, B_PUSH_RSP],
}

def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "xen_back_ring")
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(bytes(data))

if __name__ == "__main__":
    main()
