//! One redis-server (or valkey-server) process: [`ServerBuilder`] starts it, [`Server`] talks
//! to it, restarts it and stops it on drop.

use std::env;
use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::thread;
use std::time::{Duration, Instant};

use redis::{ConnectionAddr, IntoConnectionInfo};

use crate::module::module_path;
use crate::port::{free_cluster_port, free_port};
use crate::process::{Daemon, LOG_TAIL_LINES};
use crate::wait::{wait_for, POLL_INTERVAL};

/// Environment variable naming the server binary (a path, or a name looked up on `PATH`).
/// Default: `redis-server`.
pub const SERVER_BIN_ENV: &str = "KESTREL_SERVER_BIN";

/// Environment variable naming the command-line client used to create clusters. Default: the
/// `*-cli` binary next to the server binary (redis-cli, valkey-cli), else `redis-cli`.
pub const CLI_BIN_ENV: &str = "KESTREL_CLI_BIN";

/// How long a server gets to answer PING and finish loading its data.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a replica gets to reach `master_link_status:up`, and a role change to show.
pub const REPLICATION_TIMEOUT: Duration = Duration::from_secs(30);

/// Timeout for opening a connection, and for each read and write on connections from
/// [`Server::connection`].
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a start is retried on a new port when another process took the port first.
const START_ATTEMPTS: usize = 4;

/// Configures and starts a [`Server`]. Get one from [`Server::builder`].
///
/// The server runs in a new temporary folder with this configuration, followed by the lines
/// given to [`ServerBuilder::config`]:
///
/// ```text
/// bind 127.0.0.1
/// port <a free port>
/// dir <the temporary folder>
/// logfile <the temporary folder>/server.log
/// save ""
/// appendonly no
/// repl-diskless-sync-delay 0
/// enable-debug-command yes
/// enable-module-command yes
/// ```
#[derive(Clone, Debug)]
pub struct ServerBuilder {
    binary: Option<PathBuf>,
    port: Option<u16>,
    cluster_enabled: bool,
    config: Vec<String>,
    modules: Vec<(PathBuf, Vec<String>)>,
    replica_of: Option<u16>,
    start_timeout: Duration,
}

impl ServerBuilder {
    fn new() -> ServerBuilder {
        ServerBuilder {
            binary: None,
            port: None,
            cluster_enabled: false,
            config: Vec::new(),
            modules: Vec::new(),
            replica_of: None,
            start_timeout: START_TIMEOUT,
        }
    }

    /// Runs this binary instead of `$KESTREL_SERVER_BIN` or `redis-server`.
    pub fn binary(mut self, path: impl Into<PathBuf>) -> ServerBuilder {
        self.binary = Some(path.into());
        self
    }

    /// Uses this port instead of a free one. The caller makes sure it is free.
    pub fn port(mut self, port: u16) -> ServerBuilder {
        self.port = Some(port);
        self
    }

    /// Adds one line to the config file, e.g. `appendonly yes` or `save ""`. Lines are written
    /// in order after the defaults, so they override them.
    pub fn config(mut self, line: impl Into<String>) -> ServerBuilder {
        self.config.push(line.into());
        self
    }

