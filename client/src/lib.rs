//! A client for Kestrel: 64-bit, time-ordered unique IDs from Redis, through the Kestrel
//! module's commands where a server has the module loaded and through the compatible Lua
//! script everywhere else. Standalone servers, Sentinel and Redis Cluster.
//!
//! ```no_run
//! use kestrel_client::{Config, Kestrel};
//!
//! # async fn run() -> Result<(), kestrel_client::Error> {
//! let kestrel = Kestrel::connect(Config::builder().url("redis://127.0.0.1:6379").build()?).await?;
//! let id = kestrel.get_id().await?;
//! let ids = kestrel.get_ids(1_000).await?;
//! println!("{id} then {} more, made at Unix ms {}", ids.len(), id.unix_ms());
//! # Ok(())
//! # }
//! ```
//!
//! IDs print and parse as decimal strings, and decode without a server:
//!
//! ```
//! use kestrel_client::Id;
//!
//! let id: Id = "1446325212348944384".parse()?;
//! assert_eq!((id.unix_ms(), id.shard_id(), id.sequence()), (1_796_397_602_047, 1, 0));
//! assert_eq!(id.to_string(), "1446325212348944384");
//! # Ok::<(), kestrel_client::LayoutError>(())
//! ```
//!
//! With the `serde` feature, [`Id`] serialises as its decimal string (JSON readers such as
//! JavaScript's round integers above 2^53, and every ID is above it). The default `tls`
//! feature brings `rediss://` URLs through rustls.

mod cluster;
mod config;
mod error;
mod events;
mod node;
mod sentinel;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

pub use kestrel_core::{Batch, Id, LayoutError, ShardId};
use tokio::sync::broadcast;

pub use crate::config::{Address, Config, ConfigBuilder, Credentials, Topology, DEFAULT_GENERATOR};
pub use crate::error::{Error, ErrorKind};
pub use crate::events::Event;
pub use crate::node::Path;

use crate::error::Retry;
use crate::events::Events;
use crate::node::{Node, MODULE_MAX_BATCH, SCRIPT_MAX_BATCH};

/// A connected client. Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct Kestrel {
    shared: Arc<Shared>,
}

struct Shared {
    config: Config,
    events: Events,
    plan: RwLock<Option<Arc<Plan>>>,
    /// Held while the servers are found again, so that one call does it and the rest wait.
    rediscovery: tokio::sync::Mutex<()>,
    epochs: AtomicU64,
    turn: AtomicUsize,
    /// The largest ID handed out so far, per generator: the fence a server that lost writes
    /// in a failover must get past before its IDs are trusted again.
    seen: Mutex<HashMap<String, u64>>,
}

/// Where calls go: one route per generator (one in standalone and Sentinel, one per master
/// in Cluster).
struct Plan {
    epoch: u64,
    routes: Vec<Route>,
    /// A cluster plan that left out an unreachable master is redone after this instant.
    redo_after: Option<Instant>,
    /// Connections to nodes that ASK redirects named, which are not masters in the plan.
    asking: Mutex<HashMap<Address, Node>>,
}

struct Route {
    node: Node,
    generator: String,
    shard: ShardId,
    /// Set once this route has handed out IDs above every ID seen before it was planned.
    past_fence: AtomicBool,
}

/// One generator in the plan: where it lives and its shard id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanEntry {
    /// The master serving the generator.
    pub address: Address,
    /// The generator name (the module's key).
    pub generator: String,
    /// Its logical shard id.
    pub shard_id: ShardId,
    /// Module or script.
    pub path: Path,
}

/// One generator's state, as `status` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// The node.
    pub address: Address,
    /// `master` or `slave` (Redis's word), or `unknown` when ROLE is not allowed.
    pub role: String,
    /// Module or script.
    pub path: Path,
    /// The generator name.
    pub generator: String,
    /// The stored (or module-configured) shard id.
    pub shard_id: Option<ShardId>,
    /// The last millisecond the generator used, as Unix ms.
    pub last_ms: Option<u64>,
    /// How far that is ahead of the server's clock, in ms.
    pub lead_ms: Option<i64>,
}

