//! The DynamoDB tables, in one place: the seed's five global tables plus the regional
//! controller-leases table. `tables create`, the AWS adapters and the Terraform module in
//! `deploy/` all follow this module (a test checks the Terraform against it).
//!
//! The seed names each index but not always its keys; where it does not, the sort key chosen
//! is the one its access pattern needs (e.g. `model-pool-index` is keyed by pool *and* region,
//! so a regional controller reads only its own region's instances of a pool).

/// A key attribute's DynamoDB scalar type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    S,
    N,
}

impl AttrType {
    pub fn as_str(self) -> &'static str {
        match self {
            AttrType::S => "S",
            AttrType::N => "N",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub name: &'static str,
    pub ty: AttrType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Index {
    pub name: &'static str,
    pub hash: Key,
    pub range: Option<Key>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableSchema {
    /// Suffix after `<prefix>-`.
    pub suffix: &'static str,
    pub hash: Key,
    pub range: Option<Key>,
    pub indexes: &'static [Index],
    /// The TTL attribute (Unix seconds).
    pub ttl_attribute: &'static str,
    /// Replicated as a global table (the leases table is regional on purpose: conditional
    /// writes are atomic only within one replica).
    pub global: bool,
}

impl TableSchema {
    pub fn table_name(&self, prefix: &str) -> String {
        format!("{prefix}-{}", self.suffix)
    }

    /// Every attribute used in a key of the table or of an index, once, in a stable order.
    pub fn key_attributes(&self) -> Vec<Key> {
        let mut out: Vec<Key> = Vec::new();
        let mut push = |k: Key| {
            if !out.iter().any(|x| x.name == k.name) {
                out.push(k);
            }
        };
        push(self.hash);
        if let Some(r) = self.range {
            push(r);
        }
        for i in self.indexes {
            push(i.hash);
            if let Some(r) = i.range {
                push(r);
            }
        }
        out
    }
}

const fn s(name: &'static str) -> Key {
    Key {
        name,
        ty: AttrType::S,
    }
}

const fn n(name: &'static str) -> Key {
    Key {
        name,
        ty: AttrType::N,
    }
}

pub const GPU_INSTANCES: TableSchema = TableSchema {
    suffix: "gpu-instances",
    hash: s("instance_id"),
    range: None,
    indexes: &[
        Index {
            name: "region-index",
            hash: s("region"),
            range: None,
        },
        Index {
            name: "model-pool-index",
            hash: s("model_pool"),
            range: Some(s("region")),
        },
        Index {
            name: "state-index",
            hash: s("state"),
            range: None,
        },
    ],
    ttl_attribute: "ttl",
    global: true,
};

pub const ROUTING_STATE: TableSchema = TableSchema {
    suffix: "routing-state",
    hash: s("instance_id"),
    range: None,
    indexes: &[Index {
        name: "region-score-index",
        hash: s("region"),
        range: Some(n("routing_score")),
    }],
    ttl_attribute: "ttl",
    global: true,
};

pub const AUTOSCALING_STATE: TableSchema = TableSchema {
    suffix: "autoscaling-state",
    hash: s("model_pool"),
    range: Some(n("timestamp")),
    indexes: &[Index {
        name: "region-timestamp-index",
        hash: s("region"),
        range: Some(n("timestamp")),
    }],
    ttl_attribute: "ttl",
    global: true,
};

pub const CLEANUP_VALIDATION: TableSchema = TableSchema {
    suffix: "cleanup-validation",
    hash: s("instance_id"),
    range: Some(n("validation_timestamp")),
    indexes: &[Index {
        name: "status-timestamp-index",
        hash: s("validation_status"),
        range: Some(n("validation_timestamp")),
    }],
    ttl_attribute: "ttl",
    global: true,
};

pub const METRICS: TableSchema = TableSchema {
    suffix: "metrics",
    hash: s("metric_name"),
    range: Some(n("timestamp")),
    indexes: &[Index {
        name: "region-timestamp-index",
        hash: s("region"),
        range: Some(n("timestamp")),
    }],
    ttl_attribute: "ttl",
    global: true,
};

pub const CONTROLLER_LEASES: TableSchema = TableSchema {
    suffix: "controller-leases",
    hash: s("lease_key"),
    range: None,
    indexes: &[],
    ttl_attribute: "ttl",
    global: false,
};

/// Every table the system uses, seed order first.
pub const ALL: [TableSchema; 6] = [
    GPU_INSTANCES,
    ROUTING_STATE,
    AUTOSCALING_STATE,
    CLEANUP_VALIDATION,
    METRICS,
    CONTROLLER_LEASES,
];

/// Every AWS API action the controller's code calls, as IAM names. The least-privilege policy
/// in `deploy/terraform/modules/autoscaler-iam` grants exactly these (a test checks it), and
/// the AWS adapters must not call anything else (a test checks that too).
pub const IAM_ACTIONS: &[&str] = &[
    // Tables: `tables create` and the adapters.
    "dynamodb:CreateTable",
    "dynamodb:DescribeTable",
    "dynamodb:UpdateTimeToLive",
    "dynamodb:DescribeTimeToLive",
    "dynamodb:Query",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:ConditionCheckItem",
    // DynamoDB Streams of the instances, routing and cleanup tables (the inventory's informer).
    "dynamodb:DescribeStream",
    "dynamodb:GetShardIterator",
    "dynamodb:GetRecords",
    // Auto Scaling.
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:SetDesiredCapacity",
    "autoscaling:TerminateInstanceInAutoScalingGroup",
    // CloudWatch gauges.
    "cloudwatch:PutMetricData",
];

/// The metrics-table partition key of a pool's metric in a region (DESIGN §3):
/// `<metric>#<pool>#<region>`, e.g. `rps#model-a#us-east-1`. Routers write it, the
/// controller reads it; the pool and region in the key keep two writers from overwriting each
/// other's sample for the same minute.
pub fn metric_key(metric: &str, pool: &str, region: &str) -> String {
    format!("{metric}#{pool}#{region}")
}

/// The metrics-table key of a pool's RPS in a region.
pub fn rps_key(pool: &str, region: &str) -> String {
    metric_key("rps", pool, region)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_prefix() {
        let names: Vec<String> = ALL.iter().map(|t| t.table_name("mrgc-prod")).collect();
        assert_eq!(
            names,
            [
                "mrgc-prod-gpu-instances",
                "mrgc-prod-routing-state",
                "mrgc-prod-autoscaling-state",
                "mrgc-prod-cleanup-validation",
                "mrgc-prod-metrics",
                "mrgc-prod-controller-leases"
            ]
        );
    }

    #[test]
    fn key_attributes_are_listed_once() {
        let attrs: Vec<&str> = AUTOSCALING_STATE
            .key_attributes()
            .iter()
            .map(|k| k.name)
            .collect();
        assert_eq!(attrs, ["model_pool", "timestamp", "region"]);
        assert_eq!(GPU_INSTANCES.key_attributes().len(), 4);
    }

    #[test]
    fn only_the_lease_table_is_regional() {
        let regional: Vec<&str> = ALL.iter().filter(|t| !t.global).map(|t| t.suffix).collect();
        assert_eq!(regional, ["controller-leases"]);
    }
}
