//! Building the happens-before graph of a history: how each operation
//! counts, the nodes and their session, failed-put and reads-from edges,
//! cycles (reported, then broken), the causal past of every node as
//! per-session counts, and the per-key indexes the checks search.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

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

    // Which put wrote each value.
    let mut writer_of: HashMap<&str, usize> = HashMap::new();
    let mut seen_ids = HashSet::new();
    for (i, op) in h.ops.iter().enumerate() {
        if !seen_ids.insert(op.id) {
            warnings.push(format!("op id #{} is used more than once", op.id));
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
        if let Class::Read(Some(v)) = c {
            observed.insert(v);
        }
    }
    for fr in &h.final_reads {
        if let Some(v) = &fr.value {
            observed.insert(v);
        }
    }

    // Dense keys.
    let mut key_ids: HashMap<&str, usize> = HashMap::new();
    let mut keys: Vec<KeyIndex> = Vec::new();

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
            let key = intern(&op.key, &mut key_ids, &mut keys);
            let chain_len = sess_chain[sess].len() as u32;
            let effect = match class[i] {
                Class::AckPut => Some((Effect::Put, true)),
                Class::AckDelete => Some((Effect::Delete, true)),
                Class::Read(_) => Some((Effect::Read, true)),
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
        intern(&fr.key, &mut key_ids, &mut keys);
    }
    let g = nodes.len();

    // Edges: session order, failed puts after their predecessor, reads-from.
    let mut succ: Vec<Vec<(u32, bool)>> = vec![Vec::new(); g];
    for chain in &sess_chain {
        for pair in chain.windows(2) {
            succ[pair[0] as usize].push((pair[1], false));
        }
    }
    for (sess, failed) in sess_failed.iter().enumerate() {
        for &f in failed {
            let pos = nodes[f as usize].idx;
            if pos > 0 {
                let pred = sess_chain[sess][pos as usize - 1];
                succ[pred as usize].push((f, false));
            }
        }
    }
    let mut rf = vec![NONE; g];
    for (n, node) in nodes.iter().enumerate() {
        let op = &h.ops[node.op];
        let Class::Read(Some(value)) = class[node.op] else {
            continue;
        };
        let Some(&wi) = writer_of.get(value) else {
            found.push(Found {
                kind: AnomalyKind::ValueNeverWritten,
                ops: vec![node.op],
                explanation: format!(
                    "#{} read {}={value:?}, a value no put ever wrote",
                    op.id, op.key
                ),
            });
            continue;
        };
        let w = &h.ops[wi];
        if w.key != op.key {
            found.push(Found {
                kind: AnomalyKind::ValueNeverWritten,
                ops: vec![wi, node.op],
                explanation: format!(
                    "#{} read {}={value:?}, but that value was written to key {:?} by #{}",
                    op.id, op.key, w.key, w.id
                ),
            });
            continue;
        }
        if let Some(done) = op.completed_us {
            if w.invoked_us > done {
                found.push(Found {
                    kind: AnomalyKind::ValueNeverWritten,
                    ops: vec![wi, node.op],
                    explanation: format!(
                        "#{} returned {}={value:?} at {done}us, before #{} wrote it (invoked at {}us)",
                        op.id, op.key, w.id, w.invoked_us
                    ),
                });
            }
        }
        let wn = node_of_op[wi];
        debug_assert_ne!(wn, NONE, "an observed put is always a node");
        if wn != NONE {
            rf[n] = wn;
            succ[wn as usize].push((n as u32, true));
        }
    }
    let reads_from = rf.iter().filter(|&&w| w != NONE).count();

    // hb must be acyclic; report each cycle, then drop the reads-from edges
    // inside it so the remaining checks see a partial order.
    let order = loop {
        let order = topological_order(&succ);
        if order.len() == g {
            break order;
        }
        let mut placed = vec![false; g];
        for &u in &order {
            placed[u as usize] = true;
        }
        let left: Vec<u32> = (0..g as u32).filter(|&u| !placed[u as usize]).collect();
        let mut local = vec![NONE; g];
        for (i, &u) in left.iter().enumerate() {
            local[u as usize] = i as u32;
        }
        let adj: Vec<Vec<u32>> = left
            .iter()
            .map(|&u| {
                succ[u as usize]
                    .iter()
                    .map(|&(v, _)| local[v as usize])
                    .filter(|&v| v != NONE)
                    .collect()
            })
            .collect();
        let components = strongly_connected(&adj);
        if components.is_empty() {
            // Cannot happen (leftover nodes always contain a cycle); be safe.
            for &u in &left {
                succ[u as usize].retain(|&(_, is_rf)| !is_rf);
            }
            continue;
        }
        for comp in components {
            let members: Vec<u32> = comp.iter().map(|&i| left[i as usize]).collect();
            let mut inside = HashSet::new();
            inside.extend(members.iter().copied());
            let cycle = shortest_rf_cycle(&succ, &members, &inside);
            let mut explanation = String::from("happens-before cycle: ");
            for (i, &u) in cycle.iter().enumerate() {
                let v = cycle[(i + 1) % cycle.len()];
                let label = if rf[v as usize] == u {
                    "reads-from"
                } else {
                    "session"
                };
                explanation.push_str(&format!("#{} -{label}-> ", h.ops[nodes[u as usize].op].id));
            }
            explanation.push_str(&format!("#{}", h.ops[nodes[cycle[0] as usize].op].id));
            found.push(Found {
                kind: AnomalyKind::Cycle,
                ops: cycle.iter().map(|&u| nodes[u as usize].op).collect(),
                explanation,
            });
            for &u in &members {
                succ[u as usize].retain(|&(v, is_rf)| {
                    let drop = is_rf && inside.contains(&v);
                    if drop {
                        rf[v as usize] = NONE;
                    }
                    !drop
                });
            }
        }
    };

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
        for &(v, _) in &succ[u] {
            let target = &mut vc[v as usize * sessions..(v as usize + 1) * sessions];
            for (t, &r) in target.iter_mut().zip(&row) {
                *t = (*t).max(r);
            }
        }
    }
    let mut readers = vec![Vec::new(); g];
    for (u, edges) in succ.iter().enumerate() {
        for &(v, is_rf) in edges {
            if is_rf {
                readers[u].push(v);
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
    // replica crashed after acknowledging it.
    let mut crashes: HashMap<usize, Vec<u64>> = HashMap::new();
    for c in &h.crashes {
        crashes.entry(c.replica).or_default().push(c.at_us);
    }
    for times in crashes.values_mut() {
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
        excused: Vec::new(),
        searches_left: Cell::new(PATH_SEARCHES),
    };
    // Excused from surviving to the end: lost by the time of the final reads.
    ctx.excused = (0..g as u32).map(|n| ctx.lost_by(n, u64::MAX)).collect();
    Built {
        ctx,
        class,
        writer_of,
        reads_from,
        failed_observed,
    }
}
/// The dense number of key `name`.
fn intern<'h>(name: &'h str, ids: &mut HashMap<&'h str, usize>, keys: &mut Vec<KeyIndex>) -> usize {
    *ids.entry(name).or_insert_with(|| {
        keys.push(KeyIndex {
            name: name.to_string(),
            ..KeyIndex::default()
        });
        keys.len() - 1
    })
}

/// Kahn's algorithm; nodes on or behind a cycle are left out.
pub(super) fn topological_order(succ: &[Vec<(u32, bool)>]) -> Vec<u32> {
    let mut indegree = vec![0u32; succ.len()];
    for edges in succ {
        for &(v, _) in edges {
            indegree[v as usize] += 1;
        }
    }
    let mut queue: VecDeque<u32> = (0..succ.len() as u32)
        .filter(|&u| indegree[u as usize] == 0)
        .collect();
    let mut order = Vec::with_capacity(succ.len());
    while let Some(u) = queue.pop_front() {
        order.push(u);
        for &(v, _) in &succ[u as usize] {
            indegree[v as usize] -= 1;
            if indegree[v as usize] == 0 {
                queue.push_back(v);
            }
        }
    }
    order
}

/// Tarjan's algorithm without recursion; returns the components that hold
/// a cycle (more than one node, or a self-loop).
pub(super) fn strongly_connected(adj: &[Vec<u32>]) -> Vec<Vec<u32>> {
    let n = adj.len();
    let mut index = vec![NONE; n];
    let mut low = vec![0u32; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut calls: Vec<(usize, usize)> = Vec::new();
    let mut next = 0u32;
    let mut out = Vec::new();
    for root in 0..n {
        if index[root] != NONE {
            continue;
        }
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        calls.push((root, 0));
        while let Some(&(v, i)) = calls.last() {
            if i < adj[v].len() {
                calls.last_mut().expect("non-empty").1 += 1;
                let w = adj[v][i] as usize;
                if index[w] == NONE {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    calls.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            calls.pop();
            if let Some(&(parent, _)) = calls.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut comp = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    comp.push(w as u32);
                    if w == v {
                        break;
                    }
                }
                if comp.len() > 1 || adj[v].contains(&(v as u32)) {
                    comp.reverse();
                    out.push(comp);
                }
            }
        }
    }
    out
}

/// The shortest cycle through a reads-from edge inside one strongly
/// connected component (trying a bounded number of such edges).
fn shortest_rf_cycle(
    succ: &[Vec<(u32, bool)>],
    members: &[u32],
    inside: &HashSet<u32>,
) -> Vec<u32> {
    let mut best: Option<Vec<u32>> = None;
    let mut tried = 0;
    'edges: for &u in members {
        for &(v, is_rf) in &succ[u as usize] {
            if !is_rf || !inside.contains(&v) {
                continue;
            }
            tried += 1;
            // Breadth-first from v back to u within the component.
            let mut parent: HashMap<u32, u32> = HashMap::new();
            parent.insert(v, v);
            let mut queue = VecDeque::from([v]);
            let mut reached = v == u;
            while let Some(x) = queue.pop_front() {
                if reached {
                    break;
                }
                for &(y, _) in &succ[x as usize] {
                    if inside.contains(&y) && !parent.contains_key(&y) {
                        parent.insert(y, x);
                        if y == u {
                            reached = true;
                            break;
                        }
                        queue.push_back(y);
                    }
                }
            }
            if reached {
                let mut back = vec![u];
                let mut x = u;
                while x != v {
                    x = parent[&x];
                    back.push(x);
                }
                back.reverse(); // v ... u
                let mut cycle = vec![u];
                cycle.extend(back.into_iter().filter(|&x| x != u));
                if best.as_ref().is_none_or(|b| cycle.len() < b.len()) {
                    best = Some(cycle);
                }
            }
            if tried >= 16 {
                break 'edges;
            }
        }
    }
    best.unwrap_or_else(|| members.to_vec())
}
