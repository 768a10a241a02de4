//! Ctrl-C during a demo: SIGINT (and SIGTERM) set a flag instead of killing
//! xtask, every wait of the demo checks it ([`sleep_until`], [`check`]),
//! and the demo returns [`Interrupted`] through its ordinary error path, so
//! the guards that own its processes and namespaces stop each process by
//! its PID and delete each namespace as they drop. [`super::finish`] then
//! says "interrupted" and exits 130 (128 + SIGINT, the shell's convention)
//! instead of analysing a cut-short run. A second Ctrl-C while cleaning up
//! quits at once (exit 130, without the cleanup), as cargo does.

use anyhow::Result;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// The demo was interrupted (SIGINT or SIGTERM); the error its waits
/// return.
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted (Ctrl-C)")
    }
}

impl std::error::Error for Interrupted {}

/// Installs the handlers (once): the first SIGINT/SIGTERM sets the flag,
/// the second exits 130 at once.
pub fn install() -> Result<()> {
    if FLAG.get().is_some() {
        return Ok(());
    }
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // Order matters: the conditional exit sees the flag as it was
        // before this signal (signal-hook's documented pattern).
        signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&flag))?;
        signal_hook::flag::register(sig, Arc::clone(&flag))?;
    }
    let _ = FLAG.set(flag);
    Ok(())
}

/// Whether the demo was interrupted.
pub fn requested() -> bool {
    FLAG.get().is_some_and(|f| f.load(Ordering::Relaxed))
}

/// `Err(Interrupted)` once the demo was interrupted.
pub fn check() -> Result<()> {
    if requested() {
        return Err(Interrupted.into());
    }
    Ok(())
}

/// Sleeps until `due` in slices of at most 50 ms; `Err(Interrupted)` as
/// soon as the demo is interrupted.
pub fn sleep_until(due: Instant) -> Result<()> {
    loop {
        check()?;
        let Some(left) = due.checked_duration_since(Instant::now()) else {
            return Ok(());
        };
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// Whether `e` is (or wraps) [`Interrupted`].
pub fn is_interrupted(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<Interrupted>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigint_makes_every_wait_return_interrupted() {
        install().unwrap();
        assert!(!requested());
        // As a terminal's Ctrl-C: the process survives, the flag is set.
        signal_hook::low_level::raise(signal_hook::consts::SIGINT).unwrap();
        assert!(requested());
        let t = Instant::now();
        let e = sleep_until(Instant::now() + Duration::from_secs(60)).unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(1));
        assert!(is_interrupted(&e.context("while waiting for gate-load")));
        assert!(!is_interrupted(&anyhow::anyhow!("gate-load failed")));
    }
}
