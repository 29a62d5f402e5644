//! One shard's entries and their eviction order: S3-FIFO (Yang et al., "FIFO queues are
//! all you need for cache eviction", SOSP 2023) over a dense slab.
//!
//! - New keys go to the tail of a **small** FIFO (0.5% of the bound). When it is
//!   over its share, its head leaves: to the **main** FIFO if it was read since it was
//!   written, out of the cache otherwise (its hash goes to the **ghost** FIFO).
//! - A new key whose hash is in the ghost (it was evicted from the small FIFO not long
//!   ago, and it is back) goes straight to main if an unread entry is near main's head
//!   for it to replace (an admission rule of ours, after TinyLFU's: see `admit`).
//! - Main's head leaves the cache unless it was read; if it was, it goes back to the
//!   tail with one read fewer (reads count up to 3).
//!
//! So a burst of one-off keys passes through the small FIFO without pushing hot keys
//! out of main, and a read only sets a counter: it needs no exclusive lock and moves
//! nothing.
//!
//! Layout: entries live in one `Vec` (removal swaps the last one into the hole), the
//! two FIFOs are doubly linked lists of `u32` indices inside it, and the lookup table
//! holds only the `u32` index. An entry costs its key, its value, 32 bytes of its own
//! and about 5 to 10 bytes of table; nothing is allocated per entry.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use hashbrown::HashTable;

use crate::cache::Validators;

/// No index: the end of a list.
const NIL: u32 = u32::MAX;
/// Reads counted per entry, at most: main's head gets this many second chances.
const MAX_FREQ: u8 = 3;
/// The small FIFO's share of the bound, in thousandths (0.5%; moka's window is 1%).
/// Measured on the three traces in `BENCHMARKS.md` with the admission rule below, Zipf
/// / scans / loop: 1% gave 79.18 / 70.90 / 88.97%, 0.5% 79.18 / 70.89 / 89.40%, 0.2%
/// 79.20 / 70.87 / 89.68% (the scans at quick_cache's 70.87-70.88%), 3% lost 0.1 point
/// on Zipf and 1.8 on the loop. With `newest_first` (see `admit`; ghost at 50%): 0.5%
/// 79.21 / 70.89 / 89.85%, 0.3% 79.20 / 70.87 / 90.06%, 0.2% 79.18 / 70.88 / 90.14%.
/// Without the rule, the paper's 10% (and a ghost as long as the entries held) gave
/// 78.2% on Zipf and 67% on the loop. On a loop, small's share never hits, and without
/// `newest_first` the first two rounds missed while main filled (about 1.1 points of
/// 2,000,000 gets). Moving small's unread overflow to main at that first fill won 0.5
/// on the loop but lost 0.17 on the scans (the one-off keys it kept lingered in main),
/// so it is not done.
const SMALL_PERMILLE: u64 = 5;
/// How many of main's entries a key back from the ghost may pass over, looking for an
/// unread one to replace, before it is sent to small instead. 1 lost 0.3 points on the
/// scans; 8 no better than 4.
const ADMIT_STEPS: usize = 4;
/// The ghost FIFO's length, in percent of the entries held (quick_cache's is 50%).
/// With the admission rule and `newest_first`, Zipf / scans (the loop stayed at 89.85%):
/// 40% 79.11 / 70.77, 50% 79.20 / 70.89, 60% 79.20 / 71.01, 65% 79.19-79.21 /
/// 71.03-71.05, 70% 79.20 / 71.05, 80% 79.15 / 71.07, 100% 79.05 / 71.14: a longer
/// ghost remembers the Zipf keys that a scan's one-off keys would push out of it, and
/// from 80% it starts to admit keys that come back too rarely. Its memory, for a
/// million entries held (live heap, once full): 13.6 bytes per entry at 50%, 17.8 at
/// 55 or 60%, 27.3 at 65% (the table's buckets double). Without the admission rule,
/// 200 to 300% lost 0.5 to 0.9 on Zipf for 1 to 3 more on the loop.
const GHOST_PERCENT: usize = 60;

/// Which FIFO holds an entry.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Queue {
    Small = 0,
    Main = 1,
    /// Taken out for a moment (while its value is replaced).
    None = 2,
}

