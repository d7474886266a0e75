//! From what the analysis found in one statement to what the policy judges.
//!
//! The analysis reports actions with names as written; the policy wants one
//! [`Operation`] per thing done, on schema-qualified resources. This is the
//! one place that maps between the two, following the action table in the
//! policy crate's README:
//!
//! - every action at any depth counts (data-modifying CTEs, the body of
//!   EXPLAIN ANALYZE, PREPARE, CREATE RULE...), except bodies that never run
//!   (plain EXPLAIN, CREATE TABLE AS ... WITH NO DATA);
//! - reads anywhere in the statement are one `Select` operation on every
//!   relation read, views and partitions expanded to what they reach;
//! - writes name their target table (and what it expands to);
//! - `INSERT ... ON CONFLICT DO UPDATE` is an `Insert` and an `Update`
//!   limited to the conflicting rows; `CREATE TABLE AS` is a `SchemaChange`
//!   and an `Insert` into the new table.

use portcullis_analysis::resolve::ResolutionBasis;
use portcullis_analysis::{
    self as analysis, Access, ActionKind, AlterTableEffect, ColumnName, CopyDirection,
    DatabaseOperation, Execution, ObjectKind, OnConflict, QualifiedName, RelationUse, Resolver,
};
use portcullis_policy::{self as policy, Action, Capability, Operation, ResourceRef};

use crate::catalog::CatalogView;

/// What the session knows when a statement is judged.
#[derive(Clone, Copy)]
pub struct Scope<'a> {
    /// The search_path items (`$user` unexpanded), as SHOW prints them.
    pub search_path: &'a [String],
    /// The role the server runs statements as (for `$user`).
    pub session_user: Option<&'a str>,
    /// The target's catalog, when loaded, as this session may rely on it.
    pub catalog: Option<&'a CatalogView<'a>>,
}

impl<'a> Scope<'a> {
    fn resolver(&self) -> Resolver<'a> {
        Resolver {
            search_path: self.search_path,
            session_user: self.session_user,
            catalog: self.catalog.map(|c| c as &dyn analysis::RelationCatalog),
        }
    }

    fn function_catalog(&self) -> Option<&'a dyn analysis::FunctionCatalog> {
        self.catalog.map(|c| c as &dyn analysis::FunctionCatalog)
    }

    /// Where an unqualified name lands when nothing better is known: the
    /// first schema of the path a user can name.
    fn fallback_schema(&self) -> Option<&'a str> {
        self.search_path
            .iter()
            .find(|s| !matches!(s.as_str(), "$user" | "pg_catalog" | "pg_temp"))
            .map(String::as_str)
    }
}

/// Describes one statement for the policy. `into` accumulates, so a
/// statement and the prepared body it executes can be judged as one.
pub fn describe_into(
    into: &mut policy::StatementFacts,
    facts: &analysis::StatementFacts,
    scope: &Scope<'_>,
) {
    let resolver = scope.resolver();
    let resolved = resolver.resolve(facts);

    // One Select over everything read, anywhere in the statement.
    let mut reads: Vec<ResourceRef> = Vec::new();
    for r in &resolved {
        if r.access.read {
            if let Some(res) = table_ref(&r.name, r.basis, scope) {
                push_unique(&mut reads, res);
            }
        }
    }
    // Columns name few relations many times: resolve each relation once.
    let mut tables_of: Vec<(&QualifiedName, Vec<ResourceRef>)> = Vec::new();
    for c in &facts.columns {
        if !c.read {
            continue;
        }
        if let (Some(rel), ColumnName::Named(col)) = (&c.relation, &c.column) {
            let at = match tables_of.iter().position(|(r, _)| *r == rel) {
                Some(at) => at,
                None => {
                    tables_of.push((rel, resolve_one(rel, reading(), scope)));
                    tables_of.len() - 1
                }
            };
            for table in &tables_of[at].1 {
                if let ResourceRef::Table { schema, table } = table {
                    push_unique(
                        &mut reads,
                        ResourceRef::column(schema.clone(), table.clone(), col.clone()),
                    );
                }
            }
        }
    }
    let reads_anything = !reads.is_empty()
        || facts
            .actions
            .iter()
            .any(|a| a.execution != Execution::Never && matches!(a.kind, ActionKind::Select));
    if reads_anything {
        push_operation(into, Operation::new(Action::Select, reads));
    }

    for action in &facts.actions {
        if action.execution == Execution::Never {
            continue;
        }
        for op in operations(&action.kind, facts, scope) {
            push_operation(into, op);
        }
    }

    let path = scope.search_path;
    if facts.is_opaque(path, scope.function_catalog()) {
        into.opaque = true;
    }
    for cap in &facts.capabilities {
        if cap.execution == Execution::Never {
            continue;
        }
        for c in capabilities(cap) {
            into.dangerous.insert(c);
        }
    }
    for f in &facts.functions {
        if f.execution == Execution::Never {
            continue;
        }
        into.functions.insert(function_name(&f.name, f.args, scope));
    }
}

