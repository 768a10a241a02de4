//! The C header `include/gate_ioctl.h` is generated from this crate's
//! structs and checked against them: every field's offset and every
//! struct's size in the header come from `offset_of!`/`size_of` here, and
//! the header asserts them with `_Static_assert` so a C compiler checks the
//! C layout too (done below when `cc` is installed). Regenerate with
//! `GATE_IOCTL_BLESS=1 cargo test -p gate-ioctl --test header`.

use std::fmt::Write;
use std::mem::{offset_of, size_of};

use gate_ioctl::*;

struct Field {
    cty: &'static str,
    name: &'static str,
    array: Option<usize>,
    offset: usize,
}

struct Struct {
    name: &'static str,
    size: usize,
    fields: Vec<Field>,
}

macro_rules! c_struct {
    ($t:ty, $name:literal, [$(($cty:literal, $f:ident $(, $n:expr)?)),* $(,)?]) => {
        Struct {
            name: $name,
            size: size_of::<$t>(),
            fields: vec![$(Field {
                cty: $cty,
                name: stringify!($f),
                array: None $(.or(Some($n)))?,
                offset: offset_of!($t, $f),
            }),*],
        }
    };
}

fn structs() -> Vec<Struct> {
    vec![
        c_struct!(
            WireAddr,
            "GATE_ADDR",
            [
                ("uint16_t", family),
                ("uint16_t", prefix_len),
                ("uint8_t", addr, 16)
            ]
        ),
        c_struct!(
            WireConfig,
            "GATE_CONFIG",
            [
                ("uint64_t", rate_milli),
                ("uint64_t", global_rate_milli),
                ("uint32_t", burst),
                ("uint32_t", global_burst),
                ("uint32_t", ban_threshold),
                ("uint32_t", ban_window_ms),
                ("uint32_t", ban_ms),
                ("uint32_t", max_pending),
                ("uint32_t", max_delay_ms),
                ("uint32_t", observe),
                ("uint32_t", full_table),
                ("uint32_t", capacity),
                ("uint32_t", shards),
                ("uint32_t", ipv4_prefix),
                ("uint32_t", ipv6_prefix),
                ("uint32_t", allow_count),
                ("uint32_t", deny_count),
                ("uint32_t", manual_bans),
            ]
        ),
        c_struct!(
            StatusRequest,
            "GATE_STATUS_REQUEST",
            [("uint32_t", version), ("uint32_t", flags)]
        ),
        c_struct!(
            WireRelay,
            "GATE_RELAY",
            [
                ("uint32_t", state),
                ("uint32_t", max_connections),
                ("GATE_ADDR", backend),
                ("uint32_t", backend_port),
                ("uint32_t", active),
                ("uint32_t", proxy_protocol),
                ("uint64_t", opened),
                ("uint64_t", closed),
                ("uint64_t", failed),
                ("uint64_t", refused_at_limit),
                ("uint64_t", bytes_to_backend),
                ("uint64_t", bytes_to_client),
            ]
        ),
        c_struct!(
            StatusReply,
            "GATE_STATUS_REPLY",
            [
                ("uint32_t", version),
                ("uint32_t", size),
                ("uint32_t", listener),
                ("uint32_t", mode),
                ("uint64_t", uptime_ms),
                ("uint32_t", port),
                ("uint32_t", reasons),
                ("uint32_t", events_used),
                ("uint32_t", reserved),
                ("GATE_CONFIG", config),
                ("uint64_t", by_reason, COUNTER_SLOTS),
                ("uint64_t", observed, COUNTER_SLOTS),
                ("uint64_t", events, COUNTER_SLOTS),
                ("uint64_t", pends_outstanding),
                ("uint64_t", pending_in_use),
                ("uint64_t", tracked_keys),
                ("uint64_t", capacity),
                ("uint64_t", inspects),
                ("uint64_t", aborts),
                ("uint64_t", accepted_sockets),
                ("uint64_t", closed_sockets),
                ("uint64_t", listeners_up),
                ("uint64_t", null_inspect),
                ("uint64_t", manual_ban_hits),
                ("uint64_t", changes),
                ("GATE_RELAY", relay),
            ]
        ),
        c_struct!(
            QueryRequest,
            "GATE_QUERY_REQUEST",
            [
                ("uint32_t", version),
                ("uint32_t", flags),
                ("GATE_ADDR", addr)
            ]
        ),
        c_struct!(
            QueryReply,
            "GATE_QUERY_REPLY",
            [
                ("uint32_t", version),
                ("uint32_t", size),
                ("GATE_ADDR", key),
                ("uint32_t", state),
                ("uint32_t", tokens_milli),
                ("uint32_t", rejects),
                ("uint64_t", next_token_ms),
                ("uint64_t", auto_ban_left_ms),
                ("uint64_t", manual_ban_left_ms),
                ("uint64_t", last_seen_ms),
            ]
        ),
        c_struct!(
            TopRequest,
            "GATE_TOP_REQUEST",
            [
                ("uint32_t", version),
                ("uint32_t", flags),
                ("uint64_t", cursor),
                ("uint32_t", max),
                ("uint32_t", order),
            ]
        ),
        c_struct!(
            TopEntry,
            "GATE_TOP_ENTRY",
            [
                ("GATE_ADDR", key),
                ("uint32_t", rejects),
                ("uint32_t", tokens_milli),
                ("uint32_t", auto_ban_left_ms),
                ("uint64_t", debt_ms),
                ("uint64_t", last_seen_ms),
            ]
        ),
        c_struct!(
            TopReply,
            "GATE_TOP_REPLY",
            [
                ("uint32_t", version),
                ("uint32_t", size),
                ("uint64_t", next_cursor),
                ("uint32_t", scanned),
                ("uint32_t", count),
                ("uint64_t", slots_total),
                ("uint32_t", auto_bans),
                ("uint32_t", reserved),
                ("GATE_TOP_ENTRY", entries, TOP_MAX),
            ]
        ),
        c_struct!(
            ListChangeHeader,
            "GATE_LIST_CHANGE_HEADER",
            [
                ("uint32_t", version),
                ("uint32_t", flags),
                ("uint32_t", list),
                ("uint32_t", op),
                ("uint32_t", count),
                ("uint32_t", reserved),
            ]
        ),
        c_struct!(
            ListChangeReply,
            "GATE_LIST_CHANGE_REPLY",
            [
                ("uint32_t", version),
                ("uint32_t", size),
                ("uint32_t", len),
                ("uint32_t", changed),
            ]
        ),
        c_struct!(
            ListGetRequest,
            "GATE_LIST_GET_REQUEST",
            [
                ("uint32_t", version),
                ("uint32_t", flags),
                ("uint32_t", list),
                ("uint32_t", start),
            ]
        ),
        c_struct!(
            ListEntry,
            "GATE_LIST_ENTRY",
            [
                ("GATE_ADDR", cidr),
                ("uint32_t", reserved),
                ("uint64_t", left_ms)
            ]
        ),
        c_struct!(
            ListGetReply,
            "GATE_LIST_GET_REPLY",
            [
                ("uint32_t", version),
                ("uint32_t", size),
                ("uint32_t", total),
                ("uint32_t", count),
                ("uint32_t", generation),
                ("uint32_t", reserved),
                ("GATE_LIST_ENTRY", entries, LIST_PAGE),
            ]
        ),
        c_struct!(
            BanRequest,
            "GATE_BAN_REQUEST",
            [
                ("uint32_t", version),
                ("uint32_t", flags),
                ("GATE_ADDR", target),
                ("uint32_t", reserved),
                ("uint64_t", duration_ms),
            ]
        ),
        c_struct!(
            BanReply,
            "GATE_BAN_REPLY",
            [
                ("uint32_t", version),
                ("uint32_t", size),
                ("uint32_t", manual_bans),
                ("uint32_t", replaced),
            ]
        ),
        c_struct!(
            UnbanRequest,
            "GATE_UNBAN_REQUEST",
            [
                ("uint32_t", version),
                ("uint32_t", flags),
                ("GATE_ADDR", target),
                ("uint32_t", reserved),
                ("uint64_t", cursor),
            ]
        ),
        c_struct!(
            UnbanReply,
            "GATE_UNBAN_REPLY",
            [
                ("uint32_t", version),
                ("uint32_t", size),
                ("uint32_t", manual_lifted),
                ("uint32_t", auto_lifted),
                ("uint64_t", next_cursor),
            ]
        ),
        c_struct!(
            ResetRequest,
            "GATE_RESET_REQUEST",
            [
                ("uint32_t", version),
                ("uint32_t", flags),
                ("uint32_t", what)
            ]
        ),
        c_struct!(
            ResetReply,
            "GATE_RESET_REPLY",
            [("uint32_t", version), ("uint32_t", size)]
        ),
        c_struct!(
            SetRequest,
            "GATE_SET_REQUEST",
            [
                ("uint32_t", version),
                ("uint32_t", flags),
                ("uint32_t", mask),
                ("uint32_t", reserved),
                ("GATE_CONFIG", config),
            ]
        ),
        c_struct!(
            SetReply,
            "GATE_SET_REPLY",
            [
                ("uint32_t", version),
                ("uint32_t", size),
                ("GATE_CONFIG", config)
            ]
        ),
        c_struct!(
            ChannelRequest,
            "GATE_CHANNEL_REQUEST",
            [
                ("uint32_t", code),
                ("uint32_t", access),
                ("uint32_t", in_len),
                ("uint32_t", out_len),
            ]
        ),
        c_struct!(
            ChannelReply,
            "GATE_CHANNEL_REPLY",
            [
                ("int32_t", status),
                ("uint32_t", reserved),
                ("uint64_t", information)
            ]
        ),
    ]
}

