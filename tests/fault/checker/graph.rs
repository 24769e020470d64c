//! The graph searches the checks share, on `petgraph`: graphs built from
//! edge lists (a node's out-edges keep the order they were listed in, so
//! that every search breaks ties the same way each time), the components
//! that hold a cycle, and a shortest path.

use std::collections::HashMap;
use std::hash::Hash;

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::{Bfs, EdgeRef, IntoEdges, Visitable};

/// A directed graph on nodes `0..nodes` with the edges of `edges`, each
/// `(from, to, weight)`.
pub(super) fn graph_of<E: Copy>(nodes: usize, edges: &[(u32, u32, E)]) -> DiGraph<(), E> {
    let mut g = DiGraph::with_capacity(nodes, edges.len());
    for _ in 0..nodes {
        g.add_node(());
    }
    // petgraph lists a node's out-edges newest first: add them last to first.
    for &(from, to, weight) in edges.iter().rev() {
        g.add_edge(
            NodeIndex::new(from as usize),
            NodeIndex::new(to as usize),
            weight,
        );
    }
    g
}

/// The strongly connected components of `g` that hold a cycle (more than
/// one node, or a self-loop), each in node order, ordered by first node.
pub(super) fn cyclic_components<E>(g: &DiGraph<(), E>) -> Vec<Vec<NodeIndex>> {
    let mut components: Vec<Vec<NodeIndex>> = tarjan_scc(g)
        .into_iter()
        .filter(|c| c.len() > 1 || g.contains_edge(c[0], c[0]))
        .collect();
    for c in &mut components {
        c.sort_unstable();
    }
    components.sort_unstable();
    components
}

/// One edge of a path: `(from, to, weight)`.
pub(super) type Step<N, E> = (N, N, E);

/// The steps of a shortest path from `from` to `to`
/// in `g` (none when they are the same node); `None` if `to` cannot be
/// reached. Among paths of one length it takes the one breadth-first
/// search finds first.
pub(super) fn shortest_path<G, E>(
    g: G,
    from: G::NodeId,
    to: G::NodeId,
) -> Option<Vec<Step<G::NodeId, E>>>
where
    G: IntoEdges<EdgeWeight = E> + Visitable,
    G::NodeId: Eq + Hash,
    E: Copy,
{
    // Each node's parent is the node whose visit discovered it.
    let mut parent: HashMap<G::NodeId, (G::NodeId, E)> = HashMap::new();
    let mut bfs = Bfs::new(g, from);
    loop {
        let x = bfs.next(g)?;
        if x == to {
            break;
        }
        for e in g.edges(x) {
            if e.target() != from {
                parent.entry(e.target()).or_insert((x, *e.weight()));
            }
        }
    }
    let mut steps = Vec::new();
    let mut x = to;
    while x != from {
        let (p, w) = parent[&x];
        steps.push((p, x, w));
        x = p;
    }
    steps.reverse();
    Some(steps)
}
