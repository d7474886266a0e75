//! A dry run of a data change, for the people asked to approve it: how
//! many rows it would change, found without changing any.
//!
//! [`plan`] turns an UPDATE, DELETE or INSERT into a query that *selects*
//! what the change would touch: the target's rows that its WHERE (and its
//! FROM / USING list) choose, or the rows an INSERT's SELECT produces.
//! The proxy runs that query in a read-only transaction on a connection
//! of its own (see the proxy's `dry_run.rs`), and counts.
//!
//! Why not run the change itself and roll it back? Because running it is
//! not free of effects: triggers and functions may reach outside the
//! transaction (sequences, dblink, advisory locks, other sessions), the
//! change takes row locks that block production traffic for as long as it
//! runs, and it writes WAL and dead tuples. The rewrite never evaluates
//! the SET list, RETURNING, defaults, constraints or triggers; what it does
//! evaluate (WHERE, FROM, the INSERT's SELECT) must first pass the checks
//! the proxy makes with the server (only pg_catalog functions that are not
//! volatile, plain tables without row security, built-in types).
//!
//! Pure: text in, text out, nothing run.

use pg_query::protobuf::{self as pb, node::Node as NodeEnum, Node};
use pg_query::NodeRef;

use crate::facts::QualifiedName;
use crate::walk::children::for_each_child;
use crate::walk::{node_of, range_var_name, strings};
use crate::AnalysisError;

/// The change a dry run describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Update,
    Delete,
    Insert,
    /// INSERT ... ON CONFLICT DO UPDATE: each row inserted or updated.
    Upsert,
}

impl ChangeKind {
    /// The verb for "would ... N rows".
    pub fn verb(self) -> &'static str {
        match self {
            ChangeKind::Update => "update",
            ChangeKind::Delete => "delete",
            ChangeKind::Insert => "insert",
            ChangeKind::Upsert => "insert or update",
        }
    }

    /// Whether it adds rows (`into` its table, not `of` it).
    pub fn adds(self) -> bool {
        matches!(self, ChangeKind::Insert | ChangeKind::Upsert)
    }
}

/// How to learn what a change touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DryRunPlan {
    pub kind: ChangeKind,
    /// The changed relation, as written.
    pub relation: QualifiedName,
    /// Rows known from the text alone (`INSERT ... VALUES` lists, `DEFAULT
    /// VALUES`): nothing to run.
    pub known_rows: Option<u64>,
    /// One row, one `bigint`: how many rows the change would touch. The
    /// statement's own parameters (`$1`...) keep their numbers.
    pub count_sql: String,
    /// The rows themselves (for the planner's estimate, with `EXPLAIN`).
    pub rows_sql: String,
    /// The count is an upper bound (`ON CONFLICT` may skip or update
    /// rows instead; an UPDATE's join counts each target row once, but the
    /// estimate counts join rows).
    pub at_most: bool,
    /// Every type named in the query (casts, `ROW(...)::t`): the server
    /// must vouch for each before it runs.
    pub type_names: Vec<QualifiedName>,
    /// The parameters the query uses (`$n`), in no particular order; the
    /// statement's others (an UPDATE's SET list) it does not.
    pub params: Vec<i32>,
    /// Names written after a dot (`t.f`, `(row).f`): PostgreSQL calls a
    /// function `f(t)` when `t` has no column `f`.
    pub attributes: Vec<String>,
}

/// Why a statement gets no dry run; shown to approvers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoDryRun {
    #[error("only a single UPDATE, DELETE or INSERT gets a dry run")]
    NotOneChange,
    #[error("it changes data in a WITH clause too")]
    WritesInWith,
    #[error("it changes the row a cursor is on (WHERE CURRENT OF)")]
    CurrentOf,
    #[error("it samples a table (TABLESAMPLE)")]
    Sample,
    #[error("a WITH query has the changed table's name")]
    ShadowedTarget,
    #[error("the statement could not be rewritten: {0}")]
    Unreadable(String),
}

