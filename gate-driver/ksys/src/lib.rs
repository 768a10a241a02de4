//! gate-ksys: raw bindings to the Windows kernel and WSK surface the gate uses.
//!
//! Plain `#[repr(C)]` types, constants and `extern "system"` declarations,
//! limited to what gate-driver calls, with every struct's size and field
//! offsets asserted against the documented x64 layout (wdm.h, wsk.h,
//! ws2def.h, ws2ipdef.h, evntprov.h). No logic lives here: the safe
//! abstractions are in gate-driver, the way Rust-for-Linux keeps `bindings`
//! apart from `kernel`.
//!
//! # Why in-tree bindings and not wdk-sys
//! windows-drivers-rs (wdk-sys, wdk, wdk-alloc) cannot be built on a
//! non-Windows host: wdk-build refuses with a deliberate `compile_error!`, its
//! `windows` dependency does not compile on Linux, and it needs the WDK
//! headers and libraries besides. This project builds gate.sys on Debian, so
//! it keeps the small surface it needs here. Switching on a Windows build
//! host with the WDK installed would mean: depend on wdk-sys, replace these
//! modules by re-exports of its generated items (the names here follow the
//! WDK spelling so call sites stay the same), and keep the layout tests as a
//! cross-check of the generated bindings.
//!
//! # Where the imported functions come from
//! On Windows targets the `extern` blocks in [`imports`] carry
//! `#[link(..., kind = "raw-dylib")]` and resolve to ntoskrnl.exe, hal.dll and
//! netio.sys without any import library. On other targets they carry no link
//! attribute: the user-mode simulation (gate-usersim) defines every one of
//! them with `#[no_mangle]`, so the driver's code runs unchanged on Linux.
//! That attribute is the only place where the two builds differ.
#![no_std]
#![allow(
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    clippy::upper_case_acronyms
)]

pub mod dev;
pub mod etw;
pub mod imports;
pub mod io;
pub mod ke;
pub mod net;
pub mod rtl;
pub mod status;
pub mod types;
pub mod wsk;

pub use dev::*;
pub use imports::*;
pub use io::*;
pub use ke::*;
pub use net::*;
pub use rtl::*;
pub use status::*;
pub use types::*;
pub use wsk::*;

/// Asserts at compile time that a type has the given size and its fields
/// the given offsets (x64 layout from the WDK headers).
#[macro_export]
macro_rules! assert_layout {
    ($ty:ty, size = $size:expr $(, $field:ident = $off:expr)* $(,)?) => {
        const _: () = {
            assert!(::core::mem::size_of::<$ty>() == $size);
            $( assert!(::core::mem::offset_of!($ty, $field) == $off); )*
        };
    };
}
