//! The run's progress bar (indicatif, on stderr, only on a terminal):
//! attempts started of the total, the achieved start rate, outcomes so far
//! (errors are `other`: failed system calls), the largest start lag, and the
//! time left, which an open-loop schedule knows exactly: the last attempt's
//! due time plus the patience, less now.

use crate::report::Counts;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::time::Duration;

/// How often the bar is redrawn (nanoseconds).
pub const REFRESH_NS: u64 = 250_000_000;

pub struct Progress {
    bar: ProgressBar,
    end_ns: u64,
    last_ns: u64,
    last_launched: u64,
    rate: f64,
}

impl Progress {
    /// A bar over `total` attempts; the run ends at the latest
    /// `schedule_end + patience` from its start.
    pub fn new(total: u64, schedule_end: Duration, patience: Duration) -> Self {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        let style =
            ProgressStyle::with_template("{elapsed_precise} [{bar:28}] {pos}/{len} started  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        bar.set_style(style);
        Progress {
            bar,
            end_ns: u64::try_from((schedule_end + patience).as_nanos()).unwrap_or(u64::MAX),
            last_ns: 0,
            last_launched: 0,
            rate: 0.0,
        }
    }

    /// Redraws with the state at `now_ns` from the run's start.
    pub fn update(
        &mut self,
        now_ns: u64,
        launched: u64,
        in_flight: usize,
        c: &Counts,
        lag_ns: u64,
    ) {
        let dt = now_ns.saturating_sub(self.last_ns);
        if dt > 0 {
            self.rate = (launched - self.last_launched) as f64 * 1e9 / dt as f64;
        }
        self.last_ns = now_ns;
        self.last_launched = launched;
        let left = self.end_ns.saturating_sub(now_ns) as f64 / 1e9;
        self.bar.set_position(launched);
        self.bar
            .set_message(message(self.rate, in_flight, c, lag_ns, Some(left)));
    }

    /// Draws the final state (`done` instead of the time left) and leaves
    /// it on screen.
    pub fn finish(self, launched: u64, c: &Counts, lag_ns: u64) {
        self.bar.set_position(launched);
        self.bar.set_message(message(self.rate, 0, c, lag_ns, None));
        self.bar.finish();
        // The report follows on stdout: start it on a line of its own.
        eprintln!();
    }
}

/// The bar's message (also its test's subject); `left_s` None: finished.
pub fn message(
    rate: f64,
    in_flight: usize,
    c: &Counts,
    lag_ns: u64,
    left_s: Option<f64>,
) -> String {
    let left = match left_s {
        Some(s) => format!("{s:.0} s left"),
        None => "done".to_string(),
    };
    format!(
        "{rate:.0}/s  accepted {}  refused {}  timed out {}  closed {}  errors {}  in flight {in_flight}  max lag {:.1} ms  {left}",
        c.accepted,
        c.refused,
        c.timed_out,
        c.closed,
        c.other,
        lag_ns as f64 / 1e6
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_has_rate_errors_and_time_left() {
        let c = Counts {
            accepted: 10,
            refused: 2,
            timed_out: 3,
            closed: 0,
            other: 4,
        };
        let m = message(1999.6, 7, &c, 1_500_000, Some(12.4));
        assert!(m.starts_with("2000/s "), "{m}");
        for want in [
            "accepted 10",
            "refused 2",
            "timed out 3",
            "errors 4",
            "in flight 7",
            "max lag 1.5 ms",
            "12 s left",
        ] {
            assert!(m.contains(want), "{m} lacks {want}");
        }
        assert!(message(0.0, 0, &c, 0, None).ends_with("  done"));
    }
}
