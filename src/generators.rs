//! The generators this server process serves from memory, and when they must be read again
//! from their keys.
//!
//! A generator in memory is trusted only while nothing else has touched its keys. Keyspace
//! events (the script's writes, deletions, expiry, eviction, renames), flushes and database
//! swaps mark it changed: the next call reads the keys again but never goes below what this
//! process issued. Loading data and role changes mark it fenced: the keys may be behind what
//! was issued, so the next call also jumps the fence.

use std::cell::RefCell;
use std::collections::HashMap;

use kestrel_core::{GenerateError, Generator, Issue, Position, Settings, ShardId};
use redis_module::key::RedisKey;
use redis_module::{raw, Context, KeysCursor, RedisString};

use crate::error::KestrelError;
use crate::{clock, config, stats, store};

/// How far a generator in memory can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trust {
    /// Its keys have not changed since it last read or wrote them.
    Current,
    /// Someone else changed its keys: read them again.
    Changed,
    /// Data was loaded or the role changed: read them again and jump the fence.
    Fenced,
}

struct Entry {
    generator: Generator,
    trust: Trust,
    /// Until this clock reading, someone else (the script) writes this generator's keys too,
    /// so the module stores its exact last place instead of reserving a window: every window
    /// would otherwise be skipped by the next script call, and the generator would ratchet
    /// ahead of the clock by a window per turn.
    shared_until_ms: u64,
}

/// How long after another writer's last change a generator keeps storing exact places.
const SHARED_MS: u64 = 5_000;

/// Generators by database and name.
#[derive(Default)]
struct Table {
    databases: HashMap<i32, HashMap<Vec<u8>, Entry>>,
}

thread_local! {
    // Redis runs commands, keyspace events and server events on its main thread only.
    static TABLE: RefCell<Table> = RefCell::new(Table::default());
}

/// A generator's state as `KESTREL.STATUS` shows it.
pub struct Snapshot {
    pub shard: Option<ShardId>,
    pub last: Position,
    pub reserved: Position,
    pub in_memory: bool,
}

/// Issues `count` IDs from the named generator at clock reading `now_ms`, storing a new
/// high-water mark first when the batch passes the old one. On error nothing changes.
pub fn issue(
    ctx: &Context,
    name: &[u8],
    now_ms: u64,
    count: u64,
    settings: &Settings,
) -> Result<Issue, KestrelError> {
    let database = selected_database(ctx);
    TABLE.with(|table| {
        let mut table = table.borrow_mut();
        let generators = table.databases.entry(database).or_default();

        // The common case: the generator is in memory and its keys are as it left them.
        let current = generators
            .get_mut(name)
            .filter(|entry| entry.trust == Trust::Current);
        if let Some(entry) = current {
            let settings = &shared_settings(settings, entry.shared_until_ms, now_ms);
            let issue = entry
                .generator
                .issue(now_ms, count, settings)
                .map_err(|cause| refusal(name, cause))?;
            if let Some(mark) = issue.reserve {
                store_mark(ctx, name, mark);
            }
            return Ok(issue);
        }

        let entry = generators.get(name);
        let shared_until_ms = entry.map_or(0, |entry| entry.shared_until_ms);
        let (mut generator, shard_to_write) = load(ctx, name, entry, now_ms)?;
        let settings = &shared_settings(settings, shared_until_ms, now_ms);
        let issue = match generator.issue(now_ms, count, settings) {
            Ok(issue) => issue,
            Err(cause) => {
                // Keep a generator just fenced, so the next call continues from this fence
                // instead of fencing again from a later clock, which would stay a fence ahead
                // of the clock forever. It reads its keys again, as it has stored nothing.
                let entry = Entry {
                    generator,
                    trust: Trust::Changed,
                    shared_until_ms,
                };
                generators.insert(name.to_vec(), entry);
                return Err(refusal(name, cause));
            }
        };

        if let Some(shard) = shard_to_write {
            store::write_shard(ctx, name, shard);
        }
        if let Some(mark) = issue.reserve {
            store_mark(ctx, name, mark);
        }
        generators.insert(
            name.to_vec(),
            Entry {
                generator,
                trust: Trust::Current,
                shared_until_ms,
            },
        );
        Ok(issue)
    })
}

