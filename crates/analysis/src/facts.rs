//! What the analysis reports: plain data, no behaviour beyond small queries.
//!
//! Everything here is derived from the parse tree alone, so one [`Analysis`]
//! is valid for a statement text whatever the session state; the parts that
//! depend on the session or the catalog (which schema a name lands in, whether
//! a function is read-only) are computed from these facts by
//! [`crate::resolve`] and [`crate::functions`].

use std::fmt;
use std::ops::Range;

use serde::Serialize;

use crate::functions::{FunctionCatalog, FunctionSafety};
use crate::lineage::{Assignment, Lineage, Output};

/// The analysis of one statement string: every statement it contains, in
/// order. A simple Query message may carry several; an extended-protocol
/// Parse carries at most one (the server refuses more).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Analysis {
    /// One entry per statement, in source order. Empty for a string of only
    /// whitespace, comments and semicolons (the server answers
    /// EmptyQueryResponse).
    pub statements: Vec<StatementFacts>,
    /// Each statement's text as the audit trail keeps it, computed on
    /// first use (see [`Analysis::audit_texts`]).
    #[serde(skip)]
    pub audit: crate::audit_text::AuditTexts,
}

impl Analysis {
    /// Number of statements in the string.
    pub fn statement_count(&self) -> usize {
        self.statements.len()
    }

    /// Each statement's audit text (literals as placeholders, comments
    /// dropped), computed from `sql` (the text analysed, or any text of
    /// its shape) the first time it is asked for.
    pub fn audit_texts(&self, sql: &str) -> std::sync::Arc<[crate::audit_text::AuditText]> {
        self.audit
            .get_or_compute(sql, self.statements.iter().map(|s| s.span.clone()))
    }
}

/// Everything one statement does, found by walking its whole parse tree.
///
/// Lists are deduplicated and in first-seen order. Facts from nested parts
/// (CTEs, sub-queries, the body of EXPLAIN ANALYZE, PREPARE, CREATE RULE...)
/// are included, each tagged with its [`Execution`] where that matters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatementFacts {
    /// Byte range of the statement in the analysed text, as PostgreSQL's
    /// `stmt_location` / `stmt_len` give it: from its first token up to
    /// the separating semicolon (whitespace before the semicolon included).
    pub span: Range<usize>,
    /// What the statement is, judged by the node type at the top of its
    /// parse tree (never by a keyword in the text).
    pub class: StatementClass,
    /// Every action performed: the statement's own first, then nested ones
    /// (data-modifying CTEs, the body of EXPLAIN / PREPARE / COPY (query) /
    /// CREATE TABLE AS / rules, one entry per ALTER TABLE sub-command) in
    /// tree order.
    pub actions: Vec<Action>,
    /// Relations (tables, views, sequences, ...) named anywhere, one entry
    /// per name as written, with every way the statement uses them. CTE
    /// references are not relations and are left out.
    pub relations: Vec<RelationUse>,
    /// Columns read or written, where the tree determines them (see
    /// [`ColumnUse`]).
    pub columns: Vec<ColumnUse>,
    /// Every function call, wherever it appears (target lists, WHERE, FROM,
    /// function arguments, VALUES, DEFAULT expressions, CTEs...).
    pub functions: Vec<FunctionUse>,
    /// Every operator used (`=`, `||`, `OPERATOR(app.===)`), schema-qualified
    /// when written so, including those used implicitly by name (`>=` and
    /// `<=` for BETWEEN, `=` for `CASE x WHEN` and NATURAL / USING joins).
    /// Operators resolve through the search_path like functions: see
    /// [`StatementFacts::is_opaque`].
    pub operators: Vec<QualifiedName>,
    /// Code whose effect the analysis cannot see: DO blocks, function /
    /// trigger / rule definitions, CALL, unknown operators. Calls to
    /// functions not known to be read-only are opaque too, but that needs
    /// the catalog: see [`StatementFacts::opaque_calls`].
    pub opaque: Vec<OpaqueCode>,
    /// Dangerous capabilities used (server files and programs, foreign
    /// data, identity changes...).
    pub capabilities: Vec<CapabilityUse>,
    /// Run-time settings changed by SET / RESET / set_config / DISCARD ALL,
    /// for the proxy to track (search_path) or refuse (lexing settings).
    pub settings: Vec<SettingChange>,
    /// Settings this statement stores rather than changes: the names in
    /// function and procedure SET clauses (in force while the function
    /// runs), ALTER ROLE / DATABASE ... SET / RESET and ALTER SYSTEM
    /// (future sessions). Lowercase.
    pub stored_settings: Vec<String>,
    /// The result set the statement returns, column by column, with the
    /// source columns each value is computed from (see [`crate::lineage`]).
    /// `None` when the statement returns no rows (DML without RETURNING,
    /// DDL, SET, SELECT INTO...).
    pub output: Option<Output>,
    /// The options of a `COPY ... TO STDOUT`, which decide how its rows
    /// are laid out on the wire (for masking them); `None` for any other
    /// statement.
    pub copy_out: Option<CopyOptions>,
    /// For PREPARE: the result set its body returns when executed (as
    /// [`StatementFacts::output`]), so EXECUTE can be judged by it.
    pub prepared_output: Option<Output>,
    /// The columns the statement uses to choose, group or order rows, at
    /// any depth: WHERE, JOIN ON / USING (NATURAL: every column of both
    /// sides), GROUP BY, HAVING, ORDER BY, DISTINCT ON, LIMIT, window
    /// PARTITION BY / ORDER BY, what EXISTS sub-queries choose by, the
    /// WHERE of UPDATE / DELETE, MERGE's ON and WHEN conditions, in CTEs,
    /// sub-queries and the bodies of PREPARE, EXPLAIN, DECLARE, CREATE
    /// TABLE AS and CREATE VIEW. A caller who may not see a column's values
    /// can still test guesses against them there (`WHERE ssn LIKE '1%'`):
    /// inference. Resolved as output lineage is (see [`crate::lineage`]);
    /// whether a source is computed means nothing here.
    pub row_choice: Lineage,
    /// The values the statement writes into columns, at any depth
    /// (data-modifying CTEs, the bodies of PREPARE and EXPLAIN): per
    /// written relation, which columns receive values computed from what
    /// (see [`crate::lineage`], *Written values*). Each INSERT, UPDATE,
    /// MERGE, CREATE TABLE AS and SELECT INTO the lineage pass reaches
    /// has at least one entry for its relation; one it does not reach
    /// (a rule's actions, past the depth or work limits) has none, and a
    /// consumer must then treat its values as unknown.
    pub writes: Vec<Assignment>,
}

