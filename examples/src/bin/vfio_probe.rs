//! `vfio_probe BDF`: open a PCI NIC already bound to vfio-pci and check the VFIO path end to end.
//!
//! Prints vendor/device, the IOMMU's usable IOVA ranges, BAR0's size and the capability list,
//! resets the device, maps a DMA buffer, routes MSI-X vectors to eventfds, then per device:
//! - e1000e (8086:10d3): reads STATUS/CTRL/MAC, fires an interrupt by software (ICS.LSC) and
//!   waits for its eventfd, transmits one frame by DMA from the mapped buffer (descriptor done),
//!   then transmits from an IOVA that was never mapped and waits (bounded) for the guest
//!   kernel's DMAR fault report in `/dev/kmsg` naming the device and that IOVA;
//! - virtio-net modern (1af4:1041): walks the vendor capabilities to the common configuration
//!   and reads the device features (VERSION_1 and ACCESS_PLATFORM must be offered).
//!
//! Every wait is bounded. The last line is `RESULT <bdf> PASS` or `RESULT <bdf> FAIL`; the exit
//! status is 0 only on PASS. Built static (musl) for the VM harness in `examples/vm/`.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::process::ExitCode;
use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

use pvio_examples::vfio::pci::{self, regs, ConfigSpace, VirtioCap};
use pvio_examples::vfio::{DmaBuffer, Error, Mmio, VfioDevice};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const IOVA_BASE: u64 = 0x1000_0000;
const DMA_SIZE: usize = 2 << 20;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let Some(bdf) = args.get(1) else {
        eprintln!("usage: vfio_probe BDF");
        return ExitCode::from(2);
    };
    let t0 = Instant::now();
    let mut failures = Vec::new();
    if let Err(e) = probe(bdf, &mut failures) {
        failures.push(format!("error: {e}"));
    }
    for f in &failures {
        println!("FAILED: {f}");
    }
    let ok = failures.is_empty();
    println!(
        "RESULT {bdf} {} ({:.1} ms)",
        if ok { "PASS" } else { "FAIL" },
        t0.elapsed().as_secs_f64() * 1e3
    );
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn probe(bdf: &str, failures: &mut Vec<String>) -> Res<()> {
    let dev = VfioDevice::open(bdf)?;
    let vendor = dev.config_u16(regs::VENDOR_ID)?;
    let device = dev.config_u16(regs::DEVICE_ID)?;
    println!(
        "device {bdf}: group={} vendor={vendor:04x} device={device:04x} reset={} irq_indexes={}",
        dev.group().id(),
        dev.can_reset(),
        dev.num_irqs()
    );
    let info = dev.group().container().iommu_info()?;
    print!("iommu: page_sizes={:#x} usable IOVA", info.page_sizes);
    for (s, e) in &info.iova_ranges {
        print!(" [{s:#x}-{e:#x}]");
    }
    println!();
    let end = IOVA_BASE + DMA_SIZE as u64 - 1;
    if !info.iova_ranges.is_empty() && !info.iova_ranges.iter().any(|&(s, e)| s <= IOVA_BASE && end <= e) {
        return Err(format!("IOVA {IOVA_BASE:#x}..{end:#x} not usable").into());
    }
    for r in dev.regions().iter().filter(|r| r.size > 0) {
        println!("region {}: size={:#x} flags={:#x} mmap={}", r.index, r.size, r.flags, r.mmappable());
    }
    // Modern-only virtio-net has no BAR0 (its structures are in BAR4, MSI-X in BAR1).
    for i in 0..6 {
        if let Some(r) = dev.region(i) {
            println!("BAR{i} size={:#x}", r.size);
        }
    }
    let caps = pci::capabilities(&dev)?;
    let list: Vec<String> = caps.iter().map(|c| format!("{:#04x}@{:#04x}", c.id, c.offset)).collect();
    println!("capabilities: {}", list.join(" "));
    let msix = caps.iter().find(|c| c.id == regs::CAP_ID_MSIX).ok_or("no MSI-X capability")?;
    let msix = pci::parse_msix(&dev, *msix)?;
    println!(
        "msix: vectors={} table=BAR{}+{:#x} pba=BAR{}+{:#x}",
        msix.table_size, msix.table_bar, msix.table_offset, msix.pba_bar, msix.pba_offset
    );
    if dev.can_reset() {
        dev.reset()?;
        println!("reset: VFIO_DEVICE_RESET OK");
    }
    let cmd = dev.config_u16(regs::COMMAND)?;
    dev.write_config(regs::COMMAND, &(cmd | regs::COMMAND_MEMORY | regs::COMMAND_MASTER).to_le_bytes())?;
    let dma = dev.dma_alloc(IOVA_BASE, DMA_SIZE)?;
    println!("dma: {} KiB mapped at iova {:#x}", dma.len() >> 10, dma.iova());
    match (vendor, device) {
        (0x8086, 0x10d3) => e1000e(&dev, &dma, failures)?,
        (0x1af4, 0x1041) => virtio_net(&dev, &dma, failures)?,
        _ => failures.push(format!("unknown device {vendor:04x}:{device:04x}")),
    }
    drop(dma);
    println!("teardown: DMA unmapped");
    Ok(())
}

