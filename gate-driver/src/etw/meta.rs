//! The TraceLogging wire format: field types, the schema types, the
//! compile-time builders of the provider-traits and event-metadata blobs,
//! and the payload encoders (one or two `EVENT_DATA_DESCRIPTOR`s per field).
//!
//! Byte layouts (TraceLoggingProvider.h, as the `tracelogging` crate writes
//! them):
//! - provider traits: `u16 size` (whole blob, little-endian), the provider
//!   name in UTF-8, NUL. No further traits.
//! - event metadata: `u16 size` (whole blob), one tags byte (0 = no tags),
//!   the event name in UTF-8, NUL, then per field: the field name, NUL, the
//!   InType byte, and when the field has an OutType, the InType byte carries
//!   the chain flag 0x80 and the OutType byte follows.
//! - payload: scalars little-endian at their natural size; `BINARY` is a
//!   `u16` byte count followed by the bytes; `ANSISTRING` is the bytes then NUL;
//!   a `PORT`-formatted `UINT16` is in network byte order.

use core::ffi::c_void;

use gate_ksys::etw::{EVENT_DATA_DESCRIPTOR, EVENT_DATA_DESCRIPTOR_TYPE_NONE};

/// TraceLogging InType codes (`TlgIn*`).
pub mod in_type {
    pub const ANSISTRING: u8 = 2;
    pub const UINT8: u8 = 4;
    pub const UINT16: u8 = 6;
    pub const UINT32: u8 = 8;
    pub const UINT64: u8 = 10;
    pub const BOOL32: u8 = 13;
    pub const BINARY: u8 = 14;
    pub const HEXINT64: u8 = 21;
    /// Set on the InType byte when an OutType byte follows.
    pub const CHAIN_FLAG: u8 = 0x80;
}

/// TraceLogging OutType codes (`TlgOut*`); 0 means "default for the InType".
pub mod out_type {
    pub const DEFAULT: u8 = 0;
    pub const PORT: u8 = 7;
    pub const SOCKETADDRESS: u8 = 10;
    pub const NTSTATUS: u8 = 14;
}

/// The field types events use. Each is one (InType, OutType) pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// `u8` (UINT8). With a value map when [`FieldSchema::map`] is set.
    U8,
    /// `u16` (UINT16).
    U16,
    /// `u32` (UINT32).
    U32,
    /// `u64` (UINT64).
    U64,
    /// `bool` as a 32-bit 0/1 (BOOL32).
    Bool32,
    /// `u64` shown in hex (HEXINT64), e.g. an inspect ID key.
    Hex64,
    /// `NTSTATUS` (UINT32 formatted as NTSTATUS, as manifests spell it).
    NtStatus,
    /// A TCP port, given in host order, sent in network order (UINT16 + PORT).
    Port,
    /// A Windows SOCKADDR (`SOCKADDR_IN`, 16 bytes, or `SOCKADDR_IN6`, 28
    /// bytes) as BINARY formatted as SOCKETADDRESS ("192.0.2.1:443").
    SockAddr,
    /// Bytes, shown in hex (BINARY).
    Binary,
    /// Text, NUL-terminated (ANSISTRING); cut at the first NUL.
    Str,
}

impl FieldType {
    /// The TraceLogging InType (without flags).
    pub const fn in_type(self) -> u8 {
        match self {
            FieldType::U8 => in_type::UINT8,
            FieldType::U16 | FieldType::Port => in_type::UINT16,
            FieldType::U32 | FieldType::NtStatus => in_type::UINT32,
            FieldType::U64 => in_type::UINT64,
            FieldType::Bool32 => in_type::BOOL32,
            FieldType::Hex64 => in_type::HEXINT64,
            FieldType::SockAddr | FieldType::Binary => in_type::BINARY,
            FieldType::Str => in_type::ANSISTRING,
        }
    }

    /// The TraceLogging OutType (0 = default).
    pub const fn out_type(self) -> u8 {
        match self {
            FieldType::Port => out_type::PORT,
            FieldType::SockAddr => out_type::SOCKETADDRESS,
            FieldType::NtStatus => out_type::NTSTATUS,
            _ => out_type::DEFAULT,
        }
    }

    /// How many data descriptors one value of this type takes.
    pub const fn descriptor_count(self) -> usize {
        match self {
            FieldType::SockAddr | FieldType::Binary | FieldType::Str => 2,
            _ => 1,
        }
    }

    /// Bytes this field adds to the event metadata blob.
    const fn meta_type_len(self) -> usize {
        if self.out_type() == out_type::DEFAULT {
            1
        } else {
            2
        }
    }
}

