//! One generator's state machine: the contract's algorithm, batches that span several
//! milliseconds, clock steps back, the lead cap, the end of the ID space, and the high-water
//! mark the generator keeps in Redis.

use std::fmt;

use crate::layout::{Id, ShardId, EPOCH_MS, LAST_MS, MAX_SEQUENCE, SEQUENCES_PER_MS};

/// A place in a generator's sequence of IDs: a Unix millisecond and a sequence within it,
/// held as one number (`ms * 4096 + sequence`) so that the next place is one more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position(u64);

impl Position {
    /// Nothing issued yet: below every real place.
    pub const ORIGIN: Position = Position(0);

    /// The last place in the ID space.
    pub const END: Position = Position(LAST_MS * SEQUENCES_PER_MS + MAX_SEQUENCE as u64);

    /// The place of `sequence` within Unix millisecond `unix_ms`; a sequence above 4095
    /// counts as 4095. Places past [`Position::END`] exist but hold no ID.
    pub fn new(unix_ms: u64, sequence: u16) -> Self {
        let sequence = u64::from(sequence.min(MAX_SEQUENCE));
        Self(
            unix_ms
                .saturating_mul(SEQUENCES_PER_MS)
                .saturating_add(sequence),
        )
    }

    /// The first place within Unix millisecond `unix_ms`.
    pub fn start_of(unix_ms: u64) -> Self {
        Self::new(unix_ms, 0)
    }

    /// The last place within Unix millisecond `unix_ms`.
    pub fn end_of(unix_ms: u64) -> Self {
        Self::new(unix_ms, MAX_SEQUENCE)
    }

    /// The Unix millisecond.
    pub fn unix_ms(self) -> u64 {
        self.0 / SEQUENCES_PER_MS
    }

    /// The sequence within the millisecond.
    pub fn sequence(self) -> u16 {
        (self.0 % SEQUENCES_PER_MS) as u16
    }

    fn offset(self, count: u64) -> Option<Self> {
        self.0.checked_add(count).map(Self)
    }
}

/// How a generator may move ahead of the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// The most milliseconds the last ID issued may be ahead of the clock.
    pub lead_cap_ms: u64,
    /// How many milliseconds past the last ID each write of the high-water mark reserves.
    /// 0 writes the exact last place on every call, as the original script does.
    pub reserve_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            lead_cap_ms: 1_000,
            reserve_ms: 1_000,
        }
    }
}

/// Why a generator issued nothing. Its state is unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GenerateError {
    /// A batch of no IDs was asked for.
    ZeroCount,
    /// The clock reads before the epoch, so no ID can carry it.
    BeforeEpoch { now_ms: u64 },
    /// The batch would run past the last millisecond of the 41-bit space.
    Exhausted,
    /// The batch would end more than the lead cap ahead of the clock.
    LeadCapReached { lead_ms: u64, cap_ms: u64 },
    /// The batch spans more milliseconds than the lead cap allows even from the clock's own
    /// millisecond, so waiting would never make room for it.
    TooLongForLeadCap { count: u64, max: u64 },
}

impl GenerateError {
    /// For [`GenerateError::LeadCapReached`], how long to wait before the same call fits.
    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            Self::LeadCapReached { lead_ms, cap_ms } => Some(lead_ms - cap_ms),
            _ => None,
        }
    }
}

impl fmt::Display for GenerateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroCount => f.write_str("a batch holds at least one ID"),
            Self::BeforeEpoch { now_ms } => write!(
                f,
                "the clock reads Unix ms {now_ms}, before the ID epoch {EPOCH_MS}"
            ),
            Self::Exhausted => write!(
                f,
                "the 41-bit time space ends at Unix ms {LAST_MS}; no more IDs can be made"
            ),
            Self::TooLongForLeadCap { count, max } => write!(
                f,
                "a batch of {count} IDs spans more milliseconds than the lead cap allows; ask \
                 for at most {max} at once, or raise the lead cap"
            ),
            Self::LeadCapReached { lead_ms, cap_ms } => write!(
                f,
                "the batch would end {lead_ms} ms ahead of the clock, over the lead cap of \
                 {cap_ms} ms; retry in {} ms",
                lead_ms - cap_ms
            ),
        }
    }
}

impl std::error::Error for GenerateError {}