impl StatementFacts {
    /// Whether the statement is a COPY FROM STDIN: the server enters
    /// copy-in mode and reads the data from the client.
    pub fn copies_from_client(&self) -> bool {
        matches!(
            self.actions.first().map(|a| &a.kind),
            Some(ActionKind::Copy {
                direction: CopyDirection::From,
                endpoint: CopyEndpoint::Client,
                ..
            })
        )
    }

    /// Whether any action modifies table data (INSERT, UPDATE, DELETE,
    /// MERGE, TRUNCATE, COPY FROM, CREATE TABLE AS, SELECT INTO), at any
    /// depth and whenever it runs.
    pub fn modifies_data(&self) -> bool {
        self.actions.iter().any(|a| a.kind.modifies_data())
    }

    /// The UPDATE / DELETE / MERGE actions that could touch every row of
    /// their table: no WHERE, a tautology, or a condition that does not
    /// depend on the row. Empty when every such action is filtered.
    pub fn unfiltered_modifications(&self) -> Vec<&Action> {
        self.actions
            .iter()
            .filter(|a| a.kind.filter().is_some_and(|f| !f.is_effective()))
            .collect()
    }

    /// Whether the statement has opaque code of its own (see
    /// [`StatementFacts::opaque`]), calls a function not known to be
    /// read-only, or uses an unqualified operator while pg_catalog is not
    /// searched first (a same-named operator in an earlier schema would win,
    /// and may call anything). `catalog` answers for functions the built-in
    /// table does not know; without one, such functions are opaque (fail
    /// closed).
    pub fn is_opaque(&self, search_path: &[String], catalog: Option<&dyn FunctionCatalog>) -> bool {
        !self.opaque.is_empty()
            || !self.opaque_calls(search_path, catalog).is_empty()
            || !self.shadowable_operators(search_path).is_empty()
    }

    /// The unqualified operators that could resolve outside pg_catalog with
    /// this search_path (all of them when pg_catalog is listed after another
    /// schema, none otherwise).
    pub fn shadowable_operators(&self, search_path: &[String]) -> Vec<&QualifiedName> {
        if crate::functions::pg_catalog_searched_first(search_path) {
            return Vec::new();
        }
        self.operators
            .iter()
            .filter(|o| o.schema.is_none())
            .collect()
    }

    /// The function calls that are not known to be read-only (see
    /// [`crate::functions::assess`]).
    pub fn opaque_calls(
        &self,
        search_path: &[String],
        catalog: Option<&dyn FunctionCatalog>,
    ) -> Vec<&FunctionUse> {
        self.functions
            .iter()
            .filter(|f| {
                !matches!(
                    crate::functions::assess(f, search_path, catalog),
                    FunctionSafety::ReadOnly(_)
                )
            })
            .collect()
    }
}

/// The kinds of statement, one per policy action. Every top-level parse
/// node maps to exactly one; nested actions carry their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StatementClass {
    /// SELECT, VALUES, TABLE: a query without INTO.
    Select,
    /// INSERT (including ... ON CONFLICT).
    Insert,
    /// UPDATE.
    Update,
    /// DELETE.
    Delete,
    /// MERGE.
    Merge,
    /// COPY in either direction.
    Copy,
    /// CREATE TABLE AS, CREATE MATERIALIZED VIEW, SELECT INTO.
    CreateTableAs,
    /// EXPLAIN, with or without ANALYZE (the body's own actions are
    /// reported separately).
    Explain,
    /// Every DROP form: DropStmt (all object types), DROP DATABASE,
    /// DROP ROLE, DROP TABLESPACE, DROP SUBSCRIPTION, DROP USER MAPPING,
    /// DROP OWNED.
    Drop,
    /// Every rename form: RenameStmt (RENAME TO / COLUMN / CONSTRAINT /
    /// ATTRIBUTE...), ALTER TYPE ... RENAME VALUE, ALTER ... SET SCHEMA.
    Rename,
    /// TRUNCATE.
    Truncate,
    /// ALTER TABLE / INDEX / VIEW / MATERIALIZED VIEW / FOREIGN TABLE /
    /// SEQUENCE sub-commands (AlterTableStmt), one action per sub-command.
    AlterTable,
    /// Other CREATE / ALTER / COMMENT / SECURITY LABEL statements: changes
    /// to the schema that neither destroy nor rename.
    SchemaChange,
    /// GRANT / REVOKE (privileges and roles), ALTER DEFAULT PRIVILEGES,
    /// CREATE / ALTER ROLE, ALTER ... OWNER TO, REASSIGN OWNED.
    Privileges,
    /// SET, RESET, SHOW, DISCARD.
    Session,
    /// PREPARE.
    Prepare,
    /// EXECUTE.
    Execute,
    /// DEALLOCATE.
    Deallocate,
    /// BEGIN, COMMIT, ROLLBACK, SAVEPOINT, RELEASE, PREPARE TRANSACTION,
    /// COMMIT / ROLLBACK PREPARED, SET CONSTRAINTS.
    Transaction,
    /// DECLARE, FETCH, MOVE, CLOSE.
    Cursor,
    /// LOCK TABLE.
    Lock,
    /// CALL.
    Call,
    /// DO.
    Do,
    /// VACUUM, ANALYZE, CLUSTER, REINDEX, REFRESH MATERIALIZED VIEW,
    /// CHECKPOINT.
    Maintenance,
    /// LISTEN, NOTIFY, UNLISTEN.
    Notification,
    /// ALTER SYSTEM, LOAD.
    Administration,
    /// Anything else the grammar accepts (the statement name is in the
    /// action).
    Other,
}

