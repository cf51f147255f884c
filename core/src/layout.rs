//! The 64-bit ID layout shared with the original Kestrel library.
//!
//! From the most significant bit down: 1 bit always 0, 41 bits of milliseconds since
//! [`EPOCH_MS`], 10 bits of logical shard id, 12 bits of sequence within the millisecond.

use std::fmt;
use std::str::FromStr;

/// The custom epoch, as Unix milliseconds (2015-12-31T13:00:00Z).
pub const EPOCH_MS: u64 = 1_451_566_800_000;

/// The last Unix millisecond an ID can carry: the epoch plus 2^41 - 1 (in 2085).
pub const LAST_MS: u64 = EPOCH_MS + (1 << TIME_BITS) - 1;

/// The largest sequence number within one millisecond.
pub const MAX_SEQUENCE: u16 = (1 << SEQUENCE_BITS) - 1;

/// How many IDs one generator can make in one millisecond.
pub const SEQUENCES_PER_MS: u64 = 1 << SEQUENCE_BITS;

/// The smallest logical shard id the original script accepts.
pub const MIN_SHARD_ID: u16 = 1;

/// The largest logical shard id that fits the layout.
pub const MAX_SHARD_ID: u16 = (1 << SHARD_BITS) - 1;

const TIME_BITS: u32 = 41;
const SHARD_BITS: u32 = 10;
const SEQUENCE_BITS: u32 = 12;
const SHARD_SHIFT: u32 = SEQUENCE_BITS;
const TIME_SHIFT: u32 = SEQUENCE_BITS + SHARD_BITS;

/// Why a value is not a valid ID or ID part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutError {
    /// The text is not a decimal integer.
    NotAnInteger,
    /// The value is negative or has the sign bit set.
    Negative,
    /// The shard id is outside 1..=1023.
    ShardOutOfRange(i64),
    /// The sequence is above 4095.
    SequenceOutOfRange(u64),
    /// The millisecond is before the epoch or after the end of the 41-bit space.
    TimeOutOfRange(u64),
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAnInteger => f.write_str("not a decimal integer"),
            Self::Negative => f.write_str("IDs are never negative"),
            Self::ShardOutOfRange(shard) => write!(
                f,
                "shard id {shard} is outside {MIN_SHARD_ID}..{MAX_SHARD_ID}"
            ),
            Self::SequenceOutOfRange(sequence) => {
                write!(f, "sequence {sequence} is above {MAX_SEQUENCE}")
            }
            Self::TimeOutOfRange(ms) => write!(
                f,
                "Unix millisecond {ms} is outside the ID space {EPOCH_MS}..{LAST_MS}"
            ),
        }
    }
}

impl std::error::Error for LayoutError {}

/// A logical shard id, 1 to 1023.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardId(u16);

impl ShardId {
    /// Checks that `value` is a shard id the original script accepts.
    pub fn new(value: i64) -> Result<Self, LayoutError> {
        match u16::try_from(value) {
            Ok(shard) if (MIN_SHARD_ID..=MAX_SHARD_ID).contains(&shard) => Ok(Self(shard)),
            _ => Err(LayoutError::ShardOutOfRange(value)),
        }
    }

