//! The house rule that keeps `src/` readable: no module imports another
//! that imports it back, directly or through others. A module is a file
//! (`store/table.rs` is `store::table`, `store/mod.rs` is `store`); it
//! imports what its code names through `crate::…`, `super::…`, `self::…`
//! or, in a `mod.rs`, a child's name. Declaring a child (`mod table;`) is not an
//! import, and neither is test-only code (`#[cfg(test)] mod …`), which may
//! reach anything. So a parent may re-export its children, but a child
//! names its siblings by their own paths, never through the parent.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The modules under `root` (a crate's `src/`), by path, with their code.
fn modules(root: &Path) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable source tree") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                if path != root.join("bin") {
                    dirs.push(path);
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(root).unwrap().with_extension("");
            let mut parts: Vec<String> = relative
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            if parts == ["lib"] || parts == ["main"] {
                continue;
            }
            let code = std::fs::read_to_string(&path).expect("readable source file");
            found.insert(parts.join("::"), code);
        }
    }
    found
}

/// The code that counts: comments, test-only module declarations and
/// test modules (`#[cfg(test)] mod tests { … }`) left out.
fn code_of(text: &str) -> String {
    let mut kept = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("//") {
            continue;
        }
        if trimmed.starts_with("#[cfg(test)]") {
            let next = lines.peek().map(|l| l.trim_start()).unwrap_or("");
            let declares = next.starts_with("mod ") || next.starts_with("pub mod ");
            if declares && next.trim_end().ends_with(';') {
                lines.next();
                continue;
            }
            if declares && next.trim_end().ends_with('{') {
                // A test module: skip it to its closing brace.
                let mut depth = 0i32;
                for line in lines.by_ref() {
                    depth += line.matches('{').count() as i32;
                    depth -= line.matches('}').count() as i32;
                    if depth <= 0 && line.contains('}') {
                        break;
                    }
                }
                continue;
            }
        }
        kept.push(line);
    }
    kept.join("\n")
}

/// Every path written after `prefix` (`crate::`, `super::`) in `code`, as
/// segments; a group `{a, b::c}` gives one path per member.
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let bytes = code.as_bytes();
    let mut at = 0;
    while let Some(found) = code[at..].find(prefix) {
        let start = at + found;
        at = start + prefix.len();
        let before = start.checked_sub(1).map(|i| bytes[i]);
        if before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':') {
            continue;
        }
        let (rest, _) = path_tree(&code[at..]);
        paths.extend(rest);
    }
    paths
}

/// Parses `a::b::{c, d::e}` at the start of `text` into its paths, and
/// how many bytes it took.
fn path_tree(text: &str) -> (Vec<Vec<String>>, usize) {
    let mut segments = Vec::new();
    let mut at = 0;
    loop {
        let name_len = text[at..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(text.len() - at);
        if name_len > 0 {
            segments.push(text[at..at + name_len].to_string());
            at += name_len;
            if text[at..].starts_with("::") {
                at += 2;
                continue;
            }
            return (vec![segments], at);
        }
        if !text[at..].starts_with('{') {
            return (vec![segments], at);
        }
        // A group: each member continues the path so far.
        at += 1;
        let mut paths = Vec::new();
        loop {
            let skipped = text[at..].len() - text[at..].trim_start().len();
            at += skipped;
            if text[at..].starts_with('}') || at >= text.len() {
                return (paths, at + 1);
            }
            let (members, used) = path_tree(&text[at..]);
            for member in members {
                let mut path = segments.clone();
                path.extend(member);
                paths.push(path);
            }
            at += used.max(1);
            let skipped = text[at..].len() - text[at..].trim_start().len();
            at += skipped;
            if text[at..].starts_with(',') {
                at += 1;
            }
        }
    }
}

/// The module a path names: its longest prefix that is a module.
fn module_named(
    modules: &BTreeMap<String, String>,
    base: &[String],
    path: &[String],
) -> Option<String> {
    (0..=path.len()).rev().find_map(|n| {
        let name: Vec<&str> = base
            .iter()
            .map(String::as_str)
            .chain(path[..n].iter().map(String::as_str))
            .collect();
        let name = name.join("::");
        modules.contains_key(&name).then_some(name)
    })
}

/// Which modules each module imports.
fn imports(modules: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph = BTreeMap::new();
    for (name, text) in modules {
        // A visibility (`pub(in crate::a)`) names a module but imports nothing.
        let code = code_of(text).replace("pub(in crate::", "pub(in ::");
        let here: Vec<String> = name.split("::").map(str::to_string).collect();
        let parent = &here[..here.len() - 1];
        let mut named = BTreeSet::new();
        for path in paths_after(&code, "crate::") {
            named.extend(module_named(modules, &[], &path));
        }
        for path in paths_after(&code, "super::") {
            // `super::Item` names the parent itself; `super::super::` its parent.
            let ups = path.iter().take_while(|s| *s == "super").count();
            let base = &parent[..parent.len().saturating_sub(ups)];
            named.extend(module_named(modules, base, &path[ups..]));
        }
        for path in paths_after(&code, "self::") {
            named.extend(module_named(modules, &here, &path));
        }
        // A child named without a prefix (`use table::Store;`, `kv::routes`).
        for child in modules
            .keys()
            .filter_map(|m| m.strip_prefix(&format!("{name}::")))
        {
            if child.contains("::") {
                continue;
            }
            let mentioned = paths_after(&code, &format!("{child}::"));
            if !mentioned.is_empty() {
                named.insert(format!("{name}::{child}"));
            }
        }
        named.remove(name);
        graph.insert(name.clone(), named);
    }
    graph
}

/// Every import cycle, each as the modules around it (one per group of
/// modules that reach one another).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let mut found: Vec<Vec<String>> = Vec::new();
    let mut reported = BTreeSet::new();
    for start in graph.keys() {
        if reported.contains(start) {
            continue;
        }
        // The shortest way back to `start`, breadth first.
        let mut came_from: BTreeMap<&String, &String> = BTreeMap::new();
        let mut frontier = vec![start];
        let mut back = None;
        'search: while !frontier.is_empty() {
            let mut next = Vec::new();
            for module in frontier {
                for target in &graph[module] {
                    if target == start {
                        back = Some(module);
                        break 'search;
                    }
                    if graph.contains_key(target) && !came_from.contains_key(target) {
                        came_from.insert(target, module);
                        next.push(target);
                    }
                }
            }
            frontier = next;
        }
        if let Some(mut module) = back {
            let mut cycle = vec![module.clone()];
            while module != start {
                module = came_from[module];
                cycle.push(module.clone());
            }
            cycle.reverse();
            reported.extend(cycle.iter().cloned());
            found.push(cycle);
        }
    }
    found
}