/// One field of an event, as declared in the event table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldSchema {
    /// Field name (as TraceLogging and the manifest name it).
    pub name: &'static str,
    /// Wire type.
    pub ty: FieldType,
    /// Name of the manifest value map that names this field's values.
    pub map: Option<&'static str>,
    /// What the field means (from the event table's doc comment).
    pub doc: &'static str,
}

/// One event, as declared in the event table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventSchema {
    /// Event name (the TraceLogging event name and the manifest symbol).
    pub name: &'static str,
    /// Name of the Rust write function.
    pub function: &'static str,
    /// Stable event id (also the manifest event value).
    pub id: u16,
    /// Event version.
    pub version: u8,
    /// Level (1 critical .. 5 verbose).
    pub level: u8,
    /// Opcode (0 info, 1 start, 2 stop).
    pub opcode: u8,
    /// Task.
    pub task: u16,
    /// Keyword bits as written in the descriptor: the event's group keyword,
    /// plus the channel's keyword bit for an Event Log channel event.
    pub keyword: u64,
    /// Channel: 11 (TraceLogging) or an Event Log channel of the manifest
    /// (see [`channel`](super::channel)).
    pub channel: u8,
    /// What the event means.
    pub doc: &'static str,
    /// Fields in payload order.
    pub fields: &'static [FieldSchema],
    /// The encoded TraceLogging event metadata blob.
    pub metadata: &'static [u8],
}

// The blob builders below run only in `const`/`static` initialisers (the
// event table and the provider traits): an out-of-range index, an overflow
// or a failed assert is a build error, never a run-time panic.

/// Length of the provider-traits blob of `name`.
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
pub const fn provider_traits_len(name: &str) -> usize {
    2 + name.len() + 1
}

/// Builds the provider-traits blob (compile time only: `N` must equal
/// [`provider_traits_len`]; a mismatch or a NUL in the name fails the build).
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
pub const fn provider_traits<const N: usize>(name: &str) -> [u8; N] {
    let mut out = [0u8; N];
    assert!(N == provider_traits_len(name), "provider traits length");
    assert!(N <= u16::MAX as usize, "provider traits too long");
    let size = (N as u16).to_le_bytes();
    out[0] = size[0];
    out[1] = size[1];
    let pos = copy_name(&mut out, 2, name.as_bytes());
    assert!(pos + 1 == N, "provider traits layout");
    out
}

/// Length of the event-metadata blob.
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
pub const fn event_meta_len(name: &str, fields: &[FieldSchema]) -> usize {
    let mut n = 2 + 1 + name.len() + 1;
    let mut rest = fields;
    while let [f, tail @ ..] = rest {
        n += f.name.len() + 1 + f.ty.meta_type_len();
        rest = tail;
    }
    n
}

/// Builds the event-metadata blob (compile time only: `N` must equal
/// [`event_meta_len`]; a mismatch or a NUL in a name fails the build).
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
pub const fn event_meta<const N: usize>(name: &str, fields: &[FieldSchema]) -> [u8; N] {
    let mut out = [0u8; N];
    assert!(N == event_meta_len(name, fields), "event metadata length");
    assert!(N <= u16::MAX as usize, "event metadata too long");
    let size = (N as u16).to_le_bytes();
    out[0] = size[0];
    out[1] = size[1];
    out[2] = 0; // no event tags
    let mut pos = copy_name(&mut out, 3, name.as_bytes()) + 1;
    let mut rest = fields;
    while let [f, tail @ ..] = rest {
        pos = copy_name(&mut out, pos, f.name.as_bytes()) + 1;
        let out_t = f.ty.out_type();
        if out_t == out_type::DEFAULT {
            out[pos] = f.ty.in_type();
            pos += 1;
        } else {
            out[pos] = f.ty.in_type() | in_type::CHAIN_FLAG;
            out[pos + 1] = out_t;
            pos += 2;
        }
        rest = tail;
    }
    assert!(pos == N, "event metadata layout");
    out
}

/// Copies a name into `out` at `pos`, leaving the NUL (already zero) after
/// it; returns the position of that NUL. Rejects empty names and NULs.
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
const fn copy_name<const N: usize>(out: &mut [u8; N], pos: usize, name: &[u8]) -> usize {
    assert!(!name.is_empty(), "empty name");
    let mut i = 0;
    while i < name.len() {
        assert!(name[i] != 0, "NUL in a name");
        out[pos + i] = name[i];
        i += 1;
    }
    pos + name.len()
}