impl StatementClass {
    /// A stable lower-case name, suitable as a policy action id.
    pub fn as_str(self) -> &'static str {
        match self {
            StatementClass::Select => "select",
            StatementClass::Insert => "insert",
            StatementClass::Update => "update",
            StatementClass::Delete => "delete",
            StatementClass::Merge => "merge",
            StatementClass::Copy => "copy",
            StatementClass::CreateTableAs => "create_table_as",
            StatementClass::Explain => "explain",
            StatementClass::Drop => "drop",
            StatementClass::Rename => "rename",
            StatementClass::Truncate => "truncate",
            StatementClass::AlterTable => "alter_table",
            StatementClass::SchemaChange => "schema_change",
            StatementClass::Privileges => "privileges",
            StatementClass::Session => "session",
            StatementClass::Prepare => "prepare",
            StatementClass::Execute => "execute",
            StatementClass::Deallocate => "deallocate",
            StatementClass::Transaction => "transaction",
            StatementClass::Cursor => "cursor",
            StatementClass::Lock => "lock",
            StatementClass::Call => "call",
            StatementClass::Do => "do",
            StatementClass::Maintenance => "maintenance",
            StatementClass::Notification => "notification",
            StatementClass::Administration => "administration",
            StatementClass::Other => "other",
        }
    }
}

impl fmt::Display for StatementClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When a piece of the tree runs relative to the statement that carries it.
///
/// Ordered: a part nested in several containers takes the greatest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Execution {
    /// Runs as part of this statement.
    Now,
    /// Stored by this statement and run by later ones: the body of PREPARE
    /// (at EXECUTE), DECLARE CURSOR (at FETCH), CREATE RULE actions,
    /// CREATE TRIGGER ... WHEN, CREATE VIEW, CREATE POLICY expressions,
    /// SQL-standard function bodies, CREATE MATERIALIZED VIEW ... WITH NO
    /// DATA. A policy should judge these as if they ran now: the proxy may
    /// not see the statement that triggers them. (Expressions stored by
    /// CREATE / ALTER TABLE, such as DEFAULT, CHECK and GENERATED, are
    /// reported as `Now`: ALTER TABLE ... ADD COLUMN ... DEFAULT runs its
    /// default for every existing row at once.)
    Deferred,
    /// Planned but never run: the body of plain EXPLAIN (without ANALYZE)
    /// and of CREATE TABLE AS ... WITH NO DATA.
    Never,
}

/// A name as written, optionally schema-qualified. Identifiers are as
/// PostgreSQL sees them after parsing: unquoted ones folded to lower case,
/// quoted and `U&"..."` ones decoded verbatim. A database qualifier
/// (`db.schema.table`) is dropped: the server refuses any other database.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct QualifiedName {
    /// The schema, when written (or implied, as `pg_temp` for TEMP objects).
    pub schema: Option<String>,
    /// The object's own name.
    pub name: String,
}

impl QualifiedName {
    /// A name in a known schema.
    pub fn new(schema: Option<&str>, name: &str) -> Self {
        QualifiedName {
            schema: schema.map(str::to_owned),
            name: name.to_owned(),
        }
    }
}

impl fmt::Display for QualifiedName {
    /// `schema.name` or `name`, unquoted: an identifier for logs and policy
    /// entities, not SQL.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// One action a statement performs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Action {
    /// What is done, with its own details.
    pub kind: ActionKind,
    /// When it runs.
    pub execution: Execution,
}

