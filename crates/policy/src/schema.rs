//! The Cedar schema and the names Portcullis builds requests from.
//!
//! The schema text lives in `policies/portcullis.cedarschema` so operators
//! can read it beside the default bundle and feed it to the Cedar CLI. This
//! module parses it once and keeps the Cedar names (entity types, action
//! ids) ready, so building a request does no string parsing.

use std::str::FromStr;

use std::collections::HashSet;

use cedar_policy::{Entity, EntityId, EntityTypeName, EntityUid, Schema};

use crate::action::{Action, UNMASK_ACTION};
use crate::error::LoadError;

/// The schema policies are validated against.
pub const SCHEMA_TEXT: &str = include_str!("../policies/portcullis.cedarschema");

/// The schema, parsed, with the names requests are built from.
pub(crate) struct Vocabulary {
    pub schema: Schema,
    pub user: EntityTypeName,
    pub agent: EntityTypeName,
    pub group: EntityTypeName,
    pub target: EntityTypeName,
    pub schema_type: EntityTypeName,
    pub table: EntityTypeName,
    pub column: EntityTypeName,
    pub database: EntityTypeName,
    /// Indexed by [`Action::index`].
    pub actions: Vec<EntityUid>,
    /// Each action's entity with all its groups as parents (`Drop in
    /// [Destructive, Ddl]`), indexed like `actions`. A request's entity
    /// store holds only the actions the statement uses: `action in ...`
    /// needs the requested action's ancestors and nothing else, and every
    /// entity in the store costs transitive-closure time on every statement
    /// (all 24 action entities cost about 45 µs).
    pub action_entities: Vec<Entity>,
    /// Each action's groups, transitively; indexed like `actions`.
    pub action_ancestors: Vec<HashSet<EntityUid>>,
    /// [`UNMASK_ACTION`], and its entity (in no group).
    pub unmask: EntityUid,
    pub unmask_entity: Entity,
}

impl Vocabulary {
    pub fn load() -> Result<Self, LoadError> {
        let bad = |e: &dyn std::fmt::Display| LoadError::Schema(e.to_string());
        let (schema, _warnings) = Schema::from_cedarschema_str(SCHEMA_TEXT).map_err(|e| bad(&e))?;
        let ty = |name: &str| {
            EntityTypeName::from_str(&format!("Portcullis::{name}")).map_err(|e| bad(&e))
        };
        let action_type = ty("Action")?;
        let action_uid =
            |name: &str| EntityUid::from_type_name_and_id(action_type.clone(), EntityId::new(name));
        let actions = Action::ALL
            .iter()
            .map(|a| action_uid(a.cedar_name()))
            .collect::<Vec<_>>();
        let unmask = action_uid(UNMASK_ACTION);
        // Every action Portcullis can send must exist in the schema, or
        // every request for it would be rejected.
        let declared: Vec<&EntityUid> = schema.actions().collect();
        if let Some(missing) = actions
            .iter()
            .chain([&unmask])
            .find(|a| !declared.contains(a))
        {
            return Err(LoadError::Schema(format!(
                "action {missing} is not declared"
            )));
        }
        let all_actions = schema.action_entities().map_err(|e| bad(&e))?;
        let action_ancestors: Vec<HashSet<EntityUid>> = actions
            .iter()
            .map(|uid| {
                all_actions
                    .ancestors(uid)
                    .map(|a| a.cloned().collect())
                    .unwrap_or_default()
            })
            .collect();
        let action_entities = actions
            .iter()
            .zip(&action_ancestors)
            .map(|(uid, ancestors)| Entity::new_no_attrs(uid.clone(), ancestors.clone()))
            .collect();
        Ok(Vocabulary {
            user: ty("User")?,
            agent: ty("Agent")?,
            group: ty("Group")?,
            target: ty("Target")?,
            schema_type: ty("Schema")?,
            table: ty("Table")?,
            column: ty("Column")?,
            database: ty("Database")?,
            actions,
            action_entities,
            action_ancestors,
            unmask_entity: Entity::new_no_attrs(unmask.clone(), HashSet::new()),
            unmask,
            schema,
        })
    }

    pub fn action(&self, action: Action) -> &EntityUid {
        &self.actions[action.index()]
    }

    pub fn action_entity(&self, action: Action) -> &Entity {
        &self.action_entities[action.index()]
    }

    pub fn uid(&self, ty: &EntityTypeName, id: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_loads_and_declares_every_action() {
        let v = Vocabulary::load().unwrap();
        assert_eq!(v.actions.len(), Action::ALL.len());
        // Groups are declared too, so `action in Portcullis::Action::"Ddl"`
        // validates.
        let groups: Vec<String> = v.schema.action_groups().map(|g| g.to_string()).collect();
        for g in ["Read", "Write", "Destructive", "Ddl", "Session"] {
            assert!(
                groups.iter().any(|x| x.ends_with(&format!("\"{g}\""))),
                "{g} missing from {groups:?}"
            );
        }
        // Unmask is in no group, so `action in <group>` never reaches it.
        let actions = v.schema.action_entities().unwrap();
        assert_eq!(actions.ancestors(&v.unmask).unwrap().count(), 0);
    }
}
