//! The dry run approvers see for a held data change: how many rows it
//! would touch, counted before anyone decides, changing nothing.
//!
//! `portcullis_analysis::dry_run` rewrites the change into a query that
//! selects the rows it would touch (and says why that, not running the
//! change and rolling it back). Here that query runs on a connection of
//! Portcullis' own, logged in as the session's role, with the session's
//! search_path, in a `READ ONLY` transaction under a statement timeout;
//! the statement's own parameters are bound as the client sent them.
//!
//! What it evaluates must not do anything either, and the planner already
//! evaluates immutable and stable functions it can fold. So before it is
//! even planned, the analysis and the server must agree that it calls
//! only pg_catalog functions that are not volatile, uses only operators
//! and types defined by pg_catalog (its parameters' types included: a
//! domain's input runs its CHECK constraints), reads only plain tables
//! without row security or virtual generated columns (no views, foreign
//! tables or sequences, at any partition level), and the database has no
//! cast or range type backed by a function outside pg_catalog. Anything
//! else: the approvers are told the dry run did not run, and why.
//!
//! It sees what is committed: not the session's temporary tables, not its
//! open transaction's uncommitted changes (the summary says so).

use std::time::Duration;

use bytes::BytesMut;
use portcullis_analysis::dry_run::{self, ChangeKind, DryRunPlan, NoDryRun};
use portcullis_analysis::{functions::pg_catalog_searched_first, QualifiedName, StatementFacts};
use portcullis_approvals::{DryRun, DryRunMethod};
use portcullis_wire::{encode, sqlstate};
use tokio::io::AsyncWriteExt;

use crate::runtime::{Login, TargetRuntime};
use crate::upstream::{self, exchange, UpstreamError};

/// What a dry run needs of the held message and its session.
pub struct DryRunAsk<'a> {
    pub target: &'a TargetRuntime,
    /// The role the session logged in as.
    pub login: Login<'a>,
    pub statement: &'a str,
    /// The parameter types its Parse declared.
    pub param_types: &'a [u32],
    /// A Bind's format codes and values as sent; `None` for a Query.
    pub parameters: Option<&'a [u8]>,
    /// The session's search_path, when the proxy knows it for certain.
    pub search_path: Option<&'a [String]>,
    pub in_transaction: bool,
    /// For counting; the planner's estimate is shown past it.
    pub timeout: Duration,
}

/// Runs the dry run of `ask`'s statement; `None` when it changes no
/// table data (nothing to count).
pub async fn dry_run(ask: &DryRunAsk<'_>) -> Option<DryRun> {
    let plan = match dry_run::plan(ask.statement) {
        Ok(p) => p,
        Err(NoDryRun::NotOneChange) if !changes_data(ask.statement) => return None,
        Err(e) => return Some(not_run(e.to_string())),
    };
    Some(counted_plan(ask, &plan).await)
}

/// Whether `sql` changes table data in any of its statements.
fn changes_data(sql: &str) -> bool {
    use portcullis_analysis::StatementClass as C;
    portcullis_analysis::analyze(sql).is_ok_and(|a| {
        a.statements
            .iter()
            .any(|s| matches!(s.class, C::Insert | C::Update | C::Delete | C::Merge))
    })
}

