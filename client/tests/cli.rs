//! The `kestrel` tool against a real server: output forms, one-line errors, exit statuses.

use std::process::{Command, Output};

use kestrel_testbed::{free_port, Server};

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
fn failures_are_one_line_with_exit_status_one_and_bad_flags_two() {
    let refused = kestrel(&["--url", &format!("redis://127.0.0.1:{}", free_port()), "id"]);
    let bad_id = kestrel(&["decode", "not-an-id"]);
    let bad_flag = kestrel(&["ids", "five"]);
    let decoded = kestrel(&["decode", "1446325212348944384", "--json"]);

    assert_eq!(refused.status.code(), Some(1));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(message.contains("connection refused"), "{message}");
    assert_eq!(bad_id.status.code(), Some(1));
    assert_eq!(bad_flag.status.code(), Some(2));
    assert!(stdout(&decoded).contains("\"shard_id\":1"));
}
