//! The test harness: one [`Sim`] at a time per process (it holds a global
//! lock and resets the whole simulation when created), the driver's life
//! cycle ([`Sim::load_driver`], [`Driver::unload`] with a [`LeakReport`]),
//! the network side ([`Sim::connect`] → [`Request`], [`Conn`]), the virtual
//! clock, switches for the nasty cases, and what was observed (violations,
//! debug output, pool/IRP/object counters).

use crate::wsk::net::{self, ConnInfo, ListenerInfo, RequestInfo};
use crate::wsk::{RequestState, Verdict};
use crate::*;
use crate::{
    clock, debug, dispatcher, errorlog, etw, irp, objects, pool, registry, routines, violation,
};
use gate_ksys::{
    DRIVER_OBJECT, NTSTATUS, NT_SUCCESS, UNICODE_STRING, WSK_INSPECT_ACTION, WSK_INSPECT_ID,
};
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

static TEST_LOCK: Mutex<()> = Mutex::new(());
static LENT: Mutex<Vec<Box<[u16]>>> = Mutex::new(Vec::new());

/// `DriverEntry`'s signature.
pub type DriverEntryFn =
    unsafe extern "system" fn(*mut DRIVER_OBJECT, *mut UNICODE_STRING) -> NTSTATUS;

/// The simulation, exclusively held by one test. Create it first thing in
/// a test: `let sim = Sim::new();`. It is `Sync`, so scoped threads can share
/// `&sim` to drive concurrent connection requests.
pub struct Sim {
    _lock: MutexGuard<'static, ()>,
}

impl Default for Sim {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs `f` on a fresh thread (at PASSIVE_LEVEL, like a system thread of
/// the I/O manager) and returns its result.
fn on_system_thread<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(r) => r,
        Err(p) => std::panic::resume_unwind(p),
    })
}

impl Sim {
    /// Takes the simulation (waiting for other tests) and resets it: empty
    /// registry, virtual clock at [`clock::VIRTUAL_START`], no violations,
    /// WSK provider ready, completions [`CompletionMode::Async`], every
    /// routine resolvable.
    pub fn new() -> Sim {
        let lock = TEST_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        irp::drain();
        dispatcher::drain_dpcs();
        violation::reset();
        debug::reset();
        errorlog::reset();
        pool::reset();
        irp::reset();
        crate::device::reset();
        dispatcher::reset();
        objects::reset();
        registry::reset();
        routines::reset();
        clock::reset();
        crate::wsk::reset();
        crate::hold::reset();
        crate::mdl::reset();
        etw::reset_capture();
        etw::set_routines_available(true);
        Sim { _lock: lock }
    }

    // ---- registry ----

    /// Sets a value (creating the key), e.g.
    /// `registry_set(r"\Registry\Machine\System\CurrentControlSet\Services\gate\Parameters", "Port", RegValue::Dword(8080))`.
    pub fn registry_set(&self, key: &str, name: &str, value: RegValue) {
        registry::set(key, name, &value);
    }

    /// Creates an empty key.
    pub fn registry_create_key(&self, key: &str) {
        registry::create_key(key);
    }

    /// Removes a key with its values and subkeys.
    pub fn registry_delete_key(&self, key: &str) {
        registry::delete_key(key);
    }

    /// Whether a key exists (set, created by a test or by the driver's
    /// ZwCreateKey).
    pub fn registry_key_exists(&self, key: &str) -> bool {
        registry::key_exists(key)
    }

    /// Removes a value.
    pub fn registry_delete_value(&self, key: &str, name: &str) {
        registry::delete_value(key, name);
    }

    // ---- clock ----

    /// Moves the virtual clock forward by `ns` nanoseconds: timers expire in
    /// order and their DPCs run before this returns; waits whose timeout
    /// passed wake up.
    pub fn advance(&self, ns: u64) {
        dispatcher::advance(ns);
        irp::drain();
    }

    /// [`Sim::advance`] in milliseconds.
    pub fn advance_ms(&self, ms: u64) {
        self.advance(ms.saturating_mul(1_000_000));
    }

    /// Interrupt time now, in 100 ns units.
    pub fn now(&self) -> u64 {
        clock::now()
    }

