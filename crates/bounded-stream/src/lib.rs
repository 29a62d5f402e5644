//! Byte streams with a hard cap: memory is bounded by the cap, whatever the input.
//!
//! **Status: not built yet.** This crate is reserved in the workspace; its issue
//! ("`bounded-stream`: every byte stream gets a cap") describes what it will hold.
//!
//! # What it will guarantee
//!
//! Every byte source wrapped by this crate (a `Stream` of `Bytes`, an `AsyncRead`, an
//! http-body 1.x `Body`) is accepted up to exactly `limit` bytes and rejected at
//! `limit + 1`, under any chunking, with a typed error that carries the limit, the count
//! received and the stage (wire, decoded, line). Decompression (gzip, deflate, zstd,
//! brotli) runs under the same budget, so a decompression bomb is stopped after at most
//! the cap plus one decoder buffer. Idle timeouts, total deadlines and a minimum data
//! rate stop slow-drip peers. Line scanning and tails keep memory bounded by the longest
//! line allowed, not by the input: a 500 MB log is searched in under 15 MB.
//!
//! # What this does not protect against
//!
//! Nothing yet: the crate has no code. Until it does, wrap nothing in it and rely on
//! nothing from it.
