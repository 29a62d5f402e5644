//! Benchmarks live in `benches/`; each runs one of our crates and its named peer on the
//! same input in the same run. `cargo xtask bench` runs them and rewrites
//! `BENCHMARKS.md`. Nothing is published from this package.
