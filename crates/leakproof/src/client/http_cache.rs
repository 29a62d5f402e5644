//! The rules of a private HTTP cache (RFC 9111) for `ApiClient`: which responses may be
//! stored, how long each stays fresh, when a stored one must be revalidated, and which
//! stored response may answer which request.
//!
//! The cache itself is a `ttl-cache` of whole responses; this module only decides. A
//! stored response is keyed by its URI (query parameters sorted) and the request's
//! `Authorization` (hashed with a key of the client's own), so one token's response never
//! answers another's, whatever the server's `Vary` says; within a key, the response
//! remembers the request headers its `Vary` names and answers only a request that has
//! the same ones.

use std::hash::BuildHasher;
use std::time::{Duration, SystemTime};

use http::header::{
    AGE, AUTHORIZATION, CACHE_CONTROL, DATE, EXPIRES, HeaderMap, HeaderName, HeaderValue,
    LAST_MODIFIED, PRAGMA, VARY,
};
use http::{StatusCode, Uri};

/// The longest heuristic freshness given to a response with only a `Last-Modified`
/// (a tenth of its age, as RFC 9111, 4.2.2 suggests, but never more than this).
pub const HEURISTIC_MAX: Duration = Duration::from_secs(24 * 3600);

/// How one request uses the cache ([`RequestBuilder::cache_mode`](super::RequestBuilder::cache_mode)).
/// Only GETs use it; other methods neither read nor fill it (a successful one drops the
/// stored GET of its URI).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum CacheMode {
    /// RFC 9111 for a private cache: a fresh stored response answers; a stale one, or one
    /// stored with `no-cache`, is revalidated (`If-None-Match` / `If-Modified-Since`);
    /// what the response allows is stored. The request's own `Cache-Control` is
    /// honoured: `no-store` acts as [`Bypass`](Self::Bypass), `no-cache` or `max-age=0`
    /// (or `Pragma: no-cache`) as [`Revalidate`](Self::Revalidate).
    #[default]
    Default,
    /// The cache is neither read nor written.
    Bypass,
    /// A stored response never answers without asking the server: it is revalidated even
    /// while fresh (a `304` costs GitHub no quota); the answer is stored as usual.
    Revalidate,
    /// Any stored response answers, fresh or stale, without asking the server (for
    /// reading what was fetched before while out of quota or offline); the server is
    /// asked only when nothing matching is stored.
    Force,
}

/// The `Cache-Control` directives this cache acts on.
#[derive(Debug, Default, Clone, Copy)]
struct Directives {
    no_store: bool,
    no_cache: bool,
    max_age: Option<u64>,
}

/// Every `Cache-Control` value of `headers`, comma lists included; names are
/// case-insensitive, values may be quoted. A qualified `no-cache="field"` is taken as
/// plain `no-cache` (revalidating more, never less).
fn directives(headers: &HeaderMap) -> Directives {
    let mut found = Directives::default();
    for directive in list_items(headers, CACHE_CONTROL) {
        let (name, value) = match directive.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim().trim_matches('"'))),
            None => (directive, None),
        };
        if name.eq_ignore_ascii_case("no-store") {
            found.no_store = true;
        } else if name.eq_ignore_ascii_case("no-cache") {
            found.no_cache = true;
        } else if name.eq_ignore_ascii_case("max-age") {
            // An invalid max-age makes the response stale (RFC 9111, 4.2.1).
            found.max_age = Some(value.and_then(|v| v.parse().ok()).unwrap_or(0));
        }
    }
    found
}

/// The mode a request asks for: `mode` as set, and in [`CacheMode::Default`] what the
/// request's own headers say.
pub(crate) fn request_mode(mode: CacheMode, headers: &HeaderMap) -> CacheMode {
    if mode != CacheMode::Default {
        return mode;
    }
    let asked = directives(headers);
    let pragma_no_cache =
        list_items(headers, PRAGMA).any(|item| item.eq_ignore_ascii_case("no-cache"));
    if asked.no_store {
        CacheMode::Bypass
    } else if asked.no_cache || asked.max_age == Some(0) || pragma_no_cache {
        CacheMode::Revalidate
    } else {
        CacheMode::Default
    }
}

/// The items of a comma-separated header, over all its lines, trimmed (empty ones
/// skipped); a value that is not text is skipped.
fn list_items(headers: &HeaderMap, name: HeaderName) -> impl Iterator<Item = &str> {
    headers
        .get_all(name)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|item| !item.is_empty())
}

fn date(headers: &HeaderMap, name: HeaderName) -> Option<SystemTime> {
    httpdate::parse_http_date(headers.get(name)?.to_str().ok()?).ok()
}

