//! Deliberately bad images, built with `object::write::pe`, each breaking one
//! rule; the good image passes.

use super::*;
use object::write::pe::{NtHeaders, Writer};

const NP: u32 = pe::IMAGE_SCN_MEM_NOT_PAGED;
const TEXT: u32 = pe::IMAGE_SCN_CNT_CODE | pe::IMAGE_SCN_MEM_EXECUTE | pe::IMAGE_SCN_MEM_READ | NP;
const RDATA: u32 = pe::IMAGE_SCN_CNT_INITIALIZED_DATA | pe::IMAGE_SCN_MEM_READ | NP;
const DATA: u32 = RDATA | pe::IMAGE_SCN_MEM_WRITE;

enum Imp {
    Name(&'static str),
    Ordinal(u16),
}

/// A tiny image: .text (entry), .rdata (imports), .data (one relocated
/// pointer), .reloc, plus extra sections; every field can be spoiled.
struct Spec {
    machine: u16,
    subsystem: u16,
    dll_characteristics: u16,
    entry_offset: u32,
    text_flags: u32,
    imports: Vec<(&'static str, Vec<Imp>)>,
    reloc: bool,
    extra: Vec<(&'static [u8], u32)>,
    checksum_delta: u32,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            machine: pe::IMAGE_FILE_MACHINE_AMD64,
            subsystem: pe::IMAGE_SUBSYSTEM_NATIVE,
            dll_characteristics: pe::IMAGE_DLLCHARACTERISTICS_FORCE_INTEGRITY
                | pe::IMAGE_DLLCHARACTERISTICS_NX_COMPAT
                | pe::IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE,
            entry_offset: 0,
            text_flags: TEXT,
            imports: vec![
                ("ntoskrnl.exe", vec![Imp::Name("KeBugCheckEx")]),
                ("NETIO.SYS", vec![Imp::Name("WskRegister")]),
            ],
            reloc: true,
            extra: Vec::new(),
            checksum_delta: 0,
        }
    }
}

const TEXT_RVA: u32 = 0x1000;

fn declared() -> KernelImports {
    KernelImports::from_pairs(&[
        ("KeBugCheckEx", "ntoskrnl.exe"),
        ("WskRegister", "netio.sys"),
        ("KfRaiseIrql", "hal.dll"),
    ])
}

/// The import directory for `imports` placed at `rva`: descriptors, then per
/// module the lookup table, the address table, the name and hint/names.
fn import_data(rva: u32, imports: &[(&str, Vec<Imp>)]) -> Vec<u8> {
    let desc_len = (imports.len() + 1) * 20;
    let mut descs = vec![0u8; desc_len];
    let mut tail: Vec<u8> = Vec::new();
    let at = |tail: &Vec<u8>| rva + (desc_len + tail.len()) as u32;
    for (i, (module, funcs)) in imports.iter().enumerate() {
        // Hint/name entries and the module name first, so thunks can point at them.
        let mut thunk_values = Vec::new();
        for f in funcs {
            match f {
                Imp::Name(n) => {
                    thunk_values.push(u64::from(at(&tail)));
                    tail.extend_from_slice(&0u16.to_le_bytes());
                    tail.extend_from_slice(n.as_bytes());
                    tail.push(0);
                    if tail.len() % 2 == 1 {
                        tail.push(0);
                    }
                }
                Imp::Ordinal(o) => thunk_values.push(pe::IMAGE_ORDINAL_FLAG64 | u64::from(*o)),
            }
        }
        let name_rva = at(&tail);
        tail.extend_from_slice(module.as_bytes());
        tail.push(0);
        while !(desc_len + tail.len()).is_multiple_of(8) {
            tail.push(0);
        }
        let table = |tail: &mut Vec<u8>| {
            let start = at(tail);
            for v in &thunk_values {
                tail.extend_from_slice(&v.to_le_bytes());
            }
            tail.extend_from_slice(&0u64.to_le_bytes());
            start
        };
        let ilt = table(&mut tail);
        let iat = table(&mut tail);
        let d = &mut descs[i * 20..i * 20 + 20];
        d[0..4].copy_from_slice(&ilt.to_le_bytes());
        d[12..16].copy_from_slice(&name_rva.to_le_bytes());
        d[16..20].copy_from_slice(&iat.to_le_bytes());
    }
    descs.extend_from_slice(&tail);
    descs
}

fn build(spec: &Spec) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = Writer::new(true, 0x1000, 0x200, &mut buf);
    w.reserve_dos_header_and_stub();
    w.reserve_nt_headers(16);
    let sections = 3 + u16::from(spec.reloc) + spec.extra.len() as u16;
    w.reserve_section_headers(sections);