impl Kestrel {
    /// Connects, finds module or script on every master, and sets up shard ids: in
    /// standalone and Sentinel the configured one is written only where none is stored, and
    /// a different stored one is an error; in Cluster every master gets its own generator
    /// and a shard id unique in the cluster. Failures here are returned at once, not retried.
    pub async fn connect(config: Config) -> Result<Self, Error> {
        let shared = Arc::new(Shared {
            config,
            events: Events::new(),
            plan: RwLock::new(None),
            rediscovery: tokio::sync::Mutex::new(()),
            epochs: AtomicU64::new(0),
            turn: AtomicUsize::new(0),
            seen: Mutex::new(HashMap::new()),
        });
        let kestrel = Self { shared };
        let plan = kestrel.discover(None).await?;
        kestrel.install(plan);
        kestrel.watch_sentinels();
        Ok(kestrel)
    }

    /// Lifecycle events from now on. A receiver that falls behind loses the oldest ones.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// One ID.
    pub async fn get_id(&self) -> Result<Id, Error> {
        let batches = self.take(1).await?;
        batches
            .first()
            .map(Batch::first_id)
            .ok_or_else(|| Error::protocol("the server returned no ID"))
    }

    /// `count` IDs, taken in as few server calls as the path allows (65536 per module call,
    /// 4096 per script call). Within each server call the IDs increase; in Cluster, calls go
    /// to the masters in turn.
    pub async fn get_ids(&self, count: usize) -> Result<Vec<Id>, Error> {
        let mut ids = Vec::with_capacity(count);
        for batch in self.get_batches(count as u64).await? {
            ids.extend(batch.ids());
        }
        Ok(ids)
    }

    /// Like [`Kestrel::get_ids`], but as compact runs of consecutive places, without
    /// expanding each ID.
    pub async fn get_batches(&self, count: u64) -> Result<Vec<Batch>, Error> {
        if count == 0 {
            return Err(Error::input("ask for at least one ID"));
        }
        let mut batches = Vec::new();
        let mut left = count;
        while left > 0 {
            for batch in self.take(left).await? {
                left = left.saturating_sub(batch.count());
                batches.push(batch);
            }
        }
        Ok(batches)
    }

    /// The generators in use and their shard ids.
    pub async fn plan(&self) -> Result<Vec<PlanEntry>, Error> {
        let plan = self.current_plan().await?;
        Ok(plan
            .routes
            .iter()
            .map(|route| PlanEntry {
                address: route.node.address.clone(),
                generator: route.generator.clone(),
                shard_id: route.shard,
                path: route.node.path,
            })
            .collect())
    }

    /// The state of every generator in the plan.
    pub async fn status(&self) -> Result<Vec<NodeStatus>, Error> {
        let plan = self.current_plan().await?;
        let mut statuses = Vec::with_capacity(plan.routes.len());
        for route in &plan.routes {
            let role = match route.node.role().await {
                Ok(role) => role,
                Err(error) if error.kind() == ErrorKind::Permission => "unknown".to_owned(),
                Err(error) => return Err(error),
            };
            let status = route.node.status(&route.generator).await?;
            statuses.push(NodeStatus {
                address: route.node.address.clone(),
                role,
                path: route.node.path,
                generator: route.generator.clone(),
                shard_id: status.shard_id,
                last_ms: status.last_ms,
                lead_ms: status.lead_ms,
            });
        }
        Ok(statuses)
    }

