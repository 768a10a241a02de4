//! wpr-profiles/gate.wprp and gate.wpaProfile: well-formed, name the
//! gate's provider, and select the right events.

use etw_manifest::guid::{format_guid, parse_guid};
use etw_manifest::profiles::{EventProvider, Wprp};
use etw_manifest::{WPA_PROFILE_XML, WPRP_XML};
use gate_driver::etw::{keyword, EventSchema, PROVIDER_GUID, PROVIDER_NAME, SCHEMA};

fn wprp() -> Wprp {
    Wprp::parse(WPRP_XML).expect("gate.wprp parses")
}

fn is_gate(p: &EventProvider) -> bool {
    p.name == PROVIDER_NAME
        || p.name == format!("*{PROVIDER_NAME}")
        || parse_guid(&p.name).is_ok_and(|g| g == PROVIDER_GUID)
}

/// Events a session with this level and keyword mask receives.
fn selected(level: u8, mask: u64) -> Vec<&'static str> {
    SCHEMA
        .iter()
        .filter(|e: &&EventSchema| e.level <= level && (mask == 0 || e.keyword & mask != 0))
        .map(|e| e.name)
        .collect()
}

#[test]
fn all_four_profiles_exist_with_consistent_ids() {
    let w = wprp();
    for detail in ["Light", "Verbose"] {
        for mode in ["File", "Memory"] {
            let id = format!("TcpFrontGate.{detail}.{mode}");
            let p = w.profile(&id).unwrap_or_else(|| panic!("no profile {id}"));
            assert_eq!(
                format!("{}.{}.{}", p.name, p.detail_level, p.logging_mode),
                id
            );
            for c in &p.collectors {
                assert!(
                    w.collectors.contains_key(c),
                    "{id}: collector {c} undefined"
                );
            }
            for e in &p.event_providers {
                assert!(
                    w.event_providers.contains_key(e),
                    "{id}: provider {e} undefined"
                );
            }
            for s in &p.system_providers {
                assert!(
                    w.system_providers.contains_key(s),
                    "{id}: system provider {s} undefined"
                );
            }
        }
    }
}

#[test]
fn light_takes_rejects_aborts_listener_and_counters_but_no_accepts_or_pends() {
    let w = wprp();
    for mode in ["File", "Memory"] {
        let p = w.profile(&format!("TcpFrontGate.Light.{mode}")).unwrap();
        let gate: Vec<&EventProvider> = w
            .providers_of(p)
            .into_iter()
            .filter(|e| is_gate(e))
            .collect();
        assert_eq!(gate.len(), 1, "Light.{mode} must record the gate once");
        let g = gate[0];
        let mask = g.keywords.expect("Light sets keywords");
        assert_eq!(mask, keyword::LIGHT);
        assert_eq!(
            mask & (keyword::ACCEPT | keyword::PEND),
            0,
            "Light excludes accept/pend"
        );
        assert_ne!(mask & keyword::COUNTERS, 0, "Light includes counters");
        let events = selected(g.level.unwrap_or(5), mask);
        for want in [
            "ConnectionRejected",
            "ConnectionAborted",
            "ListenerClosed",
            "ListenerRecreated",
            "ListenerUp",
            "ListenerDown",
            "ConfigLoaded",
            "ConfigRejected",
            "Counters",
        ] {
            assert!(
                events.contains(&want),
                "Light.{mode} misses {want}: {events:?}"
            );
        }
        for not in ["ConnectionAccepted", "ConnectionPended", "PendCompleted"] {
            assert!(!events.contains(&not), "Light.{mode} takes {not}");
        }
        assert!(p.system_providers.is_empty(), "Light has no kernel logger");
    }
}

