/* gate_ioctl.h: the TCP front gate's control API (\\.\TcpFrontGate).
 * GENERATED from gate-ioctl (Rust) by gate-ioctl/tests/header.rs; do not edit.
 * Every field is little-endian, naturally aligned, with no implicit padding;
 * the _Static_asserts below check that a C compiler agrees. */
#ifndef GATE_IOCTL_H
#define GATE_IOCTL_H

#include <stddef.h>
#include <stdint.h>

#define GATE_IOCTL_VERSION 2u
#define GATE_DEVICE_TYPE 0x8A7Eu
#define IOCTL_GATE_STATUS 0x8A7E6000u
#define IOCTL_GATE_QUERY 0x8A7E6004u
#define IOCTL_GATE_TOP 0x8A7E6008u
#define IOCTL_GATE_LIST_GET 0x8A7E600Cu
#define IOCTL_GATE_SET 0x8A7EA040u
#define IOCTL_GATE_LIST_CHANGE 0x8A7EA044u
#define IOCTL_GATE_BAN 0x8A7EA048u
#define IOCTL_GATE_UNBAN 0x8A7EA04Cu
#define IOCTL_GATE_RESET 0x8A7EA050u
#define GATE_STATUS_REPLY_VERSION 2u
#define GATE_STATUS_REPLY_V1_SIZE 600u
#define GATE_RELAY_OFF 0u
#define GATE_RELAY_RUNNING 1u
#define GATE_RELAY_NOT_RUNNING 2u
#define GATE_FLAG_PERSIST 1u
#define GATE_FLAG_COUNT_KEYS 2u
#define GATE_AF_INET 2u
#define GATE_AF_INET6 23u
#define GATE_FOREVER 0xFFFFFFFFFFFFFFFFull
#define GATE_CURSOR_DONE 0xFFFFFFFFFFFFFFFFull
#define GATE_TOP_MAX 32u
#define GATE_LIST_PAGE 64u
#define GATE_MAX_LIST_ENTRIES 4096u
#define GATE_COUNTER_SLOTS 16u
#define GATE_SET_RATE_MILLI (1u << 0)
#define GATE_SET_BURST (1u << 1)
#define GATE_SET_GLOBAL_RATE_MILLI (1u << 2)
#define GATE_SET_GLOBAL_BURST (1u << 3)
#define GATE_SET_OBSERVE (1u << 4)
#define GATE_SET_BAN_THRESHOLD (1u << 5)
#define GATE_SET_BAN_WINDOW_MS (1u << 6)
#define GATE_SET_BAN_MS (1u << 7)
#define GATE_SET_MAX_DELAY_MS (1u << 8)
#define GATE_SET_FULL_TABLE (1u << 9)

typedef struct GATE_ADDR {
    uint16_t family;
    uint16_t prefix_len;
    uint8_t addr[16];
} GATE_ADDR;
_Static_assert(sizeof(GATE_ADDR) == 20, "GATE_ADDR size");
_Static_assert(offsetof(GATE_ADDR, family) == 0, "GATE_ADDR.family");
_Static_assert(offsetof(GATE_ADDR, prefix_len) == 2, "GATE_ADDR.prefix_len");
_Static_assert(offsetof(GATE_ADDR, addr) == 4, "GATE_ADDR.addr");

