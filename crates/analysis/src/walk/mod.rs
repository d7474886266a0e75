//! The walk over one statement's parse tree, collecting [`StatementFacts`].
//!
//! Completeness comes from [`children::for_each_child`], generated from the
//! parser's own node definitions: every node reaches [`Walker::visit`], and
//! a node type without a dedicated handler is descended into field by field.
//! Handlers exist where a node means something (a statement, a table
//! reference, a column, a call) or where its fields need a context (which
//! relation an UPDATE writes, that the body of PREPARE runs later). A
//! handler that takes some fields itself hands every other field to the
//! generic descent, so nothing nested is skipped.

pub(crate) mod children;

use std::ops::Range;

use pg_query::protobuf::node::Node as NodeEnum;
use pg_query::protobuf::{self as pb, Node};
use pg_query::NodeRef;

use crate::capabilities;
use crate::classify;
use crate::error::AnalysisError;
use crate::facts::*;
use crate::lineage::Lineage;
use crate::literal::{self, ConstValue};
use crate::where_clause;
use children::{for_each_child, node_name};

/// Deeper than this, the walk gives up (fail closed). The JSON reader
/// already bounds the tree at 2,000 nested objects, two per expression
/// level, so expressions stop there first; a chain of set operations
/// (`SELECT ... UNION SELECT ...`) costs one object per level and is stopped
/// here. See the "Limits" paragraph of lib.rs for what fits a 2 MiB stack.
const MAX_DEPTH: usize = 1000;

/// Analyses one top-level statement.
pub(crate) fn analyze_statement(
    stmt: NodeRef<'_>,
    span: Range<usize>,
) -> Result<StatementFacts, AnalysisError> {
    let mut walker = Walker {
        facts: StatementFacts {
            span,
            class: StatementClass::Other,
            actions: Vec::new(),
            relations: Vec::new(),
            columns: Vec::new(),
            functions: Vec::new(),
            operators: Vec::new(),
            opaque: Vec::new(),
            capabilities: Vec::new(),
            settings: Vec::new(),
            stored_settings: Vec::new(),
            output: None,
            copy_out: None,
            prepared_output: None,
            row_choice: Lineage::NONE,
            writes: Vec::new(),
        },
        scopes: Vec::new(),
        ctes: Vec::new(),
        depth: 0,
        too_deep: false,
    };
    walker.statement(stmt, Ctx::TOP);
    if walker.too_deep {
        return Err(AnalysisError::TooDeep);
    }
    let mut facts = walker.facts;
    facts.class = facts
        .actions
        .first()
        .map_or(StatementClass::Other, |a| a.kind.class());
    Ok(facts)
}

/// What the surroundings say about the node being visited.
#[derive(Debug, Clone, Copy)]
struct Ctx {
    /// When this part runs.
    execution: Execution,
    /// How a table reference met here (outside a FROM list or a statement
    /// target) is used: read in queries, altered in DDL.
    access: Access,
    /// A SET met here is stored configuration (ALTER ROLE ... SET, function
    /// SET clauses, ALTER SYSTEM), not a change to this session.
    stored_setting: bool,
}

const READ: Access = Access {
    read: true,
    write: false,
    alter: false,
    create: false,
    lock: false,
};
const WRITE: Access = Access {
    read: false,
    write: true,
    alter: false,
    create: false,
    lock: false,
};
const READ_WRITE: Access = Access {
    read: true,
    write: true,
    alter: false,
    create: false,
    lock: false,
};
const ALTER: Access = Access {
    read: false,
    write: false,
    alter: true,
    create: false,
    lock: false,
};
const CREATE: Access = Access {
    read: false,
    write: false,
    alter: false,
    create: true,
    lock: false,
};
const LOCK: Access = Access {
    read: false,
    write: false,
    alter: false,
    create: false,
    lock: true,
};

impl Ctx {
    const TOP: Ctx = Ctx {
        execution: Execution::Now,
        access: READ,
        stored_setting: false,
    };

    fn with_access(self, access: Access) -> Ctx {
        Ctx { access, ..self }
    }

    /// Nested execution: the later of the two wins (see [`Execution`]).
    fn running(self, execution: Execution) -> Ctx {
        Ctx {
            execution: self.execution.max(execution),
            ..self
        }
    }

    fn stored(self) -> Ctx {
        Ctx {
            stored_setting: true,
            ..self
        }
    }
}

/// A name columns can be qualified with, in one query level.
#[derive(Debug, Clone, Copy)]
struct ScopeItem<'a> {
    /// The alias, or the relation's own name when it has none.
    name: &'a str,
    /// The schema written before an unaliased relation (`s.t.col`).
    schema: Option<&'a str>,
    /// Index into `facts.relations`; `None` for sub-queries, functions,
    /// CTE references, VALUES, and other derived rows.
    relation: Option<usize>,
    /// A pseudo-relation that is only ever named explicitly (EXCLUDED, NEW,
    /// OLD, RETURNING aliases): unqualified columns never refer to it.
    qualified_only: bool,
}

struct Walker<'a> {
    facts: StatementFacts,
    /// FROM-clause scopes, innermost last.
    scopes: Vec<Vec<ScopeItem<'a>>>,
    /// CTE names visible here, innermost last.
    ctes: Vec<&'a str>,
    depth: usize,
    too_deep: bool,
}

pub(crate) fn node_of(n: &Node) -> Option<NodeRef<'_>> {
    n.node.as_ref().map(NodeEnum::to_ref)
}

pub(crate) fn boxed_node(n: &Option<Box<Node>>) -> Option<NodeRef<'_>> {
    n.as_deref().and_then(node_of)
}

pub(crate) fn string_of(n: &Node) -> Option<&str> {
    match &n.node {
        Some(NodeEnum::String(s)) => Some(&s.sval),
        _ => None,
    }
}

