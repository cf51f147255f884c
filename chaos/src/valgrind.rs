//! redis-server with the module under valgrind: no invalid memory access, and no memory lost
//! per call (the leak summary after N calls equals the one after 10 N calls).
//!
//! Debian's redis-server allocates through jemalloc (a shared libjemalloc.so.2), which valgrind
//! does not see into: on its own it would report nothing for the module, whose allocations all
//! go through Redis. `--soname-synonyms=somalloc=libjemalloc.so*` makes valgrind replace
//! jemalloc's malloc/free like libc's, so every allocation, the module's included, is tracked.
//!
//! Known false positives inside redis-server itself are suppressed with `chaos/valgrind.sup`
//! (read that file for why each entry is there); everything else valgrind reports fails.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kestrel_testbed::{redis, server_binary, Server};

use crate::Outcome;

/// Suppressions for known false positives in redis-server (not in the module).
pub const SUPPRESSIONS: &str = include_str!("../valgrind.sup");

/// Writes an executable `redis-server` wrapper into `dir` that runs the real server under
/// valgrind, one log per process in `log_dir` (`valgrind.<pid>.log`), with [`SUPPRESSIONS`]
/// written next to it.
pub fn write_wrapper(dir: &Path, log_dir: &Path) -> std::io::Result<PathBuf> {
    let wrapper = dir.join("redis-server");
    let suppressions = dir.join("redis-known.supp");
    fs::write(&suppressions, SUPPRESSIONS)?;
    let script = format!(
        "#!/bin/sh\nexec valgrind --leak-check=full --show-leak-kinds=definite,indirect \
         --errors-for-leak-kinds=definite --soname-synonyms=somalloc=libjemalloc.so* \
         --suppressions={} --log-file={}/valgrind.%p.log {} \"$@\"\n",
        suppressions.display(),
        log_dir.display(),
        server_binary().display()
    );
    fs::write(&wrapper, script)?;
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755))?;
    Ok(wrapper)
}

/// The numbers of one valgrind log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub errors: u64,
    pub definitely_lost: u64,
    pub indirectly_lost: u64,
    pub possibly_lost: u64,
    /// Whether the log has a leak summary (the process exited, not killed with SIGKILL).
    pub has_leak_summary: bool,
    /// Error or leak records with a stack frame in the module (`kestrel`, `redis_module`).
    pub module_records: u64,
    /// Errors matched by the suppressions (`ERROR SUMMARY: ... (suppressed: N from ...)`).
    pub suppressed: u64,
}

/// The records of a valgrind log that carry a stack (errors and shown leaks), each as its
/// lines without the `==<pid>== ` prefix.
fn stack_records(log: &str) -> Vec<Vec<&str>> {
    let mut records = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    for line in log.lines() {
        let body = match line.strip_prefix("==") {
            Some(rest) => rest.split_once("== ").map_or("", |(_, body)| body),
            None => line,
        };
        if body.trim().is_empty() {
            if current.iter().any(|line| is_frame(line)) {
                records.push(std::mem::take(&mut current));
            }
            current.clear();
        } else {
            current.push(body);
        }
    }
    if current.iter().any(|line| is_frame(line)) {
        records.push(current);
    }
    records
}

fn is_frame(line: &str) -> bool {
    let line = line.trim_start();
    line.starts_with("at 0x") || line.starts_with("by 0x")
}

fn in_module(record: &[&str]) -> bool {
    record
        .iter()
        .any(|line| is_frame(line) && (line.contains("kestrel") || line.contains("redis_module")))
}

/// The first record with a stack in the module if any, else the first one, for a failure
/// message.
fn first_stack(log: &str) -> Option<String> {
    let records = stack_records(log);
    let record = records
        .iter()
        .find(|record| in_module(record))
        .or_else(|| records.first())?;
    Some(
        record
            .iter()
            .take(24)
            .copied()
            .collect::<Vec<_>>()
            .join("\n        "),
    )
}

