//! The README's axum example is `examples/axum.rs`, line for line.

#[test]
fn the_readme_axum_example_is_examples_axum_rs() {
    let readme = include_str!("../README.md");
    let section = readme
        .split("## Example: axum")
        .nth(1)
        .expect("the README has an axum example");
    let block = section
        .split("```rust,no_run\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("a rust block");
    // What rustdoc hides (`# ` lines) is the doctest's scaffolding, not the example.
    let shown: Vec<&str> = block
        .lines()
        .filter(|line| !line.starts_with("# ") && *line != "#")
        .collect();
    let file = include_str!("../examples/axum.rs");
    // The file's own doc comment introduces it; the README's text does that there.
    let code: Vec<&str> = file
        .lines()
        .skip_while(|line| line.starts_with("//!"))
        .skip_while(|line| line.is_empty())
        .collect();
    assert_eq!(
        shown, code,
        "README.md's axum example and examples/axum.rs differ"
    );
}
