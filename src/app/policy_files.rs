//! Reading policy files from disk: every `*.toml` of the given files or directories. The pure
//! part, parsing and validating the texts, is `core::policy::parse_sources`; this module is the
//! file system's side of it.

use std::path::{Path, PathBuf};

use crate::core::policy::{PolicyError, PolicySet, PolicySource, Problem, parse_sources};

/// Load every `*.toml` under the given paths (files or directories, not recursive).
pub fn load_paths(paths: &[PathBuf]) -> Result<PolicySet, PolicyError> {
    let mut sources = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        match read_sources(path) {
            Ok(mut s) => sources.append(&mut s),
            Err(p) => problems.push(p),
        }
    }
    if !problems.is_empty() {
        return Err(PolicyError { problems });
    }
    parse_sources(&sources)
}

fn read_sources(path: &Path) -> Result<Vec<PolicySource>, Problem> {
    let io_problem = |e: std::io::Error, fix: &str| Problem {
        file: path.display().to_string(),
        line: 1,
        col: 1,
        what: format!("cannot read: {e}"),
        fix: fix.to_string(),
    };
    let meta = std::fs::metadata(path).map_err(|e| {
        io_problem(
            e,
            "pass an existing policy file or a directory of *.toml files",
        )
    })?;
    let mut files = Vec::new();
    if meta.is_dir() {
        let entries = std::fs::read_dir(path)
            .map_err(|e| io_problem(e, "check the directory's permissions"))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_problem(e, "check the directory's permissions"))?;
            let p = entry.path();
            // Every *.toml entry but a directory is read: a dangling link (a ConfigMap swap
            // caught half-way) or an unreadable file is an error that keeps the last good
            // policies in force, never a pool silently dropped.
            if p.extension().is_some_and(|x| x == "toml") && !p.is_dir() {
                files.push(p);
            }
        }
        files.sort();
        if files.is_empty() {
            return Err(Problem {
                file: path.display().to_string(),
                line: 1,
                col: 1,
                what: "no *.toml policy files in this directory".into(),
                fix: "add one file per model pool, e.g. policies/model-a.toml".into(),
            });
        }
    } else {
        files.push(path.to_path_buf());
    }
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).map_err(|e| Problem {
                file: p.display().to_string(),
                line: 1,
                col: 1,
                what: format!("cannot read: {e}"),
                fix: "check the file exists and is UTF-8 text".into(),
            })?;
            Ok(PolicySource { path: p, text })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "pool = \"p\"\nmin = 1\nmax = 10\n[regions.us-east-1]\nasg = \"g\"\n";

    #[cfg(unix)]
    #[test]
    fn a_dangling_policy_link_is_an_error_not_a_removed_pool() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.toml"), GOOD).unwrap();
        std::fs::write(
            dir.path().join("q.toml"),
            GOOD.replace("pool = \"p\"", "pool = \"q\""),
        )
        .unwrap();
        assert_eq!(
            load_paths(&[dir.path().to_path_buf()]).unwrap().pools.len(),
            2
        );
        // A ConfigMap swap caught half-way: q.toml now points nowhere.
        std::fs::remove_file(dir.path().join("q.toml")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("..data/q.toml"), dir.path().join("q.toml"))
            .unwrap();
        let err = load_paths(&[dir.path().to_path_buf()]).expect_err("unreadable q.toml");
        assert_eq!(err.problems.len(), 1, "{err}");
        assert!(err.problems[0].file.ends_with("q.toml"), "{err}");
        assert!(err.problems[0].what.starts_with("cannot read"), "{err}");
    }
}