    /// Real-time mode (for interactive and NFQUEUE use): the clock follows
    /// the host's monotonic clock and timers fire by themselves.
    pub fn set_real_time(&self, on: bool) {
        clock::set_real(on);
        if on {
            dispatcher::real_time_started();
        }
        dispatcher::notify_all();
    }

    // ---- switches ----

    /// Makes MmGetSystemRoutineAddress return NULL for `name` (or resolve it
    /// again), e.g. "ExAllocatePool2" or "KeQueryInterruptTimePrecise" as on
    /// Wine.
    pub fn hide_routine(&self, name: &str, hidden: bool) {
        routines::hide(name, hidden);
    }

    /// Makes `KeQueryInterruptTime` return milliseconds instead of 100 ns
    /// units, as Wine 8's does (it returns `NtGetTickCount()`).
    pub fn wine_interrupt_time(&self, on: bool) {
        crate::clock::set_wine_interrupt_time(on);
    }

    /// Lets `skip` allocations succeed, then fails the next `count`. Counts
    /// pool blocks, IRPs (IoAllocateIrp) and MDLs (IoAllocateMdl) together,
    /// in call order.
    pub fn inject_pool_failures(&self, skip: u64, count: u64) {
        pool::inject_failures(skip, count);
    }

    /// Arms an allocation plan on the calling thread ([`crate::fault`]):
    /// every allocation driver code makes on this thread (pool blocks,
    /// IRPs, MDLs, and global-allocator blocks if the test binary's
    /// `#[global_allocator]` asks [`crate::fault::global_alloc_fails`]) is
    /// counted, and the `fail_at`-th (1-based) fails; 0 only counts. Use it
    /// around a request that runs on the caller's thread (an IOCTL).
    pub fn arm_thread_allocations(&self, fail_at: u64) {
        crate::fault::arm(fail_at);
    }

    /// Ends the calling thread's plan; what it counted and failed.
    pub fn disarm_thread_allocations(&self) -> crate::fault::Counted {
        crate::fault::disarm()
    }

    /// MDLs IoAllocateMdl returned since the simulation started (the third
    /// part of the failure-injection sequence, with pool blocks and IRPs).
    pub fn mdl_allocations(&self) -> u64 {
        crate::mdl::allocated()
    }

    /// Lets `skip` PsCreateSystemThread calls succeed, then fails the next
    /// `count` with STATUS_INSUFFICIENT_RESOURCES (no thread is created).
    pub fn fail_thread_creations(&self, skip: u64, count: u64) {
        crate::objects::fail_thread_creations(skip, count);
    }

    /// Fails the next `n` IoAllocateIrp calls.
    pub fn fail_next_irp_allocations(&self, n: u64) {
        irp::fail_next_allocations(n);
    }

    /// How the provider completes IRPs (default Async).
    pub fn set_completion_mode(&self, mode: CompletionMode) {
        irp::set_mode(mode);
    }

    /// While not ready, WskCaptureProviderNPI waits (virtual time) and then
    /// fails with STATUS_DEVICE_NOT_READY.
    pub fn set_provider_ready(&self, ready: bool) {
        crate::wsk::wsk().provider_not_ready = !ready;
        crate::wsk::WSK_CV.notify_all();
    }

    /// The next WskInspectComplete returns STATUS_FILE_FORCED_CLOSED and its
    /// listening socket dies (every later call but WskCloseSocket fails).
    pub fn force_close_next_inspect_complete(&self) {
        crate::wsk::wsk().force_close_next_complete = true;
    }

    /// How long (real time) WskDeregister waits for sockets to close before
    /// recording `DeregisterBlocked` and returning (default 5 s).
    pub fn set_deregister_timeout(&self, t: Duration) {
        crate::wsk::wsk().deregister_timeout = Some(t);
    }

