//! What sampled values of one column say, as counts, and what that makes
//! of the column. Pure: no I/O.
//!
//! A tally keeps numbers only, never a value or a part of one, so nothing
//! built from it (the reviewable file, messages) can carry sampled data.

use portcullis_mask::{Class, Detectors};

/// Counts over one column's sampled values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Non-null values scanned.
    pub values: u64,
    /// Non-null values left unscanned because they were over the size cap.
    pub oversized: u64,
    /// Per class (in [`Class::ALL`] order): values with at least one
    /// finding of that class.
    hits: [u64; Class::ALL.len()],
}

/// The class found in the most values, how many, and the share of the
/// values scanned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evidence {
    pub class: Class,
    pub hits: u64,
    pub values: u64,
}

impl Evidence {
    pub fn share(&self) -> f64 {
        if self.values == 0 {
            0.0
        } else {
            self.hits as f64 / self.values as f64
        }
    }
}

impl Tally {
    /// Scans one value with the strong detectors only: weak shapes (bare
    /// digits, names) need a column class to mean anything, and finding
    /// that class is the point.
    pub fn scan(&mut self, detectors: &Detectors, value: &str) {
        self.values += 1;
        let mut seen = [false; Class::ALL.len()];
        for hit in detectors.find(value.as_bytes(), None) {
            seen[index(hit.class)] = true;
        }
        for (count, seen) in self.hits.iter_mut().zip(seen) {
            *count += u64::from(seen);
        }
    }

    /// The class found in the most values (the first in [`Class::ALL`]
    /// order on a tie, so the result does not depend on the sample's
    /// order), or `None` when nothing was found.
    pub fn dominant(&self) -> Option<Evidence> {
        let (i, &hits) = self
            .hits
            .iter()
            .enumerate()
            .rev()
            .max_by_key(|(_, h)| **h)?;
        (hits > 0).then(|| Evidence {
            class: Class::ALL[i],
            hits,
            values: self.values,
        })
    }
}

fn index(class: Class) -> usize {
    Class::ALL
        .iter()
        .position(|c| *c == class)
        .unwrap_or_default()
}

/// What the catalog and the configuration already say about a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// Nothing: a proposal may be made.
    Unclassified,
    Classified(Class, Basis),
    /// Someone said it is not sensitive.
    NotSensitive(Basis),
}

/// Who said so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// A `[[masking.column]]` entry (or an included one).
    Configuration,
    /// The built-in dictionary, from the column's name or comment (or its
    /// parent table's column).
    Catalog,
}

/// What the reviewable file says about one column.
#[derive(Debug, Clone, PartialEq)]
pub enum Finding {
    /// Unclassified, and one class was found in at least the minimum share
    /// of its values: proposed as an entry.
    Propose(Evidence),
    /// Unclassified; something was found, in fewer values than the minimum
    /// share.
    Below(Evidence),
    /// Already classified; `content` is what the values say when one class
    /// reached the minimum share.
    Classified {
        class: Class,
        basis: Basis,
        content: Option<Evidence>,
    },
    /// Declared not sensitive; `content` as above.
    NotSensitive {
        basis: Basis,
        content: Option<Evidence>,
    },
    /// Unclassified and nothing found (or no values): not worth a line.
    Clean,
}

impl Finding {
    /// Judges a column. `min_share` is in 0..=1.
    pub fn of(known: Known, tally: &Tally, min_share: f64) -> Finding {
        let dominant = tally.dominant();
        let strong = dominant.filter(|e| e.share() >= min_share);
        match known {
            Known::Classified(class, basis) => Finding::Classified {
                class,
                basis,
                content: strong,
            },
            Known::NotSensitive(basis) => Finding::NotSensitive {
                basis,
                content: strong,
            },
            Known::Unclassified => match (strong, dominant) {
                (Some(e), _) => Finding::Propose(e),
                (None, Some(e)) => Finding::Below(e),
                (None, None) => Finding::Clean,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(values: &[&str]) -> Tally {
        let detectors = Detectors::new();
        let mut t = Tally::default();
        for v in values {
            t.scan(&detectors, v);
        }
        t
    }

    #[test]
    fn counts_values_not_findings() {
        // Two emails in one value count once.
        let t = tally(&[
            "a.b@example.com, c.d@example.org",
            "nothing here",
            "x@example.net",
        ]);
        let e = t.dominant().unwrap();
        assert_eq!((e.class, e.hits, e.values), (Class::Email, 2, 3));
        assert!((e.share() - 2.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn weak_shapes_alone_are_not_evidence() {
        // Nine bare digits and a name need a column class to count.
        let t = tally(&["123456789", "Alice Smithson", "order 42"]);
        assert_eq!(t.dominant(), None);
        assert_eq!(Finding::of(Known::Unclassified, &t, 0.5), Finding::Clean);
        assert_eq!(
            Finding::of(Known::Unclassified, &Tally::default(), 0.5),
            Finding::Clean
        );
    }

    #[test]
    fn proposes_at_the_minimum_share_and_not_below() {
        let t = tally(&["4539148803436467", "5375123456789011", "n/a", "-"]);
        match Finding::of(Known::Unclassified, &t, 0.5) {
            Finding::Propose(e) => assert_eq!((e.class, e.hits, e.values), (Class::Card, 2, 4)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Finding::of(Known::Unclassified, &t, 0.75),
            Finding::Below(e) if e.class == Class::Card
        ));
    }

    #[test]
    fn classified_columns_are_never_proposed_but_show_what_content_says() {
        let t = tally(&["536-22-8174", "078-05-1120"]);
        assert_eq!(
            Finding::of(Known::Classified(Class::Email, Basis::Catalog), &t, 0.5),
            Finding::Classified {
                class: Class::Email,
                basis: Basis::Catalog,
                content: t.dominant(),
            }
        );
        assert_eq!(
            Finding::of(Known::NotSensitive(Basis::Configuration), &t, 0.5),
            Finding::NotSensitive {
                basis: Basis::Configuration,
                content: t.dominant(),
            }
        );
        assert_eq!(t.dominant().unwrap().class, Class::NationalId);
    }

    #[test]
    fn ties_go_to_the_first_class_whatever_the_order() {
        let a = tally(&["x@example.com", "4539148803436467"]);
        let b = tally(&["4539148803436467", "x@example.com"]);
        assert_eq!(a.dominant().unwrap().class, Class::Email);
        assert_eq!(b.dominant().unwrap().class, Class::Email);
    }
}
