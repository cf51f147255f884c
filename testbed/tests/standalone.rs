//! A single server: start, talk, kill, stop, restart with persistence, and cleanup on drop.

use std::path::Path;

use kestrel_testbed::redis::{self, Commands};
use kestrel_testbed::Server;

fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn starts_on_loopback_and_answers() {
    let server = Server::start();
    let mut connection = server.connection();

    let pong: String = redis::cmd("PING").query(&mut connection).expect("PING");
    assert_eq!(pong, "PONG");
    let _: () = connection.set("greeting", "hello").expect("SET");
    let value: String = connection.get("greeting").expect("GET");
    assert_eq!(value, "hello");

    let bind: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("bind")
        .query(&mut connection)
        .expect("CONFIG GET bind");
    assert_eq!(bind[1], "127.0.0.1");
    assert!(server.dir().is_dir());
    assert!(
        server.log_path().is_file(),
        "no log at {:?}",
        server.log_path()
    );
    assert_eq!(
        server.info_field("server", "tcp_port").as_deref(),
        Some(server.port().to_string().as_str())
    );
    assert!(server.pid().is_some());
}

#[test]
fn drop_kills_and_reaps_the_process_and_removes_the_folder() {
    let server = Server::start();
    let pid = server.pid().expect("running");
    let dir = server.dir().to_path_buf();
    assert!(process_exists(pid));
    drop(server);
    assert!(!process_exists(pid), "process {pid} survived the drop");
    assert!(!dir.exists(), "folder {dir:?} survived the drop");
}

#[test]
fn drop_during_a_panic_still_kills_the_process() {
    let (sender, receiver) = std::sync::mpsc::channel();
    let outcome = std::thread::spawn(move || {
        let server = Server::start();
        sender
            .send(server.pid().expect("running"))
            .expect("send pid");
        panic!("deliberate panic with a running server");
    })
    .join();
    assert!(outcome.is_err());
    let pid = receiver.recv().expect("pid");
    assert!(
        !process_exists(pid),
        "process {pid} survived a panicking test"
    );
}

#[test]
fn kill_leaves_the_server_down_until_restart() {
    let mut server = Server::start();
    let first_pid = server.pid().expect("running");
    server.kill();
    assert!(!server.is_running());
    assert_eq!(server.pid(), None);
    assert!(server.try_connection().is_err());

    server.restart();
    let second_pid = server.pid().expect("running again");
    assert_ne!(first_pid, second_pid);
    let pong: String = redis::cmd("PING")
        .query(&mut server.connection())
        .expect("PING");
    assert_eq!(pong, "PONG");
}

#[test]
fn appendonly_data_survives_a_kill() {
    let mut server = Server::builder()
        .config("appendonly yes")
        .config("appendfsync always")
        .start();
    let port = server.port();
    let mut connection = server.connection();
    for i in 0..100 {
        let _: () = connection.set(format!("key:{i}"), i).expect("SET");
    }
    drop(connection);

    server.kill();
    server.restart();

    assert_eq!(server.port(), port);
    let mut connection = server.connection();
    let value: i64 = connection.get("key:99").expect("GET");
    assert_eq!(value, 99);
    let size: i64 = redis::cmd("DBSIZE").query(&mut connection).expect("DBSIZE");
    assert_eq!(size, 100);
}

#[test]
fn rdb_is_written_on_stop_and_loaded_on_restart() {
    let mut server = Server::builder().config("save 3600 1").start();
    let _: () = server.connection().set("kept", "yes").expect("SET");

    let status = server.stop().expect("it was running");
    assert!(status.success(), "SIGTERM shutdown exited with {status}");
    assert!(server.dir().join("dump.rdb").is_file());

    server.restart();
    let value: String = server.connection().get("kept").expect("GET");
    assert_eq!(value, "yes");
}

#[test]
fn restart_with_changes_the_config_and_keeps_the_change() {
    let mut server = Server::builder()
        .config("maxmemory-policy allkeys-lru")
        .start();
    server.restart_with(|lines| {
        lines.retain(|line| !line.starts_with("maxmemory-policy"));
        lines.push("maxmemory-policy volatile-ttl".to_string());
    });
    let policy = |server: &Server| -> String {
        let reply: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy")
            .query(&mut server.connection())
            .expect("CONFIG GET");
        reply[1].clone()
    };
    assert_eq!(policy(&server), "volatile-ttl");
    server.restart();
    assert_eq!(policy(&server), "volatile-ttl");
    server.restart_without_module();
    assert!(server
        .config_lines()
        .iter()
        .all(|line| !line.starts_with("loadmodule")));
}

#[test]
fn password_protected_server_accepts_the_testbed_connection() {
    let server = Server::builder().password("s3cret pass").start();
    assert_eq!(server.password().as_deref(), Some("s3cret pass"));
    let pong: String = redis::cmd("PING")
        .query(&mut server.connection())
        .expect("authenticated PING");
    assert_eq!(pong, "PONG");

    let anonymous = redis::Client::open(server.url()).expect("client");
    let mut anonymous = anonymous.get_connection().expect("connect");
    let denied = redis::cmd("PING").query::<String>(&mut anonymous);
    assert!(denied.is_err(), "a connection without password was served");
}

#[test]
fn a_config_error_fails_with_the_server_output() {
    let outcome = std::thread::spawn(|| {
        Server::builder()
            .config("no-such-directive yes")
            .start_timeout(std::time::Duration::from_secs(5))
            .start();
    })
    .join();
    let message = match outcome {
        Ok(()) => panic!("a server with a bad config started"),
        Err(payload) => payload
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default(),
    };
    assert!(message.contains("failed to start"), "message: {message}");
    assert!(message.contains("no-such-directive"), "message: {message}");
}
