//! The change operations (FILE_WRITE_ACCESS): set, allow/deny changes,
//! ban/unban, reset. Each validates the whole request first (nothing
//! changes on a refusal), applies it through gate-core's control path
//! (swapped whole, table state kept), reports an ETW ConfigChanged event
//! per change (what, old -> new, caller's process id) and, with
//! [`gate_ioctl::FLAG_PERSIST`], writes it to the registry.

use alloc::vec::Vec;
use core::fmt::Write;

use gate_core::{ChangeError, Cidr, Config, FullTablePolicy, TICKS_PER_MS};
use gate_ioctl::*;
use gate_ksys::*;

use super::dispatch::{Io, Refusal};
use super::persist;
use super::read::{wire_config, TOP_SCAN_SLOTS};
use crate::config::value_name_of_field;
use crate::kernel::clock;
use crate::kernel::dbg::Line;
use crate::pool::push_reserved;
use crate::state::Driver;
use crate::telemetry;

fn change_refusal(e: ChangeError) -> Refusal {
    match e {
        ChangeError::Config(c) => Refusal::invalid(c.field, c.value, c.expected),
        ChangeError::NeedsRestart { field, value } => Refusal::invalid(
            field,
            value,
            "a value that can change live (this one needs a restart)",
        ),
        ChangeError::TooManyBans => Refusal {
            status: STATUS_QUOTA_EXCEEDED,
            field: "target",
            value: u64::from(MAX_MANUAL_BANS),
            reason: "room in the manual ban table (at most 1024 bans)",
        },
        ChangeError::OutOfMemory => Refusal {
            status: STATUS_INSUFFICIENT_RESOURCES,
            field: "config",
            value: 0,
            reason: "memory for the new configuration",
        },
        ChangeError::Busy => Refusal {
            status: STATUS_DEVICE_BUSY,
            field: "config",
            value: 0,
            reason: "no other change being applied (one runs at a time; retry)",
        },
    }
}

/// The refusal for a `--persist` that failed after the live change stood:
/// STATUS_REGISTRY_IO_FAILED, with the registry call's own NTSTATUS as the
/// value ETW ControlRejected reports (the debug output names the call and
/// the value name too).
fn persist_refusal(e: persist::PersistError) -> Refusal {
    Refusal {
        status: STATUS_REGISTRY_IO_FAILED,
        field: "persist",
        value: u64::from(e.status as u32),
        reason: "a writable Parameters key (the live change stands; the value is the registry call's NTSTATUS)",
    }
}

fn text(args: core::fmt::Arguments<'_>) -> Line {
    let mut l = Line::new();
    let _ = l.write_fmt(args);
    l
}

fn changed(what: &str, old: &Line, new: &Line, pid: u32, persisted: bool) {
    super::count_change();
    telemetry::config_changed(what, old.as_bytes(), new.as_bytes(), pid, persisted);
}

/// The value of live field `bit` (a [`set_field`] bit index).
fn field_value(c: &Config, bit: u32) -> u64 {
    match bit {
        0 => c.rate_milli,
        1 => u64::from(c.burst),
        2 => c.global_rate_milli,
        3 => u64::from(c.global_burst),
        4 => u64::from(c.observe),
        5 => u64::from(c.ban_threshold),
        6 => u64::from(c.ban_window_ms),
        7 => u64::from(c.ban_ms),
        8 => u64::from(c.max_delay_ms),
        _ => c.full_table as u64,
    }
}

fn apply(c: &mut Config, bit: u32, w: &WireConfig) {
    match bit {
        0 => c.rate_milli = w.rate_milli,
        1 => c.burst = w.burst,
        2 => c.global_rate_milli = w.global_rate_milli,
        3 => c.global_burst = w.global_burst,
        4 => c.observe = w.observe != 0,
        5 => c.ban_threshold = w.ban_threshold,
        6 => c.ban_window_ms = w.ban_window_ms,
        7 => c.ban_ms = w.ban_ms,
        8 => c.max_delay_ms = w.max_delay_ms,
        _ => {
            if let Some(p) = FullTablePolicy::from_u8(w.full_table as u8) {
                c.full_table = p;
            }
        }
    }
}

fn field_name(bit: u32) -> &'static str {
    set_field::NAMES.get(bit as usize).copied().unwrap_or("?")
}

