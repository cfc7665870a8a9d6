//! The few `linux/vfio.h` structures, flags and ioctl numbers the wrapper uses (container/group API,
//! type1 IOMMU). Hand-written: every structure is plain `u32`/`u64` fields, and the tests pin sizes,
//! offsets and ioctl numbers to the values the kernel UAPI header gives (taken from
//! `linux-libc-dev` 6.1 with a C program printing `sizeof`/`offsetof`/the macros).

/// `VFIO_API_VERSION`.
pub const VFIO_API_VERSION: i32 = 0;
/// `VFIO_TYPE1v2_IOMMU`.
pub const VFIO_TYPE1V2_IOMMU: u32 = 3;

const VFIO_TYPE: u32 = b';' as u32;
const VFIO_BASE: u32 = 100;
/// `_IO(VFIO_TYPE, VFIO_BASE + nr)`: direction and size bits are 0 for every VFIO ioctl.
const fn vfio_io(nr: u32) -> u64 {
    ((VFIO_TYPE << 8) | (VFIO_BASE + nr)) as u64
}

/// `VFIO_GET_API_VERSION`.
pub const VFIO_GET_API_VERSION: u64 = vfio_io(0);
/// `VFIO_CHECK_EXTENSION`.
pub const VFIO_CHECK_EXTENSION: u64 = vfio_io(1);
/// `VFIO_SET_IOMMU`.
pub const VFIO_SET_IOMMU: u64 = vfio_io(2);
/// `VFIO_GROUP_GET_STATUS`.
pub const VFIO_GROUP_GET_STATUS: u64 = vfio_io(3);
/// `VFIO_GROUP_SET_CONTAINER`.
pub const VFIO_GROUP_SET_CONTAINER: u64 = vfio_io(4);
/// `VFIO_GROUP_UNSET_CONTAINER`.
pub const VFIO_GROUP_UNSET_CONTAINER: u64 = vfio_io(5);
/// `VFIO_GROUP_GET_DEVICE_FD`.
pub const VFIO_GROUP_GET_DEVICE_FD: u64 = vfio_io(6);
/// `VFIO_DEVICE_GET_INFO`.
pub const VFIO_DEVICE_GET_INFO: u64 = vfio_io(7);
/// `VFIO_DEVICE_GET_REGION_INFO`.
pub const VFIO_DEVICE_GET_REGION_INFO: u64 = vfio_io(8);
/// `VFIO_DEVICE_GET_IRQ_INFO`.
pub const VFIO_DEVICE_GET_IRQ_INFO: u64 = vfio_io(9);
/// `VFIO_DEVICE_SET_IRQS`.
pub const VFIO_DEVICE_SET_IRQS: u64 = vfio_io(10);
/// `VFIO_DEVICE_RESET`.
pub const VFIO_DEVICE_RESET: u64 = vfio_io(11);
/// `VFIO_IOMMU_GET_INFO`.
pub const VFIO_IOMMU_GET_INFO: u64 = vfio_io(12);
/// `VFIO_IOMMU_MAP_DMA`.
pub const VFIO_IOMMU_MAP_DMA: u64 = vfio_io(13);
/// `VFIO_IOMMU_UNMAP_DMA`.
pub const VFIO_IOMMU_UNMAP_DMA: u64 = vfio_io(14);

