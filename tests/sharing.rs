//! The module sharing a generator: with the original library's Lua script, from many
//! connections at once, and with anyone who changes its keys behind its back.

mod common;

use std::thread;
use std::time::Duration;

use common::redis::{Connection, RedisResult};
use common::{
    assert_above, assert_increasing, assert_unique, command, decode, error_line, id, ids,
    ids_of_script_reply, keyspace, retry_lead, run, status, try_ids, unix_ms, Form, Keys, Script,
    DEFAULT_GENERATOR, SHARD_ID,
};
use kestrel_testbed::wait_for;

const CONNECTIONS: u64 = 8;
const CALLS_PER_CONNECTION: usize = 2_000;

#[test]
fn module_and_script_never_issue_an_id_twice_from_many_connections() {
    let server = common::module_server(&[]).start();
    let mut setup = server.connection();
    let script = Script::load(&mut setup);
    // The script needs the shard id key, which the module's first call fills from its option.
    let first = id(&mut setup);

    let per_connection: Vec<(Vec<i64>, u32)> = thread::scope(|scope| {
        let workers: Vec<_> = (0..CONNECTIONS)
            .map(|index| {
                let mut connection = server.connection();
                let script = script.clone();
                scope.spawn(move || mixed_calls(&mut connection, &script, index))
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().expect("a connection's thread panicked"))
            .collect()
    });

    let mut all = vec![first];
    for (index, (issued, _)) in per_connection.iter().enumerate() {
        assert_increasing(issued, &format!("connection {index}"));
        all.extend_from_slice(issued);
    }
    let refusals: u32 = per_connection.iter().map(|(_, refusals)| refusals).sum();
    println!("{} IDs, {refusals} lead cap refusals retried", all.len());
    // Sharing a generator must not make module and script leapfrog each other's reserved
    // windows until the lead cap refuses most calls (once about one refusal per call).
    let calls = CONNECTIONS as u32 * CALLS_PER_CONNECTION as u32;
    assert!(
        refusals * 100 < calls,
        "{refusals} refusals in {calls} calls"
    );
    assert_unique(&mut all, "all connections");
    let (last_ms, shard, last_sequence) = decode(all[all.len() - 1]);
    assert_eq!(shard, SHARD_ID);
    let mark = Keys::of(DEFAULT_GENERATOR).mark(&mut server.connection());
    assert!(
        mark >= (last_ms, last_sequence),
        "the keys hold {mark:?}, below the last ID"
    );
}

/// One connection's share: KESTREL.IDS, KESTREL.ID, and the script with and without the
/// caller's clock, picked by a fixed pseudo-random sequence. Returns the IDs in the order they
/// came and how often the lead cap refused a call (each refusal is retried).
fn mixed_calls(connection: &mut Connection, script: &Script, index: u64) -> (Vec<i64>, u32) {
    let mut state = index.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut issued = Vec::new();
    let mut refusals = 0;
    for _ in 0..CALLS_PER_CONNECTION {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let pick = (state >> 33) % 4;
        let count = 1 + (state >> 40) % 64;
        let call = |connection: &mut Connection| -> RedisResult<Vec<i64>> {
            match pick {
                0 => try_ids(connection, DEFAULT_GENERATOR, count, Form::Int),
                1 => command(&["KESTREL.ID"])
                    .query(connection)
                    .map(|id| vec![id]),
                2 => script
                    .call(connection, DEFAULT_GENERATOR, count, Some(unix_ms()))
                    .map(ids_of_script_reply),
                _ => script
                    .call(connection, DEFAULT_GENERATOR, count, None)
                    .map(ids_of_script_reply),
            }
        };
        let (outcome, refused) = retry_lead(|| call(connection));
        let ids = outcome.unwrap_or_else(|error| {
            panic!("connection {index}, call {pick}: {}", error_line(&error))
        });
        issued.extend(ids);
        refusals += refused;
    }
    (issued, refusals)
}

#[test]
fn script_replies_follow_the_original_convention() {
    let server = common::module_server(&[]).start();
    let mut connection = server.connection();
    let script = Script::load(&mut connection);
    let keys = Keys::of(DEFAULT_GENERATOR);

    let missing = script.call(&mut connection, DEFAULT_GENERATOR, 5, None);
    let missing = error_line(&missing.expect_err("the script ran without a shard id"));
    assert!(
        missing.contains("Logical shard ID out of range"),
        "{missing}"
    );

    let _: () = run(&mut connection, &["SET", &keys.shard_id, "7"]);
    let now = unix_ms();
    let reply = script
        .call(&mut connection, DEFAULT_GENERATOR, 5, Some(now))
        .unwrap();

    let [start, end, shard, seconds, microseconds] = reply;
    assert_eq!(
        (end - start + 1, shard),
        (5, i64::from(SHARD_ID)),
        "{reply:?}"
    );
    assert!(microseconds % 1000 == 0 && (0..1_000_000).contains(&microseconds));
    let ms = (seconds * 1000 + microseconds / 1000) as u64;
    assert_eq!(ms, now, "a fresh generator uses the caller's clock");
    let script_ids = ids_of_script_reply(reply);
    for (offset, &id) in script_ids.iter().enumerate() {
        let decoded: Vec<Vec<u64>> = run(&mut connection, &["KESTREL.DECODE", &id.to_string()]);
        let expected = vec![ms, u64::from(SHARD_ID), start as u64 + offset as u64];
        assert_eq!(decoded, [expected], "{id}");
    }
    let [_, lock, sequence] = keys.values(&mut connection);
    assert_eq!(
        (lock, sequence),
        (Some(ms.to_string()), Some(end.to_string()))
    );

    let module_ids = ids(&mut connection, 10, Form::Int);
    let after = script.ids(&mut connection, DEFAULT_GENERATOR, 10, None);

    assert_above(&module_ids, script_ids[4], "the module after the script");
    assert_above(&after, module_ids[9], "the script after the module");
}

/// Something another client does to a generator's keys.
struct Disturbance {
    what: &'static str,
    /// Does it; returns the IDs it issued (the script's), if any.
    act: fn(&mut Connection, &Script, &Keys) -> Vec<i64>,
    /// The shard id the generator's next IDs carry.
    shard_after: u16,
}

const DISTURBANCES: [Disturbance; 15] = [
    Disturbance {
        what: "the script issues IDs",
        act: |connection, script, _| script.ids(connection, DEFAULT_GENERATOR, 100, None),
        shard_after: SHARD_ID,
    },
    Disturbance {
        what: "the script issues IDs with a clock an hour behind",
        act: |connection, script, _| {
            let behind = unix_ms() - 3_600_000;
            script.ids(connection, DEFAULT_GENERATOR, 100, Some(behind))
        },
        shard_after: SHARD_ID,
    },
    Disturbance {
        what: "DEL of the lock key",
        act: |connection, _, keys| redis_do(connection, &["DEL", &keys.lock]),
        shard_after: SHARD_ID,
    },
    Disturbance {
        what: "DEL of all three keys",
        act: |connection, _, keys| {
            redis_do(
                connection,
                &["DEL", &keys.lock, &keys.sequence, &keys.shard_id],
            )
        },
        shard_after: SHARD_ID,
    },
    Disturbance {
        what: "SET of a mark a minute back",
        act: |connection, _, keys| {
            let lock = (unix_ms() - 60_000).to_string();
            redis_do(
                connection,
                &["MSET", &keys.lock, &lock, &keys.sequence, "0"],
            )
        },
        shard_after: SHARD_ID,
    },
    Disturbance {
        what: "SET of a mark past the last ID",
        act: |connection, _, keys| {
            let last_ms = match status(connection, DEFAULT_GENERATOR)["last-ms"] {
                common::redis::Value::Int(ms) => ms,
                ref other => panic!("KESTREL.STATUS last-ms is {other:?}"),
            };
            let lock = (last_ms + 5).to_string();
            redis_do(
                connection,
                &["MSET", &keys.lock, &lock, &keys.sequence, "4095"],
            )
        },
        shard_after: SHARD_ID,
    },
    Disturbance {
        what: "the lock key expires",
        act: |connection, _, keys| {
            let _: i64 = run(connection, &["PEXPIRE", &keys.lock, "1"]);
            let gone = || match run::<i64>(connection, &["EXISTS", &keys.lock]) {
                0 => Ok(()),
                _ => Err("the lock key still exists".to_string()),
            };
            wait_for(
                Duration::from_secs(5),
                "the lock key to expire",
                gone,
                String::new,
            );
            Vec::new()
        },
        shard_after: SHARD_ID,
    },
    Disturbance {
        what: "RENAME of the lock key away",
        act: |connection, _, keys| redis_do(connection, &["RENAME", &keys.lock, "{kestrel}-moved"]),
        shard_after: SHARD_ID,
    },
    Disturbance {
        what: "RENAME of an old mark onto the lock key",
        act: |connection, _, keys| {
            let _: () = run(connection, &["SET", "{kestrel}-old", "1451566800000"]);
            redis_do(connection, &["RENAME", "{kestrel}-old", &keys.lock])
        },
        shard_after: SHARD_ID,
    },
    Disturbance {
        what: "FLUSHALL",
        act: |connection, _, _| redis_do(connection, &["FLUSHALL"]),
        shard_after: SHARD_ID,
    },
    Disturbance {
        what: "FLUSHDB",
        act: |connection, _, _| redis_do(connection, &["FLUSHDB"]),
        shard_after: SHARD_ID,
    },
    Disturbance {
        what: "SWAPDB with an empty database",
        act: |connection, _, _| redis_do(connection, &["SWAPDB", "0", "1"]),
        shard_after: SHARD_ID,
    },
    Disturbance {
        what: "SWAPDB back to the older keys",
        act: |connection, _, _| redis_do(connection, &["SWAPDB", "0", "1"]),
        shard_after: SHARD_ID,
    },
    // Last, as FLUSHALL would put the option's shard id back.
    Disturbance {
        what: "SET of a higher shard id",
        act: |connection, _, keys| redis_do(connection, &["SET", &keys.shard_id, "9"]),
        shard_after: 9,
    },
    Disturbance {
        what: "SET of a lower shard id",
        act: |connection, _, keys| redis_do(connection, &["SET", &keys.shard_id, "3"]),
        shard_after: 3,
    },
];

/// Runs a command for its effect; it issues no IDs.
fn redis_do(connection: &mut Connection, words: &[&str]) -> Vec<i64> {
    let _: common::redis::Value = run(connection, words);
    Vec::new()
}

#[test]
fn keys_changed_behind_the_module_never_lower_its_ids() {
    let server = common::module_server(&[]).start();
    let mut connection = server.connection();
    let script = Script::load(&mut connection);
    let keys = Keys::of(DEFAULT_GENERATOR);
    let mut issued = ids(&mut connection, 100, Form::Int);

    for disturbance in &DISTURBANCES {
        let what = disturbance.what;
        let floor = issued[issued.len() - 1];

        let mut next = (disturbance.act)(&mut connection, &script, &keys);
        let first_own = next.len();
        next.extend(ids(&mut connection, 50, Form::Int));
        next.extend(ids(&mut connection, 1, Form::String));
        next.extend(script.ids(&mut connection, DEFAULT_GENERATOR, 10, None));
        next.extend(ids(&mut connection, 5000, Form::Ranges));

        assert_increasing(&next, what);
        assert_above(&next, floor, what);
        let shards: Vec<u16> = next[first_own..].iter().map(|&id| decode(id).1).collect();
        assert!(
            shards.iter().all(|&shard| shard == disturbance.shard_after),
            "{what}"
        );
        let (last_ms, _, last_sequence) = decode(next[next.len() - 1]);
        let mark = keys.mark(&mut connection);
        assert!(
            mark >= (last_ms, last_sequence),
            "{what}: the keys hold {mark:?}"
        );
        issued.extend(next);
    }
}

#[test]
fn a_lower_shard_id_still_sorts_above_earlier_ids() {
    // With `reserve-ms 0` the mark is the last ID itself, so after the shard id key changes
    // the generator continues inside the same millisecond. The lead cap of an hour keeps that
    // millisecond ahead of the clock, so the clock cannot move the next IDs on by itself.
    let server = common::module_server(&["reserve-ms", "0", "lead-cap-ms", "3600000"]).start();
    let mut connection = server.connection();
    let keys = Keys::of(DEFAULT_GENERATOR);
    let before = ids(&mut connection, 10, Form::Int);

    let _: () = run(&mut connection, &["SET", &keys.shard_id, "3"]);
    let after = ids(&mut connection, 10, Form::Int);

    assert!(after.iter().all(|&id| decode(id).1 == 3));
    assert_above(
        &after,
        before[before.len() - 1],
        "after the shard id went from 7 to 3",
    );
}

/// Two generators on one server with the same shard id: the second to be used is refused.
struct ShardClash {
    what: &'static str,
    /// (database, generator, shard id) stored before the calls.
    shard_ids: &'static [(u8, &'static str, &'static str)],
    /// (database, command) of the call that takes the shard id first, then of the one refused.
    first: (u8, &'static [&'static str]),
    second: (u8, &'static [&'static str]),
    /// The start of the refusal after `KESTREL_SHARDTAKEN `.
    refusal: &'static str,
}

