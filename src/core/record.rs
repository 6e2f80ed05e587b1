//! The decision record appended to the autoscaling-state table, and its collision-free key.

use super::decide::{Action, Decision, ReasonCode};

/// What became of a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Recorded before acting; the outcome is settled on the record once the plan ran (a
    /// record left `pending` means the controller stopped in between).
    Pending,
    /// The ASG was set (or needed nothing).
    Applied,
    /// Acting failed; the error says why.
    Failed(String),
    /// Not acted on: dry-run, no leadership margin, nothing to do.
    Skipped(String),
}

impl Outcome {
    /// The `result` attribute: `applied`, `failed: <error>` or `skipped: <why>`.
    pub fn to_attr(&self) -> String {
        match self {
            Outcome::Pending => "pending".into(),
            Outcome::Applied => "applied".into(),
            Outcome::Failed(e) => format!("failed: {e}"),
            Outcome::Skipped(w) => format!("skipped: {w}"),
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        if s == "pending" {
            Some(Outcome::Pending)
        } else if s == "applied" {
            Some(Outcome::Applied)
        } else if let Some(e) = s.strip_prefix("failed: ") {
            Some(Outcome::Failed(e.to_string()))
        } else {
            s.strip_prefix("skipped: ")
                .map(|w| Outcome::Skipped(w.to_string()))
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Pending => "pending",
            Outcome::Applied => "applied",
            Outcome::Failed(_) => "failed",
            Outcome::Skipped(_) => "skipped",
        }
    }
}

/// The autoscaling-state sort key: a decimal Number `<unix secs>.<ms:3><region:3><slot:1>`.
///
/// It stays a Unix timestamp in seconds, so the seed's `timestamp > :t` queries work as they
/// are, while the fraction makes it unique per region: three regional controllers deciding for
/// one pool in the same millisecond write three keys. `slot` separates records of one region
/// in one millisecond (a shadow policy's record beside the live one, or a retry after a
/// conditional-put collision).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DecisionKey {
    pub secs: i64,
    /// ms (0..1000) * 10_000 + region code (0..1000) * 10 + slot (0..10)
    pub frac: u32,
}

/// Regions with fixed codes; any other region gets a code from a hash in 900..999.
const REGION_CODES: &[&str] = &[
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "ca-central-1",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-central-1",
    "eu-north-1",
    "eu-south-1",
    "ap-south-1",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-southeast-1",
    "ap-southeast-2",
    "sa-east-1",
    "me-south-1",
    "af-south-1",
];

pub fn region_code(region: &str) -> u32 {
    match REGION_CODES.iter().position(|r| *r == region) {
        Some(i) => i as u32 + 1,
        None => {
            // FNV-1a: stable across builds and platforms.
            let mut h: u32 = 0x811c_9dc5;
            for b in region.bytes() {
                h ^= u32::from(b);
                h = h.wrapping_mul(0x0100_0193);
            }
            900 + h % 100
        }
    }
}

impl DecisionKey {
    pub fn new(at_ms: i64, region: &str, slot: u8) -> Self {
        let secs = at_ms.div_euclid(1000);
        let ms = at_ms.rem_euclid(1000) as u32;
        DecisionKey {
            secs,
            frac: ms * 10_000 + region_code(region) * 10 + u32::from(slot.min(9)),
        }
    }

    pub fn with_slot(self, slot: u8) -> Self {
        DecisionKey {
            secs: self.secs,
            frac: self.frac - self.frac % 10 + u32::from(slot.min(9)),
        }
    }

    pub fn slot(self) -> u8 {
        (self.frac % 10) as u8
    }

    pub fn at_ms(self) -> i64 {
        self.secs * 1000 + i64::from(self.frac / 10_000)
    }

    /// The DynamoDB Number text, e.g. `1764000000.1230020`.
    pub fn to_number(self) -> String {
        format!("{}.{:07}", self.secs, self.frac)
    }

    pub fn parse(s: &str) -> Option<Self> {
        let (secs, frac) = s.split_once('.').unwrap_or((s, "0"));
        let secs = secs.parse::<i64>().ok()?;
        if frac.len() > 7 || !frac.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let frac = format!("{frac:0<7}").parse::<u32>().ok()?;
        Some(DecisionKey { secs, frac })
    }
}