/// IOCTL_GATE_SET.
pub fn set(d: &Driver, io: &Io) -> Result<usize, Refusal> {
    let req: SetRequest = io.request(FLAG_PERSIST)?;
    io.need_output::<SetReply>()?;
    if req.mask == 0 || req.mask & !set_field::ALL != 0 {
        return Err(Refusal::invalid(
            "mask",
            u64::from(req.mask),
            "a non-zero set of live fields (set_field bits 0..=9)",
        ));
    }
    if req.reserved != 0 {
        return Err(Refusal::invalid("reserved", u64::from(req.reserved), "0"));
    }
    let w = &req.config;
    // 0 is never a ban time or window (bans off is ban_threshold 0): taken
    // while bans are off, it would make a later `--ban-threshold N` fail on
    // a value the operator did not give.
    for (bit, name, v) in [
        (set_field::BAN_MS, "ban_ms", w.ban_ms),
        (set_field::BAN_WINDOW_MS, "ban_window_ms", w.ban_window_ms),
    ] {
        if req.mask & bit != 0 && v == 0 {
            return Err(Refusal::invalid(
                name,
                0,
                "1 or more (bans off is ban_threshold 0)",
            ));
        }
    }
    if req.mask & set_field::OBSERVE != 0 && w.observe > 1 {
        return Err(Refusal::invalid("observe", u64::from(w.observe), "0 or 1"));
    }
    if req.mask & set_field::FULL_TABLE != 0 && w.full_table > 2 {
        return Err(Refusal::invalid(
            "full_table",
            u64::from(w.full_table),
            "0 (evict_lru), 1 (fail_open) or 2 (fail_closed)",
        ));
    }
    let bits = || (0..set_field::NAMES.len() as u32).filter(|b| req.mask & (1 << b) != 0);
    let persist = req.flags & FLAG_PERSIST != 0;
    // Held until this change's registry write is done (see `persist::Turn`).
    let _turn = if persist {
        Some(persist::Turn::take(d).ok_or_else(|| change_refusal(ChangeError::Busy))?)
    } else {
        None
    };
    // The values this change installed, taken inside its edit: a change
    // installed right after it must not be what this one persists or
    // reports as its "new" value.
    let mut now_cfg = [0u64; 10];
    let old = d
        .gate
        .reconfigure(|c| {
            for b in bits() {
                apply(c, b, w);
            }
            for (i, v) in now_cfg.iter_mut().enumerate() {
                *v = field_value(c, i as u32);
            }
        })
        .map_err(change_refusal)?;
    let mut persist_failed: Option<persist::PersistError> = None;
    let bans = d.gate.with_config(|_, b| b.len());
    for b in bits() {
        let (before, after) = (
            field_value(&old, b),
            now_cfg.get(b as usize).copied().unwrap_or(0),
        );
        let mut persisted = false;
        if persist {
            let name = value_name_of_field(field_name(b));
            let r = if b == 0 || b == 2 {
                persist::qword(name, after)
            } else {
                persist::dword(name, u32::try_from(after).unwrap_or(u32::MAX))
            };
            persisted = r.is_ok();
            if let Err(e) = r {
                persist_failed = persist_failed.or(Some(e));
            }
        }
        if before != after || persisted {
            changed(
                field_name(b),
                &text(format_args!("{before}")),
                &text(format_args!("{after}")),
                io.pid,
                persisted,
            );
        }
    }
    if let Some(e) = persist_failed {
        return Err(persist_refusal(e));
    }
    let r = SetReply {
        version: VERSION,
        size: reply_size::<SetReply>(),
        config: d.gate.with_config(|c, _| wire_config(c, bans)),
    };
    io.reply(&r)
}

/// Decodes a prefix (address bits below the prefix are ignored, as in the lists).
fn cidr_of(a: &WireAddr, field: &'static str) -> Result<Cidr, Refusal> {
    let (ip, len) = a.decode(field)?;
    Cidr::new(ip, len).map_err(|_| Refusal::invalid(field, u64::from(len), "a valid prefix length"))
}

