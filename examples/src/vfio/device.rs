//! The VFIO file descriptors: container, group, device, and what hangs off them (BAR mappings,
//! DMA buffers, MSI-X eventfds). All system calls of the wrapper are here.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pvio_ring::shm::SharedMem;

use super::mmio::Mmio;
use super::pci::ConfigSpace;
use super::uapi::{self, argsz};
use super::{Error, Result};

/// `ioctl(fd, req, arg)`, mapping -1 to an [`Error::Os`] naming `what`.
///
/// # Safety
/// `arg` must be what the kernel expects for `req` (a pointer to a live structure of the right
/// type and `argsz`, or an integer).
unsafe fn ioctl(fd: RawFd, req: u64, arg: libc::c_ulong, what: &str) -> Result<libc::c_int> {
    // SAFETY: forwarded contract.
    let r = unsafe { libc::ioctl(fd, req as _, arg) };
    if r < 0 {
        Err(Error::os(what))
    } else {
        Ok(r)
    }
}

fn open_rw(path: &str) -> Result<OwnedFd> {
    let f = File::options()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Error::Os { what: format!("open {path}"), source: e })?;
    Ok(f.into())
}

/// A VFIO container (`/dev/vfio/vfio`) with the type1v2 IOMMU: the IOVA address space.
#[derive(Debug)]
pub struct Container {
    fd: OwnedFd,
}

impl Container {
    /// Open `/dev/vfio/vfio` and check the API version and the type1v2 IOMMU extension.
    pub fn open() -> Result<Arc<Self>> {
        let fd = open_rw("/dev/vfio/vfio")?;
        // SAFETY: VFIO_GET_API_VERSION takes no argument.
        let v = unsafe { ioctl(fd.as_raw_fd(), uapi::VFIO_GET_API_VERSION, 0, "VFIO_GET_API_VERSION")? };
        if v != uapi::VFIO_API_VERSION {
            return Err(Error::Unsupported("VFIO API version"));
        }
        // SAFETY: VFIO_CHECK_EXTENSION takes an integer.
        let t = unsafe {
            ioctl(fd.as_raw_fd(), uapi::VFIO_CHECK_EXTENSION, uapi::VFIO_TYPE1V2_IOMMU.into(), "CHECK_EXT")?
        };
        if t != 1 {
            return Err(Error::Unsupported("type1v2 IOMMU"));
        }
        Ok(Arc::new(Container { fd }))
    }

    fn set_iommu(&self) -> Result<()> {
        // SAFETY: VFIO_SET_IOMMU takes an integer.
        unsafe {
            ioctl(
                self.fd.as_raw_fd(),
                uapi::VFIO_SET_IOMMU,
                uapi::VFIO_TYPE1V2_IOMMU.into(),
                "VFIO_SET_IOMMU",
            )?
        };
        Ok(())
    }

    /// The IOMMU's page sizes and usable IOVA ranges (`VFIO_IOMMU_GET_INFO`).
    pub fn iommu_info(&self) -> Result<IommuInfo> {
        let mut buf = vec![0u64; 512]; // 4 KiB, 8-aligned
        let len = (buf.len() * 8) as u32;
        let hdr = uapi::IommuType1Info { argsz: len, ..Default::default() };
        // SAFETY: buf is 4 KiB and 8-aligned, larger than the header.
        unsafe { buf.as_mut_ptr().cast::<uapi::IommuType1Info>().write(hdr) };
        // SAFETY: the kernel writes at most argsz = len bytes into buf.
        unsafe {
            ioctl(
                self.fd.as_raw_fd(),
                uapi::VFIO_IOMMU_GET_INFO,
                buf.as_mut_ptr() as _,
                "VFIO_IOMMU_GET_INFO",
            )?
        };
        let bytes: Vec<u8> = buf.iter().flat_map(|w| w.to_ne_bytes()).collect();
        parse_iommu_info(&bytes)
    }

