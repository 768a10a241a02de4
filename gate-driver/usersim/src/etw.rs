//! The simulation's ETW: `EtwRegister`, `EtwUnregister`, `EtwSetInformation`,
//! `EtwWriteTransfer` and `EtwEventEnabled` with the kernel's signatures,
//! reached through `MmGetSystemRoutineAddress` (see [`resolve`]).
//!
//! Every registration is enabled at once by a simulated session that wants
//! every level and keyword (the enable callback is invoked from
//! `EtwRegister`, as ETW does when a session is already running); tests
//! change that with [`set_session`] / [`disable`]. Like ETW, `EtwWriteTransfer`
//! drops events the session did not ask for, so both the driver's own
//! enabled check and the session filter are exercised.
//!
//! Written events are DECODED from the real TraceLogging bytes (provider
//! traits set through `EtwSetInformation`, the event metadata blob, the
//! payload per InType) into [`CapturedEvent`]s, kept in a process-wide
//! capture that tests read with [`take`], [`take_for`] or [`snapshot`].
//! Anything a real decoder would choke on becomes [`CapturedEvent::error`].

use crate::recent::Ring;
use std::collections::BTreeMap;
use std::ffi::c_void;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock};

use gate_ksys::etw::{
    EventProviderSetTraits, EventProviderUseDescriptorType, EVENT_CONTROL_CODE_DISABLE_PROVIDER,
    EVENT_CONTROL_CODE_ENABLE_PROVIDER, EVENT_DATA_DESCRIPTOR,
    EVENT_DATA_DESCRIPTOR_TYPE_EVENT_METADATA, EVENT_DATA_DESCRIPTOR_TYPE_NONE,
    EVENT_DATA_DESCRIPTOR_TYPE_PROVIDER_METADATA, EVENT_DESCRIPTOR, PETWENABLECALLBACK, REGHANDLE,
};
use gate_ksys::types::{GUID, NTSTATUS};

const STATUS_SUCCESS: NTSTATUS = 0;
const STATUS_INVALID_PARAMETER: NTSTATUS = 0xC000_000Du32 as i32;
const STATUS_INVALID_HANDLE: NTSTATUS = 0xC000_0008u32 as i32;
const STATUS_NOT_SUPPORTED: NTSTATUS = 0xC000_00BBu32 as i32;

/// Events kept by default: the capture is a window of the most recent
/// events (older ones are evicted and counted in [`dropped`]); totals by
/// event name are kept for the whole run ([`counts`]). Change the window
/// with [`set_capture_limit`].
pub const CAPTURE_LIMIT: usize = 262_144;

/// Called with every event captured (in the writing thread, outside the
/// capture's lock); see [`set_sink`].
pub type Sink = Box<dyn Fn(&CapturedEvent) + Send + Sync>;

/// A decoded field value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Unsigned integers (UINT8..UINT64, HEXINT32/64; a PORT-formatted UINT16
    /// is converted to host order, as TDH shows it).
    U64(u64),
    /// Signed integers (INT8..INT64).
    I64(i64),
    /// BOOL32.
    Bool(bool),
    /// BINARY bytes (the u16 length prefix removed).
    Bytes(Vec<u8>),
    /// ANSISTRING / UNICODESTRING / counted strings.
    Str(String),
    /// GUID bytes in Windows order.
    Guid([u8; 16]),
    /// FLOAT / DOUBLE (decoded for completeness; the gate never writes them).
    F64(f64),
}

/// One decoded field.
#[derive(Clone, Debug, PartialEq)]
pub struct CapturedField {
    /// Field name from the metadata.
    pub name: String,
    /// InType (flags removed).
    pub in_type: u8,
    /// OutType (0 = default).
    pub out_type: u8,
    /// Decoded value.
    pub value: Value,
}

impl CapturedField {
    /// The value as an unsigned integer, if it is one.
    pub fn as_u64(&self) -> Option<u64> {
        match self.value {
            Value::U64(v) => Some(v),
            _ => None,
        }
    }

    /// A BINARY value holding a Windows SOCKADDR_IN/SOCKADDR_IN6, parsed.
    pub fn as_socket_addr(&self) -> Option<SocketAddr> {
        match &self.value {
            Value::Bytes(b) => parse_sockaddr(b),
            _ => None,
        }
    }
}