    /// Whether WskControlSocket(SO_CONDITIONAL_ACCEPT) is implemented
    /// (default true). With `false` it behaves exactly like Wine 8's netio
    /// stub: it returns STATUS_NOT_IMPLEMENTED WITHOUT taking or completing
    /// the IRP (the IRP stays the caller's, its completion routine never
    /// runs) and the socket keeps conditional accept off. This models Wine
    /// only: real WSK completes the IRP of every call it is given, failures
    /// included (a driver that waits for the completion of a non-pending
    /// failure hangs on Wine, not on Windows).
    pub fn set_conditional_accept_supported(&self, supported: bool) {
        crate::wsk::wsk().conditional_accept_stub = !supported;
    }

    /// Whether WskDisconnect is implemented (default true). With `false` it
    /// is a Wine-style stub: STATUS_NOT_IMPLEMENTED, the IRP neither taken
    /// nor completed, the connection left as it was (the caller can still
    /// close it). Like [`Sim::set_conditional_accept_supported`], this
    /// models a stub, not Windows.
    pub fn set_disconnect_supported(&self, supported: bool) {
        crate::wsk::wsk().disconnect_stub = !supported;
    }

    /// With `true`, a graceful WskDisconnect on a simulated connection
    /// pends like one whose peer does not take the data or acknowledge the
    /// FIN (a slow or hostile peer): the IRP completes when
    /// [`Sim::finish_disconnects`] is called (STATUS_SUCCESS), or when an
    /// abortive WskDisconnect or WskCloseSocket on the socket cancels it
    /// (STATUS_CONNECTION_ABORTED / STATUS_CANCELLED). Abortive
    /// disconnects never pend.
    pub fn set_slow_peer_close(&self, on: bool) {
        crate::wsk::wsk().disconnect_pends = on;
    }

    /// Completes every graceful disconnect pending for a slow peer
    /// ([`Sim::set_slow_peer_close`]); returns how many.
    pub fn finish_disconnects(&self) -> usize {
        crate::wsk::conn::finish_disconnects()
    }

    /// Graceful disconnects pending for a slow peer now.
    pub fn pending_disconnects(&self) -> usize {
        crate::wsk::conn::pending_disconnects()
    }

    /// With `true`, KeBugCheckEx parks the calling thread instead of
    /// aborting the process; see [`Sim::bugchecks`].
    pub fn park_on_bugcheck(&self, on: bool) {
        debug::set_park_on_bugcheck(on);
    }

    // ---- the driver ----

    /// Calls `entry` like the I/O manager: on a system thread at
    /// PASSIVE_LEVEL, with a fresh DRIVER_OBJECT and `registry_path` (whose
    /// key is created; its buffer is overwritten once DriverEntry returns,
    /// as the path is only lent for the call).
    pub fn load_driver(
        &self,
        entry: DriverEntryFn,
        registry_path: &str,
    ) -> Result<Driver, NTSTATUS> {
        self.load(entry, registry_path, None).0
    }

    /// [`Sim::load_driver`] with an allocation plan ([`crate::fault`]) on
    /// DriverEntry's thread: DriverEntry runs as driver code, its
    /// `fail_at`-th allocation (pool, IRP, MDL or, with the test's
    /// allocator, global) fails (0: none), and what the plan counted is
    /// returned. Threads DriverEntry starts have no plan.
    pub fn load_driver_failing(
        &self,
        entry: DriverEntryFn,
        registry_path: &str,
        fail_at: u64,
    ) -> (Result<Driver, NTSTATUS>, crate::fault::Counted) {
        let (r, c) = self.load(entry, registry_path, Some(fail_at));
        (r, c.unwrap_or_default())
    }

