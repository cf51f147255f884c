//! `kestrel-chaos`: runs the slow fault scenarios and prints one table row per scenario.
//!
//! ```text
//! kestrel-chaos [SCENARIO ...]          # default: every scenario
//! kestrel-chaos valgrind-wrapper <dir>  # writes <dir>/redis-server, which runs under valgrind
//! kestrel-chaos valgrind-report <dir>   # reads the logs of a test suite run under valgrind
//! ```
//!
//! Scenarios: clock, edges, restart-aof, restart-rdb, replica, oom, soak, argv, valgrind.
//! Environment: `SOAK_IDS` (default 100000000), `SOAK_SECONDS` (default 540),
//! `SOAK_CONNECTIONS` (default 16), `ARGV_COMMANDS` (default 100000), `LEAK_ROUNDS`
//! (default 200). The exit status is 1 when any scenario failed.

use std::env;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use kestrel_chaos::restart::Persistence;
use kestrel_chaos::{argv, clock, oom, replica, restart, run_guarded, soak, valgrind, Outcome};

const SCENARIOS: [&str; 9] = [
    "clock",
    "edges",
    "restart-aof",
    "restart-rdb",
    "replica",
    "oom",
    "argv",
    "valgrind",
    "soak",
];

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("valgrind-report") {
        let Some(dir) = args.get(1) else {
            eprintln!("usage: kestrel-chaos valgrind-report <folder of valgrind logs>");
            return ExitCode::FAILURE;
        };
        let outcome = valgrind::report(Path::new(dir));
        eprint!("{outcome}");
        return finish(&[outcome]);
    }
    if args.first().map(String::as_str) == Some("valgrind-wrapper") {
        let Some(dir) = args.get(1) else {
            eprintln!("usage: kestrel-chaos valgrind-wrapper <folder for the wrapper and logs>");
            return ExitCode::FAILURE;
        };
        return match valgrind::write_wrapper(Path::new(dir), Path::new(dir)) {
            Ok(wrapper) => {
                println!("{}", wrapper.display());
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("kestrel-chaos: cannot write the valgrind wrapper in {dir}: {error}");
                ExitCode::FAILURE
            }
        };
    }
    let chosen: Vec<&str> = if args.is_empty() {
        SCENARIOS.to_vec()
    } else {
        args.iter().map(String::as_str).collect()
    };
    let mut outcomes = Vec::new();
    for scenario in chosen {
        let Some(outcome) = run(scenario) else {
            eprintln!(
                "kestrel-chaos: unknown scenario '{scenario}'; choose from {}",
                SCENARIOS.join(", ")
            );
            return ExitCode::FAILURE;
        };
        // Details go to stderr as each scenario ends; the table goes to stdout at the end.
        eprint!("{outcome}");
        outcomes.push(outcome);
    }
    finish(&outcomes)
}

fn run(scenario: &str) -> Option<Outcome> {
    let seconds = |secs| Duration::from_secs(secs);
    let outcome = match scenario {
        "clock" => run_guarded(scenario, || {
            clock::steps(&[10, 1_000, 3_600_000], Duration::from_millis(1_500))
        }),
        "edges" => run_guarded(scenario, clock::edges),
        "restart-aof" => run_guarded(scenario, || restart::run(Persistence::Aof, seconds(4))),
        "restart-rdb" => run_guarded(scenario, || restart::run(Persistence::Rdb, seconds(4))),
        "replica" => run_guarded(scenario, || replica::lagging_promoted(seconds(4))),
        "oom" => run_guarded(scenario, oom::run),
        "argv" => run_guarded(scenario, || {
            argv::scenario(number("ARGV_COMMANDS", 100_000), 1)
        }),
        "valgrind" => run_guarded(scenario, || {
            valgrind::leak_per_call(number("LEAK_ROUNDS", 200))
        }),
        "soak" => run_guarded(scenario, || {
            soak::run(
                number("SOAK_IDS", 100_000_000) as u64,
                seconds(number("SOAK_SECONDS", 540) as u64),
                number("SOAK_CONNECTIONS", 16),
            )
        }),
        _ => return None,
    };
    Some(outcome)
}

fn number(variable: &str, default: usize) -> usize {
    env::var(variable)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn finish(outcomes: &[Outcome]) -> ExitCode {
    for outcome in outcomes {
        println!("{}", outcome.row());
    }
    if outcomes.iter().all(Outcome::passed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
