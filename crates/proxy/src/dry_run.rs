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
//! What it evaluates must not do anything either. Parsing already runs
//! the input routine of the types its literals are read as, and the
//! planner folds immutable and stable functions (in the query, and in the
//! tables' index expressions, constraints and statistics). So before the
//! query is even parsed, the analysis and the server must agree that it
//! calls only pg_catalog functions that are not volatile (and none that
//! reads a value as a type named at run time), that no operator of a name
//! it uses exists outside pg_catalog, that it reads only plain tables
//! without row security, virtual generated columns, or indexes,
//! constraints or statistics on code outside pg_catalog (at every
//! partition level), that no type it reads, names or binds reaches a
//! domain with a CHECK (through arrays, composites and ranges), and that
//! the database has no cast or range type backed by a function outside
//! pg_catalog. The names are resolved under the session's search_path;
//! the checks run under `search_path = pg_catalog`. Anything else: the
//! approvers are told the dry run did not run, and why.
//!
//! It sees what is committed: not the session's temporary tables, not its
//! open transaction's uncommitted changes (the summary says so).

use std::time::Duration;

use bytes::BytesMut;
use portcullis_analysis::dry_run::{self, DryRunPlan, NoDryRun};
use portcullis_analysis::{functions::pg_catalog_searched_first, QualifiedName, StatementFacts};
use portcullis_approvals::{DryRun, DryRunMethod};
use portcullis_wire::{encode, sqlstate};
use tokio::io::AsyncWriteExt;

use crate::runtime::{Login, TargetRuntime};
use crate::session::bind_values::BindValues;
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
    /// The session's settings that change how values are read
    /// (client_encoding, DateStyle, IntervalStyle, TimeZone), as the
    /// server last reported them.
    pub settings: &'a [(String, String)],
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
            summary: format!(
                "{} (its VALUES list; what the table's triggers or rules do was not looked at)",
                what.rows(rows, plan.at_most, "")
            ),
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
    // The checks have their own bound; the estimate is quick, the count
    // may take all of its time.
    let allowed = Duration::from(ask.target.config.connect_timeout)
        + CHECKS_TIMEOUT
        + ask.timeout * 2
        + Duration::from_secs(1);
    let (found, caveats) = match tokio::time::timeout(allowed, run(ask, plan, &names)).await {
        Err(_) => return not_run("it took too long".into()),
        Ok(Err(Stop::Unsafe(why))) => return not_run(why),
        Ok(Err(Stop::Failed(e))) => return not_run(failed(&e)),
        Ok(Ok(found)) => found,
    };
    let mut dry_run = match found {
        Found::Counted(rows) => DryRun {
            method: DryRunMethod::Counted,
            rows: Some(rows),
            at_most: plan.at_most,
            summary: format!(
                "{} (counted in a read-only transaction when the request was made, in the committed data of permanent tables{})",
                what.rows(rows, plan.at_most, ""),
                if ask.in_transaction {
                    ", outside the session's open transaction, whose own uncommitted changes it does not see"
                } else {
                    ""
                }
            ),
        },
        Found::Estimated(rows) => DryRun {
            method: DryRunMethod::Estimated,
            rows: Some(rows),
            at_most: false,
            summary: format!(
                "{} (the planner's estimate: counting took longer than {} ms)",
                what.rows(rows, false, "about "),
                ask.timeout.as_millis()
            ),
        },
        Found::Nothing => {
            return not_run(format!(
                "counting took longer than {} ms, and the planner gave no estimate",
                ask.timeout.as_millis()
            ))
        }
    };
    if !caveats.is_empty() {
        dry_run
            .summary
            .push_str(&format!("; not counted: {}", caveats.join(", ")));
    }
    dry_run
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
            into: plan.kind.adds(),
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
#[derive(Default)]
struct Names {
    relations: Vec<String>,
    /// Relations named without a schema (a temporary table may be what
    /// the session reads by that name).
    unqualified: Vec<String>,
    functions: Vec<String>,
    operators: Vec<String>,
    types: Vec<String>,
    /// Names after a dot (see `DryRunPlan::attributes`).
    attributes: Vec<String>,
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
        let mut names = Names::from_facts(facts, &plan.type_names)?;
        names.attributes = plan.attributes.clone();
        Ok(names)
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
            if let Some(why) = forbidden_builtin(&f.name.name) {
                return Err(format!("it calls {}, which {why}", f.name));
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
        let mut unqualified = Vec::new();
        for r in &facts.relations {
            if r.relation.schema.is_none() && !unqualified.contains(&r.relation.name) {
                unqualified.push(r.relation.name.clone());
            }
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
            unqualified,
            functions,
            operators,
            types: types.iter().map(quoted).collect(),
            attributes: Vec::new(),
        })
    }
}

