//! A 3 x 1 cluster: creation, a master crash, and a slot migration under traffic.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use kestrel_testbed::redis::{self, Commands, Value};
use kestrel_testbed::{Cluster, SLOT_COUNT};

fn connection_to<'a>(
    cluster: &Cluster,
    connections: &'a mut HashMap<u16, redis::Connection>,
    port: u16,
) -> &'a mut redis::Connection {
    connections
        .entry(port)
        .or_insert_with(|| cluster.node(cluster.index_of_port(port)).connection())
}

/// Runs `command` the way a cluster client would: at the node on `port`, following MOVED
/// (which changes `port`) and ASK (ASKING, then the command, on the target), retrying on
/// TRYAGAIN.
fn run_routed(
    cluster: &Cluster,
    connections: &mut HashMap<u16, redis::Connection>,
    port: &mut u16,
    command: &redis::Cmd,
) -> Value {
    for _ in 0..50 {
        let error = match command.query::<Value>(connection_to(cluster, connections, *port)) {
            Ok(value) => return value,
            Err(error) => error,
        };
        let redirect = error
            .redirect_node()
            .and_then(|(addr, _slot)| addr.rsplit(':').next()?.parse::<u16>().ok());
        match (error.code(), redirect) {
            (Some("MOVED"), Some(target)) => *port = target,
            (Some("ASK"), Some(target)) => {
                let reply: Result<Vec<Value>, _> = redis::pipe()
                    .cmd("ASKING")
                    .ignore()
                    .add_command(command.clone())
                    .query(connection_to(cluster, connections, target));
                match reply {
                    Ok(mut values) if values.len() == 1 => return values.remove(0),
                    Ok(values) => panic!("unexpected reply after ASKING: {values:?}"),
                    Err(error) if error.code() == Some("TRYAGAIN") => {
                        thread::sleep(Duration::from_millis(10))
                    }
                    Err(error) => panic!("command after ASKING failed: {error}"),
                }
            }
            (Some("TRYAGAIN"), _) => thread::sleep(Duration::from_millis(10)),
            _ => panic!("cluster command failed: {error}"),
        }
    }
    panic!("too many redirects");
}

/// Sets the flag when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[test]
fn three_masters_with_one_replica_each() {
    let cluster = Cluster::start();
    assert_eq!(cluster.nodes().len(), 6);
    let masters = cluster.master_indices();
    assert_eq!(masters.len(), 3, "masters: {masters:?}");
    for &master in &masters {
        assert_eq!(cluster.replicas_of(master).len(), 1);
    }
    let covered: usize = cluster
        .topology()
        .iter()
        .flat_map(|node| node.slots.iter())
        .map(|range| usize::from(range.end() - range.start()) + 1)
        .sum();
    assert_eq!(covered, usize::from(SLOT_COUNT));
}

#[test]
fn killed_master_is_replaced_by_its_replica() {
    let mut cluster = Cluster::start();
    let key = "{kestrel}-generator-lock";
    let owner = cluster.owner_of_key(key);
    let replica = cluster.replicas_of(owner)[0];
    let mut connection = cluster.node(owner).connection();
    let _: () = connection.set(key, 42).expect("SET on the owner");
    let acknowledged: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(5000)
        .query(&mut connection)
        .expect("WAIT");
    assert_eq!(acknowledged, 1);

    let new_owner = cluster.kill_master(owner);

    assert_eq!(new_owner, replica);
    assert_eq!(cluster.owner_of_key(key), replica);
    let value: i64 = cluster.node(replica).connection().get(key).expect("GET");
    assert_eq!(value, 42);

    cluster.restart_node(owner);
    assert_eq!(cluster.replicas_of(replica), vec![owner]);
}

#[test]
fn slot_migrates_while_traffic_runs() {
    let cluster = Cluster::start();
    let slot = cluster.slot_of("{kestrel}");
    let source = cluster.owner_of_slot(slot);
    let target = *cluster
        .master_indices()
        .iter()
        .find(|&&index| index != source)
        .expect("another master");

    let mut connection = cluster.node(source).connection();
    for i in 0..250 {
        let _: () = connection
            .set(format!("{{kestrel}}:before:{i}"), i)
            .expect("SET");
    }

    let stop = AtomicBool::new(false);
    let increments = thread::scope(|scope| {
        // Stops the writer however this closure ends: the scope waits for it even on a panic.
        let _stop_writer = StopOnDrop(&stop);
        let writer = scope.spawn(|| {
            let mut connections = HashMap::new();
            let mut port = cluster.node(source).port();
            let mut increments = 0_i64;
            while !stop.load(Ordering::Relaxed) {
                let mut incr = redis::cmd("INCR");
                incr.arg("{kestrel}-counter");
                run_routed(&cluster, &mut connections, &mut port, &incr);
                let mut set = redis::cmd("SET");
                set.arg(format!("{{kestrel}}:during:{increments}"))
                    .arg(increments);
                run_routed(&cluster, &mut connections, &mut port, &set);
                increments += 1;
            }
            increments
        });
        thread::sleep(Duration::from_millis(200));
        let migration = cluster.begin_slot_migration(slot, target);
        while migration.move_keys(25) > 0 {
            thread::sleep(Duration::from_millis(20));
        }
        thread::sleep(Duration::from_millis(200));
        migration.finish();
        thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::Relaxed);
        writer.join().expect("writer thread")
    });

    assert!(increments > 0, "no traffic ran during the migration");
    assert_eq!(cluster.owner_of_slot(slot), target);
    let mut connection = cluster.node(target).connection();
    let counter: i64 = connection.get("{kestrel}-counter").expect("GET counter");
    assert_eq!(counter, increments, "an INCR was lost or doubled");
    for i in [0, 249] {
        let value: i64 = connection
            .get(format!("{{kestrel}}:before:{i}"))
            .expect("GET");
        assert_eq!(value, i);
    }
    let last: i64 = connection
        .get(format!("{{kestrel}}:during:{}", increments - 1))
        .expect("GET");
    assert_eq!(last, increments - 1);
    let keys: Vec<String> = redis::cmd("CLUSTER")
        .arg("GETKEYSINSLOT")
        .arg(slot)
        .arg(10)
        .query(&mut cluster.node(source).connection())
        .expect("GETKEYSINSLOT");
    assert!(keys.is_empty(), "keys left on the source: {keys:?}");
}

#[test]
fn slot_range_migrates() {
    let cluster = Cluster::builder()
        .configure(|index, builder| builder.config(format!("# node {index}")))
        .start();
    let source = cluster.owner_of_slot(0);
    let target = cluster.owner_of_slot(SLOT_COUNT - 1);
    cluster.migrate_slots(0..=9, target);
    for slot in 0..=9 {
        assert_eq!(cluster.owner_of_slot(slot), target);
    }
    assert_eq!(cluster.owner_of_slot(10), source);
}
