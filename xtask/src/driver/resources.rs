//! The resource rules of an image: its message table (RT_MESSAGETABLE) and
//! version resource (RT_VERSION) are present and well formed, parsed from
//! the bytes of the file (the `object` crate reads the resource directory;
//! the two formats are parsed here).
//!
//! - Message table (`MESSAGE_RESOURCE_DATA`, winnt.h): a block count, then
//!   blocks `(LowId, HighId, OffsetToEntries)`, each id's entry `(Length,
//!   Flags, Text)`; every block and entry lies inside the resource, Length
//!   is at least 4 and a multiple of 2 for Unicode (Flags 1) text, the text
//!   is NUL-terminated, every id the code writes is there with non-empty
//!   text.
//! - Version (`VS_VERSIONINFO`, verrsrc.h): the root node `VS_VERSION_INFO`
//!   with a `VS_FIXEDFILEINFO` (signature 0xFEEF04BD) whose file and
//!   product versions equal the Cargo version, and a `StringFileInfo`
//!   table with CompanyName, FileDescription, FileVersion (the Cargo
//!   version), OriginalFilename (the file's name), ProductName and
//!   ProductVersion, all non-empty; FileType as expected (VFT_DRV 3 for a
//!   driver, VFT_APP 1 for a program).
//!
//! Every failure is a message naming the bad value.

use object::pe;
use object::read::pe::{ImageNtHeaders, ResourceDirectory, ResourceDirectoryEntryData};
use object::LittleEndian as LE;

/// RT_MESSAGETABLE and RT_VERSION (winuser.h).
pub const RT_MESSAGETABLE: u16 = 11;
pub const RT_VERSION: u16 = 16;
/// VS_FIXEDFILEINFO.dwSignature.
const FIXED_SIGNATURE: u32 = 0xFEEF_04BD;

/// What the resources must say.
#[derive(Clone, Debug)]
pub struct ExpectedResources<'a> {
    /// Cargo version `major.minor.patch`.
    pub version: &'a str,
    /// OriginalFilename, e.g. `gate.sys`.
    pub file_name: &'a str,
    /// VS_FIXEDFILEINFO.dwFileType (3 driver, 1 program).
    pub file_type: u32,
    /// Message ids the code writes (empty: no message table required).
    pub message_ids: &'a [u32],
}

/// What was found, for the report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceSummary {
    /// (id, text) of every message.
    pub messages: Vec<(u32, String)>,
    /// (key, value) of the StringFileInfo table.
    pub strings: Vec<(String, String)>,
    /// File version from VS_FIXEDFILEINFO, as `a.b.c.d`.
    pub file_version: String,
}

/// Checks the resources of a PE image (PE32+), with `T` its NT headers type.
pub fn check_image<T: ImageNtHeaders>(
    image: &[u8],
    expected: &ExpectedResources,
) -> Result<ResourceSummary, Vec<String>> {
    let file = object::read::pe::PeFile::<T>::parse(image)
        .map_err(|e| vec![format!("not a readable PE image: {e}")])?;
    let sections = file.section_table();
    let dir = match file.data_directories().resource_directory(image, &sections) {
        Ok(Some(d)) => d,
        Ok(None) => return Err(vec!["has no resource directory".into()]),
        Err(e) => return Err(vec![format!("resource directory: {e}")]),
    };
    let mut problems = Vec::new();
    let mut summary = ResourceSummary::default();
    let lookup = |ty: u16| -> Result<Option<Vec<u8>>, String> {
        let Some(entry) = first_data(dir, ty).map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let rva = entry.offset_to_data.get(LE);
        let size = entry.size.get(LE) as usize;
        let bytes = sections
            .pe_data_at(image, rva)
            .and_then(|d| d.get(..size))
            .ok_or_else(|| {
                format!("resource data at RVA {rva:#x} ({size} bytes) is outside the file")
            })?;
        Ok(Some(bytes.to_vec()))
    };
    if !expected.message_ids.is_empty() {
        match lookup(RT_MESSAGETABLE) {
            Ok(Some(bytes)) => match parse_message_table(&bytes) {
                Ok(messages) => {
                    for id in expected.message_ids {
                        match messages.iter().find(|(m, _)| m == id) {
                            None => problems.push(format!(
                                "message table lacks id {id:#010x}, which the driver writes"
                            )),
                            Some((_, t)) if t.trim().is_empty() => {
                                problems.push(format!("message {id:#010x} has no text"))
                            }
                            Some(_) => {}
                        }
                    }
                    summary.messages = messages;
                }
                Err(e) => problems.push(format!("message table: {e}")),
            },
            Ok(None) => problems.push("has no message table (RT_MESSAGETABLE)".into()),
            Err(e) => problems.push(format!("message table: {e}")),
        }
    }
    match lookup(RT_VERSION) {
        Ok(Some(bytes)) => match check_version(&bytes, expected) {
            Ok((version, strings)) => {
                summary.file_version = version;
                summary.strings = strings;
            }
            Err(mut e) => problems.append(&mut e),
        },
        Ok(None) => problems.push("has no version resource (RT_VERSION)".into()),
        Err(e) => problems.push(format!("version resource: {e}")),
    }
    if problems.is_empty() {
        Ok(summary)
    } else {
        Err(problems)
    }
}

