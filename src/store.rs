//! A generator's state in the keyspace: the contract's three keys, as decimal strings.
//!
//! Reads happen when a generator is not in memory (first use, or after its keys changed);
//! writes happen when the high-water mark moves. Every write goes to replicas and the AOF as
//! a plain `SET` with the value, never as a KESTREL command.

use std::cell::Cell;

use kestrel_core::{parse_decimal_i64, Position, ShardId, LAST_MS, MAX_SEQUENCE};
use redis_module::{Context, KeyType, NotifyEvent, RedisString};

use crate::error::{quote, KestrelError};

/// The suffixes that make a generator's key names: `{name}` followed by one of these.
pub const SHARD_ID_SUFFIX: &[u8] = b"-shard-id";
pub const LOCK_SUFFIX: &[u8] = b"-generator-lock";
pub const SEQUENCE_SUFFIX: &[u8] = b"-generator-sequence";

thread_local! {
    /// Set while the module writes its own keys, so the keyspace events those writes raise
    /// do not mark the generator as changed by someone else.
    static WRITING: Cell<bool> = const { Cell::new(false) };
}

/// Whether the module itself is writing keys right now.
pub fn module_is_writing() -> bool {
    WRITING.with(Cell::get)
}

/// The name of one of a generator's keys.
pub fn key_name(generator: &[u8], suffix: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(generator.len() + suffix.len() + 2);
    key.push(b'{');
    key.extend_from_slice(generator);
    key.push(b'}');
    key.extend_from_slice(suffix);
    key
}

/// The generator a key belongs to, if the key is one of a generator's three keys.
pub fn generator_of_key(key: &[u8]) -> Option<&[u8]> {
    let rest = key.strip_prefix(b"{")?;
    [SHARD_ID_SUFFIX, LOCK_SUFFIX, SEQUENCE_SUFFIX]
        .iter()
        .find_map(|suffix| rest.strip_suffix(*suffix)?.strip_suffix(b"}"))
}

/// What the keys hold for one generator.
pub struct Stored {
    /// The shard id, or `None` when the key is missing.
    pub shard: Option<ShardId>,
    /// The high-water mark: everything up to it may have been issued.
    pub mark: Position,
}

/// Reads and checks a generator's keys. A missing lock key means nothing was issued; a
/// missing sequence key next to a lock key means its whole millisecond may have been used.
pub fn read(ctx: &Context, generator: &[u8]) -> Result<Stored, KestrelError> {
    let shard_key = key_name(generator, SHARD_ID_SUFFIX);
    let shard = read_integer(ctx, &shard_key)?
        .map(|raw| {
            raw.parse().and_then(|value| {
                ShardId::new(value).map_err(|_| KestrelError::BadShard {
                    key: quote(&shard_key),
                    found: quote(&raw.bytes),
                })
            })
        })
        .transpose()?;

    let lock_key = key_name(generator, LOCK_SUFFIX);
    let lock_ms = read_integer(ctx, &lock_key)?
        .map(|raw| raw.parse_in(0, LAST_MS as i64))
        .transpose()?;
    let sequence_key = key_name(generator, SEQUENCE_SUFFIX);
    let sequence = read_integer(ctx, &sequence_key)?
        .map(|raw| raw.parse_in(0, MAX_SEQUENCE.into()))
        .transpose()?;

    let mark = match (lock_ms, sequence) {
        (None, _) => Position::ORIGIN,
        (Some(ms), Some(sequence)) => Position::new(ms.unsigned_abs(), sequence as u16),
        (Some(ms), None) => Position::end_of(ms.unsigned_abs()),
    };
    Ok(Stored { shard, mark })
}

/// Writes the configured shard id into a generator's missing shard-id key.
pub fn write_shard(ctx: &Context, generator: &[u8], shard: ShardId) {
    let key = key_name(generator, SHARD_ID_SUFFIX);
    write_string(ctx, &key, &shard.to_string());
}

/// Stores a new high-water mark: the lock key gets its millisecond, the sequence key its
/// sequence, so the script and a restarted module both continue above it.
pub fn write_mark(ctx: &Context, generator: &[u8], mark: Position) {
    write_string(
        ctx,
        &key_name(generator, LOCK_SUFFIX),
        &mark.unix_ms().to_string(),
    );
    write_string(
        ctx,
        &key_name(generator, SEQUENCE_SUFFIX),
        &mark.sequence().to_string(),
    );
}

