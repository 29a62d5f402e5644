//! One shard's entries and their eviction order: S3-FIFO (Yang et al., "FIFO queues are
//! all you need for cache eviction", SOSP 2023) over a dense slab.
//!
//! - New keys go to the tail of a **small** FIFO (0.5% of the bound). When it is
//!   over its share, its head leaves: to the **main** FIFO if it was read since it was
//!   written, out of the cache otherwise (its hash goes to the **ghost** FIFO).
//! - A new key whose hash is in the ghost (it was evicted from the small FIFO not long
//!   ago, and it is back) goes straight to main if an unread entry is near main's head
//!   for it to replace, and is not held at all otherwise (an admission rule of ours,
//!   after TinyLFU's: see `admit`).
//! - Main's head leaves the cache unless it was read; if it was, it goes back to the
//!   tail with one read fewer (reads count up to 3).
//!
//! So a burst of one-off keys passes through the small FIFO without pushing hot keys
//! out of main, and a read only sets a counter: it needs no exclusive lock and moves
//! nothing.
//!
//! Layout: entries live in one `Vec` (removal swaps the last one into the hole), the
//! two FIFOs are doubly linked lists of 29-bit indices inside it, and the lookup table
//! holds only the `u32` index. A slot is the key, the value, the expiry and two 32-bit
//! words: the previous index with the entry's queue and validators flag, and the next
//! index with its read count (an atomic word, since reads count under the read lock).
//! With `u64` keys and values that is 32 bytes, two slots to a cache line: a hit reads
//! one line. The last read (time-to-idle) and the weight live in arrays beside it, kept
//! only when the cache has a time-to-idle or a weigher. So an entry costs its key, its
//! value, 16 bytes of its own and about 5 to 10 bytes of table; nothing is allocated
//! per entry.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use hashbrown::HashTable;

use crate::cache::Validators;

/// Bits of a slot's index in its link words: a shard holds fewer than `NIL` entries.
const INDEX_BITS: u32 = 29;
/// No index: the end of a list.
pub(crate) const NIL: u32 = (1 << INDEX_BITS) - 1;
/// Where the queue sits in `Slot::prev`, and the validators flag above it.
const QUEUE_SHIFT: u32 = INDEX_BITS;
const HAS_VALIDATORS: u32 = 1 << 31;
/// Where the read count sits in `Slot::next`.
const FREQ_SHIFT: u32 = 30;
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
///
/// Where the loop's misses came from (2026-12-03, 32 shards of 312 or 313 entries, as
/// on the 2-CPU machine behind `BENCHMARKS.md`): after the first two rounds a round
/// missed 1,064 of 11,000 keys, where a frozen cache of 10,000 would miss 1,000. Each
/// shard's small FIFO kept an entry or two that a loop never reads: the keys beyond
/// the bound, each sent to small again on its return. Letting shards lend each other
/// room under the one bound was measured on a copy and not kept (89.78%). Turning such
/// a key away instead (`Admission::Reject`) first measured 89.80%, while its hash was
/// taken out of the ghost: it went through small again on its next return. With the
/// hash kept (2026-12-04) a settled round misses exactly the keys the shards' bounds
/// cannot hold, and small's share no longer matters on the loop (Zipf / scans / loop,
/// median of 6 caches at 32 shards: 0.1% 79.20 / 70.98 / 90.33%, 0.2% 79.21 / 70.99 /
/// 90.23%, 0.5% 79.19 / 70.99 / 90.32%, 1% 79.16 / 71.00 / 90.33%). What is left is
/// the shards' unequal shares of the keys (see `MIN_SHARD_ENTRIES` in `cache.rs`).
/// A 0.1% small FIFO is not taken: a key read twice in quick succession would leave
/// it before its second read, a case these traces do not measure.
const SMALL_PERMILLE: u64 = 5;
/// How many of main's entries a key back from the ghost may pass over, looking for an
/// unread one to replace, before it is turned away. 1 lost 0.3 points on the scans
/// (when such a key went to small instead); 8 no better than 4.
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

