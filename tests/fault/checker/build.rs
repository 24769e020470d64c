//! Building the happens-before graph of a history: how each operation
//! counts, the nodes and their session, failed-put and reads-from edges,
//! cycles (reported, then broken), the causal past of every node as
//! per-session counts, and the per-key indexes the checks search.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, HashSet};

use petgraph::algo::toposort;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::{EdgeRef, NodeFiltered};

use super::graph::{cyclic_components, graph_of, shortest_path};
use super::{
    AnomalyKind, Class, Ctx, Effect, Found, History, KeyIndex, Node, OpKind, OpResult, NONE,
    PATH_SEARCHES,
};

/// The graph of a history, with what the checks need besides it.
pub(super) struct Built<'a> {
    /// The graph and its indexes.
    pub(super) ctx: Ctx<'a>,
    /// How each operation counts, by index into `History::ops`.
    pub(super) class: Vec<Class<'a>>,
    /// Which put (index into `History::ops`) wrote each value.
    pub(super) writer_of: HashMap<&'a str, usize>,
    /// Which put answered 412 had each value (it wrote nothing).
    pub(super) unmet_of: HashMap<&'a str, usize>,
    /// Reads whose value names the put they read from.
    pub(super) reads_from: usize,
    /// Failed puts whose value was observed.
    pub(super) failed_observed: usize,
}

