//! Statements about whole databases: which database they name, and whether
//! they end other sessions.
//!
//! CREATE, ALTER and DROP DATABASE are how a session on one database
//! reaches another on the same server: through a staging target,
//! `DROP DATABASE shop WITH (FORCE)` ends production's sessions and drops
//! it when both share an upstream role. The walk reports each of these
//! statements by its class (a Drop, a Rename, a SchemaChange, ALTER ...
//! OWNER TO as Privileges) without the database it names, which is what a
//! policy needs to tell the session's own database from another. This pass
//! adds it, after the walk, as an [`ActionKind::Database`] action of its
//! own, and reports `WITH (FORCE)` as the server administration it is.
//!
//! GRANT / REVOKE, COMMENT and SECURITY LABEL ON DATABASE change a database
//! too (`REVOKE CONNECT ON DATABASE shop FROM PUBLIC` locks production's
//! clients out), so they count as altering each database they name.
//!
//! Only a statement's top node is looked at, because that is the only place
//! these statements can be: none of them can be nested inside another SQL
//! statement, and CREATE and DROP DATABASE refuse to run inside a
//! transaction block or a function. ALTER DATABASE inside a DO block or a
//! function body is SQL of its own, which the proxy's scan of such code
//! analyses statement by statement, so this pass sees it too.

use pg_query::protobuf::{self as pb, ObjectType};
use pg_query::NodeEnum;

use crate::facts::{
    Action, ActionKind, Capability, CapabilityUse, DatabaseOperation, Execution, StatementFacts,
};

/// Adds the database action (and the FORCE capability) of a database
/// statement whose top node is `stmt`; other statements are left as they
/// are.
pub(crate) fn add_database_facts(stmt: &NodeEnum, facts: &mut StatementFacts) {
    for (operation, name) in database_statement(stmt) {
        facts.actions.push(Action {
            kind: ActionKind::Database {
                operation,
                name: name.to_owned(),
            },
            execution: Execution::Now,
        });
    }
    if let NodeEnum::DropdbStmt(s) = stmt {
        if s.options.iter().any(is_force) {
            // FORCE terminates every other session on the database before
            // dropping it: pg_terminate_backend for a whole database.
            facts.capabilities.push(CapabilityUse {
                capability: Capability::ServerAdministration,
                detail: "DROP DATABASE ... WITH (FORCE)".to_owned(),
                execution: Execution::Now,
            });
        }
    }
}

/// What a top node does to which databases; empty for other statements.
fn database_statement(stmt: &NodeEnum) -> Vec<(DatabaseOperation, &str)> {
    use DatabaseOperation::{Alter, Create, Drop};
    let database = ObjectType::ObjectDatabase as i32;
    match stmt {
        NodeEnum::CreatedbStmt(s) => vec![(Create, s.dbname.as_str())],
        NodeEnum::DropdbStmt(s) => vec![(Drop, s.dbname.as_str())],
        NodeEnum::AlterDatabaseStmt(s) => vec![(Alter, s.dbname.as_str())],
        NodeEnum::AlterDatabaseSetStmt(s) => vec![(Alter, s.dbname.as_str())],
        NodeEnum::AlterDatabaseRefreshCollStmt(s) => vec![(Alter, s.dbname.as_str())],
        // ALTER DATABASE name RENAME TO: the name is in `subname`.
        NodeEnum::RenameStmt(s) if s.rename_type == database => vec![(Alter, s.subname.as_str())],
        // The others name the database in a String node.
        NodeEnum::AlterOwnerStmt(s) if s.object_type == database => {
            vec![(Alter, string_node(s.object.as_deref()))]
        }
        NodeEnum::CommentStmt(s) if s.objtype == database => {
            vec![(Alter, string_node(s.object.as_deref()))]
        }
        NodeEnum::SecLabelStmt(s) if s.objtype == database => {
            vec![(Alter, string_node(s.object.as_deref()))]
        }
        NodeEnum::GrantStmt(s) if s.objtype == database => s
            .objects
            .iter()
            .map(|o| (Alter, string_node(Some(o))))
            .collect(),
        _ => Vec::new(),
    }
}

/// The text of a String node. Anything else is not what the grammar
/// produces for a database name: name nothing rather than guess (the
/// policy then treats the statement as reaching another database).
fn string_node(node: Option<&pb::Node>) -> &str {
    match node.and_then(|n| n.node.as_ref()) {
        Some(NodeEnum::String(s)) => &s.sval,
        _ => "",
    }
}

/// `FORCE` in DROP DATABASE's option list. PostgreSQL accepts no other
/// option there, and FORCE takes no value.
fn is_force(option: &pb::Node) -> bool {
    matches!(&option.node, Some(NodeEnum::DefElem(d)) if d.defname.eq_ignore_ascii_case("force"))
}

#[cfg(test)]
mod tests {
    use crate::facts::{ActionKind, Capability, DatabaseOperation, Execution};

