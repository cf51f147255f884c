//! One connection to one Redis server, and the two ways to get IDs from it: the module's
//! commands where the module is loaded, the Lua script everywhere else.

use std::sync::LazyLock;

use kestrel_core::{Batch, Id, Position, ShardId, MAX_SEQUENCE, MAX_SHARD_ID, MIN_SHARD_ID};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, RedisConnectionInfo, Value};

use crate::config::{Address, Config, Credentials};
use crate::error::{Error, ErrorKind};
use crate::events::{Event, Events};

/// The SHA1 of the script, the name EVALSHA knows it by.
static SCRIPT_SHA: LazyLock<String> = LazyLock::new(|| {
    redis::Script::new(kestrel_core::SCRIPT)
        .get_hash()
        .to_owned()
});

/// The most IDs one module call hands out (the module's default `max-batch`).
pub(crate) const MODULE_MAX_BATCH: u64 = 65_536;

/// The most IDs one script call hands out: one millisecond's worth.
pub(crate) const SCRIPT_MAX_BATCH: u64 = MAX_SEQUENCE as u64 + 1;

/// How a node makes IDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Path {
    /// `KESTREL.ID` / `KESTREL.IDS` from the loaded module.
    Module,
    /// The Lua script by EVALSHA.
    Script,
}

impl Path {
    /// `"module"` or `"script"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Module => "module",
            Self::Script => "script",
        }
    }
}

/// The generator's three keys.
pub(crate) struct Keys {
    pub(crate) shard_id: String,
    pub(crate) lock: String,
    pub(crate) sequence: String,
}

impl Keys {
    pub(crate) fn of(generator: &str) -> Self {
        Self {
            shard_id: format!("{{{generator}}}-shard-id"),
            lock: format!("{{{generator}}}-generator-lock"),
            sequence: format!("{{{generator}}}-generator-sequence"),
        }
    }
}

/// An open connection to one server, with the path it uses.
#[derive(Clone)]
pub(crate) struct Node {
    pub(crate) address: Address,
    pub(crate) path: Path,
    connection: MultiplexedConnection,
    events: Events,
}

impl Node {
    /// Connects to a data node and finds whether it has the module.
    pub(crate) async fn connect(
        address: &Address,
        config: &Config,
        events: &Events,
    ) -> Result<Self, Error> {
        let connection = open(address, config, &config.credentials, config.database).await?;
        let mut node = Self {
            address: address.clone(),
            path: Path::Script,
            connection,
            events: events.clone(),
        };
        node.path = if config.script_only {
            Path::Script
        } else {
            node.detect_path(&config.generator).await?
        };
        events.emit(Event::Connected {
            address: address.to_string(),
            module: node.path == Path::Module,
        });
        Ok(node)
    }

    /// Sends one command and classifies any failure.
    pub(crate) async fn query<T: redis::FromRedisValue>(
        &self,
        command: &redis::Cmd,
    ) -> Result<T, Error> {
        let mut connection = self.connection.clone();
        command
            .query_async(&mut connection)
            .await
            .map_err(|error| Error::from_redis(&self.address.to_string(), &error))
    }

    /// Sends one command, preceded by ASKING when a cluster node redirected the call here
    /// with ASK (a slot being imported).
    async fn send<T: redis::FromRedisValue>(
        &self,
        command: &redis::Cmd,
        asking: bool,
    ) -> Result<T, Error> {
        if !asking {
            return self.query(command).await;
        }
        let mut pipeline = redis::pipe();
        pipeline.cmd("ASKING").ignore().add_command(command.clone());
        let mut connection = self.connection.clone();
        let (reply,): (T,) = pipeline
            .query_async(&mut connection)
            .await
            .map_err(|error| Error::from_redis(&self.address.to_string(), &error))?;
        Ok(reply)
    }

    /// The module answers `KESTREL.STATUS`; a server without it calls the command unknown.
    /// Redis looks a command up before it checks the user's rights or routes the key, so any
    /// other answer proves the module is there: an error from the module (KESTREL_NOSHARD
    /// and friends), NOPERM (the user may not run the command, or not on this generator; the
    /// calls that follow report it), or a cluster redirect.
    async fn detect_path(&self, generator: &str) -> Result<Path, Error> {
        let status = redis::cmd("KESTREL.STATUS")
            .arg("GENERATOR")
            .arg(generator)
            .to_owned();
        match self.query::<Value>(&status).await {
            Ok(_) => Ok(Path::Module),
            Err(error) if is_unknown_command(&error) => Ok(Path::Script),
            Err(error)
                if matches!(error.kind(), ErrorKind::Permission | ErrorKind::Topology)
                    || error
                        .code()
                        .is_some_and(|code| code.starts_with("KESTREL_")) =>
            {
                Ok(Path::Module)
            }
            Err(error) => Err(error),
        }
    }

