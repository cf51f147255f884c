//! One master, one replica, three sentinels: a requested failover and a crashed master.

use kestrel_testbed::redis::Commands;
use kestrel_testbed::SentinelTopology;

#[test]
fn requested_failover_promotes_the_replica() {
    let topology = SentinelTopology::start();
    assert_eq!(topology.sentinels().len(), 3);
    let old_master = topology.master();
    assert_eq!(old_master.port(), topology.servers()[0].port());
    let _: () = old_master.connection().set("before", 1).expect("SET");
    old_master.wait_for_replicas(1);

    let new_master = topology.failover();

    assert_eq!(new_master.port(), topology.servers()[1].port());
    let value: i64 = new_master.connection().get("before").expect("GET");
    assert_eq!(value, 1);
    let _: () = new_master
        .connection()
        .set("after", 2)
        .expect("SET on new master");
    for sentinel in topology.sentinels() {
        assert_eq!(
            sentinel.master_port(topology.master_name()),
            Ok(new_master.port())
        );
    }
}

#[test]
fn killed_master_is_replaced() {
    let topology = SentinelTopology::start();
    let replica_port = topology.servers()[1].port();

    let old_port = topology.kill_master();
    let new_master = topology.wait_for_new_master(old_port);

    assert_eq!(new_master.port(), replica_port);
    assert!(!topology.server_on(old_port).is_running());
    let _: () = new_master
        .connection()
        .set("k", "v")
        .expect("SET on new master");
}