/// Moves every generator stored in the keyspace past its fence and stores the fenced mark, so
/// that the script, too, continues above anything the previous process could have issued.
/// Runs once after data is loaded and after a promotion to master, on the master only.
pub fn fence_stored(ctx: &Context) {
    let now_ms = clock::now_ms();
    for database in 0.. {
        if !select_database(ctx, database) {
            break;
        }
        for name in stored_generator_names(ctx) {
            if let Err(error) = fence_one(ctx, database, &name, now_ms) {
                ctx.log_warning(&format!("kestrel: generator left unfenced: {error}"));
            }
        }
    }
    select_database(ctx, 0);
}

/// The named generator's state, from memory when it is current there, else from its keys.
pub fn snapshot(ctx: &Context, name: &[u8]) -> Result<Snapshot, KestrelError> {
    let database = selected_database(ctx);
    let current = TABLE.with(|table| {
        let table = table.borrow();
        let entry = table.databases.get(&database)?.get(name)?;
        (entry.trust == Trust::Current).then(|| Snapshot {
            shard: Some(entry.generator.shard()),
            last: entry.generator.last(),
            reserved: entry.generator.reserved(),
            in_memory: true,
        })
    });
    if let Some(snapshot) = current {
        return Ok(snapshot);
    }
    let stored = store::read(ctx, name)?;
    Ok(Snapshot {
        shard: stored.shard,
        last: stored.mark,
        reserved: stored.mark,
        in_memory: false,
    })
}

fn fence_one(ctx: &Context, database: i32, name: &[u8], now_ms: u64) -> Result<(), KestrelError> {
    TABLE.with(|table| {
        let mut table = table.borrow_mut();
        let generators = table.databases.entry(database).or_default();
        let entry = generators.get(name);
        if entry.is_some_and(|entry| entry.trust == Trust::Current) {
            return Ok(());
        }

        let (mut generator, shard_to_write) = load(ctx, name, entry, now_ms)?;

        if let Some(shard) = shard_to_write {
            store::write_shard(ctx, name, shard);
        }
        if let Some(mark) = generator.reserve_to_last() {
            store_mark(ctx, name, mark);
        }
        let shared_until_ms = entry.map_or(0, |entry| entry.shared_until_ms);
        generators.insert(
            name.to_vec(),
            Entry {
                generator,
                trust: Trust::Current,
                shared_until_ms,
            },
        );
        Ok(())
    })
}

/// The names of the generators whose lock key is in the selected database.
fn stored_generator_names(ctx: &Context) -> Vec<Vec<u8>> {
    let names = RefCell::new(Vec::new());
    let cursor = KeysCursor::new();
    let collect = |_: &Context, key: &RedisString, _: Option<&RedisKey>| {
        let key = key.as_slice();
        if key.ends_with(store::LOCK_SUFFIX) {
            if let Some(name) = store::generator_of_key(key) {
                names.borrow_mut().push(name.to_vec());
            }
        }
    };
    while cursor.scan(ctx, &collect) {}
    names.into_inner()
}

/// Someone else changed one of a generator's keys.
pub fn key_changed(ctx: &Context, key: &[u8]) {
    let Some(name) = store::generator_of_key(key) else {
        return;
    };
    if store::module_is_writing() {
        return;
    }
    let database = selected_database(ctx);
    TABLE.with(|table| {
        let mut table = table.borrow_mut();
        let entry = table
            .databases
            .get_mut(&database)
            .and_then(|generators| generators.get_mut(name));
        if let Some(entry) = entry {
            entry.trust = entry.trust.max_with(Trust::Changed);
            entry.shared_until_ms = clock::now_ms().saturating_add(SHARED_MS);
        }
    });
}

/// Every generator must read its keys again (a flush, a database swap).
pub fn all_changed() {
    mark_all(Trust::Changed);
}

/// Every generator must read its keys again and jump the fence (data loaded, role changed).
pub fn all_fenced() {
    mark_all(Trust::Fenced);
}

/// How many generators are in memory.
pub fn count() -> usize {
    TABLE.with(|table| table.borrow().databases.values().map(HashMap::len).sum())
}

