//! Fault scenarios for Kestrel, on real `redis-server` processes on 127.0.0.1: clock steps, the
//! edges of time, kill -9 and restart from the AOF or a dump, a lagging replica promoted,
//! `maxmemory`, a soak of module and script calls, random argument vectors, and leaks under
//! valgrind.
//!
//! Each scenario is bounded in time, stops its servers by itself, and returns an [`Outcome`]:
//! how many IDs it checked, how many were duplicates, and what went wrong. `scripts/chaos.sh`
//! runs them all through the `kestrel-chaos` binary; the fast ones also run in the normal test
//! suite (`tests/faults_*.rs`) with smaller sizes.

pub mod argv;
pub mod check;
pub mod clock;
pub mod load;
pub mod oom;
pub mod replica;
pub mod restart;
pub mod signal;
pub mod soak;
pub mod valgrind;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use kestrel_testbed::redis;

use crate::check::Findings;

/// What one scenario found.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub scenario: String,
    pub ids_checked: u64,
    pub duplicates: u64,
    /// Every broken promise; empty when the scenario passed.
    pub failures: Vec<String>,
    /// What is worth knowing even when it passed (counts, timings).
    pub notes: Vec<String>,
}

impl Outcome {
    pub fn new(scenario: &str) -> Self {
        Self {
            scenario: scenario.to_string(),
            ..Self::default()
        }
    }

    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// Adds a failure unless `holds`.
    pub fn expect(&mut self, holds: bool, failure: impl FnOnce() -> String) {
        if !holds {
            self.failures.push(failure());
        }
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// Takes the checker's findings: IDs, duplicates, and each problem as a failure.
    pub fn add_findings(&mut self, findings: &Findings) {
        self.ids_checked += findings.ids;
        self.duplicates += findings.duplicates;
        if !findings.clean() {
            self.failures.push(format!(
                "{} duplicate IDs, {} ranges below an earlier one",
                findings.duplicates, findings.out_of_order
            ));
            self.failures.extend(findings.problems.iter().cloned());
        }
    }

    /// One table row: `scenario | IDs checked | duplicates | result`.
    pub fn row(&self) -> String {
        let result = if self.passed() { "PASS" } else { "FAIL" };
        format!(
            "{:<30} | {:>13} | {:>10} | {result}",
            self.scenario, self.ids_checked, self.duplicates
        )
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.row())?;
        for failure in &self.failures {
            writeln!(f, "    FAILED: {failure}")?;
        }
        for note in &self.notes {
            writeln!(f, "    note: {note}")?;
        }
        Ok(())
    }
}

/// Pings a server every few milliseconds in the background and keeps the slowest answer, to
/// show the server never blocks.
pub struct PingWatch {
    stop: Arc<AtomicBool>,
    slowest_us: Arc<AtomicU64>,
    failures: Arc<AtomicU64>,
    thread: Option<thread::JoinHandle<()>>,
}

impl PingWatch {
    pub fn start(client: &redis::Client) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let slowest_us = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(AtomicU64::new(0));
        let thread = {
            let (client, stop, slowest_us, failures) = (
                client.clone(),
                stop.clone(),
                slowest_us.clone(),
                failures.clone(),
            );
            thread::spawn(move || {
                let Ok(mut connection) = client.get_connection() else {
                    failures.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let pong: redis::RedisResult<String> =
                        redis::cmd("PING").query(&mut connection);
                    let took = started.elapsed().as_micros().try_into().unwrap_or(u64::MAX);
                    if pong.is_err() {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                    slowest_us.fetch_max(took, Ordering::Relaxed);
                    thread::sleep(Duration::from_millis(5));
                }
            })
        };
        Self {
            stop,
            slowest_us,
            failures,
            thread: Some(thread),
        }
    }

    /// Stops pinging; returns the slowest answer and how many pings failed.
    pub fn stop(mut self) -> (Duration, u64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        (
            Duration::from_micros(self.slowest_us.load(Ordering::Relaxed)),
            self.failures.load(Ordering::Relaxed),
        )
    }
}

/// The slowest PING answer a scenario accepts. This is no speed measurement (bench.sh does
/// that): it only tells a server that stopped answering, say one sleeping or spinning in a
/// refused call, from one that is slow on a small, shared machine.
pub const PING_LIMIT: Duration = Duration::from_millis(2_000);

/// [`PING_LIMIT`], or `$KESTREL_PING_LIMIT_MS` when set: scripts/chaos.sh raises it for the
/// integration suite under valgrind, where every command is many times slower.
pub fn ping_limit() -> Duration {
    std::env::var("KESTREL_PING_LIMIT_MS")
        .ok()
        .and_then(|value| value.parse().ok())
        .map_or(PING_LIMIT, Duration::from_millis)
}

/// One field of `INFO kestrel` as a number (Redis prefixes the module's fields).
pub fn kestrel_counter(connection: &mut redis::Connection, field: &str) -> Option<u64> {
    let info: String = redis::cmd("INFO").arg("kestrel").query(connection).ok()?;
    let wanted = format!("kestrel_{field}:");
    info.lines()
        .find_map(|line| line.strip_prefix(&wanted))
        .and_then(|value| value.trim().parse().ok())
}

/// The local clock in Unix milliseconds; the servers run on this machine and read the same.
pub fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis().try_into().unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Sets the test-clock module's `kestrel.clock-offset-ms`.
pub fn set_clock_offset(
    connection: &mut redis::Connection,
    offset_ms: i64,
) -> redis::RedisResult<()> {
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("kestrel.clock-offset-ms")
        .arg(offset_ms)
        .query(connection)
}

/// Runs a scenario, turning a panic (a testbed timeout, a server that would not start) into a
/// failed outcome so the other scenarios still run.
pub fn run_guarded(scenario: &str, body: impl FnOnce() -> Outcome) -> Outcome {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        Ok(outcome) => outcome,
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|text| text.to_string()))
                .unwrap_or_else(|| "panicked".to_string());
            let mut outcome = Outcome::new(scenario);
            outcome
                .failures
                .push(format!("the scenario panicked: {message}"));
            outcome
        }
    }
}
