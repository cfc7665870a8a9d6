//! # pvio-offload: packet offload engines
//!
//! The paper's first technique: a guest hands its driver domain 64 KiB TCP super-frames plus
//! metadata, and the driver domain checksums and segments them in software when the NIC
//! cannot. This crate holds the pieces, `no_std` and without allocation on the per-packet
//! path:
//!
//! - **Header views** ([`ether`], [`ipv4`], [`ipv6`], [`tcp`], [`udp`]): `Packet<T:
//!   AsRef<[u8]>>` views whose `check_len` guarantees that no accessor panics afterwards, and
//!   [`parse()`], one bounded pass that returns a [`Layout`] (VLAN tags, offsets of L3, L4 and
//!   payload, protocols, lengths) or a [`ParseError`] naming the broken rule and its offset.
//! - **Checksums** ([`checksum`]): RFC 1071 over wide lanes, with SSE2 and run-time-detected
//!   AVX2 kernels on x86-64; `combine`, pseudo-headers, RFC 1624 updates, and completion and
//!   verification of partial checksums.
//! - **Offload metadata** ([`meta`], [`virtio`], [`netif`]): [`OffloadMeta`] with lossless
//!   conversions to and from `virtio_net_hdr` and Xen netif's flags and GSO extra, and
//!   [`OffloadMeta::validate`], which checks a peer's claim against its frame the way Linux's
//!   `virtio_net_hdr_to_skb` does and returns the [`ValidMeta`] that segmentation will take.
//!
//! - **GSO/TSO** ([`gso`]): [`Segmenter`] splits a validated super-frame (TCPv4, TCPv6 with
//!   extension headers, UDP L4; VLAN/QinQ tagged or not) into `gso_size` segments byte for
//!   byte as Linux's software GSO does (checked against the running kernel through a TAP
//!   device by `tests/linux_gso.rs`): each a small inline header buffer plus a payload range
//!   of the input, with full checksums or partial ones for a NIC with checksum offload only;
//!   [`Segmenter::write_frames`] writes contiguous frames instead.
//!
//! - **GRO** ([`gro`]): [`GroTable`] coalesces in-order TCP segments of up to `FLOWS`
//!   flows, each into its share of a caller's buffer, by Linux's `tcp_gro_receive` rules,
//!   and delivers super-frames with TCP GSO metadata and a partial checksum (as
//!   `tcp_gro_complete` leaves them) plus, unchanged and in per-flow order, every frame it
//!   cannot coalesce. Segmenting what GRO built gives back the frames that went in.
//!
//! ```
//! use pvio_offload::{checksum, parse, ChecksumState, OffloadMeta, VirtioNetHdr, L4};
//! use zerocopy::FromBytes;
//!
//! // A guest's TCP/IPv4 frame with a partial checksum: the TCP checksum field holds the
//! // pseudo-header sum, and the header in front of it says so.
//! let mut frame = vec![
//!     2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00, // Ethernet, IPv4
//!     0x45, 0, 0, 45, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, // IPv4, 45 bytes
//!     0x30, 0x39, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0, // TCP
//!     b'h', b'e', b'l', b'l', b'o'];
//! let layout = parse(&frame)?;
//! assert_eq!((layout.l4, layout.l4_offset, layout.payload_len()), (L4::Tcp, 34, 5));
//! let pseudo = layout.pseudo_header_sum(&frame).unwrap();
//! frame[50..52].copy_from_slice(&pseudo.to_be_bytes());
//!
//! let wire = [1u8, 0, 54, 0, 0, 0, 34, 0, 16, 0, 0, 0]; // NEEDS_CSUM at 34 + 16
//! let meta = OffloadMeta::from_virtio(&VirtioNetHdr::read_from_bytes(&wire[..]).unwrap())?;
//! let valid = meta.validate(&frame)?; // bounds checked against this frame
//! if let ChecksumState::Partial { start, offset } = valid.csum() {
//!     checksum::complete_partial(&mut frame, start.into(), offset.into())?;
//! }
//! assert_eq!(layout.verify_l4_checksum(&frame), Some(true));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(missing_docs, unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod checksum;
pub mod error;
pub mod ether;
pub mod gro;
pub mod gso;
pub mod ipv4;
pub mod ipv6;
pub mod meta;
pub mod netif;
pub mod parse;
pub mod tcp;
pub mod udp;
pub mod virtio;

pub use error::{Header, ParseError};
pub use gro::{Delivery, GroRefTable, GroTable, RefDelivery};
pub use gso::{ChecksumMode, GsoError, Segment, Segmenter};
pub use meta::{ChecksumState, GsoKind, MetaError, OffloadMeta, ValidGso, ValidMeta};
pub use parse::{parse, Layout, L3, L4};
pub use virtio::VirtioNetHdr;
