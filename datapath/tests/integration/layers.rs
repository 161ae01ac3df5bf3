//! The layering of the crate's source (see the crate documentation): imports only go down.
//!
//! - `src/wire/` may use only `crate::wire` and the value modules (`types`, `ratelimit`,
//!   `counters`);
//! - `src/state/` may use those and `crate::state`;
//! - the value modules may use only each other;
//! - `src/pipeline/` and the other root files may use anything.
//!
//! Root re-exports (`crate::PacketBuf`, `crate::Datapath`, ...) count as a use of the crate
//! root and are refused in the lower layers: they hide which layer an item comes from.
//! Inside each layer's directory the files (other than the layer's `mod.rs`, the hub that
//! declares them) must not import each other in a cycle.
//!
//! The check reads the source: every `crate::` path outside comments, with `{...}` groups
//! expanded, and `super::` paths resolved against the file's place.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The value modules: below every layer.
const VALUES: &[&str] = &["types", "ratelimit", "counters"];

/// A source file: its layer directory ("" for the crate root) and its module name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Module {
    layer: String,
    name: String,
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `src/`, with its module.
fn sources() -> Vec<(Module, String)> {
    let mut out = Vec::new();
    let mut dirs = vec![src_dir()];
    while let Some(d) = dirs.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = p.strip_prefix(src_dir()).unwrap();
            let parts: Vec<String> = rel
                .iter()
                .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string())
                .collect();
            let (layer, name) = match parts.as_slice() {
                [name] => (String::new(), name.clone()),
                [layer, name] => (layer.clone(), name.clone()),
                _ => panic!("unexpected nesting: {}", rel.display()),
            };
            out.push((Module { layer, name }, fs::read_to_string(&p).unwrap()));
        }
    }
    out.sort();
    out
}

/// The source without `//` comments (doc comments included).
fn strip_comments(src: &str) -> String {
    src.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths after each occurrence of `prefix` (e.g. `crate::`), `{a, b::c}` groups
/// expanded one level: `crate::{a, b::c}` gives `a` and `b::c`.
fn paths_after(code: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().next_back();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue; // `super::super::`, `foo_crate::`: not ours
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let item = item.trim();
                if !item.is_empty() {
                    out.push(item.to_string());
                }
            }
        } else {
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            out.push(rest[..end].to_string());
        }
    }
    out
}

/// The modules a file uses, as (layer, name) at the granularity of the crate's layout:
/// `crate::wire::l4::X` is ("wire", "l4"), `crate::wire::X` ("wire", "mod" or the item),
/// `crate::types::X` ("", "types"), `crate::Datapath` ("", "<root>").
fn uses(m: &Module, src: &str) -> BTreeSet<Module> {
    let code = strip_comments(src);
    let layers = ["wire", "state", "pipeline"];
    let mut out = BTreeSet::new();
    let mut add = |path: &str| {
        let segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
        let Some(first) = segs.first() else { return };
        let first = first.trim_start_matches("self").trim();
        if first.is_empty() {
            return;
        }
        let (layer, name) = if layers.contains(&first) {
            let sub = segs.get(1).copied().unwrap_or("mod");
            (first.to_string(), sub.to_string())
        } else if VALUES.contains(&first) {
            (String::new(), first.to_string())
        } else {
            (String::new(), "<root>".to_string())
        };
        out.insert(Module { layer, name });
    };
    for p in paths_after(&code, "crate::") {
        add(&p);
    }
    // `super::` in a layer's file means the layer; in a layer's mod.rs, the crate root.
    for p in paths_after(&code, "super::") {
        if p == "*" {
            continue; // `use super::*` of an inline test module
        }
        if m.layer.is_empty() || m.name == "mod" {
            add(&p);
        } else {
            add(&format!("{}::{p}", m.layer));
        }
    }
    out.remove(m);
    out
}

/// The layers `m` may use.
fn allowed(m: &Module, used: &Module) -> bool {
    let value = used.layer.is_empty() && VALUES.contains(&used.name.as_str());
    match m.layer.as_str() {
        "wire" => value || used.layer == "wire",
        "state" => value || used.layer == "wire" || used.layer == "state",
        "" if VALUES.contains(&m.name.as_str()) => value,
        _ => true,
    }
}

#[test]
fn imports_only_go_down() {
    let mut bad = Vec::new();
    for (m, src) in sources() {
        for u in uses(&m, &src) {
            if !allowed(&m, &u) {
                bad.push(format!(
                    "{}/{} uses {}::{}",
                    m.layer, m.name, u.layer, u.name
                ));
            }
        }
    }
    assert!(bad.is_empty(), "upward imports:\n{}", bad.join("\n"));
}

#[test]
fn files_of_a_layer_do_not_import_each_other_in_a_cycle() {
    let mut graph: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (m, src) in sources() {
        if m.layer.is_empty() || m.name == "mod" {
            continue;
        }
        let same: BTreeSet<Module> = uses(&m, &src)
            .into_iter()
            .filter(|u| u.layer == m.layer && u.name != "mod")
            .collect();
        graph.insert(m, same);
    }
    // Depth-first search for a back edge.
    fn visit(
        g: &BTreeMap<Module, BTreeSet<Module>>,
        n: &Module,
        path: &mut Vec<Module>,
        done: &mut BTreeSet<Module>,
    ) -> Option<Vec<Module>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            return Some(path[i..].to_vec());
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.clone());
        for next in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(g, next, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.clone());
        None
    }
    let mut done = BTreeSet::new();
    for n in graph.keys() {
        if let Some(cycle) = visit(&graph, n, &mut Vec::new(), &mut done) {
            let names: Vec<String> = cycle
                .iter()
                .map(|m| format!("{}/{}", m.layer, m.name))
                .collect();
            panic!("import cycle: {}", names.join(" -> "));
        }
    }
    assert!(graph.keys().any(|m| m.layer == "wire") && graph.keys().any(|m| m.layer == "state"));
}

#[test]
fn the_check_sees_upward_imports_and_cycles() {
    let wire = Module {
        layer: "wire".into(),
        name: "nat".into(),
    };
    let src = "//! uses [`crate::Datapath`] in a doc, which is fine\n\
               use crate::state::conntrack::Tuple;\nuse crate::{PacketBuf, types::Mac};\n\
               use super::l4::L4Info;\n";
    let u = uses(&wire, src);
    let names: Vec<(String, String)> = u
        .iter()
        .map(|m| (m.layer.clone(), m.name.clone()))
        .collect();
    assert!(
        names.contains(&("state".into(), "conntrack".into())),
        "{names:?}"
    );
    assert!(
        names.contains(&(String::new(), "<root>".into())),
        "{names:?}"
    );
    assert!(
        names.contains(&(String::new(), "types".into())),
        "{names:?}"
    );
    assert!(names.contains(&("wire".into(), "l4".into())), "{names:?}");
    assert_eq!(names.len(), 4, "the doc comment is not a use: {names:?}");
    let refused: Vec<&Module> = u.iter().filter(|x| !allowed(&wire, x)).collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
}