impl Queue {
    fn from_bits(bits: u32) -> Self {
        match bits & 3 {
            0 => Queue::Small,
            1 => Queue::Main,
            _ => Queue::None,
        }
    }
}

/// An entry's value and times as the cache hands them to the store and gets them back.
/// Times are nanoseconds since the cache's epoch (`u64::MAX`: never).
pub(crate) struct Entry<V> {
    pub(crate) value: V,
    pub(crate) expires: u64,
    /// The last read or write, for time-to-idle (kept only when a TTI is set).
    pub(crate) touched: u64,
    pub(crate) weight: u32,
}

impl<V> Entry<V> {
    pub(crate) fn new(value: V, expires: u64, touched: u64, weight: u32) -> Self {
        Entry {
            value,
            expires,
            touched,
            weight,
        }
    }
}

/// A held entry, as a lookup sees it (under the shard's read lock).
pub(crate) struct Live<'a, V> {
    pub(crate) value: &'a V,
    pub(crate) expires: u64,
    /// `None`: the cache has no time-to-idle.
    touched: Option<&'a AtomicU64>,
    next: &'a AtomicU32,
}

impl<V> Live<'_, V> {
    /// Counts a read, up to `MAX_FREQ`: a load and, below the cap, a store of the same
    /// word with the count one higher (no read-modify-write, so a hot entry's line is not
    /// written at all once it is at the cap). Readers racing may count one read between
    /// them; the index bits are only written under the write lock, so every store puts
    /// back the index it loaded.
    #[inline]
    pub(crate) fn read(&self) {
        let word = self.next.load(Ordering::Relaxed);
        if word >> FREQ_SHIFT < u32::from(MAX_FREQ) {
            self.next.store(word + (1 << FREQ_SHIFT), Ordering::Relaxed);
        }
    }

    /// The last read or write (0 without a time-to-idle).
    #[inline]
    pub(crate) fn touched(&self) -> u64 {
        self.touched.map_or(0, |t| t.load(Ordering::Relaxed))
    }

    /// Records a read for time-to-idle (nothing without one).
    #[inline]
    pub(crate) fn touch(&self, now: u64) {
        if let Some(t) = self.touched {
            t.store(now, Ordering::Relaxed);
        }
    }
}

/// One entry in the shard's array; see the module's doc for the layout.
struct Slot<K, V> {
    key: K,
    value: V,
    expires: u64,
    /// The previous index (low `INDEX_BITS`), the queue (2 bits), the validators flag.
    prev: u32,
    /// The next index (low `INDEX_BITS`) and the read count (top 2 bits).
    next: AtomicU32,
}

impl<K, V> Slot<K, V> {
    fn prev(&self) -> u32 {
        self.prev & NIL
    }

    fn set_prev(&mut self, i: u32) {
        self.prev = (self.prev & !NIL) | i;
    }

    fn queue(&self) -> Queue {
        Queue::from_bits(self.prev >> QUEUE_SHIFT)
    }

    fn set_queue(&mut self, q: Queue) {
        self.prev = (self.prev & !(3 << QUEUE_SHIFT)) | ((q as u32) << QUEUE_SHIFT);
    }

    fn has_validators(&self) -> bool {
        self.prev & HAS_VALIDATORS != 0
    }

    fn set_has_validators(&mut self, has: bool) {
        self.prev = (self.prev & !HAS_VALIDATORS) | if has { HAS_VALIDATORS } else { 0 };
    }

    fn next(&self) -> u32 {
        self.next.load(Ordering::Relaxed) & NIL
    }

    fn set_next(&mut self, i: u32) {
        let word = self.next.get_mut();
        *word = (*word & !NIL) | i;
    }

    /// Reads counted since it was written or last given a second chance.
    fn freq(&self) -> u8 {
        (self.next.load(Ordering::Relaxed) >> FREQ_SHIFT) as u8
    }

