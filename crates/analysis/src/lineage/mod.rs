//! Output-column lineage: for each column of the result set a statement
//! returns, the source columns its value is computed from.
//!
//! Dynamic data masking needs it for computed columns. For a plain column
//! reference the server's RowDescription already names the table and column
//! (and follows sub-queries and CTEs to get there); for `reverse(email)`,
//! `ssn::text`, `row_to_json(c)` or `(SELECT email FROM customers LIMIT 1)`
//! it says nothing (table OID 0), and a value derived from a protected
//! column must still be masked.
//!
//! Everything comes from the parse tree alone, in one pass after the walk,
//! so names stay as written: a relation is the name in the FROM item (an
//! alias resolved to it), not yet schema-qualified, and views are relations
//! like any other (the catalog layer expands them). Nothing here reads a
//! constant's value, so an analysis reused for texts of the same shape (see
//! [`crate::shape`]) carries the right lineage for all of them.
//!
//! # What counts as a source
//!
//! Every column an output expression mentions, anywhere inside it: operands,
//! function and aggregate arguments, `CASE` conditions, `FILTER (WHERE ...)`,
//! an aggregate's `ORDER BY`, a window's `PARTITION BY` / `ORDER BY`
//! (`rank() OVER (ORDER BY salary)` is computed from salaries), the output
//! column of a scalar or `ARRAY(...)` sub-query and the columns compared by
//! `IN` / `ANY` / `ALL`. Columns of CTEs and sub-queries are followed back
//! to their own sources. Clauses of the query that choose rows without
//! computing values (WHERE, JOIN ... ON, GROUP BY, HAVING, ORDER BY, LIMIT,
//! DISTINCT ON) are not sources, and neither is the sub-query of `EXISTS`:
//! what they reveal (`count(*) ... WHERE ssn LIKE '1%'`) is inference, out
//! of this module's scope.
//!
//! # Conservative rules
//!
//! Over-approximating is safe (a value is masked that need not be);
//! under-approximating is a security bug. So:
//!
//! - **Unknown**: a call to a function that is not a known built-in (not in
//!   the built-in table, or qualified with a schema other than pg_catalog),
//!   a built-in that runs SQL given as text (`query_to_xml`), an operator
//!   that is not built in, a reference to a FROM item that cannot be found,
//!   a function in FROM that is not a built-in, expressions nested deeper
//!   than [`MAX_DEPTH`] or past [`MAX_WORK`]. The built-in table is trusted as the rest of the
//!   crate trusts it: when pg_catalog is searched first. A consumer must
//!   treat the whole output as unknown when [`StatementFacts::is_opaque`]
//!   is true for the session's search_path.
//! - **Unqualified column names** (`email`, not `c.email`) are attributed to
//!   every FROM item that may have that column: every relation of the
//!   innermost query level (the catalog would tell which one has it), and
//!   every sub-query or CTE whose output may be named so. When no item of
//!   that level is certain to have it (relations never are, without the
//!   catalog), the enclosing query levels are candidates too, since
//!   PostgreSQL would look there next (a correlated reference). A bare name
//!   that is also the name of a FROM item (`SELECT c FROM customers c`) is
//!   taken as both that column and the item's whole row.
//! - **Column names of derived rows** are only relied upon when PostgreSQL's
//!   naming is certain: an alias, a plain column reference's name, a
//!   function's name, `columnN` of VALUES, CTE and FROM column-alias lists.
//!   Any other output column may be the one a name refers to.
//! - **`*` expansion** that cannot be written as columns and
//!   [`OutputItem::AllColumnsOf`] (a NATURAL join without the catalog, a
//!   function in FROM whose row type is unknown, set operations over `*`
//!   whose positions cannot be matched) makes the whole output
//!   [`Output::Unknown`].
//!
//! Known limits, shared with the rest of the crate: a user-defined cast,
//! type input function or overload of a built-in name may run code that
//! reads other tables; the tree does not show it.
//!
//! [`StatementFacts::is_opaque`]: crate::StatementFacts::is_opaque

mod columns;
mod expr;
mod query;
mod scope;
#[cfg(test)]
mod tests;