pub(crate) fn strings(nodes: &[Node]) -> impl Iterator<Item = &str> {
    nodes.iter().filter_map(string_of)
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// A RangeVar as a name: schema as written, `pg_temp` for TEMP objects.
pub(crate) fn range_var_name(rv: &pb::RangeVar) -> QualifiedName {
    let schema = match non_empty(&rv.schemaname) {
        Some(s) => Some(s.to_owned()),
        None if rv.relpersistence == "t" => Some("pg_temp".to_owned()),
        None => None,
    };
    QualifiedName {
        schema,
        name: rv.relname.clone(),
    }
}

/// A dotted name list (`["s", "t"]`) as a qualified name (last part is the
/// name, the one before it the schema).
pub(crate) fn qualified(parts: &[&str]) -> QualifiedName {
    match parts {
        [] => QualifiedName::new(None, ""),
        [name] => QualifiedName::new(None, name),
        [.., schema, name] => QualifiedName::new(Some(schema), name),
    }
}

/// A human-readable name for a DROP / RENAME / SET SCHEMA object node.
fn object_name(node: &Node) -> String {
    match &node.node {
        Some(NodeEnum::String(s)) => s.sval.clone(),
        Some(NodeEnum::List(l)) => l
            .items
            .iter()
            .map(object_name)
            .collect::<Vec<_>>()
            .join("."),
        Some(NodeEnum::TypeName(t)) => strings(&t.names).collect::<Vec<_>>().join("."),
        Some(NodeEnum::ObjectWithArgs(o)) => {
            let name = strings(&o.objname).collect::<Vec<_>>().join(".");
            if o.args_unspecified {
                name
            } else {
                format!("{name}/{}", o.objargs.len())
            }
        }
        Some(NodeEnum::RoleSpec(r)) => r.rolename.clone(),
        Some(NodeEnum::RangeVar(rv)) => range_var_name(rv).to_string(),
        Some(NodeEnum::Integer(i)) => i.ival.to_string(),
        _ => String::from("?"),
    }
}

/// A DefElem's boolean value as PostgreSQL's `defGetBoolean` reads it; no
/// value means true. Anything unreadable is taken as true (EXPLAIN: assume
/// ANALYZE, fail closed).
fn def_bool(arg: Option<&Node>) -> bool {
    match arg.and_then(|a| a.node.as_ref()) {
        None => true,
        Some(NodeEnum::Boolean(b)) => b.boolval,
        Some(NodeEnum::Integer(i)) => i.ival != 0,
        Some(NodeEnum::String(s)) => !matches!(
            s.sval.to_ascii_lowercase().as_str(),
            "false" | "off" | "no" | "0"
        ),
        Some(_) => true,
    }
}

/// A COPY statement's output options, read as `ProcessCopyOptions` in
/// PostgreSQL's `copy.c` reads them (`defGetString`, which also takes
/// numbers and keywords).
fn copy_options(options: &[Node]) -> CopyOptions {
    let mut out = CopyOptions::default();
    for o in options {
        let Some(NodeEnum::DefElem(d)) = &o.node else {
            out.unknown = true;
            continue;
        };
        let value = match d.arg.as_deref().and_then(|a| a.node.as_ref()) {
            None => None,
            Some(NodeEnum::String(s)) => Some(s.sval.clone()),
            Some(NodeEnum::Integer(i)) => Some(i.ival.to_string()),
            Some(NodeEnum::Float(f)) => Some(f.fval.clone()),
            Some(NodeEnum::Boolean(b)) => Some(if b.boolval { "true" } else { "false" }.to_owned()),
            // Lists and `*`: only FORCE_QUOTE and its kin take them.
            Some(_) => None,
        };
        let slot = match d.defname.as_str() {
            "format" => &mut out.format,
            "delimiter" => &mut out.delimiter,
            "null" => &mut out.null,
            "quote" => &mut out.quote,
            "escape" => &mut out.escape,
            "encoding" => &mut out.encoding,
            "header" => {
                // `defGetCopyHeaderChoice`: no value, 0 or 1, or one of
                // these words in any case; anything else is an error there.
                let choice = match (d.arg.as_deref(), value.map(|v| v.to_ascii_lowercase())) {
                    (None, _) => Some("true"),
                    (Some(_), Some(v)) => match v.as_str() {
                        "true" | "on" | "1" => Some("true"),
                        "false" | "off" | "0" => Some("false"),
                        "match" => Some("match"),
                        _ => None,
                    },
                    (Some(_), None) => None,
                };
                match choice {
                    Some(c) => out.header = Some(c.to_owned()),
                    None => out.unknown = true,
                }
                continue;
            }
            // Quoting choices only (the quoted and unquoted forms read
            // back the same), or COPY FROM options the server refuses here.
            "force_quote"
            | "force_not_null"
            | "force_null"
            | "freeze"
            | "default"
            | "on_error"
            | "log_verbosity"
            | "reject_limit"
            | "convert_selectively" => continue,
            _ => {
                out.unknown = true;
                continue;
            }
        };
        match value {
            Some(v) => *slot = Some(v),
            None => out.unknown = true,
        }
    }
    out
}

/// The string a constant (possibly cast) carries: `'x'`, `'x'::text`.
/// Only casts that keep the text as it is are looked through
/// (`pg_catalog.text`, and `varchar` without a length, which the parser
/// qualifies itself): `'statement_timeoutX'::varchar(17)`, `::char(n)`
/// or `::name` cut it, and a bare `::text` may name a domain in pg_temp
/// (searched before pg_catalog for types), so the server would read
/// another string than this one; those are not constants here.
fn const_text(node: &Node) -> Option<String> {
    match &node.node {
        Some(NodeEnum::AConst(c)) if !c.isnull => match literal::value(c)? {
            ConstValue::Sval(s) => Some(s.sval.clone()),
            ConstValue::Ival(i) => Some(i.ival.to_string()),
            ConstValue::Fval(f) => Some(f.fval.clone()),
            ConstValue::Boolval(b) => Some(if b.boolval { "true" } else { "false" }.to_owned()),
            ConstValue::Bsval(_) => None,
        },
        Some(NodeEnum::TypeCast(t)) if keeps_text(t.type_name.as_ref()?) => {
            t.arg.as_deref().and_then(const_text)
        }
        _ => None,
    }
}

/// Whether a cast to this type leaves a string constant's text unchanged.
fn keeps_text(t: &pb::TypeName) -> bool {
    let names: Vec<&str> = strings(&t.names).collect();
    let plain = matches!(
        names.as_slice(),
        ["pg_catalog", "text"] | ["pg_catalog", "varchar"]
    );
    plain && t.typmods.is_empty() && t.array_bounds.is_empty() && !t.setof && !t.pct_type
}

/// The `language` option of DO / CREATE FUNCTION.
fn language_option(options: &[Node]) -> Option<String> {
    options.iter().find_map(|o| match &o.node {
        Some(NodeEnum::DefElem(d)) if d.defname == "language" => {
            d.arg.as_deref().and_then(string_of).map(str::to_owned)
        }
        _ => None,
    })
}

impl<'a> Walker<'a> {
    // ----- recording -----

    fn act(&mut self, kind: ActionKind, ctx: Ctx) -> usize {
        self.facts.actions.push(Action {
            kind,
            execution: ctx.execution,
        });
        self.facts.actions.len() - 1
    }

    fn relation_named(&mut self, relation: QualifiedName, access: Access, inh: bool) -> usize {
        if let Some(i) = self
            .facts
            .relations
            .iter()
            .position(|r| r.relation == relation)
        {
            if let Some(r) = self.facts.relations.get_mut(i) {
                r.access.merge(access);
                r.include_descendants |= inh;
            }
            return i;
        }
        self.facts.relations.push(RelationUse {
            relation,
            access,
            include_descendants: inh,
        });
        self.facts.relations.len() - 1
    }

    fn relation(&mut self, rv: &'a pb::RangeVar, access: Access) -> usize {
        self.relation_named(range_var_name(rv), access, rv.inh)
    }

    fn relation_name(&self, index: usize) -> Option<QualifiedName> {
        self.facts.relations.get(index).map(|r| r.relation.clone())
    }

    fn column(&mut self, relation: Option<usize>, column: ColumnName, read: bool, written: bool) {
        let relation = relation.and_then(|i| self.relation_name(i));
        if let Some(c) = self
            .facts
            .columns
            .iter_mut()
            .find(|c| c.relation == relation && c.column == column)
        {
            c.read |= read;
            c.written |= written;
            return;
        }
        self.facts.columns.push(ColumnUse {
            relation,
            column,
            read,
            written,
        });
    }

    fn capability(&mut self, capability: Capability, detail: impl Into<String>, ctx: Ctx) {
        let use_ = CapabilityUse {
            capability,
            detail: detail.into(),
            execution: ctx.execution,
        };
        if !self.facts.capabilities.contains(&use_) {
            self.facts.capabilities.push(use_);
        }
    }

    fn opaque(&mut self, kind: OpaqueKind, name: Option<String>, ctx: Ctx) {
        let code = OpaqueCode {
            kind,
            name,
            execution: ctx.execution,
        };
        if !self.facts.opaque.contains(&code) {
            self.facts.opaque.push(code);
        }
    }

    fn setting(
        &mut self,
        target: SettingTarget,
        value: SettingValue,
        scope: SettingScope,
        source: SettingSource,
        ctx: Ctx,
    ) {
        if let SettingTarget::Named(name) = &target {
            if let Some(capability) = capabilities::setting_capability(name, &value) {
                self.capability(capability, name.clone(), ctx);
            }
        }
        if target == SettingTarget::Unknown {
            // A computed name may be any setting, role included.
            self.capability(
                Capability::IdentityChange,
                "set_config with a computed name",
                ctx,
            );
            self.capability(
                Capability::SilencedSafeguards,
                "set_config with a computed name",
                ctx,
            );
        }
        self.facts.settings.push(SettingChange {
            target,
            value,
            scope,
            source,
            execution: ctx.execution,
        });
    }

    // ----- traversal -----

    /// Visits every child of `node` with the same context.
    fn children(&mut self, node: NodeRef<'a>, ctx: Ctx) {
        for_each_child(node, &mut |_, child| self.visit(child, ctx));
    }

    /// Visits every child except the named fields.
    fn children_except(&mut self, node: NodeRef<'a>, skip: &[&str], ctx: Ctx) {
        for_each_child(node, &mut |field, child| {
            if !skip.contains(&field) {
                self.visit(child, ctx);
            }
        });
    }

    fn visit_opt(&mut self, node: Option<NodeRef<'a>>, ctx: Ctx) {
        if let Some(n) = node {
            self.visit(n, ctx);
        }
    }

    fn visit_all(&mut self, nodes: &'a [Node], ctx: Ctx) {
        for n in nodes.iter().filter_map(node_of) {
            self.visit(n, ctx);
        }
    }

    /// A node in statement position (top level, or the body of EXPLAIN,
    /// PREPARE, COPY, CREATE TABLE AS, DECLARE, CREATE VIEW, a rule action):
    /// a query there is an action of its own.
    fn statement(&mut self, node: NodeRef<'a>, ctx: Ctx) {
        match node {
            NodeRef::SelectStmt(s) => {
                if !self.enter() {
                    return;
                }
                self.select(s, ctx, true);
                self.depth -= 1;
            }
            other => self.visit(other, ctx),
        }
    }

    fn enter(&mut self) -> bool {
        if self.depth >= MAX_DEPTH {
            self.too_deep = true;
            return false;
        }
        self.depth += 1;
        true
    }

    fn visit(&mut self, node: NodeRef<'a>, ctx: Ctx) {
        if !self.enter() {
            return;
        }
        self.dispatch(node, ctx);
        self.depth -= 1;
    }

    fn dispatch(&mut self, node: NodeRef<'a>, ctx: Ctx) {
        match node {
            // Queries and DML.
            NodeRef::SelectStmt(s) => self.select(s, ctx, false),
            NodeRef::InsertStmt(s) => self.insert(s, ctx),
            NodeRef::UpdateStmt(s) => self.update(s, ctx),
            NodeRef::DeleteStmt(s) => self.delete(s, ctx),
            NodeRef::MergeStmt(s) => self.merge(s, ctx),
            NodeRef::CopyStmt(s) => self.copy(s, ctx),
            NodeRef::ExplainStmt(s) => self.explain(s, ctx),
            NodeRef::CreateTableAsStmt(s) => self.create_table_as(s, ctx),
            NodeRef::WithClause(w) => self.with_clause(w, ctx),

            // Expressions.
            NodeRef::RangeVar(rv) => {
                self.relation(rv, ctx.access);
                self.children(node, ctx);
            }
            NodeRef::ColumnRef(c) => self.column_ref(c),
            NodeRef::FuncCall(f) => self.func_call(f, ctx),
            NodeRef::AExpr(e) => {
                let between = matches!(
                    pb::AExprKind::try_from(e.kind),
                    Ok(pb::AExprKind::AexprBetween
                        | pb::AExprKind::AexprNotBetween
                        | pb::AExprKind::AexprBetweenSym
                        | pb::AExprKind::AexprNotBetweenSym)
                );
                if between {
                    // BETWEEN is spelled as a keyword but runs `>=` and `<=`,
                    // looked up by name like any operator.
                    self.implicit_operator(">=");
                    self.implicit_operator("<=");
                } else {
                    self.operator(&e.name, ctx);
                }
                self.children(node, ctx);
            }
            NodeRef::CaseExpr(c) => {
                if c.arg.is_some() {
                    // `CASE x WHEN v` compares with `=` by name.
                    self.implicit_operator("=");
                }
                self.children(node, ctx);
            }
            NodeRef::SubLink(s) => {
                if s.oper_name.is_empty() && s.sub_link_type == pb::SubLinkType::AnySublink as i32 {
                    // `x IN (SELECT ...)` compares with `=` by name: the
                    // grammar leaves the name out.
                    self.implicit_operator("=");
                }
                self.operator(&s.oper_name, ctx);
                self.children(node, ctx);
            }
            NodeRef::SortBy(s) => {
                self.operator(&s.use_op, ctx);
                self.children(node, ctx);
            }
            other => {
                if !self.utility_statement(other, ctx) {
                    self.children(other, ctx);
                }
            }
        }
    }

    /// Statements other than queries and DML. They nest a level or two at
    /// most (CREATE SCHEMA elements, rule actions), never inside
    /// expressions. Returns false for anything else.
    ///
    /// Kept out of [`Walker::dispatch`] on purpose: a frame holding every
    /// arm's locals would sit on the stack at each level of a deep
    /// expression, and an unoptimised build does not overlap them (a 600-line
    /// match made each level of `a || b || ...` cost 10 KiB).
    #[inline(never)]
    fn utility_statement(&mut self, node: NodeRef<'a>, ctx: Ctx) -> bool {
        match node {
            // Prepared statements and cursors.
            NodeRef::PrepareStmt(s) => {
                self.act(
                    ActionKind::Prepare {
                        name: s.name.clone(),
                    },
                    ctx,
                );
                let body = ctx.running(Execution::Deferred);
                self.visit_all(&s.argtypes, body);
                if let Some(q) = boxed_node(&s.query) {
                    self.statement(q, body);
                }
            }
            NodeRef::ExecuteStmt(s) => {
                self.act(
                    ActionKind::Execute {
                        name: s.name.clone(),
                    },
                    ctx,
                );
                self.children(node, ctx);
            }
            NodeRef::DeallocateStmt(s) => {
                let name = (!s.isall).then(|| s.name.clone()).filter(|n| !n.is_empty());
                self.act(ActionKind::Deallocate { name }, ctx);
            }
            NodeRef::DeclareCursorStmt(s) => {
                // CURSOR_OPT_HOLD: the query runs (to the end) at COMMIT.
                const HOLD: i32 = 0x0020;
                self.act(
                    ActionKind::Cursor {
                        statement: if s.options & HOLD != 0 {
                            "DeclareCursorStmt WITH HOLD"
                        } else {
                            "DeclareCursorStmt"
                        },
                        name: s.portalname.clone(),
                    },
                    ctx,
                );
                if let Some(q) = boxed_node(&s.query) {
                    self.statement(q, ctx.running(Execution::Deferred));
                }
            }
            NodeRef::FetchStmt(s) => {
                self.act(
                    ActionKind::Cursor {
                        statement: "FetchStmt",
                        name: s.portalname.clone(),
                    },
                    ctx,
                );
            }
            NodeRef::ClosePortalStmt(s) => {
                self.act(
                    ActionKind::Cursor {
                        statement: "ClosePortalStmt",
                        name: s.portalname.clone(),
                    },
                    ctx,
                );
            }

            // Destruction, renames, data-destroying ALTERs.
            NodeRef::DropStmt(s) => self.drop(s, ctx),
            NodeRef::DropdbStmt(s) => {
                self.drop_named(ObjectKind::Database, vec![s.dbname.clone()], false, ctx);
                self.children(node, ctx);
            }
            NodeRef::DropRoleStmt(s) => {
                let names = s.roles.iter().map(object_name).collect();
                self.drop_named(ObjectKind::Role, names, false, ctx);
            }
            NodeRef::DropTableSpaceStmt(s) => {
                self.drop_named(
                    ObjectKind::Tablespace,
                    vec![s.tablespacename.clone()],
                    false,
                    ctx,
                );
            }
            NodeRef::DropSubscriptionStmt(s) => {
                let cascade = s.behavior == pb::DropBehavior::DropCascade as i32;
                self.drop_named(
                    ObjectKind::Subscription,
                    vec![s.subname.clone()],
                    cascade,
                    ctx,
                );
                // Dropping a subscription connects to the publisher to drop
                // its replication slot.
                self.capability(Capability::ForeignData, "DROP SUBSCRIPTION", ctx);
            }
            NodeRef::DropUserMappingStmt(s) => {
                let user = s
                    .user
                    .as_ref()
                    .map_or_else(String::new, |u| u.rolename.clone());
                self.drop_named(
                    ObjectKind::UserMapping,
                    vec![format!("{user}@{}", s.servername)],
                    false,
                    ctx,
                );
                self.capability(Capability::ForeignData, "DROP USER MAPPING", ctx);
            }
            NodeRef::DropOwnedStmt(s) => {
                self.act(
                    ActionKind::DropOwned {
                        roles: s.roles.iter().map(object_name).collect(),
                        cascade: s.behavior == pb::DropBehavior::DropCascade as i32,
                    },
                    ctx,
                );
            }
            NodeRef::RenameStmt(s) => self.rename(s, ctx),
            NodeRef::AlterObjectSchemaStmt(s) => {
                let object = classify::object_kind(s.object_type);
                let name = match &s.relation {
                    Some(rv) => {
                        self.relation(rv, ALTER);
                        range_var_name(rv).to_string()
                    }
                    None => s.object.as_deref().map(object_name).unwrap_or_default(),
                };
                self.act(
                    ActionKind::SetSchema {
                        object,
                        name,
                        new_schema: s.newschema.clone(),
                    },
                    ctx,
                );
            }
            NodeRef::AlterEnumStmt(s) => {
                if s.old_val.is_empty() {
                    self.act(
                        ActionKind::SchemaChange {
                            statement: "AlterEnumStmt",
                        },
                        ctx,
                    );
                } else {
                    self.act(
                        ActionKind::Rename {
                            object: ObjectKind::EnumValue,
                            name: strings(&s.type_name).collect::<Vec<_>>().join("."),
                            member: Some(s.old_val.clone()),
                            new_name: s.new_val.clone(),
                        },
                        ctx,
                    );
                }
            }
            NodeRef::TruncateStmt(s) => {
                let mut tables = Vec::new();
                for rv in s.relations.iter().filter_map(|n| match &n.node {
                    Some(NodeEnum::RangeVar(rv)) => Some(rv),
                    _ => None,
                }) {
                    self.relation(rv, WRITE);
                    tables.push(range_var_name(rv));
                }
                self.act(
                    ActionKind::Truncate {
                        tables,
                        cascade: s.behavior == pb::DropBehavior::DropCascade as i32,
                    },
                    ctx,
                );
            }
            NodeRef::AlterTableStmt(s) => self.alter_table(s, ctx),

            // Settings and session state.
            NodeRef::VariableSetStmt(s) => self.variable_set(s, ctx),
            NodeRef::VariableShowStmt(_) => {
                self.act(
                    ActionKind::Session {
                        statement: "VariableShowStmt",
                    },
                    ctx,
                );
            }
            NodeRef::DiscardStmt(s) => {
                let target = match pb::DiscardMode::try_from(s.target) {
                    Ok(pb::DiscardMode::DiscardPlans) => DiscardTarget::Plans,
                    Ok(pb::DiscardMode::DiscardSequences) => DiscardTarget::Sequences,
                    Ok(pb::DiscardMode::DiscardTemp) => DiscardTarget::Temp,
                    _ => DiscardTarget::All,
                };
                self.act(ActionKind::Discard { target }, ctx);
                if target == DiscardTarget::All {
                    // DISCARD ALL includes SET SESSION AUTHORIZATION DEFAULT
                    // and RESET ALL.
                    self.capability(Capability::IdentityReset, "DISCARD ALL", ctx);
                    self.setting(
                        SettingTarget::All,
                        SettingValue::Default,
                        SettingScope::Session,
                        SettingSource::Discard,
                        ctx,
                    );
                }
            }
            NodeRef::AlterRoleSetStmt(_) => {
                self.act(
                    ActionKind::Privileges {
                        statement: "AlterRoleSetStmt",
                    },
                    ctx,
                );
                self.capability(
                    Capability::PermanentSessionChange,
                    "ALTER ROLE ... SET",
                    ctx,
                );
                self.children(node, ctx.with_access(ALTER).stored());
            }
            NodeRef::AlterDatabaseSetStmt(_) => {
                self.act(
                    ActionKind::SchemaChange {
                        statement: "AlterDatabaseSetStmt",
                    },
                    ctx,
                );
                self.capability(
                    Capability::PermanentSessionChange,
                    "ALTER DATABASE ... SET",
                    ctx,
                );
                self.children(node, ctx.stored());
            }
            NodeRef::TransactionStmt(s) => {
                let kind = classify::transaction_kind(s.kind);
                self.act(ActionKind::Transaction { kind }, ctx);
                if matches!(
                    kind,
                    TransactionKind::Prepare
                        | TransactionKind::CommitPrepared
                        | TransactionKind::RollbackPrepared
                ) {
                    // Two-phase commit outlives the session, and COMMIT /
                    // ROLLBACK PREPARED can finish anyone's transaction.
                    self.capability(Capability::ServerAdministration, "two-phase commit", ctx);
                }
            }
            NodeRef::ConstraintsSetStmt(_) => {
                self.act(
                    ActionKind::Transaction {
                        kind: TransactionKind::SetConstraints,
                    },
                    ctx,
                );
            }

            // Server administration.
            NodeRef::AlterSystemStmt(_) => {
                self.act(
                    ActionKind::Administration {
                        statement: "AlterSystemStmt",
                    },
                    ctx,
                );
                self.capability(Capability::ServerAdministration, "ALTER SYSTEM", ctx);
                self.children(node, ctx.stored());
            }
            NodeRef::LoadStmt(s) => {
                self.act(
                    ActionKind::Administration {
                        statement: "LoadStmt",
                    },
                    ctx,
                );
                self.capability(
                    Capability::ServerAdministration,
                    format!("LOAD {}", s.filename),
                    ctx,
                );
            }
            NodeRef::CheckPointStmt(_) => {
                self.act(
                    ActionKind::Maintenance {
                        statement: "CheckPointStmt",
                    },
                    ctx,
                );
                self.capability(Capability::ServerAdministration, "CHECKPOINT", ctx);
            }
            NodeRef::CreateTableSpaceStmt(s) => {
                self.act(
                    ActionKind::SchemaChange {
                        statement: "CreateTableSpaceStmt",
                    },
                    ctx,
                );
                self.capability(
                    Capability::ServerFiles,
                    format!("tablespace location {}", s.location),
                    ctx,
                );
                self.children(node, ctx);
            }

            // Opaque code.
            NodeRef::DoStmt(s) => {
                self.act(ActionKind::Do, ctx);
                let language = language_option(&s.args).unwrap_or_else(|| "plpgsql".to_owned());
                if let Some(capability) = capabilities::extension_capability(&language) {
                    self.capability(capability, format!("DO LANGUAGE {language}"), ctx);
                }
                self.opaque(OpaqueKind::DoBlock, Some(language), ctx);
            }
            NodeRef::CreateFunctionStmt(s) => {
                self.act(
                    ActionKind::SchemaChange {
                        statement: "CreateFunctionStmt",
                    },
                    ctx,
                );
                let name = strings(&s.funcname).collect::<Vec<_>>().join(".");
                let body = ctx.running(Execution::Deferred);
                if let Some(language) = language_option(&s.options) {
                    if let Some(capability) = capabilities::extension_capability(&language) {
                        self.capability(capability, format!("LANGUAGE {language}"), body);
                    }
                }
                self.opaque(OpaqueKind::FunctionDefinition, Some(name), ctx);
                for_each_child(node, &mut |field, child| match field {
                    "sql_body" => self.function_body(child, body),
                    _ => self.visit(child, body.stored()),
                });
            }
            NodeRef::AlterFunctionStmt(s) => {
                self.act(
                    ActionKind::SchemaChange {
                        statement: "AlterFunctionStmt",
                    },
                    ctx,
                );
                let name = s
                    .func
                    .as_ref()
                    .map(|f| strings(&f.objname).collect::<Vec<_>>().join("."));
                self.opaque(OpaqueKind::FunctionDefinition, name, ctx);
                self.children(node, ctx.stored());
            }
            NodeRef::CreateTrigStmt(s) => {
                self.act(
                    ActionKind::SchemaChange {
                        statement: "CreateTrigStmt",
                    },
                    ctx,
                );
                self.opaque(OpaqueKind::TriggerDefinition, Some(s.trigname.clone()), ctx);
                let rel = s.relation.as_ref().map(|rv| (rv, self.relation(rv, ALTER)));
                self.with_new_old_scope(rel, |w| {
                    for_each_child(node, &mut |field, child| match field {
                        "relation" => {}
                        "when_clause" => w.visit(child, ctx.running(Execution::Deferred)),
                        _ => w.visit(child, ctx.with_access(ALTER)),
                    });
                });
            }
            NodeRef::CreateEventTrigStmt(s) => {
                self.act(
                    ActionKind::SchemaChange {
                        statement: "CreateEventTrigStmt",
                    },
                    ctx,
                );
                self.opaque(OpaqueKind::TriggerDefinition, Some(s.trigname.clone()), ctx);
            }
            NodeRef::AlterEventTrigStmt(s) => {
                self.act(
                    ActionKind::SchemaChange {
                        statement: "AlterEventTrigStmt",
                    },
                    ctx,
                );
                // 'D' disables; 'R' fires only in replica sessions.
                if matches!(s.tgenabled.as_str(), "D" | "R") {
                    self.capability(
                        Capability::SilencedSafeguards,
                        format!("ALTER EVENT TRIGGER {}", s.trigname),
                        ctx,
                    );
                }
            }
            NodeRef::RuleStmt(s) => {
                self.act(
                    ActionKind::SchemaChange {
                        statement: "RuleStmt",
                    },
                    ctx,
                );
                self.opaque(OpaqueKind::RuleDefinition, Some(s.rulename.clone()), ctx);
                let rel = s.relation.as_ref().map(|rv| (rv, self.relation(rv, ALTER)));
                let body = ctx.running(Execution::Deferred);
                self.with_new_old_scope(rel, |w| {
                    for_each_child(node, &mut |field, child| match field {
                        "relation" => {}
                        "actions" => w.statement(child, body),
                        _ => w.visit(child, body),
                    });
                });
            }
            NodeRef::CallStmt(s) => {
                let procedure = s.funccall.as_ref().map_or_else(
                    || QualifiedName::new(None, ""),
                    |f| qualified(&strings(&f.funcname).collect::<Vec<_>>()),
                );
                self.opaque(OpaqueKind::ProcedureCall, Some(procedure.to_string()), ctx);
                self.act(ActionKind::Call { procedure }, ctx);
                if let Some(f) = &s.funccall {
                    // The procedure itself is opaque; its arguments are
                    // ordinary expressions.
                    self.children(NodeRef::FuncCall(f), ctx);
                }
            }
            NodeRef::CreateExtensionStmt(s) => {
                self.act(
                    ActionKind::SchemaChange {
                        statement: "CreateExtensionStmt",
                    },
                    ctx,
                );
                self.opaque(OpaqueKind::Extension, Some(s.extname.clone()), ctx);
                if let Some(capability) = capabilities::extension_capability(&s.extname) {
                    self.capability(capability, format!("extension {}", s.extname), ctx);
                }
            }
            NodeRef::AlterExtensionStmt(s) => {
                self.act(
                    ActionKind::SchemaChange {
                        statement: "AlterExtensionStmt",
                    },
                    ctx,
                );
                self.opaque(OpaqueKind::Extension, Some(s.extname.clone()), ctx);
            }
            NodeRef::CreatePlangStmt(s) => {
                self.act(
                    ActionKind::SchemaChange {
                        statement: "CreatePLangStmt",
                    },
                    ctx,
                );
                self.opaque(OpaqueKind::Extension, Some(s.plname.clone()), ctx);
                if let Some(capability) = capabilities::extension_capability(&s.plname) {
                    self.capability(capability, format!("language {}", s.plname), ctx);
                }
            }

            // Foreign data: every statement that defines a way to reach
            // another server.
            NodeRef::CreateFdwStmt(_)
            | NodeRef::AlterFdwStmt(_)
            | NodeRef::CreateForeignServerStmt(_)
            | NodeRef::AlterForeignServerStmt(_)
            | NodeRef::CreateForeignTableStmt(_)
            | NodeRef::ImportForeignSchemaStmt(_)
            | NodeRef::CreateUserMappingStmt(_)
            | NodeRef::AlterUserMappingStmt(_)
            | NodeRef::CreateSubscriptionStmt(_)
            | NodeRef::AlterSubscriptionStmt(_) => {
                let statement = node_name(node);
                self.act(ActionKind::SchemaChange { statement }, ctx);
                self.capability(Capability::ForeignData, statement, ctx);
                self.children(node, ctx.with_access(ALTER));
            }

            // Schema changes with a relation of their own.
            NodeRef::CreateStmt(s) => {
                self.act(
                    ActionKind::SchemaChange {
                        statement: "CreateStmt",
                    },
                    ctx,
                );
                let rel = s
                    .relation
                    .as_ref()
                    .map(|rv| (rv, self.relation(rv, CREATE)));
                self.with_relation_scope(rel, |w| {
                    w.children_except(node, &["relation"], ctx.with_access(ALTER))
                });
            }
            NodeRef::ViewStmt(s) => {
                self.act(
                    ActionKind::SchemaChange {
                        statement: "ViewStmt",
                    },
                    ctx,
                );
                if let Some(rv) = &s.view {
                    self.relation(rv, CREATE);
                }
                if let Some(q) = boxed_node(&s.query) {
                    self.statement(q, ctx.running(Execution::Deferred));
                }
                self.visit_all(&s.options, ctx);
            }
            NodeRef::IndexStmt(s) => {
                self.act(
                    ActionKind::SchemaChange {
                        statement: "IndexStmt",
                    },
                    ctx,
                );
                let rel = s.relation.as_ref().map(|rv| (rv, self.relation(rv, ALTER)));
                self.with_relation_scope(rel, |w| {
                    w.children_except(node, &["relation"], ctx.with_access(ALTER))
                });
            }
            NodeRef::CreatePolicyStmt(s) => {
                self.act(
                    ActionKind::SchemaChange {
                        statement: "CreatePolicyStmt",
                    },
                    ctx,
                );
                self.policy(node, s.table.as_ref(), ctx);
            }
            NodeRef::AlterPolicyStmt(s) => {
                self.act(
                    ActionKind::SchemaChange {
                        statement: "AlterPolicyStmt",
                    },
                    ctx,
                );
                self.policy(node, s.table.as_ref(), ctx);
            }
            NodeRef::LockStmt(s) => {
                let mut tables = Vec::new();
                for rv in s.relations.iter().filter_map(|n| match &n.node {
                    Some(NodeEnum::RangeVar(rv)) => Some(rv),
                    _ => None,
                }) {
                    self.relation(rv, LOCK);
                    tables.push(range_var_name(rv));
                }
                self.act(ActionKind::Lock { tables }, ctx);
            }
            NodeRef::RefreshMatViewStmt(s) => {
                self.act(
                    ActionKind::Maintenance {
                        statement: "RefreshMatViewStmt",
                    },
                    ctx,
                );
                if let Some(rv) = &s.relation {
                    self.relation(rv, WRITE);
                }
            }

            other => match classify::generic_statement_class(other) {
                Some(class) => self.generic_statement(other, class, ctx),
                None => return false,
            },
        }
        true
    }

    /// A statement without a dedicated handler: one action named after its
    /// node, table references in it count as altered (GRANT ON t, VACUUM t,
    /// CLUSTER t, COMMENT ON ...), and a `relation` field scopes columns.
    fn generic_statement(&mut self, node: NodeRef<'a>, class: StatementClass, ctx: Ctx) {
        let statement = node_name(node);
        let kind = match class {
            StatementClass::Privileges => ActionKind::Privileges { statement },
            StatementClass::Maintenance => ActionKind::Maintenance { statement },
            StatementClass::Notification => ActionKind::Notification { statement },
            StatementClass::SchemaChange => ActionKind::SchemaChange { statement },
            _ => ActionKind::Other { statement },
        };
        self.act(kind, ctx);
        self.children(node, ctx.with_access(ALTER));
    }

    fn with_relation_scope(
        &mut self,
        rel: Option<(&'a pb::RangeVar, usize)>,
        f: impl FnOnce(&mut Self),
    ) {
        let items = rel
            .map(|(rv, index)| {
                vec![ScopeItem {
                    name: rv
                        .alias
                        .as_ref()
                        .map_or(rv.relname.as_str(), |a| a.aliasname.as_str()),
                    schema: non_empty(&rv.schemaname),
                    relation: Some(index),
                    qualified_only: false,
                }]
            })
            .unwrap_or_default();
        self.scopes.push(items);
        f(self);
        self.scopes.pop();
    }

    /// Rules and triggers see the table's rows as NEW and OLD.
    fn with_new_old_scope(
        &mut self,
        rel: Option<(&'a pb::RangeVar, usize)>,
        f: impl FnOnce(&mut Self),
    ) {
        let mut items = Vec::new();
        if let Some((rv, index)) = rel {
            for (name, qualified_only) in
                [("new", true), ("old", true), (rv.relname.as_str(), false)]
            {
                items.push(ScopeItem {
                    name,
                    schema: None,
                    relation: Some(index),
                    qualified_only,
                });
            }
        }
        self.scopes.push(items);
        f(self);
        self.scopes.pop();
    }

    fn policy(&mut self, node: NodeRef<'a>, table: Option<&'a pb::RangeVar>, ctx: Ctx) {
        let rel = table.map(|rv| (rv, self.relation(rv, ALTER)));
        let body = ctx.running(Execution::Deferred);
        self.with_relation_scope(rel, |w| w.children_except(node, &["table"], body));
    }

    /// A SQL-standard function body (`BEGIN ATOMIC ... END` or `RETURN ...`):
    /// a list of statements, each in statement position.
    fn function_body(&mut self, body: NodeRef<'a>, ctx: Ctx) {
        match body {
            NodeRef::List(list) => {
                for item in list.items.iter().filter_map(node_of) {
                    self.function_body(item, ctx);
                }
            }
            other => self.statement(other, ctx),
        }
    }

    // ----- queries -----

    fn with_clause(&mut self, w: &'a pb::WithClause, ctx: Ctx) {
        let names = w.ctes.iter().filter_map(|c| match &c.node {
            Some(NodeEnum::CommonTableExpr(cte)) => Some(cte),
            _ => None,
        });
        if w.recursive {
            // Every name is visible in every body, its own included.
            for cte in names.clone() {
                self.ctes.push(&cte.ctename);
            }
        }
        for cte in names {
            // A data-modifying CTE runs whether or not it is referenced;
            // its action is recorded by the visit like any other.
            self.children(NodeRef::CommonTableExpr(cte), ctx.with_access(READ));
            if !w.recursive {
                // Later CTEs of the same WITH may refer to earlier ones.
                self.ctes.push(&cte.ctename);
            }
        }
    }

    fn select(&mut self, s: &'a pb::SelectStmt, ctx: Ctx, as_statement: bool) {
        if let Some(rel) = s.into_clause.as_ref().and_then(|i| i.rel.as_ref()) {
            self.relation(rel, CREATE);
            self.act(
                ActionKind::SelectInto {
                    table: range_var_name(rel),
                },
                ctx,
            );
        } else if as_statement {
            self.act(ActionKind::Select, ctx);
        }
        let ctx = ctx.with_access(READ);
        let ctes = self.ctes.len();
        if let Some(w) = &s.with_clause {
            self.with_clause(w, ctx);
        }
        self.scopes.push(Vec::new());
        for item in s.from_clause.iter().filter_map(node_of) {
            self.add_from_item(item, ctx);
        }
        self.children_except(
            NodeRef::SelectStmt(s),
            &["with_clause", "from_clause", "into_clause"],
            ctx,
        );
        self.scopes.pop();
        self.ctes.truncate(ctes);
    }

    /// One FROM item: adds what it names to the innermost scope.
    fn add_from_item(&mut self, node: NodeRef<'a>, ctx: Ctx) {
        if !self.enter() {
            return;
        }
        match node {
            NodeRef::RangeVar(rv) => {
                let is_cte = rv.schemaname.is_empty() && self.ctes.contains(&rv.relname.as_str());
                let relation = (!is_cte).then(|| self.relation(rv, READ));
                let alias = rv.alias.as_ref().map(|a| a.aliasname.as_str());
                self.push_scope_item(ScopeItem {
                    name: alias.unwrap_or(&rv.relname),
                    schema: if alias.is_none() {
                        non_empty(&rv.schemaname)
                    } else {
                        None
                    },
                    relation,
                    qualified_only: false,
                });
            }
            NodeRef::JoinExpr(j) => {
                if j.is_natural || !j.using_clause.is_empty() {
                    // NATURAL and USING joins compare with `=` by name.
                    self.implicit_operator("=");
                }
                if let Some(l) = boxed_node(&j.larg) {
                    self.add_from_item(l, ctx);
                }
                if let Some(r) = boxed_node(&j.rarg) {
                    self.add_from_item(r, ctx);
                }
                self.children_except(node, &["larg", "rarg"], ctx);
                if let Some(a) = &j.alias {
                    self.push_derived(&a.aliasname);
                }
            }
            NodeRef::RangeSubselect(r) => {
                self.children(node, ctx);
                if let Some(a) = &r.alias {
                    self.push_derived(&a.aliasname);
                }
            }
            NodeRef::RangeFunction(r) => {
                self.children(node, ctx);
                let name = r.alias.as_ref().map(|a| a.aliasname.as_str()).or_else(|| {
                    // Without an alias, the function's name is the alias.
                    r.functions.first().and_then(|f| match &f.node {
                        Some(NodeEnum::List(l)) => l.items.first().and_then(|fc| match &fc.node {
                            Some(NodeEnum::FuncCall(fc)) => fc.funcname.last().and_then(string_of),
                            _ => None,
                        }),
                        _ => None,
                    })
                });
                if let Some(name) = name {
                    self.push_derived(name);
                }
            }
            NodeRef::RangeTableSample(r) => {
                if let Some(rel) = boxed_node(&r.relation) {
                    self.add_from_item(rel, ctx);
                }
                self.children_except(node, &["relation"], ctx);
            }
            NodeRef::RangeTableFunc(r) => {
                self.children(node, ctx);
                if let Some(a) = &r.alias {
                    self.push_derived(&a.aliasname);
                }
            }
            NodeRef::JsonTable(t) => {
                self.children(node, ctx);
                if let Some(a) = &t.alias {
                    self.push_derived(&a.aliasname);
                }
            }
            other => self.dispatch(other, ctx),
        }
        self.depth -= 1;
    }

    fn push_scope_item(&mut self, item: ScopeItem<'a>) {
        if let Some(scope) = self.scopes.last_mut() {
            scope.push(item);
        }
    }

    fn push_derived(&mut self, name: &'a str) {
        self.push_scope_item(ScopeItem {
            name,
            schema: None,
            relation: None,
            qualified_only: false,
        });
    }

    /// Names the rows of the innermost scope can be referred to by.
    fn range_names(&self) -> Vec<&'a str> {
        self.scopes
            .last()
            .map(|s| s.iter().map(|i| i.name).collect())
            .unwrap_or_default()
    }

    fn target_scope(&mut self, rv: &'a pb::RangeVar, index: usize) {
        self.scopes.push(vec![ScopeItem {
            name: rv
                .alias
                .as_ref()
                .map_or(rv.relname.as_str(), |a| a.aliasname.as_str()),
            schema: if rv.alias.is_none() {
                non_empty(&rv.schemaname)
            } else {
                None
            },
            relation: Some(index),
            qualified_only: false,
        }]);
    }

    /// The column names of `INSERT (a, b)` / MERGE INSERT, or all columns.
    fn written_columns(&mut self, target: usize, cols: &'a [Node], ctx: Ctx) {
        if cols.is_empty() {
            self.column(Some(target), ColumnName::All, false, true);
        }
        for col in cols {
            if let Some(NodeEnum::ResTarget(rt)) = &col.node {
                self.column(
                    Some(target),
                    ColumnName::Named(rt.name.clone()),
                    false,
                    true,
                );
                // Subscripts and field names after the column.
                self.visit_all(&rt.indirection, ctx);
            }
        }
    }

    /// `SET a = x, b = y` of UPDATE, ON CONFLICT DO UPDATE and MERGE.
    fn set_clause(&mut self, target: usize, targets: &'a [Node], ctx: Ctx) {
        for t in targets {
            if let Some(NodeEnum::ResTarget(rt)) = &t.node {
                self.column(
                    Some(target),
                    ColumnName::Named(rt.name.clone()),
                    false,
                    true,
                );
                self.children(NodeRef::ResTarget(rt), ctx);
            }
        }
    }

    fn returning(&mut self, target: usize, r: Option<&'a pb::ReturningClause>, ctx: Ctx) {
        let Some(r) = r else { return };
        if let Some(rel) = self.facts.relations.get_mut(target) {
            // RETURNING hands the rows' values back: a read.
            rel.access.read = true;
        }
        // PG 18: RETURNING WITH (OLD AS o, NEW AS n).
        let mut aliases = Vec::new();
        for option in &r.options {
            if let Some(NodeEnum::ReturningOption(o)) = &option.node {
                aliases.push(o.value.as_str());
            }
        }
        if let Some(scope) = self.scopes.last_mut() {
            for name in ["old", "new"].into_iter().chain(aliases) {
                scope.push(ScopeItem {
                    name,
                    schema: None,
                    relation: Some(target),
                    qualified_only: true,
                });
            }
        }
        self.visit_all(&r.exprs, ctx);
    }

    fn insert(&mut self, s: &'a pb::InsertStmt, ctx: Ctx) {
        let Some(rv) = &s.relation else {
            return self.children(NodeRef::InsertStmt(s), ctx);
        };
        let target = self.relation(rv, WRITE);
        let on_conflict = s.on_conflict_clause.as_ref().map(|oc| {
            if oc.action == pb::OnConflictAction::OnconflictUpdate as i32 {
                OnConflict::DoUpdate
            } else {
                OnConflict::DoNothing
            }
        });
        self.act(
            ActionKind::Insert {
                table: range_var_name(rv),
                on_conflict,
                returning: s.returning_clause.is_some(),
            },
            ctx,
        );
        let ctx = ctx.with_access(READ);
        let ctes = self.ctes.len();
        if let Some(w) = &s.with_clause {
            self.with_clause(w, ctx);
        }
        self.written_columns(target, &s.cols, ctx);
        if let Some(source) = boxed_node(&s.select_stmt) {
            self.visit(source, ctx);
        }
        self.target_scope(rv, target);
        if let Some(oc) = &s.on_conflict_clause {
            // EXCLUDED is the row proposed for insertion.
            self.push_scope_item(ScopeItem {
                name: "excluded",
                schema: None,
                relation: None,
                qualified_only: true,
            });
            self.set_clause(target, &oc.target_list, ctx);
            self.children_except(NodeRef::OnConflictClause(oc), &["target_list"], ctx);
        }
        self.returning(target, s.returning_clause.as_ref(), ctx);
        self.scopes.pop();
        self.ctes.truncate(ctes);
    }

    fn update(&mut self, s: &'a pb::UpdateStmt, ctx: Ctx) {
        let Some(rv) = &s.relation else {
            return self.children(NodeRef::UpdateStmt(s), ctx);
        };
        let target = self.relation(rv, READ_WRITE);
        let action = self.act(
            ActionKind::Update {
                table: range_var_name(rv),
                filter: Filter::Absent,
                returning: s.returning_clause.is_some(),
            },
            ctx,
        );
        let ctx = ctx.with_access(READ);
        let ctes = self.ctes.len();
        if let Some(w) = &s.with_clause {
            self.with_clause(w, ctx);
        }
        self.target_scope(rv, target);
        for item in s.from_clause.iter().filter_map(node_of) {
            self.add_from_item(item, ctx);
        }
        let filter = where_clause::assess(s.where_clause.as_deref(), &self.range_names());
        if let Some(Action {
            kind: ActionKind::Update { filter: f, .. },
            ..
        }) = self.facts.actions.get_mut(action)
        {
            *f = filter;
        }
        self.set_clause(target, &s.target_list, ctx);
        self.visit_opt(boxed_node(&s.where_clause), ctx);
        self.returning(target, s.returning_clause.as_ref(), ctx);
        self.scopes.pop();
        self.ctes.truncate(ctes);
    }

    fn delete(&mut self, s: &'a pb::DeleteStmt, ctx: Ctx) {
        let Some(rv) = &s.relation else {
            return self.children(NodeRef::DeleteStmt(s), ctx);
        };
        let target = self.relation(rv, READ_WRITE);
        let action = self.act(
            ActionKind::Delete {
                table: range_var_name(rv),
                filter: Filter::Absent,
                returning: s.returning_clause.is_some(),
            },
            ctx,
        );
        let ctx = ctx.with_access(READ);
        let ctes = self.ctes.len();
        if let Some(w) = &s.with_clause {
            self.with_clause(w, ctx);
        }
        self.target_scope(rv, target);
        for item in s.using_clause.iter().filter_map(node_of) {
            self.add_from_item(item, ctx);
        }
        let filter = where_clause::assess(s.where_clause.as_deref(), &self.range_names());
        if let Some(Action {
            kind: ActionKind::Delete { filter: f, .. },
            ..
        }) = self.facts.actions.get_mut(action)
        {
            *f = filter;
        }
        self.visit_opt(boxed_node(&s.where_clause), ctx);
        self.returning(target, s.returning_clause.as_ref(), ctx);
        self.scopes.pop();
        self.ctes.truncate(ctes);
    }

    fn merge(&mut self, s: &'a pb::MergeStmt, ctx: Ctx) {
        let Some(rv) = &s.relation else {
            return self.children(NodeRef::MergeStmt(s), ctx);
        };
        let target = self.relation(rv, READ_WRITE);
        let action = self.act(
            ActionKind::Merge {
                table: range_var_name(rv),
                join: Filter::Absent,
                clauses: Vec::new(),
                returning: s.returning_clause.is_some(),
            },
            ctx,
        );
        let ctx = ctx.with_access(READ);
        let ctes = self.ctes.len();
        if let Some(w) = &s.with_clause {
            self.with_clause(w, ctx);
        }
        self.target_scope(rv, target);
        if let Some(source) = boxed_node(&s.source_relation) {
            self.add_from_item(source, ctx);
        }
        let names = self.range_names();
        let join = where_clause::assess(s.join_condition.as_deref(), &names);
        let mut clauses = Vec::new();
        for w in &s.merge_when_clauses {
            let Some(NodeEnum::MergeWhenClause(w)) = &w.node else {
                continue;
            };
            let when = match pb::MergeMatchKind::try_from(w.match_kind) {
                Ok(pb::MergeMatchKind::MergeWhenNotMatchedBySource) => {
                    MergeWhen::NotMatchedBySource
                }
                Ok(pb::MergeMatchKind::MergeWhenNotMatchedByTarget) => {
                    MergeWhen::NotMatchedByTarget
                }
                _ => MergeWhen::Matched,
            };
            let command = match pb::CmdType::try_from(w.command_type) {
                Ok(pb::CmdType::CmdUpdate) => MergeCommand::Update,
                Ok(pb::CmdType::CmdDelete) => MergeCommand::Delete,
                Ok(pb::CmdType::CmdInsert) => MergeCommand::Insert,
                Ok(pb::CmdType::CmdNothing) => MergeCommand::Nothing,
                // Unknown: assume the most destructive.
                _ => MergeCommand::Delete,
            };
            clauses.push(MergeClause {
                when,
                command,
                condition: where_clause::assess(w.condition.as_deref(), &names),
            });
        }
        if let Some(Action {
            kind:
                ActionKind::Merge {
                    join: j,
                    clauses: c,
                    ..
                },
            ..
        }) = self.facts.actions.get_mut(action)
        {
            *j = join;
            *c = clauses;
        }
        self.visit_opt(boxed_node(&s.join_condition), ctx);
        for w in &s.merge_when_clauses {
            let Some(NodeEnum::MergeWhenClause(w)) = &w.node else {
                continue;
            };
            self.visit_opt(boxed_node(&w.condition), ctx);
            if w.command_type == pb::CmdType::CmdInsert as i32 {
                self.written_columns(target, &w.target_list, ctx);
                self.visit_all(&w.values, ctx);
            } else {
                self.set_clause(target, &w.target_list, ctx);
                self.visit_all(&w.values, ctx);
            }
        }
        self.returning(target, s.returning_clause.as_ref(), ctx);
        self.scopes.pop();
        self.ctes.truncate(ctes);
    }

    fn copy(&mut self, s: &'a pb::CopyStmt, ctx: Ctx) {
        let direction = if s.is_from {
            CopyDirection::From
        } else {
            CopyDirection::To
        };
        let endpoint = if s.is_program {
            CopyEndpoint::Program(s.filename.clone())
        } else if s.filename.is_empty() {
            CopyEndpoint::Client
        } else {
            CopyEndpoint::ServerFile(s.filename.clone())
        };
        match &endpoint {
            CopyEndpoint::Program(p) => {
                self.capability(Capability::ServerProgram, format!("COPY PROGRAM {p}"), ctx)
            }
            CopyEndpoint::ServerFile(f) => {
                self.capability(Capability::ServerFiles, format!("COPY file {f}"), ctx)
            }
            CopyEndpoint::Client => {}
        }
        if direction == CopyDirection::To && endpoint == CopyEndpoint::Client {
            self.facts.copy_out = Some(copy_options(&s.options));
        }
        let target = s.relation.as_ref().map(|rv| {
            let access = if s.is_from { WRITE } else { READ };
            (rv, self.relation(rv, access))
        });
        self.act(
            ActionKind::Copy {
                table: target.map(|(rv, _)| range_var_name(rv)),
                direction,
                endpoint,
            },
            ctx,
        );
        if let Some((_, index)) = target {
            let cols: Vec<&str> = strings(&s.attlist).collect();
            if cols.is_empty() {
                self.column(Some(index), ColumnName::All, !s.is_from, s.is_from);
            }
            for col in cols {
                self.column(
                    Some(index),
                    ColumnName::Named(col.to_owned()),
                    !s.is_from,
                    s.is_from,
                );
            }
        }
        if let Some(q) = boxed_node(&s.query) {
            self.statement(q, ctx);
        }
        self.with_relation_scope(target, |w| {
            w.children_except(NodeRef::CopyStmt(s), &["relation", "query", "attlist"], ctx)
        });
    }

    fn explain(&mut self, s: &'a pb::ExplainStmt, ctx: Ctx) {
        let analyze = s.options.iter().any(|o| match &o.node {
            Some(NodeEnum::DefElem(d)) => {
                d.defname.eq_ignore_ascii_case("analyze") && def_bool(d.arg.as_deref())
            }
            _ => false,
        });
        self.act(ActionKind::Explain { analyze }, ctx);
        let body = if analyze {
            ctx
        } else {
            ctx.running(Execution::Never)
        };
        if let Some(q) = boxed_node(&s.query) {
            self.statement(q, body);
        }
        self.visit_all(&s.options, ctx);
    }

    fn create_table_as(&mut self, s: &'a pb::CreateTableAsStmt, ctx: Ctx) {
        let materialized = s.objtype == pb::ObjectType::ObjectMatview as i32;
        let with_data = !s.into.as_ref().is_some_and(|i| i.skip_data);
        let table = match s.into.as_ref().and_then(|i| i.rel.as_ref()) {
            Some(rv) => {
                self.relation(rv, CREATE);
                range_var_name(rv)
            }
            None => QualifiedName::new(None, ""),
        };
        self.act(
            ActionKind::CreateTableAs {
                table,
                materialized,
                with_data,
            },
            ctx,
        );
        let body = match (with_data, materialized) {
            (true, _) => ctx,
            // The view's query runs at REFRESH.
            (false, true) => ctx.running(Execution::Deferred),
            (false, false) => ctx.running(Execution::Never),
        };
        if let Some(q) = boxed_node(&s.query) {
            self.statement(q, body);
        }
    }

    // ----- DDL -----

    fn drop_named(&mut self, object: ObjectKind, names: Vec<String>, cascade: bool, ctx: Ctx) {
        self.act(
            ActionKind::Drop {
                object,
                names,
                cascade,
            },
            ctx,
        );
    }

    fn drop(&mut self, s: &'a pb::DropStmt, ctx: Ctx) {
        let object = classify::object_kind(s.remove_type);
        let cascade = s.behavior == pb::DropBehavior::DropCascade as i32;
        let names = s.objects.iter().map(object_name).collect();
        for o in &s.objects {
            let Some(NodeEnum::List(list)) = &o.node else {
                continue;
            };
            let parts: Vec<&str> = strings(&list.items).collect();
            let table_parts = match object {
                k if k.is_relation() => Some(&parts[..]),
                // `DROP TRIGGER t ON s.tbl`: the last part is the trigger.
                ObjectKind::Trigger | ObjectKind::Rule | ObjectKind::Policy => {
                    parts.split_last().map(|(_, t)| t)
                }
                _ => None,
            };
            if let Some(table) = table_parts.filter(|t| !t.is_empty()) {
                self.relation_named(qualified(table), ALTER, true);
            }
        }
        self.drop_named(object, names, cascade, ctx);
    }

    fn rename(&mut self, s: &'a pb::RenameStmt, ctx: Ctx) {
        let object = classify::object_kind(s.rename_type);
        let member = non_empty(&s.subname).map(str::to_owned);
        // Schemas, databases, roles, tablespaces... carry their name in
        // `subname` and have neither relation nor object node.
        let (name, member) = match (&s.relation, s.object.as_deref()) {
            (Some(rv), _) => {
                self.relation(rv, ALTER);
                (range_var_name(rv).to_string(), member)
            }
            (None, Some(object)) => (object_name(object), member),
            (None, None) => (member.unwrap_or_default(), None),
        };
        self.act(
            ActionKind::Rename {
                object,
                name,
                member,
                new_name: s.newname.clone(),
            },
            ctx,
        );
    }

    fn alter_table(&mut self, s: &'a pb::AlterTableStmt, ctx: Ctx) {
        let object = classify::object_kind(s.objtype);
        let rel = s.relation.as_ref().map(|rv| (rv, self.relation(rv, ALTER)));
        let table = rel.map_or_else(
            || QualifiedName::new(None, ""),
            |(rv, _)| range_var_name(rv),
        );
        for cmd in &s.cmds {
            let Some(NodeEnum::AlterTableCmd(cmd)) = &cmd.node else {
                continue;
            };
            let (command, effect) = classify::alter_table_command(cmd.subtype);
            let name = non_empty(&cmd.name).map(str::to_owned);
            if effect == AlterTableEffect::SilencesSafeguards {
                self.capability(
                    Capability::SilencedSafeguards,
                    format!("{command} on {table}"),
                    ctx,
                );
            }
            if let (Some((_, index)), Some(column)) = (rel, &name) {
                let rewrites_column = cmd.subtype == pb::AlterTableType::AtDropColumn as i32
                    || cmd.subtype == pb::AlterTableType::AtAlterColumnType as i32;
                if rewrites_column {
                    self.column(Some(index), ColumnName::Named(column.clone()), false, true);
                }
            }
            self.act(
                ActionKind::AlterTable {
                    table: table.clone(),
                    object,
                    command,
                    name,
                    effect,
                },
                ctx,
            );
        }
        self.with_relation_scope(rel, |w| {
            w.children_except(
                NodeRef::AlterTableStmt(s),
                &["relation"],
                ctx.with_access(ALTER),
            )
        });
    }

    // ----- settings -----

    fn variable_set(&mut self, s: &'a pb::VariableSetStmt, ctx: Ctx) {
        if ctx.stored_setting {
            // ALTER ROLE / DATABASE / SYSTEM / FUNCTION ... SET: not a
            // change to this session; named for whoever guards the names.
            if !s.name.is_empty() {
                self.facts.stored_settings.push(s.name.to_ascii_lowercase());
            }
            return self.children(NodeRef::VariableSetStmt(s), ctx);
        }
        self.act(
            ActionKind::Session {
                statement: "VariableSetStmt",
            },
            ctx,
        );
        let scope = if s.is_local {
            SettingScope::Transaction
        } else {
            SettingScope::Session
        };
        let name = s.name.to_ascii_lowercase();
        let (target, value) = match pb::VariableSetKind::try_from(s.kind) {
            Ok(pb::VariableSetKind::VarSetValue) => {
                let values: Option<Vec<String>> = s.args.iter().map(const_text).collect();
                (
                    SettingTarget::Named(name),
                    values.map_or(SettingValue::Unknown, SettingValue::Values),
                )
            }
            Ok(pb::VariableSetKind::VarSetDefault | pb::VariableSetKind::VarReset) => {
                (SettingTarget::Named(name), SettingValue::Default)
            }
            Ok(pb::VariableSetKind::VarResetAll) => (SettingTarget::All, SettingValue::Default),
            // SET TRANSACTION / SESSION CHARACTERISTICS, FROM CURRENT.
            _ => (SettingTarget::Named(name), SettingValue::Unknown),
        };
        self.setting(target, value, scope, SettingSource::Statement, ctx);
        self.children(NodeRef::VariableSetStmt(s), ctx);
    }

    /// `set_config(name, value, is_local)`: a SET in function form.
    fn set_config(&mut self, args: &'a [Node], ctx: Ctx) {
        let target = match args.first().and_then(const_text) {
            Some(name) => SettingTarget::Named(name.to_ascii_lowercase()),
            None => SettingTarget::Unknown,
        };
        let value = args
            .get(1)
            .and_then(const_text)
            .map_or(SettingValue::Unknown, |v| SettingValue::Values(vec![v]));
        let scope = match args
            .get(2)
            .and_then(const_text)
            .map(|t| t.to_ascii_lowercase())
        {
            Some(t) if ["t", "true", "yes", "on", "1"].contains(&t.as_str()) => {
                SettingScope::Transaction
            }
            Some(t) if ["f", "false", "no", "off", "0"].contains(&t.as_str()) => {
                SettingScope::Session
            }
            _ => SettingScope::Unknown,
        };
        self.setting(target, value, scope, SettingSource::SetConfig, ctx);
    }

    // ----- expressions -----

    fn func_call(&mut self, f: &'a pb::FuncCall, ctx: Ctx) {
        let parts: Vec<&str> = strings(&f.funcname).collect();
        let name = qualified(&parts);
        let function = FunctionUse {
            args: f.args.len(),
            execution: ctx.execution,
            name,
        };
        let bare = function.name.name.as_str();
        if let Some(capability) = capabilities::function_capability(bare) {
            self.capability(capability, bare.to_owned(), ctx);
        }
        if capabilities::runs_sql_text(bare) {
            self.opaque(OpaqueKind::DynamicSql, Some(bare.to_owned()), ctx);
        }
        if bare.eq_ignore_ascii_case("set_config") {
            self.set_config(&f.args, ctx);
        }
        if !self.facts.functions.contains(&function) {
            self.facts.functions.push(function);
        }
        self.children(NodeRef::FuncCall(f), ctx);
    }

    fn operator(&mut self, name: &'a [Node], ctx: Ctx) {
        if name.is_empty() {
            return;
        }
        let parts: Vec<&str> = strings(name).collect();
        let Some((op, schema)) = parts.split_last() else {
            return;
        };
        let schema = schema.last().copied();
        if !capabilities::is_builtin_operator(schema, op) {
            self.opaque(OpaqueKind::UnknownOperator, Some(parts.join(".")), ctx);
        }
        let operator = QualifiedName::new(schema, op);
        if !self.facts.operators.contains(&operator) {
            self.facts.operators.push(operator);
        }
    }

    /// An operator the statement uses without writing it.
    fn implicit_operator(&mut self, op: &str) {
        let operator = QualifiedName::new(None, op);
        if !self.facts.operators.contains(&operator) {
            self.facts.operators.push(operator);
        }
    }

    fn column_ref(&mut self, c: &'a pb::ColumnRef) {
        let mut parts: Vec<&'a str> = Vec::with_capacity(c.fields.len());
        let mut star = false;
        for f in &c.fields {
            match &f.node {
                Some(NodeEnum::String(s)) => parts.push(&s.sval),
                Some(NodeEnum::AStar(_)) => star = true,
                _ => {}
            }
        }
        if star {
            if parts.is_empty() {
                // `*`: every relation of the innermost query level.
                let relations: Vec<usize> = self
                    .scopes
                    .last()
                    .map(|s| s.iter().filter_map(|i| i.relation).collect())
                    .unwrap_or_default();
                for r in relations {
                    self.column(Some(r), ColumnName::All, true, false);
                }
            } else if let Some(item) = self.lookup_qualifier(&parts) {
                if let Some(r) = item.relation {
                    self.column(Some(r), ColumnName::All, true, false);
                }
            }
            return;
        }
        match parts.split_last() {
            None => {}
            Some((column, [])) => self.unqualified_column(column),
            Some((column, qualifier)) => match self.lookup_qualifier(qualifier) {
                Some(item) => {
                    if let Some(r) = item.relation {
                        self.column(
                            Some(r),
                            ColumnName::Named((*column).to_owned()),
                            true,
                            false,
                        );
                    }
                }
                // `a.b` with no FROM item `a`: column `a`, field `b`.
                None => {
                    if let Some(first) = parts.first() {
                        self.unqualified_column(first);
                    }
                }
            },
        }
    }

    /// Finds the FROM item `t` (or `s.t`, `db.s.t`) innermost first.
    fn lookup_qualifier(&self, qualifier: &[&str]) -> Option<ScopeItem<'a>> {
        let (name, schema) = match qualifier {
            [name] => (*name, None),
            [.., schema, name] => (*name, Some(*schema)),
            [] => return None,
        };
        self.scopes.iter().rev().find_map(|scope| {
            scope
                .iter()
                .find(|i| i.name == name && (schema.is_none() || i.schema == schema))
                .copied()
        })
    }

    fn unqualified_column(&mut self, column: &str) {
        // The innermost query level with any FROM item decides.
        let items: Vec<ScopeItem<'a>> = self
            .scopes
            .iter()
            .rev()
            .map(|s| {
                s.iter()
                    .filter(|i| !i.qualified_only)
                    .copied()
                    .collect::<Vec<_>>()
            })
            .find(|s| !s.is_empty())
            .unwrap_or_default();
        let name = ColumnName::Named(column.to_owned());
        match items.as_slice() {
            [] => self.column(None, name, true, false),
            [only] => {
                if let Some(r) = only.relation {
                    self.column(Some(r), name, true, false);
                }
            }
            several => {
                if several.iter().any(|i| i.relation.is_some()) {
                    self.column(None, name, true, false);
                }
            }
        }
    }
}
