//! Turning a [`Request`] into Cedar requests.
//!
//! A statement becomes one Cedar request per (operation, resource) pair:
//! `DELETE FROM a USING b` asks "may this principal Delete Table a?" and
//! "... Delete Table b?"; a statement that touches no object asks about the
//! Target. Why not one request with the tables in the context: Cedar's own
//! `resource in Portcullis::Table::"public.orders"` and the
//! Column-in-Table-in-Schema-in-Target hierarchy then work in policies, the
//! validator type-checks them, and the engine can say which object a denial
//! was about. Denials override (any deny denies the statement), which is
//! what a single request over a set of objects would mean anyway.
//!
//! All of a statement's requests share one entity store: the principal, its
//! groups, the target, the actions used and every object touched with its
//! ancestors.
//!
//! When no policy mentions `resource` at all (the default bundle), every
//! object would get the same answer, so each operation is asked about once,
//! against the target, and the objects are left out of the store. The
//! decision is the same; the cost is one Cedar evaluation per operation
//! instead of one per object. Likewise the principal's entities and the
//! context attributes are only built when some policy reads them
//! (`needs.rs`).

use std::collections::{BTreeSet, HashMap, HashSet};

use cedar_policy::{Context, Entities, Entity, EntityUid, RestrictedExpression};

use crate::action::Action;
use crate::needs::PolicyNeeds;
use crate::request::{
    Principal, PrincipalKind, Request, RequestContext, ResourceRef, StatementFacts, TargetRef,
};
use crate::schema::Vocabulary;

/// The Cedar side of one statement.
pub(crate) struct Translated {
    pub entities: Entities,
    pub principal: EntityUid,
    pub calls: Vec<Call>,
    /// The context attributes every call shares; see [`Translated::context`].
    shared_context: Vec<(String, RestrictedExpression)>,
    reads_has_effective_where: bool,
    reads_approved: bool,
}

/// One Cedar request to make.
pub(crate) struct Call {
    pub action: Action,
    pub resource: EntityUid,
    /// The object in SQL spelling, for explanations and logs; `None` when
    /// the operation touches no object.
    pub object: Option<ResourceRef>,
    pub has_effective_where: bool,
}

impl Translated {
    /// Builds only what [`PolicyNeeds`] says the policies can read.
    pub fn new(vocab: &Vocabulary, req: &Request, needs: &PolicyNeeds) -> Result<Self, String> {
        let per_object = needs.resource;
        let principal = principal_uid(vocab, &req.principal);
        let target = vocab.uid(&vocab.target, &req.target.name);

        let utility = [crate::request::Operation::new(Action::Utility, Vec::new())];
        let operations = if req.statement.operations.is_empty() {
            &utility[..]
        } else {
            &req.statement.operations[..]
        };

        // Each entity in the store costs about 1.5 µs of transitive-closure
        // work per statement, so only those a policy can look at are built.
        let mut entities = Vec::new();
        if needs.principal {
            push_principal(&mut entities, vocab, &req.principal, &principal)?;
        }
        if per_object {
            entities.push(target_entity(&req.target, &target)?);
        }
        let actions: BTreeSet<Action> = operations.iter().map(|op| op.action).collect();
        entities.extend(actions.iter().map(|a| vocab.action_entity(*a).clone()));

        if per_object {
            // Every object touched, with its ancestors, once.
            let mut objects = BTreeSet::new();
            for op in operations {
                for r in &op.resources {
                    let mut next = Some(r.clone());
                    while let Some(r) = next {
                        next = r.parent();
                        if !objects.insert(r) {
                            break;
                        }
                    }
                }
            }
            for object in &objects {
                // Statements are judged before masking knows what their
                // columns hold.
                entities.push(object_entity(vocab, object, "", &target)?);
            }
        }
        let entities = Entities::from_entities(entities, None).map_err(|e| e.to_string())?;

        let mut calls: Vec<Call> = Vec::new();
        for op in operations {
            let mut push = |resource: EntityUid, object: Option<&ResourceRef>| {
                // A self-join names a table twice; two CTEs may both read:
                // one answer per distinct question.
                let repeated = calls.iter().any(|c| {
                    c.action == op.action
                        && c.resource == resource
                        && c.has_effective_where == op.has_effective_where
                });
                if !repeated {
                    calls.push(Call {
                        action: op.action,
                        resource,
                        object: object.cloned(),
                        has_effective_where: op.has_effective_where,
                    });
                }
            };
            if per_object && !op.resources.is_empty() {
                for r in &op.resources {
                    push(object_uid(vocab, r), Some(r));
                }
            } else {
                // The object, if any, is named for logs only: the answer
                // holds for every object of the operation.
                push(target.clone(), op.resources.first());
            }
        }

        Ok(Translated {
            entities,
            principal,
            calls,
            shared_context: shared_context(&req.target, &req.statement, &req.context, needs),
            reads_has_effective_where: needs.reads("has_effective_where"),
            reads_approved: needs.reads("approved"),
        })
    }

