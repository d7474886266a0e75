//! The table lock a schema change takes, for people deciding whether to let
//! it run now: what it blocks on the table it changes, while it runs (and,
//! inside a transaction, until it ends).
//!
//! Learned from PostgreSQL itself (`pg_locks` after the statement, inside a
//! transaction; the e2e test `approvals::lock_notes_match_postgresql`
//! checks every entry here against the server), not from the manual. Only
//! statements whose lock is known are described; for an ALTER TABLE
//! sub-command not listed, the strongest lock is named as an upper bound.

use crate::facts::{ActionKind, StatementFacts};

/// PostgreSQL's table lock modes, weakest to strongest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LockMode {
    AccessShare,
    RowShare,
    RowExclusive,
    ShareUpdateExclusive,
    Share,
    ShareRowExclusive,
    Exclusive,
    AccessExclusive,
}

impl LockMode {
    /// Every mode, weakest first.
    pub const ALL: [LockMode; 8] = [
        LockMode::AccessShare,
        LockMode::RowShare,
        LockMode::RowExclusive,
        LockMode::ShareUpdateExclusive,
        LockMode::Share,
        LockMode::ShareRowExclusive,
        LockMode::Exclusive,
        LockMode::AccessExclusive,
    ];

    /// The name `pg_locks.mode` shows.
    pub fn pg_name(self) -> &'static str {
        match self {
            LockMode::AccessShare => "AccessShareLock",
            LockMode::RowShare => "RowShareLock",
            LockMode::RowExclusive => "RowExclusiveLock",
            LockMode::ShareUpdateExclusive => "ShareUpdateExclusiveLock",
            LockMode::Share => "ShareLock",
            LockMode::ShareRowExclusive => "ShareRowExclusiveLock",
            LockMode::Exclusive => "ExclusiveLock",
            LockMode::AccessExclusive => "AccessExclusiveLock",
        }
    }

    /// What it means for everyone else using the table.
    pub fn blocks(self) -> &'static str {
        match self {
            LockMode::AccessShare | LockMode::RowShare | LockMode::RowExclusive => {
                "reads and writes go on"
            }
            LockMode::ShareUpdateExclusive => {
                "reads and writes go on; other schema changes and VACUUM wait"
            }
            LockMode::Share | LockMode::ShareRowExclusive | LockMode::Exclusive => {
                "reads go on; writes wait"
            }
            LockMode::AccessExclusive => "every read and write of the table waits",
        }
    }

    fn sql_name(self) -> &'static str {
        match self {
            LockMode::AccessShare => "ACCESS SHARE",
            LockMode::RowShare => "ROW SHARE",
            LockMode::RowExclusive => "ROW EXCLUSIVE",
            LockMode::ShareUpdateExclusive => "SHARE UPDATE EXCLUSIVE",
            LockMode::Share => "SHARE",
            LockMode::ShareRowExclusive => "SHARE ROW EXCLUSIVE",
            LockMode::Exclusive => "EXCLUSIVE",
            LockMode::AccessExclusive => "ACCESS EXCLUSIVE",
        }
    }
}

/// The lock an action takes on the table it changes, as far as known:
/// the mode, and what may make it weaker (`except`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    pub mode: LockMode,
    /// A form of the statement that takes a weaker lock, and which.
    pub except: Option<(&'static str, LockMode)>,
    /// The mode is an upper bound: the sub-command is not one whose lock
    /// was learned.
    pub at_most: bool,
}

impl Taken {
    fn exactly(mode: LockMode) -> Taken {
        Taken {
            mode,
            except: None,
            at_most: false,
        }
    }

    /// One line for a person: the lock and what it blocks.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{}takes the {} lock on the table ({})",
            if self.at_most { "at most " } else { "" },
            self.mode.sql_name(),
            self.mode.blocks()
        );
        if let Some((form, weaker)) = self.except {
            s.push_str(&format!(
                "; {form}: {} ({})",
                weaker.sql_name(),
                weaker.blocks()
            ));
        }
        s
    }
}

/// The lock `kind` takes on the table it changes, when known.
pub fn taken(kind: &ActionKind) -> Option<Taken> {
    use LockMode::*;
    match kind {
        ActionKind::AlterTable { command, .. } => Some(match *command {
            "AT_SetStatistics"
            | "AT_SetRelOptions"
            | "AT_ResetRelOptions"
            | "AT_ClusterOn"
            | "AT_DropCluster"
            | "AT_ValidateConstraint"
            | "AT_SetOptions"
            | "AT_ResetOptions" => Taken::exactly(ShareUpdateExclusive),
            "AT_EnableTrig"
            | "AT_DisableTrig"
            | "AT_EnableAlwaysTrig"
            | "AT_EnableReplicaTrig"
            | "AT_EnableTrigAll"
            | "AT_DisableTrigAll"
            | "AT_EnableTrigUser"
            | "AT_DisableTrigUser" => Taken::exactly(ShareRowExclusive),
            "AT_AddConstraint" => Taken {
                mode: AccessExclusive,
                except: Some(("a foreign key", ShareRowExclusive)),
                at_most: false,
            },
            "AT_AddColumn"
            | "AT_ColumnDefault"
            | "AT_SetNotNull"
            | "AT_DropNotNull"
            | "AT_EnableRowSecurity"
            | "AT_DisableRowSecurity"
            | "AT_ForceRowSecurity"
            | "AT_NoForceRowSecurity"
            | "AT_ChangeOwner"
            | "AT_AlterColumnType"
            | "AT_DropColumn"
            | "AT_DropConstraint" => Taken::exactly(AccessExclusive),
            _ => Taken {
                mode: AccessExclusive,
                except: None,
                at_most: true,
            },
        }),
        ActionKind::SchemaChange { statement } => match *statement {
            "IndexStmt" => Some(Taken {
                mode: Share,
                except: Some(("with CONCURRENTLY", ShareUpdateExclusive)),
                at_most: false,
            }),
            "CreateTrigStmt" => Some(Taken::exactly(ShareRowExclusive)),
            "CreatePolicyStmt" | "AlterPolicyStmt" => Some(Taken::exactly(AccessExclusive)),
            _ => None,
        },
        _ => None,
    }
}

/// One line per lock the statement's actions take, strongest first.
pub fn describe(stmt: &StatementFacts) -> Vec<String> {
    let mut found: Vec<Taken> = stmt.actions.iter().filter_map(|a| taken(&a.kind)).collect();
    found.sort_by_key(|t| std::cmp::Reverse(t.mode));
    found.dedup();
    found.iter().map(Taken::describe).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(sql: &str) -> Option<Taken> {
        let a = crate::analyze(sql).expect("parses");
        a.statements[0].actions.iter().find_map(|a| taken(&a.kind))
    }

    #[test]
    fn known_statements_are_described() {
        assert_eq!(
            first("CREATE INDEX i ON t (a)").unwrap().mode,
            LockMode::Share
        );
        assert_eq!(
            first("ALTER TABLE t ALTER COLUMN a SET STATISTICS 100")
                .unwrap()
                .mode,
            LockMode::ShareUpdateExclusive
        );
        let unknown = first("ALTER TABLE t INHERIT u").unwrap();
        assert!(unknown.at_most && unknown.mode == LockMode::AccessExclusive);
        assert!(unknown
            .describe()
            .starts_with("at most takes the ACCESS EXCLUSIVE lock"));
        assert_eq!(first("SELECT 1"), None);
        assert_eq!(first("CREATE TABLE x (a int)"), None);
    }
}