    /// Adds several config lines, see [`ServerBuilder::config`].
    pub fn configs<I, S>(mut self, lines: I) -> ServerBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.extend(lines.into_iter().map(Into::into));
        self
    }

    /// Protects the server with `requirepass` (and `masterauth`, so replicas of servers with the
    /// same password can sync). Connections from [`Server::connection`] authenticate.
    pub fn password(self, password: &str) -> ServerBuilder {
        let quoted = quote(password);
        self.config(format!("requirepass {quoted}"))
            .config(format!("masterauth {quoted}"))
    }

    /// Loads the Kestrel module found by [`module_path`] with these module arguments, e.g.
    /// `&["shard-id", "7"]`. The file is copied into the server's folder first.
    pub fn module(self, args: &[&str]) -> ServerBuilder {
        self.module_file(module_path(), args)
    }

    /// Loads the module at `path` with these arguments. The file is copied into the server's
    /// folder first, so rebuilding it never disturbs a running server.
    pub fn module_file(mut self, path: impl Into<PathBuf>, args: &[&str]) -> ServerBuilder {
        let args = args.iter().map(|arg| arg.to_string()).collect();
        self.modules.push((path.into(), args));
        self
    }

    /// Makes the server a replica of `master` (`replicaof 127.0.0.1 <port>`); [`start`]
    /// returns once `master_link_status:up`. If the master has a password, give the replica the
    /// same one with [`ServerBuilder::password`].
    ///
    /// [`start`]: ServerBuilder::start
    pub fn replica_of(mut self, master: &Server) -> ServerBuilder {
        self.replica_of = Some(master.port());
        self
    }

    /// Turns on cluster mode (`cluster-enabled yes`, `cluster-config-file nodes.conf`) and
    /// picks a port whose bus port (port + 10000) is free too.
    pub fn cluster_enabled(mut self) -> ServerBuilder {
        self.cluster_enabled = true;
        self.config("cluster-enabled yes")
            .config("cluster-config-file nodes.conf")
    }

    /// How long to wait for the server to answer and finish loading (default
    /// [`START_TIMEOUT`]).
    pub fn start_timeout(mut self, timeout: Duration) -> ServerBuilder {
        self.start_timeout = timeout;
        self
    }

    /// Starts the server and waits until it answers PING and has finished loading; for a
    /// replica, also until its link to the master is up.
    ///
    /// # Panics
    ///
    /// When the binary or the module cannot be found, or the server does not come up in time;
    /// the message holds the end of the server log.
    pub fn start(self) -> Server {
        let program = self.binary.clone().unwrap_or_else(server_binary);
        let daemon = Daemon::new("server", program, Vec::new());

        let mut config = Vec::new();
        for (index, (source, args)) in self.modules.iter().enumerate() {
            let copy = copy_module(source, daemon.dir(), index);
            let mut line = format!("loadmodule {}", quote_path(&copy));
            for arg in args {
                line.push(' ');
                line.push_str(&quote(arg));
            }
            config.push(line);
        }
        if let Some(master_port) = self.replica_of {
            config.push(format!("replicaof 127.0.0.1 {master_port}"));
        }
        config.extend(self.config.iter().cloned());

        let mut server = Server {
            daemon,
            config,
            start_timeout: self.start_timeout,
        };
        for attempt in 1..=START_ATTEMPTS {
            let port = match (self.port, self.cluster_enabled) {
                (Some(port), _) => port,
                (None, true) => free_cluster_port(),
                (None, false) => free_port(),
            };
            server.daemon.set_port(port);
            server.daemon.clear_logs();
            server.write_config();
            server.daemon.spawn();
            match server.wait_started() {
                Ok(()) => break,
                Err(StartFailure::PortTaken) if self.port.is_none() && attempt < START_ATTEMPTS => {
                    server.daemon.kill();
                }
                Err(failure) => server.fail_start(failure),
            }
        }
        if self.replica_of.is_some() {
            server.wait_replication_up();
        }
        server
    }
}

/// A running redis-server (or valkey-server) on 127.0.0.1, in its own temporary folder.
///
/// Dropping it kills the process (SIGKILL by PID), reaps it and removes the folder; when the
/// drop happens during a panic, the end of the server log is printed first.
pub struct Server {
    daemon: Daemon,
    config: Vec<String>,
    start_timeout: Duration,
}

/// Why a start did not complete.
enum StartFailure {
    /// Another process bound the port between the check and the server's bind.
    PortTaken,
    /// The process exited; the text says how.
    Exited(String),
}

impl Server {
    /// A builder with the defaults described at [`ServerBuilder`].
    pub fn builder() -> ServerBuilder {
        ServerBuilder::new()
    }

    /// Starts a server with the defaults.
    pub fn start() -> Server {
        Server::builder().start()
    }

    /// A builder for a replica of `master`, see [`ServerBuilder::replica_of`].
    pub fn replica_of(master: &Server) -> ServerBuilder {
        Server::builder().replica_of(master)
    }

