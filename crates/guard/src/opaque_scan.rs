//! Dangerous capabilities hidden in code the analysis reports as opaque.
//!
//! The analysis does not look inside a DO block or a function body: it
//! reports them as opaque code, which the default bundle refuses only in
//! production. But "dangerous capabilities are refused everywhere" must
//! also hold for `DO $$ BEGIN COPY t TO PROGRAM '...'; END $$` in
//! development. So for the statements that carry such code (DO, CREATE
//! FUNCTION / PROCEDURE, trigger functions included), this module reads the
//! code the way PostgreSQL will and reports every dangerous capability it
//! uses, for the guard to add to the policy's `dangerous` set:
//!
//! - `LANGUAGE plpgsql` (DO's default): the body is compiled by libpg_query's
//!   copy of the PL/pgSQL compiler, and every piece of SQL in it is analysed
//!   like a statement of its own: SQL statements, PERFORM, RETURN QUERY,
//!   cursor queries, conditions, loop bounds, RAISE arguments, variable
//!   defaults, both sides of assignments (plain expressions are analysed as
//!   `SELECT expr`, which is how PL/pgSQL runs them);
//! - `EXECUTE` (and `FOR ... IN EXECUTE`, `OPEN ... FOR EXECUTE`,
//!   `RETURN QUERY EXECUTE`) of a single string constant: the string is
//!   analysed as SQL, recursively;
//! - `LANGUAGE sql` with a string body: the body is analysed as SQL (a
//!   SQL-standard body, `BEGIN ATOMIC ... END` or `RETURN expr`, is part of
//!   the parse tree and analysed by the analysis itself);
//! - nested code (a DO inside EXECUTE, a CREATE FUNCTION inside a DO) is
//!   scanned the same way, up to [`MAX_DEPTH`] levels.
//!
//! **Fail closed.** Whatever the proxy cannot read counts as using every
//! dangerous capability ([`Blind`]): EXECUTE of anything but one string
//! constant (`EXECUTE format(...)`, `EXECUTE 'DROP TABLE ' || t`, a
//! variable), any other language (plperl, plpython, C...), code that does
//! not compile or parse, and code past the bounds ([`MAX_DEPTH`],
//! [`MAX_BODY_BYTES`], [`MAX_SNIPPETS`]). In development and staging such a
//! statement is refused by `deny-dangerous-capabilities`, with a hint that
//! says why; send the statements themselves, or EXECUTE constant strings.
//!
//! A database statement in the code (ALTER DATABASE ...: it may name
//! another target's database) counts as `server_admin`.
//!
//! **What this does not cover.** Code the proxy never sees: calls to
//! functions and procedures that already exist (`PERFORM f()`, `CALL p()`,
//! triggers firing, a trigger created on an existing function) run bodies
//! that were created outside Portcullis or before it; those are bounded
//! only by the privileges of the role Portcullis connects as. Functions
//! that run SQL given as a value (`query_to_xml`, `ts_stat`) are opaque to
//! the analysis and not followed here.
//!
//! Only statements whose analysis reports a DO block or a function
//! definition are scanned: ordinary statements cost one scan of their
//! (usually empty) `opaque` list.

use std::collections::BTreeSet;
use std::ffi::{c_char, c_int, CStr, CString};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use pg_query::protobuf::{self as pb, Token};
use pg_query::NodeEnum;
use portcullis_analysis::{self as analysis, Execution, OpaqueKind};
use portcullis_policy::Capability;
use portcullis_wire::Refusal;
use serde_json::Value;

use crate::describe::capabilities;

/// How many levels of code inside code are followed (a DO inside an
/// EXECUTE string inside a DO is two).
pub const MAX_DEPTH: usize = 6;

/// The longest body scanned; longer ones count as [`Blind::TooLarge`].
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// How many pieces of embedded SQL one statement's scan analyses.
pub const MAX_SNIPPETS: usize = 2_000;

/// Every capability a statement can reach from SQL: what code the proxy
/// cannot read is assumed to use. (The FunctionCall protocol message is not
/// reachable from SQL.)
const EVERY_SQL_CAPABILITY: [Capability; 8] = [
    Capability::ServerFiles,
    Capability::ServerProgram,
    Capability::Network,
    Capability::ForeignData,
    Capability::IdentityChange,
    Capability::PersistentSetting,
    Capability::ServerAdmin,
    Capability::TriggerBypass,
];