typedef struct GATE_CONFIG {
    uint64_t rate_milli;
    uint64_t global_rate_milli;
    uint32_t burst;
    uint32_t global_burst;
    uint32_t ban_threshold;
    uint32_t ban_window_ms;
    uint32_t ban_ms;
    uint32_t max_pending;
    uint32_t max_delay_ms;
    uint32_t observe;
    uint32_t full_table;
    uint32_t capacity;
    uint32_t shards;
    uint32_t ipv4_prefix;
    uint32_t ipv6_prefix;
    uint32_t allow_count;
    uint32_t deny_count;
    uint32_t manual_bans;
} GATE_CONFIG;
_Static_assert(sizeof(GATE_CONFIG) == 80, "GATE_CONFIG size");
_Static_assert(offsetof(GATE_CONFIG, rate_milli) == 0, "GATE_CONFIG.rate_milli");
_Static_assert(offsetof(GATE_CONFIG, global_rate_milli) == 8, "GATE_CONFIG.global_rate_milli");
_Static_assert(offsetof(GATE_CONFIG, burst) == 16, "GATE_CONFIG.burst");
_Static_assert(offsetof(GATE_CONFIG, global_burst) == 20, "GATE_CONFIG.global_burst");
_Static_assert(offsetof(GATE_CONFIG, ban_threshold) == 24, "GATE_CONFIG.ban_threshold");
_Static_assert(offsetof(GATE_CONFIG, ban_window_ms) == 28, "GATE_CONFIG.ban_window_ms");
_Static_assert(offsetof(GATE_CONFIG, ban_ms) == 32, "GATE_CONFIG.ban_ms");
_Static_assert(offsetof(GATE_CONFIG, max_pending) == 36, "GATE_CONFIG.max_pending");
_Static_assert(offsetof(GATE_CONFIG, max_delay_ms) == 40, "GATE_CONFIG.max_delay_ms");
_Static_assert(offsetof(GATE_CONFIG, observe) == 44, "GATE_CONFIG.observe");
_Static_assert(offsetof(GATE_CONFIG, full_table) == 48, "GATE_CONFIG.full_table");
_Static_assert(offsetof(GATE_CONFIG, capacity) == 52, "GATE_CONFIG.capacity");
_Static_assert(offsetof(GATE_CONFIG, shards) == 56, "GATE_CONFIG.shards");
_Static_assert(offsetof(GATE_CONFIG, ipv4_prefix) == 60, "GATE_CONFIG.ipv4_prefix");
_Static_assert(offsetof(GATE_CONFIG, ipv6_prefix) == 64, "GATE_CONFIG.ipv6_prefix");
_Static_assert(offsetof(GATE_CONFIG, allow_count) == 68, "GATE_CONFIG.allow_count");
_Static_assert(offsetof(GATE_CONFIG, deny_count) == 72, "GATE_CONFIG.deny_count");
_Static_assert(offsetof(GATE_CONFIG, manual_bans) == 76, "GATE_CONFIG.manual_bans");

typedef struct GATE_STATUS_REQUEST {
    uint32_t version;
    uint32_t flags;
} GATE_STATUS_REQUEST;
_Static_assert(sizeof(GATE_STATUS_REQUEST) == 8, "GATE_STATUS_REQUEST size");
_Static_assert(offsetof(GATE_STATUS_REQUEST, version) == 0, "GATE_STATUS_REQUEST.version");
_Static_assert(offsetof(GATE_STATUS_REQUEST, flags) == 4, "GATE_STATUS_REQUEST.flags");

typedef struct GATE_RELAY {
    uint32_t state;
    uint32_t max_connections;
    GATE_ADDR backend;
    uint32_t backend_port;
    uint32_t active;
    uint32_t proxy_protocol;
    uint64_t opened;
    uint64_t closed;
    uint64_t failed;
    uint64_t refused_at_limit;
    uint64_t bytes_to_backend;
    uint64_t bytes_to_client;
} GATE_RELAY;
_Static_assert(sizeof(GATE_RELAY) == 88, "GATE_RELAY size");
_Static_assert(offsetof(GATE_RELAY, state) == 0, "GATE_RELAY.state");
_Static_assert(offsetof(GATE_RELAY, max_connections) == 4, "GATE_RELAY.max_connections");
_Static_assert(offsetof(GATE_RELAY, backend) == 8, "GATE_RELAY.backend");
_Static_assert(offsetof(GATE_RELAY, backend_port) == 28, "GATE_RELAY.backend_port");
_Static_assert(offsetof(GATE_RELAY, active) == 32, "GATE_RELAY.active");
_Static_assert(offsetof(GATE_RELAY, proxy_protocol) == 36, "GATE_RELAY.proxy_protocol");
_Static_assert(offsetof(GATE_RELAY, opened) == 40, "GATE_RELAY.opened");
_Static_assert(offsetof(GATE_RELAY, closed) == 48, "GATE_RELAY.closed");
_Static_assert(offsetof(GATE_RELAY, failed) == 56, "GATE_RELAY.failed");
_Static_assert(offsetof(GATE_RELAY, refused_at_limit) == 64, "GATE_RELAY.refused_at_limit");
_Static_assert(offsetof(GATE_RELAY, bytes_to_backend) == 72, "GATE_RELAY.bytes_to_backend");
_Static_assert(offsetof(GATE_RELAY, bytes_to_client) == 80, "GATE_RELAY.bytes_to_client");

