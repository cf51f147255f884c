//! What outlives a call: replicas and the AOF get explicit SETs, restarts from RDB and AOF
//! continue above the last ID, the script carries on where the module is gone, and replicas
//! refuse to generate.

mod common;

use std::fs;
use std::path::Path;

use common::redis::Connection;
use common::{
    assert_above, assert_increasing, decode, error_line, error_of, id, ids, info_number,
    is_lead_refusal, module_server, run, set_option, status, try_ids, unix_ms, Form, Keys, Script,
    DEFAULT_GENERATOR,
};
use kestrel_testbed::Server;

const RESERVE_MS: u64 = 1_000;
const LEAD_CAP_MS: u64 = 1_000;

/// How a server keeps its data through a crash.
#[derive(Debug, Clone, Copy)]
enum Persistence {
    /// A dump written by SAVE.
    Rdb,
    /// The AOF, fsynced on every write.
    Aof,
}

impl Persistence {
    const ALL: [Persistence; 2] = [Persistence::Rdb, Persistence::Aof];

    fn server(self) -> Server {
        let builder = module_server(&[]);
        match self {
            Persistence::Rdb => builder.start(),
            Persistence::Aof => builder
                .configs(["appendonly yes", "appendfsync always"])
                .start(),
        }
    }

    /// Makes what the server holds now survive a crash.
    fn persist(self, connection: &mut Connection) {
        if let Persistence::Rdb = self {
            let _: () = run(connection, &["SAVE"]);
        }
    }
}

/// Runs the generator as far ahead of the clock as the lead cap lets it, as a flat-out client
/// would just before a crash. Returns the last ID issued.
fn run_to_the_lead_cap(connection: &mut Connection) -> i64 {
    let mut last = id(connection);
    for _ in 0..1_000 {
        match try_ids(connection, DEFAULT_GENERATOR, 65_536, Form::Ranges) {
            Ok(batch) => last = batch[batch.len() - 1],
            Err(error) if is_lead_refusal(&error) => return last,
            Err(error) => panic!("KESTREL.IDS failed: {}", error_line(&error)),
        }
    }
    panic!("1000 batches of 65536 IDs never reached the lead cap");
}

#[test]
fn a_crash_and_restart_continues_above_the_last_id() {
    for persistence in Persistence::ALL {
        let what = format!("{persistence:?}");
        let mut server = persistence.server();
        let mut connection = server.connection();
        ids(&mut connection, 1_000, Form::Int);
        persistence.persist(&mut connection);
        let last = run_to_the_lead_cap(&mut connection);

        server.kill();
        server.restart();

        // The fence written right after loading covers the script too, before any module call.
        let mut connection = server.connection();
        let script = Script::load(&mut connection);
        let by_script = script.ids(&mut connection, DEFAULT_GENERATOR, 10, None);
        let by_module = ids(&mut connection, 10, Form::Int);
        assert_above(
            &by_script,
            last,
            &format!("{what}: the script after the restart"),
        );
        assert_above(
            &by_module,
            last,
            &format!("{what}: the module after the restart"),
        );
        assert_increasing(&[by_script, by_module].concat(), &what);
    }
}

#[test]
fn without_the_module_the_script_carries_on_above_the_last_id() {
    for persistence in Persistence::ALL {
        let what = format!("{persistence:?}");
        let mut server = persistence.server();
        let mut connection = server.connection();
        id(&mut connection);
        let issued = ids(&mut connection, 5_000, Form::Ranges);
        persistence.persist(&mut connection);

        server.kill();
        server.restart_without_module();

        let mut connection = server.connection();
        let unknown = error_of(&mut connection, &["KESTREL.ID"]);
        assert!(
            unknown.starts_with("ERR unknown command"),
            "{what}: {unknown}"
        );
        let script = Script::load(&mut connection);
        let mut after = script.ids(&mut connection, DEFAULT_GENERATOR, 100, None);
        after.extend(script.ids(&mut connection, DEFAULT_GENERATOR, 4096, Some(unix_ms())));
        assert_increasing(&after, &what);
        assert_above(&after, issued[issued.len() - 1], &what);
    }
}

