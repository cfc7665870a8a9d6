//! Hugepage pools against the real kernel: hugetlb memfds of 2 MiB and 1 GiB pages (reserved
//! through sysfs as root, restored afterwards), mapped by a second process, and the THP
//! fallback, each checked against what `/proc/self/smaps` reports.

#![cfg(target_os = "linux")]

use std::fs;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::Mutex;

use pvio_paging::hugepage::{Backing, HugeMem};
use pvio_paging::PageSizeKind;

/// Tests that change the hugepage pool run one at a time.
static POOL: Mutex<()> = Mutex::new(());

/// Raises the pool of `kb`-KiB hugepages by `pages` and restores it on drop.
struct Reservation {
    path: String,
    old: u64,
}

fn read_count(path: &str) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn reserve(kb: u64, pages: u64) -> Result<Reservation, String> {
    let path = format!("/sys/kernel/mm/hugepages/hugepages-{kb}kB/nr_hugepages");
    let free_path = format!("/sys/kernel/mm/hugepages/hugepages-{kb}kB/free_hugepages");
    let old = read_count(&path).ok_or_else(|| format!("{path} not readable"))?;
    let free = read_count(&free_path).unwrap_or(0);
    let want = old + pages.saturating_sub(free);
    if want > old {
        fs::write(&path, want.to_string()).map_err(|e| format!("writing {path} (needs root): {e}"))?;
    }
    let r = Reservation { path, old };
    let got = read_count(&free_path).unwrap_or(0);
    if got < pages {
        return Err(format!(
            "the kernel found only {got} free {kb} KiB hugepages of {pages} (fragmented memory)"
        ));
    }
    Ok(r)
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let _ = fs::write(&self.path, self.old.to_string());
    }
}

fn fill(mem: &HugeMem, seed: u64) {
    for off in (0..mem.len()).step_by(4096) {
        let p = mem.as_ptr().wrapping_add(off).cast::<u64>();
        // SAFETY: in bounds and aligned; only this process touches the memory now.
        unsafe { p.write_volatile(seed ^ off as u64) };
    }
}

fn word(mem: &HugeMem, off: usize) -> u64 {
    assert!(off + 8 <= mem.len());
    let p = mem.as_ptr().wrapping_add(off).cast::<u64>();
    // SAFETY: in bounds and 8-aligned (callers pass multiples of 8); a volatile read because
    // another process may write the memory.
    unsafe { p.read_volatile() }
}

#[test]
fn hugetlb_2m_memfd_is_mapped_by_another_process() {
    let _g = POOL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let _r = match reserve(2048, 2) {
        Ok(r) => r,
        Err(e) => return println!("skipped: {e}"),
    };
    let mem = HugeMem::hugetlb(4 << 20, PageSizeKind::Size2MiB).unwrap();
    assert_eq!(mem.backing(), Backing::Hugetlb(PageSizeKind::Size2MiB));
    let o = mem.obtained().unwrap();
    assert_eq!((o.kernel_page_size, o.size, o.page_size()), (2 << 20, 4 << 20, PageSizeKind::Size2MiB));
    fill(&mem, 0x5eed);
    let fd = mem.fd().unwrap().as_raw_fd();
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "other_process_side", "--nocapture", "--test-threads=1"])
        .env("PVIO_HUGE_FD_PATH", format!("/proc/{}/fd/{fd}", std::process::id()))
        .status()
        .unwrap();
    assert!(status.success(), "the other process failed: {status}");
    // What the other process wrote is visible here: same pages.
    assert_eq!(word(&mem, (4 << 20) - 8), 0x0d0e_0f00_c0ff_ee00);
}