    fn load(
        &self,
        entry: DriverEntryFn,
        registry_path: &str,
        plan: Option<u64>,
    ) -> (Result<Driver, NTSTATUS>, Option<crate::fault::Counted>) {
        registry::create_key(registry_path);
        // SAFETY: all-zero is a valid DRIVER_OBJECT (NULL pointers, None).
        let mut obj: Box<DRIVER_OBJECT> = Box::new(unsafe { std::mem::zeroed() });
        obj.Type = 4;
        obj.Size = std::mem::size_of::<DRIVER_OBJECT>() as i16;
        let name: Vec<u16> = r"\Driver\gate".encode_utf16().collect();
        let name: &'static mut [u16] = Box::leak(name.into_boxed_slice());
        obj.DriverName = UNICODE_STRING {
            Length: (name.len() * 2) as u16,
            MaximumLength: (name.len() * 2) as u16,
            Buffer: name.as_mut_ptr(),
        };
        let object = Box::into_raw(obj) as usize;
        let mut path: Box<[u16]> = registry_path.encode_utf16().chain([0]).collect();
        let len = ((path.len() - 1) * 2) as u16;
        let buf = path.as_mut_ptr() as usize;
        crate::hold::set_unloaded(false);
        let (status, counted) = on_system_thread(move || {
            let mut us = UNICODE_STRING {
                Length: len,
                MaximumLength: len + 2,
                Buffer: buf as *mut u16,
            };
            let Some(fail_at) = plan else {
                // SAFETY: the driver's entry point, called as the I/O manager does.
                return (
                    unsafe { entry(object as *mut DRIVER_OBJECT, &mut us) },
                    None,
                );
            };
            crate::fault::arm(fail_at);
            let st = {
                let _driver = crate::fault::driver();
                // SAFETY: as above.
                unsafe { entry(object as *mut DRIVER_OBJECT, &mut us) }
            };
            (st, Some(crate::fault::disarm()))
        });
        path.fill(0xA5A5);
        LENT.lock().unwrap_or_else(|e| e.into_inner()).push(path);
        let r = if NT_SUCCESS(status) {
            Ok(Driver { object })
        } else {
            // The I/O manager unloads the image of a driver that failed to
            // start: from here on no driver code may run.
            crate::hold::set_unloaded(true);
            // The I/O manager deletes the object of a driver that failed
            // to start; the driver must not keep it.
            free_driver_object(object);
            Err(status)
        };
        (r, counted)
    }

    // ---- devices ----

    /// Opens a device as user mode's CreateFile does (`\\.\Name`,
    /// `\DosDevices\Name` or `\Device\Name`) with `access`
    /// (`FILE_READ_ACCESS` 1 | `FILE_WRITE_ACCESS` 2), as this process.
    pub fn open_device(&self, path: &str, access: u32) -> Result<DeviceHandle, NTSTATUS> {
        crate::device::open(path, access, std::process::id() as usize)
    }

    /// The devices the driver created (name, type, characteristics, DACL).
    pub fn devices(&self) -> Vec<DeviceView> {
        crate::device::devices()
    }

    /// Symbolic links: (link, target), lower case.
    pub fn symbolic_links(&self) -> Vec<(String, String)> {
        crate::device::links()
    }

    // ---- the network ----

    /// Listening sockets that are bound, in creation order.
    pub fn listeners(&self) -> Vec<ListenerInfo> {
        net::listeners()
    }

    /// Waits (real time) until an open listener is bound.
    pub fn wait_listener(&self, timeout: Duration) -> Option<ListenerInfo> {
        net::wait_listener(timeout)
    }

    /// A connection request (a SYN) from `remote` to `local`. With
    /// conditional accept on, the driver's WskInspectEvent runs on this
    /// thread at DISPATCH_LEVEL with address and id buffers that are
    /// overwritten right after it returns; an Accept is delivered (accept
    /// event, pending WskAccept or backlog) before this returns.
    pub fn connect(&self, remote: SocketAddr, local: SocketAddr) -> Request {
        Request {
            key: net::connect(remote, local, false),
        }
    }

    /// Like [`Sim::connect`], but an accepted request stays `Accepted` until
    /// [`Request::establish`] or [`Request::abort`].
    pub fn connect_held(&self, remote: SocketAddr, local: SocketAddr) -> Request {
        Request {
            key: net::connect(remote, local, true),
        }
    }

    /// WskInspectEvent with a NULL InspectID (listener dead) on the first
    /// open conditional listener; returns the callback's answer, or None if
    /// there is no such listener.
    pub fn null_inspect(&self) -> Option<WSK_INSPECT_ACTION> {
        net::null_inspect()
    }

    /// The provider's log (calls, verdicts, refused options...).
    pub fn wsk_log(&self) -> Vec<String> {
        crate::wsk::wsk().log.to_vec()
    }