fn render() -> String {
    let mut h = String::new();
    h.push_str("/* gate_ioctl.h: the TCP front gate's control API (\\\\.\\TcpFrontGate).\n");
    h.push_str(" * GENERATED from gate-ioctl (Rust) by gate-ioctl/tests/header.rs; do not edit.\n");
    h.push_str(" * Every field is little-endian, naturally aligned, with no implicit padding;\n");
    h.push_str(" * the _Static_asserts below check that a C compiler agrees. */\n");
    h.push_str("#ifndef GATE_IOCTL_H\n#define GATE_IOCTL_H\n\n#include <stddef.h>\n#include <stdint.h>\n\n");
    writeln!(h, "#define GATE_IOCTL_VERSION {VERSION}u").unwrap();
    writeln!(
        h,
        "#define GATE_DEVICE_TYPE 0x{FILE_DEVICE_TCP_FRONT_GATE:04X}u"
    )
    .unwrap();
    for (code, name) in ALL_CODES {
        writeln!(h, "#define {name} 0x{code:08X}u").unwrap();
    }
    writeln!(
        h,
        "#define GATE_STATUS_REPLY_VERSION {STATUS_REPLY_VERSION}u"
    )
    .unwrap();
    writeln!(
        h,
        "#define GATE_STATUS_REPLY_V1_SIZE {STATUS_REPLY_V1_SIZE}u"
    )
    .unwrap();
    writeln!(h, "#define GATE_RELAY_OFF {}u", relay_state::OFF).unwrap();
    writeln!(h, "#define GATE_RELAY_RUNNING {}u", relay_state::RUNNING).unwrap();
    writeln!(
        h,
        "#define GATE_RELAY_NOT_RUNNING {}u",
        relay_state::NOT_RUNNING
    )
    .unwrap();
    writeln!(h, "#define GATE_FLAG_PERSIST {FLAG_PERSIST}u").unwrap();
    writeln!(h, "#define GATE_FLAG_COUNT_KEYS {FLAG_COUNT_KEYS}u").unwrap();
    writeln!(h, "#define GATE_AF_INET {AF_INET}u").unwrap();
    writeln!(h, "#define GATE_AF_INET6 {AF_INET6}u").unwrap();
    writeln!(h, "#define GATE_FOREVER 0xFFFFFFFFFFFFFFFFull").unwrap();
    writeln!(h, "#define GATE_CURSOR_DONE 0xFFFFFFFFFFFFFFFFull").unwrap();
    writeln!(h, "#define GATE_TOP_MAX {TOP_MAX}u").unwrap();
    writeln!(h, "#define GATE_LIST_PAGE {LIST_PAGE}u").unwrap();
    writeln!(h, "#define GATE_MAX_LIST_ENTRIES {MAX_LIST_ENTRIES}u").unwrap();
    writeln!(h, "#define GATE_COUNTER_SLOTS {COUNTER_SLOTS}u").unwrap();
    for (i, n) in set_field::NAMES.iter().enumerate() {
        writeln!(h, "#define GATE_SET_{} (1u << {i})", n.to_ascii_uppercase()).unwrap();
    }
    h.push('\n');
    for s in structs() {
        writeln!(h, "typedef struct {} {{", s.name).unwrap();
        for f in &s.fields {
            match f.array {
                Some(n) => writeln!(h, "    {} {}[{n}];", f.cty, f.name).unwrap(),
                None => writeln!(h, "    {} {};", f.cty, f.name).unwrap(),
            }
        }
        writeln!(h, "}} {};", s.name).unwrap();
        writeln!(
            h,
            "_Static_assert(sizeof({0}) == {1}, \"{0} size\");",
            s.name, s.size
        )
        .unwrap();
        for f in &s.fields {
            writeln!(
                h,
                "_Static_assert(offsetof({0}, {1}) == {2}, \"{0}.{1}\");",
                s.name, f.name, f.offset
            )
            .unwrap();
        }
        h.push('\n');
    }
    h.push_str("#endif /* GATE_IOCTL_H */\n");
    h
}

