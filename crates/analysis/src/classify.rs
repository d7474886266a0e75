//! Classification by parse-node type: which [`StatementClass`] a statement
//! node belongs to, which [`ObjectKind`] an object type is, what an ALTER
//! TABLE sub-command does to the data.
//!
//! Everything here looks at node types and enum values the parser produced,
//! never at keywords in the text, so comments, case, quoting and spacing
//! cannot change the answer.

use pg_query::protobuf::{AlterTableType, ObjectType, TransactionStmtKind};
use pg_query::NodeRef;

use crate::facts::{AlterTableEffect, ObjectKind, StatementClass, TransactionKind};

/// The class of a statement node that the walk handles generically (the
/// statements with dedicated handlers classify themselves through their
/// action). `None` for nodes that are not statements.
pub(crate) fn generic_statement_class(node: NodeRef<'_>) -> Option<StatementClass> {
    use StatementClass as C;
    let class = match node {
        NodeRef::GrantStmt(_)
        | NodeRef::GrantRoleStmt(_)
        | NodeRef::AlterDefaultPrivilegesStmt(_)
        | NodeRef::CreateRoleStmt(_)
        | NodeRef::AlterRoleStmt(_)
        | NodeRef::AlterOwnerStmt(_)
        | NodeRef::ReassignOwnedStmt(_) => C::Privileges,
        NodeRef::VacuumStmt(_) | NodeRef::ClusterStmt(_) | NodeRef::ReindexStmt(_) => {
            C::Maintenance
        }
        NodeRef::ListenStmt(_) | NodeRef::NotifyStmt(_) | NodeRef::UnlistenStmt(_) => {
            C::Notification
        }
        NodeRef::AlterDomainStmt(_)
        | NodeRef::CommentStmt(_)
        | NodeRef::DefineStmt(_)
        | NodeRef::CreateDomainStmt(_)
        | NodeRef::CreatedbStmt(_)
        | NodeRef::AlterDatabaseStmt(_)
        | NodeRef::AlterDatabaseRefreshCollStmt(_)
        | NodeRef::CreateSeqStmt(_)
        | NodeRef::AlterSeqStmt(_)
        | NodeRef::CreateSchemaStmt(_)
        | NodeRef::CreateConversionStmt(_)
        | NodeRef::CreateCastStmt(_)
        | NodeRef::CreateOpClassStmt(_)
        | NodeRef::CreateOpFamilyStmt(_)
        | NodeRef::AlterOpFamilyStmt(_)
        | NodeRef::AlterObjectDependsStmt(_)
        | NodeRef::AlterOperatorStmt(_)
        | NodeRef::AlterTypeStmt(_)
        | NodeRef::CompositeTypeStmt(_)
        | NodeRef::CreateEnumStmt(_)
        | NodeRef::CreateRangeStmt(_)
        | NodeRef::AlterTsdictionaryStmt(_)
        | NodeRef::AlterTsconfigurationStmt(_)
        | NodeRef::AlterTableSpaceOptionsStmt(_)
        | NodeRef::AlterTableMoveAllStmt(_)
        | NodeRef::SecLabelStmt(_)
        | NodeRef::AlterExtensionContentsStmt(_)
        | NodeRef::ReplicaIdentityStmt(_)
        | NodeRef::CreateTransformStmt(_)
        | NodeRef::CreateAmStmt(_)
        | NodeRef::CreatePublicationStmt(_)
        | NodeRef::AlterPublicationStmt(_)
        | NodeRef::CreateStatsStmt(_)
        | NodeRef::AlterStatsStmt(_)
        | NodeRef::AlterCollationStmt(_) => C::SchemaChange,
        // Only inside PL/pgSQL and SQL-standard function bodies.
        NodeRef::ReturnStmt(_) | NodeRef::PlassignStmt(_) => C::Other,
        _ => return None,
    };
    Some(class)
}

