//! The checks: the manifest is internally consistent and describes exactly
//! the events of `gate_driver::etw::SCHEMA`; a decoded event conforms to
//! both.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use gate_driver::etw::{channel, EventSchema, FieldType, PROVIDER_GUID, PROVIDER_NAME, SCHEMA};
use gate_ksys::etw::WINEVENT_CHANNEL_TRACELOGGING;

use crate::guid::parse_guid;
use crate::model::{Manifest, Template};
use crate::sim::{parse_sockaddr, CapturedEvent, Value};
use crate::types::{
    code_maps, expected_data, is_c_symbol, level_name, level_value, opcode_name, opcode_value,
};

/// The parsed `gate.man` (parsed once).
pub fn manifest() -> Result<&'static Manifest, String> {
    static M: OnceLock<Result<Manifest, String>> = OnceLock::new();
    M.get_or_init(|| Manifest::parse(crate::MANIFEST_XML))
        .as_ref()
        .map_err(Clone::clone)
}

/// Every problem with `m`, checked against the code (empty = conforms).
pub fn check_manifest(m: &Manifest) -> Vec<String> {
    let mut p = Vec::new();
    check_provider(m, &mut p);
    check_definitions(m, &mut p);
    check_references(m, &mut p);
    check_maps(m, &mut p);
    check_channels(m, &mut p);
    check_against_schema(m, &mut p);
    p
}

/// The channels: exactly the code's [`channel::CHANNELS`], in the same
/// order (mc.exe gives each channel its keyword bit by declaration order,
/// and the code ORs that bit into the channel's events), each with a legal
/// value (16..=255), a type Event Viewer shows (Admin or Operational:
/// Analytic and Debug channels are off by default and not for operators),
/// enabled, named `<provider>/<chid>`, with a message. Events that name a
/// channel name a declared one; events on an Admin channel are at level
/// Warning or more severe, or Informational (the levels an Admin channel
/// accepts), and have a message.
fn check_channels(m: &Manifest, p: &mut Vec<String>) {
    let want: Vec<(&str, &str, &str, u64)> = channel::CHANNELS
        .iter()
        .map(|(chid, name, ty, value, _)| (*chid, *name, *ty, u64::from(*value)))
        .collect();
    let got: Vec<(&str, &str, &str, u64)> = m
        .channels
        .iter()
        .map(|c| {
            (
                c.chid.as_str(),
                c.name.as_str(),
                c.ty.as_str(),
                c.value.unwrap_or(0),
            )
        })
        .collect();
    if got != want {
        p.push(format!(
            "channels (chid, name, type, value) in manifest order {got:?}, the code's channel::CHANNELS {want:?}"
        ));
    }
    if m.channels.len() > 8 {
        p.push(format!(
            "{} channels: a provider has at most 8 channel keyword bits",
            m.channels.len()
        ));
    }
    for c in &m.channels {
        let who = format!("channel {}", c.chid);
        match c.value {
            Some(v) if (16..=255).contains(&v) => {}
            other => p.push(format!(
                "{who}: value {other:?} must be 16..=255 (0-15 are reserved for winmeta's channels)"
            )),
        }
        if c.ty != "Admin" && c.ty != "Operational" {
            p.push(format!(
                "{who}: type {:?} is not Admin or Operational",
                c.ty
            ));
        }
        if c.enabled.as_deref() != Some("true") {
            p.push(format!(
                "{who}: enabled={:?}; an operator's channel must be enabled=\"true\"",
                c.enabled
            ));
        }
        if c.name != format!("{}/{}", m.provider_name, c.chid) {
            p.push(format!(
                "{who}: name {:?} is not {}/{}",
                c.name, m.provider_name, c.chid
            ));
        }
        string_ref(m, c.message.as_deref(), &who, p);
    }
    unique(m.channels.iter().map(|c| c.chid.clone()), "channel chid", p);
    for e in &m.events {
        let Some(chid) = &e.channel else { continue };
        let Some(c) = m.channels.iter().find(|c| &c.chid == chid) else {
            p.push(format!("event {}: channel {chid:?} not defined", e.symbol));
            continue;
        };
        let level = level_value(&e.level);
        if c.ty == "Admin" && !matches!(level, Some(1..=4)) {
            p.push(format!(
                "event {}: level {} on Admin channel {chid} (Critical, Error, Warning or Informational only)",
                e.symbol, e.level
            ));
        }
    }
}

