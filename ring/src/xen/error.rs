//! Errors of the Xen ring protocol. Each variant names the rule the peer (or the caller) broke.

use crate::shm::ShmError;

/// A violation of the `io/ring.h` protocol, or a region that cannot hold a ring.
///
/// The consumer-side errors (`*ProdOverflow`, `*Rewound`) mean the peer wrote an impossible
/// producer index. They are reported once and then *latched*: the ring stops serving that
/// peer and every later consuming call returns the same error. Nothing is read from the
/// entries after such an index is seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// The shared region is too small for the header plus one entry.
    #[error("a {len}-byte region cannot hold the 64-byte ring header and one {entry_size}-byte entry")]
    RegionTooSmall {
        /// Length of the region offered.
        len: usize,
        /// `sizeof(union sring_entry)` for this ring.
        entry_size: usize,
    },
    /// A shared-memory access was refused.
    #[error(transparent)]
    Shm(#[from] ShmError),
    /// `RING_REQUEST_PROD_OVERFLOW`: the front end's `req_prod` claims more outstanding
    /// requests than the ring has slots.
    #[error(
        "RING_REQUEST_PROD_OVERFLOW: req_prod {req_prod} is more than {size} ahead of the responses produced ({rsp_prod_pvt})"
    )]
    RequestProdOverflow {
        /// The `req_prod` value read from shared memory.
        req_prod: u32,
        /// The back end's private response producer index.
        rsp_prod_pvt: u32,
        /// Ring size in entries.
        size: u32,
    },
    /// The front end moved `req_prod` backwards, behind a value it had already published.
    #[error(
        "req_prod {req_prod} moved back from {seen}, which it had published: producer indices only grow"
    )]
    RequestProdRewound {
        /// The `req_prod` value read from shared memory.
        req_prod: u32,
        /// The last `req_prod` the back end validated.
        seen: u32,
    },
    /// The back end's `rsp_prod` claims responses to requests that were never pushed.
    #[error(
        "RING_RESPONSE_PROD_OVERFLOW: rsp_prod {rsp_prod} is ahead of the requests pushed ({req_prod}); rsp_cons is {rsp_cons}"
    )]
    ResponseProdOverflow {
        /// The `rsp_prod` value read from shared memory.
        rsp_prod: u32,
        /// The front end's last published request producer index.
        req_prod: u32,
        /// The front end's private response consumer index.
        rsp_cons: u32,
    },
    /// The back end moved `rsp_prod` backwards, behind a value it had already published.
    #[error(
        "rsp_prod {rsp_prod} moved back from {seen}, which it had published: producer indices only grow"
    )]
    ResponseProdRewound {
        /// The `rsp_prod` value read from shared memory.
        rsp_prod: u32,
        /// The last `rsp_prod` the front end validated.
        seen: u32,
    },
}

/// A queue operation found no free slot; the value is handed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no free slot in the ring: the value is handed back")]
pub struct Full<T>(pub T);
