//! The image check: the rules a gate.sys must pass to be an x64 kernel-mode
//! driver image that Windows loads, checked on the bytes of the file.
//!
//! Rules (each failure is a [`Problem`] naming the bad value):
//! - headers: PE32+ (optional-header magic 0x20b), machine AMD64, subsystem
//!   NATIVE (1), DllCharacteristics with FORCE_INTEGRITY (0x80, needed for a
//!   signed driver to be integrity-checked) and NX_COMPAT (0x100);
//! - the entry point RVA is the RVA of `DriverEntry` (taken from the PDB by
//!   the caller, see `pdb_symbols`);
//! - the PE checksum stored in the optional header equals the checksum
//!   recomputed over the file (the kernel loader refuses a driver whose
//!   checksum is wrong);
//! - imports: only from ntoskrnl.exe, hal.dll and netio.sys; only by name
//!   (no ordinals); every imported name is declared in
//!   `gate-driver/ksys/src/imports.rs` as coming from that same module; no
//!   delay-load imports; no TLS directory (user-mode only);
//! - sections: none both writable and executable; a `.reloc` section holding
//!   the base relocations (drivers are always relocated); every section is
//!   either discardable and named `.reloc`, `.rsrc` or `INIT*` (what the
//!   loader may drop after DriverEntry: relocations, resources, which only
//!   user-mode tools read from the file, and init code), or not
//!   discardable and marked
//!   IMAGE_SCN_MEM_NOT_PAGED (0x08000000) and not named `PAGE*` (the loader
//!   pages out sections named PAGE*; the driver's callbacks run at
//!   DISPATCH_LEVEL and touch all code and data).

use super::kernel_imports::KernelImports;
use object::pe;
use object::read::pe::{ImageNtHeaders, ImageOptionalHeader, Import, PeFile64};
use object::LittleEndian as LE;
use std::fmt;

/// The only modules a kernel driver of this project may import from.
pub const KERNEL_MODULES: [&str; 3] = ["ntoskrnl.exe", "hal.dll", "netio.sys"];

/// Well-known user-mode DLLs, named as such in the failure message.
const USER_MODE_MODULES: &[&str] = &[
    "kernel32.dll",
    "kernelbase.dll",
    "ntdll.dll",
    "user32.dll",
    "gdi32.dll",
    "advapi32.dll",
    "shell32.dll",
    "ole32.dll",
    "oleaut32.dll",
    "rpcrt4.dll",
    "ws2_32.dll",
    "bcrypt.dll",
    "msvcrt.dll",
    "ucrtbase.dll",
    "vcruntime140.dll",
];

/// What the image must match besides the fixed rules.
pub struct Expected<'a> {
    /// RVA of `DriverEntry`.
    pub entry_rva: u32,
    /// Imports the driver is known to use.
    pub imports: &'a KernelImports,
}

