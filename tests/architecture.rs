//! The module graph of src/, checked on the sources: every top-level module
//! has a floor (`FLOORS`, the same table as src/lib.rs and
//! docs/ARCHITECTURE.md) and uses only modules on lower floors, and no file
//! uses another that uses it back, directly or around a circle.
//!
//! A file's dependencies are the paths it names: `use` trees (groups,
//! `self`, `as`, globs) and paths in code starting with `crate::`,
//! `super::`, `self::`, `$crate::`, `infer_eval::` (the binary), a child
//! module or a module a `use` brought in. A path goes to the file of the
//! deepest module it names (an item re-exported by a `mod.rs` goes to that
//! `mod.rs`, whose `pub use` goes on to the defining file). `mod x;` is not
//! a dependency; comments, strings and `#[cfg(test)]` blocks are skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every top-level module of the library (and the binary's two), with its
/// floor: a module uses only modules on lower floors.
const FLOORS: &[(&str, u32)] = &[
    ("error", 0),
    ("numerics", 0),
    ("lib", 1),
    ("fsio", 1),
    ("kernels", 1),
    ("prompts", 1),
    ("sampling", 1),
    ("formats", 2),
    ("ops", 2),
    ("device", 3),
    ("fetch", 3),
    ("model", 3),
    ("tokenizer", 3),
    ("baseline", 4),
    ("engine", 4),
    ("loader", 4),
    ("record", 4),
    ("bench", 5),
    ("contrast", 5),
    ("eval", 5),
    ("generation", 5),
    ("serve", 5),
    ("trace", 5),
    ("export", 6),
    ("report", 6),
    ("cli", 7),
    ("main", 8),
];

