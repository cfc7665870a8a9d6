//! # pvio-offload: packet offload engines
//!
//! The paper's first technique: a guest hands its driver domain 64 KiB TCP super-frames plus
//! metadata, and the driver domain checksums and segments them in software when the NIC
//! cannot. This crate will hold the header views, the checksum engine, offload metadata
//! (`virtio_net_hdr`, Xen netif GSO), GSO/TSO segmentation and GRO — `no_std`, without
//! allocation on the per-packet path.
//!
//! Today it provides the scalar Internet checksum (RFC 1071) that the rest builds on; the
//! remaining engines arrive with the offload issue.
//!
//! ```
//! use pvio_offload::checksum;
//!
//! // RFC 1071's example words sum to 0xddf2; the checksum is its complement.
//! let bytes = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
//! assert_eq!(checksum::fold(checksum::sum(&bytes, 0)), 0xddf2);
//! assert_eq!(checksum::checksum(&bytes), !0xddf2);
//! ```
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(missing_docs, unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod checksum;
