//! Policy unit tests: the file format behind `portcullis policy test FILE`.
//!
//! A test file is TOML: optional `[defaults]`, then `[[case]]`s, each a
//! statement (its facts, or its SQL when an analyzer is supplied) and the
//! decision expected. Keys under `context` are the Cedar context attribute
//! names, so a case reads like the policy it tests:
//!
//! ```toml
//! [defaults]
//! principal = { name = "alice", kind = "human", groups = ["developers"] }
//! target = { name = "shop", environment = "production" }
//!
//! [[case]]
//! name = "DELETE without WHERE is refused in production"
//! action = "delete"
//! resources = ["public.orders"]
//! context = { has_effective_where = false }
//! expect = "deny deny-unfiltered-write-in-production"
//!
//! [[case]]
//! name = "the same DELETE is fine in staging"
//! environment = "staging"
//! action = "delete"
//! resources = ["public.orders"]
//! expect = "allow"
//! ```
//!
//! `expect` is `allow`, `deny`, `deny <policy id>`, `approval` or
//! `approval <policy id>` (the id of no-permit denials is `default-deny`).
//! The README describes every key.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use serde::Deserialize;

use crate::action::Action;
use crate::decision::Decision;
use crate::engine::PolicyEngine;
use crate::request::{
    Capability, Operation, Principal, PrincipalKind, Request, RequestContext, ResourceRef,
    StatementFacts, TargetRef, TimeOfDay, Weekday,
};

/// Turns SQL into statement facts; the CLI supplies one backed by the
/// statement analysis so cases can be written as SQL.
pub trait StatementAnalyzer {
    /// One [`StatementFacts`] per statement in `sql`, as `target` would run
    /// it.
    fn analyze(&self, sql: &str, target: &TargetRef) -> Result<Vec<StatementFacts>, String>;
}

/// The file itself is unusable (not TOML, unknown keys).
#[derive(Debug, thiserror::Error)]
pub enum TestFileError {
    #[error("policy test file: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("policy test file has no [[case]]")]
    NoCases,
}

/// Runs every case; cases written as SQL fail unless an analyzer is given.
pub fn run_policy_tests(engine: &PolicyEngine, text: &str) -> Result<TestReport, TestFileError> {
    run_policy_tests_with(engine, text, None)
}

pub fn run_policy_tests_with(
    engine: &PolicyEngine,
    text: &str,
    analyzer: Option<&dyn StatementAnalyzer>,
) -> Result<TestReport, TestFileError> {
    let file: TestFile = toml::from_str(text)?;
    if file.case.is_empty() {
        return Err(TestFileError::NoCases);
    }
    let cases = file
        .case
        .iter()
        .enumerate()
        .map(|(i, case)| {
            let name = case
                .name
                .clone()
                .unwrap_or_else(|| format!("case {}", i + 1));
            let outcome = match run_case(engine, &file.defaults, case, analyzer) {
                Ok((expected, decision)) => {
                    if expected.matches(&decision) {
                        CaseOutcome::Passed { decision }
                    } else {
                        CaseOutcome::Failed { expected, decision }
                    }
                }
                Err(message) => CaseOutcome::Error { message },
            };
            CaseResult { name, outcome }
        })
        .collect();
    Ok(TestReport { cases })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestReport {
    pub cases: Vec<CaseResult>,
}

impl TestReport {
    pub fn passed(&self) -> usize {
        self.cases
            .iter()
            .filter(|c| matches!(c.outcome, CaseOutcome::Passed { .. }))
            .count()
    }

    /// Failed and erroneous cases.
    pub fn failed(&self) -> usize {
        self.cases.len() - self.passed()
    }

    pub fn all_passed(&self) -> bool {
        self.failed() == 0
    }
}

impl fmt::Display for TestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for case in &self.cases {
            match &case.outcome {
                CaseOutcome::Passed { decision } => {
                    writeln!(f, "ok     {} ({decision})", case.name)?
                }
                CaseOutcome::Failed { expected, decision } => writeln!(
                    f,
                    "FAILED {}: expected {expected}, got {decision}",
                    case.name
                )?,
                CaseOutcome::Error { message } => writeln!(f, "ERROR  {}: {message}", case.name)?,
            }
        }
        // The plain summary line CI and people both read.
        write!(f, "{} passed, {} failed", self.passed(), self.failed())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    pub name: String,
    pub outcome: CaseOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaseOutcome {
    Passed {
        decision: Decision,
    },
    Failed {
        expected: Expectation,
        decision: Decision,
    },
    /// The case could not be run (a bad action name, SQL without an
    /// analyzer, ...).
    Error {
        message: String,
    },
}

/// The `expect` of a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expectation {
    Allow,
    Deny(Option<String>),
    Approval(Option<String>),
}

