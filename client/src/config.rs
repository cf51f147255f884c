//! How to reach Redis and which generator to use: a builder, filled from the environment
//! where the code leaves a setting unset, like the original library.

use std::fmt;
use std::time::Duration;

use kestrel_core::ShardId;

use crate::error::Error;

/// The generator name the original library uses: keys `{kestrel}-shard-id` and so on.
pub const DEFAULT_GENERATOR: &str = "kestrel";

/// A `host:port` pair.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl Address {
    /// An address from its parts.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
        }
    }

    /// Parses `host:port`; IPv6 hosts go in brackets (`[::1]:6379`).
    pub fn parse(text: &str) -> Result<Self, Error> {
        let bad = || Error::config(format!("{text:?} is not HOST:PORT"));
        let (host, port) = text.trim().rsplit_once(':').ok_or_else(bad)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = port.parse::<u16>().map_err(|_| bad())?;
        if host.is_empty() {
            return Err(bad());
        }
        Ok(Self::new(host, port))
    }

    /// Parses a comma-separated list of `host:port`.
    pub fn parse_list(text: &str) -> Result<Vec<Self>, Error> {
        text.split(',')
            .filter(|part| !part.trim().is_empty())
            .map(Self::parse)
            .collect()
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Username and password for one kind of server.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// ACL username; `None` means the default user.
    pub username: Option<String>,
    /// Password; `None` means no AUTH.
    pub password: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

/// Where the Redis servers are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    /// One server.
    Standalone(Address),
    /// A master found through Sentinel.
    Sentinel {
        /// The sentinels to ask.
        sentinels: Vec<Address>,
        /// The master's name in the sentinels' configuration.
        master: String,
        /// Credentials for the sentinels themselves.
        credentials: Credentials,
    },
    /// A Redis Cluster, found from any of these nodes.
    Cluster(Vec<Address>),
}

/// A complete client configuration. Build one with [`Config::builder`].
///
/// ```
/// use kestrel_client::{Config, Topology};
///
/// let config = Config::builder()
///     .url("redis://app:secret@127.0.0.1:6380/2")
///     .shard_id(7)
///     .without_env()
///     .build()?;
///
/// assert!(matches!(config.topology(), Topology::Standalone(address) if address.port == 6380));
/// assert_eq!(config.database(), 2);
/// assert_eq!(config.shard_id().map(|shard| shard.get()), Some(7));
/// # Ok::<(), kestrel_client::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) topology: Topology,
    pub(crate) credentials: Credentials,
    pub(crate) database: i64,
    pub(crate) tls: bool,
    pub(crate) tls_root_certificate: Option<Vec<u8>>,
    pub(crate) generator: String,
    pub(crate) shard_id: Option<ShardId>,
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Duration,
    pub(crate) failover_timeout: Duration,
    pub(crate) script_only: bool,
    pub(crate) topology_refresh: Duration,
}

impl Config {
    /// A builder with nothing set.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder::default()
    }

    /// Where the servers are.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The database number (standalone and Sentinel).
    pub fn database(&self) -> i64 {
        self.database
    }

    /// The generator name (standalone and Sentinel), or the prefix of the per-master
    /// generator names (Cluster).
    pub fn generator(&self) -> &str {
        &self.generator
    }

    /// The shard id to set up, when one was configured.
    pub fn shard_id(&self) -> Option<ShardId> {
        self.shard_id
    }
}

