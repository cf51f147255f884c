//! Time: the lead cap against a flat-out client, clock steps back, and the two ends of the ID
//! space. All but the first use the module built with `--features test-clock`, whose
//! `kestrel.clock-offset-ms` option shifts the module's clock.

mod common;

use std::time::{Duration, Instant};

use common::redis::Connection;
use common::{
    assert_above, assert_increasing, decode, error_line, error_of, id, ids, is_lead_refusal,
    kestrel_counter, keyspace, retry_after_ms, run, set_option, set_shard_id, status,
    test_clock_server, try_ids, unix_ms, Form, Keys, DEFAULT_GENERATOR, SHARD_ID,
};
use kestrel_core::{EPOCH_MS, LAST_MS, MAX_SEQUENCE};

/// The longest the flat-out loop runs.
const FLAT_OUT: Duration = Duration::from_secs(2);

#[test]
fn the_lead_cap_refuses_a_flat_out_loop_and_never_repeats_an_id() {
    let server = common::module_server(&[]).start();
    let mut connection = server.connection();
    let cap_ms: u64 = 20;
    set_option(&mut connection, "lead-cap-ms", cap_ms as i64);
    let mut last = id(&mut connection);
    let mut refusals = 0;
    let mut batches = 0;

    let deadline = Instant::now() + FLAT_OUT;
    while Instant::now() < deadline && refusals < 50 {
        match try_ids(&mut connection, DEFAULT_GENERATOR, 4096, Form::Ranges) {
            Ok(batch) => {
                assert_increasing(&batch, "a batch");
                assert_above(&batch, last, "the next batch");
                last = batch[batch.len() - 1];
                batches += 1;
            }
            Err(error) if is_lead_refusal(&error) => {
                let line = error_line(&error);
                let wait = retry_after_ms(&line);
                assert!(wait.is_some_and(|ms| (1..=cap_ms).contains(&ms)), "{line}");
                refusals += 1;
            }
            Err(error) => panic!("KESTREL.IDS failed: {}", error_line(&error)),
        }
    }

    assert!(
        refusals > 0,
        "{batches} batches of 4096 in {FLAT_OUT:?}, never refused"
    );
    assert!(batches > 0, "every batch was refused");
    let lead = decode(last).0.saturating_sub(unix_ms());
    assert!(
        lead <= cap_ms,
        "the last ID is {lead} ms ahead of the clock"
    );
    assert!(kestrel_counter(&mut connection, "lead_refusals") >= refusals);
    assert!(kestrel_counter(&mut connection, "max_lead_ms") <= cap_ms);
}

#[test]
fn clock_steps_back_never_lower_the_ids() {
    let server = test_clock_server(&[]).start();
    let mut connection = server.connection();
    let mut issued = ids(&mut connection, 100, Form::Int);
    set_option(&mut connection, "lead-cap-ms", 3_600_000);

    // (offset, whether the step back is within the lead cap for certain)
    let steps = [(-10, true), (-1_000, true), (-3_600_000, false), (0, true)];
    for (offset_ms, within_cap) in steps {
        set_option(&mut connection, "clock-offset-ms", offset_ms);
        for count in [1, 4096, 5000] {
            let what = format!("offset {offset_ms} ms, {count} IDs");
            match try_ids(&mut connection, DEFAULT_GENERATOR, count, Form::Int) {
                Ok(batch) => {
                    assert_increasing(&batch, &what);
                    assert_above(&batch, issued[issued.len() - 1], &what);
                    issued.extend(batch);
                }
                Err(error) if is_lead_refusal(&error) && !within_cap => {}
                Err(error) => panic!("{what}: {}", error_line(&error)),
            }
        }
    }
    assert!(kestrel_counter(&mut connection, "clock_steps_back") >= 1);
}

/// Sets the module's clock to read `unix_ms` (give or take the time the call takes).
fn set_clock(connection: &mut Connection, unix_ms: u64) {
    let offset = unix_ms as i64 - common::unix_ms() as i64;
    set_option(connection, "clock-offset-ms", offset);
}

#[test]
fn a_clock_before_the_epoch_is_refused() {
    let server = test_clock_server(&[]).start();
    let mut connection = server.connection();
    ids(&mut connection, 10, Form::Int);
    set_shard_id(&mut connection, "fresh", SHARD_ID + 1);
    set_clock(&mut connection, EPOCH_MS - 60_000);
    let before = keyspace(&mut connection);

    for words in [
        &["KESTREL.ID"][..],
        &["KESTREL.IDS", "5", "GENERATOR", "fresh"],
    ] {
        let error = error_of(&mut connection, words);
        assert!(error.starts_with("KESTREL_CLOCK "), "{words:?}: {error}");
    }

    assert_eq!(keyspace(&mut connection), before);
}

#[test]
fn the_last_millisecond_works_and_then_the_space_is_exhausted() {
    let server = test_clock_server(&[]).start();
    let mut connection = server.connection();
    ids(&mut connection, 10, Form::Int);
    set_option(&mut connection, "lead-cap-ms", 3_600_000);
    set_clock(&mut connection, LAST_MS - 60_000);
    // Another writer leaves the mark at the end of the last millisecond but one.
    let keys = Keys::of(DEFAULT_GENERATOR);
    let lock = (LAST_MS - 1).to_string();
    let _: () = run(
        &mut connection,
        &["MSET", &keys.lock, &lock, &keys.sequence, "4095"],
    );

    let first = id(&mut connection);
    let rest = ids(&mut connection, u64::from(MAX_SEQUENCE), Form::String);

    assert_eq!(decode(first), (LAST_MS, SHARD_ID, 0));
    let last = rest[rest.len() - 1];
    assert_eq!(decode(last), (LAST_MS, SHARD_ID, MAX_SEQUENCE));
    assert!(
        first > 0 && last > first,
        "the sign bit is set: {first} {last}"
    );
    let largest = ((LAST_MS - EPOCH_MS) << 22) | (u64::from(SHARD_ID) << 12) | 4095;
    assert_eq!(last, largest as i64);
    let before = keyspace(&mut connection);
    for words in [
        &["KESTREL.ID"][..],
        &["KESTREL.IDS", "2", "FORMAT", "RANGES"],
    ] {
        let error = error_of(&mut connection, words);
        assert!(
            error.starts_with("KESTREL_EXHAUSTED "),
            "{words:?}: {error}"
        );
    }
    assert_eq!(keyspace(&mut connection), before);

    set_clock(&mut connection, LAST_MS + 60_000);
    set_shard_id(&mut connection, "fresh", SHARD_ID + 1);
    let fresh = error_of(&mut connection, &["KESTREL.ID", "GENERATOR", "fresh"]);
    assert!(fresh.starts_with("KESTREL_EXHAUSTED "), "{fresh}");
    let seen = status(&mut connection, DEFAULT_GENERATOR);
    assert_eq!(seen["last-ms"], common::redis::Value::Int(LAST_MS as i64));
}

#[test]
fn a_fence_refuses_calls_only_until_the_clock_catches_up() {
    let fence_ms = 300;
    let server = common::module_server(&["fence-ms", &fence_ms.to_string()]).start();
    let mut connection = server.connection();

    let refused = error_of(&mut connection, &["KESTREL.ID"]);
    let started = Instant::now();
    let first = id(&mut connection);
    let batch = ids(&mut connection, 10_000, Form::Ranges);

    let wait = retry_after_ms(&refused);
    assert!(wait.is_some_and(|ms| ms <= fence_ms), "{refused}");
    assert!(started.elapsed() < Duration::from_millis(fence_ms + 2_000));
    assert_above(&batch, first, "after the fence");
}