/// One event as ETW would hand it to a consumer, decoded.
#[derive(Clone, Debug, PartialEq)]
pub struct CapturedEvent {
    /// Provider GUID of the registration that wrote it.
    pub provider: GUID,
    /// Provider name from the traits set with EtwSetInformation (None if not set).
    pub provider_name: Option<String>,
    /// Registration handle.
    pub reg_handle: REGHANDLE,
    /// Descriptor.
    pub id: u16,
    pub version: u8,
    pub channel: u8,
    pub level: u8,
    pub opcode: u8,
    pub task: u16,
    pub keyword: u64,
    /// Event name from the metadata ("" when there is none).
    pub name: String,
    /// Decoded fields, in order.
    pub fields: Vec<CapturedField>,
    /// What made the event undecodable, if anything (fields decoded up to
    /// the error are kept).
    pub error: Option<String>,
    /// The raw event-metadata blob (type-1 descriptor), as written.
    pub metadata: Vec<u8>,
    /// The raw payload (type-0 descriptors concatenated), as written.
    pub payload: Vec<u8>,
}

impl CapturedEvent {
    /// The field named `name`.
    pub fn field(&self, name: &str) -> Option<&CapturedField> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The value of the field named `name`.
    pub fn value(&self, name: &str) -> Option<&Value> {
        self.field(name).map(|f| &f.value)
    }

    /// The unsigned value of the field named `name`.
    pub fn u64(&self, name: &str) -> Option<u64> {
        self.field(name).and_then(CapturedField::as_u64)
    }
}

/// A simulated session's filter for one registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Session {
    /// Highest level wanted (0 = all).
    pub level: u8,
    /// MatchAnyKeyword (0 = all).
    pub any: u64,
    /// MatchAllKeyword.
    pub all: u64,
}

impl Session {
    /// Every level and keyword.
    pub const ALL: Session = Session {
        level: 255,
        any: u64::MAX,
        all: 0,
    };

    /// Whether ETW would pass an event with this level and keyword to the session.
    pub fn wants(&self, level: u8, keyword: u64) -> bool {
        let level_ok = self.level == 0 || level <= self.level;
        let any = if self.any == 0 { u64::MAX } else { self.any };
        let kw_ok = keyword == 0 || ((keyword & any) != 0 && (keyword & self.all) == self.all);
        level_ok && kw_ok
    }
}

struct Registration {
    guid: GUID,
    callback: PETWENABLECALLBACK,
    context: usize,
    session: Option<Session>,
    traits_name: Option<String>,
    descriptor_types: bool,
}

struct State {
    next_handle: REGHANDLE,
    regs: BTreeMap<REGHANDLE, Registration>,
    events: Ring<CapturedEvent>,
    counts: BTreeMap<String, u64>,
    /// Events with a `Reason` field, by name and reason value.
    reasons: BTreeMap<String, BTreeMap<u64, u64>>,
}

static STATE: Mutex<State> = Mutex::new(State {
    next_handle: 1,
    regs: BTreeMap::new(),
    events: Ring::new(CAPTURE_LIMIT),
    counts: BTreeMap::new(),
    reasons: BTreeMap::new(),
});

static SINK: RwLock<Option<Sink>> = RwLock::new(None);

static AVAILABLE: AtomicBool = AtomicBool::new(true);

fn state() -> MutexGuard<'static, State> {
    STATE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---------------------------------------------------------------- routines

/// `MmGetSystemRoutineAddress` for the Etw* routines: the address of the
/// simulated routine named `name` (UTF-16, no NUL), or null for any other
/// name, or for all of them after `set_routines_available(false)`.
pub fn resolve(name: &[u16]) -> *mut c_void {
    resolve_name(&String::from_utf16_lossy(name))
}

/// [`resolve`] for a name already converted from the `UNICODE_STRING`.
pub fn resolve_name(name: &str) -> *mut c_void {
    if !AVAILABLE.load(Ordering::SeqCst) {
        return std::ptr::null_mut();
    }
    match name {
        "EtwRegister" => EtwRegister as *mut c_void,
        "EtwUnregister" => EtwUnregister as *mut c_void,
        "EtwSetInformation" => EtwSetInformation as *mut c_void,
        "EtwWriteTransfer" => EtwWriteTransfer as *mut c_void,
        "EtwEventEnabled" => EtwEventEnabled as *mut c_void,
        _ => std::ptr::null_mut(),
    }
}