    /// The port on 127.0.0.1. It stays the same across restarts.
    pub fn port(&self) -> u16 {
        self.daemon.port()
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port())
    }

    /// `redis://127.0.0.1:<port>/`, without the password.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port())
    }

    /// The temporary folder the server runs in (its `dir`: RDB, AOF, nodes.conf, log).
    pub fn dir(&self) -> &Path {
        self.daemon.dir()
    }

    /// The server's log file.
    pub fn log_path(&self) -> &Path {
        self.daemon.log_path()
    }

    /// The config file the server was (re)started with.
    pub fn config_path(&self) -> &Path {
        self.daemon.config_path()
    }

    /// The last `lines` lines of the server log (and of its stdout/stderr, if any).
    pub fn log_tail(&self, lines: usize) -> String {
        self.daemon.log_tail(lines)
    }

    /// The server binary.
    pub fn binary(&self) -> &Path {
        self.daemon.program()
    }

    /// The PID of the running process; `None` after [`Server::kill`] or [`Server::stop`].
    pub fn pid(&self) -> Option<u32> {
        self.daemon.pid()
    }

    /// Whether the process is running.
    pub fn is_running(&self) -> bool {
        self.daemon.status().is_ok()
    }

    /// The config lines given by the test (after the defaults), including the `loadmodule` and
    /// `replicaof` lines the builder added.
    pub fn config_lines(&self) -> &[String] {
        &self.config
    }

    /// The password from the last `requirepass` line, if any.
    pub fn password(&self) -> Option<String> {
        self.config.iter().rev().find_map(|line| {
            let mut words = line.split_whitespace();
            let key = words.next()?;
            if !key.eq_ignore_ascii_case("requirepass") {
                return None;
            }
            let value = line.trim_start()[key.len()..].trim();
            Some(unquote(value))
        })
    }

    /// A `redis::Client` for this server, with the password if one is set.
    pub fn client(&self) -> redis::Client {
        let addr = ConnectionAddr::Tcp("127.0.0.1".to_string(), self.port());
        let mut info = match addr.into_connection_info() {
            Ok(info) => info,
            Err(err) => panic!(
                "kestrel-testbed: bad address for {}: {err}",
                self.describe()
            ),
        };
        if let Some(password) = self.password() {
            let settings = info.redis_settings().clone().set_password(password);
            info = info.set_redis_settings(settings);
        }
        match redis::Client::open(info) {
            Ok(client) => client,
            Err(err) => panic!(
                "kestrel-testbed: cannot make a client for {}: {err}",
                self.describe()
            ),
        }
    }

    /// A new connection, with [`CONNECTION_TIMEOUT`] for reads and writes.
    ///
    /// # Panics
    ///
    /// When the server cannot be reached; the message holds the end of its log.
    pub fn connection(&self) -> redis::Connection {
        match self.try_connection() {
            Ok(connection) => connection,
            Err(err) => panic!(
                "kestrel-testbed: cannot connect to {}: {err}\n{}",
                self.describe(),
                self.log_tail(LOG_TAIL_LINES)
            ),
        }
    }

    /// A new connection, or the error; for tests that expect the server to be down.
    pub fn try_connection(&self) -> redis::RedisResult<redis::Connection> {
        let connection = self
            .client()
            .get_connection_with_timeout(CONNECTION_TIMEOUT)?;
        connection.set_read_timeout(Some(CONNECTION_TIMEOUT))?;
        connection.set_write_timeout(Some(CONNECTION_TIMEOUT))?;
        Ok(connection)
    }

    /// `INFO <section>` as text.
    ///
    /// # Panics
    ///
    /// When the command fails.
    pub fn info(&self, section: &str) -> String {
        match self.try_info(section) {
            Ok(text) => text,
            Err(err) => panic!(
                "kestrel-testbed: INFO {section} failed on {}: {err}\n{}",
                self.describe(),
                self.log_tail(LOG_TAIL_LINES)
            ),
        }
    }

    /// One `field:value` of `INFO <section>`, e.g. `info_field("replication", "role")`.
    pub fn info_field(&self, section: &str, field: &str) -> Option<String> {
        info_value(&self.info(section), field)
    }

    /// Kills the process with SIGKILL (by PID) and reaps it: no shutdown, no final save. The
    /// folder stays, so [`Server::restart`] finds what was persisted.
    pub fn kill(&self) {
        self.daemon.kill();
    }

    /// Stops the process with SIGTERM, which Redis treats like SHUTDOWN (it saves the RDB when
    /// save points are configured and flushes the AOF), and waits for it to exit. Returns the
    /// exit status, or `None` if it was not running.
    pub fn stop(&self) -> Option<ExitStatus> {
        self.daemon.terminate()
    }

    /// Stops the server if it runs and starts it again in the same folder, on the same port,
    /// with the same configuration; waits until it has loaded its data.
    pub fn restart(&mut self) {
        self.restart_with(|_| {});
    }

    /// Like [`Server::restart`], after `edit` changed the config lines (see
    /// [`Server::config_lines`]), e.g. to drop a `loadmodule` line or add `appendonly yes`.
    /// The change is kept for later restarts.
    pub fn restart_with(&mut self, edit: impl FnOnce(&mut Vec<String>)) {
        if self.is_running() {
            self.stop();
        }
        edit(&mut self.config);
        self.write_config();
        self.daemon.spawn();
        if let Err(failure) = self.wait_started() {
            self.fail_start(failure);
        }
    }

    /// Restarts without any `loadmodule` line.
    pub fn restart_without_module(&mut self) {
        self.restart_with(|lines| lines.retain(|line| !is_directive(line, "loadmodule")));
    }

    /// Waits until this server is a replica whose link to its master is up.
    pub fn wait_replication_up(&self) {
        wait_for(
            REPLICATION_TIMEOUT,
            &format!("replica {} to report master_link_status:up", self.addr()),
            || {
                let info = self.try_info("replication")?;
                let role = info_value(&info, "role").unwrap_or_default();
                let link = info_value(&info, "master_link_status").unwrap_or_default();
                if is_replica_role(&role) && link == "up" {
                    Ok(())
                } else {
                    Err(format!("role:{role} master_link_status:{link}"))
                }
            },
            || self.log_tail(LOG_TAIL_LINES),
        );
    }

    /// Waits until this master has `count` replicas online.
    pub fn wait_for_replicas(&self, count: usize) {
        wait_for(
            REPLICATION_TIMEOUT,
            &format!("{count} online replicas of {}", self.addr()),
            || {
                let info = self.try_info("replication")?;
                let online = info
                    .lines()
                    .filter(|line| line.starts_with("slave") && line.contains("state=online"))
                    .count();
                if online >= count {
                    Ok(())
                } else {
                    Err(format!("{online} online replicas:\n{info}"))
                }
            },
            || self.log_tail(LOG_TAIL_LINES),
        );
    }

    /// Waits until `INFO replication` reports `role:<role>` (`master` or `slave`; `replica` is
    /// taken as `slave`).
    pub fn wait_for_role(&self, role: &str) {
        let want_replica = is_replica_role(role);
        wait_for(
            REPLICATION_TIMEOUT,
            &format!("{} to report role:{role}", self.addr()),
            || {
                let info = self.try_info("replication")?;
                let seen = info_value(&info, "role").unwrap_or_default();
                if is_replica_role(&seen) == want_replica && !seen.is_empty() {
                    Ok(())
                } else {
                    Err(format!("role:{seen}"))
                }
            },
            || self.log_tail(LOG_TAIL_LINES),
        );
    }

    /// `INFO <section>`, or a description of why it could not be read.
    pub(crate) fn try_info(&self, section: &str) -> Result<String, String> {
        let mut connection = self.try_connection().map_err(|err| err.to_string())?;
        redis::cmd("INFO")
            .arg(section)
            .query::<String>(&mut connection)
            .map_err(|err| err.to_string())
    }

    pub(crate) fn describe(&self) -> String {
        self.daemon.describe()
    }

    fn write_config(&self) {
        let dir = self.daemon.dir();
        let mut text = String::from("# Written by kestrel-testbed.\n");
        text.push_str("bind 127.0.0.1\n");
        text.push_str(&format!("port {}\n", self.port()));
        text.push_str(&format!("dir {}\n", quote_path(dir)));
        text.push_str(&format!("logfile {}\n", quote_path(self.log_path())));
        text.push_str("daemonize no\n");
        text.push_str("save \"\"\n");
        text.push_str("appendonly no\n");
        text.push_str("repl-diskless-sync-delay 0\n");
        text.push_str("enable-debug-command yes\n");
        text.push_str("enable-module-command yes\n");
        text.push_str("# The test's own lines.\n");
        for line in &self.config {
            text.push_str(line);
            text.push('\n');
        }
        self.daemon.write_config(&text);
    }

    /// Waits until the server answers PING and reports `loading:0`.
    fn wait_started(&self) -> Result<(), StartFailure> {
        let deadline = Instant::now() + self.start_timeout;
        loop {
            if let Err(exit) = self.daemon.status() {
                let log = self.log_tail(LOG_TAIL_LINES);
                if log.contains("Address already in use") {
                    return Err(StartFailure::PortTaken);
                }
                return Err(StartFailure::Exited(exit));
            }
            let last = match self.probe_ready() {
                Ok(()) => return Ok(()),
                Err(observation) => observation,
            };
            if Instant::now() >= deadline {
                let log = self.log_tail(LOG_TAIL_LINES);
                panic!(
                    "kestrel-testbed: {} did not become ready within {:?}\nlast seen: {last}\n{log}",
                    self.describe(),
                    self.start_timeout
                );
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    fn probe_ready(&self) -> Result<(), String> {
        let mut connection = self.try_connection().map_err(|err| err.to_string())?;
        redis::cmd("PING")
            .query::<String>(&mut connection)
            .map_err(|err| err.to_string())?;
        let info = redis::cmd("INFO")
            .arg("persistence")
            .query::<String>(&mut connection)
            .map_err(|err| err.to_string())?;
        match info_value(&info, "loading").as_deref() {
            Some("0") => Ok(()),
            other => Err(format!("loading:{}", other.unwrap_or("?"))),
        }
    }

    fn fail_start(&self, failure: StartFailure) -> ! {
        let why = match failure {
            StartFailure::PortTaken => "its port was taken by another process".to_string(),
            StartFailure::Exited(how) => how,
        };
        panic!(
            "kestrel-testbed: {} failed to start: {why}\nconfig file: {}\n{}",
            self.describe(),
            self.config_path().display(),
            self.log_tail(LOG_TAIL_LINES)
        );
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// The server binary: `$KESTREL_SERVER_BIN` if set, else `redis-server` from `PATH`.
///
/// # Panics
///
/// When it cannot be found, saying how to install it.
pub fn server_binary() -> PathBuf {
    let wanted = env::var_os(SERVER_BIN_ENV).unwrap_or_else(|| "redis-server".into());
    find_program(&wanted).unwrap_or_else(|| {
        panic!(
            "kestrel-testbed: server binary {wanted:?} not found. Install redis-server with \
             scripts/deps.sh (or `apt-get install redis-server`), or set {SERVER_BIN_ENV} to a \
             redis-server or valkey-server binary"
        )
    })
}

/// The command-line client for `server`: `$KESTREL_CLI_BIN` if set, else the `-cli` binary in
/// the server's folder (`redis-cli` next to `redis-server`, `valkey-cli` next to
/// `valkey-server`), else `redis-cli` from `PATH`.
///
/// # Panics
///
/// When none is found, saying how to install one.
pub fn cli_binary(server: &Path) -> PathBuf {
    if let Some(wanted) = env::var_os(CLI_BIN_ENV) {
        return find_program(&wanted)
            .unwrap_or_else(|| panic!("kestrel-testbed: {CLI_BIN_ENV}={wanted:?} not found"));
    }
    if let Some(name) = server.file_name().and_then(OsStr::to_str) {
        if let Some(prefix) = name.strip_suffix("-server") {
            let sibling = server.with_file_name(format!("{prefix}-cli"));
            if sibling.is_file() {
                return sibling;
            }
        }
    }
    find_program(OsStr::new("redis-cli")).unwrap_or_else(|| {
        panic!(
            "kestrel-testbed: redis-cli not found. Install it with scripts/deps.sh (or \
             `apt-get install redis-tools`), or set {CLI_BIN_ENV}"
        )
    })
}

/// `wanted` as a path if it contains a `/`, else the first match on `PATH`.
pub(crate) fn find_program(wanted: &OsStr) -> Option<PathBuf> {
    let path = Path::new(wanted);
    if path.components().count() > 1 {
        return path.is_file().then(|| path.to_path_buf());
    }
    let search = env::var_os("PATH")?;
    env::split_paths(&search)
        .map(|dir| dir.join(wanted))
        .find(|candidate| candidate.is_file())
}

/// The value of `field:value` in INFO text.
pub(crate) fn info_value(info: &str, field: &str) -> Option<String> {
    info.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key == field).then(|| value.trim().to_string())
    })
}

/// Redis says `slave`; newer Valkey releases may say `replica`.
pub(crate) fn is_replica_role(role: &str) -> bool {
    role == "slave" || role == "replica"
}

/// Whether a config line sets `directive`.
fn is_directive(line: &str, directive: &str) -> bool {
    line.split_whitespace()
        .next()
        .is_some_and(|word| word.eq_ignore_ascii_case(directive))
}

/// Copies a module file into `dir` and returns the copy's path.
fn copy_module(source: &Path, dir: &Path, index: usize) -> PathBuf {
    let name = source
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "module.so".to_string());
    let name = if index == 0 {
        name
    } else {
        format!("{index}-{name}")
    };
    let copy = dir.join(name);
    if let Err(err) = fs::copy(source, &copy) {
        panic!(
            "kestrel-testbed: cannot copy the module {} to {}: {err}. Build it with \
             `cargo build -p kestrel-module`",
            source.display(),
            copy.display()
        );
    }
    copy
}