/// Why some code could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blind {
    /// EXECUTE of something other than one string constant.
    DynamicSql,
    /// A language other than plpgsql and sql (its name, as written).
    Language(String),
    /// The code does not compile or parse as PostgreSQL would need it to.
    Unreadable,
    /// Longer than [`MAX_BODY_BYTES`] or more than [`MAX_SNIPPETS`] pieces.
    TooLarge,
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// The scan itself failed (a bug): refused to be safe.
    Internal,
}

impl fmt::Display for Blind {
    /// A sentence for the client, about the client's own statement.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Blind::DynamicSql => f.write_str(
                "Portcullis cannot see which SQL an EXECUTE of a computed string runs \
                 (format(), ||, a variable), so it counts as using every dangerous capability; \
                 EXECUTE only string constants, or send the statements themselves",
            ),
            Blind::Language(language) => write!(
                f,
                "Portcullis cannot read code in language {}, so it counts as using every \
                 dangerous capability; use plpgsql or sql",
                shown(language)
            ),
            Blind::Unreadable => f.write_str(
                "Portcullis could not read the code (it does not compile as PL/pgSQL or SQL), \
                 so it counts as using every dangerous capability",
            ),
            Blind::TooLarge => f.write_str(
                "the code is too large for Portcullis to read, so it counts as using every \
                 dangerous capability; split it up",
            ),
            Blind::TooDeep => f.write_str(
                "the code nests code inside code too deeply for Portcullis to read, so it \
                 counts as using every dangerous capability",
            ),
            Blind::Internal => f.write_str(
                "Portcullis failed to read the code (a Portcullis bug; please report it), so \
                 it counts as using every dangerous capability",
            ),
        }
    }
}

/// What a statement's DO blocks and function bodies were found to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HiddenCode {
    /// Dangerous capabilities used inside the code (every one when
    /// `blind`).
    pub capabilities: BTreeSet<Capability>,
    /// Why some of the code could not be read, if so.
    pub blind: Option<Blind>,
    /// The first refusal [`crate::lexer::check`] makes of a statement
    /// inside the code: a setting no client may change (how text is
    /// read, `application_name`, `portcullis.*`) is refused in code as it
    /// is outside it.
    pub settings: Option<Refusal>,
    /// Every setting change and stored setting of the statements inside
    /// the code, for checks that depend on who runs it (see
    /// [`crate::limits`]).
    pub changes: Vec<analysis::SettingChange>,
    pub stored: Vec<String>,
    /// The code truncates a table: rows removed without being counted
    /// (see `Guard::judge_text` under a rows-changed budget).
    pub truncates: bool,
    /// What the code was, for the client: "DO block", "function body".
    what: &'static str,
}

impl HiddenCode {
    /// A sentence for a refused client, saying what was found inside the
    /// code: only about the client's own statement, never about policies.
    pub fn client_note(&self) -> Option<String> {
        if let Some(blind) = &self.blind {
            let mut note = blind.to_string();
            if let Some(first) = note.get(..1) {
                let upper = first.to_ascii_uppercase();
                note.replace_range(..1, &upper);
            }
            return Some(format!("{note}."));
        }
        if self.capabilities.is_empty() {
            return None;
        }
        let names: Vec<&str> = self.capabilities.iter().map(|c| c.as_str()).collect();
        Some(format!(
            "Portcullis found these capabilities inside the {}: {}.",
            self.what,
            names.join(", ")
        ))
    }
}

/// Whether the statement has code this module reads.
pub fn has_hidden_code(stmt: &analysis::StatementFacts) -> bool {
    stmt.opaque.iter().any(|o| {
        o.execution != Execution::Never
            && matches!(o.kind, OpaqueKind::DoBlock | OpaqueKind::FunctionDefinition)
    })
}

