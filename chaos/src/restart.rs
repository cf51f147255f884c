//! kill -9 under load, restart from the AOF (`appendfsync everysec`) or from a dump, and
//! generate again with the clock set back by the configured fence: no duplicate across both.

use std::thread;
use std::time::{Duration, Instant};

use kestrel_testbed::{redis, test_clock_module_path, wait_for, Server};

use crate::check::Checker;
use crate::load::{self, LoadSpec};
use crate::Outcome;

/// What the server persists before it is killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// `appendonly yes`, `appendfsync everysec`: loses up to about a second.
    Aof,
    /// A dump taken part-way, then more IDs: loses everything after the dump.
    Rdb,
}

/// The `fence-ms` the server runs with, and how far its clock is set back at the restart.
pub const FENCE_MS: u64 = 1_000;

pub fn run(persistence: Persistence, load_time: Duration) -> Outcome {
    let name = match persistence {
        Persistence::Aof => "kill -9, restart from AOF",
        Persistence::Rdb => "kill -9, restart from RDB",
    };
    let mut outcome = Outcome::new(name);
    let fence = FENCE_MS.to_string();
    let builder = Server::builder().module_file(
        test_clock_module_path(),
        &["shard-id", "1", "fence-ms", &fence],
    );
    let builder = match persistence {
        Persistence::Aof => builder
            .config("appendonly yes")
            .config("appendfsync everysec"),
        Persistence::Rdb => builder,
    };
    let mut server = builder.start();
    let checker = Checker::new();
    let spec = LoadSpec {
        generators: vec!["restart-a".to_string(), "restart-b".to_string()],
        connections: 12,
        script_percent: 0,
        max_count: 4096,
        duration: Duration::from_secs(120),
        target_ids: u64::MAX,
        seed: 11,
    };

    // The option's shard id (1) is the default generator's; each of these gets its own.
    if let Err(error) = load::set_shard_ids(&mut server.connection(), &spec.generators, 2) {
        outcome.failures.push(format!("SET the shard ids: {error}"));
        return outcome;
    }
    let running = load::start(&server.client(), &checker, &spec);
    if persistence == Persistence::Rdb {
        thread::sleep(load_time / 2);
        dump(&server);
        thread::sleep(load_time / 2);
    } else {
        thread::sleep(load_time);
    }
    let before_kill = running.ids();
    server.kill();
    let first = running.stop();
    outcome.note(format!(
        "before kill: {} IDs in {} calls from {} connections",
        before_kill, first.calls, spec.connections
    ));
    outcome.expect(first.other_errors == 0, || {
        format!("errors before the kill: {:?}", first.error_samples)
    });

    // The new process's clock is behind the old one's by the whole fence.
    let offset = format!("-{FENCE_MS}");
    server.restart_with(|lines| {
        for line in lines
            .iter_mut()
            .filter(|line| line.starts_with("loadmodule"))
        {
            line.push_str(&format!(" clock-offset-ms {offset}"));
        }
    });
    let mut connection = server.connection();
    let fences = crate::kestrel_counter(&mut connection, "fences").unwrap_or(0);
    outcome.note(format!("after restart: {fences} generators fenced at load"));

    let spec = LoadSpec {
        duration: load_time + Duration::from_millis(FENCE_MS),
        seed: 12,
        ..spec
    };
    let started = Instant::now();
    let second = load::start(&server.client(), &checker, &spec).wait();
    outcome.note(format!(
        "after restart: {} IDs in {} calls over {:?}, {} lead refusals while the clock caught \
         up with the fence",
        second.ids,
        second.calls,
        started.elapsed(),
        second.lead_refusals
    ));
    outcome.expect(second.ids > 0, || "no ID issued after the restart".into());
    outcome.expect(
        second.other_errors == 0 && second.broken_connections == 0,
        || format!("errors after the restart: {:?}", second.error_samples),
    );
    outcome.add_findings(&checker.finish());
    outcome
}

/// BGSAVE, and wait until it is on disk.
fn dump(server: &Server) {
    let mut connection = server.connection();
    let _: redis::RedisResult<String> = redis::cmd("BGSAVE").query(&mut connection);
    wait_for(
        Duration::from_secs(30),
        "the background save to finish",
        || {
            let info = server.info("persistence");
            let done = info.contains("rdb_bgsave_in_progress:0")
                && info.contains("rdb_last_bgsave_status:ok")
                && !info.contains("rdb_last_save_time:0\r");
            if done {
                Ok(())
            } else {
                Err(info)
            }
        },
        || server.log_tail(30),
    );
}
