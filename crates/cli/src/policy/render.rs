//! Readable text and JSON for what `policy explain` shows: the analysis
//! facts of a statement, the policy's view of it, decisions.
//!
//! The analysis types are `Serialize`; the policy types are not (they are
//! Portcullis' own request and decision values, not a file format), so
//! their JSON is written here.

use portcullis_analysis::{
    self as analysis, ColumnName, Execution, SettingScope, SettingTarget, SettingValue,
};
use portcullis_policy::{self as policy, Decision, Explanation};
use serde_json::{json, Value};

/// An analysis value as JSON (`serde` is not a dependency of this crate,
/// so the `Serialize` bound cannot be named in a function).
macro_rules! to_json {
    ($value:expr) => {
        serde_json::to_value($value).unwrap_or(Value::Null)
    };
}

/// What text shows for an empty list.
const NONE: &str = "none";

/// The analysis facts of one statement as labelled lines.
pub fn analysis_lines(stmt: &analysis::StatementFacts) -> Vec<(&'static str, String)> {
    vec![
        ("class", stmt.class.as_str().to_owned()),
        (
            "actions",
            list(
                stmt.actions
                    .iter()
                    .map(|a| format!("{}{}", tagged(&to_json!(&a.kind)), when(a.execution))),
            ),
        ),
        (
            "relations",
            list(stmt.relations.iter().map(|r| {
                let a = r.access;
                let uses: Vec<&str> = [
                    (a.read, "read"),
                    (a.write, "write"),
                    (a.alter, "alter"),
                    (a.create, "create"),
                    (a.lock, "lock"),
                ]
                .into_iter()
                .filter_map(|(set, name)| set.then_some(name))
                .collect();
                let only = if r.include_descendants { "" } else { ", ONLY" };
                format!("{} ({}{only})", r.relation, uses.join(", "))
            })),
        ),
        (
            "columns",
            list(stmt.columns.iter().map(|c| {
                let column = match &c.column {
                    ColumnName::Named(n) => n.as_str(),
                    ColumnName::All => "*",
                };
                let relation = c
                    .relation
                    .as_ref()
                    .map_or("(unattributed)".to_owned(), |r| r.to_string());
                let uses = match (c.read, c.written) {
                    (true, true) => "read, written",
                    (false, true) => "written",
                    _ => "read",
                };
                format!("{relation}.{column} ({uses})")
            })),
        ),
        (
            "functions",
            list(
                stmt.functions
                    .iter()
                    .map(|f| format!("{}/{}{}", f.name, f.args, when(f.execution))),
            ),
        ),
        (
            "operators",
            list(stmt.operators.iter().map(|o| o.to_string())),
        ),
        (
            "opaque code",
            list(stmt.opaque.iter().map(|o| {
                let kind = plain(&to_json!(&o.kind));
                match &o.name {
                    Some(name) => format!("{kind} {name}{}", when(o.execution)),
                    None => format!("{kind}{}", when(o.execution)),
                }
            })),
        ),
        (
            "capabilities",
            list(
                stmt.capabilities
                    .iter()
                    .map(|c| format!("{} ({}){}", c.capability, c.detail, when(c.execution))),
            ),
        ),
        (
            "settings",
            list(stmt.settings.iter().map(|s| {
                let target = match &s.target {
                    SettingTarget::Named(n) => n.clone(),
                    SettingTarget::All => "all settings".to_owned(),
                    SettingTarget::Unknown => "a setting named at run time".to_owned(),
                };
                let value = match &s.value {
                    SettingValue::Values(v) => v.join(", "),
                    SettingValue::Default => "DEFAULT".to_owned(),
                    SettingValue::Unknown => "a value known at run time".to_owned(),
                };
                let scope = match s.scope {
                    SettingScope::Session => "",
                    SettingScope::Transaction => " (local)",
                    SettingScope::Unknown => " (session or local)",
                };
                format!("{target} = {value}{scope}{}", when(s.execution))
            })),
        ),
    ]
}

