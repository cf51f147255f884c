//! Properties of the generator under any sequence of calls, clock movements, counts, reloads
//! and fences: IDs are unique and increase, and the stored mark always covers them.

use kestrel_core::{Generator, Id, Position, Settings, ShardId, EPOCH_MS};
use proptest::prelude::*;

const START: u64 = 1_796_397_602_047;
const FENCE_MS: u64 = 100;

/// One thing that can happen to a generator.
#[derive(Debug, Clone)]
enum Step {
    /// The clock moves by this many milliseconds (negative: it steps back).
    Clock(i64),
    /// A call for this many IDs.
    Issue(u64),
    /// The keys were changed behind the generator's back; it re-reads the stored mark.
    Rebase,
    /// The process restarts from the stored mark, which lost the writes of this many calls.
    /// The new clock is behind the latest reading before the crash by at most the fence: the
    /// case the fence is documented to cover.
    Restart {
        lost_marks: usize,
        clock_behind_ms: u64,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (-3_600_000_i64..3_600_000).prop_map(Step::Clock),
        4 => (-20_i64..50).prop_map(Step::Clock),
        10 => (1_u64..=5_000).prop_map(Step::Issue),
        2 => (1_u64..=100_000).prop_map(Step::Issue),
        1 => Just(Step::Rebase),
        1 => (0_usize..3, 0..=FENCE_MS).prop_map(|(lost_marks, clock_behind_ms)| {
            Step::Restart { lost_marks, clock_behind_ms }
        }),
    ]
}

fn settings() -> impl Strategy<Value = Settings> {
    (0_u64..5_000, 0_u64..2_000).prop_map(|(lead_cap_ms, reserve_ms)| Settings {
        lead_cap_ms,
        reserve_ms,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn ids_are_unique_increasing_and_covered_by_the_mark(
        steps in prop::collection::vec(step(), 1..200),
        settings in settings(),
        shard in 1_i64..=1023,
    ) {
        let shard = ShardId::new(shard).unwrap();
        let mut now = START;
        let mut latest_clock = START;
        let mut generator = Generator::resume(shard, Position::ORIGIN);
        // The marks stored so far, newest last, to model lost writes on a restart.
        let mut marks = vec![Position::ORIGIN];
        let mut last_id: Option<Id> = None;

        for step in steps {
            match step {
                Step::Clock(delta) => {
                    now = now.saturating_add_signed(delta).max(EPOCH_MS);
                    latest_clock = latest_clock.max(now);
                }
                Step::Issue(count) => {
                    let Ok(issue) = generator.issue(now, count, &settings) else {
                        continue;
                    };
                    let first = issue.batch.first_id();
                    if let Some(previous) = last_id {
                        prop_assert!(first > previous, "{first} after {previous}");
                    }
                    let ids: Vec<Id> = issue.batch.ids().collect();
                    prop_assert_eq!(ids.len() as u64, count);
                    prop_assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
                    prop_assert!(ids.iter().all(|id| id.as_i64() >= 0 && id.shard_id() == shard.get()));
                    last_id = ids.last().copied();
                    if let Some(mark) = issue.reserve {
                        marks.push(mark);
                    }
                    prop_assert!(issue.batch.last() <= generator.reserved());
                }
                Step::Rebase => {
                    generator = generator.rebase(shard, *marks.last().unwrap());
                }
                Step::Restart { lost_marks, clock_behind_ms } => {
                    now = latest_clock - clock_behind_ms;
                    let kept = marks.len().saturating_sub(lost_marks).max(1);
                    marks.truncate(kept);
                    let stored = *marks.last().unwrap();
                    generator = Generator::resume_fenced(shard, stored, now, FENCE_MS, &settings);
                    if let Some(mark) = generator.reserve_to_last() {
                        marks.push(mark);
                    }
                }
            }
        }
    }
}
