//! Counters for `INFO kestrel`. Plain relaxed atomics: everything runs on Redis's main thread,
//! and a counter read a moment late does no harm.

use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonically growing counter, or a running maximum.
pub struct Counter(AtomicU64);

impl Counter {
    const fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    // Only Redis's main thread writes a counter, so a plain load and store lose nothing and
    // spare the locked instruction an atomic add costs on every call.
    pub fn add(&self, amount: u64) {
        self.0
            .store(self.get().wrapping_add(amount), Ordering::Relaxed);
    }

    pub fn raise_to(&self, value: u64) {
        if value > self.get() {
            self.0.store(value, Ordering::Relaxed);
        }
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Calls of KESTREL.ID and KESTREL.IDS that issued IDs.
pub static CALLS: Counter = Counter::new();
/// IDs handed out.
pub static IDS_ISSUED: Counter = Counter::new();
/// Milliseconds used before the clock reached them.
pub static MS_BORROWED: Counter = Counter::new();
/// The largest lead seen, in milliseconds.
pub static MAX_LEAD_MS: Counter = Counter::new();
/// Calls that found the clock earlier than on the generator's previous call.
pub static CLOCK_STEPS_BACK: Counter = Counter::new();
/// Error replies.
pub static ERRORS: Counter = Counter::new();
/// Of those, lead cap refusals.
pub static LEAD_REFUSALS: Counter = Counter::new();
/// Writes of a high-water mark to the keyspace.
pub static MARK_WRITES: Counter = Counter::new();
/// Reads of a generator's keys (first use, or after they changed).
pub static KEY_READS: Counter = Counter::new();
/// Generators started behind a fence (after loading data or a promotion).
pub static FENCES: Counter = Counter::new();
