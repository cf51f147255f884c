//! A Redis Cluster on 127.0.0.1: N masters with M replicas each, created with
//! `redis-cli --cluster create`.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::process::tail;
use crate::server::{
    cli_binary, info_value, is_replica_role, server_binary, Server, ServerBuilder,
};
use crate::wait::{wait_for, POLL_INTERVAL};

/// Number of hash slots in a Redis Cluster.
pub const SLOT_COUNT: u16 = 16384;

/// How long the cluster gets to agree on its state: after creation, a failover or a
/// migration.
pub const CLUSTER_TIMEOUT: Duration = Duration::from_secs(60);

/// How long `redis-cli --cluster create` may run.
const CREATE_TIMEOUT: Duration = Duration::from_secs(90);

/// Keys moved per MIGRATE call.
const MIGRATE_BATCH: usize = 100;

/// What all nodes must agree on: slot range start -> owner port, and node port -> the master
/// id it replicates (`None` for a master).
type Agreement = (BTreeMap<u16, u16>, BTreeMap<u16, Option<String>>);

/// Customises the nodes of a cluster; see [`ClusterBuilder::configure`].
type ConfigureNode = Box<dyn Fn(usize, ServerBuilder) -> ServerBuilder>;

/// One line of `CLUSTER NODES`: a node as some node of the cluster sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterNodeView {
    /// The node id.
    pub id: String,
    /// The client port (all nodes are on 127.0.0.1).
    pub port: u16,
    /// Flags such as `myself`, `master`, `slave`, `fail?`, `fail`.
    pub flags: Vec<String>,
    /// For a replica, the id of its master.
    pub master_id: Option<String>,
    /// Whether the cluster bus link is connected.
    pub connected: bool,
    /// Slot ranges served (importing/migrating markers are left out).
    pub slots: Vec<RangeInclusive<u16>>,
}

impl ClusterNodeView {
    /// Whether the node is flagged `master`.
    pub fn is_master(&self) -> bool {
        self.flags.iter().any(|flag| flag == "master")
    }

    /// Whether the node is flagged `fail` or `fail?`.
    pub fn is_failing(&self) -> bool {
        self.flags
            .iter()
            .any(|flag| flag == "fail" || flag == "fail?")
    }

    /// Whether the node serves `slot`.
    pub fn serves(&self, slot: u16) -> bool {
        self.slots.iter().any(|range| range.contains(&slot))
    }
}

/// Parses the text of `CLUSTER NODES`.
pub fn parse_cluster_nodes(text: &str) -> Result<Vec<ClusterNodeView>, String> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(parse_cluster_node)
        .collect()
}

fn parse_cluster_node(line: &str) -> Result<ClusterNodeView, String> {
    let bad = || format!("unexpected CLUSTER NODES line: {line:?}");
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() < 8 {
        return Err(bad());
    }
    // 127.0.0.1:30001@40001 or 127.0.0.1:30001@40001,hostname
    let address = fields[1].split(['@', ',']).next().ok_or_else(bad)?;
    let port = address
        .rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .ok_or_else(bad)?;
    let mut slots = Vec::new();
    for entry in &fields[8..] {
        if entry.starts_with('[') {
            continue;
        }
        let range = match entry.split_once('-') {
            Some((start, end)) => {
                let start = start.parse().map_err(|_| bad())?;
                let end = end.parse().map_err(|_| bad())?;
                start..=end
            }
            None => {
                let slot = entry.parse().map_err(|_| bad())?;
                slot..=slot
            }
        };
        slots.push(range);
    }
    Ok(ClusterNodeView {
        id: fields[0].to_string(),
        port,
        flags: fields[2].split(',').map(str::to_string).collect(),
        master_id: (fields[3] != "-").then(|| fields[3].to_string()),
        connected: fields[7] == "connected",
        slots,
    })
}

/// Configures and starts a [`Cluster`]. Get one from [`Cluster::builder`].
pub struct ClusterBuilder {
    masters: usize,
    replicas_per_master: usize,
    node_timeout: Duration,
    binary: Option<PathBuf>,
    configure: Option<ConfigureNode>,
}