    let code = [0xc3u8; 16];
    let text = w.reserve_section(*b".text\0\0\0", spec.text_flags, 16, 16);
    assert_eq!(text.virtual_address, TEXT_RVA);
    // The import data's size does not depend on where it is placed.
    let idata_len = import_data(0, &spec.imports).len() as u32;
    let rdata = w.reserve_section(*b".rdata\0\0", RDATA, idata_len, idata_len);
    let idata = import_data(rdata.virtual_address, &spec.imports);
    w.set_data_directory(
        pe::IMAGE_DIRECTORY_ENTRY_IMPORT,
        rdata.virtual_address,
        idata_len,
    );
    let data = w.reserve_section(*b".data\0\0\0", DATA, 8, 8);
    let pointer = (0x1_4000_0000u64 + u64::from(TEXT_RVA)).to_le_bytes();
    let mut extras = Vec::new();
    for (name, flags) in &spec.extra {
        let mut n = [0u8; 8];
        n[..name.len()].copy_from_slice(name);
        extras.push(w.reserve_section(n, *flags, 16, 16));
    }
    if spec.reloc {
        w.add_reloc(data.virtual_address, pe::IMAGE_REL_BASED_DIR64);
        w.reserve_reloc_section();
    }

    w.write_dos_header_and_stub().unwrap();
    w.write_nt_headers(NtHeaders {
        machine: spec.machine,
        time_date_stamp: 0,
        characteristics: pe::IMAGE_FILE_EXECUTABLE_IMAGE | pe::IMAGE_FILE_LARGE_ADDRESS_AWARE,
        major_linker_version: 14,
        minor_linker_version: 0,
        address_of_entry_point: TEXT_RVA + spec.entry_offset,
        image_base: 0x1_4000_0000,
        major_operating_system_version: 10,
        minor_operating_system_version: 0,
        major_image_version: 0,
        minor_image_version: 0,
        major_subsystem_version: 10,
        minor_subsystem_version: 0,
        subsystem: spec.subsystem,
        dll_characteristics: spec.dll_characteristics,
        size_of_stack_reserve: 0x40000,
        size_of_stack_commit: 0x1000,
        size_of_heap_reserve: 0x100000,
        size_of_heap_commit: 0x1000,
    });
    w.write_section_headers();
    w.write_section(text.file_offset, &code);
    w.write_section(rdata.file_offset, &idata);
    w.write_section(data.file_offset, &pointer);
    for e in &extras {
        w.write_section(e.file_offset, &[0u8; 16]);
    }
    w.write_reloc_section();

    let file = PeFile64::parse(&buf[..]).unwrap();
    let at = checksum_offset(&file);
    let sum = pe_checksum(&buf, at).wrapping_add(spec.checksum_delta);
    buf[at..at + 4].copy_from_slice(&sum.to_le_bytes());
    buf
}

fn problems(spec: &Spec) -> Vec<Problem> {
    let image = build(spec);
    let imports = declared();
    let expected = Expected {
        entry_rva: TEXT_RVA,
        imports: &imports,
    };
    match check(&image, &expected) {
        Ok(_) => Vec::new(),
        Err(p) => p,
    }
}

/// The check fails with exactly `want`, and its message contains `says`.
fn fails_with(spec: Spec, want: Problem, says: &str) {
    let got = problems(&spec);
    assert_eq!(got, vec![want], "problems: {got:?}");
    let text = got[0].to_string();
    assert!(text.contains(says), "message {text:?} lacks {says:?}");
}

#[test]
fn the_good_image_passes_and_is_summarised() {
    let image = build(&Spec::default());
    let imports = declared();
    let s = check(
        &image,
        &Expected {
            entry_rva: TEXT_RVA,
            imports: &imports,
        },
    )
    .unwrap();
    assert_eq!(s.size, image.len());
    assert_ne!(s.checksum, 0);
    assert_eq!(
        s.sections,
        vec![
            ".text R-X NOT_PAGED",
            ".rdata R-- NOT_PAGED",
            ".data RW- NOT_PAGED",
            ".reloc R-- DISCARDABLE"
        ]
    );
    assert_eq!(
        s.imports,
        vec![
            ("ntoskrnl.exe".to_string(), "KeBugCheckEx".to_string()),
            ("netio.sys".to_string(), "WskRegister".to_string())
        ]
    );
}

