//! Bad input: every refusal has its error code, changes nothing, and leaves the server
//! answering. Also bad module arguments (the server must not start) and a full memory.

mod common;

use std::panic::{self, AssertUnwindSafe};

use common::redis::Connection;
use common::{
    assert_above, error_line, error_of, ids, info_number, keyspace, module_server, run, set_option,
    Form, Keys, DEFAULT_GENERATOR,
};
use kestrel_testbed::Server;

/// One refused call: the writes that set it up, the call, and what its error must say.
struct BadInput {
    setup: &'static [&'static [&'static str]],
    words: &'static [&'static str],
    /// The words follow `EVALSHA <the script's sha>`: a call of the Lua script.
    script: bool,
    code: &'static str,
    mentions: &'static str,
}

const fn bad(
    words: &'static [&'static str],
    code: &'static str,
    mentions: &'static str,
) -> BadInput {
    BadInput {
        setup: &[],
        words,
        script: false,
        code,
        mentions,
    }
}

/// The script called with `words` (number of keys, KEYS, ARGV) after `setup`.
const fn bad_script(
    setup: &'static [&'static [&'static str]],
    words: &'static [&'static str],
    code: &'static str,
    mentions: &'static str,
) -> BadInput {
    BadInput {
        setup,
        words,
        script: true,
        code,
        mentions,
    }
}

