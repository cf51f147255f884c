//! Generating on one server: single IDs and batches in every reply form, decoding, the status
//! and INFO the module reports, and the keys it declares.

mod common;

use common::redis::{Connection, ConnectionLike, Value};
use common::{
    assert_above, assert_increasing, command, decode, error_line, error_of, id, ids,
    kestrel_counter, kestrel_info, module_server, retry_lead, run, set_shard_id, status, try_ids,
    unix_ms, Form, Keys, SHARD_ID,
};
use kestrel_core::{EPOCH_MS, LAST_MS, SEQUENCES_PER_MS};

const MAX_BATCH: u64 = 65_536;

#[test]
fn single_ids_increase_and_carry_the_shard_id() {
    let server = module_server(&[]).start();
    let mut connection = server.connection();

    let mut seen = Vec::new();
    for format in ["INT", "STRING", "INT", "STRING"] {
        let reply: Value = run(&mut connection, &["KESTREL.ID", "FORMAT", format]);
        let id = match (format, reply) {
            ("INT", Value::Int(id)) => id,
            ("STRING", Value::BulkString(text)) => String::from_utf8_lossy(&text).parse().unwrap(),
            (_, other) => panic!("KESTREL.ID FORMAT {format} replied {other:?}"),
        };
        seen.push(id);
    }
    seen.push(id(&mut connection));

    assert_increasing(&seen, "KESTREL.ID");
    for id in seen {
        assert_eq!(decode(id).1, SHARD_ID, "{id}");
    }
}

#[test]
fn batches_are_whole_and_increasing_in_every_form() {
    let server = module_server(&[]).start();
    let mut connection = server.connection();
    let mut floor = id(&mut connection);

    for count in [1, 4096, 4097, 10_000, MAX_BATCH] {
        for form in Form::ALL {
            let what = format!("KESTREL.IDS {count} FORMAT {}", form.name());

            let batch = ids(&mut connection, count, form);

            assert_eq!(batch.len() as u64, count, "{what}");
            assert_increasing(&batch, &what);
            assert_above(&batch, floor, &what);
            let first_ms = decode(batch[0]).0;
            let last_ms = decode(batch[batch.len() - 1]).0;
            // Up to 4096 IDs stay in one millisecond; a larger batch starts wherever the last
            // one ended and fills consecutive milliseconds.
            let spans = last_ms - first_ms + 1;
            let fewest = count.div_ceil(SEQUENCES_PER_MS);
            let most = if count <= SEQUENCES_PER_MS {
                1
            } else {
                fewest + 1
            };
            assert!((fewest..=most).contains(&spans), "{what}: spans {spans} ms");
            assert!(batch.iter().all(|&id| decode(id).1 == SHARD_ID), "{what}");
            floor = batch[batch.len() - 1];
        }
    }
}

#[test]
fn a_new_generator_serves_a_large_first_batch() {
    // A new generator starts at the clock plus the lead cap, so a first batch that spans
    // several milliseconds is refused until the clock has moved on that far: a retry after
    // the time the refusal names must succeed.
    let server = module_server(&[]).start();
    let mut connection = server.connection();

    let batch = ids(&mut connection, MAX_BATCH, Form::Ranges);

    assert_eq!(batch.len() as u64, MAX_BATCH);
    assert_increasing(&batch, "the first batch");
}

#[test]
fn ranges_are_one_run_per_millisecond() {
    let server = module_server(&[]).start();
    let mut connection = server.connection();

    for count in [1, 4096, 4097, 10_000] {
        let words = ["KESTREL.IDS", &count.to_string(), "FORMAT", "RANGES"];
        let (runs, _) = retry_lead(|| command(&words).query::<Vec<Vec<String>>>(&mut connection));
        let runs = runs.unwrap();

        let milliseconds: Vec<u64> = runs
            .iter()
            .map(|run| decode(run[0].parse().unwrap()).0)
            .collect();
        let total: u64 = runs.iter().map(|run| run[1].parse::<u64>().unwrap()).sum();
        assert_eq!(total, count, "{words:?}");
        let consecutive = milliseconds.windows(2).all(|pair| pair[1] == pair[0] + 1);
        assert!(
            consecutive,
            "{words:?}: runs are not in consecutive ms: {runs:?}"
        );
    }
}