/// The second process of the test above (run by it, ignored otherwise).
#[test]
#[ignore = "run by hugetlb_2m_memfd_is_mapped_by_another_process as the other process"]
fn other_process_side() {
    let path =
        std::env::var("PVIO_HUGE_FD_PATH").expect("run by hugetlb_2m_memfd_is_mapped_by_another_process");
    let file = fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mem = HugeMem::from_file(file).unwrap();
    assert_eq!(mem.len(), 4 << 20);
    assert_eq!(mem.backing(), Backing::Hugetlb(PageSizeKind::Size2MiB));
    assert_eq!(mem.obtained().unwrap().kernel_page_size, 2 << 20);
    for off in [0usize, 4096, 3 << 20] {
        assert_eq!(word(&mem, off), 0x5eed ^ off as u64);
    }
    let p = mem.as_ptr().wrapping_add((4 << 20) - 8).cast::<u64>();
    // SAFETY: in bounds and aligned; the parent reads it only after we exit.
    unsafe { p.write_volatile(0x0d0e_0f00_c0ff_ee00) };
}

#[test]
fn hugetlb_1g_memfd() {
    let _g = POOL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let _r = match reserve(1_048_576, 1) {
        Ok(r) => r,
        Err(e) => return println!("skipped: {e}"),
    };
    let mem = HugeMem::hugetlb(1 << 30, PageSizeKind::Size1GiB).unwrap();
    let o = mem.obtained().unwrap();
    assert_eq!((o.kernel_page_size, o.page_size()), (1 << 30, PageSizeKind::Size1GiB));
    fill(&mem, 0x1616);
    assert_eq!(word(&mem, (1 << 30) - 4096), 0x1616 ^ ((1 << 30) - 4096));
    // `new` prefers it too while the pool has it.
    drop(mem);
    let mem = HugeMem::new(1 << 30, PageSizeKind::Size1GiB, true).unwrap();
    assert_eq!(mem.backing(), Backing::Hugetlb(PageSizeKind::Size1GiB));
}

fn thp_mode(file: &str) -> String {
    let s = fs::read_to_string(format!("/sys/kernel/mm/transparent_hugepage/{file}")).unwrap_or_default();
    s.split('[').nth(1).and_then(|r| r.split(']').next()).unwrap_or("unknown").to_string()
}

#[test]
fn falls_back_to_transparent_huge_pages_and_reports_the_truth() {
    let _g = POOL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    // An empty 2 MiB pool (as here by default) makes `new` fall back.
    let free = read_count("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages").unwrap_or(0);
    if free >= 4 {
        return println!("skipped: {free} free 2 MiB hugepages, so no fallback would happen");
    }
    let mem = HugeMem::new(8 << 20, PageSizeKind::Size2MiB, false).unwrap();
    assert_eq!(mem.backing(), Backing::PrivateTransparent);
    assert_eq!(mem.as_ptr() as usize % (2 << 20), 0, "THP needs a 2 MiB-aligned region");
    let o = mem.obtained().unwrap();
    println!("private THP: {o:?} (enabled = {})", thp_mode("enabled"));
    assert_eq!((o.size, o.kernel_page_size), (8 << 20, 4096));
    match thp_mode("enabled").as_str() {
        "never" => assert_eq!(o.thp_bytes, 0),
        // With THP allowed and memory free the kernel backs at least part of it with 2 MiB pages.
        _ => assert!(o.thp_bytes >= 2 << 20, "{o:?}"),
    }
    // Shared (memfd) THP depends on shmem_enabled; whatever it is, the report must match it.
    let shared = HugeMem::new(4 << 20, PageSizeKind::Size2MiB, true).unwrap();
    assert_eq!(shared.backing(), Backing::SharedTransparent);
    assert!(shared.fd().is_some());
    let o = shared.obtained().unwrap();
    println!("shared THP: {o:?} (shmem_enabled = {})", thp_mode("shmem_enabled"));
    if matches!(thp_mode("shmem_enabled").as_str(), "never" | "deny") {
        assert_eq!((o.thp_bytes, o.page_size()), (0, PageSizeKind::Size4KiB));
    }
}