impl Expectation {
    fn parse(s: &str) -> Result<Self, String> {
        let mut words = s.split_whitespace();
        let kind = words.next().unwrap_or_default();
        let id = words.next().map(str::to_owned);
        if words.next().is_some() {
            return Err(format!("expect {s:?}: too many words"));
        }
        match (kind.to_ascii_lowercase().as_str(), id) {
            ("allow", None) => Ok(Expectation::Allow),
            ("deny", id) => Ok(Expectation::Deny(id)),
            ("approval", id) => Ok(Expectation::Approval(id)),
            _ => Err(format!(
                "expect {s:?}: write allow, deny, deny <policy id>, approval or approval <policy id>"
            )),
        }
    }

    pub fn matches(&self, d: &Decision) -> bool {
        match (self, d) {
            (Expectation::Allow, Decision::Allow) => true,
            (Expectation::Deny(id), Decision::Deny(x)) => {
                id.as_ref().is_none_or(|id| *id == x.policy)
            }
            (Expectation::Approval(id), Decision::RequiresApproval(x)) => {
                id.as_ref().is_none_or(|id| *id == x.policy)
            }
            _ => false,
        }
    }
}

impl fmt::Display for Expectation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expectation::Allow => f.write_str("allow"),
            Expectation::Deny(None) => f.write_str("deny"),
            Expectation::Deny(Some(id)) => write!(f, "deny {id}"),
            Expectation::Approval(None) => f.write_str("approval"),
            Expectation::Approval(Some(id)) => write!(f, "approval {id}"),
        }
    }
}

