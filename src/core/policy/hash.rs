//! The policy hash recorded with every decision: which policy files a decision was made under.

use sha2::{Digest, Sha256};

use super::PolicySource;

/// A short, stable hash of the policy files (names and contents, in name order).
pub fn hash_sources(sources: &[PolicySource]) -> String {
    let mut sorted: Vec<&PolicySource> = sources.iter().collect();
    sorted.sort_by(|a, b| a.path.file_name().cmp(&b.path.file_name()));
    let mut h = Sha256::new();
    for s in sorted {
        if let Some(name) = s.path.file_name() {
            h.update(name.to_string_lossy().as_bytes());
        }
        h.update([0u8]);
        h.update(s.text.as_bytes());
        h.update([0u8]);
    }
    hex::encode(&h.finalize()[..6])
}