/// Built-ins the dry run does not call although pg_catalog has them
/// stable, and why: those that run the input routine of a type given as a
/// value (`pg_input_is_valid('x', 'app.dom')`, `domain_in(...)`: a
/// domain's CHECK would run), and those that assign a transaction id.
fn forbidden_builtin(name: &str) -> Option<&'static str> {
    if name.starts_with("pg_input_") || name.ends_with("_in") || name.ends_with("_recv") {
        Some("reads a value as a type chosen when it runs")
    } else if matches!(name, "txid_current" | "pg_current_xact_id") {
        Some("assigns a transaction id")
    } else {
        None
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

/// Resolves the names the statement uses as the server does, with the
/// session's search_path: relations (`r`), types (`t`), the changed table
/// (`x`). No operator, no function outside pg_catalog.
const RESOLVE: &str = "\
SELECT 'r', n, pg_catalog.to_regclass(n)::pg_catalog.oid FROM pg_catalog.unnest($1::pg_catalog.text[]) AS n \
UNION ALL SELECT 't', n, pg_catalog.to_regtype(n)::pg_catalog.oid FROM pg_catalog.unnest($2::pg_catalog.text[]) AS n \
UNION ALL SELECT 'x', n, pg_catalog.to_regclass(n)::pg_catalog.oid FROM pg_catalog.unnest($3::pg_catalog.text[]) AS n";

/// What the server must vouch for before the count is parsed or planned,
/// run with `search_path = pg_catalog` (so that nothing here resolves
/// outside it). `$1`: the relations read (their partitions and children
/// are followed, and a partition's ancestors, whose partition key its
/// constraint is built from); `$2`, `$3`: the function and operator names
/// used; `$4`: the types named or declared; `$5`: the changed table (0:
/// none); `$6`: the names written after a dot (`t.f` calls `f(t)` when
/// `t` has no column `f`); `$7`: the unqualified relation names (a
/// temporary table of that name may be what the session reads). One row:
/// what is wrong, NULL or false where nothing is; then what the count
/// leaves out (the changed table's triggers, rules and cascading foreign
/// keys, at every partition level, and its kind).
const CHECKS: &str = "\
WITH RECURSIVE tree(root, oid) AS ( \
    SELECT r, r FROM unnest($1::oid[]) AS r \
  UNION \
    SELECT r, a.relid FROM unnest($1::oid[]) AS r, pg_partition_ancestors(r) AS a \
  UNION \
    SELECT tree.root, i.inhrelid FROM pg_inherits i JOIN tree ON i.inhparent = tree.oid \
), rels(oid) AS ( \
    SELECT DISTINCT oid FROM tree \
), changed(oid) AS ( \
    SELECT $5::oid WHERE $5::oid <> 0 \
  UNION \
    SELECT i.inhrelid FROM pg_inherits i JOIN changed ON i.inhparent = changed.oid \
), reach(t) AS ( \
    SELECT a.atttypid FROM pg_attribute a JOIN rels ON a.attrelid = rels.oid \
     WHERE a.attnum > 0 AND NOT a.attisdropped \
  UNION \
    SELECT t FROM unnest($4::oid[]) AS t \
  UNION \
    SELECT n.t FROM reach JOIN pg_type y ON y.oid = reach.t \
    CROSS JOIN LATERAL ( \
        SELECT y.typelem WHERE y.typelem <> 0 \
        UNION ALL SELECT y.typbasetype WHERE y.typbasetype <> 0 \
        UNION ALL SELECT a.atttypid FROM pg_attribute a \
                   WHERE y.typrelid <> 0 AND a.attrelid = y.typrelid AND a.attnum > 0 AND NOT a.attisdropped \
        UNION ALL SELECT g.rngsubtype FROM pg_range g WHERE g.rngtypid = y.oid \
        UNION ALL SELECT g.rngtypid FROM pg_range g WHERE g.rngmultitypid = y.oid \
    ) AS n(t) \
) \
SELECT \
 (SELECT string_agg(DISTINCT tree.root::regclass::text, ', ') FROM tree JOIN pg_class c ON c.oid = tree.oid \
   WHERE c.relkind NOT IN ('r', 'p', 'm') OR c.relrowsecurity \
      OR EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attgenerated = 'v') \
      OR EXISTS (SELECT FROM pg_depend d \
                  WHERE d.refclassid IN ('pg_proc'::regclass, 'pg_operator'::regclass) \
                    AND ((d.classid = 'pg_class'::regclass \
                          AND (d.objid = c.oid OR d.objid IN (SELECT x.indexrelid FROM pg_index x WHERE x.indrelid = c.oid))) \
                      OR (d.classid = 'pg_constraint'::regclass \
                          AND d.objid IN (SELECT k.oid FROM pg_constraint k WHERE k.conrelid = c.oid)) \
                      OR (d.classid = 'pg_statistic_ext'::regclass \
                          AND d.objid IN (SELECT s.oid FROM pg_statistic_ext s WHERE s.stxrelid = c.oid))) \
                    AND COALESCE((SELECT p.pronamespace FROM pg_proc p WHERE d.refclassid = 'pg_proc'::regclass AND p.oid = d.refobjid), \
                                 (SELECT o.oprnamespace FROM pg_operator o WHERE d.refclassid = 'pg_operator'::regclass AND o.oid = d.refobjid)) \
                        <> 'pg_catalog'::regnamespace)), \
 (SELECT string_agg(f.name, ', ' ORDER BY f.name) FROM unnest($2::text[]) AS f(name) \
   WHERE NOT EXISTS (SELECT FROM pg_proc p WHERE p.proname = f.name AND p.pronamespace = 'pg_catalog'::regnamespace) \
      OR EXISTS (SELECT FROM pg_proc p WHERE p.proname = f.name \
                    AND (p.pronamespace <> 'pg_catalog'::regnamespace OR p.provolatile = 'v')) \
      OR EXISTS (SELECT FROM pg_type y WHERE y.typname = f.name AND y.typtype = 'd' \
                    AND y.typnamespace <> 'pg_catalog'::regnamespace)), \
 (SELECT string_agg(DISTINCT o.oprname::text, ' ') FROM pg_operator o \
   WHERE o.oprname = ANY ($3::text[]) AND o.oprnamespace <> 'pg_catalog'::regnamespace), \
 (SELECT string_agg(DISTINCT format_type(y.oid, NULL), ', ') FROM reach JOIN pg_type y ON y.oid = reach.t \
   WHERE y.typtype = 'd' AND EXISTS (SELECT FROM pg_constraint k WHERE k.contypid = y.oid)), \
 EXISTS (SELECT FROM pg_cast k JOIN pg_proc p ON p.oid = k.castfunc \
          WHERE p.pronamespace <> 'pg_catalog'::regnamespace), \
 EXISTS (SELECT FROM pg_range g JOIN pg_proc p ON p.oid IN (g.rngcanonical, g.rngsubdiff) \
          WHERE p.pronamespace <> 'pg_catalog'::regnamespace), \
 (SELECT count(*) FROM pg_trigger g JOIN changed ON g.tgrelid = changed.oid \
   WHERE NOT g.tgisinternal AND g.tgenabled <> 'D'), \
 (SELECT count(*) FROM pg_rewrite w JOIN changed ON w.ev_class = changed.oid WHERE w.rulename <> '_RETURN'), \
 (SELECT count(*) FROM pg_constraint f JOIN changed ON f.confrelid = changed.oid WHERE f.contype = 'f' \
     AND (f.confdeltype IN ('c', 'n', 'd') OR f.confupdtype IN ('c', 'n', 'd'))), \
 (SELECT c.relkind::text FROM pg_class c WHERE c.oid = $5), \
 (SELECT string_agg(DISTINCT a.name, ', ') FROM unnest($6::text[]) AS a(name) \
   WHERE EXISTS (SELECT FROM pg_proc p WHERE p.proname = a.name \
                    AND (p.pronamespace <> 'pg_catalog'::regnamespace OR p.provolatile = 'v'))), \
 (SELECT string_agg(DISTINCT c.relname::text, ', ') FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
   WHERE n.nspname LIKE 'pg\\_temp\\_%' AND c.relname = ANY ($7::text[]))";

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