#[test]
fn decode_round_trips() {
    let server = module_server(&[]).start();
    let mut connection = server.connection();
    id(&mut connection);
    let batch = ids(&mut connection, 10_000, Form::Int);
    // The contract's worked example, made by the original library with shard 1.
    let example = 1_446_325_212_348_944_384;
    let largest = i64::MAX;
    let sample: Vec<i64> = batch
        .iter()
        .step_by(997)
        .copied()
        .chain([batch[batch.len() - 1], example, largest, 0])
        .collect();

    let words: Vec<String> = sample.iter().map(i64::to_string).collect();
    let mut request = vec!["KESTREL.DECODE"];
    request.extend(words.iter().map(String::as_str));
    let decoded: Vec<Vec<u64>> = run(&mut connection, &request);

    let expected: Vec<Vec<u64>> = sample
        .iter()
        .map(|&id| {
            let (ms, shard, sequence) = decode(id);
            vec![ms, shard.into(), sequence.into()]
        })
        .collect();
    assert_eq!(decoded, expected);
    assert_eq!(decode(example), (1_796_397_602_047, 1, 0));
    assert_eq!(decode(largest), (LAST_MS, 1023, 4095));
    assert_eq!(decode(0), (EPOCH_MS, 0, 0));
    let now = unix_ms();
    let first_ms = decode(batch[0]).0;
    assert!(
        first_ms + 10_000 > now && first_ms < now + 10_000,
        "{first_ms} vs clock {now}"
    );
}

#[test]
fn status_reports_the_generator() {
    let server = module_server(&[]).start();
    let mut connection = server.connection();

    let before = status(&mut connection, "kestrel");
    assert_eq!(before["generator"], Value::BulkString(b"kestrel".to_vec()));
    assert_eq!(before["shard-id"], Value::Nil, "{before:?}");
    assert_eq!(before["source"], Value::BulkString(b"keys".to_vec()));

    let batch = ids(&mut connection, 100, Form::Int);
    let last = batch[batch.len() - 1];
    let after = status(&mut connection, "kestrel");

    let number = |name: &str| match after[name] {
        Value::Int(value) => value,
        ref other => panic!("KESTREL.STATUS {name} is {other:?}"),
    };
    let (last_ms, _, last_sequence) = decode(last);
    assert_eq!(number("shard-id"), i64::from(SHARD_ID));
    assert_eq!(number("last-ms"), last_ms as i64);
    assert_eq!(number("last-sequence"), i64::from(last_sequence));
    assert!(number("reserved-ms") >= number("last-ms"), "{after:?}");
    assert_eq!(
        number("lead-ms"),
        (number("last-ms") - number("clock-ms")).max(0)
    );
    assert!(
        (number("clock-ms") - unix_ms() as i64).abs() < 5_000,
        "{after:?}"
    );
    assert_eq!(after["source"], Value::BulkString(b"memory".to_vec()));
    let [shard, lock, sequence] = Keys::of("kestrel").values(&mut connection);
    assert_eq!(shard.as_deref(), Some("7"));
    assert_eq!(
        lock.map(|ms| ms.parse::<i64>().unwrap()),
        Some(number("reserved-ms"))
    );
    assert_eq!(sequence.as_deref(), Some("4095"));
}

#[test]
fn info_counts_calls_ids_and_errors() {
    let server = module_server(&[]).start();
    let mut connection = server.connection();
    let counters = ["calls", "ids_issued", "errors", "mark_writes", "fences"];
    let before: Vec<u64> = counters
        .iter()
        .map(|name| kestrel_counter(&mut connection, name))
        .collect();

    id(&mut connection);
    ids(&mut connection, 100, Form::Ranges);
    error_of(&mut connection, &["KESTREL.IDS", "0"]);

    let info = kestrel_info(&mut connection);
    let after: Vec<u64> = counters
        .iter()
        .map(|name| kestrel_counter(&mut connection, name))
        .collect();
    let grown: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    assert_eq!(
        &grown[..3],
        &[2, 101, 1],
        "calls, ids_issued, errors: {info:?}"
    );
    assert!(
        grown[3] >= 1 && grown[4] >= 1,
        "mark_writes, fences: {info:?}"
    );
    assert_eq!(info["shard_id"], "7");
    assert_eq!(info["epoch_ms"], EPOCH_MS.to_string());
    assert_eq!(info["max_batch"], MAX_BATCH.to_string());
    assert_eq!(info["generators_in_memory"], "1");
    assert!(!info["version"].is_empty());
}