impl From<AnalysisError> for NoDryRun {
    fn from(e: AnalysisError) -> Self {
        NoDryRun::Unreadable(e.to_string())
    }
}

/// Plans the dry run of `sql`, a single data change.
pub fn plan(sql: &str) -> Result<DryRunPlan, NoDryRun> {
    let tree = crate::parse::parse_traced(sql)?.tree;
    let [raw] = tree.stmts.as_slice() else {
        return Err(NoDryRun::NotOneChange);
    };
    let Some(stmt) = raw.stmt.as_deref().and_then(|n| n.node.as_ref()) else {
        return Err(NoDryRun::NotOneChange);
    };
    let (kind, relation, rows, known_rows, at_most) = match stmt {
        NodeEnum::UpdateStmt(u) => chosen(
            ChangeKind::Update,
            u.relation.as_ref(),
            &u.from_clause,
            u.where_clause.as_deref(),
            u.with_clause.as_ref(),
        )?,
        NodeEnum::DeleteStmt(d) => chosen(
            ChangeKind::Delete,
            d.relation.as_ref(),
            &d.using_clause,
            d.where_clause.as_deref(),
            d.with_clause.as_ref(),
        )?,
        NodeEnum::InsertStmt(i) => {
            let target = i.relation.as_ref().ok_or(NoDryRun::NotOneChange)?;
            only_reads(i.with_clause.as_ref())?;
            let at_most = i.on_conflict_clause.is_some();
            let upserts = i
                .on_conflict_clause
                .as_ref()
                .is_some_and(|c| c.action == pb::OnConflictAction::OnconflictUpdate as i32);
            let kind = if upserts {
                ChangeKind::Upsert
            } else {
                ChangeKind::Insert
            };
            let name = range_var_name(target);
            match i.select_stmt.as_deref().and_then(|n| n.node.as_ref()) {
                // DEFAULT VALUES: one row.
                None => {
                    return Ok(DryRunPlan {
                        kind,
                        relation: name,
                        known_rows: Some(1),
                        count_sql:
                            "SELECT pg_catalog.count(*) FROM (SELECT 1) AS portcullis_dry_run"
                                .into(),
                        rows_sql: "SELECT 1".into(),
                        at_most,
                        type_names: Vec::new(),
                        params: Vec::new(),
                        attributes: Vec::new(),
                    })
                }
                Some(NodeEnum::SelectStmt(s)) => {
                    let mut s = (**s).clone();
                    let plain_values = !s.values_lists.is_empty()
                        && s.with_clause.is_none()
                        && i.with_clause.is_none();
                    let known = plain_values.then_some(s.values_lists.len() as u64);
                    match (&s.with_clause, &i.with_clause) {
                        (Some(_), Some(_)) => {
                            return Err(NoDryRun::Unreadable(
                                "WITH clauses on both the INSERT and its SELECT".into(),
                            ))
                        }
                        (None, Some(w)) => s.with_clause = Some(w.clone()),
                        _ => {}
                    }
                    let rows = Node {
                        node: Some(NodeEnum::SelectStmt(Box::new(s))),
                    };
                    (kind, name, rows, known, at_most)
                }
                Some(_) => return Err(NoDryRun::NotOneChange),
            }
        }
        _ => return Err(NoDryRun::NotOneChange),
    };
    let mut type_names = Vec::new();
    let mut params = Vec::new();
    let mut attributes = Vec::new();
    named_types(&rows, &mut type_names, &mut params, &mut attributes)?;
    let rows_sql = deparse(rows)?;
    let count_sql = if at_most && !kind.adds() {
        // An UPDATE ... FROM touches each target row once, however many
        // join rows choose it.
        format!("SELECT pg_catalog.count(*) FROM (SELECT DISTINCT * FROM ({rows_sql}) AS portcullis_rows) AS portcullis_dry_run")
    } else {
        format!("SELECT pg_catalog.count(*) FROM ({rows_sql}) AS portcullis_dry_run")
    };
    Ok(DryRunPlan {
        kind,
        relation,
        known_rows,
        count_sql,
        rows_sql,
        at_most: at_most && kind.adds(),
        type_names,
        params,
        attributes,
    })
}