async fn counted_plan(ask: &DryRunAsk<'_>, plan: &DryRunPlan) -> DryRun {
    let what = What::of(plan);
    if let Some(rows) = plan.known_rows {
        return DryRun {
            method: DryRunMethod::Known,
            rows: Some(rows),
            at_most: plan.at_most,
            summary: format!("{} (its VALUES list)", what.rows(rows, plan.at_most, "")),
        };
    }
    let Some(path) = ask.search_path else {
        return not_run("the session's search_path is not known for certain".into());
    };
    if !pg_catalog_searched_first(path) {
        return not_run("the session's search_path puts a schema before pg_catalog".into());
    }
    let names = match Names::of(plan) {
        Ok(n) => n,
        Err(why) => return not_run(why),
    };
    // Connecting, the checks and the estimate get as long again as the
    // count.
    let allowed = Duration::from(ask.target.config.connect_timeout) + ask.timeout * 2;
    match tokio::time::timeout(allowed, run(ask, plan, &names)).await {
        Err(_) => not_run("it took too long".into()),
        Ok(Err(Stop::Unsafe(why))) => not_run(why),
        Ok(Err(Stop::Failed(e))) => not_run(failed(&e)),
        Ok(Ok(Found::Counted(rows))) => DryRun {
            method: DryRunMethod::Counted,
            rows: Some(rows),
            at_most: plan.at_most,
            summary: format!(
                "{} (counted in a read-only transaction when the request was made{})",
                what.rows(rows, plan.at_most, ""),
                if ask.in_transaction {
                    ", outside the session's open transaction, whose own uncommitted changes it does not see"
                } else {
                    ""
                }
            ),
        },
        Ok(Ok(Found::Estimated(rows))) => DryRun {
            method: DryRunMethod::Estimated,
            rows: Some(rows),
            at_most: false,
            summary: format!(
                "{} (the planner's estimate: counting took longer than {} ms)",
                what.rows(rows, false, "about "),
                ask.timeout.as_millis()
            ),
        },
        Ok(Ok(Found::Nothing)) => not_run(format!(
            "counting took longer than {} ms, and the planner gave no estimate",
            ask.timeout.as_millis()
        )),
    }
}

fn not_run(why: String) -> DryRun {
    DryRun {
        method: DryRunMethod::NotRun,
        rows: None,
        at_most: false,
        summary: format!("not run: {why}"),
    }
}

/// A server error as approvers see it: its SQLSTATE, never its message
/// (which may quote a parameter's value).
fn failed(e: &UpstreamError) -> String {
    match e {
        UpstreamError::Query { code, .. } if code == sqlstate::INSUFFICIENT_PRIVILEGE => {
            "the session's role may not read what the statement chooses rows by".into()
        }
        UpstreamError::Query { code, .. } => {
            format!("the server refused the count (SQLSTATE {code})")
        }
        _ => "Portcullis could not reach the database for it".into(),
    }
}

/// The change in words.
struct What {
    verb: &'static str,
    relation: String,
    into: bool,
}

impl What {
    fn of(plan: &DryRunPlan) -> What {
        What {
            verb: plan.kind.verb(),
            relation: plan.relation.to_string(),
            into: plan.kind == ChangeKind::Insert,
        }
    }

    fn rows(&self, n: u64, at_most: bool, about: &str) -> String {
        format!(
            "would {} {}{}{} row{} {} {}",
            self.verb,
            if at_most { "at most " } else { "" },
            about,
            n,
            if n == 1 { "" } else { "s" },
            if self.into { "into" } else { "of" },
            self.relation
        )
    }
}

/// What the count query uses, for the server to vouch for.
struct Names {
    relations: Vec<String>,
    functions: Vec<String>,
    operators: Vec<String>,
    types: Vec<String>,
}

impl Names {
    /// From the analysis of the count query; refuses what needs no server
    /// to refuse (code the analysis cannot see into, dangerous
    /// capabilities, names in schemas other than pg_catalog).
    fn of(plan: &DryRunPlan) -> Result<Names, String> {
        let analysis = portcullis_analysis::analyze(&plan.count_sql)
            .map_err(|e| format!("its rewrite could not be analysed: {e}"))?;
        let [facts] = analysis.statements.as_slice() else {
            return Err("its rewrite is not one statement".into());
        };
        Names::from_facts(facts, &plan.type_names)
    }

    fn from_facts(facts: &StatementFacts, types: &[QualifiedName]) -> Result<Names, String> {
        if !facts.opaque.is_empty() || !facts.capabilities.is_empty() {
            return Err("it runs code whose effects cannot be seen".into());
        }
        let outside =
            |schema: &Option<String>| schema.as_deref().is_some_and(|s| s != "pg_catalog");
        let mut functions = vec!["count".to_owned()];
        for f in &facts.functions {
            if outside(&f.name.schema) {
                return Err(format!("it calls {}, outside pg_catalog", f.name));
            }
            if !functions.contains(&f.name.name) {
                functions.push(f.name.name.clone());
            }
        }
        // `=` compares wherever the grammar leaves the operator unnamed.
        let mut operators = vec!["=".to_owned()];
        for o in &facts.operators {
            if outside(&o.schema) {
                return Err(format!("it uses operator {o}, outside pg_catalog"));
            }
            if !operators.contains(&o.name) {
                operators.push(o.name.clone());
            }
        }
        let mut relations = Vec::new();
        for r in &facts.relations {
            if r.relation.schema.as_deref() == Some("pg_temp") {
                return Err("it reads a temporary table, which only the session sees".into());
            }
            let name = quoted(&r.relation);
            if !relations.contains(&name) {
                relations.push(name);
            }
        }
        Ok(Names {
            relations,
            functions,
            operators,
            types: types.iter().map(quoted).collect(),
        })
    }
}