/// Makes [`resolve`] find no Etw* routine (as under Wine), process-wide.
pub fn set_routines_available(available: bool) {
    AVAILABLE.store(available, Ordering::SeqCst);
}

/// Simulated `EtwRegister`. The default session (every level and keyword)
/// is enabled at once: the callback runs before this returns.
///
/// # Safety
/// `provider_id` and `reg_handle` must be valid pointers; `callback`, if
/// any, must be callable with `context` until `EtwUnregister`.
#[allow(non_snake_case)]
pub unsafe extern "system" fn EtwRegister(
    provider_id: *const GUID,
    callback: PETWENABLECALLBACK,
    context: *mut c_void,
    reg_handle: *mut REGHANDLE,
) -> NTSTATUS {
    let _sim = crate::fault::sim();
    crate::hold::point("EtwRegister");
    if provider_id.is_null() || reg_handle.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: checked non-null; the caller passes a valid GUID.
    let guid = unsafe { *provider_id };
    let handle = {
        let mut st = state();
        let h = st.next_handle;
        st.next_handle += 1;
        st.regs.insert(
            h,
            Registration {
                guid,
                callback,
                context: context as usize,
                session: Some(Session::ALL),
                traits_name: None,
                descriptor_types: false,
            },
        );
        h
    };
    // SAFETY: checked non-null; the caller passes a writable handle slot.
    unsafe { *reg_handle = handle };
    notify(handle);
    STATUS_SUCCESS
}

/// Simulated `EtwUnregister`.
///
/// # Safety
/// None beyond the kernel contract (the handle is a plain value).
#[allow(non_snake_case)]
pub unsafe extern "system" fn EtwUnregister(reg_handle: REGHANDLE) -> NTSTATUS {
    let _sim = crate::fault::sim();
    crate::hold::point("EtwUnregister");
    match state().regs.remove(&reg_handle) {
        Some(_) => STATUS_SUCCESS,
        None => STATUS_INVALID_HANDLE,
    }
}

/// Simulated `EtwSetInformation`: `EventProviderSetTraits` (the blob must be
/// well formed: size, UTF-8 name, NUL, traits) and
/// `EventProviderUseDescriptorType`.
///
/// # Safety
/// `info` must point to `len` readable bytes.
#[allow(non_snake_case)]
pub unsafe extern "system" fn EtwSetInformation(
    reg_handle: REGHANDLE,
    class: u32,
    info: *const c_void,
    len: u32,
) -> NTSTATUS {
    let _sim = crate::fault::sim();
    crate::hold::point("EtwSetInformation");
    let bytes: &[u8] = if info.is_null() || len == 0 {
        &[]
    } else {
        // SAFETY: the caller guarantees `len` readable bytes at `info`.
        unsafe { std::slice::from_raw_parts(info.cast::<u8>(), len as usize) }
    };
    let mut st = state();
    let Some(reg) = st.regs.get_mut(&reg_handle) else {
        return STATUS_INVALID_HANDLE;
    };
    match class {
        c if c == EventProviderSetTraits => match parse_provider_traits(bytes) {
            Ok(name) => {
                reg.traits_name = Some(name);
                reg.descriptor_types = true;
                STATUS_SUCCESS
            }
            Err(_) => STATUS_INVALID_PARAMETER,
        },
        c if c == EventProviderUseDescriptorType => {
            reg.descriptor_types = bytes.first().is_some_and(|b| *b != 0);
            STATUS_SUCCESS
        }
        _ => STATUS_NOT_SUPPORTED,
    }
}

/// Simulated `EtwEventEnabled`: whether the session wants the event.
///
/// # Safety
/// `desc` must be a valid pointer.
#[allow(non_snake_case)]
pub unsafe extern "system" fn EtwEventEnabled(
    reg_handle: REGHANDLE,
    desc: *const EVENT_DESCRIPTOR,
) -> u8 {
    let _sim = crate::fault::sim();
    crate::hold::point("EtwEventEnabled");
    if desc.is_null() {
        return 0;
    }
    // SAFETY: checked non-null; valid per the contract.
    let d = unsafe { *desc };
    let st = state();
    let on = st
        .regs
        .get(&reg_handle)
        .and_then(|r| r.session)
        .is_some_and(|s| s.wants(d.Level, d.Keyword));
    u8::from(on)
}