/// Blank out comments, string and char literals, keeping line breaks.
fn strip(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let n = b.len();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, s: &[char]| {
        for &c in s {
            out.push(if c == '\n' { '\n' } else { ' ' });
        }
    };
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut i = 0;
    while i < n {
        let c = b[i];
        let starts = |s: &str| s.chars().enumerate().all(|(k, x)| b.get(i + k) == Some(&x));
        if starts("//") {
            let j = (i..n).find(|&j| b[j] == '\n').unwrap_or(n);
            blank(&mut out, &b[i..j]);
            i = j;
        } else if starts("/*") {
            let (mut depth, mut j) = (1, i + 2);
            while j < n && depth > 0 {
                if b[j] == '/' && b.get(j + 1) == Some(&'*') {
                    depth += 1;
                    j += 2;
                } else if b[j] == '*' && b.get(j + 1) == Some(&'/') {
                    depth -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            blank(&mut out, &b[i..j]);
            i = j;
        } else if (c == 'r' || (c == 'b' && b.get(i + 1) == Some(&'r')))
            && (i == 0 || !ident(b[i - 1]))
            && {
                let k = i + if c == 'b' { 2 } else { 1 };
                let h = (k..n).take_while(|&j| b[j] == '#').count();
                b.get(k + h) == Some(&'"')
            }
        {
            // A raw string: r"..", r#".."#, br"..".
            let k = i + if c == 'b' { 2 } else { 1 };
            let h = (k..n).take_while(|&j| b[j] == '#').count();
            let mut j = k + h + 1;
            while j < n && !(b[j] == '"' && (1..=h).all(|x| b.get(j + x) == Some(&'#'))) {
                j += 1;
            }
            let j = (j + 1 + h).min(n);
            blank(&mut out, &b[i..j]);
            i = j;
        } else if c == '"'
            || (c == 'b' && b.get(i + 1) == Some(&'"') && (i == 0 || !ident(b[i - 1])))
        {
            let mut j = i + if c == 'b' { 2 } else { 1 };
            while j < n && b[j] != '"' {
                j += if b[j] == '\\' { 2 } else { 1 };
            }
            let j = (j + 1).min(n);
            blank(&mut out, &b[i..j]);
            i = j;
        } else if c == '\'' {
            // A char literal ('a', '\n', '\u{..}'); a lifetime stays.
            let end = if b.get(i + 1) == Some(&'\\') {
                (i + 2..n).find(|&j| b[j] == '\'').map(|j| j + 1)
            } else if b.get(i + 2) == Some(&'\'') {
                Some(i + 3)
            } else {
                None
            };
            match end {
                Some(j) => {
                    blank(&mut out, &b[i..j]);
                    i = j;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Tokens: identifiers (with `$crate`), `::` and single punctuation.
fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_alphabetic()
            || c == '_'
            || (c == '$' && b.get(i + 1).is_some_and(|x| x.is_alphabetic()))
        {
            let j = (i + 1..b.len())
                .find(|&j| !(b[j].is_alphanumeric() || b[j] == '_'))
                .unwrap_or(b.len());
            out.push(b[i..j].iter().collect());
            i = j;
        } else if c.is_ascii_digit() {
            i = (i..b.len())
                .find(|&j| !(b[j].is_alphanumeric() || b[j] == '_' || b[j] == '.'))
                .unwrap_or(b.len());
        } else if c == ':' && b.get(i + 1) == Some(&':') {
            out.push("::".into());
            i += 2;
        } else if c.is_whitespace() {
            i += 1;
        } else {
            out.push(c.to_string());
            i += 1;
        }
    }
    out
}

/// Drop items under `#[cfg(test)]` (and `#[cfg(all(test, ..))]`): the
/// attribute, and the item up to its `;` or its closing brace.
fn without_test_items(t: Vec<String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < t.len() {
        let test_attr = t[i] == "#"
            && t.get(i + 1).is_some_and(|x| x == "[")
            && t.get(i + 2).is_some_and(|x| x == "cfg")
            && t.get(i + 3).is_some_and(|x| x == "(")
            && (t.get(i + 4).is_some_and(|x| x == "test")
                || (t.get(i + 4).is_some_and(|x| x == "all")
                    && t.get(i + 6).is_some_and(|x| x == "test")));
        if !test_attr {
            out.push(t[i].clone());
            i += 1;
            continue;
        }
        // Skip the attribute, then the item.
        let mut j = i + 2;
        let mut depth = 1;
        while j < t.len() && depth > 0 {
            match t[j].as_str() {
                "[" => depth += 1,
                "]" => depth -= 1,
                _ => {}
            }
            j += 1;
        }
        let mut braces = 0;
        while j < t.len() {
            match t[j].as_str() {
                "{" => braces += 1,
                "}" => {
                    braces -= 1;
                    if braces == 0 {
                        j += 1;
                        break;
                    }
                }
                ";" if braces == 0 => {
                    j += 1;
                    break;
                }
                _ => {}
            }
            j += 1;
        }
        i = j;
    }
    out
}

/// Expand a use tree at `t[i..]` into full paths (a trailing `self` names
/// the module itself); returns the index after the tree.
fn use_tree(t: &[String], mut i: usize, prefix: &[String], out: &mut Vec<Vec<String>>) -> usize {
    let mut path = prefix.to_vec();
    while i < t.len() {
        match t[i].as_str() {
            "{" => {
                i += 1;
                while i < t.len() && t[i] != "}" {
                    i = use_tree(t, i, &path, out);
                    if t.get(i).is_some_and(|x| x == ",") {
                        i += 1;
                    }
                }
                return i + 1;
            }
            "*" => {
                out.push(path);
                return i + 1;
            }
            "::" => i += 1,
            "," | "}" | ";" => return i,
            "as" => return i + 2,
            seg => {
                if seg != "self" {
                    path.push(seg.to_string());
                }
                if t.get(i + 1).is_none_or(|x| x != "::") {
                    out.push(path.clone());
                    i += 1;
                    if t.get(i).is_some_and(|x| x == "as") {
                        i += 2;
                    }
                    return i;
                }
                i += 1;
            }
        }
    }
    i
}

/// Which crate a file is in, and its module path.
fn module_of(rel: &Path) -> (bool, Vec<String>) {
    let parts: Vec<String> = rel
        .iter()
        .skip(1)
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    let bin = parts[0] == "main" || parts[0] == "cli";
    let mut segs: Vec<String> = parts
        .into_iter()
        .filter(|p| p != "mod" && p != "lib" && p != "main")
        .collect();
    if segs.last().is_some_and(|s| s == "mod") {
        segs.pop();
    }
    (bin, segs)
}

/// The file of module `segs` of a crate, if it is a file of src/.
fn file_of(src: &Path, bin: bool, segs: &[String]) -> Option<PathBuf> {
    if segs.is_empty() {
        return Some(PathBuf::from(if bin {
            "src/main.rs"
        } else {
            "src/lib.rs"
        }));
    }
    if bin != (segs[0] == "cli") {
        return None;
    }
    let base = segs.iter().fold(src.to_path_buf(), |p, s| p.join(s));
    for cand in [base.with_extension("rs"), base.join("mod.rs")] {
        if cand.is_file() {
            return Some(
                cand.strip_prefix(src.parent().unwrap())
                    .unwrap()
                    .to_path_buf(),
            );
        }
    }
    None
}

/// The files `rel` (a file of src/) depends on, from its text.
fn dependencies(src: &Path, rel: &Path, text: &str) -> BTreeSet<PathBuf> {
    let (bin, here) = module_of(rel);
    let t = without_test_items(tokens(&strip(text)));
    let is_mod_file =
        rel.ends_with("mod.rs") || rel.ends_with("lib.rs") || rel.ends_with("main.rs");
    // The module a path's first segment starts from.
    let mut aliases: BTreeMap<String, (bool, Vec<String>)> = BTreeMap::new();
    let start = |first: &str,
                 aliases: &BTreeMap<String, (bool, Vec<String>)>|
     -> Option<(bool, Vec<String>)> {
        match first {
            "crate" | "$crate" => Some((bin, Vec::new())),
            "infer_eval" => Some((false, Vec::new())),
            "self" => Some((bin, here.clone())),
            "super" => Some((bin, here[..here.len().saturating_sub(1)].to_vec())),
            other => {
                let mut child = here.clone();
                child.push(other.to_string());
                if is_mod_file && file_of(src, bin, &child).is_some() {
                    return Some((bin, child));
                }
                aliases.get(other).cloned()
            }
        }
    };
    let mut deps = BTreeSet::new();
    // Resolve a path to the deepest module it names; record aliases of uses.
    let mut resolve =
        |path: &[String], alias: bool, aliases: &mut BTreeMap<String, (bool, Vec<String>)>| {
            let Some((b, mut segs)) = start(&path[0], aliases) else {
                return;
            };
            let mut k = 1;
            while path.get(k).is_some_and(|s| s == "super") {
                segs.pop();
                k += 1;
            }
            while let Some(s) = path.get(k) {
                let mut deeper = segs.clone();
                deeper.push(s.clone());
                if file_of(src, b, &deeper).is_none() {
                    break;
                }
                segs = deeper;
                k += 1;
            }
            if alias && k == path.len() && path.len() > 1 {
                aliases.insert(path.last().unwrap().clone(), (b, segs.clone()));
            }
            if let Some(f) = file_of(src, b, &segs) {
                if f != rel {
                    deps.insert(f);
                }
            }
        };
    let mut i = 0;
    while i < t.len() {
        let prev_is_path = i > 0 && t[i - 1] == "::";
        if t[i] == "use" {
            let mut paths = Vec::new();
            i = use_tree(&t, i + 1, &[], &mut paths);
            for p in paths.iter().filter(|p| !p.is_empty()) {
                resolve(p, true, &mut aliases);
            }
            continue;
        }
        if t[i] == "mod" {
            i += 2;
            continue;
        }
        let starts_path = !prev_is_path
            && t.get(i + 1).is_some_and(|x| x == "::")
            && t[i]
                .chars()
                .next()
                .is_some_and(|c| c.is_alphabetic() || c == '_' || c == '$');
        if starts_path {
            let mut path = vec![t[i].clone()];
            let mut j = i + 1;
            while t.get(j).is_some_and(|x| x == "::")
                && t.get(j + 1).is_some_and(|x| {
                    x.chars()
                        .next()
                        .is_some_and(|c| c.is_alphabetic() || c == '_')
                })
            {
                path.push(t[j + 1].clone());
                j += 2;
            }
            resolve(&path, false, &mut aliases);
            i = j;
            continue;
        }
        i += 1;
    }
    deps
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The file graph of src/: file -> files it uses.
fn graph() -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    let mut files = Vec::new();
    rs_files(&src, &mut files);
    files
        .into_iter()
        .map(|f| {
            let rel = f.strip_prefix(root).unwrap().to_path_buf();
            let text = std::fs::read_to_string(&f).unwrap();
            let deps = dependencies(&src, &rel, &text);
            (rel, deps)
        })
        .collect()
}

/// The top-level module of a file of src/ ("lib", "main", "cli", "eval", ...).
fn top(rel: &Path) -> String {
    let first = rel.iter().nth(1).unwrap().to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// Circles of the graph: its strongly connected components of more than
/// one file (Tarjan).
fn circles(g: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Vec<Vec<PathBuf>> {
    struct T<'a> {
        g: &'a BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        index: BTreeMap<&'a PathBuf, usize>,
        low: BTreeMap<&'a PathBuf, usize>,
        stack: Vec<&'a PathBuf>,
        on: BTreeSet<&'a PathBuf>,
        out: Vec<Vec<PathBuf>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a PathBuf) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        t.on.insert(v);
        for w in t.g.get(v).into_iter().flatten() {
            let Some((w, _)) = t.g.get_key_value(w) else {
                continue;
            };
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.clone());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn every_module_has_a_floor_and_uses_only_lower_floors() {
    let g = graph();
    let floor: BTreeMap<&str, u32> = FLOORS.iter().copied().collect();
    let mut bad = Vec::new();
    let mut edges = 0;
    for (f, deps) in &g {
        let from = top(f);
        let Some(&ff) = floor.get(from.as_str()) else {
            bad.push(format!(
                "{}: module '{from}' has no floor in FLOORS",
                f.display()
            ));
            continue;
        };
        for d in deps {
            edges += 1;
            let to = top(d);
            if to == from {
                continue;
            }
            match floor.get(to.as_str()) {
                Some(&tf) if tf < ff => {}
                Some(&tf) => bad.push(format!(
                    "{} (floor {ff}) uses {} (floor {tf}): '{from}' may use only lower floors",
                    f.display(),
                    d.display()
                )),
                None => bad.push(format!("{}: module '{to}' has no floor", d.display())),
            }
        }
    }
    assert!(
        edges > 300,
        "only {edges} dependencies found: the reader is broken"
    );
    assert!(
        bad.is_empty(),
        "the floors of src/ (FLOORS):\n{}",
        bad.join("\n")
    );
    // Every top-level module of lib.rs is in the table (and nothing else).
    let lib =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let declared: BTreeSet<String> = lib
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|m| m.trim_end_matches(';').to_string())
        .chain(["lib", "cli", "main"].map(String::from))
        .collect();
    let listed: BTreeSet<String> = FLOORS.iter().map(|(m, _)| m.to_string()).collect();
    assert_eq!(
        declared, listed,
        "FLOORS must list exactly the modules of src/lib.rs"
    );
    // The diagram in lib.rs's documentation is this table.
    let mut drawn: Vec<(String, u32)> = Vec::new();
    for l in lib.lines().filter_map(|l| l.strip_prefix("//! ")) {
        let Some((n, rest)) = l.split_once(' ') else {
            continue;
        };
        let Ok(n) = n.parse::<u32>() else { continue };
        let names = rest.split("  ").next().unwrap_or("");
        for m in names.split(',') {
            let m = m.split_whitespace().next().unwrap_or("");
            drawn.push((m.to_string(), n));
        }
    }
    let mut table: Vec<(String, u32)> = FLOORS.iter().map(|(m, f)| (m.to_string(), *f)).collect();
    drawn.sort();
    table.sort();
    assert_eq!(drawn, table, "src/lib.rs's diagram differs from FLOORS");
}

#[test]
fn no_file_uses_another_that_uses_it_back() {
    let g = graph();
    let found = circles(&g);
    let text: Vec<String> = found
        .iter()
        .map(|c| {
            let mut s = format!("a circle of {} files:", c.len());
            for f in c {
                let inside: Vec<String> = g[f]
                    .iter()
                    .filter(|d| c.contains(d))
                    .map(|d| d.display().to_string())
                    .collect();
                s += &format!("\n  {} -> {}", f.display(), inside.join(", "));
            }
            s
        })
        .collect();
    assert!(
        found.is_empty(),
        "import circles in src/:\n{}",
        text.join("\n")
    );
}

/// The reader itself, on snippets: grouped uses, `super::super`, a path in
/// a comment and in a string (not dependencies), a test module (skipped).
#[test]
fn the_reader_finds_what_a_file_names_and_nothing_else() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let rel = Path::new("src/eval/lmeval/prepare.rs");
    let text = r#"
use super::super::{config::TaskKind, dataset::Item};
use crate::engine::{self, core::SeqSpec};
// use crate::serve::api;
const S: &str = "crate::report::write";
fn f() { let x = crate::kernels::softmax::log_softmax_at(); let c = 'a'; }
#[cfg(test)]
mod tests { use crate::bench::tiny; }
"#;
    let deps: BTreeSet<String> = dependencies(&src, rel, text)
        .into_iter()
        .map(|p| p.display().to_string())
        .collect();
    let want: BTreeSet<String> = [
        "src/eval/config/mod.rs",
        "src/eval/dataset.rs",
        "src/engine/mod.rs",
        "src/engine/core.rs",
        "src/kernels/softmax.rs",
    ]
    .map(String::from)
    .into();
    assert_eq!(deps, want);
    // A circle is found.
    let a = PathBuf::from("a.rs");
    let b = PathBuf::from("b.rs");
    let g: BTreeMap<PathBuf, BTreeSet<PathBuf>> = [
        (a.clone(), [b.clone()].into()),
        (b.clone(), [a.clone()].into()),
    ]
    .into();
    assert_eq!(circles(&g), vec![vec![a, b]]);
}