    /// One server call's worth of IDs (at most `wanted`), retried until it succeeds, fails for
    /// good, or the failover timeout passes.
    async fn take(&self, wanted: u64) -> Result<Vec<Batch>, Error> {
        let started = Instant::now();
        let mut attempt: u32 = 0;
        let mut wanted = wanted.min(MODULE_MAX_BATCH);
        loop {
            let result = match self.current_plan().await {
                Ok(plan) => self
                    .take_from(&plan, wanted)
                    .await
                    .map_err(|error| (error, Some(plan))),
                Err(error) => Err((error, None)),
            };
            let (error, plan) = match result {
                Ok(batches) => return Ok(batches),
                Err(failure) => failure,
            };
            let waited = started.elapsed();
            let pause = match error.retry() {
                Retry::Never => {
                    self.shared.events.emit(Event::Error {
                        message: error.to_string(),
                    });
                    return Err(error);
                }
                // A batch spanning several milliseconds runs ahead of the clock (right after a
                // fence a generator can only follow it); one that fits a millisecond is the
                // most that waiting can always make room for, so this call takes that and the
                // caller comes back for the rest. The next call tries a whole batch again.
                Retry::After(_) if error.kind() == ErrorKind::Lead && wanted > SCRIPT_MAX_BATCH => {
                    wanted = SCRIPT_MAX_BATCH;
                    Duration::ZERO
                }
                Retry::After(pause) => pause,
                Retry::Rediscover => {
                    if let Some(plan) = plan {
                        self.drop_plan(Some(plan.epoch), &error);
                    }
                    backoff(attempt)
                }
            };
            let timeout = self.shared.config.failover_timeout;
            if waited.saturating_add(pause) > timeout {
                self.shared.events.emit(Event::Error {
                    message: error.to_string(),
                });
                if error.kind() == ErrorKind::Lead {
                    return Err(Error::lead_too_long(waited, pause, timeout, &error));
                }
                return Err(Error::timeout(waited, &error));
            }
            tracing::debug!(%error, attempt, "kestrel: retrying");
            attempt = attempt.saturating_add(1);
            tokio::time::sleep(pause).await;
        }
    }

    async fn take_from(&self, plan: &Plan, wanted: u64) -> Result<Vec<Batch>, Error> {
        let turn = self.shared.turn.fetch_add(1, Ordering::Relaxed);
        let route = &plan.routes[turn % plan.routes.len()];
        let count = wanted.min(max_batch(route.node.path));
        let (node, asking) = match route
            .node
            .generate(&route.generator, count, None, false)
            .await
        {
            Ok(batches) => {
                return self
                    .checked(route, &route.node, false, count, batches)
                    .await
            }
            // The slot is moving and its keys are already on the importing node: ask there.
            Err(error) if error.code() == Some("ASK") => {
                let Some(target) = error.redirect().cloned() else {
                    return Err(error);
                };
                (self.asking_node(plan, &target).await?, true)
            }
            Err(error) => return Err(error),
        };
        let count = count.min(max_batch(node.path));
        let batches = match node.generate(&route.generator, count, None, asking).await {
            Ok(batches) => batches,
            // The module's commands name the generator as their key, a key that never exists,
            // so the source sends them here before the state keys have moved. Wait for them.
            Err(error) if error.kind() == ErrorKind::Shard => {
                tracing::debug!(%error, "kestrel: generator state not on the importing node yet");
                return Err(Error::lead(Duration::from_millis(10)));
            }
            Err(error) => return Err(error),
        };
        self.checked(route, &node, asking, count, batches).await
    }

    /// A connection to the node an ASK redirect names, kept with the plan while it lasts.
    async fn asking_node(&self, plan: &Plan, target: &Address) -> Result<Node, Error> {
        let known = plan
            .routes
            .iter()
            .map(|route| &route.node)
            .find(|node| node.address == *target)
            .cloned();
        if let Some(node) = known {
            return Ok(node);
        }
        let cached = plan
            .asking
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(target)
            .cloned();
        if let Some(node) = cached {
            return Ok(node);
        }
        let node = Node::connect(target, &self.shared.config, &self.shared.events).await?;
        plan.asking
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(target.clone(), node.clone());
        Ok(node)
    }

