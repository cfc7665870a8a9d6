//! PCI config space parsing: the capability list, MSI-X and virtio vendor capabilities.
//! Pure over [`ConfigSpace`], so it is tested on fixtures. The device writes its config space:
//! every pointer is checked (inside the 256-byte standard space, past the header, dword
//! aligned) and the walk stops on a loop.

use super::{Error, Result};

/// Standard config space offsets and ids.
pub mod regs {
    /// Vendor ID (16 bit).
    pub const VENDOR_ID: u16 = 0x00;
    /// Device ID (16 bit).
    pub const DEVICE_ID: u16 = 0x02;
    /// Command register (16 bit).
    pub const COMMAND: u16 = 0x04;
    /// Status register (16 bit).
    pub const STATUS: u16 = 0x06;
    /// Capabilities pointer (8 bit).
    pub const CAP_PTR: u16 = 0x34;
    /// Status: capability list present.
    pub const STATUS_CAP_LIST: u16 = 1 << 4;
    /// Command: memory space enable.
    pub const COMMAND_MEMORY: u16 = 1 << 1;
    /// Command: bus master enable.
    pub const COMMAND_MASTER: u16 = 1 << 2;
    /// Capability id: MSI-X.
    pub const CAP_ID_MSIX: u8 = 0x11;
    /// Capability id: vendor specific (virtio uses it).
    pub const CAP_ID_VENDOR: u8 = 0x09;
}

/// Read access to a device's config space.
pub trait ConfigSpace {
    /// Read `buf.len()` bytes at `offset`.
    fn read_config(&self, offset: u16, buf: &mut [u8]) -> Result<()>;