/// For a response to a GET, received at `now`: `None` when it must not be stored
/// (another status than 200, `no-store`, `Vary: *`, or nothing to reuse it by: no
/// freshness and no validator); else how long it stays fresh from now, zero for one
/// stored only to be revalidated (`no-cache`, an `Expires` in the past, no explicit
/// freshness). Freshness is `max-age`, else `Expires` less `Date`, else a tenth of the
/// time since `Last-Modified` (at most [`HEURISTIC_MAX`]), less the response's age
/// (`Age`, or the time since its `Date`).
pub(crate) fn freshness(
    status: StatusCode,
    headers: &HeaderMap,
    now: SystemTime,
) -> Option<Duration> {
    if status != StatusCode::OK {
        return None;
    }
    let said = directives(headers);
    let varies_on_all = list_items(headers, VARY).any(|name| name == "*");
    if said.no_store || varies_on_all {
        return None;
    }
    let sent = date(headers, DATE);
    let lifetime = if said.no_cache {
        Duration::ZERO
    } else if let Some(secs) = said.max_age {
        Duration::from_secs(secs)
    } else if headers.contains_key(EXPIRES) {
        // An invalid Expires (often "0") means already expired.
        date(headers, EXPIRES)
            .and_then(|expires| expires.duration_since(sent.unwrap_or(now)).ok())
            .unwrap_or_default()
    } else if let Some(modified) = date(headers, LAST_MODIFIED) {
        (sent
            .unwrap_or(now)
            .duration_since(modified)
            .unwrap_or_default()
            / 10)
            .min(HEURISTIC_MAX)
    } else {
        Duration::ZERO
    };
    let age_header = headers
        .get(AGE)
        .and_then(|v| v.to_str().ok()?.trim().parse().ok())
        .map(Duration::from_secs)
        .unwrap_or_default();
    let apparent_age = sent
        .and_then(|sent| now.duration_since(sent).ok())
        .unwrap_or_default();
    let fresh_for = lifetime.saturating_sub(age_header.max(apparent_age));
    let has_validator =
        headers.contains_key(http::header::ETAG) || headers.contains_key(LAST_MODIFIED);
    (!fresh_for.is_zero() || has_validator).then_some(fresh_for)
}

/// The request headers a response's `Vary` names, with the values the request that
/// fetched it had: a stored response answers only a request with the same ones.
pub(crate) type VarySnapshot = Vec<(HeaderName, Option<HeaderValue>)>;

pub(crate) fn vary_snapshot(response: &HeaderMap, request: &HeaderMap) -> VarySnapshot {
    list_items(response, VARY)
        .filter_map(|name| HeaderName::try_from(name).ok())
        .map(|name| {
            let value = request.get(&name).cloned();
            (name, value)
        })
        .collect()
}

/// Whether a response stored with `snapshot` may answer a request with `request`'s
/// headers.
pub(crate) fn vary_matches(snapshot: &VarySnapshot, request: &HeaderMap) -> bool {
    snapshot
        .iter()
        .all(|(name, value)| request.get(name) == value.as_ref())
}

