//! A Sentinel topology: one master, its replicas, and three sentinels watching them.

use std::collections::HashMap;
use std::env;
use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use redis::{ConnectionAddr, IntoConnectionInfo};

use crate::port::free_port;
use crate::process::{Daemon, LOG_TAIL_LINES};
use crate::server::{
    find_program, is_replica_role, quote, quote_path, server_binary, Server, ServerBuilder,
    CONNECTION_TIMEOUT, START_TIMEOUT,
};
use crate::wait::wait_for;

/// Environment variable naming the sentinel binary. Default: `redis-sentinel` next to a
/// `redis-server`, else the server binary run with `--sentinel`.
pub const SENTINEL_BIN_ENV: &str = "KESTREL_SENTINEL_BIN";

/// The name the sentinels monitor the master under, unless the builder sets another.
pub const DEFAULT_MASTER_NAME: &str = "kestrel";

/// How long sentinels get to discover each other and the replicas, and a failover to finish.
pub const SENTINEL_TIMEOUT: Duration = Duration::from_secs(60);

/// Customises the servers of a topology; see [`SentinelTopologyBuilder::configure`].
type ConfigureServer = Box<dyn Fn(usize, ServerBuilder) -> ServerBuilder>;

/// One redis-sentinel process on 127.0.0.1, in its own temporary folder; killed on drop.
pub struct Sentinel {
    daemon: Daemon,
}

impl Sentinel {
    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.daemon.port()
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port())
    }

    /// The sentinel's folder, with its config file (which Sentinel rewrites) and log.
    pub fn dir(&self) -> &Path {
        self.daemon.dir()
    }

    /// The sentinel's log file.
    pub fn log_path(&self) -> &Path {
        self.daemon.log_path()
    }

    /// The last `lines` lines of the sentinel's log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.daemon.log_tail(lines)
    }

    /// The PID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.daemon.pid()
    }

    /// Whether the process runs.
    pub fn is_running(&self) -> bool {
        self.daemon.status().is_ok()
    }

    /// Kills the sentinel with SIGKILL, by PID.
    pub fn kill(&self) {
        self.daemon.kill();
    }

    /// A new connection to the sentinel, or the error.
    pub fn try_connection(&self) -> redis::RedisResult<redis::Connection> {
        let info =
            ConnectionAddr::Tcp("127.0.0.1".to_string(), self.port()).into_connection_info()?;
        let connection =
            redis::Client::open(info)?.get_connection_with_timeout(CONNECTION_TIMEOUT)?;
        connection.set_read_timeout(Some(CONNECTION_TIMEOUT))?;
        connection.set_write_timeout(Some(CONNECTION_TIMEOUT))?;
        Ok(connection)
    }

    /// A new connection to the sentinel.
    ///
    /// # Panics
    ///
    /// When it cannot be reached; the message holds the end of its log.
    pub fn connection(&self) -> redis::Connection {
        match self.try_connection() {
            Ok(connection) => connection,
            Err(err) => panic!(
                "kestrel-testbed: cannot connect to {}: {err}\n{}",
                self.daemon.describe(),
                self.log_tail(LOG_TAIL_LINES)
            ),
        }
    }

    /// The master port this sentinel announces for `name` (`SENTINEL GET-MASTER-ADDR-BY-NAME`).
    pub fn master_port(&self, name: &str) -> Result<u16, String> {
        let mut connection = self.try_connection().map_err(|err| err.to_string())?;
        let (_host, port): (String, u16) = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(name)
            .query(&mut connection)
            .map_err(|err| err.to_string())?;
        Ok(port)
    }

    /// `SENTINEL MASTER <name>` as field/value pairs.
    pub fn master_state(&self, name: &str) -> Result<HashMap<String, String>, String> {
        let mut connection = self.try_connection().map_err(|err| err.to_string())?;
        let flat: Vec<String> = redis::cmd("SENTINEL")
            .arg("MASTER")
            .arg(name)
            .query(&mut connection)
            .map_err(|err| err.to_string())?;
        Ok(pairs(flat))
    }

    /// `SENTINEL REPLICAS <name>`: field/value pairs for each replica.
    pub fn replica_states(&self, name: &str) -> Result<Vec<HashMap<String, String>>, String> {
        let mut connection = self.try_connection().map_err(|err| err.to_string())?;
        let replicas: Vec<Vec<String>> = redis::cmd("SENTINEL")
            .arg("REPLICAS")
            .arg(name)
            .query(&mut connection)
            .map_err(|err| err.to_string())?;
        Ok(replicas.into_iter().map(pairs).collect())
    }

    fn start(master_name: &str, master_port: u16, options: &SentinelOptions) -> Sentinel {
        let (program, trailing) = sentinel_command(&options.server_binary);
        let mut daemon = Daemon::new("sentinel", program, trailing);
        let mut last_failure = String::new();
        for _attempt in 0..3 {
            daemon.set_port(free_port());
            daemon.clear_logs();
            daemon.write_config(&sentinel_config(&daemon, master_name, master_port, options));
            daemon.spawn();
            let sentinel = Sentinel { daemon };
            match sentinel.wait_started() {
                Ok(()) => return sentinel,
                Err(failure) => {
                    last_failure = failure;
                    sentinel.kill();
                    if !sentinel
                        .log_tail(LOG_TAIL_LINES)
                        .contains("Address already in use")
                    {
                        panic!("kestrel-testbed: {last_failure}");
                    }
                    daemon = sentinel.into_daemon();
                }
            }
        }
        panic!("kestrel-testbed: {last_failure}");
    }

    fn into_daemon(self) -> Daemon {
        self.daemon
    }

    fn wait_started(&self) -> Result<(), String> {
        let mut outcome = Ok(());
        wait_for(
            START_TIMEOUT,
            &format!("{} to answer PING", self.daemon.describe()),
            || {
                if let Err(exit) = self.daemon.status() {
                    outcome = Err(format!(
                        "{} failed to start: {exit}\n{}",
                        self.daemon.describe(),
                        self.log_tail(LOG_TAIL_LINES)
                    ));
                    return Ok(());
                }
                let mut connection = self.try_connection().map_err(|err| err.to_string())?;
                redis::cmd("PING")
                    .query::<String>(&mut connection)
                    .map(|_| ())
                    .map_err(|err| err.to_string())
            },
            || self.log_tail(LOG_TAIL_LINES),
        );
        outcome
    }
}

