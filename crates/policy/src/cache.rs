//! A bounded cache of decisions.
//!
//! A decision is a pure function of the request and the loaded policies,
//! and applications send the same statements over and over (an ORM has a
//! few hundred shapes; a connection pool runs them from many sessions of
//! the same identity). A cold Cedar decision costs tens of microseconds; a
//! cache hit costs a hash and a comparison. The cache belongs to the engine,
//! so a reload, which builds a new engine, starts with an empty one and no
//! stale decision can outlive the policies that made it.
//!
//! The key is the request minus the facts no loaded policy reads (see
//! [`PolicyNeeds`]): with the default bundle the time of day and the client
//! address are not part of the key, so they do not split the cache.
//!
//! Bounded by entry count; a full shard is emptied rather than tracked in
//! LRU order, which keeps a hit to one lock and one lookup. The hasher is
//! keyed per cache (RandomState) because keys hold client-chosen names.
//!
//! Unmask answers have a cache of their own, [`UnmaskCache`], keyed the same
//! way: the question minus the facts no unmask policy reads.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::IpAddr;
use std::sync::Mutex;

use crate::decision::Decided;
use crate::needs::PolicyNeeds;
use crate::request::Request;
use crate::request::{Principal, RequestContext, ResourceRef, TargetRef, TimeOfDay};

const SHARDS: usize = 8;

/// Entries by key hash; a bucket holds the rare keys whose hashes collide.
type Shard = Mutex<HashMap<u64, Vec<(Request, Decided)>>>;

pub(crate) struct DecisionCache {
    hasher: RandomState,
    shards: Vec<Shard>,
    shard_capacity: usize,
    key: KeyFields,
}

/// Which request fields take part in the key.
#[derive(Debug, Clone, Copy)]
struct KeyFields {
    has_effective_where: bool,
    opaque: bool,
    dangerous: bool,
    functions: bool,
    statement_count: bool,
    time: bool,
    source_address: bool,
    approved: bool,
    row_limit: bool,
}

impl DecisionCache {
    /// `capacity` 0 disables the cache.
    pub fn new(capacity: usize, needs: &PolicyNeeds) -> Self {
        DecisionCache {
            hasher: RandomState::new(),
            shards: (0..if capacity == 0 { 0 } else { SHARDS })
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            shard_capacity: capacity.div_ceil(SHARDS),
            key: KeyFields {
                has_effective_where: needs.reads("has_effective_where"),
                opaque: needs.reads("opaque"),
                dangerous: needs.reads("dangerous"),
                functions: needs.reads("functions"),
                statement_count: needs.reads("statement_count"),
                time: needs.reads("time"),
                source_address: needs.reads("source_address"),
                approved: needs.reads("approved"),
                row_limit: needs.reads("row_limit"),
            },
        }
    }

    pub fn get(&self, req: &Request) -> Option<Decided> {
        let (hash, shard) = self.locate(req)?;
        let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
        shard
            .get(&hash)?
            .iter()
            .find(|(k, _)| self.same_key(k, req))
            .map(|(_, d)| d.clone())
    }

    pub fn insert(&self, req: &Request, decision: &Decided) {
        let Some((hash, shard)) = self.locate(req) else {
            return;
        };
        let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
        if shard.len() >= self.shard_capacity {
            shard.clear();
        }
        let bucket = shard.entry(hash).or_default();
        if !bucket.iter().any(|(k, _)| self.same_key(k, req)) {
            bucket.push((req.clone(), decision.clone()));
        }
    }

    fn locate(&self, req: &Request) -> Option<(u64, &Shard)> {
        if self.shards.is_empty() {
            return None;
        }
        let mut h = self.hasher.build_hasher();
        self.hash_key(req, &mut h);
        let hash = h.finish();
        Some((hash, &self.shards[(hash as usize) % SHARDS]))
    }