    /// The shard id stored in `{generator}-shard-id`, or `None` when the key is missing. Users
    /// limited to the module's commands read it through `KESTREL.STATUS` instead.
    pub(crate) async fn stored_shard_id(&self, generator: &str) -> Result<Option<ShardId>, Error> {
        let key = Keys::of(generator).shard_id;
        let text: Option<String> = match self.query(redis::cmd("GET").arg(&key)).await {
            Ok(text) => text,
            Err(error) if error.kind() == ErrorKind::Permission && self.path == Path::Module => {
                return self.status(generator).await.map(|status| status.shard_id);
            }
            Err(error) => return Err(error),
        };
        text.map(|text| {
            text.parse::<i64>()
                .ok()
                .and_then(|value| ShardId::new(value).ok())
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::Shard,
                        format!(
                            "{}: key {key} holds {text:?}, not a shard id from {MIN_SHARD_ID} \
                             to {MAX_SHARD_ID}",
                            self.address
                        ),
                    )
                })
        })
        .transpose()
    }

    /// Writes the shard id only when the key is missing; returns whether it wrote.
    pub(crate) async fn claim_shard_id(
        &self,
        generator: &str,
        shard: ShardId,
    ) -> Result<bool, Error> {
        let key = Keys::of(generator).shard_id;
        let reply: Option<String> = self
            .query(redis::cmd("SET").arg(&key).arg(shard.get()).arg("NX"))
            .await?;
        Ok(reply.is_some())
    }

    /// One server call: up to `count` IDs, which must fit one call on this path. `fence_ms`
    /// asks the script to use no millisecond below it (after a failover lost writes).
    pub(crate) async fn generate(
        &self,
        generator: &str,
        count: u64,
        fence_ms: Option<u64>,
        asking: bool,
    ) -> Result<Vec<Batch>, Error> {
        match self.path {
            Path::Module if count == 1 => {
                let command = redis::cmd("KESTREL.ID")
                    .arg("GENERATOR")
                    .arg(generator)
                    .to_owned();
                let value: i64 = self.send(&command, asking).await?;
                let id = Id::from_i64(value).map_err(|error| Error::protocol(error.to_string()))?;
                Ok(vec![batch_from_run(id, 1)?])
            }
            Path::Module => {
                let command = redis::cmd("KESTREL.IDS")
                    .arg(count)
                    .arg("GENERATOR")
                    .arg(generator)
                    .arg("FORMAT")
                    .arg("RANGES")
                    .to_owned();
                let runs: Vec<(String, u64)> = self.send(&command, asking).await?;
                runs.into_iter()
                    .map(|(first, count)| {
                        let id = first.parse::<Id>().map_err(|error| {
                            Error::protocol(format!("KESTREL.IDS run {first:?}: {error}"))
                        })?;
                        batch_from_run(id, count)
                    })
                    .collect()
            }
            Path::Script => {
                let reply = self.run_script(generator, count, fence_ms, asking).await?;
                Ok(vec![batch_from_script_reply(&reply)?])
            }
        }
    }

    /// EVALSHA; on NOSCRIPT, SCRIPT LOAD and one more EVALSHA. NOSCRIPT means nothing ran, so
    /// no batch is taken twice.
    async fn run_script(
        &self,
        generator: &str,
        count: u64,
        fence_ms: Option<u64>,
        asking: bool,
    ) -> Result<Vec<i64>, Error> {
        let keys = Keys::of(generator);
        let mut command = redis::cmd("EVALSHA");
        command
            .arg(SCRIPT_SHA.as_str())
            .arg(3)
            .arg(&keys.lock)
            .arg(&keys.sequence)
            .arg(&keys.shard_id)
            .arg(MAX_SEQUENCE)
            .arg(MIN_SHARD_ID)
            .arg(MAX_SHARD_ID)
            .arg(count);
        if let Some(fence_ms) = fence_ms {
            command.arg(fence_ms);
        }
        match self.send(&command, asking).await {
            Err(error) if error.code() == Some("NOSCRIPT") => {
                let loaded: String = self
                    .query(redis::cmd("SCRIPT").arg("LOAD").arg(kestrel_core::SCRIPT))
                    .await?;
                if loaded != *SCRIPT_SHA {
                    return Err(Error::protocol(format!(
                        "{}: SCRIPT LOAD answered SHA {loaded}, expected {}",
                        self.address, *SCRIPT_SHA
                    )));
                }
                self.events.emit(Event::ScriptLoaded {
                    address: self.address.to_string(),
                });
                self.send(&command, asking).await
            }
            other => other,
        }
    }

    /// The generator's state on this node.
    pub(crate) async fn status(&self, generator: &str) -> Result<GeneratorStatus, Error> {
        match self.path {
            Path::Module => {
                let command = redis::cmd("KESTREL.STATUS")
                    .arg("GENERATOR")
                    .arg(generator)
                    .to_owned();
                let reply: Value = self.query(&command).await?;
                let fields = status_fields(reply);
                let field = |name: &str| {
                    fields
                        .iter()
                        .find(|(field, _)| field == name)
                        .and_then(|(_, value)| *value)
                };
                Ok(GeneratorStatus {
                    shard_id: field("shard-id").and_then(|shard| ShardId::new(shard).ok()),
                    last_ms: field("last-ms").and_then(|ms| u64::try_from(ms).ok()),
                    lead_ms: field("lead-ms"),
                })
            }
            Path::Script => {
                let keys = Keys::of(generator);
                let (shard, lock): (Option<i64>, Option<i64>) = self
                    .query(redis::cmd("MGET").arg(&keys.shard_id).arg(&keys.lock))
                    .await?;
                let (seconds, micros): (i64, i64) = self.query(&redis::cmd("TIME")).await?;
                let clock_ms = seconds * 1000 + micros / 1000;
                Ok(GeneratorStatus {
                    shard_id: shard.and_then(|shard| ShardId::new(shard).ok()),
                    last_ms: lock.and_then(|ms| u64::try_from(ms).ok()),
                    lead_ms: lock.map(|ms| (ms - clock_ms).max(0)),
                })
            }
        }
    }

    /// `master` or `slave`, from ROLE.
    pub(crate) async fn role(&self) -> Result<String, Error> {
        let reply: Vec<Value> = self.query(&redis::cmd("ROLE")).await?;
        match reply.first() {
            Some(Value::BulkString(bytes)) => Ok(String::from_utf8_lossy(bytes).into_owned()),
            Some(Value::SimpleString(text)) => Ok(text.clone()),
            _ => Err(Error::protocol(format!(
                "{}: unexpected ROLE reply",
                self.address
            ))),
        }
    }
}