    /// Map `size` bytes of this process at `vaddr` to `iova`, readable and writable by the device.
    ///
    /// # Safety
    /// `vaddr..vaddr+size` must stay mapped until [`Container::unmap_dma`] (the device may access
    /// it at any time: treat it as shared memory).
    pub unsafe fn map_dma(&self, vaddr: u64, iova: u64, size: u64) -> Result<()> {
        let m = uapi::DmaMap {
            argsz: argsz::<uapi::DmaMap>(),
            flags: uapi::VFIO_DMA_MAP_FLAG_READ | uapi::VFIO_DMA_MAP_FLAG_WRITE,
            vaddr,
            iova,
            size,
        };
        // SAFETY: m is a live vfio_iommu_type1_dma_map.
        unsafe {
            ioctl(self.fd.as_raw_fd(), uapi::VFIO_IOMMU_MAP_DMA, &m as *const _ as _, "VFIO_IOMMU_MAP_DMA")?
        };
        Ok(())
    }

    /// Unmap `[iova, iova + size)`; returns the number of bytes unmapped.
    pub fn unmap_dma(&self, iova: u64, size: u64) -> Result<u64> {
        let mut u = uapi::DmaUnmap { argsz: argsz::<uapi::DmaUnmap>(), flags: 0, iova, size };
        // SAFETY: u is a live vfio_iommu_type1_dma_unmap; the kernel writes back `size`.
        unsafe {
            ioctl(
                self.fd.as_raw_fd(),
                uapi::VFIO_IOMMU_UNMAP_DMA,
                &mut u as *mut _ as _,
                "VFIO_IOMMU_UNMAP_DMA",
            )?
        };
        Ok(u.size)
    }
}

/// What `VFIO_IOMMU_GET_INFO` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IommuInfo {
    /// Bitmap of supported IOMMU page sizes.
    pub page_sizes: u64,
    /// Usable IOVA ranges, inclusive `(start, end)`.
    pub iova_ranges: Vec<(u64, u64)>,
}

/// Parse a `vfio_iommu_type1_info` reply including its capability chain (kernel-written, but
/// still bounds-checked: a bad chain is an error, not an out-of-bounds read).
pub fn parse_iommu_info(b: &[u8]) -> Result<IommuInfo> {
    let rd32 = |o: usize| -> Result<u32> {
        b.get(o..o + 4).map(|s| u32::from_ne_bytes(s.try_into().unwrap_or_default())).ok_or_else(|| bad(o))
    };
    let rd64 = |o: usize| -> Result<u64> {
        b.get(o..o + 8).map(|s| u64::from_ne_bytes(s.try_into().unwrap_or_default())).ok_or_else(|| bad(o))
    };
    fn bad(o: usize) -> Error {
        Error::BadConfig(format!("IOMMU info capability chain runs past the buffer at {o:#x}"))
    }
    let flags = rd32(4)?;
    let mut info = IommuInfo { page_sizes: rd64(8)?, iova_ranges: Vec::new() };
    if flags & uapi::VFIO_IOMMU_INFO_CAPS == 0 {
        return Ok(info);
    }
    let mut off = rd32(16)? as usize;
    let mut hops = 0;
    while off != 0 {
        hops += 1;
        if hops > 64 || off < 24 {
            return Err(Error::BadConfig(format!("IOMMU info capability chain at {off:#x}")));
        }
        let hdr = rd32(off)?;
        let next = rd32(off + 4)? as usize;
        if hdr as u16 == uapi::VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE {
            let n = rd32(off + 8)? as usize;
            for i in 0..n.min(256) {
                let r = off + 16 + 16 * i;
                info.iova_ranges.push((rd64(r)?, rd64(r + 8)?));
            }
        }
        off = next;
    }
    Ok(info)
}

/// A VFIO group (`/dev/vfio/N`), attached to a container while it lives.
#[derive(Debug)]
pub struct Group {
    fd: OwnedFd,
    id: u32,
    container: Arc<Container>,
}

