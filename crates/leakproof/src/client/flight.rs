//! Coalescing: at most one request per cache key and headers at a time (requests that
//! differ in a header may get different answers, so they never share). Concurrent GETs
//! of one key
//! (50 misses of one path, 50 reads of one stale entry) send one request, or one
//! conditional request; the others wait for it and share its answer.
//!
//! The same shape as `ttl-cache`'s single-flight loading, for responses the cache may
//! not keep (a `no-store` answer is shared with the calls that waited for it, and stored
//! for nobody). Each key in flight has a `Flight`: a FIFO async mutex around its outcome.
//! Whoever holds the mutex with no outcome recorded leads and sends the request; an
//! outcome, once recorded, is what every later holder returns. A leader that is dropped
//! (its caller cancelled, or its deadline passed) releases the mutex with nothing
//! recorded, so the next waiter leads.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use http::{Method, StatusCode};

use super::{ApiResponse, Source};
use crate::{Error, Result};

/// What waiters get: the leader's response, or what its error said.
type Outcome = std::result::Result<ApiResponse, (Option<StatusCode>, String)>;

struct Flight {
    outcome: tokio::sync::Mutex<Option<Outcome>>,
}

/// The keys with a request in flight now.
#[derive(Default)]
pub(crate) struct Flights(Mutex<HashMap<String, Arc<Flight>>>);

impl Flights {
    fn join(&self, key: &str) -> Arc<Flight> {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(key.to_string())
            .or_insert_with(|| {
                Arc::new(Flight {
                    outcome: tokio::sync::Mutex::new(None),
                })
            })
            .clone()
    }

    /// Keys in flight now.
    pub(crate) fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Runs `request` for `key` unless a request for it is in flight; then waits for that
    /// one and returns its answer (as [`Source::Shared`]), or, if it failed,
    /// [`Error::Shared`] (naming `uri`) with what its error said.
    pub(crate) async fn run<F>(
        &self,
        method: &Method,
        key: &str,
        uri: &str,
        request: impl FnOnce() -> F,
    ) -> Result<ApiResponse>
    where
        F: Future<Output = Result<ApiResponse>>,
    {
        let flight = self.join(key);
        let mut leaving = Leaving {
            flights: self,
            key,
            flight: &flight,
            done: false,
        };
        let mut outcome = flight.outcome.lock().await;
        if let Some(done) = outcome.as_ref() {
            leaving.done = true;
            return match done {
                Ok(response) => {
                    let mut shared = response.clone();
                    shared.source = Source::Shared;
                    Ok(shared)
                }
                Err((status, message)) => Err(Error::Shared {
                    method: method.clone(),
                    uri: uri.to_string(),
                    status: *status,
                    message: message.clone(),
                }),
            };
        }
        // Leading. Dropped here (cancelled): `outcome` unlocks with nothing recorded,
        // and the next waiter leads.
        let answered = request().await;
        leaving.done = true;
        *outcome = Some(match &answered {
            Ok(response) => Ok(response.clone()),
            Err(error) => Err((error.status(), error.to_string())),
        });
        answered
    }
}

/// Forgets a flight once it is done, or when its leader was cancelled and nobody waits.
struct Leaving<'a> {
    flights: &'a Flights,
    key: &'a str,
    flight: &'a Arc<Flight>,
    done: bool,
}

impl Drop for Leaving<'_> {
    fn drop(&mut self) {
        let mut map = self
            .flights
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let ours = map
            .get(self.key)
            .is_some_and(|f| Arc::ptr_eq(f, self.flight));
        // Done: later calls find the answer in the cache, or ask again. Not done (a
        // cancelled leader): kept while others wait on it (the map's and ours are the
        // only other handles when nobody does).
        if ours && (self.done || Arc::strong_count(self.flight) <= 2) {
            map.remove(self.key);
        }
    }
}