/// The actions, by kind. Table names are as written (see
/// [`QualifiedName`]); [`crate::resolve`] qualifies them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ActionKind {
    /// A query: the statement itself, or the body of EXPLAIN / PREPARE /
    /// COPY / DECLARE / CREATE VIEW. Sub-queries and CTEs that only read
    /// are not actions: what they read is in `relations`.
    Select,
    /// `SELECT ... INTO table`: creates and fills a table.
    SelectInto {
        /// The table created.
        table: QualifiedName,
    },
    /// CREATE TABLE AS / CREATE MATERIALIZED VIEW.
    CreateTableAs {
        /// The table or materialised view created.
        table: QualifiedName,
        /// A materialised view rather than a table.
        materialized: bool,
        /// False for `WITH NO DATA`: the query is not run now.
        with_data: bool,
    },
    /// INSERT.
    Insert {
        /// The target table.
        table: QualifiedName,
        /// The ON CONFLICT action, if any.
        on_conflict: Option<OnConflict>,
        /// Has a RETURNING clause.
        returning: bool,
    },
    /// UPDATE.
    Update {
        /// The target table.
        table: QualifiedName,
        /// How its WHERE restricts the rows.
        filter: Filter,
        /// Has a RETURNING clause.
        returning: bool,
    },
    /// DELETE.
    Delete {
        /// The target table.
        table: QualifiedName,
        /// How its WHERE restricts the rows.
        filter: Filter,
        /// Has a RETURNING clause.
        returning: bool,
    },
    /// MERGE.
    Merge {
        /// The target table.
        table: QualifiedName,
        /// The ON join condition, judged like a WHERE.
        join: Filter,
        /// The WHEN clauses, in order.
        clauses: Vec<MergeClause>,
        /// Has a RETURNING clause.
        returning: bool,
    },
    /// COPY.
    Copy {
        /// The table, or `None` for `COPY (query) TO`.
        table: Option<QualifiedName>,
        /// TO or FROM.
        direction: CopyDirection,
        /// Where the data goes or comes from.
        endpoint: CopyEndpoint,
    },
    /// EXPLAIN. With `analyze` the body runs; without, it is only planned.
    Explain {
        /// ANALYZE was requested (`EXPLAIN ANALYZE` or `(ANALYZE [true])`).
        analyze: bool,
    },
    /// TRUNCATE.
    Truncate {
        /// Every table named.
        tables: Vec<QualifiedName>,
        /// CASCADE: tables with foreign keys to these are truncated too.
        cascade: bool,
    },
    /// Any DROP of any object type (see [`StatementClass::Drop`]), except
    /// DROP OWNED.
    Drop {
        /// The kind of object dropped.
        object: ObjectKind,
        /// The names, dotted as written (functions with their argument
        /// count, `f/2`; triggers, rules and policies as `table.name`).
        names: Vec<String>,
        /// CASCADE: dependent objects are dropped too.
        cascade: bool,
    },
    /// DROP OWNED BY: drops every object the roles own in this database.
    DropOwned {
        /// The roles named.
        roles: Vec<String>,
        /// CASCADE.
        cascade: bool,
    },
    /// A rename: RenameStmt, or ALTER TYPE ... RENAME VALUE.
    Rename {
        /// What is renamed (for RENAME COLUMN: [`ObjectKind::Column`]).
        object: ObjectKind,
        /// The object (for columns, constraints, triggers, policies and
        /// enum values: the table or type they belong to).
        name: String,
        /// The column, constraint, trigger, policy or enum value renamed,
        /// when it is one.
        member: Option<String>,
        /// The new name.
        new_name: String,
    },
    /// ALTER ... SET SCHEMA: moves an object to another schema.
    SetSchema {
        /// What is moved.
        object: ObjectKind,
        /// Its name as written.
        name: String,
        /// The schema it moves to.
        new_schema: String,
    },
    /// One sub-command of ALTER TABLE (and of ALTER INDEX / VIEW /
    /// MATERIALIZED VIEW / FOREIGN TABLE / SEQUENCE / TYPE, which share the
    /// node).
    AlterTable {
        /// The relation altered.
        table: QualifiedName,
        /// The kind of relation the statement said it alters.
        object: ObjectKind,
        /// PostgreSQL's name for the sub-command (`AT_DropColumn`,
        /// `AT_AlterColumnType`, `AT_DetachPartition`...).
        command: &'static str,
        /// The column, constraint or trigger it names, if any.
        name: Option<String>,
        /// What it does to the data.
        effect: AlterTableEffect,
    },
    /// Another CREATE / ALTER / COMMENT / SECURITY LABEL statement.
    SchemaChange {
        /// PostgreSQL's node name (`CreateStmt`, `IndexStmt`...).
        statement: &'static str,
    },
    /// A statement of [`StatementClass::Privileges`].
    Privileges {
        /// PostgreSQL's node name (`GrantStmt`, `AlterRoleStmt`...).
        statement: &'static str,
    },
    /// PREPARE name AS ...: the body's actions follow, [`Execution::Deferred`].
    Prepare {
        /// The prepared statement's name.
        name: String,
    },
    /// EXECUTE name: runs a statement prepared earlier; the proxy must
    /// judge it by the verdict it tied to `name` at PREPARE time.
    Execute {
        /// The prepared statement's name.
        name: String,
    },
    /// DEALLOCATE.
    Deallocate {
        /// The name, or `None` for DEALLOCATE ALL.
        name: Option<String>,
    },
    /// DISCARD.
    Discard {
        /// What is discarded.
        target: DiscardTarget,
    },
    /// SET / RESET / SHOW (details in [`StatementFacts::settings`]).
    Session {
        /// PostgreSQL's node name (`VariableSetStmt`, `VariableShowStmt`).
        statement: &'static str,
    },
    /// Transaction control.
    Transaction {
        /// Which command.
        kind: TransactionKind,
    },
    /// DECLARE / FETCH / MOVE / CLOSE.
    Cursor {
        /// PostgreSQL's node name.
        statement: &'static str,
        /// The cursor's name (empty for CLOSE ALL).
        name: String,
    },
    /// LOCK TABLE.
    Lock {
        /// Every table named.
        tables: Vec<QualifiedName>,
    },
    /// CALL: runs a procedure (opaque).
    Call {
        /// The procedure as written.
        procedure: QualifiedName,
    },
    /// DO: runs an anonymous code block (opaque).
    Do,
    /// A statement of [`StatementClass::Maintenance`].
    Maintenance {
        /// PostgreSQL's node name.
        statement: &'static str,
    },
    /// LISTEN / NOTIFY / UNLISTEN.
    Notification {
        /// PostgreSQL's node name.
        statement: &'static str,
    },
    /// ALTER SYSTEM / LOAD.
    Administration {
        /// PostgreSQL's node name.
        statement: &'static str,
    },
    /// Any other statement.
    Other {
        /// PostgreSQL's node name.
        statement: &'static str,
    },
    /// CREATE, ALTER or DROP DATABASE, in any form, and GRANT / REVOKE,
    /// COMMENT and SECURITY LABEL ON DATABASE: one per database named.
    /// Reported in addition to the statement's own action (DROP DATABASE
    /// is also a [`ActionKind::Drop`], ALTER DATABASE ... RENAME a
    /// [`ActionKind::Rename`]...), so that a statement reaching another
    /// database on the same server can be told from one on the session's
    /// own. See `crate::database`.
    Database {
        /// What is done to it.
        operation: DatabaseOperation,
        /// The database, as PostgreSQL reads the name (folded, unquoted).
        name: String,
    },
}

/// What a database statement does to the database it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DatabaseOperation {
    /// CREATE DATABASE.
    Create,
    /// ALTER DATABASE: options, RENAME TO, OWNER TO, SET / RESET, REFRESH
    /// COLLATION VERSION; and GRANT / REVOKE, COMMENT, SECURITY LABEL ON
    /// DATABASE.
    Alter,
    /// DROP DATABASE.
    Drop,
}

