//! One gate per key (token, host, route group), with idle keys evicted.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};

use crate::{Feedback, Gate, GateBuilder, Permit, Result};

/// A gate per key, all built alike: e.g. one per GitHub token, or per route group
/// ("core", "search", "write"). Memory stays bounded by the keys that still matter: a
/// key is evicted only once its gate is indistinguishable from a fresh one (quota
/// refilled, no server pause or budget standing, nobody holding a permit), so eviction
/// never grants more than keeping the key would have. Eviction is amortised: a sweep runs
/// whenever the map has doubled since the last one.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), rate_gate::Error> {
/// use rate_gate::{Gate, KeyedGate, Quota};
///
/// let per_token = KeyedGate::new(Gate::builder().quota(Quota::per_hour(5000)).concurrency(100));
/// let permit = per_token.acquire(&"token-a").await?;
/// drop(permit);
/// assert_eq!(per_token.len(), 1);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct KeyedGate<K> {
    builder: GateBuilder,
    map: Arc<Mutex<Keys<K>>>,
}

impl<K> Clone for KeyedGate<K> {
    fn clone(&self) -> Self {
        KeyedGate {
            builder: self.builder.clone(),
            map: self.map.clone(),
        }
    }
}

#[derive(Debug)]
struct Keys<K> {
    gates: HashMap<K, Gate>,
    swept_at_len: usize,
}

impl<K: Hash + Eq + Clone> KeyedGate<K> {
    /// A keyed gate whose gates are built by `builder`.
    pub fn new(builder: GateBuilder) -> Self {
        KeyedGate {
            builder,
            map: Arc::new(Mutex::new(Keys {
                gates: HashMap::new(),
                swept_at_len: 64,
            })),
        }
    }

    /// The gate for `key`, created on first use.
    pub fn gate(&self, key: &K) -> Gate {
        let mut keys = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(gate) = keys.gates.get(key) {
            return gate.clone();
        }
        if keys.gates.len() >= 2 * keys.swept_at_len {
            keys.gates.retain(|_, gate| !gate.is_pristine());
            keys.swept_at_len = keys.gates.len().max(64);
            tracing::debug!(keys = keys.gates.len(), "rate-gate: evicted idle keys");
        }
        let gate = self.builder.build();
        keys.gates.insert(key.clone(), gate.clone());
        gate
    }

    /// Waits for a permit for `key`.
    pub async fn acquire(&self, key: &K) -> Result<Permit<'static>> {
        self.gate(key).acquire_owned().await
    }

    /// Takes the server's word for `key`.
    pub fn observe(&self, key: &K, feedback: Feedback) {
        self.gate(key).observe(feedback);
    }

    /// Keys held now (including idle ones not yet swept).
    pub fn len(&self) -> usize {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .gates
            .len()
    }

    /// `true` when no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