#[test]
fn replicas_and_the_aof_get_explicit_values() {
    let master = module_server(&[])
        .configs(["appendonly yes", "appendfsync always"])
        .start();
    let replica = module_server(&[]).replica_of(&master).start();
    let mut connection = master.connection();

    let mut issued = ids(&mut connection, 1_000, Form::Int);
    issued.extend(ids(&mut connection, 65_536, Form::Ranges));
    let acknowledged: i64 = run(&mut connection, &["WAIT", "1", "10000"]);

    assert_eq!(acknowledged, 1);
    let keys = Keys::of(DEFAULT_GENERATOR);
    let on_master = keys.values(&mut connection);
    let on_replica = keys.values(&mut replica.connection());
    assert_eq!(on_replica, on_master);
    let (last_ms, _, _) = decode(issued[issued.len() - 1]);
    let [shard, lock, sequence] = on_master;
    let lock: u64 = lock
        .and_then(|ms| ms.parse().ok())
        .expect("the lock key holds no mark");
    assert_eq!(
        (shard.as_deref(), sequence.as_deref()),
        (Some("7"), Some("4095"))
    );
    assert!(
        (last_ms..=last_ms + RESERVE_MS).contains(&lock),
        "{lock} vs last {last_ms}"
    );
    assert!(
        lock <= unix_ms() + LEAD_CAP_MS,
        "the mark {lock} is past the clock + lead cap"
    );
    let replicated: String = run(&mut replica.connection(), &["INFO", "commandstats"]);
    assert!(
        !replicated.to_lowercase().contains("kestrel"),
        "{replicated}"
    );

    let aof = read_aof(master.dir());
    let aof_text = String::from_utf8_lossy(&aof).to_lowercase();
    assert!(aof_text.contains("\r\nset\r\n"), "no SET in the AOF");
    assert!(
        aof_text.contains(&format!("\r\n{lock}\r\n")),
        "the mark is not in the AOF"
    );
    assert!(
        !aof_text.contains("kestrel."),
        "a KESTREL command in the AOF"
    );
}

/// Every AOF file under `dir` (Redis 7 keeps a base and increments in `appendonlydir`).
fn read_aof(dir: &Path) -> Vec<u8> {
    let mut contents = Vec::new();
    let entries = fs::read_dir(dir).unwrap_or_else(|error| panic!("{}: {error}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            contents.extend(read_aof(&path));
        } else if path.to_string_lossy().contains(".aof") {
            contents.extend(fs::read(&path).unwrap_or_default());
        }
    }
    assert!(!contents.is_empty(), "no AOF under {}", dir.display());
    contents
}

#[test]
fn module_writes_count_as_changes_for_save() {
    let server = module_server(&[]).start();
    let mut connection = server.connection();
    set_option(&mut connection, "reserve-ms", 0);

    for call in 0..3 {
        let before = info_number(&server, "persistence", "rdb_changes_since_last_save");
        ids(&mut connection, 10, Form::Int);
        let after = info_number(&server, "persistence", "rdb_changes_since_last_save");
        assert!(after > before, "call {call}: {before} -> {after}");
    }
}

#[test]
fn a_replica_refuses_to_generate() {
    let master = module_server(&[]).start();
    let replica = module_server(&[])
        .replica_of(&master)
        .config("replica-read-only no")
        .start();
    let mut on_master = master.connection();
    let issued = ids(&mut on_master, 10, Form::Int);
    // WAIT covers the writes of its own connection only.
    let acknowledged: i64 = run(&mut on_master, &["WAIT", "1", "10000"]);
    assert_eq!(acknowledged, 1);
    let mut connection = replica.connection();
    let before = common::keyspace(&mut connection);

    let refused: [&[&str]; 3] = [
        &["KESTREL.ID"],
        &["KESTREL.IDS", "5"],
        &["KESTREL.ID", "GENERATOR", "other"],
    ];
    for read_only in ["no", "yes"] {
        let _: () = run(
            &mut connection,
            &["CONFIG", "SET", "replica-read-only", read_only],
        );
        for words in refused {
            let error = error_of(&mut connection, words);
            assert!(
                error.starts_with("READONLY "),
                "{words:?} read-only {read_only}: {error}"
            );
        }
    }

    assert_eq!(common::keyspace(&mut connection), before);
    let decoded: Vec<Vec<u64>> = run(&mut connection, &["KESTREL.DECODE", &issued[0].to_string()]);
    assert_eq!(decoded[0][1], 7);
    let seen = status(&mut connection, DEFAULT_GENERATOR);
    let last_ms = decode(issued[issued.len() - 1]).0 as i64;
    let reserved = &seen["reserved-ms"];
    assert!(
        matches!(reserved, common::redis::Value::Int(ms) if *ms >= last_ms),
        "{seen:?}"
    );
}
