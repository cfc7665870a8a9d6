//! pvio-grant's v1 layout and constants against Xen's own `public/grant_table.h`.
//!
//! `tests/c/grant_layout.c` is compiled at test time against the system's Xen public headers
//! (`/usr/include/xen/grant_table.h`, Debian package `libxen-dev`) and prints sizes, offsets,
//! signedness, the `GTF_*` flag values and the `GNTST_*` status codes as `key=value` lines;
//! this test builds the same keys from the Rust definitions and compares them key by key
//! (a key missing on either side fails too).
//!
//! Without a C compiler or the Xen headers it prints `skipped: <reason>` and passes.
#![cfg(all(target_os = "linux", feature = "std", not(loom), not(miri)))]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use pvio_grant::entry::{ENTRY_SIZE, NR_RESERVED_ENTRIES};
use pvio_grant::{DomId, GrantEntryV1, GrantRef, GrantStatus, GtfFlags, GNTST_OKAY};

const GRANT_TABLE_H: &str = "/usr/include/xen/grant_table.h";

/// Compiles the C program; `Err` is a reason to skip.
fn build() -> Result<PathBuf, String> {
    if !Path::new(GRANT_TABLE_H).exists() {
        return Err(format!("{GRANT_TABLE_H} not found (install libxen-dev)"));
    }
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    match Command::new(&cc).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(s) if s.success() => {}
        Ok(s) => return Err(format!("C compiler `{cc} --version` failed ({s})")),
        Err(e) => return Err(format!("no C compiler `{cc}` ({e})")),
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/grant_layout.c");
    let exe = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("grant_layout.{}", std::process::id()));
    let out = Command::new(&cc)
        .args(["-std=gnu11", "-Wall", "-Wextra", "-Wno-type-limits", "-o"])
        .arg(&exe)
        .arg(&src)
        .output()
        .unwrap_or_else(|e| panic!("running {cc}: {e}"));
    assert!(
        out.status.success(),
        "compiling {} failed ({}):\n{}",
        src.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(exe)
}

fn c_values(exe: &Path) -> BTreeMap<String, i64> {
    let out = Command::new(exe).output().expect("running grant_layout");
    assert!(out.status.success(), "grant_layout failed: {}", String::from_utf8_lossy(&out.stderr));
    let mut c = BTreeMap::new();
    for line in String::from_utf8(out.stdout).expect("utf-8").lines() {
        let (k, v) = line.split_once('=').unwrap_or_else(|| panic!("bad line {line:?}"));
        let v: i64 = v.parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
        assert!(c.insert(k.to_owned(), v).is_none(), "duplicate key {k}");
    }
    c
}

fn rust_values() -> BTreeMap<String, i64> {
    let mut r = BTreeMap::new();
    let mut put = |k: &str, v: i64| assert!(r.insert(k.to_owned(), v).is_none(), "duplicate key {k}");
    let e = GrantEntryV1::default();
    put("size.grant_entry_v1", size_of::<GrantEntryV1>() as i64);
    assert_eq!(ENTRY_SIZE, size_of::<GrantEntryV1>());
    // zerocopy's little-endian fields have alignment 1; the table itself is page-aligned, so
    // Rust's alignment only has to divide C's. Report C's value when it does.
    assert_eq!(4 % align_of::<GrantEntryV1>(), 0);
    put("align.grant_entry_v1", 4);
    for (name, off, size) in [
        ("flags", core::mem::offset_of!(GrantEntryV1, flags), size_of_val(&e.flags)),
        ("domid", core::mem::offset_of!(GrantEntryV1, domid), size_of_val(&e.domid)),
        ("frame", core::mem::offset_of!(GrantEntryV1, frame), size_of_val(&e.frame)),
    ] {
        put(&format!("offset.grant_entry_v1.{name}"), off as i64);
        put(&format!("size.grant_entry_v1.{name}"), size as i64);
        put(&format!("signed.grant_entry_v1.{name}"), 0); // U16/U32: unsigned
    }
    put("size.grant_ref_t", size_of::<GrantRef>() as i64);
    put("size.domid_t", size_of::<DomId>() as i64);

    let flags = [
        ("GTF_invalid", GtfFlags::INVALID),
        ("GTF_permit_access", GtfFlags::PERMIT_ACCESS),
        ("GTF_accept_transfer", GtfFlags::ACCEPT_TRANSFER),
        ("GTF_transitive", GtfFlags::TRANSITIVE),
        ("GTF_type_mask", GtfFlags::TYPE_MASK),
        ("GTF_readonly", GtfFlags::READONLY),
        ("GTF_reading", GtfFlags::READING),
        ("GTF_writing", GtfFlags::WRITING),
        ("GTF_PWT", GtfFlags::PWT),
        ("GTF_PCD", GtfFlags::PCD),
        ("GTF_PAT", GtfFlags::PAT),
        ("GTF_sub_page", GtfFlags::SUB_PAGE),
        ("GTF_transfer_committed", GtfFlags::TRANSFER_COMMITTED),
        ("GTF_transfer_completed", GtfFlags::TRANSFER_COMPLETED),
    ];
    for (k, f) in flags {
        put(k, i64::from(f.bits()));
    }
    put("GNTTAB_NR_RESERVED_ENTRIES", i64::from(NR_RESERVED_ENTRIES));
    put("DOMID_SELF", i64::from(DomId::SELF.0));

    put("GNTST_okay", i64::from(GNTST_OKAY));
    let names = [
        "general_error",
        "bad_domain",
        "bad_gntref",
        "bad_handle",
        "bad_virt_addr",
        "bad_dev_addr",
        "no_device_space",
        "permission_denied",
        "bad_page",
        "bad_copy_arg",
        "address_too_big",
        "eagain",
        "no_space",
    ];
    assert_eq!(names.len(), GrantStatus::ALL.len());
    for (name, s) in names.iter().zip(GrantStatus::ALL) {
        put(&format!("GNTST_{name}"), i64::from(s.code()));
    }
    r
}

#[test]
fn layout_matches_xen_grant_table_h() {
    let exe = match build() {
        Ok(exe) => exe,
        Err(reason) => {
            println!("skipped: {reason}");
            return;
        }
    };
    let c = c_values(&exe);
    let _ = std::fs::remove_file(&exe);
    let rust = rust_values();
    let mut bad = Vec::new();
    for (k, v) in &rust {
        match c.get(k) {
            Some(cv) if cv == v => {}
            Some(cv) => bad.push(format!("{k}: C {cv}, Rust {v}")),
            None => bad.push(format!("{k}: not printed by the C side")),
        }
    }
    for k in c.keys().filter(|k| !rust.contains_key(*k)) {
        bad.push(format!("{k}: no Rust counterpart"));
    }
    assert!(bad.is_empty(), "layout differs from {GRANT_TABLE_H}:\n{}", bad.join("\n"));
    println!("{} keys match {GRANT_TABLE_H}", rust.len());
}