    /// Accepts a route's answer, or after a failover that lost writes asks again past the IDs
    /// already handed out.
    async fn checked(
        &self,
        route: &Route,
        node: &Node,
        asking: bool,
        count: u64,
        mut batches: Vec<Batch>,
    ) -> Result<Vec<Batch>, Error> {
        // After a failover the new master may lack the last writes of the old one. Until this
        // route has been seen past every ID handed out before, check each answer against them.
        if !route.past_fence.load(Ordering::Acquire) {
            let fence = self.seen(&route.generator);
            let first = batches
                .first()
                .map_or(0, |batch| batch.first_id().as_i64() as u64);
            if first <= fence {
                let fence_id =
                    Id::from_i64(fence as i64).map_err(|e| Error::protocol(e.to_string()))?;
                tracing::info!(
                    generator = %route.generator,
                    master = %node.address,
                    %fence_id,
                    "kestrel: server state is behind IDs already handed out; fencing"
                );
                batches = match node.path {
                    Path::Script => {
                        let fence_ms = fence_id.unix_ms() + 1;
                        node.generate(&route.generator, count, Some(fence_ms), asking)
                            .await?
                    }
                    Path::Module => {
                        let behind = fence_id.unix_ms().saturating_sub(first_ms(&batches)) + 1;
                        return Err(Error::lead(Duration::from_millis(behind)));
                    }
                };
            }
            route.past_fence.store(true, Ordering::Release);
        }
        if let Some(last) = batches.last() {
            self.note_seen(&route.generator, last.last_id());
        }
        Ok(batches)
    }

    fn seen(&self, generator: &str) -> u64 {
        let seen = self
            .shared
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        seen.get(generator).copied().unwrap_or(0)
    }

    fn note_seen(&self, generator: &str, id: Id) {
        let mut seen = self
            .shared
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let value = id.as_i64() as u64;
        match seen.get_mut(generator) {
            Some(max) => *max = (*max).max(value),
            None => {
                seen.insert(generator.to_owned(), value);
            }
        }
    }

    /// The plan in force, found again when it was dropped or is due to be redone.
    async fn current_plan(&self) -> Result<Arc<Plan>, Error> {
        if let Some(plan) = self.fresh_plan() {
            return Ok(plan);
        }
        let _guard = self.shared.rediscovery.lock().await;
        if let Some(plan) = self.fresh_plan() {
            return Ok(plan);
        }
        let previous = self.read_plan();
        let plan = self.discover(previous.as_deref()).await?;
        Ok(self.install(plan))
    }