impl ClusterBuilder {
    /// Number of masters (default 3, at least 3).
    pub fn masters(mut self, count: usize) -> ClusterBuilder {
        self.masters = count;
        self
    }

    /// Replicas for each master (default 1).
    pub fn replicas_per_master(mut self, count: usize) -> ClusterBuilder {
        self.replicas_per_master = count;
        self
    }

    /// `cluster-node-timeout` (default 2 s): how soon an unreachable master is failed over.
    pub fn node_timeout(mut self, timeout: Duration) -> ClusterBuilder {
        self.node_timeout = timeout;
        self
    }

    /// Server binary for every node (default: as [`Server::builder`]).
    pub fn binary(mut self, path: impl Into<PathBuf>) -> ClusterBuilder {
        self.binary = Some(path.into());
        self
    }

    /// Customises each node before it starts: `configure(index, builder)`. Nodes
    /// `0..masters` are handed to `redis-cli` first and become the masters; the rest become
    /// replicas (which master each one follows is up to redis-cli: see
    /// [`Cluster::replicas_of`]). Use it to load the module on some nodes only.
    pub fn configure(
        mut self,
        configure: impl Fn(usize, ServerBuilder) -> ServerBuilder + 'static,
    ) -> ClusterBuilder {
        self.configure = Some(Box::new(configure));
        self
    }

    /// Starts the nodes, creates the cluster, and waits until every node reports
    /// `cluster_state:ok`, all slots are covered, every node knows every other node, the
    /// replicas are in sync and all nodes agree on who serves which slot.
    pub fn start(self) -> Cluster {
        assert!(
            self.masters >= 3,
            "kestrel-testbed: redis-cli needs at least 3 masters to create a cluster"
        );
        let binary = self.binary.clone().unwrap_or_else(server_binary);
        let total = self.masters * (1 + self.replicas_per_master);
        let nodes: Vec<Server> = (0..total)
            .map(|index| {
                let builder = Server::builder()
                    .binary(&binary)
                    .cluster_enabled()
                    .config(format!(
                        "cluster-node-timeout {}",
                        self.node_timeout.as_millis()
                    ))
                    .config("cluster-replica-validity-factor 0");
                match &self.configure {
                    Some(configure) => configure(index, builder),
                    None => builder,
                }
                .start()
            })
            .collect();

        create_cluster(&binary, &nodes, self.replicas_per_master);
        let ids = nodes.iter().map(node_id).collect();
        let cluster = Cluster { nodes, ids };
        cluster.wait_until_stable();
        cluster
    }
}

/// Runs `redis-cli --cluster create` over all nodes, with a deadline.
fn create_cluster(binary: &std::path::Path, nodes: &[Server], replicas: usize) {
    let cli = cli_binary(binary);
    let output_path = nodes[0].dir().join("cluster-create.log");
    let output = File::create(&output_path).unwrap_or_else(|err| {
        panic!(
            "kestrel-testbed: cannot create {}: {err}",
            output_path.display()
        )
    });
    let output_err = output
        .try_clone()
        .unwrap_or_else(|err| panic!("kestrel-testbed: cannot duplicate a file handle: {err}"));
    let mut command = Command::new(&cli);
    command.arg("--cluster").arg("create");
    command.args(nodes.iter().map(Server::addr));
    command
        .arg("--cluster-replicas")
        .arg(replicas.to_string())
        .arg("--cluster-yes")
        .stdin(Stdio::null())
        .stdout(output)
        .stderr(output_err);
    if let Some(password) = nodes[0].password() {
        command.env("REDISCLI_AUTH", &password);
        command.env("VALKEYCLI_AUTH", &password);
    }
    let mut child = command.spawn().unwrap_or_else(|err| {
        panic!(
            "kestrel-testbed: cannot run {}: {err}. Install redis-tools with scripts/deps.sh",
            cli.display()
        )
    });
    let deadline = Instant::now() + CREATE_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(POLL_INTERVAL),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "kestrel-testbed: `{} --cluster create` did not finish within \
                     {CREATE_TIMEOUT:?}; it was killed. Its output:\n{}",
                    cli.display(),
                    tail(&output_path, 40)
                );
            }
        }
    };
    if !status.success() {
        panic!(
            "kestrel-testbed: `{} --cluster create` failed with {status}. Its output:\n{}",
            cli.display(),
            tail(&output_path, 40)
        );
    }
}

