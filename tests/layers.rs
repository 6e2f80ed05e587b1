//! The layers of ARCHITECTURE.md, enforced from the code's own imports: every `crate::<module>`
//! a library file names must be one its layer may use, and the core does no I/O and reads no
//! clock. Adding a forbidden arrow (say `use crate::app::Reconciler;` in an adapter) fails
//! here with the file, the line and the rule.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What each top-level module of the library may import from the others (itself is always
/// allowed). The binary (`src/main.rs`, `src/cli/`) sits on top and may use anything.
const MAY_USE: &[(&str, &[&str])] = &[
    ("core", &[]),
    ("schema", &[]),
    ("ports", &["core"]),
    ("replay", &["core"]),
    ("telemetry", &["core"]),
    ("adapters", &["core", "ports", "schema", "telemetry"]),
    (
        "app",
        &["core", "ports", "schema", "telemetry", "replay", "adapters"],
    ),
    (
        "sim",
        &[
            "core",
            "ports",
            "schema",
            "telemetry",
            "replay",
            "adapters",
            "app",
        ],
    ),
];

/// What the core may not name at all: it is pure (no files, network, processes, runtime or
/// clock; time is a parameter).
const CORE_MAY_NOT: &[&str] = &[
    "std::fs",
    "std::net",
    "std::process",
    "std::env",
    "tokio",
    "aws_sdk",
    "SystemTime::now",
    "Instant::now",
    "Utc::now",
];

#[derive(Debug, PartialEq)]
struct Violation {
    file: String,
    line: usize,
    what: String,
}

/// The code of a line with its `//` comment (and any doc comment) removed. String literals
/// holding `//` are rare in these files and only make the check stricter.
fn code(line: &str) -> &str {
    match line.find("//") {
        Some(i) => &line[..i],
        None => line,
    }
}

/// The top-level modules a path after `crate::` (or a `super::` chain that reaches the crate
/// root) names: `app::X` names `app`; a group `{app::X, core::{Y, Z}}` names each of its
/// members' first segments.
fn first_segments(tail: &str) -> Vec<String> {
    let tail = tail.trim_start();
    if let Some(group) = tail.strip_prefix('{') {
        // The group up to its closing brace, split at the top level.
        let mut depth = 1;
        let mut members = Vec::new();
        let mut cur = String::new();
        for c in group.chars() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                ',' if depth == 1 => {
                    members.push(std::mem::take(&mut cur));
                    continue;
                }
                _ => {}
            }
            cur.push(c);
        }
        members.push(cur);
        return members.iter().flat_map(|m| first_segments(m)).collect();
    }
    let name: String = tail
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    if name.is_empty() || name == "self" {
        Vec::new()
    } else {
        vec![name]
    }
}

/// Every (byte offset, module) the text names through `crate::` or through `super::` chains
/// deep enough to reach the crate root from a file `depth` modules down (src/x.rs is 1,
/// src/x/y.rs 2; a `mod.rs` is its folder's module).
fn crate_refs(text: &str, depth: usize) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let word_before = |i: usize| {
        i > 0
            && (bytes[i - 1].is_ascii_alphanumeric()
                || bytes[i - 1] == b'_'
                || bytes[i - 1] == b'$'
                || bytes[i - 1] == b':')
    };
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        if rest.starts_with("crate::") && !word_before(i) {
            for m in first_segments(&rest["crate::".len()..]) {
                out.push((i, m));
            }
            i += "crate::".len();
            continue;
        }
        if rest.starts_with("super::") && !word_before(i) {
            let mut n = 0;
            let mut tail = rest;
            while let Some(t) = tail.strip_prefix("super::") {
                n += 1;
                tail = t;
            }
            if n >= depth {
                for m in first_segments(tail) {
                    out.push((i, m));
                }
            }
            i += n * "super::".len();
            continue;
        }
        i += rest.chars().next().map_or(1, char::len_utf8);
    }
    out
}

/// The code of a file with every `//` comment removed, lines kept.
fn strip_comments(text: &str) -> String {
    text.lines().map(code).collect::<Vec<_>>().join("\n")
}