    /// The shard id as a number.
    pub fn get(self) -> u16 {
        self.0
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One ID. Prints and parses as a decimal string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Id(u64);

impl Id {
    /// Builds the ID for `sequence` within Unix millisecond `unix_ms` on `shard`.
    pub fn new(unix_ms: u64, shard: ShardId, sequence: u16) -> Result<Self, LayoutError> {
        if !(EPOCH_MS..=LAST_MS).contains(&unix_ms) {
            return Err(LayoutError::TimeOutOfRange(unix_ms));
        }
        if sequence > MAX_SEQUENCE {
            return Err(LayoutError::SequenceOutOfRange(sequence.into()));
        }
        Ok(Self::from_checked_parts(unix_ms, shard, sequence))
    }

    /// Takes an ID as the signed 64-bit integer that Redis replies with.
    pub fn from_i64(value: i64) -> Result<Self, LayoutError> {
        u64::try_from(value)
            .map(Self)
            .map_err(|_| LayoutError::Negative)
    }

    /// The ID as a signed 64-bit integer; always positive.
    pub fn as_i64(self) -> i64 {
        // The sign bit is never set: every constructor keeps the value at or below i64::MAX.
        self.0 as i64
    }

    /// The Unix millisecond the ID was made in.
    pub fn unix_ms(self) -> u64 {
        (self.0 >> TIME_SHIFT) + EPOCH_MS
    }

    /// The logical shard id field. Values from 0 to 1023 can appear in IDs made elsewhere.
    pub fn shard_id(self) -> u16 {
        ((self.0 >> SHARD_SHIFT) & u64::from(MAX_SHARD_ID)) as u16
    }

    /// The sequence within the millisecond.
    pub fn sequence(self) -> u16 {
        (self.0 & u64::from(MAX_SEQUENCE)) as u16
    }

    pub(crate) fn from_checked_parts(unix_ms: u64, shard: ShardId, sequence: u16) -> Self {
        Self(
            ((unix_ms - EPOCH_MS) << TIME_SHIFT)
                | (u64::from(shard.get()) << SHARD_SHIFT)
                | u64::from(sequence),
        )
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Id {
    type Err = LayoutError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_decimal_i64(text.as_bytes())
            .ok_or(LayoutError::NotAnInteger)
            .and_then(Self::from_i64)
    }
}

impl From<Id> for i64 {
    fn from(id: Id) -> Self {
        id.as_i64()
    }
}

/// Parses a strict decimal integer: an optional `-`, then digits only, no spaces or `+`, and
/// within i64. Returns `None` for anything else, including the empty string.
pub fn parse_decimal_i64(bytes: &[u8]) -> Option<i64> {
    let (negative, digits) = match bytes {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, bytes),
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let magnitude = digits.iter().try_fold(0_i128, |acc, &digit| {
        Some(acc * 10 + i128::from(digit - b'0'))
    })?;
    let value = if negative { -magnitude } else { magnitude };
    i64::try_from(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_worked_example_decodes() {
        let id: Id = "1446325212348944384".parse().unwrap();

        assert_eq!(id.unix_ms(), 1_796_397_602_047);
        assert_eq!(id.unix_ms() - EPOCH_MS, 344_830_802_047);
        assert_eq!(id.shard_id(), 1);
        assert_eq!(id.sequence(), 0);
    }

    #[test]
    fn contract_worked_example_encodes() {
        let id = Id::new(1_796_397_602_047, ShardId::new(1).unwrap(), 0).unwrap();

        assert_eq!(id.as_i64(), 1_446_325_212_348_944_384);
    }

    #[test]
    fn round_trips_across_the_space() {
        let cases = [
            (EPOCH_MS, 1, 0),
            (EPOCH_MS, 1023, 4095),
            (LAST_MS, 1023, 4095),
            (LAST_MS, 1, 0),
            (1_796_397_602_047, 512, 1234),
        ];
        for (ms, shard, sequence) in cases {
            let id = Id::new(ms, ShardId::new(shard).unwrap(), sequence).unwrap();

            assert!(id.as_i64() >= 0, "{ms} {shard} {sequence}");
            assert_eq!(id.unix_ms(), ms);
            assert_eq!(i64::from(id.shard_id()), shard);
            assert_eq!(id.sequence(), sequence);
            assert_eq!(id.to_string().parse::<Id>().unwrap(), id);
        }
    }

    #[test]
    fn the_last_id_is_i64_max() {
        let id = Id::new(LAST_MS, ShardId::new(1023).unwrap(), 4095).unwrap();

        assert_eq!(id.as_i64(), i64::MAX);
    }

    #[test]
    fn rejects_parts_outside_the_layout() {
        let shard = ShardId::new(1).unwrap();
        let cases = [
            (EPOCH_MS - 1, 0, LayoutError::TimeOutOfRange(EPOCH_MS - 1)),
            (LAST_MS + 1, 0, LayoutError::TimeOutOfRange(LAST_MS + 1)),
            (EPOCH_MS, 4096, LayoutError::SequenceOutOfRange(4096)),
        ];
        for (ms, sequence, expected) in cases {
            assert_eq!(Id::new(ms, shard, sequence), Err(expected));
        }
    }

    #[test]
    fn shard_ids_outside_one_to_1023_are_rejected() {
        for bad in [0, -1, 1024, 65_536 + 1, i64::MAX, i64::MIN] {
            assert_eq!(ShardId::new(bad), Err(LayoutError::ShardOutOfRange(bad)));
        }
        for good in [1, 7, 1023] {
            assert_eq!(ShardId::new(good).unwrap().get() as i64, good);
        }
    }

    #[test]
    fn parsing_ids_is_strict() {
        let cases: [(&str, Result<i64, LayoutError>); 10] = [
            ("0", Ok(0)),
            ("9223372036854775807", Ok(i64::MAX)),
            ("9223372036854775808", Err(LayoutError::NotAnInteger)),
            ("99999999999999999999", Err(LayoutError::NotAnInteger)),
            ("-1", Err(LayoutError::Negative)),
            ("", Err(LayoutError::NotAnInteger)),
            ("1.5", Err(LayoutError::NotAnInteger)),
            ("+1", Err(LayoutError::NotAnInteger)),
            (" 1", Err(LayoutError::NotAnInteger)),
            ("abc", Err(LayoutError::NotAnInteger)),
        ];
        for (text, expected) in cases {
            assert_eq!(text.parse::<Id>().map(Id::as_i64), expected, "{text:?}");
        }
    }

    #[test]
    fn decimal_parser_handles_the_edges() {
        assert_eq!(parse_decimal_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_decimal_i64(b"-"), None);
        assert_eq!(parse_decimal_i64(b"007"), Some(7));
        assert_eq!(parse_decimal_i64(b"1e3"), None);
    }
}
