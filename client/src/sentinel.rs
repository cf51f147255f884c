//! Finding the master through Sentinel.

use std::time::Duration;

use futures_util::StreamExt;
use redis::Value;

use crate::config::{Address, Config, Credentials};
use crate::error::{Error, ErrorKind};
use crate::events::Events;
use crate::node::{self, Node};

/// Asks the sentinels, in order, for the master's address, connects, and checks that the
/// server it reaches really is a master (during a failover the answer can lag behind).
pub(crate) async fn locate_master(
    sentinels: &[Address],
    master: &str,
    credentials: &Credentials,
    config: &Config,
    events: &Events,
) -> Result<Node, Error> {
    let mut last = Error::config("no sentinels to ask");
    for sentinel in sentinels {
        match ask(sentinel, master, credentials, config).await {
            Ok(address) => match check_master(&address, config, events).await {
                Ok(node) => return Ok(node),
                Err(error) => last = error,
            },
            Err(error) => {
                tracing::debug!(%sentinel, %error, "kestrel: sentinel did not answer");
                last = error;
            }
        }
    }
    Err(last)
}

async fn ask(
    sentinel: &Address,
    master: &str,
    credentials: &Credentials,
    config: &Config,
) -> Result<Address, Error> {
    let shown = sentinel.to_string();
    let mut connection = node::open(sentinel, config, credentials, 0).await?;
    let reply: Value = redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg(master)
        .query_async(&mut connection)
        .await
        .map_err(|error| Error::from_redis(&shown, &error))?;
    let fields: Option<(String, u16)> = redis::from_redis_value(reply)
        .map_err(|error| Error::protocol(format!("{shown}: {error}")))?;
    let (host, port) = fields.ok_or_else(|| {
        Error::new(
            ErrorKind::Config,
            format!("sentinel {shown} knows no master named {master:?}"),
        )
    })?;
    Ok(Address::new(host, port))
}

async fn check_master(address: &Address, config: &Config, events: &Events) -> Result<Node, Error> {
    let node = Node::connect(address, config, events).await?;
    match node.role().await {
        Ok(role) if role == "master" => Ok(node),
        Ok(role) => Err(Error::new(
            ErrorKind::Topology,
            format!("sentinels name {address} as master but it is a {role}; failover under way"),
        )),
        // A user without ROLE: trust the sentinels; a write will answer READONLY if wrong.
        Err(error) if error.kind() == ErrorKind::Permission => Ok(node),
        Err(error) => Err(error),
    }
}

/// Listens on the sentinels' `+switch-master` channel and calls `switched` when `master`
/// moves, so that calls leave the old master at once instead of writing to it until it is
/// demoted. Returns when `alive` says the client is gone.
pub(crate) async fn watch_switches(
    sentinels: Vec<Address>,
    master: String,
    credentials: Credentials,
    config: Config,
    alive: impl Fn() -> bool,
    switched: impl Fn(String),
) {
    let prefix = format!("{master} ");
    let mut attempt: u32 = 0;
    while alive() {
        for sentinel in &sentinels {
            let client = match node::client(sentinel, &config, &credentials, 0) {
                Ok(client) => client,
                Err(error) => {
                    tracing::debug!(%sentinel, %error, "kestrel: sentinel watch");
                    continue;
                }
            };
            let mut pubsub = match client.get_async_pubsub().await {
                Ok(pubsub) => pubsub,
                Err(error) => {
                    tracing::debug!(%sentinel, %error, "kestrel: sentinel watch");
                    continue;
                }
            };
            if pubsub.subscribe("+switch-master").await.is_err() {
                continue;
            }
            tracing::debug!(%sentinel, "kestrel: watching for master switches");
            attempt = 0;
            let mut messages = pubsub.on_message();
            loop {
                let message = tokio::time::timeout(Duration::from_secs(1), messages.next()).await;
                if !alive() {
                    return;
                }
                match message {
                    Ok(Some(message)) => {
                        let payload: String = message.get_payload().unwrap_or_default();
                        if payload.starts_with(&prefix) {
                            switched(payload);
                        }
                    }
                    // The sentinel went away: try the next one.
                    Ok(None) => break,
                    Err(_quiet_second) => {}
                }
            }
        }
        attempt = attempt.saturating_add(1);
        tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt.min(10)))).await;
    }
}
