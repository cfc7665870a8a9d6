//! Granter and broker in separate processes over memfds.
//!
//! The parent test is the guest: it creates its memory ([`DomainMemory`]) and a grant-table
//! page in memfds, grants two frames and fills one. It then runs this test binary again as the
//! back end (`backend_child`), which opens the same memfds through `/proc/<parent>/fd/<n>`,
//! registers them with a [`Broker`], copies out of the first grant, copies into the second,
//! and maps the first one without unmapping it before it exits. Back in the guest: the bytes
//! the back end wrote are there, the second grant ends, and the first one cannot be ended
//! because the other process still holds it in use (`GTF_reading` is set in the shared page).
#![cfg(all(target_os = "linux", feature = "std", not(loom), not(miri)))]

use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Command;

use pvio_grant::{
    Access, Broker, CopyDst, CopyOp, CopySrc, DomId, DomainMemory, Frame, GrantError, GrantPtr, GrantRef,
    GrantTable, GtfFlags, PAGE_SIZE,
};
use pvio_ring::MemfdRegion;

const GUEST: DomId = DomId(7);
const BACK: DomId = DomId(0);
const ENV: &str = "PVIO_GRANT_BACKEND_CHILD";
const FRAMES: u32 = 4;

fn open_peer_fd(pid: u32, fd: i32) -> OwnedFd {
    let path = format!("/proc/{pid}/fd/{fd}");
    let file =
        std::fs::File::options().read(true).write(true).open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    file.into()
}

#[test]
fn guest_and_backend_in_two_processes() {
    let memory = DomainMemory::new("guest-mem", FRAMES).unwrap();
    let table_page = MemfdRegion::new("guest-gnttab", PAGE_SIZE).unwrap();
    let mut table = GrantTable::<512>::new(table_page.mem()).unwrap();
    let src = table.grant_access(BACK, Frame(1), true).unwrap();
    let dst = table.grant_access(BACK, Frame(3), false).unwrap();
    memory.frame(Frame(1)).unwrap().write_bytes(64, b"from the guest").unwrap();

    let arg = format!(
        "{}:{}:{}:{}:{}",
        std::process::id(),
        memory.memfd().as_raw_fd(),
        table_page.as_raw_fd(),
        src.0,
        dst.0
    );
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "backend_child", "--nocapture", "--test-threads=1"])
        .env(ENV, arg)
        .output()
        .expect("running the back-end child");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("back end done"),
        "back end failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let mut got = [0u8; 16];
    memory.frame(Frame(3)).unwrap().read_bytes(100, &mut got).unwrap();
    assert_eq!(&got, b"from the backend");
    assert!(table.end_access(dst).is_ok());
    assert!(table.flags(src).unwrap().contains(GtfFlags::READING), "the child's map is visible here");
    assert!(matches!(table.end_access(src), Err(GrantError::InUse { .. })));
}

/// The back end; does nothing unless started by `guest_and_backend_in_two_processes`.
#[test]
fn backend_child() {
    let Ok(arg) = std::env::var(ENV) else { return };
    let v: Vec<u32> = arg.split(':').map(|s| s.parse().unwrap()).collect();
    let (pid, mem_fd, tab_fd, src, dst) = (v[0], v[1] as i32, v[2] as i32, GrantRef(v[3]), GrantRef(v[4]));
    let memory = MemfdRegion::from_fd(open_peer_fd(pid, mem_fd), FRAMES as usize * PAGE_SIZE).unwrap();
    let table = MemfdRegion::from_fd(open_peer_fd(pid, tab_fd), PAGE_SIZE).unwrap();
    let mut broker = Broker::new();
    broker.register(GUEST, memory.mem(), table.mem(), 0).unwrap();

    let mut buf = [0u8; 14];
    let mut ops = [
        CopyOp::new(
            CopySrc::Grant(GrantPtr { domid: GUEST, gref: src, offset: 64 }),
            CopyDst::Local(&mut buf),
            14,
        ),
        CopyOp::new(
            CopySrc::Local(b"from the backend"),
            CopyDst::Grant(GrantPtr { domid: GUEST, gref: dst, offset: 100 }),
            16,
        ),
        CopyOp::new(CopySrc::Local(b"x"), CopyDst::Grant(GrantPtr { domid: GUEST, gref: src, offset: 0 }), 1),
    ];
    broker.copy(BACK, &mut ops);
    let statuses: Vec<_> = ops.iter().map(|o| o.status).collect();
    assert_eq!(statuses, [Ok(()), Ok(()), Err(pvio_grant::GrantStatus::PermissionDenied)]);
    assert_eq!(&buf, b"from the guest");
    // Keep the read-only grant mapped past our exit: the guest must see it in use.
    let map = broker.map(BACK, GUEST, src, Access::Read).unwrap();
    let _still_mapped = map;
    println!("back end done");
}
