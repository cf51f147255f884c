//! Any sequence of calls, clock movements, counts, settings, foreign writes and restarts keeps
//! a generator's IDs unique and increasing, inside the ID space, within the lead cap, and its
//! stored marks within the clock plus the lead cap; a refused call changes nothing; nothing
//! panics.
#![no_main]

use arbitrary::Arbitrary;
use kestrel_core::{Generator, Position, Settings, ShardId, EPOCH_MS, LAST_MS};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Step {
    /// Move the clock by this many ms (back when negative) and issue `count` IDs.
    Issue { clock_move: i32, count: u32 },
    /// Jump the clock near one of the interesting places, then issue.
    Jump { place: Place, offset: i16, count: u16 },
    /// Change the lead cap and the reservation window.
    Settings { lead_cap_ms: u16, reserve_ms: u16 },
    /// Someone else (the script) wrote this mark: at most what a correct writer could write,
    /// one place after the last ID issued plus `ahead` places.
    ForeignWrite { ahead: u32 },
    /// The process restarts: it resumes fenced from the latest mark stored, or from an older
    /// one when writes were lost, with a clock at most `fence_ms` behind the old one.
    Restart { lost: u8, clock_behind: u16, fence_ms: u16 },
}

#[derive(Debug, Arbitrary)]
enum Place {
    Epoch,
    Now,
    End,
}

#[derive(Debug, Arbitrary)]
struct Input {
    shard: u16,
    start_ms: u32,
    steps: Vec<Step>,
}

const NOW: u64 = 1_796_397_602_047;

fuzz_target!(|input: Input| {
    let Ok(shard) = ShardId::new(i64::from(input.shard % 1023 + 1)) else {
        return;
    };
    let mut settings = Settings::default();
    // A restart fences with the largest lead cap the old process ran with (lowering the cap
    // at run time does not shrink what was already issued ahead).
    let mut widest_cap = settings.lead_cap_ms;
    let mut clock = NOW + u64::from(input.start_ms);
    let mut highest_clock = clock;
    let mut generator = Generator::resume(shard, Position::ORIGIN);
    // Every mark stored so far, oldest first: a restart may find any of them.
    let mut marks = vec![Position::ORIGIN];
    let mut last_issued: Option<Position> = None;

    for step in input.steps.into_iter().take(200) {
        let count = match step {
            Step::Issue { clock_move, count } => {
                clock = clock.saturating_add_signed(i64::from(clock_move));
                u64::from(count % 70_000)
            }
            Step::Jump { place, offset, count } => {
                let base = match place {
                    Place::Epoch => EPOCH_MS,
                    Place::Now => NOW,
                    Place::End => LAST_MS,
                };
                clock = base.saturating_add_signed(i64::from(offset));
                u64::from(count)
            }
            Step::Settings {
                lead_cap_ms,
                reserve_ms,
            } => {
                settings = Settings {
                    lead_cap_ms: u64::from(lead_cap_ms),
                    reserve_ms: u64::from(reserve_ms),
                };
                widest_cap = widest_cap.max(settings.lead_cap_ms);
                continue;
            }
            Step::ForeignWrite { ahead } => {
                let base = last_issued.unwrap_or(generator.last());
                let mark = Position::new(
                    base.unix_ms() + u64::from(ahead / 4096),
                    (ahead % 4096) as u16,
                )
                .max(base);
                marks.push(mark);
                generator = generator.rebase(shard, mark);
                assert!(generator.last() >= base, "a rebase went below what was issued");
                continue;
            }
            Step::Restart {
                lost,
                clock_behind,
                fence_ms,
            } => {
                let found = marks[marks.len() - 1 - usize::from(lost) % marks.len()];
                clock = highest_clock.saturating_sub(u64::from(clock_behind));
                let fence_ms = u64::from(fence_ms.max(clock_behind));
                settings.lead_cap_ms = widest_cap;
                generator = Generator::resume_fenced(shard, found, clock, fence_ms, &settings);
                if let Some(mark) = generator.reserve_to_last() {
                    marks.push(mark);
                }
                continue;
            }
        };
        highest_clock = highest_clock.max(clock);

        let before = generator.clone();
        match generator.issue(clock, count, &settings) {
            Ok(issue) => {
                let batch = issue.batch;
                assert_eq!(batch.count(), count);
                if let Some(previous) = last_issued {
                    assert!(batch.first() > previous, "{batch:?} not above {previous:?}");
                }
                assert!(batch.first().unix_ms() >= EPOCH_MS);
                assert!(batch.last() <= Position::END);
                assert!(batch.first_id().as_i64() >= 0 && batch.last_id() > batch.first_id()
                    || count == 1);
                assert!(batch.last().unix_ms() <= clock + settings.lead_cap_ms);
                if count <= 4096 {
                    assert_eq!(batch.first().unix_ms(), batch.last().unix_ms());
                }
                let mut next = batch.first_id().as_i64();
                let mut total = 0;
                for (first, run) in batch.runs() {
                    assert!(first.as_i64() >= next);
                    next = first.as_i64() + run as i64;
                    total += run;
                }
                assert_eq!(total, count);
                assert_eq!(next - 1, batch.last_id().as_i64());
                if let Some(mark) = issue.reserve {
                    assert!(mark >= batch.last());
                    assert!(mark.unix_ms() <= (clock + settings.lead_cap_ms).max(batch.last().unix_ms()));
                    marks.push(mark);
                }
                assert!(generator.reserved() >= batch.last());
                last_issued = Some(batch.last());
            }
            Err(_) => assert_eq!(generator, before, "a refused call changed the generator"),
        }
    }
});