/// What was found, and what the count leaves out.
type Outcome = (Found, Vec<String>);

async fn run(ask: &DryRunAsk<'_>, plan: &DryRunPlan, names: &Names) -> Result<Outcome, Stop> {
    let mut params = vec![(
        "application_name".to_owned(),
        "portcullis-dry-run".to_owned(),
    )];
    // The session's client_encoding only once the statements are parsed
    // (see `Side::count`).
    params.extend(
        ask.settings
            .iter()
            .filter(|(n, _)| !n.eq_ignore_ascii_case("client_encoding"))
            .cloned(),
    );
    let mut up = upstream::connect(ask.target, ask.login, &params).await?;
    let found = Side {
        up: &mut up,
        session_path: session_path(ask.search_path.unwrap_or_default()),
    }
    .count(ask, plan, names)
    .await;
    let mut bye = BytesMut::new();
    encode::terminate(&mut bye);
    let _ = up.stream.write_all(&bye).await;
    found
}

/// The session's search_path as `set_config` reads it: every name quoted,
/// as the proxy read it (`"$user"` quoted is still the user's schema).
fn session_path(path: &[String]) -> String {
    path.iter()
        .map(|s| format!("\"{}\"", s.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The dry run's own connection.
struct Side<'a> {
    up: &'a mut upstream::Upstream,
    session_path: String,
}

impl Side<'_> {
    /// Sends `request` (ending with one Query or one Sync) and reads the
    /// answers.
    async fn send(&mut self, request: &[u8]) -> Result<upstream::Exchanged, UpstreamError> {
        exchange(&mut self.up.stream, &mut self.up.leftover, request).await
    }

    async fn simple(&mut self, sql: &str) -> Result<upstream::Exchanged, UpstreamError> {
        let mut out = BytesMut::new();
        encode::query(&mut out, sql);
        self.send(&out).await
    }

    /// Runs `sql` with text parameters.
    async fn extended(
        &mut self,
        sql: &str,
        params: &[&[u8]],
    ) -> Result<upstream::Exchanged, UpstreamError> {
        let mut out = BytesMut::new();
        encode::parse(&mut out, b"", sql);
        encode::bind(&mut out, b"", b"", params);
        encode::execute(&mut out, b"");
        encode::sync(&mut out);
        self.send(&out).await
    }

    async fn search_path(&mut self, path: &str) -> Result<(), UpstreamError> {
        self.extended(
            "SELECT pg_catalog.set_config('search_path', $1, true)",
            &[path.as_bytes()],
        )
        .await
        .map(|_| ())
    }

    async fn count(
        &mut self,
        ask: &DryRunAsk<'_>,
        plan: &DryRunPlan,
        names: &Names,
    ) -> Result<Outcome, Stop> {
        // The checks read the catalog: they get their own bound. The
        // estimate and the count get the configured one. No JIT: the
        // checks' recursive queries cost enough on paper to be compiled,
        // which took 130 ms of a 145 ms dry run.
        let checks = CHECKS_TIMEOUT.as_millis();
        self.simple(&format!(
            "BEGIN READ ONLY; SET LOCAL statement_timeout = {checks}; SET LOCAL lock_timeout = {checks}; SET LOCAL jit = off"
        ))
        .await?;

        // The names, resolved as the statement's will be.
        let path = self.session_path.clone();
        self.search_path(&path).await?;
        let target = [quoted(&plan.relation)];
        let resolved = self
            .extended(
                RESOLVE,
                &[
                    text_array(&names.relations).as_bytes(),
                    text_array(&names.types).as_bytes(),
                    text_array(&target).as_bytes(),
                ],
            )
            .await?;
        let (mut relations, mut types, mut changed) = (Vec::new(), Vec::new(), 0u32);
        for row in resolved.sets.first().into_iter().flatten() {
            let (kind, name) = (
                row.first().cloned().flatten(),
                row.get(1).cloned().flatten(),
            );
            let oid = row
                .get(2)
                .cloned()
                .flatten()
                .and_then(|o| o.parse::<u32>().ok());
            match (kind.as_deref(), oid) {
                (Some("r"), Some(oid)) => relations.push(oid),
                (Some("t"), Some(oid)) => types.push(oid),
                (Some("x"), Some(oid)) => changed = oid,
                (Some("x"), None) => {}
                (_, None) => {
                    return Err(Stop::Unsafe(format!(
                        "it names {}, which the session's role does not see",
                        name.unwrap_or_default()
                    )))
                }
                _ => {}
            }
        }
        // The parameters as the count binds them: a parameter the count
        // does not use (an UPDATE's SET value) is read as text or bytes,
        // whatever its type; the others keep their declared types, or the
        // server infers them.
        let formats = ask
            .parameters
            .and_then(BindValues::read)
            .map(|b| b.formats)
            .unwrap_or_default();
        let declared: Vec<u32> = (0..formats.len())
            .map(|i| {
                let n = i32::try_from(i + 1).unwrap_or(i32::MAX);
                match (plan.params.contains(&n), formats[i]) {
                    (true, _) => ask.param_types.get(i).copied().unwrap_or(0),
                    (false, 1) => BYTEA,
                    (false, _) => TEXT,
                }
            })
            .collect();
        types.extend(declared.iter().filter(|t| **t != 0));
        let caveats = self.check(&relations, names, &types, changed).await?;

        // Parsing the count reads its literals as their types: only now.
        self.search_path(&path).await?;
        let mut out = BytesMut::new();
        encode::parse_typed(&mut out, b"c", &plan.count_sql, &declared);
        encode::describe_statement(&mut out, b"c");
        encode::parse_typed(
            &mut out,
            b"e",
            &format!("EXPLAIN (FORMAT JSON) {}", plan.rows_sql),
            &declared,
        );
        encode::describe_statement(&mut out, b"e");
        encode::sync(&mut out);
        let inferred = self.send(&out).await?.parameter_types;
        // The types the server settled on are checked too (one inferred,
        // or declared `unknown`, may be a domain, whose input runs its
        // CHECK when the value is bound).
        if !inferred.is_empty() {
            self.check(&[], &Names::default(), &inferred, 0).await?;
            self.search_path(&path).await?;
        }
        // The statements went as UTF-8 (the proxy reads the session's text
        // into UTF-8); the Bind's values go as the client sent them, in
        // its encoding.
        if let Some(encoding) = ask
            .settings
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("client_encoding"))
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.eq_ignore_ascii_case("UTF8"))
        {
            self.extended(
                "SELECT pg_catalog.set_config('client_encoding', $1, false)",
                &[encoding.as_bytes()],
            )
            .await?;
        }

        let bind = |statement: &[u8]| {
            let mut out = BytesMut::new();
            match ask.parameters {
                Some(section) => encode::bind_sent(&mut out, b"", statement, section),
                None => encode::bind(&mut out, b"", statement, &[]),
            }
            encode::execute(&mut out, b"");
            encode::sync(&mut out);
            out
        };
        // The estimate first (planning only), in a savepoint: an error
        // must not end the transaction the count runs in.
        let ms = ask.timeout.as_millis().max(1);
        self.simple(&format!(
            "SET LOCAL statement_timeout = {ms}; SET LOCAL lock_timeout = {ms}; SAVEPOINT portcullis_estimate"
        ))
        .await?;
        let estimate = match self.send(&bind(b"e")).await {
            Ok(e) => e.first_value().and_then(planned_rows),
            Err(UpstreamError::Query { .. }) => {
                self.simple("ROLLBACK TO SAVEPOINT portcullis_estimate")
                    .await?;
                None
            }
            Err(e) => return Err(e.into()),
        };
        let found = match self.send(&bind(b"c")).await {
            Ok(e) => {
                let n = e
                    .first_value()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| Stop::Unsafe("the count gave no answer".into()))?;
                Found::Counted(n)
            }
            Err(UpstreamError::Query { code, .. }) if code == sqlstate::QUERY_CANCELED => {
                estimate.map_or(Found::Nothing, Found::Estimated)
            }
            Err(e) => return Err(e.into()),
        };
        Ok((found, caveats))
    }

    /// Runs [`CHECKS`] under `search_path = pg_catalog` (and leaves it
    /// so); says what is unsafe, or what the count leaves out of the
    /// changed table `changed`.
    async fn check(
        &mut self,
        relations: &[u32],
        names: &Names,
        types: &[u32],
        changed: u32,
    ) -> Result<Vec<String>, Stop> {
        self.search_path("pg_catalog").await?;
        let oids = |o: &[u32]| {
            format!(
                "{{{}}}",
                o.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
            )
        };
        let changed = changed.to_string();
        let checked = self
            .extended(
                CHECKS,
                &[
                    oids(relations).as_bytes(),
                    text_array(&names.functions).as_bytes(),
                    text_array(&names.operators).as_bytes(),
                    oids(types).as_bytes(),
                    changed.as_bytes(),
                    text_array(&names.attributes).as_bytes(),
                    text_array(&names.unqualified).as_bytes(),
                ],
            )
            .await?;
        let row = checked
            .first_row()
            .ok_or_else(|| Stop::Unsafe("the checks gave no answer".into()))?;
        let at = |i: usize| row.get(i).cloned().flatten();
        if let Some(r) = at(0) {
            return Err(Stop::Unsafe(format!(
                "it reads {r}: only plain tables without row security, and without indexes, constraints or statistics on functions or operators outside pg_catalog, are read before approval"
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
                "it reads values of domains with CHECK constraints, which may call any function: {t}"
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
        if let Some(f) = at(10) {
            return Err(Stop::Unsafe(format!(
                "it names {f} after a dot, which calls a function of that name when there is no such column, and such a function exists outside pg_catalog or is volatile"
            )));
        }
        if let Some(t) = at(11) {
            return Err(Stop::Unsafe(format!(
                "a temporary table named {t} exists, which the session may be reading instead"
            )));
        }
        let count = |i: usize| at(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let mut caveats = Vec::new();
        match count(6) {
            0 => {}
            1 => caveats.push("what its trigger does".to_owned()),
            n => caveats.push(format!("what its {n} triggers do")),
        }
        if count(7) > 0 {
            caveats.push("what its rules do".to_owned());
        }
        match count(8) {
            0 => {}
            1 => caveats.push("rows a cascading foreign key changes in another table".to_owned()),
            n => caveats.push(format!(
                "rows {n} cascading foreign keys change in other tables"
            )),
        }
        match at(9).as_deref() {
            Some("v") => caveats.push("it changes a view: what that does".to_owned()),
            Some("f") => caveats.push("it changes a foreign table".to_owned()),
            _ => {}
        }
        Ok(caveats)
    }
}

/// How long the catalog checks may take, whatever `dry_run_timeout` says.
const CHECKS_TIMEOUT: Duration = Duration::from_secs(5);

const TEXT: u32 = 25;
const BYTEA: u32 = 17;

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
    fn the_session_path_is_quoted_as_the_proxy_read_it() {
        // One schema named `evil,pg_catalog` stays one schema.
        assert_eq!(
            session_path(&["$user".into(), "evil,pg_catalog".into(), "Sh\"op".into()]),
            r#""$user", "evil,pg_catalog", "Sh""op""#
        );
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
        for reader in ["domain_in", "pg_input_is_valid", "record_recv", "array_in"] {
            assert!(
                refused(&format!(
                    "DELETE FROM t WHERE id = 1 AND {reader}('z', 1, -1) IS NULL"
                ))
                .is_some_and(|w| w.contains(reader)),
                "{reader}"
            );
        }
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
