//! The parsers that read what clients and keys send: decimal integers (counts, shard ids,
//! marks) and IDs. They never panic, accept exactly the strict decimal form, and an ID that
//! parses decodes into parts that build it again.
#![no_main]

use std::str::FromStr;

use kestrel_core::{parse_decimal_i64, Id, ShardId, EPOCH_MS, LAST_MS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let parsed = parse_decimal_i64(bytes);

    // The reference: an optional '-', 1 to 19 ASCII digits, within i64.
    let digits = bytes.strip_prefix(b"-").unwrap_or(bytes);
    let strict = !digits.is_empty() && digits.len() <= 19 && digits.iter().all(u8::is_ascii_digit);
    let reference = if strict {
        std::str::from_utf8(bytes).ok().and_then(|text| i64::from_str(text).ok())
    } else {
        None
    };
    assert_eq!(parsed, reference, "{bytes:?}");

    if let Ok(text) = std::str::from_utf8(bytes) {
        match text.parse::<Id>() {
            Ok(id) => {
                assert_eq!(Some(id.as_i64()), parsed);
                assert!(id.as_i64() >= 0);
                assert!((EPOCH_MS..=LAST_MS).contains(&id.unix_ms()));
                assert_eq!(id.to_string().parse::<Id>(), Ok(id));
                if let Ok(shard) = ShardId::new(i64::from(id.shard_id())) {
                    assert_eq!(Id::new(id.unix_ms(), shard, id.sequence()), Ok(id));
                }
            }
            Err(_) => assert!(parsed.is_none_or(|value| value < 0)),
        }
    }
    if let Some(value) = parsed {
        let shard = ShardId::new(value);
        assert_eq!(shard.is_ok(), (1..=1023).contains(&value));
    }
});