/// Describes one statement on its own.
pub fn describe(
    facts: &analysis::StatementFacts,
    scope: &Scope<'_>,
    statement_count: u32,
) -> policy::StatementFacts {
    let mut out = policy::StatementFacts {
        statement_count,
        ..Default::default()
    };
    describe_into(&mut out, facts, scope);
    out
}

fn reading() -> Access {
    Access {
        read: true,
        ..Access::default()
    }
}

fn creating() -> Access {
    Access {
        create: true,
        ..Access::default()
    }
}

fn push_unique(list: &mut Vec<ResourceRef>, r: ResourceRef) {
    if !list.contains(&r) {
        list.push(r);
    }
}

/// Adds an operation, merging it with an equal one already there.
fn push_operation(into: &mut policy::StatementFacts, op: Operation) {
    if let Some(existing) = into
        .operations
        .iter_mut()
        .find(|o| o.action == op.action && o.has_effective_where == op.has_effective_where)
    {
        for r in op.resources {
            push_unique(&mut existing.resources, r);
        }
    } else {
        into.operations.push(op);
    }
}

fn table_ref(
    name: &QualifiedName,
    basis: ResolutionBasis,
    scope: &Scope<'_>,
) -> Option<ResourceRef> {
    let schema = match (&name.schema, basis) {
        (Some(s), _) => s.as_str(),
        (None, _) => scope.fallback_schema()?,
    };
    Some(ResourceRef::table(schema, name.name.clone()))
}

/// The tables one name reaches with `access`: qualified, views and
/// children expanded.
fn resolve_one(name: &QualifiedName, access: Access, scope: &Scope<'_>) -> Vec<ResourceRef> {
    let facts = analysis::StatementFacts {
        span: 0..0,
        class: analysis::StatementClass::Other,
        actions: Vec::new(),
        relations: vec![RelationUse {
            relation: name.clone(),
            access,
            include_descendants: true,
        }],
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
        row_choice: analysis::Lineage::NONE,
        writes: Vec::new(),
    };
    let mut out = Vec::new();
    for r in scope.resolver().resolve(&facts) {
        if let Some(res) = table_ref(&r.name, r.basis, scope) {
            push_unique(&mut out, res);
        }
    }
    out
}

/// A dotted name as the analysis writes DROP / rename targets.
fn split_dotted(name: &str) -> QualifiedName {
    match name.rsplit_once('.') {
        Some((schema, object)) => {
            // `db.schema.table`: the database part is dropped.
            let schema = schema.rsplit('.').next().unwrap_or(schema);
            QualifiedName::new(Some(schema), object)
        }
        None => QualifiedName::new(None, name),
    }
}

/// The resources a DROP / rename / SET SCHEMA names.
fn object_refs(object: ObjectKind, name: &str, scope: &Scope<'_>) -> Vec<ResourceRef> {
    if object == ObjectKind::Schema {
        return vec![ResourceRef::schema(name)];
    }
    if object.is_relation() || object == ObjectKind::Column {
        let alter = Access {
            alter: true,
            ..Access::default()
        };
        return resolve_one(&split_dotted(name), alter, scope);
    }
    Vec::new()
}

fn written_columns(
    facts: &analysis::StatementFacts,
    table: &QualifiedName,
    targets: &[ResourceRef],
) -> Vec<ResourceRef> {
    let mut out = Vec::new();
    for c in &facts.columns {
        if !c.written {
            continue;
        }
        let ColumnName::Named(col) = &c.column else {
            continue;
        };
        if c.relation.as_ref().is_some_and(|r| r.name != table.name) {
            continue;
        }
        for t in targets {
            if let ResourceRef::Table { schema, table } = t {
                out.push(ResourceRef::column(
                    schema.clone(),
                    table.clone(),
                    col.clone(),
                ));
            }
        }
    }
    out
}