impl Group {
    /// Open group `id`, check it is viable and attach it to `container`, then set the container's
    /// IOMMU type (type1v2). One group per container in this wrapper.
    pub fn open(id: u32, container: Arc<Container>) -> Result<Self> {
        let fd = open_rw(&format!("/dev/vfio/{id}"))?;
        let mut st = uapi::GroupStatus { argsz: argsz::<uapi::GroupStatus>(), flags: 0 };
        // SAFETY: st is a live vfio_group_status.
        unsafe {
            ioctl(fd.as_raw_fd(), uapi::VFIO_GROUP_GET_STATUS, &mut st as *mut _ as _, "GROUP_GET_STATUS")?
        };
        if st.flags & uapi::VFIO_GROUP_FLAGS_VIABLE == 0 {
            return Err(Error::GroupNotViable(id));
        }
        let cfd: libc::c_int = container.fd.as_raw_fd();
        // SAFETY: VFIO_GROUP_SET_CONTAINER takes a pointer to the container fd.
        unsafe {
            ioctl(fd.as_raw_fd(), uapi::VFIO_GROUP_SET_CONTAINER, &cfd as *const _ as _, "SET_CONTAINER")?
        };
        let g = Group { fd, id, container };
        g.container.set_iommu()?;
        Ok(g)
    }

    /// The group number.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The container this group is attached to.
    pub fn container(&self) -> &Arc<Container> {
        &self.container
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: VFIO_GROUP_UNSET_CONTAINER takes no argument. Failure leaves the kernel to
        // detach on close, which it does anyway.
        let _ = unsafe { ioctl(self.fd.as_raw_fd(), uapi::VFIO_GROUP_UNSET_CONTAINER, 0, "UNSET_CONTAINER") };
    }
}

/// A region of the device (BAR, ROM, config space) as `VFIO_DEVICE_GET_REGION_INFO` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// Region index (BAR n = n, config space = 7).
    pub index: u32,
    /// `VFIO_REGION_INFO_FLAG_*`.
    pub flags: u32,
    /// Size in bytes (0 = absent).
    pub size: u64,
    /// Offset of the region in the device fd.
    pub offset: u64,
}

impl Region {
    /// Whether the region can be mmapped.
    pub fn mmappable(&self) -> bool {
        self.flags & uapi::VFIO_REGION_INFO_FLAG_MMAP != 0
    }
}

/// A PCI device opened through VFIO. Dropping it disables MSI-X (if this handle enabled it),
/// closes the device fd, then detaches the group from the container.
#[derive(Debug)]
pub struct VfioDevice {
    // Field order is drop order: the device fd closes before the group leaves the container.
    file: File,
    bdf: String,
    flags: u32,
    regions: Vec<Region>,
    num_irqs: u32,
    msix_enabled: AtomicBool,
    group: Group,
}

/// Check a PCI address `DDDD:BB:DD.F` before it goes into a sysfs path or an ioctl.
pub fn valid_bdf(bdf: &str) -> bool {
    let b = bdf.as_bytes();
    b.len() == 12
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b':',
            10 => *c == b'.',
            11 => (b'0'..=b'7').contains(c),
            _ => c.is_ascii_hexdigit(),
        })
}

