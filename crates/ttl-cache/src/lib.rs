//! A concurrent TTL + LRU cache with honest stats and cancellation-safe single-flight
//! loading.
//!
//! **Status: not built yet.** This crate is reserved in the workspace; its issue
//! ("`ttl-cache`: a concurrent TTL + LRU cache") describes what it will hold.
//!
//! # What it will guarantee
//!
//! A cache bounded by entry count or weight, with a default and per-entry time to live;
//! an expired entry is never returned and does not sit in memory forever. Concurrent
//! misses for one key run the loader once; if the loading future is dropped, a waiter
//! takes the load over instead of waiting forever. Hits, misses, loads and evictions by
//! cause are always counted.
//!
//! # What this does not protect against
//!
//! Nothing yet: the crate has no code. Until it does, rely on nothing from it.