    /// Sets the read count (under the write lock: no reader races it).
    fn set_freq(&self, freq: u8) {
        let word = self.next.load(Ordering::Relaxed);
        self.next.store(
            (word & !(3 << FREQ_SHIFT)) | (u32::from(freq) << FREQ_SHIFT),
            Ordering::Relaxed,
        );
    }
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

    /// `true` if `hash` is here.
    fn contains(&self, hash: u64) -> bool {
        self.set.find(hash, |&h| h == hash).is_some()
    }

    /// Forgets `hash` (a key back from the ghost and held again).
    fn take(&mut self, hash: u64) {
        if let Ok(e) = self.set.find_entry(hash, |&h| h == hash) {
            e.remove();
        }
    }
}

/// A shard's entries, in S3-FIFO order. `S` hashes keys the way the cache does (the
/// cache passes each key's hash in, and the store rehashes only to move entries).
pub(crate) struct Store<K, V, S> {
    slots: Vec<Slot<K, V>>,
    /// Each slot's last read, beside it; empty unless the cache has a time-to-idle.
    touched: Vec<AtomicU64>,
    /// Each slot's weight, beside it; empty unless the cache has a weigher (every
    /// weight is 1 then).
    weights: Vec<u32>,
    tti: bool,
    weighted: bool,
    table: HashTable<u32>,
    small: List,
    main: List,
    ghost: Ghost,
    /// Validators, by slot, for the entries that have them.
    validators: HashMap<u32, Validators>,
    hasher: S,
}

/// Where [`Store::admit`] sends a key that is not held, and where its room comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// To the small FIFO, room from its oldest entries: a key not seen lately.
    Small,
    /// To main: a key back from the ghost that an unread entry near main's head makes
    /// room for. `newest_first`: room from small's newest entries instead of its
    /// oldest (a first fill); pass it to [`Store::victim`].
    Main { newest_first: bool },
    /// Not held: a key back from the ghost while every entry near main's head was read
    /// since the hand last passed it. Its hash stays in the ghost, so it is weighed
    /// against main's head again when it comes back.
    Reject,
}

impl Admission {
    /// `true` if the key goes to main.
    pub(crate) fn to_main(self) -> bool {
        matches!(self, Admission::Main { .. })
    }

    /// Room from small's newest entries first (see [`Admission::Main`]).
    pub(crate) fn newest_first(self) -> bool {
        matches!(self, Admission::Main { newest_first: true })
    }
}

