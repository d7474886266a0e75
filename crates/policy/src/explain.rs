//! Why a statement got its decision, for `portcullis policy explain`.
//!
//! An explanation is for the operator at a terminal, not for a database
//! client: it lists every Cedar request made, the policies that decided
//! each, and the facts they were given.

use std::fmt;

use cedar_policy::{AuthorizationError, Response};

use crate::action::Action;
use crate::decision::Decision;
use crate::request::Request;
use crate::translate::Call;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The same decision [`crate::PolicyEngine::decide`] returns.
    pub decision: Decision,
    /// The facts as policies see them: `principal`, `context.opaque`, ...
    pub facts: Vec<Fact>,
    /// One per Cedar request, in the order made.
    pub evaluations: Vec<Evaluation>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fact {
    pub name: String,
    /// In Cedar syntax.
    pub value: String,
}

/// One Cedar request and its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    pub action: Action,
    /// The resource entity, e.g. `Portcullis::Table::"public.orders"`.
    pub resource: String,
    pub has_effective_where: bool,
    /// Cedar's own answer before approval handling: true for allow.
    pub cedar_allowed: bool,
    /// The policies that decided it (permits when allowed, forbids when
    /// denied), in load order.
    pub deciding_policies: Vec<String>,
    /// Policies whose evaluation failed.
    pub errored_policies: Vec<String>,
    /// This request's contribution to the statement's decision.
    pub decision: Decision,
}

impl Evaluation {
    pub(crate) fn new(
        call: &Call,
        response: &Response,
        decision: &Decision,
        deciding: &[String],
    ) -> Self {
        let mut errored: Vec<String> = response
            .diagnostics()
            .errors()
            .map(|e| {
                let AuthorizationError::PolicyEvaluationError(e) = e;
                e.policy_id().to_string()
            })
            .collect();
        errored.sort();
        Evaluation {
            action: call.action,
            resource: call.resource.to_string(),
            has_effective_where: call.has_effective_where,
            cedar_allowed: response.decision() == cedar_policy::Decision::Allow,
            deciding_policies: deciding.to_vec(),
            errored_policies: errored,
            decision: decision.clone(),
        }
    }
}

impl Explanation {
    pub(crate) fn new(req: &Request, decision: Decision, evaluations: Vec<Evaluation>) -> Self {
        Explanation {
            decision,
            facts: facts(req),
            evaluations,
        }
    }
}

fn facts(req: &Request) -> Vec<Fact> {
    let quote = |s: &str| format!("{s:?}");
    let set = |items: Vec<String>| format!("[{}]", items.join(", "));
    let p = &req.principal;
    let principal_type = match p.kind {
        crate::PrincipalKind::Human => "User",
        _ => "Agent",
    };
    let mut facts = vec![
        (
            "principal",
            format!("Portcullis::{principal_type}::{}", quote(&p.name)),
        ),
        ("principal kind", quote(p.kind.as_str())),
        (
            "principal groups",
            set(p
                .groups
                .iter()
                .map(|g| format!("Portcullis::Group::{}", quote(g)))
                .collect()),
        ),
        (
            "target",
            format!("Portcullis::Target::{}", quote(&req.target.name)),
        ),
        ("target database", quote(&req.target.database)),
        ("context.environment", quote(&req.target.environment)),
        ("context.opaque", req.statement.opaque.to_string()),
        (
            "context.dangerous",
            set(req
                .statement
                .dangerous
                .iter()
                .map(|d| quote(d.as_str()))
                .collect()),
        ),
        (
            "context.functions",
            set(req.statement.functions.iter().map(|f| quote(f)).collect()),
        ),
        (
            "context.statement_count",
            req.statement.statement_count.to_string(),
        ),
        (
            "context.time",
            format!(
                "{{ hour: {}, minute: {}, weekday: {} }}",
                req.context.time.hour,
                req.context.time.minute,
                quote(req.context.time.weekday.as_str())
            ),
        ),
        (
            "context.source_address",
            req.context.source_address.map_or("(absent)".into(), |ip| {
                format!("ip({:?})", ip.to_canonical().to_string())
            }),
        ),
        ("context.approved", req.context.approved.to_string()),
        (
            "context.other_database",
            req.statement.names_other_database(&req.target).to_string(),
        ),
        (
            "context.row_limit",
            req.context
                .row_limit
                .map_or("(absent)".into(), |l| l.to_string()),
        ),
    ];
    for (i, op) in req.statement.operations.iter().enumerate() {
        facts.push((
            "operation",
            format!(
                "#{} {} on [{}], has_effective_where {}",
                i + 1,
                op.action,
                op.resources
                    .iter()
                    .map(|r| r.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                op.has_effective_where
            ),
        ));
    }
    facts
        .into_iter()
        .map(|(name, value)| Fact {
            name: name.to_owned(),
            value,
        })
        .collect()
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "decision: {}", self.decision)?;
        if let Some(message) = self.decision.client_message() {
            writeln!(f, "  message: {message}")?;
        }
        if let Some(hint) = self.decision.client_hint() {
            writeln!(f, "  hint: {hint}")?;
        }
        writeln!(f, "facts:")?;
        for fact in &self.facts {
            writeln!(f, "  {}: {}", fact.name, fact.value)?;
        }
        writeln!(f, "requests:")?;
        for e in &self.evaluations {
            write!(
                f,
                "  {} on {} (has_effective_where {}): cedar {}",
                e.action,
                e.resource,
                e.has_effective_where,
                if e.cedar_allowed { "allow" } else { "deny" }
            )?;
            if !e.deciding_policies.is_empty() {
                write!(f, " by {}", e.deciding_policies.join(", "))?;
            }
            if !e.errored_policies.is_empty() {
                write!(f, "; failed to evaluate: {}", e.errored_policies.join(", "))?;
            }
            writeln!(f, " => {}", e.decision)?;
        }
        Ok(())
    }
}
