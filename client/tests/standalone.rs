//! One real server: credentials, ACL, module and script paths, shard set-up.

mod support;

use std::collections::HashSet;

use kestrel_client::{Address, ErrorKind, Event, Kestrel, Path};
use kestrel_testbed::{free_port, redis, Server};
use support::{block_on, config};

fn address(server: &Server) -> Address {
    Address::new("127.0.0.1", server.port())
}

/// Two clients of one server: one that uses the module, one held to the script.
fn module_and_script_clients(server: &Server) -> (Kestrel, Kestrel) {
    let connect = |script_only| {
        let config = config().port(server.port()).script_only(script_only);
        block_on(Kestrel::connect(config.build().unwrap())).unwrap()
    };
    (connect(false), connect(true))
}

#[test]
fn requirepass_server_tells_bad_credentials_from_other_failures() {
    let server = Server::builder().password("s3cret").module(&[]).start();
    let url = |password: &str| format!("redis://:{password}@127.0.0.1:{}", server.port());

    let wrong = block_on(Kestrel::connect(config().url(url("nope")).build().unwrap()));
    let missing = block_on(Kestrel::connect(
        config()
            .url(format!("redis://127.0.0.1:{}", server.port()))
            .build()
            .unwrap(),
    ));
    let refused = block_on(Kestrel::connect(
        config().port(free_port()).build().unwrap(),
    ));
    let unknown = block_on(Kestrel::connect(
        config().host("no-such-host.invalid").build().unwrap(),
    ));

    assert_eq!(wrong.err().map(|error| error.kind()), Some(ErrorKind::Auth));
    assert_eq!(
        missing.err().map(|error| error.kind()),
        Some(ErrorKind::Auth)
    );
    assert_eq!(
        refused.err().map(|error| error.kind()),
        Some(ErrorKind::ConnectionRefused)
    );
    assert_eq!(
        unknown.err().map(|error| error.kind()),
        Some(ErrorKind::UnknownHost)
    );

    let kestrel = block_on(Kestrel::connect(
        config().url(url("s3cret")).shard_id(4).build().unwrap(),
    ))
    .unwrap();
    let ids = block_on(kestrel.get_ids(10_000)).unwrap();
    let plan = block_on(kestrel.plan()).unwrap();

    assert_eq!(plan[0].path, Path::Module);
    assert_eq!(ids.len(), 10_000);
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
    assert!(ids.iter().all(|id| id.shard_id() == 4));
}

#[test]
fn acl_user_limited_to_kestrel_commands_gets_ids() {
    let server = Server::builder().module(&["shard-id", "9"]).start();
    let mut admin = server.connection();
    redis::cmd("ACL")
        .arg(&[
            "SETUSER",
            "idgen",
            "on",
            ">idgen-pass",
            "~*",
            "-@all",
            "+kestrel.id",
            "+kestrel.ids",
            "+kestrel.status",
            "+kestrel.decode",
        ])
        .exec(&mut admin)
        .unwrap();

    let kestrel = block_on(Kestrel::connect(
        config()
            .port(server.port())
            .username("idgen")
            .password("idgen-pass")
            .build()
            .unwrap(),
    ))
    .unwrap();
    let single = block_on(kestrel.get_id()).unwrap();
    let many = block_on(kestrel.get_ids(5_000)).unwrap();
    let plan = block_on(kestrel.plan()).unwrap();

    assert_eq!(plan[0].path, Path::Module);
    assert_eq!(plan[0].shard_id.get(), 9);
    assert_eq!(single.shard_id(), 9);
    assert!(many.iter().all(|id| *id > single));
    assert_eq!(many.iter().collect::<HashSet<_>>().len(), 5_000);
}

#[test]
fn script_path_reloads_the_script_after_a_flush() {
    let server = Server::start();
    let kestrel = block_on(Kestrel::connect(
        config().port(server.port()).build().unwrap(),
    ))
    .unwrap();
    let mut events = kestrel.events();

    let first = block_on(kestrel.get_ids(4_097)).unwrap();
    redis::cmd("SCRIPT")
        .arg("FLUSH")
        .exec(&mut server.connection())
        .unwrap();
    let second = block_on(kestrel.get_id()).unwrap();
    let plan = block_on(kestrel.plan()).unwrap();

    assert_eq!(plan[0].path, Path::Script);
    assert_eq!(first.len(), 4_097);
    assert!(first.windows(2).all(|pair| pair[0] < pair[1]));
    assert!(second > first[4_096]);
    let mut loads = 0;
    while let Ok(event) = events.try_recv() {
        loads += usize::from(matches!(event, Event::ScriptLoaded { .. }));
    }
    assert_eq!(
        loads, 2,
        "loaded once at first use and once after the flush"
    );
}

