//! Page tables built by `pvio-paging` checked against the CPU's own MMU under KVM.
//!
//! A vCPU is put straight into 64-bit mode with CR3 pointing at a PML4 that pvio's `Mapper`
//! built in guest memory; tiny hand-assembled guest code reads, writes or executes through a
//! chosen virtual address and reports the result (or the page fault's CR2 and error code) on
//! I/O ports. Layout and register values follow `shared/mmu/README.md`. One 4 MiB memslot at
//! guest-physical 0: GDT 0x1000, IDT 0x2000, code 0x3000, TSS 0x4000, stack top 0x8000, page
//! tables from 0x10000, data frames 0x200000..0x400000.
//!
//! Prints `skipped: <reason>` and passes when `/dev/kvm` cannot be used.

use std::alloc::{alloc_zeroed, dealloc, Layout};

use kvm_bindings::{kvm_segment, kvm_userspace_memory_region, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use pvio_paging::{
    Levels, MapError, Mapper, PageFlags, PageSizeKind, PhysAddr, PhysFrame, PhysMem, RangeFrameAllocator,
    SliceMem, VirtAddr,
};

const MEM_SIZE: usize = 4 << 20;
const GDT: u64 = 0x1000;
const IDT: u64 = 0x2000;
const CODE_READ: u64 = 0x3000;
const CODE_WRITE: u64 = 0x3100;
const CODE_PF: u64 = 0x3800;
const CODE_OTHER: u64 = 0x3900;
const TSS: u64 = 0x4000;
const STACK_TOP: u64 = 0x8000;
const ROOT: u64 = 0x10000;
const POOL_END: u64 = 0x20_0000;
const DATA: u64 = 0x20_0000;

/// Port numbers the guest code writes to.
const PORT_VALUE: u16 = 0xf0;
const PORT_WROTE: u16 = 0xf1;
const PORT_EXEC: u16 = 0xf2;
const PORT_CR2: u16 = 0xf8;
const PORT_ERR: u16 = 0xf9;
const PORT_OTHER: u16 = 0xfa;

/// `mov rax, [rsi]; out 0xf0, eax; shr rax, 32; out 0xf0, eax; hlt`
const READ_CODE: &[u8] = &[
    0x48, 0x8b, 0x06, // mov rax, qword [rsi]
    0xe7, 0xf0, // out 0xf0, eax        (low half)
    0x48, 0xc1, 0xe8, 0x20, // shr rax, 32
    0xe7, 0xf0, // out 0xf0, eax        (high half)
    0xf4, // hlt
];
/// `mov [rsi], rax; mov al, 1; out 0xf1, al; hlt`
const WRITE_CODE: &[u8] = &[
    0x48, 0x89, 0x06, // mov qword [rsi], rax
    0xb0, 0x01, // mov al, 1
    0xe6, 0xf1, // out 0xf1, al
    0xf4, // hlt
];
/// #PF handler: `mov rax, cr2; out 0xf8, eax; shr rax, 32; out 0xf8, eax; pop rax (error
/// code); out 0xf9, eax; hlt`
const PF_CODE: &[u8] = &[
    0x0f, 0x20, 0xd0, // mov rax, cr2
    0xe7, 0xf8, // out 0xf8, eax        (CR2 low)
    0x48, 0xc1, 0xe8, 0x20, // shr rax, 32
    0xe7, 0xf8, // out 0xf8, eax        (CR2 high)
    0x58, // pop rax              (the error code the CPU pushed)
    0xe7, 0xf9, // out 0xf9, eax
    0xf4, // hlt
];
/// Any other exception: `mov al, 0xee; out 0xfa, al; hlt`
const OTHER_CODE: &[u8] = &[0xb0, 0xee, 0xe6, 0xfa, 0xf4];
/// Placed in a data frame and jumped to: `mov al, 0x5a; out 0xf2, al; hlt`
const EXEC_CODE: &[u8] = &[0xb0, 0x5a, 0xe6, 0xf2, 0xf4];

/// The quadword every data frame holds at physical address `pa` (8-aligned).
fn pattern(pa: u64) -> u64 {
    0xd0d0_0000_0000_0000 | pa
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Value(u64),
    Wrote,
    Executed,
    PageFault { cr2: u64, code: u32 },
    OtherException,
    Shutdown,
}

#[derive(Debug, Clone, Copy)]
enum Probe {
    Read(u64),
    Write(u64, u64),
    Exec(u64),
}

struct HostMem {
    ptr: *mut u8,
    layout: Layout,
}

impl HostMem {
    fn new() -> Self {
        let layout = Layout::from_size_align(MEM_SIZE, 4096).unwrap();
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        assert!(!ptr.is_null(), "allocation failed");
        HostMem { ptr, layout }
    }

    /// The guest's RAM. Only while no vCPU of the VM runs (`probe` holds `&mut self` of the
    /// guest, so this borrow cannot overlap a run).
    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` is a live allocation of MEM_SIZE bytes; the vCPU only touches it
        // inside `VcpuFd::run`, which cannot happen while this borrow lives (see above).
        unsafe { std::slice::from_raw_parts_mut(self.ptr, MEM_SIZE) }
    }
}

impl Drop for HostMem {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; the VM (which maps it) is dropped first
        // because `Guest` declares `mem` after `vm` and `vcpu`.
        unsafe { dealloc(self.ptr, self.layout) }
    }
}

struct Guest {
    vcpu: VcpuFd,
    _vm: VmFd,
    mem: HostMem,
    /// Table frames, shared by every `build` of this guest.
    alloc: RangeFrameAllocator,
    pdpe1gb: bool,
}

/// GDT: null, 64-bit code (0x08), data (0x10), 64-bit TSS (0x18, 16 bytes).
const GDT_WORDS: [u64; 5] = [0, 0x00af_9b00_0000_ffff, 0x00cf_9300_0000_ffff, 0x0000_8b00_4000_0067, 0];

fn seg(selector: u16, type_: u8, l: u8, db: u8) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_,
        present: 1,
        dpl: 0,
        db,
        s: 1,
        l,
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

fn put(bytes: &mut [u8], at: u64, data: &[u8]) {
    bytes[at as usize..at as usize + data.len()].copy_from_slice(data);
}

impl Guest {
    /// A VM with the fixed layout written and the vCPU in long mode with CR3 = ROOT (tables
    /// still empty: the caller builds them with `mapper`).
    fn new(kvm: &Kvm) -> Result<Guest, String> {
        let vm = kvm.create_vm().map_err(|e| format!("KVM_CREATE_VM: {e}"))?;
        let mut mem = HostMem::new();
        let region = kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: MEM_SIZE as u64,
            userspace_addr: mem.ptr as u64,
        };
        // SAFETY: the region is a live allocation owned by `Guest`, which outlives the VM.
        unsafe { vm.set_user_memory_region(region) }.map_err(|e| format!("SET_USER_MEMORY_REGION: {e}"))?;
        let vcpu = vm.create_vcpu(0).map_err(|e| format!("KVM_CREATE_VCPU: {e}"))?;
        let cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(|e| format!("GET_SUPPORTED_CPUID: {e}"))?;
        // CPUID.80000001H:EDX bit 26 = 1 GiB pages.
        let pdpe1gb = cpuid.as_slice().iter().any(|e| e.function == 0x8000_0001 && e.edx & (1 << 26) != 0);
        vcpu.set_cpuid2(&cpuid).map_err(|e| format!("SET_CPUID2: {e}"))?;

        let b = mem.bytes();
        for (i, d) in GDT_WORDS.iter().enumerate() {
            put(b, GDT + 8 * i as u64, &d.to_le_bytes());
        }
        // IDT: vectors 0..32 as interrupt gates (type 0xE, P, DPL 0) on selector 0x08;
        // #PF (14) goes to the fault reporter, everything else to the catch-all.
        for v in 0..32u64 {
            let target = if v == 14 { CODE_PF } else { CODE_OTHER };
            let lo = (target & 0xffff) | (0x08 << 16) | (0x8e00u64 << 32) | ((target >> 16) & 0xffff) << 48;
            put(b, IDT + 16 * v, &lo.to_le_bytes());
            put(b, IDT + 16 * v + 8, &(target >> 32).to_le_bytes());
        }
        put(b, CODE_READ, READ_CODE);
        put(b, CODE_WRITE, WRITE_CODE);
        put(b, CODE_PF, PF_CODE);
        put(b, CODE_OTHER, OTHER_CODE);
        for pa in (DATA..MEM_SIZE as u64).step_by(8) {
            put(b, pa, &pattern(pa).to_le_bytes());
        }

        let mut sregs = vcpu.get_sregs().map_err(|e| format!("GET_SREGS: {e}"))?;
        sregs.cs = seg(0x08, 0xb, 1, 0);
        let data = seg(0x10, 0x3, 0, 1);
        (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (data, data, data, data, data);
        sregs.tr = kvm_segment {
            base: TSS,
            limit: 0x67,
            selector: 0x18,
            type_: 0xb,
            s: 0,
            g: 0,
            db: 0,
            ..seg(0x18, 0xb, 0, 0)
        };
        sregs.gdt.base = GDT;
        sregs.gdt.limit = 5 * 8 - 1;
        sregs.idt.base = IDT;
        sregs.idt.limit = 32 * 16 - 1;
        sregs.cr0 = 0x8001_0033; // PG | WP | NE | ET | MP | PE
        sregs.cr4 = 0xa0; // PAE | PGE
        sregs.efer = 0xd00; // LME | LMA | NXE
        sregs.cr3 = ROOT;
        vcpu.set_sregs(&sregs).map_err(|e| format!("SET_SREGS: {e}"))?;
        let alloc =
            RangeFrameAllocator::new(PhysAddr::new(ROOT + 0x1000).unwrap(), PhysAddr::new(POOL_END).unwrap());
        Ok(Guest { vcpu, _vm: vm, mem, alloc, pdpe1gb })
    }

    /// Runs `f` with a 4-level mapper over the guest's RAM rooted at ROOT (pages up to
    /// `max`) and a frame allocator over the table pool, after identity-mapping the low
    /// 1 MiB (GDT, IDT, code, TSS, stack, tables) with 4 KiB pages.
    fn build<R>(
        &mut self,
        max: PageSizeKind,
        f: impl FnOnce(&mut Mapper<SliceMem<'_>>, &mut RangeFrameAllocator) -> R,
    ) -> R {
        let pa = |a| PhysAddr::new(a).unwrap();
        let alloc = &mut self.alloc;
        let mem = SliceMem::new(self.mem.bytes(), pa(0));
        let mut m =
            Mapper::new(mem, PhysFrame::containing_address(pa(ROOT)), Levels::Four).with_max_page_size(max);
        if m.translate(VirtAddr::new(0).unwrap()).is_err() {
            m.map_range(VirtAddr::new(0).unwrap(), pa(0), 0x10_0000, PageFlags::WRITABLE, alloc)
                .unwrap()
                .ignore();
        }
        f(&mut m, alloc)
    }

    fn probe(&mut self, probe: Probe) -> Outcome {
        let mut regs = self.vcpu.get_regs().unwrap();
        regs.rflags = 2;
        regs.rsp = STACK_TOP;
        regs.rax = 0;
        match probe {
            Probe::Read(va) => (regs.rip, regs.rsi) = (CODE_READ, va),
            Probe::Write(va, v) => (regs.rip, regs.rsi, regs.rax) = (CODE_WRITE, va, v),
            Probe::Exec(va) => regs.rip = va,
        }
        self.vcpu.set_regs(&regs).unwrap();
        let (mut value, mut cr2, mut words, mut cr2_words) = (0u64, 0u64, 0, 0);
        let mut result = None;
        for _ in 0..16 {
            match self.vcpu.run().expect("KVM_RUN") {
                VcpuExit::IoOut(port, data) => {
                    let mut w = [0u8; 4];
                    w[..data.len()].copy_from_slice(data);
                    let w = u32::from_le_bytes(w) as u64;
                    match port {
                        PORT_VALUE => {
                            value |= w << (32 * words);
                            words += 1;
                        }
                        PORT_WROTE => result = Some(Outcome::Wrote),
                        PORT_EXEC if w == 0x5a => result = Some(Outcome::Executed),
                        PORT_CR2 => {
                            cr2 |= w << (32 * cr2_words);
                            cr2_words += 1;
                        }
                        PORT_ERR => result = Some(Outcome::PageFault { cr2, code: w as u32 }),
                        PORT_OTHER => result = Some(Outcome::OtherException),
                        other => panic!("unexpected out to port {other:#x}"),
                    }
                }
                VcpuExit::Hlt => {
                    return match result {
                        Some(r) => r,
                        None if words == 2 => Outcome::Value(value),
                        None => panic!("guest halted without reporting ({probe:?})"),
                    }
                }
                VcpuExit::Shutdown => return Outcome::Shutdown,
                other => panic!("unexpected exit {other:?} for {probe:?}"),
            }
        }
        panic!("guest did not halt for {probe:?}");
    }
}

/// A fresh guest, or `None` (after printing why) when KVM is unavailable.
fn guest() -> Option<Guest> {
    match Kvm::new().map_err(|e| format!("opening /dev/kvm: {e}")).and_then(|kvm| Guest::new(&kvm)) {
        Ok(g) => Some(g),
        Err(e) => {
            println!("skipped: {e}");
            None
        }
    }
}

fn va(a: u64) -> VirtAddr {
    VirtAddr::new(a).unwrap()
}

fn pa(a: u64) -> PhysAddr {
    PhysAddr::new(a).unwrap()
}

// Error codes (Intel SDM Vol. 3 4.7): P = 1, W/R = 2, U/S = 4, RSVD = 8, I/D = 16.
const PF_NOT_PRESENT: u32 = 0x0;
const PF_WRITE_PROTECT: u32 = 0x3;
const PF_NX_FETCH: u32 = 0x11;
const PF_RESERVED: u32 = 0x9;

#[test]
fn reads_through_4k_and_2m_mappings() {
    let Some(mut g) = guest() else { return };
    let sizes = g.build(PageSizeKind::Size2MiB, |m, a| {
        let rw = PageFlags::WRITABLE;
        // 16 KiB of 4 KiB pages (physical start not 2 MiB aligned), PAT set: PAT is bit 7 here.
        m.map_range(va(0x4000_0000), pa(DATA + 0x5000), 0x4000, rw | PageFlags::PAT, a).unwrap().ignore();
        // One 2 MiB page, PAT set: PAT must move to bit 12.
        m.map_range(va(0x8000_0000), pa(DATA), 0x20_0000, rw | PageFlags::PAT, a).unwrap().ignore();
        // A global 2 MiB page in the upper half.
        m.map_range(va(0xffff_8000_0000_0000), pa(DATA), 0x20_0000, rw | PageFlags::GLOBAL, a)
            .unwrap()
            .ignore();
        [0x4000_3ff8, 0x8000_0000, 0xffff_8000_001f_fff8].map(|v| m.translate(va(v)).unwrap().size)
    });
    assert_eq!(sizes, [PageSizeKind::Size4KiB, PageSizeKind::Size2MiB, PageSizeKind::Size2MiB]);
    for (v, p) in [
        (0x4000_0000u64, DATA + 0x5000),
        (0x4000_1238, DATA + 0x6238),
        (0x4000_3ff8, DATA + 0x8ff8),
        (0x8000_0000, DATA),
        (0x8001_2340, DATA + 0x1_2340),
        (0x801f_fff8, DATA + 0x1f_fff8),
        (0xffff_8000_0000_0008, DATA + 8),
        (0xffff_8000_0015_5550, DATA + 0x15_5550),
    ] {
        assert_eq!(g.probe(Probe::Read(v)), Outcome::Value(pattern(p)), "read at {v:#x}");
    }
}

#[test]
fn faults_carry_the_exact_error_code() {
    let Some(mut g) = guest() else { return };
    g.build(PageSizeKind::Size2MiB, |m, a| {
        // Read-only page, executable page, NX page holding the same code, read-only 2 MiB page.
        m.map_range(va(0x5000_0000), pa(DATA + 0x1000), 0x1000, PageFlags::empty(), a).unwrap().ignore();
        m.map_range(va(0x6000_0000), pa(DATA + 0x2000), 0x1000, PageFlags::empty(), a).unwrap().ignore();
        m.map_range(va(0x6000_1000), pa(DATA + 0x2000), 0x1000, PageFlags::NO_EXECUTE, a).unwrap().ignore();
        m.map_range(va(0x7000_0000), pa(DATA), 0x20_0000, PageFlags::NO_EXECUTE, a).unwrap().ignore();
        // A 2 MiB page whose PDE then gets bit 13 set by hand: reserved in a PDE with PS.
        m.map_range(va(0x9000_0000), pa(DATA), 0x20_0000, PageFlags::WRITABLE, a).unwrap().ignore();
    });
    put(g.mem.bytes(), DATA + 0x2000, EXEC_CODE);
    // Corrupt the 0x9000_0000 PDE behind the mapper's back and check the mapper sees it too.
    let (pde_addr, raw) = g.build(PageSizeKind::Size2MiB, |m, _| {
        let pml4e = m.mem().read_entry(pa(ROOT)).unwrap();
        let pdpt = pml4e & pvio_paging::bits::ADDR_4K;
        let pdpte = m.mem().read_entry(pa(pdpt + 2 * 8)).unwrap();
        let pd = pdpte & pvio_paging::bits::ADDR_4K;
        let pde_addr = pd + 128 * 8; // 0x9000_0000 >> 21 & 511 = 128
        (pde_addr, m.mem().read_entry(pa(pde_addr)).unwrap())
    });
    assert_eq!(raw & 0x83, 0x83, "a present PS entry");
    put(g.mem.bytes(), pde_addr, &(raw | (1 << 13)).to_le_bytes());
    let seen = g.build(PageSizeKind::Size2MiB, |m, _| m.translate(va(0x9000_0000)));
    assert!(
        matches!(seen, Err(pvio_paging::TranslateError::Reserved(r)) if r.bits == 1 << 13 && r.level == 2)
    );

    let pf = |cr2, code| Outcome::PageFault { cr2, code };
    assert_eq!(g.probe(Probe::Read(0x5000_0008)), Outcome::Value(pattern(DATA + 0x1008)));
    assert_eq!(g.probe(Probe::Write(0x5000_0010, 7)), pf(0x5000_0010, PF_WRITE_PROTECT));
    assert_eq!(g.probe(Probe::Write(0x7000_1000, 7)), pf(0x7000_1000, PF_WRITE_PROTECT));
    assert_eq!(g.probe(Probe::Read(0x4010_0000)), pf(0x4010_0000, PF_NOT_PRESENT));
    assert_eq!(g.probe(Probe::Read(0x6000_2000)), pf(0x6000_2000, PF_NOT_PRESENT));
    assert_eq!(g.probe(Probe::Exec(0x6000_0000)), Outcome::Executed);
    assert_eq!(g.probe(Probe::Exec(0x6000_1000)), pf(0x6000_1000, PF_NX_FETCH));
    assert_eq!(g.probe(Probe::Exec(0x7000_2000)), pf(0x7000_2000, PF_NX_FETCH));
    assert_eq!(g.probe(Probe::Read(0x9000_0040)), pf(0x9000_0040, PF_RESERVED));
    // An allowed write lands where the mapping says (a 4 KiB identity page here).
    assert_eq!(g.probe(Probe::Write(0x9008, 0x1234_5678_9abc_def0)), Outcome::Wrote);
    assert_eq!(g.probe(Probe::Read(0x9008)), Outcome::Value(0x1234_5678_9abc_def0));
    assert_eq!(g.mem.bytes()[0x9008..0x9010], 0x1234_5678_9abc_def0u64.to_le_bytes());
}

#[test]
fn one_gib_pages_fault_reserved_without_pdpe1gb() {
    let Some(mut g) = guest() else { return };
    // The mapper refuses 1 GiB pages when limited to 2 MiB (as it must be on this CPU) ...
    let refused = g.build(PageSizeKind::Size2MiB, |m, a| {
        m.map_page(va(0x80_0000_0000), pa(0), PageSizeKind::Size1GiB, PageFlags::WRITABLE, a)
    });
    assert!(matches!(refused, Err(MapError::SizeNotAllowed { .. })));
    // ... and a 1 GiB mapping forced anyway faults RSVD unless the CPU has PDPE1GB.
    g.build(PageSizeKind::Size1GiB, |m, a| {
        m.map_range(va(0x80_0000_0000), pa(0), 1 << 30, PageFlags::WRITABLE, a).unwrap().ignore();
        assert_eq!(m.translate(va(0x80_0020_0000)).unwrap().size, PageSizeKind::Size1GiB);
    });
    // The rest of the tables still work.
    assert_eq!(g.probe(Probe::Read(GDT + 8)), Outcome::Value(GDT_WORDS[1]));
    let got = g.probe(Probe::Read(0x80_0020_0000));
    if g.pdpe1gb {
        println!("CPUID has PDPE1GB: the 1 GiB page must read through");
        assert_eq!(got, Outcome::Value(pattern(DATA)));
    } else {
        println!("CPUID lacks PDPE1GB: the 1 GiB entry must fault RSVD");
        assert_eq!(got, Outcome::PageFault { cr2: 0x80_0020_0000, code: PF_RESERVED });
    }
}

#[test]
fn split_and_promote_as_the_mmu_sees_them() {
    let Some(mut g) = guest() else { return };
    g.build(PageSizeKind::Size2MiB, |m, a| {
        // A 2 MiB page with one 4 KiB hole punched: the split must keep the other 511 pages.
        m.map_range(va(0xa000_0000), pa(DATA), 0x20_0000, PageFlags::WRITABLE, a).unwrap().ignore();
        let f = m.unmap_range(va(0xa000_3000), 0x1000, a).unwrap();
        assert!(f.structure_changed());
        f.ignore(); // not loaded yet
                    // 512 separate 4 KiB pages promoted to one 2 MiB page.
        for i in 0..512u64 {
            m.map_page(
                va(0xc000_0000 + i * 0x1000),
                pa(DATA + i * 0x1000),
                PageSizeKind::Size4KiB,
                PageFlags::WRITABLE,
                a,
            )
            .unwrap()
            .ignore();
        }
        m.promote(va(0xc000_0000), PageSizeKind::Size2MiB, a).unwrap().ignore();
        assert_eq!(m.translate(va(0xc000_0000)).unwrap().size, PageSizeKind::Size2MiB);
        assert_eq!(m.translate(va(0xa000_4000)).unwrap().size, PageSizeKind::Size4KiB);
    });
    assert_eq!(g.probe(Probe::Read(0xa000_2ff8)), Outcome::Value(pattern(DATA + 0x2ff8)));
    assert_eq!(
        g.probe(Probe::Read(0xa000_3000)),
        Outcome::PageFault { cr2: 0xa000_3000, code: PF_NOT_PRESENT }
    );
    assert_eq!(g.probe(Probe::Read(0xa000_4000)), Outcome::Value(pattern(DATA + 0x4000)));
    assert_eq!(g.probe(Probe::Read(0xa01f_f008)), Outcome::Value(pattern(DATA + 0x1f_f008)));
    assert_eq!(g.probe(Probe::Read(0xc01f_f008)), Outcome::Value(pattern(DATA + 0x1f_f008)));
    assert_eq!(g.probe(Probe::Read(0xc000_3000)), Outcome::Value(pattern(DATA + 0x3000)));
}
