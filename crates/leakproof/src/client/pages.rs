//! Pagination: [`Paginate`], a stream of items that follows `Link: <...>; rel="next"`.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;
use http::header::LINK;
use hyper_util::client::legacy::connect::Connect;
use serde::de::DeserializeOwned;

use super::request::RequestBuilder;
use crate::{Error, Result};

/// Pages followed at most, by default.
const DEFAULT_PAGES: u32 = 100;
/// Body bytes read at most over all pages, by default.
const DEFAULT_BYTES: u64 = 100 << 20;

/// The items of a paginated list, page after page, from [`ApiClient::paginate`] or
/// [`RequestBuilder::paginate`]: each page is a GET through the gate and the cache (with
/// the request's own headers, token included), a JSON array of `T` (or an object whose
/// `items` field is one, as GitHub's search answers), and the next page is the one the
/// response's `Link` header calls `rel="next"`.
///
/// Bounded: at most [`max_pages`](Self::max_pages) pages (default 100) and
/// [`max_bytes`](Self::max_bytes) of bodies in all (default 100 MiB); past either the
/// stream ends with [`Error::PageLimit`]. A next link to another host than the base's
/// ends it with [`Error::BadUri`]: the token is never sent elsewhere. An error status
/// ends it with [`Error::Status`].
///
/// [`ApiClient::paginate`]: super::ApiClient::paginate
#[must_use = "a stream does nothing until polled"]
pub struct Paginate<'a, C, T> {
    template: Option<RequestBuilder<'a, C>>,
    max_pages: u32,
    max_bytes: u64,
    running: Option<Pin<Box<dyn Stream<Item = Result<T>> + Send + 'a>>>,
}

impl<C, T> std::fmt::Debug for Paginate<'_, C, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Paginate")
            .field("max_pages", &self.max_pages)
            .field("max_bytes", &self.max_bytes)
            .field("running", &self.running.is_some())
            .finish_non_exhaustive()
    }
}

impl<'a, C, T> Paginate<'a, C, T>
where
    C: Connect + Clone + Send + Sync + 'static,
    T: DeserializeOwned + Send + 'a,
{
    pub(super) fn new(first: RequestBuilder<'a, C>) -> Self {
        Paginate {
            template: Some(first),
            max_pages: DEFAULT_PAGES,
            max_bytes: DEFAULT_BYTES,
            running: None,
        }
    }

    /// Follow at most `pages` pages (default 100; at least 1).
    pub fn max_pages(mut self, pages: u32) -> Self {
        self.max_pages = pages.max(1);
        self
    }

    /// Read at most `bytes` of page bodies in all (default 100 MiB).
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
        self
    }

    fn start(&mut self) -> Pin<Box<dyn Stream<Item = Result<T>> + Send + 'a>> {
        let Some(first) = self.template.take() else {
            return Box::pin(futures_util::stream::empty());
        };
        let state = State {
            next: Some(first),
            pages: 0,
            bytes: 0,
            max_pages: self.max_pages,
            max_bytes: self.max_bytes,
            items: VecDeque::new(),
            error: None,
        };
        Box::pin(futures_util::stream::unfold(
            state,
            |mut state| async move {
                loop {
                    if let Some(item) = state.items.pop_front() {
                        return Some((Ok(item), state));
                    }
                    // After the items read before it, an error ends the stream.
                    if let Some(error) = state.error.take() {
                        return Some((Err(error), state));
                    }
                    let request = state.next.take()?;
                    if let Err(error) = state.page(request).await {
                        state.error = Some(error);
                    }
                }
            },
        ))
    }
}

impl<'a, C, T> Stream for Paginate<'a, C, T>
where
    C: Connect + Clone + Send + Sync + 'static,
    T: DeserializeOwned + Send + 'a,
{
    type Item = Result<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<T>>> {
        // Every field is `Unpin` (the running stream is boxed).
        let this = self.get_mut();
        if this.running.is_none() {
            this.running = Some(this.start());
        }
        match this.running.as_mut() {
            Some(running) => running.as_mut().poll_next(cx),
            None => Poll::Ready(None),
        }
    }
}

struct State<'a, C, T> {
    /// The request for the next page; `None` once there is none (or after an error).
    next: Option<RequestBuilder<'a, C>>,
    pages: u32,
    bytes: u64,
    max_pages: u32,
    max_bytes: u64,
    items: VecDeque<T>,
    /// What ended the listing, once the items before it are out.
    error: Option<Error>,
}

impl<'a, C, T> State<'a, C, T>
where
    C: Connect + Clone + Send + Sync + 'static,
    T: DeserializeOwned,
{
    /// Fetches one page into `items` and sets `next` from its `Link` header.
    async fn page(&mut self, request: RequestBuilder<'a, C>) -> Result<()> {
        let path = request.path().to_string();
        if self.pages >= self.max_pages {
            return Err(Error::PageLimit {
                uri: path,
                pages: self.pages,
                bytes: self.bytes,
                what: "pages",
            });
        }
        let client = request.client();
        let sibling = request.sibling();
        let response = request.send().await?.error_for_status()?;
        self.pages += 1;
        self.bytes += response.body.len() as u64;
        if self.bytes > self.max_bytes {
            return Err(Error::PageLimit {
                uri: path,
                pages: self.pages,
                bytes: self.bytes,
                what: "bytes",
            });
        }
        let page: Page<T> = response.json()?;
        self.items.extend(match page {
            Page::List(items) | Page::Search { items } => items,
        });
        if let Some(link) = next_link(&response.headers) {
            let relative = client.relative(&link).ok_or_else(|| Error::BadUri {
                uri: link.clone(),
                reason: "a next page on another host than the client's base: not followed".into(),
            })?;
            self.next = Some(sibling.at(relative));
        }
        Ok(())
    }
}

/// A page: a JSON array, or an object with an `items` array.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Page<T> {
    List(Vec<T>),
    Search { items: Vec<T> },
}

/// The URL a `Link` header calls `rel="next"`.
pub(super) fn next_link(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get_all(LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|part| {
            let (target, params) = part.trim().split_once('>')?;
            let target = target.trim().strip_prefix('<')?;
            let next = params.split(';').any(|param| {
                param
                    .trim()
                    .strip_prefix("rel=")
                    .map(|rel| rel.trim_matches('"'))
                    .is_some_and(|rel| rel.split_ascii_whitespace().any(|r| r == "next"))
            });
            next.then(|| target.to_string())
        })
}

#[cfg(test)]
mod tests {
    use super::next_link;

    #[test]
    fn the_next_link_is_found_among_the_others() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::LINK,
            r#"<https://api.github.com/x?page=1>; rel="prev", <https://api.github.com/x?page=3>; rel="next", <https://api.github.com/x?page=9>; rel="last""#
                .parse()
                .unwrap(),
        );
        assert_eq!(
            next_link(&headers).as_deref(),
            Some("https://api.github.com/x?page=3")
        );
        headers.insert(http::header::LINK, r#"<a>; rel="last""#.parse().unwrap());
        assert_eq!(next_link(&headers), None);
    }
}