/// `VFIO_GROUP_FLAGS_VIABLE`.
pub const VFIO_GROUP_FLAGS_VIABLE: u32 = 1;
/// `VFIO_DEVICE_FLAGS_RESET`.
pub const VFIO_DEVICE_FLAGS_RESET: u32 = 1;
/// `VFIO_DEVICE_FLAGS_PCI`.
pub const VFIO_DEVICE_FLAGS_PCI: u32 = 2;
/// `VFIO_REGION_INFO_FLAG_READ`.
pub const VFIO_REGION_INFO_FLAG_READ: u32 = 1;
/// `VFIO_REGION_INFO_FLAG_WRITE`.
pub const VFIO_REGION_INFO_FLAG_WRITE: u32 = 2;
/// `VFIO_REGION_INFO_FLAG_MMAP`.
pub const VFIO_REGION_INFO_FLAG_MMAP: u32 = 4;
/// `VFIO_PCI_CONFIG_REGION_INDEX`.
pub const VFIO_PCI_CONFIG_REGION_INDEX: u32 = 7;
/// `VFIO_PCI_MSIX_IRQ_INDEX`.
pub const VFIO_PCI_MSIX_IRQ_INDEX: u32 = 2;
/// `VFIO_IRQ_SET_DATA_NONE`.
pub const VFIO_IRQ_SET_DATA_NONE: u32 = 1;
/// `VFIO_IRQ_SET_DATA_EVENTFD`.
pub const VFIO_IRQ_SET_DATA_EVENTFD: u32 = 4;
/// `VFIO_IRQ_SET_ACTION_TRIGGER`.
pub const VFIO_IRQ_SET_ACTION_TRIGGER: u32 = 0x20;
/// `VFIO_IOMMU_INFO_CAPS`.
pub const VFIO_IOMMU_INFO_CAPS: u32 = 2;
/// `VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE`.
pub const VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE: u16 = 1;
/// `VFIO_DMA_MAP_FLAG_READ`.
pub const VFIO_DMA_MAP_FLAG_READ: u32 = 1;
/// `VFIO_DMA_MAP_FLAG_WRITE`.
pub const VFIO_DMA_MAP_FLAG_WRITE: u32 = 2;

/// `struct vfio_group_status`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct GroupStatus {
    /// `argsz`.
    pub argsz: u32,
    /// `flags`.
    pub flags: u32,
}

/// `struct vfio_device_info`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct DeviceInfo {
    /// `argsz`.
    pub argsz: u32,
    /// `flags`.
    pub flags: u32,
    /// `num_regions`.
    pub num_regions: u32,
    /// `num_irqs`.
    pub num_irqs: u32,
    /// `cap_offset`.
    pub cap_offset: u32,
}

/// `struct vfio_region_info`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct RegionInfo {
    /// `argsz`.
    pub argsz: u32,
    /// `flags`.
    pub flags: u32,
    /// `index`.
    pub index: u32,
    /// `cap_offset`.
    pub cap_offset: u32,
    /// `size`.
    pub size: u64,
    /// `offset` of the region in the device fd.
    pub offset: u64,
}

/// `struct vfio_irq_info`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IrqInfo {
    /// `argsz`.
    pub argsz: u32,
    /// `flags`.
    pub flags: u32,
    /// `index`.
    pub index: u32,
    /// `count`.
    pub count: u32,
}

/// `struct vfio_irq_set` header (the eventfd array follows it: see [`IrqSetEventfds`]).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IrqSet {
    /// `argsz`.
    pub argsz: u32,
    /// `flags`.
    pub flags: u32,
    /// `index`.
    pub index: u32,
    /// `start`.
    pub start: u32,
    /// `count`.
    pub count: u32,
}

/// `struct vfio_irq_set` with room for up to [`IrqSetEventfds::MAX`] eventfds after the header.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct IrqSetEventfds {
    /// The header; `argsz` covers only the eventfds actually used.
    pub hdr: IrqSet,
    /// `data[]`: one eventfd per vector.
    pub fds: [i32; IrqSetEventfds::MAX],
}

impl IrqSetEventfds {
    /// Vectors one call can set (the e1000e has 5 MSI-X vectors, virtio-net 3 by default).
    pub const MAX: usize = 64;
}

/// `struct vfio_iommu_type1_info` (header; capabilities follow at `cap_offset`).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IommuType1Info {
    /// `argsz`.
    pub argsz: u32,
    /// `flags`.
    pub flags: u32,
    /// `iova_pgsizes`.
    pub iova_pgsizes: u64,
    /// `cap_offset`.
    pub cap_offset: u32,
    /// Padding (`pad` in the UAPI).
    pub pad: u32,
}