#[test]
fn a_user32_import_fails_naming_the_dll_and_function() {
    let mut spec = Spec::default();
    spec.imports
        .push(("USER32.dll", vec![Imp::Name("MessageBoxW")]));
    fails_with(
        spec,
        Problem::ForeignModule {
            module: "user32.dll".into(),
            user_mode: true,
            functions: vec!["MessageBoxW".into()],
        },
        "imports from user32.dll, a user-mode DLL (MessageBoxW)",
    );
}

#[test]
fn an_unknown_kernel_module_fails() {
    let mut spec = Spec::default();
    spec.imports
        .push(("fltmgr.sys", vec![Imp::Name("FltRegisterFilter")]));
    fails_with(
        spec,
        Problem::ForeignModule {
            module: "fltmgr.sys".into(),
            user_mode: false,
            functions: vec!["FltRegisterFilter".into()],
        },
        "imports from fltmgr.sys (FltRegisterFilter)",
    );
}

#[test]
fn an_undeclared_kernel_function_fails() {
    let mut spec = Spec::default();
    spec.imports[0].1.push(Imp::Name("ZwCreateFile"));
    fails_with(
        spec,
        Problem::UndeclaredImport {
            module: "ntoskrnl.exe".into(),
            function: "ZwCreateFile".into(),
        },
        "imports ZwCreateFile from ntoskrnl.exe, which gate-driver/ksys/src/imports.rs does not declare",
    );
}

#[test]
fn a_function_from_the_wrong_module_fails() {
    let mut spec = Spec::default();
    spec.imports
        .push(("hal.dll", vec![Imp::Name("KeBugCheckEx")]));
    fails_with(
        spec,
        Problem::WrongModule {
            function: "KeBugCheckEx".into(),
            module: "hal.dll".into(),
            declared: "ntoskrnl.exe".into(),
        },
        "imports KeBugCheckEx from hal.dll, but ksys declares it in ntoskrnl.exe",
    );
}

#[test]
fn an_import_by_ordinal_fails() {
    let mut spec = Spec::default();
    spec.imports[0].1.push(Imp::Ordinal(7));
    fails_with(
        spec,
        Problem::ImportByOrdinal {
            module: "ntoskrnl.exe".into(),
            ordinal: 7,
        },
        "imports ordinal 7 from ntoskrnl.exe",
    );
}

#[test]
fn a_writable_executable_section_fails() {
    let spec = Spec {
        text_flags: TEXT | pe::IMAGE_SCN_MEM_WRITE,
        ..Spec::default()
    };
    fails_with(
        spec,
        Problem::WritableExecutable {
            section: ".text".into(),
            characteristics: TEXT | pe::IMAGE_SCN_MEM_WRITE,
        },
        "section .text is both writable and executable",
    );
}

#[test]
fn a_wrong_checksum_fails_showing_both_values() {
    let good = build(&Spec::default());
    let file = PeFile64::parse(&good[..]).unwrap();
    let computed = pe_checksum(&good, checksum_offset(&file));
    let spec = Spec {
        checksum_delta: 1,
        ..Spec::default()
    };
    let stored = computed.wrapping_add(1);
    fails_with(
        spec,
        Problem::Checksum { stored, computed },
        &format!("PE checksum stored {stored:#010x} but the file sums to {computed:#010x}"),
    );
}

#[test]
fn a_flipped_byte_breaks_the_checksum() {
    let mut image = build(&Spec::default());
    let last = image.len() - 1;
    image[last] ^= 0x5a;
    let imports = declared();
    let got = check(
        &image,
        &Expected {
            entry_rva: TEXT_RVA,
            imports: &imports,
        },
    )
    .unwrap_err();
    assert!(
        matches!(got.as_slice(), [Problem::Checksum { .. }]),
        "{got:?}"
    );
}

#[test]
fn the_checksum_matches_a_known_value() {
    // 4 bytes of checksum field skipped; words 0x0201 + 0x0403 + 0x0005
    // (odd tail) = 0x0609, plus the length 9 (offset 4..8 skipped).
    let bytes = [1u8, 2, 3, 4, 0xff, 0xff, 0xff, 0xff, 5];
    assert_eq!(pe_checksum(&bytes, 4), 0x0201 + 0x0403 + 0x0005 + 9);
    // End-around carry: 0xffff + 0x0002 = 0x1_0001 -> 0x0002.
    let carry = [0xffu8, 0xff, 2, 0];
    assert_eq!(pe_checksum(&carry, 100), 0x0001 + 0x0001 + 4);
}

#[test]
fn a_missing_reloc_section_fails() {
    let spec = Spec {
        reloc: false,
        ..Spec::default()
    };
    fails_with(spec, Problem::NoRelocations, "no .reloc section");
}

