//! Errors of the split virtqueue. Every error a peer can cause names the rule it broke, with
//! the section of the virtio 1.2 specification that states it.

use crate::shm::ShmError;

/// A queue size or layout that the specification does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// Queue sizes are powers of two from 1 to 32768.
    #[error("queue size {size} is not a power of two from 1 to 32768 (§2.7)")]
    BadQueueSize {
        /// The rejected size.
        size: u16,
    },
    /// A part of the queue is not at its minimum alignment.
    #[error("the {part} at {addr:#x} is not {align}-byte aligned (§2.7)")]
    Misaligned {
        /// Which part: "descriptor table", "available ring" or "used ring".
        part: &'static str,
        /// Its guest address.
        addr: u64,
        /// The alignment §2.7 requires.
        align: u64,
    },
    /// A part of the queue would wrap around the end of the address space.
    #[error("the {len}-byte {part} at {addr:#x} wraps around the address space")]
    Wraps {
        /// Which part.
        part: &'static str,
        /// Its guest address.
        addr: u64,
        /// Its length in bytes.
        len: usize,
    },
    /// A part of the queue is not inside guest memory.
    #[error("the {part} is not in guest memory: {source}")]
    Memory {
        /// Which part.
        part: &'static str,
        /// Why translation failed.
        source: GuestMemoryError,
    },
}

/// A guest address range that cannot be accessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GuestMemoryError {
    /// No region contains the start of the range.
    #[error("guest range {addr:#x}+{len} is not in any memory region")]
    Unmapped {
        /// Start of the range.
        addr: u64,
        /// Length of the range.
        len: usize,
    },
    /// The range starts in a region but runs past its end.
    #[error("guest range {addr:#x}+{len} crosses the end of its region at {region_end:#x}")]
    CrossesRegionEnd {
        /// Start of the range.
        addr: u64,
        /// Length of the range.
        len: usize,
        /// First address past the region.
        region_end: u64,
    },
    /// `addr + len` overflows the 64-bit address space.
    #[error("guest range {addr:#x}+{len} overflows the address space")]
    Overflow {
        /// Start of the range.
        addr: u64,
        /// Length of the range.
        len: usize,
    },
    /// Two regions given to a region set overlap (or one wraps the address space).
    #[error("memory region at {base:#x} overlaps another region or wraps the address space")]
    BadRegion {
        /// Guest base address of the offending region.
        base: u64,
    },
    /// An access inside a translated range was refused by shared memory (out of bounds or
    /// misaligned for an atomic word).
    #[error(transparent)]
    Shm(#[from] ShmError),
}