/// One entry's value and times. Times are nanoseconds since the cache's epoch
/// (`u64::MAX`: never).
pub(crate) struct Entry<V> {
    pub(crate) value: V,
    pub(crate) expires: u64,
    /// The last read, for time-to-idle (written only when a TTI is set).
    pub(crate) touched: AtomicU64,
    pub(crate) weight: u32,
    /// Reads since it was written or last given a second chance, up to `MAX_FREQ`.
    freq: AtomicU8,
    queue: Queue,
    /// Its validators are in the store's side table.
    has_validators: bool,
}

impl<V> Entry<V> {
    pub(crate) fn new(value: V, expires: u64, touched: u64, weight: u32) -> Self {
        Entry {
            value,
            expires,
            touched: AtomicU64::new(touched),
            weight,
            freq: AtomicU8::new(0),
            queue: Queue::None,
            has_validators: false,
        }
    }

    /// Counts a read: a load and, below the cap, a store (no read-modify-write, so a
    /// hot entry's line is not written at all once it is at the cap).
    #[inline]
    pub(crate) fn read(&self) {
        let f = self.freq.load(Ordering::Relaxed);
        if f < MAX_FREQ {
            self.freq.store(f + 1, Ordering::Relaxed);
        }
    }

    pub(crate) fn touched(&self) -> u64 {
        self.touched.load(Ordering::Relaxed)
    }
}

struct Slot<K, V> {
    key: K,
    entry: Entry<V>,
    prev: u32,
    next: u32,
}

#[derive(Default)]
struct List {
    head: u32,
    tail: u32,
    len: u32,
    weight: u64,
}

impl List {
    fn new() -> Self {
        List {
            head: NIL,
            tail: NIL,
            len: 0,
            weight: 0,
        }
    }
}

/// Hashes of keys evicted from the small FIFO, oldest first, at most about as many
/// as the store holds. Approximate: a hash found is taken out of the set and left in
/// the FIFO, so when that copy comes round it may take out a later copy early.
struct Ghost {
    order: VecDeque<u64>,
    set: HashTable<u64>,
}

impl Ghost {
    fn push(&mut self, hash: u64, cap: usize) {
        if self.set.find(hash, |&h| h == hash).is_some() {
            return;
        }
        while self.order.len() >= cap {
            match self.order.pop_front() {
                Some(old) => {
                    if let Ok(e) = self.set.find_entry(old, |&h| h == old) {
                        e.remove();
                    }
                }
                None => break,
            }
        }
        self.order.push_back(hash);
        self.set.insert_unique(hash, hash, |&h| h);
    }

    /// `true` (and forgets it) if `hash` is here.
    fn take(&mut self, hash: u64) -> bool {
        match self.set.find_entry(hash, |&h| h == hash) {
            Ok(e) => {
                e.remove();
                true
            }
            Err(_) => false,
        }
    }
}

/// A shard's entries, in S3-FIFO order. `S` hashes keys the way the cache does (the
/// cache passes each key's hash in, and the store rehashes only to move entries).
pub(crate) struct Store<K, V, S> {
    slots: Vec<Slot<K, V>>,
    table: HashTable<u32>,
    small: List,
    main: List,
    ghost: Ghost,
    /// Validators, by slot, for the entries that have them.
    validators: HashMap<u32, Validators>,
    hasher: S,
}

/// Where [`Store::admit`] sends a key that is not held, and where its room comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Admission {
    /// To main (`true`) or to small.
    pub(crate) to_main: bool,
    /// Room from small's newest entries instead of its oldest (a key back from the
    /// ghost during a first fill): pass it to [`Store::victim`].
    pub(crate) newest_first: bool,
}

impl<K: Hash + Eq, V, S: BuildHasher> Store<K, V, S> {
    pub(crate) fn new(hasher: S) -> Self {
        Store {
            slots: Vec::new(),
            table: HashTable::new(),
            small: List::new(),
            main: List::new(),
            ghost: Ghost {
                order: VecDeque::new(),
                set: HashTable::new(),
            },
            validators: HashMap::new(),
            hasher,
        }
    }