/// A config-file argument: as is when plain, else double-quoted with escapes.
pub(crate) fn quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@,+=".contains(c));
    if plain {
        return value.to_string();
    }
    let mut quoted = String::from("\"");
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                quoted.push('\\');
                quoted.push(c);
            }
            '\n' => quoted.push_str("\\n"),
            _ => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

pub(crate) fn quote_path(path: &Path) -> String {
    quote(&path.to_string_lossy())
}

/// Undoes [`quote`] for one value.
fn unquote(value: &str) -> String {
    let Some(inner) = value
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .or_else(|| {
            value
                .strip_prefix('\'')
                .and_then(|rest| rest.strip_suffix('\''))
        })
    else {
        return value.to_string();
    };
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_round_trips() {
        for value in [
            "plain",
            "with space",
            "q\"uote",
            "back\\slash",
            "",
            "/tmp/a b/x.so",
        ] {
            assert_eq!(unquote(&quote(value)), value);
        }
        assert_eq!(quote("shard-id"), "shard-id");
    }

    #[test]
    fn info_values_are_found() {
        let info = "# Replication\r\nrole:slave\r\nmaster_link_status:up\r\n";
        assert_eq!(info_value(info, "role").as_deref(), Some("slave"));
        assert_eq!(
            info_value(info, "master_link_status").as_deref(),
            Some("up")
        );
        assert_eq!(info_value(info, "missing"), None);
    }

    #[test]
    fn directives_match_whole_words() {
        assert!(is_directive("loadmodule /x.so shard-id 1", "loadmodule"));
        assert!(is_directive("LOADMODULE /x.so", "loadmodule"));
        assert!(!is_directive("loadmodules /x.so", "loadmodule"));
    }
}