/// The cache key: scheme, authority and path, the query's parameters sorted (so
/// `?b=2&a=1` and `?a=1&b=2` share an entry), and a keyed hash of `Authorization`.
pub(crate) fn key(uri: &Uri, headers: &HeaderMap, hasher: &impl BuildHasher) -> String {
    let mut key = format!(
        "{}://{}{}",
        uri.scheme_str().unwrap_or(""),
        uri.authority().map_or("", |a| a.as_str()),
        uri.path()
    );
    if let Some(query) = uri.query() {
        let mut pairs: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
        pairs.sort_unstable();
        if !pairs.is_empty() {
            key.push('?');
            key.push_str(&pairs.join("&"));
        }
    }
    if let Some(authorization) = headers.get(AUTHORIZATION) {
        let hash = hasher.hash_one(authorization.as_bytes());
        key.push_str(&format!("#authorization={hash:016x}"));
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::try_from(*name).unwrap(),
                HeaderValue::try_from(*value).unwrap(),
            );
        }
        map
    }

    fn fresh(pairs: &[(&str, &str)], now: SystemTime) -> Option<Duration> {
        freshness(StatusCode::OK, &headers(pairs), now)
    }

    #[test]
    fn freshness_follows_rfc_9111() {
        let now = httpdate::parse_http_date("Wed, 02 Dec 2026 10:00:00 GMT").unwrap();
        let date = ("date", "Wed, 02 Dec 2026 10:00:00 GMT");
        let secs = Duration::from_secs;
        // Explicit: max-age wins over Expires; no-cache stores for revalidation only.
        assert_eq!(
            fresh(&[date, ("cache-control", "private, max-age=60")], now),
            Some(secs(60))
        );
        assert_eq!(
            fresh(
                &[
                    date,
                    ("cache-control", "max-age=60"),
                    ("expires", "Wed, 02 Dec 2026 11:00:00 GMT")
                ],
                now
            ),
            Some(secs(60))
        );
        assert_eq!(
            fresh(&[date, ("expires", "Wed, 02 Dec 2026 10:05:00 GMT")], now),
            Some(secs(300))
        );
        assert_eq!(
            fresh(
                &[date, ("cache-control", "no-cache"), ("etag", "\"x\"")],
                now
            ),
            Some(Duration::ZERO)
        );
        // Age counts against freshness, from the header or from the Date.
        assert_eq!(
            fresh(&[date, ("cache-control", "max-age=60"), ("age", "45")], now),
            Some(secs(15))
        );
        assert_eq!(
            fresh(
                &[
                    ("date", "Wed, 02 Dec 2026 09:59:30 GMT"),
                    ("cache-control", "max-age=60")
                ],
                now
            ),
            Some(secs(30))
        );
        // Heuristic: a tenth of the time since Last-Modified, capped.
        assert_eq!(
            fresh(
                &[date, ("last-modified", "Wed, 02 Dec 2026 09:00:00 GMT")],
                now
            ),
            Some(secs(360))
        );
        assert_eq!(
            fresh(
                &[date, ("last-modified", "Mon, 02 Dec 2024 10:00:00 GMT")],
                now
            ),
            Some(HEURISTIC_MAX)
        );
        // Nothing explicit and no validator: not worth storing; with an ETag, stored to
        // be revalidated. An invalid Expires is already expired.
        assert_eq!(fresh(&[date], now), None);
        assert_eq!(fresh(&[date, ("etag", "\"x\"")], now), Some(Duration::ZERO));
        assert_eq!(
            fresh(&[date, ("expires", "0"), ("etag", "\"x\"")], now),
            Some(Duration::ZERO)
        );
        // Never stored: no-store, Vary: *, other statuses.
        assert_eq!(
            fresh(&[date, ("cache-control", "max-age=60, no-store")], now),
            None
        );
        assert_eq!(
            fresh(&[date, ("cache-control", "max-age=60"), ("vary", "*")], now),
            None
        );
        let cacheable = headers(&[date, ("cache-control", "max-age=60")]);
        assert_eq!(freshness(StatusCode::NOT_FOUND, &cacheable, now), None);
    }

    #[test]
    fn requests_can_ask_to_bypass_or_revalidate() {
        let mode = |pairs: &[(&str, &str)]| request_mode(CacheMode::Default, &headers(pairs));
        assert_eq!(mode(&[]), CacheMode::Default);
        assert_eq!(mode(&[("cache-control", "no-store")]), CacheMode::Bypass);
        assert_eq!(
            mode(&[("cache-control", "no-cache")]),
            CacheMode::Revalidate
        );
        assert_eq!(
            mode(&[("cache-control", "max-age=0")]),
            CacheMode::Revalidate
        );
        assert_eq!(mode(&[("pragma", "no-cache")]), CacheMode::Revalidate);
        let forced = request_mode(CacheMode::Force, &headers(&[("cache-control", "no-cache")]));
        assert_eq!(forced, CacheMode::Force, "an explicit mode wins");
    }

    #[test]
    fn keys_sort_the_query_and_keep_tokens_apart() {
        let hasher = std::hash::RandomState::new();
        let uri = |u: &str| u.parse::<Uri>().unwrap();
        let none = HeaderMap::new();
        assert_eq!(
            key(&uri("https://api.x/r?b=2&a=1"), &none, &hasher),
            key(&uri("https://api.x/r?a=1&b=2"), &none, &hasher)
        );
        assert_eq!(
            key(&uri("https://api.x/r?"), &none, &hasher),
            "https://api.x/r"
        );
        let a = headers(&[("authorization", "Bearer a")]);
        let b = headers(&[("authorization", "Bearer b")]);
        let u = uri("https://api.x/r");
        assert_ne!(key(&u, &a, &hasher), key(&u, &b, &hasher));
        assert_ne!(key(&u, &a, &hasher), key(&u, &none, &hasher));
        assert!(
            !key(&u, &a, &hasher).contains("Bearer"),
            "no secret in a key"
        );
    }

    #[test]
    fn a_stored_response_answers_only_requests_that_match_its_vary() {
        let response = headers(&[("vary", "Accept, Accept-Encoding"), ("vary", "Cookie")]);
        let json = headers(&[("accept", "application/json")]);
        let snapshot = vary_snapshot(&response, &json);
        assert_eq!(snapshot.len(), 3);
        assert!(vary_matches(&snapshot, &json));
        assert!(!vary_matches(
            &snapshot,
            &headers(&[("accept", "text/html")])
        ));
        assert!(!vary_matches(
            &snapshot,
            &headers(&[("accept", "application/json"), ("cookie", "s=1")])
        ));
        assert!(vary_matches(&Vec::new(), &json), "no Vary: any request");
    }
}