// ---- the file's shape -------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    #[serde(default)]
    defaults: Defaults,
    #[serde(default)]
    case: Vec<Case>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Defaults {
    #[serde(default)]
    principal: PrincipalSpec,
    #[serde(default)]
    target: TargetSpec,
    #[serde(default)]
    context: ContextSpec,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct PrincipalSpec {
    name: Option<String>,
    kind: Option<String>,
    groups: Option<Vec<String>>,
    on_behalf_of: Option<String>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct TargetSpec {
    name: Option<String>,
    environment: Option<String>,
    /// The upstream database; the target's name when left out.
    database: Option<String>,
}

/// Cedar context attribute names.
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct ContextSpec {
    has_effective_where: Option<bool>,
    opaque: Option<bool>,
    dangerous: Option<Vec<String>>,
    functions: Option<Vec<String>>,
    statement_count: Option<u32>,
    time: Option<TimeSpec>,
    source_address: Option<String>,
    approved: Option<bool>,
    row_limit: Option<u64>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct TimeSpec {
    hour: Option<u8>,
    minute: Option<u8>,
    weekday: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: Option<String>,
    #[serde(default)]
    principal: PrincipalSpec,
    #[serde(default)]
    target: TargetSpec,
    /// Shorthand for `target.environment`.
    environment: Option<String>,
    action: Option<String>,
    #[serde(default)]
    resources: Vec<String>,
    operations: Option<Vec<OperationSpec>>,
    sql: Option<String>,
    #[serde(default)]
    context: ContextSpec,
    expect: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OperationSpec {
    action: String,
    #[serde(default)]
    resources: Vec<String>,
    has_effective_where: Option<bool>,
}

fn run_case(
    engine: &PolicyEngine,
    defaults: &Defaults,
    case: &Case,
    analyzer: Option<&dyn StatementAnalyzer>,
) -> Result<(Expectation, Decision), String> {
    let expected = Expectation::parse(&case.expect)?;

    let principal = Principal {
        name: case
            .principal
            .name
            .clone()
            .or_else(|| defaults.principal.name.clone())
            .unwrap_or_else(|| "test-user".into()),
        kind: case
            .principal
            .kind
            .as_ref()
            .or(defaults.principal.kind.as_ref())
            .map(|k| k.parse::<PrincipalKind>())
            .transpose()?
            .unwrap_or_default(),
        groups: case
            .principal
            .groups
            .clone()
            .or_else(|| defaults.principal.groups.clone())
            .unwrap_or_default(),
        on_behalf_of: case
            .principal
            .on_behalf_of
            .clone()
            .or_else(|| defaults.principal.on_behalf_of.clone()),
    };
    let name = case
        .target
        .name
        .clone()
        .or_else(|| defaults.target.name.clone())
        .unwrap_or_else(|| "test".into());
    let target = TargetRef {
        environment: case
            .environment
            .clone()
            .or_else(|| case.target.environment.clone())
            .or_else(|| defaults.target.environment.clone())
            .unwrap_or_else(|| "production".into()),
        // As in the configuration: the target's name unless said otherwise.
        database: case
            .target
            .database
            .clone()
            .or_else(|| defaults.target.database.clone())
            .unwrap_or_else(|| name.clone()),
        name,
    };
    let ctx = merge_context(&defaults.context, &case.context);
    let context = request_context(&ctx)?;

    let statements = match (&case.sql, &case.action, &case.operations) {
        (Some(sql), None, None) => {
            if ctx.has_effective_where.is_some()
                || ctx.opaque.is_some()
                || ctx.dangerous.is_some()
                || ctx.functions.is_some()
                || ctx.statement_count.is_some()
                || !case.resources.is_empty()
            {
                return Err(
                    "a case written as sql gets its statement facts from the analysis; \
                     only time, source_address, approved and row_limit may be set"
                        .into(),
                );
            }
            let analyzer = analyzer.ok_or(
                "this case is written as sql, which needs the statement analysis (run it with `portcullis policy test`)",
            )?;
            analyzer.analyze(sql, &target)?
        }
        (None, Some(action), None) => {
            let op = Operation {
                action: action.parse::<Action>().map_err(|e| e.to_string())?,
                resources: resources(&case.resources)?,
                has_effective_where: ctx.has_effective_where.unwrap_or(false),
            };
            vec![statement_facts(&ctx, vec![op])?]
        }
        (None, None, Some(ops)) => {
            if !case.resources.is_empty() {
                return Err("resources belong inside each of the operations".into());
            }
            let ops = ops
                .iter()
                .map(|o| {
                    Ok(Operation {
                        action: o.action.parse::<Action>().map_err(|e| e.to_string())?,
                        resources: resources(&o.resources)?,
                        has_effective_where: o
                            .has_effective_where
                            .or(ctx.has_effective_where)
                            .unwrap_or(false),
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            vec![statement_facts(&ctx, ops)?]
        }
        _ => return Err("give exactly one of action, operations or sql".into()),
    };

    // As the proxy runs a multi-statement message: if any statement is
    // refused none runs, and the client hears about the first refusal.
    let decisions = statements.into_iter().map(|statement| {
        engine.decide(&Request {
            principal: principal.clone(),
            target: target.clone(),
            statement,
            context: context.clone(),
        })
    });
    let mut outcome = Decision::Allow;
    for d in decisions {
        match (&outcome, &d) {
            (_, Decision::Allow) => {}
            (Decision::Deny(_), _) => {}
            (Decision::RequiresApproval(_), Decision::RequiresApproval(_)) => {}
            _ => outcome = d,
        }
    }
    Ok((expected, outcome))
}

fn merge_context(defaults: &ContextSpec, case: &ContextSpec) -> ContextSpec {
    let time = match (&defaults.time, &case.time) {
        (None, None) => None,
        (d, c) => {
            let d = d.clone().unwrap_or_default();
            let c = c.clone().unwrap_or_default();
            Some(TimeSpec {
                hour: c.hour.or(d.hour),
                minute: c.minute.or(d.minute),
                weekday: c.weekday.or(d.weekday),
            })
        }
    };
    ContextSpec {
        has_effective_where: case.has_effective_where.or(defaults.has_effective_where),
        opaque: case.opaque.or(defaults.opaque),
        dangerous: case
            .dangerous
            .clone()
            .or_else(|| defaults.dangerous.clone()),
        functions: case
            .functions
            .clone()
            .or_else(|| defaults.functions.clone()),
        statement_count: case.statement_count.or(defaults.statement_count),
        time,
        source_address: case
            .source_address
            .clone()
            .or_else(|| defaults.source_address.clone()),
        approved: case.approved.or(defaults.approved),
        row_limit: case.row_limit.or(defaults.row_limit),
    }
}

fn request_context(ctx: &ContextSpec) -> Result<RequestContext, String> {
    let time = ctx.time.clone().unwrap_or_default();
    let hour = time.hour.unwrap_or(12);
    let minute = time.minute.unwrap_or(0);
    if hour > 23 || minute > 59 {
        return Err(format!("time {hour}:{minute} is not a time of day"));
    }
    Ok(RequestContext {
        time: TimeOfDay {
            hour,
            minute,
            weekday: time
                .weekday
                .as_deref()
                .map(str::parse::<Weekday>)
                .transpose()?
                .unwrap_or(Weekday::Wednesday),
        },
        source_address: ctx
            .source_address
            .as_deref()
            .map(|a| {
                a.parse::<IpAddr>()
                    .map_err(|_| format!("source_address {a:?} is not an IP address"))
            })
            .transpose()?,
        approved: ctx.approved.unwrap_or(false),
        row_limit: ctx.row_limit,
    })
}

fn statement_facts(
    ctx: &ContextSpec,
    operations: Vec<Operation>,
) -> Result<StatementFacts, String> {
    Ok(StatementFacts {
        operations,
        opaque: ctx.opaque.unwrap_or(false),
        dangerous: ctx
            .dangerous
            .iter()
            .flatten()
            .map(|d| d.parse::<Capability>())
            .collect::<Result<BTreeSet<_>, _>>()?,
        functions: ctx.functions.iter().flatten().cloned().collect(),
        statement_count: ctx.statement_count.unwrap_or(1),
    })
}

fn resources(names: &[String]) -> Result<Vec<ResourceRef>, String> {
    names
        .iter()
        .map(|n| n.parse::<ResourceRef>().map_err(|e| e.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> PolicyEngine {
        PolicyEngine::default_bundle().unwrap()
    }

    #[test]
    fn report_lists_passes_failures_and_errors_with_a_summary() {
        let text = r#"
            [[case]]
            name = "passes"
            action = "drop"
            resources = ["public.t"]
            expect = "deny deny-drop-in-production"

            [[case]]
            name = "wrong expectation"
            action = "select"
            expect = "deny"

            [[case]]
            name = "bad action"
            action = "explode"
            expect = "allow"

            [[case]]
            action = "select"
            resources = ["a.b.c.d"]
            expect = "allow"
        "#;
        let report = run_policy_tests(&engine(), text).unwrap();
        assert_eq!((report.passed(), report.failed()), (1, 3));
        let shown = report.to_string();
        assert!(
            shown.contains("ok     passes (deny deny-drop-in-production)"),
            "{shown}"
        );
        assert!(
            shown.contains("FAILED wrong expectation: expected deny, got allow"),
            "{shown}"
        );
        assert!(
            shown.contains("ERROR  bad action: unknown action \"explode\""),
            "{shown}"
        );
        assert!(
            shown.contains("ERROR  case 4: \"a.b.c.d\" is not a resource name"),
            "{shown}"
        );
        assert!(shown.ends_with("1 passed, 3 failed"), "{shown}");
    }

    #[test]
    fn structural_mistakes_fail_the_whole_file_with_a_line() {
        let e = engine();
        let err = run_policy_tests(
            &e,
            "[[case]]\nname = \"x\"\nactoin = \"select\"\nexpect = \"allow\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("line 3") && err.contains("actoin"), "{err}");
        assert!(matches!(
            run_policy_tests(&e, "# empty\n"),
            Err(TestFileError::NoCases)
        ));
    }

    #[test]
    fn defaults_merge_under_each_case() {
        let text = r#"
            [defaults]
            principal = { name = "bot", kind = "agent", groups = ["dba"] }
            target = { environment = "staging" }
            context = { time = { hour = 3 }, approved = true }

            [[case]]
            name = "staging from defaults"
            action = "drop"
            expect = "allow"

            [[case]]
            name = "environment shorthand overrides the default"
            environment = "production"
            action = "schema_change"
            expect = "allow"

            [[case]]
            name = "context override"
            environment = "production"
            action = "schema_change"
            context = { approved = false, time = { minute = 5 } }
            expect = "approval approve-schema-change-in-production"
        "#;
        let report = run_policy_tests(&engine(), text).unwrap();
        assert!(report.all_passed(), "{report}");
    }

    #[test]
    fn expectations_parse_strictly() {
        assert_eq!(Expectation::parse("allow"), Ok(Expectation::Allow));
        assert_eq!(
            Expectation::parse("Deny x"),
            Ok(Expectation::Deny(Some("x".into())))
        );
        assert_eq!(
            Expectation::parse("approval"),
            Ok(Expectation::Approval(None))
        );
        for bad in ["", "allow x", "deny a b", "permit"] {
            assert!(Expectation::parse(bad).is_err(), "{bad:?}");
        }
    }

    struct FakeAnalyzer;

    impl StatementAnalyzer for FakeAnalyzer {
        fn analyze(&self, sql: &str, _: &TargetRef) -> Result<Vec<StatementFacts>, String> {
            sql.split(';')
                .filter(|s| !s.trim().is_empty())
                .map(|s| {
                    let action = match s.split_whitespace().next() {
                        Some("select") => Action::Select,
                        Some("drop") => Action::Drop,
                        Some("create") => Action::SchemaChange,
                        _ => return Err(format!("cannot parse {s:?}")),
                    };
                    Ok(StatementFacts {
                        operations: vec![Operation::new(action, vec![])],
                        statement_count: 1,
                        ..Default::default()
                    })
                })
                .collect()
        }
    }

    #[test]
    fn sql_cases_use_the_analyzer_and_any_refusal_refuses_the_message() {
        let text = r#"
            [[case]]
            name = "one statement"
            sql = "select 1"
            expect = "allow"

            [[case]]
            name = "a drop after a select refuses both"
            sql = "select 1; drop table t"
            expect = "deny deny-drop-in-production"

            [[case]]
            name = "a denial outranks an approval"
            sql = "create table t (); drop table u"
            expect = "deny deny-drop-in-production"

            [[case]]
            name = "statement facts cannot be overridden"
            sql = "select 1"
            context = { opaque = true }
            expect = "allow"

            [[case]]
            name = "analysis errors are reported"
            sql = "vacuum"
            expect = "allow"
        "#;
        let report = run_policy_tests_with(&engine(), text, Some(&FakeAnalyzer)).unwrap();
        assert_eq!(report.passed(), 3, "{report}");
        let shown = report.to_string();
        assert!(
            shown.contains("ERROR  statement facts cannot be overridden: a case written as sql")
        );
        assert!(shown.contains("ERROR  analysis errors are reported: cannot parse"));
        // Without an analyzer, SQL cases are errors, not silent passes.
        let report = run_policy_tests(&engine(), text).unwrap();
        assert_eq!(report.passed(), 0);
    }
}