/// `"schema"."name"`, as `to_regclass` and `to_regtype` read it.
fn quoted(name: &QualifiedName) -> String {
    let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    match &name.schema {
        Some(s) => format!("{}.{}", q(s), q(&name.name)),
        None => q(&name.name),
    }
}

/// A text[] literal.
fn text_array(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{{{}}}", quoted.join(","))
}

/// What the server must vouch for before the count is planned (every
/// name qualified, and pg_catalog searched first, so nothing here
/// resolves outside it). One row: what is wrong, NULL or false where
/// nothing is.
const CHECKS: &str = "\
SELECT \
 (SELECT pg_catalog.string_agg(r.name, ', ' ORDER BY r.name) \
    FROM pg_catalog.unnest($1::pg_catalog.text[]) AS r(name) \
    LEFT JOIN pg_catalog.pg_class c ON c.oid = pg_catalog.to_regclass(r.name) \
   WHERE c.oid IS NULL OR c.relkind NOT IN ('r', 'p', 'm') OR c.relrowsecurity \
      OR EXISTS (SELECT FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attgenerated = 'v') \
      OR EXISTS (WITH RECURSIVE below(oid) AS ( \
                   SELECT i.inhrelid FROM pg_catalog.pg_inherits i WHERE i.inhparent = c.oid \
                   UNION SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN below b ON i.inhparent = b.oid) \
                 SELECT FROM below b JOIN pg_catalog.pg_class k ON k.oid = b.oid \
                  WHERE k.relkind NOT IN ('r', 'p') OR k.relrowsecurity \
                     OR EXISTS (SELECT FROM pg_catalog.pg_attribute a WHERE a.attrelid = k.oid AND a.attgenerated = 'v'))), \
 (SELECT pg_catalog.string_agg(f.name, ', ' ORDER BY f.name) \
    FROM pg_catalog.unnest($2::pg_catalog.text[]) AS f(name) \
   WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_proc p WHERE p.proname = f.name \
                        AND p.pronamespace = 'pg_catalog'::pg_catalog.regnamespace) \
      OR EXISTS (SELECT FROM pg_catalog.pg_proc p WHERE p.proname = f.name \
                    AND (p.pronamespace <> 'pg_catalog'::pg_catalog.regnamespace OR p.provolatile = 'v'))), \
 (SELECT pg_catalog.string_agg(DISTINCT o.oprname::pg_catalog.text, ' ') FROM pg_catalog.pg_operator o \
   WHERE o.oprname = ANY ($3::pg_catalog.text[]) \
     AND o.oprnamespace <> 'pg_catalog'::pg_catalog.regnamespace), \
 (SELECT pg_catalog.string_agg(t.name, ', ' ORDER BY t.name) \
    FROM pg_catalog.unnest($4::pg_catalog.text[]) AS t(name) \
    LEFT JOIN pg_catalog.pg_type y ON y.oid = pg_catalog.to_regtype(t.name) \
   WHERE y.oid IS NULL OR y.typnamespace <> 'pg_catalog'::pg_catalog.regnamespace), \
 EXISTS (SELECT FROM pg_catalog.pg_cast k JOIN pg_catalog.pg_proc p ON p.oid = k.castfunc \
          WHERE p.pronamespace <> 'pg_catalog'::pg_catalog.regnamespace), \
 EXISTS (SELECT FROM pg_catalog.pg_range g JOIN pg_catalog.pg_proc p ON p.oid IN (g.rngcanonical, g.rngsubdiff) \
          WHERE p.pronamespace <> 'pg_catalog'::pg_catalog.regnamespace), \
 (SELECT pg_catalog.string_agg(pg_catalog.format_type(o.t, NULL), ', ') \
    FROM pg_catalog.unnest($5::pg_catalog.oid[]) AS o(t) \
    LEFT JOIN pg_catalog.pg_type y ON y.oid = o.t \
   WHERE y.oid IS NULL OR y.typnamespace <> 'pg_catalog'::pg_catalog.regnamespace)";

