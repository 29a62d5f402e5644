//! Random operation sequences against a plain model: a `HashMap` of values with their
//! expiry. The cache may forget (capacity), never misremember.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use ttl_cache::{Cache, Cause};

#[derive(Debug, Clone)]
enum Op {
    Insert(u8, u16),
    InsertTtl(u8, u16, u16),
    Get(u8),
    Remove(u8),
    Advance(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..24, any::<u16>()).prop_map(|(k, v)| Op::Insert(k, v)),
        1 => (0u8..24, any::<u16>(), 1u16..2000).prop_map(|(k, v, t)| Op::InsertTtl(k, v, t)),
        4 => (0u8..24).prop_map(Op::Get),
        1 => (0u8..24).prop_map(Op::Remove),
        2 => (0u16..1500).prop_map(Op::Advance),
    ]
}

/// Runs `ops` on a cache of `capacity` entries (TTL 1 s) and on the model.
fn check(ops: Vec<Op>, capacity: u64) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async move {
        // What the listener hears, for the inserts that are turned away.
        let heard = Arc::new(Mutex::new(Vec::new()));
        let log = heard.clone();
        let cache: Cache<u8, u16> = Cache::builder()
            .max_entries(capacity)
            .shards(1)
            .ttl(Duration::from_millis(1000))
            .eviction_listener(move |k, v, cause| log.lock().unwrap().push((*k, *v, cause)))
            .build();
        // key -> (value, expires at, in ms of simulated time)
        let mut model: HashMap<u8, (u16, u64)> = HashMap::new();
        let mut now = 0u64;
        let (mut gets, mut model_live_gets) = (0u64, 0u64);
        for op in ops {
            match op {
                Op::Insert(k, v) => {
                    heard.lock().unwrap().clear();
                    cache.insert(k, v);
                    model.insert(k, (v, now + 1000));
                    // Held, unless the admission rule turned it away (a key back soon
                    // after it left unread, while the cache is full): then the
                    // listener heard it leave at once, for capacity.
                    let turned_away = heard.lock().unwrap().contains(&(k, v, Cause::Capacity));
                    prop_assert!(capacity < 24 || !turned_away, "turned away with room");
                    let expected = (!turned_away).then_some(v);
                    prop_assert_eq!(cache.get(&k), expected, "just inserted");
                    gets += 1;
                    model_live_gets += 1;
                }
                Op::InsertTtl(k, v, t) => {
                    cache.insert_with_ttl(k, v, Duration::from_millis(t.into()));
                    model.insert(k, (v, now + u64::from(t)));
                }
                Op::Get(k) => {
                    let got = cache.get(&k);
                    gets += 1;
                    let live = model.get(&k).filter(|(_, exp)| now < *exp).map(|(v, _)| *v);
                    model_live_gets += u64::from(live.is_some());
                    match got {
                        // Whatever it returns is the live value: never expired, never old.
                        Some(v) => prop_assert_eq!(Some(v), live),
                        // It may forget only when capacity forced it to.
                        None if capacity >= 24 => prop_assert_eq!(live, None),
                        None => {}
                    }
                }
                Op::Remove(k) => {
                    cache.remove(&k);
                    model.remove(&k);
                    prop_assert_eq!(cache.get(&k), None);
                    gets += 1;
                }
                Op::Advance(ms) => {
                    tokio::time::advance(Duration::from_millis(ms.into())).await;
                    now += u64::from(ms);
                }
            }
            prop_assert!(cache.len() as u64 <= capacity, "bound held");
        }
        let stats = cache.stats();
        prop_assert_eq!(stats.hits + stats.misses, gets, "every lookup counted once");
        prop_assert!(stats.hits <= model_live_gets);
        if capacity >= 24 {
            prop_assert_eq!(
                stats.hits,
                model_live_gets,
                "nothing forgotten without pressure"
            );
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn never_misremembers_under_capacity_pressure(ops in prop::collection::vec(op(), 1..300)) {
        check(ops, 8)?;
    }

    #[test]
    fn forgets_nothing_it_has_room_for(ops in prop::collection::vec(op(), 1..300)) {
        check(ops, 24)?;
    }
}
