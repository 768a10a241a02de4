//! Under Wine `MmGetSystemRoutineAddress` finds no Etw* routine: the
//! provider stays off, cleanly, and every write is a no-op. (Own test binary:
//! the switch is process-wide.)

use etw_manifest::sim;
use gate_driver::etw::{self, keyword, Provider, RegisterOutcome};

#[test]
fn missing_routines_leave_events_off() {
    sim::set_routines_available(false);
    let p: &'static Provider = Box::leak(Box::new(Provider::new()));
    assert_eq!(
        p.register(sim::resolve),
        RegisterOutcome::Unavailable("EtwRegister")
    );
    assert!(!p.is_registered());
    assert!(!p.enabled(1, keyword::REJECT));
    etw::connection_rejected(p, &[], &[], 1, 3, 0, &[], 0);
    etw::driver_unloading(p, 1);
    assert!(sim::snapshot().is_empty());
    assert_eq!(p.unregister(), 0);

    // Only EtwWriteTransfer missing: still refused before registering.
    sim::set_routines_available(true);
    let only_write_missing = |name: &[u16]| {
        if String::from_utf16_lossy(name) == "EtwWriteTransfer" {
            std::ptr::null_mut()
        } else {
            sim::resolve(name)
        }
    };
    assert_eq!(
        p.register(only_write_missing),
        RegisterOutcome::Unavailable("EtwWriteTransfer")
    );
    assert!(!p.is_registered());
    // And with everything present it registers.
    assert_eq!(p.register(sim::resolve), RegisterOutcome::Registered);
    p.unregister();
}