typedef struct GATE_STATUS_REPLY {
    uint32_t version;
    uint32_t size;
    uint32_t listener;
    uint32_t mode;
    uint64_t uptime_ms;
    uint32_t port;
    uint32_t reasons;
    uint32_t events_used;
    uint32_t reserved;
    GATE_CONFIG config;
    uint64_t by_reason[16];
    uint64_t observed[16];
    uint64_t events[16];
    uint64_t pends_outstanding;
    uint64_t pending_in_use;
    uint64_t tracked_keys;
    uint64_t capacity;
    uint64_t inspects;
    uint64_t aborts;
    uint64_t accepted_sockets;
    uint64_t closed_sockets;
    uint64_t listeners_up;
    uint64_t null_inspect;
    uint64_t manual_ban_hits;
    uint64_t changes;
    GATE_RELAY relay;
} GATE_STATUS_REPLY;
_Static_assert(sizeof(GATE_STATUS_REPLY) == 688, "GATE_STATUS_REPLY size");
_Static_assert(offsetof(GATE_STATUS_REPLY, version) == 0, "GATE_STATUS_REPLY.version");
_Static_assert(offsetof(GATE_STATUS_REPLY, size) == 4, "GATE_STATUS_REPLY.size");
_Static_assert(offsetof(GATE_STATUS_REPLY, listener) == 8, "GATE_STATUS_REPLY.listener");
_Static_assert(offsetof(GATE_STATUS_REPLY, mode) == 12, "GATE_STATUS_REPLY.mode");
_Static_assert(offsetof(GATE_STATUS_REPLY, uptime_ms) == 16, "GATE_STATUS_REPLY.uptime_ms");
_Static_assert(offsetof(GATE_STATUS_REPLY, port) == 24, "GATE_STATUS_REPLY.port");
_Static_assert(offsetof(GATE_STATUS_REPLY, reasons) == 28, "GATE_STATUS_REPLY.reasons");
_Static_assert(offsetof(GATE_STATUS_REPLY, events_used) == 32, "GATE_STATUS_REPLY.events_used");
_Static_assert(offsetof(GATE_STATUS_REPLY, reserved) == 36, "GATE_STATUS_REPLY.reserved");
_Static_assert(offsetof(GATE_STATUS_REPLY, config) == 40, "GATE_STATUS_REPLY.config");
_Static_assert(offsetof(GATE_STATUS_REPLY, by_reason) == 120, "GATE_STATUS_REPLY.by_reason");
_Static_assert(offsetof(GATE_STATUS_REPLY, observed) == 248, "GATE_STATUS_REPLY.observed");
_Static_assert(offsetof(GATE_STATUS_REPLY, events) == 376, "GATE_STATUS_REPLY.events");
_Static_assert(offsetof(GATE_STATUS_REPLY, pends_outstanding) == 504, "GATE_STATUS_REPLY.pends_outstanding");
_Static_assert(offsetof(GATE_STATUS_REPLY, pending_in_use) == 512, "GATE_STATUS_REPLY.pending_in_use");
_Static_assert(offsetof(GATE_STATUS_REPLY, tracked_keys) == 520, "GATE_STATUS_REPLY.tracked_keys");
_Static_assert(offsetof(GATE_STATUS_REPLY, capacity) == 528, "GATE_STATUS_REPLY.capacity");
_Static_assert(offsetof(GATE_STATUS_REPLY, inspects) == 536, "GATE_STATUS_REPLY.inspects");
_Static_assert(offsetof(GATE_STATUS_REPLY, aborts) == 544, "GATE_STATUS_REPLY.aborts");
_Static_assert(offsetof(GATE_STATUS_REPLY, accepted_sockets) == 552, "GATE_STATUS_REPLY.accepted_sockets");
_Static_assert(offsetof(GATE_STATUS_REPLY, closed_sockets) == 560, "GATE_STATUS_REPLY.closed_sockets");
_Static_assert(offsetof(GATE_STATUS_REPLY, listeners_up) == 568, "GATE_STATUS_REPLY.listeners_up");
_Static_assert(offsetof(GATE_STATUS_REPLY, null_inspect) == 576, "GATE_STATUS_REPLY.null_inspect");
_Static_assert(offsetof(GATE_STATUS_REPLY, manual_ban_hits) == 584, "GATE_STATUS_REPLY.manual_ban_hits");
_Static_assert(offsetof(GATE_STATUS_REPLY, changes) == 592, "GATE_STATUS_REPLY.changes");
_Static_assert(offsetof(GATE_STATUS_REPLY, relay) == 600, "GATE_STATUS_REPLY.relay");