#[test]
fn a_pageable_section_fails() {
    let spec = Spec {
        text_flags: TEXT & !NP,
        ..Spec::default()
    };
    fails_with(
        spec,
        Problem::Pageable {
            section: ".text".into(),
            characteristics: TEXT & !NP,
        },
        "section .text is not marked NOT_PAGED",
    );
}

#[test]
fn a_page_section_fails_even_if_marked_not_paged() {
    let spec = Spec {
        extra: vec![(b"PAGE", TEXT)],
        ..Spec::default()
    };
    fails_with(
        spec,
        Problem::PagedByName {
            section: "PAGE".into(),
        },
        "section PAGE is named PAGE*",
    );
}

#[test]
fn a_discardable_code_section_fails_but_init_is_allowed() {
    let discard = TEXT | pe::IMAGE_SCN_MEM_DISCARDABLE;
    let spec = Spec {
        extra: vec![(b".text2", discard)],
        ..Spec::default()
    };
    fails_with(
        spec,
        Problem::Discardable {
            section: ".text2".into(),
        },
        "section .text2 is discardable",
    );
    let init = Spec {
        extra: vec![(b"INIT", discard & !NP)],
        ..Spec::default()
    };
    assert_eq!(problems(&init), vec![]);
}

#[test]
fn a_console_subsystem_fails() {
    let spec = Spec {
        subsystem: pe::IMAGE_SUBSYSTEM_WINDOWS_CUI,
        ..Spec::default()
    };
    fails_with(
        spec,
        Problem::Subsystem { subsystem: 3 },
        "subsystem is 3, not NATIVE (1)",
    );
}

#[test]
fn an_arm64_image_fails() {
    let spec = Spec {
        machine: pe::IMAGE_FILE_MACHINE_ARM64,
        ..Spec::default()
    };
    fails_with(
        spec,
        Problem::Machine { machine: 0xaa64 },
        "machine is 0xaa64, not AMD64",
    );
}

#[test]
fn missing_force_integrity_and_nx_fail() {
    let spec = Spec {
        dll_characteristics: pe::IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE,
        ..Spec::default()
    };
    assert_eq!(
        problems(&spec),
        vec![
            Problem::MissingDllCharacteristic {
                flag: "FORCE_INTEGRITY (0x80)",
                have: 0x40
            },
            Problem::MissingDllCharacteristic {
                flag: "NX_COMPAT (0x100)",
                have: 0x40
            },
        ]
    );
}

#[test]
fn an_entry_point_other_than_driver_entry_fails() {
    let spec = Spec {
        entry_offset: 4,
        ..Spec::default()
    };
    fails_with(
        spec,
        Problem::EntryPoint {
            entry: TEXT_RVA + 4,
            driver_entry: TEXT_RVA,
        },
        "entry point RVA 0x1004 is not DriverEntry (RVA 0x1000)",
    );
}

#[test]
fn a_pe32_image_fails() {
    let mut buf = Vec::new();
    let mut w = Writer::new(false, 0x1000, 0x200, &mut buf);
    w.reserve_dos_header_and_stub();
    w.reserve_nt_headers(16);
    w.reserve_section_headers(0);
    w.write_dos_header_and_stub().unwrap();
    w.write_nt_headers(NtHeaders {
        machine: pe::IMAGE_FILE_MACHINE_I386,
        time_date_stamp: 0,
        characteristics: 0,
        major_linker_version: 0,
        minor_linker_version: 0,
        address_of_entry_point: 0,
        image_base: 0x10000,
        major_operating_system_version: 0,
        minor_operating_system_version: 0,
        major_image_version: 0,
        minor_image_version: 0,
        major_subsystem_version: 0,
        minor_subsystem_version: 0,
        subsystem: pe::IMAGE_SUBSYSTEM_NATIVE,
        dll_characteristics: 0,
        size_of_stack_reserve: 0,
        size_of_stack_commit: 0,
        size_of_heap_reserve: 0,
        size_of_heap_commit: 0,
    });
    w.write_section_headers();
    let imports = declared();
    let got = check(
        &buf,
        &Expected {
            entry_rva: 0,
            imports: &imports,
        },
    )
    .unwrap_err();
    assert_eq!(got, vec![Problem::NotPe32Plus { magic: 0x10b }]);
    assert!(got[0].to_string().contains("not PE32+"));
}

#[test]
fn garbage_is_reported_unparsable() {
    let imports = declared();
    let got = check(
        b"MZ not really",
        &Expected {
            entry_rva: 0,
            imports: &imports,
        },
    )
    .unwrap_err();
    assert!(
        matches!(got.as_slice(), [Problem::Unparsable(_)]),
        "{got:?}"
    );
}
