//! Following a table's changes through its DynamoDB stream, as a Kubernetes informer follows
//! a resource after listing it once: the seed's global tables stream NEW_AND_OLD_IMAGES.
//!
//! `start` puts an iterator at the tip (`LATEST`) of every open shard *before* the caller reads
//! the table in full, so every change after that read is in what `poll` returns later (a
//! change between the two comes twice: the stream replays it in order after the full read,
//! which converges on the same item). `poll` reads each open shard once (a few pages at most);
//! a shard that closes is followed by its children from their start (`TRIM_HORIZON`). Any
//! error — a trimmed or expired iterator, a stream that was replaced — is a gap: the caller
//! starts again and reads the table in full.
//!
//! What it costs: GetRecords is billed in streams read request units (one per call, whatever
//! it returns), apart from the table's read units; DescribeTable, DescribeStream and
//! GetShardIterator are not billed. Every call is booked in the cost meter.

use std::collections::{BTreeMap, HashSet};

use aws_sdk_dynamodb::types::AttributeValue as Av;
use aws_sdk_dynamodbstreams::types::{
    AttributeValue as StreamAv, OperationType, ShardIteratorType,
};

use crate::ports::{PortError, PortResult};

use super::item::Item;
use super::{AwsClients, Service, port_error};

/// Pages read from one shard per poll at most (1,000 records or 1 MB each); the rest waits
/// for the next poll.
const MAX_PAGES_PER_SHARD: usize = 10;

/// One change of an item.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Change {
    /// Inserted or modified: the item as it is now.
    Put(Item),
    /// Removed (or expired by TTL): its key.
    Remove(Item),
}

impl Change {
    /// The item's key attributes (from the new image, or the key of a removal).
    pub(crate) fn item(&self) -> &Item {
        match self {
            Change::Put(i) | Change::Remove(i) => i,
        }
    }
}

pub(crate) struct StreamFollower {
    table: String,
    arn: Option<String>,
    /// Open shards being read: shard id → the next iterator.
    open: BTreeMap<String, String>,
    /// Every shard id seen, so a closed one is never read again.
    known: HashSet<String>,
}

impl StreamFollower {
    pub(crate) fn new(table: &str) -> Self {
        StreamFollower {
            table: table.to_string(),
            arn: None,
            open: BTreeMap::new(),
            known: HashSet::new(),
        }
    }

    /// The table's current stream, with an iterator at the tip of each open shard. Call just
    /// before reading the table in full.
    pub(crate) async fn start(&mut self, c: &AwsClients) -> PortResult<()> {
        self.arn = None;
        self.open.clear();
        self.known.clear();
        let out = c
            .caller
            .call(
                Service::DynamoDb,
                "DescribeTable",
                c.ddb.describe_table().table_name(&self.table).send(),
            )
            .await
            .map_err(|e| port_error(&format!("describing {}", self.table), &e))?;
        c.meter.book_call(&self.table, "DescribeTable");
        let arn = out
            .table()
            .filter(|t| t.stream_specification().is_some_and(|s| s.stream_enabled()))
            .and_then(|t| t.latest_stream_arn())
            .ok_or_else(|| PortError::Permanent(format!("{} has no stream enabled", self.table)))?
            .to_string();
        self.arn = Some(arn);
        self.discover(c, ShardIteratorType::Latest).await
    }

    /// Find shards not seen yet and open an iterator on each open one (`from` says where).
    async fn discover(&mut self, c: &AwsClients, from: ShardIteratorType) -> PortResult<()> {
        let Some(arn) = self.arn.clone() else {
            return Err(PortError::Permanent(format!(
                "{}: the stream was not started",
                self.table
            )));
        };
        let mut start_after: Option<String> = None;
        let mut fresh = Vec::new();
        loop {
            let out = c
                .caller
                .call(
                    Service::DynamoDb,
                    "DescribeStream",
                    c.streams
                        .describe_stream()
                        .stream_arn(&arn)
                        .set_exclusive_start_shard_id(start_after.take())
                        .send(),
                )
                .await
                .map_err(|e| port_error(&format!("describing the stream of {}", self.table), &e))?;
            c.meter.book_call(&self.table, "DescribeStream");
            let Some(d) = out.stream_description() else {
                break;
            };
            for s in d.shards() {
                let Some(id) = s.shard_id() else { continue };
                if self.known.insert(id.to_string()) {
                    let closed = s
                        .sequence_number_range()
                        .and_then(|r| r.ending_sequence_number())
                        .is_some();
                    // At the tip, a closed shard has nothing more; later, a closed shard we
                    // never saw (split and closed between two polls) still has records.
                    if !(closed && from == ShardIteratorType::Latest) {
                        fresh.push(id.to_string());
                    }
                }
            }
            match d.last_evaluated_shard_id() {
                Some(last) if !last.is_empty() => start_after = Some(last.to_string()),
                _ => break,
            }
        }
        for id in fresh {
            let out = c
                .caller
                .call(
                    Service::DynamoDb,
                    "GetShardIterator",
                    c.streams
                        .get_shard_iterator()
                        .stream_arn(&arn)
                        .shard_id(&id)
                        .shard_iterator_type(from.clone())
                        .send(),
                )
                .await
                .map_err(|e| port_error(&format!("opening shard {id} of {}", self.table), &e))?;
            c.meter.book_call(&self.table, "GetShardIterator");
            if let Some(it) = out.shard_iterator() {
                self.open.insert(id, it.to_string());
            }
        }
        Ok(())
    }