impl VfioDevice {
    /// Open the device at `bdf` (already bound to vfio-pci) in a new container.
    pub fn open(bdf: &str) -> Result<Self> {
        if !valid_bdf(bdf) {
            return Err(Error::Invalid(format!("PCI address {bdf:?} (want DDDD:BB:DD.F)")));
        }
        let link = format!("/sys/bus/pci/devices/{bdf}/iommu_group");
        let target = std::fs::read_link(&link)
            .map_err(|e| Error::Os { what: format!("readlink {link}"), source: e })?;
        let id: u32 = target
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| Error::Invalid(format!("iommu_group link {}", target.display())))?;
        let group = Group::open(id, Container::open()?)?;
        let name = CString::new(bdf).map_err(|_| Error::Invalid("NUL in BDF".into()))?;
        // SAFETY: VFIO_GROUP_GET_DEVICE_FD takes a NUL-terminated device name.
        let fd = unsafe {
            ioctl(group.fd.as_raw_fd(), uapi::VFIO_GROUP_GET_DEVICE_FD, name.as_ptr() as _, "GET_DEVICE_FD")?
        };
        // SAFETY: the ioctl returned a new fd that nothing else owns.
        let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let mut di = uapi::DeviceInfo { argsz: argsz::<uapi::DeviceInfo>(), ..Default::default() };
        // SAFETY: di is a live vfio_device_info.
        unsafe {
            ioctl(file.as_raw_fd(), uapi::VFIO_DEVICE_GET_INFO, &mut di as *mut _ as _, "DEVICE_GET_INFO")?
        };
        if di.flags & uapi::VFIO_DEVICE_FLAGS_PCI == 0 {
            return Err(Error::Unsupported("not a PCI device"));
        }
        let mut regions = Vec::new();
        for index in 0..di.num_regions.min(16) {
            let mut ri = uapi::RegionInfo { argsz: argsz::<uapi::RegionInfo>(), index, ..Default::default() };
            // SAFETY: ri is a live vfio_region_info; the kernel writes at most argsz bytes.
            let r = unsafe {
                ioctl(
                    file.as_raw_fd(),
                    uapi::VFIO_DEVICE_GET_REGION_INFO,
                    &mut ri as *mut _ as _,
                    "REGION_INFO",
                )
            };
            if r.is_ok() {
                regions.push(Region { index, flags: ri.flags, size: ri.size, offset: ri.offset });
            }
        }
        Ok(VfioDevice {
            file,
            bdf: bdf.to_owned(),
            flags: di.flags,
            regions,
            num_irqs: di.num_irqs,
            msix_enabled: AtomicBool::new(false),
            group,
        })
    }

    /// The PCI address.
    pub fn bdf(&self) -> &str {
        &self.bdf
    }

    /// The group (and through it the container).
    pub fn group(&self) -> &Group {
        &self.group
    }

    /// Whether `VFIO_DEVICE_RESET` is supported.
    pub fn can_reset(&self) -> bool {
        self.flags & uapi::VFIO_DEVICE_FLAGS_RESET != 0
    }

    /// Number of interrupt indexes.
    pub fn num_irqs(&self) -> u32 {
        self.num_irqs
    }

    /// The regions the kernel reported.
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// Region `index`, if present (size > 0).
    pub fn region(&self, index: u32) -> Option<Region> {
        self.regions.iter().copied().find(|r| r.index == index && r.size > 0)
    }

    fn config_region(&self) -> Result<Region> {
        self.region(uapi::VFIO_PCI_CONFIG_REGION_INDEX).ok_or(Error::Unsupported("no config region"))
    }

    /// Write `data` to config space at `offset`.
    pub fn write_config(&self, offset: u16, data: &[u8]) -> Result<()> {
        let r = self.config_region()?;
        check_range(offset.into(), data.len() as u64, r.size)?;
        self.file
            .write_all_at(data, r.offset + u64::from(offset))
            .map_err(|e| Error::Os { what: format!("config write at {offset:#x}"), source: e })
    }

    /// mmap BAR `index` (it must be mmappable).
    pub fn map_bar(&self, index: u32) -> Result<MappedBar<'_>> {
        if index > 5 {
            return Err(Error::Invalid(format!("BAR {index}")));
        }
        let r = self.region(index).ok_or_else(|| Error::Invalid(format!("BAR{index} absent")))?;
        if !r.mmappable() {
            return Err(Error::Unsupported("BAR not mmappable"));
        }
        let len = usize::try_from(r.size).map_err(|_| Error::Invalid("BAR size".into()))?;
        // SAFETY: a fresh shared mapping of the device fd at the region's offset; no Rust object
        // aliases it.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                self.file.as_raw_fd(),
                r.offset as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Error::os(format!("mmap BAR{index}")));
        }
        let base = NonNull::new(p.cast::<u8>()).ok_or(Error::Unsupported("mmap returned NULL"))?;
        Ok(MappedBar { base, len, _dev: core::marker::PhantomData })
    }

    /// Allocate `size` bytes of zeroed memory and map them at `iova` for device reads and writes.
    /// `size` and `iova` must be multiples of 4 KiB.
    pub fn dma_alloc(&self, iova: u64, size: usize) -> Result<DmaBuffer> {
        if size == 0 || size % 4096 != 0 || iova % 4096 != 0 {
            return Err(Error::Invalid(format!("DMA buffer iova {iova:#x} size {size:#x}")));
        }
        // SAFETY: a fresh anonymous mapping, owned by the DmaBuffer.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Error::os("mmap DMA buffer"));
        }
        let mut buf =
            DmaBuffer { container: self.group.container.clone(), ptr: p.cast(), size, iova, mapped: false };
        // SAFETY: the mapping lives as long as buf, whose Drop unmaps the IOVA range first.
        unsafe { buf.container.map_dma(p as u64, iova, size as u64)? };
        buf.mapped = true;
        Ok(buf)
    }

    /// Route MSI-X vectors `0..count` to new eventfds (`VFIO_DEVICE_SET_IRQS`).
    pub fn enable_msix(&self, count: u32) -> Result<Vec<EventFd>> {
        let mut info = uapi::IrqInfo {
            argsz: argsz::<uapi::IrqInfo>(),
            index: uapi::VFIO_PCI_MSIX_IRQ_INDEX,
            ..Default::default()
        };
        // SAFETY: info is a live vfio_irq_info.
        unsafe {
            ioctl(
                self.file.as_raw_fd(),
                uapi::VFIO_DEVICE_GET_IRQ_INFO,
                &mut info as *mut _ as _,
                "IRQ_INFO",
            )?
        };
        if count == 0 || count > info.count || count as usize > uapi::IrqSetEventfds::MAX {
            return Err(Error::Invalid(format!("{count} MSI-X vectors (device has {})", info.count)));
        }
        let fds = (0..count).map(|_| EventFd::new()).collect::<Result<Vec<_>>>()?;
        let mut set = uapi::IrqSetEventfds {
            hdr: uapi::IrqSet {
                argsz: argsz::<uapi::IrqSet>() + 4 * count,
                flags: uapi::VFIO_IRQ_SET_DATA_EVENTFD | uapi::VFIO_IRQ_SET_ACTION_TRIGGER,
                index: uapi::VFIO_PCI_MSIX_IRQ_INDEX,
                start: 0,
                count,
            },
            fds: [-1; uapi::IrqSetEventfds::MAX],
        };
        for (slot, fd) in set.fds.iter_mut().zip(&fds) {
            *slot = fd.fd.as_raw_fd();
        }
        // SAFETY: set holds the header followed by `count` eventfds, as argsz says.
        unsafe {
            ioctl(self.file.as_raw_fd(), uapi::VFIO_DEVICE_SET_IRQS, &set as *const _ as _, "SET_IRQS")?
        };
        self.msix_enabled.store(true, Ordering::Relaxed);
        Ok(fds)
    }

    /// Disable MSI-X (`SET_IRQS` with count 0). Quiesce the device first: QEMU 7.2's e1000e
    /// aborts if MSI-X goes away while its throttling timer is armed.
    pub fn disable_msix(&self) -> Result<()> {
        let set = uapi::IrqSet {
            argsz: argsz::<uapi::IrqSet>(),
            flags: uapi::VFIO_IRQ_SET_DATA_NONE | uapi::VFIO_IRQ_SET_ACTION_TRIGGER,
            index: uapi::VFIO_PCI_MSIX_IRQ_INDEX,
            start: 0,
            count: 0,
        };
        // SAFETY: set is a live vfio_irq_set without data.
        unsafe {
            ioctl(self.file.as_raw_fd(), uapi::VFIO_DEVICE_SET_IRQS, &set as *const _ as _, "SET_IRQS off")?
        };
        self.msix_enabled.store(false, Ordering::Relaxed);
        Ok(())
    }

    /// Function-level reset (`VFIO_DEVICE_RESET`).
    pub fn reset(&self) -> Result<()> {
        if !self.can_reset() {
            return Err(Error::Unsupported("device has no reset"));
        }
        // SAFETY: VFIO_DEVICE_RESET takes no argument.
        unsafe { ioctl(self.file.as_raw_fd(), uapi::VFIO_DEVICE_RESET, 0, "VFIO_DEVICE_RESET")? };
        Ok(())
    }
}

