//! The library's modules form the layers ARCHITECTURE.md draws: no module uses one above it,
//! no cycle among them, and only the store asks where bytes live (`local_root`).
//!
//! The layer table is the fenced `layers` block of ARCHITECTURE.md (bottom line first), so the
//! document and this check cannot drift apart. Uses are found by scanning src/ for `crate::`
//! paths outside comments, strings and `#[cfg(test)]` items; src/bin and src/lib.rs sit above
//! every layer and are not checked.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One use of a module by another: where it is written.
#[derive(Debug, Clone)]
struct Use {
    from: String,
    to: String,
    at: String,
}

#[test]
fn no_module_uses_one_above_it_and_no_cycle_joins_them() {
    let layers = layer_table(&read(&repo().join("ARCHITECTURE.md")));
    let uses = crate_uses(&repo().join("src"));
    assert!(
        uses.len() > 40,
        "the scan found only {} uses of crate:: paths: the scanner is broken",
        uses.len()
    );

    let mut unknown: BTreeSet<&str> = BTreeSet::new();
    let mut upward: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for u in &uses {
        for module in [&u.from, &u.to] {
            if !layers.contains_key(module.as_str()) {
                unknown.insert(module);
            }
        }
        if let (Some(from), Some(to)) = (layers.get(&u.from), layers.get(&u.to)) {
            if to > from {
                upward
                    .entry((u.from.clone(), u.to.clone()))
                    .or_default()
                    .push(u.at.clone());
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "modules missing from ARCHITECTURE.md's layers block: {unknown:?}"
    );

    assert!(
        upward.is_empty(),
        "modules using one above them: {upward:#?}"
    );
    if let Some(cycle) = find_cycle(&uses) {
        panic!("a cycle among src/'s modules: {cycle:#?}");
    }
}

#[test]
fn only_the_store_asks_where_bytes_live() {
    let mut calls = Vec::new();
    for file in rust_files(&repo().join("src")) {
        let relative = file.strip_prefix(repo()).unwrap().to_path_buf();
        if relative.starts_with("src/store") || relative.starts_with("src/bin") {
            continue;
        }
        let code = library_code(&read(&file));
        for (line, text) in code.lines().enumerate() {
            if text.contains("local_root(") {
                calls.push(format!("{}:{}", relative.display(), line + 1));
            }
        }
    }
    assert!(
        calls.is_empty(),
        "local_root() calls outside src/store/ (read through the store instead): {calls:#?}"
    );
}

#[test]
fn the_library_needs_none_of_the_cli_s_crates() {
    let mut uses = Vec::new();
    for file in rust_files(&repo().join("src")) {
        let relative = file.strip_prefix(repo()).unwrap().to_path_buf();
        if relative.starts_with("src/bin") {
            continue;
        }
        let code = library_code(&read(&file));
        for (line, text) in code.lines().enumerate() {
            for krate in ["anyhow", "clap", "indicatif"] {
                if text.contains(&format!("{krate}::")) {
                    uses.push(format!("{}:{}: {krate}", relative.display(), line + 1));
                }
            }
        }
    }
    assert!(
        uses.is_empty(),
        "the library uses crates only the CLI (feature `cli`) depends on: {uses:#?}"
    );
}

#[test]
fn the_scanner_sees_uses_in_code_only() {
    let code = library_code(
        "use crate::store::Store; // crate::fold in a comment\n\
         /* crate::fs */ fn f() { let s = \"crate::cache\"; crate::format::x(); let c = '\"'; }\n\
         #[cfg(test)]\nmod tests { use crate::read::Dataset; fn g() { let _ = '{'; } }\n\
         fn h() -> crate::error::Result<()> { Ok(()) }\n",
    );
    let found: Vec<&str> = used_modules(&code).into_iter().map(|(m, _)| m).collect();
    assert_eq!(found, ["store", "format", "error"]);
    let table = layer_table("text\n```layers\na b\nc\n```\nmore\n");
    assert_eq!(table.get("a"), Some(&0));
    assert_eq!(table.get("b"), Some(&0));
    assert_eq!(table.get("c"), Some(&1));
    let cycle = find_cycle(&[use_of("a", "b"), use_of("b", "c"), use_of("c", "a")]);
    assert_eq!(cycle.map(|c| c.len()), Some(3));
    assert!(find_cycle(&[use_of("a", "b"), use_of("b", "c"), use_of("a", "c")]).is_none());
}

fn use_of(from: &str, to: &str) -> Use {
    Use {
        from: from.into(),
        to: to.into(),
        at: String::new(),
    }
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Module name -> layer number, from the fenced `layers` block (one layer a line, bottom first).
fn layer_table(doc: &str) -> BTreeMap<String, usize> {
    let block = doc
        .split("```layers\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("ARCHITECTURE.md has a ```layers block");
    let mut table = BTreeMap::new();
    for (layer, line) in block.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let modules = line.split('#').next().unwrap_or_default();
        for module in modules.split_whitespace() {
            table.insert(module.to_string(), layer);
        }
    }
    table
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// Every use of another top-level module from src/'s library files.
fn crate_uses(src: &Path) -> Vec<Use> {
    let mut uses = Vec::new();
    for file in rust_files(src) {
        let relative = file.strip_prefix(src).unwrap();
        let Some(from) = owning_module(relative) else {
            continue;
        };
        let code = library_code(&read(&file));
        for (to, line) in used_modules(&code) {
            if to != from {
                uses.push(Use {
                    from: from.clone(),
                    to: to.to_string(),
                    at: format!("src/{}:{line}", relative.display()),
                });
            }
        }
    }
    uses
}

/// The top-level module a file under src/ belongs to; None for lib.rs and the binaries.
fn owning_module(relative: &Path) -> Option<String> {
    let first = relative.components().next()?.as_os_str().to_str()?;
    match first {
        "lib.rs" | "bin" => None,
        name => Some(name.trim_end_matches(".rs").to_string()),
    }
}

/// The modules named by `crate::NAME` in `code`, with 1-based line numbers.
fn used_modules(code: &str) -> Vec<(&str, usize)> {
    let mut found = Vec::new();
    for (number, line) in code.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            let preceded_by_ident = rest[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$');
            let after = &rest[at + "crate::".len()..];
            let name_len = after
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            if !preceded_by_ident && name_len > 0 {
                found.push((&after[..name_len], number + 1));
            }
            rest = &after[name_len..];
        }
    }
    found
}

/// `source` with comments, string and char literals blanked and `#[cfg(test)]` items removed;
/// line breaks are kept so that line numbers still match the file.
fn library_code(source: &str) -> String {
    let blanked = blank_comments_and_literals(source);
    remove_test_items(&blanked)
}

fn blank_comments_and_literals(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    let keep_newlines = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(keep_newlines(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r'
            && matches!(next, Some('"') | Some('#'))
            && raw_string_end(&chars, i).is_some()
        {
            let end = raw_string_end(&chars, i).unwrap();
            out.extend(chars[i..end].iter().map(|&c| keep_newlines(c)));
            i = end;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(keep_newlines(chars[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' && char_literal_len(&chars, i).is_some() {
            let len = char_literal_len(&chars, i).unwrap();
            out.extend(std::iter::repeat_n(' ', len));
            i += len;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Where a raw string starting at `at` (`r"..."`, `r#"..."#`) ends, if one starts there.
fn raw_string_end(chars: &[char], at: usize) -> Option<usize> {
    if at > 0 && (chars[at - 1].is_alphanumeric() || chars[at - 1] == '_') {
        return None;
    }
    let hashes = chars[at + 1..].iter().take_while(|&&c| c == '#').count();
    let open = at + 1 + hashes;
    if chars.get(open) != Some(&'"') {
        return None;
    }
    let mut i = open + 1;
    while i < chars.len() {
        if chars[i] == '"'
            && chars[i + 1..]
                .iter()
                .take(hashes)
                .filter(|&&c| c == '#')
                .count()
                == hashes
        {
            return Some(i + 1 + hashes);
        }
        i += 1;
    }
    Some(chars.len())
}

/// The length of a char literal at `at` ('x', '\n', '\u{..}'), or None for a lifetime.
fn char_literal_len(chars: &[char], at: usize) -> Option<usize> {
    match chars.get(at + 1)? {
        '\\' => {
            let close = chars[at + 2..].iter().position(|&c| c == '\'')?;
            Some(close + 3)
        }
        _ if chars.get(at + 2) == Some(&'\'') => Some(3),
        _ => None,
    }
}

/// Removes every item that follows `#[cfg(test)]`, up to its matching closing brace or `;`.
fn remove_test_items(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let item = &rest[at..];
        let mut depth = 0usize;
        let mut end = item.len();
        for (i, c) in item.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = i + 1;
                    break;
                }
                _ => {}
            }
        }
        out.extend(item[..end].chars().filter(|&c| c == '\n'));
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

/// A cycle among the modules `uses` joins, as the uses that form it, if there is one.
fn find_cycle(uses: &[Use]) -> Option<Vec<Use>> {
    let mut edges: BTreeMap<&str, Vec<&Use>> = BTreeMap::new();
    for u in uses {
        edges.entry(u.from.as_str()).or_default().push(u);
    }
    let mut done: BTreeSet<&str> = BTreeSet::new();
    for start in edges.keys() {
        let mut path: Vec<&Use> = Vec::new();
        if let Some(cycle) = visit(start, &edges, &mut path, &mut done) {
            return Some(cycle);
        }
    }
    None
}

fn visit<'a>(
    module: &'a str,
    edges: &BTreeMap<&'a str, Vec<&'a Use>>,
    path: &mut Vec<&'a Use>,
    done: &mut BTreeSet<&'a str>,
) -> Option<Vec<Use>> {
    if done.contains(module) {
        return None;
    }
    if let Some(at) = path.iter().position(|u| u.from == module) {
        return Some(path[at..].iter().map(|&u| u.clone()).collect());
    }
    for &u in edges.get(module).into_iter().flatten() {
        path.push(u);
        let found = visit(u.to.as_str(), edges, path, done);
        path.pop();
        if found.is_some() {
            return found;
        }
    }
    done.insert(module);
    None
}
