//! Replays the `xen_back_ring` and `virtio_device` fuzz corpora and their crash reproducers on
//! the stable toolchain, through the fuzz targets' own harnesses (`fuzz/common/xen_back_ring.rs`,
//! `fuzz/common/virtio_device.rs`).

#[path = "../../fuzz/common/bytes.rs"]
mod bytes;
#[path = "../../fuzz/common/replay.rs"]
mod replay;
#[path = "../../fuzz/common/virtio_device.rs"]
mod virtio_device;
#[path = "../../fuzz/common/xen_back_ring.rs"]
mod xen_back_ring;

#[test]
fn replay_corpus_and_regressions() {
    replay::replay(env!("CARGO_MANIFEST_DIR"), "xen_back_ring", xen_back_ring::run);
}

#[test]
fn replay_virtio_device_corpus_and_regressions() {
    replay::replay(env!("CARGO_MANIFEST_DIR"), "virtio_device", virtio_device::run);
}