/// Why the dry run stopped.
enum Stop {
    /// It would not be safe to run: the approvers are told why.
    Unsafe(String),
    Failed(UpstreamError),
}

impl From<UpstreamError> for Stop {
    fn from(e: UpstreamError) -> Self {
        Stop::Failed(e)
    }
}

enum Found {
    Counted(u64),
    Estimated(u64),
    Nothing,
}

async fn run(ask: &DryRunAsk<'_>, plan: &DryRunPlan, names: &Names) -> Result<Found, Stop> {
    let params = [(
        "application_name".to_owned(),
        "portcullis-dry-run".to_owned(),
    )];
    let mut up = upstream::connect(ask.target, ask.login, &params).await?;
    let found = counted(&mut up, ask, plan, names).await;
    let mut bye = BytesMut::new();
    encode::terminate(&mut bye);
    let _ = up.stream.write_all(&bye).await;
    found
}

async fn counted(
    up: &mut upstream::Upstream,
    ask: &DryRunAsk<'_>,
    plan: &DryRunPlan,
    names: &Names,
) -> Result<Found, Stop> {
    let (stream, leftover) = (&mut up.stream, &mut up.leftover);
    let ms = ask.timeout.as_millis().max(1);
    let path = ask.search_path.unwrap_or_default().join(", ");
    let mut out = BytesMut::new();
    encode::query(
        &mut out,
        &format!(
            "BEGIN READ ONLY; SET LOCAL statement_timeout = {ms}; SET LOCAL lock_timeout = {ms}"
        ),
    );
    exchange(stream, leftover, &out).await?;
    // (Each exchange ends at one ReadyForQuery.)
    let mut out = BytesMut::new();
    encode::parse(
        &mut out,
        b"",
        "SELECT pg_catalog.set_config('search_path', $1, true)",
    );
    encode::bind(&mut out, b"", b"", &[path.as_bytes()]);
    encode::execute(&mut out, b"");
    encode::sync(&mut out);
    exchange(stream, leftover, &out).await?;

    // The parameters' types as the server infers them for the statement
    // itself (a parameter only its SET list uses is unused below). Parsing runs
    // nothing: no function, no default, no constraint.
    let types = match ask.parameters {
        None => Vec::new(),
        Some(_) => {
            let mut out = BytesMut::new();
            encode::parse_typed(&mut out, b"", ask.statement, ask.param_types);
            encode::describe_statement(&mut out, b"");
            encode::sync(&mut out);
            exchange(stream, leftover, &out).await?.parameter_types
        }
    };
    let mut out = BytesMut::new();
    encode::parse(&mut out, b"", CHECKS);
    let arrays = [
        text_array(&names.relations),
        text_array(&names.functions),
        text_array(&names.operators),
        text_array(&names.types),
        format!(
            "{{{}}}",
            types
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ),
    ];
    let arrays: Vec<&[u8]> = arrays.iter().map(|a| a.as_bytes()).collect();
    encode::bind(&mut out, b"", b"", &arrays);
    encode::execute(&mut out, b"");
    encode::sync(&mut out);
    let checked = exchange(stream, leftover, &out).await?;
    let row = checked
        .sets
        .first()
        .and_then(|s| s.first())
        .ok_or_else(|| Stop::Unsafe("the checks gave no answer".into()))?;
    let at = |i: usize| row.get(i).cloned().flatten();
    if let Some(r) = at(0) {
        return Err(Stop::Unsafe(format!(
            "it reads {r}: only plain tables without row security are read before approval"
        )));
    }
    if let Some(f) = at(1) {
        return Err(Stop::Unsafe(format!(
            "it calls {f}: only functions of pg_catalog that are not volatile are run before approval"
        )));
    }
    if let Some(o) = at(2) {
        return Err(Stop::Unsafe(format!(
            "the database defines operators named {o} outside pg_catalog"
        )));
    }
    if let Some(t) = at(3) {
        return Err(Stop::Unsafe(format!(
            "it names types that are not built in: {t}"
        )));
    }
    if at(4).as_deref() == Some("t") {
        return Err(Stop::Unsafe(
            "the database has casts through functions outside pg_catalog".into(),
        ));
    }
    if at(5).as_deref() == Some("t") {
        return Err(Stop::Unsafe(
            "the database has range types with functions outside pg_catalog".into(),
        ));
    }
    if let Some(t) = at(6) {
        // A domain's input runs its CHECK constraints.
        return Err(Stop::Unsafe(format!(
            "its parameters are of types that are not built in: {t}"
        )));
    }

    let run = |sql: &str| {
        let mut out = BytesMut::new();
        encode::parse_typed(&mut out, b"", sql, &types);
        match ask.parameters {
            Some(section) => encode::bind_sent(&mut out, b"", b"", section),
            None => encode::bind(&mut out, b"", b"", &[]),
        }
        encode::execute(&mut out, b"");
        encode::sync(&mut out);
        out
    };
    let estimate = exchange(
        stream,
        leftover,
        &run(&format!("EXPLAIN (FORMAT JSON) {}", plan.rows_sql)),
    )
    .await
    .ok()
    .and_then(|e| {
        let json = e.sets.first()?.first()?.first()?.clone()?;
        planned_rows(&json)
    });
    match exchange(stream, leftover, &run(&plan.count_sql)).await {
        Ok(e) => {
            let n = e
                .sets
                .first()
                .and_then(|s| s.first())
                .and_then(|r| r.first().cloned().flatten())
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| Stop::Unsafe("the count gave no answer".into()))?;
            Ok(Found::Counted(n))
        }
        Err(UpstreamError::Query { code, .. }) if code == sqlstate::QUERY_CANCELED => {
            Ok(estimate.map_or(Found::Nothing, Found::Estimated))
        }
        Err(e) => Err(Stop::Failed(e)),
    }
}

