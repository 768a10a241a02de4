//! gate.man against the driver's event table, the provider GUID against the
//! name hash, the value maps against gate-core.

use etw_manifest::check::manifest;
use etw_manifest::guid::{format_guid, guid_from_name, parse_guid};
use etw_manifest::model::Manifest;
use etw_manifest::{check_manifest, MANIFEST_XML};
use gate_core::{Action, Reason};
use gate_driver::etw::{PROVIDER_GUID, PROVIDER_NAME, PROVIDER_TRAITS, SCHEMA};

fn problems_of(xml: &str) -> Vec<String> {
    match Manifest::parse(xml) {
        Ok(m) => check_manifest(&m),
        Err(e) => vec![e],
    }
}

#[test]
fn manifest_conforms_to_the_code() {
    let m = manifest().expect("gate.man parses");
    let problems = check_manifest(m);
    assert!(
        problems.is_empty(),
        "gate.man problems:\n{}",
        problems.join("\n")
    );
    assert_eq!(m.events.len(), SCHEMA.len());
}

#[test]
fn name_hash_test_vector_and_provider_guid() {
    assert_eq!(
        format_guid(&guid_from_name("MyProvider")),
        "b3864c38-4273-58c5-545b-8b3608343471"
    );
    assert_eq!(guid_from_name(PROVIDER_NAME), PROVIDER_GUID);
    assert_eq!(
        parse_guid("{86AB67BC-6C8B-5F93-F17B-9C54D7CF2666}").unwrap(),
        PROVIDER_GUID
    );
}

#[test]
fn tracelogging_crate_agrees_on_guid_and_provider_traits() {
    // Microsoft's tracelogging crate derives the same GUID from the name
    // and encodes the same provider-traits blob.
    tracelogging::define_provider!(TL_PROVIDER, "TcpFrontGate");
    let g = TL_PROVIDER.id();
    assert_eq!(g.to_bytes_le(), PROVIDER_GUID_BYTES_LE());
    assert_eq!(TL_PROVIDER.raw_meta(), &PROVIDER_TRAITS[..]);
}

#[allow(non_snake_case)]
fn PROVIDER_GUID_BYTES_LE() -> [u8; 16] {
    let g = PROVIDER_GUID;
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&g.Data1.to_le_bytes());
    b[4..6].copy_from_slice(&g.Data2.to_le_bytes());
    b[6..8].copy_from_slice(&g.Data3.to_le_bytes());
    b[8..].copy_from_slice(&g.Data4);
    b
}

#[test]
fn every_gate_core_action_and_reason_is_in_the_manifest_maps_by_name() {
    let m = manifest().unwrap();
    let name_of = |map: &str, v: u64| -> Option<String> {
        let vm = m.map(map)?;
        let (_, msg) = vm.entries.iter().find(|(x, _)| *x == v)?;
        m.string(msg).map(str::to_owned)
    };
    for r in Reason::ALL {
        assert_eq!(
            name_of("ReasonMap", r as u64).as_deref(),
            Some(r.name()),
            "{r:?}"
        );
        assert_eq!(
            name_of("ObservedReasonMap", r as u64).as_deref(),
            Some(r.name()),
            "{r:?}"
        );
    }
    for a in Action::ALL {
        assert_eq!(
            name_of("ActionMap", a as u64).as_deref(),
            Some(a.name()),
            "{a:?}"
        );
    }
}

#[test]
fn counters_event_has_one_field_per_reason_and_event() {
    let counters = SCHEMA.iter().find(|e| e.name == "Counters").unwrap();
    let camel = |s: &str| -> String {
        s.split('_')
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            })
            .collect()
    };
    for r in Reason::ALL {
        let name = camel(r.name());
        assert!(
            counters.fields.iter().any(|f| f.name == name),
            "no Counters field {name}"
        );
    }
    for e in gate_core::telemetry::Event::ALL {
        let name = camel(e.name()) + "Events";
        assert!(
            counters.fields.iter().any(|f| f.name == name),
            "no Counters field {name}"
        );
    }
}

// The checks must be able to fail: each mutation of gate.man is reported.

fn assert_reported(mutated: &str, needle: &str) {
    let p = problems_of(mutated);
    assert!(
        p.iter().any(|x| x.contains(needle)),
        "expected a problem containing {needle:?}, got {p:#?}"
    );
}

#[test]
fn a_wrong_in_type_is_reported() {
    let x = MANIFEST_XML.replacen(
        r#"<data name="TokensLeftMilli" inType="win:UInt32"/>"#,
        r#"<data name="TokensLeftMilli" inType="win:UInt64"/>"#,
        1,
    );
    assert_ne!(x, MANIFEST_XML);
    assert_reported(&x, "TokensLeftMilli");
}

