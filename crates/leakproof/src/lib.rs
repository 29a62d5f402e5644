//! The umbrella crate: everything an operation borrows, released on every path.
//!
//! **Status: not built yet.** This crate is reserved in the workspace; its issue
//! ("`leakproof`: one Scope, shutdown within a deadline, health") describes what it will
//! hold. Until then, depend on the focused crates directly; [`scoped-temp`] is the first
//! one that is ready.
//!
//! [`scoped-temp`]: https://docs.rs/scoped-temp
//!
//! # What it will guarantee
//!
//! A `Scope` registers what an operation acquires (temp dirs, child processes, tasks,
//! async cleanups) and releases it in reverse order when the scope ends, whether it
//! returned, failed, panicked or was dropped. A `Shutdown` turns SIGTERM into a
//! cancellation with a deadline (25 s by default, under Kubernetes' 30 s), then forces
//! what is left: child trees killed, temp entries removed, a report naming what had to be
//! forced.
//!
//! # What this does not protect against
//!
//! Nothing yet: the crate has no code. Until it does, rely on nothing from it.