fn write(
    action: Action,
    table: &QualifiedName,
    facts: &analysis::StatementFacts,
    scope: &Scope<'_>,
) -> Operation {
    let access = Access {
        write: true,
        ..Access::default()
    };
    let mut resources = resolve_one(table, access, scope);
    let columns = written_columns(facts, table, &resources);
    resources.extend(columns);
    Operation::new(action, resources)
}

fn operations(
    kind: &ActionKind,
    facts: &analysis::StatementFacts,
    scope: &Scope<'_>,
) -> Vec<Operation> {
    let filtered =
        |op: Operation, filter: analysis::Filter| op.with_effective_where(filter.is_effective());
    match kind {
        // Reads were gathered into one Select already.
        ActionKind::Select => Vec::new(),
        ActionKind::SelectInto { table } => vec![
            Operation::new(Action::SchemaChange, resolve_one(table, creating(), scope)),
            write(Action::Insert, table, facts, scope),
        ],
        ActionKind::CreateTableAs {
            table, with_data, ..
        } => {
            let mut ops = vec![Operation::new(
                Action::SchemaChange,
                resolve_one(table, creating(), scope),
            )];
            if *with_data {
                ops.push(write(Action::Insert, table, facts, scope));
            }
            ops
        }
        ActionKind::Insert {
            table, on_conflict, ..
        } => {
            let mut ops = vec![write(Action::Insert, table, facts, scope)];
            if *on_conflict == Some(OnConflict::DoUpdate) {
                // Only rows that conflict with the inserted ones change.
                ops.push(write(Action::Update, table, facts, scope).with_effective_where(true));
            }
            ops
        }
        ActionKind::Update { table, filter, .. } => {
            vec![filtered(
                write(Action::Update, table, facts, scope),
                *filter,
            )]
        }
        ActionKind::Delete { table, filter, .. } => {
            vec![filtered(
                write(Action::Delete, table, facts, scope),
                *filter,
            )]
        }
        ActionKind::Merge { table, .. } => {
            let filter = kind.filter().unwrap_or(analysis::Filter::Absent);
            vec![filtered(write(Action::Merge, table, facts, scope), filter)]
        }
        ActionKind::Copy {
            table, direction, ..
        } => {
            let (action, access) = match direction {
                CopyDirection::To => (Action::CopyOut, reading()),
                CopyDirection::From => (
                    Action::CopyIn,
                    Access {
                        write: true,
                        ..Access::default()
                    },
                ),
            };
            let resources = match table {
                Some(t) => resolve_one(t, access, scope),
                // COPY (query) TO: what the query reads.
                None => facts
                    .relations
                    .iter()
                    .filter(|r| r.access.read)
                    .flat_map(|r| resolve_one(&r.relation, reading(), scope))
                    .collect(),
            };
            vec![Operation::new(action, resources)]
        }
        ActionKind::Explain { .. } => vec![Operation::new(Action::Utility, Vec::new())],
        ActionKind::Truncate { tables, .. } => {
            let access = Access {
                write: true,
                ..Access::default()
            };
            let resources = tables
                .iter()
                .flat_map(|t| resolve_one(t, access, scope))
                .collect();
            vec![Operation::new(Action::Truncate, resources)]
        }
        ActionKind::Drop { object, names, .. } => {
            let resources = names
                .iter()
                .flat_map(|n| object_refs(*object, n, scope))
                .collect();
            vec![Operation::new(Action::Drop, resources)]
        }
        ActionKind::DropOwned { .. } => vec![Operation::new(Action::Drop, Vec::new())],
        ActionKind::Rename { object, name, .. } => {
            vec![Operation::new(
                Action::Rename,
                object_refs(*object, name, scope),
            )]
        }
        ActionKind::SetSchema { object, name, .. } => {
            vec![Operation::new(
                Action::Rename,
                object_refs(*object, name, scope),
            )]
        }
        ActionKind::AlterTable {
            table,
            command,
            effect,
            ..
        } => {
            let action = match (*command, effect) {
                ("AT_DropColumn" | "AT_DropConstraint", _) => Action::Drop,
                (_, AlterTableEffect::DestroysData | AlterTableEffect::RewritesData) => {
                    Action::AlterDestructive
                }
                _ => Action::SchemaChange,
            };
            let alter = Access {
                alter: true,
                ..Access::default()
            };
            vec![Operation::new(action, resolve_one(table, alter, scope))]
        }
        ActionKind::SchemaChange { .. } => {
            let resources = facts
                .relations
                .iter()
                .filter(|r| r.access.create || r.access.alter)
                .flat_map(|r| {
                    resolve_one(
                        &r.relation,
                        Access {
                            create: r.access.create,
                            alter: r.access.alter,
                            ..Access::default()
                        },
                        scope,
                    )
                })
                .collect();
            vec![Operation::new(Action::SchemaChange, resources)]
        }
        ActionKind::Privileges { .. } => vec![Operation::new(Action::Grant, Vec::new())],
        ActionKind::Session { statement } if *statement == "VariableShowStmt" => {
            vec![Operation::new(Action::Utility, Vec::new())]
        }
        ActionKind::Session { .. } | ActionKind::Discard { .. } => {
            vec![Operation::new(Action::Set, Vec::new())]
        }
        // PREPARE TRANSACTION is also reported as a capability.
        ActionKind::Transaction { .. } => vec![Operation::new(Action::Transaction, Vec::new())],
        ActionKind::Lock { tables } => {
            let access = Access {
                lock: true,
                ..Access::default()
            };
            let resources = tables
                .iter()
                .flat_map(|t| resolve_one(t, access, scope))
                .collect();
            vec![Operation::new(Action::Lock, resources)]
        }
        ActionKind::Call { .. } | ActionKind::Do => vec![Operation::new(Action::Call, Vec::new())],
        ActionKind::Maintenance { .. } => {
            let resources = facts
                .relations
                .iter()
                .flat_map(|r| resolve_one(&r.relation, r.access, scope))
                .collect();
            vec![Operation::new(Action::Maintenance, resources)]
        }
        ActionKind::Prepare { .. }
        | ActionKind::Execute { .. }
        | ActionKind::Deallocate { .. }
        | ActionKind::Cursor { .. }
        | ActionKind::Notification { .. }
        | ActionKind::Administration { .. }
        | ActionKind::Other { .. } => vec![Operation::new(Action::Utility, Vec::new())],
        // On top of the statement's own class (its own action): which
        // database it reaches. Whether that is the target's own, the policy
        // engine decides from the target (`context.other_database`); a
        // statement without a name (never from the grammar) counts as
        // reaching another.
        ActionKind::Database { operation, name } => {
            let action = match operation {
                DatabaseOperation::Create => Action::CreateDatabase,
                DatabaseOperation::Alter => Action::AlterDatabase,
                DatabaseOperation::Drop => Action::DropDatabase,
            };
            let resources = if name.is_empty() {
                Vec::new()
            } else {
                vec![ResourceRef::database(name.clone())]
            };
            vec![Operation::new(action, resources)]
        }
    }
}

