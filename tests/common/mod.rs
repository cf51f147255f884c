//! What the module's integration tests share: servers with the module loaded, calls in every
//! reply form, the Lua script called the way the original library calls it, snapshots of the
//! keyspace, error replies and INFO fields.
//!
//! Every server is a real redis-server (or `$KESTREL_SERVER_BIN`) from `kestrel-testbed`, on a
//! free loopback port in its own temporary folder, killed when dropped. The module must be built
//! first (`cargo build -p kestrel-module`; the clock tests also need the `test-clock` build, see
//! `scripts/test.sh`).

// Each test file uses only some of these helpers.
#![allow(dead_code)]

use std::collections::HashMap;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kestrel_core::{Id, EPOCH_MS, MAX_SEQUENCE};
pub use kestrel_testbed::redis;
use kestrel_testbed::{test_clock_module_path, Server, ServerBuilder};
use redis::{Connection, RedisError, RedisResult, Value};

/// The shard id the test servers are loaded with.
pub const SHARD_ID: u16 = 7;

/// The generator commands use when they name none.
pub const DEFAULT_GENERATOR: &str = "kestrel";

/// How long a call refused by the lead cap is retried before the test fails.
pub const LEAD_RETRY_TIMEOUT: Duration = Duration::from_secs(10);

/// A builder for a server with the module loaded with `shard-id 7` and `args`.
pub fn module_server(args: &[&str]) -> ServerBuilder {
    Server::builder().module(&module_args(args))
}

/// Like [`module_server`], with the module built with `--features test-clock`.
pub fn test_clock_server(args: &[&str]) -> ServerBuilder {
    Server::builder().module_file(test_clock_module_path(), &module_args(args))
}

fn module_args<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["shard-id", "7"];
    all.extend_from_slice(args);
    all
}

/// Gives `generator` a shard id of its own: `SET {<generator>}-shard-id <shard>`. The module's
/// `shard-id` option fills only the default generator's key; every other generator needs its
/// own, distinct from those of the other generators on the server.
pub fn set_shard_id(connection: &mut Connection, generator: &str, shard: u16) {
    let key = Keys::of(generator).shard_id;
    let _: () = run(connection, &["SET", &key, &shard.to_string()]);
}

/// A command from its words.
pub fn command(words: &[&str]) -> redis::Cmd {
    let mut cmd = redis::cmd(words[0]);
    for word in &words[1..] {
        cmd.arg(*word);
    }
    cmd
}

/// Runs a command that must succeed.
pub fn run<T: redis::FromRedisValue>(connection: &mut Connection, words: &[&str]) -> T {
    command(words)
        .query(connection)
        .unwrap_or_else(|error| panic!("{words:?} failed: {}", error_line(&error)))
}

/// The error reply a command gets, as `CODE text`. Panics when the command succeeds.
pub fn error_of(connection: &mut Connection, words: &[&str]) -> String {
    match command(words).query::<Value>(connection) {
        Ok(reply) => panic!("{words:?} succeeded with {reply:?}, expected an error"),
        Err(error) => error_line(&error),
    }
}

/// An error reply as the server sent it: its code, a space, its text.
pub fn error_line(error: &RedisError) -> String {
    match (error.code(), error.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        (Some(code), None) => code.to_string(),
        _ => error.to_string(),
    }
}

/// Sets a module option at run time (`CONFIG SET kestrel.<name> <value>`).
pub fn set_option(connection: &mut Connection, name: &str, value: i64) {
    let option = format!("kestrel.{name}");
    let _: () = run(connection, &["CONFIG", "SET", &option, &value.to_string()]);
}

/// The reply forms of `KESTREL.IDS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Int,
    String,
    Ranges,
}

impl Form {
    pub const ALL: [Form; 3] = [Form::Int, Form::String, Form::Ranges];

    pub fn name(self) -> &'static str {
        match self {
            Form::Int => "INT",
            Form::String => "STRING",
            Form::Ranges => "RANGES",
        }
    }
}