/// `struct vfio_iommu_type1_dma_map`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct DmaMap {
    /// `argsz`.
    pub argsz: u32,
    /// `flags`.
    pub flags: u32,
    /// `vaddr`.
    pub vaddr: u64,
    /// `iova`.
    pub iova: u64,
    /// `size`.
    pub size: u64,
}

/// `struct vfio_iommu_type1_dma_unmap`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct DmaUnmap {
    /// `argsz`.
    pub argsz: u32,
    /// `flags`.
    pub flags: u32,
    /// `iova`.
    pub iova: u64,
    /// `size`.
    pub size: u64,
}

/// `argsz` value for a structure.
pub(crate) fn argsz<T>() -> u32 {
    core::mem::size_of::<T>() as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    /// Values printed by a C program including `<linux/vfio.h>` (linux-libc-dev 6.1).
    #[test]
    fn ioctl_numbers_match_kernel_uapi() {
        let want: [(u64, u64); 15] = [
            (VFIO_GET_API_VERSION, 0x3b64),
            (VFIO_CHECK_EXTENSION, 0x3b65),
            (VFIO_SET_IOMMU, 0x3b66),
            (VFIO_GROUP_GET_STATUS, 0x3b67),
            (VFIO_GROUP_SET_CONTAINER, 0x3b68),
            (VFIO_GROUP_UNSET_CONTAINER, 0x3b69),
            (VFIO_GROUP_GET_DEVICE_FD, 0x3b6a),
            (VFIO_DEVICE_GET_INFO, 0x3b6b),
            (VFIO_DEVICE_GET_REGION_INFO, 0x3b6c),
            (VFIO_DEVICE_GET_IRQ_INFO, 0x3b6d),
            (VFIO_DEVICE_SET_IRQS, 0x3b6e),
            (VFIO_DEVICE_RESET, 0x3b6f),
            (VFIO_IOMMU_GET_INFO, 0x3b70),
            (VFIO_IOMMU_MAP_DMA, 0x3b71),
            (VFIO_IOMMU_UNMAP_DMA, 0x3b72),
        ];
        for (i, (got, exp)) in want.iter().enumerate() {
            assert_eq!(got, exp, "ioctl #{i}");
        }
    }

    #[test]
    fn flags_match_kernel_uapi() {
        assert_eq!(VFIO_TYPE1V2_IOMMU, 3);
        assert_eq!(VFIO_PCI_CONFIG_REGION_INDEX, 7);
        assert_eq!(VFIO_PCI_MSIX_IRQ_INDEX, 2);
        assert_eq!(VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, 0x24);
        assert_eq!(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, 0x21);
        assert_eq!(VFIO_REGION_INFO_FLAG_MMAP, 4);
        assert_eq!(VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE, 3);
    }

    #[test]
    fn struct_layouts_match_kernel_uapi() {
        assert_eq!(size_of::<GroupStatus>(), 8);
        assert_eq!(size_of::<DeviceInfo>(), 0x14);
        assert_eq!(size_of::<RegionInfo>(), 0x20);
        assert_eq!(offset_of!(RegionInfo, size), 0x10);
        assert_eq!(offset_of!(RegionInfo, offset), 0x18);
        assert_eq!(size_of::<IrqInfo>(), 0x10);
        assert_eq!(size_of::<IrqSet>(), 0x14);
        assert_eq!(offset_of!(IrqSetEventfds, fds), 0x14);
        assert_eq!(size_of::<IommuType1Info>(), 0x18);
        assert_eq!(offset_of!(IommuType1Info, iova_pgsizes), 8);
        assert_eq!(offset_of!(IommuType1Info, cap_offset), 0x10);
        assert_eq!(size_of::<DmaMap>(), 0x20);
        assert_eq!(offset_of!(DmaMap, vaddr), 8);
        assert_eq!(offset_of!(DmaMap, iova), 0x10);
        assert_eq!(offset_of!(DmaMap, size), 0x18);
        assert_eq!(size_of::<DmaUnmap>(), 0x18);
        assert_eq!(offset_of!(DmaUnmap, iova), 8);
        assert_eq!(offset_of!(DmaUnmap, size), 0x10);
    }
}