    /// Room for `n` entries without growing (the table's control bytes are written now,
    /// one per bucket; the entries' memory is touched only as it fills).
    pub(crate) fn reserve(&mut self, n: usize) {
        self.slots.reserve_exact(n);
        let Store {
            table,
            slots,
            hasher,
            ..
        } = self;
        table.reserve(n, |&j| hasher.hash_one(&slots[j as usize].key));
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Weight held in the two FIFOs.
    pub(crate) fn weight(&self) -> u64 {
        self.small.weight + self.main.weight
    }

    #[inline]
    pub(crate) fn find(&self, hash: u64, key: &K) -> Option<u32> {
        let slots = &self.slots;
        self.table
            .find(hash, |&i| slots[i as usize].key == *key)
            .copied()
    }

    #[inline]
    pub(crate) fn entry(&self, i: u32) -> &Entry<V> {
        &self.slots[i as usize].entry
    }

    pub(crate) fn entry_mut(&mut self, i: u32) -> &mut Entry<V> {
        &mut self.slots[i as usize].entry
    }

    pub(crate) fn validators(&self, i: u32) -> Option<&Validators> {
        if self.slots[i as usize].entry.has_validators {
            self.validators.get(&i)
        } else {
            None
        }
    }

    pub(crate) fn set_validators(&mut self, i: u32, validators: Option<Validators>) {
        let entry = &mut self.slots[i as usize].entry;
        entry.has_validators = validators.is_some();
        match validators {
            Some(v) => {
                self.validators.insert(i, v);
            }
            None => {
                self.validators.remove(&i);
            }
        }
    }

    /// The key at `i`.
    pub(crate) fn key(&self, i: u32) -> &K {
        &self.slots[i as usize].key
    }

    fn list(&mut self, q: Queue) -> &mut List {
        match q {
            Queue::Small => &mut self.small,
            _ => &mut self.main,
        }
    }

    fn link(&mut self, i: u32, q: Queue) {
        let tail = self.list(q).tail;
        {
            let slot = &mut self.slots[i as usize];
            slot.prev = tail;
            slot.next = NIL;
            slot.entry.queue = q;
        }
        if tail == NIL {
            self.list(q).head = i;
        } else {
            self.slots[tail as usize].next = i;
        }
        let weight = u64::from(self.slots[i as usize].entry.weight);
        let list = self.list(q);
        list.tail = i;
        list.len += 1;
        list.weight += weight;
    }

    /// In list `q`, what pointed forward to the entry after `prev` now points to
    /// `after_prev`, and what pointed back from `next` now points to `before_next` (the
    /// list's head and tail when `prev` or `next` is the end).
    fn repoint(&mut self, q: Queue, prev: u32, next: u32, after_prev: u32, before_next: u32) {
        if prev == NIL {
            self.list(q).head = after_prev;
        } else {
            self.slots[prev as usize].next = after_prev;
        }
        if next == NIL {
            self.list(q).tail = before_next;
        } else {
            self.slots[next as usize].prev = before_next;
        }
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next, q, weight) = {
            let s = &self.slots[i as usize];
            (s.prev, s.next, s.entry.queue, u64::from(s.entry.weight))
        };
        if q == Queue::None {
            return;
        }
        self.repoint(q, prev, next, next, prev);
        let list = self.list(q);
        list.len -= 1;
        list.weight -= weight;
        let slot = &mut self.slots[i as usize];
        slot.entry.queue = Queue::None;
        slot.prev = NIL;
        slot.next = NIL;
    }

    /// Where a key that is not held goes, decided before room is made for it: to main
    /// (`true`) if its hash is in the ghost and main can take it without losing an
    /// entry read since main's hand last passed it: there is room, or one of main's
    /// first `ADMIT_STEPS` entries is unread (each read one passed over has one read
    /// fewer and goes to the tail). Otherwise the key goes to small. So a working set
    /// read round and round stays in main instead of being churned by keys that come
    /// back no more often than it is read (a loop 10% larger than the cache: 79% hits
    /// without this rule, 89% with it).
    ///
    /// While small holds over a quarter of the bound (the cache's first fill, or a
    /// refill after removals), a key admitted here takes its room from small's newest
    /// entries instead of its oldest ([`Admission::newest_first`]): on a loop the
    /// oldest are the keys read next, and FIFO order evicted each one just before its
    /// read, so the whole second round missed (89.40 to 89.85% on the loop trace; a
    /// quarter rather than a half or seven eighths: Zipf 79.21 against 79.17-79.19%,
    /// scans 70.89 against 70.82-70.87%).
    pub(crate) fn admit(&mut self, hash: u64, need: u64, limit: u64) -> Admission {
        if !self.ghost.take(hash) {
            return Admission::default();
        }
        let to_main = Admission {
            to_main: true,
            newest_first: self.small.weight > limit / 4,
        };
        let head = self.main.head;
        if head == NIL || self.weight().saturating_add(need) <= limit {
            return to_main;
        }
        for _ in 0..ADMIT_STEPS {
            let head = self.main.head;
            let e = &self.slots[head as usize].entry;
            let freq = e.freq.load(Ordering::Relaxed);
            if freq == 0 {
                return to_main;
            }
            e.freq.store(freq - 1, Ordering::Relaxed);
            self.unlink(head);
            self.link(head, Queue::Main);
        }
        Admission::default()
    }