impl ActionKind {
    /// The class this action belongs to.
    pub fn class(&self) -> StatementClass {
        match self {
            ActionKind::Select => StatementClass::Select,
            ActionKind::SelectInto { .. } | ActionKind::CreateTableAs { .. } => {
                StatementClass::CreateTableAs
            }
            ActionKind::Insert { .. } => StatementClass::Insert,
            ActionKind::Update { .. } => StatementClass::Update,
            ActionKind::Delete { .. } => StatementClass::Delete,
            ActionKind::Merge { .. } => StatementClass::Merge,
            ActionKind::Copy { .. } => StatementClass::Copy,
            ActionKind::Explain { .. } => StatementClass::Explain,
            ActionKind::Truncate { .. } => StatementClass::Truncate,
            ActionKind::Drop { .. } | ActionKind::DropOwned { .. } => StatementClass::Drop,
            ActionKind::Rename { .. } | ActionKind::SetSchema { .. } => StatementClass::Rename,
            ActionKind::AlterTable { .. } => StatementClass::AlterTable,
            ActionKind::SchemaChange { .. } => StatementClass::SchemaChange,
            ActionKind::Privileges { .. } => StatementClass::Privileges,
            ActionKind::Prepare { .. } => StatementClass::Prepare,
            ActionKind::Execute { .. } => StatementClass::Execute,
            ActionKind::Deallocate { .. } => StatementClass::Deallocate,
            ActionKind::Discard { .. } | ActionKind::Session { .. } => StatementClass::Session,
            ActionKind::Transaction { .. } => StatementClass::Transaction,
            ActionKind::Cursor { .. } => StatementClass::Cursor,
            ActionKind::Lock { .. } => StatementClass::Lock,
            ActionKind::Call { .. } => StatementClass::Call,
            ActionKind::Do => StatementClass::Do,
            ActionKind::Maintenance { .. } => StatementClass::Maintenance,
            ActionKind::Notification { .. } => StatementClass::Notification,
            ActionKind::Administration { .. } => StatementClass::Administration,
            ActionKind::Other { .. } => StatementClass::Other,
            ActionKind::Database { operation, .. } => match operation {
                DatabaseOperation::Create | DatabaseOperation::Alter => {
                    StatementClass::SchemaChange
                }
                DatabaseOperation::Drop => StatementClass::Drop,
            },
        }
    }

    /// Whether the action writes table rows.
    pub fn modifies_data(&self) -> bool {
        match self {
            ActionKind::Insert { .. }
            | ActionKind::Update { .. }
            | ActionKind::Delete { .. }
            | ActionKind::Merge { .. }
            | ActionKind::Truncate { .. }
            | ActionKind::SelectInto { .. } => true,
            ActionKind::CreateTableAs { with_data, .. } => *with_data,
            ActionKind::Copy { direction, .. } => *direction == CopyDirection::From,
            _ => false,
        }
    }

    /// For UPDATE, DELETE and MERGE: the filter that decides how many rows
    /// may be touched. For MERGE, the weakest over its UPDATE and DELETE
    /// clauses (see [`MergeClause`]). `None` for other actions.
    pub fn filter(&self) -> Option<Filter> {
        match self {
            ActionKind::Update { filter, .. } | ActionKind::Delete { filter, .. } => Some(*filter),
            ActionKind::Merge { join, clauses, .. } => Some(merge_filter(*join, clauses)),
            _ => None,
        }
    }
}

/// The rows a MERGE may update or delete: a WHEN MATCHED clause is bounded
/// by the join condition or its own AND condition; a WHEN NOT MATCHED BY
/// SOURCE clause acts on target rows the join did NOT match, so only its own
/// condition bounds it. The weakest clause decides.
fn merge_filter(join: Filter, clauses: &[MergeClause]) -> Filter {
    let mut weakest = Filter::Restrictive;
    for clause in clauses {
        if !matches!(clause.command, MergeCommand::Update | MergeCommand::Delete) {
            continue;
        }
        let bound = match clause.when {
            MergeWhen::Matched => {
                if clause.condition.is_effective() {
                    clause.condition
                } else {
                    join
                }
            }
            MergeWhen::NotMatchedBySource => clause.condition,
            MergeWhen::NotMatchedByTarget => continue,
        };
        if !bound.is_effective() && weakest.is_effective() {
            weakest = bound;
        }
    }
    weakest
}

/// How a WHERE clause (or a MERGE join condition) restricts the rows of an
/// UPDATE, DELETE or MERGE. See [`crate::where_clause`] for exactly what is
/// detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Filter {
    /// No WHERE at all: every row.
    Absent,
    /// True for every row (or every row where a column is not null):
    /// `true`, `1 = 1`, `id = id`, `x IS NULL OR x IS NOT NULL`, `OR true`...
    Tautology,
    /// Does not refer to the rows at all (`WHERE $1`, `WHERE now() < '2030-01-01'`,
    /// `WHERE EXISTS (SELECT 1 FROM other o WHERE o.x = 1)`): all rows or none.
    RowIndependent,
    /// `WHERE CURRENT OF cursor`: the one row under the cursor.
    CurrentOf,
    /// Always false (`WHERE false`, `1 = 0`): touches no row.
    Contradiction,
    /// Refers to the rows and is not a detected tautology.
    Restrictive,
}

impl Filter {
    /// Whether the filter keeps the statement from touching every row.
    pub fn is_effective(self) -> bool {
        matches!(
            self,
            Filter::CurrentOf | Filter::Contradiction | Filter::Restrictive
        )
    }
}

/// INSERT ... ON CONFLICT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnConflict {
    /// DO NOTHING.
    DoNothing,
    /// DO UPDATE SET ...: existing rows that conflict are updated.
    DoUpdate,
}

/// One WHEN clause of a MERGE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct MergeClause {
    /// Which rows it applies to.
    pub when: MergeWhen,
    /// What it does to them.
    pub command: MergeCommand,
    /// Its `AND condition`, judged like a WHERE ([`Filter::Absent`] when
    /// there is none).
    pub condition: Filter,
}

/// `WHEN [NOT] MATCHED [BY SOURCE | BY TARGET]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeWhen {
    /// WHEN MATCHED: target rows joined to a source row.
    Matched,
    /// WHEN NOT MATCHED BY SOURCE: target rows no source row joined.
    NotMatchedBySource,
    /// WHEN NOT MATCHED [BY TARGET]: source rows with no target row.
    NotMatchedByTarget,
}