/// The policy's capability names for one the analysis found.
pub(crate) fn capabilities(cap: &analysis::CapabilityUse) -> Vec<Capability> {
    use analysis::Capability as A;
    match cap.capability {
        A::ServerFiles => vec![Capability::ServerFiles],
        A::ServerProgram => vec![Capability::ServerProgram],
        A::ForeignData if cap.detail.to_ascii_lowercase().contains("dblink") => {
            vec![Capability::Network, Capability::ForeignData]
        }
        A::ForeignData => vec![Capability::ForeignData],
        A::IdentityChange => vec![Capability::IdentityChange],
        // Going back to the login identity gives no new powers.
        A::IdentityReset => Vec::new(),
        A::PermanentSessionChange => vec![Capability::PersistentSetting],
        A::ServerAdministration => vec![Capability::ServerAdmin],
        A::SilencedSafeguards => vec![Capability::TriggerBypass],
    }
}

/// `schema.name` for the policy's `functions` set: as written when
/// qualified, else where the catalog (or the built-in table) finds it.
fn function_name(name: &QualifiedName, nargs: usize, scope: &Scope<'_>) -> String {
    if let Some(schema) = &name.schema {
        return format!("{schema}.{}", name.name);
    }
    if let Some(catalog) = scope.function_catalog() {
        if let Some(first) = catalog
            .candidates(None, &name.name, nargs, scope.search_path)
            .first()
        {
            return format!("{}.{}", first.schema, name.name);
        }
    }
    if analysis::functions::builtin_volatility(&name.name).is_some()
        && analysis::functions::pg_catalog_searched_first(scope.search_path)
    {
        return format!("pg_catalog.{}", name.name);
    }
    name.name.clone()
}

#[cfg(test)]
mod tests {
    use portcullis_policy::{
        Decision, PolicyEngine, Principal, PrincipalKind, Request, RequestContext, TargetRef,
    };

    use super::*;