    fn read_plan(&self) -> Option<Arc<Plan>> {
        self.shared
            .plan
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn fresh_plan(&self) -> Option<Arc<Plan>> {
        self.read_plan()
            .filter(|plan| plan.redo_after.is_none_or(|redo| Instant::now() < redo))
    }

    fn install(&self, plan: Plan) -> Arc<Plan> {
        let plan = Arc::new(plan);
        *self
            .shared
            .plan
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(plan.clone());
        plan
    }

    /// In Sentinel mode, a background task that drops the plan as soon as the sentinels
    /// announce a new master. It ends when the last clone of this client is dropped.
    fn watch_sentinels(&self) {
        let Topology::Sentinel {
            sentinels,
            master,
            credentials,
        } = &self.shared.config.topology
        else {
            return;
        };
        let weak = Arc::downgrade(&self.shared);
        let alive = {
            let weak = weak.clone();
            move || weak.strong_count() > 0
        };
        let switched = move |payload: String| {
            if let Some(shared) = weak.upgrade() {
                let kestrel = Kestrel { shared };
                let reason = format!("sentinels switched master: {payload}");
                kestrel.drop_plan(None, &Error::new(ErrorKind::Topology, reason));
            }
        };
        tokio::spawn(sentinel::watch_switches(
            sentinels.clone(),
            master.clone(),
            credentials.clone(),
            self.shared.config.clone(),
            alive,
            switched,
        ));
    }

    /// Drops the plan a failed call used (`Some(epoch)`), unless another call already
    /// replaced it, or whatever plan is in force (`None`).
    fn drop_plan(&self, epoch: Option<u64>, error: &Error) {
        let mut slot = self
            .shared
            .plan
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(plan) = slot.as_ref() {
            let due = plan.redo_after.is_some_and(|redo| redo <= Instant::now());
            if epoch.is_none_or(|epoch| epoch == plan.epoch) && !due {
                let epoch = plan.epoch;
                // Keep it for its addresses, but due to be redone now.
                *slot = Some(Arc::new(Plan {
                    epoch,
                    routes: plan.routes_snapshot(),
                    redo_after: Some(Instant::now()),
                    asking: Mutex::new(HashMap::new()),
                }));
                self.shared.events.emit(Event::Reconnecting {
                    reason: error.to_string(),
                });
            }
        }
    }

    /// Finds the servers, picks module or script on each, and sets up shard ids.
    async fn discover(&self, previous: Option<&Plan>) -> Result<Plan, Error> {
        let config = &self.shared.config;
        let events = &self.shared.events;
        let epoch = self.shared.epochs.fetch_add(1, Ordering::Relaxed) + 1;
        let previous_masters: BTreeSet<Address> = previous
            .map(|plan| {
                plan.routes
                    .iter()
                    .map(|route| route.node.address.clone())
                    .collect()
            })
            .unwrap_or_default();

        let (members, complete) = match &config.topology {
            Topology::Standalone(address) => {
                let node = Node::connect(address, config, events).await?;
                let shard = self.set_up_single(&node).await?;
                (vec![(node, config.generator.clone(), shard)], true)
            }
            Topology::Sentinel {
                sentinels,
                master,
                credentials,
            } => {
                let node =
                    sentinel::locate_master(sentinels, master, credentials, config, events).await?;
                if let Some(old) = previous_masters.iter().next() {
                    if *old != node.address {
                        events.emit(Event::NewMaster {
                            previous: old.to_string(),
                            current: node.address.to_string(),
                        });
                    }
                }
                let shard = self.set_up_single(&node).await?;
                (vec![(node, config.generator.clone(), shard)], true)
            }
            Topology::Cluster(seeds) => {
                // Ask the masters we knew first: the seeds may be gone by now.
                let mut ask: Vec<Address> = previous_masters.iter().cloned().collect();
                ask.extend(
                    seeds
                        .iter()
                        .filter(|seed| !previous_masters.contains(seed))
                        .cloned(),
                );
                let (plan, _) = cluster::plan(&ask, config, events).await?;
                let members = plan
                    .members
                    .into_iter()
                    .map(|member| (member.node, member.generator, member.shard))
                    .collect();
                (members, plan.complete)
            }
        };

        if matches!(config.topology, Topology::Cluster(_)) && previous.is_some() {
            let now: BTreeSet<Address> = members
                .iter()
                .map(|(node, _, _)| node.address.clone())
                .collect();
            for added in now.difference(&previous_masters) {
                events.emit(Event::NodeAdded {
                    address: added.to_string(),
                });
            }
            for removed in previous_masters.difference(&now) {
                events.emit(Event::NodeRemoved {
                    address: removed.to_string(),
                });
            }
        }
        let routes = members
            .into_iter()
            .map(|(node, generator, shard)| Route {
                node,
                generator,
                shard,
                past_fence: AtomicBool::new(false),
            })
            .collect();
        Ok(Plan {
            epoch,
            routes,
            redo_after: self.redo_after(complete),
            asking: Mutex::new(HashMap::new()),
        })
    }

    /// When a plan is looked at again without a failure prompting it: soon when a cluster
    /// master was left out, regularly in Cluster (to give masters added later a generator),
    /// never otherwise.
    fn redo_after(&self, complete: bool) -> Option<Instant> {
        let config = &self.shared.config;
        if !complete {
            return Some(Instant::now() + Duration::from_secs(1));
        }
        match config.topology {
            Topology::Cluster(_) => Some(Instant::now() + config.topology_refresh),
            _ => None,
        }
    }

    /// Standalone and Sentinel: write the configured shard id (or 1) only where none is
    /// stored; refuse a stored one that differs from the configured one.
    async fn set_up_single(&self, node: &Node) -> Result<ShardId, Error> {
        let config = &self.shared.config;
        let generator = &config.generator;
        for _ in 0..2 {
            let stored = node.stored_shard_id(generator).await?;
            match (stored, config.shard_id) {
                (Some(stored), Some(configured)) if stored != configured => {
                    return Err(Error::shard_mismatch(generator, stored, configured));
                }
                (Some(stored), _) => return Ok(stored),
                // Nothing stored and nothing configured: a module started with its own
                // `shard-id` option serves under that; writing 1 would override it.
                (None, None) if node.path == Path::Module => {
                    match self.module_shard_id(node).await {
                        Ok(shard) => return Ok(shard),
                        Err(error) if error.kind() == ErrorKind::Shard => {}
                        Err(error) => return Err(error),
                    }
                    if node
                        .claim_shard_id(
                            generator,
                            ShardId::new(1).map_err(|e| Error::config(e.to_string()))?,
                        )
                        .await?
                    {
                        return node.stored_shard_id(generator).await?.ok_or_else(|| {
                            Error::new(ErrorKind::Shard, format!("{generator}: shard id vanished"))
                        });
                    }
                }
                (None, configured) => {
                    let shard = match configured {
                        Some(shard) => shard,
                        None => ShardId::new(1).map_err(|e| Error::config(e.to_string()))?,
                    };
                    let claimed = match node.claim_shard_id(generator, shard).await {
                        Err(error)
                            if error.kind() == ErrorKind::Permission
                                && node.path == Path::Module =>
                        {
                            // A user limited to the module's commands: the module's own
                            // `shard-id` option applies. One ID shows which it is.
                            return self.module_shard_id(node).await;
                        }
                        other => other?,
                    };
                    if claimed {
                        let master = &node.address;
                        tracing::info!(%generator, %shard, %master, "kestrel: shard id set");
                        return Ok(shard);
                    }
                }
            }
        }
        Err(Error::new(
            ErrorKind::Shard,
            format!(
                "{generator}: the shard id key changes under set-up; is another client racing?"
            ),
        ))
    }
}

impl Kestrel {
    async fn module_shard_id(&self, node: &Node) -> Result<ShardId, Error> {
        let config = &self.shared.config;
        let batches = node.generate(&config.generator, 1, None, false).await?;
        let shard = batches
            .first()
            .map(Batch::shard)
            .ok_or_else(|| Error::protocol("the server returned no ID"))?;
        match config.shard_id {
            Some(configured) if configured != shard => {
                Err(Error::shard_mismatch(&config.generator, shard, configured))
            }
            _ => Ok(shard),
        }
    }
}

impl Plan {
    fn routes_snapshot(&self) -> Vec<Route> {
        self.routes
            .iter()
            .map(|route| Route {
                node: route.node.clone(),
                generator: route.generator.clone(),
                shard: route.shard,
                past_fence: AtomicBool::new(route.past_fence.load(Ordering::Acquire)),
            })
            .collect()
    }
}

/// The most IDs one call on this path hands out.
fn max_batch(path: Path) -> u64 {
    match path {
        Path::Module => MODULE_MAX_BATCH,
        Path::Script => SCRIPT_MAX_BATCH,
    }
}

fn first_ms(batches: &[Batch]) -> u64 {
    batches
        .first()
        .map_or(0, |batch| batch.first_id().unix_ms())
}

/// 50 ms, doubling, at most 1 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(50u64.saturating_mul(1 << attempt.min(5)).min(1_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded() {
        assert_eq!(backoff(0), Duration::from_millis(50));
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(10), Duration::from_millis(1_000));
        assert_eq!(backoff(u32::MAX), Duration::from_millis(1_000));
    }
}
