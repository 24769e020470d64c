//! The conflict rule must be one order: the rankings that reads showed
//! (a read returning w1 while a concurrent w2 is in its past ranks w2 below
//! w1), happens-before between the writes involved, and the converged final
//! values must not contradict each other. A cycle among them means replicas
//! resolved one conflict differently; it is reported as a Divergence with
//! the steps of the cycle.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use petgraph::graph::NodeIndex;
use petgraph::visit::{EdgeRef, NodeFiltered};

use super::graph::{cyclic_components, graph_of, shortest_path};
use super::{AnomalyKind, ArbEdge, Ctx, Found, FINAL, NONE};

impl Ctx<'_> {
    /// The conflict rule must be one order: hb, the rankings reads showed,
    /// and the converged final values must not contradict each other.
    pub(super) fn check_arbitration(
        &self,
        arb: Vec<ArbEdge>,
        finals: &HashMap<usize, u32>,
        found: &mut Vec<Found>,
    ) {
        let mut by_key: BTreeMap<usize, Vec<ArbEdge>> = BTreeMap::new();
        for e in arb {
            by_key.entry(e.key).or_default().push(e);
        }
        for (key, mut edges) in by_key {
            let mut involved: BTreeSet<u32> = edges.iter().flat_map(|e| [e.lo, e.hi]).collect();
            // The final value outranks every surviving write concurrent with it.
            if let Some(&wf) = finals.get(&key) {
                for &w in &involved {
                    if !self.excused[w as usize] && self.concurrent(w, wf) {
                        edges.push(ArbEdge {
                            key,
                            lo: w,
                            hi: wf,
                            why: FINAL,
                        });
                    }
                }
                involved.insert(wf);
            }
            let list: Vec<u32> = involved.iter().copied().collect();
            let local: HashMap<u32, usize> =
                list.iter().enumerate().map(|(i, &n)| (n, i)).collect();
            let mut adj: Vec<Vec<(u32, u32)>> = vec![Vec::new(); list.len()];
            let mut seen = HashSet::new();
            for e in &edges {
                if seen.insert((e.lo, e.hi)) {
                    adj[local[&e.lo]].push((local[&e.hi] as u32, e.why));
                }
            }
            // hb between involved writes, through each session's first
            // successor (later ones follow by session order).
            let mut by_sess: BTreeMap<usize, Vec<u32>> = BTreeMap::new();
            for &n in &list {
                if self.nodes[n as usize].chain {
                    by_sess
                        .entry(self.nodes[n as usize].sess)
                        .or_default()
                        .push(n);
                }
            }
            for chain in by_sess.values_mut() {
                chain.sort_by_key(|&n| self.nodes[n as usize].idx);
                for pair in chain.windows(2) {
                    adj[local[&pair[0]]].push((local[&pair[1]] as u32, NONE));
                }
            }
            let failed: Vec<u32> = list
                .iter()
                .copied()
                .filter(|&n| !self.nodes[n as usize].chain)
                .collect();
            for &u in &list {
                for chain in by_sess.values() {
                    let pos = chain.partition_point(|&v| !self.lt(u, v));
                    if let Some(&v) = chain.get(pos) {
                        adj[local[&u]].push((local[&v] as u32, NONE));
                    }
                }
                for &f in &failed {
                    if self.lt(u, f) {
                        adj[local[&u]].push((local[&f] as u32, NONE));
                    }
                }
            }
            let edges: Vec<(u32, u32, u32)> = adj
                .iter()
                .enumerate()
                .flat_map(|(u, out)| out.iter().map(move |&(v, why)| (u as u32, v, why)))
                .collect();
            let g = graph_of(list.len(), &edges);
            for comp in cyclic_components(&g) {
                let inside: HashSet<NodeIndex> = comp.iter().copied().collect();
                // A ranking edge inside the component, and the way back.
                let Some((from, to, why)) = comp.iter().find_map(|&u| {
                    g.edges(u)
                        .find(|e| *e.weight() != NONE && inside.contains(&e.target()))
                        .map(|e| (u, e.target(), *e.weight()))
                }) else {
                    continue;
                };
                let component = NodeFiltered::from_fn(&g, |n| inside.contains(&n));
                let Some(back) = shortest_path(&component, to, from) else {
                    continue;
                };
                // Edges of the cycle: from -> to, then to ... -> from.
                let mut cycle = vec![(from, to, why)];
                cycle.extend(back);
                let mut ops = Vec::new();
                let mut steps = Vec::new();
                for &(a, b, w) in &cycle {
                    let (a, b) = (list[a.index()], list[b.index()]);
                    ops.push(a);
                    match w {
                        NONE => steps.push(format!(
                            "{} happens before {}",
                            self.describe(a),
                            self.describe(b)
                        )),
                        FINAL => steps.push(format!(
                            "the final state keeps {} over concurrent {}",
                            self.describe(b),
                            self.describe(a)
                        )),
                        read => {
                            ops.push(read);
                            steps.push(format!(
                                "{} saw {} win over concurrent {}",
                                self.describe(read),
                                self.describe(b),
                                self.describe(a)
                            ));
                        }
                    }
                }
                found.push(Found {
                    kind: AnomalyKind::Divergence,
                    ops: self.ops_of(&ops),
                    explanation: format!(
                        "concurrent writes of {} were not resolved by one rule: {}",
                        self.keys[key].name,
                        steps.join("; ")
                    ),
                });
            }
        }
    }
}