/// Reads a valgrind log.
pub fn summarise(log: &str) -> Summary {
    let bytes_after = |marker: &str| -> u64 {
        log.lines()
            .find_map(|line| line.split_once(marker).map(|(_, rest)| rest))
            .and_then(|rest| rest.split_whitespace().next())
            .map(|number| number.replace(',', ""))
            .and_then(|number| number.parse().ok())
            .unwrap_or(0)
    };
    let module_records = stack_records(log)
        .iter()
        .filter(|record| in_module(record))
        .count() as u64;
    let suppressed = log
        .lines()
        .filter(|line| line.contains("ERROR SUMMARY: "))
        .find_map(|line| line.split_once("(suppressed: "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|number| number.replace(',', "").parse().ok())
        .unwrap_or(0);
    Summary {
        errors: bytes_after("ERROR SUMMARY: "),
        definitely_lost: bytes_after("definitely lost: "),
        indirectly_lost: bytes_after("indirectly lost: "),
        possibly_lost: bytes_after("possibly lost: "),
        has_leak_summary: log.contains("LEAK SUMMARY")
            || log.contains("All heap blocks were freed"),
        module_records,
        suppressed,
    }
}

/// Runs the same mix of calls `calls` and `10 * calls` times on two servers under valgrind and
/// compares what each lost.
pub fn leak_per_call(calls: usize) -> Outcome {
    let mut outcome = Outcome::new("valgrind, leak per call");
    let mut summaries = Vec::new();
    for rounds in [calls, calls * 10] {
        match run_under_valgrind(rounds) {
            Ok((summary, ids)) => {
                outcome.ids_checked += ids;
                outcome.note(format!("{rounds} rounds: {summary:?}"));
                summaries.push(summary);
            }
            Err(problem) => {
                outcome.failures.push(problem);
                return outcome;
            }
        }
    }
    let (few, many) = (&summaries[0], &summaries[1]);
    outcome.expect(few.has_leak_summary && many.has_leak_summary, || {
        "valgrind wrote no leak summary".into()
    });
    outcome.expect(few.errors == 0 && many.errors == 0, || {
        format!(
            "valgrind reported errors: {} and {}",
            few.errors, many.errors
        )
    });
    let lost = |summary: &Summary| summary.definitely_lost + summary.indirectly_lost;
    outcome.expect(lost(many) <= lost(few), || {
        format!(
            "memory lost grows with calls: {} bytes after {calls} rounds, {} after {}",
            lost(few),
            lost(many),
            calls * 10
        )
    });
    outcome.expect(many.module_records == 0, || {
        format!(
            "{} valgrind records point into the module",
            many.module_records
        )
    });
    outcome
}

fn run_under_valgrind(rounds: usize) -> Result<(Summary, u64), String> {
    let dir = tempdir()?;
    let wrapper = write_wrapper(&dir, &dir).map_err(|error| error.to_string())?;
    let server = Server::builder()
        .binary(&wrapper)
        // A wide lead cap: the rounds run faster than 4096 IDs per millisecond. No reservation
        // window: each script call after a mark write would jump it, and the rounds would
        // drift an hour ahead.
        .module(&["shard-id", "1", "lead-cap-ms", "3600000", "reserve-ms", "0"])
        .start_timeout(Duration::from_secs(180))
        .start();
    let mut connection = server.connection();
    let _ = connection.set_read_timeout(Some(Duration::from_secs(60)));
    let sha = crate::load::load_script(&mut connection).map_err(|error| error.to_string())?;
    // The option's shard id (1) is the default generator's; each of these gets its own.
    for index in 0..LEAK_GENERATORS {
        crate::load::set_shard_id(&mut connection, &leak_generator(index), leak_shard(index))
            .map_err(|error| error.to_string())?;
    }
    let mut ids = 0;
    for round in 0..rounds {
        ids += mix(&mut connection, &sha, round).map_err(|error| error.to_string())?;
    }
    server.stop();
    let mut summary = Summary::default();
    for entry in fs::read_dir(&dir)
        .map_err(|error| error.to_string())?
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("valgrind.") {
            let log = fs::read_to_string(entry.path()).map_err(|error| error.to_string())?;
            summary = summarise(&log);
        }
    }
    let _ = fs::remove_dir_all(&dir);
    Ok((summary, ids))
}

/// The generators the rounds take turns on, and the shard id of the first; the others follow.
const LEAK_GENERATORS: usize = 4;
const FIRST_LEAK_SHARD: u16 = 2;

fn leak_generator(index: usize) -> String {
    format!("leak-{index}")
}

fn leak_shard(index: usize) -> u16 {
    FIRST_LEAK_SHARD + u16::try_from(index).unwrap_or(0)
}