    fn hash_key(&self, r: &Request, h: &mut impl Hasher) {
        let k = self.key;
        r.principal.hash(h);
        r.target.hash(h);
        for op in &r.statement.operations {
            op.action.hash(h);
            op.resources.hash(h);
            if k.has_effective_where {
                op.has_effective_where.hash(h);
            }
        }
        let s = &r.statement;
        let c = &r.context;
        if k.opaque {
            s.opaque.hash(h);
        }
        if k.dangerous {
            s.dangerous.hash(h);
        }
        if k.functions {
            s.functions.hash(h);
        }
        if k.statement_count {
            s.statement_count.hash(h);
        }
        if k.time {
            c.time.hash(h);
        }
        if k.source_address {
            c.source_address.hash(h);
        }
        if k.approved {
            c.approved.hash(h);
        }
        if k.row_limit {
            c.row_limit.hash(h);
        }
    }

    fn same_key(&self, a: &Request, b: &Request) -> bool {
        let k = self.key;
        let (sa, sb) = (&a.statement, &b.statement);
        let (ca, cb) = (&a.context, &b.context);
        a.principal == b.principal
            && a.target == b.target
            && sa.operations.len() == sb.operations.len()
            && sa.operations.iter().zip(&sb.operations).all(|(x, y)| {
                x.action == y.action
                    && x.resources == y.resources
                    && (!k.has_effective_where || x.has_effective_where == y.has_effective_where)
            })
            && (!k.opaque || sa.opaque == sb.opaque)
            && (!k.dangerous || sa.dangerous == sb.dangerous)
            && (!k.functions || sa.functions == sb.functions)
            && (!k.statement_count || sa.statement_count == sb.statement_count)
            && (!k.time || ca.time == cb.time)
            && (!k.source_address || ca.source_address == cb.source_address)
            && (!k.approved || ca.approved == cb.approved)
            && (!k.row_limit || ca.row_limit == cb.row_limit)
    }
}

/// Unmask answers, per (principal, target, column, classification) and the
/// context facts the unmask policies read. Asked at most once per column of
/// a result set, so one lock is enough; bounded like [`DecisionCache`].
pub(crate) struct UnmaskCache {
    entries: Mutex<HashMap<UnmaskKey, bool>>,
    capacity: usize,
    reads_time: bool,
    reads_source_address: bool,
    reads_row_limit: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct UnmaskKey {
    principal: Principal,
    target: TargetRef,
    column: ResourceRef,
    classification: String,
    /// `None` when no unmask policy reads the fact.
    time: Option<TimeOfDay>,
    source_address: Option<Option<IpAddr>>,
    row_limit: Option<Option<u64>>,
}

impl UnmaskCache {
    /// `capacity` 0 disables the cache; `needs` are the unmask policies'.
    pub fn new(capacity: usize, needs: &PolicyNeeds) -> Self {
        UnmaskCache {
            entries: Mutex::new(HashMap::new()),
            capacity,
            reads_time: needs.reads("time"),
            reads_source_address: needs.reads("source_address"),
            reads_row_limit: needs.reads("row_limit"),
        }
    }

    /// The key for a question, or `None` when the cache is disabled.
    pub fn key(
        &self,
        principal: &Principal,
        target: &TargetRef,
        context: &RequestContext,
        column: &ResourceRef,
        classification: &str,
    ) -> Option<UnmaskKey> {
        (self.capacity > 0).then(|| UnmaskKey {
            principal: principal.clone(),
            target: target.clone(),
            column: column.clone(),
            classification: classification.to_owned(),
            time: self.reads_time.then_some(context.time),
            source_address: self.reads_source_address.then_some(context.source_address),
            row_limit: self.reads_row_limit.then_some(context.row_limit),
        })
    }

    pub fn get(&self, key: &UnmaskKey) -> Option<bool> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(key).copied()
    }

    pub fn insert(&self, key: UnmaskKey, may_unmask: bool) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.capacity {
            entries.clear();
        }
        entries.insert(key, may_unmask);
    }
}
