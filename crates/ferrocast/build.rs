//! Release links of the server place the functions a running server executes together, in the
//! order of `link-order.txt` (made by `bench/link-order.sh`), so that the code pages it keeps
//! resident are about the size of that code rather than most of an 18 MB text (the kernel maps
//! 64 KiB around every code page a process touches).
//!
//! The same links pack relative relocations (`-z pack-relative-relocs`, DT_RELR) when the
//! building machine's glibc is 2.36 or later: the loader reads the whole relocation table at
//! start and its pages stay resident, 600 KB as 24-byte entries against a few KB packed. Such a
//! binary needs glibc 2.36 to start (it names `GLIBC_ABI_DT_RELR`): build one for an older host
//! with `FERROCAST_PACK_RELOCS=0`.
//!
//! Only where the linker is the toolchain's default lld (x86_64 Linux, glibc, since Rust
//! 1.90) and no other linker was asked for; `FERROCAST_LINK_ORDER=0` turns both off.

use std::env;
use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=link-order.txt");
    println!("cargo:rerun-if-env-changed=FERROCAST_LINK_ORDER");
    println!("cargo:rerun-if-env-changed=FERROCAST_PACK_RELOCS");
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER");
    let var = |name: &str| env::var(name).unwrap_or_default();
    let release = var("PROFILE") == "release";
    let default_lld = var("TARGET") == "x86_64-unknown-linux-gnu"
        && var("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_empty()
        && !var("CARGO_ENCODED_RUSTFLAGS").contains("link");
    if !release || !default_lld || var("FERROCAST_LINK_ORDER") == "0" {
        return;
    }
    let order = Path::new(&var("CARGO_MANIFEST_DIR")).join("link-order.txt");
    if order.is_file() {
        println!(
            "cargo:rustc-link-arg-bin=ferrocast=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        // Names the profile saw that this build lacks (or that are not ours, as libc's).
        println!("cargo:rustc-link-arg-bin=ferrocast=-Wl,--no-warn-symbol-ordering");
    }
    // The building machine's glibc stands for the one that will load the binary; a cross
    // build, or FERROCAST_PACK_RELOCS=0 for an older host, keeps plain relocations, which
    // every glibc reads.
    if var("HOST") == var("TARGET") && var("FERROCAST_PACK_RELOCS") != "0" && glibc_at_least(2, 36)
    {
        println!("cargo:rustc-link-arg-bin=ferrocast=-Wl,-z,pack-relative-relocs");
    }
}

/// This machine's glibc is `major.minor` or newer (`getconf GNU_LIBC_VERSION`: "glibc 2.36").
fn glibc_at_least(major: u32, minor: u32) -> bool {
    let Ok(out) = Command::new("getconf").arg("GNU_LIBC_VERSION").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text
        .trim()
        .strip_prefix("glibc ")
        .unwrap_or_default()
        .split('.')
        .map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(a), Some(b)) => (a, b) >= (major, minor),
        _ => false,
    }
}