/// `KESTREL.IDS <count> GENERATOR <generator> FORMAT <form>`, the reply turned into IDs.
pub fn try_ids(
    connection: &mut Connection,
    generator: &str,
    count: u64,
    form: Form,
) -> RedisResult<Vec<i64>> {
    let words = [
        "KESTREL.IDS",
        &count.to_string(),
        "GENERATOR",
        generator,
        "FORMAT",
        form.name(),
    ];
    let reply: Value = command(&words).query(connection)?;
    Ok(ids_of_reply(reply, form))
}

/// Like [`try_ids`] for the default generator, retried while the lead cap refuses it (see
/// [`retry_lead`]); the call must succeed in the end.
pub fn ids(connection: &mut Connection, count: u64, form: Form) -> Vec<i64> {
    let (outcome, _) = retry_lead(|| try_ids(connection, DEFAULT_GENERATOR, count, form));
    outcome.unwrap_or_else(|error| panic!("KESTREL.IDS {count} failed: {}", error_line(&error)))
}

/// `KESTREL.ID` on the default generator, retried like [`ids`].
pub fn id(connection: &mut Connection) -> i64 {
    let (outcome, _) = retry_lead(|| command(&["KESTREL.ID"]).query(connection));
    outcome.unwrap_or_else(|error| panic!("KESTREL.ID failed: {}", error_line(&error)))
}

/// The IDs a `KESTREL.IDS` reply holds, with `RANGES` runs expanded.
pub fn ids_of_reply(reply: Value, form: Form) -> Vec<i64> {
    let Value::Array(items) = reply else {
        panic!("KESTREL.IDS FORMAT {} replied {reply:?}", form.name());
    };
    match form {
        Form::Int => items.into_iter().map(integer).collect(),
        Form::String => items.into_iter().map(decimal).collect(),
        Form::Ranges => items.into_iter().flat_map(expand_run).collect(),
    }
}

/// One `RANGES` entry, `[first as a decimal string, how many]`, as its IDs.
fn expand_run(run: Value) -> Vec<i64> {
    let Value::Array(pair) = run else {
        panic!("a RANGES entry is not an array: {run:?}");
    };
    let [first, count] = <[Value; 2]>::try_from(pair)
        .unwrap_or_else(|pair| panic!("a RANGES entry is not a pair: {pair:?}"));
    let first = decimal(first);
    let count = integer(count);
    assert!(count >= 1, "a RANGES run of {count} IDs");
    (first..first + count).collect()
}

fn integer(value: Value) -> i64 {
    match value {
        Value::Int(number) => number,
        other => panic!("expected an integer reply, got {other:?}"),
    }
}

fn decimal(value: Value) -> i64 {
    match value {
        Value::BulkString(bytes) => std::str::from_utf8(&bytes)
            .ok()
            .and_then(|text| text.parse().ok())
            .unwrap_or_else(|| panic!("not a decimal ID: {bytes:?}")),
        other => panic!("expected a bulk string reply, got {other:?}"),
    }
}

/// Runs `call` until it is not refused by the lead cap (`KESTREL_LEAD`), sleeping as long as the
/// refusal says, for at most [`LEAD_RETRY_TIMEOUT`]. Returns the result and how often it was
/// refused.
pub fn retry_lead<T>(mut call: impl FnMut() -> RedisResult<T>) -> (RedisResult<T>, u32) {
    let deadline = Instant::now() + LEAD_RETRY_TIMEOUT;
    let mut refusals = 0;
    loop {
        match call() {
            Err(error) if is_lead_refusal(&error) && Instant::now() < deadline => {
                refusals += 1;
                let wait_ms = retry_after_ms(&error_line(&error))
                    .unwrap_or(1)
                    .clamp(1, 100);
                thread::sleep(Duration::from_millis(wait_ms));
            }
            outcome => return (outcome, refusals),
        }
    }
}

