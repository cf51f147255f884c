//! A master and a replica.

use kestrel_testbed::redis::Commands;
use kestrel_testbed::{wait_for, Server, REPLICATION_TIMEOUT};

#[test]
fn replica_follows_its_master() {
    let master = Server::start();
    let replica = Server::replica_of(&master).start();

    assert_eq!(
        replica
            .info_field("replication", "master_link_status")
            .as_deref(),
        Some("up")
    );
    assert_eq!(
        replica.info_field("replication", "master_port").as_deref(),
        Some(master.port().to_string().as_str())
    );
    master.wait_for_replicas(1);

    let _: () = master.connection().set("k", "v").expect("SET on master");
    wait_for(
        REPLICATION_TIMEOUT,
        "the key to reach the replica",
        || {
            let value: Option<String> = replica.connection().get("k").map_err(|e| e.to_string())?;
            value
                .filter(|v| v == "v")
                .ok_or("not there yet".to_string())
        },
        || replica.log_tail(20),
    );
}

#[test]
fn replica_of_a_password_protected_master() {
    let master = Server::builder().password("pw").start();
    let replica = Server::replica_of(&master).password("pw").start();
    replica.wait_for_role("slave");
    let _: () = master.connection().set("k", 1).expect("SET");
    master.wait_for_replicas(1);
}