/// Simulated `EtwWriteTransfer`: filters by the session, then decodes and
/// captures the event.
///
/// # Safety
/// `desc` must be valid; `data` must point to `count` descriptors, each
/// pointing to `Size` readable bytes.
#[allow(non_snake_case)]
pub unsafe extern "system" fn EtwWriteTransfer(
    reg_handle: REGHANDLE,
    desc: *const EVENT_DESCRIPTOR,
    _activity_id: *const GUID,
    _related_activity_id: *const GUID,
    count: u32,
    data: *const EVENT_DATA_DESCRIPTOR,
) -> NTSTATUS {
    let _sim = crate::fault::sim();
    crate::hold::point("EtwWriteTransfer");
    if desc.is_null() || (count != 0 && data.is_null()) {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: checked non-null; valid per the contract.
    let d = unsafe { *desc };
    let descs: &[EVENT_DATA_DESCRIPTOR] = if count == 0 {
        &[]
    } else {
        // SAFETY: the caller passes `count` descriptors at `data`.
        unsafe { std::slice::from_raw_parts(data, count as usize) }
    };
    let (guid, name, types) = {
        let st = state();
        let Some(reg) = st.regs.get(&reg_handle) else {
            return STATUS_INVALID_HANDLE;
        };
        match reg.session {
            Some(s) if s.wants(d.Level, d.Keyword) => {}
            _ => return STATUS_SUCCESS,
        }
        (reg.guid, reg.traits_name.clone(), reg.descriptor_types)
    };
    let mut blocks = Vec::with_capacity(descs.len());
    for dd in descs {
        // Borrowed for the call (decoding copies what the event keeps).
        let bytes: &[u8] = if dd.Size == 0 {
            &[]
        } else if dd.Ptr == 0 {
            return STATUS_INVALID_PARAMETER;
        } else {
            // SAFETY: the caller guarantees `Size` readable bytes at `Ptr`
            // for the duration of the call.
            unsafe { std::slice::from_raw_parts(dd.Ptr as usize as *const u8, dd.Size as usize) }
        };
        blocks.push((dd.Type, bytes));
    }
    // Nobody keeps or sees whole events (capture window 0, no sink): count
    // them by name and reason without building them.
    let light =
        SINK.read().unwrap_or_else(|e| e.into_inner()).is_none() && state().events.limit() == 0;
    if light && types {
        if let Ok((ev_name, reason)) = name_and_reason(&blocks) {
            let mut st = state();
            count_event(&mut st, &ev_name, reason);
            return STATUS_SUCCESS;
        }
    }
    let ev = decode_event(guid, name, reg_handle, &d, types, &blocks);
    if let Some(sink) = SINK.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
        sink(&ev);
    }
    let mut st = state();
    let reason = ev.u64("Reason");
    count_event(&mut st, &ev.name, reason);
    st.events.push(ev);
    STATUS_SUCCESS
}

// ------------------------------------------------------------- test API

/// Removes and returns every captured event.
pub fn take() -> Vec<CapturedEvent> {
    state().events.drain_all()
}

/// Removes and returns the events written through registration `handle`
/// (leaves other registrations' events, so parallel tests don't mix).
pub fn take_for(handle: REGHANDLE) -> Vec<CapturedEvent> {
    state().events.extract(|e| e.reg_handle == handle)
}

/// A copy of every captured event, left in place.
pub fn snapshot() -> Vec<CapturedEvent> {
    state().events.to_vec()
}

/// Events evicted from the capture window (written, counted in [`counts`],
/// no longer kept).
pub fn dropped() -> u64 {
    state().events.evicted()
}

/// Events captured since the last reset, by event name (whether or not
/// they are still in the window).
pub fn counts() -> BTreeMap<String, u64> {
    state().counts.clone()
}

/// Sets how many of the most recent events the capture keeps (0 keeps
/// none: only [`counts`] and the [`set_sink`] sink see them).
pub fn set_capture_limit(limit: usize) {
    state().events.set_limit(limit);
}

/// Sets (or with None removes) the sink that sees every captured event as
/// it is written, e.g. to stream events as JSON lines.
pub fn set_sink(sink: Option<Sink>) {
    *SINK.write().unwrap_or_else(|e| e.into_inner()) = sink;
}

/// Empties the capture and its counts and restores the default window
/// (called by `Sim::new`); the sink is kept.
pub(crate) fn reset_capture() {
    let mut st = state();
    st.events.clear();
    st.events.set_limit(CAPTURE_LIMIT);
    st.counts.clear();
    st.reasons.clear();
}