typedef struct GATE_QUERY_REQUEST {
    uint32_t version;
    uint32_t flags;
    GATE_ADDR addr;
} GATE_QUERY_REQUEST;
_Static_assert(sizeof(GATE_QUERY_REQUEST) == 28, "GATE_QUERY_REQUEST size");
_Static_assert(offsetof(GATE_QUERY_REQUEST, version) == 0, "GATE_QUERY_REQUEST.version");
_Static_assert(offsetof(GATE_QUERY_REQUEST, flags) == 4, "GATE_QUERY_REQUEST.flags");
_Static_assert(offsetof(GATE_QUERY_REQUEST, addr) == 8, "GATE_QUERY_REQUEST.addr");

typedef struct GATE_QUERY_REPLY {
    uint32_t version;
    uint32_t size;
    GATE_ADDR key;
    uint32_t state;
    uint32_t tokens_milli;
    uint32_t rejects;
    uint64_t next_token_ms;
    uint64_t auto_ban_left_ms;
    uint64_t manual_ban_left_ms;
    uint64_t last_seen_ms;
} GATE_QUERY_REPLY;
_Static_assert(sizeof(GATE_QUERY_REPLY) == 72, "GATE_QUERY_REPLY size");
_Static_assert(offsetof(GATE_QUERY_REPLY, version) == 0, "GATE_QUERY_REPLY.version");
_Static_assert(offsetof(GATE_QUERY_REPLY, size) == 4, "GATE_QUERY_REPLY.size");
_Static_assert(offsetof(GATE_QUERY_REPLY, key) == 8, "GATE_QUERY_REPLY.key");
_Static_assert(offsetof(GATE_QUERY_REPLY, state) == 28, "GATE_QUERY_REPLY.state");
_Static_assert(offsetof(GATE_QUERY_REPLY, tokens_milli) == 32, "GATE_QUERY_REPLY.tokens_milli");
_Static_assert(offsetof(GATE_QUERY_REPLY, rejects) == 36, "GATE_QUERY_REPLY.rejects");
_Static_assert(offsetof(GATE_QUERY_REPLY, next_token_ms) == 40, "GATE_QUERY_REPLY.next_token_ms");
_Static_assert(offsetof(GATE_QUERY_REPLY, auto_ban_left_ms) == 48, "GATE_QUERY_REPLY.auto_ban_left_ms");
_Static_assert(offsetof(GATE_QUERY_REPLY, manual_ban_left_ms) == 56, "GATE_QUERY_REPLY.manual_ban_left_ms");
_Static_assert(offsetof(GATE_QUERY_REPLY, last_seen_ms) == 64, "GATE_QUERY_REPLY.last_seen_ms");

typedef struct GATE_TOP_REQUEST {
    uint32_t version;
    uint32_t flags;
    uint64_t cursor;
    uint32_t max;
    uint32_t order;
} GATE_TOP_REQUEST;
_Static_assert(sizeof(GATE_TOP_REQUEST) == 24, "GATE_TOP_REQUEST size");
_Static_assert(offsetof(GATE_TOP_REQUEST, version) == 0, "GATE_TOP_REQUEST.version");
_Static_assert(offsetof(GATE_TOP_REQUEST, flags) == 4, "GATE_TOP_REQUEST.flags");
_Static_assert(offsetof(GATE_TOP_REQUEST, cursor) == 8, "GATE_TOP_REQUEST.cursor");
_Static_assert(offsetof(GATE_TOP_REQUEST, max) == 16, "GATE_TOP_REQUEST.max");
_Static_assert(offsetof(GATE_TOP_REQUEST, order) == 20, "GATE_TOP_REQUEST.order");

