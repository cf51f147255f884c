//! Access control: the ACL rules in the README give an application user exactly the kestrel
//! commands on its own generator. The generator name is the key KESTREL.ID / KESTREL.IDS /
//! KESTREL.STATUS declare (through the getkeys API), so `~<name>` governs the module, and
//! `~{<name>}-*` the script's three keys.

use kestrel_testbed::redis::{self, Value};
use kestrel_testbed::Server;

/// The README's rules for an application that owns the generator `orders`.
const APP_RULES: &[&str] = kestrel_testbed::ORDERS_APP_ACL_RULES;

fn user_connection(server: &Server, user: &str, password: &str) -> redis::Connection {
    let url = format!("redis://{user}:{password}@127.0.0.1:{}/", server.port());
    let client = redis::Client::open(url).expect("client");
    client.get_connection().expect("connection as the ACL user")
}

fn query(connection: &mut redis::Connection, args: &[&str]) -> Result<Value, String> {
    let mut command = redis::cmd(args[0]);
    for arg in &args[1..] {
        command.arg(*arg);
    }
    command.query(connection).map_err(|error| {
        format!(
            "{} {}",
            error.code().unwrap_or("?"),
            error.detail().unwrap_or("")
        )
    })
}

fn setup() -> (Server, String) {
    let server = Server::builder().module(&["shard-id", "1"]).start();
    let mut admin = server.connection();
    let mut setuser = redis::cmd("ACL");
    setuser.arg("SETUSER").arg("app");
    for rule in APP_RULES {
        setuser.arg(*rule);
    }
    let _: () = setuser.query(&mut admin).expect("ACL SETUSER app");
    // The `shard-id` option is the default generator's; `orders` gets a shard id of its own.
    let _: () = redis::cmd("SET")
        .arg("{orders}-shard-id")
        .arg(2)
        .query(&mut admin)
        .expect("SET {orders}-shard-id");
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("reader")
        .arg("on")
        .arg(">reader-secret")
        .arg("~*")
        .arg("+get")
        .query(&mut admin)
        .expect("ACL SETUSER reader");
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(kestrel_core_script())
        .query(&mut admin)
        .expect("SCRIPT LOAD");
    (server, sha)
}

fn kestrel_core_script() -> &'static str {
    include_str!("../core/src/kestrel.lua")
}

#[test]
fn the_generator_name_is_the_declared_key() {
    let (server, _) = setup();
    let mut admin = server.connection();
    let cases: [&[&str]; 4] = [
        &["KESTREL.ID", "GENERATOR", "orders"],
        &["KESTREL.ID", "FORMAT", "STRING", "GENERATOR", "orders"],
        &[
            "KESTREL.IDS",
            "5",
            "GENERATOR",
            "orders",
            "FORMAT",
            "RANGES",
        ],
        &["KESTREL.STATUS", "GENERATOR", "orders"],
    ];
    for args in cases {
        let mut getkeys = redis::cmd("COMMAND");
        getkeys.arg("GETKEYS");
        for arg in args {
            getkeys.arg(*arg);
        }

        let keys: Vec<String> = getkeys.query(&mut admin).expect("COMMAND GETKEYS");

        assert_eq!(keys, vec!["orders".to_string()], "{args:?}");
    }
}

#[test]
fn an_application_user_uses_only_its_own_generator() {
    let (server, sha) = setup();
    let mut app = user_connection(&server, "app", "app-secret");

    for args in [
        &["KESTREL.ID", "GENERATOR", "orders"][..],
        &["KESTREL.IDS", "3", "GENERATOR", "orders"],
        &["KESTREL.STATUS", "GENERATOR", "orders"],
        &["KESTREL.DECODE", "1446325212348944384"],
    ] {
        let reply = query(&mut app, args);
        assert!(reply.is_ok(), "{args:?}: {reply:?}");
    }
    let script_keys = [
        "{orders}-generator-lock",
        "{orders}-generator-sequence",
        "{orders}-shard-id",
    ];
    let mut script = vec!["EVALSHA", &sha, "3"];
    script.extend(script_keys);
    script.extend(["4095", "1", "1023", "2"]);
    let reply = query(&mut app, &script);
    assert!(reply.is_ok(), "the script on its own keys: {reply:?}");

    let refused: [&[&str]; 8] = [
        &["KESTREL.ID"],
        &["KESTREL.IDS", "3"],
        &["KESTREL.ID", "FORMAT", "STRING"],
        &["KESTREL.ID", "GENERATOR", "payments"],
        &["KESTREL.IDS", "3", "GENERATOR", "payments"],
        &["KESTREL.STATUS", "GENERATOR", "payments"],
        &["GET", "{payments}-generator-lock"],
        &["SET", "{payments}-shard-id", "9"],
    ];
    for args in refused {
        let reply = query(&mut app, args);
        assert!(
            reply.as_ref().is_err_and(|text| text.starts_with("NOPERM")),
            "{args:?} should get NOPERM, got {reply:?}"
        );
    }
    let foreign = [
        "EVALSHA",
        &sha,
        "3",
        "{payments}-generator-lock",
        "{payments}-generator-sequence",
        "{payments}-shard-id",
        "4095",
        "1",
        "1023",
        "1",
    ];
    let reply = query(&mut app, &foreign);
    assert!(
        reply.as_ref().is_err_and(|text| text.starts_with("NOPERM")),
        "the script on another generator's keys: {reply:?}"
    );
}

#[test]
fn a_user_without_the_commands_gets_noperm() {
    let (server, _) = setup();
    let mut reader = user_connection(&server, "reader", "reader-secret");

    for args in [
        &["KESTREL.ID", "GENERATOR", "orders"][..],
        &["KESTREL.IDS", "3", "GENERATOR", "orders"],
        &["KESTREL.ID"],
    ] {
        let reply = query(&mut reader, args);
        assert!(
            reply.as_ref().is_err_and(|text| text.starts_with("NOPERM")),
            "{args:?} should get NOPERM, got {reply:?}"
        );
    }
    let mut admin = server.connection();
    let lock: Option<String> = redis::cmd("GET")
        .arg("{orders}-generator-lock")
        .query(&mut admin)
        .expect("GET");
    assert_eq!(lock, None, "a refused call wrote state");
}