fn show(cycles: &[Vec<String>]) -> String {
    cycles
        .iter()
        .map(|c| format!("{} -> {}", c.join(" -> "), c[0]))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn no_module_of_the_crate_imports_one_that_imports_it_back() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = modules(&src);
    assert!(modules.contains_key("replica::state"), "the tree was read");
    let graph = imports(&modules);
    // The reading of imports itself: known edges are seen.
    assert!(
        graph["http::kv"].contains("node"),
        "{:?}",
        graph["http::kv"]
    );
    assert!(graph["store::copy"].contains("store::table"));
    assert!(graph["replica::gc"].contains("replica::state"));
    let found = cycles(&graph);
    assert!(found.is_empty(), "import cycles:\n{}", show(&found));
}

/// A throwaway source tree.
struct Tree(PathBuf);

impl Tree {
    fn new(files: &[(&str, &str)]) -> Tree {
        let dir = tempfile::tempdir().unwrap().keep();
        for (path, text) in files {
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        Tree(dir)
    }

    fn cycles(&self) -> Vec<Vec<String>> {
        cycles(&imports(&modules(&self.0)))
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn the_check_finds_siblings_importing_each_other_even_through_a_third() {
    let tree = Tree::new(&[
        ("lib.rs", "mod a; mod b; mod c;"),
        ("a.rs", "use crate::b::Thing;"),
        ("b.rs", "fn f() -> crate::c::Other { todo!() }"),
        ("c.rs", "use crate::{x::Y, a::Z};"),
        ("x.rs", ""),
    ]);
    assert_eq!(tree.cycles(), vec![vec!["a", "b", "c"]]);
}

#[test]
fn the_check_finds_a_parent_and_a_child_importing_each_other() {
    let tree = Tree::new(&[
        ("lib.rs", "mod store;"),
        (
            "store/mod.rs",
            "mod table;\nuse table::Slot;\npub struct Store;",
        ),
        (
            "store/table.rs",
            "use super::{Store, other::X};\npub struct Slot;",
        ),
    ]);
    assert_eq!(tree.cycles(), vec![vec!["store", "store::table"]]);
}

#[test]
fn the_check_follows_self_paths() {
    let tree = Tree::new(&[
        ("lib.rs", "mod a;"),
        ("a/mod.rs", "mod inner;\nuse self::inner::X;\npub struct Z;"),
        ("a/inner.rs", "pub struct X;\nuse super::Z;"),
    ]);
    assert_eq!(tree.cycles(), vec![vec!["a", "a::inner"]]);
}

#[test]
fn the_check_reads_the_code_after_a_test_module() {
    let tree = Tree::new(&[
        ("lib.rs", "mod a; mod b;"),
        ("a.rs", "pub struct X;\nuse crate::b::Y;"),
        (
            "b.rs",
            "pub struct Y;\n#[cfg(test)]\nmod tests {\n    fn f() {\n    }\n}\nuse crate::a::X;",
        ),
    ]);
    assert_eq!(tree.cycles(), vec![vec!["a", "b"]]);
}

#[test]
fn re_exports_sibling_paths_comments_and_tests_are_not_cycles() {
    let tree = Tree::new(&[
        ("lib.rs", "mod store;"),
        ("store/copy/page.rs", "use super::super::table::Store;\npub(in crate::store) struct Page;"),
        (
            "store/mod.rs",
            "mod table;\nmod copy;\n#[cfg(test)]\nmod tests;\npub use table::Store;\npub use copy::Image;",
        ),
        ("store/table.rs", "// see super::copy\npub struct Store;"),
        (
            "store/copy.rs",
            "mod page;\nuse super::table::Store;\nuse page::Page;\npub struct Image;\n#[cfg(test)]\nmod tests {\n    use super::super::*;\n}",
        ),
        ("store/tests.rs", "use super::*;"),
    ]);
    assert_eq!(tree.cycles(), Vec::<Vec<String>>::new());
}