    /// Whether the provider's log gets a line per connection request
    /// (inspect verdict, WskInspectComplete, abort); default on. A front
    /// deciding a flood turns it off: the lines cost a formatted string per
    /// SYN.
    pub fn set_request_log(&self, on: bool) {
        crate::wsk::wsk().log_requests = on;
    }

    /// Options set on a socket, in order, as (level, option, value).
    pub fn socket_options(&self, socket: usize) -> Vec<(u32, u32, u32)> {
        crate::wsk::wsk()
            .sockets
            .get(&socket)
            .map(|s| s.options.clone())
            .unwrap_or_default()
    }

    // ---- observations ----

    /// Every kernel-rule and contract violation since [`Sim::new`]; empty in
    /// a good run.
    pub fn violations(&self) -> Vec<Violation> {
        violation::all()
    }

    /// Panics listing the violations, if any.
    pub fn assert_no_violations(&self) {
        let v = self.violations();
        assert!(
            v.is_empty(),
            "simulation recorded {} violation(s):\n{v:#?}",
            v.len()
        );
    }

    /// ETW events the driver wrote since [`Sim::new`] (or the last
    /// [`Sim::take_events`]), decoded; see [`etw`].
    pub fn events(&self) -> Vec<etw::CapturedEvent> {
        etw::snapshot()
    }

    /// Like [`Sim::events`], emptying the capture.
    pub fn take_events(&self) -> Vec<etw::CapturedEvent> {
        etw::take()
    }

    /// Events written since [`Sim::new`], by event name (all of them, also
    /// those evicted from the capture window).
    pub fn event_counts(&self) -> std::collections::BTreeMap<String, u64> {
        etw::counts()
    }

    /// How many of the most recent events [`Sim::events`] keeps (default
    /// [`etw::CAPTURE_LIMIT`]); older ones are evicted.
    pub fn set_event_window(&self, limit: usize) {
        etw::set_capture_limit(limit);
    }

    /// How many finished connection requests and closed sockets the
    /// provider keeps for inspection (default
    /// [`crate::wsk::HISTORY_LIMIT`]); older ones are retired and their
    /// [`Request`]/[`Conn`] handles then report `Retired`/None.
    pub fn set_history_window(&self, limit: usize) {
        crate::wsk::wsk().hist.limit = limit;
    }

    /// Sizes of the provider's tables (for bounded-memory checks).
    pub fn wsk_table_sizes(&self) -> crate::wsk::TableSizes {
        crate::wsk::table_sizes()
    }

    /// Lines the driver printed with DbgPrintEx.
    pub fn debug_output(&self) -> Vec<DebugLine> {
        debug::lines()
    }

    /// KeBugCheckEx calls (only observable with [`Sim::park_on_bugcheck`]).
    pub fn bugchecks(&self) -> Vec<BugCheck> {
        debug::bugchecks()
    }

    pub fn pool_stats(&self) -> PoolStats {
        pool::stats()
    }

    pub fn irp_stats(&self) -> IrpStats {
        irp::stats()
    }

    pub fn object_stats(&self) -> ObjectStats {
        objects::stats()
    }

    /// Waits until the provider's I/O thread and the DPC queue are idle.
    pub fn quiesce(&self) {
        irp::drain();
        dispatcher::drain_dpcs();
        irp::drain();
    }

    /// The I/O error log entries the driver wrote (System event log), in
    /// order.
    pub fn error_log(&self) -> Vec<errorlog::ErrorLogEntry> {
        errorlog::written()
    }

    /// `false`: IoAllocateErrorLogEntry returns NULL, as Wine's stub does.
    pub fn set_error_log_supported(&self, on: bool) {
        errorlog::set_supported(on);
    }

    /// What is left allocated, open, armed or running right now.
    pub fn leaks(&self) -> LeakReport {
        self.quiesce();
        let irps = irp::stats();
        let objs = objects::stats();
        let (clients, captures) = net::client_counts();
        LeakReport {
            unload_missing: false,
            pool: pool::stats().outstanding,
            irps: irps.outstanding,
            irps_in_flight: irps.in_flight,
            sockets_open: net::open_sockets(),
            wsk_registrations: clients,
            npi_captures: captures,
            threads_running: objs.threads_running,
            handles_open: objs.handles_open,
            object_refs: objs.object_refs,
            timers_armed: dispatcher::armed_timers(),
            dpcs_queued: dispatcher::queued_dpcs(),
            mdls: crate::mdl::outstanding(),
            devices: crate::device::leaks().0,
            symbolic_links: crate::device::leaks().1,
            error_log_entries: errorlog::outstanding(),
        }
    }

