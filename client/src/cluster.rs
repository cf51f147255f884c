//! Redis Cluster: one generator per master, named so that its keys hash into a slot that
//! master owns, each with a shard id unique in the whole cluster.

use std::collections::{BTreeMap, BTreeSet};

use kestrel_core::{ShardId, MAX_SHARD_ID, MIN_SHARD_ID};
use redis::Value;

use crate::config::{Address, Config};
use crate::error::{Error, ErrorKind};
use crate::events::{Event, Events};
use crate::node::{self, Node};

/// How many hash slots a cluster has.
pub(crate) const SLOTS: usize = 16_384;

/// The hash slot of a key, honouring a `{tag}`.
pub(crate) fn slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let hashed = match bytes.iter().position(|&byte| byte == b'{') {
        Some(open) => match bytes[open + 1..].iter().position(|&byte| byte == b'}') {
            Some(0) | None => bytes,
            Some(length) => &bytes[open + 1..open + 1 + length],
        },
        None => bytes,
    };
    crc16::State::<crc16::XMODEM>::calculate(hashed) % SLOTS as u16
}

/// One master and the slots it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Shard {
    pub(crate) master: Address,
    pub(crate) replicas: Vec<Address>,
    pub(crate) ranges: Vec<(u16, u16)>,
}

/// Reads `CLUSTER SLOTS` into one entry per master.
pub(crate) fn parse_slots(reply: &[Value], seed: &Address) -> Result<Vec<Shard>, Error> {
    let bad = || Error::protocol("unexpected CLUSTER SLOTS reply");
    let mut masters: BTreeMap<Address, Shard> = BTreeMap::new();
    for range in reply {
        let Value::Array(parts) = range else {
            return Err(bad());
        };
        let [Value::Int(start), Value::Int(end), master, replicas @ ..] = parts.as_slice() else {
            return Err(bad());
        };
        let master = parse_node(master, seed).ok_or_else(bad)?;
        let start = u16::try_from(*start).map_err(|_| bad())?;
        let end = u16::try_from(*end).map_err(|_| bad())?;
        let replicas = replicas
            .iter()
            .filter_map(|replica| parse_node(replica, seed))
            .collect::<Vec<_>>();
        let entry = masters.entry(master.clone()).or_insert_with(|| Shard {
            master,
            replicas: Vec::new(),
            ranges: Vec::new(),
        });
        entry.ranges.push((start, end));
        for replica in replicas {
            if !entry.replicas.contains(&replica) {
                entry.replicas.push(replica);
            }
        }
    }
    Ok(masters.into_values().collect())
}

fn parse_node(value: &Value, seed: &Address) -> Option<Address> {
    let Value::Array(fields) = value else {
        return None;
    };
    let host = match fields.first()? {
        Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Value::SimpleString(text) => text.clone(),
        _ => return None,
    };
    let port = match fields.get(1)? {
        Value::Int(port) => u16::try_from(*port).ok()?,
        _ => return None,
    };
    // An empty or "?" host means "the address you reached me at".
    let host = if host.is_empty() || host == "?" {
        seed.host.clone()
    } else {
        host
    };
    Some(Address::new(host, port))
}

/// Which master (index into `shards`) owns each slot.
fn owners(shards: &[Shard]) -> Vec<Option<usize>> {
    let mut owners = vec![None; SLOTS];
    for (index, shard) in shards.iter().enumerate() {
        for &(start, end) in &shard.ranges {
            for slot in start..=end.min(SLOTS as u16 - 1) {
                owners[usize::from(slot)] = Some(index);
            }
        }
    }
    owners
}

/// The generator name of each master: the first `prefix-K` (K = 0, 1, ...) whose slot it owns.
/// The choice depends only on slot ownership, so a promoted replica picks the same name and
/// finds the state its master replicated. Also returns every candidate name up to the last
/// one chosen, with its owner, so that shard ids of generators left behind by an earlier
/// layout are known too.
pub(crate) fn generator_names(
    prefix: &str,
    shards: &[Shard],
) -> (Vec<Option<String>>, Vec<(String, usize)>) {
    let owners = owners(shards);
    let mut chosen: Vec<Option<String>> = vec![None; shards.len()];
    let mut candidates = Vec::new();
    let mut left = shards
        .iter()
        .filter(|shard| !shard.ranges.is_empty())
        .count();
    // A master with a single slot needs about 16384 tries on average; stop well past that.
    for number in 0..SLOTS * 16 {
        if left == 0 {
            break;
        }
        let name = format!("{prefix}-{number}");
        let Some(owner) = owners[usize::from(slot(&name))] else {
            continue;
        };
        candidates.push((name.clone(), owner));
        if chosen[owner].is_none() {
            chosen[owner] = Some(name);
            left -= 1;
        }
    }
    (chosen, candidates)
}

