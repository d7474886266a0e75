//! Analyses cached by statement text, and by statement shape.
//!
//! Applications send the same few hundred statement texts over and over
//! (ORMs and drivers use parameters), so after warm-up nearly every
//! statement is a hit. A hit is a hash of the text, a table probe, a
//! list splice and an `Arc` clone. Clients that inline literals send a new
//! text every time; those hit the shape table instead ([`crate::shape`]):
//! one scan of the text, then the same probe.
//!
//! The LRU is written here rather than taken from a crate: it is ~150
//! lines, needs no `unsafe`, and keeps the dependency tree to the parser.
//! Entries live in a `Vec` slab linked by indices; the map goes from key
//! to slab index. The hasher is std's SipHash with a per-cache random key:
//! statement text is chosen by clients, and a predictable hash would let
//! one client degrade the table for everyone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::AnalysisError;
use crate::facts::Analysis;
use crate::shape::{shape_of, Shape, Template};

/// What the cache holds per text: the analysis or the refusal (so a
/// client repeating garbage costs one parse, not one per repetition).
pub type CachedAnalysis = Result<Arc<Analysis>, AnalysisError>;

/// Bounds of a cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// Most entries kept in each table (texts, shapes); the least recently
    /// used goes first.
    pub max_entries: usize,
    /// Texts longer than this (bytes) are analysed but not kept: long
    /// statements are usually one-off bulk loads, and keeping them would
    /// let a few fill memory.
    pub max_text_len: usize,
}

impl Default for CacheLimits {
    fn default() -> Self {
        CacheLimits {
            max_entries: 4096,
            max_text_len: 16 * 1024,
        }
    }
}

/// How lookups went, since the cache was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// The very text was cached.
    pub text_hits: u64,
    /// Another text of the same shape was.
    pub shape_hits: u64,
    /// Parsed and analysed in full.
    pub misses: u64,
}

/// A bounded LRU of analyses, for one thread (see [`SharedAnalysisCache`]
/// for sharing between sessions).
pub struct AnalysisCache {
    limits: CacheLimits,
    /// Texts whose analysis cannot stand for their shape (literal-dependent,
    /// outside the shape scan, refused) or that have no constants.
    texts: Lru<CachedAnalysis>,
    /// Shapes whose analysis stands for every text of the shape.
    shapes: Lru<Arc<Template>>,
    stats: CacheStats,
}

impl std::fmt::Debug for AnalysisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnalysisCache")
            .field("limits", &self.limits)
            .field("texts", &self.texts.len())
            .field("shapes", &self.shapes.len())
            .finish()
    }
}

impl AnalysisCache {
    /// An empty cache.
    pub fn new(limits: CacheLimits) -> Self {
        AnalysisCache {
            limits,
            texts: Lru::new(limits.max_entries),
            shapes: Lru::new(limits.max_entries),
            stats: CacheStats::default(),
        }
    }

