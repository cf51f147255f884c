//! Redis Cluster, three masters and three replicas: one generator per master under its own
//! shard id, and IDs without duplicates while a master dies and while slots migrate.

mod support;

use std::collections::HashSet;
use std::ops::RangeInclusive;
use std::time::Duration;

use kestrel_client::{Address, ErrorKind, Event, Kestrel, Path, PlanEntry};
use kestrel_testbed::{redis, wait_for, Cluster, Server};
use support::{block_on, config, Generator};

fn start(module_on: fn(usize) -> bool) -> Cluster {
    Cluster::builder()
        .masters(3)
        .replicas_per_master(1)
        .configure(move |index, builder| {
            if module_on(index) {
                builder.module(&[])
            } else {
                builder
            }
        })
        .start()
}

fn connect(cluster: &Cluster) -> Kestrel {
    let seeds = cluster
        .nodes()
        .iter()
        .map(|node| Address::new("127.0.0.1", node.port()))
        .collect();
    block_on(Kestrel::connect(config().cluster(seeds).build().unwrap())).unwrap()
}

/// The client's plan, waiting out a cluster that briefly answers CLUSTERDOWN.
fn plan(kestrel: &Kestrel) -> Vec<PlanEntry> {
    wait_for(
        Duration::from_secs(30),
        "the client's plan",
        || block_on(kestrel.plan()).map_err(|error| error.to_string()),
        String::new,
    )
}

fn master_ports(cluster: &Cluster) -> HashSet<u16> {
    cluster
        .master_indices()
        .into_iter()
        .map(|index| cluster.node(index).port())
        .collect()
}

#[test]
fn setup_gives_every_master_its_own_generator_and_shard_id() {
    let cluster = start(|_| true);
    let kestrel = connect(&cluster);
    let entries = plan(&kestrel);

    let ports: HashSet<u16> = entries.iter().map(|entry| entry.address.port).collect();
    let shards: HashSet<u16> = entries.iter().map(|entry| entry.shard_id.get()).collect();
    assert_eq!(ports, master_ports(&cluster));
    assert_eq!(shards.len(), 3, "{entries:?}");
    for entry in &entries {
        let owner = cluster.owner_of_key(&entry.generator);
        assert_eq!(cluster.node(owner).port(), entry.address.port);
        let stored: String = redis::cmd("GET")
            .arg(format!("{{{}}}-shard-id", entry.generator))
            .query(&mut cluster.node(owner).connection())
            .unwrap();
        assert_eq!(stored, entry.shard_id.to_string());
        assert_eq!(entry.path, Path::Module);
    }

    // Every master serves: IDs under all three shard ids. A second client plans the same.
    let mut seen = HashSet::new();
    for _ in 0..30 {
        for id in block_on(kestrel.get_ids(100)).unwrap() {
            assert!(seen.insert(id));
        }
    }
    let shards_in_ids: HashSet<u16> = seen.iter().map(|id| id.shard_id()).collect();
    assert_eq!(shards_in_ids, shards);
    assert_eq!(plan(&connect(&cluster)), entries);

    // Two generators claiming one shard id would make the same IDs: refused.
    let (first, second) = (&entries[0], &entries[1]);
    let owner = cluster.owner_of_key(&second.generator);
    redis::cmd("SET")
        .arg(format!("{{{}}}-shard-id", second.generator))
        .arg(first.shard_id.get())
        .exec(&mut cluster.node(owner).connection())
        .unwrap();
    let seeds = vec![Address::new("127.0.0.1", cluster.node(owner).port())];
    let refused = block_on(Kestrel::connect(config().cluster(seeds).build().unwrap()));
    let error = refused.err().unwrap();
    assert_eq!(error.kind(), ErrorKind::Shard);
    assert!(error.to_string().contains("both claim shard id"), "{error}");
}

#[test]
fn ids_keep_coming_while_a_master_is_killed() {
    kill_a_master(|_| true);
}

#[test]
fn script_ids_keep_coming_while_a_master_is_killed() {
    kill_a_master(|_| false);
}

fn kill_a_master(module_on: fn(usize) -> bool) {
    let cluster = start(module_on);
    let kestrel = connect(&cluster);
    let victim = cluster.master_indices()[0];
    let generator = Generator::start(kestrel.clone());
    std::thread::sleep(Duration::from_millis(500));

    let promoted = cluster.kill_master(victim);
    let run = generator.finish(Duration::from_secs(3));

    run.assert_clean();
    assert_eq!(run.shard_ids().len(), 3, "every generator served");
    let ports: HashSet<u16> = plan(&kestrel)
        .iter()
        .map(|entry| entry.address.port)
        .collect();
    assert!(
        ports.contains(&cluster.node(promoted).port()),
        "the promoted replica is planned"
    );
}

#[test]
fn ids_keep_coming_while_slots_migrate() {
    let cluster = start(|_| true);
    let kestrel = connect(&cluster);
    let entries = plan(&kestrel);
    let generator = Generator::start(kestrel.clone());
    std::thread::sleep(Duration::from_millis(500));

    // Move the first generator's slot to another master step by step: once its keys are on
    // the importing node, the source answers ASK and the client asks there.
    let moving = &entries[0];
    let slot = cluster.slot_of(&moving.generator);
    let from = cluster.owner_of_slot(slot);
    let to = cluster
        .master_indices()
        .into_iter()
        .find(|&index| index != from)
        .unwrap();
    let migration = cluster.begin_slot_migration(slot, to);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(migration.move_all_keys(), 3, "the generator's three keys");
    std::thread::sleep(Duration::from_millis(500));
    migration.finish();
    std::thread::sleep(Duration::from_millis(500));

    // And back in one go: both modules have served this generator by now.
    cluster.migrate_slot(slot, from);
    let run = generator.finish(Duration::from_secs(1));

    let ask_retries = run
        .events
        .iter()
        .filter(|event| matches!(event, Event::Reconnecting { reason } if reason.contains("ASK")))
        .count();
    assert_eq!(ask_retries, 0, "ASK redirects are followed, not retried");
    run.assert_clean();
    let after = plan(&kestrel);
    let shards: HashSet<u16> = after.iter().map(|entry| entry.shard_id.get()).collect();
    assert_eq!(after.len(), 3);
    assert_eq!(shards.len(), 3, "{after:?}");
}