/// An UPDATE's or DELETE's plan parts: its kind, target, the rows it
/// chooses (see [`target_rows`]), no rows known from the text, and whether
/// a join may choose a row more than once.
fn chosen(
    kind: ChangeKind,
    target: Option<&pb::RangeVar>,
    more: &[Node],
    filter: Option<&Node>,
    with: Option<&pb::WithClause>,
) -> Result<(ChangeKind, QualifiedName, Node, Option<u64>, bool), NoDryRun> {
    let target = target.cloned().ok_or(NoDryRun::NotOneChange)?;
    only_reads(with)?;
    let name = range_var_name(&target);
    let rows = target_rows(target, more, filter, with.cloned())?;
    Ok((kind, name, rows, None, !more.is_empty()))
}

/// The target's rows that the WHERE and the FROM / USING list choose: its
/// `tableoid` and `ctid` (which tell rows apart across partitions).
fn target_rows(
    target: pb::RangeVar,
    more: &[Node],
    filter: Option<&Node>,
    with: Option<pb::WithClause>,
) -> Result<Node, NoDryRun> {
    if let Some(NodeEnum::CurrentOfExpr(_)) = filter.and_then(|f| f.node.as_ref()) {
        return Err(NoDryRun::CurrentOf);
    }
    // A DML target never names a WITH query, but a FROM item does: the
    // rewrite would count the WITH query's rows.
    let shadowed = target.schemaname.is_empty()
        && with.iter().flat_map(|w| &w.ctes).any(|c| {
            matches!(&c.node, Some(NodeEnum::CommonTableExpr(c)) if c.ctename == target.relname)
        });
    if shadowed {
        return Err(NoDryRun::ShadowedTarget);
    }
    // Columns are named through the alias when there is one, else through
    // the table's own name (never its schema: `s.t.ctid` is not allowed
    // where `t.ctid` is).
    let reference = target
        .alias
        .as_ref()
        .map(|a| a.aliasname.clone())
        .unwrap_or_else(|| target.relname.clone());
    let column = |name: &str, label: &str| Node {
        node: Some(NodeEnum::ResTarget(Box::new(pb::ResTarget {
            name: label.to_owned(),
            val: Some(Box::new(Node {
                node: Some(NodeEnum::ColumnRef(pb::ColumnRef {
                    fields: vec![string(&reference), string(name)],
                    location: -1,
                })),
            })),
            location: -1,
            ..Default::default()
        }))),
    };
    let mut from = Vec::with_capacity(more.len() + 1);
    from.push(Node {
        node: Some(NodeEnum::RangeVar(target)),
    });
    from.extend(more.iter().cloned());
    let select = pb::SelectStmt {
        target_list: vec![
            column("tableoid", "portcullis_table"),
            column("ctid", "portcullis_row"),
        ],
        from_clause: from,
        where_clause: filter.map(|f| Box::new(f.clone())),
        with_clause: with,
        op: pb::SetOperation::SetopNone as i32,
        limit_option: pb::LimitOption::Default as i32,
        ..Default::default()
    };
    Ok(Node {
        node: Some(NodeEnum::SelectStmt(Box::new(select))),
    })
}

fn string(s: &str) -> Node {
    Node {
        node: Some(NodeEnum::String(pb::String { sval: s.to_owned() })),
    }
}