/// IOCTL_GATE_LIST_CHANGE.
pub fn list_change(d: &Driver, io: &Io) -> Result<usize, Refusal> {
    // Copy the whole input first (header + entries share the buffer with the reply).
    let input = io.input_copy()?;
    let head = ListChangeHeader::from_prefix(&input).ok_or(Refusal {
        status: STATUS_INFO_LENGTH_MISMATCH,
        field: "input_length",
        value: input.len() as u64,
        reason: "a 24-byte header followed by count 20-byte entries",
    })?;
    check_header(head.version, head.flags, FLAG_PERSIST)?;
    io.need_output::<ListChangeReply>()?;
    if head.list > list_kind::DENY {
        return Err(Refusal::invalid(
            "list",
            u64::from(head.list),
            "0 (allow) or 1 (deny)",
        ));
    }
    if !(list_op::ADD..=list_op::CLEAR).contains(&head.op) {
        return Err(Refusal::invalid(
            "op",
            u64::from(head.op),
            "1 (add), 2 (remove), 3 (replace) or 4 (clear)",
        ));
    }
    if head.count > MAX_LIST_ENTRIES || (head.op == list_op::CLEAR && head.count != 0) {
        return Err(Refusal::invalid(
            "count",
            u64::from(head.count),
            "0..=4096 entries (0 for clear)",
        ));
    }
    if head.reserved != 0 {
        return Err(Refusal::invalid("reserved", u64::from(head.reserved), "0"));
    }
    let want =
        ListChangeHeader::SIZE.saturating_add((head.count as usize).saturating_mul(WireAddr::SIZE));
    if input.len() != want {
        return Err(Refusal {
            status: STATUS_INFO_LENGTH_MISMATCH,
            field: "input_length",
            value: input.len() as u64,
            reason: "24 + 20 * count bytes",
        });
    }
    let mut entries: Vec<Cidr> = Vec::new();
    entries
        .try_reserve_exact(head.count as usize)
        .map_err(|_| change_refusal(ChangeError::OutOfMemory))?;
    for chunk in input
        .get(ListChangeHeader::SIZE..)
        .unwrap_or(&[])
        .chunks_exact(WireAddr::SIZE)
    {
        let a = WireAddr::from_bytes(chunk).unwrap_or_default();
        let c = cidr_of(&a, "entries").map_err(|mut r| {
            // Name the entry by its index.
            r.reason = "valid entries (value = index of the first bad entry)";
            r.value = entries.len() as u64;
            r
        })?;
        // Reserved for `count` entries above.
        push_reserved(&mut entries, c);
    }
    let is_allow = head.list == list_kind::ALLOW;
    // Sorted once here, so the edit is O(n log n) merges and binary
    // searches, never n * m comparisons. The edit runs with no lock held
    // (gate-core holds its control spin lock only to swap the result in).
    entries.sort_unstable_by_key(|c| (c.addr(), c.prefix_len()));
    entries.dedup();
    let mut changed_n = 0u32;
    let want_persist = head.flags & FLAG_PERSIST != 0;
    // Held until this change's registry write is done (see `persist::Turn`).
    let _turn = if want_persist {
        Some(persist::Turn::take(d).ok_or_else(|| change_refusal(ChangeError::Busy))?)
    } else {
        None
    };
    // The list's length as this change installed it (a change installed
    // right after it must not be what this one reports).
    let mut len = 0usize;
    // `--persist`: the registry data of the new list, built inside the
    // edit (no lock held), so a failed allocation refuses the whole change
    // and nothing after the swap can fail for want of memory.
    let mut persist_data: Option<Vec<u8>> = None;
    let old = d
        .gate
        .try_reconfigure(|c| {
            let list = if is_allow { &mut c.allow } else { &mut c.deny };
            let before = list.len();
            match head.op {
                list_op::ADD => {
                    list.try_reserve(entries.len())
                        .map_err(|_| ChangeError::OutOfMemory)?;
                    for e in &entries {
                        push_reserved(list, *e);
                    }
                    list.sort_unstable_by_key(|c| (c.addr(), c.prefix_len()));
                    list.dedup();
                    changed_n = list.len().saturating_sub(before) as u32;
                }
                list_op::REMOVE => {
                    list.retain(|x| {
                        entries
                            .binary_search_by_key(&(x.addr(), x.prefix_len()), |c| {
                                (c.addr(), c.prefix_len())
                            })
                            .is_err()
                    });
                    changed_n = before.saturating_sub(list.len()) as u32;
                }
                list_op::REPLACE => {
                    // Changed: the entries added plus those removed (the
                    // symmetric difference), not the new list's size.
                    list.sort_unstable_by_key(|c| (c.addr(), c.prefix_len()));
                    list.dedup();
                    let kept = list
                        .iter()
                        .filter(|x| {
                            entries
                                .binary_search_by_key(&(x.addr(), x.prefix_len()), |c| {
                                    (c.addr(), c.prefix_len())
                                })
                                .is_ok()
                        })
                        .count();
                    let n = list
                        .len()
                        .saturating_sub(kept)
                        .saturating_add(entries.len().saturating_sub(kept));
                    let mut new = Vec::new();
                    new.try_reserve_exact(entries.len())
                        .map_err(|_| ChangeError::OutOfMemory)?;
                    for e in &entries {
                        push_reserved(&mut new, *e);
                    }
                    *list = new;
                    changed_n = n as u32;
                }
                _ => {
                    changed_n = before as u32;
                    list.clear();
                }
            }
            len = list.len();
            // A list over the cap is refused by the build: no data for it.
            if want_persist && list.len() <= MAX_LIST_ENTRIES as usize {
                persist_data = Some(persist::multi_sz(list).ok_or(ChangeError::OutOfMemory)?);
            }
            Ok(())
        })
        .map_err(|e| match e {
            // The list would exceed its limit (Config::validate names it).
            ChangeError::Config(c) if c.field == "allow" || c.field == "deny" => Refusal {
                status: STATUS_QUOTA_EXCEEDED,
                field: "count",
                value: c.value,
                reason: "room in the list (at most 4096 entries)",
            },
            e => change_refusal(e),
        })?;
    let what = if is_allow { "allow" } else { "deny" };
    let old_len = if is_allow {
        old.allow.len()
    } else {
        old.deny.len()
    };
    let mut persisted = false;
    let mut persist_failed: Option<persist::PersistError> = None;
    if let Some(data) = &persist_data {
        let name = if is_allow {
            crate::config::name::ALLOW
        } else {
            crate::config::name::DENY
        };
        match persist::cidrs(name, data) {
            Ok(()) => persisted = true,
            Err(e) => persist_failed = Some(e),
        }
    }
    // A change that changed nothing (an add of entries already there, a
    // clear of an empty list) is no event, as for `set` (unless persisted:
    // the registry was written).
    if changed_n > 0 || persisted {
        changed(
            what,
            &text(format_args!("{old_len} entries")),
            &list_change_text(head.op, &entries, len, changed_n),
            io.pid,
            persisted,
        );
    }
    if let Some(e) = persist_failed {
        return Err(persist_refusal(e));
    }
    io.reply(&ListChangeReply {
        version: VERSION,
        size: reply_size::<ListChangeReply>(),
        len: len as u32,
        changed: changed_n,
    })
}