/// One round of every kind of call, successes and failures; returns the IDs issued.
fn mix(connection: &mut redis::Connection, sha: &str, round: usize) -> redis::RedisResult<u64> {
    let index = round % LEAK_GENERATORS;
    let generator = leak_generator(index);
    let id: i64 = redis::cmd("KESTREL.ID")
        .arg("GENERATOR")
        .arg(&generator)
        .query(connection)?;
    let _: Vec<String> = redis::cmd("KESTREL.IDS")
        .arg(20)
        .arg("GENERATOR")
        .arg(&generator)
        .arg("FORMAT")
        .arg("STRING")
        .query(connection)?;
    let ranges = crate::load::module_ranges(connection, &generator, 5000)?;
    let _: redis::Value = redis::cmd("KESTREL.DECODE")
        .arg(id)
        .arg(id + 1)
        .query(connection)?;
    let _: redis::Value = redis::cmd("KESTREL.STATUS")
        .arg("GENERATOR")
        .arg(&generator)
        .query(connection)?;
    let script = crate::load::script_ranges(connection, sha, &generator, 10)?;
    for refused in [
        redis::cmd("KESTREL.IDS").arg(0).clone(),
        redis::cmd("KESTREL.ID")
            .arg("GENERATOR")
            .arg("{bad")
            .clone(),
        redis::cmd("KESTREL.ID").arg("FORMAT").arg("RANGES").clone(),
        redis::cmd("KESTREL.DECODE").arg("-5").clone(),
    ] {
        let _: redis::RedisResult<redis::Value> = refused.query(connection);
    }
    // Someone else writes the keys (the same shard id again): the module reads them again on
    // the next call.
    crate::load::set_shard_id(connection, &generator, leak_shard(index))?;
    let issued: u64 = ranges.iter().chain(&script).map(|range| range.count).sum();
    Ok(issued + 21)
}

/// Reads every valgrind log in `dir` (from running a test suite with the wrapper as the server
/// binary): errors and anything pointing into the module fail.
pub fn report(dir: &Path) -> Outcome {
    let mut outcome = Outcome::new("valgrind, integration suite");
    let Ok(entries) = fs::read_dir(dir) else {
        outcome
            .failures
            .push(format!("no valgrind logs in {}", dir.display()));
        return outcome;
    };
    let (mut logs, mut errors, mut module_records, mut summaries) = (0, 0, 0, 0);
    let mut suppressed = 0;
    for entry in entries.flatten() {
        // Only the logs: the folder also holds the wrapper and its suppressions.
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("valgrind.") && name.ends_with(".log")) {
            continue;
        }
        let Ok(log) = fs::read_to_string(entry.path()) else {
            continue;
        };
        let summary = summarise(&log);
        logs += 1;
        errors += summary.errors;
        module_records += summary.module_records;
        suppressed += summary.suppressed;
        summaries += u64::from(summary.has_leak_summary);
        if summary.errors > 0 || summary.module_records > 0 {
            let stack = first_stack(&log).unwrap_or_else(|| "(no stack in the log)".into());
            outcome.failures.push(format!(
                "{}: {} errors, {} records in the module; first:\n        {stack}",
                entry.path().display(),
                summary.errors,
                summary.module_records
            ));
        }
    }
    outcome.note(format!(
        "{logs} server processes under valgrind, {errors} errors, {module_records} records in \
         the module, {suppressed} known Redis errors suppressed (chaos/valgrind.sup); \
         {summaries} exited with a leak summary (the rest were killed with SIGKILL by the \
         testbed, which leaves none)"
    ));
    outcome.expect(logs > 0, || "no server ran under valgrind".into());
    outcome
}

fn tempdir() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!(
        "kestrel-valgrind-{}-{}",
        std::process::id(),
        crate::unix_now_ms()
    ));
    fs::create_dir_all(&dir).map_err(|error| error.to_string())?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LZF: &str = "==7== Command: /usr/bin/redis-server /tmp/kestrel-server-x/server.conf
==7== 
==7== Conditional jump or move depends on uninitialised value(s)
==7==    at 0x1849B3: lzf_compress (in /usr/bin/redis-check-rdb)
==7==    by 0x1AA5F5: rdbSaveLzfStringObject (in /usr/bin/redis-check-rdb)
==7== 
==7== LEAK SUMMARY:
==7== ERROR SUMMARY: 35 errors from 1 contexts (suppressed: 2 from 1)
";

    #[test]
    fn an_error_in_redis_is_not_in_the_module() {
        let summary = summarise(LZF);
        assert_eq!((summary.errors, summary.suppressed), (35, 2));
        assert_eq!(summary.module_records, 0);
        assert!(first_stack(LZF)
            .unwrap()
            .contains("at 0x1849B3: lzf_compress"));
    }

    #[test]
    fn a_module_frame_below_the_top_counts() {
        let log = "==7== Invalid read of size 8
==7==    at 0x4C3: memcpy (in /usr/libexec/valgrind/vgpreload_memcheck-amd64-linux.so)
==7==    by 0x5D1: kestrel::command::ids (in /work/main/target/release/libkestrel.so)
==7== 
==7== ERROR SUMMARY: 1 errors from 1 contexts (suppressed: 0 from 0)
";
        assert_eq!(summarise(log).module_records, 1);
        assert!(first_stack(log).unwrap().contains("libkestrel.so"));
    }
}
