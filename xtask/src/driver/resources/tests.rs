//! Hand-built message tables and version resources: the good ones parse,
//! each spoiled one fails naming what is wrong.

use super::*;
use object::pe;

fn msg_table(low: u32, texts: &[&str]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&low.to_le_bytes());
    b.extend_from_slice(&(low + texts.len() as u32 - 1).to_le_bytes());
    b.extend_from_slice(&16u32.to_le_bytes());
    for t in texts {
        let mut units: Vec<u16> = t.encode_utf16().collect();
        units.push(0);
        if units.len() & 1 == 1 {
            units.push(0);
        }
        let len = 4 + units.len() * 2;
        b.extend_from_slice(&(len as u16).to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        for u in units {
            b.extend_from_slice(&u.to_le_bytes());
        }
    }
    b
}

fn pad4(b: &mut Vec<u8>) {
    while b.len() & 3 != 0 {
        b.push(0);
    }
}

fn vnode(key: &str, text: bool, value: &[u8], children: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 6];
    for u in key.encode_utf16().chain([0]) {
        b.extend_from_slice(&u.to_le_bytes());
    }
    pad4(&mut b);
    b.extend_from_slice(value);
    if !children.is_empty() {
        pad4(&mut b);
        b.extend_from_slice(children);
    }
    let len = b.len() as u16;
    let vlen = if text { value.len() / 2 } else { value.len() } as u16;
    b[0..2].copy_from_slice(&len.to_le_bytes());
    b[2..4].copy_from_slice(&vlen.to_le_bytes());
    b[4..6].copy_from_slice(&u16::from(text).to_le_bytes());
    pad4(&mut b);
    b
}

fn wstr(s: &str) -> Vec<u8> {
    s.encode_utf16()
        .chain([0])
        .flat_map(|u| u.to_le_bytes())
        .collect()
}

fn version_blob(sig: u32, v: [u32; 4], file_type: u32, strings: &[(&str, &str)]) -> Vec<u8> {
    let mut fixed = Vec::new();
    let ms = (v[0] << 16) | v[1];
    let ls = (v[2] << 16) | v[3];
    for x in [
        sig, 0x10000, ms, ls, ms, ls, 0x3f, 0, 0x40004, file_type, 0, 0, 0,
    ] {
        fixed.extend_from_slice(&x.to_le_bytes());
    }
    let items: Vec<u8> = strings
        .iter()
        .flat_map(|(k, v)| vnode(k, true, &wstr(v), &[]))
        .collect();
    let table = vnode("040904B0", true, &[], &items);
    let sfi = vnode("StringFileInfo", true, &[], &table);
    vnode("VS_VERSION_INFO", false, &fixed, &sfi)
}

const GOOD: &[(&str, &str)] = &[
    ("CompanyName", "The gate project"),
    ("FileDescription", "gate kernel driver"),
    ("FileVersion", "0.1.0"),
    ("OriginalFilename", "gate.sys"),
    ("ProductName", "gate"),
    ("ProductVersion", "0.1.0"),
];

fn expected() -> ExpectedResources<'static> {
    ExpectedResources {
        version: "0.1.0",
        file_name: "gate.sys",
        file_type: 3,
        message_ids: &[0xE100_0001],
    }
}

#[test]
fn a_good_message_table_parses() {
    let m = parse_message_table(&msg_table(0xE100_0001, &["%1 did not start", "two"])).unwrap();
    assert_eq!(
        m,
        vec![
            (0xE100_0001, "%1 did not start".to_string()),
            (0xE100_0002, "two".to_string())
        ]
    );
}

#[test]
fn broken_message_tables_fail() {
    let good = msg_table(5, &["text"]);
    let err = |b: &[u8]| parse_message_table(b).unwrap_err();
    assert!(err(&good[..10]).contains("past the end"));
    let mut zero = good.clone();
    zero[0] = 0;
    assert!(err(&zero).contains("no blocks"));
    let mut swapped = good.clone();
    swapped[4..8].copy_from_slice(&9u32.to_le_bytes());
    assert!(err(&swapped).contains("LowId"));
    let mut short = good.clone();
    short[16] = 2;
    assert!(err(&short).contains("length 2 < 4"));
    let mut long = good.clone();
    long[16] = 200;
    assert!(err(&long).contains("runs past the end"));
    let mut no_nul = good.clone();
    let n = no_nul.len();
    no_nul[n - 4..].copy_from_slice(&[b'x', 0, b'y', 0]);
    assert!(err(&no_nul).contains("NUL"));
    let mut flags = good.clone();
    flags[18] = 7;
    assert!(err(&flags).contains("flags"));
}