/// Whether `handle` is a live registration.
pub fn is_registered(handle: REGHANDLE) -> bool {
    state().regs.contains_key(&handle)
}

/// The provider name set through traits for `handle`.
pub fn provider_name(handle: REGHANDLE) -> Option<String> {
    state()
        .regs
        .get(&handle)
        .and_then(|r| r.traits_name.clone())
}

/// Sets the session filter of registration `handle` and tells the driver
/// through its enable callback (as a controller enabling the provider
/// with this level and these keywords would). False if no such handle.
pub fn set_session(handle: REGHANDLE, session: Session) -> bool {
    {
        let mut st = state();
        let Some(reg) = st.regs.get_mut(&handle) else {
            return false;
        };
        reg.session = Some(session);
    }
    notify(handle);
    true
}

/// Disables registration `handle` (the last session stopped): the enable
/// callback gets EVENT_CONTROL_CODE_DISABLE_PROVIDER.
pub fn disable(handle: REGHANDLE) -> bool {
    {
        let mut st = state();
        let Some(reg) = st.regs.get_mut(&handle) else {
            return false;
        };
        reg.session = None;
    }
    notify(handle);
    true
}

/// Calls the enable callback of `handle` with its current session (outside
/// the lock, so the callback may call back into ETW).
fn notify(handle: REGHANDLE) {
    let (guid, callback, context, session) = {
        let st = state();
        let Some(reg) = st.regs.get(&handle) else {
            return;
        };
        (reg.guid, reg.callback, reg.context, reg.session)
    };
    let Some(cb) = callback else {
        return;
    };
    let (code, s) = match session {
        Some(s) => (EVENT_CONTROL_CODE_ENABLE_PROVIDER, s),
        None => (
            EVENT_CONTROL_CODE_DISABLE_PROVIDER,
            Session {
                level: 0,
                any: 0,
                all: 0,
            },
        ),
    };
    // SAFETY: the driver registered this callback and context with
    // EtwRegister and keeps them valid until EtwUnregister; the GUID lives
    // on this stack for the call.
    unsafe {
        cb(
            &guid,
            code,
            s.level,
            s.any,
            s.all,
            std::ptr::null(),
            context as *mut c_void,
        )
    };
}

// --------------------------------------------------------------- decoding

/// Parses a provider-traits blob: u16 size (== blob length), UTF-8 name,
/// NUL, then traits (each u16 size >= 3, u8 type, data) to the end.
pub fn parse_provider_traits(blob: &[u8]) -> Result<String, String> {
    let size = read_u16(blob, 0).ok_or("provider traits shorter than 2 bytes")?;
    if usize::from(size) != blob.len() {
        return Err(format!(
            "provider traits size {size} != blob length {}",
            blob.len()
        ));
    }
    let (name, mut pos) = read_cstr(blob, 2).ok_or("provider name not NUL-terminated")?;
    if name.is_empty() {
        return Err("empty provider name".into());
    }
    while pos < blob.len() {
        let tsize = read_u16(blob, pos).ok_or("truncated trait")?;
        if tsize < 3 || pos + usize::from(tsize) > blob.len() {
            return Err(format!("bad trait size {tsize} at {pos}"));
        }
        pos += usize::from(tsize);
    }
    Ok(name)
}

/// One field as the metadata declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetaField {
    /// Field name.
    pub name: String,
    /// InType byte without the chain flag (array flags kept).
    pub in_type: u8,
    /// OutType (0 when absent).
    pub out_type: u8,
}