    /// The changes since the last poll, in stream order per shard (a parent shard before its
    /// children). An error is a gap: start again and read the table in full.
    pub(crate) async fn poll(&mut self, c: &AwsClients) -> PortResult<Vec<Change>> {
        let mut changes = Vec::new();
        let mut read: HashSet<String> = HashSet::new();
        // Rounds: the open shards, then the children of any that closed (from their start).
        for _round in 0..4 {
            let ids: Vec<String> = self
                .open
                .keys()
                .filter(|k| !read.contains(*k))
                .cloned()
                .collect();
            if ids.is_empty() {
                break;
            }
            let mut closed_any = false;
            for id in ids {
                read.insert(id.clone());
                if self.read_shard(c, &id, &mut changes).await? {
                    closed_any = true;
                }
            }
            if !closed_any {
                break;
            }
            self.discover(c, ShardIteratorType::TrimHorizon).await?;
        }
        Ok(changes)
    }

    /// Read one shard from its iterator; true when it closed (read to its end).
    async fn read_shard(
        &mut self,
        c: &AwsClients,
        id: &str,
        changes: &mut Vec<Change>,
    ) -> PortResult<bool> {
        let Some(mut it) = self.open.get(id).cloned() else {
            return Ok(false);
        };
        for _ in 0..MAX_PAGES_PER_SHARD {
            let out = c
                .caller
                .call(
                    Service::DynamoDb,
                    "GetRecords",
                    c.streams.get_records().shard_iterator(&it).send(),
                )
                .await
                .map_err(|e| port_error(&format!("reading shard {id} of {}", self.table), &e))?;
            c.meter.book_stream_read(&self.table);
            for r in out.records() {
                let Some(d) = r.dynamodb() else { continue };
                match (r.event_name(), d.new_image(), d.keys()) {
                    (Some(OperationType::Remove), _, Some(k)) => {
                        changes.push(Change::Remove(item_of(k)))
                    }
                    (Some(OperationType::Remove), _, None) => {}
                    (_, Some(img), _) => changes.push(Change::Put(item_of(img))),
                    // Without a new image (a stream of keys only) the item cannot be known:
                    // drop it rather than keep a stale copy.
                    (_, None, Some(k)) => changes.push(Change::Remove(item_of(k))),
                    (_, None, None) => {}
                }
            }
            let got = out.records().len();
            match out.next_shard_iterator() {
                None => {
                    self.open.remove(id);
                    return Ok(true);
                }
                Some(next) => {
                    it = next.to_string();
                    self.open.insert(id.to_string(), it.clone());
                }
            }
            if got == 0 {
                break;
            }
        }
        Ok(false)
    }
}

/// A stream record's attribute map as the DynamoDB client's type.
pub(crate) fn item_of(m: &std::collections::HashMap<String, StreamAv>) -> Item {
    m.iter().map(|(k, v)| (k.clone(), value_of(v))).collect()
}

fn value_of(v: &StreamAv) -> Av {
    match v {
        StreamAv::S(s) => Av::S(s.clone()),
        StreamAv::N(n) => Av::N(n.clone()),
        StreamAv::B(b) => Av::B(b.clone()),
        StreamAv::Bool(b) => Av::Bool(*b),
        StreamAv::Null(b) => Av::Null(*b),
        StreamAv::Ss(v) => Av::Ss(v.clone()),
        StreamAv::Ns(v) => Av::Ns(v.clone()),
        StreamAv::Bs(v) => Av::Bs(v.clone()),
        StreamAv::L(l) => Av::L(l.iter().map(value_of).collect()),
        StreamAv::M(m) => Av::M(item_of(m)),
        // A type this client does not know yet: keep the item, lose the value (the parsers
        // then report the attribute as mistyped, as they would any other).
        _ => Av::Null(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_images_convert_to_items_with_every_type() {
        let mut inner = std::collections::HashMap::new();
        inner.insert("gpus".to_string(), StreamAv::N("8".into()));
        let mut m = std::collections::HashMap::new();
        m.insert("instance_id".to_string(), StreamAv::S("i-1".into()));
        m.insert("queue_depth".to_string(), StreamAv::N("3".into()));
        m.insert("ok".to_string(), StreamAv::Bool(true));
        m.insert("meta".to_string(), StreamAv::M(inner));
        m.insert(
            "tags".to_string(),
            StreamAv::L(vec![StreamAv::S("a".into()), StreamAv::Null(true)]),
        );
        let it = item_of(&m);
        assert_eq!(it["instance_id"], Av::S("i-1".into()));
        assert_eq!(it["queue_depth"], Av::N("3".into()));
        assert_eq!(it["ok"], Av::Bool(true));
        let Av::M(meta) = &it["meta"] else {
            panic!("a map stays a map")
        };
        assert_eq!(meta["gpus"], Av::N("8".into()));
        assert_eq!(it["tags"], Av::L(vec![Av::S("a".into()), Av::Null(true)]));
    }
}