// 82574L registers (datasheet §10.2).
const CTRL: usize = 0x0;
const STATUS: usize = 0x8;
const ICR: usize = 0xc0;
const ICS: usize = 0xc8;
const IMS: usize = 0xd0;
const IMC: usize = 0xd8;
const IVAR: usize = 0xe4;
const RCTL: usize = 0x100;
const TCTL: usize = 0x400;
const TIPG: usize = 0x410;
const TDBAL: usize = 0x3800;
const TDBAH: usize = 0x3804;
const TDLEN: usize = 0x3808;
const TDH: usize = 0x3810;
const TDT: usize = 0x3818;
const RAL0: usize = 0x5400;
const RAH0: usize = 0x5404;

fn e1000e(dev: &VfioDevice, dma: &DmaBuffer, failures: &mut Vec<String>) -> Res<()> {
    let bar = dev.map_bar(0)?;
    let r = bar.mmio();
    let (ral, rah) = (r.read32(RAL0)?, r.read32(RAH0)?);
    let mac =
        [ral as u8, (ral >> 8) as u8, (ral >> 16) as u8, (ral >> 24) as u8, rah as u8, (rah >> 8) as u8];
    let status = r.read32(STATUS)?;
    println!(
        "e1000e: CTRL={:#010x} STATUS={status:#010x} LU={} MAC={}",
        r.read32(CTRL)?,
        (status >> 1) & 1,
        mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
    );
    if bar.len() < 0x4000 || r.read32(bar.len()).is_ok() {
        failures.push("BAR0 handle does not refuse an access past its end".into());
    }
    r.write32(IMC, 0xffff_ffff)?;
    r.read32(ICR)?;
    r.write32(CTRL, r.read32(CTRL)? | 1 << 6)?; // SLU

    let vectors = dev.enable_msix(1)?;
    println!("msix: vector 0 -> eventfd");
    r.write32(IVAR, 0x8008_8888)?; // all causes -> vector 0, valid
    r.write32(IMS, 0x01f0_00d5)?;
    r.write32(ICS, 0x4)?; // LSC by software
    match vectors[0].wait(Duration::from_secs(2))? {
        Some(n) => println!("irq: MSI-X vector 0 fired (eventfd count {n}) -> IRQ OK"),
        None => failures.push("MSI-X vector 0 did not fire within 2 s after ICS.LSC".into()),
    }
    r.read32(ICR)?;

    let mem = dma.mem();
    let frame_off = 0x1000;
    let mut frame = [0u8; 60];
    frame[..6].fill(0xff);
    frame[6..12].copy_from_slice(&mac);
    frame[12..14].copy_from_slice(&[0x88, 0xb5]);
    frame[14..40].copy_from_slice(b"pvio vfio_probe e1000e tx ");
    mem.write_bytes(frame_off, &frame)?;
    let ring = dma.iova();
    r.write32(TDBAL, ring as u32)?;
    r.write32(TDBAH, (ring >> 32) as u32)?;
    r.write32(TDLEN, 8 * 16)?;
    r.write32(TDH, 0)?;
    r.write32(TDT, 0)?;
    r.write32(TIPG, 0x0060_200a)?;
    r.write32(TCTL, 1 << 1 | 1 << 3 | 0x0f << 4 | 0x3f << 12)?; // EN|PSP|CT|COLD

    // Descriptor 0: the mapped frame. Descriptor 1: a frame at an IOVA that was never mapped.
    let good = dma.iova() + frame_off as u64;
    let bad = dma.iova() + dma.len() as u64 + 0x10_0000;
    let ok = e1000e_tx(&r, &mem, 0, good, frame.len() as u16)?;
    println!(
        "e1000e TX from mapped iova {good:#x}: {}",
        if ok { "descriptor done -> TX OK" } else { "no completion" }
    );
    if !ok {
        failures.push("TX from a mapped IOVA not completed within 1 s".into());
    }
    if vectors[0].wait(Duration::from_secs(1))?.is_none() {
        failures.push("no TXDW interrupt after the transmit".into());
    }

    let mut kmsg = Kmsg::open()?;
    let done = e1000e_tx(&r, &mem, 1, bad, frame.len() as u16)?;
    println!(
        "e1000e TX from unmapped iova {bad:#x}: descriptor {} (emulated devices may complete a faulted DMA)",
        if done { "done" } else { "not done within 1 s" }
    );
    let short = &dev.bdf()[5..];
    let want = format!("{:x}", bad & !0xfff);
    match kmsg
        .wait_for(Duration::from_secs(3), |l| l.contains("DMAR") && l.contains(short) && l.contains(&want))?
    {
        Some(line) => println!("negative: IOMMU refused the DMA: {line} -> NEG OK"),
        None => failures.push(format!("no DMAR fault for {short} at {want} in /dev/kmsg within 3 s")),
    }

    // Quiesce before MSI-X goes away (QEMU 7.2 e1000e asserts otherwise), then disable it.
    r.write32(IMC, 0xffff_ffff)?;
    r.write32(RCTL, 0)?;
    r.write32(TCTL, 0)?;
    r.read32(ICR)?;
    std::thread::sleep(Duration::from_millis(50));
    drop(bar);
    dev.disable_msix()?;
    println!("teardown: e1000e quiesced, MSI-X disabled");
    Ok(())
}