impl Trust {
    /// The less trusting of two states.
    fn max_with(self, other: Trust) -> Trust {
        match (self, other) {
            (Trust::Fenced, _) | (_, Trust::Fenced) => Trust::Fenced,
            (Trust::Changed, _) | (_, Trust::Changed) => Trust::Changed,
            _ => Trust::Current,
        }
    }
}

fn mark_all(trust: Trust) {
    TABLE.with(|table| {
        let mut table = table.borrow_mut();
        let entries = table.databases.values_mut().flat_map(HashMap::values_mut);
        for entry in entries {
            entry.trust = entry.trust.max_with(trust);
        }
    });
}

/// Builds a generator from its keys. Returns the shard id to write when the key was missing
/// and the `shard-id` option fills it; the caller writes it only once the call succeeds.
fn load(
    ctx: &Context,
    name: &[u8],
    entry: Option<&Entry>,
    now_ms: u64,
) -> Result<(Generator, Option<ShardId>), KestrelError> {
    stats::KEY_READS.add(1);
    let stored = store::read(ctx, name)?;
    let (shard, shard_to_write) = match stored.shard {
        Some(shard) => (shard, None),
        None => {
            let configured = ShardId::new(config::get(&config::SHARD_ID)).map_err(|_| {
                KestrelError::NoShard {
                    key: crate::error::quote(&store::key_name(name, store::SHARD_ID_SUFFIX)),
                }
            })?;
            (configured, Some(configured))
        }
    };

    let fence_ms = config::get(&config::FENCE_MS).unsigned_abs();
    let fence_settings = config::fence_settings();
    let generator = match entry {
        Some(entry) if entry.trust == Trust::Changed => entry
            .generator
            .rebase(shard, own_floor(entry, shard))
            .rebase(shard, stored.mark),
        Some(entry) => {
            stats::FENCES.add(1);
            let floor = stored.mark.max(own_floor(entry, shard));
            let fenced = Generator::resume_fenced(shard, floor, now_ms, fence_ms, &fence_settings);
            fenced.rebase(shard, stored.mark)
        }
        None => {
            stats::FENCES.add(1);
            Generator::resume_fenced(shard, stored.mark, now_ms, fence_ms, &fence_settings)
        }
    };
    Ok((generator, shard_to_write))
}

/// The place a generator in memory continues above: its last place, or the end of that
/// millisecond when its shard id changed, since IDs with a lower shard id would sort the rest of
/// the millisecond below the ones already issued.
fn own_floor(entry: &Entry, shard: ShardId) -> Position {
    let last = entry.generator.last();
    if entry.generator.shard() == shard {
        last
    } else {
        Position::end_of(last.unix_ms())
    }
}

/// The settings for one call: no reservation window while the keys are shared.
fn shared_settings(settings: &Settings, shared_until_ms: u64, now_ms: u64) -> Settings {
    if now_ms < shared_until_ms {
        Settings {
            reserve_ms: 0,
            ..*settings
        }
    } else {
        *settings
    }
}

fn store_mark(ctx: &Context, name: &[u8], mark: Position) {
    store::write_mark(ctx, name, mark);
    stats::MARK_WRITES.add(1);
}

fn refusal(name: &[u8], cause: GenerateError) -> KestrelError {
    if let GenerateError::LeadCapReached { .. } = cause {
        stats::LEAD_REFUSALS.add(1);
    }
    KestrelError::Generate {
        generator: crate::error::quote(name),
        cause,
    }
}

fn select_database(ctx: &Context, database: i32) -> bool {
    // SAFETY: the context is live (a timer's); selecting a database out of range only
    // returns an error.
    let status = unsafe { raw::RedisModule_SelectDb.map(|select| select(ctx.ctx, database)) };
    status == Some(raw::REDISMODULE_OK as i32)
}

fn selected_database(ctx: &Context) -> i32 {
    // SAFETY: the context is the live one Redis passed to the callback we are in, and
    // RedisModule_GetSelectedDb only reads the database its client has selected.
    unsafe { raw::RedisModule_GetSelectedDb.map_or(0, |selected| selected(ctx.ctx)) }
}
