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
use std::hash::{BuildHasherDefault, Hasher};

use kestrel_core::{GenerateError, Generator, Issue, Position, Settings, ShardId, MAX_SHARD_ID};
use redis_module::key::RedisKey;
use redis_module::{raw, Context, KeysCursor, RedisString};

use crate::error::{quote, KestrelError};
use crate::{clock, commands, config, stats, store};

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
    /// The highest place this process issued from the generator, or the fence it started
    /// above: whatever its keys say later, it never goes below this.
    floor: Position,
    /// Until this clock reading, someone else (the script) writes this generator's keys too,
    /// so the module stores its exact last place instead of reserving a window: every window
    /// would otherwise be skipped by the next script call, and the generator would ratchet
    /// ahead of the clock by a window per turn.
    shared_until_ms: u64,
}

/// How long after another writer's last change a generator keeps storing exact places.
const SHARED_MS: u64 = 5_000;

/// A hash map keyed by database numbers and generator names.
type Map<K, V> = HashMap<K, V, BuildHasherDefault<NameHasher>>;

/// A multiply-rotate hash for the table's keys, a few times cheaper than the default SipHash
/// on every call. SipHash resists keys crafted to collide; here only a client allowed to name
/// any generator could craft them, and such a client can already fill the keyspace.
#[derive(Default)]
struct NameHasher(u64);

impl Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(byte)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Generators by database and name.
struct Table {
    databases: Map<i32, Map<Vec<u8>, Entry>>,
    /// By shard id, the last place this process issued with it, from any generator. Every
    /// batch starts above its shard id's floor, so generators that share a shard id, at once
    /// or one after the other (a shard id handed on, databases swapped), never issue the same
    /// ID.
    shard_floors: Vec<Position>,
}

impl Default for Table {
    fn default() -> Self {
        Self {
            databases: Map::default(),
            shard_floors: vec![Position::ORIGIN; usize::from(MAX_SHARD_ID) + 1],
        }
    }
}

impl Table {
    /// The last place this process issued with `shard`, from any generator.
    fn shard_floor(&self, shard: ShardId) -> Position {
        self.shard_floors[usize::from(shard.get())]
    }

    /// Refuses a shard id that another generator this server serves already uses: the IDs
    /// of two generators with one shard id collide whenever they share a millisecond.
    fn check_shard_is_free(
        &self,
        shard: ShardId,
        database: i32,
        name: &[u8],
    ) -> Result<(), KestrelError> {
        let mut others = self
            .databases
            .iter()
            .flat_map(|(&other_database, generators)| {
                generators
                    .iter()
                    .map(move |(other, entry)| (other_database, other, entry))
            });
        let clash = others.find(|(other_database, other, entry)| {
            entry.trust == Trust::Current
                && entry.generator.shard() == shard
                && (*other_database, other.as_slice()) != (database, name)
        });
        match clash {
            Some((other_database, other, _)) => Err(KestrelError::ShardTaken {
                generator: quote(name),
                shard: shard.get(),
                other: quote(other),
                other_database,
            }),
            None => Ok(()),
        }
    }
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
        let Table {
            databases,
            shard_floors,
        } = &mut *table;

        // The common case: the generator is in memory and its keys are as it left them.
        let current = databases
            .get_mut(&database)
            .and_then(|generators| generators.get_mut(name))
            .filter(|entry| entry.trust == Trust::Current);
        if let Some(entry) = current {
            let settings = &shared_settings(settings, entry.shared_until_ms, now_ms);
            let shard_floor = &mut shard_floors[usize::from(entry.generator.shard().get())];
            entry.generator.raise_to(*shard_floor);
            let issue = entry
                .generator
                .issue(now_ms, count, settings)
                .map_err(|cause| refusal(name, cause))?;
            *shard_floor = issue.batch.last();
            entry.floor = issue.batch.last();
            if let Some(mark) = issue.reserve {
                store_mark(ctx, name, mark);
            }
            return Ok(issue);
        }

        let entry = table
            .databases
            .get(&database)
            .and_then(|generators| generators.get(name));
        let shared_until_ms = entry.map_or(0, |entry| entry.shared_until_ms);
        let mut loaded = load(ctx, name, entry, now_ms)?;
        let shard = loaded.generator.shard();
        table.check_shard_is_free(shard, database, name)?;
        loaded.generator.raise_to(table.shard_floor(shard));
        let settings = &shared_settings(settings, shared_until_ms, now_ms);
        let outcome = loaded.generator.issue(now_ms, count, settings);

