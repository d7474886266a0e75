//! Statement analysis: what a SQL string will make PostgreSQL do.
//!
//! The proxy calls [`analyze`] (through a cache, [`SharedAnalysisCache`])
//! for every Query and Parse message, and the policy judges the
//! [`StatementFacts`] of each statement. Nothing here does I/O: the two
//! questions only the database can answer, which functions are read-only
//! and which relations a name reaches, are asked through the
//! [`FunctionCatalog`] and [`RelationCatalog`] traits that the proxy
//! implements.
//!
//! How it works: the text is parsed by libpg_query (PostgreSQL 18's own
//! grammar, via the `pg_query` crate), so comments, case, quoting, Unicode
//! escapes and dollar quoting are resolved exactly as the server resolves
//! them; a string that does not parse is an error, which the proxy turns
//! into a refusal (fail closed). Then the whole tree of each statement is
//! walked (`walk`), and facts are classified by node type (`classify`),
//! name tables (`capabilities`, `functions`) and a symbolic evaluation of
//! WHERE clauses (`where_clause`). Names are qualified per session by
//! [`resolve`].
//!
//! ```
//! use portcullis_analysis::{analyze, ActionKind, Filter, StatementClass};
//!
//! let analysis = analyze("/* hi */ DELETE FROM orders WHERE 1 = 1; SELECT 'DROP TABLE x'").unwrap();
//! assert_eq!(analysis.statement_count(), 2);
//! let delete = &analysis.statements[0];
//! assert_eq!(delete.class, StatementClass::Delete);
//! assert!(matches!(delete.actions[0].kind, ActionKind::Delete { filter: Filter::Tautology, .. }));
//! assert_eq!(analysis.statements[1].class, StatementClass::Select);
//! ```
//!
//! Limits, by design: bodies of functions, DO blocks and procedures are
//! opaque (reported, not analysed); user-defined operators, casts and type
//! input functions are beyond what the tree shows (unknown operators are
//! reported as opaque, casts are not).
//!
//! Depth: a statement nested too deeply is refused as
//! [`AnalysisError::TooDeep`], never a stack overflow. The parse tree may nest
//! 2,000 JSON objects as libpg_query writes it (`parse::json`) and 1,000
//! nodes on any path of the walk (`walk`): up to about 995 chained operators
//! (`a || b || ...`, `1 + 2 + ...`), casts, calls, `ARRAY[`/`ROW(`, `NOT`s,
//! parenthesised `AND`/`OR` levels or `UNION`s, about 490 nested `CASE`s and
//! 330 nested scalar sub-queries. Redundant parentheses add no depth; the
//! grammar's own parser stack stops them at about 10,000. Measured on the
//! deepest accepted statement of each kind, the analysis needs at most
//! 0.7 MiB of free stack in a release build and 1.65 MiB unoptimised, so it
//! fits the 2 MiB stack of a tokio worker thread (the tests run it on one);
//! a thread with much less stack must not call [`analyze`]. libpg_query
//! guards its own recursion: it sizes its limit to the calling thread's
//! remaining stack and refuses beyond it.

pub mod audit_text;
pub mod cache;
pub mod capabilities;
mod classify;
mod database;
pub mod dry_run;
mod error;
pub mod facts;
pub mod functions;
pub mod fuzzing;
pub mod lineage;
mod literal;
pub mod locks;
mod parse;
pub mod resolve;
pub mod shape;
mod walk;
pub mod where_clause;

use pg_query::protobuf::RawStmt;

pub use cache::{AnalysisCache, CacheLimits, CachedAnalysis, Found, SharedAnalysisCache};
pub use error::AnalysisError;
pub use facts::*;
pub use functions::{FunctionCatalog, FunctionSafety, Volatility};
pub use lineage::{AssignedColumns, Assignment, Lineage, Output, OutputItem, Source};
pub use resolve::{RelationCatalog, Resolver};

/// Analyses a statement string: one [`StatementFacts`] per statement, in
/// order. Fails if any statement fails to parse or analyse; the proxy must
/// then refuse the whole string (no part of it may run).
pub fn analyze(sql: &str) -> Result<Analysis, AnalysisError> {
    analyze_traced(sql).map(|t| t.analysis)
}

/// An analysis with what the shape cache needs to decide whether it may
/// stand for other texts of the same shape.
pub(crate) struct Traced {
    pub analysis: Analysis,
    /// See [`parse::Parsed::a_const_locations`].
    pub a_const_locations: Vec<usize>,
    /// Whether the analysis read the value of any constant.
    pub values_read: bool,
}

pub(crate) fn analyze_traced(sql: &str) -> Result<Traced, AnalysisError> {
    let parsed = parse::parse_traced(sql)?;
    let tree = &parsed.tree;
    let (statements, values_read) = literal::tracking(|| {
        let mut statements = Vec::with_capacity(tree.stmts.len());
        for raw in &tree.stmts {
            let Some(stmt) = raw.stmt.as_deref().and_then(|n| n.node.as_ref()) else {
                return Err(AnalysisError::Internal("a statement without a parse tree"));
            };
            let mut facts = walk::analyze_statement(stmt.to_ref(), span(raw, sql.len()))?;
            // After the walk, which refuses trees too deep to visit: the
            // lineage pass recurses over the same tree.
            let found = lineage::analyse(stmt.to_ref());
            facts.output = found.output;
            facts.prepared_output = found.prepared_output;
            facts.row_choice = found.row_choice;
            facts.writes = found.writes;
            database::add_database_facts(stmt, &mut facts);
            statements.push(facts);
        }
        Ok(statements)
    });
    Ok(Traced {
        analysis: Analysis {
            statements: statements?,
            audit: Default::default(),
        },
        a_const_locations: parsed.a_const_locations,
        values_read,
    })
}

/// The statement's byte range; a length of 0 means "to the end".
fn span(raw: &RawStmt, text_len: usize) -> std::ops::Range<usize> {
    let start = usize::try_from(raw.stmt_location)
        .unwrap_or(0)
        .min(text_len);
    let end = match usize::try_from(raw.stmt_len) {
        Ok(0) | Err(_) => text_len,
        Ok(len) => start.saturating_add(len).min(text_len),
    };
    start..end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_cover_each_statement() {
        let sql = "SELECT 1;  /* c */ DELETE FROM t ;SELECT 3";
        let analysis = analyze(sql).expect("parses");
        let texts: Vec<&str> = analysis
            .statements
            .iter()
            .map(|s| &sql[s.span.clone()])
            .collect();
        assert_eq!(texts, ["SELECT 1", "DELETE FROM t ", "SELECT 3"]);
    }

    #[test]
    fn the_class_is_the_top_statement_and_its_action_comes_first() {
        let analysis =
            analyze("WITH d AS (DELETE FROM t RETURNING id) INSERT INTO log SELECT id FROM d")
                .expect("parses");
        let s = &analysis.statements[0];
        assert_eq!(s.class, StatementClass::Insert);
        let classes: Vec<StatementClass> = s.actions.iter().map(|a| a.kind.class()).collect();
        // The INSERT's source query is not an action of its own: what it
        // reads is in `relations`.
        assert_eq!(classes, [StatementClass::Insert, StatementClass::Delete]);
    }

    #[test]
    fn a_failure_anywhere_refuses_the_whole_string() {
        assert!(matches!(
            analyze("SELECT 1; DELETE FROM; SELECT 2"),
            Err(AnalysisError::Syntax { .. })
        ));
    }
}