    /// Number of entries (texts and shapes).
    pub fn len(&self) -> usize {
        self.texts.len() + self.shapes.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How lookups went.
    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// The cached analysis of the very text `sql`, marking it recently used.
    pub fn get(&mut self, sql: &str) -> Option<CachedAnalysis> {
        let hit = self.texts.get(sql)?;
        self.stats.text_hits += 1;
        Some(hit)
    }

    /// The template kept for `shape`, marking it recently used.
    fn template(&mut self, shape: &Shape) -> Option<Arc<Template>> {
        let hit = self.shapes.get(&shape.key)?;
        self.stats.shape_hits += 1;
        Some(hit)
    }

    /// The analysis of `sql`, from the cache or computed (and kept).
    pub fn analyze(&mut self, sql: &str) -> CachedAnalysis {
        if let Some(hit) = self.get(sql) {
            return hit;
        }
        let shape = shape_within(self.limits, sql);
        if let Some(template) = shape.as_ref().and_then(|s| self.template(s)) {
            return Ok(template.instantiate(shape.as_ref().expect("checked above")));
        }
        let computed = Computed::new(sql, shape);
        self.keep(sql, computed)
    }

    /// Keeps a full analysis: under its shape when it stands for the shape,
    /// otherwise under its text.
    fn keep(&mut self, sql: &str, computed: Computed) -> CachedAnalysis {
        self.stats.misses += 1;
        let Computed { value, template } = computed;
        match template {
            Some((key, template)) => self.shapes.insert(key, Arc::new(template)),
            None => self.insert(sql, value.clone()),
        }
        value
    }

    /// Keeps `value` for the text `sql`, evicting the least recently used
    /// entry when full. Texts over the length limit are not kept.
    pub fn insert(&mut self, sql: &str, value: CachedAnalysis) {
        if sql.len() > self.limits.max_text_len {
            return;
        }
        self.texts.insert(sql.into(), value);
    }

    /// Drops every entry (for example when the catalog-independent parts of
    /// the analysis change: a new version of this crate's rules).
    pub fn clear(&mut self) {
        self.texts.clear();
        self.shapes.clear();
    }
}

/// The shape of `sql` if it is short enough to keep.
fn shape_within(limits: CacheLimits, sql: &str) -> Option<Shape> {
    if sql.len() > limits.max_text_len || limits.max_entries == 0 {
        return None;
    }
    shape_of(sql)
}

/// A full analysis, with the template to keep for its shape when it may
/// stand for every text of that shape.
struct Computed {
    value: CachedAnalysis,
    template: Option<(Arc<str>, Template)>,
}

impl Computed {
    fn new(sql: &str, shape: Option<Shape>) -> Computed {
        match crate::analyze_traced(sql) {
            Err(e) => Computed {
                value: Err(e),
                template: None,
            },
            Ok(traced) => {
                let analysis = Arc::new(traced.analysis);
                // A text without constants is its own shape: the text table
                // finds it with less work.
                let template = shape.filter(|s| !s.constants.is_empty()).and_then(|s| {
                    Template::new(
                        &s,
                        analysis.clone(),
                        &traced.a_const_locations,
                        traced.values_read,
                        sql,
                    )
                    .map(|t| (Arc::from(s.key), t))
                });
                Computed {
                    value: Ok(analysis),
                    template,
                }
            }
        }
    }
}

const NONE: usize = usize::MAX;

struct Entry<V> {
    key: Arc<str>,
    value: V,
    /// Towards the most recently used end.
    newer: usize,
    /// Towards the least recently used end.
    older: usize,
}

/// A bounded least-recently-used map from strings to `V`.
struct Lru<V> {
    max_entries: usize,
    index: HashMap<Arc<str>, usize>,
    slab: Vec<Entry<V>>,
    /// Most recently used.
    newest: usize,
    /// Least recently used: evicted first.
    oldest: usize,
}

impl<V: Clone> Lru<V> {
    fn new(max_entries: usize) -> Self {
        Lru {
            max_entries,
            index: HashMap::with_capacity(max_entries.min(1 << 16)),
            slab: Vec::new(),
            newest: NONE,
            oldest: NONE,
        }
    }

    fn len(&self) -> usize {
        self.slab.len()
    }

    fn get(&mut self, key: &str) -> Option<V> {
        let i = *self.index.get(key)?;
        self.touch(i);
        self.slab.get(i).map(|e| e.value.clone())
    }

    fn insert(&mut self, key: Arc<str>, value: V) {
        if self.max_entries == 0 {
            return;
        }
        if let Some(&i) = self.index.get(&key) {
            if let Some(e) = self.slab.get_mut(i) {
                e.value = value;
            }
            self.touch(i);
            return;
        }
        let i = if self.slab.len() < self.max_entries {
            self.slab.push(Entry {
                key: key.clone(),
                value,
                newer: NONE,
                older: NONE,
            });
            self.slab.len() - 1
        } else {
            // Reuse the oldest slot.
            let i = self.oldest;
            self.unlink(i);
            let Some(e) = self.slab.get_mut(i) else {
                return;
            };
            let old = std::mem::replace(&mut e.key, key.clone());
            e.value = value;
            self.index.remove(&old);
            i
        };
        self.index.insert(key, i);
        self.link_newest(i);
    }

    fn clear(&mut self) {
        self.index.clear();
        self.slab.clear();
        self.newest = NONE;
        self.oldest = NONE;
    }

    fn touch(&mut self, i: usize) {
        if self.newest != i {
            self.unlink(i);
            self.link_newest(i);
        }
    }

    fn unlink(&mut self, i: usize) {
        let Some(e) = self.slab.get(i) else { return };
        let (newer, older) = (e.newer, e.older);
        match self.slab.get_mut(newer) {
            Some(n) => n.older = older,
            None => self.newest = older,
        }
        match self.slab.get_mut(older) {
            Some(o) => o.newer = newer,
            None => self.oldest = newer,
        }
        if let Some(e) = self.slab.get_mut(i) {
            e.newer = NONE;
            e.older = NONE;
        }
    }