/// Refuses a WITH clause with a data change in it (a dry run would have to
/// run it).
fn only_reads(with: Option<&pb::WithClause>) -> Result<(), NoDryRun> {
    let Some(with) = with else { return Ok(()) };
    for cte in &with.ctes {
        if let Some(NodeEnum::CommonTableExpr(c)) = &cte.node {
            match c.ctequery.as_deref().and_then(|q| q.node.as_ref()) {
                Some(NodeEnum::SelectStmt(_)) => {}
                _ => return Err(NoDryRun::WritesInWith),
            }
        }
    }
    Ok(())
}

/// Collects the names of every type written in `root` and the numbers of
/// its parameters; refuses table sampling (its methods are functions of
/// their own).
fn named_types(
    root: &Node,
    out: &mut Vec<QualifiedName>,
    params: &mut Vec<i32>,
    attributes: &mut Vec<String>,
) -> Result<(), NoDryRun> {
    let mut attribute = |name: &str| {
        if !attributes.iter().any(|a| a == name) {
            attributes.push(name.to_owned());
        }
    };
    let Some(root) = node_of(root) else {
        return Ok(());
    };
    // An explicit stack: the tree is as deep as the statement (which the
    // analysis already bounded), never the Rust stack's problem.
    let mut stack: Vec<NodeRef<'_>> = vec![root];
    while let Some(n) = stack.pop() {
        match n {
            NodeRef::TypeName(t) => {
                let parts: Vec<&str> = strings(&t.names).collect();
                let name = crate::walk::qualified(&parts);
                if !out.contains(&name) {
                    out.push(name);
                }
            }
            NodeRef::RangeTableSample(_) => return Err(NoDryRun::Sample),
            NodeRef::ParamRef(p) if !params.contains(&p.number) => params.push(p.number),
            NodeRef::ColumnRef(c) if c.fields.len() > 1 => {
                if let Some(last) = c.fields.last().and_then(crate::walk::string_of) {
                    attribute(last);
                }
            }
            NodeRef::AIndirection(i) => strings(&i.indirection).for_each(&mut attribute),
            _ => {}
        }
        for_each_child(n, &mut |_, child| stack.push(child));
    }
    Ok(())
}

