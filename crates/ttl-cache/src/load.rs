//! Single-flight loading: concurrent misses for one key run one loader; the others wait
//! for its outcome. If the loader's future is dropped (its caller cancelled), the next
//! waiter in line runs the load instead of waiting forever.
//!
//! Each key in flight has a `Flight`: a FIFO async mutex around its outcome. Whoever
//! holds the mutex with no outcome recorded is the leader and runs its loader; an
//! outcome, once recorded, is what every later holder returns. A leader that is dropped
//! releases the mutex with nothing recorded, so the next waiter leads.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::Cache;

type Erased = Arc<dyn Any + Send + Sync>;

struct Flight<V> {
    outcome: tokio::sync::Mutex<Option<Result<V, Erased>>>,
}

/// The keys being loaded now.
pub(crate) struct Flights<K, V>(Mutex<HashMap<K, Arc<Flight<V>>>>);

impl<K, V> Default for Flights<K, V> {
    fn default() -> Self {
        Flights(Mutex::new(HashMap::new()))
    }
}

impl<K: Hash + Eq + Clone, V> Flights<K, V> {
    fn join(&self, key: &K) -> Arc<Flight<V>> {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(key.clone())
            .or_insert_with(|| {
                Arc::new(Flight {
                    outcome: tokio::sync::Mutex::new(None),
                })
            })
            .clone()
    }

    /// Forgets `flight` if it is still the one for `key` and nobody else holds it.
    fn leave(&self, key: &K, flight: &Arc<Flight<V>>, done: bool) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let ours = map.get(key).is_some_and(|f| Arc::ptr_eq(f, flight));
        // Done: later callers find the value in the cache (or load again after an
        // error). Not done (a cancelled leader): keep it while others wait on it.
        if ours && (done || Arc::strong_count(flight) <= 2) {
            map.remove(key);
        }
    }

    fn contains(&self, key: &K) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(key)
    }

    /// Keys in flight now.
    pub(crate) fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// Removes a cancelled leader's flight when nobody waits on it.
struct Leaving<'a, K: Hash + Eq + Clone, V> {
    flights: &'a Flights<K, V>,
    key: &'a K,
    flight: &'a Arc<Flight<V>>,
    done: bool,
}

impl<K: Hash + Eq + Clone, V> Drop for Leaving<'_, K, V> {
    fn drop(&mut self) {
        self.flights.leave(self.key, self.flight, self.done);
    }
}

impl<K, V> Cache<K, V>
where
    K: Hash + Eq + Clone,
    V: Clone,
{
    /// The value for `key`, loading it with `loader` on a miss. Concurrent misses for
    /// the same key run one loader and share its outcome; a failed load caches nothing
    /// and every caller waiting on it gets the same error. If the caller running the
    /// loader is cancelled, the next waiter runs its own loader.
    pub async fn get_or_try_insert_with<F, Fut, E>(&self, key: K, loader: F) -> Result<V, Arc<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
        E: Send + Sync + 'static,
    {
        let ttl = self.inner_ttl();
        self.load(key, async move { loader().await.map(|v| (v, ttl)) }, true)
            .await
    }

    /// [`Cache::get_or_try_insert_with`] where the loader also says how long its value
    /// lives: negative caching (a 404 kept for a minute, a 200 for thirty).
    pub async fn get_or_try_insert_with_ttl<F, Fut, E>(
        &self,
        key: K,
        loader: F,
    ) -> Result<V, Arc<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(V, Duration), E>>,
        E: Send + Sync + 'static,
    {
        self.load(
            key,
            async move { loader().await.map(|(v, ttl)| (v, Some(ttl))) },
            true,
        )
        .await
    }

    /// Stale-while-revalidate: a fresh value is returned at once; so is a stale one
    /// (expired, within [`stale_for`](crate::Builder::stale_for)), while one refresh
    /// runs in the background (spawned on the current runtime; concurrent stale reads
    /// share it); with nothing held, `loader` runs as in
    /// [`Cache::get_or_try_insert_with`]. A failed refresh leaves the stale value in
    /// place until it is past keeping.
    pub async fn get_or_refresh<F, Fut, E>(&self, key: K, loader: F) -> Result<V, Arc<E>>
    where
        K: Send + Sync + 'static,
        V: Send + Sync + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
        E: Send + Sync + 'static,
    {
        match self.get_maybe_stale(&key) {
            Some((value, true)) => Ok(value),
            Some((value, false)) => {
                self.inner.stale_served.fetch_add(1, Ordering::Relaxed);
                let runtime = tokio::runtime::Handle::try_current();
                if let (false, Ok(runtime)) = (self.inner.flights.contains(&key), runtime) {
                    let (cache, ttl) = (self.clone(), self.inner_ttl());
                    runtime.spawn(async move {
                        let fresh = async move { loader().await.map(|v| (v, ttl)) };
                        if cache.load(key, fresh, false).await.is_err() {
                            tracing::debug!(
                                "ttl-cache: background refresh failed; stale value kept"
                            );
                        }
                    });
                }
                Ok(value)
            }
            None => {
                let ttl = self.inner_ttl();
                self.load(key, async move { loader().await.map(|v| (v, ttl)) }, false)
                    .await
            }
        }
    }

    /// The single-flight load; `look_first` checks the cache before joining a flight
    /// (callers that just looked, and counted the miss, skip it).
    async fn load<Fut, E>(&self, key: K, loader: Fut, look_first: bool) -> Result<V, Arc<E>>
    where
        Fut: Future<Output = Result<(V, Option<Duration>), E>>,
        E: Send + Sync + 'static,
    {
        if look_first && let Some(value) = self.get(&key) {
            return Ok(value);
        }
        let flights = &self.inner.flights;
        let flight = flights.join(&key);
        let mut leaving = Leaving {
            flights,
            key: &key,
            flight: &flight,
            done: false,
        };
        let mut outcome = flight.outcome.lock().await;
        if let Some(done) = outcome.as_ref() {
            leaving.done = true;
            match done {
                Ok(value) => return Ok(value.clone()),
                Err(error) => {
                    if let Ok(error) = error.clone().downcast::<E>() {
                        return Err(error);
                    }
                    // Another caller's loader failed with another error type: load.
                }
            }
        }
        // Leading. A flight that just ended may have filled the cache: look again,
        // quietly (the miss is counted already).
        if let Some(value) = self.peek_live(&key) {
            *outcome = Some(Ok(value.clone()));
            leaving.done = true;
            return Ok(value);
        }
        self.inner.loads.fetch_add(1, Ordering::Relaxed);
        // Dropped here (cancelled): `outcome` unlocks with nothing recorded, and the
        // next waiter leads.
        let loaded = loader.await;
        leaving.done = true;
        match loaded {
            Ok((value, ttl)) => {
                self.insert_entry(key.clone(), value.clone(), ttl);
                *outcome = Some(Ok(value.clone()));
                Ok(value)
            }
            Err(error) => {
                self.inner.load_failures.fetch_add(1, Ordering::Relaxed);
                let error = Arc::new(error);
                *outcome = Some(Err(error.clone() as Erased));
                tracing::debug!("ttl-cache: load failed; nothing cached");
                Err(error)
            }
        }
    }

    /// Keys being loaded now (a cancelled load with nobody waiting leaves none behind).
    pub fn loads_in_flight(&self) -> usize {
        self.inner.flights.len()
    }
}