/// One broken rule, naming the bad value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    Unparsable(String),
    NotPe32Plus {
        magic: u16,
    },
    Machine {
        machine: u16,
    },
    Subsystem {
        subsystem: u16,
    },
    MissingDllCharacteristic {
        flag: &'static str,
        have: u16,
    },
    EntryPoint {
        entry: u32,
        driver_entry: u32,
    },
    Checksum {
        stored: u32,
        computed: u32,
    },
    ForeignModule {
        module: String,
        user_mode: bool,
        functions: Vec<String>,
    },
    ImportByOrdinal {
        module: String,
        ordinal: u16,
    },
    UndeclaredImport {
        module: String,
        function: String,
    },
    WrongModule {
        function: String,
        module: String,
        declared: String,
    },
    DelayImports,
    ThreadLocalStorage,
    WritableExecutable {
        section: String,
        characteristics: u32,
    },
    NoRelocations,
    Discardable {
        section: String,
    },
    Pageable {
        section: String,
        characteristics: u32,
    },
    PagedByName {
        section: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Unparsable(e) => write!(f, "not a readable PE image: {e}"),
            Problem::NotPe32Plus { magic } => {
                write!(f, "optional header magic is {magic:#x}, not PE32+ (0x20b)")
            }
            Problem::Machine { machine } => {
                write!(f, "machine is {machine:#x}, not AMD64 (0x8664)")
            }
            Problem::Subsystem { subsystem } => {
                write!(f, "subsystem is {subsystem}, not NATIVE (1)")
            }
            Problem::MissingDllCharacteristic { flag, have } => {
                write!(f, "DllCharacteristics {have:#06x} lack {flag}")
            }
            Problem::EntryPoint {
                entry,
                driver_entry,
            } => write!(
                f,
                "entry point RVA {entry:#x} is not DriverEntry (RVA {driver_entry:#x})"
            ),
            Problem::Checksum { stored, computed } => write!(
                f,
                "PE checksum stored {stored:#010x} but the file sums to {computed:#010x}"
            ),
            Problem::ForeignModule {
                module,
                user_mode,
                functions,
            } => write!(
                f,
                "imports from {module}{} ({}); a kernel driver may only import from {}",
                if *user_mode {
                    ", a user-mode DLL"
                } else {
                    ""
                },
                functions.join(", "),
                KERNEL_MODULES.join(", ")
            ),
            Problem::ImportByOrdinal { module, ordinal } => write!(
                f,
                "imports ordinal {ordinal} from {module}; imports must be by name"
            ),
            Problem::UndeclaredImport { module, function } => write!(
                f,
                "imports {function} from {module}, which gate-driver/ksys/src/imports.rs does not declare (declare it there so the simulation defines it too)"
            ),
            Problem::WrongModule {
                function,
                module,
                declared,
            } => write!(
                f,
                "imports {function} from {module}, but ksys declares it in {declared}"
            ),
            Problem::DelayImports => write!(
                f,
                "has delay-load imports; the kernel loader does not resolve them"
            ),
            Problem::ThreadLocalStorage => write!(
                f,
                "has a TLS directory; thread-local storage is user-mode only"
            ),
            Problem::WritableExecutable {
                section,
                characteristics,
            } => write!(
                f,
                "section {section} is both writable and executable (characteristics {characteristics:#010x})"
            ),
            Problem::NoRelocations => write!(
                f,
                "no .reloc section with base relocations; a driver must be relocatable"
            ),
            Problem::Discardable { section } => write!(
                f,
                "section {section} is discardable; only .reloc, .rsrc and INIT* may be"
            ),
            Problem::Pageable {
                section,
                characteristics,
            } => write!(
                f,
                "section {section} is not marked NOT_PAGED (characteristics {characteristics:#010x})"
            ),
            Problem::PagedByName { section } => write!(
                f,
                "section {section} is named PAGE*, so the loader makes it pageable"
            ),
        }
    }
}

/// What a passing image contains, for the report.
#[derive(Clone, Debug)]
pub struct Summary {
    pub size: usize,
    pub checksum: u32,
    /// `name flags` per section, e.g. `.text R-X NOT_PAGED`.
    pub sections: Vec<String>,
    /// `(module, function)` per import.
    pub imports: Vec<(String, String)>,
    /// Message table and version resource (checked by the caller, see
    /// `resources`).
    pub resources: Option<super::resources::ResourceSummary>,
}

/// Checks every rule; returns all broken ones.
pub fn check(image: &[u8], expected: &Expected) -> Result<Summary, Vec<Problem>> {
    let magic = match object::read::pe::optional_header_magic(image) {
        Ok(m) => m,
        Err(e) => return Err(vec![Problem::Unparsable(e.to_string())]),
    };
    if magic != pe::IMAGE_NT_OPTIONAL_HDR64_MAGIC {
        return Err(vec![Problem::NotPe32Plus { magic }]);
    }
    let file = match PeFile64::parse(image) {
        Ok(f) => f,
        Err(e) => return Err(vec![Problem::Unparsable(e.to_string())]),
    };
    let mut problems = Vec::new();
    let mut summary = Summary {
        size: image.len(),
        checksum: 0,
        sections: Vec::new(),
        imports: Vec::new(),
        resources: None,
    };
    check_headers(&file, expected, image, &mut problems, &mut summary);
    check_sections(&file, &mut problems, &mut summary);
    if let Err(e) = check_imports(&file, expected.imports, &mut problems, &mut summary) {
        problems.push(Problem::Unparsable(format!("import table: {e}")));
    }
    if problems.is_empty() {
        Ok(summary)
    } else {
        Err(problems)
    }
}