/// Check one library file's text, `module` being its top-level module and `depth` how deep
/// its module is (see `crate_refs`).
fn check(file: &str, module: &str, depth: usize, text: &str) -> Vec<Violation> {
    let rules: BTreeMap<&str, &[&str]> = MAY_USE.iter().copied().collect();
    let Some(allowed) = rules.get(module) else {
        return vec![Violation {
            file: file.into(),
            line: 0,
            what: format!("module `{module}` has no layer: add it to MAY_USE and ARCHITECTURE.md"),
        }];
    };
    let code = strip_comments(text);
    let lines: Vec<&str> = text.lines().collect();
    let line_of = |offset: usize| code[..offset].matches('\n').count() + 1;
    let mut out = Vec::new();
    for (at, target) in crate_refs(&code, depth) {
        // Only the crate's top-level modules are layers; other names (a type re-exported at
        // the root, a `super::` that an inline module resolves nearer) are not arrows.
        if target == module || !rules.contains_key(target.as_str()) {
            continue;
        }
        if !allowed.contains(&target.as_str()) {
            let line = line_of(at);
            out.push(Violation {
                file: file.into(),
                line,
                what: format!(
                    "`{module}` may not import `{target}` (it may use: {}): `{}`",
                    if allowed.is_empty() {
                        "nothing but itself".to_string()
                    } else {
                        allowed.join(", ")
                    },
                    lines.get(line - 1).map_or("", |l| l.trim())
                ),
            });
        }
    }
    if module == "core" {
        for (n, line) in code.lines().enumerate() {
            let grouped_std = line.split("std::{").skip(1).any(|g| {
                ["fs", "net", "process", "env"].iter().any(|m| {
                    g.split('}').next().unwrap_or("").split(',').any(|x| {
                        let x = x.trim();
                        x == *m || x.starts_with(&format!("{m}::"))
                    })
                })
            });
            for bad in CORE_MAY_NOT {
                if line.contains(bad) {
                    out.push(Violation {
                        file: file.into(),
                        line: n + 1,
                        what: format!("the core is pure: `{bad}` here: `{}`", line.trim()),
                    });
                }
            }
            if grouped_std {
                out.push(Violation {
                    file: file.into(),
                    line: n + 1,
                    what: format!("the core is pure: std I/O here: `{}`", line.trim()),
                });
            }
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_library_import_follows_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut violations = Vec::new();
    let mut checked = 0;
    for path in &files {
        let rel = path.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        // The binary sits on top of the library; lib.rs only declares the modules.
        if matches!(module.as_str(), "main" | "cli" | "lib") {
            continue;
        }
        let text = std::fs::read_to_string(path).unwrap();
        // src/x.rs and src/x/mod.rs are one module down, src/x/y.rs two, ...
        let mut depth = rel.components().count();
        if rel.file_name().is_some_and(|f| f == "mod.rs") {
            depth -= 1;
        }
        violations.extend(check(
            &format!("src/{}", rel.display()),
            &module,
            depth,
            &text,
        ));
        checked += 1;
    }
    assert!(
        checked > 50,
        "only {checked} library files found under {src:?}"
    );
    assert!(
        violations.is_empty(),
        "imports against the layers (ARCHITECTURE.md):\n{}",
        violations
            .iter()
            .map(|v| format!("{}:{}: {}", v.file, v.line, v.what))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn every_module_of_the_library_has_a_layer() {
    let lib =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let rules: Vec<&str> = MAY_USE.iter().map(|(m, _)| *m).collect();
    for line in lib.lines() {
        if let Some(m) = line.trim().strip_prefix("pub mod ") {
            let m = m.trim_end_matches(';');
            assert!(rules.contains(&m), "`{m}` has no layer in MAY_USE");
        }
    }
}

/// The checker itself finds what it must: an adapter calling up into the app (plainly, in a
/// group, across lines, through `super::`), the core reading a file or the clock, the app
/// depending on the simulator; comments do not count.
#[test]
fn the_checker_catches_forbidden_arrows() {
    let v = check(
        "src/adapters/aws/x.rs",
        "adapters",
        3,
        "use crate::ports::Inventory;\nuse crate::app::reconciler::Backends;\n",
    );
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].line, 2);
    assert!(
        v[0].what.contains("`adapters` may not import `app`"),
        "{v:?}"
    );

    // Grouped, on one line and across lines.
    let v = check(
        "src/adapters/x.rs",
        "adapters",
        2,
        "use crate::{ports::Inventory, app::Leadership};\nuse crate::{\n    core::Plan,\n    sim::{run, tune},\n};\n",
    );
    assert_eq!(v.len(), 2, "{v:?}");
    // (A group is named at the line its `use` starts.)
    assert_eq!((v[0].line, v[1].line), (1, 2), "{v:?}");
    assert!(v[1].what.contains("may not import `sim`"), "{v:?}");

    // super:: chains that reach the crate root, and those that do not.
    let v = check(
        "src/adapters/memory.rs",
        "adapters",
        2,
        "use super::super::app::X;\nuse super::aws::Y;\n",
    );
    assert_eq!(v.len(), 1, "{v:?}");
    let v = check("src/ports.rs", "ports", 1, "use super::app::X;\n");
    assert_eq!(v.len(), 1, "{v:?}");

    let v = check(
        "src/core/x.rs",
        "core",
        2,
        "let t = std::fs::read_to_string(p)?;\nlet now = SystemTime::now();\nuse std::{fmt, fs};\n",
    );
    assert_eq!(v.len(), 3, "{v:?}");

    let v = check(
        "src/app/x.rs",
        "app",
        2,
        "fn f() -> crate::sim::trace::Trace { todo!() }\n",
    );
    assert_eq!(v.len(), 1, "{v:?}");

    // A comment may name anything; `$crate::` and longer paths are not this crate's modules.
    let v = check(
        "src/core/x.rs",
        "core",
        2,
        "// see crate::app::reconciler\n/// reads with std::fs in the app\nmacro_rules! m { () => { $crate::core::x() } }\nuse std::{fmt, collections::BTreeMap};\n",
    );
    assert!(v.is_empty(), "{v:?}");

    let v = check("src/newthing/x.rs", "newthing", 2, "");
    assert_eq!(v.len(), 1, "{v:?}");
}
