//! `maxmemory` reached: the module and the script fail with Redis's own OOM error and leave
//! every state key as it was; once memory is freed they continue above what they issued.

use kestrel_testbed::{redis, Server};

use crate::check::Checker;
use crate::load::{self, error_reply, script_keys};
use crate::Outcome;

const JUNK_VALUE_BYTES: usize = 16 * 1024;
const JUNK_KEYS: usize = 512;

pub fn run() -> Outcome {
    let mut outcome = Outcome::new("maxmemory reached");
    let server = Server::builder()
        .module(&["shard-id", "1"])
        .config("maxmemory-policy noeviction")
        .start();
    let mut connection = server.connection();
    let checker = Checker::new();
    let module_stream = checker.stream("oom");
    let script_stream = checker.stream("oom-script");
    let sha = load::load_script(&mut connection).unwrap_or_default();
    // Each generator has a shard id of its own; the option's (1) is the default generator's.
    let generators = ["oom", "oom-script", "oom-new"].map(String::from);
    if let Err(error) = load::set_shard_ids(&mut connection, &generators, 2) {
        outcome.failures.push(format!("SET the shard ids: {error}"));
        return outcome;
    }

    let before = load::module_ranges(&mut connection, "oom", 100);
    let before_script = load::script_ranges(&mut connection, &sha, "oom-script", 10);
    match (&before, &before_script) {
        (Ok(module), Ok(script)) => {
            module_stream.record(module);
            script_stream.record(script);
        }
        _ => {
            outcome
                .failures
                .push(format!("before OOM: {before:?} {before_script:?}"));
            return outcome;
        }
    }
    let keys_before = state(&mut connection, &["oom", "oom-script", "oom-new"]);

    // Fill 8 MB, then set maxmemory well below: every denied-on-OOM command is refused (right
    // at the limit, small commands still slip through, which proves nothing).
    let junk = vec![b'x'; JUNK_VALUE_BYTES];
    let filled = JUNK_KEYS;
    for index in 0..filled {
        let _: redis::RedisResult<()> = redis::cmd("SET")
            .arg(format!("junk:{index}"))
            .arg(&junk)
            .query(&mut connection);
    }
    let limited: redis::RedisResult<()> = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("4mb")
        .query(&mut connection);
    outcome.expect(limited.is_ok(), || {
        format!("CONFIG SET maxmemory: {limited:?}")
    });
    outcome.note(format!(
        "{filled} keys of {JUNK_VALUE_BYTES} bytes, then maxmemory 4mb (noeviction)"
    ));

    let attempts = [
        (
            "KESTREL.ID on a generator in memory",
            one_module(&mut connection, "oom", 1),
        ),
        (
            "KESTREL.IDS 5000 in memory",
            one_module(&mut connection, "oom", 5000),
        ),
        (
            "KESTREL.ID on a new generator",
            one_module(&mut connection, "oom-new", 1),
        ),
        (
            "the script",
            one_script(&mut connection, &sha, "oom-script"),
        ),
    ];
    for (what, got) in attempts {
        outcome.expect(
            got.as_ref().is_err_and(|text| text.starts_with("OOM")),
            || format!("{what} under maxmemory got {got:?}, not Redis's OOM error"),
        );
    }
    let keys_during = state(&mut connection, &["oom", "oom-script", "oom-new"]);
    outcome.expect(keys_during == keys_before, || {
        format!("state keys changed under OOM: {keys_before:?} -> {keys_during:?}")
    });
    let status: redis::RedisResult<redis::Value> = redis::cmd("KESTREL.STATUS")
        .arg("GENERATOR")
        .arg("oom")
        .query(&mut connection);
    outcome.expect(status.is_ok(), || {
        format!("KESTREL.STATUS under OOM: {status:?}")
    });

    // Free the memory: both continue above what they issued.
    for index in 0..filled {
        let _: redis::RedisResult<i64> = redis::cmd("DEL")
            .arg(format!("junk:{index}"))
            .query(&mut connection);
    }
    match load::module_ranges(&mut connection, "oom", 100) {
        Ok(ranges) => module_stream.record(&ranges),
        Err(error) => outcome
            .failures
            .push(format!("after freeing memory: {error}")),
    }
    match load::script_ranges(&mut connection, &sha, "oom-script", 10) {
        Ok(ranges) => script_stream.record(&ranges),
        Err(error) => outcome
            .failures
            .push(format!("script after freeing memory: {error}")),
    }
    drop((module_stream, script_stream));
    outcome.add_findings(&checker.finish());
    outcome
}

fn one_module(
    connection: &mut redis::Connection,
    generator: &str,
    count: u64,
) -> Result<(), String> {
    load::module_ranges(connection, generator, count)
        .map(|_| ())
        .map_err(|error| error_reply(&error).unwrap_or_else(|| error.to_string()))
}

fn one_script(
    connection: &mut redis::Connection,
    sha: &str,
    generator: &str,
) -> Result<(), String> {
    load::script_ranges(connection, sha, generator, 10)
        .map(|_| ())
        .map_err(|error| error_reply(&error).unwrap_or_else(|| error.to_string()))
}

/// Every state key of the generators, as stored now.
fn state(connection: &mut redis::Connection, generators: &[&str]) -> Vec<Option<String>> {
    generators
        .iter()
        .flat_map(|generator| script_keys(generator))
        .map(|key| redis::cmd("GET").arg(key).query(connection).unwrap_or(None))
        .collect()
}
