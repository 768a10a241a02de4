//! The manifest as plain data: what `instrumentationManifest` declares for
//! the (single) provider, parsed with roxmltree. Parsing checks only
//! well-formedness and the presence of required attributes; the meaning is
//! checked in [`crate::check`].

use std::collections::BTreeMap;

use roxmltree::{Document, Node};

/// The manifest XML namespace.
pub const NS: &str = "http://schemas.microsoft.com/win/2004/08/events";

/// One `<data>` item of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Data {
    pub name: String,
    pub in_type: String,
    pub out_type: Option<String>,
    pub map: Option<String>,
    pub length: Option<String>,
}

/// One `<template>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    pub tid: String,
    pub data: Vec<Data>,
}

/// One `<event>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub value: u16,
    pub version: u8,
    pub symbol: String,
    pub level: String,
    pub task: Option<String>,
    pub opcode: Option<String>,
    pub keywords: Vec<String>,
    pub template: Option<String>,
    pub message: Option<String>,
    /// The `channel` attribute: a `chid` of a declared `<channel>`.
    pub channel: Option<String>,
}

/// One `<channel>` the provider declares (an Event Log channel).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Channel {
    pub chid: String,
    pub name: String,
    /// Admin, Operational, Analytic or Debug.
    pub ty: String,
    /// The value events carry in EVENT_DESCRIPTOR.Channel (16..=255).
    pub value: Option<u64>,
    pub enabled: Option<String>,
    pub message: Option<String>,
}

/// A named numeric item (`<keyword>`, `<task>`, `<opcode>`, `<level>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Named {
    pub name: String,
    pub value: u64,
    pub symbol: Option<String>,
    pub message: Option<String>,
}

/// One `<valueMap>` (or `<bitMap>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueMap {
    pub name: String,
    pub bitmap: bool,
    /// (value, message reference) in document order.
    pub entries: Vec<(u64, String)>,
}

/// The provider and everything it declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub provider_name: String,
    pub provider_guid: String,
    pub provider_symbol: String,
    pub resource_file: String,
    pub message_file: String,
    pub provider_message: Option<String>,
    pub events: Vec<Event>,
    pub templates: Vec<Template>,
    pub keywords: Vec<Named>,
    pub tasks: Vec<Named>,
    pub opcodes: Vec<Named>,
    pub levels: Vec<Named>,
    pub maps: Vec<ValueMap>,
    /// Channels in declaration order.
    pub channels: Vec<Channel>,
    /// en-US string table: id -> value.
    pub strings: BTreeMap<String, String>,
}