/// Entries a ConfigChanged text names before "+N more".
const NAMED_ENTRIES: usize = 3;

/// The `New` text of a list change's ConfigChanged event: the op by name,
/// the CIDRs it named (the first [`NAMED_ENTRIES`] and how many more), and
/// the result, e.g. `3 entries after add 10.0.0.0/8, 192.0.2.0/24 (2
/// changed)` or `0 entries after clear (5 changed)`.
pub(super) fn list_change_text(op: u32, entries: &[Cidr], len: usize, changed_n: u32) -> Line {
    let mut l = Line::new();
    let name = match op {
        list_op::ADD => "add",
        list_op::REMOVE => "remove",
        list_op::REPLACE => "replace with",
        _ => "clear",
    };
    let _ = write!(l, "{len} entries after {name}");
    if op != list_op::CLEAR {
        if entries.is_empty() {
            let _ = write!(l, " nothing");
        }
        for (i, c) in entries.iter().take(NAMED_ENTRIES).enumerate() {
            let _ = write!(l, "{}{c}", if i == 0 { " " } else { ", " });
        }
        if entries.len() > NAMED_ENTRIES {
            let _ = write!(
                l,
                " +{} more ({} in all)",
                entries.len().saturating_sub(NAMED_ENTRIES),
                entries.len()
            );
        }
    }
    let _ = write!(l, " ({changed_n} changed)");
    l
}