/// The driver broke the split-virtqueue protocol. Seen by the device side.
///
/// Errors about the available ring's index ([`AvailIdxOverflow`](Self::AvailIdxOverflow),
/// [`AvailIdxRewound`](Self::AvailIdxRewound)) are *latched*: the queue stops serving the
/// driver and every later call that consumes from it returns the same error (see
/// [`is_latched`](Self::is_latched)). All other errors concern one chain: the avail entry has
/// been consumed, the chain is rejected, and the queue goes on; the device should return the
/// head with [`add_used`](crate::virtio::DeviceQueue::add_used) and a length of 0 (or reset
/// the device).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// The available `idx` claims more chains than the ring holds.
    #[error(
        "avail idx {avail_idx} is more than the queue size {size} ahead of the next entry {next_avail} (§2.7.6, §2.7.13.3)"
    )]
    AvailIdxOverflow {
        /// The `idx` read from the available ring.
        avail_idx: u16,
        /// The device's next available entry.
        next_avail: u16,
        /// Queue size.
        size: u16,
    },
    /// The available `idx` moved backwards.
    #[error("avail idx {avail_idx} moved back from {seen}: the driver only increments it (§2.7.13.3)")]
    AvailIdxRewound {
        /// The `idx` read from the available ring.
        avail_idx: u16,
        /// The last `idx` the device validated.
        seen: u16,
    },
    /// An available-ring entry names a descriptor outside the table.
    #[error("chain head {head} is outside the {size}-entry descriptor table (§2.7.5, §2.7.13.2)")]
    HeadOutOfRange {
        /// The head index read from the available ring.
        head: u16,
        /// Queue size.
        size: u16,
    },
    /// A descriptor's `next` lies outside its table.
    #[error("chain {head}: next {next} is outside the {table_len}-entry descriptor table (§2.7.5)")]
    NextOutOfRange {
        /// Head of the chain.
        head: u16,
        /// The `next` read.
        next: u16,
        /// Entries in the table being walked (the queue size or the indirect table length).
        table_len: u32,
    },
    /// The chain visits more descriptors than its table has: it loops.
    #[error("chain {head} is longer than its {table_len}-entry table: it loops (§2.7.5.2)")]
    ChainLoop {
        /// Head of the chain.
        head: u16,
        /// Entries in the table being walked.
        table_len: u32,
    },
    /// The chain's buffers add up to more than 2^32 - 1 bytes, or more than the device's cap.
    #[error("chain {head} holds more than {limit} bytes (§2.7.5.2: at most 2^32 in total)")]
    ChainTooLarge {
        /// Head of the chain.
        head: u16,
        /// The limit exceeded (`u32::MAX` or the configured cap).
        limit: u32,
    },
    /// The chain has more buffers than the caller's segment array holds.
    #[error("chain {head} has more than {capacity} buffers, the capacity given to pop (§2.7.5.3.1)")]
    TooManySegments {
        /// Head of the chain.
        head: u16,
        /// Length of the segment array.
        capacity: usize,
    },
    /// A device-readable buffer follows a device-writable one.
    #[error("chain {head}: a device-readable buffer follows a device-writable one (§2.7.4.2)")]
    ReadableAfterWritable {
        /// Head of the chain.
        head: u16,
    },
    /// `VIRTQ_DESC_F_INDIRECT` without `VIRTIO_F_INDIRECT_DESC` negotiated.
    #[error(
        "chain {head} uses an indirect table, but VIRTIO_F_INDIRECT_DESC was not negotiated (§2.7.5.3.1)"
    )]
    IndirectNotNegotiated {
        /// Head of the chain.
        head: u16,
    },
    /// An indirect table contains an indirect descriptor.
    #[error("chain {head}: an indirect table refers to another indirect table (§2.7.5.3.1)")]
    NestedIndirect {
        /// Head of the chain.
        head: u16,
    },
    /// A descriptor has both `VIRTQ_DESC_F_INDIRECT` and `VIRTQ_DESC_F_NEXT`.
    #[error("chain {head}: a descriptor sets both VIRTQ_DESC_F_INDIRECT and VIRTQ_DESC_F_NEXT (§2.7.5.3.1)")]
    IndirectWithNext {
        /// Head of the chain.
        head: u16,
    },
    /// An indirect table's length is zero or not a multiple of 16.
    #[error("chain {head}: indirect table length {len} is zero or not a multiple of 16 (§2.7.5.3)")]
    BadIndirectLen {
        /// Head of the chain.
        head: u16,
        /// The `len` of the indirect descriptor.
        len: u32,
    },
    /// A buffer (or an indirect table) is not inside guest memory.
    #[error("chain {head}: buffer {addr:#x}+{len} is not in guest memory (§2.7.5): {source}")]
    BadBuffer {
        /// Head of the chain.
        head: u16,
        /// Buffer address.
        addr: u64,
        /// Buffer length.
        len: u32,
        /// Why translation failed.
        source: GuestMemoryError,
    },
    /// The ring's own memory refused an access (it was checked at construction, so only a
    /// memory map that changed underneath the queue causes this).
    #[error("virtqueue ring memory: {0}")]
    Ring(#[from] GuestMemoryError),
    /// `add_used` named a head outside the table.
    #[error("add_used: head {head} is outside the {size}-entry descriptor table (§2.7.8.2)")]
    UsedHeadOutOfRange {
        /// The head given.
        head: u32,
        /// Queue size.
        size: u16,
    },
    /// `add_used` was called more often than chains were popped.
    #[error("add_used: every popped chain has already been returned")]
    NothingToReturn,
}

impl DeviceError {
    /// Whether this error stopped the queue (every later pop returns it again).
    pub fn is_latched(&self) -> bool {
        matches!(self, DeviceError::AvailIdxOverflow { .. } | DeviceError::AvailIdxRewound { .. })
    }