    fn link_newest(&mut self, i: usize) {
        let previous = self.newest;
        if let Some(e) = self.slab.get_mut(i) {
            e.older = previous;
            e.newer = NONE;
        }
        match self.slab.get_mut(previous) {
            Some(p) => p.newer = i,
            None => self.oldest = i,
        }
        self.newest = i;
    }
}

/// An analysis from the cache, with the one whose facts it shares.
#[derive(Debug, Clone)]
pub struct Found {
    /// The analysis of the text asked about.
    pub analysis: Arc<Analysis>,
    /// For a shape hit, the analysis of the text that made the template:
    /// the same facts, only statement spans may differ. Otherwise the
    /// analysis itself. Texts with one origin are judged alike wherever a
    /// judgement does not read the text or the spans.
    pub origin: Arc<Analysis>,
}

impl Found {
    fn itself(analysis: Arc<Analysis>) -> Found {
        Found {
            origin: analysis.clone(),
            analysis,
        }
    }
}

/// An [`AnalysisCache`] behind a mutex, shared by every session of a
/// process (statements repeat across sessions, not only within one). The
/// lock is held only for lookups and insertions, never while scanning or
/// parsing.
#[derive(Debug)]
pub struct SharedAnalysisCache {
    limits: CacheLimits,
    inner: Mutex<AnalysisCache>,
}

impl SharedAnalysisCache {
    /// An empty shared cache.
    pub fn new(limits: CacheLimits) -> Self {
        SharedAnalysisCache {
            limits,
            inner: Mutex::new(AnalysisCache::new(limits)),
        }
    }

    /// The analysis of `sql`, from the cache or computed (and kept).
    pub fn analyze(&self, sql: &str) -> CachedAnalysis {
        self.analyze_found(sql).map(|f| f.analysis)
    }

