//! What the engine answers, and how much of it a client may read.
//!
//! A decision names at most one policy (by its `@id`) and carries that
//! policy's human `@message` and `@hint`: nothing else about the policies
//! (their conditions, other policies, the objects a view expanded to)
//! reaches a client. The object a denial was about is kept for logs only,
//! because the analysis expands views and partitions, and naming a base
//! table the client did not write would leak the view's definition.

use std::fmt;

use crate::action::Action;
use crate::request::ResourceRef;

/// The policy id a denial names when no policy permitted the statement.
/// Reserved: a policy file may not use it.
pub const NO_PERMIT_ID: &str = "default-deny";

/// The policy id a denial names when the request itself could not be
/// turned into a Cedar request (a bug, answered by failing closed).
/// Reserved like [`NO_PERMIT_ID`].
pub const INVALID_REQUEST_ID: &str = "invalid-request";

/// A decision and the policies that made it: for a refusal the deciding
/// policy, for an allowed statement every permit that matched. For the
/// audit trail and logs; nothing here reaches a client.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Decided {
    pub decision: Decision,
    /// Policy ids, in load order.
    pub policies: std::sync::Arc<[String]>,
}

/// The answer for one statement.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Decision {
    Allow,
    Deny(Denial),
    /// Refused until approved. Until the approval workflow exists the proxy
    /// treats this as a denial that says approval would be needed.
    RequiresApproval(Approval),
}

impl Decision {
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow)
    }

    /// How far from allowed: allow, held for approval, no permit, denied.
    pub fn severity(&self) -> u8 {
        match self {
            Decision::Allow => 0,
            Decision::RequiresApproval(_) => 1,
            Decision::Deny(Denial {
                cause: DenyCause::NoPermit,
                ..
            }) => 2,
            Decision::Deny(_) => 3,
        }
    }

    /// Whether `other` must take this decision's place when both apply to
    /// one statement (its parts, or the search_paths it may run under):
    /// it is more severe, or both hold it for approval by different
    /// groups, which [`Decision::together`] turns into a denial.
    pub fn yields_to(&self, other: &Decision) -> bool {
        match (self, other) {
            (Decision::RequiresApproval(a), Decision::RequiresApproval(b)) => {
                a.approvers != b.approvers
            }
            _ => other.severity() > self.severity(),
        }
    }

    /// The decision for a statement both `self` and `other` apply to. Two
    /// holds by different groups deny: one yes/no approval would lift
    /// both groups' rules, so one group's approval would stand in for the
    /// other's.
    pub fn together(self, other: Decision) -> Decision {
        match (self, other) {
            (Decision::RequiresApproval(a), Decision::RequiresApproval(b))
                if a.approvers != b.approvers =>
            {
                several_groups(&a, &[a.approvers.as_str(), b.approvers.as_str()])
            }
            (a, b) if b.severity() > a.severity() => b,
            (a, _) => a,
        }
    }

    /// The deciding policy's id, if the statement was not allowed.
    pub fn policy(&self) -> Option<&str> {
        match self {
            Decision::Allow => None,
            Decision::Deny(d) => Some(&d.policy),
            Decision::RequiresApproval(a) => Some(&a.policy),
        }
    }

    /// Whether the proxy must refuse the statement under `mode`. In observe
    /// mode nothing is refused: the decision is only logged.
    pub fn blocks(&self, mode: Enforcement) -> bool {
        mode == Enforcement::Enforce && !self.is_allow()
    }

    /// The message for the client's ErrorResponse (SQLSTATE 42501), naming
    /// the rule; `None` when allowed.
    pub fn client_message(&self) -> Option<String> {
        match self {
            Decision::Allow => None,
            Decision::Deny(d) => Some(format!(
                "statement denied by policy \"{}\": {}",
                d.policy, d.message
            )),
            Decision::RequiresApproval(a) => Some(format!(
                "statement requires approval by group \"{}\" (policy \"{}\"): {}",
                a.approvers, a.policy, a.message
            )),
        }
    }

    /// The hint for the client's ErrorResponse.
    pub fn client_hint(&self) -> Option<&str> {
        match self {
            Decision::Allow => None,
            Decision::Deny(d) => d.hint.as_deref(),
            Decision::RequiresApproval(a) => a.hint.as_deref(),
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Allow => f.write_str("allow"),
            Decision::Deny(d) => write!(f, "deny {}", d.policy),
            Decision::RequiresApproval(a) => write!(f, "approval {}", a.policy),
        }
    }
}