fn check_headers(
    file: &PeFile64,
    expected: &Expected,
    image: &[u8],
    problems: &mut Vec<Problem>,
    summary: &mut Summary,
) {
    let nt = file.nt_headers();
    let machine = nt.file_header().machine.get(LE);
    if machine != pe::IMAGE_FILE_MACHINE_AMD64 {
        problems.push(Problem::Machine { machine });
    }
    let opt = nt.optional_header();
    let subsystem = opt.subsystem();
    if subsystem != pe::IMAGE_SUBSYSTEM_NATIVE {
        problems.push(Problem::Subsystem { subsystem });
    }
    let have = opt.dll_characteristics();
    for (bit, flag) in [
        (
            pe::IMAGE_DLLCHARACTERISTICS_FORCE_INTEGRITY,
            "FORCE_INTEGRITY (0x80)",
        ),
        (pe::IMAGE_DLLCHARACTERISTICS_NX_COMPAT, "NX_COMPAT (0x100)"),
    ] {
        if have & bit == 0 {
            problems.push(Problem::MissingDllCharacteristic { flag, have });
        }
    }
    let entry = opt.address_of_entry_point();
    if entry != expected.entry_rva {
        problems.push(Problem::EntryPoint {
            entry,
            driver_entry: expected.entry_rva,
        });
    }
    let stored = opt.check_sum();
    let computed = pe_checksum(image, checksum_offset(file));
    summary.checksum = stored;
    if stored != computed {
        problems.push(Problem::Checksum { stored, computed });
    }
    let dirs = file.data_directories();
    let present = |id: usize| dirs.get(id).is_some_and(|d| d.size.get(LE) != 0);
    if present(pe::IMAGE_DIRECTORY_ENTRY_DELAY_IMPORT) {
        problems.push(Problem::DelayImports);
    }
    if present(pe::IMAGE_DIRECTORY_ENTRY_TLS) {
        problems.push(Problem::ThreadLocalStorage);
    }
    if !present(pe::IMAGE_DIRECTORY_ENTRY_BASERELOC) {
        problems.push(Problem::NoRelocations);
    }
}

/// File offset of `OptionalHeader.CheckSum`: e_lfanew + 4 (signature) +
/// 20 (file header) + 64.
pub fn checksum_offset(file: &PeFile64) -> usize {
    file.dos_header().nt_headers_offset() as usize + 4 + 20 + 64
}