/// Builds the graph of `h`; problems with the history itself go to
/// `warnings`, cycles and values never written to `found`.
pub(super) fn build<'a>(
    h: &'a History,
    warnings: &mut Vec<String>,
    found: &mut Vec<Found>,
) -> Built<'a> {
    // Decide how each op counts: malformed combinations are treated as
    // failures (their effect unknown), never as evidence.
    let class: Vec<Class> = h
        .ops
        .iter()
        .map(|op| {
            let answered = op.completed_us.is_some();
            let failed = match op.kind {
                OpKind::Put { .. } => Class::FailedPut,
                OpKind::Delete => Class::FailedDelete,
                OpKind::Get => Class::FailedGet,
            };
            match (&op.kind, &op.result) {
                (_, OpResult::Failed(_)) => failed,
                (OpKind::Put { .. }, OpResult::Written) if answered => Class::AckPut,
                (OpKind::Delete, OpResult::Deleted) if answered => Class::AckDelete,
                (OpKind::Delete, OpResult::DeleteAbsent) if answered => Class::Read(None),
                (OpKind::Get, OpResult::Read(v)) if answered => Class::Read(v.as_deref()),
                (OpKind::Get, OpResult::Siblings(vs)) if answered => Class::ReadSet(vs),
                (OpKind::Put { .. } | OpKind::Delete, OpResult::Unmet) if answered => Class::Unmet,
                (kind, result) => {
                    warnings.push(format!(
                        "op #{}: {kind:?} answered {result:?} (completed {:?}); treated as failed",
                        op.id, op.completed_us
                    ));
                    failed
                }
            }
        })
        .collect();

    // Which put wrote each value (a put answered 412 wrote nothing).
    let mut writer_of: HashMap<&str, usize> = HashMap::new();
    let mut unmet_of: HashMap<&str, usize> = HashMap::new();
    let mut seen_ids = HashSet::new();
    for (i, op) in h.ops.iter().enumerate() {
        if !seen_ids.insert(op.id) {
            warnings.push(format!("op id #{} is used more than once", op.id));
        }
        if let (OpKind::Put { value }, Class::Unmet) = (&op.kind, class[i]) {
            unmet_of.entry(value).or_insert(i);
            continue;
        }
        if let OpKind::Put { value } = &op.kind {
            if let Some(&first) = writer_of.get(value.as_str()) {
                warnings.push(format!(
                    "value {value:?} is written by #{} and #{}; reads of it are attributed to #{}",
                    h.ops[first].id, op.id, h.ops[first].id
                ));
            } else {
                writer_of.insert(value, i);
            }
        }
    }
    let mut observed: HashSet<&str> = HashSet::new();
    for c in &class {
        match c {
            Class::Read(Some(v)) => {
                observed.insert(v);
            }
            Class::ReadSet(vs) => observed.extend(vs.iter().map(String::as_str)),
            _ => {}
        }
    }
    for fr in &h.final_reads {
        if let Some(v) = &fr.value {
            observed.insert(v);
        }
    }
    for fs in &h.final_sets {
        observed.extend(fs.values.iter().map(String::as_str));
    }

    // Dense keys, named with their table (`table/key`).
    let mut key_ids: HashMap<String, usize> = HashMap::new();
    let mut keys: Vec<KeyIndex> = Vec::new();
    let siblings =
        |table: Option<&str>| table.is_some_and(|t| h.sibling_tables.iter().any(|s| s == t));

    // Sessions in invocation order; successful ops form the session chain.
    let mut by_session: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, op) in h.ops.iter().enumerate() {
        by_session.entry(op.session).or_default().push(i);
    }
    let sessions = by_session.len();
    let mut nodes: Vec<Node> = Vec::new();
    let mut node_of_op = vec![NONE; h.ops.len()];
    let mut sess_chain: Vec<Vec<u32>> = vec![Vec::new(); sessions];
    let mut sess_failed: Vec<Vec<u32>> = vec![Vec::new(); sessions];
    for (sess, list) in by_session.values_mut().enumerate() {
        list.sort_by_key(|&i| (h.ops[i].invoked_us, h.ops[i].id));
        for &i in list.iter() {
            let op = &h.ops[i];
            let key = intern(
                key_name(op.table.as_deref(), &op.key),
                siblings(op.table.as_deref()),
                &mut key_ids,
                &mut keys,
            );
            let chain_len = sess_chain[sess].len() as u32;
            let effect = match class[i] {
                Class::AckPut => Some((Effect::Put, true)),
                Class::AckDelete => Some((Effect::Delete, true)),
                Class::Read(_) | Class::ReadSet(_) | Class::Unmet => Some((Effect::Read, true)),
                Class::FailedPut => match &op.kind {
                    OpKind::Put { value } if observed.contains(value.as_str()) => {
                        Some((Effect::Put, false))
                    }
                    _ => None,
                },
                Class::FailedDelete => {
                    let pred = sess_chain[sess].last().copied().unwrap_or(NONE);
                    keys[key].failed_deletes.push((op.invoked_us, pred));
                    None
                }
                Class::FailedGet => None,
            };
            if let Some((effect, chain)) = effect {
                let n = nodes.len() as u32;
                nodes.push(Node {
                    op: i,
                    sess,
                    idx: chain_len,
                    chain,
                    key,
                    effect,
                });
                node_of_op[i] = n;
                if chain {
                    sess_chain[sess].push(n);
                } else {
                    sess_failed[sess].push(n);
                }
            }
        }
    }
    for fr in &h.final_reads {
        intern(fr.key.clone(), false, &mut key_ids, &mut keys);
    }
    for fs in &h.final_sets {
        let name = key_name(Some(&fs.table), &fs.key);
        intern(name, siblings(Some(&fs.table)), &mut key_ids, &mut keys);
    }
    let g = nodes.len();

    // Edges: session order, failed puts after their predecessor, reads-from.
    let mut edges: Vec<(u32, u32, Hb)> = Vec::new();
    for chain in &sess_chain {
        for pair in chain.windows(2) {
            edges.push((pair[0], pair[1], Hb::Session));
        }
    }
    for (sess, failed) in sess_failed.iter().enumerate() {
        for &f in failed {
            let pos = nodes[f as usize].idx;
            if pos > 0 {
                let pred = sess_chain[sess][pos as usize - 1];
                edges.push((pred, f, Hb::Session));
            }
        }
    }
    let mut rf = vec![NONE; g];
    let resolve = Resolve {
        h,
        writer_of: &writer_of,
        unmet_of: &unmet_of,
    };
    for (n, node) in nodes.iter().enumerate() {
        let values: &[String] = match class[node.op] {
            Class::Read(Some(_)) => match &h.ops[node.op].result {
                OpResult::Read(Some(v)) => std::slice::from_ref(v),
                _ => &[],
            },
            Class::ReadSet(vs) => vs,
            _ => continue,
        };
        for value in values {
            let Some(wi) = resolve.writer(node.op, value, found) else {
                continue;
            };
            let wn = node_of_op[wi];
            debug_assert_ne!(wn, NONE, "an observed put is always a node");
            if wn != NONE {
                if matches!(class[node.op], Class::Read(_)) {
                    rf[n] = wn;
                }
                edges.push((wn, n as u32, Hb::ReadsFrom));
            }
        }
    }
    let reads_from = rf.iter().filter(|&&w| w != NONE).count();
    let mut hb = graph_of(g, &edges);
    let order = break_cycles(h, &nodes, &mut hb, &mut rf, found);

    // Causal pasts as per-session counts, in topological order.
    let mut vc = vec![0u32; g * sessions];
    let mut row = vec![0u32; sessions];
    for &u in &order {
        let u = u as usize;
        let node = nodes[u];
        if node.chain {
            let cell = &mut vc[u * sessions + node.sess];
            *cell = (*cell).max(node.idx + 1);
        }
        row.copy_from_slice(&vc[u * sessions..(u + 1) * sessions]);
        for v in hb.neighbors(NodeIndex::new(u)) {
            let v = v.index();
            let target = &mut vc[v * sessions..(v + 1) * sessions];
            for (t, &r) in target.iter_mut().zip(&row) {
                *t = (*t).max(r);
            }
        }
    }
    let mut readers = vec![Vec::new(); g];
    for u in hb.node_indices() {
        for e in hb.edges(u) {
            if *e.weight() == Hb::ReadsFrom {
                readers[u.index()].push(e.target().index() as u32);
            }
        }
    }

    // Per-key indexes (nodes were created session by session, in order).
    let mut failed_observed = 0;
    for (n, node) in nodes.iter().enumerate() {
        let k = &mut keys[node.key];
        let entry = (node.idx, n as u32);
        match (node.effect, node.chain) {
            (Effect::Put, true) => {
                k.writes.entry(node.sess).or_default().push(entry);
                k.puts.entry(node.sess).or_default().push(entry);
            }
            (Effect::Delete, _) => {
                k.writes.entry(node.sess).or_default().push(entry);
                k.deletes.entry(node.sess).or_default().push(entry);
            }
            (Effect::Read, _) => k.reads.entry(node.sess).or_default().push(entry),
            (Effect::Put, false) => {
                k.failed_puts.push(n as u32);
                failed_observed += 1;
            }
        }
    }
    for k in &mut keys {
        k.failed_deletes.sort_unstable();
    }

    // Crash times per replica, in order: a write may be lost once its
    // replica lost its state after it was sent; a crash that kept the
    // state only shows in explanations.
    let mut crashes: HashMap<usize, Vec<u64>> = HashMap::new();
    let mut kept_crashes: HashMap<usize, Vec<u64>> = HashMap::new();
    for c in &h.crashes {
        let times = if c.kept_state {
            &mut kept_crashes
        } else {
            &mut crashes
        };
        times.entry(c.replica).or_default().push(c.at_us);
    }
    for times in crashes.values_mut().chain(kept_crashes.values_mut()) {
        times.sort_unstable();
    }

    let mut ctx = Ctx {
        h,
        nodes,
        node_of_op,
        sess_chain,
        sess_failed,
        sessions,
        vc,
        readers,
        rf,
        keys,
        crashes,
        kept_crashes,
        excused: Vec::new(),
        held_by: Vec::new(),
        searches_left: Cell::new(PATH_SEARCHES),
    };
    // Excused from surviving to the end: its replica lost its state after
    // acknowledging it, and no replica that kept its state held it then.
    ctx.held_by = (0..g as u32)
        .map(|n| match ctx.lost_at(n) {
            Some(at) => ctx.held_elsewhere(n, at).unwrap_or(NONE),
            None => NONE,
        })
        .collect();
    ctx.excused = (0..g as u32)
        .map(|n| ctx.lost_at(n).is_some() && ctx.held_by[n as usize] == NONE)
        .collect();
    Built {
        ctx,
        class,
        writer_of,
        unmet_of,
        reads_from,
        failed_observed,
    }
}

