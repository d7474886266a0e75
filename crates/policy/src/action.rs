//! Statement classes: the Cedar actions.
//!
//! One action per class of statement, not per SQL keyword, so a policy about
//! "dropping things" is one line however many DROP forms PostgreSQL grows.
//! The statement analysis reports each operation a statement performs; the
//! proxy maps each to one of these. The mapping is documented on each
//! variant and in the crate README.
//!
//! Unmasking a classified column is a Cedar action too, but not a statement
//! class: it is asked about result columns, never about statements, so it
//! has no [`Action`] variant (statement tooling that lists or parses
//! actions never offers it) and is named by [`UNMASK_ACTION`] alone.

use std::fmt;
use std::str::FromStr;

/// The class of one operation a statement performs.
///
/// A statement may perform several (a data-modifying CTE, `COPY (query)`,
/// `CREATE TABLE AS`); each becomes an [`crate::Operation`] of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// SELECT, VALUES, TABLE, the query of DECLARE CURSOR, the reads of any
    /// other statement (the source of INSERT ... SELECT, of CREATE TABLE AS).
    Select,
    /// COPY ... TO STDOUT and COPY (query) TO STDOUT: bulk export.
    CopyOut,
    /// INSERT (including ON CONFLICT DO NOTHING), SELECT INTO's target.
    Insert,
    /// UPDATE, and INSERT ... ON CONFLICT DO UPDATE.
    Update,
    /// DELETE.
    Delete,
    /// MERGE.
    Merge,
    /// COPY ... FROM STDIN: bulk load.
    CopyIn,
    /// TRUNCATE (one resource per table, cascades included).
    Truncate,
    /// Every DROP form: DROP TABLE/VIEW/SCHEMA/TYPE/FUNCTION/... (CASCADE or
    /// not), DROP DATABASE (which is also a [`Action::DropDatabase`]), DROP
    /// OWNED, DROP ROLE, and ALTER TABLE ... DROP COLUMN / DROP CONSTRAINT.
    Drop,
    /// Every rename: ALTER ... RENAME TO, RENAME COLUMN, RENAME CONSTRAINT,
    /// ALTER TYPE ... RENAME VALUE, ALTER ... SET SCHEMA.
    Rename,
    /// ALTER sub-commands that destroy or rewrite data without dropping an
    /// object: ALTER COLUMN TYPE (with or without USING), DETACH PARTITION.
    AlterDestructive,
    /// Other DDL: CREATE anything, non-destructive ALTER, COMMENT,
    /// CREATE INDEX, SECURITY LABEL.
    SchemaChange,
    /// Privileges and roles: GRANT, REVOKE, ALTER DEFAULT PRIVILEGES,
    /// CREATE/ALTER ROLE, REASSIGN OWNED.
    Grant,
    /// CALL and DO.
    Call,
    /// LOCK TABLE. (SELECT ... FOR UPDATE/SHARE is a Select.)
    Lock,
    /// VACUUM, ANALYZE, CLUSTER, REINDEX, REFRESH MATERIALIZED VIEW,
    /// CHECKPOINT.
    Maintenance,
    /// SET, RESET, SET LOCAL, DISCARD.
    Set,
    /// BEGIN/START TRANSACTION, COMMIT, ROLLBACK, SAVEPOINT, RELEASE,
    /// SET TRANSACTION, PREPARE TRANSACTION, COMMIT/ROLLBACK PREPARED.
    Transaction,
    /// Everything else that neither reads nor writes data by itself: SHOW,
    /// EXPLAIN without ANALYZE, PREPARE/EXECUTE/DEALLOCATE (their bodies are
    /// judged as statements of their own), FETCH/MOVE/CLOSE, LISTEN/NOTIFY.
    Utility,
    /// CREATE DATABASE, on the database created. Also a
    /// [`Action::SchemaChange`], as before database actions existed, so
    /// policies written about classes keep covering it.
    CreateDatabase,
    /// Every ALTER DATABASE form: options (CONNECTION LIMIT,
    /// ALLOW_CONNECTIONS, IS_TEMPLATE, TABLESPACE), RENAME TO, OWNER TO,
    /// SET / RESET, REFRESH COLLATION VERSION; and GRANT / REVOKE, COMMENT
    /// and SECURITY LABEL ON DATABASE. On each database altered. Also the
    /// class it had before ([`Action::Rename`], [`Action::Grant`] for OWNER
    /// TO and GRANT / REVOKE, [`Action::SchemaChange`]).
    AlterDatabase,
    /// DROP DATABASE, on the database dropped. Also a [`Action::Drop`].
    DropDatabase,
}