impl ConfigSpace for VfioDevice {
    fn read_config(&self, offset: u16, buf: &mut [u8]) -> Result<()> {
        let r = self.config_region()?;
        check_range(offset.into(), buf.len() as u64, r.size)?;
        self.file
            .read_exact_at(buf, r.offset + u64::from(offset))
            .map_err(|e| Error::Os { what: format!("config read at {offset:#x}"), source: e })
    }
}

impl Drop for VfioDevice {
    fn drop(&mut self) {
        if *self.msix_enabled.get_mut() {
            let _ = self.disable_msix();
        }
    }
}

fn check_range(offset: u64, size: u64, len: u64) -> Result<()> {
    match offset.checked_add(size) {
        Some(end) if end <= len => Ok(()),
        _ => Err(Error::OutOfBounds { offset, size, len }),
    }
}

/// An mmapped BAR; unmapped on drop. Registers are reached through [`MappedBar::mmio`].
#[derive(Debug)]
pub struct MappedBar<'d> {
    base: NonNull<u8>,
    len: usize,
    _dev: core::marker::PhantomData<&'d VfioDevice>,
}

impl MappedBar<'_> {
    /// The bounds-checked register handle over the whole BAR.
    pub fn mmio(&self) -> Mmio<'_> {
        // SAFETY: the mapping lives as long as self; nothing holds references into it.
        unsafe { Mmio::from_raw(self.base, self.len) }
    }

    /// BAR size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the BAR is empty (never, for a mapped one).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for MappedBar<'_> {
    fn drop(&mut self) {
        // SAFETY: base/len are the mapping made in map_bar; no handle outlives self.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// Memory mapped into the IOMMU at a fixed IOVA. The device reads and writes it concurrently,
/// so it is only reachable as [`SharedMem`]. Drop unmaps the IOVA range, then frees the memory.
#[derive(Debug)]
pub struct DmaBuffer {
    container: Arc<Container>,
    ptr: *mut u8,
    size: usize,
    iova: u64,
    mapped: bool,
}

// SAFETY: the buffer is plain memory accessed only through SharedMem's atomic accessors.
unsafe impl Send for DmaBuffer {}

impl DmaBuffer {
    /// The IOVA the device uses for byte 0.
    pub fn iova(&self) -> u64 {
        self.iova
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.size
    }

    /// Whether the buffer is empty (never).
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// The memory, as shared memory (the device is the other party).
    pub fn mem(&self) -> SharedMem<'_> {
        // SAFETY: page-aligned mapping owned by self; all access goes through SharedMem.
        unsafe { SharedMem::new(self.ptr, self.size) }.expect("mmap returns page-aligned memory")
    }
}