pub fn is_lead_refusal(error: &RedisError) -> bool {
    error_line(error).starts_with("KESTREL_LEAD ")
}

/// The milliseconds a `KESTREL_LEAD` reply says to wait (`... retry in N ms`).
pub fn retry_after_ms(line: &str) -> Option<u64> {
    let rest = &line[line.rfind("retry in ")? + "retry in ".len()..];
    rest.split(' ').next()?.parse().ok()
}

/// A generator's three keys.
#[derive(Debug, Clone)]
pub struct Keys {
    pub shard_id: String,
    pub lock: String,
    pub sequence: String,
}

impl Keys {
    pub fn of(generator: &str) -> Keys {
        Keys {
            shard_id: format!("{{{generator}}}-shard-id"),
            lock: format!("{{{generator}}}-generator-lock"),
            sequence: format!("{{{generator}}}-generator-sequence"),
        }
    }

    /// The values of shard id, lock and sequence keys (`None` when missing).
    pub fn values(&self, connection: &mut Connection) -> [Option<String>; 3] {
        let words = ["MGET", &self.shard_id, &self.lock, &self.sequence];
        let values: Vec<Option<String>> = run(connection, &words);
        <[Option<String>; 3]>::try_from(values).unwrap_or_else(|values| panic!("{values:?}"))
    }

    /// The stored high-water mark: (lock ms, sequence). Both keys must hold integers.
    pub fn mark(&self, connection: &mut Connection) -> (u64, u16) {
        let [_, lock, sequence] = self.values(connection);
        let parse = |value: Option<String>| value.and_then(|text| text.parse::<u64>().ok());
        let lock = parse(lock).unwrap_or_else(|| panic!("{} holds no mark", self.lock));
        let sequence = parse(sequence).unwrap_or_else(|| panic!("{} is empty", self.sequence));
        (lock, u16::try_from(sequence).unwrap_or(u16::MAX))
    }
}

/// Everything in the selected database: DBSIZE and every key with its DUMP, sorted.
#[derive(Debug, PartialEq, Eq)]
pub struct Keyspace {
    pub size: u64,
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
}

pub fn keyspace(connection: &mut Connection) -> Keyspace {
    let size: u64 = run(connection, &["DBSIZE"]);
    let mut names: Vec<Vec<u8>> = run(connection, &["KEYS", "*"]);
    names.sort();
    let entries = names
        .into_iter()
        .map(|name| {
            let dump: Vec<u8> = redis::cmd("DUMP")
                .arg(&name)
                .query(connection)
                .unwrap_or_else(|error| panic!("DUMP failed: {}", error_line(&error)));
            (name, dump)
        })
        .collect();
    Keyspace { size, entries }
}

/// The original library's script, loaded with SCRIPT LOAD and called with EVALSHA.
#[derive(Debug, Clone)]
pub struct Script {
    sha: String,
}

impl Script {
    pub fn load(connection: &mut Connection) -> Script {
        let sha = run(connection, &["SCRIPT", "LOAD", kestrel_core::SCRIPT]);
        Script { sha }
    }

    /// Calls the script as the library does (KEYS lock, sequence, shard id; ARGV 4095, 1,
    /// 1023, count and, when given, the caller's clock) and returns the raw five-integer reply.
    pub fn call(
        &self,
        connection: &mut Connection,
        generator: &str,
        count: u64,
        now_ms: Option<u64>,
    ) -> RedisResult<[i64; 5]> {
        let keys = Keys::of(generator);
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&self.sha)
            .arg(3)
            .arg(&keys.lock)
            .arg(&keys.sequence)
            .arg(&keys.shard_id)
            .arg(MAX_SEQUENCE)
            .arg(1)
            .arg(1023)
            .arg(count);
        if let Some(now_ms) = now_ms {
            cmd.arg(now_ms);
        }
        let reply: Vec<i64> = cmd.query(connection)?;
        Ok(<[i64; 5]>::try_from(reply)
            .unwrap_or_else(|reply| panic!("the script replied {reply:?}, not five integers")))
    }

    /// Like [`Script::call`], returning the IDs the reply stands for. Must succeed.
    pub fn ids(
        &self,
        connection: &mut Connection,
        generator: &str,
        count: u64,
        now_ms: Option<u64>,
    ) -> Vec<i64> {
        self.call(connection, generator, count, now_ms)
            .map(ids_of_script_reply)
            .unwrap_or_else(|error| panic!("the script failed: {}", error_line(&error)))
    }
}