    /// Read a byte.
    fn config_u8(&self, offset: u16) -> Result<u8> {
        let mut b = [0u8; 1];
        self.read_config(offset, &mut b)?;
        Ok(b[0])
    }
    /// Read a little-endian 16-bit value.
    fn config_u16(&self, offset: u16) -> Result<u16> {
        let mut b = [0u8; 2];
        self.read_config(offset, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }
    /// Read a little-endian 32-bit value.
    fn config_u32(&self, offset: u16) -> Result<u32> {
        let mut b = [0u8; 4];
        self.read_config(offset, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
}

/// A config space image in memory (fixtures, snapshots).
impl ConfigSpace for [u8] {
    fn read_config(&self, offset: u16, buf: &mut [u8]) -> Result<()> {
        let start = offset as usize;
        let src = self.get(start..start + buf.len()).ok_or(Error::OutOfBounds {
            offset: offset.into(),
            size: buf.len() as u64,
            len: self.len() as u64,
        })?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// One entry of the capability list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capability {
    /// Offset of the capability in config space.
    pub offset: u8,
    /// Capability id.
    pub id: u8,
}

/// Walk the standard capability list. An empty list when the status register says there is none.
pub fn capabilities<C: ConfigSpace + ?Sized>(cfg: &C) -> Result<Vec<Capability>> {
    let mut caps = Vec::new();
    if cfg.config_u16(regs::STATUS)? & regs::STATUS_CAP_LIST == 0 {
        return Ok(caps);
    }
    let mut visited = [false; 64];
    let mut ptr = cfg.config_u8(regs::CAP_PTR)?;
    while ptr != 0 {
        if ptr < 0x40 || ptr & 3 != 0 {
            return Err(Error::BadConfig(format!("capability pointer {ptr:#x}")));
        }
        let slot = &mut visited[(ptr >> 2) as usize];
        if *slot {
            return Err(Error::BadConfig(format!("capability list loops at {ptr:#x}")));
        }
        *slot = true;
        let id = cfg.config_u8(ptr.into())?;
        caps.push(Capability { offset: ptr, id });
        ptr = cfg.config_u8(u16::from(ptr) + 1)?;
    }
    Ok(caps)
}

/// The MSI-X capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsixCap {
    /// Offset of the capability.
    pub offset: u8,
    /// Number of vectors (table size).
    pub table_size: u16,
    /// BAR holding the vector table.
    pub table_bar: u8,
    /// Offset of the table in that BAR.
    pub table_offset: u32,
    /// BAR holding the pending-bit array.
    pub pba_bar: u8,
    /// Offset of the PBA in that BAR.
    pub pba_offset: u32,
}

fn bir(v: u32) -> Result<u8> {
    match (v & 7) as u8 {
        b @ 0..=5 => Ok(b),
        b => Err(Error::BadConfig(format!("BAR indicator {b}"))),
    }
}

/// Parse the MSI-X capability at `cap` (which must have id [`regs::CAP_ID_MSIX`]).
pub fn parse_msix<C: ConfigSpace + ?Sized>(cfg: &C, cap: Capability) -> Result<MsixCap> {
    if cap.id != regs::CAP_ID_MSIX {
        return Err(Error::Invalid(format!("capability id {:#x} is not MSI-X", cap.id)));
    }
    let o = u16::from(cap.offset);
    let ctrl = cfg.config_u16(o + 2)?;
    let table = cfg.config_u32(o + 4)?;
    let pba = cfg.config_u32(o + 8)?;
    Ok(MsixCap {
        offset: cap.offset,
        table_size: (ctrl & 0x7ff) + 1,
        table_bar: bir(table)?,
        table_offset: table & !7,
        pba_bar: bir(pba)?,
        pba_offset: pba & !7,
    })
}

/// A virtio PCI vendor capability (`struct virtio_pci_cap`, virtio 1.2 §4.1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtioCap {
    /// `cfg_type`: 1 common, 2 notify, 3 ISR, 4 device, 5 PCI cfg access.
    pub cfg_type: u8,
    /// BAR index (0..=5).
    pub bar: u8,
    /// Offset in the BAR.
    pub offset: u32,
    /// Length of the structure.
    pub length: u32,
    /// `notify_off_multiplier`, for the notify capability only.
    pub notify_off_multiplier: Option<u32>,
}

impl VirtioCap {
    /// `VIRTIO_PCI_CAP_COMMON_CFG`.
    pub const COMMON_CFG: u8 = 1;
    /// `VIRTIO_PCI_CAP_NOTIFY_CFG`.
    pub const NOTIFY_CFG: u8 = 2;
    /// `VIRTIO_PCI_CAP_ISR_CFG`.
    pub const ISR_CFG: u8 = 3;
    /// `VIRTIO_PCI_CAP_DEVICE_CFG`.
    pub const DEVICE_CFG: u8 = 4;
}

/// Parse a virtio vendor capability at `cap` (id [`regs::CAP_ID_VENDOR`]).
pub fn parse_virtio<C: ConfigSpace + ?Sized>(cfg: &C, cap: Capability) -> Result<VirtioCap> {
    if cap.id != regs::CAP_ID_VENDOR {
        return Err(Error::Invalid(format!("capability id {:#x} is not vendor specific", cap.id)));
    }
    let o = u16::from(cap.offset);
    let cap_len = cfg.config_u8(o + 2)?;
    let cfg_type = cfg.config_u8(o + 3)?;
    let need = if cfg_type == VirtioCap::NOTIFY_CFG { 20 } else { 16 };
    if cap_len < need {
        return Err(Error::BadConfig(format!("virtio cap at {o:#x}: cap_len {cap_len} < {need}")));
    }
    let bar = cfg.config_u8(o + 4)?;
    if cfg_type != 5 && bar > 5 {
        return Err(Error::BadConfig(format!("virtio cap at {o:#x}: BAR {bar}")));
    }
    Ok(VirtioCap {
        cfg_type,
        bar,
        offset: cfg.config_u32(o + 8)?,
        length: cfg.config_u32(o + 12)?,
        notify_off_multiplier: if cfg_type == VirtioCap::NOTIFY_CFG {
            Some(cfg.config_u32(o + 16)?)
        } else {
            None
        },
    })
}

/// The first virtio capability of each type, by walking the list.
pub fn virtio_caps<C: ConfigSpace + ?Sized>(cfg: &C) -> Result<Vec<VirtioCap>> {
    let mut out: Vec<VirtioCap> = Vec::new();
    for cap in capabilities(cfg)? {
        if cap.id == regs::CAP_ID_VENDOR {
            let v = parse_virtio(cfg, cap)?;
            if !out.iter().any(|o| o.cfg_type == v.cfg_type) {
                out.push(v);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Capability layout of QEMU 7.2's `virtio-net-pci,disable-legacy=on,iommu_platform=on` as
    /// `vfio_probe` printed it in the VM test: MSI-X (4 vectors, BAR1) at 0x98, then vendor caps
    /// 0x84 PCI-cfg access, 0x70 notify, 0x60 device, 0x50 ISR, 0x40 common, all in BAR4.
    pub(crate) fn virtio_net_fixture() -> [u8; 256] {
        let mut c = [0u8; 256];
        c[0..4].copy_from_slice(&[0xf4, 0x1a, 0x41, 0x10]);
        c[6] = 0x10; // status: cap list
        c[0x34] = 0x98;
        // MSI-X: id 0x11 next 0x84, ctrl = 3 (4 vectors), table BAR1 @0, PBA BAR1 @0x800
        c[0x98..0xa4].copy_from_slice(&[0x11, 0x84, 0x03, 0x00, 0x01, 0, 0, 0, 0x01, 0x08, 0, 0]);
        let vcap = |c: &mut [u8; 256], at: usize, next: u8, len: u8, ty: u8, off: u32, l: u32| {
            c[at] = 0x09;
            c[at + 1] = next;
            c[at + 2] = len;
            c[at + 3] = ty;
            c[at + 4] = 4; // BAR4
            c[at + 8..at + 12].copy_from_slice(&off.to_le_bytes());
            c[at + 12..at + 16].copy_from_slice(&l.to_le_bytes());
        };
        vcap(&mut c, 0x84, 0x70, 0x14, 5, 0, 0); // pci cfg access
        c[0x84 + 4] = 0;
        vcap(&mut c, 0x70, 0x60, 0x14, 2, 0x3000, 0x1000); // notify
        c[0x70 + 16..0x70 + 20].copy_from_slice(&4u32.to_le_bytes());
        vcap(&mut c, 0x60, 0x50, 0x10, 4, 0x2000, 0x1000); // device
        vcap(&mut c, 0x50, 0x40, 0x10, 3, 0x1000, 0x1000); // isr
        vcap(&mut c, 0x40, 0x00, 0x10, 1, 0x0000, 0x1000); // common
        c
    }

    #[test]
    fn walks_the_list_in_order() {
        let c = virtio_net_fixture();
        let caps = capabilities(&c[..]).unwrap();
        let got: Vec<(u8, u8)> = caps.iter().map(|c| (c.offset, c.id)).collect();
        assert_eq!(got, [(0x98, 0x11), (0x84, 9), (0x70, 9), (0x60, 9), (0x50, 9), (0x40, 9)]);
    }

    #[test]
    fn parses_msix() {
        let c = virtio_net_fixture();
        let m = parse_msix(&c[..], Capability { offset: 0x98, id: 0x11 }).unwrap();
        assert_eq!(
            m,
            MsixCap {
                offset: 0x98,
                table_size: 4,
                table_bar: 1,
                table_offset: 0,
                pba_bar: 1,
                pba_offset: 0x800
            }
        );
        assert!(parse_msix(&c[..], Capability { offset: 0x84, id: 9 }).is_err());
    }

    #[test]
    fn finds_virtio_structures() {
        let c = virtio_net_fixture();
        let v = virtio_caps(&c[..]).unwrap();
        let common = v.iter().find(|v| v.cfg_type == VirtioCap::COMMON_CFG).unwrap();
        assert_eq!((common.bar, common.offset, common.length), (4, 0, 0x1000));
        let notify = v.iter().find(|v| v.cfg_type == VirtioCap::NOTIFY_CFG).unwrap();
        assert_eq!((notify.offset, notify.notify_off_multiplier), (0x3000, Some(4)));
        let dev = v.iter().find(|v| v.cfg_type == VirtioCap::DEVICE_CFG).unwrap();
        assert_eq!(dev.offset, 0x2000);
        assert_eq!(v.len(), 5);
    }

    #[test]
    fn no_cap_list_bit_means_no_capabilities() {
        let mut c = virtio_net_fixture();
        c[6] = 0;
        assert!(capabilities(&c[..]).unwrap().is_empty());
    }

    #[test]
    fn hostile_lists_are_errors_not_hangs() {
        let mut c = virtio_net_fixture();
        c[0x41] = 0x98; // last cap points back to the first: loop
        assert!(matches!(capabilities(&c[..]), Err(Error::BadConfig(m)) if m.contains("loops")));
        let mut c = virtio_net_fixture();
        c[0x34] = 0x20; // into the header
        assert!(capabilities(&c[..]).is_err());
        let mut c = virtio_net_fixture();
        c[0x34] = 0x99; // misaligned
        assert!(capabilities(&c[..]).is_err());
        let mut c = virtio_net_fixture();
        c[0x98 + 4] = 7; // MSI-X table BIR 7
        assert!(parse_msix(&c[..], Capability { offset: 0x98, id: 0x11 }).is_err());
        let mut c = virtio_net_fixture();
        c[0x40 + 4] = 9; // common cfg in BAR 9
        assert!(virtio_caps(&c[..]).is_err());
        let mut c = virtio_net_fixture();
        c[0x70 + 2] = 0x10; // notify cap too short for its multiplier
        assert!(virtio_caps(&c[..]).is_err());
        let short = [0, 0, 0, 0, 0, 0, 0x10, 0u8]; // cap list bit set, no pointer
        assert!(capabilities(&short[..]).is_err(), "truncated config space");
    }
}
