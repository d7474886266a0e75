//! Analyses cached by statement text.
//!
//! Applications send the same few hundred statement texts over and over
//! (ORMs and drivers use parameters), so after warm-up nearly every
//! statement is a hit. A hit is a hash of the text, a table probe, a
//! list splice and an `Arc` clone.
//!
//! The LRU is written here rather than taken from a crate: it is ~150
//! lines, needs no `unsafe`, and keeps the dependency tree to the parser.
//! Entries live in a `Vec` slab linked by indices; the map goes from text
//! to slab index. The hasher is std's SipHash with a per-cache random key:
//! statement text is chosen by clients, and a predictable hash would let
//! one client degrade the table for everyone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::AnalysisError;
use crate::facts::Analysis;

/// What the cache holds per text: the analysis or the refusal (so a
/// client repeating garbage costs one parse, not one per repetition).
pub type CachedAnalysis = Result<Arc<Analysis>, AnalysisError>;

/// Bounds of a cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// Most entries kept; the least recently used goes first.
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

const NONE: usize = usize::MAX;

struct Entry {
    text: Arc<str>,
    value: CachedAnalysis,
    /// Towards the most recently used end.
    newer: usize,
    /// Towards the least recently used end.
    older: usize,
}

/// A bounded LRU of analyses, for one thread (see [`SharedAnalysisCache`]
/// for sharing between sessions).
pub struct AnalysisCache {
    limits: CacheLimits,
    index: HashMap<Arc<str>, usize>,
    slab: Vec<Entry>,
    /// Most recently used.
    newest: usize,
    /// Least recently used: evicted first.
    oldest: usize,
}

impl std::fmt::Debug for AnalysisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnalysisCache")
            .field("limits", &self.limits)
            .field("entries", &self.slab.len())
            .finish()
    }
}

impl AnalysisCache {
    /// An empty cache.
    pub fn new(limits: CacheLimits) -> Self {
        AnalysisCache {
            limits,
            index: HashMap::with_capacity(limits.max_entries.min(1 << 16)),
            slab: Vec::new(),
            newest: NONE,
            oldest: NONE,
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.slab.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    /// The cached analysis of `sql`, marking it recently used.
    pub fn get(&mut self, sql: &str) -> Option<CachedAnalysis> {
        let i = *self.index.get(sql)?;
        self.touch(i);
        self.slab.get(i).map(|e| e.value.clone())
    }

    /// The analysis of `sql`, from the cache or computed (and kept).
    pub fn analyze(&mut self, sql: &str) -> CachedAnalysis {
        if let Some(hit) = self.get(sql) {
            return hit;
        }
        let value = crate::analyze(sql).map(Arc::new);
        self.insert(sql, value.clone());
        value
    }

    /// Keeps `value` for `sql`, evicting the least recently used entry when
    /// full. Texts over the length limit are not kept.
    pub fn insert(&mut self, sql: &str, value: CachedAnalysis) {
        if sql.len() > self.limits.max_text_len || self.limits.max_entries == 0 {
            return;
        }
        if let Some(&i) = self.index.get(sql) {
            if let Some(e) = self.slab.get_mut(i) {
                e.value = value;
            }
            self.touch(i);
            return;
        }
        let text: Arc<str> = Arc::from(sql);
        let i = if self.slab.len() < self.limits.max_entries {
            self.slab.push(Entry {
                text: text.clone(),
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
            let old = std::mem::replace(&mut e.text, text.clone());
            e.value = value;
            self.index.remove(&old);
            i
        };
        self.index.insert(text, i);
        self.link_newest(i);
    }

    /// Drops every entry (for example when the catalog-independent parts of
    /// the analysis change: a new version of this crate's rules).
    pub fn clear(&mut self) {
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

/// An [`AnalysisCache`] behind a mutex, shared by every session of a
/// process (statements repeat across sessions, not only within one). The
/// lock is held only for the lookup or the insertion, never while parsing.
#[derive(Debug)]
pub struct SharedAnalysisCache {
    inner: Mutex<AnalysisCache>,
}

impl SharedAnalysisCache {
    /// An empty shared cache.
    pub fn new(limits: CacheLimits) -> Self {
        SharedAnalysisCache {
            inner: Mutex::new(AnalysisCache::new(limits)),
        }
    }

    /// The analysis of `sql`, from the cache or computed (and kept).
    pub fn analyze(&self, sql: &str) -> CachedAnalysis {
        if let Some(hit) = self.lock().get(sql) {
            return hit;
        }
        let value = crate::analyze(sql).map(Arc::new);
        self.lock().insert(sql, value.clone());
        value
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
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
        let _ = cache.analyze("SELECT 1");
        let _ = cache.analyze("SELECT 2");
        assert!(cache.get("SELECT 1").is_some()); // 1 is now newer than 2
        let _ = cache.analyze("SELECT 3");
        assert_eq!(cache.len(), 2);
        assert!(cache.get("SELECT 2").is_none());
        assert!(cache.get("SELECT 1").is_some());
        assert!(cache.get("SELECT 3").is_some());
    }

    #[test]
    fn hits_share_the_analysis() {
        let mut cache = AnalysisCache::new(limits(4));
        let a = cache.analyze("SELECT 1").expect("parses");
        let b = cache.analyze("SELECT 1").expect("parses");
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
        let long = format!("SELECT {}", "1 + ".repeat(300) + "1");
        let _ = cache.analyze(&long);
        assert!(cache.is_empty());
        let mut none = AnalysisCache::new(limits(0));
        assert!(none.analyze("SELECT 1").is_ok());
        assert!(none.is_empty());
    }

    #[test]
    fn churn_keeps_links_consistent() {
        let mut cache = AnalysisCache::new(limits(8));
        for round in 0..5 {
            for i in 0..20 {
                let sql = format!("SELECT {}", (i * 7 + round) % 13);
                cache.analyze(&sql).expect("parses");
                assert!(cache.len() <= 8);
            }
        }
        // Walk the list from newest to oldest: every entry exactly once.
        let mut seen = 0;
        let mut i = cache.newest;
        while i != NONE {
            seen += 1;
            i = cache.slab[i].older;
        }
        assert_eq!(seen, cache.len());
        assert_eq!(cache.index.len(), cache.len());
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
        assert!(cache.len() <= 16);
    }
}
