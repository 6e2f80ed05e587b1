//! Policy hot reload: re-read the policy files when their content changes (polled) or on
//! SIGHUP. A valid edit replaces the policy set; an invalid one is rejected with every problem
//! (file:line:col) and the last good set stays in force.
//!
//! Polling, not inotify: Kubernetes updates a mounted ConfigMap by swapping a symlink to a new
//! directory, which file watchers often miss; reading three small files every few seconds is
//! cheap and always right.

use std::path::PathBuf;

use crate::core::policy::{PolicyError, PolicySet};

#[derive(Debug)]
pub enum ReloadOutcome {
    /// Nothing changed (or the same invalid edit is still there: reported once).
    Unchanged,
    /// A valid new set; it applies on the next cycle.
    Applied(PolicySet),
    /// An invalid edit: the running set stays.
    Rejected(PolicyError),
}

pub struct PolicyWatcher {
    paths: Vec<PathBuf>,
    current_hash: String,
    last_rejected: Option<PolicyError>,
}

impl PolicyWatcher {
    pub fn new(paths: Vec<PathBuf>, current: &PolicySet) -> Self {
        PolicyWatcher {
            paths,
            current_hash: current.hash.clone(),
            last_rejected: None,
        }
    }

    /// Whether the files on disk hold an invalid edit (the running set stays in force).
    pub fn is_rejecting(&self) -> bool {
        self.last_rejected.is_some()
    }

    /// Re-read now, as on SIGHUP: an invalid edit is reported again even if it was before.
    pub fn reload(&mut self) -> ReloadOutcome {
        self.last_rejected = None;
        self.poll()
    }

    /// Read the files again and say what changed. The same invalid edit is reported once.
    pub fn poll(&mut self) -> ReloadOutcome {
        match crate::app::policy_files::load_paths(&self.paths) {
            Ok(set) => {
                self.last_rejected = None;
                if set.hash == self.current_hash {
                    ReloadOutcome::Unchanged
                } else {
                    self.current_hash = set.hash.clone();
                    ReloadOutcome::Applied(set)
                }
            }
            Err(e) => {
                if self.last_rejected.as_ref() == Some(&e) {
                    ReloadOutcome::Unchanged
                } else {
                    self.last_rejected = Some(e.clone());
                    ReloadOutcome::Rejected(e)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "pool = \"p\"\nmin = 1\nmax = 10\n[regions.us-east-1]\nasg = \"g\"\n";

    #[test]
    fn applies_valid_edits_and_rejects_invalid_ones_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.toml");
        std::fs::write(&file, GOOD).unwrap();
        let set = crate::app::policy_files::load_paths(&[dir.path().to_path_buf()]).unwrap();
        let mut w = PolicyWatcher::new(vec![dir.path().to_path_buf()], &set);
        assert!(matches!(w.poll(), ReloadOutcome::Unchanged));

        std::fs::write(&file, GOOD.replace("max = 10", "max = 20")).unwrap();
        let applied = match w.poll() {
            ReloadOutcome::Applied(s) => s,
            other => panic!("{other:?}"),
        };
        assert_eq!(applied.pools["p"].regions["us-east-1"].max, 20);
        assert_ne!(applied.hash, set.hash);

        std::fs::write(&file, GOOD.replace("max = 10", "max = 0\nmin_typo = 1")).unwrap();
        match w.poll() {
            ReloadOutcome::Rejected(e) => {
                let text = e.to_string();
                assert!(
                    text.contains("p.toml:3:7: min (1) is greater than max (0)"),
                    "{text}"
                );
                assert!(
                    text.contains("p.toml:4:1: unknown key `min_typo`"),
                    "{text}"
                );
            }
            other => panic!("{other:?}"),
        }
        // The same bad edit is reported once, not every poll; a forced reload (SIGHUP) says
        // it again.
        assert!(matches!(w.poll(), ReloadOutcome::Unchanged));
        assert!(matches!(w.reload(), ReloadOutcome::Rejected(_)));
        assert!(matches!(w.poll(), ReloadOutcome::Unchanged));
        // Fixing it back to the running content changes nothing.
        std::fs::write(&file, GOOD.replace("max = 10", "max = 20")).unwrap();
        assert!(matches!(w.poll(), ReloadOutcome::Unchanged));
    }
}
