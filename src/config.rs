//! The module's options: `loadmodule` arguments and `CONFIG SET kestrel.<name>`.

use std::sync::atomic::{AtomicI64, Ordering};

use kestrel_core::{Settings, MAX_SHARD_ID};
use redis_module::configuration::{register_i64_configuration, ConfigurationFlags};
use redis_module::{raw, Context};

/// One numeric option: its name (without the `kestrel.` prefix), default and bounds.
pub struct NumericOption {
    pub name: &'static str,
    pub value: &'static AtomicI64,
    pub default: i64,
    pub min: i64,
    pub max: i64,
}

/// The shard id written to `{name}-shard-id` when that key is missing; 0 leaves it unset.
pub static SHARD_ID: AtomicI64 = AtomicI64::new(0);
/// The most milliseconds a generator's last ID may be ahead of the clock.
pub static LEAD_CAP_MS: AtomicI64 = AtomicI64::new(1_000);
/// How far past the last ID each write of the high-water mark reaches.
pub static RESERVE_MS: AtomicI64 = AtomicI64::new(100);
/// The largest batch `KESTREL.IDS` serves.
pub static MAX_BATCH: AtomicI64 = AtomicI64::new(65_536);
/// After loading data or a promotion, how far past the clock plus the lead cap a generator
/// starts: the most the new clock may be behind the old process's.
pub static FENCE_MS: AtomicI64 = AtomicI64::new(0);
/// Shifts the module's clock; compiled only into test builds.
#[cfg(feature = "test-clock")]
pub static CLOCK_OFFSET_MS: AtomicI64 = AtomicI64::new(0);

const HOUR_MS: i64 = 3_600_000;

/// Every option, in the order `INFO kestrel` lists them.
pub static OPTIONS: &[NumericOption] = &[
    NumericOption {
        name: "shard-id",
        value: &SHARD_ID,
        default: 0,
        min: 0,
        max: MAX_SHARD_ID as i64,
    },
    NumericOption {
        name: "lead-cap-ms",
        value: &LEAD_CAP_MS,
        default: 1_000,
        min: 0,
        max: HOUR_MS,
    },
    NumericOption {
        name: "reserve-ms",
        value: &RESERVE_MS,
        default: 100,
        min: 0,
        max: 60_000,
    },
    NumericOption {
        name: "max-batch",
        value: &MAX_BATCH,
        default: 65_536,
        min: 1,
        max: 1 << 20,
    },
    NumericOption {
        name: "fence-ms",
        value: &FENCE_MS,
        default: 0,
        min: 0,
        max: HOUR_MS,
    },
    #[cfg(feature = "test-clock")]
    NumericOption {
        name: "clock-offset-ms",
        value: &CLOCK_OFFSET_MS,
        default: 0,
        min: -100 * 365 * 24 * HOUR_MS,
        max: 100 * 365 * 24 * HOUR_MS,
    },
];

/// Reads an option's current value.
pub fn get(value: &AtomicI64) -> i64 {
    value.load(Ordering::Relaxed)
}

/// The largest lead cap this process has run with. A fence must reach past what was issued
/// under it, even after `CONFIG SET kestrel.lead-cap-ms` lowered the cap.
static HIGHEST_LEAD_CAP_MS: AtomicI64 = AtomicI64::new(0);

/// The settings a fence uses: the current ones, with the largest lead cap this process has
/// run with.
pub fn fence_settings() -> Settings {
    let current = get(&LEAD_CAP_MS);
    let highest = HIGHEST_LEAD_CAP_MS
        .fetch_max(current, Ordering::Relaxed)
        .max(current);
    Settings {
        lead_cap_ms: highest.unsigned_abs(),
        ..settings()
    }
}

/// The generator settings the options describe now.
pub fn settings() -> Settings {
    let lead_cap_ms = get(&LEAD_CAP_MS);
    if lead_cap_ms > get(&HIGHEST_LEAD_CAP_MS) {
        HIGHEST_LEAD_CAP_MS.store(lead_cap_ms, Ordering::Relaxed);
    }
    Settings {
        lead_cap_ms: lead_cap_ms.unsigned_abs(),
        reserve_ms: get(&RESERVE_MS).unsigned_abs(),
    }
}

/// Reads `loadmodule` arguments: pairs of a known option name and an integer in its range.
/// Returns the starting value of every option, in the order of [`OPTIONS`]. A typo fails the
/// load instead of being ignored.
pub fn parse_module_args(args: &[&[u8]]) -> Result<Vec<i64>, String> {
    let usage = || {
        let names: Vec<_> = OPTIONS.iter().map(|option| option.name).collect();
        format!(
            "module arguments are pairs: <option> <integer>, options: {}",
            names.join(", ")
        )
    };
    if args.len() % 2 != 0 {
        return Err(usage());
    }

    let mut values: Vec<i64> = OPTIONS.iter().map(|option| option.default).collect();
    for pair in args.chunks(2) {
        let name = String::from_utf8_lossy(pair[0]);
        let Some(index) = OPTIONS.iter().position(|option| option.name == name) else {
            return Err(format!("unknown option '{name}'; {}", usage()));
        };
        let option = &OPTIONS[index];
        match kestrel_core::parse_decimal_i64(pair[1]) {
            Some(value) if (option.min..=option.max).contains(&value) => values[index] = value,
            _ => {
                return Err(format!(
                    "option '{name}' takes an integer from {} to {}, got '{}'",
                    option.min,
                    option.max,
                    String::from_utf8_lossy(pair[1])
                ))
            }
        }
    }
    Ok(values)
}

/// Registers every option as `kestrel.<name>` for CONFIG GET and SET, starting from `values`,
/// then lets Redis apply what redis.conf says about them.
pub fn register(ctx: &Context, values: &[i64]) -> Result<(), String> {
    for (option, &value) in OPTIONS.iter().zip(values) {
        option.value.store(value, Ordering::Relaxed);
        register_i64_configuration(
            ctx,
            option.name,
            option.value,
            value,
            option.min,
            option.max,
            ConfigurationFlags::DEFAULT,
            None,
        );
    }
    // SAFETY: called from RedisModule_OnLoad with its context, after every option is
    // registered, as the API requires.
    let loaded = unsafe { raw::RedisModule_LoadConfigs.map(|load| load(ctx.ctx)) };
    match loaded {
        Some(code) if code == raw::REDISMODULE_OK as i32 => Ok(()),
        _ => Err("redis.conf holds an invalid kestrel.* setting".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_args_are_checked() {
        let cases: [(&[&[u8]], bool); 7] = [
            (&[], true),
            (&[b"shard-id", b"7"], true),
            (&[b"shard-id", b"7", b"lead-cap-ms", b"0"], true),
            (&[b"shard-id"], false),
            (&[b"shard-idd", b"7"], false),
            (&[b"shard-id", b"1024"], false),
            (&[b"max-batch", b"0"], false),
        ];
        for (args, ok) in cases {
            assert_eq!(parse_module_args(args).is_ok(), ok, "{args:?}");
        }
    }

    #[test]
    fn module_args_set_starting_values() {
        let values = parse_module_args(&[b"lead-cap-ms", b"250", b"shard-id", b"7"]).unwrap();

        assert_eq!(values[0], 7);
        assert_eq!(values[1], 250);
        assert_eq!(values[2], RESERVE_MS.load(Ordering::Relaxed));
    }
}
