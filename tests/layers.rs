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

/// The modules `crate::<m>` names in `text`.
fn crate_refs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().last();
        let tail = &rest[i + "crate::".len()..];
        let name: String = tail
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        // `mrgc_autoscaler::crate` is not a thing; `$crate::` is a macro's own crate.
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
            && !name.is_empty()
        {
            out.push(name);
        }
        rest = tail;
    }
    out
}

/// Check one library file's text, `module` being its top-level module.
fn check(file: &str, module: &str, text: &str) -> Vec<Violation> {
    let rules: BTreeMap<&str, &[&str]> = MAY_USE.iter().copied().collect();
    let Some(allowed) = rules.get(module) else {
        return vec![Violation {
            file: file.into(),
            line: 0,
            what: format!("module `{module}` has no layer: add it to MAY_USE and ARCHITECTURE.md"),
        }];
    };
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let c = code(line);
        for target in crate_refs(c) {
            if target != module && !allowed.contains(&target.as_str()) {
                out.push(Violation {
                    file: file.into(),
                    line: n + 1,
                    what: format!(
                        "`{module}` may not import `{target}` (it may use: {}): `{}`",
                        if allowed.is_empty() {
                            "nothing but itself".to_string()
                        } else {
                            allowed.join(", ")
                        },
                        line.trim()
                    ),
                });
            }
        }
        if module == "core" {
            for bad in CORE_MAY_NOT {
                if c.contains(bad) {
                    out.push(Violation {
                        file: file.into(),
                        line: n + 1,
                        what: format!("the core is pure: `{bad}` here: `{}`", line.trim()),
                    });
                }
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
        violations.extend(check(&format!("src/{}", rel.display()), &module, &text));
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

/// The checker itself finds what it must: an adapter calling up into the app, the core
/// reading a file or the clock, the app depending on the simulator; comments do not count.
#[test]
fn the_checker_catches_forbidden_arrows() {
    let v = check(
        "src/adapters/aws/x.rs",
        "adapters",
        "use crate::ports::Inventory;\nuse crate::app::reconciler::Backends;\n",
    );
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].line, 2);
    assert!(
        v[0].what.contains("`adapters` may not import `app`"),
        "{v:?}"
    );

    let v = check(
        "src/core/x.rs",
        "core",
        "let t = std::fs::read_to_string(p)?;\nlet now = SystemTime::now();\n",
    );
    assert_eq!(v.len(), 2, "{v:?}");

    let v = check(
        "src/app/x.rs",
        "app",
        "fn f() -> crate::sim::trace::Trace { todo!() }\n",
    );
    assert_eq!(v.len(), 1, "{v:?}");

    // A comment may name anything; `$crate::` and longer paths are not this crate's modules.
    let v = check(
        "src/core/x.rs",
        "core",
        "// see crate::app::reconciler\n/// reads with std::fs in the app\nmacro_rules! m { () => { $crate::core::x() } }\n",
    );
    assert!(v.is_empty(), "{v:?}");

    let v = check("src/newthing/x.rs", "newthing", "");
    assert_eq!(v.len(), 1, "{v:?}");
}
