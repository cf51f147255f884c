//! The server's clock stepped back and forward while IDs are generated, and the edges of time.
//! Both need the module built with `--features test-clock` (its `kestrel.clock-offset-ms`).

use std::thread;
use std::time::Duration;

use kestrel_core::{Id, EPOCH_MS, LAST_MS};
use kestrel_testbed::{redis, test_clock_module_path, Server};

use crate::check::{Checker, Range};
use crate::load::{self, error_reply, LoadSpec};
use crate::{kestrel_counter, ping_limit, set_clock_offset, unix_now_ms, Outcome, PingWatch};

/// The module's default lead cap, which these scenarios keep.
const LEAD_CAP_MS: u64 = 1_000;

/// A server with the test-clock module, shard id 1.
pub fn test_clock_server() -> Server {
    Server::builder()
        .module_file(test_clock_module_path(), &["shard-id", "1"])
        .start()
}

/// Steps the clock back by each of `steps_ms` (holding it there for `hold`) and forward again,
/// while four connections issue IDs. Checks: no duplicate, no ID below an earlier one,
/// `KESTREL_LEAD` only past the cap (never for a step within the cap), nothing issued while
/// the clock is an hour back, and PING always answered quickly.
pub fn steps(steps_ms: &[u64], hold: Duration) -> Outcome {
    let name = format!(
        "clock back {}",
        steps_ms
            .iter()
            .map(|step| format_ms(*step))
            .collect::<Vec<_>>()
            .join("/")
    );
    let mut outcome = Outcome::new(&name);
    let server = test_clock_server();
    let mut control = server.connection();
    let checker = Checker::new();
    let spec = LoadSpec {
        generators: vec!["clock".to_string()],
        connections: 4,
        script_percent: 0,
        // Modest batches: the lead then comes from the steps, not from outrunning the clock.
        max_count: 50,
        duration: Duration::from_secs(600),
        target_ids: u64::MAX,
        seed: 7,
    };
    // The option's shard id (1) is the default generator's; `clock` needs one of its own.
    if let Err(error) = load::set_shard_ids(&mut control, &spec.generators, 2) {
        outcome.failures.push(format!("SET the shard id: {error}"));
        return outcome;
    }
    let watch = PingWatch::start(&server.client());
    let running = load::start(&server.client(), &checker, &spec);
    thread::sleep(hold);

    for &step in steps_ms {
        let refusals_before = kestrel_counter(&mut control, "lead_refusals").unwrap_or(0);
        let offset = -i64::try_from(step).unwrap_or(i64::MAX);
        if let Err(error) = set_clock_offset(&mut control, offset) {
            outcome
                .failures
                .push(format!("CONFIG SET kestrel.clock-offset-ms: {error}"));
            break;
        }
        // Let the step take effect before counting what it lets through.
        thread::sleep(Duration::from_millis(50));
        let ids_stepped = running.ids();
        thread::sleep(hold);
        let ids_issued_back = running.ids() - ids_stepped;
        let refusals_back = kestrel_counter(&mut control, "lead_refusals").unwrap_or(0);
        let _ = set_clock_offset(&mut control, 0);
        // Long enough for a lead of up to the cap to drain before the next step.
        thread::sleep(hold.max(Duration::from_millis(LEAD_CAP_MS + 200)));
        let refused = refusals_back - refusals_before;
        outcome.note(format!(
            "step back {}: {refused} lead refusals, {ids_issued_back} IDs while back",
            format_ms(step)
        ));
        if step + 50 < LEAD_CAP_MS {
            outcome.expect(refused == 0, || {
                format!(
                    "a step back of {} ms, within the {LEAD_CAP_MS} ms lead cap, got {refused} \
                     KESTREL_LEAD refusals",
                    step
                )
            });
        }
        if step > 10 * LEAD_CAP_MS {
            outcome.expect(refused > 0 && ids_issued_back < 5_000, || {
                format!(
                    "with the clock {} back, {ids_issued_back} IDs were issued and {refused} \
                     calls refused; every call should be refused (KESTREL_LEAD)",
                    format_ms(step)
                )
            });
        }
    }
    let steps_back = kestrel_counter(&mut control, "clock_steps_back").unwrap_or(0);
    let report = running.stop();
    let (slowest_ping, ping_failures) = watch.stop();

    outcome.add_findings(&checker.finish());
    outcome.note(format!(
        "{} calls, {} lead refusals, clock_steps_back {steps_back}, slowest PING {:?}",
        report.calls, report.lead_refusals, slowest_ping
    ));
    outcome.expect(report.bad_lead_refusals == 0, || {
        format!(
            "{} KESTREL_LEAD refusals with a lead within the cap: {:?}",
            report.bad_lead_refusals, report.error_samples
        )
    });
    outcome.expect(
        report.other_errors == 0 && report.broken_connections == 0,
        || {
            format!(
                "{} unexpected errors, {} broken connections: {:?}",
                report.other_errors, report.broken_connections, report.error_samples
            )
        },
    );
    outcome.expect(steps_back > 0, || {
        "the module never saw the clock step back".into()
    });
    outcome.expect(slowest_ping < ping_limit() && ping_failures == 0, || {
        format!("PING took up to {slowest_ping:?} ({ping_failures} failed)")
    });
    outcome.expect(server.is_running(), || "the server died".into());
    outcome
}