    /// Adds a key that is not held, to main or small as [`Store::admit`] said. Returns
    /// its index. The caller made room first.
    pub(crate) fn insert(&mut self, hash: u64, key: K, entry: Entry<V>, to_main: bool) -> u32 {
        let Ok(i) = u32::try_from(self.slots.len()) else {
            // The caller's room-making keeps a shard under `u32::MAX - 1` entries.
            unreachable!("a shard holds fewer than u32::MAX entries")
        };
        self.slots.push(Slot {
            key,
            entry,
            prev: NIL,
            next: NIL,
        });
        let Store {
            table,
            slots,
            hasher,
            ..
        } = self;
        table.insert_unique(hash, i, |&j| hasher.hash_one(&slots[j as usize].key));
        self.link(i, if to_main { Queue::Main } else { Queue::Small });
        i
    }

    /// Gives the entry at `i` (whose key hashes to `hash`) a new value and times,
    /// keeping its read count; it goes to the tail of its FIFO (a write is a fresh
    /// start) after `make_room` has run with it out of the way. Returns the old entry
    /// and the index the entry has now.
    pub(crate) fn replace(
        &mut self,
        hash: u64,
        i: u32,
        mut entry: Entry<V>,
        make_room: impl FnOnce(&mut Self, u64),
    ) -> (Entry<V>, Option<u32>) {
        let q = self.slots[i as usize].entry.queue;
        self.unlink(i);
        let weight = u64::from(entry.weight);
        let slot = &mut self.slots[i as usize];
        entry.freq = AtomicU8::new(slot.entry.freq.load(Ordering::Relaxed));
        entry.has_validators = slot.entry.has_validators;
        let old = std::mem::replace(&mut slot.entry, entry);
        make_room(self, weight);
        // `make_room` removes linked entries only, but a removal may move this one to
        // another index: it is the one unlinked entry under its hash.
        let slots = &self.slots;
        let i = self
            .table
            .find(hash, |&j| slots[j as usize].entry.queue == Queue::None)
            .copied();
        if let Some(i) = i {
            self.link(i, if q == Queue::None { Queue::Small } else { q });
        }
        (old, i)
    }

    /// Removes the entry at `i`; gives back its key, its entry and its validators.
    pub(crate) fn remove(&mut self, i: u32) -> (K, Entry<V>, Option<Validators>) {
        self.unlink(i);
        let hash = self.hasher.hash_one(&self.slots[i as usize].key);
        if let Ok(e) = self.table.find_entry(hash, |&j| j == i) {
            e.remove();
        }
        let validators = if self.slots[i as usize].entry.has_validators {
            self.validators.remove(&i)
        } else {
            None
        };
        let last = (self.slots.len() - 1) as u32;
        let slot = self.slots.swap_remove(i as usize);
        if i != last {
            // The last slot moved into `i`: point its table entry, its neighbours (or
            // its list's ends) and its validators at the new index.
            let hash = self.hasher.hash_one(&self.slots[i as usize].key);
            if let Some(j) = self.table.find_mut(hash, |&j| j == last) {
                *j = i;
            }
            let (prev, next, q, has) = {
                let s = &self.slots[i as usize];
                (s.prev, s.next, s.entry.queue, s.entry.has_validators)
            };
            if q != Queue::None {
                self.repoint(q, prev, next, i, i);
            }
            if has && let Some(v) = self.validators.remove(&last) {
                self.validators.insert(i, v);
            }
        }
        (slot.key, slot.entry, validators)
    }

    /// The oldest entry of each FIFO (for the expiry check after a write).
    pub(crate) fn heads(&self) -> impl Iterator<Item = u32> {
        [self.small.head, self.main.head]
            .into_iter()
            .filter(|&i| i != NIL)
    }