const fn bad_state(setup: &'static [&'static [&'static str]], code: &'static str) -> BadInput {
    BadInput {
        setup,
        words: &["KESTREL.ID"],
        script: false,
        code,
        mentions: "{kestrel}-",
    }
}

const IDS_USAGE: &str = "usage: KESTREL.IDS <count>";
const ID_USAGE: &str = "usage: KESTREL.ID [GENERATOR";
const COUNT_RANGE: &str = "from 1 to 5000";
const OUT_OF_RANGE: &str = "Logical shard ID out of range";
const ARITY: &str = "ERR wrong number of arguments";
const LOCK: &str = "{kestrel}-generator-lock";
const SEQUENCE: &str = "{kestrel}-generator-sequence";
const SHARD: &str = "{kestrel}-shard-id";
/// One past the last millisecond of the ID space.
const PAST_LAST_MS: &str = "3650590055552";
const BEFORE_EPOCH_MS: &str = "1451566799999";
const LAYOUT: &str = "must fit the ID layout";
/// The server's lead cap, which a case's setup may lower.
const LEAD_CAP_MS: i64 = 1_000;

/// The server runs with `max-batch 5000`, the default lead cap and no `shard-id` option; before
/// each case the generator has shard id 7 and has issued IDs.
const CASES: &[BadInput] = &[
    bad(&["KESTREL.IDS", "0"], "KESTREL_BADCOUNT", COUNT_RANGE),
    bad(&["KESTREL.IDS", "-1"], "KESTREL_BADCOUNT", COUNT_RANGE),
    bad(&["KESTREL.IDS", "1.5"], "KESTREL_BADCOUNT", COUNT_RANGE),
    bad(&["KESTREL.IDS", ""], "KESTREL_BADCOUNT", COUNT_RANGE),
    bad(
        &["KESTREL.IDS", "99999999999999999999"],
        "KESTREL_BADCOUNT",
        IDS_USAGE,
    ),
    bad(&["KESTREL.IDS", "5001"], "KESTREL_BADCOUNT", COUNT_RANGE),
    bad(&["KESTREL.IDS", " 5"], "KESTREL_BADCOUNT", COUNT_RANGE),
    bad(&["KESTREL.IDS"], ARITY, "kestrel.ids"),
    bad(&["KESTREL.DECODE"], ARITY, "kestrel.decode"),
    bad(
        &["KESTREL.ID", "FORMAT", "INT", "GENERATOR", "g", "x"],
        "KESTREL_SYNTAX",
        ID_USAGE,
    ),
    bad(
        &["KESTREL.IDS", "5", "FORMAT", "INT", "extra"],
        "KESTREL_SYNTAX",
        IDS_USAGE,
    ),
    bad(
        &["KESTREL.STATUS", "GENERATOR", "g", "x"],
        "KESTREL_SYNTAX",
        "KESTREL.STATUS",
    ),
    bad(
        &["KESTREL.ID", "SHARD", "5"],
        "KESTREL_SYNTAX",
        "unknown option",
    ),
    bad(
        &["KESTREL.ID", "FORMAT", "INT", "FORMAT", "STRING"],
        "KESTREL_SYNTAX",
        "twice",
    ),
    bad(
        &["KESTREL.IDS", "5", "GENERATOR", "a", "GENERATOR", "b"],
        "KESTREL_SYNTAX",
        "twice",
    ),
    bad(
        &["KESTREL.ID", "GENERATOR"],
        "KESTREL_SYNTAX",
        "needs a value",
    ),
    bad(
        &["KESTREL.IDS", "5", "FORMAT"],
        "KESTREL_SYNTAX",
        "needs a value",
    ),
    bad(
        &["KESTREL.ID", "FORMAT", "RANGES"],
        "KESTREL_SYNTAX",
        ID_USAGE,
    ),
    bad(
        &["KESTREL.IDS", "5", "FORMAT", "JSON"],
        "KESTREL_SYNTAX",
        IDS_USAGE,
    ),
    bad(&["KESTREL.ID", "GENERATOR", "a{b}"], "KESTREL_BADNAME", "{"),
    bad(
        &["KESTREL.IDS", "5", "GENERATOR", "{kestrel}"],
        "KESTREL_BADNAME",
        "{",
    ),
    bad(
        &["KESTREL.ID", "GENERATOR", ""],
        "KESTREL_BADNAME",
        "non-empty",
    ),
    bad(
        &["KESTREL.ID", "GENERATOR", "unset"],
        "KESTREL_NOSHARD",
        "{unset}-shard-id",
    ),
    bad(&["KESTREL.DECODE", "-1"], "KESTREL_BADID", "'-1'"),
    bad(&["KESTREL.DECODE", "abc"], "KESTREL_BADID", "'abc'"),
    bad(&["KESTREL.DECODE", "1.5"], "KESTREL_BADID", "'1.5'"),
    bad(
        &["KESTREL.DECODE", "9223372036854775808"],
        "KESTREL_BADID",
        "9223372036854775808",
    ),
    bad(&["KESTREL.DECODE", "1", ""], "KESTREL_BADID", "''"),
    bad_state(&[&["SET", SHARD, "abc"]], "KESTREL_BADSHARD"),
    bad_state(&[&["SET", SHARD, "0"]], "KESTREL_BADSHARD"),
    bad_state(&[&["SET", SHARD, "1024"]], "KESTREL_BADSHARD"),
    bad_state(&[&["SET", SHARD, "-1"]], "KESTREL_BADSHARD"),
    bad_state(
        &[&["SET", SHARD, "99999999999999999999"]],
        "KESTREL_BADSHARD",
    ),
    bad_state(
        &[&["DEL", SHARD], &["HSET", SHARD, "f", "7"]],
        "KESTREL_BADSTATE",
    ),
    bad_state(&[&["DEL", SHARD]], "KESTREL_NOSHARD"),
    bad_state(
        &[&["DEL", LOCK], &["HSET", LOCK, "f", "1"]],
        "KESTREL_BADSTATE",
    ),
    bad_state(
        &[&["DEL", SEQUENCE], &["RPUSH", SEQUENCE, "1"]],
        "KESTREL_BADSTATE",
    ),
    bad_state(&[&["SET", LOCK, "garbage"]], "KESTREL_BADSTATE"),
    bad_state(&[&["SET", LOCK, "-5"]], "KESTREL_BADSTATE"),
    bad_state(&[&["SET", LOCK, "1.5"]], "KESTREL_BADSTATE"),
    bad_state(&[&["SET", LOCK, ""]], "KESTREL_BADSTATE"),
    bad_state(&[&["SET", LOCK, PAST_LAST_MS]], "KESTREL_BADSTATE"),
    bad_state(&[&["SET", SEQUENCE, "4096"]], "KESTREL_BADSTATE"),
    bad_state(&[&["SET", SEQUENCE, "-1"]], "KESTREL_BADSTATE"),
    bad_state(&[&["SET", SEQUENCE, "x"]], "KESTREL_BADSTATE"),
    BadInput {
        setup: &[&["SET", LOCK, "garbage"]],
        words: &["KESTREL.IDS", "100", "FORMAT", "RANGES"],
        script: false,
        code: "KESTREL_BADSTATE",
        mentions: LOCK,
    },
    BadInput {
        setup: &[&["SET", SHARD, "1024"]],
        words: &["KESTREL.IDS", "100"],
        script: false,
        code: "KESTREL_BADSHARD",
        mentions: OUT_OF_RANGE,
    },
    BadInput {
        setup: &[&["DEL", LOCK], &["HSET", LOCK, "f", "1"]],
        words: &["KESTREL.STATUS"],
        script: false,
        code: "KESTREL_BADSTATE",
        mentions: LOCK,
    },
    // With no lead cap a batch stays in the clock's millisecond: waiting never makes room for
    // more than 4096 IDs, so the count is refused, not the lead.
    BadInput {
        setup: &[&["CONFIG", "SET", "kestrel.lead-cap-ms", "0"]],
        words: &["KESTREL.IDS", "4097"],
        script: false,
        code: "KESTREL_BADCOUNT",
        mentions: "at most 4096",
    },
    bad_script(
        &[],
        &["3", LOCK, SEQUENCE, SHARD, "4096", "1", "1023", "1"],
        "KESTREL_BADARG",
        LAYOUT,
    ),
    bad_script(
        &[],
        &["3", LOCK, SEQUENCE, SHARD, "-1", "1", "1023", "1"],
        "KESTREL_BADARG",
        LAYOUT,
    ),
    bad_script(
        &[],
        &["3", LOCK, SEQUENCE, SHARD, "4095", "0", "1023", "1"],
        "KESTREL_BADARG",
        LAYOUT,
    ),
    bad_script(
        &[],
        &["3", LOCK, SEQUENCE, SHARD, "4095", "1", "1024", "1"],
        "KESTREL_BADARG",
        LAYOUT,
    ),
    bad_script(
        &[],
        &["3", LOCK, SEQUENCE, SHARD, "4095", "8", "7", "1"],
        "KESTREL_BADARG",
        LAYOUT,
    ),
    bad_script(
        &[],
        &["2", LOCK, SEQUENCE, "4095", "1", "1023", "1"],
        "KESTREL_BADARG",
        "expected 3 KEYS",
    ),
    bad_script(
        &[],
        &["4", LOCK, SEQUENCE, SHARD, "x", "4095", "1", "1023", "1"],
        "KESTREL_BADARG",
        "expected 3 KEYS",
    ),
    bad_script(
        &[],
        &["3", SEQUENCE, LOCK, SHARD, "4095", "1", "1023", "1"],
        "KESTREL_BADARG",
        "in that order",
    ),
    bad_script(
        &[],
        &[
            "3",
            "{other}-generator-lock",
            SEQUENCE,
            SHARD,
            "4095",
            "1",
            "1023",
            "1",
        ],
        "KESTREL_BADARG",
        "one generator's",
    ),
    bad_script(
        &[],
        &["3", SHARD, SEQUENCE, SHARD, "4095", "1", "1023", "1"],
        "KESTREL_BADARG",
        "three different keys",
    ),
    bad_script(
        &[],
        &[
            "3",
            LOCK,
            SEQUENCE,
            SHARD,
            "4095",
            "1",
            "1023",
            "1",
            BEFORE_EPOCH_MS,
        ],
        "KESTREL_CLOCK",
        BEFORE_EPOCH_MS,
    ),
    bad_script(
        &[],
        &[
            "3",
            LOCK,
            SEQUENCE,
            SHARD,
            "4095",
            "1",
            "1023",
            "1",
            PAST_LAST_MS,
        ],
        "KESTREL_EXHAUSTED",
        "3650590055551",
    ),
    bad_script(
        &[&["SET", LOCK, PAST_LAST_MS]],
        &["3", LOCK, SEQUENCE, SHARD, "4095", "1", "1023", "1"],
        "KESTREL_BADSTATE",
        LOCK,
    ),
    bad_script(
        &[&["SET", SEQUENCE, "4096"]],
        &["3", LOCK, SEQUENCE, SHARD, "4095", "1", "1023", "1"],
        "KESTREL_BADSTATE",
        SEQUENCE,
    ),
];

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let server = Server::builder().module(&["max-batch", "5000"]).start();
    let mut connection = server.connection();
    let sha: String = run(&mut connection, &["SCRIPT", "LOAD", kestrel_core::SCRIPT]);

    for case in CASES {
        let what = format!("{:?} after {:?}", case.words, case.setup);
        let issued = prepare(&mut connection, case.setup);
        let before = keyspace(&mut connection);
        let words = if case.script {
            [&["EVALSHA", sha.as_str()], case.words].concat()
        } else {
            case.words.to_vec()
        };

        let error = error_of(&mut connection, &words);

        assert!(error.starts_with(case.code), "{what}: {error}");
        assert!(error.contains(case.mentions), "{what}: {error}");
        if case.code == "KESTREL_BADSHARD" {
            assert!(error.contains(OUT_OF_RANGE), "{what}: {error}");
        }
        assert_eq!(
            keyspace(&mut connection),
            before,
            "{what} changed the keyspace"
        );
        let pong: String = run(&mut connection, &["PING"]);
        assert_eq!(pong, "PONG", "{what}");
        let _: () = run(&mut connection, &["FLUSHALL"]);
        set_option(&mut connection, "lead-cap-ms", LEAD_CAP_MS);
        let after = prepare(&mut connection, &[]);
        assert_above(&after, issued[issued.len() - 1], &what);
    }
}

