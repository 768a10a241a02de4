//! The ETW provider registration: resolves the Etw* routines at run time,
//! registers, sets the TraceLogging provider traits, tracks which levels and
//! keywords sessions asked for (through the enable callback), writes events
//! and unregisters.
//!
//! All state is atomics, so a `Provider` can be a plain `static`.

use core::ffi::c_void;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use gate_ksys::etw::{
    EtwRegisterFn, EtwSetInformationFn, EtwUnregisterFn, EtwWriteTransferFn,
    EventProviderSetTraits, EVENT_CONTROL_CODE_DISABLE_PROVIDER,
    EVENT_CONTROL_CODE_ENABLE_PROVIDER, EVENT_DATA_DESCRIPTOR, EVENT_DESCRIPTOR,
    EVENT_FILTER_DESCRIPTOR, REGHANDLE,
};
use gate_ksys::types::{GUID, NTSTATUS};

use super::{PROVIDER_GUID, PROVIDER_TRAITS};

/// The routine names resolved through `MmGetSystemRoutineAddress`, as
/// UTF-16 without a terminating NUL (build a `UNICODE_STRING` over them).
pub mod routine {
    /// `L"EtwRegister"`.
    pub const ETW_REGISTER: &[u16] = &utf16::<11>("EtwRegister");
    /// `L"EtwUnregister"`.
    pub const ETW_UNREGISTER: &[u16] = &utf16::<13>("EtwUnregister");
    /// `L"EtwSetInformation"`.
    pub const ETW_SET_INFORMATION: &[u16] = &utf16::<17>("EtwSetInformation");
    /// `L"EtwWriteTransfer"`.
    pub const ETW_WRITE_TRANSFER: &[u16] = &utf16::<16>("EtwWriteTransfer");

    /// ASCII to UTF-16 at compile time (length checked by the build).
    // Compile time only (const initialisers): a bad index is a build error.
    #[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
    const fn utf16<const N: usize>(s: &str) -> [u16; N] {
        let b = s.as_bytes();
        assert!(b.len() == N, "routine name length");
        let mut out = [0u16; N];
        let mut i = 0;
        while i < N {
            out[i] = b[i] as u16;
            i += 1;
        }
        out
    }
}

/// What [`Provider::register`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterOutcome {
    /// Registered; events are written while a session listens.
    Registered,
    /// A routine is missing (e.g. under Wine): events are off, nothing else
    /// is affected. Carries the routine's name for the debug message.
    Unavailable(&'static str),
    /// `EtwRegister` failed with this status: events are off.
    Failed(NTSTATUS),
    /// This provider is already registered (or being registered).
    AlreadyRegistered,
}

const STATE_IDLE: u8 = 0;
const STATE_BUSY: u8 = 1;
const STATE_REGISTERED: u8 = 2;

/// One ETW provider registration (the gate has exactly one).
pub struct Provider {
    state: AtomicU8,
    handle: AtomicU64,
    /// `EtwWriteTransferFn` as an address; 0 = none.
    write_fn: AtomicUsize,
    /// `EtwUnregisterFn` as an address; 0 = none.
    unregister_fn: AtomicUsize,
    /// Highest enabled level + 1 (256 = all levels); 0 = no session.
    level_plus1: AtomicU32,
    keyword_any: AtomicU64,
    keyword_all: AtomicU64,
    /// Status of the `EtwSetInformation(EventProviderSetTraits)` call
    /// (i32 as u32; `u32::MAX` = routine absent or not called).
    traits_status: AtomicU32,
}

impl Default for Provider {
    fn default() -> Self {
        Self::new()
    }
}

impl Provider {
    /// An unregistered provider (usable as a `static` initialiser).
    pub const fn new() -> Provider {
        Provider {
            state: AtomicU8::new(STATE_IDLE),
            handle: AtomicU64::new(0),
            write_fn: AtomicUsize::new(0),
            unregister_fn: AtomicUsize::new(0),
            level_plus1: AtomicU32::new(0),
            keyword_any: AtomicU64::new(0),
            keyword_all: AtomicU64::new(0),
            traits_status: AtomicU32::new(u32::MAX),
        }
    }

