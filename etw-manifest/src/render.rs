//! Text generated from the event table: a manifest skeleton (used to write
//! `gate.man` when events change: `cargo run -p etw-manifest --example
//! render -- manifest`) and the README's event reference (checked by a
//! test to match the schema).

use std::fmt::Write;

use gate_driver::etw::{channel, keyword, task, EventSchema, FieldType, PROVIDER_NAME, SCHEMA};

use crate::guid::format_guid;
use crate::types::{code_maps, expected_data, level_name, opcode_name};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn keyword_names(mask: u64) -> Vec<&'static str> {
    keyword::NAMES
        .iter()
        .filter(|(_, bit)| mask & bit != 0)
        .map(|(n, _)| *n)
        .collect()
}

/// The manifest `chid` of a channel value (None for TraceLogging's 11).
pub fn channel_chid(value: u8) -> Option<&'static str> {
    channel::CHANNELS.iter().find(|c| c.3 == value).map(|c| c.0)
}

fn task_name(value: u16) -> &'static str {
    task::NAMES
        .iter()
        .find(|(_, v)| *v == value)
        .map(|(n, _)| *n)
        .unwrap_or("?")
}

/// The event's message: its description, then `Name=%n` for each field
/// (numbered after the BINARY length items).
fn event_message(e: &EventSchema) -> String {
    let mut msg = e.doc.trim().to_owned();
    let mut index = 0;
    for f in e.fields {
        let items = expected_data(f).map(|d| d.len()).unwrap_or(1);
        index += items;
        let _ = write!(msg, " {}=%{index}", f.name);
    }
    msg
}

/// A complete manifest for the schema.
pub fn render_manifest() -> String {
    let guid = format_guid(&gate_driver::etw::PROVIDER_GUID).to_uppercase();
    let mut x = String::new();
    let mut strings: Vec<(String, String)> = Vec::new();
    x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.push_str("<!-- The TcpFrontGate driver's events. The driver writes them as TraceLogging\n");
    x.push_str("     (self-describing) events; this manifest documents them for wevtutil,\n");
    x.push_str("     tracerpt and the event viewer, and declares the Event Log channels the\n");
    x.push_str("     operator's events also go to. Checked against the driver's event table\n");
    x.push_str("     by etw-manifest's tests; see etw-manifest/README.md. -->\n");
    x.push_str(
        "<instrumentationManifest xmlns=\"http://schemas.microsoft.com/win/2004/08/events\"\n",
    );
    x.push_str("    xmlns:win=\"http://manifests.microsoft.com/win/2004/08/windows/events\"\n");
    x.push_str("    xmlns:xs=\"http://www.w3.org/2001/XMLSchema\">\n");
    x.push_str("  <instrumentation>\n    <events>\n");
    let _ = writeln!(
        x,
        "      <provider name=\"{PROVIDER_NAME}\" guid=\"{{{guid}}}\" symbol=\"TCP_FRONT_GATE_PROVIDER\"\n          resourceFileName=\"%SystemRoot%\\System32\\drivers\\gate.sys\"\n          messageFileName=\"%SystemRoot%\\System32\\drivers\\gate.sys\"\n          message=\"$(string.Provider.Name)\">"
    );
    strings.push(("Provider.Name".into(), PROVIDER_NAME.into()));
    x.push_str("        <channels>\n");
    for (chid, name, ty, value, _) in channel::CHANNELS {
        let _ = writeln!(
            x,
            "          <channel chid=\"{chid}\" name=\"{name}\" type=\"{ty}\" enabled=\"true\" value=\"{value}\" symbol=\"CHANNEL_{}\" message=\"$(string.Channel.{chid})\"/>",
            chid.to_uppercase()
        );
        strings.push((format!("Channel.{chid}"), (*name).into()));
    }
    x.push_str("        </channels>\n");

    x.push_str("        <keywords>\n");
    for (name, bit) in keyword::NAMES {
        let _ = writeln!(
            x,
            "          <keyword name=\"{name}\" mask=\"{bit:#x}\" symbol=\"KW_{}\" message=\"$(string.Keyword.{name})\"/>",
            name.to_uppercase()
        );
        strings.push((format!("Keyword.{name}"), (*name).into()));
    }
    x.push_str("        </keywords>\n        <tasks>\n");
    for (name, value) in task::NAMES {
        let _ = writeln!(
            x,
            "          <task name=\"{name}\" value=\"{value}\" symbol=\"TASK_{}\" message=\"$(string.Task.{name})\"/>",
            name.to_uppercase()
        );
        strings.push((format!("Task.{name}"), (*name).into()));
    }
    x.push_str("        </tasks>\n        <maps>\n");
    for (name, entries) in code_maps() {
        let _ = writeln!(x, "          <valueMap name=\"{name}\">");
        let short = name.trim_end_matches("Map");
        for (v, n) in entries {
            let _ = writeln!(
                x,
                "            <map value=\"{v}\" message=\"$(string.Map.{short}.{v})\"/>"
            );
            strings.push((format!("Map.{short}.{v}"), n.into()));
        }
        x.push_str("          </valueMap>\n");
    }
    x.push_str("        </maps>\n        <templates>\n");
    for e in SCHEMA {
        let _ = writeln!(x, "          <template tid=\"T_{}\">", e.name);
        for f in e.fields {
            for d in expected_data(f).unwrap_or_default() {
                let _ = write!(
                    x,
                    "            <data name=\"{}\" inType=\"{}\"",
                    d.name, d.in_type
                );
                if let Some(o) = d.out_type {
                    let _ = write!(x, " outType=\"{o}\"");
                }
                if let Some(mp) = d.map {
                    let _ = write!(x, " map=\"{mp}\"");
                }
                if let Some(l) = d.length {
                    let _ = write!(x, " length=\"{l}\"");
                }
                x.push_str("/>\n");
            }
        }
        x.push_str("          </template>\n");
    }
    x.push_str("        </templates>\n        <events>\n");
    for e in SCHEMA {
        let channel = channel_chid(e.channel)
            .map(|c| format!(" channel=\"{c}\""))
            .unwrap_or_default();
        let _ = writeln!(
            x,
            "          <event value=\"{}\" version=\"{}\" symbol=\"{}\" level=\"{}\" task=\"{}\" opcode=\"{}\"{channel}\n              keywords=\"{}\" template=\"T_{}\" message=\"$(string.Event.{})\"/>",
            e.id,
            e.version,
            e.name,
            level_name(e.level).unwrap_or("?"),
            task_name(e.task),
            opcode_name(e.opcode).unwrap_or("?"),
            keyword_names(e.keyword).join(" "),
            e.name,
            e.name
        );
        strings.push((format!("Event.{}", e.name), event_message(e)));
    }
    x.push_str("        </events>\n      </provider>\n    </events>\n  </instrumentation>\n");
    x.push_str("  <localization>\n    <resources culture=\"en-US\">\n      <stringTable>\n");
    for (id, value) in strings {
        let _ = writeln!(x, "        <string id=\"{id}\" value=\"{}\"/>", esc(&value));
    }
    x.push_str(
        "      </stringTable>\n    </resources>\n  </localization>\n</instrumentationManifest>\n",
    );
    x
}

