//! Link flags of the Windows image root (the `gate` bin, which becomes
//! gate.sys), applied only when building for a Windows MSVC target. They
//! make a WDK-like kernel image with lld-link (Debian's lld-link-22, or
//! rust-lld on Windows):
//! - `/DRIVER /SUBSYSTEM:NATIVE,10.0 /ENTRY:DriverEntry`: a native kernel
//!   driver whose entry point is DriverEntry;
//! - `/NODEFAULTLIB`: no C runtime or user-mode libraries;
//! - `/RELEASE`: write the PE checksum (the kernel loader checks it);
//! - `/INTEGRITYCHECK`: FORCE_INTEGRITY, so the signature is enforced;
//! - `/SECTION:<name>,P..`: IMAGE_SCN_MEM_NOT_PAGED on code and data. In
//!   lld the letters replace the section's permission bits, so R/W/E are
//!   restated; `P` means NOT_PAGED in lld (MSVC link.exe reads it
//!   differently, see README).
//!
//! NX compatibility and dynamic base are lld-link's defaults for x64.

const LINK_ARGS: &[&str] = &[
    "/DRIVER",
    "/SUBSYSTEM:NATIVE,10.0",
    "/ENTRY:DriverEntry",
    "/NODEFAULTLIB",
    "/RELEASE",
    "/INTEGRITYCHECK",
    "/NXCOMPAT",
    "/SECTION:.text,PRE",
    "/SECTION:.rdata,PR",
    "/SECTION:.data,PRW",
    "/SECTION:.pdata,PR",
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "windows" && env == "msvc" {
        for arg in LINK_ARGS {
            println!("cargo:rustc-link-arg-bin=gate={arg}");
        }
    }
}
