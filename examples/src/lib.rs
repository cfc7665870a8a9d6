//! # pvio-examples: the driver/guest pair and demos
//!
//! Runnable programs built on the pvio crates. Today: `ring_demo`, which moves a million
//! netif transmit requests from a front-end thread to a back-end thread through a Xen ring
//! in a memfd, with event notifications, and prints the rate. The netfront/netback pair
//! arrives with the driver/guest issue.
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

pub mod ring_demo;
pub mod vfio;