impl fmt::Debug for Sentinel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.daemon.describe())
    }
}

/// What every sentinel of a topology is configured with.
struct SentinelOptions {
    server_binary: PathBuf,
    quorum: usize,
    down_after: Duration,
    failover_timeout: Duration,
    password: Option<String>,
}

fn sentinel_config(
    daemon: &Daemon,
    name: &str,
    master_port: u16,
    options: &SentinelOptions,
) -> String {
    let name = quote(name);
    let mut text = String::from("# Written by kestrel-testbed. Sentinel rewrites this file.\n");
    text.push_str("bind 127.0.0.1\n");
    text.push_str(&format!("port {}\n", daemon.port()));
    text.push_str(&format!("dir {}\n", quote_path(daemon.dir())));
    text.push_str(&format!("logfile {}\n", quote_path(daemon.log_path())));
    text.push_str("daemonize no\n");
    text.push_str("sentinel resolve-hostnames no\n");
    text.push_str(&format!(
        "sentinel monitor {name} 127.0.0.1 {master_port} {}\n",
        options.quorum
    ));
    text.push_str(&format!(
        "sentinel down-after-milliseconds {name} {}\n",
        options.down_after.as_millis()
    ));
    text.push_str(&format!(
        "sentinel failover-timeout {name} {}\n",
        options.failover_timeout.as_millis()
    ));
    text.push_str(&format!("sentinel parallel-syncs {name} 1\n"));
    if let Some(password) = &options.password {
        text.push_str(&format!("sentinel auth-pass {name} {}\n", quote(password)));
    }
    text
}

