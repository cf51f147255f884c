//! With the `serde` feature: an [`Id`] serialises as its decimal string, because JSON readers
//! such as JavaScript's turn integers above 2^53 into rounded floats, and every ID is above
//! 2^53. Deserialising takes the string, or an integer from formats that keep 64 bits.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::layout::Id;

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(IdVisitor)
    }
}

struct IdVisitor;

impl Visitor<'_> for IdVisitor {
    type Value = Id;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Kestrel ID as a decimal string")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Id, E> {
        text.parse()
            .map_err(|error| E::custom(format!("{text:?} is not an ID: {error}")))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Id, E> {
        Id::from_i64(value).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Id, E> {
        i64::try_from(value)
            .map_err(|_| E::custom("IDs fit in 63 bits"))
            .and_then(|value| self.visit_i64(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_travel_as_strings() {
        let id: Id = "1446325212348944384".parse().unwrap();

        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            "\"1446325212348944384\""
        );
        assert_eq!(
            serde_json::from_str::<Id>("\"1446325212348944384\"").unwrap(),
            id
        );
        assert_eq!(
            serde_json::from_str::<Id>("1446325212348944384").unwrap(),
            id
        );
    }

    #[test]
    fn bad_ids_do_not_deserialise() {
        for text in [
            "\"-1\"",
            "\"abc\"",
            "-1",
            "18446744073709551615",
            "1.5",
            "null",
        ] {
            assert!(serde_json::from_str::<Id>(text).is_err(), "{text}");
        }
    }
}