fn node_id(node: &Server) -> String {
    let mut connection = node.connection();
    match redis::cmd("CLUSTER").arg("MYID").query(&mut connection) {
        Ok(id) => id,
        Err(err) => panic!(
            "kestrel-testbed: CLUSTER MYID failed on {}: {err}",
            node.addr()
        ),
    }
}

/// A Redis Cluster on 127.0.0.1. Every node is killed on drop.
pub struct Cluster {
    nodes: Vec<Server>,
    /// Node ids, by node index; they survive restarts (nodes.conf stays in the node's folder).
    ids: Vec<String>,
}

impl Cluster {
    /// A builder: 3 masters with 1 replica each, node timeout 2 s.
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder {
            masters: 3,
            replicas_per_master: 1,
            node_timeout: Duration::from_secs(2),
            binary: None,
            configure: None,
        }
    }

    /// Starts a 3 x 1 cluster with the defaults.
    pub fn start() -> Cluster {
        Cluster::builder().start()
    }

    /// All nodes, by index (see [`ClusterBuilder::configure`]).
    pub fn nodes(&self) -> &[Server] {
        &self.nodes
    }

    /// One node.
    pub fn node(&self, index: usize) -> &Server {
        &self.nodes[index]
    }

    /// One node, e.g. to restart it; follow with [`Cluster::wait_until_stable`].
    pub fn node_mut(&mut self, index: usize) -> &mut Server {
        &mut self.nodes[index]
    }

    /// The cluster node id of a node.
    pub fn node_id(&self, index: usize) -> &str {
        &self.ids[index]
    }

    /// The index of the node on `port`.
    ///
    /// # Panics
    ///
    /// When no node of this cluster has that port.
    pub fn index_of_port(&self, port: u16) -> usize {
        self.nodes
            .iter()
            .position(|node| node.port() == port)
            .unwrap_or_else(|| panic!("kestrel-testbed: no node of this cluster on port {port}"))
    }

    /// `redis://127.0.0.1:<port>/` of every node, as seeds for a cluster client.
    pub fn seed_urls(&self) -> Vec<String> {
        self.nodes.iter().map(Server::url).collect()
    }

    /// `CLUSTER NODES` as the first running master sees it.
    pub fn topology(&self) -> Vec<ClusterNodeView> {
        let mut last = String::from("no node is running");
        for node in self.nodes.iter().filter(|node| node.is_running()) {
            match cluster_nodes(node) {
                Ok(view)
                    if view
                        .iter()
                        .any(|n| n.flags.contains(&"myself".into()) && n.is_master()) =>
                {
                    return view
                }
                Ok(_) => continue,
                Err(err) => last = err,
            }
        }
        panic!("kestrel-testbed: cannot read the cluster topology: {last}");
    }

    /// Indices of the running nodes that are masters.
    pub fn master_indices(&self) -> Vec<usize> {
        self.topology()
            .iter()
            .filter(|view| view.is_master() && !view.is_failing())
            .map(|view| self.index_of_port(view.port))
            .filter(|&index| self.nodes[index].is_running())
            .collect()
    }

    /// Indices of the running replicas of the master at `index`, as the replicas themselves
    /// report (`INFO replication`).
    pub fn replicas_of(&self, index: usize) -> Vec<usize> {
        let master_port = self.nodes[index].port().to_string();
        (0..self.nodes.len())
            .filter(|&candidate| {
                let node = &self.nodes[candidate];
                if candidate == index || !node.is_running() {
                    return false;
                }
                let Ok(info) = node.try_info("replication") else {
                    return false;
                };
                let role = info_value(&info, "role").unwrap_or_default();
                is_replica_role(&role)
                    && info_value(&info, "master_port").as_deref() == Some(master_port.as_str())
            })
            .collect()
    }

    /// The hash slot of `key` (`CLUSTER KEYSLOT` on a running node).
    pub fn slot_of(&self, key: &str) -> u16 {
        let node = self.any_running_node();
        let mut connection = node.connection();
        match redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut connection)
        {
            Ok(slot) => slot,
            Err(err) => panic!(
                "kestrel-testbed: CLUSTER KEYSLOT failed on {}: {err}",
                node.addr()
            ),
        }
    }

    /// The index of the master serving `slot`.
    pub fn owner_of_slot(&self, slot: u16) -> usize {
        let view = self.topology();
        let owner = view
            .iter()
            .find(|node| node.is_master() && node.serves(slot))
            .unwrap_or_else(|| panic!("kestrel-testbed: no master serves slot {slot}: {view:?}"));
        self.index_of_port(owner.port)
    }

    /// The index of the master serving `key`.
    pub fn owner_of_key(&self, key: &str) -> usize {
        self.owner_of_slot(self.slot_of(key))
    }

    /// Waits until every running node reports `cluster_state:ok` with all slots served by
    /// reachable masters, every running replica's link is up, and all running nodes agree on
    /// which node serves which slot.
    pub fn wait_until_stable(&self) {
        wait_for(
            CLUSTER_TIMEOUT,
            "the cluster to be stable (state ok, all slots covered, all nodes agreeing)",
            || self.check_stable(),
            || self.log_tails(),
        );
    }

    fn check_stable(&self) -> Result<(), String> {
        let mut agreed: Option<Agreement> = None;
        let mut first_addr = String::new();
        for node in self.nodes.iter().filter(|node| node.is_running()) {
            let info = cluster_info(node)?;
            if agreed.is_none() {
                first_addr = node.addr();
            }
            for (field, want) in [("cluster_state", "ok"), ("cluster_slots_ok", "16384")] {
                let seen = info_value(&info, field).unwrap_or_default();
                if seen != want {
                    return Err(format!("{} reports {field}:{seen}", node.addr()));
                }
            }
            let view = cluster_nodes(node)?;
            // Slot range start -> owner port, and for each node: master, or whose replica.
            let mut owners = BTreeMap::new();
            let mut roles = BTreeMap::new();
            for entry in &view {
                let role = if entry.is_master() {
                    None
                } else {
                    entry.master_id.clone()
                };
                roles.insert(entry.port, role);
            }
            for master in view.iter().filter(|view| view.is_master()) {
                for range in &master.slots {
                    owners.insert(*range.start(), master.port);
                }
                if !master.slots.is_empty() {
                    let index = self.index_of_port(master.port);
                    if !self.nodes[index].is_running() {
                        return Err(format!(
                            "{} still sees stopped node {} as a master with slots",
                            node.addr(),
                            master.port
                        ));
                    }
                }
            }
            match &agreed {
                None => agreed = Some((owners, roles)),
                Some(first) if *first != (owners, roles) => {
                    return Err(format!(
                        "{} disagrees with {} on slot owners or roles",
                        node.addr(),
                        first_addr
                    ));
                }
                Some(_) => {}
            }
            let replication = node.try_info("replication")?;
            let role = info_value(&replication, "role").unwrap_or_default();
            if is_replica_role(&role) {
                let link = info_value(&replication, "master_link_status");
                if link.as_deref() != Some("up") {
                    return Err(format!(
                        "replica {} has master_link_status:{link:?}",
                        node.addr()
                    ));
                }
            }
        }
        Ok(())
    }

    /// Kills the master at `index` with SIGKILL, waits until one of its replicas has taken
    /// over and the cluster is stable again, and returns the new master's index.
    ///
    /// # Panics
    ///
    /// When the node is not a master or has no replica, or no replica takes over in time.
    pub fn kill_master(&self, index: usize) -> usize {
        let view = self.topology();
        let me = view
            .iter()
            .find(|node| node.id == self.ids[index])
            .unwrap_or_else(|| panic!("kestrel-testbed: node {index} is not in the topology"));
        assert!(
            me.is_master(),
            "kestrel-testbed: node {index} is not a master"
        );
        let replicas = self.replicas_of(index);
        assert!(
            !replicas.is_empty(),
            "kestrel-testbed: master {index} has no replica to take over"
        );
        self.nodes[index].kill();
        let new_master = wait_for(
            CLUSTER_TIMEOUT,
            &format!("a replica of killed master {index} to take over"),
            || {
                for &replica in &replicas {
                    let info = self.nodes[replica].try_info("replication")?;
                    if info_value(&info, "role").as_deref() == Some("master") {
                        return Ok(replica);
                    }
                }
                Err(format!("none of replicas {replicas:?} reports role:master"))
            },
            || self.log_tails(),
        );
        self.wait_until_stable();
        new_master
    }

    /// Restarts the node at `index` (same folder, port and node id) and waits until the
    /// cluster is stable. A failed-over master comes back as a replica of its successor.
    pub fn restart_node(&mut self, index: usize) {
        self.nodes[index].restart();
        self.wait_until_stable();
    }

    /// Starts moving `slot` from its owner to the master at `to`: marks it IMPORTING on the
    /// target and MIGRATING on the source. From here on clients get ASK redirects for keys
    /// that are not on the source any more. Move keys with [`SlotMigration::move_keys`] and
    /// end with [`SlotMigration::finish`]; traffic may run all along.
    pub fn begin_slot_migration(&self, slot: u16, to: usize) -> SlotMigration<'_> {
        let from = self.owner_of_slot(slot);
        assert_ne!(
            from, to,
            "kestrel-testbed: slot {slot} is already on node {to}"
        );
        let target = &self.nodes[to];
        let source = &self.nodes[from];
        cluster_command(
            target,
            &["SETSLOT", &slot.to_string(), "IMPORTING", &self.ids[from]],
        );
        cluster_command(
            source,
            &["SETSLOT", &slot.to_string(), "MIGRATING", &self.ids[to]],
        );
        SlotMigration {
            cluster: self,
            slot,
            from,
            to,
        }
    }

    /// Moves `slot` with all its keys to the master at `to`, and waits until the cluster is
    /// stable.
    pub fn migrate_slot(&self, slot: u16, to: usize) {
        self.migrate_slots(slot..=slot, to);
    }

    /// Moves every slot in `slots` (one at a time, each with its keys) to the master at `to`,
    /// skipping slots it already serves, then waits until the cluster is stable.
    pub fn migrate_slots(&self, slots: RangeInclusive<u16>, to: usize) {
        for slot in slots {
            if self.owner_of_slot(slot) == to {
                continue;
            }
            let migration = self.begin_slot_migration(slot, to);
            migration.move_all_keys();
            migration.assign();
        }
        self.wait_until_stable();
    }

    fn any_running_node(&self) -> &Server {
        self.nodes
            .iter()
            .find(|node| node.is_running())
            .unwrap_or_else(|| panic!("kestrel-testbed: no node of this cluster is running"))
    }

    /// The end of every node's log, for timeout messages.
    fn log_tails(&self) -> String {
        let views =
            self.nodes.iter().filter(|node| node.is_running()).map(
                |node| match cluster_nodes_text(node) {
                    Ok(text) => format!("--- CLUSTER NODES on {} ---\n{text}", node.addr()),
                    Err(err) => format!("--- CLUSTER NODES on {} failed: {err}\n", node.addr()),
                },
            );
        let logs = self.nodes.iter().map(|node| node.log_tail(15));
        views.chain(logs).collect::<Vec<_>>().join("")
    }
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("nodes", &self.nodes)
            .finish()
    }
}