    /// The context for one call. Only `has_effective_where` differs between
    /// a statement's calls, and `approved` when the engine asks "would this
    /// pass once approved?".
    pub fn context(&self, has_effective_where: bool, approved: bool) -> Result<Context, String> {
        let mut pairs = self.shared_context.clone();
        if self.reads_has_effective_where {
            pairs.push((
                "has_effective_where".into(),
                RestrictedExpression::new_bool(has_effective_where),
            ));
        }
        if self.reads_approved {
            pairs.push(("approved".into(), RestrictedExpression::new_bool(approved)));
        }
        Context::from_pairs(pairs).map_err(|e| e.to_string())
    }
}

/// The Cedar side of one unmask question: may the principal see this
/// column, classified `classification`, unmasked? One request, about the
/// column itself, in the context of no statement (see the schema): the
/// statement facts are those of an empty statement and `approved` is
/// false, since unmasking has no approval workflow. As for statements, the
/// principal's and the column's entities and the context attributes are
/// only built when some policy deciding unmasking reads them.
pub(crate) fn unmask_request(
    vocab: &Vocabulary,
    principal: &Principal,
    target: &TargetRef,
    context: &RequestContext,
    column: &ResourceRef,
    classification: &str,
    needs: &PolicyNeeds,
) -> Result<(cedar_policy::Request, Entities), String> {
    let principal_uid = principal_uid(vocab, principal);
    let target_uid = vocab.uid(&vocab.target, &target.name);
    let mut entities = vec![vocab.unmask_entity.clone()];
    if needs.principal {
        push_principal(&mut entities, vocab, principal, &principal_uid)?;
    }
    if needs.resource {
        entities.push(target_entity(target, &target_uid)?);
        let mut next = Some(column.clone());
        while let Some(object) = next {
            entities.push(object_entity(vocab, &object, classification, &target_uid)?);
            next = object.parent();
        }
    }
    let entities = Entities::from_entities(entities, None).map_err(|e| e.to_string())?;

    let no_statement = StatementFacts::default();
    let mut pairs = shared_context(target, &no_statement, context, needs);
    for flag in ["has_effective_where", "approved"] {
        if needs.reads(flag) {
            pairs.push((flag.to_owned(), RestrictedExpression::new_bool(false)));
        }
    }
    let context = Context::from_pairs(pairs).map_err(|e| e.to_string())?;
    let request = cedar_policy::Request::new(
        principal_uid,
        vocab.unmask.clone(),
        object_uid(vocab, column),
        context,
        // As for statements: built from the schema's names; the tests
        // prove it conforms.
        None,
    )
    .map_err(|e| e.to_string())?;
    Ok((request, entities))
}