/// The top plan node's row estimate in `EXPLAIN (FORMAT JSON)` output.
fn planned_rows(json: &str) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let rows = v.get(0)?.get("Plan")?.get("Plan Rows")?.as_f64()?;
    (rows.is_finite() && rows >= 0.0).then(|| rows.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_for_the_server() {
        assert_eq!(
            quoted(&QualifiedName::new(Some("app"), "We\"ird")),
            "\"app\".\"We\"\"ird\""
        );
        assert_eq!(quoted(&QualifiedName::new(None, "orders")), "\"orders\"");
        assert_eq!(
            text_array(&["a".into(), "b\"c\\".into()]),
            r#"{"a","b\"c\\"}"#
        );
        assert_eq!(text_array(&[]), "{}");
    }

    #[test]
    fn the_estimate_is_the_top_plan_nodes() {
        assert_eq!(
            planned_rows(r#"[{"Plan": {"Node Type": "Seq Scan", "Plan Rows": 1234}}]"#),
            Some(1234)
        );
        assert_eq!(planned_rows("[]"), None);
        assert_eq!(planned_rows("not json"), None);
    }

    fn facts(sql: &str) -> StatementFacts {
        portcullis_analysis::analyze(sql)
            .expect("parses")
            .statements
            .remove(0)
    }

    #[test]
    fn code_outside_pg_catalog_is_never_run() {
        let plan = |sql: &str| dry_run::plan(sql).expect("plans");
        let refused = |sql: &str| Names::of(&plan(sql)).err();
        assert!(
            refused("DELETE FROM t WHERE id = app.pick()").is_some_and(|w| w.contains("app.pick"))
        );
        assert!(refused("DELETE FROM t WHERE a OPERATOR(app.===) b").is_some());
        assert!(
            refused("DELETE FROM t WHERE id IN (SELECT pg_read_file('/etc/passwd')::int)")
                .is_some()
        );
        assert!(refused("DELETE FROM pg_temp.t").is_some());
        let names = Names::of(&plan(
            "UPDATE s.t SET a = f(1) WHERE lower(b) = $1 AND c > 2",
        ))
        .expect("plain");
        assert_eq!(names.relations, ["\"s\".\"t\""]);
        assert_eq!(names.functions, ["count", "lower"]);
        assert!(names.operators.contains(&"=".to_owned()));
        assert!(names.operators.contains(&">".to_owned()));
        let f = facts("SELECT 1");
        assert!(Names::from_facts(&f, &[]).is_ok());
    }
}