/// Post legacy TX descriptor `i` (ring at offset 0 of the buffer) for `len` bytes at `iova`, ring
/// the doorbell and wait up to 1 s for descriptor done.
fn e1000e_tx(r: &Mmio<'_>, mem: &pvio_ring::shm::SharedMem<'_>, i: usize, iova: u64, len: u16) -> Res<bool> {
    let d = 16 * i;
    mem.write(d, &iova)?;
    let cmd: u64 = 0x01 | 0x02 | 0x08; // EOP | IFCS | RS
    mem.write(d + 8, &(u64::from(len) | cmd << 24))?;
    // The device reads the descriptor after the doorbell: the descriptor stores must be
    // visible first (pairs with the device's read of the ring after the TDT write).
    fence(Ordering::SeqCst);
    r.write32(TDT, (i + 1) as u32)?;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(1) {
        if mem.read::<u8>(d + 12)? & 1 != 0 {
            return Ok(true);
        }
        std::thread::yield_now();
    }
    Ok(false)
}

/// The kernel log, read from the current end (older messages are skipped).
struct Kmsg(std::fs::File);

impl Kmsg {
    fn open() -> Res<Self> {
        let f = std::fs::File::options().read(true).custom_flags(libc::O_NONBLOCK).open("/dev/kmsg")?;
        // SAFETY: seek an fd we own.
        if unsafe { libc::lseek(std::os::fd::AsRawFd::as_raw_fd(&f), 0, libc::SEEK_END) } < 0 {
            return Err(
                Error::Os { what: "seek /dev/kmsg".into(), source: std::io::Error::last_os_error() }.into()
            );
        }
        Ok(Kmsg(f))
    }

