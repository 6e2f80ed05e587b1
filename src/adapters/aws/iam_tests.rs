//! The AWS adapters call only what `schema::IAM_ACTIONS` grants.
//!
//! The adapters reach the SDK clients as `ddb`, `asg` and `cw` only (see mod.rs); this test
//! finds every `<client>.<operation>()` call in `src/adapters/aws/**/*.rs`, maps it to its IAM
//! action(s), and checks each is listed. It also checks that every `.send()` belongs to such a
//! call, so an operation reached another way cannot slip past.

use std::path::{Path, PathBuf};

use crate::schema::IAM_ACTIONS;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Source without comments and string literals (so docs and messages do not count).
fn code_only(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let b = src.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

fn pascal(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

/// (client, operation) calls: `ddb` / `asg` / `cw`, a dot, a snake_case name, `()`.
fn operations(code: &str) -> Vec<(&'static str, String)> {
    let mut found = Vec::new();
    let compact: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    for (client, service) in [
        (".ddb.", "dynamodb"),
        (".asg.", "autoscaling"),
        (".cw.", "cloudwatch"),
        (".streams.", "dynamodb"),
    ] {
        let mut rest = compact.as_str();
        while let Some(pos) = rest.find(client) {
            rest = &rest[pos + client.len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() && rest[name.len()..].starts_with("()") {
                found.push((service, name));
            }
        }
    }
    found
}

fn iam_actions(service: &str, op: &str) -> Vec<String> {
    match (service, op) {
        // IAM has no action for the transaction itself: each action inside needs its own.
        ("dynamodb", "transact_write_items") => vec![
            "dynamodb:ConditionCheckItem".to_string(),
            "dynamodb:PutItem".to_string(),
        ],
        _ => vec![format!("{service}:{}", pascal(op))],
    }
}

#[test]
fn adapters_call_only_granted_actions() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/adapters/aws");
    let mut files = Vec::new();
    rust_files(&dir, &mut files);
    assert!(files.len() >= 5, "found only {files:?}");
    let mut calls = 0;
    let mut sends = 0;
    let mut seen = Vec::new();
    for f in files.iter().filter(|f| !f.ends_with("iam_tests.rs")) {
        let src = std::fs::read_to_string(f).expect("readable source file");
        let code = code_only(&src);
        // Unit tests inside a file may build SDK values freely; they call nothing.
        let code = code.split("#[cfg(test)]").next().unwrap_or("");
        sends += code.matches(".send()").count();
        for (service, op) in operations(code) {
            calls += 1;
            for action in iam_actions(service, &op) {
                assert!(
                    IAM_ACTIONS.contains(&action.as_str()),
                    "{} calls {service} {op}, which needs {action}: not in schema::IAM_ACTIONS",
                    f.display()
                );
                seen.push(action);
            }
        }
    }
    assert!(
        calls > 0,
        "no SDK calls found: has the naming convention changed?"
    );
    assert!(
        sends <= calls,
        "{sends} `.send()` calls but only {calls} recognised `ddb.op()` / `asg.op()` / `cw.op()` \
         calls: reach the SDK clients as `ddb`, `asg`, `cw`"
    );
    for must in [
        "dynamodb:Query",
        "dynamodb:PutItem",
        "autoscaling:SetDesiredCapacity",
        "cloudwatch:PutMetricData",
    ] {
        assert!(
            seen.iter().any(|s| s == must),
            "{must} not found in {seen:?}"
        );
    }
}

#[test]
fn the_scanner_finds_calls_across_lines_and_ignores_comments() {
    let code = code_only(
        "self.c\n  .ddb\n  .query()\n  .send()\n// self.c.ddb.scan().send()\nlet s = \"x.ddb.scan()\";",
    );
    assert_eq!(operations(&code), vec![("dynamodb", "query".to_string())]);
    assert_eq!(
        pascal("describe_auto_scaling_groups"),
        "DescribeAutoScalingGroups"
    );
    assert!(!IAM_ACTIONS.contains(&iam_actions("dynamodb", "scan")[0].as_str()));
}