/// What `status` shows for one generator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GeneratorStatus {
    pub(crate) shard_id: Option<ShardId>,
    pub(crate) last_ms: Option<u64>,
    pub(crate) lead_ms: Option<i64>,
}

/// `KESTREL.STATUS` field/value pairs (a flat array, or a map under RESP3), numbers only.
fn status_fields(reply: Value) -> Vec<(String, Option<i64>)> {
    let pairs: Vec<(Value, Value)> = match reply {
        Value::Map(pairs) => pairs,
        Value::Array(items) => {
            let mut items = items.into_iter();
            let mut pairs = Vec::new();
            while let (Some(name), Some(value)) = (items.next(), items.next()) {
                pairs.push((name, value));
            }
            pairs
        }
        _ => Vec::new(),
    };
    pairs
        .into_iter()
        .filter_map(|(name, value)| {
            let name: String = redis::from_redis_value(name).ok()?;
            let number = match value {
                Value::Int(number) => Some(number),
                Value::BulkString(bytes) => std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(|text| text.parse().ok()),
                Value::SimpleString(text) => text.parse().ok(),
                _ => None,
            };
            Some((name, number))
        })
        .collect()
}

fn is_unknown_command(error: &Error) -> bool {
    error
        .to_string()
        .to_ascii_lowercase()
        .contains("unknown command")
}

/// A `redis` client for one server with these credentials.
pub(crate) fn client(
    address: &Address,
    config: &Config,
    credentials: &Credentials,
    database: i64,
) -> Result<Client, Error> {
    let addr = if config.tls {
        ConnectionAddr::TcpTls {
            host: address.host.clone(),
            port: address.port,
            insecure: false,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(address.host.clone(), address.port)
    };
    let mut settings = RedisConnectionInfo::default()
        .set_db(database)
        .set_skip_set_lib_name();
    if let Some(username) = &credentials.username {
        settings = settings.set_username(username);
    }
    if let Some(password) = &credentials.password {
        settings = settings.set_password(password);
    }
    let shown = address.to_string();
    let info = redis::IntoConnectionInfo::into_connection_info(addr)
        .map_err(|error| Error::from_redis(&shown, &error))?
        .set_redis_settings(settings);
    let client = match &config.tls_root_certificate {
        #[cfg(feature = "tls")]
        Some(pem) if config.tls => {
            let certificates = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.clone()),
            };
            Client::build_with_tls(info, certificates)
        }
        _ => Client::open(info),
    };
    client.map_err(|error| Error::from_redis(&shown, &error))
}