    fn described(sql: &str) -> policy::StatementFacts {
        let analysis = analysis::analyze(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        let path = ["public".to_owned()];
        let scope = Scope {
            search_path: &path,
            session_user: Some("app"),
            catalog: None,
        };
        describe(&analysis.statements[0], &scope, 1)
    }

    fn decide(target: &TargetRef, sql: &str) -> Decision {
        PolicyEngine::default_bundle().unwrap().decide(&Request {
            principal: Principal {
                name: "dana".into(),
                kind: PrincipalKind::Human,
                groups: Vec::new(),
                on_behalf_of: None,
            },
            target: target.clone(),
            statement: described(sql),
            context: RequestContext::now(None),
        })
    }

    fn policy(d: &Decision) -> Option<&str> {
        match d {
            Decision::Deny(d) => Some(&d.policy),
            Decision::RequiresApproval(a) => Some(&a.policy),
            Decision::Allow => None,
        }
    }

    #[test]
    fn database_statements_are_their_class_and_a_database_action() {
        for (sql, class, action, database) in [
            (
                "DROP DATABASE shop",
                Action::Drop,
                Action::DropDatabase,
                "shop",
            ),
            (
                "ALTER DATABASE shop RENAME TO x",
                Action::Rename,
                Action::AlterDatabase,
                "shop",
            ),
            (
                "ALTER DATABASE \"Shop\" OWNER TO x",
                Action::Grant,
                Action::AlterDatabase,
                "Shop",
            ),
            (
                "ALTER DATABASE shop ALLOW_CONNECTIONS false",
                Action::SchemaChange,
                Action::AlterDatabase,
                "shop",
            ),
            (
                "CREATE DATABASE copy TEMPLATE shop",
                Action::SchemaChange,
                Action::CreateDatabase,
                "copy",
            ),
        ] {
            let facts = described(sql);
            let actions: Vec<Action> = facts.operations.iter().map(|o| o.action).collect();
            assert_eq!(actions, [class, action], "{sql}");
            assert_eq!(
                facts.operations[1].resources,
                [ResourceRef::database(database)],
                "{sql}"
            );
        }
        let force = described("DROP DATABASE shop WITH (FORCE)");
        assert!(force.dangerous.contains(&Capability::ServerAdmin));
    }

    #[test]
    fn a_staging_target_cannot_reach_production() {
        let staging = TargetRef::new("shop_staging", "staging");
        for sql in [
            "DROP DATABASE shop",
            "DROP DATABASE IF EXISTS shop",
            "ALTER DATABASE shop RENAME TO gone",
            "ALTER DATABASE shop OWNER TO intruder",
            "ALTER DATABASE shop WITH ALLOW_CONNECTIONS false",
            "ALTER DATABASE shop REFRESH COLLATION VERSION",
            "CREATE DATABASE stolen TEMPLATE shop",
            "REVOKE CONNECT ON DATABASE shop FROM PUBLIC",
            "GRANT ALL ON DATABASE shop_staging, shop TO intruder",
            "COMMENT ON DATABASE shop IS 'gone'",
        ] {
            assert_eq!(
                policy(&decide(&staging, sql)),
                Some("deny-other-database"),
                "{sql}"
            );
        }
        // FORCE is refused for ending other sessions, whichever database.
        for sql in [
            "DROP DATABASE shop WITH (FORCE)",
            "DROP DATABASE shop_staging WITH (FORCE)",
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity",
            "SELECT pg_cancel_backend(42)",
        ] {
            assert_eq!(
                policy(&decide(&staging, sql)),
                Some("deny-dangerous-capabilities"),
                "{sql}"
            );
        }
        // The target's own database: the ordinary rules (staging allows it;
        // the server refuses to drop the database a session is on).
        for sql in [
            "DROP DATABASE shop_staging",
            "ALTER DATABASE shop_staging CONNECTION LIMIT 20",
            "GRANT CONNECT ON DATABASE shop_staging TO app",
        ] {
            assert_eq!(policy(&decide(&staging, sql)), None, "{sql}");
        }
        // In production the ordinary rules are strict.
        let production = TargetRef::new("shop", "production");
        assert_eq!(
            policy(&decide(
                &production,
                "ALTER DATABASE shop CONNECTION LIMIT 20"
            )),
            Some("approve-schema-change-in-production")
        );
        assert_eq!(
            policy(&decide(&production, "DROP DATABASE shop_staging")),
            Some("deny-drop-in-production")
        );
    }
}
