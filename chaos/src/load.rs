//! Load from many connections: module and script calls on a few generators, every reply fed to
//! the [`Checker`](crate::check::Checker) as ranges.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use kestrel_core::{Id, ShardId, MAX_SEQUENCE, MAX_SHARD_ID, MIN_SHARD_ID};
use kestrel_testbed::redis::{self, RedisError, Value};

use crate::check::{Checker, Range};

/// A small, fast, seeded pseudo-random generator (xorshift64*): runs can be repeated.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low + 1)
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}

/// The three state keys of a generator, in the script's KEYS order: lock, sequence, shard id.
pub fn script_keys(generator: &str) -> [String; 3] {
    [
        format!("{{{generator}}}-generator-lock"),
        format!("{{{generator}}}-generator-sequence"),
        format!("{{{generator}}}-shard-id"),
    ]
}

/// Gives `generator` a shard id of its own (`SET {<generator>}-shard-id <shard>`). The module's
/// `shard-id` option fills only the default generator's key; every other generator needs one,
/// distinct from those of the other generators on the server.
pub fn set_shard_id(
    connection: &mut redis::Connection,
    generator: &str,
    shard: u16,
) -> Result<(), RedisError> {
    let [_, _, key] = script_keys(generator);
    redis::cmd("SET").arg(key).arg(shard).query(connection)
}

/// Gives `generators` the shard ids `first`, `first + 1`, ... in order.
pub fn set_shard_ids(
    connection: &mut redis::Connection,
    generators: &[String],
    first: u16,
) -> Result<(), RedisError> {
    (first..)
        .zip(generators)
        .try_for_each(|(shard, generator)| set_shard_id(connection, generator, shard))
}

/// Loads the Lua script and returns its SHA1.
pub fn load_script(connection: &mut redis::Connection) -> Result<String, RedisError> {
    redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(kestrel_core::SCRIPT)
        .query(connection)
}

/// `KESTREL.IDS <count> GENERATOR <generator> FORMAT RANGES`, as ranges.
pub fn module_ranges(
    connection: &mut redis::Connection,
    generator: &str,
    count: u64,
) -> Result<Vec<Range>, RedisError> {
    let reply: Value = redis::cmd("KESTREL.IDS")
        .arg(count)
        .arg("GENERATOR")
        .arg(generator)
        .arg("FORMAT")
        .arg("RANGES")
        .query(connection)?;
    ranges_of_reply(&reply).ok_or_else(|| unexpected(&reply))
}

/// The script with the server's clock, as one range.
pub fn script_ranges(
    connection: &mut redis::Connection,
    sha: &str,
    generator: &str,
    count: u64,
) -> Result<Vec<Range>, RedisError> {
    let [lock, sequence, shard] = script_keys(generator);
    let reply: Value = redis::cmd("EVALSHA")
        .arg(sha)
        .arg(3)
        .arg(lock)
        .arg(sequence)
        .arg(shard)
        .arg(MAX_SEQUENCE)
        .arg(MIN_SHARD_ID)
        .arg(MAX_SHARD_ID)
        .arg(count)
        .query(connection)?;
    script_range(&reply)
        .map(|range| vec![range])
        .ok_or_else(|| unexpected(&reply))
}