/// THEN UPDATE / DELETE / INSERT / DO NOTHING.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeCommand {
    /// UPDATE SET ...
    Update,
    /// DELETE.
    Delete,
    /// INSERT ...
    Insert,
    /// DO NOTHING.
    Nothing,
}

/// COPY direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CopyDirection {
    /// COPY ... TO: reads the table or runs the query.
    To,
    /// COPY ... FROM: writes the table.
    From,
}

/// The options of a `COPY ... TO STDOUT` that shape its output, as
/// written (PostgreSQL validates them; the defaults are its own). Option
/// values are never `A_Const` nodes, so a text with COPY options is never
/// analysed by shape and these are always the text's own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct CopyOptions {
    /// `FORMAT` (`text`, `csv` or `binary`, as the server compares them).
    pub format: Option<String>,
    pub delimiter: Option<String>,
    pub null: Option<String>,
    pub quote: Option<String>,
    pub escape: Option<String>,
    /// `HEADER`: `true`, `false` or (COPY FROM only) `match`.
    pub header: Option<String>,
    pub encoding: Option<String>,
    /// An option this model does not follow, or a value it cannot read:
    /// the output's layout is not known.
    pub unknown: bool,
}

/// Where COPY data goes or comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CopyEndpoint {
    /// STDIN / STDOUT: the client, through the protocol.
    Client,
    /// A file on the database server.
    ServerFile(String),
    /// A program run on the database server.
    Program(String),
}

/// DISCARD targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscardTarget {
    /// DISCARD ALL: also resets the session identity and every setting,
    /// deallocates every prepared statement (the proxy must forget the
    /// verdicts it tied to their names) and closes every cursor.
    All,
    /// DISCARD PLANS.
    Plans,
    /// DISCARD SEQUENCES.
    Sequences,
    /// DISCARD TEMP: drops the session's temporary tables.
    Temp,
}

/// Transaction-control commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactionKind {
    /// BEGIN / START TRANSACTION.
    Begin,
    /// COMMIT / END.
    Commit,
    /// ROLLBACK / ABORT.
    Rollback,
    /// SAVEPOINT.
    Savepoint,
    /// RELEASE SAVEPOINT.
    Release,
    /// ROLLBACK TO SAVEPOINT.
    RollbackTo,
    /// PREPARE TRANSACTION (two-phase commit).
    Prepare,
    /// COMMIT PREPARED.
    CommitPrepared,
    /// ROLLBACK PREPARED.
    RollbackPrepared,
    /// SET CONSTRAINTS.
    SetConstraints,
}

/// What an ALTER TABLE sub-command does to the data already in the table.
/// This is the decision table (PostgreSQL sub-command names):
///
/// - `DestroysData`: `AT_DropColumn`; `AT_DetachPartition` and
///   `AT_DetachPartitionFinalize` (the partition's rows leave the table);
///   `AT_DropInherit` (NO INHERIT: the child's rows leave the parent).
/// - `RewritesData`: `AT_AlterColumnType` (with or without USING: values are
///   converted, possibly lossily); `AT_SetExpression` (a generated column is
///   recomputed); `AT_SetUnLogged` (the table stops being crash-safe).
/// - `WeakensIntegrity`: `AT_DropConstraint`, `AT_DropNotNull`: no row
///   changes, but rows that were impossible become possible. Not counted as
///   destruction: a policy that wants to can deny these separately.
/// - `SilencesSafeguards`: DISABLE TRIGGER (all forms), ENABLE REPLICA
///   TRIGGER (the trigger stops firing in ordinary sessions), DISABLE RULE,
///   ENABLE REPLICA RULE, DISABLE ROW LEVEL SECURITY, NO FORCE ROW LEVEL
///   SECURITY. These also report [`Capability::SilencedSafeguards`].
/// - `SchemaOnly`: everything else (ADD COLUMN, SET DEFAULT, ADD CONSTRAINT,
///   ATTACH PARTITION, OWNER TO, SET TABLESPACE, SET ACCESS METHOD...),
///   including SET WITHOUT OIDS (a no-op since PostgreSQL 12) and SET
///   WITHOUT CLUSTER.
///
/// A sub-command this crate does not know counts as `DestroysData`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlterTableEffect {
    /// Data becomes unreachable through the table.
    DestroysData,
    /// Existing values are rewritten or lose durability.
    RewritesData,
    /// A constraint that protected the data is removed.
    WeakensIntegrity,
    /// Triggers, rules or row-level security stop applying.
    SilencesSafeguards,
    /// A schema change that leaves the data as it is.
    SchemaOnly,
}

/// How a statement uses one relation (as written).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RelationUse {
    /// The relation as written. TEMP objects being created get schema
    /// `pg_temp`.
    pub relation: QualifiedName,
    /// How it is used.
    pub access: Access,
    /// Whether partitions and inheritance children are reached too: false
    /// only when every mention said `ONLY`.
    pub include_descendants: bool,
}

/// The ways a relation is used. Several may be set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub struct Access {
    /// Rows are read (FROM, JOIN, sub-queries, COPY TO, RETURNING of the
    /// target, UPDATE/DELETE targets, which read the rows they match).
    pub read: bool,
    /// Rows are inserted, updated, deleted or truncated (INSERT / UPDATE /
    /// DELETE / MERGE targets, TRUNCATE, COPY FROM, REFRESH MATERIALIZED VIEW).
    pub write: bool,
    /// The relation's definition is changed or it is dropped, renamed,
    /// moved, indexed, referenced by a new foreign key, vacuumed...
    pub alter: bool,
    /// The relation is created by this statement.
    pub create: bool,
    /// LOCK TABLE.
    pub lock: bool,
}

impl Access {
    pub(crate) fn merge(&mut self, other: Access) {
        self.read |= other.read;
        self.write |= other.write;
        self.alter |= other.alter;
        self.create |= other.create;
        self.lock |= other.lock;
    }
}

