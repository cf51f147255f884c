//! Checks that IDs never repeat and only go up per generator, in memory that does not grow with
//! the number of IDs.
//!
//! Every call hands out a few runs of consecutive IDs (a `FORMAT RANGES` reply, or a script
//! reply), so the checker works on ranges. A generator's IDs are unique exactly when no two of
//! its ranges overlap. Each connection (a *stream*) sees its ranges of one generator in
//! increasing order, since the server serves its calls one after another. Across streams the
//! checker merges: a range can be settled once every open stream has already seen a range
//! starting above it, because nothing any stream receives later may start below the latest
//! range that stream saw (that is checked too). Settled ranges are compared with the highest
//! ID settled before them and then forgotten, so memory holds only the ranges still in flight.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

/// A run of consecutive IDs: `first`, `first + 1`, ... `first + count - 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Range {
    pub first: u64,
    pub count: u64,
}

impl Range {
    /// The last ID of the run.
    pub fn last(&self) -> u64 {
        self.first + self.count - 1
    }
}

/// What the checker found so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    /// IDs received and checked.
    pub ids: u64,
    /// IDs that overlap an ID settled before them.
    pub duplicates: u64,
    /// Ranges that start at or below the highest ID settled before them, or below an earlier
    /// range of the same stream: an ID below an earlier one.
    pub out_of_order: u64,
    /// The first few problems, described.
    pub problems: Vec<String>,
    /// The most ranges held at once while waiting to be settled.
    pub peak_pending: usize,
}

impl Findings {
    /// Whether nothing went wrong.
    pub fn clean(&self) -> bool {
        self.duplicates == 0 && self.out_of_order == 0
    }
}

/// Shared by every connection of a scenario.
#[derive(Clone, Default)]
pub struct Checker {
    inner: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    generators: HashMap<String, GeneratorState>,
    next_stream: u64,
    findings: Findings,
}

#[derive(Default)]
struct GeneratorState {
    /// For each open stream, the first ID of the latest range it received (0: none yet).
    latest: HashMap<u64, u64>,
    /// Ranges received but not yet settled, smallest first.
    pending: BinaryHeap<Reverse<(u64, u64)>>,
    /// The highest ID settled so far.
    settled_to: Option<u64>,
}

const PROBLEMS_KEPT: usize = 10;

