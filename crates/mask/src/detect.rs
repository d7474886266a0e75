//! Content detectors: what in a value looks sensitive, whatever its column.
//!
//! PLACEHOLDER API (replaced by the detectors work): `Detectors::find`
//! returns the byte ranges of sensitive content in a value.

use crate::Class;

/// One finding: `text[start..end]` looks like `class`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    pub start: usize,
    pub end: usize,
    pub class: Class,
}

/// The detector set. Build once (it compiles its automata) and share.
#[derive(Debug, Default, Clone)]
pub struct Detectors {}

impl Detectors {
    pub fn new() -> Detectors {
        Detectors {}
    }

    /// Every sensitive span in `text`, in order, not overlapping.
    /// `context` is the column's classification when the catalog has one
    /// (weak detectors fire only then).
    pub fn find(&self, text: &[u8], context: Option<Class>) -> Vec<Hit> {
        let _ = (text, context);
        Vec::new()
    }
}
