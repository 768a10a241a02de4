//! How TraceLogging types are spelled in a manifest, what `<data>` items a
//! field becomes, and the value maps as the code defines them.

use gate_core::{Action, Reason};
use gate_driver::etw::{
    CloseCause, FieldSchema, ListenerMode, RelayCause, RelaySide, FULL_TABLE_POLICY_NAMES,
    NO_OBSERVED_REASON,
};

use crate::model::Data;

/// Manifest inType name of a TraceLogging InType (flags removed).
pub fn manifest_in_type(tl_in: u8) -> Option<&'static str> {
    Some(match tl_in {
        1 => "win:UnicodeString",
        2 => "win:AnsiString",
        3 => "win:Int8",
        4 => "win:UInt8",
        5 => "win:Int16",
        6 => "win:UInt16",
        7 => "win:Int32",
        8 => "win:UInt32",
        9 => "win:Int64",
        10 => "win:UInt64",
        11 => "win:Float",
        12 => "win:Double",
        13 => "win:Boolean",
        14 => "win:Binary",
        15 => "win:GUID",
        17 => "win:FILETIME",
        18 => "win:SYSTEMTIME",
        19 => "win:SID",
        20 => "win:HexInt32",
        21 => "win:HexInt64",
        _ => return None,
    })
}

/// Manifest outType name of a TraceLogging OutType (0 = none given).
pub fn manifest_out_type(tl_out: u8) -> Option<Option<&'static str>> {
    Some(match tl_out {
        0 => None,
        2 => Some("xs:string"),
        3 => Some("xs:boolean"),
        4 => Some("win:HexInt32"),
        5 => Some("win:PID"),
        6 => Some("win:TID"),
        7 => Some("win:Port"),
        8 => Some("win:IPv4"),
        9 => Some("win:IPv6"),
        10 => Some("win:SocketAddress"),
        11 => Some("win:Xml"),
        12 => Some("win:Json"),
        13 => Some("win:Win32Error"),
        14 => Some("win:NTSTATUS"),
        15 => Some("win:HResult"),
        35 => Some("win:Utf8"),
        _ => return None,
    })
}

/// The `<data>` items a field must have in its template. A TraceLogging
/// BINARY field is a u16 byte count then the bytes, which a manifest spells
/// as two items: `<Name>Length` (UInt16) and `<Name>` (Binary,
/// `length="<Name>Length"`). TDH shows the count as "Name.Length" for
/// TraceLogging events.
pub fn expected_data(f: &FieldSchema) -> Result<Vec<Data>, String> {
    let in_type = manifest_in_type(f.ty.in_type()).ok_or_else(|| {
        format!(
            "field {}: InType {} has no manifest spelling",
            f.name,
            f.ty.in_type()
        )
    })?;
    let out_type = manifest_out_type(f.ty.out_type()).ok_or_else(|| {
        format!(
            "field {}: OutType {} has no manifest spelling",
            f.name,
            f.ty.out_type()
        )
    })?;
    let item = Data {
        name: f.name.to_owned(),
        in_type: in_type.to_owned(),
        out_type: out_type.map(str::to_owned),
        map: f.map.map(str::to_owned),
        length: None,
    };
    if f.ty.in_type() == gate_driver::etw::meta::in_type::BINARY {
        let len_name = format!("{}Length", f.name);
        Ok(vec![
            Data {
                name: len_name.clone(),
                in_type: "win:UInt16".to_owned(),
                out_type: None,
                map: None,
                length: None,
            },
            Data {
                length: Some(len_name),
                ..item
            },
        ])
    } else {
        Ok(vec![item])
    }
}

/// Level name in the manifest (the standard win: levels).
pub fn level_name(level: u8) -> Option<&'static str> {
    Some(match level {
        0 => "win:LogAlways",
        1 => "win:Critical",
        2 => "win:Error",
        3 => "win:Warning",
        4 => "win:Informational",
        5 => "win:Verbose",
        _ => return None,
    })
}

/// Value of a standard win: level name.
pub fn level_value(name: &str) -> Option<u8> {
    (0..=5).find(|&l| level_name(l) == Some(name))
}

/// Opcode name in the manifest (the standard win: opcodes the gate uses).
pub fn opcode_name(opcode: u8) -> Option<&'static str> {
    Some(match opcode {
        0 => "win:Info",
        1 => "win:Start",
        2 => "win:Stop",
        _ => return None,
    })
}

/// Value of a standard win: opcode name.
pub fn opcode_value(name: &str) -> Option<u8> {
    (0..=2).find(|&o| opcode_name(o) == Some(name))
}

/// A value map as the code defines it: (map name, [(value, name)]).
pub type CodeMap = (&'static str, Vec<(u64, &'static str)>);

/// Every value map the code's fields refer to, from the code itself
/// (gate-core's `Action`/`Reason`, the driver's close causes and modes).
pub fn code_maps() -> Vec<CodeMap> {
    let reasons: Vec<(u64, &str)> = Reason::ALL.iter().map(|r| (*r as u64, r.name())).collect();
    let mut observed = reasons.clone();
    observed.push((u64::from(NO_OBSERVED_REASON), "none"));
    vec![
        (
            "ActionMap",
            Action::ALL.iter().map(|a| (*a as u64, a.name())).collect(),
        ),
        ("ReasonMap", reasons),
        ("ObservedReasonMap", observed),
        (
            "CloseCauseMap",
            CloseCause::ALL
                .iter()
                .map(|c| (*c as u64, c.name()))
                .collect(),
        ),
        (
            "ListenerModeMap",
            ListenerMode::ALL
                .iter()
                .map(|m| (*m as u64, m.name()))
                .collect(),
        ),
        (
            "RelayCauseMap",
            RelayCause::ALL
                .iter()
                .map(|c| (*c as u64, c.name()))
                .collect(),
        ),
        (
            "RelaySideMap",
            RelaySide::ALL
                .iter()
                .map(|c| (*c as u64, c.name()))
                .collect(),
        ),
        (
            "FullTablePolicyMap",
            FULL_TABLE_POLICY_NAMES
                .iter()
                .map(|(v, n)| (u64::from(*v), *n))
                .collect(),
        ),
    ]
}

/// The code's map named `name`.
pub fn code_map(name: &str) -> Option<CodeMap> {
    code_maps().into_iter().find(|(n, _)| *n == name)
}

/// A legal manifest/C symbol: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_c_symbol(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
