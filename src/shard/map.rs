//! The shard map: how many shards there are, which nodes replicate each,
//! and every node of the store, as one versioned value every node holds.
//!
//! Shards are numbered from 1; shard `i` holds the keys that
//! [`Layout::new(count)`](Layout::new) deals to index `i - 1`. Each shard
//! is replicated by its members as one *group*: a name (`s<id>e<epoch>`,
//! the shard and the map version that formed it) that the identities of
//! its members' incarnations carry (see
//! [`ReplicaId::group`](crate::causal::ReplicaId::group)), so that every
//! node can tell which entries of a causal context its own group must
//! check. A shard that keeps its number across a reshard keeps its group;
//! a number that comes back later gets a new one.
//!
//! A map changes only by a new version: a higher `epoch`, or the same
//! epoch made by a reshard rather than another change, or else by a node
//! whose address sorts higher (two changes made at once at two nodes:
//! every node picks the same winner). A reshard wins its ties because the
//! nodes that switched to it dropped the keys it moved away: a map of the
//! old placement taking its place would lose them. Nodes exchange maps
//! and keep the newer one, so they all end up holding the same.
//!
//! # Where nodes go
//!
//! At start, the nodes of `VIEW`, sorted, are dealt round-robin: with six
//! nodes and two shards, shard 1 gets the first, third and fifth. A
//! reshard to `n` shards deals the live nodes so that shard sizes differ
//! by at most one and as few nodes as possible change shard: every shard
//! that stays keeps as many of its live members as its new size allows;
//! the others (unplaced nodes, members of dropped shards, a shard's
//! surplus) fill the places left.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::placement::{Layout, MAX_SHARDS};
use crate::address::SocketAddress;

/// A shard's public number (1, 2, ...).
pub type ShardId = u32;

/// Fewest members a shard may have at a reshard (the family's rule).
pub const MIN_MEMBERS: usize = 2;

/// One shard: who replicates it, and the group they replicate as.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// Its members, sorted.
    pub members: Vec<SocketAddress>,
    /// The name of the group its members replicate in.
    pub group: String,
}

/// One version of the shard map.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMap {
    /// The version: grows with every change.
    pub epoch: u64,
    /// The node that made this version (breaks ties between two changes
    /// of the same epoch).
    pub by: String,
    /// The shards, by id (`1..=count`).
    pub shards: BTreeMap<ShardId, Shard>,
    /// Every node of the store, placed in a shard or not.
    pub nodes: BTreeSet<SocketAddress>,
    /// Nodes an operator removed (a view `DELETE`): they are not taken
    /// back in when they ping, only when added again.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub removed: BTreeSet<SocketAddress>,
    /// Made by a reshard (see the module doc: it wins ties).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reshard: bool,
}

/// A change of the map asked of a node (see [`ShardMap::changed`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A node known, placed nowhere yet (a view PUT).
    AddNode(SocketAddress),
    /// A node out of the store (a view DELETE).
    RemoveNode(SocketAddress),
    /// A node a member of a shard (add-member).
    AddMember(ShardId, SocketAddress),
}

/// Why a reshard cannot be done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReshardError {
    /// Fewer than two live nodes per shard.
    NotEnoughNodes,
    /// A shard count of 0 or above [`MAX_SHARDS`].
    BadCount,
    /// No member of this shard is live: nobody could hand its keys over,
    /// and the new map would serve them from replicas that lack them.
    Unreachable(ShardId),
}

/// The group name of shard `id` formed at map version `epoch`.
pub fn group_name(id: ShardId, epoch: u64) -> String {
    format!("s{id}e{epoch}")
}

impl ShardMap {
    /// The first map of a store whose `VIEW` is `view`, split into `count`
    /// shards: every node that starts with the same `VIEW` and
    /// `SHARD_COUNT` computes the same one.
    pub fn initial(view: &[SocketAddress], count: u32) -> ShardMap {
        let mut nodes: Vec<SocketAddress> = view.to_vec();
        nodes.sort();
        nodes.dedup();
        let count = count.clamp(1, MAX_SHARDS);
        let mut shards: BTreeMap<ShardId, Shard> = (1..=count)
            .map(|id| {
                let shard = Shard {
                    members: Vec::new(),
                    group: group_name(id, 1),
                };
                (id, shard)
            })
            .collect();
        for (i, node) in nodes.iter().enumerate() {
            let id = (i as u32 % count) + 1;
            if let Some(shard) = shards.get_mut(&id) {
                shard.members.push(node.clone());
            }
        }
        ShardMap {
            epoch: 1,
            by: String::new(),
            shards,
            nodes: nodes.into_iter().collect(),
            removed: BTreeSet::new(),
            reshard: false,
        }
    }

