//! The allowlist of kernel functions gate.sys may import, read from the
//! bindings crate (`gate-driver/ksys/src/imports.rs`).
//!
//! Every `extern` block there names its module with
//! `#[cfg_attr(windows, link(name = "ntoskrnl.exe", ...))]` (or a plain
//! `#[link(...)]`); every function declared in such a block is an import the
//! driver is known to use, from that module. The image check accepts an
//! imported name only if it is declared here, from the same module, so a new
//! import has to be declared in ksys first (where the user-mode simulation
//! must also define it).

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::Path;
use syn::punctuated::Punctuated;
use syn::{Attribute, Expr, ForeignItem, Item, Lit, Meta, MetaList, Token};

/// Function name -> module (lower case, e.g. "ntoskrnl.exe").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelImports {
    by_name: BTreeMap<String, String>,
}

impl KernelImports {
    /// Reads and parses the bindings file at `path`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the kernel import list {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Parses Rust source holding `extern` blocks with `link(name = ...)`.
    pub fn parse(source: &str) -> Result<Self> {
        let file = syn::parse_file(source).context("not valid Rust")?;
        let mut by_name = BTreeMap::new();
        for item in &file.items {
            let Item::ForeignMod(block) = item else {
                continue;
            };
            let Some(module) = link_name(&block.attrs)? else {
                bail!("an extern block has no link(name = \"...\") attribute: every import must name its kernel module");
            };
            for foreign in &block.items {
                if let ForeignItem::Fn(f) = foreign {
                    let name = f.sig.ident.to_string();
                    if let Some(prev) = by_name.insert(name.clone(), module.clone()) {
                        if prev != module {
                            bail!("{name} is declared as an import of both {prev} and {module}");
                        }
                    }
                }
            }
        }
        if by_name.is_empty() {
            bail!("no imported functions found");
        }
        Ok(KernelImports { by_name })
    }

    /// The module `name` is declared to come from, if it is declared.
    pub fn module_of(&self, name: &str) -> Option<&str> {
        self.by_name.get(name).map(String::as_str)
    }

    /// Number of declared imports.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Builds a list directly (for tests).
    #[cfg(test)]
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        KernelImports {
            by_name: pairs
                .iter()
                .map(|(n, m)| (n.to_string(), m.to_ascii_lowercase()))
                .collect(),
        }
    }
}

/// The `name = "..."` of a `link` attribute, directly or inside `cfg_attr`.
fn link_name(attrs: &[Attribute]) -> Result<Option<String>> {
    for attr in attrs {
        if attr.path().is_ident("link") {
            if let Meta::List(list) = &attr.meta {
                return name_value(list);
            }
        }
        if attr.path().is_ident("cfg_attr") {
            let args = attr
                .parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
                .context("malformed cfg_attr")?;
            for meta in args.iter().skip(1) {
                if let Meta::List(list) = meta {
                    if list.path.is_ident("link") {
                        return name_value(list);
                    }
                }
            }
        }
    }
    Ok(None)
}

fn name_value(list: &MetaList) -> Result<Option<String>> {
    let metas = list
        .parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
        .context("malformed link attribute")?;
    for meta in metas {
        if let Meta::NameValue(nv) = meta {
            if nv.path.is_ident("name") {
                if let Expr::Lit(lit) = &nv.value {
                    if let Lit::Str(s) = &lit.lit {
                        return Ok(Some(s.value().to_ascii_lowercase()));
                    }
                }
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_modules_from_cfg_attr_and_plain_link() {
        let src = r#"
            #[cfg_attr(windows, link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim"))]
            extern "system" {
                pub fn KeBugCheckEx(code: u32) -> !;
                pub fn ZwClose(h: usize) -> i32;
            }
            #[link(name = "NETIO.SYS", kind = "raw-dylib")]
            extern "system" { pub fn WskRegister(); }
            pub struct NotAnImport;
        "#;
        let k = KernelImports::parse(src).unwrap();
        assert_eq!(k.len(), 3);
        assert_eq!(k.module_of("KeBugCheckEx"), Some("ntoskrnl.exe"));
        assert_eq!(k.module_of("WskRegister"), Some("netio.sys"));
        assert_eq!(k.module_of("CreateFileW"), None);
    }

    #[test]
    fn an_extern_block_without_a_module_is_an_error() {
        let err = KernelImports::parse("extern \"C\" { pub fn Foo(); }").unwrap_err();
        assert!(format!("{err:#}").contains("no link(name"), "{err:#}");
    }

    #[test]
    fn one_name_from_two_modules_is_an_error() {
        let src = r#"
            #[link(name = "ntoskrnl.exe")] extern "system" { pub fn Foo(); }
            #[link(name = "hal.dll")] extern "system" { pub fn Foo(); }
        "#;
        let err = KernelImports::parse(src).unwrap_err();
        assert!(format!("{err:#}").contains("Foo is declared"), "{err:#}");
    }

    #[test]
    fn the_real_bindings_parse() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../gate-driver/ksys/src/imports.rs");
        let k = KernelImports::from_file(&path).unwrap();
        assert_eq!(k.module_of("KeBugCheckEx"), Some("ntoskrnl.exe"));
        assert_eq!(k.module_of("WskRegister"), Some("netio.sys"));
        assert_eq!(k.module_of("DbgPrintEx"), Some("ntoskrnl.exe"));
    }
}
