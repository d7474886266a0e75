//! Which facts the loaded policies can read.
//!
//! Strict validation guarantees a policy reads nothing outside the schema;
//! this goes one step further and finds which parts of the schema the
//! loaded policies read at all. A fact no policy reads cannot change a
//! decision, so it is neither built for Cedar (entities and context values
//! cost microseconds each on every statement) nor part of the decision
//! cache's key (so, with the default bundle, the time of day does not split
//! the cache).
//!
//! The answers come from Cedar's JSON form of each policy and err towards
//! "read": anything not recognised counts as a use.

use std::collections::BTreeSet;

use cedar_policy::{Policy, PolicySet};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PolicyNeeds {
    /// Some policy mentions `resource` (in its scope or conditions): each
    /// object touched needs its own Cedar request.
    pub resource: bool,
    /// Some policy mentions `principal`: the principal and its groups are
    /// built as entities.
    pub principal: bool,
    /// Some policy uses `context` other than through `context.<attr>` or
    /// `context has <attr>`: every attribute is built.
    pub whole_context: bool,
    /// The context attributes read.
    pub context: BTreeSet<String>,
}

impl PolicyNeeds {
    pub fn of(policies: &PolicySet) -> Self {
        let mut needs = PolicyNeeds {
            resource: false,
            principal: false,
            whole_context: false,
            context: BTreeSet::new(),
        };
        for p in policies.policies() {
            needs.add(p);
        }
        needs
    }

    /// Everything, for tests that must not depend on the analysis.
    #[cfg(test)]
    pub fn everything() -> Self {
        PolicyNeeds {
            resource: true,
            principal: true,
            whole_context: true,
            context: BTreeSet::new(),
        }
    }

    pub fn reads(&self, context_attr: &str) -> bool {
        self.whole_context || self.context.contains(context_attr)
    }

    fn add(&mut self, policy: &Policy) {
        let Some(json) = policy.to_json().ok() else {
            *self = PolicyNeeds {
                resource: true,
                principal: true,
                whole_context: true,
                context: std::mem::take(&mut self.context),
            };
            return;
        };
        let conditions = serde_json::to_string(&json["conditions"]).unwrap_or_default();
        self.resource |=
            json["resource"]["op"] != "All" || conditions.contains(r#"{"Var":"resource"}"#);
        self.principal |=
            json["principal"]["op"] != "All" || conditions.contains(r#"{"Var":"principal"}"#);

        // `context.a` and `context has a` are both
        // {"left":{"Var":"context"},"attr":"a"} under "." or "has".
        const ANY: &str = r#"{"Var":"context"}"#;
        const ATTR: &str = r#"{"left":{"Var":"context"},"attr":""#;
        let mut attr_uses = 0;
        for (at, _) in conditions.match_indices(ATTR) {
            attr_uses += 1;
            let rest = &conditions[at + ATTR.len()..];
            match rest.find('"') {
                Some(end) => {
                    self.context.insert(rest[..end].to_owned());
                }
                None => self.whole_context = true,
            }
        }
        if conditions.matches(ANY).count() != attr_uses {
            self.whole_context = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn needs(src: &str) -> PolicyNeeds {
        PolicyNeeds::of(&PolicySet::from_str(src).unwrap())
    }

    #[test]
    fn scope_and_conditions_count_as_mentions() {
        let n = needs("permit(principal, action, resource);");
        assert!(!n.resource && !n.principal && !n.whole_context && n.context.is_empty());
        assert!(
            needs(r#"permit(principal, action, resource in Portcullis::Table::"a.b");"#).resource
        );
        assert!(needs("permit(principal, action, resource) when { resource has name };").resource);
        assert!(
            needs(r#"permit(principal in Portcullis::Group::"g", action, resource);"#).principal
        );
        assert!(
            needs(r#"permit(principal, action, resource) when { principal.name == "x" };"#)
                .principal
        );
    }

    #[test]
    fn context_attributes_are_found_and_odd_uses_mean_everything() {
        let n = needs(
            "forbid(principal, action, resource) when { context.time.hour < 6 } \
             unless { context has source_address && context.approved };",
        );
        assert!(!n.whole_context);
        assert_eq!(
            n.context.iter().map(String::as_str).collect::<Vec<_>>(),
            ["approved", "source_address", "time"]
        );
        assert!(!n.reads("opaque"));
        // `context` used whole: nothing may be left out.
        let n = needs(r#"permit(principal, action, resource) when { context == {"a": 1} };"#);
        assert!(n.whole_context && n.reads("opaque"));
        // Index syntax is attribute access too.
        assert!(
            needs(r#"permit(principal, action, resource) when { context["opaque"] };"#)
                .reads("opaque")
        );
    }
}