/// Gives every generator without a shard id the smallest id nobody holds. Refuses when two
/// active generators hold the same id.
pub(crate) fn assign_shard_ids(
    active: &[(String, Option<ShardId>)],
    known: &BTreeMap<String, ShardId>,
) -> Result<Vec<ShardId>, Error> {
    let mut holders: BTreeMap<ShardId, &str> = BTreeMap::new();
    for (name, shard) in active {
        let Some(shard) = shard else {
            continue;
        };
        if let Some(other) = holders.insert(*shard, name) {
            return Err(Error::new(
                ErrorKind::Shard,
                format!(
                    "generators {other} and {name} both claim shard id {shard}; they would make \
                     the same IDs, so fix one of the keys {{{other}}}-shard-id or \
                     {{{name}}}-shard-id"
                ),
            ));
        }
    }
    let mut taken: BTreeSet<ShardId> = known.values().copied().collect();
    taken.extend(holders.keys().copied());
    let mut free = (MIN_SHARD_ID..=MAX_SHARD_ID)
        .filter_map(|value| ShardId::new(i64::from(value)).ok())
        .filter(|shard| !taken.contains(shard));
    active
        .iter()
        .map(|(_, shard)| match shard {
            Some(shard) => Ok(*shard),
            None => free.next().ok_or_else(|| {
                Error::new(
                    ErrorKind::Shard,
                    "all 1023 shard ids are taken in this cluster",
                )
            }),
        })
        .collect()
}

/// One master's part of a cluster plan.
pub(crate) struct Member {
    pub(crate) node: Node,
    pub(crate) generator: String,
    pub(crate) shard: ShardId,
}

/// A cluster plan; `complete` is false when some master could not be reached and was left
/// out for now.
pub(crate) struct ClusterPlan {
    pub(crate) members: Vec<Member>,
    pub(crate) complete: bool,
}

/// Reads the topology from the first node that answers.
pub(crate) async fn read_topology(seeds: &[Address], config: &Config) -> Result<Vec<Shard>, Error> {
    let mut last = Error::config("no cluster nodes to ask");
    for seed in seeds {
        let connection = node::open(seed, config, &config.credentials, 0).await;
        let reply = match connection {
            Ok(mut connection) => redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query_async::<Vec<Value>>(&mut connection)
                .await
                .map_err(|error| Error::from_redis(&seed.to_string(), &error)),
            Err(error) => Err(error),
        };
        match reply.and_then(|reply| parse_slots(&reply, seed)) {
            Ok(shards) if !shards.is_empty() => return Ok(shards),
            Ok(_) => last = Error::new(ErrorKind::Topology, format!("{seed}: no slots served")),
            Err(error) if matches!(error.kind(), ErrorKind::Auth | ErrorKind::UnknownHost) => {
                return Err(error);
            }
            Err(error) => last = error,
        }
    }
    Err(last)
}

