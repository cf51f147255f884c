//! Every error the module replies with, built in one place. Each reply starts with a stable
//! upper-case code; the text after it says what to do.

use std::fmt;

use kestrel_core::{GenerateError, MAX_SHARD_ID, MIN_SHARD_ID};

/// The valid forms of the commands, quoted in syntax errors.
pub const ID_USAGE: &str = "KESTREL.ID [GENERATOR <name>] [FORMAT INT|STRING]";
pub const IDS_USAGE: &str = "KESTREL.IDS <count> [GENERATOR <name>] [FORMAT INT|STRING|RANGES]";
pub const STATUS_USAGE: &str = "KESTREL.STATUS [GENERATOR <name>]";

/// Why a command was refused. No refusal changes any state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KestrelError {
    /// Too few arguments: answered with Redis's own arity error.
    Arity,
    /// An unknown option, a missing value or a repeated option.
    Syntax {
        usage: &'static str,
        problem: String,
    },
    /// The count is not an integer from 1 to the maximum batch.
    BadCount { given: String, max: i64 },
    /// The generator name is empty or holds a brace.
    BadName,
    /// No shard id stored, and none configured for this generator.
    NoShard {
        key: String,
        default_generator: bool,
    },
    /// Another generator on this server already uses the shard id.
    ShardTaken {
        generator: String,
        shard: u16,
        other: String,
        other_database: i32,
    },
    /// The stored shard id is not an integer from 1 to 1023.
    BadShard { key: String, found: String },
    /// A state key has the wrong type or a value out of range.
    BadState { key: String, problem: String },
    /// The generator cannot make the IDs now (lead cap, clock, end of space).
    Generate {
        generator: String,
        cause: GenerateError,
    },
    /// `KESTREL.DECODE` got something that is not an ID.
    BadId { given: String },
    /// Cluster mode needs the generator named, so that it is the command's key.
    ClusterNeedsName,
    /// The server is a replica.
    Replica,
    /// The user's key patterns do not cover the default generator's name.
    NoPermission { generator: String },
    /// A bug: something panicked, and the panic was caught before it reached Redis.
    Internal,
}

impl fmt::Display for KestrelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Arity => f.write_str("ERR wrong number of arguments"),
            Self::Syntax { usage, problem } => {
                write!(f, "KESTREL_SYNTAX {problem}; usage: {usage}")
            }
            Self::BadCount { given, max } => write!(
                f,
                "KESTREL_BADCOUNT count must be an integer from 1 to {max}, got '{given}'; \
                 usage: {IDS_USAGE}"
            ),
            Self::BadName => {
                f.write_str("KESTREL_BADNAME a generator name is non-empty and holds no '{' or '}'")
            }
            Self::NoShard {
                key,
                default_generator,
            } => {
                write!(
                    f,
                    "KESTREL_NOSHARD {key} is missing; SET it to a shard id of its own \
                     ({MIN_SHARD_ID} to {MAX_SHARD_ID})"
                )?;
                if *default_generator {
                    f.write_str(" or set the module option kestrel.shard-id")?;
                }
                Ok(())
            }
            Self::ShardTaken {
                generator,
                shard,
                other,
                other_database,
            } => write!(
                f,
                "KESTREL_SHARDTAKEN generator '{generator}' has shard id {shard}, which generator \
                 '{other}' (database {other_database}) on this server uses too, and their IDs \
                 would collide; set {{{generator}}}-shard-id to a shard id of its own"
            ),
            Self::BadShard { key, found } => write!(
                f,
                "KESTREL_BADSHARD Logical shard ID out of range: {key} holds '{found}'; set \
                 it to an integer from {MIN_SHARD_ID} to {MAX_SHARD_ID}"
            ),
            Self::BadState { key, problem } => write!(
                f,
                "KESTREL_BADSTATE {key} {problem}; repair or delete it (deleting lets IDs \
                 restart from the clock)"
            ),
            Self::Generate { generator, cause } => {
                let code = match cause {
                    GenerateError::LeadCapReached { .. } => "KESTREL_LEAD",
                    GenerateError::BeforeEpoch { .. } => "KESTREL_CLOCK",
                    GenerateError::Exhausted => "KESTREL_EXHAUSTED",
                    GenerateError::ZeroCount | GenerateError::TooLongForLeadCap { .. } => {
                        "KESTREL_BADCOUNT"
                    }
                };
                write!(f, "{code} generator '{generator}': {cause}")
            }
            Self::BadId { given } => write!(
                f,
                "KESTREL_BADID '{given}' is not an ID: IDs are decimal integers from 0 to \
                 9223372036854775807"
            ),
            Self::ClusterNeedsName => f.write_str(
                "KESTREL_CLUSTER in cluster mode name the generator so it routes to its \
                 node: KESTREL.ID GENERATOR <name>",
            ),
            Self::NoPermission { generator } => write!(
                f,
                "NOPERM this user has no permissions to access the generator '{generator}'; \
                 name a generator the user's key patterns allow with GENERATOR <name>"
            ),
            Self::Replica => {
                f.write_str("READONLY this server is a replica; generate IDs on the master")
            }
            Self::Internal => f.write_str(
                "KESTREL_INTERNAL the command failed inside the module and changed nothing; \
                 the Redis log has the details",
            ),
        }
    }
}

/// Quotes a value from a command or a key for an error reply: printable ASCII kept, every
/// other byte escaped, at most 64 bytes, so an odd or huge argument never makes an odd or huge
/// reply.
pub fn quote(bytes: &[u8]) -> String {
    const LIMIT: usize = 64;
    let mut text: String = bytes[..bytes.len().min(LIMIT)]
        .iter()
        .flat_map(|&byte| std::ascii::escape_default(byte))
        .map(char::from)
        .collect();
    if bytes.len() > LIMIT {
        text.push_str("...");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_short_and_printable() {
        assert_eq!(quote(b"abc"), "abc");
        assert_eq!(quote(b"a\r\n\0\xff"), "a\\r\\n\\x00\\xff");
        assert_eq!(quote(&[b'7'; 100]).len(), 67);
    }

    #[test]
    fn every_reply_starts_with_an_upper_case_code() {
        let errors = [
            KestrelError::BadName,
            KestrelError::Replica,
            KestrelError::Internal,
            KestrelError::ClusterNeedsName,
            KestrelError::BadId { given: "x".into() },
            KestrelError::Generate {
                generator: "kestrel".into(),
                cause: GenerateError::Exhausted,
            },
        ];
        for error in errors {
            let text = error.to_string();
            let code = text.split(' ').next().unwrap();
            assert!(
                code.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
                "{text}"
            );
        }
    }
}