/// Total data descriptors an event needs: provider traits, event metadata,
/// and the fields.
#[allow(clippy::arithmetic_side_effects)]
pub const fn descriptor_count(fields: &[FieldSchema]) -> usize {
    let mut n = 2;
    let mut rest = fields;
    while let [f, tail @ ..] = rest {
        n += f.ty.descriptor_count();
        rest = tail;
    }
    n
}

/// Fills an array of data descriptors in order. Never panics: a push past
/// the end is dropped (cannot happen: arrays are sized from the schema).
pub struct DescWriter<'d, 'a> {
    slots: &'d mut [EVENT_DATA_DESCRIPTOR],
    used: usize,
    _data: core::marker::PhantomData<&'a [u8]>,
}

impl<'d, 'a> DescWriter<'d, 'a> {
    /// Starts writing into `slots`.
    pub fn new(slots: &'d mut [EVENT_DATA_DESCRIPTOR]) -> Self {
        DescWriter {
            slots,
            used: 0,
            _data: core::marker::PhantomData,
        }
    }

    /// Appends a descriptor for `bytes` with the given descriptor type.
    pub fn push_typed(&mut self, bytes: &'a [u8], ty: u8) {
        if let Some(slot) = self.slots.get_mut(self.used) {
            *slot = EVENT_DATA_DESCRIPTOR {
                Ptr: bytes.as_ptr() as usize as u64,
                Size: u32::try_from(bytes.len()).unwrap_or(u32::MAX),
                Type: ty,
                Reserved1: 0,
                Reserved2: 0,
            };
            self.used = self.used.saturating_add(1);
        }
    }

    /// Appends a payload descriptor for `bytes`.
    pub fn push(&mut self, bytes: &'a [u8]) {
        self.push_typed(bytes, EVENT_DATA_DESCRIPTOR_TYPE_NONE);
    }

    /// The descriptors written so far.
    pub fn written(&self) -> &[EVENT_DATA_DESCRIPTOR] {
        self.slots.get(..self.used).unwrap_or(&[])
    }
}

/// A field value ready to be described: kept alive on the write function's
/// stack until the write returns.
pub trait Push {
    /// Appends this value's descriptor(s).
    fn push<'a>(&'a self, w: &mut DescWriter<'_, 'a>);
}

/// Bytes of a plain-old-data scalar.
fn bytes_of<T: Copy>(v: &T) -> &[u8] {
    // SAFETY: `T` is one of u8/u16/u32/u64/i32 (all callers below), which
    // have no padding and no invalid bit patterns; the slice covers exactly
    // the value and borrows it, so it cannot outlive it.
    unsafe { core::slice::from_raw_parts((v as *const T).cast::<u8>(), core::mem::size_of::<T>()) }
}

macro_rules! scalar_push {
    ($($t:ty),*) => {$(
        impl Push for $t {
            fn push<'a>(&'a self, w: &mut DescWriter<'_, 'a>) {
                w.push(bytes_of(self));
            }
        }
    )*};
}
scalar_push!(u8, u16, u32, u64, i32);

/// Port in network byte order.
pub struct PortBe([u8; 2]);

impl Push for PortBe {
    fn push<'a>(&'a self, w: &mut DescWriter<'_, 'a>) {
        w.push(&self.0);
    }
}

/// BINARY payload: `u16` length then the bytes (cut to 65535).
pub struct Counted<'v> {
    len: [u8; 2],
    bytes: &'v [u8],
}

impl Push for Counted<'_> {
    fn push<'a>(&'a self, w: &mut DescWriter<'_, 'a>) {
        w.push(&self.len);
        w.push(self.bytes);
    }
}

/// ANSISTRING payload: the bytes (cut at the first NUL) then a NUL.
pub struct CStr<'v>(&'v [u8]);

static NUL: [u8; 1] = [0];

impl Push for CStr<'_> {
    fn push<'a>(&'a self, w: &mut DescWriter<'_, 'a>) {
        w.push(self.0);
        w.push(&NUL);
    }
}

/// Converters from a write function's argument to its stored payload, one
/// per [`FieldType`] variant (same names, so the event table's type names
/// select them).
#[allow(non_snake_case)]
pub mod store {
    use super::{CStr, Counted, PortBe};