const NAMED_A: &[&str] = &["KESTREL.ID", "GENERATOR", "a"];
const NAMED_B: &[&str] = &["KESTREL.ID", "GENERATOR", "b"];
const UNNAMED: &[&str] = &["KESTREL.ID"];

/// The servers run with the module option `shard-id 7`, which fills the default generator's
/// shard id key in any database where it is missing.
const SHARD_CLASHES: [ShardClash; 5] = [
    ShardClash {
        what: "two named generators given the same shard id",
        shard_ids: &[(0, "a", "5"), (0, "b", "5")],
        first: (0, NAMED_A),
        second: (0, NAMED_B),
        refusal: "generator 'b' has shard id 5, which generator 'a' (database 0)",
    },
    ShardClash {
        what: "the default generator in databases 0 and 1, both filled by the option",
        shard_ids: &[],
        first: (0, UNNAMED),
        second: (1, UNNAMED),
        refusal: "generator 'kestrel' has shard id 7, which generator 'kestrel' (database 0)",
    },
    ShardClash {
        what: "a named generator given the option's shard id",
        shard_ids: &[(0, "a", "7")],
        first: (0, UNNAMED),
        second: (0, NAMED_A),
        refusal: "generator 'a' has shard id 7, which generator 'kestrel' (database 0)",
    },
    ShardClash {
        what: "the default generator after a named one took the option's shard id",
        shard_ids: &[(1, "a", "7")],
        first: (1, NAMED_A),
        second: (0, UNNAMED),
        refusal: "generator 'kestrel' has shard id 7, which generator 'a' (database 1)",
    },
    ShardClash {
        what: "one named generator in two databases",
        shard_ids: &[(0, "a", "5"), (1, "a", "5")],
        first: (1, NAMED_A),
        second: (0, NAMED_A),
        refusal: "generator 'a' has shard id 5, which generator 'a' (database 1)",
    },
];