#[test]
fn verbose_takes_every_event_tcpip_afd_and_cpu_sampling() {
    let w = wprp();
    for mode in ["File", "Memory"] {
        let p = w.profile(&format!("TcpFrontGate.Verbose.{mode}")).unwrap();
        let providers = w.providers_of(p);
        let g = providers
            .iter()
            .find(|e| is_gate(e))
            .expect("gate provider");
        let events = selected(g.level.unwrap_or(5), g.keywords.unwrap_or(0));
        assert_eq!(
            events.len(),
            SCHEMA.len(),
            "Verbose.{mode} takes {events:?}"
        );
        for name in ["Microsoft-Windows-TCPIP", "Microsoft-Windows-Winsock-AFD"] {
            assert!(
                providers.iter().any(|e| e.name == name),
                "Verbose.{mode} lacks {name}"
            );
        }
        let sampling = p
            .system_providers
            .iter()
            .filter_map(|id| w.system_providers.get(id))
            .any(|s| {
                s.keywords.iter().any(|k| k == "SampledProfile")
                    && s.stacks.iter().any(|k| k == "SampledProfile")
            });
        assert!(sampling, "Verbose.{mode} has no CPU sampling with stacks");
    }
}

#[test]
fn the_gate_provider_is_named_by_its_guid() {
    let w = wprp();
    let gate: Vec<&EventProvider> = w.event_providers.values().filter(|e| is_gate(e)).collect();
    assert_eq!(gate.len(), 2);
    for g in gate {
        assert_eq!(g.name, format_guid(&PROVIDER_GUID));
    }
}

/// WPA's Generic Events number fields 1..N in payload order, a BINARY
/// field taking two (its synthesized length, then the bytes).
fn wpa_field(event: &str, field: &str) -> usize {
    let e = SCHEMA.iter().find(|e| e.name == event).unwrap();
    let mut n = 0;
    for f in e.fields {
        n += if f.ty.in_type() == gate_driver::etw::meta::in_type::BINARY {
            2
        } else {
            1
        };
        if f.name == field {
            return n;
        }
    }
    panic!("{event} has no {field}");
}

#[test]
fn wpa_profile_groups_the_gates_events_by_the_right_fields() {
    let doc = roxmltree::Document::parse(WPA_PROFILE_XML).expect("gate.wpaProfile is well-formed");
    let presets: Vec<roxmltree::Node> = doc
        .descendants()
        .filter(|n| n.has_tag_name(("http://tempuri.org/SerializableElement.xsd", "Preset")))
        .collect();
    assert_eq!(presets.len(), 2);
    for p in &presets {
        let filter = p.attribute("InitialFilterQuery").unwrap();
        assert!(
            filter.contains("[Provider Name]:=\"TcpFrontGate\""),
            "{filter}"
        );
    }
    let decisions = presets
        .iter()
        .find(|p| p.attribute("Name") == Some("TcpFrontGate decisions"))
        .unwrap();
    let key_count: usize = decisions
        .attribute("KeyColumnCount")
        .unwrap()
        .parse()
        .unwrap();
    let columns: Vec<(String, Option<String>)> = decisions
        .descendants()
        .filter(|n| n.tag_name().name() == "Column")
        .map(|c| {
            (
                c.attribute("Name").unwrap().to_owned(),
                c.attribute("DisplayName").map(str::to_owned),
            )
        })
        .collect();
    let grouping: Vec<&str> = columns[..key_count]
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(grouping[..2], ["Provider Name", "Task Name"]);
    // The named Field columns point at the right fields of the decision events.
    for (name, display) in &columns {
        if let Some(d) = display {
            let number: usize = name.strip_prefix("Field ").unwrap().parse().unwrap();
            for ev in ["ConnectionRejected", "ConnectionPended"] {
                assert_eq!(number, wpa_field(ev, d), "{ev}.{d}");
            }
        }
    }
    let displays: Vec<&str> = columns[..key_count]
        .iter()
        .filter_map(|(_, d)| d.as_deref())
        .collect();
    assert_eq!(displays, ["Action", "Reason", "Key"]);
    assert!(
        columns.iter().any(|(n, _)| n == "Count"),
        "a count to graph"
    );
    assert!(columns.iter().any(|(n, _)| n == "Time"), "a time axis");
    assert_eq!(wpa_field("ConnectionAccepted", "Action"), 5);
    assert_eq!(wpa_field("ConnectionAccepted", "Key"), 10);
    assert_eq!(wpa_field("Counters", "RateExceeded"), 5);
}