/// Scans the DO block or function body of `stmt`, a statement of the
/// analysed text `sql`. Cheap (and empty) for statements without one.
pub fn scan(stmt: &analysis::StatementFacts, sql: &str) -> HiddenCode {
    if !has_hidden_code(stmt) {
        return HiddenCode::default();
    }
    let mut scanner = Scanner::default();
    let what = match sql.get(stmt.span.clone()) {
        Some(text) => {
            // A panic in the parser bindings or here must not take the
            // session down, nor let the statement through.
            let outcome = catch_unwind(AssertUnwindSafe(|| scanner.code(text, 0)));
            match outcome {
                Ok(what) => what,
                Err(_) => {
                    scanner.blind = Some(Blind::Internal);
                    "code"
                }
            }
        }
        None => {
            scanner.blind = Some(Blind::Internal);
            "code"
        }
    };
    scanner.finish(what)
}

#[derive(Default)]
struct Scanner {
    found: BTreeSet<Capability>,
    blind: Option<Blind>,
    settings: Option<Refusal>,
    changes: Vec<analysis::SettingChange>,
    stored: Vec<String>,
    truncates: bool,
    snippets: usize,
}

impl Scanner {
    fn finish(self, what: &'static str) -> HiddenCode {
        let unreadable = self.blind.is_some();
        let capabilities = if self.blind.is_some() {
            EVERY_SQL_CAPABILITY.into_iter().collect()
        } else {
            self.found
        };
        HiddenCode {
            capabilities,
            blind: self.blind,
            settings: self.settings,
            changes: self.changes,
            stored: self.stored,
            // Unreadable code may truncate too.
            truncates: self.truncates || unreadable,
            what,
        }
    }

    fn give_up(&mut self, why: Blind) {
        self.blind.get_or_insert(why);
    }