fn deparse(node: Node) -> Result<String, NoDryRun> {
    node.node
        .ok_or(NoDryRun::NotOneChange)?
        .deparse(pg_query::DeparseOptions::default())
        .map_err(|e| NoDryRun::Unreadable(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned(sql: &str) -> DryRunPlan {
        plan(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    #[test]
    fn updates_and_deletes_select_the_rows_they_would_touch() {
        let p = planned("UPDATE shop.orders AS o SET total = total * 2, note = f($1) WHERE o.id > $2 RETURNING *");
        assert_eq!(p.kind, ChangeKind::Update);
        assert_eq!(p.relation, QualifiedName::new(Some("shop"), "orders"));
        assert_eq!(
            p.rows_sql,
            "SELECT o.tableoid AS portcullis_table, o.ctid AS portcullis_row FROM shop.orders o WHERE o.id > $2"
        );
        assert_eq!(
            p.count_sql,
            format!(
                "SELECT pg_catalog.count(*) FROM ({}) AS portcullis_dry_run",
                p.rows_sql
            )
        );
        assert!(!p.at_most);
        // Neither the SET list nor RETURNING is evaluated.
        assert!(!p.count_sql.contains("f($1)"));

        let p = planned("DELETE FROM ONLY orders");
        assert_eq!(
            p.rows_sql,
            "SELECT orders.tableoid AS portcullis_table, orders.ctid AS portcullis_row FROM ONLY orders"
        );
    }

    #[test]
    fn joins_count_each_target_row_once() {
        let p = planned(
            "WITH late AS (SELECT id FROM shipments WHERE late) \
             DELETE FROM orders USING late WHERE orders.id = late.id",
        );
        assert!(
            p.rows_sql.starts_with(
                "WITH late AS (SELECT id FROM shipments WHERE late) SELECT orders.tableoid"
            ),
            "{}",
            p.rows_sql
        );
        assert!(p.count_sql.contains("SELECT DISTINCT * FROM ("));
        let p = planned("UPDATE orders SET x = 1 FROM customers c WHERE c.id = orders.customer_id");
        assert!(p.count_sql.contains("DISTINCT"));
        assert!(!p.at_most, "the count is exact");
    }

    #[test]
    fn inserts_count_what_their_select_produces() {
        let p = planned("INSERT INTO t (a) VALUES (1), ($1), (3)");
        assert_eq!(p.known_rows, Some(3));
        let p = planned("INSERT INTO t DEFAULT VALUES");
        assert_eq!(p.known_rows, Some(1));
        let p = planned(
            "WITH src AS (SELECT * FROM old) INSERT INTO t SELECT * FROM src ON CONFLICT DO NOTHING",
        );
        assert_eq!(p.known_rows, None);
        assert!(p.at_most);
        assert_eq!(
            p.count_sql,
            "SELECT pg_catalog.count(*) FROM (WITH src AS (SELECT * FROM old) SELECT * FROM src) AS portcullis_dry_run"
        );
    }

    #[test]
    fn what_cannot_be_dry_run_says_why() {
        for (sql, why) in [
            ("SELECT 1", NoDryRun::NotOneChange),
            ("UPDATE t SET a = 1; DELETE FROM t", NoDryRun::NotOneChange),
            ("DROP TABLE t", NoDryRun::NotOneChange),
            (
                "WITH gone AS (DELETE FROM a RETURNING id) UPDATE t SET x = 1 WHERE id IN (SELECT id FROM gone)",
                NoDryRun::WritesInWith,
            ),
            ("UPDATE t SET a = 1 WHERE CURRENT OF c", NoDryRun::CurrentOf),
            (
                "WITH orders (tableoid, ctid) AS (VALUES (0::oid, '(0,1)'::tid)) DELETE FROM orders",
                NoDryRun::ShadowedTarget,
            ),
            (
                "DELETE FROM t WHERE id IN (SELECT id FROM u TABLESAMPLE bernoulli (5))",
                NoDryRun::Sample,
            ),
        ] {
            assert_eq!(plan(sql), Err(why), "{sql}");
        }
        assert!(matches!(plan("UPDATE"), Err(NoDryRun::Unreadable(_))));
    }

    #[test]
    fn upserts_and_parameters() {
        let p = planned(
            "INSERT INTO t SELECT * FROM u WHERE a = $2 ON CONFLICT (id) DO UPDATE SET b = $1",
        );
        assert_eq!(p.kind, ChangeKind::Upsert);
        assert!(p.at_most);
        assert_eq!(p.params, [2]);
        let p = planned("UPDATE t SET a = $1 WHERE b = $3 AND c = $3");
        assert_eq!(p.params, [3]);
        // Another table named like a WITH query is fine when qualified.
        assert!(plan("WITH orders AS (SELECT 1) DELETE FROM app.orders").is_ok());
    }

    #[test]
    fn names_after_a_dot_may_be_function_calls() {
        let p = planned("DELETE FROM orders o WHERE o.hook AND (o.addr).city = 'x' AND s.t.c = 1");
        let mut a = p.attributes;
        a.sort();
        assert_eq!(a, ["addr", "c", "city", "ctid", "hook", "tableoid"]);
    }

    #[test]
    fn types_written_are_listed_for_the_server_to_check() {
        let p = planned("DELETE FROM t WHERE a = '1'::app.money_t AND b = CAST($1 AS int) AND c = ROW(1)::pair[]");
        let mut names = p.type_names;
        names.sort_by_key(|n| n.to_string());
        assert_eq!(
            names,
            [
                QualifiedName::new(Some("app"), "money_t"),
                QualifiedName::new(None, "pair"),
                QualifiedName::new(Some("pg_catalog"), "int4"),
            ]
        );
    }
}