    /// Runs `f` on a fresh thread at PASSIVE_LEVEL (for calling driver code
    /// that must run on a system thread).
    pub fn run_on_system_thread<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        on_system_thread(f)
    }

    /// Whether `p` is a live pool block start.
    pub fn is_pool_block(&self, p: *const core::ffi::c_void) -> bool {
        pool::is_live(p)
    }

    /// Whether `p` is a live IRP from IoAllocateIrp.
    pub fn is_live_irp(&self, p: *const core::ffi::c_void) -> bool {
        irp::is_live(p)
    }
}

/// A loaded driver.
#[derive(Debug)]
pub struct Driver {
    object: usize,
}

impl Driver {
    /// The DRIVER_OBJECT given to DriverEntry.
    pub fn object(&self) -> *mut DRIVER_OBJECT {
        self.object as *mut DRIVER_OBJECT
    }

    /// Calls DriverUnload on a system thread at PASSIVE_LEVEL, then reports
    /// what is left (pool by tag, IRPs, sockets, registrations, threads,
    /// handles, timers, DPCs).
    pub fn unload(self, sim: &Sim) -> LeakReport {
        let object = self.object;
        let missing = on_system_thread(move || {
            let obj = object as *mut DRIVER_OBJECT;
            // SAFETY: the DRIVER_OBJECT built by load_driver, still alive.
            match unsafe { (*obj).DriverUnload } {
                Some(f) => {
                    // SAFETY: the driver's unload routine on its object.
                    unsafe { f(obj) };
                    crate::hold::set_unloaded(true);
                    false
                }
                None => true,
            }
        });
        let mut r = sim.leaks();
        r.unload_missing = missing;
        free_driver_object(object);
        r
    }
}

/// Frees a DRIVER_OBJECT built by [`Sim::load_driver`] and its name buffer
/// (the I/O manager deletes it after DriverUnload or a failed DriverEntry),
/// so a leak checker run over the tests sees only the driver's own leaks.
fn free_driver_object(object: usize) {
    let obj = object as *mut DRIVER_OBJECT;
    // SAFETY: `object` came from Box::into_raw in load_driver and is freed
    // once: the Driver handle that carried it is consumed, or load failed.
    let obj = unsafe { Box::from_raw(obj) };
    let name = obj.DriverName;
    let chars = usize::from(name.Length) / 2;
    if !name.Buffer.is_null() {
        // SAFETY: the name was a leaked Box<[u16]> of `chars` elements whose
        // length load_driver recorded in Length (bytes).
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(name.Buffer, chars)) });
    }
}

/// What a driver left behind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeakReport {
    /// DRIVER_OBJECT.DriverUnload was not set.
    pub unload_missing: bool,
    /// Outstanding pool blocks by tag.
    pub pool: Vec<TagStats>,
    pub irps: usize,
    pub irps_in_flight: usize,
    /// Listening sockets and driver-owned connections not closed.
    pub sockets_open: usize,
    /// WskRegister without WskDeregister.
    pub wsk_registrations: usize,
    /// WskCaptureProviderNPI without WskReleaseProviderNPI.
    pub npi_captures: i64,
    pub threads_running: usize,
    pub handles_open: usize,
    pub object_refs: isize,
    pub timers_armed: usize,
    pub dpcs_queued: usize,
    /// MDLs from IoAllocateMdl not freed.
    pub mdls: usize,
    /// Device objects not deleted.
    pub devices: usize,
    /// Symbolic links not deleted.
    pub symbolic_links: usize,
    /// IoAllocateErrorLogEntry without IoWriteErrorLogEntry.
    pub error_log_entries: usize,
}

impl LeakReport {
    /// Nothing left behind.
    pub fn is_clean(&self) -> bool {
        *self == LeakReport::default()
    }