impl Drop for DmaBuffer {
    fn drop(&mut self) {
        if self.mapped {
            // Failure (e.g. the group already left the container) means the kernel has dropped
            // the mapping already.
            let _ = self.container.unmap_dma(self.iova, self.size as u64);
        }
        // SAFETY: ptr/size are the mapping made in dma_alloc; the device can no longer reach it.
        unsafe { libc::munmap(self.ptr.cast(), self.size) };
    }
}

/// An eventfd signalled by an interrupt vector.
#[derive(Debug)]
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    /// A new non-blocking eventfd.
    pub fn new() -> Result<Self> {
        // SAFETY: plain syscall.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(Error::os("eventfd"));
        }
        // SAFETY: fresh fd owned by nobody else.
        Ok(EventFd { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    /// Wait up to `timeout` for the counter to become non-zero; returns and clears it
    /// (`None` on timeout).
    pub fn wait(&self, timeout: Duration) -> Result<Option<u64>> {
        let mut p = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
        // SAFETY: one live pollfd.
        let r = unsafe { libc::poll(&mut p, 1, ms) };
        if r < 0 {
            return Err(Error::os("poll eventfd"));
        }
        if r == 0 {
            return Ok(None);
        }
        let mut v = 0u64;
        // SAFETY: reads 8 bytes into v.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
        if n != 8 {
            return Err(Error::os("read eventfd"));
        }
        Ok(Some(v))
    }

    /// Add 1 to the counter (as an interrupt would).
    pub fn signal(&self) -> Result<()> {
        let one = 1u64;
        // SAFETY: writes 8 bytes from one.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        if n != 8 {
            return Err(Error::os("write eventfd"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bdf_validation() {
        assert!(valid_bdf("0000:00:02.0"));
        assert!(valid_bdf("0000:af:1f.7"));
        assert!(!valid_bdf("0000:00:02.8"));
        assert!(!valid_bdf("00:02.0"));
        assert!(!valid_bdf("0000:00:02.0/../x"));
        assert!(!valid_bdf("0000/00:02.0"));
    }

    #[test]
    fn config_range_checks() {
        assert!(check_range(252, 4, 256).is_ok());
        assert!(check_range(253, 4, 256).is_err());
        assert!(check_range(u64::MAX, 2, 256).is_err());
    }

    fn info_fixture() -> Vec<u8> {
        // header: argsz, flags=PGSIZES|CAPS, pgsizes, cap_offset=24, pad
        let mut b = Vec::new();
        b.extend(64u32.to_ne_bytes());
        b.extend(3u32.to_ne_bytes());
        b.extend(0x4020_1000u64.to_ne_bytes());
        b.extend(24u32.to_ne_bytes());
        b.extend(0u32.to_ne_bytes());
        // cap header id=1 version=1 next=0, nr_iovas=2, reserved
        b.extend(1u16.to_ne_bytes());
        b.extend(1u16.to_ne_bytes());
        b.extend(0u32.to_ne_bytes());
        b.extend(2u32.to_ne_bytes());
        b.extend(0u32.to_ne_bytes());
        for (s, e) in [(0u64, 0xfedf_ffffu64), (0xfef0_0000, 0x7f_ffff_ffff)] {
            b.extend(s.to_ne_bytes());
            b.extend(e.to_ne_bytes());
        }
        b
    }

    #[test]
    fn parses_iova_ranges() {
        let info = parse_iommu_info(&info_fixture()).unwrap();
        assert_eq!(info.page_sizes, 0x4020_1000);
        assert_eq!(info.iova_ranges, [(0, 0xfedf_ffff), (0xfef0_0000, 0x7f_ffff_ffff)]);
    }

    #[test]
    fn bad_iommu_info_chains_are_errors() {
        let mut b = info_fixture();
        b[24 + 8] = 9; // nr_iovas = 9: runs past the buffer
        assert!(parse_iommu_info(&b).is_err());
        let mut b = info_fixture();
        b[24 + 4] = 24; // next points to itself
        assert!(parse_iommu_info(&b).is_err());
        let mut b = info_fixture();
        b[16] = 8; // cap_offset inside the header
        assert!(parse_iommu_info(&b).is_err());
        let mut b = info_fixture();
        b[4] = 1; // no CAPS flag: ranges ignored
        assert!(parse_iommu_info(&b).unwrap().iova_ranges.is_empty());
    }

    #[test]
    fn eventfd_signal_and_timeout() {
        let e = EventFd::new().unwrap();
        assert_eq!(e.wait(Duration::from_millis(1)).unwrap(), None);
        e.signal().unwrap();
        e.signal().unwrap();
        assert_eq!(e.wait(Duration::from_millis(100)).unwrap(), Some(2));
        assert_eq!(e.wait(Duration::from_millis(1)).unwrap(), None);
    }
}