/// Builds a [`Config`]. Every setting left unset is read from the environment at
/// [`ConfigBuilder::build`] (unless [`ConfigBuilder::without_env`]), then from the defaults.
///
/// | variable | meaning | default |
/// |---|---|---|
/// | `REDIS_URL` | `redis://[user:password@]host:port[/db]`, or `rediss://` for TLS | |
/// | `REDIS_HOST`, `REDIS_PORT` | standalone server | `127.0.0.1`, `6379` |
/// | `REDIS_USERNAME`, `REDIS_PASSWORD` | credentials for the data nodes | none |
/// | `REDIS_DB` | database number | `0` |
/// | `REDIS_TLS_CA_FILE` | PEM file of the CA to trust for `rediss://` | system roots |
/// | `REDIS_SENTINELS` | `host:port,host:port` of the sentinels | |
/// | `REDIS_SENTINEL_NAME` | the master's name | |
/// | `REDIS_SENTINEL_USERNAME`, `REDIS_SENTINEL_PASSWORD` | credentials for the sentinels | none |
/// | `REDIS_CLUSTER_NODES` | `host:port,...` seed nodes of a cluster | |
/// | `KESTREL_SHARD_ID` | the shard id to set up (standalone and Sentinel) | stored one, else 1 |
/// | `KESTREL_GENERATOR` | generator name | `kestrel` |
/// | `KESTREL_SHARD_ID_KEY`, `KESTREL_LOCK_KEY`, ... | the original's key names (see below) | |
///
/// The module and this client derive a generator's three keys from its name, so the original's
/// key name variables must read `{NAME}-shard-id`, `{NAME}-generator-lock` and
/// `{NAME}-generator-sequence` for one NAME; they then set the generator name.
#[derive(Debug, Clone, Default)]
pub struct ConfigBuilder {
    url: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    username: Option<String>,
    password: Option<String>,
    database: Option<i64>,
    sentinels: Option<Vec<Address>>,
    master: Option<String>,
    sentinel_username: Option<String>,
    sentinel_password: Option<String>,
    cluster: Option<Vec<Address>>,
    tls_root_certificate: Option<Vec<u8>>,
    generator: Option<String>,
    shard_id: Option<i64>,
    connect_timeout: Option<Duration>,
    response_timeout: Option<Duration>,
    failover_timeout: Option<Duration>,
    script_only: bool,
    topology_refresh: Option<Duration>,
    without_env: bool,
}

impl ConfigBuilder {
    /// A standalone server as a URL: `redis://[user:password@]host:port[/db]` or `rediss://`.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// A standalone server's host.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// A standalone server's port.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// The ACL username for the data nodes.
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// The password for the data nodes.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// The database number (not used by Cluster).
    pub fn database(mut self, database: i64) -> Self {
        self.database = Some(database);
        self
    }

    /// Find the master through these sentinels, under `master` name.
    pub fn sentinel(mut self, sentinels: Vec<Address>, master: impl Into<String>) -> Self {
        self.sentinels = Some(sentinels);
        self.master = Some(master.into());
        self
    }

    /// Credentials for the sentinels, when they require their own.
    pub fn sentinel_credentials(
        mut self,
        username: Option<String>,
        password: Option<String>,
    ) -> Self {
        self.sentinel_username = username;
        self.sentinel_password = password;
        self
    }

    /// A Redis Cluster, found from these seed nodes.
    pub fn cluster(mut self, nodes: Vec<Address>) -> Self {
        self.cluster = Some(nodes);
        self
    }

    /// For `rediss://`: trust this CA certificate (PEM) instead of the system's roots.
    pub fn tls_root_certificate(mut self, pem: Vec<u8>) -> Self {
        self.tls_root_certificate = Some(pem);
        self
    }

    /// The generator name (default `kestrel`).
    pub fn generator(mut self, name: impl Into<String>) -> Self {
        self.generator = Some(name.into());
        self
    }

    /// The shard id to set up (1 to 1023).
    pub fn shard_id(mut self, shard_id: i64) -> Self {
        self.shard_id = Some(shard_id);
        self
    }

