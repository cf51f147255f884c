//! A replica that lags: paused with SIGSTOP while its master keeps issuing, then the master is
//! killed and the replica resumed and promoted with `REPLICAOF NO ONE`. The promoted replica
//! must continue above everything the old master handed out.

use std::thread;
use std::time::Duration;

use kestrel_testbed::{redis, Server};

use crate::check::Checker;
use crate::load::{self, LoadSpec};
use crate::{signal, Outcome};

pub fn lagging_promoted(load_time: Duration) -> Outcome {
    let mut outcome = Outcome::new("lagging replica promoted");
    let master = Server::builder().module(&["shard-id", "1"]).start();
    let replica = Server::replica_of(&master)
        .module(&["shard-id", "1"])
        .start();
    let checker = Checker::new();
    let spec = LoadSpec {
        generators: vec!["lag-a".to_string(), "lag-b".to_string()],
        connections: 8,
        // The script has no lead cap, so its lost writes are outside what a fence covers
        // (README, Guarantees); the soak mixes it in.
        script_percent: 0,
        max_count: 4096,
        duration: Duration::from_secs(120),
        target_ids: u64::MAX,
        seed: 21,
    };

    // The option's shard id (1) is the default generator's; each of these gets its own, which
    // the replica receives with the rest of the keys.
    if let Err(error) = load::set_shard_ids(&mut master.connection(), &spec.generators, 2) {
        outcome.failures.push(format!("SET the shard ids: {error}"));
        return outcome;
    }
    let running = load::start(&master.client(), &checker, &spec);
    thread::sleep(load_time / 2);
    let Some(replica_pid) = replica.pid() else {
        outcome.failures.push("the replica is not running".into());
        return outcome;
    };
    if let Err(error) = signal::pause(replica_pid) {
        outcome
            .failures
            .push(format!("SIGSTOP {replica_pid}: {error}"));
        return outcome;
    }
    let at_pause = running.ids();
    thread::sleep(load_time / 2);
    let at_kill = running.ids();
    master.kill();
    let first = running.stop();
    if let Err(error) = signal::resume(replica_pid) {
        outcome
            .failures
            .push(format!("SIGCONT {replica_pid}: {error}"));
        return outcome;
    }
    outcome.note(format!(
        "{} IDs issued by the master while the replica was paused, {} in all",
        at_kill - at_pause,
        first.ids
    ));
    outcome.expect(first.other_errors == 0, || {
        format!("errors on the master: {:?}", first.error_samples)
    });

    let mut connection = replica.connection();
    let promoted: redis::RedisResult<String> = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut connection);
    outcome.expect(promoted.is_ok(), || {
        format!("REPLICAOF NO ONE: {promoted:?}")
    });
    replica.wait_for_role("master");

    let spec = LoadSpec {
        duration: load_time,
        seed: 22,
        ..spec
    };
    let second = load::start(&replica.client(), &checker, &spec).wait();
    outcome.note(format!(
        "the promoted replica issued {} IDs ({} lead refusals)",
        second.ids, second.lead_refusals
    ));
    outcome.expect(second.ids > 0, || {
        "the promoted replica issued nothing".into()
    });
    outcome.expect(
        second.other_errors == 0 && second.broken_connections == 0,
        || format!("errors on the promoted replica: {:?}", second.error_samples),
    );
    outcome.add_findings(&checker.finish());
    outcome
}
