//! API quota and concurrency limits that are exact, fair, and obey the server.
//!
//! **Status: not built yet.** This crate is reserved in the workspace; its issue
//! ("`rate-gate`: API quota and concurrency limits") describes what it will hold.
//!
//! # What it will guarantee
//!
//! A gate combining a quota of N requests per period (with a burst) and a cap on
//! concurrent requests never lets out more than either allows, nor more than the server
//! said remain (`X-RateLimit-Remaining`, `X-RateLimit-Reset`, `Retry-After`). Waiters are
//! served first come, first served, and a cancelled waiter neither holds up those behind
//! it nor consumes quota. Keyed gates evict idle keys, so memory stays bounded.
//!
//! # What this does not protect against
//!
//! Nothing yet: the crate has no code. Until it does, rely on nothing from it.
