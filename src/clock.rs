//! The server's clock, in Unix milliseconds.

use redis_module::raw;

/// Reads the server's wall clock; a reading before 1970 counts as 0. Test builds add
/// `kestrel.clock-offset-ms`.
pub fn now_ms() -> u64 {
    // SAFETY: RedisModule_Milliseconds takes no arguments and only reads the system clock;
    // the function pointer is filled by RedisModule_Init before any command can run.
    let now = unsafe { raw::RedisModule_Milliseconds.map_or(0, |milliseconds| milliseconds()) };
    #[cfg(feature = "test-clock")]
    let now = now.saturating_add(crate::config::get(&crate::config::CLOCK_OFFSET_MS));
    u64::try_from(now).unwrap_or(0)
}