/// IOCTL_GATE_BAN: a manual ban.
pub fn ban(d: &Driver, io: &Io) -> Result<usize, Refusal> {
    let req: BanRequest = io.request(0)?;
    io.need_output::<BanReply>()?;
    let cidr = cidr_of(&req.target, "target")?;
    if req.reserved != 0 {
        return Err(Refusal::invalid("reserved", u64::from(req.reserved), "0"));
    }
    if req.duration_ms != FOREVER && !(1..=MAX_MANUAL_BAN_MS).contains(&req.duration_ms) {
        return Err(Refusal::invalid(
            "duration_ms",
            req.duration_ms,
            "1..=31536000000 ms (365 days) or 18446744073709551615 (until unban)",
        ));
    }
    let now = clock::now();
    let until = if req.duration_ms == FOREVER {
        u64::MAX
    } else {
        now.saturating_add(req.duration_ms.saturating_mul(TICKS_PER_MS))
    };
    let o = d.gate.ban(cidr, until, now).map_err(change_refusal)?;
    let new = if req.duration_ms == FOREVER {
        text(format_args!("{cidr} until unban"))
    } else {
        text(format_args!("{cidr} for {} ms", req.duration_ms))
    };
    let old = text(format_args!(
        "{}",
        if o.replaced {
            "banned (end replaced)"
        } else {
            "not banned"
        }
    ));
    changed("ban.manual", &old, &new, io.pid, false);
    io.reply(&BanReply {
        version: VERSION,
        size: reply_size::<BanReply>(),
        manual_bans: o.count as u32,
        replaced: u32::from(o.replaced),
    })
}

/// IOCTL_GATE_UNBAN: lifts manual bans inside the target (first call) and
/// automatic bans of keys inside it (one bounded slice per call).
pub fn unban(d: &Driver, io: &Io) -> Result<usize, Refusal> {
    let req: UnbanRequest = io.request(UNBAN_AUTO_ONLY)?;
    io.need_output::<UnbanReply>()?;
    let cidr = cidr_of(&req.target, "target")?;
    if req.reserved != 0 {
        return Err(Refusal::invalid("reserved", u64::from(req.reserved), "0"));
    }
    if req.cursor != CURSOR_START && req.cursor >= d.gate.slots() {
        return Err(Refusal::invalid(
            "cursor",
            req.cursor,
            "0, or a cursor a previous reply returned",
        ));
    }
    let now = clock::now();
    let manual = if req.cursor == CURSOR_START && req.flags & UNBAN_AUTO_ONLY == 0 {
        let n = d.gate.unban(cidr, now).map_err(change_refusal)?;
        if n > 0 {
            changed(
                "unban.manual",
                &text(format_args!("{n} manual bans inside {cidr}")),
                &text(format_args!("lifted")),
                io.pid,
                false,
            );
        }
        n
    } else {
        0
    };
    let (auto, next) = d.gate.lift_auto_bans(cidr, req.cursor, TOP_SCAN_SLOTS);
    if auto > 0 {
        // A target no wider than a key lifts that key's ban: name the key
        // (10.213.0.2/32 lifts key 10.213.0.0/24, which is not inside it).
        let key = d.gate.key_of(cidr.addr());
        let one = cidr.prefix_len() >= key.prefix_len();
        changed(
            "unban.auto",
            &if one {
                text(format_args!(
                    "automatic ban of key {}/{} (holding {cidr})",
                    key.network(),
                    key.prefix_len()
                ))
            } else {
                text(format_args!("{auto} automatic bans of keys inside {cidr}"))
            },
            &text(format_args!("lifted")),
            io.pid,
            false,
        );
    }
    io.reply(&UnbanReply {
        version: VERSION,
        size: reply_size::<UnbanReply>(),
        manual_lifted: manual as u32,
        auto_lifted: auto as u32,
        next_cursor: next.unwrap_or(CURSOR_DONE),
    })
}

/// IOCTL_GATE_RESET.
pub fn reset(d: &Driver, io: &Io) -> Result<usize, Refusal> {
    let req: ResetRequest = io.request(0)?;
    io.need_output::<ResetReply>()?;
    if req.what == 0 || req.what & !reset_what::COUNTERS != 0 {
        return Err(Refusal::invalid(
            "what",
            u64::from(req.what),
            "1 (counters)",
        ));
    }
    let before = d
        .gate
        .counters()
        .by_reason
        .iter()
        .fold(0u64, |a, b| a.saturating_add(*b));
    d.gate.reset_counters();
    d.stats.reset();
    changed(
        "counters",
        &text(format_args!("{before} decisions counted")),
        &text(format_args!("0")),
        io.pid,
        false,
    );
    io.reply(&ResetReply {
        version: VERSION,
        size: reply_size::<ResetReply>(),
    })
}