/// Opens a multiplexed connection, telling an unknown host, a refused connection and bad
/// credentials apart.
pub(crate) async fn open(
    address: &Address,
    config: &Config,
    credentials: &Credentials,
    database: i64,
) -> Result<MultiplexedConnection, Error> {
    let client = client(address, config, credentials, database)?;
    let options = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(config.connect_timeout))
        .set_response_timeout(Some(config.response_timeout));
    match client
        .get_multiplexed_async_connection_with_config(&options)
        .await
    {
        Ok(connection) => Ok(connection),
        Err(error) => {
            let error = Error::from_redis(&address.to_string(), &error);
            if error.kind() == ErrorKind::Connection && !resolves(address).await {
                return Err(Error::new(
                    ErrorKind::UnknownHost,
                    format!("unknown host {:?}: the name does not resolve", address.host),
                ));
            }
            tracing::debug!(%error, "kestrel: connect failed");
            Err(error)
        }
    }
}

async fn resolves(address: &Address) -> bool {
    tokio::net::lookup_host((address.host.as_str(), address.port))
        .await
        .is_ok_and(|mut found| found.next().is_some())
}

/// A run of `count` consecutive IDs from `first`, as the module's RANGES reply gives them.
pub(crate) fn batch_from_run(first: Id, count: u64) -> Result<Batch, Error> {
    let shard = ShardId::new(i64::from(first.shard_id()))
        .map_err(|error| Error::protocol(format!("ID {first}: {error}")))?;
    let start = Position::new(first.unix_ms(), first.sequence());
    Batch::new(shard, start, count)
        .ok_or_else(|| Error::protocol(format!("a run of {count} IDs from {first} is not valid")))
}

/// The script's reply: start sequence, end sequence, shard id, seconds, microseconds.
pub(crate) fn batch_from_script_reply(reply: &[i64]) -> Result<Batch, Error> {
    let bad = || Error::protocol(format!("unexpected script reply {reply:?}"));
    let &[start, end, shard, seconds, micros] = reply else {
        return Err(bad());
    };
    let shard = ShardId::new(shard).map_err(|_| bad())?;
    let unix_ms = u64::try_from(seconds * 1000 + micros / 1000).map_err(|_| bad())?;
    let start_sequence = u16::try_from(start).map_err(|_| bad())?;
    let count = u64::try_from(end - start + 1).map_err(|_| bad())?;
    if start_sequence > MAX_SEQUENCE || end > i64::from(MAX_SEQUENCE) {
        return Err(bad());
    }
    Batch::new(shard, Position::new(unix_ms, start_sequence), count).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_reply_becomes_the_contract_batch() {
        let reply = [0, 2, 1, 1_796_397_602, 47_000];
        let batch = batch_from_script_reply(&reply).unwrap();
        let ids: Vec<String> = batch.ids().map(|id| id.to_string()).collect();

        assert_eq!(ids[0], "1446325212348944384");
        assert_eq!(ids.len(), 3);
        assert_eq!(batch.last_id().sequence(), 2);
    }

    #[test]
    fn bad_script_replies_are_protocol_errors() {
        let cases: [&[i64]; 4] = [
            &[0, 2, 1, 1_796_397_602],
            &[3, 2, 1, 1_796_397_602, 0],
            &[0, 4096, 1, 1_796_397_602, 0],
            &[0, 1, 0, 1_796_397_602, 0],
        ];
        for reply in cases {
            assert_eq!(
                batch_from_script_reply(reply).unwrap_err().kind(),
                ErrorKind::Protocol
            );
        }
    }

    #[test]
    fn ranges_become_batches() {
        let first: Id = "1446325212348944384".parse().unwrap();
        let batch = batch_from_run(first, 4096).unwrap();

        assert_eq!(batch.count(), 4096);
        assert_eq!(batch.last_id().sequence(), 4095);
        assert_eq!(batch.last_id().unix_ms(), first.unix_ms());
    }

    #[test]
    fn status_fields_keep_the_numbers() {
        let text = |text: &str| Value::BulkString(text.as_bytes().to_vec());
        let reply = Value::Array(vec![
            text("generator"),
            text("kestrel"),
            text("shard-id"),
            Value::Int(9),
            text("lead-ms"),
            text("12"),
            text("last-ms"),
            Value::Nil,
        ]);
        let fields = status_fields(reply);

        assert_eq!(fields[0], ("generator".to_owned(), None));
        assert_eq!(fields[1], ("shard-id".to_owned(), Some(9)));
        assert_eq!(fields[2], ("lead-ms".to_owned(), Some(12)));
        assert_eq!(fields[3], ("last-ms".to_owned(), None));
    }

    #[test]
    fn keys_share_the_generator_tag() {
        let keys = Keys::of("orders");

        assert_eq!(keys.shard_id, "{orders}-shard-id");
        assert_eq!(keys.lock, "{orders}-generator-lock");
        assert_eq!(keys.sequence, "{orders}-generator-sequence");
    }
}