    /// The database actions of `sql`, and whether FORCE was found.
    fn databases(sql: &str) -> (Vec<(DatabaseOperation, String)>, bool) {
        let analysis = crate::analyze(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        let stmt = &analysis.statements[0];
        let actions = stmt
            .actions
            .iter()
            .filter_map(|a| match &a.kind {
                ActionKind::Database { operation, name } => {
                    assert_eq!(a.execution, Execution::Now);
                    Some((*operation, name.clone()))
                }
                _ => None,
            })
            .collect();
        let force = stmt.capabilities.iter().any(|c| {
            c.capability == Capability::ServerAdministration && c.detail.contains("FORCE")
        });
        (actions, force)
    }

    /// The one database action of `sql`, if any, and whether FORCE was found.
    fn database(sql: &str) -> (Option<(DatabaseOperation, String)>, bool) {
        let (mut actions, force) = databases(sql);
        assert!(actions.len() <= 1, "{sql}: {actions:?}");
        (actions.pop(), force)
    }

    #[test]
    fn every_database_statement_names_its_database() {
        use DatabaseOperation::*;
        for (sql, operation, name) in [
            ("CREATE DATABASE scratch", Create, "scratch"),
            (
                "CREATE DATABASE \"Copy\" TEMPLATE shop OWNER app",
                Create,
                "Copy",
            ),
            ("DROP DATABASE shop", Drop, "shop"),
            ("DROP DATABASE IF EXISTS Shop", Drop, "shop"),
            ("ALTER DATABASE shop RENAME TO shop_old", Alter, "shop"),
            ("ALTER DATABASE shop OWNER TO intruder", Alter, "shop"),
            ("ALTER DATABASE shop CONNECTION LIMIT 0", Alter, "shop"),
            (
                "ALTER DATABASE shop WITH ALLOW_CONNECTIONS false",
                Alter,
                "shop",
            ),
            (
                "ALTER DATABASE shop SET TABLESPACE elsewhere",
                Alter,
                "shop",
            ),
            ("ALTER DATABASE shop SET work_mem = '1MB'", Alter, "shop"),
            ("ALTER DATABASE shop RESET ALL", Alter, "shop"),
            (
                "ALTER DATABASE shop REFRESH COLLATION VERSION",
                Alter,
                "shop",
            ),
            (
                "/* x */ alter database \"shop\" is_template true",
                Alter,
                "shop",
            ),
            ("REVOKE CONNECT ON DATABASE shop FROM PUBLIC", Alter, "shop"),
            ("COMMENT ON DATABASE shop IS 'gone'", Alter, "shop"),
            ("SECURITY LABEL ON DATABASE shop IS 'x'", Alter, "shop"),
        ] {
            assert_eq!(
                database(sql),
                (Some((operation, name.to_owned())), false),
                "{sql}"
            );
        }
    }

    #[test]
    fn a_grant_names_every_database() {
        use DatabaseOperation::Alter;
        assert_eq!(
            databases("GRANT CREATE, CONNECT ON DATABASE shop, \"Shop_Staging\" TO app").0,
            [
                (Alter, "shop".to_owned()),
                (Alter, "Shop_Staging".to_owned())
            ]
        );
        assert_eq!(databases("GRANT SELECT ON shop TO app").0, []);
        assert_eq!(databases("GRANT USAGE ON SCHEMA shop TO app").0, []);
    }

    #[test]
    fn the_statement_keeps_its_own_class_too() {
        let analysis = crate::analyze("DROP DATABASE shop").unwrap();
        let classes: Vec<_> = analysis.statements[0]
            .actions
            .iter()
            .map(|a| a.kind.class())
            .collect();
        assert_eq!(
            classes,
            [crate::StatementClass::Drop, crate::StatementClass::Drop]
        );
    }

    #[test]
    fn force_ends_other_sessions() {
        for sql in [
            "DROP DATABASE shop WITH (FORCE)",
            "DROP DATABASE IF EXISTS shop (force)",
            "drop database shop with ( Force )",
        ] {
            let (action, force) = database(sql);
            assert!(action.is_some(), "{sql}");
            assert!(force, "{sql}");
        }
    }

    #[test]
    fn other_statements_are_left_alone() {
        for sql in [
            "SELECT 1",
            "ALTER TABLE shop RENAME TO t",
            "ALTER SCHEMA shop OWNER TO x",
            "ALTER ROLE shop RENAME TO x",
            "DROP SCHEMA shop",
            "COMMENT ON TABLE shop IS 'x'",
            "COMMENT ON SCHEMA shop IS 'x'",
            "REVOKE ALL ON ALL TABLES IN SCHEMA shop FROM PUBLIC",
            "SELECT 'DROP DATABASE shop WITH (FORCE)'",
        ] {
            assert_eq!(database(sql), (None, false), "{sql}");
        }
    }
}
