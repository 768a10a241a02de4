//! Prints text generated from the driver's event table:
//! `cargo run -p etw-manifest --example render -- manifest > etw-manifest/gate.man`
//! (a starting point when events change; the tests then check the file) or
//! `-- docs` (the README's event and value-map reference).

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("manifest") => print!("{}", etw_manifest::render::render_manifest()),
        Some("docs") => {
            print!("{}", etw_manifest::render::render_event_docs());
            println!("### Value maps\n");
            print!("{}", etw_manifest::render::render_map_docs());
        }
        other => {
            eprintln!("usage: render manifest|docs (got {other:?})");
            std::process::exit(2);
        }
    }
}