    /// Whether this version replaces `other`.
    pub fn newer_than(&self, other: &ShardMap) -> bool {
        self.version() > other.version()
    }

    /// Whether this is `other`'s version: the same epoch, made the same
    /// way by the same node.
    pub fn same_version(&self, other: &ShardMap) -> bool {
        self.version() == other.version()
    }

    /// What orders versions (see the module doc).
    fn version(&self) -> (u64, bool, &str) {
        (self.epoch, self.reshard, &self.by)
    }

    /// How many shards there are.
    pub fn count(&self) -> u32 {
        self.shards.len() as u32
    }

    /// The placement of keys in this map's shards.
    pub fn layout(&self) -> Arc<Layout> {
        Layout::new(self.count())
    }

    /// The shard that holds `key`.
    pub fn shard_of(&self, key: &str) -> ShardId {
        self.layout().shard_of(key) + 1
    }

    /// The shard `node` is a member of, if any.
    pub fn shard_of_node(&self, node: &SocketAddress) -> Option<ShardId> {
        self.shards
            .iter()
            .find(|(_, shard)| shard.members.contains(node))
            .map(|(id, _)| *id)
    }

    /// The shard `id`, if there is one.
    pub fn shard(&self, id: ShardId) -> Option<&Shard> {
        self.shards.get(&id)
    }

    /// The next version, made by `by`.
    fn next(&self, by: &SocketAddress) -> ShardMap {
        ShardMap {
            epoch: self.epoch + 1,
            by: by.to_string(),
            reshard: false,
            ..self.clone()
        }
    }

    /// The next version, made by `by`, with `change` made; `None` if it
    /// changes nothing (or names no shard there is).
    pub fn changed(&self, change: &Change, by: &SocketAddress) -> Option<ShardMap> {
        match change {
            Change::AddNode(node) => self.with_node(node, by),
            Change::RemoveNode(node) => self.without_node(node, by),
            Change::AddMember(id, node) => self.with_member(*id, node, by),
        }
    }

    /// This map with `node` known (placed nowhere yet), or `None` if it is.
    pub fn with_node(&self, node: &SocketAddress, by: &SocketAddress) -> Option<ShardMap> {
        if self.nodes.contains(node) {
            return None;
        }
        let mut map = self.next(by);
        map.nodes.insert(node.clone());
        map.removed.remove(node);
        Some(map)
    }

    /// [`Self::with_node`] for a node that made itself known (a ping), unless
    /// an operator removed it.
    pub fn with_node_heard(&self, node: &SocketAddress, by: &SocketAddress) -> Option<ShardMap> {
        if self.removed.contains(node) {
            return None;
        }
        self.with_node(node, by)
    }

    /// This map without `node` (neither known nor a member), or `None` if
    /// it is not known.
    pub fn without_node(&self, node: &SocketAddress, by: &SocketAddress) -> Option<ShardMap> {
        if !self.nodes.contains(node) && self.shard_of_node(node).is_none() {
            return None;
        }
        let mut map = self.next(by);
        map.nodes.remove(node);
        map.removed.insert(node.clone());
        for shard in map.shards.values_mut() {
            shard.members.retain(|m| m != node);
        }
        Some(map)
    }

    /// This map with `node` a member of shard `id` (and of no other), or
    /// `None` if there is no such shard or it already is a member.
    pub fn with_member(
        &self,
        id: ShardId,
        node: &SocketAddress,
        by: &SocketAddress,
    ) -> Option<ShardMap> {
        let shard = self.shards.get(&id)?;
        if shard.members.contains(node) {
            return None;
        }
        let mut map = self.next(by);
        map.nodes.insert(node.clone());
        map.removed.remove(node);
        for shard in map.shards.values_mut() {
            shard.members.retain(|m| m != node);
        }
        if let Some(shard) = map.shards.get_mut(&id) {
            shard.members.push(node.clone());
            shard.members.sort();
        }
        Some(map)
    }

