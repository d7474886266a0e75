//! `portcullis policy explain`: one statement string through the same steps
//! the proxy takes (analysis, describe, policy decision), each shown.
//!
//! The final answer, what the client would be told, comes from
//! `portcullis_guard::Guard::judge_text`, the function the proxy calls, so
//! it covers what the per-statement explanations cannot: a string that
//! does not parse, an EXECUTE of a statement the session never prepared.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use portcullis_analysis as analysis;
use portcullis_config::IdentityKind;
use portcullis_guard::{
    shared_analysis_cache, Guard, GuardSettings, Judgement, Scope, SessionState, Who,
};
use portcullis_policy::{
    Enforcement, Explanation, Principal, PrincipalKind, Request, RequestContext, TargetRef,
};
use serde_json::{json, Value};

use super::analyzer::{describe_all, executed, search_path};
use super::render::{
    analysis_lines, decision_json, explanation_json, opaque_reasons, policy_fact_lines,
    policy_facts_json,
};
use super::source::{self, Loaded};
use super::{fail, DEFAULT_SEARCH_PATH};

/// What the output says about name resolution.
const NO_CATALOG: &str =
    "not loaded: names are resolved by the search path only (no database is contacted)";

#[derive(clap::Args)]
pub struct ExplainArgs {
    /// Take the target's environment and row limit, the user's kind and
    /// groups, and the policies from this configuration file.
    #[arg(short, long, value_name = "CONFIG", conflicts_with_all = ["environment", "policies"])]
    config: Option<PathBuf>,
    /// Without --config: a policy file or directory; repeat for several.
    /// Default: the built-in bundle.
    #[arg(long = "policies", value_name = "PATH")]
    policies: Vec<PathBuf>,
    /// The target (database name) the statement is sent to.
    #[arg(long, value_name = "NAME")]
    target: String,
    /// The identity sending it. Without --config: a human with no groups.
    #[arg(long, value_name = "NAME")]
    user: String,
    /// The target's environment label; required without --config.
    #[arg(long, value_name = "ENV", required_unless_present = "config")]
    environment: Option<String>,
    /// The session's search_path, as SHOW search_path prints it.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SEARCH_PATH)]
    search_path: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// The statement string (several statements separated by `;` are
    /// judged as one message, as the proxy judges a simple Query).
    #[arg(value_name = "SQL")]
    sql: String,
}

/// Who sends the statement where, and under which policies.
struct Setting {
    principal: Principal,
    target: TargetRef,
    enforcement: Enforcement,
    row_limit: Option<u64>,
    /// The role the proxy logs in as, for `$user`; without a
    /// configuration, the user's name stands in.
    session_user: Option<String>,
    loaded: Loaded,
}