impl Checker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Opens a stream: one connection's calls on one generator, received in order. Open it
    /// before the first call, so that nothing is settled past what it may still receive.
    pub fn stream(&self, generator: &str) -> Stream {
        let mut state = self.state();
        state.next_stream += 1;
        let id = state.next_stream;
        let generator_state = state.generators.entry(generator.to_string()).or_default();
        generator_state.latest.insert(id, 0);
        Stream {
            checker: self.clone(),
            generator: generator.to_string(),
            id,
        }
    }

    /// Settles every range still pending; call once every stream is closed.
    pub fn finish(&self) -> Findings {
        let mut state = self.state();
        let State {
            generators,
            findings,
            ..
        } = &mut *state;
        for (name, generator) in generators.iter_mut() {
            generator.settle(name, u64::MAX, findings);
        }
        findings.clone()
    }

    /// What was found so far (pending ranges not yet compared).
    pub fn findings(&self) -> Findings {
        self.state().findings.clone()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One connection's view of one generator. Closing it (dropping it) lets the others settle.
pub struct Stream {
    checker: Checker,
    generator: String,
    id: u64,
}

impl Stream {
    /// Records the ranges one call received, in the order of the reply.
    pub fn record(&self, ranges: &[Range]) {
        let mut state = self.checker.state();
        let State {
            generators,
            findings,
            ..
        } = &mut *state;
        let Some(generator) = generators.get_mut(&self.generator) else {
            return;
        };
        let mut latest = generator.latest.get(&self.id).copied().unwrap_or(0);
        for range in ranges.iter().filter(|range| range.count > 0) {
            findings.ids += range.count;
            if range.first <= latest && latest != 0 {
                findings.out_of_order += 1;
                note(
                    findings,
                    format!(
                        "generator '{}': a connection got {}..={} after a range starting at {}",
                        self.generator,
                        range.first,
                        range.last(),
                        latest
                    ),
                );
            }
            latest = latest.max(range.first);
            generator.pending.push(Reverse((range.first, range.count)));
        }
        generator.latest.insert(self.id, latest);
        findings.peak_pending = findings.peak_pending.max(generator.pending.len());

        let watermark = generator.latest.values().copied().min().unwrap_or(u64::MAX);
        generator.settle(&self.generator, watermark, findings);
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let mut state = self.checker.state();
        let State {
            generators,
            findings,
            ..
        } = &mut *state;
        if let Some(generator) = generators.get_mut(&self.generator) {
            generator.latest.remove(&self.id);
            let watermark = generator.latest.values().copied().min().unwrap_or(u64::MAX);
            generator.settle(&self.generator, watermark, findings);
        }
    }
}

impl GeneratorState {
    /// Compares and forgets every pending range that starts at or below `watermark`.
    fn settle(&mut self, name: &str, watermark: u64, findings: &mut Findings) {
        while let Some(&Reverse((first, count))) = self.pending.peek() {
            if first > watermark {
                break;
            }
            self.pending.pop();
            let range = Range { first, count };
            if let Some(settled_to) = self.settled_to {
                if range.first <= settled_to {
                    let overlap = settled_to.min(range.last()) - range.first + 1;
                    findings.duplicates += overlap;
                    findings.out_of_order += 1;
                    note(
                        findings,
                        format!(
                            "generator '{name}': {}..={} repeats or falls below IDs up to \
                             {settled_to} ({overlap} IDs overlap the range just below)",
                            range.first,
                            range.last()
                        ),
                    );
                }
            }
            self.settled_to = Some(self.settled_to.unwrap_or(0).max(range.last()));
        }
    }
}

fn note(findings: &mut Findings, problem: String) {
    if findings.problems.len() < PROBLEMS_KEPT {
        findings.problems.push(problem);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(first: u64, count: u64) -> Range {
        Range { first, count }
    }

    #[test]
    fn interleaved_streams_are_clean() {
        let checker = Checker::new();
        let a = checker.stream("g");
        let b = checker.stream("g");

        a.record(&[range(10, 5)]);
        b.record(&[range(20, 5)]);
        a.record(&[range(30, 1), range(40, 2)]);
        b.record(&[range(15, 5)]);
        drop(a);
        drop(b);

        let findings = checker.finish();
        assert!(findings.out_of_order > 0, "b went down: {findings:?}");

        let checker = Checker::new();
        let a = checker.stream("g");
        let b = checker.stream("g");
        b.record(&[range(20, 5)]);
        a.record(&[range(10, 5)]);
        a.record(&[range(30, 1)]);
        b.record(&[range(31, 5)]);
        drop((a, b));
        let findings = checker.finish();
        assert!(findings.clean(), "{findings:?}");
        assert_eq!(findings.ids, 16);
    }

    #[test]
    fn overlaps_across_streams_are_duplicates() {
        let checker = Checker::new();
        let a = checker.stream("g");
        let b = checker.stream("g");

        a.record(&[range(10, 5)]);
        b.record(&[range(12, 5)]);
        drop((a, b));

        let findings = checker.finish();
        assert_eq!(findings.duplicates, 3);
    }

    #[test]
    fn a_later_stream_below_a_closed_one_is_caught() {
        let checker = Checker::new();
        let before = checker.stream("g");
        before.record(&[range(100, 50)]);
        drop(before);

        let after = checker.stream("g");
        after.record(&[range(120, 1)]);
        drop(after);

        let findings = checker.finish();
        assert_eq!(findings.duplicates, 1);
    }

    #[test]
    fn generators_are_checked_apart() {
        let checker = Checker::new();
        let a = checker.stream("a");
        let b = checker.stream("b");
        a.record(&[range(10, 5)]);
        b.record(&[range(10, 5)]);
        drop((a, b));

        assert!(checker.finish().clean());
    }
}