/// A key's raw text, remembered with its name for error messages.
struct RawValue {
    key: Vec<u8>,
    bytes: Vec<u8>,
}

impl RawValue {
    fn parse(&self) -> Result<i64, KestrelError> {
        parse_decimal_i64(&self.bytes).ok_or_else(|| self.not_in(i64::MIN, i64::MAX))
    }

    fn parse_in(&self, min: i64, max: i64) -> Result<i64, KestrelError> {
        match parse_decimal_i64(&self.bytes) {
            Some(value) if (min..=max).contains(&value) => Ok(value),
            _ => Err(self.not_in(min, max)),
        }
    }

    fn not_in(&self, min: i64, max: i64) -> KestrelError {
        let shard = self.key.ends_with(SHARD_ID_SUFFIX);
        if shard {
            return KestrelError::BadShard {
                key: quote(&self.key),
                found: quote(&self.bytes),
            };
        }
        KestrelError::BadState {
            key: quote(&self.key),
            problem: format!(
                "holds '{}', not a decimal integer from {min} to {max}",
                quote(&self.bytes)
            ),
        }
    }
}

/// Reads a string key; `None` when it is missing, an error when it holds another type.
fn read_integer(ctx: &Context, key: &[u8]) -> Result<Option<RawValue>, KestrelError> {
    // Binary-safe: a generator name may hold any byte, NUL included.
    let name = RedisString::create_from_slice(ctx.ctx, key);
    let handle = ctx.open_key(&name);
    match handle.key_type() {
        KeyType::Empty => Ok(None),
        KeyType::String => {
            let bytes = handle.read().ok().flatten().unwrap_or_default().to_vec();
            Ok(Some(RawValue {
                key: key.to_vec(),
                bytes,
            }))
        }
        other => Err(KestrelError::BadState {
            key: quote(key),
            problem: format!("is a {}, not a string", type_name(other)),
        }),
    }
}

/// Marks the module as writing until dropped, even if something unwinds in between.
struct WritingGuard;

impl WritingGuard {
    fn start() -> Self {
        WRITING.with(|writing| writing.set(true));
        Self
    }
}

impl Drop for WritingGuard {
    fn drop(&mut self) {
        WRITING.with(|writing| writing.set(false));
    }
}

fn write_string(ctx: &Context, key: &[u8], value: &str) {
    let name = RedisString::create_from_slice(ctx.ctx, key);

    let _writing = WritingGuard::start();
    {
        let handle = ctx.open_key_writable(&name);
        // Writing a string into a key opened for writing only fails for a key of another
        // type, and every caller has read the key as a string or found it missing.
        if let Err(error) = handle.write(value) {
            ctx.log_warning(&format!("kestrel: could not write {}: {error}", quote(key)));
        }
    }
    ctx.replicate("SET", &[key, value.as_bytes()][..]);
    ctx.notify_keyspace_event(NotifyEvent::STRING, "set", &name);
}

fn type_name(kind: KeyType) -> &'static str {
    match kind {
        KeyType::Empty => "missing key",
        KeyType::String => "string",
        KeyType::List => "list",
        KeyType::Hash => "hash",
        KeyType::Set => "set",
        KeyType::ZSet => "sorted set",
        KeyType::Module => "module type",
        KeyType::Stream => "stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_follow_the_contract() {
        assert_eq!(key_name(b"kestrel", SHARD_ID_SUFFIX), b"{kestrel}-shard-id");
        assert_eq!(
            key_name(b"kestrel", LOCK_SUFFIX),
            b"{kestrel}-generator-lock"
        );
        assert_eq!(key_name(b"a", SEQUENCE_SUFFIX), b"{a}-generator-sequence");
    }

    #[test]
    fn keys_map_back_to_their_generator() {
        let cases: [(&[u8], Option<&[u8]>); 7] = [
            (b"{kestrel}-shard-id", Some(b"kestrel")),
            (b"{orders}-generator-lock", Some(b"orders")),
            (b"{o}-generator-sequence", Some(b"o")),
            (b"kestrel-shard-id", None),
            (b"{kestrel}-shard", None),
            (b"{kestrel-generator-lock", None),
            (b"", None),
        ];
        for (key, generator) in cases {
            assert_eq!(generator_of_key(key), generator, "{key:?}");
        }
    }
}