    /// Resolves the Etw* routines with `resolve` (give it
    /// `MmGetSystemRoutineAddress` over a `UNICODE_STRING` of the name; the
    /// names are in [`routine`]; return null when not found), registers the
    /// provider [`PROVIDER_GUID`] and sets its TraceLogging traits.
    ///
    /// Call at PASSIVE_LEVEL (DriverEntry). Never fails the driver: when a
    /// routine is missing or registration fails the provider stays off and
    /// every write is a no-op.
    pub fn register(&'static self, resolve: impl Fn(&[u16]) -> *mut c_void) -> RegisterOutcome {
        if self
            .state
            .compare_exchange(STATE_IDLE, STATE_BUSY, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return RegisterOutcome::AlreadyRegistered;
        }
        let outcome = self.register_inner(&resolve);
        let next = if outcome == RegisterOutcome::Registered {
            STATE_REGISTERED
        } else {
            STATE_IDLE
        };
        self.state.store(next, Ordering::Release);
        outcome
    }

    fn register_inner(&'static self, resolve: &dyn Fn(&[u16]) -> *mut c_void) -> RegisterOutcome {
        let reg = resolve(routine::ETW_REGISTER);
        if reg.is_null() {
            return RegisterOutcome::Unavailable("EtwRegister");
        }
        let unreg = resolve(routine::ETW_UNREGISTER);
        if unreg.is_null() {
            return RegisterOutcome::Unavailable("EtwUnregister");
        }
        let write = resolve(routine::ETW_WRITE_TRANSFER);
        if write.is_null() {
            return RegisterOutcome::Unavailable("EtwWriteTransfer");
        }
        let set_info = resolve(routine::ETW_SET_INFORMATION);

        // SAFETY: `reg` is the non-null address of EtwRegister as returned by
        // MmGetSystemRoutineAddress, whose signature is `EtwRegisterFn`.
        let register: EtwRegisterFn =
            unsafe { core::mem::transmute::<*mut c_void, EtwRegisterFn>(reg) };
        let mut handle: REGHANDLE = 0;
        let context = self as *const Provider as *mut c_void;
        // SAFETY: every pointer is valid for the call; `context` points to a
        // `'static` Provider, so it outlives the registration, and
        // `enable_callback` matches PETWENABLECALLBACK.
        let status =
            unsafe { register(&PROVIDER_GUID, Some(enable_callback), context, &mut handle) };
        if status < 0 {
            return RegisterOutcome::Failed(status);
        }
        self.unregister_fn.store(unreg as usize, Ordering::Release);
        self.write_fn.store(write as usize, Ordering::Release);
        self.handle.store(handle, Ordering::Release);

        if !set_info.is_null() {
            // SAFETY: `set_info` is the non-null address of EtwSetInformation,
            // whose signature is `EtwSetInformationFn`.
            let set: EtwSetInformationFn =
                unsafe { core::mem::transmute::<*mut c_void, EtwSetInformationFn>(set_info) };
            let len = u32::try_from(PROVIDER_TRAITS.len()).unwrap_or(0);
            // SAFETY: the traits blob is a static of `len` bytes; `handle` is
            // the registration just made.
            let st = unsafe {
                set(
                    handle,
                    EventProviderSetTraits,
                    PROVIDER_TRAITS.as_ptr().cast::<c_void>(),
                    len,
                )
            };
            self.traits_status.store(st as u32, Ordering::Relaxed);
        }
        RegisterOutcome::Registered
    }

