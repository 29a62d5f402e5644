//! Memory and handle accounting that costs microseconds.
//!
//! **Status: not built yet.** This crate is reserved in the workspace; its issue
//! ("`mem-watch`: memory and handle accounting that costs microseconds") describes what
//! it will hold.
//!
//! # What it will guarantee
//!
//! Cheap samples of the current process (resident size and open file descriptors from
//! procfs, with reused buffers) and full snapshots (peak resident size, threads, the
//! effective cgroup v1 or v2 memory limit and usage, memory pressure). A watcher samples
//! in the background, raises warning and critical events with hysteresis, and records
//! per-job start, peak and end figures and a leak trend. A value the kernel does not
//! provide is reported as absent; nothing panics on a missing or unreadable file.
//!
//! # What this does not protect against
//!
//! Nothing yet: the crate has no code. Until it does, rely on nothing from it.
