//! # pvio-examples: the driver/guest pair and demos
//!
//! Runnable programs built on the pvio crates:
//!
//! - `netpair` ([`netpair`]): guest and driver domain on two threads in one process, the
//!   paper's configurations (no offload, 64 KiB + metadata, remapping, page flipping versus
//!   copy, hugepages) with real TCP flows validated by a NIC model; the README's demo.
//! - `netfront` / `netback`: the same [`net`] core as two processes over TAP or `AF_PACKET`.
//! - `vfio_probe` ([`vfio`]): a typed VFIO wrapper exercised on QEMU's e1000e and
//!   virtio-net-pci behind an emulated IOMMU (`examples/vm/run-tests.sh`).
//! - `ring_demo`: a million netif requests through a Xen ring in a memfd.
//!
//! The separate-process pair (`netfront`, `netback`, and the `tap_forwarder` baseline) is
//! built from [`tap`] (TAP with vnet header and `TUNSETOFFLOAD`), [`afpacket`] (`AF_PACKET`
//! with `PACKET_VNET_HDR`), [`handshake`] (the Unix-socket control channel: versioned,
//! xenstore-style feature negotiation, memfd and eventfds passed with `SCM_RIGHTS`, peer
//! hangup) and [`daemon`] (signals, counters, periodic statistics) around the [`net`] core.
//!
//! The shared logic lives here so that it is tested: [`ring_demo::run`] is what the binary
//! calls.
//!
//! ```
//! let report = pvio_examples::ring_demo::run(10_000, 32).unwrap();
//! assert_eq!(report.requests, 10_000);
//! assert_eq!(report.responses, 10_000);
//! ```
#![deny(missing_docs)]

pub mod afpacket;
pub mod daemon;
pub mod handshake;
pub mod net;
pub mod netpair;
pub mod ring_demo;
pub mod tap;
pub mod vfio;
