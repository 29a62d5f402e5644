//! Child processes that never outlive their owner.
//!
//! **Status: not built yet.** This crate is reserved in the workspace; its issue
//! ("`proc-reaper`: child processes that never outlive their owner") describes what it
//! will hold.
//!
//! # What it will guarantee
//!
//! A child spawned through the reaper is ended together with its whole process tree,
//! grandchildren that double-fork or call `setsid` included, when its handle is dropped,
//! when the future awaiting it is cancelled, on timeout, and on shutdown: SIGTERM first,
//! SIGKILL after a grace period, signalled through pidfds so a reused PID is never hit.
//! Every child and re-parented orphan is reaped, so no zombie is left, and captured
//! output is capped.
//!
//! # What this does not protect against
//!
//! Nothing yet: the crate has no code. Until it does, rely on nothing from it.