    /// One statement holding code (DO, CREATE FUNCTION / PROCEDURE, ALTER
    /// FUNCTION); returns what the code is, for the client.
    fn code(&mut self, text: &str, depth: usize) -> &'static str {
        if self.blind.is_some() {
            return "code";
        }
        if depth > MAX_DEPTH {
            self.give_up(Blind::TooDeep);
            return "code";
        }
        if text.len() > MAX_BODY_BYTES {
            self.give_up(Blind::TooLarge);
            return "code";
        }
        let options = pg_query::ParserOptions::DISABLE_ESCAPE_STRING_WARNING;
        let Ok(tree) = pg_query::parse(text, options) else {
            self.give_up(Blind::Unreadable);
            return "code";
        };
        let node = tree
            .protobuf
            .stmts
            .first()
            .and_then(|raw| raw.stmt.as_ref())
            .and_then(|n| n.node.as_ref());
        match node {
            Some(NodeEnum::DoStmt(s)) => {
                let language = option_string(&s.args, "language").unwrap_or("plpgsql");
                match language {
                    "plpgsql" => self.plpgsql(text, &tree.protobuf, depth),
                    other => self.give_up(Blind::Language(other.to_owned())),
                }
                "DO block"
            }
            Some(NodeEnum::CreateFunctionStmt(s)) => {
                let what = if s.is_procedure {
                    "procedure body"
                } else {
                    "function body"
                };
                let language = option_string(&s.options, "language");
                let body =
                    s.options
                        .iter()
                        .find_map(|o| def_elem(o, "as"))
                        .and_then(|arg| match arg {
                            NodeEnum::List(l) => Some(l.items.as_slice()),
                            _ => None,
                        });
                match (language, s.sql_body.is_some(), body) {
                    // BEGIN ATOMIC / RETURN: in the tree the analysis walked.
                    (Some("sql") | None, true, None) => {}
                    (Some("sql"), false, Some([source])) => match string_node(source) {
                        Some(source) => self.sql(source, depth + 1),
                        None => self.give_up(Blind::Unreadable),
                    },
                    (Some("plpgsql"), false, Some([_])) => {
                        self.plpgsql(text, &tree.protobuf, depth)
                    }
                    (Some("sql" | "plpgsql") | None, _, _) => self.give_up(Blind::Unreadable),
                    (Some(other), _, _) => self.give_up(Blind::Language(other.to_owned())),
                }
                what
            }
            // ALTER FUNCTION has no body; what it sets is in the analysis.
            Some(NodeEnum::AlterFunctionStmt(_)) => "function definition",
            _ => {
                self.give_up(Blind::Internal);
                "code"
            }
        }
    }

    /// SQL text (one or more statements): its capabilities, and the code
    /// it holds in turn.
    fn sql(&mut self, text: &str, depth: usize) {
        if self.blind.is_some() {
            return;
        }
        if depth > MAX_DEPTH {
            return self.give_up(Blind::TooDeep);
        }
        self.snippets += 1;
        if self.snippets > MAX_SNIPPETS || text.len() > MAX_BODY_BYTES {
            return self.give_up(Blind::TooLarge);
        }
        let found = match analysis::analyze(text) {
            Ok(found) => found,
            Err(analysis::AnalysisError::TooDeep) => return self.give_up(Blind::TooDeep),
            Err(_) => return self.give_up(Blind::Unreadable),
        };
        for stmt in &found.statements {
            for cap in &stmt.capabilities {
                if cap.execution != Execution::Never {
                    self.found.extend(capabilities(cap));
                }
            }
            if self.settings.is_none() {
                self.settings = crate::lexer::check(stmt);
            }
            self.changes.extend(stmt.settings.iter().cloned());
            self.stored.extend(stmt.stored_settings.iter().cloned());
            self.truncates |= stmt.actions.iter().any(|a| {
                a.execution != Execution::Never
                    && matches!(a.kind, analysis::ActionKind::Truncate { .. })
            });
            // ALTER DATABASE inside code may name any database on the server
            // (CREATE and DROP DATABASE cannot run there). The policies only
            // learn the code's capabilities, not which database it names, so
            // it counts as the server administration it may be: refused
            // everywhere, like changing another target from outside.
            if stmt.actions.iter().any(|a| {
                a.execution != Execution::Never
                    && matches!(a.kind, analysis::ActionKind::Database { .. })
            }) {
                self.found.insert(Capability::ServerAdmin);
            }
            if has_hidden_code(stmt) {
                match text.get(stmt.span.clone()) {
                    Some(inner) => {
                        self.code(inner, depth + 1);
                    }
                    None => return self.give_up(Blind::Internal),
                }
            }
        }
    }

    /// A DO block or CREATE FUNCTION in PL/pgSQL (`text`, parsed as
    /// `tree`): every piece of SQL in it.
    fn plpgsql(&mut self, text: &str, tree: &pb::ParseResult, depth: usize) {
        let compiled = compile_plpgsql(text).or_else(|first| {
            // libpg_query compiles without a catalog, and some declarations
            // need one; retry with them spelled in a way it can compile.
            match relax_declarations(tree) {
                Some(relaxed) => compile_plpgsql(&relaxed),
                None => Err(first),
            }
        });
        match compiled {
            // One compiled function per DO / CREATE FUNCTION, each with its
            // body: anything else means libpg_query did not compile what
            // PostgreSQL will run.
            Ok(Value::Array(functions))
                if !functions.is_empty()
                    && functions
                        .iter()
                        .all(|f| f.pointer("/PLpgSQL_function/action").is_some()) =>
            {
                self.walk(&Value::Array(functions), depth)
            }
            Ok(_) => self.give_up(Blind::Unreadable),
            Err(why) => self.give_up(why),
        }
    }

    /// Walks libpg_query's JSON for compiled PL/pgSQL functions. Every
    /// `PLpgSQL_expr`, wherever it is (statements, variable defaults,
    /// cursor declarations), is analysed; the statements that run a string
    /// as SQL have that string followed too.
    fn walk(&mut self, value: &Value, depth: usize) {
        if self.blind.is_some() {
            return;
        }
        match value {
            Value::Object(map) => {
                for (key, v) in map {
                    match key.as_str() {
                        "PLpgSQL_expr" => self.expression(v, depth),
                        "PLpgSQL_stmt_dynexecute" | "PLpgSQL_stmt_dynfors" => {
                            self.dynamic(v.get("query"), depth)
                        }
                        "PLpgSQL_stmt_open" | "PLpgSQL_stmt_return_query" => {
                            if let Some(q) = v.get("dynquery") {
                                self.dynamic(Some(q), depth)
                            }
                        }
                        _ => {}
                    }
                    if key != "PLpgSQL_expr" {
                        self.walk(v, depth);
                    }
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.walk(item, depth);
                }
            }
            _ => {}
        }
    }

    /// A PL/pgSQL expression: `{ "query": "...", "parseMode": n }`, where
    /// the mode is PostgreSQL's RawParseMode.
    fn expression(&mut self, expr: &Value, depth: usize) {
        let Some(query) = expr.get("query").and_then(Value::as_str) else {
            return self.give_up(Blind::Unreadable);
        };
        match expr.get("parseMode").and_then(Value::as_i64).unwrap_or(0) {
            // RAW_PARSE_DEFAULT: a whole statement.
            0 => self.sql(query, depth),
            // RAW_PARSE_PLPGSQL_EXPR: a SELECT without the keyword.
            2 => self.sql(&format!("SELECT {query}"), depth),
            // RAW_PARSE_PLPGSQL_ASSIGN1..3: `target [indirection] := expr`.
            3..=5 => match split_assignment(query) {
                Some((target, value)) => {
                    if target.contains('[') {
                        // Subscripts are expressions too.
                        self.sql(&format!("SELECT {target}"), depth);
                    }
                    self.sql(&format!("SELECT {value}"), depth);
                }
                None => self.give_up(Blind::Unreadable),
            },
            _ => self.give_up(Blind::Unreadable),
        }
    }

    /// The expression of an EXECUTE: followed when it is one string
    /// constant, else the proxy is blind.
    fn dynamic(&mut self, expr: Option<&Value>, depth: usize) {
        let query = expr
            .and_then(|e| e.get("PLpgSQL_expr"))
            .and_then(|e| e.get("query"))
            .and_then(Value::as_str);
        match query.and_then(string_constant) {
            Some(sql) => self.sql(&sql, depth + 1),
            None => self.give_up(Blind::DynamicSql),
        }
    }
}