/// Why a statement counts as opaque with this search_path and no catalog:
/// its own opaque code, calls not known to be read-only, operators that
/// may resolve outside pg_catalog.
pub fn opaque_reasons(stmt: &analysis::StatementFacts, search_path: &[String]) -> Vec<String> {
    let mut reasons = Vec::new();
    if !stmt.opaque.is_empty() {
        reasons.push("opaque code".to_owned());
    }
    let calls = stmt.opaque_calls(search_path, None);
    if !calls.is_empty() {
        reasons.push(format!(
            "calls not known to be read-only: {}",
            calls
                .iter()
                .map(|f| format!("{}/{}", f.name, f.args))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let operators = stmt.shadowable_operators(search_path);
    if !operators.is_empty() {
        reasons.push(format!(
            "operators the search_path may resolve outside pg_catalog: {}",
            operators
                .iter()
                .map(|o| o.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    reasons
}

/// The policy's view of one statement (from `portcullis_guard::describe`)
/// as labelled lines; `opaque_reasons` explains a true `opaque`.
pub fn policy_fact_lines(
    facts: &policy::StatementFacts,
    opaque_reasons: &[String],
) -> Vec<(&'static str, String)> {
    vec![
        (
            "operations",
            list(facts.operations.iter().map(|op| {
                let resources = op
                    .resources
                    .iter()
                    .map(|r| r.cedar_id())
                    .collect::<Vec<_>>()
                    .join(", ");
                let target = if op.resources.is_empty() {
                    "the target".to_owned()
                } else {
                    format!("[{resources}]")
                };
                format!(
                    "{} on {target}, has_effective_where {}",
                    op.action, op.has_effective_where
                )
            })),
        ),
        (
            "opaque",
            if facts.opaque && !opaque_reasons.is_empty() {
                format!("true ({})", opaque_reasons.join("; "))
            } else {
                facts.opaque.to_string()
            },
        ),
        (
            "dangerous",
            list(facts.dangerous.iter().map(|c| c.as_str().to_owned())),
        ),
        ("functions", list(facts.functions.iter().cloned())),
    ]
}

pub fn policy_facts_json(facts: &policy::StatementFacts) -> Value {
    json!({
        "operations": facts.operations.iter().map(|op| json!({
            "action": op.action.to_string(),
            "resources": op.resources.iter().map(|r| r.cedar_id()).collect::<Vec<_>>(),
            "has_effective_where": op.has_effective_where,
        })).collect::<Vec<_>>(),
        "opaque": facts.opaque,
        "dangerous": facts.dangerous.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
        "functions": facts.functions,
        "statement_count": facts.statement_count,
    })
}

pub fn decision_json(d: &Decision) -> Value {
    match d {
        Decision::Allow => json!({ "decision": "allow" }),
        Decision::Deny(x) => json!({
            "decision": "deny",
            "policy": x.policy,
            "message": x.message,
            "hint": x.hint,
            "cause": snake(&format!("{:?}", x.cause)),
            "action": x.action.to_string(),
            "object": x.object.as_ref().map(|o| o.cedar_id()),
        }),
        Decision::RequiresApproval(x) => json!({
            "decision": "approval",
            "policy": x.policy,
            "approvers": x.approvers,
            "message": x.message,
            "hint": x.hint,
            "action": x.action.to_string(),
            "object": x.object.as_ref().map(|o| o.cedar_id()),
        }),
    }
}

pub fn explanation_json(e: &Explanation) -> Value {
    json!({
        "decision": decision_json(&e.decision),
        "facts": e.facts.iter().map(|f| json!({ "name": f.name, "value": f.value })).collect::<Vec<_>>(),
        "evaluations": e.evaluations.iter().map(|ev| json!({
            "action": ev.action.to_string(),
            "resource": ev.resource,
            "has_effective_where": ev.has_effective_where,
            "cedar_allowed": ev.cedar_allowed,
            "deciding_policies": ev.deciding_policies,
            "errored_policies": ev.errored_policies,
            "decision": decision_json(&ev.decision),
        })).collect::<Vec<_>>(),
    })
}

/// `" [deferred]"` for parts that do not run as the statement runs.
fn when(execution: Execution) -> String {
    match execution {
        Execution::Now => String::new(),
        other => format!(" [{}]", plain(&to_json!(&other))),
    }
}

fn list(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.collect();
    if items.is_empty() {
        NONE.to_owned()
    } else {
        items.join("; ")
    }
}

/// An internally tagged enum (`{"action": "drop", "cascade": false, ...}`)
/// as `drop cascade=false ...`.
fn tagged(v: &Value) -> String {
    let Value::Object(map) = v else {
        return plain(v);
    };
    let tag = map.get("action").map(plain).unwrap_or_default();
    let rest: Vec<String> = map
        .iter()
        .filter(|(k, _)| *k != "action")
        .map(|(k, v)| format!("{k}={}", plain(v)))
        .collect();
    if rest.is_empty() {
        tag
    } else {
        format!("{tag} {}", rest.join(" "))
    }
}

/// A JSON value without JSON's punctuation where it is not needed: a
/// qualified name as `schema.name`, strings unquoted, `null` as `none`.
fn plain(v: &Value) -> String {
    match v {
        Value::Null => NONE.to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(plain).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => {
            if map.len() == 2 {
                if let (Some(schema), Some(Value::String(name))) =
                    (map.get("schema"), map.get("name"))
                {
                    return match schema {
                        Value::String(s) => format!("{s}.{name}"),
                        _ => name.clone(),
                    };
                }
            }
            format!(
                "{{{}}}",
                map.iter()
                    .map(|(k, v)| format!("{k}: {}", plain(v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    }
}

/// `NoPermit` → `no_permit`.
fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn analysis_facts_read_as_text() {
        let a = portcullis_analysis::analyze("DELETE FROM app.orders WHERE true").unwrap();
        let lines = analysis_lines(&a.statements[0]);
        let get = |label| {
            lines
                .iter()
                .find(|(l, _)| *l == label)
                .map(|(_, v)| v.as_str())
                .unwrap()
        };
        assert_eq!(get("class"), "delete");
        assert!(
            get("actions").starts_with("delete ") && get("actions").contains("table=app.orders"),
            "{}",
            get("actions")
        );
        assert!(
            get("actions").contains("filter=tautology"),
            "{}",
            get("actions")
        );
        assert_eq!(get("capabilities"), NONE);
    }

    #[test]
    fn debug_names_become_snake_case() {
        assert_eq!(snake("NoPermit"), "no_permit");
        assert_eq!(snake("Forbidden"), "forbidden");
    }
}