/// The first data entry under type `ty` (any name, any language).
fn first_data(
    dir: ResourceDirectory<'_>,
    ty: u16,
) -> object::Result<Option<&pe::ImageResourceDataEntry>> {
    let root = dir.root()?;
    for t in root.entries {
        if t.name_or_id().id() != Some(ty) {
            continue;
        }
        let mut node = t.data(dir)?;
        // type -> name -> language -> data.
        for _ in 0..3 {
            match node {
                ResourceDirectoryEntryData::Table(table) => {
                    let Some(first) = table.entries.first() else {
                        return Ok(None);
                    };
                    node = first.data(dir)?;
                }
                ResourceDirectoryEntryData::Data(d) => return Ok(Some(d)),
            }
        }
        if let ResourceDirectoryEntryData::Data(d) = node {
            return Ok(Some(d));
        }
    }
    Ok(None)
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Parses `MESSAGE_RESOURCE_DATA` into (id, text) pairs.
pub fn parse_message_table(b: &[u8]) -> Result<Vec<(u32, String)>, String> {
    let blocks = u32_at(b, 0).ok_or("shorter than its block count")? as usize;
    if blocks == 0 {
        return Err("has no blocks".into());
    }
    let mut out = Vec::new();
    for i in 0..blocks {
        let at = 4 + i * 12;
        let (Some(low), Some(high), Some(offset)) =
            (u32_at(b, at), u32_at(b, at + 4), u32_at(b, at + 8))
        else {
            return Err(format!("block {i} lies past the end ({} bytes)", b.len()));
        };
        if low > high {
            return Err(format!("block {i}: LowId {low:#x} > HighId {high:#x}"));
        }
        if high - low > 0xFFFF {
            return Err(format!("block {i}: {} ids is implausible", high - low + 1));
        }
        let mut at = offset as usize;
        for id in low..=high {
            let (Some(len), Some(flags)) = (u16_at(b, at), u16_at(b, at + 2)) else {
                return Err(format!("message {id:#x}: entry at {at} lies past the end"));
            };
            let len = len as usize;
            if len < 4 {
                return Err(format!("message {id:#x}: entry length {len} < 4"));
            }
            let text = b.get(at + 4..at + len).ok_or_else(|| {
                format!("message {id:#x}: {len}-byte entry at {at} runs past the end")
            })?;
            let text = match flags {
                1 => {
                    if text.len() & 1 == 1 {
                        return Err(format!(
                            "message {id:#x}: odd Unicode length {}",
                            text.len()
                        ));
                    }
                    let units: Vec<u16> = text
                        .chunks_exact(2)
                        .map(|c| u16::from_le_bytes([c[0], c[1]]))
                        .collect();
                    let Some(end) = units.iter().position(|u| *u == 0) else {
                        return Err(format!("message {id:#x}: text is not NUL-terminated"));
                    };
                    String::from_utf16(&units[..end])
                        .map_err(|e| format!("message {id:#x}: {e}"))?
                }
                0 => {
                    let Some(end) = text.iter().position(|c| *c == 0) else {
                        return Err(format!("message {id:#x}: text is not NUL-terminated"));
                    };
                    String::from_utf8_lossy(&text[..end]).into_owned()
                }
                f => {
                    return Err(format!(
                        "message {id:#x}: flags {f:#x} (0 ANSI or 1 Unicode)"
                    ))
                }
            };
            out.push((id, text));
            at += len;
        }
    }
    Ok(out)
}

/// One version-resource node: key, value bytes, children bytes.
struct Node<'a> {
    key: String,
    /// wType: 1 text, 0 binary.
    text: bool,
    value: &'a [u8],
    children: &'a [u8],
    /// Bytes this node takes (wLength, 4-aligned).
    span: usize,
}

