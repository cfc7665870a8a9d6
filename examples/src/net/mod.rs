//! The netfront/netback core: everything the driver/guest pair needs except the transport
//! between the two halves and the device behind the back end.
//!
//! - [`layout`]: where the rings, the grant table and the buffers live in guest memory (one
//!   region, so one memfd and two eventfds connect a back end in another process).
//! - [`mem`]: guest memory (4 KiB memfd, hugetlbfs, THP), per-packet page remapping and page
//!   flipping — the raw `mmap`s, each wrapped at once in a `SharedMem`.
//! - [`front`]: [`NetFront`], the guest's driver.
//! - [`back`]: [`NetBack`], the driver domain's back end, generic over the [`Nic`] and the
//!   [`Notifier`](pvio_ring::Notifier) that wakes guests; serves several guests and
//!   disconnects one that breaks the protocol ([`BackError`]).
//! - [`nic`]: the [`Nic`] trait (transmit: header + payload by reference + offload metadata;
//!   receive; [`NicCaps`]) and [`ModelNic`], the validating NIC model.
//! - [`traffic`]: real TCP senders ([`TcpSender`]) and the receiver-side checker
//!   ([`StreamChecker`]).

pub mod back;
pub mod front;
pub mod layout;
pub mod mem;
pub mod nic;
pub mod traffic;

pub use back::{BackError, BackOptions, NetBack, RxDelivery, TxPayload, VifConfig, VifState, VifStats, Work};
pub use front::{FrontError, NetFront, RxPacket};
pub use mem::{Backing, GuestMemory, PageFlipper};
pub use nic::{ModelNic, Nic, NicCaps, NicStats, PayloadRef, RxInfo, TxFrame};
pub use traffic::{FlowId, StreamChecker, TcpSender, TxChecksum};
