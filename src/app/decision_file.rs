//! Decision records as JSON lines: the embedded run keeps its decision log in a local file
//! (`<state dir>/decisions.jsonl`), which `history --backend local` reads, and `history
//! --json` prints records in the same shape (one object per line, every attribute).

use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::core::{Action, DecisionKey, DecisionRecord, Outcome, ReasonCode};

/// The file the embedded run writes in its state directory.
pub const FILE_NAME: &str = "decisions.jsonl";

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for Unix milliseconds.
pub fn stamp_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    )
}

/// A record as one JSON object: the table's attribute names, plus `at` (the time, readable).
pub fn to_json(r: &DecisionRecord) -> Value {
    json!({
        "model_pool": r.model_pool,
        "timestamp": r.key.to_number(),
        "at": stamp_ms(r.at_ms()),
        "region": r.region,
        "current_capacity": r.current_capacity,
        "desired_capacity": r.desired_capacity,
        "min_capacity": r.min_capacity,
        "max_capacity": r.max_capacity,
        "current_rps": r.current_rps,
        "target_rps": r.target_rps,
        "scaling_action": r.scaling_action.as_str(),
        "reason_code": r.reason_code.as_str(),
        "reason": r.reason,
        "rps_window": r.rps_window,
        "serving": r.serving,
        "launching": r.launching,
        "held": r.held,
        "recommendation": r.recommendation,
        "asg_desired": r.asg_desired,
        "controller_id": r.controller_id,
        "leader_epoch": r.leader_epoch,
        "policy_hash": r.policy_hash,
        "dry_run": r.dry_run,
        "result": r.result.to_attr(),
        "ttl": r.ttl,
    })
}

/// A record from `to_json`'s object; None names the first attribute missing or malformed.
pub fn from_json(v: &Value) -> Result<DecisionRecord, String> {
    let s = |k: &str| -> Result<String, String> {
        v.get(k)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("`{k}` is missing or not a string"))
    };
    let u = |k: &str| -> Result<u32, String> {
        v.get(k)
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| format!("`{k}` is missing or not a count"))
    };
    let f = |k: &str| -> Result<Option<f64>, String> {
        match v.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(x) => x
                .as_f64()
                .map(Some)
                .ok_or_else(|| format!("`{k}` is not a number")),
        }
    };
    let key = s("timestamp")?;
    let action = s("scaling_action")?;
    let code = s("reason_code")?;
    let result = s("result")?;
    Ok(DecisionRecord {
        model_pool: s("model_pool")?,
        key: DecisionKey::parse(&key).ok_or_else(|| format!("`timestamp` {key} is not a key"))?,
        region: s("region")?,
        current_capacity: u("current_capacity")?,
        desired_capacity: u("desired_capacity")?,
        min_capacity: u("min_capacity")?,
        max_capacity: u("max_capacity")?,
        current_rps: f("current_rps")?,
        target_rps: f("target_rps")?.unwrap_or(0.0),
        scaling_action: Action::parse(&action)
            .ok_or_else(|| format!("`scaling_action` {action} is not an action"))?,
        reason_code: ReasonCode::parse(&code)
            .ok_or_else(|| format!("`reason_code` {code} is not a reason code"))?,
        reason: s("reason")?,
        rps_window: v
            .get("rps_window")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default(),
        serving: u("serving")?,
        launching: u("launching")?,
        held: u("held")?,
        recommendation: u("recommendation")?,
        asg_desired: u("asg_desired")?,
        controller_id: s("controller_id")?,
        leader_epoch: v.get("leader_epoch").and_then(Value::as_u64).unwrap_or(0),
        policy_hash: s("policy_hash")?,
        dry_run: v.get("dry_run").and_then(Value::as_bool).unwrap_or(false),
        result: Outcome::parse(&result)
            .ok_or_else(|| format!("`result` {result} is not an outcome"))?,
        ttl: v.get("ttl").and_then(Value::as_i64).unwrap_or(0),
    })
}

/// The embedded run's decision log on disk: each record once, appended as the log gets it.
#[derive(Debug)]
pub struct DecisionFile {
    path: PathBuf,
    file: std::fs::File,
    written: HashSet<(String, DecisionKey)>,
}