typedef struct GATE_TOP_ENTRY {
    GATE_ADDR key;
    uint32_t rejects;
    uint32_t tokens_milli;
    uint32_t auto_ban_left_ms;
    uint64_t debt_ms;
    uint64_t last_seen_ms;
} GATE_TOP_ENTRY;
_Static_assert(sizeof(GATE_TOP_ENTRY) == 48, "GATE_TOP_ENTRY size");
_Static_assert(offsetof(GATE_TOP_ENTRY, key) == 0, "GATE_TOP_ENTRY.key");
_Static_assert(offsetof(GATE_TOP_ENTRY, rejects) == 20, "GATE_TOP_ENTRY.rejects");
_Static_assert(offsetof(GATE_TOP_ENTRY, tokens_milli) == 24, "GATE_TOP_ENTRY.tokens_milli");
_Static_assert(offsetof(GATE_TOP_ENTRY, auto_ban_left_ms) == 28, "GATE_TOP_ENTRY.auto_ban_left_ms");
_Static_assert(offsetof(GATE_TOP_ENTRY, debt_ms) == 32, "GATE_TOP_ENTRY.debt_ms");
_Static_assert(offsetof(GATE_TOP_ENTRY, last_seen_ms) == 40, "GATE_TOP_ENTRY.last_seen_ms");

typedef struct GATE_TOP_REPLY {
    uint32_t version;
    uint32_t size;
    uint64_t next_cursor;
    uint32_t scanned;
    uint32_t count;
    uint64_t slots_total;
    uint32_t auto_bans;
    uint32_t reserved;
    GATE_TOP_ENTRY entries[32];
} GATE_TOP_REPLY;
_Static_assert(sizeof(GATE_TOP_REPLY) == 1576, "GATE_TOP_REPLY size");
_Static_assert(offsetof(GATE_TOP_REPLY, version) == 0, "GATE_TOP_REPLY.version");
_Static_assert(offsetof(GATE_TOP_REPLY, size) == 4, "GATE_TOP_REPLY.size");
_Static_assert(offsetof(GATE_TOP_REPLY, next_cursor) == 8, "GATE_TOP_REPLY.next_cursor");
_Static_assert(offsetof(GATE_TOP_REPLY, scanned) == 16, "GATE_TOP_REPLY.scanned");
_Static_assert(offsetof(GATE_TOP_REPLY, count) == 20, "GATE_TOP_REPLY.count");
_Static_assert(offsetof(GATE_TOP_REPLY, slots_total) == 24, "GATE_TOP_REPLY.slots_total");
_Static_assert(offsetof(GATE_TOP_REPLY, auto_bans) == 32, "GATE_TOP_REPLY.auto_bans");
_Static_assert(offsetof(GATE_TOP_REPLY, reserved) == 36, "GATE_TOP_REPLY.reserved");
_Static_assert(offsetof(GATE_TOP_REPLY, entries) == 40, "GATE_TOP_REPLY.entries");

typedef struct GATE_LIST_CHANGE_HEADER {
    uint32_t version;
    uint32_t flags;
    uint32_t list;
    uint32_t op;
    uint32_t count;
    uint32_t reserved;
} GATE_LIST_CHANGE_HEADER;
_Static_assert(sizeof(GATE_LIST_CHANGE_HEADER) == 24, "GATE_LIST_CHANGE_HEADER size");
_Static_assert(offsetof(GATE_LIST_CHANGE_HEADER, version) == 0, "GATE_LIST_CHANGE_HEADER.version");
_Static_assert(offsetof(GATE_LIST_CHANGE_HEADER, flags) == 4, "GATE_LIST_CHANGE_HEADER.flags");
_Static_assert(offsetof(GATE_LIST_CHANGE_HEADER, list) == 8, "GATE_LIST_CHANGE_HEADER.list");
_Static_assert(offsetof(GATE_LIST_CHANGE_HEADER, op) == 12, "GATE_LIST_CHANGE_HEADER.op");
_Static_assert(offsetof(GATE_LIST_CHANGE_HEADER, count) == 16, "GATE_LIST_CHANGE_HEADER.count");
_Static_assert(offsetof(GATE_LIST_CHANGE_HEADER, reserved) == 20, "GATE_LIST_CHANGE_HEADER.reserved");