/// Gives the generator shard id 7 and some issued IDs, then runs `setup`. Returns the IDs.
fn prepare(connection: &mut Connection, setup: &[&[&str]]) -> Vec<i64> {
    let _: () = run(connection, &["SET", SHARD, "7"]);
    let issued = ids(connection, 10, Form::Int);
    for words in setup {
        let _: common::redis::Value = run(connection, words);
    }
    issued
}

#[test]
fn bad_module_arguments_stop_the_server_with_a_clear_log_line() {
    let cases: [(&[&str], &str); 6] = [
        (
            &["shard-id", "2000"],
            "option 'shard-id' takes an integer from 0 to 1023",
        ),
        (&["shard-idd", "7"], "unknown option 'shard-idd'"),
        (&["shard-id"], "module arguments are pairs"),
        (&["max-batch", "0"], "option 'max-batch' takes an integer"),
        (
            &["lead-cap-ms", "soon"],
            "option 'lead-cap-ms' takes an integer",
        ),
        (
            &["shard-id", "7", "reserve-ms", "-1"],
            "option 'reserve-ms' takes an integer",
        ),
    ];

    for (args, expected) in cases {
        let builder = Server::builder().module(args);

        // The testbed panics, with the end of the server log, when a server does not start.
        let started = panic::catch_unwind(AssertUnwindSafe(|| builder.start()));

        let message = match started {
            Ok(server) => panic!("{args:?}: the server started: {server:?}"),
            Err(payload) => payload
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_default(),
        };
        assert!(
            message.contains("kestrel: not loaded"),
            "{args:?}: {message}"
        );
        assert!(message.contains(expected), "{args:?}: {message}");
    }
}