    /// [`SharedAnalysisCache::analyze`], also telling which analysis this
    /// one shares its facts with.
    pub fn analyze_found(&self, sql: &str) -> Result<Found, AnalysisError> {
        if let Some(hit) = self.lock().get(sql) {
            return hit.map(Found::itself);
        }
        let shape = shape_within(self.limits, sql);
        if let Some(shape) = shape.as_ref() {
            let template = self.lock().template(shape);
            if let Some(template) = template {
                return Ok(Found {
                    analysis: template.instantiate(shape),
                    origin: template.analysis().clone(),
                });
            }
        }
        let computed = Computed::new(sql, shape);
        self.lock().keep(sql, computed).map(Found::itself)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// How lookups went.
    pub fn stats(&self) -> CacheStats {
        self.lock().stats()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AnalysisCache> {
        // A panic while holding the lock can only have come from this
        // module's list surgery; start afresh rather than trust the links.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned: PoisonError<_>| {
                let mut guard = poisoned.into_inner();
                guard.clear();
                guard
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_entries: usize) -> CacheLimits {
        CacheLimits {
            max_entries,
            max_text_len: 1024,
        }
    }

    #[test]
    fn least_recently_used_goes_first() {
        let mut cache = AnalysisCache::new(limits(2));
        let _ = cache.analyze("SELECT a");
        let _ = cache.analyze("SELECT b");
        assert!(cache.get("SELECT a").is_some()); // a is now newer than b
        let _ = cache.analyze("SELECT c");
        assert_eq!(cache.len(), 2);
        assert!(cache.get("SELECT b").is_none());
        assert!(cache.get("SELECT a").is_some());
        assert!(cache.get("SELECT c").is_some());
    }

    #[test]
    fn hits_share_the_analysis() {
        let mut cache = AnalysisCache::new(limits(4));
        let a = cache.analyze("SELECT a").expect("parses");
        let b = cache.analyze("SELECT a").expect("parses");
        assert!(Arc::ptr_eq(&a, &b));
    }

    #[test]
    fn refusals_are_cached_too() {
        let mut cache = AnalysisCache::new(limits(4));
        assert!(cache.analyze("SELEC 1").is_err());
        assert!(matches!(
            cache.get("SELEC 1"),
            Some(Err(AnalysisError::Syntax { .. }))
        ));
    }

    #[test]
    fn long_texts_and_zero_capacity_are_not_kept() {
        let mut cache = AnalysisCache::new(limits(4));
        let long = format!("SELECT {}", "a + ".repeat(300) + "1");
        let _ = cache.analyze(&long);
        assert!(cache.is_empty());
        let mut none = AnalysisCache::new(limits(0));
        assert!(none.analyze("SELECT 1").is_ok());
        assert!(none.is_empty());
    }

    #[test]
    fn texts_differing_in_literals_share_one_analysis() {
        let mut cache = AnalysisCache::new(limits(8));
        let a = cache
            .analyze("UPDATE t SET v = 'a' WHERE id = 1")
            .expect("parses");
        let b = cache
            .analyze("UPDATE t SET v = 'b' WHERE id = 2")
            .expect("parses");
        assert!(
            Arc::ptr_eq(&a, &b),
            "same literal lengths: the very analysis"
        );
        let sql = "UPDATE t SET v = 'longer' WHERE id = 12345; SELECT 1";
        let c = cache.analyze(sql).expect("parses");
        assert_eq!(
            cache.stats(),
            CacheStats {
                text_hits: 0,
                shape_hits: 1,
                misses: 2
            },
            "the two-statement text is another shape"
        );
        let d = cache
            .analyze("UPDATE t SET v = 'x' WHERE id = 7; SELECT 22222")
            .expect("parses");
        assert_eq!(cache.stats().shape_hits, 2);
        assert_eq!(
            *d,
            crate::analyze("UPDATE t SET v = 'x' WHERE id = 7; SELECT 22222").expect("parses")
        );
        assert_eq!(&sql[c.statements[1].span.clone()], "SELECT 1");
    }

    #[test]
    fn each_span_layout_of_a_shape_is_made_once() {
        let mut cache = AnalysisCache::new(limits(8));
        let _ = cache
            .analyze("SELECT a FROM t WHERE id = 1; SELECT 2")
            .expect("parses");
        let b = cache
            .analyze("SELECT a FROM t WHERE id = 10; SELECT 2")
            .expect("parses");
        let c = cache
            .analyze("SELECT a FROM t WHERE id = 99; SELECT 3")
            .expect("parses");
        assert!(Arc::ptr_eq(&b, &c), "the same lengths: one analysis");
        assert_eq!(c.statements[1].span, 31..39);
        let d = cache
            .analyze("SELECT a FROM t WHERE id = 100; SELECT 3")
            .expect("parses");
        assert!(!Arc::ptr_eq(&c, &d));
        assert_eq!(d.statements[1].span, 32..40);
    }

    #[test]
    fn literal_dependent_analyses_are_kept_by_text_only() {
        let mut cache = AnalysisCache::new(limits(8));
        for (sql, filter) in [
            ("DELETE FROM t WHERE 1 = 1", crate::Filter::Tautology),
            ("DELETE FROM t WHERE 1 = 2", crate::Filter::Contradiction),
            ("DELETE FROM t WHERE 'a' = 'a'", crate::Filter::Tautology),
            (
                "DELETE FROM t WHERE id = 1 OR 2 = 2",
                crate::Filter::Tautology,
            ),
            (
                "DELETE FROM t WHERE id = 1 OR 2 = 3",
                crate::Filter::Restrictive,
            ),
        ] {
            let a = cache.analyze(sql).expect("parses");
            assert_eq!(
                a.statements[0].actions[0].kind.filter(),
                Some(filter),
                "{sql}"
            );
        }
        assert_eq!(cache.stats().shape_hits, 0);
        let set = |v: &str| {
            let sql = format!("SELECT set_config('{v}', 'x', false)");
            crate::analyze(&sql).expect("parses").statements[0]
                .settings
                .clone()
        };
        let role = cache
            .analyze("SELECT set_config('role', 'x', false)")
            .expect("parses");
        let name = cache
            .analyze("SELECT set_config('application_name', 'x', false)")
            .expect("parses");
        assert_eq!(role.statements[0].settings, set("role"));
        assert_eq!(name.statements[0].settings, set("application_name"));
        assert_ne!(role.statements[0].settings, name.statements[0].settings);
        assert_eq!(cache.stats().shape_hits, 0);
    }

    #[test]
    fn constants_that_are_not_expressions_are_kept_by_text_only() {
        let mut cache = AnalysisCache::new(limits(8));
        for sql in [
            "COPY t FROM '/tmp/a'",
            "COPY t FROM '/tmp/b'",
            "DO 'BEGIN NULL; END'",
            "DO 'BEGIN DROP TABLE x; END'",
            "SELECT '1'::float(10)",
            "SELECT '1'::float(30)",
        ] {
            cache.analyze(sql).expect("parses");
        }
        assert_eq!(cache.stats().shape_hits, 0);
    }

    #[test]
    fn churn_keeps_links_consistent() {
        let mut cache = AnalysisCache::new(limits(8));
        for round in 0..5 {
            for i in 0..20 {
                let sql = format!("SELECT c{}", (i * 7 + round) % 13);
                cache.analyze(&sql).expect("parses");
                assert!(cache.len() <= 8);
            }
        }
        // Walk the list from newest to oldest: every entry exactly once.
        let texts = &cache.texts;
        let mut seen = 0;
        let mut i = texts.newest;
        while i != NONE {
            seen += 1;
            i = texts.slab[i].older;
        }
        assert_eq!(seen, texts.len());
        assert_eq!(texts.index.len(), texts.len());
    }

    #[test]
    fn shared_cache_works_across_threads() {
        let cache = Arc::new(SharedAnalysisCache::new(limits(16)));
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let cache = cache.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        let sql = format!("SELECT {} FROM t{}", i % 10, t % 2);
                        assert!(cache.analyze(&sql).is_ok());
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("thread");
        }
        assert!(cache.len() <= 32);
        assert!(cache.stats().shape_hits > 0);
    }
}