/// The value of a `DefElem` named `name` in a DO / CREATE FUNCTION option
/// list.
fn def_elem<'a>(option: &'a pb::Node, name: &str) -> Option<&'a NodeEnum> {
    match option.node.as_ref()? {
        NodeEnum::DefElem(d) if d.defname == name => d.arg.as_ref()?.node.as_ref(),
        _ => None,
    }
}

fn option_string<'a>(options: &'a [pb::Node], name: &str) -> Option<&'a str> {
    options.iter().find_map(|o| match def_elem(o, name)? {
        NodeEnum::String(s) => Some(s.sval.as_str()),
        _ => None,
    })
}

fn string_node(node: &pb::Node) -> Option<&str> {
    match node.node.as_ref()? {
        NodeEnum::String(s) => Some(&s.sval),
        _ => None,
    }
}

/// The DO or CREATE FUNCTION statement of `tree`, rewritten so that
/// libpg_query, which has no catalog, can compile it: PostgreSQL accepts
/// these declarations, libpg_query does not. Only types change, never
/// which statements the code has or their SQL, so the SQL found is the SQL
/// that runs.
///
/// - `%TYPE` in the signature (`p orders.id%TYPE`, `RETURNS t.c%TYPE`)
///   becomes `text` ("Not implemented" in libpg_query);
/// - `VARIADIC` parameters become plain ones (libpg_query does not know
///   that `int[]` is an array);
/// - `x tbl%ROWTYPE` in the body becomes `x tbl`, the same composite type
///   (libpg_query compiles the former as a scalar, so `x.f := ...` fails).
fn relax_declarations(tree: &pb::ParseResult) -> Option<String> {
    let mut tree = tree.clone();
    let node = tree.stmts.first_mut()?.stmt.as_mut()?.node.as_mut()?;
    let body = match node {
        NodeEnum::DoStmt(s) => s.args.iter_mut().find_map(|o| def_elem_mut(o, "as"))?,
        NodeEnum::CreateFunctionStmt(s) => {
            for p in &mut s.parameters {
                if let Some(NodeEnum::FunctionParameter(p)) = p.node.as_mut() {
                    if p.mode == pb::FunctionParameterMode::FuncParamVariadic as i32 {
                        p.mode = pb::FunctionParameterMode::FuncParamIn as i32;
                    }
                    if let Some(t) = p.arg_type.as_mut() {
                        relax_type(t);
                    }
                }
            }
            if let Some(t) = s.return_type.as_mut() {
                relax_type(t);
            }
            match s.options.iter_mut().find_map(|o| def_elem_mut(o, "as"))? {
                NodeEnum::List(l) => l.items.first_mut()?.node.as_mut()?,
                _ => return None,
            }
        }
        _ => return None,
    };
    let NodeEnum::String(body) = body else {
        return None;
    };
    body.sval = without_rowtype(&body.sval)?;
    pg_query::deparse(&tree, pg_query::DeparseOptions::default()).ok()
}