/// How a key is named in the checker: `key` in the default table,
/// `table/key` in another.
pub(super) fn key_name(table: Option<&str>, key: &str) -> String {
    match table {
        Some(table) => format!("{table}/{key}"),
        None => key.to_string(),
    }
}

/// The dense number of key `name` (of a table with siblings or not).
fn intern(
    name: String,
    siblings: bool,
    ids: &mut HashMap<String, usize>,
    keys: &mut Vec<KeyIndex>,
) -> usize {
    *ids.entry(name).or_insert_with_key(|name| {
        keys.push(KeyIndex {
            name: name.clone(),
            siblings,
            ..KeyIndex::default()
        });
        keys.len() - 1
    })
}

/// Finds the put behind a value a read returned.
pub(super) struct Resolve<'h, 'm> {
    pub(super) h: &'h History,
    pub(super) writer_of: &'m HashMap<&'h str, usize>,
    pub(super) unmet_of: &'m HashMap<&'h str, usize>,
}

impl Resolve<'_, '_> {
    /// The put (index into `History::ops`) that wrote `value`, which op
    /// `reader` returned; reports a value no put of that key wrote (or one
    /// returned before its put was sent, or the value of a put answered
    /// 412) and returns `None` then.
    pub(super) fn writer(
        &self,
        reader: usize,
        value: &str,
        found: &mut Vec<Found>,
    ) -> Option<usize> {
        let op = &self.h.ops[reader];
        let name = key_name(op.table.as_deref(), &op.key);
        let Some(&wi) = self.writer_of.get(value) else {
            if let Some(&u) = self.unmet_of.get(value) {
                found.push(Found {
                    kind: AnomalyKind::PreconditionFailedWrote,
                    ops: vec![u, reader],
                    explanation: format!(
                        "#{} read {name}={value:?}, the value of #{}, whose condition failed (412): it wrote nothing",
                        op.id, self.h.ops[u].id
                    ),
                });
                return None;
            }
            found.push(Found {
                kind: AnomalyKind::ValueNeverWritten,
                ops: vec![reader],
                explanation: format!(
                    "#{} read {name}={value:?}, a value no put ever wrote",
                    op.id
                ),
            });
            return None;
        };
        let w = &self.h.ops[wi];
        if w.key != op.key || w.table != op.table {
            found.push(Found {
                kind: AnomalyKind::ValueNeverWritten,
                ops: vec![wi, reader],
                explanation: format!(
                    "#{} read {name}={value:?}, but that value was written to key {:?} by #{}",
                    op.id,
                    key_name(w.table.as_deref(), &w.key),
                    w.id
                ),
            });
            return None;
        }
        if let Some(done) = op.completed_us {
            if w.invoked_us > done {
                found.push(Found {
                    kind: AnomalyKind::ValueNeverWritten,
                    ops: vec![wi, reader],
                    explanation: format!(
                        "#{} returned {name}={value:?} at {done}us, before #{} wrote it (invoked at {}us)",
                        op.id, w.id, w.invoked_us
                    ),
                });
            }
        }
        Some(wi)
    }
}

