//! Figures through the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`).
//!
//! | name | type | labels | recorded |
//! |---|---|---|---|
//! | `bounded_stream_bytes_total` | counter | `stage`: `wire`, `decoded` | as a stream runs, each 1 MiB, and the rest when it ends or is dropped |
//! | `bounded_stream_limit_errors_total` | counter | `limit`: `bytes`, `declared_length`, `deadline`, `idle`, `rate`, `expansion` | each stream a limit ended |
//!
//! The per-chunk cost is a subtraction and a comparison: bytes are handed to the
//! facade once per MiB, not once per chunk. Nothing is recorded until a recorder is
//! installed (an exporter's `install`, or [`metrics::set_global_recorder`]).

use crate::{Error, Stage};

/// Bytes that passed a cap, by stage.
pub const BYTES: &str = "bounded_stream_bytes_total";
/// Streams ended by a limit, by limit.
pub const LIMIT_ERRORS: &str = "bounded_stream_limit_errors_total";

/// Bytes a meter holds before it hands them to the facade.
pub(crate) const FLUSH_BYTES: u64 = 1 << 20;

/// Describes this crate's metrics to the installed recorder (units and help text).
/// Optional: exporters list undescribed metrics too.
pub fn describe() {
    metrics::describe_counter!(
        BYTES,
        metrics::Unit::Bytes,
        "Bytes that passed a bounded-stream cap, by stage."
    );
    metrics::describe_counter!(
        LIMIT_ERRORS,
        "Streams ended by a bounded-stream limit, by limit."
    );
}

pub(crate) fn bytes(stage: Stage, n: u64) {
    if n > 0 {
        let stage = match stage {
            Stage::Wire => "wire",
            Stage::Decoded => "decoded",
            Stage::Line => "line",
        };
        metrics::counter!(BYTES, "stage" => stage).increment(n);
    }
}

pub(crate) fn limit_error(error: &Error) {
    let limit = match error {
        Error::TooLarge { .. } | Error::FileTooLarge { .. } => "bytes",
        Error::ContentLengthTooLarge { .. } => "declared_length",
        Error::Deadline { .. } => "deadline",
        Error::IdleTimeout { .. } => "idle",
        Error::TooSlow { .. } => "rate",
        Error::ExpansionRatio { .. } => "expansion",
        _ => return,
    };
    metrics::counter!(LIMIT_ERRORS, "limit" => limit).increment(1);
}