impl<K: Hash + Eq, V, S: BuildHasher> Store<K, V, S> {
    /// A store that keeps each entry's last read if `tti`, and its weight if
    /// `weighted` (otherwise every weight is 1).
    pub(crate) fn new(hasher: S, tti: bool, weighted: bool) -> Self {
        Store {
            slots: Vec::new(),
            touched: Vec::new(),
            weights: Vec::new(),
            tti,
            weighted,
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
        if self.tti {
            self.touched.reserve_exact(n);
        }
        if self.weighted {
            self.weights.reserve_exact(n);
        }
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

    /// The weight of the entry at `i`.
    fn weight_of(&self, i: u32) -> u64 {
        if self.weighted {
            u64::from(self.weights[i as usize])
        } else {
            1
        }
    }

    #[inline]
    pub(crate) fn find(&self, hash: u64, key: &K) -> Option<u32> {
        let slots = &self.slots;
        self.table
            .find(hash, |&i| slots[i as usize].key == *key)
            .copied()
    }

    #[inline]
    pub(crate) fn entry(&self, i: u32) -> Live<'_, V> {
        let slot = &self.slots[i as usize];
        Live {
            value: &slot.value,
            expires: slot.expires,
            // Empty without a time-to-idle.
            touched: self.touched.get(i as usize),
            next: &slot.next,
        }
    }

    /// A new expiry for the entry at `i`.
    pub(crate) fn set_expires(&mut self, i: u32, expires: u64) {
        self.slots[i as usize].expires = expires;
    }

    pub(crate) fn validators(&self, i: u32) -> Option<&Validators> {
        if self.slots[i as usize].has_validators() {
            self.validators.get(&i)
        } else {
            None
        }
    }

    pub(crate) fn set_validators(&mut self, i: u32, validators: Option<Validators>) {
        self.slots[i as usize].set_has_validators(validators.is_some());
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
            slot.set_prev(tail);
            slot.set_next(NIL);
            slot.set_queue(q);
        }
        if tail == NIL {
            self.list(q).head = i;
        } else {
            self.slots[tail as usize].set_next(i);
        }
        let weight = self.weight_of(i);
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
            self.slots[prev as usize].set_next(after_prev);
        }
        if next == NIL {
            self.list(q).tail = before_next;
        } else {
            self.slots[next as usize].set_prev(before_next);
        }
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next, q) = {
            let s = &self.slots[i as usize];
            (s.prev(), s.next(), s.queue())
        };
        if q == Queue::None {
            return;
        }
        let weight = self.weight_of(i);
        self.repoint(q, prev, next, next, prev);
        let list = self.list(q);
        list.len -= 1;
        list.weight -= weight;
        let slot = &mut self.slots[i as usize];
        slot.set_queue(Queue::None);
        slot.set_prev(NIL);
        slot.set_next(NIL);
    }

    /// Where a key that is not held goes, decided before room is made for it. A key
    /// whose hash is not in the ghost goes to small. A key back from the ghost goes to
    /// main if main can take it without losing an entry read since main's hand last
    /// passed it: there is room, or one of main's first `ADMIT_STEPS` entries is
    /// unread (each read one passed over has one read fewer and goes to the tail).
    /// Otherwise it is not held at all ([`Admission::Reject`]) and its hash stays in
    /// the ghost: as TinyLFU turns away a candidate no more frequent than its victim,
    /// a key that comes back no more often than main's entries are read does not
    /// displace one of them, nor a key in small.
    ///
    /// So a working set read round and round stays in main instead of being churned by
    /// the keys beyond it (a loop 10% larger than the cache: 79% hits without the rule,
    /// 89.85% when such a key went to small again, 90.35% when it is not held: after
    /// the first rounds each round misses only the keys the bound cannot hold).
    ///
    /// While small holds over a quarter of the bound (the cache's first fill, or a
    /// refill after removals), a key admitted to main takes its room from small's
    /// newest entries instead of its oldest: on a loop the oldest are the keys read
    /// next, and FIFO order evicted each one just before its read, so the whole second
    /// round missed (89.40 to 89.85% on the loop trace; a quarter rather than a half or
    /// seven eighths: Zipf 79.21 against 79.17-79.19%, scans 70.89 against
    /// 70.82-70.87%).
    pub(crate) fn admit(&mut self, hash: u64, need: u64, limit: u64) -> Admission {
        if !self.ghost.contains(hash) {
            return Admission::Small;
        }
        let room = self.main.head == NIL || self.weight().saturating_add(need) <= limit;
        if !room && !self.unread_near_mains_head() {
            return Admission::Reject;
        }
        self.ghost.take(hash);
        Admission::Main {
            newest_first: self.small.weight > limit / 4,
        }
    }

    /// `true` if one of main's first `ADMIT_STEPS` entries is unread; each read one
    /// passed over on the way has one read fewer and goes to main's tail.
    fn unread_near_mains_head(&mut self) -> bool {
        for _ in 0..ADMIT_STEPS {
            let head = self.main.head;
            let slot = &self.slots[head as usize];
            let freq = slot.freq();
            if freq == 0 {
                return true;
            }
            slot.set_freq(freq - 1);
            self.unlink(head);
            self.link(head, Queue::Main);
        }
        false
    }

    /// Adds a key that is not held, to main or small as [`Store::admit`] said. Returns
    /// its index. The caller made room first.
    pub(crate) fn insert(&mut self, hash: u64, key: K, entry: Entry<V>, to_main: bool) -> u32 {
        let i = match u32::try_from(self.slots.len()) {
            Ok(i) if i < NIL => i,
            // The cache's room-making keeps a shard under `MAX_SHARD_ENTRIES`.
            _ => unreachable!("a shard holds fewer than {NIL} entries"),
        };
        self.slots.push(Slot {
            key,
            value: entry.value,
            expires: entry.expires,
            prev: NIL | ((Queue::None as u32) << QUEUE_SHIFT),
            next: AtomicU32::new(NIL),
        });
        debug_assert!(
            self.weighted || entry.weight == 1,
            "unweighted: every weight is 1"
        );
        if self.tti {
            self.touched.push(AtomicU64::new(entry.touched));
        }
        if self.weighted {
            self.weights.push(entry.weight);
        }
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
        entry: Entry<V>,
        make_room: impl FnOnce(&mut Self, u64),
    ) -> (Entry<V>, Option<u32>) {
        let q = self.slots[i as usize].queue();
        self.unlink(i);
        let weight = u64::from(entry.weight);
        let old = self.swap_entry(i, entry);
        make_room(self, weight);
        // `make_room` removes linked entries only, but a removal may move this one to
        // another index: it is the one unlinked entry under its hash.
        let slots = &self.slots;
        let i = self
            .table
            .find(hash, |&j| slots[j as usize].queue() == Queue::None)
            .copied();
        if let Some(i) = i {
            self.link(i, if q == Queue::None { Queue::Small } else { q });
        }
        (old, i)
    }

    /// Puts `entry`'s value and times in slot `i` (unlinked); gives back the old ones.
    fn swap_entry(&mut self, i: u32, entry: Entry<V>) -> Entry<V> {
        let i = i as usize;
        let slot = &mut self.slots[i];
        let value = std::mem::replace(&mut slot.value, entry.value);
        let expires = std::mem::replace(&mut slot.expires, entry.expires);
        let touched = match self.touched.get_mut(i) {
            Some(t) => std::mem::replace(t.get_mut(), entry.touched),
            None => 0,
        };
        let weight = match self.weights.get_mut(i) {
            Some(w) => std::mem::replace(w, entry.weight),
            None => 1,
        };
        Entry::new(value, expires, touched, weight)
    }

    /// Removes the entry at `i`; gives back its key, its entry and its validators.
    pub(crate) fn remove(&mut self, i: u32) -> (K, Entry<V>, Option<Validators>) {
        self.unlink(i);
        let hash = self.hasher.hash_one(&self.slots[i as usize].key);
        if let Ok(e) = self.table.find_entry(hash, |&j| j == i) {
            e.remove();
        }
        let validators = if self.slots[i as usize].has_validators() {
            self.validators.remove(&i)
        } else {
            None
        };
        let last = (self.slots.len() - 1) as u32;
        let slot = self.slots.swap_remove(i as usize);
        let touched = if self.tti {
            self.touched.swap_remove(i as usize).into_inner()
        } else {
            0
        };
        let weight = if self.weighted {
            self.weights.swap_remove(i as usize)
        } else {
            1
        };
        if i != last {
            // The last slot moved into `i`: point its table entry, its neighbours (or
            // its list's ends) and its validators at the new index.
            let hash = self.hasher.hash_one(&self.slots[i as usize].key);
            if let Some(j) = self.table.find_mut(hash, |&j| j == last) {
                *j = i;
            }
            let (prev, next, q, has) = {
                let s = &self.slots[i as usize];
                (s.prev(), s.next(), s.queue(), s.has_validators())
            };
            if q != Queue::None {
                self.repoint(q, prev, next, i, i);
            }
            if has && let Some(v) = self.validators.remove(&last) {
                self.validators.insert(i, v);
            }
        }
        let entry = Entry::new(slot.value, slot.expires, touched, weight);
        (slot.key, entry, validators)
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
    /// `newest_first` takes small's newest entries first ([`Admission::Main`]).
    pub(crate) fn victim(
        &mut self,
        limit: u64,
        newest_first: bool,
        dead: impl Fn(Live<'_, V>) -> bool,
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
                let (freq, is_dead) = (self.slots[i as usize].freq(), dead(self.entry(i)));
                if freq > 0 && !is_dead {
                    self.slots[i as usize].set_freq(0);
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
            let freq = self.slots[i as usize].freq();
            if freq > 0 && !dead(self.entry(i)) {
                self.slots[i as usize].set_freq(freq - 1);
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
        Store::new(S::with_seed(7), false, true)
    }

    fn put(s: &mut Store<u64, u64, S>, k: u64, limit: u64) -> Vec<u64> {
        let h = s.hasher.hash_one(k);
        let admission = s.admit(h, 1, limit);
        let mut gone = Vec::new();
        if admission == Admission::Reject {
            gone.push(k);
            return gone;
        }
        while s.weight() + 1 > limit {
            let i = s
                .victim(limit, admission.newest_first(), |_| false)
                .unwrap();
            gone.push(s.remove(i).0);
        }
        s.insert(h, k, Entry::new(k, u64::MAX, 0, 1), admission.to_main());
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
                assert_eq!((slot.prev(), slot.queue()), (prev, q));
                w += s.weight_of(i);
                n += 1;
                prev = i;
                i = slot.next();
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
    /// read again, so without `newest_first` the whole second round missed too; and
    /// without `Admission::Reject` the keys beyond the bound went through small again
    /// each round, each taking the place of another.
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
        // Once settled, a round misses only the keys the bound cannot hold: the keys
        // beyond it are turned away instead of churning through small.
        assert_eq!(rounds[3..], [limit; 3], "{rounds:?}");
    }

    /// A key back from the ghost while main's head is all read is turned away, and
    /// its hash stays in the ghost; each try wears main's head down by one read per
    /// entry passed, so it gets in once an entry there goes unread.
    #[test]
    fn a_key_back_while_mains_head_is_read_is_turned_away_until_one_goes_unread() {
        let mut s = store();
        let (limit, keys) = (100, 110);
        for _ in 0..8 {
            for k in 0..keys {
                if !get(&s, k) {
                    put(&mut s, k, limit);
                }
            }
        }
        let held: Vec<u64> = (0..keys).filter(|&k| get(&s, k)).collect();
        assert_eq!(held.len(), limit as usize);
        let out = (0..keys).find(|k| !held.contains(k)).unwrap();
        let h = s.hasher.hash_one(out);
        assert!(s.ghost.contains(h), "a key beyond the bound is remembered");
        // Main's entries were read this round (3 reads each at most): a few tries are
        // turned away, without a change to what is held.
        assert_eq!(put(&mut s, out, limit), [out]);
        assert!(s.ghost.contains(h), "still remembered after a refusal");
        assert!(s.find(h, &out).is_none());
        consistent(&s);
        let mut tries = 1;
        while s.find(h, &out).is_none() {
            let gone = put(&mut s, out, limit);
            assert!(gone == [out] || !gone.contains(&out), "{gone:?}");
            tries += 1;
            assert!(tries <= 3 * limit / ADMIT_STEPS as u64 + 1, "{tries} tries");
        }
        assert!(tries > 1, "turned away at first");
        assert!(!s.ghost.contains(h), "forgotten once held");
        let i = s.find(h, &out).unwrap();
        assert_eq!(s.slots[i as usize].queue(), Queue::Main);
        consistent(&s);
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
        assert_eq!(s.slots[i as usize].queue(), Queue::Main);
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

    /// With and without the arrays beside the slots (last reads, weights): every
    /// entry's value, expiry, last read and weight stay with its key through
    /// removals, which move the last slot into the hole.
    #[test]
    fn random_writes_reads_removals_and_replacements_keep_every_link() {
        for (tti, weighted) in [(false, false), (false, true), (true, false), (true, true)] {
            random_ops(tti, weighted);
        }
    }

    fn random_ops(tti: bool, weighted: bool) {
        let mut s = Store::new(S::with_seed(7), tti, weighted);
        // Each held key's weight.
        let mut weights = HashMap::new();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let limit = 40;
        let entry = |k: u64, weight| Entry::new(k, k + 7, 3 * k + 1, weight);
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = x % 64;
            let h = s.hasher.hash_one(k);
            let roll = (x >> 8) as u32 % 5;
            let weight = if weighted { roll } else { 1 };
            match (x >> 16) % 4 {
                0 => {
                    get(&s, k);
                }
                1 => {
                    if let Some(i) = s.find(h, &k) {
                        let (key, old, _) = s.remove(i);
                        assert_eq!((key, old.weight), (k, weights[&k]));
                        weights.remove(&k);
                    }
                }
                _ => match s.find(h, &k) {
                    Some(i) => {
                        let mut gone = Vec::new();
                        let (old, now) = s.replace(h, i, entry(k, weight), |s, need| {
                            while s.weight() + need > limit {
                                let Some(v) = s.victim(limit, false, |_| false) else {
                                    break;
                                };
                                gone.push(s.remove(v).0);
                            }
                        });
                        assert_eq!((old.value, old.expires), (k, k + 7));
                        assert_eq!(old.touched, if tti { 3 * k + 1 } else { 0 });
                        assert_eq!(old.weight, weights[&k]);
                        weights.insert(k, weight);
                        for g in gone {
                            weights.remove(&g);
                        }
                        let i = now.expect("a replaced entry is relinked");
                        s.set_validators(i, (roll == 0).then(Validators::default));
                    }
                    None => {
                        let admission = s.admit(h, u64::from(weight), limit);
                        // A rejected key is not held.
                        if admission != Admission::Reject {
                            while s.weight() + u64::from(weight) > limit {
                                let v = s.victim(limit, admission.newest_first(), |_| false);
                                weights.remove(&s.remove(v.unwrap()).0);
                            }
                            s.insert(h, k, entry(k, weight), admission.to_main());
                            weights.insert(k, weight);
                        }
                    }
                },
            }
            consistent(&s);
            assert!(s.weight() <= limit);
            assert_eq!(weights.len(), s.len());
            assert_eq!(s.touched.len(), if tti { s.len() } else { 0 });
            assert_eq!(s.weights.len(), if weighted { s.len() } else { 0 });
            for (i, slot) in s.slots.iter().enumerate() {
                let live = s.entry(i as u32);
                assert_eq!((*live.value, live.expires), (slot.key, slot.key + 7));
                assert_eq!(live.touched(), if tti { 3 * slot.key + 1 } else { 0 });
                assert_eq!(s.weight_of(i as u32), u64::from(weights[&slot.key]));
                assert_eq!(
                    slot.has_validators(),
                    s.validators.contains_key(&(i as u32))
                );
            }
            assert_eq!(
                s.validators.len(),
                s.slots.iter().filter(|x| x.has_validators()).count()
            );
        }
    }

    /// The flags and the read count share their words with the indices: setting one
    /// leaves the others alone, up to the largest index.
    #[test]
    fn link_words_keep_their_fields_apart() {
        let mut slot = Slot {
            key: 0u64,
            value: 0u64,
            expires: 0,
            prev: NIL,
            next: AtomicU32::new(NIL),
        };
        for q in [Queue::Small, Queue::Main, Queue::None] {
            for has in [false, true] {
                for i in [0, 1, NIL - 1, NIL] {
                    slot.set_queue(q);
                    slot.set_has_validators(has);
                    slot.set_prev(i);
                    slot.set_next(NIL - i);
                    for f in 0..=MAX_FREQ {
                        slot.set_freq(f);
                        assert_eq!(slot.freq(), f);
                        assert_eq!((slot.prev(), slot.next()), (i, NIL - i));
                        assert_eq!((slot.queue(), slot.has_validators()), (q, has));
                    }
                    slot.set_freq(0);
                    let live = Live {
                        value: &slot.value,
                        expires: 0,
                        touched: None,
                        next: &slot.next,
                    };
                    for _ in 0..5 {
                        live.read();
                    }
                    assert_eq!(slot.freq(), MAX_FREQ, "reads count up to the cap");
                    assert_eq!((slot.prev(), slot.next()), (i, NIL - i));
                }
            }
        }
    }
}