/// Parses a TraceLogging event-metadata blob: returns the event name and
/// fields.
pub fn parse_event_metadata(blob: &[u8]) -> Result<(String, Vec<MetaField>), String> {
    let size = read_u16(blob, 0).ok_or("event metadata shorter than 2 bytes")?;
    if usize::from(size) != blob.len() {
        return Err(format!(
            "event metadata size {size} != blob length {}",
            blob.len()
        ));
    }
    let mut pos = skip_chained(blob, 2).ok_or("truncated event tags")?;
    let (name, next) = read_cstr(blob, pos).ok_or("event name not NUL-terminated")?;
    if name.is_empty() {
        return Err("empty event name".into());
    }
    pos = next;
    let mut fields = Vec::new();
    while pos < blob.len() {
        let (fname, next) = read_cstr(blob, pos).ok_or("field name not NUL-terminated")?;
        if fname.is_empty() {
            return Err("empty field name".into());
        }
        pos = next;
        let in_byte = *blob
            .get(pos)
            .ok_or_else(|| format!("field {fname}: no InType"))?;
        pos += 1;
        let mut out_type = 0;
        if in_byte & 0x80 != 0 {
            let out_byte = *blob
                .get(pos)
                .ok_or_else(|| format!("field {fname}: no OutType"))?;
            pos += 1;
            out_type = out_byte & 0x7F;
            if out_byte & 0x80 != 0 {
                pos = skip_chained(blob, pos)
                    .ok_or_else(|| format!("field {fname}: truncated tags"))?;
            }
        }
        let in_type = in_byte & 0x7F;
        if in_type & 0x60 != 0 {
            // Constant-count arrays carry a u16 count in the metadata.
            if in_type & 0x60 == 0x20 {
                pos += 2;
            }
        }
        fields.push(MetaField {
            name: fname,
            in_type,
            out_type,
        });
    }
    if pos != blob.len() {
        return Err("event metadata overruns its size".into());
    }
    Ok((name, fields))
}

fn decode_event(
    guid: GUID,
    provider_name: Option<String>,
    reg_handle: REGHANDLE,
    d: &EVENT_DESCRIPTOR,
    descriptor_types: bool,
    blocks: &[(u8, &[u8])],
) -> CapturedEvent {
    let mut ev = CapturedEvent {
        provider: guid,
        provider_name,
        reg_handle,
        id: d.Id,
        version: d.Version,
        channel: d.Channel,
        level: d.Level,
        opcode: d.Opcode,
        task: d.Task,
        keyword: d.Keyword,
        name: String::new(),
        fields: Vec::new(),
        error: None,
        metadata: Vec::new(),
        payload: Vec::new(),
    };
    if let Err(e) = decode_into(&mut ev, descriptor_types, blocks) {
        ev.error = Some(e);
    }
    ev
}

fn decode_into(
    ev: &mut CapturedEvent,
    descriptor_types: bool,
    blocks: &[(u8, &[u8])],
) -> Result<(), String> {
    if !descriptor_types {
        return Err("descriptor types are ignored: provider traits were never set".into());
    }
    // Windows 10 marks every event of a provider with TraceLogging traits as
    // TraceLogging, whatever its channel (TraceLoggingChannel's remarks);
    // without the traits only channel 11 would identify one, and that case
    // was refused above.
    let mut provider_meta = None;
    let mut event_meta = None;
    let mut payload = Vec::new();
    for (ty, bytes) in blocks {
        match *ty {
            EVENT_DATA_DESCRIPTOR_TYPE_PROVIDER_METADATA => provider_meta = Some(bytes),
            EVENT_DATA_DESCRIPTOR_TYPE_EVENT_METADATA => event_meta = Some(bytes),
            EVENT_DATA_DESCRIPTOR_TYPE_NONE => payload.extend_from_slice(bytes),
            other => return Err(format!("unknown data descriptor type {other}")),
        }
    }
    ev.payload = payload.clone();
    if let Some(em) = event_meta {
        ev.metadata = em.to_vec();
    }
    let pm = provider_meta.ok_or("no provider metadata descriptor")?;
    let pname = cached(&PROVIDER_CACHE, pm, parse_provider_traits)?;
    if let Some(set) = &ev.provider_name {
        if *set != *pname {
            return Err(format!(
                "event provider metadata names {pname:?}, traits named {set:?}"
            ));
        }
    }
    let em = event_meta.ok_or("no event metadata descriptor")?;
    let meta = cached(&META_CACHE, em, parse_event_metadata)?;
    let (name, fields) = &*meta;
    ev.name = name.clone();
    let mut pos = 0usize;
    for f in fields {
        let (value, used) = decode_value(&payload[pos..], f.in_type, f.out_type)
            .map_err(|e| format!("field {}: {e}", f.name))?;
        pos += used;
        ev.fields.push(CapturedField {
            name: f.name.clone(),
            in_type: f.in_type,
            out_type: f.out_type,
            value,
        });
    }
    if pos != payload.len() {
        return Err(format!(
            "{} payload bytes left after the last field",
            payload.len() - pos
        ));
    }
    Ok(())
}