#[test]
fn a_good_version_resource_passes() {
    let (v, strings) = check_version(
        &version_blob(FIXED_SIGNATURE, [0, 1, 0, 0], 3, GOOD),
        &expected(),
    )
    .unwrap();
    assert_eq!(v, "0.1.0.0");
    assert_eq!(strings.len(), GOOD.len());
    assert!(strings.contains(&("OriginalFilename".into(), "gate.sys".into())));
}

#[test]
fn spoiled_version_resources_fail_naming_the_value() {
    let fails = |b: Vec<u8>, says: &str| {
        let p = check_version(&b, &expected()).unwrap_err();
        assert!(
            p.iter().any(|x| x.contains(says)),
            "want {says:?} in {p:#?}"
        );
    };
    fails(version_blob(0xFEEF04BC, [0, 1, 0, 0], 3, GOOD), "signature");
    fails(
        version_blob(FIXED_SIGNATURE, [0, 2, 0, 0], 3, GOOD),
        "FILEVERSION 0.2.0.0, Cargo.toml says 0.1.0.0",
    );
    fails(
        version_blob(FIXED_SIGNATURE, [0, 1, 0, 0], 1, GOOD),
        "FileType 1",
    );
    let without: Vec<_> = GOOD
        .iter()
        .copied()
        .filter(|(k, _)| *k != "CompanyName")
        .collect();
    fails(
        version_blob(FIXED_SIGNATURE, [0, 1, 0, 0], 3, &without),
        "lack CompanyName",
    );
    let mut wrong = GOOD.to_vec();
    wrong[3] = ("OriginalFilename", "gatectl.exe");
    fails(
        version_blob(FIXED_SIGNATURE, [0, 1, 0, 0], 3, &wrong),
        "OriginalFilename \"gatectl.exe\"",
    );
    let mut empty = GOOD.to_vec();
    empty[1] = ("FileDescription", " ");
    fails(
        version_blob(FIXED_SIGNATURE, [0, 1, 0, 0], 3, &empty),
        "FileDescription is empty",
    );
    let mut b = version_blob(FIXED_SIGNATURE, [0, 1, 0, 0], 3, GOOD);
    b[0..2].copy_from_slice(&5000u16.to_le_bytes());
    fails(b, "node length 5000");
}

#[test]
fn cargo_version_reads_the_package_table() {
    let toml = "[workspace]\nversion = \"9\"\n[package]\nname = \"x\"\nversion = \"1.2.3\"\n[dependencies]\nversion = \"4\"\n";
    assert_eq!(cargo_version(toml).as_deref(), Some("1.2.3"));
    assert_eq!(cargo_version("[package]\nname = \"x\"\n"), None);
}

#[test]
fn message_ids_follow_windmc_c() {
    let mc = include_str!("../../../../gate-driver/res/gate.mc");
    assert_eq!(
        mc_message_ids(mc).unwrap(),
        vec![("GATE_CONFIG_REFUSED".to_string(), 0xE100_0001)]
    );
    let bad = mc.replace("Facility=Gate", "Facility=Gat");
    assert!(mc_message_ids(&bad).unwrap_err().contains("\"Gat\""));
}

// ---- whole images: the resource directory found through the PE headers

/// The .rsrc section bytes for `resources` (type id, data) at `rva`: one
/// name (id 1) and one language (0x409) per type. `size_fix` is added to
/// every data entry's Size (to point past the section).
fn rsrc(rva: u32, resources: &[(u16, Vec<u8>)], size_fix: u32) -> Vec<u8> {
    let n = resources.len();
    let dir = |entries: &[(u32, u32)]| {
        let mut b = vec![0u8; 12];
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        for (id, off) in entries {
            b.extend_from_slice(&id.to_le_bytes());
            b.extend_from_slice(&off.to_le_bytes());
        }
        b
    };
    let root_len = 16 + 8 * n as u32;
    let per = 24 + 24 + 16;
    let data_start = root_len + per * n as u32;
    let mut data_offsets = Vec::new();
    let mut at = data_start;
    for (_, d) in resources {
        data_offsets.push(at);
        at += (d.len() as u32 + 3) & !3;
    }
    let mut out = dir(&resources
        .iter()
        .enumerate()
        .map(|(i, (ty, _))| (u32::from(*ty), 0x8000_0000 | (root_len + per * i as u32)))
        .collect::<Vec<_>>());
    for (i, (_, d)) in resources.iter().enumerate() {
        let base = root_len + per * i as u32;
        out.extend(dir(&[(1, 0x8000_0000 | (base + 24))]));
        out.extend(dir(&[(0x409, base + 48)]));
        out.extend_from_slice(&(rva + data_offsets[i]).to_le_bytes());
        out.extend_from_slice(&(d.len() as u32 + size_fix).to_le_bytes());
        out.extend_from_slice(&[0u8; 8]);
    }
    for (_, d) in resources {
        out.extend_from_slice(d);
        while out.len() & 3 != 0 {
            out.push(0);
        }
    }
    out
}

