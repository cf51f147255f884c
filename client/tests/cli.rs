//! The `kestrel` tool against a real server: output forms, one-line errors, exit statuses.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use kestrel_testbed::{free_port, redis, Server};

fn kestrel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kestrel"))
        .args(args)
        .env_clear()
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn ids_come_out_in_each_format() {
    let server = Server::builder().module(&["shard-id", "3"]).start();
    let url = format!("redis://127.0.0.1:{}", server.port());

    let one = kestrel(&["--url", &url, "id"]);
    let lines = kestrel(&["--url", &url, "ids", "5"]);
    let json = kestrel(&["--url", &url, "ids", "3", "--format", "json"]);
    let setup = kestrel(&["--url", &url, "setup"]);
    let status = kestrel(&["--url", &url, "status"]);

    assert!(one.status.success());
    assert!(stdout(&one).trim().parse::<u64>().is_ok());
    assert_eq!(stdout(&lines).lines().count(), 5);
    let json = stdout(&json);
    assert!(
        json.starts_with("[\"") && json.trim_end().ends_with("\"]"),
        "{json}"
    );
    assert!(stdout(&setup).contains("module"), "{}", stdout(&setup));
    let status = stdout(&status);
    assert!(
        status.contains("master") && status.contains("module"),
        "{status}"
    );
}

#[test]
fn failures_are_one_line_with_exit_status_one_and_bad_arguments_two() {
    let refused = kestrel(&["--url", &format!("redis://127.0.0.1:{}", free_port()), "id"]);
    let bad_id = kestrel(&["decode", "not-an-id"]);
    let bad_flag = kestrel(&["ids", "five"]);
    let decoded = kestrel(&["decode", "1446325212348944384", "--json"]);

    assert_eq!(refused.status.code(), Some(1));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(message.contains("connection refused"), "{message}");
    assert_eq!(bad_id.status.code(), Some(2));
    assert_eq!(bad_flag.status.code(), Some(2));
    assert!(stdout(&decoded).contains("\"shard_id\":1"));
}

#[test]
fn every_bad_argument_is_a_usage_error_naming_the_argument() {
    let cases: [(&[&str], &str); 10] = [
        (&["ids", "0"], "<COUNT>"),
        (&["ids", "abc"], "<COUNT>"),
        (&["ids", "-1"], "<COUNT>"),
        (&["decode", "abc"], "not an ID"),
        (&["decode", "-1"], "not an ID"),
        (&["decode", "1446325212348944384", "-5"], "not an ID"),
        (&["--shard-id", "5000", "id"], "--shard-id"),
        (&["--generator", "a{b", "id"], "--generator"),
        (&["id", "--shard-id", "0"], "--shard-id"),
        (&["bench", "--batch", "0"], "--batch"),
    ];
    for (args, named) in cases {
        let output = kestrel(args);
        let message = stderr(&output);

        assert_eq!(output.status.code(), Some(2), "{args:?}: {message}");
        assert!(message.contains(named), "{args:?}: {message}");
        assert!(!message.contains("KESTREL_SHARD_ID"), "{args:?}: {message}");
    }
}

#[test]
fn bench_in_a_pipe_has_no_colours_or_progress_bar_and_leaves_the_generator_alone() {
    let server = Server::start();
    let url = format!("redis://127.0.0.1:{}", server.port());

    let bench = kestrel(&["--url", &url, "bench", "--seconds", "0.1", "--batch", "10"]);

    let message = stderr(&bench);
    assert!(bench.status.success(), "{message}");
    assert!(message.contains("script only"), "{message}");
    assert!(
        !message.contains('\x1b'),
        "ANSI escape in a pipe: {message:?}"
    );
    assert!(
        !message.contains('\r'),
        "progress bar in a pipe: {message:?}"
    );
    assert!(stdout(&bench).contains("script"), "{}", stdout(&bench));
    let mut connection = server.connection();
    let default_keys: Vec<String> = redis::cmd("KEYS")
        .arg("{kestrel}-*")
        .query(&mut connection)
        .unwrap();
    let bench_keys: Vec<String> = redis::cmd("KEYS")
        .arg("{kestrel-bench-script}-*")
        .query(&mut connection)
        .unwrap();
    assert!(default_keys.is_empty(), "{default_keys:?}");
    assert!(!bench_keys.is_empty());
}

#[test]
fn a_wait_beyond_the_failover_timeout_gives_up_at_once() {
    let server = Server::builder().module(&["shard-id", "1"]).start();
    let url = format!("redis://127.0.0.1:{}", server.port());
    let mut connection = server.connection();
    let (seconds, _): (u64, u64) = redis::cmd("TIME").query(&mut connection).unwrap();
    // A generator whose state was written by a server an hour ahead.
    redis::pipe()
        .cmd("SET")
        .arg("{kestrel}-shard-id")
        .arg(1)
        .cmd("SET")
        .arg("{kestrel}-generator-lock")
        .arg(seconds * 1000 + 3_600_000)
        .exec(&mut connection)
        .unwrap();

    let started = Instant::now();
    let output = kestrel(&["--url", &url, "id"]);

    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{message}");
    assert!(started.elapsed() < Duration::from_secs(3), "{message}");
    assert!(message.contains("gave up at once"), "{message}");
    assert!(message.contains("KESTREL_LEAD"), "{message}");
}

#[test]
fn an_acl_user_without_the_default_generator_hears_about_the_generator() {
    let server = Server::builder().module(&["shard-id", "2"]).start();
    let mut admin = server.connection();
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg("orders-app")
        .arg(kestrel_testbed::ORDERS_APP_ACL_RULES)
        .exec(&mut admin)
        .unwrap();
    let url = format!("redis://orders-app:app-secret@127.0.0.1:{}", server.port());

    let default = kestrel(&["--url", &url, "id"]);
    let orders = kestrel(&["--url", &url, "--generator", "orders", "id"]);

    let message = stderr(&default);
    assert_eq!(default.status.code(), Some(1), "{message}");
    assert!(message.contains("NOPERM"), "{message}");
    assert!(message.contains("\"kestrel\""), "{message}");
    assert!(
        !message.to_lowercase().contains("command|info"),
        "{message}"
    );
    assert!(orders.status.success(), "{}", stderr(&orders));
    assert!(stdout(&orders).trim().parse::<u64>().is_ok());
}