fn check_provider(m: &Manifest, p: &mut Vec<String>) {
    if m.provider_name != PROVIDER_NAME {
        p.push(format!(
            "provider name {:?}, code says {PROVIDER_NAME:?}",
            m.provider_name
        ));
    }
    match parse_guid(&m.provider_guid) {
        Ok(g) if g == PROVIDER_GUID => {}
        Ok(_) => p.push(format!(
            "provider guid {} differs from the code's {}",
            m.provider_guid,
            crate::guid::format_guid(&PROVIDER_GUID)
        )),
        Err(e) => p.push(format!("provider guid: {e}")),
    }
    if !m.provider_guid.starts_with('{') || !m.provider_guid.ends_with('}') {
        p.push(format!(
            "provider guid {:?} must be in braces",
            m.provider_guid
        ));
    }
    if !is_c_symbol(&m.provider_symbol) {
        p.push(format!(
            "provider symbol {:?} is not a C symbol",
            m.provider_symbol
        ));
    }
    for (what, file) in [
        ("resourceFileName", &m.resource_file),
        ("messageFileName", &m.message_file),
    ] {
        if !file.to_ascii_lowercase().ends_with("\\gate.sys") {
            p.push(format!("{what} {file:?} does not name gate.sys"));
        }
    }
}

/// Unique names/values, legal symbols, keyword masks.
fn check_definitions(m: &Manifest, p: &mut Vec<String>) {
    let mut ids = BTreeSet::new();
    let mut symbols = BTreeSet::new();
    for e in &m.events {
        if !ids.insert(e.value) {
            p.push(format!("event value {} used twice", e.value));
        }
        if !symbols.insert(e.symbol.clone()) {
            p.push(format!("event symbol {} used twice", e.symbol));
        }
        if !is_c_symbol(&e.symbol) {
            p.push(format!("event symbol {:?} is not a C symbol", e.symbol));
        }
    }
    unique(m.templates.iter().map(|t| t.tid.clone()), "template tid", p);
    unique(m.keywords.iter().map(|k| k.name.clone()), "keyword name", p);
    unique(
        m.keywords.iter().map(|k| k.value.to_string()),
        "keyword mask",
        p,
    );
    unique(m.tasks.iter().map(|t| t.name.clone()), "task name", p);
    unique(m.tasks.iter().map(|t| t.value.to_string()), "task value", p);
    unique(m.maps.iter().map(|v| v.name.clone()), "map name", p);
    for k in &m.keywords {
        if k.value.count_ones() != 1 || k.value >> 48 != 0 {
            p.push(format!(
                "keyword {} mask {:#x} must be one bit of the low 48",
                k.name, k.value
            ));
        }
    }
    for t in &m.tasks {
        if t.value == 0 || t.value > u64::from(u16::MAX) {
            p.push(format!(
                "task {} value {} out of 1..=65535",
                t.name, t.value
            ));
        }
    }
    for t in &m.templates {
        if !is_c_symbol(&t.tid) {
            p.push(format!("template tid {:?} is not a C symbol", t.tid));
        }
        unique(
            t.data.iter().map(|d| d.name.clone()),
            &format!("data name in {}", t.tid),
            p,
        );
        for d in &t.data {
            if !is_c_symbol(&d.name) {
                p.push(format!(
                    "{}: data name {:?} is not a C symbol",
                    t.tid, d.name
                ));
            }
        }
    }
    for (what, items) in [("keyword", &m.keywords), ("task", &m.tasks)] {
        for i in items.iter() {
            if !is_c_symbol(&i.name) {
                p.push(format!("{what} name {:?} is not a C symbol", i.name));
            }
            if let Some(s) = &i.symbol {
                if !is_c_symbol(s) {
                    p.push(format!("{what} {} symbol {s:?} is not a C symbol", i.name));
                }
            }
        }
    }
    for v in &m.maps {
        unique(
            v.entries.iter().map(|(n, _)| n.to_string()),
            &format!("value in map {}", v.name),
            p,
        );
    }
}

