//! What a decision says, and the counters: the telemetry contract.
//!
//! [`Action`] and [`Reason`] are `#[repr(u8)]` with explicit, stable
//! discriminants (never renumbered; new values are appended), an `ALL`
//! array and a stable snake_case `name()` each, so the driver can build ETW
//! value maps from them. Counters are atomic `u64`s kept per shard (so two
//! CPUs rarely write the same cache line) and summed by [`crate::Gate::counters`].

use crate::key::Key;
use crate::pend::PendTicket;
use crate::time::Ticks;

/// What to do with the SYN.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Accept the connection now.
    Accept = 0,
    /// Reject it now.
    Reject = 1,
    /// Hold it and accept at [`Pended::at`] (then call `pend_done`), or
    /// give up on it (call `pend_abort`, which returns the reserved token
    /// unless a later decision depends on it).
    Pend = 2,
}

impl Action {
    /// Every action, in discriminant order.
    pub const ALL: [Action; 3] = [Action::Accept, Action::Reject, Action::Pend];

    /// Stable snake_case name (ETW value map).
    pub const fn name(self) -> &'static str {
        match self {
            Action::Accept => "accept",
            Action::Reject => "reject",
            Action::Pend => "pend",
        }
    }
}

/// Why the decision was taken.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The key had a token (and the global bucket too).
    WithinRate = 0,
    /// The remote address is on the allow list: no limits apply.
    AllowListed = 1,
    /// The remote address is on the deny list.
    DenyListed = 2,
    /// The key is out of tokens (and no pend was possible).
    RateExceeded = 3,
    /// The key had a token but the global bucket (all sources) had none.
    GlobalLimit = 4,
    /// The key is banned automatically, after too many rejections.
    Banned = 5,
    /// Every slot the key may use held an active key and the full-table
    /// policy is fail-open (accept) or fail-closed (reject).
    TableFull = 6,
    /// Observe mode: the gate would have rejected (see `Decision::observed`) but accepts.
    ObserveWouldReject = 7,
    /// Out of tokens, but one is free within `max_delay`: pended.
    PendDelayed = 8,
    /// A pend was possible by time but every pend slot is in use: rejected.
    PendBudgetSpent = 9,
    /// The remote address is inside a manual ban (`Gate::ban`; the
    /// operator's, distinct from the automatic [`Reason::Banned`]).
    ManualBan = 10,
}

/// Number of [`Reason`] values.
pub const REASON_COUNT: usize = 11;

impl Reason {
    /// Every reason, in discriminant order (`ALL[r as usize] == r`).
    pub const ALL: [Reason; REASON_COUNT] = [
        Reason::WithinRate,
        Reason::AllowListed,
        Reason::DenyListed,
        Reason::RateExceeded,
        Reason::GlobalLimit,
        Reason::Banned,
        Reason::TableFull,
        Reason::ObserveWouldReject,
        Reason::PendDelayed,
        Reason::PendBudgetSpent,
        Reason::ManualBan,
    ];

    /// Stable snake_case name (ETW value map).
    pub const fn name(self) -> &'static str {
        match self {
            Reason::WithinRate => "within_rate",
            Reason::AllowListed => "allow_listed",
            Reason::DenyListed => "deny_listed",
            Reason::RateExceeded => "rate_exceeded",
            Reason::GlobalLimit => "global_limit",
            Reason::Banned => "banned",
            Reason::TableFull => "table_full",
            Reason::ObserveWouldReject => "observe_would_reject",
            Reason::PendDelayed => "pend_delayed",
            Reason::PendBudgetSpent => "pend_budget_spent",
            Reason::ManualBan => "manual_ban",
        }
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

/// `tokens_milli` when no bucket was consulted (allow/deny list, table full).
pub const NO_BUCKET: u32 = u32::MAX;

/// A pended decision: accept at `at`, then complete with the ticket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pended {
    /// Time (ticks, caller's clock) at which to accept.
    pub at: Ticks,
    /// Pass to `pend_done` once accepted or `pend_abort` if given up.
    pub ticket: PendTicket,
}