    pub fn U8(v: u8) -> u8 {
        v
    }
    pub fn U16(v: u16) -> u16 {
        v
    }
    pub fn U32(v: u32) -> u32 {
        v
    }
    pub fn U64(v: u64) -> u64 {
        v
    }
    pub fn Bool32(v: bool) -> u32 {
        u32::from(v)
    }
    pub fn Hex64(v: u64) -> u64 {
        v
    }
    pub fn NtStatus(v: i32) -> i32 {
        v
    }
    pub fn Port(v: u16) -> PortBe {
        PortBe(v.to_be_bytes())
    }
    pub fn SockAddr(v: &[u8]) -> Counted<'_> {
        Binary(v)
    }
    pub fn Binary(v: &[u8]) -> Counted<'_> {
        let bytes = v.get(..usize::from(u16::MAX)).unwrap_or(v);
        let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
        Counted {
            len: len.to_le_bytes(),
            bytes,
        }
    }
    pub fn Str(v: &str) -> CStr<'_> {
        let b = v.as_bytes();
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        CStr(b.get(..end).unwrap_or(&[]))
    }
}

/// The Rust argument type of each [`FieldType`] in the write functions.
#[macro_export]
#[doc(hidden)]
macro_rules! __etw_arg_ty {
    (U8) => {
        u8
    };
    (U16) => {
        u16
    };
    (U32) => {
        u32
    };
    (U64) => {
        u64
    };
    (Bool32) => {
        bool
    };
    (Hex64) => {
        u64
    };
    (NtStatus) => {
        i32
    };
    (Port) => {
        u16
    };
    (SockAddr) => {
        &[u8]
    };
    (Binary) => {
        &[u8]
    };
    (Str) => {
        &str
    };
}

/// Pointer-sized null for the activity id arguments.
pub(crate) const NO_GUID: *const gate_ksys::types::GUID = core::ptr::null();

/// `*mut c_void` null, for resolvers that find nothing.
pub const NOT_FOUND: *mut c_void = core::ptr::null_mut();

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    clippy::disallowed_macros,
    clippy::disallowed_types
)]
mod tests {
    extern crate std;
    use super::super::{def, PROVIDER_TRAITS, SCHEMA};
    use super::*;
    use std::vec;

    #[test]
    fn provider_traits_blob_is_size_name_nul() {
        let mut expected = vec![15u8, 0];
        expected.extend_from_slice(b"TcpFrontGate\0");
        assert_eq!(&PROVIDER_TRAITS[..], &expected[..]);
    }

    #[test]
    fn event_metadata_blob_is_byte_exact() {
        // ListenerDown: LocalAddress (BINARY, SOCKETADDRESS), Port (UINT16,
        // PORT), Status (UINT32, NTSTATUS): every InType carries the chain
        // flag because every field has an OutType.
        let mut expected = vec![47u8, 0, 0];
        expected.extend_from_slice(b"ListenerDown\0");
        expected.extend_from_slice(b"LocalAddress\0");
        expected.extend_from_slice(&[14 | 0x80, 10]);
        expected.extend_from_slice(b"Port\0");
        expected.extend_from_slice(&[6 | 0x80, 7]);
        expected.extend_from_slice(b"Status\0");
        expected.extend_from_slice(&[8 | 0x80, 14]);
        assert_eq!(&def::ListenerDown::METADATA[..], &expected[..]);
    }

    #[test]
    fn fields_without_outtype_take_one_byte() {
        // DriverUnloading: UptimeMs (UINT64, default format).
        let mut expected = vec![0u8, 0, 0];
        expected.extend_from_slice(b"DriverUnloading\0UptimeMs\0");
        expected.push(10);
        expected[0] = expected.len() as u8;
        assert_eq!(&def::DriverUnloading::METADATA[..], &expected[..]);
    }

    #[test]
    fn every_schema_entry_has_consistent_metadata_and_descriptor_count() {
        for e in SCHEMA {
            let m = e.metadata;
            assert_eq!(
                usize::from(u16::from_le_bytes([m[0], m[1]])),
                m.len(),
                "{}",
                e.name
            );
            let name_end = 3 + e.name.len();
            assert_eq!(&m[3..name_end], e.name.as_bytes());
            assert_eq!(m[name_end], 0);
            let payload: usize = e.fields.iter().map(|f| f.ty.descriptor_count()).sum();
            assert_eq!(descriptor_count(e.fields), 2 + payload);
        }
    }

    #[test]
    fn store_cuts_strings_at_nul_and_counts_binary() {
        let s = store::Str("ab\0cd");
        assert_eq!(s.0, b"ab");
        let b = store::Binary(&[1, 2, 3]);
        assert_eq!(b.len, [3, 0]);
        let p = store::Port(443);
        assert_eq!(p.0, [1, 187]);
    }
}