    /// The map of `count` shards over the `live` nodes (see the module
    /// doc), made by `by`.
    pub fn resharded(
        &self,
        count: u32,
        live: &BTreeSet<SocketAddress>,
        by: &SocketAddress,
    ) -> Result<ShardMap, ReshardError> {
        if count == 0 || count > MAX_SHARDS {
            return Err(ReshardError::BadCount);
        }
        if live.len() < MIN_MEMBERS * count as usize {
            return Err(ReshardError::NotEnoughNodes);
        }
        // Every shard's keys are handed over (or kept) by its live
        // members; a shard with members but none live would have its keys
        // served, moved or not, by replicas that never held them. (A shard
        // left with no member at all has no copy anywhere to wait for.)
        if let Some((&id, _)) = self
            .shards
            .iter()
            .find(|(_, s)| !s.members.is_empty() && !s.members.iter().any(|m| live.contains(m)))
        {
            return Err(ReshardError::Unreachable(id));
        }
        let mut map = self.next(by);
        map.reshard = true;
        let epoch = map.epoch;
        // Shards that stay, largest first: they get the larger sizes, so
        // that fewer of their members move.
        let mut kept: Vec<(ShardId, Vec<SocketAddress>)> = (1..=count)
            .map(|id| {
                let members = self.shards.get(&id).map_or_else(Vec::new, |s| {
                    s.members
                        .iter()
                        .filter(|m| live.contains(*m))
                        .cloned()
                        .collect()
                });
                (id, members)
            })
            .collect();
        kept.sort_by_key(|(id, members)| (std::cmp::Reverse(members.len()), *id));
        let base = live.len() / count as usize;
        let extra = live.len() % count as usize;
        let mut placed: BTreeSet<SocketAddress> = BTreeSet::new();
        let mut sizes = BTreeMap::new();
        let mut shards = BTreeMap::new();
        for (rank, (id, mut members)) in kept.into_iter().enumerate() {
            let size = base + usize::from(rank < extra);
            members.truncate(size);
            placed.extend(members.iter().cloned());
            let group = match self.shards.get(&id) {
                Some(shard) if !members.is_empty() => shard.group.clone(),
                _ => group_name(id, epoch),
            };
            sizes.insert(id, size);
            shards.insert(id, Shard { members, group });
        }
        let mut pool = live.iter().filter(|n| !placed.contains(*n));
        for (id, shard) in shards.iter_mut() {
            while shard.members.len() < sizes[id] {
                match pool.next() {
                    Some(node) => shard.members.push(node.clone()),
                    None => break,
                }
            }
            shard.members.sort();
        }
        map.shards = shards;
        map.nodes.extend(live.iter().cloned());
        Ok(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize) -> Vec<SocketAddress> {
        (0..n)
            .map(|i| SocketAddress::parse(&format!("10.10.0.{}:8085", i + 2)).unwrap())
            .collect()
    }

    fn sizes(map: &ShardMap) -> Vec<usize> {
        map.shards.values().map(|s| s.members.len()).collect()
    }

    #[test]
    fn the_initial_map_deals_the_view_round_robin_the_same_everywhere() {
        let view = nodes(6);
        let map = ShardMap::initial(&view, 2);
        assert_eq!(map.count(), 2);
        assert_eq!(
            map.shard(1).unwrap().members,
            vec![view[0].clone(), view[2].clone(), view[4].clone()]
        );
        assert_eq!(
            map.shard(2).unwrap().members,
            vec![view[1].clone(), view[3].clone(), view[5].clone()]
        );
        let mut shuffled = view.clone();
        shuffled.reverse();
        assert_eq!(ShardMap::initial(&shuffled, 2), map);
        assert_eq!(map.shard(1).unwrap().group, "s1e1");
    }

    #[test]
    fn a_reshard_keeps_members_in_place_and_balances_sizes() {
        let view = nodes(7);
        let me = view[0].clone();
        let start = ShardMap::initial(&view[..6], 2)
            .with_member(1, &view[6], &me)
            .unwrap();
        assert_eq!(sizes(&start), vec![4, 3]);
        let live: BTreeSet<_> = view.iter().cloned().collect();
        let map = start.resharded(3, &live, &me).unwrap();
        let mut got = sizes(&map);
        got.sort();
        assert_eq!(got, vec![2, 2, 3]);
        // Every live node is placed exactly once.
        let placed: Vec<_> = map
            .shards
            .values()
            .flat_map(|s| s.members.clone())
            .collect();
        assert_eq!(placed.len(), 7);
        assert_eq!(placed.iter().collect::<BTreeSet<_>>().len(), 7);
        // Only two nodes change shard (the new shard's), and the kept
        // shards keep their groups; the new one gets a new group.
        let moved = view
            .iter()
            .filter(|n| start.shard_of_node(n) != map.shard_of_node(n))
            .count();
        assert_eq!(moved, 2);
        assert_eq!(map.shard(1).unwrap().group, "s1e1");
        assert_eq!(map.shard(2).unwrap().group, "s2e1");
        assert_eq!(map.shard(3).unwrap().group, format!("s3e{}", map.epoch));
        assert!(map.newer_than(&start));
    }

    #[test]
    fn a_reshard_needs_two_live_nodes_per_shard() {
        let view = nodes(7);
        let me = view[0].clone();
        let map = ShardMap::initial(&view, 2);
        let live: BTreeSet<_> = view.iter().cloned().collect();
        assert_eq!(
            map.resharded(10, &live, &me),
            Err(ReshardError::NotEnoughNodes)
        );
        assert_eq!(
            map.resharded(4, &live, &me),
            Err(ReshardError::NotEnoughNodes)
        );
        assert_eq!(map.resharded(0, &live, &me), Err(ReshardError::BadCount));
        // Shard 2 (view[1], [3], [5]) with none of its members live.
        let shard2: BTreeSet<_> = [1, 3, 5].map(|i| view[i].clone()).into();
        assert_eq!(
            map.shard(2).unwrap().members,
            Vec::from_iter(shard2.clone())
        );
        let without: BTreeSet<_> = live.difference(&shard2).cloned().collect();
        assert_eq!(
            map.resharded(1, &without, &me),
            Err(ReshardError::Unreachable(2))
        );
        let one_back = without.iter().chain([&view[3]]).cloned().collect();
        assert!(map.resharded(2, &one_back, &me).is_ok());
        let fewer: BTreeSet<_> = view[..5].iter().cloned().collect();
        let map2 = map.resharded(2, &fewer, &me).unwrap();
        assert!(map2
            .shards
            .values()
            .all(|s| s.members.iter().all(|m| fewer.contains(m))));
    }

    #[test]
    fn a_shard_number_that_comes_back_gets_a_new_group() {
        let view = nodes(6);
        let me = view[0].clone();
        let live: BTreeSet<_> = view.iter().cloned().collect();
        let three = ShardMap::initial(&view, 3);
        let two = three.resharded(2, &live, &me).unwrap();
        assert_eq!(two.count(), 2);
        let back = two.resharded(3, &live, &me).unwrap();
        assert_ne!(back.shard(3).unwrap().group, three.shard(3).unwrap().group);
    }

    #[test]
    fn membership_changes_make_new_versions() {
        let view = nodes(4);
        let me = view[0].clone();
        let map = ShardMap::initial(&view[..3], 1);
        let known = map.with_node(&view[3], &me).unwrap();
        assert!(known.nodes.contains(&view[3]));
        assert_eq!(known.shard_of_node(&view[3]), None);
        assert!(known.with_node(&view[3], &me).is_none());
        let placed = known.with_member(1, &view[3], &me).unwrap();
        assert_eq!(placed.shard_of_node(&view[3]), Some(1));
        assert!(placed.with_member(1, &view[3], &me).is_none());
        assert!(placed.with_member(9, &view[3], &me).is_none());
        let gone = placed.without_node(&view[3], &me).unwrap();
        assert_eq!(gone.shard_of_node(&view[3]), None);
        assert!(!gone.nodes.contains(&view[3]));
        // A removed node's pings do not bring it back; adding it does.
        assert!(gone.with_node_heard(&view[3], &me).is_none());
        let back = gone.with_node(&view[3], &me).unwrap();
        assert!(back.with_node_heard(&view[0], &me).is_none());
        assert!(!back.removed.contains(&view[3]));
        assert!(gone.newer_than(&placed) && placed.newer_than(&known));
    }
}
