//! The module layout of DESIGN.md holds: `api` reaches the core only through `app` (and the few modules the
//! edge may use), and `extract` and `chunk` import nothing above them. Reads the source tree; no server.

use std::path::{Path, PathBuf};

/// Modules `src/api` must not name: the core is behind `app`.
const BEHIND_APP: &[&str] = &[
    "store", "index", "models", "pipeline", "router", "extract", "chunk", "bench", "cli",
];
/// What `src/extract` may import from the crate.
const EXTRACT_MAY_USE: &[&str] = &["extract", "types"];
/// What `src/chunk` may import from the crate.
const CHUNK_MAY_USE: &[&str] = &["chunk", "types"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The `.rs` files under `dir`, production code only: unit-test files (`tests.rs`, `proptests.rs`,
/// `*_tests.rs`) may load real models to check their module against them.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d)
            .expect("read a source folder")
            .flatten()
        {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                todo.push(path);
            } else if name.ends_with(".rs")
                && name != "tests.rs"
                && name != "proptests.rs"
                && !name.ends_with("_tests.rs")
            {
                out.push(path);
            }
        }
    }
    out.sort();
    assert!(!out.is_empty(), "no sources under {}", dir.display());
    out
}

/// The file's code without `//` comments (doc comments mention modules freely).
fn code(path: &Path) -> String {
    std::fs::read_to_string(path)
        .expect("read a source file")
        .lines()
        .map(|l| l.split_once("//").map_or(l, |(code, _)| code))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first module of every `crate::` path in `code`, with the line it is on: `crate::store::Store` and
/// `use crate::{store::Store, app}` give `store` (and `app`).
fn crate_modules(code: &str) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let mut rest = 0;
    while let Some(i) = code[rest..].find("crate::") {
        let start = rest + i + "crate::".len();
        rest = start;
        // `docpipe_crate::` or `foo_crate::` are other names.
        let before = code[..start - "crate::".len()].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let tail = &code[start..];
        if let Some(group) = tail.strip_prefix('{') {
            // A use group: its top-level items, up to the matching brace.
            let mut depth = 0usize;
            let mut item = String::new();
            let mut items = Vec::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => items.push(std::mem::take(&mut item)),
                    _ if depth == 0 => item.push(c),
                    _ => {}
                }
            }
            items.push(item);
            for item in items {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.push((name, line_of(start)));
                }
            }
        } else {
            let name: String = tail
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.push((name, line_of(start)));
        }
    }
    found
}

fn relative(path: &Path) -> String {
    path.strip_prefix(src())
        .unwrap_or(path)
        .display()
        .to_string()
}

#[test]
fn the_parser_sees_paths_and_use_groups() {
    let found = crate_modules(
        "use crate::{app::App, store::{Store, FileFilter}};\nlet x = crate::router::AUTO;\n\
         my_crate::store::x();",
    );
    let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["app", "store", "router"]);
    assert_eq!(found[2].1, 2);
}

#[test]
fn api_reaches_the_core_only_through_app() {
    let mut wrong = Vec::new();
    for path in sources(&src().join("api")) {
        for (module, line) in crate_modules(&code(&path)) {
            if BEHIND_APP.contains(&module.as_str()) {
                wrong.push(format!("{}:{line} uses crate::{module}", relative(&path)));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "src/api may use `crate::app` (and auth, telemetry, config, types), not the core behind it; \
         re-export what a handler needs from the use case's file in src/app:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn extract_and_chunk_import_nothing_above_them() {
    let mut wrong = Vec::new();
    for (dir, allowed) in [("extract", EXTRACT_MAY_USE), ("chunk", CHUNK_MAY_USE)] {
        for path in sources(&src().join(dir)) {
            for (module, line) in crate_modules(&code(&path)) {
                if !allowed.contains(&module.as_str()) {
                    wrong.push(format!("{}:{line} uses crate::{module}", relative(&path)));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "src/extract and src/chunk know nothing of HTTP, storage or models (pass what they need in):\n{}",
        wrong.join("\n")
    );
}