    /// The head of the chain this error concerns, if it concerns one chain whose head lies in
    /// the table (and which the device should return with `add_used`).
    pub fn chain_head(&self) -> Option<u16> {
        use DeviceError::*;
        match *self {
            NextOutOfRange { head, .. }
            | ChainLoop { head, .. }
            | ChainTooLarge { head, .. }
            | TooManySegments { head, .. }
            | ReadableAfterWritable { head }
            | IndirectNotNegotiated { head }
            | NestedIndirect { head }
            | IndirectWithNext { head }
            | BadIndirectLen { head, .. }
            | BadBuffer { head, .. } => Some(head),
            _ => None,
        }
    }
}

/// The device broke the split-virtqueue protocol. Seen by the driver side; latched: the queue
/// stops and every later call that consumes from it returns the same error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    /// The used `idx` claims more completions than chains were made available.
    #[error(
        "used idx {used_idx} is ahead of the chains made available ({avail_idx}); last used is {last_used} (§2.7.8.2)"
    )]
    UsedIdxOverflow {
        /// The `idx` read from the used ring.
        used_idx: u16,
        /// The driver's last published available `idx`.
        avail_idx: u16,
        /// The driver's next used entry.
        last_used: u16,
    },
    /// The used `idx` moved backwards.
    #[error("used idx {used_idx} moved back from {seen}: the device only increments it (§2.7.8)")]
    UsedIdxRewound {
        /// The `idx` read from the used ring.
        used_idx: u16,
        /// The last used `idx` the driver validated.
        seen: u16,
    },
    /// A used element's `id` is not the head of a chain the device holds.
    #[error("used element id {id} is not the head of a chain made available to the device (§2.7.8)")]
    BadUsedId {
        /// The `id` read.
        id: u32,
    },
    /// A used element's `len` exceeds the chain's device-writable bytes.
    #[error("used element for head {id} reports {len} bytes written, but the chain has {writable} writable (§2.7.8.2)")]
    BadUsedLen {
        /// The head.
        id: u16,
        /// The `len` read.
        len: u32,
        /// Device-writable bytes of the chain.
        writable: u64,
    },
    /// The ring's own memory refused an access (only if the memory map changed).
    #[error("virtqueue ring memory: {0}")]
    Ring(#[from] GuestMemoryError),
}

/// Why [`DriverQueue::add`](crate::virtio::DriverQueue::add) refused a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AddError {
    /// No buffers were given.
    #[error("a chain needs at least one buffer")]
    Empty,
    /// Not enough free descriptors (or, for an indirect chain, none).
    #[error("{needed} descriptors needed, {free} free")]
    NoSpace {
        /// Descriptors the chain needs in the ring's table.
        needed: usize,
        /// Descriptors free.
        free: u16,
    },
    /// The chain has more buffers than the queue size allows (§2.7.5.3.1).
    #[error("{buffers} buffers exceed the limit of {limit} per chain (§2.7.5.3.1)")]
    TooLong {
        /// Buffers given.
        buffers: usize,
        /// The limit.
        limit: usize,
    },
    /// The buffers add up to more than 2^32 - 1 bytes (§2.7.5.2).
    #[error("the buffers add up to more than 2^32 - 1 bytes (§2.7.5.2)")]
    TooLarge,
    /// An indirect chain without `VIRTIO_F_INDIRECT_DESC` (§2.7.5.3.1).
    #[error("indirect descriptors need VIRTIO_F_INDIRECT_DESC (§2.7.5.3.1)")]
    IndirectNotNegotiated,
    /// The indirect table (or a ring part) cannot be written.
    #[error("indirect table: {0}")]
    Memory(#[from] GuestMemoryError),
    /// The queue stopped after a device protocol error.
    #[error("the queue is stopped: {0}")]
    Broken(DriverError),
}

/// A chain that [`DriverQueue::add`](crate::virtio::DriverQueue::add) refused, with the
/// caller's token handed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("chain refused: {error}")]
pub struct Rejected<T> {
    /// Why.
    pub error: AddError,
    /// The token given to `add`.
    pub token: T,
}