/// Parsed metadata blobs by content (a driver writes the same few blobs
/// for every event; parsing them once per event was most of the decoding
/// cost). Bounded: emptied when it holds [`PARSE_CACHE_LIMIT`] blobs.
type ParseCache<T> = Mutex<Option<std::collections::HashMap<Vec<u8>, std::sync::Arc<T>>>>;
static META_CACHE: ParseCache<(String, Vec<MetaField>)> = Mutex::new(None);
static PROVIDER_CACHE: ParseCache<String> = Mutex::new(None);
const PARSE_CACHE_LIMIT: usize = 4096;

/// `parse(blob)`, remembered by the blob's bytes (errors are not cached).
fn cached<T>(
    cache: &ParseCache<T>,
    blob: &[u8],
    parse: impl FnOnce(&[u8]) -> Result<T, String>,
) -> Result<std::sync::Arc<T>, String> {
    if let Some(v) = cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(|m| m.get(blob))
    {
        return Ok(v.clone());
    }
    let v = std::sync::Arc::new(parse(blob)?);
    let mut g = cache.lock().unwrap_or_else(|e| e.into_inner());
    let m = g.get_or_insert_with(std::collections::HashMap::new);
    if m.len() >= PARSE_CACHE_LIMIT {
        m.clear();
    }
    m.insert(blob.to_vec(), v.clone());
    Ok(v)
}

/// Counts one event by name (and reason).
fn count_event(st: &mut State, name: &str, reason: Option<u64>) {
    if let Some(n) = st.counts.get_mut(name) {
        *n += 1;
    } else {
        st.counts.insert(name.to_string(), 1);
    }
    if let Some(r) = reason {
        if !st.reasons.contains_key(name) {
            st.reasons.insert(name.to_string(), BTreeMap::new());
        }
        if let Some(m) = st.reasons.get_mut(name) {
            *m.entry(r).or_insert(0) += 1;
        }
    }
}

/// The event name and its `Reason` field (if it has one), decoding only
/// the fields before `Reason`: the light path of [`EtwWriteTransfer`].
fn name_and_reason(blocks: &[(u8, &[u8])]) -> Result<(String, Option<u64>), String> {
    let mut meta = None;
    let mut payload: Vec<u8> = Vec::new();
    for (ty, b) in blocks {
        match *ty {
            EVENT_DATA_DESCRIPTOR_TYPE_EVENT_METADATA => meta = Some(*b),
            EVENT_DATA_DESCRIPTOR_TYPE_NONE => payload.extend_from_slice(b),
            EVENT_DATA_DESCRIPTOR_TYPE_PROVIDER_METADATA => {}
            other => return Err(format!("unknown data descriptor type {other}")),
        }
    }
    let meta = cached(
        &META_CACHE,
        meta.ok_or("no event metadata")?,
        parse_event_metadata,
    )?;
    let (name, fields) = &*meta;
    let mut pos = 0usize;
    for f in fields {
        let (v, used) = decode_value(payload.get(pos..).unwrap_or(&[]), f.in_type, f.out_type)?;
        if f.name == "Reason" {
            return Ok((
                name.clone(),
                match v {
                    Value::U64(r) => Some(r),
                    _ => None,
                },
            ));
        }
        pos += used;
    }
    Ok((name.clone(), None))
}

/// Events with a `Reason` field since the last reset, by name and reason
/// value (counted whether or not events are kept).
pub fn reason_counts() -> BTreeMap<String, BTreeMap<u64, u64>> {
    state().reasons.clone()
}