/// A column read or written.
///
/// Attribution is syntactic: a qualified reference (`t.col`, `s.t.col`) is
/// matched against the names and aliases of the FROM items in scope,
/// innermost first; an unqualified one is given to the relation when its
/// query has exactly one FROM item and that item is a relation, and left
/// unattributed (`relation: None`) when there are several. References to
/// columns of sub-queries, CTEs and set-returning functions are not
/// recorded: the relations behind them are recorded where they are read.
/// `*` and `t.*` are [`ColumnName::All`] of each relation they cover; a
/// whole-row reference written as a bare name (`row_to_json(c)`,
/// `SELECT c FROM customers c`) is recorded as a column named `c`, not as
/// `All`. For what a result set's values are computed from, see
/// [`StatementFacts::output`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColumnUse {
    /// The relation the column belongs to, when determinable.
    pub relation: Option<QualifiedName>,
    /// The column.
    pub column: ColumnName,
    /// Read (target lists, WHERE, JOIN, ORDER BY, RETURNING...).
    pub read: bool,
    /// Written (INSERT column lists, SET, MERGE actions, COPY FROM).
    pub written: bool,
}

/// A column, or all of them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnName {
    /// One named column.
    Named(String),
    /// Every column: `*`, `t.*`, an INSERT without a column list, COPY
    /// without one.
    All,
}

/// A function call.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct FunctionUse {
    /// The function as written (`pg_catalog.lower`, `lower`).
    pub name: QualifiedName,
    /// Number of arguments written (`count(*)` has none).
    pub args: usize,
    /// When the call runs.
    pub execution: Execution,
}

/// Code the analysis cannot see into.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct OpaqueCode {
    /// What kind of code.
    pub kind: OpaqueKind,
    /// Its name when it has one (function, trigger, rule, procedure,
    /// extension, operator), or the language of a DO block.
    pub name: Option<String>,
    /// When it runs.
    pub execution: Execution,
}

/// The kinds of opaque code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpaqueKind {
    /// DO: an anonymous block, run now.
    DoBlock,
    /// CREATE [OR REPLACE] FUNCTION / PROCEDURE, or ALTER FUNCTION (which
    /// can make a volatile function look read-only).
    FunctionDefinition,
    /// CREATE TRIGGER / CREATE EVENT TRIGGER.
    TriggerDefinition,
    /// CREATE RULE.
    RuleDefinition,
    /// CALL.
    ProcedureCall,
    /// CREATE / ALTER EXTENSION (runs the extension's script), CREATE
    /// LANGUAGE.
    Extension,
    /// A function that runs SQL given to it as text (`query_to_xml`,
    /// `table_to_xml`, `ts_stat`...): what it touches is invisible here,
    /// whatever its volatility.
    DynamicSql,
    /// An operator that is not one of PostgreSQL's built-in operator
    /// symbols, or one qualified with a schema other than pg_catalog: it may
    /// call any function.
    UnknownOperator,
}

/// A dangerous capability used by a statement.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct CapabilityUse {
    /// Which capability.
    pub capability: Capability,
    /// What used it: a function name, `COPY ... PROGRAM`, a setting name...
    pub detail: String,
    /// When it runs.
    pub execution: Execution,
}

/// Dangerous capabilities: things a policy should be able to forbid
/// whatever else a statement does. See [`crate::capabilities`] for the
/// exact triggers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    /// Reading, writing or listing files on the database server.
    ServerFiles,
    /// Running a program on the database server.
    ServerProgram,
    /// Reaching other servers: dblink, foreign data wrappers, servers, user
    /// mappings, foreign tables, subscriptions.
    ForeignData,
    /// Becoming another role: SET ROLE, SET SESSION AUTHORIZATION,
    /// set_config on either.
    IdentityChange,
    /// Going back to the login identity: RESET ROLE, SET ROLE NONE,
    /// RESET / SET SESSION AUTHORIZATION DEFAULT, DISCARD ALL. Harmless
    /// while the proxy itself never uses SET ROLE; reported separately so
    /// that it cannot undo one the proxy set.
    IdentityReset,
    /// Settings stored in the catalog for later sessions: ALTER ROLE ... SET,
    /// ALTER DATABASE ... SET.
    PermanentSessionChange,
    /// Server administration: ALTER SYSTEM, LOAD, CHECKPOINT, PREPARE
    /// TRANSACTION, COMMIT / ROLLBACK PREPARED, CREATE TABLESPACE, DROP
    /// DATABASE ... WITH (FORCE) (it ends other sessions), and
    /// administration functions (pg_terminate_backend, pg_reload_conf...).
    ServerAdministration,
    /// Triggers, rules or row-level security stop applying: ALTER TABLE ...
    /// DISABLE TRIGGER and friends, ALTER EVENT TRIGGER ... DISABLE,
    /// session_replication_role.
    SilencedSafeguards,
}

impl Capability {
    /// A stable lower-case name, for policies and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::ServerFiles => "server_files",
            Capability::ServerProgram => "server_program",
            Capability::ForeignData => "foreign_data",
            Capability::IdentityChange => "identity_change",
            Capability::IdentityReset => "identity_reset",
            Capability::PermanentSessionChange => "permanent_session_change",
            Capability::ServerAdministration => "server_administration",
            Capability::SilencedSafeguards => "silenced_safeguards",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A change to a run-time setting.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct SettingChange {
    /// Which setting.
    pub target: SettingTarget,
    /// The new value.
    pub value: SettingValue,
    /// For how long.
    pub scope: SettingScope,
    /// How the change was written.
    pub source: SettingSource,
    /// When it happens.
    pub execution: Execution,
}

/// The setting changed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SettingTarget {
    /// One setting, by its name folded to lower case as PostgreSQL matches
    /// it (`SET ROLE` is `role`, `SET SESSION AUTHORIZATION` is
    /// `session_authorization`, `SET NAMES` is `client_encoding`, `SET
    /// SCHEMA` is `search_path`, `SET TIME ZONE` is `timezone`).
    Named(String),
    /// Every setting: RESET ALL, DISCARD ALL.
    All,
    /// Not known until run time: set_config with a computed name. Treat as
    /// possibly any setting.
    Unknown,
}