/// A slot on its way from one master to another; see [`Cluster::begin_slot_migration`].
pub struct SlotMigration<'a> {
    cluster: &'a Cluster,
    slot: u16,
    from: usize,
    to: usize,
}

impl SlotMigration<'_> {
    /// The slot being moved.
    pub fn slot(&self) -> u16 {
        self.slot
    }

    /// Index of the source master.
    pub fn from(&self) -> usize {
        self.from
    }

    /// Index of the target master.
    pub fn to(&self) -> usize {
        self.to
    }

    /// Moves up to `max` keys of the slot with MIGRATE; returns how many were moved (0 once
    /// the source holds none).
    pub fn move_keys(&self, max: usize) -> usize {
        let source = &self.cluster.nodes[self.from];
        let target = &self.cluster.nodes[self.to];
        let mut connection = source.connection();
        let keys: Vec<Vec<u8>> = match redis::cmd("CLUSTER")
            .arg("GETKEYSINSLOT")
            .arg(self.slot)
            .arg(max)
            .query(&mut connection)
        {
            Ok(keys) => keys,
            Err(err) => panic!(
                "kestrel-testbed: CLUSTER GETKEYSINSLOT {} failed on {}: {err}",
                self.slot,
                source.addr()
            ),
        };
        if keys.is_empty() {
            return 0;
        }
        let mut migrate = redis::cmd("MIGRATE");
        migrate
            .arg("127.0.0.1")
            .arg(target.port())
            .arg("")
            .arg(0)
            .arg(10_000);
        if let Some(password) = target.password() {
            migrate.arg("AUTH").arg(password);
        }
        migrate.arg("KEYS").arg(&keys);
        // The reply is OK, or NOKEY when every key expired or was deleted meanwhile.
        if let Err(err) = migrate.query::<redis::Value>(&mut connection) {
            panic!(
                "kestrel-testbed: MIGRATE of {} keys of slot {} from {} to {} failed: {err}",
                keys.len(),
                self.slot,
                source.addr(),
                target.addr()
            );
        }
        keys.len()
    }

    /// Moves keys until the source holds none of this slot; returns how many were moved.
    pub fn move_all_keys(&self) -> usize {
        let mut moved = 0;
        loop {
            let batch = self.move_keys(MIGRATE_BATCH);
            if batch == 0 {
                return moved;
            }
            moved += batch;
        }
    }

    /// Moves the remaining keys, hands the slot to the target (`CLUSTER SETSLOT .. NODE` on the
    /// target, the source and every other master) and waits until the cluster is stable.
    pub fn finish(self) {
        self.move_all_keys();
        let cluster = self.cluster;
        self.assign();
        cluster.wait_until_stable();
    }

    fn assign(self) {
        let cluster = self.cluster;
        let slot = self.slot.to_string();
        let target_id = cluster.ids[self.to].as_str();
        let mut order = vec![self.to, self.from];
        for index in cluster.master_indices() {
            if !order.contains(&index) {
                order.push(index);
            }
        }
        for index in order {
            cluster_command(
                &cluster.nodes[index],
                &["SETSLOT", &slot, "NODE", target_id],
            );
        }
    }
}