#[test]
fn a_full_memory_refuses_and_changes_nothing() {
    let server = module_server(&[])
        .config("maxmemory-policy noeviction")
        .start();
    let mut connection = server.connection();
    let issued = ids(&mut connection, 100, Form::Int);
    let used = info_number(&server, "memory", "used_memory");
    let limit = (used + 512 * 1024).to_string();
    let _: () = run(&mut connection, &["CONFIG", "SET", "maxmemory", &limit]);
    fill(&mut connection);
    let keys = Keys::of(DEFAULT_GENERATOR);
    let before = (
        keys.values(&mut connection),
        run::<u64>(&mut connection, &["DBSIZE"]),
    );

    for words in [
        &["KESTREL.ID"][..],
        &["KESTREL.IDS", "10"],
        &["KESTREL.ID", "GENERATOR", "fresh"],
    ] {
        let error = error_of(&mut connection, words);
        assert!(error.starts_with("OOM "), "{words:?}: {error}");
    }

    let after = (
        keys.values(&mut connection),
        run::<u64>(&mut connection, &["DBSIZE"]),
    );
    assert_eq!(after, before);
    let _: () = run(&mut connection, &["CONFIG", "SET", "maxmemory", "0"]);
    let later = ids(&mut connection, 10, Form::Int);
    assert_above(&later, issued[issued.len() - 1], "after memory was freed");
}

/// Writes 64 KB values until Redis refuses with OOM.
fn fill(connection: &mut Connection) {
    let value = "x".repeat(64 * 1024);
    for index in 0..1_000 {
        let outcome =
            common::command(&["SET", &format!("fill:{index}"), &value]).query::<()>(connection);
        match outcome {
            Ok(()) => {}
            Err(error) if error_line(&error).starts_with("OOM ") => return,
            Err(error) => panic!("SET failed: {}", error_line(&error)),
        }
    }
    panic!("1000 values of 64 KB never filled maxmemory");
}