/// Connects to every master, names its generator, and sets up shard ids.
pub(crate) async fn plan(
    seeds: &[Address],
    config: &Config,
    events: &Events,
) -> Result<(ClusterPlan, Vec<Shard>), Error> {
    let shards = read_topology(seeds, config).await?;
    let (names, candidates) = generator_names(&config.generator, &shards);

    // Connect to every master; one that fails is left out of this plan.
    let mut nodes: Vec<Option<Node>> = Vec::with_capacity(shards.len());
    let mut complete = true;
    for shard in &shards {
        match Node::connect(&shard.master, config, events).await {
            Ok(node) => nodes.push(Some(node)),
            Err(error) if matches!(error.kind(), ErrorKind::Auth | ErrorKind::Permission) => {
                return Err(error);
            }
            Err(error) => {
                events.emit(Event::Error {
                    message: format!("master {} left out of the plan: {error}", shard.master),
                });
                complete = false;
                nodes.push(None);
            }
        }
    }

    // Every candidate's shard id, so that no new id repeats one held by a generator that an
    // earlier layout used.
    let mut known: BTreeMap<String, ShardId> = BTreeMap::new();
    for (name, owner) in &candidates {
        let Some(node) = &nodes[*owner] else {
            continue;
        };
        if let Some(shard) = node.stored_shard_id(name).await? {
            known.insert(name.clone(), shard);
        }
    }

    let mut active: Vec<(usize, String, Option<ShardId>)> = Vec::new();
    for (index, name) in names.iter().enumerate() {
        if let (Some(name), Some(_)) = (name, &nodes[index]) {
            active.push((index, name.clone(), known.get(name).copied()));
        }
    }
    // New ids are handed out only when every master was read, so none can repeat an unseen one.
    if !complete {
        active.retain(|(_, _, shard)| shard.is_some());
    }
    let pairs: Vec<(String, Option<ShardId>)> = active
        .iter()
        .map(|(_, name, shard)| (name.clone(), *shard))
        .collect();
    let assigned = assign_shard_ids(&pairs, &known)?;

    let mut members = Vec::with_capacity(active.len());
    for ((index, name, stored), shard) in active.into_iter().zip(assigned) {
        let Some(node) = nodes[index].take() else {
            continue;
        };
        let shard = match stored {
            Some(shard) => shard,
            None if node.claim_shard_id(&name, shard).await? => {
                let master = &node.address;
                tracing::info!(generator = %name, %shard, %master, "kestrel: shard id set");
                shard
            }
            // Another client claimed it first; take what it wrote and check again next plan.
            None => node.stored_shard_id(&name).await?.ok_or_else(|| {
                Error::new(
                    ErrorKind::Shard,
                    format!("{name}: shard id vanished during set-up"),
                )
            })?,
        };
        members.push(Member {
            node,
            generator: name,
            shard,
        });
    }
    if members.is_empty() {
        return Err(Error::new(
            ErrorKind::Topology,
            "no cluster master is reachable",
        ));
    }
    Ok((ClusterPlan { members, complete }, shards))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(port: u16, ranges: &[(u16, u16)]) -> Shard {
        Shard {
            master: Address::new("127.0.0.1", port),
            replicas: Vec::new(),
            ranges: ranges.to_vec(),
        }
    }

    #[test]
    fn slots_match_the_cluster_specification() {
        // Values from the Redis Cluster specification's reference implementation.
        assert_eq!(slot("123456789"), 0x31C3);
        assert_eq!(slot("{user1000}.following"), slot("user1000"));
        assert_eq!(slot("{kestrel-3}-shard-id"), slot("kestrel-3"));
        assert_eq!(slot("foo{}{bar}"), slot("foo{}{bar}"));
    }

    #[test]
    fn every_master_gets_a_generator_in_its_own_slots() {
        let shards = [
            shard(7000, &[(0, 5460)]),
            shard(7001, &[(5461, 10922)]),
            shard(7002, &[(10923, 16383)]),
        ];
        let (names, candidates) = generator_names("kestrel", &shards);

        for (index, name) in names.iter().enumerate() {
            let name = name.as_ref().unwrap();
            let slot = slot(name);
            assert!(shards[index]
                .ranges
                .iter()
                .any(|(start, end)| (*start..=*end).contains(&slot)));
        }
        assert!(candidates.len() >= 3);
    }

    #[test]
    fn a_master_with_one_slot_still_gets_a_generator() {
        let shards = [
            shard(7000, &[(0, 99), (101, 16383)]),
            shard(7001, &[(100, 100)]),
        ];
        let (names, _) = generator_names("kestrel", &shards);

        assert_eq!(slot(names[1].as_ref().unwrap()), 100);
    }

    #[test]
    fn new_shard_ids_skip_every_known_one() {
        let known: BTreeMap<String, ShardId> = [
            ("kestrel-0".to_owned(), ShardId::new(1).unwrap()),
            ("kestrel-4".to_owned(), ShardId::new(2).unwrap()),
        ]
        .into();
        let active = [
            ("kestrel-0".to_owned(), Some(ShardId::new(1).unwrap())),
            ("kestrel-1".to_owned(), None),
            ("kestrel-2".to_owned(), None),
        ];
        let assigned = assign_shard_ids(&active, &known).unwrap();
        let values: Vec<u16> = assigned.iter().map(|shard| shard.get()).collect();

        assert_eq!(values, vec![1, 3, 4]);
    }

    #[test]
    fn two_generators_with_one_shard_id_are_refused() {
        let one = Some(ShardId::new(5).unwrap());
        let active = [("kestrel-0".to_owned(), one), ("kestrel-1".to_owned(), one)];
        let error = assign_shard_ids(&active, &BTreeMap::new()).unwrap_err();

        assert_eq!(error.kind(), ErrorKind::Shard);
        assert!(error.to_string().contains("both claim shard id 5"));
    }

    #[test]
    fn cluster_slots_replies_are_read_per_master() {
        let node = |host: &str, port: i64| {
            Value::Array(vec![
                Value::BulkString(host.as_bytes().to_vec()),
                Value::Int(port),
            ])
        };
        let reply = vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(10),
                node("", 7000),
                node("h", 7003),
            ]),
            Value::Array(vec![Value::Int(11), Value::Int(16383), node("h", 7001)]),
            Value::Array(vec![Value::Int(20), Value::Int(30), node("", 7000)]),
        ];
        let shards = parse_slots(&reply, &Address::new("seed", 1)).unwrap();

        assert_eq!(shards.len(), 2);
        assert_eq!(shards[0].master, Address::new("h", 7001));
        assert_eq!(shards[1].master, Address::new("seed", 7000));
        assert_eq!(shards[1].ranges, vec![(0, 10), (20, 30)]);
        assert_eq!(shards[1].replicas, vec![Address::new("h", 7003)]);
    }
}