    /// Unregisters (call at unload, at PASSIVE_LEVEL, once no other thread
    /// can still write events). Returns the EtwUnregister status, or 0 when
    /// the provider was not registered.
    pub fn unregister(&self) -> NTSTATUS {
        if self
            .state
            .compare_exchange(
                STATE_REGISTERED,
                STATE_BUSY,
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_err()
        {
            return 0;
        }
        let handle = self.handle.swap(0, Ordering::AcqRel);
        self.write_fn.store(0, Ordering::Release);
        self.level_plus1.store(0, Ordering::Release);
        let unreg = self.unregister_fn.swap(0, Ordering::AcqRel);
        let mut status = 0;
        if unreg != 0 {
            // SAFETY: `unreg` was stored from the non-null EtwUnregister
            // address at registration; `handle` is that registration.
            let f: EtwUnregisterFn =
                unsafe { core::mem::transmute::<usize, EtwUnregisterFn>(unreg) };
            // SAFETY: unregistering the handle EtwRegister gave us, once.
            status = unsafe { f(handle) };
        }
        self.state.store(STATE_IDLE, Ordering::Release);
        status
    }

    /// The registration handle (0 when not registered).
    pub fn reg_handle(&self) -> REGHANDLE {
        self.handle.load(Ordering::Acquire)
    }

    /// Whether registration succeeded and has not been undone.
    pub fn is_registered(&self) -> bool {
        self.state.load(Ordering::Acquire) == STATE_REGISTERED
    }

    /// Status of the provider-traits call (None when EtwSetInformation was
    /// not available).
    pub fn traits_status(&self) -> Option<NTSTATUS> {
        match self.traits_status.load(Ordering::Relaxed) {
            u32::MAX => None,
            s => Some(s as i32),
        }
    }

    /// Whether some session wants events of this level and keyword (the
    /// TraceLoggingProvider.h rule). Cheap: write functions call it first.
    pub fn enabled(&self, level: u8, keyword: u64) -> bool {
        if self.handle.load(Ordering::Relaxed) == 0 {
            return false;
        }
        if u32::from(level) >= self.level_plus1.load(Ordering::Relaxed) {
            return false;
        }
        let any = self.keyword_any.load(Ordering::Relaxed);
        let all = self.keyword_all.load(Ordering::Relaxed);
        keyword == 0 || ((keyword & any) != 0 && (keyword & all) == all)
    }

    /// Writes one event (descriptors already built). No-op when not
    /// registered.
    pub fn write(&self, descriptor: &EVENT_DESCRIPTOR, data: &[EVENT_DATA_DESCRIPTOR]) -> NTSTATUS {
        let handle = self.handle.load(Ordering::Acquire);
        let f = self.write_fn.load(Ordering::Acquire);
        if handle == 0 || f == 0 {
            return 0;
        }
        // SAFETY: `f` was stored from the non-null EtwWriteTransfer address.
        let write: EtwWriteTransferFn =
            unsafe { core::mem::transmute::<usize, EtwWriteTransferFn>(f) };
        let count = u32::try_from(data.len()).unwrap_or(0);
        // SAFETY: descriptor and data are valid for the call and point to
        // memory that lives until it returns; no activity ids are passed.
        unsafe {
            write(
                handle,
                descriptor,
                super::meta::NO_GUID,
                super::meta::NO_GUID,
                count,
                data.as_ptr(),
            )
        }
    }

    fn on_enable(&self, code: u32, level: u8, any: u64, all: u64) {
        match code {
            EVENT_CONTROL_CODE_ENABLE_PROVIDER => {
                let lp1 = if level == 0 {
                    256
                } else {
                    u32::from(level) + 1
                };
                // A session that asks for no keyword gets every event.
                let any = if any == 0 { u64::MAX } else { any };
                self.keyword_any.store(any, Ordering::Relaxed);
                self.keyword_all.store(all, Ordering::Relaxed);
                self.level_plus1.store(lp1, Ordering::Release);
            }
            EVENT_CONTROL_CODE_DISABLE_PROVIDER => {
                self.level_plus1.store(0, Ordering::Release);
            }
            _ => {}
        }
    }
}

/// The `PETWENABLECALLBACK` given to EtwRegister.
unsafe extern "system" fn enable_callback(
    _source_id: *const GUID,
    control_code: u32,
    level: u8,
    match_any_keyword: u64,
    match_all_keyword: u64,
    _filter_data: *const EVENT_FILTER_DESCRIPTOR,
    callback_context: *mut c_void,
) {
    // SAFETY: the context is the `&'static Provider` passed to EtwRegister.
    let provider = unsafe { callback_context.cast::<Provider>().as_ref() };
    if let Some(p) = provider {
        p.on_enable(control_code, level, match_any_keyword, match_all_keyword);
    }
}