/// Why a statement is refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Denial {
    /// The deciding policy's `@id`, or [`NO_PERMIT_ID`] /
    /// [`INVALID_REQUEST_ID`].
    pub policy: String,
    /// The policy's `@message`, safe to show the client.
    pub message: String,
    /// The policy's `@hint`.
    pub hint: Option<String>,
    pub cause: DenyCause,
    /// The operation that was refused. For logs.
    pub action: Action,
    /// The object it was refused on; `None` for the target. For logs only,
    /// see the module comment.
    pub object: Option<ResourceRef>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyCause {
    /// A forbid policy applied.
    Forbidden,
    /// No permit policy applied (Cedar's default deny).
    NoPermit,
    /// A forbid policy failed while being evaluated (an overflow, a missing
    /// optional attribute it did not test with `has`). Cedar would skip it,
    /// which could let the statement through, so Portcullis fails closed.
    EvaluationError,
    /// The request could not be built; see [`INVALID_REQUEST_ID`].
    InvalidRequest,
}

/// Held for approval.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Approval {
    /// The approval policy's `@id`.
    pub policy: String,
    /// The group whose members may approve (`@approvers`).
    pub approvers: String,
    pub message: String,
    pub hint: Option<String>,
    pub action: Action,
    pub object: Option<ResourceRef>,
}

/// The denial of a statement that rules of several approver groups hold.
pub fn several_groups(first: &Approval, groups: &[&str]) -> Decision {
    let mut names: Vec<&str> = groups.to_vec();
    names.sort_unstable();
    names.dedup();
    let list = names
        .iter()
        .map(|g| format!("\"{g}\""))
        .collect::<Vec<_>>()
        .join(", ");
    Decision::Deny(Denial {
        policy: first.policy.clone(),
        message: format!(
            "{}; it needs approval by several groups ({list}), and Portcullis holds a statement for one group's approval only",
            first.message
        ),
        hint: Some("split it into statements that each need one group's approval".into()),
        cause: DenyCause::Forbidden,
        action: first.action,
        object: first.object.clone(),
    })
}

/// Whether a target's decisions are enforced or only observed (logged), so
/// a team can roll a policy out and watch what it would refuse first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Enforcement {
    #[default]
    Enforce,
    Observe,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denial() -> Decision {
        Decision::Deny(Denial {
            policy: "deny-drop-in-production".into(),
            message: "DROP statements are not allowed in production".into(),
            hint: Some("use a migration".into()),
            cause: DenyCause::Forbidden,
            action: Action::Drop,
            object: Some(ResourceRef::table("secret", "base_table")),
        })
    }

    #[test]
    fn observe_mode_never_blocks() {
        assert!(denial().blocks(Enforcement::Enforce));
        assert!(!denial().blocks(Enforcement::Observe));
        assert!(!Decision::Allow.blocks(Enforcement::Enforce));
    }

    #[test]
    fn client_text_names_the_rule_and_nothing_else() {
        let d = denial();
        let msg = d.client_message().unwrap();
        assert_eq!(
            msg,
            "statement denied by policy \"deny-drop-in-production\": DROP statements are not allowed in production"
        );
        assert!(!msg.contains("base_table"));
        assert_eq!(d.client_hint(), Some("use a migration"));
        assert_eq!(Decision::Allow.client_message(), None);
    }
}
