//! The README's event reference is exactly what the schema generates.

use etw_manifest::render::{render_event_docs, render_map_docs};

#[test]
fn readme_event_reference_matches_the_schema() {
    let readme = include_str!("../README.md");
    let begin = readme
        .find("<!-- events:begin -->\n")
        .expect("begin marker")
        + "<!-- events:begin -->\n".len();
    let end = readme.find("<!-- events:end -->").expect("end marker");
    let expected = format!(
        "{}### Value maps\n\n{}",
        render_event_docs(),
        render_map_docs()
    );
    assert_eq!(
        &readme[begin..end],
        expected,
        "README event reference is stale: regenerate with `cargo run -p etw-manifest --example render -- docs`"
    );
}
