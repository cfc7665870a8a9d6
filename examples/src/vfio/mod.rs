//! A small typed VFIO wrapper (std, Linux): container, group and PCI device through the
//! container/group API (kernel 6.1 has no iommufd), region info, BAR mmap with bounds-checked
//! volatile register access, config space and its capability list (MSI-X, virtio vendor
//! capabilities), `VFIO_IOMMU_MAP_DMA`/`UNMAP_DMA`, MSI-X vectors to eventfds and device reset.
//! Everything is released on `Drop` in the order the kernel expects (device fd, then the group
//! leaves the container, then the container).
//!
//! The device is not trusted: config space contents (capability pointers, BAR indices, sizes)
//! are checked before they are used, and register offsets are checked against the mapping.
//!
//! Layout: [`uapi`] (ioctl structures and numbers, layout-tested), [`pci`] (config space
//! parsing, pure), [`mmio`] (register handle), [`device`] (the file descriptors).

pub mod device;
pub mod mmio;
pub mod pci;
pub mod uapi;

pub use device::{Container, DmaBuffer, EventFd, Group, MappedBar, Region, VfioDevice};
pub use mmio::Mmio;
pub use pci::{Capability, ConfigSpace, MsixCap, VirtioCap};

/// Errors of the VFIO wrapper.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call failed.
    #[error("{what}: {source}")]
    Os {
        /// The operation that failed.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The group has devices not bound to vfio-pci (or not at all).
    #[error("IOMMU group {0} is not viable (bind every device of the group to vfio-pci)")]
    GroupNotViable(u32),
    /// The kernel does not speak the VFIO API version or IOMMU type this wrapper uses.
    #[error("unsupported VFIO: {0}")]
    Unsupported(&'static str),
    /// A register or config space access outside its region, or misaligned.
    #[error("access of {size} bytes at {offset:#x} outside a region of {len:#x} bytes or misaligned")]
    OutOfBounds {
        /// Offset of the access.
        offset: u64,
        /// Width of the access in bytes.
        size: u64,
        /// Length of the region.
        len: u64,
    },
    /// The device's config space is malformed (bad capability pointer, loop, bad BAR index).
    #[error("malformed config space: {0}")]
    BadConfig(String),
    /// An access to a DMA buffer outside it.
    #[error("DMA buffer: {0}")]
    Shm(#[from] pvio_ring::shm::ShmError),
    /// A bad argument from the caller.
    #[error("invalid argument: {0}")]
    Invalid(String),
}

/// Result of the VFIO wrapper.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn os(what: impl Into<String>) -> Self {
        Error::Os { what: what.into(), source: std::io::Error::last_os_error() }
    }
}
