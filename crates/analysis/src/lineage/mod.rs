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
//! like any other (the catalog layer expands them). The only constant read
//! is an output position in ORDER BY / GROUP BY / DISTINCT ON (through
//! [`crate::literal`], so an analysis that read one stands for its own text
//! only, never for other texts of its shape: see [`crate::shape`]).
//!
//! # Passed through or computed
//!
//! A plain column reference passes its column's value through unchanged,
//! also through sub-queries, CTEs, set operations and `USING` columns:
//! masking can give it that column's class and strategy. Any expression,
//! a scalar sub-query, a function in FROM and a whole-row reference
//! computes a value ([`Lineage::From`]'s `computed`), which masking hides
//! whole, or refuses under strict masking.
//!
//! # Row choice
//!
//! The same pass collects the columns a statement chooses, groups or
//! orders rows by ([`crate::StatementFacts::row_choice`]), the clauses
//! that are not sources below: inference, which masking may flag or
//! refuse.
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
//! what they reveal (`count(*) ... WHERE ssn LIKE '1%'`) is inference,
//! collected apart as row choice.
//!
//! # Written values
//!
//! The same pass says where each value a statement writes comes from
//! ([`crate::StatementFacts::writes`]): the columns of INSERT (a column
//! list, or the relation's columns in order) and its VALUES rows or query,
//! UPDATE's SET (also `SET (a, b) = (SELECT ...)` and `= ROW(...)`), ON
//! CONFLICT DO UPDATE's SET (`EXCLUDED.x` is the row proposed for
//! insertion: the value inserted into `x`, or any of them when that
//! cannot be told), MERGE's UPDATE SET and INSERT, the output columns of
//! CREATE TABLE AS, SELECT INTO and CREATE MATERIALIZED VIEW (into a new
//! relation), and ALTER TABLE ... ALTER COLUMN ... TYPE ... USING, at any
//! depth (data-modifying CTEs, the bodies of PREPARE and EXPLAIN). A
//! value's sources are those of an output column; what chooses the rows
//! written (WHERE, ON CONFLICT's WHERE, MERGE's ON) is row choice, not a
//! source. DEFAULT is no source: a column default, like a trigger or a
//! generated column, is the table's own definition, not the statement's.
//! Masking uses it to refuse values of masked columns written where they
//! would not be masked (`UPDATE customers SET note = ssn`).
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
mod writes;
#[cfg(test)]
mod writes_tests;

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
    /// `count(*)`), sorted and without duplicates.
    From {
        sources: Vec<Source>,
        /// The value is computed from them (any expression, a whole row)
        /// rather than one of them passed through unchanged (a plain
        /// column reference, also through sub-queries, CTEs, set
        /// operations and `USING` columns). Masking gives a passed-through
        /// value its column's class; a computed one is masked whole.
        computed: bool,
    },
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
    pub const NONE: Lineage = Lineage::From {
        sources: Vec::new(),
        computed: false,
    };

    /// One source: passed through when it is a column, computed from a
    /// whole row.
    pub(crate) fn of(source: Source) -> Lineage {
        let computed = matches!(source, Source::WholeRow { .. });
        Lineage::From {
            sources: vec![source],
            computed,
        }
    }

    /// The sources, or `None` for [`Lineage::Unknown`].
    pub fn sources(&self) -> Option<&[Source]> {
        match self {
            Lineage::From { sources, .. } => Some(sources),
            Lineage::Unknown => None,
        }
    }

    /// Whether the value is one of its source columns, unchanged: known
    /// sources, not computed, none of them a whole row.
    pub fn passes_through(&self) -> bool {
        match self {
            Lineage::From { sources, computed } => {
                !computed && sources.iter().all(|s| matches!(s, Source::Column { .. }))
            }
            Lineage::Unknown => false,
        }
    }

    #[cfg(test)]
    pub(crate) fn add(&mut self, source: Source) {
        if let Lineage::From { sources, computed } = self {
            *computed |= matches!(source, Source::WholeRow { .. });
            if let Err(at) = sources.binary_search(&source) {
                sources.insert(at, source);
            }
        }
    }

    /// Marks the value as computed from its sources (an expression over
    /// them).
    pub(crate) fn computed(mut self) -> Lineage {
        if let Lineage::From { computed, .. } = &mut self {
            *computed = true;
        }
        self
    }

    /// Adds every source of `other` (the value may be either's: computed
    /// when either is); [`Lineage::Unknown`] absorbs.
    pub(crate) fn union(&mut self, other: &Lineage) {
        match (&mut *self, other) {
            (Lineage::Unknown, _) => {}
            (_, Lineage::Unknown) => *self = Lineage::Unknown,
            (
                Lineage::From {
                    sources: mine,
                    computed,
                },
                Lineage::From {
                    sources: theirs,
                    computed: theirs_computed,
                },
            ) => {
                *computed |= *theirs_computed;
                if theirs.len() <= 4 {
                    for s in theirs {
                        if let Err(at) = mine.binary_search(s) {
                            mine.insert(at, s.clone());
                        }
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

/// Values a statement writes into columns of one relation (see the
/// module documentation, *Written values*).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Assignment {
    /// The relation written, as written (not yet schema-qualified).
    pub relation: QualifiedName,
    /// Which of its columns receive `values`, in order.
    pub columns: AssignedColumns,
    /// The values written, one per column (a `*` in an INSERT's query
    /// stands for as many as its relation has); [`Output::Unknown`] when
    /// they cannot be told apart: any column may receive any of them.
    pub values: Output,
}

/// The columns an [`Assignment`] writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "names", rename_all = "snake_case")]
pub enum AssignedColumns {
    /// These columns, in order: an INSERT's column list, SET targets (a
    /// field or element of a column, `SET a[1] = x`, writes the column).
    /// Empty for `INSERT ... DEFAULT VALUES`.
    Named(Vec<String>),
    /// The relation's columns in the catalog's order (INSERT without a
    /// column list).
    InOrder,
    /// A relation the statement creates (CREATE TABLE AS, SELECT INTO,
    /// CREATE MATERIALIZED VIEW): no column of it is classified yet.
    Created,
}

/// What the pass finds in one top-level statement.
pub(crate) struct Found {
    /// The result set it returns; `None` when it returns no rows.
    pub output: Option<Output>,
    /// For PREPARE: the result set its body returns when executed.
    pub prepared_output: Option<Output>,
    /// The columns it chooses, groups or orders rows by (see
    /// [`crate::StatementFacts::row_choice`]).
    pub row_choice: Lineage,
    /// The values it writes (see [`crate::StatementFacts::writes`]).
    pub writes: Vec<Assignment>,
}

pub(crate) fn analyse(stmt: NodeRef<'_>) -> Found {
    query::statement(stmt)
}
