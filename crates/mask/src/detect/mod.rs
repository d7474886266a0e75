//! Content detectors: what in a value looks sensitive, whatever its column.
//!
//! High-precision detectors always run: a candidate is found by a cheap
//! anchor (an `@`, a run of digits, a known token prefix, `eyJ`,
//! `-----BEGIN`, `://`, `$2`) and kept only if a validator accepts it
//! (Luhn for cards, mod-97 for IBANs, a real top-level domain for emails,
//! the issued ranges for SSNs, a decodable header for JWTs, the checksum
//! of GitHub tokens). Weak detectors (bare nine-digit numbers, national
//! phone formats, names, addresses) fire only when the column's class is
//! known and says so: then the whole value counts.
//!
//! Every detector walks the text once from left to right and looks a
//! bounded distance around each anchor, so the cost is linear in the size
//! of the value, whatever it holds.

mod digits;
mod email;
mod tokens;
mod validate;

#[cfg(test)]
mod tests;

use crate::Class;

/// One finding: `text[start..end]` looks like `class`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    pub start: usize,
    pub end: usize,
    pub class: Class,
}

/// The detector set. Build once (it compiles its prefix automaton) and
/// share; clones share the automaton.
#[derive(Debug, Clone)]
pub struct Detectors {
    tokens: tokens::Prefixes,
}

impl Default for Detectors {
    fn default() -> Self {
        Detectors::new()
    }
}

impl Detectors {
    pub fn new() -> Detectors {
        Detectors {
            tokens: tokens::Prefixes::new(),
        }
    }

    /// Every sensitive span in `text`, in order, not overlapping.
    /// `context` is the column's classification when the catalog has one
    /// (weak detectors fire only then).
    pub fn find(&self, text: &[u8], context: Option<Class>) -> Vec<Hit> {
        let mut hits = Vec::new();
        if let Some(class) = context.filter(|c| whole_value_class(*c)) {
            if text.iter().any(|b| !b.is_ascii_whitespace()) {
                hits.push(Hit {
                    start: 0,
                    end: text.len(),
                    class,
                });
                return hits;
            }
        }
        self.tokens.find(text, &mut hits);
        email::find(text, &mut hits);
        digits::find(text, context, &mut hits);
        tokens::find_iban(text, &mut hits);
        normalize(hits)
    }

    /// Whether anything in `text` looks sensitive.
    pub fn any(&self, text: &[u8], context: Option<Class>) -> bool {
        !self.find(text, context).is_empty()
    }
}

/// Classes with no reliable shape: with the column saying so, the whole
/// value is the finding.
fn whole_value_class(c: Class) -> bool {
    matches!(
        c,
        Class::PersonName
            | Class::Address
            | Class::DateOfBirth
            | Class::Password
            | Class::PasswordHash
            | Class::Token
            | Class::ApiKey
            | Class::Secret
    )
}

/// Sorted by start, overlaps merged (the earlier, longer finding wins the
/// class).
fn normalize(mut hits: Vec<Hit>) -> Vec<Hit> {
    hits.sort_by_key(|h| (h.start, std::cmp::Reverse(h.end)));
    let mut out: Vec<Hit> = Vec::with_capacity(hits.len());
    for h in hits {
        match out.last_mut() {
            Some(last) if h.start < last.end => last.end = last.end.max(h.end),
            _ => out.push(h),
        }
    }
    out
}

/// For fuzzing: `find` never panics, and its hits are in order, within
/// bounds and disjoint.
pub fn exercise(detectors: &Detectors, data: &[u8]) {
    for context in [None, Some(Class::NationalId), Some(Class::Phone)] {
        let hits = detectors.find(data, context);
        let mut at = 0;
        for h in &hits {
            assert!(
                h.start >= at && h.start < h.end && h.end <= data.len(),
                "{hits:?}"
            );
            at = h.end;
        }
    }
}