fn def_elem_mut<'a>(option: &'a mut pb::Node, name: &str) -> Option<&'a mut NodeEnum> {
    match option.node.as_mut()? {
        NodeEnum::DefElem(d) if d.defname == name => d.arg.as_mut()?.node.as_mut(),
        _ => None,
    }
}

fn relax_type(t: &mut pb::TypeName) {
    if t.pct_type {
        t.pct_type = false;
        t.names = vec![pb::Node {
            node: Some(NodeEnum::String(pb::String {
                sval: "text".into(),
            })),
        }];
        t.typmods.clear();
        t.typemod = -1;
    }
}

/// `body` without the `%ROWTYPE` suffixes (tokens, so strings and comments
/// are left alone).
fn without_rowtype(body: &str) -> Option<String> {
    let tokens = pg_query::scan_tokens(body).ok()?;
    let mut out = String::with_capacity(body.len());
    let mut copied = 0;
    for pair in tokens.windows(2) {
        let (percent, word) = (&pair[0], &pair[1]);
        let word_text =
            body.get(usize::try_from(word.start).ok()?..usize::try_from(word.end).ok()?)?;
        if percent.token == Token::Ascii37 as i32 && word_text.eq_ignore_ascii_case("rowtype") {
            let start = usize::try_from(percent.start).ok()?;
            out.push_str(body.get(copied..start)?);
            copied = usize::try_from(word.end).ok()?;
        }
    }
    out.push_str(body.get(copied..)?);
    Some(out)
}

/// Splits a PL/pgSQL assignment at its `:=` (or `=`): the first one outside
/// brackets and parentheses, since the target is a name with optional
/// fields and subscripts.
fn split_assignment(query: &str) -> Option<(&str, &str)> {
    let tokens = pg_query::scan_tokens(query).ok()?;
    let mut depth = 0i32;
    for t in &tokens {
        match Token::try_from(t.token).ok()? {
            Token::Ascii40 | Token::Ascii91 => depth += 1,
            Token::Ascii41 | Token::Ascii93 => depth -= 1,
            Token::ColonEquals | Token::Ascii61 if depth == 0 => {
                let start = usize::try_from(t.start).ok()?;
                let end = usize::try_from(t.end).ok()?;
                return Some((query.get(..start)?, query.get(end..)?));
            }
            _ => {}
        }
    }
    None
}

/// The value of an expression that is exactly one string constant (`'...'`,
/// `E'...'`, `$q$...$q$`, `U&'...'`), decoded as PostgreSQL decodes it.
fn string_constant(expr: &str) -> Option<String> {
    let tokens = pg_query::scan_tokens(expr).ok()?;
    let [only] = tokens.as_slice() else {
        return None;
    };
    if !matches!(
        Token::try_from(only.token).ok()?,
        Token::Sconst | Token::Usconst
    ) {
        return None;
    }
    let options = pg_query::ParserOptions::DISABLE_ESCAPE_STRING_WARNING;
    let tree = pg_query::parse(&format!("SELECT {expr}"), options).ok()?;
    let Some(NodeEnum::SelectStmt(select)) =
        tree.protobuf.stmts.first()?.stmt.as_ref()?.node.as_ref()
    else {
        return None;
    };
    let [target] = select.target_list.as_slice() else {
        return None;
    };
    let NodeEnum::ResTarget(target) = target.node.as_ref()? else {
        return None;
    };
    match target.val.as_ref()?.node.as_ref()? {
        NodeEnum::AConst(pb::AConst {
            val: Some(pb::a_const::Val::Sval(s)),
            ..
        }) => Some(s.sval.clone()),
        _ => None,
    }
}

/// A language name for a client message: printable, bounded.
fn shown(name: &str) -> String {
    name.chars().filter(|c| !c.is_control()).take(64).collect()
}

// libpg_query's PL/pgSQL entry point (pg_query.h), called directly rather
// than through `pg_query::parse_plpgsql`: for trigger functions libpg_query
// writes the implicit TG_* variables as malformed JSON (`{}},` in the
// datums array), which `parse_plpgsql` rejects; `repair_json` mends it.

#[repr(C)]
struct PgQueryError {
    message: *mut c_char,
    funcname: *mut c_char,
    filename: *mut c_char,
    lineno: c_int,
    cursorpos: c_int,
    context: *mut c_char,
}