    /// Wait up to `timeout` for a record satisfying `pred`; returns its text.
    fn wait_for(&mut self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Res<Option<String>> {
        let t = Instant::now();
        let mut buf = [0u8; 8192];
        while t.elapsed() < timeout {
            match self.0.read(&mut buf) {
                Ok(n) => {
                    let rec = String::from_utf8_lossy(&buf[..n]);
                    let text = rec.split_once(';').map_or(&*rec, |(_, m)| m).trim_end();
                    if pred(text) {
                        return Ok(Some(text.to_owned()));
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => {} // overwritten records: go on
                Err(e) => return Err(e.into()),
            }
        }
        Ok(None)
    }
}

fn virtio_net(dev: &VfioDevice, dma: &DmaBuffer, failures: &mut Vec<String>) -> Res<()> {
    let caps = pci::virtio_caps(dev)?;
    for c in &caps {
        println!("virtio cap: type={} bar={} offset={:#x} len={:#x}", c.cfg_type, c.bar, c.offset, c.length);
    }
    let common = caps.iter().find(|c| c.cfg_type == VirtioCap::COMMON_CFG).ok_or("no virtio common cfg")?;
    if common.length < 0x38 {
        return Err(format!("common cfg length {:#x} < 0x38", common.length).into());
    }
    let bar = dev.map_bar(common.bar.into())?;
    let cc = bar.mmio().window(common.offset as usize, common.length as usize)?;
    cc.write32(0x00, 0)?; // device_feature_select
    let lo = cc.read32(0x04)?;
    cc.write32(0x00, 1)?;
    let hi = cc.read32(0x04)?;
    let features = u64::from(hi) << 32 | u64::from(lo);
    let (v1, ap) = (features >> 32 & 1, features >> 33 & 1);
    println!(
        "virtio-net: common cfg at BAR{}+{:#x}: device_features={features:#018x} VERSION_1={v1} ACCESS_PLATFORM={ap} num_queues={} status={:#x}",
        common.bar,
        common.offset,
        cc.read16(0x12)?,
        cc.read8(0x14)?
    );
    if v1 == 0 || ap == 0 {
        failures.push("virtio-net does not offer VERSION_1 and ACCESS_PLATFORM".into());
        return Ok(());
    }
    let notify = caps.iter().find(|c| c.cfg_type == VirtioCap::NOTIFY_CFG).ok_or("no virtio notify cfg")?;
    let nbar = dev.map_bar(notify.bar.into())?;
    let nw = nbar.mmio().window(notify.offset as usize, notify.length as usize)?;

    // Bring-up (virtio 1.2 §3.1.1): reset, ACKNOWLEDGE|DRIVER, features, FEATURES_OK.
    cc.write8(0x14, 0)?;
    let t = Instant::now();
    while cc.read8(0x14)? != 0 {
        if t.elapsed() > Duration::from_secs(1) {
            return Err("virtio reset not complete within 1 s".into());
        }
    }
    cc.write8(0x14, 1 | 2)?;
    let want = 1u64 << 32 | 1 << 33; // VERSION_1 | ACCESS_PLATFORM: the device DMAs through the IOMMU
    cc.write32(0x08, 0)?;
    cc.write32(0x0c, want as u32)?;
    cc.write32(0x08, 1)?;
    cc.write32(0x0c, (want >> 32) as u32)?;
    cc.write8(0x14, 1 | 2 | 8)?;
    if cc.read8(0x14)? & 8 == 0 {
        return Err("virtio-net refused FEATURES_OK".into());
    }
    let vectors = dev.enable_msix(2)?;
    println!("msix: vectors 0..{} -> eventfds", vectors.len());
    cc.write16(0x10, 0xffff)?; // config_msix_vector: none

    // Transmit queue 1 (size 8): descriptors +0x2000, driver area +0x2100, device area +0x2200.
    let mem = dma.mem();
    mem.fill(0x2000, 0x2000, 0)?;
    let (desc, avail, used, pkt) = (0x2000usize, 0x2100usize, 0x2200usize, 0x3000usize);
    cc.write16(0x16, 1)?;
    cc.write16(0x18, 8)?;
    for (reg, off) in [(0x20, desc), (0x28, avail), (0x30, used)] {
        let iova = dma.iova() + off as u64;
        cc.write32(reg, iova as u32)?;
        cc.write32(reg + 4, (iova >> 32) as u32)?;
    }
    cc.write16(0x1a, 0)?; // queue_msix_vector = 0 (after SET_IRQS, see the lab notes)
    let noff = usize::from(cc.read16(0x1e)?) * notify.notify_off_multiplier.unwrap_or(0) as usize;
    cc.write16(0x1c, 1)?;
    cc.write8(0x14, 1 | 2 | 8 | 4)?; // DRIVER_OK
    println!("virtio-net: txq 1 enabled, status={:#x}", cc.read8(0x14)?);

    // A 12-byte virtio_net_hdr (zero: no offload) and a 60-byte broadcast frame.
    let devcfg = caps.iter().find(|c| c.cfg_type == VirtioCap::DEVICE_CFG).ok_or("no virtio device cfg")?;
    let dbar = dev.map_bar(devcfg.bar.into())?;
    let dc = dbar.mmio().window(devcfg.offset as usize, devcfg.length as usize)?;
    let mut frame = [0u8; 72];
    frame[12..18].fill(0xff);
    for i in 0..6 {
        frame[18 + i] = dc.read8(i)?; // virtio_net_config.mac
    }
    println!(
        "virtio-net: MAC={}",
        frame[18..24].iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
    );
    frame[24..26].copy_from_slice(&[0x88, 0xb5]);
    frame[26..52].copy_from_slice(b"pvio vfio_probe virtio tx ");
    mem.write_bytes(pkt, &frame)?;
    let good = dma.iova() + pkt as u64;
    let bad = dma.iova() + dma.len() as u64 + 0x20_0000;
    let tx = |i: u16, iova: u64| -> Res<bool> {
        let d = desc + 16 * usize::from(i);
        mem.write(d, &iova)?;
        mem.write(d + 8, &(frame.len() as u32))?;
        mem.write(d + 12, &0u32)?; // flags, next
        mem.write(avail + 4 + 2 * usize::from(i), &i)?;
        // The ring entry must be visible before the index that publishes it (pairs with the
        // device reading avail.idx, then the entry).
        fence(Ordering::SeqCst);
        mem.write(avail + 2, &(i + 1))?;
        fence(Ordering::SeqCst); // avail.idx before the notification
        nw.write16(noff, 1)?;
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(1) {
            if mem.read::<u16>(used + 2)? == i + 1 {
                return Ok(true);
            }
            std::thread::yield_now();
        }
        Ok(false)
    };
    if tx(0, good)? {
        println!("virtio-net TX from mapped iova {good:#x}: used.idx=1 -> TX OK");
    } else {
        failures.push("virtio-net TX from a mapped IOVA not completed within 1 s".into());
    }
    match vectors[0].wait(Duration::from_secs(1))? {
        Some(n) => println!("irq: virtio txq used-buffer interrupt on vector 0 (count {n}) -> IRQ OK"),
        None => failures.push("no MSI-X interrupt for the virtio transmit".into()),
    }
    let mut kmsg = Kmsg::open()?;
    let done = tx(1, bad)?;
    println!(
        "virtio-net TX from unmapped iova {bad:#x}: {}",
        if done { "used entry written" } else { "no used entry within 1 s" }
    );
    let short = &dev.bdf()[5..];
    let want = format!("{:x}", bad & !0xfff);
    match kmsg
        .wait_for(Duration::from_secs(3), |l| l.contains("DMAR") && l.contains(short) && l.contains(&want))?
    {
        Some(line) => println!("negative: IOMMU refused the DMA: {line} -> NEG OK"),
        None => failures.push(format!("no DMAR fault for {short} at {want} in /dev/kmsg within 3 s")),
    }
    cc.write8(0x14, 0)?; // reset: the device stops using the queue before MSI-X and the buffer go
    dev.disable_msix()?;
    println!("teardown: device reset, MSI-X disabled");
    Ok(())
}
