//! Statement text to what the policies judge, as the proxy does it for a
//! target whose catalog it has not loaded: the statement analysis, then
//! `portcullis_guard::describe` with names resolved by the search_path.

use portcullis_analysis::resolve::parse_search_path;
use portcullis_analysis::{self as analysis, ActionKind, Analysis, Execution};
use portcullis_guard::{describe, Scope};
use portcullis_policy::{self as policy, StatementAnalyzer, TargetRef};

/// Parses a search_path as `SHOW search_path` prints it.
pub fn search_path(value: &str) -> Result<Vec<String>, String> {
    parse_search_path(value)
        .ok_or_else(|| format!("search path {value:?} is not a valid search_path value"))
}

/// One policy statement per statement of `analysis`, each knowing how many
/// statements came in the same message.
/// One policy description per statement of `sql` (analysed as
/// `analysis`), including what the proxy finds inside DO blocks and
/// function bodies.
pub fn describe_all(
    sql: &str,
    analysis: &Analysis,
    scope: &Scope<'_>,
) -> Vec<policy::StatementFacts> {
    let count = u32::try_from(analysis.statements.len()).unwrap_or(u32::MAX);
    analysis
        .statements
        .iter()
        .map(|s| {
            let mut facts = describe(s, scope, count);
            let hidden = portcullis_guard::opaque_scan::scan(s, sql);
            facts.dangerous.extend(hidden.capabilities.iter().copied());
            facts
        })
        .collect()
}

/// The prepared statements a statement runs now (EXECUTE). The proxy
/// judges those by the text it saw prepared earlier in the session, which
/// a lone statement cannot show.
pub fn executed(stmt: &analysis::StatementFacts) -> Vec<&str> {
    stmt.actions
        .iter()
        .filter(|a| a.execution == Execution::Now)
        .filter_map(|a| match &a.kind {
            ActionKind::Execute { name } => Some(name.as_str()),
            _ => None,
        })
        .collect()
}

/// The analyzer behind SQL cases of `portcullis policy test`.
pub struct SqlAnalyzer {
    search_path: Vec<String>,
}

impl SqlAnalyzer {
    pub fn new(search_path: Vec<String>) -> Self {
        SqlAnalyzer { search_path }
    }
}

impl StatementAnalyzer for SqlAnalyzer {
    fn analyze(&self, sql: &str, _: &TargetRef) -> Result<Vec<policy::StatementFacts>, String> {
        let analysis = analysis::analyze(sql).map_err(|e| e.to_string())?;
        if analysis.statements.is_empty() {
            return Err("sql holds no statement".into());
        }
        if let Some(name) = analysis.statements.iter().flat_map(executed).next() {
            return Err(format!(
                "EXECUTE {name}: the proxy judges EXECUTE by the text prepared earlier in the \
                 session, which a test case cannot show; test the prepared statement's text"
            ));
        }
        let scope = Scope {
            search_path: &self.search_path,
            session_user: None,
            catalog: None,
        };
        Ok(describe_all(sql, &analysis, &scope))
    }
}