#[repr(C)]
struct PgQueryPlpgsqlParseResult {
    plpgsql_funcs: *mut c_char,
    error: *mut PgQueryError,
}

extern "C" {
    fn pg_query_parse_plpgsql(input: *const c_char) -> PgQueryPlpgsqlParseResult;
    fn pg_query_free_plpgsql_parse_result(result: PgQueryPlpgsqlParseResult);
}

/// Compiles the DO blocks and PL/pgSQL functions of `text` (one statement)
/// and returns them as libpg_query's JSON array.
fn compile_plpgsql(text: &str) -> Result<Value, Blind> {
    let input = CString::new(text).map_err(|_| Blind::Unreadable)?;
    // SAFETY: `input` is NUL-terminated and outlives the call. libpg_query
    // works in its own thread-local memory context and returns malloc'd
    // buffers, which are only read before the single free below.
    let result = unsafe { pg_query_parse_plpgsql(input.as_ptr()) };
    let json = if result.error.is_null() && !result.plpgsql_funcs.is_null() {
        // SAFETY: without an error, `plpgsql_funcs` is a NUL-terminated
        // string, valid until the free below.
        Some(repair_json(
            unsafe { CStr::from_ptr(result.plpgsql_funcs) }.to_bytes(),
        ))
    } else {
        None
    };
    // SAFETY: `result` came from pg_query_parse_plpgsql and is freed once.
    unsafe { pg_query_free_plpgsql_parse_result(result) };
    let json = json.ok_or(Blind::Unreadable)?;
    // serde_json refuses more than 128 levels of nesting: about 40 nested
    // PL/pgSQL blocks.
    serde_json::from_slice(&json).map_err(|e| {
        if e.to_string().contains("recursion limit") {
            Blind::TooDeep
        } else {
            Blind::Unreadable
        }
    })
}

/// Mends libpg_query's one known JSON defect: a datum it cannot print
/// (the promise variables of trigger functions) comes out as `{}}` where an
/// array element belongs. In valid JSON an empty object in an array is
/// followed by `,` or `]`, never `}`, so `{}}` right after `[` or `,`
/// (outside strings) can only be that defect.
fn repair_json(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut i = 0;
    while i < json.len() {
        let b = json[i];
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        } else if json[i..].starts_with(b"{}}")
            && matches!(
                out.iter().rev().find(|c: &&u8| !c.is_ascii_whitespace()),
                Some(b'[' | b',')
            )
        {
            out.extend_from_slice(b"{}");
            i += 3;
            continue;
        }
        out.push(b);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repair_only_touches_the_defect() {
        assert_eq!(
            repair_json(br#"[{"a":1},{}},{}},{"b":{}}]"#),
            br#"[{"a":1},{},{},{"b":{}}]"#.to_vec()
        );
        assert_eq!(
            repair_json(br#"[{"q":"[{}},{}}"}]"#),
            br#"[{"q":"[{}},{}}"}]"#.to_vec()
        );
        assert_eq!(repair_json(br#"{"x":[{}}]}"#), br#"{"x":[{}]}"#.to_vec());
    }

    #[test]
    fn assignments_split_at_the_first_top_level_operator() {
        assert_eq!(split_assignment("n := n + 1"), Some(("n ", " n + 1")));
        assert_eq!(split_assignment("a[i = 1] = 2"), Some(("a[i = 1] ", " 2")));
        assert_eq!(split_assignment("r.f := x = y"), Some(("r.f ", " x = y")));
        assert_eq!(split_assignment("nothing"), None);
    }

    #[test]
    fn only_single_string_constants_are_constants() {
        assert_eq!(
            string_constant("'SET ROLE x'").as_deref(),
            Some("SET ROLE x")
        );
        assert_eq!(string_constant("E'a\\'b'").as_deref(), Some("a'b"));
        assert_eq!(string_constant("$q$ it's $q$").as_deref(), Some(" it's "));
        assert_eq!(string_constant("'a' || 'b'"), None);
        assert_eq!(string_constant("format('%s', x)"), None);
        assert_eq!(string_constant("v_sql"), None);
        assert_eq!(string_constant("'a'::text"), None);
        assert_eq!(string_constant("'a' FROM t"), None);
    }
}