    /// Chooses the next entry to leave for room, by S3-FIFO, or `None` if no entry is
    /// linked. `dead` entries are chosen as soon as they come up, whatever their reads.
    /// `limit` is the shard's bound: the small FIFO's share is `SMALL_PERMILLE` of it.
    /// `newest_first` takes small's newest entries first ([`Admission::newest_first`]).
    pub(crate) fn victim(
        &mut self,
        limit: u64,
        newest_first: bool,
        dead: impl Fn(&Entry<V>) -> bool,
    ) -> Option<u32> {
        loop {
            let small_first = self.small.head != NIL
                && (self.small.weight > limit.saturating_mul(SMALL_PERMILLE) / 1000
                    || self.main.head == NIL);
            if small_first {
                let i = if newest_first {
                    self.small.tail
                } else {
                    self.small.head
                };
                let e = &self.slots[i as usize].entry;
                let (freq, is_dead) = (e.freq.load(Ordering::Relaxed), dead(e));
                if freq > 0 && !is_dead {
                    e.freq.store(0, Ordering::Relaxed);
                    self.unlink(i);
                    self.link(i, Queue::Main);
                    continue;
                }
                if !is_dead {
                    let hash = self.hasher.hash_one(&self.slots[i as usize].key);
                    let cap = (self.slots.len() * GHOST_PERCENT / 100).max(16);
                    self.ghost.push(hash, cap);
                }
                return Some(i);
            }
            let i = self.main.head;
            if i == NIL {
                return None;
            }
            let e = &self.slots[i as usize].entry;
            let freq = e.freq.load(Ordering::Relaxed);
            if freq > 0 && !dead(e) {
                e.freq.store(freq - 1, Ordering::Relaxed);
                self.unlink(i);
                self.link(i, Queue::Main);
                continue;
            }
            return Some(i);
        }
    }

