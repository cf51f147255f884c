//! Bounded waiting: poll a condition until it holds, or fail with a message that says what was
//! awaited, what was last seen, and what the servers logged.

use std::thread;
use std::time::{Duration, Instant};

/// How often conditions are polled.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Polls `probe` until it returns `Ok`, and returns that value.
///
/// `what` names the awaited state for the timeout message ("replica 127.0.0.1:1234 in sync").
/// `probe` returns `Err(observation)` while the state is not reached; the last observation goes
/// into the message. `context` is called only on timeout, typically to add server log tails.
///
/// # Panics
///
/// After `timeout`, with all of the above in the message.
pub fn wait_for<T>(
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut() -> Result<T, String>,
    context: impl FnOnce() -> String,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match probe() {
            Ok(value) => return value,
            Err(observation) => {
                if Instant::now() >= deadline {
                    panic!(
                        "kestrel-testbed: timed out after {timeout:?} waiting for {what}\n\
                         last seen: {observation}\n{}",
                        context()
                    );
                }
            }
        }
        thread::sleep(POLL_INTERVAL);
    }
}