/// The last valid millisecond of the 41-bit space, one past it, and one before the epoch.
pub fn edges() -> Outcome {
    let mut outcome = Outcome::new("edges of time");
    let server = test_clock_server();
    let mut connection = server.connection();
    let checker = Checker::new();

    // Every generator gets a shard id of its own: the option's (1) is the default generator's.
    let mut shard_ids = vec![
        ("edge".to_string(), 1023),
        ("edge-past".to_string(), 2),
        ("edge-now".to_string(), 3),
    ];
    shard_ids.extend((0..EPOCH_ATTEMPTS).map(|attempt| (epoch_generator(attempt), 10 + attempt)));
    for (generator, shard) in &shard_ids {
        let set = load::set_shard_id(&mut connection, generator, *shard);
        outcome.expect(set.is_ok(), || {
            format!("SET the shard id of {generator}: {set:?}")
        });
    }

    // The last millisecond: a generator with shard id 1023, the clock 1.5 s before the end (its
    // first use starts a lead cap ahead), batches of 4096 (one millisecond each) until the
    // space runs out.
    let offset = offset_to(LAST_MS - 1_500);
    let _ = set_clock_offset(&mut connection, offset);
    let stream = checker.stream("edge");
    let first = load::module_ranges(&mut connection, "edge", 1);
    if let Ok(ranges) = &first {
        stream.record(ranges);
    }
    outcome.expect(first.is_ok(), || {
        format!("first call near the end: {first:?}")
    });
    // Then let the clock reach the end, so the lead cap no longer holds the batches back.
    let _ = set_clock_offset(&mut connection, offset_to(LAST_MS - 100));
    let mut last_id = None;
    let mut refusal = None;
    for _ in 0..3_000 {
        match load::module_ranges(&mut connection, "edge", 4096) {
            Ok(ranges) => {
                stream.record(&ranges);
                last_id = ranges.last().map(Range::last);
            }
            Err(error) => {
                refusal = error_reply(&error);
                break;
            }
        }
    }
    drop(stream);
    let last_id = last_id.unwrap_or(0);
    outcome.expect(last_id == i64::MAX.unsigned_abs(), || {
        format!("the last ID of shard 1023 is {last_id}, not i64::MAX (2^63 - 1)")
    });
    let decoded = Id::from_i64(i64::try_from(last_id).unwrap_or(-1)).map(Id::unix_ms);
    outcome.expect(decoded == Ok(LAST_MS), || {
        format!("the last ID decodes to {decoded:?}, not Unix ms {LAST_MS}")
    });
    let refusal = refusal.unwrap_or_default();
    outcome.expect(refusal.starts_with("KESTREL_EXHAUSTED"), || {
        format!("after ID {last_id} the call got '{refusal}', not KESTREL_EXHAUSTED")
    });

    // One past the end: a new generator and the one above both refuse.
    let _ = set_clock_offset(&mut connection, offset_to(LAST_MS + 1));
    for generator in ["edge", "edge-past"] {
        let got = one_id(&mut connection, generator);
        outcome.expect(
            got.as_ref()
                .is_err_and(|text| text.starts_with("KESTREL_EXHAUSTED")),
            || {
                format!(
                    "one past the end, generator {generator} got {got:?}, not KESTREL_EXHAUSTED"
                )
            },
        );
    }

    // One before the epoch. The module reads its clock a moment after the offset is set, so
    // try until a reading lands exactly on the last millisecond before the epoch.
    let mut exact = false;
    for attempt in 0..EPOCH_ATTEMPTS {
        let _ = set_clock_offset(&mut connection, offset_to(EPOCH_MS - 1));
        let generator = epoch_generator(attempt);
        match one_id(&mut connection, &generator) {
            Err(text) if text.starts_with("KESTREL_CLOCK") => {
                if text.contains(&format!("reads Unix ms {}", EPOCH_MS - 1)) {
                    exact = true;
                    break;
                }
            }
            Err(text) => outcome
                .failures
                .push(format!("before the epoch got '{text}'")),
            // The clock moved on to the epoch itself: any ID then is valid, and above it.
            Ok(id) => outcome.expect(id.unix_ms() >= EPOCH_MS, || format!("{id} before epoch")),
        }
    }
    outcome.expect(exact, || {
        "never saw KESTREL_CLOCK at one ms before the epoch".into()
    });

    let _ = set_clock_offset(&mut connection, 0);
    let back = one_id(&mut connection, "edge-now");
    outcome.expect(back.is_ok(), || format!("back at the real clock: {back:?}"));
    outcome.add_findings(&checker.finish());
    let alive: redis::RedisResult<String> = redis::cmd("PING").query(&mut connection);
    outcome.expect(alive.is_ok(), || "the server stopped answering".into());
    outcome
}

/// How often [`edges`] tries to read the clock one ms before the epoch, each time with a new
/// generator.
const EPOCH_ATTEMPTS: u16 = 50;

fn epoch_generator(attempt: u16) -> String {
    format!("edge-epoch-{attempt}")
}

fn one_id(connection: &mut redis::Connection, generator: &str) -> Result<Id, String> {
    let reply: redis::RedisResult<i64> = redis::cmd("KESTREL.ID")
        .arg("GENERATOR")
        .arg(generator)
        .query(connection);
    match reply {
        Ok(value) => Id::from_i64(value).map_err(|error| error.to_string()),
        Err(error) => Err(error_reply(&error).unwrap_or_else(|| error.to_string())),
    }
}

/// The clock offset that makes the module read `target_ms` now.
fn offset_to(target_ms: u64) -> i64 {
    let target = i64::try_from(target_ms).unwrap_or(i64::MAX);
    let now = i64::try_from(unix_now_ms()).unwrap_or(0);
    target - now
}

fn format_ms(ms: u64) -> String {
    match ms {
        ms if ms >= 3_600_000 && ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms >= 1_000 && ms % 1_000 == 0 => format!("{}s", ms / 1_000),
        ms => format!("{ms}ms"),
    }
}