/// The IDs a script reply stands for, built the way the original library builds them:
/// ms = seconds * 1000 + microseconds / 1000, then one ID per sequence from start to end.
pub fn ids_of_script_reply(reply: [i64; 5]) -> Vec<i64> {
    let [start, end, shard, seconds, microseconds] = reply;
    let ms = seconds * 1000 + microseconds / 1000;
    let epoch = i64::try_from(EPOCH_MS).unwrap_or(i64::MAX);
    (start..=end)
        .map(|sequence| ((ms - epoch) << 22) | (shard << 12) | sequence)
        .collect()
}

/// Unix ms, shard id and sequence of an ID, decoded by the core crate.
pub fn decode(id: i64) -> (u64, u16, u16) {
    let id = Id::from_i64(id).unwrap_or_else(|_| panic!("{id} is not an ID"));
    (id.unix_ms(), id.shard_id(), id.sequence())
}

/// Asserts that `ids` strictly increase.
pub fn assert_increasing(ids: &[i64], what: &str) {
    if let Some(at) = ids.windows(2).position(|pair| pair[0] >= pair[1]) {
        panic!(
            "{what}: IDs do not strictly increase at {at}: {} then {}",
            ids[at],
            ids[at + 1]
        );
    }
}

/// Asserts that every one of `ids` is above `floor`.
pub fn assert_above(ids: &[i64], floor: i64, what: &str) {
    if let Some(low) = ids.iter().find(|&&id| id <= floor) {
        panic!(
            "{what}: ID {low} {:?} is not above {floor} {:?}",
            decode(*low),
            decode(floor)
        );
    }
}

/// Asserts that no ID appears twice in `ids` (which it sorts).
pub fn assert_unique(ids: &mut [i64], what: &str) {
    ids.sort_unstable();
    if let Some(pair) = ids.windows(2).find(|pair| pair[0] == pair[1]) {
        panic!("{what}: ID {} {:?} issued twice", pair[0], decode(pair[0]));
    }
}

/// The fields of `INFO kestrel`, without the `kestrel_` prefix.
pub fn kestrel_info(connection: &mut Connection) -> HashMap<String, String> {
    let info: String = run(connection, &["INFO", "kestrel"]);
    info.lines()
        .filter_map(|line| line.trim().strip_prefix("kestrel_"))
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

/// One numeric field of `INFO kestrel`.
pub fn kestrel_counter(connection: &mut Connection, name: &str) -> u64 {
    let info = kestrel_info(connection);
    info.get(name)
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("INFO kestrel has no number kestrel_{name}: {info:?}"))
}

/// One numeric field of `INFO <section>`.
pub fn info_number(server: &Server, section: &str, field: &str) -> i64 {
    server
        .info_field(section, field)
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("INFO {section} has no number {field}"))
}

/// `KESTREL.STATUS GENERATOR <generator>` as a map of field to reply value.
pub fn status(connection: &mut Connection, generator: &str) -> HashMap<String, Value> {
    let reply: Vec<Value> = run(connection, &["KESTREL.STATUS", "GENERATOR", generator]);
    reply
        .chunks(2)
        .map(|pair| match pair {
            [Value::BulkString(name), value] => {
                (String::from_utf8_lossy(name).into_owned(), value.clone())
            }
            other => panic!("KESTREL.STATUS replied a bad pair: {other:?}"),
        })
        .collect()
}

/// The system clock in Unix ms.
pub fn unix_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}
