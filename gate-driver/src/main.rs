//! The Windows image root of gate.sys: only what an executable image needs
//! and a library cannot provide. All driver code is in the `gate_driver`
//! library; this file plugs in its pool allocator and its panic bug check,
//! defines the two symbols the MSVC C runtime would otherwise supply
//! (`_fltused`, `__chkstk`), and keeps `DriverEntry` (the image's entry
//! point, see build.rs for the link flags) referenced.
//!
//! Built only for `x86_64-pc-windows-msvc` with the `image` feature
//! (`cargo xtask driver`); see gate-driver/README.md.
#![cfg_attr(windows, no_std, no_main)]

#[cfg(windows)]
mod image {
    use gate_ksys::{DRIVER_OBJECT, NTSTATUS, UNICODE_STRING};

    #[global_allocator]
    static ALLOC: gate_driver::pool::PoolAllocator = gate_driver::pool::PoolAllocator;

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo) -> ! {
        gate_driver::panic::bugcheck(info)
    }

    /// The linker's entry point (/ENTRY:DriverEntry); referenced here as
    /// well so the symbol is kept whatever the linker options.
    #[used]
    static DRIVER_ENTRY: unsafe extern "system" fn(
        *mut DRIVER_OBJECT,
        *mut UNICODE_STRING,
    ) -> NTSTATUS = gate_driver::DriverEntry;

    /// Tells the MSVC toolchain that floating point is in use; the kernel
    /// image has no CRT to define it. The driver itself uses no floating
    /// point; core's formatting code references the symbol.
    #[no_mangle]
    #[allow(non_upper_case_globals)]
    pub static _fltused: i32 = 0;

    /// Stack probe LLVM calls before a frame larger than a page: touches
    /// each 4 KiB page from the current stack pointer down to
    /// `rsp - rax` so a guard page is never skipped. Preserves every
    /// register (the caller then subtracts rax from rsp itself), as the
    /// MSVC `__chkstk` does. Kernel stacks are resident, so the probes are
    /// harmless reads.
    #[unsafe(naked)]
    #[no_mangle]
    pub unsafe extern "C" fn __chkstk() {
        core::arch::naked_asm!(
            "push rcx",
            "push rax",
            "cmp rax, 0x1000",
            // rcx = the caller's rsp (above our two pushes and the return address).
            "lea rcx, [rsp + 24]",
            "jb 3f",
            "2:",
            "sub rcx, 0x1000",
            "test [rcx], rcx",
            "sub rax, 0x1000",
            "cmp rax, 0x1000",
            "ja 2b",
            "3:",
            "sub rcx, rax",
            "test [rcx], rcx",
            "pop rax",
            "pop rcx",
            "ret",
        )
    }
}

/// On other targets the image root is a stub saying how to build the image.
#[cfg(not(windows))]
fn main() {
    eprintln!("gate.sys is a Windows kernel image: build it with `cargo xtask driver`");
    std::process::exit(2);
}