#[test]
fn a_missing_length_field_is_reported() {
    let x = MANIFEST_XML.replacen(r#"<data name="KeyLength" inType="win:UInt16"/>"#, "", 1);
    assert_ne!(x, MANIFEST_XML);
    assert_reported(&x, "KeyLength");
}

#[test]
fn a_duplicate_event_id_is_reported() {
    let x = MANIFEST_XML.replacen(r#"<event value="2" "#, r#"<event value="1" "#, 1);
    assert_ne!(x, MANIFEST_XML);
    assert_reported(&x, "event value 1 used twice");
}

#[test]
fn a_wrong_guid_is_reported() {
    let x = MANIFEST_XML.replacen("86AB67BC", "86AB67BD", 1);
    assert_ne!(x, MANIFEST_XML);
    assert_reported(&x, "provider guid");
}

#[test]
fn a_renamed_reason_is_reported() {
    let x = MANIFEST_XML.replacen(r#"value="rate_exceeded""#, r#"value="too_fast""#, 1);
    assert_ne!(x, MANIFEST_XML);
    assert_reported(&x, "map ReasonMap");
}

#[test]
fn undefined_references_are_reported() {
    let x = MANIFEST_XML.replacen(r#"keywords="Reject""#, r#"keywords="Rejects""#, 1);
    assert_reported(&x, "keyword \"Rejects\" not defined");
    let x = MANIFEST_XML.replacen(r#"map="CloseCauseMap""#, r#"map="CauseMap""#, 1);
    assert_reported(&x, "undefined map \"CauseMap\"");
    let x = MANIFEST_XML.replacen(r#"level="win:Warning""#, r#"level="win:Warn""#, 1);
    assert_reported(&x, "level \"win:Warn\" not defined");
    let x = MANIFEST_XML.replacen(r#"template="T_Counters""#, r#"template="T_Counter""#, 1);
    assert_reported(&x, "template \"T_Counter\" not defined");
}

#[test]
fn an_illegal_symbol_and_a_bad_keyword_mask_are_reported() {
    let x = MANIFEST_XML.replacen(r#"symbol="ListenerUp""#, r#"symbol="Listener-Up""#, 1);
    assert_reported(&x, "not a C symbol");
    let x = MANIFEST_XML.replacen(r#"mask="0x40""#, r#"mask="0x60""#, 1);
    assert_reported(&x, "must be one bit");
}

#[test]
fn malformed_xml_is_reported() {
    let p = problems_of(&MANIFEST_XML.replacen("</templates>", "", 1));
    assert!(p.len() == 1 && p[0].contains("not well-formed"), "{p:?}");
}

#[test]
fn channel_mistakes_are_reported() {
    // An event moved to another channel than the code's.
    let x = MANIFEST_XML.replacen(
        r#"symbol="ConfigRejected" level="win:Error" task="Config" opcode="win:Info" channel="Admin""#,
        r#"symbol="ConfigRejected" level="win:Error" task="Config" opcode="win:Info" channel="Operational""#,
        1,
    );
    assert_ne!(x, MANIFEST_XML);
    assert_reported(&x, "event ConfigRejected (id 11): manifest channel");
    // An event that loses its channel.
    let x = MANIFEST_XML.replacen(
        r#" opcode="win:Start" channel="Operational""#,
        r#" opcode="win:Start""#,
        1,
    );
    assert_ne!(x, MANIFEST_XML);
    assert_reported(&x, "manifest channel None");
    // Channels declared in the other order: their keyword bits swap.
    let admin = r#"<channel chid="Admin" name="TcpFrontGate/Admin" type="Admin" enabled="true" value="16" symbol="CHANNEL_ADMIN" message="$(string.Channel.Admin)"/>"#;
    let oper = r#"<channel chid="Operational" name="TcpFrontGate/Operational" type="Operational" enabled="true" value="17" symbol="CHANNEL_OPERATIONAL" message="$(string.Channel.Operational)"/>"#;
    assert!(MANIFEST_XML.contains(admin) && MANIFEST_XML.contains(oper));
    let x = MANIFEST_XML
        .replacen(admin, "@@A@@", 1)
        .replacen(oper, admin, 1)
        .replacen("@@A@@", oper, 1);
    assert_reported(&x, "in manifest order");
    assert_reported(
        &x,
        "manifest keywords with the channel bit 0x4000000000000020",
    );
    // A reserved channel value, a disabled channel, an undeclared one.
    assert_reported(
        &MANIFEST_XML.replacen(r#"value="16""#, r#"value="8""#, 1),
        "must be 16..=255",
    );
    assert_reported(
        &MANIFEST_XML.replacen(
            r#"type="Admin" enabled="true""#,
            r#"type="Admin" enabled="false""#,
            1,
        ),
        "enabled=Some(\"false\")",
    );
    assert_reported(
        &MANIFEST_XML.replacen(
            r#"channel="Admin"
"#,
            r#"channel="Admn"
"#,
            1,
        ),
        "channel \"Admn\" not defined",
    );
    // A verbose event on the Admin channel.
    let x = MANIFEST_XML.replacen(
        r#"symbol="ListenerClosed" level="win:Warning""#,
        r#"symbol="ListenerClosed" level="win:Verbose""#,
        1,
    );
    assert_reported(&x, "level win:Verbose on Admin channel");
}