impl SettingTarget {
    /// Whether this change may affect the named setting (lower case).
    pub fn may_affect(&self, name: &str) -> bool {
        match self {
            SettingTarget::Named(n) => n == name,
            SettingTarget::All | SettingTarget::Unknown => true,
        }
    }
}

/// The value a setting is given.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SettingValue {
    /// The items as written (`SET search_path = a, "B"` gives `["a", "B"]`;
    /// a single value is a one-item list). For set_config, the one string
    /// argument, unsplit: see [`crate::resolve::parse_search_path`].
    Values(Vec<String>),
    /// Back to the default: RESET, SET ... TO DEFAULT, SET SESSION
    /// AUTHORIZATION DEFAULT. (`SET ROLE NONE` is `Values(["none"])`.)
    Default,
    /// Not known until run time (a parameter, an expression, FROM CURRENT).
    Unknown,
}

/// How long a setting change lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SettingScope {
    /// Until changed again (SET, SET SESSION, set_config(..., false)).
    Session,
    /// Until the end of the transaction (SET LOCAL, set_config(..., true)).
    Transaction,
    /// Not known until run time (set_config with a computed `is_local`).
    Unknown,
}

/// How a setting change was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SettingSource {
    /// SET / RESET / SET ROLE / SET SESSION AUTHORIZATION...
    Statement,
    /// A set_config() call.
    SetConfig,
    /// DISCARD ALL.
    Discard,
}

/// The kinds of object PostgreSQL can create, drop, rename or move
/// (PostgreSQL's `ObjectType`), plus the few that have their own statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[allow(
    missing_docs,
    reason = "the variant names are PostgreSQL's object types"
)]
pub enum ObjectKind {
    AccessMethod,
    Aggregate,
    AccessMethodOperator,
    AccessMethodProcedure,
    Attribute,
    Cast,
    Column,
    Collation,
    Conversion,
    Database,
    Default,
    DefaultAcl,
    Domain,
    DomainConstraint,
    EventTrigger,
    Extension,
    ForeignDataWrapper,
    ForeignServer,
    ForeignTable,
    Function,
    Index,
    Language,
    LargeObject,
    MaterializedView,
    OperatorClass,
    Operator,
    OperatorFamily,
    ParameterAcl,
    Policy,
    Procedure,
    Publication,
    PublicationNamespace,
    PublicationRelation,
    Role,
    Routine,
    Rule,
    Schema,
    Sequence,
    Subscription,
    StatisticsObject,
    TableConstraint,
    Table,
    Tablespace,
    Transform,
    Trigger,
    TextSearchConfiguration,
    TextSearchDictionary,
    TextSearchParser,
    TextSearchTemplate,
    Type,
    UserMapping,
    View,
    /// An enum type's value (ALTER TYPE ... RENAME VALUE).
    EnumValue,
    /// The parser produced an object type this crate does not know.
    Unknown,
}

impl ObjectKind {
    /// Lower-case SQL name (`materialized view`, `foreign table`...).
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::AccessMethod => "access method",
            ObjectKind::Aggregate => "aggregate",
            ObjectKind::AccessMethodOperator => "access method operator",
            ObjectKind::AccessMethodProcedure => "access method procedure",
            ObjectKind::Attribute => "attribute",
            ObjectKind::Cast => "cast",
            ObjectKind::Column => "column",
            ObjectKind::Collation => "collation",
            ObjectKind::Conversion => "conversion",
            ObjectKind::Database => "database",
            ObjectKind::Default => "default",
            ObjectKind::DefaultAcl => "default acl",
            ObjectKind::Domain => "domain",
            ObjectKind::DomainConstraint => "domain constraint",
            ObjectKind::EventTrigger => "event trigger",
            ObjectKind::Extension => "extension",
            ObjectKind::ForeignDataWrapper => "foreign data wrapper",
            ObjectKind::ForeignServer => "server",
            ObjectKind::ForeignTable => "foreign table",
            ObjectKind::Function => "function",
            ObjectKind::Index => "index",
            ObjectKind::Language => "language",
            ObjectKind::LargeObject => "large object",
            ObjectKind::MaterializedView => "materialized view",
            ObjectKind::OperatorClass => "operator class",
            ObjectKind::Operator => "operator",
            ObjectKind::OperatorFamily => "operator family",
            ObjectKind::ParameterAcl => "parameter",
            ObjectKind::Policy => "policy",
            ObjectKind::Procedure => "procedure",
            ObjectKind::Publication => "publication",
            ObjectKind::PublicationNamespace => "publication schema",
            ObjectKind::PublicationRelation => "publication relation",
            ObjectKind::Role => "role",
            ObjectKind::Routine => "routine",
            ObjectKind::Rule => "rule",
            ObjectKind::Schema => "schema",
            ObjectKind::Sequence => "sequence",
            ObjectKind::Subscription => "subscription",
            ObjectKind::StatisticsObject => "statistics",
            ObjectKind::TableConstraint => "constraint",
            ObjectKind::Table => "table",
            ObjectKind::Tablespace => "tablespace",
            ObjectKind::Transform => "transform",
            ObjectKind::Trigger => "trigger",
            ObjectKind::TextSearchConfiguration => "text search configuration",
            ObjectKind::TextSearchDictionary => "text search dictionary",
            ObjectKind::TextSearchParser => "text search parser",
            ObjectKind::TextSearchTemplate => "text search template",
            ObjectKind::Type => "type",
            ObjectKind::UserMapping => "user mapping",
            ObjectKind::View => "view",
            ObjectKind::EnumValue => "enum value",
            ObjectKind::Unknown => "unknown",
        }
    }

    /// Whether objects of this kind live in pg_class (and are therefore
    /// also reported in [`StatementFacts::relations`]).
    pub fn is_relation(self) -> bool {
        matches!(
            self,
            ObjectKind::Table
                | ObjectKind::View
                | ObjectKind::MaterializedView
                | ObjectKind::Index
                | ObjectKind::Sequence
                | ObjectKind::ForeignTable
        )
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