    /// How long to wait for a TCP connection and handshake (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// How long to wait for one reply (default 2 s).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = Some(timeout);
        self
    }

    /// How long a call keeps retrying while servers fail over (default 30 s).
    pub fn failover_timeout(mut self, timeout: Duration) -> Self {
        self.failover_timeout = Some(timeout);
        self
    }

    /// Use the Lua script even where the module is loaded (to compare the two, or to share a
    /// server with clients of the original library).
    pub fn script_only(mut self, script_only: bool) -> Self {
        self.script_only = script_only;
        self
    }

    /// Cluster: how often the topology is read again when nothing prompts it, so that a
    /// master added later gets a generator (default 30 s).
    pub fn topology_refresh(mut self, every: Duration) -> Self {
        self.topology_refresh = Some(every);
        self
    }

    /// Ignore the environment: only what the code set, then defaults.
    pub fn without_env(mut self) -> Self {
        self.without_env = true;
        self
    }

    /// Checks the settings and fills the unset ones from the environment and defaults.
    pub fn build(self) -> Result<Config, Error> {
        let without_env = self.without_env;
        let env = move |name: &str| -> Option<String> {
            if without_env {
                return None;
            }
            std::env::var(name).ok().filter(|value| !value.is_empty())
        };
        self.build_with(env)
    }

    fn build_with(self, env: impl Fn(&str) -> Option<String>) -> Result<Config, Error> {
        let env_number = |name: &str| -> Result<Option<i64>, Error> {
            env(name)
                .map(|text| {
                    text.trim()
                        .parse::<i64>()
                        .map_err(|_| Error::config(format!("{name}={text:?} is not an integer")))
                })
                .transpose()
        };

        // The URL, when there is one, gives the standalone address, credentials and database.
        let url = self.url.clone().or_else(|| env("REDIS_URL"));
        let parsed = url.as_deref().map(parse_url).transpose()?;
        let (url_address, url_credentials, url_database, tls) = match parsed {
            Some(parsed) => (
                Some(parsed.address),
                parsed.credentials,
                parsed.database,
                parsed.tls,
            ),
            None => (None, Credentials::default(), None, false),
        };

        let credentials = Credentials {
            username: self
                .username
                .or(url_credentials.username)
                .or_else(|| env("REDIS_USERNAME")),
            password: self
                .password
                .or(url_credentials.password)
                .or_else(|| env("REDIS_PASSWORD")),
        };
        let database = match self.database.or(url_database) {
            Some(database) => database,
            None => env_number("REDIS_DB")?.unwrap_or(0),
        };

        let sentinels = match self.sentinels {
            Some(sentinels) => Some(sentinels),
            None => env("REDIS_SENTINELS")
                .map(|text| Address::parse_list(&text))
                .transpose()?,
        };
        let cluster = match self.cluster {
            Some(nodes) => Some(nodes),
            None => env("REDIS_CLUSTER_NODES")
                .map(|text| Address::parse_list(&text))
                .transpose()?,
        };
        let topology = match (sentinels, cluster) {
            (Some(_), Some(_)) => {
                return Err(Error::config("choose Sentinel or Cluster, not both"));
            }
            (Some(sentinels), None) => {
                let master = self
                    .master
                    .or_else(|| env("REDIS_SENTINEL_NAME"))
                    .ok_or_else(|| Error::config("Sentinel needs the master's name"))?;
                if sentinels.is_empty() {
                    return Err(Error::config(
                        "Sentinel needs at least one sentinel address",
                    ));
                }
                Topology::Sentinel {
                    sentinels,
                    master,
                    credentials: Credentials {
                        username: self
                            .sentinel_username
                            .or_else(|| env("REDIS_SENTINEL_USERNAME")),
                        password: self
                            .sentinel_password
                            .or_else(|| env("REDIS_SENTINEL_PASSWORD")),
                    },
                }
            }
            (None, Some(nodes)) if nodes.is_empty() => {
                return Err(Error::config("Cluster needs at least one node address"));
            }
            (None, Some(nodes)) => Topology::Cluster(nodes),
            (None, None) => {
                let host = self.host.or_else(|| env("REDIS_HOST"));
                let port = match self.port {
                    Some(port) => Some(port),
                    None => env_number("REDIS_PORT")?
                        .map(|port| {
                            u16::try_from(port).map_err(|_| {
                                Error::config(format!("REDIS_PORT={port} is not a port"))
                            })
                        })
                        .transpose()?,
                };
                let address = match url_address {
                    Some(address) => address,
                    None => Address::new(
                        host.unwrap_or_else(|| "127.0.0.1".to_owned()),
                        port.unwrap_or(6379),
                    ),
                };
                Topology::Standalone(address)
            }
        };

        let tls_root_certificate = match self.tls_root_certificate {
            Some(pem) => Some(pem),
            None => env("REDIS_TLS_CA_FILE")
                .map(|path| {
                    std::fs::read(&path).map_err(|error| {
                        Error::config(format!("REDIS_TLS_CA_FILE={path:?}: {error}"))
                    })
                })
                .transpose()?,
        };

        let generator = match self.generator.or_else(|| env("KESTREL_GENERATOR")) {
            Some(name) => name,
            None => generator_from_key_names(&env)?,
        };
        check_generator_name(&generator)?;
        // The error names where the bad value came from.
        let (shard_id, source) = match self.shard_id {
            Some(shard) => (Some(shard), "shard_id"),
            None => (env_number("KESTREL_SHARD_ID")?, "KESTREL_SHARD_ID"),
        };
        let shard_id = shard_id
            .map(ShardId::new)
            .transpose()
            .map_err(|error| Error::config(format!("{source}: {error}")))?;

        Ok(Config {
            topology,
            credentials,
            database,
            tls,
            tls_root_certificate,
            generator,
            shard_id,
            connect_timeout: self.connect_timeout.unwrap_or(Duration::from_secs(2)),
            response_timeout: self.response_timeout.unwrap_or(Duration::from_secs(2)),
            failover_timeout: self.failover_timeout.unwrap_or(Duration::from_secs(30)),
            script_only: self.script_only,
            topology_refresh: self.topology_refresh.unwrap_or(Duration::from_secs(30)),
        })
    }
}