/// The program and trailing arguments that run a sentinel: `$KESTREL_SENTINEL_BIN`, else
/// `redis-sentinel` next to a `redis-server`, else `<server> <config> --sentinel`.
fn sentinel_command(server: &Path) -> (PathBuf, Vec<String>) {
    if let Some(wanted) = env::var_os(SENTINEL_BIN_ENV) {
        let program = find_program(&wanted)
            .unwrap_or_else(|| panic!("kestrel-testbed: {SENTINEL_BIN_ENV}={wanted:?} not found"));
        return (program, Vec::new());
    }
    if server.file_name() == Some(OsStr::new("redis-server")) {
        let sibling = server.with_file_name("redis-sentinel");
        if sibling.is_file() {
            return (sibling, Vec::new());
        }
    }
    (server.to_path_buf(), vec!["--sentinel".to_string()])
}

fn pairs(flat: Vec<String>) -> HashMap<String, String> {
    let mut map = HashMap::new();
    let mut iter = flat.into_iter();
    while let (Some(key), Some(value)) = (iter.next(), iter.next()) {
        map.insert(key, value);
    }
    map
}

/// Configures and starts a [`SentinelTopology`]. Get one from [`SentinelTopology::builder`].
pub struct SentinelTopologyBuilder {
    master_name: String,
    replicas: usize,
    sentinels: usize,
    quorum: usize,
    down_after: Duration,
    failover_timeout: Duration,
    binary: Option<PathBuf>,
    configure: Option<ConfigureServer>,
}

impl SentinelTopologyBuilder {
    /// The name the sentinels monitor the master under (default `kestrel`).
    pub fn master_name(mut self, name: &str) -> SentinelTopologyBuilder {
        self.master_name = name.to_string();
        self
    }

    /// Number of replicas (default 1).
    pub fn replicas(mut self, count: usize) -> SentinelTopologyBuilder {
        self.replicas = count;
        self
    }

    /// Number of sentinels (default 3) and the quorum (default 2).
    pub fn sentinels(mut self, count: usize, quorum: usize) -> SentinelTopologyBuilder {
        self.sentinels = count;
        self.quorum = quorum;
        self
    }

    /// `down-after-milliseconds` (default 1 s) and `failover-timeout` (default 3 s).
    pub fn timing(mut self, down_after: Duration, failover_timeout: Duration) -> Self {
        self.down_after = down_after;
        self.failover_timeout = failover_timeout;
        self
    }

    /// Server binary for the master and replicas (default: as [`Server::builder`]); the
    /// sentinels use the matching sentinel binary.
    pub fn binary(mut self, path: impl Into<PathBuf>) -> SentinelTopologyBuilder {
        self.binary = Some(path.into());
        self
    }

    /// Customises each data server before it starts: `configure(index, builder)`, where index 0
    /// is the first master and 1.. are the replicas. Use it to load the module or set a password
    /// (give every server the same one).
    pub fn configure(
        mut self,
        configure: impl Fn(usize, ServerBuilder) -> ServerBuilder + 'static,
    ) -> SentinelTopologyBuilder {
        self.configure = Some(Box::new(configure));
        self
    }

    /// Starts the master, the replicas (waiting until they are in sync) and the sentinels, and
    /// waits until every sentinel sees the master, every replica, and every other sentinel.
    pub fn start(self) -> SentinelTopology {
        let server_binary = self.binary.clone().unwrap_or_else(server_binary);
        let build = |index: usize, builder: ServerBuilder| {
            let builder = builder.binary(&server_binary);
            match &self.configure {
                Some(configure) => configure(index, builder),
                None => builder,
            }
        };
        let master = build(0, Server::builder()).start();
        let mut servers = vec![];
        for index in 1..=self.replicas {
            servers.push(build(index, Server::replica_of(&master)).start());
        }
        master.wait_for_replicas(self.replicas);
        servers.insert(0, master);

        let options = SentinelOptions {
            server_binary,
            quorum: self.quorum,
            down_after: self.down_after,
            failover_timeout: self.failover_timeout,
            password: servers[0].password(),
        };
        let sentinels = (0..self.sentinels)
            .map(|_| Sentinel::start(&self.master_name, servers[0].port(), &options))
            .collect();
        let topology = SentinelTopology {
            master_name: self.master_name,
            servers,
            sentinels,
        };
        topology.wait_until_monitored();
        topology
    }
}

