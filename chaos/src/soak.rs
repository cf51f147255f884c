//! A soak: many connections mixing module and script calls on a few generators until a target
//! number of IDs, every one checked for uniqueness and per-generator order by the range
//! checker, whose memory holds only the ranges in flight.

use std::time::{Duration, Instant};

use kestrel_testbed::Server;

use crate::check::Checker;
use crate::load::{self, LoadSpec};
use crate::Outcome;

pub fn run(target_ids: u64, time_limit: Duration, connections: usize) -> Outcome {
    let mut outcome = Outcome::new("soak, module + script");
    // A short reservation window keeps the script (which continues above the module's mark)
    // close to the clock; the lead cap stays at its default.
    let server = Server::builder()
        .module(&["shard-id", "1", "reserve-ms", "50"])
        .start();
    let generators: Vec<String> = (0..4).map(|index| format!("soak-{index}")).collect();
    // Four shard ids of their own, apart from the option's (1), which is the default
    // generator's.
    if let Err(error) = load::set_shard_ids(&mut server.connection(), &generators, 2) {
        outcome.failures.push(format!("SET the shard ids: {error}"));
        return outcome;
    }
    let checker = Checker::new();
    let spec = LoadSpec {
        generators,
        connections,
        script_percent: 10,
        max_count: 12_000,
        duration: time_limit,
        target_ids,
        seed: 42,
    };
    let started = Instant::now();
    let report = load::start(&server.client(), &checker, &spec).wait();
    let elapsed = started.elapsed();
    let findings = checker.finish();

    outcome.note(format!(
        "{} IDs in {} calls over {:.1?} ({:.1} M IDs/s) from {connections} connections on 4 \
         generators, ~10% of calls through the script; {} lead refusals (retried); checker held \
         at most {} ranges at once",
        report.ids,
        report.calls,
        elapsed,
        report.ids as f64 / elapsed.as_secs_f64() / 1e6,
        report.lead_refusals,
        findings.peak_pending
    ));
    outcome.add_findings(&findings);
    outcome.expect(findings.ids >= target_ids, || {
        format!(
            "only {} of {target_ids} IDs within {time_limit:?}",
            findings.ids
        )
    });
    outcome.expect(
        report.other_errors == 0 && report.broken_connections == 0 && report.bad_lead_refusals == 0,
        || {
            format!(
                "{} errors, {} broken connections: {:?}",
                report.other_errors, report.broken_connections, report.error_samples
            )
        },
    );
    outcome.expect(server.is_running(), || "the server died".into());
    outcome
}