    /// Panics with the report unless it is clean.
    pub fn assert_clean(&self) {
        assert!(self.is_clean(), "driver left resources behind: {self:#?}");
    }
}

/// A connection request made with [`Sim::connect`]; cheap to copy and
/// usable from any thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    key: (usize, u32),
}

impl Request {
    /// The provider's key of this request (its WSK_INSPECT_ID fields); the
    /// NFQUEUE front's only.
    #[cfg(feature = "nfq")]
    pub(crate) fn key(&self) -> (usize, u32) {
        self.key
    }

    pub(crate) fn from_key(key: (usize, u32)) -> Request {
        Request { key }
    }

    pub fn info(&self) -> RequestInfo {
        net::request_info(self.key).unwrap_or(RequestInfo {
            state: RequestState::Retired,
            verdict: None,
            completion: None,
            late_completion: false,
            conn: None,
            id: WSK_INSPECT_ID {
                Key: self.key.0,
                SerialNumber: self.key.1,
            },
        })
    }

    pub fn state(&self) -> RequestState {
        self.info().state
    }

    /// What WskInspectEvent answered.
    pub fn verdict(&self) -> Option<Verdict> {
        self.info().verdict
    }

    /// The WSK_INSPECT_ID the driver was given.
    pub fn id(&self) -> WSK_INSPECT_ID {
        WSK_INSPECT_ID {
            Key: self.key.0,
            SerialNumber: self.key.1,
        }
    }

    /// The established connection, if any.
    pub fn conn(&self) -> Option<Conn> {
        self.info().conn.map(|sock| Conn { sock })
    }

    /// Drops a Pended or Accepted (held) request: the driver gets
    /// WskAbortEvent.
    pub fn abort(&self) -> Result<(), String> {
        net::abort(self.key)
    }

    /// Delivers a request held by [`Sim::connect_held`].
    pub fn establish(&self) -> Result<(), String> {
        net::establish_held(self.key)
    }

    /// Waits for the request to leave Inspecting/Pended (and for an
    /// accepted one to be delivered), moving the virtual clock forward 1 ms
    /// at a time for at most `budget_ns` (real time in real-time mode).
    /// Returns the state reached.
    pub fn wait_resolved(&self, sim: &Sim, budget_ns: u64) -> RequestState {
        let step = 1_000_000u64;
        let mut spent = 0u64;
        loop {
            sim.quiesce();
            let st = self.state();
            let unresolved = matches!(st, RequestState::Inspecting | RequestState::Pended);
            if !unresolved {
                return st;
            }
            if spent >= budget_ns {
                return st;
            }
            if clock::is_real() {
                std::thread::sleep(Duration::from_nanos(step));
            } else {
                sim.advance(step);
                // Give driver worker threads woken by the clock a moment.
                let t = Instant::now();
                while t.elapsed() < Duration::from_millis(1) && self.state() == st {
                    std::thread::yield_now();
                }
            }
            spent += step;
        }
    }
}

/// The peer end of an established connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conn {
    sock: usize,
}

impl Conn {
    /// The peer end of the driver's connection socket `sock`.
    pub(crate) fn of_socket(sock: usize) -> Conn {
        Conn { sock }
    }

    /// The WSK_SOCKET address the driver got.
    pub fn socket(&self) -> usize {
        self.sock
    }

    pub fn info(&self) -> Option<ConnInfo> {
        net::conn_info(self.sock)
    }

    /// The peer sends `data` (satisfies pending WskReceive calls).
    pub fn peer_send(&self, data: &[u8]) {
        net::peer_send(self.sock, data);
    }

    /// The peer closes gracefully (pending receives complete with 0 bytes).
    pub fn peer_close(&self) {
        net::peer_close(self.sock, false);
    }

    /// The peer resets (pending receives fail with STATUS_CONNECTION_RESET).
    pub fn peer_reset(&self) {
        net::peer_close(self.sock, true);
    }

    /// Bytes the driver sent since the last call.
    pub fn take_sent(&self) -> Vec<u8> {
        net::peer_take_sent(self.sock)
    }
}