/// One master, its replicas and the sentinels watching them, all on 127.0.0.1; every process
/// is killed on drop.
pub struct SentinelTopology {
    master_name: String,
    /// Index 0 started as the master, the others as its replicas; roles change on failover.
    servers: Vec<Server>,
    sentinels: Vec<Sentinel>,
}

impl SentinelTopology {
    /// A builder: 1 replica, 3 sentinels, quorum 2, down after 1 s, failover timeout 3 s.
    pub fn builder() -> SentinelTopologyBuilder {
        SentinelTopologyBuilder {
            master_name: DEFAULT_MASTER_NAME.to_string(),
            replicas: 1,
            sentinels: 3,
            quorum: 2,
            down_after: Duration::from_millis(1000),
            failover_timeout: Duration::from_millis(3000),
            binary: None,
            configure: None,
        }
    }

    /// Starts a topology with the defaults.
    pub fn start() -> SentinelTopology {
        SentinelTopology::builder().start()
    }

    /// The name the sentinels monitor the master under.
    pub fn master_name(&self) -> &str {
        &self.master_name
    }

    /// The data servers: index 0 started as the master, the others as its replicas.
    pub fn servers(&self) -> &[Server] {
        &self.servers
    }

    /// The data servers, e.g. to restart one.
    pub fn servers_mut(&mut self) -> &mut [Server] {
        &mut self.servers
    }

    /// The data server on `port`.
    ///
    /// # Panics
    ///
    /// When no server of this topology has that port.
    pub fn server_on(&self, port: u16) -> &Server {
        self.servers
            .iter()
            .find(|server| server.port() == port)
            .unwrap_or_else(|| panic!("kestrel-testbed: no server of this topology on {port}"))
    }

    /// The sentinels.
    pub fn sentinels(&self) -> &[Sentinel] {
        &self.sentinels
    }

    /// `127.0.0.1:<port>` of every sentinel, for clients.
    pub fn sentinel_addrs(&self) -> Vec<String> {
        self.sentinels.iter().map(Sentinel::addr).collect()
    }

    /// The master as the first running sentinel announces it.
    pub fn master(&self) -> &Server {
        let port = match self.live_sentinels().next() {
            Some(sentinel) => sentinel.master_port(&self.master_name),
            None => Err("no sentinel is running".to_string()),
        };
        match port {
            Ok(port) => self.server_on(port),
            Err(err) => panic!(
                "kestrel-testbed: cannot ask a sentinel for the master: {err}\n{}",
                self.log_tails()
            ),
        }
    }

    /// Waits until every running sentinel sees the master (flagged just `master`), every
    /// replica (flagged just `slave`) and every other sentinel.
    pub fn wait_until_monitored(&self) {
        let master_port = self.master().port();
        let replica_ports: Vec<u16> = self
            .servers
            .iter()
            .filter(|server| server.port() != master_port && server.is_running())
            .map(Server::port)
            .collect();
        let other_sentinels = (self.sentinels.len() - 1).to_string();
        wait_for(
            SENTINEL_TIMEOUT,
            "the sentinels to see the master, its replicas and each other",
            || {
                for sentinel in self.live_sentinels() {
                    let state = sentinel.master_state(&self.master_name)?;
                    let field = |name: &str| state.get(name).cloned().unwrap_or_default();
                    if field("flags") != "master" || field("port") != master_port.to_string() {
                        return Err(format!(
                            "sentinel {} sees master {} with flags {}",
                            sentinel.addr(),
                            field("port"),
                            field("flags")
                        ));
                    }
                    if field("num-other-sentinels") != other_sentinels {
                        return Err(format!(
                            "sentinel {} knows {} other sentinels",
                            sentinel.addr(),
                            field("num-other-sentinels")
                        ));
                    }
                    let replicas = sentinel.replica_states(&self.master_name)?;
                    for port in &replica_ports {
                        let seen = replicas.iter().find(|replica| {
                            replica.get("port") == Some(&port.to_string())
                                && replica
                                    .get("flags")
                                    .is_some_and(|flags| is_replica_role(flags))
                        });
                        if seen.is_none() {
                            return Err(format!(
                                "sentinel {} does not see replica {port} in good state: {replicas:?}",
                                sentinel.addr()
                            ));
                        }
                    }
                }
                Ok(())
            },
            || self.log_tails(),
        );
    }