/// The Cedar id of the unmask action, `Portcullis::Action::"Unmask"`:
/// may a principal see a classified column unmasked? See
/// [`crate::PolicyEngine::may_unmask`].
pub const UNMASK_ACTION: &str = "Unmask";

impl Action {
    /// Every statement action, in the order of the schema.
    pub const ALL: [Action; 22] = [
        Action::Select,
        Action::CopyOut,
        Action::Insert,
        Action::Update,
        Action::Delete,
        Action::Merge,
        Action::CopyIn,
        Action::Truncate,
        Action::Drop,
        Action::Rename,
        Action::AlterDestructive,
        Action::SchemaChange,
        Action::Grant,
        Action::Call,
        Action::Lock,
        Action::Maintenance,
        Action::Set,
        Action::Transaction,
        Action::Utility,
        Action::CreateDatabase,
        Action::AlterDatabase,
        Action::DropDatabase,
    ];

    /// The action's id in Cedar: `Portcullis::Action::"<name>"`.
    pub const fn cedar_name(self) -> &'static str {
        match self {
            Action::Select => "Select",
            Action::CopyOut => "CopyOut",
            Action::Insert => "Insert",
            Action::Update => "Update",
            Action::Delete => "Delete",
            Action::Merge => "Merge",
            Action::CopyIn => "CopyIn",
            Action::Truncate => "Truncate",
            Action::Drop => "Drop",
            Action::Rename => "Rename",
            Action::AlterDestructive => "AlterDestructive",
            Action::SchemaChange => "SchemaChange",
            Action::Grant => "Grant",
            Action::Call => "Call",
            Action::Lock => "Lock",
            Action::Maintenance => "Maintenance",
            Action::Set => "Set",
            Action::Transaction => "Transaction",
            Action::Utility => "Utility",
            Action::CreateDatabase => "CreateDatabase",
            Action::AlterDatabase => "AlterDatabase",
            Action::DropDatabase => "DropDatabase",
        }
    }

    /// Whether the action is on a whole database (its resource is a
    /// [`crate::ResourceRef::Database`]).
    pub const fn is_database(self) -> bool {
        matches!(
            self,
            Action::CreateDatabase | Action::AlterDatabase | Action::DropDatabase
        )
    }

    /// Position in [`Action::ALL`], for per-action tables.
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.cedar_name())
    }
}

/// The name was not one of the actions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown action {name:?}; expected one of {}", action_names())]
pub struct UnknownAction {
    pub name: String,
}

fn action_names() -> String {
    Action::ALL.map(Action::cedar_name).join(", ")
}

impl FromStr for Action {
    type Err = UnknownAction;

    /// Accepts the Cedar name in any case, with or without `_`/`-`
    /// separators: `AlterDestructive`, `alter_destructive`, `alter-destructive`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted: String = s
            .chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect();
        Action::ALL
            .into_iter()
            .find(|a| a.cedar_name().eq_ignore_ascii_case(&wanted))
            .ok_or_else(|| UnknownAction { name: s.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_matches_position_in_all() {
        for (i, a) in Action::ALL.into_iter().enumerate() {
            assert_eq!(a.index(), i);
        }
    }

    #[test]
    fn names_round_trip_in_every_spelling() {
        for a in Action::ALL {
            assert_eq!(a.cedar_name().parse::<Action>(), Ok(a));
            assert_eq!(a.cedar_name().to_lowercase().parse::<Action>(), Ok(a));
        }
        assert_eq!("alter_destructive".parse(), Ok(Action::AlterDestructive));
        assert_eq!("copy-in".parse(), Ok(Action::CopyIn));
        assert_eq!("drop_database".parse(), Ok(Action::DropDatabase));
        assert!("explode".parse::<Action>().is_err());
    }
}