impl Manifest {
    /// Parses manifest XML.
    pub fn parse(xml: &str) -> Result<Manifest, String> {
        let doc =
            Document::parse(xml).map_err(|e| format!("manifest is not well-formed XML: {e}"))?;
        let root = doc.root_element();
        if root.tag_name().name() != "instrumentationManifest"
            || root.tag_name().namespace() != Some(NS)
        {
            return Err(format!(
                "root element is {:?} in {:?}, expected instrumentationManifest in {NS}",
                root.tag_name().name(),
                root.tag_name().namespace()
            ));
        }
        let providers: Vec<Node> = root.descendants().filter(|n| is(n, "provider")).collect();
        let [p] = providers.as_slice() else {
            return Err(format!(
                "expected exactly one <provider>, found {}",
                providers.len()
            ));
        };
        let p = *p;
        let mut m = Manifest {
            provider_name: req(p, "name")?,
            provider_guid: req(p, "guid")?,
            provider_symbol: req(p, "symbol")?,
            resource_file: req(p, "resourceFileName")?,
            message_file: req(p, "messageFileName")?,
            provider_message: opt(p, "message"),
            events: Vec::new(),
            templates: Vec::new(),
            keywords: Vec::new(),
            tasks: Vec::new(),
            opcodes: Vec::new(),
            levels: Vec::new(),
            maps: Vec::new(),
            channels: Vec::new(),
            strings: BTreeMap::new(),
        };
        for n in p.descendants().filter(|n| n.is_element()) {
            match n.tag_name().name() {
                "event" => m.events.push(Event {
                    value: num(n, "value")? as u16,
                    version: match n.attribute("version") {
                        Some(_) => num(n, "version")? as u8,
                        None => 0,
                    },
                    symbol: req(n, "symbol")?,
                    level: opt(n, "level").unwrap_or_else(|| "win:LogAlways".to_owned()),
                    task: opt(n, "task"),
                    opcode: opt(n, "opcode"),
                    keywords: opt(n, "keywords")
                        .map(|k| k.split_whitespace().map(str::to_owned).collect())
                        .unwrap_or_default(),
                    template: opt(n, "template"),
                    message: opt(n, "message"),
                    channel: opt(n, "channel"),
                }),
                "channel" => m.channels.push(Channel {
                    chid: req(n, "chid")?,
                    name: req(n, "name")?,
                    ty: req(n, "type")?,
                    value: match n.attribute("value") {
                        Some(_) => Some(num(n, "value")?),
                        None => None,
                    },
                    enabled: opt(n, "enabled"),
                    message: opt(n, "message"),
                }),
                "template" => m.templates.push(Template {
                    tid: req(n, "tid")?,
                    data: n
                        .children()
                        .filter(|c| is(c, "data"))
                        .map(|d| {
                            Ok(Data {
                                name: req(d, "name")?,
                                in_type: req(d, "inType")?,
                                out_type: opt(d, "outType"),
                                map: opt(d, "map"),
                                length: opt(d, "length"),
                            })
                        })
                        .collect::<Result<_, String>>()?,
                }),
                "keyword" => m.keywords.push(named(n, "mask")?),
                "task" => m.tasks.push(named(n, "value")?),
                "opcode" => m.opcodes.push(named(n, "value")?),
                "level" => m.levels.push(named(n, "value")?),
                "valueMap" | "bitMap" => m.maps.push(ValueMap {
                    name: req(n, "name")?,
                    bitmap: n.tag_name().name() == "bitMap",
                    entries: n
                        .children()
                        .filter(|c| is(c, "map"))
                        .map(|e| Ok((num(e, "value")?, req(e, "message")?)))
                        .collect::<Result<_, String>>()?,
                }),
                _ => {}
            }
        }
        for res in root.descendants().filter(|n| is(n, "resources")) {
            if res.attribute("culture") != Some("en-US") {
                continue;
            }
            for s in res.descendants().filter(|n| is(n, "string")) {
                let id = req(s, "id")?;
                let value = req(s, "value")?;
                if m.strings.insert(id.clone(), value).is_some() {
                    return Err(format!("string id {id:?} defined twice"));
                }
            }
        }
        Ok(m)
    }

    /// The template with this tid.
    pub fn template(&self, tid: &str) -> Option<&Template> {
        self.templates.iter().find(|t| t.tid == tid)
    }

    /// The event with this value (id).
    pub fn event(&self, id: u16) -> Option<&Event> {
        self.events.iter().find(|e| e.value == id)
    }

    /// The value map with this name.
    pub fn map(&self, name: &str) -> Option<&ValueMap> {
        self.maps.iter().find(|m| m.name == name)
    }

    /// Resolves a `$(string.ID)` reference.
    pub fn string(&self, reference: &str) -> Option<&str> {
        let id = reference.strip_prefix("$(string.")?.strip_suffix(')')?;
        self.strings.get(id).map(String::as_str)
    }
}

fn is(n: &Node, name: &str) -> bool {
    n.is_element() && n.tag_name().name() == name && n.tag_name().namespace() == Some(NS)
}

fn req(n: Node, attr: &str) -> Result<String, String> {
    n.attribute(attr).map(str::to_owned).ok_or_else(|| {
        format!(
            "<{}> at byte {} lacks attribute {attr:?}",
            n.tag_name().name(),
            n.range().start
        )
    })
}

fn opt(n: Node, attr: &str) -> Option<String> {
    n.attribute(attr).map(str::to_owned)
}

/// Parses a decimal or 0x-hex attribute.
fn num(n: Node, attr: &str) -> Result<u64, String> {
    let s = req(n, attr)?;
    parse_num(&s).ok_or_else(|| format!("<{}> {attr}={s:?} is not a number", n.tag_name().name()))
}

/// Decimal or 0x-prefixed hex.
pub fn parse_num(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

fn named(n: Node, value_attr: &str) -> Result<Named, String> {
    Ok(Named {
        name: req(n, "name")?,
        value: num(n, value_attr)?,
        symbol: opt(n, "symbol"),
        message: opt(n, "message"),
    })
}