/// Decodes one scalar value; returns it and the bytes used.
fn decode_value(p: &[u8], in_type: u8, out_type: u8) -> Result<(Value, usize), String> {
    if in_type & 0x60 != 0 {
        return Err(format!(
            "array fields (InType {in_type:#x}) are not decoded"
        ));
    }
    let fixed = |n: usize| -> Result<&[u8], String> {
        p.get(..n)
            .ok_or_else(|| format!("needs {n} bytes, {} left", p.len()))
    };
    let le = |b: &[u8]| -> u64 { b.iter().rev().fold(0u64, |a, x| (a << 8) | u64::from(*x)) };
    Ok(match in_type {
        3 => (Value::I64(i64::from(fixed(1)?[0] as i8)), 1),
        4 => (Value::U64(le(fixed(1)?)), 1),
        5 => (Value::I64(i64::from(le(fixed(2)?) as u16 as i16)), 2),
        6 => {
            let b = fixed(2)?;
            // PORT: network byte order on the wire.
            let v = if out_type == 7 {
                u16::from_be_bytes([b[0], b[1]])
            } else {
                u16::from_le_bytes([b[0], b[1]])
            };
            (Value::U64(u64::from(v)), 2)
        }
        7 => (Value::I64(i64::from(le(fixed(4)?) as u32 as i32)), 4),
        8 | 20 => (Value::U64(le(fixed(4)?)), 4),
        9 => (Value::I64(le(fixed(8)?) as i64), 8),
        10 | 21 => (Value::U64(le(fixed(8)?)), 8),
        11 => (
            Value::F64(f64::from(f32::from_bits(le(fixed(4)?) as u32))),
            4,
        ),
        12 => (Value::F64(f64::from_bits(le(fixed(8)?))), 8),
        13 => {
            let v = le(fixed(4)?);
            if v > 1 {
                return Err(format!("BOOL32 value {v} is neither 0 nor 1"));
            }
            (Value::Bool(v == 1), 4)
        }
        14 | 25 => {
            let n = usize::from(le(fixed(2)?) as u16);
            let b = p.get(2..2 + n).ok_or_else(|| {
                format!("BINARY of {n} bytes, {} left", p.len().saturating_sub(2))
            })?;
            (Value::Bytes(b.to_vec()), 2 + n)
        }
        15 => {
            let b = fixed(16)?;
            let mut g = [0u8; 16];
            g.copy_from_slice(b);
            (Value::Guid(g), 16)
        }
        2 => {
            let end = p
                .iter()
                .position(|&c| c == 0)
                .ok_or("ANSISTRING without NUL")?;
            (
                Value::Str(String::from_utf8_lossy(&p[..end]).into_owned()),
                end + 1,
            )
        }
        1 => {
            let units: Vec<u16> = p
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            let end = units
                .iter()
                .position(|&c| c == 0)
                .ok_or("UNICODESTRING without NUL")?;
            (
                Value::Str(String::from_utf16_lossy(&units[..end])),
                2 * end + 2,
            )
        }
        23 => {
            let n = usize::from(le(fixed(2)?) as u16);
            let b = p.get(2..2 + n).ok_or("truncated COUNTEDANSISTRING")?;
            (Value::Str(String::from_utf8_lossy(b).into_owned()), 2 + n)
        }
        22 => {
            let n = usize::from(le(fixed(2)?) as u16);
            let b = p.get(2..2 + n).ok_or("truncated COUNTEDSTRING")?;
            let units: Vec<u16> = b
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            (Value::Str(String::from_utf16_lossy(&units)), 2 + n)
        }
        other => return Err(format!("InType {other} is not decoded by the simulation")),
    })
}

/// Parses Windows SOCKADDR_IN (16 bytes, AF_INET 2) or SOCKADDR_IN6 (28
/// bytes, AF_INET6 23).
pub fn parse_sockaddr(b: &[u8]) -> Option<SocketAddr> {
    let family = read_u16(b, 0)?;
    let port = u16::from_be_bytes([*b.get(2)?, *b.get(3)?]);
    match (family, b.len()) {
        (2, 16) => {
            let ip = Ipv4Addr::new(b[4], b[5], b[6], b[7]);
            Some(SocketAddr::V4(SocketAddrV4::new(ip, port)))
        }
        (23, 28) => {
            let flow = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&b[8..24]);
            let scope = u32::from_le_bytes([b[24], b[25], b[26], b[27]]);
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(ip),
                port,
                flow,
                scope,
            )))
        }
        _ => None,
    }
}

fn read_u16(b: &[u8], pos: usize) -> Option<u16> {
    Some(u16::from_le_bytes([*b.get(pos)?, *b.get(pos + 1)?]))
}

/// Reads a NUL-terminated UTF-8 string at `pos`; returns it and the
/// position after the NUL.
fn read_cstr(b: &[u8], pos: usize) -> Option<(String, usize)> {
    let rest = b.get(pos..)?;
    let end = rest.iter().position(|&c| c == 0)?;
    let s = std::str::from_utf8(&rest[..end]).ok()?;
    Some((s.to_owned(), pos + end + 1))
}

/// Skips a chain of bytes whose high bit says "another byte follows".
fn skip_chained(b: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let byte = *b.get(pos)?;
        pos += 1;
        if byte & 0x80 == 0 {
            return Some(pos);
        }
    }
}
