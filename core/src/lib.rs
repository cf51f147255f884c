//! Kestrel's core: the 64-bit ID layout and the generator state machine, with no Redis in it.
//!
//! The Redis module and the client crate are thin shells over this crate, and the Lua script
//! that shares state with them ships here as [`SCRIPT`].
//!
//! ```
//! use kestrel_core::{Generator, Position, Settings, ShardId};
//!
//! let mut generator = Generator::resume(ShardId::new(7)?, Position::ORIGIN);
//! let issue = generator.issue(1_796_397_602_047, 3, &Settings::default())?;
//! let ids: Vec<_> = issue.batch.ids().collect();
//!
//! assert_eq!(ids.len(), 3);
//! assert_eq!(ids[0].shard_id(), 7);
//! assert_eq!(ids[0].unix_ms(), 1_796_397_602_047);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod generator;
#[cfg(feature = "serde")]
mod id_serde;
mod layout;

pub use generator::{Batch, GenerateError, Generator, Issue, Position, Settings};
pub use layout::{
    parse_decimal_i64, Id, LayoutError, ShardId, EPOCH_MS, LAST_MS, MAX_SEQUENCE, MAX_SHARD_ID,
    MIN_SHARD_ID, SEQUENCES_PER_MS,
};

/// The Lua script that generates IDs where the module is not loaded. It follows the calling
/// convention of the original library's script (see the header of the file).
pub const SCRIPT: &str = include_str!("kestrel.lua");