/// PostgreSQL's `ObjectType` as an [`ObjectKind`].
pub(crate) fn object_kind(object_type: i32) -> ObjectKind {
    use ObjectKind as K;
    match ObjectType::try_from(object_type) {
        Ok(t) => match t {
            ObjectType::ObjectAccessMethod => K::AccessMethod,
            ObjectType::ObjectAggregate => K::Aggregate,
            ObjectType::ObjectAmop => K::AccessMethodOperator,
            ObjectType::ObjectAmproc => K::AccessMethodProcedure,
            ObjectType::ObjectAttribute => K::Attribute,
            ObjectType::ObjectCast => K::Cast,
            ObjectType::ObjectColumn => K::Column,
            ObjectType::ObjectCollation => K::Collation,
            ObjectType::ObjectConversion => K::Conversion,
            ObjectType::ObjectDatabase => K::Database,
            ObjectType::ObjectDefault => K::Default,
            ObjectType::ObjectDefacl => K::DefaultAcl,
            ObjectType::ObjectDomain => K::Domain,
            ObjectType::ObjectDomconstraint => K::DomainConstraint,
            ObjectType::ObjectEventTrigger => K::EventTrigger,
            ObjectType::ObjectExtension => K::Extension,
            ObjectType::ObjectFdw => K::ForeignDataWrapper,
            ObjectType::ObjectForeignServer => K::ForeignServer,
            ObjectType::ObjectForeignTable => K::ForeignTable,
            ObjectType::ObjectFunction => K::Function,
            ObjectType::ObjectIndex => K::Index,
            ObjectType::ObjectLanguage => K::Language,
            ObjectType::ObjectLargeobject => K::LargeObject,
            ObjectType::ObjectMatview => K::MaterializedView,
            ObjectType::ObjectOpclass => K::OperatorClass,
            ObjectType::ObjectOperator => K::Operator,
            ObjectType::ObjectOpfamily => K::OperatorFamily,
            ObjectType::ObjectParameterAcl => K::ParameterAcl,
            ObjectType::ObjectPolicy => K::Policy,
            ObjectType::ObjectProcedure => K::Procedure,
            ObjectType::ObjectPublication => K::Publication,
            ObjectType::ObjectPublicationNamespace => K::PublicationNamespace,
            ObjectType::ObjectPublicationRel => K::PublicationRelation,
            ObjectType::ObjectRole => K::Role,
            ObjectType::ObjectRoutine => K::Routine,
            ObjectType::ObjectRule => K::Rule,
            ObjectType::ObjectSchema => K::Schema,
            ObjectType::ObjectSequence => K::Sequence,
            ObjectType::ObjectSubscription => K::Subscription,
            ObjectType::ObjectStatisticExt => K::StatisticsObject,
            ObjectType::ObjectTabconstraint => K::TableConstraint,
            ObjectType::ObjectTable => K::Table,
            ObjectType::ObjectTablespace => K::Tablespace,
            ObjectType::ObjectTransform => K::Transform,
            ObjectType::ObjectTrigger => K::Trigger,
            ObjectType::ObjectTsconfiguration => K::TextSearchConfiguration,
            ObjectType::ObjectTsdictionary => K::TextSearchDictionary,
            ObjectType::ObjectTsparser => K::TextSearchParser,
            ObjectType::ObjectTstemplate => K::TextSearchTemplate,
            ObjectType::ObjectType => K::Type,
            ObjectType::ObjectUserMapping => K::UserMapping,
            ObjectType::ObjectView => K::View,
            ObjectType::Undefined => K::Unknown,
        },
        Err(_) => K::Unknown,
    }
}

/// PostgreSQL's name for an ALTER TABLE sub-command, and what it does to the
/// data (the decision table is on [`AlterTableEffect`]).
pub(crate) fn alter_table_command(subtype: i32) -> (&'static str, AlterTableEffect) {
    use AlterTableEffect as E;
    use AlterTableType as T;
    let Ok(command) = T::try_from(subtype) else {
        // A sub-command this crate does not know: assume the worst.
        return ("unknown", E::DestroysData);
    };
    let effect = match command {
        T::AtDropColumn
        | T::AtDetachPartition
        | T::AtDetachPartitionFinalize
        | T::AtDropInherit => E::DestroysData,
        T::AtAlterColumnType | T::AtSetExpression | T::AtSetUnLogged => E::RewritesData,
        T::AtDropConstraint | T::AtDropNotNull => E::WeakensIntegrity,
        T::AtDisableTrig
        | T::AtDisableTrigAll
        | T::AtDisableTrigUser
        | T::AtEnableReplicaTrig
        | T::AtDisableRule
        | T::AtEnableReplicaRule
        | T::AtDisableRowSecurity
        | T::AtNoForceRowSecurity => E::SilencesSafeguards,
        T::Undefined => E::DestroysData,
        _ => E::SchemaOnly,
    };
    (command.as_str_name(), effect)
}

/// A TransactionStmt's kind.
pub(crate) fn transaction_kind(kind: i32) -> TransactionKind {
    use TransactionKind as K;
    use TransactionStmtKind as T;
    match T::try_from(kind) {
        Ok(T::TransStmtBegin | T::TransStmtStart) => K::Begin,
        Ok(T::TransStmtCommit) => K::Commit,
        Ok(T::TransStmtSavepoint) => K::Savepoint,
        Ok(T::TransStmtRelease) => K::Release,
        Ok(T::TransStmtRollbackTo) => K::RollbackTo,
        Ok(T::TransStmtPrepare) => K::Prepare,
        Ok(T::TransStmtCommitPrepared) => K::CommitPrepared,
        Ok(T::TransStmtRollbackPrepared) => K::RollbackPrepared,
        // ROLLBACK is the safe reading of anything unknown.
        Ok(T::TransStmtRollback | T::Undefined) | Err(_) => K::Rollback,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alter_table_effects() {
        assert_eq!(
            alter_table_command(AlterTableType::AtDropColumn as i32),
            ("AT_DropColumn", AlterTableEffect::DestroysData)
        );
        assert_eq!(
            alter_table_command(AlterTableType::AtAlterColumnType as i32).1,
            AlterTableEffect::RewritesData
        );
        assert_eq!(
            alter_table_command(AlterTableType::AtAddColumn as i32).1,
            AlterTableEffect::SchemaOnly
        );
        assert_eq!(alter_table_command(9999).1, AlterTableEffect::DestroysData);
    }

    #[test]
    fn unknown_object_types_are_unknown() {
        assert_eq!(
            object_kind(ObjectType::ObjectTable as i32),
            ObjectKind::Table
        );
        assert_eq!(object_kind(-1), ObjectKind::Unknown);
    }
}