/// A run of IDs handed out by one call: consecutive places from `first`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    shard: ShardId,
    first: Position,
    count: u64,
}

impl Batch {
    /// A batch of `count` places from `first` on `shard`, all within the ID space.
    pub fn new(shard: ShardId, first: Position, count: u64) -> Option<Self> {
        let last = first.offset(count.checked_sub(1)?)?;
        let in_space = first.unix_ms() >= EPOCH_MS && last <= Position::END;
        in_space.then_some(Self {
            shard,
            first,
            count,
        })
    }

    /// How many IDs the batch holds.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The shard id in every ID of the batch.
    pub fn shard(&self) -> ShardId {
        self.shard
    }

    /// The place of the first ID.
    pub fn first(&self) -> Position {
        self.first
    }

    /// The place of the last ID.
    pub fn last(&self) -> Position {
        Position(self.first.0 + self.count - 1)
    }

    /// The smallest ID of the batch.
    pub fn first_id(&self) -> Id {
        self.id_at(self.first)
    }

    /// The largest ID of the batch.
    pub fn last_id(&self) -> Id {
        self.id_at(self.last())
    }

    /// Every ID, in increasing order.
    pub fn ids(&self) -> impl Iterator<Item = Id> + '_ {
        (self.first.0..=self.last().0).map(|place| self.id_at(Position(place)))
    }

    /// The batch as runs of consecutive integers, one per millisecond: the first ID of each
    /// run and how many IDs it holds.
    pub fn runs(&self) -> impl Iterator<Item = (Id, u64)> + '_ {
        let last = self.last();
        (self.first.unix_ms()..=last.unix_ms()).map(move |ms| {
            let from = self.first.max(Position::start_of(ms));
            let to = last.min(Position::end_of(ms));
            (self.id_at(from), to.0 - from.0 + 1)
        })
    }

    fn id_at(&self, place: Position) -> Id {
        Id::from_checked_parts(place.unix_ms(), self.shard, place.sequence())
    }
}

/// What one call to [`Generator::issue`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Issue {
    /// The IDs to hand out.
    pub batch: Batch,
    /// A new high-water mark that must be stored (and replicated) before the IDs leave.
    pub reserve: Option<Position>,
    /// Milliseconds this call used that the clock had not reached yet.
    pub borrowed_ms: u64,
    /// How far the last ID is ahead of the clock, in milliseconds.
    pub lead_ms: u64,
    /// Whether the clock read earlier than on the previous call.
    pub clock_stepped_back: bool,
}

/// One generator: a shard id, the last place issued and the high-water mark stored in Redis.
///
/// Every ID it issues is above the last one, and at or below the stored high-water mark, so a
/// process that resumes from the stored mark can never issue an ID twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generator {
    shard: ShardId,
    last: Position,
    reserved: Position,
    last_clock_ms: u64,
}

impl Generator {
    /// Resumes from the place stored in Redis: everything up to it may have been issued.
    pub fn resume(shard: ShardId, stored: Position) -> Self {
        Self {
            shard,
            last: stored,
            reserved: stored,
            last_clock_ms: 0,
        }
    }

    /// Resumes where the stored place may be behind what was issued: after loading data that
    /// can have lost its last writes, or on a replica promoted to master.
    ///
    /// Nothing a generator issues, and no mark it stores, is ever more than the lead cap ahead
    /// of the clock it read. So the old process issued nothing past its own clock plus the
    /// lead cap, and starting at `now + lead_cap_ms + fence_ms` is above all of it, whatever
    /// writes were lost, as long as this clock is at most `fence_ms` behind the old one. The
    /// first ID comes from that millisecond; with `fence_ms` above 0 calls are refused (lead
    /// cap) until the clock has moved `fence_ms` on.
    pub fn resume_fenced(
        shard: ShardId,
        stored: Position,
        now_ms: u64,
        fence_ms: u64,
        settings: &Settings,
    ) -> Self {
        Self {
            last: stored.max(Self::fence(now_ms, fence_ms, settings)),
            ..Self::resume(shard, stored)
        }
    }

    /// The place a fence starts above: the end of the millisecond before
    /// `now + lead_cap_ms + fence_ms` (see [`Generator::resume_fenced`]).
    pub fn fence(now_ms: u64, fence_ms: u64, settings: &Settings) -> Position {
        let fence = now_ms
            .saturating_add(settings.lead_cap_ms)
            .saturating_add(fence_ms);
        Position::end_of(fence.saturating_sub(1))
    }