#[test]
fn a_cluster_with_the_module_on_some_nodes_uses_both_paths() {
    // Nodes 0..3 start as masters; the module goes on master 0 and every replica.
    let cluster = start(|index| index == 0 || index >= 3);
    let kestrel = connect(&cluster);
    let entries = plan(&kestrel);
    let paths: HashSet<Path> = entries.iter().map(|entry| entry.path).collect();

    assert_eq!(
        paths,
        HashSet::from([Path::Module, Path::Script]),
        "{entries:?}"
    );
    let run = Generator::start(kestrel).finish(Duration::from_secs(1));
    run.assert_clean();
    assert_eq!(run.shard_ids().len(), 3);
}

/// `CLUSTER <args>` on one node.
fn cluster_command(node: &Server, args: &[&str]) -> redis::Value {
    redis::cmd("CLUSTER")
        .arg(args)
        .query(&mut node.connection())
        .unwrap()
}

/// Moves `slots` (keys and all) from master `from` to the server `to`, and tells every
/// master and `to` the new owner.
fn move_slots(
    cluster: &Cluster,
    masters: &[usize],
    slots: RangeInclusive<u16>,
    from: usize,
    to: &Server,
) {
    let source = cluster.node(from);
    let to_id: String = redis::cmd("CLUSTER")
        .arg("MYID")
        .query(&mut to.connection())
        .unwrap();
    let from_id = cluster.node_id(from).to_owned();
    for slot in slots {
        let slot = slot.to_string();
        cluster_command(to, &["SETSLOT", &slot, "IMPORTING", &from_id]);
        cluster_command(source, &["SETSLOT", &slot, "MIGRATING", &to_id]);
        let keys: Vec<String> = redis::cmd("CLUSTER")
            .arg(&["GETKEYSINSLOT", &slot, "1000"])
            .query(&mut source.connection())
            .unwrap();
        if !keys.is_empty() {
            redis::cmd("MIGRATE")
                .arg(&["127.0.0.1", &to.port().to_string(), "", "0", "5000", "KEYS"])
                .arg(&keys)
                .exec(&mut source.connection())
                .unwrap();
        }
        cluster_command(to, &["SETSLOT", &slot, "NODE", &to_id]);
        for &master in masters {
            cluster_command(cluster.node(master), &["SETSLOT", &slot, "NODE", &to_id]);
        }
    }
}

#[test]
fn a_master_added_later_gets_its_own_generator() {
    let cluster = start(|_| true);
    let seeds = vec![Address::new("127.0.0.1", cluster.node(0).port())];
    let config = config()
        .cluster(seeds)
        .topology_refresh(Duration::from_millis(500))
        .build()
        .unwrap();
    let kestrel = block_on(Kestrel::connect(config)).unwrap();
    let generator = Generator::start(kestrel.clone());

    // A fourth master joins and takes 200 slots from the owner of slot 0.
    let masters = cluster.master_indices();
    let owner = cluster.owner_of_slot(0);
    let newcomer = Server::builder().cluster_enabled().module(&[]).start();
    cluster_command(
        cluster.node(0),
        &["MEET", "127.0.0.1", &newcomer.port().to_string()],
    );
    let everyone: Vec<&Server> = cluster.nodes().iter().chain([&newcomer]).collect();
    wait_for(
        Duration::from_secs(30),
        "every node to know every other node",
        || {
            for node in &everyone {
                let text: String = redis::cmd("CLUSTER")
                    .arg("NODES")
                    .query(&mut node.connection())
                    .map_err(|error| error.to_string())?;
                let known = text
                    .lines()
                    .filter(|line| !line.contains("handshake"))
                    .count();
                if known < everyone.len() {
                    return Err(format!("{} knows {known} nodes", node.port()));
                }
            }
            Ok(())
        },
        String::new,
    );
    move_slots(&cluster, &masters, 0..=199, owner, &newcomer);
    let joined = wait_for(
        Duration::from_secs(30),
        "the client to plan a generator on the new master",
        || {
            // The cluster can answer CLUSTERDOWN while the nodes agree on the new owner.
            let entries = block_on(kestrel.plan()).map_err(|error| error.to_string())?;
            match entries
                .iter()
                .find(|entry| entry.address.port == newcomer.port())
            {
                Some(entry) => Ok(entry.clone()),
                None => Err(format!("{entries:?}")),
            }
        },
        String::new,
    );
    let run = generator.finish(Duration::from_secs(1));

    run.assert_clean();
    assert!(cluster.slot_of(&joined.generator) <= 199);
    let shards: HashSet<u16> = plan(&kestrel)
        .iter()
        .map(|entry| entry.shard_id.get())
        .collect();
    assert_eq!(shards.len(), 4);
    assert!(run.shard_ids().contains(&joined.shard_id.get()));
}
