//! The engine's modules form layers: no two modules of `src/` import each other, directly
//! or through others (a parent importing its children counts, as does a child importing
//! from its parent).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path (`crate::exec::shuffle`) -> source text without tests and comments.
fn modules(src: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
                parts.pop();
            }
            let name = std::iter::once("crate".to_string())
                .chain(parts)
                .collect::<Vec<_>>()
                .join("::");
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            let code: String = code
                .lines()
                .map(|l| l.split("//").next().unwrap_or(""))
                .collect::<Vec<_>>()
                .join("\n");
            out.insert(name, code);
        }
    }
    out
}

/// The module a path such as `super::spill::Bundle` names, seen from module `from`.
fn resolve(mods: &BTreeMap<String, String>, from: &str, path: &[&str]) -> Option<String> {
    let mut base: Vec<&str> = match *path.first()? {
        "crate" => vec!["crate"],
        "self" => from.split("::").collect(),
        "super" => {
            let mut b: Vec<&str> = from.split("::").collect();
            b.pop();
            b
        }
        _ => return None,
    };
    let mut rest = &path[1..];
    while rest.first() == Some(&"super") {
        base.pop();
        rest = &rest[1..];
    }
    let mut best = mods.contains_key(&base.join("::")).then(|| base.join("::"));
    for seg in rest {
        base.push(seg);
        let cand = base.join("::");
        if !mods.contains_key(&cand) {
            break;
        }
        best = Some(cand);
    }
    best
}

/// The paths in `code` that start with `crate`, `self` or `super` (or `child::` for a
/// child module of `from`), as segment lists.
fn paths(code: &str) -> Vec<Vec<&str>> {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < code.len() {
        let start_ok = i == 0 || !is_ident(bytes[i - 1] as char) && bytes[i - 1] != b':';
        if start_ok && is_ident(bytes[i] as char) {
            let mut segs = Vec::new();
            let mut j = i;
            loop {
                let s = j;
                while j < code.len() && is_ident(bytes[j] as char) {
                    j += 1;
                }
                segs.push(&code[s..j]);
                if code[j..].starts_with("::") && code[j + 2..].starts_with(is_ident) {
                    j += 2;
                } else {
                    break;
                }
            }
            if segs.len() > 1 || code[j..].starts_with("::") {
                out.push(segs);
            }
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn engine_modules_import_each_other_in_layers_only() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mods = modules(&src);
    assert!(mods.len() > 20, "found only {} modules", mods.len());
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, code) in &mods {
        let e = edges.entry(m.clone()).or_default();
        for p in paths(code) {
            let target = match p[0] {
                "crate" | "self" | "super" => resolve(&mods, m, &p),
                // A path through a child module of `m` (`use plan::Plan;` in exec).
                child => {
                    let c = format!("{m}::{child}");
                    mods.contains_key(&c).then_some(c)
                }
            };
            if let Some(t) = target.filter(|t| t != m) {
                e.insert(t);
            }
        }
    }
    // Depth-first search for a cycle, reporting its path.
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(2) => return None,
            Some(1) => {
                let at = stack.iter().position(|s| s == n).unwrap();
                let mut cycle = stack[at..].to_vec();
                cycle.push(n.to_string());
                return Some(cycle);
            }
            _ => {}
        }
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for t in edges.get(n).into_iter().flatten() {
            if let Some(c) = visit(t, edges, state, stack) {
                return Some(c);
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for m in mods.keys() {
        if let Some(cycle) = visit(m, &edges, &mut state, &mut Vec::new()) {
            panic!("modules import each other: {}", cycle.join(" -> "));
        }
    }
    // The layers the design describes: the operators know nothing of the schedulers.
    for (m, targets) in &edges {
        if m.starts_with("crate::operators") {
            let bad: Vec<_> = targets
                .iter()
                .filter(|t| t.starts_with("crate::exec") || t.starts_with("crate::stream"))
                .collect();
            assert!(bad.is_empty(), "{m} imports a scheduler: {bad:?}");
        }
    }
}