typedef struct GATE_LIST_CHANGE_REPLY {
    uint32_t version;
    uint32_t size;
    uint32_t len;
    uint32_t changed;
} GATE_LIST_CHANGE_REPLY;
_Static_assert(sizeof(GATE_LIST_CHANGE_REPLY) == 16, "GATE_LIST_CHANGE_REPLY size");
_Static_assert(offsetof(GATE_LIST_CHANGE_REPLY, version) == 0, "GATE_LIST_CHANGE_REPLY.version");
_Static_assert(offsetof(GATE_LIST_CHANGE_REPLY, size) == 4, "GATE_LIST_CHANGE_REPLY.size");
_Static_assert(offsetof(GATE_LIST_CHANGE_REPLY, len) == 8, "GATE_LIST_CHANGE_REPLY.len");
_Static_assert(offsetof(GATE_LIST_CHANGE_REPLY, changed) == 12, "GATE_LIST_CHANGE_REPLY.changed");

typedef struct GATE_LIST_GET_REQUEST {
    uint32_t version;
    uint32_t flags;
    uint32_t list;
    uint32_t start;
} GATE_LIST_GET_REQUEST;
_Static_assert(sizeof(GATE_LIST_GET_REQUEST) == 16, "GATE_LIST_GET_REQUEST size");
_Static_assert(offsetof(GATE_LIST_GET_REQUEST, version) == 0, "GATE_LIST_GET_REQUEST.version");
_Static_assert(offsetof(GATE_LIST_GET_REQUEST, flags) == 4, "GATE_LIST_GET_REQUEST.flags");
_Static_assert(offsetof(GATE_LIST_GET_REQUEST, list) == 8, "GATE_LIST_GET_REQUEST.list");
_Static_assert(offsetof(GATE_LIST_GET_REQUEST, start) == 12, "GATE_LIST_GET_REQUEST.start");

typedef struct GATE_LIST_ENTRY {
    GATE_ADDR cidr;
    uint32_t reserved;
    uint64_t left_ms;
} GATE_LIST_ENTRY;
_Static_assert(sizeof(GATE_LIST_ENTRY) == 32, "GATE_LIST_ENTRY size");
_Static_assert(offsetof(GATE_LIST_ENTRY, cidr) == 0, "GATE_LIST_ENTRY.cidr");
_Static_assert(offsetof(GATE_LIST_ENTRY, reserved) == 20, "GATE_LIST_ENTRY.reserved");
_Static_assert(offsetof(GATE_LIST_ENTRY, left_ms) == 24, "GATE_LIST_ENTRY.left_ms");

typedef struct GATE_LIST_GET_REPLY {
    uint32_t version;
    uint32_t size;
    uint32_t total;
    uint32_t count;
    uint32_t generation;
    uint32_t reserved;
    GATE_LIST_ENTRY entries[64];
} GATE_LIST_GET_REPLY;
_Static_assert(sizeof(GATE_LIST_GET_REPLY) == 2072, "GATE_LIST_GET_REPLY size");
_Static_assert(offsetof(GATE_LIST_GET_REPLY, version) == 0, "GATE_LIST_GET_REPLY.version");
_Static_assert(offsetof(GATE_LIST_GET_REPLY, size) == 4, "GATE_LIST_GET_REPLY.size");
_Static_assert(offsetof(GATE_LIST_GET_REPLY, total) == 8, "GATE_LIST_GET_REPLY.total");
_Static_assert(offsetof(GATE_LIST_GET_REPLY, count) == 12, "GATE_LIST_GET_REPLY.count");
_Static_assert(offsetof(GATE_LIST_GET_REPLY, generation) == 16, "GATE_LIST_GET_REPLY.generation");
_Static_assert(offsetof(GATE_LIST_GET_REPLY, reserved) == 20, "GATE_LIST_GET_REPLY.reserved");
_Static_assert(offsetof(GATE_LIST_GET_REPLY, entries) == 24, "GATE_LIST_GET_REPLY.entries");