fn align4(x: usize) -> usize {
    (x + 3) & !3
}

fn node(b: &[u8]) -> Result<Node<'_>, String> {
    let len = u16_at(b, 0).ok_or("node header past the end")? as usize;
    let value_len = u16_at(b, 2).ok_or("node header past the end")? as usize;
    let ty = u16_at(b, 4).ok_or("node header past the end")?;
    if len < 6 || len > b.len() {
        return Err(format!("node length {len} outside its {} bytes", b.len()));
    }
    let b = &b[..len];
    let mut units = Vec::new();
    let mut at = 6;
    loop {
        let u = u16_at(b, at).ok_or("key not NUL-terminated")?;
        at += 2;
        if u == 0 {
            break;
        }
        units.push(u);
    }
    let key = String::from_utf16(&units).map_err(|e| format!("key: {e}"))?;
    let value_start = align4(at).min(len);
    // wValueLength counts WORDs for text values, bytes for binary ones.
    let value_bytes = if ty == 1 { value_len * 2 } else { value_len };
    let value_end = value_start + value_bytes;
    if value_end > len {
        return Err(format!(
            "{key}: {value_bytes}-byte value runs past the {len}-byte node"
        ));
    }
    let children_start = align4(value_end).min(len);
    Ok(Node {
        key,
        text: ty == 1,
        value: &b[value_start..value_end],
        children: &b[children_start..],
        span: align4(len),
    })
}

fn children(b: &[u8]) -> Result<Vec<Node<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = b;
    while rest.len() >= 6 {
        let n = node(rest)?;
        let span = n.span.min(rest.len());
        out.push(n);
        rest = &rest[span..];
    }
    Ok(out)
}

fn text_value(n: &Node) -> String {
    let units: Vec<u16> = n
        .value
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|u| *u != 0)
        .collect();
    String::from_utf16_lossy(&units)
}

/// (key, value) pairs of a StringFileInfo table.
pub type VersionStrings = Vec<(String, String)>;

/// Checks `VS_VERSIONINFO`; returns the file version and the strings.
pub fn check_version(
    b: &[u8],
    expected: &ExpectedResources,
) -> Result<(String, VersionStrings), Vec<String>> {
    let root = node(b).map_err(|e| vec![format!("version resource: {e}")])?;
    let mut p = Vec::new();
    if root.key != "VS_VERSION_INFO" {
        p.push(format!(
            "version resource root is {:?}, not VS_VERSION_INFO",
            root.key
        ));
    }
    let f = |i: usize| u32_at(root.value, i * 4);
    let (Some(sig), Some(fms), Some(fls), Some(pms), Some(pls), Some(ftype)) =
        (f(0), f(2), f(3), f(4), f(5), f(9))
    else {
        return Err(vec![format!(
            "version resource: VS_FIXEDFILEINFO is {} bytes, not 52",
            root.value.len()
        )]);
    };
    if sig != FIXED_SIGNATURE {
        p.push(format!(
            "VS_FIXEDFILEINFO signature {sig:#010x}, not {FIXED_SIGNATURE:#010x}"
        ));
    }
    let quad =
        |ms: u32, ls: u32| format!("{}.{}.{}.{}", ms >> 16, ms & 0xFFFF, ls >> 16, ls & 0xFFFF);
    let want = format!("{}.0", expected.version);
    let file_version = quad(fms, fls);
    if file_version != want {
        p.push(format!(
            "FILEVERSION {file_version}, Cargo.toml says {want}"
        ));
    }
    let product_version = quad(pms, pls);
    if product_version != want {
        p.push(format!(
            "PRODUCTVERSION {product_version}, Cargo.toml says {want}"
        ));
    }
    if ftype != expected.file_type {
        p.push(format!(
            "FileType {ftype}, expected {} (3 driver, 1 program)",
            expected.file_type
        ));
    }
    let mut strings = Vec::new();
    match children(root.children) {
        Ok(kids) => {
            for k in kids.iter().filter(|k| k.key == "StringFileInfo") {
                match children(k.children) {
                    Ok(tables) => {
                        for t in tables {
                            match children(t.children) {
                                Ok(items) => strings.extend(
                                    items
                                        .iter()
                                        .filter(|i| i.text)
                                        .map(|i| (i.key.clone(), text_value(i))),
                                ),
                                Err(e) => p.push(format!("StringTable {}: {e}", t.key)),
                            }
                        }
                    }
                    Err(e) => p.push(format!("StringFileInfo: {e}")),
                }
            }
        }
        Err(e) => p.push(format!("version resource children: {e}")),
    }
    let get = |k: &str| {
        strings
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    };
    for key in [
        "CompanyName",
        "FileDescription",
        "FileVersion",
        "OriginalFilename",
        "ProductName",
        "ProductVersion",
    ] {
        match get(key) {
            None => p.push(format!("version strings lack {key}")),
            Some(v) if v.trim().is_empty() => p.push(format!("version string {key} is empty")),
            Some(_) => {}
        }
    }
    for key in ["FileVersion", "ProductVersion"] {
        if let Some(v) = get(key) {
            if v != expected.version {
                p.push(format!(
                    "version string {key} {v:?}, Cargo.toml says {:?}",
                    expected.version
                ));
            }
        }
    }
    if let Some(v) = get("OriginalFilename") {
        if !v.eq_ignore_ascii_case(expected.file_name) {
            p.push(format!(
                "OriginalFilename {v:?}, the file is {:?}",
                expected.file_name
            ));
        }
    }
    if p.is_empty() {
        Ok((file_version, strings))
    } else {
        Err(p)
    }
}

