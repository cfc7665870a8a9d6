//! Errors: Xen's `GNTST_*` status codes for broker operations, and the granting side's errors.

use crate::entry::{Grant, GrantRef};

/// `GNTST_okay`: the status code of a successful operation.
pub const GNTST_OKAY: i16 = 0;

/// A failed grant operation, as one of Xen's `GNTST_*` status codes (`GNTST_okay` is `Ok`).
///
/// [`code`](Self::code) gives the value Xen puts in a `status` field, so statuses can be
/// returned to a guest verbatim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[repr(i16)]
pub enum GrantStatus {
    /// `GNTST_general_error` (-1): the entry changed under the broker too often, or another
    /// failure without a more specific code.
    #[error("undefined error")]
    GeneralError = -1,
    /// `GNTST_bad_domain` (-2): the domain is not registered with the broker.
    #[error("unrecognised domain id")]
    BadDomain = -2,
    /// `GNTST_bad_gntref` (-3): the reference is beyond the table, or the entry does not
    /// grant access to the caller (wrong type or wrong domid).
    #[error("invalid grant reference")]
    BadGntref = -3,
    /// `GNTST_bad_handle` (-4): the map handle is not live in this broker.
    #[error("invalid mapping handle")]
    BadHandle = -4,
    /// `GNTST_bad_virt_addr` (-5): an inappropriate virtual address to map.
    #[error("invalid virtual address")]
    BadVirtAddr = -5,
    /// `GNTST_bad_dev_addr` (-6): an inappropriate device address to unmap.
    #[error("invalid device address")]
    BadDevAddr = -6,
    /// `GNTST_no_device_space` (-7): out of space in the I/O MMU.
    #[error("no spare translation slot in the I/O MMU")]
    NoDeviceSpace = -7,
    /// `GNTST_permission_denied` (-8): a write through a read-only grant.
    #[error("permission denied")]
    PermissionDenied = -8,
    /// `GNTST_bad_page` (-9): the granted frame is not in the granting domain's memory.
    #[error("bad page")]
    BadPage = -9,
    /// `GNTST_bad_copy_arg` (-10): offset + length crosses the page, or a local buffer is
    /// shorter than the copy.
    #[error("copy arguments cross page boundary")]
    BadCopyArg = -10,
    /// `GNTST_address_too_big` (-11): a transfer page address is too large.
    #[error("page address size too large")]
    AddressTooBig = -11,
    /// `GNTST_eagain` (-12): not done; try again.
    #[error("operation not done; try again")]
    Eagain = -12,
    /// `GNTST_no_space` (-13): out of space (handles, pin counts).
    #[error("out of space")]
    NoSpace = -13,
}

impl GrantStatus {
    /// Every status, in code order (-1 down to -13).
    pub const ALL: [GrantStatus; 13] = [
        GrantStatus::GeneralError,
        GrantStatus::BadDomain,
        GrantStatus::BadGntref,
        GrantStatus::BadHandle,
        GrantStatus::BadVirtAddr,
        GrantStatus::BadDevAddr,
        GrantStatus::NoDeviceSpace,
        GrantStatus::PermissionDenied,
        GrantStatus::BadPage,
        GrantStatus::BadCopyArg,
        GrantStatus::AddressTooBig,
        GrantStatus::Eagain,
        GrantStatus::NoSpace,
    ];

    /// The `GNTST_*` value.
    pub fn code(self) -> i16 {
        self as i16
    }

    /// The status for a `GNTST_*` value; `Ok(())` for `GNTST_okay`, `None` if unknown.
    pub fn from_code(code: i16) -> Option<Result<(), GrantStatus>> {
        if code == GNTST_OKAY {
            return Some(Ok(()));
        }
        GrantStatus::ALL.iter().find(|s| s.code() == code).map(|&s| Err(s))
    }

    /// The `GNTST_*` value of an operation's result.
    pub fn code_of(result: Result<(), GrantStatus>) -> i16 {
        result.err().map_or(GNTST_OKAY, GrantStatus::code)
    }
}

/// A refusal on the granting side ([`GrantTable`](crate::GrantTable)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// Every reference is granted already.
    #[error("no free grant references")]
    NoFreeRefs,
    /// The reference is not one this table handed out (reserved, out of range, or free).
    #[error("grant reference {0:?} is not granted by this table")]
    NotGranted(GrantRef),
    /// The grantee has the frame mapped or is copying (`GTF_reading`/`GTF_writing` set): the
    /// grant stays in place and is handed back; try again after the grantee unmaps.
    #[error("grant {gref:?} is still in use by the grantee")]
    InUse {
        /// The grant, still valid and still owned by the caller.
        gref: GrantRef,
        /// What it grants.
        grant: Grant,
    },
    /// The shared entry no longer says what this table wrote (a hostile or buggy party
    /// changed it); the reference is kept out of the free list.
    #[error("grant entry {0:?} was changed behind the granter's back")]
    Corrupted(GrantRef),
    /// The shared region is too small for the requested number of entries.
    #[error("a table of {entries} entries needs {needed} bytes; the region has {len}")]
    RegionTooSmall {
        /// Entries requested.
        entries: usize,
        /// Bytes they need.
        needed: usize,
        /// Bytes the region has.
        len: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_match_grant_table_h() {
        let want = [
            (GrantStatus::GeneralError, -1),
            (GrantStatus::BadDomain, -2),
            (GrantStatus::BadGntref, -3),
            (GrantStatus::BadHandle, -4),
            (GrantStatus::BadVirtAddr, -5),
            (GrantStatus::BadDevAddr, -6),
            (GrantStatus::NoDeviceSpace, -7),
            (GrantStatus::PermissionDenied, -8),
            (GrantStatus::BadPage, -9),
            (GrantStatus::BadCopyArg, -10),
            (GrantStatus::AddressTooBig, -11),
            (GrantStatus::Eagain, -12),
            (GrantStatus::NoSpace, -13),
        ];
        for (s, c) in want {
            assert_eq!(s.code(), c);
            assert_eq!(GrantStatus::from_code(c), Some(Err(s)));
        }
        assert_eq!(GrantStatus::from_code(0), Some(Ok(())));
        assert_eq!(GrantStatus::from_code(-14), None);
        assert_eq!(GrantStatus::code_of(Ok(())), GNTST_OKAY);
        assert_eq!(GrantStatus::code_of(Err(GrantStatus::BadPage)), -9);
    }
}
