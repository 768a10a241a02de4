//! No infallible allocation in driver code (issue 10, part 2; review item
//! 6): what clippy.toml cannot express. Clippy's `disallowed-methods`
//! names a function, not one trait impl, so `<Vec<T> as Clone>::clone`,
//! `Box::from`, `Vec::from`, `String::from` and `.into()` into a Box or Vec
//! (all allocating, all aborting on failure) cannot be refused there
//! without refusing every `Clone`/`From` call. This test scans the non-test
//! driver source (each file up to its `#[cfg(test)]` module) for them.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_macros,
    clippy::disallowed_types
)] // test code: std allocation is fine

use std::path::Path;

/// Forbidden in driver code, with why. `.clone()` is refused outright:
/// the driver's own types are Copy where copies are needed, so any
/// `.clone()` is a Vec/Box/String clone or hides one.
const FORBIDDEN: &[(&str, &str)] = &[
    (".clone()", "Clone of a Vec/Box/String allocates infallibly"),
    ("Box::from(", "allocates infallibly: PoolBox::try_new"),
    ("Vec::from(", "allocates infallibly: PoolVec / try_reserve"),
    ("String::from(", "allocates infallibly"),
    ("Rc::from(", "allocates infallibly"),
    ("Arc::from(", "allocates infallibly"),
    (
        "Box<[",
        "a boxed slice is built by an infallible allocation",
    ),
    (".into_boxed_slice()", "may reallocate infallibly"),
    (".to_vec()", "allocates infallibly (also in clippy.toml)"),
    (".to_owned()", "allocates infallibly (also in clippy.toml)"),
    (".to_string()", "allocates infallibly (also in clippy.toml)"),
];

/// The part of `text` that is not test code: everything before the first
/// `#[cfg(test)]` (test modules sit at the end of each file), with line
/// comments dropped.
fn non_test(text: &str) -> String {
    let end = text.find("#[cfg(test)]").unwrap_or(text.len());
    text[..end]
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// (line number, pattern, reason) of every forbidden use in `text`.
fn findings(text: &str) -> Vec<(usize, &'static str, &'static str)> {
    let mut out = Vec::new();
    for (n, line) in non_test(text).lines().enumerate() {
        for &(pat, why) in FORBIDDEN {
            if line.contains(pat) {
                out.push((n + 1, pat, why));
            }
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read_dir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn driver_source_has_no_allocation_clippy_cannot_refuse() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() > 20, "scanned {} files", files.len());
    let mut bad = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read");
        for (line, pat, why) in findings(&text) {
            bad.push(format!("{}:{line}: `{pat}`: {why}", f.display()));
        }
    }
    assert!(
        bad.is_empty(),
        "infallible allocation in driver code:\n{}",
        bad.join("\n")
    );
}

/// The scanner finds each pattern, skips comments and test modules.
#[test]
fn the_scan_finds_what_it_looks_for() {
    let sample = "fn f(v: &Vec<u8>, x: &[u8]) {\n    let a = v.clone();\n    let b = Box::from([1u8]);\n    let c = Vec::from(x);\n    // let d = v.clone(); (a comment)\n}\n#[cfg(test)]\nmod tests { fn g(v: &Vec<u8>) { let _ = v.clone(); } }\n";
    let f = findings(sample);
    let pats: Vec<_> = f.iter().map(|x| (x.0, x.1)).collect();
    assert_eq!(
        pats,
        vec![(2, ".clone()"), (3, "Box::from("), (4, "Vec::from(")]
    );
    for &(pat, _) in FORBIDDEN {
        assert_eq!(findings(&format!("let x = y{pat}")).len(), 1, "{pat}");
    }
}
