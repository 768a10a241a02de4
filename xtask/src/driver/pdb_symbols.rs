//! Reads the RVA of a public symbol (DriverEntry) from the image's PDB, after
//! making sure the PDB is the one the image names (same GUID in the image's
//! CodeView debug record and the PDB information stream).

use anyhow::{bail, Context, Result};
use object::read::pe::PeFile64;
use object::Object;
use pdb::FallibleIterator;
use std::path::Path;

/// The RVA of the public symbol `symbol` in the PDB at `pdb_path`, which
/// must belong to `image`.
pub fn symbol_rva(image: &[u8], pdb_path: &Path, symbol: &str) -> Result<u32> {
    let file = PeFile64::parse(image).context("parsing the image")?;
    let Some(cv) = file.pdb_info().context("reading the CodeView record")? else {
        bail!("the image has no CodeView debug record naming its PDB");
    };
    let pdb_file =
        std::fs::File::open(pdb_path).with_context(|| format!("opening {}", pdb_path.display()))?;
    let mut pdb = pdb::PDB::open(pdb_file)
        .with_context(|| format!("reading {} as a PDB", pdb_path.display()))?;
    let info = pdb.pdb_information().context("PDB information stream")?;
    if info.guid.to_bytes_le() != cv.guid() {
        bail!(
            "{} (GUID {}) is not the PDB of this image (which names {} with another GUID)",
            pdb_path.display(),
            info.guid,
            String::from_utf8_lossy(cv.path())
        );
    }
    let map = pdb.address_map().context("PDB address map")?;
    let globals = pdb.global_symbols().context("PDB global symbols")?;
    let mut symbols = globals.iter();
    while let Some(sym) = symbols.next().context("reading a PDB symbol")? {
        if let Ok(pdb::SymbolData::Public(p)) = sym.parse() {
            if p.name.as_bytes() == symbol.as_bytes() {
                let Some(rva) = p.offset.to_rva(&map) else {
                    bail!("{symbol} in {} has no RVA", pdb_path.display());
                };
                return Ok(rva.0);
            }
        }
    }
    bail!("{} has no public symbol {symbol}", pdb_path.display())
}