fn unique(items: impl Iterator<Item = String>, what: &str, p: &mut Vec<String>) {
    let mut seen = BTreeSet::new();
    for i in items {
        if !seen.insert(i.clone()) {
            p.push(format!("{what} {i:?} defined twice"));
        }
    }
}

/// Everything an event, template or map refers to is defined.
fn check_references(m: &Manifest, p: &mut Vec<String>) {
    let mut used_templates = BTreeSet::new();
    for e in &m.events {
        let level_ok =
            level_value(&e.level).is_some() || m.levels.iter().any(|l| l.name == e.level);
        if !level_ok {
            p.push(format!(
                "event {}: level {:?} not defined",
                e.symbol, e.level
            ));
        }
        if let Some(t) = &e.task {
            if !m.tasks.iter().any(|x| &x.name == t) {
                p.push(format!("event {}: task {t:?} not defined", e.symbol));
            }
        }
        if let Some(o) = &e.opcode {
            if opcode_value(o).is_none() && !m.opcodes.iter().any(|x| &x.name == o) {
                p.push(format!("event {}: opcode {o:?} not defined", e.symbol));
            }
        }
        for k in &e.keywords {
            if !m.keywords.iter().any(|x| &x.name == k) {
                p.push(format!("event {}: keyword {k:?} not defined", e.symbol));
            }
        }
        match &e.template {
            Some(t) if m.template(t).is_none() => {
                p.push(format!("event {}: template {t:?} not defined", e.symbol))
            }
            Some(t) => {
                used_templates.insert(t.clone());
            }
            None => {}
        }
        string_ref(m, e.message.as_deref(), &format!("event {}", e.symbol), p);
    }
    for t in &m.templates {
        if !used_templates.contains(&t.tid) {
            p.push(format!("template {} is used by no event", t.tid));
        }
        check_template_refs(m, t, p);
    }
    for (what, items) in [("keyword", &m.keywords), ("task", &m.tasks)] {
        for i in items.iter() {
            string_ref(m, i.message.as_deref(), &format!("{what} {}", i.name), p);
        }
    }
    for v in &m.maps {
        for (value, msg) in &v.entries {
            string_ref(m, Some(msg), &format!("map {} value {value}", v.name), p);
        }
    }
    string_ref(m, m.provider_message.as_deref(), "provider", p);
}

fn check_template_refs(m: &Manifest, t: &Template, p: &mut Vec<String>) {
    for (i, d) in t.data.iter().enumerate() {
        if let Some(map) = &d.map {
            if m.map(map).is_none() {
                p.push(format!(
                    "{}: data {} refers to undefined map {map:?}",
                    t.tid, d.name
                ));
            }
        }
        if let Some(len) = &d.length {
            let earlier = t.data.iter().take(i).find(|x| &x.name == len);
            match earlier {
                Some(x) if x.in_type == "win:UInt16" || x.in_type == "win:UInt32" => {}
                Some(x) => p.push(format!(
                    "{}: length field {len} of {} has type {}",
                    t.tid, d.name, x.in_type
                )),
                None if len.parse::<u32>().is_ok() => {}
                None => p.push(format!(
                    "{}: data {} length {len:?} is no earlier field",
                    t.tid, d.name
                )),
            }
        }
        if d.in_type == "win:Binary" && d.length.is_none() {
            p.push(format!("{}: binary data {} has no length", t.tid, d.name));
        }
    }
}

fn string_ref(m: &Manifest, r: Option<&str>, what: &str, p: &mut Vec<String>) {
    match r {
        None => p.push(format!("{what}: no message")),
        Some(r) if m.string(r).is_none() => p.push(format!(
            "{what}: message {r:?} is not in the en-US string table"
        )),
        Some(_) => {}
    }
}

/// The manifest's value maps equal the code's (values and names).
fn check_maps(m: &Manifest, p: &mut Vec<String>) {
    let code = code_maps();
    for (name, entries) in &code {
        let Some(v) = m.map(name) else {
            p.push(format!("map {name} missing from the manifest"));
            continue;
        };
        let got: Vec<(u64, String)> = v
            .entries
            .iter()
            .map(|(val, msg)| (*val, m.string(msg).unwrap_or("<missing string>").to_owned()))
            .collect();
        let want: Vec<(u64, String)> = entries
            .iter()
            .map(|(val, n)| (*val, (*n).to_owned()))
            .collect();
        if got != want {
            p.push(format!(
                "map {name}: manifest has {got:?}, code has {want:?}"
            ));
        }
    }
    for v in &m.maps {
        if !code.iter().any(|(n, _)| *n == v.name) {
            p.push(format!("map {} is not one of the code's maps", v.name));
        }
    }
}

