//! Sentinel: one master, one replica, three sentinels. IDs keep coming while the master
//! changes, every call returns, and no ID appears twice.

mod support;

use std::time::Duration;

use kestrel_client::{Address, Config, Event, Kestrel};
use kestrel_testbed::SentinelTopology;
use support::{block_on, config, Generator};

/// The script variant also runs with `requirepass` on the data nodes.
const PASSWORD: &str = "s3cret";

fn start(with_module: bool) -> SentinelTopology {
    SentinelTopology::builder()
        .replicas(1)
        .sentinels(3, 2)
        .configure(move |_, builder| {
            if with_module {
                builder.module(&[])
            } else {
                builder.password(PASSWORD)
            }
        })
        .start()
}

fn client_config(topology: &SentinelTopology, with_module: bool) -> Config {
    let sentinels = topology
        .sentinels()
        .iter()
        .map(|sentinel| Address::new("127.0.0.1", sentinel.port()))
        .collect();
    let builder = config().sentinel(sentinels, topology.master_name());
    let builder = if with_module {
        builder
    } else {
        builder.password(PASSWORD)
    };
    builder.build().unwrap()
}

fn failover_then_sigkill(with_module: bool) {
    let topology = start(with_module);
    let kestrel = block_on(Kestrel::connect(client_config(&topology, with_module))).unwrap();
    let generator = Generator::start(kestrel);
    std::thread::sleep(Duration::from_millis(500));

    // A planned failover, then the new master killed outright.
    topology.failover();
    std::thread::sleep(Duration::from_secs(1));
    let killed = topology.kill_master();
    topology.wait_for_new_master(killed);
    let run = generator.finish(Duration::from_secs(2));

    run.assert_clean();
    assert!(run.ids.len() > 1_000, "only {} IDs", run.ids.len());
    let masters: Vec<&Event> = run
        .events
        .iter()
        .filter(|event| matches!(event, Event::NewMaster { .. }))
        .collect();
    assert!(
        masters.len() >= 2,
        "expected two new masters, saw {masters:?}"
    );
}

#[test]
fn module_ids_survive_failover_and_sigkill_of_the_master() {
    failover_then_sigkill(true);
}

#[test]
fn script_ids_with_a_password_survive_failover_and_sigkill_of_the_master() {
    failover_then_sigkill(false);
}
