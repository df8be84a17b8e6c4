//! Nothing: this package only builds tower-drain's heavy tests, its benchmarks and its tonic
//! example (see its `Cargo.toml`).