/// How one node of hb comes before another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hb {
    /// Session order (a failed put after its session's predecessor too).
    Session,
    /// A put before a read that returned its value.
    ReadsFrom,
}

/// hb must be acyclic: reports each cycle (its shortest loop through a
/// reads-from edge), then drops the reads-from edges inside it so that the
/// other checks see a partial order. Returns the nodes in topological order.
fn break_cycles(
    h: &History,
    nodes: &[Node],
    hb: &mut DiGraph<(), Hb>,
    rf: &mut [u32],
    found: &mut Vec<Found>,
) -> Vec<u32> {
    loop {
        if let Ok(order) = toposort(&*hb, None) {
            return order.into_iter().map(|n| n.index() as u32).collect();
        }
        for members in cyclic_components(hb) {
            let inside: HashSet<NodeIndex> = members.iter().copied().collect();
            let cycle = shortest_rf_cycle(hb, &members, &inside);
            let mut explanation = String::from("happens-before cycle: ");
            for (i, &u) in cycle.iter().enumerate() {
                let v = cycle[(i + 1) % cycle.len()];
                let label = if rf[v] == u as u32 {
                    "reads-from"
                } else {
                    "session"
                };
                explanation.push_str(&format!("#{} -{label}-> ", h.ops[nodes[u].op].id));
            }
            explanation.push_str(&format!("#{}", h.ops[nodes[cycle[0]].op].id));
            found.push(Found {
                kind: AnomalyKind::Cycle,
                ops: cycle.iter().map(|&u| nodes[u].op).collect(),
                explanation,
            });
            hb.retain_edges(|g, e| {
                let (u, v) = g.edge_endpoints(e).expect("an edge of the graph");
                let drop = g[e] == Hb::ReadsFrom && inside.contains(&u) && inside.contains(&v);
                if drop {
                    rf[v.index()] = NONE;
                }
                !drop
            });
        }
    }
}

/// The shortest cycle through a reads-from edge inside one strongly
/// connected component (trying a bounded number of such edges), as node
/// numbers starting at the edge's put.
fn shortest_rf_cycle(
    hb: &DiGraph<(), Hb>,
    members: &[NodeIndex],
    inside: &HashSet<NodeIndex>,
) -> Vec<usize> {
    let component = NodeFiltered::from_fn(hb, |n| inside.contains(&n));
    let rf_edges = members
        .iter()
        .flat_map(|&u| hb.edges(u))
        .filter(|e| *e.weight() == Hb::ReadsFrom && inside.contains(&e.target()))
        .take(16);
    let mut best: Option<Vec<usize>> = None;
    for e in rf_edges {
        let (u, v) = (e.source(), e.target());
        // Back from the read to the put, within the component.
        let Some(back) = shortest_path(&component, v, u) else {
            continue;
        };
        let mut cycle = vec![u.index()];
        if v != u {
            cycle.push(v.index());
            cycle.extend(
                back.iter()
                    .map(|&(_, x, _)| x.index())
                    .filter(|&x| x != u.index()),
            );
        }
        if best.as_ref().is_none_or(|b| cycle.len() < b.len()) {
            best = Some(cycle);
        }
    }
    best.unwrap_or_else(|| members.iter().map(|n| n.index()).collect())
}