/// A `FORMAT RANGES` reply: `[[first as a decimal string, count], ...]`.
pub fn ranges_of_reply(reply: &Value) -> Option<Vec<Range>> {
    let Value::Array(runs) = reply else {
        return None;
    };
    runs.iter()
        .map(|run| match run {
            Value::Array(pair) => match pair.as_slice() {
                [Value::BulkString(first), Value::Int(count)] => Some(Range {
                    first: std::str::from_utf8(first).ok()?.parse().ok()?,
                    count: u64::try_from(*count).ok()?,
                }),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// A script reply `[start, end, shard, seconds, microseconds]` as the range it stands for.
pub fn script_range(reply: &Value) -> Option<Range> {
    let Value::Array(fields) = reply else {
        return None;
    };
    let numbers: Vec<i64> = fields
        .iter()
        .map(|field| match field {
            Value::Int(value) => Some(*value),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let [start, end, shard, seconds, micros] = numbers.as_slice() else {
        return None;
    };
    let ms = u64::try_from(seconds * 1000 + micros / 1000).ok()?;
    let shard = ShardId::new(*shard).ok()?;
    let first = Id::new(ms, shard, u16::try_from(*start).ok()?).ok()?;
    Some(Range {
        first: first.as_i64().unsigned_abs(),
        count: u64::try_from(end - start + 1).ok()?,
    })
}

fn unexpected(reply: &Value) -> RedisError {
    RedisError::from((
        redis::ErrorKind::UnexpectedReturnType,
        "unexpected reply",
        format!("{reply:?}"),
    ))
}

/// A `KESTREL_LEAD` refusal, read from its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeadRefusal {
    pub lead_ms: u64,
    pub cap_ms: u64,
    pub retry_ms: u64,
}

/// The full text of a server's error reply, or `None` when the error is not a reply (the
/// connection broke, a timeout).
pub fn error_reply(error: &RedisError) -> Option<String> {
    if error.is_io_error() || error.is_connection_dropped() || error.is_timeout() {
        return None;
    }
    let code = error.code()?;
    Some(match error.detail() {
        Some(detail) => format!("{code} {detail}"),
        None => code.to_string(),
    })
}

/// Reads `... would end X ms ahead of the clock, over the lead cap of C ms; retry in N ms`.
pub fn lead_refusal(text: &str) -> Option<LeadRefusal> {
    if !text.starts_with("KESTREL_LEAD") {
        return None;
    }
    let number_after = |marker: &str| -> Option<u64> {
        let rest = &text[text.find(marker)? + marker.len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    Some(LeadRefusal {
        lead_ms: number_after("would end ")?,
        cap_ms: number_after("lead cap of ")?,
        retry_ms: number_after("retry in ")?,
    })
}

/// What a load run should do.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Generator names; connection `i` uses generator `i % len`.
    pub generators: Vec<String>,
    pub connections: usize,
    /// Percent of calls that go through the Lua script instead of the module.
    pub script_percent: u64,
    /// Largest count per module call (script calls take at most 4096).
    pub max_count: u64,
    /// Stop after this long...
    pub duration: Duration,
    /// ... or once this many IDs were received, whichever comes first.
    pub target_ids: u64,
    pub seed: u64,
}

/// What a load run saw, besides what the checker checks.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub calls: u64,
    pub ids: u64,
    pub lead_refusals: u64,
    /// Lead refusals whose lead was not above the cap.
    pub bad_lead_refusals: u64,
    /// Error replies other than lead refusals, the first few kept.
    pub other_errors: u64,
    pub error_samples: Vec<String>,
    /// Connections that ended because the connection broke (the server went away).
    pub broken_connections: u64,
}

/// A load running in the background; [`RunningLoad::stop`] ends it and returns the report.
pub struct RunningLoad {
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
    report: Arc<Mutex<LoadReport>>,
    ids: Arc<AtomicU64>,
}

impl RunningLoad {
    /// IDs received so far.
    pub fn ids(&self) -> u64 {
        self.ids.load(Ordering::Relaxed)
    }

    /// Whether every connection has ended by itself (deadline, target or broken connection).
    pub fn finished(&self) -> bool {
        self.threads.iter().all(thread::JoinHandle::is_finished)
    }

    /// Stops every connection and waits for them.
    pub fn stop(self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        self.wait()
    }

    /// Waits until every connection ended by itself.
    pub fn wait(self) -> LoadReport {
        for thread in self.threads {
            let _ = thread.join();
        }
        let report = self.report.lock().map(|r| r.clone()).unwrap_or_default();
        report
    }
}

/// Starts `spec.connections` connections issuing IDs, each checked by `checker`.
pub fn start(client: &redis::Client, checker: &Checker, spec: &LoadSpec) -> RunningLoad {
    let stop = Arc::new(AtomicBool::new(false));
    let report = Arc::new(Mutex::new(LoadReport::default()));
    let ids = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + spec.duration;
    let threads = (0..spec.connections)
        .map(|index| {
            let generator = spec.generators[index % spec.generators.len()].clone();
            // Open the stream now, before any call, so nothing settles past it.
            let stream = checker.stream(&generator);
            let client = client.clone();
            let stop = stop.clone();
            let report = report.clone();
            let ids = ids.clone();
            let spec = spec.clone();
            thread::spawn(move || {
                let mut rng = Rng::new(spec.seed ^ ((index as u64 + 1) * 0x1000_0001));
                let mut local = LoadReport::default();
                let connected = client
                    .get_connection_with_timeout(Duration::from_secs(5))
                    .and_then(|connection| {
                        connection.set_read_timeout(Some(Duration::from_secs(10)))?;
                        Ok(connection)
                    });
                let Ok(mut connection) = connected else {
                    local.broken_connections += 1;
                    merge(&report, local);
                    return;
                };
                let sha = if spec.script_percent > 0 {
                    match load_script(&mut connection) {
                        Ok(sha) => Some(sha),
                        Err(_) => {
                            local.broken_connections += 1;
                            merge(&report, local);
                            return;
                        }
                    }
                } else {
                    None
                };
                while !stop.load(Ordering::Relaxed)
                    && Instant::now() < deadline
                    && ids.load(Ordering::Relaxed) < spec.target_ids
                {
                    let outcome = match &sha {
                        Some(sha) if rng.chance(spec.script_percent) => {
                            let count = rng.between(1, 4096.min(spec.max_count));
                            script_ranges(&mut connection, sha, &generator, count)
                        }
                        _ => {
                            let count = pick_count(&mut rng, spec.max_count);
                            module_ranges(&mut connection, &generator, count)
                        }
                    };
                    local.calls += 1;
                    match outcome {
                        Ok(ranges) => {
                            let received: u64 = ranges.iter().map(|range| range.count).sum();
                            stream.record(&ranges);
                            local.ids += received;
                            ids.fetch_add(received, Ordering::Relaxed);
                        }
                        Err(error) => match error_reply(&error) {
                            None => {
                                local.broken_connections += 1;
                                break;
                            }
                            Some(text) => match lead_refusal(&text) {
                                Some(refusal) => {
                                    local.lead_refusals += 1;
                                    if refusal.lead_ms <= refusal.cap_ms {
                                        local.bad_lead_refusals += 1;
                                        sample(&mut local, text);
                                    }
                                    let wait = refusal.retry_ms.clamp(1, 20);
                                    thread::sleep(Duration::from_millis(wait));
                                }
                                None => {
                                    local.other_errors += 1;
                                    sample(&mut local, text);
                                    thread::sleep(Duration::from_millis(5));
                                }
                            },
                        },
                    }
                }
                drop(stream);
                merge(&report, local);
            })
        })
        .collect();
    RunningLoad {
        stop,
        threads,
        report,
        ids,
    }
}

/// Mostly large batches (they make the volume), some small ones, some that span milliseconds.
fn pick_count(rng: &mut Rng, max: u64) -> u64 {
    let count = match rng.between(0, 9) {
        0..=1 => rng.between(1, 10),
        2..=3 => rng.between(1, 1000),
        4..=8 => rng.between(1000, 4096),
        _ => rng.between(4097, 12_000),
    };
    count.min(max)
}

fn sample(report: &mut LoadReport, text: String) {
    if report.error_samples.len() < 5 {
        report.error_samples.push(text);
    }
}

fn merge(total: &Mutex<LoadReport>, local: LoadReport) {
    let Ok(mut total) = total.lock() else {
        return;
    };
    total.calls += local.calls;
    total.ids += local.ids;
    total.lead_refusals += local.lead_refusals;
    total.bad_lead_refusals += local.bad_lead_refusals;
    total.other_errors += local.other_errors;
    total.broken_connections += local.broken_connections;
    for text in local.error_samples {
        if total.error_samples.len() < 5 {
            total.error_samples.push(text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lead_refusals_are_read() {
        let text = "KESTREL_LEAD generator 'g': the batch would end 1200 ms ahead of the clock, \
                    over the lead cap of 1000 ms; retry in 200 ms";

        let refusal = lead_refusal(text).unwrap();

        assert_eq!(
            refusal,
            LeadRefusal {
                lead_ms: 1200,
                cap_ms: 1000,
                retry_ms: 200
            }
        );
    }

    #[test]
    fn script_replies_become_ranges() {
        // The contract's worked example: 1796397602047 ms, shard 1, sequence 0.
        let reply = Value::Array(vec![
            Value::Int(0),
            Value::Int(9),
            Value::Int(1),
            Value::Int(1_796_397_602),
            Value::Int(47_000),
        ]);

        let range = script_range(&reply).unwrap();

        assert_eq!(range.first, 1_446_325_212_348_944_384);
        assert_eq!(range.count, 10);
    }
}
