//! Real Redis processes for Kestrel's integration tests.
//!
//! Every process here is a real `redis-server` (or `valkey-server`) or `redis-sentinel`,
//! bound to 127.0.0.1 on a free port, in its own temporary folder. Nothing is mocked. Every
//! process is killed (by PID) and reaped when its handle is dropped, also when a test panics;
//! a drop during a panic prints the end of the process's log first. Every wait is bounded and
//! fails with what it was waiting for, what it last saw, and the end of the logs.
//!
//! - [`Server`] / [`ServerBuilder`]: one server, optionally with the Kestrel module, extra
//!   config lines, a password, or as a replica; kill, stop, restart in the same folder.
//! - [`SentinelTopology`]: a master, its replicas and three sentinels; failover helpers.
//! - [`Cluster`]: N masters x M replicas created with `redis-cli --cluster create`; failover
//!   and slot migration helpers.
//! - [`free_port`] / [`free_cluster_port`]: loopback ports no other test is using.
//! - [`module_path`] / [`test_clock_module_path`]: the module the caller built.
//!
//! ```no_run
//! use kestrel_testbed::{redis, Server};
//!
//! // Needs `cargo build -p kestrel-module` first.
//! let mut server = Server::builder()
//!     .module(&["shard-id", "7"])
//!     .config("appendonly yes")
//!     .start();
//! let mut connection = server.connection();
//! let id: i64 = redis::cmd("KESTREL.ID").query(&mut connection).unwrap();
//! server.restart();
//! ```
//!
//! Environment variables:
//!
//! | variable | effect |
//! |---|---|
//! | `KESTREL_SERVER_BIN` | server binary (default `redis-server` from `PATH`) |
//! | `KESTREL_CLI_BIN` | client binary for `--cluster create` (default: next to the server) |
//! | `KESTREL_SENTINEL_BIN` | sentinel binary (default `redis-sentinel`, or `<server> --sentinel`) |
//! | `KESTREL_MODULE` | module to load (default: newest `target/{debug,release}/libkestrel.so`) |
//! | `KESTREL_MODULE_TEST_CLOCK` | module built with `--features test-clock` |
//! | `KESTREL_TESTBED_KEEP` | keep the temporary folders after the test |
//!
//! Install the binaries with `scripts/deps.sh`.

mod cluster;
mod module;
mod port;
mod process;
mod sentinel;
mod server;
mod wait;

pub use redis;

pub use cluster::{
    parse_cluster_nodes, Cluster, ClusterBuilder, ClusterNodeView, SlotMigration, CLUSTER_TIMEOUT,
    SLOT_COUNT,
};
pub use module::{
    module_path, target_dir, test_clock_module_path, workspace_root, MODULE_ENV, MODULE_FILE_NAME,
    TEST_CLOCK_MODULE_ENV, TEST_CLOCK_SUBDIR,
};
pub use port::{free_cluster_port, free_port, CLUSTER_BUS_OFFSET};
pub use process::KEEP_DIRS_ENV;
pub use sentinel::{
    Sentinel, SentinelTopology, SentinelTopologyBuilder, DEFAULT_MASTER_NAME, SENTINEL_BIN_ENV,
    SENTINEL_TIMEOUT,
};
pub use server::{
    cli_binary, server_binary, Server, ServerBuilder, CLI_BIN_ENV, CONNECTION_TIMEOUT,
    REPLICATION_TIMEOUT, SERVER_BIN_ENV, START_TIMEOUT,
};
pub use wait::{wait_for, POLL_INTERVAL};

/// The README's ACL rules for an application user that owns the generator `orders`, after the
/// user name: its password is `app-secret`. Tests of the module and of the client grant
/// exactly these, so the rules the README documents are the rules that are tested.
pub const ORDERS_APP_ACL_RULES: &[&str] = &[
    "on",
    ">app-secret",
    "resetkeys",
    "~orders",
    "~{orders}-*",
    "resetchannels",
    "-@all",
    "+kestrel.id",
    "+kestrel.ids",
    "+kestrel.status",
    "+kestrel.decode",
    "+evalsha",
    "+get",
    "+set",
    "+time",
];
