//! The workspace's module graph has no circle: in each crate, no two modules (files) import
//! each other, directly or through others. A module may use its ancestors and descendants
//! (`super::`, its own children); every other `crate::`/`super::` path it names (outside
//! comments and its `#[cfg(test)] mod tests`) is an edge to the module that path lands in.
//! A circle found names its modules and edges.

#![allow(clippy::tests_outside_test_module, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

/// Every module file of the crate whose sources are in `src` (binaries left out).
fn modules(src: &Path) -> BTreeMap<Module, PathBuf> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap().with_extension("");
            let mut m: Module = rel.iter().map(|c| c.to_string_lossy().into()).collect();
            if m.first().is_some_and(|c| c == "bin") {
                continue;
            }
            if m.last()
                .is_some_and(|c| c == "mod" || c == "lib" || c == "main")
            {
                m.pop();
            }
            out.insert(m, path);
        }
    }
    out
}

/// The longest prefix of `path` that is a module.
fn land(path: &[String], mods: &BTreeMap<Module, PathBuf>) -> Module {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| mods.contains_key(p))
        .unwrap_or_default()
}

/// The source without comments and without its test module.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = text
        .find("#[cfg(test)]\nmod tests")
        .map_or(text.as_str(), |i| &text[..i]);
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths a source names from `crate::` or `super::`, with `use` groups expanded one
/// level (`use crate::{a, b::c}`); each as (from `crate`, segments after it).
fn paths(code: &str) -> Vec<(bool, Vec<String>)> {
    let mut out = Vec::new();
    for (root, is_crate) in [("crate::", true), ("super::", false)] {
        let mut rest = code;
        while let Some(i) = rest.find(root) {
            let before = rest[..i].chars().last();
            rest = &rest[i + root.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                let inner = &group[..group.find('}').unwrap_or(group.len())];
                for item in inner.split(',') {
                    let segs: Vec<String> = item
                        .trim()
                        .split("::")
                        .map(|s| s.trim().to_string())
                        .take_while(|s| {
                            !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_')
                        })
                        .collect();
                    out.push((is_crate, segs));
                }
                continue;
            }
            let segs: Vec<String> = rest
                .split("::")
                .map(|s| {
                    s.chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect::<String>()
                })
                .scan(true, |go, s| {
                    let keep = *go && !s.is_empty();
                    *go = keep;
                    keep.then_some(s)
                })
                .collect();
            out.push((is_crate, segs));
        }
    }
    out
}

/// The module graph of the crate in `src`, edges between modules neither of which
/// contains the other.
fn graph(src: &Path) -> BTreeMap<Module, BTreeSet<Module>> {
    let mods = modules(src);
    let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (m, path) in &mods {
        for (is_crate, mut segs) in paths(&code(path)) {
            // `super::` from `a/b.rs` or from `a/b/mod.rs` (module `a::b`) is `a`.
            let mut base: Module = if is_crate {
                Vec::new()
            } else {
                m[..m.len().saturating_sub(1)].to_vec()
            };
            while segs.first().is_some_and(|s| s == "super") {
                segs.remove(0);
                base.pop();
            }
            base.extend(segs);
            let to = land(&base, &mods);
            if to.starts_with(m) || m.starts_with(&to) {
                continue;
            }
            edges.entry(m.clone()).or_default().insert(to);
        }
    }
    edges
}

/// The circles (strongly connected components of two or more modules).
fn circles(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    let nodes: BTreeSet<&Module> = edges.keys().chain(edges.values().flatten()).collect();
    let reach = |from: &Module| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(m) = todo.pop() {
            for n in edges.get(&m).into_iter().flatten() {
                if seen.insert(n.clone()) {
                    todo.push(n.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&Module, BTreeSet<Module>> =
        nodes.iter().map(|n| (*n, reach(n))).collect();
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for n in &nodes {
        if done.contains(*n) {
            continue;
        }
        let scc: Vec<Module> = nodes
            .iter()
            .filter(|m| reaches[*n].contains(**m) && reaches[**m].contains(*n))
            .map(|m| (*m).clone())
            .collect();
        done.extend(scc.iter().cloned());
        if scc.len() > 1 {
            out.push(scc);
        }
    }
    out
}

#[test]
fn no_crate_of_the_workspace_has_an_import_circle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut found = Vec::new();
    let mut edge_count = 0;
    for krate in ["dataplane", "control", "bench", "testkit"] {
        let edges = graph(&root.join(krate).join("src"));
        edge_count += edges.values().map(BTreeSet::len).sum::<usize>();
        for c in circles(&edges) {
            let names: Vec<String> = c.iter().map(|m| m.join("::")).collect();
            found.push(format!("{krate}: {}", names.join(" <-> ")));
        }
    }
    assert!(edge_count > 100, "the graph was read ({edge_count} edges)");
    assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
}

#[test]
fn the_check_sees_a_circle() {
    // Two sibling modules naming each other, as `config <-> gateway_services` once did.
    let dir = std::env::temp_dir().join(format!("vpcep-layout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("lib.rs"), "mod a;\nmod b;\nmod c;\n").unwrap();
    std::fs::write(dir.join("a.rs"), "use crate::b::B;\npub struct A;\n").unwrap();
    std::fs::write(dir.join("b.rs"), "use super::{a::A, c};\npub struct B;\n").unwrap();
    std::fs::write(dir.join("c.rs"), "// crate::a::A in a comment is no edge\n").unwrap();
    let edges = graph(&dir);
    let c = circles(&edges);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(c, vec![vec![vec!["a".to_string()], vec!["b".to_string()]]]);
}