/// The context attributes shared by a statement's calls, leaving out those
/// no policy reads: they cannot change a decision, and building them is not
/// free (an `ip(...)` value costs about 4 µs).
fn shared_context(
    target: &TargetRef,
    s: &StatementFacts,
    c: &RequestContext,
    needs: &PolicyNeeds,
) -> Vec<(String, RestrictedExpression)> {
    let mut pairs = Vec::new();
    let mut add = |name: &str, value: &dyn Fn() -> RestrictedExpression| {
        if needs.reads(name) {
            pairs.push((name.to_owned(), value()));
        }
    };
    add("environment", &|| string(&target.environment));
    add("target", &|| string(&target.name));
    add("opaque", &|| RestrictedExpression::new_bool(s.opaque));
    add("dangerous", &|| {
        RestrictedExpression::new_set(s.dangerous.iter().map(|d| string(d.as_str())))
    });
    add("functions", &|| {
        RestrictedExpression::new_set(s.functions.iter().map(|f| string(f)))
    });
    add("statement_count", &|| {
        RestrictedExpression::new_long(i64::from(s.statement_count))
    });
    add("time", &|| {
        RestrictedExpression::new_record([
            (
                "hour".to_owned(),
                RestrictedExpression::new_long(c.time.hour.into()),
            ),
            (
                "minute".to_owned(),
                RestrictedExpression::new_long(c.time.minute.into()),
            ),
            ("weekday".to_owned(), string(c.time.weekday.as_str())),
        ])
        .expect("the keys are distinct")
    });
    if let Some(ip) = c.source_address {
        // An IPv4 client on a dual-stack socket shows up as ::ffff:a.b.c.d;
        // policies write IPv4 ranges, so compare it as IPv4.
        add("source_address", &|| {
            RestrictedExpression::new_ip(ip.to_canonical().to_string())
        });
    }
    add("other_database", &|| {
        RestrictedExpression::new_bool(s.names_other_database(target))
    });
    if let Some(limit) = c.row_limit {
        add("row_limit", &|| {
            RestrictedExpression::new_long(i64::try_from(limit).unwrap_or(i64::MAX))
        });
    }
    pairs
}

/// `classification` is a column's (ignored for other objects).
fn object_entity(
    vocab: &Vocabulary,
    object: &ResourceRef,
    classification: &str,
    target: &EntityUid,
) -> Result<Entity, String> {
    let parents = match (object, object.parent()) {
        // Another database is not inside this target, and the target's
        // own is the target itself, not a part of it.
        (ResourceRef::Database { .. }, _) => HashSet::new(),
        (_, Some(p)) => HashSet::from([object_uid(vocab, &p)]),
        (_, None) => HashSet::from([target.clone()]),
    };
    let attrs = match object {
        ResourceRef::Database { name } => attrs([("name", string(name))]),
        ResourceRef::Schema { schema } => attrs([("name", string(schema))]),
        ResourceRef::Table { schema, table } => {
            attrs([("schema", string(schema)), ("name", string(table))])
        }
        ResourceRef::Column {
            schema,
            table,
            column,
        } => attrs([
            ("schema", string(schema)),
            ("table", string(table)),
            ("name", string(column)),
            ("classification", string(classification)),
        ]),
    };
    entity(object_uid(vocab, object), attrs, parents)
}

fn principal_uid(vocab: &Vocabulary, principal: &Principal) -> EntityUid {
    let ty = match principal.kind {
        PrincipalKind::Human => &vocab.user,
        PrincipalKind::Agent | PrincipalKind::Service => &vocab.agent,
    };
    vocab.uid(ty, &principal.name)
}

/// The principal's entity and its groups'.
fn push_principal(
    entities: &mut Vec<Entity>,
    vocab: &Vocabulary,
    principal: &Principal,
    uid: &EntityUid,
) -> Result<(), String> {
    let groups: BTreeSet<&str> = principal.groups.iter().map(String::as_str).collect();
    let group_uids: HashSet<EntityUid> =
        groups.iter().map(|g| vocab.uid(&vocab.group, g)).collect();
    entities.extend(
        group_uids
            .iter()
            .map(|g| Entity::new_no_attrs(g.clone(), HashSet::new())),
    );
    let mut principal_attrs = attrs([("name", string(&principal.name))]);
    if principal.kind != PrincipalKind::Human {
        principal_attrs.insert("kind".into(), string(principal.kind.as_str()));
        if let Some(person) = &principal.on_behalf_of {
            principal_attrs.insert("on_behalf_of".into(), string(person));
        }
    }
    entities.push(entity(uid.clone(), principal_attrs, group_uids)?);
    Ok(())
}

fn target_entity(target: &TargetRef, uid: &EntityUid) -> Result<Entity, String> {
    entity(
        uid.clone(),
        attrs([
            ("name", string(&target.name)),
            ("environment", string(&target.environment)),
        ]),
        HashSet::new(),
    )
}

pub(crate) fn object_uid(vocab: &Vocabulary, r: &ResourceRef) -> EntityUid {
    let ty = match r {
        ResourceRef::Database { .. } => &vocab.database,
        ResourceRef::Schema { .. } => &vocab.schema_type,
        ResourceRef::Table { .. } => &vocab.table,
        ResourceRef::Column { .. } => &vocab.column,
    };
    vocab.uid(ty, &r.cedar_id())
}

fn string(s: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(s.to_owned())
}