/// Runs `CLUSTER <args>` on `node`, panicking with the error.
fn cluster_command(node: &Server, args: &[&str]) {
    let mut connection = node.connection();
    if let Err(err) = redis::cmd("CLUSTER").arg(args).query::<()>(&mut connection) {
        panic!(
            "kestrel-testbed: CLUSTER {} failed on {}: {err}",
            args.join(" "),
            node.addr()
        );
    }
}

fn cluster_info(node: &Server) -> Result<String, String> {
    let mut connection = node.try_connection().map_err(|err| err.to_string())?;
    redis::cmd("CLUSTER")
        .arg("INFO")
        .query(&mut connection)
        .map_err(|err| format!("CLUSTER INFO on {}: {err}", node.addr()))
}

fn cluster_nodes_text(node: &Server) -> Result<String, String> {
    let mut connection = node.try_connection().map_err(|err| err.to_string())?;
    redis::cmd("CLUSTER")
        .arg("NODES")
        .query(&mut connection)
        .map_err(|err| format!("CLUSTER NODES on {}: {err}", node.addr()))
}

fn cluster_nodes(node: &Server) -> Result<Vec<ClusterNodeView>, String> {
    parse_cluster_nodes(&cluster_nodes_text(node)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_nodes_lines_parse() {
        let text = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@40004,host slave \
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@40002 master - 0 1426238316232 2 \
connected 5461-10922 [5461->-e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca]
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@40001 myself,master - 0 0 1 \
connected 0-5460 16383
";
        let nodes = parse_cluster_nodes(text).expect("parse");
        assert_eq!(nodes.len(), 3);
        assert_eq!(nodes[0].port, 30004);
        assert!(!nodes[0].is_master());
        assert_eq!(
            nodes[0].master_id.as_deref(),
            Some("e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca")
        );
        assert_eq!(nodes[1].slots, vec![5461..=10922]);
        assert!(nodes[2].serves(16383) && nodes[2].serves(0) && !nodes[2].serves(5461));
        assert!(nodes[2].connected);
    }
}