/// The PE image checksum (imagehlp's CheckSumMappedFile): the file as
/// little-endian 16-bit words, the 4 checksum bytes skipped, summed with
/// end-around carry into 16 bits, plus the file length.
pub fn pe_checksum(image: &[u8], checksum_offset: usize) -> u32 {
    let mut sum: u64 = 0;
    for (i, pair) in image.chunks(2).enumerate() {
        let at = i * 2;
        if at >= checksum_offset && at < checksum_offset + 4 {
            continue;
        }
        let word = match pair {
            [lo, hi] => u16::from_le_bytes([*lo, *hi]),
            [lo] => u16::from(*lo),
            _ => 0,
        };
        sum += u64::from(word);
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum = (sum & 0xffff) + (sum >> 16);
    (sum as u32).wrapping_add(image.len() as u32)
}

fn section_flags(ch: u32) -> String {
    let bit = |b: u32, c: char| if ch & b != 0 { c } else { '-' };
    let mut s = String::new();
    s.push(bit(pe::IMAGE_SCN_MEM_READ, 'R'));
    s.push(bit(pe::IMAGE_SCN_MEM_WRITE, 'W'));
    s.push(bit(pe::IMAGE_SCN_MEM_EXECUTE, 'X'));
    if ch & pe::IMAGE_SCN_MEM_NOT_PAGED != 0 {
        s.push_str(" NOT_PAGED");
    }
    if ch & pe::IMAGE_SCN_MEM_DISCARDABLE != 0 {
        s.push_str(" DISCARDABLE");
    }
    s
}

fn check_sections(file: &PeFile64, problems: &mut Vec<Problem>, summary: &mut Summary) {
    let mut reloc_section = false;
    for header in file.section_table().iter() {
        let raw = header.raw_name();
        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        let name = String::from_utf8_lossy(&raw[..end]).into_owned();
        let ch = header.characteristics.get(LE);
        summary
            .sections
            .push(format!("{name} {}", section_flags(ch)));
        let writable = ch & pe::IMAGE_SCN_MEM_WRITE != 0;
        let executable = ch & pe::IMAGE_SCN_MEM_EXECUTE != 0;
        if writable && executable {
            problems.push(Problem::WritableExecutable {
                section: name.clone(),
                characteristics: ch,
            });
        }
        if name == ".reloc" {
            reloc_section = true;
        }
        if ch & pe::IMAGE_SCN_MEM_DISCARDABLE != 0 {
            if name != ".reloc" && name != ".rsrc" && !name.starts_with("INIT") {
                problems.push(Problem::Discardable { section: name });
            }
            continue;
        }
        if name.starts_with("PAGE") {
            problems.push(Problem::PagedByName {
                section: name.clone(),
            });
        }
        if ch & pe::IMAGE_SCN_MEM_NOT_PAGED == 0 {
            problems.push(Problem::Pageable {
                section: name,
                characteristics: ch,
            });
        }
    }
    if !reloc_section && !problems.contains(&Problem::NoRelocations) {
        problems.push(Problem::NoRelocations);
    }
}

fn check_imports(
    file: &PeFile64,
    declared: &KernelImports,
    problems: &mut Vec<Problem>,
    summary: &mut Summary,
) -> object::Result<()> {
    let Some(table) = file.import_table()? else {
        return Ok(());
    };
    let mut descriptors = table.descriptors()?;
    while let Some(desc) = descriptors.next()? {
        let module = String::from_utf8_lossy(table.name(desc.name.get(LE))?).to_ascii_lowercase();
        let first = match desc.original_first_thunk.get(LE) {
            0 => desc.first_thunk.get(LE),
            t => t,
        };
        let mut thunks = table.thunks(first)?;
        let mut functions = Vec::new();
        while let Some(thunk) = thunks.next::<pe::ImageNtHeaders64>()? {
            match table.import::<pe::ImageNtHeaders64>(thunk)? {
                Import::Ordinal(ordinal) => problems.push(Problem::ImportByOrdinal {
                    module: module.clone(),
                    ordinal,
                }),
                Import::Name(_, name) => {
                    functions.push(String::from_utf8_lossy(name).into_owned());
                }
            }
        }
        if !KERNEL_MODULES.contains(&module.as_str()) {
            let user_mode =
                USER_MODE_MODULES.contains(&module.as_str()) || module.starts_with("api-ms-win-");
            problems.push(Problem::ForeignModule {
                module,
                user_mode,
                functions,
            });
            continue;
        }
        for function in functions {
            match declared.module_of(&function) {
                None => problems.push(Problem::UndeclaredImport {
                    module: module.clone(),
                    function: function.clone(),
                }),
                Some(d) if d != module => problems.push(Problem::WrongModule {
                    function: function.clone(),
                    module: module.clone(),
                    declared: d.to_string(),
                }),
                Some(_) => {}
            }
            summary.imports.push((module.clone(), function));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