#[test]
fn module_and_script_share_one_generator_without_duplicates() {
    let server = Server::builder().module(&[]).start();
    let (module, script) = module_and_script_clients(&server);

    let mut seen = HashSet::new();
    for round in 0..20 {
        let client = if round % 2 == 0 { &module } else { &script };
        for id in block_on(client.get_ids(round % 7 + 1)).unwrap() {
            assert!(seen.insert(id), "{id} twice");
        }
    }
}

#[test]
fn a_different_stored_shard_id_is_refused_not_overwritten() {
    let server = Server::start();
    let mut admin = server.connection();
    redis::cmd("SET")
        .arg("{kestrel}-shard-id")
        .arg(2)
        .exec(&mut admin)
        .unwrap();

    let refused = block_on(Kestrel::connect(
        config()
            .url(format!("redis://{}", address(&server)))
            .shard_id(5)
            .build()
            .unwrap(),
    ));
    let accepted = block_on(Kestrel::connect(
        config().port(server.port()).build().unwrap(),
    ))
    .unwrap();
    let stored: String = redis::cmd("GET")
        .arg("{kestrel}-shard-id")
        .query(&mut admin)
        .unwrap();

    assert_eq!(
        refused.err().map(|error| error.kind()),
        Some(ErrorKind::Shard)
    );
    assert_eq!(block_on(accepted.get_id()).unwrap().shard_id(), 2);
    assert_eq!(stored, "2");
}

#[test]
fn a_restart_without_the_module_moves_the_client_to_the_script() {
    let mut server = Server::builder()
        .module(&[])
        .config("appendonly yes")
        .config("appendfsync always")
        .start();
    let kestrel = block_on(Kestrel::connect(
        config().port(server.port()).build().unwrap(),
    ))
    .unwrap();
    let before = block_on(kestrel.get_ids(1_000)).unwrap();
    assert_eq!(block_on(kestrel.plan()).unwrap()[0].path, Path::Module);

    server.restart_without_module();
    let after = block_on(kestrel.get_ids(1_000)).unwrap();

    assert_eq!(block_on(kestrel.plan()).unwrap()[0].path, Path::Script);
    assert!(after[0] > before[999], "{} after {}", after[0], before[999]);
}

#[test]
fn ids_stay_above_those_handed_out_when_a_server_loses_its_last_writes() {
    let server = Server::start();
    let mut admin = server.connection();
    let kestrel = block_on(Kestrel::connect(
        config().port(server.port()).build().unwrap(),
    ))
    .unwrap();

    // Push the generator two seconds ahead of the clock, take IDs there, then lose the state
    // (as a replica promoted before it saw the last writes would) and break the connection.
    let (seconds, _): (u64, u64) = redis::cmd("TIME").query(&mut admin).unwrap();
    redis::cmd("SET")
        .arg("{kestrel}-generator-lock")
        .arg(seconds * 1000 + 2_000)
        .exec(&mut admin)
        .unwrap();
    let before = block_on(kestrel.get_ids(100)).unwrap();
    redis::cmd("DEL")
        .arg("{kestrel}-generator-lock")
        .arg("{kestrel}-generator-sequence")
        .exec(&mut admin)
        .unwrap();
    redis::cmd("CLIENT")
        .arg(&["KILL", "TYPE", "normal", "SKIPME", "yes"])
        .exec(&mut admin)
        .unwrap();
    let after = block_on(kestrel.get_ids(100)).unwrap();

    assert!(after[0] > before[99], "{} after {}", after[0], before[99]);
}

#[test]
fn concurrent_callers_on_one_client_never_share_an_id() {
    let server = Server::builder().module(&[]).start();
    let (kestrel, script) = module_and_script_clients(&server);

    let ids = block_on(async {
        let mut tasks = Vec::new();
        for task in 0..8 {
            let client = if task % 2 == 0 {
                kestrel.clone()
            } else {
                script.clone()
            };
            tasks.push(tokio::spawn(async move {
                let mut ids = Vec::new();
                for call in 0..300 {
                    if call % 2 == 0 {
                        ids.push(client.get_id().await.unwrap());
                    } else {
                        ids.extend(client.get_ids(10).await.unwrap());
                    }
                }
                ids
            }));
        }
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.unwrap());
        }
        all
    });

    assert_eq!(ids.len(), 8 * (150 + 150 * 10));
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len());
}