    /// Entries in the ghost FIFO (for the memory figures in the docs' tests).
    #[cfg(test)]
    pub(crate) fn ghost_len(&self) -> usize {
        self.ghost.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type S = foldhash::fast::FixedState;

    fn store() -> Store<u64, u64, S> {
        Store::new(S::with_seed(7))
    }

    fn put(s: &mut Store<u64, u64, S>, k: u64, limit: u64) -> Vec<u64> {
        let h = s.hasher.hash_one(k);
        let admission = s.admit(h, 1, limit);
        let mut gone = Vec::new();
        while s.weight() + 1 > limit {
            let i = s.victim(limit, admission.newest_first, |_| false).unwrap();
            gone.push(s.remove(i).0);
        }
        s.insert(h, k, Entry::new(k, u64::MAX, 0, 1), admission.to_main);
        gone
    }

    fn get(s: &Store<u64, u64, S>, k: u64) -> bool {
        let h = s.hasher.hash_one(k);
        s.find(h, &k).map(|i| s.entry(i).read()).is_some()
    }

    /// Every index, link and table entry agrees after any mix of operations.
    fn consistent(s: &Store<u64, u64, S>) {
        let mut seen = 0;
        for (list, q) in [(&s.small, Queue::Small), (&s.main, Queue::Main)] {
            let (mut i, mut prev, mut n, mut w) = (list.head, NIL, 0, 0);
            while i != NIL {
                let slot = &s.slots[i as usize];
                assert_eq!((slot.prev, slot.entry.queue), (prev, q));
                w += u64::from(slot.entry.weight);
                n += 1;
                prev = i;
                i = slot.next;
            }
            assert_eq!((list.tail, list.len, list.weight), (prev, n, w));
            seen += n;
        }
        assert_eq!(seen as usize, s.len());
        for (i, slot) in s.slots.iter().enumerate() {
            let h = s.hasher.hash_one(slot.key);
            assert_eq!(s.find(h, &slot.key), Some(i as u32));
        }
        assert_eq!(s.table.len(), s.len());
    }

    #[test]
    fn a_scan_of_one_off_keys_leaves_the_hot_keys_alone() {
        let mut s = store();
        for k in 0..100 {
            put(&mut s, k, 100);
        }
        for k in 0..50 {
            get(&s, k);
        }
        // Ten thousand keys read once each, never again.
        for k in 1000..11_000 {
            put(&mut s, k, 100);
            consistent(&s);
        }
        let kept = (0..50).filter(|&k| get(&s, k)).count();
        assert_eq!(kept, 50, "every hot key survived the scan");
    }

    /// A loop 10% larger than the cache: FIFO order evicts each key just before it is
    /// read again, so without `newest_first` the whole second round missed too.
    #[test]
    fn a_loop_larger_than_the_cache_hits_from_its_second_round() {
        let mut s = store();
        let (limit, keys) = (1000, 1100);
        let mut rounds = Vec::new();
        for _ in 0..6 {
            let mut hits = 0;
            for k in 0..keys {
                if get(&s, k) {
                    hits += 1;
                } else {
                    put(&mut s, k, limit);
                }
            }
            rounds.push(hits);
        }
        consistent(&s);
        assert_eq!(rounds[0], 0);
        assert!(rounds[1] >= 850, "second round: {rounds:?}");
        assert!(rounds[5] >= 980, "a round once settled: {rounds:?}");
    }

    #[test]
    fn a_key_back_soon_after_eviction_goes_to_main() {
        let mut s = store();
        for k in 0..20 {
            put(&mut s, k, 10);
        }
        // 0 was evicted from small unread: its hash is in the ghost.
        let h = s.hasher.hash_one(0u64);
        assert!(s.find(h, &0).is_none());
        put(&mut s, 0, 10);
        let i = s.find(h, &0).unwrap();
        assert_eq!(s.entry(i).queue, Queue::Main);
        assert!(s.ghost_len() <= 16);
        consistent(&s);
    }

    #[test]
    fn removal_from_anywhere_keeps_the_lists_whole() {
        let mut s = store();
        for k in 0..64 {
            put(&mut s, k, 32);
            if k % 3 == 0 {
                get(&s, k);
            }
        }
        for k in (0..64).step_by(5) {
            let h = s.hasher.hash_one(k);
            if let Some(i) = s.find(h, &k) {
                s.remove(i);
            }
            consistent(&s);
        }
        let i = s.find(s.hasher.hash_one(63u64), &63).unwrap();
        s.set_validators(i, Some(Validators::new(Some("e".into()), None)));
        let last = s.find(s.hasher.hash_one(62u64), &62).unwrap();
        s.remove(last);
        let i = s.find(s.hasher.hash_one(63u64), &63).unwrap();
        assert_eq!(s.validators(i).and_then(|v| v.etag.as_deref()), Some("e"));
        consistent(&s);
    }

    #[test]
    fn random_writes_reads_removals_and_replacements_keep_every_link() {
        let mut s = store();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let limit = 40;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = x % 64;
            let h = s.hasher.hash_one(k);
            let weight = (x >> 8) as u32 % 5;
            match (x >> 16) % 4 {
                0 => {
                    get(&s, k);
                }
                1 => {
                    if let Some(i) = s.find(h, &k) {
                        s.remove(i);
                    }
                }
                _ => match s.find(h, &k) {
                    Some(i) => {
                        let (old, now) =
                            s.replace(h, i, Entry::new(k, u64::MAX, 0, weight), |s, need| {
                                while s.weight() + need > limit {
                                    let Some(v) = s.victim(limit, false, |_| false) else {
                                        break;
                                    };
                                    s.remove(v);
                                }
                            });
                        assert_eq!(old.value, k);
                        let i = now.expect("a replaced entry is relinked");
                        s.set_validators(i, (weight == 0).then(Validators::default));
                    }
                    None => {
                        let admission = s.admit(h, u64::from(weight), limit);
                        while s.weight() + u64::from(weight) > limit {
                            let v = s.victim(limit, admission.newest_first, |_| false).unwrap();
                            s.remove(v);
                        }
                        s.insert(h, k, Entry::new(k, u64::MAX, 0, weight), admission.to_main);
                    }
                },
            }
            consistent(&s);
            assert!(s.weight() <= limit);
            for (i, slot) in s.slots.iter().enumerate() {
                assert_eq!(slot.entry.value, slot.key, "values stay with their keys");
                assert_eq!(
                    slot.entry.has_validators,
                    s.validators.contains_key(&(i as u32))
                );
            }
            assert_eq!(
                s.validators.len(),
                s.slots.iter().filter(|x| x.entry.has_validators).count()
            );
        }
    }
}