fn attrs<const N: usize>(
    pairs: [(&str, RestrictedExpression); N],
) -> HashMap<String, RestrictedExpression> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn entity(
    uid: EntityUid,
    attrs: HashMap<String, RestrictedExpression>,
    parents: HashSet<EntityUid>,
) -> Result<Entity, String> {
    Entity::new(uid, attrs, parents).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{Capability, Operation, Principal, RequestContext, TargetRef, TimeOfDay};

    /// Requests skip schema validation on the hot path; prove here that
    /// what they would be validated against holds, with every fact present.
    #[test]
    fn translated_entities_and_contexts_conform_to_the_schema() {
        let vocab = Vocabulary::load().unwrap();
        for kind in [
            PrincipalKind::Human,
            PrincipalKind::Agent,
            PrincipalKind::Service,
        ] {
            let req = Request {
                principal: Principal {
                    name: "alice".into(),
                    kind,
                    groups: vec!["dba".into(), "dba".into(), "devs".into()],
                    on_behalf_of: None,
                },
                target: TargetRef {
                    name: "shop".into(),
                    environment: "production".into(),
                    database: "shop_prod".into(),
                },
                statement: crate::request::StatementFacts {
                    operations: vec![
                        Operation::new(
                            Action::Select,
                            vec![
                                ResourceRef::column("public", "orders", "id"),
                                ResourceRef::table("public", "orders"),
                                ResourceRef::table("public", "orders"),
                            ],
                        ),
                        Operation::new(Action::Drop, vec![ResourceRef::schema("Old Stuff")])
                            .with_effective_where(true),
                        Operation::new(Action::Transaction, vec![]),
                        Operation::new(
                            Action::DropDatabase,
                            vec![ResourceRef::database("shop_prod")],
                        ),
                    ],
                    opaque: true,
                    dangerous: [Capability::Network, Capability::ServerFiles].into(),
                    functions: ["pg_catalog.now".to_owned()].into(),
                    statement_count: 2,
                },
                context: RequestContext {
                    time: TimeOfDay::from_unix_seconds(1_700_000_000),
                    source_address: Some("2001:db8::1".parse().unwrap()),
                    approved: false,
                    row_limit: Some(10),
                },
            };
            let t = Translated::new(&vocab, &req, &PolicyNeeds::everything()).unwrap();
            let stored: Vec<Entity> = t.entities.clone().into_iter().collect();
            // principal, 2 groups, target, 4 actions, schema public,
            // table, column, schema "Old Stuff", database.
            assert_eq!(stored.len(), 13);
            Entities::from_entities(stored, Some(&vocab.schema)).unwrap();
            // The duplicate table reference is asked about once.
            assert_eq!(t.calls.len(), 5);
            for call in &t.calls {
                let context = t.context(call.has_effective_where, true).unwrap();
                cedar_policy::Request::new(
                    t.principal.clone(),
                    vocab.action(call.action).clone(),
                    call.resource.clone(),
                    context,
                    Some(&vocab.schema),
                )
                .unwrap();
            }
        }
    }

    #[test]
    fn unmask_requests_conform_to_the_schema() {
        let vocab = Vocabulary::load().unwrap();
        let context = RequestContext {
            time: TimeOfDay::from_unix_seconds(1_700_000_000),
            source_address: Some("10.0.0.1".parse().unwrap()),
            approved: true,
            row_limit: Some(10),
        };
        for kind in [PrincipalKind::Human, PrincipalKind::Agent] {
            let principal = Principal {
                name: "alice".into(),
                kind,
                groups: vec!["dba".into()],
                on_behalf_of: None,
            };
            let (request, entities) = unmask_request(
                &vocab,
                &principal,
                &TargetRef::new("shop", "staging"),
                &context,
                &ResourceRef::column("Sales", "q1", "email"),
                "email",
                &PolicyNeeds::everything(),
            )
            .unwrap();
            // principal, group, unmask action, target, schema, table, column.
            let stored: Vec<Entity> = entities.into_iter().collect();
            assert_eq!(stored.len(), 7);
            Entities::from_entities(stored, Some(&vocab.schema)).unwrap();
            cedar_policy::Request::new(
                request.principal().unwrap().clone(),
                request.action().unwrap().clone(),
                request.resource().unwrap().clone(),
                request.context().unwrap().clone(),
                Some(&vocab.schema),
            )
            .unwrap();
        }
    }
}