typedef struct GATE_BAN_REQUEST {
    uint32_t version;
    uint32_t flags;
    GATE_ADDR target;
    uint32_t reserved;
    uint64_t duration_ms;
} GATE_BAN_REQUEST;
_Static_assert(sizeof(GATE_BAN_REQUEST) == 40, "GATE_BAN_REQUEST size");
_Static_assert(offsetof(GATE_BAN_REQUEST, version) == 0, "GATE_BAN_REQUEST.version");
_Static_assert(offsetof(GATE_BAN_REQUEST, flags) == 4, "GATE_BAN_REQUEST.flags");
_Static_assert(offsetof(GATE_BAN_REQUEST, target) == 8, "GATE_BAN_REQUEST.target");
_Static_assert(offsetof(GATE_BAN_REQUEST, reserved) == 28, "GATE_BAN_REQUEST.reserved");
_Static_assert(offsetof(GATE_BAN_REQUEST, duration_ms) == 32, "GATE_BAN_REQUEST.duration_ms");

typedef struct GATE_BAN_REPLY {
    uint32_t version;
    uint32_t size;
    uint32_t manual_bans;
    uint32_t replaced;
} GATE_BAN_REPLY;
_Static_assert(sizeof(GATE_BAN_REPLY) == 16, "GATE_BAN_REPLY size");
_Static_assert(offsetof(GATE_BAN_REPLY, version) == 0, "GATE_BAN_REPLY.version");
_Static_assert(offsetof(GATE_BAN_REPLY, size) == 4, "GATE_BAN_REPLY.size");
_Static_assert(offsetof(GATE_BAN_REPLY, manual_bans) == 8, "GATE_BAN_REPLY.manual_bans");
_Static_assert(offsetof(GATE_BAN_REPLY, replaced) == 12, "GATE_BAN_REPLY.replaced");

typedef struct GATE_UNBAN_REQUEST {
    uint32_t version;
    uint32_t flags;
    GATE_ADDR target;
    uint32_t reserved;
    uint64_t cursor;
} GATE_UNBAN_REQUEST;
_Static_assert(sizeof(GATE_UNBAN_REQUEST) == 40, "GATE_UNBAN_REQUEST size");
_Static_assert(offsetof(GATE_UNBAN_REQUEST, version) == 0, "GATE_UNBAN_REQUEST.version");
_Static_assert(offsetof(GATE_UNBAN_REQUEST, flags) == 4, "GATE_UNBAN_REQUEST.flags");
_Static_assert(offsetof(GATE_UNBAN_REQUEST, target) == 8, "GATE_UNBAN_REQUEST.target");
_Static_assert(offsetof(GATE_UNBAN_REQUEST, reserved) == 28, "GATE_UNBAN_REQUEST.reserved");
_Static_assert(offsetof(GATE_UNBAN_REQUEST, cursor) == 32, "GATE_UNBAN_REQUEST.cursor");

typedef struct GATE_UNBAN_REPLY {
    uint32_t version;
    uint32_t size;
    uint32_t manual_lifted;
    uint32_t auto_lifted;
    uint64_t next_cursor;
} GATE_UNBAN_REPLY;
_Static_assert(sizeof(GATE_UNBAN_REPLY) == 24, "GATE_UNBAN_REPLY size");
_Static_assert(offsetof(GATE_UNBAN_REPLY, version) == 0, "GATE_UNBAN_REPLY.version");
_Static_assert(offsetof(GATE_UNBAN_REPLY, size) == 4, "GATE_UNBAN_REPLY.size");
_Static_assert(offsetof(GATE_UNBAN_REPLY, manual_lifted) == 8, "GATE_UNBAN_REPLY.manual_lifted");
_Static_assert(offsetof(GATE_UNBAN_REPLY, auto_lifted) == 12, "GATE_UNBAN_REPLY.auto_lifted");
_Static_assert(offsetof(GATE_UNBAN_REPLY, next_cursor) == 16, "GATE_UNBAN_REPLY.next_cursor");