#[test]
fn a_shard_id_another_generator_uses_is_refused_and_writes_nothing() {
    for clash in &SHARD_CLASHES {
        let what = clash.what;
        let server = common::module_server(&[]).start();
        let mut connection = server.connection();
        for &(database, generator, shard) in clash.shard_ids {
            select(&mut connection, database);
            let _: () = run(
                &mut connection,
                &["SET", &Keys::of(generator).shard_id, shard],
            );
        }
        let (first_database, first) = clash.first;
        let (second_database, second) = clash.second;
        select(&mut connection, first_database);
        let issued = call_id(&mut connection, first, what);
        select(&mut connection, second_database);
        let before = keyspace(&mut connection);

        let refused = common::error_of(&mut connection, second);
        let again = common::error_of(&mut connection, second);

        let expected = format!("KESTREL_SHARDTAKEN {}", clash.refusal);
        assert!(refused.starts_with(&expected), "{what}: {refused}");
        assert_eq!(again, refused, "{what}: refused twice alike");
        assert_eq!(
            keyspace(&mut connection),
            before,
            "{what}: the refusal wrote"
        );
        select(&mut connection, first_database);
        let later = call_id(&mut connection, first, what);
        assert_above(&[later], issued, what);
    }
}

fn select(connection: &mut Connection, database: u8) {
    let _: () = run(connection, &["SELECT", &database.to_string()]);
}