/// Every SCHEMA event is in the manifest with the same descriptor and
/// template, field by field, and the manifest has no other event.
fn check_against_schema(m: &Manifest, p: &mut Vec<String>) {
    for s in SCHEMA {
        let Some(e) = m.event(s.id) else {
            p.push(format!(
                "event {} (id {}) missing from the manifest",
                s.name, s.id
            ));
            continue;
        };
        let who = format!("event {} (id {})", s.name, s.id);
        if e.symbol != s.name {
            p.push(format!("{who}: manifest symbol {:?}", e.symbol));
        }
        if e.version != s.version {
            p.push(format!(
                "{who}: manifest version {}, code {}",
                e.version, s.version
            ));
        }
        if level_value(&e.level) != Some(s.level) {
            p.push(format!(
                "{who}: manifest level {}, code {:?}",
                e.level,
                level_name(s.level)
            ));
        }
        let opcode = e.opcode.as_deref().unwrap_or("win:Info");
        if opcode_value(opcode) != Some(s.opcode) {
            p.push(format!(
                "{who}: manifest opcode {opcode}, code {:?}",
                opcode_name(s.opcode)
            ));
        }
        let task_value = e
            .task
            .as_ref()
            .and_then(|t| m.tasks.iter().find(|x| &x.name == t))
            .map(|t| t.value);
        if task_value != Some(u64::from(s.task)) {
            p.push(format!(
                "{who}: manifest task {:?} = {task_value:?}, code {}",
                e.task, s.task
            ));
        }
        // The channel: its value is the descriptor's Channel, and mc.exe
        // adds the channel's keyword bit (by declaration order) to the
        // event's keywords.
        let (chan_value, chan_bit) = match &e.channel {
            None => (u64::from(WINEVENT_CHANNEL_TRACELOGGING), 0),
            Some(chid) => match m.channels.iter().position(|c| &c.chid == chid) {
                Some(i) => (
                    m.channels[i].value.unwrap_or(0),
                    1u64.checked_shl(63 - i as u32).unwrap_or(0),
                ),
                None => (0, 0),
            },
        };
        if chan_value != u64::from(s.channel) {
            p.push(format!(
                "{who}: manifest channel {:?} (value {chan_value}), code channel {}",
                e.channel, s.channel
            ));
        }
        let mask = e
            .keywords
            .iter()
            .filter_map(|k| m.keywords.iter().find(|x| &x.name == k))
            .fold(chan_bit, |a, k| a | k.value);
        if mask != s.keyword {
            p.push(format!(
                "{who}: manifest keywords with the channel bit {mask:#x}, code {:#x}",
                s.keyword
            ));
        }
        let Some(t) = e.template.as_deref().and_then(|t| m.template(t)) else {
            p.push(format!("{who}: no template"));
            continue;
        };
        let mut want = Vec::new();
        for f in s.fields {
            match expected_data(f) {
                Ok(d) => want.extend(d),
                Err(err) => p.push(format!("{who}: {err}")),
            }
        }
        if t.data.len() != want.len() {
            p.push(format!(
                "{who}: template {} has {} data items, the code's {} fields need {}",
                t.tid,
                t.data.len(),
                s.fields.len(),
                want.len()
            ));
        }
        for (i, (got, exp)) in t.data.iter().zip(&want).enumerate() {
            if got != exp {
                p.push(format!(
                    "{who}: data item {i}: manifest {got:?}, code needs {exp:?}"
                ));
            }
        }
    }
    for e in &m.events {
        if !SCHEMA.iter().any(|s| s.id == e.value) {
            p.push(format!(
                "manifest event {} (id {}) is not in the code",
                e.symbol, e.value
            ));
        }
    }
}

