//! Which analyses depend on the value of a constant.
//!
//! The shape cache ([`crate::shape`]) reuses an analysis for texts that
//! differ only in their literals, so it must know whether the analysis
//! looked at one. Every read of an `A_Const` value in this crate goes
//! through [`value`] (or calls [`note_read`] where it compares constants
//! without taking the value out); [`tracking`] tells whether any happened
//! while it ran. A test below keeps the rule: no other module matches on
//! a constant's value.
//!
//! The flag is thread-local because an analysis runs start to finish on
//! one thread without yielding; passing it through every walker function
//! would touch every signature for one bit.

use std::cell::Cell;

use pg_query::protobuf::AConst;

/// A constant's value, as the parse tree holds it.
pub(crate) use pg_query::protobuf::a_const::Val as ConstValue;

thread_local! {
    static READ: Cell<bool> = const { Cell::new(false) };
}

/// The value of a non-NULL constant, recording that the analysis depends
/// on it. (NULL is a keyword, part of the shape, so `isnull` may be read
/// freely.)
pub(crate) fn value(c: &AConst) -> Option<&ConstValue> {
    note_read();
    c.val.as_ref()
}

/// Records that the analysis depends on the value of some constant.
pub(crate) fn note_read() {
    READ.with(|r| r.set(true));
}

/// Runs `f` and tells whether it read a constant's value.
pub(crate) fn tracking<T>(f: impl FnOnce() -> T) -> (T, bool) {
    let outer = READ.with(|r| r.replace(false));
    let out = f();
    let read = READ.with(|r| r.replace(outer));
    (out, read)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_seen_and_nest() {
        let c = AConst::default();
        let ((_, inner), outer) = tracking(|| tracking(|| value(&c).is_none()));
        assert!(inner);
        assert!(!outer, "the inner tracking took its read");
        assert!(!tracking(|| 1).1);
    }

    /// The shape cache is sound only if every read of a constant's value
    /// is recorded: no module but this one may take a value out of an
    /// `A_Const` (the parse-tree reader, which builds them, excepted).
    #[test]
    fn only_this_module_reads_constant_values() {
        let src = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
        let mut offenders = Vec::new();
        let mut dirs = vec![std::path::PathBuf::from(src)];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("src dir") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    if !path.ends_with("parse") {
                        dirs.push(path);
                    }
                    continue;
                }
                if path.ends_with("literal.rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).expect("source");
                for (n, line) in text.lines().enumerate() {
                    if line.contains("a_const::Val")
                        || line.contains(".val.as_ref()")
                        || line.contains(".val ==")
                    {
                        offenders.push(format!("{}:{}", path.display(), n + 1));
                    }
                }
            }
        }
        assert!(
            offenders.is_empty(),
            "constant values read without literal::value: {offenders:?}"
        );
    }
}
