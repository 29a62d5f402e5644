//! The server's word: how many requests remain, when the window resets, how long to wait.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a response said about the rate limit. Build it from plain values, or from
/// headers with [`Feedback::from_headers`] (feature `http`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Feedback {
    /// `X-RateLimit-Remaining`: requests left in the server's window.
    pub remaining: Option<u64>,
    /// Time until `X-RateLimit-Reset`.
    pub reset_in: Option<Duration>,
    /// `Retry-After`: wait this long before any request.
    pub retry_after: Option<Duration>,
    /// The response was a 403 or 429 rate-limit refusal (a secondary limit).
    pub limited: bool,
}

impl Feedback {
    /// Nothing said.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests left, and time until the window resets.
    pub fn remaining(mut self, remaining: u64, reset_in: Duration) -> Self {
        self.remaining = Some(remaining);
        self.reset_in = Some(reset_in);
        self
    }

    /// Wait this long before any request.
    pub fn retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    /// The response was a rate-limit refusal (403/429).
    pub fn limited(mut self) -> Self {
        self.limited = true;
        self
    }

    /// Reads `X-RateLimit-Remaining`, `X-RateLimit-Reset` (epoch seconds, turned into a
    /// duration from now), `Retry-After` (seconds or an HTTP date) and the status (403
    /// or 429 with rate-limit headers, or 429 alone, count as a refusal). Unparsable
    /// values are ignored.
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn from_headers(status: http::StatusCode, headers: &http::HeaderMap) -> Self {
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        };
        let number = |name: &str| text(name).and_then(|v| v.parse::<u64>().ok());
        let remaining = number("x-ratelimit-remaining");
        let reset_in =
            number("x-ratelimit-reset").map(|epoch| until_epoch(epoch, SystemTime::now()));
        let retry_after = text("retry-after").and_then(|v| {
            v.parse::<u64>()
                .ok()
                .map(Duration::from_secs)
                .or_else(|| http_date_in(v, SystemTime::now()))
        });
        let limited = status == http::StatusCode::TOO_MANY_REQUESTS
            || (status == http::StatusCode::FORBIDDEN
                && (remaining == Some(0) || retry_after.is_some()));
        Feedback {
            remaining,
            reset_in,
            retry_after,
            limited,
        }
    }
}

/// Time from `now` until a Unix timestamp (zero if past).
pub fn until_epoch(epoch_secs: u64, now: SystemTime) -> Duration {
    (UNIX_EPOCH + Duration::from_secs(epoch_secs))
        .duration_since(now)
        .unwrap_or_default()
}

/// Time until an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), or `None` if unparsable.
pub fn http_date_in(value: &str, now: SystemTime) -> Option<Duration> {
    let parts: Vec<&str> = value.split_ascii_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m == month)? as u64
        + 1;
    let (day, year): (u64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let hms: Vec<u64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, s] = hms.as_slice() else {
        return None;
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400) as u64;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe as i64 - 719_468;
    let secs = u64::try_from(days).ok()? * 86_400 + h * 3600 + m * 60 + s;
    Some(until_epoch(secs, now))
}