    /// Asks a sentinel for a failover (`SENTINEL FAILOVER`, retried while the sentinel answers
    /// that no replica is ready yet) and waits until every running sentinel announces the new
    /// master and that server reports `role:master`. Returns the new master.
    ///
    /// The old master is demoted by the sentinels some seconds later; wait for that with
    /// [`Server::wait_for_role`] if the test needs it.
    pub fn failover(&self) -> &Server {
        let old_port = self.master().port();
        wait_for(
            SENTINEL_TIMEOUT,
            "a sentinel to accept SENTINEL FAILOVER",
            || {
                let Some(sentinel) = self.live_sentinels().next() else {
                    return Err("no sentinel is running".to_string());
                };
                let mut connection = sentinel.try_connection().map_err(|err| err.to_string())?;
                redis::cmd("SENTINEL")
                    .arg("FAILOVER")
                    .arg(&self.master_name)
                    .query::<()>(&mut connection)
                    .map_err(|err| err.to_string())
            },
            || self.log_tails(),
        );
        self.wait_for_new_master(old_port)
    }

    /// Kills the current master with SIGKILL and returns its port; the sentinels fail over
    /// after `down-after-milliseconds`. Follow with [`SentinelTopology::wait_for_new_master`].
    pub fn kill_master(&self) -> u16 {
        let master = self.master();
        master.kill();
        master.port()
    }

    /// Waits until every running sentinel announces the same master other than `old_port`,
    /// and that server reports `role:master`. Returns it.
    pub fn wait_for_new_master(&self, old_port: u16) -> &Server {
        let port = wait_for(
            SENTINEL_TIMEOUT,
            &format!("the sentinels to announce a new master in place of {old_port}"),
            || {
                let mut announced = None;
                for sentinel in self.live_sentinels() {
                    let port = sentinel.master_port(&self.master_name)?;
                    if port == old_port {
                        return Err(format!(
                            "sentinel {} still announces {port}",
                            sentinel.addr()
                        ));
                    }
                    if announced.is_some_and(|seen| seen != port) {
                        return Err(format!("sentinels disagree: {announced:?} and {port}"));
                    }
                    announced = Some(port);
                }
                let port = announced.ok_or("no sentinel is running")?;
                let role = self.server_on(port).try_info("replication")?;
                if role.contains("role:master") {
                    Ok(port)
                } else {
                    Err(format!(
                        "{port} is announced but does not report role:master yet"
                    ))
                }
            },
            || self.log_tails(),
        );
        self.server_on(port)
    }

    fn live_sentinels(&self) -> impl Iterator<Item = &Sentinel> {
        self.sentinels
            .iter()
            .filter(|sentinel| sentinel.is_running())
    }

    /// The end of every log, for timeout messages.
    fn log_tails(&self) -> String {
        let servers = self.servers.iter().map(|server| server.log_tail(15));
        let sentinels = self.sentinels.iter().map(|sentinel| sentinel.log_tail(15));
        servers.chain(sentinels).collect::<Vec<_>>().join("")
    }
}

impl fmt::Debug for SentinelTopology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentinelTopology")
            .field("master_name", &self.master_name)
            .field("servers", &self.servers)
            .field("sentinels", &self.sentinels)
            .finish()
    }
}