#[test]
fn commands_declare_the_generator_as_their_key() {
    let server = module_server(&[]).start();
    let mut connection = server.connection();
    let cases: [&[&str]; 5] = [
        &["KESTREL.ID", "GENERATOR", "x"],
        &["KESTREL.ID", "FORMAT", "STRING", "GENERATOR", "x"],
        &["KESTREL.IDS", "5", "GENERATOR", "x"],
        &["KESTREL.IDS", "5", "FORMAT", "RANGES", "GENERATOR", "x"],
        &["KESTREL.STATUS", "GENERATOR", "x"],
    ];

    for case in cases {
        let mut words = vec!["COMMAND", "GETKEYS"];
        words.extend_from_slice(case);
        let keys: Vec<String> = run(&mut connection, &words);
        assert_eq!(keys, ["x"], "{case:?}");
    }
}

#[test]
fn named_generators_keep_their_own_keys() {
    let server = module_server(&[]).start();
    let mut connection = server.connection();
    // The default generator takes the option's shard id; every other one is given its own.
    let generators = [
        ("kestrel", SHARD_ID),
        ("orders", 8),
        ("with space", 9),
        ("nul\0byte", 10),
        ("ünïcode", 11),
        ("x", 12),
    ];
    for (name, shard) in generators.iter().skip(1) {
        set_shard_id(&mut connection, name, *shard);
    }

    for (name, shard) in generators {
        let batch = try_ids(&mut connection, name, 10, Form::Int);
        let batch = batch.unwrap_or_else(|error| panic!("{name:?}: {}", error_line(&error)));
        assert_increasing(&batch, name);
        assert!(batch.iter().all(|&id| decode(id).1 == shard), "{name:?}");
    }

    for (name, shard) in generators {
        let [stored, lock, sequence] = Keys::of(name).values(&mut connection);
        assert_eq!(stored, Some(shard.to_string()), "{name:?}");
        assert!(lock.is_some() && sequence.is_some(), "{name:?}");
    }
    let size: u64 = run(&mut connection, &["DBSIZE"]);
    assert_eq!(size, 3 * generators.len() as u64);
}

#[test]
fn generators_in_one_multi_need_shard_ids_of_their_own() {
    // The option fills only the default generator's shard id: two named generators without
    // one are refused, instead of both taking the option's and issuing the same IDs.
    let server = module_server(&[]).start();
    let mut connection = server.connection();
    let generators = [("a", 8), ("b", 9)];

    let refused = multi_ids(&mut connection, &generators);

    for ((name, _), reply) in generators.iter().zip(&refused) {
        let key = Keys::of(name).shard_id;
        let expected = format!("KESTREL_NOSHARD {key} is missing; SET it to a shard id of its own");
        assert!(
            matches!(reply, Err(line) if line.starts_with(&expected)),
            "{name}: {reply:?}"
        );
    }
    let size: u64 = run(&mut connection, &["DBSIZE"]);
    assert_eq!(size, 0, "a refused generator wrote state");

    for (name, shard) in generators {
        set_shard_id(&mut connection, name, shard);
    }
    let issued = multi_ids(&mut connection, &generators);

    let issued: Vec<i64> = issued
        .into_iter()
        .map(|reply| reply.unwrap_or_else(|line| panic!("{line}")))
        .collect();
    let shards: Vec<u16> = issued.iter().map(|&id| decode(id).1).collect();
    assert_eq!(shards, [8, 9]);
    assert_ne!(issued[0], issued[1]);
}

/// `KESTREL.ID GENERATOR <name>` for each generator in one MULTI: each reply an ID or an error
/// line.
fn multi_ids(connection: &mut Connection, generators: &[(&str, u16)]) -> Vec<Result<i64, String>> {
    let _: () = run(connection, &["MULTI"]);
    for (name, _) in generators {
        let queued: String = run(connection, &["KESTREL.ID", "GENERATOR", name]);
        assert_eq!(queued, "QUEUED");
    }
    // EXEC's reply as it came: `query` would turn it into its first error.
    let exec = connection.req_command(&command(&["EXEC"]));
    let Ok(Value::Array(replies)) = exec else {
        panic!("EXEC replied {exec:?}");
    };
    replies
        .into_iter()
        .map(|reply| match reply {
            Value::Int(id) => Ok(id),
            Value::ServerError(error) => Err(error_line(&error.into())),
            other => panic!("EXEC replied {other:?}"),
        })
        .collect()
}