    /// The same generator after its keys changed under it (another writer, a deletion, a
    /// flush): it takes the shard id and the mark stored now, and never goes below what it
    /// issued itself.
    pub fn rebase(&self, shard: ShardId, stored: Position) -> Self {
        Self {
            shard,
            last: self.last.max(stored),
            reserved: stored,
            ..*self
        }
    }

    /// The shard id the generator writes into its IDs.
    pub fn shard(&self) -> ShardId {
        self.shard
    }

    /// The place of the last ID issued (or resumed from).
    pub fn last(&self) -> Position {
        self.last
    }

    /// The high-water mark stored in Redis.
    pub fn reserved(&self) -> Position {
        self.reserved
    }

    /// Makes the generator continue above `floor`: the last place issued with its shard id
    /// by another generator of the same process.
    pub fn raise_to(&mut self, floor: Position) {
        self.last = self.last.max(floor);
    }

    /// Makes the stored high-water mark cover the last place, as after a fence. Returns the
    /// new mark to store, or `None` when the stored one already covers it.
    pub fn reserve_to_last(&mut self) -> Option<Position> {
        (self.last > self.reserved).then(|| {
            self.reserved = self.last;
            self.last
        })
    }

    /// Issues `count` IDs at clock reading `now_ms`, following the contract's algorithm:
    /// never below the last place, a batch of up to 4096 within one millisecond, a larger one
    /// over consecutive milliseconds. On error nothing changes.
    pub fn issue(
        &mut self,
        now_ms: u64,
        count: u64,
        settings: &Settings,
    ) -> Result<Issue, GenerateError> {
        if count == 0 {
            return Err(GenerateError::ZeroCount);
        }
        // From the clock's own millisecond, a batch ends `span - 1` milliseconds ahead.
        let max = settings
            .lead_cap_ms
            .saturating_add(1)
            .saturating_mul(SEQUENCES_PER_MS);
        if count > max {
            return Err(GenerateError::TooLongForLeadCap { count, max });
        }
        if now_ms < EPOCH_MS {
            return Err(GenerateError::BeforeEpoch { now_ms });
        }

        let mut first = Position::start_of(now_ms).max(Position(self.last.0.saturating_add(1)));
        // A batch that fits in one millisecond never straddles two: the original script
        // moves it whole to the next millisecond, and so do we.
        let room = SEQUENCES_PER_MS - u64::from(first.sequence());
        if count <= SEQUENCES_PER_MS && count > room {
            first = Position::start_of(first.unix_ms() + 1);
        }
        let batch = Batch::new(self.shard, first, count).ok_or(GenerateError::Exhausted)?;

        let last = batch.last();
        let lead_ms = last.unix_ms().saturating_sub(now_ms);
        if lead_ms > settings.lead_cap_ms {
            return Err(GenerateError::LeadCapReached {
                lead_ms,
                cap_ms: settings.lead_cap_ms,
            });
        }

        // The mark reaches `reserve_ms` past the batch, but never past the clock plus the
        // lead cap, which is what lets a fence ignore lost marks (see `resume_fenced`).
        let reserve = (last > self.reserved).then(|| match settings.reserve_ms {
            0 => last,
            window => {
                let reach = last
                    .unix_ms()
                    .saturating_add(window)
                    .min(now_ms.saturating_add(settings.lead_cap_ms));
                Position::end_of(reach).max(last).min(Position::END)
            }
        });
        let issue = Issue {
            batch,
            reserve,
            borrowed_ms: last
                .unix_ms()
                .saturating_sub(now_ms.max(self.last.unix_ms())),
            lead_ms,
            clock_stepped_back: now_ms < self.last_clock_ms,
        };

        self.last = last;
        self.last_clock_ms = now_ms;
        if let Some(mark) = reserve {
            self.reserved = mark;
        }
        Ok(issue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_796_397_602_047;

    fn shard(value: i64) -> ShardId {
        ShardId::new(value).unwrap()
    }

    fn settings(lead_cap_ms: u64, reserve_ms: u64) -> Settings {
        Settings {
            lead_cap_ms,
            reserve_ms,
        }
    }

    fn exact() -> Settings {
        settings(u64::MAX, 0)
    }

    /// The contract's algorithm, written as the script writes it, to compare against.
    fn contract_step(now: u64, last_ms: u64, last_seq: u64, count: u64) -> (u64, u64, u64) {
        let mut used = now.max(last_ms);
        let (mut start, mut end);
        if used == last_ms {
            start = last_seq + 1;
            end = start + count - 1;
            if end > 4095 {
                used += 1;
                start = 0;
                end = count - 1;
            }
        } else {
            start = 0;
            end = count - 1;
        }
        (used, start, end)
    }

    #[test]
    fn follows_the_contract_for_batches_up_to_4096() {
        // (clock, stored ms, stored sequence, count)
        let cases = [
            (NOW, 0, 0, 1),
            (NOW, NOW - 5, 17, 1),
            (NOW, NOW, 0, 1),
            (NOW, NOW, 4094, 1),
            (NOW, NOW, 4095, 1),
            (NOW, NOW, 4000, 96),
            (NOW, NOW, 4000, 97),
            (NOW, NOW, 10, 4096),
            (NOW, NOW + 3, 7, 100),
            (NOW - 1000, NOW, 4095, 4096),
            (NOW, NOW - 1, 4095, 4096),
        ];
        for (now, stored_ms, stored_seq, count) in cases {
            let stored = Position::new(stored_ms, stored_seq as u16);
            let mut generator = Generator::resume(shard(3), stored);

            let issue = generator.issue(now, count, &exact()).unwrap();

            let (used, start, end) = contract_step(now, stored_ms, stored_seq, count);
            let case = format!("{now} {stored_ms} {stored_seq} {count}");
            assert_eq!(
                issue.batch.first(),
                Position::new(used, start as u16),
                "{case}"
            );
            assert_eq!(
                issue.batch.last(),
                Position::new(used, end as u16),
                "{case}"
            );
            assert_eq!(issue.batch.count(), count, "{case}");
            assert_eq!(issue.reserve, Some(issue.batch.last()), "{case}");
        }
    }

    #[test]
    fn overflowing_a_millisecond_borrows_the_next() {
        let mut generator = Generator::resume(shard(1), Position::ORIGIN);

        let first = generator.issue(NOW, 4096, &exact()).unwrap();
        let second = generator.issue(NOW, 1, &exact()).unwrap();

        assert_eq!(first.batch.first(), Position::new(NOW, 0));
        assert_eq!(first.batch.last(), Position::new(NOW, 4095));
        assert_eq!(second.batch.first(), Position::new(NOW + 1, 0));
        assert_eq!(second.borrowed_ms, 1);
        assert_eq!(second.lead_ms, 1);
    }

    #[test]
    fn large_batches_span_consecutive_milliseconds() {
        let mut generator = Generator::resume(shard(9), Position::new(NOW, 99));

        let issue = generator.issue(NOW, 10_000, &exact()).unwrap();

        let runs: Vec<_> = issue
            .batch
            .runs()
            .map(|(id, n)| (id.sequence(), n))
            .collect();
        assert_eq!(runs, vec![(100, 3996), (0, 4096), (0, 1908)]);
        assert_eq!(issue.batch.last(), Position::new(NOW + 2, 1907));
        let ids: Vec<_> = issue.batch.ids().collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn clock_stepping_back_never_goes_below_the_last_id() {
        let mut generator = Generator::resume(shard(1), Position::ORIGIN);
        let before = generator.issue(NOW, 1, &exact()).unwrap();

        // (clock after the step, IDs asked for)
        for (now, count) in [(NOW - 10, 1), (NOW - 1000, 50), (NOW - 3_600_000, 4096)] {
            let previous = generator.last();
            let issue = generator.issue(now, count, &exact()).unwrap();

            assert!(issue.batch.first() > previous, "{now}");
            assert!(issue.batch.first_id() > before.batch.last_id(), "{now}");
        }
        let steps: Vec<_> = [NOW - 3_600_001, NOW]
            .into_iter()
            .map(|now| {
                generator
                    .issue(now, 1, &exact())
                    .unwrap()
                    .clock_stepped_back
            })
            .collect();
        assert_eq!(steps, vec![true, false]);
    }

    #[test]
    fn the_lead_cap_refuses_without_changing_state() {
        let mut generator = Generator::resume(shard(1), Position::new(NOW + 5, 4095));
        let before = generator.clone();

        let refused = generator.issue(NOW, 1, &settings(5, 0));

        assert_eq!(
            refused,
            Err(GenerateError::LeadCapReached {
                lead_ms: 6,
                cap_ms: 5
            })
        );
        assert_eq!(refused.unwrap_err().retry_after_ms(), Some(1));
        assert_eq!(generator, before);
        let allowed = generator.issue(NOW + 1, 1, &settings(5, 0)).unwrap();
        assert_eq!(allowed.lead_ms, 5);
    }

    #[test]
    fn a_batch_longer_than_the_cap_allows_is_refused_for_good() {
        let mut generator = Generator::resume(shard(1), Position::ORIGIN);
        let cap = settings(2, 0);

        let longest = generator.issue(NOW, 3 * 4096, &cap);
        let too_long = generator.issue(NOW + 10, 3 * 4096 + 1, &cap);

        assert!(longest.is_ok());
        assert_eq!(
            too_long,
            Err(GenerateError::TooLongForLeadCap {
                count: 3 * 4096 + 1,
                max: 3 * 4096
            })
        );
        assert_eq!(too_long.unwrap_err().retry_after_ms(), None);
    }

    #[test]
    fn a_flat_out_loop_stops_at_the_cap() {
        let mut generator = Generator::resume(shard(1), Position::ORIGIN);
        let cap = settings(3, 0);

        let issued = (0..100)
            .map_while(|_| generator.issue(NOW, 4096, &cap).ok())
            .count();

        assert_eq!(issued, 4);
        assert_eq!(generator.last().unix_ms(), NOW + 3);
    }

    #[test]
    fn the_end_of_the_space_is_a_hard_stop() {
        // (stored place, clock, count, expected)
        let cases = [
            (Position::new(LAST_MS, 4094), LAST_MS, 1, Ok(Position::END)),
            (Position::END, LAST_MS, 1, Err(GenerateError::Exhausted)),
            (
                Position::ORIGIN,
                LAST_MS + 1,
                1,
                Err(GenerateError::Exhausted),
            ),
            (
                Position::new(LAST_MS, 4000),
                LAST_MS,
                200,
                Err(GenerateError::Exhausted),
            ),
            (
                Position::ORIGIN,
                EPOCH_MS - 1,
                1,
                Err(GenerateError::BeforeEpoch {
                    now_ms: EPOCH_MS - 1,
                }),
            ),
            (
                Position::ORIGIN,
                EPOCH_MS,
                1,
                Ok(Position::new(EPOCH_MS, 0)),
            ),
            (Position::ORIGIN, NOW, 0, Err(GenerateError::ZeroCount)),
        ];
        for (stored, now, count, expected) in cases {
            let mut generator = Generator::resume(shard(1023), stored);

            let got = generator
                .issue(now, count, &exact())
                .map(|i| i.batch.last());

            assert_eq!(got, expected, "{stored:?} {now} {count}");
        }
    }

    #[test]
    fn the_last_id_keeps_the_sign_bit_clear() {
        let mut generator = Generator::resume(shard(1023), Position::new(LAST_MS, 4094));

        let issue = generator.issue(LAST_MS, 1, &exact()).unwrap();

        assert_eq!(issue.batch.last_id().as_i64(), i64::MAX);
    }

    #[test]
    fn reserves_a_window_and_writes_only_when_it_is_used_up() {
        let mut generator = Generator::resume(shard(1), Position::ORIGIN);
        let window = settings(5_000, 100);

        let first = generator.issue(NOW, 1, &window).unwrap();
        let inside = generator.issue(NOW + 100, 4000, &window).unwrap();
        let past = generator.issue(NOW + 101, 1, &window).unwrap();

        assert_eq!(first.reserve, Some(Position::end_of(NOW + 100)));
        assert_eq!(inside.reserve, None);
        assert_eq!(past.reserve, Some(Position::end_of(NOW + 201)));
        assert_eq!(generator.reserved(), Position::end_of(NOW + 201));
    }

    #[test]
    fn resuming_from_the_mark_is_above_everything_issued() {
        let mut generator = Generator::resume(shard(1), Position::ORIGIN);
        let window = settings(5_000, 50);
        let mut highest = Position::ORIGIN;
        for step in 0..1_000 {
            let issue = generator
                .issue(NOW + step / 7, 1 + step % 300, &window)
                .unwrap();
            highest = issue.batch.last();
        }

        let mut resumed = Generator::resume(shard(1), generator.reserved());
        let issue = resumed.issue(NOW, 1, &settings(u64::MAX, 50)).unwrap();

        assert!(issue.batch.first() > highest);
    }

    #[test]
    fn a_fence_starts_past_the_clock_plus_the_lead_cap() {
        let window = settings(1_000, 100);
        // (stored ms, clock, fence) -> first ms issued, at the clock `fence + 600` ms later
        let cases = [
            (NOW, NOW, 0, NOW + 1_000),
            (NOW - 60_000, NOW, 0, NOW + 1_000),
            (NOW - 60_000, NOW, 250, NOW + 1_250),
            (NOW + 1_500, NOW, 0, NOW + 1_501),
            (0, NOW, 0, NOW + 1_000),
        ];
        for (stored_ms, now, fence, expected) in cases {
            let stored = Position::end_of(stored_ms);
            let mut generator = Generator::resume_fenced(shard(1), stored, now, fence, &window);

            let issue = generator.issue(now + fence + 600, 1, &window).unwrap();

            let case = format!("{stored_ms} {fence}");
            assert_eq!(issue.batch.first(), Position::start_of(expected), "{case}");
            assert!(issue.reserve.is_some());
        }
    }

    #[test]
    fn a_fence_is_refused_until_the_clock_moves_past_it() {
        let window = settings(1_000, 0);
        let mut generator =
            Generator::resume_fenced(shard(1), Position::end_of(NOW), NOW, 300, &window);

        let refused = generator.issue(NOW, 1, &window).unwrap_err();

        assert_eq!(refused.retry_after_ms(), Some(300));
        assert!(generator.issue(NOW + 299, 1, &window).is_err());
        assert!(generator.issue(NOW + 300, 1, &window).is_ok());
    }

    #[test]
    fn marks_never_reach_past_the_clock_plus_the_lead_cap() {
        let window = settings(1_000, 5_000);
        let mut generator = Generator::resume(shard(1), Position::ORIGIN);

        let first = generator.issue(NOW, 1, &window).unwrap();
        let ahead = generator.issue(NOW, 4096 * 500, &window).unwrap();

        assert_eq!(first.reserve, Some(Position::end_of(NOW + 1_000)));
        assert_eq!(ahead.reserve, None);
        assert_eq!(generator.reserved(), Position::end_of(NOW + 1_000));
    }

    #[test]
    fn reserving_to_the_last_place_stores_a_fence_once() {
        let settings = settings(1_000, 100);
        let stored = Position::end_of(NOW);
        let mut generator = Generator::resume_fenced(shard(1), stored, NOW, 0, &settings);

        let first = generator.reserve_to_last();
        let second = generator.reserve_to_last();

        assert_eq!(first, Some(Position::end_of(NOW + 999)));
        assert_eq!(second, None);
        let issue = generator.issue(NOW, 1, &settings).unwrap();
        assert_eq!(issue.batch.first(), Position::start_of(NOW + 1_000));
    }

    #[test]
    fn raising_the_floor_moves_the_next_batch_above_it() {
        let mut generator = Generator::resume(shard(1), Position::ORIGIN);
        generator.issue(NOW, 1, &exact()).unwrap();

        generator.raise_to(Position::new(NOW, 7));
        generator.raise_to(Position::new(NOW - 1, 0));

        let issue = generator.issue(NOW, 1, &exact()).unwrap();
        assert_eq!(issue.batch.first(), Position::new(NOW, 8));
    }

    #[test]
    fn rebasing_keeps_what_was_issued_and_takes_the_new_mark() {
        let mut generator = Generator::resume(shard(1), Position::ORIGIN);
        generator.issue(NOW, 10, &settings(1_000, 100)).unwrap();

        let behind = generator.rebase(shard(2), Position::new(NOW - 5, 0));
        let ahead = generator.rebase(shard(2), Position::new(NOW + 7, 3));

        assert_eq!(behind.last(), Position::new(NOW, 9));
        assert_eq!(behind.reserved(), Position::new(NOW - 5, 0));
        assert_eq!(behind.shard(), shard(2));
        assert_eq!(ahead.last(), Position::new(NOW + 7, 3));
    }
}