typedef struct GATE_RESET_REQUEST {
    uint32_t version;
    uint32_t flags;
    uint32_t what;
} GATE_RESET_REQUEST;
_Static_assert(sizeof(GATE_RESET_REQUEST) == 12, "GATE_RESET_REQUEST size");
_Static_assert(offsetof(GATE_RESET_REQUEST, version) == 0, "GATE_RESET_REQUEST.version");
_Static_assert(offsetof(GATE_RESET_REQUEST, flags) == 4, "GATE_RESET_REQUEST.flags");
_Static_assert(offsetof(GATE_RESET_REQUEST, what) == 8, "GATE_RESET_REQUEST.what");

typedef struct GATE_RESET_REPLY {
    uint32_t version;
    uint32_t size;
} GATE_RESET_REPLY;
_Static_assert(sizeof(GATE_RESET_REPLY) == 8, "GATE_RESET_REPLY size");
_Static_assert(offsetof(GATE_RESET_REPLY, version) == 0, "GATE_RESET_REPLY.version");
_Static_assert(offsetof(GATE_RESET_REPLY, size) == 4, "GATE_RESET_REPLY.size");

typedef struct GATE_SET_REQUEST {
    uint32_t version;
    uint32_t flags;
    uint32_t mask;
    uint32_t reserved;
    GATE_CONFIG config;
} GATE_SET_REQUEST;
_Static_assert(sizeof(GATE_SET_REQUEST) == 96, "GATE_SET_REQUEST size");
_Static_assert(offsetof(GATE_SET_REQUEST, version) == 0, "GATE_SET_REQUEST.version");
_Static_assert(offsetof(GATE_SET_REQUEST, flags) == 4, "GATE_SET_REQUEST.flags");
_Static_assert(offsetof(GATE_SET_REQUEST, mask) == 8, "GATE_SET_REQUEST.mask");
_Static_assert(offsetof(GATE_SET_REQUEST, reserved) == 12, "GATE_SET_REQUEST.reserved");
_Static_assert(offsetof(GATE_SET_REQUEST, config) == 16, "GATE_SET_REQUEST.config");

typedef struct GATE_SET_REPLY {
    uint32_t version;
    uint32_t size;
    GATE_CONFIG config;
} GATE_SET_REPLY;
_Static_assert(sizeof(GATE_SET_REPLY) == 88, "GATE_SET_REPLY size");
_Static_assert(offsetof(GATE_SET_REPLY, version) == 0, "GATE_SET_REPLY.version");
_Static_assert(offsetof(GATE_SET_REPLY, size) == 4, "GATE_SET_REPLY.size");
_Static_assert(offsetof(GATE_SET_REPLY, config) == 8, "GATE_SET_REPLY.config");

typedef struct GATE_CHANNEL_REQUEST {
    uint32_t code;
    uint32_t access;
    uint32_t in_len;
    uint32_t out_len;
} GATE_CHANNEL_REQUEST;
_Static_assert(sizeof(GATE_CHANNEL_REQUEST) == 16, "GATE_CHANNEL_REQUEST size");
_Static_assert(offsetof(GATE_CHANNEL_REQUEST, code) == 0, "GATE_CHANNEL_REQUEST.code");
_Static_assert(offsetof(GATE_CHANNEL_REQUEST, access) == 4, "GATE_CHANNEL_REQUEST.access");
_Static_assert(offsetof(GATE_CHANNEL_REQUEST, in_len) == 8, "GATE_CHANNEL_REQUEST.in_len");
_Static_assert(offsetof(GATE_CHANNEL_REQUEST, out_len) == 12, "GATE_CHANNEL_REQUEST.out_len");

typedef struct GATE_CHANNEL_REPLY {
    int32_t status;
    uint32_t reserved;
    uint64_t information;
} GATE_CHANNEL_REPLY;
_Static_assert(sizeof(GATE_CHANNEL_REPLY) == 16, "GATE_CHANNEL_REPLY size");
_Static_assert(offsetof(GATE_CHANNEL_REPLY, status) == 0, "GATE_CHANNEL_REPLY.status");
_Static_assert(offsetof(GATE_CHANNEL_REPLY, reserved) == 4, "GATE_CHANNEL_REPLY.reserved");
_Static_assert(offsetof(GATE_CHANNEL_REPLY, information) == 8, "GATE_CHANNEL_REPLY.information");

#endif /* GATE_IOCTL_H */