impl DecisionFile {
    /// Start a fresh log in `dir` (created if missing; a previous run's log is replaced).
    pub fn create(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(FILE_NAME);
        let file = std::fs::File::create(&path)?;
        Ok(DecisionFile {
            path,
            file,
            written: HashSet::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append the records not written yet, oldest first; returns how many.
    pub fn append_new(&mut self, records: &[DecisionRecord]) -> std::io::Result<usize> {
        let mut new: Vec<&DecisionRecord> = records
            .iter()
            .filter(|r| !self.written.contains(&(r.model_pool.clone(), r.key)))
            .collect();
        new.sort_by_key(|r| (r.key, r.model_pool.clone()));
        let mut buf = Vec::new();
        for r in &new {
            serde_json::to_writer(&mut buf, &to_json(r)).map_err(std::io::Error::other)?;
            buf.push(b'\n');
        }
        self.file.write_all(&buf)?;
        self.file.flush()?;
        for r in &new {
            self.written.insert((r.model_pool.clone(), r.key));
        }
        Ok(new.len())
    }
}

/// Why a local decision log could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(
        "no decision log at {0}: start the embedded region with `mrgc-autoscaler run` (it writes one there), or pass its --state-dir"
    )]
    Missing(PathBuf),
    #[error("reading {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0}:{1}: {2}")]
    Bad(PathBuf, usize, String),
}

/// The records of `pool` in the log in `dir` after `since_ms`, newest first, at most `limit`;
/// `region` filters.
pub fn read_history(
    dir: &Path,
    pool: &str,
    region: Option<&str>,
    since_ms: i64,
    limit: usize,
) -> Result<Vec<DecisionRecord>, ReadError> {
    let path = dir.join(FILE_NAME);
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ReadError::Missing(path));
        }
        Err(e) => return Err(ReadError::Io(path, e)),
    };
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| ReadError::Io(path.clone(), e))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line)
            .map_err(|e| ReadError::Bad(path.clone(), i + 1, format!("not JSON: {e}")))?;
        let r = from_json(&v).map_err(|e| ReadError::Bad(path.clone(), i + 1, e))?;
        if r.model_pool == pool && region.is_none_or(|reg| r.region == reg) && r.at_ms() > since_ms
        {
            out.push(r);
        }
    }
    out.sort_by_key(|r| std::cmp::Reverse(r.key));
    out.truncate(limit);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(pool: &str, at_ms: i64, code: ReasonCode, result: Outcome) -> DecisionRecord {
        DecisionRecord {
            model_pool: pool.into(),
            key: DecisionKey::new(at_ms, "us-east-1", 0),
            region: "us-east-1".into(),
            current_capacity: 10,
            desired_capacity: 12,
            min_capacity: 2,
            max_capacity: 40,
            current_rps: Some(17.5),
            target_rps: 1.45,
            scaling_action: Action::ScaleUp,
            reason_code: code,
            reason: "above the band".into(),
            rps_window: vec![17.0, 18.0],
            serving: 10,
            launching: 0,
            held: 1,
            recommendation: 12,
            asg_desired: 13,
            controller_id: "local".into(),
            leader_epoch: 1,
            policy_hash: "abc".into(),
            dry_run: false,
            result,
            ttl: 123,
        }
    }

    #[test]
    fn records_round_trip_through_json() {
        for r in [
            record(
                "model-a",
                1_764_000_000_123,
                ReasonCode::AboveBand,
                Outcome::Applied,
            ),
            DecisionRecord {
                current_rps: None,
                dry_run: true,
                ..record(
                    "model-b",
                    1_764_000_060_000,
                    ReasonCode::MetricsStale,
                    Outcome::Skipped("dry-run".into()),
                )
            },
        ] {
            assert_eq!(from_json(&to_json(&r)), Ok(r));
        }
        let mut bad = to_json(&record("p", 0, ReasonCode::AboveBand, Outcome::Applied));
        bad["reason_code"] = json!("nonsense");
        assert!(from_json(&bad).unwrap_err().contains("reason_code"));
    }

    #[test]
    fn the_file_keeps_each_record_once_and_reads_back_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = DecisionFile::create(dir.path()).unwrap();
        let a = record(
            "model-a",
            1_000_000,
            ReasonCode::AboveBand,
            Outcome::Applied,
        );
        let b = record(
            "model-a",
            2_000_000,
            ReasonCode::AboveBand,
            Outcome::Applied,
        );
        let c = record(
            "model-b",
            1_500_000,
            ReasonCode::AboveBand,
            Outcome::Applied,
        );
        assert_eq!(f.append_new(std::slice::from_ref(&a)).unwrap(), 1);
        assert_eq!(f.append_new(&[a.clone(), b.clone(), c]).unwrap(), 2);
        let got = read_history(dir.path(), "model-a", None, 0, 10).unwrap();
        assert_eq!(got, vec![b.clone(), a]);
        assert_eq!(
            read_history(dir.path(), "model-a", None, 1_500_000, 10).unwrap(),
            vec![b]
        );
        assert!(
            read_history(dir.path(), "model-a", Some("us-west-2"), 0, 10)
                .unwrap()
                .is_empty()
        );
        let missing = read_history(&dir.path().join("nope"), "model-a", None, 0, 10);
        assert!(matches!(missing, Err(ReadError::Missing(_))));
    }
}
