//! Hand-built message tables and version resources: the good ones parse,
//! each spoiled one fails naming what is wrong.

use super::*;

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