pub fn run(args: &ExplainArgs) -> ExitCode {
    let setting = match setting(args) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let path = match search_path(&args.search_path) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let Setting {
        principal,
        target,
        enforcement,
        row_limit,
        session_user,
        loaded,
    } = setting;
    let origin = loaded.origin;
    let guard = Guard::new(
        Arc::new(loaded.engine),
        shared_analysis_cache(),
        GuardSettings {
            target: target.clone(),
            enforcement,
            row_limit,
            masking: Default::default(),
        },
    );
    let session = SessionState::new(
        session_user.unwrap_or_else(|| principal.name.clone()),
        Some(&args.search_path),
    );
    let who = Who {
        principal: principal.clone(),
        source: None,
        limits: Default::default(),
        approved: false,
    };
    let judgement = guard.judge_text(&args.sql, &who, &session);

    // Described as the guard describes them, so each explanation matches
    // the judgement above.
    let scope = Scope {
        search_path: session.search_path(),
        session_user: Some(&session.session_user),
        catalog: None,
    };
    let mut context = RequestContext::now(None);
    context.row_limit = row_limit;
    let analysed = analysis::analyze(&args.sql);
    let statements: Vec<Explained> = match &analysed {
        Ok(a) => a
            .statements
            .iter()
            .zip(describe_all(&args.sql, a, &scope))
            .map(|(stmt, facts)| {
                let explanation = guard.engine().explain(&Request {
                    principal: principal.clone(),
                    target: target.clone(),
                    statement: facts.clone(),
                    context: context.clone(),
                });
                Explained {
                    text: args.sql.get(stmt.span.clone()).unwrap_or("").trim(),
                    stmt,
                    facts,
                    explanation,
                }
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    let report = Report {
        principal: &principal,
        target: &target,
        enforcement,
        row_limit,
        origin: &origin,
        search_path_text: &args.search_path,
        search_path: &path,
        analysis_error: analysed.as_ref().err().map(|e| e.to_string()),
        statements,
        judgement: &judgement,
    };
    if args.json {
        let text = serde_json::to_string_pretty(&report.json()).expect("JSON values serialise");
        println!("{text}");
    } else {
        print!("{}", report.text());
    }
    ExitCode::SUCCESS
}

fn setting(args: &ExplainArgs) -> Result<Setting, String> {
    let Some(path) = &args.config else {
        let loaded = source::load_engine(&args.policies).map_err(|e| source::load_error(&e))?;
        return Ok(Setting {
            principal: Principal {
                name: args.user.clone(),
                kind: PrincipalKind::Human,
                groups: Vec::new(),
                on_behalf_of: None,
            },
            target: TargetRef::new(
                args.target.clone(),
                args.environment.clone().unwrap_or_default(),
            ),
            enforcement: Enforcement::Enforce,
            // As a target configured without `row_limit`: production's
            // default limit, none elsewhere.
            row_limit: portcullis_config::RowLimit::effective(
                None,
                args.environment.as_deref().unwrap_or_default(),
            ),
            session_user: None,
            loaded,
        });
    };
    let config = source::load_config(path)?;
    let target = config.target(&args.target).ok_or_else(|| {
        unknown(
            "target",
            &args.target,
            &config
                .targets
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>(),
            path,
        )
    })?;
    let user = config.user(&args.user).ok_or_else(|| {
        unknown(
            "user",
            &args.user,
            &config
                .users
                .iter()
                .map(|u| u.name.as_str())
                .collect::<Vec<_>>(),
            path,
        )
    })?;
    let loaded = source::load_engine(&source::policy_paths(Some(&config), &[]))
        .map_err(|e| source::load_error(&e))?;
    Ok(Setting {
        principal: principal(user),
        target: TargetRef {
            name: target.name.clone(),
            environment: target.environment.clone(),
            database: target.upstream_database().to_owned(),
        },
        enforcement: match target.enforcement {
            portcullis_config::Enforcement::Enforce => Enforcement::Enforce,
            portcullis_config::Enforcement::Observe => Enforcement::Observe,
        },
        row_limit: target.effective_row_limit(),
        session_user: Some(target.user.clone()),
        loaded,
    })
}

fn principal(user: &portcullis_config::User) -> Principal {
    Principal {
        name: user.name.clone(),
        kind: match user.kind {
            IdentityKind::Human => PrincipalKind::Human,
            IdentityKind::Agent => PrincipalKind::Agent,
            IdentityKind::Service => PrincipalKind::Service,
        },
        groups: user.groups.clone(),
        on_behalf_of: None,
    }
}

fn unknown(what: &str, name: &str, known: &[&str], config: &std::path::Path) -> String {
    let known = if known.is_empty() {
        "none".to_owned()
    } else {
        known
            .iter()
            .map(|n| format!("{n:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "{}: no {what} named {name:?}; the configuration's {what}s are: {known}",
        config.display()
    )
}

/// One statement of the string, taken through every step.
struct Explained<'a> {
    text: &'a str,
    stmt: &'a analysis::StatementFacts,
    facts: portcullis_policy::StatementFacts,
    explanation: Explanation,
}

struct Report<'a> {
    principal: &'a Principal,
    target: &'a TargetRef,
    enforcement: Enforcement,
    row_limit: Option<u64>,
    origin: &'a str,
    /// As given on the command line.
    search_path_text: &'a str,
    search_path: &'a [String],
    analysis_error: Option<String>,
    statements: Vec<Explained<'a>>,
    judgement: &'a Judgement,
}

/// Facts of an explanation that belong to one statement (shown under it as
/// its policy facts); the others are the same for the whole string.
const PER_STATEMENT_FACTS: [&str; 4] = [
    "operation",
    "context.opaque",
    "context.dangerous",
    "context.functions",
];

impl Report<'_> {
    fn enforcement(&self) -> &'static str {
        match self.enforcement {
            Enforcement::Enforce => "enforce",
            Enforcement::Observe => "observe",
        }
    }

    fn text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let p = self.principal;
        let groups = if p.groups.is_empty() {
            "none".to_owned()
        } else {
            p.groups.join(", ")
        };
        let _ = writeln!(
            out,
            "target:      {} (environment {:?}, enforcement {}, row limit {})",
            self.target.name,
            self.target.environment,
            self.enforcement(),
            self.row_limit.map_or("none".to_owned(), |l| l.to_string())
        );
        let _ = writeln!(
            out,
            "user:        {} ({}, groups: {groups})",
            p.name,
            p.kind.as_str()
        );
        let _ = writeln!(out, "policies:    {}", self.origin);
        let _ = writeln!(out, "search_path: {}", self.search_path_text);
        let _ = writeln!(out, "catalog:     {NO_CATALOG}");
        // The same for every statement of the string: shown once.
        if let Some(first) = self.statements.first() {
            let _ = writeln!(out, "policy context");
            for fact in &first.explanation.facts {
                if !PER_STATEMENT_FACTS.contains(&fact.name.as_str()) {
                    let _ = writeln!(out, "    {}: {}", fact.name, fact.value);
                }
            }
        }

        if let Some(e) = &self.analysis_error {
            let _ = writeln!(out, "\nanalysis: {e}");
        }
        let n = self.statements.len();
        for (i, s) in self.statements.iter().enumerate() {
            let _ = writeln!(out, "\nstatement {} of {n}: {}", i + 1, s.text);
            let _ = writeln!(out, "  analysis");
            labelled(&mut out, &analysis_lines(s.stmt));
            for name in executed(s.stmt) {
                let _ = writeln!(
                    out,
                    "    note:         EXECUTE {name} is judged by the text prepared earlier in \
                     the session; this explanation has no session, so the proxy would refuse it"
                );
            }
            let _ = writeln!(out, "  policy facts");
            let reasons = opaque_reasons(s.stmt, self.search_path);
            labelled(&mut out, &policy_fact_lines(&s.facts, &reasons));
            let e = &s.explanation;
            let _ = writeln!(out, "  policy evaluation");
            let objects = s.facts.operations.iter().any(|o| !o.resources.is_empty());
            let on_target = e
                .evaluations
                .iter()
                .all(|ev| ev.resource.starts_with("Portcullis::Target::"));
            if objects && on_target {
                let _ = writeln!(
                    out,
                    "    (no loaded policy reads `resource`, so each operation is judged once, \
                     with the target as its resource)"
                );
            }
            for ev in &e.evaluations {
                let by = if ev.deciding_policies.is_empty() {
                    String::new()
                } else {
                    format!(" by {}", ev.deciding_policies.join(", "))
                };
                let failed = if ev.errored_policies.is_empty() {
                    String::new()
                } else {
                    format!("; failed to evaluate: {}", ev.errored_policies.join(", "))
                };
                let _ = writeln!(
                    out,
                    "    {} on {} (has_effective_where {}): cedar {}{by}{failed} => {}",
                    ev.action,
                    ev.resource,
                    ev.has_effective_where,
                    if ev.cedar_allowed { "allow" } else { "deny" },
                    ev.decision
                );
            }
            let _ = writeln!(out, "  decision: {}", e.decision);
            if let Some(message) = e.decision.client_message() {
                let _ = writeln!(out, "    message: {message}");
            }
        }

        let _ = writeln!(out, "\nclient");
        match &self.judgement.refusal {
            None => {
                let _ = writeln!(out, "  the statement runs (allowed)");
            }
            Some(r) => {
                let _ = writeln!(out, "  ERROR:  {}", r.message);
                let _ = writeln!(out, "  SQLSTATE: {}", r.sqlstate);
                if let Some(hint) = &r.hint {
                    let _ = writeln!(out, "  HINT:  {hint}");
                }
                if n > 1 {
                    let _ = writeln!(
                        out,
                        "  (no statement of the string runs: one refusal refuses them all)"
                    );
                }
                if !self.judgement.enforced {
                    let _ = writeln!(
                        out,
                        "  observe mode: the refusal is only logged, and the statement runs"
                    );
                }
            }
        }
        out
    }

    fn json(&self) -> Value {
        let p = self.principal;
        let client = match &self.judgement.refusal {
            None => json!({ "refused": false }),
            Some(r) => json!({
                "refused": true,
                "enforced": self.judgement.enforced,
                "sqlstate": r.sqlstate,
                "message": r.message,
                "hint": r.hint,
                "policy": self.judgement.refused_by,
            }),
        };
        json!({
            "target": {
                "name": self.target.name,
                "environment": self.target.environment,
                "enforcement": self.enforcement(),
                "row_limit": self.row_limit,
            },
            "user": { "name": p.name, "kind": p.kind.as_str(), "groups": p.groups },
            "policies": self.origin,
            "search_path": self.search_path,
            "catalog": NO_CATALOG,
            "analysis_error": self.analysis_error,
            "statements": self.statements.iter().map(|s| json!({
                "text": s.text,
                "analysis": serde_json::to_value(s.stmt).unwrap_or(Value::Null),
                "executes_prepared": executed(s.stmt),
                "policy_facts": policy_facts_json(&s.facts),
                "opaque_reasons": opaque_reasons(s.stmt, self.search_path),
                "explanation": explanation_json(&s.explanation),
                "decision": decision_json(&s.explanation.decision),
            })).collect::<Vec<_>>(),
            "client": client,
        })
    }
}

fn labelled(out: &mut String, lines: &[(&str, String)]) {
    use std::fmt::Write;
    for (label, value) in lines {
        let _ = writeln!(out, "    {:<13} {value}", format!("{label}:"));
    }
}
