//! A hostile driver against pvio's virtio `DeviceQueue`: honest driver traffic through
//! `DriverQueue`, raw writes of descriptors, ring entries, indices and arbitrary bytes into
//! the queue's guest memory, and device operations, with the invariants of
//! `fuzz/common/virtio_device.rs` checked after every step.
//!
//! Run: `cargo +nightly-2026-05-20 fuzz run virtio_device -- -max_total_time=60`.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../common/bytes.rs"]
mod bytes;
#[path = "../common/virtio_device.rs"]
mod virtio_device;

fuzz_target!(|data: &[u8]| virtio_device::run(data));