/// A PE32+ image whose only section is .rsrc holding `resources`.
fn image(resources: Option<&[(u16, Vec<u8>)]>, size_fix: u32) -> Vec<u8> {
    use object::write::pe::{NtHeaders, Writer};
    let mut buf = Vec::new();
    let mut w = Writer::new(true, 0x1000, 0x200, &mut buf);
    w.reserve_dos_header_and_stub();
    w.reserve_nt_headers(16);
    w.reserve_section_headers(1);
    let len = rsrc(0, resources.unwrap_or(&[]), 0).len() as u32;
    let flags = pe::IMAGE_SCN_CNT_INITIALIZED_DATA | pe::IMAGE_SCN_MEM_READ;
    let sect = w.reserve_section(*b".rsrc\0\0\0", flags, len, len);
    let bytes = rsrc(sect.virtual_address, resources.unwrap_or(&[]), size_fix);
    if resources.is_some() {
        w.set_data_directory(
            pe::IMAGE_DIRECTORY_ENTRY_RESOURCE,
            sect.virtual_address,
            len,
        );
    }
    w.write_dos_header_and_stub().unwrap();
    w.write_nt_headers(NtHeaders {
        machine: pe::IMAGE_FILE_MACHINE_AMD64,
        time_date_stamp: 0,
        characteristics: pe::IMAGE_FILE_EXECUTABLE_IMAGE,
        major_linker_version: 14,
        minor_linker_version: 0,
        address_of_entry_point: 0,
        image_base: 0x1_4000_0000,
        major_operating_system_version: 10,
        minor_operating_system_version: 0,
        major_image_version: 0,
        minor_image_version: 0,
        major_subsystem_version: 10,
        minor_subsystem_version: 0,
        subsystem: pe::IMAGE_SUBSYSTEM_NATIVE,
        dll_characteristics: 0,
        size_of_stack_reserve: 0x40000,
        size_of_stack_commit: 0x1000,
        size_of_heap_reserve: 0x100000,
        size_of_heap_commit: 0x1000,
    });
    w.write_section_headers();
    w.write_section(sect.file_offset, &bytes);
    buf
}

fn check(img: &[u8]) -> Result<ResourceSummary, Vec<String>> {
    check_image::<pe::ImageNtHeaders64>(img, &expected())
}

fn good_resources() -> Vec<(u16, Vec<u8>)> {
    vec![
        (
            RT_MESSAGETABLE,
            msg_table(0xE100_0001, &["%1 did not start: %2"]),
        ),
        (
            RT_VERSION,
            version_blob(FIXED_SIGNATURE, [0, 1, 0, 0], 3, GOOD),
        ),
    ]
}

#[test]
fn an_image_with_both_resources_passes() {
    let s = check(&image(Some(&good_resources()), 0)).unwrap();
    assert_eq!(
        s.messages,
        vec![(0xE100_0001, "%1 did not start: %2".to_string())]
    );
    assert_eq!(s.file_version, "0.1.0.0");
}

#[test]
fn missing_or_broken_resources_fail_naming_what() {
    let has = |r: Result<ResourceSummary, Vec<String>>, says: &str| {
        let p = r.unwrap_err();
        assert!(
            p.iter().any(|x| x.contains(says)),
            "want {says:?} in {p:#?}"
        );
    };
    has(check(&image(None, 0)), "has no resource directory");
    let only_version: Vec<_> = good_resources().into_iter().skip(1).collect();
    has(
        check(&image(Some(&only_version), 0)),
        "has no message table",
    );
    let only_messages: Vec<_> = good_resources().into_iter().take(1).collect();
    has(
        check(&image(Some(&only_messages), 0)),
        "has no version resource",
    );
    let other_id = vec![
        (RT_MESSAGETABLE, msg_table(0xE100_0002, &["other"])),
        good_resources().remove(1),
    ];
    has(check(&image(Some(&other_id), 0)), "lacks id 0xe1000001");
    has(
        check(&image(Some(&good_resources()), 0x10000)),
        "outside the file",
    );
}