        let issue = match outcome {
            Ok(issue) => issue,
            Err(cause) => {
                // Keep the floor, which may be a fence just set up: the next call continues
                // from it instead of fencing again from a later clock, which would stay a
                // fence ahead of the clock forever. It reads its keys again, as it has
                // stored nothing.
                let entry = Entry {
                    generator: loaded.generator,
                    trust: Trust::Changed,
                    floor: loaded.floor,
                    shared_until_ms,
                };
                let generators = table.databases.entry(database).or_default();
                generators.insert(name.to_vec(), entry);
                return Err(refusal(name, cause));
            }
        };

        if let Some(shard) = loaded.shard_to_write {
            store::write_shard(ctx, name, shard);
        }
        if let Some(mark) = issue.reserve {
            store_mark(ctx, name, mark);
        }
        table.shard_floors[usize::from(shard.get())] = issue.batch.last();
        let generators = table.databases.entry(database).or_default();
        let entry = Entry {
            generator: loaded.generator,
            trust: Trust::Current,
            floor: issue.batch.last(),
            shared_until_ms,
        };
        generators.insert(name.to_vec(), entry);
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
        let entry = table
            .databases
            .get(&database)
            .and_then(|generators| generators.get(name));
        if entry.is_some_and(|entry| entry.trust == Trust::Current) {
            return Ok(());
        }
        let shared_until_ms = entry.map_or(0, |entry| entry.shared_until_ms);

        let mut loaded = load(ctx, name, entry, now_ms)?;
        loaded
            .generator
            .raise_to(table.shard_floor(loaded.generator.shard()));

        if let Some(shard) = loaded.shard_to_write {
            store::write_shard(ctx, name, shard);
        }
        if let Some(mark) = loaded.generator.reserve_to_last() {
            store_mark(ctx, name, mark);
        }
        let entry = Entry {
            generator: loaded.generator,
            trust: Trust::Current,
            floor: loaded.floor,
            shared_until_ms,
        };
        table
            .databases
            .entry(database)
            .or_default()
            .insert(name.to_vec(), entry);
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
    TABLE.with(|table| table.borrow().databases.values().map(Map::len).sum())
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
        let entries = table.databases.values_mut().flat_map(Map::values_mut);
        for entry in entries {
            entry.trust = entry.trust.max_with(trust);
        }
    });
}

/// Builds a generator from its keys. Returns the shard id to write when the key was missing
/// and the `shard-id` option fills it; the caller writes it only once the call succeeds.
/// A generator built from its keys and what this process knows of it.
struct Loaded {
    generator: Generator,
    /// What the generator must stay above (see [`Entry::floor`]).
    floor: Position,
    /// The shard id to write when the key was missing and the `shard-id` option fills it;
    /// written only once the call succeeds.
    shard_to_write: Option<ShardId>,
}

/// Builds a generator from its keys. A generator this process has not served since data was
/// loaded or the role changed starts above a fence; one whose keys someone else changed
/// starts above what this process issued.
fn load(
    ctx: &Context,
    name: &[u8],
    entry: Option<&Entry>,
    now_ms: u64,
) -> Result<Loaded, KestrelError> {
    stats::KEY_READS.add(1);
    let stored = store::read(ctx, name)?;
    let (shard, shard_to_write) = match stored.shard {
        Some(shard) => (shard, None),
        None => {
            let configured = (name == commands::DEFAULT_GENERATOR)
                .then(|| ShardId::new(config::get(&config::SHARD_ID)).ok())
                .flatten()
                .ok_or_else(|| KestrelError::NoShard {
                    key: quote(&store::key_name(name, store::SHARD_ID_SUFFIX)),
                    default_generator: name == commands::DEFAULT_GENERATOR,
                })?;
            (configured, Some(configured))
        }
    };

    let fence = || {
        stats::FENCES.add(1);
        let fence_ms = config::get(&config::FENCE_MS).unsigned_abs();
        Generator::fence(now_ms, fence_ms, &config::fence_settings())
    };
    let floor = match entry {
        Some(entry) if entry.trust == Trust::Changed => own_floor(entry, shard),
        Some(entry) => own_floor(entry, shard).max(fence()),
        None => fence(),
    };
    Ok(Loaded {
        generator: Generator::resume(shard, floor).rebase(shard, stored.mark),
        floor,
        shard_to_write,
    })
}

/// The place a generator in memory continues above: its last place, or the end of that
/// millisecond when its shard id changed, since IDs with a lower shard id would sort the rest of
/// the millisecond below the ones already issued.
fn own_floor(entry: &Entry, shard: ShardId) -> Position {
    if entry.generator.shard() == shard {
        entry.floor
    } else {
        Position::end_of(entry.floor.unix_ms())
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