/// The message ids a windmc `.mc` file defines, as `windmc -c` computes
/// them: severity << 30 | customer bit (1 << 29) | facility << 16 | id,
/// severity and facility looked up in the file's SeverityNames and
/// FacilityNames.
pub fn mc_message_ids(mc: &str) -> Result<Vec<(String, u32)>, String> {
    fn names(mc: &str, table: &str) -> Vec<(String, u32)> {
        let Some(start) = mc.find(&format!("{table}=(")) else {
            return Vec::new();
        };
        let body = &mc[start + table.len() + 2..];
        let body = &body[..body.find(')').unwrap_or(body.len())];
        body.split_whitespace()
            .filter_map(|item| {
                let (name, rest) = item.split_once('=')?;
                let hex = rest.split(':').next()?.trim_start_matches("0x");
                Some((name.to_string(), u32::from_str_radix(hex, 16).ok()?))
            })
            .collect()
    }
    let severities = names(mc, "SeverityNames");
    let facilities = names(mc, "FacilityNames");
    let find = |list: &[(String, u32)], n: &str, what: &str| {
        list.iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| *v)
            .ok_or_else(|| format!("{what} {n:?} is not declared in the .mc file"))
    };
    let (mut id, mut sev, mut fac) = (None, 0u32, 0u32);
    let mut out = Vec::new();
    for line in mc.lines().filter(|l| !l.starts_with(';')) {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        match k.trim() {
            "MessageId" => {
                id = Some(
                    u32::from_str_radix(v.trim_start_matches("0x"), 16)
                        .map_err(|e| format!("MessageId {v:?}: {e}"))?,
                )
            }
            "Severity" => sev = find(&severities, v, "severity")?,
            "Facility" => fac = find(&facilities, v, "facility")?,
            "SymbolicName" => {
                let id = id.ok_or_else(|| format!("{v}: no MessageId before it"))?;
                out.push((v.to_string(), (sev << 30) | (1 << 29) | (fac << 16) | id));
            }
            _ => {}
        }
    }
    if out.is_empty() {
        return Err("no messages".into());
    }
    Ok(out)
}

/// The `version` of the `[package]` in a Cargo.toml text.
pub fn cargo_version(toml: &str) -> Option<String> {
    let mut in_package = false;
    for line in toml.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            in_package = t == "[package]";
            continue;
        }
        if in_package {
            if let Some(v) = t.strip_prefix("version") {
                let v = v.trim_start().strip_prefix('=')?.trim();
                return Some(v.trim_matches('"').to_string());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests;
