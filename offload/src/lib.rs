//! # pvio-offload: packet offload engines
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(missing_docs, unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod checksum;
pub mod error;
pub mod ether;
pub mod ipv4;
pub mod ipv6;
pub mod parse;
pub mod tcp;
pub mod udp;

pub use error::{Header, ParseError};
pub use parse::{parse, Layout, L3, L4};
pub mod meta;
pub mod netif;
pub mod virtio;

pub use meta::{ChecksumState, GsoKind, MetaError, OffloadMeta, ValidGso, ValidMeta};
pub use virtio::VirtioNetHdr;