/// Checks one event captured (and decoded) by the simulation: it decoded
/// cleanly, comes from the gate's provider, and matches its SCHEMA entry
/// and the manifest: descriptor, field names, order and types, values in
/// their value maps, SOCKADDRs well formed.
pub fn check_captured(ev: &CapturedEvent) -> Result<(), String> {
    let who = format!("captured event {:?} (id {})", ev.name, ev.id);
    if let Some(e) = &ev.error {
        return Err(format!("{who}: does not decode: {e}"));
    }
    if ev.provider != PROVIDER_GUID {
        return Err(format!(
            "{who}: provider {:?} is not the gate's",
            ev.provider
        ));
    }
    if ev.provider_name.as_deref() != Some(PROVIDER_NAME) {
        return Err(format!("{who}: provider name {:?}", ev.provider_name));
    }
    let s: &EventSchema = SCHEMA
        .iter()
        .find(|s| s.name == ev.name)
        .ok_or_else(|| format!("{who}: no such event in SCHEMA"))?;
    if ev.channel != s.channel {
        return Err(format!(
            "{who}: channel {}, the schema says {} (11 = TraceLogging only)",
            ev.channel, s.channel
        ));
    }
    let got = (ev.id, ev.version, ev.level, ev.opcode, ev.task, ev.keyword);
    let want = (s.id, s.version, s.level, s.opcode, s.task, s.keyword);
    if got != want {
        return Err(format!(
            "{who}: descriptor (id, version, level, opcode, task, keyword) {got:?}, schema {want:?}"
        ));
    }
    if ev.fields.len() != s.fields.len() {
        return Err(format!(
            "{who}: {} fields, schema has {}",
            ev.fields.len(),
            s.fields.len()
        ));
    }
    let m = manifest()?;
    let me = m
        .event(ev.id)
        .ok_or_else(|| format!("{who}: id not in the manifest"))?;
    if me.symbol != ev.name {
        return Err(format!(
            "{who}: the manifest calls id {} {:?}",
            ev.id, me.symbol
        ));
    }
    for (f, sf) in ev.fields.iter().zip(s.fields) {
        let fw = format!("{who} field {:?}", f.name);
        if f.name != sf.name || f.in_type != sf.ty.in_type() || f.out_type != sf.ty.out_type() {
            return Err(format!(
                "{fw}: (name, in, out) = ({:?}, {}, {}), schema ({:?}, {}, {})",
                f.name,
                f.in_type,
                f.out_type,
                sf.name,
                sf.ty.in_type(),
                sf.ty.out_type()
            ));
        }
        if let Some(map) = sf.map {
            let v = f
                .as_u64()
                .ok_or_else(|| format!("{fw}: mapped value is {:?}", f.value))?;
            let vm = m
                .map(map)
                .ok_or_else(|| format!("{fw}: map {map} not in the manifest"))?;
            if !vm.entries.iter().any(|(x, _)| *x == v) {
                return Err(format!("{fw}: value {v} is not in value map {map}"));
            }
        }
        match (sf.ty, &f.value) {
            (FieldType::SockAddr, Value::Bytes(b)) => {
                if !b.is_empty() && parse_sockaddr(b).is_none() {
                    return Err(format!(
                        "{fw}: {} bytes are not a SOCKADDR_IN/IN6: {b:02x?}",
                        b.len()
                    ));
                }
            }
            (FieldType::Binary, Value::Bytes(_))
            | (FieldType::Str, Value::Str(_))
            | (FieldType::Bool32, Value::Bool(_)) => {}
            (
                FieldType::U8
                | FieldType::U16
                | FieldType::U32
                | FieldType::U64
                | FieldType::Hex64
                | FieldType::NtStatus
                | FieldType::Port,
                Value::U64(_),
            ) => {}
            (ty, v) => return Err(format!("{fw}: value {v:?} does not fit {ty:?}")),
        }
    }
    Ok(())
}

/// [`check_captured`] over many events: every problem, one line each
/// (`Ok` when all conform). For driver integration tests:
/// `etw_manifest::check::check_all(&sim::take_for(handle)).unwrap()`.
pub fn check_all(events: &[CapturedEvent]) -> Result<(), String> {
    let problems: Vec<String> = events
        .iter()
        .filter_map(|e| check_captured(e).err())
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} of {} captured events do not conform:\n{}",
            problems.len(),
            events.len(),
            problems.join("\n")
        ))
    }
}