#[test]
fn rust_fields_tile_each_struct_without_padding() {
    // A C-like layout check done in Rust: each field starts where the
    // previous one ended (no padding), and the last one ends at the size.
    let size_of_c = |t: &str| match t {
        "uint8_t" => 1,
        "uint16_t" => 2,
        "int32_t" | "uint32_t" => 4,
        "uint64_t" => 8,
        other => structs()
            .iter()
            .find(|s| s.name == other)
            .map(|s| s.size)
            .unwrap(),
    };
    for s in structs() {
        let mut at = 0;
        for f in &s.fields {
            assert_eq!(f.offset, at, "{}.{}: padding before it", s.name, f.name);
            at += size_of_c(f.cty) * f.array.unwrap_or(1);
        }
        assert_eq!(at, s.size, "{}: padding at the end", s.name);
    }
}

#[test]
fn header_matches_the_rust_structs() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/include/gate_ioctl.h");
    let want = render();
    if std::env::var_os("GATE_IOCTL_BLESS").is_some() {
        std::fs::write(path, &want).unwrap();
    }
    let have = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        have == want,
        "include/gate_ioctl.h is stale: regenerate with GATE_IOCTL_BLESS=1 cargo test -p gate-ioctl --test header"
    );
}

#[test]
fn a_c_compiler_agrees_with_the_header() {
    let Ok(out) = std::process::Command::new("cc")
        .args(["-std=c11", "-fsyntax-only", "-x", "c"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/include/gate_ioctl.h"))
        .output()
    else {
        eprintln!("cc not installed: the C compiler check is skipped");
        return;
    };
    assert!(
        out.status.success(),
        "cc rejects the header: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn status_reply_v2_only_appends_the_relay_after_the_v1_bytes() {
    // Version 1 callers read the first STATUS_REPLY_V1_SIZE bytes: every
    // version 1 field keeps its offset and the relay starts right after.
    assert_eq!(offset_of!(StatusReply, relay), STATUS_REPLY_V1_SIZE);
    assert_eq!(offset_of!(StatusReply, changes) + 8, STATUS_REPLY_V1_SIZE);
    assert_eq!(
        size_of::<StatusReply>(),
        STATUS_REPLY_V1_SIZE + size_of::<WireRelay>()
    );
    // The status reply numbers its own versions (1: first release, 2: + relay).
    assert_eq!(STATUS_REPLY_VERSION, 2);
}