/// Display name of a field type for the docs.
pub fn type_doc(ty: FieldType) -> &'static str {
    match ty {
        FieldType::U8 => "UInt8",
        FieldType::U16 => "UInt16",
        FieldType::U32 => "UInt32",
        FieldType::U64 => "UInt64",
        FieldType::Bool32 => "Boolean",
        FieldType::Hex64 => "HexInt64",
        FieldType::NtStatus => "NTSTATUS",
        FieldType::Port => "Port",
        FieldType::SockAddr => "SocketAddress",
        FieldType::Binary => "Binary (hex)",
        FieldType::Str => "String",
    }
}

/// The README's event reference: one section per event with a field table.
pub fn render_event_docs() -> String {
    let mut s = String::new();
    for e in SCHEMA {
        let _ = writeln!(
            s,
            "#### {} (id {}, {}, keyword {}, task {}{}{})\n",
            e.name,
            e.id,
            level_name(e.level)
                .unwrap_or("?")
                .trim_start_matches("win:"),
            keyword_names(e.keyword).join("+"),
            task_name(e.task),
            match e.opcode {
                0 => String::new(),
                o => format!(
                    ", opcode {}",
                    opcode_name(o).unwrap_or("?").trim_start_matches("win:")
                ),
            },
            channel::CHANNELS
                .iter()
                .find(|c| c.3 == e.channel)
                .map(|c| format!(", Event Log channel {}", c.1))
                .unwrap_or_default()
        );
        let _ = writeln!(s, "{}\n", e.doc.trim());
        s.push_str("| field | type | meaning |\n|---|---|---|\n");
        for f in e.fields {
            let ty = match f.map {
                Some(m) => format!("{} ({m})", type_doc(f.ty)),
                None => type_doc(f.ty).to_owned(),
            };
            let _ = writeln!(s, "| {} | {} | {} |", f.name, ty, f.doc.trim());
        }
        s.push('\n');
    }
    s
}

/// The README's value-map reference.
pub fn render_map_docs() -> String {
    let mut s = String::new();
    for (name, entries) in code_maps() {
        let list: Vec<String> = entries.iter().map(|(v, n)| format!("{v} = {n}")).collect();
        let _ = writeln!(s, "- **{name}**: {}", list.join(", "));
    }
    s
}