/// One decision as recorded: the seed's attributes plus what an auditor needs.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionRecord {
    pub model_pool: String,
    pub key: DecisionKey,
    pub region: String,
    /// serving + launching when deciding.
    pub current_capacity: u32,
    /// Desired serving + launching, within the policy's bounds.
    pub desired_capacity: u32,
    pub min_capacity: u32,
    pub max_capacity: u32,
    pub current_rps: Option<f64>,
    pub target_rps: f64,
    pub scaling_action: Action,
    pub reason_code: ReasonCode,
    pub reason: String,
    pub rps_window: Vec<f64>,
    pub serving: u32,
    pub launching: u32,
    pub held: u32,
    pub recommendation: u32,
    pub asg_desired: u32,
    pub controller_id: String,
    pub leader_epoch: u64,
    pub policy_hash: String,
    pub dry_run: bool,
    pub result: Outcome,
    /// Unix seconds after which DynamoDB may delete the record.
    pub ttl: i64,
}

/// Records live 30 days (the seed's TTL).
pub const RECORD_TTL_SECS: i64 = 30 * 86_400;

/// Everything a record needs besides the decision itself.
#[derive(Debug, Clone)]
pub struct RecordContext<'a> {
    pub pool: &'a str,
    pub region: &'a str,
    pub controller_id: &'a str,
    pub leader_epoch: u64,
    pub policy_hash: &'a str,
    pub dry_run: bool,
    pub slot: u8,
}

impl DecisionRecord {
    pub fn from_decision(d: &Decision, cx: &RecordContext<'_>, result: Outcome) -> Self {
        DecisionRecord {
            model_pool: cx.pool.to_string(),
            key: DecisionKey::new(d.at_ms, cx.region, cx.slot),
            region: cx.region.to_string(),
            current_capacity: d.current(),
            desired_capacity: d.desired,
            min_capacity: d.min,
            max_capacity: d.max,
            current_rps: d.rps,
            target_rps: d.setpoint,
            scaling_action: d.action,
            reason_code: d.reason_code,
            reason: d.reason.clone(),
            rps_window: d.rps_window.clone(),
            serving: d.serving,
            launching: d.launching,
            held: d.held,
            recommendation: d.recommendation,
            asg_desired: d.asg_desired,
            controller_id: cx.controller_id.to_string(),
            leader_epoch: cx.leader_epoch,
            policy_hash: cx.policy_hash.to_string(),
            dry_run: cx.dry_run,
            result,
            ttl: d.at_ms.div_euclid(1000) + RECORD_TTL_SECS,
        }
    }

    pub fn at_ms(&self) -> i64 {
        self.key.at_ms()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_across_regions_in_one_millisecond_and_stay_seconds() {
        let t = 1_764_000_000_123;
        let a = DecisionKey::new(t, "us-east-1", 0);
        let b = DecisionKey::new(t, "us-east-2", 0);
        let c = DecisionKey::new(t, "us-west-2", 0);
        assert!(a != b && b != c && a != c);
        for k in [a, b, c] {
            assert_eq!(k.at_ms(), t);
            let n: f64 = k.to_number().parse().unwrap();
            assert!(
                n > 1_764_000_000.0 && n < 1_764_000_001.0,
                "{}",
                k.to_number()
            );
            assert_eq!(DecisionKey::parse(&k.to_number()), Some(k));
        }
        assert_eq!(a.to_number(), "1764000000.1230010");
        assert_ne!(a.with_slot(1), a);
        assert_eq!(a.with_slot(1).at_ms(), t);
    }

    #[test]
    fn keys_order_by_time() {
        let a = DecisionKey::new(1_000_999, "us-west-2", 9);
        let b = DecisionKey::new(1_001_000, "us-east-1", 0);
        assert!(a < b);
        let na: f64 = a.to_number().parse().unwrap();
        let nb: f64 = b.to_number().parse().unwrap();
        assert!(na < nb);
    }

    #[test]
    fn unknown_regions_get_a_stable_code() {
        assert_eq!(region_code("xx-test-9"), region_code("xx-test-9"));
        assert!((900..1000).contains(&region_code("xx-test-9")));
        assert_eq!(region_code("us-east-1"), 1);
    }

    #[test]
    fn outcome_round_trips() {
        for o in [
            Outcome::Applied,
            Outcome::Failed("throttled".into()),
            Outcome::Skipped("dry-run".into()),
        ] {
            assert_eq!(Outcome::parse(&o.to_attr()), Some(o));
        }
    }
}
