//! Redis Cluster, three masters and three replicas: one generator per master under its own
//! shard id, and IDs without duplicates while a master dies and while slots migrate.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use kestrel_client::{Address, ErrorKind, Kestrel, Path, PlanEntry};
use kestrel_testbed::{redis, Cluster};
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

fn plan(kestrel: &Kestrel) -> Vec<PlanEntry> {
    block_on(kestrel.plan()).unwrap()
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
    let cluster = start(|_| true);
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

    // Move the first generator's slot, keys and all, to another master.
    let moving = &entries[0];
    let slot = cluster.slot_of(&moving.generator);
    let from = cluster.owner_of_slot(slot);
    let to = cluster
        .master_indices()
        .into_iter()
        .find(|&index| index != from)
        .unwrap();
    cluster.migrate_slot(slot, to);
    let run = generator.finish(Duration::from_secs(2));

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