struct ParsedUrl {
    address: Address,
    credentials: Credentials,
    database: Option<i64>,
    tls: bool,
}

fn parse_url(text: &str) -> Result<ParsedUrl, Error> {
    let bad = |why: &str| Error::config(format!("bad Redis URL {text:?}: {why}"));
    let url = redis::parse_redis_url(text).ok_or_else(|| bad("expected redis:// or rediss://"))?;
    let tls = match url.scheme() {
        "redis" => false,
        "rediss" => true,
        _ => return Err(bad("expected redis:// or rediss://")),
    };
    let host = url
        .host_str()
        .ok_or_else(|| bad("no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let decode = |part: &str| -> Result<String, Error> {
        percent_decode(part)
            .ok_or_else(|| bad("the user or password is not valid percent-encoding"))
    };
    let username = Some(url.username())
        .filter(|name| !name.is_empty())
        .map(decode)
        .transpose()?;
    let password = url.password().map(decode).transpose()?;
    let database = match url.path().trim_matches('/') {
        "" => None,
        path => Some(
            path.parse::<i64>()
                .map_err(|_| bad("the path must be a database number"))?,
        ),
    };
    Ok(ParsedUrl {
        address: Address::new(host, url.port().unwrap_or(6379)),
        credentials: Credentials { username, password },
        database,
        tls,
    })
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = std::str::from_utf8(bytes.get(index + 1..index + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The original library names its keys with three variables; this client (and the module)
/// derive all three from one generator name, so the three must agree.
fn generator_from_key_names(env: &impl Fn(&str) -> Option<String>) -> Result<String, Error> {
    let keys = [
        ("KESTREL_SHARD_ID_KEY", "-shard-id"),
        ("KESTREL_LOCK_KEY", "-generator-lock"),
        ("KESTREL_SEQUENCE_KEY", "-generator-sequence"),
    ];
    let mut found: Option<String> = None;
    for (variable, suffix) in keys {
        let Some(key) = env(variable) else {
            continue;
        };
        let name = key
            .strip_suffix(suffix)
            .and_then(|tagged| tagged.strip_prefix('{'))
            .and_then(|tagged| tagged.strip_suffix('}'))
            .ok_or_else(|| {
                Error::config(format!(
                    "{variable}={key:?}: key names must be {{NAME}}{suffix}; set \
                     KESTREL_GENERATOR=NAME instead"
                ))
            })?;
        match &found {
            Some(other) if other != name => {
                return Err(Error::config(format!(
                    "the key name variables name two generators, {other:?} and {name:?}"
                )));
            }
            _ => found = Some(name.to_owned()),
        }
    }
    Ok(found.unwrap_or_else(|| DEFAULT_GENERATOR.to_owned()))
}

/// A generator name is the module's key: non-empty and without braces, so that the name and
/// its three state keys hash to one cluster slot.
pub(crate) fn check_generator_name(name: &str) -> Result<(), Error> {
    if name.is_empty() || name.contains(['{', '}']) {
        return Err(Error::config(format!(
            "generator name {name:?} must be non-empty and hold no braces"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn build(builder: ConfigBuilder, vars: &[(&str, &str)]) -> Result<Config, Error> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        builder.build_with(|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_to_the_local_server_and_the_original_generator() {
        let config = build(Config::builder(), &[]).unwrap();

        assert_eq!(
            config.topology,
            Topology::Standalone(Address::new("127.0.0.1", 6379))
        );
        assert_eq!(config.generator, "kestrel");
        assert_eq!(config.shard_id, None);
        assert_eq!(config.database, 0);
        assert!(!config.tls);
    }

    #[test]
    fn environment_fills_what_the_code_leaves_unset() {
        let vars = [
            ("REDIS_HOST", "db.internal"),
            ("REDIS_PORT", "6380"),
            ("REDIS_USERNAME", "svc"),
            ("REDIS_PASSWORD", "env-secret"),
            ("REDIS_DB", "3"),
            ("KESTREL_SHARD_ID", "9"),
        ];
        let config = build(Config::builder().password("code-secret"), &vars).unwrap();

        assert_eq!(
            config.topology,
            Topology::Standalone(Address::new("db.internal", 6380))
        );
        assert_eq!(config.credentials.username.as_deref(), Some("svc"));
        assert_eq!(config.credentials.password.as_deref(), Some("code-secret"));
        assert_eq!(config.database, 3);
        assert_eq!(config.shard_id.map(ShardId::get), Some(9));
    }

    #[test]
    fn urls_carry_credentials_database_and_tls() {
        let config = build(
            Config::builder().url("rediss://u%40x:p%3Aw@cache:7000/4"),
            &[],
        )
        .unwrap();

        assert_eq!(
            config.topology,
            Topology::Standalone(Address::new("cache", 7000))
        );
        assert_eq!(config.credentials.username.as_deref(), Some("u@x"));
        assert_eq!(config.credentials.password.as_deref(), Some("p:w"));
        assert_eq!(config.database, 4);
        assert!(config.tls);
    }

    #[test]
    fn sentinel_and_cluster_come_from_the_environment_too() {
        let sentinel = build(
            Config::builder(),
            &[
                ("REDIS_SENTINELS", "s1:26379, s2:26380"),
                ("REDIS_SENTINEL_NAME", "mymaster"),
                ("REDIS_SENTINEL_PASSWORD", "sentinel-secret"),
            ],
        )
        .unwrap();
        let cluster = build(Config::builder(), &[("REDIS_CLUSTER_NODES", "[::1]:7000")]).unwrap();

        match sentinel.topology {
            Topology::Sentinel {
                sentinels,
                master,
                credentials,
            } => {
                assert_eq!(
                    sentinels,
                    vec![Address::new("s1", 26379), Address::new("s2", 26380)]
                );
                assert_eq!(master, "mymaster");
                assert_eq!(credentials.password.as_deref(), Some("sentinel-secret"));
            }
            other => panic!("not sentinel: {other:?}"),
        }
        assert_eq!(
            cluster.topology,
            Topology::Cluster(vec![Address::new("::1", 7000)])
        );
    }

    #[test]
    fn the_original_key_variables_name_the_generator() {
        let vars = [
            ("KESTREL_SHARD_ID_KEY", "{orders}-shard-id"),
            ("KESTREL_LOCK_KEY", "{orders}-generator-lock"),
        ];
        let config = build(Config::builder(), &vars).unwrap();
        let mixed = build(
            Config::builder(),
            &[
                ("KESTREL_SHARD_ID_KEY", "{a}-shard-id"),
                ("KESTREL_LOCK_KEY", "{b}-generator-lock"),
            ],
        );
        let untagged = build(Config::builder(), &[("KESTREL_SHARD_ID_KEY", "shard")]);

        assert_eq!(config.generator, "orders");
        assert_eq!(mixed.unwrap_err().kind(), crate::ErrorKind::Config);
        assert_eq!(untagged.unwrap_err().kind(), crate::ErrorKind::Config);
    }

    #[test]
    fn bad_settings_are_config_errors() {
        let cases = [
            build(Config::builder().shard_id(0), &[]),
            build(Config::builder().shard_id(1024), &[]),
            build(Config::builder().url("http://x"), &[]),
            build(Config::builder().generator("a{b}"), &[]),
            build(Config::builder(), &[("REDIS_PORT", "99999")]),
            build(Config::builder(), &[("REDIS_SENTINELS", "s1:1")]),
            build(Config::builder().cluster(vec![]), &[]),
        ];
        for case in cases {
            assert_eq!(case.unwrap_err().kind(), crate::ErrorKind::Config);
        }
    }

    #[test]
    fn a_bad_shard_id_is_named_where_it_came_from() {
        let set = build(Config::builder().shard_id(5000), &[]).unwrap_err();
        let from_env = build(Config::builder(), &[("KESTREL_SHARD_ID", "5000")]).unwrap_err();

        assert!(set.to_string().starts_with("shard_id:"), "{set}");
        assert!(
            from_env.to_string().starts_with("KESTREL_SHARD_ID:"),
            "{from_env}"
        );
    }

    #[test]
    fn addresses_parse_and_print() {
        assert_eq!(Address::parse("h:1").unwrap(), Address::new("h", 1));
        assert_eq!(Address::parse("[::1]:2").unwrap().to_string(), "[::1]:2");
        assert!(Address::parse("nope").is_err());
        assert!(Address::parse(":1").is_err());
    }
}