use pg_query::NodeRef;
use serde::Serialize;

use crate::facts::QualifiedName;

/// Deeper than this (expressions and queries nested in each other), the
/// lineage is [`Lineage::Unknown`]. The walk has already refused trees
/// deeper than its own limit; this one is lower so that the pass needs
/// little stack.
pub const MAX_DEPTH: usize = 256;

/// Beyond this many nodes visited for one statement, the rest is
/// [`Lineage::Unknown`]. Far above any real statement; it bounds what nested
/// recursive CTEs (each re-evaluated until a fixpoint) could cost.
pub const MAX_WORK: usize = 200_000;

/// The result set a statement returns, column by column, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "items", rename_all = "snake_case")]
pub enum Output {
    /// The columns, in order. An [`OutputItem::AllColumnsOf`] stands for
    /// as many columns as its relation has.
    Columns(Vec<OutputItem>),
    /// A result set whose columns cannot be described from the text alone:
    /// FETCH, EXECUTE, EXPLAIN, CALL, or a `*` that cannot be expanded
    /// here. Every value may come from anything the statement reads.
    Unknown,
}

impl Output {
    /// The items, or `None` for [`Output::Unknown`].
    pub fn items(&self) -> Option<&[OutputItem]> {
        match self {
            Output::Columns(items) => Some(items),
            Output::Unknown => None,
        }
    }
}

/// One or several output columns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputItem {
    /// One output column.
    Column(Lineage),
    /// `*` or `alias.*` over a relation as written: with the catalog, that
    /// relation's columns in order, each a direct reference to itself,
    /// leaving out those in `except` (merged into an earlier column by
    /// `JOIN ... USING`).
    AllColumnsOf {
        /// The relation, as written in its FROM item.
        relation: QualifiedName,
        /// Columns not included here.
        except: Vec<String>,
    },
}

/// Where one output column's value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Lineage {
    /// Computed from exactly these sources (none for constants, `now()`,
    /// `count(*)`). Sorted, without duplicates.
    From(Vec<Source>),
    /// Cannot be established: treat as possibly derived from anything.
    Unknown,
}

/// A source of an output value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A column of a relation: the relation as written in its FROM item
    /// (aliases resolved), the column name as written.
    Column {
        /// The relation.
        relation: QualifiedName,
        /// The column.
        column: String,
    },
    /// Every column of a relation: a whole-row reference (`row_to_json(c)`,
    /// `c::text`, `ROW(c.*)`), or a column of it that cannot be told apart
    /// from the others (renamed by a column-alias list).
    WholeRow {
        /// The relation.
        relation: QualifiedName,
    },
}

impl Lineage {
    /// No sources.
    pub(crate) const NONE: Lineage = Lineage::From(Vec::new());

    pub(crate) fn of(source: Source) -> Lineage {
        Lineage::From(vec![source])
    }

    pub(crate) fn add(&mut self, source: Source) {
        if let Lineage::From(sources) = self {
            if let Err(at) = sources.binary_search(&source) {
                sources.insert(at, source);
            }
        }
    }

    /// Adds every source of `other`; [`Lineage::Unknown`] absorbs.
    pub(crate) fn union(&mut self, other: &Lineage) {
        match (&mut *self, other) {
            (Lineage::Unknown, _) => {}
            (_, Lineage::Unknown) => *self = Lineage::Unknown,
            (Lineage::From(mine), Lineage::From(theirs)) => {
                if theirs.len() <= 4 {
                    for s in theirs {
                        self.add(s.clone());
                    }
                } else {
                    // Sorting once beats shifting on every insertion (a
                    // whole row of a wide sub-query).
                    mine.extend(theirs.iter().cloned());
                    mine.sort_unstable();
                    mine.dedup();
                }
            }
        }
    }

    /// Whether nothing can be added any more.
    pub(crate) fn is_unknown(&self) -> bool {
        matches!(self, Lineage::Unknown)
    }
}

/// The output of one top-level statement; `None` when it returns no rows.
pub(crate) fn output(stmt: NodeRef<'_>) -> Option<Output> {
    query::statement_output(stmt)
}