/// One ID from `words` (a `KESTREL.ID` call), retried while the lead cap refuses it.
fn call_id(connection: &mut Connection, words: &[&str], what: &str) -> i64 {
    let (outcome, _) = retry_lead(|| command(words).query(connection));
    outcome.unwrap_or_else(|error| panic!("{what}: {words:?}: {}", error_line(&error)))
}

/// How a shard id passes from generator `a` to generator `b` in each case below.
enum HandOver {
    /// `a`'s shard-id key is written again (a keyspace event), then `b` gets the same id.
    RewrittenThenGiven,
    /// `a`'s keys are deleted, then `b` gets its shard id.
    DeletedThenGiven,
    /// Both already hold the shard id in their keys when the data is reloaded.
    StoredThenReloaded,
}

#[test]
fn generators_handed_one_shard_id_never_issue_the_same_id() {
    let cases = [
        ("rewritten", HandOver::RewrittenThenGiven),
        ("deleted", HandOver::DeletedThenGiven),
        ("reloaded", HandOver::StoredThenReloaded),
    ];
    for (what, hand_over) in cases {
        let server = common::module_server(&[]).start();
        let mut connection = server.connection();
        common::set_shard_id(&mut connection, "a", 5);
        common::set_shard_id(&mut connection, "b", 6);
        let mut all = take(&mut connection, "b", 1);

        // `a` runs ahead of the clock, so its IDs reach past anything `b` would start from.
        for _ in 0..10 {
            all.extend(take(&mut connection, "a", 65_536));
        }
        match hand_over {
            HandOver::RewrittenThenGiven => common::set_shard_id(&mut connection, "a", 5),
            HandOver::DeletedThenGiven => {
                let keys = Keys::of("a");
                let _: i64 = run(
                    &mut connection,
                    &["DEL", &keys.shard_id, &keys.lock, &keys.sequence],
                );
            }
            HandOver::StoredThenReloaded => {
                common::set_shard_id(&mut connection, "b", 5);
                let _: () = run(&mut connection, &["DEBUG", "RELOAD"]);
                all.extend(take(&mut connection, "a", 65_536));
            }
        }
        if !matches!(hand_over, HandOver::StoredThenReloaded) {
            common::set_shard_id(&mut connection, "b", 5);
        }
        for _ in 0..10 {
            all.extend(take(&mut connection, "b", 65_536));
        }

        assert_unique(&mut all, what);
    }
}

/// `count` IDs from `generator`, waiting out lead cap refusals.
fn take(connection: &mut Connection, generator: &str, count: u64) -> Vec<i64> {
    let (outcome, _) = retry_lead(|| try_ids(connection, generator, count, Form::Ranges));
    outcome.unwrap_or_else(|error| panic!("{generator}: {}", error_line(&error)))
}