/// One decision, with what telemetry needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// What to do.
    pub action: Action,
    /// Why.
    pub reason: Reason,
    /// In observe mode with `reason == ObserveWouldReject` (or a would-be
    /// pend, accepted at once): the reason the gate would have given. `None` otherwise.
    pub observed: Option<Reason>,
    /// Tokens left in the key's bucket after this decision, in thousandths
    /// of a token (fixed point, scale 1000: 1500 = 1.5 tokens);
    /// [`NO_BUCKET`] if no bucket was consulted.
    pub tokens_milli: u32,
    /// The key (remote address aggregated by prefix).
    pub key: Key,
    /// Set when `action == Pend`.
    pub pend: Option<Pended>,
}

/// Events counted besides the reasons.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// A new key took the slot of an idle key (full bucket): no information lost.
    EvictedIdle = 0,
    /// A new key took the slot of the least recently seen active key (policy `EvictLru`).
    EvictedLru = 1,
    /// The full-table policy was applied (any policy).
    TableFull = 2,
    /// A key was banned.
    BanStarted = 3,
    /// `pend_done` completed a pend.
    PendDone = 4,
    /// `pend_abort` released a pend (its token went back only where no later
    /// decision depended on it; see `Gate::pend_abort`).
    PendAborted = 5,
    /// `pend_done`/`pend_abort` with a ticket that was not outstanding.
    StaleTicket = 6,
}

/// Number of [`Event`] values.
pub const EVENT_COUNT: usize = 7;

impl Event {
    /// Every event, in discriminant order.
    pub const ALL: [Event; EVENT_COUNT] = [
        Event::EvictedIdle,
        Event::EvictedLru,
        Event::TableFull,
        Event::BanStarted,
        Event::PendDone,
        Event::PendAborted,
        Event::StaleTicket,
    ];

    /// Stable snake_case name.
    pub const fn name(self) -> &'static str {
        match self {
            Event::EvictedIdle => "evicted_idle",
            Event::EvictedLru => "evicted_lru",
            Event::TableFull => "table_full",
            Event::BanStarted => "ban_started",
            Event::PendDone => "pend_done",
            Event::PendAborted => "pend_aborted",
            Event::StaleTicket => "stale_ticket",
        }
    }
}

/// A snapshot of every counter (sums over shards; each value is exact, the
/// set is not one atomic instant).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Decisions per [`Reason`], indexed by `reason as usize`.
    pub by_reason: [u64; REASON_COUNT],
    /// Observe mode: decisions that would have had this reason.
    pub observed: [u64; REASON_COUNT],
    /// Per [`Event`], indexed by `event as usize`.
    pub events: [u64; EVENT_COUNT],
    /// Pends handed out and not yet completed or aborted.
    pub pends_outstanding: u64,
}

impl Counters {
    /// Decisions with this reason.
    pub fn reason(&self, r: Reason) -> u64 {
        self.by_reason.get(r.index()).copied().unwrap_or(0)
    }

    /// Observe-mode decisions that would have had this reason.
    pub fn observed(&self, r: Reason) -> u64 {
        self.observed.get(r.index()).copied().unwrap_or(0)
    }

    /// Times this event happened.
    pub fn event(&self, e: Event) -> u64 {
        self.events.get(e as usize).copied().unwrap_or(0)
    }

    /// Total decisions.
    pub fn decisions(&self) -> u64 {
        self.by_reason
            .iter()
            .fold(0u64, |a, b| a.saturating_add(*b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_arrays_are_in_discriminant_order_with_unique_names() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        for (i, a) in Action::ALL.iter().enumerate() {
            assert_eq!(*a as usize, i);
        }
        for (i, e) in Event::ALL.iter().enumerate() {
            assert_eq!(*e as usize, i);
        }
        let mut names: alloc::vec::Vec<&str> = Reason::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), REASON_COUNT);
    }

    #[test]
    fn stable_values() {
        // These numbers are in the ETW manifest: never change them.
        assert_eq!(Reason::WithinRate as u8, 0);
        assert_eq!(Reason::PendBudgetSpent as u8, 9);
        assert_eq!(Action::Pend as u8, 2);
        assert_eq!(Reason::ObserveWouldReject.name(), "observe_would_reject");
    }
}
